/* fuzz_npz.c: the npz reader (sae_npz_parse, what sae_npz_open runs on the
 * mapped file): libzip through the mapping source, the in-place offset
 * check, inflation with its size and CRC checks, the .npy header parser.
 *
 * An input that starts with the .npy magic is first wrapped as the member
 * x.npy of a stored zip with a right CRC (fuzz_zip), so that mutations of
 * the array reach the npy parser through the archive; any other input is
 * the archive itself. On success every tensor must describe bytes it really
 * has (in the buffer or owned), all read and converted as the loader
 * converts them (fuzz_st_reader). */
#include <string.h>

#include "fuzz_common.h"
#include "io/npz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6 || memcmp(data, "\x93NUMPY", 6) != 0) {
        fuzz_st_reader(sae_npz_parse, "fuzz.npz", data, size);
        return 0;
    }
    static const char *const names[] = {"x.npy"};
    const void *datas[] = {data};
    size_t len;
    uint8_t *zip = fuzz_zip(1, names, datas, &size, &len);
    fuzz_st_reader(sae_npz_parse, "fuzz.npz", zip, len);
    free(zip);
    return 0;
}
