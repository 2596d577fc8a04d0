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

/* "pending", "running", ... */
KIN_EXPORT const char *kin_task_state_name(kin_task_state s);

#endif
