/* test_torchpt.c: the torch zip checkpoint reader (core/io/torchpt.c) and
 * its restricted unpickler (core/io/pickle.c), on files torch 1.13 itself
 * wrote (tests/fixture/readers/, made by gen.py there), on hand-written
 * hostile pickles in torch-shaped archives, and on corruptions of real
 * files.
 *
 * Values follow gen.py's formula reader_value(i, seed), exact in every dtype, and
 * are compared exactly. Every refusal must name what is wrong (the opcode,
 * the global, the kind of file); no prefix or one-byte corruption of a real
 * file may crash or read out of bounds (ASan in the asan build). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "io/torchpt.h"
#include "readers.h"
#include "unit.h"

/* True when t's bytes lie in f's mapping (used in place). */
static int in_place(const sae_st_file *f, const sae_st_tensor *t)
{
    const uint8_t *p = t->data;
    return t->owned == NULL && p >= f->base && p + t->nbytes <= f->base + f->size;
}

/* dictionary_learning's AutoEncoderTopK state_dict: key order, dtypes, 0-D
 * buffers, values; data in place at torch's 64-byte alignment. */
START_TEST(test_topk_state_dict)
{
    sae_st_file *f = reader_open_ok(sae_pt_open, "topk_state_dict.pt", "torch");
    static const char *order[] = {"b_dec",          "k",           "threshold", "decoder.weight",
                                  "encoder.weight", "encoder.bias"};
    ck_assert_uint_eq(f->n_tensors, 6);
    ck_assert_uint_eq(f->n_meta, 0);
    for (size_t i = 0; i < 6; i++) {
        ck_assert_str_eq(f->tensors[i].name, order[i]);
        ck_assert(in_place(f, &f->tensors[i]));
        ck_assert_uint_eq((uintptr_t)f->tensors[i].data % 64, 0);
    }
    reader_check_tensor(f, "b_dec", SAE_DT_F32, 1, (uint64_t[]){8}, 1, 0);
    const sae_st_tensor *k = sae_st_find(f, "k");
    ck_assert_int_eq(k->dtype, SAE_DT_I32);
    ck_assert_int_eq(k->ndim, 0);
    ck_assert_uint_eq(k->n_elems, 1);
    int32_t kv;
    memcpy(&kv, k->data, 4);
    ck_assert_int_eq(kv, 4);
    const sae_st_tensor *th = sae_st_find(f, "threshold");
    ck_assert_int_eq(th->ndim, 0);
    float thv;
    memcpy(&thv, th->data, 4);
    ck_assert(thv == 0.25f);
    reader_check_tensor(f, "decoder.weight", SAE_DT_F32, 2, (uint64_t[]){8, 16}, 2, 0);
    reader_check_tensor(f, "encoder.weight", SAE_DT_F32, 2, (uint64_t[]){16, 8}, 3, 0);
    reader_check_tensor(f, "encoder.bias", SAE_DT_F32, 1, (uint64_t[]){16}, 4, 0);
    sae_st_free(f);
}
END_TEST

START_TEST(test_plain_dict)
{
    sae_st_file *f = reader_open_ok(sae_pt_open, "plain_dict.pt", "torch");
    ck_assert_uint_eq(f->n_tensors, 4);
    ck_assert_str_eq(f->tensors[0].name, "W_enc");
    reader_check_tensor(f, "W_enc", SAE_DT_F32, 2, (uint64_t[]){8, 16}, 1, 0);
    reader_check_tensor(f, "b_enc", SAE_DT_F32, 1, (uint64_t[]){16}, 2, 0);
    reader_check_tensor(f, "W_dec", SAE_DT_F32, 2, (uint64_t[]){16, 8}, 3, 0);
    reader_check_tensor(f, "b_dec", SAE_DT_F32, 1, (uint64_t[]){8}, 4, 0);
    sae_st_free(f);
}
END_TEST

/* BF16, F16, F64 converted exactly; I64 and I32 read raw, and refused
 * clearly when floats are asked for. */
START_TEST(test_dtypes)
{
    sae_st_file *f = reader_open_ok(sae_pt_open, "dtypes.pt", "torch");
    reader_check_tensor(f, "bf16", SAE_DT_BF16, 2, (uint64_t[]){4, 8}, 5, 0);
    reader_check_tensor(f, "f16", SAE_DT_F16, 1, (uint64_t[]){8}, 6, 0);
    reader_check_tensor(f, "f64", SAE_DT_F64, 1, (uint64_t[]){3}, 7, 0);
    const sae_st_tensor *i64 = reader_check_tensor(f, "i64", SAE_DT_I64, 1, (uint64_t[]){5}, 8, 0);
    reader_check_tensor(f, "i32", SAE_DT_I32, 1, (uint64_t[]){6}, 9, 0);
    const float *x;
    float *owned = NULL;
    sae_error err = {0};
    ck_assert_int_ne(sae_st_tensor_f32(f, i64, &x, &owned, &err), 0);
    ck_assert_msg(strstr(err.msg, "\"i64\": dtype I64 is not a float type"), "%s", err.msg);
    ck_assert_ptr_null(owned);
    sae_st_free(f);
}
END_TEST

