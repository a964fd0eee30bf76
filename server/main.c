/* main.c: saed's startup, signal loop and shutdown.
 *
 * Threads: libmicrohttpd's internal polling threads (epoll, a pool of
 * http_threads) read requests, parse bodies and write replies; they never
 * block and never run a GEMM: encode/decode work is handed to the batcher's
 * workers and the connection is suspended until it is done. A thread pool
 * rather than thread-per-connection because idle keep-alive connections then
 * cost a socket and a small buffer, not a thread and its stack, so 1024
 * connections (the default limit) are cheap. The reaper thread enforces the
 * total request deadline. The main thread only waits for signals and does
 * the reloads, so a slow model load never stalls a request. Signals reach it
 * through a self-pipe: the handler only writes the signal number to the pipe
 * (async-signal-safe), whichever thread it lands on. (A signalfd would need
 * the signals blocked in every thread, and OpenBLAS starts its threads before
 * main runs.)
 *
 * Exit status: 0 after a clean drain, 1 when startup fails (bad model, port
 * taken), 2 for bad usage. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "io/clock.h"
#include "io/list.h"
#include "batcher.h"
#include "feature_routes.h"
#include "io/mapped.h"
#include "reaper.h"
#include "saed.h"
#include "saes.h"

/* CPUs this process may use: the affinity mask, lowered by a cgroup CPU quota
 * (v2 cpu.max or v1 cfs quota), which OpenBLAS would not notice. */
static int detect_cpus(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                        : (int)sysconf(_SC_NPROCESSORS_ONLN);
    long quota = -1, period = 0;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char q[32];
        if (fscanf(f, "%31s %ld", q, &period) == 2 && strcmp(q, "max"))
            quota = atol(q);
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r"))) {
        if (fscanf(f, "%ld", &quota) != 1)
            quota = -1;
        fclose(f);
        if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r"))) {
            if (fscanf(f, "%ld", &period) != 1)
                period = 0;
            fclose(f);
        }
    }
    if (quota > 0 && period > 0) {
        long c = (quota + period - 1) / period;
        if (c >= 1 && c < n)
            n = (int)c;
    }
    return n < 1 ? 1 : n;
}

/* The write end of the self-pipe; the handler's only state. */
static int signal_pipe_w = -1;

/* The signal handler: writes the signal number to the self-pipe and nothing
 * else. */
static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(signal_pipe_w, &b, 1) < 0) {
        /* The pipe is full: enough signals are already pending. */
    }
    errno = saved;
}

/* SIGBUS: a mapped file shrank under us. In the weights of a snapshot (a
 * watched mapping) the fault is absorbed: zero pages replace the lost ones,
 * the mapping is marked damaged, the access goes on, and the request that
 * made it answers 503 weights_changed (io/mapped.h). Anywhere else: names the
 * file, restores the default action and returns, so the access faults again
 * and the process ends by SIGBUS as it would have, but explained. */
static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sae_mapped_absorb(si->si_addr))
        return;
    char msg[768];
    size_t n = sae_mapped_explain("saed", si->si_addr, msg, sizeof msg);
    if (write(STDERR_FILENO, msg, n) < 0) {
        /* Nothing left to tell it with. */
    }
    signal(sig, SIG_DFL);
}

/* Installs on_signal for SIGTERM, SIGINT and SIGHUP and on_sigbus; returns
 * the read end of the pipe, or -1. */
static int signals_install(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK))
        return -1;
    signal_pipe_w = p[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction bus;
    memset(&bus, 0, sizeof bus);
    bus.sa_sigaction = on_sigbus;
    bus.sa_flags = SA_SIGINFO;
    sigemptyset(&bus.sa_mask);
    sigaction(SIGBUS, &bus, NULL);
    return p[0];
}

/* Waits for the next signal number on the pipe; timeout_ms -1 waits forever.
 * Returns the signal, or 0 on timeout. */
