/* index.c: `sae index`, the feature index over a corpus (CONTRACT sections 1,
 * 3 and 4; docs/INDEX.md). Parses the flags, opens the inputs and hands the
 * build to core (sae_index_build), showing progress in tokens/s. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/activations.h"
#include "io/clock.h"
#include "cli.h"
#include "harvest.h"
#include "sae/encode.h"
#include "index/dashboards.h"
#include "index/explanations.h"
#include "index/indexer.h"
#include "lm/unembed.h"
#include "lm/vocab.h"
#include "sae/model.h"
#include "index/tokens.h"

/* The --help text around the options. */
static const char usage[] =
    "usage: sae index --model DIR --activations FILE... --tokens FILE.jsonl\n"
    "                 --out FILE.db [--top N] [--quantiles Q] [--per-quantile M]\n"
    "                 [--context C] [--neighbours K] [--explanations FILE...]\n"
    "                 [--shard I/N] [--features A:B] [--max-state-bytes N]\n"
    "                 [--seed S] [--threads N] [--compute native|f32] [--quiet]\n"
    "                 [--unembed SOURCE --vocab FILE] [--correlations]\n"
    "                 [--neuronpedia-hist]\n"
    "       sae index --lm DIR --text FILE... --model DIR --out FILE.db [...]\n"
    "       sae index --upgrade FILE.db --model DIR [--unembed SOURCE --vocab FILE]\n"
    "                 [--neuronpedia-hist --activations FILE... --tokens FILE.jsonl]\n";
static const char about[] =
    "Builds the feature index: per feature its density, max and mean activation,\n"
    "decoder norm, activation histogram, top-activating examples (at most one per\n"
    "document), quantile-sampled examples, decoder-cosine neighbours and explanations;\n"
    "with --unembed, each feature's logit tables (W_dec[i] . W_U) and neuron alignment;\n"
    "with --correlations, its most correlated input dimensions; with\n"
    "--neuronpedia-hist, SAEDashboard's 50-bar activation histogram, exact (one more\n"
    "pass over the corpus). The file is written beside --out and renamed into place\n"
    "once complete. --upgrade adds the logit tables and neuron alignment to an\n"
    "existing index without the corpus, and with --neuronpedia-hist the exact\n"
    "histogram from two passes over the corpus it was built from.\n"
    "--lm runs the text through the language model instead of reading activations\n"
    "(windows as `sae harvest` cuts them, from the --model's cfg.json), writing\n"
    "only the tokens, to FILE.db.tokens.jsonl.\n";

/* Parsed flags; strings are borrowed from argv. */
typedef struct index_args {
    const char *model_dir, *tokens, *out;
    const char *unembed, *vocab, *upgrade;
    bool correlations, np_hist;
    const char **acts;      /* owned array of borrowed strings */
    size_t n_acts;
    const char **expl;      /* owned array of borrowed strings */
    size_t n_expl;
    const char *lm;         /* --lm: harvest the text instead of --activations */
    const char **texts;     /* owned array of borrowed strings */
    size_t n_texts;
    sae_index_settings set;
    uint64_t max_state;     /* --max-state-bytes; UINT64_MAX until given */
    uint64_t threads;
    sae_compute compute; /* how the model is loaded (--compute) */
    bool quiet;
} index_args;

/* Parses "A<sep>B" into *a (a_lo..a_hi) and *b (b_lo..b_hi); -1 if
 * malformed or out of range. */
static int parse_pair(const char *s, char sep, uint64_t a_lo, uint64_t a_hi, uint64_t b_lo,
                      uint64_t b_hi, uint64_t *a, uint64_t *b)
{
    const char *at = s ? strchr(s, sep) : NULL;
    char head[32];
    if (!at || (size_t)(at - s) >= sizeof head)
        return -1;
    memcpy(head, s, (size_t)(at - s));
    head[at - s] = '\0';
    return cli_parse_u64(head, a_lo, a_hi, a) || cli_parse_u64(at + 1, b_lo, b_hi, b) ? -1 : 0;
}

