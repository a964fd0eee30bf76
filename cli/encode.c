/* encode.c: `sae encode`, activation files to sparse features, one JSON line
 * per input row: {"indices": [...], "values": [...]} ordered as the API orders
 * them (values descending, ties by index ascending), plus "l0", "mse", "fvu",
 * "cosine" with --metrics. An autoencoder model prints {"codes": [...]}.
 *
 * Rows are read, encoded and printed one block at a time, so memory stays flat
 * whatever the corpus size. With --server URL the rows are encoded by a saed
 * instead (remote.c: binary protocol, retries, weights digest pinned), with
 * the same output. With --out the lines go to a temporary file beside
 * the target, renamed into place only once everything is written and synced:
 * a failure (a full disk included) leaves no partial file behind. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/activations.h"
#include "sae/autoencoder.h"
#include "cli.h"
#include "sae/encode.h"
#include "sae/model.h"
#include "io/outfile.h"
#include "remote.h"

#define ENCODE_BLOCK_ROWS 256

/* The --help text around the options. */
static const char usage[] =
    "usage: sae encode --model DIR --activations FILE... [--top-k K] [--threshold X]\n"
    "                  [--metrics] [--compute native|f32] [--out FILE] [--quiet]\n"
    "       sae encode --server URL [--api-key KEY] [--sae ID] --activations FILE...\n"
    "                  [--top-k K] [--threshold X] [--out FILE] [--quiet]\n";
static const char about[] =
    "Encodes every row of the activation files (.safetensors with an \"activations\"\n"
    "tensor [n, d_in], or .npy; several files are one corpus, in order) and writes one\n"
    "JSON line per row: {\"indices\": [...], \"values\": [...]}, values descending, ties\n"
    "by index ascending. An autoencoder model writes {\"codes\": [...]} instead.\n";

/* Parsed flags; paths are borrowed from argv. */
typedef struct encode_args {
    const char *model_dir, *out_path;
    const char *server, *api_key, *sae; /* --server: encode remotely */
    double retry_s;
    const char **acts;
    size_t n_acts;
    sae_encode_opts opt;
    sae_compute compute;
    bool metrics, quiet, filtered, compute_given;
} encode_args;

/* Parses argv into a (a->acts allocated, caller frees). Returns -1 to go on,
 * or an exit code. */
static int parse_args(int argc, char **argv, encode_args *a)
{
    a->retry_s = 120;
    a->acts = calloc((size_t)argc, sizeof *a->acts);
    if (!a->acts)
        return cli_fail("out of memory");
    const cli_opt opts[] = {
        {"--model", CLI_PATH, "DIR", CLI_TO(a->model_dir),
         .help = "the model folder (SAELens or sparsify layout)"},
        {"--server", CLI_PATH, "URL", CLI_TO(a->server),
         .help = "encode with the saed at URL (http://HOST:PORT) instead of --model"},
        {"--api-key", CLI_PATH, "KEY", CLI_TO(a->api_key), .help = "saed's API key"},
        {"--sae", CLI_PATH, "ID", CLI_TO(a->sae),
         .help = "the SAE of a saed serving many (/v1/saes/ID/...)"},
        {"--retry-seconds", CLI_DOUBLE, "S", CLI_TO(a->retry_s), .dlo = 0, .dhi = 86400,
         .help = "most time spent waiting on 503s and lost connections (120)"},
        {"--activations", CLI_LIST, "FILE", CLI_TO(a->acts[0]), .count = &a->n_acts,
         .max = (size_t)argc, .required = true, .help = "one or more activation files"},
        {"--top-k", CLI_U64, "K", CLI_TO(a->opt.top_k), .lo = 1, .hi = UINT32_MAX,
         .given = &a->filtered, .help = "keep the K largest values of each row"},
        {"--threshold", CLI_DOUBLE, "X", CLI_TO(a->opt.threshold), .dlo = -FLT_MAX,
         .dhi = FLT_MAX, .given = &a->opt.has_threshold, .help = "keep values > X"},
        {"--metrics", CLI_FLAG, CLI_TO(a->metrics),
         .help = "add \"l0\", \"mse\", \"fvu\", \"cosine\" (from the full SAE\n"
                 "output, whatever --top-k/--threshold keep)"},
        {"--out", CLI_PATH, "FILE", CLI_TO(a->out_path),
         .help = "write there (atomically) instead of stdout"},
        CLI_COMPUTE_OPT(a->compute, &a->compute_given),
        {"--quiet", CLI_FLAG, CLI_TO(a->quiet), .help = "no progress on stderr"},
    };
    const cli_spec spec = {.cmd = "encode", .usage = usage, .about = about, CLI_OPTS(opts)};
    int rc = cli_parse(&spec, argc, argv);
    if (rc >= 0)
        return rc;
    a->filtered = a->filtered || a->opt.has_threshold;
    if (!a->model_dir == !a->server)
        return cli_usage("encode", "give exactly one of --model and --server");
    if (a->server && a->metrics)
        return cli_usage("encode", "--metrics needs --model (saed's binary replies carry none)");
    if (!a->server && (a->api_key || a->sae))
        return cli_usage("encode", "--api-key and --sae go with --server");
    if (a->server && a->compute_given)
        return cli_usage("encode", "--compute goes with --model (saed's key compute sets it there)");
    return cli_check_not_input("encode", a->out_path, a->acts, a->n_acts);
}

