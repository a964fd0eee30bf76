/* jobq.h: the intrusive FIFO under both work queues (batcher.c: rows for the
 * SAEs; lm_batcher.c: tokens for the language model). A job embeds a
 * struct jobq_node; the queue links nodes and, once a worker is done with a
 * batch of them, hands each back to its request: `done` set, then the
 * request's notify called or its connection resumed. What a job is, how
 * batches are picked and what bounds the queue stay with the owner, whose
 * lock guards head and tail (`pending` is atomic: the drain reads it). */
#ifndef SAED_JOBQ_H
#define SAED_JOBQ_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* A job's place on a queue and the way back to its request. The request
 * fills conn (and notify) before the push; the worker never touches the
 * job after handing it back. */
struct jobq_node {
    struct jobq_node *next;
    struct MHD_Connection *conn;    /* borrowed: suspended before the push, resumed when
                                       done (unless notify) */
    void (*notify)(void *cls);      /* optional: called instead of resuming conn, after
                                       `done` is set */
    void *notify_cls;
    atomic_bool done;
};

/* The FIFO of nodes linked by next, and how many are out (pushed, not yet
 * handed back). */
struct jobq {
    struct jobq_node *head, *tail;
    atomic_size_t pending;
};

/* An empty queue. */
void jobq_init(struct jobq *q);
/* Appends n, not done (lock held). */
void jobq_push(struct jobq *q, struct jobq_node *n);
/* Unlinks *pp, whose predecessor is prev (NULL for the head), keeping the
 * tail right (lock held); returns it, its next NULL. */
struct jobq_node *jobq_unlink(struct jobq *q, struct jobq_node **pp, struct jobq_node *prev);
/* Hands back every node of the list linked by next (no lock): each is
 * done, then notified or resumed, then no longer pending. */
void jobq_hand_back(struct jobq *q, struct jobq_node *list);
/* Nodes pushed and not yet handed back (the drain waits for 0). */
size_t jobq_pending(const struct jobq *q);

#endif
