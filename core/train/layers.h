/* layers.h: the forward and backward passes of every architecture
 * `sae train` knows, written once over a real type.
 *
 * This is not an ordinary header: train_loop.c includes it twice, once with
 * TL_REAL = float (the code training runs) and once with TL_REAL = double (the
 * code the gradient checks run), so the finite-difference tests exercise the
 * very backward pass that training uses, only in a wider type. Each include
 * defines TL_REAL, TL_SFX (the name suffix), TL_GEMM and TL_GEMV (the BLAS
 * routines of that type); every function here is static to train_loop.c.
 * With TL_TYPES_ONLY defined an include gives only the two types (tensors,
 * acts), which train_int.h takes for float so that the other train_*.c files
 * see the trainer's tensors; train_loop.c then includes the float functions
 * with TL_FUNCS_ONLY.
 *
 * Layout follows llm.c: each layer's forward beside its backward, a shape
 * comment on every buffer, parameters and activations carved out of one
 * allocation each by the *_carve functions. B is the number of rows in the
 * batch. Gradients are of the batch-mean loss
 *   L = (1/B) Σ_b ‖x_b − x̂_b‖² + λ (1/B) Σ_b Σ_i f_bi ‖W_dec,i‖₂   (standard)
 *   L = (1/B) Σ_b ‖x_b − x̂_b‖²                                      (topk, autoencoder)
 * and are written over (never accumulated into) the gradient buffers. */

#define TL_CAT2(a, b) a##_##b
#define TL_CAT(a, b) TL_CAT2(a, b)
#define FN(name) TL_CAT(name, TL_SFX)

#ifndef TL_FUNCS_ONLY
typedef TL_REAL FN(real);

/* Named views into one flat parameter (or gradient, or Adam moment) array.
 * The flat order is the public one of train.h: W_enc, b_enc, W_dec, b_dec for
 * an SAE; W_0, b_0, W_1, b_1, ... for the autoencoder. */
typedef struct FN(tensors) {
    TL_REAL *w_enc; /* (d_in, d_sae) */
    TL_REAL *b_enc; /* (d_sae) */
    TL_REAL *w_dec; /* (d_sae, d_in) */
    TL_REAL *b_dec; /* (d_in) */
    TL_REAL *w[SAE_AE_MAX_LINEAR]; /* autoencoder layer l: (dims[l], dims[l+1]) */
    TL_REAL *b[SAE_AE_MAX_LINEAR]; /* autoencoder layer l: (dims[l+1]) */
} FN(tensors);

/* Activation buffers for batches of up to max_rows rows: the forward pass's
 * saved values and the backward pass's scratch, carved from one allocation. */
typedef struct FN(acts) {
    size_t max_rows;
    TL_REAL *xc;       /* (B, d_in) x − b_dec: the encoder's input */
    TL_REAL *f;        /* (B, d_sae) pre-activations, then features in place */
    TL_REAL *df;       /* (B, d_sae) dL/df, then dL/dpre in place */
    TL_REAL *xhat;     /* (B, d_in) reconstruction, then dL/dx̂ in place */
    TL_REAL *dec_norm; /* (d_sae) ‖W_dec,i‖₂ for this step's weights */
    TL_REAL *colsum;   /* (d_sae) Σ_b f_bi */
    TL_REAL *scratch;  /* (d_sae) one row's values for the top-k selection */
    TL_REAL *h[SAE_AE_MAX_LINEAR + 1]; /* autoencoder: h[l] (B, dims[l]) is layer l's
                                          input (h[0] borrows x), h[n_lin] the output */
    TL_REAL *dh[2];    /* autoencoder: (B, max width) ping-pong gradient buffers */
} FN(acts);
#endif

#ifndef TL_TYPES_ONLY

/* Points t's tensors into base, which holds sae_train_n_params(s) reals. */
static void FN(tensors_carve)(const sae_train_shape *s, TL_REAL *base, FN(tensors) *t)
{
    memset(t, 0, sizeof *t);
    if (s->arch != SAE_ARCH_AUTOENCODER) {
        t->w_enc = base;
        t->b_enc = t->w_enc + s->d_in * s->d_sae;
        t->w_dec = t->b_enc + s->d_sae;
        t->b_dec = t->w_dec + s->d_sae * s->d_in;
        return;
    }
    size_t dims[SAE_AE_MAX_LINEAR + 1];
    size_t n_lin = train_ae_dims(s, dims);
    TL_REAL *p = base;
    for (size_t l = 0; l < n_lin; l++) {
        t->w[l] = p;
        p += dims[l] * dims[l + 1];
        t->b[l] = p;
        p += dims[l + 1];
    }
}

