/* loadgen.c: a small closed-loop HTTP load generator for saed, and the raw
 * sgemm/sgemv baseline measured in the same run (bench/daemon.sh).
 *
 *   loadgen sgemm --d-in N --d-sae N --rows R [--threads T] [--seconds S]
 *       raw cblas_sgemm (cblas_sgemv when R is 1) rows/s on those shapes, through
 *       sae_gemm_rows: the call the encoder makes
 *   loadgen http --port P --rows R --d-in N --format json|binary
 *       [--clients C] [--seconds S] [--warmup S] [--accept-binary] [--gzip]
 *       [--api-key K] [--seed S] [--pid PID] [--saes ID,ID,...]
 *       C clients, each on its own keep-alive connection, post encode
 *       requests of R random rows back to back for S seconds; with --pid,
 *       the server's CPU seconds over the same window too; with --saes, to
 *       /v1/saes/{id}/encode, each client taking the ids in turn from its
 *       own starting point (so the SAEs are mixed at every moment)
 *   loadgen compare --port P --port-b Q --model DIR --rows R [--seed S]
 *       R one-row requests sent all at once to P (batching on) and one by
 *       one to Q (batching off); reports how many rows come back
 *       bit-identical and the largest difference, relative to the row's
 *       largest value and to sum_k |x'_k W_kj| (the dot product's scale)
 *
 * Each prints one JSON line on stdout: rows/s, requests/s and, for http,
 * latency percentiles (p50/p90/p99, microseconds) and status counts. Bodies
 * are built once before the clock starts, so the generator's own cost is
 * sending bytes and reading replies. Why not wrk: its Lua body generation
 * would have to embed 2 MB JSON bodies and it cannot report rows; this keeps
 * the measurement and its arithmetic in one readable file. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io/clock.h"
#include "sae/encode.h"
#include "sae/model.h"
#include "io/rng.h"

/* CPU seconds (user + system) this process has used, all threads. */
static double process_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU seconds (utime + stime) process pid has used, from /proc; -1 if it
 * cannot be read. CPU time rather than wall time is what stays comparable
 * when other processes share the machine. */
static double pid_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    /* After "pid (comm)": state is field 3, utime 14, stime 15. */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Prints the message and exits 1. */
static void die(const char *msg)
{
    fprintf(stderr, "loadgen: error: %s\n", msg);
    exit(1);
}

/* Options of both modes. */
struct opts {
    const char *mode;
    int port;
    size_t d_in, d_sae, rows;
    int threads, clients;
    double seconds, warmup;
    bool json, accept_binary, gzip;
    const char *api_key;
    uint64_t seed;
    int port_b;
    const char *model;
    int pid;                /* http: the server, whose CPU time is read over the window */
    const char *saes;       /* http: comma-separated SAE ids, or NULL (/v1/encode) */
};

/* Reads the options of every mode. */
static void parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.d_in = 768, .d_sae = 24576, .rows = 1, .threads = 1, .clients = 1,
                       .seconds = 5, .warmup = 1, .json = false, .seed = 1};
    if (argc < 2)
        die("usage: loadgen sgemm|http|compare [options] (see the top of loadgen.c)");
    o->mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(name) (!strcmp(a, name) && v && (i++, 1))
        if (TAKE("--port"))
            o->port = atoi(v);
        else if (TAKE("--d-in"))
            o->d_in = strtoull(v, NULL, 10);
        else if (TAKE("--d-sae"))
            o->d_sae = strtoull(v, NULL, 10);
        else if (TAKE("--rows"))
            o->rows = strtoull(v, NULL, 10);
        else if (TAKE("--threads"))
            o->threads = atoi(v);
        else if (TAKE("--clients"))
            o->clients = atoi(v);
        else if (TAKE("--seconds"))
            o->seconds = atof(v);
        else if (TAKE("--warmup"))
            o->warmup = atof(v);
        else if (TAKE("--format"))
            o->json = !strcmp(v, "json");
        else if (TAKE("--api-key"))
            o->api_key = v;
        else if (TAKE("--seed"))
            o->seed = strtoull(v, NULL, 10);
        else if (TAKE("--port-b"))
            o->port_b = atoi(v);
        else if (TAKE("--model"))
            o->model = v;
        else if (TAKE("--pid"))
            o->pid = atoi(v);
        else if (TAKE("--saes"))
            o->saes = v;
        else if (!strcmp(a, "--accept-binary"))
            o->accept_binary = true;
        else if (!strcmp(a, "--gzip"))
            o->gzip = true;
        else {
            fprintf(stderr, "loadgen: unknown or incomplete option %s\n", a);
            exit(2);
        }
