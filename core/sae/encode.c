/* encode.c: the fast encode and decode kernels (encode.h).
 *
 * sae_encode works block by block. For each block of up to block_rows rows it
 * normalises the rows into the workspace's (block, d_in) buffer, runs ONE
 * cblas_sgemm (cblas_sgemv for a single row; for F16/BF16 weights the
 * model's kernel, kernel.h) into the (block, d_sae) dense
 * buffer, then makes one fused pass per row: bias, activation and selection
 * together, collecting only the active (index, value) pairs. Reconstruction
 * and metrics come from that full active list; the caller's top_k/threshold
 * options only filter what is appended to the output. The naive oracle these
 * kernels are tested against is reference.c, written separately. */
#include "sae/encode.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One active feature of the row being finished. */
typedef struct sae_pair {
    float v;
    uint32_t i;
} sae_pair;

/* Scratch for one thread; everything is sized for one model's shapes and
 * owned by the workspace. Concurrent sae_encode calls are safe as long as each
 * uses its own workspace (the model is only read). */
struct sae_workspace {
    size_t d_in, d_sae, block_rows; /* the widest model it serves; strides are the model's */
    float *xn;           /* (block_rows, d_in) normalised rows minus b_dec */
    float *dense;        /* (block_rows, d_sae) x'·W_enc, before any bias */
    sae_row_norm *norms; /* (block_rows) each row's normalisation */
    sae_pair *pairs;     /* (d_sae) the current row's active features */
    float *xhat;         /* (d_in) reconstruction when the caller gave no recon */
    float *cmax;         /* (3 * ceil(d_sae / 16)) topk: chunk maxima and selection scratch */
    void *scratch;       /* the 16-bit kernel's packed input (sae_gemm_half_scratch), or NULL */
};

/* ---- sparse rows ---- */

void sae_sparse_init(sae_sparse *s)
{
    memset(s, 0, sizeof *s);
}

void sae_sparse_free(sae_sparse *s)
{
    free(s->row_ptr);
    free(s->idx);
    free(s->val);
    sae_sparse_init(s);
}

void sae_sparse_reset(sae_sparse *s)
{
    s->n_rows = 0;
    s->nnz = 0;
    if (s->row_ptr)
        s->row_ptr[0] = 0;
}

/* Makes room for `rows` more rows and `nnz` more entries, growing
 * geometrically. Entries are capped at UINT32_MAX because row_ptr is 32-bit. */
static int sparse_reserve(sae_sparse *s, size_t rows, size_t nnz, sae_error *err)
{
    size_t need_rows, need_nnz;
    if (sae_add_size(s->n_rows, rows, &need_rows) || sae_add_size(s->nnz, nnz, &need_nnz) ||
        need_nnz > UINT32_MAX || need_rows >= SIZE_MAX / sizeof(uint32_t) - 1)
        return sae_error_set(err, SAE_ENOMEM, "sparse output: more than %u entries",
                             (unsigned)UINT32_MAX);
    if (!s->row_ptr || need_rows > s->rows_cap) {
        size_t cap = s->rows_cap ? s->rows_cap : 64;
        while (cap < need_rows)
            cap = cap > SIZE_MAX / 8 ? need_rows : cap * 2;
        uint32_t *rp = realloc(s->row_ptr, (cap + 1) * sizeof *rp);
        if (!rp)
            return sae_error_set(err, SAE_ENOMEM, "out of memory for %zu sparse rows", cap);
        if (!s->row_ptr)
            rp[0] = 0;
        s->row_ptr = rp;
        s->rows_cap = cap;
    }
    /* allocated on the first push even when it is empty, so that after any
     * push idx/val are never NULL (callers may then form idx + row_ptr[r]) */
    if (need_nnz > s->cap || !s->idx || !s->val) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < need_nnz)
            cap = cap > UINT32_MAX / 2 ? need_nnz : cap * 2;
        uint32_t *idx = realloc(s->idx, cap * sizeof *idx);
        if (!idx)
            return sae_error_set(err, SAE_ENOMEM, "out of memory for %zu sparse entries", cap);
        s->idx = idx;
        float *val = realloc(s->val, cap * sizeof *val);
        if (!val)
            return sae_error_set(err, SAE_ENOMEM, "out of memory for %zu sparse entries", cap);
        s->val = val;
        s->cap = cap;
    }
    return 0;
}

int sae_sparse_push_row(sae_sparse *s, const uint32_t *idx, const float *val, size_t n,
                        sae_error *err)
{
    int rc = sparse_reserve(s, 1, n, err);
    if (rc)
        return rc;
    if (n) {
        memcpy(s->idx + s->nnz, idx, n * sizeof *idx);
        memcpy(s->val + s->nnz, val, n * sizeof *val);
    }
    s->nnz += n;
    s->n_rows++;
    s->row_ptr[s->n_rows] = (uint32_t)s->nnz;
    return 0;
}

/* Appends the pairs as one row, in the order given. */
static int sparse_push_pairs(sae_sparse *s, const sae_pair *p, size_t n, sae_error *err)
{
    int rc = sparse_reserve(s, 1, n, err);
    if (rc)
        return rc;
    for (size_t j = 0; j < n; j++) {
        s->idx[s->nnz + j] = p[j].i;
        s->val[s->nnz + j] = p[j].v;
    }
    s->nnz += n;
    s->n_rows++;
    s->row_ptr[s->n_rows] = (uint32_t)s->nnz;
    return 0;
}

