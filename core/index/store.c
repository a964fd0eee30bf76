/* store.c: the feature index file, written and read (store.h). The only file
 * of the project that speaks SQL. */
#include "index/store.h"

#include "index/index_hist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the index stores little-endian blobs by copying memory: a little-endian host is assumed"
#endif

int sae_store_schema_version(void)
{
    return sae_schema_files[sae_schema_count - 1].number;
}

/* ---------------------------------------------------------------- writing */

enum {
    W_META, W_FEATURE, W_EXAMPLE, W_NEIGHBOURS, W_VOCAB, W_DOCUMENT, W_EXPLANATION, W_COUNT
};

static const char *const writer_sql[W_COUNT] = {
    [W_META] = "INSERT INTO meta (key, value) VALUES (?1, ?2)",
    [W_FEATURE] = ("INSERT INTO features (idx, n_active, density, max_activation, "
                  "mean_activation, decoder_norm, sum_exact, hist_first, hist, n_top, "
                  "n_quantile) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
    [W_EXAMPLE] = "INSERT INTO examples (id, n, data) VALUES (?1, ?2, ?3)",
    [W_NEIGHBOURS] = "INSERT INTO neighbours (feature, indices, cosines) VALUES (?1, ?2, ?3)",
    [W_VOCAB] = "INSERT INTO vocab (id, token) VALUES (?1, ?2)",
    [W_DOCUMENT] = "INSERT INTO documents (idx, name) VALUES (?1, ?2)",
    [W_EXPLANATION] = ("INSERT INTO explanations (id, feature, description, score, source, "
                      "type_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
};

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

/* An index being written: the SQLite connection on the temporary file, its
 * insert statements and the buffer examples are packed in. Owns all. */
struct sae_store_writer {
    char *target;           /* owned */
    char *temp;             /* owned: .<target name>.tmp-<pid> in the same folder */
    char *dir;              /* owned: the folder, fsynced after the rename */
    sqlite3 *db;
    sqlite3_stmt *st[W_COUNT];
    unsigned char *pack;    /* owned: one row of examples being packed */
    size_t pack_cap;
};

/* err from the connection's last error, naming the file. SQLITE_FULL (the disk
 * is full) and I/O errors say so plainly. */
static int db_fail(sqlite3 *db, const char *path, const char *what, sae_error *err)
{
    int code = db ? sqlite3_errcode(db) : SQLITE_ERROR;
    const char *msg = db ? sqlite3_errmsg(db) : "cannot open";
    if (code == SQLITE_FULL)
        return sae_error_set(err, SAE_EIO, "%s: %s: disk full (%s)", path, what, msg);
    if (code == SQLITE_IOERR || code == SQLITE_CANTOPEN)
        return sae_error_set(err, SAE_EIO, "%s: %s: I/O error (%s)", path, what, msg);
    if (code == SQLITE_NOMEM)
        return sae_error_set(err, SAE_ENOMEM, "%s: %s: out of memory", path, what);
    return sae_error_set(err, SAE_EFORMAT, "%s: %s: %s", path, what, msg);
}

/* Splits path into a freshly allocated folder and a pointer to its last
 * component (inside path). */
static char *path_dir(const char *path, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Removes `.<base>.tmp-<pid>` files (and their -journal) in dir whose process
 * no longer exists, or that carry our own pid (left by an earlier process that
 * had it, e.g. in a container). Failures are ignored: they only leave litter. */
static void remove_stale_temps(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t blen = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] != '.' || strncmp(n + 1, base, blen) || strncmp(n + 1 + blen, ".tmp-", 5))
            continue;
        const char *p = n + 1 + blen + 5, *q = p;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q == p || q - p > 10 || (*q && strcmp(q, "-journal")))
            continue;
        long pid = strtol(p, NULL, 10);
        if (pid <= 0 || pid > INT_MAX)
            continue;
        if (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        char *full = malloc(strlen(dir) + strlen(n) + 2);
        if (!full)
            continue;
        sprintf(full, "%s/%s", dir, n);
        unlink(full);
        free(full);
    }
    closedir(d);
}

/* Finalizes the statements, closes the connection and frees w (the
 * temporary file is the caller's business). */
static void writer_free(sae_store_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < W_COUNT; i++)
        sqlite3_finalize(w->st[i]);
    if (w->db)
        sqlite3_close(w->db);
    free(w->target);
    free(w->temp);
    free(w->dir);
    free(w->pack);
    free(w);
}

int sae_store_writer_open(const char *target, sae_store_writer **out, sae_error *err)
{
    int rc;
    const char *base;
    sae_store_writer *w = calloc(1, sizeof *w);
    if (!w)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", target);
    w->target = strdup(target);
    w->dir = path_dir(target, &base);
    if (!w->target || !w->dir) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", target);
        goto out;
    }
    if (!*base) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: the output must be a file name", target);
        goto out;
    }
    struct stat st;
    if (stat(w->dir, &st) || !S_ISDIR(st.st_mode)) {
        rc = sae_error_set(err, SAE_EIO, "%s: folder %s does not exist", target, w->dir);
        goto out;
    }
    remove_stale_temps(w->dir, base);
    size_t n = strlen(w->dir) + strlen(base) + 32;
    w->temp = malloc(n);
    if (!w->temp) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", target);
        goto out;
    }
    snprintf(w->temp, n, "%s/.%s.tmp-%ld", w->dir, base, (long)getpid());
    int fd = open(w->temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot create: %s", w->temp, strerror(errno));
        goto out;
    }
    close(fd);
    if (sqlite3_open_v2(w->temp, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = db_fail(w->db, w->temp, "cannot open", err);
        goto out_unlink;
    }
    /* Atomicity comes from the rename, so SQLite's own journal and syncs
     * would only cost time; the file is fsynced once at commit. */
    char *emsg = NULL;
    if (sqlite3_exec(w->db,
                     "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; "
                     "PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -65536; "
                     "PRAGMA temp_store = MEMORY; BEGIN;",
                     NULL, NULL, &emsg) != SQLITE_OK) {
        sqlite3_free(emsg);
        rc = db_fail(w->db, w->temp, "cannot set up", err);
        goto out_unlink;
    }
    for (size_t i = 0; i < sae_schema_count; i++)
        if (sqlite3_exec(w->db, sae_schema_files[i].sql, NULL, NULL, &emsg) != SQLITE_OK) {
            sae_error_set(err, SAE_EFORMAT, "%s: schema %s: %s", w->temp,
                          sae_schema_files[i].name, emsg ? emsg : "failed");
            sqlite3_free(emsg);
            rc = err ? err->code : SAE_EFORMAT;
            goto out_unlink;
        }
    for (int i = 0; i < W_COUNT; i++)
        if (sqlite3_prepare_v3(w->db, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &w->st[i],
                               NULL) != SQLITE_OK) {
            rc = db_fail(w->db, w->temp, "cannot prepare", err);
            goto out_unlink;
        }
    *out = w;
    return 0;
out_unlink:
    unlink(w->temp);
out:
    writer_free(w);
    return rc;
}

