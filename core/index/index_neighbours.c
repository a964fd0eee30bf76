/* index_neighbours.c: every feature's decoder-cosine neighbours, blockwise
 * over pairs of row blocks, never a d_sae x d_sae matrix; or approximately,
 * through FAISS (index_ann.h), with recall@k measured against exact
 * neighbours of a seeded sample (indexer.h). */
#include "index/indexer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/clock.h"
#include "io/rng.h"
#ifdef SAE_HAVE_FAISS
#include "index/index_ann.h"
#endif

/* Neighbour lists being built: idx/cos (d_sae, k) sorted best first, how many
 * each holds, and the cosine a newcomer must reach once a list is full. */
typedef struct nlists {
    size_t k;
    uint32_t *idx;
    float *cos;
    uint32_t *n;            /* (d_sae) */
    float *thr;             /* (d_sae) -inf until full */
} nlists;

/* Offers neighbour j with cosine v to feature i's list (cosine descending,
 * ties by index ascending). */
static void nl_offer(nlists *l, size_t i, uint32_t j, float v)
{
    uint32_t *ix = l->idx + i * l->k;
    float *cs = l->cos + i * l->k;
    size_t n = l->n[i], at;
    if (n == l->k) {
        at = n - 1;
        if (!(v > cs[at] || (v == cs[at] && j < ix[at])))
            return;
    } else {
        at = n++;
    }
    while (at > 0 && (v > cs[at - 1] || (v == cs[at - 1] && j < ix[at - 1]))) {
        cs[at] = cs[at - 1];
        ix[at] = ix[at - 1];
        at--;
    }
    cs[at] = v;
    ix[at] = j;
    l->n[i] = (uint32_t)n;
    if (n == l->k)
        l->thr[i] = cs[n - 1];
}

/* A decoder cosine as the lists hold it: NaN as 0, clamped to [-1, 1]. */
static float nb_clamp(float v)
{
    if (isnan(v))
        return 0.0f;
    return v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
}

/* Allocates l's bookkeeping for n lists of l->k (idx and cos are the
 * caller's); every list starts empty. */
static int nl_init(nlists *l, size_t n, sae_error *err)
{
    l->n = calloc(n ? n : 1, sizeof *l->n);
    l->thr = malloc((n ? n : 1) * sizeof *l->thr);
    if (!l->n || !l->thr)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
    for (size_t i = 0; i < n; i++)
        l->thr[i] = -INFINITY;
    return 0;
}

/* Frees what nl_init allocated. */
static void nl_free(nlists *l)
{
    free(l->n);
    free(l->thr);
}

/* The reciprocal decoder norms (0 for a row of norm 0); NULL when out of memory. */
static float *nb_inv_norms(const float *dec_norm, size_t d_sae)
{
    float *inv = malloc((d_sae ? d_sae : 1) * sizeof *inv);
    for (size_t i = 0; inv && i < d_sae; i++)
        inv[i] = dec_norm[i] > 0 ? 1.0f / dec_norm[i] : 0.0f;
    return inv;
}

#ifdef SAE_HAVE_FAISS
/* Exact neighbours of the n features rows[] only (self excluded), into idx
 * and cos (n, k): the rows' block against every block of W_dec. Serves the
 * recall sample and the rows an approximate search left short. */
static int nb_exact_rows(const float *w_dec, const float *inv, size_t d_sae, size_t d_in,
                         size_t k, const uint32_t *rows, size_t n, uint32_t *idx, float *cos,
                         sae_error *err)
{
    const size_t bs = 256, bj = 1024;
    nlists l = {.k = k, .idx = idx, .cos = cos};
    float *q = malloc(bs * d_in * sizeof *q), *c = malloc(bs * bj * sizeof *c);
    int rc = nl_init(&l, n, err);
    if (!rc && (!q || !c))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
    for (size_t i0 = 0; i0 < n && !rc; i0 += bs) {
        size_t ni = n - i0 < bs ? n - i0 : bs;
        for (size_t i = 0; i < ni; i++)
            memcpy(q + i * d_in, w_dec + (size_t)rows[i0 + i] * d_in, d_in * sizeof *q);
        for (size_t j0 = 0; j0 < d_sae; j0 += bj) {
            size_t nj = d_sae - j0 < bj ? d_sae - j0 : bj;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ni, (int)nj, (int)d_in,
                        1.0f, q, (int)d_in, w_dec + j0 * d_in, (int)d_in, 0.0f, c, (int)nj);
            for (size_t i = 0; i < ni; i++) {
                size_t gi = rows[i0 + i];
                for (size_t j = 0; j < nj; j++) {
                    if (j0 + j == gi)
                        continue;
                    float v = nb_clamp(c[i * nj + j] * inv[gi] * inv[j0 + j]);
                    if (v >= l.thr[i0 + i])
                        nl_offer(&l, i0 + i, (uint32_t)(j0 + j), v);
                }
            }
        }
    }
    free(q);
    free(c);
    nl_free(&l);
    return rc;
}

