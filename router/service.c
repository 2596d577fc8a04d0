/* The service table and the resolver. Each context keeps the providers of
 * its subtree (SVC_ADD / SVC_DEL / SVC_HOLD travel up a hop at a time), and
 * resolves the service calls it can: it picks a provider, forwards the call
 * under a handle of its own, relays the reply, and retries or fails the
 * call when the provider goes away. Everything here runs on the broker
 * thread, except the provider-side counters (atomics) and the waits of
 * kin_service_drain and kin_service_list (under s->mu). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log_internal.h"
#include <stdarg.h>

#include "core/buf.h"
#include "core/pack_internal.h"
#include "core/sync.h"
#include "core/task.h"
#include "router/call_impl.h"
#include "router/node_impl.h"
#include "router/service.h"

#define LINK(id) ((void *)(uintptr_t)((id) + 1u))
#define UNLINK(p) ((uint32_t)((uintptr_t)(p)-1u))
#define NO_PROV UINT32_MAX
#define SWEEP_NS 20000000u
/* Ended calls kept for reuse, each with its reply handle still
 * registered: a call then costs no allocation and no handle table write. */
#define POOL_MAX 1024

typedef struct prov {
    uint32_t ctx, via, hops;
    int bound, outstanding;
    uint64_t served, errors, retried;
    uint32_t lat[KIN_SERVICE_LAT_BUCKETS];
} prov;

typedef struct hold {
    uint32_t origin, via;
    int count;
} hold;

struct svc;

/* A call at this resolver: queued, or running at `provider`. */
typedef struct pending {
    struct pending *next;          /* in its service's queue, or in the pool */
    struct pending *iprev, *inext; /* in the in-flight list while running */
    struct svc *s;
    kin_msg *req;    /* the SVC_CALL as it came (src, reply_to: the caller) */
    size_t args_off; /* where the arguments start in req's body */
    char fn[64];
    uint32_t provider; /* NO_PROV while queued */
    /* The handle its reply comes back to (0: none yet). It outlives the
     * call in the pool; an attempt that ends without its reply (provider
     * gone, deadline) retires it, so a late reply finds no handle. */
    uint32_t proxy;
    uint64_t deadline; /* monotonic ns; 0: none */
    uint64_t sent_ns;  /* when it went to its provider */
    int attempts;
    bool idempotent;
} pending;

/* A service as this context knows it (broker thread). */
typedef struct svc {
    char name[KIN_SERVICE_NAME_MAX + 1];
    prov *provs;
    int nprov, cap;
    hold *holds;
    int nholds, hcap;
    int own_hold; /* this context's supervisors' restarting count */
    pending *qhead, *qtail;
    int queued;
    uint64_t retried, failed, resolved;
} svc;

/* This context's own offer (any thread, under mu). */
typedef struct offer {
    char name[KIN_SERVICE_NAME_MAX + 1];
    kin_service_policy policy;
    int bound;
    bool withdrawn;
    int running;
} offer;

struct kin__services {
    /* broker */
    svc **items;
    int len, cap;
    pending *inflight; /* running at a provider (iprev/inext) */
    pending *pool;     /* ended, for reuse (next) */
    int npool;
    uint64_t next_sweep;
    uint64_t rng;
    uint64_t bad; /* offers and calls dropped as malformed */
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    offer *offers;
    int noffers, ocap;
};

static _Thread_local uint64_t call_deadline;

uint64_t
kin__call_deadline(void)
{
    return call_deadline;
}

void
kin__call_deadline_set(uint64_t ns)
{
    call_deadline = ns;
}

