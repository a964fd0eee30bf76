/* zipmap.c: libzip over a mapping, with each stored member's data offset
 * found and verified so that its bytes can be used in place.
 *
 * How the offset is found (libzip has no public call for it, nih-at/libzip
 * #82): the archive is opened from a source callback over the buffer that
 * records the position of every read. Opening a member's raw bytes
 * (ZIP_FL_COMPRESSED) and reading its first bytes makes libzip read them
 * from the member's data offset; the recorded position is that offset. It is
 * used only when it checks out: stored, not encrypted, sizes agree, the
 * member lies inside the buffer, the first and the last bytes libzip hands
 * back are the buffer's bytes at the offset and at offset + size - n. Else
 * the member is read through libzip like a deflated one. */
#include "io/zipmap.h"

#include <stdlib.h>
#include <string.h>
#include <zip.h>
#include <zlib.h>

/* The source callback's state: the buffer, the read position and where the
 * last read started. */
typedef struct zip_mem_src {
    const uint8_t *buf;
    size_t len;
    uint64_t pos;
    uint64_t last_at;  /* position of the last READ, UINT64_MAX if none since reset */
    uint64_t last_len; /* bytes that READ returned */
    zip_error_t error;
} zip_mem_src;

/* An open archive: libzip's handle over the source and the member table. */
struct sae_zip {
    char *name;      /* owned, for messages */
    zip_t *za;       /* owns the zip_source, not the buffer */
    zip_mem_src src; /* the source's state (lives here, not in libzip) */
    size_t n;
    sae_zip_member *members; /* owned, central-directory order */
};

/* libzip's source callback over the buffer: a read-only, seekable source. */
static zip_int64_t mem_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    zip_mem_src *s = ud;
    switch (cmd) {
    case ZIP_SOURCE_OPEN:
        s->pos = 0;
        return 0;
    case ZIP_SOURCE_READ: {
        uint64_t left = s->pos < s->len ? s->len - s->pos : 0;
        uint64_t n = len < left ? len : left;
        if (n)
            memcpy(data, s->buf + s->pos, (size_t)n);
        s->last_at = s->pos;
        s->last_len = n;
        s->pos += n;
        return (zip_int64_t)n;
    }
    case ZIP_SOURCE_CLOSE:
        return 0;
    case ZIP_SOURCE_STAT: {
        zip_stat_t *st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, len, &s->error);
        if (!st)
            return -1;
        zip_stat_init(st);
        st->size = s->len;
        st->valid |= ZIP_STAT_SIZE;
        return sizeof *st;
    }
    case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&s->error, data, len);
    case ZIP_SOURCE_FREE:
        return 0;
    case ZIP_SOURCE_SEEK: {
        zip_int64_t at = zip_source_seek_compute_offset(s->pos, s->len, data, len, &s->error);
        if (at < 0)
            return -1;
        s->pos = (uint64_t)at;
        return 0;
    }
    case ZIP_SOURCE_TELL:
        return (zip_int64_t)s->pos;
    case ZIP_SOURCE_SUPPORTS:
        return ZIP_SOURCE_SUPPORTS_SEEKABLE;
    default:
        zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
}

