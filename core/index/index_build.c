/* index_build.c: the whole build behind `sae index` (indexer.h): the
 * neighbours from the weights, one streaming pass over the slice's rows
 * (encoder threads feeding the indexer in block order), then the indexer's
 * features, the explanations and the meta table, committed atomically. A
 * build over more features than --max-state-bytes holds runs one such pass
 * per feature range into files beside the target and merges them. */
#include "index/indexer.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/dashboards.h"
#include "index/index_internal.h"
#include "index/store.h"
#include "io/activations.h"
#include "io/clock.h"
#include "sae/model.h"

/* The streaming pass, in parallel: E encoder threads encode blocks
 * k = e, e + E, ... into a ring of 2E slots while the calling thread feeds
 * the slots to the indexer strictly in block order. The statistics
 * (single-threaded, about an eighth of the pass) so overlap the GEMMs and no
 * BLAS thread spins waiting for them; the result is exactly that of a serial
 * loop. E is the BLAS thread budget, at most STREAM_MAX_ENCODERS (each
 * encoder holds a workspace of B x d_sae floats, 25 MB at d_sae 24576) and
 * at most the number of blocks; each encoder's GEMMs run on budget / E BLAS
 * threads, so up to STREAM_MAX_ENCODERS threads every GEMM is single-threaded
 * and the statistics do not depend on the thread count. An error in a block
 * (a non-finite value, a failed read) is reported when the feeder reaches
 * it, so the first bad block in row order is the one named, whatever the
 * timing. */
#define STREAM_MAX_ENCODERS 8

/* One slot of the ring: a block's sparse rows, or the error encoding it. */
typedef struct stream_slot {
    sae_sparse sp;
    float *x;      /* (B, d_in) the block's rows, kept for --correlations; else NULL */
    bool full;     /* encoded, not yet fed */
    int rc;        /* the encoder's error for this block */
    sae_error err;
} stream_slot;

/* The pass's shared state, guarded by mu: borrows the model and the
 * activations, owns the slot ring. */
typedef struct stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const sae_model *m;
    const sae_acts *acts; /* or NULL: read_rows */
    int (*read_rows)(void *ctx, uint64_t row0, size_t n, float *dst, sae_error *err);
    void *rows_ctx;
    uint64_t row0, row1;
    uint32_t keep_lo, keep_hi; /* keep_hi > 0: only features [keep_lo, keep_hi), from 0 */
    size_t B, n_enc, n_slots;
    stream_slot *slot; /* (n_slots) */
    bool stop;         /* the feeder is done (or failed): encoders return */
} stream;

/* One encoder thread's own buffers (owned) and its place in the stream. */
typedef struct encoder {
    stream *st;
    size_t e;          /* this encoder's number, 0 .. n_enc-1 */
    sae_workspace *ws;
    float *x;          /* (B, d_in) */
} encoder;

/* Reads rows [r, r + n) into x, refusing a non-finite value; drops their
 * mapped pages once read (keeps the RSS flat in corpus length). */
static int stream_read(const stream *st, uint64_t r, size_t n, float *x, sae_error *err)
{
    int rc = st->acts ? sae_acts_read(st->acts, (size_t)r, n, x, err)
                      : st->read_rows(st->rows_ctx, r, n, x, err);
    if (rc)
        return rc;
    size_t d_in = st->m->d_in;
    for (size_t i = 0; i < n * d_in; i++)
        if (!isfinite(x[i]))
            return sae_error_set(err, SAE_ERANGE,
                                 "activations row %" PRIu64 ": value %zu is not finite",
                                 r + i / d_in, i % d_in);
    if (st->acts)
        sae_acts_release(st->acts, (size_t)r, n);
    return 0;
}

