/* Latches and selects: the thread-safe queues every receiver is built on.
 *
 * A latch is an unbounded FIFO of messages with blocking get and a timeout;
 * closing it wakes every waiter. A select waits on several latches at once
 * (mitogen's Select). A get from a kin task is a blocking point: cancelling
 * the task wakes it with KIN_ECANCELLED. */
#ifndef KIN_LATCH_H
#define KIN_LATCH_H

#include <stdbool.h>

#include <kin/defs.h>
#include <kin/err.h>
#include <kin/msg.h>

typedef struct kin_latch kin_latch;
typedef struct kin_select kin_select;

/* A new, open, empty latch. Errors: -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_latch_new(kin_latch **out);

/* Closes the latch, frees it and the messages still queued, and sets *l to
 * NULL. NULL-safe. If l still belongs to a select it is removed from it
 * first (that select must not be destroyed concurrently). No thread may be
 * waiting on it, and no kin_latch_put may be in progress or start, with one
 * exception: a reader may destroy it as soon as it has taken the message it
 * waited for, while the put that queued that message is still waking it
 * (the memory, and any message queued meanwhile, then goes when that put
 * returns). */
KIN_EXPORT void kin_latch_destroy(kin_latch **l);

/* Appends *m and takes ownership (sets *m to NULL) on success. Wakes one
 * waiter, and the select the latch belongs to. Errors (*m is then untouched
 * and still the caller's): KIN_ECLOSED (the latch is closed), -ENOMEM
 * (growing the queue failed), -EINVAL (l, m or *m NULL). Any thread. */
KIN_EXPORT kin_err kin_latch_put(kin_latch *l, kin_msg **m);

/* Removes the oldest message into *out (caller owns it), waiting up to
 * timeout_ms (KIN_FOREVER or any negative value: no limit, 0: poll).
 * Messages queued before a close are still returned. Errors: KIN_ETIMEOUT,
 * KIN_ECLOSED (closed and empty), KIN_ECANCELLED (the calling kin task was
 * cancelled), -EINVAL (l or out NULL). Precedence when several apply: a
 * queued message always wins (even over a pending cancellation), then
 * KIN_ECLOSED, then KIN_ECANCELLED, then KIN_ETIMEOUT; a poll of an empty
 * queue from a cancelled task returns KIN_ECANCELLED. Any thread. */
KIN_EXPORT kin_err kin_latch_get(kin_latch *l, int timeout_ms, kin_msg **out);

/* Closes the latch: later puts fail with KIN_ECLOSED and every waiter
 * wakes, including a select the latch belongs to. NULL-safe, idempotent.
 * Any thread. */
KIN_EXPORT void kin_latch_close(kin_latch *l);

/* Whether the latch is closed. Any thread. */
KIN_EXPORT bool kin_latch_closed(kin_latch *l);

/* Number of queued messages (a snapshot). Any thread. */
KIN_EXPORT size_t kin_latch_size(kin_latch *l);

/* A new select. A oneshot select forgets a latch once it has yielded one
 * message from it (gathering one reply per call); a persistent one keeps
 * every latch until it is removed. Errors: -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_select_new(kin_select **out, bool oneshot);

/* Detaches every latch (latches are not freed), frees the select and sets
 * *s to NULL. NULL-safe. No thread may be waiting on it. */
KIN_EXPORT void kin_select_destroy(kin_select **s);

/* Adds l with a caller-chosen tag returned by kin_select_get. The select does
 * not own l; l must stay alive until removed or the select is destroyed.
 * Messages already queued in l count. Errors: KIN_EEXISTS (l already belongs
 * to a select, this one included), -ENOMEM, -EINVAL (s or l NULL). Any
 * thread. */
KIN_EXPORT kin_err kin_select_add(kin_select *s, kin_latch *l, void *tag);

/* Removes l from s (l is not freed; its queued messages stay in it).
 * Errors: -ENOENT if l is not in s, -EINVAL (s or l NULL). Any thread. */
KIN_EXPORT kin_err kin_select_remove(kin_select *s, kin_latch *l);

/* Number of latches in s. Any thread. */
KIN_EXPORT size_t kin_select_count(kin_select *s);

/* Returns the next message from any member latch, waiting up to
 * timeout_ms (as kin_latch_get). Members are tried round-robin in the order
 * they were added, starting with the oldest; each call starts after the
 * latch that last yielded, so a busy latch cannot starve the others. *tag
 * (optional) receives the latch's tag. Errors: KIN_ETIMEOUT, KIN_ECLOSED
 * (no members left, or every member is closed and empty), KIN_ECANCELLED
 * (calling task cancelled), -EINVAL (s or out NULL); precedence as for
 * kin_latch_get. Any thread. */
KIN_EXPORT kin_err kin_select_get(kin_select *s, int timeout_ms, kin_msg **out,
                                  void **tag);

#endif
