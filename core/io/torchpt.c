/* torchpt.c: a torch zip checkpoint into a sae_st_file (torchpt.h).
 *
 * Order of work: recognise what the bytes are not (legacy pickle, tar),
 * open the zip, recognise TorchScript, find <prefix>/data.pkl and run it,
 * recognise the dicts that hold a state_dict without being one (trainer
 * backups, lm-saes), then turn the entries into tensors and metadata and
 * finally look up each storage's member and check its size. Nothing is
 * handed out before every check passed; on failure everything is freed. */
#include "io/torchpt.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pickle.h"
#include "io/zipmap.h"

/* torch.save(..., _use_new_zipfile_serialization=False) begins with PROTO 2
 * and LONG1 of the magic number 0x1950a86a20f9469cfc6c. */
static const uint8_t legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                       0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

/* What the reading of one checkpoint holds until it hands over the file. */
typedef struct pt_read {
    const char *name;
    sae_zip *zip;
    sae_pickle *pk;
    char *prefix;                 /* "<prefix>/" */
    const uint8_t **storage_data; /* per pickle storage: bytes once read, else NULL */
    void **storage_owned;         /* the copy to hand to the first tensor using it */
    sae_st_file *f;
    size_t meta_cap;
    size_t visits;                /* values walked for metadata, capped */
    sae_error *err;
} pt_read;

/* The member <prefix><rest>, or NULL. */
static const sae_zip_member *find_member(pt_read *r, const char *rest)
{
    char path[512];
    if ((size_t)snprintf(path, sizeof path, "%s%s", r->prefix, rest) >= sizeof path)
        return NULL;
    return sae_zip_find(r->zip, path);
}

/* Recognises, before the zip is opened, the files that are checkpoints of
 * another kind. */
static int check_not_legacy(const char *name, const uint8_t *buf, size_t len, sae_error *err)
{
    if (len >= sizeof legacy_magic && memcmp(buf, legacy_magic, sizeof legacy_magic) == 0)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: a legacy torch.save file (torch < 1.6 or "
                             "_use_new_zipfile_serialization=False); saed reads the zip format: "
                             "load it in Python and torch.save(state_dict) again",
                             name);
    if (len >= 262 && memcmp(buf + 257, "ustar", 5) == 0)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: an old tar-format torch checkpoint; saed reads the zip format "
                             "of torch >= 1.6: load it in Python and torch.save(state_dict) again",
                             name);
    if (len >= 2 && buf[0] == 0x80 && buf[1] <= 5)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: a bare pickle, not a torch zip checkpoint (saed reads "
                             "torch.save(state_dict) of torch >= 1.6)",
                             name);
    return 0;
}

/* The archive's prefix (the first member's folder), TorchScript refused,
 * the byteorder record checked. */
static int check_archive(pt_read *r)
{
    const char *name = r->name;
    if (sae_zip_count(r->zip) == 0)
        return sae_error_set(r->err, SAE_EFORMAT,
                             "%s: an empty zip archive, not a torch "
                             "checkpoint",
                             name);
    const char *first = sae_zip_member_at(r->zip, 0)->name, *slash = strchr(first, '/');
    if (!slash)
        return sae_error_set(r->err, SAE_EFORMAT,
                             "%s: not a torch checkpoint: member \"%.200s\" "
                             "is not in a folder (torch.save puts every record under one)",
                             name, first);
    if (!(r->prefix = strndup(first, (size_t)(slash - first) + 1)))
        return sae_error_set(r->err, SAE_ENOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < sae_zip_count(r->zip); i++) {
        const char *m = sae_zip_member_at(r->zip, i)->name;
        size_t n = strlen(m);
        if ((strncmp(m, r->prefix, strlen(r->prefix)) == 0 &&
             strncmp(m + strlen(r->prefix), "code/", 5) == 0) ||
            (n >= 13 && strcmp(m + n - 13, "constants.pkl") == 0))
            return sae_error_set(r->err, SAE_EINVAL,
                                 "%s: a TorchScript archive (torch.jit.save: "
                                 "it has %.200s), not a state_dict: save model.state_dict() "
                                 "with torch.save",
                                 name, m);
    }
    if (!find_member(r, "data.pkl"))
        return sae_error_set(r->err, SAE_EFORMAT,
                             "%s: no %sdata.pkl: a zip archive, but not a "
                             "torch checkpoint",
                             name, r->prefix);
    const sae_zip_member *bo = find_member(r, "byteorder");
    if (bo) {
        const uint8_t *d;
        void *owned = NULL;
        int rc = sae_zip_read(r->zip, bo, &d, &owned, r->err);
        if (rc)
            return rc;
        bool little = bo->size == 6 && memcmp(d, "little", 6) == 0;
        free(owned);
        if (!little)
            return sae_error_set(r->err, SAE_EINVAL,
                                 "%s: the byteorder record is not \"little\": "
                                 "a big-endian checkpoint is not supported",
                                 name);
    }
    return 0;
}