/* A contiguous slice at a storage offset, two keys sharing one storage, an
 * nn.Parameter; stored (in place) and deflated (one owned copy shared). */
START_TEST(test_views)
{
    const char *files[] = {"views.pt", "views_deflated.pt"};
    for (int k = 0; k < 2; k++) {
        sae_st_file *f = reader_open_ok(sae_pt_open, files[k], "torch");
        ck_assert_uint_eq(f->n_tensors, 4);
        const sae_st_tensor *rows =
            reader_check_tensor(f, "rows", SAE_DT_F32, 2, (uint64_t[]){2, 4}, 10, 8);
        const sae_st_tensor *a =
            reader_check_tensor(f, "tied_a", SAE_DT_F32, 2, (uint64_t[]){6, 4}, 10, 0);
        const sae_st_tensor *b =
            reader_check_tensor(f, "tied_b", SAE_DT_F32, 2, (uint64_t[]){6, 4}, 10, 0);
        reader_check_tensor(f, "param", SAE_DT_F32, 1, (uint64_t[]){3}, 11, 0);
        ck_assert_ptr_eq(a->data, b->data);
        ck_assert_ptr_eq(rows->data, (const float *)a->data + 8);
        /* One storage, freed once: exactly one of its three tensors owns it. */
        int owners = (rows->owned != NULL) + (a->owned != NULL) + (b->owned != NULL);
        ck_assert_int_eq(owners, k == 0 ? 0 : 1);
        if (k == 0)
            ck_assert(in_place(f, a));
        sae_st_free(f);
    }
}
END_TEST

/* OpenAI sparse_autoencoder's layout: tensors, then plain values as JSON
 * metadata with nested keys joined by '.'. */
START_TEST(test_openai)
{
    sae_st_file *f = reader_open_ok(sae_pt_open, "openai.pt", "torch");
    static const char *order[] = {"pre_bias",
                                  "latent_bias",
                                  "stats_last_nonzero",
                                  "latents_activation_frequency",
                                  "latents_mean_square",
                                  "encoder.weight",
                                  "decoder.weight"};
    ck_assert_uint_eq(f->n_tensors, 7);
    for (size_t i = 0; i < 7; i++)
        ck_assert_str_eq(f->tensors[i].name, order[i]);
    reader_check_tensor(f, "pre_bias", SAE_DT_F32, 1, (uint64_t[]){8}, 12, 0);
    reader_check_tensor(f, "stats_last_nonzero", SAE_DT_I64, 1, (uint64_t[]){16}, 14, 0);
    reader_check_tensor(f, "encoder.weight", SAE_DT_F32, 2, (uint64_t[]){16, 8}, 17, 0);
    reader_check_tensor(f, "decoder.weight", SAE_DT_F32, 2, (uint64_t[]){8, 16}, 18, 0);
    static const struct {
        const char *key, *json;
    } meta[] = {
        {"activation.k", "4"},
        {"activation.postact_fn", "\"ReLU\""},
        {"activation", "\"TopK\""},
        {"activation_state_dict.k", "4"},
        {"activation_state_dict.postact_fn", "\"ReLU\""},
        {"activation_state_dict.nested.on", "true"},
        {"activation_state_dict.nested.off", "null"},
        {"empty", "{}"},
        {"ratio", "0.5"},
        {"list", "[1,\"two\",3.0]"},
    };
    ck_assert_uint_eq(f->n_meta, sizeof meta / sizeof meta[0]);
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++) {
        ck_assert_str_eq(f->meta[i].key, meta[i].key);
        ck_assert_str_eq(sae_st_meta_get(f, meta[i].key), meta[i].json);
    }
    sae_st_free(f);
}
END_TEST

