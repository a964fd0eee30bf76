/* index_json.c: feature, example and histogram objects written straight into
 * a capped buffer (feature_routes.h). Numbers round-trip: index columns stored as
 * double are written with 17 digits, float32 values (activations, cosines)
 * with 9, so a client reads back exactly what the index holds. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "feature_routes.h"
#include "index/index_hist.h"
#include "jsonin.h"

/* The lower edges of the index's fixed histogram bins as text, formatted
 * once: printf of doubles was a third of the time of GET /v1/features/{i}. */
static double edge_val[SAE_HIST_BINS];
static char edge_txt[SAE_HIST_BINS][32];
static pthread_once_t edge_once = PTHREAD_ONCE_INIT;

/* Fills edge_val and edge_txt. */
static void edge_init(void)
{
    for (int b = 0; b < SAE_HIST_BINS; b++) {
        edge_val[b] = sae_hist_lo(b);
        snprintf(edge_txt[b], sizeof edge_txt[b], "%.17g", edge_val[b]);
    }
}

void index_json_histogram(struct saed_buf *b, const sae_store_histogram *h)
{
    pthread_once(&edge_once, edge_init);
    buf_puts(b, "{\"edges\":[");
    for (size_t i = 0; h->n && i <= h->n; i++) {
        if (i == h->n && !isfinite(h->edges[i]))
            break;
        if (i)
            buf_putc(b, ',');
        size_t bin = h->first_bin + i;
        if (bin < SAE_HIST_BINS && edge_val[bin] == h->edges[i])
            buf_puts(b, edge_txt[bin]);
        else
            buf_f64(b, h->edges[i]);
    }
    buf_puts(b, "],\"counts\":[");
    for (size_t i = 0; i < h->n; i++) {
        if (i)
            buf_putc(b, ',');
        buf_u64(b, h->counts[i]);
    }
    buf_puts(b, "]}");
}

const sae_explanation *best_explanation(const sae_explanations *e)
{
    const sae_explanation *best = NULL;
    for (size_t i = 0; i < e->n; i++) {
        const sae_explanation *x = &e->items[i];
        if (!x->description || !*x->description)
            continue;
        if (!best || (x->has_score && (!best->has_score || x->score > best->score)))
            best = x;
    }
    return best;
}

void index_json_window(struct saed_buf *b, const sae_store_example *ex)
{
    buf_puts(b, "\"tokens\":[");
    for (size_t i = 0; i < ex->n; i++) {
        if (i)
            buf_putc(b, ',');
        buf_json_strn(b, ex->tokens[i], ex->token_len[i]);
    }
    buf_puts(b, "],\"values\":[");
    for (size_t i = 0; i < ex->n; i++) {
        if (i)
            buf_putc(b, ',');
        buf_f32(b, ex->values[i]);
    }
    buf_putc(b, ']');
}

void index_json_example(struct saed_buf *b, const sae_store_example *ex)
{
    buf_puts(b, "{\"document\":");
    buf_json_str(b, ex->document);
    buf_putc(b, ',');
    index_json_window(b, ex);
    buf_puts(b, ",\"max_value\":");
    buf_f32(b, ex->max_value);
    buf_puts(b, ",\"max_token_index\":");
    buf_u32(b, ex->max_token_index);
    buf_puts(b, ",\"min_value\":");
    buf_f32(b, ex->min_value);
    buf_puts(b, ",\"focus_index\":");
    buf_u32(b, ex->focus_index);
    buf_puts(b, ",\"token_offset\":");
    buf_u32(b, ex->first);
    if (ex->has_bin) {
        buf_puts(b, ",\"bin_min\":");
        buf_f64(b, ex->bin_min);
        buf_puts(b, ",\"bin_max\":");
        buf_f64(b, ex->bin_max);
        buf_puts(b, ",\"bin_contains\":");
        buf_f64(b, ex->bin_contains);
    }
    buf_putc(b, '}');
}

/* One logit table as [{"token", "id", "value"}, ...]. */
static void logit_rows(struct saed_buf *b, size_t n, const uint32_t *ids, const float *vals,
                       const char *const *str, const size_t *len)
{
    buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",{\"token\":" : "{\"token\":");
        buf_json_strn(b, str[i], len[i]);
        buf_puts(b, ",\"id\":");
        buf_u32(b, ids[i]);
        buf_puts(b, ",\"value\":");
        buf_f32(b, vals[i]);
        buf_putc(b, '}');
    }
    buf_putc(b, ']');
}

/* The members "logits", "neuron_alignment" and "correlated_neurons" (each
 * null when the index was built without them), after a comma. */
