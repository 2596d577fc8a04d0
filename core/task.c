/* Task records and the calling thread's current task. */
#include "core/task.h"
#include "core/str.h"
#include "core/sync.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Thread_local kin_task *self;
static _Thread_local uint32_t home;
static _Thread_local int tid;

void
kin__deadline(struct timespec *ts, clockid_t clock, int ms)
{
    clock_gettime(clock, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int
kin__gettid(void)
{
    if (!tid)
        tid = gettid();
    return tid;
}

uint64_t
kin__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
kin__task_init(kin_task *t, uint32_t ctx, uint32_t id, const char *name)
{
    memset(t, 0, sizeof *t);
    t->ctx = ctx;
    t->id = id;
    kin__str_copy(t->name, sizeof t->name, name);
    pthread_mutex_init(&t->mu, NULL);
    t->created_ns = kin__now_ns();
    t->await_ctx = UINT32_MAX;
    atomic_store(&t->state, KIN_TASK_PENDING);
}

void
kin__task_fini(kin_task *t)
{
    pthread_mutex_destroy(&t->mu);
}

kin_task *
kin__task_set_self(kin_task *t)
{
    kin_task *old = self;
    self = t;
    return old;
}

void
kin__task_set_home(uint32_t id)
{
    home = id;
}

uint32_t
kin__task_home(void)
{
    return home;
}

kin_task *
kin_task_self(void)
{
    return self;
}

bool
kin_task_cancelled(void)
{
    return kin__task_cancel_pending(self);
}

bool
kin__task_cancel_pending(kin_task *t)
{
    return t && atomic_load_explicit(&t->cancel, memory_order_acquire);
}

void
kin__task_wait_begin(kin_task *t, void (*wake)(void *), void *obj,
                     const char *what)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->wake = wake;
    t->wake_obj = obj;
    t->wait_what = what;
    t->wait_since_ns = kin__now_ns();
    atomic_store(&t->state, KIN_TASK_WAITING);
    pthread_mutex_unlock(&t->mu);
}

void
kin__task_wait_end(kin_task *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->wake = NULL;
    t->wake_obj = NULL;
    t->wait_what = NULL;
    atomic_store(&t->state, KIN_TASK_RUNNING);
    pthread_mutex_unlock(&t->mu);
}

void
kin__task_await_call(kin_task *t, uint32_t ctx, uint32_t handle, const char *fn)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->await_ctx = ctx;
    t->await_handle = handle;
    kin__str_copy(t->await_fn, sizeof t->await_fn, fn);
    t->await_svc = false;
    pthread_mutex_unlock(&t->mu);
}

void
kin__task_await_service(kin_task *t, uint32_t handle, const char *fn)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->await_ctx = UINT32_MAX; /* KIN_NO_CTX */
    t->await_handle = handle;
    kin__str_copy(t->await_fn, sizeof t->await_fn, fn);
    t->await_svc = true;
    pthread_mutex_unlock(&t->mu);
}

void
kin__task_await_calls(kin_task *t, const uint32_t (*calls)[2], uint32_t n)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->n_awaits = n;
    for (uint32_t i = 0; i < n && i < KIN_TASK_MAX_AWAITS; i++) {
        t->awaits[i].ctx = calls[i][0];
        t->awaits[i].handle = calls[i][1];
    }
    pthread_mutex_unlock(&t->mu);
}

void
kin__task_cancel(kin_task *t, uint32_t by_ctx, uint32_t by_task)
{
    pthread_mutex_lock(&t->mu);
    if (!atomic_load(&t->cancel)) {
        t->cancelled_by_ctx = by_ctx;
        t->cancelled_by_task = by_task;
    }
    /* Set the flag before waking: a waiter checks it under its own lock
     * after registering wake, so it either sees the flag or gets woken. */
    atomic_store_explicit(&t->cancel, true, memory_order_release);
    if (t->wake)
        t->wake(t->wake_obj);
    pthread_mutex_unlock(&t->mu);
}

typedef struct sleeper {
    pthread_mutex_t mu;
    pthread_cond_t cond;
} sleeper;

/* Called with the task's lock held when it is cancelled. */
static void
wake_sleeper(void *obj)
{
    sleeper *s = obj;
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

kin_err
kin_task_sleep(int ms)
{
    kin_task *t = self;
    sleeper s;
    pthread_mutex_init(&s.mu, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&s.cond, &a);
    pthread_condattr_destroy(&a);
    struct timespec dl;
    kin__deadline(&dl, CLOCK_MONOTONIC, ms > 0 ? ms : 0);
    kin__task_wait_begin(t, wake_sleeper, &s, "sleep");
    kin_err e = KIN_OK;
    pthread_mutex_lock(&s.mu);
    /* The flag is checked under s.mu, which the waker takes: no lost
     * wake-up. */
    while (!(e = kin__task_cancel_pending(t) ? KIN_ECANCELLED : KIN_OK)) {
        if (ms < 0)
            pthread_cond_wait(&s.cond, &s.mu); /* until cancelled */
        else if (pthread_cond_timedwait(&s.cond, &s.mu, &dl) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&s.mu);
    kin__task_wait_end(t);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.mu);
    return e;
}

uint32_t
kin_task_id(const kin_task *t)
{
    return t->id;
}

const char *
kin_task_state_name(kin_task_state s)
{
    static const char *names[] = {"pending", "running", "waiting",
                                  "done",    "failed",  "cancelled"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}
