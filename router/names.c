/* Names of contexts: a context's HELLO carries its name; its parent records
 * it at the master (NAME, sent after the ADD_ROUTE on the same link; at the
 * master itself, at once); the master keeps the live ones (a route deletion
 * removes them, as it removes routes) and answers LOOKUP with the id that
 * announced the name last, or holds the lookup until such a context
 * appears or its wait ends. Everything here runs on the master's broker
 * thread, except kin_node_lookup. A joined context keeps its subtree's
 * names too (the NAMEs it sends or passes up), to announce them again to a
 * master restarted at its join endpoint. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <kin/call.h>
#include <kin/pack.h>
#include <kin/service.h>

#include "core/pack_internal.h"
#include "core/task.h"
#include "router/names.h"
#include "router/node_impl.h"
#include "router/service_wire.h"

#define NAME_MAX_LEN KIN__CTX_NAME_MAX
#define WAITERS_MAX 256

typedef struct entry {
    char name[NAME_MAX_LEN + 1];
    uint64_t seq; /* when it was announced, for the newest of a name */
} entry;

typedef struct waiter {
    char name[NAME_MAX_LEN + 1];
    kin_msg *req; /* the LOOKUP, answered to its src and reply_to */
    uint64_t deadline;
} waiter;

struct kin__names {
    kin__u32map ids; /* context id -> entry (a joiner: its subtree's) */
    uint64_t seq;
    waiter waiters[WAITERS_MAX];
    int nwaiters;
    uv_timer_t timer; /* answers waiters at their deadline (broker) */
    bool timer_on;    /* initialized; the broker closes it at its end */
};

static struct kin__names *
N(kin_node *n)
{
    return n->names;
}

/* The id that announced name last, or KIN_NO_CTX. */
static uint32_t
newest(struct kin__names *ns, const char *name)
{
    uint32_t best = KIN_NO_CTX, id;
    uint64_t seq = 0;
    void *val;
    for (size_t it = 0; kin__u32map_next(&ns->ids, &it, &id, &val);) {
        entry *e = val;
        if (e->seq > seq && !strcmp(e->name, name)) {
            seq = e->seq;
            best = id;
        }
    }
    return best;
}

static void
answer(kin_node *n, kin_msg *req, uint32_t id)
{
    kin_buf b = {0};
    kin_msg *m = NULL;
    if (kin_pack(&b, "u", id) == KIN_OK &&
        kin_msg_new_copy(&m, b.data, b.len) == KIN_OK) {
        m->dst = req->src;
        m->handle = req->reply_to;
        kin__reply_send(n, m);
    }
    kin_buf_release(&b);
    kin_msg_destroy(&req);
}

static void on_timer(uv_timer_t *t);

/* Answers the waiters whose name is now known, and -ENOENT those whose
 * wait ended; the timer is set for the next deadline. */
static void
wake(kin_node *n)
{
    struct kin__names *ns = N(n);
    uint64_t now = kin__now_ns(), next = UINT64_MAX;
    for (int i = 0; i < ns->nwaiters;) {
        waiter *w = &ns->waiters[i];
        uint32_t id = newest(ns, w->name);
        if (id == KIN_NO_CTX && now < w->deadline) {
            next = w->deadline < next ? w->deadline : next;
            i++;
            continue;
        }
        if (id != KIN_NO_CTX) {
            answer(n, w->req, id);
        } else {
            char why[128];
            snprintf(why, sizeof why, "no context named '%s' appeared",
                     w->name);
            kin__reply_dead(n, w->req, -ENOENT, why);
        }
        ns->waiters[i] = ns->waiters[--ns->nwaiters];
    }
    if (next == UINT64_MAX || kin__broker_stopping(n->broker))
        return;
    if (!ns->timer_on) {
        uv_timer_init(kin__broker_loop(n->broker), &ns->timer);
        ns->timer.data = n;
        ns->timer_on = true;
    }
    uv_timer_start(&ns->timer, on_timer, (next - now) / 1000000u + 1, 0);
}

static void
on_timer(uv_timer_t *t)
{
    wake(t->data);
}

static void
put(kin_node *n, uint32_t id, const char *name, size_t len)
{
    struct kin__names *ns = N(n);
    entry *e = kin__u32map_get(&ns->ids, id);
    if (!e) {
        if (!(e = calloc(1, sizeof *e)))
            return;
        if (kin__u32map_put(&ns->ids, id, e)) {
            free(e);
            return;
        }
    }
    snprintf(e->name, sizeof e->name, "%.*s", (int)len, name);
    e->seq = ++ns->seq;
    wake(n);
}

/* NAME [id, name] from a context that linked the child `id` (checked:
 * the sender and id are reached through the same link of the master). */
static void
on_name(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    const char *name;
    size_t len;
    uint32_t id;
    void *via = kin__u32map_get(&n->routes, m->src);
    kin__child *c = kin__u32map_get(&n->children, m->src);
    if (!n->has_parent && !(c && c->is_operator) && via &&
        kin__name_read(m->body, m->len, &id, &name, &len) == KIN_OK &&
        kin__u32map_get(&n->routes, id) == via)
        put(n, id, name, len);
    else
        atomic_fetch_add(&n->stats.malformed, 1);
    kin_msg_destroy(&m);
}

/* LOOKUP [name, wait ms]: [id] at once when a live context has that name,
 * else when one announces it within the wait; -ENOENT after none. */
