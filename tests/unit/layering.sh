#!/usr/bin/env bash
# The dependency rules of the house (README): core knows nothing of HTTP,
# neither core nor cli includes server headers, and only core/store* speaks SQL.
# Prints each violation; exits 1 if there is any.
set -u
src=${1:?usage: layering.sh SOURCE_ROOT}
bad=0
check() { # check DESCRIPTION FILES... : every line given is a violation
  local what=$1; shift
  local hits
  hits=$(grep -nE "$what" "$@" 2>/dev/null)
  if [ -n "$hits" ]; then echo "layering: $hits"; bad=1; fi
}
check '#include *[<"]microhttpd\.h' "$src"/core/*.[ch] "$src"/cli/*.[ch]
check '#include *"(saed|router|batcher|reply|jsonin)\.h"' "$src"/core/*.[ch] "$src"/cli/*.[ch]
for f in "$src"/core/*.[ch] "$src"/cli/*.[ch] "$src"/server/*.[ch]; do
  case "$(basename "$f")" in store*) continue ;; esac
  check '#include *[<"]sqlite3\.h|sqlite3_[a-z_]+\(' "$f"
done
[ "$bad" = 0 ] && echo "layering: 1 passed, 0 failed"
exit "$bad"
