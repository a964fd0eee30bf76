#!/usr/bin/env bash
# validate.sh: static checks of deploy/, offline, no saed needed (~10 s).
#
#   tests/deploy/validate.sh [--saed PATH]
#
# - the Kubernetes manifests, the Dockerfile and the systemd unit: validate.mjs
#   (kubernetes-models schemas, tsc field check, deployment-specific checks)
# - kubectl kustomize renders deploy/k8s (when kubectl is installed)
# - systemd-analyze verify deploy/saed.service (ExecStart pointed at an
#   existing binary: --saed PATH, else /bin/true, since the unit names the
#   installed path)
# - nginx -t on deploy/nginx.conf (ports and paths rewritten for loopback),
#   and the directives the load balancer relies on; nginx -t on the router of
#   the partitioned release (deploy/k8s/release, made by deploy/partition.py)
# - negative controls: broken copies of deploy/ that each check must reject,
#   so a check that cannot fail shows up here
# Installs nodejs/npm, nginx and the npm packages (npm ci) when missing.
# Last line: "deploy-validate: P passed, F failed"; exit 1 on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

saed_bin=""
while [ $# -gt 0 ]; do
  case $1 in
    --saed) saed_bin=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) echo "validate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d /tmp/saed-deploy-validate.XXXXXX)
trap 'rm -rf "$work"' EXIT

# ---- node: manifests, Dockerfile, unit -------------------------------------
if need_cmd node nodejs && need_cmd npm npm; then
  if [ ! -d "$here/node_modules/kubernetes-models" ] || [ ! -d "$here/node_modules/typescript" ] ||
     [ ! -d "$here/node_modules/yaml" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1) ||
      { fail "npm ci in tests/deploy" "$(tail -5 "$work/npm.log")"; summary deploy-validate; exit 1; }
  fi
  node "$here/validate.mjs" --root "$root" >"$work/node.out" 2>&1
  node_rc=$?
  grep -E '^(ok|not ok) - ' "$work/node.out"
  np=$(grep -c '^ok - ' "$work/node.out")
  nf=$(grep -c '^not ok - ' "$work/node.out")
  deploy_passed=$((deploy_passed + np))
  deploy_failed=$((deploy_failed + nf))
  if [ "$node_rc" -ne 0 ] && [ "$nf" -eq 0 ]; then
    fail "validate.mjs ran" "exit $node_rc: $(tail -5 "$work/node.out")"
  fi
else
  fail "node and npm available" "could not install nodejs/npm"
fi