static int signal_next(int fd, int timeout_ms)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        unsigned char b;
        ssize_t n = read(fd, &b, 1);
        if (n == 1)
            return b;
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        return 0;
    }
}

/* libmicrohttpd's unescape callback: http_unescape, which keeps %00. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return http_unescape(s);
}

/* libmicrohttpd's own messages, prefixed so they are recognisable. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    fprintf(stderr, "saed: libmicrohttpd: %s\n", msg);
}

/* Splits cfg->cors_origins into srv->cors. */
static int cors_parse(struct saed_server *srv, sae_error *err)
{
    sae_list it = sae_list_of(srv->cfg->cors_origins);
    const char *p;
    size_t n;
    while (sae_list_next(&it, &p, &n)) {
        if (!n)
            continue;
        char **c = realloc(srv->cors, (srv->n_cors + 1) * sizeof *c);
        if (!c)
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
        srv->cors = c;
        if (!(c[srv->n_cors] = strndup(p, n)))
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
        srv->n_cors++;
    }
    return 0;
}

/* Raises the open-file limit to fit max_connections (plus files and
 * listening sockets); warns when the hard limit is lower. */
static void raise_nofile(uint64_t max_connections)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)max_connections + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= need)
        return;
    fprintf(stderr,
            "saed: warning: RLIMIT_NOFILE is %llu, below the %llu max_connections needs\n",
            (unsigned long long)rl.rlim_cur, (unsigned long long)need);
}

/* Starts libmicrohttpd on cfg->listen; prints the bound address. */
static int start_http(struct saed_server *srv, sae_error *err)
{
    const struct saed_config *cfg = srv->cfg;
    char host[256], portstr[8];
    unsigned port;
    if (config_split_listen(cfg->listen, host, sizeof host, &port))
        return sae_error_set(err, SAE_EINVAL, "listen: bad address '%s'", cfg->listen);
    snprintf(portstr, sizeof portstr, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, portstr, &hints, &ai);
    if (g)
        return sae_error_set(err, SAE_EINVAL, "listen: %s: %s", host, gai_strerror(g));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, router_access, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_connections_per_ip,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)(cfg->max_connections < 4096
                                                       ? cfg->max_connections
                                                       : 4096),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->connection_memory_limit,
        MHD_OPTION_NOTIFY_COMPLETED, router_completed, srv, MHD_OPTION_NOTIFY_CONNECTION,
        reaper_notify, srv->reaper,
        /* Last, so that one thread ends the list here (a pool of 0 or 1 is
         * refused with a warning): */
        srv->http_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
        (unsigned)srv->http_threads, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon)
        return sae_error_set(err, SAE_EIO, "cannot listen on %s (in use, or not an address of "
                             "this host?)", cfg->listen);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned bound = di ? di->port : port;
    /* Framing errors libmicrohttpd answers itself (a malformed Content-Length)
     * get one status line only from 1.0.0 on (docs/SECURITY.md). */
    fprintf(stderr, "saed: libmicrohttpd %s%s\n", MHD_get_version(),
            MHD_VERSION < 0x01000000 ? " (below 1.0.0: see docs/SECURITY.md, finding 5)" : "");
    if (strchr(host, ':'))
        fprintf(stderr, "saed: listening on [%s]:%u\n", host, bound);
    else
        fprintf(stderr, "saed: listening on %s:%u\n", host, bound);
    return 0;
}

/* SIGHUP: read the config again and reload the SAEs whose files or
 * settings changed (saes.c); an SAE that fails keeps serving as it was, and
 * a config that no longer parses changes nothing. One SIGHUP counts once in
 * saed_reloads_total: failed if anything failed. */
