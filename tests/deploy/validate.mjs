// validate.mjs: offline checks of everything under deploy/.
//
//   node validate.mjs [--root REPO_DIR] [--no-tsc]
//
// 1. Every YAML document under deploy/k8s/ parses, names a kind the Kubernetes
//    API has, and validates against its schema (kubernetes-models classes).
// 2. The same objects type-check against kubernetes-models' TypeScript
//    interfaces with tsc: the JSON schemas accept unknown fields, tsc's
//    excess-property check does not, so a misspelt field (readinesProbe) fails.
// 3. What the deployment needs beyond schema validity: probes on /v1/health,
//    rolling updates that never drop below the replica count, read-only model
//    and index, a Service/HPA/PDB that point at the Deployment, an Indexed Job
//    whose shard count matches its completions and a merge Job that agrees
//    with it, shell scripts that parse.
// 4. Static checks of deploy/Dockerfile and deploy/saed.service.
//
// Prints one "ok - ..." or "not ok - ...: why" line per check, then
// "deploy-validate-node: P passed, F failed"; exits 1 if any check failed.
// --root lets tests/deploy/validate.sh point it at broken copies of deploy/
// to show each check can fail.
import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import YAML from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const argv = process.argv.slice(2);
const rootArg = argv.indexOf("--root");
const root = rootArg >= 0 ? path.resolve(argv[rootArg + 1]) : path.resolve(here, "../..");
// --no-tsc skips the (3 s) TypeScript pass: the negative controls use it.
const withTsc = !argv.includes("--no-tsc");
const deployDir = path.join(root, "deploy");
const k8sDir = path.join(deployDir, "k8s");