#undef TAKE
    }
    if (!o->rows || !o->d_in || !o->d_sae || o->clients < 1 || o->threads < 1)
        die("rows, d-in, d-sae, clients and threads must be positive");
}

/* ---- raw BLAS ---- */

static void run_sgemm(const struct opts *o)
{
    size_t m = o->rows, k = o->d_in, n = o->d_sae;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b),
          *c = malloc(m * n * sizeof *c);
    if (!a || !b || !c)
        die("out of memory");
    sae_rng r;
    sae_rng_seed(&r, o->seed);
    for (size_t i = 0; i < m * k; i++)
        a[i] = (float)sae_rng_normal(&r);
    for (size_t i = 0; i < k * n; i++)
        b[i] = (float)(sae_rng_normal(&r) / sqrt((double)k));
    sae_set_blas_threads(o->threads);
    size_t calls = 0;
    double t0 = 0, t_end = 0, cpu0 = 0, cpu_end = 0;
    double start = sae_clock_s();
    for (;;) {
        double t = sae_clock_s();
        if (t0 == 0 && t - start >= o->warmup) {
            t0 = t;
            cpu0 = process_cpu_s();
        }
        if (t0 && t - t0 >= o->seconds) {
            t_end = t;
            cpu_end = process_cpu_s();
            break;
        }
        sae_gemm_rows(b, false, k, n, a, m, c);
        if (t0)
            calls++;
    }
    double el = t_end - t0, cpu = cpu_end - cpu0;
    printf("{\"mode\":\"sgemm\",\"d_in\":%zu,\"d_sae\":%zu,\"rows\":%zu,\"threads\":%d,"
           "\"calls\":%zu,\"seconds\":%.3f,\"rows_per_s\":%.1f,\"gflops\":%.1f,"
           "\"cpu_s\":%.3f,\"rows_per_cpu_s\":%.1f}\n",
           k, n, m, o->threads, calls, el, (double)(calls * m) / el,
           2.0 * (double)m * (double)k * (double)n * (double)calls / el / 1e9, cpu,
           cpu > 0 ? (double)(calls * m) / cpu : 0.0);
    free(a);
    free(b);
    free(c);
}

/* ---- HTTP ---- */

/* The prebuilt request (headers + body) every client sends. */
struct request {
    char *bytes;
    size_t len;
};

/* A request to path: headers and R random rows, as JSON or float32 (the
 * same rows for every path). */
static struct request build_request(const struct opts *o, const char *path)
{
    size_t n = o->rows * o->d_in;
    float *x = malloc(n * sizeof *x);
    sae_rng r;
    sae_rng_seed(&r, o->seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)sae_rng_normal(&r);
    char *body;
    size_t blen;
    if (o->json) {
        size_t cap = 32 + n * 18;
        body = malloc(cap);
        blen = (size_t)snprintf(body, cap, "{\"inputs\":[");
        for (size_t i = 0; i < o->rows; i++) {
            body[blen++] = '[';
            for (size_t j = 0; j < o->d_in; j++)
                blen += (size_t)snprintf(body + blen, cap - blen, j ? ",%.9g" : "%.9g",
                                         (double)x[i * o->d_in + j]);
            body[blen++] = ']';
            if (i + 1 < o->rows)
                body[blen++] = ',';
        }
        blen += (size_t)snprintf(body + blen, cap - blen, "]}");
    } else {
        body = (char *)x;
        blen = n * sizeof *x;
        x = NULL;
    }
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n"
                      "%s%s%s%s%sContent-Length: %zu\r\n\r\n",
                      path, o->port, o->json ? "application/json" : "application/octet-stream",
                      o->accept_binary ? "Accept: application/octet-stream\r\n" : "",
                      o->gzip ? "Accept-Encoding: gzip\r\n" : "",
                      o->api_key ? "Authorization: Bearer " : "", o->api_key ? o->api_key : "",
                      o->api_key ? "\r\n" : "", blen);
    struct request rq = {.len = (size_t)hl + blen};
    rq.bytes = malloc(rq.len);
    memcpy(rq.bytes, head, (size_t)hl);
    memcpy(rq.bytes + hl, body, blen);
    free(body);
    free(x);
    return rq;
}

/* The requests of a run: one per SAE of --saes, else one to /v1/encode;
 * *n their count. */
