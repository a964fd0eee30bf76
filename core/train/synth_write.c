/* synth_write.c: `sae synth`: draws the planted features' directions and
 * magnitudes from the seed, builds every token's activation from the features
 * its rules fire, and writes the four files (synth.h says what is in them). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/outfile.h"
#include "io/rng.h"
#include "io/safetensors.h"
#include "train/synth_int.h"

void sae_synth_opts_init(sae_synth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->noise = -1;
}

char *synth_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The planted features of one run: what truth.safetensors and truth.jsonl
 * hold. All arrays owned. */
typedef struct planted {
    size_t n, d_in;
    float *dirs;    /* (n, d_in) unit directions */
    float *mags;    /* (n) magnitudes m_j */
    size_t *counts; /* (n) tokens on which each fires */
} planted;

static void planted_free(planted *p)
{
    free(p->dirs);
    free(p->mags);
    free(p->counts);
}

/* Fills o from in with every default resolved and checks it. */
static int resolve_opts(const sae_synth_opts *in, sae_synth_opts *o, sae_error *err)
{
    *o = *in;
    if (!o->d_in)
        o->d_in = 256;
    if (!o->max_tokens)
        o->max_tokens = 200000;
    if (o->noise < 0)
        o->noise = 0.02;
    if (o->d_in > (1u << 20))
        return sae_error_set(err, SAE_EINVAL, "d_in %zu is too large (at most 2^20)", o->d_in);
    if (!isfinite(o->noise))
        return sae_error_set(err, SAE_EINVAL, "noise must be finite");
    return 0;
}

/* Draws every feature's unit direction (d_in normals, normalised) and then
 * its magnitude, uniform in [1.5, 3], feature by feature from the seed; counts
 * start at 0. */
static int planted_draw(planted *p, size_t d_in, uint64_t seed, sae_error *err)
{
    size_t nf = sae_synth_n_features();
    p->n = nf;
    p->d_in = d_in;
    p->dirs = malloc(nf * d_in * sizeof *p->dirs);
    p->mags = malloc(nf * sizeof *p->mags);
    p->counts = calloc(nf, sizeof *p->counts);
    if (!p->dirs || !p->mags || !p->counts)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for %zu features", nf);
    sae_rng rng;
    sae_rng_seed(&rng, seed);
    for (size_t f = 0; f < nf; f++) {
        float *v = p->dirs + f * d_in;
        double s = 0;
        for (size_t j = 0; j < d_in; j++) {
            v[j] = (float)sae_rng_normal(&rng);
            s += (double)v[j] * v[j];
        }
        for (size_t j = 0; j < d_in; j++)
            v[j] = (float)(v[j] / sqrt(s));
        p->mags[f] = (float)(1.5 + 1.5 * sae_rng_uniform(&rng));
    }
    return 0;
}

/* The activations x (n_tokens, d_in) of the corpus, token by token in corpus
 * order: noise, then m_j·u_tj·dir_j for each active feature j (synth.h), from
 * a stream of its own seeded from seed. Counts each feature's tokens into
 * p->counts and the active pairs into *total_active. *out is the caller's. */
static int plant(const sae_synth_corpus *c, planted *p, double noise, uint64_t seed,
                 float **out, size_t *total_active, sae_error *err)
{
    size_t d_in = p->d_in, nf = p->n, bytes, row = 0, total = 0;
    if (sae_mul_size(c->n_tokens, d_in * sizeof(float), &bytes))
        return sae_error_set(err, SAE_ENOMEM, "activations size overflows");
    float *x = malloc(bytes);
    uint8_t *active = NULL;
    int rc = 0;
    if (!x) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for %zu x %zu activations",
                           c->n_tokens, d_in);
        goto out;
    }
    sae_rng rng;
    sae_rng_seed(&rng, seed ^ 0x746f6b656e73ull);
    for (size_t di = 0; di < c->n_docs; di++) {
        const sae_synth_doc *d = &c->docs[di];
        uint8_t *grown = realloc(active, d->n_tokens * nf);
        if (!grown) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        active = grown;
        sae_synth_active(d, active);
        for (size_t t = 0; t < d->n_tokens; t++, row++) {
            float *xr = x + row * d_in;
            for (size_t j = 0; j < d_in; j++)
                xr[j] = (float)(noise * sae_rng_normal(&rng));
            for (size_t f = 0; f < nf; f++) {
                if (!active[t * nf + f])
                    continue;
                p->counts[f]++;
                total++;
                float coef = (float)(p->mags[f] * (0.5 + sae_rng_uniform(&rng)));
                const float *v = p->dirs + f * d_in;
                for (size_t j = 0; j < d_in; j++)
                    xr[j] += coef * v[j];
            }
        }
    }
out:
    free(active);
    if (rc) {
        free(x);
        return rc;
    }
    *out = x;
    *total_active = total;
    return 0;
}

/* Saves the tensors added to w (which it frees) as dir/name, with the run's
 * seed in the metadata. */
static int save_tensors(sae_st_writer *w, const char *dir, const char *name, const char *seed,
                        sae_error *err)
{
    char *path = synth_join(dir, name);
    int rc;
    if (!w || !path || sae_st_writer_meta(w, "seed", seed))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
    else
        rc = sae_st_writer_save(w, path, err);
    sae_st_writer_free(w);
    free(path);
    return rc;
}

