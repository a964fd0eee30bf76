/* train_save.c: the model folder a trainer writes: sae_weights.safetensors
 * (SAELens names, or W_l/b_l for the autoencoder) and cfg.json with the
 * training settings, loadable by sae_model_load. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/outfile.h"
#include "io/safetensors.h"
#include "train/train_int.h"

/* Writes text to path through an outfile (temporary file + rename). */
static int write_text_atomic(const char *path, const char *text, sae_error *err)
{
    sae_outfile out;
    int rc = sae_outfile_open(&out, path, err);
    if (rc)
        return rc;
    fputs(text, out.fp); /* a failed write is seen by commit */
    return sae_outfile_commit(&out, err);
}

/* The "training" section of cfg.json. */
static json_t *training_json(const sae_trainer *t, const char *const *sources, size_t n_sources)
{
    const sae_train_opts *o = &t->o;
    json_t *j = json_object();
    json_t *src = json_array();
    for (size_t i = 0; i < n_sources; i++)
        json_array_append_new(src, json_string(sources[i]));
    json_object_set_new(j, "activations", src);
    json_object_set_new(j, "rows", json_integer((json_int_t)t->data->n_rows));
    json_object_set_new(j, "steps", json_integer((json_int_t)o->steps));
    json_object_set_new(j, "batch", json_integer((json_int_t)o->batch));
    json_object_set_new(j, "lr", json_real(o->lr));
    json_object_set_new(j, "lr_warmup_steps", json_integer((json_int_t)o->lr_warmup));
    json_object_set_new(j, "lr_decay_fraction", json_real(o->decay_frac));
    if (o->arch == SAE_ARCH_STANDARD) {
        json_object_set_new(j, "l1_coefficient", json_real(o->l1));
        json_object_set_new(j, "l1_warmup_fraction", json_real(o->l1_warmup_frac));
    }
    if (o->arch != SAE_ARCH_AUTOENCODER) {
        json_object_set_new(j, "init_decoder_norm", json_real(o->init_norm));
        json_object_set_new(j, "dead_window_rows", json_integer((json_int_t)o->dead_window));
        json_object_set_new(j, "resample", json_boolean(o->resample));
        json_object_set_new(j, "resample_duplicate_cosine", json_real(o->dup_cos));
    }
    json_object_set_new(j, "optimizer", json_string("adam(0.9, 0.999, 1e-8)"));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(j, "seconds", json_real(t->seconds));
    const sae_train_stats *st = &t->last;
    json_object_set_new(j, "rows_seen", json_integer((json_int_t)st->rows));
    json_object_set_new(j, "final_mse", json_real(st->mse));
    json_object_set_new(j, "final_fvu", json_real(st->fvu));
    json_object_set_new(j, "final_l0", json_real(st->l0));
    json_object_set_new(j, "final_dead", json_integer((json_int_t)st->dead));
    json_object_set_new(j, "resampled", json_integer((json_int_t)st->resampled));
    return j;
}

/* Adds the autoencoder's layers, with the input scale folded into the first
 * layer (W_0·s) and undone on the last (W_L/s, b_L/s). */
static int add_ae_tensors(const sae_trainer *t, sae_st_writer *w, sae_error *err)
{
    const sae_train_shape *s = &t->shape;
    size_t dims[SAE_AE_MAX_LINEAR + 1], n_lin = train_ae_dims(s, dims);
    for (size_t l = 0; l < n_lin; l++) {
        size_t nw = dims[l] * dims[l + 1];
        float *wbuf = malloc(nw * sizeof *wbuf), *bbuf = malloc(dims[l + 1] * sizeof *bbuf);
        int rc = 0;
        if (!wbuf || !bbuf) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto next;
        }
        double wf = 1, bf = 1;
        if (l == 0)
            wf *= t->scale;
        if (l + 1 == n_lin)
            wf /= t->scale, bf /= t->scale;
        for (size_t i = 0; i < nw; i++)
            wbuf[i] = (float)(t->p.w[l][i] * wf);
        for (size_t i = 0; i < dims[l + 1]; i++)
            bbuf[i] = (float)(t->p.b[l][i] * bf);
        char wn[32], bn[32];
        snprintf(wn, sizeof wn, "W_%zu", l);
        snprintf(bn, sizeof bn, "b_%zu", l);
        uint64_t ws[2] = {dims[l], dims[l + 1]}, bs[1] = {dims[l + 1]};
        if (sae_st_writer_add(w, wn, SAE_DT_F32, 2, ws, wbuf) ||
            sae_st_writer_add(w, bn, SAE_DT_F32, 1, bs, bbuf))
            rc = sae_error_set(err, SAE_ENOMEM, "adding %s to the weights file", wn);
    next:
        free(wbuf);
        free(bbuf);
        if (rc)
            return rc;
    }
    return 0;
}

