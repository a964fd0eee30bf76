/* mapped.h: which file each live read-only mapping came from, so that a
 * SIGBUS can be explained.
 *
 * Weights, activation files and the index are memory-mapped. If one of those
 * files is truncated or rewritten in place while mapped (cp over the served
 * weights, say), the next access to a lost page raises SIGBUS, and without
 * help the process dies with "Bus error" and nothing naming the file. The
 * mapping code registers each mapping here; a program's SIGBUS handler asks
 * sae_mapped_explain for a message naming the file and how to replace it
 * safely, writes it, and lets the signal take its default course. Core itself
 * never installs a handler, prints or exits (docs/STYLE.md).
 *
 * A mapping that must stay exactly what was loaded (saed's weights) is also
 * watched: the registry keeps a descriptor of its file and the file's
 * identity at load. MAP_PRIVATE protects against neither a truncation
 * (SIGBUS) nor a rewrite in place (cp: the pages read change), so the rule is
 * catch and refuse: a server's SIGBUS handler calls sae_mapped_absorb, which
 * puts zero pages where the lost ones were and marks the mapping damaged, so
 * the faulting thread goes on (whatever thread it is, a BLAS worker
 * included); and the server asks sae_mapped_changed around each use and
 * refuses to answer from a mapping that is damaged or whose file was written
 * since. A rename over the path or a delete changes nothing: the mapping
 * holds the old file.
 *
 * The registry is a list of chunks of 64 slots, each slot published with
 * atomics; the list only grows (a chunk, once linked, is never freed), so the
 * lookup is async-signal-safe and lock-free however many mappings there are
 * (a server of a whole release maps hundreds of weights files at once); add
 * and remove may be called from any thread. Only when a new chunk cannot be
 * allocated is a mapping left unregistered, which costs its explanation and
 * its watch, not the mapping. */
#ifndef SAE_MAPPED_H
#define SAE_MAPPED_H

#include <stdbool.h>
#include <stddef.h>

/* Records that [base, base + len) maps path (each model holds one mapping,
 * each activation file one). Takes a free slot, or grows the registry by a
 * chunk of 64; quietly does nothing if that allocation fails. */
void sae_mapped_add(const void *base, size_t len, const char *path);

/* Forgets the mapping that starts at base (before it is unmapped). */
void sae_mapped_remove(const void *base);

/* Watches the mapping that starts at base: keeps a duplicate of fd (the
 * mapped file, still open) and its size and times now. Returns 0, or -1 if
 * base is not registered or the descriptor cannot be kept (then
 * sae_mapped_changed cannot see a rewrite, only a lost page). */
int sae_mapped_watch(const void *base, int fd);

/* True when the watched mapping at base lost a page (a SIGBUS absorbed) or
 * its file's size or modification times differ from when it was watched:
 * what it maps can no longer be trusted. False for an unwatched mapping that
 * lost nothing. Thread-safe; one fstat. */
bool sae_mapped_changed(const void *base);

/* For a SIGBUS handler: if addr lies in a watched mapping, replaces its pages
 * from addr's page to its end with zero pages, marks it damaged and returns
 * true (the faulting access then reads zeros and the thread goes on); false
 * for any other address. Async-signal-safe (mmap and atomics only). */
bool sae_mapped_absorb(const void *addr);

/* Writes into buf (cap bytes, NUL-terminated, ending in a newline) a message
 * for a SIGBUS at addr: the file it maps and what to do, or, for an address
 * of no registered mapping, the general cause. prog prefixes the message.
 * Async-signal-safe: no allocation, no locks, no stdio. Returns the length. */
size_t sae_mapped_explain(const char *prog, const void *addr, char *buf, size_t cap);

#endif