/* Parses "I/N" into the settings (dst). */
/* --neighbours-method exact|approx|auto into an int (SAE_NB_*). */
static int parse_nb_method(const char *s, void *dst)
{
    static const char *const names[] = {[SAE_NB_AUTO] = "auto", [SAE_NB_EXACT] = "exact",
                                        [SAE_NB_APPROX] = "approx"};
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *(int *)dst = i;
            return 0;
        }
    return -1;
}

static int parse_shard(const char *s, void *dst)
{
    sae_index_settings *set = dst;
    uint64_t i, n;
    if (parse_pair(s, '/', 0, UINT32_MAX, 1, UINT32_MAX, &i, &n) || i >= n)
        return -1;
    set->is_shard = true;
    set->shard = (uint32_t)i;
    set->n_shards = (uint32_t)n;
    return 0;
}

/* Parses "A:B" into the settings' feature range (dst); A < B. */
static int parse_features(const char *s, void *dst)
{
    sae_index_settings *set = dst;
    uint64_t lo, hi;
    if (parse_pair(s, ':', 0, UINT32_MAX - 1, 1, UINT32_MAX, &lo, &hi) || lo >= hi)
        return -1;
    set->feat_lo = (uint32_t)lo;
    set->feat_hi = (uint32_t)hi;
    return 0;
}

/* The default --max-state-bytes: a quarter of what MemAvailable
 * (/proc/meminfo) leaves once m's W_enc and W_dec are resident, leaving the
 * rest to the encoders' buffers and the page cache; at least 64 MB, and 0
 * (no bound) where MemAvailable cannot be read. */
static uint64_t default_state_bound(const sae_model *m)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    if (!kb)
        return 0;
    uint64_t avail = (uint64_t)kb * 1024,
             weights = 2 * (uint64_t)m->d_in * m->d_sae * (m->w_enc_h ? 2 : 4);
    uint64_t bound = avail > weights ? (avail - weights) / 4 : 0;
    return bound < 64000000 ? 64000000 : bound;
}

