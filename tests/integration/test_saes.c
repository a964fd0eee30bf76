/* test_saes.c: many SAEs in one saed (CONTRACT 7), real daemons on loopback.
 *
 *   release     --release over a folder of SAELens folders: ids from paths,
 *               /v1/saes, every SAE's encode against the reference encode
 *   routes      /v1/saes/{id}/..., unknown id 404 sae_not_found, an SAE
 *               without an index 404 no_index, X-SAE-Weights-Digest per SAE
 *   fan-out     "saes": one result set per SAE, each the reference's; SAEs of
 *               another hook refused
 *   mixed       32 concurrent clients alternating between two SAEs: every
 *               row the reference of its own SAE, and batches still formed
 *               (the batcher gathers one SAE's jobs from an interleaved queue)
 *   search      /v1/search over two indexes, best first, paged
 *   neuronpedia the layer picks the SAE
 *   reload      SIGHUP loads only the SAE whose folder changed; a broken one
 *               keeps serving; a removed one stops; a config adds one
 *   budget      max_mapped_bytes unmaps and maps again, counted in /metrics
 *   refusals    bad and duplicate ids are refused at start-up, naming them
 *   many        80 SAEs from one --release (more than the 64 mappings the
 *               registry of core/io/mapped.c once held): each answers as the
 *               reference, and the last one's weights rewritten in place are
 *               refused (503 weights_changed) while the others serve on */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"
#include "reference.h"

enum { D_IN = 16, D_SAE = 48, ROWS = 400, N_REL = 3 };

static char *tmp;
static char rel[512], dir_x[600], acts[600], toks[600], expl_path[600], idx0[600], idx1[600];
static char sub[N_REL][600];
static const char *const rel_ids[N_REL] = {"blocks.0.hook_resid_pre.w16k", "blocks.0.hook_resid_pre.w32k", "layer_1.width_16k"};
static const char *const rel_paths[N_REL] = {"blocks.0.hook_resid_pre.w16k", "blocks.0.hook_resid_pre.w32k", "layer_1/width_16k"};
static sae_model *models[N_REL];

/* Runs argv; its exit status, or -1. stderr goes to errfile (or /dev/null). */
static int run(const char *const *argv, const char *errfile)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(errfile ? errfile : "/dev/null", "w", stderr);
        (void)f;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_t *get_json(const struct daemon *d, const char *path, long *status)
{
    struct http_resp r;
    *status = http(d, "GET", path, NULL, 0, NULL, false, &r);
    json_t *j = json_loads(r.body ? r.body : "", 0, NULL);
    http_free(&r);
    return j;
}

