/* npy.c: a strict reader of .npy headers and a writer of float arrays.
 *
 * The format: the magic "\x93NUMPY", a major and minor version byte, the
 * header length (u16 for 1.0, u32 for 2.0 and 3.0), then a Python dict
 * literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a newline, then the raw array. Only the subset
 * numpy writes for little-endian float arrays is accepted; the dict is parsed
 * by hand (not evaluated), so a hostile header can only fail to parse. */
#include "io/npy.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/outfile.h"

/* A cursor over the header text. */
typedef struct npy_lex {
    const char *p, *end;
} npy_lex;

/* Skips the whitespace a Python literal may contain. */
static void skip_ws(npy_lex *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r'))
        l->p++;
}

/* Consumes c if it is next (after whitespace). */
static bool eat(npy_lex *l, char c)
{
    skip_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return true;
    }
    return false;
}

/* Reads a quoted string without escapes ('...' or "...") into s[0..cap). */
static bool read_str(npy_lex *l, char *s, size_t cap)
{
    skip_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"'))
        return false;
    char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || n + 1 >= cap)
            return false;
        s[n++] = *l->p++;
    }
    if (l->p >= l->end)
        return false;
    l->p++;
    s[n] = '\0';
    return true;
}

/* Reads a bare word of letters (True, False). */
static bool read_word(npy_lex *l, char *s, size_t cap)
{
    skip_ws(l);
    size_t n = 0;
    while (l->p < l->end && ((*l->p >= 'A' && *l->p <= 'Z') || (*l->p >= 'a' && *l->p <= 'z'))) {
        if (n + 1 >= cap)
            return false;
        s[n++] = *l->p++;
    }
    s[n] = '\0';
    return n > 0;
}

/* Reads a non-negative decimal integer that fits in 64 bits. */
static bool read_uint(npy_lex *l, uint64_t *out)
{
    skip_ws(l);
    uint64_t v = 0;
    const char *start = l->p;
    while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
        unsigned d = (unsigned)(*l->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        l->p++;
    }
    *out = v;
    return l->p > start;
}

/* Parses the shape tuple: (), (n,), (n, d) or longer, with an optional
 * trailing comma; a parenthesised single number without a comma is not a
 * tuple in Python and is refused. Sets *ndim (may exceed what the caller
 * allows: the caller says that is unsupported) and the first
 * SAE_NPY_MAX_DIMS dimensions; *overflow is set when the product of every
 * dimension does not fit in a size_t. */
static int read_shape(npy_lex *l, const char *name, int *ndim, uint64_t shape[SAE_NPY_MAX_DIMS],
                      size_t *n_elems, bool *overflow, sae_error *err)
{
    *n_elems = 1;
    *overflow = false;
    if (!eat(l, '('))
        return sae_error_set(err, SAE_EFORMAT, "%s: .npy header: shape is not a tuple", name);
    int n = 0;
    if (eat(l, ')')) {
        *ndim = 0;
        return 0;
    }
    for (;;) {
        uint64_t d;
        if (!read_uint(l, &d))
            return sae_error_set(err, SAE_EFORMAT,
                                 "%s: .npy header: shape entry %d is not a non-negative integer",
                                 name, n);
        if (n < SAE_NPY_MAX_DIMS)
            shape[n] = d;
        if (d > SIZE_MAX || sae_mul_size(*n_elems, (size_t)d, n_elems))
            *overflow = true;
        if (n == 64)
            return sae_error_set(err, SAE_EFORMAT, "%s: .npy header: shape is too long", name);
        n++;
        if (eat(l, ')')) {
            if (n == 1)
                return sae_error_set(err, SAE_EFORMAT,
                                     "%s: .npy header: shape (n) lacks the comma of a 1-tuple",
                                     name);
            break;
        }
        if (!eat(l, ','))
            return sae_error_set(err, SAE_EFORMAT, "%s: .npy header: shape tuple is malformed",
                                 name);
        if (eat(l, ')'))
            break;
    }
    *ndim = n;
    return 0;
}

/* Magic, version, header length (checked against len), then the dict with
 * exactly the three keys numpy writes, then the dtype/order/shape rules
 * (min_ndim..max_ndim dimensions) and the file's exact size. Malformed:
 * SAE_EFORMAT; valid but unsupported: SAE_EINVAL. The one header parser of
 * both entry points below. */