const char *sae_store_writer_temp_path(const sae_store_writer *w)
{
    return w->temp;
}

/* Runs a bound insert statement and resets it. */
static int step_insert(sae_store_writer *w, int which, const char *what, sae_error *err)
{
    sqlite3_stmt *s = w->st[which];
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (r != SQLITE_DONE)
        return db_fail(w->db, w->temp, what, err);
    return 0;
}

int sae_store_put_meta(sae_store_writer *w, const char *key, const char *value, sae_error *err)
{
    sqlite3_stmt *s = w->st[W_META];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    return step_insert(w, W_META, "writing meta", err);
}

int sae_store_put_feature(sae_store_writer *w, const sae_store_feature_row *r, sae_error *err)
{
    sqlite3_stmt *s = w->st[W_FEATURE];
    sqlite3_bind_int64(s, 1, r->index);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)r->n_active);
    sqlite3_bind_double(s, 3, r->density);
    sqlite3_bind_double(s, 4, r->max_activation);
    sqlite3_bind_double(s, 5, r->mean_activation);
    sqlite3_bind_double(s, 6, r->decoder_norm);
    sqlite3_bind_blob(s, 7, r->sum_exact, 48, SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, r->hist_first);
    sqlite3_bind_blob(s, 9, r->hist_n ? (const void *)r->hist : "", (int)(r->hist_n * 8),
                      SQLITE_STATIC);
    sqlite3_bind_int64(s, 10, r->n_top);
    sqlite3_bind_int64(s, 11, r->n_quantile);
    return step_insert(w, W_FEATURE, "writing features", err);
}

int sae_store_put_examples(sae_store_writer *w, uint32_t feature, sae_example_kind kind,
                           const sae_store_example_row *rows, size_t n, sae_error *err)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        if (sae_add_size(len, sizeof(packed_example), &len) || rows[i].len > INT_MAX / 8 ||
            sae_add_size(len, (size_t)rows[i].len * 8, &len))
            return sae_error_set(err, SAE_EINVAL, "%s: examples too large", w->temp);
    if (len > INT_MAX)
        return sae_error_set(err, SAE_EINVAL, "%s: examples too large", w->temp);
    if (len > w->pack_cap) {
        unsigned char *p = realloc(w->pack, len);
        if (!p)
            return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", w->temp);
        w->pack = p;
        w->pack_cap = len;
    }
    unsigned char *at = w->pack;
    for (size_t i = 0; i < n; i++) {
        const sae_store_example_row *r = &rows[i];
        packed_example h = {
            .doc = r->doc, .first = r->first, .focus = r->focus, .len = r->len,
            .value = r->value, .grp = r->grp, .hash = r->hash,
            .bin_min = r->has_bin ? r->bin_min : 0, .bin_max = r->has_bin ? r->bin_max : 0,
            .bin_contains = r->has_bin ? r->bin_contains : 0,
            .flags = r->has_bin ? PACKED_HAS_BIN : 0,
        };
        memcpy(at, &h, sizeof h);
        at += sizeof h;
        if (r->len) {
            memcpy(at, r->tokens, (size_t)r->len * 4);
            memcpy(at + (size_t)r->len * 4, r->acts, (size_t)r->len * 4);
        }
        at += (size_t)r->len * 8;
    }
    sqlite3_stmt *s = w->st[W_EXAMPLE];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)feature * 4 + (sqlite3_int64)kind);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)n);
    sqlite3_bind_blob(s, 3, len ? (const void *)w->pack : "", (int)len, SQLITE_STATIC);
    return step_insert(w, W_EXAMPLE, "writing examples", err);
}

int sae_store_put_neighbours(sae_store_writer *w, uint32_t feature, const uint32_t *idx,
                             const float *cos, size_t k, sae_error *err)
{
    if (k > INT_MAX / 4)
        return sae_error_set(err, SAE_EINVAL, "%s: too many neighbours", w->temp);
    sqlite3_stmt *s = w->st[W_NEIGHBOURS];
    sqlite3_bind_int64(s, 1, feature);
    sqlite3_bind_blob(s, 2, k ? (const void *)idx : "", (int)(k * 4), SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, k ? (const void *)cos : "", (int)(k * 4), SQLITE_STATIC);
    return step_insert(w, W_NEIGHBOURS, "writing neighbours", err);
}

int sae_store_put_vocab(sae_store_writer *w, uint32_t id, const char *token, size_t len,
                        sae_error *err)
{
    if (len > INT_MAX)
        return sae_error_set(err, SAE_EINVAL, "%s: token too long", w->temp);
    sqlite3_stmt *s = w->st[W_VOCAB];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, len ? token : "", (int)len, SQLITE_STATIC);
    return step_insert(w, W_VOCAB, "writing vocab", err);
}

