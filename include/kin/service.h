/* Services by name: a service ("primes") is offered by any number of
 * contexts of the tree, and a caller calls one of its functions
 * ("primes.count") without knowing which context serves it.
 *
 * Each context keeps a table of the providers in its subtree (offers travel
 * up like routes), so a call resolves at the nearest context, the caller
 * itself or an ancestor, that knows a provider. That context, the
 * *resolver*, picks a provider (the less loaded of two picked at random,
 * the nearer on a tie), forwards the call to it and relays its reply. It
 * keeps track of every call it forwarded: when the provider's context goes
 * away, a function exported with KIN_EXPORT_IDEMPOTENT is retried on another
 * provider (at most KIN_SERVICE_RETRIES times, within the caller's
 * deadline); any other call fails with KIN_EPEERGONE and never runs twice.
 *
 *   kin_export_flags("primes.count", count, NULL, KIN_POLICY_PARENT,
 *                    KIN_EXPORT_IDEMPOTENT);      // in the provider's code
 *   kin_service_offer(node, "primes", NULL);      // in the provider
 *   ...
 *   kin_msg *reply;
 *   kin_err e = kin_service_call(master, "primes.count", 1000, &reply,
 *                                "I", 1000000);
 *
 * The functions' own policies do not apply to service calls: the service's
 * policy (kin_service_opts.policy) does. See docs/services.md. */
#ifndef KIN_SERVICE_H
#define KIN_SERVICE_H

#include <stdint.h>

#include <kin/call.h>
#include <kin/defs.h>
#include <kin/err.h>
#include <kin/node.h>

/* The reserved handles of services (see docs/protocol.md). */
enum {
    KIN_HANDLE_SVC_ADD = 10,  /* child -> parent: a provider in my subtree */
    KIN_HANDLE_SVC_DEL = 11,  /* child -> parent: a provider withdrew */
    KIN_HANDLE_SVC_CALL = 12, /* a call to a service, to be resolved */
    KIN_HANDLE_SVC_RUN = 13,  /* resolver -> provider: run this call */
    KIN_HANDLE_SVC_HOLD = 14, /* child -> parent: a provider is restarting */
    KIN_HANDLE_NAME = 15,     /* context -> master: my name */
    KIN_HANDLE_LOOKUP = 16,   /* -> master: the id of a name */
};

/* Attempts an idempotent call gets on other providers after the first
 * (within its deadline). A send that never reached a provider -- our own
 * router could not hand it over, or the provider had withdrawn -- is no
 * attempt. Under a storm of kills a retry may land on a provider that has
 * died but whose link the resolver has not yet seen go, hence some room. */
#define KIN_SERVICE_RETRIES 8
/* Calls a resolver queues for one service when every provider is at its
 * bound; one more fails with KIN_EBUSY. */
#define KIN_SERVICE_QUEUE_MAX 256
/* Longest service name (bytes, without the NUL). */
#define KIN_SERVICE_NAME_MAX 47

/* Who may call a service, judged by the caller's context as the link the
 * call came in on authenticates it. */
typedef enum kin_service_policy {
    /* any context of the tree; operators attached with the kin command are
     * not contexts of the tree and are refused */
    KIN_SERVICE_TREE = 0,
    KIN_SERVICE_PARENT = 1, /* the provider itself or one of its ancestors */
    KIN_SERVICE_CHILD = 2,  /* an immediate child of the provider */
} kin_service_policy;

typedef struct kin_service_opts {
    kin_service_policy policy; /* default KIN_SERVICE_TREE */
    /* Calls this provider takes at a time before the resolver picks
     * another or queues; 0: the context's worker count. */
    int bound;
} kin_service_opts;

/* Offers service `name` (1..KIN_SERVICE_NAME_MAX bytes of letters, digits,
 * '_' and '-') from n: calls to "name.FN" may be routed here and run FN
 * exported under "name.FN". opts may be NULL. Offering again updates the
 * options. Errors: -EINVAL (bad name or opts), -ENOMEM, KIN_ESHUTDOWN. Any
 * thread except n's broker; returns once n's table holds the offer (its
 * ancestors learn it a hop at a time). */
KIN_EXPORT kin_err kin_service_offer(kin_node *n, const char *name,
                                     const kin_service_opts *opts);

/* Withdraws n's offer at once: no new calls are routed here (a call the
 * resolver sent before it heard is refused here, with nothing run, and the
 * resolver sends it elsewhere). Calls running go on. Errors: -ENOENT (not
 * offered), -EINVAL. Any thread except n's broker. */
