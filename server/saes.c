/* saes.c: the served SAEs, their configuration, reload and mapped-weights
 * budget (saes.h, CONTRACT 7). */
#include "saes.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/clock.h"
#include "batcher.h"
#include "feature_routes.h"
#include "sae/format.h"

/* Deepest folder level --release looks at (a Gemma Scope tree is 3). */
#define WALK_DEPTH 6

/* The registry. `lock` guards order, n, def; `all` (every SAE ever made)
 * is touched only by the thread that reloads (main), and at exit. */
struct saed_saes {
    pthread_rwlock_t lock;
    struct saed_sae **order;        /* (n) borrowed from all: the served SAEs */
    size_t n;
    struct saed_sae *def;
    struct saed_sae **all;          /* (n_all) owned */
    size_t n_all;
    uint64_t budget;                /* max_mapped_bytes; 0 none */
    sae_compute compute;            /* the config's compute, for every SAE (a restart changes it) */
    pthread_mutex_t budget_lock;    /* one eviction pass at a time */
    _Atomic size_t max_d_in, max_d_sae;
};

int saes_new(uint64_t max_mapped_bytes, struct saed_saes **out, sae_error *err)
{
    struct saed_saes *r = calloc(1, sizeof *r);
    if (!r)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->budget_lock, NULL);
    r->budget = max_mapped_bytes;
    *out = r;
    return 0;
}

void saes_free(struct saed_saes *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_all; i++) {
        struct saed_sae *s = r->all[i];
        snap_release(s->current);
        ix_release(s->ix);
        json_decref(s->entry);
        config_spec_free(&s->spec);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->load_lock);
        free(s);
    }
    free(r->all);
    free(r->order);
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->budget_lock);
    free(r);
}

/* ---- what the config names ---- */

/* A growable list of specs. */
struct specs {
    struct saed_sae_spec *v;
    size_t n;
};

static void specs_free(struct specs *l)
{
    for (size_t i = 0; i < l->n; i++)
        config_spec_free(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static struct saed_sae_spec *specs_find(struct specs *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].id, id))
            return &l->v[i];
    return NULL;
}

/* Appends a copy of s; 0 or -1 out of memory. */
static int specs_add(struct specs *l, const struct saed_sae_spec *s)
{
    struct saed_sae_spec *v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v)
        return -1;
    l->v = v;
    if (config_spec_copy(&v[l->n], s))
        return -1;
    l->n++;
    return 0;
}

/* The id of a folder at rel (a path under the release): '/' becomes '.',
 * any byte outside [A-Za-z0-9._-] '_'. */
static void release_id(const char *rel, char *id, size_t cap)
{
    size_t n = 0;
    for (; *rel && n + 1 < cap; rel++, n++) {
        char c = *rel;
        id[n] = c == '/' ? '.' : config_id_ok(&c, 1) ? c : '_';
    }
    id[n] = '\0';
}

/* strcmp for qsort over char *. */
static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walks dir (rel under the release root): each folder sae_format_detect
 * recognises becomes a spec, the others are descended into. */
