/* export.c: `sae export --neuronpedia DIR ...`: an index written as the batch
 * files SAEDashboard's NeuronpediaRunner writes, so a saed index can be
 * uploaded to Neuronpedia (CONTRACT section 1; docs/INDEX.md).
 *
 * DIR/batch-{k}.json.gz, k from 0, each gzip of one NeuronpediaDashboardBatch
 * {"model_id", "layer", "sae_set", "features": [...]} holding the features
 * k*N .. k*N+N-1 (N = --features-per-batch). A feature carries the fields of
 * SAEDashboard's NeuronpediaDashboardFeature that the index holds:
 *   feature_index, frac_nonzero (density), freq_hist_data_bar_values /
 *   _heights (SAEDashboard's 50 linear bars: exact when the index has them,
 *   `sae index --neuronpedia-hist`, else index_hist.h's sae_hist_linear;
 *   sae_store_get_np_hist),
 *   n_prompts_total (the documents indexed), and activations: the top
 *   examples as SAEDashboard's top group (bin_min -1, bin_max = the feature's
 *   max, bin_contains -1) then the quantile examples with their bins, each
 *   {bin_min, bin_max, bin_contains, tokens, values}.
 * Numbers are written at full precision (SAEDashboard rounds to 3 decimals).
 * The logit tables and histogram, neuron alignment and correlated neurons
 * are written when the index holds them (add_dashboards). Not in the index
 * and so not written: n_tokens_in_prompt, dataset, decoder_weights_dist. Each file is written beside its name and renamed
 * into place (io/outfile.h). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cli.h"
#include "index/store.h"
#include "io/outfile.h"

static const char usage[] =
    "usage: sae export --neuronpedia DIR --model M --index FILE.db --layer N\n"
    "                  --sae-set S [--features-per-batch N] [--quiet]\n";
static const char about[] =
    "Writes the index as the batch files SAEDashboard's NeuronpediaRunner writes\n"
    "(DIR/batch-K.json.gz: model_id, layer, sae_set and the features with every\n"
    "dashboard field the index holds), for upload to Neuronpedia.\n";

/* Parsed flags; strings are borrowed from argv. */
typedef struct export_args {
    const char *dir, *model, *index, *sae_set;
    uint64_t layer, per_batch;
    bool quiet;
} export_args;

/* A JSON array of n doubles (a new reference, NULL on failure). */
static json_t *real_array(const double *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(v[i])))
            return json_decref(a), NULL;
    return a;
}

/* A JSON array of n counts (a new reference, NULL on failure). */
static json_t *count_array(const uint64_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer((json_int_t)v[i])))
            return json_decref(a), NULL;
    return a;
}

/* A top-group bin (the integer -1, as SAEDashboard writes it) or a number. */
static json_t *bin(bool top, double v)
{
    return top ? json_integer(-1) : json_real(v);
}

/* Appends the examples of one kind to acts as SAEDashboard activations. */
static int add_activations(json_t *acts, const sae_store_examples *ex, double max)
{
    for (size_t i = 0; i < ex->n; i++) {
        const sae_store_example *e = &ex->items[i];
        bool top = e->kind == SAE_EX_TOP;
        json_t *a = json_object(), *toks = json_array(), *vals = json_array();
        if (!a || !toks || !vals || json_array_append_new(acts, a)) {
            json_decref(toks);
            json_decref(vals);
            return -1;
        }
        for (size_t k = 0; k < e->n; k++) {
            json_t *t = json_stringn(e->tokens[k], e->token_len[k]);
            if (!t || json_array_append_new(toks, t) ||
                json_array_append_new(vals, json_real(e->values[k]))) {
                json_decref(toks);
                json_decref(vals);
                return -1;
            }
        }
        if (json_object_set_new(a, "bin_min", bin(top, e->bin_min)) ||
            json_object_set_new(a, "bin_max", json_real(top ? max : e->bin_max)) ||
            json_object_set_new(a, "bin_contains", bin(top, e->bin_contains)) ||
            json_object_set_new(a, "tokens", toks) || json_object_set_new(a, "values", vals))
            return -1;
    }
    return 0;
}

/* A JSON array of n floats, or NULL when out of memory. */
static json_t *float_array(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(v[i])))
            return json_decref(a), NULL;
    return a;
}

/* A JSON array of n indices. */
static json_t *index_array(const uint32_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer(v[i])))
            return json_decref(a), NULL;
    return a;
}

/* A JSON array of n token strings. */
static json_t *string_array(const char *const *s, const size_t *len, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_stringn(s[i], len[i])))
            return json_decref(a), NULL;
    return a;
}

/* Sets on o the fields of the index's dashboard tables, where it has them
 * (`sae index --unembed` / `--correlations`): the logit tables and their
 * histogram, neuron alignment and correlated neurons, under SAEDashboard's
 * names, as the Neuronpedia route writes them. 0, or -1 out of memory. */
