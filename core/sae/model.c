/* model.c: loading an SAE folder, and building one from arrays.
 * cfg.json is read by model_cfg.c; here the weights file is found, mapped,
 * checked against what cfg asks for and bound to the model. The folder loader
 * is below the shared helpers, its steps before sae_model_load itself. */
#include "sae/model.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "io/mapped.h"
#include "sae/autoencoder.h"
#include "sae/format.h"
#include "sae/model_cfg.h"
#include "sae/parts.h"

/* Keeps buf for freeing with the model. */
static int model_own(sae_model *m, void *buf, sae_error *err)
{
    float **grown = realloc(m->owned, (m->n_owned + 1) * sizeof *grown);
    if (!grown) {
        free(buf);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    m->owned = grown;
    m->owned[m->n_owned++] = buf;
    return 0;
}

/* Sets *dst to exp(src[i]) for i < d_sae, in a buffer the model owns; `what`
 * names it in the out-of-memory message. */
static int model_own_exp(sae_model *m, const float *src, const float **dst, const char *what,
                         sae_error *err)
{
    float *e = malloc(m->d_sae * sizeof *e);
    if (!e)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for %s", what);
    for (size_t i = 0; i < m->d_sae; i++)
        e[i] = expf(src[i]);
    *dst = e;
    return model_own(m, e, err);
}

/* Computes dec_norm (always) and exp_r_mag (gated) from the weights in place. */
static int model_derive(sae_model *m, const float *r_mag, sae_error *err)
{
    m->dec_norm = malloc(m->d_sae * sizeof *m->dec_norm);
    if (!m->dec_norm)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for decoder norms");
    float *wide = NULL;
    if (m->w_dec_h && !(wide = malloc(m->d_out * sizeof *wide)))
        return sae_error_set(err, SAE_ENOMEM, "out of memory for decoder norms");
    for (size_t i = 0; i < m->d_sae; i++) {
        const float *row = wide ? wide : m->w_dec + i * m->d_out;
        if (wide)
            sae_half_widen(m->w_dtype, m->w_dec_h + i * m->d_out, wide, m->d_out);
        /* Eight independent partial sums: the adds pipeline instead of waiting
         * on one another, which matters for a 600 MB decoder at load. */
        double acc[8] = {0}, s = 0;
        size_t j = 0;
        for (; j + 8 <= m->d_out; j += 8)
            for (int q = 0; q < 8; q++)
                acc[q] += (double)row[j + q] * row[j + q];
        for (; j < m->d_out; j++)
            s += (double)row[j] * row[j];
        for (int q = 0; q < 8; q++)
            s += acc[q];
        m->dec_norm[i] = (float)sqrt(s);
    }
    free(wide);
    if (m->arch == SAE_ARCH_GATED)
        return model_own_exp(m, r_mag, &m->exp_r_mag, "exp(r_mag)", err);
    return 0;
}

/* A model over caller-owned arrays (borrowed), with derived norms computed. */
int sae_model_from_spec(const sae_model_spec *s, sae_model **out, sae_error *err)
{
    bool half = s->w_enc_h && s->w_dec_h;
    if (half && s->w_dtype != SAE_DT_F16 && s->w_dtype != SAE_DT_BF16)
        return sae_error_set(err, SAE_EINVAL, "model spec: 16-bit weights must be F16 or BF16");
    if (!s->d_in || !s->d_sae || !((s->w_enc && s->w_dec) || half) || !s->b_dec)
        return sae_error_set(err, SAE_EINVAL, "model spec: d_in, d_sae, W_enc, W_dec, b_dec required");
    if (s->arch == SAE_ARCH_GATED ? !(s->b_gate && s->b_mag && s->r_mag) : !s->b_enc)
        return sae_error_set(err, SAE_EINVAL, "model spec: biases missing for %s",
                             sae_arch_name(s->arch));
    if (s->arch == SAE_ARCH_JUMPRELU && !s->threshold)
        return sae_error_set(err, SAE_EINVAL, "model spec: jumprelu needs threshold");
    if (s->arch == SAE_ARCH_TOPK && (s->k == 0 || s->k > s->d_sae))
        return sae_error_set(err, SAE_EINVAL, "model spec: topk needs 1 <= k <= d_sae");
    if (s->arch == SAE_ARCH_AUTOENCODER)
        return sae_error_set(err, SAE_EINVAL, "model spec: autoencoder is loaded from a folder");
    if (s->transcoder && s->apply_b_dec_to_input && s->d_out && s->d_out != s->d_in)
        return sae_error_set(err, SAE_EINVAL, "model spec: b_dec (d_out) cannot apply to the input");
    sae_model *m = calloc(1, sizeof *m);
    if (!m)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    m->dir = strdup("(in memory)");
    m->weights_path = strdup("(in memory)");
    m->model_name = strdup("");
    m->hook_name = strdup("");
    m->hook_name_out = strdup("");
    m->neuronpedia_id = strdup("");
    strcpy(m->dtype, "F32");
    m->d_in = s->d_in;
    m->d_sae = s->d_sae;
    m->d_out = s->d_out ? s->d_out : s->d_in;
    m->arch = s->arch;
    m->transcoder = s->transcoder;
    m->signed_topk = s->signed_topk;
    m->dec_scale = s->dec_scale;
    m->k = s->k;
    m->rescale_acts_by_decoder_norm = s->rescale_acts_by_decoder_norm;
    m->apply_b_dec_to_input = s->apply_b_dec_to_input;
    m->norm = s->norm;
    m->norm_scaling_factor = s->norm_scaling_factor > 0 ? s->norm_scaling_factor : 1.0f;
    m->w_enc = half ? NULL : s->w_enc;
    m->b_enc = s->b_enc;
    m->w_dec = half ? NULL : s->w_dec;
    m->w_enc_h = half ? s->w_enc_h : NULL;
    m->w_dec_h = half ? s->w_dec_h : NULL;
    m->w_dtype = half ? s->w_dtype : SAE_DT_F32;
    m->kernel = sae_kernel_pick(m->w_dtype);
    if (half)
        strcpy(m->dtype, sae_dtype_name(s->w_dtype));
    m->b_dec = s->b_dec;
    m->threshold = s->threshold;
    m->b_gate = s->b_gate;
    m->b_mag = s->b_mag;
    int rc = SAE_ENOMEM;
    if (!m->dir || !m->weights_path || !m->model_name || !m->hook_name || !m->hook_name_out ||
        !m->neuronpedia_id) {
        sae_error_set(err, rc, "out of memory");
        goto fail;
    }
    if ((rc = model_derive(m, s->r_mag, err)))
        goto fail;
    if (half)
        sae_digest_buffer(s->w_enc_h, s->d_in * s->d_sae * sizeof(uint16_t), m->weights_digest);
    else
        sae_digest_buffer(s->w_enc, s->d_in * s->d_sae * sizeof(float), m->weights_digest);
    *out = m;
    return 0;
fail:
    sae_model_free(m);
    return rc;
}

/* Frees everything the model owns, the mapping last. NULL is a no-op. */
void sae_model_free(sae_model *m)
{
    if (!m)
        return;
    if (m->ae)
        sae_ae_free(m->ae);
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->dec_norm);
    free(m->dir);
    free(m->weights_path);
    free(m->model_name);
    free(m->hook_name);
    free(m->hook_name_out);
    free(m->neuronpedia_id);
    sae_st_free(m->st);
    free(m);
}

