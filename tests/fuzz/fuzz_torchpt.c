/* fuzz_torchpt.c: the torch checkpoint reader (sae_pt_parse, what
 * sae_pt_open runs on the mapped file): the zip layer, the restricted
 * unpickler on data.pkl, storages looked up and checked.
 *
 * On success every tensor must describe bytes it really has (in the buffer
 * or owned, shared storages included), all of them read and converted as
 * the loader converts them, and every metadata value found again. */
#include "fuzz_common.h"
#include "io/safetensors.h"
#include "io/torchpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sae_st_file *f = NULL;
    sae_error err = {0};
    int rc = sae_pt_parse("fuzz.pt", data, size, &f, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return 0;
    FUZZ_ASSERT(f->size == size && f->base == data, "the file does not describe the buffer");
    fuzz_check_st_file(f, data, size);
    sae_st_free(f);
    return 0;
}
