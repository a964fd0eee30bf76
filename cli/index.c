/* index.c: `sae index`, the feature index over a corpus (CONTRACT sections 1,
 * 3 and 4; docs/INDEX.md). Parses the flags, opens the inputs and hands the
 * build to core (sae_index_build), showing progress in tokens/s. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/activations.h"
#include "cli.h"
#include "sae/encode.h"
#include "index/explanations.h"
#include "index/indexer.h"
#include "sae/model.h"
#include "index/tokens.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sae index --model DIR --activations FILE [FILE...] --tokens FILE.jsonl\n"
            "                 --out FILE.db [--top N] [--quantiles Q] [--per-quantile M]\n"
            "                 [--context C] [--neighbours K] [--explanations FILE]\n"
            "                 [--shard I/N] [--seed S] [--threads N] [--quiet]\n\n"
            "Builds the feature index: per feature its density, max and mean activation,\n"
            "decoder norm, activation histogram, top-activating examples (at most one per\n"
            "document), quantile-sampled examples, decoder-cosine neighbours and explanations.\n"
            "The file is written beside --out and renamed into place once complete.\n\n"
            "  --model DIR          the model folder (SAELens or sparsify layout)\n"
            "  --activations FILE   one or more .safetensors/.npy files, one corpus in order\n"
            "  --tokens FILE        JSON Lines, {\"id\": ..., \"tokens\": [...]} per document\n"
            "  --out FILE           the index to write\n"
            "  --top N              top examples per feature (default 20)\n"
            "  --quantiles Q        quantile groups over (0, max] (default 10)\n"
            "  --per-quantile M     samples per group (default 5)\n"
            "  --context C          tokens either side of an example's token (default 8)\n"
            "  --neighbours K       decoder-cosine neighbours per feature (default 10)\n"
            "  --explanations FILE  JSON Lines of {\"index\", \"description\", \"score\", \"source\"}\n"
            "                       (Neuronpedia exports accepted as they are)\n"
            "  --shard I/N          index only the I-th (0-based) of N contiguous document\n"
            "                       slices, for `sae merge`\n"
            "  --seed S             quantile sampling seed (default 0)\n"
            "  --threads N          BLAS threads (default: OpenBLAS's); blocks are encoded by\n"
            "                       min(N, 8) threads while one more computes the statistics\n"
            "  --quiet              no progress on stderr\n");
}

/* Parsed flags; strings are borrowed from argv. */
typedef struct index_args {
    const char *model_dir, *tokens, *out, *explanations;
    const char **acts;      /* owned array of borrowed strings */
    size_t n_acts;
    sae_index_settings set;
    uint64_t threads;
    bool quiet;
} index_args;

/* Parses "I/N" into the settings. */
static int parse_shard(const char *s, sae_index_settings *set)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    uint64_t i, n;
    char head[32];
    if (!slash || (size_t)(slash - s) >= sizeof head)
        return -1;
    memcpy(head, s, (size_t)(slash - s));
    head[slash - s] = '\0';
    if (cli_parse_u64(head, 0, UINT32_MAX, &i) || cli_parse_u64(slash + 1, 1, UINT32_MAX, &n) ||
        i >= n)
        return -1;
    set->is_shard = true;
    set->shard = (uint32_t)i;
    set->n_shards = (uint32_t)n;
    return 0;
}

