/* lm_ops.c: transformer kernels and their team of threads (lm_ops.h). The
 * forms follow llm.c's train_gpt2.c and Hugging Face's modeling_gpt2.py;
 * sums run in double. */
#include "lm/lm_ops.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "sae/encode.h"

/* ------------------------------------------------------------------ team */

#define TEAM_MAX 64
/* Kernels cheaper than this many element operations run on the caller:
 * waking a worker costs about as much. */
#define TEAM_MIN_WORK ((size_t)1 << 15)

/* Owns its workers. The job fields are written by the caller under mu
 * before it posts the job and left alone until the job is closed and no
 * worker is active in it; the chunks are claimed through next. */
struct sae_lm_team {
    pthread_mutex_t mu;
    pthread_cond_t go;      /* a new job, or quit */
    pthread_cond_t done;    /* active reached 0 */
    pthread_t tid[TEAM_MAX];
    size_t n_workers;       /* started */
    size_t size;            /* threads a job uses: 1 .. n_workers + 1 */
    unsigned long gen;      /* the job's number */
    sae_lm_team_fn fn;
    void *ctx;
    size_t n, chunks;       /* items, and the ranges they are cut into */
    atomic_size_t next;     /* the next chunk to claim */
    size_t active;          /* workers inside the job */
    bool open;              /* workers may still join the job */
    bool quit;
};

/* A worker's start: the team, its index (1..) in it, and the last job it
 * is not part of (the one posted before it was started). */
typedef struct team_arg {
    sae_lm_team *t;
    size_t index;
    unsigned long gen;
} team_arg;

/* Claims and runs chunks of the current job until none is left. Whoever
 * claims a chunk runs it, so a worker the scheduler wakes late costs
 * nothing: the caller takes its share. */
static void team_work(sae_lm_team *t)
{
    for (;;) {
        size_t c = atomic_fetch_add(&t->next, 1);
        if (c >= t->chunks)
            return;
        t->fn(t->ctx, t->n * c / t->chunks, t->n * (c + 1) / t->chunks);
    }
}

/* Worker index: joins each job posted while it is open and the team's size
 * counts the worker in. */
static void *team_main(void *arg)
{
    team_arg a = *(team_arg *)arg;
    free(arg);
    sae_lm_team *t = a.t;
    unsigned long seen = a.gen;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->gen == seen && !t->quit)
            pthread_cond_wait(&t->go, &t->mu);
        if (t->quit)
            break;
        seen = t->gen;
        if (!t->open || a.index >= t->size)
            continue;
        t->active++;
        pthread_mutex_unlock(&t->mu);
        team_work(t);
        pthread_mutex_lock(&t->mu);
        if (--t->active == 0)
            pthread_cond_signal(&t->done);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

sae_lm_team *sae_lm_team_new(void)
{
    sae_lm_team *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (pthread_mutex_init(&t->mu, NULL)) {
        free(t);
        return NULL;
    }
    if (pthread_cond_init(&t->go, NULL)) {
        pthread_mutex_destroy(&t->mu);
        free(t);
        return NULL;
    }
    if (pthread_cond_init(&t->done, NULL)) {
        pthread_cond_destroy(&t->go);
        pthread_mutex_destroy(&t->mu);
        free(t);
        return NULL;
    }
    t->size = 1;
    return t;
}

