/* Task records (the data, not the threads): identity, state, what the task
 * waits on, and the cancellation flag that kin's blocking points check. */
#ifndef KIN_CORE_TASK_H
#define KIN_CORE_TASK_H

#include <pthread.h>
#include <stdatomic.h>

#include <kin/latch.h>
#include <kin/task.h>

struct kin_task {
    uint32_t ctx; /* context the task lives in */
    uint32_t id;
    char name[48];
    char fn[48]; /* function symbol: the exported name for call tasks */
    /* Creation chain: for call tasks the calling ctx:task and the reply
     * handle the caller waits on; else where the task was created. */
    uint32_t caller_ctx, caller_task, caller_handle;
    const char *created_file;
    int created_line;
    bool persistent;
    int tid; /* kernel thread id while running, 0 otherwise */
    _Atomic int state;
    atomic_bool cancel;
    uint32_t cancelled_by_ctx, cancelled_by_task;
    uint64_t created_ns, started_ns, ended_ns;
    int result; /* kin_err the task ended with */
    /* What the layer running a call task found for it when it arrived
     * (router/pool.c: its export), so that it is looked up once. */
    const void *entry;

    pthread_mutex_t mu; /* guards the wait and await fields */
    void (*wake)(void *obj);
    void *wake_obj;
    const char *wait_what;
    uint64_t wait_since_ns;
    /* A call this task waits for: ctx and reply handle (0: none). */
    uint32_t await_ctx, await_handle;
    char await_fn[48];
    /* The call is a service call (await_fn names the service): await_ctx
     * is KIN_NO_CTX here; the resolver knows the provider it went to. */
    bool await_svc;
    /* Every call a task waiting in a select waits for (the first
     * KIN_TASK_MAX_AWAITS of them; n_awaits counts them all). */
    uint32_t n_awaits;
    struct {
        uint32_t ctx, handle;
    } awaits[KIN_TASK_MAX_AWAITS];
};

/* Records the calls t waits for in a select: n (ctx, handle) pairs, of
 * which the first KIN_TASK_MAX_AWAITS are kept; n 0 clears them. t may be
 * NULL. */
void kin__task_await_calls(kin_task *t, const uint32_t (*calls)[2], uint32_t n);

/* Marks latch l as the reply latch of a call to ctx with reply handle
 * handle, so that a select over it records the awaited call. */
void kin__latch_set_call(kin_latch *l, uint32_t ctx, uint32_t handle);

/* Keeps l's memory alive past a concurrent kin_latch_destroy until the
 * matching kin__latch_unref, which frees it if it was the last holder. A
 * reference must be taken while l is known to be alive (e.g. under the lock
 * that guards the table it was found in). */
void kin__latch_ref(kin_latch *l);
void kin__latch_unref(kin_latch *l);

/* Records what call t waits for (ctx:handle running fn), or clears it
 * (ctx KIN_NO_CTX). t may be NULL. */
void kin__task_await_call(kin_task *t, uint32_t ctx, uint32_t handle,
                          const char *fn);

/* Records that t waits for the service call whose reply comes to handle
 * (fn: "service.function"). Cleared as kin__task_await_call clears. */
void kin__task_await_service(kin_task *t, uint32_t handle, const char *fn);

/* Initialises t's lock and times; the caller fills identity fields. */
void kin__task_init(kin_task *t, uint32_t ctx, uint32_t id, const char *name);
void kin__task_fini(kin_task *t);

/* Makes t the calling thread's task (NULL clears it); returns the old one. */
kin_task *kin__task_set_self(kin_task *t);
/* The id of the task the calling thread was adopted as (router/adopt.c),
 * kept between its kin calls, when it has no current task: its log
 * records name it as ps does. 0: none. Calling thread only. */
void kin__task_set_home(uint32_t id);
uint32_t kin__task_home(void);

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