static const char *err_code(json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

/* Checks one encode result object against the reference encode of x by m. */
static void check_row(const sae_model *m, const float *x, json_t *res, const char *what)
{
    double f[D_SAE * 4], margin[D_SAE * 4];
    sae_ref_encode_row(m, x, f, margin);
    json_t *ix = json_object_get(res, "indices"), *v = json_object_get(res, "values");
    size_t n = json_array_size(ix), active = 0;
    CHECK(res && n == json_array_size(v), "%s: %zu indices", what, n);
    double scale = 0;
    for (size_t j = 0; j < m->d_sae; j++) {
        scale = fmax(scale, fabs(f[j]));
        active += f[j] > 0 && fabs(margin[j]) > 1e-5;
    }
    double tol = 1e-5 * (1 + scale);
    for (size_t t = 0; t < n; t++) {
        size_t i = (size_t)json_integer_value(json_array_get(ix, t));
        double got = json_number_value(json_array_get(v, t));
        CHECK(i < m->d_sae && fabs(got - f[i]) <= tol, "%s: feature %zu got %g ref %g", what, i,
              got, i < m->d_sae ? f[i] : 0.0);
    }
    CHECK(n >= active, "%s: %zu active, reference %zu", what, n, active);
}

/* POST body to path; the parsed reply and its status. */
static json_t *post_json(const struct daemon *d, const char *path, const char *body, long *status,
                         char *digest, size_t cap)
{
    struct http_resp r;
    const char *h[] = {"Content-Type: application/json", NULL};
    *status = http(d, "POST", path, body, strlen(body), h, false, &r);
    if (digest)
        snprintf(digest, cap, "%s", r.digest);
    json_t *j = json_loads(r.body ? r.body : "", 0, NULL);
    http_free(&r);
    return j;
}

/* {"input": x} (plus extra members) as a JSON body. */
static char *row_body(const float *x, const char *extra)
{
    static _Thread_local char b[8192]; /* one per thread: test_mixed sends from 32 */
    size_t n = (size_t)snprintf(b, sizeof b, "{%s\"input\":[", extra);
    for (size_t c = 0; c < D_IN; c++)
        n += (size_t)snprintf(b + n, sizeof b - n, "%s%.9g", c ? "," : "", (double)x[c]);
    snprintf(b + n, sizeof b - n, "]}");
    return b;
}

/* Waits (at most 20 s) for the n-th log line containing s. */
static bool wait_log(const struct daemon *d, const char *s, int n)
{
    for (int t = 0; t < 2000; t++) {
        FILE *f = fopen(d->log, "r");
        char line[2048];
        int c = 0;
        while (f && fgets(line, sizeof line, f))
            c += strstr(line, s) != NULL;
        if (f)
            fclose(f);
        if (c >= n)
            return true;
        usleep(10000);
    }
    return false;
}

static int setup(void)
{
    tmp = h_tmpdir("saes");
    snprintf(rel, sizeof rel, "%s/release", tmp);
    snprintf(dir_x, sizeof dir_x, "%s/other-hook", tmp);
    snprintf(acts, sizeof acts, "%s/acts.safetensors", tmp);
    snprintf(toks, sizeof toks, "%s/tokens.jsonl", tmp);
    snprintf(expl_path, sizeof expl_path, "%s/expl_path.jsonl", tmp);
    snprintf(idx0, sizeof idx0, "%s/0.db", tmp);
    snprintf(idx1, sizeof idx1, "%s/1.db", tmp);
    sae_error err;
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = D_IN;
    o.target_l0 = 6;
    for (int i = 0; i < N_REL; i++) {
        snprintf(sub[i], sizeof sub[i], "%s/%s", rel, rel_paths[i]);
        o.d_sae = D_SAE * (size_t)(i == 1 ? 2 : 1);
        o.seed = 10 + (uint64_t)i;
        o.hook_name = i == 2 ? "blocks.1.hook_resid_pre" : "blocks.0.hook_resid_pre";
        if (sae_fixture_write_model(sub[i], &o, &err) ||
            sae_model_load(sub[i], &models[i], NULL, &err))
            return fprintf(stderr, "%s\n", err.msg), -1;
    }
    o.d_sae = D_SAE;
    o.seed = 99;
    o.hook_name = "blocks.5.hook_resid_pre";
    if (sae_fixture_write_model(dir_x, &o, &err) ||
        sae_fixture_write_activations(acts, ROWS, D_IN, SAE_DT_F32, 7, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    FILE *f = fopen(toks, "w");
    for (int doc = 0; f && doc < ROWS / 10; doc++) {
        fprintf(f, "{\"id\": \"d%d\", \"tokens\": [", doc);
        for (int t = 0; t < 10; t++)
            fprintf(f, "%s\"t%d\"", t ? "," : "", t);
        fprintf(f, "]}\n");
    }
    if (f)
        fclose(f);
    /* Feature 3 is "cat" in both indexes, feature 5 "cat and dog" in the second. */
    f = fopen(expl_path, "w");
    if (f) {
        fprintf(f, "{\"index\": 3, \"description\": \"cat\", \"score\": 0.5}\n");
        fprintf(f, "{\"index\": 5, \"description\": \"cat and dog and more words\"}\n");
        fprintf(f, "{\"index\": 7, \"description\": \"dog\"}\n");
        fclose(f);
    }
    const char *sae = getenv("SAE_BIN");
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {sae, "index", "--model", sub[i], "--activations", acts, "--tokens",
                              toks, "--out", i ? idx1 : idx0, "--explanations", expl_path, "--quiet",
                              "--threads", "1", NULL};
        if (run(argv, NULL))
            return fprintf(stderr, "sae index failed\n"), -1;
    }
    return 0;
}

/* saed with args must exit 1 naming why. */
static void expect_refusal(const char *const *args, const char *why)
{
    char log[700];
    snprintf(log, sizeof log, "%s/refusal.log", tmp);
    const char *argv[16] = {getenv("SAED_BIN")};
    size_t n = 1;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n] = NULL;
    int rc = run(argv, log);
    char text[4096] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        text[fread(text, 1, sizeof text - 1, f)] = '\0';
        fclose(f);
    }
    CHECK(rc == 1 && strstr(text, why), "refusal (%s): exit %d, %s", why, rc, text);
}

