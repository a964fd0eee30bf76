/* body_encode.c: server/encode_post.c compiled into the fuzz harness, with an
 * entry point that runs its body parsers (body.h). */
#include "../../server/encode_post.c"

#include "body.h"
#include "fuzz_common.h"

/* Splits the query as a URL's query string is split (& between pairs, the
 * first = between key and value, no = meaning a NULL value) and hands each
 * pair to the handler's own callback until it refuses one. */
static void run_query(struct query_ctx *q, const char *query, size_t qlen)
{
    char *s = malloc(qlen + 1);
    if (!s)
        abort();
    memcpy(s, query, qlen);
    s[qlen] = '\0';
    for (char *p = s, *next; p; p = next) {
        next = strchr(p, '&');
        if (next)
            *next++ = '\0';
        if (!*p)
            continue;
        char *eq = strchr(p, '=');
        if (eq)
            *eq++ = '\0';
        if (query_option(q, MHD_GET_ARGUMENT_KIND, p, eq) != MHD_YES)
            break;
    }
    free(s);
}

/* What the worker does with an accepted job: one sae_encode over its rows. */
static void run_encode(const sae_model *m, struct saed_job *job)
{
    sae_workspace *ws = sae_workspace_new(m, 0);
    FUZZ_ASSERT(ws, "no workspace");
    sae_encode_opts opt = {
        .top_k = job->top_k, .has_threshold = job->has_threshold, .threshold = job->threshold};
    sae_error err = {0};
    int rc = sae_encode(m, ws, job->x, job->n_rows, &opt, &job->out, job->metrics,
                        job->want_recon ? job->dense : NULL, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (!rc) {
        FUZZ_ASSERT(job->out.n_rows == job->n_rows, "%zu rows out of %zu", job->out.n_rows,
                    job->n_rows);
        for (size_t r = 0; r < job->out.n_rows; r++) {
            uint32_t a = job->out.row_ptr[r], b = job->out.row_ptr[r + 1];
            FUZZ_ASSERT(!job->top_k || b - a <= job->top_k, "row %zu: %u > top_k", r, b - a);
            for (uint32_t t = a; t < b; t++) {
                FUZZ_ASSERT(job->out.idx[t] < m->d_sae, "index %u", job->out.idx[t]);
                FUZZ_ASSERT(t == a || job->out.val[t] <= job->out.val[t - 1] ||
                                !(job->out.val[t] == job->out.val[t]),
                            "row %zu not in descending order", r);
            }
        }
    }
    sae_workspace_free(ws);
}

unsigned fuzz_encode_body(const sae_model *m, size_t max_rows, enum fuzz_body type,
                          const char *query, size_t qlen, const uint8_t *body, size_t len)
{
    struct saed_config cfg = {.max_request_rows = max_rows, .max_queue_rows = max_rows};
    struct saed_server srv = {.cfg = &cfg};
    struct saed_snap snap = {.model = (sae_model *)m, .generation = 1};
    struct saed_req rq = {.srv = &srv, .snap = &snap, .body_type = (enum saed_body)type};
    /* As router.c buffers a body: malloc'd, one NUL byte after it. */
    rq.body = malloc(len + 1);
    if (!rq.body)
        abort();
    memcpy(rq.body, body, len);
    rq.body[len] = '\0';
    rq.body_len = len;

    struct enc_opts o = {0};
    struct saed_perr e = {0};
    struct query_ctx q = {.o = &o, .e = &e, .body_is_json = type == FUZZ_BODY_JSON};
    run_query(&q, query, qlen);
    unsigned status = 0;
    struct saed_job *job = job_new(JOB_ENCODE);
    if (!job)
        abort();
    if (e.status) {
        status = e.status;
        goto out;
    }
    if (type == FUZZ_BODY_JSON) {
        struct rows r = {.d = m->d_in, .max = max_rows};
        int rc = parse_json(&rq, &r, &o, &e);
        job->x_own = r.x;
        job->x = r.x;
        job->n_rows = r.n;
        FUZZ_ASSERT(rc == 0 || e.status, "failed without a status");
        FUZZ_ASSERT(rc != 0 || !e.status, "status %u but success", e.status);
        if (rc) {
            status = e.status;
            goto out;
        }
    } else if (take_binary(&rq, job, &e)) {
        FUZZ_ASSERT(e.status, "failed without a status");
        status = e.status;
        goto out;
    }
    FUZZ_ASSERT(!e.status, "success with status %u", e.status);
    FUZZ_ASSERT(job->n_rows >= 1 && job->n_rows <= max_rows, "%zu rows accepted", job->n_rows);
    FUZZ_ASSERT(job->x, "no rows");
    for (size_t i = 0; i < job->n_rows * m->d_in; i++)
        FUZZ_ASSERT(isfinite(job->x[i]), "accepted a non-finite value at %zu", i);
    if (o.features) {
        status = 404;
        goto out;
    }
    job->top_k = o.top_k;
    job->has_threshold = o.has_threshold;
    job->threshold = o.threshold;
    job->want_metrics = o.metrics;
    job->want_recon = o.recon;
    sae_error err;
    if (job_alloc_outputs(job, m->d_in, &err)) {
        status = 503;
        goto out;
    }
    run_encode(m, job);
out:
    FUZZ_ASSERT(status == 0 || (status >= 400 && status <= 503), "status %u", status);
    FUZZ_ASSERT(status == 0 || e.status == 0 || e.code, "status without a code");
    job_free(job);
    free(rq.body);
    return status;
}