/* The top-level dicts that hold a state_dict without being one. */
static int check_is_state_dict(pt_read *r, const sae_pk_value *root)
{
    if (root->kind != SAE_PK_DICT)
        return sae_error_set(r->err, SAE_EINVAL,
                             "%s: the checkpoint holds %s, not a state_dict "
                             "(a dict of tensors): save model.state_dict()",
                             r->name, sae_pk_kind_name(root->kind));
    bool step = false, optimizer = false;
    for (size_t i = 0; i < root->u.dict.n; i++) {
        const sae_pk_value *k = root->u.dict.keys[i], *v = root->u.dict.vals[i];
        if (k->kind != SAE_PK_STR)
            return sae_error_set(r->err, SAE_EINVAL,
                                 "%s: a top-level key is %s, not a string: "
                                 "not a state_dict",
                                 r->name, sae_pk_kind_name(k->kind));
        const char *s = k->u.str.s;
        step |= strcmp(s, "step") == 0 && v->kind != SAE_PK_TENSOR;
        optimizer |= strcmp(s, "optimizer") == 0;
        if (strcmp(s, "sae") == 0 && v->kind == SAE_PK_DICT)
            return sae_error_set(r->err, SAE_EINVAL,
                                 "%s: an lm-saes checkpoint ({\"sae\": "
                                 "state_dict, ...}), not a state_dict: save its \"sae\" entry "
                                 "alone, or use the release's safetensors files",
                                 r->name);
    }
    if (step || optimizer)
        return sae_error_set(r->err, SAE_EINVAL,
                             "%s: a trainer backup (it has \"%s\"), not a "
                             "state_dict: use the ae.pt saved at the end of training",
                             r->name, optimizer ? "optimizer" : "step");
    return 0;
}

/* The JSON of a plain value, nested at most SAE_PT_MAX_DEPTH deep; NULL with
 * the error set for a tensor, storage or global, a non-string dict key or a
 * float that is not finite. */
