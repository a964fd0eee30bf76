#!/usr/bin/env python3
"""partition.py: a release too large for one machine, split by SAE across saed Deployments.

    deploy/partition.py --saes saes.json --release DIR [--index-dir DIR]
                        (--partitions N | --max-bytes SIZE) --out OUTDIR [options]
    deploy/partition.py --plan OUTDIR/plan.json --out OUTDIR

Input: the GET /v1/saes reply of one saed over the whole release (`saed --release DIR
--max-mapped-bytes 1 ...`, with an `--index ID=FILE` per index), the release tree itself
(to find each SAE's folder and measure it) and the folder of indexes (ID.db is SAE ID's).

OUTDIR gets, for `kubectl apply -k OUTDIR` (docs/DEPLOY.md, "A release in partitions"):
  plan.json              what was decided: every SAE's folder, sizes and partition. Edit
                         it (move an SAE to another partition) and run with --plan again.
  saed-pN.yaml           per partition: ConfigMap (saed.conf: the settings of
                         deploy/k8s/configmap.yaml plus one [sae ID] section per SAE),
                         Deployment, Service, PodDisruptionBudget
  saed-search.yaml       the Deployment /v1/search goes to: every SAE that has an index,
                         weights mapped one at a time (max_mapped_bytes), indexes held
  router.yaml            nginx: ConfigMap saed-router (nginx.conf), ConfigMap
                         saed-catalogue (GET /v1/saes and /v1/saes/{id} as static JSON),
                         Deployment and Service "saed", the release's one address
  storage.yaml           the claims: saed-release (the tree), saed-release-index (ID.db)
  kustomization.yaml

SAEs are kept in release order, and the SAEs of one hook (the widths of a layer) always
land in one partition, so an encode fan-out over them is possible on that partition.
With --partitions N the release is cut into N contiguous runs of hooks with the largest
run as small as possible; with --max-bytes each partition holds at most SIZE of weights and
indexes (a hook larger than that is cut between its SAEs; an SAE larger than that gets a
partition of its own).
Memory per pod follows docs/SCALING.md "Memory per replica": weights + indexes +
3 x max_queue_rows x d_in x 4 B + workers x max_batch_rows x d_sae x 4 B + 64 MiB.
Standard library only.
"""
import argparse
import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MIB = 1 << 20
# saed's defaults for the terms of the memory rule (config/saed.conf)
MAX_QUEUE_ROWS = 16384
MAX_BATCH_ROWS = 256
CONFIGMAP_LIMIT = 1 << 20   # Kubernetes refuses a ConfigMap over 1 MiB


def die(msg):
    sys.stderr.write("partition.py: %s\n" % msg)
    sys.exit(1)


def parse_size(s):
    """'16Gi', '16G', '17179869184' -> bytes."""
    m = re.match(r"^\s*([0-9.]+)\s*([KMGT]i?)?B?\s*$", s)
    if not m:
        die("bad size %r (use e.g. 16Gi or 17179869184)" % s)
    unit = m.group(2) or ""
    mult = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
            "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}[unit]
    return int(float(m.group(1)) * mult)


