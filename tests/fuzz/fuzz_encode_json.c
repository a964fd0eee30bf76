/* fuzz_encode_json.c: JSON bodies of POST /v1/encode, through the handler's
 * own parser (body_encode.c) and, when accepted, the encode kernel.
 *
 * Input: one selector byte (which fixture model: fuzz_common.h), then the
 * body. max_request_rows is small so the 413 path is reachable. */
#include "body.h"
#include "fuzz_common.h"

#define MAX_ROWS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const sae_model *m = fuzz_model(data[0]);
    fuzz_encode_body(m, MAX_ROWS, FUZZ_BODY_JSON, "", 0, data + 1, size - 1);
    return 0;
}
