/* safetensors.c: the reader (validate, map, look up, convert) and the writer.
 *
 * File layout: an 8-byte little-endian header length n, n bytes of UTF-8 JSON
 * (an object: tensor name -> {dtype, shape, data_offsets}, plus an optional
 * "__metadata__" string->string object), then the data section. The reader
 * treats every file as hostile, as the reference implementation
 * (huggingface/safetensors) does: the header length is checked against the
 * 100 MB cap and the file size before anything is read, every size computed
 * from the header goes through checked arithmetic, the tensors sorted by
 * offset must tile the data section exactly, and on any failure everything
 * allocated so far is freed. Each violated rule has its own SAE_EST_* code. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/mapped.h"
#include "io/outfile.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "saed maps little-endian F32 tensors in place and needs a little-endian host"
#endif

/* ------------------------------------------------------------------ reader */

/* Reads a little-endian u64 from 8 bytes at p. */
static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Returns 1 if s[0..n) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF), else 0 with the offset of the first bad byte in *bad. */
static int utf8_valid(const uint8_t *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            goto fail;
        }
        if (len > n - i)
            goto fail;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                goto fail;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto fail;
        i += len;
    }
    return 1;
fail:
    *bad = i;
    return 0;
}

/* After jansson reports a duplicate key ending at byte `pos` of the JSON text
 * s[0..n), finds how deeply that key is nested (1: a top-level key, that is a
 * tensor name) and where its raw text starts and ends. jansson's position is
 * just past the key's closing quote. */
static int duplicate_key_depth(const char *s, size_t n, size_t pos, size_t *k0, size_t *k1)
{
    int depth = 0, in_str = 0;
    *k0 = *k1 = 0;
    for (size_t i = 0; i < pos && i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0, *k1 = i;
        } else if (c == '"') {
            in_str = 1, *k0 = i + 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    if (*k1 < *k0)
        *k1 = *k0;
    return depth;
}

/* A tensor's byte range inside the data section, for the tiling check. */
typedef struct st_span {
    uint64_t begin, end;
    size_t index; /* into f->tensors */
} st_span;

/* qsort order: by begin, then end, then header position (a total order). */
static int span_cmp(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Validates one tensor entry `val` named `name` and fills *t (t->name is set
 * by the caller) and *span (byte range relative to the data section). */
static int parse_entry(const sae_st_file *f, const char *name, json_t *val, sae_st_tensor *t,
                       st_span *span, sae_error *err)
{
    const char *p = f->path;
    if (!json_is_object(val))
        return sae_error_set(err, SAE_EST_HEADER_NOT_OBJECT,
                             "%s: tensor \"%.100s\": entry is not a JSON object", p, name);
    const char *key;
    json_t *v;
    json_object_foreach(val, key, v) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return sae_error_set(err, SAE_EST_HEADER_JSON,
                                 "%s: tensor \"%.100s\": unknown key \"%.64s\" (only dtype, "
                                 "shape, data_offsets are allowed)",
                                 p, name, key);
    }

    json_t *dt = json_object_get(val, "dtype");
    if (!json_is_string(dt))
        return sae_error_set(err, SAE_EST_UNKNOWN_DTYPE, "%s: tensor \"%.100s\": dtype %s", p,
                             name, dt ? "is not a string" : "is missing");
    if (sae_dtype_parse(json_string_value(dt), &t->dtype))
        return sae_error_set(err, SAE_EST_UNKNOWN_DTYPE,
                             "%s: tensor \"%.100s\": unknown dtype \"%.32s\"", p, name,
                             json_string_value(dt));

    json_t *shape = json_object_get(val, "shape");
    if (!json_is_array(shape))
        return sae_error_set(err, SAE_EST_BAD_SHAPE, "%s: tensor \"%.100s\": shape %s", p, name,
                             shape ? "is not an array" : "is missing");
    size_t ndim = json_array_size(shape);
    if (ndim > SAE_ST_MAX_DIMS)
        return sae_error_set(err, SAE_EST_BAD_SHAPE,
                             "%s: tensor \"%.100s\": shape has %zu dimensions (at most %d)", p,
                             name, ndim, SAE_ST_MAX_DIMS);
    t->ndim = (int)ndim;
    size_t n_elems = 1;
    int overflow = 0;
    for (size_t i = 0; i < ndim; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return sae_error_set(err, SAE_EST_BAD_SHAPE,
                                 "%s: tensor \"%.100s\": shape[%zu] is not a non-negative "
                                 "integer",
                                 p, name, i);
        t->shape[i] = (uint64_t)json_integer_value(d);
        /* Keep scanning after an overflow: a later bad dimension is the clearer error. */
        overflow |= sae_mul_size(n_elems, (size_t)t->shape[i], &n_elems);
    }
    size_t nbytes = 0;
    if (overflow || sae_mul_size(n_elems, sae_dtype_size(t->dtype), &nbytes))
        return sae_error_set(err, SAE_EST_SIZE_OVERFLOW,
                             "%s: tensor \"%.100s\": size of shape x dtype overflows", p, name);
    t->n_elems = n_elems;
    t->nbytes = nbytes;

    json_t *off = json_object_get(val, "data_offsets");
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(b) ||
        !json_is_integer(e) || json_integer_value(b) < 0 || json_integer_value(e) < 0)
        return sae_error_set(err, SAE_EST_BAD_OFFSETS,
                             "%s: tensor \"%.100s\": data_offsets is not [begin, end] with "
                             "non-negative integers",
                             p, name);
    span->begin = (uint64_t)json_integer_value(b);
    span->end = (uint64_t)json_integer_value(e);
    if (span->begin > span->end)
        return sae_error_set(err, SAE_EST_BAD_OFFSETS,
                             "%s: tensor \"%.100s\": data_offsets begin %llu > end %llu", p,
                             name, (unsigned long long)span->begin,
                             (unsigned long long)span->end);
    if (span->end - span->begin != nbytes)
        return sae_error_set(err, SAE_EST_SIZE_MISMATCH,
                             "%s: tensor \"%.100s\": data_offsets span %llu bytes but shape "
                             "and dtype %s need %zu",
                             p, name, (unsigned long long)(span->end - span->begin),
                             sae_dtype_name(t->dtype), nbytes);
    return 0;
}

