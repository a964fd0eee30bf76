/* train.c: `sae train`, train an SAE (standard, topk) or a stacked
 * autoencoder on activation files and write a SAELens-layout folder, with
 * train_log.jsonl, progress on stderr and, given the synth truth, the MMCS
 * and an explanations file; `sae train --bench` measures training speed
 * against raw sgemm of the same shapes in the same run. core/train/train.h holds
 * the method. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cblas.h>

#include "io/clock.h"
#include "io/list.h"
#include "cli.h"
#include "sae/encode.h"
#include "io/outfile.h"
#include "io/rng.h"
#include "train/synth.h"
#include "train/train.h"

/* The --help text around the options. */
static const char usage[] =
    "usage: sae train --activations FILE... --out DIR [--arch standard|topk|autoencoder]\n"
    "                 [--d-sae N] [--l1 X] [--k K] [--layers W,W,...] [--lr X]\n"
    "                 [--batch N] [--steps N] [--seed S] [--truth SYNTH_DIR] ...\n"
    "       sae train --bench [--d-in N] [--d-sae N] [--batch N] [--steps N]\n";
static const char about[] =
    "Trains by hand-derived gradients (Adam, learning-rate warm-up and decay) and\n"
    "writes DIR/cfg.json + DIR/sae_weights.safetensors (loadable by saed, sae index\n"
    "and sae encode) and DIR/train_log.jsonl. Inputs are scaled so that E|x| =\n"
    "sqrt(d_in) for training; the factor is folded into the saved weights (W_enc*s,\n"
    "W_dec/s, b_dec/s, as SAELens does), so the folder reads raw activations.\n";

/* Parsed flags; strings are borrowed from argv. */
typedef struct train_args {
    sae_train_opts o;
    const char **acts;
    size_t n_acts;
    const char *out, *truth;
    bool quiet, bench, no_resample;
    int threads;
    size_t bench_d_in;
} train_args;

/* Parses "4,3,2" into the layers of the sae_train_opts at dst. */
static int parse_layers(const char *s, void *dst)
{
    sae_train_opts *o = dst;
    o->n_layers = 0;
    sae_list it = sae_list_of(s);
    const char *p;
    size_t n;
    while (sae_list_next(&it, &p, &n)) {
        char buf[32];
        uint64_t v;
        if (n == 0 || n >= sizeof buf || o->n_layers == SAE_AE_MAX_LAYERS)
            return -1;
        memcpy(buf, p, n);
        buf[n] = '\0';
        if (cli_parse_u64(buf, 1, INT32_MAX, &v))
            return -1;
        o->layers[o->n_layers++] = (size_t)v;
    }
    return o->n_layers >= 2 ? 0 : -1;
}

/* Reads --arch (standard, topk or autoencoder) into the sae_arch at dst. */
static int parse_arch(const char *s, void *dst)
{
    static const sae_arch trainable[] = {SAE_ARCH_STANDARD, SAE_ARCH_TOPK, SAE_ARCH_AUTOENCODER};
    for (size_t i = 0; i < sizeof trainable / sizeof trainable[0]; i++)
        if (!strcmp(s, sae_arch_name(trainable[i]))) {
            *(sae_arch *)dst = trainable[i];
            return 0;
        }
    return -1;
}

/* Parses argv into a (a->acts allocated, caller frees). Returns -1 to go on,
 * or an exit code. */
