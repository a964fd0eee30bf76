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
 * The registry is a fixed table of slots published with atomics, so the
 * lookup is async-signal-safe and lock-free; add and remove may be called
 * from any thread. A full table only costs the explanation, not the mapping. */
#ifndef SAE_MAPPED_H
#define SAE_MAPPED_H

#include <stddef.h>

/* Records that [base, base + len) maps path. Quietly does nothing if every
 * slot is taken (64: each model holds one, each activation file one). */
void sae_mapped_add(const void *base, size_t len, const char *path);

/* Forgets the mapping that starts at base (before it is unmapped). */
void sae_mapped_remove(const void *base);

/* Writes into buf (cap bytes, NUL-terminated, ending in a newline) a message
 * for a SIGBUS at addr: the file it maps and what to do, or, for an address
 * of no registered mapping, the general cause. prog prefixes the message.
 * Async-signal-safe: no allocation, no locks, no stdio. Returns the length. */
size_t sae_mapped_explain(const char *prog, const void *addr, char *buf, size_t cap);

#endif