static int walk(const char *dir, const char *rel, int depth, struct specs *out, sae_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return sae_error_set(err, SAE_EIO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = strdup(e->d_name))) {
            names = nn ? nn : names;
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            break;
        }
        names = nn;
        n++;
    }
    closedir(d);
    if (!rc)
        qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n && !rc; i++) {
        char path[4096], sub[4096], id[4096];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path ||
            (size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names[i]) >=
                sizeof sub)
            continue;
        if (lstat(path, &st) || !S_ISDIR(st.st_mode))
            continue;
        sae_format f;
        sae_error ignored;
        if (sae_format_detect(path, &f, &ignored) == 0) {
            release_id(sub, id, sizeof id);
            if (!config_id_ok(id, strlen(id))) {
                rc = sae_error_set(err, SAE_EINVAL,
                                   "--release: %s: the id '%.200s' is longer than %d bytes",
                                   path, id, SAED_ID_MAX);
                break;
            }
            if (specs_find(out, id)) {
                rc = sae_error_set(err, SAE_EINVAL, "--release: %s: the id '%s' is taken twice",
                                   path, id);
                break;
            }
            struct saed_sae_spec s = {.id = id, .model_dir = path, .from = 3};
            if (specs_add(out, &s))
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        } else if (depth + 1 < WALK_DEPTH) {
            rc = walk(path, sub, depth + 1, out, err);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Sets *slot (owned) to a copy of v; 0 or -1. */
static int set_str(char **slot, const char *v)
{
    char *c = strdup(v);
    if (!c)
        return -1;
    free(*slot);
    *slot = c;
    return 0;
}

/* Every SAE cfg names, in serving order (CONTRACT 7). */
static int specs_build(const struct saed_config *cfg, struct specs *out, sae_error *err)
{
    struct specs walked = {0};
    int rc = 0;
    if (*cfg->release) {
        struct stat st;
        if (stat(cfg->release, &st) || !S_ISDIR(st.st_mode))
            return sae_error_set(err, SAE_EINVAL, "--release %s: not a folder", cfg->release);
        sae_format f;
        sae_error ignored;
        if (sae_format_detect(cfg->release, &f, &ignored) == 0) {
            /* The release is one SAE folder: its id is its own name. */
            char path[4096], id[4096];
            snprintf(path, sizeof path, "%s", cfg->release);
            size_t pl = strlen(path);
            while (pl > 1 && path[pl - 1] == '/')
                path[--pl] = '\0';
            const char *base = strrchr(path, '/');
            release_id(base ? base + 1 : path, id, sizeof id);
            struct saed_sae_spec s = {.id = id, .model_dir = cfg->release, .from = 3};
            if (!config_id_ok(id, strlen(id)))
                rc = sae_error_set(err, SAE_EINVAL, "--release %s: '%.200s' is not an SAE id",
                                   cfg->release, id);
            else if (specs_add(&walked, &s))
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        } else {
            rc = walk(cfg->release, "", 0, &walked, err);
        }
        if (!rc && !walked.n)
            rc = sae_error_set(err, SAE_EINVAL, "--release %s: no SAE folder found under it",
                               cfg->release);
        if (rc)
            goto out;
    }
    for (size_t i = 0; i < cfg->n_specs && !rc; i++) {
        const struct saed_sae_spec *s = &cfg->specs[i];
        struct saed_sae_spec *w = specs_find(&walked, s->id);
        if (*s->model_dir && w) {
            rc = sae_error_set(err, SAE_EINVAL,
                               "the SAE id '%s' is given twice (and found by --release)", s->id);
        } else if (*s->model_dir) {
            if (specs_add(out, s))
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        } else if (!w) {
            rc = sae_error_set(err, SAE_EINVAL,
                               "[sae %s] has no model, and --release found no SAE '%s'", s->id,
                               s->id);
        } else {
            /* A section naming an SAE the release walk found: its names. */
            const char *in[] = {s->index_path, s->source_id, s->model_name, s->hook_name,
                                s->hook_name_out, s->neuronpedia_id};
            char **to[] = {&w->index_path, &w->source_id, &w->model_name, &w->hook_name,
                           &w->hook_name_out, &w->neuronpedia_id};
            for (size_t k = 0; k < sizeof in / sizeof *in && !rc; k++)
                if (*in[k] && set_str(to[k], in[k]))
                    rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < walked.n && !rc; i++)
        if (specs_add(out, &walked.v[i]))
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
    for (size_t i = 0; i < cfg->n_index_for && !rc; i++) {
        struct saed_sae_spec *s = specs_find(out, cfg->index_for[i].id);
        if (!s)
            rc = sae_error_set(err, SAE_EINVAL, "--index %s=...: no SAE has the id '%s'",
                               cfg->index_for[i].id, cfg->index_for[i].id);
        else if (set_str(&s->index_path, cfg->index_for[i].index_path))
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    /* A release is one language model: the top-level model_name is every
     * SAE's unless it says otherwise. */
    for (size_t i = 0; i < out->n && !rc; i++)
        if (!*out->v[i].model_name && *cfg->model_name &&
            set_str(&out->v[i].model_name, cfg->model_name))
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
    if (!rc && *cfg->default_sae && !specs_find(out, cfg->default_sae))
        rc = sae_error_set(err, SAE_EINVAL, "default_sae: no SAE has the id '%s'",
                           cfg->default_sae);
out:
    specs_free(&walked);
    if (rc)
        specs_free(out);
    return rc;
}

static void budget_enforce(struct saed_server *srv, struct saed_sae *keep);

/* ---- change detection ---- */

/* A growable byte buffer for stamps. */
struct bytes {
    char *p;
    size_t n, cap;
    bool failed;
};

static void bytes_add(struct bytes *b, const void *v, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->n + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}

/* One file's identity: path, size, modification time, inode. */
static void stamp_file(struct bytes *b, const char *path)
{
    struct stat st;
    bytes_add(b, path, strlen(path) + 1);
    if (stat(path, &st)) {
        bytes_add(b, "-", 1);
        return;
    }
    long long v[5] = {(long long)st.st_size, (long long)st.st_mtim.tv_sec,
                      (long long)st.st_mtim.tv_nsec, (long long)st.st_ino,
                      (long long)st.st_dev};
    bytes_add(b, v, sizeof v);
}

/* Every regular file of dir and of its subfolders down to depth 2, in name
 * order. */
static void stamp_dir(struct bytes *b, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d) {
        bytes_add(b, "?", 1);
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = strdup(e->d_name))) {
            names = nn ? nn : names;
            b->failed = true;
            break;
        }
        names = nn;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) < sizeof path &&
            !stat(path, &st)) {
            if (S_ISREG(st.st_mode))
                stamp_file(b, path);
            else if (S_ISDIR(st.st_mode) && depth < 2)
                stamp_dir(b, path, depth + 1);
        }
        free(names[i]);
    }
    free(names);
}