int sae_store_put_document(sae_store_writer *w, uint32_t idx, const char *name, sae_error *err)
{
    sqlite3_stmt *s = w->st[W_DOCUMENT];
    sqlite3_bind_int64(s, 1, idx);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    return step_insert(w, W_DOCUMENT, "writing documents", err);
}

int sae_store_put_explanation(sae_store_writer *w, uint64_t id, uint32_t feature,
                              const char *description, bool has_score, double score,
                              const char *source, const char *type_name, sae_error *err)
{
    sqlite3_stmt *s = w->st[W_EXPLANATION];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(s, 2, feature);
    sqlite3_bind_text(s, 3, description, -1, SQLITE_STATIC);
    if (has_score)
        sqlite3_bind_double(s, 4, score);
    if (source)
        sqlite3_bind_text(s, 5, source, -1, SQLITE_STATIC);
    if (type_name)
        sqlite3_bind_text(s, 6, type_name, -1, SQLITE_STATIC);
    return step_insert(w, W_EXPLANATION, "writing explanations", err);
}

int sae_store_put_info(sae_store_writer *w, const sae_store_info *i, sae_error *err)
{
    char num[19][40];
    const char *keys[19] = {
        "weights_digest", "d_in", "d_sae", "n_tokens", "n_documents", "corpus_tokens",
        "corpus_documents", "top", "quantiles", "per_quantile", "context", "neighbours", "seed",
        "block_rows", "shard", "histogram", "tokens_digest", "explanations_digest",
        "n_explanations",
    };
    uint64_t v[19] = {0, i->d_in, i->d_sae, i->n_tokens, i->n_documents, i->corpus_tokens,
                      i->corpus_documents, i->top, i->quantiles, i->per_quantile, i->context,
                      i->neighbours, i->seed, i->block_rows, 0, 0, 0, 0, i->n_explanations};
    const char *vals[19];
    for (int k = 0; k < 19; k++) {
        snprintf(num[k], sizeof num[k], "%" PRIu64, v[k]);
        vals[k] = num[k];
    }
    vals[0] = i->weights_digest;
    vals[14] = i->shard;
    vals[15] = i->histogram;
    vals[16] = i->tokens_digest;
    vals[17] = i->explanations_digest;
    for (int k = 0; k < 19; k++) {
        int rc = sae_store_put_meta(w, keys[k], vals[k], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* fsyncs path (a file or a folder). */
static int fsync_path(const char *path, bool is_dir, sae_error *err)
{
    int fd = open(path, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return sae_error_set(err, SAE_EIO, "%s: cannot open to sync: %s", path, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r)
        return sae_error_set(err, SAE_EIO, "%s: fsync failed: %s", path, strerror(e));
    return 0;
}

int sae_store_writer_commit(sae_store_writer *w, sae_error *err)
{
    int rc;
    char sql[64];
    char *emsg = NULL;
    sqlite3_stmt *qc = NULL;
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d;", sae_store_schema_version());
    if (sqlite3_exec(w->db, "INSERT INTO explanations_fts (explanations_fts) VALUES ('rebuild');",
                     NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(w->db, sql, NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(w->db, "COMMIT;", NULL, NULL, &emsg) != SQLITE_OK) {
        sqlite3_free(emsg);
        rc = db_fail(w->db, w->temp, "cannot finish", err);
        goto fail;
    }
    if (sqlite3_prepare_v2(w->db, "PRAGMA quick_check;", -1, &qc, NULL) != SQLITE_OK) {
        rc = db_fail(w->db, w->temp, "quick_check", err);
        goto fail;
    }
    int r = sqlite3_step(qc);
    if (r != SQLITE_ROW) {
        rc = db_fail(w->db, w->temp, "quick_check", err);
        goto fail;
    }
    const char *verdict = (const char *)sqlite3_column_text(qc, 0);
    if (!verdict || strcmp(verdict, "ok")) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: quick_check failed: %s", w->temp,
                           verdict ? verdict : "?");
        goto fail;
    }
    sqlite3_finalize(qc);
    qc = NULL;
    for (int i = 0; i < W_COUNT; i++) {
        sqlite3_finalize(w->st[i]);
        w->st[i] = NULL;
    }
    if (sqlite3_close(w->db) != SQLITE_OK) {
        rc = db_fail(w->db, w->temp, "cannot close", err);
        goto fail;
    }
    w->db = NULL;
    if ((rc = fsync_path(w->temp, false, err)))
        goto fail;
    if (rename(w->temp, w->target)) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot rename into place: %s", w->target,
                           strerror(errno));
        goto fail;
    }
    rc = fsync_path(w->dir, true, err);
    writer_free(w);
    return rc;
fail:
    sqlite3_finalize(qc);
    unlink(w->temp);
    writer_free(w);
    return rc;
}

void sae_store_writer_abort(sae_store_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < W_COUNT; i++) {
        sqlite3_finalize(w->st[i]);
        w->st[i] = NULL;
    }
    if (w->db) {
        sqlite3_close(w->db);
        w->db = NULL;
    }
    unlink(w->temp);
    writer_free(w);
}

/* ---------------------------------------------------------------- reading */

/* The shared, immutable part of an opened index: its meta and vocabulary. */
struct sae_store {
    char *path;             /* owned */
    char *uri;              /* owned: file:...?immutable=1 */
    sae_store_info info;
    size_t n_vocab;
    char **vocab;           /* (n_vocab) owned strings */
    size_t *vocab_len;      /* (n_vocab) */
};

enum {
    R_FEATURE, R_HIST, R_RAW, R_NEIGHBOURS, R_EXPL, R_EXPL_ALL, R_EXAMPLES, R_DOCUMENT,
    R_LIST_FIRST, /* 6 listing statements: sort x order, without a query */
    R_SEARCH_FIRST = R_LIST_FIRST + 6, /* 6 with a full-text query */
    R_SEARCH_COUNT = R_SEARCH_FIRST + 6,
    R_RELEVANCE_FIRST, /* 2: full-text query by relevance, asc (best first) and desc */
    R_COUNT = R_RELEVANCE_FIRST + 2
};

#define FEATURE_COLS \
    "idx, n_active, density, max_activation, mean_activation, decoder_norm, n_top, n_quantile"
#define FTS_MATCH                                                                       \
    "SELECT feature FROM explanations WHERE id IN (SELECT rowid FROM explanations_fts " \
    "WHERE explanations_fts MATCH ?1)"

static const char *const sort_order[6] = {
    "idx ASC", "idx DESC", "density ASC, idx ASC", "density DESC, idx ASC",
    "max_activation ASC, idx ASC", "max_activation DESC, idx ASC",
};

/* A connection of one thread with its statements. */
struct sae_store_conn {
    sae_store *s;           /* borrowed */
    sqlite3 *db;
    sqlite3_stmt *st[R_COUNT];
};

/* The meta of the index c reads. */
static const sae_store_info *info_of(const sae_store_conn *c)
{
    return &c->s->info;
}

/* Reads the 100-byte SQLite header and checks, without SQLite, that path is a
 * whole SQLite file of ours: magic, application_id, user_version, and a page
 * count that matches the file size (a truncated copy fails here). */
static int check_header(const char *path, sae_error *err)
{
    unsigned char h[100];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    ssize_t got = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        got = pread(fd, h, sizeof h, 0);
    else
        got = -2;
    close(fd);
    if (got == -2)
        return sae_error_set(err, SAE_EIO, "%s: not a regular file", path);
    if (got < (ssize_t)sizeof h || memcmp(h, "SQLite format 3", 16))
        return sae_error_set(err, SAE_EFORMAT, "%s: not a SQLite database (not a saed index)",
                             path);
    uint32_t page = (uint32_t)h[16] << 8 | h[17];
    if (page == 1)
        page = 65536;
    uint32_t pages = (uint32_t)h[28] << 24 | (uint32_t)h[29] << 16 | (uint32_t)h[30] << 8 | h[31];
    uint32_t app = (uint32_t)h[68] << 24 | (uint32_t)h[69] << 16 | (uint32_t)h[70] << 8 | h[71];
    int32_t user = (int32_t)((uint32_t)h[60] << 24 | (uint32_t)h[61] << 16 |
                             (uint32_t)h[62] << 8 | h[63]);
    if (app != SAE_STORE_APPLICATION_ID)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: a SQLite database but not a saed feature index "
                             "(application_id 0x%08" PRIx32 ", expected 0x%08x)",
                             path, app, SAE_STORE_APPLICATION_ID);
    if (user != sae_store_schema_version())
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: index schema version %" PRId32 ", this build reads version %d "
                             "(rebuild it with this sae)",
                             path, user, sae_store_schema_version());
    if ((uint64_t)page * pages != (uint64_t)st.st_size)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: truncated or damaged index (%" PRIu64 " bytes, header says %" PRIu64
                             ")",
                             path, (uint64_t)st.st_size, (uint64_t)page * pages);
    return 0;
}

