/* bench.c: `sae bench`, encode speed against raw BLAS on the same shapes.
 *
 * In one run it measures: the memory read bandwidth (a buffer much larger
 * than cache, and W_enc itself), raw cblas_sgemv/cblas_sgemm on the encoder's
 * shapes, and sae_encode at the same batch sizes, interleaving each raw call
 * with an encode call so both see the same machine noise. It prints rows/s and
 * the ratios the project targets: encode/sgemm >= 0.90 at batch 64 and 1024,
 * and batch 1 >= 0.80 of the bound W_enc bytes / read bandwidth. With
 * --load-test it also writes a d_in 2304 x d_sae 32768 F32 model (604 MB) to a
 * temporary folder and, in a fresh process, times sae_model_load against the
 * digest alone and reads the peak RSS after load plus one encode. */
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/clock.h"
#include "cli.h"
#include "sae/encode.h"
#include "sae/model.h"
#include "io/rng.h"
#include "io/safetensors.h"

extern char **environ;

#define BENCH_MAX_BATCHES 8
#define BENCH_MIN_ROUNDS 4
#define BENCH_MAX_ROUNDS 2000

/* Command-line settings. */
typedef struct bench_opts {
    const char *model_dir; /* NULL: random weights of d_in x d_sae */
    size_t d_in, d_sae, l0;
    size_t batches[BENCH_MAX_BATCHES];
    size_t n_batches;
    int threads;       /* 0: OpenBLAS's default */
    size_t block_rows; /* sae_encode's workspace block (0: its default, 256) */
    double seconds;    /* time budget per batch size */
    size_t bw_bytes;   /* size of the bandwidth buffer */
    sae_compute compute; /* how --model is loaded (--compute) */
    bool json, load_test, quick, quiet, compute_given;
} bench_opts;

/* One batch size's figures: median seconds per call over `rounds`. */
typedef struct batch_result {
    size_t batch;
    const char *raw_kind; /* "sgemv" or "sgemm" */
    double raw_s, enc_s;
    double ker_s;         /* a 16-bit model's kernel alone (sae_gemm_half); 0 for F32 */
    /* rows per CPU-second of the process over all rounds of each, which the
     * other work on a shared machine does not bend as it bends wall time */
    double raw_cpu, enc_cpu, ker_cpu;
    size_t rounds;
} batch_result;

/* The --load-test figures, as the child process reports them. */
typedef struct load_result {
    double load_s, digest_s;
    double peak_rss, weights_bytes;
    bool ok;
} load_result;

/* The --help text around the options. */
static const char usage[] =
    "usage: sae bench [--model DIR | --d-in N --d-sae N --l0 L] [--batch N ...]\n"
    "                 [--compute native|f32] [--threads N] [--block-rows N]\n"
    "                 [--seconds S] [--json] [--load-test] [--quick] [--quiet]\n";
static const char about[] =
    "Measures memory read bandwidth, raw cblas_sgemv/sgemm on the encoder's shapes and\n"
    "sae_encode on the same shapes, and prints rows/s and their ratios.\n";

/* ---- random weights ---- */

/* Fills a (n) with values uniform in [-a, a] from r: variance a²/3. Uniform
 * rather than normal so hundreds of millions of weights take well under a
 * second; encoder sums of many such terms are close to normal anyway. */
static void fill_uniform(sae_rng *r, float *a, size_t n, double amp)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(((double)(sae_rng_next(r) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * amp);
}

/* The z with Φ(z) = p (standard normal), by bisection on erfc. */
static double normal_quantile(double p)
{
    double lo = -40.0, hi = 40.0;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Arrays behind a random model (the model borrows them). */
typedef struct rand_weights {
    float *w_enc; /* (d_in, d_sae) */
    float *b_enc; /* (d_sae) */
    float *w_dec; /* (d_sae, d_in) */
    float *b_dec; /* (d_in) */
} rand_weights;

static void rand_weights_free(rand_weights *w)
{
    free(w->w_enc);
    free(w->b_enc);
    free(w->w_dec);
    free(w->b_dec);
    memset(w, 0, sizeof *w);
}

/* A standard SAE whose encoder columns have unit expected norm, so for
 * standard-normal inputs each pre-activation is about N(0, 1); b_enc =
 * Φ⁻¹(l0/d_sae) then makes about l0 features fire per row. */
static int random_model(size_t d_in, size_t d_sae, size_t l0, rand_weights *w, sae_model **out,
                        sae_error *err)
{
    size_t n;
    if (sae_mul_size(d_in, d_sae, &n) || n > SIZE_MAX / sizeof(float))
        return sae_error_set(err, SAE_EINVAL, "bench: d_in x d_sae too large");
    memset(w, 0, sizeof *w);
    w->w_enc = malloc(n * sizeof *w->w_enc);
    w->w_dec = malloc(n * sizeof *w->w_dec);
    w->b_enc = malloc(d_sae * sizeof *w->b_enc);
    w->b_dec = calloc(d_in, sizeof *w->b_dec);
    if (!w->w_enc || !w->w_dec || !w->b_enc || !w->b_dec) {
        rand_weights_free(w);
        return sae_error_set(err, SAE_ENOMEM, "bench: out of memory for %zu x %zu weights", d_in,
                             d_sae);
    }
    sae_rng r;
    sae_rng_seed(&r, 20240601);
    double amp = sqrt(3.0 / (double)d_in);
    fill_uniform(&r, w->w_enc, n, amp);
    fill_uniform(&r, w->w_dec, n, amp);
    float b = (float)normal_quantile((double)l0 / (double)d_sae);
    for (size_t j = 0; j < d_sae; j++)
        w->b_enc[j] = b;
    sae_model_spec s = {.d_in = d_in,
                        .d_sae = d_sae,
                        .arch = SAE_ARCH_STANDARD,
                        .apply_b_dec_to_input = true,
                        .norm = SAE_NORM_NONE,
                        .w_enc = w->w_enc,
                        .b_enc = w->b_enc,
                        .w_dec = w->w_dec,
                        .b_dec = w->b_dec};
    int rc = sae_model_from_spec(&s, out, err);
    if (rc)
        rand_weights_free(w);
    return rc;
}

/* ---- memory bandwidth ---- */

/* One thread's share of a summing pass. */
typedef struct sum_job {
    const float *a;
    size_t n;
    size_t passes; /* times over the slice, so small buffers outlast thread start-up */
    double sum;
} sum_job;

/* SIMD vectors (GCC/Clang vector extension). */
typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));

