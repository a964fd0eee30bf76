-- 005_list_indexes.sql: the feature list at a million rows (issue 19 point
-- 4). GET /v1/features pages by index, density and max_activation through
-- 001's indexes; these serve the rest without a full scan where SQLite can:
-- the live-only count (a partial index a tenth the size of the table when
-- most features are dead, and never wider than idx) and the best-scored
-- explanation of each feature for sort=score (read from the index, in feature
-- order, not from the table). Applied to new indexes, and to existing ones by
-- `sae index --upgrade` (store_write.c applies the files newer than a file's
-- user_version); an index without them answers as before, only slower.
CREATE INDEX IF NOT EXISTS features_alive ON features (n_active);
CREATE INDEX IF NOT EXISTS explanations_best ON explanations (feature, score) WHERE trim(description) <> '';
