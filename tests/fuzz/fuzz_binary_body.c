/* fuzz_binary_body.c: the binary request bodies: application/octet-stream
 * and application/x-npy for POST /v1/encode (with the options in the query
 * string, parsed by the handler's own callback), and the octet-stream sparse
 * rows of POST /v1/decode.
 *
 * Input: byte 0 picks the mode (byte % 3: 0 encode octet-stream, 1 encode
 * npy, 2 decode octet-stream) and the model (byte / 3, fuzz_common.h); byte 1
 * is the query's length q; then q bytes of query; the rest is the body. */
#include "body.h"
#include "fuzz_common.h"

#define MAX_ROWS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned mode = data[0] % 3;
    const sae_model *m = fuzz_model(data[0] / 3);
    size_t q = data[1];
    if (q > size - 2)
        q = size - 2;
    const char *query = (const char *)data + 2;
    const uint8_t *body = data + 2 + q;
    size_t len = size - 2 - q;
    if (mode == 0)
        fuzz_encode_body(m, MAX_ROWS, FUZZ_BODY_OCTET, query, q, body, len);
    else if (mode == 1)
        fuzz_encode_body(m, MAX_ROWS, FUZZ_BODY_NPY, query, q, body, len);
    else
        fuzz_decode_body(m, MAX_ROWS, FUZZ_BODY_OCTET, body, len);
    return 0;
}
