/* jsonin.c: the strict request-body JSON reader (jsonin.h). */
#include "jsonin.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JP_MAX_DEPTH 64

/* Records the error unless one that outranks it is there (jsonin.h). */
int perr_set(struct saed_perr *e, unsigned status, const char *code, const char *fmt, ...)
{
    if (e->status && !(e->status == 422 && status != 422))
        return -1;
    e->status = status;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* A cursor at the start of text. */
void jp_init(struct jp *j, const char *text, size_t len, struct saed_perr *err)
{
    j->base = j->p = text;
    j->end = text + len;
    j->err = err;
}

/* Bytes from the start to the cursor. */
size_t jp_offset(const struct jp *j)
{
    return (size_t)(j->p - j->base);
}

/* 400 invalid_json: something else was expected at the cursor. */
static int syntax(struct jp *j, const char *what)
{
    if (j->p >= j->end)
        return perr_set(j->err, 400, "invalid_json", "malformed JSON: body ends where %s was "
                        "expected", what);
    return perr_set(j->err, 400, "invalid_json", "malformed JSON at byte %zu: expected %s",
                    jp_offset(j), what);
}

/* Skips JSON whitespace. */
static void ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

/* The next non-space byte, or -1 at the end. */
int jp_peek(struct jp *j)
{
    ws(j);
    return j->p < j->end ? (unsigned char)*j->p : -1;
}

/* Names the kind of value at the cursor for messages. */
const char *jp_kind(struct jp *j)
{
    switch (jp_peek(j)) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    case '"':
        return "a string";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    case -1:
        return "nothing";
    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return "a number";
    default:
        return "something that is not JSON";
    }
}

/* Consumes c or reports what was expected. */
int jp_expect(struct jp *j, char c)
{
    ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 0;
    }
    char what[8] = {'\'', c, '\'', 0};
    return syntax(j, what);
}

/* Appends code point cp as UTF-8 to out[*n] if there is room. */
static void put_utf8(char *out, size_t cap, size_t *n, bool *trunc, uint32_t cp)
{
    char tmp[4];
    size_t k;
    if (cp < 0x80) {
        tmp[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        tmp[0] = (char)(0xC0 | (cp >> 6));
        tmp[1] = (char)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xE0 | (cp >> 12));
        tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        tmp[2] = (char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        tmp[0] = (char)(0xF0 | (cp >> 18));
        tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        tmp[3] = (char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    if (!out)
        return;
    if (*n + k >= cap) {
        *trunc = true;
        return;
    }
    memcpy(out + *n, tmp, k);
    *n += k;
}

/* The four hex digits of a backslash-u escape. */
static int hex4(struct jp *j, uint32_t *out)
{
    if (j->end - j->p < 4)
        return syntax(j, "four hex digits");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = j->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return syntax(j, "four hex digits");
    }
    j->p += 4;
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at p, or 0 (overlongs, surrogates and
 * code points past U+10FFFF are invalid). */
size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c == 0xE0) {
        n = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
        n = 3;
    else if (c == 0xED) {
        n = 3;
        hi = 0x9F;
    } else if (c == 0xF0) {
        n = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3)
        n = 4;
    else if (c == 0xF4) {
        n = 4;
        hi = 0x8F;
    } else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* A JSON string, escapes decoded, validated as UTF-8. */
int jp_string(struct jp *j, char *out, size_t cap, bool *trunc)
{
    bool tr = false;
    size_t n = 0;
    if (jp_expect(j, '"'))
        return -1;
    for (;;) {
        if (j->p >= j->end)
            return syntax(j, "'\"' closing the string");
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c < 0x20)
            return perr_set(j->err, 400, "invalid_json",
                            "malformed JSON at byte %zu: control character in a string",
                            jp_offset(j));
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end)
                return syntax(j, "an escape");
            char e = *j->p++;
            uint32_t cp;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                cp = (uint32_t)e;
                break;
            case 'b':
                cp = '\b';
                break;
            case 'f':
                cp = '\f';
                break;
            case 'n':
                cp = '\n';
                break;
            case 'r':
                cp = '\r';
                break;
            case 't':
                cp = '\t';
                break;
            case 'u':
                if (hex4(j, &cp))
                    return -1;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return perr_set(j->err, 400, "invalid_json",
                                    "malformed JSON at byte %zu: lone low surrogate",
                                    jp_offset(j));
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                        return perr_set(j->err, 400, "invalid_json",
                                        "malformed JSON at byte %zu: lone high surrogate",
                                        jp_offset(j));
                    j->p += 2;
                    if (hex4(j, &lo))
                        return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return perr_set(j->err, 400, "invalid_json",
                                        "malformed JSON at byte %zu: bad surrogate pair",
                                        jp_offset(j));
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp == 0)
                    return perr_set(j->err, 400, "invalid_json",
                                    "malformed JSON at byte %zu: \\u0000 in a string",
                                    jp_offset(j));
                break;
            default:
                j->p--;
                return syntax(j, "a valid escape");
            }
            put_utf8(out, cap, &n, &tr, cp);
            continue;
        }
        size_t k = 1;
        if (c >= 0x80) {
            k = utf8_seq((const unsigned char *)j->p, (const unsigned char *)j->end);
            if (!k)
                return perr_set(j->err, 400, "invalid_json",
                                "malformed JSON at byte %zu: invalid UTF-8", jp_offset(j));
        }
        if (out) {
            if (n + k < cap) {
                memcpy(out + n, j->p, k);
                n += k;
            } else {
                tr = true;
            }
        }
        j->p += k;
    }
    if (out && cap)
        out[n] = '\0';
    if (trunc)
        *trunc = tr;
    return 0;
}

