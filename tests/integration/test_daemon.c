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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dtype.h"
#include "encode.h"
#include "fixture.h"
#include "harness.h"
#include "model.h"
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

static int write_model(const char *dir, sae_arch arch, sae_norm norm, uint64_t seed)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = D_IN;
    o.d_sae = D_SAE;
    o.arch = arch;
    o.k = 8;
    o.norm = norm;
    o.seed = seed;
    o.target_l0 = 8;
    sae_error err;
    if (sae_fixture_write_model(dir, &o, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static sae_model *load(const char *dir)
{
    sae_model *m = NULL;
    sae_error err;
    if (sae_model_load(dir, &m, NULL, 0, &err)) {
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

static int setup(void)
{
    tmp = h_tmpdir("saed-it");
    snprintf(dir_a, sizeof dir_a, "%s/a", tmp);
    snprintf(dir_b, sizeof dir_b, "%s/b", tmp);
    snprintf(dir_live, sizeof dir_live, "%s/live", tmp);
    snprintf(dir_topk, sizeof dir_topk, "%s/topk", tmp);
    if (write_model(dir_a, SAE_ARCH_STANDARD, SAE_NORM_NONE, 1) ||
        write_model(dir_b, SAE_ARCH_STANDARD, SAE_NORM_NONE, 2) ||
        write_model(dir_live, SAE_ARCH_STANDARD, SAE_NORM_NONE, 1) ||
        write_model(dir_topk, SAE_ARCH_TOPK, SAE_NORM_LAYER_NORM, 3))
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
                                       "/v1/features/{i}/examples", "/v1/features/{i}/vector",
                                       "/api/feature/{model}/{layer}/{i}", "/metrics",
                                       "/openapi.json"};
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

    size_t big = 200000;
    char *junk = calloc(1, big);
    static const char *chunked[] = {"Content-Type: application/octet-stream",
                                    "Transfer-Encoding: chunked", NULL};
    st = http(d, "POST", "/v1/encode", junk, big, chunked, false, &r);
    CHECK(st != 200, "chunked body over the cap: %ld", st);
    http_free(&r);
    free(junk);
    CHECK(http(d, "GET", "/v1/health", NULL, 0, NULL, false, &r) == 200, "health after");
    http_free(&r);
    CHECK(http(d, "GET", "/metrics", NULL, 0, NULL, false, &r) == 200, "metrics");
    CHECK(strstr(r.body, "saed_body_cut_total 1"), "body cut counted");
    http_free(&r);
}

int main(void)
{
    if (setup()) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    struct daemon d1;
    const char *a1[] = {"--quiet", "--threads", "2", "--max-body-bytes", "65536",
                        "--max-request-rows", "64", NULL};
    if (daemon_start(&d1, dir_a, a1)) {
        fprintf(stderr, "saed did not start\n");
        return 1;
    }
    test_routes(&d1);
    test_errors(&d1);
    test_oversized(&d1);
    daemon_signal(&d1, SIGTERM);
    CHECK(daemon_wait(&d1, 20000) == 0, "exit status after SIGTERM");
    http_thread_done();
    (void)saed_common;
    sae_model_free(model_a);
    sae_model_free(model_b);
    sae_model_free(model_topk);
    sae_fixture_rmtree(tmp);
    free(tmp);
    printf("%d failed checks\n", h_failures());
    return h_failures() ? 1 : 0;
}
