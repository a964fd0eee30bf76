/* reaper.h: the total request deadline.
 *
 * libmicrohttpd's connection timeout only catches a connection that is
 * completely idle; a client trickling one byte every few seconds keeps a
 * request (and its buffers) alive forever. The reaper tracks every open
 * connection (MHD_OPTION_NOTIFY_CONNECTION) with the time it became ready for
 * its current request (accepted, or previous request finished) and, from its
 * own thread, shuts down the socket of any connection whose request has not
 * finished within request_timeout_s. shutdown(2) rather than close(2): MHD
 * still owns the descriptor, sees the socket fail on its next read or write,
 * and closes it through its normal path. Entries are removed (under the same
 * lock) in the CLOSED notification, which MHD sends before it closes the
 * descriptor, so the reaper never touches a reused descriptor.
 *
 * It also closes connections whose client has gone. libmicrohttpd 0.9.75
 * drives epoll edge-triggered, and when a client's last bytes and its FIN
 * arrive in one edge it never reads again: an upload aborted mid-body held
 * its connection and its request until the idle timeout (30 s), and a client
 * opening and dropping 35 such connections a second could fill
 * max_connections. So on each scan the reaper polls (level-triggered) the
 * sockets not answering a request for POLLRDHUP, and shuts down those whose
 * peer has closed and that made no progress since the previous scan: a
 * request still arriving can never complete then, and an idle connection is
 * done. A request whose body is complete is left alone, so a client that
 * half-closes after sending still gets its reply. */
#ifndef SAED_REAPER_H
#define SAED_REAPER_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/error.h"

struct saed_metrics;

/* Where a connection's current request is (set by the router). */
enum saed_conn_phase {
    SAED_CONN_IDLE,       /* between requests */
    SAED_CONN_RECEIVING,  /* a request began; its body is not complete */
    SAED_CONN_ANSWERING,  /* the request is complete and being answered */
};

/* One open connection; owned by the reaper's list. */
struct saed_conn {
    int fd;
    _Atomic int64_t t_mark_us;      /* when the current request's clock started */
    _Atomic int phase;              /* enum saed_conn_phase */
    bool reaped;
    int64_t hup_mark_us;            /* t_mark_us when its peer was first seen gone, or -1 */
    int hup_phase;                  /* phase then */
    struct saed_conn *prev, *next;
};

struct saed_reaper;

/* A reaper closing requests unfinished deadline_us after their connection
 * became ready for them, and connections whose next request's headers are
 * not complete header_us after it (both from the same mark: the header
 * deadline is the earlier one, a phase SAED_CONN_IDLE connection past it is
 * closed, so a client trickling header lines holds a connection for
 * header_timeout_s, not request_timeout_s). */
int reaper_new(int64_t deadline_us, int64_t header_us, struct saed_metrics *metrics,
               struct saed_reaper **out, sae_error *err);
/* Stops the thread and frees the list (after the daemon stopped). */
void reaper_free(struct saed_reaper *r);
/* MHD_OPTION_NOTIFY_CONNECTION callback; cls is the reaper. */
void reaper_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                   enum MHD_ConnectionNotificationCode code);
/* Restarts c's clock (a request began or ended on it). c may be NULL. */
void reaper_mark(struct saed_conn *c);
/* Records where c's request is (enum saed_conn_phase). c may be NULL. */
void reaper_phase(struct saed_conn *c, int phase);

#endif