static void reload(struct saed_server *srv, int argc, char **argv)
{
    int64_t t0 = sae_clock_us();
    sae_error err;
    struct saed_config next;
    bool exit_now;
    size_t failed = 0;
    int rc = config_load(&next, argc, argv, &exit_now, &err);
    if (!rc)
        rc = saes_apply(srv, &next, false, &failed, &err);
    config_free(&next);
    if (rc) {
        atomic_fetch_add(&srv->metrics.reload_failed, 1);
        fprintf(stderr, "saed: reload failed, still serving every SAE as it was: %s\n", err.msg);
        return;
    }
    atomic_fetch_add(failed ? &srv->metrics.reload_failed : &srv->metrics.reload_ok, 1);
    batcher_kick(srv->batcher);
    if (failed)
        return;
    size_t n;
    free(saes_list(srv, &n));
    fprintf(stderr, "saed: reloaded in %lld ms: %zu SAE%s served\n",
            (long long)((sae_clock_us() - t0) / 1000), n, n == 1 ? "" : "s");
}

/* SIGTERM/SIGINT: stop accepting, let in-flight requests finish (at most
 * drain_timeout_s; a second signal cuts it short), then stop. Suspended
 * connections are always resumed first: their jobs finish in bounded time
 * and libmicrohttpd must not be stopped with a connection suspended. */
static void drain(struct saed_server *srv, int sfd)
{
    atomic_store(&srv->draining, true);
    MHD_socket lfd = MHD_quiesce_daemon(srv->daemon);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    fprintf(stderr, "saed: draining %ld in-flight requests (at most %llu s)\n",
            atomic_load(&srv->inflight), (unsigned long long)srv->cfg->drain_timeout_s);
    int64_t deadline = sae_clock_us() + (int64_t)srv->cfg->drain_timeout_s * 1000000;
    while (atomic_load(&srv->inflight) > 0 && sae_clock_us() < deadline) {
        int sig = signal_next(sfd, 10);
        if (sig && sig != SIGHUP) {
            fprintf(stderr, "saed: second signal, stopping now\n");
            break;
        }
    }
    while (batcher_pending(srv->batcher) > 0 || text_lm_pending(srv->lm) > 0) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    long left = atomic_load(&srv->inflight);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    fprintf(stderr, "saed: stopped (%ld requests were still open)\n", left);
}

/* The start-up lines: each SAE's folder, kind and digest, and its index. */
static void log_saes(struct saed_server *srv, int64_t us)
{
    size_t n;
    struct saed_sae **v = saes_list(srv, &n);
    for (size_t i = 0; i < n; i++) {
        sae_error err;
        struct saed_snap *s = snap_acquire(srv, v[i], &err);
        if (!s)
            continue;
        const sae_model *m = s->model;
        fprintf(stderr, "saed: model %s: %s d_in %zu d_sae %zu %s, weights %s%s%s\n",
                v[i]->spec.model_dir, sae_arch_name(m->arch), m->d_in, m->d_sae, m->dtype,
                m->weights_digest, n > 1 ? " as " : "", n > 1 ? v[i]->id : "");
        features_log_index(s);
        snap_release(s);
    }
    if (n > 1)
        fprintf(stderr, "saed: %zu SAEs loaded in %lld ms\n", n, (long long)(us / 1000));
    free(v);
}

/* Loads the config and the model, starts the workers, the reaper and
 * libmicrohttpd, then serves signals until SIGTERM/SIGINT and drains. */
