/* index_labels.c: every feature's label, density and max activation, read once when an index
 * is loaded (feature_routes.h). encode's include "features" may ask for a
 * label per returned value, hundreds of thousands in one large request; from
 * this table each costs a lookup instead of two SQL queries. */
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"

/* The table: for each feature 0 .. n-1 the JSON text that follows its
 * index in an include "features" entry, `,"label":...,"density":...,"max_activation":...}`,
 * written once here so a reply copies it. */
struct index_labels {
    size_t n;
    uint64_t *off; /* (n + 1) offsets into text; fragment f is off[f] .. off[f+1] */
    char *text;    /* (off[n]) */
};

void index_labels_free(struct index_labels *l)
{
    if (!l)
        return;
    free(l->off);
    free(l->text);
    free(l);
}

int index_labels_load(sae_store *s, struct index_labels **out, sae_error *err)
{
    const sae_store_info *info = sae_store_get_info(s);
    size_t n = (size_t)info->d_sae;
    sae_store_conn *c = NULL;
    sae_store_feature_list fl = {0};
    sae_explanations ex = {0};
    size_t *best = NULL; /* (n) index into ex.items + 1, 0 for none */
    double *density = NULL, *maxact = NULL;
    struct saed_buf b;
    buf_init(&b, (size_t)1 << 34, 64 * (n ? n : 1));
    struct index_labels *l = calloc(1, sizeof *l);
    int rc;
    if (!l)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    sae_store_query all = {.sort = SAE_SORT_INDEX, .limit = n};
    if ((rc = sae_store_connect(s, &c, err)) || (rc = sae_store_list_features(c, &all, &fl, err)) ||
        (rc = sae_store_get_all_explanations(c, &ex, err)))
        goto out;
    l->n = n;
    l->off = malloc((n + 1) * sizeof *l->off);
    best = calloc(n ? n : 1, sizeof *best);
    density = calloc(n ? n : 1, sizeof *density);
    maxact = calloc(n ? n : 1, sizeof *maxact);
    if (!l->off || !best || !density || !maxact) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < fl.n; i++) {
        if (fl.items[i].index < n) {
            density[fl.items[i].index] = fl.items[i].density;
            maxact[fl.items[i].index] = fl.items[i].max_activation;
        }
    }
    /* The same rule as best_explanation, over explanations in file order. */
    for (size_t i = 0; i < ex.n; i++) {
        const sae_explanation *x = &ex.items[i];
        if (x->feature >= n || !x->description || !*x->description)
            continue;
        const sae_explanation *bx = best[x->feature] ? &ex.items[best[x->feature] - 1] : NULL;
        if (!bx || (x->has_score && (!bx->has_score || x->score > bx->score)))
            best[x->feature] = i + 1;
    }
    for (size_t f = 0; f < n; f++) {
        l->off[f] = b.len;
        buf_puts(&b, ",\"label\":");
        if (best[f]) {
            const char *d = ex.items[best[f] - 1].description;
            buf_json_str(&b, d);
        } else {
            buf_puts(&b, "null");
        }
        buf_puts(&b, ",\"density\":");
        buf_f64(&b, density[f]);
        buf_puts(&b, ",\"max_activation\":");
        buf_f64(&b, maxact[f]);
        buf_putc(&b, '}');
    }
    l->off[n] = b.len;
    size_t len;
    if (!(l->text = buf_steal(&b, &len))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the labels");
        goto out;
    }
    *out = l;
    l = NULL;
out:
    free(best);
    free(density);
    free(maxact);
    buf_free(&b);
    sae_explanations_free(&ex);
    sae_store_feature_list_free(&fl);
    sae_store_disconnect(c);
    index_labels_free(l);
    return rc;
}

void encode_features_json(struct saed_buf *b, const struct index_labels *l, const uint32_t *idx,
                          size_t n)
{
    buf_puts(b, ",\"features\":[");
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",{\"index\":" : "{\"index\":");
        buf_u32(b, idx[i]);
        if (idx[i] < l->n)
            buf_put(b, l->text + l->off[idx[i]], (size_t)(l->off[idx[i] + 1] - l->off[idx[i]]));
        else
            buf_puts(b, ",\"label\":null,\"density\":0,\"max_activation\":0}");
    }
    buf_putc(b, ']');
}

const char *index_labels_fragment(const struct index_labels *l, uint32_t i, size_t *len)
{
    if (!l || i >= l->n)
        return NULL;
    *len = (size_t)(l->off[i + 1] - l->off[i]);
    return l->text + l->off[i];
}