static int parse_args(int argc, char **argv, train_args *a)
{
    sae_train_opts *o = &a->o;
    a->acts = calloc((size_t)argc, sizeof *a->acts);
    if (!a->acts)
        return cli_fail("out of memory");
    const cli_opt opts[] = {
        {"--activations", CLI_LIST, "FILE", CLI_TO(a->acts[0]), .count = &a->n_acts,
         .max = (size_t)argc,
         .help = ".safetensors (\"activations\" [n, d_in]) or .npy files,\n"
                 "one corpus in the order given"},
        {"--out", CLI_PATH, "DIR", CLI_TO(a->out),
         .help = "the model folder to write (created if missing)"},
        {"--arch", CLI_PARSE, "A", .dst = &o->arch, .parse = parse_arch,
         .want = "standard, topk or autoencoder",
         .help = "standard (ReLU, L1 on f_i*|W_dec,i|; default), topk, or\n"
                 "autoencoder (Linear+ReLU down to a bottleneck and back)"},
        {"--d-sae", CLI_U64, "N", CLI_TO(o->d_sae), .lo = 1, .hi = INT32_MAX,
         .help = "latents (default 4 * d_in)"},
        {"--l1", CLI_DOUBLE, "X", CLI_TO(o->l1), .dhi = 1e6,
         .help = "sparsity coefficient of standard (default 1)"},
        {"--k", CLI_U64, "K", CLI_TO(o->k), .lo = 1, .hi = INT32_MAX,
         .help = "latents kept per row by topk (default min(32, d_sae/2))"},
        {"--layers", CLI_PARSE, "W,W,...", .dst = o, .parse = parse_layers,
         .want = "2 to " CLI_XSTR(SAE_AE_MAX_LAYERS) " positive widths separated by commas",
         .help = "autoencoder widths from d_in to the bottleneck\n"
                 "(default d_in,d_in/2,d_in/4; 4,3,2 gives 4-3-2-3-4)"},
        {"--lr", CLI_DOUBLE, "X", CLI_TO(o->lr), .dlo = 1e-12, .dhi = 1e6,
         .help = "peak Adam learning rate (default 0.004)"},
        {"--batch", CLI_U64, "N", CLI_TO(o->batch), .lo = 1, .hi = 1u << 20,
         .help = "rows per step (default 1024)"},
        {"--steps", CLI_U64, "N", CLI_TO(o->steps), .lo = 1, .hi = 1u << 30,
         .help = "steps (default: 20 passes over the data, at least\n"
                 "2000 and at most 50000)"},
        {"--seed", CLI_U64, "S", CLI_TO(o->seed), .hi = UINT64_MAX,
         .help = "seed (default 0); same seed, one thread: same weights"},
        {"--warmup", CLI_U64, "N", CLI_TO(o->lr_warmup), .lo = 1, .hi = 1u << 30,
         .help = "learning-rate warm-up steps (default 5% of steps, <= 1000)"},
        {"--decay", CLI_DOUBLE, "X", CLI_TO(o->decay_frac), .dhi = 1,
         .help = "fraction of steps with linear decay to 0 (default 0.2)"},
        {"--l1-warmup", CLI_DOUBLE, "X", CLI_TO(o->l1_warmup_frac), .dhi = 1,
         .help = "fraction of steps over which l1 ramps up (default 0.05)"},
        {"--init-norm", CLI_DOUBLE, "X", CLI_TO(o->init_norm), .dlo = 1e-12, .dhi = 1e6,
         .help = "norm of the initial decoder rows (default 0.1)"},
        {"--dead-window", CLI_U64, "N", CLI_TO(o->dead_window), .lo = 1, .hi = UINT32_MAX,
         .help = "rows without firing after which a latent is dead\n"
                 "(default min(rows, 1000000))"},
        {"--no-resample", CLI_FLAG, CLI_TO(a->no_resample),
         .help = "count dead latents but do not re-initialise them"},
        {"--dup-cos", CLI_DOUBLE, "X", CLI_TO(o->dup_cos), .dlo = 1e-6, .dhi = 1,
         .help = "resample a latent whose decoder row has cosine >= X with\n"
                 "a more used latent's (default 0.8; 1: only dead ones)"},
        {"--log-every", CLI_U64, "N", CLI_TO(o->log_every), .lo = 1, .hi = 1u << 30,
         .help = "steps between train_log.jsonl records (default steps/100)"},
        {"--shuffle-mib", CLI_U64, "N", CLI_TO(o->shuffle_mib), .lo = 1, .hi = 1u << 20,
         .help = "shuffle buffer (default 1024 MiB; smaller corpora are\n"
                 "held whole)"},
        {"--model-name", CLI_STRING, "S", CLI_TO(o->model_name),
         .help = "cfg.json model_name (default \"synthetic\")"},
        {"--hook-name", CLI_STRING, "S", CLI_TO(o->hook_name),
         .help = "cfg.json hook_name (default \"hook_synth\")"},
        {"--truth", CLI_PATH, "DIR", CLI_TO(a->truth),
         .help = "a `sae synth` folder: print the MMCS of the decoder\n"
                 "against its planted directions and write\n"
                 "DIR_OUT/explanations.jsonl (each latent labelled with the\n"
                 "planted feature it matches, \"dead\" or \"unmatched (cos\n"
                 "0.41)\"; score = cosine)"},
        {"--threads", CLI_U64, "N", CLI_TO(a->threads), .lo = 1, .hi = 256,
         .help = "BLAS threads (default: OpenBLAS's choice)"},
        {"--quiet", CLI_FLAG, CLI_TO(a->quiet), .help = "no progress on stderr"},
        {"--bench", CLI_FLAG, CLI_TO(a->bench),
         .help = "time training steps on random data against raw sgemm of\n"
                 "the same shapes (5 products per step) in the same run;\n"
                 "defaults --d-in 768 --d-sae 24576 --batch 4096 --steps 4.\n"
                 "JSON on stdout."},
        {"--d-in", CLI_U64, "N", CLI_TO(a->bench_d_in), .lo = 1, .hi = 1u << 20,
         .help = "--bench only: the width of its random rows"},
    };
    const cli_spec spec = {.cmd = "train", .usage = usage, .about = about, CLI_OPTS(opts)};
    int rc = cli_parse(&spec, argc, argv);
    if (rc >= 0)
        return rc;
    if (a->no_resample)
        o->resample = 0;
    if (a->bench)
        return -1;
    if (!a->n_acts)
        return cli_usage("train", "--activations is required");
    if (!a->out)
        return cli_usage("train", "--out is required");
    if (a->bench_d_in)
        return cli_usage("train", "--d-in applies to --bench only (d_in comes from the data)");
    return -1;
}