static struct request *build_requests(const struct opts *o, size_t *n)
{
    *n = 1;
    for (const char *p = o->saes; p && *p; p++)
        *n += *p == ',';
    struct request *rq = calloc(*n, sizeof *rq);
    if (!rq)
        die("out of memory");
    if (!o->saes) {
        rq[0] = build_request(o, "/v1/encode");
        return rq;
    }
    const char *p = o->saes;
    for (size_t i = 0; i < *n; i++) {
        size_t len = strcspn(p, ",");
        char path[256];
        if (!len || len > 128)
            die("--saes: an empty or too long SAE id");
        snprintf(path, sizeof path, "/v1/saes/%.*s/encode", (int)len, p);
        rq[i] = build_request(o, path);
        p += len + (p[len] == ',');
    }
    return rq;
}

/* One client: its connection, latencies (microseconds) and counts. */
struct client {
    const struct opts *o;
    const struct request *rq;       /* (n_rq) taken in turn from rq[next] */
    size_t n_rq, next;
    double t_measure, t_stop;       /* shared clock marks */
    uint32_t *lat;                  /* (n_lat) owned */
    size_t n_lat, cap_lat;
    size_t ok, errors, reconnects;
    unsigned status_hist[6];        /* 1xx..5xx by first digit, [0] other */
};

/* A TCP connection to 127.0.0.1:port with Nagle off, or -1. */
static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends all n bytes; 0 or -1. */
static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads one response (status line, headers, Content-Length body); returns
 * the status or -1. buf is the client's scratch of cap bytes. */
static int read_response(int fd, char *buf, size_t cap)
{
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == cap)
            return -1;
        ssize_t k = recv(fd, buf + have, cap - have, 0);
        if (k <= 0)
            return -1;
        have += (size_t)k;
        end = memmem(buf, have, "\r\n\r\n", 4);
    }
    int status = atoi(buf + 9);
    size_t head = (size_t)(end - buf) + 4, clen = 0;
    for (char *p = buf; p < end; p++)
        if ((*p == 'C' || *p == 'c') && !strncasecmp(p, "Content-Length:", 15)) {
            clen = strtoull(p + 15, NULL, 10);
            break;
        }
    size_t got = have - head;
    while (got < clen) {
        ssize_t k = recv(fd, buf, cap < clen - got ? cap : clen - got, 0);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return status;
}

/* One client: requests back to back on a keep-alive connection, latencies
 * kept from the end of the warm-up to the end of the run. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int fd = -1;
    for (;;) {
        double t = sae_clock_s();
        if (t >= c->t_stop)
            break;
        if (fd < 0 && (fd = dial(c->o->port)) < 0) {
            c->errors++;
            usleep(1000);
            continue;
        }
        int st = -1;
        const struct request *rq = &c->rq[c->next++ % c->n_rq];
        if (!send_all(fd, rq->bytes, rq->len))
            st = read_response(fd, buf, cap);
        double t1 = sae_clock_s();
        if (st < 0) {
            close(fd);
            fd = -1;
            c->reconnects++;
            if (t >= c->t_measure)
                c->errors++;
            continue;
        }
        if (t < c->t_measure)
            continue;
        c->status_hist[st >= 100 && st < 600 ? st / 100 : 0]++;
        if (st == 200) {
            c->ok++;
            if (c->n_lat == c->cap_lat) {
                c->cap_lat = c->cap_lat ? 2 * c->cap_lat : 4096;
                c->lat = realloc(c->lat, c->cap_lat * sizeof *c->lat);
            }
            c->lat[c->n_lat++] = (uint32_t)((t1 - t) * 1e6);
        } else {
            c->errors++;
        }
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

/* qsort order of latencies. */
static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The load run: clients, then rows/s and latency percentiles as one JSON
 * line. */
