// commands.mjs: the saed command lines the deploy files run, rewritten for a
// test on loopback, so tests/deploy/replicas.sh can start saed exactly as the
// systemd unit, the Kubernetes Deployment and the container image would.
//
//   node commands.mjs ROOT OUTDIR SAED MODEL CONFIG PORT [INDEX]
//
// Writes OUTDIR/{unit,deployment,dockerfile}.argv (NUL-separated argv) and
// OUTDIR/configmap.conf (the ConfigMap's saed.conf). Rewritten: the binary
// path, the model, config and index paths, the listen address (to
// 127.0.0.1:PORT) and $(SAED_THREADS) (to 1); without INDEX, "--index X" is
// dropped. Everything else stays as written.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";

const [root, out, saed, model, config, port, index] = process.argv.slice(2);
if (!port) {
  console.error("usage: node commands.mjs ROOT OUTDIR SAED MODEL CONFIG PORT [INDEX]");
  process.exit(2);
}
const deploy = path.join(root, "deploy");

function rewrite(argv, paths) {
  const r = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (i === 0) r.push(saed);
    else if (a === "--index" && !index) i++;
    else if (a === "--listen") r.push(a, `127.0.0.1:${port}`), i++;
    else if (a === "$(SAED_THREADS)") r.push("1");
    else r.push(paths[a] ?? a);
  }
  return r;
}
function write(name, argv) {
  fs.writeFileSync(path.join(out, `${name}.argv`), argv.map((a) => a + "\0").join(""));
}

// systemd: ExecStart, continuation lines joined
const unit = fs.readFileSync(path.join(deploy, "saed.service"), "utf8").replace(/\\\n/g, " ");
const exec = /^ExecStart=(.*)$/m.exec(unit)[1].trim().split(/\s+/);
write("unit", rewrite(exec, {
  "/etc/saed/saed.conf": config,
  "/var/lib/saed/model": model,
  "/var/lib/saed/index/index.db": index,
}));

// Kubernetes: the Deployment's command + args, and the ConfigMap's config
const docs = fs.readdirSync(path.join(deploy, "k8s"))
  .filter((f) => f.endsWith(".yaml"))
  .flatMap((f) => YAML.parseAllDocuments(fs.readFileSync(path.join(deploy, "k8s", f), "utf8")).map((d) => d.toJS()));
const dep = docs.find((o) => o && o.kind === "Deployment");
const c = dep.spec.template.spec.containers[0];
const cm = docs.find((o) => o && o.kind === "ConfigMap");
const confPath = path.join(out, "configmap.conf");
fs.writeFileSync(confPath, cm.data["saed.conf"]);
write("deployment", rewrite((c.command || []).concat(c.args || []), {
  "/etc/saed/saed.conf": confPath,
  "/model": model,
  "/index/index.db": index,
}));

// the image: its CMD (exec form)
const df = fs.readFileSync(path.join(deploy, "Dockerfile"), "utf8");
const cmd = JSON.parse(/^CMD (\[.*\])\s*$/m.exec(df)[1]);
write("dockerfile", rewrite(cmd, { "/model": model, "/index/index.db": index }));
