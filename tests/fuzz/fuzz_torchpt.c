/* fuzz_torchpt.c: the torch checkpoint reader (sae_pt_parse, what
 * sae_pt_open runs on the mapped file): the zip layer, the restricted
 * unpickler on data.pkl, storages looked up and checked.
 *
 * An input that does not start with "PK" is data.pkl: it is wrapped, with
 * storages data/0 to data/7 of 16, 64, 4, 8, 2, 256, 1 and 32 bytes, in a
 * stored zip with right CRCs (fuzz_zip), so that mutations of the pickle
 * reach the unpickler and the state_dict conversion instead of the CRC
 * check; an input starting with "PK" is the archive itself. On success
 * every tensor must describe bytes it really has (in the buffer or owned,
 * shared storages included), all read and converted as the loader converts
 * them, and every metadata value found again (fuzz_st_reader). */
#include <string.h>

#include "fuzz_common.h"
#include "io/torchpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 2 && memcmp(data, "PK", 2) == 0) {
        fuzz_st_reader(sae_pt_parse, "fuzz.pt", data, size);
        return 0;
    }
    static uint8_t pattern[256];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 37 + 11);
    static const char *const names[] = {"archive/data.pkl", "archive/byteorder",
                                        "archive/data/0",   "archive/data/1",
                                        "archive/data/2",   "archive/data/3",
                                        "archive/data/4",   "archive/data/5",
                                        "archive/data/6",   "archive/data/7"};
    const void *datas[] = {data,    "little", pattern, pattern, pattern,
                           pattern, pattern,  pattern, pattern, pattern};
    size_t sizes[] = {size, 6, 16, 64, 4, 8, 2, 256, 1, 32};
    size_t len;
    uint8_t *zip = fuzz_zip(10, names, datas, sizes, &len);
    fuzz_st_reader(sae_pt_parse, "fuzz.pt", zip, len);
    free(zip);
    return 0;
}