/* ---- normalisation and metrics ---- */

void sae_row_norm_compute(const sae_model *m, const float *x, sae_row_norm *out)
{
    size_t n = m->d_in;
    sae_row_norm r = {0.0, 1.0, 1.0};
    switch (m->norm) {
    case SAE_NORM_NONE:
        break;
    case SAE_NORM_CONSTANT_NORM_RESCALE: {
        double ss = 0;
        for (size_t j = 0; j < n; j++)
            ss += (double)x[j] * x[j];
        /* A zero row has no direction to rescale: c = 1 leaves it as it is. */
        double c = ss > 0 ? sqrt((double)n) / sqrt(ss) : 1.0;
        r.in_scale = c;
        r.out_scale = 1.0 / c;
        break;
    }
    case SAE_NORM_LAYER_NORM: {
        double mu = 0;
        for (size_t j = 0; j < n; j++)
            mu += x[j];
        mu /= (double)n;
        double ss = 0;
        for (size_t j = 0; j < n; j++)
            ss += ((double)x[j] - mu) * ((double)x[j] - mu);
        /* The unbiased estimate is undefined for one element; take sigma = 0. */
        double sigma = n > 1 ? sqrt(ss / (double)(n - 1)) : 0.0;
        r.shift = mu;
        r.in_scale = 1.0 / (sigma + 1e-5);
        r.out_scale = sigma;
        break;
    }
    case SAE_NORM_EXPECTED_AVERAGE_ONLY_IN:
        r.in_scale = m->norm_scaling_factor;
        r.out_scale = 1.0 / m->norm_scaling_factor;
        break;
    }
    *out = r;
}

void sae_metrics_row(const float *x, const float *xhat, size_t d_in, sae_row_metrics *out)
{
    double mean = 0;
    for (size_t j = 0; j < d_in; j++)
        mean += x[j];
    mean /= (double)d_in;
    double res = 0, var = 0, xx = 0, hh = 0, xh = 0;
    for (size_t j = 0; j < d_in; j++) {
        double a = x[j], b = xhat[j];
        res += (a - b) * (a - b);
        var += (a - mean) * (a - mean);
        xx += a * a;
        hh += b * b;
        xh += a * b;
    }
    out->mse = res / (double)d_in;
    out->fvu = var > 0 ? res / var : (res > 0 ? 1.0 : 0.0);
    out->cosine = xx > 0 && hh > 0 ? xh / (sqrt(xx) * sqrt(hh)) : 0.0;
}

/* ---- workspace ---- */

sae_workspace *sae_workspace_new(const sae_model *m, size_t block_rows)
{
    return sae_workspace_new_dims(m->d_in, m->d_sae, block_rows);
}

bool sae_workspace_fits(const sae_workspace *ws, const sae_model *m)
{
    return ws && ws->d_in >= m->d_in && ws->d_sae >= m->d_sae;
}

sae_workspace *sae_workspace_new_dims(size_t d_in, size_t d_sae, size_t block_rows)
{
    if (!block_rows)
        block_rows = SAE_ENCODE_DEFAULT_BLOCK_ROWS;
    size_t n_xn, n_dense;
    if (sae_mul_size(block_rows, d_in, &n_xn) || sae_mul_size(block_rows, d_sae, &n_dense) ||
        n_dense > SIZE_MAX / sizeof(float) || n_xn > SIZE_MAX / sizeof(float) ||
        d_sae > SIZE_MAX / sizeof(sae_pair) || block_rows > INT32_MAX)
        return NULL; /* block_rows is a BLAS int */
    sae_workspace *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    ws->d_in = d_in;
    ws->d_sae = d_sae;
    ws->block_rows = block_rows;
    ws->xn = malloc(n_xn * sizeof *ws->xn);
    ws->dense = malloc(n_dense * sizeof *ws->dense);
    ws->norms = malloc(block_rows * sizeof *ws->norms);
    ws->pairs = malloc(d_sae * sizeof *ws->pairs);
    ws->xhat = malloc(d_in * sizeof *ws->xhat);
    ws->cmax = malloc(3 * ((d_sae + 15) / 16) * sizeof *ws->cmax);
    /* A workspace serves any model no wider than itself (saed shares them
     * across SAEs), so it holds the scratch of the best kernel a 16-bit
     * model could run on this CPU, SAE_KERNEL's cap aside (a model may be
     * given another kernel than the capped pick; only avx512-bf16 needs
     * any). */
    size_t scratch = sae_gemm_half_scratch(sae_kernel_pick_capped(SAE_DT_BF16, true, true),
                                           block_rows, d_in);
    if (scratch && posix_memalign(&ws->scratch, 64, scratch))
        ws->scratch = NULL;
    if (!ws->xn || !ws->dense || !ws->norms || !ws->pairs || !ws->xhat || !ws->cmax ||
        (scratch && !ws->scratch)) {
        sae_workspace_free(ws);
        return NULL;
    }
    return ws;
}

void sae_workspace_free(sae_workspace *ws)
{
    if (!ws)
        return;
    free(ws->xn);
    free(ws->dense);
    free(ws->norms);
    free(ws->pairs);
    free(ws->xhat);
    free(ws->cmax);
    free(ws->scratch);
    free(ws);
}