/* Each non-empty name of over replaces m's, all or none. */
int sae_model_set_names(sae_model *m, const sae_model_names *over, sae_error *err)
{
    const char *src[4] = {over->model_name, over->hook_name, over->hook_name_out,
                          over->neuronpedia_id};
    char **dst[4] = {&m->model_name, &m->hook_name, &m->hook_name_out, &m->neuronpedia_id};
    char *dup[4] = {0};
    for (int i = 0; i < 4; i++)
        if (src[i] && *src[i] && !(dup[i] = strdup(src[i]))) {
            for (int j = 0; j < i; j++)
                free(dup[j]);
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
        }
    for (int i = 0; i < 4; i++)
        if (dup[i]) {
            free(*dst[i]);
            *dst[i] = dup[i];
        }
    return 0;
}

void sae_model_json_kind(const sae_model *m, json_t *o)
{
    json_object_set_new(o, "neuronpedia_id", json_string(m->neuronpedia_id));
    json_object_set_new(o, "d_out", json_integer((json_int_t)m->d_out));
    json_object_set_new(o, "transcoder", json_boolean(m->transcoder));
    json_object_set_new(o, "hook_name_out",
                        m->transcoder ? json_string(m->hook_name_out) : json_null());
    json_object_set_new(o, "skip_connection", json_boolean(m->skip_connection));
    json_object_set_new(o, "signed", json_boolean(m->signed_topk));
    json_object_set_new(o, "finetuning_scaling_factor", json_boolean(m->dec_scale != NULL));
}

/* neuronpedia_id is "model/source" (Neuronpedia's own ids, e.g.
 * "gemma-2-2b/12-gemmascope-res-16k"); without one, model_name and
 * hook_name stand in. */
void sae_model_neuronpedia(const sae_model *m, const char **model_id, size_t *model_len,
                           const char **source_id)
{
    const char *np = m->neuronpedia_id ? m->neuronpedia_id : "";
    const char *slash = strchr(np, '/');
    if (slash) {
        *model_id = np;
        *model_len = (size_t)(slash - np);
        *source_id = slash + 1;
        return;
    }
    *model_id = m->model_name ? m->model_name : "";
    *model_len = strlen(*model_id);
    *source_id = m->hook_name ? m->hook_name : "";
}


bool sae_model_changed(const sae_model *m)
{
    return m->st && m->st->mapped && sae_mapped_changed(m->st->base);
}

void sae_model_dec_row(const sae_model *m, size_t i, float *out)
{
    if (m->w_dec_h)
        sae_half_widen(m->w_dtype, m->w_dec_h + i * m->d_out, out, m->d_out);
    else
        memcpy(out, m->w_dec + i * m->d_out, m->d_out * sizeof *out);
}