int main(int argc, char **argv)
{
    struct saed_server srv;
    memset(&srv, 0, sizeof srv);
    sae_error err;
    int status = 1, sfd = -1;
    bool exit_now;

    srv.cfg = calloc(1, sizeof *srv.cfg);
    if (!srv.cfg) {
        fprintf(stderr, "saed: error: out of memory\n");
        return 1;
    }
    int rc = config_load(srv.cfg, argc, argv, &exit_now, &err);
    if (rc) {
        fprintf(stderr, "saed: error: %s\n", err.msg);
        status = rc == 2 ? 2 : 1;
        goto out_cfg;
    }
    if (exit_now) {
        status = 0;
        goto out_cfg;
    }
    int threads = srv.cfg->threads ? (int)srv.cfg->threads : detect_cpus();
    srv.http_threads = srv.cfg->http_threads ? (int)srv.cfg->http_threads : threads;
    /* One worker by default, running BLAS on every thread: one-row clients
     * then fill one GEMM instead of splitting into a cohort per worker
     * (issue 17, docs/PERFORMANCE.md "Daemon"). */
    srv.workers = srv.cfg->workers ? (int)srv.cfg->workers : 1;
    srv.blas_threads = threads / srv.workers > 1 ? threads / srv.workers : 1;
    sae_set_blas_threads(srv.blas_threads);
    feature_cache_configure(srv.cfg->feature_cache_mib, srv.cfg->prerender_features, threads);
    srv.web_fd = -1;
    srv.metrics.start_unix = (int64_t)time(NULL);
    atomic_init(&srv.draining, false);
    atomic_init(&srv.inflight, 0);

    sfd = signals_install();
    if (sfd < 0) {
        fprintf(stderr, "saed: error: cannot install signal handlers: %s\n", strerror(errno));
        goto out_cfg;
    }

    size_t failed;
    int64_t t_load = sae_clock_us();
    if (saes_new(srv.cfg->max_mapped_bytes, &srv.saes, &err) ||
        saes_apply(&srv, srv.cfg, true, &failed, &err)) {
        fprintf(stderr, "saed: error: %s\n", err.msg);
        goto out_sae;
    }
    log_saes(&srv, sae_clock_us() - t_load);
    if (*srv.cfg->lm && text_lm_open(&srv, &err)) {
        fprintf(stderr, "saed: error: --lm: %s\n", err.msg);
        goto out_sae;
    }
    if (static_init(&srv, &err)) {
        fprintf(stderr, "saed: error: %s\n", err.msg);
        goto out_sae;
    }
    fprintf(stderr, "saed: threads %d: %d http, %d workers x %d BLAS; batching %s\n", threads,
            srv.http_threads, srv.workers, srv.blas_threads, srv.cfg->batching ? "on" : "off");
    if (cors_parse(&srv, &err)) {
        fprintf(stderr, "saed: error: %s\n", err.msg);
        goto out_sae;
    }
    raise_nofile(srv.cfg->max_connections);

    struct saed_batcher_opts bo = {
        .workers = (size_t)srv.workers,
        .batching = srv.cfg->batching,
        .max_batch_rows = (size_t)srv.cfg->max_batch_rows,
        .max_batch_wait_us = (int64_t)srv.cfg->max_batch_wait_us,
        .max_queue_rows = (size_t)srv.cfg->max_queue_rows,
    };
    if (reaper_new((int64_t)srv.cfg->request_timeout_s * 1000000,
                   (int64_t)srv.cfg->header_timeout_s * 1000000, &srv.metrics, &srv.reaper,
                   &err) ||
        batcher_new(&bo, &srv.metrics, &srv.batcher, &err) || start_http(&srv, &err)) {
        fprintf(stderr, "saed: error: %s\n", err.msg);
        goto out_threads;
    }

    for (;;) {
        int sig = signal_next(sfd, -1);
        if (sig == SIGHUP) {
            reload(&srv, argc, argv);
            continue;
        }
        if (!sig)
            continue;
        fprintf(stderr, "saed: %s received\n", strsignal(sig));
        break;
    }
    drain(&srv, sfd);
    status = 0;

out_threads:
    if (srv.daemon)
        MHD_stop_daemon(srv.daemon);
    batcher_free(srv.batcher);
    reaper_free(srv.reaper);
out_sae:
    text_lm_free(srv.lm);
    saes_free(srv.saes);
    static_free(&srv);
    for (size_t i = 0; i < srv.n_cors; i++)
        free(srv.cors[i]);
    free(srv.cors);
    if (sfd >= 0) {
        close(sfd);
        close(signal_pipe_w);
    }
out_cfg:
    config_free(srv.cfg);
    free(srv.cfg);
    return status;
}
