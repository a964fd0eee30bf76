/* test_explanations.c: the explanation readers (core/index/explanations*.c):
 * JSON Lines and JSON arrays, plain and gzip-compressed, Neuronpedia feature
 * objects, delphi run folders with their score files, several inputs at
 * once, and malformed input refused naming the file and the line or entry. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "index/explanations.h"
#include "unit.h"

/* Writes text to unit_dir/name, gzip-compressed when gz (caller frees). */
static char *put(const char *name, const char *text, bool gz)
{
    char *p = unit_path(name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, text, (unsigned)strlen(text)), (int)strlen(text));
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        ck_assert_ptr_nonnull(f);
        fwrite(text, 1, strlen(text), f);
        fclose(f);
    }
    return p;
}

/* Reads one input into e; 0 or the error code (message in err). */
static int read1(const char *path, sae_explanations *e, sae_error *err)
{
    return sae_explanations_read((const char *const[]){path}, 1, 8, e, err);
}

static const char *lines =
    "{\"index\": 3, \"description\": \"cats\", \"score\": 0.5, \"scores\": [{\"value\": 0.75, "
    "\"explanationScoreTypeName\": \"recall_alt\", \"explanationScoreModelName\": \"gpt-4o\"}, "
    "{\"value\": -1, \"type\": \"fuzz\"}]}\n"
    "\n"
    "{\"index\": \"7\", \"description\": \"dogs\", \"scoreV1\": 0.25, \"scoreV2\": 0.9, "
    "\"typeName\": \"oai_token-act-pair\", \"explanationModelName\": \"gpt-4o-mini\"}\n";

/* The two explanations of `lines`, whatever shape carried them. */
static void check_lines(const sae_explanations *e)
{
    ck_assert_uint_eq(e->n, 2);
    const sae_explanation *a = &e->items[0], *b = &e->items[1];
    ck_assert_uint_eq(a->id, 1);
    ck_assert_uint_eq(a->feature, 3);
    ck_assert_str_eq(a->description, "cats");
    ck_assert(a->has_score && a->score == 0.5 && !a->has_score_v2);
    ck_assert_uint_eq(a->n_scores, 2);
    ck_assert(a->scores[0].value == 0.75 && a->scores[1].value == -1);
    ck_assert_str_eq(a->scores[0].type, "recall_alt");
    ck_assert_str_eq(a->scores[0].model, "gpt-4o");
    ck_assert_str_eq(a->scores[1].type, "fuzz");
    ck_assert_ptr_null(a->scores[1].model);
    ck_assert_uint_eq(b->id, 2);
    ck_assert_uint_eq(b->feature, 7);
    ck_assert(b->has_score && b->score == 0.25 && b->has_score_v2 && b->score_v2 == 0.9);
    ck_assert_str_eq(b->type_name, "oai_token-act-pair");
    ck_assert_str_eq(b->source, "gpt-4o-mini");
    ck_assert_uint_eq(b->n_scores, 0);
}

START_TEST(test_jsonl_plain_and_gzip)
{
    sae_explanations e, g;
    sae_error err;
    char *p = put("e.jsonl", lines, false), *pg = put("e.jsonl.gz", lines, true);
    ck_assert_msg(read1(p, &e, &err) == 0, "%s", err.msg);
    check_lines(&e);
    ck_assert_msg(read1(pg, &g, &err) == 0, "%s", err.msg);
    check_lines(&g);
    /* The digest is of the content: the same for both. */
    ck_assert_str_eq(e.digest, g.digest);
    sae_explanations_free(&e);
    sae_explanations_free(&g);
    free(p);
    free(pg);
}
END_TEST