int sae_model_w_dec_f32(const sae_model *m, const float **out, float **owned, sae_error *err)
{
    *owned = NULL;
    if (!m->w_dec_h) {
        *out = m->w_dec;
        return 0;
    }
    size_t n;
    float *w;
    if (sae_mul_size(m->d_sae, m->d_out, &n) || n > SIZE_MAX / sizeof *w ||
        !(w = malloc(n * sizeof *w)))
        return sae_error_set(err, SAE_ENOMEM, "out of memory widening W_dec to F32");
    sae_half_widen(m->w_dtype, m->w_dec_h, w, n);
    *out = *owned = w;
    return 0;
}

int sae_compute_parse(const char *s, sae_compute *out)
{
    if (strcmp(s, "native") == 0)
        *out = SAE_COMPUTE_NATIVE;
    else if (strcmp(s, "f32") == 0)
        *out = SAE_COMPUTE_F32;
    else
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ digest */

/* Formats an XXH3-128 hash in its canonical (big-endian) form as lowercase hex. */
static void digest_hex(XXH128_hash_t h, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[c.digest[i] >> 4];
        out[2 * i + 1] = hex[c.digest[i] & 15];
    }
    out[32] = '\0';
}

/* XXH3-128 of memory, as hex. */
void sae_digest_buffer(const void *buf, size_t len, char out[33])
{
    digest_hex(XXH3_128bits(buf, len), out);
}

/* XXH3-128 of a whole file, hashed over a read-only mapping. */
int sae_digest_file(const char *path, char out[33], sae_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
    void *map = MAP_FAILED;
    size_t size = 0;
    struct stat st;
    if (fd < 0) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        rc = sae_error_set(err, SAE_EIO, "%s: not a readable regular file", path);
        goto out;
    }
    size = (size_t)st.st_size;
    if (size == 0) {
        sae_digest_buffer("", 0, out);
        rc = 0;
        goto out;
    }
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot map: %s", path, strerror(errno));
        goto out;
    }
    madvise(map, size, MADV_SEQUENTIAL);
    sae_mapped_add(map, size, path);
    sae_digest_buffer(map, size, out);
    sae_mapped_remove(map);
    rc = 0;
out:
    if (map != MAP_FAILED)
        munmap(map, size);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ------------------------------------------------------------ tensors */

/* Looks up a tensor that must exist with shape [d0] (ndim 1) or [d0, d1]. */
static int get_tensor(const sae_st_file *st, const char *name, int ndim, size_t d0, size_t d1,
                      const char *n0, const char *n1, const sae_st_tensor **out,
                      sae_error *err)
{
    const sae_st_tensor *t = sae_st_find(st, name);
    if (!t)
        return sae_error_set(err, SAE_EFORMAT, "%s: missing tensor \"%s\"", st->path, name);
    bool ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!ok && ndim == 2 && t->ndim == 3)
        return sae_error_set(err, SAE_EDIM,
                             "%s: tensor \"%s\" is 3-D [%llu, %llu, %llu]: a crosscoder or "
                             "cross-layer transcoder (one slice per layer), which saed does not "
                             "serve; export one layer's SAE as a SAELens folder",
                             st->path, name, (unsigned long long)t->shape[0],
                             (unsigned long long)t->shape[1], (unsigned long long)t->shape[2]);
    if (!ok) {
        char got[160] = "[";
        size_t at = 1;
        for (int i = 0; i < t->ndim && at < sizeof got; i++)
            at += (size_t)snprintf(got + at, sizeof got - at, "%s%llu", i ? ", " : "",
                                   (unsigned long long)t->shape[i]);
        if (at < sizeof got - 1)
            got[at++] = ']', got[at] = '\0';
        if (ndim == 1)
            return sae_error_set(err, SAE_EDIM,
                                 "%s: tensor \"%s\" has shape %s, expected [%zu] (%s)",
                                 st->path, name, got, d0, n0);
        return sae_error_set(err, SAE_EDIM,
                             "%s: tensor \"%s\" has shape %s, expected [%zu, %zu] (%s, %s)",
                             st->path, name, got, d0, d1, n0, n1);
    }
    *out = t;
    return 0;
}

/* True if any of elements [i0, i1) of t is inf or NaN, judged on the raw
 * little-endian bits: (bits & exponent mask) + the exponent's lowest bit
 * carries into the sign bit exactly when the exponent is all ones, and never
 * beyond it. So eight bytes at a time hold 2 F32, 4 F16/BF16 or 1 F64 lanes
 * that are tested at once without branches; four accumulators keep the loop
 * from waiting on itself. This pass runs over every weight at load. */
static bool any_nonfinite(const sae_st_tensor *t, size_t i0, size_t i1)
{
    uint64_t mask, low;
    switch (t->dtype) {
    case SAE_DT_F32: mask = 0x7f8000007f800000ull, low = 0x0080000000800000ull; break;
    case SAE_DT_F16: mask = 0x7c007c007c007c00ull, low = 0x0400040004000400ull; break;
    case SAE_DT_BF16: mask = 0x7f807f807f807f80ull, low = 0x0080008000800080ull; break;
    case SAE_DT_F64: mask = 0x7ff0000000000000ull, low = 0x0010000000000000ull; break;
    default: return false;
    }
    uint64_t sign = (mask + low) & ~mask; /* each lane's top bit */
    size_t es = sae_dtype_size(t->dtype);
    const uint8_t *p = (const uint8_t *)t->data + i0 * es, *end = (const uint8_t *)t->data + i1 * es;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, w[4];
    for (; end - p >= 32; p += 32) {
        memcpy(w, p, 32);
        a0 |= (w[0] & mask) + low;
        a1 |= (w[1] & mask) + low;
        a2 |= (w[2] & mask) + low;
        a3 |= (w[3] & mask) + low;
    }
    uint64_t acc = a0 | a1 | a2 | a3;
    /* The last < 32 bytes one element at a time, each in a zeroed word (a
     * zero lane never looks non-finite). */
    for (; p < end; p += es) {
        uint64_t u = 0;
        memcpy(&u, p, es);
        acc |= ((u & mask) + low) & sign & (es == 8 ? ~0ull : (1ull << (8 * es)) - 1);
    }
    return acc & sign;
}

