/* fuzz_explanations_gz.c: the gzip path of the explanation readers (jsonl.h's
 * sae_jsonl_open_auto, then lines or an array), on hostile gzip streams and
 * on hostile content inside a valid stream.
 *
 * The first input byte picks how. Even: the rest is the file as it is (a
 * gzip file, truncated, corrupted, concatenated, or not gzip at all). Odd:
 * the rest is compressed here into a valid gzip file, so the fuzzer mutates
 * the content the reader inflates. Every explanation read must name a
 * feature below d_sae and carry a description; a failure must say why. */
#include <string.h>
#include <zlib.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *path;
    if (!(data[0] & 1)) {
        path = fuzz_write("explanations.gz", data + 1, size - 1);
    } else {
        uLong cap = compressBound((uLong)(size - 1)) + 32;
        uint8_t *buf = malloc(cap);
        FUZZ_ASSERT(buf != NULL, "out of memory");
        z_stream z;
        memset(&z, 0, sizeof z);
        FUZZ_ASSERT(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK,
                    "deflateInit2");
        z.next_in = (Bytef *)(data + 1);
        z.avail_in = (uInt)(size - 1);
        z.next_out = buf;
        z.avail_out = (uInt)cap;
        FUZZ_ASSERT(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
        path = fuzz_write("explanations.gz", buf, cap - z.avail_out);
        deflateEnd(&z);
        free(buf);
    }
    sae_explanations e;
    if (fuzz_explanations_read(path, &e) == 0)
        sae_explanations_free(&e);
    return 0;
}
