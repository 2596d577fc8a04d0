/* The handle registry: which latch or broker-thread handler receives the
 * messages addressed to each handle of this context, and under which policy.
 * Also local delivery and dead replies. */
#include <errno.h>
#include <stdio.h>

#include "core/block_cache.h"
#include "core/log_internal.h"
#include "core/msg_internal.h"
#include "core/task.h"
#include "router/node_impl.h"
#include "router/service.h"

kin_err
kin__handles_add(kin_node *n, const kin__handler *h, uint32_t *handle)
{
    /* A cached block (core/block_cache.h): every call's receiver adds one,
     * and the broker may be the thread that last saw it. */
    _Static_assert(sizeof(kin__handler) <= KIN__BLOCK_SIZE,
                   "a handler is small");
    kin__handler *copy = kin__block_get();
    if (!copy)
        return -ENOMEM;
    *copy = *h;
    pthread_mutex_lock(&n->hmu);
    uint32_t id = h->handle;
    if (!id) {
        do {
            id = n->next_handle++;
            if (n->next_handle == 0)
                n->next_handle = KIN_HANDLE_DYNAMIC;
        } while (kin__u32map_has(&n->handles, id));
    } else if (kin__u32map_has(&n->handles, id)) {
        pthread_mutex_unlock(&n->hmu);
        kin__block_put(copy);
        return KIN_EEXISTS;
    }
    copy->handle = id;
    int rc = kin__u32map_put(&n->handles, id, copy);
    pthread_mutex_unlock(&n->hmu);
    if (rc) {
        kin__block_put(copy);
        return rc;
    }
    if (handle)
        *handle = id;
    return KIN_OK;
}

void
kin__handles_remove(kin_node *n, uint32_t handle)
{
    pthread_mutex_lock(&n->hmu);
    kin__handler *h = kin__u32map_del(&n->handles, handle);
    pthread_mutex_unlock(&n->hmu);
    /* A delivery still putting to h's latch holds a reference to the
     * latch, not to h: the receiver may go at once. */
    kin__block_put(h);
}

void
kin__handles_seal(kin_node *n, uint32_t handle)
{
    pthread_mutex_lock(&n->hmu);
    kin__handler *h = kin__u32map_get(&n->handles, handle);
    if (h && h->latch)
        h->sealed = true;
    pthread_mutex_unlock(&n->hmu);
}

bool
kin__is_ancestor_or_self(kin_node *n, uint32_t id)
{
    if (id == n->id)
        return true;
    for (int i = 0; i < n->n_ancestors; i++)
        if (n->ancestors[i] == id)
            return true;
    return false;
}

bool
kin__node_child_linked(kin_node *n, uint32_t id)
{
    /* ready holds the direct children whose HELLO arrived (under mu, so
     * any thread may ask; the routes map is the broker's alone). */
    pthread_mutex_lock(&n->mu);
    bool yes = id != n->id && kin__u32map_has(&n->ready, id);
    pthread_mutex_unlock(&n->mu);
    return yes;
}

bool
kin__policy_allows(kin_node *n, kin_policy policy, const kin_msg *m)
{
    switch (policy) {
    case KIN_POLICY_ANY:
        return true;
    case KIN_POLICY_PARENT:
        return kin__is_ancestor_or_self(n, m->auth);
    case KIN_POLICY_CHILD:
        return m->auth == m->src && kin__node_child_linked(n, m->auth);
    }
    return false;
}

void
kin__reply_dead(kin_node *n, kin_msg *m, kin_err reason, const char *text)
{
    /* Never answer a dead message or one that wants no reply: that is how
     * dead-message storms start. */
    if ((m->flags & KIN_MSG_DEAD) || !m->reply_to) {
        atomic_fetch_add(&n->stats.dropped, 1);
        KIN_DEBUG("dropped message %u->%u handle %u: %s", m->src, m->dst,
                  m->handle, kin_strerror(reason));
        kin_msg_destroy(&m);
        return;
    }
    kin_msg *d;
    if (kin__msg_new_dead(&d, m, n->id, reason, text) == KIN_OK) {
        atomic_fetch_add(&n->stats.dead_sent, 1);
        if (d->dst == n->id)
            kin__deliver(n, d);
        else
            kin__reply_send(n, d);
    }
    kin_msg_destroy(&m);
}

