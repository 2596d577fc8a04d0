/* The RPC layer's hooks into a node's life (call.c, pool.c). */
#ifndef KIN_ROUTER_CALL_IMPL_H
#define KIN_ROUTER_CALL_IMPL_H

#include <kin/call.h>

/* Registers CALL and CANCEL and starts `workers` worker threads. */
kin_err kin__calls_start(kin_node *n, int workers);
/* Stops taking calls, cancels running ones and joins the workers. */
void kin__calls_stop(kin_node *n);
void kin__calls_free(kin_node *n);
/* The worker pool's size. */
int kin__calls_workers(kin_node *n);
/* Broker thread: registers m (a CALL or an admitted SVC_RUN) as a task and
 * queues it for the pool (or runs an inline export). Takes ownership. */
void kin__calls_dispatch(kin_node *n, kin_msg *m);
/* For a worker that reads a CALL off the up socket itself (lead.c):
 * whether the call with this body runs on a worker (its export is not
 * inline, or there is none: run_call answers that), and *entry its export
 * for kin__calls_accept. Any thread. */
bool kin__calls_for_worker(const void *body, size_t size, const void **entry);
/* Has an idle worker wait for its next call again: an empty job (handle
 * 0, no task) it drops. For the first worker, which started before the
 * router opened and so could not read the up socket (lead.c). */
void kin__calls_kick(kin_node *n);
/* Registers the decoded CALL m as kin__calls_dispatch does, for the worker
 * that read it to run; false: out of memory (m is the caller's). */
bool kin__calls_accept(kin_node *n, kin_msg *m, const void *entry);
/* Whether fn is exported here with KIN_EXPORT_IDEMPOTENT. Any thread. */
bool kin__export_idempotent(const char *fn);
/* The header of a CALL [fn, task] or (with_left) SVC_CALL / SVC_RUN [fn,
 * task, ms left]: fn points into m's body; args_off is where the
 * arguments start. false when m does not start with one. */
bool kin__call_head(const kin_msg *m, bool with_left, const char **fn,
                    size_t *fn_len, uint32_t *task, int64_t *left,
                    size_t *args_off);
/* Changes with every export added (for caches of the above). Any thread. */
uint64_t kin__exports_gen(void);
/* The calling thread's task id (adopting the thread if need be). */
uint32_t kin__call_self_task(kin_node *n);
/* timeout_ms cut to the deadline of the service call the thread serves. */
int kin__call_clamp(int timeout_ms);
/* kin_call_wait recording fn as the awaited function. */
kin_err kin__call_wait(kin_receiver *r, int timeout_ms, kin_msg **reply,
                       const char *fn);

#endif
