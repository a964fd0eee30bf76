/* remote.h: `sae encode --server`'s client of a saed: HTTP/1.1 over one
 * plain keep-alive socket (no libcurl), the binary encode protocol, 503
 * retried after Retry-After and lost connections reconnected within one
 * bounded total wait, and the weights digest pinned for the whole job. */
#ifndef SAE_CLI_REMOTE_H
#define SAE_CLI_REMOTE_H

#include <stddef.h>

#include "sae/encode.h"

/* One server: where it is, the SAE's route prefix, the open socket and what
 * GET /v1/model said. api_key is borrowed. */
typedef struct sae_remote {
    char host[256], port[8];
    char prefix[320];      /* "/v1" or "/v1/saes/ID" */
    const char *api_key;   /* NULL: none */
    int fd;                /* -1: not connected */
    double budget_s;       /* seconds of retry waiting left for the job */
    char digest[72];       /* X-SAE-Weights-Digest the job pinned */
    size_t d_in, d_sae, max_rows;
    char arch[32];
} sae_remote;

/* Parses url (http://HOST[:PORT]) and asks GET {prefix}/model, pinning its
 * weights digest. Returns SAE_EXIT_OK or an exit code after printing why. */
int remote_open(sae_remote *r, const char *url, const char *api_key, const char *sae,
                double retry_s);

/* Encodes n rows of r->d_in floats with the query (e.g. "?top_k=3" or "")
 * and appends them to sp. Returns SAE_EXIT_OK or an exit code after printing
 * why (a changed weights digest names both). */
int remote_encode(sae_remote *r, const float *x, size_t n, const char *query, sae_sparse *sp);

/* Closes the socket. */
void remote_close(sae_remote *r);

#endif
