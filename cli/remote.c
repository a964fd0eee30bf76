/* remote.c: the saed client behind `sae encode --server` (remote.h). One
 * request at a time over one keep-alive socket; replies are read whole
 * (Content-Length or chunked). Retries follow the Python client's rules: 503
 * waits Retry-After, a lost connection reconnects after a pause growing from
 * 50 ms to 2 s, all within one budget per job. */
#define _POSIX_C_SOURCE 200809L
#include "remote.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* One reply: status, the headers saed's protocol needs, the body (owned). */
typedef struct reply {
    int status;
    double retry_after;
    char digest[72];
    int close;
    char *body;
    size_t len;
} reply;

/* Sleeps s seconds. */
static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Opens r->fd to host:port; -1 with errno on failure. */
static int dial(sae_remote *r)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai, *p;
    int rc = getaddrinfo(r->host, r->port, &hints, &ai);
    if (rc) {
        errno = EHOSTUNREACH;
        return -1;
    }
    int fd = -1;
    for (p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, p->ai_addr, p->ai_addrlen) == 0)
            break;
        int e = errno;
        close(fd);
        fd = -1;
        errno = e;
    }
    freeaddrinfo(ai);
    r->fd = fd;
    return fd < 0 ? -1 : 0;
}

/* Writes all of buf; -1 on a lost connection. */
static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* A growing receive buffer over the socket. */
typedef struct rbuf {
    int fd;
    char *d;
    size_t len, pos, cap;
} rbuf;

/* Reads more bytes into b; -1 on end of stream or error. */
static int fill(rbuf *b)
{
    if (b->len == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        char *d = realloc(b->d, cap);
        if (!d)
            return -1;
        b->d = d;
        b->cap = cap;
    }
    ssize_t k;
    do
        k = recv(b->fd, b->d + b->len, b->cap - b->len, 0);
    while (k < 0 && errno == EINTR);
    if (k <= 0)
        return -1;
    b->len += (size_t)k;
    return 0;
}

/* The next CRLF-terminated line (NUL-terminated in place); NULL when lost. */
static char *line(rbuf *b)
{
    for (;;) {
        char *e = b->len > b->pos ? memchr(b->d + b->pos, '\n', b->len - b->pos) : NULL;
        if (e) {
            char *s = b->d + b->pos;
            b->pos = (size_t)(e - b->d) + 1;
            *e = 0;
            if (e > s && e[-1] == '\r')
                e[-1] = 0;
            return s;
        }
        if (fill(b))
            return NULL;
    }
}

/* Appends n body bytes from b to out; -1 when lost. */
static int take(rbuf *b, size_t n, reply *out)
{
    while (b->len - b->pos < n)
        if (fill(b))
            return -1;
    char *d = realloc(out->body, out->len + n + 1);
    if (!d)
        return -1;
    memcpy(d + out->len, b->d + b->pos, n);
    out->body = d;
    out->len += n;
    d[out->len] = 0;
    b->pos += n;
    return 0;
}

/* Reads one reply from r->fd into out; -1 when the connection was lost. */
static int read_reply(sae_remote *r, reply *out)
{
    rbuf b = {.fd = r->fd};
    int rc = -1;
    char *s = line(&b);
    if (!s || sscanf(s, "HTTP/1.%*d %d", &out->status) != 1)
        goto done;
    long long clen = -1;
    int chunked = 0;
    while ((s = line(&b)) && *s) {
        char *v = strchr(s, ':');
        if (!v)
            continue;
        *v++ = 0;
        v += strspn(v, " \t");
        if (!strcasecmp(s, "content-length"))
            clen = atoll(v);
        else if (!strcasecmp(s, "transfer-encoding") && strstr(v, "chunked"))
            chunked = 1;
        else if (!strcasecmp(s, "retry-after"))
            out->retry_after = atof(v);
        else if (!strcasecmp(s, "connection") && !strcasecmp(v, "close"))
            out->close = 1;
        else if (!strcasecmp(s, "x-sae-weights-digest"))
            snprintf(out->digest, sizeof out->digest, "%s", v);
    }
    if (!s)
        goto done;
    if (chunked) {
        for (;;) {
            if (!(s = line(&b)))
                goto done;
            size_t n = strtoul(s, NULL, 16);
            if (n == 0) {
                while ((s = line(&b)) && *s) /* trailers */
                    ;
                break;
            }
            if (take(&b, n, out) || !line(&b))
                goto done;
        }
    } else if (clen > 0 && take(&b, (size_t)clen, out)) {
        goto done;
    }
    rc = 0;
done:
    free(b.d);
    return rc;
}

