/* store_dash.c: a feature's dashboards read back (store.h): its logit
 * tables and histogram, its neuron tables (schema/002_dashboards.sql) and its
 * exact activation bars (schema/004_act_bars.sql), and the bars Neuronpedia
 * stores made of those or of the fixed histogram. An index without those
 * tables answers "not computed", not an error. */
#include "index/store_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index/index_hist.h"

_Static_assert(SAE_ACT_BARS == SAE_NP_HIST_BARS, "one bar count for both histograms");

/* Copies a blob of n little-endian 4-byte items (at most cap) from column
 * col of q into dst; false when its length is not a whole number of items
 * or too many. */
static bool blob_le32(sqlite3_stmt *q, int col, void *dst, size_t cap, size_t *n)
{
    int bytes = sqlite3_column_bytes(q, col);
    if (bytes < 0 || bytes % 4 || (size_t)bytes / 4 > cap)
        return false;
    *n = (size_t)bytes / 4;
    if (bytes)
        memcpy(dst, sqlite3_column_blob(q, col), (size_t)bytes);
    return true;
}

void sae_store_logits_free(sae_store_logits *l)
{
    if (!l)
        return;
    free(l->strings);
    memset(l, 0, sizeof *l);
}

double sae_store_logits_bar_value(const sae_store_logits *l, size_t i)
{
    double w = (l->hist_max - l->hist_min) / (double)l->n_bins;
    return round((l->hist_min + ((double)i + 0.5) * w) * 1e5) / 1e5;
}

/* Looks up the display strings of ids[0..n) into str/len, appending the bytes
 * to the arena *buf (size *used, capacity *cap); offsets are fixed up by the
 * caller once the arena stops moving. Unknown ids read as "". */
static int token_strings(sae_store_conn *c, const uint32_t *ids, size_t n, size_t *off,
                         size_t *len, char **buf, size_t *used, size_t *cap, sae_error *err)
{
    sqlite3_stmt *q = c->st[R_LOGIT_TOKEN];
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(q, 1, ids[i]);
        int r = sqlite3_step(q);
        const void *t = r == SQLITE_ROW ? sqlite3_column_text(q, 0) : NULL;
        size_t tl = t ? (size_t)sqlite3_column_bytes(q, 0) : 0;
        if (r != SQLITE_ROW && r != SQLITE_DONE) {
            done(q);
            return sae_store_fail(c->db, c->s->path, "reading logit tokens", err);
        }
        if (*used + tl + 1 > *cap) {
            size_t nc = (*used + tl + 1) * 2;
            char *nb = realloc(*buf, nc);
            if (!nb) {
                done(q);
                return sae_error_set(err, SAE_ENOMEM, "out of memory");
            }
            *buf = nb;
            *cap = nc;
        }
        if (tl)
            memcpy(*buf + *used, t, tl);
        (*buf)[*used + tl] = '\0';
        off[i] = *used;
        len[i] = tl;
        *used += tl + 1;
        done(q);
    }
    return 0;
}

int sae_store_get_logits(sae_store_conn *c, uint64_t index, sae_store_logits *out,
                         sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sae_store_logits l;
    memset(&l, 0, sizeof l);
    if (!info_of(c)->has_dashboards) {
        *out = l;
        return 0;
    }
    sqlite3_stmt *q = c->st[R_LOGITS];
    sqlite3_bind_int64(q, 1, (sqlite3_int64)index);
    int r = sqlite3_step(q);
    if (r == SQLITE_DONE) { /* tables present, logits not computed (--correlations only) */
        done(q);
        *out = l;
        return 0;
    }
    if (r != SQLITE_ROW) {
        done(q);
        return sae_store_fail(c->db, c->s->path, "reading logits", err);
    }
    size_t n_pv, n_nv;
    bool ok = blob_le32(q, 0, l.pos_ids, SAE_LOGIT_ROWS, &l.n_pos) &&
              blob_le32(q, 1, l.pos_values, SAE_LOGIT_ROWS, &n_pv) &&
              blob_le32(q, 2, l.neg_ids, SAE_LOGIT_ROWS, &l.n_neg) &&
              blob_le32(q, 3, l.neg_values, SAE_LOGIT_ROWS, &n_nv) &&
              blob_le32(q, 6, l.hist, SAE_LOGIT_BINS, &l.n_bins) && n_pv == l.n_pos &&
              n_nv == l.n_neg && l.n_bins > 0;
    l.hist_min = sqlite3_column_double(q, 4);
    l.hist_max = sqlite3_column_double(q, 5);
    done(q);
    if (!ok)
        return sae_error_set(err, SAE_EFORMAT, "%s: feature %" PRIu64 ": malformed logits row",
                             c->s->path, index);
    size_t off[2 * SAE_LOGIT_ROWS], used = 0, cap = 0;
    char *buf = NULL;
    if ((rc = token_strings(c, l.pos_ids, l.n_pos, off, l.pos_len, &buf, &used, &cap, err)) ||
        (rc = token_strings(c, l.neg_ids, l.n_neg, off + SAE_LOGIT_ROWS, l.neg_len, &buf, &used,
                            &cap, err))) {
        free(buf);
        return rc;
    }
    for (size_t i = 0; i < l.n_pos; i++)
        l.pos_str[i] = buf + off[i];
    for (size_t i = 0; i < l.n_neg; i++)
        l.neg_str[i] = buf + off[SAE_LOGIT_ROWS + i];
    l.strings = buf;
    l.computed = true;
    *out = l;
    return 0;
}