/* ---- ordering and selection of (value, index) pairs ---- */

/* a ranks before b: larger value first, then lower index. */
static inline int pair_before(sae_pair a, sae_pair b)
{
    return a.v > b.v || (a.v == b.v && a.i < b.i);
}

/* Restores the heap property below slot `at` of a heap whose root is the pair
 * ranking last (so it is the one to evict). */
static void heap_sift_down(sae_pair *h, size_t n, size_t at)
{
    for (;;) {
        size_t l = 2 * at + 1, r = l + 1, worst = at;
        if (l < n && pair_before(h[worst], h[l]))
            worst = l;
        if (r < n && pair_before(h[worst], h[r]))
            worst = r;
        if (worst == at)
            return;
        sae_pair t = h[at];
        h[at] = h[worst];
        h[worst] = t;
        at = worst;
    }
}

/* Sorts p[0..n) into pair_before order (best first). A row's active list is
 * short (l0, or top_k after select_first_k), so an inlined insertion sort
 * takes it; a long one (an SAE with a large l0 and no top_k) is heap-sorted
 * in place. Both beat qsort, whose comparison through a function pointer
 * cost about 5 % of a streamed encode at d_sae 2048. */
static void sort_pairs(sae_pair *p, size_t n)
{
    if (n <= 64) {
        for (size_t i = 1; i < n; i++) {
            sae_pair t = p[i];
            size_t j = i;
            for (; j > 0 && pair_before(t, p[j - 1]); j--)
                p[j] = p[j - 1];
            p[j] = t;
        }
        return;
    }
    for (size_t i = n / 2; i-- > 0;)
        heap_sift_down(p, n, i);
    for (size_t end = n - 1; end > 0; end--) { /* the root ranks last of p[0..end] */
        sae_pair t = p[0];
        p[0] = p[end];
        p[end] = t;
        heap_sift_down(p, end, 0);
    }
}

/* Moves the k pairs ranking first (pair_before order) of p[0..n) into p[0..k),
 * in no particular order: a k-heap over the rest, O(n log k). Needs k <= n. */
static void select_first_k(sae_pair *p, size_t n, size_t k)
{
    if (k == 0 || k >= n)
        return;
    for (size_t i = k / 2; i-- > 0;)
        heap_sift_down(p, k, i);
    for (size_t j = k; j < n; j++) {
        if (pair_before(p[j], p[0])) {
            p[0] = p[j];
            heap_sift_down(p, k, 0);
        }
    }
}

/* ---- the fused per-row pass ---- */

/* The fused pass tests 16 features at a time with 4-float vectors (the
 * GCC/Clang vector extension: SSE on any x86-64, NEON on arm64) and only
 * looks at the features of a chunk where something fired. Most chunks have
 * nothing active (l0 << d_sae), so the pass costs about one read of the
 * dense row. memcpy loads are unaligned-safe and compile to one load. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline bool any4(v4i m)
{
    return (m[0] | m[1] | m[2] | m[3]) != 0;
}

/* Standard: f = ReLU(pre + b_enc). */
static size_t pass_standard(const float *d, const float *b, size_t n, sae_pair *out)
{
    const v4f zero = {0, 0, 0, 0};
    size_t cnt = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        v4i m = (load4(d + j) + load4(b + j)) > zero;
        m |= (load4(d + j + 4) + load4(b + j + 4)) > zero;
        m |= (load4(d + j + 8) + load4(b + j + 8)) > zero;
        m |= (load4(d + j + 12) + load4(b + j + 12)) > zero;
        if (!any4(m))
            continue;
        for (size_t t = j; t < j + 16; t++) {
            float v = d[t] + b[t];
            if (v > 0.0f)
                out[cnt++] = (sae_pair){v, (uint32_t)t};
        }
    }
    for (; j < n; j++) {
        float v = d[j] + b[j];
        if (v > 0.0f)
            out[cnt++] = (sae_pair){v, (uint32_t)j};
    }
    return cnt;
}

/* JumpReLU: f = ReLU(pre)·[pre > threshold], strictly greater. */
static size_t pass_jumprelu(const float *d, const float *b, const float *th, size_t n,
                            sae_pair *out)
{
    const v4f zero = {0, 0, 0, 0};
    size_t cnt = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        v4i m = {0, 0, 0, 0};
        for (size_t t = j; t < j + 16; t += 4) {
            v4f v = load4(d + t) + load4(b + t);
            m |= (v > zero) & (v > load4(th + t));
        }
        if (!any4(m))
            continue;
        for (size_t t = j; t < j + 16; t++) {
            float v = d[t] + b[t];
            if (v > 0.0f && v > th[t])
                out[cnt++] = (sae_pair){v, (uint32_t)t};
        }
    }
    for (; j < n; j++) {
        float v = d[j] + b[j];
        if (v > 0.0f && v > th[j])
            out[cnt++] = (sae_pair){v, (uint32_t)j};
    }
    return cnt;
}

/* Gated: f = [pre + b_gate > 0]·ReLU(pre·exp(r_mag) + b_mag), pre = x'·W_enc
 * from the single GEMM (x'·(W_enc ⊙ exp(r_mag)) is that column scaled). */
