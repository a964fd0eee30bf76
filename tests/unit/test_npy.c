/* test_npy.c: the .npy reader and writer (core/io/npy.c) and the activation
 * corpus built on it and on safetensors (core/io/activations.c).
 *
 * Header parsing is checked with the fixture's case table (valid 1.0/2.0/3.0
 * headers and one file per rejection); the writer by reading its files back;
 * the corpus by comparing rows read across file boundaries with rows
 * regenerated from the same seeds and rounded through each file's dtype. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/activations.h"
#include "io/dtype.h"
#include "fixture.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "unit.h"

/* Reads a whole file into a new buffer. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

/* Finds a case by name. */
static sae_fixture_case get_case(const char *name)
{
    for (size_t i = 0; i < sae_fixture_npy_case_count(); i++) {
        sae_fixture_case c;
        ck_assert_int_eq(sae_fixture_npy_case(i, &c), 0);
        if (strcmp(c.name, name) == 0)
            return c;
        free(c.data);
    }
    ck_abort_msg("no case %s", name);
    return (sae_fixture_case){0};
}

START_TEST(test_every_case)
{
    size_t n = sae_fixture_npy_case_count(), rejected = 0;
    for (size_t i = 0; i < n; i++) {
        sae_fixture_case c;
        ck_assert_int_eq(sae_fixture_npy_case(i, &c), 0);
        sae_npy_info info;
        sae_error err = {0};
        int rc = sae_npy_parse("case.npy", c.data, c.len, &info, &err);
        ck_assert_msg(rc == c.expect, "%s: got %d (%s), expected %d", c.name, rc, err.msg,
                      c.expect);
        if (rc) {
            rejected++;
            ck_assert_msg(strstr(err.msg, "case.npy"), "%s: %s", c.name, err.msg);
        } else {
            ck_assert_uint_eq(info.data_offset + info.data_bytes, c.len);
        }
        free(c.data);
    }
    ck_assert_uint_ge(rejected, 20);
}
END_TEST

START_TEST(test_valid_headers)
{
    sae_npy_info info;
    sae_error err;
    sae_fixture_case c = get_case("npy_valid_v1_2d");
    ck_assert_int_eq(sae_npy_parse("x", c.data, c.len, &info, &err), 0);
    ck_assert_int_eq(info.dtype, SAE_DT_F32);
    ck_assert_int_eq(info.ndim, 2);
    ck_assert_uint_eq(info.shape[0], 3);
    ck_assert_uint_eq(info.shape[1], 4);
    /* 10-byte preamble + 59-byte dict + newline, padded to the next multiple of 64. */
    ck_assert_uint_eq(info.data_offset, 128);
    ck_assert_uint_eq(info.data_bytes, 48);
    free(c.data);

    c = get_case("npy_valid_v2_1d_f16");
    ck_assert_int_eq(sae_npy_parse("x", c.data, c.len, &info, &err), 0);
    ck_assert_int_eq(info.dtype, SAE_DT_F16);
    ck_assert_int_eq(info.ndim, 1);
    ck_assert_uint_eq(info.shape[0], 5);
    ck_assert_uint_eq(info.data_offset, 128); /* 12-byte preamble + 57 + 1, padded */
    ck_assert_uint_eq(info.data_bytes, 10);
    free(c.data);

    c = get_case("npy_valid_v3_f8");
    ck_assert_int_eq(sae_npy_parse("x", c.data, c.len, &info, &err), 0);
    ck_assert_int_eq(info.dtype, SAE_DT_F64);
    ck_assert_uint_eq(info.shape[0], 1);
    ck_assert_uint_eq(info.shape[1], 2);
    free(c.data);

    c = get_case("npy_valid_unpadded_double_quotes");
    ck_assert_int_eq(sae_npy_parse("x", c.data, c.len, &info, &err), 0);
    ck_assert_uint_eq(info.data_offset, 10 + strlen("{\"descr\":\"<f4\",\"fortran_order\":False,"
                                                    "\"shape\":(2,2)}"));
    free(c.data);
}
END_TEST

START_TEST(test_messages_say_why)
{
    sae_npy_info info;
    sae_error err;
    const char *const names[] = {"npy_fortran_order", "npy_big_endian", "npy_three_dims",
                                 "npy_truncated_data", "npy_trailing_bytes"};
    const char *const words[] = {"Fortran", "big-endian", "3 dimensions", "truncated",
                                 "trailing"};
    for (int i = 0; i < 5; i++) {
        sae_fixture_case c = get_case(names[i]);
        ck_assert_int_ne(sae_npy_parse("f.npy", c.data, c.len, &info, &err), 0);
        ck_assert_msg(strstr(err.msg, words[i]), "%s: %s", names[i], err.msg);
        free(c.data);
    }
}
END_TEST