/* The digest of everything whose change makes an SAE load again: its
 * folder's files, its index file and its settings. "" when it cannot be
 * computed (then the SAE always loads). */
static void stamp_of(const struct saed_sae_spec *s, char out[33])
{
    struct bytes b = {0};
    const char *v[] = {s->model_dir, s->index_path, s->source_id, s->model_name,
                       s->hook_name, s->hook_name_out, s->neuronpedia_id};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        bytes_add(&b, v[i], strlen(v[i]) + 1);
    stamp_dir(&b, s->model_dir, 0);
    if (*s->index_path)
        stamp_file(&b, s->index_path);
    if (b.failed)
        out[0] = '\0';
    else
        sae_digest_buffer(b.p, b.n, out);
    free(b.p);
}

/* ---- the registry ---- */

/* The SAE of that id among every one ever made, or a new one (not served
 * yet); NULL out of memory. */
static struct saed_sae *sae_make(struct saed_saes *r, const char *id)
{
    for (size_t i = 0; i < r->n_all; i++)
        if (!strcmp(r->all[i]->id, id))
            return r->all[i];
    struct saed_sae **all = realloc(r->all, (r->n_all + 1) * sizeof *all);
    if (!all)
        return NULL;
    r->all = all;
    struct saed_sae *s = calloc(1, sizeof *s);
    struct saed_sae_spec empty = {0};
    if (!s || config_spec_copy(&s->spec, &empty)) {
        free(s);
        return NULL;
    }
    snprintf(s->id, sizeof s->id, "%s", id);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->load_lock, NULL);
    atomic_init(&s->served, false);
    atomic_init(&s->changed, false);
    r->all[r->n_all++] = s;
    return s;
}

/* Raises the largest dimensions seen to m's. */
static void note_dims(struct saed_saes *r, const struct saed_sae *sae)
{
    struct saed_snap *s = sae->current;
    if (!s)
        return;
    size_t a = atomic_load(&r->max_d_in), b = atomic_load(&r->max_d_sae);
    while (s->model->d_in > a && !atomic_compare_exchange_weak(&r->max_d_in, &a, s->model->d_in))
        ;
    while (s->model->d_sae > b &&
           !atomic_compare_exchange_weak(&r->max_d_sae, &b, s->model->d_sae))
        ;
}