static size_t pass_gated(const float *d, const float *bg, const float *er, const float *bm,
                         size_t n, sae_pair *out)
{
    const v4f zero = {0, 0, 0, 0};
    size_t cnt = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        v4i m = {0, 0, 0, 0};
        for (size_t t = j; t < j + 16; t += 4) {
            v4f p = load4(d + t);
            m |= (p + load4(bg + t) > zero) & (p * load4(er + t) + load4(bm + t) > zero);
        }
        if (!any4(m))
            continue;
        for (size_t t = j; t < j + 16; t++) {
            float mag = d[t] * er[t] + bm[t];
            if (d[t] + bg[t] > 0.0f && mag > 0.0f)
                out[cnt++] = (sae_pair){mag, (uint32_t)t};
        }
    }
    for (; j < n; j++) {
        float mag = d[j] * er[j] + bm[j];
        if (d[j] + bg[j] > 0.0f && mag > 0.0f)
            out[cnt++] = (sae_pair){mag, (uint32_t)j};
    }
    return cnt;
}

/* ---- topk selection ---- */

/* The k-th largest of a (n floats, 1 <= k <= n); a and tmp (n each) are
 * scratch. Quickselect whose partition is branch-free (each value goes to
 * the front or the back of the other buffer by a conditional move), because
 * on random data a branching partition mispredicts half the time and costs
 * more than the rest of the row. Values equal to the pivot are split off in a
 * second branch-free pass, so long runs of ties still shrink the range. */
static float kth_largest(float *a, float *tmp, size_t n, size_t k)
{
    while (n > 1) {
        float x = a[0], y = a[n / 2], z = a[n - 1];
        float p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        size_t g = 0, l = n;
        for (size_t i = 0; i < n; i++) {
            float v = a[i];
            size_t gt = v > p;
            size_t dst = gt ? g : l - 1;
            tmp[dst] = v;
            g += gt;
            l -= 1 - gt;
        }
        if (k <= g) { /* within the values above the pivot */
            float *t = a;
            a = tmp;
            tmp = t;
            n = g;
            continue;
        }
        size_t e = 0, m = 0; /* the rest: equal to the pivot, or below it */
        for (size_t i = g; i < n; i++) {
            float v = tmp[i];
            size_t eq = v == p;
            a[m] = v;
            m += 1 - eq;
            e += eq;
        }
        if (k <= g + e)
            return p;
        k -= g + e;
        n = m;
    }
    return a[0];
}

/* Elementwise maximum of two vectors, by mask (no ?: on vectors in C). */
static inline v4f max4(v4f a, v4f b)
{
    v4i m = a > b;
    return (v4f)(((v4i)a & m) | ((v4i)b & ~m));
}

/* TopK: v = pre (times ||W_dec,i|| when rescaling); the k largest v survive,
 * ties to the lower index, then ReLU.
 *
 * One vectorised pass takes the maximum of every 16-feature chunk. The k-th
 * largest chunk maximum t is a lower bound of the k-th largest v (k chunks
 * each hold a value >= t), so the top k are all among the values >= t, and
 * those can only sit in chunks whose maximum is >= t (about k chunks). The
 * candidates (typically a little over k) are then narrowed to the k first in
 * (value desc, index asc) order by a k-heap. Cost: one read of the row, a
 * selection over d_sae/16 maxima, and work on the candidates only, with no
 * full sort. With no more chunks than k, every value is a candidate. out
 * holds d_sae pairs; cmax is scratch of 3·ceil(n/16) floats. The vector and
 * scalar forms of v do the same two IEEE operations, so they agree exactly. */
static size_t pass_topk(const float *d, const float *b, const float *scale, size_t n, size_t k,
                        sae_pair *out, float *cmax)
{
    if (k == 0 || k > n) /* the loader guarantees 1 <= k <= d_sae */
        return 0;
    size_t nc = (n + 15) / 16, nfull = n / 16;
    float t = -INFINITY;
    if (nc > k) {
        for (size_t c = 0; c < nfull; c++) {
            const float *dc = d + 16 * c, *bc = b + 16 * c;
            v4f mx = load4(dc) + load4(bc);
            if (scale)
                mx *= load4(scale + 16 * c);
            for (size_t o = 4; o < 16; o += 4) {
                v4f v = load4(dc + o) + load4(bc + o);
                if (scale)
                    v *= load4(scale + 16 * c + o);
                mx = max4(mx, v);
            }
            float m01 = mx[0] > mx[1] ? mx[0] : mx[1], m23 = mx[2] > mx[3] ? mx[2] : mx[3];
            cmax[c] = m01 > m23 ? m01 : m23;
        }
        if (nfull < nc) {
            float m = -INFINITY;
            for (size_t j = 16 * nfull; j < n; j++) {
                float v = d[j] + b[j];
                if (scale)
                    v *= scale[j];
                m = v > m ? v : m;
            }
            cmax[nfull] = m;
        }
        memcpy(cmax + nc, cmax, nc * sizeof *cmax);
        t = kth_largest(cmax + nc, cmax + 2 * nc, nc, k);
    }
    /* Candidates: every v >= t (at least k of them), in index order. */
    size_t c_n = 0;
    for (size_t c = 0; c < nc; c++) {
        if (nc > k && cmax[c] < t)
            continue;
        size_t end = 16 * c + 16 < n ? 16 * c + 16 : n;
        for (size_t j = 16 * c; j < end; j++) {
            float v = d[j] + b[j];
            if (scale)
                v *= scale[j];
            if (v >= t)
                out[c_n++] = (sae_pair){v, (uint32_t)j};
        }
    }
    select_first_k(out, c_n, k);
    size_t cnt = 0;
    for (size_t j = 0; j < k && j < c_n; j++)
        if (out[j].v > 0.0f)
            out[cnt++] = out[j];
    return cnt;
}

