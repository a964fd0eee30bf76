/* store_open.c: an index held in private memory (store.h:
 * sae_store_open_held), and the connection to an index of either kind.
 *
 * A held index is read whole, once, through one descriptor; the header
 * check, the digest and every later query read those same bytes, so what
 * was checked is what is served. Each connection deserializes the shared
 * copy read-only (no copy per connection: SQLite's memdb reads the buffer in
 * place), so nothing a connection does depends on the file any more. */
#include "index/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sae/model.h" /* sae_digest_buffer */

/* Reads the whole regular file behind fd (size bytes by fstat) into a new
 * anonymous mapping of its own (not malloc: glibc would keep a freed copy's
 * pages in its heap, and each reload would leave RSS behind); a file that
 * shrinks or grows while being read is refused. */
static int read_whole(int fd, const char *path, unsigned char **out, size_t *len,
                      sae_error *err)
{
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode))
        return sae_error_set(err, SAE_EIO, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > SIZE_MAX - 1)
        return sae_error_set(err, SAE_ENOMEM, "%s: too large to hold in memory", path);
    size_t n = (size_t)st.st_size, at = 0;
    unsigned char *buf = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for a copy of %zu bytes",
                             path, n);
    while (at < n) {
        ssize_t got = pread(fd, buf + at, n - at, (off_t)at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            munmap(buf, n ? n : 1);
            if (got < 0)
                return sae_error_set(err, SAE_EIO, "%s: read: %s", path, strerror(errno));
            return sae_error_set(err, SAE_EFORMAT, "%s: truncated while being read", path);
        }
        at += (size_t)got;
    }
    struct stat after;
    if (fstat(fd, &after) || after.st_size != st.st_size ||
        after.st_mtim.tv_sec != st.st_mtim.tv_sec || after.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
        munmap(buf, n ? n : 1);
        return sae_error_set(err, SAE_EFORMAT, "%s: changed while being read", path);
    }
    *out = buf;
    *len = n;
    return 0;
}

int sae_store_open_held(const char *path, sae_store **out, sae_error *err)
{
    int rc;
    sae_store *s = calloc(1, sizeof *s);
    if (!s)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    if (!(s->path = strdup(path))) {
        free(s);
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        rc = sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    else
        rc = read_whole(fd, path, &s->image, &s->image_len, err);
    if (fd >= 0)
        close(fd);
    if (!rc)
        rc = store_check_header(path, s->image, s->image_len, s->image_len, err);
    if (!rc) {
        sae_digest_buffer(s->image, s->image_len, s->file_digest);
        rc = store_load(s, err);
    }
    if (rc) {
        sae_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_image_free(sae_store *s)
{
    if (s->image)
        munmap(s->image, s->image_len ? s->image_len : 1);
    s->image = NULL;
}

const char *sae_store_file_digest(const sae_store *s)
{
    return s->file_digest;
}

/* A connection to a held image: an empty in-memory database given the image,
 * read-only, not freed by SQLite (the store owns it). */
static int open_image(const sae_store *s, sqlite3 **db, sae_error *err)
{
    if (s->image_len > (size_t)INT64_MAX)
        return sae_error_set(err, SAE_ENOMEM, "%s: too large", s->path);
    if (sqlite3_open_v2(":memory:", db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_deserialize(*db, "main", s->image, (sqlite3_int64)s->image_len,
                            (sqlite3_int64)s->image_len, SQLITE_DESERIALIZE_READONLY) !=
            SQLITE_OK) {
        int rc = sae_store_fail(*db, s->path, "cannot open", err);
        sqlite3_close(*db);
        *db = NULL;
        return rc;
    }
    /* With mmap on, SQLite's pager takes pages from memdb in place
     * (xFetch) instead of copying each into its cache. */
    sqlite3_exec(*db, "PRAGMA mmap_size = 1073741824;", NULL, NULL, NULL);
    return 0;
}

int store_open_db(const sae_store *s, sqlite3 **db, sae_error *err)
{
    if (s->image)
        return open_image(s, db, err);
    if (sqlite3_open_v2(s->uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        int rc = sae_store_fail(*db, s->path, "cannot open", err);
        sqlite3_close(*db);
        *db = NULL;
        return rc;
    }
    if (!s->no_mmap)
        sqlite3_exec(*db, "PRAGMA mmap_size = 1073741824;", NULL, NULL, NULL);
    return 0;
}

void sae_store_read_once(sae_store *s)
{
    s->no_mmap = true;
}
