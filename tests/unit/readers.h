/* readers.h: what test_npz.c and test_torchpt.c share: the fixtures of
 * tests/fixture/readers/ (made by gen.py there), gen.py's value formula, and
 * the corruption check every reader of a whole file must pass. Header-only,
 * as unit.h. */
#ifndef SAE_TEST_READERS_H
#define SAE_TEST_READERS_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

/* gen.py's ivalue(i, seed) and value(i, seed): exact in every float dtype. */
static inline long reader_ivalue(size_t i, int seed)
{
    return (long)((i * 37 + (size_t)seed * 11) % 101) - 50;
}

static inline double reader_value(size_t i, int seed)
{
    return (double)reader_ivalue(i, seed) * 0.0625;
}

/* tests/fixture/readers/<name> (caller frees). */
static inline char *reader_fixture(const char *name)
{
    const char *dir = getenv("SAE_READERS");
    ck_assert_msg(dir != NULL, "SAE_READERS is not set (tests/unit/meson.build sets it)");
    char *p;
    ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
    return p;
}

/* Reads a whole fixture into a new buffer (caller frees). */
static inline uint8_t *reader_slurp(const char *name, size_t *len)
{
    char *path = reader_fixture(name);
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "%s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    free(path);
    *len = (size_t)n;
    return b;
}

/* Tensor `name` of f: dtype and shape checked, then its elements from
 * `first` on compared with reader_value(first + i, seed) (floats, through
 * sae_st_tensor_f32, which must use F32 in place exactly when it is
 * aligned) or reader_ivalue (integers, read raw). */
static inline const sae_st_tensor *reader_check_tensor(const sae_st_file *f, const char *name,
                                                       sae_dtype dt, int ndim,
                                                       const uint64_t *shape, int seed,
                                                       size_t first)
{
    const sae_st_tensor *t = sae_st_find(f, name);
    ck_assert_msg(t != NULL, "%s: no tensor %s", f->path, name);
    ck_assert_int_eq(t->dtype, dt);
    ck_assert_int_eq(t->ndim, ndim);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        ck_assert_uint_eq(t->shape[d], shape[d]);
        n *= (size_t)shape[d];
    }
    ck_assert_uint_eq(t->n_elems, n);
    ck_assert_uint_eq(t->nbytes, n * sae_dtype_size(dt));
    if (dt == SAE_DT_I64 || dt == SAE_DT_I32) {
        for (size_t i = 0; i < n; i++) {
            long v;
            if (dt == SAE_DT_I64) {
                int64_t x;
                memcpy(&x, (const uint8_t *)t->data + 8 * i, 8);
                v = (long)x;
            } else {
                int32_t x;
                memcpy(&x, (const uint8_t *)t->data + 4 * i, 4);
                v = x;
            }
            ck_assert_int_eq(v, reader_ivalue(first + i, seed));
        }
        return t;
    }
    const float *x;
    float *owned = NULL;
    sae_error err = {0};
    ck_assert_msg(sae_st_tensor_f32(f, t, &x, &owned, &err) == 0, "%s", err.msg);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(x[i] == (float)reader_value(first + i, seed), "%s[%zu] = %g, expected %g",
                      name, i, (double)x[i], reader_value(first + i, seed));
    if (dt == SAE_DT_F32)
        ck_assert((owned == NULL) == ((uintptr_t)t->data % _Alignof(float) == 0));
    free(owned);
    return t;
}

/* Opens a fixture with open, which must succeed and name the format. */
static inline sae_st_file *reader_open_ok(int (*open)(const char *, sae_st_file **, sae_error *),
                                          const char *name, const char *format)
{
    char *path = reader_fixture(name);
    sae_st_file *f = NULL;
    sae_error err = {0};
    int rc = open(path, &f, &err);
    ck_assert_msg(rc == 0, "%s: %s", name, err.msg);
    ck_assert_str_eq(f->format, format);
    free(path);
    return f;
}

/* Opens each file with open, which must refuse it with a message holding
 * the file's name and the case's words. */
typedef struct reader_refusal {
    const char *file, *words;
} reader_refusal;
static inline void reader_check_refusals(int (*open)(const char *, sae_st_file **, sae_error *),
                                         const reader_refusal *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *path = reader_fixture(cases[i].file);
        sae_st_file *f = NULL;
        sae_error err = {0};
        int rc = open(path, &f, &err);
        ck_assert_msg(rc != 0, "%s was read", cases[i].file);
        ck_assert_msg(strstr(err.msg, cases[i].words) && strstr(err.msg, cases[i].file),
                      "%s: \"%s\" lacks \"%s\"", cases[i].file, err.msg, cases[i].words);
        ck_assert_ptr_null(f);
        free(path);
    }
}

/* A parse of a corrupted buffer: refused with a message, or read with every
 * tensor's bytes readable (touched, so that ASan sees in the asan build). */
static inline void reader_parse_any(sae_st_parse_fn parse, const uint8_t *b, size_t len)
{
    sae_st_file *f = NULL;
    sae_error err = {0};
    int rc = parse("bad", b, len, &f, &err);
    if (rc) {
        ck_assert_msg(err.msg[0] != '\0', "error %d without a message", rc);
        return;
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const sae_st_tensor *t = &f->tensors[i];
        for (size_t k = 0; k < t->nbytes; k++)
            sink ^= ((const uint8_t *)t->data)[k];
    }
    (void)sink;
    sae_st_free(f);
}

/* Every proper prefix of the fixture is refused with a message (each cut
 * in a buffer of its own size, so that ASan catches a read past it); every
 * byte xor-ed with `flip` is refused or read in bounds. */
static inline void reader_check_corruptions(sae_st_parse_fn parse, const char *name, uint8_t flip)
{
    size_t len;
    uint8_t *b = reader_slurp(name, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, b, n);
        sae_st_file *f = NULL;
        sae_error err = {0};
        ck_assert_msg(parse("cut", cut, n, &f, &err) != 0, "%s cut at %zu was read", name, n);
        ck_assert(err.msg[0] != '\0');
        free(cut);
    }
    for (size_t at = 0; at < len; at++) {
        b[at] ^= flip;
        reader_parse_any(parse, b, len);
        b[at] ^= flip;
    }
    free(b);
}

#endif
