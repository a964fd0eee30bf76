/* test_tokens.c: the tokens and explanations JSON Lines readers (core/index/tokens.c,
 * explanations.c, over jsonl.c):
 * what they accept (ids of every form, blank lines, CRLF, U+0000 inside a
 * token, Neuronpedia explanation exports), the per-document layout they keep,
 * re-reading a document, and that every malformed line is refused naming the
 * file and the line. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "fixture.h"
#include "index/explanations.h"
#include "index/tokens.h"
#include "unit.h"

/* Writes text to unit_dir/name and returns the path (caller frees). */
static char *put(const char *name, const char *text)
{
    char *p;
    ck_assert_int_ge(asprintf(&p, "%s/%s", unit_dir, name), 0);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return p;
}

/* XXH3-128 of text as the readers print it (canonical, lowercase hex). */
static void digest_of(const char *text, char out[33])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(text, strlen(text)));
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", c.digest[i]);
}

START_TEST(test_documents)
{
    const char *text = "{\"id\": \"a\", \"tokens\": [\"The\", \" cat\"]}\n"
                       "\n"
                       "   \r\n"
                       "{\"tokens\": [], \"text\": \"ignored\"}\r\n"
                       "{\"id\": 42, \"tokens\": [\"x\\u0000y\", \"\\u00e9\", \"z\"]}\n"
                       "{\"id\": null, \"tokens\": [\"last\"]}";
    char *p = put("t.jsonl", text);
    sae_tokens *t;
    sae_error err;
    ck_assert_int_eq(sae_tokens_open(p, &t, &err), 0);
    ck_assert_uint_eq(t->n_docs, 4);
    ck_assert_uint_eq(t->n_tokens, 6);
    uint64_t rs[] = {0, 2, 2, 5, 6};
    uint64_t lines[] = {1, 4, 5, 6};
    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(t->row_start[i], rs[i]);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(t->line_no[i], lines[i]);
    /* Row -> document skips the empty document 1. */
    size_t owner[] = {0, 0, 2, 2, 2, 3};
    for (int r = 0; r < 6; r++)
        ck_assert_uint_eq(sae_tokens_doc_of_row(t, (uint64_t)r), owner[r]);
    char want[33];
    digest_of(text, want);
    ck_assert_str_eq(t->digest, want);

    sae_doc d;
    ck_assert_int_eq(sae_tokens_read_doc(t, 0, &d, &err), 0);
    ck_assert_str_eq(d.id, "a");
    ck_assert_uint_eq(d.n, 2);
    ck_assert_str_eq(d.tok[1], " cat");
    sae_doc_free(&d);
    ck_assert_int_eq(sae_tokens_read_doc(t, 1, &d, &err), 0);
    ck_assert_str_eq(d.id, "4"); /* no id: its line number */
    ck_assert_uint_eq(d.n, 0);
    sae_doc_free(&d);
    ck_assert_int_eq(sae_tokens_read_doc(t, 2, &d, &err), 0);
    ck_assert_str_eq(d.id, "42");
    ck_assert_uint_eq(d.tok_len[0], 3);
    ck_assert_int_eq(memcmp(d.tok[0], "x\0y", 3), 0);
    ck_assert_str_eq(d.tok[1], "\xc3\xa9");
    sae_doc_free(&d);
    ck_assert_int_eq(sae_tokens_read_doc(t, 3, &d, &err), 0);
    ck_assert_str_eq(d.id, "6");
    ck_assert_str_eq(d.tok[0], "last");
    sae_doc_free(&d);
    ck_assert_int_ne(sae_tokens_read_doc(t, 4, &d, &err), 0);
    sae_tokens_free(t);

    /* An empty file is an empty corpus. */
    char *e = put("empty.jsonl", "");
    ck_assert_int_eq(sae_tokens_open(e, &t, &err), 0);
    ck_assert_uint_eq(t->n_docs, 0);
    ck_assert_uint_eq(t->n_tokens, 0);
    sae_tokens_free(t);
    free(e);
    free(p);
}
END_TEST

START_TEST(test_document_changed_under_us)
{
    char *p = put("t.jsonl", "{\"tokens\": [\"a\", \"b\"]}\n{\"tokens\": [\"c\"]}\n");
    sae_tokens *t;
    sae_error err;
    ck_assert_int_eq(sae_tokens_open(p, &t, &err), 0);
    free(put("t.jsonl", "{\"tokens\": [\"a\"]     }\n{\"tokens\": [\"c\"]}\n"));
    sae_doc d;
    ck_assert_int_ne(sae_tokens_read_doc(t, 0, &d, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "line 1"));
    ck_assert_ptr_nonnull(strstr(err.msg, "changed"));
    sae_tokens_free(t);
    free(p);
}
END_TEST

