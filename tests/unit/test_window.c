/* test_window.c: text files to windows (core/lm/textin.c, window.c). The
 * windows are what SAELens' concat_and_batch_sequences gives for the same
 * documents: the expected lists below were printed by a line-for-line,
 * torch-free transcription of it (tokenization_and_batching.py, SAELens
 * 6.18), which also agreed with window.c on 400 random cases when this was
 * written. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm/textin.h"
#include "lm/window.h"
#include "unit.h"

#define BOS 9

/* The documents of the hand cases: a BOS-led one, an empty one, a lone BOS. */
static const int32_t d0[] = {1, 2, 3}, d1[] = {4, 5}, d2[] = {9, 6, 7, 8, 10, 11, 12},
                     d4[] = {13}, d5[] = {9}, d6[] = {14, 15, 16, 17, 18};
static const int32_t *const docs[] = {d0, d1, d2, NULL, d4, d5, d6};
static const size_t lens[] = {3, 2, 7, 0, 1, 1, 5};

/* Windows the seven documents give under o, flattened into out (cap ids);
 * returns how many windows; the first documents into first_doc. */
static size_t run(const sae_window_opts *o, uint32_t *out, size_t cap, uint64_t *first_doc)
{
    sae_windower w;
    sae_error err;
    ck_assert_msg(sae_windower_init(&w, o, &err) == 0, "%s", err.msg);
    size_t n = 0;
    for (size_t d = 0; d < 7; d++) {
        sae_windower_doc(&w, docs[d], lens[d]);
        const uint32_t *win;
        uint64_t doc;
        while (sae_windower_next(&w, &win, &doc)) {
            ck_assert_uint_le((n + 1) * o->context, cap);
            memcpy(out + n * o->context, win, o->context * sizeof *win);
            first_doc[n++] = doc;
        }
    }
    ck_assert_uint_eq(w.windows, n);
    sae_windower_free(&w);
    return n;
}

/* Checks the windows of o against want (n windows of o->context ids). */
static void expect(const sae_window_opts *o, const uint32_t *want, size_t n, const uint64_t *docs_want)
{
    uint32_t got[256];
    uint64_t first[64];
    size_t k = run(o, got, 256, first);
    ck_assert_uint_eq(k, n);
    for (size_t i = 0; i < n * o->context; i++)
        ck_assert_msg(got[i] == want[i], "window %zu position %zu: %u, want %u", i / o->context,
                      i % o->context, got[i], want[i]);
    for (size_t i = 0; docs_want && i < n; i++)
        ck_assert_uint_eq(first[i], docs_want[i]);
}

/* SAELens' default: BOS first, the BOS between documents, packed. */
START_TEST(test_packs_as_saelens)
{
    sae_window_opts o;
    sae_window_opts_default(&o);
    o.context = 4;
    o.bos = o.sep = BOS;
    static const uint32_t want[] = {9, 1, 2, 3,  9, 4, 5, 9,  9, 6, 7, 8,
                                    9, 10, 11, 12,  9, 13, 9, 9,  9, 14, 15, 16};
    static const uint64_t first[] = {0, 1, 2, 2, 4, 6};
    expect(&o, want, 6, first);
}
END_TEST

/* No separator; no BOS; one window per document. */
START_TEST(test_modes)
{
    sae_window_opts o;
    sae_window_opts_default(&o);
    o.context = 4;
    o.bos = BOS;
    static const uint32_t nosep[] = {9, 1, 2, 3,  9, 4, 5, 9,  9, 6, 7, 8,
                                     9, 10, 11, 12,  9, 13, 9, 14,  9, 15, 16, 17};
    expect(&o, nosep, 6, NULL);
    o.prepend_bos = false;
    o.sep = BOS;
    static const uint32_t nobos[] = {1, 2, 3, 9,  4, 5, 9, 6,  7, 8, 10, 11,
                                     12, 9, 13, 9,  14, 15, 16, 17};
    expect(&o, nobos, 5, NULL);
    o.prepend_bos = true;
    o.no_concat = true;
    static const uint32_t alone[] = {9, 1, 2, 3,  9, 6, 7, 8,  9, 14, 15, 16};
    static const uint64_t first[] = {0, 2, 6};
    expect(&o, alone, 3, first);
}
END_TEST

/* A separator that lands on a window's last position ends it. */
START_TEST(test_separator_at_the_end)
{
    sae_window_opts o;
    sae_window_opts_default(&o);
    o.context = 4;
    o.bos = o.sep = BOS;
    sae_windower w;
    sae_error err;
    ck_assert_int_eq(sae_windower_init(&w, &o, &err), 0);
    static const int32_t a[] = {1, 2}, b[] = {3, 4, 5, 6};
    const uint32_t *win;
    uint64_t doc;
    sae_windower_doc(&w, a, 2);
    ck_assert_int_eq(sae_windower_next(&w, &win, &doc), 0);
    sae_windower_doc(&w, b, 4);
    ck_assert_int_eq(sae_windower_next(&w, &win, &doc), 1);
    ck_assert(win[0] == 9 && win[1] == 1 && win[2] == 2 && win[3] == 9 && doc == 0);
    ck_assert_int_eq(sae_windower_next(&w, &win, &doc), 1);
    ck_assert(win[0] == 9 && win[1] == 3 && win[2] == 4 && win[3] == 5 && doc == 1);
    ck_assert_int_eq(sae_windower_next(&w, &win, &doc), 0); /* 6 waits for more text */
    sae_windower_free(&w);
}
END_TEST

