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

/* Adds the SAE's tensors with the input scale s folded in as SAELens's
 * fold_activation_norm_scaling_factor does at the end of training (SL6
 * sae.py, SL5 sae.py l.485): W_enc·s, W_dec/s, b_dec/s; b_enc as it is. The
 * folded SAE reads raw activations, so the folder needs no normalisation and
 * SAELens, which never reads a norm_scaling_factor, encodes it as saed does:
 * (x − b_dec/s)·(W_enc·s) + b_enc = (x·s − b_dec)·W_enc + b_enc, and
 * decoding gives (f·W_dec + b_dec)/s. Products are taken in double, each
 * rounded once to float. */
static int add_sae_tensors(const sae_trainer *t, sae_st_writer *w, sae_error *err)
{
    const sae_train_shape *s = &t->shape;
    size_t nm = s->d_in * s->d_sae;
    float *we = malloc(nm * sizeof *we), *wd = malloc(nm * sizeof *wd);
    float *bd = malloc(s->d_in * sizeof *bd);
    int rc = 0;
    if (!we || !wd || !bd) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nm; i++) {
        we[i] = (float)((double)t->p.w_enc[i] * t->scale);
        wd[i] = (float)((double)t->p.w_dec[i] / t->scale);
    }
    for (size_t j = 0; j < s->d_in; j++)
        bd[j] = (float)((double)t->p.b_dec[j] / t->scale);
    uint64_t se[2] = {s->d_in, s->d_sae}, sb[1] = {s->d_sae};
    uint64_t sd[2] = {s->d_sae, s->d_in}, sbd[1] = {s->d_in};
    if (sae_st_writer_add(w, "W_enc", SAE_DT_F32, 2, se, we) ||
        sae_st_writer_add(w, "b_enc", SAE_DT_F32, 1, sb, t->p.b_enc) ||
        sae_st_writer_add(w, "W_dec", SAE_DT_F32, 2, sd, wd) ||
        sae_st_writer_add(w, "b_dec", SAE_DT_F32, 1, sbd, bd))
        rc = sae_error_set(err, SAE_ENOMEM, "adding tensors to the weights file");
out:
    free(we);
    free(wd);
    free(bd);
    return rc;
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
    } else if ((rc = add_sae_tensors(t, w, err))) {
        goto out;
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
    } else {
        json_object_set_new(cfg, "apply_b_dec_to_input", json_true());
    }
    /* The scale is folded into the weights (add_sae_tensors, add_ae_tensors). */
    json_object_set_new(cfg, "normalize_activations", json_string("none"));
    json_object_set_new(cfg, "rescale_acts_by_decoder_norm", json_false());
    json_object_set_new(cfg, "dtype", json_string("float32"));
    json_object_set_new(cfg, "device", json_string("cpu"));
    /* SAELens 6's layout: the names under metadata, with a sae_lens_version
     * of at least 6.0.0, without which SAELens takes the pre-6.0 path
     * (handle_pre_6_0_config), which discards a nested metadata. */
    json_object_set_new(cfg, "metadata",
                        json_pack("{s:s, s:s, s:s}", "sae_lens_version", "6.0.0", "model_name",
                                  o->model_name, "hook_name", o->hook_name));
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