START_TEST(test_hand_written_ok)
{
    sae_st_file *f = reader_open_ok(sae_pt_open, "pk_ok.pt", "torch");
    ck_assert_uint_eq(f->n_tensors, 1);
    const sae_st_tensor *t = sae_st_find(f, "w");
    ck_assert(in_place(f, t));
    float v[4];
    memcpy(v, t->data, sizeof v);
    ck_assert(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
    sae_st_free(f);
}
END_TEST

/* Each hostile or foreign file and the words its refusal must contain. */
START_TEST(test_refusals)
{
    static const reader_refusal cases[] = {
        {"legacy.pt", "a legacy torch.save file"},
        {"torchscript.pt", "a TorchScript archive"},
        {"backup.pt", "a trainer backup (it has \"optimizer\")"},
        {"lmsaes.pt", "an lm-saes checkpoint"},
        {"list.pt", "holds a list, not a state_dict"},
        {"noncontig.pt", "is not contiguous (dimension 0 has stride 30, not 2)"},
        {"pk_os_system.pt", "global os.system is not allowed"},
        {"pk_reduce_storage.pt", "REDUCE calls torch.FloatStorage"},
        {"pk_bad_global.pt", "global torch.QInt8Storage is not allowed"},
        {"pk_inst.pt", "opcode INST (0x69) is not allowed: this reader loads state_dicts only"},
        {"pk_obj.pt", "opcode OBJ (0x6f) is not allowed"},
        {"pk_newobj.pt", "opcode NEWOBJ (0x81) is not allowed"},
        {"pk_stack_global.pt", "opcode STACK_GLOBAL (0x93) is not allowed"},
        {"pk_memo.pt", "BINGET: memo index 5 was never stored"},
        {"pk_empty_stack_tuple.pt", "holds a tuple, not a state_dict"},
        {"pk_long_memo.pt", "LONG_BINPUT: memo index 4294967295 is past the limit"},
        {"pk_proto4.pt", "pickle protocol 4"},
        {"pk_no_storage.pt", "storage \"7\" has no member archive/data/7"},
        {"pk_past_storage.pt", "needs elements 2 to 6 of a storage of 4"},
        {"pk_storage_size.pt", "declares 8 x F32 = 32 bytes but its member holds 16"},
        {"pk_shape_overflow.pt", "the size's product overflows"},
        {"pk_negative.pt", "a size is negative (-4)"},
        {"pk_truncated.pt", "truncated"},
        {"pk_no_prefix.pt", "member \"data.pkl\" is not in a folder"},
        {"pk_bigendian.pt", "the byteorder record is not \"little\""},
        {"pk_cycle.pt", "\"l\" is nested more than 32 deep"},
        {"pk_shared.pt", "the plain values hold more than 100000 values"},
        {"pk_storage_twice.pt", "storage \"0\" declared again as F16 x 4 (first F32 x 4)"},
        {"gemma_stored.npz", "member \"W_enc.npy\" is not in a folder"},
        {"gen.py", "not a zip archive"},
    };
    reader_check_refusals(sae_pt_open, cases, sizeof cases / sizeof cases[0]);
}
END_TEST

/* The refusals that need no file: an old tar checkpoint and a bare pickle. */
START_TEST(test_refusals_in_memory)
{
    uint8_t tar[1024] = {0};
    memcpy(tar, "archive", 7);
    memcpy(tar + 257, "ustar", 5);
    sae_st_file *f = NULL;
    sae_error err = {0};
    ck_assert_int_ne(sae_pt_parse("old.pt", tar, sizeof tar, &f, &err), 0);
    ck_assert_msg(strstr(err.msg, "old.pt: an old tar-format torch checkpoint"), "%s", err.msg);
    const uint8_t bare[] = {0x80, 0x02, '}', '.'};
    ck_assert_int_ne(sae_pt_parse("bare.pt", bare, sizeof bare, &f, &err), 0);
    ck_assert_msg(strstr(err.msg, "a bare pickle"), "%s", err.msg);
    ck_assert_int_ne(sae_pt_parse("empty.pt", bare, 0, &f, &err), 0);
    ck_assert_ptr_null(f);
}
END_TEST

/* Every prefix of a real file is refused; every one-byte corruption is
 * refused or read in bounds (readers.h). */
START_TEST(test_corruptions)
{
    const char *files[] = {"topk_state_dict.pt", "openai.pt", "views_deflated.pt"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
        reader_check_corruptions(sae_pt_parse, files[k], 0x21);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("torchpt");
    TCase *tc = tcase_create("torchpt");
    tcase_add_test(tc, test_topk_state_dict);
    tcase_add_test(tc, test_plain_dict);
    tcase_add_test(tc, test_dtypes);
    tcase_add_test(tc, test_views);
    tcase_add_test(tc, test_openai);
    tcase_add_test(tc, test_hand_written_ok);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_refusals_in_memory);
    tcase_add_test(tc, test_corruptions);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
