/* jobq.c: the intrusive FIFO under both work queues (jobq.h). */
#include "jobq.h"

void jobq_init(struct jobq *q)
{
    q->head = q->tail = NULL;
    atomic_init(&q->pending, 0);
}

void jobq_push(struct jobq *q, struct jobq_node *n)
{
    atomic_store_explicit(&n->done, false, memory_order_relaxed);
    n->next = NULL;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    atomic_fetch_add_explicit(&q->pending, 1, memory_order_acq_rel);
}

struct jobq_node *jobq_unlink(struct jobq *q, struct jobq_node **pp, struct jobq_node *prev)
{
    struct jobq_node *n = *pp;
    *pp = n->next;
    if (q->tail == n)
        q->tail = prev;
    n->next = NULL;
    return n;
}

void jobq_hand_back(struct jobq *q, struct jobq_node *list)
{
    for (struct jobq_node *n = list, *next; n; n = next) {
        struct MHD_Connection *conn = n->conn;
        void (*notify)(void *) = n->notify;
        void *cls = n->notify_cls;
        next = n->next;
        atomic_store_explicit(&n->done, true, memory_order_release);
        /* The job belongs to its request again from here on. */
        if (notify)
            notify(cls);
        else
            MHD_resume_connection(conn);
        atomic_fetch_sub_explicit(&q->pending, 1, memory_order_acq_rel);
    }
}

size_t jobq_pending(const struct jobq *q)
{
    return atomic_load_explicit(&q->pending, memory_order_acquire);
}