static void run_http(const struct opts *o)
{
    if (!o->port)
        die("--port is required");
    size_t n_rq;
    struct request *rq = build_requests(o, &n_rq);
    struct client *cl = calloc((size_t)o->clients, sizeof *cl);
    pthread_t *t = calloc((size_t)o->clients, sizeof *t);
    double start = sae_clock_s();
    for (int i = 0; i < o->clients; i++) {
        cl[i] = (struct client){.o = o, .rq = rq, .n_rq = n_rq, .next = (size_t)i,
                                .t_measure = start + o->warmup,
                                .t_stop = start + o->warmup + o->seconds};
        pthread_create(&t[i], NULL, client_main, &cl[i]);
    }
    /* The server's CPU time over exactly the measured window. */
    double cpu0 = -1, cpu1 = -1;
    if (o->pid) {
        double wait = start + o->warmup - sae_clock_s();
        if (wait > 0)
            usleep((useconds_t)(wait * 1e6));
        cpu0 = pid_cpu_s(o->pid);
        wait = start + o->warmup + o->seconds - sae_clock_s();
        if (wait > 0)
            usleep((useconds_t)(wait * 1e6));
        cpu1 = pid_cpu_s(o->pid);
    }
    size_t ok = 0, errors = 0, n_lat = 0, reconnects = 0;
    unsigned hist[6] = {0};
    for (int i = 0; i < o->clients; i++) {
        pthread_join(t[i], NULL);
        ok += cl[i].ok;
        errors += cl[i].errors;
        n_lat += cl[i].n_lat;
        reconnects += cl[i].reconnects;
        for (int k = 0; k < 6; k++)
            hist[k] += cl[i].status_hist[k];
    }
    uint32_t *lat = malloc((n_lat ? n_lat : 1) * sizeof *lat);
    size_t at = 0;
    for (int i = 0; i < o->clients; i++) {
        memcpy(lat + at, cl[i].lat, cl[i].n_lat * sizeof *lat);
        at += cl[i].n_lat;
        free(cl[i].lat);
    }
    qsort(lat, n_lat, sizeof *lat, cmp_u32);
#define PCT(p) (n_lat ? lat[(size_t)((double)(n_lat - 1) * (p))] : 0)
    printf("{\"mode\":\"http\",\"format\":\"%s\",\"saes\":%zu,\"rows\":%zu,\"d_in\":%zu,\"clients\":%d,"
           "\"seconds\":%.3f,\"requests\":%zu,\"errors\":%zu,\"reconnects\":%zu,"
           "\"requests_per_s\":%.1f,\"rows_per_s\":%.1f,\"p50_us\":%u,\"p90_us\":%u,"
           "\"p99_us\":%u,\"max_us\":%u,\"status_2xx\":%u,\"status_4xx\":%u,"
           "\"status_5xx\":%u,\"request_bytes\":%zu,\"server_cpu_s\":%.3f,"
           "\"rows_per_server_cpu_s\":%.1f}\n",
           o->json ? "json" : "binary", o->saes ? n_rq : 0, o->rows, o->d_in, o->clients, o->seconds, ok, errors,
           reconnects, (double)ok / o->seconds, (double)(ok * o->rows) / o->seconds, PCT(0.50),
           PCT(0.90), PCT(0.99), n_lat ? lat[n_lat - 1] : 0, hist[2], hist[4], hist[5], rq[0].len,
           cpu1 - cpu0, cpu0 >= 0 && cpu1 > cpu0 ? (double)(ok * o->rows) / (cpu1 - cpu0) : 0.0);
#undef PCT
    free(lat);
    free(cl);
    free(t);
    for (size_t i = 0; i < n_rq; i++)
        free(rq[i].bytes);
    free(rq);
}

/* ---- batched vs alone ---- */

/* One binary encode of one row on its own connection; the reply into
 * idx/val (cap entries), count in *n. Returns the status or -1. */
static int encode_one(int port, const float *x, size_t d, uint32_t *idx, float *val, size_t cap,
                      size_t *n)
{
    int fd = dial(port);
    if (fd < 0)
        return -1;
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /v1/encode HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      "application/octet-stream\r\nAccept: application/octet-stream\r\n"
                      "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                      d * sizeof *x);
    size_t bufcap = 1 << 20, have = 0;
    char *buf = malloc(bufcap);
    int status = -1;
    if (send_all(fd, head, (size_t)hl) || send_all(fd, (const char *)x, d * sizeof *x))
        goto out;
    for (;;) {
        ssize_t k = recv(fd, buf + have, bufcap - have, 0);
        if (k <= 0)
            break;
        have += (size_t)k;
    }
    char *end = memmem(buf, have, "\r\n\r\n", 4);
    if (!end || have < 12)
        goto out;
    status = atoi(buf + 9);
    const char *p = end + 4;
    uint32_t c;
    if (status != 200 || (size_t)(buf + have - p) < 4)
        goto out;
    memcpy(&c, p, 4);
    if (c > cap || (size_t)(buf + have - p) < 4 + 8 * (size_t)c) {
        status = -1;
        goto out;
    }
    memcpy(idx, p + 4, 4 * (size_t)c);
    memcpy(val, p + 4 + 4 * (size_t)c, 4 * (size_t)c);
    *n = c;
out:
    close(fd);
    free(buf);
    return status;
}

/* State of one concurrent request of run_compare. */
struct one {
    int port;
    const float *x;
    size_t d, cap, n;
    uint32_t *idx;
    float *val;
    int status;
};

