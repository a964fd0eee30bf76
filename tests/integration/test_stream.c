/* test_stream.c: POST /v1/encode/stream against a real saed on loopback
 * (docs/API.md "Streaming bulk encode").
 *
 * The stream is driven over a raw socket so the test controls the chunked
 * body byte by byte: chunks that split rows, a body cut mid-row, a client
 * that goes away mid-stream, a stream still open while another asks for the
 * last slot, and a reload between two halves of a body. Rows answered must
 * equal /v1/encode's binary reply for the same rows, in order. */
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define D_IN 16
#define D_SAE 64
#define CHUNK 64 /* --max-batch-rows: the stream's chunk */

static char *tmp;
static char dir_a[512], dir_b[512], dir_live[512];

/* A stream's reply, parsed: the rows' bytes (binary encode format, in
 * order), how many rows frames carried, and the status record. */
struct sreply {
    int status;                 /* HTTP status */
    char *rows;                 /* (rows_len) owned */
    size_t rows_len, n_rows;
    json_t *end;                /* owned: the status frame, or NULL */
    char *body;                 /* owned: the raw body */
    size_t body_len;
};

static void sreply_free(struct sreply *r)
{
    free(r->rows);
    free(r->body);
    json_decref(r->end);
    memset(r, 0, sizeof *r);
}

