/*
 * cm_lockclient_table: the lock client's table of tagged requests (declared in
 * cm_lockclient_int.h): a hash by request id, the tag a reply names, for the reply's
 * lookup, and a list in creation order, for what walks them all in the order they were
 * asked (sending the queued ones once a session is ready, failing those in flight when it
 * goes down). A request is in both or in neither.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "cm_lockclient_int.h"

static size_t bucket(const cm_lockclient *c, uint64_t id)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 32) & (c->nbuckets - 1);
}

static void table_grow(cm_lockclient *c)
{
    size_t n = c->nbuckets * 2;
    lc_req **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return; /* chains just get longer */
    lc_req **old = c->buckets;
    size_t oldn = c->nbuckets;
    c->buckets = nb;
    c->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        lc_req *r = old[i];
        while (r != NULL) {
            lc_req *next = r->hnext;
            size_t b = bucket(c, r->id);
            r->hnext = nb[b];
            nb[b] = r;
            r = next;
        }
    }
    free(old);
}

void lc_table_add(cm_lockclient *c, lc_req *r)
{
    if (c->nreqs >= c->nbuckets * 2)
        table_grow(c);
    size_t b = bucket(c, r->id);
    r->hnext = c->buckets[b];
    c->buckets[b] = r;
    c->nreqs++;
    r->qprev = c->qtail;
    r->qnext = NULL;
    if (c->qtail != NULL)
        c->qtail->qnext = r;
    else
        c->qhead = r;
    c->qtail = r;
}

lc_req *lc_table_find(const cm_lockclient *c, uint64_t id)
{
    for (lc_req *r = c->buckets[bucket(c, id)]; r != NULL; r = r->hnext)
        if (r->id == id)
            return r;
    return NULL;
}

void lc_table_remove(cm_lockclient *c, lc_req *r)
{
    lc_req **pp = &c->buckets[bucket(c, r->id)];
    while (*pp != NULL && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp == NULL)
        return;
    *pp = r->hnext;
    c->nreqs--;
    if (r->qprev != NULL)
        r->qprev->qnext = r->qnext;
    else
        c->qhead = r->qnext;
    if (r->qnext != NULL)
        r->qnext->qprev = r->qprev;
    else
        c->qtail = r->qprev;
    r->hnext = r->qprev = r->qnext = NULL;
}

void lc_req_free(lc_req *r)
{
    if (r->timer != NULL)
        event_free(r->timer);
    free(r);
}
