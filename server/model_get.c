/* model_get.c: GET /v1/model: what is being served. The contract's fields
 * (d_in, d_sae, architecture, dtype, model_name, hook_name, weights_digest,
 * index: a summary of the feature index or null) plus source_id (the layer
 * of the Neuronpedia route), neuronpedia_id, and the settings that change
 * what encode and decode return (a transcoder's d_out and output hook, a
 * skip connection decode leaves out, signed top-k, the finetuning scaling
 * factor), so a client can tell how to read the results, and the kernel
 * that encodes (kernel.h: openblas-f32, avx512-bf16, avx2-bf16, ...), and
 * `limits`: the request limits a batch client sizes its chunks from, and
 * `lm`: the language model of /v1/encode_text (null without --lm). */
#include "feature_routes.h"
#include "saed.h"

/* The limits a client splits a large job by (max_request_rows,
 * max_body_bytes, max_queue_rows, max_batch_rows; max_streams > 0: POST
 * /v1/encode/stream is offered) as a new JSON object. */
static json_t *limits_json(const struct saed_config *cfg)
{
    json_t *l = json_object();
    if (!l)
        return NULL;
    json_object_set_new(l, "max_request_rows", json_integer((json_int_t)cfg->max_request_rows));
    json_object_set_new(l, "max_body_bytes", json_integer((json_int_t)cfg->max_body_bytes));
    json_object_set_new(l, "max_queue_rows", json_integer((json_int_t)cfg->max_queue_rows));
    json_object_set_new(l, "max_batch_rows", json_integer((json_int_t)cfg->max_batch_rows));
    json_object_set_new(l, "max_streams", json_integer((json_int_t)cfg->max_streams));
    return l;
}

/* GET /v1/model: the served model as a JSON object. */
enum MHD_Result model_get(struct saed_req *rq)
{
    const sae_model *m = rq->snap->model;
    json_t *o = json_object();
    if (!o)
        return reply_error(rq, 500, "internal", "out of memory");
    json_object_set_new(o, "d_in", json_integer((json_int_t)m->d_in));
    json_object_set_new(o, "d_sae", json_integer((json_int_t)m->d_sae));
    json_object_set_new(o, "architecture", json_string(sae_arch_name(m->arch)));
    json_object_set_new(o, "dtype", json_string(m->dtype));
    json_object_set_new(o, "kernel", json_string(sae_kernel_name(m->kernel)));
    json_object_set_new(o, "model_name", json_string(m->model_name ? m->model_name : ""));
    json_object_set_new(o, "hook_name", json_string(m->hook_name ? m->hook_name : ""));
    json_object_set_new(o, "weights_digest", json_string(m->weights_digest));
    json_object_set_new(o, "index", index_summary(rq->snap));
    json_object_set_new(o, "source_id", json_string(features_source_id(rq)));
    if (m->arch == SAE_ARCH_TOPK)
        json_object_set_new(o, "k", json_integer((json_int_t)m->k));
    json_object_set_new(o, "normalize_activations", json_string(sae_norm_name(m->norm)));
    json_object_set_new(o, "apply_b_dec_to_input", json_boolean(m->apply_b_dec_to_input));
    json_object_set_new(o, "rescale_acts_by_decoder_norm",
                        json_boolean(m->rescale_acts_by_decoder_norm));
    json_object_set_new(o, "decode_space",
                        json_string(m->transcoder                  ? "output"
                                    : sae_decode_is_normalised(m) ? "normalised"
                                                                  : "input"));
    sae_model_json_kind(m, o);
    json_object_set_new(o, "sparsify", json_boolean(m->sparsify));
    json_object_set_new(o, "generation", json_integer((json_int_t)rq->snap->generation));
    json_object_set_new(o, "limits", limits_json(rq->srv->cfg));
    json_object_set_new(o, "lm", text_lm_json(rq->srv, m));
    return reply_json(rq, 200, o);
}