/* One request of run_compare, from its own thread. */
static void *one_main(void *arg)
{
    struct one *w = arg;
    w->status = encode_one(w->port, w->x, w->d, w->idx, w->val, w->cap, &w->n);
    return NULL;
}

/* Sends each row as a one-row request to both daemons and compares the
 * answers. */
static void run_compare(const struct opts *o)
{
    if (!o->port || !o->port_b || !o->model)
        die("compare needs --port, --port-b and --model");
    sae_model *m;
    sae_error err;
    if (sae_model_load(o->model, &m, NULL, &err))
        die(err.msg);
    size_t d = m->d_in, ds = m->d_sae, n = o->rows;
    float *x = malloc(n * d * sizeof *x);
    sae_rng r;
    sae_rng_seed(&r, o->seed);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)sae_rng_normal(&r);
    struct one *on = calloc(n, sizeof *on), *off = calloc(n, sizeof *off);
    pthread_t *t = calloc(n, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        on[i] = (struct one){.port = o->port, .x = x + i * d, .d = d, .cap = ds};
        off[i] = (struct one){.port = o->port_b, .x = x + i * d, .d = d, .cap = ds};
        on[i].idx = malloc(ds * 4);
        on[i].val = malloc(ds * 4);
        off[i].idx = malloc(ds * 4);
        off[i].val = malloc(ds * 4);
    }
    for (size_t i = 0; i < n; i++)
        pthread_create(&t[i], NULL, one_main, &on[i]);
    for (size_t i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    for (size_t i = 0; i < n; i++)
        one_main(&off[i]);
    size_t identical = 0, failed = 0, differ_set = 0;
    double worst_row = 0, worst_dot = 0;
    double *a = calloc(ds, sizeof *a), *b = calloc(ds, sizeof *b);
    for (size_t i = 0; i < n; i++) {
        if (on[i].status != 200 || off[i].status != 200) {
            failed++;
            continue;
        }
        identical += on[i].n == off[i].n && !memcmp(on[i].idx, off[i].idx, 4 * on[i].n) &&
                     !memcmp(on[i].val, off[i].val, 4 * on[i].n);
        memset(a, 0, ds * sizeof *a);
        memset(b, 0, ds * sizeof *b);
        for (size_t k = 0; k < on[i].n; k++)
            a[on[i].idx[k]] = on[i].val[k];
        for (size_t k = 0; k < off[i].n; k++)
            b[off[i].idx[k]] = off[i].val[k];
        double maxd = 0, maxv = 0;
        for (size_t j = 0; j < ds; j++) {
            if (a[j] == b[j])
                continue;
            differ_set += (a[j] == 0) != (b[j] == 0);
            double s = 0;
            for (size_t k = 0; k < d; k++) {
                double xk = x[i * d + k] - (m->apply_b_dec_to_input ? m->b_dec[k] : 0.0f);
                s += fabs(xk * (m->w_enc_t ? m->w_enc[j * d + k] : m->w_enc[k * ds + j]));
            }
            double diff = fabs(a[j] - b[j]);
            maxd = fmax(maxd, diff);
            if (s > 0)
                worst_dot = fmax(worst_dot, diff / s);
        }
        for (size_t j = 0; j < ds; j++)
            maxv = fmax(maxv, fmax(fabs(a[j]), fabs(b[j])));
        if (maxv > 0)
            worst_row = fmax(worst_row, maxd / maxv);
    }
    printf("{\"mode\":\"compare\",\"rows\":%zu,\"failed\":%zu,\"identical_rows\":%zu,"
           "\"features_in_one_only\":%zu,\"worst_diff_over_row_max\":%.3g,"
           "\"worst_diff_over_dot_scale\":%.3g}\n",
           n, failed, identical, differ_set, worst_row, worst_dot);
    for (size_t i = 0; i < n; i++) {
        free(on[i].idx);
        free(on[i].val);
        free(off[i].idx);
        free(off[i].val);
    }
    free(a);
    free(b);
    free(on);
    free(off);
    free(t);
    free(x);
    sae_model_free(m);
}

/* Dispatches to the mode. */
int main(int argc, char **argv)
{
    struct opts o;
    parse(argc, argv, &o);
    if (!strcmp(o.mode, "sgemm"))
        run_sgemm(&o);
    else if (!strcmp(o.mode, "http"))
        run_http(&o);
    else if (!strcmp(o.mode, "compare"))
        run_compare(&o);
    else
        die("mode must be sgemm, http or compare");
    return 0;
}
