/* metrics.h: the counters behind /metrics. Plain relaxed atomics, bumped from
 * any thread without locks; metrics_get.c renders them in the Prometheus text
 * format. Label sets are fixed (route patterns, a short list of statuses) so
 * a client cannot grow them. */
#ifndef SAED_METRICS_H
#define SAED_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SAED_METRICS_MAX_ROUTES 40  /* routing-table rows + 1 for "unmatched" */
#define SAED_N_STATUS 17            /* the statuses in metrics.c's list + "other" */
#define SAED_N_LAT 16               /* latency buckets (+Inf implied) */
#define SAED_N_STREAM_STOP 10     /* enum stream_stop (encode_stream.c) */
#define SAED_N_BATCH 14             /* batch-size buckets 1, 2, 4 ... 8192 (+Inf implied) */

/* All counters. Latency and batch size are cumulative-free histograms here
 * (one slot per bucket); the renderer accumulates them. */
struct saed_metrics {
    _Atomic uint64_t requests[SAED_METRICS_MAX_ROUTES][SAED_N_STATUS];
    _Atomic uint64_t latency[SAED_METRICS_MAX_ROUTES][SAED_N_LAT + 1];
    _Atomic uint64_t latency_sum_us[SAED_METRICS_MAX_ROUTES];
    _Atomic uint64_t rows_encoded, rows_decoded;
    _Atomic uint64_t batches[SAED_N_BATCH + 1];
    _Atomic uint64_t batch_rows_sum;
    _Atomic uint64_t batch_wait[SAED_N_LAT + 1]; /* rows, by arrival-to-GEMM time */
    _Atomic uint64_t batch_wait_sum_us;          /* summed over rows */
    _Atomic uint64_t queue_full, deadline_closed, body_cut, peer_gone_closed;
    _Atomic uint64_t header_closed;   /* closed by the header deadline (header_timeout_s) */
    _Atomic uint64_t framing_refused; /* 400/501 from saed's own framing pass */
    _Atomic uint64_t reply_full;      /* 503: no room in max_reply_bytes_total */
    _Atomic uint64_t reload_ok, reload_failed;
    _Atomic uint64_t connections;   /* open now */
    _Atomic uint64_t stream_rows;     /* rows answered by POST /v1/encode/stream */
    _Atomic uint64_t stream_stops[SAED_N_STREAM_STOP]; /* streams ended, by why */
    int64_t start_unix;
};

/* Upper bounds of the latency buckets in seconds and the statuses counted. */
extern const double saed_lat_bounds[SAED_N_LAT];
extern const unsigned saed_statuses[SAED_N_STATUS - 1];

/* Counts one finished request on route (index, or the unmatched slot). */
void metrics_request(struct saed_metrics *m, int route, unsigned status, int64_t us);
/* Counts one GEMM over `rows` rows. */
void metrics_batch(struct saed_metrics *m, size_t rows);
/* Counts `rows` rows that waited `us` microseconds from their request's
 * arrival (headers in) to the start of their GEMM. */
void metrics_batch_wait(struct saed_metrics *m, size_t rows, int64_t us);

#endif