/* Number of reals FN(acts_carve) needs for max_rows rows, or 0 on overflow. */
static size_t FN(acts_count)(const sae_train_shape *s, size_t max_rows)
{
    size_t total = 0, t;
    if (s->arch != SAE_ARCH_AUTOENCODER) {
        size_t per_row = 2 * s->d_in + 2 * s->d_sae;
        if (sae_mul_size(per_row, max_rows, &t) || sae_add_size(t, 3 * s->d_sae, &total))
            return 0;
        return total;
    }
    size_t dims[SAE_AE_MAX_LINEAR + 1];
    size_t n_lin = train_ae_dims(s, dims), widest = 0, per_row = 0;
    for (size_t l = 1; l <= n_lin; l++) {
        per_row += dims[l];
        if (dims[l] > widest)
            widest = dims[l];
    }
    per_row += 2 * widest;
    if (sae_mul_size(per_row, max_rows, &total))
        return 0;
    return total;
}

/* Points a's buffers into base, which holds FN(acts_count)(s, max_rows) reals. */
static void FN(acts_carve)(const sae_train_shape *s, size_t max_rows, TL_REAL *base,
                           FN(acts) *a)
{
    memset(a, 0, sizeof *a);
    a->max_rows = max_rows;
    TL_REAL *p = base;
    if (s->arch != SAE_ARCH_AUTOENCODER) {
        a->xc = p, p += max_rows * s->d_in;
        a->f = p, p += max_rows * s->d_sae;
        a->df = p, p += max_rows * s->d_sae;
        a->xhat = p, p += max_rows * s->d_in;
        a->dec_norm = p, p += s->d_sae;
        a->colsum = p, p += s->d_sae;
        a->scratch = p;
        return;
    }
    size_t dims[SAE_AE_MAX_LINEAR + 1];
    size_t n_lin = train_ae_dims(s, dims), widest = 0;
    for (size_t l = 1; l <= n_lin; l++) {
        a->h[l] = p, p += max_rows * dims[l];
        if (dims[l] > widest)
            widest = dims[l];
    }
    a->dh[0] = p, p += max_rows * widest;
    a->dh[1] = p;
}

/* ---- linear layer ---- */

/* out (B, n_out) = in (B, n_in) · w (n_in, n_out) + b (n_out). */
static void FN(linear_forward)(TL_REAL *out, const TL_REAL *in, const TL_REAL *w,
                               const TL_REAL *b, size_t B, size_t n_in, size_t n_out)
{
    for (size_t r = 0; r < B; r++)
        memcpy(out + r * n_out, b, n_out * sizeof *out);
    TL_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)n_out, (int)n_in, 1, in,
            (int)n_in, w, (int)n_out, 1, out, (int)n_out);
}

/* Given dout (B, n_out) = dL/dout: dw (n_in, n_out) = inᵀ·dout, db (n_out) =
 * Σ_rows dout and, when din is not NULL, din (B, n_in) = dout·wᵀ. */
static void FN(linear_backward)(TL_REAL *din, TL_REAL *dw, TL_REAL *db, const TL_REAL *dout,
                                const TL_REAL *in, const TL_REAL *w, size_t B, size_t n_in,
                                size_t n_out)
{
    TL_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n_in, (int)n_out, (int)B, 1, in,
            (int)n_in, dout, (int)n_out, 0, dw, (int)n_out);
    memset(db, 0, n_out * sizeof *db);
    for (size_t r = 0; r < B; r++) {
        const TL_REAL *row = dout + r * n_out;
        for (size_t j = 0; j < n_out; j++)
            db[j] += row[j];
    }
    if (din)
        TL_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)n_in, (int)n_out, 1, dout,
                (int)n_out, w, (int)n_out, 0, din, (int)n_in);
}

/* ---- activations ---- */

/* One row of FN(relu_forward): row = ReLU(row + bias), colsum += row;
 * returns the row's count of positive values. Two simple loops the compiler
 * vectorizes. */