static void dashboards(struct saed_buf *b, const sae_store_logits *l,
                       const sae_store_neuron_table *al, const sae_store_neuron_table *co)
{
    buf_puts(b, ",\"logits\":");
    if (l->computed) {
        buf_puts(b, "{\"pos\":");
        logit_rows(b, l->n_pos, l->pos_ids, l->pos_values, l->pos_str, l->pos_len);
        buf_puts(b, ",\"neg\":");
        logit_rows(b, l->n_neg, l->neg_ids, l->neg_values, l->neg_str, l->neg_len);
        buf_puts(b, ",\"histogram\":{\"min\":");
        buf_f64(b, l->hist_min);
        buf_puts(b, ",\"max\":");
        buf_f64(b, l->hist_max);
        buf_puts(b, ",\"bar_heights\":[");
        for (size_t i = 0; i < l->n_bins; i++) {
            if (i)
                buf_putc(b, ',');
            buf_u32(b, l->hist[i]);
        }
        buf_puts(b, "],\"bar_values\":[");
        for (size_t i = 0; i < l->n_bins; i++) {
            if (i)
                buf_putc(b, ',');
            buf_f64(b, sae_store_logits_bar_value(l, i));
        }
        buf_puts(b, "]}}");
    } else {
        buf_puts(b, "null");
    }
    const sae_store_neuron_table *t[2] = {al, co};
    const char *name[2] = {",\"neuron_alignment\":", ",\"correlated_neurons\":"};
    const char *extra[2] = {",\"l1\":", ",\"cosine\":"};
    const char *value[2] = {",\"value\":", ",\"pearson\":"};
    for (int k = 0; k < 2; k++) {
        buf_puts(b, name[k]);
        if (!t[k]->computed) {
            buf_puts(b, "null");
            continue;
        }
        buf_putc(b, '[');
        for (size_t i = 0; i < t[k]->n; i++) {
            buf_puts(b, i ? ",{\"index\":" : "{\"index\":");
            buf_u32(b, t[k]->indices[i]);
            buf_puts(b, value[k]);
            buf_f32(b, t[k]->values[i]);
            buf_puts(b, extra[k]);
            buf_f32(b, t[k]->extra[i]);
            buf_putc(b, '}');
        }
        buf_putc(b, ']');
    }
}

int index_json_feature(struct saed_buf *b, sae_store_conn *c, const sae_store_feature *f,
                       size_t n_top, uint64_t n_tokens, const struct index_labels *labels,
                       sae_error *err)
{
    sae_store_histogram h = {0};
    sae_explanations e = {0};
    sae_store_neighbours nb = {0};
    sae_store_examples ex = {0};
    sae_store_logits lg = {0};
    sae_store_neuron_table al = {0}, co = {0};
    int rc;
    if ((rc = sae_store_get_histogram(c, f->index, &h, err)) ||
        (rc = sae_store_get_explanations(c, f->index, &e, err)) ||
        (rc = sae_store_get_neighbours(c, f->index, &nb, err)) ||
        (n_top && (rc = sae_store_get_examples(c, f->index, SAE_EX_TOP, n_top, 0, &ex, err))) ||
        (n_top && (rc = sae_store_get_logits(c, f->index, &lg, err))) ||
        (n_top && (rc = sae_store_get_neuron_table(c, f->index, SAE_NEURON_ALIGNMENT, &al, err))) ||
        (n_top &&
         (rc = sae_store_get_neuron_table(c, f->index, SAE_NEURON_CORRELATED, &co, err))))
        goto out;

    buf_puts(b, "{\"index\":");
    buf_u32(b, f->index);
    buf_puts(b, ",\"density\":");
    buf_f64(b, f->density);
    buf_puts(b, ",\"max_activation\":");
    buf_f64(b, f->max_activation);
    buf_puts(b, ",\"mean_activation\":");
    buf_f64(b, f->mean_activation);
    buf_puts(b, ",\"decoder_norm\":");
    buf_f64(b, f->decoder_norm);
    char num[64];
    snprintf(num, sizeof num, ",\"n_active\":%llu", (unsigned long long)f->n_active);
    buf_puts(b, num);
    buf_puts(b, ",\"label\":");
    const sae_explanation *best = best_explanation(&e);
    buf_json_str(b, best ? best->description : NULL);
    buf_puts(b, ",\"histogram\":");
    index_json_histogram(b, &h);
    buf_puts(b, ",\"explanations\":[");
    for (size_t i = 0; i < e.n; i++) {
        const sae_explanation *x = &e.items[i];
        buf_puts(b, i ? ",{\"description\":" : "{\"description\":");
        buf_json_str(b, x->description);
        buf_puts(b, ",\"score\":");
        if (x->has_score)
            buf_f64(b, x->score);
        else
            buf_puts(b, "null");
        buf_puts(b, ",\"source\":");
        buf_json_str(b, x->source);
        buf_putc(b, '}');
    }
    buf_puts(b, "],\"neighbours\":[");
    for (size_t i = 0; i < nb.n; i++) {
        buf_puts(b, i ? ",{\"index\":" : "{\"index\":");
        buf_u32(b, nb.items[i].index);
        buf_puts(b, ",\"cosine\":");
        buf_f32(b, nb.items[i].cosine);
        size_t len;
        const char *frag = index_labels_fragment(labels, nb.items[i].index, &len);
        if (frag)
            buf_put(b, frag, len);
        else
            buf_putc(b, '}');
    }
    buf_putc(b, ']');
    if (n_top) {
        buf_puts(b, ",\"top_examples\":[");
        for (size_t i = 0; i < ex.n; i++) {
            if (i)
                buf_putc(b, ',');
            index_json_example(b, &ex.items[i]);
        }
        buf_putc(b, ']');
        snprintf(num, sizeof num, ",\"n_top_examples\":%u,\"n_quantile_examples\":%u", f->n_top,
                 f->n_quantile);
        buf_puts(b, num);
        snprintf(num, sizeof num, ",\"n_tokens\":%llu", (unsigned long long)n_tokens);
        buf_puts(b, num);
        dashboards(b, &lg, &al, &co);
    }
    buf_putc(b, '}');
out:
    sae_store_logits_free(&lg);
    sae_store_histogram_free(&h);
    sae_explanations_free(&e);
    sae_store_neighbours_free(&nb);
    sae_store_examples_free(&ex);
    return rc;
}
