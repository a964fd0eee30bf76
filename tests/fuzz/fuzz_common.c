/* fuzz_common.c: scratch files and fixture models for the fuzz targets
 * (fuzz_common.h). */
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "io/safetensors.h"
#include "sae/encode.h"

static char *scratch;

static void scratch_remove(void)
{
    if (scratch)
        sae_fixture_rmtree(scratch);
}

const char *fuzz_scratch(void)
{
    if (scratch)
        return scratch;
    const char *base = getenv("SAE_FUZZ_TMP");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/saefuzz-%d-XXXXXX", base, (int)getpid());
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "fuzz: cannot make a scratch folder under %s: %s\n", base, strerror(errno));
        abort();
    }
    scratch = strdup(tmpl);
    if (!scratch)
        abort();
    atexit(scratch_remove);
    return scratch;
}

/* Paths are kept per name so a target may hold several scratch files. */
struct slot {
    char name[64];
    char path[600];
};
static struct slot slots[8];

const char *fuzz_write(const char *name, const void *buf, size_t len)
{
    struct slot *s = NULL;
    for (size_t i = 0; i < sizeof slots / sizeof *slots && !s; i++)
        if (!strcmp(slots[i].name, name) || !slots[i].name[0])
            s = &slots[i];
    if (!s)
        abort();
    if (!s->name[0]) {
        snprintf(s->name, sizeof s->name, "%s", name);
        snprintf(s->path, sizeof s->path, "%s/%s", fuzz_scratch(), name);
    }
    int fd = open(s->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "fuzz: cannot write %s: %s\n", s->path, strerror(errno));
            abort();
        }
        p += w;
        len -= (size_t)w;
    }
    close(fd);
    return s->path;
}

void fuzz_model_opts(size_t i, sae_fixture_opts *o)
{
    sae_fixture_defaults(o);
    o->d_in = FUZZ_D_IN;
    o->d_sae = FUZZ_D_SAE;
    o->seed = 7 + i;
    o->target_l0 = 4;
    switch (i % FUZZ_N_MODELS) {
    case 0:
        o->arch = SAE_ARCH_STANDARD;
        break;
    case 1:
        o->arch = SAE_ARCH_TOPK;
        o->k = 4;
        o->rescale_acts_by_decoder_norm = true;
        o->norm = SAE_NORM_LAYER_NORM;
        break;
    case 2:
        o->arch = SAE_ARCH_JUMPRELU;
        o->norm = SAE_NORM_CONSTANT_NORM_RESCALE;
        o->dtype = SAE_DT_F16;
        break;
    case 3:
        o->arch = SAE_ARCH_GATED;
        o->norm = SAE_NORM_EXPECTED_AVERAGE_ONLY_IN;
        o->norm_scaling_factor = 2.0f;
        o->dtype = SAE_DT_BF16;
        break;
    case 4:
        o->arch = SAE_ARCH_TOPK;
        o->k = 4;
        o->sparsify = true;
        o->legacy_cfg = false;
        break;
    }
}

static char *model_dirs[FUZZ_N_MODELS];
static sae_model *models[FUZZ_N_MODELS];

const char *fuzz_model_dir(size_t i)
{
    i %= FUZZ_N_MODELS;
    if (model_dirs[i])
        return model_dirs[i];
    char *dir = NULL;
    if (asprintf(&dir, "%s/model%zu", fuzz_scratch(), i) < 0)
        abort();
    sae_fixture_opts o;
    fuzz_model_opts(i, &o);
    sae_error err;
    if (sae_fixture_write_model(dir, &o, &err)) {
        fprintf(stderr, "fuzz: fixture model %zu: %s\n", i, err.msg);
        abort();
    }
    model_dirs[i] = dir;
    return dir;
}

const sae_model *fuzz_model(size_t i)
{
    i %= FUZZ_N_MODELS;
    if (models[i])
        return models[i];
    sae_set_blas_threads(1);
    sae_error err;
    if (sae_model_load(fuzz_model_dir(i), &models[i], NULL, &err)) {
        fprintf(stderr, "fuzz: fixture model %zu does not load: %s\n", i, err.msg);
        abort();
    }
    return models[i];
}

