-- 006_best_score.sql: GET /v1/features?sort=score in milliseconds at a
-- million rows (issue 19 point 4). best_score is the score of the feature's
-- best-scored explanation with a description (the browser's label), NULL when
-- none is scored: what the list sorted by per query before this file, now
-- stored and indexed like density (ties by index ascending in both orders).
-- The writer fills it at commit from the explanations table (store_write.c),
-- so every index `sae index`, `sae merge` and `sae index --upgrade` writes
-- holds it; a file from before this one is listed by score as before (the
-- aggregate per query), only slower.
ALTER TABLE features ADD COLUMN best_score REAL;
CREATE INDEX features_score_asc ON features (best_score ASC, idx ASC);
CREATE INDEX features_score_desc ON features (best_score DESC, idx ASC);