KIN_EXPORT kin_err kin_service_withdraw(kin_node *n, const char *name);

/* Withdraws n's offer, then waits up to timeout_ms for the calls of this
 * service running here to finish: after it returns KIN_OK, a provider can
 * stop without failing a call. Errors: KIN_ETIMEOUT (calls still running;
 * the offer stays withdrawn), as kin_service_withdraw. Any thread except
 * n's broker and the workers of n running the service's calls. */
KIN_EXPORT kin_err kin_service_drain(kin_node *n, const char *name,
                                     int timeout_ms);

/* Calls fn ("service.function") on a provider of the service and waits up
 * to timeout_ms (KIN_FOREVER: no limit; inside a served call, never past
 * that call's own deadline) for the reply, as kin_call_sync does. The
 * remaining time travels with the call, so retries and the calls the
 * provider makes on its behalf end by the same deadline. Errors: as
 * kin_call_sync, and KIN_ENOPROVIDER (no provider and none restarting: at
 * once), KIN_EBUSY (every provider at its bound and the resolver's queue
 * full), KIN_EPEERGONE (the provider went away, or stopped
 * and cut the call, during a call not exported idempotent, or during the
 * last attempt of one that was; a call it had not started when it stopped
 * goes to another provider), KIN_EREFUSED
 * (the service's policy). Any thread. */
KIN_EXPORT kin_err kin_service_call(kin_node *n, const char *fn, int timeout_ms,
                                    kin_msg **reply, const char *picture, ...);

/* Starts a service call and returns at once with a receiver for its reply:
 * wait with kin_call_wait, or add kin_receiver_latch(*out) to a kin_select
 * and pass what it yields to kin_call_result_of, exactly as for
 * kin_call_async. timeout_ms is the call's deadline at the resolver (a
 * call still queued or unanswered then fails with KIN_ETIMEOUT). The
 * caller owns *out (kin_receiver_destroy). Errors: as kin_node_send,
 * -EINVAL (fn not "service.function"), -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_service_call_async(kin_node *n, const char *fn,
                                          int timeout_ms, kin_receiver **out,
                                          const char *picture, ...);

/* Buckets of a provider's latency histogram: bucket 0 holds round trips
 * under 1 us, bucket 1 + 4*k + j those from 2^k * (1 + j/4) us up to
 * 2^k * (1 + (j+1)/4) us, the last everything longer (about 2 minutes). */
#define KIN_SERVICE_LAT_BUCKETS 112

/* One provider as a resolver sees it. */
typedef struct kin_service_provider {
    uint32_t ctx;     /* the provider's context */
    uint32_t hops;    /* links between the resolver and it */
    int bound;        /* calls it takes at a time */
    int outstanding;  /* calls this resolver has running there */
    uint64_t served;  /* replies this resolver relayed from it */
    uint64_t errors;  /* error replies among them */
    uint64_t retried; /* calls moved elsewhere when it went away */
    /* Round trips of the served calls, resolver to provider and back
     * (sent to reply), counted per bucket (KIN_SERVICE_LAT_BUCKETS). */
    uint32_t latency[KIN_SERVICE_LAT_BUCKETS];
} kin_service_provider;

/* The q-quantile (0 < q <= 1) of a latency histogram (a
 * kin_service_provider's latency, or several summed bucket by bucket), in
 * microseconds: the upper edge of the bucket it falls in, so at most 19%
 * above the true value. 0 when the histogram is empty. Any thread. */
KIN_EXPORT double kin_service_latency_us(const uint32_t *latency, double q);

/* A service in n's table (n and its subtree). */
typedef struct kin_service_info {
    char name[KIN_SERVICE_NAME_MAX + 1];
    int providers;     /* entries filled in below, up to the caller's max */
    int total;         /* providers known */
    int restarting;    /* providers being restarted by a supervisor */
    int queued;        /* calls waiting at this resolver */
    uint64_t retried;  /* idempotent calls retried on another provider */
    uint64_t failed;   /* calls failed here: no provider, busy, gone */
    uint64_t resolved; /* calls this context resolved */
} kin_service_info;

/* Fills out[0..max) with the services of n's table and returns how many
 * there are (which may be more than max); each service's providers go to
 * prov, `prov_max` per service (prov may be NULL). Any thread except n's
 * broker (which answers it). */
KIN_EXPORT int kin_service_list(kin_node *n, kin_service_info *out, int max,
                                kin_service_provider *prov, int prov_max);

#endif
