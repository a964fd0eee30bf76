/* test_npz.c: the npz reader (core/io/npz.c) and the zip layer under it
 * (core/io/zipmap.c), on files numpy itself wrote (tests/fixture/readers/,
 * made by gen.py there) and on hostile ones.
 *
 * Values: every tensor of the fixtures holds reader_value(i, seed) below (gen.py's
 * formula), exact in every float dtype, so each element is compared exactly.
 * Stored members must be used in place in the mapping, deflated ones owned;
 * the zip64 file must read as the plain one. Refusals must name what is
 * wrong; every prefix of a real file and every single-byte corruption must
 * be refused or read inside its buffer (under ASan in the asan build). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "io/npz.h"
#include "io/safetensors.h"
#include "io/zipmap.h"
#include "readers.h"
#include "unit.h"

/* The five Gemma Scope arrays of gen.py's gemma_arrays(), in that order. */
static void check_gemma(const sae_st_file *f, int stored)
{
    static const char *names[] = {"W_enc", "W_dec", "threshold", "b_enc", "b_dec"};
    ck_assert_uint_eq(f->n_tensors, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_str_eq(f->tensors[i].name, names[i]);
    reader_check_tensor(f, "W_enc", SAE_DT_F32, 2, (uint64_t[]){8, 16}, 1, 0);
    reader_check_tensor(f, "W_dec", SAE_DT_F32, 2, (uint64_t[]){16, 8}, 2, 0);
    reader_check_tensor(f, "threshold", SAE_DT_F32, 1, (uint64_t[]){16}, 3, 0);
    reader_check_tensor(f, "b_enc", SAE_DT_F32, 1, (uint64_t[]){16}, 4, 0);
    reader_check_tensor(f, "b_dec", SAE_DT_F32, 1, (uint64_t[]){8}, 5, 0);
    size_t unaligned = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const sae_st_tensor *t = &f->tensors[i];
        const uint8_t *p = t->data;
        if (stored) {
            ck_assert_msg(t->owned == NULL && p >= f->base && p + t->nbytes <= f->base + f->size,
                          "%s: a stored member is not used in place", t->name);
            unaligned += (uintptr_t)p % 4 != 0;
        } else {
            ck_assert_msg(t->owned != NULL, "%s: a deflated member has no owned bytes", t->name);
        }
    }
    /* np.savez puts arrays at offsets = 3 (mod 4): the copy path is exercised. */
    if (stored)
        ck_assert_uint_gt(unaligned, 0);
}

START_TEST(test_gemma_stored)
{
    sae_st_file *f = reader_open_ok(sae_npz_open, "gemma_stored.npz", "npz");
    check_gemma(f, 1);
    sae_st_free(f);
}
END_TEST

START_TEST(test_gemma_deflated)
{
    sae_st_file *f = reader_open_ok(sae_npz_open, "gemma_deflated.npz", "npz");
    check_gemma(f, 0);
    sae_st_free(f);
}
END_TEST

START_TEST(test_zip64)
{
    sae_st_file *f = reader_open_ok(sae_npz_open, "zip64.npz", "npz");
    check_gemma(f, 1);
    sae_st_free(f);
}
END_TEST

/* gen.py's mixed_arrays(): f2, f8, 3-D, 0-D and empty, stored and deflated. */
START_TEST(test_mixed)
{
    const char *files[] = {"mixed_stored.npz", "mixed_deflated.npz"};
    for (int k = 0; k < 2; k++) {
        sae_st_file *f = reader_open_ok(sae_npz_open, files[k], "npz");
        ck_assert_uint_eq(f->n_tensors, 5);
        reader_check_tensor(f, "half", SAE_DT_F16, 2, (uint64_t[]){4, 3}, 6, 0);
        reader_check_tensor(f, "double", SAE_DT_F64, 1, (uint64_t[]){5}, 7, 0);
        reader_check_tensor(f, "cube", SAE_DT_F32, 3, (uint64_t[]){2, 3, 4}, 8, 0);
        reader_check_tensor(f, "scalar", SAE_DT_F32, 0, NULL, 9, 0);
        reader_check_tensor(f, "empty", SAE_DT_F32, 2, (uint64_t[]){0, 4}, 10, 0);
        sae_st_free(f);
    }
}
END_TEST

