/* The log records of what happened to processes (docs/logs.md, "Event
 * records"): one function per event, so names and fields are defined in
 * one place (events.c). Each record's message is its event name and its
 * fields carry the facts; the `event` field repeats the name so filters on
 * fields find it. Any thread (they only append to the log queue). */
#ifndef KIN_PROCESS_EVENTS_H
#define KIN_PROCESS_EVENTS_H

#include <stdint.h>
#include <sys/types.h>

#include <kin/err.h>

#include "router/router.h"

#define KIN__EV_CHILD_EXIT "child.exit"
#define KIN__EV_CHILD_START "child.start"
#define KIN__EV_CHILD_RESTART "child.restart"
#define KIN__EV_CHILD_STOP "child.stop"
#define KIN__EV_CHILD_START_FAILED "child.start_failed"
#define KIN__EV_SUP_GAVE_UP "supervisor.gave_up"
#define KIN__EV_EMERGENCY "emergency.stop"
#define KIN__EV_OP_CANCEL "operator.cancel"
#define KIN__EV_OP_SIGNAL "operator.signal"
#define KIN__EV_OP_COMMAND "operator.command"
#define KIN__EV_JOIN_ACCEPT "join.accept"
#define KIN__EV_JOIN_LEAVE "join.leave"
#define KIN__EV_JOIN_REFUSED "join.refused"
#define KIN__EV_JOIN_REVOKED "join.revoked"

/* A child process was reaped: wait status as waitpid gave it. */
void kin__ev_child_exit(const char *name, uint32_t ctx, pid_t pid, int status);

/* A supervisor's decision about child `name` (ctx, pid: the current or
 * last process; restarts: so far). ev is one of the KIN__EV_CHILD_* names
 * but exit; error for start_failed. */
void kin__ev_sup_child(const char *ev, const char *name, uint32_t ctx,
                       pid_t pid, unsigned restarts, kin_err error);

/* A supervisor gave up: more than intensity restarts in period_ms. */
void kin__ev_sup_gave_up(int intensity, int period_ms);

/* The emergency stop of context ctx, asked for by context origin. */
void kin__ev_emergency(uint32_t ctx, uint32_t origin);

/* Operator actions, logged by the context they act on (monitor service):
 * from is the requester's id (an operator id for the kin command, whose
 * pid and uid the record then carries; else a context). error: the
 * action's outcome (KIN_OK: done). */
void kin__ev_op_cancel(uint32_t from, uint32_t from_task, uint32_t task,
                       kin_err error);
/* Logged before the signal is raised: it may end the process. */
void kin__ev_op_signal(uint32_t from, int sig);
void kin__ev_op_command(uint32_t from, const char *command, const char *args,
                        kin_err error);

/* What happened at a master's join endpoint (a kin__join_fn: the router's
 * event made a record of the master's; arg unused). */
void kin__ev_join(void *arg, const kin__join_event *ev);

#endif