/* See fuzz_common.h. */
void fuzz_st_reader(sae_st_parse_fn parse, const char *name, const uint8_t *buf, size_t size)
{
    sae_st_file *f = NULL;
    sae_error err = {0};
    int rc = parse(name, buf, size, &f, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return;
    FUZZ_ASSERT(f->size == size && f->base == buf, "the file does not describe the buffer");
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const sae_st_tensor *t = &f->tensors[i];
        FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= SAE_ST_MAX_DIMS, "ndim %d", t->ndim);
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++)
            n *= (size_t)t->shape[d];
        FUZZ_ASSERT(n == t->n_elems, "%s: n_elems %zu, shape gives %zu", t->name, t->n_elems, n);
        FUZZ_ASSERT(t->nbytes == t->n_elems * sae_dtype_size(t->dtype), "%s: nbytes %zu",
                    t->name, t->nbytes);
        /* Outside the buffer, bytes are owned by this tensor or by another of
         * the same storage (torch); ASan checks the reads below either way. */
        const uint8_t *p = t->data;
        bool any_owned = false;
        for (size_t j = 0; j < f->n_tensors; j++)
            any_owned |= f->tensors[j].owned != NULL;
        FUZZ_ASSERT(t->nbytes == 0 || any_owned || (p >= buf && p + t->nbytes <= buf + size),
                    "%s: borrowed data outside the buffer", t->name);
        for (size_t k = 0; k < t->nbytes; k++)
            sink ^= p[k];
        FUZZ_ASSERT(sae_st_find(f, t->name) != NULL, "%s: not found by name", t->name);
        if (sae_dtype_is_float(t->dtype)) {
            const float *x;
            float *owned = NULL;
            sae_error e2 = {0};
            int r2 = sae_st_tensor_f32(f, t, &x, &owned, &e2);
            FUZZ_CHECK_ERR(r2, e2);
            free(owned);
        }
    }
    for (size_t i = 0; i < f->n_meta; i++)
        FUZZ_ASSERT(sae_st_meta_get(f, f->meta[i].key) != NULL, "meta %s lost", f->meta[i].key);
    (void)sink;
    sae_st_free(f);
}

/* See fuzz_common.h: libzip writes into a buffer source kept past
 * zip_close, which is then read back whole. */
uint8_t *fuzz_zip(size_t n, const char *const *names, const void *const *data,
                  const size_t *sizes, size_t *len)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *buf = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (!buf)
        abort();
    zip_source_keep(buf);
    zip_t *za = zip_open_from_source(buf, ZIP_TRUNCATE, &ze);
    if (!za)
        abort();
    for (size_t i = 0; i < n; i++) {
        zip_source_t *m = zip_source_buffer(za, sizes[i] ? data[i] : "", sizes[i], 0);
        zip_int64_t idx = m ? zip_file_add(za, names[i], m, ZIP_FL_ENC_UTF_8) : -1;
        if (idx < 0 || zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0))
            abort();
    }
    if (zip_close(za) || zip_source_open(buf))
        abort();
    zip_stat_t st;
    if (zip_source_stat(buf, &st) || !(st.valid & ZIP_STAT_SIZE))
        abort();
    uint8_t *out = malloc(st.size ? (size_t)st.size : 1);
    if (!out || zip_source_read(buf, out, st.size) != (zip_int64_t)st.size)
        abort();
    zip_source_close(buf);
    zip_source_free(buf);
    zip_error_fini(&ze);
    *len = (size_t)st.size;
    return out;
}

int fuzz_explanations_read(const char *path, sae_explanations *e)
{
    *e = (sae_explanations){0};
    sae_error err = {0};
    int rc = sae_explanations_read((const char *const[]){path}, 1, FUZZ_EXPL_D_SAE, e, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < e->n; i++) {
        FUZZ_ASSERT(e->items[i].feature < FUZZ_EXPL_D_SAE, "feature %u", e->items[i].feature);
        FUZZ_ASSERT(e->items[i].description != NULL, "explanation %zu: no description", i);
    }
    return 0;
}