/* Parses argv into a. Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, index_args *a)
{
    sae_index_settings_default(&a->set);
    a->acts = calloc((size_t)argc, sizeof *a->acts);
    if (!a->acts)
        return cli_fail("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *val = cli_value(argc, argv, i);
        uint64_t u;
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            return SAE_EXIT_OK;
        } else if (!strcmp(f, "--quiet")) {
            a->quiet = true;
        } else if (!strcmp(f, "--activations")) {
            while (i + 1 < argc && !cli_is_option(argv[i + 1]))
                a->acts[a->n_acts++] = argv[++i];
            if (a->n_acts == 0)
                return cli_usage("index", "--activations needs at least one file");
        } else if (!strcmp(f, "--model") || !strcmp(f, "--tokens") || !strcmp(f, "--out") ||
                   !strcmp(f, "--explanations")) {
            if (!val)
                return cli_usage("index", "%s needs a value", f);
            const char **dst = !strcmp(f, "--model")    ? &a->model_dir
                               : !strcmp(f, "--tokens") ? &a->tokens
                               : !strcmp(f, "--out")    ? &a->out
                                                        : &a->explanations;
            *dst = val;
            i++;
        } else if (!strcmp(f, "--shard")) {
            if (!val || parse_shard(val, &a->set))
                return cli_usage("index", "--shard needs I/N with 0 <= I < N, e.g. 0/4");
            i++;
        } else if (!strcmp(f, "--seed")) {
            if (!val || cli_parse_u64(val, 0, UINT64_MAX, &u))
                return cli_usage("index", "--seed needs a non-negative integer");
            a->set.seed = u;
            i++;
        } else if (!strcmp(f, "--threads")) {
            if (!val || cli_parse_u64(val, 1, 1024, &u))
                return cli_usage("index", "--threads needs an integer in 1..1024");
            a->threads = u;
            i++;
        } else {
            static const struct {
                const char *flag;
                uint64_t max;
                size_t off;
            } nums[] = {
                {"--top", SAE_INDEX_MAX_TOP, offsetof(sae_index_settings, top)},
                {"--quantiles", SAE_INDEX_MAX_QUANTILES, offsetof(sae_index_settings, quantiles)},
                {"--per-quantile", SAE_INDEX_MAX_PER_QUANTILE,
                 offsetof(sae_index_settings, per_quantile)},
                {"--context", SAE_INDEX_MAX_CONTEXT, offsetof(sae_index_settings, context)},
                {"--neighbours", SAE_INDEX_MAX_NEIGHBOURS,
                 offsetof(sae_index_settings, neighbours)},
            };
            size_t k = 0;
            while (k < sizeof nums / sizeof nums[0] && strcmp(f, nums[k].flag))
                k++;
            if (k == sizeof nums / sizeof nums[0])
                return cli_usage("index", "unknown argument '%s'", f);
            if (!val || cli_parse_u64(val, 0, nums[k].max, &u))
                return cli_usage("index", "%s needs an integer in 0..%llu", f,
                                 (unsigned long long)nums[k].max);
            uint32_t v = (uint32_t)u;
            memcpy((char *)&a->set + nums[k].off, &v, sizeof v);
            i++;
        }
    }
    if (!a->model_dir || !a->n_acts || !a->tokens || !a->out)
        return cli_usage("index", "--model, --activations, --tokens and --out are required");
    const char *inputs[] = {a->tokens, a->explanations};
    int rc = cli_check_not_input("index", a->out, a->acts, a->n_acts);
    if (rc >= 0 || (rc = cli_check_not_input("index", a->out, inputs, 2)) >= 0)
        return rc;
    /* Blocks must hold a whole window either side of a row. */
    if (a->set.block_rows < 2 * a->set.context + 1)
        a->set.block_rows = 2 * a->set.context + 1;
    return -1;
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
    sae_explanations expl = {0};
    bool have_expl = false;
    sae_error err;
    sae_error_clear(&err);
    if (code >= 0)
        goto out;
    if (a.threads)
        sae_set_blas_threads((int)a.threads);
    char warn[1024] = "";
    if (sae_model_load(a.model_dir, &m, warn, sizeof warn, &err)) {
        code = cli_fail_err(&err);
        goto out;
    }
    for (char *line = warn, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        cli_warn("%s", line);
        if (!nl)
            break;
    }
    if (sae_acts_open(a.acts, a.n_acts, &acts, &err) || sae_tokens_open(a.tokens, &tok, &err)) {
        code = cli_fail_err(&err);
        goto out;
    }
    if (a.explanations) {
        if (sae_explanations_read(a.explanations, m->d_sae, &expl, &err)) {
            code = cli_fail_err(&err);
            goto out;
        }
        have_expl = true;
    }
    size_t state = sae_indexer_state_bytes(m->d_sae, &a.set);
    if (!a.quiet)
        fprintf(stderr,
                "index: %zu documents, %llu tokens, d_in %zu x d_sae %zu; shard %u/%u; "
                "per-feature state %.0f MB\n",
                tok->n_docs, (unsigned long long)tok->n_tokens, m->d_in, m->d_sae, a.set.shard,
                a.set.n_shards, state / 1e6);
    cli_progress prog;
    cli_progress_start(&prog, "index", "tokens", 0, a.quiet);
    sae_index_job job = {
        .model = m, .acts = acts, .tok = tok, .expl = have_expl ? &expl : NULL,
        .set = a.set, .progress = on_progress, .progress_ctx = &prog,
    };
    sae_index_timing timing;
    job.timing = &timing;
    if (sae_index_build(&job, a.out, &err)) {
        code = cli_fail_err(&err);
        goto out;
    }
    cli_progress_finish(&prog, prog.total);
    if (!a.quiet)
        fprintf(stderr, "index: wrote %s (neighbours %.1fs, encode+index %.1fs, write %.1fs)\n",
                a.out, timing.neighbours_s, timing.stream_s, timing.write_s);
    code = SAE_EXIT_OK;
out:
    if (have_expl)
        sae_explanations_free(&expl);
    sae_tokens_free(tok);
    sae_acts_free(acts);
    sae_model_free(m);
    free(a.acts);
    return code;
}