let passed = 0;
let failed = 0;
function check(name, fn) {
  try {
    fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${String(e && e.message ? e.message : e).split("\n").slice(0, 6).join(" | ")}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
function rel(p) {
  return path.relative(root, p);
}

// ---- 1. parse and schema-validate -----------------------------------------
function yamlFiles(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

const objects = []; // { file, obj }
const kustomizations = []; // { file, obj }
const files = fs.existsSync(k8sDir) ? yamlFiles(k8sDir) : [];
check("deploy/k8s/ holds YAML manifests", () => assert(files.length > 0, `no *.yaml under ${rel(k8sDir)}`));
for (const file of files) {
  check(`${rel(file)} parses as YAML`, () => {
    const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { uniqueKeys: true });
    for (const d of docs) {
      const errs = [...d.errors, ...d.warnings];
      assert(errs.length === 0, errs.map((x) => x.message).join("; "));
      const obj = d.toJS();
      if (obj === null) continue;
      if (path.basename(file) === "kustomization.yaml") {
        kustomizations.push({ file, obj });
        continue;
      }
      objects.push({ file, obj });
    }
  });
}

async function modelClass(obj) {
  const mod = await import(`kubernetes-models/${obj.apiVersion}`);
  const cls = mod[obj.kind];
  assert(typeof cls === "function", `no Kubernetes kind ${obj.kind} in ${obj.apiVersion}`);
  return cls;
}

function describe(o) {
  return `${rel(o.file)}: ${o.obj.kind}/${o.obj.metadata && o.obj.metadata.name}`;
}

for (const o of objects) {
  let cls = null;
  try {
    assert(typeof o.obj.apiVersion === "string" && typeof o.obj.kind === "string", "apiVersion and kind are required");
    cls = await modelClass(o.obj);
  } catch (e) {
    check(`${describe(o)} is a known Kubernetes kind`, () => {
      throw e;
    });
    continue;
  }
  check(`${describe(o)} validates against the ${o.obj.apiVersion} ${o.obj.kind} schema`, () => {
    new cls(o.obj).validate();
  });
}

// ---- 2. strict field names via the TypeScript interfaces -------------------
if (withTsc) check("every manifest field is one the Kubernetes API defines (tsc excess-property check)", () => {
  const dir = fs.mkdtempSync(path.join(here, ".tsc-"));
  try {
    const lines = [];
    const owner = []; // line number (1-based) -> object description
    objects.forEach((o, i) => {
      const { apiVersion, kind } = o.obj;
      if (typeof apiVersion !== "string" || typeof kind !== "string") return;
      lines.push(`import type { I${kind} as T${i} } from "kubernetes-models/${apiVersion}/${kind}";`);
      owner.push(describe(o));
    });
    objects.forEach((o, i) => {
      if (typeof o.obj.apiVersion !== "string") return;
      const body = JSON.stringify(o.obj, null, 1).split("\n");
      body[0] = `export const o${i}: T${i} = ` + body[0];
      for (const l of body) {
        lines.push(l);
        owner.push(describe(o));
      }
      owner[owner.length - 1] = describe(o);
      lines[lines.length - 1] += ";";
    });
    const ts = path.join(dir, "manifests.ts");
    fs.writeFileSync(ts, lines.join("\n") + "\n");
    const tsc = require.resolve("typescript/bin/tsc");
    const r = spawnSync(
      process.execPath,
      [tsc, "--noEmit", "--strict", "--skipLibCheck", "--target", "es2020", "--module", "commonjs",
        "--moduleResolution", "node", ts],
      { cwd: here, encoding: "utf8" },
    );
    if (r.status !== 0) {
      const msgs = (r.stdout + r.stderr)
        .split("\n")
        .filter((l) => /error TS/.test(l))
        .map((l) => {
          const m = /manifests\.ts\((\d+),\d+\): (.*)$/.exec(l);
          return m ? `${owner[Number(m[1]) - 1]}: ${m[2]}` : l;
        });
      throw new Error(msgs.join("\n") || r.stdout + r.stderr);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---- 3. what this deployment needs ------------------------------------------
// deploy/k8s/release/ is a partitioned release (deploy/partition.py's output), checked
// in section 5; the checks of this section are about the single-SAE manifests.
const releaseDir = path.join(k8sDir, "release");
const inRelease = (o) => o.file.startsWith(releaseDir + path.sep);
const byKind = (k) => objects.filter((o) => o.obj.kind === k && !inRelease(o));
const one = (k, name) => {
  const found = byKind(k).filter((o) => !name || o.obj.metadata.name === name);
  assert(found.length >= 1, `no ${k}${name ? " " + name : ""} under deploy/k8s/`);
  return found[0].obj;
};
const labelsMatch = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => labels && labels[k] === v) && Object.keys(selector || {}).length > 0;
const envOf = (c) => Object.fromEntries((c.env || []).filter((e) => "value" in e).map((e) => [e.name, e.value]));
const containerPortNamed = (c, port) =>
  (c.ports || []).some((p) => p.name === port || p.containerPort === port);

let deploy = null;
check("a Deployment for saed exists", () => {
  deploy = one("Deployment");
});
const pod = deploy ? deploy.spec.template.spec : null;
const saed = pod ? pod.containers[0] : null;

check("Deployment: readiness, liveness and startup probes GET /v1/health on a declared port", () => {
  for (const p of ["readinessProbe", "livenessProbe"]) {
    const probe = saed[p];
    assert(probe && probe.httpGet, `${p} missing or not httpGet`);
    assert(probe.httpGet.path === "/v1/health", `${p} path is ${probe.httpGet.path}`);
    assert(containerPortNamed(saed, probe.httpGet.port), `${p} port ${probe.httpGet.port} is not a container port`);
  }
  if (saed.startupProbe) assert(saed.startupProbe.httpGet.path === "/v1/health", "startupProbe path");
});

check("Deployment: rolling updates never drop below the replica count (maxUnavailable 0, maxSurge >= 1)", () => {
  const s = deploy.spec.strategy;
  assert(s && s.type === "RollingUpdate", "strategy is not RollingUpdate");
  assert(s.rollingUpdate && (s.rollingUpdate.maxUnavailable === 0 || s.rollingUpdate.maxUnavailable === "0%"),
    `maxUnavailable is ${s.rollingUpdate && s.rollingUpdate.maxUnavailable}`);
  const surge = s.rollingUpdate.maxSurge;
  assert(surge !== 0 && surge !== "0%" && surge !== undefined, "maxSurge must be >= 1 when maxUnavailable is 0");
});

check("Deployment: selector matches the pod template labels", () => {
  assert(labelsMatch(deploy.spec.selector.matchLabels, deploy.spec.template.metadata.labels), "selector does not match");
});

check("Deployment: CPU and memory requests and limits set, memory request = limit", () => {
  const r = saed.resources || {};
  for (const k of ["cpu", "memory"]) {
    assert(r.requests && r.requests[k] !== undefined, `requests.${k} missing`);
    assert(r.limits && r.limits[k] !== undefined, `limits.${k} missing`);
  }
  assert(String(r.requests.memory) === String(r.limits.memory), "memory request differs from limit");
});

check("Deployment: model and index mounted read-only (mount and claim), root filesystem read-only, non-root", () => {
  const args = (saed.command || []).concat(saed.args || []);
  const flag = (f) => args[args.indexOf(f) + 1];
  assert(args.includes("--model"), "saed started without --model");
  const mounts = saed.volumeMounts || [];
  for (const f of ["--model", "--index"]) {
    if (!args.includes(f)) continue;
    const target = flag(f);
    const m = mounts.find((m) => target === m.mountPath || target.startsWith(m.mountPath.replace(/\/?$/, "/")));
    assert(m, `${f} ${target} is not on a mounted volume`);
    assert(m.readOnly === true, `volumeMount ${m.name} for ${f} is not readOnly`);
    const v = (pod.volumes || []).find((v) => v.name === m.name);
    assert(v, `volume ${m.name} not declared`);
    if (v.persistentVolumeClaim) assert(v.persistentVolumeClaim.readOnly === true, `claim ${v.name} not readOnly`);
  }
  assert(saed.securityContext && saed.securityContext.readOnlyRootFilesystem === true, "readOnlyRootFilesystem");
  assert(saed.securityContext.allowPrivilegeEscalation === false, "allowPrivilegeEscalation");
  assert(pod.securityContext && pod.securityContext.runAsNonRoot === true, "runAsNonRoot");
  assert(pod.securityContext.runAsUser > 0, "runAsUser must be a non-zero uid");
});

check("Deployment: saed listens on all interfaces on its container port", () => {
  const args = saed.args || [];
  const listen = args[args.indexOf("--listen") + 1];
  assert(/^0\.0\.0\.0:\d+$/.test(listen || ""), `--listen ${listen}`);
  const port = Number(listen.split(":")[1]);
  assert((saed.ports || []).some((p) => p.containerPort === port), `port ${port} not declared`);
});

check("Deployment: grace period covers preStop plus saed's drain timeout", () => {
  const grace = pod.terminationGracePeriodSeconds;
  const pre = saed.lifecycle && saed.lifecycle.preStop && saed.lifecycle.preStop.exec
    ? Number((saed.lifecycle.preStop.exec.command || []).slice(-1)[0]) || 0 : 0;
  const drain = drainSeconds();
  assert(typeof grace === "number" && grace > pre + drain, `grace ${grace}s <= preStop ${pre}s + drain ${drain}s`);
});

check("Deployment: every volume's ConfigMap and PersistentVolumeClaim is defined", () => {
  for (const v of pod.volumes || []) {
    if (v.configMap) one("ConfigMap", v.configMap.name);
    if (v.persistentVolumeClaim) one("PersistentVolumeClaim", v.persistentVolumeClaim.claimName);
  }
});

check("Service selects the Deployment's pods on a declared container port", () => {
  const svc = one("Service");
  assert(labelsMatch(svc.spec.selector, deploy.spec.template.metadata.labels), "selector matches no saed pod");
  for (const p of svc.spec.ports) assert(containerPortNamed(saed, p.targetPort ?? p.port), `targetPort ${p.targetPort}`);
});

check("HorizontalPodAutoscaler scales the Deployment, floor = its replica count", () => {
  const hpa = one("HorizontalPodAutoscaler");
  const t = hpa.spec.scaleTargetRef;
  assert(t.kind === "Deployment" && t.name === deploy.metadata.name && t.apiVersion === "apps/v1", "scaleTargetRef");
  assert((hpa.spec.minReplicas ?? 1) === deploy.spec.replicas, `minReplicas ${hpa.spec.minReplicas} != replicas ${deploy.spec.replicas}`);
  assert(hpa.spec.maxReplicas > hpa.spec.minReplicas, "maxReplicas must exceed minReplicas");
  assert((hpa.spec.metrics || []).length > 0, "no metrics");
  assert(saed.resources.requests.cpu !== undefined, "CPU utilisation needs a CPU request");
});

check("PodDisruptionBudget selects the Deployment's pods", () => {
  const pdb = one("PodDisruptionBudget");
  assert(labelsMatch(pdb.spec.selector.matchLabels, deploy.spec.template.metadata.labels), "selector");
});

// The ConfigMap carries saed's config file; its keys must be ones saed knows,
// which the example config/saed.conf lists (every key, with its default).
// Keys set in a "key = value" file; with commented, also "# key = value" lines,
// since an example config may show defaults commented out.
function confKeys(text, commented = false) {
  const keys = [];
  for (const line of text.split("\n")) {
    const l = (commented ? line.replace(/^\s*#+\s*/, "") : line.replace(/^\s*#.*/, "")).trim();
    const m = /^([a-z][a-z0-9_]*)\s*=/.exec(l);
    if (m) keys.push(m[1]);
  }
  return keys;
}
// saed's drain timeout as deployed: the ConfigMap's drain_timeout_s, else the
// default the example config documents, else saed's built-in 10 s.
function drainSeconds() {
  const re = /^\s*drain_timeout_s\s*=\s*"?([0-9]+)"?\s*$/m;
  for (const cm of byKind("ConfigMap"))
    for (const text of Object.values(cm.obj.data || {})) {
      const m = re.exec(text);
      if (m) return Number(m[1]);
    }
  const example = path.join(root, "config", "saed.conf");
  const m = fs.existsSync(example) ? re.exec(fs.readFileSync(example, "utf8").replace(/^#\s*/gm, "")) : null;
  return m ? Number(m[1]) : 10;
}
check("ConfigMap: saed.conf uses only keys of the example config/saed.conf", () => {
  const cm = one("ConfigMap", "saed-config");
  const text = cm.data && cm.data["saed.conf"];
  assert(typeof text === "string" && text.trim(), "data.saed.conf missing");
  const mount = (saed.volumeMounts || []).find((m) => pod.volumes.find((v) => v.name === m.name && v.configMap));
  const confArg = saed.args[saed.args.indexOf("--config") + 1];
  assert(mount && confArg === path.posix.join(mount.mountPath, "saed.conf"), `--config ${confArg} is not the mounted saed.conf`);
  const example = path.join(root, "config", "saed.conf");
  assert(fs.existsSync(example), "config/saed.conf (the example) not found");
  const known = new Set(confKeys(fs.readFileSync(example, "utf8"), true));
  const unknown = confKeys(text).filter((k) => !known.has(k));
  assert(unknown.length === 0, `keys not in config/saed.conf: ${unknown.join(", ")}`);
});

// ---- the indexing Jobs ----------------------------------------------------
const jobs = byKind("Job");
const indexed = jobs.find((j) => j.obj.spec.completionMode === "Indexed");
const merge = jobs.find((j) => j !== indexed);
function script(job) {
  const c = job.obj.spec.template.spec.containers[0];
  const cmd = (c.command || []).concat(c.args || []);
  assert(cmd[0] === "/bin/sh" && cmd[1] === "-c" && cmd.length === 3, "expected command [/bin/sh, -c] and one script");
  return cmd[2];
}
check("Indexed Job: shards with sae index --shard $slice/$SHARDS (slice = index % SHARDS) and --features ranges, SHARDS x FEATURE_RANGES = completions", () => {
  assert(indexed, "no Job with completionMode: Indexed");
  const spec = indexed.obj.spec;
  const c = spec.template.spec.containers[0];
  const env = envOf(c);
  assert(Number(env.SHARDS) * Number(env.FEATURE_RANGES) === spec.completions,
    `SHARDS ${env.SHARDS} x FEATURE_RANGES ${env.FEATURE_RANGES} != completions ${spec.completions}`);
  const s = script(indexed);
  assert(/\bsae index\b/.test(s), "script does not run sae index");
  assert(/slice=\$\(\(JOB_COMPLETION_INDEX % SHARDS\)\)/.test(s), "no slice=$((JOB_COMPLETION_INDEX % SHARDS))");
  assert(/--shard "\$slice\/\$SHARDS" \$range/.test(s), "no --shard \"$slice/$SHARDS\" $range");
  assert(/r=\$\(\(JOB_COMPLETION_INDEX \/ SHARDS\)\)/.test(s) && /--features /.test(s), "no feature range of JOB_COMPLETION_INDEX / SHARDS");
  assert(/--out "[^"]*\$JOB_COMPLETION_INDEX[^"]*"/.test(s), "--out does not depend on the completion index");
  assert(spec.template.spec.restartPolicy === "Never" || spec.template.spec.restartPolicy === "OnFailure", "restartPolicy");
});
check("Indexed Job: BLAS kernels and threads pinned alike on every node (OPENBLAS_CORETYPE, --threads = CPU limit)", () => {
  const c = indexed.obj.spec.template.spec.containers[0];
  const env = envOf(c);
  assert(env.OPENBLAS_CORETYPE, "OPENBLAS_CORETYPE not set: shards on different CPUs would round differently");
  assert(/--threads "\$SAE_THREADS"/.test(script(indexed)), 'no --threads "$SAE_THREADS"');
  assert(env.SAE_THREADS !== undefined && String(c.resources.limits.cpu) === env.SAE_THREADS,
    `SAE_THREADS ${env.SAE_THREADS} != limits.cpu ${c.resources.limits.cpu}`);
});
check("merge Job: runs sae merge over the same SHARDS, FEATURE_RANGES, INDEX_RUN and SHARD_DIR as the Indexed Job", () => {
  assert(merge, "no second Job (the merge)");
  const s = script(merge);
  assert(/\bsae merge --out\b/.test(s), "script does not run sae merge --out");
  const a = envOf(indexed.obj.spec.template.spec.containers[0]);
  const b = envOf(merge.obj.spec.template.spec.containers[0]);
  for (const k of ["SHARDS", "FEATURE_RANGES", "INDEX_RUN", "SHARD_DIR"]) assert(a[k] !== undefined && a[k] === b[k], `${k}: ${a[k]} vs ${b[k]}`);
  const claim = (j) => j.obj.spec.template.spec.volumes.find((v) => v.name === "index").persistentVolumeClaim.claimName;
  assert(claim(indexed) === claim(merge), "the Jobs write to different volumes");
  const deployIndex = pod.volumes.find((v) => v.name === "index");
  assert(deployIndex && deployIndex.persistentVolumeClaim.claimName === claim(merge), "the Deployment reads another volume");
  const out = b.INDEX_OUT;
  const mount = merge.obj.spec.template.spec.containers[0].volumeMounts.find((m) => m.name === "index").mountPath;
  const idx = saed.args[saed.args.indexOf("--index") + 1];
  const sMount = saed.volumeMounts.find((m) => m.name === "index").mountPath;
  assert(path.posix.relative(mount, out) === path.posix.relative(sMount, idx), `merge writes ${out}, saed reads ${idx}`);
});
check("Job scripts parse (sh -n)", () => {
  for (const j of [indexed, merge]) {
    const r = spawnSync("sh", ["-n"], { input: script(j), encoding: "utf8" });
    assert(r.status === 0, `${j.obj.metadata.name}: ${r.stderr}`);
  }
});
check("Jobs: every claim they mount is defined; inputs read-only", () => {
  for (const j of jobs) {
    const p = j.obj.spec.template.spec;
    for (const v of p.volumes || []) if (v.persistentVolumeClaim) one("PersistentVolumeClaim", v.persistentVolumeClaim.claimName);
    for (const m of p.containers[0].volumeMounts || [])
      if (m.name === "model" || m.name === "corpus") assert(m.readOnly === true, `${j.obj.metadata.name}: ${m.name} not readOnly`);
  }
});

for (const kustomization of kustomizations) {
  check(`${rel(kustomization.file)} lists every manifest under its folder`, () => {
    const dir = path.dirname(kustomization.file);
    const listed = new Set(kustomization.obj.resources || []);
    for (const f of files)
      if (path.dirname(f) === dir && f !== kustomization.file) assert(listed.has(path.basename(f)), `${path.basename(f)} not listed`);
    for (const r of listed) assert(fs.existsSync(path.join(dir, r)), `${r} listed but missing`);
  });
}

// ---- 4. the container file --------------------------------------------------
function dockerInstructions(text) {
  const out = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw) && !cur) continue;
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) {
      cur += line.slice(0, -1) + " ";
      continue;
    }
    cur += line;
    if (cur.trim()) {
      const m = /^\s*(\w+)\s+(.*)$/s.exec(cur.trim());
      if (m) out.push({ op: m[1].toUpperCase(), arg: m[2] });
    }
    cur = "";
  }
  return out;
}
const dockerfile = path.join(deployDir, "Dockerfile");
check("Dockerfile: multi-stage, every base image Debian 12 (bookworm)", () => {
  const ins = dockerInstructions(fs.readFileSync(dockerfile, "utf8"));
  const froms = ins.filter((i) => i.op === "FROM");
  assert(froms.length >= 2, `${froms.length} stage(s)`);
  const stages = new Set();
  for (const f of froms) {
    const [image, , name] = f.arg.split(/\s+/);
    assert(stages.has(image) || /^debian:(12|bookworm)([-.][\w.-]*)?$/.test(image), `base ${image} is not Debian 12`);
    if (name) stages.add(name);
  }
});
function finalStage() {
  const ins = dockerInstructions(fs.readFileSync(dockerfile, "utf8"));
  const last = ins.map((i) => i.op).lastIndexOf("FROM");
  return ins.slice(last);
}
check("Dockerfile: runtime stage runs as a non-root numeric user", () => {
  const users = finalStage().filter((i) => i.op === "USER");
  assert(users.length > 0, "no USER in the final stage");
  const u = users[users.length - 1].arg.split(":")[0];
  assert(/^[0-9]+$/.test(u) && Number(u) > 0, `USER ${u} (want a non-zero numeric uid for runAsNonRoot)`);
  const k8sUid = pod && pod.securityContext && pod.securityContext.runAsUser;
  assert(!k8sUid || k8sUid === Number(u), `image uid ${u} != Deployment runAsUser ${k8sUid}`);
});
check("Dockerfile: HEALTHCHECK probes /v1/health on the port saed listens on", () => {
  const st = finalStage();
  const hc = st.find((i) => i.op === "HEALTHCHECK");
  assert(hc && /\/v1\/health/.test(hc.arg), "no HEALTHCHECK on /v1/health");
  const cmd = st.filter((i) => i.op === "CMD").pop();
  assert(cmd, "no CMD");
  const argsArr = JSON.parse(cmd.arg);
  const listen = argsArr[argsArr.indexOf("--listen") + 1] || "";
  const port = listen.split(":")[1];
  assert(port && hc.arg.includes(`/${port}`), `HEALTHCHECK does not use port ${port}`);
  assert(st.some((i) => i.op === "EXPOSE" && i.arg.split(/\s+/).includes(port)), `EXPOSE ${port} missing`);
});
check("Dockerfile: model and index are volumes, documented and mounted read-only", () => {
  const text = fs.readFileSync(dockerfile, "utf8");
  const st = finalStage();
  const vol = st.filter((i) => i.op === "VOLUME").map((i) => i.arg).join(" ");
  for (const p of ["/model", "/index"]) {
    assert(vol.includes(`"${p}"`) || vol.split(/\s+/).includes(p), `VOLUME ${p} missing`);
    assert(new RegExp(`:${p}:ro\\b`).test(text), `usage does not mount ${p} read-only (:${p}:ro)`);
  }
  const cmd = JSON.parse(st.filter((i) => i.op === "CMD").pop().arg);
  assert(cmd[0] === "saed" && cmd.includes("/model"), "CMD does not run saed on /model");
});
check("Dockerfile: runtime stage installs no compiler or build tool", () => {
  const st = finalStage().filter((i) => i.op === "RUN").map((i) => i.arg).join(" ");
  for (const t of ["gcc", "meson", "ninja-build", "-dev "]) assert(!st.includes(t), `runtime stage mentions ${t}`);
});

// ---- the systemd unit ---------------------------------------------------------
function unitDirectives(text) {
  const d = {};
  let cur = "";
  let section = "";
  for (const raw of text.split("\n")) {
    if (!cur && /^\s*[#;]/.test(raw)) continue;
    if (raw.endsWith("\\")) {
      cur += raw.slice(0, -1) + " ";
      continue;
    }
    const line = (cur + raw).trim();
    cur = "";
    if (!line) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1];
      continue;
    }
    const m = /^(\w+)=(.*)$/.exec(line);
    if (m) (d[`${section}.${m[1]}`] ||= []).push(m[2].trim());
  }
  return d;
}
const unitPath = path.join(deployDir, "saed.service");
check("saed.service: DynamicUser, ProtectSystem=strict, read-only model and index paths", () => {
  const d = unitDirectives(fs.readFileSync(unitPath, "utf8"));
  assert((d["Service.DynamicUser"] || []).pop() === "yes", "DynamicUser=yes");
  assert((d["Service.ProtectSystem"] || []).pop() === "strict", "ProtectSystem=strict");
  assert(!d["Service.ReadWritePaths"], "ReadWritePaths given: saed writes nothing");
  const ro = (d["Service.ReadOnlyPaths"] || []).join(" ").split(/\s+/).map((p) => p.replace(/^[-+]+/, ""));
  const exec = (d["Service.ExecStart"] || [""]).pop().split(/\s+/);
  for (const f of ["--model", "--index"]) {
    if (!exec.includes(f)) continue;
    const target = exec[exec.indexOf(f) + 1];
    assert(ro.some((p) => target === p || target.startsWith(p + "/")), `${f} ${target} not under ReadOnlyPaths`);
  }
  assert(exec.includes("--model"), "ExecStart has no --model");
  assert((d["Service.NoNewPrivileges"] || []).pop() === "yes", "NoNewPrivileges=yes");
});
check("saed.service: MemoryMax, Restart=on-failure, reload = SIGHUP, stop = SIGTERM within the drain timeout", () => {
  const d = unitDirectives(fs.readFileSync(unitPath, "utf8"));
  assert(/^\d+[KMGT]?$/.test((d["Service.MemoryMax"] || [""]).pop()), "MemoryMax");
  assert((d["Service.Restart"] || []).pop() === "on-failure", "Restart=on-failure");
  assert(/kill -(HUP|s HUP|SIGHUP) \$MAINPID/.test((d["Service.ExecReload"] || [""]).pop()), "ExecReload sends SIGHUP");
  const ks = (d["Service.KillSignal"] || ["SIGTERM"]).pop();
  assert(ks === "SIGTERM", `KillSignal=${ks}`);
  const stop = Number(((d["Service.TimeoutStopSec"] || [""]).pop().match(/^(\d+)s?$/) || [])[1]);
  assert(stop > drainSeconds(), `TimeoutStopSec ${stop} must exceed the drain timeout ${drainSeconds()}s`);
});

// ---- 5. a release in partitions (deploy/k8s/release, from deploy/partition.py) ------
// The generator's output must be what its plan.json gives, each SAE must reach the one
// partition that serves it through the router, and each pod must hold what it serves.
const relObjs = objects.filter(inRelease);
const relPlanPath = path.join(releaseDir, "plan.json");
if (fs.existsSync(relPlanPath)) {
  const plan = JSON.parse(fs.readFileSync(relPlanPath, "utf8"));
  const rk = (k, name) => relObjs.filter((o) => o.obj.kind === k && (!name || o.obj.metadata.name === name)).map((o) => o.obj);
  const rone = (k, name) => {
    const f = rk(k, name);
    assert(f.length === 1, `${f.length} ${k} ${name || ""} under deploy/k8s/release/`);
    return f[0];
  };
  const saedDeps = rk("Deployment").filter((d) => (d.spec.template.spec.containers[0].command || [])[0] === "saed");
  // [sae ID] sections of a saed.conf: id -> { key: value }
  const sections = (text) => {
    const out = {};
    let cur = null;
    for (const line of text.split("\n")) {
      const l = line.replace(/^\s*#.*/, "").trim();
      const m = /^\[sae ([A-Za-z0-9._-]+)\]$/.exec(l);
      if (m) out[(cur = m[1])] = {};
      else if (cur && /=/.test(l)) out[cur][l.split("=")[0].trim()] = l.slice(l.indexOf("=") + 1).trim();
    }
    return out;
  };
  const confOf = (d) => {
    const v = d.spec.template.spec.volumes.find((x) => x.configMap);
    return rone("ConfigMap", v.configMap.name).data["saed.conf"];
  };

  check("release: deploy/partition.py --plan plan.json writes exactly the committed files", () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "saed-release-"));
    try {
      const r = spawnSync("python3", [path.join(deployDir, "partition.py"), "--plan", relPlanPath, "--out", tmp], { encoding: "utf8" });
      assert(r.status === 0, `partition.py: ${r.stderr}`);
      const want = fs.readdirSync(tmp).sort();
      const have = fs.readdirSync(releaseDir).sort();
      assert(JSON.stringify(want) === JSON.stringify(have), `files ${have.join(",")} != ${want.join(",")}`);
      for (const f of want)
        assert(fs.readFileSync(path.join(tmp, f), "utf8") === fs.readFileSync(path.join(releaseDir, f), "utf8"),
          `${f} differs from what plan.json gives (edit plan.json and regenerate, never the output)`);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  check("release: each partition's pod is deploy/k8s/deployment.yaml's but for its SAEs, memory and labels", () => {
    assert(deploy, "no base Deployment");
    const strip = (d) => {
      const t = JSON.parse(JSON.stringify(d.spec.template.spec));
      const c = t.containers[0];
      for (const k of ["args", "resources", "volumeMounts", "startupProbe"]) delete c[k];
      delete t.volumes;
      for (const tsc of t.topologySpreadConstraints || []) delete tsc.labelSelector;
      return JSON.stringify(t);
    };
    const base = strip(deploy);
    assert(saedDeps.length >= 2, `${saedDeps.length} saed Deployments`);
    for (const d of saedDeps) {
      assert(strip(d) === base, `${d.metadata.name}: the pod differs from the base Deployment's beyond args, mounts, resources, startup probe`);
      assert(JSON.stringify(d.spec.strategy) === JSON.stringify(deploy.spec.strategy), `${d.metadata.name}: rollout strategy`);
      assert(labelsMatch(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `${d.metadata.name}: selector`);
      const c = d.spec.template.spec.containers[0];
      const confArg = c.args[c.args.indexOf("--config") + 1];
      const m = c.volumeMounts.find((x) => x.name === "config");
      assert(m && confArg === path.posix.join(m.mountPath, "saed.conf"), `${d.metadata.name}: --config ${confArg} is not its ConfigMap`);
      for (const v of d.spec.template.spec.volumes)
        if (v.persistentVolumeClaim) {
          rone("PersistentVolumeClaim", v.persistentVolumeClaim.claimName);
          assert(v.persistentVolumeClaim.readOnly === true, `${d.metadata.name}: claim ${v.name} not readOnly`);
          assert(c.volumeMounts.find((x) => x.name === v.name).readOnly === true, `${d.metadata.name}: mount ${v.name} not readOnly`);
        }
    }
  });

  const partDeps = saedDeps.filter((d) => d.metadata.labels["app.kubernetes.io/component"] === "partition");
  const searchDep = saedDeps.find((d) => d.metadata.labels["app.kubernetes.io/component"] === "search");
  check("release: every SAE of plan.json has one [sae ID] section in one partition, with its folder and index", () => {
    const where = {};
    for (const d of partDeps)
      for (const [id, kv] of Object.entries(sections(confOf(d)))) {
        assert(!where[id], `${id} in ${where[id]} and ${d.metadata.name}`);
        where[id] = d.metadata.name;
        const s = plan.saes.find((x) => x.id === id);
        assert(s, `${d.metadata.name} serves ${id}, which plan.json does not list`);
        assert(kv.model === path.posix.normalize(path.posix.join(plan.release_mount, s.folder)), `${id}: model ${kv.model}`);
        assert((kv.index || null) === (s.index ? `${plan.index_mount}/${s.index}` : null), `${id}: index ${kv.index}`);
        assert(`saed-${s.partition}` === d.metadata.name, `${id} is in ${d.metadata.name}, plan.json says ${s.partition}`);
      }
    for (const s of plan.saes) assert(where[s.id], `${s.id} is served by no partition`);
    const def = partDeps.filter((d) => /^default_sae = /m.test(confOf(d)));
    assert(def.length === 1 && new RegExp(`^default_sae = ${plan.default_sae.replace(/\./g, "\\.")}$`, "m").test(confOf(def[0])),
      "default_sae set other than once, on the default SAE's partition");
    if (plan.search) {
      assert(searchDep, "plan.json asks for search, no search Deployment");
      const ids = Object.keys(sections(confOf(searchDep)));
      const want = plan.saes.filter((s) => s.index).map((s) => s.id);
      assert(JSON.stringify(ids) === JSON.stringify(want), "the search Deployment does not serve exactly the indexed SAEs, in release order");
    }
  });

  check("release: saed.conf of every pod uses only keys saed knows", () => {
    const example = path.join(root, "config", "saed.conf");
    const known = new Set(confKeys(fs.readFileSync(example, "utf8"), true));
    const sectionKeys = new Set(["model", "index", "model_name", "hook_name", "hook_name_out", "neuronpedia_id", "source_id"]);
    for (const d of saedDeps) {
      const text = confOf(d);
      const top = text.split(/^\[sae /m)[0];
      const bad = confKeys(top).filter((k) => !known.has(k));
      for (const kv of Object.values(sections(text))) bad.push(...Object.keys(kv).filter((k) => !sectionKeys.has(k)));
      assert(bad.length === 0, `${d.metadata.name}: unknown keys ${bad.join(", ")}`);
    }
  });

  // the router: nginx.conf's upstreams and maps, and the catalogue it serves
  const router = rk("Deployment").find((d) => d.metadata.labels["app.kubernetes.io/component"] === "router");
  const nginxConf = () => {
    const v = router.spec.template.spec.volumes.find((x) => x.name === router.spec.template.spec.containers[0].volumeMounts.find((m) => m.subPath === "nginx.conf").name);
    return rone("ConfigMap", v.configMap.name).data["nginx.conf"];
  };
  const nginxBlock = (text, head) => {
    const i = text.indexOf(head + " {");
    assert(i >= 0, `nginx.conf has no "${head} {"`);
    return text.slice(i + head.length + 2, text.indexOf("}", i));
  };
  check("release: the router's map sends every SAE id to the Service of the partition that serves it", () => {
    assert(router, "no router Deployment");
    const text = nginxConf();
    const map = {};
    for (const m of nginxBlock(text, "map $sae_id $sae_upstream").matchAll(/^\s*"([^"]+)"\s+(\S+);/gm)) map[m[1]] = m[2];
    for (const s of plan.saes) {
      const up = map[s.id];
      assert(up, `${s.id} is not in the map`);
      const server = /^\s*server\s+([^:\s;]+)/m.exec(nginxBlock(text, `upstream ${up}`))[1];
      const svc = rone("Service", server);
      const dep = partDeps.find((d) => labelsMatch(svc.spec.selector, d.spec.template.metadata.labels));
      assert(dep, `${s.id}: Service ${server} selects no partition`);
      assert(sections(confOf(dep))[s.id], `${s.id} goes to ${server}, whose pods do not serve it`);
    }
    assert(Object.keys(map).length === plan.saes.length, "the map names SAEs plan.json does not list");
    const search = /location = \/v1\/search \{\s*proxy_pass http:\/\/(\S+);/.exec(text);
    if (plan.search) {
      const server = /^\s*server\s+([^:\s;]+)/m.exec(nginxBlock(text, `upstream ${search && search[1]}`))[1];
      assert(labelsMatch(rone("Service", server).spec.selector, searchDep.spec.template.metadata.labels), "/v1/search does not go to the search Deployment");
    }
  });

  check("release: the catalogue lists every SAE in release order, has_index as served, one default", () => {
    const text = nginxConf();
    const rootDir = /^\s*root\s+(\S+);/m.exec(text)[1];
    const c = router.spec.template.spec.containers[0];
    const m = c.volumeMounts.find((x) => x.mountPath === rootDir);
    assert(m, `nginx serves ${rootDir}, which is not mounted`);
    const cat = rone("ConfigMap", router.spec.template.spec.volumes.find((v) => v.name === m.name).configMap.name).data;
    const list = JSON.parse(cat["saes.json"]).saes;
    assert(JSON.stringify(list.map((e) => e.id)) === JSON.stringify(plan.saes.map((s) => s.id)), "ids or order differ from plan.json");
    assert(list.filter((e) => e.default).length === 1 && list.find((e) => e.default).id === plan.default_sae, "default");
    for (const e of list) {
      const s = plan.saes.find((x) => x.id === e.id);
      assert(e.has_index === Boolean(s.index), `${e.id}: has_index ${e.has_index}`);
      assert(cat[`sae.${e.id}.json`] && JSON.stringify(JSON.parse(cat[`sae.${e.id}.json`])) === JSON.stringify(e), `sae.${e.id}.json`);
    }
    assert(Object.keys(cat).length === list.length + 1, "catalogue files for SAEs not listed");
  });

  const bytes = (q) => {
    const m = /^([0-9]+)(Ki|Mi|Gi|Ti)?$/.exec(String(q));
    return Number(m[1]) * { undefined: 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 }[m[2]];
  };
  check("release: each pod's memory limit holds the weights it keeps mapped and the indexes it holds", () => {
    for (const d of saedDeps) {
      const r = d.spec.template.spec.containers[0].resources;
      assert(String(r.requests.memory) === String(r.limits.memory), `${d.metadata.name}: request != limit`);
      const ids = Object.keys(sections(confOf(d)));
      const saes = plan.saes.filter((s) => ids.includes(s.id));
      const budget = /^max_mapped_bytes = ([0-9]+)$/m.exec(confOf(d));
      const weights = budget ? Number(budget[1]) : saes.reduce((a, s) => a + s.weights_bytes, 0);
      const need = weights + saes.reduce((a, s) => a + s.index_bytes, 0);
      assert(bytes(r.limits.memory) >= need, `${d.metadata.name}: limit ${r.limits.memory} < ${need} bytes of weights and indexes`);
    }
  });
}

console.log(`deploy-validate-node: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
