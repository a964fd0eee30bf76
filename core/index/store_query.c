/* store_query.c: the feature list behind GET /v1/features: sorting, paging,
 * the live-only filter and full-text search over the explanations, where no
 * query is a syntax error (store.h). The SQL of every listing is written
 * here (store_list_sql): the common ones are prepared once per connection
 * (store_read.c), the rarer ones (live only, by score) per call. */
#include "index/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The features (as `feature`) one of whose explanations matches ?1. */
#define FTS_MATCH                                                                       \
    "SELECT feature FROM explanations WHERE id IN (SELECT rowid FROM explanations_fts " \
    "WHERE explanations_fts MATCH ?1)"

void store_list_sql(char *sql, size_t cap, sae_store_sort sort, bool desc, bool fts, bool alive,
                    bool stored_score)
{
    const char *dir = desc ? "DESC" : "ASC";
    const char *cols = sort == SAE_SORT_RELEVANCE ? "SELECT " FEATURE_COLS ", m.score FROM features"
                                                  : "SELECT " FEATURE_COLS " FROM features";
    /* FTS5's rank is bm25 (lower is better); a feature ranks by its best
     * explanation. rank cannot be aggregated in the FTS5 query itself, hence
     * the inner select. A feature's score is that of its best-scored
     * explanation with a description (the browser's label), NULL (lowest)
     * when none is scored: stored in features.best_score and indexed
     * (schema/006), or in a file from before that aggregated here. */
    const char *join =
        sort == SAE_SORT_RELEVANCE
            ? " JOIN (SELECT e.feature AS feature, min(r.score) AS score FROM (SELECT rowid AS id, "
              "rank AS score FROM explanations_fts WHERE explanations_fts MATCH ?1) r "
              "JOIN explanations e ON e.id = r.id GROUP BY e.feature) m ON m.feature = idx"
        : sort == SAE_SORT_SCORE && !stored_score
            ? " LEFT JOIN (SELECT feature AS sf, max(score) AS best FROM explanations "
              "WHERE trim(description) <> '' GROUP BY feature) s ON s.sf = idx"
            : "";
    const char *where = fts && sort != SAE_SORT_RELEVANCE
                            ? (alive ? " WHERE idx IN (" FTS_MATCH ") AND n_active > 0"
                                     : " WHERE idx IN (" FTS_MATCH ")")
                            : (alive ? " WHERE n_active > 0" : "");
    static const char *const key[] = {
        [SAE_SORT_INDEX] = "idx", [SAE_SORT_DENSITY] = "density",
        [SAE_SORT_MAX_ACTIVATION] = "max_activation", [SAE_SORT_RELEVANCE] = "m.score",
        [SAE_SORT_SCORE] = "s.best"};
    const char *k = sort == SAE_SORT_SCORE && stored_score ? "best_score" : key[sort];
    char order[64];
    /* Every feature in index order: the indices are consecutive (store_load
     * checks), so the page starts at a key, not after walking `offset` rows. */
    if (sort == SAE_SORT_INDEX && !fts && !alive) {
        snprintf(sql, cap, "%s WHERE idx %s ORDER BY idx %s LIMIT ?2", cols,
                 desc ? "<= (SELECT max(idx) FROM features) - ?3"
                      : ">= (SELECT min(idx) FROM features) + ?3",
                 dir);
        return;
    }
    if (sort == SAE_SORT_INDEX)
        snprintf(order, sizeof order, "idx %s", dir);
    else
        snprintf(order, sizeof order, "%s %s, idx ASC", k, dir);
    snprintf(sql, cap, "%s%s%s ORDER BY %s LIMIT ?2 OFFSET ?3", cols, join, where, order);
}

