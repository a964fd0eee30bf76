/* harness.c: daemon processes, libcurl requests and check counting
 * (harness.h). */
#include "harness.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

static atomic_int failures;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

/* Every daemon started, so the exit handler can kill leftovers. */
#define MAX_DAEMONS 16
static struct daemon *started[MAX_DAEMONS];
static size_t n_started;
static __thread CURL *tl_curl;

/* Counts and prints one failed check. */
void h_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    atomic_fetch_add(&failures, 1);
    pthread_mutex_lock(&print_lock);
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&print_lock);
}

/* Failed checks so far. */
int h_failures(void)
{
    return atomic_load(&failures);
}

/* A fresh temporary folder (the fixture writer's); exits when it cannot be
 * made, rather than letting a test write under "(null)/". */
char *h_tmpdir(const char *tag)
{
    char *t = sae_fixture_tmpdir(tag);
    if (!t) {
        fprintf(stderr, "cannot make a temporary folder for %s under %s: %s\n", tag,
                getenv("SAE_TEST_TMP") ? getenv("SAE_TEST_TMP") : "/tmp", strerror(errno));
        exit(1);
    }
    return t;
}

int h_write_model(const char *dir, size_t d_in, size_t d_sae, sae_arch arch, sae_norm norm,
                  uint64_t seed)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = d_in;
    o.d_sae = d_sae;
    o.arch = arch;
    o.norm = norm;
    o.seed = seed;
    o.target_l0 = 8;
    sae_error err;
    if (sae_fixture_write_model(dir, &o, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* At exit: kills every daemon still running. */
static void kill_all(void)
{
    for (size_t i = 0; i < n_started; i++)
        daemon_kill(started[i]);
}

/* Copies a daemon's stderr log to ours (when it failed to start). */
static void print_log(const struct daemon *d)
{
    FILE *f = fopen(d->log, "r");
    if (!f)
        return;
    char line[1024];
    fprintf(stderr, "---- %s ----\n", d->log);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

/* Whether a daemon's log contains s. */
bool daemon_log_has(const struct daemon *d, const char *s)
{
    FILE *f = fopen(d->log, "r");
    if (!f)
        return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, s) != NULL;
    fclose(f);
    return found;
}

/* Starts saed and waits for its "listening on" line (harness.h). */
int daemon_start(struct daemon *d, const char *model_dir, const char *const *args)
{
    static int serial;
    const char *bin = getenv("SAED_BIN");
    if (!bin) {
        fprintf(stderr, "harness: SAED_BIN is not set (meson sets it)\n");
        return -1;
    }
    if (n_started == 0) {
        curl_global_init(CURL_GLOBAL_ALL);
        atexit(kill_all);
    }
    const char *tmp = getenv("SAE_TEST_TMP");
    snprintf(d->log, sizeof d->log, "%s/saed-%d-%d.log", tmp ? tmp : "/tmp", (int)getpid(),
             serial++);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = bin;
    if (model_dir) {
        argv[n++] = "--model";
        argv[n++] = model_dir;
    }
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    for (size_t i = 0; args && args[i] && n < 62; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    d->port = 0;
    if (n_started < MAX_DAEMONS)
        started[n_started++] = d;
    double until = now_ms() + 30000;
    while (now_ms() < until) {
        FILE *f = fopen(d->log, "r");
        if (f) {
            char line[1024];
            while (fgets(line, sizeof line, f)) {
                const char *p = strstr(line, "listening on 127.0.0.1:");
                if (p)
                    d->port = atoi(p + strlen("listening on 127.0.0.1:"));
            }
            fclose(f);
        }
        if (d->port)
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            print_log(d);
            return -1;
        }
        usleep(20000);
    }
    print_log(d);
    daemon_kill(d);
    return -1;
}

/* Sends sig to the daemon. */
void daemon_signal(const struct daemon *d, int sig)
{
    if (d->pid > 0)
        kill(d->pid, sig);
}

/* Waits for the daemon to exit (harness.h). */
int daemon_wait(struct daemon *d, int timeout_ms)
{
    double until = now_ms() + timeout_ms;
    while (d->pid > 0) {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            return 128 + WTERMSIG(st);
        }
        if (now_ms() > until)
            return -1;
        usleep(10000);
    }
    return -1;
}

/* SIGKILLs and reaps the daemon if it still runs. */
void daemon_kill(struct daemon *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

/* Growable body for libcurl's write callback. */
static size_t on_body(char *p, size_t size, size_t n, void *cls)
{
    struct http_resp *r = cls;
    size_t k = size * n;
    char *b = realloc(r->body, r->len + k + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, k);
    r->body = b;
    r->len += k;
    r->body[r->len] = '\0';
    return k;
}

/* Copies the value of header line `line` into dst if its name is `name`. */
static void grab(const char *line, size_t n, const char *name, char *dst, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ')) {
        v++;
        vl--;
    }
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    if (vl >= cap)
        vl = cap - 1;
    memcpy(dst, v, vl);
    dst[vl] = '\0';
}

/* libcurl header callback: keeps the headers the tests look at. */
static size_t on_header(char *p, size_t size, size_t n, void *cls)
{
    struct http_resp *r = cls;
    size_t k = size * n;
    grab(p, k, "X-SAE-Weights-Digest", r->digest, sizeof r->digest);
    grab(p, k, "Retry-After", r->retry_after, sizeof r->retry_after);
    grab(p, k, "Content-Type", r->content_type, sizeof r->content_type);
    grab(p, k, "Content-Encoding", r->content_encoding, sizeof r->content_encoding);
    grab(p, k, "Allow", r->allow, sizeof r->allow);
    grab(p, k, "X-SAE-Space", r->space, sizeof r->space);
    grab(p, k, "Access-Control-Allow-Origin", r->cors, sizeof r->cors);
    grab(p, k, "Access-Control-Allow-Methods", r->cors_methods, sizeof r->cors_methods);
    grab(p, k, "Vary", r->vary, sizeof r->vary);
    return k;
}

long http(const struct daemon *d, const char *method, const char *path, const void *body,
          size_t len, const char *const *headers, bool gzip, struct http_resp *r)
{
    memset(r, 0, sizeof *r);
    if (!tl_curl)
        tl_curl = curl_easy_init();
    CURL *c = tl_curl;
    curl_easy_reset(c);
    char url[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", d->port, path);
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    /* No "Expect: 100-continue" pause on larger bodies. */
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (!strcmp(method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (gzip)
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "gzip");
    CURLcode rc = curl_easy_perform(c);
    r->curl_code = (int)rc;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    if (!r->body) {
        r->body = calloc(1, 1);
    }
    return r->status;
}

/* Frees this thread's libcurl handle. */
void http_thread_done(void)
{
    if (tl_curl) {
        curl_easy_cleanup(tl_curl);
        tl_curl = NULL;
    }
}

/* Frees a response body. */
void http_free(struct http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* The ids of d's threads whose comm is name, in /proc's order, up to cap of
 * them into tids; returns how many there are (which may be more than cap). */
static size_t threads_named(const struct daemon *d, const char *name, pid_t *tids, size_t cap)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task", (int)d->pid);
    DIR *dir = opendir(path);
    size_t n = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        char comm[64] = "";
        snprintf(path, sizeof path, "/proc/%d/task/%.20s/comm", (int)d->pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = '\0';
            if (!strcmp(comm, name)) {
                if (n < cap)
                    tids[n] = (pid_t)atoi(e->d_name);
                n++;
            }
        }
        if (f)
            fclose(f);
    }
    if (dir)
        closedir(dir);
    return n;
}

/* Whether the stopped thread tid of pid was stopped inside a futex call:
 * /proc's syscall file names the call it is in ("-1" in user space). */
static bool in_futex(pid_t pid, pid_t tid)
{
    char path[96], line[256] = "";
    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
    FILE *f = fopen(path, "r");
    long nr = f && fgets(line, sizeof line, f) ? atol(line) : -1;
    bool yes = nr == SYS_futex;
#ifdef SYS_futex_time64
    yes = yes || nr == SYS_futex_time64;
#endif
    if (f)
        fclose(f);
    return yes;
}

/* Stops thread tid of d (named name, for the messages) with ptrace once it
 * is seen inside a futex wait, trying for up to 30 s; 0, or -1 (printed
 * why) with the thread left running. */
static int hold_tid(const struct daemon *d, pid_t tid, const char *name)
{
    for (int tries = 0; tries < 3000; tries++) {
        if (ptrace(PTRACE_SEIZE, tid, NULL, NULL)) {
            fprintf(stderr, "ptrace thread %d (%s): %s\n", (int)tid, name, strerror(errno));
            return -1;
        }
        int st;
        if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) || waitpid(tid, &st, __WALL) != tid ||
            !WIFSTOPPED(st)) {
            fprintf(stderr, "stopping thread %d (%s): %s\n", (int)tid, name, strerror(errno));
            ptrace(PTRACE_DETACH, tid, NULL, NULL);
            return -1;
        }
        /* An interrupt stop inside the futex: hold it. Anything else (a
         * signal's stop is handed back with the detach) is let go. */
        bool event = (st >> 16) == PTRACE_EVENT_STOP;
        if (event && in_futex(d->pid, tid))
            return 0;
        ptrace(PTRACE_DETACH, tid, NULL, (void *)(intptr_t)(event ? 0 : WSTOPSIG(st)));
        usleep(10000);
    }
    fprintf(stderr, "thread %d (%s) was never idle in a futex wait\n", (int)tid, name);
    return -1;
}