START_TEST(test_array_and_feature_objects)
{
    const char *arr =
        "\n  [{\"index\": 3, \"description\": \"cats\", \"score\": 0.5, \"scores\": [{\"value\": "
        "0.75, \"explanationScoreTypeName\": \"recall_alt\", \"explanationScoreModelName\": "
        "\"gpt-4o\"}, {\"value\": -1, \"type\": \"fuzz\"}]},\n"
        "{\"modelId\": \"m\", \"layer\": \"0-x\", \"index\": \"7\", \"explanations\": "
        "[{\"description\": \"dogs\", \"scoreV1\": 0.25, \"scoreV2\": 0.9, \"typeName\": "
        "\"oai_token-act-pair\", \"explanationModelName\": \"gpt-4o-mini\"}]}]";
    for (int gz = 0; gz < 2; gz++) {
        sae_explanations e;
        sae_error err;
        char *p = put(gz ? "a.json.gz" : "a.json", arr, gz);
        ck_assert_msg(read1(p, &e, &err) == 0, "%s", err.msg);
        check_lines(&e);
        sae_explanations_free(&e);
        free(p);
    }
}
END_TEST

START_TEST(test_several_inputs)
{
    char *a = put("a.jsonl", lines, false), *b = put("b.jsonl.gz", lines, true);
    sae_explanations e;
    sae_error err;
    ck_assert_msg(sae_explanations_read((const char *const[]){a, b}, 2, 8, &e, &err) == 0, "%s",
                  err.msg);
    ck_assert_uint_eq(e.n, 4);
    ck_assert_uint_eq(e.items[3].id, 4); /* ids run on across inputs */
    ck_assert_uint_eq(e.items[2].feature, 3);
    ck_assert_uint_eq(strlen(e.digest), 32);
    sae_explanations_free(&e);
    free(a);
    free(b);
}
END_TEST