/* Sums a (n floats) `passes` times with eight independent 4-float
 * accumulators: enough adds in flight that the loop waits on memory, not on
 * add latency (four accumulators top out near 17 GB/s on a Zen core, below
 * its read bandwidth, which would make the batch-1 bound too easy). */
static double sum_sse(const float *a, size_t n, size_t passes)
{
    v4f acc[8] = {{0}};
    double s = 0;
    for (size_t p = 0; p < passes; p++) {
        size_t i = 0;
        for (; i + 32 <= n; i += 32) {
            for (size_t t = 0; t < 8; t++) {
                v4f v;
                memcpy(&v, a + i + 4 * t, sizeof v);
                acc[t] += v;
            }
        }
        for (; i < n; i++)
            s += a[i];
    }
    for (size_t t = 0; t < 8; t++)
        for (size_t l = 0; l < 4; l++)
            s += acc[t][l];
    return s;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The same with 8-float AVX2 loads, used when the CPU has them: 32-byte loads
 * are what reach a Zen or Haswell core's full read bandwidth. */
__attribute__((target("avx2"))) static double sum_avx2(const float *a, size_t n, size_t passes)
{
    v8f acc[8] = {{0}};
    double s = 0;
    for (size_t p = 0; p < passes; p++) {
        size_t i = 0;
        for (; i + 64 <= n; i += 64) {
            for (size_t t = 0; t < 8; t++) {
                v8f v;
                memcpy(&v, a + i + 8 * t, sizeof v);
                acc[t] += v;
            }
        }
        for (; i < n; i++)
            s += a[i];
    }
    for (size_t t = 0; t < 8; t++)
        for (size_t l = 0; l < 8; l++)
            s += acc[t][l];
    return s;
}
#endif

/* Runs one thread's share of a summing pass. */
static void *sum_run(void *arg)
{
    sum_job *j = arg;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx2")) {
        j->sum = sum_avx2(j->a, j->n, j->passes);
        return NULL;
    }
#endif
    j->sum = sum_sse(j->a, j->n, j->passes);
    return NULL;
}

/* Best-of-`reps` read bandwidth (bytes/s) of summing a (n floats) with
 * `threads` threads. A buffer under 64 MB is summed several times per
 * repetition so thread start-up does not count. *sink keeps the sums
 * observable. */
static double read_bandwidth(const float *a, size_t n, int threads, int reps, double *sink)
{
    double best = 0;
    pthread_t tid[64];
    sum_job jobs[64];
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    size_t bytes = n * sizeof(float), passes = 1;
    if (bytes > 0 && bytes < ((size_t)64 << 20))
        passes = ((size_t)64 << 20) / bytes;
    for (int r = 0; r < reps; r++) {
        double t0 = sae_clock_s();
        bool started[64] = {false};
        for (int t = 0; t < threads; t++) {
            size_t lo = n * (size_t)t / (size_t)threads, hi = n * (size_t)(t + 1) / (size_t)threads;
            jobs[t] = (sum_job){a + lo, hi - lo, passes, 0};
            if (t > 0)
                started[t] = pthread_create(&tid[t], NULL, sum_run, &jobs[t]) == 0;
        }
        sum_run(&jobs[0]);
        /* a thread that could not start is summed here, so the total is right */
        for (int t = 1; t < threads; t++) {
            if (started[t])
                pthread_join(tid[t], NULL);
            else
                sum_run(&jobs[t]);
        }
        double dt = sae_clock_s() - t0;
        for (int t = 0; t < threads; t++)
            *sink += jobs[t].sum;
        if (dt > 0 && (double)bytes * (double)passes / dt > best)
            best = (double)bytes * (double)passes / dt;
    }
    return best;
}

