/* synth.c: `sae synth`, activations with known ground-truth features over
 * real text (core/train/synth.h documents the tokenizer and the features). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/clock.h"
#include "cli.h"
#include "train/synth.h"

/* The --help text. */
static void usage(FILE *out)
{
    fprintf(out,
            "usage: sae synth --out DIR [--text FILE...] [--d-in N] [--seed S]\n"
            "                 [--max-tokens N] [--noise X] [--quiet]\n\n"
            "Tokenizes real English text into documents (paragraphs) and plants %zu\n"
            "interpretable features (token classes, word lists, position and context), each\n"
            "a random unit direction in d_in dims: a token's activation is the sum of its\n"
            "features' directions times per-feature magnitudes (varied per token), plus\n"
            "Gaussian noise. Writes into DIR:\n"
            "  activations.safetensors  \"activations\" [n_tokens, d_in] float32\n"
            "  tokens.jsonl             {\"id\": ..., \"tokens\": [...]} per document\n"
            "  truth.safetensors        \"directions\" [n_features, d_in], \"magnitudes\"\n"
            "  truth.jsonl              {\"index\", \"label\", \"count\", \"magnitude\"}\n\n"
            "  --out DIR         output folder (created if missing)\n"
            "  --text FILE       text to use, repeatable (default: the regular files of\n"
            "                    %s, in name order)\n"
            "  --d-in N          activation width (default 256)\n"
            "  --seed S          seed of directions, magnitudes and noise (default 0)\n"
            "  --max-tokens N    stop after N tokens (default 200000)\n"
            "  --noise X         standard deviation of the noise per dimension (default 0.02)\n"
            "  --quiet           no summary on stderr\n",
            sae_synth_n_features(), SAE_SYNTH_DEFAULT_DIR);
}

/* `sae synth`: parses flags, writes the four files, prints a summary line. */
int cmd_synth(int argc, char **argv)
{
    sae_synth_opts o;
    sae_synth_opts_init(&o);
    const char *out = NULL;
    bool quiet = false;
    const char **texts = calloc((size_t)argc, sizeof *texts);
    size_t n_texts = 0;
    int rc = SAE_EXIT_USAGE;
    if (!texts)
        return cli_fail("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *val = cli_value(argc, argv, i);
        uint64_t u;
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            rc = SAE_EXIT_OK;
            goto out;
        } else if (!strcmp(f, "--quiet")) {
            quiet = true;
            continue;
        }
        if (!val) {
            rc = cli_usage("synth", "unknown argument or missing value: '%s'", f);
            goto out;
        }
        i++;
        if (!strcmp(f, "--out")) {
            out = val;
        } else if (!strcmp(f, "--text")) {
            texts[n_texts++] = val;
        } else if (!strcmp(f, "--d-in")) {
            if (cli_parse_u64(val, 1, 1u << 20, &u)) {
                rc = cli_usage("synth", "--d-in needs an integer in [1, 1048576]");
                goto out;
            }
            o.d_in = (size_t)u;
        } else if (!strcmp(f, "--seed")) {
            if (cli_parse_u64(val, 0, UINT64_MAX, &u)) {
                rc = cli_usage("synth", "--seed needs a non-negative integer");
                goto out;
            }
            o.seed = u;
        } else if (!strcmp(f, "--max-tokens")) {
            if (cli_parse_u64(val, 1, (uint64_t)1 << 32, &u)) {
                rc = cli_usage("synth", "--max-tokens needs a positive integer");
                goto out;
            }
            o.max_tokens = (size_t)u;
        } else if (!strcmp(f, "--noise")) {
            if (cli_parse_double(val, 0, 1e6, &o.noise)) {
                rc = cli_usage("synth", "--noise needs a non-negative number");
                goto out;
            }
        } else {
            rc = cli_usage("synth", "unknown argument '%s'", f);
            goto out;
        }
    }
    if (!out) {
        rc = cli_usage("synth", "--out is required");
        goto out;
    }
    o.texts = n_texts ? texts : NULL;
    o.n_texts = n_texts;
    sae_synth_summary sum;
    sae_error err;
    double t0 = sae_clock_s();
    if (sae_synth_write(&o, out, &sum, &err)) {
        rc = cli_fail_err(&err);
        goto out;
    }
    if (!quiet)
        fprintf(stderr,
                "synth: %zu files, %zu documents, %zu tokens x %zu dims, %zu features "
                "(%zu absent from this text), %.2f active per token, %.1fs -> %s\n",
                sum.n_files, sum.n_docs, sum.n_tokens, sum.d_in, sum.n_features, sum.n_absent,
                sum.mean_l0, sae_clock_s() - t0, out);
    rc = SAE_EXIT_OK;
out:
    free(texts);
    return rc;
}
