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

/* Drops one reference; the last one frees the model and the index. */
void snap_release(struct saed_snap *s)
{
    if (!s)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        feature_cache_free(s->feature_cache);
        index_labels_free(s->labels);
        sae_store_close(s->index);
        sae_model_free(s->model);
        free(s);
    }
}

struct saed_snap *snap_hold(struct saed_snap *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

/* A new reference to the current snapshot (NULL before the first load). */
struct saed_snap *snap_acquire(struct saed_sae *sae)
{
    pthread_mutex_lock(&sae->lock);
    struct saed_snap *s = sae->current;
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sae->lock);
    return s;
}

/* Loads and validates the folder (and the index, when one is configured),
 * then publishes the new snapshot; the old one is released here and freed by
 * its last request. */
int snap_reload(struct saed_sae *sae, sae_error *err)
{
    sae_model_warnings warn;
    sae_model *m = NULL;
    int rc = sae_model_load_with(sae->model_dir, sae->compute, &m, &warn, err);
    if (rc)
        return rc;
    if ((rc = sae_model_set_names(m, &sae->names, err))) {
        sae_model_free(m);
        return rc;
    }
    for (size_t i = 0; i < warn.n; i++)
        fprintf(stderr, "saed: warning: %s\n", warn.line[i]);
    if (m->arch == SAE_ARCH_AUTOENCODER) {
        sae_model_free(m);
        return sae_error_set(err, SAE_EINVAL,
                             "%s: a plain autoencoder (architecture \"autoencoder\") is not an "
                             "SAE saed can serve",
                             sae->model_dir);
    }
    /* The index is opened and checked against the model just loaded, so a
     * reload that changes the weights needs the matching index beside them. */
    sae_store *ix = NULL;
    struct index_labels *labels = NULL;
    if (sae->index_path && *sae->index_path) {
        /* Held: read once into memory, so the file checked here is the one
         * every thread serves until this snapshot is released, whatever
         * happens to the path (docs/SECURITY.md, finding 2). */
        if ((rc = sae_store_open_held(sae->index_path, &ix, err)) ||
            (rc = sae_store_check_model(ix, m->weights_digest, m->d_in, m->d_sae, err)) ||
            (rc = index_labels_load(ix, &labels, err))) {
            sae_store_close(ix);
            sae_model_free(m);
            return rc;
        }
    }
    struct saed_snap *s = calloc(1, sizeof *s);
    if (!s) {
        index_labels_free(labels);
        sae_store_close(ix);
        sae_model_free(m);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    atomic_init(&s->refs, 1);
    s->model = m;
    s->index = ix;
    s->labels = labels;
    /* Without room for the cache, replies are rendered every time. */
    s->feature_cache = ix ? feature_cache_new(m->d_sae) : NULL;
    if (ix)
        memcpy(s->index_digest, sae_store_file_digest(ix), sizeof s->index_digest);

    pthread_mutex_lock(&sae->lock);
    s->generation = ++sae->generation;
    struct saed_snap *old = sae->current;
    sae->current = s;
    pthread_mutex_unlock(&sae->lock);
    snap_release(old);
    return 0;
}