/* One encoder thread: its blocks, each into the slot the feeder has freed. */
static void *encoder_main(void *arg)
{
    encoder *en = arg;
    stream *st = en->st;
    sae_encode_opts opts = {0};
    for (uint64_t k = en->e;; k += st->n_enc) {
        if (k > (st->row1 - st->row0) / st->B)
            break;
        uint64_t r = st->row0 + k * st->B;
        if (r >= st->row1)
            break;
        size_t n = st->row1 - r < st->B ? (size_t)(st->row1 - r) : st->B;
        stream_slot *sl = &st->slot[k % st->n_slots];
        pthread_mutex_lock(&st->mu);
        while (sl->full && !st->stop)
            pthread_cond_wait(&st->cv, &st->mu);
        bool stop = st->stop;
        pthread_mutex_unlock(&st->mu);
        if (stop)
            break;
        sae_error err;
        sae_sparse_reset(&sl->sp);
        float *x = sl->x ? sl->x : en->x;
        int rc = stream_read(st, r, n, x, &err);
        if (!rc)
            rc = st->keep_hi ? sae_encode_cols(st->m, en->ws, x, n, st->keep_lo, st->keep_hi,
                                               &sl->sp, &err)
                             : sae_encode(st->m, en->ws, x, n, &opts, &sl->sp, NULL, NULL, &err);
        pthread_mutex_lock(&st->mu);
        sl->rc = rc;
        if (rc)
            sl->err = err;
        sl->full = true;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        if (rc)
            break;
    }
    return NULL;
}

/* The streaming pass over rows [row0, row1) of job->acts into ix (and into
 * corr, when not NULL, with the rows themselves, and into bars when not
 * NULL; ix may be NULL for the bars' own passes). Starts the encoder threads
 * and sets OpenBLAS's process-wide thread count to budget / E for the pass,
 * restoring it on return. */
static int stream_rows(const sae_index_job *job, sae_indexer *ix, sae_corr *corr,
                       sae_act_bars *bars, uint64_t row0, uint64_t row1, size_t B,
                       sae_error *err)
{
    const sae_model *m = job->model;
    int blas = sae_get_blas_threads();
    uint64_t n_blocks = (row1 - row0 + B - 1) / B;
    size_t n_enc = (size_t)blas < STREAM_MAX_ENCODERS ? (size_t)blas : STREAM_MAX_ENCODERS;
    if (n_enc > n_blocks || !job->acts) /* read_rows: one reader, in row order */
        n_enc = n_blocks && job->acts ? (size_t)n_blocks : 1;
    stream st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .m = m,
                 .acts = job->acts, .read_rows = job->read_rows, .rows_ctx = job->rows_ctx,
                 .row0 = row0, .row1 = row1, .B = B, .n_enc = n_enc,
                 .n_slots = 2 * n_enc};
    if (ix && ix->d_sae != m->d_sae) { /* a --features range */
        st.keep_lo = ix->set.feat_lo;
        st.keep_hi = ix->set.feat_lo + (uint32_t)ix->d_sae;
    }
    encoder *en = calloc(n_enc, sizeof *en);
    pthread_t *th = calloc(n_enc, sizeof *th);
    st.slot = calloc(st.n_slots, sizeof *st.slot);
    size_t xn, started = 0;
    int rc = 0;
    if (!en || !th || !st.slot || sae_mul_size(B, m->d_in, &xn)) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the encode buffers");
        goto out;
    }
    for (size_t i = 0; i < st.n_slots; i++)
        sae_sparse_init(&st.slot[i].sp);
    for (size_t i = 0; corr && i < st.n_slots; i++)
        if (!(st.slot[i].x = malloc(xn * sizeof(float)))) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the encode buffers");
            goto out;
        }
    for (size_t e = 0; e < n_enc; e++) {
        en[e] = (encoder){.st = &st, .e = e, .ws = sae_workspace_new(m, B),
                          .x = malloc(xn * sizeof(float))};
        if (!en[e].ws || !en[e].x) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the encode buffers");
            goto out;
        }
    }
    if (n_enc > 1)
        sae_set_blas_threads(blas / (int)n_enc);
    for (; started < n_enc; started++) {
        int e = pthread_create(&th[started], NULL, encoder_main, &en[started]);
        if (e) {
            rc = sae_error_set(err, SAE_ENOMEM, "cannot start encoding thread %zu of %zu: %s",
                               started + 1, n_enc, strerror(e));
            goto out;
        }
    }
    /* In block order, whichever encoder finishes first: the indexer's
     * statistics and samples are defined by row order. */
    for (uint64_t k = 0, r = row0; r < row1; k++, r += B) {
        stream_slot *sl = &st.slot[k % st.n_slots];
        pthread_mutex_lock(&st.mu);
        while (!sl->full)
            pthread_cond_wait(&st.cv, &st.mu);
        pthread_mutex_unlock(&st.mu);
        if (sl->rc) {
            if (err)
                *err = sl->err;
            rc = sl->rc;
            goto out;
        }
        if (ix && (rc = sae_indexer_feed(ix, r, &sl->sp, err)))
            goto out;
        if (corr)
            sae_corr_feed(corr, sl->x, &sl->sp);
        if (bars)
            sae_act_bars_feed(bars, &sl->sp);
        uint64_t fed = r + sl->sp.n_rows - row0;
        pthread_mutex_lock(&st.mu);
        sl->full = false;
        pthread_cond_broadcast(&st.cv);
        pthread_mutex_unlock(&st.mu);
        if (job->progress)
            job->progress(job->progress_ctx, fed, row1 - row0);
    }
