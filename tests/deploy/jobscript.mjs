// jobscript.mjs: the shell script and environment of a Job's container, as
// written in a manifest, so tests/deploy/shards.sh can run exactly what the
// pod would run, as a local process.
//
//   node jobscript.mjs MANIFEST.yaml OUT_PREFIX
//
// Writes OUT_PREFIX.sh (the script given to /bin/sh -c) and OUT_PREFIX.env
// (NAME=value lines of the container's literal env entries).
import fs from "node:fs";
import YAML from "yaml";

const [file, out] = process.argv.slice(2);
if (!file || !out) {
  console.error("usage: node jobscript.mjs MANIFEST.yaml OUT_PREFIX");
  process.exit(2);
}
const job = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))
  .map((d) => d.toJS())
  .find((o) => o && o.kind === "Job");
if (!job) {
  console.error(`${file}: no Job`);
  process.exit(1);
}
const c = job.spec.template.spec.containers[0];
const cmd = (c.command || []).concat(c.args || []);
if (cmd.length !== 3 || cmd[0] !== "/bin/sh" || cmd[1] !== "-c") {
  console.error(`${file}: container command is not [/bin/sh, -c, SCRIPT]`);
  process.exit(1);
}
fs.writeFileSync(`${out}.sh`, cmd[2]);
const env = (c.env || []).filter((e) => "value" in e);
for (const e of env)
  if (/[\n\0]/.test(e.value)) {
    console.error(`${file}: env ${e.name} has a newline`);
    process.exit(1);
  }
fs.writeFileSync(`${out}.env`, env.map((e) => `${e.name}=${e.value}\n`).join(""));
const info = { completions: job.spec.completions ?? 1, parallelism: job.spec.parallelism ?? 1, mode: job.spec.completionMode ?? "NonIndexed" };
process.stdout.write(JSON.stringify(info) + "\n");
