/* Monitor queries to many contexts at once (monitor/query.c): the same
 * request sent to each, replies gathered in order, so that walking a tree
 * of N contexts costs about its depth in round trips, not N. Used by
 * graph.c (kin_monitor_contexts, kin_monitor_graph). */
#ifndef KIN_MONITOR_QUERY_H
#define KIN_MONITOR_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include <kin/monitor.h>

/* At most this many requests in flight at once. */
#define KIN__MONITOR_WINDOW 128

/* Asks each of ctxs[0..count) for its info, all in flight together (up to
 * KIN__MONITOR_WINDOW); infos[i] and errs[i] get what kin_monitor_info
 * would have given for ctxs[i] (each request has its own timeout_ms from
 * when it was sent). Returns -ENOMEM if it could not ask at all (errs then
 * unset), KIN_OK otherwise. Any thread. */
kin_err kin__monitor_info_many(kin_node *n, const uint32_t *ctxs, size_t count,
                               int timeout_ms, kin_ctx_info *infos,
                               kin_err *errs);

/* Called for each context, in the order of ctxs, with its ps result:
 * e is KIN_OK and tasks (malloc'd, count rows) belong to the callee, or e
 * is what kin_monitor_ps would have returned and tasks is NULL. */
typedef void (*kin__monitor_ps_fn)(size_t i, kin_err e, kin_task_info *tasks,
                                   size_t count, void *arg);

/* kin_monitor_ps (no filter, live tasks) of each of ctxs, pipelined as
 * kin__monitor_info_many; fn runs on this thread for each, in order.
 * Returns -ENOMEM if it could not ask at all (fn then never runs), KIN_OK
 * otherwise. Any thread. */
kin_err kin__monitor_ps_many(kin_node *n, const uint32_t *ctxs, size_t count,
                             int timeout_ms, kin__monitor_ps_fn fn, void *arg);

#endif