/* The next key of an object (jsonin.h). */
int jp_obj_key(struct jp *j, bool *first, char *key, size_t cap, bool *trunc)
{
    int c = jp_peek(j);
    if (c == '}') {
        j->p++;
        return 0;
    }
    if (!*first) {
        if (c != ',')
            return syntax(j, "',' or '}'");
        j->p++;
        if (jp_peek(j) != '"')
            return syntax(j, "a key");
    } else if (c != '"') {
        return syntax(j, "a key or '}'");
    }
    *first = false;
    if (jp_string(j, key, cap, trunc) || jp_expect(j, ':'))
        return -1;
    return 1;
}

/* Steps to the next element of an array (jsonin.h). */
int jp_arr_next(struct jp *j, bool *first)
{
    int c = jp_peek(j);
    if (c == ']') {
        j->p++;
        return 0;
    }
    if (!*first) {
        if (c != ',')
            return syntax(j, "',' or ']'");
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == ']')
            return syntax(j, "a value after ','");
    }
    *first = false;
    if (j->p >= j->end)
        return syntax(j, "a value");
    return 1;
}

/* 10^0 .. 10^22 are exact doubles. */
static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number in strict grammar; exact integers and Clinger's fast path
 * for the common short decimals, strtod otherwise; 1e999 is 400. */
