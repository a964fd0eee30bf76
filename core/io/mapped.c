/* mapped.c: the registry of read-only file mappings (see mapped.h). */
#include "io/mapped.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAPPED_CHUNK 64
#define MAPPED_PATH 512

enum { SLOT_FREE, SLOT_BUSY, SLOT_LIVE };

/* One mapping. state moves FREE -> BUSY (claimed by one adder, filling in)
 * -> LIVE (published: the handler may read base, len and path) -> FREE.
 * watch_fd (owned, -1 unwatched) and the identity fields are set once by
 * sae_mapped_watch before `watched` is published; damaged is set by
 * sae_mapped_absorb. path points into its chunk's paths (kept apart so a
 * scan of the slots touches few cache lines). */
typedef struct slot {
    atomic_int state;
    uintptr_t base;
    size_t len;
    char *path;
    atomic_bool watched, damaged;
    int watch_fd;
    off_t size;
    struct timespec mtime;
} slot;

/* MAPPED_CHUNK slots and their paths. Chunks form a list that only grows:
 * a chunk, once linked through `next` (published with release, read with
 * acquire), is never unlinked or freed, so a SIGBUS handler can walk the
 * list at any moment without a lock and without allocating. The first chunk
 * is static; the others are allocated by sae_mapped_add when every slot is
 * taken (a server with hundreds of SAEs mapped at once), one per 64
 * mappings at most, and live until the process exits. */
typedef struct chunk {
    slot slots[MAPPED_CHUNK];
    _Atomic(struct chunk *) next;
    char paths[MAPPED_CHUNK][MAPPED_PATH];
} chunk;

static chunk first;

/* The chunk after c, or NULL (an acquire load: its slots are initialised). */
static chunk *next_of(chunk *c)
{
    return atomic_load_explicit(&c->next, memory_order_acquire);
}

/* Claims a free slot in c (state BUSY), or NULL when all are taken. */
static slot *claim(chunk *c)
{
    for (size_t i = 0; i < MAPPED_CHUNK; i++) {
        int expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&c->slots[i].state, &expect, SLOT_BUSY)) {
            c->slots[i].path = c->paths[i];
            return &c->slots[i];
        }
    }
    return NULL;
}

/* A claimed slot, growing the list by one chunk when every slot is taken;
 * NULL when a new chunk cannot be allocated. */
static slot *claim_any(void)
{
    for (chunk *c = &first;;) {
        slot *sl = claim(c);
        if (sl)
            return sl;
        chunk *n = next_of(c);
        if (n) {
            c = n;
            continue;
        }
        /* calloc: every state is SLOT_FREE (0) and next NULL. */
        chunk *fresh = calloc(1, sizeof *fresh);
        if (!fresh)
            return NULL;
        chunk *expect = NULL;
        if (!atomic_compare_exchange_strong_explicit(&c->next, &expect, fresh,
                                                     memory_order_acq_rel, memory_order_acquire))
            free(fresh); /* another adder linked one first: use that */
        c = next_of(c);
    }
}

void sae_mapped_add(const void *base, size_t len, const char *path)
{
    slot *sl = claim_any();
    if (!sl)
        return;
    sl->base = (uintptr_t)base;
    sl->len = len;
    sl->watch_fd = -1;
    atomic_store(&sl->watched, false);
    atomic_store(&sl->damaged, false);
    /* A path too long for the slot keeps its end, the part that names the file. */
    size_t n = strlen(path), skip = n >= MAPPED_PATH ? n - (MAPPED_PATH - 1) : 0;
    memcpy(sl->path, path + skip, n - skip + 1);
    atomic_store_explicit(&sl->state, SLOT_LIVE, memory_order_release);
}

/* The live slot with a mapping that contains addr (exact: that starts at
 * it), or NULL. Async-signal-safe: atomics and reads only. */
static slot *find(uintptr_t addr, bool exact)
{
    for (chunk *c = &first; c; c = next_of(c))
        for (size_t i = 0; i < MAPPED_CHUNK; i++) {
            slot *sl = &c->slots[i];
            if (atomic_load_explicit(&sl->state, memory_order_acquire) != SLOT_LIVE)
                continue;
            if (exact ? sl->base == addr : addr >= sl->base && addr - sl->base < sl->len)
                return sl;
        }
    return NULL;
}

/* The live slot whose mapping starts at base, or NULL. */
static slot *slot_of(const void *base)
{
    return find((uintptr_t)base, true);
}

void sae_mapped_remove(const void *base)
{
    slot *sl = slot_of(base);
    if (!sl)
        return;
    if (atomic_exchange(&sl->watched, false) && sl->watch_fd >= 0)
        close(sl->watch_fd);
    sl->watch_fd = -1;
    atomic_store_explicit(&sl->state, SLOT_FREE, memory_order_release);
}
int sae_mapped_watch(const void *base, int fd)
{
    slot *sl = slot_of(base);
    struct stat st;
    if (!sl || fstat(fd, &st))
        return -1;
    int keep = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (keep < 0)
        return -1;
    sl->watch_fd = keep;
    sl->size = st.st_size;
    sl->mtime = st.st_mtim;
    atomic_store_explicit(&sl->watched, true, memory_order_release);
    return 0;
}

/* True when two times differ. */
static bool time_differs(struct timespec a, struct timespec b)
{
    return a.tv_sec != b.tv_sec || a.tv_nsec != b.tv_nsec;
}

bool sae_mapped_changed(const void *base)
{
    slot *sl = slot_of(base);
    if (!sl)
        return false;
    if (atomic_load(&sl->damaged))
        return true;
    if (!atomic_load_explicit(&sl->watched, memory_order_acquire))
        return false;
    struct stat st;
    /* ctime moves on a rename or link count change too, which leaves the
     * data alone; size and mtime are what a write or truncate moves. */
    return fstat(sl->watch_fd, &st) || st.st_size != sl->size || time_differs(st.st_mtim, sl->mtime);
}

bool sae_mapped_absorb(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    slot *sl = find(a, false);
    if (!sl || !atomic_load_explicit(&sl->watched, memory_order_acquire))
        return false;
    /* sysconf is not on the async-signal-safe list; 4096 divides every
     * Linux page size, and mapping from a smaller boundary is refused
     * (EINVAL) only where pages are larger, so try the common size, then
     * larger ones. */
    for (uintptr_t page = 4096; page <= (uintptr_t)1 << 21; page <<= 1) {
        uintptr_t from = a & ~(page - 1);
        if (from < sl->base)
            from = sl->base;
        void *m = mmap((void *)from, sl->base + sl->len - from, PROT_READ,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (m != MAP_FAILED) {
            atomic_store(&sl->damaged, true);
            return true;
        }
    }
    return false;
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
    const slot *sl = find((uintptr_t)addr, false);
    const char *path = sl ? sl->path : NULL;
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
