/* http_parse.h: the parts of a request that saed reads itself, beyond what
 * libmicrohttpd parses: the path against a route pattern, percent-decoding,
 * Content-Type and Accept. Pure functions of their strings (no connection,
 * no allocation), so tests/fuzz/fuzz_http.c can drive them directly. */
#ifndef SAED_HTTP_PARSE_H
#define SAED_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_ARGS 4
#define HTTP_MAX_ARG_LEN 128

/* Request body kinds a route accepts (bit set), decided from Content-Type
 * before the body is read. */
enum saed_body {
    SAED_BODY_NONE = 0,
    SAED_BODY_JSON = 1 << 0,    /* application/json (or no Content-Type) */
    SAED_BODY_OCTET = 1 << 1,   /* application/octet-stream */
    SAED_BODY_NPY = 1 << 2,     /* application/x-npy */
};

/* How a route pattern matches a URL (bits; 0 is exact). */
enum http_match {
    /* The first "{capture}" takes as many segments as leave one for each
     * pattern segment after it: a model_name such as "meta-llama/Llama-3.1-8B"
     * is a Neuronpedia modelId with a slash in it. */
    HTTP_MATCH_FIRST_ARG_SLASHES = 1 << 0,
    /* The URL may end in one more '/' ("/features/12/"), as the browser's
     * router reads its pages. */
    HTTP_MATCH_TRAILING_SLASH = 1 << 1,
};

/* Matches url against a route pattern such as "/v1/features/{i}" the way
 * `how` (enum http_match bits) says, writing the captures into args (may be
 * NULL) and their count into *n_args (may be NULL). A "{name}" captures one
 * non-empty segment of fewer than HTTP_MAX_ARG_LEN bytes. */
bool http_path_match(const char *pattern, unsigned how, const char *url,
                     char (*args)[HTTP_MAX_ARG_LEN], size_t *n_args);

/* Percent-decodes s in place (path or query value), as libmicrohttpd does,
 * except %00: decoded, it would end the C string the routes read, so
 * "/v1/features/3%00x" would be feature 3 and "q=cats%00zzz" a search for
 * "cats". Left as the three characters, it is just not a number, or text.
 * Returns the new length. */
size_t http_unescape(char *s);

/* The body kind of a Content-Type value (NULL: JSON); *known is false for a
 * media type saed does not take, or one with anything but parameters after
 * it ("application/json garbage"). */
enum saed_body http_body_kind(const char *ct, bool *known);

/* The q value, within [0, 1], a comma-separated header value gives `token`
 * (1 when it has none), or -1 when it does not list it; *at (may be NULL) is
 * its position in the list. */
double http_header_q(const char *h, const char *token, int *at);

/* True if the header value lists `token` without q=0. */
bool http_header_lists(const char *h, const char *token);

/* Whether an Accept header asks for the binary reply: it lists
 * application/octet-stream and prefers it to application/json (a higher q,
 * or the same q and listed first). JSON otherwise, the default. */
bool http_prefers_binary(const char *accept);

/* How a request's body is framed, read from every Content-Length and
 * Transfer-Encoding header it carries (libmicrohttpd 0.9.75 looks at the
 * first of each only, so a second Content-Length could split one request into
 * two; CONTRACT 3). Fed one header at a time, in order. */
struct http_framing {
    unsigned n_length;          /* Content-Length headers seen */
    unsigned n_chunked;         /* "chunked" tokens in Transfer-Encoding */
    unsigned n_other;           /* any other transfer-coding token */
    unsigned n_te;              /* Transfer-Encoding headers seen */
    bool length_bad;            /* a Content-Length that is not 1*DIGIT */
    bool te_empty;              /* a Transfer-Encoding naming no coding */
    bool te_bad;                /* an element of two words ("chunked chunked") */
    unsigned long long length;  /* the (first) Content-Length's value */
};

/* The verdict on a request's framing. */
enum http_framing_verdict {
    HTTP_FRAMING_NONE,          /* no body framing: no body */
    HTTP_FRAMING_LENGTH,        /* exactly one well-formed Content-Length */
    HTTP_FRAMING_CHUNKED,       /* Transfer-Encoding: chunked, alone */
    HTTP_FRAMING_BAD,           /* 400 and close: duplicate, conflicting or malformed */
    HTTP_FRAMING_UNSUPPORTED,   /* 501 and close: a transfer coding other than chunked */
};

/* Adds one request header (name, value) to f; other headers are ignored. */
void http_framing_add(struct http_framing *f, const char *name, const char *value);

/* What f says, with a short reason for the error replies in *why. */
enum http_framing_verdict http_framing_verdict(const struct http_framing *f, const char **why);

#endif