/* file: URI for path with immutable=1 (the index never changes under saed,
 * so SQLite need not lock or check for changes). */
static char *make_uri(const char *path)
{
    size_t n = strlen(path);
    char *u = malloc(n * 3 + 32);
    if (!u)
        return NULL;
    char *p = u + sprintf(u, "file:");
    for (const char *s = path; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '%' || ch == '?' || ch == '#' || ch < 0x20 || ch >= 0x7f)
            p += sprintf(p, "%%%02X", ch);
        else
            *p++ = (char)ch;
    }
    strcpy(p, "?immutable=1");
    return u;
}

/* Opens a read-only connection to s (immutable, memory-mapped reads). */
static int open_ro(const sae_store *s, sqlite3 **db, sae_error *err)
{
    if (sqlite3_open_v2(s->uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        int rc = db_fail(*db, s->path, "cannot open", err);
        sqlite3_close(*db);
        *db = NULL;
        return rc;
    }
    sqlite3_exec(*db, "PRAGMA mmap_size = 1073741824;", NULL, NULL, NULL);
    return 0;
}

/* Parses a meta value as an unsigned integer; false if malformed. */
static bool meta_u64(const char *v, uint64_t *out)
{
    if (!v || *v < '0' || *v > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end)
        return false;
    *out = x;
    return true;
}

/* Copies meta table rows into info; every key is required. */
static int read_meta(sqlite3 *db, const char *path, sae_store_info *info, sae_error *err)
{
    static const char *const keys[] = {
        "weights_digest", "d_in", "d_sae", "n_tokens", "n_documents", "corpus_tokens",
        "corpus_documents", "top", "quantiles", "per_quantile", "context", "neighbours", "seed",
        "block_rows", "shard", "histogram", "tokens_digest", "explanations_digest",
        "n_explanations",
    };
    enum { NKEYS = sizeof keys / sizeof keys[0] };
    char *vals[NKEYS] = {0};
    sqlite3_stmt *q = NULL;
    int rc;
    if (sqlite3_prepare_v2(db, "SELECT key, value FROM meta", -1, &q, NULL) != SQLITE_OK) {
        rc = db_fail(db, path, "not a valid saed index", err);
        goto out;
    }
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(q, 0);
        const char *v = (const char *)sqlite3_column_text(q, 1);
        for (size_t i = 0; k && v && i < NKEYS; i++)
            if (!strcmp(k, keys[i]) && !vals[i] && !(vals[i] = strdup(v))) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
                goto out;
            }
    }
    if (r != SQLITE_DONE) {
        rc = db_fail(db, path, "reading meta", err);
        goto out;
    }
    for (size_t i = 0; i < NKEYS; i++)
        if (!vals[i]) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: meta table lacks \"%s\"", path, keys[i]);
            goto out;
        }
    uint64_t u[NKEYS];
    for (size_t i = 1; i < NKEYS; i++) {
        if (i == 14 || i == 15 || i == 16 || i == 17)
            continue;
        if (!meta_u64(vals[i], &u[i]) ||
            (i >= 7 && i <= 13 && i != 12 && u[i] > UINT32_MAX)) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: meta \"%s\" is not a valid number: %s",
                               path, keys[i], vals[i]);
            goto out;
        }
    }
    if (strlen(vals[0]) != 32 || strlen(vals[14]) >= sizeof info->shard ||
        strlen(vals[15]) >= sizeof info->histogram || strlen(vals[16]) != 32 ||
        strlen(vals[17]) >= sizeof info->explanations_digest) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: meta table has malformed values", path);
        goto out;
    }
    if (u[2] == 0 || u[2] > UINT32_MAX || u[1] == 0) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: meta d_in/d_sae out of range", path);
        goto out;
    }
    strcpy(info->weights_digest, vals[0]);
    info->d_in = u[1];
    info->d_sae = u[2];
    info->n_tokens = u[3];
    info->n_documents = u[4];
    info->corpus_tokens = u[5];
    info->corpus_documents = u[6];
    info->top = (uint32_t)u[7];
    info->quantiles = (uint32_t)u[8];
    info->per_quantile = (uint32_t)u[9];
    info->context = (uint32_t)u[10];
    info->neighbours = (uint32_t)u[11];
    info->seed = u[12];
    info->block_rows = (uint32_t)u[13];
    strcpy(info->shard, vals[14]);
    strcpy(info->histogram, vals[15]);
    strcpy(info->tokens_digest, vals[16]);
    strcpy(info->explanations_digest, vals[17]);
    info->n_explanations = u[18];
    rc = 0;