static void
on_lookup(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    struct kin__names *ns = N(n);
    const char *name;
    size_t len;
    int64_t wait_ms;
    if (n->has_parent ||
        kin__lookup_read(m->body, m->len, &name, &len, &wait_ms)) {
        kin__reply_dead(n, m, KIN_EBADMSG, "malformed lookup");
        return;
    }
    wake(n);
    char want[NAME_MAX_LEN + 1];
    snprintf(want, sizeof want, "%.*s", (int)len, name);
    uint32_t id = newest(ns, want);
    if (id != KIN_NO_CTX) {
        answer(n, m, id);
        return;
    }
    char why[128];
    if (wait_ms <= 0) {
        snprintf(why, sizeof why, "no context named '%s' in the tree", want);
        kin__reply_dead(n, m, -ENOENT, why);
        return;
    }
    if (ns->nwaiters == WAITERS_MAX) {
        kin__reply_dead(n, m, KIN_EBUSY, "too many lookups waiting");
        return;
    }
    waiter *w = &ns->waiters[ns->nwaiters++];
    memcpy(w->name, want, sizeof w->name);
    w->req = m;
    w->deadline = kin__now_ns() + (uint64_t)wait_ms * 1000000u;
    wake(n); /* sets the timer for it */
}

/* Sends NAME [child, name] to the master. */
static void
send_name(kin_node *n, uint32_t child, const char *name, size_t len)
{
    kin_buf b = {0};
    kin_msg *m = NULL;
    if (kin_pack(&b, "uS", child, name, len) == KIN_OK &&
        kin_msg_new_copy(&m, b.data, b.len) == KIN_OK) {
        m->dst = KIN_MASTER_ID;
        m->handle = KIN_HANDLE_NAME;
        kin__reply_send(n, m);
    }
    kin_buf_release(&b);
}

void
kin__names_linked(kin_node *n, uint32_t child, const char *name, size_t len)
{
    if (!len || len > NAME_MAX_LEN)
        return;
    if (!n->has_parent || n->joined)
        put(n, child, name, len); /* the master's table, a joiner's copy */
    if (n->has_parent)
        send_name(n, child, name, len);
}

void
kin__names_passing(kin_node *n, const kin_msg *m)
{
    const char *name;
    size_t len;
    uint32_t id;
    if (n->joined && N(n) && m->handle == KIN_HANDLE_NAME &&
        kin__name_read(m->body, m->len, &id, &name, &len) == KIN_OK && len &&
        len <= NAME_MAX_LEN && kin__u32map_has(&n->routes, id))
        put(n, id, name, len);
}

void
kin__names_relinked(kin_node *n)
{
    struct kin__names *ns = N(n);
    uint32_t id;
    void *val;
    for (size_t it = 0; ns && kin__u32map_next(&ns->ids, &it, &id, &val);) {
        entry *e = val;
        if (kin__u32map_has(&n->routes, id))
            send_name(n, id, e->name, strlen(e->name));
    }
}

uint32_t
kin__names_find(kin_node *n, const char *name)
{
    if (n->has_parent || !N(n))
        return KIN_NO_CTX;
    return newest(N(n), name);
}

void
kin__names_gone(kin_node *n, const uint32_t *ids, size_t count)
{
    struct kin__names *ns = N(n);
    if (!ns || (n->has_parent && !n->joined))
        return;
    for (size_t i = 0; i < count; i++)
        free(kin__u32map_del(&ns->ids, ids[i]));
}

kin_err
kin_node_lookup(kin_node *n, const char *name, uint32_t *id, int timeout_ms)
{
    if (!n || !name || !id || !*name || strlen(name) > NAME_MAX_LEN)
        return -EINVAL;
    kin_receiver *r;
    kin_err e = kin_receiver_new(&r, n, 0, KIN_POLICY_ANY, KIN_NO_CTX);
    if (e)
        return e;
    kin_buf b = {0};
    kin_msg *m = NULL;
    e = kin_pack(&b, "sI", name,
                 (int64_t)(timeout_ms < 0 ? INT32_MAX : timeout_ms));
    if (!e)
        e = kin_msg_new_copy(&m, b.data, b.len);
    kin_buf_release(&b);
    if (!e) {
        m->dst = KIN_MASTER_ID;
        m->src = m->auth = n->id;
        m->handle = KIN_HANDLE_LOOKUP;
        m->reply_to = kin_receiver_handle(r);
        /* Through the broker even at the master: the table is its. */
        e = kin__node_send_raw(n, &m);
    }
    kin_msg_destroy(&m);
    kin_msg *reply = NULL;
    if (!e)
        /* The master answers by the deadline; the margin is the trip's. */
        e = kin_receiver_get(r, timeout_ms < 0 ? timeout_ms : timeout_ms + 5000,
                             &reply);
    kin_receiver_destroy(&r);
    if (!e && kin_msg_unpack(reply, "u", id))
        e = KIN_EBADMSG;
    kin_msg_destroy(&reply);
    return e;
}

kin_err
kin__names_start(kin_node *n)
{
    struct kin__names *ns = calloc(1, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    kin__u32map_init(&ns->ids);
    n->names = ns;
    if (!n->has_parent)
        put(n, n->id, n->name, strlen(n->name));
    kin__handler h = {.handle = KIN_HANDLE_NAME,
                      .policy = KIN_POLICY_ANY,
                      .respondent = KIN_NO_CTX,
                      .fn = on_name};
    kin_err e = kin__handles_add(n, &h, NULL);
    h.handle = KIN_HANDLE_LOOKUP;
    h.fn = on_lookup;
    return e ? e : kin__handles_add(n, &h, NULL);
}

void
kin__names_free(kin_node *n)
{
    struct kin__names *ns = N(n);
    if (!ns)
        return;
    void *val;
    for (size_t it = 0; kin__u32map_next(&ns->ids, &it, NULL, &val);)
        free(val);
    kin__u32map_fini(&ns->ids);
    for (int i = 0; i < ns->nwaiters; i++)
        kin_msg_destroy(&ns->waiters[i].req);
    free(ns);
    n->names = NULL;
}
