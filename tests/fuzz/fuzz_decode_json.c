/* fuzz_decode_json.c: JSON bodies of POST /v1/decode, through the handler's
 * own parser (body_decode.c) and, when accepted, sae_decode.
 *
 * Input: one selector byte (which fixture model: fuzz_common.h), then the
 * body. */
#include "body.h"
#include "fuzz_common.h"

#define MAX_ROWS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const sae_model *m = fuzz_model(data[0]);
    fuzz_decode_body(m, MAX_ROWS, FUZZ_BODY_JSON, data + 1, size - 1);
    return 0;
}
