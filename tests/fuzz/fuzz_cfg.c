/* fuzz_cfg.c: cfg.json, through the real folder loader (sae_model_load).
 *
 * Input: one selector byte, then the cfg.json bytes. The selector picks one
 * of the fixture models (fuzz_common.h: standard, topk + layer_norm,
 * jumprelu F16, gated BF16, sparsify); its weights file is linked into a
 * scratch folder beside the fuzzed cfg.json, so cfg values meet real tensors
 * and the shape checks against them. A model that loads must have the
 * weights' shapes, a k within [1, d_sae] for topk, and must encode a row
 * without a fault. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sae/encode.h"
#include "fuzz_common.h"

static char dirs[FUZZ_N_MODELS][600];

/* A folder with model i's weights (a symlink) and nothing else yet. */
static const char *cfg_dir(size_t i)
{
    if (dirs[i][0])
        return dirs[i];
    const char *src = fuzz_model_dir(i);
    sae_fixture_opts o;
    fuzz_model_opts(i, &o);
    const char *wname = o.sparsify ? "sae.safetensors" : "sae_weights.safetensors";
    char from[700], to[700];
    snprintf(dirs[i], sizeof dirs[i], "%s/cfg%zu", fuzz_scratch(), i);
    snprintf(from, sizeof from, "%s/%s", src, wname);
    snprintf(to, sizeof to, "%s/%s", dirs[i], wname);
    if (mkdir(dirs[i], 0700) || symlink(from, to)) {
        fprintf(stderr, "fuzz: cannot prepare %s: %s\n", dirs[i], strerror(errno));
        abort();
    }
    return dirs[i];
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < FUZZ_N_MODELS; i++)
        cfg_dir(i);
    sae_set_blas_threads(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t sel = data[0] % FUZZ_N_MODELS;
    const char *dir = cfg_dir(sel);
    char path[700];
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    /* fuzz_write keeps files in the scratch root; this one lives in dir. */
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data + 1, 1, size - 1, fp) != size - 1 || fclose(fp))
        abort();

    sae_model *m = NULL;
    sae_error err = {0};
    sae_model_warnings warn;
    int rc = sae_model_load(dir, &m, &warn, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return 0;
    if (m->arch != SAE_ARCH_AUTOENCODER) {
        FUZZ_ASSERT(m->d_in == FUZZ_D_IN && m->d_sae == FUZZ_D_SAE, "loaded d_in %zu d_sae %zu",
                    m->d_in, m->d_sae);
        FUZZ_ASSERT(m->arch != SAE_ARCH_TOPK || (m->k >= 1 && m->k <= m->d_sae), "k %zu", m->k);
        /* 16-bit weights stay native (w_enc_h / w_dec_h) unless compute is f32. */
        FUZZ_ASSERT((m->w_enc || m->w_enc_h) && (m->w_dec || m->w_dec_h) && m->b_dec && m->dec_norm,
                    "a weight is missing");
        float x[2 * FUZZ_D_IN];
        sae_fixture_random_rows(x, 2, FUZZ_D_IN, 1.0, 3);
        sae_workspace *ws = sae_workspace_new(m, 0);
        FUZZ_ASSERT(ws, "no workspace");
        sae_sparse out;
        sae_sparse_init(&out);
        sae_row_metrics met[2];
        float recon[2 * FUZZ_D_IN];
        rc = sae_encode(m, ws, x, 2, NULL, &out, met, recon, &err);
        FUZZ_CHECK_ERR(rc, err);
        FUZZ_ASSERT(rc || out.n_rows == 2, "encode gave %zu rows", out.n_rows);
        for (size_t t = 0; !rc && t < out.nnz; t++)
            FUZZ_ASSERT(out.idx[t] < m->d_sae, "index %u", out.idx[t]);
        sae_sparse_free(&out);
        sae_workspace_free(ws);
    }
    sae_model_free(m);
    return 0;
}