bool
kin__service_name_ok(const char *name, size_t len)
{
    if (!name || !len || len > KIN_SERVICE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static struct kin__services *
S(kin_node *n)
{
    return n->svc;
}

/* --- the table -------------------------------------------------------------
 */

static svc *
find(kin_node *n, const char *name, size_t len)
{
    struct kin__services *ss = S(n);
    for (int i = 0; i < ss->len; i++)
        if (strlen(ss->items[i]->name) == len &&
            !memcmp(ss->items[i]->name, name, len))
            return ss->items[i];
    return NULL;
}

static svc *
find_or_add(kin_node *n, const char *name, size_t len)
{
    svc *s = find(n, name, len);
    if (s)
        return s;
    struct kin__services *ss = S(n);
    if (ss->len == ss->cap) {
        int cap = ss->cap ? ss->cap * 2 : 8;
        svc **items = realloc(ss->items, (size_t)cap * sizeof *items);
        if (!items)
            return NULL;
        ss->items = items;
        ss->cap = cap;
    }
    if (!(s = calloc(1, sizeof *s)))
        return NULL;
    memcpy(s->name, name, len);
    ss->items[ss->len++] = s;
    return s;
}

static prov *
find_prov(svc *s, uint32_t ctx)
{
    for (int i = 0; i < s->nprov; i++)
        if (s->provs[i].ctx == ctx)
            return &s->provs[i];
    return NULL;
}

static int
holds_of(const svc *s)
{
    int sum = s->own_hold;
    for (int i = 0; i < s->nholds; i++)
        sum += s->holds[i].count;
    return sum;
}

/* --- sending ---------------------------------------------------------------
 */

/* A body of msgpack objects packed with picture, sent to the parent. */
static void
send_up(kin_node *n, uint32_t handle, const char *picture, ...)
{
    if (!n->up || n->parent_lost || n->is_operator)
        return;
    kin_buf b = {0};
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vpack(&b, picture, ap);
    va_end(ap);
    kin_msg *m = NULL;
    if (!e && kin_msg_new_copy(&m, b.data, b.len) == KIN_OK) {
        m->dst = n->parent_id;
        m->handle = handle;
        kin__reply_send(n, m);
    }
    kin_buf_release(&b);
}

static void
announce_add(kin_node *n, svc *s, const prov *p)
{
    send_up(n, KIN_HANDLE_SVC_ADD, "suuu", s->name, p->ctx, p->hops,
            (uint32_t)p->bound);
}

static void
announce_hold(kin_node *n, svc *s)
{
    send_up(n, KIN_HANDLE_SVC_HOLD, "suu", s->name, n->id,
            (uint32_t)holds_of(s));
}

/* --- the resolver ----------------------------------------------------------
 */

static void pump(kin_node *n, svc *s);
static void dispatch(kin_node *n, pending *p);

/* An entry for a new call: from the pool, or a new one (NULL: no memory). */
static pending *
get_pending(struct kin__services *ss)
{
    pending *p = ss->pool;
    if (!p)
        return calloc(1, sizeof *p);
    ss->pool = p->next;
    ss->npool--;
    uint32_t proxy = p->proxy;
    memset(p, 0, sizeof *p);
    p->proxy = proxy;
    return p;
}

/* The call's reply handle can no longer be trusted to mean this call. */
static void
retire_proxy(kin_node *n, pending *p)
{
    if (p->proxy)
        kin__handles_remove(n, p->proxy);
    p->proxy = 0;
}

/* p's call has ended: back to the pool, or freed with its handle. */
static void
put_pending(kin_node *n, pending *p)
{
    struct kin__services *ss = S(n);
    kin_msg_destroy(&p->req);
    if (ss->npool < POOL_MAX) {
        p->next = ss->pool;
        ss->pool = p;
        ss->npool++;
        return;
    }
    retire_proxy(n, p);
    free(p);
}

/* Answers the caller with a dead message and forgets p. */
static void
fail(kin_node *n, pending *p, kin_err code, const char *why)
{
    p->s->failed++;
    kin_msg *req = p->req;
    p->req = NULL;
    kin__reply_dead(n, req, code, why);
    put_pending(n, p);
}

static uint64_t
next_rand(struct kin__services *ss)
{
    ss->rng ^= ss->rng << 13;
    ss->rng ^= ss->rng >> 7;
    ss->rng ^= ss->rng << 17;
    return ss->rng;
}

/* The provider to send to: among those below their bound and nearest, the
 * less loaded of two picked at random. NULL when none has room. */
static prov *
pick(kin_node *n, svc *s)
{
    uint32_t near = UINT32_MAX;
    int room = 0;
    for (int i = 0; i < s->nprov; i++) {
        prov *p = &s->provs[i];
        if (p->outstanding >= p->bound)
            continue;
        if (p->hops < near) {
            near = p->hops;
            room = 0;
        }
        if (p->hops == near)
            room++;
    }
    if (!room)
        return NULL;
    int a = (int)(next_rand(S(n)) % (uint64_t)room);
    int b = room > 1 ? (int)(next_rand(S(n)) % (uint64_t)room) : a;
    prov *pa = NULL, *pb = NULL;
    for (int i = 0, k = 0; i < s->nprov; i++) {
        prov *p = &s->provs[i];
        if (p->outstanding >= p->bound || p->hops != near)
            continue;
        if (k == a)
            pa = p;
        if (k == b)
            pb = p;
        k++;
    }
    return pb->outstanding < pa->outstanding ? pb : pa;
}

static void on_reply(kin_node *n, kin_msg *m, void *arg);

/* The latency bucket of a round trip of ns (see KIN_SERVICE_LAT_BUCKETS):
 * four per power of two of microseconds. */
static int
lat_bucket(uint64_t ns)
{
    uint64_t us = ns / 1000u;
    if (!us)
        return 0;
    int k = 63 - __builtin_clzll(us);
    int j = (int)((k >= 2 ? us >> (k - 2) : us << (2 - k)) & 3u);
    int b = 1 + 4 * k + j;
    return b < KIN_SERVICE_LAT_BUCKETS ? b : KIN_SERVICE_LAT_BUCKETS - 1;
}

double
kin_service_latency_us(const uint32_t *latency, double q)
{
    uint64_t total = 0, seen = 0;
    for (int b = 0; latency && b < KIN_SERVICE_LAT_BUCKETS; b++)
        total += latency[b];
    if (!total || q <= 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total + 0.999999);
    if (want > total)
        want = total;
    for (int b = 0; b < KIN_SERVICE_LAT_BUCKETS; b++) {
        seen += latency[b];
        if (seen < want)
            continue;
        if (!b)
            return 1;
        int k = (b - 1) / 4, j = (b - 1) % 4;
        return (double)(1ull << k) * (1.0 + (j + 1) / 4.0);
    }
    return 0;
}

/* Sends p's request to provider v, under a reply handle of its own. */
static bool
send_to(kin_node *n, pending *p, prov *v)
{
    int64_t left = -1;
    if (p->deadline) {
        uint64_t now = kin__now_ns();
        left =
            p->deadline > now ? (int64_t)((p->deadline - now) / 1000000u) : 0;
    }
    /* The header in caller storage, then one message of header + args. */
    char head[96];
    kin_buf b;
    kin__buf_init_fixed(&b, head, sizeof head);
    const kin_msg *req = p->req;
    size_t args = req->len > p->args_off ? req->len - p->args_off : 0;
    kin_err e = kin_pack(&b, "suI", p->fn, 0u, left);
    kin_msg *m = NULL;
    if (!e)
        e = kin_msg_new(&m, b.len + args);
    if (!e) {
        memcpy(m->body, b.data, b.len);
        if (args)
            memcpy(m->body + b.len, req->body + p->args_off, args);
    }
    kin_buf_release(&b);
    kin__handler h = {.policy = KIN_POLICY_ANY,
                      .respondent = KIN_NO_CTX,
                      .fn = on_reply,
                      .arg = p};
    if (!e && !p->proxy)
        e = kin__handles_add(n, &h, &p->proxy);
    if (e) {
        kin_msg_destroy(&m);
        return false;
    }
    struct kin__services *ss = S(n);
    p->iprev = NULL;
    p->inext = ss->inflight;
    if (ss->inflight)
        ss->inflight->iprev = p;
    ss->inflight = p;
    p->provider = v->ctx;
    p->sent_ns = kin__now_ns();
    p->attempts++;
    v->outstanding++;
    m->dst = v->ctx;
    m->src = n->id;
    m->auth = req->auth; /* the caller's authority, for the policy */
    m->handle = KIN_HANDLE_SVC_RUN;
    m->reply_to = p->proxy;
    kin__route(n, m);
    return true;
}

/* p is no longer running at its provider (reply, gone, or timed out). */
static prov *
release(kin_node *n, pending *p)
{
    struct kin__services *ss = S(n);
    if (p->iprev)
        p->iprev->inext = p->inext;
    else
        ss->inflight = p->inext;
    if (p->inext)
        p->inext->iprev = p->iprev;
    p->iprev = p->inext = NULL;
    prov *v = find_prov(p->s, p->provider);
    if (v && v->outstanding > 0)
        v->outstanding--;
    p->provider = NO_PROV;
    return v;
}

static void
enqueue(pending *p)
{
    svc *s = p->s;
    p->next = NULL;
    if (s->qtail)
        s->qtail->next = p;
    else
        s->qhead = p;
    s->qtail = p;
    s->queued++;
}

static bool
expired(const pending *p)
{
    return p->deadline && kin__now_ns() >= p->deadline;
}

/* Sends p on, queues it, or fails it. */
static void
dispatch(kin_node *n, pending *p)
{
    svc *s = p->s;
    char why[128];
    if (expired(p)) {
        fail(n, p, KIN_ETIMEOUT, "deadline passed at the resolver");
        return;
    }
    prov *v = pick(n, s);
    if (v && send_to(n, p, v))
        return;
    if (v) {
        fail(n, p, -ENOMEM, "out of memory at the resolver");
        return;
    }
    if (!s->nprov && !holds_of(s)) {
        snprintf(why, sizeof why, "no provider of '%s' (resolved at %u)",
                 s->name, n->id);
        fail(n, p, KIN_ENOPROVIDER, why);
        return;
    }
    if (s->queued >= KIN_SERVICE_QUEUE_MAX) {
        snprintf(why, sizeof why,
                 "every provider of '%s' busy and %d calls queued at %u",
                 s->name, s->queued, n->id);
        fail(n, p, KIN_EBUSY, why);
        return;
    }
    enqueue(p);
}

/* Sends queued calls while a provider has room; fails them when no
 * provider is left and none is restarting. */
static void
pump(kin_node *n, svc *s)
{
    while (s->qhead) {
        bool none = !s->nprov && !holds_of(s);
        if (!none && !pick(n, s))
            return;
        pending *p = s->qhead;
        s->qhead = p->next;
        if (!s->qhead)
            s->qtail = NULL;
        s->queued--;
        dispatch(n, p);
    }
}

/* p's provider went away during the call. */
static void
provider_lost(kin_node *n, pending *p, prov *v)
{
    if (p->idempotent && p->attempts <= KIN_SERVICE_RETRIES && !expired(p)) {
        p->s->retried++;
        if (v)
            v->retried++;
        dispatch(n, p);
        return;
    }
    char why[128];
    snprintf(why, sizeof why, "provider %u of '%s' went away during the call%s",
             p->provider, p->s->name,
             p->idempotent ? " (retries used up)" : "");
    fail(n, p, KIN_EPEERGONE, why);
}

/* The provider's reply, or a dead message about the call. */
static void
on_reply(kin_node *n, kin_msg *m, void *arg)
{
    pending *p = arg;
    if (p->provider == NO_PROV || m->handle != p->proxy) {
        kin_msg_destroy(&m);
        return;
    }
    uint32_t was = p->provider;
    prov *v = release(n, p);
    svc *s = p->s;
    kin_err reason = KIN_OK;
    if ((m->flags & KIN_MSG_DEAD) &&
        kin_msg_dead_reason(m, &reason, NULL, 0) == KIN_OK &&
        (reason == KIN_ENOPROVIDER || reason == KIN_EPEERGONE ||
         reason == KIN_ENOROUTE)) {
        kin_msg_destroy(&m);
        if (reason == KIN_ENOPROVIDER) {
            /* Withdrawn there before it heard: nothing ran. */
            dispatch(n, p);
        } else {
            p->provider = was;
            retire_proxy(n, p);
            provider_lost(n, p, v);
        }
        pump(n, s);
        return;
    }
    if (v) {
        v->served++;
        if (m->flags & (KIN_MSG_ERROR | KIN_MSG_DEAD))
            v->errors++;
        v->lat[lat_bucket(kin__now_ns() - p->sent_ns)]++;
    }
    m->dst = p->req->src;
    m->handle = p->req->reply_to;
    m->reply_to = 0;
    kin__reply_send(n, m);
    put_pending(n, p);
    pump(n, s);
}

/* Fails the calls whose deadline passed (at most every SWEEP_NS): the
 * caller has given up on them; a running one is cancelled. */
static void
sweep(kin_node *n)
{
    struct kin__services *ss = S(n);
    uint64_t now = kin__now_ns();
    if (now < ss->next_sweep)
        return;
    ss->next_sweep = now + SWEEP_NS;
    pending *late[64];
    int count = 0;
    for (pending *p = ss->inflight; p && count < 64; p = p->inext)
        if (expired(p))
            late[count++] = p;
    for (int i = 0; i < count; i++) {
        pending *p = late[i];
        kin_buf b = {0};
        uint32_t at = p->provider;
        if (kin_pack(&b, "uu", p->proxy, 0u) == KIN_OK) {
            kin_msg *c = NULL;
            if (kin_msg_new_copy(&c, b.data, b.len) == KIN_OK) {
                c->dst = at;
                c->handle = KIN_HANDLE_CANCEL;
                kin__reply_send(n, c);
            }
        }
        kin_buf_release(&b);
        svc *s = p->s;
        release(n, p);
        retire_proxy(n, p); /* its reply may still come */
        fail(n, p, KIN_ETIMEOUT, "deadline passed while the provider ran it");
        pump(n, s);
    }
    for (int i = 0; i < ss->len; i++) {
        svc *s = ss->items[i];
        pending **pp = &s->qhead, *prev = NULL;
        while (*pp) {
            pending *p = *pp;
            if (!expired(p)) {
                prev = p;
                pp = &p->next;
                continue;
            }
            *pp = p->next;
            if (s->qtail == p)
                s->qtail = prev;
            s->queued--;
            fail(n, p, KIN_ETIMEOUT, "deadline passed in the queue");
        }
    }
}

/* SVC_CALL: body [fn, task, remaining ms (-1: none), args...]. Resolved
 * here when this context knows a provider (or one restarting), else sent
 * up; the master with none answers KIN_ENOPROVIDER. */
static void
on_svc_call(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    sweep(n);
    kin_reader r;
    kin_reader_init(&r, m->body, m->len);
    const char *fn;
    size_t fn_len;
    uint32_t task;
    int64_t left;
    kin_err e = kin_unpack(&r, "SuI", &fn, &fn_len, &task, &left);
    size_t args_off = r.off;
    kin_reader_release(&r);
    const char *dot = e ? NULL : memchr(fn, '.', fn_len);
    if (!dot || fn_len >= 64 || !kin__service_name_ok(fn, (size_t)(dot - fn))) {
        S(n)->bad++;
        kin__reply_dead(n, m, KIN_EBADMSG, "malformed service call");
        return;
    }
    svc *s = find(n, fn, (size_t)(dot - fn));
    if (!s || (!s->nprov && !holds_of(s))) {
        if (n->up && !n->parent_lost) {
            m->dst = n->parent_id;
            kin__route(n, m);
            return;
        }
        char why[128];
        snprintf(why, sizeof why, "no provider of '%.*s' in the tree",
                 (int)(dot - fn), fn);
        if (s)
            s->failed++;
        kin__reply_dead(n, m, KIN_ENOPROVIDER, why);
        return;
    }
    pending *p = get_pending(S(n));
    if (!p) {
        kin__reply_dead(n, m, -ENOMEM, "out of memory at the resolver");
        return;
    }
    p->s = s;
    p->req = m;
    p->args_off = args_off;
    memcpy(p->fn, fn, fn_len);
    p->provider = NO_PROV;
    p->deadline = left >= 0 ? kin__now_ns() + (uint64_t)left * 1000000u : 0;
    p->idempotent = kin__export_idempotent(p->fn);
    s->resolved++;
    dispatch(n, p);
}

/* --- offers from below -----------------------------------------------------
 */

/* Whether ctx is m's sender (a child) or lives behind it. */
static bool
from_subtree(kin_node *n, const kin_msg *m, uint32_t ctx)
{
    void *via = kin__u32map_get(&n->routes, ctx);
    return kin__u32map_has(&n->children, m->src) && via &&
           UNLINK(via) == m->src;
}

static void
bad_offer(kin_node *n, kin_msg *m)
{
    S(n)->bad++;
    atomic_fetch_add(&n->stats.malformed, 1);
    kin_msg_destroy(&m);
}

static kin_err
add_prov(svc *s, uint32_t ctx, uint32_t via, uint32_t hops, int bound,
         prov **out)
{
    prov *v = find_prov(s, ctx);
    if (!v) {
        if (s->nprov == s->cap) {
            int cap = s->cap ? s->cap * 2 : 4;
            prov *items = realloc(s->provs, (size_t)cap * sizeof *items);
            if (!items)
                return -ENOMEM;
            s->provs = items;
            s->cap = cap;
        }
        v = &s->provs[s->nprov++];
        memset(v, 0, sizeof *v);
        v->ctx = ctx;
    }
    v->via = via;
    v->hops = hops;
    v->bound = bound;
    *out = v;
    return KIN_OK;
}

/* Adds a provider and tells the parent; queued calls may go now. */
static void
provider_add(kin_node *n, svc *s, uint32_t ctx, uint32_t via, uint32_t hops,
             int bound)
{
    prov *v;
    if (add_prov(s, ctx, via, hops, bound, &v))
        return;
    announce_add(n, s, v);
    pump(n, s);
}

static void
provider_del(kin_node *n, svc *s, uint32_t ctx)
{
    prov *v = find_prov(s, ctx);
    if (!v)
        return;
    /* Calls running there finish; their replies find no provider entry. */
    *v = s->provs[--s->nprov];
    send_up(n, KIN_HANDLE_SVC_DEL, "su", s->name, ctx);
    pump(n, s);
}

/* SVC_ADD [service, provider, hops from the sender, bound]. */
static void
on_svc_add(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    const char *name;
    size_t len;
    uint32_t ctx, hops, bound;
    if (kin_unpack_buf(m->body, m->len, "Suuu", &name, &len, &ctx, &hops,
                       &bound) ||
        !kin__service_name_ok(name, len) || hops >= KIN_MAX_DEPTH || !bound ||
        bound > 65536 || !from_subtree(n, m, ctx)) {
        bad_offer(n, m);
        return;
    }
    svc *s = find_or_add(n, name, len);
    if (s)
        provider_add(n, s, ctx, m->src, hops + 1, (int)bound);
    kin_msg_destroy(&m);
}

/* SVC_DEL [service, provider]. */
static void
on_svc_del(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    const char *name;
    size_t len;
    uint32_t ctx;
    if (kin_unpack_buf(m->body, m->len, "Su", &name, &len, &ctx) ||
        !kin__service_name_ok(name, len) || !from_subtree(n, m, ctx)) {
        bad_offer(n, m);
        return;
    }
    svc *s = find(n, name, len);
    if (s)
        provider_del(n, s, ctx);
    kin_msg_destroy(&m);
}

static void
set_hold(svc *s, uint32_t origin, uint32_t via, int count)
{
    for (int i = 0; i < s->nholds; i++) {
        if (s->holds[i].origin == origin) {
            if (count)
                s->holds[i].count = count;
            else
                s->holds[i] = s->holds[--s->nholds];
            return;
        }
    }
    if (!count)
        return;
    if (s->nholds == s->hcap) {
        int cap = s->hcap ? s->hcap * 2 : 4;
        hold *items = realloc(s->holds, (size_t)cap * sizeof *items);
        if (!items)
            return;
        s->holds = items;
        s->hcap = cap;
    }
    s->holds[s->nholds++] = (hold){origin, via, count};
}

/* SVC_HOLD [service, origin, providers restarting there]. */
static void
on_svc_hold(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    const char *name;
    size_t len;
    uint32_t origin, count;
    if (kin_unpack_buf(m->body, m->len, "Suu", &name, &len, &origin, &count) ||
        !kin__service_name_ok(name, len) || count > 65536 ||
        !from_subtree(n, m, origin)) {
        bad_offer(n, m);
        return;
    }
    svc *s = find_or_add(n, name, len);
    if (s) {
        set_hold(s, origin, m->src, (int)count);
        send_up(n, KIN_HANDLE_SVC_HOLD, "suu", s->name, origin, count);
        pump(n, s);
    }
    kin_msg_destroy(&m);
}

void
kin__services_gone(kin_node *n, const uint32_t *ids, size_t count)
{
    struct kin__services *ss = S(n);
    if (!ss || !count)
        return;
    for (int i = 0; i < ss->len; i++) {
        svc *s = ss->items[i];
        for (int k = 0; k < s->nprov;) {
            bool gone = false;
            for (size_t j = 0; j < count && !gone; j++)
                gone = s->provs[k].ctx == ids[j];
            if (gone)
                s->provs[k] = s->provs[--s->nprov];
            else
                k++;
        }
        for (int k = 0; k < s->nholds;) {
            bool gone = false;
            for (size_t j = 0; j < count && !gone; j++)
                gone = s->holds[k].origin == ids[j];
            if (gone)
                s->holds[k] = s->holds[--s->nholds];
            else
                k++;
        }
    }
    /* The calls running there: retried or failed. */
    size_t cap = 64, lost = 0;
    pending **list = malloc(cap * sizeof *list);
    for (pending *p = ss->inflight; list && p; p = p->inext) {
        for (size_t j = 0; j < count; j++) {
            if (p->provider != ids[j])
                continue;
            if (lost == cap) {
                pending **more = realloc(list, 2 * cap * sizeof *list);
                if (!more)
                    break;
                list = more;
                cap *= 2;
            }
            list[lost++] = p;
            break;
        }
    }
    for (size_t i = 0; i < lost; i++) {
        pending *p = list[i];
        uint32_t was = p->provider;
        release(n, p);
        retire_proxy(n, p);
        p->provider = was;
        provider_lost(n, p, NULL);
    }
    free(list);
    for (int i = 0; i < ss->len; i++)
        pump(n, ss->items[i]);
}

/* --- this context's own offers ---------------------------------------------
 */

static offer *
find_offer(struct kin__services *ss, const char *name, size_t len)
{
    for (int i = 0; i < ss->noffers; i++)
        if (strlen(ss->offers[i].name) == len &&
            !memcmp(ss->offers[i].name, name, len))
            return &ss->offers[i];
    return NULL;
}

/* SVC_RUN [fn, 0, remaining ms, args...] from a resolver: admitted when
 * this context has not withdrawn the service and its policy lets the
 * caller (auth) in; then it runs as a call. */
static void
on_svc_run(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    struct kin__services *ss = S(n);
    const char *fn;
    size_t fn_len;
    if (kin_unpack_buf(m->body, m->len, "S", &fn, &fn_len) ||
        !memchr(fn, '.', fn_len)) {
        ss->bad++;
        kin__reply_dead(n, m, KIN_EBADMSG, "malformed service call");
        return;
    }
    size_t len = (size_t)((const char *)memchr(fn, '.', fn_len) - fn);
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, fn, len);
    bool withdrawn = o && o->withdrawn;
    kin_service_policy policy = o ? o->policy : KIN_SERVICE_TREE;
    bool allowed = policy == KIN_SERVICE_TREE ||
                   (policy == KIN_SERVICE_PARENT &&
                    kin__is_ancestor_or_self(n, m->auth)) ||
                   (policy == KIN_SERVICE_CHILD && kin__is_child(n, m->auth));
    if (o && !withdrawn && allowed)
        o->running++;
    pthread_mutex_unlock(&ss->mu);
    char why[128];
    if (withdrawn) {
        snprintf(why, sizeof why, "'%.*s' withdrawn at context %u", (int)len,
                 fn, n->id);
        kin__reply_dead(n, m, KIN_ENOPROVIDER, why);
        return;
    }
    if (!allowed) {
        snprintf(why, sizeof why,
                 "context %u may not call '%.*s' at %u (service policy)",
                 m->auth, (int)len, fn, n->id);
        kin__reply_dead(n, m, KIN_EREFUSED, why);
        return;
    }
    kin__calls_dispatch(n, m);
}

void
kin__service_run_done(kin_node *n, const char *fn, size_t fn_len)
{
    struct kin__services *ss = S(n);
    const char *dot = memchr(fn, '.', fn_len);
    if (!ss || !dot)
        return;
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, fn, (size_t)(dot - fn));
    if (o && o->running > 0 && --o->running == 0)
        pthread_cond_broadcast(&ss->cond);
    pthread_mutex_unlock(&ss->mu);
}

