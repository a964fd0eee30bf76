# lib.sh: helpers shared by tests/deploy/*.sh (sourced, not run).

deploy_passed=0
deploy_failed=0
deploy_skipped=0

# pass NAME / fail NAME WHY / skip NAME WHY: one line per check, counted.
pass() { deploy_passed=$((deploy_passed + 1)); echo "ok - $1"; }
fail() { deploy_failed=$((deploy_failed + 1)); echo "not ok - $1: $2"; }
skip() { deploy_skipped=$((deploy_skipped + 1)); echo "skip - $1: $2"; }

# summary PREFIX: the closing line, and the exit status for the caller.
summary() {
  if [ "$deploy_skipped" -gt 0 ]; then
    echo "$1: $deploy_passed passed, $deploy_failed failed, $deploy_skipped skipped"
  else
    echo "$1: $deploy_passed passed, $deploy_failed failed"
  fi
  [ "$deploy_failed" -eq 0 ]
}

# need_cmd CMD DEBIAN_PACKAGE: install the package with apt-get when CMD is
# missing (as root; otherwise say what to install and fail).
need_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "deploy: $1 missing: apt-get install -y $2" >&2
    return 1
  fi
  echo "deploy: installing $2 (for $1)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$2" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "$2" >/dev/null 2>&1; }
  command -v "$1" >/dev/null 2>&1
}

# render_nginx_conf SRC DST PREFIX LISTEN_PORT UPSTREAM...: deploy/nginx.conf (or
# the router of a partitioned release) as written, with only what differs on a
# test machine rewritten: the upstream server addresses, the listen port, and
# pid/log/temp paths under PREFIX (so it runs beside a system nginx, as any
# user). An UPSTREAM ADDR replaces the first "server IP:PORT" line and drops the
# others; NAME=ADDR replaces "server NAME" (a Service's name) by ADDR;
# root=DIR replaces the "root" directive's folder.
render_nginx_conf() {
  local src=$1 dst=$2 prefix=$3 port=$4
  shift 4
  local servers="" names="" docroot="" a
  for a in "$@"; do
    case $a in
      root=*) docroot=${a#root=} ;;
      *=*) names="$names$a " ;;
      *) servers="$servers$a " ;;
    esac
  done
  mkdir -p "$prefix/logs" "$prefix/tmp"
  awk -v servers="$servers" -v names="$names" -v docroot="$docroot" -v port="$port" -v prefix="$prefix" '
    BEGIN { n = split(servers, addr, " "); i = 0
            m = split(names, pairs, " ")
            for (j = 1; j <= m; j++) { eq = index(pairs[j], "="); to[substr(pairs[j], 1, eq - 1)] = substr(pairs[j], eq + 1) } }
    /^[ \t]*pid[ \t]/        { print "pid " prefix "/nginx.pid;"; next }
    /^[ \t]*error_log[ \t]/  { print "error_log " prefix "/logs/error.log warn;"; next }
    /^[ \t]*access_log[ \t]+\// { sub(/\/[^ ;]*/, prefix "/logs/access.log"); print; next }
    /^[ \t]*listen[ \t]/     { sub(/listen[ \t]+[0-9]+/, "listen 127.0.0.1:" port); print; next }
    /^[ \t]*http[ \t]*\{/    { print; print "    client_body_temp_path " prefix "/tmp/body;";
                               print "    proxy_temp_path " prefix "/tmp/proxy;";
                               print "    fastcgi_temp_path " prefix "/tmp/fastcgi;";
                               print "    uwsgi_temp_path " prefix "/tmp/uwsgi;";
                               print "    scgi_temp_path " prefix "/tmp/scgi;"; next }
    /^[ \t]*root[ \t]/ && docroot != "" { sub(/root[ \t]+[^;]*/, "root " docroot); print; next }
    /^[ \t]*server[ \t]+[A-Za-z][A-Za-z0-9.-]*(:[0-9]+)?[ \t;]/ {
      name = $2; sub(/;$/, "", name)
      if (name in to) { sub(/server[ \t]+[^ \t;]+/, "server " to[name]); print; next } }
    /^[ \t]*server[ \t]+[0-9.]+:[0-9]+/ {
      # one template server line -> every test address, keeping its parameters
      if (i == 0) {
        params = $0; sub(/^[ \t]*server[ \t]+[^ \t;]+/, "", params)
        for (j = 1; j <= n; j++) print "        server " addr[j] params
      }
      i++; next }
    { print }
  ' "$src" >"$dst"
}