void saes_max_dims(struct saed_server *srv, size_t *d_in, size_t *d_sae)
{
    *d_in = atomic_load(&srv->saes->max_d_in);
    *d_sae = atomic_load(&srv->saes->max_d_sae);
}

/* Loads sae with spec sp when it changed (or was never loaded): 1 loaded, 0
 * unchanged, -1 failed (err set; the SAE keeps what it had). */
static int sae_update(struct saed_saes *r, struct saed_sae *sae, const struct saed_sae_spec *sp,
                      sae_error *err)
{
    char stamp[33];
    stamp_of(sp, stamp);
    pthread_mutex_lock(&sae->load_lock);
    bool loaded = sae->current || sae->ix || sae->weights_digest[0];
    if (loaded && *stamp && !strcmp(stamp, sae->stamp) && !atomic_load(&sae->changed)) {
        pthread_mutex_unlock(&sae->load_lock);
        return 0;
    }
    struct saed_sae_spec old = sae->spec, next;
    if (config_spec_copy(&next, sp)) {
        pthread_mutex_unlock(&sae->load_lock);
        sae_error_set(err, SAE_ENOMEM, "out of memory");
        return -1;
    }
    sae->spec = next;
    sae->compute = r->compute;
    if (snap_reload(sae, false, err)) {
        sae->spec = old;
        config_spec_free(&next);
        pthread_mutex_unlock(&sae->load_lock);
        return -1;
    }
    config_spec_free(&old);
    memcpy(sae->stamp, stamp, sizeof stamp);
    note_dims(r, sae);
    pthread_mutex_unlock(&sae->load_lock);
    return 1;
}

/* A source id as saes_source_id gives it, for the SAE's current snapshot
 * (or its id while unmapped), written into out. */
static void source_of(struct saed_sae *sae, bool several, char *out, size_t cap)
{
    pthread_mutex_lock(&sae->lock);
    const struct saed_snap *s = sae->current;
    if (s && *s->source_id)
        snprintf(out, cap, "%s", s->source_id);
    else if (several || !s)
        snprintf(out, cap, "%s", sae->id);
    else
        snprintf(out, cap, "%s", s->model->hook_name ? s->model->hook_name : "");
    pthread_mutex_unlock(&sae->lock);
}

