/* info.c: `sae info MODEL_DIR`, validate a model folder exactly as saed does
 * (sae_model_load) and print a JSON summary of it on stdout. Loader warnings
 * go to stderr; an invalid folder is one `sae: error: <file>: <what>` line and
 * exit 1. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sae/model.h"

/* The --help text around the options. */
static const char usage[] = "usage: sae info MODEL_DIR [--model-name NAME] [--hook-name HOOK]\n"
                            "                [--hook-name-out HOOK] [--neuronpedia-id ID]\n";
static const char about[] =
    "Loads MODEL_DIR (SAELens: cfg.json + sae_weights.safetensors; sparsify: cfg.json +\n"
    "sae.safetensors) with the same checks saed makes, and prints a JSON summary:\n"
    "d_in, d_sae, architecture, k, dtype, normalize_activations, norm_scaling_factor,\n"
    "apply_b_dec_to_input, rescale_acts_by_decoder_norm, model_name, hook_name,\n"
    "neuronpedia_id, d_out, transcoder, hook_name_out, skip_connection, signed,\n"
    "finetuning_scaling_factor, weights_digest, weights_path, format and decoder\n"
    "norm min/mean/max. --model-name, --hook-name, --hook-name-out and\n"
    "--neuronpedia-id replace the folder's names, as saed's settings of the same\n"
    "names do.\n"
    "Exit status: 0 valid, 1 invalid (reason on stderr), 2 bad usage.\n";

/* A JSON number for a float, printed as the shortest decimal that reads back
 * as the same float (0.7f shows as 0.7, not 0.699999988). */
static json_t *json_float(float f)
{
    if (!isfinite(f))
        return json_null();
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return json_real(strtod(buf, NULL));
}

/* Prints each line of the loader's warnings as `sae: warning: ...`. */
static void print_warnings(const sae_model_warnings *warn)
{
    for (size_t i = 0; i < warn->n; i++)
        cli_warn("%s", warn->line[i]);
}

/* The summary object for a loaded model (new reference). */
static json_t *model_summary(const sae_model *m)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "d_in", json_integer((json_int_t)m->d_in));
    json_object_set_new(o, "d_sae", json_integer((json_int_t)m->d_sae));
    json_object_set_new(o, "architecture", json_string(sae_arch_name(m->arch)));
    json_object_set_new(o, "k",
                        m->arch == SAE_ARCH_TOPK ? json_integer((json_int_t)m->k) : json_null());
    json_object_set_new(o, "dtype", json_string(m->dtype));
    json_object_set_new(o, "normalize_activations", json_string(sae_norm_name(m->norm)));
    /* s only means something for expected_average_only_in */
    json_object_set_new(o, "norm_scaling_factor",
                        m->norm == SAE_NORM_EXPECTED_AVERAGE_ONLY_IN
                            ? json_float(m->norm_scaling_factor)
                            : json_null());
    json_object_set_new(o, "apply_b_dec_to_input", json_boolean(m->apply_b_dec_to_input));
    json_object_set_new(o, "rescale_acts_by_decoder_norm",
                        json_boolean(m->rescale_acts_by_decoder_norm));
    json_object_set_new(o, "model_name", json_string(m->model_name ? m->model_name : ""));
    json_object_set_new(o, "hook_name", json_string(m->hook_name ? m->hook_name : ""));
    sae_model_json_kind(m, o);
    json_object_set_new(o, "weights_digest", json_string(m->weights_digest));
    json_object_set_new(o, "weights_path", json_string(m->weights_path));
    json_object_set_new(o, "format", json_string(m->sparsify ? "sparsify" : "saelens"));
    if (m->dec_norm && m->d_sae) {
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        for (size_t i = 0; i < m->d_sae; i++) {
            double v = m->dec_norm[i];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            sum += v;
        }
        json_object_set_new(
            o, "decoder_norm",
            json_pack("{s:f, s:f, s:f}", "min", lo, "mean", sum / (double)m->d_sae, "max", hi));
    } else {
        json_object_set_new(o, "decoder_norm", json_null()); /* autoencoder */
    }
    return o;
}

int cmd_info(int argc, char **argv)
{
    const char *dir = NULL;
    sae_model_names names = {0};
    const cli_opt opts[] = {
        {.type = CLI_PATH, .arg = "MODEL_DIR", CLI_TO(dir), .required = true},
        {"--model-name", CLI_PATH, "NAME", CLI_TO(names.model_name),
         .help = "the SAE's language model, in place of the folder's"},
        {"--hook-name", CLI_PATH, "HOOK", CLI_TO(names.hook_name),
         .help = "the hook the SAE reads, in place of the folder's"},
        {"--hook-name-out", CLI_PATH, "HOOK", CLI_TO(names.hook_name_out),
         .help = "a transcoder's output hook, in place of the folder's"},
        {"--neuronpedia-id", CLI_PATH, "ID", CLI_TO(names.neuronpedia_id),
         .help = "Neuronpedia's MODEL/SOURCE id, in place of the folder's"},
    };
    const cli_spec spec = {.cmd = "info", .usage = usage, .about = about, CLI_OPTS(opts)};
    int parsed = cli_parse(&spec, argc, argv);
    if (parsed >= 0)
        return parsed;

    sae_model *m = NULL;
    sae_error err;
    sae_error_clear(&err);
    sae_model_warnings warn;
    int load_rc = sae_model_load(dir, &m, &warn, &err);
    print_warnings(&warn);
    if (load_rc || sae_model_set_names(m, &names, &err)) {
        sae_model_free(m);
        return cli_fail_err(&err);
    }

    int rc = SAE_EXIT_OK;
    json_t *o = model_summary(m);
    char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) : NULL;
    if (!s)
        rc = cli_fail("out of memory");
    else if (printf("%s\n", s) < 0 || fflush(stdout) != 0)
        rc = cli_fail("stdout: %s", strerror(errno));
    free(s);
    json_decref(o);
    sae_model_free(m);
    return rc;
}