static int npy_parse(const char *name, const uint8_t *buf, size_t len, int min_ndim,
                     int max_ndim, sae_npy_info *out, sae_error *err)
{
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return sae_error_set(err, SAE_EFORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    int major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return sae_error_set(err, SAE_EINVAL, "%s: .npy format version %d.%d is not supported "
                             "(1.0, 2.0, 3.0)",
                             name, major, minor);
    size_t hstart = major == 1 ? 10 : 12, hlen;
    if (len < hstart)
        return sae_error_set(err, SAE_EFORMAT, "%s: truncated .npy header", name);
    if (major == 1)
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
    else
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
               (size_t)buf[11] << 24;
    if (hlen > len - hstart)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: truncated .npy header: %zu bytes claimed, %zu present", name,
                             hlen, len - hstart);

    npy_lex l = {(const char *)buf + hstart, (const char *)buf + hstart + hlen};
    char key[32], descr[32] = "", word[16];
    bool have_descr = false, have_fortran = false, have_shape = false, fortran = false;
    int ndim = 0, rc;
    uint64_t shape[SAE_NPY_MAX_DIMS] = {0};
    size_t n_elems = 0;
    bool overflow = false;
    if (!eat(&l, '{'))
        return sae_error_set(err, SAE_EFORMAT, "%s: .npy header is not a dict", name);
    while (!eat(&l, '}')) {
        if (!read_str(&l, key, sizeof key) || !eat(&l, ':'))
            return sae_error_set(err, SAE_EFORMAT, "%s: .npy header: expected 'key': value",
                                 name);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            skip_ws(&l);
            if (l.p < l.end && *l.p == '[')
                return sae_error_set(err, SAE_EINVAL,
                                     "%s: .npy structured dtypes are not supported", name);
            if (!read_str(&l, descr, sizeof descr))
                return sae_error_set(err, SAE_EFORMAT, "%s: .npy header: descr is not a string",
                                     name);
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (!read_word(&l, word, sizeof word) ||
                (strcmp(word, "True") && strcmp(word, "False")))
                return sae_error_set(err, SAE_EFORMAT,
                                     "%s: .npy header: fortran_order is not True or False", name);
            fortran = word[0] == 'T';
            have_fortran = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if ((rc = read_shape(&l, name, &ndim, shape, &n_elems, &overflow, err)))
                return rc;
            have_shape = true;
        } else {
            return sae_error_set(err, SAE_EFORMAT, "%s: .npy header: %s key '%.31s'", name,
                                 strcmp(key, "descr") && strcmp(key, "fortran_order") &&
                                         strcmp(key, "shape")
                                     ? "unknown"
                                     : "repeated",
                                 key);
        }
        if (!eat(&l, ',')) {
            if (eat(&l, '}'))
                break;
            return sae_error_set(err, SAE_EFORMAT, "%s: .npy header: expected ',' or '}'", name);
        }
    }
    skip_ws(&l);
    if (l.p != l.end)
        return sae_error_set(err, SAE_EFORMAT, "%s: .npy header has text after the dict", name);
    if (!have_descr || !have_fortran || !have_shape)
        return sae_error_set(err, SAE_EFORMAT, "%s: .npy header lacks '%s'", name,
                             !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");

    sae_dtype dt;
    if (strcmp(descr, "<f4") == 0)
        dt = SAE_DT_F32;
    else if (strcmp(descr, "<f2") == 0)
        dt = SAE_DT_F16;
    else if (strcmp(descr, "<f8") == 0)
        dt = SAE_DT_F64;
    else if (descr[0] == '|' && descr[1] == 'f')
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: .npy descr '%s': a float needs a byte order, not '|'", name,
                             descr);
    else if (descr[0] == '>')
        return sae_error_set(err, SAE_EINVAL, "%s: .npy descr '%s': big-endian is not supported",
                             name, descr);
    else
        return sae_error_set(err, SAE_EINVAL,
                             "%s: .npy descr '%s' is not supported ('<f4', '<f2' or '<f8')", name,
                             descr);
    if (fortran)
        return sae_error_set(err, SAE_EINVAL, "%s: .npy in Fortran order is not supported", name);
    if (ndim < min_ndim || ndim > max_ndim)
        return sae_error_set(err, SAE_EINVAL, "%s: .npy array has %d dimensions (%d %s %d allowed)",
                             name, ndim, min_ndim, max_ndim == min_ndim + 1 ? "or" : "to",
                             max_ndim);

    size_t bytes = 0, end = 0;
    if (overflow || sae_mul_size(n_elems, sae_dtype_size(dt), &bytes) ||
        sae_add_size(hstart + hlen, bytes, &end))
        return sae_error_set(err, SAE_EFORMAT, "%s: .npy array size overflows", name);
    if (len != end)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: .npy file is %zu bytes but its header implies %zu (%s)", name,
                             len, end, len < end ? "truncated" : "trailing bytes");
    out->dtype = dt;
    out->ndim = ndim;
    memcpy(out->shape, shape, sizeof out->shape);
    out->data_offset = hstart + hlen;
    out->data_bytes = bytes;
    return 0;
}