def quantity(n):
    """bytes -> a Kubernetes memory quantity, rounded up to 256 MiB."""
    mib = -(-n // MIB)
    mib = -(-mib // 256) * 256
    return "%dGi" % (mib // 1024) if mib % 1024 == 0 else "%dMi" % mib


def sanitize(name):
    """A path segment as saed's --release turns it into part of an id (CONTRACT 7)."""
    return "".join(c if (c.isascii() and (c.isalnum() or c in "._-")) else "_" for c in name)


def find_folders(release, ids):
    """id -> folder relative to release, for every id: the directory whose path under
    release, '/' turned into '.', is the id (saed's rule: at most 6 levels, no symlinks)."""
    found = {}
    base = os.path.basename(os.path.normpath(release))
    if sanitize(base) in ids:
        found.setdefault(sanitize(base), []).append(".")
    for dirpath, dirnames, _ in os.walk(release, followlinks=False):
        rel = os.path.relpath(dirpath, release)
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        if depth >= 6:
            dirnames[:] = []
        dirnames[:] = [d for d in sorted(dirnames) if not os.path.islink(os.path.join(dirpath, d))]
        for d in dirnames:
            r = d if rel == "." else os.path.join(rel, d)
            i = ".".join(sanitize(p) for p in r.split(os.sep))
            if i in ids:
                found.setdefault(i, []).append(r)
    out = {}
    for i in ids:
        f = found.get(i, [])
        if len(f) != 1:
            die("SAE %s: %s under %s" % (i, "no folder" if not f else "several folders (%s)" % ", ".join(f), release))
        out[i] = f[0]
    return out


def folder_bytes(path):
    """Bytes of the regular files directly in a folder (its weights and config)."""
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if os.path.isfile(os.path.join(path, f)))


def hook_runs(saes):
    """Consecutive SAEs grouped by hook_name: [[sae, ...], ...] in release order."""
    runs = []
    for s in saes:
        if runs and runs[-1][0]["entry"]["hook_name"] == s["entry"]["hook_name"]:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def cost(run):
    return sum(s["weights_bytes"] + s["index_bytes"] for s in run)


def cut(runs, cap):
    """Greedy contiguous cut of runs into parts of at most cap bytes (a run over cap alone)."""
    parts, cur, size = [], [], 0
    for r in runs:
        c = cost(r)
        if cur and size + c > cap:
            parts.append(cur)
            cur, size = [], 0
        cur.append(r)
        size += c
    if cur:
        parts.append(cur)
    return parts


def assign(saes, partitions, max_bytes):
    """Sets every SAE's "partition" (p0, p1, ...)."""
    runs = hook_runs(saes)
    if max_bytes:
        # A hook larger than a partition (Gemma Scope's layer 12 has ~214 GB of widths)
        # is cut between its SAEs: a fan-out over it then needs one request per part.
        runs = [r2 for r in runs for r2 in ([r] if cost(r) <= max_bytes else [[s] for s in r])]
        parts = cut(runs, max_bytes)
    else:
        if partitions > len(runs):
            die("%d partitions for %d hooks: the SAEs of one hook stay together" % (partitions, len(runs)))
        lo, hi = max(cost(r) for r in runs), sum(cost(r) for r in runs)
        while lo < hi:  # smallest cap that cuts into at most N parts
            mid = (lo + hi) // 2
            if len(cut(runs, mid)) <= partitions:
                hi = mid
            else:
                lo = mid + 1
        parts = cut(runs, lo)
    for n, part in enumerate(parts):
        for run in part:
            for s in run:
                s["partition"] = "p%d" % n


def make_plan(a):
    """The plan from a /v1/saes listing, the release tree and the index folder."""
    with open(a.saes) as f:
        listing = json.load(f)["saes"]
    ids = [e["id"] for e in listing]
    for i in ids:
        if not ID_RE.match(i):
            die("bad SAE id %r in %s" % (i, a.saes))
    folders = find_folders(a.release, set(ids))
    default = a.default_sae or next((e["id"] for e in listing if e.get("default")), ids[0])
    if default not in ids:
        die("--default-sae %s is not in %s" % (default, a.saes))
    saes = []
    for e in listing:
        idx = os.path.join(a.index_dir, e["id"] + ".db") if a.index_dir else None
        has = bool(idx and os.path.isfile(idx))
        entry = dict(e)
        entry["has_index"] = has
        entry.pop("default", None)
        saes.append({"id": e["id"], "folder": folders[e["id"]],
                     "index": e["id"] + ".db" if has else None,
                     "weights_bytes": folder_bytes(os.path.join(a.release, folders[e["id"]])),
                     "index_bytes": os.path.getsize(idx) if has else 0,
                     "entry": entry})
    plan = {"default_sae": default, "image": a.image, "router_image": a.router_image,
            "replicas": a.replicas, "cpu": a.cpu, "search": not a.no_search,
            "release_mount": "/release", "index_mount": "/index", "saes": saes}
    assign(saes, a.partitions, parse_size(a.max_bytes) if a.max_bytes else 0)
    return plan


# ---- YAML out (block style; strings plain when YAML reads them back as the same
# string, else JSON-quoted, which YAML reads as is) ----
PLAIN_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}
def yaml(v, ind=0):
    pad = " " * ind
    if isinstance(v, dict):
        if not v:
            return "{}"
        lines = []
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                lines.append("%s%s:\n%s" % (pad, k, yaml(x, ind + 2)))
            elif isinstance(x, str) and "\n" in x:
                body = "\n".join((" " * (ind + 2) + l) if l else "" for l in x.rstrip("\n").split("\n"))
                lines.append("%s%s: |\n%s" % (pad, k, body))
            else:
                lines.append("%s%s: %s" % (pad, k, yaml(x)))
        return "\n".join(lines)
    if isinstance(v, list):
        if not v:
            return "[]"
        out = []
        for x in v:
            s = yaml(x, ind + 2)
            out.append("%s- %s" % (pad, s.lstrip()) if isinstance(x, (dict, list)) and x else "%s- %s" % (pad, s))
        return "\n".join(out)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if re.fullmatch(r"[A-Za-z_/][A-Za-z0-9_./-]*", v) and v.lower() not in PLAIN_WORDS:
        return v
    return json.dumps(v)


def doc(*objs):
    return "".join("---\n" + yaml(o) + "\n" for o in objs)


def base_conf():
    """The saed.conf block of deploy/k8s/configmap.yaml: the settings every pod shares."""
    lines = open(os.path.join(HERE, "k8s", "configmap.yaml")).read().split("\n")
    start = next(i for i, l in enumerate(lines) if re.match(r"^\s+saed\.conf: \|\s*$", l)) + 1
    ind = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for l in lines[start:]:
        if l.strip() and len(l) - len(l.lstrip()) < ind:
            break
        block.append(l[ind:])
    return "\n".join(block).rstrip() + "\n"


def labels(component, instance):
    return {"app.kubernetes.io/name": "saed", "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": instance}


def memory_rule(saes, cpu, resident):
    """docs/SCALING.md's rule; resident: the SAEs whose weights stay mapped."""
    d_in = max(s["entry"]["d_in"] for s in saes)
    d_sae = max(s["entry"]["d_sae"] for s in saes)
    return (sum(s["weights_bytes"] for s in resident) + sum(s["index_bytes"] for s in saes)
            + 3 * MAX_QUEUE_ROWS * d_in * 4 + cpu * MAX_BATCH_ROWS * d_sae * 4 + 64 * MIB)


def saed_conf(plan, name, saes, extra):
    """A pod's saed.conf: the shared settings, then one [sae ID] section per SAE."""
    out = ["# generated by deploy/partition.py (%s): edit plan.json and run it again" % name, "",
           base_conf().rstrip(), ""] + extra
    for s in saes:
        e = s["entry"]
        out += ["", "[sae %s]" % s["id"],
                "model = %s" % os.path.normpath(os.path.join(plan["release_mount"], s["folder"]))]
        if s["index"]:
            out.append("index = %s/%s" % (plan["index_mount"], s["index"]))
        # Names as the listing gave them, so every pod answers the catalogue's names
        # (with one SAE a pod would otherwise take hook_name as the source id).
        for k in ("model_name", "hook_name", "neuronpedia_id", "source_id"):
            if e.get(k):
                out.append("%s = %s" % (k, e[k]))
    return "\n".join(out) + "\n"


def saed_objects(plan, name, component, saes, conf, resident):
    """ConfigMap, Deployment, Service and PodDisruptionBudget of one saed Deployment; the pod
    is deploy/k8s/deployment.yaml's (tests/deploy/validate.mjs checks they agree)."""
    lab = labels(component, name)
    cpu = int(plan["cpu"])
    mem = quantity(memory_rule(saes, cpu, resident))
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "-config", "labels": lab},
          "data": {"saed.conf": conf}}
    container = {
        "name": "saed", "image": plan["image"], "imagePullPolicy": "IfNotPresent",
        "command": ["saed"],
        "args": ["--config", "/etc/saed/saed.conf", "--listen", "0.0.0.0:8080", "--threads", "$(SAED_THREADS)"],
        "env": [{"name": "SAED_THREADS", "valueFrom": {"resourceFieldRef": {
            "containerName": "saed", "resource": "limits.cpu", "divisor": "1"}}}],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        # Start-up reads every weights file once for its digest: allow 10 minutes.
        "startupProbe": {"httpGet": {"path": "/v1/health", "port": "http"}, "periodSeconds": 5, "failureThreshold": 120},
        "readinessProbe": {"httpGet": {"path": "/v1/health", "port": "http"}, "periodSeconds": 5,
                           "timeoutSeconds": 2, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/v1/health", "port": "http"}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "resources": {"requests": {"cpu": str(cpu), "memory": mem}, "limits": {"cpu": str(cpu), "memory": mem}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "release", "mountPath": plan["release_mount"], "readOnly": True},
                         {"name": "index", "mountPath": plan["index_mount"], "readOnly": True},
                         {"name": "config", "mountPath": "/etc/saed", "readOnly": True}],
    }
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": lab}, "spec": {
        "replicas": plan["replicas"], "revisionHistoryLimit": 5,
        "selector": {"matchLabels": lab},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "minReadySeconds": 5,
        "template": {
            "metadata": {"labels": lab, "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080",
                                                        "prometheus.io/path": "/metrics"}},
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 45,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "ScheduleAnyway",
                                               "labelSelector": {"matchLabels": lab}}],
                "containers": [container],
                "volumes": [{"name": "release", "persistentVolumeClaim": {"claimName": "saed-release", "readOnly": True}},
                            {"name": "index", "persistentVolumeClaim": {"claimName": "saed-release-index", "readOnly": True}},
                            {"name": "config", "configMap": {"name": name + "-config"}}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": lab}, "spec": {
        "type": "ClusterIP", "selector": lab,
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "labels": lab},
           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": lab}}}
    return cm, dep, svc, pdb


