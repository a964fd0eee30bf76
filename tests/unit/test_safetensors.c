/* test_safetensors.c: the safetensors reader and writer (core/io/safetensors.c)
 * and the float conversions they rely on (core/io/dtype.c).
 *
 * Conversions are checked against hand-computed bit patterns (subnormals,
 * infinities, NaN, rounding ties) and against a reference written here in
 * double arithmetic from the formats' definitions, independently of dtype.c:
 * every F16/BF16 value, and every halfway point between adjacent halves.
 * The reader is fed one generated file per validation rule (the fixture's
 * case table, also used as a fuzz seed corpus), each of which must fail with
 * its own SAE_EST_* code and a message naming the file. */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/dtype.h"
#include "fixture.h"
#include "io/rng.h"
#include "io/safetensors.h"
#include "unit.h"

/* Writes len bytes to unit_dir/name and returns the path (caller frees). */
static char *write_bytes(const char *name, const void *data, size_t len)
{
    char *path;
    ck_assert_int_ge(asprintf(&path, "%s/%s", unit_dir, name), 0);
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(data, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
    return path;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- references written from the format definitions, in double ---- */

/* The value of half h: sign, 5-bit exponent (bias 15), 10-bit fraction. */
static double ref_half_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    if (e == 31)
        v = m ? NAN : INFINITY;
    return (h & 0x8000) ? -v : v;
}

/* Round-to-nearest-even of a finite non-negative f to a half's bits, by
 * bisection over the (monotonic) finite positive halves. */
static uint16_t ref_to_half_pos(double f)
{
    if (f >= 65520.0) /* 65504 + half an ulp (16): ties to even, which is inf */
        return 0x7c00;
    uint16_t lo = 0, hi = 0x7bff; /* value(lo) <= f < value(hi) unless f >= 65504 */
    if (f >= 65504.0)
        return 0x7bff;
    while (hi - lo > 1) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (ref_half_value(mid) <= f)
            lo = mid;
        else
            hi = mid;
    }
    double dl = f - ref_half_value(lo), dh = ref_half_value(hi) - f;
    if (dl < dh)
        return lo;
    if (dh < dl)
        return hi;
    return (lo & 1) ? hi : lo;
}

static uint16_t ref_to_half(float f)
{
    uint16_t sign = (bits(f) >> 16) & 0x8000;
    if (isnan(f))
        return 0x7e00;
    if (isinf(f))
        return sign | 0x7c00;
    return sign | ref_to_half_pos(fabs((double)f));
}

/* Round-to-nearest-even of finite f to bfloat16 (the top 16 bits of a float). */
static uint16_t ref_to_bf16(float f)
{
    uint32_t u = bits(f);
    uint16_t sign = (u >> 16) & 0x8000;
    double a = fabs((double)f);
    uint16_t lo = (uint16_t)((u & 0x7fffffff) >> 16), hi = (uint16_t)(lo + 1);
    double vl = fabs((double)from_bits((uint32_t)lo << 16));
    double vh = hi >= 0x7f80 ? ldexp(1, 128) : fabs((double)from_bits((uint32_t)hi << 16));
    double dl = a - vl, dh = vh - a;
    uint16_t r = dl < dh ? lo : dh < dl ? hi : (lo & 1) ? hi : lo;
    return sign | r;
}

/* ------------------------------------------------------------ dtype */

START_TEST(test_dtype_table)
{
    sae_dtype t;
    ck_assert_int_eq(sae_dtype_parse("BF16", &t), 0);
    ck_assert_int_eq(t, SAE_DT_BF16);
    ck_assert_int_eq(sae_dtype_parse("F8_E5M2", &t), 0);
    ck_assert_int_eq(t, SAE_DT_F8_E5M2);
    ck_assert_int_eq(sae_dtype_parse("f32", &t), -1);
    ck_assert_int_eq(sae_dtype_parse("", &t), -1);
    ck_assert_uint_eq(sae_dtype_size(SAE_DT_F64), 8);
    ck_assert_uint_eq(sae_dtype_size(SAE_DT_BF16), 2);
    ck_assert_uint_eq(sae_dtype_size(SAE_DT_BOOL), 1);
    ck_assert_uint_eq(sae_dtype_size(SAE_DT_I64), 8);
    ck_assert_str_eq(sae_dtype_name(SAE_DT_F16), "F16");
    for (int i = 0; i < SAE_DT_COUNT; i++) {
        ck_assert_int_eq(sae_dtype_parse(sae_dtype_name((sae_dtype)i), &t), 0);
        ck_assert_int_eq(t, i);
    }
}
END_TEST

