/* test_features.c: saed's feature index routes and static files end to end.
 * Real daemons on loopback, a real index built by `sae index` (as a process)
 * from a fixture model, fixture activations, a tokens file and explanations
 * written here. Every number a route returns is compared with what the
 * SQLite file holds, read here directly with the sqlite3 C API (not through
 * core/store), or with the tokens file and the weights themselves.
 *
 *   refusals    an index from other weights, truncated, foreign SQLite, not
 *               SQLite, missing: exit 1 with one "saed: error:" line
 *   model       /v1/model's index summary, /metrics' index_digest
 *   features    every feature object; list by every sort/order with paging;
 *               search (matches recomputed from the descriptions, relevance
 *               order); bad parameters 400; bad indices 404
 *   examples    top and quantile pages: tokens against the tokens file,
 *               values, max/min, bins
 *   vector      W_dec rows against the loaded weights
 *   neuronpedia field names and values; wrong model or layer 404
 *   encode      include features: labels and densities
 *   no index    every feature route and include features: 404 no_index
 *   reload      SIGHUP with a changed index swaps it; a bad one keeps the
 *               old pair; model and index changed together
 *   static      page paths, assets typed, ETag/304, HEAD, traversal and
 *               symlinks refused, open without the API key */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"
#include "sae/model.h"

#define D_IN 16
#define D_SAE 64
#define ROWS 1500

static char *tmp;
static char dir_a[600], dir_b[600], acts[600], tokens_path[600], expl_path[600];
static char idx_a[600], idx_a2[600], idx_b[600];
static sae_model *model_a, *model_b;

/* The tokens file as written: documents' ids and tokens. */
#define MAX_DOCS 256
static struct doc {
    char id[32];
    size_t n;
    char **tok;
} docs[MAX_DOCS];
static size_t n_docs;

/* Token strings drawn for the documents: plain words and ones that need
 * escaping in JSON or in HTML. */
static const char *const vocab[] = {
    " the",          " cat",         " sat",      " on",          " a", " mat", "\n",
    " \"quoted\"",   " back\\slash", " <script>", " caf\xc3\xa9", "\t", " dog", "",
    " \xe2\x82\xac", " end.",
};

/* ------------------------------------------------------------ helpers */

static char *path_join(const char *a, const char *b)
{
    char *p = malloc(strlen(a) + strlen(b) + 2);
    sprintf(p, "%s/%s", a, b);
    return p;
}

/* Runs argv with stderr to errfile (NULL: inherited); the exit status, or
 * 128 + signal. */
static int run(const char *const *argv, const char *errfile)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (errfile) {
            int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dup2(fd, 2);
                close(fd);
            }
        }
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) {
            dup2(nul, 1);
            close(nul);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t put = fwrite(data, 1, len, f);
    return fclose(f) == 0 && put == len ? 0 : -1;
}

static int copy_file(const char *src, const char *dst)
{
    size_t n;
    char *b = sae_fixture_read_file(src, &n);
    if (!b)
        return -1;
    int rc = write_file(dst, b, n);
    free(b);
    return rc;
}

/* GET path as JSON; NULL if the body is not JSON. */
static json_t *get_json(const struct daemon *d, const char *path, long *status)
{
    struct http_resp r;
    *status = http(d, "GET", path, NULL, 0, NULL, false, &r);
    json_t *j = json_loads(r.body, JSON_REJECT_DUPLICATES, NULL);
    if (!j)
        fprintf(stderr, "note: %s: not JSON: %.200s\n", path, r.body);
    http_free(&r);
    return j;
}

/* The error code of a JSON error reply, or "". */
static const char *err_code(json_t *j)
{
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    return c ? c : "";
}

static const char *err_msg(json_t *j)
{
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    return c ? c : "";
}

/* Expects status and error code for GET path; the message must contain
 * `names` when given. */
static void expect_get_error(const struct daemon *d, const char *path, long status,
                             const char *code, const char *names)
{
    long st;
    json_t *j = get_json(d, path, &st);
    CHECK(st == status, "%s: status %ld, want %ld", path, st, status);
    CHECK(!strcmp(err_code(j), code), "%s: code %s, want %s", path, err_code(j), code);
    if (names)
        CHECK(strstr(err_msg(j), names), "%s: message \"%s\" does not name %s", path, err_msg(j),
              names);
    json_decref(j);
}

/* A raw HTTP/1.1 exchange (the path goes out exactly as given, which
 * libcurl would normalise). Fills status, the header block and the body. */
struct raw {
    int status;
    char head[4096];
    char *body;
    size_t len;
};

static int raw_get(int port, const char *method, const char *path, const char *extra,
                   struct raw *out)
{
    memset(out, 0, sizeof *out);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a)) {
        if (s >= 0)
            close(s);
        return -1;
    }
    char req[2048];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n",
                     method, path, extra ? extra : "");
    if (write(s, req, (size_t)n) != n) {
        close(s);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(s, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(s);
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1) {
        free(buf);
        return -1;
    }
    size_t hl = (size_t)(end - buf);
    memcpy(out->head, buf, hl < sizeof out->head - 1 ? hl : sizeof out->head - 1);
    out->len = len - hl - 4;
    out->body = malloc(out->len + 1);
    memcpy(out->body, end + 4, out->len);
    out->body[out->len] = '\0';
    free(buf);
    return 0;
}

/* The value of header `name` in a raw reply's header block ("" if absent). */
static void raw_header(const struct raw *r, const char *name, char *dst, size_t cap)
{
    dst[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = r->head; p && *p;) {
        const char *e = strstr(p, "\r\n");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > nl + 1 && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = n - (size_t)(v - p);
            if (vl >= cap)
                vl = cap - 1;
            memcpy(dst, v, vl);
            dst[vl] = '\0';
            return;
        }
        p = e ? e + 2 : NULL;
    }
}

/* ------------------------------------------------------------ the index, read directly */

static sqlite3 *db;

static void db_open(const char *path)
{
    if (db)
        sqlite3_close(db);
    db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
}

static sqlite3_stmt *q(const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "sql: %s: %s\n", sql, sqlite3_errmsg(db));
        exit(1);
    }
    return s;
}

static int64_t q_int(const char *sql)
{
    sqlite3_stmt *s = q(sql);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return v;
}

/* The lower edge of fixed histogram bin b (docs/INDEX.md), computed here
 * from the definition: bin 0 starts at 0, bins 1..256 at 2^e (1 + k/8) with
 * e = -16 + (b-1)/8, k = (b-1)%8, bin 257 at 2^16; past it +infinity. */
static double bin_lo(int b)
{
    if (b <= 0)
        return 0;
    if (b >= 258)
        return INFINITY;
    if (b == 257)
        return 65536.0;
    int e = -16 + (b - 1) / 8, k = (b - 1) % 8;
    return ldexp(1.0 + k / 8.0, e);
}

/* One explanation row. */
struct expl {
    char desc[256], source[64], type_name[64];
    bool has_score, has_source, has_type, has_v2;
    double score, v2;
    int64_t id;
};

/* A feature's explanations in id order (at most cap); their count. */
static size_t db_explanations(uint32_t f, struct expl *out, size_t cap)
{
    sqlite3_stmt *s = q("SELECT description, score, source, type_name, score_v2, id FROM "
                        "explanations WHERE feature = ? ORDER BY id");
    sqlite3_bind_int64(s, 1, f);
    size_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW && n < cap) {
        struct expl *e = &out[n++];
        memset(e, 0, sizeof *e);
        snprintf(e->desc, sizeof e->desc, "%s", (const char *)sqlite3_column_text(s, 0));
        e->has_score = sqlite3_column_type(s, 1) != SQLITE_NULL;
        e->score = sqlite3_column_double(s, 1);
        e->has_source = sqlite3_column_type(s, 2) != SQLITE_NULL;
        if (e->has_source)
            snprintf(e->source, sizeof e->source, "%s", (const char *)sqlite3_column_text(s, 2));
        e->has_type = sqlite3_column_type(s, 3) != SQLITE_NULL;
        if (e->has_type)
            snprintf(e->type_name, sizeof e->type_name, "%s",
                     (const char *)sqlite3_column_text(s, 3));
        e->has_v2 = sqlite3_column_type(s, 4) != SQLITE_NULL;
        e->v2 = sqlite3_column_double(s, 4);
        e->id = sqlite3_column_int64(s, 5);
    }
    sqlite3_finalize(s);
    return n;
}

/* The label rule of docs/API.md: the best score, the first of equals, no
 * score lowest; NULL without explanations. */
static const char *label_of(const struct expl *e, size_t n)
{
    const struct expl *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (!best || (e[i].has_score && (!best->has_score || e[i].score > best->score)))
            best = &e[i];
    return best ? best->desc : NULL;
}

/* A features row. */
struct frow {
    int64_t n_active, hist_first, n_top, n_quantile;
    double density, max, mean, norm;
    uint64_t counts[260];
    size_t n_bins;
};

static void db_feature(uint32_t f, struct frow *r)
{
    sqlite3_stmt *s = q("SELECT n_active, density, max_activation, mean_activation, "
                        "decoder_norm, hist_first, hist, n_top, n_quantile FROM features "
                        "WHERE idx = ?");
    sqlite3_bind_int64(s, 1, f);
    memset(r, 0, sizeof *r);
    if (sqlite3_step(s) == SQLITE_ROW) {
        r->n_active = sqlite3_column_int64(s, 0);
        r->density = sqlite3_column_double(s, 1);
        r->max = sqlite3_column_double(s, 2);
        r->mean = sqlite3_column_double(s, 3);
        r->norm = sqlite3_column_double(s, 4);
        r->hist_first = sqlite3_column_int64(s, 5);
        r->n_bins = (size_t)sqlite3_column_bytes(s, 6) / 8;
        if (r->n_bins > 260)
            r->n_bins = 260;
        memcpy(r->counts, sqlite3_column_blob(s, 6), r->n_bins * 8);
        r->n_top = sqlite3_column_int64(s, 7);
        r->n_quantile = sqlite3_column_int64(s, 8);
    } else {
        CHECK(0, "no features row %u", f);
    }
    sqlite3_finalize(s);
}

/* Checks a {"edges", "counts"} histogram against a features row. */
static void check_histogram(json_t *h, const struct frow *r, uint32_t f)
{
    json_t *edges = json_object_get(h, "edges"), *counts = json_object_get(h, "counts");
    CHECK(json_array_size(counts) == r->n_bins, "feature %u: %zu counts, index has %zu", f,
          json_array_size(counts), r->n_bins);
    for (size_t k = 0; k < r->n_bins && k < json_array_size(counts); k++)
        CHECK((uint64_t)json_integer_value(json_array_get(counts, k)) == r->counts[k],
              "feature %u: count %zu", f, k);
    size_t want_edges = r->n_bins ? r->n_bins + 1 : 0;
    if (r->n_bins && isinf(bin_lo((int)(r->hist_first + (int64_t)r->n_bins))))
        want_edges--;
    CHECK(json_array_size(edges) == want_edges, "feature %u: %zu edges, want %zu", f,
          json_array_size(edges), want_edges);
    for (size_t k = 0; k < want_edges && k < json_array_size(edges); k++)
        CHECK(json_number_value(json_array_get(edges, k)) == bin_lo((int)r->hist_first + (int)k),
              "feature %u: edge %zu is %.17g, want %.17g", f, k,
              json_number_value(json_array_get(edges, k)), bin_lo((int)r->hist_first + (int)k));
}

/* One example row, decoded: its tokens (from vocab) and values. */
struct exrow {
    int64_t doc, first, focus;
    char name[64];
    size_t n;
    char *tok[1100];
    float val[1100];
    bool has_bin;
    double bin_min, bin_max, bin_contains;
};