const char *store_count_sql(bool fts, bool alive)
{
    if (!alive)
        return fts ? "SELECT count(DISTINCT feature) FROM (" FTS_MATCH ")" : NULL;
    return fts ? "SELECT count(*) FROM features WHERE idx IN (" FTS_MATCH ") AND n_active > 0"
               : "SELECT count(*) FROM features WHERE n_active > 0";
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
    else if (!strcmp(s, "score"))
        *out = SAE_SORT_SCORE;
    else
        return sae_error_set(err, SAE_EINVAL,
                             "sort: expected index, density, max_activation, score or relevance, "
                             "got '%.64s'",
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
    free(l->relevance);
    memset(l, 0, sizeof *l);
}

/* Prepares sql for this one call into *st: 0, or the error. */
static int prepare_once(sae_store_conn *c, const char *sql, sqlite3_stmt **st, sae_error *err)
{
    if (sqlite3_prepare_v2(c->db, sql, -1, st, NULL) != SQLITE_OK)
        return sae_store_fail(c->db, c->s->path, "listing features", err);
    return 0;
}

int sae_store_list_features(sae_store_conn *c, const sae_store_query *qry,
                            sae_store_feature_list *out, sae_error *err)
{
    int rc = 0, r;
    char *fts = NULL;
    sae_store_feature_list l = {0};
    sqlite3_stmt *q = NULL, *cq = NULL;
    /* Live only and by score are prepared for this call; the rest were
     * prepared with the connection. */
    bool once = qry->alive || qry->sort == SAE_SORT_SCORE;
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
    const char *count_sql = store_count_sql(fts != NULL, qry->alive);
    if (count_sql) {
        if (once) {
            if ((rc = prepare_once(c, count_sql, &cq, err)))
                goto out;
        } else {
            cq = c->st[R_SEARCH_COUNT];
        }
        if (fts)
            sqlite3_bind_text(cq, 1, fts, -1, SQLITE_STATIC);
        r = sqlite3_step(cq);
        if (r != SQLITE_ROW) {
            rc = sae_store_fail(c->db, c->s->path, fts ? "searching explanations" : "counting features",
                                err);
            goto out;
        }
        l.total = (uint64_t)sqlite3_column_int64(cq, 0);
    } else {
        l.total = info_of(c)->d_sae;
    }
    if (once) {
        char sql[1024];
        store_list_sql(sql, sizeof sql, qry->sort, qry->desc, fts != NULL, qry->alive,
                       info_of(c)->has_best_score);
        if ((rc = prepare_once(c, sql, &q, err)))
            goto out;
    } else if (fts) {
        q = qry->sort == SAE_SORT_RELEVANCE ? c->st[R_RELEVANCE_FIRST + (qry->desc ? 1 : 0)]
                                            : c->st[R_SEARCH_FIRST + which];
    } else {
        q = c->st[R_LIST_FIRST + which];
    }
    if (fts)
        sqlite3_bind_text(q, 1, fts, -1, SQLITE_STATIC);
    uint64_t want = limit;
    if (want > l.total - (offset < l.total ? offset : l.total))
        want = l.total - (offset < l.total ? offset : l.total);
    bool relevance = fts && qry->sort == SAE_SORT_RELEVANCE;
    if (want) {
        l.items = malloc(want * sizeof *l.items);
        if (!l.items || (relevance && !(l.relevance = malloc(want * sizeof *l.relevance)))) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory listing %" PRIu64 " features", want);
            goto out;
        }
    }
    sqlite3_bind_int64(q, 2, (sqlite3_int64)limit);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)offset);
    while ((r = sqlite3_step(q)) == SQLITE_ROW && l.n < want) {
        if (relevance)
            l.relevance[l.n] = -sqlite3_column_double(q, 8);
        feature_from_row(q, &l.items[l.n++]);
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = sae_store_fail(c->db, c->s->path, "listing features", err);
    if (rc)
        goto out;
    *out = l;
    l.items = NULL;
    l.relevance = NULL;
out:
    /* A statement of this call is finalized, one of the connection reset. */
    if (once) {
        sqlite3_finalize(q);
        sqlite3_finalize(cq);
    } else {
        if (q)
            done(q);
        if (cq)
            done(cq);
    }
    free(l.items);
    free(l.relevance);
    free(fts);
    return rc;
}