START_TEST(test_f16_hand_values)
{
    /* Half -> float, bit patterns worked out by hand. */
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x3c00)), bits(1.0f));
    ck_assert_uint_eq(bits(sae_f16_to_f32(0xc000)), bits(-2.0f));
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x7bff)), bits(65504.0f));
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x0400)), bits(0x1p-14f));   /* smallest normal */
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x0001)), bits(0x1p-24f));   /* smallest subnormal */
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x03ff)), bits(1023 * 0x1p-24f));
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x8001)), bits(-0x1p-24f));
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x8000)), 0x80000000u);      /* -0 keeps its sign */
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x7c00)), 0x7f800000u);
    ck_assert_uint_eq(bits(sae_f16_to_f32(0xfc00)), 0xff800000u);
    ck_assert(isnan(sae_f16_to_f32(0x7e00)));
    ck_assert(isnan(sae_f16_to_f32(0x7c01))); /* signalling NaN stays NaN */
    ck_assert_uint_eq(bits(sae_f16_to_f32(0x3555)), bits(0x1.554p-2f)); /* ~1/3 */

    /* Float -> half, round to nearest even. */
    ck_assert_uint_eq(sae_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(sae_f32_to_f16(-0.0f), 0x8000);
    ck_assert_uint_eq(sae_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(sae_f32_to_f16(65519.0f), 0x7bff);  /* below the midpoint 65520 */
    ck_assert_uint_eq(sae_f32_to_f16(65520.0f), 0x7c00);  /* tie: 0x7bff is odd -> inf */
    ck_assert_uint_eq(sae_f32_to_f16(1e6f), 0x7c00);
    ck_assert_uint_eq(sae_f32_to_f16(-INFINITY), 0xfc00);
    ck_assert_uint_eq(sae_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);     /* tie -> even (down) */
    ck_assert_uint_eq(sae_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie -> even (up) */
    ck_assert_uint_eq(sae_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    ck_assert_uint_eq(sae_f32_to_f16(0x1p-24f), 0x0001);
    ck_assert_uint_eq(sae_f32_to_f16(0x1p-25f), 0x0000);        /* tie with 0 -> 0 */
    ck_assert_uint_eq(sae_f32_to_f16(0x1.000002p-25f), 0x0001); /* just above the tie */
    ck_assert_uint_eq(sae_f32_to_f16(3 * 0x1p-25f), 0x0002);    /* 1.5 ulp: tie -> 2 */
    ck_assert_uint_eq(sae_f32_to_f16(5 * 0x1p-25f), 0x0002);    /* 2.5 ulp: tie -> 2 */
    ck_assert_uint_eq(sae_f32_to_f16(1e-10f), 0x0000);
    ck_assert_uint_eq(sae_f32_to_f16(-1e-10f), 0x8000);
    ck_assert_uint_eq(sae_f32_to_f16(1023.5f * 0x1p-24f), 0x0400); /* carries into normal */
    uint16_t nan = sae_f32_to_f16(NAN);
    ck_assert_uint_eq(nan & 0x7c00, 0x7c00);
    ck_assert_uint_ne(nan & 0x3ff, 0);
    ck_assert_uint_ne(sae_f32_to_f16(from_bits(0x7f800001)) & 0x3ff, 0); /* sNaN not inf */
}
END_TEST

START_TEST(test_bf16_hand_values)
{
    ck_assert_uint_eq(bits(sae_bf16_to_f32(0x3f80)), bits(1.0f));
    ck_assert_uint_eq(bits(sae_bf16_to_f32(0xc040)), bits(-3.0f));
    ck_assert_uint_eq(bits(sae_bf16_to_f32(0x0001)), 0x00010000u); /* subnormal */
    ck_assert_uint_eq(bits(sae_bf16_to_f32(0x7f80)), 0x7f800000u);
    ck_assert(isnan(sae_bf16_to_f32(0x7fc0)));
    ck_assert_uint_eq(sae_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(sae_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);        /* tie -> even */
    ck_assert_uint_eq(sae_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);    /* tie -> even */
    ck_assert_uint_eq(sae_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    ck_assert_uint_eq(sae_f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80); /* FLT_MAX -> inf */
    ck_assert_uint_eq(sae_f32_to_bf16(from_bits(0x00000001)), 0x0000);
    ck_assert_uint_eq(sae_f32_to_bf16(from_bits(0x80008000)), 0x8000); /* tie -> even 0 */
    ck_assert_uint_eq(sae_f32_to_bf16(from_bits(0x00018000)), 0x0002); /* tie -> even 2 */
    ck_assert_uint_eq(sae_f32_to_bf16(-INFINITY), 0xff80);
    uint16_t n = sae_f32_to_bf16(from_bits(0x7f800001)); /* sNaN whose top bits look like inf */
    ck_assert_uint_eq(n & 0x7f80, 0x7f80);
    ck_assert_uint_ne(n & 0x7f, 0);
    ck_assert_uint_eq(sae_f32_to_bf16(from_bits(0xffc00000)) & 0x8000, 0x8000); /* NaN sign */
}
END_TEST

START_TEST(test_conversions_against_reference)
{
    /* Every half and bfloat16 widens exactly and narrows back to itself. */
    for (uint32_t h = 0; h < 65536; h++) {
        double want = ref_half_value((uint16_t)h);
        float got = sae_f16_to_f32((uint16_t)h);
        if (isnan(want)) {
            ck_assert(isnan(got));
            ck_assert(isnan(sae_f16_to_f32(sae_f32_to_f16(got))));
            continue;
        }
        ck_assert_msg((double)got == want && !signbit(got) == !signbit(want), "half %04x", h);
        ck_assert_uint_eq(sae_f32_to_f16(got), h);
        float b = sae_bf16_to_f32((uint16_t)h);
        if (!isnan(b))
            ck_assert_uint_eq(sae_f32_to_bf16(b), h);
    }
    /* Every halfway point between adjacent positive halves, and its float
     * neighbours: ties to even, the rest to the nearer. */
    for (uint16_t h = 0; h < 0x7bff; h++) {
        float mid = (float)((ref_half_value(h) + ref_half_value((uint16_t)(h + 1))) / 2);
        float below = nextafterf(mid, 0), above = nextafterf(mid, INFINITY);
        ck_assert_uint_eq(sae_f32_to_f16(mid), (h & 1) ? h + 1 : h);
        ck_assert_uint_eq(sae_f32_to_f16(below), h);
        ck_assert_uint_eq(sae_f32_to_f16(above), h + 1);
        ck_assert_uint_eq(sae_f32_to_f16(-mid), 0x8000 | ((h & 1) ? h + 1 : h));
    }
    /* Random float bit patterns, against the double-arithmetic references. */
    sae_rng r;
    sae_rng_seed(&r, 7);
    for (int i = 0; i < 100000; i++) {
        uint32_t u = (uint32_t)sae_rng_next(&r);
        if (i % 2) /* half the draws near the half range, where rounding matters */
            u = (u & 0x80ffffffu) | (uint32_t)(96 + sae_rng_below(&r, 48)) << 23;
        float f = from_bits(u);
        if (isnan(f))
            continue;
        ck_assert_msg(sae_f32_to_f16(f) == ref_to_half(f), "f16 of %08x", u);
        if (isfinite(f))
            ck_assert_msg(sae_f32_to_bf16(f) == ref_to_bf16(f), "bf16 of %08x", u);
    }
}
END_TEST

START_TEST(test_convert_buffers)
{
    /* Little-endian bytes at an odd address, for each float dtype. */
    uint8_t raw[1 + 3 * 8];
    float out[3];
    const uint8_t f16[] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00};
    memcpy(raw + 1, f16, sizeof f16);
    ck_assert_int_eq(sae_convert_to_f32(SAE_DT_F16, raw + 1, 3, out), 0);
    ck_assert(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0x1p-24f);
    const uint8_t bf16[] = {0x80, 0x3f, 0x40, 0xc0, 0x80, 0x7f};
    memcpy(raw + 1, bf16, sizeof bf16);
    ck_assert_int_eq(sae_convert_to_f32(SAE_DT_BF16, raw + 1, 3, out), 0);
    ck_assert(out[0] == 1.0f && out[1] == -3.0f && isinf(out[2]));
    double d[3] = {0.1, -1e300, 1.0 + 0x1p-24}; /* 1+2^-24 ties to even: 1.0 */
    memcpy(raw + 1, d, sizeof d);
    ck_assert_int_eq(sae_convert_to_f32(SAE_DT_F64, raw + 1, 3, out), 0);
    ck_assert(out[0] == 0.1f && isinf(out[1]) && out[1] < 0 && out[2] == 1.0f);
    float f[3] = {1.5f, -0.25f, 3e38f};
    memcpy(raw + 1, f, sizeof f);
    ck_assert_int_eq(sae_convert_to_f32(SAE_DT_F32, raw + 1, 3, out), 0);
    ck_assert(memcmp(out, f, sizeof f) == 0);
    ck_assert_int_eq(sae_convert_to_f32(SAE_DT_I32, raw, 1, out), -1);

    uint8_t back[16];
    const float vals[2] = {1.0f, -2.0f};
    ck_assert_int_eq(sae_convert_from_f32(SAE_DT_F16, vals, 2, back + 1), 0);
    ck_assert(memcmp(back + 1, f16, 4) == 0);
    ck_assert_int_eq(sae_convert_from_f32(SAE_DT_F64, vals, 2, back), 0);
    double dd[2];
    memcpy(dd, back, 16);
    ck_assert(dd[0] == 1.0 && dd[1] == -2.0);
    ck_assert_int_eq(sae_convert_from_f32(SAE_DT_U8, vals, 1, back), -1);
}
END_TEST

/* ------------------------------------------------------------ reader */

START_TEST(test_every_case)
{
    size_t n = sae_fixture_st_case_count(), malformed = 0;
    int seen[SAE_EST_MISALIGNED + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        sae_fixture_case c;
        ck_assert_int_eq(sae_fixture_st_case(i, &c), 0);
        char *name;
        ck_assert_int_ge(asprintf(&name, "%s.safetensors", c.name), 0);
        char *path = write_bytes(name, c.data, c.len);
        sae_st_file *f = NULL;
        sae_error err = {0};
        int rc = sae_st_open(path, &f, &err);
        ck_assert_msg(rc == c.expect, "%s: got %d (%s), expected %d", c.name, rc, err.msg,
                      c.expect);
        if (rc) {
            malformed++;
            ck_assert_int_eq(err.code, rc);
            ck_assert_msg(strstr(err.msg, path), "%s: message does not name the file: %s",
                          c.name, err.msg);
            if (rc >= SAE_EST_TRUNCATED && rc <= SAE_EST_MISALIGNED)
                seen[rc]++;
        } else {
            sae_st_free(f);
        }
        /* The in-memory entry point (the fuzz target's) agrees. */
        sae_st_file *g = NULL;
        ck_assert_int_eq(sae_st_parse(c.name, c.data, c.len, &g, &err), c.expect);
        if (!c.expect)
            sae_st_free(g);
        else
            ck_assert_ptr_null(g);
        free(path);
        free(name);
        free(c.data);
    }
    ck_assert_uint_ge(malformed, 15);
    /* Every file rule has at least one case (MISALIGNED is internal). */
    for (int code = SAE_EST_TRUNCATED; code < SAE_EST_MISALIGNED; code++)
        ck_assert_msg(seen[code] > 0, "no malformed case for code %d", code);
}
END_TEST

START_TEST(test_valid_contents)
{
    sae_fixture_case c = {0};
    for (size_t i = 0; i < sae_fixture_st_case_count(); i++) {
        ck_assert_int_eq(sae_fixture_st_case(i, &c), 0);
        if (strcmp(c.name, "st_valid_basic") == 0)
            break;
        free(c.data);
    }
    ck_assert_str_eq(c.name, "st_valid_basic");
    sae_st_file *f;
    sae_error err;
    ck_assert_int_eq(sae_st_parse("mem", c.data, c.len, &f, &err), 0);
    ck_assert_uint_eq(f->n_tensors, 2);
    ck_assert_str_eq(sae_st_meta_get(f, "format"), "pt");
    ck_assert_ptr_null(sae_st_meta_get(f, "other"));
    const sae_st_tensor *a = sae_st_find(f, "a"), *b = sae_st_find(f, "b");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_null(sae_st_find(f, "c"));
    ck_assert_int_eq(a->ndim, 2);
    ck_assert_uint_eq(a->shape[0], 2);
    ck_assert_uint_eq(a->shape[1], 2);
    ck_assert_uint_eq(a->n_elems, 4);
    ck_assert_uint_eq(a->nbytes, 16);
    ck_assert_int_eq(b->dtype, SAE_DT_F16);
    ck_assert_uint_eq(b->nbytes, 6);
    /* Header length from the first 8 bytes; data follows it. */
    size_t n = (size_t)c.data[0] | (size_t)c.data[1] << 8;
    ck_assert_ptr_eq(a->data, c.data + 8 + n);
    ck_assert_ptr_eq(b->data, c.data + 8 + n + 16);
    sae_st_free(f);
    free(c.data);
}
END_TEST

START_TEST(test_unsorted_offsets_and_zero_size)
{
    /* Header order differs from data order; pointers follow data_offsets. */
    const char h[] = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                     "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    size_t n = sizeof h - 1;
    uint8_t buf[512] = {0};
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, h, n);
    float v[2] = {1.5f, -2.5f};
    memcpy(buf + 8 + n, v, 8);
    sae_st_file *f;
    sae_error err;
    ck_assert_int_eq(sae_st_parse("mem", buf, 8 + n + 8, &f, &err), 0);
    ck_assert_str_eq(f->tensors[0].name, "b"); /* header order kept */
    const float *p;
    float *owned;
    ck_assert_int_eq(sae_st_tensor_f32(f, sae_st_find(f, "a"), &p, &owned, &err), 0);
    ck_assert(p[0] == 1.5f);
    ck_assert_int_eq(sae_st_tensor_f32(f, sae_st_find(f, "b"), &p, &owned, &err), 0);
    ck_assert(p[0] == -2.5f);
    ck_assert_uint_eq(sae_st_find(f, "z")->n_elems, 0);
    sae_st_free(f);
}
END_TEST

START_TEST(test_duplicate_message_names_tensor)
{
    const char h[] = "{\"W_enc\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"W_enc\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    size_t n = sizeof h - 1;
    uint8_t buf[256] = {0};
    buf[0] = (uint8_t)n;
    memcpy(buf + 8, h, n);
    sae_st_file *f = NULL;
    sae_error err;
    ck_assert_int_eq(sae_st_parse("dup.safetensors", buf, 8 + n + 8, &f, &err),
                     SAE_EST_DUPLICATE_NAME);
    ck_assert_ptr_nonnull(strstr(err.msg, "\"W_enc\""));
    ck_assert_ptr_nonnull(strstr(err.msg, "dup.safetensors"));
}
END_TEST

START_TEST(test_open_errors)
{
    sae_st_file *f = NULL;
    sae_error err;
    char *empty = write_bytes("empty.safetensors", "", 0);
    ck_assert_int_eq(sae_st_open(empty, &f, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, empty));
    ck_assert_int_eq(sae_st_open(unit_dir, &f, &err), SAE_EIO); /* a directory */
    ck_assert_ptr_nonnull(strstr(err.msg, unit_dir));
    char *missing;
    ck_assert_int_ge(asprintf(&missing, "%s/missing.safetensors", unit_dir), 0);
    ck_assert_int_eq(sae_st_open(missing, &f, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, missing));
    ck_assert_ptr_null(f);
    free(empty);
    free(missing);
}
END_TEST

START_TEST(test_misaligned_f32_is_converted)
{
    /* A U8 tensor of 1 byte first puts the F32 tensor at an odd offset. */
    const char h[] = "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                     "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}";
    size_t n = (sizeof h - 1 + 7) / 8 * 8;
    uint8_t buf[256];
    memset(buf, ' ', sizeof buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, h, sizeof h - 1);
    float v[2] = {0.75f, -8.0f};
    buf[8 + n] = 7;
    memcpy(buf + 8 + n + 1, v, 8);
    sae_st_file *f;
    sae_error err;
    ck_assert_int_eq(sae_st_parse("mem", buf, 8 + n + 9, &f, &err), 0);
    const float *p;
    float *owned = NULL;
    ck_assert_int_eq(sae_st_tensor_f32(f, sae_st_find(f, "f"), &p, &owned, &err), 0);
    ck_assert_ptr_nonnull(owned);
    ck_assert_ptr_eq(p, owned);
    ck_assert(p[0] == 0.75f && p[1] == -8.0f);
    free(owned);
    ck_assert_int_eq(sae_st_tensor_f32(f, sae_st_find(f, "u"), &p, &owned, &err), SAE_EFORMAT);
    sae_st_free(f);
}
END_TEST

/* ------------------------------------------------------------ writer */

/* Values that exercise rounding in every narrow dtype. */
static const float probe[] = {0.0f,  -0.0f,         1.0f,          -2.5f,      65504.0f,
                              1e-7f, 1.0f + 0x1p-11f, 3.0f + 0x1p-9f, 0.1f, 1e30f,
                              -1e-40f, 123.456f};
#define N_PROBE (sizeof probe / sizeof *probe)

/* What reading back a float written as dtype must give. */
static float expect_as(sae_dtype t, float v)
{
    switch (t) {
    case SAE_DT_F16: return sae_f16_to_f32(sae_f32_to_f16(v));
    case SAE_DT_BF16: return sae_bf16_to_f32(sae_f32_to_bf16(v));
    default: return v; /* F32 exact; F64 widening then narrowing is exact */
    }
}

START_TEST(test_writer_roundtrip)
{
    const sae_dtype dts[] = {SAE_DT_F32, SAE_DT_F16, SAE_DT_BF16, SAE_DT_F64};
    for (size_t d = 0; d < 4; d++) {
        sae_dtype dt = dts[d];
        sae_st_writer *w = sae_st_writer_new();
        ck_assert_ptr_nonnull(w);
        const uint64_t shape[2] = {3, 4}, s1[1] = {N_PROBE}, s0[1] = {0};
        float mat[12];
        for (int i = 0; i < 12; i++)
            mat[i] = (float)i * 0.5f - 2.0f;
        const int32_t ints[3] = {-1, 7, 1 << 30};
        const uint64_t si[1] = {3};
        ck_assert_int_eq(sae_st_writer_add_f32(w, "probe", dt, 1, s1, probe), 0);
        ck_assert_int_eq(sae_st_writer_add_f32_ref(w, "mat", dt, 2, shape, mat), 0);
        ck_assert_int_eq(sae_st_writer_add(w, "ints", SAE_DT_I32, 1, si, ints), 0);
        ck_assert_int_eq(sae_st_writer_add_f32(w, "empty", dt, 1, s0, probe), 0);
        ck_assert_int_eq(sae_st_writer_add_f32(w, "probe", dt, 1, s1, probe), SAE_EINVAL);
        ck_assert_int_eq(sae_st_writer_add_f32(w, "bad", SAE_DT_I32, 1, s1, probe), SAE_EINVAL);
        ck_assert_int_eq(sae_st_writer_meta(w, "format", "pt"), 0);
        ck_assert_int_eq(sae_st_writer_meta(w, "note", "héllo"), 0);
        char *path;
        ck_assert_int_ge(asprintf(&path, "%s/rt_%s.safetensors", unit_dir, sae_dtype_name(dt)), 0);
        sae_error err;
        ck_assert_int_eq(sae_st_writer_save(w, path, &err), 0);
        sae_st_writer_free(w);

        sae_st_file *f;
        ck_assert_int_eq(sae_st_open(path, &f, &err), 0);
        /* Header padded to 8 with spaces, so data (and F32 tensors) are aligned. */
        size_t n = 0;
        for (int i = 7; i >= 0; i--)
            n = n << 8 | f->base[i];
        ck_assert_uint_eq(n % 8, 0);
        ck_assert(f->base[8 + n - 1] == '}' || f->base[8 + n - 1] == ' ');
        ck_assert_str_eq(sae_st_meta_get(f, "note"), "héllo");
        ck_assert_str_eq(f->tensors[0].name, "probe"); /* order of adding kept */
        const sae_st_tensor *t = sae_st_find(f, "probe");
        ck_assert_int_eq(t->dtype, dt);
        const float *p;
        float *owned;
        ck_assert_int_eq(sae_st_tensor_f32(f, t, &p, &owned, &err), 0);
        for (size_t i = 0; i < N_PROBE; i++) {
            float want = expect_as(dt, probe[i]);
            ck_assert_msg(bits(p[i]) == bits(want), "%s probe[%zu]: %a != %a",
                          sae_dtype_name(dt), i, (double)p[i], (double)want);
        }
        if (dt == SAE_DT_F32) {
            /* Used in place: the pointer lies inside the mapping, nothing owned. */
            ck_assert_ptr_null(owned);
            ck_assert((const uint8_t *)p >= f->base &&
                      (const uint8_t *)p + t->nbytes <= f->base + f->size);
        } else {
            ck_assert_ptr_nonnull(owned);
        }
        free(owned);
        t = sae_st_find(f, "mat");
        ck_assert_uint_eq(t->shape[0], 3);
        ck_assert_uint_eq(t->shape[1], 4);
        ck_assert_int_eq(sae_st_tensor_f32(f, t, &p, &owned, &err), 0);
        for (int i = 0; i < 12; i++)
            ck_assert(p[i] == mat[i]); /* all exactly representable in every dtype */
        free(owned);
        t = sae_st_find(f, "ints");
        ck_assert_int_eq(memcmp(t->data, ints, sizeof ints), 0);
        ck_assert_uint_eq(sae_st_find(f, "empty")->nbytes, 0);
        sae_st_free(f);
        free(path);
    }
}
END_TEST

START_TEST(test_writer_failure_leaves_nothing)
{
    sae_st_writer *w = sae_st_writer_new();
    const uint64_t s[1] = {1};
    const float v = 1;
    ck_assert_int_eq(sae_st_writer_add_f32(w, "x", SAE_DT_F32, 1, s, &v), 0);
    ck_assert_int_eq(sae_st_writer_add_f32(w, "__metadata__", SAE_DT_F32, 1, s, &v), SAE_EINVAL);
    char *path;
    ck_assert_int_ge(asprintf(&path, "%s/no/such/dir/x.safetensors", unit_dir), 0);
    sae_error err;
    ck_assert_int_eq(sae_st_writer_save(w, path, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, path));
    free(path);
    /* A save over an existing file replaces it whole, leaving no temporary. */
    ck_assert_int_ge(asprintf(&path, "%s/x.safetensors", unit_dir), 0);
    char *old = write_bytes("x.safetensors", "old", 3);
    ck_assert_int_eq(sae_st_writer_save(w, path, &err), 0);
    sae_st_file *f;
    ck_assert_int_eq(sae_st_open(path, &f, &err), 0);
    sae_st_free(f);
    char *cmd;
    ck_assert_int_ge(asprintf(&cmd, "test $(ls %s | wc -l) -eq 1", unit_dir), 0);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    free(old);
    free(path);
    sae_st_writer_free(w);
}
END_TEST

START_TEST(test_cases_corpus)
{
    char *dir;
    ck_assert_int_ge(asprintf(&dir, "%s/corpus", unit_dir), 0);
    sae_error err;
    ck_assert_int_eq(sae_fixture_write_cases(dir, &err), 0);
    char *path;
    ck_assert_int_ge(asprintf(&path, "%s/st_offsets_hole.safetensors", dir), 0);
    sae_st_file *f;
    ck_assert_int_eq(sae_st_open(path, &f, &err), SAE_EST_OFFSETS_NOT_CONTIGUOUS);
    free(path);
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("dtype");
    tcase_add_test(tc, test_dtype_table);
    tcase_add_test(tc, test_f16_hand_values);
    tcase_add_test(tc, test_bf16_hand_values);
    tcase_add_test(tc, test_conversions_against_reference);
    tcase_add_test(tc, test_convert_buffers);
    suite_add_tcase(s, tc);
    tc = tcase_create("reader");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_every_case);
    tcase_add_test(tc, test_valid_contents);
    tcase_add_test(tc, test_unsorted_offsets_and_zero_size);
    tcase_add_test(tc, test_duplicate_message_names_tensor);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_misaligned_f32_is_converted);
    suite_add_tcase(s, tc);
    tc = tcase_create("writer");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_writer_roundtrip);
    tcase_add_test(tc, test_writer_failure_leaves_nothing);
    tcase_add_test(tc, test_cases_corpus);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