/* Signed top-k (the 2024 EleutherAI sae, `signed: true`): no ReLU; the k
 * features of largest |pre| are kept with their signs (ties to the lower
 * index); an exact zero is dropped from the sparse list, where it adds
 * nothing. out holds n pairs. */
static size_t pass_topk_signed(const float *d, const float *b, size_t n, size_t k, sae_pair *out)
{
    for (size_t j = 0; j < n; j++)
        out[j] = (sae_pair){fabsf(d[j] + b[j]), (uint32_t)j};
    select_first_k(out, n, k);
    size_t cnt = 0;
    for (size_t j = 0; j < k && j < n; j++) {
        uint32_t i = out[j].i;
        float v = d[i] + b[i];
        if (v != 0.0f)
            out[cnt++] = (sae_pair){v, i};
    }
    return cnt;
}

/* Collects the active features of one row's pre-activations d (d_sae) into p;
 * cmax is the topk scratch. */
static size_t row_pass(const sae_model *m, const float *d, sae_pair *p, float *cmax)
{
    switch (m->arch) {
    case SAE_ARCH_STANDARD:
        return pass_standard(d, m->b_enc, m->d_sae, p);
    case SAE_ARCH_JUMPRELU:
        return pass_jumprelu(d, m->b_enc, m->threshold, m->d_sae, p);
    case SAE_ARCH_TOPK:
        if (m->signed_topk)
            return pass_topk_signed(d, m->b_enc, m->d_sae, m->k, p);
        return pass_topk(d, m->b_enc, m->rescale_acts_by_decoder_norm ? m->dec_norm : NULL,
                         m->d_sae, m->k, p, cmax);
    case SAE_ARCH_GATED:
        return pass_gated(d, m->b_gate, m->exp_r_mag, m->b_mag, m->d_sae, p);
    case SAE_ARCH_AUTOENCODER:
        break;
    }
    return 0;
}

/* ---- decoding ---- */

/* The coefficient f' that multiplies W_dec,i for an activation v (CONTRACT 2).
 * A feature whose decoder row is zero contributes nothing, so its f' is 0
 * rather than v/0. */
static inline float decode_coef(const sae_model *m, uint32_t i, float v)
{
    if (m->dec_scale) /* SAELens <= 5: (f ⊙ s)·W_dec */
        v *= m->dec_scale[i];
    if (m->arch == SAE_ARCH_TOPK && m->rescale_acts_by_decoder_norm)
        return m->dec_norm[i] > 0.0f ? v / m->dec_norm[i] : 0.0f;
    return v;
}

/* out (d_out) += c · W_dec,i */
static inline void add_dec_row(const sae_model *m, uint32_t i, float c, float *out)
{
    if (m->w_dec_h) {
        sae_half_axpy(m->w_dtype, m->w_dec_h + (size_t)i * m->d_out, c, out, m->d_out);
        return;
    }
    const float *w = m->w_dec + (size_t)i * m->d_out;
    for (size_t j = 0; j < m->d_out; j++)
        out[j] += c * w[j];
}

void sae_decode_row(const sae_model *m, const uint32_t *idx, const float *val, size_t nnz,
                    float *out)
{
    memcpy(out, m->b_dec, m->d_out * sizeof *out);
    for (size_t t = 0; t < nnz; t++)
        add_dec_row(m, idx[t], decode_coef(m, idx[t], val[t]), out);
}

/* sae_decode_row over pairs. */
static void decode_pairs(const sae_model *m, const sae_pair *p, size_t n, float *out)
{
    memcpy(out, m->b_dec, m->d_out * sizeof *out);
    for (size_t t = 0; t < n; t++)
        add_dec_row(m, p[t].i, decode_coef(m, p[t].i, p[t].v), out);
}

bool sae_decode_is_normalised(const sae_model *m)
{
    /* A transcoder's output is never mapped back (SAELens Transcoder.decode). */
    return !m->transcoder &&
           (m->norm == SAE_NORM_LAYER_NORM || m->norm == SAE_NORM_CONSTANT_NORM_RESCALE);
}

