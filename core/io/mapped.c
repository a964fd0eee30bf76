/* mapped.c: the registry of read-only file mappings (see mapped.h). */
#include "io/mapped.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAPPED_SLOTS 64
#define MAPPED_PATH 512

enum { SLOT_FREE, SLOT_BUSY, SLOT_LIVE };

/* One mapping. state moves FREE -> BUSY (claimed by one adder, filling in)
 * -> LIVE (published: the handler may read base, len and path) -> FREE.
 * watch_fd (owned, -1 unwatched) and the identity fields are set once by
 * sae_mapped_watch before `watched` is published; damaged is set by
 * sae_mapped_absorb. */
typedef struct slot {
    atomic_int state;
    uintptr_t base;
    size_t len;
    char path[MAPPED_PATH];
    atomic_bool watched, damaged;
    int watch_fd;
    off_t size;
    struct timespec mtime;
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
        slots[i].watch_fd = -1;
        atomic_store(&slots[i].watched, false);
        atomic_store(&slots[i].damaged, false);
        /* A path too long for the slot keeps its end, the part that names the file. */
        size_t n = strlen(path), skip = n >= MAPPED_PATH ? n - (MAPPED_PATH - 1) : 0;
        memcpy(slots[i].path, path + skip, n - skip + 1);
        atomic_store_explicit(&slots[i].state, SLOT_LIVE, memory_order_release);
        return;
    }
}

/* The live slot whose mapping starts at base, or NULL. */
static slot *slot_of(const void *base)
{
    for (size_t i = 0; i < MAPPED_SLOTS; i++)
        if (atomic_load_explicit(&slots[i].state, memory_order_acquire) == SLOT_LIVE &&
            slots[i].base == (uintptr_t)base)
            return &slots[i];
    return NULL;
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
    for (size_t i = 0; i < MAPPED_SLOTS; i++) {
        slot *sl = &slots[i];
        if (atomic_load_explicit(&sl->state, memory_order_acquire) != SLOT_LIVE ||
            !atomic_load_explicit(&sl->watched, memory_order_acquire) || a < sl->base ||
            a - sl->base >= sl->len)
            continue;
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