/* A connection to the daemon, or -1. */
static int conn_open(const struct daemon *d)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Writes all n bytes; 0 or -1. */
static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Opens a stream: connects and sends the request head (chunked body). */
static int stream_open(const struct daemon *d, const char *query)
{
    int fd = conn_open(d);
    if (fd < 0)
        return -1;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /v1/encode/stream%s HTTP/1.1\r\nHost: x\r\n"
                     "Content-Type: application/octet-stream\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n",
                     query);
    if (send_all(fd, head, (size_t)n)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends n body bytes as one HTTP chunk. */
static int send_chunk(int fd, const void *p, size_t n)
{
    char h[32];
    int k = snprintf(h, sizeof h, "%zx\r\n", n);
    return send_all(fd, h, (size_t)k) || send_all(fd, p, n) || send_all(fd, "\r\n", 2) ? -1 : 0;
}

/* Sends n bytes as chunks of `piece` bytes (rows split across chunks). */
static int send_pieces(int fd, const void *p, size_t n, size_t piece)
{
    const char *c = p;
    for (size_t off = 0; off < n; off += piece)
        if (send_chunk(fd, c + off, n - off < piece ? n - off : piece))
            return -1;
    return 0;
}

/* Parses the frames of a 200 body into r. */
static void parse_frames(struct sreply *r)
{
    size_t p = 0;
    while (p + 16 <= r->body_len) {
        uint32_t kind, rows;
        uint64_t bytes;
        memcpy(&kind, r->body + p, 4);
        memcpy(&rows, r->body + p + 4, 4);
        memcpy(&bytes, r->body + p + 8, 8);
        p += 16;
        if (bytes > r->body_len - p)
            break;
        if (kind == 1) {
            r->rows = realloc(r->rows, r->rows_len + bytes + 1);
            memcpy(r->rows + r->rows_len, r->body + p, bytes);
            r->rows_len += bytes;
            r->n_rows += rows;
        } else if (kind == 2) {
            r->end = json_loadb(r->body + p, bytes, 0, NULL);
        }
        p += bytes;
    }
}

/* Ends the body (when finish) and reads the reply (Content-Length framed). */
static void stream_close(int fd, bool finish, struct sreply *r)
{
    memset(r, 0, sizeof *r);
    if (finish && send_all(fd, "0\r\n\r\n", 5)) {
        close(fd);
        return;
    }
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    size_t body = 0, want = 0; /* offset of the body (0: headers not in yet) */
    for (;;) {
        if (len == cap)
            b = realloc(b, cap *= 2);
        ssize_t k = recv(fd, b + len, cap - len, 0);
        if (k <= 0)
            break;
        len += (size_t)k;
        if (!body) {
            b[len < cap ? len : cap - 1] = '\0';
            char *e = memmem(b, len, "\r\n\r\n", 4);
            if (!e)
                continue;
            body = (size_t)(e + 4 - b);
            r->status = atoi(b + 9);
            char *cl = strcasestr(b, "Content-Length:");
            want = cl && cl < e ? strtoull(cl + 15, NULL, 10) : 0;
        }
        if (body && len - body >= want)
            break;
    }
    close(fd);
    if (body) {
        size_t off = body;
        r->body_len = len - off;
        r->body = malloc(r->body_len + 1);
        memcpy(r->body, b + off, r->body_len);
        r->body[r->body_len] = '\0';
        if (r->status == 200)
            parse_frames(r);
    }
    free(b);
}

/* The status frame's field as a string ("" when absent). */
static const char *end_str(const struct sreply *r, const char *k)
{
    const char *s = json_string_value(json_object_get(r->end, k));
    return s ? s : "";
}

/* The status frame's row count (-1 when absent). */
static long long end_rows(const struct sreply *r)
{
    json_t *v = json_object_get(r->end, "rows");
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* /v1/encode's binary reply for n rows (in pieces of at most 4096 rows),
 * appended into one buffer; NULL when a request failed. */
static char *encode_ref(const struct daemon *d, const float *x, size_t n, const char *query,
                        size_t *len)
{
    const char *h[] = {"Content-Type: application/octet-stream",
                       "Accept: application/octet-stream", NULL};
    char path[128];
    snprintf(path, sizeof path, "/v1/encode%s", query);
    char *out = NULL;
    *len = 0;
    for (size_t a = 0; a < n; a += 4096) {
        size_t k = n - a < 4096 ? n - a : 4096;
        struct http_resp r;
        if (http(d, "POST", path, x + a * D_IN, k * D_IN * 4, h, false, &r) != 200) {
            http_free(&r);
            free(out);
            return NULL;
        }
        out = realloc(out, *len + r.len + 1);
        memcpy(out + *len, r.body, r.len);
        *len += r.len;
        http_free(&r);
    }
    return out;
}

/* Bytes of the first `rows` rows of a binary encode reply. */
static size_t rows_prefix(const char *b, size_t len, size_t rows)
{
    size_t p = 0;
    for (size_t i = 0; i < rows && p + 4 <= len; i++) {
        uint32_t c;
        memcpy(&c, b + p, 4);
        p += 4 + 8 * (size_t)c;
    }
    return p;
}

/* Waits (at most 30 s) for a metric to reach want; returns its last value. */
static double wait_metric(const struct daemon *d, const char *series, double want)
{
    double v = -1;
    for (int t = 0; t < 3000 && (v = daemon_metric(d, series)) < want; t++)
        usleep(10000);
    return v;
}

/* Rows in order, equal to /v1/encode's, from a chunked body whose chunks
 * split rows, and from a Content-Length body. */
static void test_in_order(const struct daemon *d)
{
    enum { N = 1000 };
    float *x = malloc(N * D_IN * sizeof *x);
    sae_fixture_random_rows(x, N, D_IN, 1.0, 11);
    size_t ref_len;
    char *ref = encode_ref(d, x, N, "?top_k=5", &ref_len);
    CHECK(ref != NULL, "reference encode");

    int fd = stream_open(d, "?top_k=5");
    CHECK(fd >= 0, "stream opens");
    CHECK(send_pieces(fd, x, N * D_IN * 4, 1000) == 0, "body sent in 1000-byte chunks");
    struct sreply r;
    stream_close(fd, true, &r);
    CHECK(r.status == 200, "stream status %d", r.status);
    CHECK(r.n_rows == N, "rows framed: %zu", r.n_rows);
    CHECK(ref && r.rows_len == ref_len && !memcmp(r.rows, ref, ref_len),
          "stream rows equal /v1/encode's (%zu vs %zu bytes)", r.rows_len, ref_len);
    CHECK(!strcmp(end_str(&r, "stopped"), "end"), "stopped: %s", end_str(&r, "stopped"));
    CHECK(end_rows(&r) == N, "status rows %lld", end_rows(&r));
    sreply_free(&r);

    /* The same rows with a Content-Length body (libcurl). */
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    struct http_resp hr;
    CHECK(http(d, "POST", "/v1/encode/stream?top_k=5", x, N * D_IN * 4, h, false, &hr) == 200,
          "Content-Length stream");
    struct sreply r2 = {.status = 200, .body = malloc(hr.len + 1), .body_len = hr.len};
    memcpy(r2.body, hr.body, hr.len);
    parse_frames(&r2);
    CHECK(ref && r2.rows_len == ref_len && !memcmp(r2.rows, ref, ref_len),
          "Content-Length stream rows equal");
    CHECK(strlen(hr.digest) == 32, "X-SAE-Weights-Digest on the stream reply");
    CHECK(!strcmp(end_str(&r2, "weights_digest"), hr.digest), "status names the digest");
    sreply_free(&r2);
    http_free(&hr);
    free(ref);
    free(x);
}

/* Many rows: far more than the window holds, so the upload is suspended
 * and resumed many times; every row comes back, in order. */
static void test_many_rows(const struct daemon *d)
{
    enum { N = 60000 };
    float *x = malloc((size_t)N * D_IN * sizeof *x);
    sae_fixture_random_rows(x, N, D_IN, 1.0, 12);
    size_t ref_len;
    char *ref = encode_ref(d, x, N, "", &ref_len);
    int fd = stream_open(d, "");
    CHECK(fd >= 0 && send_pieces(fd, x, (size_t)N * D_IN * 4, 40000) == 0, "many rows sent");
    struct sreply r;
    stream_close(fd, true, &r);
    CHECK(r.status == 200 && r.n_rows == N, "many rows: %d, %zu rows", r.status, r.n_rows);
    CHECK(ref && r.rows_len == ref_len && !memcmp(r.rows, ref, ref_len),
          "many rows equal /v1/encode's");
    CHECK(end_rows(&r) == N && !strcmp(end_str(&r, "stopped"), "end"), "many rows status");
    sreply_free(&r);
    free(ref);
    free(x);
}

/* A body cut inside a row, a value not finite, a wrong media type and a
 * bad query. */
static void test_malformed(const struct daemon *d)
{
    enum { N = 100 };
    float x[N * D_IN];
    sae_fixture_random_rows(x, N, D_IN, 1.0, 13);
    size_t ref_len;
    char *ref = encode_ref(d, x, N, "", &ref_len);

    int fd = stream_open(d, "");
    CHECK(fd >= 0 && send_chunk(fd, x, 90 * D_IN * 4 + 10) == 0, "partial row sent");
    struct sreply r;
    stream_close(fd, true, &r);
    CHECK(r.status == 200, "partial row: status %d", r.status);
    CHECK(!strcmp(end_str(&r, "stopped"), "bad_length"), "stopped: %s", end_str(&r, "stopped"));
    CHECK(end_rows(&r) == 90 && r.n_rows == 90, "the whole rows before it: %lld",
          end_rows(&r));
    CHECK(ref && r.rows_len == rows_prefix(ref, ref_len, 90) && !memcmp(r.rows, ref, r.rows_len),
          "those rows equal /v1/encode's");
    sreply_free(&r);

    float bad[N * D_IN];
    memcpy(bad, x, sizeof bad);
    bad[70 * D_IN + 3] = NAN;
    fd = stream_open(d, "");
    CHECK(fd >= 0 && send_chunk(fd, bad, sizeof bad) == 0, "NaN body sent");
    stream_close(fd, true, &r);
    CHECK(!strcmp(end_str(&r, "stopped"), "non_finite"), "stopped: %s", end_str(&r, "stopped"));
    CHECK(end_rows(&r) == 70 && r.n_rows == 70, "rows before the NaN: %lld", end_rows(&r));
    CHECK(strstr(end_str(&r, "message"), "row 70") != NULL, "message names row 70: %s",
          end_str(&r, "message"));
    sreply_free(&r);
    free(ref);

    const char *hj[] = {"Content-Type: application/json", NULL};
    struct http_resp hr;
    CHECK(http(d, "POST", "/v1/encode/stream", "{}", 2, hj, false, &hr) == 415, "JSON: 415");
    http_free(&hr);
    const char *ho[] = {"Content-Type: application/octet-stream", NULL};
    CHECK(http(d, "POST", "/v1/encode/stream?top_k=0", x, D_IN * 4, ho, false, &hr) == 400,
          "top_k=0: 400");
    http_free(&hr);
    CHECK(http(d, "POST", "/v1/encode/stream?include=metrics", x, D_IN * 4, ho, false, &hr) ==
              400,
          "include: 400");
    http_free(&hr);
}

/* A client that goes away mid-stream: the daemon frees the stream (the
 * gauge returns to 0), counts the abort, and serves the next stream. */
static void test_abort(const struct daemon *d)
{
    enum { N = 20000 };
    float *x = malloc((size_t)N * D_IN * sizeof *x);
    sae_fixture_random_rows(x, N, D_IN, 1.0, 14);
    double before = daemon_metric(d, "saed_streams_ended_total{stopped=\"client_abort\"}");
    int fd = stream_open(d, "");
    CHECK(fd >= 0 && send_pieces(fd, x, (size_t)N * D_IN * 4, 65536) == 0, "rows sent");
    close(fd);
    CHECK(wait_metric(d, "saed_streams_ended_total{stopped=\"client_abort\"}", before + 1) ==
              before + 1,
          "the abort is counted");
    CHECK(daemon_metric(d, "saed_streams") == 0, "no stream left");
    struct http_resp hr;
    CHECK(http(d, "GET", "/v1/health", NULL, 0, NULL, false, &hr) == 200, "healthy");
    http_free(&hr);
    fd = stream_open(d, "");
    CHECK(fd >= 0 && send_chunk(fd, x, 100 * D_IN * 4) == 0, "next stream sent");
    struct sreply r;
    stream_close(fd, true, &r);
    CHECK(r.status == 200 && end_rows(&r) == 100, "the next stream is served");
    sreply_free(&r);
    free(x);
}

/* max_streams 1: a second stream while one is open gets 503 with
 * Retry-After; the first finishes normally. */
static void test_limit(const struct daemon *d)
{
    float x[10 * D_IN];
    sae_fixture_random_rows(x, 10, D_IN, 1.0, 15);
    int fd = stream_open(d, "");
    CHECK(fd >= 0 && send_chunk(fd, x, sizeof x) == 0, "first stream open");
    CHECK(wait_metric(d, "saed_streams", 1) == 1, "one stream live");
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    struct http_resp hr;
    CHECK(http(d, "POST", "/v1/encode/stream", x, sizeof x, h, false, &hr) == 503,
          "second stream: %ld", hr.status);
    CHECK(hr.retry_after[0] != '\0', "503 has Retry-After");
    CHECK(hr.body && strstr(hr.body, "max_streams"), "503 names max_streams");
    http_free(&hr);
    struct sreply r;
    stream_close(fd, true, &r);
    CHECK(r.status == 200 && end_rows(&r) == 10, "first stream finishes");
    sreply_free(&r);
}

/* stream_timeout_s 1: rows sent after the deadline are not encoded and
 * the reply says "deadline". */
static void test_deadline(const struct daemon *d)
{
    float x[200 * D_IN];
    sae_fixture_random_rows(x, 200, D_IN, 1.0, 16);
    /* The previous stream's slot is given back when its request completes,
     * just after its last byte was sent. */
    for (int t = 0; t < 3000 && daemon_metric(d, "saed_streams") != 0; t++)
        usleep(10000);
    int fd = stream_open(d, "");
    CHECK(fd >= 0 && send_chunk(fd, x, 100 * D_IN * 4) == 0, "rows before the deadline");
    usleep(1500 * 1000);
    CHECK(send_chunk(fd, x + 100 * D_IN, 100 * D_IN * 4) == 0, "rows after it");
    struct sreply r;
    stream_close(fd, true, &r);
    CHECK(r.status == 200, "deadline: status %d", r.status);
    CHECK(!strcmp(end_str(&r, "stopped"), "deadline"), "stopped: %s", end_str(&r, "stopped"));
    CHECK(end_rows(&r) >= 0 && end_rows(&r) < 200 && (size_t)end_rows(&r) == r.n_rows,
          "rows before the deadline: %lld", end_rows(&r));
    sreply_free(&r);
}

/* Copies src to dst by a rename (so a reader sees one file or the other). */
static int copy_file(const char *src, const char *dst)
{
    size_t n;
    char *b = sae_fixture_read_file(src, &n);
    char t[620];
    snprintf(t, sizeof t, "%s.tmp", dst);
    FILE *f = b ? fopen(t, "wb") : NULL;
    int rc = f && fwrite(b, 1, n, f) == n ? 0 : -1;
    if (f)
        fclose(f);
    free(b);
    return rc || rename(t, dst) ? -1 : 0;
}

/* A reload with other weights between two halves of a body: the stream
 * stops at a chunk boundary, every row it answered is the old weights',
 * and the status names both digests. */
static void test_reload(void)
{
    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "2", "--max-batch-rows", "64", NULL};
    if (daemon_start(&d, dir_live, args)) {
        CHECK(0, "reload daemon did not start");
        return;
    }
    enum { N = 1000 };
    float *x = malloc(N * D_IN * sizeof *x);
    sae_fixture_random_rows(x, N, D_IN, 1.0, 17);
    size_t ref_len;
    char *ref = encode_ref(&d, x, N, "", &ref_len);
    struct http_resp hr;
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    http(&d, "POST", "/v1/encode", x, D_IN * 4, h, false, &hr);
    char old[64];
    snprintf(old, sizeof old, "%s", hr.digest);
    http_free(&hr);

    double rows0 = daemon_metric(&d, "saed_encoded_rows_total");
    int fd = stream_open(&d, "");
    CHECK(fd >= 0 && send_chunk(fd, x, 500 * D_IN * 4) == 0, "first half sent");
    /* Seven whole chunks of 64 are queued at once; let them be encoded. */
    CHECK(wait_metric(&d, "saed_encoded_rows_total", rows0 + 448) >= rows0 + 448,
          "first chunks encoded");
    char live_w[600], b_w[600];
    snprintf(live_w, sizeof live_w, "%s/sae_weights.safetensors", dir_live);
    snprintf(b_w, sizeof b_w, "%s/sae_weights.safetensors", dir_b);
    CHECK(copy_file(b_w, live_w) == 0, "swap weights");
    daemon_signal(&d, SIGHUP);
    CHECK(wait_metric(&d, "saed_reloads_total{result=\"ok\"}", 1) == 1, "reloaded");
    CHECK(send_chunk(fd, x + 500 * D_IN, 500 * D_IN * 4) == 0, "second half sent");
    struct sreply r;
    stream_close(fd, true, &r);
    long long n = end_rows(&r);
    CHECK(r.status == 200 && !strcmp(end_str(&r, "stopped"), "reload"), "stopped: %s",
          end_str(&r, "stopped"));
    CHECK(n >= 448 && n < N && n % 64 == 0 && (size_t)n == r.n_rows,
          "stopped at a chunk boundary: %lld rows", n);
    CHECK(ref && r.rows_len == rows_prefix(ref, ref_len, (size_t)n) &&
              !memcmp(r.rows, ref, r.rows_len),
          "every row answered is the old weights'");
    CHECK(!strcmp(end_str(&r, "weights_digest"), old), "status names the old digest");
    CHECK(strlen(end_str(&r, "new_weights_digest")) == 32 &&
              strcmp(end_str(&r, "new_weights_digest"), old),
          "and the new one");
    sreply_free(&r);
    free(ref);
    free(x);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "reload daemon exit status");
}

