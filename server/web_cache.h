/* web_cache.h: the web browser's files held in memory with their gzip, and
 * the version of its asset folder (static_get.c; docs/WEB.md "Loading").
 *
 * Every read still opens the file (relative to a folder descriptor, with
 * O_NOFOLLOW; only regular files up to a size cap), so the cache never serves
 * what the folder no longer holds: an entry is used only while the file's
 * inode, size, modification and change times are those it was read with;
 * otherwise the file is read, hashed and compressed again. Entries are kept
 * up to WEB_CACHE_MAX_FILE bytes each and WEB_CACHE_MAX_BYTES in all (the
 * browser's files are tens of KB); a file past either is served uncached and
 * uncompressed. Thread-safe: one mutex, held only to find, copy or replace
 * an entry, never while a file is read or compressed. */
#ifndef SAED_WEB_CACHE_H
#define SAED_WEB_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Largest file kept in memory, and the most all entries hold together. */
#define WEB_CACHE_MAX_FILE ((size_t)1 << 20)
#define WEB_CACHE_MAX_BYTES ((size_t)32 << 20)

struct web_cache;

/* One file as handed to one response: owned copies. */
struct web_file {
    char *body;        /* owned: the bytes, gzip-compressed when gzip is true */
    size_t len;
    bool gzip;         /* body is the gzip of the file */
    bool has_gzip;     /* a gzip form exists (so the reply varies by Accept-Encoding) */
    char hash[17];     /* XXH3-64 of the file's bytes, hex: its strong validator */
};

/* A new, empty cache; NULL when out of memory. */
struct web_cache *web_cache_new(void);
/* Frees the cache and every entry; NULL is fine. */
void web_cache_free(struct web_cache *c);

/* File `name` of folder descriptor dir (folder: a small tag naming which
 * folder, so equal names in two folders are two entries), at most max_bytes:
 * copies its bytes into *out, gzip-compressed when want_gzip and a gzip form
 * smaller than the file exists. Returns 0; -1 when there is no such servable
 * file (missing, a symlink, not regular, too large); -2 when it changed while
 * being read or memory ran out (out->body NULL). */
int web_cache_get(struct web_cache *c, int folder, int dir, const char *name, off_t max_bytes,
                  bool want_gzip, struct web_file *out);
/* Frees out's copy. */
void web_file_free(struct web_file *f);

/* The version of folder descriptor dir (opened without following a symlink):
 * the first 16 hex digits of an XXH3-64 over the name and content hash of
 * every file web_cache_get would serve from it, in name order, so any change
 * to a served file gives a new version. Reads (and caches) what changed.
 * Returns 0, or -1 when the folder cannot be read. */
int web_cache_version(struct web_cache *c, int folder, int dir, off_t max_bytes, char out[17]);

/* Whether name is a plain file name the browser's folders serve:
 * [A-Za-z0-9._-], not empty and not starting with a dot. */
bool web_plain_name(const char *name);

#endif
