/* gen_corpus.c: writes the seed corpora of the fuzz targets that are binary
 * or derived from fixture files, so no seed is an opaque blob:
 *
 *   gen_corpus OUT_DIR
 *
 * writes OUT_DIR/<target>/<name> for safetensors (every malformed case of
 * the fixture writer plus a valid weights file), npy (the same for .npy),
 * cfg (a selector byte + each fuzz model's cfg.json, and the legacy keys),
 * and binary_body (octet-stream rows, .npy arrays and sparse decode rows,
 * each behind the mode byte and query of fuzz_binary_body.c). The text
 * seeds (JSON bodies, JSON Lines) are committed as they are; the index seed
 * is built by gen_corpus.sh with `sae index`. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "io/npy.h"

static const char *out_root;

static void put(const char *target, const char *name, const void *a, size_t na, const void *b,
                size_t nb)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out_root, target);
    if (mkdir(path, 0755) && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", out_root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (na && fwrite(a, 1, na, f) != na) || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void file_cases(void)
{
    for (size_t i = 0; i < sae_fixture_st_case_count(); i++) {
        sae_fixture_case c;
        if (sae_fixture_st_case(i, &c))
            exit(1);
        put("safetensors", c.name, c.data, c.len, NULL, 0);
        free(c.data);
    }
    for (size_t i = 0; i < sae_fixture_npy_case_count(); i++) {
        sae_fixture_case c;
        if (sae_fixture_npy_case(i, &c))
            exit(1);
        put("npy", c.name, c.data, c.len, NULL, 0);
        free(c.data);
    }
}

/* Each fuzz model's files: its weights as a safetensors seed, its cfg.json
 * behind its selector byte. */
static void model_files(void)
{
    for (size_t i = 0; i < FUZZ_N_MODELS; i++) {
        sae_fixture_opts o;
        fuzz_model_opts(i, &o);
        char path[1024], name[64];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", fuzz_model_dir(i),
                 o.sparsify ? "sae.safetensors" : "sae_weights.safetensors");
        uint8_t *w = slurp(path, &len);
        snprintf(name, sizeof name, "valid_model%zu", i);
        put("safetensors", name, w, len, NULL, 0);
        free(w);
        snprintf(path, sizeof path, "%s/cfg.json", fuzz_model_dir(i));
        uint8_t *cfg = slurp(path, &len);
        uint8_t sel = (uint8_t)('0' + i);
        snprintf(name, sizeof name, "model%zu", i);
        put("cfg", name, &sel, 1, cfg, len);
        free(cfg);
    }
    /* The pre-6.0 keys (activation_fn, activation_fn_kwargs, hook_point),
     * written by the fixture writer, for the topk model's weights. */
    sae_fixture_opts o;
    fuzz_model_opts(1, &o);
    o.legacy_cfg = true;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/legacy", fuzz_scratch());
    sae_error err;
    if (sae_fixture_write_model(dir, &o, &err)) {
        fprintf(stderr, "gen_corpus: %s\n", err.msg);
        exit(1);
    }
    char path[800];
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    size_t len;
    uint8_t *cfg = slurp(path, &len);
    uint8_t sel = '1';
    put("cfg", "legacy_topk", &sel, 1, cfg, len);
    free(cfg);
}

/* A binary_body seed: mode byte (mode + 3 x model), query length, query,
 * body. */
static void body_seed(const char *name, unsigned mode, unsigned model, const char *query,
                      const void *body, size_t len)
{
    uint8_t head[2 + 255];
    size_t q = strlen(query);
    head[0] = (uint8_t)(mode + 3 * model);
    head[1] = (uint8_t)q;
    memcpy(head + 2, query, q);
    put("binary_body", name, head, 2 + q, body, len);
}

static void binary_bodies(void)
{
    float rows[3 * FUZZ_D_IN];
    sae_fixture_random_rows(rows, 3, FUZZ_D_IN, 1.0, 11);
    body_seed("octet_1row", 0, 0, "", rows, sizeof(float) * FUZZ_D_IN);
    body_seed("octet_3rows_opts", 0, 1, "top_k=2&threshold=0.1&include=metrics", rows, sizeof rows);
    body_seed("octet_short", 0, 2, "", rows, sizeof(float) * FUZZ_D_IN - 4);
    body_seed("octet_empty", 0, 3, "include=reconstruction", rows, 0);

    /* .npy bodies: F32 and F16, 2-D and 1-D, written by the project's writer. */
    sae_dtype dts[] = {SAE_DT_F32, SAE_DT_F16};
    for (size_t k = 0; k < 2; k++) {
        char path[800], name[64];
        snprintf(path, sizeof path, "%s/body%zu.npy", fuzz_scratch(), k);
        sae_error err;
        if (sae_npy_write(path, dts[k], rows, 3, FUZZ_D_IN, &err)) {
            fprintf(stderr, "gen_corpus: %s\n", err.msg);
            exit(1);
        }
        size_t len;
        uint8_t *npy = slurp(path, &len);
        snprintf(name, sizeof name, "npy_%s_3rows", sae_dtype_name(dts[k]));
        body_seed(name, 1, (unsigned)k, k ? "top_k=1" : "", npy, len);
        free(npy);
    }

    /* Decode rows: u32 count, u32 indices[count], f32 values[count]. */
    uint8_t buf[256], *p = buf;
    uint32_t counts[] = {2, 0, 3};
    uint32_t next = 1;
    for (size_t r = 0; r < 3; r++) {
        memcpy(p, &counts[r], 4);
        p += 4;
        for (uint32_t t = 0; t < counts[r]; t++, next += 5) {
            uint32_t idx = next % FUZZ_D_SAE;
            memcpy(p + 4 * t, &idx, 4);
            float v = 0.5f * (float)(t + 1);
            memcpy(p + 4 * (counts[r] + t), &v, 4);
        }
        p += 8 * counts[r];
    }
    body_seed("decode_3rows", 2, 0, "", buf, (size_t)(p - buf));
    body_seed("decode_1row_gated", 2, 3, "", buf, 4 + 8 * counts[0]);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUT_DIR\n");
        return 2;
    }
    out_root = argv[1];
    if (mkdir(out_root, 0755) && errno != EEXIST) {
        perror(out_root);
        return 1;
    }
    file_cases();
    model_files();
    binary_bodies();
    return 0;
}
