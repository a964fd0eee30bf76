-- 006_best_score.sql: GET /v1/features?sort=score in milliseconds at a
-- million rows (issue 19 point 4). best_score is the score of the feature's
-- best-scored explanation with a description (the browser's label), NULL when
-- none is scored: what the list sorted by per query before this file, now
-- stored and indexed like density (ties by index ascending in both orders).
-- The writer fills it at commit from the explanations table (store_write.c),
-- so every index `sae index`, `sae merge` and `sae index --upgrade` writes
-- holds it; a file from before this one is listed by score as before (the
-- aggregate per query), only slower.
--
-- The live-only list in ascending order would otherwise walk every dead
-- feature first (density and max_activation 0, best_score mostly NULL: most
-- of a wide SAE's features on a small corpus): the three partial indexes hold
-- only the live ones, so alive=1 pages from its first live row. Descending
-- orders reach the dead last and need none.
ALTER TABLE features ADD COLUMN best_score REAL;
CREATE INDEX features_score_asc ON features (best_score ASC, idx ASC);
CREATE INDEX features_score_desc ON features (best_score DESC, idx ASC);
CREATE INDEX features_live_density_asc ON features (density ASC, idx ASC) WHERE n_active > 0;
CREATE INDEX features_live_max_asc ON features (max_activation ASC, idx ASC) WHERE n_active > 0;
CREATE INDEX features_live_score_asc ON features (best_score ASC, idx ASC) WHERE n_active > 0;