/* What the step callback needs: progress, the log file and a write error. */
typedef struct run_ctx {
    cli_progress prog;
    FILE *log;
    bool log_failed;
    size_t batch;
} run_ctx;

/* Called after every step: progress, and a train_log.jsonl line when logged. */
static void on_step(void *p, const sae_train_stats *st)
{
    run_ctx *c = p;
    cli_progress_update(&c->prog, (uint64_t)st->rows);
    if (!st->logged || !c->log)
        return;
    int n = fprintf(c->log,
                    "{\"step\": %zu, \"tokens\": %zu, \"loss\": %.6g, \"mse\": %.6g, "
                    "\"l1\": %.6g, \"l0\": %.6g, \"fvu\": %.6g, \"dead\": %zu, "
                    "\"resampled\": %zu, \"lr\": %.6g, \"l1_coeff\": %.6g, \"seconds\": %.3f}\n",
                    st->step, st->rows, st->loss, st->mse, st->l1, st->l0, st->fvu, st->dead,
                    st->resampled, st->lr, st->l1_coeff, st->seconds);
    if (n < 0)
        c->log_failed = true;
}

/* Joins dir and name into buf. */
static void path_in(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

/* The planted directions of a `sae synth` folder (--truth): n of d dims. */
typedef struct truth {
    float *dirs;  /* (n, d) */
    char **labels; /* n */
    size_t n, d;
} truth;

static void truth_free(truth *tr)
{
    for (size_t i = 0; tr->labels && i < tr->n; i++)
        free(tr->labels[i]);
    free(tr->labels);
    free(tr->dirs);
}

/* Loads --truth and checks it fits what will be trained, before any training:
 * a run of minutes must not end in "wrong truth folder". */
static int truth_open(const char *truth_dir, const sae_train_opts *o,
                      const sae_train_data *data, truth *tr)
{
    sae_error err;
    if (o->arch == SAE_ARCH_AUTOENCODER)
        return cli_usage("train", "--truth applies to SAEs, not to the autoencoder");
    if (sae_synth_load_truth(truth_dir, &tr->dirs, &tr->n, &tr->d, &tr->labels, &err))
        return cli_fail_err(&err);
    if (tr->d != sae_train_data_dim(data))
        return cli_fail("%s: truth directions have %zu dims, the activations %zu", truth_dir,
                        tr->d, sae_train_data_dim(data));
    return SAE_EXIT_OK;
}

/* --truth: labels every latent of the saved model against the planted
 * directions (sae_synth_explain, which encodes the training activations to
 * find the latents that never fire), writes explanations.jsonl in the model
 * folder and prints the MMCS and how many latents got which label. */
static int score_truth(const truth *tr, const char *out_dir, const char *const *acts,
                       size_t n_acts, bool quiet)
{
    sae_error err;
    sae_model *m = NULL;
    sae_synth_score sc;
    char path[4096];
    path_in(path, sizeof path, out_dir, "explanations.jsonl");
    if (sae_model_load(out_dir, &m, NULL, &err) ||
        sae_synth_explain(m, acts, n_acts, tr->dirs, (const char *const *)tr->labels, tr->n,
                          path, &sc, &err)) {
        sae_model_free(m);
        return cli_fail_err(&err);
    }
    sae_model_free(m);
    /* the result goes to stdout: it is what --truth asks for */
    printf("{\"mmcs\": %.4f, \"planted\": %zu, \"recovered_cos_0.9\": %zu, \"d_sae\": %zu, "
           "\"labelled\": %zu, \"unmatched\": %zu, \"dead\": %zu}\n",
           sc.mmcs, sc.n_planted, sc.recovered, sc.d_sae, sc.n_labelled, sc.n_unmatched,
           sc.n_dead);
    if (!quiet)
        fprintf(stderr, "train: MMCS %.4f over %zu planted features (%zu at cosine >= 0.9); "
                        "latents: %zu labelled, %zu unmatched, %zu dead; labels in %s\n",
                sc.mmcs, sc.n_planted, sc.recovered, sc.n_labelled, sc.n_unmatched, sc.n_dead,
                path);
    return SAE_EXIT_OK;
}

/* ---- --bench ---- */

/* One round of the five products of a training step as raw sgemm, with the
 * shapes and transposes training uses (beta 0 throughout, which spares the
 * reference the read of C that training's bias-prefilled forward pays):
 * encoder forward h = x·w1, decoder forward xo = h·w2, dW_dec g2 = hᵀ·xo,
 * dL/df h = xo·w2ᵀ, dW_enc g1 = xᵀ·h. */
static void sgemm_round(size_t B, size_t d_in, size_t d_sae, const float *x, float *xo,
                        const float *w1, const float *w2, float *h, float *g1, float *g2)
{
    int b = (int)B, di = (int)d_in, ds = (int)d_sae;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, ds, di, 1, x, di, w1, ds, 0, h,
                ds);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, di, ds, 1, h, ds, w2, di, 0, xo,
                di);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ds, di, b, 1, h, ds, xo, di, 0, g2, di);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, ds, di, 1, xo, di, w2, di, 0, h, ds);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, di, ds, b, 1, x, di, h, ds, 0, g1, ds);
}