/* ---- raw BLAS and encode timing ---- */

/* The raw F32 product on the encoder's shapes for `rows` rows of x into y:
 * the very call sae_encode makes for F32 weights (sae_gemm_rows) over w
 * (W_enc, or its F32 widening for 16-bit weights, so the baseline is raw
 * sgemm/sgemv whatever the model's kernel). */
static void raw_product(const sae_model *m, const float *w, const float *x, size_t rows,
                        float *y)
{
    sae_gemm_rows(w, m->w_enc_t, m->d_in, m->d_sae, x, rows, y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Process CPU seconds, every thread's. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Times `batch` rows: rounds of one raw call, one sae_encode call and, for a
 * 16-bit model, one call of its kernel alone (sae_gemm_half, the bound of
 * its encode as raw sgemm is of an F32 one; scratch holds its
 * sae_gemm_half_scratch), in rotating order, until the budget is spent (at
 * least BENCH_MIN_ROUNDS); medians of each, and rows per CPU-second. *nnz
 * gets the features the last encode returned. */
static int time_batch(const sae_model *m, const float *w_raw, sae_workspace *ws, const float *x,
                      size_t batch, double seconds, float *y, void *scratch, sae_sparse *sp,
                      batch_result *res, size_t *nnz, sae_error *err)
{
    static double t[3][BENCH_MAX_ROUNDS];
    double cpu[3] = {0};
    int kinds = m->w_enc_h ? 3 : 2;
    size_t r = 0;
    int rc;
    raw_product(m, w_raw, x, batch, y); /* warm-up: page in weights, start BLAS threads */
    sae_sparse_reset(sp);
    if ((rc = sae_encode(m, ws, x, batch, NULL, sp, NULL, NULL, err)))
        return rc;
    double t_end = sae_clock_s() + seconds;
    while (r < BENCH_MAX_ROUNDS && (r < BENCH_MIN_ROUNDS || sae_clock_s() < t_end)) {
        /* Rotate which goes first: the first call of a round may have to
         * wake the BLAS threads the others find awake. */
        for (int turn = 0; turn < kinds; turn++) {
            int kind = (turn + (int)(r % (size_t)kinds)) % kinds;
            double c0 = cpu_now(), t0 = sae_clock_s();
            if (kind == 0) {
                raw_product(m, w_raw, x, batch, y);
            } else if (kind == 1) {
                sae_sparse_reset(sp);
                if ((rc = sae_encode(m, ws, x, batch, NULL, sp, NULL, NULL, err)))
                    return rc;
            } else {
                sae_gemm_half(m->kernel, m->w_dtype, m->w_enc_h, m->w_enc_t, m->d_in, m->d_sae,
                              x, batch, y, scratch, sae_get_blas_threads());
            }
            t[kind][r] = sae_clock_s() - t0;
            cpu[kind] += cpu_now() - c0;
        }
        r++;
    }
    res->batch = batch;
    res->raw_kind = batch == 1 ? "sgemv" : "sgemm";
    res->raw_s = median(t[0], r);
    res->enc_s = median(t[1], r);
    res->ker_s = kinds == 3 ? median(t[2], r) : 0;
    res->raw_cpu = (double)(batch * r) / cpu[0];
    res->enc_cpu = (double)(batch * r) / cpu[1];
    res->ker_cpu = kinds == 3 ? (double)(batch * r) / cpu[2] : 0;
    res->rounds = r;
    *nnz = sp->nnz;
    return 0;
}

/* ---- the load test ---- */

/* dir/name into out (cap bytes); -1 when it does not fit. */
static int join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Writes a standard F32 SAE of d_in x d_sae with random weights into dir. */
static int write_load_model(const char *dir, size_t d_in, size_t d_sae, sae_error *err)
{
    char path[4096];
    int rc = 0;
    float *a = NULL;
    sae_st_writer *w = sae_st_writer_new();
    json_t *cfg =
        json_pack("{s:I, s:I, s:s, s:b, s:s, s:s, s:s, s:s}", "d_in", (json_int_t)d_in, "d_sae",
                  (json_int_t)d_sae, "architecture", "standard", "apply_b_dec_to_input", 1,
                  "normalize_activations", "none", "dtype", "float32", "model_name",
                  "bench-load-test", "hook_name", "blocks.0.hook_resid_pre");
    if (!w || !cfg) {
        rc = sae_error_set(err, SAE_ENOMEM, "bench: out of memory");
        goto out;
    }
    if (join_path(path, sizeof path, dir, "cfg.json")) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: path too long", dir);
        goto out;
    }
    if (json_dump_file(cfg, path, JSON_INDENT(2)) != 0) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot write", path);
        goto out;
    }
    sae_rng r;
    sae_rng_seed(&r, 7);
    size_t n = d_in * d_sae;
    a = malloc((n > d_sae ? n : d_sae) * sizeof *a);
    if (!a) {
        rc = sae_error_set(err, SAE_ENOMEM, "bench: out of memory for the load-test model");
        goto out;
    }
    uint64_t s_enc[2] = {d_in, d_sae}, s_dec[2] = {d_sae, d_in}, s_be[1] = {d_sae},
             s_bd[1] = {d_in};
    double amp = sqrt(3.0 / (double)d_in);
    /* the writer copies, so one scratch array serves every tensor */
    fill_uniform(&r, a, n, amp);
    if ((rc = sae_st_writer_add_f32(w, "W_enc", SAE_DT_F32, 2, s_enc, a)))
        goto added;
    fill_uniform(&r, a, d_sae, 0.1);
    if ((rc = sae_st_writer_add_f32(w, "b_enc", SAE_DT_F32, 1, s_be, a)))
        goto added;
    fill_uniform(&r, a, n, amp);
    if ((rc = sae_st_writer_add_f32(w, "W_dec", SAE_DT_F32, 2, s_dec, a)))
        goto added;
    fill_uniform(&r, a, d_in, 0.1);
    rc = sae_st_writer_add_f32(w, "b_dec", SAE_DT_F32, 1, s_bd, a);
added:
    free(a);
    a = NULL;
    if (rc) {
        sae_error_set(err, rc, "bench: cannot add a tensor to the load-test model");
        goto out;
    }
    if (join_path(path, sizeof path, dir, "sae_weights.safetensors")) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: path too long", dir);
        goto out;
    }
    rc = sae_st_writer_save(w, path, err);