/* Parses argv into a. Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, index_args *a)
{
    sae_index_settings_default(&a->set);
    a->acts = calloc((size_t)argc, sizeof *a->acts);
    a->expl = calloc((size_t)argc, sizeof *a->expl);
    a->texts = calloc((size_t)argc, sizeof *a->texts);
    if (!a->acts || !a->expl || !a->texts)
        return cli_fail("out of memory");
    sae_index_settings *set = &a->set;
    a->max_state = UINT64_MAX;
    /* --upgrade reads no corpus, --lm reads text: the build's inputs are then
     * not required (the checks after parsing say what is). */
    bool upgrading = false;
    for (int i = 1; i < argc; i++)
        upgrading = upgrading || !strcmp(argv[i], "--upgrade") || !strcmp(argv[i], "--lm");
    const cli_opt opts[] = {
        {"--model", CLI_PATH, "DIR", CLI_TO(a->model_dir), .required = true,
         .help = "the model folder (SAELens or sparsify layout)"},
        {"--activations", CLI_LIST, "FILE", CLI_TO(a->acts[0]), .count = &a->n_acts,
         .max = (size_t)argc, .required = !upgrading,
         .help = "one or more .safetensors/.npy files, one corpus in order"},
        {"--tokens", CLI_PATH, "FILE", CLI_TO(a->tokens), .required = !upgrading,
         .help = "JSON Lines, {\"id\": ..., \"tokens\": [...]} per document"},
        {"--out", CLI_PATH, "FILE", CLI_TO(a->out), .required = !upgrading,
         .help = "the index to write"},
        {"--top", CLI_U64, "N", CLI_TO(set->top), .hi = SAE_INDEX_MAX_TOP,
         .help = "top examples per feature (default 20)"},
        {"--quantiles", CLI_U64, "Q", CLI_TO(set->quantiles), .hi = SAE_INDEX_MAX_QUANTILES,
         .help = "quantile groups over (0, max] (default 10)"},
        {"--per-quantile", CLI_U64, "M", CLI_TO(set->per_quantile),
         .hi = SAE_INDEX_MAX_PER_QUANTILE, .help = "samples per group (default 5)"},
        {"--context", CLI_U64, "C", CLI_TO(set->context), .hi = SAE_INDEX_MAX_CONTEXT,
         .help = "tokens either side of an example's token (default 8)"},
        {"--neighbours", CLI_U64, "K", CLI_TO(set->neighbours), .hi = SAE_INDEX_MAX_NEIGHBOURS,
         .help = "decoder-cosine neighbours per feature (default 10)"},
        {"--neighbours-method", CLI_PARSE, "M", .dst = &set->neighbours_method,
         .parse = parse_nb_method, .want = "exact, approx or auto",
         .help = "exact (blockwise GEMM), approx (FAISS k-means lists; recall@K on\n"
                 "a 1000-feature sample goes in the log and the meta table)\n"
                 "or auto (default: exact up to " CLI_XSTR(SAE_NB_EXACT_MAX) " features)"},
        {"--explanations", CLI_LIST, "FILE", CLI_TO(a->expl[0]), .count = &a->n_expl,
         .max = (size_t)argc,
         .help = "explanations, read in order (repeatable): JSON Lines of\n"
                 "{\"index\", \"description\", \"score\", \"source\", \"scores\"},\n"
                 "a JSON array of them (Neuronpedia's API and exports),\n"
                 "either gzip-compressed, or a delphi run folder"},
        {"--shard", CLI_PARSE, "I/N", .dst = set, .parse = parse_shard,
         .want = "I/N with 0 <= I < N, e.g. 0/4",
         .help = "index only the I-th (0-based) of N contiguous document\n"
                 "slices, for `sae merge`"},
        {"--features", CLI_PARSE, "A:B", .dst = set, .parse = parse_features,
         .want = "A:B with 0 <= A < B, e.g. 0:16384",
         .help = "index only the features [A, B) (a range shard for `sae\n"
                 "merge`; combines with --shard)"},
        {"--max-state-bytes", CLI_U64, "N", CLI_TO(a->max_state), .hi = UINT64_MAX - 1,
         .help = "bound on the per-feature state: more features take more\n"
                 "passes over the corpus, merged into the same index (default\n"
                 "a quarter of MemAvailable less the weights, at least 64 MB;\n"
                 "0: no bound)"},
        {"--seed", CLI_U64, "S", CLI_TO(set->seed), .hi = UINT64_MAX,
         .help = "quantile sampling seed (default 0)"},
        {"--threads", CLI_U64, "N", CLI_TO(a->threads), .lo = 1, .hi = 1024,
         .help = "BLAS threads (default: OpenBLAS's); blocks are encoded by\n"
                 "min(N, 8) threads while one more computes the statistics"},
        CLI_COMPUTE_OPT(a->compute, NULL),
        {"--quiet", CLI_FLAG, CLI_TO(a->quiet), .help = "no progress on stderr"},
        {"--unembed", CLI_PATH, "SOURCE", CLI_TO(a->unembed),
         .help = "the language model's unembedding, for logit tables: a\n"
                 "safetensors file with W_U (d_model, V), or a GPT-2, Llama or\n"
                 "Gemma checkpoint folder (docs/INDEX.md)"},
        {"--vocab", CLI_PATH, "FILE", CLI_TO(a->vocab),
         .help = "its vocab.json or tokenizer.json (with --unembed)"},
        {"--correlations", CLI_FLAG, CLI_TO(a->correlations),
         .help = "also each feature's most correlated input dimensions\n"
                 "(d_sae x d_in doubles of memory)"},
        {"--neuronpedia-hist", CLI_FLAG, CLI_TO(a->np_hist),
         .help = "also SAEDashboard's 50-bar activation histogram, exact,\n"
                 "from one more pass over the corpus (docs/INDEX.md)"},
        {"--lm", CLI_PATH, "DIR", CLI_TO(a->lm),
         .help = "a GPT-2 checkpoint folder: harvest --text through it\n"
                 "(at the --model's hook) instead of reading --activations"},
        {"--text", CLI_LIST, "FILE", CLI_TO(a->texts[0]), .count = &a->n_texts,
         .max = (size_t)argc, .help = "with --lm: the text files, as `sae harvest --text`"},
        {"--upgrade", CLI_PATH, "FILE.db", CLI_TO(a->upgrade),
         .help = "add --unembed's logit tables and the neuron alignment to\n"
                 "this index (built from --model), without the corpus"},
    };
    const cli_spec spec = {.cmd = "index", .usage = usage, .about = about, CLI_OPTS(opts)};
    int parsed = cli_parse(&spec, argc, argv);
    if (parsed >= 0)
        return parsed;
    if (!a->unembed != !a->vocab)
        return cli_usage("index", "--unembed and --vocab go together");
    if (a->upgrade && !a->unembed && !a->np_hist)
        return cli_usage("index", "--upgrade needs --unembed and --vocab, or --neuronpedia-hist");
    if (a->upgrade && a->max_state != UINT64_MAX)
        return cli_usage("index", "--max-state-bytes is for a build, not --upgrade");
    if (a->upgrade && set->feat_hi)
        return cli_usage("index", "--features is for a build, not --upgrade");
    if (a->upgrade && (a->out || a->n_expl || a->correlations || a->lm || a->n_texts ||
                       (!a->np_hist && (a->n_acts || a->tokens))))
        return cli_usage("index", "--upgrade reads no corpus but for --neuronpedia-hist: give "
                                  "only --model, --unembed, --vocab, --neuronpedia-hist with "
                                  "--activations and --tokens (and --threads, --quiet)");
    if (a->upgrade && a->np_hist && (!a->n_acts || !a->tokens))
        return cli_usage("index", "--upgrade --neuronpedia-hist reads the corpus again: give its "
                                  "--activations and --tokens");
    if (a->upgrade)
        return -1;
    if (a->lm && (a->n_acts || a->tokens || !a->n_texts || !a->out))
        return cli_usage("index", "--lm takes --text and --out, not --activations or --tokens");
    if (!a->lm && (a->n_texts || !a->n_acts || !a->tokens || !a->out))
        return cli_usage("index", a->n_texts ? "--text goes with --lm"
                                             : "--activations, --tokens and --out are required");
    const char *inputs[] = {a->tokens};
    int rc = cli_check_not_input("index", a->out, a->acts, a->n_acts);
    if (rc >= 0 || (rc = cli_check_not_input("index", a->out, inputs, 1)) >= 0 ||
        (rc = cli_check_not_input("index", a->out, a->expl, a->n_expl)) >= 0 ||
        (rc = cli_check_not_input("index", a->out, a->texts, a->n_texts)) >= 0)
        return rc;
    /* Blocks must hold a whole window either side of a row. */
    if (a->set.block_rows < 2 * a->set.context + 1)
        a->set.block_rows = 2 * a->set.context + 1;
    return -1;
}

