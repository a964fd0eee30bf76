/* buf.c: the capped growable buffer and number formatting (buf.h). */
#include "buf.h"
#include "jsonin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An empty buffer capped at limit bytes, hint bytes preallocated. */
void buf_init(struct saed_buf *b, size_t limit, size_t hint)
{
    memset(b, 0, sizeof *b);
    b->limit = limit;
    if (hint > limit)
        hint = limit;
    if (hint) {
        b->data = malloc(hint + 1);
        if (b->data)
            b->cap = hint;
    }
}

/* Frees the data. */
void buf_free(struct saed_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Hands the NUL-terminated data to the caller. */
char *buf_steal(struct saed_buf *b, size_t *len)
{
    if (b->failed) {
        buf_free(b);
        return NULL;
    }
    if (!b->data) {
        b->data = malloc(1);
        if (!b->data)
            return NULL;
    }
    b->data[b->len] = '\0';
    char *d = b->data;
    *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

/* Makes room for n more bytes plus the terminating NUL. */
static bool grow(struct saed_buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (n > b->limit || b->len > b->limit - n) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + n;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > b->limit / 2 ? b->limit : cap * 2;
    char *d = realloc(b->data, cap + 1);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

/* Appends n bytes. */
void buf_put(struct saed_buf *b, const void *p, size_t n)
{
    if (!grow(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* Appends a C string. */
void buf_puts(struct saed_buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* Appends one byte. */
void buf_putc(struct saed_buf *b, char c)
{
    if (!grow(b, 1))
        return;
    b->data[b->len++] = c;
}

/* Appends v in decimal. */
void buf_u64(struct saed_buf *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_put(b, tmp + sizeof tmp - n, n);
}

/* Appends v in decimal. */
void buf_u32(struct saed_buf *b, uint32_t v)
{
    buf_u64(b, v);
}

/* Writes v with 9 significant digits (reads back exactly), or null, into
 * out (at least 32 bytes); returns the length. */
size_t fmt_f32(char *out, float v)
{
    if (v == 0 && !signbit(v)) { /* most activations of a window: no printf */
        out[0] = '0';
        return 1;
    }
    if (!isfinite(v)) {
        memcpy(out, "null", 4);
        return 4;
    }
    return (size_t)snprintf(out, 32, "%.9g", (double)v);
}

/* Appends a float32 as fmt_f32 writes it. */
void buf_f32(struct saed_buf *b, float v)
{
    if (!grow(b, 32))
        return;
    b->len += fmt_f32(b->data + b->len, v);
}

/* Appends a double with 17 significant digits, or null. */
void buf_f64(struct saed_buf *b, double v)
{
    if (!isfinite(v)) {
        buf_put(b, "null", 4);
        return;
    }
    if (!grow(b, 32))
        return;
    int n = snprintf(b->data + b->len, 32, "%.17g", v);
    b->len += (size_t)n;
}

/* Appends s[0..n) as a JSON string: quotes, backslashes and controls
 * escaped, valid UTF-8 copied, each invalid byte written as U+FFFD, so the
 * reply is valid JSON whatever the bytes. Plain runs are copied at once. */
void buf_json_strn(struct saed_buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    buf_putc(b, '"');
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            buf_put(b, run, (size_t)(p - run));
        if (p == end)
            break;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf_putc(b, '\\');
            buf_putc(b, (char)c);
            p++;
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_puts(b, esc);
            p++;
        } else {
            size_t k = utf8_seq(p, end);
            if (k) {
                buf_put(b, p, k);
                p += k;
            } else {
                buf_puts(b, "\xEF\xBF\xBD");
                p++;
            }
        }
    }
    buf_putc(b, '"');
}

/* Appends the C string s as a JSON string (buf_json_strn). */
void buf_json_str(struct saed_buf *b, const char *s)
{
    if (s)
        buf_json_strn(b, s, strlen(s));
    else
        buf_puts(b, "null");
}
