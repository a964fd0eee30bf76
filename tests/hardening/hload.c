/* hload.c: a small closed-loop HTTP/1.1 load generator that records the
 * latency of every response by status, which wrk cannot (its Lua hooks have
 * no clock). Used by the overload test, where the claim is about the
 * latency of the 503s separately from the accepted requests.
 *
 *   hload --port P --conns N --seconds S --request FILE [--request FILE ...]
 *         [--timeout-ms T]
 *
 * Each connection sends a request (connection i uses request file i mod
 * the number of files; each file holds the raw request bytes, keep-alive),
 * waits for the whole response, records status and latency, and sends the
 * next one at once. A closed connection is reopened. At the end a JSON
 * summary goes to stdout:
 *   {"total": n, "statuses": {"200": {"n", "p50_ms", "p99_ms", "max_ms"}, ...},
 *    "retry_after_missing": n, "errors": {"connect", "read", "timeout"}}
 * retry_after_missing counts 503 responses without a Retry-After header.
 * Exit status 0, or 2 for bad usage. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQ 8
#define RBUF (1 << 20)

struct req {
    char *data;
    size_t len;
};

/* One connection's state. */
struct conn {
    int fd;
    const struct req *rq;
    size_t sent;
    char *buf; /* (RBUF) response bytes so far */
    size_t got;
    double t_start; /* when the request's first byte was sent */
};

/* Latencies of one status, grown as needed. */
struct series {
    int status;
    double *ms;
    size_t n, cap;
};

static struct series series[32];
static size_t n_series;
static unsigned long retry_missing, err_connect, err_read, err_timeout;
static struct sockaddr_in addr;
static int ep;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void record(int status, double ms)
{
    struct series *s = NULL;
    for (size_t i = 0; i < n_series; i++)
        if (series[i].status == status)
            s = &series[i];
    if (!s) {
        if (n_series == sizeof series / sizeof *series)
            return;
        s = &series[n_series++];
        s->status = status;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->ms = realloc(s->ms, s->cap * sizeof *s->ms);
        if (!s->ms) {
            perror("hload");
            exit(1);
        }
    }
    s->ms[s->n++] = ms;
}

static int conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->sent = 0;
    c->got = 0;
    c->t_start = now_ms();
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
}

/* Reopens after a failure, counting connect failures. */
static void conn_reopen(struct conn *c)
{
    conn_close(c);
    if (conn_open(c))
        err_connect++;
}

/* A header's value in the header block [h, end), or NULL. */
static const char *header(const char *h, const char *end, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (const char *p = h; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > n && !strncasecmp(p, name, n) && p[n] == ':') {
            const char *v = p + n + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *len = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Whether c->buf holds a whole response; if so records it and returns 1
 * (*close_after when the server said Connection: close). */
static int response_done(struct conn *c, bool *close_after)
{
    char *hend = memmem(c->buf, c->got, "\r\n\r\n", 4);
    if (!hend)
        return 0;
    size_t hlen = (size_t)(hend - c->buf) + 4, vlen;
    const char *cl = header(c->buf, hend, "Content-Length", &vlen);
    size_t body = cl ? strtoul(cl, NULL, 10) : 0;
    if (c->got < hlen + body)
        return 0;
    int status = atoi(c->buf + 9);
    record(status, now_ms() - c->t_start);
    if (status == 503 && !header(c->buf, hend, "Retry-After", &vlen))
        retry_missing++;
    const char *conn = header(c->buf, hend, "Connection", &vlen);
    *close_after = conn && vlen >= 5 && !strncasecmp(conn, "close", 5);
    size_t rest = c->got - hlen - body;
    memmove(c->buf, c->buf + hlen + body, rest);
    c->got = rest;
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const struct series *s, double p)
{
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->ms[i];
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

int main(int argc, char **argv)
{
    int port = 0, conns = 0;
    double seconds = 0, timeout_ms = 10000;
    struct req reqs[MAX_REQ];
    size_t n_req = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--conns"))
            conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout-ms"))
            timeout_ms = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--request") && n_req < MAX_REQ) {
            reqs[n_req].data = slurp(argv[i + 1], &reqs[n_req].len);
            if (!reqs[n_req].data) {
                fprintf(stderr, "hload: cannot read %s\n", argv[i + 1]);
                return 2;
            }
            n_req++;
        } else {
            fprintf(stderr, "hload: bad argument %s\n", argv[i]);
            return 2;
        }
    }
    if (port <= 0 || conns <= 0 || seconds <= 0 || !n_req) {
        fprintf(stderr, "usage: hload --port P --conns N --seconds S --request FILE...\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    for (int i = 0; i < conns; i++) {
        cs[i].rq = &reqs[(size_t)i % n_req];
        cs[i].buf = malloc(RBUF);
        cs[i].fd = -1;
        if (conn_open(&cs[i]))
            err_connect++;
    }
    double end = now_ms() + seconds * 1e3;
    struct epoll_event evs[256];
    while (now_ms() < end) {
        int n = epoll_wait(ep, evs, 256, 50);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->fd < 0)
                continue;
            if ((evs[k].events & EPOLLOUT) && c->sent < c->rq->len) {
                ssize_t w = send(c->fd, c->rq->data + c->sent, c->rq->len - c->sent, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN) {
                    err_read++;
                    conn_reopen(c);
                    continue;
                }
                if (w > 0)
                    c->sent += (size_t)w;
                if (c->sent == c->rq->len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t r = recv(c->fd, c->buf + c->got, RBUF - c->got, 0);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN)
                        continue;
                    /* Closed with a request outstanding: a failure unless
                     * nothing had been sent yet on a reused connection. */
                    if (c->sent > 0)
                        err_read++;
                    conn_reopen(c);
                    continue;
                }
                c->got += (size_t)r;
                bool close_after = false;
                if (response_done(c, &close_after)) {
                    if (close_after) {
                        conn_reopen(c);
                        continue;
                    }
                    c->sent = 0;
                    c->t_start = now_ms();
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                } else if (c->got == RBUF) {
                    err_read++;
                    conn_reopen(c);
                }
            }
        }
        double t = now_ms();
        for (int i = 0; i < conns; i++)
            if (cs[i].fd >= 0 && t - cs[i].t_start > timeout_ms) {
                err_timeout++;
                conn_reopen(&cs[i]);
            }
    }
    unsigned long total = 0;
    printf("{\"statuses\": {");
    for (size_t i = 0; i < n_series; i++) {
        struct series *s = &series[i];
        qsort(s->ms, s->n, sizeof *s->ms, cmp_double);
        total += s->n;
        printf("%s\"%d\": {\"n\": %zu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}",
               i ? ", " : "", s->status, s->n, pct(s, 0.5), pct(s, 0.99), s->ms[s->n - 1]);
    }
    printf("}, \"total\": %lu, \"retry_after_missing\": %lu, \"errors\": {\"connect\": %lu, "
           "\"read\": %lu, \"timeout\": %lu}}\n",
           total, retry_missing, err_connect, err_read, err_timeout);
    return 0;
}