TL_VEC static size_t FN(bias_relu_row)(TL_REAL *restrict row, const TL_REAL *restrict bias,
                                       TL_REAL *restrict colsum, size_t d)
{
    for (size_t i = 0; i < d; i++) {
        TL_REAL v = row[i] + bias[i];
        v = v > 0 ? v : 0;
        row[i] = v;
        colsum[i] += v;
    }
    int count = 0;
    for (size_t i = 0; i < d; i++)
        count += row[i] > 0;
    return (size_t)count;
}

/* f (B, d) = ReLU(f + bias) in place (bias (d) may be NULL when the layer
 * added it already), adding each row's Σ_i f_i·norm_i to *l1 and its count
 * of f_i > 0 to *l0, and setting colsum (d) = Σ_b f_bi. norm may be NULL
 * (autoencoder layers), and then l1, l0 and colsum are not touched. One pass
 * over f: the encoder's bias, activation and statistics together. */
static void FN(relu_forward)(TL_REAL *f, size_t B, size_t d, const TL_REAL *bias,
                             const TL_REAL *norm, TL_REAL *colsum, double *l1, double *l0)
{
    if (!norm) {
        for (size_t i = 0; i < B * d; i++)
            f[i] = f[i] > 0 ? f[i] : 0;
        return;
    }
    memset(colsum, 0, d * sizeof *colsum);
    size_t count = 0;
    for (size_t r = 0; r < B; r++)
        count += FN(bias_relu_row)(f + r * d, bias, colsum, d);
    double s = 0;
    for (size_t i = 0; i < d; i++)
        s += (double)colsum[i] * norm[i];
    *l1 += s;
    *l0 += (double)count;
}

/* Moves the k largest of v[0..n) into v[0..k) (in no particular order) by
 * quickselect with a median-of-three pivot; deterministic. */
static void FN(select_top)(TL_REAL *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1 && k > lo && k < hi) {
        size_t mid = lo + (hi - lo) / 2;
        TL_REAL a = v[lo], b = v[mid], c = v[hi - 1];
        TL_REAL pivot = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
        /* three-way partition: > pivot | == pivot | < pivot */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            TL_REAL x = v[i];
            if (x > pivot) {
                v[i] = v[lt], v[lt] = x;
                lt++, i++;
            } else if (x < pivot) {
                gt--;
                v[i] = v[gt], v[gt] = x;
            } else {
                i++;
            }
        }
        if (k <= lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return;
    }
}

/* Bias, top-k then ReLU, in place on f (B, d): bias (d) is added, in each
 * row the k largest values are kept (ties at the k-th value go to the lowest
 * indices), then ReLU. Fills l1, l0 and colsum as FN(relu_forward) does.
 * scratch holds d reals. */
static void FN(topk_forward)(TL_REAL *f, size_t B, size_t d, size_t k, const TL_REAL *bias,
                             const TL_REAL *norm, TL_REAL *colsum, TL_REAL *scratch, double *l1,
                             double *l0)
{
    memset(colsum, 0, d * sizeof *colsum);
    size_t count = 0;
    for (size_t r = 0; r < B; r++) {
        TL_REAL *row = f + r * d;
        for (size_t i = 0; i < d; i++)
            row[i] += bias[i];
        if (k < d) {
            memcpy(scratch, row, d * sizeof *scratch);
            FN(select_top)(scratch, d, k);
            TL_REAL kth = scratch[0];
            for (size_t i = 1; i < k; i++)
                kth = scratch[i] < kth ? scratch[i] : kth;
            size_t above = 0;
            for (size_t i = 0; i < k; i++)
                above += scratch[i] > kth;
            size_t ties_left = k - above;
            for (size_t i = 0; i < d; i++) {
                if (row[i] > kth)
                    continue;
                if (row[i] == kth && ties_left) {
                    ties_left--;
                    continue;
                }
                row[i] = 0;
            }
        }
        for (size_t i = 0; i < d; i++) {
            TL_REAL v = row[i] > 0 ? row[i] : 0;
            row[i] = v;
            colsum[i] += v;
            count += v > 0;
        }
    }
    double s = 0;
    for (size_t i = 0; i < d; i++)
        s += (double)colsum[i] * norm[i];
    *l1 += s;
    *l0 += (double)count;
}

/* One row of FN(sparse_backward): g = g·[v > 0], and db += g. */
TL_VEC static void FN(mask_row)(TL_REAL *restrict g, const TL_REAL *restrict v,
                                TL_REAL *restrict db, size_t d)
{
    for (size_t i = 0; i < d; i++) {
        TL_REAL x = g[i];
        x = v[i] > 0 ? x : 0;
        g[i] = x;
        db[i] += x;
    }
}

