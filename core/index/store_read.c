/* store_read.c: an index file opened and validated once, its meta and
 * vocabulary shared read-only by every thread, and each thread's connection
 * with its prepared statements (store.h). */
#include "index/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads the 100-byte SQLite header of path and checks it (store_check_header). */
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
    return store_check_header(path, h, got < 0 ? 0 : (size_t)got, (uint64_t)st.st_size, err);
}

int store_check_header(const char *path, const unsigned char *h, size_t got, uint64_t size,
                       sae_error *err)
{
    if (got < 100 || memcmp(h, "SQLite format 3", 16))
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
    if (user < 1 || user > sae_store_schema_version())
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: index schema version %" PRId32 ", this build reads versions 1 "
                             "to %d (%s)",
                             path, user, sae_store_schema_version(),
                             user < 1 ? "rebuild it with this sae" : "it is newer than this sae");
    if ((uint64_t)page * pages != size)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: truncated or damaged index (%" PRIu64 " bytes, header says %" PRIu64
                             ")",
                             path, size, (uint64_t)page * pages);
    return 0;
}

/* Reads the file's schema version and which optional tables it holds (a
 * file written before a schema file lacks that file's tables). */
static int read_layout(sqlite3 *db, const char *path, sae_store_info *info, sae_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db, "SELECT (SELECT user_version FROM pragma_user_version), "
                           "EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
                           "'explanation_scores') AND EXISTS (SELECT 1 FROM "
                           "pragma_table_info('explanations') WHERE name = 'score_v2'), "
                           "EXISTS (SELECT 1 FROM pragma_table_info('features') WHERE name = "
                           "'best_score')",
                           -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW)
        rc = sae_store_fail(db, path, "not a valid saed index", err);
    else {
        info->schema_version = sqlite3_column_int(q, 0);
        info->has_scores = sqlite3_column_int(q, 1) != 0;
        info->has_best_score = sqlite3_column_int(q, 2) != 0;
    }
    sqlite3_finalize(q);
    return rc;
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

/* Parses the "A:B" of a range shard's meta shard value into info's feature
 * range; false unless 0 <= A < B <= d_sae. */
static bool meta_range(const char *s, sae_store_info *info)
{
    unsigned long long a, b;
    int used = 0;
    if (*s < '0' || *s > '9' || sscanf(s, "%llu:%llu%n", &a, &b, &used) != 2 || s[used] ||
        a >= b || b > info->d_sae)
        return false;
    info->feat_lo = a;
    info->feat_hi = b;
    return true;
}

/* Copies meta table rows into info; every key is required. */
static int read_meta(sqlite3 *db, const char *path, sae_store_info *info, sae_error *err)
{
    const char *const *keys = sae_store_meta_keys;
    enum { NKEYS = SAE_STORE_META_KEYS };
    char *vals[NKEYS] = {0};
    sqlite3_stmt *q = NULL;
    int rc;
    if (sqlite3_prepare_v2(db, "SELECT key, value FROM meta", -1, &q, NULL) != SQLITE_OK) {
        rc = sae_store_fail(db, path, "not a valid saed index", err);
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
        rc = sae_store_fail(db, path, "reading meta", err);
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
    info->feat_lo = 0;
    info->feat_hi = info->d_sae;
    const char *range = strstr(info->shard, " features ");
    if (range && !meta_range(range + strlen(" features "), info)) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: meta shard has a malformed feature range: %s",
                           path, info->shard);
        goto out;
    }
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
        rc = sae_store_fail(db, s->path, "reading vocab", err);
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
        rc = sae_store_fail(db, s->path, "reading vocab", err);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(q);
    return rc;
}

/* The file's user_version, and whether it holds the dashboards tables (an
 * index of version 1, or built without --unembed / --correlations, does not:
 * its features read as "not computed"). */
static int read_version(sqlite3 *db, sae_store *s, sae_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db, "SELECT (SELECT user_version FROM pragma_user_version), "
                           "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                           "('logits', 'logit_tokens', 'neuron_tables')), "
                           "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                           "name = 'act_bars')", -1, &q, NULL) !=
            SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        rc = sae_store_fail(db, s->path, "reading the schema", err);
        goto out;
    }
    s->info.schema_version = sqlite3_column_int(q, 0);
    int tables = sqlite3_column_int(q, 1);
    if (tables != 0 && tables != 3) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: the dashboards tables are incomplete", s->path);
        goto out;
    }
    s->info.has_dashboards = tables == 3;
    /* written with the dashboards tables, or added to them (schema/004) */
    s->info.has_act_bars = tables == 3 && sqlite3_column_int(q, 2) > 0;
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
    store_image_free(s);
    free(s);
}