/* seqpos_slice as Python's slice; bad settings refused. */
START_TEST(test_positions_and_checks)
{
    sae_window_opts o;
    sae_window_opts_default(&o);
    o.context = 8;
    o.bos = BOS;
    size_t pos[8];
    ck_assert_uint_eq(sae_window_positions(&o, pos), 8);
    o.has_start = true;
    o.start = 1;
    ck_assert_uint_eq(sae_window_positions(&o, pos), 7);
    ck_assert_uint_eq(pos[0], 1);
    o.has_stop = true;
    o.stop = -2;
    o.step = 2;
    ck_assert_uint_eq(sae_window_positions(&o, pos), 3); /* 1, 3, 5 */
    ck_assert(pos[0] == 1 && pos[1] == 3 && pos[2] == 5);
    sae_error err;
    ck_assert_int_eq(sae_window_opts_check(&o, &err), 0);
    o.start = 7;
    ck_assert_int_ne(sae_window_opts_check(&o, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "seqpos_slice"));
    sae_window_opts_default(&o);
    ck_assert_int_ne(sae_window_opts_check(&o, &err), 0); /* prepend_bos without a BOS */
    ck_assert_ptr_nonnull(strstr(err.msg, "BOS"));
    o.bos = BOS;
    o.context = 1;
    ck_assert_int_ne(sae_window_opts_check(&o, &err), 0);
}
END_TEST

/* Writes text to unit_dir/name; returns the path (caller frees). */
static char *put_file(const char *name, const char *text, size_t n)
{
    char *p = unit_path(name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, n, f), n);
    fclose(f);
    return p;
}

/* The SAE cfg's keys, at the top or under metadata; bad values named. */
START_TEST(test_cfg)
{
    static const char cfg[] = "{\"d_in\": 4, \"metadata\": {\"context_size\": 64, "
                              "\"prepend_bos\": false, \"seqpos_slice\": [1, null], "
                              "\"sequence_separator_token\": null}}";
    char *p = put_file("cfg.json", cfg, sizeof cfg - 1);
    sae_window_opts o;
    sae_window_opts_default(&o);
    bool sep_bos = true;
    sae_error err;
    ck_assert_msg(sae_window_opts_read_cfg(p, &o, &sep_bos, &err) == 0, "%s", err.msg);
    ck_assert(o.context == 64 && !o.prepend_bos && !sep_bos && o.sep == -1);
    ck_assert(o.has_start && o.start == 1 && !o.has_stop);
    free(p);
    static const char bad[] = "{\"context_size\": \"128\"}";
    p = put_file("bad.json", bad, sizeof bad - 1);
    ck_assert_int_ne(sae_window_opts_read_cfg(p, &o, &sep_bos, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "context_size"));
    free(p);
    p = unit_path("none.json");
    ck_assert_int_eq(sae_window_opts_read_cfg(p, &o, &sep_bos, &err), 0); /* absent: as it was */
    free(p);
}
END_TEST

/* Reads every document of path into one string, each followed by '|'. */
static void read_all(const char *path, char *out, size_t cap, int *rc_out)
{
    sae_text_reader *r;
    sae_error err;
    ck_assert_msg(sae_text_open(path, &r, &err) == 0, "%s", err.msg);
    size_t at = 0;
    const char *t;
    size_t n;
    int rc;
    while ((rc = sae_text_next(r, &t, &n, &err)) == 1) {
        ck_assert_uint_lt(at + n + 1, cap);
        memcpy(out + at, t, n);
        at += n;
        out[at++] = '|';
    }
    out[at] = '\0';
    *rc_out = rc;
    sae_text_close(r);
}

/* Plain text: a document a line, CR LF too; JSON Lines: the "text" strings. */
START_TEST(test_text_files)
{
    static const char plain[] = "one\r\n\ntwo words\nlast";
    char *p = put_file("a.txt", plain, sizeof plain - 1), out[256];
    int rc;
    read_all(p, out, sizeof out, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "one||two words|last|");
    free(p);
    static const char jl[] = "{\"text\": \"a\\nb\", \"meta\": 1}\n\n{\"text\": \"\"}\n";
    p = put_file("a.jsonl", jl, sizeof jl - 1);
    read_all(p, out, sizeof out, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "a\nb||");
    free(p);
    static const char badjl[] = "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n";
    p = put_file("b.jsonl", badjl, sizeof badjl - 1);
    read_all(p, out, sizeof out, &rc);
    ck_assert_int_eq(rc, -1);
    free(p);
    char *doc;
    size_t len;
    sae_error err;
    ck_assert_int_eq(sae_text_parse_json_line("{\"text\": 1}", 11, "x.jsonl", 3, &doc, &len, &err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "x.jsonl: line 3"));
}
END_TEST

static Suite *window_suite(void)
{
    Suite *s = suite_create("window");
    TCase *tc = tcase_create("window");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_packs_as_saelens);
    tcase_add_test(tc, test_modes);
    tcase_add_test(tc, test_separator_at_the_end);
    tcase_add_test(tc, test_positions_and_checks);
    tcase_add_test(tc, test_cfg);
    tcase_add_test(tc, test_text_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(window_suite());
}