START_TEST(test_writer_roundtrip)
{
    float v[6] = {1.0f, -2.0f, 0.1f, 65504.0f, 1e-8f, 3.25f};
    const sae_dtype dts[] = {SAE_DT_F32, SAE_DT_F16, SAE_DT_F64};
    for (int d = 0; d < 3; d++) {
        char *path = unit_path("w.npy");
        sae_error err;
        if (dts[d] == SAE_DT_F32)
            ck_assert_int_eq(sae_npy_write_f32(path, v, 2, 3, &err), 0);
        else
            ck_assert_int_eq(sae_npy_write(path, dts[d], v, 2, 3, &err), 0);
        size_t len;
        uint8_t *b = slurp(path, &len);
        sae_npy_info info;
        ck_assert_int_eq(sae_npy_parse(path, b, len, &info, &err), 0);
        ck_assert_int_eq(info.dtype, dts[d]);
        ck_assert_int_eq(info.ndim, 2);
        ck_assert_uint_eq(info.shape[0], 2);
        ck_assert_uint_eq(info.shape[1], 3);
        ck_assert_uint_eq(info.data_offset % 64, 0); /* numpy's alignment */
        ck_assert_int_eq(b[info.data_offset - 1], '\n');
        ck_assert_ptr_nonnull(memmem(b, info.data_offset, "'fortran_order': False", 22));
        float back[6];
        sae_convert_to_f32(info.dtype, b + info.data_offset, 6, back);
        for (int i = 0; i < 6; i++) {
            float want = dts[d] == SAE_DT_F16 ? sae_f16_to_f32(sae_f32_to_f16(v[i])) : v[i];
            ck_assert(back[i] == want);
        }
        free(b);
        free(path);
    }
    sae_error err;
    char *path = unit_path("bf.npy");
    ck_assert_int_eq(sae_npy_write(path, SAE_DT_BF16, v, 2, 3, &err), SAE_EINVAL);
    free(path);
}
END_TEST

/* ------------------------------------------------------------ activations */

/* The rows sae_fixture_write_activations writes, as read back in dtype. */
static float *expected_rows(size_t n, size_t d, sae_dtype dt, uint64_t seed)
{
    float *r = malloc(n * d * sizeof *r);
    sae_fixture_random_rows(r, n, d, 1.0, seed);
    for (size_t i = 0; i < n * d; i++) {
        if (dt == SAE_DT_F16)
            r[i] = sae_f16_to_f32(sae_f32_to_f16(r[i]));
        else if (dt == SAE_DT_BF16)
            r[i] = sae_bf16_to_f32(sae_f32_to_bf16(r[i]));
    }
    return r;
}

START_TEST(test_acts_span_files)
{
    const size_t d = 5, n[4] = {7, 0, 4, 9};
    const sae_dtype dt[4] = {SAE_DT_F32, SAE_DT_F32, SAE_DT_F16, SAE_DT_BF16};
    const char *names[4] = {"a.safetensors", "empty.npy", "b.npy", "c.safetensors"};
    char *paths[4];
    sae_error err;
    size_t total = 0;
    for (int i = 0; i < 4; i++) {
        paths[i] = unit_path(names[i]);
        ck_assert_int_eq(
            sae_fixture_write_activations(paths[i], n[i], d, dt[i], 100 + (uint64_t)i, &err), 0);
        total += n[i];
    }
    float *want = malloc(total * d * sizeof *want);
    size_t at = 0;
    for (int i = 0; i < 4; i++) {
        float *r = expected_rows(n[i], d, dt[i], 100 + (uint64_t)i);
        memcpy(want + at * d, r, n[i] * d * sizeof *r);
        at += n[i];
        free(r);
    }
    sae_acts *a;
    ck_assert_int_eq(sae_acts_open((const char *const *)paths, 4, &a, &err), 0);
    ck_assert_uint_eq(sae_acts_rows(a), total);
    ck_assert_uint_eq(sae_acts_dim(a), d);
    float *got = malloc(total * d * sizeof *got);
    /* Every (start, length) window, so every boundary is crossed. */
    for (size_t r0 = 0; r0 < total; r0++) {
        for (size_t len = 0; r0 + len <= total; len += 3) {
            memset(got, 0xff, total * d * sizeof *got);
            ck_assert_int_eq(sae_acts_read(a, r0, len, got, &err), 0);
            ck_assert_msg(memcmp(got, want + r0 * d, len * d * sizeof *got) == 0,
                          "rows [%zu, %zu)", r0, r0 + len);
        }
    }
    ck_assert_int_eq(sae_acts_read(a, total - 1, 2, got, &err), SAE_ERANGE);
    ck_assert_int_eq(sae_acts_read(a, SIZE_MAX, 2, got, &err), SAE_ERANGE);
    sae_acts_free(a);
    free(got);
    free(want);
    for (int i = 0; i < 4; i++)
        free(paths[i]);
}
END_TEST