/* Little-endian reads from an examples blob (the layout schema/001_init.sql
 * documents, decoded here independently of core/index/store_examples.c). */
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static double le_f64(const unsigned char *p)
{
    uint64_t u = (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static float le_f32(const unsigned char *p)
{
    uint32_t u = le32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Example rank of feature f and kind from its packed row: rank-many examples
 * (64-byte header, len ids, len values) are skipped to reach it. */
static bool db_example(uint32_t f, int kind, int64_t rank, struct exrow *x)
{
    sqlite3_stmt *s = q("SELECT n, data FROM examples WHERE id = ?");
    sqlite3_bind_int64(s, 1, 4 * (int64_t)f + kind);
    bool found = sqlite3_step(s) == SQLITE_ROW && rank < sqlite3_column_int64(s, 0);
    if (found) {
        const unsigned char *p = sqlite3_column_blob(s, 1);
        const unsigned char *end = p + sqlite3_column_bytes(s, 1);
        for (int64_t r = 0; r < rank && found; r++) {
            found = end - p >= 64 && (size_t)(end - p - 64) / 8 >= le32(p + 12);
            if (found)
                p += 64 + 8 * (size_t)le32(p + 12);
        }
        found = found && end - p >= 64 && (size_t)(end - p - 64) / 8 >= le32(p + 12) &&
                le32(p + 12) <= sizeof x->val / sizeof x->val[0];
        if (found) {
            memset(x, 0, sizeof *x);
            x->doc = le32(p);
            x->first = le32(p + 4);
            x->focus = le32(p + 8);
            x->n = le32(p + 12);
            x->bin_min = le_f64(p + 32);
            x->bin_max = le_f64(p + 40);
            x->bin_contains = le_f64(p + 48);
            x->has_bin = le32(p + 56) & 1;
            const unsigned char *ids = p + 64, *acts = ids + 4 * x->n;
            for (size_t i = 0; i < x->n; i++)
                x->val[i] = le_f32(acts + 4 * i);
            sqlite3_stmt *d = q("SELECT name FROM documents WHERE idx = ?");
            sqlite3_bind_int64(d, 1, x->doc);
            snprintf(x->name, sizeof x->name, "%s",
                     sqlite3_step(d) == SQLITE_ROW ? (const char *)sqlite3_column_text(d, 0)
                                                   : "?missing?");
            sqlite3_finalize(d);
            sqlite3_stmt *v = q("SELECT token FROM vocab WHERE id = ?");
            for (size_t i = 0; i < x->n; i++) {
                sqlite3_bind_int64(v, 1, le32(ids + 4 * i));
                x->tok[i] = sqlite3_step(v) == SQLITE_ROW
                                ? strdup((const char *)sqlite3_column_text(v, 0))
                                : strdup("?missing?");
                sqlite3_reset(v);
            }
            sqlite3_finalize(v);
        }
    }
    sqlite3_finalize(s);
    return found;
}

static void exrow_free(struct exrow *x)
{
    for (size_t i = 0; i < x->n; i++)
        free(x->tok[i]);
}

/* Checks an example object (saed's or, np set, Neuronpedia's names) against
 * the examples row, and its tokens against the tokens file itself. */
static void check_example(json_t *e, uint32_t f, int kind, int64_t rank, bool np)
{
    struct exrow x;
    if (!db_example(f, kind, rank, &x)) {
        CHECK(0, "feature %u kind %d rank %lld: no such row", f, kind, (long long)rank);
        return;
    }
    const char *k_max = np ? "maxValue" : "max_value",
               *k_maxi = np ? "maxValueTokenIndex" : "max_token_index",
               *k_min = np ? "minValue" : "min_value", *k_bmin = np ? "binMin" : "bin_min",
               *k_bmax = np ? "binMax" : "bin_max", *k_bc = np ? "binContains" : "bin_contains";
    if (!np)
        CHECK(!strcmp(json_string_value(json_object_get(e, "document")) ?: "", x.name),
              "feature %u rank %lld: document", f, (long long)rank);
    json_t *toks = json_object_get(e, "tokens"), *vals = json_object_get(e, "values");
    CHECK(json_array_size(toks) == x.n && json_array_size(vals) == x.n,
          "feature %u kind %d rank %lld: %zu tokens, index has %zu", f, kind, (long long)rank,
          json_array_size(toks), x.n);
    size_t best = 0;
    float mx = x.val[0], mn = x.val[0];
    const struct doc *dd = (size_t)x.doc < n_docs ? &docs[x.doc] : NULL;
    CHECK(dd && !strcmp(dd->id, x.name), "feature %u: document %lld is %s in the tokens file", f,
          (long long)x.doc, dd ? dd->id : "?");
    for (size_t i = 0; i < x.n && i < json_array_size(toks); i++) {
        const char *t = json_string_value(json_array_get(toks, i));
        CHECK(t && !strcmp(t, x.tok[i]), "feature %u rank %lld token %zu", f, (long long)rank, i);
        if (dd && (size_t)x.first + i < dd->n)
            CHECK(t && !strcmp(t, dd->tok[x.first + i]),
                  "feature %u rank %lld token %zu differs from the tokens file", f, (long long)rank,
                  i);
        CHECK((float)json_number_value(json_array_get(vals, i)) == x.val[i],
              "feature %u rank %lld value %zu", f, (long long)rank, i);
        if (x.val[i] > mx) {
            mx = x.val[i];
            best = i;
        }
        if (x.val[i] < mn)
            mn = x.val[i];
    }
    CHECK((float)json_number_value(json_object_get(e, k_max)) == mx, "feature %u: %s", f, k_max);
    CHECK((size_t)json_integer_value(json_object_get(e, k_maxi)) == best, "feature %u: %s", f,
          k_maxi);
    CHECK((float)json_number_value(json_object_get(e, k_min)) == mn, "feature %u: %s", f, k_min);
    if (kind == 1) {
        CHECK(x.has_bin, "quantile row without bins");
        CHECK(json_number_value(json_object_get(e, k_bmin)) == x.bin_min &&
                  json_number_value(json_object_get(e, k_bmax)) == x.bin_max &&
                  json_number_value(json_object_get(e, k_bc)) == x.bin_contains,
              "feature %u rank %lld: bins", f, (long long)rank);
        float focus = x.val[x.focus - x.first];
        CHECK(focus >= x.bin_min && focus <= x.bin_max, "feature %u: sampled value in its bin", f);
    } else if (np) {
        /* SAEDashboard's top group: bin_min -1, bin_max the max, bin_contains -1. */
        CHECK(json_number_value(json_object_get(e, k_bmin)) == -1 &&
                  json_number_value(json_object_get(e, k_bc)) == -1 &&
                  json_is_number(json_object_get(e, k_bmax)),
              "top activation: binMin -1, binContains -1, binMax a number");
    } else {
        CHECK(!json_object_get(e, k_bmin), "top example without bin fields");
    }
    exrow_free(&x);
}

/* Checks a feature object against the index (top examples when with_top). */
static void check_feature(json_t *o, uint32_t f, bool with_top)
{
    struct frow r;
    db_feature(f, &r);
    CHECK(json_integer_value(json_object_get(o, "index")) == f, "index %u", f);
    CHECK(json_number_value(json_object_get(o, "density")) == r.density, "feature %u: density", f);
    CHECK(json_number_value(json_object_get(o, "max_activation")) == r.max, "feature %u: max", f);
    CHECK(json_number_value(json_object_get(o, "mean_activation")) == r.mean, "feature %u: mean",
          f);
    CHECK(json_number_value(json_object_get(o, "decoder_norm")) == r.norm, "feature %u: norm", f);
    CHECK((float)r.norm == model_a->dec_norm[f], "feature %u: the index's norm is the model's", f);
    check_histogram(json_object_get(o, "histogram"), &r, f);

    struct expl ex[16];
    size_t n = db_explanations(f, ex, 16);
    json_t *je = json_object_get(o, "explanations");
    CHECK(json_array_size(je) == n, "feature %u: %zu explanations, index has %zu", f,
          json_array_size(je), n);
    for (size_t i = 0; i < n && i < json_array_size(je); i++) {
        json_t *x = json_array_get(je, i);
        CHECK(!strcmp(json_string_value(json_object_get(x, "description")) ?: "", ex[i].desc),
              "feature %u: explanation %zu", f, i);
        json_t *sc = json_object_get(x, "score"), *so = json_object_get(x, "source");
        CHECK(ex[i].has_score ? json_number_value(sc) == ex[i].score : json_is_null(sc),
              "feature %u: explanation %zu score", f, i);
        CHECK(ex[i].has_source ? !strcmp(json_string_value(so) ?: "", ex[i].source)
                               : json_is_null(so),
              "feature %u: explanation %zu source", f, i);
    }
    const char *want = label_of(ex, n);
    json_t *lab = json_object_get(o, "label");
    CHECK(want ? !strcmp(json_string_value(lab) ?: "", want) : json_is_null(lab),
          "feature %u: label", f);

    sqlite3_stmt *s = q("SELECT indices, cosines FROM neighbours WHERE feature = ?");
    sqlite3_bind_int64(s, 1, f);
    json_t *nb = json_object_get(o, "neighbours");
    if (sqlite3_step(s) == SQLITE_ROW) {
        size_t k = (size_t)sqlite3_column_bytes(s, 0) / 4;
        const unsigned char *pi = sqlite3_column_blob(s, 0);
        const unsigned char *pc = sqlite3_column_blob(s, 1);
        CHECK(json_array_size(nb) == k, "feature %u: %zu neighbours, index has %zu", f,
              json_array_size(nb), k);
        for (size_t i = 0; i < k && i < json_array_size(nb); i++) {
            uint32_t idx;
            float c;
            memcpy(&idx, pi + 4 * i, 4);
            memcpy(&c, pc + 4 * i, 4);
            json_t *x = json_array_get(nb, i);
            CHECK(json_integer_value(json_object_get(x, "index")) == idx &&
                      (float)json_number_value(json_object_get(x, "cosine")) == c,
                  "feature %u: neighbour %zu", f, i);
            if (with_top) { /* the single-feature route labels its neighbours */
                struct expl nex[16];
                struct frow nr;
                db_feature(idx, &nr);
                size_t nn = db_explanations(idx, nex, 16);
                const char *nw = label_of(nex, nn);
                json_t *nl = json_object_get(x, "label");
                CHECK(nw ? !strcmp(json_string_value(nl) ?: "", nw) : json_is_null(nl),
                      "feature %u: neighbour %zu label", f, i);
                CHECK(json_number_value(json_object_get(x, "density")) == nr.density &&
                          json_number_value(json_object_get(x, "max_activation")) == nr.max,
                      "feature %u: neighbour %zu density and max", f, i);
            } else {
                CHECK(!json_object_get(x, "label"), "feature %u: list neighbour unlabelled", f);
            }
        }
    } else {
        CHECK(0, "feature %u: no neighbours row", f);
    }
    sqlite3_finalize(s);

    json_t *top = json_object_get(o, "top_examples");
    if (!with_top) {
        CHECK(!top, "feature %u: list items carry no top_examples", f);
        return;
    }
    CHECK(json_integer_value(json_object_get(o, "n_tokens")) ==
              q_int("SELECT value FROM meta WHERE key = 'n_tokens'"),
          "feature %u: n_tokens is the index's", f);
    size_t want_top = r.n_top < 5 ? (size_t)r.n_top : 5;
    CHECK(json_array_size(top) == want_top, "feature %u: %zu top examples, want %zu", f,
          json_array_size(top), want_top);
    for (size_t i = 0; i < want_top && i < json_array_size(top); i++)
        check_example(json_array_get(top, i), f, 0, (int64_t)i, false);
    if (want_top)
        CHECK((float)json_number_value(json_object_get(json_array_get(top, 0), "max_value")) ==
                  (float)r.max,
              "feature %u: the first top example reaches the feature's max", f);
}

/* ------------------------------------------------------------ setup */

/* Writes the tokens file: documents of 1..40 tokens adding up to ROWS. */
static int write_tokens(void)
{
    FILE *f = fopen(tokens_path, "w");
    if (!f)
        return -1;
    uint64_t st = 12345;
    size_t done = 0;
    while (done < ROWS && n_docs < MAX_DOCS) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        size_t k = 1 + (size_t)((st >> 33) % 40);
        if (k > ROWS - done)
            k = ROWS - done;
        struct doc *d = &docs[n_docs];
        snprintf(d->id, sizeof d->id, "doc-%zu", n_docs);
        d->n = k;
        d->tok = calloc(k, sizeof *d->tok);
        json_t *o = json_object(), *a = json_array();
        for (size_t i = 0; i < k; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            d->tok[i] = strdup(vocab[(st >> 33) % (sizeof vocab / sizeof vocab[0])]);
            json_array_append_new(a, json_string(d->tok[i]));
        }
        json_object_set_new(o, "id", json_string(d->id));
        json_object_set_new(o, "tokens", a);
        char *line = json_dumps(o, JSON_COMPACT);
        fprintf(f, "%s\n", line);
        free(line);
        json_decref(o);
        done += k;
        n_docs++;
    }
    return fclose(f) || done != ROWS ? -1 : 0;
}

/* Explanations: several per feature, scored, unscored, tied, Neuronpedia
 * lines; feature 10 is exactly "cat" (the best match for q=cat). */
static int write_explanations(void)
{
    FILE *f = fopen(expl_path, "w");
    if (!f)
        return -1;
    for (int i = 0; i < D_SAE; i++) {
        if (i == 10) {
            fprintf(f, "{\"index\": 10, \"description\": \"cat\", \"score\": 0.2}\n");
            continue;
        }
        if (i % 3 == 0)
            fprintf(f,
                    "{\"index\": %d, \"description\": \"cat words and more words %d\", "
                    "\"score\": 0.5, \"source\": \"human\"}\n",
                    i, i);
        if (i % 9 == 0)
            fprintf(f, "{\"index\": %d, \"description\": \"tied second %d\", \"score\": 0.5}\n", i,
                    i);
        if (i % 5 == 0)
            fprintf(f,
                    "{\"index\": %d, \"description\": \"dog barking %d\", \"score\": 0.9, "
                    "\"source\": \"model-x\", \"scores\": [{\"value\": 0.8, "
                    "\"explanationScoreTypeName\": \"recall_alt\", "
                    "\"explanationScoreModelName\": \"gpt-4o-mini\"}, {\"value\": 0.25, "
                    "\"type\": \"fuzz\"}]}\n",
                    i, i);
        if (i % 7 == 0)
            fprintf(f,
                    "{\"index\": \"%d\", \"description\": \"feline cat \\\"quoted\\\" %d\", "
                    "\"typeName\": \"oai_token-act-pair\", \"explanationModelName\": \"gpt-4\", "
                    "\"scoreV1\": 0.1, \"scoreV2\": 0.05}\n",
                    i, i);
        if (i == 1 || i == 4)
            fprintf(f, "{\"index\": %d, \"description\": \"unscored %d\"}\n", i, i);
        if (i == 1)
            fprintf(f, "{\"index\": 1, \"description\": \"negative\", \"score\": -1}\n");
    }
    return fclose(f);
}

/* sae index with extra flags into out. */
static int build_index(const char *model, const char *out, const char *const *extra)
{
    const char *sae = getenv("SAE_BIN");
    const char *argv[32] = {sae,       "index",     "--model",   model,   "--activations",
                            acts,      "--tokens",  tokens_path, "--out", out,
                            "--quiet", "--threads", "1"};
    size_t n = 13;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int rc = run(argv, NULL);
    if (rc)
        fprintf(stderr, "sae index %s failed: %d\n", out, rc);
    return rc;
}

static int setup(void)
{
    if (!getenv("SAE_BIN") || !getenv("SAED_BIN")) {
        fprintf(stderr, "SAE_BIN and SAED_BIN must be set (meson sets them)\n");
        return -1;
    }
    tmp = h_tmpdir("features");
    snprintf(dir_a, sizeof dir_a, "%s/model-a", tmp);
    snprintf(dir_b, sizeof dir_b, "%s/model-b", tmp);
    snprintf(acts, sizeof acts, "%s/acts.safetensors", tmp);
    snprintf(tokens_path, sizeof tokens_path, "%s/tokens.jsonl", tmp);
    snprintf(expl_path, sizeof expl_path, "%s/explanations.jsonl", tmp);
    snprintf(idx_a, sizeof idx_a, "%s/a.db", tmp);
    snprintf(idx_a2, sizeof idx_a2, "%s/a2.db", tmp);
    snprintf(idx_b, sizeof idx_b, "%s/b.db", tmp);
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = D_IN;
    o.d_sae = D_SAE;
    o.target_l0 = 6;
    sae_error err;
    if (sae_fixture_write_model(dir_a, &o, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    o.seed = 2;
    if (sae_fixture_write_model(dir_b, &o, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    if (sae_fixture_write_activations(acts, ROWS, D_IN, SAE_DT_F32, 7, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    if (sae_model_load(dir_a, &model_a, NULL, &err) ||
        sae_model_load(dir_b, &model_b, NULL, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    if (write_tokens() || write_explanations())
        return -1;
    const char *ex[] = {"--explanations", expl_path, NULL};
    const char *ex2[] = {"--top", "3", "--quantiles", "2", "--per-quantile", "2", NULL};
    if (build_index(dir_a, idx_a, ex) || build_index(dir_a, idx_a2, ex2) ||
        build_index(dir_b, idx_b, ex))
        return -1;
    return 0;
}

/* ------------------------------------------------------------ tests */

/* saed --index X must exit 1 before listening, with one line naming why. */
static void expect_refusal(const char *index, const char *why)
{
    char log[700];
    snprintf(log, sizeof log, "%s/refusal.log", tmp);
    const char *argv[] = {getenv("SAED_BIN"), "--model",     dir_a, "--index", index,
                          "--listen",         "127.0.0.1:0", NULL};
    int rc = run(argv, log);
    char *text = sae_fixture_read_file(log, NULL);
    size_t lines = 0;
    for (const char *p = text; p && *p; p++)
        lines += *p == '\n';
    CHECK(rc == 1, "--index %s: exit %d, want 1", index, rc);
    CHECK(lines == 1 && !strncmp(text ?: "", "saed: error: ", 13) && strstr(text, why) &&
              strstr(text, index),
          "--index %s: want one line naming the file and \"%s\", got: %s", index, why, text ?: "");
    free(text);
}

static void test_refusals(void)
{
    expect_refusal(idx_b, "other weights");
    char *trunc = path_join(tmp, "truncated.db"), *foreign = path_join(tmp, "foreign.db"),
         *text = path_join(tmp, "text.db"), *missing = path_join(tmp, "missing.db");
    size_t n;
    char *b = sae_fixture_read_file(idx_a, &n);
    write_file(trunc, b, n / 2);
    free(b);
    expect_refusal(trunc, "truncated");
    sqlite3 *f;
    sqlite3_open(foreign, &f);
    sqlite3_exec(f,
                 "CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES "
                 "('weights_digest', 'x');",
                 NULL, NULL, NULL);
    sqlite3_close(f);
    expect_refusal(foreign, "not a saed feature index");
    write_file(text, "hello, I am not a database\n", 27);
    expect_refusal(text, "not a SQLite database");
    expect_refusal(missing, "cannot open");
    free(trunc);
    free(foreign);
    free(text);
    free(missing);
}

/* /v1/model's index summary and the info metric's index_digest. */
static void test_model(const struct daemon *d, const char *index_path)
{
    long st;
    json_t *m = get_json(d, "/v1/model", &st);
    json_t *ix = json_object_get(m, "index");
    CHECK(st == 200 && json_is_object(ix), "/v1/model has an index object");
    CHECK(!strcmp(json_string_value(json_object_get(ix, "path")) ?: "", index_path), "index path");
    char digest[33];
    sae_error err;
    CHECK(sae_digest_file(index_path, digest, &err) == 0, "digest of the index");
    CHECK(!strcmp(json_string_value(json_object_get(ix, "file_digest")) ?: "", digest),
          "file_digest is the XXH3-128 of the file");
    CHECK(!strcmp(json_string_value(json_object_get(ix, "weights_digest")) ?: "",
                  model_a->weights_digest),
          "index weights_digest");
    CHECK(json_integer_value(json_object_get(ix, "n_tokens")) == ROWS, "n_tokens");
    CHECK(json_integer_value(json_object_get(ix, "n_documents")) == (json_int_t)n_docs,
          "n_documents %lld, want %zu", json_integer_value(json_object_get(ix, "n_documents")),
          n_docs);
    CHECK(json_integer_value(json_object_get(ix, "n_features")) == D_SAE, "n_features");
    CHECK(json_integer_value(json_object_get(ix, "n_explanations")) ==
              q_int("SELECT count(*) FROM explanations"),
          "n_explanations");
    json_t *build = json_object_get(ix, "build");
    CHECK(json_integer_value(json_object_get(build, "top")) ==
              q_int("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'top'"),
          "build.top");
    CHECK(!strcmp(json_string_value(json_object_get(m, "source_id")) ?: "",
                  "blocks.0.hook_resid_pre"),
          "source_id defaults to hook_name");
    json_decref(m);

    struct http_resp r;
    http(d, "GET", "/metrics", NULL, 0, NULL, false, &r);
    char want[80];
    snprintf(want, sizeof want, "index_digest=\"%s\"", digest);
    CHECK(strstr(r.body, want), "metrics info has %s", want);
    http_free(&r);
}

/* Every feature object, and the bad paths. */
static void test_feature_objects(const struct daemon *d)
{
    for (uint32_t f = 0; f < D_SAE; f++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/features/%u", f);
        long st;
        json_t *o = get_json(d, path, &st);
        CHECK(st == 200, "%s: %ld", path, st);
        check_feature(o, f, true);
        json_decref(o);
    }
    /* Again: now from the snapshot's cache of rendered replies, byte for byte. */
    for (uint32_t f = 0; f < D_SAE; f++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/features/%u", f);
        struct http_resp r1, r2;
        http(d, "GET", path, NULL, 0, NULL, false, &r1);
        http(d, "GET", path, NULL, 0, NULL, true, &r2);
        CHECK(r1.status == 200 && r2.status == 200 && r1.len == r2.len &&
                  !memcmp(r1.body, r2.body, r1.len),
              "%s: a repeated request (and a gzip one) gives the same reply", path);
        http_free(&r1);
        http_free(&r2);
    }
    static const char *bad[] = {"/v1/features/64",
                                "/v1/features/-1",
                                "/v1/features/abc",
                                "/v1/features/1x",
                                "/v1/features/99999999999999999999999",
                                "/v1/features/%2B1",
                                "/v1/features/3%00",
                                "/v1/features/3%00/examples",
                                "/v1/features/64/examples",
                                "/v1/features/x/vector",
                                "/api/feature/fixture-model/blocks.0.hook_resid_pre/64",
                                "/api/feature/fixture-model/blocks.0.hook_resid_pre/3%00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_get_error(d, bad[i], 404, "feature_not_found", NULL);
    expect_get_error(d, "/v1/features/3?x=1", 400, "invalid_query", "x");
}

/* prerender_features and feature_cache_mib: d (the defaults) rendered every
 * feature at load and says so; a daemon with neither renders each reply on
 * request and logs nothing of the kind, and its replies are byte for byte
 * those d serves from its cache. */
static void test_prerender(const struct daemon *d)
{
    char want[64];
    snprintf(want, sizeof want, "%d of %d feature replies rendered at load", D_SAE, D_SAE);
    CHECK(daemon_log_has(d, want), "the default daemon logs '%s'", want);
    struct daemon plain;
    const char *args[] = {"--threads", "1", "--index", idx_a, "--prerender-features", "off",
                          "--feature-cache-mib", "0", NULL};
    if (daemon_start(&plain, dir_a, args)) {
        CHECK(0, "saed --prerender-features off --feature-cache-mib 0 did not start");
        return;
    }
    for (int round = 0; round < 2; round++)
        for (uint32_t f = 0; f < D_SAE; f++) {
            char path[64];
            snprintf(path, sizeof path, "/v1/features/%u", f);
            struct http_resp a, b;
            http(d, "GET", path, NULL, 0, NULL, false, &a);
            http(&plain, "GET", path, NULL, 0, NULL, false, &b);
            CHECK(a.status == 200 && b.status == 200 && a.len == b.len &&
                      !memcmp(a.body, b.body, a.len),
                  "%s: the prerendered reply equals one rendered on request (round %d)", path,
                  round);
            http_free(&a);
            http_free(&b);
        }
    CHECK(!daemon_log_has(&plain, "rendered at load"), "prerender_features off renders nothing");
    daemon_signal(&plain, SIGTERM);
    CHECK(daemon_wait(&plain, 20000) == 0, "exit status after SIGTERM");
}

/* The list by every sort and order, paged, against ORDER BY on the file. */
static void test_list(const struct daemon *d)
{
    static const char *sorts[] = {"index", "density", "max_activation"};
    static const char *cols[] = {"idx", "density", "max_activation"};
    static const char *orders[] = {"asc", "desc"};
    static const struct {
        unsigned limit, offset;
    } pages[] = {{50, 0}, {50, 50}, {7, 3}, {0, 0}, {500, 60}, {10, 64}, {10, 1000000}};
    for (size_t s = 0; s < 3; s++)
        for (size_t o = 0; o < 2; o++)
            for (size_t p = 0; p < sizeof pages / sizeof pages[0]; p++) {
                char path[160], sql[200];
                snprintf(path, sizeof path, "/v1/features?sort=%s&order=%s&limit=%u&offset=%u",
                         sorts[s], orders[o], pages[p].limit, pages[p].offset);
                snprintf(sql, sizeof sql,
                         "SELECT idx FROM features ORDER BY %s %s, idx ASC LIMIT %u OFFSET %u",
                         cols[s], orders[o], pages[p].limit, pages[p].offset);
                if (s == 0)
                    snprintf(sql, sizeof sql,
                             "SELECT idx FROM features ORDER BY idx %s LIMIT %u OFFSET %u",
                             orders[o], pages[p].limit, pages[p].offset);
                long st;
                json_t *j = get_json(d, path, &st);
                json_t *fs = json_object_get(j, "features");
                CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == D_SAE,
                      "%s: status %ld, total", path, st);
                sqlite3_stmt *qs = q(sql);
                size_t k = 0;
                while (sqlite3_step(qs) == SQLITE_ROW) {
                    json_t *it = json_array_get(fs, k);
                    CHECK(json_integer_value(json_object_get(it, "index")) ==
                              sqlite3_column_int64(qs, 0),
                          "%s: item %zu", path, k);
                    if (p == 2)
                        check_feature(it, (uint32_t)sqlite3_column_int64(qs, 0), false);
                    k++;
                }
                sqlite3_finalize(qs);
                CHECK(json_array_size(fs) == k, "%s: %zu items, want %zu", path,
                      json_array_size(fs), k);
                json_decref(j);
            }
    /* Defaults: index ascending, 50. */
    long st;
    json_t *j = get_json(d, "/v1/features", &st);
    json_t *fs = json_object_get(j, "features");
    CHECK(st == 200 && json_array_size(fs) == 50, "default limit 50");
    for (size_t k = 0; k < json_array_size(fs); k++)
        CHECK(json_integer_value(json_object_get(json_array_get(fs, k), "index")) == (json_int_t)k,
              "default order: item %zu", k);
    json_decref(j);

    static const struct {
        const char *path, *names;
    } bad[] = {
        {"/v1/features?limit=abc", "limit"},
        {"/v1/features?limit=-1", "limit"},
        {"/v1/features?limit=501", "limit"},
        {"/v1/features?limit=", "limit"},
        {"/v1/features?limit=1.5", "limit"},
        {"/v1/features?offset=-1", "offset"},
        {"/v1/features?offset=1e3", "offset"},
        {"/v1/features?sort=rank", "sort"},
        {"/v1/features?order=up", "order"},
        {"/v1/features?page=2", "page"},
        {"/v1/features?limit=1&limit=2", "limit"},
        {"/v1/features?sort=relevance", "q"},
        {"/v1/features/3/examples?kind=best", "kind"},
        {"/v1/features/3/examples?limit=x", "limit"},
        {"/v1/features/3/examples?limit=501", "limit"},
        {"/v1/features/3/examples?offset=-2", "offset"},
        {"/v1/features/3/examples?feature=1", "feature"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_get_error(d, bad[i].path, 400, "invalid_query", bad[i].names);
}

/* Lowercase words (runs of ASCII letters and digits) of s contain w? */
static bool has_word(const char *s, const char *w)
{
    size_t wl = strlen(w);
    for (const char *p = s; *p;) {
        while (*p &&
               !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            p++;
        const char *st = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
            p++;
        if ((size_t)(p - st) == wl && !strncasecmp(st, w, wl))
            return true;
    }
    return false;
}

/* Search: the matching features recomputed from the descriptions. */
static void test_search(const struct daemon *d)
{
    static const char *queries[][3] = {{"cat", NULL, NULL},
                                       {"CAT", "words", NULL},
                                       {"dog", "barking", NULL},
                                       {"feline", "quoted", NULL},
                                       {"unicorn", NULL, NULL}};
    static const char *urls[] = {"cat", "CAT%20words", "dog+barking", "feline%20%22quoted%22",
                                 "unicorn"};
    for (size_t t = 0; t < 5; t++) {
        bool want[D_SAE] = {false};
        size_t total = 0;
        for (uint32_t f = 0; f < D_SAE; f++) {
            struct expl ex[16];
            size_t n = db_explanations(f, ex, 16);
            for (size_t i = 0; i < n && !want[f]; i++) {
                bool all = true;
                for (size_t w = 0; w < 3 && queries[t][w]; w++)
                    all = all && has_word(ex[i].desc, queries[t][w]);
                want[f] = all;
            }
            total += want[f];
        }
        char path[128];
        snprintf(path, sizeof path, "/v1/features?q=%s&sort=index&limit=500", urls[t]);
        long st;
        json_t *j = get_json(d, path, &st);
        json_t *fs = json_object_get(j, "features");
        CHECK(st == 200 && (size_t)json_integer_value(json_object_get(j, "total")) == total &&
                  json_array_size(fs) == total,
              "%s: total %lld, items %zu, want %zu", path,
              json_integer_value(json_object_get(j, "total")), json_array_size(fs), total);
        uint32_t k = 0;
        for (uint32_t f = 0; f < D_SAE; f++)
            if (want[f]) {
                CHECK(json_integer_value(json_object_get(json_array_get(fs, k), "index")) == f,
                      "%s: item %u is not feature %u", path, k, f);
                k++;
            }
        json_decref(j);
    }
    /* Default with q: relevance, best first; feature 10 ("cat") leads, and
     * the order is FTS5's bm25 of each feature's best explanation, ties by
     * index, as computed here with SQL on the file. */
    long st;
    json_t *j = get_json(d, "/v1/features?q=cat&limit=500", &st);
    json_t *fs = json_object_get(j, "features");
    CHECK(st == 200 && json_integer_value(json_object_get(json_array_get(fs, 0), "index")) == 10,
          "q=cat: the exact description ranks first");
    sqlite3_stmt *s = q("SELECT e.feature, min(r.rank) AS score FROM (SELECT rowid AS id, rank "
                        "FROM explanations_fts WHERE explanations_fts MATCH '\"cat\"') r JOIN "
                        "explanations e ON e.id = r.id GROUP BY e.feature ORDER BY score, "
                        "e.feature");
    size_t k = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        CHECK(json_integer_value(json_object_get(json_array_get(fs, k), "index")) ==
                  sqlite3_column_int64(s, 0),
              "q=cat relevance item %zu", k);
        k++;
    }
    sqlite3_finalize(s);
    CHECK(k == json_array_size(fs) && k > 5, "q=cat: %zu relevance items", k);
    json_decref(j);
    j = get_json(d, "/v1/features?q=cat&order=desc&limit=1", &st);
    CHECK(json_integer_value(
              json_object_get(json_array_get(json_object_get(j, "features"), 0), "index")) != 10,
          "q=cat order=desc: the best match is last");
    json_decref(j);
    j = get_json(d, "/v1/features?q=NEAR(%20%22&limit=5", &st);
    CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == 0,
          "FTS5 syntax in q is text, never an error");
    json_decref(j);
    j = get_json(d, "/v1/features?q=&limit=5", &st);
    CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == D_SAE,
          "empty q lists everything");
    json_decref(j);
    j = get_json(d, "/v1/features?q=%20%09%20&limit=5", &st);
    CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == D_SAE,
          "a q of white space lists everything");
    json_decref(j);
    /* A word repeated 5,000 times is one word: the same answer as once. */
    size_t cap = 5000 * 4 + 64, n = 0;
    char *heavy = malloc(cap);
    n += (size_t)snprintf(heavy, cap, "/v1/features?limit=500&q=cat");
    for (int i = 1; i < 5000; i++)
        n += (size_t)snprintf(heavy + n, cap - n, i % 2 ? "+CAT" : "+cat");
    json_t *once = get_json(d, "/v1/features?q=cat&limit=500", &st);
    j = get_json(d, heavy, &st);
    CHECK(st == 200 &&
              json_equal(json_object_get(j, "features"), json_object_get(once, "features")),
          "5,000 repeats of a word answer as the word");
    json_decref(j);
    json_decref(once);
    /* 32 distinct words are searched, 33 are refused. */
    n = (size_t)snprintf(heavy, cap, "/v1/features?q=cat");
    for (int i = 1; i < 32; i++)
        n += (size_t)snprintf(heavy + n, cap - n, "+w%d", i);
    j = get_json(d, heavy, &st);
    CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == 0,
          "32 distinct words: searched (%ld)", st);
    json_decref(j);
    snprintf(heavy + n, cap - n, "+w32");
    expect_get_error(d, heavy, 400, "invalid_query", "q:");
    free(heavy);
}

/* Example pages of both kinds against the file. */
static void test_examples(const struct daemon *d)
{
    for (uint32_t f = 0; f < D_SAE; f += 3) {
        struct frow r;
        db_feature(f, &r);
        for (int kind = 0; kind < 2; kind++) {
            int64_t total = kind ? r.n_quantile : r.n_top;
            static const unsigned pg[][2] = {{20, 0}, {4, 3}, {500, 0}, {5, 1000}};
            for (size_t p = 0; p < 4; p++) {
                char path[128];
                snprintf(path, sizeof path, "/v1/features/%u/examples?kind=%s&limit=%u&offset=%u",
                         f, kind ? "quantile" : "top", pg[p][0], pg[p][1]);
                long st;
                json_t *j = get_json(d, path, &st);
                json_t *ex = json_object_get(j, "examples");
                int64_t want = total - pg[p][1];
                if (want < 0)
                    want = 0;
                if (want > pg[p][0])
                    want = pg[p][0];
                CHECK(st == 200 && json_integer_value(json_object_get(j, "total")) == total &&
                          (int64_t)json_array_size(ex) == want,
                      "%s: status %ld, %zu examples of %lld, want %lld", path, st,
                      json_array_size(ex), (long long)total, (long long)want);
                for (size_t i = 0; i < json_array_size(ex); i++)
                    check_example(json_array_get(ex, i), f, kind, (int64_t)(pg[p][1] + i), false);
                json_decref(j);
            }
        }
    }
    long st;
    json_t *j = get_json(d, "/v1/features/0/examples", &st);
    CHECK(st == 200 && json_array_size(json_object_get(j, "examples")) ==
                           (size_t)(q_int("SELECT n_top FROM features WHERE idx = 0") < 20
                                        ? q_int("SELECT n_top FROM features WHERE idx = 0")
                                        : 20),
          "examples default: kind top, limit 20");
    json_decref(j);
}

/* Whether the spans of an example-in-its-document reply are in document
 * order, apart (a gap between any two), each of the document's own tokens,
 * and cover the windows of x with their values; *n_windows gets how many
 * examples they name. */
static void check_spans(json_t *spans, const struct exrow *x, const char *path,
                        size_t *n_windows)
{
    const struct doc *dd = (size_t)x->doc < n_docs ? &docs[x->doc] : NULL;
    int64_t prev_end = -1;
    size_t covered = 0;
    *n_windows = 0;
    for (size_t k = 0; k < json_array_size(spans); k++) {
        json_t *sp = json_array_get(spans, k);
        int64_t off = json_integer_value(json_object_get(sp, "token_offset"));
        json_t *toks = json_object_get(sp, "tokens"), *vals = json_object_get(sp, "values");
        size_t n = json_array_size(toks);
        CHECK(n && json_array_size(vals) == n && off > prev_end, "%s: span %zu at %lld after %lld",
              path, k, (long long)off, (long long)prev_end);
        prev_end = off + (int64_t)n;
        for (size_t i = 0; dd && i < n; i++) {
            const char *t = json_string_value(json_array_get(toks, i));
            CHECK((size_t)off + i < dd->n && t && !strcmp(t, dd->tok[off + i]),
                  "%s: span %zu token %zu is not the document's", path, k, i);
        }
        for (size_t i = 0; i < x->n; i++)
            if (x->first + (int64_t)i >= off && x->first + (int64_t)i < prev_end) {
                covered++;
                CHECK((float)json_number_value(json_array_get(vals, x->first + i - off)) ==
                          x->val[i],
                      "%s: span %zu value at document token %lld", path, k,
                      (long long)(x->first + (int64_t)i));
            }
        *n_windows += json_array_size(json_object_get(sp, "examples"));
    }
    CHECK(covered == x->n, "%s: the spans cover %zu of the example's %zu tokens", path, covered,
          x->n);
}

/* GET /v1/features/{i}/examples/{kind}/{rank}: the example as the list
 * route gives it, its document, and every window of the feature stored from
 * that document, merged; the errors of a bad kind, rank or feature. */
static void test_example_in_document(const struct daemon *d)
{
    int64_t context = q_int("SELECT value FROM meta WHERE key = 'context'");
    for (uint32_t f = 0; f < D_SAE; f += 5) {
        struct frow r;
        db_feature(f, &r);
        for (int kind = 0; kind < 2; kind++) {
            int64_t total = kind ? r.n_quantile : r.n_top;
            const char *ks = kind ? "quantile" : "top";
            for (int64_t rank = 0; rank < total && rank < 4; rank++) {
                char path[128];
                snprintf(path, sizeof path, "/v1/features/%u/examples/%s/%lld", f, ks,
                         (long long)rank);
                long st;
                json_t *j = get_json(d, path, &st);
                struct exrow x;
                CHECK(st == 200 && db_example(f, kind, rank, &x), "%s: status %ld", path, st);
                if (st != 200) {
                    json_decref(j);
                    continue;
                }
                check_example(json_object_get(j, "example"), f, kind, rank, false);
                json_t *doc = json_object_get(j, "document");
                CHECK(json_integer_value(json_object_get(j, "feature")) == f &&
                          !strcmp(json_string_value(json_object_get(j, "kind")) ?: "", ks) &&
                          json_integer_value(json_object_get(j, "rank")) == rank &&
                          json_integer_value(json_object_get(j, "context")) == context,
                      "%s: feature, kind, rank, context", path);
                CHECK(json_integer_value(json_object_get(doc, "index")) == x.doc &&
                          !strcmp(json_string_value(json_object_get(doc, "name")) ?: "", x.name),
                      "%s: document", path);
                /* The feature's windows in this document, both kinds. */
                size_t in_doc = 0;
                for (int k2 = 0; k2 < 2; k2++)
                    for (int64_t r2 = 0; r2 < (k2 ? r.n_quantile : r.n_top); r2++) {
                        struct exrow y;
                        if (db_example(f, k2, r2, &y)) {
                            in_doc += y.doc == x.doc;
                            exrow_free(&y);
                        }
                    }
                size_t named;
                check_spans(json_object_get(j, "spans"), &x, path, &named);
                CHECK(named == in_doc, "%s: spans name %zu windows, the document has %zu", path,
                      named, in_doc);
                exrow_free(&x);
                json_decref(j);
            }
            char path[128];
            snprintf(path, sizeof path, "/v1/features/%u/examples/%s/%lld", f, ks,
                     (long long)total);
            expect_get_error(d, path, 404, "example_not_found", ks);
        }
    }
    expect_get_error(d, "/v1/features/0/examples/best/0", 404, "example_not_found", "best");
    expect_get_error(d, "/v1/features/0/examples/top/x", 404, "example_not_found", "rank");
    expect_get_error(d, "/v1/features/0/examples/top/-1", 404, "example_not_found", "rank");
    expect_get_error(d, "/v1/features/64/examples/top/0", 404, "feature_not_found", NULL);
    expect_get_error(d, "/v1/features/0/examples/top/0?limit=1", 400, "invalid_query", "limit");
}

/* W_dec rows against the loaded weights. */
static void test_vector(const struct daemon *d)
{
    for (uint32_t f = 0; f < D_SAE; f += 7) {
        char path[64];
        snprintf(path, sizeof path, "/v1/features/%u/vector", f);
        long st;
        json_t *j = get_json(d, path, &st);
        json_t *v = json_object_get(j, "vector");
        CHECK(st == 200 && json_integer_value(json_object_get(j, "index")) == f &&
                  json_array_size(v) == D_IN,
              "%s", path);
        for (size_t c = 0; c < D_IN && c < json_array_size(v); c++)
            CHECK((float)json_number_value(json_array_get(v, c)) ==
                      model_a->w_dec[(size_t)f * D_IN + c],
                  "%s: [%zu]", path, c);
        json_decref(j);
    }
}

/* Whether explanation a goes before b in Neuronpedia's order (scoreV2
 * descending, then scoreV1 descending, unscored last, then id). */
static bool np_before(const struct expl *a, const struct expl *b)
{
    if (a->has_v2 != b->has_v2)
        return a->has_v2;
    if (a->has_v2 && a->v2 != b->v2)
        return a->v2 > b->v2;
    if (a->has_score != b->has_score)
        return a->has_score;
    if (a->has_score && a->score != b->score)
        return a->score > b->score;
    return a->id < b->id;
}

/* Checks that every key of o is in want (n names) with the JSON type given
 * by want_type: 's' string, 'n' number, 'a' array, 'o' object, 'N' null,
 * 'S' string or null, 'M' number or null; and that every name is there. */
static void check_fields(json_t *o, const char *what, const char *const *want,
                         const char *want_type, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(o, want[i]);
        bool ok = false;
        switch (want_type[i]) {
        case 's': ok = json_is_string(v); break;
        case 'n': ok = json_is_number(v); break;
        case 'a': ok = json_is_array(v); break;
        case 'o': ok = json_is_object(v); break;
        case 'N': ok = json_is_null(v); break;
        case 'S': ok = json_is_string(v) || json_is_null(v); break;
        case 'M': ok = json_is_number(v) || json_is_null(v); break;
        }
        CHECK(ok, "%s: \"%s\" missing or not of type '%c'", what, want[i], want_type[i]);
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i = 0;
        while (i < n && strcmp(want[i], k))
            i++;
        CHECK(i < n, "%s: unexpected field \"%s\"", what, k);
    }
}

/* The Neuronpedia route against Neuronpedia's own reply, field by field.
 * Derived from hijohnnylin/neuronpedia (prisma/schema.prisma: Neuron,
 * Activation, Explanation, ExplanationScore; lib/db/neuron.ts
 * getNeuronOptimized: activations ordered by maxValue desc, explanations
 * selecting id, description, explanationModelName, typeName, scores,
 * triggeredByUser, ordered by scoreV2 then scoreV1) and from SAEDashboard's
 * NeuronpediaConverter and acceptance batches (tests/acceptance/test_simple:
 * top-group activations carry bin_min -1, bin_max = the max, bin_contains -1;
 * 50 freq_hist bars, the values equally spaced midpoints). Fields the index
 * does not hold are absent, not invented; the numbers are the index's. */
static void test_neuronpedia(const struct daemon *d)
{
    static const char *const top_names[] = {
        "modelId", "layer", "index", "maxActApprox", "frac_nonzero",
        "freq_hist_data_bar_heights", "freq_hist_data_bar_values", "topkCosSimIndices",
        "topkCosSimValues", "activations", "explanations"};
    static const char top_types[] = "sssnnaaaaaa"; /* "index" is a string */
    static const char *const act_names[] = {"tokens", "values", "maxValue",
                                            "maxValueTokenIndex", "minValue",
                                            "qualifyingTokenIndex", "binMin", "binMax",
                                            "binContains"};
    static const char *const expl_names[] = {"id", "description", "explanationModelName",
                                             "typeName", "scores", "triggeredByUser",
                                             "scoreV1", "scoreV2"};
    static const char *const score_names[] = {"id", "value", "explanationId",
                                              "explanationScoreTypeName",
                                              "explanationScoreModelName", "jsonDetails"};
    for (uint32_t f = 0; f < D_SAE; f += 5) {
        char path[128];
        snprintf(path, sizeof path, "/api/feature/fixture-model/blocks.0.hook_resid_pre/%u", f);
        long st;
        json_t *j = get_json(d, path, &st);
        CHECK(st == 200, "%s: %ld", path, st);
        check_fields(j, path, top_names, top_types, sizeof top_names / sizeof top_names[0]);
        char idx[16];
        snprintf(idx, sizeof idx, "%u", f);
        CHECK(!strcmp(json_string_value(json_object_get(j, "index")) ?: "", idx),
              "index is the string \"%s\"", idx);
        CHECK(!strcmp(json_string_value(json_object_get(j, "modelId")) ?: "", "fixture-model") &&
                  !strcmp(json_string_value(json_object_get(j, "layer")) ?: "",
                          "blocks.0.hook_resid_pre"),
              "modelId and layer");
        struct frow r;
        db_feature(f, &r);
        CHECK(json_number_value(json_object_get(j, "maxActApprox")) == r.max &&
                  json_number_value(json_object_get(j, "frac_nonzero")) == r.density,
              "%s: maxActApprox, frac_nonzero", path);

        /* 50 linear bars from the smallest fixed bin's lower edge to the max:
         * equally spaced midpoints, heights summing to n_active, each bar
         * holding no more than the fixed bins it overlaps hold. */
        json_t *hh = json_object_get(j, "freq_hist_data_bar_heights"),
               *hv = json_object_get(j, "freq_hist_data_bar_values");
        size_t want_bars = r.n_active ? 50 : 0;
        CHECK(json_array_size(hh) == want_bars && json_array_size(hv) == want_bars,
              "%s: %zu bars", path, json_array_size(hh));
        if (want_bars && json_array_size(hh) == 50 && json_array_size(hv) == 50) {
            double lo = bin_lo((int)r.hist_first), w = (r.max - lo) / 50;
            int64_t sum = 0;
            for (size_t k = 0; k < 50; k++) {
                double x0 = lo + (double)k * w, x1 = k == 49 ? r.max : x0 + w;
                CHECK(fabs(json_number_value(json_array_get(hv, k)) - (lo + (k + 0.5) * w)) <=
                          1e-12 * r.max,
                      "%s: bar %zu value", path, k);
                uint64_t may = 0;
                for (size_t b = 0; b < r.n_bins; b++) {
                    double a = bin_lo((int)r.hist_first + (int)b),
                           c = bin_lo((int)r.hist_first + (int)b + 1);
                    if (a <= x1 && c >= x0)
                        may += r.counts[b];
                }
                int64_t hk = json_integer_value(json_array_get(hh, k));
                CHECK(hk >= 0 && (uint64_t)hk <= may + 1, "%s: bar %zu holds %lld of %llu", path,
                      k, (long long)hk, (unsigned long long)may);
                sum += hk;
            }
            CHECK(sum == r.n_active, "%s: bars sum to %lld, n_active %lld", path, (long long)sum,
                  (long long)r.n_active);
        }

        json_t *ci = json_object_get(j, "topkCosSimIndices"),
               *cv = json_object_get(j, "topkCosSimValues");
        sqlite3_stmt *s = q("SELECT indices, cosines FROM neighbours WHERE feature = ?");
        sqlite3_bind_int64(s, 1, f);
        if (sqlite3_step(s) == SQLITE_ROW) {
            size_t k = (size_t)sqlite3_column_bytes(s, 0) / 4;
            CHECK(json_array_size(ci) == k && json_array_size(cv) == k, "%s: cos sims", path);
            for (size_t i = 0; i < k && i < json_array_size(ci); i++) {
                uint32_t n;
                float c;
                memcpy(&n, (const char *)sqlite3_column_blob(s, 0) + 4 * i, 4);
                memcpy(&c, (const char *)sqlite3_column_blob(s, 1) + 4 * i, 4);
                CHECK(json_integer_value(json_array_get(ci, i)) == n &&
                          (float)json_number_value(json_array_get(cv, i)) == c,
                      "%s: cos sim %zu", path, i);
            }
        }
        sqlite3_finalize(s);

        /* activations: every top and quantile example once, maxValue descending. */
        json_t *acts_ = json_object_get(j, "activations");
        size_t na = json_array_size(acts_);
        CHECK((int64_t)na == r.n_top + r.n_quantile, "%s: %zu activations", path, na);
        bool seen[128] = {false};
        for (size_t i = 0; i < na; i++) {
            json_t *a = json_array_get(acts_, i);
            check_fields(a, path, act_names, "aannnnnnn", sizeof act_names / sizeof act_names[0]);
            if (i)
                CHECK(json_number_value(json_object_get(json_array_get(acts_, i - 1),
                                                        "maxValue")) >=
                          json_number_value(json_object_get(a, "maxValue")),
                      "%s: activations %zu and %zu out of maxValue order", path, i - 1, i);
            bool top = json_number_value(json_object_get(a, "binMin")) == -1;
            if (top)
                CHECK(json_number_value(json_object_get(a, "binMax")) == r.max,
                      "%s: top activation binMax is maxActApprox", path);
            /* Find which stored example this is: the one whose values match. */
            int64_t n_kind = top ? r.n_top : r.n_quantile, found = -1;
            for (int64_t k = 0; k < n_kind && found < 0; k++) {
                struct exrow x;
                if (!db_example(f, top ? 0 : 1, k, &x))
                    continue;
                json_t *vals = json_object_get(a, "values");
                bool same = json_array_size(vals) == x.n && !seen[(top ? 0 : 64) + k];
                for (size_t t = 0; same && t < x.n; t++)
                    same = (float)json_number_value(json_array_get(vals, t)) == x.val[t];
                if (same)
                    found = k;
                exrow_free(&x);
            }
            CHECK(found >= 0 && found < 64, "%s: activation %zu is no stored example", path, i);
            if (found >= 0 && found < 64) {
                seen[(top ? 0 : 64) + found] = true;
                check_example(a, f, top ? 0 : 1, found, true);
            }
        }

        /* explanations: the index's, in Neuronpedia's order, with their scores. */
        struct expl ex[16];
        size_t n = db_explanations(f, ex, 16);
        for (size_t a = 1; a < n; a++) /* insertion sort by np_before */
            for (size_t b = a; b > 0 && np_before(&ex[b], &ex[b - 1]); b--) {
                struct expl t = ex[b];
                ex[b] = ex[b - 1];
                ex[b - 1] = t;
            }
        json_t *je = json_object_get(j, "explanations");
        CHECK(json_array_size(je) == n, "%s: explanations", path);
        for (size_t i = 0; i < n && i < json_array_size(je); i++) {
            json_t *x = json_array_get(je, i);
            check_fields(x, path, expl_names, "sSSSaNMM",
                         sizeof expl_names / sizeof expl_names[0]);
            char id[24];
            snprintf(id, sizeof id, "%lld", (long long)ex[i].id);
            CHECK(!strcmp(json_string_value(json_object_get(x, "id")) ?: "", id),
                  "%s: explanation %zu is id %s", path, i, id);
            CHECK(!strcmp(json_string_value(json_object_get(x, "description")) ?: "", ex[i].desc),
                  "%s: description %zu", path, i);
            json_t *tn = json_object_get(x, "typeName"), *sv = json_object_get(x, "scoreV1"),
                   *s2 = json_object_get(x, "scoreV2"),
                   *mn = json_object_get(x, "explanationModelName");
            CHECK(ex[i].has_type ? !strcmp(json_string_value(tn) ?: "", ex[i].type_name)
                                 : json_is_null(tn),
                  "%s: typeName %zu", path, i);
            CHECK(ex[i].has_source ? !strcmp(json_string_value(mn) ?: "", ex[i].source)
                                   : json_is_null(mn),
                  "%s: explanationModelName %zu", path, i);
            CHECK(ex[i].has_score ? json_number_value(sv) == ex[i].score : json_is_null(sv),
                  "%s: scoreV1 %zu", path, i);
            CHECK(ex[i].has_v2 ? json_number_value(s2) == ex[i].v2 : json_is_null(s2),
                  "%s: scoreV2 %zu", path, i);
            json_t *sc = json_object_get(x, "scores");
            sqlite3_stmt *ss = q("SELECT value, type, model FROM explanation_scores WHERE "
                                 "explanation = ? ORDER BY seq");
            sqlite3_bind_int64(ss, 1, ex[i].id);
            size_t k = 0;
            for (; sqlite3_step(ss) == SQLITE_ROW; k++) {
                json_t *o = json_array_get(sc, k);
                check_fields(o, path, score_names, "snsSSs",
                             sizeof score_names / sizeof score_names[0]);
                const char *ty = (const char *)sqlite3_column_text(ss, 1),
                           *mo = (const char *)sqlite3_column_text(ss, 2);
                CHECK(json_number_value(json_object_get(o, "value")) ==
                              sqlite3_column_double(ss, 0) &&
                          !strcmp(json_string_value(json_object_get(o, "explanationId")) ?: "",
                                  id) &&
                          (ty ? !strcmp(json_string_value(json_object_get(
                                            o, "explanationScoreTypeName")) ?: "",
                                        ty)
                              : json_is_null(json_object_get(o, "explanationScoreTypeName"))) &&
                          (mo ? !strcmp(json_string_value(json_object_get(
                                            o, "explanationScoreModelName")) ?: "",
                                        mo)
                              : json_is_null(json_object_get(o, "explanationScoreModelName"))),
                      "%s: explanation %s score %zu", path, id, k);
            }
            sqlite3_finalize(ss);
            CHECK(json_array_size(sc) == k, "%s: explanation %s has %zu scores, index %zu", path,
                  id, json_array_size(sc), k);
        }
        json_decref(j);
    }
    /* Feature 35 has every kind: scoreV2 0.05 (first), then 0.9, 0.5 scoreV1. */
    long st;
    json_t *j = get_json(d, "/api/feature/fixture-model/blocks.0.hook_resid_pre/35", &st);
    json_t *je = json_object_get(j, "explanations");
    CHECK(json_array_size(je) == 2 &&
              json_number_value(json_object_get(json_array_get(je, 0), "scoreV2")) == 0.05 &&
              json_array_size(json_object_get(json_array_get(je, 1), "scores")) == 2,
          "feature 35: the scoreV2 explanation first, then the scored one with 2 scores");
    json_decref(j);
    expect_get_error(d, "/api/feature/other-model/blocks.0.hook_resid_pre/1", 404, "not_found",
                     "fixture-model");
    expect_get_error(d, "/api/feature/fixture-model/6-res-jb/1", 404, "not_found",
                     "blocks.0.hook_resid_pre");
}

/* Reads gzip file path as JSON (a new reference, NULL when it is not). */
static json_t *load_gz_json(const char *path)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return NULL;
    size_t len = 0, cap = 1 << 20;
    char *buf = malloc(cap);
    int n;
    while (buf && (n = gzread(gz, buf + len, (unsigned)(cap - len))) > 0) {
        len += (size_t)n;
        if (len == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                buf = NULL;
            }
            buf = p;
        }
    }
    gzclose(gz);
    json_t *j = buf ? json_loadb(buf, len, 0, NULL) : NULL;
    free(buf);
    return j;
}

/* sae export --neuronpedia: every batch file, every feature, against the
 * index (brute force): SAEDashboard's batch and feature fields, its top
 * group's bins, the examples' tokens and values, the 50 bars summing to
 * n_active; the bars equal the Neuronpedia route's (one rebinning). */
static void test_export(const struct daemon *d)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/np-export", tmp);
    const char *argv[] = {getenv("SAE_BIN"), "export", "--neuronpedia", dir, "--model",
                          "fixture-model", "--index", idx_a, "--layer", "6", "--sae-set",
                          "res-test", "--features-per-batch", "7", "--quiet", NULL};
    CHECK(run(argv, NULL) == 0, "sae export");
    int64_t n_docs_db = q_int("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'n_documents'");
    uint32_t next = 0;
    for (int k = 0; k < (D_SAE + 6) / 7; k++) {
        char path[700];
        snprintf(path, sizeof path, "%s/batch-%d.json.gz", dir, k);
        json_t *b = load_gz_json(path);
        CHECK(b, "%s: gzip of JSON", path);
        if (!b)
            return;
        static const char *const bnames[] = {"model_id", "layer", "sae_set", "features"};
        check_fields(b, path, bnames, "snsa", 4);
        CHECK(!strcmp(json_string_value(json_object_get(b, "model_id")) ?: "", "fixture-model") &&
                  json_integer_value(json_object_get(b, "layer")) == 6 &&
                  !strcmp(json_string_value(json_object_get(b, "sae_set")) ?: "", "res-test"),
              "%s: model_id, layer, sae_set", path);
        json_t *fs = json_object_get(b, "features");
        CHECK(json_array_size(fs) == (k == (D_SAE + 6) / 7 - 1 ? D_SAE - 7 * (size_t)k : 7),
              "%s: %zu features", path, json_array_size(fs));
        for (size_t i = 0; i < json_array_size(fs); i++, next++) {
            json_t *o = json_array_get(fs, i);
            static const char *const fnames[] = {"feature_index", "frac_nonzero",
                                                 "freq_hist_data_bar_values",
                                                 "freq_hist_data_bar_heights", "n_prompts_total",
                                                 "activations"};
            check_fields(o, path, fnames, "nnaana", 6);
            struct frow r;
            db_feature(next, &r);
            CHECK(json_integer_value(json_object_get(o, "feature_index")) == next &&
                      json_number_value(json_object_get(o, "frac_nonzero")) == r.density &&
                      json_integer_value(json_object_get(o, "n_prompts_total")) == n_docs_db,
                  "%s: feature %u index, frac_nonzero, n_prompts_total", path, next);
            json_t *hh = json_object_get(o, "freq_hist_data_bar_heights"),
                   *hv = json_object_get(o, "freq_hist_data_bar_values");
            int64_t sum = 0;
            for (size_t t = 0; t < json_array_size(hh); t++)
                sum += json_integer_value(json_array_get(hh, t));
            CHECK(json_array_size(hh) == (r.n_active ? 50u : 0u) && sum == r.n_active,
                  "%s: feature %u: bars sum to n_active", path, next);
            char route[128];
            snprintf(route, sizeof route,
                     "/api/feature/fixture-model/blocks.0.hook_resid_pre/%u", next);
            long st;
            json_t *np = get_json(d, route, &st);
            CHECK(json_equal(json_object_get(np, "freq_hist_data_bar_heights"), hh) &&
                      json_equal(json_object_get(np, "freq_hist_data_bar_values"), hv),
                  "feature %u: export and route share the bars", next);
            json_decref(np);
            json_t *acts_ = json_object_get(o, "activations");
            CHECK((int64_t)json_array_size(acts_) == r.n_top + r.n_quantile,
                  "%s: feature %u: %zu activations", path, next, json_array_size(acts_));
            for (size_t t = 0; t < json_array_size(acts_); t++) {
                json_t *a = json_array_get(acts_, t);
                static const char *const anames[] = {"bin_min", "bin_max", "bin_contains",
                                                     "tokens", "values"};
                check_fields(a, path, anames, "nnnaa", 5);
                bool top = (int64_t)t < r.n_top;
                struct exrow x;
                if (!db_example(next, top ? 0 : 1, top ? (int64_t)t : (int64_t)t - r.n_top,
                                &x)) {
                    CHECK(0, "feature %u activation %zu: no row", next, t);
                    continue;
                }
                json_t *toks = json_object_get(a, "tokens"), *vals = json_object_get(a, "values");
                bool same = json_array_size(toks) == x.n && json_array_size(vals) == x.n;
                for (size_t u = 0; same && u < x.n; u++)
                    same = !strcmp(json_string_value(json_array_get(toks, u)) ?: "", x.tok[u]) &&
                           (float)json_number_value(json_array_get(vals, u)) == x.val[u];
                CHECK(same, "feature %u activation %zu: tokens and values", next, t);
                double bmin = json_number_value(json_object_get(a, "bin_min")),
                       bmax = json_number_value(json_object_get(a, "bin_max")),
                       bc = json_number_value(json_object_get(a, "bin_contains"));
                CHECK(top ? json_is_integer(json_object_get(a, "bin_min")) && bmin == -1 &&
                                bc == -1 && bmax == r.max
                          : bmin == x.bin_min && bmax == x.bin_max && bc == x.bin_contains,
                      "feature %u activation %zu: bins", next, t);
                exrow_free(&x);
            }
        }
        json_decref(b);
    }
    CHECK(next == D_SAE, "exported %u features of %d", next, D_SAE);
    char extra[700];
    snprintf(extra, sizeof extra, "%s/batch-%d.json.gz", dir, (D_SAE + 6) / 7);
    CHECK(access(extra, F_OK) != 0, "no batch past the last feature");
}

/* encode with include features: labels and densities from the index. */
static void test_encode_features(const struct daemon *d)
{
    float x[4 * D_IN];
    sae_fixture_random_rows(x, 4, D_IN, 1.0, 99);
    char body[8192];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"inputs\":[");
    for (size_t r = 0; r < 4; r++) {
        n += (size_t)snprintf(body + n, sizeof body - n, r ? ",[" : "[");
        for (size_t c = 0; c < D_IN; c++)
            n += (size_t)snprintf(body + n, sizeof body - n, c ? ",%.9g" : "%.9g",
                                  (double)x[r * D_IN + c]);
        n += (size_t)snprintf(body + n, sizeof body - n, "]");
    }
    snprintf(body + n, sizeof body - n, "],\"include\":[\"features\",\"metrics\"]}");
    const char *hdr[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    http(d, "POST", "/v1/encode", body, strlen(body), hdr, false, &r);
    json_t *j = json_loads(r.body, 0, NULL);
    CHECK(r.status == 200, "encode include features: %ld %s", r.status, r.body);
    http_free(&r);
    json_t *res = json_object_get(j, "results");
    size_t labelled = 0, seen = 0;
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *row = json_array_get(res, i), *idx = json_object_get(row, "indices"),
               *fs = json_object_get(row, "features");
        CHECK(json_array_size(fs) == json_array_size(idx), "row %zu: one feature per index", i);
        for (size_t k = 0; k < json_array_size(idx) && k < json_array_size(fs); k++) {
            uint32_t f = (uint32_t)json_integer_value(json_array_get(idx, k));
            json_t *o = json_array_get(fs, k);
            struct expl ex[16];
            size_t ne = db_explanations(f, ex, 16);
            const char *want = label_of(ex, ne);
            struct frow fr;
            db_feature(f, &fr);
            CHECK(json_integer_value(json_object_get(o, "index")) == f, "row %zu: index", i);
            CHECK(want ? !strcmp(json_string_value(json_object_get(o, "label")) ?: "", want)
                       : json_is_null(json_object_get(o, "label")),
                  "row %zu feature %u: label", i, f);
            CHECK(json_number_value(json_object_get(o, "density")) == fr.density,
                  "row %zu feature %u: density", i, f);
            CHECK(json_number_value(json_object_get(o, "max_activation")) == fr.max,
                  "row %zu feature %u: max_activation", i, f);
            labelled += want != NULL;
            seen++;
        }
        CHECK(json_object_get(row, "mse"), "metrics still there");
    }
    CHECK(seen >= 8 && labelled > 0, "encode returned %zu features, %zu labelled", seen, labelled);
    json_decref(j);

    /* A binary body with include=features in the query; a binary reply refuses it. */
    const char *oct[] = {"Content-Type: application/octet-stream", NULL};
    http(d, "POST", "/v1/encode?include=features&top_k=3", x, sizeof(float) * D_IN, oct, false, &r);
    j = json_loads(r.body, 0, NULL);
    json_t *row = json_array_get(json_object_get(j, "results"), 0);
    CHECK(r.status == 200 &&
              json_array_size(json_object_get(row, "features")) ==
                  json_array_size(json_object_get(row, "indices")) &&
              json_array_size(json_object_get(row, "indices")) == 3,
          "binary body with include=features: %ld %s", r.status, r.body);
    json_decref(j);
    http_free(&r);
    const char *oct_bin[] = {"Content-Type: application/octet-stream",
                             "Accept: application/octet-stream", NULL};
    http(d, "POST", "/v1/encode?include=features", x, sizeof(float) * D_IN, oct_bin, false, &r);
    CHECK(r.status == 400, "binary reply with include=features: %ld", r.status);
    http_free(&r);
}

/* Without an index: every feature route and include features are no_index. */
static void test_no_index(void)
{
    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "1", NULL};
    if (daemon_start(&d, dir_a, args)) {
        CHECK(0, "daemon without index did not start");
        return;
    }
    static const char *paths[] = {"/v1/features",
                                  "/v1/features?q=cat",
                                  "/v1/features/3",
                                  "/v1/features/3/examples",
                                  "/v1/features/3/vector",
                                  "/v1/features/999/vector",
                                  "/api/feature/fixture-model/blocks.0.hook_resid_pre/3"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        expect_get_error(&d, paths[i], 404, "no_index", NULL);
    float x[D_IN];
    sae_fixture_random_rows(x, 1, D_IN, 1.0, 5);
    const char *oct[] = {"Content-Type: application/octet-stream", NULL};
    struct http_resp r;
    http(&d, "POST", "/v1/encode?include=features", x, sizeof x, oct, false, &r);
    CHECK(r.status == 404 && strstr(r.body, "no_index"), "include features: %ld", r.status);
    http_free(&r);
    long st;
    json_t *m = get_json(&d, "/v1/model", &st);
    CHECK(json_is_null(json_object_get(m, "index")), "index null without --index");
    json_decref(m);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "no-index daemon exit");
}

/* Counts lines of d's log containing s. */
static int log_count(const struct daemon *d, const char *s)
{
    char *t = sae_fixture_read_file(d->log, NULL);
    int n = 0;
    for (const char *p = t; p && (p = strstr(p, s)); p += strlen(s))
        n++;
    free(t);
    return n;
}

/* Sends SIGHUP and waits for the n-th line containing what. */
static bool hup_and_wait(struct daemon *d, const char *what, int n)
{
    daemon_signal(d, SIGHUP);
    for (int i = 0; i < 1500; i++) {
        if (log_count(d, what) >= n)
            return true;
        usleep(20000);
    }
    return false;
}

static const char *model_digest_of(const struct daemon *d, char *index_digest)
{
    static char w[40];
    long st;
    json_t *m = get_json(d, "/v1/model", &st);
    snprintf(w, sizeof w, "%s", json_string_value(json_object_get(m, "weights_digest")) ?: "");
    snprintf(index_digest, 40, "%s",
             json_string_value(json_object_get(json_object_get(m, "index"), "file_digest")) ?: "");
    json_decref(m);
    return w;
}

static void test_reload(void)
{
    char *live_model = path_join(tmp, "live-model"), *live = path_join(tmp, "live.db");
    mkdir(live_model, 0755);
    char *a_cfg = path_join(dir_a, "cfg.json"), *a_w = path_join(dir_a, "sae_weights.safetensors");
    char *b_cfg = path_join(dir_b, "cfg.json"), *b_w = path_join(dir_b, "sae_weights.safetensors");
    char *l_cfg = path_join(live_model, "cfg.json"),
         *l_w = path_join(live_model, "sae_weights.safetensors");
    copy_file(a_cfg, l_cfg);
    copy_file(a_w, l_w);
    copy_file(idx_a, live);
    struct daemon d;
    const char *args[] = {"--threads", "2", "--index", live, NULL};
    if (daemon_start(&d, live_model, args)) {
        CHECK(0, "reload daemon did not start");
        return;
    }
    char dig_a[33], dig_a2[33], dig_b[33], got[40];
    sae_error err;
    sae_digest_file(idx_a, dig_a, &err);
    sae_digest_file(idx_a2, dig_a2, &err);
    sae_digest_file(idx_b, dig_b, &err);
    model_digest_of(&d, got);
    CHECK(!strcmp(got, dig_a), "serving a.db first");
    long st;
    json_t *f = get_json(&d, "/v1/features/0", &st);
    CHECK(st == 200 && json_integer_value(json_object_get(f, "n_top_examples")) ==
                           q_int("SELECT n_top FROM features WHERE idx = 0"),
          "feature 0 from a.db (and in its snapshot's cache)");
    json_decref(f);

    /* A changed index file at the same path, renamed into place as sae index does. */
    char *staged = path_join(tmp, ".live.db.new");
    copy_file(idx_a2, staged);
    rename(staged, live);
    CHECK(hup_and_wait(&d, "saed: reloaded", 1), "reload 1 logged");
    model_digest_of(&d, got);
    CHECK(!strcmp(got, dig_a2), "SIGHUP swapped the index (%s, want %s)", got, dig_a2);
    db_open(idx_a2);
    f = get_json(&d, "/v1/features/0", &st);
    CHECK(json_integer_value(json_object_get(f, "n_top_examples")) ==
                  q_int("SELECT n_top FROM features WHERE idx = 0") &&
              q_int("SELECT n_top FROM features WHERE idx = 0") <= 3,
          "the new index's examples are served");
    json_decref(f);
    f = get_json(&d, "/v1/features?q=cat", &st);
    CHECK(st == 200 && json_integer_value(json_object_get(f, "total")) == 0,
          "the new index has no explanations");
    json_decref(f);

    /* An index of other weights: refused, the old pair keeps serving. */
    copy_file(idx_b, staged);
    rename(staged, live);
    CHECK(hup_and_wait(&d, "saed: reload failed", 1), "bad reload logged");
    CHECK(daemon_log_has(&d, "other weights"), "the failure names the reason");
    const char *w = model_digest_of(&d, got);
    CHECK(!strcmp(got, dig_a2) && !strcmp(w, model_a->weights_digest),
          "still serving a2 after a refused reload");
    f = get_json(&d, "/v1/features/0", &st);
    CHECK(st == 200, "feature routes still answer after a refused reload");
    json_decref(f);
    struct http_resp r;
    http(&d, "GET", "/metrics", NULL, 0, NULL, false, &r);
    CHECK(strstr(r.body, "saed_reloads_total{result=\"failed\"} 1"), "failed reload counted");
    http_free(&r);

    /* Model and index changed together: the index is checked against the new model. */
    char *staged_w = path_join(live_model, ".w.new"), *staged_c = path_join(live_model, ".c.new");
    copy_file(b_w, staged_w);
    copy_file(b_cfg, staged_c);
    rename(staged_w, l_w);
    rename(staged_c, l_cfg);
    CHECK(hup_and_wait(&d, "saed: reloaded", 2), "reload 2 logged");
    w = model_digest_of(&d, got);
    CHECK(!strcmp(w, model_b->weights_digest) && !strcmp(got, dig_b),
          "model b with its index b after the reload");
    db_open(idx_b);
    f = get_json(&d, "/v1/features/5", &st);
    struct frow fr;
    db_feature(5, &fr);
    CHECK(st == 200 && json_number_value(json_object_get(f, "max_activation")) == fr.max,
          "feature 5 from index b");
    json_decref(f);
    http(&d, "GET", "/metrics", NULL, 0, NULL, false, &r);
    char want[80];
    snprintf(want, sizeof want, "index_digest=\"%s\"", dig_b);
    CHECK(strstr(r.body, want), "metrics index_digest follows the reload");
    http_free(&r);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "reload daemon exit");
    db_open(idx_a);
    free(live_model);
    free(live);
    free(a_cfg);
    free(a_w);
    free(b_cfg);
    free(b_w);
    free(l_cfg);
    free(l_w);
    free(staged);
    free(staged_w);
    free(staged_c);
}

/* A web root of our own, with a secret next to it and symlinks out. */
static void test_static(void)
{
    char *web = path_join(tmp, "web"), *assets = path_join(web, "assets");
    char *secret = path_join(tmp, "secret.txt");
    mkdir(web, 0755);
    mkdir(assets, 0755);
    static const char page[] = "<!doctype html><title>t</title>\n";
    static const struct {
        const char *name, *body, *type;
    } files[] = {
        {"app.js", "export const x = 1;\n", "text/javascript"},
        {"style.css", "body { color: red; }\n", "text/css"},
        {"icon.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n", "image/svg+xml"},
        {"logo.png", "\x89PNG\r\n\x1a\n", "image/png"},
        {"data.json", "{\"a\": 1}\n", "application/json"},
        {"weird.bin", "\x01\x02", "application/octet-stream"},
    };
    char *p = path_join(web, "index.html");
    write_file(p, page, strlen(page));
    free(p);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        p = path_join(assets, files[i].name);
        write_file(p, files[i].body, strlen(files[i].body));
        free(p);
    }
    write_file(secret, "TOPSECRET\n", 10);
    p = path_join(assets, "evil.js");
    CHECK(symlink(secret, p) == 0, "symlink");
    free(p);
    p = path_join(assets, "up.js");
    CHECK(symlink("../../secret.txt", p) == 0, "symlink");
    free(p);
    p = path_join(assets, "sub");
    mkdir(p, 0755);
    free(p);
    p = path_join(assets, ".hidden");
    write_file(p, "TOPSECRET\n", 10);
    free(p);

    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "1", "--web-root", web, "--api-key", "k3y", NULL};
    if (daemon_start(&d, dir_a, args)) {
        CHECK(0, "static daemon did not start");
        return;
    }
    static const char *pages[] = {"/",      "/features/0",          "/features/12", "/encode",
                                  "/model", "/?q=cat&sort=density", "/features/abc"};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        struct raw r;
        char ct[128];
        CHECK(raw_get(d.port, "GET", pages[i], NULL, &r) == 0, "raw %s", pages[i]);
        raw_header(&r, "Content-Type", ct, sizeof ct);
        CHECK(r.status == 200 && !strcmp(ct, "text/html; charset=utf-8") && r.len == strlen(page) &&
                  !memcmp(r.body, page, r.len),
              "%s: %d %s", pages[i], r.status, ct);
        free(r.body);
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[128], ct[128], etag[128], cc[64], extra[256];
        snprintf(path, sizeof path, "/assets/%s", files[i].name);
        struct raw r;
        raw_get(d.port, "GET", path, NULL, &r);
        raw_header(&r, "Content-Type", ct, sizeof ct);
        raw_header(&r, "ETag", etag, sizeof etag);
        raw_header(&r, "Cache-Control", cc, sizeof cc);
        CHECK(r.status == 200 && !strncmp(ct, files[i].type, strlen(files[i].type)) &&
                  r.len == strlen(files[i].body) && !memcmp(r.body, files[i].body, r.len),
              "%s: %d %s", path, r.status, ct);
        CHECK(etag[0] == '"' && !strcmp(cc, "no-cache"), "%s: ETag %s, Cache-Control %s", path,
              etag, cc);
        free(r.body);
        snprintf(extra, sizeof extra, "If-None-Match: %s\r\n", etag);
        raw_get(d.port, "GET", path, extra, &r);
        CHECK(r.status == 304 && r.len == 0, "%s: If-None-Match gives %d", path, r.status);
        free(r.body);
        snprintf(extra, sizeof extra, "If-None-Match: \"other\", W/%s\r\n", etag);
        raw_get(d.port, "GET", path, extra, &r);
        CHECK(r.status == 304, "%s: If-None-Match list gives %d", path, r.status);
        free(r.body);
        raw_get(d.port, "GET", path, "If-None-Match: \"stale\"\r\n", &r);
        CHECK(r.status == 200 && r.len == strlen(files[i].body), "%s: stale ETag gives %d", path,
              r.status);
        free(r.body);
        raw_get(d.port, "HEAD", path, NULL, &r);
        CHECK(r.status == 200 && r.len == 0, "HEAD %s: %d, %zu body bytes", path, r.status, r.len);
        free(r.body);
    }
    /* A changed file gets a new ETag. */
    {
        struct raw r;
        char e1[128], e2[128];
        raw_get(d.port, "GET", "/assets/app.js", NULL, &r);
        raw_header(&r, "ETag", e1, sizeof e1);
        free(r.body);
        p = path_join(assets, "app.js");
        write_file(p, "export const x = 22;\n", 21);
        free(p);
        raw_get(d.port, "GET", "/assets/app.js", NULL, &r);
        raw_header(&r, "ETag", e2, sizeof e2);
        CHECK(strcmp(e1, e2) && r.len == 21, "a rewritten file has a new ETag");
        free(r.body);
    }
    static const char *escapes[] = {"/assets/../../secret.txt",
                                    "/assets/..%2f..%2fsecret.txt",
                                    "/assets/%2e%2e/secret.txt",
                                    "/%2e%2e/",
                                    "/../secret.txt",
                                    "/assets/../../../../../../etc/passwd",
                                    "/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
                                    "/assets/..",
                                    "/assets/.",
                                    "/assets/.hidden",
                                    "/assets/evil.js",
                                    "/assets/up.js",
                                    "/assets/sub",
                                    "/assets/",
                                    "/assets/%00app.js",
                                    "/assets/..\\..\\secret.txt",
                                    "//etc/passwd",
                                    "/etc/passwd",
                                    "/assets//etc/passwd",
                                    "/assets/%2fetc%2fpasswd",
                                    "/index.html",
                                    "/web/index.html",
                                    "/assets/nothere.js"};
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        struct raw r;
        int rc = raw_get(d.port, "GET", escapes[i], NULL, &r);
        CHECK(rc == 0 && r.status >= 400 && r.status < 500 && !strstr(r.body, "TOPSECRET") &&
                  !strstr(r.body, "root:"),
              "%s: %d", escapes[i], r.status);
        if (rc == 0)
            free(r.body);
    }
    /* %00 is not decoded (server/main.c's unescape): a NUL would end the
     * path there and this would be app.js. It is a file that does not exist. */
    struct raw r;
    raw_get(d.port, "GET", "/assets/app.js%00.png", NULL, &r);
    CHECK(r.status == 404 && !strstr(r.body, "export const"), "/assets/app.js%%00.png: %d",
          r.status);
    free(r.body);
    /* The API key guards the API, not the browser's files. */
    raw_get(d.port, "GET", "/v1/features", NULL, &r);
    CHECK(r.status == 401, "/v1/features without the key: %d", r.status);
    free(r.body);
    raw_get(d.port, "GET", "/api/feature/fixture-model/blocks.0.hook_resid_pre/1", NULL, &r);
    CHECK(r.status == 401, "/api/feature without the key: %d", r.status);
    free(r.body);
    raw_get(d.port, "GET", "/v1/features", "Authorization: Bearer k3y\r\n", &r);
    CHECK(r.status == 404 && strstr(r.body, "no_index"), "/v1/features with the key: %d", r.status);
    free(r.body);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "static daemon exit");

    /* Default web root: the source tree's web/ for a binary in its build folder. */
    const char *src = getenv("SAE_SOURCE_ROOT");
    if (src) {
        const char *a2[] = {"--quiet", "--threads", "1", NULL};
        if (daemon_start(&d, dir_a, a2) == 0) {
            char *idx = path_join(src, "web/index.html");
            size_t n;
            char *want = sae_fixture_read_file(idx, &n);
            raw_get(d.port, "GET", "/features/3", NULL, &r);
            /* As written up to its first asset address, which saed versions
             * (static_get.c). */
            const char *first = want ? strstr(want, "\"/assets/") : NULL;
            size_t head = first ? (size_t)(first - want) : n;
            CHECK(want && r.status == 200 && r.len > head && !memcmp(r.body, want, head) &&
                      strstr(r.body, "\"/assets/v-"),
                  "default web root serves web/index.html");
            free(r.body);
            free(want);
            free(idx);
            daemon_signal(&d, SIGTERM);
            daemon_wait(&d, 20000);
        } else {
            CHECK(0, "default daemon did not start");
        }
    }
    /* A web_root that is not one is refused at start-up. */
    char log[700];
    snprintf(log, sizeof log, "%s/webroot.log", tmp);
    const char *argv[] = {getenv("SAED_BIN"), "--model",     dir_a, "--web-root", assets,
                          "--listen",         "127.0.0.1:0", NULL};
    int rc = run(argv, log);
    char *text = sae_fixture_read_file(log, NULL);
    CHECK(rc == 1 && text && strstr(text, "saed: error: web_root"), "bad web_root: %d %s", rc,
          text ?: "");
    free(text);
    free(web);
    free(assets);
    free(secret);
}

