// partfiles.mjs: what the manifests of a partitioned release (deploy/partition.py's
// output) run, rewritten for processes on loopback, so tests/deploy/partitions.sh starts
// every saed and the router exactly as the pods would.
//
//   node partfiles.mjs MANIFEST_DIR OUTDIR SAED BASE_PORT CLAIM=DIR...
//
// For every Deployment running saed (in name order): OUTDIR/NAME.conf (its ConfigMap's
// saed.conf) and OUTDIR/NAME.argv (command + args, NUL-separated), with the binary, the
// config path, --listen (127.0.0.1:BASE_PORT+1, +2, ...) and $(SAED_THREADS) (1)
// rewritten, and each volume's mount path replaced by the local DIR of its claim
// (CLAIM=DIR) in both. For the router: OUTDIR/nginx.conf and the catalogue ConfigMap's
// files in OUTDIR/catalogue/. On stdout, one line per saed Deployment:
// "NAME SERVICE_HOST:PORT 127.0.0.1:LOCAL_PORT", the address the router's upstream names
// and the one the process listens on.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";

const [dir, out, saed, basePort, ...claimArgs] = process.argv.slice(2);
if (!basePort) {
  console.error("usage: node partfiles.mjs MANIFEST_DIR OUTDIR SAED BASE_PORT CLAIM=DIR...");
  process.exit(2);
}
const claims = Object.fromEntries(claimArgs.map((a) => a.split(/=(.*)/s).slice(0, 2)));
const objs = fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()
  .flatMap((f) => YAML.parseAllDocuments(fs.readFileSync(path.join(dir, f), "utf8")).map((d) => d.toJS()))
  .filter((o) => o && o.kind);
const find = (kind, name) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in ${dir}`);
  return o;
};
const labelsMatch = (sel, labels) => Object.entries(sel).every(([k, v]) => labels[k] === v);

const deployments = objs.filter((o) => o.kind === "Deployment").sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
let port = Number(basePort);
for (const dep of deployments) {
  const pod = dep.spec.template.spec;
  const c = pod.containers[0];
  const argv = (c.command || []).concat(c.args || []);
  if (argv[0] !== "saed") {
    // the router: its nginx.conf and the catalogue it serves
    const vol = (n) => pod.volumes.find((v) => v.name === n);
    for (const m of c.volumeMounts) {
      const v = vol(m.name);
      if (!v.configMap) continue;
      const cm = find("ConfigMap", v.configMap.name);
      if (m.subPath) fs.writeFileSync(path.join(out, m.subPath), cm.data[m.subPath]);
      else {
        fs.mkdirSync(path.join(out, "catalogue"), { recursive: true });
        for (const [k, text] of Object.entries(cm.data)) fs.writeFileSync(path.join(out, "catalogue", k), text);
      }
    }
    continue;
  }
  // mount path -> local folder, for the claims' volumes
  const local = {};
  for (const m of c.volumeMounts) {
    const v = pod.volumes.find((x) => x.name === m.name);
    if (v.persistentVolumeClaim) {
      const d = claims[v.persistentVolumeClaim.claimName];
      if (!d) throw new Error(`${dep.metadata.name}: no local folder for claim ${v.persistentVolumeClaim.claimName}`);
      local[m.mountPath] = d;
    }
  }
  const relocate = (p) => {
    for (const [mp, d] of Object.entries(local)) if (p === mp || p.startsWith(mp + "/")) return d + p.slice(mp.length);
    return p;
  };
  const name = dep.metadata.name;
  const confArg = argv[argv.indexOf("--config") + 1];
  const cmVol = pod.volumes.find((v) => v.configMap && c.volumeMounts.some((m) => m.name === v.name && confArg.startsWith(m.mountPath + "/")));
  const conf = find("ConfigMap", cmVol.configMap.name).data[path.posix.basename(confArg)];
  fs.writeFileSync(path.join(out, `${name}.conf`),
    conf.split("\n").map((l) => l.replace(/^(\s*(?:model|index)\s*=\s*)(\S+)\s*$/, (_, k, p) => k + relocate(p))).join("\n"));
  port++;
  const r = argv.map((a, i) => (i === 0 ? saed : a === "$(SAED_THREADS)" ? "1" : a));
  r[r.indexOf("--config") + 1] = path.join(out, `${name}.conf`);
  r[r.indexOf("--listen") + 1] = `127.0.0.1:${port}`;
  fs.writeFileSync(path.join(out, `${name}.argv`), r.map((a) => a + "\0").join(""));
  // the Service that selects this Deployment's pods: the router's name for it
  const svc = objs.find((o) => o.kind === "Service" && labelsMatch(o.spec.selector, dep.spec.template.metadata.labels));
  if (!svc) throw new Error(`no Service selects ${name}`);
  console.log(`${name} ${svc.metadata.name}:${svc.spec.ports[0].port} 127.0.0.1:${port}`);
}
