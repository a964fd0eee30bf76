/* reaper.c: the total request deadline (reaper.h). */
#include "reaper.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "io/clock.h"
#include "metrics.h"
#include "saed.h"

/* How often the list is scanned: deadlines are whole seconds, so a quarter
 * second of slack is plenty. */
#define REAPER_PERIOD_US 250000

/* The list of open connections and the scanning thread. `lock` guards the
 * list, `stop` and the poll array. */
struct saed_reaper {
    pthread_mutex_t lock;
    struct pollfd *pfd;             /* scratch for peer_gone_scan; grows */
    struct saed_conn **pconn;       /* (pfd_cap) the connection of each pfd */
    size_t pfd_cap;
    pthread_cond_t cv;
    struct saed_conn *head;
    bool stop;
    pthread_t thread;
    int64_t deadline_us;
    int64_t header_us;              /* the header deadline (header_timeout_s) */
    struct saed_metrics *metrics;   /* borrowed */
};

/* Restarts the deadline clock of a connection. */
void reaper_mark(struct saed_conn *c)
{
    if (c)
        atomic_store_explicit(&c->t_mark_us, sae_clock_us(), memory_order_relaxed);
}

void reaper_phase(struct saed_conn *c, int phase)
{
    if (c)
        atomic_store_explicit(&c->phase, phase, memory_order_relaxed);
}

void reaper_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                   enum MHD_ConnectionNotificationCode code)
{
    struct saed_reaper *r = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct saed_conn *c = calloc(1, sizeof *c);
        if (!c || !ci) {
            /* Untracked: the connection still has MHD's idle timeout. */
            free(c);
            *socket_context = NULL;
            return;
        }
        c->fd = ci->connect_fd;
        atomic_init(&c->t_mark_us, sae_clock_us());
        atomic_init(&c->phase, SAED_CONN_IDLE);
        c->hup_mark_us = -1;
        pthread_mutex_lock(&r->lock);
        c->next = r->head;
        if (r->head)
            r->head->prev = c;
        r->head = c;
        pthread_mutex_unlock(&r->lock);
        atomic_fetch_add_explicit(&r->metrics->connections, 1, memory_order_relaxed);
        *socket_context = c;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct saed_conn *c = *socket_context;
        if (!c)
            return;
        pthread_mutex_lock(&r->lock);
        if (c->prev)
            c->prev->next = c->next;
        else
            r->head = c->next;
        if (c->next)
            c->next->prev = c->prev;
        pthread_mutex_unlock(&r->lock);
        atomic_fetch_sub_explicit(&r->metrics->connections, 1, memory_order_relaxed);
        free(c);
        *socket_context = NULL;
    }
}

/* Shuts down the connections whose peer has closed, that are not answering a
 * request and that made no progress since the previous scan (reaper.h).
 * Called with the lock held, so no descriptor polled here can be closed and
 * reused meanwhile. */
static void peer_gone_scan(struct saed_reaper *r)
{
    size_t n = 0;
    for (struct saed_conn *c = r->head; c; c = c->next) {
        if (c->reaped || atomic_load_explicit(&c->phase, memory_order_relaxed) ==
                             SAED_CONN_ANSWERING) {
            c->hup_mark_us = -1;
            continue;
        }
        if (n == r->pfd_cap) {
            size_t cap = r->pfd_cap ? 2 * r->pfd_cap : 256;
            struct pollfd *p = realloc(r->pfd, cap * sizeof *p);
            if (p)
                r->pfd = p;
            struct saed_conn **q = p ? realloc(r->pconn, cap * sizeof *q) : NULL;
            if (q)
                r->pconn = q;
            if (!p || !q)
                break; /* this scan covers what fits; the next tries again */
            r->pfd_cap = cap;
        }
        r->pfd[n] = (struct pollfd){.fd = c->fd, .events = POLLRDHUP};
        r->pconn[n++] = c;
    }
    if (!n || poll(r->pfd, (nfds_t)n, 0) <= 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct saed_conn *c = r->pconn[i];
        if (!(r->pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            c->hup_mark_us = -1;
            continue;
        }
        int64_t mark = atomic_load_explicit(&c->t_mark_us, memory_order_relaxed);
        int phase = atomic_load_explicit(&c->phase, memory_order_relaxed);
        if (c->hup_mark_us != mark || c->hup_phase != phase) {
            /* First seen, or it moved on: give libmicrohttpd a scan's time. */
            c->hup_mark_us = mark;
            c->hup_phase = phase;
            continue;
        }
        c->reaped = true;
        shutdown(c->fd, SHUT_RDWR);
        atomic_fetch_add_explicit(&r->metrics->peer_gone_closed, 1, memory_order_relaxed);
    }
}

/* The reaper thread: every REAPER_PERIOD_US, shuts down connections past
 * their deadline and those whose client has gone. */
static void *reaper_main(void *arg)
{
    struct saed_reaper *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        int64_t now = sae_clock_us();
        for (struct saed_conn *c = r->head; c; c = c->next) {
            int64_t mark = atomic_load_explicit(&c->t_mark_us, memory_order_relaxed);
            if (c->reaped)
                continue;
            if (now - mark > r->deadline_us) {
                c->reaped = true;
                shutdown(c->fd, SHUT_RDWR);
                atomic_fetch_add_explicit(&r->metrics->deadline_closed, 1,
                                          memory_order_relaxed);
            } else if (now - mark > r->header_us &&
                       atomic_load_explicit(&c->phase, memory_order_relaxed) ==
                           SAED_CONN_IDLE) {
                c->reaped = true;
                shutdown(c->fd, SHUT_RDWR);
                atomic_fetch_add_explicit(&r->metrics->header_closed, 1, memory_order_relaxed);
            }
        }
        peer_gone_scan(r);
        int64_t until = now + REAPER_PERIOD_US;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000),
                              .tv_nsec = (long)(until % 1000000) * 1000};
        pthread_cond_timedwait(&r->cv, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int reaper_new(int64_t deadline_us, int64_t header_us, struct saed_metrics *metrics,
               struct saed_reaper **out, sae_error *err)
{
    struct saed_reaper *r = calloc(1, sizeof *r);
    if (!r)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    r->deadline_us = deadline_us;
    r->header_us = header_us;
    r->metrics = metrics;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&r->thread, NULL, reaper_main, r);
    if (e) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return sae_error_set(err, SAE_EIO, "cannot start the reaper thread: %s", strerror(e));
    }
    *out = r;
    return 0;
}

/* Stops the thread and frees the entries left. */
void reaper_free(struct saed_reaper *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    for (struct saed_conn *c = r->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(r->pfd);
    free(r->pconn);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