/* A job for the broker thread, waited for by the thread that made it. */
typedef struct job {
    kin_node *n;
    char name[KIN_SERVICE_NAME_MAX + 1];
    int bound, delta;
    bool add;
    uint32_t ctx;
    const char *const *names;
    kin_service_info *out;
    kin_service_provider *pv;
    int max, prov_max, result;
    bool done;
} job;

static void
job_done(job *j)
{
    struct kin__services *ss = S(j->n);
    pthread_mutex_lock(&ss->mu);
    j->done = true;
    pthread_cond_broadcast(&ss->cond);
    pthread_mutex_unlock(&ss->mu);
}

static kin_err
run_job(kin_node *n, void (*fn)(void *, void *), job *j)
{
    if (kin__broker_on_thread(n->broker))
        return -EDEADLK;
    j->n = n;
    kin_err e = kin__broker_defer(n->broker, fn, j, NULL);
    if (e)
        return e;
    struct kin__services *ss = S(n);
    pthread_mutex_lock(&ss->mu);
    while (!j->done)
        pthread_cond_wait(&ss->cond, &ss->mu);
    pthread_mutex_unlock(&ss->mu);
    return KIN_OK;
}

/* Broker: this context's table gains or loses itself as a provider. */
static void
own_job(void *arg, void *unused)
{
    (void)unused;
    job *j = arg;
    kin_node *n = j->n;
    svc *s = find_or_add(n, j->name, strlen(j->name));
    if (s && j->add)
        provider_add(n, s, n->id, n->id, 0, j->bound);
    else if (s)
        provider_del(n, s, n->id);
    job_done(j);
}

