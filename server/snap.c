/* snap.c: reference-counted snapshots of a served SAE and their swap on
 * reload (saed.h). A reload builds the new snapshot completely (load and
 * validate the folder) before taking the lock, so the lock is held for two
 * pointer moves and a request never waits on a load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"
#include "saed.h"
#include "index/store.h"

/* Process-wide source of saed_ix tags. */
static _Atomic uint64_t ix_tags;

struct saed_ix *ix_hold(struct saed_ix *ix)
{
    if (ix)
        atomic_fetch_add_explicit(&ix->refs, 1, memory_order_relaxed);
    return ix;
}

/* Drops one reference; the last one frees the index and what came with it. */
void ix_release(struct saed_ix *ix)
{
    if (!ix || atomic_fetch_sub_explicit(&ix->refs, 1, memory_order_acq_rel) != 1)
        return;
    feature_cache_free(ix->feature_cache);
    index_labels_free(ix->labels);
    sae_store_close(ix->index);
    free(ix);
}

/* Drops one reference; the last one frees the model and its index reference. */
void snap_release(struct saed_snap *s)
{
    if (!s)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        ix_release(s->ix);
        sae_model_free(s->model);
        free(s->source_id);
        free(s);
    }
}

struct saed_snap *snap_hold(struct saed_snap *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

/* Reads the index at path and checks it against m; 0 with *out, or err. */
static int ix_load(const char *path, const sae_model *m, struct saed_ix **out, sae_error *err)
{
    struct saed_ix *ix = calloc(1, sizeof *ix);
    if (!ix)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    atomic_init(&ix->refs, 1);
    /* Held: read once into memory, so the file checked here is the one
     * every thread serves until this snapshot is released, whatever
     * happens to the path (docs/SECURITY.md, finding 2). */
    int rc;
    if ((rc = sae_store_open_held(path, &ix->index, err)) ||
        (rc = sae_store_check_model(ix->index, m->weights_digest, m->d_in, m->d_sae, err)) ||
        (rc = index_labels_load(ix->index, &ix->labels, err))) {
        ix_release(ix);
        return rc;
    }
    memcpy(ix->digest, sae_store_file_digest(ix->index), sizeof ix->digest);
    /* Without room for the cache, replies are rendered every time. */
    ix->feature_cache = feature_cache_new(m->d_sae);
    feature_cache_prerender(ix->feature_cache, ix->index, ix->labels, path);
    ix->tag = atomic_fetch_add(&ix_tags, 1) + 1;
    *out = ix;
    return 0;
}

/* The Neuronpedia source id the SAE's settings give: source_id, else the
 * part of neuronpedia_id after '/'; "" when neither says (saes.c then falls
 * back on the SAE's id or hook_name). A new string, or NULL. */
static char *explicit_source_id(const struct saed_sae *sae, const sae_model *m)
{
    if (*sae->spec.source_id)
        return strdup(sae->spec.source_id);
    const char *slash = m->neuronpedia_id ? strchr(m->neuronpedia_id, '/') : NULL;
    return strdup(slash ? slash + 1 : "");
}

/* Loads and validates the folder (and the index, when one is configured),
 * then publishes the new snapshot; the old one is released here and freed by
 * its last request. */
int snap_reload(struct saed_sae *sae, bool reuse_ix, sae_error *err)
{
    sae_model_warnings warn;
    sae_model *m = NULL;
    const struct saed_sae_spec *sp = &sae->spec;
    int rc = sae_model_load_with(sp->model_dir, sae->compute, &m, &warn, err);
    if (rc)
        return rc;
    sae_model_names names = {sp->model_name, sp->hook_name, sp->hook_name_out,
                             sp->neuronpedia_id};
    if ((rc = sae_model_set_names(m, &names, err))) {
        sae_model_free(m);
        return rc;
    }
    if (!reuse_ix)
        for (size_t i = 0; i < warn.n; i++)
            fprintf(stderr, "saed: warning: %s: %s\n", sae->id, warn.line[i]);
    if (m->arch == SAE_ARCH_AUTOENCODER) {
        sae_model_free(m);
        return sae_error_set(err, SAE_EINVAL,
                             "%s: a plain autoencoder (architecture \"autoencoder\") is not an "
                             "SAE saed can serve",
                             sp->model_dir);
    }
    if (reuse_ix && strcmp(m->weights_digest, sae->weights_digest)) {
        sae_model_free(m);
        return sae_error_set(err, SAE_EIO,
                             "%s: the weights changed on disk since they were loaded (%s, now "
                             "%s); a SIGHUP loads them",
                             sp->model_dir, sae->weights_digest, m->weights_digest);
    }
    /* The index is opened and checked against the model just loaded, so a
     * reload that changes the weights needs the matching index beside them. */
    struct saed_ix *ix = NULL;
    if (reuse_ix) {
        pthread_mutex_lock(&sae->lock);
        ix = ix_hold(sae->ix);
        pthread_mutex_unlock(&sae->lock);
    } else if (*sp->index_path && (rc = ix_load(sp->index_path, m, &ix, err))) {
        sae_model_free(m);
        return rc;
    } else if (ix) {
        ix->owner = sae;
    }
    struct saed_snap *s = calloc(1, sizeof *s);
    char *source = explicit_source_id(sae, m);
    if (!s || !source) {
        free(s);
        free(source);
        ix_release(ix);
        sae_model_free(m);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    atomic_init(&s->refs, 1);
    s->model = m;
    s->ix = ix;
    s->index = ix ? ix->index : NULL;
    s->index_digest = ix ? ix->digest : "";
    s->labels = ix ? ix->labels : NULL;
    s->feature_cache = ix ? ix->feature_cache : NULL;
    s->source_id = source;
    s->sae = sae;

    json_t *entry = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:b, s:s, s:s}", "id",
                              sae->id, "model_name", m->model_name ? m->model_name : "",
                              "hook_name", m->hook_name ? m->hook_name : "", "d_in",
                              (json_int_t)m->d_in, "d_sae", (json_int_t)m->d_sae,
                              "architecture", sae_arch_name(m->arch), "dtype", m->dtype,
                              "weights_digest", m->weights_digest, "has_index", ix != NULL,
                              "source_id", source, "neuronpedia_id",
                              m->neuronpedia_id ? m->neuronpedia_id : "");
    pthread_mutex_lock(&sae->lock);
    json_t *old_entry = sae->entry;
    if (entry)
        sae->entry = entry;
    else
        old_entry = NULL;
    s->generation = reuse_ix ? sae->generation : ++sae->generation;
    struct saed_snap *old = sae->current;
    sae->current = s;
    struct saed_ix *old_ix = sae->ix;
    sae->ix = ix_hold(ix);
    memcpy(sae->weights_digest, m->weights_digest, sizeof sae->weights_digest);
    atomic_store(&sae->changed, false);
    pthread_mutex_unlock(&sae->lock);
    atomic_store(&sae->mapped_bytes, m->st ? (uint64_t)m->st->size : 0);
    ix_release(old_ix);
    json_decref(old_entry);
    snap_release(old);
    return 0;
}

void snap_retire(struct saed_sae *sae)
{
    pthread_mutex_lock(&sae->lock);
    struct saed_snap *old = sae->current;
    sae->current = NULL;
    pthread_mutex_unlock(&sae->lock);
    atomic_store(&sae->mapped_bytes, 0);
    snap_release(old);
}