static json_t *to_json(pt_read *r, const char *key, const sae_pk_value *v, int depth)
{
    if (depth > SAE_PT_MAX_DEPTH) {
        sae_error_set(r->err, SAE_EINVAL, "%s: \"%.200s\" is nested more than %d deep", r->name,
                      key, SAE_PT_MAX_DEPTH);
        return NULL;
    }
    if (++r->visits > SAE_PT_MAX_VALUES) {
        sae_error_set(r->err, SAE_EINVAL, "%s: the plain values hold more than %d values in all "
                      "(counting shared ones once per use): not a state_dict's metadata",
                      r->name, SAE_PT_MAX_VALUES);
        return NULL;
    }
    json_t *j = NULL;
    switch (v->kind) {
    case SAE_PK_NONE:
        return json_null();
    case SAE_PK_BOOL:
        return json_boolean(v->u.b);
    case SAE_PK_INT:
        j = json_integer(v->u.i);
        break;
    case SAE_PK_FLOAT:
        if (!isfinite(v->u.f)) {
            sae_error_set(r->err, SAE_EINVAL, "%s: \"%.200s\" is a float that is not finite",
                          r->name, key);
            return NULL;
        }
        j = json_real(v->u.f);
        break;
    case SAE_PK_STR:
        j = json_stringn(v->u.str.s, v->u.str.n);
        break;
    case SAE_PK_TUPLE:
    case SAE_PK_LIST:
        if (!(j = json_array()))
            break;
        for (size_t i = 0; i < v->u.seq.n; i++) {
            json_t *e = to_json(r, key, v->u.seq.items[i], depth + 1);
            if (!e || json_array_append_new(j, e)) {
                json_decref(j);
                return NULL;
            }
        }
        return j;
    case SAE_PK_DICT:
        if (!(j = json_object()))
            break;
        for (size_t i = 0; i < v->u.dict.n; i++) {
            const sae_pk_value *k = v->u.dict.keys[i];
            if (k->kind != SAE_PK_STR) {
                sae_error_set(r->err, SAE_EINVAL, "%s: \"%.200s\" holds a dict whose key is %s",
                              r->name, key, sae_pk_kind_name(k->kind));
                json_decref(j);
                return NULL;
            }
            json_t *e = to_json(r, key, v->u.dict.vals[i], depth + 1);
            if (!e || json_object_set_new(j, k->u.str.s, e)) {
                json_decref(j);
                return NULL;
            }
        }
        return j;
    case SAE_PK_GLOBAL:
    case SAE_PK_STORAGE:
    case SAE_PK_TENSOR:
        sae_error_set(r->err, SAE_EINVAL,
                      "%s: \"%.200s\" holds %s inside a nested value: not a "
                      "state_dict (tensors belong at the top level)",
                      r->name, key, sae_pk_kind_name(v->kind));
        return NULL;
    }
    if (!j)
        sae_error_set(r->err, SAE_ENOMEM, "%s: out of memory", r->name);
    return j;
}

/* Appends key -> value (taken over) to the file's metadata. */
static int add_meta(pt_read *r, char *key, char *value)
{
    sae_st_file *f = r->f;
    if (f->n_meta == r->meta_cap) {
        size_t ncap = r->meta_cap ? r->meta_cap * 2 : 8;
        sae_st_meta *m = realloc(f->meta, ncap * sizeof *m);
        if (!m) {
            free(key);
            free(value);
            return sae_error_set(r->err, SAE_ENOMEM, "%s: out of memory", r->name);
        }
        f->meta = m;
        r->meta_cap = ncap;
    }
    f->meta[f->n_meta++] = (sae_st_meta){key, value};
    return 0;
}

/* A plain value as metadata: nested dicts flattened into key.sub entries
 * (an empty one is "{}"), anything else as its JSON text. */
static int flatten(pt_read *r, const char *key, const sae_pk_value *v, int depth)
{
    if (v->kind == SAE_PK_DICT && v->u.dict.n > 0) {
        if (++r->visits > SAE_PT_MAX_VALUES)
            return sae_error_set(r->err, SAE_EINVAL, "%s: the plain values hold more than %d "
                                 "values in all (counting shared ones once per use): not a "
                                 "state_dict's metadata",
                                 r->name, SAE_PT_MAX_VALUES);
        if (depth > SAE_PT_MAX_DEPTH)
            return sae_error_set(r->err, SAE_EINVAL, "%s: \"%.200s\" is nested more than %d deep",
                                 r->name, key, SAE_PT_MAX_DEPTH);
        for (size_t i = 0; i < v->u.dict.n; i++) {
            const sae_pk_value *k = v->u.dict.keys[i];
            if (k->kind != SAE_PK_STR)
                return sae_error_set(r->err, SAE_EINVAL,
                                     "%s: \"%.200s\" holds a dict whose key "
                                     "is %s",
                                     r->name, key, sae_pk_kind_name(k->kind));
            char *sub;
            if (asprintf(&sub, "%s.%s", key, k->u.str.s) < 0)
                return sae_error_set(r->err, SAE_ENOMEM, "%s: out of memory", r->name);
            int rc = flatten(r, sub, v->u.dict.vals[i], depth + 1);
            free(sub);
            if (rc)
                return rc;
        }
        return 0;
    }
    json_t *j = to_json(r, key, v, depth);
    if (!j)
        return r->err->code;
    char *text = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    char *k = strdup(key);
    if (!text || !k) {
        free(text);
        free(k);
        return sae_error_set(r->err, SAE_ENOMEM, "%s: out of memory", r->name);
    }
    return add_meta(r, k, text);
}