#endif

int sae_neighbours(const float *w_dec, const float *dec_norm, size_t d_sae, size_t d_in,
                   size_t k, uint32_t *idx, float *cos, sae_error *err)
{
    if (k == 0)
        return 0;
    if (k >= d_sae || d_in > INT32_MAX || d_sae > INT32_MAX)
        return sae_error_set(err, SAE_EINVAL, "neighbours: k %zu needs d_sae > k", k);
    size_t bs = d_sae < 1024 ? d_sae : 1024;
    float *c = malloc(bs * bs * sizeof *c), *inv = nb_inv_norms(dec_norm, d_sae);
    nlists l = {.k = k, .idx = idx, .cos = cos};
    int rc = nl_init(&l, d_sae, err);
    if (!rc && (!c || !inv))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
    if (rc)
        goto out;
    /* Each pair of row blocks once (J >= I): C = W_I W_J^T, and every cosine
     * serves both of its features, so the two lists agree bit for bit. */
    for (size_t i0 = 0; i0 < d_sae; i0 += bs) {
        size_t ni = d_sae - i0 < bs ? d_sae - i0 : bs;
        for (size_t j0 = i0; j0 < d_sae; j0 += bs) {
            size_t nj = d_sae - j0 < bs ? d_sae - j0 : bs;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ni, (int)nj, (int)d_in,
                        1.0f, w_dec + i0 * d_in, (int)d_in, w_dec + j0 * d_in, (int)d_in, 0.0f,
                        c, (int)nj);
            for (size_t i = 0; i < ni; i++) {
                size_t gi = i0 + i;
                const float *row = c + i * nj;
                for (size_t j = j0 == i0 ? i + 1 : 0; j < nj; j++) {
                    size_t gj = j0 + j;
                    float v = nb_clamp(row[j] * inv[gi] * inv[gj]);
                    if (v >= l.thr[gi])
                        nl_offer(&l, gi, (uint32_t)gj, v);
                    if (v >= l.thr[gj])
                        nl_offer(&l, gj, (uint32_t)gi, v);
                }
            }
        }
    }
out:
    free(c);
    free(inv);
    nl_free(&l);
    return rc;
}


#ifdef SAE_HAVE_FAISS
/* A seeded sample of min(SAE_NB_RECALL_SAMPLE, d_sae) distinct features,
 * ascending (a partial Fisher-Yates over a virtual 0..d_sae-1 would need
 * d_sae words; rejection on a sorted set of at most 1000 is cheap). */
static uint32_t *nb_sample(size_t d_sae, uint64_t seed, size_t *n)
{
    size_t want = d_sae < SAE_NB_RECALL_SAMPLE ? d_sae : SAE_NB_RECALL_SAMPLE, have = 0;
    uint32_t *s = malloc((want ? want : 1) * sizeof *s);
    sae_rng r;
    sae_rng_seed(&r, seed ^ 0x6e65696768626f72ull);
    while (s && have < want) {
        uint32_t v = (uint32_t)sae_rng_below(&r, d_sae);
        size_t at = have;
        while (at > 0 && s[at - 1] > v)
            at--;
        if (at > 0 && s[at - 1] == v)
            continue;
        memmove(s + at + 1, s + at, (have - at) * sizeof *s);
        s[at] = v;
        have++;
    }
    *n = want;
    return s;
}

/* recall@k of idx (d_sae, k) against exact lists ex (n, k) of features rows[]:
 * the fraction of exact neighbours the approximate lists hold. */
static double nb_recall(const uint32_t *idx, const uint32_t *rows, size_t n, size_t k,
                        const uint32_t *ex)
{
    size_t hit = 0;
    for (size_t s = 0; s < n; s++) {
        const uint32_t *a = idx + (size_t)rows[s] * k;
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++)
                if (a[j] == ex[s * k + i]) {
                    hit++;
                    break;
                }
    }
    return n && k ? (double)hit / (double)(n * k) : 1.0;
}

