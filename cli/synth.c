/* synth.c: `sae synth`, activations with known ground-truth features over
 * real text (core/train/synth.h documents the tokenizer and the features). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/clock.h"
#include "cli.h"
#include "train/synth.h"

/* The --help text around the options; about_fmt takes the feature count. */
static const char usage[] =
    "usage: sae synth --out DIR [--text FILE...] [--d-in N] [--seed S]\n"
    "                 [--max-tokens N] [--noise X] [--quiet]\n";
static const char about_fmt[] =
    "Tokenizes real English text into documents (paragraphs) and plants %zu\n"
    "interpretable features (token classes, word lists, position and context), each\n"
    "a random unit direction in d_in dims: a token's activation is the sum of its\n"
    "features' directions times per-feature magnitudes (varied per token), plus\n"
    "Gaussian noise. Writes into DIR:\n"
    "  activations.safetensors  \"activations\" [n_tokens, d_in] float32\n"
    "  tokens.jsonl             {\"id\": ..., \"tokens\": [...]} per document\n"
    "  truth.safetensors        \"directions\" [n_features, d_in], \"magnitudes\"\n"
    "  truth.jsonl              {\"index\", \"label\", \"count\", \"magnitude\"}\n";

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
    const cli_opt opts[] = {
        {"--out", CLI_PATH, "DIR", CLI_TO(out), .required = true,
         .help = "output folder (created if missing)"},
        {"--text", CLI_PATH, "FILE", CLI_TO(texts[0]), .count = &n_texts, .max = (size_t)argc,
         .help = "text to use, repeatable (default: the regular files of\n" SAE_SYNTH_DEFAULT_DIR
                 ", in name order)"},
        {"--d-in", CLI_U64, "N", CLI_TO(o.d_in), .lo = 1, .hi = 1u << 20,
         .help = "activation width (default 256)"},
        {"--seed", CLI_U64, "S", CLI_TO(o.seed), .hi = UINT64_MAX,
         .help = "seed of directions, magnitudes and noise (default 0)"},
        {"--max-tokens", CLI_U64, "N", CLI_TO(o.max_tokens), .lo = 1, .hi = (uint64_t)1 << 32,
         .help = "stop after N tokens (default 200000)"},
        {"--noise", CLI_DOUBLE, "X", CLI_TO(o.noise), .dhi = 1e6,
         .help = "standard deviation of the noise per dimension (default 0.02)"},
        {"--quiet", CLI_FLAG, CLI_TO(quiet), .help = "no summary on stderr"},
    };
    char about[sizeof about_fmt + 16];
    snprintf(about, sizeof about, about_fmt, sae_synth_n_features());
    const cli_spec spec = {.cmd = "synth", .usage = usage, .about = about, CLI_OPTS(opts)};
    rc = cli_parse(&spec, argc, argv);
    if (rc >= 0)
        goto out;
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
