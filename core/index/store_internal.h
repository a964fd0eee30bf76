/* store_internal.h: what the store_*.c files share and nobody else sees:
 * the layout of a packed example, the meta keys, the reader's structs and
 * statements. Only store_*.c speak SQL.
 *
 *   store_schema.c    the schema version, the meta keys, SQLite errors as sae_error
 *   store_write.c     the writer: temporary file, inserts, commit
 *   store_read.c      opening and validating a file; per-thread connections
 *   store_open.c      an index held in private memory (sae_store_open_held); the
 *                     connection to either kind
 *   store_feature.c   one feature's statistics, histogram, neighbours; explanations
 *   store_query.c     listing and full-text search of features
 *   store_examples.c  a feature's examples, unpacked
 *   store_dash.c      a feature's logit and neuron tables (the dashboards tables) */
#ifndef SAE_STORE_INTERNAL_H
#define SAE_STORE_INTERNAL_H

#include <inttypes.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "index/store.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the index stores little-endian blobs by copying memory: a little-endian host is assumed"
#endif

/* One example's header in examples.data (schema/001_init.sql), 64 bytes,
 * little-endian, then len u32 token ids and len f32 activations. */
typedef struct packed_example {
    uint32_t doc, first, focus, len;
    float value;
    int32_t grp;
    uint64_t hash;
    double bin_min, bin_max, bin_contains;
    uint32_t flags, zero;
} packed_example;
_Static_assert(sizeof(packed_example) == 64, "packed_example is the 64-byte header");
#define PACKED_HAS_BIN 1u

/* The meta table's keys, in the order they are written and read. */
#define SAE_STORE_META_KEYS 19
extern const char *const sae_store_meta_keys[SAE_STORE_META_KEYS];

/* Fills err from db's last error, naming the file (path) and what was being
 * done; SQLITE_FULL (the disk is full) and I/O errors say so plainly.
 * Returns the code. */
int sae_store_fail(sqlite3 *db, const char *path, const char *what, sae_error *err);

/* ---- reading ---- */

/* The shared, immutable part of an opened index: its meta and vocabulary, and
 * for a held index the file's bytes. */
struct sae_store {
    char *path;             /* owned */
    char *uri;              /* owned: file:...?immutable=1 (opened by path only) */
    unsigned char *image;   /* owned mapping: the whole file, read once (held); NULL when
                               connections open the file by path */
    size_t image_len;
    char file_digest[33];   /* XXH3-128 of image; "" when not held */
    bool no_mmap;           /* connections read through SQLite's page cache, not mmap */
    sae_store_info info;
    size_t n_vocab;
    char **vocab;           /* (n_vocab) owned strings */
    size_t *vocab_len;      /* (n_vocab) */
};

enum {
    R_FEATURE, R_HIST, R_RAW, R_NEIGHBOURS, R_EXPL, R_EXPL_ALL, R_SCORES, R_SCORES_ALL,
    R_EXAMPLES, R_DOCUMENT,
    R_LIST_FIRST, /* 6 listing statements: sort x order, without a query */
    R_SEARCH_FIRST = R_LIST_FIRST + 6, /* 6 with a full-text query */
    R_SEARCH_COUNT = R_SEARCH_FIRST + 6,
    R_RELEVANCE_FIRST, /* 2: full-text query by relevance, asc (best first) and desc */
    R_BASE_COUNT = R_RELEVANCE_FIRST + 2,
    /* prepared only when the index has the dashboards tables (else NULL) */
    R_LOGITS = R_BASE_COUNT, R_LOGIT_TOKEN, R_NEURON,
    R_ACT_BARS, /* prepared only when the index has the act_bars table */
    R_COUNT
};

/* The SQL listing features (store_query.c): FEATURE_COLS (and the bm25 rank
 * for SAE_SORT_RELEVANCE) in `sort` order, desc or not, ties by index; fts:
 * only those matching the FTS5 query ?1; alive: only those ever active;
 * stored_score: sort=score reads features.best_score (schema/006), else it
 * aggregates the explanations; ?2 LIMIT, ?3 OFFSET. Into sql (cap bytes;
 * 1024 is enough). */
void store_list_sql(char *sql, size_t cap, sae_store_sort sort, bool desc, bool fts, bool alive,
                    bool stored_score);
/* The SQL counting what store_list_sql(fts, alive) lists, or NULL when that
 * is every feature (d_sae). */
const char *store_count_sql(bool fts, bool alive);

/* Checks a SQLite header h (got bytes of it) of a file of size bytes, without
 * SQLite: magic, application_id, user_version, and a page count that matches
 * the size (a truncated copy fails here). path names the file in err. */
int store_check_header(const char *path, const unsigned char *h, size_t got, uint64_t size,
                       sae_error *err);
/* Opens a read-only connection to s: to its image when held, else to its
 * file (immutable, memory-mapped reads). */
int store_open_db(const sae_store *s, sqlite3 **db, sae_error *err);
/* Unmaps a held index's image (none: nothing). */
void store_image_free(sae_store *s);
/* Reads and checks meta, vocabulary and the features table into s (whose
 * path, and uri or image, are set). */
int store_load(sae_store *s, sae_error *err);

/* A connection of one thread with its statements (R_SCORES* stay NULL for
 * an index without explanation_scores, the dashboard ones for one without
 * those tables). */
struct sae_store_conn {
    sae_store *s;           /* borrowed */
    sqlite3 *db;
    sqlite3_stmt *st[R_COUNT];
};

/* The meta of the index c reads. */
static inline const sae_store_info *info_of(const sae_store_conn *c)
{
    return &c->s->info;
}

/* Resets a statement after use (keeps it prepared). */
static inline void done(sqlite3_stmt *q)
{
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
}

/* SAE_ERANGE unless index < d_sae. */
static inline int check_index(const sae_store_conn *c, uint64_t index, sae_error *err)
{
    if (index >= info_of(c)->d_sae)
        return sae_error_set(err, SAE_ERANGE, "feature %" PRIu64 " out of range (d_sae %" PRIu64 ")",
                             index, info_of(c)->d_sae);
    return 0;
}

/* The features columns a sae_store_feature is read from, in its order. */
#define FEATURE_COLS \
    "idx, n_active, density, max_activation, mean_activation, decoder_norm, n_top, n_quantile"

/* Reads the FEATURE_COLS columns of q into f. */
static inline void feature_from_row(sqlite3_stmt *q, sae_store_feature *f)
{
    f->index = (uint32_t)sqlite3_column_int64(q, 0);
    f->n_active = (uint64_t)sqlite3_column_int64(q, 1);
    f->density = sqlite3_column_double(q, 2);
    f->max_activation = sqlite3_column_double(q, 3);
    f->mean_activation = sqlite3_column_double(q, 4);
    f->decoder_norm = sqlite3_column_double(q, 5);
    f->n_top = (uint32_t)sqlite3_column_int64(q, 6);
    f->n_quantile = (uint32_t)sqlite3_column_int64(q, 7);
}

#endif
