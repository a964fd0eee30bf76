/* npz.c: each member of the zip archive through the .npy header parser. */
#include "io/npz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/npy.h"
#include "io/zipmap.h"

/* Member m into tensor t: the name without ".npy", the header parsed from
 * the member's bytes (in place or an owned copy, which t takes). */
static int read_member(const char *name, sae_zip *z, const sae_zip_member *m, sae_st_tensor *t,
                       sae_error *err)
{
    size_t n = strlen(m->name);
    if (n <= 4 || strcmp(m->name + n - 4, ".npy") != 0)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: member \"%.200s\" is not an X.npy array: "
                             "not an npz archive as np.savez writes",
                             name, m->name);
    if (!(t->name = strndup(m->name, n - 4)))
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", name);
    const uint8_t *bytes;
    int rc = sae_zip_read(z, m, &bytes, &t->owned, err);
    if (rc)
        return rc;
    char what[300];
    snprintf(what, sizeof what, "%s: %.200s", name, m->name);
    sae_npy_info info;
    if ((rc = sae_npy_parse_nd(what, bytes, (size_t)m->size, SAE_ST_MAX_DIMS, &info, err)))
        return rc;
    t->dtype = info.dtype;
    t->ndim = info.ndim;
    memcpy(t->shape, info.shape, sizeof t->shape);
    t->nbytes = info.data_bytes;
    t->n_elems = info.data_bytes / sae_dtype_size(info.dtype);
    t->data = bytes + info.data_offset;
    return 0;
}

/* Opens the zip, then reads every member in order. */
int sae_npz_parse(const char *name, const uint8_t *buf, size_t len, sae_st_file **out,
                  sae_error *err)
{
    sae_zip *z = NULL;
    sae_st_file *f = NULL;
    int rc = sae_zip_open_mem(name, buf, len, &z, err);
    if (rc)
        return rc;
    size_t n = sae_zip_count(z);
    if (!(f = calloc(1, sizeof *f)) || !(f->path = strdup(name)) ||
        !(f->tensors = calloc(n ? n : 1, sizeof *f->tensors))) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    f->format = "npz";
    f->base = buf;
    f->size = len;
    if (n == 0) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: an npz archive without arrays", name);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        f->n_tensors++; /* counted first so that sae_st_free frees a partial tensor */
        if ((rc = read_member(name, z, sae_zip_member_at(z, i), &f->tensors[i], err)))
            goto out;
    }
    *out = f;
    f = NULL;
out:
    sae_st_free(f);
    sae_zip_free(z);
    return rc;
}

/* Maps the file, then reads it; the file owns the mapping on success. */
int sae_npz_open(const char *path, sae_st_file **out, sae_error *err)
{
    return sae_st_open_with(path, "npz", sae_npz_parse, out, err);
}