void
kin__reply_send(kin_node *n, kin_msg *m)
{
    m->src = m->auth = n->id;
    if (kin__broker_on_thread(n->broker)) {
        kin__route(n, m);
    } else if (kin_node_send(n, &m)) {
        atomic_fetch_add(&n->stats.dropped, 1);
        kin_msg_destroy(&m);
    }
}

void
kin__deliver(kin_node *n, kin_msg *m)
{
    /* The reply of a service call this context resolves for itself: the
     * resolver sees it here, on its way to the caller's receiver. */
    if (n->svc && n->broker && kin__broker_on_thread(n->broker) &&
        kin__svc_claim(n, &m))
        return;
    kin__deliver_handle(n, m);
}

void
kin__deliver_handle(kin_node *n, kin_msg *m)
{
    pthread_mutex_lock(&n->hmu);
    kin__handler *h = kin__u32map_get(&n->handles, m->handle);
    if (h && h->sealed) {
        pthread_mutex_unlock(&n->hmu);
        atomic_fetch_add(&n->stats.dropped, 1);
        kin_msg_destroy(&m);
        return;
    }
    if (!h) {
        pthread_mutex_unlock(&n->hmu);
        char why[64];
        snprintf(why, sizeof why, "unknown handle %u in context %u", m->handle,
                 n->id);
        kin__reply_dead(n, m, KIN_ENOHANDLE, why);
        return;
    }
    if (!kin__policy_allows(n, h->policy, m)) {
        pthread_mutex_unlock(&n->hmu);
        char why[96];
        snprintf(why, sizeof why,
                 "context %u refused handle %u to context %u by policy", n->id,
                 m->handle, m->auth);
        kin__reply_dead(n, m, KIN_EREFUSED, why);
        return;
    }
    atomic_fetch_add(&n->stats.delivered, 1);
    if (h->latch) {
        /* The reference keeps the latch alive, without holding hmu across
         * the put, if its receiver is destroyed meanwhile (the put then
         * fails: the latch is closed). */
        kin_latch *l = h->latch;
        kin__latch_ref(l);
        pthread_mutex_unlock(&n->hmu);
        kin_err e = kin_latch_put(l, &m);
        kin__latch_unref(l);
        if (e)
            kin__reply_dead(n, m, KIN_ENOHANDLE, "receiver closed");
        return;
    }
    kin__handle_fn fn = h->fn;
    void *arg = h->arg;
    pthread_mutex_unlock(&n->hmu);
    fn(n, m, arg);
}

void
kin__handles_peer_gone(kin_node *n, const uint32_t *ids, size_t count)
{
    pthread_mutex_lock(&n->hmu);
    uint32_t key;
    void *val;
    for (size_t it = 0; kin__u32map_next(&n->handles, &it, &key, &val);) {
        kin__handler *h = val;
        if (!h->latch || h->respondent == KIN_NO_CTX)
            continue;
        for (size_t i = 0; i < count; i++) {
            if (ids[i] != h->respondent)
                continue;
            kin_msg fake = {.src = n->id, .reply_to = h->handle};
            kin_msg *d;
            char why[64];
            snprintf(why, sizeof why, "context %u is gone", ids[i]);
            if (kin__msg_new_dead(&d, &fake, ids[i], KIN_EPEERGONE, why) ==
                KIN_OK) {
                if (kin_latch_put(h->latch, &d))
                    kin_msg_destroy(&d);
            }
            break;
        }
    }
    pthread_mutex_unlock(&n->hmu);
}