out:
    pthread_mutex_lock(&st.mu);
    st.stop = true;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
    for (size_t e = 0; e < started; e++)
        pthread_join(th[e], NULL);
    if (n_enc > 1)
        sae_set_blas_threads(blas);
    for (size_t e = 0; en && e < n_enc; e++) {
        sae_workspace_free(en[e].ws);
        free(en[e].x);
    }
    for (size_t i = 0; st.slot && i < st.n_slots; i++) {
        sae_sparse_free(&st.slot[i].sp);
        free(st.slot[i].x);
    }
    free(st.slot);
    free(en);
    free(th);
    pthread_mutex_destroy(&st.mu);
    pthread_cond_destroy(&st.cv);
    return rc;
}

/* Refuses activations that do not fit the model or the tokens file. */
static int build_check_inputs(const sae_index_job *job, sae_error *err)
{
    const sae_model *m = job->model;
    const sae_tokens *tok = job->tok;
    if (!job->acts) {
        if (job->rows_d_in != m->d_in)
            return sae_error_set(err, SAE_EDIM, "rows have d_in %zu, the model's d_in is %zu",
                                 job->rows_d_in, m->d_in);
    } else if (sae_acts_dim(job->acts) != m->d_in)
        return sae_error_set(err, SAE_EDIM,
                             "%s: activations have d_in %zu, the model's d_in is %zu",
                             sae_acts_first_path(job->acts), sae_acts_dim(job->acts), m->d_in);
    else if (sae_acts_rows(job->acts) != tok->n_tokens)
        return sae_error_set(err, SAE_EDIM,
                             "%s: the documents hold %" PRIu64 " tokens but the activations have "
                             "%zu rows",
                             tok->path, tok->n_tokens, sae_acts_rows(job->acts));
    if (job->dash && (job->set.is_shard || job->set.feat_hi))
        return sae_error_set(err, SAE_EINVAL,
                             "--unembed, --correlations and --neuronpedia-hist are for a whole "
                             "corpus and every feature, not a --shard or --features range "
                             "(merge the shards, then `sae index --upgrade`)");
    if (job->set.feat_hi > m->d_sae)
        return sae_error_set(err, SAE_EINVAL, "--features %u:%u: the model has %zu features",
                             job->set.feat_lo, job->set.feat_hi, m->d_sae);
    return sae_index_settings_check(&job->set, err);
}

/* Computes every feature's neighbours from m's decoder (they need only the
 * weights) by set's method and writes them to w; rep says how (an approximate
 * build's method and recall also go in the meta table). */