/* The bench's state: after every training step the callback runs one round
 * of the same five products as raw sgemm, so training and sgemm alternate and
 * share whatever else the machine is doing; the first step and the first
 * round are warm-up. Buffers owned. */
typedef struct bench_ctx {
    size_t B, d_in, d_sae;
    float *x, *xo;          /* (B, d_in) each */
    float *w1, *w2;         /* (d_in, d_sae), (d_sae, d_in) */
    float *h;               /* (B, d_sae) */
    float *g1, *g2;         /* (d_in, d_sae), (d_sae, d_in) */
    double t_mark;          /* when the last timed piece ended */
    double train_s, gemm_s; /* summed over the timed steps */
    size_t timed;
    cli_progress prog;
} bench_ctx;

/* The bench's step callback: closes the timing of this training step, runs
 * and times one sgemm round, restarts the clock. */
static void bench_step(void *p, const sae_train_stats *st)
{
    bench_ctx *c = p;
    double now = sae_clock_s();
    if (st->step >= 2)
        c->train_s += now - c->t_mark;
    double g0 = sae_clock_s();
    sgemm_round(c->B, c->d_in, c->d_sae, c->x, c->xo, c->w1, c->w2, c->h, c->g1, c->g2);
    double g1 = sae_clock_s();
    if (st->step >= 2) {
        c->gemm_s += g1 - g0;
        c->timed++;
    }
    c->t_mark = sae_clock_s();
    cli_progress_update(&c->prog, st->step);
}

/* `sae train --bench`: trains o.steps steps on Gaussian rows held in memory,
 * interleaved with sgemm rounds, and prints the JSON report. */
