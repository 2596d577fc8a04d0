/* What the service files share (service.c, service_table.c,
 * service_resolver.c, service_provider.c): a context's service state, the
 * table's entries, the resolver's calls, and the functions one file offers
 * the others. Everything marked "broker" is written by the broker thread
 * under `rmu`, and by a calling thread under `rmu` on the fast path
 * (kin__svc_fast_send); the broker reads it under rmu too. */
#ifndef KIN_ROUTER_SERVICE_IMPL_H
#define KIN_ROUTER_SERVICE_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "router/node_impl.h"
#include "router/service.h"
#include "router/service_wire.h"

#define NO_PROV UINT32_MAX
#define KIN__SVC_DSLOTS 256

typedef struct prov {
    uint32_t ctx, via, hops;
    int bound, outstanding;
    uint64_t served, errors, retried;
    /* Our router could not reach it (its link gone, not yet noticed):
     * not picked before this (monotonic ns; 0: reachable). */
    uint64_t unreachable_until;
    /* It refused a call unrun (withdrawn or stopping): not picked until it
     * offers again (SVC_ADD) or its SVC_DEL or route deletion removes it. */
    bool refusing;
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
    const char *fn;  /* "service.function", in req's body */
    size_t fn_len;
    uint32_t provider; /* NO_PROV while queued */
    /* The handle its reply comes back to (0: none yet). It outlives the
     * call in the pool; an attempt that ends without its reply (provider
     * gone, deadline) retires it, so a late reply finds no handle. */
    uint32_t proxy;
    uint64_t deadline; /* monotonic ns; 0: none */
    uint64_t sent_ns;  /* when it went to its provider */
    int attempts;
    int bounces;    /* sends that never reached a provider (see on_reply) */
    uint32_t avoid; /* the provider that bounced last: picked last */
    bool idempotent;
    /* Which attempt this is, unique in the context (enter): a caller that
     * sent outside rmu finds out by it whether its attempt is still the
     * one in flight (kin__svc_fast_send). */
    uint64_t attempt;
    /* The caller is this context: its provider replies straight to the
     * caller's receiver (caller_handle, in the resolver's `direct` map),
     * and kin__svc_claim sees each reply on its way there. */
    bool direct;
    /* req's head is as kin__svc_head_put writes it, with task 0: an
     * SVC_RUN is req's body with the time left written in. */
    bool own_head;
    uint32_t caller_handle;
} pending;

/* A service as this context knows it (broker thread). */
typedef struct svc {
    char name[KIN_SERVICE_NAME_MAX + 1];
    size_t name_len;
    prov *provs;
    int nprov, cap;
    bool same_hops; /* every provider as near (kin__svc_provs_changed) */
    /* The provider pick returned last (at provs[warm_i] if still there)
     * and how many calls in a row it got idle. */
    uint32_t warm;
    int warm_i, warm_run;
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
    /* Guards everything marked broker (recursive: the broker's service
     * code nests through the router). Taken by the broker at each entry
     * into the service code and by a caller on the fast path; smu, hmu and
     * n->mu may be taken under it, never it under them (docs/design.md). */
    pthread_mutex_t rmu;
    /* broker */
    svc **items;
    int len, cap;
    pending *inflight; /* running at a provider (iprev/inext) */
    pending *pool;     /* ended, for reuse (next) */
    int npool;
    uint64_t next_sweep;
    bool sweep_asked; /* a call went to the broker for the sweep due */
    uint64_t rng;
    uint64_t bad;      /* offers and calls dropped as malformed */
    pending *routing;  /* the call send_to is routing right now */
    uint64_t attempts; /* attempts entered so far (pending.attempt) */
    /* Caller's reply handle -> its direct call: in slot handle % DSLOTS
     * when free (handles come in sequence, so they rarely collide), else
     * in the map. */
    struct {
        uint32_t handle;
        pending *p;
    } dslot[KIN__SVC_DSLOTS];
    kin__u32map direct;
    int ndirect;
    /* The last function whose export was looked up (see idempotent). */
    char idem_fn[64];
    size_t idem_len;
    bool idem;
    uint64_t idem_gen;
    svc *last; /* the service the last call was to */
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    offer *offers;
    int noffers, ocap;
};

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

/* --- the table (service_table.c), broker thread -------------------------- */

svc *kin__svc_find(kin_node *n, const char *name, size_t len);
/* NULL: out of memory. */
svc *kin__svc_find_or_add(kin_node *n, const char *name, size_t len);
prov *kin__svc_find_prov(svc *s, uint32_t ctx);
/* s's providers were added, removed or moved: same_hops again. */
void kin__svc_provs_changed(svc *s);
/* Providers of s restarting in the subtree and here. */
int kin__svc_holds(const svc *s);
/* Tells the parent how many providers of s restart here. */
void kin__svc_announce_hold(kin_node *n, svc *s);
/* Adds (or updates) a provider and tells the parent; queued calls may go. */
void kin__svc_provider_add(kin_node *n, svc *s, uint32_t ctx, uint32_t via,
                           uint32_t hops, int bound);
void kin__svc_provider_del(kin_node *n, svc *s, uint32_t ctx);
void kin__svc_on_add(kin_node *n, kin_msg *m, void *arg);
void kin__svc_on_del(kin_node *n, kin_msg *m, void *arg);
void kin__svc_on_hold(kin_node *n, kin_msg *m, void *arg);

/* --- the resolver (service_resolver.c), broker thread --------------------- */

/* Sends s's queued calls while a provider has room; fails them when no
 * provider is left and none is restarting. */
void kin__svc_pump(kin_node *n, svc *s);
void kin__svc_on_call(kin_node *n, kin_msg *m, void *arg);
/* kin__svc_on_call of a call made in this process, whose head
 * kin__svc_head_own reads (svc_len: its service name's length; 0: not
 * known, read it all). */
void kin__svc_resolve(kin_node *n, kin_msg *m, size_t svc_len);
/* Any thread but the broker: resolves and sends the call m (made in this
 * context, head by kin__svc_head_put, whose fields h gives, h->fn pointing
 * into m's body) itself when the usual case holds (a provider with room,
 * nothing queued, no sweep due, a direct send possible); true when m was
 * taken. False: the broker's resolver must take m, whose body is as it
 * was but that its caller task may have been cleared (the resolver clears
 * it in any case). */
bool kin__svc_fast_send(kin_node *n, kin_msg *m, const kin__svc_call_head *h);
void kin__svc_lock(kin_node *n);
void kin__svc_unlock(kin_node *n);
/* The calls running at the contexts ids (gone) are retried or failed. */
void kin__svc_calls_gone(kin_node *n, const uint32_t *ids, size_t count);
/* Frees every call entry; the broker has stopped. */
void kin__svc_calls_free(kin_node *n);

/* --- the provider side (service_provider.c) ------------------------------- */

void kin__svc_on_run(kin_node *n, kin_msg *m, void *arg);

/* --- jobs (service.c) ----------------------------------------------------- */

/* Any thread but the broker: runs fn(j) on the broker and waits for it to
 * call kin__svc_job_done(j). Errors: -EDEADLK on the broker thread, those
 * of kin__broker_defer. */
kin_err kin__svc_run_job(kin_node *n, void (*fn)(void *, void *), job *j);
void kin__svc_job_done(job *j);

#endif
