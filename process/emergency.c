/* The node-wide emergency stop: a trip terminates every child at once and
 * kills the stragglers after their stop timeout, tells the supervisors
 * (watchers), and makes a serving child exit with KIN_EXIT_EMERGENCY so
 * its parent trips in turn, up to the master. Also the node's process
 * state (kin__procs), created on first use. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "core/log_internal.h"
#include "core/sync.h"
#include "process/child.h"
#include "process/procs.h"
#include "router/node_impl.h"

kin__procs *
kin__procs_of(kin_node *n)
{
    pthread_mutex_lock(&n->mu);
    if (!n->procs) {
        kin__procs *p = calloc(1, sizeof *p);
        if (p) {
            n->procs = p;
            n->before_destroy = kin__procs_destroy;
        }
    }
    kin__procs *p = n->procs;
    pthread_mutex_unlock(&n->mu);
    return p;
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
    pthread_mutex_lock(&n->mu);
    kin__procs *p = n->procs; /* NULL once the node's destroy is through */
    if (!p || p->tripped) {
        pthread_mutex_unlock(&n->mu);
        return;
    }
    p->tripped = true;
    p->origin = origin;
    for (kin_child *c = p->children; c; c = c->next)
        kin__child_terminate(c, c->stop_timeout_ms);
    for (kin__watcher *w = p->watchers; w; w = w->next)
        w->on_trip(w->arg);
    void (*exit_hook)(void) = p->on_trip_exit;
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->mu);
    KIN_ERROR("context %u: emergency stop (origin %u)", n->id, origin);
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
    return kin__broker_defer(n->broker, trip_job, n, (void *)(uintptr_t)n->id);
}

bool
kin_emergency_stopped(kin_node *n, uint32_t *origin)
{
    pthread_mutex_lock(&n->mu);
    kin__procs *p = n->procs;
    bool tripped = p && p->tripped;
    if (tripped && origin)
        *origin = p->origin;
    pthread_mutex_unlock(&n->mu);
    return tripped;
}

kin_err
kin_emergency_wait(kin_node *n, int timeout_ms)
{
    struct timespec ts;
    const struct timespec *dl = kin__deadline_or_forever(&ts, timeout_ms);
    kin_err e = KIN_OK;
    pthread_mutex_lock(&n->mu);
    for (;;) {
        kin__procs *p = n->procs;
        bool done = p && p->tripped;
        for (kin_child *c = done ? p->children : NULL; c; c = c->next)
            done &= c->exited;
        if (done)
            break;
        if (kin__cond_wait_dl(&n->cond, &n->mu, dl) == ETIMEDOUT) {
            e = KIN_ETIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&n->mu);
    return e;
}

kin_err
kin__procs_watch(kin_node *n, kin__watcher *w)
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&n->mu);
    w->next = p->watchers;
    p->watchers = w;
    bool tripped = p->tripped;
    pthread_mutex_unlock(&n->mu);
    if (tripped)
        w->on_trip(w->arg);
    return KIN_OK;
}

void
kin__procs_unwatch(kin_node *n, kin__watcher *w)
{
    pthread_mutex_lock(&n->mu);
    kin__procs *p = n->procs;
    for (kin__watcher **q = p ? &p->watchers : NULL; q && *q; q = &(*q)->next) {
        if (*q == w) {
            *q = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&n->mu);
}

void
kin__procs_on_trip_exit(kin_node *n, void (*fn)(void))
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return;
    pthread_mutex_lock(&n->mu);
    p->on_trip_exit = fn;
    bool tripped = p->tripped;
    pthread_mutex_unlock(&n->mu);
    if (tripped)
        fn();
}
