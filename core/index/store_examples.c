/* store_examples.c: a feature's examples of one kind, unpacked from their
 * row with their document's id and tokens, a page at a time (store.h). */
#include "index/store_internal.h"

#include <stdlib.h>
#include <string.h>

/* A bump allocator for one example list: chunks freed together. */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_chunk;

/* n bytes (16-aligned) from the arena, growing it by 64 KB chunks; NULL
 * when out of memory. */
static void *arena_alloc(arena_chunk **a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!*a || (*a)->cap - (*a)->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        arena_chunk *c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = *a;
        c->used = 0;
        c->cap = cap;
        *a = c;
    }
    void *p = (*a)->data + (*a)->used;
    (*a)->used += n;
    return p;
}

/* Frees every chunk of an arena. */
static void arena_free(arena_chunk *a)
{
    while (a) {
        arena_chunk *n = a->next;
        free(a);
        a = n;
    }
}

void sae_store_examples_free(sae_store_examples *e)
{
    if (!e)
        return;
    arena_free(e->arena);
    memset(e, 0, sizeof *e);
}

/* Decodes the packed example at *at (within data[0..len)) into x, its arrays
 * and document name in the arena; advances *at. With x NULL only checks and
 * skips it. */
static int example_decode(sae_store_conn *c, uint64_t index, sae_example_kind kind,
                          uint32_t rank, const unsigned char *data, size_t len, size_t *at,
                          arena_chunk **a, sae_store_example *x, sae_error *err)
{
    packed_example h;
    if (len - *at < sizeof h)
        return sae_error_set(err, SAE_EFORMAT, "%s: feature %" PRIu64 ": truncated example %u",
                             c->s->path, index, rank);
    memcpy(&h, data + *at, sizeof h);
    *at += sizeof h;
    if (h.len == 0 || h.focus < h.first || h.focus - h.first >= h.len ||
        (len - *at) / 8 < h.len)
        return sae_error_set(err, SAE_EFORMAT, "%s: feature %" PRIu64 ": malformed example %u",
                             c->s->path, index, rank);
    const unsigned char *ids_at = data + *at, *vals_at = ids_at + (size_t)h.len * 4;
    *at += (size_t)h.len * 8;
    if (!x)
        return 0;
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->rank = rank;
    x->doc_index = h.doc;
    x->first = h.first;
    x->n = h.len;
    x->focus_index = h.focus - h.first;
    x->focus_value = h.value;
    x->hash = h.hash;
    x->grp = h.grp;
    x->has_bin = h.flags & PACKED_HAS_BIN;
    x->bin_min = h.bin_min;
    x->bin_max = h.bin_max;
    x->bin_contains = h.bin_contains;
    /* The document's id. */
    sqlite3_stmt *q = c->st[R_DOCUMENT];
    sqlite3_bind_int64(q, 1, h.doc);
    int r = sqlite3_step(q);
    const char *name = r == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0) : NULL;
    size_t nl = name ? strlen(name) : 0;
    char *doc = name ? arena_alloc(a, nl + 1) : NULL;
    if (doc)
        memcpy(doc, name, nl + 1);
    done(q);
    if (!name)
        return r == SQLITE_DONE ? sae_error_set(err, SAE_EFORMAT,
                                                "%s: feature %" PRIu64 ": example %u refers to "
                                                "unknown document %u",
                                                c->s->path, index, rank, h.doc)
                                : sae_store_fail(c->db, c->s->path, "reading documents", err);
    uint32_t *ids = arena_alloc(a, x->n * 4);
    float *vals = arena_alloc(a, x->n * 4);
    const char **toks = arena_alloc(a, x->n * sizeof *toks);
    size_t *lens = arena_alloc(a, x->n * sizeof *lens);
    if (!doc || !ids || !vals || !toks || !lens)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    x->document = doc;
    memcpy(ids, ids_at, x->n * 4);
    memcpy(vals, vals_at, x->n * 4);
    x->max_value = x->min_value = vals[0];
    for (size_t i = 0; i < x->n; i++) {
        toks[i] = sae_store_token(c->s, ids[i], &lens[i]);
        if (!toks[i])
            return sae_error_set(err, SAE_EFORMAT,
                                 "%s: feature %" PRIu64 ": example %u has an unknown token id",
                                 c->s->path, index, rank);
        if (vals[i] > x->max_value) {
            x->max_value = vals[i];
            x->max_token_index = (uint32_t)i;
        }
        if (vals[i] < x->min_value)
            x->min_value = vals[i];
    }
    x->token_ids = ids;
    x->values = vals;
    x->tokens = toks;
    x->token_len = lens;
    return 0;
}

int sae_store_get_examples(sae_store_conn *c, uint64_t index, sae_example_kind kind,
                           uint64_t limit, uint64_t offset, sae_store_examples *out,
                           sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    if (kind != SAE_EX_TOP && kind != SAE_EX_QUANTILE && kind != SAE_EX_CANDIDATE)
        return sae_error_set(err, SAE_EINVAL, "kind: unknown example kind %d", (int)kind);
    sae_store_examples e = {0};
    arena_chunk *a = NULL;
    sqlite3_stmt *q = c->st[R_EXAMPLES];
    sqlite3_bind_int64(q, 1, (sqlite3_int64)(index * 4 + (uint64_t)kind));
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        sqlite3_int64 n = sqlite3_column_int64(q, 0);
        const unsigned char *data = sqlite3_column_blob(q, 1);
        size_t len = (size_t)sqlite3_column_bytes(q, 1);
        if (n < 0 || (uint64_t)n > len / sizeof(packed_example)) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: feature %" PRIu64 ": malformed examples",
                               c->s->path, index);
            goto out;
        }
        e.total = (uint64_t)n;
        uint64_t want = offset < e.total ? e.total - offset : 0;
        if (want > limit)
            want = limit;
        if (want && !(e.items = arena_alloc(&a, want * sizeof *e.items))) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        /* Examples before offset are skipped (and checked); none are read
         * when the page starts past the end. */
        size_t at = 0;
        for (uint64_t i = 0; want && i < offset + want; i++) {
            sae_store_example *x = i >= offset ? &e.items[e.n++] : NULL;
            if ((rc = example_decode(c, index, kind, (uint32_t)i, data, len, &at, &a, x, err)))
                goto out;
        }
    } else if (r != SQLITE_DONE) { /* SQLITE_DONE: no examples of that kind */
        rc = sae_store_fail(c->db, c->s->path, "reading examples", err);
        goto out;
    }
    e.arena = a;
    a = NULL;
    *out = e;
out:
    done(q);
    arena_free(a);
    return rc;
}
