-- on demand: applied only to an index built (or upgraded) with
-- `sae index --unembed`, `--correlations` or `--neuronpedia-hist` (with
-- 004_act_bars.sql), so that an index built without them has none of these
-- tables. An index without them reads as "not computed" (docs/INDEX.md,
-- "Dashboards").

-- Logit tables (SAEDashboard's logits table and histogram): for every
-- feature the 10 tokens of largest and of smallest W_dec[i] . W_U, and a
-- 50-bin linear histogram of all V values over [hist_min, hist_max].
-- pos_ids / neg_ids: little-endian uint32 token ids (pos value descending,
-- neg value ascending); pos_values / neg_values: float32; hist: n_bins
-- little-endian uint32 counts.
CREATE TABLE logits (
    feature    INTEGER PRIMARY KEY,
    pos_ids    BLOB NOT NULL,
    pos_values BLOB NOT NULL,
    neg_ids    BLOB NOT NULL,
    neg_values BLOB NOT NULL,
    hist_min   REAL NOT NULL,
    hist_max   REAL NOT NULL,
    hist       BLOB NOT NULL
);

-- The language model's token strings that some logits row names, as
-- Neuronpedia shows them (docs/INDEX.md).
CREATE TABLE logit_tokens (
    id    INTEGER PRIMARY KEY,
    token TEXT NOT NULL
);

-- Neuron tables (SAEDashboard's feature tables), 3 rows each.
-- kind 0: neuron alignment from W_dec[i]: the largest entries (indices,
--         values) and |value| / sum |W_dec[i]| (extra);
-- kind 1: correlated neurons over the corpus: the input dimensions of
--         largest Pearson correlation with the feature (indices, values),
--         and their cosine similarity (extra).
-- indices: little-endian uint32; value_list / extra: float32.
CREATE TABLE neuron_tables (
    id         INTEGER PRIMARY KEY, -- 2 * feature + kind
    indices    BLOB NOT NULL,
    value_list BLOB NOT NULL,
    extra      BLOB NOT NULL
);
