/* body_decode.c: server/decode_post.c compiled into the fuzz harness, with an
 * entry point that runs its body parsers (body.h). */
#include "../../server/decode_post.c"

#include "body.h"
#include "fuzz_common.h"

unsigned fuzz_decode_body(const sae_model *m, size_t max_rows, enum fuzz_body type,
                          const uint8_t *body, size_t len)
{
    struct saed_config cfg = {.max_request_rows = max_rows, .max_queue_rows = max_rows};
    struct saed_server srv = {.cfg = &cfg};
    struct saed_snap snap = {.model = (sae_model *)m, .generation = 1};
    struct saed_req rq = {.srv = &srv, .snap = &snap, .body_type = (enum saed_body)type};
    rq.body = malloc(len + 1);
    if (!rq.body)
        abort();
    memcpy(rq.body, body, len);
    rq.body[len] = '\0';
    rq.body_len = len;

    struct saed_perr e = {0};
    struct saed_job *job = job_new(JOB_DECODE);
    if (!job)
        abort();
    struct row_check c;
    int rc;
    if (row_check_init(&c, m->d_sae))
        abort();
    if (type == FUZZ_BODY_JSON)
        rc = parse_json(&rq, &c, &job->codes, &e);
    else
        rc = parse_binary(&rq, &c, &job->codes, &e);
    row_check_free(&c);
    unsigned status = e.status;
    if (rc || e.status) {
        FUZZ_ASSERT(e.status >= 400 && e.status <= 503 && e.code, "failed with status %u",
                    e.status);
        goto out;
    }
    const sae_sparse *s = &job->codes;
    FUZZ_ASSERT(s->n_rows >= 1 && s->n_rows <= max_rows, "%zu rows accepted", s->n_rows);
    FUZZ_ASSERT(s->row_ptr[s->n_rows] == s->nnz, "row_ptr end %u, nnz %zu", s->row_ptr[s->n_rows],
                s->nnz);
    for (size_t r = 0; r < s->n_rows; r++) {
        FUZZ_ASSERT(s->row_ptr[r] <= s->row_ptr[r + 1], "row %zu: bad row_ptr", r);
        for (uint32_t t = s->row_ptr[r]; t < s->row_ptr[r + 1]; t++) {
            FUZZ_ASSERT(s->idx[t] < m->d_sae, "accepted index %u", s->idx[t]);
            FUZZ_ASSERT(isfinite(s->val[t]), "accepted a non-finite value");
            for (uint32_t u = s->row_ptr[r]; u < t; u++)
                FUZZ_ASSERT(s->idx[u] != s->idx[t], "accepted a duplicate index %u", s->idx[t]);
        }
    }
    job->n_rows = s->n_rows;
    sae_error err = {0};
    if (job_alloc_outputs(job, m->d_in, &err)) {
        status = 503;
        goto out;
    }
    rc = sae_decode(m, &job->codes, job->dense, &err);
    FUZZ_CHECK_ERR(rc, err);
    FUZZ_ASSERT(rc == 0, "decode refused what the parser accepted: %s", err.msg);
out:
    job_free(job);
    free(rq.body);
    return status;
}
