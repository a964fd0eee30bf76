/* test_daemon.c: saed end to end. Real daemons on ephemeral loopback ports,
 * real HTTP (libcurl), fixture models written by the fixture writer, answers
 * checked against the core's naive double reference (reference.h).
 *
 *   routes      every route answers, /openapi.json lists every route
 *   errors      every status of CONTRACT 5's table, each with its JSON error
 *   formats     JSON, octet-stream and .npy (f4, f2) bodies, JSON and binary
 *               replies and gzip all give bit-identical results
 *   reference   encode (options, metrics, reconstruction) and decode against
 *               sae_ref_*, for a standard and a topk + layer_norm model
 *   batching    32 concurrent clients, batching on vs off
 *   reload      SIGHUP under load drops nothing; a bad file keeps the old model
 *   limits      503 queue full, 401 API key, total deadline, 431, cut bodies
 *   sigterm     in-flight requests finish, exit status 0
 *
 * Prints the measured batching-vs-alone difference for docs/PERFORMANCE.md. */
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/dtype.h"
#include "sae/encode.h"
#include "fixture.h"
#include "harness.h"
#include "sae/model.h"
#include "reference.h"

#define D_IN 64
#define D_SAE 256

static const char *JSON_CT[] = {"Content-Type: application/json", NULL};
static const char *OCTET_CT[] = {"Content-Type: application/octet-stream", NULL};
static const char *OCTET_BIN[] = {"Content-Type: application/octet-stream",
                                  "Accept: application/octet-stream", NULL};
static const char *JSON_BIN[] = {"Content-Type: application/json",
                                 "Accept: application/octet-stream", NULL};
static const char *NPY_CT[] = {"Content-Type: application/x-npy", NULL};

/* ---- request bodies ---- */

/* {"inputs": [[...], ...] <extra>} with %.9g floats (exact round trip). */
static char *rows_json(const float *x, size_t n, size_t d, const char *extra)
{
    size_t cap = 64 + n * d * 20 + (extra ? strlen(extra) : 0), len = 0;
    char *s = malloc(cap);
    len += (size_t)snprintf(s + len, cap - len, "{\"inputs\":[");
    for (size_t r = 0; r < n; r++) {
        s[len++] = r ? ',' : '[';
        if (r)
            s[len++] = '[';
        for (size_t c = 0; c < d; c++)
            len += (size_t)snprintf(s + len, cap - len, "%s%.9g", c ? "," : "",
                                    (double)x[r * d + c]);
        s[len++] = ']';
    }
    len += (size_t)snprintf(s + len, cap - len, "]%s%s}", extra ? "," : "", extra ? extra : "");
    return s;
}

/* A version 1.0 .npy of n x d values in descr ("<f4" or "<f2"), written here
 * rather than with core's writer so the daemon is checked against an
 * independent encoding of the format. */
static uint8_t *npy_bytes(const float *x, size_t n, size_t d, const char *descr, bool one_dim,
                          size_t *len)
{
    char dict[128];
    int dl = one_dim ? snprintf(dict, sizeof dict,
                                "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }",
                                descr, d)
                     : snprintf(dict, sizeof dict,
                                "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                                descr, n, d);
    size_t header = 10 + (size_t)dl + 1;
    size_t pad = (64 - header % 64) % 64;
    size_t hl = (size_t)dl + pad + 1;
    size_t es = descr[2] == '4' ? 4 : descr[2] == '2' ? 2 : 4;
    size_t total = 10 + hl + n * d * es;
    uint8_t *b = malloc(total);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)(hl & 0xff);
    b[9] = (uint8_t)(hl >> 8);
    memcpy(b + 10, dict, (size_t)dl);
    memset(b + 10 + dl, ' ', pad);
    b[10 + hl - 1] = '\n';
    uint8_t *p = b + 10 + hl;
    for (size_t i = 0; i < n * d; i++) {
        if (es == 4) {
            memcpy(p + 4 * i, &x[i], 4);
        } else {
            uint16_t h = sae_f32_to_f16(x[i]);
            memcpy(p + 2 * i, &h, 2);
        }
    }
    *len = total;
    return b;
}

/* ---- replies ---- */

/* Encode results as the client sees them. */
struct enc {
    sae_sparse s;
    uint32_t *l0;           /* (n) */
    double *mse, *fvu, *cosine;  /* (n) when metrics were asked */
    float *recon;           /* (n, d_in) when asked */
    size_t n;
};

/* Frees the arrays of a parsed reply. */
static void enc_free(struct enc *e)
{
    sae_sparse_free(&e->s);
    free(e->l0);
    free(e->mse);
    free(e->fvu);
    free(e->cosine);
    free(e->recon);
    memset(e, 0, sizeof *e);
}

/* Parses a JSON encode reply; 0 or -1. */
static int parse_enc_json(const char *body, size_t d_in, struct enc *e)
{
    memset(e, 0, sizeof *e);
    sae_sparse_init(&e->s);
    json_error_t je;
    json_t *root = json_loads(body, 0, &je);
    json_t *results = json_object_get(root, "results");
    if (!json_is_array(results)) {
        json_decref(root);
        return -1;
    }
    size_t n = json_array_size(results);
    e->n = n;
    e->l0 = calloc(n ? n : 1, sizeof *e->l0);
    uint32_t *idx = malloc(D_SAE * 16 * sizeof *idx);
    float *val = malloc(D_SAE * 16 * sizeof *val);
    int rc = 0;
    for (size_t r = 0; r < n && !rc; r++) {
        json_t *o = json_array_get(results, r);
        json_t *ji = json_object_get(o, "indices"), *jv = json_object_get(o, "values");
        size_t k = json_array_size(ji);
        if (!json_is_array(ji) || !json_is_array(jv) || k != json_array_size(jv) ||
            k > D_SAE * 16) {
            rc = -1;
            break;
        }
        for (size_t t = 0; t < k; t++) {
            idx[t] = (uint32_t)json_integer_value(json_array_get(ji, t));
            val[t] = (float)json_number_value(json_array_get(jv, t));
        }
        sae_error err;
        sae_sparse_push_row(&e->s, idx, val, k, &err);
        e->l0[r] = (uint32_t)json_integer_value(json_object_get(o, "l0"));
        if (json_object_get(o, "mse")) {
            if (!e->mse) {
                e->mse = calloc(n, sizeof *e->mse);
                e->fvu = calloc(n, sizeof *e->fvu);
                e->cosine = calloc(n, sizeof *e->cosine);
            }
            e->mse[r] = json_number_value(json_object_get(o, "mse"));
            e->fvu[r] = json_number_value(json_object_get(o, "fvu"));
            e->cosine[r] = json_number_value(json_object_get(o, "cosine"));
        }
        json_t *jr = json_object_get(o, "reconstruction");
        if (jr) {
            if (!e->recon)
                e->recon = calloc(n * d_in, sizeof *e->recon);
            if (json_array_size(jr) != d_in)
                rc = -1;
            for (size_t c = 0; c < d_in && !rc; c++)
                e->recon[r * d_in + c] = (float)json_number_value(json_array_get(jr, c));
        }
    }
    free(idx);
    free(val);
    json_decref(root);
    return rc;
}

/* Parses a binary encode reply (per row u32 count, u32 idx[], f32 val[]). */
static int parse_enc_bin(const uint8_t *p, size_t len, struct enc *e)
{
    memset(e, 0, sizeof *e);
    sae_sparse_init(&e->s);
    const uint8_t *end = p + len;
    while (p < end) {
        uint32_t n;
        if (end - p < 4)
            return -1;
        memcpy(&n, p, 4);
        p += 4;
        if ((size_t)(end - p) < 8 * (size_t)n)
            return -1;
        uint32_t *idx = malloc(4 * (size_t)n + 4);
        float *val = malloc(4 * (size_t)n + 4);
        memcpy(idx, p, 4 * (size_t)n);
        memcpy(val, p + 4 * (size_t)n, 4 * (size_t)n);
        sae_error err;
        sae_sparse_push_row(&e->s, idx, val, n, &err);
        free(idx);
        free(val);
        p += 8 * (size_t)n;
    }
    e->n = e->s.n_rows;
    return 0;
}

/* Bit-for-bit equality of two sparse results. */
static bool sparse_same(const sae_sparse *a, const sae_sparse *b)
{
    if (a->n_rows != b->n_rows || a->nnz != b->nnz)
        return false;
    if (memcmp(a->row_ptr, b->row_ptr, (a->n_rows + 1) * sizeof *a->row_ptr))
        return false;
    return !memcmp(a->idx, b->idx, a->nnz * sizeof *a->idx) &&
           !memcmp(a->val, b->val, a->nnz * sizeof *a->val);
}

/* POST /v1/encode with a JSON body; parses the reply into e. */
static long encode_json(const struct daemon *d, const float *x, size_t n, const char *extra,
                        struct enc *e, char *digest)
{
    char *body = rows_json(x, n, D_IN, extra);
    struct http_resp r;
    long st = http(d, "POST", "/v1/encode", body, strlen(body), JSON_CT, false, &r);
    free(body);
    memset(e, 0, sizeof *e);
    if (st == 200 && parse_enc_json(r.body, D_IN, e))
        st = -2;
    if (digest)
        snprintf(digest, 64, "%s", r.digest);
    http_free(&r);
    return st;
}

/* POST /v1/encode with an octet-stream body and a binary reply. */
static long encode_bin(const struct daemon *d, const float *x, size_t n, struct enc *e,
                       char *digest)
{
    struct http_resp r;
    long st = http(d, "POST", "/v1/encode", x, n * D_IN * sizeof *x, OCTET_BIN, false, &r);
    memset(e, 0, sizeof *e);
    if (st == 200 && parse_enc_bin((const uint8_t *)r.body, r.len, e))
        st = -2;
    if (digest)
        snprintf(digest, 64, "%s", r.digest);
    http_free(&r);
    return st;
}

/* ---- checks against the reference ---- */

/* Largest |f| of the reference row, for a scale-relative tolerance. */
static double row_scale(const double *f, size_t n)
{
    double s = 0;
    for (size_t j = 0; j < n; j++)
        if (fabs(f[j]) > s)
            s = fabs(f[j]);
    return s;
}

/* Checks one unfiltered encoded row (idx/val, cnt entries, l0) against the
 * double reference: every feature whose decision is clear (|margin| > tol)
 * is active in both or neither, values agree within tol, l0 counts the list,
 * and the list is in the contract's order. tol = 1e-5 of the row's largest
 * reference activation (float32 GEMM vs double). Returns false on mismatch. */