out:
    sqlite3_finalize(q);
    for (size_t i = 0; i < NKEYS; i++)
        free(vals[i]);
    return rc;
}

/* Loads the vocabulary (ids must be 0..n-1) into s. */
static int read_vocab(sqlite3 *db, sae_store *s, sae_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc, r;
    size_t cap = 0;
    if (sqlite3_prepare_v2(db, "SELECT id, token FROM vocab ORDER BY id", -1, &q, NULL) !=
        SQLITE_OK) {
        rc = db_fail(db, s->path, "reading vocab", err);
        goto out;
    }
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        if (sqlite3_column_int64(q, 0) != (sqlite3_int64)s->n_vocab) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: vocab ids are not 0..n-1", s->path);
            goto out;
        }
        if (s->n_vocab == cap) {
            size_t c = cap ? cap * 2 : 1024;
            char **v = realloc(s->vocab, c * sizeof *v);
            if (v)
                s->vocab = v;
            size_t *l = v ? realloc(s->vocab_len, c * sizeof *l) : NULL;
            if (!l) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory for the vocab", s->path);
                goto out;
            }
            s->vocab_len = l;
            cap = c;
        }
        const unsigned char *t = sqlite3_column_text(q, 1);
        size_t len = (size_t)sqlite3_column_bytes(q, 1);
        char *copy = malloc(len + 1);
        if (!copy) {
            rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory for the vocab", s->path);
            goto out;
        }
        if (len)
            memcpy(copy, t, len);
        copy[len] = '\0';
        s->vocab[s->n_vocab] = copy;
        s->vocab_len[s->n_vocab++] = len;
    }
    if (r != SQLITE_DONE) {
        rc = db_fail(db, s->path, "reading vocab", err);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(q);
    return rc;
}

void sae_store_close(sae_store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_vocab; i++)
        free(s->vocab[i]);
    free(s->vocab);
    free(s->vocab_len);
    free(s->path);
    free(s->uri);
    free(s);
}

