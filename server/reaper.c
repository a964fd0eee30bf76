/* reaper.c: the total request deadline (reaper.h). */
#include "reaper.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "metrics.h"
#include "saed.h"

/* How often the list is scanned: deadlines are whole seconds, so a quarter
 * second of slack is plenty. */
#define REAPER_PERIOD_US 250000

/* The list of open connections and the scanning thread. `lock` guards the
 * list and `stop`. */
struct saed_reaper {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct saed_conn *head;
    bool stop;
    pthread_t thread;
    int64_t deadline_us;
    struct saed_metrics *metrics;   /* borrowed */
};

/* Restarts the deadline clock of a connection. */
void reaper_mark(struct saed_conn *c)
{
    if (c)
        atomic_store_explicit(&c->t_mark_us, saed_now_us(), memory_order_relaxed);
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
        atomic_init(&c->t_mark_us, saed_now_us());
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

/* The reaper thread: every REAPER_PERIOD_US, shuts down connections past
 * their deadline. */
static void *reaper_main(void *arg)
{
    struct saed_reaper *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        int64_t now = saed_now_us();
        for (struct saed_conn *c = r->head; c; c = c->next) {
            int64_t mark = atomic_load_explicit(&c->t_mark_us, memory_order_relaxed);
            if (!c->reaped && now - mark > r->deadline_us) {
                c->reaped = true;
                shutdown(c->fd, SHUT_RDWR);
                atomic_fetch_add_explicit(&r->metrics->deadline_closed, 1,
                                          memory_order_relaxed);
            }
        }
        int64_t until = now + REAPER_PERIOD_US;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000),
                              .tv_nsec = (long)(until % 1000000) * 1000};
        pthread_cond_timedwait(&r->cv, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int reaper_new(int64_t deadline_us, struct saed_metrics *metrics, struct saed_reaper **out,
               sae_error *err)
{
    struct saed_reaper *r = calloc(1, sizeof *r);
    if (!r)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    r->deadline_us = deadline_us;
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
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
