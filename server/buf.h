/* buf.h: a growable byte buffer with a hard cap, and the number formatters
 * the encode/decode replies use. Building a 256-row reply as a jansson tree
 * costs an allocation per number; writing the text directly does not.
 *
 * Errors are sticky: once an append fails (cap or memory), `failed` is set,
 * later appends do nothing, and the caller checks once at the end. */
#ifndef SAED_BUF_H
#define SAED_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The buffer: data[0..len) written, cap allocated, never above limit. */
struct saed_buf {
    char *data;         /* (cap) owned */
    size_t len, cap, limit;
    bool failed;
};

/* An empty buffer that will never exceed `limit` bytes; `hint` preallocates. */
void buf_init(struct saed_buf *b, size_t limit, size_t hint);
void buf_free(struct saed_buf *b);
/* Hands over the data (NUL-terminated, len bytes before the NUL); the buffer
 * is left empty. NULL if the buffer failed. */
char *buf_steal(struct saed_buf *b, size_t *len);

void buf_put(struct saed_buf *b, const void *p, size_t n);
void buf_puts(struct saed_buf *b, const char *s);
void buf_putc(struct saed_buf *b, char c);
/* Decimal u32. */
void buf_u32(struct saed_buf *b, uint32_t v);
void buf_u64(struct saed_buf *b, uint64_t v);
/* A float32 as buf_f32 writes it, into out (32 bytes or more); the length. */
size_t fmt_f32(char *out, float v);
/* A float32 as the shortest-to-9-digits decimal that reads back to the same
 * float (%.9g), or null if it is not finite. */
void buf_f32(struct saed_buf *b, float v);
/* A double that reads back exactly (%.17g), or null if not finite. */
void buf_f64(struct saed_buf *b, double v);
/* A JSON string of n bytes (may hold NUL): quotes, backslashes and controls
 * escaped, invalid UTF-8 written as U+FFFD. The one JSON string escaper of
 * saed's hand-written replies. */
void buf_json_strn(struct saed_buf *b, const char *s, size_t n);
/* The same for a C string; null when s is NULL. */
void buf_json_str(struct saed_buf *b, const char *s);

#endif
