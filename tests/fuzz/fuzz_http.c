/* fuzz_http.c: the parts of a request saed reads itself (server/http_parse.c):
 * the path against every route of the table, percent-decoding, Content-Type
 * and Accept.
 *
 * Input: lines, "URL\nCONTENT-TYPE\nACCEPT\nNAME: VALUE\n..." (a missing line
 * is an absent header; the fourth line on are the request's headers, in
 * order, for the framing pass). Invariants:
 *  - decoding never makes a string shorter than its returned length (%00
 *    stays three characters, so no NUL can cut a path) nor longer than before;
 *  - a route that matches gives one capture per "{...}" of its pattern, each
 *    non-empty and shorter than HTTP_MAX_ARG_LEN, and putting the captures
 *    back into the pattern gives the URL exactly (or less its one trailing
 *    slash, for a page route);
 *  - a known Content-Type is exactly one body kind; the Accept answers agree
 *    with the q values they come from;
 *  - framing (http_framing_*): two Content-Length headers, or one with a
 *    Transfer-Encoding, are never accepted; chunked is accepted only when
 *    the Transfer-Encoding tokens are exactly one "chunked"; a Content-Length
 *    accepted reads back as the digits it was sent as; the verdict does not
 *    depend on the order of the headers. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fuzz_common.h"
#include "saed.h"

/* The pattern with its captures put back: must be the URL. */
static void rebuild(const char *pattern, char (*args)[HTTP_MAX_ARG_LEN], size_t n, char *out,
                    size_t cap)
{
    size_t len = 0, k = 0;
    for (const char *p = pattern; *p && len + 1 < cap;) {
        if (*p == '{') {
            FUZZ_ASSERT(k < n, "%s: more captures in the pattern than matched", pattern);
            size_t al = strlen(args[k]);
            FUZZ_ASSERT(len + al < cap, "rebuild overflows");
            memcpy(out + len, args[k++], al);
            len += al;
            p = strchr(p, '}') + 1;
        } else {
            out[len++] = *p++;
        }
    }
    out[len] = '\0';
    FUZZ_ASSERT(k == n, "%s: %zu captures, the pattern has %zu", pattern, n, k);
}

/* Header lines of the framing part of an input. */
#define FRAMING_MAX 8

/* The verdict of headers fed in order (reverse false) or backwards. */
static enum http_framing_verdict framing_of(char **hdr, size_t n, bool reverse,
                                            struct http_framing *f)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < n; i++) {
        char *h = hdr[reverse ? n - 1 - i : i];
        char *colon = strchr(h, ':');
        if (!colon)
            continue;
        *colon = '\0';
        http_framing_add(f, h, colon + 1);
        *colon = ':';
    }
    const char *why;
    return http_framing_verdict(f, &why);
}

