/* The resolver: a context resolves the service calls its table can. It
 * picks a provider, forwards the call, sees its reply, queues calls while
 * every provider is at its bound, and retries or fails a call when its
 * provider goes away or its deadline passes. Broker thread.
 *
 * A call from another context goes out under a reply handle of the
 * resolver's own (the "proxy"), whose reply the resolver relays. A call
 * from this context itself (the common case: the caller's own table knows
 * the providers) is "direct": the provider replies to the caller's
 * receiver, and kin__svc_claim, called where the router delivers, sees
 * that reply on its way and does the same bookkeeping in the same pass, so
 * neither a second message nor a second handle lookup is made. */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/pack_internal.h"
#include "router/call_impl.h"
#include "router/service_impl.h"

#define SWEEP_NS 20000000u
/* Ended calls kept for reuse, each with its reply handle still
 * registered: a call then costs no allocation and no handle table write. */
#define POOL_MAX 1024
/* Times a provider may answer that it withdrew before that counts as an
 * attempt. */
#define BOUNCES_MAX 8
/* How long a provider our router could not reach is not picked (its
 * link-down, which deletes it, normally comes first). */
#define UNREACHABLE_NS 200000000u

/* --- the resolver ----------------------------------------------------------
 */

static void dispatch(kin_node *n, pending *p, uint64_t now);

/* An entry for a new call: from the pool, or a new one (NULL: no memory). */
static pending *
get_pending(struct kin__services *ss)
{
    pending *p = ss->pool;
    if (!p) {
        if ((p = calloc(1, sizeof *p)))
            p->avoid = NO_PROV;
        return p;
    }
    ss->pool = p->next;
    ss->npool--;
    uint32_t proxy = p->proxy;
    memset(p, 0, sizeof *p);
    p->proxy = proxy;
    p->avoid = NO_PROV;
    return p;
}

/* --- the direct calls by their caller's reply handle ---------------------- */

static pending *
direct_get(struct kin__services *ss, uint32_t handle)
{
    if (!ss->ndirect)
        return NULL;
    unsigned i = handle % KIN__SVC_DSLOTS;
    if (ss->dslot[i].handle == handle)
        return ss->dslot[i].p;
    return ss->direct.len ? kin__u32map_get(&ss->direct, handle) : NULL;
}

/* Errors: KIN_EEXISTS (handle taken), -ENOMEM. */
static int
direct_put(struct kin__services *ss, uint32_t handle, pending *p)
{
    if (direct_get(ss, handle))
        return KIN_EEXISTS;
    unsigned i = handle % KIN__SVC_DSLOTS;
    if (!ss->dslot[i].handle) {
        ss->dslot[i].handle = handle;
        ss->dslot[i].p = p;
    } else if (kin__u32map_put(&ss->direct, handle, p)) {
        return -ENOMEM;
    }
    ss->ndirect++;
    return 0;
}

static void
direct_del(struct kin__services *ss, uint32_t handle)
{
    unsigned i = handle % KIN__SVC_DSLOTS;
    if (ss->dslot[i].handle == handle) {
        ss->dslot[i].handle = 0;
        ss->ndirect--;
    } else if (kin__u32map_del(&ss->direct, handle)) {
        ss->ndirect--;
    }
}

/* The call's reply handle can no longer be trusted to mean this call. */
static void
retire_proxy(kin_node *n, pending *p)
{
    if (p->proxy && !p->direct)
        kin__handles_remove(n, p->proxy);
    p->proxy = 0;
}

/* A direct call's replies no longer go through the resolver. */
static void
end_direct(kin_node *n, pending *p)
{
    if (!p->direct)
        return;
    direct_del(n->svc, p->caller_handle);
    p->direct = false;
}