static bool row_matches_ref(const sae_model *m, const float *x, const uint32_t *idx,
                            const float *val, size_t cnt, uint32_t l0, const char *what)
{
    size_t ds = m->d_sae;
    double *f = calloc(ds, sizeof *f), *margin = calloc(ds, sizeof *margin);
    float *got = calloc(ds, sizeof *got);
    bool ok = true;
    sae_ref_encode_row(m, x, f, margin);
    double tol = 1e-5 * (1.0 + row_scale(f, ds));
    if (l0 != cnt) {
        ok = false;
        h_fail(__FILE__, __LINE__, "l0 == count", "%s: l0 %u but %zu entries", what, l0, cnt);
    }
    for (size_t t = 0; t < cnt; t++) {
        if (idx[t] >= ds) {
            ok = false;
            break;
        }
        got[idx[t]] = val[t];
        if (t > 0 && (val[t] > val[t - 1] || (val[t] == val[t - 1] && idx[t] < idx[t - 1]))) {
            ok = false;
            h_fail(__FILE__, __LINE__, "order", "%s: entries %zu,%zu out of order", what, t - 1,
                   t);
        }
    }
    for (size_t j = 0; j < ds && ok; j++) {
        bool clear = fabs(margin[j]) > tol;
        bool active_ref = f[j] > 0, active_got = got[j] != 0.0f;
        if (clear && active_ref != active_got) {
            ok = false;
            h_fail(__FILE__, __LINE__, "activity", "%s: feature %zu ref %g (margin %g) got %g",
                   what, j, f[j], margin[j], (double)got[j]);
        }
        if (active_got && fabs((double)got[j] - f[j]) > tol) {
            ok = false;
            h_fail(__FILE__, __LINE__, "value", "%s: feature %zu ref %.9g got %.9g (tol %g)",
                   what, j, f[j], (double)got[j], tol);
        }
    }
    free(f);
    free(margin);
    free(got);
    return ok;
}

/* ---- test setup ---- */

static char *tmp;
static char dir_a[512], dir_b[512], dir_live[512], dir_topk[512];
static sae_model *model_a, *model_b, *model_topk;
static const char *saed_common[] = {"--quiet", "--threads", "2", NULL};

/* Loads a model folder in process, as saed does, for the reference checks. */
static sae_model *load(const char *dir)
{
    sae_model *m = NULL;
    sae_error err;
    if (sae_model_load(dir, &m, NULL, &err)) {
        fprintf(stderr, "load %s: %s\n", dir, err.msg);
        return NULL;
    }
    return m;
}

/* Copies file src to dst through a temporary name and a rename, as a model
 * update on disk should be done (the daemon maps the old file). */
static int copy_file(const char *src, const char *dst)
{
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", dst);
    FILE *in = fopen(src, "rb"), *out = fopen(tmpname, "wb");
    if (!in || !out) {
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return -1;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    return rename(tmpname, dst);
}

/* Writes the models every test uses and loads them. */
static int setup(void)
{
    tmp = h_tmpdir("saed-it");
    snprintf(dir_a, sizeof dir_a, "%s/a", tmp);
    snprintf(dir_b, sizeof dir_b, "%s/b", tmp);
    snprintf(dir_live, sizeof dir_live, "%s/live", tmp);
    snprintf(dir_topk, sizeof dir_topk, "%s/topk", tmp);
    if (h_write_model(dir_a, D_IN, D_SAE, SAE_ARCH_STANDARD, SAE_NORM_NONE, 1) ||
        h_write_model(dir_b, D_IN, D_SAE, SAE_ARCH_STANDARD, SAE_NORM_NONE, 2) ||
        h_write_model(dir_live, D_IN, D_SAE, SAE_ARCH_STANDARD, SAE_NORM_NONE, 1) ||
        h_write_model(dir_topk, D_IN, D_SAE, SAE_ARCH_TOPK, SAE_NORM_LAYER_NORM, 3))
        return -1;
    model_a = load(dir_a);
    model_b = load(dir_b);
    model_topk = load(dir_topk);
    return model_a && model_b && model_topk ? 0 : -1;
}

/* ---- routes ---- */

static void test_routes(const struct daemon *d)
{
    struct http_resp r;
    CHECK(http(d, "GET", "/v1/health", NULL, 0, NULL, false, &r) == 200, "health %ld", r.status);
    CHECK(!strcmp(r.body, "{\"status\":\"ok\"}\n"), "health body %s", r.body);
    http_free(&r);
    CHECK(http(d, "HEAD", "/v1/health", NULL, 0, NULL, false, &r) == 200, "HEAD %ld", r.status);
    http_free(&r);

    CHECK(http(d, "GET", "/v1/model", NULL, 0, NULL, false, &r) == 200, "model %ld", r.status);
    json_t *j = json_loads(r.body, 0, NULL);
    CHECK(json_integer_value(json_object_get(j, "d_in")) == D_IN, "d_in");
    CHECK(json_integer_value(json_object_get(j, "d_sae")) == D_SAE, "d_sae");
    CHECK(!strcmp(json_string_value(json_object_get(j, "weights_digest")),
                  model_a->weights_digest),
          "digest %s", r.body);
    CHECK(!strcmp(json_string_value(json_object_get(j, "architecture")), "standard"), "arch");
    CHECK(!strcmp(json_string_value(json_object_get(j, "dtype")), "F32"), "dtype");
    CHECK(!strcmp(json_string_value(json_object_get(j, "model_name")), model_a->model_name),
          "model_name");
    CHECK(!strcmp(json_string_value(json_object_get(j, "hook_name")), model_a->hook_name),
          "hook_name");
    CHECK(json_is_null(json_object_get(j, "index")), "index null");
    json_decref(j);
    http_free(&r);

    CHECK(http(d, "GET", "/openapi.json", NULL, 0, NULL, true, &r) == 200, "openapi %ld",
          r.status);
    j = json_loads(r.body, JSON_REJECT_DUPLICATES, NULL);
    CHECK(j && !strncmp(json_string_value(json_object_get(j, "openapi")), "3.", 2),
          "openapi 3 document");
    json_t *paths = json_object_get(j, "paths");
    static const char *documented[] = {"/v1/health", "/v1/model", "/v1/encode", "/v1/decode",
                                       "/v1/features", "/v1/features/{i}",
                                       "/v1/features/{i}/examples",
                                       "/v1/features/{i}/examples/{kind}/{rank}",
                                       "/v1/features/{i}/vector",
                                       "/api/feature/{model}/{layer}/{i}", "/metrics",
                                       "/openapi.json", "/", "/features/{i}",
                                       "/features/{i}/examples/{kind}/{rank}", "/encode",
                                       "/model", "/text", "/search", "/saes/{id}",
                                       "/saes/{id}/features/{i}",
                                       "/saes/{id}/features/{i}/examples/{kind}/{rank}",
                                       "/saes/{id}/encode", "/saes/{id}/model",
                                       "/saes/{id}/text", "/assets/{name}"};
    for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++)
        CHECK(json_object_get(paths, documented[i]), "openapi lacks %s", documented[i]);
    json_decref(j);
    http_free(&r);

    CHECK(http(d, "GET", "/metrics", NULL, 0, NULL, false, &r) == 200, "metrics %ld", r.status);
    char want[128];
    snprintf(want, sizeof want, "weights_digest=\"%s\"", model_a->weights_digest);
    CHECK(strstr(r.body, want) && strstr(r.body, "saed_model_info{"), "info metric");
    CHECK(strstr(r.body, "saed_requests_total{route=\"/v1/health\",status=\"200\"}"),
          "requests by route and status");
    CHECK(strstr(r.body, "saed_request_duration_seconds_bucket{route=\"/v1/model\",le=\"+Inf\"}"),
          "latency histogram");
    CHECK(!strncmp(r.content_type, "text/plain", 10), "metrics content type %s",
          r.content_type);
    http_free(&r);

    static const char *no_index[] = {"/v1/features", "/v1/features/3",
                                     "/v1/features/3/examples", "/v1/features/3/vector",
                                     "/api/feature/fixture-model/blocks.0.hook_resid_pre/3"};
    for (size_t i = 0; i < 5; i++) {
        CHECK(http(d, "GET", no_index[i], NULL, 0, NULL, false, &r) == 404, "%s %ld",
              no_index[i], r.status);
        CHECK(strstr(r.body, "\"code\":\"no_index\""), "%s: %s", no_index[i], r.body);
        http_free(&r);
    }
}

/* Checks status and error code of one exchange. */
static void expect_error(const struct daemon *d, const char *method, const char *path,
                         const void *body, size_t len, const char *const *hdr, long status,
                         const char *code)
{
    struct http_resp r;
    long st = http(d, method, path, body, len, hdr, false, &r);
    char want[96];
    snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    CHECK(st == status, "%s %s: status %ld, want %ld (%s)", method, path, st, status, r.body);
    CHECK(!strncmp(r.body, want, strlen(want)), "%s %s: body %s, want code %s", method, path,
          r.body, code);
    CHECK(!strncmp(r.content_type, "application/json", 16), "error content type %s",
          r.content_type);
    if (status != 401 && status != 404 && status != 405 &&
        (!strcmp(path, "/v1/encode") || !strcmp(path, "/v1/decode")))
        CHECK(r.digest[0], "%s %s %ld: no X-SAE-Weights-Digest", method, path, status);
    if (status == 503)
        CHECK(r.retry_after[0], "503 without Retry-After");
    http_free(&r);
}

static void expect_json_error(const struct daemon *d, const char *path, const char *body,
                              long status, const char *code)
{
    expect_error(d, "POST", path, body, strlen(body), JSON_CT, status, code);
}

/* ---- errors (daemon started with --max-body-bytes 65536 --max-request-rows 64) ---- */