kin_err
kin_service_offer(kin_node *n, const char *name, const kin_service_opts *opts)
{
    if (!n || !name || !kin__service_name_ok(name, strlen(name)) ||
        n->is_operator ||
        (opts &&
         ((unsigned)opts->policy > KIN_SERVICE_CHILD || opts->bound < 0)))
        return -EINVAL;
    struct kin__services *ss = S(n);
    int bound = opts && opts->bound ? opts->bound : kin__calls_workers(n);
    if (bound < 1)
        bound = 1;
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, name, strlen(name));
    if (!o && ss->noffers == ss->ocap) {
        int cap = ss->ocap ? ss->ocap * 2 : 4;
        offer *items = realloc(ss->offers, (size_t)cap * sizeof *items);
        if (items) {
            ss->offers = items;
            ss->ocap = cap;
        }
    }
    if (!o && ss->noffers < ss->ocap) {
        o = &ss->offers[ss->noffers++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", name);
    }
    if (o) {
        o->policy = opts ? opts->policy : KIN_SERVICE_TREE;
        o->bound = bound;
        o->withdrawn = false;
    }
    pthread_mutex_unlock(&ss->mu);
    if (!o)
        return -ENOMEM;
    job j = {.add = true, .bound = bound};
    snprintf(j.name, sizeof j.name, "%s", name);
    return run_job(n, own_job, &j);
}