int sae_trainer_save(const sae_trainer *t, const char *dir, const char *const *sources,
                     size_t n_sources, sae_error *err)
{
    const sae_train_shape *s = &t->shape;
    const sae_train_opts *o = &t->o;
    sae_st_writer *w = NULL;
    json_t *cfg = NULL;
    char *text = NULL, *path = NULL;
    int rc = 0;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return sae_error_set(err, SAE_EIO, "%s: %s", dir, strerror(errno));
    size_t plen = strlen(dir) + 32;
    if (!(path = malloc(plen)) || !(w = sae_st_writer_new())) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    bool ae = s->arch == SAE_ARCH_AUTOENCODER;
    if (ae) {
        if ((rc = add_ae_tensors(t, w, err)))
            goto out;
    } else {
        uint64_t we[2] = {s->d_in, s->d_sae}, be[1] = {s->d_sae};
        uint64_t wd[2] = {s->d_sae, s->d_in}, bd[1] = {s->d_in};
        if (sae_st_writer_add(w, "W_enc", SAE_DT_F32, 2, we, t->p.w_enc) ||
            sae_st_writer_add(w, "b_enc", SAE_DT_F32, 1, be, t->p.b_enc) ||
            sae_st_writer_add(w, "W_dec", SAE_DT_F32, 2, wd, t->p.w_dec) ||
            sae_st_writer_add(w, "b_dec", SAE_DT_F32, 1, bd, t->p.b_dec)) {
            rc = sae_error_set(err, SAE_ENOMEM, "adding tensors to the weights file");
            goto out;
        }
    }
    snprintf(path, plen, "%s/sae_weights.safetensors", dir);
    if ((rc = sae_st_writer_save(w, path, err)))
        goto out;

    cfg = json_object();
    json_object_set_new(cfg, "architecture", json_string(sae_arch_name(s->arch)));
    json_object_set_new(cfg, "d_in", json_integer((json_int_t)s->d_in));
    json_object_set_new(cfg, "d_sae", json_integer((json_int_t)s->d_sae));
    if (s->arch == SAE_ARCH_TOPK)
        json_object_set_new(cfg, "k", json_integer((json_int_t)s->k));
    if (ae) {
        json_t *layers = json_array();
        for (size_t i = 0; i < s->n_layers; i++)
            json_array_append_new(layers, json_integer((json_int_t)s->layers[i]));
        json_object_set_new(cfg, "layers", layers);
        json_object_set_new(cfg, "apply_b_dec_to_input", json_false());
        json_object_set_new(cfg, "normalize_activations", json_string("none"));
    } else {
        json_object_set_new(cfg, "apply_b_dec_to_input", json_true());
        json_object_set_new(cfg, "normalize_activations",
                            json_string("expected_average_only_in"));
        json_object_set_new(cfg, "norm_scaling_factor", json_real(t->scale));
    }
    json_object_set_new(cfg, "rescale_acts_by_decoder_norm", json_false());
    json_object_set_new(cfg, "dtype", json_string("float32"));
    json_object_set_new(cfg, "device", json_string("cpu"));
    json_object_set_new(cfg, "model_name", json_string(o->model_name));
    json_object_set_new(cfg, "hook_name", json_string(o->hook_name));
    json_object_set_new(cfg, "training", training_json(t, sources, n_sources));
    text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory writing cfg.json");
        goto out;
    }
    snprintf(path, plen, "%s/cfg.json", dir);
    rc = write_text_atomic(path, text, err);
out:
    free(text);
    json_decref(cfg);
    sae_st_writer_free(w);
    free(path);
    return rc;
}