int sae_decode(const sae_model *m, const sae_sparse *f, float *out, sae_error *err)
{
    if (m->arch == SAE_ARCH_AUTOENCODER)
        return sae_error_set(err, SAE_EINVAL, "decode: not available for an autoencoder model");
    for (size_t r = 0; r < f->n_rows; r++) {
        for (size_t t = f->row_ptr[r]; t < f->row_ptr[r + 1]; t++) {
            size_t pos = t - f->row_ptr[r];
            if (f->idx[t] >= m->d_sae)
                return sae_error_set(err, SAE_ERANGE,
                                     "decode: row %zu, position %zu: index %u out of range "
                                     "(d_sae %zu)",
                                     r, pos, f->idx[t], m->d_sae);
            if (!isfinite(f->val[t]))
                return sae_error_set(err, SAE_ERANGE,
                                     "decode: row %zu, position %zu: value is not finite", r, pos);
        }
    }
    /* Only expected_average_only_in has a row-independent inverse (÷ s);
     * a transcoder cannot have it (the loader refuses it). */
    float inv = m->norm == SAE_NORM_EXPECTED_AVERAGE_ONLY_IN ? 1.0f / m->norm_scaling_factor : 1.0f;
    for (size_t r = 0; r < f->n_rows; r++) {
        float *o = out + r * m->d_out;
        size_t a = f->row_ptr[r], n = f->row_ptr[r + 1] - a;
        /* All rows empty: idx/val are NULL, and NULL + 0 is undefined. */
        sae_decode_row(m, n ? f->idx + a : NULL, n ? f->val + a : NULL, n, o);
        if (inv != 1.0f)
            for (size_t j = 0; j < m->d_out; j++)
                o[j] *= inv;
    }
    return 0;
}

/* ---- encoding ---- */

/* Fills ws->norms and ws->xn for rows x (rows, d_in): x' = norm(x) − b_dec. */
static void block_prepare(const sae_model *m, sae_workspace *ws, const float *x, size_t rows)
{
    size_t d = m->d_in;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *o = ws->xn + r * d;
        sae_row_norm nr;
        sae_row_norm_compute(m, xr, &nr);
        ws->norms[r] = nr;
        if (m->norm == SAE_NORM_NONE)
            memcpy(o, xr, d * sizeof *o);
        else
            for (size_t j = 0; j < d; j++)
                o[j] = (float)(((double)xr[j] - nr.shift) * nr.in_scale);
        if (m->apply_b_dec_to_input)
            for (size_t j = 0; j < d; j++)
                o[j] -= m->b_dec[j];
    }
}

void sae_gemm_rows(const float *w, bool w_t, size_t d_in, size_t d_sae, const float *x,
                   size_t rows, float *y)
{
    int di = (int)d_in, ds = (int)d_sae;
    if (rows == 1) {
        if (w_t)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, ds, di, 1.0f, w, di, x, 1, 0.0f, y, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasTrans, di, ds, 1.0f, w, ds, x, 1, 0.0f, y, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, w_t ? CblasTrans : CblasNoTrans, (int)rows, ds, di,
                1.0f, x, di, w, w_t ? di : ds, 0.0f, y, ds);
}

/* True when v[0..n) are all finite: no value has an all-ones exponent (inf
 * or NaN). Integer bit tests with an OR, so the compiler vectorises it; a
 * float sum would be one serial dependency chain, about 3 % of a 1024-row
 * encode at d_sae 24576. */
static bool span_finite(const float *v, size_t n)
{
    /* 16 floats a step with the vector extension (pass_standard's v4i): the
     * scalar loop alone was ~4 % of a streamed encode's CPU at d_sae 2048. */
    const v4i expo = {0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000};
    v4i acc = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v4i a, b, c, d;
        memcpy(&a, v + i, sizeof a);
        memcpy(&b, v + i + 4, sizeof b);
        memcpy(&c, v + i + 8, sizeof c);
        memcpy(&d, v + i + 12, sizeof d);
        acc |= ((a & expo) == expo) | ((b & expo) == expo) | ((c & expo) == expo) |
               ((d & expo) == expo);
    }
    uint32_t bad = any4(acc);
    for (; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        bad |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
    }
    return !bad;
}

/* SAE_ERANGE naming the first row of the block (numbered from r0) whose
 * normalised input or pre-activations are not finite: finite inputs can
 * overflow there (1e38 times a scaling factor), and a NaN pre-activation
 * would otherwise drop out of the ReLU as "no feature". */
static int block_check_finite(const sae_model *m, const sae_workspace *ws, size_t r0,
                              size_t rows, sae_error *err)
{
    for (size_t r = 0; r < rows; r++) {
        if (!span_finite(ws->xn + r * m->d_in, m->d_in))
            return sae_error_set(err, SAE_ERANGE,
                                 "row %zu: not finite after normalisation", r0 + r);
        if (!span_finite(ws->dense + r * m->d_sae, m->d_sae))
            return sae_error_set(err, SAE_ERANGE, "row %zu: pre-activations not finite",
                                 r0 + r);
    }
    return 0;
}

/* Finishes one row: its reconstruction and metrics when asked (from the full
 * active list), then the option filter, the ordering and the append. */
static int row_finish(const sae_model *m, sae_workspace *ws, size_t r, const float *x,
                      const sae_encode_opts *opt, sae_sparse *out, sae_row_metrics *metrics,
                      float *recon, sae_error *err)
{
    sae_pair *p = ws->pairs;
    size_t n = row_pass(m, ws->dense + r * m->d_sae, p, ws->cmax);
    if (metrics || recon) {
        float *xh = recon ? recon : ws->xhat;
        decode_pairs(m, p, n, xh);
        const sae_row_norm *nr = &ws->norms[r];
        if (m->norm != SAE_NORM_NONE)
            for (size_t j = 0; j < m->d_in; j++)
                xh[j] = (float)(xh[j] * nr->out_scale + nr->shift);
        if (metrics) {
            sae_metrics_row(x, xh, m->d_in, metrics);
            metrics->l0 = (uint32_t)n;
        }
    }
    if (opt && opt->has_threshold) {
        size_t kept = 0;
        for (size_t j = 0; j < n; j++)
            if (p[j].v > opt->threshold)
                p[kept++] = p[j];
        n = kept;
    }
    if (opt && opt->top_k && opt->top_k < n) {
        select_first_k(p, n, opt->top_k);
        n = opt->top_k;
    }
    sort_pairs(p, n);
    return sparse_push_pairs(out, p, n, err);
}