static void test_errors(const struct daemon *d)
{
    float row[D_IN];
    sae_fixture_random_rows(row, 1, D_IN, 1.0, 7);
    char *good = rows_json(row, 1, D_IN, NULL);

    expect_error(d, "GET", "/nope", NULL, 0, NULL, 404, "not_found");
    expect_error(d, "GET", "/v1/health/", NULL, 0, NULL, 404, "not_found");
    struct http_resp r;
    CHECK(http(d, "GET", "/v1/encode", NULL, 0, NULL, false, &r) == 405, "405");
    CHECK(strstr(r.allow, "POST"), "Allow: %s", r.allow);
    http_free(&r);
    expect_error(d, "DELETE", "/v1/model", NULL, 0, NULL, 405, "method_not_allowed");

    /* 400 */
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1, 2}", 400, "invalid_json");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1, 2,]]}", 400, "invalid_json");
    expect_json_error(d, "/v1/encode", "", 400, "invalid_json");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1e999]]}", 400, "number_out_of_range");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1]], \"inputs\": [[2]]}", 400,
                      "duplicate_key");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1]], \"colour\": 1}", 400,
                      "unknown_field");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[\"1\"]]}", 400, "wrong_type");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1]], \"top_k\": \"3\"}", 400,
                      "wrong_type");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1]], \"top_k\": 0}", 400,
                      "invalid_field");
    expect_json_error(d, "/v1/encode", "{\"input\": [1], \"inputs\": [[1]]}", 400,
                      "conflicting_fields");
    expect_json_error(d, "/v1/encode", "{\"top_k\": 3}", 400, "missing_field");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1]], \"include\": [\"colour\"]}", 400,
                      "invalid_field");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[NaN]]}", 400, "invalid_json");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1]]} []", 400, "invalid_json");
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[\"\xff\"]]}", 400, "invalid_json");
    float rows2[2 * D_IN];
    sae_fixture_random_rows(rows2, 2, D_IN, 1.0, 8);
    expect_error(d, "POST", "/v1/encode?top_k=x", rows2, sizeof rows2, OCTET_CT, 400,
                 "invalid_query");
    expect_error(d, "POST", "/v1/encode?colour=1", rows2, sizeof rows2, OCTET_CT, 400,
                 "invalid_query");
    expect_error(d, "POST", "/v1/encode?top_k=1", good, strlen(good), JSON_CT, 400,
                 "invalid_query");
    char *recon = rows_json(row, 1, D_IN, "\"include\":[\"reconstruction\"]");
    expect_error(d, "POST", "/v1/encode", recon, strlen(recon), JSON_BIN, 400, "invalid_field");
    free(recon);
    expect_json_error(d, "/v1/decode", "{\"inputs\": [{\"indices\": [1.5], \"values\": [1]}]}",
                      400, "wrong_type");
    expect_json_error(d, "/v1/decode", "{\"inputs\": [{\"indices\": [1]}]}", 400,
                      "missing_field");
    expect_json_error(d, "/v1/decode", "{\"rows\": []}", 400, "unknown_field");

    /* 413: Content-Length over max_body_bytes, and too many rows */
    size_t big = 70000;
    char *junk = calloc(1, big);
    expect_error(d, "POST", "/v1/encode", junk, big, OCTET_CT, 413, "body_too_large");
    float *rows65 = calloc(65 * D_IN, sizeof *rows65);
    expect_error(d, "POST", "/v1/encode", rows65, 65 * D_IN * sizeof(float), OCTET_CT, 413,
                 "too_many_rows");
    char *j65 = rows_json(rows65, 65, D_IN, NULL);
    expect_json_error(d, "/v1/encode", j65, 413, "too_many_rows");
    free(j65);
    free(rows65);

    /* 415 */
    static const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    expect_error(d, "POST", "/v1/encode", good, strlen(good), form, 415,
                 "unsupported_media_type");
    expect_error(d, "POST", "/v1/decode", good, strlen(good), NPY_CT, 415,
                 "unsupported_media_type");

    /* 422 */
    expect_json_error(d, "/v1/encode", "{\"inputs\": [[1, 2]]}", 422, "wrong_dimension");
    expect_json_error(d, "/v1/encode", "{\"input\": [1, 2]}", 422, "wrong_dimension");
    expect_json_error(d, "/v1/encode", "{\"inputs\": []}", 422, "empty_batch");
    char nonfinite[1200];
    snprintf(nonfinite, sizeof nonfinite, "{\"inputs\": [[1e39");
    for (int i = 1; i < D_IN; i++)
        strcat(nonfinite, ",0");
    strcat(nonfinite, "]]}");
    expect_json_error(d, "/v1/encode", nonfinite, 422, "non_finite");
    expect_error(d, "POST", "/v1/encode", rows2, 4 * D_IN + 4, OCTET_CT, 422,
                 "bad_binary_length");
    float bad[D_IN] = {0};
    bad[5] = NAN;
    expect_error(d, "POST", "/v1/encode", bad, sizeof bad, OCTET_CT, 422, "non_finite");
    bad[5] = INFINITY;
    expect_error(d, "POST", "/v1/encode", bad, sizeof bad, OCTET_CT, 422, "non_finite");
    size_t nl;
    uint8_t *npy = npy_bytes(rows2, 2, D_IN, "<i4", false, &nl);
    expect_error(d, "POST", "/v1/encode", npy, nl, NPY_CT, 422, "unsupported_npy");
    free(npy);
    npy = npy_bytes(rows2, 2, D_IN / 2, "<f4", false, &nl);
    expect_error(d, "POST", "/v1/encode", npy, nl, NPY_CT, 422, "wrong_dimension");
    free(npy);
    expect_error(d, "POST", "/v1/encode", "not npy at all", 14, NPY_CT, 422, "invalid_npy");
    expect_json_error(d, "/v1/decode", "{\"inputs\": [{\"indices\": [256], \"values\": [1]}]}",
                      422, "index_out_of_range");
    expect_json_error(d, "/v1/decode", "{\"inputs\": [{\"indices\": [-1], \"values\": [1]}]}",
                      422, "index_out_of_range");
    expect_json_error(d, "/v1/decode",
                      "{\"inputs\": [{\"indices\": [3, 3], \"values\": [1, 2]}]}", 422,
                      "duplicate_index");
    expect_json_error(d, "/v1/decode", "{\"inputs\": [{\"indices\": [3], \"values\": [1, 2]}]}",
                      422, "length_mismatch");
    expect_json_error(d, "/v1/decode", "{\"inputs\": [{\"indices\": [3], \"values\": [1e39]}]}",
                      422, "non_finite");
    expect_json_error(d, "/v1/decode", "{\"inputs\": []}", 422, "empty_batch");
    uint8_t trunc[12] = {2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    expect_error(d, "POST", "/v1/decode", trunc, sizeof trunc, OCTET_CT, 422,
                 "bad_binary_length");
    /* A huge but finite input overflows float32 inside the GEMM. */
    float huge[D_IN];
    for (int i = 0; i < D_IN; i++)
        huge[i] = 3e38f;
    expect_error(d, "POST", "/v1/encode", huge, sizeof huge, OCTET_CT, 422, "non_finite");

    /* The daemon is still fine after all that. */
    struct enc e;
    CHECK(encode_json(d, row, 1, NULL, &e, NULL) == 200, "encode after errors");
    enc_free(&e);
    free(good);
    free(junk);
}

/* The strict JSON reader, through the encode route: RFC 8259 exactly. Each
 * body is wrapped as {"input": [<64 copies of VALUE>] <TAIL>} or given whole. */
static void test_json_grammar(const struct daemon *d)
{
    static const struct {
        const char *value;      /* repeated D_IN times as the row, or NULL */
        const char *whole;      /* the whole body when value is NULL */
        long status;
        const char *code;
    } cases[] = {
        {"1E5", NULL, 200, NULL},
        {"-0", NULL, 200, NULL},
        {"0.5e-3", NULL, 200, NULL},
        {"1e-400", NULL, 200, NULL},                    /* underflows to 0: accepted */
        {"123456789012345678901234567890", NULL, 200, NULL},
        {"0.1000000000000000055511151231257827", NULL, 200, NULL},
        {"01", NULL, 400, "invalid_json"},
        {"-", NULL, 400, "invalid_json"},
        {"1.", NULL, 400, "invalid_json"},
        {".5", NULL, 400, "invalid_json"},
        {"+1", NULL, 400, "invalid_json"},
        {"1e", NULL, 400, "invalid_json"},
        {"Infinity", NULL, 400, "invalid_json"},
        {"0x10", NULL, 400, "invalid_json"},
        {"true", NULL, 400, "wrong_type"},
        {"null", NULL, 400, "wrong_type"},
        {"\"1\"", NULL, 400, "wrong_type"},
        {"[1]", NULL, 400, "wrong_type"},
        {"{}", NULL, 400, "wrong_type"},
        {"-1e309", NULL, 400, "number_out_of_range"},
        {"3.5e38", NULL, 422, "non_finite"},
        {NULL, "{\"\\u0069nput\": [], \"top_k\": 1}", 422, "wrong_dimension"},
        {NULL, "{\"input\": [], \"top\\u005fk\": 1, \"top_k\": 2}", 400, "duplicate_key"},
        {NULL, "{\"inputs\": [[1]],}", 400, "invalid_json"},
        {NULL, "{\"inputs\": [[1]] \"top_k\": 1}", 400, "invalid_json"},
        {NULL, "\xef\xbb\xbf{\"inputs\": [[1]]}", 400, "invalid_json"},
        {NULL, "{\"inputs\": [[1]], \"include\": [\"a\\ud800\"]}", 400, "invalid_json"},
        {NULL, "{\"inputs\": [[1]], \"include\": [\"\\ud83d\\ude00\"]}", 400, "invalid_field"},
        {NULL, "{\"inputs\": [[1]], \"include\": [\"a\tb\"]}", 400, "invalid_json"},
        {NULL, "{\"inputs\": [[1]], \"include\": [\"\\x\"]}", 400, "invalid_json"},
        {NULL, "{\"inputs\": [[1]], \"top_k\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
               "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
               "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 400, "invalid_json"},
        {NULL, "{\"inputs\": [[1]], \"top_k\": [[[[1]]]]}", 400, "wrong_type"},
        {NULL, "{\"inputs\": [[1]], \"top_k\": 3.0}", 400, "invalid_field"},
        {NULL, "{\"inputs\": [[1]], \"top_k\": -3}", 400, "invalid_field"},
        {NULL, "{\"inputs\": [[1]], \"threshold\": 1e39}", 400, "invalid_field"},
        {NULL, " \t\r\n{\"inputs\": [[1]]} \n", 422, "wrong_dimension"},
        {NULL, "{\"inputs\": [[1]]}{}", 400, "invalid_json"},
        {NULL, "{\"inputs\": [[1]], \"input\": [1, ", 400, "conflicting_fields"},
        {NULL, "{\"inputs\": [[1], [1, 2, 3], [1, }", 400, "invalid_json"},
        {NULL, "{\"inputs\": [[1, 2]], \"include\": [\"features\"]}", 422, "wrong_dimension"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body;
        if (cases[i].value) {
            size_t vl = strlen(cases[i].value);
            body = malloc(32 + D_IN * (vl + 1));
            strcpy(body, "{\"input\": [");
            for (int c = 0; c < D_IN; c++) {
                strcat(body, cases[i].value);
                if (c + 1 < D_IN)
                    strcat(body, ",");
            }
            strcat(body, "]}");
        } else {
            body = strdup(cases[i].whole);
        }
        struct http_resp r;
        long st = http(d, "POST", "/v1/encode", body, strlen(body), JSON_CT, false, &r);
        CHECK(st == cases[i].status, "case %zu (%s): status %ld, want %ld: %s", i,
              cases[i].value ? cases[i].value : cases[i].whole, st, cases[i].status, r.body);
        if (cases[i].code) {
            char want[96];
            snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\"", cases[i].code);
            CHECK(!strncmp(r.body, want, strlen(want)), "case %zu: %s, want %s", i, r.body,
                  cases[i].code);
        }
        http_free(&r);
        free(body);
    }
    /* include features with a valid row: the index is missing. */
    float row[D_IN];
    sae_fixture_random_rows(row, 1, D_IN, 1.0, 3);
    char *body = rows_json(row, 1, D_IN, "\"include\":[\"features\"]");
    expect_json_error(d, "/v1/encode", body, 404, "no_index");
    free(body);
}

/* 431 from libmicrohttpd for oversized headers; a chunked body over the cap
 * is cut; neither affects the next request. */
static void test_oversized(const struct daemon *d)
{
    size_t n = 200000;
    char *h = malloc(n + 32);
    strcpy(h, "X-Big: ");
    memset(h + 7, 'a', n);
    h[7 + n] = '\0';
    const char *hdr[] = {h, NULL};
    struct http_resp r;
    long st = http(d, "GET", "/v1/health", NULL, 0, hdr, false, &r);
    CHECK(st == 431 || st == 413, "oversized header: %ld", st);
    http_free(&r);
    free(h);

    /* A chunked body over the cap (64 KiB here) is read to its end and
     * refused with 413; one that goes on past twice the cap is cut. */
    size_t big = 300000;
    char *junk = calloc(1, big);
    static const char *chunked[] = {"Content-Type: application/octet-stream",
                                    "Transfer-Encoding: chunked", NULL};
    st = http(d, "POST", "/v1/encode", junk, 100000, chunked, false, &r);
    CHECK(st == 413 && r.body && strstr(r.body, "\"body_too_large\""),
          "chunked body over the cap: %ld %s", st, r.body ? r.body : "");
    http_free(&r);
    st = http(d, "POST", "/v1/encode", junk, big, chunked, false, &r);
    CHECK(st != 200, "chunked body far over the cap: %ld", st);
    http_free(&r);
    free(junk);
    CHECK(http(d, "GET", "/v1/health", NULL, 0, NULL, false, &r) == 200, "health after");
    http_free(&r);
    CHECK(http(d, "GET", "/metrics", NULL, 0, NULL, false, &r) == 200, "metrics");
    /* 2, or 3: libcurl sends a request again when the reused connection it
     * went out on was closed without a reply, as the cut one was. */
    const char *cut = strstr(r.body, "\nsaed_body_cut_total ");
    long n_cut = cut ? strtol(cut + 21, NULL, 10) : 0;
    CHECK(n_cut == 2 || n_cut == 3, "bodies over the cap counted: %ld", n_cut);
    http_free(&r);
}

/* ---- 300 connections open at once (the defaults hold at least 256) ---- */

static void test_connections(const struct daemon *d)
{
    enum { N = 300 };
    int fds[N];
    size_t open_ok = 0, answered = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *req = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] >= 0 && connect(fds[i], (struct sockaddr *)&sa, sizeof sa) == 0 &&
            write(fds[i], req, strlen(req)) == (ssize_t)strlen(req))
            open_ok++;
    }
    /* Every connection is still open when each one is answered. */
    for (int i = 0; i < N; i++) {
        char buf[512];
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        if (fds[i] >= 0 && poll(&p, 1, 10000) > 0 && read(fds[i], buf, sizeof buf) > 12 &&
            !strncmp(buf, "HTTP/1.1 200", 12))
            answered++;
    }
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    CHECK(open_ok == N && answered == N, "%zu connections opened, %zu answered of %d", open_ok,
          answered, N);
}