int sae_store_get_neuron_table(sae_store_conn *c, uint64_t index, sae_neuron_kind kind,
                               sae_store_neuron_table *out, sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sae_store_neuron_table t;
    memset(&t, 0, sizeof t);
    if (!info_of(c)->has_dashboards) {
        *out = t;
        return 0;
    }
    sqlite3_stmt *q = c->st[R_NEURON];
    sqlite3_bind_int64(q, 1, (sqlite3_int64)index * 2 + (sqlite3_int64)kind);
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        size_t nv, ne;
        bool ok = blob_le32(q, 0, t.indices, SAE_NEURON_ROWS, &t.n) &&
                  blob_le32(q, 1, t.values, SAE_NEURON_ROWS, &nv) &&
                  blob_le32(q, 2, t.extra, SAE_NEURON_ROWS, &ne) && nv == t.n && ne == t.n;
        done(q);
        if (!ok)
            return sae_error_set(err, SAE_EFORMAT,
                                 "%s: feature %" PRIu64 ": malformed neuron table", c->s->path,
                                 index);
        t.computed = true;
    } else {
        done(q);
        if (r != SQLITE_DONE)
            return sae_store_fail(c->db, c->s->path, "reading neuron tables", err);
    }
    *out = t;
    return 0;
}

int sae_store_get_act_bars(sae_store_conn *c, uint64_t index, sae_store_act_bars *out,
                           sae_error *err)
{
    int rc = check_index(c, index, err);
    if (rc)
        return rc;
    sae_store_act_bars a;
    memset(&a, 0, sizeof a);
    if (!info_of(c)->has_act_bars) {
        *out = a;
        return 0;
    }
    sqlite3_stmt *q = c->st[R_ACT_BARS];
    sqlite3_bind_int64(q, 1, (sqlite3_int64)index);
    int r = sqlite3_step(q);
    if (r == SQLITE_DONE) { /* the table without this feature: not computed */
        done(q);
        *out = a;
        return 0;
    }
    if (r != SQLITE_ROW) {
        done(q);
        return sae_store_fail(c->db, c->s->path, "reading activation bars", err);
    }
    a.act_min = (float)sqlite3_column_double(q, 0);
    a.act_max = (float)sqlite3_column_double(q, 1);
    int bytes = sqlite3_column_bytes(q, 2);
    const unsigned char *p = sqlite3_column_blob(q, 2);
    bool ok = bytes == 0 || (bytes == SAE_ACT_BARS * 8 && p);
    for (int i = 0; ok && i < bytes / 8; i++)
        for (int k = 0; k < 8; k++)
            a.heights[i] |= (uint64_t)p[8 * i + k] << (8 * k);
    a.n = ok ? (size_t)bytes / 8 : 0;
    done(q);
    if (!ok)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: feature %" PRIu64 ": malformed activation bars row",
                             c->s->path, index);
    a.computed = true;
    *out = a;
    return 0;
}

int sae_store_get_np_hist(sae_store_conn *c, uint64_t index, sae_store_np_hist *out,
                          sae_error *err)
{
    sae_store_act_bars a;
    sae_store_np_hist o;
    memset(&o, 0, sizeof o);
    int rc = sae_store_get_act_bars(c, index, &a, err);
    if (rc)
        return rc;
    if (a.computed) {
        o.exact = true;
        o.n = a.n;
        memcpy(o.heights, a.heights, sizeof o.heights);
        if (a.n)
            sae_np_bar_values(a.act_min, a.act_max, o.values);
        *out = o;
        return 0;
    }
    sae_store_feature f;
    sae_store_histogram h = {0};
    if ((rc = sae_store_get_feature(c, index, &f, err)) ||
        (rc = sae_store_get_histogram(c, index, &h, err)))
        return rc;
    sae_hist_linear(h.edges, h.counts, h.n, f.max_activation, SAE_ACT_BARS, o.heights, o.values);
    o.n = h.n && f.max_activation > 0 ? SAE_ACT_BARS : 0;
    sae_store_histogram_free(&h);
    *out = o;
    return 0;
}