/* max_stream_spool_bytes: cap is set so that three chunks' frames fit and
 * a fourth does not. The stream stops after 3 chunks with "spool_full",
 * the rows it answered are /v1/encode's, the reply is within the cap
 * (its status frame aside), and the rest of the body is read and dropped. */
static void test_spool_cap(const char *ref, size_t ref_len, const float *x, size_t n_rows)
{
    uint64_t cap = 4 * 16 + rows_prefix(ref, ref_len, 4 * CHUNK) - 1;
    char capv[32];
    snprintf(capv, sizeof capv, "%llu", (unsigned long long)cap);
    const char *args[] = {"--quiet", "--threads", "2", "--max-batch-rows", "64",
                          "--max-stream-spool-bytes", capv, NULL};
    struct daemon d;
    if (daemon_start(&d, dir_a, args)) {
        CHECK(0, "spool cap daemon did not start");
        return;
    }
    int fd = stream_open(&d, "");
    CHECK(fd >= 0 && send_chunk(fd, x, n_rows * D_IN * 4) == 0, "rows sent");
    struct sreply r;
    stream_close(fd, true, &r);
    long long n = end_rows(&r);
    CHECK(r.status == 200 && !strcmp(end_str(&r, "stopped"), "spool_full"), "stopped: %s",
          end_str(&r, "stopped"));
    CHECK(n == 3 * CHUNK && (size_t)n == r.n_rows, "three chunks answered: %lld", n);
    CHECK(r.rows_len == rows_prefix(ref, ref_len, 3 * CHUNK) && !memcmp(r.rows, ref, r.rows_len),
          "the rows answered are /v1/encode's");
    CHECK(strstr(end_str(&r, "message"), "max_stream_spool_bytes") != NULL, "message: %s",
          end_str(&r, "message"));
    sreply_free(&r);
    CHECK(wait_metric(&d, "saed_streams_ended_total{stopped=\"spool_full\"}", 1) == 1,
          "counted in /metrics");
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "spool cap daemon exit status");
}