def json_error(code, msg):
    return json.dumps({"error": {"code": code, "message": msg}}, separators=(",", ":"))


def nginx_conf(plan, parts, default_part):
    """The router: /v1/saes/{id}/... to the partition serving id, the catalogue as files."""
    search = "saed_search" if plan["search"] else "saed_" + default_part
    ups = list(parts) + (["search"] if plan["search"] else [])
    L = ["# generated by deploy/partition.py: edit plan.json and run it again.",
         "# One address for a release served by several saed Deployments (docs/DEPLOY.md,",
         "# \"A release in partitions\"); proxy settings as deploy/nginx.conf.",
         "worker_processes auto;", "pid /tmp/nginx.pid;", "error_log /dev/stderr warn;", "",
         "events {", "    worker_connections 4096;", "}", "", "http {",
         "    log_format saed '$remote_addr [$time_local] \"$request\" $status $body_bytes_sent '",
         "                    'upstream=$upstream_addr upstream_status=$upstream_status '",
         "                    'rt=$request_time urt=$upstream_response_time';",
         "    access_log /dev/stdout saed;", "",
         "    # Each partition's Service (kube-proxy balances its replicas)."]
    for p in ups:
        L += ["    upstream saed_%s {" % p, "        server saed-%s:80;" % p, "        keepalive 32;",
              "        keepalive_requests 100000;", "        keepalive_timeout 60s;", "    }"]
    L += ["", "    # SAE id -> the partition that serves it.",
          "    map_hash_max_size 65536;", "    map_hash_bucket_size 256;",
          "    map $sae_id $sae_upstream {", "        default \"\";"]
    L += ["        %s saed_%s;" % (json.dumps(s["id"]), s["partition"]) for s in plan["saes"]]
    L += ["    }", "    # Neuronpedia source id (the layer of /api/feature/{modelId}/{layer}/{i}) -> partition.",
          "    map $np_layer $np_upstream {", "        default saed_%s;" % default_part]
    L += ["        %s saed_%s;" % (json.dumps(s["entry"]["source_id"]), s["partition"])
          for s in plan["saes"] if s["entry"].get("source_id")]
    nf = lambda v: json_error("sae_not_found", "no SAE has the id \\\"%s\\\" (GET /v1/saes lists them)" % v)
    L += ["    }", "",
          "    server {", "        listen 8080 reuseport;", "        server_name _;",
          "        client_max_body_size 64m;", "        client_body_buffer_size 1m;",
          "        proxy_request_buffering on;", "        default_type application/json;",
          "        # The catalogue: GET /v1/saes and /v1/saes/{id} for the whole release.",
          "        root /srv/saed-catalogue;", "",
          "        proxy_http_version 1.1;", "        proxy_set_header Connection \"\";",
          "        proxy_set_header Host $host;",
          "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
          "        proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
          "        proxy_next_upstream_tries 3;", "        proxy_next_upstream_timeout 30s;",
          "        proxy_connect_timeout 1s;", "        proxy_read_timeout 60s;", "        proxy_send_timeout 60s;", "",
          "        location = /v1/saes {",
          "            if ($request_method !~ ^(GET|HEAD)$) {",
          "                add_header Allow \"GET, HEAD\" always;",
          "                return 405 '%s';" % json_error("method_not_allowed", "GET /v1/saes only"), "            }",
          "            try_files /saes.json =500;", "        }",
          "        location ~ \"^/v1/saes/(?<sae_id>[A-Za-z0-9._-]{1,128})$\" {",
          "            if ($request_method !~ ^(GET|HEAD)$) {",
          "                add_header Allow \"GET, HEAD\" always;",
          "                return 405 '%s';" % json_error("method_not_allowed", "GET /v1/saes/{id} only"), "            }",
          "            try_files /sae.$sae_id.json @sae_not_found;", "        }",
          "        # The stream route's body is unbounded: it goes upstream as it arrives and",
          "        # the reply comes back as saed sends it (as deploy/nginx.conf does).",
          "        location ~ \"^/v1/saes/(?<sae_id>[A-Za-z0-9._-]{1,128})/encode/stream$\" {",
          "            if ($sae_upstream = \"\") {", "                return 404 '%s';" % nf("$sae_id"), "            }",
          ] + stream_location("$sae_upstream") + [
          "        location = /v1/encode/stream {",
          ] + stream_location("saed_%s" % default_part) + [
          "        location ~ \"^/v1/saes/(?<sae_id>[A-Za-z0-9._-]{1,128})/\" {",
          "            if ($sae_upstream = \"\") {", "                return 404 '%s';" % nf("$sae_id"), "            }",
          "            proxy_pass http://$sae_upstream;", "        }",
          "        location @sae_not_found {", "            return 404 '%s';" % nf("$sae_id"), "        }",
          "        # An id outside [A-Za-z0-9._-] names no SAE.",
          "        location ~ ^/v1/saes/ {",
          "            return 404 '%s';" % json_error("sae_not_found", "no SAE has that id (GET /v1/saes lists them)"),
          "        }",
          "        # Search across the release: %s." % (
              "the Deployment that holds every index" if plan["search"] else "no search Deployment, the default partition's SAEs only"),
          "        location = /v1/search {", "            proxy_pass http://%s;" % search, "        }",
          "        location ~ \"^/api/feature/[^/]+/(?<np_layer>[^/]+)/\" {",
          "            proxy_pass http://$np_upstream;", "        }",
          "        # Everything else (unprefixed routes: the default SAE; the web browser) goes",
          "        # to the partition of the default SAE.",
          "        location / {", "            proxy_pass http://saed_%s;" % default_part, "        }",
          "        location = /nginx-health {", "            access_log off;", "            default_type text/plain;",
          "            return 200 \"ok\\n\";", "        }", "    }", "}"]
    return "\n".join(L) + "\n"