/* A delphi run: explanations/, scores/detection/ and scores/fuzz/. */
START_TEST(test_delphi)
{
    char *run = unit_path("run"), *p;
    const char *dirs[] = {"run", "run/explanations", "run/scores", "run/scores/detection",
                          "run/scores/fuzz"};
    for (int i = 0; i < 5; i++) {
        p = unit_path(dirs[i]);
        ck_assert_int_eq(mkdir(p, 0777), 0);
        free(p);
    }
    free(put("run/explanations/layers.6_latent5.txt", "\"cat words\"", false));
    free(put("run/explanations/layers.6_latent2.txt", "\"the \\\"dog\\\"\"", false));
    /* detection on latent 5: 2 positives (1 right), 2 negatives (2 right), 1
     * unparsed: balanced accuracy (1/2 + 2/2) / 2 = 0.75. */
    free(put("run/scores/detection/layers.6_latent5.txt",
             "[{\"str_tokens\": [\"a\"], \"activating\": true, \"prediction\": true, "
             "\"correct\": true}, {\"activating\": true, \"prediction\": false}, "
             "{\"activating\": false, \"prediction\": false}, {\"activating\": false, "
             "\"prediction\": 0}, {\"activating\": true, \"prediction\": null}]",
             false));
    free(put("run/scores/fuzz/layers.6_latent5.txt",
             "[{\"activating\": true, \"prediction\": true}]", true));
    /* No prediction at all: no score. */
    free(put("run/scores/fuzz/layers.6_latent2.txt", "[{\"activating\": true}]", false));
    sae_explanations e;
    sae_error err;
    ck_assert_msg(read1(run, &e, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(e.n, 2);
    ck_assert_uint_eq(e.items[0].feature, 2); /* by latent */
    ck_assert_str_eq(e.items[0].description, "the \"dog\"");
    ck_assert_uint_eq(e.items[0].n_scores, 0);
    ck_assert_uint_eq(e.items[1].feature, 5);
    ck_assert_uint_eq(e.items[1].n_scores, 2);
    ck_assert_str_eq(e.items[1].scores[0].type, "detection");
    ck_assert(e.items[1].scores[0].value == 0.75);
    ck_assert_ptr_null(e.items[1].scores[0].model);
    ck_assert_str_eq(e.items[1].scores[1].type, "fuzz");
    ck_assert(e.items[1].scores[1].value == 0.5); /* TPR 1, no negatives */
    sae_explanations_free(&e);
    /* The explanations folder itself reads the same (scores beside it). */
    p = unit_path("run/explanations");
    ck_assert_msg(read1(p, &e, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(e.n, 2);
    ck_assert_uint_eq(e.items[1].n_scores, 2);
    sae_explanations_free(&e);
    /* Several modules in one folder are refused, naming them. */
    free(put("run/explanations/layers.7_latent1.txt", "\"x\"", false));
    ck_assert_int_ne(read1(run, &e, &err), 0);
    ck_assert_msg(strstr(err.msg, "several modules") && strstr(err.msg, "layers.7"), "%s",
                  err.msg);
    free(p);
    free(run);
}
END_TEST

static const struct {
    const char *name, *text, *want1, *want2;
    bool gz;
} bad[] = {
    {"b1.json", "[{\"index\": 1, \"description\": \"x\"}, {\"index\": 9, \"description\": "
                "\"y\"}]", "entry 1", "index 9 out of range", false},
    {"b2.json", "[{\"index\": 1, \"description\": \"x\"}, 3]", "entry 1", "not a JSON object",
     false},
    {"b3.json.gz", "[{\"index\": 1}]", "entry 0", "no \"description\"", true},
    {"b4.json", "\n\n[{\"index\": 1, \"description\": \"x\"}", "line 3", "not valid JSON",
     false},
    {"b5.jsonl.gz", "{\"index\": 1, \"description\": \"x\"}\n{\"index\": 1, \"description\": "
                    "\"x\", \"scores\": [{\"type\": \"a\"}]}\n",
     "line 2", "scores[0] must be an object with a number \"value\"", true},
    {"b6.jsonl", "{\"index\": 1, \"description\": \"x\", \"scores\": {}}\n", "line 1",
     "\"scores\" must be an array", false},
    {"b7.jsonl", "{\"index\": 1, \"description\": \"x\", \"scores\": [{\"value\": 1, \"type\": "
                 "2}]}\n", "line 1", "score \"type\" must be a string", false},
    {"b8.json", "[{\"index\": 2, \"explanations\": [{\"score\": 1}]}]",
     "entry 0 explanations[0]", "no \"description\"", false},
    {"b9.json", "[{\"index\": 2, \"description\": \"x\", \"scoreV2\": \"hi\"}]", "entry 0",
     "\"scoreV2\" must be a number", false},
};

START_TEST(test_bad)
{
    sae_explanations e;
    sae_error err;
    char *p = put(bad[_i].name, bad[_i].text, bad[_i].gz);
    ck_assert_int_ne(read1(p, &e, &err), 0);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, bad[_i].want1) &&
                      strstr(err.msg, bad[_i].want2),
                  "case %d: message '%s'", _i, err.msg);
    free(p);
}
END_TEST

START_TEST(test_bad_gzip)
{
    /* A gzip header and then garbage, and a gzip stream cut short. */
    char *p = put("g.jsonl.gz", lines, true);
    FILE *f = fopen(p, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    ck_assert_int_eq(truncate(p, n / 2), 0);
    sae_explanations e;
    sae_error err;
    ck_assert_int_ne(read1(p, &e, &err), 0);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "gzip"), "%s", err.msg);
    free(p);
    p = put("h.json.gz", "\x1f\x8b\x08\x00garbage that is not deflate", false);
    ck_assert_int_ne(read1(p, &e, &err), 0);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "gzip"), "%s", err.msg);
    free(p);
}
END_TEST

START_TEST(test_best_order)
{
    sae_explanation x[5] = {
        {.id = 1, .has_score = true, .score = 0.9},
        {.id = 2},
        {.id = 3, .has_score_v2 = true, .score_v2 = 0.1, .has_score = true, .score = 0},
        {.id = 4, .has_score = true, .score = 0.9},
        {.id = 5, .has_score_v2 = true, .score_v2 = 0.5},
    };
    sae_explanations e = {.n = 5, .items = x};
    sae_explanations_sort_best(&e);
    uint64_t want[5] = {5, 3, 1, 4, 2};
    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(x[i].id, want[i]);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("explanations");
    TCase *t = tcase_create("readers");
    tcase_add_checked_fixture(t, unit_setup, unit_teardown);
    tcase_add_test(t, test_jsonl_plain_and_gzip);
    tcase_add_test(t, test_array_and_feature_objects);
    tcase_add_test(t, test_several_inputs);
    tcase_add_test(t, test_delphi);
    tcase_add_loop_test(t, test_bad, 0, sizeof bad / sizeof bad[0]);
    tcase_add_test(t, test_bad_gzip);
    tcase_add_test(t, test_best_order);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