/* ---- formats: every body and reply format gives the same bits ---- */

static void test_formats(const struct daemon *d)
{
    enum { N = 5 };
    float x[N * D_IN];
    sae_fixture_random_rows(x, N, D_IN, 1.0, 11);
    /* Make every value exactly representable in float16, so the f2 .npy body
     * carries the same rows as the others. */
    for (size_t i = 0; i < N * D_IN; i++)
        x[i] = sae_f16_to_f32(sae_f32_to_f16(x[i]));

    struct enc ej, eb, e;
    char dj[64], db[64];
    CHECK(encode_json(d, x, N, NULL, &ej, dj) == 200, "json");
    CHECK(encode_bin(d, x, N, &eb, db) == 200, "binary");
    CHECK(ej.n == N && eb.n == N, "rows %zu %zu", ej.n, eb.n);
    CHECK(sparse_same(&ej.s, &eb.s), "JSON and binary results differ");
    CHECK(!strcmp(dj, model_a->weights_digest) && !strcmp(db, dj), "digest header %s %s", dj,
          db);

    /* JSON body, binary reply; binary body, JSON reply */
    char *body = rows_json(x, N, D_IN, NULL);
    struct http_resp r;
    CHECK(http(d, "POST", "/v1/encode", body, strlen(body), JSON_BIN, false, &r) == 200, "j->b");
    CHECK(!strcmp(r.content_type, "application/octet-stream"), "ct %s", r.content_type);
    parse_enc_bin((const uint8_t *)r.body, r.len, &e);
    CHECK(sparse_same(&e.s, &ej.s), "JSON body, binary reply differs");
    enc_free(&e);
    http_free(&r);
    CHECK(http(d, "POST", "/v1/encode", x, sizeof x, OCTET_CT, false, &r) == 200, "b->j");
    parse_enc_json(r.body, D_IN, &e);
    CHECK(sparse_same(&e.s, &ej.s), "binary body, JSON reply differs");
    enc_free(&e);
    http_free(&r);

    /* gzip (the reconstruction makes the reply large enough to be compressed) */
    free(body);
    body = rows_json(x, N, D_IN, "\"include\":[\"reconstruction\"]");
    struct http_resp rz;
    CHECK(http(d, "POST", "/v1/encode", body, strlen(body), JSON_CT, true, &rz) == 200, "gzip");
    CHECK(!strcmp(rz.content_encoding, "gzip"), "Content-Encoding '%s'", rz.content_encoding);
    CHECK(http(d, "POST", "/v1/encode", body, strlen(body), JSON_CT, false, &r) == 200, "plain");
    CHECK(!r.content_encoding[0], "unasked Content-Encoding '%s'", r.content_encoding);
    CHECK(rz.len == r.len && !memcmp(rz.body, r.body, r.len), "gzip reply differs");
    parse_enc_json(r.body, D_IN, &e);
    CHECK(sparse_same(&e.s, &ej.s), "reply with reconstruction differs");
    enc_free(&e);
    http_free(&r);
    http_free(&rz);
    free(body);

    /* .npy bodies: f4 2-D, f2 2-D, f4 1-D (one row) */
    static const char *descr[] = {"<f4", "<f2"};
    for (int k = 0; k < 2; k++) {
        size_t nl;
        uint8_t *npy = npy_bytes(x, N, D_IN, descr[k], false, &nl);
        CHECK(http(d, "POST", "/v1/encode", npy, nl, NPY_CT, false, &r) == 200, "npy %s: %s",
              descr[k], r.body);
        parse_enc_json(r.body, D_IN, &e);
        CHECK(sparse_same(&e.s, &ej.s), "npy %s differs", descr[k]);
        enc_free(&e);
        http_free(&r);
        free(npy);
    }
    /* One row: "inputs" with one row, "input", a 1-D .npy and an octet
     * body agree. (Not bit-for-bit with the same row inside a 5-row request:
     * a single row goes through sgemv, and OpenBLAS's sgemm rounds a row
     * differently depending on where it sits in its register tile.) */
    struct enc e1;
    CHECK(encode_json(d, x, 1, NULL, &e1, NULL) == 200, "one row");
    size_t nl;
    uint8_t *npy = npy_bytes(x, 1, D_IN, "<f4", true, &nl);
    CHECK(http(d, "POST", "/v1/encode", npy, nl, NPY_CT, false, &r) == 200, "npy 1-D");
    parse_enc_json(r.body, D_IN, &e);
    CHECK(sparse_same(&e.s, &e1.s), "npy 1-D row differs");
    enc_free(&e);
    http_free(&r);
    free(npy);
    CHECK(encode_bin(d, x, 1, &e, NULL) == 200, "one binary row");
    CHECK(sparse_same(&e.s, &e1.s), "binary one row differs");
    enc_free(&e);

    char *one = rows_json(x, 1, D_IN, NULL);
    char *single = malloc(strlen(one) + 8);
    sprintf(single, "{\"input\":%s", one + strlen("{\"inputs\":["));
    single[strlen(single) - 2] = '}';
    single[strlen(single) - 1] = '\0';
    CHECK(http(d, "POST", "/v1/encode", single, strlen(single), JSON_CT, false, &r) == 200,
          "input: %s", r.body);
    parse_enc_json(r.body, D_IN, &e);
    CHECK(sparse_same(&e.s, &e1.s), "input vs inputs[0]");
    enc_free(&e);
    enc_free(&e1);
    http_free(&r);
    free(one);
    free(single);
    enc_free(&ej);
    enc_free(&eb);
}

/* ---- reference ---- */