/* The inverted lists: nlist about 8 sqrt(d_sae) clusters (4096 at 262k,
 * 8192 at 1M; at most d_sae / SAE_ANN_TRAIN_PER, so each centroid has its
 * sampled rows), each row probing NB_NPROBE: many small lists, so that a row's
 * near neighbours pull it towards the lists that hold them (index_ann.h), and
 * a fixed count of probes, as a group of neighbours spans a few lists however
 * many there are. 2 sqrt(d_sae) lists of 64 sampled rows fell to recall@10
 * 0.88 at 524k with 12 or 17 probes; measured recall@10 in
 * docs/PERFORMANCE.md ("The widest SAEs"). */
#define NB_NLIST_PER_ROOT 8
#define NB_NPROBE 16

/* Rows grouped by key: off (n_keys + 1) and rows, a counting sort of the
 * (row, key) pairs keys[i * per + p] (a key repeated within a row counted
 * once). NULL fields when out of memory. */
typedef struct nb_groups {
    size_t *off;
    uint32_t *rows;
} nb_groups;

/* Groups rows 0..n-1 by their first `use` of `per` keys each (see nb_groups). */
static int nb_group(const uint32_t *keys, size_t n, size_t per, size_t use, size_t n_keys,
                    nb_groups *g)
{
    g->off = calloc(n_keys + 1, sizeof *g->off);
    g->rows = malloc((n * use > 0 ? n * use : 1) * sizeof *g->rows);
    if (!g->off || !g->rows)
        return -1;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++)
            for (size_t p = 0; p < use; p++) {
                uint32_t c = keys[i * per + p];
                bool seen = false;
                for (size_t q = 0; q < p; q++)
                    seen |= keys[i * per + q] == c;
                if (seen)
                    continue;
                if (pass == 0)
                    g->off[c + 1]++;
                else
                    g->rows[g->off[c]++] = (uint32_t)i;
            }
        if (pass == 0)
            for (size_t c = 0; c < n_keys; c++)
                g->off[c + 1] += g->off[c];
        else
            for (size_t c = n_keys; c > 0; c--)
                g->off[c] = g->off[c - 1];
    }
    g->off[0] = 0;
    return 0;
}

/* Copies rows[0..n) of w (d_in wide) into out, contiguous. */
static void nb_gather(const float *w, size_t d_in, const uint32_t *rows, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * d_in, w + (size_t)rows[i] * d_in, d_in * sizeof *out);
}

/* Approximate neighbours into idx and cos (d_sae, k), in the exact path's
 * order: each row against the members (rows whose nearest centroid it is) of
 * the clusters it probes, by cblas_sgemm; every pair is offered at most once
 * (a member belongs to one cluster). Rows left short of k are computed exactly. */
static int nb_approx(const float *w_dec, const float *inv, size_t d_sae, size_t d_in, size_t k,
                     uint64_t seed, uint32_t *idx, float *cos, sae_error *err)
{
    const size_t bq = 256, bm = 1024;
    size_t nlist = (size_t)(NB_NLIST_PER_ROOT * sqrt((double)d_sae)), n_short = 0;
    nlist = nlist > d_sae / SAE_ANN_TRAIN_PER ? d_sae / SAE_ANN_TRAIN_PER : nlist;
    nlist = nlist < 1 ? 1 : nlist;
    size_t nprobe = NB_NPROBE < nlist ? NB_NPROBE : nlist;
    uint32_t *probe = malloc(d_sae * nprobe * sizeof *probe), *short_rows = NULL;
    float *q = malloc(bq * d_in * sizeof *q), *m = malloc(bm * d_in * sizeof *m);
    float *c = malloc(bq * bm * sizeof *c);
    nb_groups mem = {0}, qry = {0};
    nlists l = {.k = k, .idx = idx, .cos = cos};
    char msg[256];
    int rc = nl_init(&l, d_sae, err);
    if (!rc && (!probe || !q || !m || !c))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
    if (!rc && sae_ann_probe(w_dec, d_sae, d_in, nlist, nprobe, seed, probe, msg, sizeof msg))
        rc = sae_error_set(err, SAE_ENOMEM, "%s", msg);
    if (!rc && (nb_group(probe, d_sae, nprobe, 1, nlist, &mem) ||
                nb_group(probe, d_sae, nprobe, nprobe, nlist, &qry)))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
    for (size_t cl = 0; cl < nlist && !rc; cl++) {
        const uint32_t *mr = mem.rows + mem.off[cl], *qr = qry.rows + qry.off[cl];
        size_t n_m = mem.off[cl + 1] - mem.off[cl], n_q = qry.off[cl + 1] - qry.off[cl];
        for (size_t m0 = 0; m0 < n_m; m0 += bm) {
            size_t nm = n_m - m0 < bm ? n_m - m0 : bm;
            nb_gather(w_dec, d_in, mr + m0, nm, m);
            for (size_t q0 = 0; q0 < n_q; q0 += bq) {
                size_t nq = n_q - q0 < bq ? n_q - q0 : bq;
                nb_gather(w_dec, d_in, qr + q0, nq, q);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nm, (int)d_in,
                            1.0f, q, (int)d_in, m, (int)d_in, 0.0f, c, (int)nm);
                for (size_t i = 0; i < nq; i++) {
                    uint32_t gi = qr[q0 + i];
                    for (size_t j = 0; j < nm; j++) {
                        uint32_t gj = mr[m0 + j];
                        float v = nb_clamp(c[i * nm + j] * inv[gi] * inv[gj]);
                        if (gj != gi && v >= l.thr[gi])
                            nl_offer(&l, gi, gj, v);
                    }
                }
            }
        }
    }
    for (size_t i = 0; i < d_sae && !rc; i++)
        if (l.n[i] < k) /* probe's front is read already: it lists the short rows */
            probe[n_short++] = (uint32_t)i;
    if (!rc && n_short) {
        short_rows = probe;
        uint32_t *si = malloc(n_short * k * sizeof *si);
        float *sc = malloc(n_short * k * sizeof *sc);
        if (!si || !sc)
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
        if (!rc)
            rc = nb_exact_rows(w_dec, inv, d_sae, d_in, k, short_rows, n_short, si, sc, err);
        for (size_t s = 0; !rc && s < n_short; s++) {
            memcpy(idx + (size_t)short_rows[s] * k, si + s * k, k * sizeof *si);
            memcpy(cos + (size_t)short_rows[s] * k, sc + s * k, k * sizeof *sc);
        }
        free(si);
        free(sc);
    }
    free(probe);
    free(q);
    free(m);
    free(c);
    free(mem.off);
    free(mem.rows);
    free(qry.off);
    free(qry.rows);
    nl_free(&l);
    return rc;
}
/* The approximate neighbours (nb_approx) and their recall@k on a seeded
 * sample of features against nb_exact_rows, into rep. */
