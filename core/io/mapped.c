/* mapped.c: the registry of read-only file mappings (see mapped.h). */
#include "io/mapped.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define MAPPED_SLOTS 64
#define MAPPED_PATH 512

enum { SLOT_FREE, SLOT_BUSY, SLOT_LIVE };

/* One mapping. state moves FREE -> BUSY (claimed by one adder, filling in)
 * -> LIVE (published: the handler may read base, len and path) -> FREE. */
typedef struct slot {
    atomic_int state;
    uintptr_t base;
    size_t len;
    char path[MAPPED_PATH];
} slot;

static slot slots[MAPPED_SLOTS];

void sae_mapped_add(const void *base, size_t len, const char *path)
{
    for (size_t i = 0; i < MAPPED_SLOTS; i++) {
        int expect = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &expect, SLOT_BUSY))
            continue;
        slots[i].base = (uintptr_t)base;
        slots[i].len = len;
        /* A path too long for the slot keeps its end, the part that names the file. */
        size_t n = strlen(path), skip = n >= MAPPED_PATH ? n - (MAPPED_PATH - 1) : 0;
        memcpy(slots[i].path, path + skip, n - skip + 1);
        atomic_store_explicit(&slots[i].state, SLOT_LIVE, memory_order_release);
        return;
    }
}

void sae_mapped_remove(const void *base)
{
    for (size_t i = 0; i < MAPPED_SLOTS; i++)
        if (atomic_load_explicit(&slots[i].state, memory_order_acquire) == SLOT_LIVE &&
            slots[i].base == (uintptr_t)base) {
            atomic_store_explicit(&slots[i].state, SLOT_FREE, memory_order_release);
            return;
        }
}

/* Appends s to buf at *n, keeping room for the final newline and NUL. */
static void put(char *buf, size_t cap, size_t *n, const char *s)
{
    while (*s && *n + 2 < cap)
        buf[(*n)++] = *s++;
}

size_t sae_mapped_explain(const char *prog, const void *addr, char *buf, size_t cap)
{
    if (cap < 2)
        return 0;
    size_t n = 0;
    uintptr_t a = (uintptr_t)addr;
    const char *path = NULL;
    for (size_t i = 0; i < MAPPED_SLOTS && !path; i++)
        if (atomic_load_explicit(&slots[i].state, memory_order_acquire) == SLOT_LIVE &&
            a >= slots[i].base && a - slots[i].base < slots[i].len)
            path = slots[i].path;
    put(buf, cap, &n, prog);
    put(buf, cap, &n, ": fatal: ");
    if (path) {
        put(buf, cap, &n, path);
        put(buf, cap, &n, " shrank while it was memory-mapped (truncated or rewritten in "
                          "place). Replace a file in use by writing a new one and renaming "
                          "it over the old");
    } else {
        put(buf, cap, &n, "SIGBUS: a memory-mapped file (weights, activations or the "
                          "index) shrank while in use, or the disk failed. Replace a file "
                          "in use by writing a new one and renaming it over the old");
    }
    buf[n++] = '\n';
    buf[n] = '\0';
    return n;
}