/* Activations past 2^16 land in the open top bin [65536, inf): its upper
 * edge is left out of "edges" (JSON has no infinity) and Neuronpedia's bar
 * value is its lower edge. A model that scales its inputs by 10^6 gets there.
 * Its model_name is a Hugging Face name with a slash, which the Neuronpedia
 * route takes as its modelId, written plainly or as %2F. */
static void test_open_top_bin(void)
{
    char *dir_c = path_join(tmp, "model-c"), *idx_c = path_join(tmp, "c.db");
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = D_IN;
    o.d_sae = D_SAE;
    o.target_l0 = 6;
    o.norm = SAE_NORM_EXPECTED_AVERAGE_ONLY_IN;
    o.norm_scaling_factor = 1e6f;
    o.model_name = "meta-llama/Llama-3.1-8B";
    sae_error err;
    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "1", "--index", idx_c, NULL};
    if (sae_fixture_write_model(dir_c, &o, &err) || build_index(dir_c, idx_c, NULL) ||
        daemon_start(&d, dir_c, args)) {
        CHECK(0, "huge-activation index and daemon");
        return;
    }
    db_open(idx_c);
    CHECK(q_int("SELECT count(*) FROM features WHERE hist_first + length(hist) / 8 - 1 = 257") > 0,
          "some feature reaches the open top bin");
    long st;
    json_t *j = get_json(&d, "/v1/features?limit=64", &st);
    json_t *fs = json_object_get(j, "features");
    CHECK(st == 200 && json_array_size(fs) == D_SAE, "list of the huge index");
    for (uint32_t f = 0; f < json_array_size(fs); f++) {
        struct frow r;
        db_feature(f, &r);
        check_histogram(json_object_get(json_array_get(fs, f), "histogram"), &r, f);
        if (r.n_bins && r.hist_first + (int64_t)r.n_bins - 1 == 257) {
            char path[128];
            for (int esc = 0; esc < 2; esc++) {
                snprintf(path, sizeof path, "/api/feature/meta-llama%sLlama-3.1-8B/"
                         "blocks.0.hook_resid_pre/%u", esc ? "%2F" : "/", f);
                json_t *np = get_json(&d, path, &st);
                json_t *hv = json_object_get(np, "freq_hist_data_bar_values");
                /* The open bin [65536, inf) ends at the feature's max: the
                 * last linear bar's value is finite, half a bar below it. */
                double v0 = json_number_value(json_array_get(hv, 0)),
                       v49 = json_number_value(json_array_get(hv, 49));
                CHECK(st == 200 && json_array_size(hv) == 50 && isfinite(v49) &&
                          fabs(v49 + (v49 - v0) / 98 - r.max) <= 1e-9 * r.max,
                      "%s: %ld, the last bar ends at the max %g", path, st, r.max);
                CHECK(!strcmp(json_string_value(json_object_get(np, "modelId")) ?: "",
                              "meta-llama/Llama-3.1-8B"),
                      "%s: modelId", path);
                json_decref(np);
            }
        }
    }
    json_decref(j);
    expect_get_error(&d, "/api/feature/meta-llama/blocks.0.hook_resid_pre/1", 404, "not_found",
                     "meta-llama/Llama-3.1-8B");
    expect_get_error(&d, "/api/feature/x/meta-llama/Llama-3.1-8B/blocks.0.hook_resid_pre/1", 404,
                     "not_found", "meta-llama/Llama-3.1-8B");
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "huge daemon exit");
    db_open(idx_a);
    free(dir_c);
    free(idx_c);
}

