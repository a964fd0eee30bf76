/* fuzz_npy.c: the .npy header parser (sae_npy_parse), used for activation
 * files and application/x-npy request bodies.
 *
 * On success the header's claims must describe the buffer exactly
 * (data_offset + data_bytes == size, data_bytes = prod(shape) x dtype size),
 * and the data is converted to float32 as the encode route converts it, so
 * an accepted lie reads out of bounds under AddressSanitizer. */
#include "fuzz_common.h"
#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sae_npy_info info;
    sae_error err = {0};
    int rc = sae_npy_parse("fuzz.npy", data, size, &info, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return 0;
    FUZZ_ASSERT(info.ndim == 1 || info.ndim == 2, "ndim %d", info.ndim);
    FUZZ_ASSERT(info.dtype == SAE_DT_F32 || info.dtype == SAE_DT_F16 || info.dtype == SAE_DT_F64,
                "dtype %d", (int)info.dtype);
    FUZZ_ASSERT(info.data_offset <= size && info.data_bytes == size - info.data_offset,
                "offset %zu + bytes %zu != size %zu", info.data_offset, info.data_bytes, size);
    uint64_t n = info.shape[0] * (info.ndim == 2 ? info.shape[1] : 1);
    size_t es = sae_dtype_size(info.dtype);
    FUZZ_ASSERT(n * es == info.data_bytes && (n == 0 || info.data_bytes / es == n),
                "shape gives %llu elements, data is %zu bytes", (unsigned long long)n,
                info.data_bytes);
    float *x = malloc(n ? (size_t)n * sizeof *x : 1);
    if (!x)
        return 0;
    FUZZ_ASSERT(sae_convert_to_f32(info.dtype, data + info.data_offset, (size_t)n, x) == 0,
                "conversion of an accepted dtype failed");
    free(x);
    return 0;
}
