/* store_write.c: an index file written (store.h): a temporary file next to
 * the target filled in one transaction, checked, made durable and renamed
 * into place. */
#include "index/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    W_META, W_FEATURE, W_EXAMPLE, W_NEIGHBOURS, W_VOCAB, W_DOCUMENT, W_EXPLANATION, W_SCORE,
    W_BASE_COUNT, /* the statements above are prepared at open; those below by
                     sae_store_writer_dashboards, once their tables exist */
    W_LOGITS = W_BASE_COUNT, W_LOGIT_TOKEN, W_NEURON, W_ACT_BARS, W_COUNT
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
                      "type_name, score_v2) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
    [W_SCORE] = ("INSERT INTO explanation_scores (explanation, seq, value, type, model) "
                 "VALUES (?1, ?2, ?3, ?4, ?5)"),
    [W_LOGITS] = ("INSERT OR REPLACE INTO logits (feature, pos_ids, pos_values, neg_ids, "
                 "neg_values, hist_min, hist_max, hist) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
    [W_LOGIT_TOKEN] = "INSERT OR REPLACE INTO logit_tokens (id, token) VALUES (?1, ?2)",
    [W_NEURON] = ("INSERT OR REPLACE INTO neuron_tables (id, indices, value_list, extra) "
                 "VALUES (?1, ?2, ?3, ?4)"),
    [W_ACT_BARS] = ("INSERT OR REPLACE INTO act_bars (feature, act_min, act_max, heights) "
                    "VALUES (?1, ?2, ?3, ?4)"),
};


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
    int version;            /* user_version at commit: the last schema file applied */
};


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

/* Copies the file src to the new file dst (created by the caller); for
 * sae_store_writer_open_copy. */
static int copy_file(const char *src, const char *dst, sae_error *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), out = open(dst, O_WRONLY | O_TRUNC | O_CLOEXEC);
    int rc = 0;
    char buf[1 << 16];
    if (in < 0 || out < 0) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot open: %s", in < 0 ? src : dst,
                           strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = sae_error_set(err, SAE_EIO, "%s: cannot read: %s", src, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t m = write(out, buf + off, (size_t)(n - off));
            if (m < 0 && errno == EINTR)
                continue;
            if (m < 0) {
                rc = sae_error_set(err, SAE_EIO, "%s: cannot write: %s", dst, strerror(errno));
                goto out;
            }
            off += m;
        }
    }
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

/* Applies schema file i to w's file and records its number as the version. */
static int apply_schema(sae_store_writer *w, size_t i, sae_error *err)
{
    char *emsg = NULL;
    if (sqlite3_exec(w->db, sae_schema_files[i].sql, NULL, NULL, &emsg) != SQLITE_OK) {
        int rc = sae_error_set(err, SAE_EFORMAT, "%s: schema %s: %s", w->temp,
                               sae_schema_files[i].name, emsg ? emsg : "failed");
        sqlite3_free(emsg);
        return rc;
    }
    if (sae_schema_files[i].number > w->version)
        w->version = sae_schema_files[i].number;
    return 0;
}

/* Prepares statements [from, to) of writer_sql. */
static int prepare_range(sae_store_writer *w, int from, int to, sae_error *err)
{
    for (int i = from; i < to; i++)
        if (sqlite3_prepare_v3(w->db, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &w->st[i],
                               NULL) != SQLITE_OK)
            return sae_store_fail(w->db, w->temp, "cannot prepare", err);
    return 0;
}

/* The writer for target: a new temporary file next to it, empty or (src not
 * NULL) a copy of src, opened in one transaction; the base schema applied to
 * an empty one. */
static int writer_open(const char *target, const char *src, sae_store_writer **out,
                       sae_error *err)
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
    if (src && (rc = copy_file(src, w->temp, err)))
        goto out_unlink;
    if (sqlite3_open_v2(w->temp, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = sae_store_fail(w->db, w->temp, "cannot open", err);
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
        rc = sae_store_fail(w->db, w->temp, "cannot set up", err);
        goto out_unlink;
    }
    if (src) {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(w->db, "PRAGMA user_version;", -1, &q, NULL) != SQLITE_OK ||
            sqlite3_step(q) != SQLITE_ROW) {
            sqlite3_finalize(q);
            rc = sae_store_fail(w->db, w->temp, "reading user_version", err);
            goto out_unlink;
        }
        w->version = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
    }
    /* A new file gets every schema file but the on-demand ones; a copy being
     * upgraded gets those newer than it (an index from before
     * 003_scores.sql gains its table and column). */
    for (size_t i = 0; i < sae_schema_count; i++)
        if (!sae_schema_files[i].on_demand && (!src || sae_schema_files[i].number > w->version) &&
            (rc = apply_schema(w, i, err)))
            goto out_unlink;
    if ((rc = prepare_range(w, 0, W_BASE_COUNT, err)))
        goto out_unlink;
    *out = w;
    return 0;
out_unlink:
    unlink(w->temp);
out:
    writer_free(w);
    return rc;
}

int sae_store_writer_open(const char *target, sae_store_writer **out, sae_error *err)
{
    return writer_open(target, NULL, out, err);
}