int sae_encode(const sae_model *m, sae_workspace *ws, const float *x, size_t n,
               const sae_encode_opts *opt, sae_sparse *out, sae_row_metrics *metrics, float *recon,
               sae_error *err)
{
    if (m->arch == SAE_ARCH_AUTOENCODER)
        return sae_error_set(err, SAE_EINVAL,
                             "encode: an autoencoder model encodes with sae_ae_encode");
    if (!sae_workspace_fits(ws, m))
        return sae_error_set(err, SAE_EDIM, "encode: workspace was made for a smaller model");
    if (m->transcoder && (metrics || recon))
        return sae_error_set(err, SAE_EINVAL,
                             "encode: this model is a transcoder: its decoder reconstructs the "
                             "output hook%s%s, not the input, so reconstruction and its metrics "
                             "against the input are not computed (decode gives the output)",
                             *m->hook_name_out ? " " : "", m->hook_name_out);
    if (m->d_in > INT32_MAX || m->d_sae > INT32_MAX)
        return sae_error_set(err, SAE_EDIM, "encode: d_in/d_sae too large for BLAS");
    size_t rows0 = out->n_rows, nnz0 = out->nnz;
    int rc = 0;
    for (size_t r0 = 0; r0 < n; r0 += ws->block_rows) {
        size_t rows = n - r0 < ws->block_rows ? n - r0 : ws->block_rows;
        const float *xb = x + r0 * m->d_in;
        block_prepare(m, ws, xb, rows);
        if (m->w_enc_h)
            sae_gemm_half(m->kernel, m->w_dtype, m->w_enc_h, m->w_enc_t, m->d_in, m->d_sae,
                          ws->xn, rows, ws->dense, ws->scratch, sae_get_blas_threads());
        else
            sae_gemm_rows(m->w_enc, m->w_enc_t, m->d_in, m->d_sae, ws->xn, rows, ws->dense);
        if ((rc = block_check_finite(m, ws, r0, rows, err)))
            goto out;
        for (size_t r = 0; r < rows; r++) {
            rc = row_finish(m, ws, r, xb + r * m->d_in, opt, out, metrics ? metrics + r0 + r : NULL,
                            recon ? recon + (r0 + r) * m->d_in : NULL, err);
            if (rc)
                goto out;
        }
    }
out:
    if (rc) {
        /* Leave out as it was: nothing appended on failure. */
        out->n_rows = rows0;
        out->nnz = nnz0;
    }
    return rc;
}

bool sae_encode_cols_independent(const sae_model *m)
{
    return m->arch == SAE_ARCH_STANDARD || m->arch == SAE_ARCH_JUMPRELU ||
           m->arch == SAE_ARCH_GATED;
}

/* Column alignment of sae_encode_cols's GEMM block: a multiple of every
 * sgemm/sgemv column unroll of OpenBLAS's x86-64 kernels (4, 6, 8, 12, 16,
 * 24, 32). */
#define SAE_ENCODE_COL_ALIGN 96

/* Keeps, of the rows of out from row r0 on, only the entries of features
 * [lo, hi), renumbered from 0, in place. */
static void sparse_keep_cols(sae_sparse *out, size_t r0, uint32_t lo, uint32_t hi)
{
    size_t w = out->row_ptr[r0];
    for (size_t r = r0; r < out->n_rows; r++) {
        uint32_t a = out->row_ptr[r], b = out->row_ptr[r + 1];
        out->row_ptr[r] = (uint32_t)w;
        for (uint32_t e = a; e < b; e++)
            if (out->idx[e] >= lo && out->idx[e] < hi) {
                out->idx[w] = out->idx[e] - lo;
                out->val[w++] = out->val[e];
            }
    }
    out->row_ptr[out->n_rows] = (uint32_t)w;
    out->nnz = w;
}

/* The active features among pre-activations d of features [lo, lo + n)
 * (their x'.W_enc), numbered from 0, into p. */
static size_t row_pass_cols(const sae_model *m, const float *d, size_t lo, size_t n, sae_pair *p)
{
    switch (m->arch) {
    case SAE_ARCH_STANDARD:
        return pass_standard(d, m->b_enc + lo, n, p);
    case SAE_ARCH_JUMPRELU:
        return pass_jumprelu(d, m->b_enc + lo, m->threshold + lo, n, p);
    case SAE_ARCH_GATED:
        return pass_gated(d, m->b_gate + lo, m->exp_r_mag + lo, m->b_mag + lo, n, p);
    default:
        return 0;
    }
}

/* OpenBLAS 0.3.21's small-matrix sgemm kernels (SkylakeX and later take
 * products of up to 10^6 multiply-adds) sum in another order than its
 * blocked ones, so a range block below that size, of a product above it,
 * would get other bits: a block is widened to at least this many
 * multiply-adds (or to the whole product). */
