/* index_vocab.c: the vocabulary interner: distinct token strings with dense
 * ids in order of first sight, written out as the vocab table in bytewise
 * order (index_internal.h). The build interns the tokens of its stored
 * windows, the merge the shards' tokens its examples use. */
#include "index/index_internal.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Frees every buffer of it and empties it. */
void sae_ix_interner_free(interner *it)
{
    free(it->bytes);
    free(it->off);
    free(it->len);
    free(it->table);
    memset(it, 0, sizeof *it);
}

/* Doubles the table and reinserts every id. */
static int interner_rehash(interner *it)
{
    size_t cap = it->table_cap ? it->table_cap * 2 : 1024;
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t id = 0; id < it->n; id++) {
        size_t h = (size_t)XXH3_64bits(it->bytes + it->off[id], it->len[id]) & (cap - 1);
        while (t[h])
            h = (h + 1) & (cap - 1);
        t[h] = (uint32_t)id + 1;
    }
    free(it->table);
    it->table = t;
    it->table_cap = cap;
    return 0;
}

/* The id of s (len bytes), adding it if new; -1 when out of memory. */
int sae_ix_intern(interner *it, const char *s, size_t len, uint32_t *id)
{
    if ((it->n + 1) * 2 > it->table_cap && interner_rehash(it))
        return -1;
    size_t h = (size_t)XXH3_64bits(s, len) & (it->table_cap - 1);
    while (it->table[h]) {
        uint32_t i = it->table[h] - 1;
        if (it->len[i] == len && !memcmp(it->bytes + it->off[i], s, len)) {
            *id = i;
            return 0;
        }
        h = (h + 1) & (it->table_cap - 1);
    }
    if (len > UINT32_MAX || it->n >= UINT32_MAX - 1)
        return -1;
    if (it->n == it->cap) {
        size_t c = it->cap ? it->cap * 2 : 1024;
        uint64_t *o = realloc(it->off, c * sizeof *o);
        if (o)
            it->off = o;
        uint32_t *l = o ? realloc(it->len, c * sizeof *l) : NULL;
        if (!l)
            return -1;
        it->len = l;
        it->cap = c;
    }
    if (it->n_bytes + len > it->cap_bytes) {
        size_t c = it->cap_bytes ? it->cap_bytes : 65536;
        while (c < it->n_bytes + len)
            c *= 2;
        char *b = realloc(it->bytes, c);
        if (!b)
            return -1;
        it->bytes = b;
        it->cap_bytes = c;
    }
    if (len)
        memcpy(it->bytes + it->n_bytes, s, len);
    it->off[it->n] = it->n_bytes;
    it->len[it->n] = (uint32_t)len;
    it->n_bytes += len;
    it->table[h] = (uint32_t)it->n + 1;
    *id = (uint32_t)it->n++;
    return 0;
}

/* Bytewise order of two interned strings (a shorter prefix first). */
static int cmp_interned(const void *a, const void *b, void *ctx)
{
    const interner *it = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    size_t lx = it->len[x], ly = it->len[y];
    int c = memcmp(it->bytes + it->off[x], it->bytes + it->off[y], lx < ly ? lx : ly);
    if (c)
        return c;
    return lx < ly ? -1 : lx > ly;
}

/* Writes the interned strings as the vocab table, ids in bytewise order of
 * the strings, and returns in *remap (owned by the caller) each interned
 * id's vocab id. */
int sae_ix_write_vocab(interner *it, sae_store_writer *w, uint32_t **remap, sae_error *err)
{
    uint32_t *order = malloc((it->n ? it->n : 1) * sizeof *order);
    uint32_t *map = malloc((it->n ? it->n : 1) * sizeof *map);
    int rc = 0;
    if (!order || !map) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the vocabulary");
        goto out;
    }
    for (size_t i = 0; i < it->n; i++)
        order[i] = (uint32_t)i;
    qsort_r(order, it->n, sizeof *order, cmp_interned, it);
    for (size_t i = 0; i < it->n; i++) {
        map[order[i]] = (uint32_t)i;
        if ((rc = sae_store_put_vocab(w, (uint32_t)i, it->bytes + it->off[order[i]],
                                      it->len[order[i]], err)))
            goto out;
    }
    *remap = map;
    map = NULL;
out:
    free(order);
    free(map);
    return rc;
}

