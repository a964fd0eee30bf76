# Sourced by scripts/demo.sh and scripts/test.sh.

# logged LOG CMD...: runs CMD with stdout and stderr into the file LOG. Quiet
# when CMD succeeds; when it fails, prints LOG and the failed command on
# stderr. Returns CMD's status. The caller owns LOG (it may read it after).
logged() {
  local log=$1 rc=0; shift
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$log" >&2
    echo "${0##*/}: failed (exit $rc): $*" >&2
  fi
  return "$rc"
}