/* p's call has ended: back to the pool, or freed with its handle. */
static void
put_pending(kin_node *n, pending *p)
{
    struct kin__services *ss = n->svc;
    end_direct(n, p);
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
    bool direct = p->direct;
    end_direct(n, p); /* so that the answer goes to the caller's latch */
    kin__reply_dead(n, req, code, why);
    /* A provider's reply may still come (deadline, or a provider that was
     * taken for gone): it answers nobody. */
    if (direct)
        kin__handles_seal(n, p->caller_handle);
    put_pending(n, p);
}

/* The handle the provider replies to. */
static uint32_t
reply_handle(const pending *p)
{
    return p->direct ? p->caller_handle : p->proxy;
}

static uint64_t
next_rand(struct kin__services *ss)
{
    ss->rng ^= ss->rng << 13;
    ss->rng ^= ss->rng >> 7;
    ss->rng ^= ss->rng << 17;
    return ss->rng;
}

/* Whether p may get a call now (see pick). */
static bool
usable(const svc *s, const prov *p, uint32_t avoid)
{
    return p->outstanding < p->bound && !p->refusing &&
           (p->ctx != avoid || s->nprov == 1) &&
           !(p->unreachable_until && p->unreachable_until > kin__now_ns());
}

/* The provider to send to: among those below their bound and nearest, the
 * less loaded of two picked at random; `avoid` (one our router could not
 * reach a moment ago: its link gone, not yet noticed) only when it is the
 * only one. NULL when none has room. One pass over the providers, or none
 * when they are all as near and the two picked may take it. */
static prov *
pick_any(kin_node *n, svc *s, uint32_t avoid)
{
    if (s->same_hops && s->nprov > 1) {
        uint64_t r = next_rand(n->svc);
        prov *pa = &s->provs[(r & 0xffffffffu) % (uint64_t)s->nprov];
        prov *pb = &s->provs[(r >> 32) % (uint64_t)s->nprov];
        bool ua = usable(s, pa, avoid), ub = usable(s, pb, avoid);
        if (ua && ub)
            return pb->outstanding < pa->outstanding ? pb : pa;
        if (ua || ub)
            return ua ? pa : pb;
    }
    enum { CAND = 32 };
    prov *cand[CAND];
    uint32_t near = UINT32_MAX;
    int room = 0;
    uint64_t now = 0;
    for (int i = 0; i < s->nprov; i++) {
        prov *p = &s->provs[i];
        if (p->outstanding >= p->bound || p->refusing || p->hops > near ||
            (p->ctx == avoid && s->nprov > 1))
            continue;
        if (p->unreachable_until) {
            if (!now)
                now = kin__now_ns();
            if (p->unreachable_until > now)
                continue;
        }
        if (p->hops < near) {
            near = p->hops;
            room = 0;
        }
        /* Past CAND, one of the candidates is replaced at random, so
         * that every one stays as likely (a reservoir). */
        if (room < CAND) {
            cand[room] = p;
        } else {
            uint64_t k = next_rand(n->svc) % (uint64_t)(room + 1);
            if (k < CAND)
                cand[k] = p;
        }
        room++;
    }
    if (!room)
        return NULL;
    if (room > CAND)
        room = CAND;
    uint64_t r = next_rand(n->svc);
    prov *pa = cand[(r & 0xffffffffu) % (uint64_t)room];
    prov *pb = room > 1 ? cand[(r >> 32) % (uint64_t)room] : pa;
    return pb->outstanding < pa->outstanding ? pb : pa;
}

/* Calls in a row an idle provider gets before another one takes over. */
#define WARM_RUN 16

/* pick_any, but an idle provider that got the last call gets the next one
 * (none can be less loaded than idle), up to WARM_RUN in a row: calls one
 * at a time then mostly find a process whose threads and caches are warm,
 * as a direct call does, and still go round every provider. With calls in
 * flight the random choices balance as before. */