/* Validates the "__metadata__" value and copies it into f->meta. A null value
 * means no metadata, as the reference's Option<HashMap<String, String>>. */
static int parse_meta(sae_st_file *f, json_t *val, sae_error *err)
{
    if (json_is_null(val))
        return 0;
    if (!json_is_object(val))
        return sae_error_set(err, SAE_EST_METADATA,
                             "%s: __metadata__ is not an object of string values", f->path);
    size_t n = json_object_size(val);
    f->meta = calloc(n ? n : 1, sizeof *f->meta);
    if (!f->meta)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for metadata", f->path);
    const char *key;
    json_t *v;
    json_object_foreach(val, key, v) {
        if (!json_is_string(v))
            return sae_error_set(err, SAE_EST_METADATA,
                                 "%s: __metadata__ value of \"%.64s\" is not a string", f->path,
                                 key);
        sae_st_meta *m = &f->meta[f->n_meta];
        m->key = strdup(key);
        m->value = strdup(json_string_value(v));
        f->n_meta++; /* counted before the check so sae_st_free releases a partial pair */
        if (!m->key || !m->value)
            return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for metadata", f->path);
    }
    return 0;
}

/* Validates buf step by step: length prefix,
 * header cap (before touching the header), UTF-8, JSON (duplicates rejected),
 * each entry, then the tiling of the data section and the file's exact size.
 * Tensor data pointers borrow from buf. */
