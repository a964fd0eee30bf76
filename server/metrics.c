/* metrics.c: bumping the counters of metrics.h. Rendering is metrics_get.c. */
#include "metrics.h"

const double saed_lat_bounds[SAED_N_LAT] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                            0.05,   0.1,   0.25,   0.5,   1,    2.5,
                                            5,      10,    30,     60};

const unsigned saed_statuses[SAED_N_STATUS - 1] = {200, 204, 400, 401, 404, 405, 408, 413,
                                                   414, 415, 422, 431, 499, 500, 503, 504};

/* The latency bucket of us microseconds (SAED_N_LAT: past the last bound). */
static size_t lat_bucket(int64_t us)
{
    double sec = (double)(us < 0 ? 0 : us) / 1e6;
    size_t b = 0;
    while (b < SAED_N_LAT && sec > saed_lat_bounds[b])
        b++;
    return b;
}

/* Counts one finished request by route and status and its latency. */
void metrics_request(struct saed_metrics *m, int route, unsigned status, int64_t us)
{
    if (route < 0 || route >= SAED_METRICS_MAX_ROUTES)
        return;
    size_t s = SAED_N_STATUS - 1;
    for (size_t i = 0; i < SAED_N_STATUS - 1; i++)
        if (saed_statuses[i] == status) {
            s = i;
            break;
        }
    atomic_fetch_add_explicit(&m->requests[route][s], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency[route][lat_bucket(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us[route], (uint64_t)(us < 0 ? 0 : us),
                              memory_order_relaxed);
}

/* Counts one GEMM of `rows` rows in the batch-size histogram. */
void metrics_batch(struct saed_metrics *m, size_t rows)
{
    size_t b = 0;
    while (b < SAED_N_BATCH && rows > ((size_t)1 << b))
        b++;
    atomic_fetch_add_explicit(&m->batches[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->batch_rows_sum, rows, memory_order_relaxed);
}

/* Counts rows that waited us microseconds between arrival and their GEMM. */
void metrics_batch_wait(struct saed_metrics *m, size_t rows, int64_t us)
{
    atomic_fetch_add_explicit(&m->batch_wait[lat_bucket(us)], rows, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->batch_wait_sum_us, (uint64_t)(us < 0 ? 0 : us) * rows,
                              memory_order_relaxed);
}