static int build_neighbours(const sae_model *m, const sae_index_settings *set,
                            sae_store_writer *w, sae_nb_report *rep, sae_error *err)
{
    size_t k = set->neighbours < m->d_sae ? set->neighbours : m->d_sae - 1;
    size_t nbn;
    float *nb_cos = NULL, *wide = NULL;
    uint32_t *nb_idx = NULL;
    const float *w_dec;
    int rc = 0;
    if (sae_mul_size(m->d_sae, k ? k : 1, &nbn) || !(nb_idx = malloc(nbn * sizeof *nb_idx)) ||
        !(nb_cos = malloc(nbn * sizeof *nb_cos))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
        goto out;
    }
    /* 16-bit decoders are widened for the one F32 GEMM of the neighbours;
     * with none asked for (k 0) they are not read (the copy is 9.7 GB at
     * d_in 2304 x 1M features). */
    w_dec = m->w_dec;
    if ((k && (rc = sae_model_w_dec_f32(m, &w_dec, &wide, err))) ||
        (rc = sae_neighbours_by(w_dec, m->dec_norm, m->d_sae, m->d_out, k,
                                set->neighbours_method, set->seed, nb_idx, nb_cos, rep, err)))
        goto out;
    /* No neighbours were found by any method: no approximate method to
     * report or store (a build of many passes, merged, has none either). */
    if (k == 0)
        rep->method = SAE_NB_EXACT;
    for (size_t f = 0; f < m->d_sae && !rc; f++)
        rc = sae_store_put_neighbours(w, (uint32_t)f, nb_idx + f * k, nb_cos + f * k, k, err);
    /* Exact builds write no keys, so their files are as before. */
    if (!rc && rep->method == SAE_NB_APPROX) {
        char v[64];
        snprintf(v, sizeof v, "%.4f (%zu features sampled, k %zu)", rep->recall, rep->sampled, k);
        if (!(rc = sae_store_put_meta(w, "neighbours_method", "approx (FAISS k-means lists)", err)))
            rc = sae_store_put_meta(w, "neighbours_recall", v, err);
    }
out:
    free(nb_idx);
    free(nb_cos);
    free(wide);
    return rc;
}

/* Writes the explanations, in file order, and the meta table of a build. */
static int build_meta(const sae_index_job *job, const sae_indexer *ix, sae_store_writer *w,
                      sae_error *err)
{
    const sae_model *m = job->model;
    const sae_tokens *tok = job->tok;
    const sae_index_settings *set = &job->set;
    const sae_explanations *e = job->expl;
    int rc;
    for (size_t i = 0; e && i < e->n; i++)
        if ((rc = sae_store_put_explanation(w, &e->items[i], err)))
            return rc;
    sae_store_info info;
    memset(&info, 0, sizeof info);
    memcpy(info.weights_digest, m->weights_digest, sizeof info.weights_digest);
    info.d_in = m->d_in;
    info.d_sae = m->d_sae;
    info.n_tokens = sae_indexer_tokens(ix);
    info.n_documents = sae_indexer_documents(ix);
    info.corpus_tokens = tok->n_tokens;
    info.corpus_documents = tok->n_docs;
    info.top = set->top;
    info.quantiles = set->quantiles;
    info.per_quantile = set->per_quantile;
    info.context = set->context;
    info.neighbours = set->neighbours;
    info.seed = set->seed;
    info.block_rows = set->block_rows;
    if (set->is_shard && set->feat_hi)
        snprintf(info.shard, sizeof info.shard, "%u/%u features %u:%u", set->shard,
                 set->n_shards, set->feat_lo, set->feat_hi);
    else if (set->is_shard)
        snprintf(info.shard, sizeof info.shard, "%u/%u", set->shard, set->n_shards);
    snprintf(info.histogram, sizeof info.histogram, "%s", SAE_HIST_DEFINITION);
    memcpy(info.tokens_digest, tok->digest, sizeof info.tokens_digest);
    if (e)
        memcpy(info.explanations_digest, e->digest, sizeof info.explanations_digest);
    info.n_explanations = e ? e->n : 0;
    return sae_store_put_info(w, &info, err);
}