/* Index of the first non-finite element among elements [i0, i1) of t, or
 * SIZE_MAX. */
static size_t first_nonfinite(const sae_st_tensor *t, size_t i0, size_t i1)
{
    if (!any_nonfinite(t, i0, i1))
        return SIZE_MAX;
    for (size_t i = i0; i < i1; i++)
        if (any_nonfinite(t, i, i + 1))
            return i;
    return SIZE_MAX;
}

/* Gives the kernel back the whole pages inside [p, p+len) of a file mapping:
 * they are re-read from the page cache if touched again. Used once a non-F32
 * tensor has been converted, so a converted model's peak memory is about its
 * F32 size rather than F32 plus the file. */
static void drop_pages(const void *p, size_t len)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) / page * page;
    uintptr_t b = ((uintptr_t)p + len) / page * page;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* One pass over the whole weights file: its XXH3-128 digest and, for each
 * tensor the model uses, a check that every element is finite. Reading the
 * file once for both keeps load time at the cost of the digest alone.
 *
 * Why reject non-finite weights when SAELens does not: a NaN or inf weight
 * makes every encode touching that feature NaN, which the API cannot return
 * as JSON, so the model is refused at load with the tensor and element named. */
static int digest_and_scan(const sae_st_file *st, const sae_st_tensor *const *used, size_t n_used,
                           bool drop, char out[33], sae_error *err)
{
    const size_t chunk = (size_t)1 << 20;
    XXH3_state_t *state = XXH3_createState();
    if (!state)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for the digest");
    XXH3_128bits_reset(state);
    int rc = 0;
    for (size_t lo = 0; lo < st->size; lo += chunk) {
        size_t hi = st->size - lo < chunk ? st->size : lo + chunk;
        XXH3_128bits_update(state, st->base + lo, hi - lo);
        /* Each element is scanned in the chunk holding its first byte. */
        for (size_t u = 0; u < n_used; u++) {
            const sae_st_tensor *t = used[u];
            size_t tb = (size_t)((const uint8_t *)t->data - st->base);
            size_t es = sae_dtype_size(t->dtype);
            size_t a = lo > tb ? (lo - tb + es - 1) / es : 0;
            size_t b = hi > tb ? (hi - tb + es - 1) / es : 0;
            if (b > t->n_elems)
                b = t->n_elems;
            if (a >= b)
                continue;
            size_t bad = first_nonfinite(t, a, b);
            if (bad != SIZE_MAX) {
                rc = sae_error_set(err, SAE_ERANGE,
                                   "%s: tensor \"%s\" element %zu is not finite (NaN or inf)",
                                   st->path, t->name, bad);
                goto out;
            }
        }
        if (drop)
            drop_pages(st->base + lo, hi - lo);
    }
    digest_hex(XXH3_128bits_digest(state), out);
out:
    XXH3_freeState(state);
    return rc;
}

/* Sets *out to t's data as F32: in place for aligned F32, otherwise converted
 * once into a buffer the model owns, chunk by chunk, handing each converted
 * chunk's source pages back when `drop`. */
static int tensor_f32(sae_model *m, const sae_st_tensor *t, bool drop, const float **out,
                      sae_error *err)
{
    if (t->dtype == SAE_DT_F32 && (uintptr_t)t->data % _Alignof(float) == 0) {
        *out = t->data;
        return 0;
    }
    size_t bytes;
    if (sae_mul_size(t->n_elems ? t->n_elems : 1, sizeof(float), &bytes))
        return sae_error_set(err, SAE_ENOMEM, "%s: tensor \"%s\" too large", m->weights_path,
                             t->name);
    /* A large buffer is asked for in 2 MB huge pages: first-touching hundreds
     * of MB in 4 KB pages costs more than the conversion itself. */
    const size_t huge = (size_t)2 << 20;
    void *mem = NULL;
    if (bytes < huge || posix_memalign(&mem, huge, bytes))
        mem = malloc(bytes);
    else
        madvise(mem, bytes, MADV_HUGEPAGE);
    float *buf = mem;
    if (!buf)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory converting tensor \"%s\"",
                             m->weights_path, t->name);
    const size_t chunk = (size_t)1 << 20, es = sae_dtype_size(t->dtype);
    for (size_t at = 0; at < t->n_elems; at += chunk) {
        size_t n = t->n_elems - at < chunk ? t->n_elems - at : chunk;
        const uint8_t *src = (const uint8_t *)t->data + at * es;
        sae_convert_to_f32(t->dtype, src, n, buf + at);
        if (drop)
            drop_pages(src, n * es);
    }
    *out = buf;
    return model_own(m, buf, err);
}