/* Encode with every option against the reference, and decode. */
static void test_reference(const struct daemon *d, const sae_model *m, uint64_t seed)
{
    enum { N = 16 };
    float x[N * D_IN];
    sae_fixture_random_rows(x, N, D_IN, 1.5, seed);
    struct enc full, e;
    CHECK(encode_json(d, x, N, "\"include\":[\"metrics\",\"reconstruction\"]", &full, NULL) ==
              200,
          "encode with metrics");
    CHECK(full.n == N && full.mse && full.recon, "metrics and reconstruction present");
    if (full.n != N || !full.mse || !full.recon) {
        enc_free(&full);
        return;
    }
    double *f = calloc(m->d_sae, sizeof *f), *xh = calloc(D_IN, sizeof *xh);
    double *dec = calloc(D_IN, sizeof *dec);
    for (size_t r = 0; r < N; r++) {
        size_t a = full.s.row_ptr[r], n = full.s.row_ptr[r + 1] - a;
        char what[32];
        snprintf(what, sizeof what, "row %zu", r);
        row_matches_ref(m, x + r * D_IN, full.s.idx + a, full.s.val + a, n, full.l0[r], what);
        sae_ref_encode_row(m, x + r * D_IN, f, NULL);
        sae_ref_reconstruct_row(m, x + r * D_IN, f, xh);
        double mse, fvu, cosine, scale = 0;
        sae_ref_metrics(x + r * D_IN, xh, D_IN, &mse, &fvu, &cosine);
        CHECK(fabs(full.mse[r] - mse) <= 1e-4 * mse + 1e-7, "%s mse %g ref %g", what,
              full.mse[r], mse);
        CHECK(fabs(full.fvu[r] - fvu) <= 1e-4 * fvu + 1e-7, "%s fvu %g ref %g", what,
              full.fvu[r], fvu);
        CHECK(fabs(full.cosine[r] - cosine) <= 1e-5, "%s cosine %g ref %g", what,
              full.cosine[r], cosine);
        for (size_t c = 0; c < D_IN; c++)
            scale = fmax(scale, fabs(xh[c]));
        for (size_t c = 0; c < D_IN; c++)
            CHECK(fabs(full.recon[r * D_IN + c] - xh[c]) <= 1e-5 * (1 + scale),
                  "%s recon[%zu] %g ref %g", what, c, (double)full.recon[r * D_IN + c], xh[c]);
    }

    /* top_k keeps the first k of the full list, threshold the values above it. */
    CHECK(encode_json(d, x, N, "\"top_k\":3", &e, NULL) == 200, "top_k");
    for (size_t r = 0; r < N && e.n == N; r++) {
        size_t a = full.s.row_ptr[r], n = full.s.row_ptr[r + 1] - a, k = n < 3 ? n : 3;
        size_t b = e.s.row_ptr[r];
        CHECK(e.s.row_ptr[r + 1] - b == k && !memcmp(e.s.idx + b, full.s.idx + a, 4 * k) &&
                  !memcmp(e.s.val + b, full.s.val + a, 4 * k) && e.l0[r] == full.l0[r],
              "top_k row %zu", r);
    }
    enc_free(&e);
    CHECK(encode_json(d, x, N, "\"threshold\":0.25,\"top_k\":5", &e, NULL) == 200, "threshold");
    for (size_t r = 0; r < N && e.n == N; r++) {
        size_t a = full.s.row_ptr[r], n = full.s.row_ptr[r + 1] - a, k = 0;
        while (k < n && k < 5 && full.s.val[a + k] > 0.25f)
            k++;
        size_t b = e.s.row_ptr[r];
        CHECK(e.s.row_ptr[r + 1] - b == k && !memcmp(e.s.idx + b, full.s.idx + a, 4 * k),
              "threshold row %zu", r);
    }
    enc_free(&e);
    struct http_resp hr;
    CHECK(http(d, "POST", "/v1/encode?top_k=3&threshold=0.25", x, sizeof x, OCTET_BIN, false,
               &hr) == 200,
          "query options");
    parse_enc_bin((const uint8_t *)hr.body, hr.len, &e);
    for (size_t r = 0; r < N && e.n == N; r++) {
        size_t a = full.s.row_ptr[r], n = full.s.row_ptr[r + 1] - a, k = 0;
        while (k < n && k < 3 && full.s.val[a + k] > 0.25f)
            k++;
        CHECK(e.s.row_ptr[r + 1] - e.s.row_ptr[r] == k &&
                  !memcmp(e.s.idx + e.s.row_ptr[r], full.s.idx + a, 4 * k),
              "query options row %zu", r);
    }
    enc_free(&e);
    http_free(&hr);

    /* decode the full lists, JSON and binary, against the reference */
    size_t cap = 64 + full.s.nnz * 40 + N * 40, len = 0;
    char *body = malloc(cap);
    len += (size_t)snprintf(body, cap, "{\"inputs\":[");
    size_t bin_len = 4 * N + 8 * full.s.nnz;
    uint8_t *bin = malloc(bin_len), *bp = bin;
    for (size_t r = 0; r < N; r++) {
        size_t a = full.s.row_ptr[r], n = full.s.row_ptr[r + 1] - a;
        len += (size_t)snprintf(body + len, cap - len, "%s{\"indices\":[", r ? "," : "");
        for (size_t t = 0; t < n; t++)
            len += (size_t)snprintf(body + len, cap - len, "%s%u", t ? "," : "",
                                    full.s.idx[a + t]);
        len += (size_t)snprintf(body + len, cap - len, "],\"values\":[");
        for (size_t t = 0; t < n; t++)
            len += (size_t)snprintf(body + len, cap - len, "%s%.9g", t ? "," : "",
                                    (double)full.s.val[a + t]);
        len += (size_t)snprintf(body + len, cap - len, "]}");
        uint32_t c32 = (uint32_t)n;
        memcpy(bp, &c32, 4);
        memcpy(bp + 4, full.s.idx + a, 4 * n);
        memcpy(bp + 4 + 4 * n, full.s.val + a, 4 * n);
        bp += 4 + 8 * n;
    }
    snprintf(body + len, cap - len, "]}");
    const char *space = sae_decode_is_normalised(m) ? "normalised" : "input";
    CHECK(http(d, "POST", "/v1/decode", body, strlen(body), JSON_CT, false, &hr) == 200,
          "decode: %s", hr.body);
    json_t *j = json_loads(hr.body, 0, NULL);
    json_t *res = json_object_get(j, "results");
    CHECK(json_array_size(res) == N, "decode rows");
    CHECK(!strcmp(json_string_value(json_object_get(j, "space")), space), "space field");
    CHECK(!strcmp(hr.space, space), "X-SAE-Space '%s'", hr.space);
    CHECK(hr.digest[0], "decode digest header");
    struct http_resp hb;
    CHECK(http(d, "POST", "/v1/decode", bin, bin_len, OCTET_BIN, false, &hb) == 200,
          "binary decode");
    CHECK(hb.len == N * D_IN * sizeof(float), "binary decode size %zu", hb.len);
    for (size_t r = 0; r < N && json_array_size(res) == N && hb.len == N * D_IN * 4; r++) {
        size_t a = full.s.row_ptr[r], n = full.s.row_ptr[r + 1] - a;
        sae_ref_decode_sparse(m, full.s.idx + a, full.s.val + a, n, dec);
        double scale = 0;
        for (size_t c = 0; c < D_IN; c++)
            scale = fmax(scale, fabs(dec[c]));
        json_t *row = json_array_get(res, r);
        for (size_t c = 0; c < D_IN; c++) {
            float jv = (float)json_number_value(json_array_get(row, c)), bv;
            memcpy(&bv, hb.body + 4 * (r * D_IN + c), 4);
            CHECK(fabs(jv - dec[c]) <= 1e-5 * (1 + scale), "decode row %zu col %zu %g ref %g",
                  r, c, (double)jv, dec[c]);
            CHECK(jv == bv, "JSON and binary decode differ at %zu,%zu", r, c);
        }
    }
    json_decref(j);
    http_free(&hr);
    http_free(&hb);
    free(body);
    free(bin);
    free(f);
    free(xh);
    free(dec);
    enc_free(&full);
}

/* ---- batching: 32 concurrent clients, batching on vs off ---- */

#define CLIENTS 32
#define PER_CLIENT 6

/* One client's share of the requests. */
struct client {
    const struct daemon *d;
    const float *x;         /* (rows of all its requests, D_IN) */
    size_t n[PER_CLIENT];   /* rows per request */
    struct enc out[PER_CLIENT];
    long status[PER_CLIENT];
};

/* One client of test_batching: its requests, one after another. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    const float *x = c->x;
    for (size_t i = 0; i < PER_CLIENT; i++) {
        c->status[i] = encode_bin(c->d, x, c->n[i], &c->out[i], NULL);
        x += c->n[i] * D_IN;
    }
    http_thread_done();
    return NULL;
}

/* Runs every client against d at once. */
static void run_clients(const struct daemon *d, struct client *cl)
{
    pthread_t t[CLIENTS];
    for (size_t i = 0; i < CLIENTS; i++) {
        cl[i].d = d;
        pthread_create(&t[i], NULL, client_main, &cl[i]);
    }
    for (size_t i = 0; i < CLIENTS; i++)
        pthread_join(t[i], NULL);
}

/* Compares one row encoded in a batch (a) and alone (b). Both GEMMs are
 * within gamma_K * S_j of the exact pre-activation of feature j, where
 * S_j = sum_k |x'_k w_kj| (the classic dot-product error bound; it holds for
 * any summation order), and the bias add rounds once more; so
 * |a_j - b_j| <= 2 gamma_K S_j + u (|a_j| + |b_j|) must hold. The figures
 * returned: the largest |a_j - b_j| / S_j (the dot product's relative
 * difference) and the largest |a_j - b_j| over the row's largest value.
 * *exact says whether the two lists are bit-identical. */
static void compare_rows(const sae_model *m, const float *x, const uint32_t *ia,
                         const float *va, size_t na, const uint32_t *ib, const float *vb,
                         size_t nb, bool *exact, double *rel_dot, double *rel_row)
{
    size_t ds = m->d_sae, di = m->d_in;
    double *a = calloc(ds, sizeof *a), *b = calloc(ds, sizeof *b);
    for (size_t t = 0; t < na; t++)
        a[ia[t]] = va[t];
    for (size_t t = 0; t < nb; t++)
        b[ib[t]] = vb[t];
    *exact = na == nb && !memcmp(ia, ib, 4 * na) && !memcmp(va, vb, 4 * na);
    const double u = ldexp(1.0, -24), gamma = (double)di * u / (1.0 - (double)di * u);
    double maxd = 0, maxv = 0, maxr = 0;
    for (size_t j = 0; j < ds; j++) {
        if (a[j] == 0 && b[j] == 0)
            continue;
        double sj = 0;
        for (size_t k = 0; k < di; k++) {
            double xk = (double)x[k] - (m->apply_b_dec_to_input ? (double)m->b_dec[k] : 0.0);
            sj += fabs(xk * m->w_enc[k * ds + j]);
        }
        double d = fabs(a[j] - b[j]), bound = 2 * gamma * sj + u * (fabs(a[j]) + fabs(b[j]));
        CHECK(d <= bound, "feature %zu: batched %.9g alone %.9g bound %.3g", j, a[j], b[j],
              bound);
        maxd = fmax(maxd, d);
        maxv = fmax(maxv, fmax(fabs(a[j]), fabs(b[j])));
        if (sj > 0)
            maxr = fmax(maxr, d / sj);
    }
    free(a);
    free(b);
    *rel_dot = maxr;
    *rel_row = maxv > 0 ? maxd / maxv : 0;
}

/* Reads one sample of the Prometheus text (first line starting with name). */
static double metric(const struct daemon *d, const char *name, const char *const *hdr)
{
    struct http_resp r;
    double v = -1;
    if (http(d, "GET", "/metrics", NULL, 0, hdr, false, &r) == 200) {
        for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
            if (!strncmp(p, name, strlen(name)) && p[strlen(name)] == ' ') {
                v = atof(p + strlen(name) + 1);
                break;
            }
    }
    http_free(&r);
    return v;
}

/* The same requests from 32 concurrent clients to a batching daemon and to
 * one with --batching off: every row within the float32 bound, and batches
 * really formed. */
