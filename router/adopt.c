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

/* A thread may call into several nodes of the process (two masters, a test
 * and its helpers): one record per node, a few nodes per thread. A node
 * beyond that takes the place of the least recently adopted one, whose
 * record is ended. */
#define SLOTS 4

typedef struct slot {
    kin_node *node;
    kin_task *task;
    uint64_t epoch;
} slot;

static _Thread_local slot me[SLOTS];
static _Thread_local unsigned next_victim;

static pthread_key_t exit_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
end_slot(slot *s, uint64_t now)
{
    if (s->task && s->epoch == now)
        kin__tasktab_end(&s->node->tasks, s->task, KIN_TASK_DONE, 0);
    *s = (slot){0};
}

static void
on_thread_exit(void *unused)
{
    uint64_t now = atomic_load(&epoch);
    for (int i = 0; i < SLOTS; i++)
        end_slot(&me[i], now);
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

static slot *
slot_for(kin_node *n, uint64_t now)
{
    slot *free_slot = NULL;
    for (int i = 0; i < SLOTS; i++) {
        if (me[i].task && me[i].node == n && me[i].epoch == now)
            return &me[i];
        if (!free_slot && (!me[i].task || me[i].epoch != now))
            free_slot = &me[i];
    }
    if (!free_slot) {
        free_slot = &me[next_victim++ % SLOTS];
        end_slot(free_slot, now);
    }
    *free_slot = (slot){0};
    return free_slot;
}

kin_task *
kin__adopt_begin(kin_node *n)
{
    kin_task *self = kin_task_self();
    if (self)
        return self;
    uint64_t now = atomic_load(&epoch);
    slot *s = slot_for(n, now);
    if (!s->task) {
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
        *s = (slot){.node = n, .task = t, .epoch = now};
        pthread_once(&once, make_key);
        pthread_setspecific(exit_key, me);
    }
    kin__task_set_self(s->task);
    return s->task;
}

void
kin__adopt_end(kin_task *t)
{
    for (int i = 0; t && i < SLOTS; i++) {
        if (t == me[i].task) {
            /* An application thread lives on after a cancel: the cancel
             * ends the one blocking call it interrupted, not every later
             * one. */
            atomic_store(&t->cancel, false);
            kin__task_set_self(NULL);
            return;
        }
    }
}
