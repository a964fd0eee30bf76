-- 004_act_bars.sql: Neuronpedia's activation histogram, exact (issue 15
-- point 4; docs/INDEX.md, "Dashboards").
-- on demand: applied with the dashboards tables (sae_store_writer_dashboards),
-- and on its own to an index that has those from before this file. An index
-- without this table, or without a feature's row in it, reads as "not
-- computed": saed and `sae export --neuronpedia` then rebin the fixed
-- histogram (index_hist.h, sae_hist_linear).

-- SAEDashboard's freq_hist_data for every feature, filled by
-- `sae index --neuronpedia-hist` (a second pass over the corpus): act_min and
-- act_max are the float32 min and max of the feature's non-zero activations,
-- heights the 50 bar counts of torch.histc over [act_min, act_max] as
-- little-endian uint64. A feature that never fired has a row with act_min =
-- act_max = 0 and an empty heights blob ("computed: no bars").
CREATE TABLE act_bars (
    feature INTEGER PRIMARY KEY,
    act_min REAL NOT NULL,
    act_max REAL NOT NULL,
    heights BLOB NOT NULL
);