int sae_st_parse(const char *name, const uint8_t *buf, size_t len, sae_st_file **out,
                 sae_error *err)
{
    sae_st_file *f = NULL;
    json_t *root = NULL;
    st_span *spans = NULL;
    int rc;

    if (len < 8) {
        rc = sae_error_set(err, SAE_EST_TRUNCATED,
                           "%s: truncated: %zu bytes, shorter than the 8-byte header length",
                           name, len);
        goto out;
    }
    uint64_t n = le64(buf);
    if (n > SAE_ST_MAX_HEADER) {
        rc = sae_error_set(err, SAE_EST_HEADER_TOO_LARGE,
                           "%s: header length %llu exceeds the %u-byte limit", name,
                           (unsigned long long)n, SAE_ST_MAX_HEADER);
        goto out;
    }
    if (n > len - 8) {
        rc = sae_error_set(err, SAE_EST_TRUNCATED,
                           "%s: truncated: header length %llu but only %zu bytes follow", name,
                           (unsigned long long)n, len - 8);
        goto out;
    }
    const char *hdr = (const char *)buf + 8;
    size_t bad;
    if (!utf8_valid((const uint8_t *)hdr, (size_t)n, &bad)) {
        rc = sae_error_set(err, SAE_EST_HEADER_UTF8,
                           "%s: header is not valid UTF-8 (header byte %zu)", name, bad);
        goto out;
    }
    json_error_t jerr;
    root = json_loadb(hdr, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key) {
            size_t k0, k1;
            int depth = duplicate_key_depth(hdr, (size_t)n, (size_t)jerr.position, &k0, &k1);
            int klen = (int)(k1 - k0 > 100 ? 100 : k1 - k0);
            if (depth == 1)
                rc = sae_error_set(err, SAE_EST_DUPLICATE_NAME,
                                   "%s: duplicate tensor name \"%.*s\" in header", name, klen,
                                   hdr + k0);
            else
                rc = sae_error_set(err, SAE_EST_HEADER_JSON,
                                   "%s: header JSON has duplicate key \"%.*s\" inside an entry",
                                   name, klen, hdr + k0);
        } else {
            rc = sae_error_set(err, SAE_EST_HEADER_JSON,
                               "%s: header is not valid JSON: %s (header byte %d)", name,
                               jerr.text, jerr.position);
        }
        goto out;
    }
    if (!json_is_object(root)) {
        rc = sae_error_set(err, SAE_EST_HEADER_NOT_OBJECT, "%s: header is not a JSON object",
                           name);
        goto out;
    }

    rc = SAE_ENOMEM;
    f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name))) {
        sae_error_set(err, rc, "%s: out of memory", name);
        goto out;
    }
    f->format = "safetensors";
    f->base = buf;
    f->size = len;
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    spans = calloc(cap ? cap : 1, sizeof *spans);
    if (!f->tensors || !spans) {
        sae_error_set(err, rc, "%s: out of memory for %zu tensor entries", name, cap);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_meta(f, val, err)))
                goto out;
            continue;
        }
        sae_st_tensor *t = &f->tensors[f->n_tensors];
        if (!(t->name = strdup(key))) {
            rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", name);
            goto out;
        }
        spans[f->n_tensors].index = f->n_tensors;
        f->n_tensors++;
        if ((rc = parse_entry(f, key, val, t, &spans[f->n_tensors - 1], err)))
            goto out;
    }

    /* Sorted by offset, the tensors must tile [0, data_len) exactly. */
    qsort(spans, f->n_tensors, sizeof *spans, span_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        if (spans[i].begin != at) {
            rc = sae_error_set(err, SAE_EST_OFFSETS_NOT_CONTIGUOUS,
                               "%s: tensor \"%.100s\": data_offsets begin at %llu, expected "
                               "%llu (%s)",
                               name, f->tensors[spans[i].index].name,
                               (unsigned long long)spans[i].begin, (unsigned long long)at,
                               spans[i].begin > at ? "a hole before it" : "overlaps another");
            goto out;
        }
        at = spans[i].end;
    }
    size_t data_len = len - 8 - (size_t)n;
    if (at > data_len) {
        rc = sae_error_set(err, SAE_EST_TRUNCATED,
                           "%s: truncated: tensors need %llu data bytes but the file has %zu",
                           name, (unsigned long long)at, data_len);
        goto out;
    }
    if (at < data_len) {
        rc = sae_error_set(err, SAE_EST_TRAILING_BYTES,
                           "%s: %zu trailing bytes after the last tensor's data", name,
                           data_len - (size_t)at);
        goto out;
    }
    const uint8_t *data = buf + 8 + n;
    for (size_t i = 0; i < f->n_tensors; i++)
        f->tensors[spans[i].index].data = data + spans[i].begin;

    *out = f;
    f = NULL;
    rc = 0;
out:
    free(spans);
    json_decref(root);
    sae_st_free(f);
    return rc;
}

