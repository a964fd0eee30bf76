/* index_ann.h: approximate decoder-cosine neighbours through FAISS (an HNSW
 * graph over the normalised decoder rows, inner product). The one C++ unit of
 * core (index_ann.cc): Debian 12's libfaiss-dev ships the C API's headers but
 * not libfaiss_c, so this header is the C face of a small C++ translation
 * unit. FAISS is optional at build time: without it SAE_HAVE_FAISS is unset,
 * index_ann.cc is not built and index_neighbours.c refuses the method. */
#ifndef SAE_INDEX_ANN_H
#define SAE_INDEX_ANN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How the graph is built and searched: M links per node, the candidate lists
 * at construction and at search (index_neighbours.c picks them). */
typedef struct sae_ann_params {
    int m;
    int ef_construction;
    int ef_search;
} sae_ann_params;

/* For every row of w (d_sae, d_in), the k + 1 rows of largest cosine (the
 * row itself is normally among them), best first, into idx and cos (d_sae,
 * k + 1); a slot FAISS could not fill has idx -1. Rows are normalised here,
 * chunk by chunk, as they are added (rows of norm 0 stay zero); w is
 * borrowed. Returns 0, or -1 with one line in msg (msg_size bytes). */
int sae_ann_neighbours(const float *w, size_t d_sae, size_t d_in, size_t k,
                       const sae_ann_params *p, int64_t *idx, float *cos, char *msg,
                       size_t msg_size);

#ifdef __cplusplus
}
#endif

#endif