static int add_dashboards(json_t *o, const sae_store_logits *l, const sae_store_neuron_table *al,
                          const sae_store_neuron_table *co)
{
    int bad = 0;
    if (l->computed) {
        json_t *h = json_array(), *v = json_array();
        for (size_t i = 0; h && v && i < l->n_bins; i++)
            bad |= json_array_append_new(h, json_integer(l->hist[i])) |
                   json_array_append_new(v, json_real(sae_store_logits_bar_value(l, i)));
        bad |= json_object_set_new(o, "pos_str", string_array(l->pos_str, l->pos_len, l->n_pos)) |
               json_object_set_new(o, "pos_values", float_array(l->pos_values, l->n_pos)) |
               json_object_set_new(o, "neg_str", string_array(l->neg_str, l->neg_len, l->n_neg)) |
               json_object_set_new(o, "neg_values", float_array(l->neg_values, l->n_neg)) |
               json_object_set_new(o, "logits_hist_data_bar_heights", h) |
               json_object_set_new(o, "logits_hist_data_bar_values", v);
    }
    if (al->computed)
        bad |= json_object_set_new(o, "neuron_alignment_indices", index_array(al->indices, al->n)) |
               json_object_set_new(o, "neuron_alignment_values", float_array(al->values, al->n)) |
               json_object_set_new(o, "neuron_alignment_l1", float_array(al->extra, al->n));
    if (co->computed)
        bad |= json_object_set_new(o, "correlated_neurons_indices",
                                   index_array(co->indices, co->n)) |
               json_object_set_new(o, "correlated_neurons_pearson", float_array(co->values, co->n));
    return bad ? -1 : 0;
}

/* One feature as a NeuronpediaDashboardFeature (a new reference in *out). */
static int feature_json(sae_store_conn *c, const sae_store_info *info, uint32_t i, json_t **out,
                        sae_error *err)
{
    sae_store_feature f;
    sae_store_np_hist h;
    sae_store_examples top = {0}, qua = {0};
    sae_store_logits lg = {0};
    sae_store_neuron_table al = {0}, co = {0};
    json_t *o = NULL;
    int rc;
    if ((rc = sae_store_get_feature(c, i, &f, err)) ||
        (rc = sae_store_get_logits(c, i, &lg, err)) ||
        (rc = sae_store_get_neuron_table(c, i, SAE_NEURON_ALIGNMENT, &al, err)) ||
        (rc = sae_store_get_neuron_table(c, i, SAE_NEURON_CORRELATED, &co, err)) ||
        (rc = sae_store_get_np_hist(c, i, &h, err)) ||
        (rc = sae_store_get_examples(c, i, SAE_EX_TOP, UINT32_MAX, 0, &top, err)) ||
        (rc = sae_store_get_examples(c, i, SAE_EX_QUANTILE, UINT32_MAX, 0, &qua, err)))
        goto out;
    json_t *acts = json_array();
    o = json_object();
    bool ok = o && acts && !add_dashboards(o, &lg, &al, &co) &&
              !json_object_set_new(o, "feature_index", json_integer(i)) &&
              !json_object_set_new(o, "frac_nonzero", json_real(f.density)) &&
              !json_object_set_new(o, "freq_hist_data_bar_values", real_array(h.values, h.n)) &&
              !json_object_set_new(o, "freq_hist_data_bar_heights",
                                   count_array(h.heights, h.n)) &&
              !json_object_set_new(o, "n_prompts_total",
                                   json_integer((json_int_t)info->n_documents)) &&
              !add_activations(acts, &top, f.max_activation) &&
              !add_activations(acts, &qua, f.max_activation);
    if (!ok)
        json_decref(acts);
    /* set_new takes acts whether or not it succeeds. */
    if (!ok || json_object_set_new(o, "activations", acts))
        rc = sae_error_set(err, SAE_ENOMEM, "feature %u: out of memory building its JSON", i);
out:
    sae_store_logits_free(&lg);
    sae_store_examples_free(&top);
    sae_store_examples_free(&qua);
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* Writes text (len bytes) gzip-compressed to path, atomically. */
static int write_gzip(const char *path, const char *text, size_t len, sae_error *err)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16: a gzip wrapper, as Python's gzip module writes. */
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return sae_error_set(err, SAE_ENOMEM, "%s: cannot start gzip", path);
    sae_outfile o;
    int rc = sae_outfile_open(&o, path, err);
    if (rc) {
        deflateEnd(&z);
        return rc;
    }
    unsigned char buf[1 << 16];
    size_t off = 0;
    int zr;
    do {
        size_t chunk = len - off > (1u << 30) ? (1u << 30) : len - off;
        z.next_in = (unsigned char *)text + off;
        z.avail_in = (uInt)chunk;
        off += chunk;
        int flush = off == len ? Z_FINISH : Z_NO_FLUSH;
        do {
            z.next_out = buf;
            z.avail_out = sizeof buf;
            zr = deflate(&z, flush);
            fwrite(buf, 1, sizeof buf - z.avail_out, o.fp);
        } while (z.avail_out == 0);
    } while (off < len);
    deflateEnd(&z);
    if (zr != Z_STREAM_END) {
        sae_outfile_abort(&o);
        return sae_error_set(err, SAE_EIO, "%s: gzip failed", path);
    }
    return sae_outfile_commit(&o, err);
}