int sae_store_open(const char *path, sae_store **out, sae_error *err)
{
    int rc;
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    sae_store *s = calloc(1, sizeof *s);
    if (!s)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    s->path = strdup(path);
    s->uri = make_uri(path);
    if (!s->path || !s->uri) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if ((rc = check_header(path, err)))
        goto out;
    if ((rc = open_ro(s, &db, err)))
        goto out;
    s->info.schema_version = sae_store_schema_version();
    if ((rc = read_meta(db, path, &s->info, err)) || (rc = read_vocab(db, s, err)))
        goto out;
    if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(min(idx), 0), coalesce(max(idx), -1) "
                           "FROM features", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        rc = db_fail(db, path, "not a valid saed index", err);
        goto out;
    }
    if ((uint64_t)sqlite3_column_int64(q, 0) != s->info.d_sae || sqlite3_column_int64(q, 1) != 0 ||
        sqlite3_column_int64(q, 2) != (sqlite3_int64)s->info.d_sae - 1) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: features table does not hold features 0..%" PRIu64,
                           path, s->info.d_sae - 1);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(q);
    if (db)
        sqlite3_close(db);
    if (rc) {
        sae_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

const sae_store_info *sae_store_get_info(const sae_store *s)
{
    return &s->info;
}

const char *sae_store_path(const sae_store *s)
{
    return s->path;
}

int sae_store_check_model(const sae_store *s, const char *weights_digest, size_t d_in,
                          size_t d_sae, sae_error *err)
{
    const sae_store_info *i = &s->info;
    if (strcmp(i->weights_digest, weights_digest))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: index built from other weights (weights_digest %s, the model's "
                             "is %s)",
                             s->path, i->weights_digest, weights_digest);
    if (i->d_in != d_in || i->d_sae != d_sae)
        return sae_error_set(err, SAE_EDIM,
                             "%s: index built for d_in %" PRIu64 " x d_sae %" PRIu64
                             ", the model has %zu x %zu",
                             s->path, i->d_in, i->d_sae, d_in, d_sae);
    return 0;
}

const char *sae_store_token(const sae_store *s, uint32_t id, size_t *len)
{
    if (id >= s->n_vocab)
        return NULL;
    if (len)
        *len = s->vocab_len[id];
    return s->vocab[id];
}

size_t sae_store_vocab_size(const sae_store *s)
{
    return s->n_vocab;
}

void sae_store_disconnect(sae_store_conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < R_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    if (c->db)
        sqlite3_close(c->db);
    free(c);
}

int sae_store_connect(sae_store *s, sae_store_conn **out, sae_error *err)
{
    int rc;
    char sql[1024];
    sae_store_conn *c = calloc(1, sizeof *c);
    if (!c)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", s->path);
    c->s = s;
    if ((rc = open_ro(s, &c->db, err)))
        goto out;
    const char *fixed[R_LIST_FIRST] = {
        [R_FEATURE] = "SELECT " FEATURE_COLS " FROM features WHERE idx = ?1",
        [R_HIST] = "SELECT hist_first, hist FROM features WHERE idx = ?1",
        [R_RAW] = "SELECT " FEATURE_COLS ", sum_exact, hist_first, hist FROM features "
                  "WHERE idx = ?1",
        [R_NEIGHBOURS] = "SELECT indices, cosines FROM neighbours WHERE feature = ?1",
        [R_EXPL] = "SELECT id, feature, description, score, source, type_name FROM explanations "
                   "WHERE feature = ?1 ORDER BY id",
        [R_EXPL_ALL] = "SELECT id, feature, description, score, source, type_name FROM "
                       "explanations ORDER BY id",
        [R_EXAMPLES] = "SELECT n, data FROM examples WHERE id = ?1",
        [R_DOCUMENT] = "SELECT name FROM documents WHERE idx = ?1",
    };
    for (int i = 0; i < R_COUNT; i++) {
        const char *q = sql;
        if (i < R_LIST_FIRST)
            q = fixed[i];
        else if (i < R_SEARCH_FIRST)
            snprintf(sql, sizeof sql, "SELECT " FEATURE_COLS " FROM features ORDER BY %s "
                     "LIMIT ?2 OFFSET ?3", sort_order[i - R_LIST_FIRST]);
        else if (i < R_SEARCH_COUNT)
            snprintf(sql, sizeof sql, "SELECT " FEATURE_COLS " FROM features WHERE idx IN ("
                     FTS_MATCH ") ORDER BY %s LIMIT ?2 OFFSET ?3", sort_order[i - R_SEARCH_FIRST]);
        else if (i == R_SEARCH_COUNT)
            q = "SELECT count(DISTINCT feature) FROM (" FTS_MATCH ")";
        else
            /* FTS5's rank is bm25 (lower is better); a feature ranks by its
             * best explanation. rank cannot be aggregated in the FTS5 query
             * itself, hence the inner select. */
            snprintf(sql, sizeof sql, "SELECT " FEATURE_COLS " FROM features JOIN (SELECT "
                     "e.feature AS feature, min(r.score) AS score FROM (SELECT rowid AS id, "
                     "rank AS score FROM explanations_fts WHERE explanations_fts MATCH ?1) r "
                     "JOIN explanations e ON e.id = r.id GROUP BY e.feature) m ON m.feature = "
                     "idx ORDER BY m.score %s, idx ASC LIMIT ?2 OFFSET ?3",
                     i == R_RELEVANCE_FIRST ? "ASC" : "DESC");
        if (sqlite3_prepare_v3(c->db, q, -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL) !=
            SQLITE_OK) {
            rc = db_fail(c->db, s->path, "not a valid saed index", err);
            goto out;
        }
    }
    *out = c;
    return 0;
out:
    sae_store_disconnect(c);
    return rc;
}

/* Resets a statement after use (keeps it prepared). */
static void done(sqlite3_stmt *q)
{
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
}

/* SAE_ERANGE unless index < d_sae. */
static int check_index(const sae_store_conn *c, uint64_t index, sae_error *err)
{
    if (index >= info_of(c)->d_sae)
        return sae_error_set(err, SAE_ERANGE, "feature %" PRIu64 " out of range (d_sae %" PRIu64 ")",
                             index, info_of(c)->d_sae);
    return 0;
}

/* Reads the FEATURE_COLS columns of q into f. */
static void feature_from_row(sqlite3_stmt *q, sae_store_feature *f)
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

/* Steps q expecting exactly one row; SAE_EFORMAT naming what is missing. */
static int step_row(sae_store_conn *c, sqlite3_stmt *q, const char *what, uint64_t index,
                    sae_error *err)
{
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW)
        return 0;
    if (r == SQLITE_DONE)
        return sae_error_set(err, SAE_EFORMAT, "%s: no %s for feature %" PRIu64, c->s->path, what,
                             index);
    return db_fail(c->db, c->s->path, what, err);
}

int sae_store_get_feature(sae_store_conn *c, uint64_t index, sae_store_feature *out,
                          sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sqlite3_stmt *q = c->st[R_FEATURE];
    sqlite3_bind_int64(q, 1, (sqlite3_int64)index);
    if (!(rc = step_row(c, q, "features row", index, err)))
        feature_from_row(q, out);
    done(q);
    return rc;
}

void sae_store_histogram_free(sae_store_histogram *h)
{
    if (!h)
        return;
    free(h->edges);
    free(h->counts);
    memset(h, 0, sizeof *h);
}

/* Decodes the hist_first / hist columns at col, col+1 of q into h (edges
 * from the fixed bins). */
