-- 003_scores.sql: scored explanations (CONTRACT section 3 and 4; issue 15
-- point 3). Indexes written before this file still open: a missing
-- explanation_scores table or score_v2 column reads as "not computed"
-- (store_read.c looks for them when it connects).

-- Neuronpedia's scoreV2 of an explanation (scoreV1 is the score column).
ALTER TABLE explanations ADD COLUMN score_v2 REAL;

-- Every score of an explanation, in input order (seq from 0): its value,
-- its type (Neuronpedia's explanationScoreTypeName, delphi's scorer) and the
-- model that scored it (explanationScoreModelName), either NULL when the
-- input did not say.
CREATE TABLE explanation_scores (
    explanation INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    value       REAL NOT NULL,
    type        TEXT,
    model       TEXT,
    PRIMARY KEY (explanation, seq)
) WITHOUT ROWID;
