/* Calling functions by name in other contexts.
 *
 * A function is exported under a name ("math.add") with a policy, in every
 * context of the program (exports are process-wide, so a child running the
 * same executable serves the same functions). Each incoming call runs as a
 * task on the callee's worker pool.
 *
 *   static kin_err add(kin_call *c, void *arg) {
 *       int64_t a, b;
 *       kin_err e = kin_call_args(c, "II", &a, &b);
 *       return e ? e : kin_call_return(c, "I", a + b);
 *   }
 *   kin_export("math.add", add, NULL, KIN_POLICY_PARENT);
 *   ...
 *   kin_msg *reply;
 *   kin_err e = kin_call_sync(node, child, "math.add", 1000, &reply,
 *                             "II", 2, 3);
 *   int64_t sum;
 *   if (!e) e = kin_msg_unpack(reply, "I", &sum);
 *   kin_msg_destroy(&reply);
 */
#ifndef KIN_CALL_H
#define KIN_CALL_H

#include <kin/defs.h>
#include <kin/err.h>
#include <kin/msg.h>
#include <kin/node.h>
#include <kin/pack.h>

/* One incoming call, as seen by the function serving it. Valid only during
 * that function's run. */
typedef struct kin_call kin_call;

/* A served function. Return KIN_OK after kin_call_return (or with no
 * results), or an error: kin_call_fail's result, or any kin_err. The
 * caller sees KIN_EREMOTE carrying that code and its kin_strerror text,
 * except for KIN_EREFUSED, KIN_ENOFUNC, KIN_ECANCELLED and KIN_ETOOBIG,
 * which reach it as themselves (so a function returning KIN_ECANCELLED
 * makes the caller's kin_call_sync return KIN_ECANCELLED, *reply NULL).
 * Results appended before an error return are not sent. */
typedef kin_err (*kin_fn)(kin_call *c, void *arg);

/* Exports fn under name (up to 63 bytes) in every context of this process.
 * Errors: KIN_EEXISTS (name taken), -EINVAL (bad name or policy), -ENOMEM.
 * Any thread; export before kin_init so children have it too. The
 * function runs on the worker pool and may block and make calls. */
KIN_EXPORT kin_err kin_export(const char *name, kin_fn fn, void *arg,
                              kin_policy policy);

/* Like kin_export, for a function that promises to be quick and never to
 * block: called from another context, it runs on the callee's broker
 * thread, saving the hand-off from the broker to a worker (which a call
 * to a kin_export function pays unless an idle worker of the callee reads
 * the call itself: while no call is queued). Called by a context on itself (ctx
 * is the caller's own id), it runs on the calling thread instead, inside
 * kin_call_sync, kin_call_async or kin_call_nowait, before they return. It must
 * not wait on anything (no kin_call_sync, no receiver gets, no locks held long,
 * no I/O that may block): while it runs on the broker the context routes
 * nothing and its monitor does not answer. It still shows in the monitor
 * as a task. */
KIN_EXPORT kin_err kin_export_inline(const char *name, kin_fn fn, void *arg,
                                     kin_policy policy);

/* Reads the call's arguments with a kin_unpack picture. Errors as
 * kin_unpack. The thread running the call: a worker, or for
 * kin_export_inline the callee's broker thread (the caller's own thread
 * when a context calls itself). The reader starts after kin's call header:
 * the first picture character reads the first argument. */
KIN_EXPORT kin_err kin_call_args(kin_call *c, const char *picture, ...);

/* The arguments' reader, for msgpack-c users (kin_reader_next), positioned
 * at the first argument; kin_call_args reads from the same reader. Owned
 * by the call. The thread running the call. */
KIN_EXPORT kin_reader *kin_call_reader(kin_call *c);

/* Appends results with a kin_pack picture. Errors as kin_pack. */
KIN_EXPORT kin_err kin_call_return(kin_call *c, const char *picture, ...);

/* The result buffer, for msgpack-c users (kin_buf_packer): what is
 * appended to it is the reply's body, one msgpack object after another,
 * after whatever kin_call_return appended before. Owned by the call.
 * The thread running the call. */
KIN_EXPORT kin_buf *kin_call_result(kin_call *c);

/* Makes the call fail with code and a message; returns KIN_EREMOTE so a
 * function can `return kin_call_fail(c, ...)`. */
KIN_EXPORT kin_err kin_call_fail(kin_call *c, int code, const char *fmt, ...)
    KIN_PRINTF(3, 4);

/* The calling context's id (for a service call, the context that called the
 * service, not the resolver that forwarded it), and the node serving the
 * call. */
KIN_EXPORT uint32_t kin_call_caller(const kin_call *c);
KIN_EXPORT kin_node *kin_call_node(kin_call *c);

/* Flags of kin_export_flags. */
#define KIN_EXPORT_IDEMPOTENT                                                  \
    0x1u                       /* safe to run twice: a service call to         \
                                  it is retried on another provider            \
                                  when its provider dies mid-call */
#define KIN_EXPORT_INLINE 0x2u /* as kin_export_inline */

/* kin_export with flags (KIN_EXPORT_IDEMPOTENT, KIN_EXPORT_INLINE). The
 * resolver of a service call reads the flag from its own process's
 * exports, so the providers and the contexts that resolve their calls
 * (the callers and their ancestors) should run the same executable; a
 * resolver that does not export the function treats it as not
 * idempotent, which is safe. Errors: as kin_export, -EINVAL (unknown
 * flag). Any thread. */
