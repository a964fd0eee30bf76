#!/usr/bin/env bash
# Runs the web browser tests (tests/web/*.test.mjs) in headless Chromium
# against a real saed. Installs what is missing first: Debian's chromium (apt-get,
# as root) and playwright-core (npm ci, from package-lock.json).
#
# usage:
#   tests/web/run.sh [OPTIONS] --base URL
#       test the saed already listening at URL (e.g. http://127.0.0.1:8080)
#   tests/web/run.sh [OPTIONS] --saed BIN [--model DIR [--index FILE.db]] [-- SAED_ARGS...]
#       start BIN [--model DIR [--index FILE.db]] --listen 127.0.0.1:PORT [SAED_ARGS...],
#       wait for /v1/health, test it, stop it. Without --model the SAEs come
#       from SAED_ARGS: many SAEs, e.g. -- --sae a=DIR --index a=FILE.db --sae b=DIR2
#       or -- --config FILE with [sae ID] sections (CONTRACT section 7).
#       text.test.mjs then also starts BIN on its own, with the GPT-2 fixture as
#       its language model (skipped with --base)
# options:
#   --screenshots[=DIR]  write a PNG of each page at 1280x800 and 390x844
#                        (default DIR: docs/screenshots)
#   --api-key KEY        the saed's API key (also tests the browser's key prompt);
#                        default: $SAED_API_KEY. With --saed, saed gets it too
#                        (through $SAED_API_KEY, off its command line)
#   --port N             port for --saed (default: a free one)
# env: SAED_WIDE=DIR     also wide.test.mjs, with --saed: the browser on the
#                        1,048,576-feature index bench/features_wide.sh leaves in DIR
# exit status: 0 all passed, 1 a test failed, 2 bad usage or saed did not start.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "web tests: $*" >&2; exit 2; }

base='' saed='' model='' index='' port='' shots='' key=${SAED_API_KEY:-}
saed_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base=${2:?}; shift 2 ;;
    --saed) saed=${2:?}; shift 2 ;;
    --model) model=${2:?}; shift 2 ;;
    --index) index=${2:?}; shift 2 ;;
    --port) port=${2:?}; shift 2 ;;
    --api-key) key=${2:?}; shift 2 ;;
    --screenshots) shots="$root/docs/screenshots"; shift ;;
    --screenshots=*) shots=${1#--screenshots=}; shift ;;
    --) shift; saed_args=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "web tests: unknown argument: $1" >&2; usage ;;
  esac
done
if [ -n "$base" ] && [ -n "$saed" ]; then die "give --base or --saed, not both"; fi
if [ -z "$base" ] && [ -z "$saed" ]; then usage; fi
if [ -n "$saed" ] && [ -z "$model" ] && [ ${#saed_args[@]} -eq 0 ]; then
  die "--saed needs --model DIR or the SAEs as saed arguments after --"
fi
if [ -n "$index" ] && [ -z "$model" ]; then die "--index FILE.db goes with --model DIR"; fi

# Chromium from Debian (a browser build downloaded by a test tool cannot be used here).
chromium_bin=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ ! -x "$chromium_bin" ]; then
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install chromium (or set CHROMIUM_PATH)"
  echo "web tests: installing chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >&2
fi
command -v node >/dev/null || die "node (>= 18) is needed: apt-get install nodejs npm"
if [ ! -d "$here/node_modules/playwright-core" ] ||
   [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  echo "web tests: npm ci in tests/web" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

pid=''
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

if [ -n "$saed" ]; then
  [ -x "$saed" ] || die "$saed: not an executable"
  if [ -z "$port" ]; then
    port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  fi
  log=$(mktemp -t saed-web.XXXXXX.log)
  cmd=("$saed")
  [ -n "$model" ] && cmd+=(--model "$model")
  [ -n "$index" ] && cmd+=(--index "$index")
  cmd+=(--listen "127.0.0.1:$port" "${saed_args[@]}")
  echo "web tests: starting ${cmd[*]} (log: $log)" >&2
  SAED_API_KEY="$key" "${cmd[@]}" >"$log" 2>&1 &
  pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 150); do
    if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$base/v1/health"; then
      break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; pid=''; die "saed exited before it was ready"; }
    sleep 0.2
  done
  node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$base/v1/health" ||
    { tail -20 "$log" >&2; die "saed did not answer /v1/health within 30 s"; }
fi

echo "web tests: against $base${shots:+, screenshots to $shots}" >&2
# text.test.mjs starts a saed of its own (with a language model) from the same build.
saed_abs=''
if [ -n "$saed" ]; then saed_abs="$(cd "$(dirname "$saed")" && pwd)/$(basename "$saed")"; fi
cd "$here"
SAED_BASE="$base" SAED_API_KEY="$key" SAED_SCREENSHOTS="$shots" CHROMIUM_PATH="$chromium_bin" \
  SAED_BIN="$saed_abs" \
  node --test --test-concurrency=1 format.test.mjs release.test.mjs static.test.mjs browser.test.mjs saes.test.mjs truth.test.mjs audit.test.mjs \
    context.test.mjs loading.test.mjs text.test.mjs wide.test.mjs ||
  exit 1