out:
    free(a);
    json_decref(cfg);
    sae_st_writer_free(w);
    return rc;
}

/* Reads a "Vm...:  N kB" line of /proc/self/status, in bytes; -1 if absent. */
static double proc_status_bytes(const char *key)
{
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp)
        return -1;
    char line[256];
    double v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, fp))
        if (!strncmp(line, key, kl) && line[kl] == ':')
            v = strtod(line + kl + 1, NULL) * 1024.0;
    fclose(fp);
    return v;
}

/* The child side of --load-test: warm the page cache, time the digest alone
 * and the whole sae_model_load (best of three each), encode one row, report
 * VmHWM as JSON. Models are freed between loads, so the peak is one model's. */
static int load_child(const char *dir)
{
    char path[4096];
    if (join_path(path, sizeof path, dir, "sae_weights.safetensors"))
        return cli_fail("%s: path too long", dir);
    sae_error err;
    sae_error_clear(&err);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail("%s: cannot open: %s", path, strerror(errno));
    static char buf[1 << 20];
    double size = 0;
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0)
        size += (double)got;
    close(fd);

    /* best of three for each, the model of the last load kept for the encode */
    char digest[33];
    double t_digest = INFINITY, t_load = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = sae_clock_s();
        if (sae_digest_file(path, digest, &err))
            return cli_fail_err(&err);
        t_digest = fmin(t_digest, sae_clock_s() - t0);
    }
    sae_model *m = NULL;
    for (int rep = 0; rep < 3; rep++) {
        sae_model_free(m);
        m = NULL;
        double t0 = sae_clock_s();
        if (sae_model_load(dir, &m, NULL, &err))
            return cli_fail_err(&err);
        t_load = fmin(t_load, sae_clock_s() - t0);
    }

    sae_workspace *ws = sae_workspace_new(m, 0);
    float *x = malloc(m->d_in * sizeof *x);
    sae_sparse sp;
    sae_sparse_init(&sp);
    int rc = SAE_EXIT_FAILURE;
    if (!ws || !x) {
        cli_fail("bench: out of memory");
        goto out;
    }
    sae_rng r;
    sae_rng_seed(&r, 3);
    for (size_t j = 0; j < m->d_in; j++)
        x[j] = (float)sae_rng_normal(&r);
    if (sae_encode(m, ws, x, 1, NULL, &sp, NULL, NULL, &err)) {
        cli_fail_err(&err);
        goto out;
    }
    printf("{\"load_s\": %.6f, \"digest_s\": %.6f, \"peak_rss\": %.0f, \"weights_bytes\": %.0f}\n",
           t_load, t_digest, proc_status_bytes("VmHWM"), size);
    rc = fflush(stdout) ? SAE_EXIT_FAILURE : SAE_EXIT_OK;
out:
    sae_sparse_free(&sp);
    free(x);
    sae_workspace_free(ws);
    sae_model_free(m);
    return rc;
}

/* Removes the load-test folder's files and the folder. */
static void remove_load_dir(const char *dir)
{
    static const char *const names[] = {"cfg.json", "sae_weights.safetensors"};
    char path[4096];
    for (size_t i = 0; i < 2; i++) {
        if (join_path(path, sizeof path, dir, names[i]) == 0)
            unlink(path);
    }
    rmdir(dir);
}

/* The parent side of --load-test: writes the model, runs `sae bench
 * --load-child DIR` as a fresh process (so this process's memory does not
 * count) and parses its one JSON line. */
