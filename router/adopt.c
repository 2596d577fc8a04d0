/* Application threads that call into kin are adopted as tasks, so the await
 * graph has no holes: a thread blocked in kin_call_sync shows up in ps as a
 * task waiting on the remote call. The record lives until the thread exits
 * (or its node goes away). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "core/task.h"
#include "router/node_impl.h"

/* Bumped when a node is destroyed: adopted records of older nodes are gone
 * and must not be touched. */
static atomic_uint_fast64_t epoch = 1;

static _Thread_local struct {
    kin_node *node;
    kin_task *task;
    uint64_t epoch;
} me;

static pthread_key_t exit_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
on_thread_exit(void *unused)
{
    if (me.task && me.epoch == atomic_load(&epoch))
        kin__tasktab_end(&me.node->tasks, me.task, KIN_TASK_DONE, 0);
    me.task = NULL;
}

static void
make_key(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
}

void
kin__adopt_forget_all(void)
{
    atomic_fetch_add(&epoch, 1);
}

kin_task *
kin__adopt_begin(kin_node *n)
{
    kin_task *self = kin_task_self();
    if (self)
        return self;
    uint64_t now = atomic_load(&epoch);
    if (!me.task || me.node != n || me.epoch != now) {
        char name[48];
        int tid = gettid();
        if (tid == getpid())
            snprintf(name, sizeof name, "main");
        else
            snprintf(name, sizeof name, "thread %d", tid);
        kin_task *t = kin__tasktab_add(&n->tasks, name, "");
        if (!t)
            return NULL;
        t->persistent = true;
        t->tid = tid;
        t->started_ns = t->created_ns;
        atomic_store(&t->state, KIN_TASK_RUNNING);
        me.node = n;
        me.task = t;
        me.epoch = now;
        pthread_once(&once, make_key);
        pthread_setspecific(exit_key, &me);
    }
    kin__task_set_self(me.task);
    return me.task;
}

void
kin__adopt_end(kin_task *t)
{
    if (t && t == me.task) {
        /* An application thread lives on after a cancel: the cancel ends
         * the one blocking call it interrupted, not every later one. */
        atomic_store(&t->cancel, false);
        kin__task_set_self(NULL);
    }
}