static int hist_from_row(sae_store_conn *c, sqlite3_stmt *q, int col, uint64_t index,
                         sae_store_histogram *h, sae_error *err)
{
    sae_store_histogram r = {0};
    int64_t first = sqlite3_column_int64(q, col);
    int bytes = sqlite3_column_bytes(q, col + 1);
    if (bytes % 8 || first < 0 || first + bytes / 8 > SAE_HIST_BINS)
        return sae_error_set(err, SAE_EFORMAT, "%s: feature %" PRIu64 ": malformed histogram",
                             c->s->path, index);
    r.n = (size_t)bytes / 8;
    r.first_bin = (uint32_t)first;
    r.edges = malloc((r.n + 1) * sizeof *r.edges);
    r.counts = malloc((r.n ? r.n : 1) * sizeof *r.counts);
    if (!r.edges || !r.counts) {
        sae_store_histogram_free(&r);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    if (r.n)
        memcpy(r.counts, sqlite3_column_blob(q, col + 1), r.n * 8);
    for (size_t i = 0; i < r.n; i++)
        r.edges[i] = sae_hist_lo((int)(r.first_bin + i));
    r.edges[r.n] = r.n ? sae_hist_hi((int)(r.first_bin + r.n - 1)) : 0;
    *h = r;
    return 0;
}

int sae_store_get_histogram(sae_store_conn *c, uint64_t index, sae_store_histogram *out,
                            sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sqlite3_stmt *q = c->st[R_HIST];
    sqlite3_bind_int64(q, 1, (sqlite3_int64)index);
    if (!(rc = step_row(c, q, "features row", index, err)))
        rc = hist_from_row(c, q, 0, index, out, err);
    done(q);
    return rc;
}

void sae_store_feature_raw_free(sae_store_feature_raw *r)
{
    if (r)
        sae_store_histogram_free(&r->hist);
}

int sae_store_get_feature_raw(sae_store_conn *c, uint64_t index, sae_store_feature_raw *out,
                              sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sqlite3_stmt *q = c->st[R_RAW];
    sqlite3_bind_int64(q, 1, (sqlite3_int64)index);
    sae_store_feature_raw r;
    memset(&r, 0, sizeof r);
    if ((rc = step_row(c, q, "features row", index, err)))
        goto out;
    feature_from_row(q, &r.f);
    if (sqlite3_column_bytes(q, 8) != 48) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: feature %" PRIu64 ": sum_exact is not 48 bytes",
                           c->s->path, index);
        goto out;
    }
    memcpy(r.sum_exact, sqlite3_column_blob(q, 8), 48);
    if ((rc = hist_from_row(c, q, 9, index, &r.hist, err)))
        goto out;
    *out = r;
out:
    done(q);
    return rc;
}

void sae_store_neighbours_free(sae_store_neighbours *n)
{
    if (!n)
        return;
    free(n->items);
    memset(n, 0, sizeof *n);
}

int sae_store_get_neighbours(sae_store_conn *c, uint64_t index, sae_store_neighbours *out,
                             sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sqlite3_stmt *q = c->st[R_NEIGHBOURS];
    sqlite3_bind_int64(q, 1, (sqlite3_int64)index);
    sae_store_neighbours n = {0};
    if ((rc = step_row(c, q, "neighbours row", index, err)))
        goto out;
    int bi = sqlite3_column_bytes(q, 0), bc = sqlite3_column_bytes(q, 1);
    if (bi != bc || bi % 4) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: feature %" PRIu64 ": malformed neighbours",
                           c->s->path, index);
        goto out;
    }
    n.n = (size_t)bi / 4;
    n.items = malloc((n.n ? n.n : 1) * sizeof *n.items);
    if (!n.items) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    const unsigned char *pi = sqlite3_column_blob(q, 0), *pc = sqlite3_column_blob(q, 1);
    for (size_t i = 0; i < n.n; i++) {
        memcpy(&n.items[i].index, pi + 4 * i, 4);
        memcpy(&n.items[i].cosine, pc + 4 * i, 4);
        if (n.items[i].index >= info_of(c)->d_sae) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: feature %" PRIu64 ": neighbour out of range",
                               c->s->path, index);
            goto out;
        }
    }
    *out = n;
    n.items = NULL;
out:
    free(n.items);
    done(q);
    return rc;
}

void sae_store_explanations_free(sae_store_explanations *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++) {
        free(e->items[i].description);
        free(e->items[i].source);
        free(e->items[i].type_name);
    }
    free(e->items);
    memset(e, 0, sizeof *e);
}

/* strdup of a text column, NULL for SQL NULL; *oom set on failure. */
static char *col_text(sqlite3_stmt *q, int col, bool *oom)
{
    if (sqlite3_column_type(q, col) == SQLITE_NULL)
        return NULL;
    const char *t = (const char *)sqlite3_column_text(q, col);
    char *d = strdup(t ? t : "");
    if (!d)
        *oom = true;
    return d;
}

/* Collects every row of an explanations statement into out. */
static int read_explanations(sae_store_conn *c, sqlite3_stmt *q, sae_store_explanations *out,
                             sae_error *err)
{
    sae_store_explanations e = {0};
    size_t cap = 0;
    int r, rc = 0;
    bool oom = false;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        if (e.n == cap) {
            size_t nc = cap ? cap * 2 : 4;
            sae_store_explanation *p = realloc(e.items, nc * sizeof *p);
            if (!p) {
                oom = true;
                break;
            }
            e.items = p;
            cap = nc;
        }
        sae_store_explanation *x = &e.items[e.n++];
        memset(x, 0, sizeof *x);
        x->id = (uint64_t)sqlite3_column_int64(q, 0);
        x->feature = (uint32_t)sqlite3_column_int64(q, 1);
        x->description = col_text(q, 2, &oom);
        if (!x->description && !oom)
            oom = !(x->description = strdup(""));
        x->has_score = sqlite3_column_type(q, 3) != SQLITE_NULL;
        x->score = sqlite3_column_double(q, 3);
        x->source = col_text(q, 4, &oom);
        x->type_name = col_text(q, 5, &oom);
        if (oom)
            break;
    }
    if (oom)
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory reading explanations");
    else if (r != SQLITE_DONE)
        rc = db_fail(c->db, c->s->path, "reading explanations", err);
    done(q);
    if (rc) {
        sae_store_explanations_free(&e);
        return rc;
    }
    *out = e;
    return 0;
}

int sae_store_get_explanations(sae_store_conn *c, uint64_t index, sae_store_explanations *out,
                               sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(c->st[R_EXPL], 1, (sqlite3_int64)index);
    return read_explanations(c, c->st[R_EXPL], out, err);
}