/* The bytes of storage i: its member data/<key>, whose size must be exactly
 * numel x itemsize; read once, shared by every tensor of that storage. */
static int storage_bytes(pt_read *r, size_t i, const uint8_t **data)
{
    if (r->storage_data[i]) {
        *data = r->storage_data[i];
        return 0;
    }
    const sae_pk_storage *st = sae_pickle_storage_at(r->pk, i);
    char rest[300];
    snprintf(rest, sizeof rest, "data/%.200s", st->key);
    const sae_zip_member *m = find_member(r, rest);
    if (!m)
        return sae_error_set(r->err, SAE_EFORMAT, "%s: storage \"%.64s\" has no member %s%s",
                             r->name, st->key, r->prefix, rest);
    size_t bytes;
    if (st->numel > SIZE_MAX || sae_mul_size((size_t)st->numel, sae_dtype_size(st->dtype), &bytes))
        return sae_error_set(r->err, SAE_EFORMAT,
                             "%s: storage \"%.64s\": %llu elements of %s "
                             "overflow",
                             r->name, st->key, (unsigned long long)st->numel,
                             sae_dtype_name(st->dtype));
    if (m->size != bytes)
        return sae_error_set(r->err, SAE_EFORMAT,
                             "%s: storage \"%.64s\" declares %llu x %s = "
                             "%zu bytes but its member holds %llu",
                             r->name, st->key, (unsigned long long)st->numel,
                             sae_dtype_name(st->dtype), bytes, (unsigned long long)m->size);
    int rc = sae_zip_read(r->zip, m, data, &r->storage_owned[i], r->err);
    if (rc)
        return rc;
    r->storage_data[i] = *data;
    return 0;
}

/* One top-level tensor entry into the file's next tensor slot. */
static int add_tensor(pt_read *r, const char *key, const sae_pk_tensor *pt)
{
    sae_st_file *f = r->f;
    sae_st_tensor *t = &f->tensors[f->n_tensors];
    if (!(t->name = strdup(key)))
        return sae_error_set(r->err, SAE_ENOMEM, "%s: out of memory", r->name);
    f->n_tensors++;
    const sae_pk_storage *st = sae_pickle_storage_at(r->pk, pt->storage);
    const uint8_t *data;
    int rc = storage_bytes(r, pt->storage, &data);
    if (rc)
        return rc;
    size_t es = sae_dtype_size(st->dtype);
    t->dtype = st->dtype;
    t->ndim = pt->ndim;
    memcpy(t->shape, pt->shape, sizeof pt->shape);
    t->n_elems = pt->n_elems;
    t->nbytes = pt->n_elems * es; /* <= the member's size: checked by the unpickler */
    t->data = data + pt->offset * es;
    t->owned = r->storage_owned[pt->storage]; /* the first tensor of a storage frees it */
    r->storage_owned[pt->storage] = NULL;
    return 0;
}