/* One row of FN(sparse_backward) without a bias gradient: g = g·[v > 0]. */
TL_VEC static void FN(mask_row_nodb)(TL_REAL *restrict g, const TL_REAL *restrict v, size_t d)
{
    for (size_t i = 0; i < d; i++) {
        TL_REAL x = g[i];
        g[i] = v[i] > 0 ? x : 0;
    }
}

/* Backward of ReLU and of top-k-then-ReLU alike: a feature passes gradient
 * exactly where it is positive, so dpre = df·[f > 0], in place on df (B, d).
 * When db (d) is not NULL it receives Σ_b dpre_b, the gradient of the bias
 * before the activation, in the same pass. */
static void FN(sparse_backward)(TL_REAL *df, const TL_REAL *f, size_t B, size_t d, TL_REAL *db)
{
    if (db)
        memset(db, 0, d * sizeof *db);
    for (size_t r = 0; r < B; r++) {
        if (db)
            FN(mask_row)(df + r * d, f + r * d, db, d);
        else
            FN(mask_row_nodb)(df + r * d, f + r * d, d);
    }
}

/* ---- loss ---- */

/* In place on xhat (B, d): xhat ← scale·(xhat − x), the gradient of
 * (scale/2)·Σ‖x − x̂‖². Returns Σ‖x − x̂‖². */
static double FN(mse_backward)(TL_REAL *xhat, const TL_REAL *x, size_t B, size_t d,
                               TL_REAL scale)
{
    double sse = 0;
    for (size_t i = 0; i < B * d; i++) {
        TL_REAL e = xhat[i] - x[i];
        sse += (double)e * e;
        xhat[i] = scale * e;
    }
    return sse;
}

/* ---- whole models ---- */

/* ‖W_dec,i‖₂ for every row of w_dec (d_sae, d_in) into norm (d_sae). */
static void FN(row_norms)(TL_REAL *norm, const TL_REAL *w_dec, size_t d_sae, size_t d_in)
{
    for (size_t i = 0; i < d_sae; i++) {
        const TL_REAL *row = w_dec + i * d_in;
        double s = 0;
        for (size_t j = 0; j < d_in; j++)
            s += (double)row[j] * row[j];
        norm[i] = (TL_REAL)sqrt(s);
    }
}

/* One forward and backward pass of an SAE (standard or topk) on x (B, d_in).
 * Writes every gradient into g, the batch sums into st (sse, l1 = Σ f·‖W_dec‖,
 * l0) and returns the loss. l1_coeff is λ (ignored by topk). a borrows the
 * activation buffers; p and x are only read. */