static int run_load_test(load_result *res, sae_error *err)
{
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/sae-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return sae_error_set(err, SAE_EIO, "%s: cannot create: %s", dir, strerror(errno));
    int rc = write_load_model(dir, 2304, 32768, err);
    int pfd[2] = {-1, -1};
    FILE *fp = NULL;
    json_t *j = NULL;
    if (rc)
        goto out;
    if (pipe(pfd)) {
        rc = sae_error_set(err, SAE_EIO, "bench: pipe: %s", strerror(errno));
        goto out;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    char *argv[] = {"sae", "bench", "--load-child", dir, NULL};
    pid_t pid;
    int se = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    pfd[1] = -1;
    if (se) {
        rc = sae_error_set(err, SAE_EIO, "bench: cannot start the load-test process: %s",
                           strerror(se));
        goto out;
    }
    fp = fdopen(pfd[0], "r");
    if (fp)
        pfd[0] = -1;
    json_error_t je;
    j = fp ? json_loadf(fp, JSON_DISABLE_EOF_CHECK, &je) : NULL;
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !j) {
        rc = sae_error_set(err, SAE_EIO, "bench: the load-test process failed (see above)");
        goto out;
    }
    res->load_s = json_number_value(json_object_get(j, "load_s"));
    res->digest_s = json_number_value(json_object_get(j, "digest_s"));
    res->peak_rss = json_number_value(json_object_get(j, "peak_rss"));
    res->weights_bytes = json_number_value(json_object_get(j, "weights_bytes"));
    res->ok = true;
out:
    json_decref(j);
    if (fp)
        fclose(fp);
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    remove_load_dir(dir);
    return rc;
}

/* ---- reporting ---- */

/* Everything one run measured. */
typedef struct bench_report {
    const sae_model *m;
    const char *source;
    size_t target_l0; /* 0 with --model */
    int threads;
    size_t block_rows;
    double bw_dram_1, bw_dram_all, bw_w_enc, bw_bound; /* bytes/s */
    size_t bw_bytes;
    double mean_l0;
    batch_result batches[BENCH_MAX_BATCHES];
    size_t n_batches;
    bool has_load;
    load_result load;
} bench_report;

static const char *verdict(double ratio, double target)
{
    return ratio >= target ? "meets" : "BELOW";
}

static void print_human(const bench_report *r)
{
    const sae_model *m = r->m;
    double w_bytes = (double)m->d_in * (double)m->d_sae * sizeof(float);
    printf("sae bench: %s, d_in %zu x d_sae %zu, %s, %s weights on kernel %s, %d BLAS threads "
           "(%s), encode blocks of %zu rows\n",
           r->source, m->d_in, m->d_sae, sae_arch_name(m->arch), m->dtype,
           sae_kernel_name(m->kernel), r->threads, openblas_get_config(), r->block_rows);
    printf("memory read bandwidth: %.2f GB/s over %zu MB (1 thread %.2f GB/s); "
           "reading W_enc (%.1f MB): %.2f GB/s\n",
           r->bw_dram_all / 1e9, r->bw_bytes >> 20, r->bw_dram_1 / 1e9, w_bytes / 1e6,
           r->bw_w_enc / 1e9);
    if (r->target_l0)
        printf("mean l0 per row: %.2f (weights chosen for about %zu)\n", r->mean_l0, r->target_l0);
    else
        printf("mean l0 per row: %.2f (random standard-normal inputs)\n", r->mean_l0);
    printf("%7s  %5s  %14s  %16s  %6s  %s\n", "batch", "raw", "raw rows/s", "encode rows/s",
           "ratio", "rounds");
    for (size_t i = 0; i < r->n_batches; i++) {
        const batch_result *b = &r->batches[i];
        double raw = b->batch / b->raw_s, enc = b->batch / b->enc_s;
        printf("%7zu  %5s  %14.1f  %16.1f  %6.3f  %zu", b->batch, b->raw_kind, raw, enc, enc / raw,
               b->rounds);
        if (b->batch > 1)
            printf("  (target >= 0.90: %s)", verdict(enc / raw, 0.90));
        printf("\n");
    }
    printf("per CPU-second of this process (robust to other load):\n");
    for (size_t i = 0; i < r->n_batches; i++) {
        const batch_result *b = &r->batches[i];
        printf("%7zu  raw %.1f, encode %.1f rows/CPU-s (%.3f)", b->batch, b->raw_cpu, b->enc_cpu,
               b->enc_cpu / b->raw_cpu);
        if (b->ker_s > 0)
            printf("; kernel %s alone %.1f rows/s, %.1f rows/CPU-s (%.3f of raw; encode %.3f "
                   "of it)",
                   sae_kernel_name(m->kernel), b->batch / b->ker_s, b->ker_cpu,
                   b->ker_cpu / b->raw_cpu, b->enc_cpu / b->ker_cpu);
        printf("\n");
    }
    for (size_t i = 0; i < r->n_batches; i++) {
        const batch_result *b = &r->batches[i];
        if (b->batch != 1)
            continue;
        double bound = r->bw_bound / w_bytes, enc = 1.0 / b->enc_s;
        printf("batch 1 vs bandwidth bound: W_enc %.1f MB / %.2f GB/s = %.1f rows/s; "
               "encode %.1f rows/s = %.3f of the bound (target >= 0.80: %s)\n",
               w_bytes / 1e6, r->bw_bound / 1e9, bound, enc, enc / bound,
               verdict(enc / bound, 0.80));
    }
    if (r->has_load) {
        const load_result *l = &r->load;
        printf("load test (2304 x 32768 F32, %.1f MB, page cache warm, fresh process):\n",
               l->weights_bytes / 1e6);
        printf("  sae_model_load %.3f s, digest alone %.3f s, load minus digest %.3f s\n",
               l->load_s, l->digest_s, l->load_s - l->digest_s);
        printf("  peak RSS after load + one encode: %.1f MB = %.3f x weights "
               "(target < 1.1: %s)\n",
               l->peak_rss / 1e6, l->peak_rss / l->weights_bytes,
               l->peak_rss / l->weights_bytes < 1.1 ? "meets" : "ABOVE");
    }
}

