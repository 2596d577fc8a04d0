/* Tasks: the unit of work the monitor shows. Every incoming call runs as a
 * task on the worker pool; the calling thread's task is what a blocking kin
 * call waits in, and cancelling a task wakes it at its next kin blocking
 * point (cooperative, like asyncio). */
#ifndef KIN_TASK_H
#define KIN_TASK_H

#include <stdbool.h>

#include <kin/defs.h>
#include <kin/err.h>

typedef struct kin_task kin_task;

/* How many calls a task waiting in a select records for the monitor's
 * await graph (kin_task_info.awaits); more are counted, not listed. */
#define KIN_TASK_MAX_AWAITS 16

typedef enum kin_task_state {
    KIN_TASK_PENDING,
    KIN_TASK_RUNNING,
    KIN_TASK_WAITING,
    KIN_TASK_DONE,
    KIN_TASK_FAILED,
    KIN_TASK_CANCELLED,
} kin_task_state;

/* The task the calling thread runs, or NULL. Any thread. */
KIN_EXPORT kin_task *kin_task_self(void);

/* Whether cancellation of the calling thread's task was requested. Long
 * computations poll it; kin's blocking calls return KIN_ECANCELLED on their
 * own. False outside a task. Any thread. */
KIN_EXPORT bool kin_task_cancelled(void);

typedef struct kin_node kin_node;

/* A task's body; its return value is the task's result (KIN_OK, or the
 * error it failed with; KIN_ECANCELLED ends it as cancelled). */
typedef kin_err (*kin_task_fn)(void *arg);

typedef struct kin_task_opts {
    const char *name; /* shown by the monitor */
    bool persistent;  /* kept in the termination history forever */
} kin_task_opts;

/* Runs fn(arg) as a new task on n's worker pool; *id (optional) receives
 * its task id, which kin_task_id(kin_task_self()) returns inside fn. opts
 * may be NULL (name "task", not persistent); the name is copied. fn's
 * return value ends the task as done, failed or cancelled (kin_task_fn),
 * which the monitor's terminated tasks show. The task records where it was
 * created (use the macro kin_task_spawn so file:line are filled in). Errors:
 * -EINVAL (fn NULL), KIN_ESHUTDOWN, -ENOMEM; fn never runs then. Any
 * thread. */
KIN_EXPORT kin_err kin_task_spawn_at(kin_node *n, const kin_task_opts *opts,
                                     kin_task_fn fn, void *arg, uint32_t *id,
                                     const char *file, int line);
#define kin_task_spawn(n, opts, fn, arg, id)                                   \
    kin_task_spawn_at(n, opts, fn, arg, id, __FILE__, __LINE__)

/* Sleeps for ms milliseconds (KIN_FOREVER: until cancelled) at a kin
 * blocking point: the monitor shows
 * the task waiting on a "sleep", and cancelling the task ends the sleep at
 * once. Errors: KIN_ECANCELLED. Any thread (outside a task it is a plain,
 * uncancellable sleep). */
KIN_EXPORT kin_err kin_task_sleep(int ms);

/* The id of a task (unique within its context, never 0). Any thread, while
 * the task is live. */
KIN_EXPORT uint32_t kin_task_id(const kin_task *t);

/* "pending", "running", "waiting", "done", "failed", "cancelled"; "?" for
 * any other value. Static. Any thread. */
KIN_EXPORT const char *kin_task_state_name(kin_task_state s);

#endif