static void test_refusals(void)
{
    char a[700], b[700];
    snprintf(a, sizeof a, "bad/id=%s", sub[0]);
    expect_refusal((const char *[]){"--sae", a, NULL}, "bad/id");
    snprintf(a, sizeof a, "x=%s", sub[0]);
    snprintf(b, sizeof b, "x=%s", sub[1]);
    expect_refusal((const char *[]){"--sae", a, "--sae", b, NULL}, "'x' is given twice");
    snprintf(a, sizeof a, "nope=%s", idx0);
    expect_refusal((const char *[]){"--release", rel, "--index", a, NULL}, "'nope'");
}

static void test_release(const struct daemon *d)
{
    long st;
    json_t *j = get_json(d, "/v1/saes", &st);
    json_t *l = json_object_get(j, "saes");
    CHECK(st == 200 && json_array_size(l) == N_REL, "/v1/saes: %ld, %zu", st,
          json_array_size(l));
    for (size_t i = 0; i < N_REL && i < json_array_size(l); i++) {
        json_t *e = json_array_get(l, i);
        CHECK(!strcmp(json_string_value(json_object_get(e, "id")), rel_ids[i]), "id %zu: %s", i,
              json_string_value(json_object_get(e, "id")));
        CHECK(json_integer_value(json_object_get(e, "d_sae")) == (json_int_t)models[i]->d_sae &&
                  !strcmp(json_string_value(json_object_get(e, "weights_digest")),
                          models[i]->weights_digest) &&
                  json_is_true(json_object_get(e, "has_index")) == (i < 2) &&
                  json_is_true(json_object_get(e, "default")) == (i == 0),
              "entry %zu", i);
    }
    json_decref(j);
    float x[D_IN];
    for (size_t i = 0; i < N_REL; i++) {
        char path[256], dig[64], what[64];
        sae_fixture_random_rows(x, 1, D_IN, 1.0, 50 + i);
        snprintf(path, sizeof path, "/v1/saes/%s/encode", rel_ids[i]);
        j = post_json(d, path, row_body(x, ""), &st, dig, sizeof dig);
        snprintf(what, sizeof what, "%s encode", rel_ids[i]);
        CHECK(st == 200 && !strcmp(dig, models[i]->weights_digest), "%s: %ld %s", what, st, dig);
        check_row(models[i], x, json_array_get(json_object_get(j, "results"), 0), what);
        json_decref(j);
        snprintf(path, sizeof path, "/v1/saes/%s/model", rel_ids[i]);
        j = get_json(d, path, &st);
        CHECK(st == 200 && json_integer_value(json_object_get(j, "d_sae")) ==
                               (json_int_t)models[i]->d_sae,
              "%s: %ld", path, st);
        json_decref(j);
    }
    /* The unprefixed routes are the default SAE's (the first). */
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 77);
    char dig[64];
    j = post_json(d, "/v1/encode", row_body(x, ""), &st, dig, sizeof dig);
    CHECK(st == 200 && !strcmp(dig, models[0]->weights_digest), "default encode %ld", st);
    check_row(models[0], x, json_array_get(json_object_get(j, "results"), 0), "default");
    json_decref(j);
    j = get_json(d, "/v1/saes/no.such.sae/features/1", &st);
    CHECK(st == 404 && !strcmp(err_code(j), "sae_not_found"), "unknown id %ld", st);
    json_decref(j);
    j = get_json(d, "/v1/saes/layer_1.width_16k/features/1", &st);
    CHECK(st == 404 && !strcmp(err_code(j), "no_index"), "no index %ld", st);
    json_decref(j);
    j = get_json(d, "/v1/saes/blocks.0.hook_resid_pre.w32k/features/3", &st);
    CHECK(st == 200 && json_integer_value(json_object_get(j, "index")) == 3, "feature %ld", st);
    json_decref(j);
}

