/* http_parse.c: the parts of a request saed reads itself (http_parse.h). */
#include "http_parse.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/list.h"

/* How many '/'-separated segments s (starting with '/') has. */
static size_t segments(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '/';
    return n;
}

bool http_path_match(const char *pattern, unsigned how, const char *url,
                     char (*args)[HTTP_MAX_ARG_LEN], size_t *n_out)
{
    const char *p = pattern, *u = url;
    size_t n_args = 0;
    while (*p && *u) {
        if (*p != '/' || *u != '/')
            return false;
        p++;
        u++;
        const char *pe = strchr(p, '/'), *ue = strchr(u, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p), ul = ue ? (size_t)(ue - u) : strlen(u);
        if ((how & HTTP_MATCH_FIRST_ARG_SLASHES) && n_args == 0 && pl >= 2 && p[0] == '{') {
            /* Up to the rest-th '/' from the end: one url segment is left for
             * each pattern segment after this one (none left: an empty capture,
             * refused below). */
            const char *end = u + strlen(u);
            for (size_t k = segments(p + pl); k && end > u; k--)
                while (--end > u && *end != '/')
                    ;
            ul = (size_t)(end - u);
        }
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (ul == 0 || ul >= HTTP_MAX_ARG_LEN || n_args >= HTTP_MAX_ARGS)
                return false;
            if (args) {
                memcpy(args[n_args], u, ul);
                args[n_args][ul] = '\0';
            }
            n_args++;
        } else if (pl != ul || memcmp(p, u, pl)) {
            return false;
        }
        p += pl;
        u += ul;
    }
    if (*p || (*u && !((how & HTTP_MATCH_TRAILING_SLASH) && !strcmp(u, "/"))))
        return false;
    if (n_out)
        *n_out = n_args;
    return true;
}

/* Value of a hex digit, or -1. */
static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

size_t http_unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        int hi, lo;
        if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 &&
            (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

enum saed_body http_body_kind(const char *ct, bool *known)
{
    *known = true;
    if (!ct)
        return SAED_BODY_JSON;
    char t[64];
    size_t n = 0;
    while (*ct == ' ')
        ct++;
    while (*ct && *ct != ';' && *ct != ' ' && *ct != '\t' && n + 1 < sizeof t)
        t[n++] = (char)tolower((unsigned char)*ct++);
    t[n] = '\0';
    /* After the type only parameters may follow: "application/json garbage"
     * is not JSON. */
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (*ct && *ct != ';') {
        *known = false;
        return SAED_BODY_NONE;
    }
    if (!strcmp(t, "application/json"))
        return SAED_BODY_JSON;
    if (!strcmp(t, "application/octet-stream"))
        return SAED_BODY_OCTET;
    if (!strcmp(t, "application/x-npy"))
        return SAED_BODY_NPY;
    *known = false;
    return SAED_BODY_NONE;
}

double http_header_q(const char *h, const char *token, int *at)
{
    size_t tl = strlen(token), n;
    sae_list it = sae_list_of(h);
    for (int i = 0; sae_list_next(&it, &h, &n);) {
        if (!n)
            continue; /* "a,,b": empty items are not counted */
        const char *semi = memchr(h, ';', n);
        size_t name = semi ? (size_t)(semi - h) : n;
        while (name && h[name - 1] == ' ')
            name--;
        if (name == tl && !strncasecmp(h, token, tl)) {
            if (at)
                *at = i;
            if (!semi)
                return 1.0;
            const char *q = semi + 1;
            while (*q == ' ')
                q++;
            if (strncasecmp(q, "q=", 2))
                return 1.0;
            /* A q outside [0, 1] (or not a number) is held to the range, so
             * -1 can only mean "not listed". */
            double v = strtod(q + 2, NULL);
            return v > 0.0 ? (v < 1.0 ? v : 1.0) : 0.0;
        }
        i++;
    }
    return -1.0;
}

bool http_header_lists(const char *h, const char *token)
{
    return http_header_q(h, token, NULL) > 0.0;
}

bool http_prefers_binary(const char *accept)
{
    int at_bin = 0, at_json = 0;
    double q_bin = http_header_q(accept, "application/octet-stream", &at_bin),
           q_json = http_header_q(accept, "application/json", &at_json);
    return q_bin > 0.0 && (q_bin > q_json || (q_bin == q_json && at_bin < at_json));
}

/* Reads a Content-Length value: 1*DIGIT (RFC 9110 8.6) with optional
 * surrounding whitespace, no sign, no list, below 2^64. */
static bool content_length_parse(const char *v, unsigned long long *out)
{
    while (*v == ' ' || *v == '\t')
        v++;
    unsigned long long x = 0;
    const char *d = v;
    for (; *v >= '0' && *v <= '9'; v++) {
        unsigned digit = (unsigned)(*v - '0');
        if (x > (ULLONG_MAX - digit) / 10)
            return false;
        x = x * 10 + digit;
    }
    if (v == d)
        return false;
    while (*v == ' ' || *v == '\t')
        v++;
    *out = x;
    return *v == '\0';
}

void http_framing_add(struct http_framing *f, const char *name, const char *value)
{
    if (!value)
        value = "";
    if (!strcasecmp(name, "Content-Length")) {
        unsigned long long v = 0;
        if (!content_length_parse(value, &v))
            f->length_bad = true;
        else if (!f->n_length)
            f->length = v;
        f->n_length++;
        return;
    }
    if (strcasecmp(name, "Transfer-Encoding"))
        return;
    f->n_te++;
    /* A comma-separated list of codings, each token [;params], OWS around
     * commas, empty elements allowed (RFC 9110 5.6.1); tokens compared
     * exactly, case-insensitively, never by substring. */
    unsigned tokens = 0;
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *t = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t n = (size_t)(p - t);
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p && *p != ',' && *p != ';')
            f->te_bad = true; /* "chunked chunked": two words in one element */
        while (*p && *p != ',')
            p++; /* the element's parameters */
        tokens++;
        if (n == 7 && !strncasecmp(t, "chunked", 7))
            f->n_chunked++;
        else
            f->n_other++;
    }
    if (!tokens)
        f->te_empty = true;
}

enum http_framing_verdict http_framing_verdict(const struct http_framing *f, const char **why)
{
    *why = "";
    if (f->n_length && f->n_te) {
        *why = "Content-Length and Transfer-Encoding together";
        return HTTP_FRAMING_BAD;
    }
    if (f->n_length > 1) {
        *why = "more than one Content-Length";
        return HTTP_FRAMING_BAD;
    }
    if (f->length_bad) {
        *why = "a Content-Length that is not a decimal number below 2^64";
        return HTTP_FRAMING_BAD;
    }
    if (f->n_length)
        return HTTP_FRAMING_LENGTH;
    if (!f->n_te)
        return HTTP_FRAMING_NONE;
    if (f->te_bad) {
        *why = "a Transfer-Encoding that is not a list of codings";
        return HTTP_FRAMING_BAD;
    }
    if (f->te_empty) {
        *why = "a Transfer-Encoding naming no coding";
        return HTTP_FRAMING_BAD;
    }
    if (f->n_other) {
        *why = "a transfer coding other than chunked";
        return HTTP_FRAMING_UNSUPPORTED;
    }
    if (f->n_chunked > 1) {
        *why = "chunked applied more than once";
        return HTTP_FRAMING_BAD;
    }
    return HTTP_FRAMING_CHUNKED;
}
