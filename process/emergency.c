/* The node-wide emergency stop: a trip terminates every child at once and
 * kills the stragglers after their stop timeout, tells the supervisors
 * (watchers), and makes a serving child exit with KIN_EXIT_EMERGENCY so
 * its parent trips in turn, up to the master. Also the node's process
 * state (kin__procs), attached by the context assembly. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "core/log_internal.h"
#include "core/sync.h"
#include "process/child.h"
#include "process/events.h"
#include "process/procs.h"
#include "process/runtime_sweep.h"
#include "router/router.h"

/* The key of the process layer's state in its node. */
static const kin__layer procs_layer = {"process"};

kin__procs *
kin__procs_of(kin_node *n)
{
    return kin__node_layer(n, &procs_layer);
}

uint64_t
kin__procs_restarts(kin_node *n)
{
    kin__procs *ps = kin__procs_of(n);
    return ps ? atomic_load_explicit(&ps->restarts, memory_order_relaxed) : 0;
}

/* Broker thread: a child's HELLO arrived or its link went down; spawn.c
 * waits for the first (or the child's exit) on the layer's cond. */
static void
on_link(void *arg, uint32_t child, bool up)
{
    kin__procs *p = arg;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

kin_err
kin__procs_attach(kin_node *n, bool other_user)
{
    kin__procs *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->node = n;
    p->spawn_refused = other_user;
    kin_err e = kin__node_on_link(n, on_link, p);
    if (!e) /* the join records (a master's: only it has a join endpoint) */
        e = kin__node_on_join(n, kin__ev_join, NULL);
    if (!e)
        e = kin__node_attach(n, &procs_layer, p);
    if (e) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cond);
        free(p);
        return e;
    }
    kin__via_export();
    kin__push_export();
    return KIN_OK;
}

void
kin__procs_free(kin_node *n)
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return;
    kin__node_detach(n, &procs_layer);
    kin__sweep_free(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
}

bool
kin__is_emergency(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == KIN_EXIT_EMERGENCY;
}

/* Broker thread. Terminates every child now and kills the stragglers
 * later; tells the watchers (supervisors) and, in a serving child, kin_init,
 * which then exits with KIN_EXIT_EMERGENCY so the parent trips in turn. */
void
kin__procs_trip(kin_node *n, uint32_t origin)
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    /* Not once the node's children are stopped for its destroy. */
    if (p->stopped || p->tripped) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    p->tripped = true;
    p->origin = origin;
    for (kin_child *c = p->children; c; c = c->next)
        kin__child_terminate(c, c->stop_timeout_ms);
    for (kin__watcher *w = p->watchers; w; w = w->next)
        w->on_trip(w->arg);
    void (*exit_hook)(void) = p->on_trip_exit;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    KIN_ERROR("context %u: emergency stop (origin %u)", kin_node_id(n), origin);
    kin__ev_emergency(kin_node_id(n), origin);
    if (exit_hook)
        exit_hook();
}

static void
trip_job(void *node, void *origin)
{
    kin__procs_trip(node, (uint32_t)(uintptr_t)origin);
}

kin_err
kin_emergency_stop(kin_node *n)
{
    if (!kin__procs_of(n))
        return -ENOMEM;
    return kin__broker_defer(kin__node_broker(n), trip_job, n,
                             (void *)(uintptr_t)kin_node_id(n));
}

bool
kin_emergency_stopped(kin_node *n, uint32_t *origin)
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return false;
    pthread_mutex_lock(&p->mu);
    bool tripped = p->tripped;
    if (tripped && origin)
        *origin = p->origin;
    pthread_mutex_unlock(&p->mu);
    return tripped;
}

kin_err
kin_emergency_wait(kin_node *n, int timeout_ms)
{
    struct timespec ts;
    const struct timespec *dl = kin__deadline_or_forever(&ts, timeout_ms);
    kin_err e = KIN_OK;
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        bool done = p->tripped;
        for (kin_child *c = done ? p->children : NULL; c; c = c->next)
            done &= c->exited;
        if (done)
            break;
        if (kin__cond_wait_dl(&p->cond, &p->mu, dl) == ETIMEDOUT) {
            e = KIN_ETIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return e;
}

kin_err
kin__procs_watch(kin_node *n, kin__watcher *w)
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&p->mu);
    w->next = p->watchers;
    p->watchers = w;
    bool tripped = p->tripped;
    pthread_mutex_unlock(&p->mu);
    if (tripped)
        w->on_trip(w->arg);
    return KIN_OK;
}

void
kin__procs_unwatch(kin_node *n, kin__watcher *w)
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    for (kin__watcher **q = &p->watchers; *q; q = &(*q)->next) {
        if (*q == w) {
            *q = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void
kin__procs_on_trip_exit(kin_node *n, void (*fn)(void))
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->on_trip_exit = fn;
    bool tripped = p->tripped;
    pthread_mutex_unlock(&p->mu);
    if (tripped)
        fn();
}