/* The LM's logit-table inputs: W_U and the token strings. */
typedef struct dash_inputs {
    sae_unembed u;
    sae_lm_vocab v;
    sae_dash_job job;
} dash_inputs;

/* Token strings for the store (sae_dash_job.token). */
static const char *vocab_token(void *ctx, uint32_t id, size_t *len)
{
    return sae_lm_vocab_token(ctx, id, len);
}

/* Loads --unembed and --vocab (if given) into d; 0 or an exit code. */
static int load_dash(const index_args *a, dash_inputs *d, sae_error *err)
{
    memset(d, 0, sizeof *d);
    d->job.correlations = a->correlations;
    d->job.act_bars = a->np_hist;
    if (!a->unembed)
        return 0;
    if (sae_unembed_load(a->unembed, &d->u, err) || sae_lm_vocab_read(a->vocab, &d->v, err))
        return cli_fail_err(err);
    if (!a->quiet)
        fprintf(stderr, "index: W_U %zu x %zu (%s), vocabulary of %zu tokens\n", d->u.d_model,
                d->u.n_vocab, d->u.kind, d->v.n);
    d->job.w_u = d->u.w;
    d->job.d_model = d->u.d_model;
    d->job.n_vocab = d->u.n_vocab;
    d->job.token = vocab_token;
    d->job.token_ctx = &d->v;
    return 0;
}