int saes_apply(struct saed_server *srv, const struct saed_config *cfg, bool startup,
               size_t *failed, sae_error *err)
{
    struct saed_saes *r = srv->saes;
    struct specs sp = {0};
    *failed = 0;
    sae_compute_parse(cfg->compute, &r->compute); /* checked by the config */
    int rc = specs_build(cfg, &sp, err);
    if (rc)
        return rc;
    struct saed_sae **order = calloc(sp.n ? sp.n : 1, sizeof *order);
    size_t n = 0;
    if (!order) {
        specs_free(&sp);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < sp.n; i++) {
        int64_t t0 = sae_clock_us();
        struct saed_sae *sae = sae_make(r, sp.v[i].id);
        if (!sae) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        sae_error e;
        int u = sae_update(r, sae, &sp.v[i], &e);
        if (u < 0 && startup) {
            rc = sae_error_set(err, e.code, "%s", e.msg);
            goto out;
        }
        if (u < 0) {
            (*failed)++;
            atomic_fetch_add(&sae->reload_failed, 1);
            struct saed_snap *s = sae->current;
            if (sae->current || sae->weights_digest[0])
                fprintf(stderr, "saed: reload failed, still serving weights %s%s%s for %s: %s\n",
                        sae->weights_digest, s && s->index ? " with index " : "",
                        s && s->index ? s->index_digest : "", sae->id, e.msg);
            else
                fprintf(stderr, "saed: reload failed, not serving the new SAE %s: %s\n",
                        sae->id, e.msg);
            if (!sae->current && !sae->weights_digest[0])
                continue;
        } else if (u > 0 && !startup) {
            atomic_fetch_add(&sae->reload_ok, 1);
            struct saed_snap *s = sae->current;
            fprintf(stderr, "saed: %s: loaded %s again in %lld ms: weights %s (generation %llu)\n",
                    sae->id, sae->spec.model_dir, (long long)((sae_clock_us() - t0) / 1000),
                    sae->weights_digest, (unsigned long long)(s ? s->generation : 0));
            features_log_index(s);
        } else if (!startup) {
            atomic_fetch_add(&sae->reload_unchanged, 1);
        }
        order[n++] = sae;
    }
    /* Two SAEs answering one Neuronpedia layer would make the route a guess. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++) {
            char a[512], b[512];
            source_of(order[i], n > 1, a, sizeof a);
            source_of(order[j], n > 1, b, sizeof b);
            if (strcmp(a, b))
                continue;
            if (startup) {
                rc = sae_error_set(err, SAE_EINVAL,
                                   "the SAEs '%s' and '%s' have the same Neuronpedia source id "
                                   "'%s' (set source_id in an [sae ID] section)",
                                   order[j]->id, order[i]->id, a);
                goto out;
            }
            fprintf(stderr, "saed: warning: the SAEs '%s' and '%s' have the same source id "
                    "'%s': /api/feature/.../%s/... answers from '%s'\n",
                    order[j]->id, order[i]->id, a, a, order[j]->id);
        }
    struct saed_sae *def = n ? order[0] : NULL;
    for (size_t i = 0; i < n; i++)
        if (*cfg->default_sae && !strcmp(order[i]->id, cfg->default_sae))
            def = order[i];
    if (!def) {
        rc = sae_error_set(err, SAE_EINVAL, "no SAE could be loaded");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        atomic_store(&order[i]->served, true);
    pthread_rwlock_wrlock(&r->lock);
    struct saed_sae **old = r->order;
    size_t n_old = r->n;
    r->order = order;
    r->n = n;
    r->def = def;
    pthread_rwlock_unlock(&r->lock);
    order = NULL;
    /* SAEs no longer named stop answering; their requests finish. */
    for (size_t i = 0; i < n_old; i++) {
        bool kept = false;
        for (size_t j = 0; j < n && !kept; j++)
            kept = r->order[j] == old[i];
        if (kept)
            continue;
        atomic_store(&old[i]->served, false);
        snap_retire(old[i]);
        pthread_mutex_lock(&old[i]->lock);
        struct saed_ix *ix = old[i]->ix;
        old[i]->ix = NULL;
        old[i]->weights_digest[0] = '\0';
        old[i]->stamp[0] = '\0';
        pthread_mutex_unlock(&old[i]->lock);
        ix_release(ix);
        fprintf(stderr, "saed: %s is no longer served\n", old[i]->id);
    }
    free(old);
    budget_enforce(srv, NULL);
out:
    free(order);
    specs_free(&sp);
    return rc;
}

struct saed_sae *saes_find(struct saed_server *srv, const char *id, size_t len)
{
    struct saed_saes *r = srv->saes;
    struct saed_sae *found = NULL;
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->n && !found; i++)
        if (strlen(r->order[i]->id) == len && !memcmp(r->order[i]->id, id, len))
            found = r->order[i];
    pthread_rwlock_unlock(&r->lock);
    return found;
}

struct saed_sae *saes_default(struct saed_server *srv)
{
    pthread_rwlock_rdlock(&srv->saes->lock);
    struct saed_sae *d = srv->saes->def;
    pthread_rwlock_unlock(&srv->saes->lock);
    return d;
}

struct saed_sae **saes_list(struct saed_server *srv, size_t *n)
{
    struct saed_saes *r = srv->saes;
    pthread_rwlock_rdlock(&r->lock);
    struct saed_sae **v = malloc((r->n ? r->n : 1) * sizeof *v);
    *n = v ? r->n : 0;
    if (v)
        memcpy(v, r->order, r->n * sizeof *v);
    pthread_rwlock_unlock(&r->lock);
    return v;
}

const char *saes_source_id(struct saed_server *srv, const struct saed_snap *snap)
{
    if (*snap->source_id)
        return snap->source_id;
    pthread_rwlock_rdlock(&srv->saes->lock);
    bool several = srv->saes->n > 1;
    pthread_rwlock_unlock(&srv->saes->lock);
    if (several)
        return snap->sae->id;
    return snap->model->hook_name ? snap->model->hook_name : "";
}