/* Sets *out to t's 16-bit data (F16 or BF16) in place, or, when the file
 * placed it at an odd offset, to a copy the model owns. */
static int tensor_half(sae_model *m, const sae_st_tensor *t, const uint16_t **out,
                       sae_error *err)
{
    if ((uintptr_t)t->data % _Alignof(uint16_t) == 0) {
        *out = t->data;
        return 0;
    }
    size_t bytes;
    void *buf;
    if (sae_mul_size(t->n_elems ? t->n_elems : 1, sizeof(uint16_t), &bytes) ||
        !(buf = malloc(bytes)))
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory copying tensor \"%s\"",
                             m->weights_path, t->name);
    memcpy(buf, t->data, t->n_elems * sizeof(uint16_t));
    *out = buf;
    return model_own(m, buf, err);
}

/* The tensors of one architecture, as found in the file. */
typedef struct model_tensors {
    const sae_st_tensor *w_enc, *b_enc, *w_dec, *b_dec, *threshold, *log_threshold;
    const sae_st_tensor *b_gate, *b_mag, *r_mag;
    const sae_st_tensor *scaling_factor; /* SAELens <= 5 finetuning, or NULL */
} model_tensors;

/* Finds and shape-checks every tensor cfg's architecture needs. */
static int find_tensors(const sae_st_file *st, const sae_model_cfg *c, bool sparsify,
                        model_tensors *t, sae_error *err)
{
    size_t di = c->d_in, ds = c->d_sae, dout = c->d_out ? c->d_out : c->d_in;
    int rc;
    if (sparsify) {
        if ((rc = get_tensor(st, "encoder.weight", 2, ds, di, "d_sae", "d_in", &t->w_enc, err)) ||
            (rc = get_tensor(st, "encoder.bias", 1, ds, 0, "d_sae", NULL, &t->b_enc, err)))
            return rc;
    } else {
        if ((rc = get_tensor(st, "W_enc", 2, di, ds, "d_in", "d_sae", &t->w_enc, err)))
            return rc;
        if (c->arch != SAE_ARCH_GATED &&
            (rc = get_tensor(st, "b_enc", 1, ds, 0, "d_sae", NULL, &t->b_enc, err)))
            return rc;
    }
    const char *nout = c->transcoder ? "d_out" : "d_in";
    if ((rc = get_tensor(st, "W_dec", 2, ds, dout, "d_sae", nout, &t->w_dec, err)) ||
        (rc = get_tensor(st, "b_dec", 1, dout, 0, nout, NULL, &t->b_dec, err)))
        return rc;
    /* W_skip is checked to be what cfg says, then left out: SAELens and
     * sparsify add it in forward only, never in decode. */
    const sae_st_tensor *skip;
    if (c->skip && (rc = get_tensor(st, "W_skip", 2, sparsify ? di : dout, di,
                                    sparsify ? "d_in" : "d_out", "d_in", &skip, err)))
        return rc;
    if (!sparsify && sae_st_find(st, "scaling_factor") &&
        (rc = get_tensor(st, "scaling_factor", 1, ds, 0, "d_sae", NULL, &t->scaling_factor, err)))
        return rc;
    if (c->arch == SAE_ARCH_JUMPRELU) {
        /* Some converted JumpReLU SAEs store log_threshold; threshold wins if both exist. */
        if (!sae_st_find(st, "threshold") && sae_st_find(st, "log_threshold"))
            rc = get_tensor(st, "log_threshold", 1, ds, 0, "d_sae", NULL, &t->log_threshold, err);
        else
            rc = get_tensor(st, "threshold", 1, ds, 0, "d_sae", NULL, &t->threshold, err);
        if (rc)
            return rc;
    }
    if (c->arch == SAE_ARCH_GATED &&
        ((rc = get_tensor(st, "b_gate", 1, ds, 0, "d_sae", NULL, &t->b_gate, err)) ||
         (rc = get_tensor(st, "b_mag", 1, ds, 0, "d_sae", NULL, &t->b_mag, err)) ||
         (rc = get_tensor(st, "r_mag", 1, ds, 0, "d_sae", NULL, &t->r_mag, err))))
        return rc;
    return 0;
}

/* For sparsify, where cfg need not give them: d_in from encoder.weight, and
 * d_sae from num_latents or expansion_factor x d_in, checked against it. */