/* Activation files and request bodies: 1-D or 2-D. */
int sae_npy_parse(const char *name, const uint8_t *buf, size_t len, sae_npy_info *out,
                  sae_error *err)
{
    return npy_parse(name, buf, len, 1, 2, out, err);
}

/* Archive members: 0-D to max_ndim-D. */
int sae_npy_parse_nd(const char *name, const uint8_t *buf, size_t len, int max_ndim,
                     sae_npy_info *out, sae_error *err)
{
    if (max_ndim < 0 || max_ndim > SAE_NPY_MAX_DIMS)
        max_ndim = SAE_NPY_MAX_DIMS;
    return npy_parse(name, buf, len, 0, max_ndim, out, err);
}

/* Header as numpy writes it, then the data converted in chunks, through an
 * outfile (a temporary renamed into place). */
int sae_npy_write(const char *path, sae_dtype dtype, const float *data, size_t rows,
                  size_t cols, sae_error *err)
{
    const char *descr = dtype == SAE_DT_F32   ? "<f4"
                        : dtype == SAE_DT_F16 ? "<f2"
                        : dtype == SAE_DT_F64 ? "<f8"
                                              : NULL;
    if (!descr)
        return sae_error_set(err, SAE_EINVAL, "%s: .npy can be written as F32, F16 or F64, not %s",
                             path, sae_dtype_name(dtype));
    size_t n_elems;
    if (sae_mul_size(rows, cols, &n_elems))
        return sae_error_set(err, SAE_EINVAL, "%s: %zu x %zu overflows", path, rows, cols);

    /* Version 1.0 header, padded with spaces so the data starts on a 64-byte
     * boundary, ending in a newline: what numpy writes. */
    char header[256];
    int n = snprintf(header + 10, sizeof header - 10,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr, rows,
                     cols);
    size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    size_t hlen = total - 10;
    header[8] = (char)(hlen & 0xff);
    header[9] = (char)(hlen >> 8);
    memset(header + 10 + n, ' ', total - 10 - (size_t)n - 1);
    header[total - 1] = '\n';

    sae_outfile out = {0};
    uint8_t *conv = NULL;
    int rc;
    if ((rc = sae_outfile_open(&out, path, err)))
        return rc;
    FILE *fp = out.fp;
    errno = 0;
    bool bad = fwrite(header, 1, total, fp) != total;
    if (dtype == SAE_DT_F32) {
        bad = bad || (n_elems && fwrite(data, sizeof(float), n_elems, fp) != n_elems);
    } else {
        enum { CHUNK = 1 << 16 };
        size_t es = sae_dtype_size(dtype);
        if (!(conv = malloc((size_t)CHUNK * es)))
            bad = true;
        for (size_t at = 0; at < n_elems && !bad; at += CHUNK) {
            size_t m = n_elems - at < CHUNK ? n_elems - at : CHUNK;
            sae_convert_from_f32(dtype, data + at, m, conv);
            bad = fwrite(conv, es, m, fp) != m;
        }
    }
    if (bad) {
        rc = sae_error_set(err, SAE_EIO, "%s: write failed: %s", path,
                           errno ? strerror(errno) : "out of memory");
        sae_outfile_abort(&out);
    } else {
        rc = sae_outfile_commit(&out, err);
    }
    free(conv);
    return rc;
}

/* The F32 case of sae_npy_write. */
int sae_npy_write_f32(const char *path, const float *data, size_t rows, size_t cols,
                      sae_error *err)
{
    return sae_npy_write(path, SAE_DT_F32, data, rows, cols, err);
}