/* qsort order of member pointers by name, for the duplicate check. */
static int member_name_cmp(const void *a, const void *b)
{
    const sae_zip_member *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The libzip read of n raw bytes at `skip` into the open raw member f, and
 * where in the buffer they came from, or -1 if libzip did not read them from
 * the buffer in one piece equal to what it returned. */
static int64_t raw_read_at(sae_zip *z, zip_file_t *f, uint64_t skip, uint8_t *tmp, uint64_t n)
{
    if (skip && zip_fseek(f, (zip_int64_t)skip, SEEK_SET) != 0)
        return -1;
    z->src.last_at = UINT64_MAX;
    if (zip_fread(f, tmp, n) != (zip_int64_t)n)
        return -1;
    uint64_t at = z->src.last_at;
    if (at == UINT64_MAX || z->src.last_len != n || at > z->src.len || z->src.len - at < n ||
        memcmp(z->src.buf + at, tmp, (size_t)n) != 0)
        return -1;
    return (int64_t)at;
}

/* Finds and verifies member i's data offset (see the file comment); -1 when
 * the member cannot be used in place. */
static int64_t locate(sae_zip *z, zip_uint64_t i, const sae_zip_member *m)
{
    if (m->method != ZIP_CM_STORE || m->encrypted || m->size != m->comp_size || m->size == 0 ||
        m->size > z->src.len)
        return -1;
    zip_file_t *f = zip_fopen_index(z->za, i, ZIP_FL_COMPRESSED);
    if (!f)
        return -1;
    uint8_t tmp[64];
    uint64_t n = m->size < sizeof tmp ? m->size : sizeof tmp;
    int64_t at = raw_read_at(z, f, 0, tmp, n);
    if (at >= 0 && (uint64_t)at + m->size > z->src.len) /* at <= len and size <= len: no wrap */
        at = -1;
    if (at >= 0 && m->size > n &&
        raw_read_at(z, f, m->size - n, tmp, n) != at + (int64_t)(m->size - n))
        at = -1;
    zip_fclose(f);
    return at;
}

/* Opens the archive from the buffer, lists the members, refuses duplicate
 * names, and locates every stored member's bytes. */
int sae_zip_open_mem(const char *name, const uint8_t *buf, size_t len, sae_zip **out,
                     sae_error *err)
{
    sae_zip *z = calloc(1, sizeof *z);
    sae_zip_member **sorted = NULL;
    int rc = SAE_ENOMEM;
    if (!z || !(z->name = strdup(name))) {
        sae_error_set(err, rc, "%s: out of memory", name);
        goto fail;
    }
    z->src.buf = buf;
    z->src.len = len;
    zip_error_init(&z->src.error);
    if (len == 0) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: empty file, not a zip archive", name);
        goto fail;
    }

    zip_error_t zerr;
    zip_error_init(&zerr);
    zip_source_t *src = zip_source_function_create(mem_cb, &z->src, &zerr);
    if (!src) {
        sae_error_set(err, rc, "%s: cannot open the zip source: %s", name,
                      zip_error_strerror(&zerr));
        zip_error_fini(&zerr);
        goto fail;
    }
    z->za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    if (!z->za) {
        int ze = zip_error_code_zip(&zerr);
        rc = sae_error_set(err, ze == ZIP_ER_MEMORY ? SAE_ENOMEM : SAE_EFORMAT, "%s: %s: %s", name,
                           ze == ZIP_ER_NOZIP    ? "not a zip archive (no end of central "
                                                   "directory record)"
                           : ze == ZIP_ER_EXISTS ? "two members have one name"
                                                 : "not a readable zip archive",
                           zip_error_strerror(&zerr));
        zip_error_fini(&zerr);
        zip_source_free(src);
        goto fail;
    }
    zip_error_fini(&zerr);

    zip_int64_t count = zip_get_num_entries(z->za, 0);
    if (count < 0 || (uint64_t)count > SAE_ZIP_MAX_MEMBERS) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: zip archive claims %lld members (at most %u)",
                           name, (long long)count, SAE_ZIP_MAX_MEMBERS);
        goto fail;
    }
    z->members = calloc(count ? (size_t)count : 1, sizeof *z->members);
    sorted = calloc(count ? (size_t)count : 1, sizeof *sorted);
    if (!z->members || !sorted) {
        sae_error_set(err, rc, "%s: out of memory for %lld zip members", name, (long long)count);
        goto fail;
    }
    for (zip_uint64_t i = 0; i < (zip_uint64_t)count; i++) {
        zip_stat_t st;
        sae_zip_member *m = &z->members[i];
        if (zip_stat_index(z->za, i, 0, &st) != 0) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: zip member %llu: %s", name,
                               (unsigned long long)i, zip_strerror(z->za));
            goto fail;
        }
        const zip_uint64_t need = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE |
                                  ZIP_STAT_COMP_METHOD | ZIP_STAT_CRC;
        if ((st.valid & need) != need || !st.name || !st.name[0]) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: zip member %llu has no name or sizes", name,
                               (unsigned long long)i);
            goto fail;
        }
        if (!(m->name = strdup(st.name))) {
            sae_error_set(err, rc, "%s: out of memory", name);
            goto fail;
        }
        z->n++;
        m->size = st.size;
        m->comp_size = st.comp_size;
        m->method = st.comp_method;
        m->crc = st.crc;
        m->encrypted =
            (st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE;
        m->data_offset = locate(z, i, m);
        sorted[i] = m;
    }
    qsort(sorted, z->n, sizeof *sorted, member_name_cmp);
    for (size_t i = 1; i < z->n; i++)
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: zip member name \"%.200s\" appears twice",
                               name, sorted[i]->name);
            goto fail;
        }
    free(sorted);
    *out = z;
    return 0;
fail:
    free(sorted);
    sae_zip_free(z);
    return rc;
}

size_t sae_zip_count(const sae_zip *z)
{
    return z->n;
}

const sae_zip_member *sae_zip_member_at(const sae_zip *z, size_t i)
{
    return i < z->n ? &z->members[i] : NULL;
}

/* Linear search: archives here hold a handful of members. */
const sae_zip_member *sae_zip_find(const sae_zip *z, const char *name)
{
    for (size_t i = 0; i < z->n; i++)
        if (strcmp(z->members[i].name, name) == 0)
            return &z->members[i];
    return NULL;
}

