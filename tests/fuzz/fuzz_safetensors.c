/* fuzz_safetensors.c: the safetensors header and layout validator
 * (sae_st_parse, the function sae_st_open runs on the mapped file).
 *
 * On success every tensor must lie inside the buffer with nbytes =
 * n_elems x dtype size, every name must be found again by sae_st_find, and
 * float tensors are converted as the loader converts them, so a reader that
 * accepted a lie would read out of bounds here under AddressSanitizer. */
#include <string.h>

#include "fuzz_common.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sae_st_file *f = NULL;
    sae_error err = {0};
    int rc = sae_st_parse("fuzz.safetensors", data, size, &f, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return 0;
    FUZZ_ASSERT(f->size == size, "size %zu != %zu", f->size, size);
    for (size_t i = 0; i < f->n_tensors; i++) {
        const sae_st_tensor *t = &f->tensors[i];
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++)
            n *= (size_t)t->shape[d];
        FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= SAE_ST_MAX_DIMS, "ndim %d", t->ndim);
        FUZZ_ASSERT(n == t->n_elems, "%s: n_elems %zu, shape gives %zu", t->name, t->n_elems, n);
        FUZZ_ASSERT(t->nbytes == t->n_elems * sae_dtype_size(t->dtype), "%s: nbytes %zu", t->name,
                    t->nbytes);
        const uint8_t *p = t->data;
        FUZZ_ASSERT(t->nbytes == 0 || (p >= data && p + t->nbytes <= data + size),
                    "%s: data outside the buffer", t->name);
        FUZZ_ASSERT(sae_st_find(f, t->name) == t, "%s: not found by name", t->name);
        if (sae_dtype_is_float(t->dtype)) {
            const float *x;
            float *owned = NULL;
            sae_error e2 = {0};
            int r2 = sae_st_tensor_f32(f, t, &x, &owned, &e2);
            FUZZ_CHECK_ERR(r2, e2);
            if (!r2) {
                volatile float sink = 0;
                for (size_t k = 0; k < t->n_elems; k++)
                    sink += x[k];
                (void)sink;
            }
            free(owned);
        }
    }
    for (size_t i = 0; i < f->n_meta; i++)
        FUZZ_ASSERT(sae_st_meta_get(f, f->meta[i].key) != NULL, "meta %s lost", f->meta[i].key);
    sae_st_free(f);
    return 0;
}