/* Each bad tokens file and what its message must contain. */
static const struct {
    const char *text, *want1, *want2;
} bad_tokens[] = {
    {"{\"tokens\": [\"a\"]}\n{\"tokens\": [\"b\"]\n", "line 2", "not valid JSON"},
    {"{\"tokens\": [\"a\"]}\n\n[1, 2]\n", "line 3", "not a JSON object"},
    {"{\"toks\": [\"a\"]}\n", "line 1", "no \"tokens\" array"},
    {"{\"tokens\": \"a b\"}\n", "line 1", "no \"tokens\" array"},
    {"{\"tokens\": [\"a\", 7]}\n", "line 1", "tokens[1] is not a string"},
    {"{\"id\": 1.5, \"tokens\": []}\n", "line 1", "\"id\" must be a string or an integer"},
    {"{\"id\": \"a\", \"id\": \"b\", \"tokens\": []}\n", "line 1", "duplicate"},
    {"{\"tokens\": [\"\xff\"]}\n", "line 1", "not valid JSON"},
};

START_TEST(test_bad_tokens)
{
    sae_tokens *t;
    sae_error err;
    char *p = put("bad.jsonl", bad_tokens[_i].text);
    ck_assert_int_ne(sae_tokens_open(p, &t, &err), 0);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, bad_tokens[_i].want1) &&
                      strstr(err.msg, bad_tokens[_i].want2),
                  "case %d: message '%s'", _i, err.msg);
    free(p);
    char *missing;
    ck_assert_int_ge(asprintf(&missing, "%s/nope.jsonl", unit_dir), 0);
    ck_assert_int_eq(sae_tokens_open(missing, &t, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "nope.jsonl"));
    free(missing);
}
END_TEST

START_TEST(test_explanations)
{
    const char *text =
        "{\"index\": 3, \"description\": \"cats\", \"score\": 0.5, \"source\": \"human\"}\n"
        "\n"
        "{\"modelId\": \"gpt2-small\", \"layer\": \"0-res\", \"index\": \"7\", \"description\": "
        "\"dogs and \\\"puppies\\\"\", \"typeName\": \"oai_token-act-pair\", "
        "\"explanationModelName\": \"gpt-4o-mini\", \"scoreV1\": 0.25, \"authorId\": \"x\"}\n"
        "{\"index\": 3, \"description\": \"felines\", \"score\": null}\n";
    char *p = put("e.jsonl", text);
    sae_explanations e;
    sae_error err;
    ck_assert_int_eq(sae_explanations_read((const char *const[]){p}, 1, 8, &e, &err), 0);
    ck_assert_uint_eq(e.n, 3);
    ck_assert_uint_eq(e.items[0].feature, 3);
    ck_assert_str_eq(e.items[0].description, "cats");
    ck_assert(e.items[0].has_score);
    ck_assert(e.items[0].score == 0.5);
    ck_assert_str_eq(e.items[0].source, "human");
    ck_assert_ptr_null(e.items[0].type_name);
    ck_assert_uint_eq(e.items[1].feature, 7);
    ck_assert_str_eq(e.items[1].description, "dogs and \"puppies\"");
    ck_assert(e.items[1].has_score && e.items[1].score == 0.25);
    ck_assert_str_eq(e.items[1].source, "gpt-4o-mini");
    ck_assert_str_eq(e.items[1].type_name, "oai_token-act-pair");
    ck_assert(!e.items[2].has_score);
    ck_assert_ptr_null(e.items[2].source);
    char want[33];
    digest_of(text, want);
    ck_assert_str_eq(e.digest, want);
    sae_explanations_free(&e);
    free(p);
}
END_TEST

static const struct {
    const char *text, *want1, *want2;
} bad_expl[] = {
    {"{\"index\": 8, \"description\": \"x\"}\n", "line 1", "index 8 out of range"},
    {"{\"index\": \"8x\", \"description\": \"x\"}\n", "line 1", "non-negative integer"},
    {"{\"index\": -1, \"description\": \"x\"}\n", "line 1", "non-negative integer"},
    {"{\"description\": \"x\"}\n", "line 1", "non-negative integer"},
    {"{\"index\": 1}\n", "line 1", "no \"description\" string"},
    {"{\"index\": 1, \"description\": \"x\", \"score\": \"high\"}\n", "line 1",
     "\"score\" must be a number"},
    {"{\"index\": 1, \"description\": \"x\", \"source\": 3}\n", "line 1",
     "\"source\" must be a string"},
    {"\n\n{\"index\": 1, \"description\": \"x\"\n", "line 3", "not valid JSON"},
    {"{\"index\": 1, \"description\": \"x\", \"index\": 2}\n", "line 1", "duplicate"},
};

START_TEST(test_bad_explanations)
{
    sae_explanations e;
    sae_error err;
    char *p = put("bad.jsonl", bad_expl[_i].text);
    ck_assert_int_ne(sae_explanations_read((const char *const[]){p}, 1, 8, &e, &err), 0);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, bad_expl[_i].want1) &&
                      strstr(err.msg, bad_expl[_i].want2),
                  "case %d: message '%s'", _i, err.msg);
    free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tokens");
    TCase *tc = tcase_create("tokens");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_documents);
    tcase_add_test(tc, test_document_changed_under_us);
    tcase_add_loop_test(tc, test_bad_tokens, 0, (int)(sizeof bad_tokens / sizeof bad_tokens[0]));
    tcase_add_test(tc, test_explanations);
    tcase_add_loop_test(tc, test_bad_explanations, 0,
                        (int)(sizeof bad_expl / sizeof bad_expl[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