static void test_fanout(const struct daemon *d)
{
    float x[D_IN];
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 91);
    long st;
    char dig[200], want[200];
    json_t *j = post_json(d, "/v1/encode",
                          row_body(x, "\"saes\":[\"blocks.0.hook_resid_pre.w32k\","
                                      "\"blocks.0.hook_resid_pre.w16k\"],"),
                          &st, dig, sizeof dig);
    snprintf(want, sizeof want, "%s,%s", models[1]->weights_digest, models[0]->weights_digest);
    /* The harness keeps the header's first 63 bytes. */
    CHECK(st == 200 && strlen(dig) == 63 && !strncmp(dig, want, 63), "fan-out %ld digests %s",
          st, dig);
    json_t *s = json_object_get(j, "saes");
    CHECK(json_object_size(s) == 2, "fan-out: %zu result sets", json_object_size(s));
    for (int i = 0; i < 2; i++) {
        json_t *one = json_object_get(s, rel_ids[i]);
        CHECK(one && !strcmp(json_string_value(json_object_get(one, "weights_digest")),
                             models[i]->weights_digest),
              "fan-out %s", rel_ids[i]);
        check_row(models[i], x, json_array_get(json_object_get(one, "results"), 0), rel_ids[i]);
    }
    json_decref(j);
    j = post_json(d, "/v1/encode",
                  row_body(x, "\"saes\":[\"blocks.0.hook_resid_pre.w16k\",\"layer_1.width_16k\"],"),
                  &st, NULL, 0);
    CHECK(st == 422 && !strcmp(err_code(j), "sae_mismatch"), "other hook refused %ld", st);
    json_decref(j);
    j = post_json(d, "/v1/saes/layer_1.width_16k/encode",
                  row_body(x, "\"saes\":[\"layer_1.width_16k\"],"), &st, NULL, 0);
    CHECK(st == 400, "saes on a prefixed route refused %ld", st);
    json_decref(j);
}

/* ---- mixed: one-row requests to two SAEs, interleaved ---- */

enum { MIX_CLIENTS = 32, MIX_PER = 6 };

/* One client of test_mixed: its rows, the SAE of each request, what came
 * back. */
struct mix_client {
    const struct daemon *d;
    size_t k;                          /* client number: picks SAEs and rows */
    float x[MIX_PER][D_IN];
    json_t *res[MIX_PER];
    long status[MIX_PER];
};

/* The SAE (0 or 1) of client k's i-th request: alternating, so the queue
 * holds both SAEs' jobs interleaved. */
static size_t mix_sae(size_t k, size_t i)
{
    return (k + i) % 2;
}

/* Sends one client's requests, one after another. */
static void *mix_main(void *arg)
{
    struct mix_client *c = arg;
    for (size_t i = 0; i < MIX_PER; i++) {
        char path[256];
        snprintf(path, sizeof path, "/v1/saes/%s/encode", rel_ids[mix_sae(c->k, i)]);
        c->res[i] = post_json(c->d, path, row_body(c->x[i], ""), &c->status[i], NULL, 0);
    }
    http_thread_done();
    return NULL;
}

static void test_mixed(const struct daemon *d)
{
    struct mix_client *cl = calloc(MIX_CLIENTS, sizeof *cl);
    pthread_t t[MIX_CLIENTS];
    double before = daemon_metric(d, "saed_batch_rows_count");
    for (size_t k = 0; k < MIX_CLIENTS; k++) {
        cl[k].d = d;
        cl[k].k = k;
        sae_fixture_random_rows(&cl[k].x[0][0], MIX_PER, D_IN, 1.0, 300 + k);
        pthread_create(&t[k], NULL, mix_main, &cl[k]);
    }
    for (size_t k = 0; k < MIX_CLIENTS; k++)
        pthread_join(t[k], NULL);
    double gemms = daemon_metric(d, "saed_batch_rows_count") - before;
    size_t rows = 0;
    for (size_t k = 0; k < MIX_CLIENTS; k++)
        for (size_t i = 0; i < MIX_PER; i++) {
            char what[64];
            snprintf(what, sizeof what, "mixed: client %zu request %zu", k, i);
            CHECK(cl[k].status[i] == 200, "%s: %ld", what, cl[k].status[i]);
            check_row(models[mix_sae(k, i)], cl[k].x[i],
                      json_array_get(json_object_get(cl[k].res[i], "results"), 0), what);
            json_decref(cl[k].res[i]);
            rows++;
        }
    CHECK(before >= 0 && gemms > 0 && gemms < (double)rows,
          "mixed: batching formed no batch: %g GEMMs for %zu rows", gemms, rows);
    printf("mixed: %zu one-row requests over two SAEs in %g GEMMs (%.1f rows/GEMM)\n", rows,
           gemms, (double)rows / gemms);
    free(cl);
}

