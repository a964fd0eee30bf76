/* saes_get.c: GET /v1/saes and GET /v1/saes/{id} (CONTRACT 7): the served
 * SAEs as they were last loaded, so an SAE whose weights max_mapped_bytes
 * unmapped is listed without being mapped again. */
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"
#include "saes.h"

/* One SAE's entry (a new object), or NULL before its first load. */
static json_t *sae_entry(struct saed_sae *sae, bool several, bool is_default)
{
    pthread_mutex_lock(&sae->lock);
    json_t *o = sae->entry ? json_deep_copy(sae->entry) : NULL;
    pthread_mutex_unlock(&sae->lock);
    if (!o)
        return NULL;
    const char *src = json_string_value(json_object_get(o, "source_id"));
    if (!src || !*src)
        json_object_set_new(o, "source_id",
                            several ? json_string(sae->id)
                                    : json_copy(json_object_get(o, "hook_name")));
    json_object_set_new(o, "default", json_boolean(is_default));
    return o;
}

/* GET /v1/saes. */
enum MHD_Result saes_get(struct saed_req *rq)
{
    enum MHD_Result r;
    if (query_none(rq, &r))
        return r;
    size_t n;
    struct saed_sae **v = saes_list(rq->srv, &n);
    struct saed_sae *def = saes_default(rq->srv);
    json_t *list = json_array(), *o = json_object();
    if (!v || !list || !o) {
        free(v);
        json_decref(list);
        json_decref(o);
        return reply_error(rq, 503, "out_of_memory", "cannot list the SAEs");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = sae_entry(v[i], n > 1, v[i] == def);
        if (e)
            json_array_append_new(list, e);
    }
    free(v);
    json_object_set_new(o, "saes", list);
    return reply_json(rq, 200, o);
}

/* GET /v1/saes/{id}. */
enum MHD_Result sae_get(struct saed_req *rq)
{
    enum MHD_Result r;
    if (query_none(rq, &r))
        return r;
    struct saed_sae *sae = saes_find(rq->srv, rq->args[0], strlen(rq->args[0]));
    if (!sae)
        return reply_error(rq, 404, "sae_not_found",
                           "no SAE has the id \"%.200s\" (GET /v1/saes lists them)", rq->args[0]);
    size_t n;
    free(saes_list(rq->srv, &n));
    json_t *e = sae_entry(sae, n > 1, sae == saes_default(rq->srv));
    if (!e)
        return reply_error(rq, 503, "not_ready", "the SAE '%s' is not loaded", sae->id);
    return reply_json(rq, 200, e);
}