/* The framing invariants over the header lines of an input (NULL-ended). */
static void framing_check(char **hdr)
{
    size_t n = 0;
    while (n < FRAMING_MAX && hdr[n])
        n++;
    size_t n_cl = 0, n_te = 0;
    char te_all[8192] = "";
    for (size_t i = 0; i < n; i++) {
        if (!strncasecmp(hdr[i], "Content-Length:", 15))
            n_cl++;
        if (!strncasecmp(hdr[i], "Transfer-Encoding:", 18)) {
            n_te++;
            strncat(te_all, hdr[i] + 18, sizeof te_all - strlen(te_all) - 2);
            strcat(te_all, ",");
        }
    }
    struct http_framing f, g;
    enum http_framing_verdict v = framing_of(hdr, n, false, &f);
    FUZZ_ASSERT(v == framing_of(hdr, n, true, &g), "the verdict depends on header order");
    if (n_cl > 1 || (n_cl && n_te))
        FUZZ_ASSERT(v == HTTP_FRAMING_BAD, "%zu Content-Length, %zu Transfer-Encoding: %d",
                    n_cl, n_te, (int)v);
    FUZZ_ASSERT((v == HTTP_FRAMING_NONE) == (!n_cl && !n_te), "NONE with framing headers");
    if (v == HTTP_FRAMING_LENGTH) {
        FUZZ_ASSERT(n_cl == 1 && !n_te, "LENGTH from %zu/%zu", n_cl, n_te);
        char digits[32];
        snprintf(digits, sizeof digits, "%llu", f.length);
        bool found = false;
        for (size_t i = 0; i < n; i++)
            if (!strncasecmp(hdr[i], "Content-Length:", 15)) {
                const char *p = hdr[i] + 15;
                while (*p == ' ' || *p == '\t' || *p == '0')
                    p++;
                found = !strncmp(p, digits, strlen(digits)) || (f.length == 0 && *p != '-');
            }
        FUZZ_ASSERT(found, "length %llu not as sent", f.length);
    }
    if (v == HTTP_FRAMING_CHUNKED) {
        /* The tokens without whitespace, commas and parameters: "chunked". */
        char squeezed[8192];
        size_t k = 0;
        bool in_param = false;
        for (const char *p = te_all; *p && k + 1 < sizeof squeezed; p++) {
            if (*p == ',')
                in_param = false;
            else if (*p == ';')
                in_param = true;
            else if (!in_param && *p != ' ' && *p != '\t')
                squeezed[k++] = *p;
        }
        squeezed[k] = '\0';
        FUZZ_ASSERT(!strcasecmp(squeezed, "chunked"), "chunked from '%s'", te_all);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char buf[8193];
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *line[3 + FRAMING_MAX] = {buf};
    for (int i = 0; i < 2 + FRAMING_MAX && line[i]; i++) {
        char *nl = strchr(line[i], '\n');
        if (nl) {
            *nl = '\0';
            line[i + 1] = nl + 1;
        }
    }
    /* The URL as libmicrohttpd would hand it over: decoded, %00 kept. */
    char *url = line[0];
    size_t before = strlen(url), n = http_unescape(url);
    FUZZ_ASSERT(n <= before, "decoding grew %zu -> %zu", before, n);
    FUZZ_ASSERT(strlen(url) == n, "a NUL inside the decoded URL: %zu of %zu", strlen(url), n);
    for (size_t r = 0; r < saed_n_routes; r++) {
        char args[HTTP_MAX_ARGS][HTTP_MAX_ARG_LEN];
        size_t n_args = 99;
        const struct saed_route *rt = &saed_routes[r];
        if (!http_path_match(rt->path, rt->match, url, args, &n_args))
            continue;
        FUZZ_ASSERT(n_args <= HTTP_MAX_ARGS, "%zu captures", n_args);
        for (size_t k = 0; k < n_args; k++) {
            size_t al = strlen(args[k]);
            FUZZ_ASSERT(al > 0 && al < HTTP_MAX_ARG_LEN, "capture %zu: %zu bytes", k, al);
            FUZZ_ASSERT(((rt->match & HTTP_MATCH_FIRST_ARG_SLASHES) && k == 0) ||
                            !strchr(args[k], '/'),
                        "%s: capture %zu has a slash", rt->path, k);
        }
        char back[8200];
        rebuild(rt->path, args, n_args, back, sizeof back);
        size_t bl = strlen(back);
        bool extra_slash = (rt->match & HTTP_MATCH_TRAILING_SLASH) && strlen(url) == bl + 1 &&
                           url[bl] == '/';
        FUZZ_ASSERT(!strncmp(back, url, bl) && (url[bl] == '\0' || extra_slash),
                    "%s: rebuilt '%s' from '%s'", rt->path, back, url);
        FUZZ_ASSERT(http_path_match(rt->path, rt->match, url, NULL, NULL),
                    "matches only when capturing");
    }
    bool known = true;
    enum saed_body kind = http_body_kind(line[1], &known);
    FUZZ_ASSERT(known ? (kind == SAED_BODY_JSON || kind == SAED_BODY_OCTET ||
                         kind == SAED_BODY_NPY)
                      : kind == SAED_BODY_NONE,
                "Content-Type kind %d, known %d", (int)kind, known);
    const char *acc = line[2];
    int at_b = -1, at_j = -1;
    double qb = http_header_q(acc, "application/octet-stream", &at_b),
           qj = http_header_q(acc, "application/json", &at_j);
    FUZZ_ASSERT((qb == -1.0) == (at_b == -1) && (qj == -1.0) == (at_j == -1),
                "found without a position, or the reverse");
    FUZZ_ASSERT(qb == -1.0 || (qb >= 0.0 && qb <= 1.0), "q outside [0, 1]: %g", qb);
    FUZZ_ASSERT(qj == -1.0 || (qj >= 0.0 && qj <= 1.0), "q outside [0, 1]: %g", qj);
    bool bin = http_prefers_binary(acc);
    FUZZ_ASSERT(!bin || (qb > 0.0 && http_header_lists(acc, "application/octet-stream")),
                "binary with q %g", qb);
    framing_check(line + 3);
    return 0;
}