kin_err
kin_service_withdraw(kin_node *n, const char *name)
{
    if (!n || !name || !kin__service_name_ok(name, strlen(name)))
        return -EINVAL;
    struct kin__services *ss = S(n);
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, name, strlen(name));
    bool had = o && !o->withdrawn;
    if (o)
        o->withdrawn = true;
    pthread_mutex_unlock(&ss->mu);
    if (!had)
        return -ENOENT;
    job j = {.add = false};
    snprintf(j.name, sizeof j.name, "%s", name);
    return run_job(n, own_job, &j);
}

kin_err
kin_service_drain(kin_node *n, const char *name, int timeout_ms)
{
    kin_err e = kin_service_withdraw(n, name);
    if (e)
        return e;
    struct kin__services *ss = S(n);
    struct timespec ts;
    const struct timespec *dl = kin__deadline_or_forever(&ts, timeout_ms);
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, name, strlen(name));
    while (o && o->running > 0 && e == KIN_OK) {
        if (kin__cond_wait_dl(&ss->cond, &ss->mu, dl) && o->running > 0)
            e = KIN_ETIMEOUT;
        o = find_offer(ss, name, strlen(name));
    }
    pthread_mutex_unlock(&ss->mu);
    return e;
}

/* Broker: a supervisor's child offers (on its behalf) or holds. */
static void
for_job(void *arg, void *unused)
{
    (void)unused;
    job *j = arg;
    kin_node *n = j->n;
    for (size_t i = 0; j->names && j->names[i]; i++) {
        size_t len = strlen(j->names[i]);
        if (!kin__service_name_ok(j->names[i], len))
            continue;
        svc *s = find_or_add(n, j->names[i], len);
        if (!s)
            continue;
        if (j->delta) {
            s->own_hold += j->delta;
            if (s->own_hold < 0)
                s->own_hold = 0;
            announce_hold(n, s);
        } else if (kin__u32map_has(&n->routes, j->ctx)) {
            provider_add(n, s, j->ctx, j->ctx, 1, j->bound);
        }
        pump(n, s);
    }
    job_done(j);
}