/* Maps the whole file privately and read-only, registers and watches the
 * mapping (mapped.h keeps its own descriptor, so a cp or truncate is seen);
 * this descriptor is closed at once (the mapping stays). */
int sae_st_map(const char *path, const char *what, const uint8_t **base, size_t *len,
               sae_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = 0;
    struct stat st;

    if (fd < 0)
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st)) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        rc = sae_error_set(err, SAE_EIO, "%s: is a directory, not a%s %s file", path,
                           strchr("aeiou", what[0]) ? "n" : "", what);
    } else if (!S_ISREG(st.st_mode)) {
        rc = sae_error_set(err, SAE_EIO, "%s: not a regular file", path);
    } else if (st.st_size == 0) {
        rc = sae_error_set(err, SAE_EIO, "%s: empty file", path);
    } else {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            rc = sae_error_set(err, SAE_EIO, "%s: cannot map: %s", path, strerror(errno));
        } else {
            sae_mapped_add(map, (size_t)st.st_size, path);
            sae_mapped_watch(map, fd);
            *base = map;
            *len = (size_t)st.st_size;
        }
    }
    close(fd);
    return rc;
}

/* Forgets and unmaps a mapping made by sae_st_map. */
void sae_st_unmap(const uint8_t *base, size_t len)
{
    sae_mapped_remove(base);
    munmap((void *)base, len);
}

/* Maps the file, then reads it; the file owns the mapping on success. */
int sae_st_open_with(const char *path, const char *what, sae_st_parse_fn parse,
                     sae_st_file **out, sae_error *err)
{
    const uint8_t *map;
    size_t size;
    int rc = sae_st_map(path, what, &map, &size, err);
    if (rc)
        return rc;
    sae_st_file *f = NULL;
    if ((rc = parse(path, map, size, &f, err))) {
        sae_st_unmap(map, size);
        return rc;
    }
    f->mapped = true;
    *out = f;
    return 0;
}

/* Maps the file, then validates it with sae_st_parse. */
int sae_st_open(const char *path, sae_st_file **out, sae_error *err)
{
    return sae_st_open_with(path, "safetensors", sae_st_parse, out, err);
}

/* Frees names, metadata, owned tensor bytes and, when it is ours, the
 * mapping. NULL is a no-op. */
void sae_st_free(sae_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_tensors; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].owned);
    }
    free(f->tensors);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    if (f->mapped)
        sae_st_unmap(f->base, f->size);
    free(f->path);
    free(f);
}

/* Linear search: files hold a handful of tensors. */
const sae_st_tensor *sae_st_find(const sae_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

/* Linear search over the metadata pairs. */
const char *sae_st_meta_get(const sae_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

/* Borrows aligned F32 data from the mapping; converts anything else once. */
int sae_st_tensor_f32(const sae_st_file *f, const sae_st_tensor *t, const float **out,
                      float **owned, sae_error *err)
{
    if (!sae_dtype_is_float(t->dtype))
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: tensor \"%.100s\": dtype %s is not a float type (F32, F16, "
                             "BF16 or F64 is needed here)",
                             f->path, t->name, sae_dtype_name(t->dtype));
    if (t->dtype == SAE_DT_F32 && (uintptr_t)t->data % _Alignof(float) == 0) {
        *out = t->data;
        *owned = NULL;
        return 0;
    }
    size_t bytes;
    if (sae_mul_size(t->n_elems ? t->n_elems : 1, sizeof(float), &bytes))
        return sae_error_set(err, SAE_ENOMEM, "%s: tensor \"%.100s\": too large to convert",
                             f->path, t->name);
    float *buf = malloc(bytes);
    if (!buf)
        return sae_error_set(err, SAE_ENOMEM, "%s: tensor \"%.100s\": out of memory converting "
                             "%zu elements from %s",
                             f->path, t->name, t->n_elems, sae_dtype_name(t->dtype));
    sae_convert_to_f32(t->dtype, t->data, t->n_elems, buf);
    *out = buf;
    *owned = buf;
    return 0;
}

/* ------------------------------------------------------------------ writer */

/* One tensor queued for writing. */
typedef struct st_wentry {
    char *name;                     /* owned */
    sae_dtype dtype;                /* dtype written to the file */
    int ndim;
    uint64_t shape[SAE_ST_MAX_DIMS];
    size_t n_elems, nbytes;         /* nbytes in the file's dtype */
    const void *src;                /* dtype bytes, or floats when from_f32 */
    void *owned;                    /* the writer's copy of src, or NULL if borrowed */
    bool from_f32;                  /* src holds floats, converted to dtype while saving */
} st_wentry;

/* The tensors and metadata of a file being built, in the order added. */
struct sae_st_writer {
    st_wentry *entries;             /* owned */
    size_t n, cap;
    json_t *meta;                   /* owned: string -> string, insertion ordered */
};

/* An empty writer, or NULL when out of memory. */
sae_st_writer *sae_st_writer_new(void)
{
    sae_st_writer *w = calloc(1, sizeof *w);
    if (w && !(w->meta = json_object())) {
        free(w);
        return NULL;
    }
    return w;
}

/* Frees the writer and its copies (never borrowed data). NULL is a no-op. */
void sae_st_writer_free(sae_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->entries[i].name);
        free(w->entries[i].owned);
    }
    free(w->entries);
    json_decref(w->meta);
    free(w);
}