/* qsort order of key strings, for the repeated-key check. */
static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Entries into tensors and metadata, after a repeated key is refused. */
static int convert(pt_read *r, const sae_pk_value *root)
{
    size_t n = root->u.dict.n, n_tensors = 0;
    const char **keys = calloc(n ? n : 1, sizeof *keys);
    if (!keys)
        return sae_error_set(r->err, SAE_ENOMEM, "%s: out of memory", r->name);
    for (size_t i = 0; i < n; i++) {
        keys[i] = root->u.dict.keys[i]->u.str.s;
        n_tensors += root->u.dict.vals[i]->kind == SAE_PK_TENSOR;
    }
    qsort(keys, n, sizeof *keys, str_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            int rc = sae_error_set(r->err, SAE_EFORMAT, "%s: key \"%.200s\" appears twice", r->name,
                                   keys[i]);
            free(keys);
            return rc;
        }
    free(keys);

    size_t ns = sae_pickle_storage_count(r->pk);
    r->storage_data = calloc(ns ? ns : 1, sizeof *r->storage_data);
    r->storage_owned = calloc(ns ? ns : 1, sizeof *r->storage_owned);
    r->f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *r->f->tensors);
    if (!r->storage_data || !r->storage_owned || !r->f->tensors)
        return sae_error_set(r->err, SAE_ENOMEM, "%s: out of memory", r->name);
    for (size_t i = 0; i < n; i++) {
        const char *key = root->u.dict.keys[i]->u.str.s;
        const sae_pk_value *v = root->u.dict.vals[i];
        int rc =
            v->kind == SAE_PK_TENSOR ? add_tensor(r, key, &v->u.tensor) : flatten(r, key, v, 1);
        if (rc)
            return rc;
    }
    return 0;
}

/* The steps of the file comment; r's allocations are freed whatever the
 * outcome, the file only on failure. */
int sae_pt_parse(const char *name, const uint8_t *buf, size_t len, sae_st_file **out,
                 sae_error *err)
{
    sae_error local;
    pt_read r = {.name = name, .err = err ? err : &local};
    char *pk_name = NULL;
    int rc = check_not_legacy(name, buf, len, r.err);
    if (rc || (rc = sae_zip_open_mem(name, buf, len, &r.zip, r.err)) || (rc = check_archive(&r)))
        goto out;

    const uint8_t *pkl;
    void *pkl_owned = NULL;
    if ((rc = sae_zip_read(r.zip, find_member(&r, "data.pkl"), &pkl, &pkl_owned, r.err)))
        goto out;
    if (asprintf(&pk_name, "%s: %sdata.pkl", name, r.prefix) < 0) {
        pk_name = NULL;
        free(pkl_owned);
        rc = sae_error_set(r.err, SAE_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    rc = sae_pickle_load(pk_name, pkl, find_member(&r, "data.pkl")->size, &r.pk, r.err);
    free(pkl_owned); /* values hold copies: the pickle's bytes are not needed any more */
    if (rc)
        goto out;
    const sae_pk_value *root = sae_pickle_root(r.pk);
    if ((rc = check_is_state_dict(&r, root)))
        goto out;

    if (!(r.f = calloc(1, sizeof *r.f)) || !(r.f->path = strdup(name))) {
        rc = sae_error_set(r.err, SAE_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    r.f->format = "torch";
    r.f->base = buf;
    r.f->size = len;
    if ((rc = convert(&r, root)))
        goto out;
    *out = r.f;
    r.f = NULL;
out:
    if (r.storage_owned)
        for (size_t i = 0; i < sae_pickle_storage_count(r.pk); i++)
            free(r.storage_owned[i]); /* copies no tensor took */
    free(r.storage_owned);
    free(r.storage_data);
    sae_st_free(r.f);
    sae_pickle_free(r.pk);
    sae_zip_free(r.zip);
    free(r.prefix);
    free(pk_name);
    return rc;
}

/* Maps the file, then reads it; the file owns the mapping on success. */
int sae_pt_open(const char *path, sae_st_file **out, sae_error *err)
{
    return sae_st_open_with(path, "torch checkpoint", sae_pt_parse, out, err);
}