/* Sends one request and reads its reply, retrying 503 and lost connections
 * within r->budget_s. Returns SAE_EXIT_OK with out filled (any status but
 * 503), or an exit code after printing why. */
static int call(sae_remote *r, const char *method, const char *path, const void *body,
                size_t len, reply *out)
{
    double backoff = 0.05;
    char why[300];
    for (;;) {
        free(out->body);
        memset(out, 0, sizeof *out);
        char head[1024];
        int hl = snprintf(head, sizeof head,
                          "%s %s HTTP/1.1\r\nHost: %s:%s\r\nAccept: %s\r\n%s%s%s"
                          "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                          method, path, r->host, r->port,
                          body ? "application/octet-stream" : "application/json",
                          r->api_key ? "Authorization: Bearer " : "",
                          r->api_key ? r->api_key : "", r->api_key ? "\r\n" : "", len);
        double wait;
        if ((r->fd >= 0 || dial(r) == 0) && send_all(r->fd, head, (size_t)hl) == 0 &&
            (!len || send_all(r->fd, body, len) == 0) && read_reply(r, out) == 0) {
            if (out->close) {
                close(r->fd);
                r->fd = -1;
            }
            if (out->status != 503)
                return SAE_EXIT_OK;
            wait = out->retry_after > 0 ? out->retry_after : 1;
            snprintf(why, sizeof why, "503 from saed at %s:%s", r->host, r->port);
        } else {
            snprintf(why, sizeof why, "cannot reach saed at %s:%s: %s", r->host, r->port,
                     strerror(errno ? errno : ECONNRESET));
            if (r->fd >= 0)
                close(r->fd);
            r->fd = -1;
            wait = backoff;
            backoff = backoff * 2 < 2 ? backoff * 2 : 2;
        }
        if (r->budget_s <= 0)
            return cli_fail("%s (gave up retrying)", why);
        if (wait > r->budget_s)
            wait = r->budget_s;
        r->budget_s -= wait;
        sleep_s(wait);
    }
}

