/* fuzz_http.c: the parts of a request saed reads itself (server/http_parse.c):
 * the path against every route of the table, percent-decoding, Content-Type
 * and Accept.
 *
 * Input: up to three lines, "URL\nCONTENT-TYPE\nACCEPT" (a missing line is an
 * absent header). Invariants:
 *  - decoding never makes a string shorter than its returned length (%00
 *    stays three characters, so no NUL can cut a path) nor longer than before;
 *  - a route that matches gives one capture per "{...}" of its pattern, each
 *    non-empty and shorter than HTTP_MAX_ARG_LEN, and putting the captures
 *    back into the pattern gives the URL exactly (or less its one trailing
 *    slash, for a page route);
 *  - a known Content-Type is exactly one body kind; the Accept answers agree
 *    with the q values they come from. */
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char buf[8193];
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *line[3] = {buf, NULL, NULL};
    for (int i = 0; i < 2 && line[i]; i++) {
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
    return 0;
}
