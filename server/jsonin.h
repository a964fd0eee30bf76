/* jsonin.h: a strict, allocation-free JSON reader for request bodies.
 *
 * Why not jansson here: a 256-row encode body is 196,608 numbers; jansson
 * builds a tree node per number (about 60 ms and ~40 bytes per number, so a
 * 64 MiB body could take ~300 MB), while the daemon must reach 0.40 of raw
 * sgemm rows/s on JSON bodies. This reader walks the text once and lets the
 * caller store numbers straight into its float rows. It accepts exactly RFC
 * 8259 JSON: no comments, no trailing commas, no NaN/Infinity, no leading
 * zeros, valid UTF-8 and escapes; numbers beyond double range (1e999) are
 * rejected as jansson rejects them. Duplicate and unknown keys are the
 * caller's to reject (it knows its schema).
 *
 * Errors: the first error decides the reply. A 400 (malformed, wrong type) or
 * 413 stops parsing at once; a 422 (wrong dimension, non-finite) is noted and
 * parsing goes on, so a body that is also malformed later still gets 400
 * (and one with too many rows 413). */
#ifndef SAED_JSONIN_H
#define SAED_JSONIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The reply a request body earns when it is bad. */
struct saed_perr {
    unsigned status;            /* 0: no error */
    const char *code;           /* static snake_case string */
    char msg[320];
};

/* Records an error unless one is already recorded; any other status replaces
 * a noted 422. Returns -1 so parsers can `return perr_set(...)`. */
int perr_set(struct saed_perr *e, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A cursor over the body; borrows the text. */
struct jp {
    const char *base, *p, *end;
    struct saed_perr *err;      /* borrowed */
};

/* A parsed number: its double value and, when it was written as an integer
 * that fits, the exact unsigned magnitude. */
struct jnum {
    double v;
    bool neg;
    bool integer;               /* no fraction or exponent in the text */
    bool fits_u64;              /* integer and |value| < 10^19: magnitude in u */
    uint64_t u;
};

void jp_init(struct jp *j, const char *text, size_t len, struct saed_perr *err);
/* The first non-space character, or -1 at the end. */
int jp_peek(struct jp *j);
/* A description of the value starting at the cursor ("a string", ...). */
const char *jp_kind(struct jp *j);
/* Consumes `c` after optional space, or fails with 400 invalid_json. */
int jp_expect(struct jp *j, char c);
/* Object iteration: after jp_expect(j, '{'), each call reads the next key
 * into key (truncated to cap-1 bytes; *trunc says so) and its ':' and returns
 * 1, or consumes '}' and returns 0, or returns -1. `first` starts true. */
int jp_obj_key(struct jp *j, bool *first, char *key, size_t cap, bool *trunc);
/* Array iteration: after jp_expect(j, '['), returns 1 when an element
 * follows (cursor on it), 0 after consuming ']', -1 on error. */
int jp_arr_next(struct jp *j, bool *first);
int jp_number(struct jp *j, struct jnum *out);
/* Reads a string into out (cap bytes, NUL-terminated, truncated; may be NULL
 * to validate only). */
int jp_string(struct jp *j, char *out, size_t cap, bool *trunc);
/* Validates and skips one value of any type. */
int jp_skip(struct jp *j);
/* The value at the cursor has the wrong type: if it is valid JSON, records
 * 400 wrong_type with the message; if not, 400 invalid_json (a malformed
 * value is reported as such, whatever the schema wanted). Returns -1. */
int jp_wrong_type(struct jp *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Only whitespace may remain. */
int jp_finish(struct jp *j);
/* Length of the valid UTF-8 sequence starting at p (lead byte >= 0x80) and
 * ending before end, or 0 if it is not valid UTF-8. */
size_t utf8_seq(const unsigned char *p, const unsigned char *end);
/* Byte offset of the cursor, for messages. */
size_t jp_offset(const struct jp *j);

#endif