# ---- kustomize ----------------------------------------------------------------
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize "$root/deploy/k8s" >"$work/kustomized.yaml" 2>"$work/kustomize.err"; then
    n=$(grep -c '^kind:' "$work/kustomized.yaml")
    want=$(cat "$root"/deploy/k8s/*.yaml | grep -c '^kind:')
    want=$((want - 1)) # the Kustomization itself
    if [ "$n" -eq "$want" ]; then pass "kubectl kustomize deploy/k8s renders all $n objects"
    else fail "kubectl kustomize deploy/k8s renders all objects" "$n of $want"; fi
  else
    fail "kubectl kustomize deploy/k8s" "$(head -3 "$work/kustomize.err")"
  fi
  if kubectl kustomize "$root/deploy/k8s/release" >"$work/kustomized-release.yaml" 2>"$work/kustomize-release.err"; then
    n=$(grep -c '^kind:' "$work/kustomized-release.yaml")
    want=$(cat "$root"/deploy/k8s/release/*.yaml | grep -c '^kind:')
    want=$((want - 1))
    if [ "$n" -eq "$want" ]; then pass "kubectl kustomize deploy/k8s/release renders all $n objects"
    else fail "kubectl kustomize deploy/k8s/release renders all objects" "$n of $want"; fi
  else
    fail "kubectl kustomize deploy/k8s/release" "$(head -3 "$work/kustomize-release.err")"
  fi
else
  skip "kubectl kustomize deploy/k8s" "kubectl not installed"
fi

# ---- systemd unit ---------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  exe=${saed_bin:-/bin/true}
  exe=$(readlink -f "$exe")
  sed "s#/usr/local/bin/saed#$exe#" "$root/deploy/saed.service" >"$work/saed.service"
  systemd-analyze verify "$work/saed.service" >"$work/verify.out" 2>&1
  rc=$?
  # Anything it prints is a problem (unknown keys, bad values are warnings
  # with exit 0), except complaints about other units on this host.
  msgs=$(grep -v -E '^(/etc|/lib|/usr/lib)/systemd/' "$work/verify.out" | grep -v '^$')
  if [ "$rc" -eq 0 ] && [ -z "$msgs" ]; then pass "systemd-analyze verify deploy/saed.service"
  else fail "systemd-analyze verify deploy/saed.service" "rc $rc: $(echo "$msgs" | head -5 | tr '\n' '|')"; fi
else
  skip "systemd-analyze verify deploy/saed.service" "systemd-analyze not installed"
fi

# ---- nginx ------------------------------------------------------------------------
if need_cmd nginx nginx-light || need_cmd nginx nginx; then
  render_nginx_conf "$root/deploy/nginx.conf" "$work/nginx.conf" "$work/nginx" 18080 \
    127.0.0.1:18081 127.0.0.1:18082 127.0.0.1:18083
  if nginx -t -q -p "$work/nginx" -c "$work/nginx.conf" >"$work/nginx-t.out" 2>&1; then
    pass "nginx -t accepts deploy/nginx.conf (upstreams on loopback)"
  else
    fail "nginx -t accepts deploy/nginx.conf" "$(tail -3 "$work/nginx-t.out" | tr '\n' '|')"
  fi
  # The router of the partitioned release (deploy/k8s/release/router.yaml's nginx.conf),
  # each partition's Service name pointed at a loopback address.
  if node -e 'const Y = require(process.argv[1]); const fs = require("fs");
      for (const d of Y.parseAllDocuments(fs.readFileSync(process.argv[2], "utf8")).map((x) => x.toJS()))
        if (d && d.kind === "ConfigMap" && d.data["nginx.conf"]) fs.writeFileSync(process.argv[3], d.data["nginx.conf"]);' \
      "$here/node_modules/yaml" "$root/deploy/k8s/release/router.yaml" "$work/router-src.conf" 2>"$work/router-x.err" &&
     [ -s "$work/router-src.conf" ]; then
    names=() port=18090
    for s in $(sed -n 's/^[[:space:]]*server[[:space:]]\{1,\}\([a-z][a-z0-9.-]*:[0-9]*\);.*/\1/p' "$work/router-src.conf"); do
      port=$((port + 1)); names+=("$s=127.0.0.1:$port")
    done
    render_nginx_conf "$work/router-src.conf" "$work/router.conf" "$work/router" 18090 "${names[@]}" "root=$work"
    if nginx -t -q -p "$work/router" -c "$work/router.conf" >"$work/router-t.out" 2>&1; then
      pass "nginx -t accepts the release router's nginx.conf (${#names[@]} upstreams on loopback)"
    else
      fail "nginx -t accepts the release router's nginx.conf" "$(tail -3 "$work/router-t.out" | tr '\n' '|')"
    fi
  else
    fail "the release router's nginx.conf (deploy/k8s/release/router.yaml)" "$(tail -2 "$work/router-x.err" | tr '\n' '|')"
  fi
else
  fail "nginx available" "could not install nginx"
fi
nginx_has() { # directive regex, what it is for
  if grep -Eq "^[[:space:]]*$1" "$root/deploy/nginx.conf"; then pass "nginx.conf: $2"
  else fail "nginx.conf: $2" "no line matching /$1/"; fi
}
nginx_has 'keepalive[[:space:]]+[0-9]+;' "keep-alive connections to the upstreams"
nginx_has 'proxy_http_version[[:space:]]+1\.1;' "HTTP/1.1 to the upstreams (needed for keep-alive)"
nginx_has 'proxy_set_header[[:space:]]+Connection[[:space:]]+"";' "no Connection: close forwarded upstream"
nginx_has 'proxy_next_upstream[[:space:]]+([a-z_0-9]+[[:space:]]+)*non_idempotent' "POST retried on another replica (non_idempotent)"
nginx_has 'proxy_next_upstream[[:space:]]+error[[:space:]]+timeout[[:space:]]+http_502[[:space:]]+http_503' "retries on error, timeout, 502, 503"
nginx_has 'proxy_next_upstream_tries[[:space:]]+[1-9][0-9]*;' "retries bounded (proxy_next_upstream_tries)"

# ---- negative controls ------------------------------------------------------------
# Each: a sed on one file of a copy of deploy/, and the check that must fail.
control() { # name file sed-expression expected-check-prefix [--tsc]
  local name=$1 file=$2 expr=$3 want=$4 tsc=${5:---no-tsc} d="$work/neg"
  rm -rf "$d" && mkdir -p "$d" && cp -r "$root/deploy" "$d/" && cp -r "$root/config" "$d/" 2>/dev/null
  sed -i "$expr" "$d/deploy/$file"
  if cmp -s "$d/deploy/$file" "$root/deploy/$file"; then
    fail "control: $name" "the edit did not change deploy/$file (test out of date)"
    return
  fi
  [ "$tsc" = --tsc ] && tsc=""
  node "$here/validate.mjs" --root "$d" $tsc >"$d/out" 2>&1
  if grep -q "^not ok - $want" "$d/out"; then pass "control: $name is caught"
  else fail "control: $name" "no 'not ok - $want' from validate.mjs"; fi
}
if [ -d "$here/node_modules/kubernetes-models" ]; then
  control "misspelt field (readinesProbe)" k8s/deployment.yaml 's/readinessProbe:/readinesProbe:/' "every manifest field" --tsc
  control "string replica count" k8s/deployment.yaml 's/replicas: 3/replicas: "3"/' "deploy/k8s/deployment.yaml: Deployment/saed validates"
  control "probe on another path" k8s/deployment.yaml '0,/path: \/v1\/health/s//path: \/healthz/' "Deployment: readiness"
  control "rolling update may drop a replica" k8s/deployment.yaml 's/maxUnavailable: 0/maxUnavailable: 1/' "Deployment: rolling updates"
  control "writable model mount" k8s/deployment.yaml '0,/readOnly: true/s//readOnly: false/' "Deployment: model and index"
  control "shard count != completions" k8s/indexing/index-shards-job.yaml 's/completions: 16/completions: 8/' "Indexed Job"
  control "shards on the node's own BLAS kernels" k8s/indexing/index-shards-job.yaml '/name: OPENBLAS_CORETYPE/,+1d' "Indexed Job: BLAS kernels"
  control "merge over another run" k8s/indexing/merge-job.yaml 's/run-0001/run-0002/' "merge Job"
  control "root in the image" Dockerfile 's/^USER .*/USER root/' "Dockerfile: runtime stage runs as a non-root"
  control "non-Debian base" Dockerfile 's/^FROM debian:12-slim AS build/FROM ubuntu:24.04 AS build/' "Dockerfile: multi-stage"
  control "health check elsewhere" Dockerfile 's#/v1/health#/status#' "Dockerfile: HEALTHCHECK"
  control "ProtectSystem relaxed" saed.service 's/^ProtectSystem=strict/ProtectSystem=full/' "saed.service: DynamicUser"
  control "stop timeout shorter than the drain" saed.service 's/^TimeoutStopSec=.*/TimeoutStopSec=10/' "saed.service: MemoryMax"
  control "release: hand edit of a generated file" k8s/release/saed-p1.yaml 's/maxSurge: 1/maxSurge: 2/' "release: deploy/partition.py --plan"
  control "release: router maps layer 20 to the wrong partition" k8s/release/router.yaml \
    's/^\([[:space:]]*"layer_20\.width_16k\.canonical"\) saed_p2;/\1 saed_p1;/' "release: the router's map"
  control "release: an SAE dropped from its partition" k8s/release/saed-p3.yaml '/^    \[sae layer_25.width_65k.canonical\]/,+5d' "release: every SAE of plan.json"
  control "release: memory limit below the weights served" k8s/release/saed-p0.yaml 's/memory: "12Gi"/memory: "4Gi"/' "release: each pod's memory limit"
  control "release: catalogue marks a second default" k8s/release/router.yaml '0,/"id":"layer_3.width_16k.canonical"\(.*\)"default":false/s//"id":"layer_3.width_16k.canonical"\1"default":true/' "release: the catalogue"
  control "release: partition pod without the base's hardening" k8s/release/saed-p2.yaml 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' "release: each partition's pod"
fi

summary deploy-validate
