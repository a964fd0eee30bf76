/* window.c: SAELens' packing of documents into windows (window.h). */
#include "lm/window.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sae/model_cfg.h" /* sae_model_cfg_read: the capped, duplicate-rejecting JSON reader */

void sae_window_opts_default(sae_window_opts *o)
{
    memset(o, 0, sizeof *o);
    o->context = 128;
    o->prepend_bos = true;
    o->bos = -1;
    o->sep = -1;
    o->step = 1;
}

/* cfg's key k, at the top or else under "metadata" (borrowed; NULL: absent). */
static json_t *cfg_key(json_t *cfg, const char *k)
{
    json_t *v = json_object_get(cfg, k);
    json_t *meta = json_object_get(cfg, "metadata");
    if (!v && json_is_object(meta))
        v = json_object_get(meta, k);
    return v;
}

/* One bound of seqpos_slice: null (absent) or an integer. */
static int slice_bound(json_t *v, bool *has, int64_t *x, const char *path, sae_error *err)
{
    if (json_is_null(v)) {
        *has = false;
        return 0;
    }
    if (!json_is_integer(v))
        return sae_error_set(err, SAE_EINVAL, "%s: seqpos_slice: expected integers or null", path);
    *has = true;
    *x = json_integer_value(v);
    return 0;
}

/* seqpos_slice: [start], [start, stop] or [start, stop, step] as a Python slice. */
static int read_slice(json_t *a, sae_window_opts *o, const char *path, sae_error *err)
{
    size_t n = json_array_size(a);
    if (!json_is_array(a) || n < 1 || n > 3)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: seqpos_slice: expected a list of 1 to 3 integers or nulls", path);
    o->has_start = o->has_stop = false;
    o->step = 1;
    bool has_step = false;
    int64_t step = 1;
    if (n == 1)
        return slice_bound(json_array_get(a, 0), &o->has_stop, &o->stop, path, err);
    if (slice_bound(json_array_get(a, 0), &o->has_start, &o->start, path, err) ||
        slice_bound(json_array_get(a, 1), &o->has_stop, &o->stop, path, err) ||
        (n == 3 && slice_bound(json_array_get(a, 2), &has_step, &step, path, err)))
        return -1;
    if (has_step && step < 1)
        return sae_error_set(err, SAE_EINVAL, "%s: seqpos_slice: the step must be positive", path);
    o->step = has_step ? step : 1;
    return 0;
}