static int sparsify_dims(const sae_st_file *st, sae_model_cfg *c, const char *cfg_path,
                         sae_error *err)
{
    const sae_st_tensor *w = sae_st_find(st, "encoder.weight");
    if (!w)
        return sae_error_set(err, SAE_EFORMAT, "%s: missing tensor \"encoder.weight\"", st->path);
    if (w->ndim != 2 || w->shape[0] == 0 || w->shape[1] == 0)
        return sae_error_set(err, SAE_EDIM,
                             "%s: tensor \"encoder.weight\" must be 2-D [d_sae, d_in], non-empty",
                             st->path);
    size_t d_in = (size_t)w->shape[1], d_sae = (size_t)w->shape[0];
    if (c->d_in && c->d_in != d_in)
        return sae_error_set(err, SAE_EDIM,
                             "%s: d_in = %zu but tensor \"encoder.weight\" has d_in = %zu",
                             cfg_path, c->d_in, d_in);
    size_t want = c->sparsify_latents;
    if (!want && sae_mul_size(c->sparsify_expansion, d_in, &want))
        return sae_error_set(err, SAE_EINVAL, "%s: expansion_factor too large", cfg_path);
    if (!want)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: neither num_latents nor expansion_factor gives d_sae", cfg_path);
    if (want != d_sae)
        return sae_error_set(err, SAE_EDIM,
                             "%s: cfg gives d_sae = %zu (num_latents or expansion_factor x d_in) "
                             "but tensor \"encoder.weight\" has %zu rows",
                             cfg_path, want, d_sae);
    if (c->k > d_sae)
        return sae_error_set(err, SAE_EINVAL, "%s: k = %zu is not in [1, d_sae = %zu]", cfg_path,
                             c->k, d_sae);
    c->d_in = d_in;
    c->d_sae = d_sae;
    c->d_out = d_in; /* a sparsify transcoder's b_dec is [d_in] too */
    return 0;
}

/* Sets dst to a copy of s (or "" for NULL). */
static int dup_or_empty(char **dst, const char *s)
{
    *dst = strdup(s ? s : "");
    return *dst ? 0 : -1;
}

/* Returns 1 if path exists (as anything). */
static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------ the loader */

/* Checks that dir is a folder, then starts *m on it and sets *cfg_path to
 * dir/cfg.json (both owned by the caller, also on failure). */
static int load_start(const char *dir, sae_model **m, char **cfg_path, sae_error *err)
{
    struct stat st;
    if (stat(dir, &st))
        return sae_error_set(err, SAE_EIO, "%s: cannot open model folder: %s", dir,
                             strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sae_error_set(err, SAE_EIO, "%s: not a folder (expected cfg.json + weights)", dir);
    *m = calloc(1, sizeof **m);
    if (!*m || !((*m)->dir = strdup(dir)) || asprintf(cfg_path, "%s/cfg.json", dir) < 0) {
        *cfg_path = NULL;
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    (*m)->w_dtype = SAE_DT_F32; /* until bind_tensors keeps 16-bit weights */
    (*m)->kernel = SAE_KERNEL_BLAS_F32;
    return 0;
}

/* Picks the layout by which weights file the folder holds:
 * sae_weights.safetensors (SAELens, and `sae train`) first, else
 * sae.safetensors (sparsify). Sets m->weights_path and m->sparsify. */
static int find_weights(sae_model *m, sae_error *err)
{
    char *wp = NULL;
    if (asprintf(&wp, "%s/sae_weights.safetensors", m->dir) < 0)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    if (!exists(wp)) {
        free(wp);
        if (asprintf(&wp, "%s/sae.safetensors", m->dir) < 0)
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
        if (!exists(wp)) {
            free(wp);
            return sae_error_set(err, SAE_EIO,
                                 "%s: no sae_weights.safetensors (SAELens) or sae.safetensors "
                                 "(sparsify) in the folder",
                                 m->dir);
        }
        m->sparsify = true;
    }
    m->weights_path = wp;
    return 0;
}

/* Copies onto m what cfg says about it beyond its sizes: the names, the
 * architecture and how inputs are normalised. */
static int take_cfg(sae_model *m, const sae_model_cfg *c, sae_error *err)
{
    if (dup_or_empty(&m->model_name, c->model_name) || dup_or_empty(&m->hook_name, c->hook_name) ||
        dup_or_empty(&m->hook_name_out, c->hook_name_out) ||
        dup_or_empty(&m->neuronpedia_id, c->neuronpedia_id))
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    m->arch = c->arch;
    m->transcoder = c->transcoder;
    m->skip_connection = c->skip;
    m->signed_topk = c->signed_topk;
    m->apply_b_dec_to_input = c->apply_b_dec;
    m->norm = c->norm;
    m->norm_scaling_factor = c->has_scale ? (float)c->scale : 1.0f;
    m->rescale_acts_by_decoder_norm = c->rescale;
    return 0;
}

/* The plain autoencoder of `sae train`: its layers bind themselves
 * (autoencoder.c) from cfg (borrowed); the model's dtype is the first
 * tensor's, and the digest covers the whole file. */
static int bind_autoencoder(sae_model *m, const json_t *cfg, sae_error *err)
{
    int rc;
    if ((rc = sae_ae_load(m->st, cfg, &m->ae, err)))
        return rc;
    m->d_in = sae_ae_d_in(m->ae);
    m->d_out = m->d_in;
    m->d_sae = sae_ae_d_code(m->ae);
    const sae_st_tensor *first = m->st->n_tensors ? &m->st->tensors[0] : NULL;
    snprintf(m->dtype, sizeof m->dtype, "%s", first ? sae_dtype_name(first->dtype) : "F32");
    return digest_and_scan(m->st, NULL, 0, false, m->weights_digest, err);
}

/* The tensors t found, in one list (used has room for all ten); returns how
 * many. */
static size_t tensors_used(const model_tensors *t, const sae_st_tensor *used[10])
{
    const sae_st_tensor *all[] = {t->w_enc,  t->b_enc, t->w_dec, t->b_dec, t->threshold,
                                  t->log_threshold, t->b_gate, t->b_mag, t->r_mag,
                                  t->scaling_factor};
    size_t n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i])
            used[n++] = all[i];
    return n;
}