/* Each hostile file and the words its refusal must contain. */
START_TEST(test_refusals)
{
    static const reader_refusal cases[] = {
        {"fortran.npz", "Fortran order"},
        {"bigendian.npz", "big-endian"},
        {"int.npz", "'<i4' is not supported"},
        {"notnpy.npz", "\"README.txt\" is not an X.npy array"},
        {"crc_stored.npz", "CRC error"},
        {"crc_deflated.npz", "CRC error"},
        {"size_short.npz", "holds more than the 176 bytes its header claims"},
        {"size_long.npz", "holds 192 bytes, not the 208 its header claims"},
        {"size_stored.npz",
         "stored zip member \"W.npy\" claims 208 bytes uncompressed but 192 stored"},
        {"bomb.npz", "zip bomb"},
        {"gen.py", "not a zip archive"},
    };
    reader_check_refusals(sae_npz_open, cases, sizeof cases / sizeof cases[0]);
}
END_TEST

/* Every prefix of a real file is refused; every one-byte corruption is
 * refused or read in bounds (readers.h). */
START_TEST(test_corruptions)
{
    const char *files[] = {"gemma_stored.npz", "gemma_deflated.npz", "zip64.npz"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
        reader_check_corruptions(sae_npz_parse, files[k], 0x5a);
}
END_TEST

/* The zip layer alone: member table, lookup, in-place offsets verified. */
START_TEST(test_zipmap)
{
    size_t len;
    uint8_t *b = reader_slurp("gemma_stored.npz", &len);
    sae_zip *z = NULL;
    sae_error err = {0};
    ck_assert_msg(sae_zip_open_mem("g.npz", b, len, &z, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(sae_zip_count(z), 5);
    const sae_zip_member *m = sae_zip_find(z, "W_enc.npy");
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_eq(m, sae_zip_member_at(z, 0));
    ck_assert_ptr_null(sae_zip_find(z, "W_enc"));
    ck_assert_ptr_null(sae_zip_member_at(z, 5));
    /* research-13 section 1.3: the first array's member data at 30 + 9 + 20 = 59. */
    ck_assert_int_eq(m->data_offset, 59);
    ck_assert_int_eq(m->method, 0);
    const uint8_t *data;
    void *owned;
    ck_assert_int_eq(sae_zip_read(z, m, &data, &owned, &err), 0);
    ck_assert_ptr_eq(data, b + 59);
    ck_assert_ptr_null(owned);
    ck_assert_int_eq(memcmp(data, "\x93NUMPY", 6), 0);
    sae_zip_free(z);
    free(b);

    b = reader_slurp("gemma_deflated.npz", &len);
    ck_assert_int_eq(sae_zip_open_mem("g.npz", b, len, &z, &err), 0);
    m = sae_zip_member_at(z, 1);
    ck_assert_str_eq(m->name, "W_dec.npy");
    ck_assert_int_eq(m->method, 8);
    ck_assert_int_eq(m->data_offset, -1);
    ck_assert_int_eq(sae_zip_read(z, m, &data, &owned, &err), 0);
    ck_assert_ptr_eq(data, owned);
    ck_assert_int_eq(memcmp(data, "\x93NUMPY", 6), 0);
    free(owned);
    sae_zip_free(z);
    free(b);
}
END_TEST

/* Two members of one name are refused (the central directory is patched:
 * "W_dec.npy" renamed "W_enc.npy" there and in its local header). */
START_TEST(test_duplicate_member)
{
    size_t len;
    uint8_t *b = reader_slurp("gemma_stored.npz", &len);
    size_t renamed = 0;
    for (size_t i = 0; i + 9 <= len; i++)
        if (memcmp(b + i, "W_dec.npy", 9) == 0) {
            memcpy(b + i, "W_enc.npy", 9);
            renamed++;
        }
    ck_assert_uint_eq(renamed, 2);
    sae_st_file *f = NULL;
    sae_error err = {0};
    ck_assert_int_ne(sae_npz_parse("dup.npz", b, len, &f, &err), 0);
    ck_assert_msg(strstr(err.msg, "two members have one name"), "%s", err.msg);
    free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("npz");
    TCase *tc = tcase_create("npz");
    tcase_add_test(tc, test_gemma_stored);
    tcase_add_test(tc, test_gemma_deflated);
    tcase_add_test(tc, test_zip64);
    tcase_add_test(tc, test_mixed);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_corruptions);
    tcase_add_test(tc, test_zipmap);
    tcase_add_test(tc, test_duplicate_member);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