START_TEST(test_acts_errors)
{
    sae_error err;
    sae_acts *a = NULL;
    char *p4 = unit_path("d4.safetensors"), *p5 = unit_path("d5.npy");
    ck_assert_int_eq(sae_fixture_write_activations(p4, 3, 4, SAE_DT_F32, 1, &err), 0);
    ck_assert_int_eq(sae_fixture_write_activations(p5, 3, 5, SAE_DT_F32, 1, &err), 0);
    const char *both[2] = {p4, p5};
    ck_assert_int_eq(sae_acts_open(both, 2, &a, &err), SAE_EDIM);
    ck_assert_msg(strstr(err.msg, p5) && strstr(err.msg, "d_in"), "%s", err.msg);
    ck_assert_ptr_null(a);
    ck_assert_int_eq(sae_acts_open(both, 0, &a, &err), SAE_EINVAL);

    /* A safetensors file without an "activations" tensor, or with a 1-D one. */
    char *other = unit_path("other.safetensors");
    sae_st_writer *w = sae_st_writer_new();
    const uint64_t s1[1] = {4};
    const float v[4] = {1, 2, 3, 4};
    ck_assert_int_eq(sae_st_writer_add_f32(w, "acts", SAE_DT_F32, 1, s1, v), 0);
    ck_assert_int_eq(sae_st_writer_save(w, other, &err), 0);
    sae_st_writer_free(w);
    const char *one[1] = {other};
    ck_assert_int_eq(sae_acts_open(one, 1, &a, &err), SAE_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "activations"));
    w = sae_st_writer_new();
    ck_assert_int_eq(sae_st_writer_add_f32(w, "activations", SAE_DT_F32, 1, s1, v), 0);
    ck_assert_int_eq(sae_st_writer_save(w, other, &err), 0);
    sae_st_writer_free(w);
    ck_assert_int_eq(sae_acts_open(one, 1, &a, &err), SAE_EDIM);
    const int32_t iv[4] = {1, 2, 3, 4};
    const uint64_t s2[2] = {2, 2};
    w = sae_st_writer_new();
    ck_assert_int_eq(sae_st_writer_add(w, "activations", SAE_DT_I32, 2, s2, iv), 0);
    ck_assert_int_eq(sae_st_writer_save(w, other, &err), 0);
    sae_st_writer_free(w);
    ck_assert_int_eq(sae_acts_open(one, 1, &a, &err), SAE_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "I32"));

    /* A malformed .npy and a missing file name themselves. */
    char *bad = unit_path("bad.npy");
    FILE *fp = fopen(bad, "wb");
    fputs("\x93NUMPY\x01\x00garbage", fp);
    fclose(fp);
    const char *b1[1] = {bad};
    ck_assert_int_eq(sae_acts_open(b1, 1, &a, &err), SAE_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, bad));
    char *missing = unit_path("missing.npy");
    const char *m1[1] = {missing};
    ck_assert_int_eq(sae_acts_open(m1, 1, &a, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, missing));

    /* No known extension: the magic decides. */
    char *plain = unit_path("rows.bin");
    ck_assert_int_eq(sae_npy_write_f32(plain, v, 2, 2, &err), 0);
    const char *pl[1] = {plain};
    ck_assert_int_eq(sae_acts_open(pl, 1, &a, &err), 0);
    ck_assert_uint_eq(sae_acts_rows(a), 2);
    sae_acts_free(a);
    free(plain);
    free(missing);
    free(bad);
    free(other);
    free(p4);
    free(p5);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("npy");
    TCase *tc = tcase_create("npy");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_every_case);
    tcase_add_test(tc, test_valid_headers);
    tcase_add_test(tc, test_messages_say_why);
    tcase_add_test(tc, test_writer_roundtrip);
    suite_add_tcase(s, tc);
    tc = tcase_create("activations");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_acts_span_files);
    tcase_add_test(tc, test_acts_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
