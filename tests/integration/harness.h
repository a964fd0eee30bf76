/* harness.h: what the daemon integration tests share: starting a real saed
 * on an ephemeral loopback port, talking HTTP to it with libcurl, and
 * counting failed checks.
 *
 * saed is started with --listen 127.0.0.1:0 and its stderr goes to a file;
 * the harness waits for the "saed: listening on 127.0.0.1:PORT" line and
 * reads the port from it. Every daemon started is killed at exit, so a
 * failing test never leaves one behind. */
#ifndef SAED_HARNESS_H
#define SAED_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "io/clock.h"
#include "sae/model.h"

/* Counts a failed check and prints where; tests go on after a failure so one
 * run reports everything that is wrong. */
#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (!(cond))                                                                             \
            h_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                      \
    } while (0)

void h_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Failed checks so far. */
int h_failures(void);

/* A running saed. */
struct daemon {
    pid_t pid;
    int port;
    char log[512];          /* its stderr */
};

/* Starts $SAED_BIN [--model model_dir] --listen 127.0.0.1:0 plus args (NULL
 * terminated). Returns 0, or -1 (and the log is printed) if it does not come
 * up within 30 s. */
int daemon_start(struct daemon *d, const char *model_dir, const char *const *args);
/* Sends sig. */
void daemon_signal(const struct daemon *d, int sig);
/* Waits up to timeout_ms for the process to exit; returns its exit status,
 * 128+signal if killed, or -1 on timeout. */
int daemon_wait(struct daemon *d, int timeout_ms);
/* SIGKILLs it if still running (used at exit). */
void daemon_kill(struct daemon *d);
/* Whether the log contains s. */
bool daemon_log_has(const struct daemon *d, const char *s);

/* Stops d's thread named name (its /proc comm, e.g. "saed-lm") with ptrace,
 * only while it is blocked in a futex wait (the idle worker's condition
 * wait: it then holds no lock, so the rest of the daemon goes on); other
 * states are let go and tried again, for up to 30 s. The calling thread is
 * the tracer: it alone may release. Returns the thread's id, or -1 (printed
 * why). */
pid_t daemon_thread_hold(const struct daemon *d, const char *name);
/* daemon_thread_hold for every thread of d named name (e.g. the encode
 * workers, all "saed-encode"), their ids into tids (room for cap): returns
 * how many it holds, or 0 (none held) if there are none, more than cap, or
 * one could not be held. Release each with daemon_thread_release. */
size_t daemon_threads_hold(const struct daemon *d, const char *name, pid_t *tids, size_t cap);
/* Lets a held thread run again (its wait resumes where it was). */
void daemon_thread_release(pid_t tid);

/* One /metrics sample: the value on the line that starts with `sample` (a
 * name, with its labels if any) and a space, or -1. */
double daemon_metric(const struct daemon *d, const char *sample);
/* Polls daemon_metric until it equals want, for up to 60 s (a guard against
 * a hang, not a timing assertion); returns the last value. */
double daemon_metric_wait(const struct daemon *d, const char *sample, double want);

/* One HTTP exchange. Bodies and headers are owned by the struct. */
struct http_resp {
    long status;            /* 0 when the transfer failed (connection refused/cut) */
    int curl_code;
    char *body;             /* (len) NUL-terminated */
    size_t len;
    char digest[64];        /* X-SAE-Weights-Digest */
    char retry_after[16];
    char content_type[128];
    char content_encoding[32];
    char allow[128];
    char space[32];         /* X-SAE-Space */
    char cors[128];         /* Access-Control-Allow-Origin */
    char cors_methods[128]; /* Access-Control-Allow-Methods */
    char vary[64];
};

/* Issues method path on d's port with the given body and headers ("Name:
 * value", NULL terminated; may be NULL). gzip: ask for gzip and let libcurl
 * decode. Returns r->status. */
long http(const struct daemon *d, const char *method, const char *path, const void *body,
          size_t len, const char *const *headers, bool gzip, struct http_resp *r);
void http_free(struct http_resp *r);
/* Frees the calling thread's libcurl handle (each thread keeps one so its
 * connection is reused); call before a thread exits. */
void http_thread_done(void);

/* Milliseconds of monotonic time (the house clock, core/io/clock.h). */
static inline double now_ms(void) { return sae_clock_s() * 1e3; }
/* A temporary folder (fresh). */
char *h_tmpdir(const char *tag);
/* Writes a fixture model folder at dir: fixture.h's defaults (k 8), then
 * these, with target_l0 8. 0, or -1 with the reason printed. */
int h_write_model(const char *dir, size_t d_in, size_t d_sae, sae_arch arch, sae_norm norm,
                  uint64_t seed);

#endif