static prov *
pick(kin_node *n, svc *s, uint32_t avoid)
{
    prov *w = s->warm_i < s->nprov ? &s->provs[s->warm_i] : NULL;
    prov *v = NULL;
    if (w && w->ctx == s->warm && !w->outstanding && s->same_hops) {
        if (s->warm_run < WARM_RUN && usable(s, w, avoid)) {
            s->warm_run++;
            return w;
        }
        /* Its run is over: another one, if any has room. */
        if (avoid == NO_PROV)
            v = pick_any(n, s, w->ctx);
    }
    if (!v && !(v = pick_any(n, s, avoid)))
        return NULL;
    if (v->ctx != s->warm)
        s->warm_run = 0;
    if (s->warm_run < WARM_RUN) /* saturates: calls in flight all along */
        s->warm_run++;
    s->warm = v->ctx;
    s->warm_i = (int)(v - s->provs);
    return v;
}

/* Whether pick would return a provider, without picking (no random draw,
 * no step in the warm run). */
static bool
has_room(const svc *s, uint32_t avoid)
{
    for (int i = 0; i < s->nprov; i++)
        if (usable(s, &s->provs[i], avoid))
            return true;
    return false;
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

/* p's attempt at provider v starts (now: the monotonic clock): in flight
 * there, counted against its bound. */
static void
enter(struct kin__services *ss, pending *p, prov *v, uint64_t now)
{
    p->iprev = NULL;
    p->inext = ss->inflight;
    if (ss->inflight)
        ss->inflight->iprev = p;
    ss->inflight = p;
    p->provider = v->ctx;
    p->sent_ns = now;
    p->attempts++;
    p->attempt = ++ss->attempts;
    v->outstanding++;
}

/* Sends p's request to provider v (now: the monotonic clock), under a
 * reply handle of its own. */
static bool
send_to(kin_node *n, pending *p, prov *v, uint64_t now)
{
    int64_t left = -1;
    if (p->deadline)
        left =
            p->deadline > now ? (int64_t)((p->deadline - now) / 1000000u) : 0;
    /* One message of header + args; the header by hand (no caller task:
     * the resolver's own call). */
    kin_msg *req = p->req;
    kin_msg *m = NULL;
    kin_err e;
    if (p->own_head) {
        /* Laid out already: the time left goes in, then one copy. */
        uint64_t be = __builtin_bswap64((uint64_t)left);
        memcpy(req->body + p->args_off - 8, &be, 8);
        e = kin_msg_new_copy(&m, req->body, req->len);
    } else {
        uint8_t head[KIN__SVC_HEAD_MAX];
        size_t hlen = kin__svc_head_put(head, p->fn, p->fn_len, 0, left);
        size_t args = req->len > p->args_off ? req->len - p->args_off : 0;
        e = kin_msg_new(&m, hlen + args);
        if (!e) {
            memcpy(m->body, head, hlen);
            if (args)
                memcpy(m->body + hlen, req->body + p->args_off, args);
        }
    }
    kin__handler h = {.policy = KIN_POLICY_ANY,
                      .respondent = KIN_NO_CTX,
                      .fn = on_reply,
                      .arg = p};
    if (!e && !p->direct && !p->proxy)
        e = kin__handles_add(n, &h, &p->proxy);
    if (e) {
        kin_msg_destroy(&m);
        return false;
    }
    struct kin__services *ss = n->svc;
    enter(ss, p, v, now);
    m->dst = v->ctx;
    m->src = n->id;
    m->auth = req->auth; /* the caller's authority, for the policy */
    m->handle = KIN_HANDLE_SVC_RUN;
    m->reply_to = reply_handle(p);
    /* A provider whose link is gone before the router has noticed bounces
     * the call back at once (outcome, inside kin__route): see there. */
    ss->routing = p;
    kin__route(n, m);
    ss->routing = NULL;
    return true;
}

/* p is no longer running at its provider (reply, gone, or timed out). */
static prov *
release(kin_node *n, pending *p)
{
    struct kin__services *ss = n->svc;
    if (p->iprev)
        p->iprev->inext = p->inext;
    else
        ss->inflight = p->inext;
    if (p->inext)
        p->inext->iprev = p->iprev;
    p->iprev = p->inext = NULL;
    prov *v = kin__svc_find_prov(p->s, p->provider);
    if (v && v->outstanding > 0)
        v->outstanding--;
    p->provider = NO_PROV;
    return v;
}

static void
enqueue(pending *p)
{
    svc *s = p->s;
    /* Running nowhere: a late reply of its last provider answers nobody
     * (kin__svc_claim). */
    p->provider = NO_PROV;
    p->next = NULL;
    if (s->qtail)
        s->qtail->next = p;
    else
        s->qhead = p;
    s->qtail = p;
    s->queued++;
}

static bool
expired(const pending *p, uint64_t now)
{
    return p->deadline && now >= p->deadline;
}

/* Sends p on, queues it, or fails it (now: the monotonic clock). */
static void
dispatch(kin_node *n, pending *p, uint64_t now)
{
    svc *s = p->s;
    char why[128];
    if (expired(p, now)) {
        fail(n, p, KIN_ETIMEOUT, "deadline passed at the resolver");
        return;
    }
    prov *v = pick(n, s, p->avoid);
    if (v && send_to(n, p, v, now))
        return;
    if (v) {
        fail(n, p, -ENOMEM, "out of memory at the resolver");
        return;
    }
    if (!s->nprov && !kin__svc_holds(s)) {
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
void
kin__svc_pump(kin_node *n, svc *s)
{
    uint64_t now = s->qhead ? kin__now_ns() : 0;
    while (s->qhead) {
        pending *p = s->qhead;
        /* The head goes only where dispatch would send it (its own
         * provider to avoid): taking it out for a provider dispatch then
         * refuses would put it back, round and round, on the broker. */
        bool none = !s->nprov && !kin__svc_holds(s);
        if (!none && !has_room(s, p->avoid))
            return;
        s->qhead = p->next;
        if (!s->qhead)
            s->qtail = NULL;
        s->queued--;
        dispatch(n, p, now);
    }
}

/* p's provider went away during the call. */
static void
provider_lost(kin_node *n, pending *p, prov *v)
{
    uint64_t now = kin__now_ns();
    if (p->idempotent && p->attempts <= KIN_SERVICE_RETRIES &&
        !expired(p, now)) {
        p->s->retried++;
        if (v)
            v->retried++;
        dispatch(n, p, now);
        return;
    }
    char why[128];
    snprintf(why, sizeof why, "provider %u of '%s' went away during the call%s",
             p->provider, p->s->name,
             p->idempotent ? " (retries used up)" : "");
    fail(n, p, KIN_EPEERGONE, why);
}

/* m, the outcome of p's attempt at its provider: true when m answers
 * the caller (the provider's reply, or an error it must see), false when
 * m was consumed because the call goes on (another provider, the queue)
 * or has failed. */
static bool
outcome(kin_node *n, pending *p, kin_msg **mp)
{
    kin_msg *m = *mp;
    uint32_t was = p->provider;
    prov *v = release(n, p);
    kin_err reason = KIN_OK;
    uint64_t now = kin__now_ns();
    if ((m->flags & KIN_MSG_DEAD) &&
        kin_msg_dead_reason(m, &reason, NULL, 0) == KIN_OK &&
        (reason == KIN_ENOPROVIDER || reason == KIN_ESHUTDOWN ||
         reason == KIN_EPEERGONE || reason == KIN_ENOROUTE)) {
        kin_msg_destroy(mp);
        if (n->svc->routing == p &&
            (reason == KIN_EPEERGONE || reason == KIN_ENOROUTE)) {
            /* Our own router could not hand it over (the link to the
             * provider is gone, its route not yet deleted): it never left
             * this process, so it is no attempt, and no late reply can
             * come. That provider is not picked for a while (so this ends
             * when every provider is out of reach: then the call waits in
             * the queue for the link-downs); another gets it. */
            p->attempts--;
            if (v)
                v->unreachable_until = now + UNREACHABLE_NS;
            p->avoid = was;
            dispatch(n, p, now);
        } else if (reason == KIN_ENOPROVIDER || reason == KIN_ESHUTDOWN) {
            /* Refused unrun: withdrawn there before it heard (its SVC_DEL
             * is on the way), or the provider is stopping and the call
             * never started (kin__service_stopped) or never got into its
             * queue. Nothing ran, so no attempt is used up, whatever the
             * function; that provider gets no more calls until it offers
             * again, and another is tried first. */
            if (v)
                v->refusing = true;
            if (p->bounces < BOUNCES_MAX) {
                p->attempts--;
                p->bounces++;
                p->avoid = was;
            }
            dispatch(n, p, now);
        } else {
            /* The provider's link or process went, or it stopped while the
             * call ran (kin__service_stopped): it may have run. */
            p->provider = was;
            retire_proxy(n, p);
            provider_lost(n, p, v);
        }
        return false;
    }
    if (v) {
        v->served++;
        if (m->flags & (KIN_MSG_ERROR | KIN_MSG_DEAD))
            v->errors++;
        v->lat[lat_bucket(now - p->sent_ns)]++;
    }
    return true;
}

/* The provider's reply to a call from another context, or a dead message
 * about it: relayed to the caller. */
static void
on_reply_locked(kin_node *n, kin_msg *m, pending *p)
{
    if (p->provider == NO_PROV || m->handle != p->proxy) {
        kin_msg_destroy(&m);
        return;
    }
    svc *s = p->s;
    if (outcome(n, p, &m)) {
        m->dst = p->req->src;
        m->handle = p->req->reply_to;
        m->reply_to = 0;
        kin__reply_send(n, m);
        put_pending(n, p);
    }
    kin__svc_pump(n, s);
}

static void
on_reply(kin_node *n, kin_msg *m, void *arg)
{
    kin__svc_lock(n);
    on_reply_locked(n, m, arg);
    kin__svc_unlock(n);
}

/* m's call, when m is the reply of a direct call out from here: m is
 * consumed and true returned; *out is then the message to hand to the
 * caller's receiver (NULL: none, the call goes on or has failed), with its
 * handle to seal after it (0: none) and the service whose queue to pump
 * after it (NULL: none, or pumped already). rmu held. */
static bool
claim_locked(kin_node *n, kin_msg **mp, kin_msg **out, uint32_t *seal,
             svc **pump)
{
    struct kin__services *ss = n->svc;
    *out = NULL;
    *seal = 0;
    *pump = NULL;
    if (!ss->ndirect)
        return false;
    kin_msg *m = *mp;
    pending *p = direct_get(ss, m->handle);
    if (!p)
        return false;
    /* Between attempts, or a reply of an earlier attempt's provider (the
     * one that was taken for gone): it answers nobody. Dead messages may
     * come from any router on the way and are this attempt's. */
    if (p->provider == NO_PROV ||
        (!(m->flags & KIN_MSG_DEAD) && m->src != p->provider)) {
        atomic_fetch_add(&n->stats.dropped, 1);
        kin_msg_destroy(mp);
        return true;
    }
    svc *s = p->s;
    if (outcome(n, p, mp)) {
        if (p->attempts > 1)
            *seal = p->caller_handle;
        put_pending(n, p); /* out of the map: m now goes to the receiver */
        *out = *mp;
        *mp = NULL;
        /* The queue waits for the reply: the caller first. */
        *pump = s->qhead ? s : NULL;
        return true;
    }
    kin__svc_pump(n, s);
    return true;
}

bool
kin__svc_claim(kin_node *n, kin_msg **mp)
{
    if (!n->svc)
        return false;
    /* Always under rmu, even to see that no direct call is out: a caller
     * on the fast path holds it from its send until the call is entered,
     * so a reply never overtakes its call's entry. */
    kin__svc_lock(n);
    kin_msg *reply;
    uint32_t seal;
    svc *pump;
    bool taken = claim_locked(n, mp, &reply, &seal, &pump);
    kin__svc_unlock(n);
    /* Handed on after rmu is let go (unless this runs inside another
     * holder of rmu: a bounce's dead reply): the woken caller's next call
     * takes rmu at once (on one CPU it runs before this thread goes on).
     * Services live on this thread, so s is still there after. */
    if (reply)
        kin__deliver_handle(n, reply);
    if (seal)
        kin__handles_seal(n, seal);
    if (pump) {
        kin__svc_lock(n);
        kin__svc_pump(n, pump);
        kin__svc_unlock(n);
    }
    return taken;
}

uint32_t
kin__svc_own_provider(kin_node *n, uint32_t handle)
{
    struct kin__services *ss = n->svc;
    if (!ss)
        return KIN_NO_CTX;
    kin__svc_lock(n);
    pending *p = direct_get(ss, handle);
    uint32_t at = p && p->provider != NO_PROV ? p->provider : KIN_NO_CTX;
    kin__svc_unlock(n);
    return at;
}

bool
kin__svc_take_own(kin_node *n, const kin_msg *h)
{
    struct kin__services *ss = n->svc;
    /* Only tried: the caller holds smu, which rmu's holders take. */
    if (!ss || pthread_mutex_trylock(&ss->rmu))
        return false;
    pending *p = direct_get(ss, h->handle);
    /* What claim_locked would hand to the caller at once: the answer of
     * the provider at work on the call's first attempt, with no call
     * queued behind it, and room in the pool for p (put_pending then
     * takes no other lock). The rest (dead messages, retries, the queue)
     * is the broker's. */
    bool take = p && p->provider != NO_PROV && ss->routing != p &&
                !(h->flags & KIN_MSG_DEAD) && h->src == p->provider &&
                p->attempts <= 1 && !p->s->qhead && ss->npool < POOL_MAX;
    if (take) {
        uint64_t now = kin__now_ns();
        prov *v = release(n, p);
        if (v) {
            v->served++;
            if (h->flags & KIN_MSG_ERROR)
                v->errors++;
            v->lat[lat_bucket(now - p->sent_ns)]++;
        }
        put_pending(n, p);
    }
    kin__svc_unlock(n);
    return take;
}

/* Fails the calls whose deadline passed (at most every SWEEP_NS): the
 * caller has given up on them; a running one is cancelled. */
static void
sweep(kin_node *n, uint64_t now)
{
    struct kin__services *ss = n->svc;
    if (now < ss->next_sweep)
        return;
    ss->next_sweep = now + SWEEP_NS;
    ss->sweep_asked = false;
    /* Providers out of reach for a while may be back. */
    for (int i = 0; i < ss->len; i++)
        kin__svc_pump(n, ss->items[i]);
    pending *late[64];
    int count = 0;
    for (pending *p = ss->inflight; p && count < 64; p = p->inext)
        if (expired(p, now))
            late[count++] = p;
    for (int i = 0; i < count; i++) {
        pending *p = late[i];
        kin_buf b = {0};
        uint32_t at = p->provider;
        if (kin_pack(&b, "uu", reply_handle(p), 0u) == KIN_OK) {
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
        kin__svc_pump(n, s);
    }
    for (int i = 0; i < ss->len; i++) {
        svc *s = ss->items[i];
        pending **pp = &s->qhead, *prev = NULL;
        while (*pp) {
            pending *p = *pp;
            if (!expired(p, now)) {
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

/* Whether fn is exported here as idempotent: the export table is looked
 * up once per function and export change, not per call. */
static bool
idempotent(struct kin__services *ss, const char *fn, size_t len)
{
    uint64_t gen = kin__exports_gen();
    if (gen != ss->idem_gen || len != ss->idem_len ||
        memcmp(fn, ss->idem_fn, len)) {
        memcpy(ss->idem_fn, fn, len); /* len under 64 */
        ss->idem_fn[len] = 0;
        ss->idem_len = len;
        ss->idem = kin__export_idempotent(ss->idem_fn);
        ss->idem_gen = gen;
    }
    return ss->idem;
}

/* SVC_CALL: body [fn, task, remaining ms (-1: none), args...]. Resolved
 * here when this context knows a provider (or one restarting), else sent
 * up; the master with none answers KIN_ENOPROVIDER. */
void
kin__svc_on_call(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    kin__svc_resolve(n, m, 0);
}

static void
resolve_locked(kin_node *n, kin_msg *m, size_t svc_len)
{
    uint64_t now = kin__now_ns();
    sweep(n, now);
    kin__svc_call_head h;
    bool own = svc_len && !kin__svc_head_own(m->body, m->len, svc_len, &h);
    if (!own && kin__svc_call_read(m->body, m->len, &h)) {
        n->svc->bad++;
        kin__reply_dead(n, m, KIN_EBADMSG, "malformed service call");
        return;
    }
    svc *s = kin__svc_find(n, h.fn, h.svc_len);
    if (!s || (!s->nprov && !kin__svc_holds(s))) {
        if (n->up && !n->parent_lost) {
            m->dst = n->parent_id;
            kin__route(n, m);
            return;
        }
        char why[128];
        snprintf(why, sizeof why, "no provider of '%.*s' in the tree",
                 (int)h.svc_len, h.fn);
        if (s)
            s->failed++;
        kin__reply_dead(n, m, KIN_ENOPROVIDER, why);
        return;
    }
    pending *p = get_pending(n->svc);
    if (!p) {
        kin__reply_dead(n, m, -ENOMEM, "out of memory at the resolver");
        return;
    }
    p->s = s;
    p->req = m;
    p->args_off = h.args_off;
    if (own) {
        /* No caller task in an SVC_RUN (the resolver's own call). */
        memset(m->body + h.args_off - 13, 0, 4);
        p->own_head = true;
    }
    p->fn = h.fn;
    p->fn_len = h.fn_len;
    p->provider = NO_PROV;
    p->deadline = h.left >= 0 ? now + (uint64_t)h.left * 1000000u : 0;
    p->idempotent = idempotent(n->svc, h.fn, h.fn_len);
    if (m->src == n->id && m->reply_to &&
        direct_put(n->svc, m->reply_to, p) == 0) {
        p->direct = true;
        p->caller_handle = m->reply_to;
    }
    s->resolved++;
    dispatch(n, p, now);
}

void
kin__svc_resolve(kin_node *n, kin_msg *m, size_t svc_len)
{
    kin__svc_lock(n);
    resolve_locked(n, m, svc_len);
    kin__svc_unlock(n);
}

void
kin__svc_lock(kin_node *n)
{
    pthread_mutex_lock(&n->svc->rmu);
}

void
kin__svc_unlock(kin_node *n)
{
    pthread_mutex_unlock(&n->svc->rmu);
}

bool
kin__svc_fast_send(kin_node *n, kin_msg *m, const kin__svc_call_head *hp)
{
    struct kin__services *ss = n->svc;
    if (!ss || !m->reply_to || kin__broker_on_thread(n->broker))
        return false;
    kin__svc_call_head h = *hp;
    /* The SVC_RUN is laid out before rmu is taken: as send_to's own-head
     * one, with no caller task (the broker's way would clear it too). */
    memset(m->body + h.args_off - 13, 0, 4);
    kin_msg *run = NULL;
    if (kin_msg_new_copy(&run, m->body, m->len))
        return false;
    run->src = n->id;
    run->auth = m->auth;
    run->handle = KIN_HANDLE_SVC_RUN;
    run->reply_to = m->reply_to;
    kin__svc_lock(n);
    uint64_t now = kin__now_ns();
    svc *s = NULL;
    prov *v = NULL;
    pending *p = NULL;
    /* Anything but the usual case is the broker's: deadlines to sweep
     * (one call takes the broker's way then), calls queued (they go first), no
     * provider with room (queue, hold, none), a provider in this context
     * (delivered by the broker). */
    if (now >= ss->next_sweep && !ss->sweep_asked) {
        /* This call goes by the broker, whose resolver sweeps first; the
         * calls made before it gets there need not. */
        ss->sweep_asked = true;
        goto broker;
    }
    if (!(s = kin__svc_find(n, h.fn, h.svc_len)) || s->qhead || !s->nprov ||
        !(v = pick(n, s, NO_PROV)) || v->ctx == n->id || !(p = get_pending(ss)))
        goto broker;
    if (direct_put(ss, m->reply_to, p)) {
        put_pending(n, p); /* p->req is NULL: back to the pool */
        goto broker;
    }
    p->direct = true;
    p->caller_handle = m->reply_to;
    p->s = s;
    p->req = m;
    p->args_off = h.args_off;
    p->own_head = true;
    p->fn = h.fn;
    p->fn_len = h.fn_len;
    p->deadline = h.left >= 0 ? now + (uint64_t)h.left * 1000000u : 0;
    p->idempotent = idempotent(ss, h.fn, h.fn_len);
    enter(ss, p, v, now); /* its first attempt: p is fresh from the pool */
    s->resolved++;
    run->dst = v->ctx;
    /* Sent before rmu is let go. A provider's SVC_DEL is taken under rmu,
     * so a call entered before it is on the wire before it too, and
     * before whatever follows it: the reply of the provider's drain, then
     * the request that stops it. The provider reads the call first and
     * answers it (run before it withdrew, or refused unrun), so a drained
     * provider stops without failing a call. Sent after rmu, a caller
     * held up between entry and send (5 ms will do) sent it after the
     * stop request, the provider went with it unread, and a
     * non-idempotent call failed with KIN_EPEERGONE though it never ran.
     * Down only: a provider with no route here is going. */
    if (kin__route_direct_down(n, run)) {
        kin__svc_unlock(n);
        return true;
    }
    kin_msg_destroy(&run);
    /* Not sent: undone (still ours, under rmu all along), and the call
     * goes the broker's way, which tries another provider. */
    release(n, p);
    p->s->resolved--;
    p->req = NULL;
    put_pending(n, p);
    kin__svc_unlock(n);
    return false;
broker:
    kin__svc_unlock(n);
    kin_msg_destroy(&run);
    return false;
}

uint32_t
kin__svc_call_provider(kin_node *n, uint32_t handle)
{
    struct kin__services *ss = n->svc;
    if (!ss || !n->broker || !kin__broker_on_thread(n->broker))
        return KIN_NO_CTX;
    /* The monitor asks with a task's mu held, and the broker takes task
     * locks under rmu (a call to this context itself): rmu is only tried
     * here. Its other holders, callers entering and sending a call
     * (kin__svc_fast_send), wait for no task lock (their send waits for
     * smu only). */
    while (pthread_mutex_trylock(&ss->rmu))
        sched_yield();
    pending *p = direct_get(ss, handle);
    uint32_t at = p && p->provider != NO_PROV ? p->provider : KIN_NO_CTX;
    kin__svc_unlock(n);
    return at;
}

void
kin__svc_calls_gone(kin_node *n, const uint32_t *ids, size_t count)
{
    struct kin__services *ss = n->svc;
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
        kin__svc_pump(n, ss->items[i]);
}

void
kin__svc_calls_free(kin_node *n)
{
    struct kin__services *ss = n->svc;
    kin__svc_lock(n);
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
    }
    kin__svc_unlock(n);
}