int jp_number(struct jp *j, struct jnum *out)
{
    ws(j);
    const char *s = j->p, *p = s, *e = j->end;
    bool neg = false, integer = true, inexact = false;
    uint64_t mant = 0;
    int sig = 0;
    int64_t e10 = 0;
    if (p < e && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= e || *p < '0' || *p > '9')
        return syntax(j, "a number");
    if (*p == '0') {
        p++;
    } else {
        for (; p < e && *p >= '0' && *p <= '9'; p++) {
            unsigned d = (unsigned)(*p - '0');
            if (sig < 19) {
                mant = mant * 10 + d;
                sig++;
            } else {
                e10++;
                inexact |= d != 0;
            }
        }
    }
    if (p < e && *p == '.') {
        p++;
        integer = false;
        if (p >= e || *p < '0' || *p > '9') {
            j->p = p;
            return syntax(j, "a digit after '.'");
        }
        for (; p < e && *p >= '0' && *p <= '9'; p++) {
            unsigned d = (unsigned)(*p - '0');
            if (sig < 19) {
                mant = mant * 10 + d;
                e10--;
                if (mant)
                    sig++;
            } else {
                inexact |= d != 0;
            }
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        integer = false;
        int esign = 1;
        if (p < e && (*p == '+' || *p == '-')) {
            esign = *p == '-' ? -1 : 1;
            p++;
        }
        if (p >= e || *p < '0' || *p > '9') {
            j->p = p;
            return syntax(j, "a digit in the exponent");
        }
        int64_t x = 0;
        for (; p < e && *p >= '0' && *p <= '9'; p++)
            if (x < 100000000)
                x = x * 10 + (*p - '0');
        e10 += esign * x;
    }
    double v;
    if (mant == 0 && !inexact) {
        v = 0.0;
    } else if (!inexact && mant <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
        /* Clinger's fast path: both operands exact, one rounding. */
        v = e10 >= 0 ? (double)mant * pow10_exact[e10] : (double)mant / pow10_exact[-e10];
    } else {
        size_t n = (size_t)(p - s);
        char small[128];
        char *tmp = n < sizeof small ? small : malloc(n + 1);
        if (!tmp)
            return perr_set(j->err, 400, "invalid_json", "number at byte %zu too long",
                            jp_offset(j));
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        errno = 0;
        v = strtod(tmp, NULL);
        int range = errno == ERANGE && isinf(v);
        if (tmp != small)
            free(tmp);
        if (range)
            return perr_set(j->err, 400, "number_out_of_range",
                            "number at byte %zu is out of range", jp_offset(j));
        v = fabs(v);
    }
    j->p = p;
    out->v = neg ? -v : v;
    out->neg = neg;
    out->integer = integer;
    out->fits_u64 = integer && !inexact && e10 == 0;
    out->u = mant;
    return 0;
}

/* Validates and skips one value, nested at most JP_MAX_DEPTH deep. */
static int skip_depth(struct jp *j, int depth)
{
    if (depth > JP_MAX_DEPTH)
        return perr_set(j->err, 400, "invalid_json", "JSON nested deeper than %d at byte %zu",
                        JP_MAX_DEPTH, jp_offset(j));
    int c = jp_peek(j);
    bool first = true;
    switch (c) {
    case '{': {
        j->p++;
        int r;
        while ((r = jp_obj_key(j, &first, NULL, 0, NULL)) == 1)
            if (skip_depth(j, depth + 1))
                return -1;
        return r;
    }
    case '[': {
        j->p++;
        int r;
        while ((r = jp_arr_next(j, &first)) == 1)
            if (skip_depth(j, depth + 1))
                return -1;
        return r;
    }
    case '"':
        return jp_string(j, NULL, 0, NULL);
    case 't':
    case 'f':
    case 'n': {
        const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t n = strlen(lit);
        if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n))
            return syntax(j, "a value");
        j->p += n;
        return 0;
    }
    default: {
        struct jnum num;
        return jp_number(j, &num);
    }
    }
}

/* Validates and skips one value. */
int jp_skip(struct jp *j)
{
    return skip_depth(j, 0);
}

/* 400 wrong_type for a valid value of the wrong kind (jsonin.h). */
int jp_wrong_type(struct jp *j, const char *fmt, ...)
{
    const char *at = j->p;
    if (jp_skip(j))
        return -1;
    j->p = at;
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return perr_set(j->err, 400, "wrong_type", "%s", msg);
}

/* Nothing but whitespace may follow the top-level value. */
int jp_finish(struct jp *j)
{
    if (jp_peek(j) != -1)
        return perr_set(j->err, 400, "invalid_json",
                        "malformed JSON at byte %zu: text after the end of the value",
                        jp_offset(j));
    return 0;
}