/* Queues a tensor: checks the name and shape, sizes it, copies src (elem_size
 * bytes per element) unless `borrow`. */
static int writer_add(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                      const uint64_t *shape, const void *src, size_t elem_size, bool from_f32,
                      bool borrow)
{
    if (!w || !name || !*name || strcmp(name, "__metadata__") == 0 || ndim < 0 ||
        ndim > SAE_ST_MAX_DIMS || (unsigned)dtype >= SAE_DT_COUNT)
        return SAE_EINVAL;
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return SAE_EINVAL;
    st_wentry e = {.dtype = dtype, .ndim = ndim, .from_f32 = from_f32};
    size_t n_elems = 1, nbytes, src_bytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > INT64_MAX || sae_mul_size(n_elems, (size_t)shape[i], &n_elems))
            return SAE_EINVAL;
        e.shape[i] = shape[i];
    }
    if (sae_mul_size(n_elems, sae_dtype_size(dtype), &nbytes) ||
        sae_mul_size(n_elems, elem_size, &src_bytes))
        return SAE_EINVAL;
    e.n_elems = n_elems;
    e.nbytes = nbytes;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 8;
        st_wentry *grown = realloc(w->entries, cap * sizeof *grown);
        if (!grown)
            return SAE_ENOMEM;
        w->entries = grown;
        w->cap = cap;
    }
    if (!(e.name = strdup(name)))
        return SAE_ENOMEM;
    if (borrow || src_bytes == 0) {
        e.src = src;
    } else {
        if (!(e.owned = malloc(src_bytes))) {
            free(e.name);
            return SAE_ENOMEM;
        }
        memcpy(e.owned, src, src_bytes);
        e.src = e.owned;
    }
    w->entries[w->n++] = e;
    return 0;
}

/* Queues raw dtype bytes, copied. */
int sae_st_writer_add(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                      const uint64_t *shape, const void *data)
{
    return writer_add(w, name, dtype, ndim, shape, data, sae_dtype_size(dtype), false, false);
}

/* Queues raw dtype bytes, borrowed until save. */
int sae_st_writer_add_ref(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                          const uint64_t *shape, const void *data)
{
    return writer_add(w, name, dtype, ndim, shape, data, sae_dtype_size(dtype), false, true);
}

/* Queues floats (copied) to be written as dtype. */
int sae_st_writer_add_f32(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                          const uint64_t *shape, const float *data)
{
    if (!sae_dtype_is_float(dtype))
        return SAE_EINVAL;
    return writer_add(w, name, dtype, ndim, shape, data, sizeof(float), true, false);
}

/* Queues floats (borrowed until save) to be written as dtype. */
int sae_st_writer_add_f32_ref(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                              const uint64_t *shape, const float *data)
{
    if (!sae_dtype_is_float(dtype))
        return SAE_EINVAL;
    return writer_add(w, name, dtype, ndim, shape, data, sizeof(float), true, true);
}