int sae_window_opts_read_cfg(const char *path, sae_window_opts *o, bool *sep_is_bos,
                             sae_error *err)
{
    struct stat st;
    if (stat(path, &st) && errno == ENOENT)
        return 0;
    json_t *cfg;
    if (sae_model_cfg_read(path, &cfg, err))
        return -1;
    int rc = 0;
    json_t *v;
    if ((v = cfg_key(cfg, "context_size")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            rc = sae_error_set(err, SAE_EINVAL, "%s: context_size: expected a positive integer",
                               path);
        else
            o->context = (size_t)json_integer_value(v);
    }
    if (!rc && (v = cfg_key(cfg, "prepend_bos")) && !json_is_null(v)) {
        if (!json_is_boolean(v))
            rc = sae_error_set(err, SAE_EINVAL, "%s: prepend_bos: expected true or false", path);
        else
            o->prepend_bos = json_is_true(v);
    }
    if (!rc && (v = cfg_key(cfg, "disable_concat_sequences")) && !json_is_null(v)) {
        if (!json_is_boolean(v))
            rc = sae_error_set(err, SAE_EINVAL,
                               "%s: disable_concat_sequences: expected true or false", path);
        else
            o->no_concat = json_is_true(v);
    }
    if (!rc && (v = cfg_key(cfg, "seqpos_slice")) && !json_is_null(v))
        rc = read_slice(v, o, path, err);
    if (!rc && (v = cfg_key(cfg, "sequence_separator_token"))) {
        const char *s = json_string_value(v);
        if (json_is_null(v)) {
            *sep_is_bos = false;
            o->sep = -1;
        } else if (s && (!strcmp(s, "bos") || !strcmp(s, "eos"))) {
            *sep_is_bos = true;
        } else if (json_is_integer(v) && json_integer_value(v) >= 0 &&
                   json_integer_value(v) <= INT32_MAX) {
            *sep_is_bos = false;
            o->sep = (int32_t)json_integer_value(v);
        } else {
            rc = sae_error_set(err, SAE_EINVAL,
                               "%s: sequence_separator_token: expected \"bos\", \"eos\", null or "
                               "a token id",
                               path);
        }
    }
    json_decref(cfg);
    return rc;
}

/* Python's slice(start, stop) bounds over positions 0 .. L-1, step >= 1. */
static void slice_range(const sae_window_opts *o, int64_t L, int64_t *a, int64_t *b)
{
    int64_t s = o->has_start ? o->start : 0, e = o->has_stop ? o->stop : L;
    if (s < 0)
        s += L;
    if (e < 0)
        e += L;
    *a = s < 0 ? 0 : s > L ? L : s;
    *b = e < 0 ? 0 : e > L ? L : e;
}

size_t sae_window_positions(const sae_window_opts *o, size_t *pos)
{
    int64_t a, b, step = o->step >= 1 ? o->step : 1;
    slice_range(o, (int64_t)o->context, &a, &b);
    size_t n = 0;
    for (int64_t i = a; i < b; i += step) {
        if (pos)
            pos[n] = (size_t)i;
        n++;
    }
    return n;
}

int sae_window_opts_check(const sae_window_opts *o, sae_error *err)
{
    if (o->context < 2 || o->context > SAE_WINDOW_MAX_CONTEXT)
        return sae_error_set(err, SAE_EINVAL, "context size %zu: expected 2 to %zu", o->context,
                             SAE_WINDOW_MAX_CONTEXT);
    if (o->prepend_bos && o->bos < 0)
        return sae_error_set(err, SAE_EINVAL,
                             "prepend_bos: the tokenizer has no BOS token (no bos_token, no "
                             "<|endoftext|>)");
    if (o->step < 1)
        return sae_error_set(err, SAE_EINVAL, "seqpos_slice: the step must be positive");
    if (!sae_window_positions(o, NULL))
        return sae_error_set(err, SAE_EINVAL, "seqpos_slice keeps no position of a %zu-token window",
                             o->context);
    return 0;
}

int sae_windower_init(sae_windower *w, const sae_window_opts *o, sae_error *err)
{
    memset(w, 0, sizeof *w);
    if (sae_window_opts_check(o, err))
        return -1;
    w->o = *o;
    if (!(w->buf = malloc(o->context * sizeof *w->buf)))
        return sae_error_set(err, SAE_ENOMEM, "out of memory for a %zu-token window", o->context);
    return 0;
}

void sae_windower_free(sae_windower *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

void sae_windower_doc(sae_windower *w, const int32_t *ids, size_t n)
{
    w->t = ids;
    w->open = true;
    w->n = n;
    w->off = 0;
}

/* Gives out the full window in w->buf; the next one starts empty. */
static int give(sae_windower *w, const uint32_t **win, uint64_t *doc)
{
    w->len = 0;
    w->windows++;
    *win = w->buf;
    *doc = w->win_doc;
    return 1;
}

/* Ends the current document. */
static int doc_done(sae_windower *w)
{
    w->t = NULL;
    w->open = false;
    w->n = w->off = 0;
    w->doc++;
    return 0;
}

/* disable_concat_sequences: the document alone, BOS first, cut to a window. */
static int next_alone(sae_windower *w, const uint32_t **win, uint64_t *doc)
{
    const int32_t *t = w->t;
    size_t ctxn = w->o.context, n = w->n, k = 0;
    if (w->off || !n)
        return doc_done(w);
    w->off = n;
    if (w->o.prepend_bos && t[0] != w->o.bos && n >= ctxn - 1) {
        w->buf[k++] = (uint32_t)w->o.bos;
        n = ctxn - 1;
    }
    if (k + n < ctxn)
        return doc_done(w);
    for (size_t i = 0; k < ctxn; i++)
        w->buf[k++] = (uint32_t)t[i];
    w->win_doc = w->doc;
    return give(w, win, doc);
}

int sae_windower_next(sae_windower *w, const uint32_t **win, uint64_t *doc)
{
    if (!w->open)
        return 0;
    if (w->o.no_concat)
        return next_alone(w, win, doc);
    const int32_t *t = w->t;
    size_t ctxn = w->o.context;
    /* SAELens' _add_tokens_to_batch, one call per turn of this loop: a new
     * window takes the BOS, a window already begun takes the separator (a
     * window is begun only by an earlier document: within one, a window is
     * filled until it is full or the document ends). */
    while (w->off < w->n) {
        if (!w->len) {
            w->win_doc = w->doc;
            if (w->o.prepend_bos && t[w->off] != w->o.bos)
                w->buf[w->len++] = (uint32_t)w->o.bos;
        } else if (w->off == 0 && w->o.sep >= 0 && t[0] != w->o.sep) {
            w->buf[w->len++] = (uint32_t)w->o.sep;
        }
        while (w->len < ctxn && w->off < w->n)
            w->buf[w->len++] = (uint32_t)t[w->off++];
        if (w->len == ctxn)
            return give(w, win, doc);
    }
    return doc_done(w);
}
