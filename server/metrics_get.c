/* metrics_get.c: GET /metrics in the Prometheus text format (version
 * 0.0.4). Renders the counters of metrics.h plus gauges read at scrape time
 * (queue depth, in-flight requests) and an info metric carrying the model
 * and index digests as labels. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "buf.h"
#include "saed.h"
#include "saes.h"

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* A label value with \, " and newline escaped. */
static void label(struct saed_buf *b, const char *v)
{
    buf_putc(b, '"');
    for (; v && *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_putc(b, '\\');
        if (*v == '\n') {
            buf_puts(b, "\\n");
            continue;
        }
        buf_putc(b, *v);
    }
    buf_putc(b, '"');
}

/* The # HELP and # TYPE lines of a metric. */
static void head(struct saed_buf *b, const char *name, const char *type, const char *help)
{
    buf_puts(b, "# HELP ");
    buf_puts(b, name);
    buf_putc(b, ' ');
    buf_puts(b, help);
    buf_puts(b, "\n# TYPE ");
    buf_puts(b, name);
    buf_putc(b, ' ');
    buf_puts(b, type);
    buf_putc(b, '\n');
}

static void counter(struct saed_buf *b, const char *name, const char *type, const char *help,
                    uint64_t v)
{
    char line[64];
    head(b, name, type, help);
    snprintf(line, sizeof line, " %llu\n", (unsigned long long)v);
    buf_puts(b, name);
    buf_puts(b, line);
}

/* The route label of metrics slot i. */
static const char *route_name(size_t i)
{
    return i < saed_n_routes ? saed_routes[i].path : "unmatched";
}

/* GET /metrics: every counter, histogram and gauge, rendered now. */
enum MHD_Result metrics_get(struct saed_req *rq)
{
    struct saed_server *srv = rq->srv;
    struct saed_metrics *m = &srv->metrics;
    struct saed_buf b;
    char line[256];
    buf_init(&b, 1 << 22, 16384);

    head(&b, "saed_requests_total", "counter",
         "HTTP requests answered, by route pattern and status (499: closed before a reply).");
    for (size_t r = 0; r <= saed_n_routes; r++)
        for (size_t s = 0; s < SAED_N_STATUS; s++) {
            uint64_t v = LOAD(m->requests[r][s]);
            if (!v)
                continue;
            buf_puts(&b, "saed_requests_total{route=");
            label(&b, route_name(r));
            if (s < SAED_N_STATUS - 1)
                snprintf(line, sizeof line, ",status=\"%u\"} %llu\n", saed_statuses[s],
                         (unsigned long long)v);
            else
                snprintf(line, sizeof line, ",status=\"other\"} %llu\n", (unsigned long long)v);
            buf_puts(&b, line);
        }