int sae_store_get_all_explanations(sae_store_conn *c, sae_store_explanations *out,
                                   sae_error *err)
{
    return read_explanations(c, c->st[R_EXPL_ALL], out, err);
}

int sae_store_parse_sort(const char *s, sae_store_sort *out, sae_error *err)
{
    if (!strcmp(s, "index"))
        *out = SAE_SORT_INDEX;
    else if (!strcmp(s, "density"))
        *out = SAE_SORT_DENSITY;
    else if (!strcmp(s, "max_activation"))
        *out = SAE_SORT_MAX_ACTIVATION;
    else if (!strcmp(s, "relevance"))
        *out = SAE_SORT_RELEVANCE;
    else
        return sae_error_set(err, SAE_EINVAL,
                             "sort: expected index, density, max_activation or relevance, got "
                             "'%.64s'",
                             s);
    return 0;
}

int sae_store_parse_order(const char *s, bool *desc, sae_error *err)
{
    if (!strcmp(s, "asc"))
        *desc = false;
    else if (!strcmp(s, "desc"))
        *desc = true;
    else
        return sae_error_set(err, SAE_EINVAL, "order: expected asc or desc, got '%.64s'", s);
    return 0;
}

/* Turns free text into an FTS5 query that cannot be a syntax error: every
 * white-space-separated word becomes a quoted phrase (quotes doubled), all
 * required; a word ending in '*' becomes a prefix query. Words without a
 * letter or digit are dropped (FTS5 would see no token in them). Returns a
 * new string, "" when no word is left. */
static char *fts_query(const char *q)
{
    size_t n = strlen(q);
    /* A word of L bytes becomes at most 2L + 2 (quotes doubled, two added)
     * plus a separating space: 2n + words + 2 <= 3n + 3 with the NUL. */
    char *out = malloc(n * 3 + 3);
    if (!out)
        return NULL;
    char *p = out;
    const char *s = q;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')
            s++;
        const char *w = s;
        bool alnum = false;
        while (*s && !(*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' ||
                       *s == '\v')) {
            unsigned char ch = (unsigned char)*s;
            if ((ch >= '0' && ch <= '9') || ((ch | 32) >= 'a' && (ch | 32) <= 'z') || ch >= 0x80)
                alnum = true;
            s++;
        }
        if (s == w || !alnum)
            continue;
        /* A word ending in '*' is a prefix ("nega*" finds "negation"): FTS5
         * reads a star after the closing quote as that. */
        const char *e = s;
        bool prefix = false;
        while (e > w && e[-1] == '*') {
            e--;
            prefix = true;
        }
        if (p != out)
            *p++ = ' ';
        *p++ = '"';
        for (const char *c = w; c < e; c++) {
            if (*c == '"')
                *p++ = '"';
            *p++ = *c;
        }
        *p++ = '"';
        if (prefix)
            *p++ = '*';
    }
    *p = '\0';
    return out;
}

void sae_store_feature_list_free(sae_store_feature_list *l)
{
    if (!l)
        return;
    free(l->items);
    memset(l, 0, sizeof *l);
}

int sae_store_list_features(sae_store_conn *c, const sae_store_query *qry,
                            sae_store_feature_list *out, sae_error *err)
{
    int rc = 0, r;
    char *fts = NULL;
    sae_store_feature_list l = {0};
    sqlite3_stmt *q = NULL;
    size_t which = (size_t)qry->sort * 2 + (qry->desc ? 1 : 0);
    if (qry->sort == SAE_SORT_RELEVANCE && !(qry->q && *qry->q))
        return sae_error_set(err, SAE_EINVAL, "sort: relevance needs a search query (q)");
    if (qry->q && *qry->q) {
        fts = fts_query(qry->q);
        if (!fts)
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    uint64_t limit = qry->limit, offset = qry->offset;
    if (limit > INT64_MAX)
        limit = INT64_MAX;
    if (offset > INT64_MAX)
        offset = INT64_MAX;
    if (fts && !*fts) {
        /* Nothing searchable in q: nothing matches. */
        *out = l;
        goto out;
    }
    if (fts) {
        sqlite3_stmt *cq = c->st[R_SEARCH_COUNT];
        sqlite3_bind_text(cq, 1, fts, -1, SQLITE_STATIC);
        r = sqlite3_step(cq);
        if (r != SQLITE_ROW) {
            rc = db_fail(c->db, c->s->path, "searching explanations", err);
            done(cq);
            goto out;
        }
        l.total = (uint64_t)sqlite3_column_int64(cq, 0);
        done(cq);
        q = qry->sort == SAE_SORT_RELEVANCE ? c->st[R_RELEVANCE_FIRST + (qry->desc ? 1 : 0)]
                                            : c->st[R_SEARCH_FIRST + which];
        sqlite3_bind_text(q, 1, fts, -1, SQLITE_STATIC);
    } else {
        l.total = info_of(c)->d_sae;
        q = c->st[R_LIST_FIRST + which];
    }
    uint64_t want = limit;
    if (want > l.total - (offset < l.total ? offset : l.total))
        want = l.total - (offset < l.total ? offset : l.total);
    if (want) {
        l.items = malloc(want * sizeof *l.items);
        if (!l.items) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory listing %" PRIu64 " features", want);
            goto out;
        }
    }
    sqlite3_bind_int64(q, 2, (sqlite3_int64)limit);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)offset);
    while ((r = sqlite3_step(q)) == SQLITE_ROW && l.n < want)
        feature_from_row(q, &l.items[l.n++]);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_fail(c->db, c->s->path, "listing features", err);
    done(q);
    if (rc)
        goto out;
    *out = l;
    l.items = NULL;
out:
    free(l.items);
    free(fts);
    return rc;
}

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
                                : db_fail(c->db, c->s->path, "reading documents", err);
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
        rc = db_fail(c->db, c->s->path, "reading examples", err);
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