/* Prints an error reply of `what` and returns SAE_EXIT_FAILURE. */
static int fail_reply(const char *what, const reply *rep)
{
    json_t *j = rep->body ? json_loads(rep->body, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    int rc = cli_fail("%s: HTTP %d %s: %s", what, rep->status, code ? code : "",
                      msg ? msg : "");
    json_decref(j);
    return rc;
}

int remote_open(sae_remote *r, const char *url, const char *api_key, const char *sae,
                double retry_s)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->api_key = api_key;
    r->budget_s = retry_s;
    const char *h = strncmp(url, "http://", 7) ? url : url + 7;
    size_t hn = strcspn(h, ":/");
    if (!hn || hn >= sizeof r->host || !strncmp(url, "https://", 8))
        return cli_fail("--server %s: not http://HOST[:PORT]", url);
    memcpy(r->host, h, hn);
    const char *p = h + hn;
    size_t pn = 0;
    if (*p == ':') {
        pn = strspn(p + 1, "0123456789");
        if (!pn || pn >= sizeof r->port)
            return cli_fail("--server %s: bad port", url);
        memcpy(r->port, p + 1, pn);
        p += 1 + pn;
    } else {
        strcpy(r->port, "80");
    }
    size_t base = strlen(p);
    while (base && p[base - 1] == '/')
        base--;
    if (sae && strspn(sae, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
                   strlen(sae))
        return cli_fail("--sae %s: an id is [A-Za-z0-9._-]+", sae);
    if ((size_t)snprintf(r->prefix, sizeof r->prefix, "%.*s%s%s", (int)base, p,
                         sae ? "/v1/saes/" : "/v1", sae ? sae : "") >= sizeof r->prefix)
        return cli_fail("--server/--sae: too long");

    char path[400];
    snprintf(path, sizeof path, "%s/model", r->prefix);
    reply rep = {0};
    int rc = call(r, "GET", path, NULL, 0, &rep);
    if (rc == SAE_EXIT_OK && rep.status != 200)
        rc = fail_reply(path, &rep);
    json_t *j = rc == SAE_EXIT_OK ? json_loads(rep.body ? rep.body : "", 0, NULL) : NULL;
    if (rc == SAE_EXIT_OK) {
        json_t *lim = json_object_get(j, "limits");
        json_int_t mr = json_integer_value(json_object_get(lim, "max_request_rows"));
        json_int_t mb = json_integer_value(json_object_get(lim, "max_body_bytes"));
        r->d_in = (size_t)json_integer_value(json_object_get(j, "d_in"));
        r->d_sae = (size_t)json_integer_value(json_object_get(j, "d_sae"));
        const char *dg = json_string_value(json_object_get(j, "weights_digest"));
        const char *ar = json_string_value(json_object_get(j, "architecture"));
        if (!r->d_in || !dg)
            rc = cli_fail("%s: not a saed /v1/model reply", path);
        else {
            snprintf(r->digest, sizeof r->digest, "%s", dg);
            snprintf(r->arch, sizeof r->arch, "%s", ar ? ar : "");
            r->max_rows = mr > 0 ? (size_t)mr : 16384; /* an older saed: the default */
            size_t by_body = (mb > 0 ? (size_t)mb : (size_t)64 << 20) / (4 * r->d_in);
            if (by_body < r->max_rows)
                r->max_rows = by_body ? by_body : 1;
        }
    }
    json_decref(j);
    free(rep.body);
    return rc;
}

int remote_encode(sae_remote *r, const float *x, size_t n, const char *query, sae_sparse *sp)
{
    char path[480];
    snprintf(path, sizeof path, "%s/encode%s", r->prefix, query);
    reply rep = {0};
    int rc = call(r, "POST", path, x, n * r->d_in * sizeof *x, &rep);
    if (rc != SAE_EXIT_OK)
        goto out;
    if (rep.status != 200) {
        rc = fail_reply(path, &rep);
        goto out;
    }
    if (strcmp(rep.digest, r->digest)) {
        rc = cli_fail("the server's weights changed during the job: started with "
                      "X-SAE-Weights-Digest %s, a reply carried %s",
                      r->digest, rep.digest);
        goto out;
    }
    size_t words = rep.len / 4, p = 0;
    const unsigned char *b = (const unsigned char *)rep.body;
    uint32_t *idx = malloc((r->d_sae + 1) * sizeof *idx);
    float *val = malloc((r->d_sae + 1) * sizeof *val);
    sae_error err;
    sae_error_clear(&err);
    size_t i = 0;
    for (; idx && val && i < n && p < words && rep.len % 4 == 0; i++) {
        uint32_t c;
        memcpy(&c, b + 4 * p, 4); /* saed's wire is little-endian, as is every host we build on */
        if (c > r->d_sae || p + 1 + 2 * (size_t)c > words)
            break;
        memcpy(idx, b + 4 * (p + 1), 4 * (size_t)c);
        memcpy(val, b + 4 * (p + 1 + c), 4 * (size_t)c);
        if (sae_sparse_push_row(sp, idx, val, c, &err))
            break;
        p += 1 + 2 * (size_t)c;
    }
    if (i != n || p != words)
        rc = cli_fail("%s: binary reply does not hold %zu rows", path, n);
    free(idx);
    free(val);
out:
    free(rep.body);
    return rc;
}

void remote_close(sae_remote *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}