def stream_location(target):
    """The body of an nginx location for POST .../encode/stream to target: no
    body limit, no request or reply buffering, saed's stream_timeout_s for the
    reply and its request_timeout_s for a stall."""
    return ["            proxy_pass http://%s;" % target,
            "            client_max_body_size 0;", "            proxy_request_buffering off;",
            "            proxy_buffering off;", "            proxy_read_timeout 3600s;",
            "            client_body_timeout 120s;", "            proxy_send_timeout 120s;", "        }"]


def catalogue(plan):
    """GET /v1/saes over the release, and each SAE's GET /v1/saes/{id}: the listing's
    entries, has_index as served, default on the release's default SAE alone."""
    entries = []
    for s in plan["saes"]:
        e = dict(s["entry"])
        e["has_index"] = s["index"] is not None
        e["default"] = s["id"] == plan["default_sae"]
        entries.append(e)
    files = {"saes.json": json.dumps({"saes": entries}, separators=(",", ":")) + "\n"}
    for e in entries:
        files["sae.%s.json" % e["id"]] = json.dumps(e, separators=(",", ":")) + "\n"
    return files


def router_objects(plan, conf, files):
    lab = labels("router", "saed-router")
    cms = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "saed-router", "labels": lab},
            "data": {"nginx.conf": conf}},
           {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "saed-catalogue", "labels": lab},
            "data": files}]
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "saed-router", "labels": lab}, "spec": {
        "replicas": 2, "selector": {"matchLabels": lab},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": lab}, "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 101, "runAsGroup": 101,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "nginx", "image": plan["router_image"], "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/nginx-health", "port": "http"}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/nginx-health", "port": "http"}, "periodSeconds": 10},
                "resources": {"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf", "readOnly": True},
                                 {"name": "catalogue", "mountPath": "/srv/saed-catalogue", "readOnly": True},
                                 {"name": "cache", "mountPath": "/var/cache/nginx"},
                                 {"name": "tmp", "mountPath": "/tmp"}]}],
            "volumes": [{"name": "conf", "configMap": {"name": "saed-router"}},
                        {"name": "catalogue", "configMap": {"name": "saed-catalogue"}},
                        {"name": "cache", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "saed", "labels": lab}, "spec": {
        "type": "ClusterIP", "selector": lab,
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}
    return cms + [dep, svc]


def storage(plan):
    w = sum(s["weights_bytes"] for s in plan["saes"])
    i = sum(s["index_bytes"] for s in plan["saes"])
    pvc = lambda name, mode, n: {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                 "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "saed"}},
                                 "spec": {"accessModes": [mode], "resources": {"requests": {"storage": quantity(n * 11 // 10 + MIB)}}}}
    return [pvc("saed-release", "ReadOnlyMany", w), pvc("saed-release-index", "ReadOnlyMany", i)]


def write(plan, out):
    os.makedirs(out, exist_ok=True)
    parts = sorted({s["partition"] for s in plan["saes"]}, key=lambda p: int(p[1:]))
    default_part = next(s["partition"] for s in plan["saes"] if s["id"] == plan["default_sae"])
    files = {}
    header = "# generated by deploy/partition.py from plan.json: edit plan.json and run it again.\n"
    for p in parts:
        saes = [s for s in plan["saes"] if s["partition"] == p]
        extra = ["default_sae = %s" % plan["default_sae"]] if p == default_part else []
        conf = saed_conf(plan, "saed-" + p, saes, extra)
        files["saed-%s.yaml" % p] = header + doc(*saed_objects(plan, "saed-" + p, "partition", saes, conf, saes))
    if plan["search"]:
        saes = [s for s in plan["saes"] if s["index"]]
        if not saes:
            die("no SAE has an index: nothing to search (--no-search)")
        # Only search and the feature routes come here: one SAE's weights mapped at a time.
        big = max(saes, key=lambda s: s["weights_bytes"])
        extra = ["max_mapped_bytes = %d" % big["weights_bytes"]]
        conf = saed_conf(plan, "saed-search", saes, extra)
        files["saed-search.yaml"] = header + doc(*saed_objects(plan, "saed-search", "search", saes, conf, [big]))
    cat = catalogue(plan)
    size = sum(len(k) + len(v) for k, v in cat.items())
    if size > CONFIGMAP_LIMIT:
        die("the catalogue is %d bytes, over a ConfigMap's 1 MiB" % size)
    files["router.yaml"] = header + doc(*router_objects(plan, nginx_conf(plan, parts, default_part), cat))
    files["storage.yaml"] = header + doc(*storage(plan))
    files["kustomization.yaml"] = header + yaml({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "labels": [{"pairs": {"app.kubernetes.io/part-of": "saed"}}],
        "resources": sorted(k for k in files if k != "kustomization.yaml")}) + "\n"
    files["plan.json"] = json.dumps(plan, indent=1) + "\n"
    for name, text in files.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    for p in parts:
        n = [s for s in plan["saes"] if s["partition"] == p]
        sys.stderr.write("partition.py: saed-%s: %d SAEs (%s .. %s), %.1f GB of weights and indexes\n" % (
            p, len(n), n[0]["id"], n[-1]["id"], sum(s["weights_bytes"] + s["index_bytes"] for s in n) / 1e9))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--saes", help="GET /v1/saes of a saed over the whole release")
    ap.add_argument("--release", help="the release tree (to find and measure each SAE's folder)")
    ap.add_argument("--index-dir", help="folder of indexes: ID.db is SAE ID's")
    ap.add_argument("--plan", help="a plan.json written before (perhaps edited): write its manifests")
    ap.add_argument("--partitions", type=int, help="cut the release into N partitions")
    ap.add_argument("--max-bytes", help="at most SIZE of weights and indexes per partition (e.g. 24Gi)")
    ap.add_argument("--default-sae", help="the SAE of the unprefixed routes (default: the listing's)")
    ap.add_argument("--image", default="saed:0.1.0")
    ap.add_argument("--router-image", default="nginx:1.27-bookworm")
    ap.add_argument("--replicas", type=int, default=2, help="pods per partition (default 2)")
    ap.add_argument("--cpu", default="2", help="CPUs per pod (= worker threads; default 2)")
    ap.add_argument("--no-search", action="store_true",
                    help="no search Deployment: /v1/search answers from the default partition's SAEs")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.plan:
        with open(a.plan) as f:
            plan = json.load(f)
    else:
        if not a.saes or not a.release:
            die("--saes and --release are needed (or --plan)")
        if bool(a.partitions) == bool(a.max_bytes):
            die("give one of --partitions N and --max-bytes SIZE")
        plan = make_plan(a)
    write(plan, a.out)


if __name__ == "__main__":
    main()