void
kin__service_offer_for(kin_node *n, uint32_t child, const char *const *names,
                       int bound)
{
    job j = {.ctx = child, .names = names, .bound = bound > 0 ? bound : 4};
    run_job(n, for_job, &j);
}

void
kin__service_hold(kin_node *n, const char *const *names, int delta)
{
    job j = {.names = names, .delta = delta};
    run_job(n, for_job, &j);
}

/* --- listing ---------------------------------------------------------------
 */

int
kin__services_snapshot(kin_node *n, kin_service_info *out, int max,
                       kin_service_provider *pv, int prov_max)
{
    struct kin__services *ss = S(n);
    for (int i = 0; i < ss->len && i < max; i++) {
        svc *s = ss->items[i];
        kin_service_info *o = &out[i];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", s->name);
        o->total = s->nprov;
        o->restarting = holds_of(s);
        o->queued = s->queued;
        o->retried = s->retried;
        o->failed = s->failed;
        o->resolved = s->resolved;
        for (int k = 0; pv && k < s->nprov && k < prov_max; k++) {
            prov *v = &s->provs[k];
            kin_service_provider *to =
                &pv[(size_t)i * (size_t)prov_max + (size_t)k];
            *to = (kin_service_provider){.ctx = v->ctx,
                                         .hops = v->hops,
                                         .bound = v->bound,
                                         .outstanding = v->outstanding,
                                         .served = v->served,
                                         .errors = v->errors,
                                         .retried = v->retried};
            memcpy(to->latency, v->lat, sizeof to->latency);
            o->providers = k + 1;
        }
    }
    return ss->len;
}