KIN_EXPORT kin_err kin_export_flags(const char *name, kin_fn fn, void *arg,
                                    kin_policy policy, unsigned flags);

/* Calls fn in context ctx and waits up to timeout_ms (KIN_FOREVER: no limit;
 * inside a served service call, never past that call's deadline) for its
 * reply; arguments packed with picture. On success *reply holds
 * the results (read them with kin_msg_unpack; the caller frees it).
 * Errors: KIN_ETIMEOUT and KIN_ECANCELLED (both send CANCEL to the remote
 * task; a late reply is discarded), KIN_EPEERGONE, KIN_ENOROUTE,
 * KIN_ETOOBIG, and from the callee KIN_EREFUSED, KIN_ENOFUNC and
 * KIN_EREMOTE: for those three *reply holds the error (read it with
 * kin_call_error); otherwise *reply is NULL. Any thread. */
KIN_EXPORT kin_err kin_call_sync(kin_node *n, uint32_t ctx, const char *fn,
                                 int timeout_ms, kin_msg **reply,
                                 const char *picture, ...);

/* Starts a call and returns at once with a receiver for its reply (bound to
 * ctx, so it gets KIN_EPEERGONE if ctx goes away). Wait with kin_call_wait,
 * or add kin_receiver_latch(*out) to a kin_select and pass what it yields
 * to kin_call_result_of. Destroying the receiver discards a late reply;
 * call kin_call_cancel first to stop the remote task. Errors: as kin_node_send,
 * -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_call_async(kin_node *n, uint32_t ctx, const char *fn,
                                  kin_receiver **out, const char *picture, ...);

/* Waits up to timeout_ms for the reply of an async call. Errors as
 * kin_call_sync, except that a timeout here cancels nothing (call
 * kin_call_cancel or destroy the receiver). Any thread. */
KIN_EXPORT kin_err kin_call_wait(kin_receiver *r, int timeout_ms,
                                 kin_msg **reply);

/* Interprets a reply taken from a receiver's latch (e.g. by kin_select_get):
 * dead messages become their reason (and are freed), error replies give
 * their kind (KIN_EREMOTE, KIN_EREFUSED, KIN_ENOFUNC, KIN_ECANCELLED,
 * KIN_ETOOBIG) and stay in *reply; an error reply it cannot decode gives
 * KIN_EBADMSG (the reply is freed, *reply NULL). Any thread. */
KIN_EXPORT kin_err kin_call_result_of(kin_msg **reply);

/* Asks the callee to cancel the call behind r (cooperative: the remote task
 * sees it at its next kin blocking point or kin_task_cancelled()). Its reply,
 * KIN_ECANCELLED or a result that won the race, still arrives on r.
 * Errors: -EINVAL (r not bound to a context, KIN_NO_CTX), -ENOMEM, those
 * of kin_node_send. Any thread. The canceller recorded on the remote task
 * is the calling thread's task. */
KIN_EXPORT kin_err kin_call_cancel(kin_receiver *r);

/* Calls fn in ctx with no reply wanted. Errors: as kin_node_send. */
KIN_EXPORT kin_err kin_call_nowait(kin_node *n, uint32_t ctx, const char *fn,
                                   const char *picture, ...);

/* Streams: a receiver handed to another context becomes a sender there.
 * Pass its address as call arguments (its context id and
 * kin_receiver_handle, e.g. "uu"); the other side sends to it with
 * kin_send. Make the receiver with KIN_POLICY_ANY (or CHILD when only
 * children stream to it). */

/* Sends one message packed with picture to handle in context ctx (no reply
 * wanted). Errors: as kin_node_send; delivery failures are dropped, since
 * nobody waits for a reply. Any thread. */
KIN_EXPORT kin_err kin_send(kin_node *n, uint32_t ctx, uint32_t handle,
                            const char *picture, ...);

/* What a failed call said. message and function are NUL-terminated copies
 * truncated to their buffers. */
typedef struct kin_remote_error {
    int code;          /* the callee's kin_err */
    uint32_t ctx;      /* the context the function ran in */
    char function[64]; /* the function's name */
    char message[256];
} kin_remote_error;

/* Decodes an error reply. Errors: -EINVAL (not an error reply),
 * KIN_EBADMSG. */
KIN_EXPORT kin_err kin_call_error(const kin_msg *reply, kin_remote_error *out);

/* Where a failed call failed in its callee, as text: one line per frame,
 * innermost first ("#0 parse_row (src/rows.c:88)"), from where the function
 * called kin_call_fail down to the function itself; for a function that
 * returned an error without kin_call_fail, the function alone. Function
 * names always (including static functions when the callee has a symbol
 * table); file:line where the callee has debug info; at most 24 frames and
 * 2 KiB. Writes a NUL-terminated copy, truncated to cap, into buf; an
 * error reply without a stack (a refusal, an unknown function, a callee
 * whose process does not capture stacks) gives "". Errors: -EINVAL (not an
 * error reply), KIN_EBADMSG. Any thread. */
KIN_EXPORT kin_err kin_call_error_stack(const kin_msg *reply, char *buf,
                                        size_t cap);

/* kin_unpack over a message's body. */
KIN_EXPORT kin_err kin_msg_unpack(const kin_msg *m, const char *picture, ...);

#endif
