// index_ann.cc: spherical k-means over the decoder rows and each row's
// nearest centroids, through FAISS (index_ann.h); built only when meson finds
// FAISS. C++ only because Debian 12 ships FAISS's C API headers without
// libfaiss_c; everything here is behind the extern "C" face.
#include "index/index_ann.h"

#include <cmath>
#include <cstdio>
#include <exception>
#include <new>
#include <vector>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>

// Copies the n rows rows[0..n) of w into out, each scaled to norm 1 (a row of
// norm 0 stays zero, so its cosine with everything is 0, as in the exact path).
static void unit_rows(const float *w, const size_t *rows, size_t n, size_t d_in, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const float *row = w + rows[i] * d_in;
        double s = 0;
        for (size_t j = 0; j < d_in; j++)
            s += (double)row[j] * row[j];
        float inv = s > 0 ? (float)(1.0 / std::sqrt(s)) : 0.0f;
        for (size_t j = 0; j < d_in; j++)
            out[i * d_in + j] = row[j] * inv;
    }
}

int sae_ann_probe(const float *w, size_t d_sae, size_t d_in, size_t nlist, size_t nprobe,
                  uint64_t seed, uint32_t *probe, char *msg, size_t msg_size)
{
    try {
        // k-means on an even sample of SAE_ANN_TRAIN_PER rows a centroid,
        // SAE_ANN_NITER iterations (index_ann.h says why so few of each).
        size_t n_train = nlist * SAE_ANN_TRAIN_PER < d_sae ? nlist * SAE_ANN_TRAIN_PER : d_sae;
        std::vector<size_t> rows(n_train);
        for (size_t i = 0; i < n_train; i++)
            rows[i] = i * d_sae / n_train;
        std::vector<float> unit(n_train * d_in);
        unit_rows(w, rows.data(), n_train, d_in, unit.data());
        faiss::ClusteringParameters cp;
        cp.spherical = true;
        cp.niter = SAE_ANN_NITER;
        cp.min_points_per_centroid = 1; // below FAISS's 39 on purpose: no warning
        cp.seed = (int)(seed & 0x7fffffff);
        cp.verbose = false;
        faiss::Clustering km((int)d_in, (int)nlist, cp);
        faiss::IndexFlatIP coarse((faiss::Index::idx_t)d_in);
        km.train((faiss::Index::idx_t)n_train, unit.data(), coarse);
        // Every row's nearest centroids, a chunk of rows at a time.
        const size_t chunk = 4096;
        rows.resize(chunk);
        unit.resize(chunk * d_in);
        std::vector<float> dist(chunk * nprobe);
        std::vector<faiss::Index::idx_t> lab(chunk * nprobe);
        for (size_t r0 = 0; r0 < d_sae; r0 += chunk) {
            size_t n = d_sae - r0 < chunk ? d_sae - r0 : chunk;
            for (size_t i = 0; i < n; i++)
                rows[i] = r0 + i;
            unit_rows(w, rows.data(), n, d_in, unit.data());
            coarse.search((faiss::Index::idx_t)n, unit.data(), (faiss::Index::idx_t)nprobe,
                          dist.data(), lab.data());
            for (size_t i = 0; i < n * nprobe; i++)
                probe[r0 * nprobe + i] = lab[i] < 0 ? 0 : (uint32_t)lab[i]; // repeats are skipped
        }
        return 0;
    } catch (const std::bad_alloc &) {
        std::snprintf(msg, msg_size, "out of memory for the approximate neighbours");
    } catch (const std::exception &e) {
        std::snprintf(msg, msg_size, "approximate neighbours (FAISS): %s", e.what());
    }
    return -1;
}
