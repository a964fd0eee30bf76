/* index_ann.h: the coarse half of the approximate decoder-cosine neighbours,
 * through FAISS: spherical k-means over the normalised decoder rows
 * (faiss::Clustering) and, for every row, its nprobe nearest centroids by
 * inner product (faiss::IndexFlatIP, BLAS). index_neighbours.c then compares
 * each row with the members of its probed clusters by cblas_sgemm (an IVF
 * search done in BLAS: Debian 12's FAISS is built without SIMD, so its own
 * list scans and HNSW graph walks run a scalar inner product, ~20x slower).
 * The one C++ unit of core (index_ann.cc): Debian 12's libfaiss-dev ships the
 * C API's headers but not libfaiss_c, so this header is the C face of a small
 * C++ translation unit. FAISS is optional at build time: without it
 * SAE_HAVE_FAISS is unset, index_ann.cc is not built and index_neighbours.c
 * refuses the method. */
#ifndef SAE_INDEX_ANN_H
#define SAE_INDEX_ANN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The k-means: SAE_ANN_TRAIN_PER sampled rows a centroid, SAE_ANN_NITER
 * iterations. Decoder rows fall in many small groups of near neighbours
 * (features that split one direction); a centroid averaged over n unit rows
 * pulls a row with one of its neighbours at cosine c by about c / sqrt(n),
 * while the noise of the other n rows in d_in dimensions is about
 * 1 / sqrt(d_in), so many centroids of few rows each keep a group's pull above
 * the noise (64 rows a centroid, 2 sqrt(d_sae) of them, gave recall@10 0.88 at
 * 524k features; docs/PERFORMANCE.md "The widest SAEs"). On such rows the
 * k-means hardly moves after its first iterations (a sampled row stays with
 * the centroid it is part of), so a few do. */
#define SAE_ANN_TRAIN_PER 16
#define SAE_ANN_NITER 3

/* For every row of w (d_sae, d_in; borrowed), the nprobe nearest of nlist
 * centroids learnt (seed) from an even sample of the normalised rows
 * (SAE_ANN_TRAIN_PER a centroid, at most d_sae), nearest first, into probe
 * (d_sae, nprobe). Returns 0, or -1 with one line in msg (msg_size bytes). */
int sae_ann_probe(const float *w, size_t d_sae, size_t d_in, size_t nlist, size_t nprobe,
                  uint64_t seed, uint32_t *probe, char *msg, size_t msg_size);

#ifdef __cplusplus
}
#endif

#endif