/* Names set in saed's settings replace the folder's (issue 13 point 8):
 * neuronpedia_id gives the Neuronpedia route's modelId and layer, and
 * /v1/model reports it; the folder's own names no longer answer. */
static void test_names(void)
{
    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "1", "--index", idx_a, "--neuronpedia-id",
                          "gemma-2-2b/12-gemmascope-res-16k", "--model-name", "gemma-2-2b",
                          NULL};
    if (daemon_start(&d, dir_a, args)) {
        CHECK(0, "saed --neuronpedia-id did not start");
        return;
    }
    long st;
    json_t *m = get_json(&d, "/v1/model", &st);
    CHECK(st == 200 && !strcmp(json_string_value(json_object_get(m, "neuronpedia_id")) ?: "",
                               "gemma-2-2b/12-gemmascope-res-16k"),
          "/v1/model neuronpedia_id");
    CHECK(!strcmp(json_string_value(json_object_get(m, "model_name")) ?: "", "gemma-2-2b"),
          "/v1/model model_name overridden");
    CHECK(!strcmp(json_string_value(json_object_get(m, "source_id")) ?: "",
                  "12-gemmascope-res-16k"),
          "source_id from neuronpedia_id");
    json_decref(m);
    json_t *np = get_json(&d, "/api/feature/gemma-2-2b/12-gemmascope-res-16k/1", &st);
    CHECK(st == 200 && !strcmp(json_string_value(json_object_get(np, "modelId")) ?: "",
                               "gemma-2-2b"),
          "Neuronpedia route by neuronpedia_id: %ld", st);
    CHECK(!strcmp(json_string_value(json_object_get(np, "layer")) ?: "",
                  "12-gemmascope-res-16k"),
          "Neuronpedia layer");
    json_decref(np);
    expect_get_error(&d, "/api/feature/fixture-model/blocks.0.hook_resid_pre/1", 404, "not_found",
                     "gemma-2-2b");
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "names daemon exit");
}

int main(void)
{
    if (setup()) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    db_open(idx_a);
    test_refusals();

    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "2", "--index", idx_a, NULL};
    if (daemon_start(&d, dir_a, args)) {
        fprintf(stderr, "saed --index did not start\n");
        return 1;
    }
    test_model(&d, idx_a);
    test_feature_objects(&d);
    test_prerender(&d);
    test_list(&d);
    test_search(&d);
    test_examples(&d);
    test_example_in_document(&d);
    test_vector(&d);
    test_neuronpedia(&d);
    test_export(&d);
    test_encode_features(&d);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "exit status after SIGTERM");

    test_no_index();
    test_names();
    test_open_top_bin();
    test_reload();
    test_static();

    sqlite3_close(db);
    http_thread_done();
    sae_model_free(model_a);
    sae_model_free(model_b);
    if (!h_failures())
        sae_fixture_rmtree(tmp);
    free(tmp);
    for (size_t i = 0; i < n_docs; i++) {
        for (size_t k = 0; k < docs[i].n; k++)
            free(docs[i].tok[k]);
        free(docs[i].tok);
    }
    int f = h_failures();
    printf("features: %d failed checks\n", f);
    return f ? 1 : 0;
}