/* Writes dir/activations.safetensors: "activations" (n, d_in). */
static int write_activations(const char *dir, const float *x, size_t n, size_t d_in,
                             const char *seed, sae_error *err)
{
    sae_st_writer *w = sae_st_writer_new();
    uint64_t shape[2] = {n, d_in};
    if (w && (sae_st_writer_add(w, "activations", SAE_DT_F32, 2, shape, x) ||
              sae_st_writer_meta(w, "generator", "sae synth"))) {
        sae_st_writer_free(w);
        w = NULL;
    }
    return save_tensors(w, dir, "activations.safetensors", seed, err);
}

/* Writes dir/truth.safetensors: "directions" (n, d_in) and "magnitudes" (n). */
static int write_truth_tensors(const char *dir, const planted *p, const char *seed,
                               sae_error *err)
{
    sae_st_writer *w = sae_st_writer_new();
    uint64_t dshape[2] = {p->n, p->d_in}, mshape[1] = {p->n};
    if (w && (sae_st_writer_add(w, "directions", SAE_DT_F32, 2, dshape, p->dirs) ||
              sae_st_writer_add(w, "magnitudes", SAE_DT_F32, 1, mshape, p->mags))) {
        sae_st_writer_free(w);
        w = NULL;
    }
    return save_tensors(w, dir, "truth.safetensors", seed, err);
}

/* Writes dir/name one JSON object a line, line(i, ctx) giving the i-th of n
 * (a new reference, or NULL when out of memory). */
static int write_jsonl(const char *dir, const char *name, size_t n,
                       json_t *(*line)(size_t i, const void *ctx), const void *ctx,
                       sae_error *err)
{
    char *path = synth_join(dir, name);
    if (!path)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    sae_outfile out;
    int rc = sae_outfile_open(&out, path, err);
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *o = line(i, ctx);
        if (!o)
            rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
        else if (json_dumpf(o, out.fp, JSON_COMPACT | JSON_PRESERVE_ORDER) ||
                 fputc('\n', out.fp) == EOF)
            rc = sae_error_set(err, SAE_EIO, "%s: write failed", path);
        json_decref(o);
    }
    if (!rc)
        rc = sae_outfile_commit(&out, err);
    else
        sae_outfile_abort(&out);
    free(path);
    return rc;
}

/* Line i of truth.jsonl: {"index", "label", "count", "magnitude"}. */
static json_t *truth_line(size_t i, const void *ctx)
{
    const planted *p = ctx;
    json_t *o = json_object();
    json_object_set_new(o, "index", json_integer((json_int_t)i));
    json_object_set_new(o, "label", json_string(sae_synth_label(i)));
    json_object_set_new(o, "count", json_integer((json_int_t)p->counts[i]));
    json_object_set_new(o, "magnitude", json_real(p->mags[i]));
    return o;
}

/* Line i of tokens.jsonl: {"id", "tokens"} of document i. */
static json_t *tokens_line(size_t i, const void *ctx)
{
    const sae_synth_doc *d = &((const sae_synth_corpus *)ctx)->docs[i];
    json_t *o = json_object(), *toks = json_array();
    json_object_set_new(o, "id", json_string(d->id));
    for (size_t t = 0; t < d->n_tokens; t++)
        json_array_append_new(toks, json_string(d->tokens[t]));
    json_object_set_new(o, "tokens", toks);
    return o;
}

/* Writes the four files into dir (created if missing). */
static int write_files(const char *dir, const sae_synth_corpus *c, const planted *p,
                       const float *x, uint64_t seed, sae_error *err)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return sae_error_set(err, SAE_EIO, "%s: %s", dir, strerror(errno));
    char seed_s[32];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
    int rc;
    if ((rc = write_activations(dir, x, c->n_tokens, p->d_in, seed_s, err)) ||
        (rc = write_truth_tensors(dir, p, seed_s, err)) ||
        (rc = write_jsonl(dir, "truth.jsonl", p->n, truth_line, p, err)))
        return rc;
    return write_jsonl(dir, "tokens.jsonl", c->n_docs, tokens_line, c, err);
}

int sae_synth_write(const sae_synth_opts *opts, const char *out_dir, sae_synth_summary *sum,
                    sae_error *err)
{
    sae_synth_opts o;
    int rc = resolve_opts(opts, &o, err);
    if (rc)
        return rc;
    sae_synth_corpus c = {0};
    planted p = {0};
    float *x = NULL;
    size_t n_files = 0, total_active = 0;
    if ((rc = synth_read_corpus(o.texts, o.texts ? o.n_texts : 0, o.max_tokens, &c, &n_files,
                                err)) ||
        (rc = planted_draw(&p, o.d_in, o.seed, err)) ||
        (rc = plant(&c, &p, o.noise, o.seed, &x, &total_active, err)) ||
        (rc = write_files(out_dir, &c, &p, x, o.seed, err)))
        goto out;
    if (sum) {
        memset(sum, 0, sizeof *sum);
        sum->n_files = n_files;
        sum->n_docs = c.n_docs;
        sum->n_tokens = c.n_tokens;
        sum->n_features = p.n;
        sum->d_in = o.d_in;
        for (size_t f = 0; f < p.n; f++)
            sum->n_absent += p.counts[f] == 0;
        sum->mean_l0 = (double)total_active / (double)c.n_tokens;
    }
out:
    sae_synth_corpus_free(&c);
    planted_free(&p);
    free(x);
    return rc;
}
