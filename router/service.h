/* Services inside the router (service*.c, service_impl.h): the table of
 * providers in a context's subtree, the resolver that forwards service
 * calls and follows them, and the provider side's admission. */
#ifndef KIN_ROUTER_SERVICE_H
#define KIN_ROUTER_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include <kin/service.h>

/* Registers the service handles; called while the node is made. */
kin_err kin__services_start(kin_node *n);
void kin__services_free(kin_node *n);

/* Broker thread: the contexts ids are gone (their route was deleted):
 * their offers go, and the calls running there are retried or failed. */
void kin__services_gone(kin_node *n, const uint32_t *ids, size_t count);

/* Whether handle is one of the service handles or NAME (operators may not
 * use them; LOOKUP they may). */
static inline bool
kin__is_service_handle(uint32_t handle)
{
    return handle >= KIN_HANDLE_SVC_ADD && handle <= KIN_HANDLE_NAME;
}

/* Broker thread, where the router delivers m (dst: this context): when
 * m answers a direct service call (one this context made and resolves),
 * the resolver does its bookkeeping, then delivers m or consumes it (a
 * retry, a late reply) and returns true; false: not such a message. */
bool kin__svc_claim(kin_node *n, kin_msg **mp);

/* The provider at work on the service call this context made and
 * resolves for itself, answered to reply handle `handle`; KIN_NO_CTX when
 * there is none (queued, resolved elsewhere, over). Any thread. */
uint32_t kin__svc_own_provider(kin_node *n, uint32_t handle);

/* A caller that read a reply to its own service call (header h, to reply
 * handle h->handle) off the socket (router/lead.c): when it ends the call
 * as kin__svc_claim would hand it over (the first attempt's provider
 * answering, nothing queued behind it), does the resolver's bookkeeping
 * and returns true: the caller takes the reply. false: the broker must
 * claim it. smu held; rmu is only tried. */
bool kin__svc_take_own(kin_node *n, const kin_msg *h);

/* Which provider the service call this context made and resolves for
 * itself, answered to reply handle `handle`, is at now; KIN_NO_CTX when it
 * is queued, resolved elsewhere, over, or when not called on the broker
 * thread. */
uint32_t kin__svc_call_provider(kin_node *n, uint32_t handle);

/* Worker or broker thread: the service call m (SVC_RUN, kept) ends without
 * its function's answer because this context is stopping: its resolver gets
 * a dead reply it acts on. started false: it never started (KIN_ENOPROVIDER,
 * sent elsewhere whatever the function); true: it was cut while it ran
 * (KIN_EPEERGONE, as if the provider died: retried when idempotent). */
void kin__service_stopped(kin_node *n, const kin_msg *m, bool started);

/* A worker that read the service call m (SVC_RUN) off the socket itself
 * (router/lead.c): whether this context admits it as the broker's
 * kin__svc_on_run would, counting it as running (kin__service_run_done
 * ends that); false: the broker must see it (a refusal, a malformed call,
 * the CHILD policy). smu may be held. */
bool kin__svc_admit_here(kin_node *n, const kin_msg *m);

/* Worker or broker thread: a service call admitted by on_svc_run ended. */
void kin__service_run_done(kin_node *n, const char *fn, size_t fn_len);

/* Any thread but n's broker: n offers `names` (NULL-terminated) on behalf
 * of its child `child` (a supervisor's spec), bound calls at a time. */
void kin__service_offer_for(kin_node *n, uint32_t child,
                            const char *const *names, int bound);
/* Any thread but n's broker: providers of `names` below n are being
 * restarted (delta +1) or are back or given up (-1); while any is, the
 * resolvers hold calls instead of failing them with KIN_ENOPROVIDER. */
void kin__service_hold(kin_node *n, const char *const *names, int delta);

/* Broker thread: fills at most max entries (providers: prov_max each into
 * prov when not NULL) and returns the number of services. */
int kin__services_snapshot(kin_node *n, kin_service_info *out, int max,
                           kin_service_provider *prov, int prov_max);

/* The deadline of the service call the calling thread is serving
 * (monotonic ns, 0: none); nested calls end by it. */
uint64_t kin__call_deadline(void);
void kin__call_deadline_set(uint64_t ns);

/* Whether name is a valid service name of len bytes (service_wire.c). */
bool kin__service_name_ok(const char *name, size_t len);

#endif