/* Every used tensor must hold floats, and all of them the same dtype, so the
 * model has one dtype and one conversion. */
static int check_dtypes(const char *weights_path, const sae_st_tensor *const *used, size_t n,
                        sae_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!sae_dtype_is_float(used[i]->dtype))
            return sae_error_set(err, SAE_EFORMAT,
                                 "%s: tensor \"%s\" has dtype %s; weights must be F32, F16, "
                                 "BF16 or F64",
                                 weights_path, used[i]->name, sae_dtype_name(used[i]->dtype));
        if (used[i]->dtype != used[0]->dtype)
            return sae_error_set(err, SAE_EFORMAT,
                                 "%s: tensor \"%s\" is %s but \"%s\" is %s; all tensors must "
                                 "share one dtype",
                                 weights_path, used[i]->name, sae_dtype_name(used[i]->dtype),
                                 used[0]->name, sae_dtype_name(used[0]->dtype));
    }
    return 0;
}

/* SAELens <= 5's finetuning scaling factor, as read_sae_components_from_disk
 * takes it: a `scaling_factor` of all ones is dropped; any other needs
 * finetuning_scaling_factor true in cfg (SAELens raises otherwise) and then
 * scales the activations in decode only. */
static int bind_scaling(sae_model *m, const sae_st_tensor *t, bool flag, bool drop,
                        const char *cfg_path, sae_error *err)
{
    const float *s;
    int rc;
    if (!t || (rc = tensor_f32(m, t, drop, &s, err)))
        return t ? rc : 0;
    bool ones = true;
    for (size_t i = 0; i < m->d_sae && ones; i++)
        ones = s[i] == 1.0f;
    if (ones)
        return 0;
    if (!flag)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: the weights hold a scaling_factor that is not all ones but "
                             "finetuning_scaling_factor is not true (SAELens 5 refuses this too)",
                             cfg_path);
    m->dec_scale = s;
    return 0;
}

/* Borrows or converts (tensor_f32) each tensor found into m's weights, turns
 * a log_threshold into the threshold, then derives the decoder norms (and
 * exp(r_mag) for gated). */
static int bind_tensors(sae_model *m, const model_tensors *t, bool half, bool drop,
                        sae_error *err)
{
    const float *r_mag = NULL, *log_thr = NULL;
    int rc;
    m->w_dtype = half ? t->w_enc->dtype : SAE_DT_F32;
    m->kernel = sae_kernel_pick(m->w_dtype);
    if (half ? (rc = tensor_half(m, t->w_enc, &m->w_enc_h, err)) ||
                   (rc = tensor_half(m, t->w_dec, &m->w_dec_h, err))
             : (rc = tensor_f32(m, t->w_enc, drop, &m->w_enc, err)) ||
                   (rc = tensor_f32(m, t->w_dec, drop, &m->w_dec, err)))
        return rc;
    if ((t->b_enc && (rc = tensor_f32(m, t->b_enc, drop, &m->b_enc, err))) ||
        (rc = tensor_f32(m, t->b_dec, drop, &m->b_dec, err)) ||
        (t->threshold && (rc = tensor_f32(m, t->threshold, drop, &m->threshold, err))) ||
        (t->log_threshold && (rc = tensor_f32(m, t->log_threshold, drop, &log_thr, err))) ||
        (t->b_gate && (rc = tensor_f32(m, t->b_gate, drop, &m->b_gate, err))) ||
        (t->b_mag && (rc = tensor_f32(m, t->b_mag, drop, &m->b_mag, err))) ||
        (t->r_mag && (rc = tensor_f32(m, t->r_mag, drop, &r_mag, err))))
        return rc;
    if (log_thr && (rc = model_own_exp(m, log_thr, &m->threshold, "the threshold", err)))
        return rc;
    return model_derive(m, r_mag, err);
}

/* An SAE in SAELens or sparsify layout: its sizes (from encoder.weight for
 * sparsify), the tensors cfg's architecture needs, shape-checked and of one
 * float dtype, one pass over the file for the digest and the finiteness
 * check, then the weights bound. c's sizes are filled in for sparsify. */
static int bind_sae(sae_model *m, sae_model_cfg *c, sae_compute compute, const char *cfg_path,
                    sae_error *err)
{
    model_tensors t = {0};
    const sae_st_tensor *used[10];
    int rc;
    if (m->sparsify && (rc = sparsify_dims(m->st, c, cfg_path, err)))
        return rc;
    m->d_in = c->d_in;
    m->d_sae = c->d_sae;
    m->d_out = c->d_out ? c->d_out : c->d_in;
    m->k = c->k;
    m->w_enc_t = m->sparsify;
    if ((rc = find_tensors(m->st, c, m->sparsify, &t, err)))
        return rc;
    size_t n_used = tensors_used(&t, used);
    if ((rc = check_dtypes(m->weights_path, used, n_used, err)))
        return rc;
    snprintf(m->dtype, sizeof m->dtype, "%s", sae_dtype_name(used[0]->dtype));
    /* F16/BF16 weights stay as they are unless F32 compute is asked for;
     * only a model converted whole gives its file pages back. */
    sae_dtype dt = used[0]->dtype;
    bool half = compute == SAE_COMPUTE_NATIVE && (dt == SAE_DT_F16 || dt == SAE_DT_BF16);
    bool drop = dt != SAE_DT_F32 && !half;
    if ((rc = digest_and_scan(m->st, used, n_used, drop, m->weights_digest, err)) ||
        (rc = bind_scaling(m, t.scaling_factor, c->finetuning_scaling, drop, cfg_path, err)))
        return rc;
    return bind_tensors(m, &t, half, drop, err);
}