    head(&b, "saed_request_duration_seconds", "histogram",
         "Time from a request's headers to its completion, by route pattern.");
    for (size_t r = 0; r <= saed_n_routes; r++) {
        uint64_t cum = 0, total = 0;
        for (size_t k = 0; k <= SAED_N_LAT; k++)
            total += LOAD(m->latency[r][k]);
        if (!total)
            continue;
        for (size_t k = 0; k <= SAED_N_LAT; k++) {
            cum += LOAD(m->latency[r][k]);
            buf_puts(&b, "saed_request_duration_seconds_bucket{route=");
            label(&b, route_name(r));
            if (k < SAED_N_LAT)
                snprintf(line, sizeof line, ",le=\"%g\"} %llu\n", saed_lat_bounds[k],
                         (unsigned long long)cum);
            else
                snprintf(line, sizeof line, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
            buf_puts(&b, line);
        }
        buf_puts(&b, "saed_request_duration_seconds_sum{route=");
        label(&b, route_name(r));
        snprintf(line, sizeof line, "} %.6f\n", (double)LOAD(m->latency_sum_us[r]) / 1e6);
        buf_puts(&b, line);
        buf_puts(&b, "saed_request_duration_seconds_count{route=");
        label(&b, route_name(r));
        snprintf(line, sizeof line, "} %llu\n", (unsigned long long)cum);
        buf_puts(&b, line);
    }

    counter(&b, "saed_encoded_rows_total", "counter", "Rows encoded.", LOAD(m->rows_encoded));
    counter(&b, "saed_decoded_rows_total", "counter", "Rows decoded.", LOAD(m->rows_decoded));

    head(&b, "saed_batch_rows", "histogram", "Rows per encode GEMM (dynamic batching).");
    uint64_t cum = 0;
    for (size_t k = 0; k <= SAED_N_BATCH; k++) {
        cum += LOAD(m->batches[k]);
        if (k < SAED_N_BATCH)
            snprintf(line, sizeof line, "saed_batch_rows_bucket{le=\"%zu\"} %llu\n",
                     (size_t)1 << k, (unsigned long long)cum);
        else
            snprintf(line, sizeof line, "saed_batch_rows_bucket{le=\"+Inf\"} %llu\n",
                     (unsigned long long)cum);
        buf_puts(&b, line);
    }
    snprintf(line, sizeof line, "saed_batch_rows_sum %llu\nsaed_batch_rows_count %llu\n",
             (unsigned long long)LOAD(m->batch_rows_sum), (unsigned long long)cum);
    buf_puts(&b, line);

    head(&b, "saed_batch_wait_seconds", "histogram",
         "Per encoded row: time from its request's headers to the start of its GEMM "
         "(body, parse, queue and the batching wait).");
    cum = 0;
    for (size_t k = 0; k <= SAED_N_LAT; k++) {
        cum += LOAD(m->batch_wait[k]);
        if (k < SAED_N_LAT)
            snprintf(line, sizeof line, "saed_batch_wait_seconds_bucket{le=\"%g\"} %llu\n",
                     saed_lat_bounds[k], (unsigned long long)cum);
        else
            snprintf(line, sizeof line, "saed_batch_wait_seconds_bucket{le=\"+Inf\"} %llu\n",
                     (unsigned long long)cum);
        buf_puts(&b, line);
    }
    snprintf(line, sizeof line, "saed_batch_wait_seconds_sum %.6f\nsaed_batch_wait_seconds_count %llu\n",
             (double)LOAD(m->batch_wait_sum_us) / 1e6, (unsigned long long)cum);
    buf_puts(&b, line);

    counter(&b, "saed_stream_rows_total", "counter",
            "Rows answered by POST /v1/encode/stream (also in saed_encoded_rows_total).",
            LOAD(m->stream_rows));
    counter(&b, "saed_streams", "gauge", "POST /v1/encode/stream requests live now.",
            (uint64_t)atomic_load(&srv->streams));
    head(&b, "saed_streams_ended_total", "counter",
         "POST /v1/encode/stream requests ended, by why they stopped.");
    for (size_t k = 0; k < SAED_N_STREAM_STOP; k++) {
        snprintf(line, sizeof line, "saed_streams_ended_total{stopped=\"%s\"} %llu\n",
                 encode_stream_stop_name(k), (unsigned long long)LOAD(m->stream_stops[k]));
        buf_puts(&b, line);
    }

    counter(&b, "saed_queue_rows", "gauge", "Rows queued or being encoded/decoded now.",
            batcher_rows(srv->batcher));
    counter(&b, "saed_lm_queue_tokens", "gauge",
            "Tokens of POST /v1/encode_text requests queued or in a forward pass now "
            "(0 without --lm).",
            text_lm_tokens(srv->lm));
    counter(&b, "saed_inflight_requests", "gauge", "Requests begun and not yet completed.",
            (uint64_t)atomic_load(&srv->inflight));
    counter(&b, "saed_open_connections", "gauge", "Open client connections.",
            LOAD(m->connections));
    counter(&b, "saed_queue_full_total", "counter",
            "Requests refused with 503 because the queue was full (max_queue_rows; for "
            "POST /v1/encode_text, the language model's queue).",
            LOAD(m->queue_full));
    counter(&b, "saed_deadline_closed_total", "counter",
            "Connections closed by the total request deadline (request_timeout_s).",
            LOAD(m->deadline_closed));
    counter(&b, "saed_peer_gone_closed_total", "counter",
            "Connections closed because their client had closed before completing a "
            "request (an aborted upload) or while idle.",
            LOAD(m->peer_gone_closed));
    counter(&b, "saed_header_closed_total", "counter",
            "Connections closed because a request's headers were not complete within "
            "header_timeout_s of the connection becoming ready for it.",
            LOAD(m->header_closed));
    counter(&b, "saed_framing_refused_total", "counter",
            "Requests refused (400 or 501, connection closed) for duplicate, conflicting or "
            "unsupported Content-Length / Transfer-Encoding headers.",
            LOAD(m->framing_refused));
    counter(&b, "saed_reply_budget_full_total", "counter",
            "Requests refused with 503 because their reply would not fit in "
            "max_reply_bytes_total.",
            LOAD(m->reply_full));
    counter(&b, "saed_body_cut_total", "counter",
            "Chunked request bodies that passed max_body_bytes (413, or cut off at twice it).",
            LOAD(m->body_cut));

    head(&b, "saed_reloads_total", "counter", "Model reloads (SIGHUP), by result.");
    snprintf(line, sizeof line,
             "saed_reloads_total{result=\"ok\"} %llu\nsaed_reloads_total{result=\"failed\"} "
             "%llu\n",
             (unsigned long long)LOAD(m->reload_ok), (unsigned long long)LOAD(m->reload_failed));
    buf_puts(&b, line);

    size_t n_saes;
    struct saed_sae **saes = saes_list(srv, &n_saes);
    head(&b, "saed_model_info", "gauge",
         "Each SAE being served with its weights mapped (and its index); always 1.");
    for (size_t i = 0; i < n_saes; i++) {
        pthread_mutex_lock(&saes[i]->lock);
        struct saed_snap *s = saes[i]->current ? snap_hold(saes[i]->current) : NULL;
        pthread_mutex_unlock(&saes[i]->lock);
        if (!s)
            continue;
        const sae_model *mod = s->model;
        buf_puts(&b, "saed_model_info{sae=");
        label(&b, saes[i]->id);
        buf_puts(&b, ",weights_digest=");
        label(&b, mod->weights_digest);
        buf_puts(&b, ",index_digest=");
        label(&b, s->index_digest);
        buf_puts(&b, ",architecture=");
        label(&b, sae_arch_name(mod->arch));
        buf_puts(&b, ",model_name=");
        label(&b, mod->model_name);
        buf_puts(&b, ",hook_name=");
        label(&b, mod->hook_name);
        snprintf(line, sizeof line, ",d_in=\"%zu\",d_sae=\"%zu\",generation=\"%llu\"} 1\n",
                 mod->d_in, mod->d_sae, (unsigned long long)s->generation);
        buf_puts(&b, line);
        snap_release(s);
    }
    /* Per-SAE series: one line per served SAE and counter. */
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } per_sae[] = {
        {"saed_sae_requests_total", "counter", "Requests answered by each SAE.",
         offsetof(struct saed_sae, requests)},
        {"saed_sae_encoded_rows_total", "counter", "Rows encoded by each SAE.",
         offsetof(struct saed_sae, rows_encoded)},
        {"saed_sae_remaps_total", "counter",
         "Times an SAE's weights were mapped again after max_mapped_bytes unmapped them.",
         offsetof(struct saed_sae, remaps)},
        {"saed_sae_mapped_bytes", "gauge",
         "Bytes of each SAE's weights file while it is mapped, else 0.",
         offsetof(struct saed_sae, mapped_bytes)},
    };
    for (size_t k = 0; k < sizeof per_sae / sizeof *per_sae; k++) {
        head(&b, per_sae[k].name, per_sae[k].type, per_sae[k].help);
        for (size_t i = 0; i < n_saes; i++) {
            _Atomic uint64_t *v = (_Atomic uint64_t *)((char *)saes[i] + per_sae[k].offset);
            buf_puts(&b, per_sae[k].name);
            buf_puts(&b, "{sae=");
            label(&b, saes[i]->id);
            snprintf(line, sizeof line, "} %llu\n", (unsigned long long)LOAD(*v));
            buf_puts(&b, line);
        }
    }
    head(&b, "saed_sae_reloads_total", "counter",
         "What SIGHUP did to each SAE: loaded again (ok), kept after a failed load (failed), "
         "or left as it was (unchanged).");
    for (size_t i = 0; i < n_saes; i++) {
        const char *res[3] = {"ok", "failed", "unchanged"};
        uint64_t v[3] = {LOAD(saes[i]->reload_ok), LOAD(saes[i]->reload_failed),
                         LOAD(saes[i]->reload_unchanged)};
        for (size_t k = 0; k < 3; k++) {
            buf_puts(&b, "saed_sae_reloads_total{sae=");
            label(&b, saes[i]->id);
            snprintf(line, sizeof line, ",result=\"%s\"} %llu\n", res[k], (unsigned long long)v[k]);
            buf_puts(&b, line);
        }
    }
    free(saes);

    head(&b, "saed_build_info", "gauge", "saed version and thread layout; always 1.");
    snprintf(line, sizeof line,
             "saed_build_info{version=\"%s\",http_threads=\"%d\",workers=\"%d\","
             "blas_threads=\"%d\"} 1\n",
             SAED_VERSION, srv->http_threads, srv->workers, srv->blas_threads);
    buf_puts(&b, line);
    counter(&b, "saed_start_time_seconds", "gauge", "Unix time saed started.",
            (uint64_t)m->start_unix);

    size_t len;
    char *body = buf_steal(&b, &len);
    if (!body)
        return reply_error(rq, 500, "internal", "metrics text too large");
    rq->accept_gzip = false;
    return reply_bytes(rq, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}
