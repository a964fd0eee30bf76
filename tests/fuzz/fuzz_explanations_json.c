/* fuzz_explanations_json.c: the explanation readers past JSON Lines
 * (sae_explanations_read): JSON arrays and Neuronpedia feature objects, and
 * delphi run folders with their score files.
 *
 * The first input byte picks the shape. Even: the rest is one file (an array,
 * or lines: the reader decides by content). Odd: the rest is split at NUL
 * bytes into up to four delphi files (explanations of latents 3 and 1, a
 * detection score of latent 3, a fuzz score of latent 1); a missing part is a
 * missing file. Every explanation read must name a feature below d_sae and
 * carry a description; every score of a delphi run is finite. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"

/* The delphi files, in the order the input's parts fill them. */
static const char *const delphi_files[4] = {
    "run/explanations/layers.0_latent3.txt",
    "run/explanations/layers.0_latent1.txt",
    "run/scores/detection/layers.0_latent3.txt",
    "run/scores/fuzz/layers.0_latent1.txt",
};

/* Makes the run folder's layout once. */
static void make_run_dirs(void)
{
    static int done;
    if (done)
        return;
    const char *dirs[] = {"run", "run/explanations", "run/scores", "run/scores/detection",
                          "run/scores/fuzz"};
    char p[4096];
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", fuzz_scratch(), dirs[i]);
        mkdir(p, 0700);
    }
    done = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool delphi = data[0] & 1;
    const char *path;
    char run[4096];
    if (!delphi) {
        path = fuzz_write("explanations.json", data + 1, size - 1);
    } else {
        make_run_dirs();
        const uint8_t *p = data + 1, *end = data + size;
        for (int k = 0; k < 4; k++) {
            char f[4096];
            snprintf(f, sizeof f, "%s/%s", fuzz_scratch(), delphi_files[k]);
            if (p > end) {
                unlink(f);
                continue;
            }
            const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
            const uint8_t *stop = nul ? nul : end;
            fuzz_write(delphi_files[k], p, (size_t)(stop - p));
            p = stop + 1;
        }
        snprintf(run, sizeof run, "%s/run", fuzz_scratch());
        path = run;
    }
    sae_explanations e;
    if (fuzz_explanations_read(path, &e))
        return 0;
    for (size_t i = 0; i < e.n; i++) {
        FUZZ_ASSERT(e.items[i].id == i + 1, "explanation %zu: id %llu", i,
                    (unsigned long long)e.items[i].id);
        for (size_t k = 0; delphi && k < e.items[i].n_scores; k++)
            FUZZ_ASSERT(isfinite(e.items[i].scores[k].value) &&
                            e.items[i].scores[k].type != NULL,
                        "explanation %zu score %zu", i, k);
    }
    sae_explanations_free(&e);
    return 0;
}
