/* web_cache.c: the web browser's files in memory with their gzip, and the
 * version of its asset folder (web_cache.h). */
#include "web_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "saed.h"

/* What says a file is unchanged since it was read. */
struct stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

/* One cached file: its bytes, its gzip (or NULL), its hash, the stamp it
 * was read with. */
struct entry {
    int folder;
    char *name;        /* owned */
    struct stamp st;
    char *body;        /* owned (len) */
    size_t len;
    char *gz;          /* owned (gz_len), or NULL: gzip would not pay */
    size_t gz_len;
    char hash[17];
};

/* The cache: a short array of entries (one per file of the browser). */
struct web_cache {
    pthread_mutex_t lock;
    struct entry *items; /* (n, cap) owned */
    size_t n, cap;
    size_t bytes;        /* body + gzip bytes held */
};

struct web_cache *web_cache_new(void)
{
    struct web_cache *c = calloc(1, sizeof *c);
    if (c)
        pthread_mutex_init(&c->lock, NULL);
    return c;
}

/* Frees what an entry owns. */
static void entry_clear(struct entry *e)
{
    free(e->name);
    free(e->body);
    free(e->gz);
    memset(e, 0, sizeof *e);
}

void web_cache_free(struct web_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        entry_clear(&c->items[i]);
    free(c->items);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void web_file_free(struct web_file *f)
{
    free(f->body);
    f->body = NULL;
}

bool web_plain_name(const char *name)
{
    if (!*name || *name == '.')
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void stamp_of(const struct stat *s, struct stamp *out)
{
    *out = (struct stamp){.dev = s->st_dev, .ino = s->st_ino, .size = s->st_size,
                          .mtime = s->st_mtim, .ctime = s->st_ctim};
}

static bool stamp_equal(const struct stamp *a, const struct stamp *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* The entry of (folder, name), or NULL; under the lock. */
static struct entry *find(struct web_cache *c, int folder, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->items[i].folder == folder && !strcmp(c->items[i].name, name))
            return &c->items[i];
    return NULL;
}

/* A copy of n bytes of p, or NULL. */
static char *copy_of(const char *p, size_t n)
{
    char *q = malloc(n ? n : 1);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

/* Copies entry e's form into out (gzip when wanted and there is one); -2
 * when out of memory. Under the lock, or on an entry not (yet) shared. */
static int copy_out(const struct entry *e, bool want_gzip, struct web_file *out)
{
    out->gzip = want_gzip && e->gz;
    out->has_gzip = e->gz != NULL;
    out->len = out->gzip ? e->gz_len : e->len;
    out->body = copy_of(out->gzip ? e->gz : e->body, out->len);
    memcpy(out->hash, e->hash, sizeof out->hash);
    return out->body ? 0 : -2;
}

/* Reads fd (st.size bytes) into a new entry *e with its hash and gzip: 0,
 * or -2 (changed while read, out of memory). */
static int entry_read(int fd, const struct stamp *st, struct entry *e)
{
    size_t len = (size_t)st->size, got = 0;
    e->body = malloc(len ? len : 1);
    if (!e->body)
        return -2;
    while (got < len) {
        ssize_t r = pread(fd, e->body + got, len - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got != len) /* truncated while being read: better no file than half of one */
        return -2;
    e->len = len;
    e->st = *st;
    snprintf(e->hash, sizeof e->hash, "%016llx", (unsigned long long)XXH3_64bits(e->body, len));
    /* Level 9, once per change of the file; kept only when it saves a tenth. */
    if (len >= 256 && len <= WEB_CACHE_MAX_FILE &&
        !reply_gzip(e->body, len, 9, &e->gz, &e->gz_len) && e->gz_len > len - len / 10) {
        free(e->gz);
        e->gz = NULL;
    }
    return 0;
}

/* Puts e (taken) in the cache in place of (folder, name)'s old entry, when
 * it fits the caps; otherwise frees it. Takes the lock. */
static void keep(struct web_cache *c, int folder, const char *name, struct entry *e)
{
    size_t size = e->len + (e->gz ? e->gz_len : 0);
    pthread_mutex_lock(&c->lock);
    struct entry *old = find(c, folder, name);
    size_t held = c->bytes - (old ? old->len + (old->gz ? old->gz_len : 0) : 0);
    bool fits = e->len <= WEB_CACHE_MAX_FILE && held + size <= WEB_CACHE_MAX_BYTES;
    if (fits && !old && c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        struct entry *items = realloc(c->items, cap * sizeof *items);
        if (items) {
            c->items = items;
            c->cap = cap;
        } else {
            fits = false;
        }
    }
    if (fits && !(e->name = strdup(name)))
        fits = false;
    if (fits) {
        e->folder = folder;
        if (old)
            entry_clear(old);
        else
            old = &c->items[c->n++];
        *old = *e;
        c->bytes = held + size;
    } else {
        entry_clear(e);
    }
    pthread_mutex_unlock(&c->lock);
}

/* The cached entry of (folder, name) for stamp st, copied out (out non-NULL)
 * or only its hash (hash non-NULL); false when there is none for this stamp. */
static bool lookup(struct web_cache *c, int folder, const char *name, const struct stamp *st,
                   bool want_gzip, struct web_file *out, char hash[17], int *rc)
{
    pthread_mutex_lock(&c->lock);
    struct entry *e = find(c, folder, name);
    bool hit = e && stamp_equal(&e->st, st);
    if (hit && out)
        *rc = copy_out(e, want_gzip, out);
    if (hit && hash)
        memcpy(hash, e->hash, 17);
    pthread_mutex_unlock(&c->lock);
    return hit;
}

/* web_cache_get, and the hash-only form of web_cache_version (out NULL). */
static int get(struct web_cache *c, int folder, int dir, const char *name, off_t max_bytes,
               bool want_gzip, struct web_file *out, char hash[17])
{
    if (out)
        memset(out, 0, sizeof *out);
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat s;
    if (fstat(fd, &s) || !S_ISREG(s.st_mode) || s.st_size > max_bytes) {
        close(fd);
        return -1;
    }
    struct stamp st;
    stamp_of(&s, &st);
    int rc = 0;
    if (lookup(c, folder, name, &st, want_gzip, out, hash, &rc)) {
        close(fd);
        return rc;
    }
    struct entry e = {0};
    rc = entry_read(fd, &st, &e);
    close(fd);
    if (!rc && out)
        rc = copy_out(&e, want_gzip, out);
    if (!rc && hash)
        memcpy(hash, e.hash, 17);
    if (rc) {
        entry_clear(&e);
        return rc;
    }
    keep(c, folder, name, &e);
    return 0;
}

int web_cache_get(struct web_cache *c, int folder, int dir, const char *name, off_t max_bytes,
                  bool want_gzip, struct web_file *out)
{
    return get(c, folder, dir, name, max_bytes, want_gzip, out, NULL);
}

/* qsort order of file names. */
static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int web_cache_version(struct web_cache *c, int folder, int dir, off_t max_bytes, char out[17])
{
    int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!web_plain_name(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **more = realloc(names, cap * sizeof *names);
            if (!more) {
                rc = -1;
                break;
            }
            names = more;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (!rc) {
        qsort(names, n, sizeof *names, by_name);
        XXH3_state_t *h = XXH3_createState();
        if (!h || XXH3_64bits_reset(h) != XXH_OK)
            rc = -1;
        for (size_t i = 0; !rc && i < n; i++) {
            char hash[17];
            if (get(c, folder, dir, names[i], max_bytes, false, NULL, hash))
                continue; /* not served (a symlink, a folder, ...): not part of the version */
            XXH3_64bits_update(h, names[i], strlen(names[i]) + 1);
            XXH3_64bits_update(h, hash, sizeof hash);
        }
        if (!rc)
            snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits_digest(h));
        XXH3_freeState(h);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