/* Writes batch k (features lo .. hi-1). */
static int write_batch(sae_store_conn *c, const sae_store_info *info, const export_args *a,
                       uint64_t k, uint32_t lo, uint32_t hi, sae_error *err)
{
    json_t *batch = json_object(), *features = json_array();
    int rc = 0;
    if (!batch || !features || json_object_set_new(batch, "model_id", json_string(a->model)) ||
        json_object_set_new(batch, "layer", json_integer((json_int_t)a->layer)) ||
        json_object_set_new(batch, "sae_set", json_string(a->sae_set)) ||
        json_object_set_new(batch, "features", features)) {
        json_decref(batch);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    for (uint32_t i = lo; i < hi && !rc; i++) {
        json_t *f;
        if (!(rc = feature_json(c, info, i, &f, err)) && json_array_append_new(features, f))
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    char *text = rc ? NULL : json_dumps(batch, JSON_COMPACT);
    json_decref(batch);
    if (rc)
        return rc;
    if (!text)
        return sae_error_set(err, SAE_ENOMEM, "batch %llu: out of memory writing JSON",
                             (unsigned long long)k);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/batch-%llu.json.gz", a->dir, (unsigned long long)k) >=
        (int)sizeof path)
        rc = sae_error_set(err, SAE_EINVAL, "%s: path too long", a->dir);
    else
        rc = write_gzip(path, text, strlen(text), err);
    free(text);
    return rc;
}

int cmd_export(int argc, char **argv)
{
    export_args a = {.per_batch = 128};
    const cli_opt opts[] = {
        {"--neuronpedia", CLI_PATH, "DIR", CLI_TO(a.dir), .required = true,
         .help = "the folder to write batch-K.json.gz into (made if missing)"},
        {"--model", CLI_PATH, "M", CLI_TO(a.model), .required = true,
         .help = "Neuronpedia's model id (model_id), e.g. gpt2-small"},
        {"--index", CLI_PATH, "FILE.db", CLI_TO(a.index), .required = true,
         .help = "the index to export"},
        {"--layer", CLI_U64, "N", CLI_TO(a.layer), .hi = UINT32_MAX, .required = true,
         .help = "the layer (the number before '-' in Neuronpedia's source id)"},
        {"--sae-set", CLI_PATH, "S", CLI_TO(a.sae_set), .required = true,
         .help = "the SAE set (the source id after '-'), e.g. res-jb"},
        {"--features-per-batch", CLI_U64, "N", CLI_TO(a.per_batch), .lo = 1, .hi = 1u << 20,
         .help = "features per batch file (default 128)"},
        {"--quiet", CLI_FLAG, CLI_TO(a.quiet), .help = "no progress on stderr"},
    };
    const cli_spec spec = {.cmd = "export", .usage = usage, .about = about, CLI_OPTS(opts)};
    int code = cli_parse(&spec, argc, argv);
    if (code >= 0)
        return code;
    sae_error err;
    sae_error_clear(&err);
    sae_store *s = NULL;
    sae_store_conn *c = NULL;
    if (mkdir(a.dir, 0777) && errno != EEXIST)
        return cli_fail("%s: cannot make the folder: %s", a.dir, strerror(errno));
    if (sae_store_open(a.index, &s, &err) || sae_store_connect(s, &c, &err)) {
        code = cli_fail_err(&err);
        goto out;
    }
    const sae_store_info *info = sae_store_get_info(s);
    cli_progress prog;
    cli_progress_start(&prog, "export", "features", info->d_sae, a.quiet);
    for (uint64_t lo = 0, k = 0; lo < info->d_sae; lo += a.per_batch, k++) {
        uint64_t hi = lo + a.per_batch < info->d_sae ? lo + a.per_batch : info->d_sae;
        if (write_batch(c, info, &a, k, (uint32_t)lo, (uint32_t)hi, &err)) {
            code = cli_fail_err(&err);
            goto out;
        }
        cli_progress_update(&prog, hi);
    }
    cli_progress_finish(&prog, info->d_sae);
    if (!a.quiet)
        fprintf(stderr, "export: wrote %llu batch files to %s\n",
                (unsigned long long)((info->d_sae + a.per_batch - 1) / a.per_batch), a.dir);
    code = SAE_EXIT_OK;
out:
    sae_store_disconnect(c);
    sae_store_close(s);
    return code;
}