int sae_store_open(const char *path, sae_store **out, sae_error *err)
{
    int rc;
    sae_store *s = calloc(1, sizeof *s);
    if (!s)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    s->path = strdup(path);
    s->uri = make_uri(path);
    if (!s->path || !s->uri)
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    else if (!(rc = check_header(path, err)))
        rc = store_load(s, err);
    if (rc) {
        sae_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int store_load(sae_store *s, sae_error *err)
{
    int rc;
    const char *path = s->path;
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    if ((rc = store_open_db(s, &db, err)))
        goto out;
    if ((rc = read_meta(db, path, &s->info, err)) || (rc = read_vocab(db, s, err)) ||
        (rc = read_version(db, s, err)) || (rc = read_layout(db, path, &s->info, err)))
        goto out;
    if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(min(idx), 0), coalesce(max(idx), -1) "
                           "FROM features", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        rc = sae_store_fail(db, path, "not a valid saed index", err);
        goto out;
    }
    if ((uint64_t)sqlite3_column_int64(q, 0) != s->info.feat_hi - s->info.feat_lo ||
        sqlite3_column_int64(q, 1) != (sqlite3_int64)s->info.feat_lo ||
        sqlite3_column_int64(q, 2) != (sqlite3_int64)s->info.feat_hi - 1) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: features table does not hold features %" PRIu64
                           "..%" PRIu64, path, s->info.feat_lo, s->info.feat_hi - 1);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(q);
    if (db)
        sqlite3_close(db);
    return rc;
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
    if (i->feat_lo != 0 || i->feat_hi != i->d_sae)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: a feature-range shard (features %" PRIu64 ":%" PRIu64 " of %" PRIu64
                             "): merge the ranges with `sae merge` to serve them",
                             s->path, i->feat_lo, i->feat_hi, i->d_sae);
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

/* The explanations columns read_explanations expects, with score_v2 from
 * `v2` (a column, or NULL for files without one). */
#define EXPL_SELECT(v2) \
    "SELECT id, feature, description, score, source, type_name, " v2 " FROM explanations "

int sae_store_connect(sae_store *s, sae_store_conn **out, sae_error *err)
{
    int rc;
    char sql[1024];
    sae_store_conn *c = calloc(1, sizeof *c);
    if (!c)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", s->path);
    c->s = s;
    if ((rc = store_open_db(s, &c->db, err)))
        goto out;
    const char *fixed[R_LIST_FIRST] = {
        [R_FEATURE] = "SELECT " FEATURE_COLS " FROM features WHERE idx = ?1",
        [R_HIST] = "SELECT hist_first, hist FROM features WHERE idx = ?1",
        [R_RAW] = "SELECT " FEATURE_COLS ", sum_exact, hist_first, hist FROM features "
                  "WHERE idx = ?1",
        [R_NEIGHBOURS] = "SELECT indices, cosines FROM neighbours WHERE feature = ?1",
        [R_EXPL] = s->info.has_scores ? EXPL_SELECT("score_v2") "WHERE feature = ?1 ORDER BY id"
                                      : EXPL_SELECT("NULL") "WHERE feature = ?1 ORDER BY id",
        [R_EXPL_ALL] = s->info.has_scores ? EXPL_SELECT("score_v2") "ORDER BY id"
                                          : EXPL_SELECT("NULL") "ORDER BY id",
        /* Scores come in the explanations' order, so they pair up in one walk. */
        [R_SCORES] = "SELECT s.explanation, s.value, s.type, s.model FROM explanation_scores s "
                     "JOIN explanations e ON e.id = s.explanation WHERE e.feature = ?1 "
                     "ORDER BY s.explanation, s.seq",
        [R_SCORES_ALL] = "SELECT explanation, value, type, model FROM explanation_scores "
                         "ORDER BY explanation, seq",
        [R_EXAMPLES] = "SELECT n, data FROM examples WHERE id = ?1",
        [R_DOCUMENT] = "SELECT name FROM documents WHERE idx = ?1",
    };
    const char *dash[R_COUNT - R_BASE_COUNT] = {
        [R_LOGITS - R_BASE_COUNT] = "SELECT pos_ids, pos_values, neg_ids, neg_values, hist_min, "
                                    "hist_max, hist FROM logits WHERE feature = ?1",
        [R_LOGIT_TOKEN - R_BASE_COUNT] = "SELECT token FROM logit_tokens WHERE id = ?1",
        [R_NEURON - R_BASE_COUNT] = "SELECT indices, value_list, extra FROM neuron_tables "
                                    "WHERE id = ?1",
        [R_ACT_BARS - R_BASE_COUNT] = "SELECT act_min, act_max, heights FROM act_bars "
                                      "WHERE feature = ?1",
    };
    int n_st = s->info.has_dashboards ? R_COUNT : R_BASE_COUNT;
    for (int i = 0; i < n_st; i++) {
        const char *q = sql;
        if ((i == R_SCORES || i == R_SCORES_ALL) && !s->info.has_scores)
            continue; /* an index from before scores: none to read */
        if (i == R_ACT_BARS && !s->info.has_act_bars)
            continue; /* dashboards from before schema/004 */
        if (i < R_LIST_FIRST)
            q = fixed[i];
        else if (i >= R_BASE_COUNT)
            q = dash[i - R_BASE_COUNT];
        else if (i < R_SEARCH_COUNT) /* sort x order, without and with a query */
            store_list_sql(sql, sizeof sql, (sae_store_sort)((i - R_LIST_FIRST) % 6 / 2),
                           (i - R_LIST_FIRST) % 2, i >= R_SEARCH_FIRST, false, false);
        else if (i == R_SEARCH_COUNT)
            q = store_count_sql(true, false);
        else
            store_list_sql(sql, sizeof sql, SAE_SORT_RELEVANCE, i != R_RELEVANCE_FIRST, true,
                           false, false);
        if (sqlite3_prepare_v3(c->db, q, -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL) !=
            SQLITE_OK) {
            rc = sae_store_fail(c->db, s->path, "not a valid saed index", err);
            goto out;
        }
    }
    *out = c;
    return 0;
out:
    sae_store_disconnect(c);
    return rc;
}
