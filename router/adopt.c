/* Application threads that call into kin are adopted as tasks, so the await
 * graph has no holes: a thread blocked in kin_call_sync shows up in ps as a
 * task waiting on the remote call. The record lives until the thread exits
 * (or its node goes away). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/task.h"
#include "router/node_impl.h"

/* The live nodes, by address and serial (an address may be reused by a
 * later node). A slot's record may be touched only while its node is
 * live, checked under the lock, which kin__adopt_node_gone takes too. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct live {
    kin_node *node;
    uint64_t serial;
} * live;
static size_t n_live, cap_live;
static uint64_t next_serial = 1;
/* Bumped when a node goes: slots checked since are still good. */
static atomic_uint_fast64_t epoch = 1;

/* A thread may call into several nodes of the process (two masters, a test
 * and its helpers): one record per node, a few nodes per thread. A node
 * beyond that takes the place of the least recently adopted one, whose
 * record is ended. */
#define SLOTS 4

typedef struct slot {
    kin_node *node;
    uint64_t serial;
    kin_task *task;
    uint64_t epoch; /* when the node was last known live */
} slot;

static _Thread_local slot me[SLOTS];
static _Thread_local unsigned next_victim;

static pthread_key_t exit_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static bool
is_live(const slot *s)
{
    for (size_t i = 0; i < n_live; i++)
        if (live[i].node == s->node && live[i].serial == s->serial)
            return true;
    return false;
}

void
kin__adopt_node_new(kin_node *n)
{
    pthread_mutex_lock(&live_mu);
    n->serial = next_serial++;
    if (n_live == cap_live) {
        size_t cap = cap_live ? cap_live * 2 : 8;
        struct live *more = realloc(live, cap * sizeof *live);
        if (more) {
            live = more;
            cap_live = cap;
        }
    }
    if (n_live < cap_live)
        live[n_live++] = (struct live){n, n->serial};
    pthread_mutex_unlock(&live_mu);
}

void
kin__adopt_node_gone(kin_node *n)
{
    pthread_mutex_lock(&live_mu);
    for (size_t i = 0; i < n_live; i++) {
        if (live[i].node == n && live[i].serial == n->serial) {
            live[i] = live[--n_live];
            break;
        }
    }
    atomic_fetch_add(&epoch, 1);
    pthread_mutex_unlock(&live_mu);
}

/* Ends the slot's record if its node is still there; empties the slot. */
static void
end_slot(slot *s)
{
    if (s->task && s->task->id == kin__task_home())
        kin__task_set_home(0);
    if (s->task) {
        pthread_mutex_lock(&live_mu);
        if (is_live(s))
            kin__tasktab_end(&s->node->tasks, s->task, KIN_TASK_DONE, 0);
        pthread_mutex_unlock(&live_mu);
    }
    *s = (slot){0};
}

/* Whether the slot's node is still live; cheap while no node went. */
static bool
still_live(slot *s, uint64_t now)
{
    if (!s->task)
        return false;
    if (s->epoch == now)
        return true;
    pthread_mutex_lock(&live_mu);
    bool ok = is_live(s);
    pthread_mutex_unlock(&live_mu);
    if (ok)
        s->epoch = now;
    else
        *s = (slot){0}; /* its node and records are gone */
    if (!ok)
        kin__task_set_home(0);
    return ok;
}

static void
on_thread_exit(void *unused)
{
    for (int i = 0; i < SLOTS; i++)
        end_slot(&me[i]);
}

static void
make_key(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
}

static slot *
slot_for(kin_node *n, uint64_t now)
{
    slot *free_slot = NULL;
    for (int i = 0; i < SLOTS; i++) {
        bool ok = still_live(&me[i], now);
        if (ok && me[i].node == n && me[i].serial == n->serial)
            return &me[i];
        if (!free_slot && !ok)
            free_slot = &me[i];
    }
    if (!free_slot) {
        free_slot = &me[next_victim++ % SLOTS];
        end_slot(free_slot);
    }
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
        *s = (slot){.node = n, .serial = n->serial, .task = t, .epoch = now};
        pthread_once(&once, make_key);
        pthread_setspecific(exit_key, me);
        kin__task_set_home(t->id);
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