int sae_ix_act_bars_passes(const sae_index_job *job, sae_act_bars *bars, bool ranged,
                           uint64_t row0, uint64_t row1, sae_error *err)
{
    int rc = 0;
    if (!ranged)
        rc = stream_rows(job, NULL, NULL, bars, row0, row1, job->set.block_rows, err);
    sae_act_bars_start_bins(bars);
    return rc ? rc : stream_rows(job, NULL, NULL, bars, row0, row1, job->set.block_rows, err);
}

/* One pass: the build of job (checked) over its --features range, or every
 * feature, into out_path. Neighbours are computed (for every feature) by
 * the build whose range starts at 0 only: they need the whole decoder, not
 * the corpus, and merge copies them from that file. */
static int build_one(const sae_index_job *job, const char *out_path, sae_error *err)
{
    double t0 = sae_clock_s(), t1 = t0, t2 = t0;
    const sae_model *m = job->model;
    const sae_index_settings *set = &job->set;
    size_t n_feat = set->feat_hi ? set->feat_hi - set->feat_lo : m->d_sae;
    sae_indexer *ix = NULL;
    sae_store_writer *w = NULL;
    sae_nb_report nb = {0}; /* stays zero in a range that does not start at 0 */
    sae_corr *corr = NULL;
    sae_act_bars *bars = NULL;
    size_t doc_lo, doc_hi;
    uint64_t row0, row1;
    int rc;
    sae_shard_docs(job->tok->n_docs, set->shard, set->n_shards, &doc_lo, &doc_hi);
    if ((rc = sae_indexer_new(n_feat, set, job->tok, doc_lo, doc_hi, &ix, err)) ||
        (rc = sae_store_writer_open(out_path, &w, err)) ||
        (set->feat_lo == 0 && (rc = build_neighbours(m, set, w, &nb, err))) ||
        (job->dash && job->dash->correlations && (rc = sae_corr_new(m->d_sae, m->d_in, &corr, err))) ||
        (job->dash && job->dash->act_bars && (rc = sae_act_bars_new(m->d_sae, &bars, err))))
        goto out;
    t1 = sae_clock_s();
    /* One pass over the slice, in whole blocks. */
    sae_indexer_rows(ix, &row0, &row1);
    if ((rc = stream_rows(job, ix, corr, bars, row0, row1, set->block_rows, err)) ||
        (rc = sae_indexer_finish(ix, err)) ||
        (bars && (rc = sae_ix_act_bars_passes(job, bars, true, row0, row1, err))))
        goto out;
    t2 = sae_clock_s();
    if ((rc = sae_indexer_write(ix, m->dec_norm, w, err)) || (rc = build_meta(job, ix, w, err)) ||
        (job->dash && (rc = sae_dash_write(m, job->dash, corr, bars, w, err))))
        goto out;
    rc = sae_store_writer_commit(w, err);
    w = NULL;
    if (!rc && job->timing) {
        job->timing->neighbours_s = t1 - t0;
        job->timing->nb = nb;
        job->timing->stream_s = t2 - t1;
        job->timing->write_s = sae_clock_s() - t2;
    }
out:
    if (w)
        sae_store_writer_abort(w);
    sae_indexer_free(ix);
    sae_corr_free(corr);
    sae_act_bars_free(bars);
    return rc;
}

/* The file of pass p of n beside out_path (path_cap bytes). */
static void pass_path(const char *out_path, uint32_t p, uint32_t n, char *path, size_t path_cap)
{
    snprintf(path, path_cap, "%s.pass-%u-of-%u", out_path, p + 1, n);
}

/* --max-state-bytes: n_passes builds of job, each over a feature range as
 * --features (a range shard of the whole corpus) into a file beside
 * out_path, then their merge into out_path; the pass files are removed
 * whatever happens. The merge equals one pass byte for byte, as merging
 * range shards does. */
