/* store_feature.c: one feature read back: its statistics, histogram and
 * raw sums (for the merge), its neighbours; and the explanations (store.h). */
#include "index/store_internal.h"

#include <stdlib.h>
#include <string.h>

#include "index/index_hist.h"

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
    return sae_store_fail(c->db, c->s->path, what, err);
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

/* Collects every row of an explanations statement into e. */
static int read_rows(sae_store_conn *c, sqlite3_stmt *q, sae_explanations *e, sae_error *err)
{
    int r = SQLITE_DONE;
    bool oom = false;
    while (!oom && (r = sqlite3_step(q)) == SQLITE_ROW) {
        sae_explanation *x;
        if (sae_explanations_push(e, c->s->path, &x, err)) {
            oom = true;
            break;
        }
        x->id = (uint64_t)sqlite3_column_int64(q, 0);
        x->feature = (uint32_t)sqlite3_column_int64(q, 1);
        x->description = col_text(q, 2, &oom);
        if (!x->description && !oom)
            oom = !(x->description = strdup(""));
        x->has_score = sqlite3_column_type(q, 3) != SQLITE_NULL;
        x->score = sqlite3_column_double(q, 3);
        x->source = col_text(q, 4, &oom);
        x->type_name = col_text(q, 5, &oom);
        x->has_score_v2 = sqlite3_column_type(q, 6) != SQLITE_NULL;
        x->score_v2 = sqlite3_column_double(q, 6);
    }
    int rc = 0;
    if (oom)
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory reading explanations");
    else if (r != SQLITE_DONE)
        rc = sae_store_fail(c->db, c->s->path, "reading explanations", err);
    done(q);
    return rc;
}

/* Attaches the rows of a scores statement (explanation id order, as e) to
 * e's explanations; q may be NULL (an index without scores). */
static int read_scores(sae_store_conn *c, sqlite3_stmt *q, sae_explanations *e, sae_error *err)
{
    if (!q)
        return 0;
    int r = SQLITE_DONE, rc = 0;
    size_t at = 0;
    while (!rc && (r = sqlite3_step(q)) == SQLITE_ROW) {
        uint64_t id = (uint64_t)sqlite3_column_int64(q, 0);
        while (at < e->n && e->items[at].id < id)
            at++;
        if (at == e->n || e->items[at].id != id)
            continue; /* a score of no explanation read: nothing to attach to */
        const char *type = (const char *)sqlite3_column_text(q, 2);
        const char *model = (const char *)sqlite3_column_text(q, 3);
        rc = sae_explanation_add_score(&e->items[at], sqlite3_column_double(q, 1), type, model,
                                       c->s->path, err);
    }
    if (!rc && r != SQLITE_DONE)
        rc = sae_store_fail(c->db, c->s->path, "reading explanation scores", err);
    done(q);
    return rc;
}

/* Reads explanations (q) and their scores (sq) into out. */
static int read_explanations(sae_store_conn *c, sqlite3_stmt *q, sqlite3_stmt *sq,
                             sae_explanations *out, sae_error *err)
{
    sae_explanations e = {0};
    int rc = read_rows(c, q, &e, err);
    if (!rc)
        rc = read_scores(c, sq, &e, err);
    if (rc) {
        sae_explanations_free(&e);
        return rc;
    }
    *out = e;
    return 0;
}

int sae_store_get_explanations(sae_store_conn *c, uint64_t index, sae_explanations *out,
                               sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(c->st[R_EXPL], 1, (sqlite3_int64)index);
    if (c->st[R_SCORES])
        sqlite3_bind_int64(c->st[R_SCORES], 1, (sqlite3_int64)index);
    return read_explanations(c, c->st[R_EXPL], c->st[R_SCORES], out, err);
}

int sae_store_get_all_explanations(sae_store_conn *c, sae_explanations *out, sae_error *err)
{
    return read_explanations(c, c->st[R_EXPL_ALL], c->st[R_SCORES_ALL], out, err);
}