static void test_batching(const struct daemon *on, const struct daemon *off)
{
    struct client *won = calloc(CLIENTS, sizeof *won), *woff = calloc(CLIENTS, sizeof *woff);
    float *x = malloc(CLIENTS * PER_CLIENT * 3 * D_IN * sizeof *x);
    sae_fixture_random_rows(x, CLIENTS * PER_CLIENT * 3, D_IN, 1.0, 31);
    uint64_t seed = 5;
    for (size_t i = 0; i < CLIENTS; i++) {
        won[i].x = woff[i].x = x + i * PER_CLIENT * 3 * D_IN;
        for (size_t k = 0; k < PER_CLIENT; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            won[i].n[k] = woff[i].n[k] = 1 + (size_t)((seed >> 33) % 3);
        }
    }
    double before = metric(on, "saed_batch_rows_count", NULL);
    double waited_before = metric(on, "saed_batch_wait_seconds_count", NULL);
    double wait_sum_before = metric(on, "saed_batch_wait_seconds_sum", NULL);
    run_clients(off, woff);
    run_clients(on, won);
    double gemms = metric(on, "saed_batch_rows_count", NULL) - before;
    double waited = metric(on, "saed_batch_wait_seconds_count", NULL) - waited_before;
    double wait_sum = metric(on, "saed_batch_wait_seconds_sum", NULL) - wait_sum_before;

    size_t rows = 0, exact = 0;
    double worst = 0, worst_row = 0;
    for (size_t i = 0; i < CLIENTS; i++) {
        const float *xr = won[i].x;
        for (size_t k = 0; k < PER_CLIENT; k++) {
            CHECK(won[i].status[k] == 200 && woff[i].status[k] == 200, "client %zu req %zu: %ld %ld",
                  i, k, won[i].status[k], woff[i].status[k]);
            const sae_sparse *a = &won[i].out[k].s, *b = &woff[i].out[k].s;
            if (won[i].status[k] != 200 || woff[i].status[k] != 200 ||
                a->n_rows != won[i].n[k] || b->n_rows != won[i].n[k]) {
                CHECK(0, "client %zu req %zu: wrong row count", i, k);
                continue;
            }
            for (size_t r = 0; r < won[i].n[k]; r++) {
                bool ex;
                double rel, rel_row;
                size_t a0 = a->row_ptr[r], b0 = b->row_ptr[r];
                compare_rows(model_a, xr + r * D_IN, a->idx + a0, a->val + a0,
                             a->row_ptr[r + 1] - a0, b->idx + b0, b->val + b0,
                             b->row_ptr[r + 1] - b0, &ex, &rel, &rel_row);
                worst = fmax(worst, rel);
                worst_row = fmax(worst_row, rel_row);
                exact += ex;
                rows++;
            }
            xr += won[i].n[k] * D_IN;
            enc_free(&won[i].out[k]);
            enc_free(&woff[i].out[k]);
        }
    }
    CHECK(gemms > 0 && gemms < (double)rows, "batching formed no batch: %g GEMMs for %zu rows",
          gemms, rows);
    CHECK(worst <= 1e-6, "batched vs alone differ by %.3g of sum |x'w|", worst);
    /* Every row's arrival-to-GEMM time is counted, once. */
    CHECK(waited == (double)rows && wait_sum > 0,
          "saed_batch_wait_seconds counted %g rows (sum %g s) for %zu rows encoded", waited,
          wait_sum, rows);
    printf("batching: %zu rows from %d clients in %g GEMMs (%.1f rows/GEMM); %zu rows "
           "bit-identical to batching off, all within the float32 dot-product bound; worst "
           "|difference| %.3g of sum_k |x'_k w_kj|, %.3g of the row's largest value\n",
           rows, CLIENTS, gemms, (double)rows / gemms, exact, worst, worst_row);
    free(won);
    free(woff);
    free(x);
}

/* ---- reload under load ---- */

struct loader {
    const struct daemon *d;
    uint64_t seed;
    atomic_bool *stop;
    size_t sent, ok, from_a, from_b;
};

/* A client of test_reload: requests until told to stop, each answer checked
 * against the reference of the model its digest header names. */
static void *loader_main(void *arg)
{
    struct loader *l = arg;
    float x[2 * D_IN];
    while (!atomic_load(l->stop)) {
        size_t n = 1 + l->sent % 2;
        sae_fixture_random_rows(x, n, D_IN, 1.0, l->seed + l->sent);
        struct enc e;
        char digest[64];
        long st = encode_json(l->d, x, n, NULL, &e, digest);
        l->sent++;
        CHECK(st == 200, "request during reload: %ld", st);
        const sae_model *m = !strcmp(digest, model_a->weights_digest)   ? model_a
                             : !strcmp(digest, model_b->weights_digest) ? model_b
                                                                        : NULL;
        CHECK(m != NULL || st != 200, "unknown digest '%s'", digest);
        if (st == 200 && m && e.n == n) {
            bool good = true;
            for (size_t r = 0; r < n; r++) {
                size_t a = e.s.row_ptr[r];
                good &= row_matches_ref(m, x + r * D_IN, e.s.idx + a, e.s.val + a,
                                        e.s.row_ptr[r + 1] - a, e.l0[r], "during reload");
            }
            l->ok += good;
            l->from_a += m == model_a;
            l->from_b += m == model_b;
        }
        enc_free(&e);
    }
    http_thread_done();
    return NULL;
}

/* Waits until the metric, read with headers hdr (NULL: none), reaches want
 * (or 10 s pass); returns its value. */
static double wait_metric_with(const struct daemon *d, const char *name, double want,
                               const char *const *hdr)
{
    double v = -1, until = now_ms() + 10000;
    while (now_ms() < until && (v = metric(d, name, hdr)) < want)
        usleep(20000);
    return v;
}

/* wait_metric_with on a daemon without an API key. */
static double wait_metric(const struct daemon *d, const char *name, double want)
{
    return wait_metric_with(d, name, want, NULL);
}

/* Waits until the daemon has encoded `more` rows beyond what it had when
 * called (or 10 s pass): the clients were served in between, however fast or
 * slow the machine. */
static void wait_more_rows(const struct daemon *d, double more)
{
    const char *name = "saed_encoded_rows_total";
    wait_metric(d, name, metric(d, name, NULL) + more);
}

/* Six SIGHUPs swapping the weights under 8 busy clients, then one with a
 * broken file: no request fails or gets a wrong answer. */
static void test_reload(void)
{
    struct daemon d;
    if (daemon_start(&d, dir_live, saed_common)) {
        CHECK(0, "reload daemon did not start");
        return;
    }
    char live_w[600], a_w[600], b_w[600];
    snprintf(live_w, sizeof live_w, "%s/sae_weights.safetensors", dir_live);
    snprintf(a_w, sizeof a_w, "%s/sae_weights.safetensors", dir_a);
    snprintf(b_w, sizeof b_w, "%s/sae_weights.safetensors", dir_b);

    enum { LOADERS = 8, RELOADS = 6 };
    atomic_bool stop;
    atomic_init(&stop, false);
    struct loader l[LOADERS];
    pthread_t t[LOADERS];
    for (size_t i = 0; i < LOADERS; i++) {
        l[i] = (struct loader){.d = &d, .seed = 1000 * (i + 1), .stop = &stop};
        pthread_create(&t[i], NULL, loader_main, &l[i]);
    }
    /* Each SIGHUP waits for the one before it to be counted: two sent while
     * one reload runs would be one pending signal (POSIX merges them), and a
     * slow machine (ASan) then counts fewer reloads than were sent. */
    for (int i = 0; i < RELOADS; i++) {
        wait_more_rows(&d, 4 * LOADERS);
        CHECK(copy_file(i % 2 == 0 ? b_w : a_w, live_w) == 0, "swap weights");
        daemon_signal(&d, SIGHUP);
        CHECK(wait_metric(&d, "saed_reloads_total{result=\"ok\"}", i + 1) == i + 1,
              "reload %d counted", i + 1);
    }
    wait_more_rows(&d, 4 * LOADERS);

    /* A broken file: the old model keeps serving, the failure is counted. */
    FILE *f = fopen("broken.tmp", "wb");
    if (f) {
        fputs("this is not a safetensors file", f);
        fclose(f);
    }
    CHECK(copy_file("broken.tmp", live_w) == 0, "write broken weights");
    remove("broken.tmp");
    daemon_signal(&d, SIGHUP);
    CHECK(wait_metric(&d, "saed_reloads_total{result=\"failed\"}", 1) == 1, "failure counted");
    wait_more_rows(&d, 4 * LOADERS);
    atomic_store(&stop, true);
    size_t sent = 0, ok = 0, fa = 0, fb = 0;
    for (size_t i = 0; i < LOADERS; i++) {
        pthread_join(t[i], NULL);
        sent += l[i].sent;
        ok += l[i].ok;
        fa += l[i].from_a;
        fb += l[i].from_b;
    }
    CHECK(ok == sent && sent > 0, "%zu of %zu requests right during %d reloads", ok, sent,
          RELOADS);
    CHECK(fa > 0 && fb > 0, "answers from both models: %zu %zu", fa, fb);
    CHECK(daemon_log_has(&d, "reload failed, still serving weights"), "failure logged");
    struct enc e;
    char digest[64];
    float x[D_IN];
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 99);
    CHECK(encode_json(&d, x, 1, NULL, &e, digest) == 200 &&
              !strcmp(digest, model_a->weights_digest),
          "old model still serving after a failed reload: %s", digest);
    enc_free(&e);
    printf("reload: %zu requests during %d reloads and 1 failed reload, all answered right "
           "(%zu from A, %zu from B)\n",
           sent, RELOADS, fa, fb);
    CHECK(copy_file(a_w, live_w) == 0, "restore weights");
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "reload daemon exit status");
}

/* ---- limits: API key, queue full, deadline; then SIGTERM drain ---- */

static const char *KEY_JSON[] = {"Content-Type: application/json",
                                 "Authorization: Bearer s3cret", NULL};
static const char *KEY_ONLY[] = {"Authorization: Bearer s3cret", NULL};

/* The daemon's in-flight request count once the requests before have left:
 * a client holds its reply a moment before saed's completion callback counts
 * the request out, so on a fast machine a count read at once is one too
 * high, and a later wait for "base + 1" never comes. Polls (10 s at most)
 * until the count is 1, the GET /metrics that reads it: nothing else is in
 * flight between these sequential tests. */
static double inflight_settled(const struct daemon *d)
{
    double v = -1, until = now_ms() + 10000;
    while (now_ms() < until && (v = metric(d, "saed_inflight_requests", KEY_ONLY)) > 1)
        usleep(20000);
    return v;
}

/* One encode request run from its own thread, and its status. */
struct slow {
    const struct daemon *d;
    size_t rows;
    long status;
    atomic_bool done;   /* status is set */
};

/* One encode request with the API key, from its own thread. */
static void *slow_main(void *arg)
{
    struct slow *s = arg;
    float *x = calloc(s->rows * D_IN, sizeof *x);
    sae_fixture_random_rows(x, s->rows, D_IN, 1.0, 77 + s->rows);
    char *body = rows_json(x, s->rows, D_IN, NULL);
    struct http_resp r;
    s->status = http(s->d, "POST", "/v1/encode", body, strlen(body), KEY_JSON, false, &r);
    atomic_store(&s->done, true);
    http_free(&r);
    free(body);
    free(x);
    http_thread_done();
    return NULL;
}