static int run_bench(train_args *a)
{
    size_t d_in = a->bench_d_in ? a->bench_d_in : 768;
    sae_train_opts o = a->o;
    if (!o.d_sae)
        o.d_sae = 24576;
    if (!o.batch)
        o.batch = 4096;
    if (!o.steps)
        o.steps = 4;
    if (o.steps < 2)
        return cli_usage("train", "--bench needs --steps of at least 2 (the first is warm-up)");
    o.log_every = o.steps;
    size_t n_rows = 4 * o.batch, B = o.batch, d_sae = o.d_sae;
    sae_error err;
    sae_train_data *data = NULL;
    sae_trainer *t = NULL;
    bench_ctx bc = {.B = B, .d_in = d_in, .d_sae = d_sae};
    int rc = SAE_EXIT_FAILURE;
    /* random rows: Gaussian, so a good fraction of latents fire */
    float *x = malloc(n_rows * d_in * sizeof *x);
    bc.w1 = malloc(d_in * d_sae * sizeof *bc.w1);
    bc.w2 = malloc(d_in * d_sae * sizeof *bc.w2);
    bc.h = calloc(B * d_sae, sizeof *bc.h);
    bc.g1 = calloc(d_in * d_sae, sizeof *bc.g1);
    bc.g2 = calloc(d_in * d_sae, sizeof *bc.g2);
    bc.x = malloc(B * d_in * sizeof *bc.x);
    bc.xo = calloc(B * d_in, sizeof *bc.xo);
    if (!x || !bc.w1 || !bc.w2 || !bc.h || !bc.g1 || !bc.g2 || !bc.x || !bc.xo) {
        cli_fail("out of memory");
        goto out;
    }
    sae_rng r;
    sae_rng_seed(&r, 7);
    for (size_t i = 0; i < n_rows * d_in; i++)
        x[i] = (float)sae_rng_normal(&r);
    for (size_t i = 0; i < d_in * d_sae; i++) {
        bc.w1[i] = (float)(0.01 * sae_rng_normal(&r));
        bc.w2[i] = (float)(0.01 * sae_rng_normal(&r));
    }
    memcpy(bc.x, x, B * d_in * sizeof *bc.x); /* the reference's own batch */
    if (sae_train_data_memory(x, n_rows, d_in, "bench rows", &data, &err) ||
        sae_trainer_new(&o, data, &t, &err)) {
        cli_fail_err(&err);
        goto out;
    }
    cli_progress_start(&bc.prog, "bench train", "steps", o.steps, a->quiet);
    double t0 = sae_clock_s();
    bc.t_mark = t0;
    if (sae_trainer_run(t, bench_step, &bc, &err)) {
        cli_fail_err(&err);
        goto out;
    }
    cli_progress_finish(&bc.prog, o.steps);
    double train_s = bc.train_s / (double)bc.timed, gemm_s = bc.gemm_s / (double)bc.timed;
    double flops = 10.0 * (double)B * (double)d_in * (double)d_sae;
    double ratio = gemm_s / train_s;
    printf("{\"arch\": \"%s\", \"d_in\": %zu, \"d_sae\": %zu, \"batch\": %zu, "
           "\"steps_timed\": %zu, \"threads\": %d, \"train_step_s\": %.4f, "
           "\"train_tokens_per_s\": %.1f, \"sgemm_step_s\": %.4f, "
           "\"sgemm_tokens_per_s\": %.1f, \"sgemm_gflops\": %.1f, \"train_gflops\": %.1f, "
           "\"ratio\": %.3f, \"l0\": %.1f}\n",
           sae_arch_name(o.arch), d_in, d_sae, B, bc.timed, openblas_get_num_threads(), train_s,
           (double)B / train_s, gemm_s, (double)B / gemm_s, flops / gemm_s * 1e-9,
           flops / train_s * 1e-9, ratio, sae_trainer_last(t)->l0);
    if (!a->quiet)
        fprintf(stderr,
                "bench train: %.0f tokens/s training vs %.0f tokens/s of raw sgemm for the same "
                "5 products (%.1f GFLOP/s), interleaved: ratio %.3f\n",
                (double)B / train_s, (double)B / gemm_s, flops / gemm_s * 1e-9, ratio);
    rc = SAE_EXIT_OK;
out:
    sae_trainer_free(t);
    sae_train_data_free(data);
    free(x);
    free(bc.w1);
    free(bc.w2);
    free(bc.h);
    free(bc.g1);
    free(bc.g2);
    free(bc.x);
    free(bc.xo);
    return rc;
}

/* `sae train`: parses flags, trains, writes the folder and the log; with
 * --truth scores the decoder; with --bench measures speed instead. */
