/* merge.c: `sae merge --out FILE.db SHARD.db...`: combines the shard files of
 * one corpus (built with `sae index --shard I/N` and/or `--features A:B`:
 * ranges tiling every feature, each with every I once, same weights and
 * settings) into one index equal to the unsharded build (docs/INDEX.md).
 * The output is written beside --out and renamed into place when complete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "index/indexer.h"
#include "index/store.h"

/* The --help text around the options. */
static const char usage[] = "usage: sae merge --out FILE.db SHARD.db...\n";
static const char about[] =
    "Merges the shards of `sae index --shard I/N` (all N of them, any order) into one\n"
    "index whose content equals one unsharded build: counts and histograms summed,\n"
    "top examples and neighbours exact, quantile samples merged exactly. Feature-range\n"
    "shards (`--features A:B`) are concatenated, alone or in a grid with --shard:\n"
    "the ranges must cover every feature once, each with all its document slices.\n"
    "Refuses shards built from other weights, settings or tokens, and overlapping or\n"
    "missing ranges or slices, naming the files.\n";

int cmd_merge(int argc, char **argv)
{
    const char *out = NULL;
    const char **shards = calloc((size_t)argc, sizeof *shards);
    size_t n = 0;
    int code = -1;
    sae_error err;
    sae_error_clear(&err);
    if (!shards)
        return cli_fail("out of memory");
    const cli_opt opts[] = {
        {"--out", CLI_PATH, "FILE.db", CLI_TO(out), .required = true,
         .help = "the index to write (beside it, then renamed into place)"},
        {"--quiet", CLI_FLAG, .help = "accepted as elsewhere; merge prints only errors"},
        {.type = CLI_PATH, .arg = "SHARD.db", CLI_TO(shards[0]), .count = &n,
         .max = (size_t)argc, .required = true},
    };
    const cli_spec spec = {.cmd = "merge", .usage = usage, .about = about, CLI_OPTS(opts)};
    code = cli_parse(&spec, argc, argv);
    if (code < 0)
        code = cli_check_not_input("merge", out, shards, n);
    if (code < 0) {
        sae_store_writer *w = NULL;
        if (sae_store_writer_open(out, &w, &err)) {
            code = cli_fail_err(&err);
        } else if (sae_merge_shards(shards, n, w, &err)) {
            sae_store_writer_abort(w);
            code = cli_fail_err(&err);
        } else {
            /* commit frees w whatever happens */
            code = sae_store_writer_commit(w, &err) ? cli_fail_err(&err) : SAE_EXIT_OK;
        }
    }
    free(shards);
    return code;
}
