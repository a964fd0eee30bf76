// index_ann.cc: approximate decoder-cosine neighbours through FAISS's HNSW
// graph (index_ann.h); built only when meson finds FAISS. C++ only because Debian 12 ships FAISS's C API headers
// without libfaiss_c; everything here is behind the extern "C" face.
#include "index/index_ann.h"

#include <cmath>
#include <cstdio>
#include <exception>
#include <new>
#include <vector>

#include <faiss/IndexHNSW.h>

// Copies rows [r0, r0 + n) of w into out, each scaled to norm 1 (a row of
// norm 0 stays zero, so its cosine with everything is 0, as in the exact path).
static void unit_rows(const float *w, size_t r0, size_t n, size_t d_in, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const float *row = w + (r0 + i) * d_in;
        double s = 0;
        for (size_t j = 0; j < d_in; j++)
            s += (double)row[j] * row[j];
        float inv = s > 0 ? (float)(1.0 / std::sqrt(s)) : 0.0f;
        for (size_t j = 0; j < d_in; j++)
            out[i * d_in + j] = row[j] * inv;
    }
}
int sae_ann_neighbours(const float *w, size_t d_sae, size_t d_in, size_t k,
                       const sae_ann_params *p, int64_t *idx, float *cos, char *msg,
                       size_t msg_size)
{
    try {
        faiss::IndexHNSWFlat ix((int)d_in, p->m, faiss::METRIC_INNER_PRODUCT);
        ix.hnsw.efConstruction = p->ef_construction;
        ix.hnsw.efSearch = p->ef_search;
        // Added and searched in chunks so that only one chunk of normalised
        // rows exists besides the index's own copy.
        const size_t chunk = 16384;
        std::vector<float> unit((d_sae < chunk ? d_sae : chunk) * d_in);
        for (size_t r0 = 0; r0 < d_sae; r0 += chunk) {
            size_t n = d_sae - r0 < chunk ? d_sae - r0 : chunk;
            unit_rows(w, r0, n, d_in, unit.data());
            ix.add((faiss::Index::idx_t)n, unit.data());
        }
        for (size_t r0 = 0; r0 < d_sae; r0 += chunk) {
            size_t n = d_sae - r0 < chunk ? d_sae - r0 : chunk;
            unit_rows(w, r0, n, d_in, unit.data());
            ix.search((faiss::Index::idx_t)n, unit.data(), (faiss::Index::idx_t)(k + 1),
                      cos + r0 * (k + 1), idx + r0 * (k + 1));
        }
        return 0;
    } catch (const std::bad_alloc &) {
        std::snprintf(msg, msg_size, "out of memory for the approximate neighbours");
    } catch (const std::exception &e) {
        std::snprintf(msg, msg_size, "approximate neighbours (FAISS): %s", e.what());
    }
    return -1;
}