/* The API key guards what the contract names and nothing else. */
static void test_auth(const struct daemon *d)
{
    static const char *wrong[] = {"Authorization: Bearer s3cres", NULL};
    static const char *basic[] = {"Authorization: Basic czNjcmV0", NULL};
    static const char *longer[] = {"Authorization: Bearer s3cret!", NULL};
    expect_error(d, "GET", "/v1/model", NULL, 0, NULL, 401, "unauthorized");
    expect_error(d, "GET", "/v1/model", NULL, 0, wrong, 401, "unauthorized");
    expect_error(d, "GET", "/v1/model", NULL, 0, basic, 401, "unauthorized");
    expect_error(d, "GET", "/v1/model", NULL, 0, longer, 401, "unauthorized");
    expect_error(d, "GET", "/metrics", NULL, 0, NULL, 401, "unauthorized");
    expect_error(d, "GET", "/v1/features/1", NULL, 0, NULL, 401, "unauthorized");
    expect_error(d, "POST", "/v1/encode", "{}", 2, JSON_CT, 401, "unauthorized");
    struct http_resp r;
    CHECK(http(d, "GET", "/v1/model", NULL, 0, KEY_ONLY, false, &r) == 200, "with key %ld",
          r.status);
    http_free(&r);
    CHECK(http(d, "GET", "/v1/health", NULL, 0, NULL, false, &r) == 200, "health is open");
    http_free(&r);
    CHECK(http(d, "GET", "/openapi.json", NULL, 0, NULL, false, &r) == 200, "openapi is open");
    http_free(&r);

    /* CORS: only the configured origin is echoed; a preflight needs no key. */
    static const char *ok_origin[] = {"Origin: http://example.org",
                                      "Authorization: Bearer s3cret", NULL};
    static const char *bad_origin[] = {"Origin: http://evil.example",
                                       "Authorization: Bearer s3cret", NULL};
    static const char *preflight[] = {"Origin: http://example.org",
                                      "Access-Control-Request-Method: POST", NULL};
    CHECK(http(d, "GET", "/v1/model", NULL, 0, ok_origin, false, &r) == 200, "cors get");
    CHECK(!strcmp(r.cors, "http://example.org"), "Allow-Origin '%s'", r.cors);
    http_free(&r);
    CHECK(http(d, "GET", "/v1/model", NULL, 0, bad_origin, false, &r) == 200, "cors other");
    CHECK(!r.cors[0], "Allow-Origin for another origin: '%s'", r.cors);
    CHECK(!strcmp(r.vary, "Origin"), "Vary for another origin: '%s'", r.vary);
    http_free(&r);
    CHECK(http(d, "OPTIONS", "/v1/encode", NULL, 0, preflight, false, &r) == 204, "preflight %ld",
          r.status);
    CHECK(!strcmp(r.cors, "http://example.org") && strstr(r.cors_methods, "POST"),
          "preflight headers '%s' '%s'", r.cors, r.cors_methods);
    http_free(&r);
}

/* Opens a connection and sends the headers of a request for target with a
 * content_length-byte body, and its first byte "{". */
static int request_open(const struct daemon *d, const char *target, const char *type,
                        unsigned long content_length)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect");
    char head[512];
    snprintf(head, sizeof head,
             "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
             "Authorization: Bearer s3cret\r\nContent-Length: %lu\r\n\r\n{",
             target, type, content_length);
    CHECK(write(fd, head, strlen(head)) == (ssize_t)strlen(head), "write");
    return fd;
}

/* What fd gives within ms milliseconds, NUL-terminated in out ("" if nothing). */
static void read_within(int fd, int ms, char *out, size_t cap)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n = poll(&p, 1, ms) == 1 ? read(fd, out, cap - 1) : -1;
    out[n > 0 ? n : 0] = '\0';
}

/* An encode request "on its way" whose body never completes, which makes a
 * gathering worker wait (up to max_batch_wait_us) for its rows. */
static int trickle_open(const struct daemon *d)
{
    return request_open(d, "/v1/encode", "application/json", 1000);
}

/* Content negotiation: the binary reply only when Accept prefers it to JSON;
 * a Content-Type with junk after its media type is not that type. */
static void test_negotiation(const struct daemon *d)
{
    float x[D_IN];
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 8);
    static const struct {
        const char *accept;
        bool binary;
    } cases[] = {
        {"Accept: application/octet-stream", true},
        {"Accept: application/json, application/octet-stream", false},
        {"Accept: application/octet-stream, application/json", true},
        {"Accept: application/json;q=0.5, application/octet-stream", true},
        {"Accept: application/octet-stream;q=0.2, application/json;q=0.9", false},
        {"Accept: application/octet-stream;q=0", false},
        {"Accept: */*", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *hdr[] = {"Content-Type: application/octet-stream", cases[i].accept, NULL};
        struct http_resp r;
        long st = http(d, "POST", "/v1/encode", x, sizeof x, hdr, false, &r);
        const char *want = cases[i].binary ? "application/octet-stream" : "application/json";
        CHECK(st == 200 && !strncmp(r.content_type, want, strlen(want)), "%s: %ld %s",
              cases[i].accept, st, r.content_type);
        http_free(&r);
    }
    const char *junk[] = {"Content-Type: application/json garbage", NULL};
    char *body = rows_json(x, 1, D_IN, NULL);
    expect_error(d, "POST", "/v1/encode", body, strlen(body), junk, 415,
                 "unsupported_media_type");
    const char *params[] = {"Content-Type: application/json ; charset=utf-8", NULL};
    struct http_resp r;
    CHECK(http(d, "POST", "/v1/encode", body, strlen(body), params, false, &r) == 200,
          "a media type with parameters: %ld", r.status);
    http_free(&r);
    free(body);
}

/* With a body budget below 64 KiB, a chunked body is reserved at most
 * max_body_bytes + 1 to start with (not 64 KiB, which would refuse every
 * chunked request however small). */
static void test_small_budget(void)
{
    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "1", "--max-body-bytes", "4096",
                          "--max-body-total-bytes", "10000", NULL};
    if (daemon_start(&d, dir_a, args)) {
        CHECK(0, "small-budget daemon did not start");
        return;
    }
    float x[D_IN];
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 9);
    static const char *chunked[] = {"Content-Type: application/octet-stream",
                                    "Transfer-Encoding: chunked", NULL};
    struct http_resp r;
    CHECK(http(&d, "POST", "/v1/encode", x, sizeof x, chunked, false, &r) == 200,
          "a small chunked body under a small budget: %ld %s", r.status, r.body ? r.body : "");
    http_free(&r);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "small-budget daemon exit status");
}

/* Sends the headers of a request with a 1000-byte body and one byte of it;
 * returns what comes back within 2 s (the body never completes). */
static void early_reply(const struct daemon *d, const char *target, const char *type, char *out,
                        size_t cap)
{
    int fd = request_open(d, target, type, 1000);
    read_within(fd, 2000, out, cap);
    close(fd);
}

/* A mistake in the query is answered from the headers, before the body. */
static void test_query_early(const struct daemon *d)
{
    static const struct {
        const char *target, *type, *want;
    } cases[] = {
        {"/v1/encode?top_k=0", "application/octet-stream", "top_k"},
        {"/v1/encode?top_k=99999999999999999999", "application/octet-stream", "top_k"},
        {"/v1/encode?include=bogus", "application/octet-stream", "bogus"},
        {"/v1/encode?top_k=1", "application/json", "with a JSON body"},
        {"/v1/decode?x=1", "application/json", "decode has no options"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char reply[2048];
        early_reply(d, cases[i].target, cases[i].type, reply, sizeof reply);
        CHECK(strstr(reply, " 400 ") && strstr(reply, "\"invalid_query\"") &&
                  strstr(reply, cases[i].want),
              "%s before its body: %.200s", cases[i].target, reply);
    }
}

/* The daemon holds at most 150000 bytes of request bodies at once
 * (max_body_total_bytes): with two 60000-byte bodies arriving, a third is
 * refused from its headers with 503 and Retry-After; once they are gone, the
 * same request is taken. */
static void test_body_budget(const struct daemon *d)
{
    const char *enc = "/v1/encode", *json = "application/json";
    double base = inflight_settled(d);
    int a = request_open(d, enc, json, 60000), b = request_open(d, enc, json, 60000);
    /* Both bodies have begun (and hold their room) before the third. */
    wait_metric_with(d, "saed_inflight_requests", base + 2, KEY_ONLY);
    int c = request_open(d, enc, json, 60000);
    char reply[2048];
    read_within(c, 2000, reply, sizeof reply);
    CHECK(strstr(reply, " 503 ") && strstr(reply, "Retry-After") &&
              strstr(reply, "max_body_total_bytes"),
          "a body past max_body_total_bytes: %.200s", reply);
    close(c);
    close(a);
    close(b);
    float x[D_IN];
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 6);
    char *body = rows_json(x, 1, D_IN, NULL);
    /* The reaper closes the two abandoned requests' sides and their room
     * comes back: polled, up to 10 s. */
    long st = 0;
    for (double until = now_ms() + 10000; st != 200 && now_ms() < until;) {
        struct http_resp r;
        st = http(d, "POST", "/v1/encode", body, strlen(body), KEY_JSON, false, &r);
        http_free(&r);
        if (st != 200)
            usleep(20000);
    }
    CHECK(st == 200, "an encode once the bodies are gone: %ld", st);
    free(body);
}

/* The encode workers saed says it runs: build_info's workers label, or -1. */
static int build_workers(const struct daemon *d)
{
    struct http_resp r;
    int n = -1;
    const char *w;
    if (http(d, "GET", "/metrics", NULL, 0, KEY_ONLY, false, &r) == 200 && r.body &&
        (w = strstr(r.body, "saed_build_info{")) && (w = strstr(w, "workers=\"")))
        n = atoi(w + strlen("workers=\""));
    http_free(&r);
    return n;
}

/* The encode queue full, with no clock: d has max_queue_rows 64. Every
 * encode worker (threads "saed-encode") is held still while idle (ptrace,
 * harness.h), since any of them could take the job: a 64-row request then
 * stays on the queue (saed_queue_rows reads 64, polled) until the test lets
 * them go, and a 1-row request is refused meanwhile, at once: 503
 * overloaded, counted in saed_queue_full_total. Then the held request is
 * answered 200. */
static void test_queue_full(const struct daemon *d)
{
    inflight_settled(d);
    double full0 = metric(d, "saed_queue_full_total", KEY_ONLY);
    int workers = build_workers(d);
    pid_t tids[8];
    size_t held = daemon_threads_hold(d, "saed-encode", tids, 8);
    CHECK(workers > 0 && held == (size_t)workers, "%zu of %d encode workers held still", held,
          workers);
    if (!held)
        return;
    struct slow s = {.d = d, .rows = 64};
    atomic_init(&s.done, false);
    pthread_t t;
    pthread_create(&t, NULL, slow_main, &s);
    double queued = wait_metric_with(d, "saed_queue_rows", 64, KEY_ONLY);
    CHECK(queued == 64, "saed_queue_rows %g with the held request queued, want 64", queued);
    if (queued == 64) {
        float x[D_IN];
        sae_fixture_random_rows(x, 1, D_IN, 1.0, 5);
        char *body = rows_json(x, 1, D_IN, NULL);
        expect_error(d, "POST", "/v1/encode", body, strlen(body), KEY_JSON, 503, "overloaded");
        free(body);
        CHECK(!atomic_load(&s.done), "the queue-holding request was answered while its workers "
                                     "were held");
        CHECK(metric(d, "saed_queue_full_total", KEY_ONLY) == full0 + 1,
              "the refusal counted in saed_queue_full_total");
    }
    for (size_t i = 0; i < held; i++)
        daemon_thread_release(tids[i]);
    pthread_join(t, NULL);
    CHECK(s.status == 200, "the request holding the queue: %ld", s.status);
}