#define SAE_ENCODE_COL_MIN_MACS ((size_t)1 << 21)

/* The F32 product of the workspace's `rows` prepared rows with W_enc's
 * columns [a, b) ⊇ [lo, hi) into ws->dense as a dense (rows, b − a) block:
 * a strided block of the row-major (d_in, d_sae) matrix (leading dimension
 * d_sae), or rows of its transpose. The block is widened to multiples of
 * SAE_ENCODE_COL_ALIGN (or to d_sae): the GEMM kernels cut the columns into
 * panels of their unroll width from the first column and finish with a
 * narrower tail kernel whose sums round differently (OpenBLAS's Haswell
 * sgemm does), so only a block whose panels are the full product's gives
 * its bits; and to SAE_ENCODE_COL_MIN_MACS. Sets *ld_y to b − a and *skip to
 * lo − a, where row r's pre-activation of feature lo lands. */
static void f32_cols_block(const sae_model *m, sae_workspace *ws, size_t rows, uint32_t lo,
                           uint32_t hi, size_t *ld_y, size_t *skip)
{
    const size_t al = SAE_ENCODE_COL_ALIGN, ds = m->d_sae;
    size_t a = lo - lo % al, b = hi + (al - hi % al) % al;
    size_t min_cols = SAE_ENCODE_COL_MIN_MACS / (rows * m->d_in) + 1;
    if (b - a < min_cols)
        b = a + (min_cols + al - 1) / al * al;
    if (b > ds) {
        b = ds;
        if (b - a < min_cols)
            a = b > min_cols ? (b - min_cols) / al * al : 0;
    }
    size_t nb = b - a;
    const float *w = m->w_enc_t ? m->w_enc + a * m->d_in : m->w_enc + a;
    int di = (int)m->d_in, dn = (int)nb, ld = m->w_enc_t ? di : (int)ds;
    if (rows == 1)
        cblas_sgemv(CblasRowMajor, m->w_enc_t ? CblasNoTrans : CblasTrans, m->w_enc_t ? dn : di,
                    m->w_enc_t ? di : dn, 1.0f, w, ld, ws->xn, 1, 0.0f, ws->dense, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, m->w_enc_t ? CblasTrans : CblasNoTrans,
                    (int)rows, dn, di, 1.0f, ws->xn, di, w, ld, 0.0f, ws->dense, dn);
    *ld_y = nb;
    *skip = lo - a;
}

int sae_encode_cols(const sae_model *m, sae_workspace *ws, const float *x, size_t n,
                    uint32_t lo, uint32_t hi, sae_sparse *out, sae_error *err)
{
    if (lo >= hi || hi > m->d_sae)
        return sae_error_set(err, SAE_EINVAL, "encode: features %u:%u out of 0:%zu", lo, hi,
                             m->d_sae);
    size_t rows0 = out->n_rows, nnz0 = out->nnz, nc = hi - lo;
    int rc = 0;
    if (!sae_encode_cols_independent(m)) {
        sae_encode_opts opts = {0};
        if ((rc = sae_encode(m, ws, x, n, &opts, out, NULL, NULL, err)))
            return rc;
        sparse_keep_cols(out, rows0, lo, hi);
        return 0;
    }
    if (!sae_workspace_fits(ws, m))
        return sae_error_set(err, SAE_EDIM, "encode: workspace was made for a smaller model");
    if (m->d_in > INT32_MAX || m->d_sae > INT32_MAX)
        return sae_error_set(err, SAE_EDIM, "encode: d_in/d_sae too large for BLAS");
    for (size_t r0 = 0; r0 < n && !rc; r0 += ws->block_rows) {
        size_t rows = n - r0 < ws->block_rows ? n - r0 : ws->block_rows;
        block_prepare(m, ws, x + r0 * m->d_in, rows);
        /* where row r's pre-activation of feature lo is: dense + r * ld_y + skip */
        size_t ld_y = m->d_sae, skip = lo;
        if (m->w_enc_h)
            sae_gemm_half_cols(m->kernel, m->w_dtype, m->w_enc_h, m->w_enc_t, m->d_in, m->d_sae,
                               ws->xn, rows, ws->dense, ws->scratch, sae_get_blas_threads(), lo,
                               hi);
        else
            f32_cols_block(m, ws, rows, lo, hi, &ld_y, &skip);
        for (size_t r = 0; r < rows && !rc; r++) {
            const float *d = ws->dense + r * ld_y + skip;
            if (!span_finite(ws->xn + r * m->d_in, m->d_in) || !span_finite(d, nc)) {
                rc = sae_error_set(err, SAE_ERANGE, "row %zu: pre-activations not finite",
                                   r0 + r);
                break;
            }
            size_t k = row_pass_cols(m, d, lo, nc, ws->pairs);
            sort_pairs(ws->pairs, k);
            rc = sparse_push_pairs(out, ws->pairs, k, err);
        }
    }
    if (rc) {
        out->n_rows = rows0;
        out->nnz = nnz0;
    }
    return rc;
}

void sae_set_blas_threads(int n)
{
    if (n > 0)
        openblas_set_num_threads(n);
}

int sae_get_blas_threads(void)
{
    int n = openblas_get_num_threads();
    return n > 0 ? n : 1;
}