static void test_search(const struct daemon *d)
{
    long st;
    json_t *j = get_json(d, "/v1/search?q=cat", &st);
    json_t *r = json_object_get(j, "results");
    /* "cat" matches feature 3 and 5 of both indexes; "cat" alone ranks 3 first. */
    CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == 4 &&
              json_array_size(r) == 4,
          "search: %ld, total %lld", st, (long long)json_integer_value(json_object_get(j, "total")));
    double last = INFINITY;
    for (size_t i = 0; i < json_array_size(r); i++) {
        double sc = json_number_value(json_object_get(json_array_get(r, i), "score"));
        CHECK(sc <= last, "search: best first (%g after %g)", sc, last);
        last = sc;
    }
    json_t *h0 = json_array_get(r, 0);
    CHECK(json_integer_value(json_object_get(h0, "feature")) == 3 &&
              !strcmp(json_string_value(json_object_get(h0, "sae")), rel_ids[0]) &&
              !strcmp(json_string_value(json_object_get(h0, "description")), "cat"),
          "search: first hit");
    json_decref(j);
    j = get_json(d, "/v1/search?q=cat&limit=1&offset=1", &st);
    h0 = json_array_get(json_object_get(j, "results"), 0);
    CHECK(st == 200 && json_integer_value(json_object_get(h0, "feature")) == 3 &&
              !strcmp(json_string_value(json_object_get(h0, "sae")), rel_ids[1]),
          "search page 2: the other SAE's feature 3 (a tie, by SAE order)");
    json_decref(j);
    j = get_json(d, "/v1/search", &st);
    CHECK(st == 400, "search without q %ld", st);
    json_decref(j);
    /* A repeated word counts once (ASCII case-insensitively): 32 distinct
     * words, each given twice, are searched; a 33rd is refused naming 32. */
    j = get_json(d, "/v1/search?q=cat+CAT+cat", &st);
    CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == 4,
          "search: repeats count once %ld", st);
    json_decref(j);
    char q[1024];
    size_t n = (size_t)snprintf(q, sizeof q, "/v1/search?q=cat");
    for (int w = 1; w < 32; w++)
        n += (size_t)snprintf(q + n, sizeof q - n, "+w%d+W%d", w, w);
    j = get_json(d, q, &st);
    CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == 0,
          "search: 32 distinct words (63 given) %ld", st);
    json_decref(j);
    snprintf(q + n, sizeof q - n, "+w32");
    j = get_json(d, q, &st);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    CHECK(st == 400 && !strcmp(err_code(j), "invalid_query") && msg && strstr(msg, "32"),
          "search: 33 distinct words %ld %s", st, msg ? msg : "");
    json_decref(j);
}

static void test_neuronpedia(const struct daemon *d)
{
    long st;
    char path[256];
    snprintf(path, sizeof path, "/api/feature/fixture-model/%s/3", rel_ids[1]);
    json_t *j = get_json(d, path, &st);
    CHECK(st == 200 && !strcmp(json_string_value(json_object_get(j, "layer")), rel_ids[1]),
          "neuronpedia by SAE id %ld", st);
    json_decref(j);
    j = get_json(d, "/api/feature/fixture-model/blocks.0.hook_resid_pre/3", &st);
    CHECK(st == 404, "with several SAEs the hook is not a layer %ld", st);
    json_decref(j);
}

