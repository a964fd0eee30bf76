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

#ifdef SAE_HAVE_FAISS
/* The graph's parameters: M 32 and ef 128 reach recall@10 >= 0.95 on the
 * decoders measured (docs/PERFORMANCE.md, "The widest SAEs"). */
static const sae_ann_params nb_ann = {.m = 32, .ef_construction = 128, .ef_search = 128};

/* Approximate neighbours into idx and cos (d_sae, k), in the exact path's
 * order; the rows the search left short of k are computed exactly. */
static int nb_approx(const float *w_dec, const float *inv, size_t d_sae, size_t d_in, size_t k,
                     uint32_t *idx, float *cos, sae_error *err)
{
    size_t k1 = k + 1, n_short = 0;
    int64_t *ai = malloc(d_sae * k1 * sizeof *ai);
    float *ac = malloc(d_sae * k1 * sizeof *ac);
    uint32_t *short_rows = NULL;
    nlists l = {.k = k, .idx = idx, .cos = cos};
    char msg[256];
    int rc = nl_init(&l, d_sae, err);
    if (!rc && (!ai || !ac))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
    if (!rc && sae_ann_neighbours(w_dec, d_sae, d_in, k, &nb_ann, ai, ac, msg, sizeof msg))
        rc = sae_error_set(err, SAE_ENOMEM, "%s", msg);
    for (size_t i = 0; i < d_sae && !rc; i++) {
        for (size_t j = 0; j < k1; j++) {
            int64_t g = ai[i * k1 + j];
            if (g >= 0 && (size_t)g != i && (size_t)g < d_sae)
                nl_offer(&l, i, (uint32_t)g, nb_clamp(ac[i * k1 + j]));
        }
        if (l.n[i] < k) /* ai's front is read already: it lists the short rows */
            ai[n_short++] = (int64_t)i;
    }
    if (!rc && n_short) {
        short_rows = malloc(n_short * sizeof *short_rows);
        uint32_t *si = malloc(n_short * k * sizeof *si);
        float *sc = malloc(n_short * k * sizeof *sc);
        if (!short_rows || !si || !sc)
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
        for (size_t s = 0; !rc && s < n_short; s++)
            short_rows[s] = (uint32_t)ai[s];
        if (!rc)
            rc = nb_exact_rows(w_dec, inv, d_sae, d_in, k, short_rows, n_short, si, sc, err);
        for (size_t s = 0; !rc && s < n_short; s++) {
            memcpy(idx + (size_t)short_rows[s] * k, si + s * k, k * sizeof *si);
            memcpy(cos + (size_t)short_rows[s] * k, sc + s * k, k * sizeof *sc);
        }
        free(si);
        free(sc);
    }
    free(short_rows);
    free(ai);
    free(ac);
    nl_free(&l);
    return rc;
}
#endif

int sae_neighbours_by(const float *w_dec, const float *dec_norm, size_t d_sae, size_t d_in,
                      size_t k, int method, uint64_t seed, uint32_t *idx, float *cos,
                      sae_nb_report *rep, sae_error *err)
{
    memset(rep, 0, sizeof *rep);
    rep->recall = -1;
#ifdef SAE_HAVE_FAISS
    if (method == SAE_NB_AUTO)
        method = d_sae > SAE_NB_EXACT_MAX ? SAE_NB_APPROX : SAE_NB_EXACT;
#else
    if (method == SAE_NB_APPROX)
        return sae_error_set(err, SAE_EINVAL,
                             "--neighbours-method approx: this build has no FAISS (install "
                             "libfaiss-dev and g++, then meson setup --reconfigure)");
    method = SAE_NB_EXACT;
#endif
    rep->method = method;
    if (method == SAE_NB_EXACT || k == 0)
        return sae_neighbours(w_dec, dec_norm, d_sae, d_in, k, idx, cos, err);
#ifdef SAE_HAVE_FAISS
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
        rc = nb_approx(w_dec, inv, d_sae, d_in, k, idx, cos, err);
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
#endif
}
