/* body.h: the request-body parsers of POST /v1/encode and /v1/decode, as the
 * handlers call them, for the body fuzz targets.
 *
 * The parsers are static functions of server/encode_post.c and
 * server/decode_post.c; body_encode.c and body_decode.c each #include one of
 * those files (the real code, compiled into the harness) and export the two
 * entry points below. Each builds the request the router would have built
 * (body in a malloc'd buffer with a NUL after it, the snapshot's model,
 * max_request_rows), parses, checks what a successful parse promises, then
 * runs the core kernel the worker would run on the accepted rows. */
#ifndef SAE_FUZZ_BODY_H
#define SAE_FUZZ_BODY_H

#include <stddef.h>
#include <stdint.h>

#include "sae/model.h"

/* How a body arrives (saed.h's enum saed_body, without including MHD). */
enum fuzz_body { FUZZ_BODY_JSON = 1, FUZZ_BODY_OCTET = 2, FUZZ_BODY_NPY = 4 };

/* POST /v1/encode with this body type and URL query (key=value&...,
 * qlen bytes, may be empty). Returns the HTTP status the handler would
 * reply with before queueing the job (0 when it would queue it). */
unsigned fuzz_encode_body(const sae_model *m, size_t max_rows, enum fuzz_body type,
                          const char *query, size_t qlen, const uint8_t *body, size_t len);

/* POST /v1/decode (JSON or octet-stream); same return. */
unsigned fuzz_decode_body(const sae_model *m, size_t max_rows, enum fuzz_body type,
                          const uint8_t *body, size_t len);

#endif