static double FN(sae_step)(const sae_train_shape *s, const FN(tensors) *p, FN(tensors) *g,
                           FN(acts) *a, const TL_REAL *x, size_t B, double l1_coeff,
                           train_batch_stats *st)
{
    size_t d_in = s->d_in, d_sae = s->d_sae;
    bool topk = s->arch == SAE_ARCH_TOPK;
    double l1 = 0, l0 = 0;

    /* encoder: xc = x − b_dec; f = act(xc·W_enc + b_enc), the bias added in
     * the activation's pass rather than by a pass of its own */
    for (size_t r = 0; r < B; r++)
        for (size_t j = 0; j < d_in; j++)
            a->xc[r * d_in + j] = x[r * d_in + j] - p->b_dec[j];
    TL_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)d_sae, (int)d_in, 1, a->xc,
            (int)d_in, p->w_enc, (int)d_sae, 0, a->f, (int)d_sae);
    FN(row_norms)(a->dec_norm, p->w_dec, d_sae, d_in);
    if (topk)
        FN(topk_forward)(a->f, B, d_sae, s->k, p->b_enc, a->dec_norm, a->colsum, a->scratch, &l1,
                         &l0);
    else
        FN(relu_forward)(a->f, B, d_sae, p->b_enc, a->dec_norm, a->colsum, &l1, &l0);

    /* decoder: x̂ = f·W_dec + b_dec */
    FN(linear_forward)(a->xhat, a->f, p->w_dec, p->b_dec, B, d_sae, d_in);

    /* loss, and dL/dx̂ in place of x̂ */
    double sse = FN(mse_backward)(a->xhat, x, B, d_in, (TL_REAL)(2.0 / B));
    double lam = topk ? 0 : l1_coeff;
    double loss = sse / B + lam * l1 / B;

    /* decoder backward: dW_dec = fᵀ·dx̂, db_dec = Σ_b dx̂_b */
    FN(linear_backward)(NULL, g->w_dec, g->b_dec, a->xhat, a->f, p->w_dec, B, d_sae, d_in);
    if (lam != 0) {
        /* d/dW_dec,i of (λ/B) Σ_b f_bi ‖W_dec,i‖ = (λ/B) colsum_i W_dec,i / ‖W_dec,i‖ */
        for (size_t i = 0; i < d_sae; i++) {
            if (a->dec_norm[i] <= 0 || a->colsum[i] == 0)
                continue;
            TL_REAL c = (TL_REAL)(lam / B * a->colsum[i] / a->dec_norm[i]);
            TL_REAL *gi = g->w_dec + i * d_in;
            const TL_REAL *wi = p->w_dec + i * d_in;
            for (size_t j = 0; j < d_in; j++)
                gi[j] += c * wi[j];
        }
    }
    /* df = dx̂·W_decᵀ, plus d/df_bi of the penalty, (λ/B)‖W_dec,i‖, written into
     * df first so that the product adds to it (beta 1) */
    if (lam != 0) {
        for (size_t i = 0; i < d_sae; i++)
            a->scratch[i] = (TL_REAL)(lam / B) * a->dec_norm[i];
        for (size_t r = 0; r < B; r++)
            memcpy(a->df + r * d_sae, a->scratch, d_sae * sizeof *a->df);
    }
    TL_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)d_sae, (int)d_in, 1, a->xhat,
            (int)d_in, p->w_dec, (int)d_in, lam != 0 ? 1 : 0, a->df, (int)d_sae);
    FN(sparse_backward)(a->df, a->f, B, d_sae, g->b_enc);

    /* encoder backward: dW_enc = xcᵀ·dpre (db_enc came with dpre); x − b_dec
     * makes db_dec −= W_enc·db_enc */
    TL_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d_in, (int)d_sae, (int)B, 1, a->xc,
            (int)d_in, a->df, (int)d_sae, 0, g->w_enc, (int)d_sae);
    TL_GEMV(CblasRowMajor, CblasNoTrans, (int)d_in, (int)d_sae, -1, p->w_enc, (int)d_sae,
            g->b_enc, 1, 1, g->b_dec, 1);

    st->sse += sse;
    st->l1 += l1;
    st->l0 += l0;
    return loss;
}

/* One forward and backward pass of the stacked autoencoder on x (B, d_in):
 * Linear+ReLU on every layer but the last, which is linear; MSE loss. Writes
 * every gradient into g and sse into st; returns the loss. */
static double FN(ae_step)(const sae_train_shape *s, const FN(tensors) *p, FN(tensors) *g,
                          FN(acts) *a, const TL_REAL *x, size_t B, train_batch_stats *st)
{
    size_t dims[SAE_AE_MAX_LINEAR + 1];
    size_t n_lin = train_ae_dims(s, dims);
    a->h[0] = (TL_REAL *)x; /* read only: layer 0's input */
    for (size_t l = 0; l < n_lin; l++) {
        FN(linear_forward)(a->h[l + 1], a->h[l], p->w[l], p->b[l], B, dims[l], dims[l + 1]);
        if (l + 1 < n_lin)
            FN(relu_forward)(a->h[l + 1], B, dims[l + 1], NULL, NULL, NULL, NULL, NULL);
    }
    /* dL/dout in a->dh[0]; the output h[n_lin] stays intact */
    TL_REAL *dout = a->dh[0];
    memcpy(dout, a->h[n_lin], B * s->d_in * sizeof *dout);
    double sse = FN(mse_backward)(dout, x, B, s->d_in, (TL_REAL)(2.0 / B));
    for (size_t l = n_lin; l-- > 0;) {
        TL_REAL *din = l > 0 ? a->dh[(n_lin - l) % 2] : NULL;
        FN(linear_backward)(din, g->w[l], g->b[l], dout, a->h[l], p->w[l], B, dims[l],
                            dims[l + 1]);
        if (din)
            FN(sparse_backward)(din, a->h[l], B, dims[l], NULL);
        dout = din;
    }
    a->h[0] = NULL;
    st->sse += sse;
    return sse / B;
}

#endif /* TL_TYPES_ONLY */

#undef FN
#undef TL_CAT
#undef TL_CAT2