/* CRC-32 of n bytes, in pieces zlib's unsigned length can take. */
static uint32_t crc_of(const uint8_t *p, uint64_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* Reads member index i through libzip (inflating, checking the CRC) into a
 * new buffer of exactly m->size bytes, then asks for one byte more: a member
 * whose stream holds more than it claims is refused, and the request past
 * the end is what makes libzip compare the CRC. */
static int read_copy(sae_zip *z, zip_uint64_t i, const sae_zip_member *m, void **owned,
                     sae_error *err)
{
    uint8_t *b = malloc(m->size ? (size_t)m->size : 1);
    if (!b)
        return sae_error_set(err, SAE_ENOMEM,
                             "%s: zip member \"%.200s\": out of memory for %llu "
                             "bytes",
                             z->name, m->name, (unsigned long long)m->size);
    zip_file_t *f = zip_fopen_index(z->za, i, 0);
    int rc = 0;
    if (!f) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: zip member \"%.200s\": cannot open: %s", z->name,
                           m->name, zip_strerror(z->za));
        goto out;
    }
    uint64_t got = 0;
    while (got < m->size) {
        uint64_t want = m->size - got < (1u << 30) ? m->size - got : (1u << 30);
        zip_int64_t r = zip_fread(f, b + got, want);
        if (r < 0) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: zip member \"%.200s\": %s", z->name, m->name,
                               zip_error_strerror(zip_file_get_error(f)));
            goto out;
        }
        if (r == 0) {
            rc = sae_error_set(err, SAE_EFORMAT,
                               "%s: zip member \"%.200s\": holds %llu bytes, "
                               "not the %llu its header claims",
                               z->name, m->name, (unsigned long long)got,
                               (unsigned long long)m->size);
            goto out;
        }
        got += (uint64_t)r;
    }
    uint8_t extra;
    zip_int64_t r = zip_fread(f, &extra, 1);
    if (r < 0)
        rc = sae_error_set(err, SAE_EFORMAT, "%s: zip member \"%.200s\": %s", z->name, m->name,
                           zip_error_strerror(zip_file_get_error(f)));
    else if (r > 0)
        rc = sae_error_set(err, SAE_EFORMAT,
                           "%s: zip member \"%.200s\": holds more than the %llu "
                           "bytes its header claims",
                           z->name, m->name, (unsigned long long)m->size);
out:
    if (f)
        zip_fclose(f);
    if (rc)
        free(b);
    else
        *owned = b;
    return rc;
}

/* The size rules, then the bytes in place (CRC checked here) or copied. */
int sae_zip_read(sae_zip *z, const sae_zip_member *m, const uint8_t **data, void **owned,
                 sae_error *err)
{
    *owned = NULL;
    *data = NULL;
    size_t i = (size_t)(m - z->members);
    if (m < z->members || i >= z->n)
        return sae_error_set(err, SAE_EINVAL, "%s: zip member not of this archive", z->name);
    const char *p = z->name;
    if (m->encrypted)
        return sae_error_set(err, SAE_EFORMAT, "%s: zip member \"%.200s\" is encrypted", p,
                             m->name);
    if (m->method != ZIP_CM_STORE && m->method != ZIP_CM_DEFLATE)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: zip member \"%.200s\": compression method "
                             "%d is not supported (only stored and deflated)",
                             p, m->name, m->method);
    if (m->comp_size > z->src.len)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: zip member \"%.200s\" claims %llu bytes in an "
                             "archive of %zu",
                             p, m->name, (unsigned long long)m->comp_size, z->src.len);
    if (m->method == ZIP_CM_STORE && m->size != m->comp_size)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: stored zip member \"%.200s\" claims %llu "
                             "bytes uncompressed but %llu stored",
                             p, m->name, (unsigned long long)m->size,
                             (unsigned long long)m->comp_size);
    if (m->method == ZIP_CM_DEFLATE &&
        (m->size > SAE_ZIP_MAX_INFLATED || m->size / SAE_ZIP_MAX_RATIO > z->src.len))
        return sae_error_set(err, SAE_ENOMEM,
                             "%s: zip member \"%.200s\" would inflate to %llu "
                             "bytes from an archive of %zu (more than %u times its size or "
                             "%llu bytes): refused as a zip bomb",
                             p, m->name, (unsigned long long)m->size, z->src.len, SAE_ZIP_MAX_RATIO,
                             (unsigned long long)SAE_ZIP_MAX_INFLATED);
    if (m->size > SIZE_MAX)
        return sae_error_set(err, SAE_ENOMEM, "%s: zip member \"%.200s\" is too large", p, m->name);
    if (m->data_offset >= 0) {
        const uint8_t *at = z->src.buf + m->data_offset;
        uint32_t crc = crc_of(at, m->size);
        if (crc != m->crc)
            return sae_error_set(err, SAE_EFORMAT,
                                 "%s: zip member \"%.200s\": CRC error (the "
                                 "bytes give %08x, the header says %08x)",
                                 p, m->name, crc, m->crc);
        *data = at;
        return 0;
    }
    int rc = read_copy(z, i, m, owned, err);
    if (!rc)
        *data = *owned;
    return rc;
}

/* Discards libzip's handle (nothing was written) and the member table. */
void sae_zip_free(sae_zip *z)
{
    if (!z)
        return;
    if (z->za)
        zip_discard(z->za);
    for (size_t i = 0; i < z->n; i++)
        free(z->members[i].name);
    free(z->members);
    zip_error_fini(&z->src.error);
    free(z->name);
    free(z);
}