void sae_lm_team_free(sae_lm_team *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    for (size_t i = 0; i < t->n_workers; i++)
        pthread_join(t->tid[i], NULL);
    pthread_cond_destroy(&t->done);
    pthread_cond_destroy(&t->go);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

size_t sae_lm_team_resize(sae_lm_team *t, size_t n)
{
    if (n > TEAM_MAX)
        n = TEAM_MAX;
    while (t->n_workers + 1 < n) {
        team_arg *a = malloc(sizeof *a);
        if (!a)
            break;
        *a = (team_arg){.t = t, .index = t->n_workers + 1, .gen = t->gen};
        if (pthread_create(&t->tid[t->n_workers], NULL, team_main, a)) {
            free(a);
            break;
        }
        t->n_workers++;
    }
    /* a smaller n only means fewer threads join: the extra workers sleep */
    pthread_mutex_lock(&t->mu);
    t->size = n < 1 ? 1 : n < t->n_workers + 1 ? n : t->n_workers + 1;
    size_t size = t->size;
    pthread_mutex_unlock(&t->mu);
    return size;
}

/* Chunks per thread of a job: finer than one range each, so that rows of
 * uneven cost (the causal softmax's) and a late worker even out. */
#define TEAM_CHUNKS 8

void sae_lm_team_run(sae_lm_team *t, size_t n, size_t work, sae_lm_team_fn fn, void *ctx)
{
    size_t parts = t ? t->size : 1;
    if (parts < 2 || n < 2 || work < TEAM_MIN_WORK) {
        if (n)
            fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->ctx = ctx;
    t->n = n;
    t->chunks = n < parts * TEAM_CHUNKS ? n : parts * TEAM_CHUNKS;
    atomic_store(&t->next, 0);
    t->open = true;
    t->gen++;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    team_work(t);
    pthread_mutex_lock(&t->mu);
    t->open = false;
    while (t->active)
        pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

/* --------------------------------------------------------------- kernels */

/* The arguments of a row-wise kernel; each kernel reads the ones it needs. */
typedef struct rows_job {
    float *y;
    const float *x, *w, *b;
    size_t d;
    double eps;
} rows_job;

/* y[lo, hi) (rows of d) += b. */
static void bias_rows(void *ctx, size_t lo, size_t hi)
{
    const rows_job *j = ctx;
    for (size_t i = lo; i < hi; i++) {
        float *r = j->y + i * j->d;
        for (size_t c = 0; c < j->d; c++)
            r[c] += j->b[c];
    }
}

void sae_lm_op_linear(sae_lm_team *t, float *y, const float *x, const float *w, const float *b,
                      size_t n, size_t k, size_t m)
{
    sae_gemm_rows(w, false, k, m, x, n, y);
    if (b) {
        rows_job j = {.y = y, .b = b, .d = m};
        sae_lm_team_run(t, n, n * m, bias_rows, &j);
    }
}

/* LayerNorm of rows [lo, hi) of x into y. */
static void layernorm_rows(void *ctx, size_t lo, size_t hi)
{
    const rows_job *j = ctx;
    const size_t d = j->d;
    for (size_t i = lo; i < hi; i++) {
        const float *r = j->x + i * d;
        float *o = j->y + i * d;
        double s = 0;
        for (size_t c = 0; c < d; c++)
            s += r[c];
        double mean = s / (double)d, v = 0;
        for (size_t c = 0; c < d; c++) {
            double e = r[c] - mean;
            v += e * e;
        }
        double inv = 1.0 / sqrt(v / (double)d + j->eps);
        for (size_t c = 0; c < d; c++)
            o[c] = (float)((r[c] - mean) * inv);
    }
}

void sae_lm_op_layernorm(sae_lm_team *t, float *x_hat, const float *x, size_t n, size_t d,
                         double eps)
{
    rows_job j = {.y = x_hat, .x = x, .d = d, .eps = eps};
    sae_lm_team_run(t, n, 4 * n * d, layernorm_rows, &j);
}

/* y[lo, hi) (rows of d) = y * w + b. */
static void affine_rows(void *ctx, size_t lo, size_t hi)
{
    const rows_job *j = ctx;
    for (size_t i = lo; i < hi; i++) {
        float *r = j->y + i * j->d;
        for (size_t c = 0; c < j->d; c++)
            r[c] = r[c] * j->w[c] + (j->b ? j->b[c] : 0.0f);
    }
}

void sae_lm_op_affine(sae_lm_team *t, float *x, const float *w, const float *b, size_t n,
                      size_t d)
{
    rows_job j = {.y = x, .w = w, .b = b, .d = d};
    sae_lm_team_run(t, n, n * d, affine_rows, &j);
}

/* Element-wise kernels cut their n values into blocks of this many. */
#define ELEM_BLOCK 4096

/* The blocks of n values. */
static size_t elem_blocks(size_t n)
{
    return (n + ELEM_BLOCK - 1) / ELEM_BLOCK;
}

/* Values [lo, hi) of blocks (of j->d values in all) as a range. */
static void elem_range(const rows_job *j, size_t lo, size_t hi, size_t *a, size_t *e)
{
    *a = lo * ELEM_BLOCK;
    *e = hi * ELEM_BLOCK < j->d ? hi * ELEM_BLOCK : j->d;
}

/* y += x over blocks [lo, hi). */
static void add_blocks(void *ctx, size_t lo, size_t hi)
{
    const rows_job *j = ctx;
    size_t a, e;
    elem_range(j, lo, hi, &a, &e);
    for (size_t i = a; i < e; i++)
        j->y[i] += j->x[i];
}

void sae_lm_op_add(sae_lm_team *t, float *x, const float *a, size_t n)
{
    rows_job j = {.y = x, .x = a, .d = n};
    sae_lm_team_run(t, elem_blocks(n), n, add_blocks, &j);
}

/* 0.5 (1 + tanh(u)) is the logistic function of 2u, and expf is several
 * times cheaper than tanhf; for large negative u, expf overflows to inf and
 * the result is -0, as it should be. Over blocks [lo, hi). */
static void gelu_tanh_blocks(void *ctx, size_t lo, size_t hi)
{
    const rows_job *j = ctx;
    const float c2 = 2.0f * 0.7978845608028654f; /* 2 sqrt(2 / pi) */
    size_t a, e;
    elem_range(j, lo, hi, &a, &e);
    for (size_t i = a; i < e; i++) {
        float v = j->y[i];
        j->y[i] = v / (1.0f + expf(-c2 * (v + 0.044715f * v * v * v)));
    }
}

void sae_lm_op_gelu_tanh(sae_lm_team *t, float *x, size_t n)
{
    rows_job j = {.y = x, .d = n};
    sae_lm_team_run(t, elem_blocks(n), 8 * n, gelu_tanh_blocks, &j);
}

/* The erf form over blocks [lo, hi). */
static void gelu_erf_blocks(void *ctx, size_t lo, size_t hi)
{
    const rows_job *j = ctx;
    size_t a, e;
    elem_range(j, lo, hi, &a, &e);
    for (size_t i = a; i < e; i++)
        j->y[i] = 0.5f * j->y[i] * (1.0f + erff(j->y[i] * 0.70710678118654752f));
}

void sae_lm_op_gelu_erf(sae_lm_team *t, float *x, size_t n)
{
    rows_job j = {.y = x, .d = n};
    sae_lm_team_run(t, elem_blocks(n), 8 * n, gelu_erf_blocks, &j);
}

/* ------------------------------------------------------------- attention */

size_t sae_lm_op_attend_floats(size_t n_head, size_t max_t)
{
    size_t p = max_t < SAE_LM_ATT_PANEL ? max_t : SAE_LM_ATT_PANEL, a, b;
    if (sae_mul_size(n_head, p, &a) || sae_mul_size(a, max_t, &b))
        return 0;
    return b;
}

/* One panel's softmax: rows r0 .. r0 + rows - 1 of the sequence, keys
 * 0 .. r0 + rows - 1, each head's scores (rows, keys) at att + h · rows · keys. */
typedef struct softmax_job {
    float *att;
    size_t r0, rows, keys;
} softmax_job;

/* Softmax of the panel's rows [lo, hi), numbered head-major, in place:
 * row i of the sequence over keys j <= i, zero beyond. */
static void softmax_rows(void *ctx, size_t lo, size_t hi)
{
    const softmax_job *j = ctx;
    for (size_t it = lo; it < hi; it++) {
        float *r = j->att + it * j->keys;
        size_t i = j->r0 + it % j->rows; /* the row's query position */
        float mx = r[0];
        for (size_t c = 1; c <= i; c++)
            mx = r[c] > mx ? r[c] : mx;
        double s = 0;
        for (size_t c = 0; c <= i; c++) {
            r[c] = expf(r[c] - mx);
            s += r[c];
        }
        float inv = (float)(1.0 / s);
        for (size_t c = 0; c <= i; c++)
            r[c] *= inv;
        memset(r + i + 1, 0, (j->keys - i - 1) * sizeof *r);
    }
}

void sae_lm_op_attend(sae_lm_team *tm, float *z, size_t ldz, const float *q, const float *k,
                      const float *v, size_t ld, size_t t, size_t n_head, size_t d_head,
                      float scale, size_t panel, float *att)
{
    const int dh = (int)d_head, l = (int)ld;
    for (size_t r0 = 0; r0 < t; r0 += panel) {
        size_t rows = t - r0 < panel ? t - r0 : panel, keys = r0 + rows;
        const int m = (int)rows, n = (int)keys;
        for (size_t h = 0; h < n_head; h++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, dh, scale,
                        q + r0 * ld + h * d_head, l, k + h * d_head, l, 0.0f,
                        att + h * rows * keys, n);
        softmax_job j = {.att = att, .r0 = r0, .rows = rows, .keys = keys};
        sae_lm_team_run(tm, n_head * rows, 4 * n_head * rows * (r0 + rows / 2), softmax_rows,
                        &j);
        for (size_t h = 0; h < n_head; h++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, dh, n, 1.0f,
                        att + h * rows * keys, n, v + h * d_head, l, 0.0f,
                        z + r0 * ldz + h * d_head, (int)ldz);
    }
}

void sae_lm_op_attend_shapes(size_t t, size_t d_head, size_t count,
                             void (*add)(void *ctx, const sae_lm_gemm *g), void *ctx)
{
    for (size_t r0 = 0; r0 < t; r0 += SAE_LM_ATT_PANEL) {
        size_t rows = t - r0 < SAE_LM_ATT_PANEL ? t - r0 : SAE_LM_ATT_PANEL, keys = r0 + rows;
        add(ctx, &(sae_lm_gemm){.m = rows, .n = keys, .k = d_head, .count = count,
                                .b_trans = true});
        add(ctx, &(sae_lm_gemm){.m = rows, .n = d_head, .k = keys, .count = count});
    }
}
