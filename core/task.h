/* Task records (the data, not the threads): identity, state, what the task
 * waits on, and the cancellation flag that kin's blocking points check. */
#ifndef KIN_CORE_TASK_H
#define KIN_CORE_TASK_H

#include <pthread.h>
#include <stdatomic.h>

#include <kin/task.h>

struct kin_task {
    uint32_t ctx; /* context the task lives in */
    uint32_t id;
    char name[48];
    const char *fn; /* function name for call tasks, static or owned below */
    uint32_t caller_ctx, caller_task;
    _Atomic int state;
    atomic_bool cancel;
    uint32_t cancelled_by_ctx, cancelled_by_task;
    uint64_t created_ns, started_ns, ended_ns;

    pthread_mutex_t mu; /* guards the wait fields */
    void (*wake)(void *obj);
    void *wake_obj;
    const char *wait_what;
    uint64_t wait_since_ns;
};

/* Initialises t's lock and times; the caller fills identity fields. */
void kin__task_init(kin_task *t, uint32_t ctx, uint32_t id, const char *name);
void kin__task_fini(kin_task *t);

/* Makes t the calling thread's task (NULL clears it); returns the old one. */
kin_task *kin__task_set_self(kin_task *t);

/* Around a blocking wait: wake(obj) will be called (with t's lock held) if
 * t is cancelled while waiting, and must wake the waiter. t may be NULL. */
void kin__task_wait_begin(kin_task *t, void (*wake)(void *), void *obj,
                          const char *what);
void kin__task_wait_end(kin_task *t);

/* Whether t (may be NULL) has a cancellation pending. */
bool kin__task_cancel_pending(kin_task *t);

/* Requests cancellation of t on behalf of by_ctx:by_task, waking its wait. */
void kin__task_cancel(kin_task *t, uint32_t by_ctx, uint32_t by_task);

/* Monotonic clock in nanoseconds. */
uint64_t kin__now_ns(void);

#endif