/* Writes a float as JSON: %.9g reads back as the same float; a non-finite
 * value (which valid inputs and weights never give) becomes null. */
static void put_float(FILE *fp, double v)
{
    if (isfinite(v))
        fprintf(fp, "%.9g", v);
    else
        fputs("null", fp);
}

/* One output line for row r of sp (and its metrics when asked). */
static void put_sparse_row(FILE *fp, const sae_sparse *sp, size_t r, const sae_row_metrics *met)
{
    size_t a = sp->row_ptr[r], b = sp->row_ptr[r + 1];
    fputs("{\"indices\": [", fp);
    for (size_t t = a; t < b; t++)
        fprintf(fp, t > a ? ", %u" : "%u", sp->idx[t]);
    fputs("], \"values\": [", fp);
    for (size_t t = a; t < b; t++) {
        if (t > a)
            fputs(", ", fp);
        put_float(fp, sp->val[t]);
    }
    fputc(']', fp);
    if (met) {
        fprintf(fp, ", \"l0\": %u, \"mse\": ", met->l0);
        put_float(fp, met->mse);
        fputs(", \"fvu\": ", fp);
        put_float(fp, met->fvu);
        fputs(", \"cosine\": ", fp);
        put_float(fp, met->cosine);
    }
    fputs("}\n", fp);
}

/* One output line of autoencoder codes (d floats). */
static void put_codes_row(FILE *fp, const float *codes, size_t d)
{
    fputs("{\"codes\": [", fp);
    for (size_t j = 0; j < d; j++) {
        if (j)
            fputs(", ", fp);
        put_float(fp, codes[j]);
    }
    fputs("]}\n", fp);
}

/* The destination: stdout, or an outfile (a temporary renamed over --out). */
typedef struct out_file {
    FILE *fp;         /* stdout or file.fp; NULL before out_open */
    sae_outfile file; /* when writing --out */
    const char *path; /* borrowed: the final name, or "stdout" */
} out_file;

static int out_open(out_file *o, const char *path)
{
    static char buf_stdout[1 << 16];
    if (!path) {
        o->fp = stdout;
        o->path = "stdout";
        setvbuf(stdout, buf_stdout, _IOFBF, sizeof buf_stdout);
        return 0;
    }
    sae_error err;
    if (sae_outfile_open(&o->file, path, &err))
        return cli_fail_err(&err);
    o->path = path;
    o->fp = o->file.fp;
    return 0;
}

/* Finishes the output: on success flushes, syncs and renames into place; on
 * failure (or any write error seen) removes the temporary file. Returns the
 * exit code. */
static int out_close(out_file *o, int rc)
{
    if (!o->fp)
        return rc;
    if (o->fp == stdout) {
        if (rc == SAE_EXIT_OK && (fflush(stdout) != 0 || ferror(stdout)))
            rc = cli_fail("stdout: write failed: %s", strerror(errno));
    } else if (rc == SAE_EXIT_OK) {
        sae_error err;
        if (sae_outfile_commit(&o->file, &err))
            rc = cli_fail_err(&err);
    } else {
        sae_outfile_abort(&o->file);
    }
    o->fp = NULL;
    return rc;
}

/* Opens every activation file on its own (so errors name the file), checks
 * each against the model's d_in. */
static int open_all(const encode_args *a, size_t d_in, sae_acts **acts, size_t *total)
{
    sae_error err;
    *total = 0;
    for (size_t f = 0; f < a->n_acts; f++) {
        sae_error_clear(&err);
        if (sae_acts_open(&a->acts[f], 1, &acts[f], &err))
            return cli_fail_err(&err);
        if (sae_acts_dim(acts[f]) != d_in)
            return cli_fail("%s: activations have d_in %zu but the model (%s) has d_in %zu",
                            a->acts[f], sae_acts_dim(acts[f]),
                            a->server ? a->server : a->model_dir, d_in);
        *total += sae_acts_rows(acts[f]);
    }
    return SAE_EXIT_OK;
}

/* The first non-finite element of x (n floats), or n. */
static size_t first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return n;
}

/* The query string of --top-k/--threshold for saed ("" when neither). */
static void encode_query(const encode_args *a, char *q, size_t size)
{
    int k = 0;
    q[0] = 0;
    if (a->filtered && a->opt.top_k)
        k = snprintf(q, size, "?top_k=%llu", (unsigned long long)a->opt.top_k);
    if (a->opt.has_threshold)
        snprintf(q + k, size - (size_t)k, "%cthreshold=%.9g", k ? '&' : '?', a->opt.threshold);
}

