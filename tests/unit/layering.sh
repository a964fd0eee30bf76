#!/usr/bin/env bash
# The dependency rules of the house (README, "The house"):
#  - core knows nothing of HTTP; neither core nor cli includes server headers;
#  - only core/index/store* speaks SQL;
#  - inside core the subsystems point down: io <- sae <- {train, index, lm}, and
#    train and index do not include each other;
#  - no two core units include each other (a.c includes b.h and b.c a.h).
# Prints each violation; exits 1 if there is any.
set -u
src=${1:?usage: layering.sh SOURCE_ROOT}
bad=0
check() { # check PATTERN FILES... : every line matched is a violation
  local what=$1; shift
  local hits
  hits=$(grep -nE "$what" "$@" 2>/dev/null)
  if [ -n "$hits" ]; then echo "layering: $hits"; bad=1; fi
}
core_files=("$src"/core/*/*.[ch])
check '#include *[<"]microhttpd\.h' "${core_files[@]}" "$src"/cli/*.[ch]
check '#include *"(saed|router|batcher|reply|jsonin|http_parse|buf|config|metrics|reaper)\.h"' \
  "${core_files[@]}" "$src"/cli/*.[ch]
for f in "${core_files[@]}" "$src"/cli/*.[ch] "$src"/server/*.[ch]; do
  case "$f" in */core/index/store*) continue ;; esac
  check '#include *[<"]sqlite3\.h|sqlite3_[a-z_]+\(' "$f"
done
# Which folders each core folder may include from.
declare -A may=([io]='io' [sae]='io|sae' [train]='io|sae|train' [index]='io|sae|index' [lm]='io|sae|lm')
for dir in "${!may[@]}"; do
  for f in "$src"/core/"$dir"/*.[ch]; do
    [ -e "$f" ] || continue
    hits=$(grep -nE '#include *"[a-z_]+/' "$f" | grep -vE "#include *\"(${may[$dir]})/")
    if [ -n "$hits" ]; then echo "layering: $f: core/$dir may include only ${may[$dir]}: $hits"; bad=1; fi
    hits=$(grep -nE '#include *"[a-z_]+\.h"' "$f")
    if [ -n "$hits" ]; then echo "layering: $f: name the folder in core includes: $hits"; bad=1; fi
  done
done
# No include cycle between two core units (X.c/X.h against Y.c/Y.h): the
# include graph is read once (one grep over core), then each edge is looked
# up in the other direction.
declare -A edge=()
while IFS=: read -r file inc; do
  unit=${file#"$src"/core/}; unit=${unit%.[ch]}
  inc=${inc#*\"}; inc=${inc%%.h\"*}
  [ "$unit" != "$inc" ] && edge["$unit>$inc"]=1
done < <(grep -oE '#include *"[a-z_]+/[a-z_0-9]+\.h"' "$src"/core/*/*.[ch])
for e in "${!edge[@]}"; do
  a=${e%%>*} b=${e#*>}
  if [[ "$a" < "$b" && -n "${edge["$b>$a"]:-}" ]]; then
    echo "layering: core/$a and core/$b include each other"; bad=1
  fi
done
[ "$bad" = 0 ] && echo "layering: 1 passed, 0 failed"
exit "$bad"