static void test_reload(struct daemon *d)
{
    /* Nothing changed: nothing loads again. */
    daemon_signal(d, SIGHUP);
    CHECK(wait_log(d, "saed: reloaded", 1), "reload 1");
    CHECK(daemon_metric(d, "saed_sae_reloads_total{sae=\"layer_1.width_16k\","
                           "result=\"unchanged\"}") == 1,
          "unchanged counted");
    /* Break one SAE: it keeps serving, the others are untouched. */
    char w[700];
    snprintf(w, sizeof w, "%s/sae_weights.safetensors", sub[2]);
    char moved[720];
    snprintf(moved, sizeof moved, "%s.bak", w);
    CHECK(rename(w, moved) == 0, "break");
    daemon_signal(d, SIGHUP);
    CHECK(wait_log(d, "reload failed, still serving weights", 1), "failed reload logged");
    long st;
    json_t *j = get_json(d, "/v1/saes/layer_1.width_16k/model", &st);
    CHECK(st == 200, "broken SAE still serves %ld", st);
    json_decref(j);
    const char *failed = "saed_sae_reloads_total{sae=\"layer_1.width_16k\",result=\"failed\"}",
               *other = "saed_sae_reloads_total{sae=\"blocks.0.hook_resid_pre.w16k\","
                        "result=\"unchanged\"}";
    CHECK(daemon_metric(d, failed) == 1 && daemon_metric(d, other) == 2,
          "per-SAE reload results");
    /* Repaired by a new file (a deploy writes one): the folder changed. */
    FILE *in = fopen(moved, "rb"), *out = fopen(w, "wb");
    char buf[65536];
    size_t k;
    while (in && out && (k = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, k, out);
    CHECK(in && out && fclose(out) == 0, "repair");
    if (in)
        fclose(in);
    daemon_signal(d, SIGHUP);
    CHECK(wait_log(d, "saed: reloaded", 2), "reload 3");
    CHECK(daemon_metric(d, "saed_sae_reloads_total{sae=\"layer_1.width_16k\",result=\"ok\"}") == 1,
          "repaired SAE loaded again");
}

static void test_budget(void)
{
    struct daemon d;
    /* Two SAEs' weights fit in the budget, not three. */
    struct stat st0;
    char w[700], budget[32];
    snprintf(w, sizeof w, "%s/sae_weights.safetensors", sub[1]);
    stat(w, &st0);
    snprintf(budget, sizeof budget, "%lld", (long long)st0.st_size * 2);
    const char *args[] = {"--quiet", "--release", rel, "--max-mapped-bytes", budget, NULL};
    if (daemon_start(&d, NULL, args)) {
        CHECK(0, "budget daemon did not start");
        return;
    }
    float x[D_IN];
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 5);
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < N_REL; i++) {
            char path[256];
            long s;
            snprintf(path, sizeof path, "/v1/saes/%s/encode", rel_ids[i]);
            json_t *j = post_json(&d, path, row_body(x, ""), &s, NULL, 0);
            CHECK(s == 200, "budget encode %s %ld", rel_ids[i], s);
            check_row(models[i], x, json_array_get(json_object_get(j, "results"), 0), "budget");
            json_decref(j);
        }
    double remaps = 0;
    for (size_t i = 0; i < N_REL; i++) {
        char series[200];
        snprintf(series, sizeof series, "saed_sae_remaps_total{sae=\"%s\"}", rel_ids[i]);
        remaps += daemon_metric(&d, series);
    }
    CHECK(remaps >= 3, "remaps counted: %g", remaps);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "budget daemon exit");
}

/* 80 SAEs in one release: past 64 mappings the weights are still watched. */
enum { N_MANY = 80 };