int cmd_train(int argc, char **argv)
{
    train_args a = {0};
    sae_train_opts_init(&a.o);
    int rc = parse_args(argc, argv, &a);
    sae_train_data *data = NULL;
    sae_trainer *t = NULL;
    run_ctx ctx = {0};
    truth tr = {0};
    if (rc >= 0)
        goto out;
    if (a.threads)
        sae_set_blas_threads(a.threads);
    if (a.bench) {
        rc = run_bench(&a);
        goto out;
    }
    rc = SAE_EXIT_FAILURE;
    sae_error err;
    if (sae_train_data_open(a.acts, a.n_acts, &data, &err)) {
        cli_fail_err(&err);
        goto out;
    }
    if (sae_train_opts_resolve(&a.o, data, &err)) {
        rc = cli_usage("train", "%s", err.msg);
        goto out;
    }
    if (a.truth && (rc = truth_open(a.truth, &a.o, data, &tr)) != SAE_EXIT_OK)
        goto out;
    rc = SAE_EXIT_FAILURE;
    if (sae_trainer_new(&a.o, data, &t, &err)) {
        cli_fail_err(&err);
        goto out;
    }
    const sae_train_opts *ro = sae_trainer_opts(t);
    if (mkdir(a.out, 0777) != 0 && errno != EEXIST) {
        cli_fail("%s: %s", a.out, strerror(errno));
        goto out;
    }
    char path[4096];
    path_in(path, sizeof path, a.out, "train_log.jsonl");
    if (!(ctx.log = fopen(path, "w"))) {
        cli_fail("%s: %s", path, strerror(errno));
        goto out;
    }
    if (!a.quiet) {
        fprintf(stderr, "train: %s, %zu rows x %zu dims, d_sae %zu, %zu steps x %zu rows, lr %g",
                sae_arch_name(ro->arch), sae_train_data_rows(data), sae_train_data_dim(data),
                ro->d_sae, ro->steps, ro->batch, ro->lr);
        if (ro->arch == SAE_ARCH_STANDARD)
            fprintf(stderr, ", l1 %g", ro->l1);
        if (ro->arch == SAE_ARCH_TOPK)
            fprintf(stderr, ", k %zu", ro->k);
        fprintf(stderr, ", input scale %.4g\n", sae_trainer_scale(t));
    }
    cli_progress_start(&ctx.prog, "train", "tokens", (uint64_t)ro->steps * ro->batch, a.quiet);
    ctx.batch = ro->batch;
    if (sae_trainer_run(t, on_step, &ctx, &err)) {
        cli_progress_finish(&ctx.prog, sae_trainer_last(t)->rows);
        cli_fail_err(&err);
        goto out;
    }
    const sae_train_stats *st = sae_trainer_last(t);
    cli_progress_finish(&ctx.prog, st->rows);
    bool log_ok = fclose(ctx.log) == 0 && !ctx.log_failed;
    ctx.log = NULL;
    if (!log_ok) {
        cli_fail("%s: write failed", path);
        goto out;
    }
    if (sae_trainer_save(t, a.out, a.acts, a.n_acts, &err)) {
        cli_fail_err(&err);
        goto out;
    }
    if (!a.quiet)
        fprintf(stderr,
                "train: %zu steps in %.1fs (%.0f tokens/s); mse %.4g, fvu %.4f, l0 %.2f, "
                "dead %zu, resampled %zu -> %s\n",
                st->step, st->seconds, st->seconds > 0 ? (double)st->rows / st->seconds : 0,
                st->mse, st->fvu, st->l0, st->dead, st->resampled, a.out);
    /* Twice worse than predicting the mean (which a fresh model does, fvu
     * about 1): the run diverged without overflowing. The model is written
     * (it may still be wanted), but not silently. */
    if (st->fvu > 2.0)
        cli_warn("training ended with fvu %.3g, worse than predicting the mean of the data "
                 "(fvu 1): the run diverged; try a lower --lr",
                 st->fvu);
    rc = a.truth ? score_truth(&tr, a.out, a.acts, a.n_acts, a.quiet) : SAE_EXIT_OK;
out:
    truth_free(&tr);
    if (ctx.log)
        fclose(ctx.log);
    sae_trainer_free(t);
    sae_train_data_free(data);
    free(a.acts);
    return rc;
}