static void
list_job(void *arg, void *unused)
{
    (void)unused;
    job *j = arg;
    j->result =
        kin__services_snapshot(j->n, j->out, j->max, j->pv, j->prov_max);
    job_done(j);
}

int
kin_service_list(kin_node *n, kin_service_info *out, int max,
                 kin_service_provider *pv, int prov_max)
{
    job j = {.out = out, .max = max, .pv = pv, .prov_max = prov_max};
    if (run_job(n, list_job, &j))
        return 0;
    return j.result;
}

/* --- set up ----------------------------------------------------------------
 */

kin_err
kin__services_start(kin_node *n)
{
    struct kin__services *ss = calloc(1, sizeof *ss);
    if (!ss)
        return -ENOMEM;
    pthread_mutex_init(&ss->mu, NULL);
    pthread_cond_init(&ss->cond, NULL);
    ss->rng = 0x9e3779b97f4a7c15u ^ ((uint64_t)n->id << 17) ^ kin__now_ns();
    if (!ss->rng)
        ss->rng = 1;
    n->svc = ss;
    static const struct {
        uint32_t handle;
        kin_policy policy;
        kin__handle_fn fn;
    } hs[] = {
        {KIN_HANDLE_SVC_ADD, KIN_POLICY_CHILD, on_svc_add},
        {KIN_HANDLE_SVC_DEL, KIN_POLICY_CHILD, on_svc_del},
        {KIN_HANDLE_SVC_HOLD, KIN_POLICY_CHILD, on_svc_hold},
        /* Operators are refused where they attach (router.c); the
         * service's own policy is checked by its provider. */
        {KIN_HANDLE_SVC_CALL, KIN_POLICY_ANY, on_svc_call},
        {KIN_HANDLE_SVC_RUN, KIN_POLICY_ANY, on_svc_run},
    };
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) {
        kin__handler h = {.handle = hs[i].handle,
                          .policy = hs[i].policy,
                          .respondent = KIN_NO_CTX,
                          .fn = hs[i].fn};
        kin_err e = kin__handles_add(n, &h, NULL);
        if (e)
            return e;
    }
    return KIN_OK;
}

void
kin__services_free(kin_node *n)
{
    struct kin__services *ss = S(n);
    if (!ss)
        return;
    /* The broker has stopped: the handles go with the node's table. */
    while (ss->inflight) {
        pending *p = ss->inflight;
        ss->inflight = p->inext;
        kin_msg_destroy(&p->req);
        free(p);
    }
    while (ss->pool) {
        pending *p = ss->pool;
        ss->pool = p->next;
        free(p);
    }
    for (int i = 0; i < ss->len; i++) {
        svc *s = ss->items[i];
        while (s->qhead) {
            pending *p = s->qhead;
            s->qhead = p->next;
            kin_msg_destroy(&p->req);
            free(p);
        }
        free(s->provs);
        free(s->holds);
        free(s);
    }
    free(ss->items);
    free(ss->offers);
    pthread_cond_destroy(&ss->cond);
    pthread_mutex_destroy(&ss->mu);
    free(ss);
    n->svc = NULL;
}