static void test_many(void)
{
    char root[700], dir[N_MANY][760];
    snprintf(root, sizeof root, "%s/many", tmp);
    sae_error err;
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = D_IN;
    o.d_sae = D_SAE;
    o.target_l0 = 6;
    sae_model *m[N_MANY] = {0};
    for (size_t i = 0; i < N_MANY; i++) {
        snprintf(dir[i], sizeof dir[i], "%s/sae_%02zu", root, i);
        o.seed = 1000 + i;
        if (sae_fixture_write_model(dir[i], &o, &err) ||
            sae_model_load(dir[i], &m[i], NULL, &err)) {
            CHECK(0, "many: fixture %zu: %s", i, err.msg);
            goto out;
        }
    }
    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "2", "--release", root, NULL};
    if (daemon_start(&d, NULL, args)) {
        CHECK(0, "many: saed --release of %d SAEs did not start", N_MANY);
        goto out;
    }
    long st;
    json_t *j = get_json(&d, "/v1/saes", &st);
    CHECK(st == 200 && json_array_size(json_object_get(j, "saes")) == N_MANY, "many: %ld, %zu SAEs",
          st, json_array_size(json_object_get(j, "saes")));
    json_decref(j);
    float x[D_IN];
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 81);
    char path[256], what[64], dig[64];
    for (size_t i = 0; i < N_MANY; i++) {
        snprintf(path, sizeof path, "/v1/saes/sae_%02zu/encode", i);
        snprintf(what, sizeof what, "many: sae_%02zu", i);
        j = post_json(&d, path, row_body(x, ""), &st, dig, sizeof dig);
        CHECK(st == 200 && !strcmp(dig, m[i]->weights_digest), "%s: %ld", what, st);
        check_row(m[i], x, json_array_get(json_object_get(j, "results"), 0), what);
        json_decref(j);
    }
    /* The last SAE loaded holds (at least) the 80th mapping. Its file
     * rewritten in place (same size, other bytes) must be refused, not
     * answered from pages that changed under it. */
    char w[800];
    snprintf(w, sizeof w, "%s/sae_weights.safetensors", dir[N_MANY - 1]);
    int fd = open(w, O_WRONLY);
    struct stat sb;
    unsigned char junk[256];
    memset(junk, 0x3f, sizeof junk);
    CHECK(fd >= 0 && fstat(fd, &sb) == 0 &&
              pwrite(fd, junk, sizeof junk, sb.st_size - (off_t)sizeof junk) == (ssize_t)sizeof junk,
          "many: rewrite in place");
    if (fd >= 0)
        close(fd);
    snprintf(path, sizeof path, "/v1/saes/sae_%02d/encode", N_MANY - 1);
    j = post_json(&d, path, row_body(x, ""), &st, NULL, 0);
    CHECK(st == 503 && err_code(j) && !strcmp(err_code(j), "weights_changed"),
          "many: the SAE rewritten in place refuses: %ld %s", st, err_code(j) ? err_code(j) : "");
    json_decref(j);
    for (size_t i = 0; i + 1 < N_MANY; i += 13) {
        snprintf(path, sizeof path, "/v1/saes/sae_%02zu/encode", i);
        snprintf(what, sizeof what, "many: sae_%02zu after", i);
        j = post_json(&d, path, row_body(x, ""), &st, NULL, 0);
        CHECK(st == 200, "%s: %ld", what, st);
        check_row(m[i], x, json_array_get(json_object_get(j, "results"), 0), what);
        json_decref(j);
    }
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "many: exit");
out:
    for (size_t i = 0; i < N_MANY; i++)
        sae_model_free(m[i]);
}

int main(void)
{
    if (!getenv("SAE_BIN") || setup()) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    test_refusals();
    struct daemon d;
    char i0[700], i1[700];
    snprintf(i0, sizeof i0, "%s=%s", rel_ids[0], idx0);
    snprintf(i1, sizeof i1, "%s=%s", rel_ids[1], idx1);
    const char *args[] = {"--quiet", "--threads", "2", "--release", rel, "--index", i0,
                          "--index", i1, "--model-name", "fixture-model", NULL};
    if (daemon_start(&d, NULL, args)) {
        fprintf(stderr, "saed --release did not start\n");
        return 1;
    }
    test_release(&d);
    test_fanout(&d);
    test_mixed(&d);
    test_search(&d);
    test_neuronpedia(&d);
    test_reload(&d);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "exit after SIGTERM");
    test_budget();
    test_many();
    http_thread_done();
    for (int i = 0; i < N_REL; i++)
        sae_model_free(models[i]);
    if (!h_failures())
        sae_fixture_rmtree(tmp);
    free(tmp);
    printf("saes: %d failed checks\n", h_failures());
    return h_failures() ? 1 : 0;
}