int sae_store_writer_open_copy(const char *target, const char *src, sae_store_writer **out,
                               sae_error *err)
{
    return writer_open(target, src, out, err);
}

/* Whether the file being written has the first table that on-demand schema
 * file i creates (its first "CREATE TABLE name"): such a file is applied
 * whole or not at all, so that table says whether it was. */
static int has_first_table(sae_store_writer *w, size_t i, bool *have, sae_error *err)
{
    const char *p = strstr(sae_schema_files[i].sql, "CREATE TABLE ");
    if (!p)
        return sae_error_set(err, SAE_EFORMAT, "schema %s creates no table",
                             sae_schema_files[i].name);
    p += strlen("CREATE TABLE ");
    size_t n = strcspn(p, " (\n");
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(w->db, "SELECT count(*) FROM sqlite_master WHERE name = ?1", -1, &q,
                           NULL) != SQLITE_OK) {
        sqlite3_finalize(q);
        return sae_store_fail(w->db, w->temp, "reading the schema", err);
    }
    sqlite3_bind_text(q, 1, p, (int)n, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        return sae_store_fail(w->db, w->temp, "reading the schema", err);
    }
    *have = sqlite3_column_int(q, 0) > 0;
    sqlite3_finalize(q);
    return 0;
}

int sae_store_writer_dashboards(sae_store_writer *w, sae_error *err)
{
    if (w->st[W_LOGITS])
        return 0;
    /* Every on-demand file the file lacks: all of them for a new index, the
     * newer ones for an index upgraded from before them. */
    int rc = 0;
    for (size_t i = 0; i < sae_schema_count && !rc; i++) {
        bool have = true;
        if (sae_schema_files[i].on_demand && !(rc = has_first_table(w, i, &have, err)) && !have)
            rc = apply_schema(w, i, err);
    }
    return rc ? rc : prepare_range(w, W_BASE_COUNT, W_COUNT, err);
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
        return sae_store_fail(w->db, w->temp, what, err);
    return 0;
}

int sae_store_put_meta(sae_store_writer *w, const char *key, const char *value, sae_error *err)
{
    sqlite3_stmt *s = w->st[W_META];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    return step_insert(w, W_META, "writing meta", err);
}

int sae_store_copy_neighbours_meta(sae_store_conn *from, sae_store_writer *w, sae_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = 0, r = SQLITE_DONE;
    if (sqlite3_prepare_v2(from->db, "SELECT key, value FROM meta WHERE key GLOB 'neighbours_*' "
                           "ORDER BY key", -1, &q, NULL) != SQLITE_OK)
        return sae_store_fail(from->db, from->s->path, "reading meta", err);
    while (!rc && (r = sqlite3_step(q)) == SQLITE_ROW)
        rc = sae_store_put_meta(w, (const char *)sqlite3_column_text(q, 0),
                                (const char *)sqlite3_column_text(q, 1), err);
    if (!rc && r != SQLITE_DONE)
        rc = sae_store_fail(from->db, from->s->path, "reading meta", err);
    sqlite3_finalize(q);
    return rc;
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

int sae_store_put_explanation(sae_store_writer *w, const sae_explanation *x, sae_error *err)
{
    sqlite3_stmt *s = w->st[W_EXPLANATION];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)x->id);
    sqlite3_bind_int64(s, 2, x->feature);
    sqlite3_bind_text(s, 3, x->description, -1, SQLITE_STATIC);
    if (x->has_score)
        sqlite3_bind_double(s, 4, x->score);
    if (x->source)
        sqlite3_bind_text(s, 5, x->source, -1, SQLITE_STATIC);
    if (x->type_name)
        sqlite3_bind_text(s, 6, x->type_name, -1, SQLITE_STATIC);
    if (x->has_score_v2)
        sqlite3_bind_double(s, 7, x->score_v2);
    int rc = step_insert(w, W_EXPLANATION, "writing explanations", err);
    for (size_t k = 0; k < x->n_scores && !rc; k++) {
        const sae_explanation_score *sc = &x->scores[k];
        s = w->st[W_SCORE];
        sqlite3_bind_int64(s, 1, (sqlite3_int64)x->id);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)k);
        sqlite3_bind_double(s, 3, sc->value);
        if (sc->type)
            sqlite3_bind_text(s, 4, sc->type, -1, SQLITE_STATIC);
        if (sc->model)
            sqlite3_bind_text(s, 5, sc->model, -1, SQLITE_STATIC);
        rc = step_insert(w, W_SCORE, "writing explanation scores", err);
    }
    return rc;
}

/* Binds n little-endian 4-byte items (uint32 or float32) as a blob. */
static void bind_le32(sqlite3_stmt *s, int col, const void *items, size_t n)
{
    sqlite3_bind_blob(s, col, n ? items : "", (int)(n * 4), SQLITE_STATIC);
}