/* Sets a metadata pair; the value must be UTF-8 (jansson checks). */
int sae_st_writer_meta(sae_st_writer *w, const char *key, const char *value)
{
    if (!w || !key || !value)
        return SAE_EINVAL;
    json_t *s = json_string(value);
    if (!s)
        return SAE_EINVAL; /* not UTF-8 */
    return json_object_set_new(w->meta, key, s) ? SAE_EINVAL : 0;
}

/* Builds the header JSON (unpadded) into a new string: "__metadata__" first if
 * any, then the tensors in the order added with contiguous offsets. */
static char *writer_header(const sae_st_writer *w)
{
    json_t *root = json_object();
    char *text = NULL;
    if (!root)
        return NULL;
    if (json_object_size(w->meta) && json_object_set(root, "__metadata__", w->meta))
        goto out;
    size_t at = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_wentry *e = &w->entries[i];
        json_t *shape = json_array();
        json_t *ent = json_pack("{s:s, s:o, s:[I, I]}", "dtype", sae_dtype_name(e->dtype),
                                "shape", shape, "data_offsets", (json_int_t)at,
                                (json_int_t)(at + e->nbytes));
        if (!ent || json_object_set_new(root, e->name, ent))
            goto out;
        for (int d = 0; d < e->ndim; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)e->shape[d])))
                goto out;
        at += e->nbytes; /* the total was checked against overflow in save */
    }
    text = json_dumps(root, JSON_COMPACT);
out:
    json_decref(root);
    return text;
}

/* Writes the queued tensors' data to fp, converting float sources in chunks
 * so that no second full copy of a large tensor is ever built. */
static int writer_data(const sae_st_writer *w, FILE *fp)
{
    enum { CHUNK = 1 << 16 }; /* elements per conversion */
    uint8_t *buf = NULL;
    int rc = -1;
    for (size_t i = 0; i < w->n; i++) {
        const st_wentry *e = &w->entries[i];
        if (!e->from_f32 || e->dtype == SAE_DT_F32) {
            /* Raw bytes, or floats already in F32 layout on this little-endian host. */
            if (e->nbytes && fwrite(e->src, 1, e->nbytes, fp) != e->nbytes)
                goto out;
            continue;
        }
        if (!buf && !(buf = malloc((size_t)CHUNK * 8)))
            goto out;
        const float *src = e->src;
        size_t esz = sae_dtype_size(e->dtype);
        for (size_t at = 0; at < e->n_elems; at += CHUNK) {
            size_t m = e->n_elems - at < CHUNK ? e->n_elems - at : CHUNK;
            sae_convert_from_f32(e->dtype, src + at, m, buf);
            if (fwrite(buf, esz, m, fp) != m)
                goto out;
        }
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* Writes a temporary file beside path (same folder, so rename is atomic),
 * fsyncs it, renames it over path and fsyncs the folder. On failure the
 * temporary file is removed and path is untouched. */
int sae_st_writer_save(sae_st_writer *w, const char *path, sae_error *err)
{
    char *header = NULL;
    sae_outfile out = {0};
    int rc;

    size_t total = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (sae_add_size(total, w->entries[i].nbytes, &total) || total > INT64_MAX) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: tensors too large for one file", path);
            goto out;
        }
    }
    if (!(header = writer_header(w))) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: cannot build the safetensors header", path);
        goto out;
    }
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) / 8 * 8; /* 8 + padded keeps the data 8-byte aligned */
    if (padded > SAE_ST_MAX_HEADER) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: header of %zu bytes exceeds the limit", path,
                           padded);
        goto out;
    }
    if ((rc = sae_outfile_open(&out, path, err)))
        goto out;
    uint8_t len8[8];
    errno = 0;
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int bad = fwrite(len8, 1, 8, out.fp) != 8 || fwrite(header, 1, hlen, out.fp) != hlen;
    for (size_t i = hlen; i < padded && !bad; i++)
        bad = fputc(' ', out.fp) == EOF;
    if (bad || writer_data(w, out.fp)) {
        rc = sae_error_set(err, SAE_EIO, "%s: write failed: %s", path,
                           errno ? strerror(errno) : "out of memory");
        goto out;
    }
    rc = sae_outfile_commit(&out, err);
out:
    sae_outfile_abort(&out);
    free(header);
    return rc;
}