pid_t daemon_thread_hold(const struct daemon *d, const char *name)
{
    pid_t tid;
    if (!threads_named(d, name, &tid, 1)) {
        fprintf(stderr, "saed %d has no thread named %s\n", (int)d->pid, name);
        return -1;
    }
    return hold_tid(d, tid, name) ? -1 : tid;
}

size_t daemon_threads_hold(const struct daemon *d, const char *name, pid_t *tids, size_t cap)
{
    size_t n = threads_named(d, name, tids, cap);
    if (!n || n > cap) {
        fprintf(stderr, "saed %d has %zu threads named %s (room for %zu)\n", (int)d->pid, n,
                name, cap);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (hold_tid(d, tids[i], name)) {
            while (i > 0)
                daemon_thread_release(tids[--i]);
            return 0;
        }
    return n;
}

void daemon_thread_release(pid_t tid)
{
    if (tid > 0)
        ptrace(PTRACE_DETACH, tid, NULL, NULL);
}

double daemon_metric(const struct daemon *d, const char *sample)
{
    struct http_resp r;
    double v = -1;
    size_t n = strlen(sample);
    if (http(d, "GET", "/metrics", NULL, 0, NULL, false, &r) == 200)
        for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
            if (!strncmp(p, sample, n) && p[n] == ' ') {
                v = atof(p + n + 1);
                break;
            }
    http_free(&r);
    return v;
}

double daemon_metric_wait(const struct daemon *d, const char *sample, double want)
{
    double v = -1;
    for (int t = 0; t < 6000 && (v = daemon_metric(d, sample)) != want; t++)
        usleep(10000);
    return v;
}