/* --lm: the text's windows at the model's hook, as `sae harvest --sae` cuts
 * them; writes their tokens file beside the index (tokens, path_cap bytes)
 * and opens it. */
static int open_lm_corpus(const index_args *a, const sae_model *m, lm_feed **f, sae_tokens **tok,
                          char *tokens, size_t path_cap, sae_error *err)
{
    sae_lm_hook hook;
    lm_feed_opts o = {.lm_dir = a->lm, .texts = a->texts, .n_texts = a->n_texts, .hooks = &hook,
                      .n_hooks = 1};
    if (!*m->hook_name)
        return sae_error_set(err, SAE_EINVAL, "%s: the model names no hook_name to harvest",
                             a->model_dir);
    if (lm_parse_hooks(m->hook_name, &hook, 1, err) < 0 ||
        lm_window_opts_of_sae(m->dir, &o, err) || lm_feed_open(&o, f, err))
        return -1;
    if (lm_feed_width(*f, 0) != m->d_in)
        return sae_error_set(err, SAE_EDIM, "%s: d_in %zu, but %s is %zu wide", a->model_dir,
                             m->d_in, m->hook_name, lm_feed_width(*f, 0));
    snprintf(tokens, path_cap, "%s.tokens.jsonl", a->out);
    if (lm_feed_write_tokens(*f, tokens, a->quiet, err) || lm_feed_rewind(*f, err))
        return -1;
    return sae_tokens_open(tokens, tok, err);
}

/* Pass callback: names the pass and restarts the meter when there are
 * several. */
static void on_pass(void *ctx, uint32_t pass, uint32_t n_passes, uint64_t lo, uint64_t hi)
{
    cli_progress *p = ctx;
    if (n_passes < 2 || p->quiet)
        return;
    fprintf(stderr, "index: pass %u/%u: features %llu:%llu\n", pass + 1, n_passes,
            (unsigned long long)lo, (unsigned long long)hi);
    cli_progress_start(p, p->label, p->unit, 0, p->quiet);
}

/* Progress callback: rows done of total, shown as tokens. */
static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    cli_progress *p = ctx;
    p->total = total;
    cli_progress_update(p, done);
}

