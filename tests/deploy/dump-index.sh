#!/usr/bin/env bash
# dump-index.sh DB: an index's content in a deterministic order, for
# comparing two builds (tests/deploy/shards.sh, tests/integration/index_cli.sh):
# application_id, user_version, then every table (FTS shadow tables
# excepted: their b-tree layout depends on insertion batches; the FTS content
# is checked through a query instead), rows sorted by every column, as SQL
# literals (blobs in hex).
set -uo pipefail
dump() {
  local db=$1 t cols
  echo "application_id $(sqlite3 -readonly "$db" 'PRAGMA application_id')"
  echo "user_version $(sqlite3 -readonly "$db" 'PRAGMA user_version')"
  sqlite3 -readonly "$db" "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master
                           WHERE name NOT LIKE 'explanations_fts_%' ORDER BY type, name"
  for t in $(sqlite3 -readonly "$db" "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'explanations_fts%' AND name NOT LIKE 'sqlite_%' ORDER BY name"); do
    cols=$(sqlite3 -readonly "$db" "SELECT group_concat(name, ',') FROM pragma_table_info('$t')")
    echo "== $t ($cols)"
    sqlite3 -readonly -cmd '.mode quote' "$db" "SELECT * FROM \"$t\" ORDER BY $cols"
  done
  if sqlite3 -readonly "$db" "SELECT 1 FROM sqlite_master WHERE name = 'explanations_fts'" | grep -q 1; then
    echo "== explanations_fts rows"
    sqlite3 -readonly -cmd '.mode quote' "$db" "SELECT rowid, description FROM explanations_fts ORDER BY rowid"
  fi
}
dump "$1"
