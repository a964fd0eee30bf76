-- 001_init.sql: the feature index written by `sae index` / `sae merge` and
-- read by saed (CONTRACT section 4). docs/INDEX.md explains every column.
-- Applied in one transaction to an empty file; the files in schema/ are
-- applied in their numbered order and user_version is set to the number of
-- the last one by the writer (core/index/store.c), never here.

-- 0x53414549 = "SAEI"
PRAGMA application_id = 1396786505;

-- Every build setting and count, as text: weights_digest, d_in, d_sae,
-- n_tokens, n_documents, top, quantiles, per_quantile, context, neighbours,
-- seed, shard, histogram, block_rows, corpus_tokens, corpus_documents,
-- tokens_digest, explanations_digest, n_explanations.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per feature 0 .. d_sae-1. hist holds the counts of the fixed
-- histogram bins hist_first .. hist_first + len/8 - 1 as little-endian
-- uint64 (trimmed to the first and last nonzero bin; empty blob when the
-- feature never fired). sum_exact is the exact sum of the active values as a
-- 384-bit little-endian fixed-point integer in units of 2^-150 (so shards sum
-- exactly). n_top / n_quantile count the examples of each kind.
CREATE TABLE features (
    idx             INTEGER PRIMARY KEY,
    n_active        INTEGER NOT NULL,
    density         REAL NOT NULL,
    max_activation  REAL NOT NULL,
    mean_activation REAL NOT NULL,
    decoder_norm    REAL NOT NULL,
    sum_exact       BLOB NOT NULL,
    hist_first      INTEGER NOT NULL,
    hist            BLOB NOT NULL,
    n_top           INTEGER NOT NULL,
    n_quantile      INTEGER NOT NULL
);
-- GET /v1/features?sort=density|max_activation&order=asc|desc pages through
-- these without sorting (ties by index ascending in both orders).
CREATE INDEX features_density_asc ON features (density ASC, idx ASC);
CREATE INDEX features_density_desc ON features (density DESC, idx ASC);
CREATE INDEX features_max_asc ON features (max_activation ASC, idx ASC);
CREATE INDEX features_max_desc ON features (max_activation DESC, idx ASC);

-- Token strings used by stored examples, ids in bytewise order of the
-- strings (so equal content gives equal ids, whatever the shard layout).
CREATE TABLE vocab (
    id    INTEGER PRIMARY KEY,
    token TEXT NOT NULL
);

-- Documents referenced by stored examples: global 0-based document index
-- (its line among the non-blank lines of the tokens file) and its id.
CREATE TABLE documents (
    idx  INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);

-- Examples, one row per feature and kind: id = 4 * feature + kind, kind 0 =
-- top (ranked by the document maximum, best first), 1 = quantile samples
-- (group descending, then value descending), 2 = sampling candidates kept
-- only in shard files for `sae merge` (bin ascending, then hash). data packs
-- the n examples in rank order, each a 64-byte little-endian header
--   u32 doc, u32 first, u32 focus, u32 len, f32 value, i32 grp, u64 hash,
--   f64 bin_min, f64 bin_max, f64 bin_contains, u32 flags (1: has bins), u32 0
-- followed by len u32 vocab ids and len f32 activations. The window is tokens
-- first .. first+len-1 of document doc; focus is the position in the document
-- of the token the example is about (the document's max token, or the
-- sampled token) and value its activation; grp is the quantile group, or for
-- candidates the histogram bin (-1: the merged low-bin prefix).
CREATE TABLE examples (
    id   INTEGER PRIMARY KEY,
    n    INTEGER NOT NULL,
    data BLOB NOT NULL
);

-- Top-K decoder-cosine neighbours: k little-endian uint32 indices and k
-- float32 cosines, cosine descending, ties by index ascending.
CREATE TABLE neighbours (
    feature INTEGER PRIMARY KEY,
    indices BLOB NOT NULL,
    cosines BLOB NOT NULL
);

-- Explanations (CONTRACT section 3), in file order; full-text searchable
-- through explanations_fts (an external-content FTS5 table over description).
CREATE TABLE explanations (
    id          INTEGER PRIMARY KEY,
    feature     INTEGER NOT NULL,
    description TEXT NOT NULL,
    score       REAL,
    source      TEXT,
    type_name   TEXT
);
CREATE INDEX explanations_feature ON explanations (feature, id);
CREATE VIRTUAL TABLE explanations_fts USING fts5(
    description, content = 'explanations', content_rowid = 'id');