int sae_store_put_logits(sae_store_writer *w, uint32_t feature, const sae_store_logits_row *r,
                         sae_error *err)
{
    if (r->n_pos > SAE_LOGIT_ROWS || r->n_neg > SAE_LOGIT_ROWS)
        return sae_error_set(err, SAE_EINVAL, "%s: too many logit rows", w->temp);
    sqlite3_stmt *s = w->st[W_LOGITS];
    sqlite3_bind_int64(s, 1, feature);
    bind_le32(s, 2, r->pos_ids, r->n_pos);
    bind_le32(s, 3, r->pos_values, r->n_pos);
    bind_le32(s, 4, r->neg_ids, r->n_neg);
    bind_le32(s, 5, r->neg_values, r->n_neg);
    sqlite3_bind_double(s, 6, r->hist_min);
    sqlite3_bind_double(s, 7, r->hist_max);
    bind_le32(s, 8, r->hist, SAE_LOGIT_BINS);
    return step_insert(w, W_LOGITS, "writing logits", err);
}

int sae_store_put_logit_token(sae_store_writer *w, uint32_t id, const char *token, size_t len,
                              sae_error *err)
{
    if (len > INT_MAX)
        return sae_error_set(err, SAE_EINVAL, "%s: token too long", w->temp);
    sqlite3_stmt *s = w->st[W_LOGIT_TOKEN];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, len ? token : "", (int)len, SQLITE_STATIC);
    return step_insert(w, W_LOGIT_TOKEN, "writing logit tokens", err);
}

int sae_store_put_neuron_table(sae_store_writer *w, uint32_t feature, sae_neuron_kind kind,
                               const uint32_t *indices, const float *values, const float *extra,
                               size_t n, sae_error *err)
{
    if (n > SAE_NEURON_ROWS)
        return sae_error_set(err, SAE_EINVAL, "%s: too many neuron rows", w->temp);
    sqlite3_stmt *s = w->st[W_NEURON];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)feature * 2 + (sqlite3_int64)kind);
    bind_le32(s, 2, indices, n);
    bind_le32(s, 3, values, n);
    bind_le32(s, 4, extra, n);
    return step_insert(w, W_NEURON, "writing neuron tables", err);
}

int sae_store_put_info(sae_store_writer *w, const sae_store_info *i, sae_error *err)
{
    _Static_assert(SAE_STORE_META_KEYS == 19, "one value per meta key");
    char num[19][40];
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
        int rc = sae_store_put_meta(w, sae_store_meta_keys[k], vals[k], err);
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

/* Each feature's best_score (schema/006) from the explanations as they now
 * stand: the best score of an explanation with a description, NULL when none
 * is scored. Only rows whose value changes are written: the features a build
 * or merge gave explanations, none again on an --upgrade copy. */
#define FILL_BEST_SCORES                                                                \
    "UPDATE features SET best_score = b.best FROM (SELECT feature, max(score) AS best " \
    "FROM explanations WHERE trim(description) <> '' GROUP BY feature) AS b "           \
    "WHERE features.idx = b.feature AND features.best_score IS NOT b.best; "            \
    "UPDATE features SET best_score = NULL WHERE best_score IS NOT NULL AND NOT EXISTS " \
    "(SELECT 1 FROM explanations e WHERE e.feature = features.idx AND "                 \
    "trim(e.description) <> '' AND e.score IS NOT NULL);"

int sae_store_writer_commit(sae_store_writer *w, sae_error *err)
{
    int rc;
    char sql[64];
    char *emsg = NULL;
    sqlite3_stmt *qc = NULL;
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d;", w->version);
    if (sqlite3_exec(w->db, FILL_BEST_SCORES, NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(w->db, "INSERT INTO explanations_fts (explanations_fts) VALUES ('rebuild');",
                     NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(w->db, sql, NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(w->db, "COMMIT;", NULL, NULL, &emsg) != SQLITE_OK) {
        sqlite3_free(emsg);
        rc = sae_store_fail(w->db, w->temp, "cannot finish", err);
        goto fail;
    }
    if (sqlite3_prepare_v2(w->db, "PRAGMA quick_check;", -1, &qc, NULL) != SQLITE_OK) {
        rc = sae_store_fail(w->db, w->temp, "quick_check", err);
        goto fail;
    }
    int r = sqlite3_step(qc);
    if (r != SQLITE_ROW) {
        rc = sae_store_fail(w->db, w->temp, "quick_check", err);
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
        rc = sae_store_fail(w->db, w->temp, "cannot close", err);
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

int sae_store_put_act_bars(sae_store_writer *w, uint32_t feature, float act_min, float act_max,
                           const uint64_t *heights, size_t n, sae_error *err)
{
    if (n > SAE_ACT_BARS)
        return sae_error_set(err, SAE_EINVAL, "%s: too many activation bars", w->temp);
    unsigned char blob[SAE_ACT_BARS * 8];
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 8; k++)
            blob[8 * i + k] = (unsigned char)(heights[i] >> (8 * k));
    sqlite3_stmt *s = w->st[W_ACT_BARS];
    sqlite3_bind_int64(s, 1, feature);
    sqlite3_bind_double(s, 2, act_min);
    sqlite3_bind_double(s, 3, act_max);
    sqlite3_bind_blob(s, 4, blob, (int)(n * 8), SQLITE_TRANSIENT);
    return step_insert(w, W_ACT_BARS, "writing activation bars", err);
}