int cmd_index(int argc, char **argv)
{
    index_args a;
    memset(&a, 0, sizeof a);
    int code = parse_args(argc, argv, &a);
    sae_model *m = NULL;
    sae_acts *acts = NULL;
    sae_tokens *tok = NULL;
    lm_feed *feed = NULL;
    char lm_tokens[4096];
    sae_explanations expl = {0};
    bool have_expl = false;
    dash_inputs dash;
    memset(&dash, 0, sizeof dash);
    sae_error err;
    sae_error_clear(&err);
    if (code >= 0)
        goto out;
    if (a.threads)
        sae_set_blas_threads((int)a.threads);
    sae_model_warnings warn;
    if (sae_model_load_with(a.model_dir, a.compute, &m, &warn, &err)) {
        code = cli_fail_err(&err);
        goto out;
    }
    for (size_t i = 0; i < warn.n; i++)
        cli_warn("%s", warn.line[i]);
    if ((code = load_dash(&a, &dash, &err)))
        goto out;
    code = -1;
    if (a.n_acts &&
        (sae_acts_open(a.acts, a.n_acts, &acts, &err) || sae_tokens_open(a.tokens, &tok, &err))) {
        code = cli_fail_err(&err);
        goto out;
    }
    if (a.upgrade) {
        double t0 = sae_clock_s();
        cli_progress prog;
        cli_progress_start(&prog, "index", "tokens", 0, a.quiet);
        dash.job.acts = acts;
        dash.job.tok = tok;
        dash.job.progress = on_progress;
        dash.job.progress_ctx = &prog;
        if (sae_index_upgrade(m, a.upgrade, &dash.job, &err)) {
            code = cli_fail_err(&err);
            goto out;
        }
        if (a.np_hist)
            cli_progress_finish(&prog, prog.total);
        if (!a.quiet)
            fprintf(stderr, "index: upgraded %s (%.1fs)\n", a.upgrade, sae_clock_s() - t0);
        code = SAE_EXIT_OK;
        goto out;
    }
    if (a.lm && open_lm_corpus(&a, m, &feed, &tok, lm_tokens, sizeof lm_tokens, &err)) {
        code = cli_fail_err(&err);
        goto out;
    }
    if (a.n_expl) {
        if (sae_explanations_read(a.expl, a.n_expl, m->d_sae, &expl, &err)) {
            code = cli_fail_err(&err);
            goto out;
        }
        have_expl = true;
    }
    if (a.max_state == UINT64_MAX)
        a.max_state = default_state_bound(m);
    size_t n_feat = a.set.feat_hi ? a.set.feat_hi - a.set.feat_lo : m->d_sae;
    size_t state = sae_indexer_state_bytes(n_feat, &a.set);
    uint32_t passes = sae_index_passes(n_feat, &a.set, a.max_state);
    if (!a.quiet)
        fprintf(stderr,
                "index: %zu documents, %llu tokens, d_in %zu x d_sae %zu; shard %u/%u; "
                "features %u:%zu; per-feature state %.0f MB, bound %.0f MB: %u pass%s\n",
                tok->n_docs, (unsigned long long)tok->n_tokens, m->d_in, m->d_sae, a.set.shard,
                a.set.n_shards, a.set.feat_hi ? a.set.feat_lo : 0,
                a.set.feat_hi ? a.set.feat_hi : m->d_sae, state / 1e6, a.max_state / 1e6,
                passes, passes == 1 ? "" : "es");
    if (feed && (passes > 1 || a.np_hist)) {
        /* The text goes through the model once, in order: a second read of
         * the corpus (another pass, the exact bars) would need it again. */
        code = cli_fail("--lm streams the text through the model once; %s needs the corpus "
                        "again: run `sae harvest` first and index its activations",
                        a.np_hist ? "--neuronpedia-hist" : "more than one pass (--max-state-bytes)");
        goto out;
    }
    cli_progress prog;
    cli_progress_start(&prog, "index", "tokens", 0, a.quiet);
    sae_index_job job = {
        .model = m, .acts = acts, .tok = tok, .expl = have_expl ? &expl : NULL,
        .dash = a.unembed || a.correlations || a.np_hist ? &dash.job : NULL, .set = a.set, .progress = on_progress, .on_pass = on_pass, .progress_ctx = &prog,
        .max_state_bytes = a.max_state,
    };
    if (feed) {
        job.read_rows = lm_feed_read_rows;
        job.rows_ctx = feed;
        job.rows_d_in = lm_feed_width(feed, 0);
    }
    sae_index_timing timing;
    job.timing = &timing;
    if (sae_index_build(&job, a.out, &err)) {
        code = cli_fail_err(&err);
        goto out;
    }
    cli_progress_finish(&prog, prog.total);
    if (!a.quiet && timing.nb.method == SAE_NB_APPROX)
        fprintf(stderr, "index: approximate neighbours in %.1fs, recall@%u %.4f against exact "
                "on %zu sampled features (%.1fs)\n", timing.nb.approx_s, a.set.neighbours,
                timing.nb.recall, timing.nb.sampled, timing.nb.recall_s);
    if (!a.quiet)
        fprintf(stderr, "index: wrote %s (neighbours %.1fs, encode+index %.1fs, write%s %.1fs)\n",
                a.out, timing.neighbours_s, timing.stream_s, a.unembed ? "+logits" : "",
                timing.write_s);
    code = SAE_EXIT_OK;
out:
    sae_unembed_free(&dash.u);
    sae_lm_vocab_free(&dash.v);
    if (have_expl)
        sae_explanations_free(&expl);
    sae_tokens_free(tok);
    lm_feed_free(feed);
    sae_acts_free(acts);
    sae_model_free(m);
    free(a.acts);
    free(a.expl);
    free(a.texts);
    return code;
}
