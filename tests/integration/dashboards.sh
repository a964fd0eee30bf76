#!/usr/bin/env bash
# dashboards.sh: `sae index --unembed/--vocab/--correlations/--upgrade` as
# processes, checked against a brute-force double-precision oracle
# (dashboards_oracle.py) on GPT-2, Llama (sharded) and Gemma layout
# checkpoints and a plain W_U file (mklm.py); an index without the flags has
# no dashboards tables and schema version 1, `--upgrade` adds them without
# touching the rest (and leaves the file byte-identical when it fails); saed
# serves them in the feature JSON, null when not computed.
# --neuronpedia-hist's exact activation bars are checked against SAEDashboard's
# definition by brute force (np_hist_oracle.py), built inline and by
# --upgrade of merged shards, and served by saed and `sae export`.
# Env: SAE_BIN, SAED_BIN, MKFIXTURE, SAE_TEST_TMP, SAE_SOURCE_ROOT.
# Last line: "dashboards: P passed, F failed".
set -uo pipefail
sae=${SAE_BIN:?} saed=${SAED_BIN:?} mkf=${MKFIXTURE:?} here=${SAE_SOURCE_ROOT:?}/tests/integration
work=$(mktemp -d "${SAE_TEST_TMP:-/tmp}/dashboards.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }
check() { if eval "$2"; then pass "$1"; else fail "$1" "${3:-}"; fi; }
cd "$work"
"$mkf" --out sae --d-in 16 --d-sae 64 --target-l0 8 --activations acts.safetensors --rows 600 >/dev/null
python3 - <<'PY'
import json, random
rng, done, d = random.Random(600), 0, 0
with open("tok.jsonl", "w") as f:
    while done < 600:
        k = min(rng.randint(0, 60), 600 - done)
        f.write(json.dumps({"id": "d%d" % d, "tokens": [" t%d" % rng.randint(0, 999) for _ in range(k)]}) + "\n")
        done, d = done + k, d + 1
PY
for k in gpt2 llama gemma wu; do python3 "$here/mklm.py" "$k" 16 300 "$k"; done
build() { # out extra-flags...
  local out=$1; shift
  "$sae" index --model sae --activations acts.safetensors --tokens tok.jsonl --out "$out" --quiet "$@"
}
"$sae" encode --model sae --activations acts.safetensors --out enc.jsonl --quiet

# ---- builds against the oracle
build gpt2.db --unembed gpt2 --vocab gpt2/vocab.json --correlations 2>err; rc=$?
check "gpt2 checkpoint with --correlations: exit 0" '[ $rc -eq 0 ]' "$(cat err)"
python3 "$here/dashboards_oracle.py" gpt2 gpt2 sae gpt2.db acts.safetensors enc.jsonl >out 2>&1; orc=$?
check "gpt2: logits, histogram, alignment, correlations match the oracle" '[ $orc -eq 0 ]' "$(head -5 out)"
for k in llama gemma; do
  build $k.db --unembed $k --vocab $k/vocab.json 2>err; rc=$?
  python3 "$here/dashboards_oracle.py" $k $k sae $k.db >out 2>&1; orc=$?
  check "$k checkpoint: match the oracle" '[ $rc -eq 0 ] && [ $orc -eq 0 ]' "$(cat err; head -5 out)"
done
build wu.db --unembed wu/W_U.safetensors --vocab wu/vocab.json 2>err; rc=$?
python3 "$here/dashboards_oracle.py" wu wu sae wu.db >out 2>&1; orc=$?
check "W_U file used as given: match the oracle" '[ $rc -eq 0 ] && [ $orc -eq 0 ]' "$(cat err; head -5 out)"
check "the oracle fails on another composition" \
  '! python3 "$here/dashboards_oracle.py" gemma gemma sae gpt2.db >/dev/null 2>&1'

# ---- without the flags: schema version 1, no new tables; same file twice
build plain.db && build plain2.db
# 002_dashboards.sql is applied on demand; 003_scores.sql, 005_list_indexes.sql and
# 006_best_score.sql always
# (user_version 6).
check "plain build: user_version 6, no dashboards tables, reproducible" \
  '[ "$(sqlite3 plain.db "PRAGMA user_version; SELECT count(*) FROM sqlite_master WHERE name IN (\"logits\", \"logit_tokens\", \"neuron_tables\")" | tr "\n" " ")" = "6 0 " ] && cmp -s plain.db plain2.db'
# 004_act_bars.sql is on demand too, applied with 002 (user_version still 6).
check "dashboards build: user_version 6, with the dashboards tables" \
  '[ "$(sqlite3 gpt2.db "PRAGMA user_version; SELECT count(*) FROM sqlite_master WHERE name IN (\"logits\", \"logit_tokens\", \"neuron_tables\", \"act_bars\")" | tr "\n" " ")" = "6 4 " ]'

# ---- usage
"$sae" index --model sae --activations acts.safetensors --tokens tok.jsonl --out x.db --unembed gpt2 2>err; rc=$?
check "--unembed without --vocab: exit 2" '[ $rc -eq 2 ] && grep -q -- "--vocab" err && [ ! -e x.db ]'
"$sae" index --upgrade plain.db --model sae --unembed gpt2 --vocab gpt2/vocab.json --correlations 2>err; rc=$?
check "--upgrade with --correlations: exit 2" '[ $rc -eq 2 ] && cmp -s plain.db plain2.db'
build x.db --shard 0/2 --unembed gpt2 --vocab gpt2/vocab.json 2>err; rc=$?
check "--unembed with --shard: exit 1 naming --upgrade" '[ $rc -eq 1 ] && grep -q -- "--upgrade" err' "$(cat err)"

# ---- upgrade
python3 "$here/mklm.py" narrow 8 300 gpt2
"$sae" index --upgrade plain.db --model sae --unembed narrow --vocab narrow/vocab.json 2>err; rc=$?
check "--upgrade with a W_U of another d_model: exit 1, file untouched" \
  '[ $rc -eq 1 ] && grep -q "d_model 8" err && cmp -s plain.db plain2.db && [ -z "$(ls -A . | grep "^\.plain.db.tmp")" ]' "$(cat err)"
"$sae" index --upgrade plain.db --model sae --unembed gpt2 --vocab gpt2/vocab.json --quiet 2>err; rc=$?
python3 "$here/dashboards_oracle.py" gpt2 gpt2 sae plain.db >out 2>&1; orc=$?
check "--upgrade: exit 0, logit tables and alignment match the oracle" '[ $rc -eq 0 ] && [ $orc -eq 0 ]' "$(cat err; head -5 out)"
dump() { sqlite3 "$1" ".dump features vocab documents examples neighbours explanations meta"; }
check "--upgrade keeps every other table" '[ "$(dump plain.db | md5sum)" = "$(dump plain2.db | md5sum)" ]'
check "--upgrade: the same logits as a build with --unembed" \
  '[ "$(sqlite3 plain.db ".dump logits logit_tokens" | md5sum)" = "$(sqlite3 gpt2.db ".dump logits logit_tokens" | md5sum)" ]'

# ---- saed's feature JSON
feature() { # index.db feature [np.json] -> saed's JSON on stdout (and the Neuronpedia route's)
  "$saed" --model sae --index "$1" --listen 127.0.0.1:0 --model-name m --hook-name h 2>saed.err &
  local pid=$! port=
  # Polled up to 60 s: a loaded machine can take more than a few seconds to
  # open the index and pre-render before saed prints where it listens.
  for _ in $(seq 600); do port=$(grep -o "127.0.0.1:[0-9]*" saed.err | head -1); [ -n "$port" ] && break; sleep 0.1; done
  python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://$port/v1/features/$2').read().decode())"
  [ -z "${3:-}" ] || python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://$port/api/feature/m/h/$2').read().decode())" >"$3"
  kill "$pid"; wait "$pid" 2>/dev/null
}
feature gpt2.db 5 np.json >f.json
python3 - "$work" >out 2>&1 <<'PY'
import json, sqlite3, struct, sys
f = json.load(open("f.json"))
row = sqlite3.connect("gpt2.db").execute("SELECT pos_ids, pos_values, hist FROM logits WHERE feature = 5").fetchone()
ids = list(struct.unpack("<10I", row[0])); vals = list(struct.unpack("<10f", row[1]))
assert [p["id"] for p in f["logits"]["pos"]] == ids, f["logits"]["pos"]
assert all(abs(p["value"] - v) < 1e-6 for p, v in zip(f["logits"]["pos"], vals))
assert f["logits"]["histogram"]["bar_heights"] == list(struct.unpack("<50I", row[2]))
assert len(f["logits"]["histogram"]["bar_values"]) == 50
assert len(f["neuron_alignment"]) == 3 and len(f["correlated_neurons"]) == 3
PY
orc=$?
check "saed: feature JSON holds the stored tables" '[ $orc -eq 0 ]' "$(cat out)"
# The Neuronpedia route carries the same tables under SAEDashboard's names.
python3 - >out 2>&1 <<'PY'
import json
f, n = json.load(open("f.json")), json.load(open("np.json"))
lg = f["logits"]
assert n["pos_str"] == [p["token"] for p in lg["pos"]], (n["pos_str"], lg["pos"])
assert n["pos_values"] == [p["value"] for p in lg["pos"]]
assert n["neg_str"] == [p["token"] for p in lg["neg"]]
assert n["neg_values"] == [p["value"] for p in lg["neg"]]
assert n["logits_hist_data_bar_heights"] == lg["histogram"]["bar_heights"]
assert n["logits_hist_data_bar_values"] == lg["histogram"]["bar_values"]
assert n["neuron_alignment_indices"] == [r["index"] for r in f["neuron_alignment"]]
assert n["neuron_alignment_values"] == [r["value"] for r in f["neuron_alignment"]]
assert n["neuron_alignment_l1"] == [r["l1"] for r in f["neuron_alignment"]]
assert n["correlated_neurons_indices"] == [r["index"] for r in f["correlated_neurons"]]
assert n["correlated_neurons_pearson"] == [r["pearson"] for r in f["correlated_neurons"]]
PY
orc=$?
check "saed: the Neuronpedia route holds the same tables (pos_str, logits_hist_*, neuron_alignment_*)" \
  '[ $orc -eq 0 ]' "$(cat out)"
# `sae export --neuronpedia` writes the same fields into its batch files.
rm -rf np-export
"$sae" export --neuronpedia np-export --model m --index gpt2.db --layer 0 --sae-set s --quiet >/dev/null 2>out
python3 - >>out 2>&1 <<'PY'
import glob, gzip, json
n = json.load(open("np.json"))
feats = [x for b in sorted(glob.glob("np-export/*.json.gz")) for x in json.load(gzip.open(b))["features"]]
e = next(x for x in feats if x["feature_index"] == 5)
for k in ("pos_str", "neg_str", "logits_hist_data_bar_heights", "neuron_alignment_indices",
          "correlated_neurons_indices"):
    assert e[k] == n[k], (k, e[k], n[k])
for k in ("pos_values", "neg_values", "neuron_alignment_values", "correlated_neurons_pearson"):
    assert all(abs(a - b) < 1e-6 for a, b in zip(e[k], n[k])) and len(e[k]) == len(n[k]), k
PY
orc=$?
check "sae export: the batch files carry the same tables" '[ $orc -eq 0 ]' "$(cat out)"
feature plain2.db 5 np.json >f.json
check "saed: the Neuronpedia route leaves them out when the index lacks them" \
  'python3 -c "import json; n = json.load(open(\"np.json\")); assert not any(k.startswith((\"pos_\", \"neg_\", \"logits_hist\", \"neuron_alignment\", \"correlated_neurons\")) for k in n)"'
check "saed: an index without them answers null" \
  'python3 -c "import json; f = json.load(open(\"f.json\")); assert f[\"logits\"] is None and f[\"neuron_alignment\"] is None and f[\"correlated_neurons\"] is None"'

# ---- --neuronpedia-hist: SAEDashboard's activation bars, exact
nph() { python3 "$here/np_hist_oracle.py" "$@" >out 2>&1; }
build np.db --neuronpedia-hist 2>err; rc=$?
nph np.db enc.jsonl; orc=$?
check "--neuronpedia-hist: exit 0, bars match SAEDashboard's by brute force" '[ $rc -eq 0 ] && [ $orc -eq 0 ]' "$(cat err; head -5 out)"
check "the bars oracle fails on a moved range" \
  'cp np.db moved.db && sqlite3 moved.db "UPDATE act_bars SET act_min = act_min * 1.001 WHERE feature = 5" && ! nph moved.db enc.jsonl'
check "an index without --neuronpedia-hist has no bars (the oracle sees none)" \
  '[ "$(sqlite3 gpt2.db "SELECT count(*) FROM act_bars")" = 0 ] && ! nph gpt2.db enc.jsonl'
feature np.db 5 np5.json >/dev/null
feature np.db 0 np0.json >/dev/null
nph np.db enc.jsonl 5 np5.json 0 np0.json; orc=$?
check "saed: the Neuronpedia route serves the exact bars and SAEDashboard's bar values" '[ $orc -eq 0 ]' "$(head -5 out)"
rm -rf np-export
"$sae" export --neuronpedia np-export --model m --index np.db --layer 0 --sae-set s --quiet >/dev/null 2>out
python3 - <<'PY'
import glob, gzip, json
for b in sorted(glob.glob("np-export/*.json.gz")):
    for x in json.load(gzip.open(b))["features"]:
        json.dump(x, open("exp%d.json" % x["feature_index"], "w"))
PY
nph np.db enc.jsonl 5 exp5.json 0 exp0.json 63 exp63.json; orc=$?
check "sae export: the batch files carry the exact bars" '[ $orc -eq 0 ]' "$(head -5 out)"
# Sharded: merge, then --upgrade reads the corpus twice (range, bars).
build s0.db --shard 0/2 && build s1.db --shard 1/2 && "$sae" merge --out merged.db s1.db s0.db --quiet 2>err
"$sae" index --upgrade s0.db --model sae --neuronpedia-hist --activations acts.safetensors --tokens tok.jsonl --quiet 2>err; rc=$?
check "--upgrade --neuronpedia-hist of a shard: exit 1 naming the merge" '[ $rc -eq 1 ] && grep -q "merge" err' "$(cat err)"
cp merged.db merged0.db
"$sae" index --upgrade merged.db --model sae --neuronpedia-hist --quiet 2>err; rc=$?
check "--upgrade --neuronpedia-hist without the corpus: exit 2, file untouched" '[ $rc -eq 2 ] && cmp -s merged.db merged0.db' "$(cat err)"
head -c -1 tok.jsonl >tok2.jsonl && echo ' ' >>tok2.jsonl
"$sae" index --upgrade merged.db --model sae --neuronpedia-hist --activations acts.safetensors --tokens tok2.jsonl --quiet 2>err; rc=$?
check "--upgrade --neuronpedia-hist with another tokens file: exit 1, file untouched" \
  '[ $rc -eq 1 ] && grep -q "tokens file" err && cmp -s merged.db merged0.db' "$(cat err)"
"$sae" index --upgrade merged.db --model sae --neuronpedia-hist --activations acts.safetensors --tokens tok.jsonl --quiet 2>err; rc=$?
nph merged.db enc.jsonl; orc=$?
check "merged shards, then --upgrade --neuronpedia-hist: exit 0, bars match the oracle" '[ $rc -eq 0 ] && [ $orc -eq 0 ]' "$(cat err; head -5 out)"
check "merged and upgraded: the same bars as the inline build" \
  '[ "$(sqlite3 merged.db ".dump act_bars" | md5sum)" = "$(sqlite3 np.db ".dump act_bars" | md5sum)" ]'
# An index with dashboards from before schema/004 still opens (rebinned
# bars), and --upgrade adds the exact ones (and schema/006's best_score).
cp wu.db old.db && sqlite3 old.db "DROP TABLE act_bars; DROP INDEX features_score_asc; DROP INDEX features_score_desc; DROP INDEX features_live_density_asc; DROP INDEX features_live_max_asc; DROP INDEX features_live_score_asc; ALTER TABLE features DROP COLUMN best_score; PRAGMA user_version = 3" && cp old.db old0.db
feature old.db 5 old5.json >/dev/null
check "an index from before act_bars: the route rebins (total = n_active)" \
  'python3 -c "import json, sqlite3; n = json.load(open(\"old5.json\")); a = sqlite3.connect(\"old.db\").execute(\"SELECT n_active FROM features WHERE idx = 5\").fetchone()[0]; assert len(n[\"freq_hist_data_bar_heights\"]) == 50 and sum(n[\"freq_hist_data_bar_heights\"]) == a"'
"$sae" index --upgrade old.db --model sae --neuronpedia-hist --activations acts.safetensors --tokens tok.jsonl --quiet 2>err; rc=$?
nph old.db enc.jsonl; orc=$?
check "--upgrade --neuronpedia-hist of it: exit 0, bars match, logits kept, best_score added" \
  '[ $rc -eq 0 ] && [ $orc -eq 0 ] && [ "$(sqlite3 old.db "PRAGMA user_version; SELECT count(*) FROM pragma_index_list(\"features\") WHERE name LIKE \"features_score_%\"" | tr "\n" " ")" = "6 2 " ] && [ "$(sqlite3 old.db ".dump logits" | md5sum)" = "$(sqlite3 wu.db ".dump logits" | md5sum)" ]' "$(cat err; head -5 out)"

echo "dashboards: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
