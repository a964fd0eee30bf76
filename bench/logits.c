/* logits.c: the cost of the logit tables (`sae index --unembed`) against the
 * sgemm bound of the same product, measured in the same run.
 *
 *   logits [D_SAE [D_IN [V [THREADS]]]]   (default 24576 768 50257, OpenBLAS's threads)
 *
 * Random W_dec (D_SAE, D_IN) and W_U (D_IN, V). Times, in this order: the
 * raw product alone, block by block exactly as sae_logit_tables runs it
 * (sae_gemm_rows into the same 64 MiB block buffer, no scanning); the whole
 * sae_logit_tables (product, top/bottom 10, histogram); the raw product
 * again. Prints each with its GFLOP/s, the ratio raw/tables (1.0 = the bound)
 * and /proc/loadavg before and after (the machine is shared). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/dashboards.h"
#include "io/clock.h"
#include "sae/encode.h"

/* /proc/loadavg's first three fields into buf. */
static void loadavg(char *buf, size_t n)
{
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = '\0';
    if (f) {
        if (fgets(buf, (int)n, f)) {
            char *sp = buf;
            for (int k = 0; k < 3 && sp; k++)
                sp = strchr(sp + 1, ' ');
            if (sp)
                *sp = '\0';
        }
        fclose(f);
    }
}

/* The product alone, in the blocks sae_logit_tables uses; seconds. */
static double raw(const float *wd, size_t d_sae, size_t d_in, const float *wu, size_t V, float *y)
{
    size_t R = sae_logit_block_rows(V);
    double t0 = sae_clock_s();
    for (size_t f0 = 0; f0 < d_sae; f0 += R) {
        size_t r = d_sae - f0 < R ? d_sae - f0 : R;
        sae_gemm_rows(wu, false, d_in, V, wd + f0 * d_in, r, y);
    }
    return sae_clock_s() - t0;
}

int main(int argc, char **argv)
{
    size_t d_sae = argc > 1 ? strtoul(argv[1], NULL, 10) : 24576;
    size_t d_in = argc > 2 ? strtoul(argv[2], NULL, 10) : 768;
    size_t V = argc > 3 ? strtoul(argv[3], NULL, 10) : 50257;
    if (argc > 4)
        sae_set_blas_threads(atoi(argv[4]));
    size_t R = sae_logit_block_rows(V);
    float *wd = malloc(d_sae * d_in * sizeof *wd), *wu = malloc(d_in * V * sizeof *wu);
    float *y = malloc((R < d_sae ? R : d_sae) * V * sizeof *y);
    sae_logit_table *t = malloc(d_sae * sizeof *t);
    if (!wd || !wu || !y || !t) {
        fprintf(stderr, "logits: out of memory\n");
        return 1;
    }
    uint64_t s = 1;
    for (size_t i = 0; i < d_sae * d_in; i++)
        wd[i] = (float)((double)((s = s * 6364136223846793005ull + 1) >> 40) / (1 << 24) - 0.5);
    for (size_t i = 0; i < d_in * V; i++)
        wu[i] = (float)((double)((s = s * 6364136223846793005ull + 1) >> 40) / (1 << 24) - 0.5);
    char la0[64], la1[64];
    loadavg(la0, sizeof la0);
    double gf = 2.0 * (double)d_sae * (double)d_in * (double)V / 1e9;
    double r0 = raw(wd, d_sae, d_in, wu, V, y);
    double t0 = sae_clock_s();
    if (sae_logit_tables(wd, d_sae, d_in, wu, V, 0, t, NULL)) {
        fprintf(stderr, "logits: failed\n");
        return 1;
    }
    double tt = sae_clock_s() - t0;
    double r1 = raw(wd, d_sae, d_in, wu, V, y);
    loadavg(la1, sizeof la1);
    printf("d_sae %zu x d_in %zu x V %zu, %d BLAS threads, %zu rows a block\n", d_sae, d_in, V,
           sae_get_blas_threads(), R);
    printf("raw sgemm before: %.2f s (%.1f GFLOP/s)\n", r0, gf / r0);
    printf("logit tables:     %.2f s (%.1f GFLOP/s)\n", tt, gf / tt);
    printf("raw sgemm after:  %.2f s (%.1f GFLOP/s)\n", r1, gf / r1);
    printf("ratio (mean raw / tables): %.3f\n", (r0 + r1) / 2 / tt);
    printf("load average before: %s, after: %s\n", la0, la1);
    free(wd);
    free(wu);
    free(y);
    free(t);
    return 0;
}