/* A release layout (format.h): its loader composes the canonical tensors
 * into parts, which m takes whole (the file, the buffers, the names); then
 * the composed arrays are checked finite, the weights file digested and the
 * decoder norms derived. Everything the parts owned is m's, also on failure. */
static int load_parts(sae_model *m, sae_format fmt, sae_model_warnings *warn, sae_error *err)
{
    sae_parts p = {0};
    int rc = sae_format_compose(m->dir, fmt, &p, warn, err);
    if (!rc)
        rc = sae_parts_check_finite(&p, err);
    m->st = p.st, m->owned = p.owned, m->n_owned = p.n_owned;
    m->weights_path = p.weights_path;
    p.st = NULL, p.owned = NULL, p.n_owned = 0, p.weights_path = NULL;
    if (!rc && (dup_or_empty(&m->model_name, p.model_name) ||
                dup_or_empty(&m->hook_name, p.hook_name) ||
                dup_or_empty(&m->hook_name_out, p.hook_name_out) ||
                dup_or_empty(&m->neuronpedia_id, p.neuronpedia_id)))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
    if (rc)
        goto out;
    snprintf(m->dtype, sizeof m->dtype, "%s", p.dtype);
    m->d_in = p.d_in, m->d_out = p.d_in, m->d_sae = p.d_sae, m->arch = p.arch, m->k = p.k;
    m->apply_b_dec_to_input = p.apply_b_dec_to_input;
    m->transcoder = p.transcoder;
    m->norm = p.norm;
    m->norm_scaling_factor = p.norm_scaling_factor > 0 ? p.norm_scaling_factor : 1.0f;
    m->w_enc = p.w_enc, m->w_enc_t = p.w_enc_t, m->b_enc = p.b_enc;
    m->w_dec = p.w_dec, m->b_dec = p.b_dec, m->threshold = p.threshold;
    m->b_gate = p.b_gate, m->b_mag = p.b_mag;
    sae_digest_buffer(m->st->base, m->st->size, m->weights_digest);
    rc = model_derive(m, p.r_mag, err);
out:
    sae_parts_free(&p);
    return rc;
}

/* The steps, top to bottom: check the folder and find its layout (format.c);
 * a release layout is composed by its loader (load_parts); a SAELens or
 * sparsify folder has its cfg.json read, its weights file found and
 * interpreted for that layout, mapped, cfg's settings taken, then the
 * weights bound (an autoencoder's layers, or an SAE's tensors). Every
 * failure frees all that was built. */
int sae_model_load(const char *dir, sae_model **out, sae_model_warnings *warn, sae_error *err)
{
    return sae_model_load_with(dir, SAE_COMPUTE_NATIVE, out, warn, err);
}

int sae_model_load_with(const char *dir, sae_compute compute, sae_model **out,
                        sae_model_warnings *warn, sae_error *err)
{
    sae_model *m = NULL;
    char *cfg_path = NULL;
    json_t *cfg_json = NULL, *root_json = NULL;
    sae_model_cfg c = {0};
    sae_format fmt;
    char hook[256];
    int rc;

    if (warn)
        warn->n = 0;
    if ((rc = load_start(dir, &m, &cfg_path, err)) || (rc = sae_format_detect(dir, &fmt, err)))
        goto out;
    if (fmt != SAE_FORMAT_SAELENS) {
        if ((rc = load_parts(m, fmt, warn, err)))
            goto out;
        goto done;
    }
    if ((rc = sae_model_cfg_read(cfg_path, &cfg_json, err)) ||
        (rc = find_weights(m, err)) ||
        (rc = sae_model_cfg_parse(cfg_json, cfg_path, m->sparsify, &c, warn, err)) ||
        (m->sparsify && (rc = sae_model_cfg_sparsify_root(dir, &c, &root_json, hook, sizeof hook,
                                                          warn, err))) ||
        (rc = sae_st_open(m->weights_path, &m->st, err)) ||
        (rc = take_cfg(m, &c, err)))
        goto out;
    rc = c.arch == SAE_ARCH_AUTOENCODER ? bind_autoencoder(m, cfg_json, err)
                                        : bind_sae(m, &c, compute, cfg_path, err);
    if (rc)
        goto out;
done:
    /* Written or truncated while it was read: its digest and checks saw
     * another file than the one mapped now. */
    if (sae_model_changed(m)) {
        rc = sae_error_set(err, SAE_EIO, "%s: changed while it was being loaded",
                           m->weights_path);
        goto out;
    }
    *out = m;
    m = NULL;
out:
    sae_model_free(m);
    json_decref(cfg_json);
    json_decref(root_json);
    free(cfg_path);
    return rc;
}