static int nb_approx_measured(const float *w_dec, const float *dec_norm, size_t d_sae,
                              size_t d_in, size_t k, uint64_t seed, uint32_t *idx, float *cos,
                              sae_nb_report *rep, sae_error *err)
{
    if (k >= d_sae || d_in > INT32_MAX || d_sae > INT32_MAX)
        return sae_error_set(err, SAE_EINVAL, "neighbours: k %zu needs d_sae > k", k);
    double t0 = sae_clock_s();
    size_t n = 0;
    float *inv = nb_inv_norms(dec_norm, d_sae), *ec = NULL;
    uint32_t *rows = NULL, *ei = NULL;
    int rc = 0;
    if (!inv)
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
    if (!rc)
        rc = nb_approx(w_dec, inv, d_sae, d_in, k, seed, idx, cos, err);
    double t1 = sae_clock_s();
    if (!rc && (!(rows = nb_sample(d_sae, seed, &n)) || !(ei = malloc(n * k * sizeof *ei)) ||
                !(ec = malloc(n * k * sizeof *ec))))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
    if (!rc && !(rc = nb_exact_rows(w_dec, inv, d_sae, d_in, k, rows, n, ei, ec, err))) {
        rep->recall = nb_recall(idx, rows, n, k, ei);
        rep->sampled = n;
    }
    rep->approx_s = t1 - t0;
    rep->recall_s = sae_clock_s() - t1;
    free(inv);
    free(rows);
    free(ei);
    free(ec);
    return rc;
}
#endif

int sae_neighbours_by(const float *w_dec, const float *dec_norm, size_t d_sae, size_t d_in,
                      size_t k, int method, uint64_t seed, uint32_t *idx, float *cos,
                      sae_nb_report *rep, sae_error *err)
{
    memset(rep, 0, sizeof *rep);
    rep->recall = -1;
    if (method == SAE_NB_AUTO) {
#ifdef SAE_HAVE_FAISS
        method = d_sae > SAE_NB_EXACT_MAX ? SAE_NB_APPROX : SAE_NB_EXACT;
#else
        method = SAE_NB_EXACT;
#endif
    }
    rep->method = method;
    if (method == SAE_NB_EXACT || k == 0)
        return sae_neighbours(w_dec, dec_norm, d_sae, d_in, k, idx, cos, err);
#ifdef SAE_HAVE_FAISS
    return nb_approx_measured(w_dec, dec_norm, d_sae, d_in, k, seed, idx, cos, rep, err);
#else
    (void)seed;
    return sae_error_set(err, SAE_EINVAL,
                         "--neighbours-method approx: this build has no FAISS (install "
                         "libfaiss-dev and g++, then meson setup --reconfigure)");
#endif
}