int cmd_encode(int argc, char **argv)
{
    encode_args a = {0};
    int rc = parse_args(argc, argv, &a);
    sae_model *m = NULL;
    sae_remote remote = {.fd = -1};
    size_t d_in = 0, d_sae = 0, bn = ENCODE_BLOCK_ROWS;
    bool ae = false;
    char query[96];
    sae_acts **acts = NULL;
    sae_workspace *ws = NULL;
    float *x = NULL, *codes = NULL;
    sae_row_metrics *met = NULL;
    sae_sparse sp;
    sae_sparse_init(&sp);
    out_file out = {0};
    sae_error err;
    sae_error_clear(&err);
    if (rc >= 0)
        goto out;
    rc = SAE_EXIT_FAILURE;

    if (a.server) {
        if ((rc = remote_open(&remote, a.server, a.api_key, a.sae, a.retry_s)) != SAE_EXIT_OK)
            goto out;
        rc = SAE_EXIT_FAILURE;
        if (!strcmp(remote.arch, "autoencoder")) {
            rc = cli_fail("%s serves an autoencoder, which --server does not encode", a.server);
            goto out;
        }
        d_in = remote.d_in, d_sae = remote.d_sae, bn = remote.max_rows;
        encode_query(&a, query, sizeof query);
    } else {
        sae_model_warnings warn;
        int load_rc = sae_model_load_with(a.model_dir, a.compute, &m, &warn, &err);
        for (size_t i = 0; i < warn.n; i++)
            cli_warn("%s", warn.line[i]);
        if (load_rc) {
            rc = cli_fail_err(&err);
            goto out;
        }
        d_in = m->d_in, d_sae = m->d_sae;
        ae = m->arch == SAE_ARCH_AUTOENCODER;
    }
    if (ae && (a.filtered || a.metrics)) {
        rc = cli_usage("encode",
                       "--top-k, --threshold and --metrics apply to SAEs, and %s is "
                       "an autoencoder",
                       a.model_dir);
        goto out;
    }
    acts = calloc(a.n_acts, sizeof *acts);
    size_t total;
    if (!acts) {
        rc = cli_fail("out of memory");
        goto out;
    }
    if ((rc = open_all(&a, d_in, acts, &total)) != SAE_EXIT_OK)
        goto out;
    rc = SAE_EXIT_FAILURE;

    x = malloc(bn * d_in * sizeof *x);
    if (ae)
        codes = malloc(bn * d_sae * sizeof *codes);
    else if (m)
        ws = sae_workspace_new(m, bn);
    met = a.metrics ? malloc(bn * sizeof *met) : NULL;
    if (!x || (ae ? !codes : m && !ws) || (a.metrics && !met)) {
        rc = cli_fail("out of memory for a block of %zu rows", bn);
        goto out;
    }
    if ((rc = out_open(&out, a.out_path)) != SAE_EXIT_OK)
        goto out;
    rc = SAE_EXIT_FAILURE;

    cli_progress prog;
    cli_progress_start(&prog, "encode", "rows", total, a.quiet);
    size_t done = 0;
    for (size_t f = 0; f < a.n_acts; f++) {
        size_t rows = sae_acts_rows(acts[f]);
        for (size_t r0 = 0; r0 < rows; r0 += bn) {
            size_t n = rows - r0 < bn ? rows - r0 : bn;
            if (sae_acts_read(acts[f], r0, n, x, &err)) {
                cli_fail_err(&err);
                goto out;
            }
            size_t bad = first_nonfinite(x, n * d_in);
            if (bad < n * d_in) {
                cli_fail("%s: row %zu, element %zu: value is not finite", a.acts[f],
                         r0 + bad / d_in, bad % d_in);
                goto out;
            }
            if (ae) {
                if (sae_ae_encode(m->ae, x, n, codes, &err)) {
                    cli_fail_err(&err);
                    goto out;
                }
                for (size_t r = 0; r < n; r++)
                    put_codes_row(out.fp, codes + r * d_sae, d_sae);
            } else if (a.server) {
                sae_sparse_reset(&sp);
                if (remote_encode(&remote, x, n, query, &sp) != SAE_EXIT_OK)
                    goto out;
                for (size_t r = 0; r < n; r++)
                    put_sparse_row(out.fp, &sp, r, NULL);
            } else {
                sae_sparse_reset(&sp);
                if (sae_encode(m, ws, x, n, a.filtered ? &a.opt : NULL, &sp, met, NULL, &err)) {
                    cli_fail_err(&err);
                    goto out;
                }
                for (size_t r = 0; r < n; r++)
                    put_sparse_row(out.fp, &sp, r, met ? &met[r] : NULL);
            }
            if (ferror(out.fp)) {
                cli_fail("%s: write failed: %s", out.path, strerror(errno));
                goto out;
            }
            done += n;
            cli_progress_update(&prog, done);
        }
    }
    if (prog.t_last > prog.t_start) /* a progress line was shown: end it */
        cli_progress_finish(&prog, done);
    rc = SAE_EXIT_OK;
out:
    rc = out_close(&out, rc);
    if (acts)
        for (size_t f = 0; f < a.n_acts; f++)
            sae_acts_free(acts[f]);
    free(acts);
    free(a.acts);
    free(x);
    free(codes);
    free(met);
    sae_sparse_free(&sp);
    sae_workspace_free(ws);
    sae_model_free(m);
    remote_close(&remote);
    return rc;
}