struct saed_sae *saes_by_source(struct saed_server *srv, const char *layer)
{
    size_t n;
    struct saed_sae **v = saes_list(srv, &n), *found = NULL;
    if (n == 1)
        found = v[0];
    for (size_t i = 0; i < n && !found && n > 1; i++) {
        char src[512];
        source_of(v[i], true, src, sizeof src);
        if (!strcmp(src, layer))
            found = v[i];
    }
    free(v);
    return found;
}

struct saed_ix *saes_ix(struct saed_sae *sae)
{
    pthread_mutex_lock(&sae->lock);
    struct saed_ix *ix = ix_hold(sae->ix);
    pthread_mutex_unlock(&sae->lock);
    return ix;
}

/* ---- the mapped-weights budget ---- */

/* While the served SAEs' mapped weights pass the budget, unmaps the one
 * used least recently that no request holds (never keep). */
static void budget_enforce(struct saed_server *srv, struct saed_sae *keep)
{
    struct saed_saes *r = srv->saes;
    if (!r->budget)
        return;
    pthread_mutex_lock(&r->budget_lock);
    size_t n;
    struct saed_sae **v = saes_list(srv, &n);
    for (;;) {
        uint64_t total = 0;
        struct saed_sae *lru = NULL;
        for (size_t i = 0; i < n; i++) {
            uint64_t b = atomic_load(&v[i]->mapped_bytes);
            total += b;
            if (b && v[i] != keep &&
                (!lru || atomic_load(&v[i]->last_used_us) < atomic_load(&lru->last_used_us))) {
                pthread_mutex_lock(&v[i]->lock);
                bool idle = v[i]->current && atomic_load(&v[i]->current->refs) == 1;
                pthread_mutex_unlock(&v[i]->lock);
                if (idle)
                    lru = v[i];
            }
        }
        if (total <= r->budget || !lru)
            break;
        /* Only an idle snapshot goes: taken under the lock that every new
         * reference is taken under. */
        pthread_mutex_lock(&lru->lock);
        struct saed_snap *s = lru->current;
        bool idle = s && atomic_load(&s->refs) == 1;
        if (idle)
            lru->current = NULL;
        pthread_mutex_unlock(&lru->lock);
        if (!idle)
            break;
        atomic_store(&lru->mapped_bytes, 0);
        snap_release(s);
    }
    free(v);
    pthread_mutex_unlock(&r->budget_lock);
}

struct saed_snap *snap_acquire(struct saed_server *srv, struct saed_sae *sae, sae_error *err)
{
    atomic_store_explicit(&sae->last_used_us, sae_clock_us(), memory_order_relaxed);
    pthread_mutex_lock(&sae->lock);
    struct saed_snap *s = sae->current;
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sae->lock);
    if (s)
        return s;
    /* Unmapped by the budget (or not loaded): mapped again here. */
    pthread_mutex_lock(&sae->load_lock);
    int rc = 0;
    if (!atomic_load(&sae->served) || !sae->weights_digest[0])
        rc = sae_error_set(err, SAE_EINVAL, "the SAE '%s' is not loaded", sae->id);
    else if (atomic_load(&sae->changed))
        rc = sae_error_set(err, SAE_EIO, "%s: the weights changed on disk since they were "
                           "loaded; a SIGHUP loads them", sae->spec.model_dir);
    else if (!sae->current) {
        rc = snap_reload(sae, true, err);
        if (rc == SAE_EIO)
            atomic_store(&sae->changed, true);
        if (!rc)
            atomic_fetch_add(&sae->remaps, 1);
    }
    if (!rc) {
        pthread_mutex_lock(&sae->lock);
        s = sae->current;
        if (s)
            atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&sae->lock);
    }
    pthread_mutex_unlock(&sae->load_lock);
    if (s)
        budget_enforce(srv, sae);
    else if (!rc)
        sae_error_set(err, SAE_EINVAL, "the SAE '%s' is not loaded", sae->id);
    return s;
}