int main(void)
{
    tmp = h_tmpdir("stream");
    if (!tmp)
        return 1;
    snprintf(dir_a, sizeof dir_a, "%s/a", tmp);
    snprintf(dir_b, sizeof dir_b, "%s/b", tmp);
    snprintf(dir_live, sizeof dir_live, "%s/live", tmp);
    if (h_write_model(dir_a, D_IN, D_SAE, SAE_ARCH_STANDARD, SAE_NORM_NONE, 1) ||
        h_write_model(dir_b, D_IN, D_SAE, SAE_ARCH_STANDARD, SAE_NORM_NONE, 2) ||
        h_write_model(dir_live, D_IN, D_SAE, SAE_ARCH_STANDARD, SAE_NORM_NONE, 1))
        return 1;
    struct daemon d;
    const char *args[] = {"--quiet", "--threads", "2", "--max-batch-rows", "64", NULL};
    if (daemon_start(&d, dir_a, args)) {
        fprintf(stderr, "saed did not start\n");
        return 1;
    }
    test_in_order(&d);
    test_many_rows(&d);
    test_malformed(&d);
    test_abort(&d);
    enum { N_CAP = 1000 };
    float *xc = malloc(N_CAP * D_IN * sizeof *xc);
    sae_fixture_random_rows(xc, N_CAP, D_IN, 1.0, 18);
    size_t ref_len = 0;
    char *ref = encode_ref(&d, xc, N_CAP, "", &ref_len);
    daemon_signal(&d, SIGTERM);
    CHECK(daemon_wait(&d, 20000) == 0, "daemon exit status");
    if (ref)
        test_spool_cap(ref, ref_len, xc, N_CAP);
    CHECK(ref != NULL, "the spool cap's reference rows");
    free(ref);
    free(xc);

    struct daemon dl;
    const char *al[] = {"--quiet", "--threads", "2", "--max-batch-rows", "64",
                        "--max-streams", "1", "--stream-timeout-s", "1", NULL};
    if (daemon_start(&dl, dir_a, al) == 0) {
        test_limit(&dl);
        test_deadline(&dl);
        daemon_signal(&dl, SIGTERM);
        CHECK(daemon_wait(&dl, 20000) == 0, "limits daemon exit status");
    } else {
        CHECK(0, "limits daemon did not start");
    }
    test_reload();
    sae_fixture_rmtree(tmp);
    int f = h_failures();
    fprintf(stderr, "test_stream: %d failure(s)\n", f);
    return f ? 1 : 0;
}