/* A request trickling in past request_timeout_s (2 s here) is cut. */
static void test_deadline(const struct daemon *d)
{
    int fd = trickle_open(d);
    double t0 = now_ms(), closed_at = -1;
    while (now_ms() - t0 < 8000) {
        /* A byte every 200 ms keeps MHD's idle timeout from firing. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) > 0) {
            char buf[256];
            if (read(fd, buf, sizeof buf) <= 0) {
                closed_at = now_ms() - t0;
                break;
            }
        }
        if (write(fd, " ", 1) < 0) {
            closed_at = now_ms() - t0;
            break;
        }
    }
    close(fd);
    CHECK(closed_at > 1700 && closed_at < 6000, "trickling request closed after %.0f ms",
          closed_at);
    CHECK(metric(d, "saed_deadline_closed_total", KEY_ONLY) >= 1, "deadline close counted");
}

/* SIGTERM with 8 requests waiting in the batch queue (for the rows of a
 * ninth that trickles in and never completes): the 8 get their answer, the
 * trickling one is cut by the 2 s request deadline, and the daemon exits 0.
 * SIGTERM is sent once the daemon counts all of them in flight, so a slow
 * machine cannot turn this into a test of refused connections. */
static void test_sigterm(struct daemon *d)
{
    enum { N = 8 };
    struct slow s[N];
    pthread_t t[N];
    double base = inflight_settled(d);
    int fd = trickle_open(d);
    wait_metric_with(d, "saed_inflight_requests", base + 1, KEY_ONLY);
    for (size_t i = 0; i < N; i++) {
        s[i] = (struct slow){.d = d, .rows = 1 + i % 2};
        pthread_create(&t[i], NULL, slow_main, &s[i]);
    }
    wait_metric_with(d, "saed_inflight_requests", base + N + 1, KEY_ONLY);
    daemon_signal(d, SIGTERM);
    double t0 = now_ms();
    int status = daemon_wait(d, 20000);
    size_t ok = 0;
    for (size_t i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok += s[i].status == 200;
    }
    close(fd);
    CHECK(ok == N, "%zu of %d in-flight requests answered through SIGTERM", ok, N);
    CHECK(status == 0, "exit status %d after SIGTERM", status);
    CHECK(daemon_log_has(d, "draining"), "drain logged");
    printf("sigterm: %zu of %d queued requests answered, exit %d after %.0f ms\n", ok, N, status,
           now_ms() - t0);
    struct http_resp r;
    CHECK(http(d, "GET", "/v1/health", NULL, 0, NULL, false, &r) == 0, "still listening");
    http_free(&r);
}

/* ---- config: the example file lists exactly the keys of --help ---- */

/* Runs cmd, returns its stdout+stderr (owned) and exit status. */
static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    if (!p)
        return out;
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 == cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
    }
    out[len] = '\0';
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/* The example config, --help and startup errors. */
static void test_config(void)
{
    const char *bin = getenv("SAED_BIN"), *conf = getenv("SAED_CONF");
    char cmd[1200];
    int st;
    snprintf(cmd, sizeof cmd, "%s --help 2>&1", bin);
    char *help = run(cmd, &st);
    CHECK(st == 0, "--help exit %d", st);
    char help_keys[64][48], conf_keys[64][48];
    size_t nh = 0, nc = 0;
    for (char *l = help; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, "  --", 4) || nh == 64)
            continue;
        size_t n = strcspn(l + 4, " \n,");
        if (n >= 48)
            continue;
        memcpy(help_keys[nh], l + 4, n);
        help_keys[nh][n] = '\0';
        for (char *c = help_keys[nh]; *c; c++)
            if (*c == '-')
                *c = '_';
        if (strcmp(help_keys[nh], "config") && strcmp(help_keys[nh], "help"))
            nh++;
    }
    free(help);
    FILE *f = conf ? fopen(conf, "r") : NULL;
    CHECK(f != NULL, "cannot open the example config %s", conf ? conf : "(SAED_CONF unset)");
    char line[512];
    while (f && fgets(line, sizeof line, f) && nc < 64) {
        if (line[0] == '#' || !strchr(line, '='))
            continue;
        size_t n = strcspn(line, " =");
        if (n < 48) {
            memcpy(conf_keys[nc], line, n);
            conf_keys[nc++][n] = '\0';
        }
    }
    if (f)
        fclose(f);
    CHECK(nh > 10 && nh == nc, "--help lists %zu keys, the example config %zu", nh, nc);
    for (size_t i = 0; i < nh; i++) {
        bool found = false;
        for (size_t j = 0; j < nc; j++)
            found |= !strcmp(help_keys[i], conf_keys[j]);
        CHECK(found, "config/saed.conf lacks %s", help_keys[i]);
    }

    /* The example file loads (flags override its model and listen). */
    struct daemon d;
    const char *args[] = {"--config", conf, "--model", dir_a, "--listen", "127.0.0.1:0", NULL};
    if (conf && daemon_start(&d, dir_a, args) == 0) {
        struct http_resp r;
        CHECK(http(&d, "GET", "/v1/health", NULL, 0, NULL, false, &r) == 200, "health");
        http_free(&r);
        CHECK(http(&d, "GET", "/v1/nothing%0aforged", NULL, 0, NULL, false, &r) == 404, "404");
        http_free(&r);
        daemon_signal(&d, SIGINT);
        CHECK(daemon_wait(&d, 20000) == 0, "exit status after SIGINT");
        /* Without --quiet: one line per request; a decoded newline cannot forge
         * a second line. */
        CHECK(daemon_log_has(&d, "saed: GET /v1/health 200 16B "), "request log line");
        CHECK(daemon_log_has(&d, "saed: GET /v1/nothing\\x0aforged 404 "), "escaped log line");
    } else {
        CHECK(0, "saed --config %s did not start", conf);
    }

    /* Bad usage exits 2, bad settings and a bad model 1, each saying why. */
    snprintf(cmd, sizeof cmd, "%s --model %s --colour blue 2>&1", bin, dir_a);
    char *out = run(cmd, &st);
    CHECK(st == 2 && strstr(out, "--colour"), "unknown flag: %d %s", st, out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s --model %s --threads lots 2>&1", bin, dir_a);
    out = run(cmd, &st);
    CHECK(st == 1 && strstr(out, "--threads"), "bad value: %d %s", st, out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s --model %s/nowhere --listen 127.0.0.1:0 2>&1", bin, tmp);
    out = run(cmd, &st);
    CHECK(st == 1 && strstr(out, "nowhere"), "missing model: %d %s", st, out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s 2>&1", bin);
    out = run(cmd, &st);
    CHECK(st == 2 && strstr(out, "--model"), "no model: %d %s", st, out);
    free(out);
    /* A config value with one quote is a mistake, not a literal quote. */
    char badconf[512];
    snprintf(badconf, sizeof badconf, "%s/quote.conf", tmp);
    FILE *qf = fopen(badconf, "w");
    fputs("# a quote left open\nweb_root = \"/srv/web\n", qf);
    fclose(qf);
    snprintf(cmd, sizeof cmd, "%s --config %s --model %s 2>&1", bin, badconf, dir_a);
    out = run(cmd, &st);
    CHECK(st == 1 && strstr(out, "quote.conf:2") && strstr(out, "quote"), "open quote: %d %s",
          st, out);
    free(out);
}

/* Runs every test against real daemons; exit status 1 if any check failed. */
int main(void)
{
    if (setup()) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    struct daemon d1;
    const char *a1[] = {"--quiet", "--threads", "2", "--max-body-bytes", "65536",
                        "--max-body-total-bytes", "150000", "--max-request-rows", "64", NULL};
    if (daemon_start(&d1, dir_a, a1)) {
        fprintf(stderr, "saed did not start\n");
        return 1;
    }
    test_config();
    test_routes(&d1);
    test_errors(&d1);
    test_json_grammar(&d1);
    test_oversized(&d1);
    test_body_budget(&d1);
    test_query_early(&d1);
    test_negotiation(&d1);
    test_small_budget();
    test_connections(&d1);
    test_formats(&d1);
    test_reference(&d1, model_a, 21);

    struct daemon doff;
    const char *aoff[] = {"--quiet", "--threads", "2", "--batching", "off", NULL};
    if (daemon_start(&doff, dir_a, aoff) == 0) {
        test_batching(&d1, &doff);
        daemon_signal(&doff, SIGTERM);
        CHECK(daemon_wait(&doff, 20000) == 0, "batching-off daemon exit status");
    } else {
        CHECK(0, "batching-off daemon did not start");
    }

    test_reload();

    struct daemon d2;
    const char *a2[] = {"--quiet", "--threads", "2", "--api-key", "s3cret", "--max-queue-rows",
                        "64", "--max-request-rows", "64", "--max-batch-rows", "128",
                        "--max-batch-wait-us", "1000000", "--request-timeout-s", "2",
                        "--cors-origins", "http://example.org", NULL};
    if (daemon_start(&d2, dir_a, a2) == 0) {
        test_auth(&d2);
        test_deadline(&d2);
        test_sigterm(&d2);
    } else {
        CHECK(0, "limits daemon did not start");
    }

    /* Two encode workers, so that holding them all is tested; the default
     * request_timeout_s, so no clock runs against the held request. */
    struct daemon dq;
    const char *aq[] = {"--quiet", "--threads", "2", "--workers", "2", "--api-key", "s3cret",
                        "--max-queue-rows", "64", "--max-request-rows", "64", NULL};
    if (daemon_start(&dq, dir_a, aq) == 0) {
        test_queue_full(&dq);
        daemon_signal(&dq, SIGTERM);
        CHECK(daemon_wait(&dq, 20000) == 0, "queue daemon exit status");
    } else {
        CHECK(0, "queue daemon did not start");
    }

    struct daemon dk;
    if (daemon_start(&dk, dir_topk, saed_common) == 0) {
        test_reference(&dk, model_topk, 22);
        daemon_signal(&dk, SIGTERM);
        CHECK(daemon_wait(&dk, 20000) == 0, "topk daemon exit status");
    } else {
        CHECK(0, "topk daemon did not start");
    }
    daemon_signal(&d1, SIGTERM);
    CHECK(daemon_wait(&d1, 20000) == 0, "exit status after SIGTERM");
    http_thread_done();
    sae_model_free(model_a);
    sae_model_free(model_b);
    sae_model_free(model_topk);
    sae_fixture_rmtree(tmp);
    free(tmp);
    printf("%d failed checks\n", h_failures());
    return h_failures() ? 1 : 0;
}