static int build_passes(const sae_index_job *job, const char *out_path, uint32_t n_passes,
                        sae_error *err)
{
    size_t d = job->model->d_sae, cap = strlen(out_path) + 64;
    char *names = calloc(n_passes, cap);
    const char **paths = calloc(n_passes, sizeof *paths);
    sae_index_timing sum = {0}, t;
    sae_store_writer *w = NULL;
    uint32_t built = 0;
    int rc = 0;
    if (!names || !paths) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t p = 0; p < n_passes && !rc; p++) {
        sae_index_job j = *job;
        j.set.is_shard = true;
        j.set.feat_lo = (uint32_t)((unsigned __int128)d * p / n_passes);
        j.set.feat_hi = (uint32_t)((unsigned __int128)d * (p + 1) / n_passes);
        j.timing = &t;
        paths[p] = names + p * cap;
        pass_path(out_path, p, n_passes, names + p * cap, cap);
        if (job->on_pass)
            job->on_pass(job->progress_ctx, p, n_passes, j.set.feat_lo, j.set.feat_hi);
        if (!(rc = build_one(&j, paths[p], err))) {
            built++;
            sum.neighbours_s += t.neighbours_s;
            sum.stream_s += t.stream_s;
            sum.write_s += t.write_s;
        }
    }
    double t0 = sae_clock_s();
    if (!rc && !(rc = sae_store_writer_open(out_path, &w, err)) &&
        !(rc = sae_merge_shards(paths, n_passes, w, err))) {
        rc = sae_store_writer_commit(w, err);
        w = NULL;
    }
    if (w)
        sae_store_writer_abort(w);
    sum.write_s += sae_clock_s() - t0;
    if (!rc && job->timing)
        *job->timing = sum;
out:
    for (uint32_t p = 0; p < built; p++)
        unlink(paths[p]);
    free(names);
    free(paths);
    return rc;
}

int sae_index_build(const sae_index_job *job, const char *out_path, sae_error *err)
{
    int rc = build_check_inputs(job, err);
    if (rc)
        return rc;
    const sae_index_settings *set = &job->set;
    size_t n_feat = set->feat_hi ? set->feat_hi - set->feat_lo : job->model->d_sae;
    uint32_t passes = sae_index_passes(n_feat, set, job->max_state_bytes);
    if (passes > 1 && (set->is_shard || set->feat_hi))
        return sae_error_set(err, SAE_EINVAL,
                             "--max-state-bytes %" PRIu64 ": the state of these %zu features "
                             "(%.1f MB) needs %u passes, and passes are for a whole build, not "
                             "a --shard or --features range: give narrower --features ranges "
                             "or raise the bound",
                             job->max_state_bytes, n_feat,
                             sae_indexer_state_bytes(n_feat, set) / 1e6, passes);
    if (passes > 1 && job->dash)
        return sae_error_set(err, SAE_EINVAL,
                             "--max-state-bytes %" PRIu64 ": the state (%.1f MB) needs %u "
                             "passes, and --unembed, --correlations and --neuronpedia-hist need "
                             "one: raise the bound, or build without them and add --unembed and "
                             "--neuronpedia-hist with `sae index --upgrade`",
                             job->max_state_bytes, sae_indexer_state_bytes(n_feat, set) / 1e6,
                             passes);
    if (passes > 1)
        return build_passes(job, out_path, passes, err);
    if (job->on_pass)
        job->on_pass(job->progress_ctx, 0, 1, set->feat_hi ? set->feat_lo : 0,
                     set->feat_hi ? set->feat_hi : job->model->d_sae);
    if (!set->feat_hi || set->is_shard)
        return build_one(job, out_path, err);
    sae_index_job j = *job; /* a --features range is a shard: it keeps its candidates */
    j.set.is_shard = true;
    return build_one(&j, out_path, err);
}