static void print_json(const bench_report *r)
{
    const sae_model *m = r->m;
    double w_bytes = (double)m->d_in * (double)m->d_sae * sizeof(float);
    json_t *o = json_object();
    json_object_set_new(o, "source", json_string(r->source));
    json_object_set_new(o, "d_in", json_integer((json_int_t)m->d_in));
    json_object_set_new(o, "d_sae", json_integer((json_int_t)m->d_sae));
    json_object_set_new(o, "architecture", json_string(sae_arch_name(m->arch)));
    json_object_set_new(o, "blas_threads", json_integer(r->threads));
    json_object_set_new(o, "dtype", json_string(r->m->dtype));
    json_object_set_new(o, "kernel", json_string(sae_kernel_name(r->m->kernel)));
    json_object_set_new(o, "blas_config", json_string(openblas_get_config()));
    json_object_set_new(o, "block_rows", json_integer((json_int_t)r->block_rows));
    json_object_set_new(o, "target_l0",
                        r->target_l0 ? json_integer((json_int_t)r->target_l0) : json_null());
    json_object_set_new(o, "mean_l0", json_real(r->mean_l0));
    json_t *bw = json_object();
    json_object_set_new(bw, "buffer_bytes", json_integer((json_int_t)r->bw_bytes));
    json_object_set_new(bw, "one_thread_gbs", json_real(r->bw_dram_1 / 1e9));
    json_object_set_new(bw, "all_threads_gbs", json_real(r->bw_dram_all / 1e9));
    json_object_set_new(bw, "w_enc_gbs", json_real(r->bw_w_enc / 1e9));
    json_object_set_new(bw, "bound_gbs", json_real(r->bw_bound / 1e9));
    json_object_set_new(o, "read_bandwidth", bw);
    json_t *arr = json_array();
    for (size_t i = 0; i < r->n_batches; i++) {
        const batch_result *b = &r->batches[i];
        json_t *e = json_object();
        json_object_set_new(e, "batch", json_integer((json_int_t)b->batch));
        json_object_set_new(e, "raw", json_string(b->raw_kind));
        json_object_set_new(e, "raw_rows_per_s", json_real(b->batch / b->raw_s));
        json_object_set_new(e, "encode_rows_per_s", json_real(b->batch / b->enc_s));
        json_object_set_new(e, "ratio", json_real(b->raw_s / b->enc_s));
        json_object_set_new(e, "raw_rows_per_cpu_s", json_real(b->raw_cpu));
        json_object_set_new(e, "encode_rows_per_cpu_s", json_real(b->enc_cpu));
        json_object_set_new(e, "kernel_rows_per_s",
                            b->ker_s > 0 ? json_real(b->batch / b->ker_s) : json_null());
        json_object_set_new(e, "kernel_rows_per_cpu_s",
                            b->ker_s > 0 ? json_real(b->ker_cpu) : json_null());
        json_object_set_new(e, "rounds", json_integer((json_int_t)b->rounds));
        if (b->batch == 1) {
            double bound = r->bw_bound / w_bytes;
            json_object_set_new(e, "bandwidth_bound_rows_per_s", json_real(bound));
            json_object_set_new(e, "ratio_to_bound", json_real(1.0 / b->enc_s / bound));
        }
        json_array_append_new(arr, e);
    }
    json_object_set_new(o, "batches", arr);
    if (r->has_load) {
        const load_result *l = &r->load;
        json_t *lt = json_object();
        json_object_set_new(lt, "weights_bytes", json_real(l->weights_bytes));
        json_object_set_new(lt, "load_s", json_real(l->load_s));
        json_object_set_new(lt, "digest_s", json_real(l->digest_s));
        json_object_set_new(lt, "load_minus_digest_s", json_real(l->load_s - l->digest_s));
        json_object_set_new(lt, "peak_rss_bytes", json_real(l->peak_rss));
        json_object_set_new(lt, "peak_rss_over_weights", json_real(l->peak_rss / l->weights_bytes));
        json_object_set_new(o, "load_test", lt);
    } else {
        json_object_set_new(o, "load_test", json_null());
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(o);
}

/* ---- the command ---- */

/* Parses argv into o. Returns -1 to continue, or an exit code. */
static int parse_args(int argc, char **argv, bench_opts *o, const char **load_child_dir)
{
    bool shape_given = false;
    const cli_opt opts[] = {
        {"--model", CLI_PATH, "DIR", CLI_TO(o->model_dir),
         .help = "benchmark this model folder (default: random F32 weights)"},
        {"--d-in", CLI_U64, "N", CLI_TO(o->d_in), .lo = 1, .hi = 1u << 24, .given = &shape_given,
         .help = "random model width (default 768)"},
        {"--d-sae", CLI_U64, "N", CLI_TO(o->d_sae), .lo = 1, .hi = 1u << 24,
         .given = &shape_given, .help = "random model features (default 24576)"},
        {"--l0", CLI_U64, "L", CLI_TO(o->l0), .lo = 1, .hi = 1u << 24, .given = &shape_given,
         .help = "about L features fire per row on the random inputs (default 64)"},
        {"--batch", CLI_U64, "N", CLI_TO(o->batches[0]), .count = &o->n_batches,
         .max = BENCH_MAX_BATCHES, .lo = 1, .hi = 1u << 16,
         .help = "a batch size to measure, repeatable (default 1, 64, 1024)"},
        {"--threads", CLI_U64, "N", CLI_TO(o->threads), .lo = 1, .hi = 256,
         .help = "BLAS threads (default: OpenBLAS's, usually the core count)"},
        {"--block-rows", CLI_U64, "N", CLI_TO(o->block_rows), .lo = 1, .hi = 1u << 16,
         .help = "rows per GEMM inside sae_encode (default: sae_encode's, 256)"},
        {"--seconds", CLI_DOUBLE, "S", CLI_TO(o->seconds), .dhi = 3600,
         .help = "time budget per batch size (default 1; at least " CLI_XSTR(BENCH_MIN_ROUNDS)
                 " rounds)"},
        CLI_COMPUTE_OPT(o->compute, &o->compute_given),
        {"--json", CLI_FLAG, CLI_TO(o->json),
         .help = "one JSON object on stdout instead of the table"},
        {"--load-test", CLI_FLAG, CLI_TO(o->load_test),
         .help = "also write a 2304 x 32768 F32 model (604 MB) to a temporary\n"
                 "folder and measure load time and peak RSS in a fresh process"},
        {"--quick", CLI_FLAG, CLI_TO(o->quick),
         .help = "small shapes (d_in 256, d_sae 4096, l0 32) for a run of seconds"},
        {"--quiet", CLI_FLAG, CLI_TO(o->quiet), .help = "no progress on stderr"},
        /* internal, no help: the load test's fresh process */
        {"--load-child", CLI_PATH, "DIR", CLI_TO(*load_child_dir)},
    };
    const cli_spec spec = {.cmd = "bench", .usage = usage, .about = about, CLI_OPTS(opts)};
    int rc = cli_parse(&spec, argc, argv);
    if (rc >= 0)
        return rc;
    if (o->model_dir && shape_given)
        return cli_usage("bench", "--model and --d-in/--d-sae/--l0 exclude each other");
    if (!o->model_dir && o->compute_given)
        return cli_usage("bench", "--compute goes with --model (random weights are F32)");
    if (o->quick && !shape_given) {
        o->d_in = 256;
        o->d_sae = 4096;
        o->l0 = 32;
    }
    if (o->quick && o->seconds < 0)
        o->seconds = 0.25;
    if (o->seconds < 0)
        o->seconds = 1.0;
    o->bw_bytes = o->quick ? (size_t)256 << 20 : (size_t)1 << 30;
    if (!o->model_dir && o->l0 > o->d_sae)
        return cli_usage("bench", "--l0 %zu is more than --d-sae %zu", o->l0, o->d_sae);
    if (o->n_batches == 0) {
        static const size_t dflt[] = {1, 64, 1024};
        memcpy(o->batches, dflt, sizeof dflt);
        o->n_batches = 3;
    }
    return -1;
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o = {.d_in = 768, .d_sae = 24576, .l0 = 64, .seconds = -1};
    const char *load_child_dir = NULL;
    int rc = parse_args(argc, argv, &o, &load_child_dir);
    if (rc >= 0)
        return rc;
    if (o.threads)
        sae_set_blas_threads(o.threads);
    if (load_child_dir)
        return load_child(load_child_dir);

    sae_error err;
    sae_error_clear(&err);
    sae_model *m = NULL;
    rand_weights rw = {0};
    sae_workspace *ws = NULL;
    float *x = NULL, *y = NULL, *bw = NULL, *w_wide = NULL;
    void *scratch = NULL; /* the 16-bit kernel's, for timing it alone */
    sae_sparse sp;
    sae_sparse_init(&sp);
    bench_report rep = {0};
    cli_progress prog;
    rc = SAE_EXIT_FAILURE;

    if (o.model_dir) {
        sae_model_warnings warn;
        if (sae_model_load_with(o.model_dir, o.compute, &m, &warn, &err)) {
            cli_fail_err(&err);
            goto out;
        }
        for (size_t i = 0; i < warn.n; i++)
            cli_warn("%s", warn.line[i]);
        if (m->arch == SAE_ARCH_AUTOENCODER) {
            cli_fail("%s: bench measures SAE encoders; this is an autoencoder", o.model_dir);
            goto out;
        }
        rep.source = o.model_dir;
    } else {
        if (random_model(o.d_in, o.d_sae, o.l0, &rw, &m, &err)) {
            cli_fail_err(&err);
            goto out;
        }
        rep.source = "random weights";
        rep.target_l0 = o.l0;
    }
    rep.m = m;
    rep.threads = openblas_get_num_threads();
    rep.block_rows = o.block_rows ? o.block_rows : SAE_ENCODE_DEFAULT_BLOCK_ROWS;
    cli_progress_start(&prog, "bench", "steps", o.n_batches + 2 + o.load_test, o.quiet);

    /* the bandwidth buffer, touched first so page faults are not timed */
    size_t bw_n = o.bw_bytes / sizeof(float);
    bw = malloc(bw_n * sizeof *bw);
    if (!bw) {
        cli_fail("bench: out of memory for a %zu MB bandwidth buffer", o.bw_bytes >> 20);
        goto out;
    }
    for (size_t i = 0; i < bw_n; i++)
        bw[i] = (float)(i & 1023) * 0x1.0p-10f;
    double sink = 0;
    rep.bw_bytes = o.bw_bytes;
    rep.bw_dram_1 = read_bandwidth(bw, bw_n, 1, 3, &sink);
    rep.bw_dram_all = read_bandwidth(bw, bw_n, rep.threads, 5, &sink);
    free(bw);
    bw = NULL;
    size_t w_n = m->d_in * m->d_sae;
    const float *w_raw = m->w_enc;
    if (m->w_enc_h) { /* the F32 baseline of a 16-bit model runs on its widening */
        if (!(w_wide = malloc(w_n * sizeof *w_wide))) {
            cli_fail("bench: out of memory widening W_enc");
            goto out;
        }
        sae_half_widen(m->w_dtype, m->w_enc_h, w_wide, w_n);
        w_raw = w_wide;
    }
    rep.bw_w_enc = read_bandwidth(w_raw, w_n, rep.threads, 5, &sink);
    /* The stricter (larger) bandwidth makes the smaller, harder bound. */
    rep.bw_bound = fmax(rep.bw_dram_all, fmax(rep.bw_dram_1, rep.bw_w_enc));
    cli_progress_update(&prog, 1);

    size_t max_b = 0;
    for (size_t i = 0; i < o.n_batches; i++)
        max_b = o.batches[i] > max_b ? o.batches[i] : max_b;
    x = malloc(max_b * m->d_in * sizeof *x);
    y = malloc(max_b * m->d_sae * sizeof *y);
    ws = sae_workspace_new(m, o.block_rows);
    size_t scratch_n = m->w_enc_h ? sae_gemm_half_scratch(m->kernel, max_b, m->d_in) : 0;
    scratch = scratch_n ? aligned_alloc(64, (scratch_n + 63) / 64 * 64) : NULL;
    if (!x || !y || !ws || (scratch_n && !scratch)) {
        cli_fail("bench: out of memory for batch %zu", max_b);
        goto out;
    }
    sae_rng r;
    sae_rng_seed(&r, 11);
    for (size_t i = 0; i < max_b * m->d_in; i++)
        x[i] = (float)sae_rng_normal(&r);
    double l0_rows = 0, l0_sum = 0;
    for (size_t i = 0; i < o.n_batches; i++) {
        size_t nnz;
        if (time_batch(m, w_raw, ws, x, o.batches[i], o.seconds, y, scratch, &sp, &rep.batches[i],
                       &nnz, &err)) {
            cli_fail_err(&err);
            goto out;
        }
        l0_rows += (double)o.batches[i];
        l0_sum += (double)nnz;
        cli_progress_update(&prog, 2 + i);
    }
    rep.n_batches = o.n_batches;
    rep.mean_l0 = l0_sum / l0_rows;
    if (sink == 1234.5) /* keeps the bandwidth sums from being optimised away */
        fputc(' ', stderr);

    if (o.load_test) {
        /* free the big buffers first: the load test writes and reads 604 MB */
        sae_workspace_free(ws);
        ws = NULL;
        free(y);
        y = NULL;
        if (run_load_test(&rep.load, &err)) {
            cli_fail_err(&err);
            goto out;
        }
        rep.has_load = true;
    }
    cli_progress_finish(&prog, o.n_batches + 2 + o.load_test);
    if (o.json)
        print_json(&rep);
    else
        print_human(&rep);
    rc = fflush(stdout) ? cli_fail("stdout: %s", strerror(errno)) : SAE_EXIT_OK;
out:
    free(scratch);
    free(w_wide);
    free(bw);
    free(x);
    free(y);
    sae_sparse_free(&sp);
    sae_workspace_free(ws);
    sae_model_free(m);
    rand_weights_free(&rw);
    return rc;
}
