/* A context's service state: made and freed with the node, the handles
 * of the service messages, jobs run on the broker for other threads, a
 * supervisor's offers and holds for its children, and the small shared
 * rules (names, the deadline of the call a thread serves). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/task.h"
#include "router/service_impl.h"

static _Thread_local uint64_t call_deadline;

uint64_t
kin__call_deadline(void)
{
    return call_deadline;
}

void
kin__call_deadline_set(uint64_t ns)
{
    call_deadline = ns;
}

void
kin__svc_job_done(job *j)
{
    struct kin__services *ss = j->n->svc;
    pthread_mutex_lock(&ss->mu);
    j->done = true;
    pthread_cond_broadcast(&ss->cond);
    pthread_mutex_unlock(&ss->mu);
}

kin_err
kin__svc_run_job(kin_node *n, void (*fn)(void *, void *), job *j)
{
    if (kin__broker_on_thread(n->broker))
        return -EDEADLK;
    j->n = n;
    kin_err e = kin__broker_defer(n->broker, fn, j, NULL);
    if (e)
        return e;
    struct kin__services *ss = n->svc;
    pthread_mutex_lock(&ss->mu);
    while (!j->done)
        pthread_cond_wait(&ss->cond, &ss->mu);
    pthread_mutex_unlock(&ss->mu);
    return KIN_OK;
}

/* Broker: a supervisor's child offers (on its behalf) or holds. */
static void
for_job(void *arg, void *unused)
{
    (void)unused;
    job *j = arg;
    kin_node *n = j->n;
    kin__svc_lock(n);
    for (size_t i = 0; j->names && j->names[i]; i++) {
        size_t len = strlen(j->names[i]);
        if (!kin__service_name_ok(j->names[i], len))
            continue;
        svc *s = kin__svc_find_or_add(n, j->names[i], len);
        if (!s)
            continue;
        if (j->delta) {
            s->own_hold += j->delta;
            if (s->own_hold < 0)
                s->own_hold = 0;
            kin__svc_announce_hold(n, s);
        } else if (kin__u32map_has(&n->routes, j->ctx)) {
            kin__svc_provider_add(n, s, j->ctx, j->ctx, 1, j->bound);
        }
        kin__svc_pump(n, s);
    }
    kin__svc_unlock(n);
    kin__svc_job_done(j);
}

void
kin__service_offer_for(kin_node *n, uint32_t child, const char *const *names,
                       int bound)
{
    job j = {.ctx = child, .names = names, .bound = bound > 0 ? bound : 4};
    kin__svc_run_job(n, for_job, &j);
}

void
kin__service_hold(kin_node *n, const char *const *names, int delta)
{
    job j = {.names = names, .delta = delta};
    kin__svc_run_job(n, for_job, &j);
}

/* --- set up ----------------------------------------------------------------
 */

/* The table's handlers, under rmu (see kin__svc_fast_send). */
#define LOCKED(name)                                                           \
    static void locked_##name(kin_node *n, kin_msg *m, void *arg)              \
    {                                                                          \
        kin__svc_lock(n);                                                      \
        kin__svc_##name(n, m, arg);                                            \
        kin__svc_unlock(n);                                                    \
    }
LOCKED(on_add)
LOCKED(on_del)
LOCKED(on_hold)
LOCKED(on_call)
#undef LOCKED

kin_err
kin__services_start(kin_node *n)
{
    struct kin__services *ss = calloc(1, sizeof *ss);
    if (!ss)
        return -ENOMEM;
    pthread_mutex_init(&ss->mu, NULL);
    pthread_mutexattr_t ra;
    pthread_mutexattr_init(&ra);
    pthread_mutexattr_settype(&ra, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&ss->rmu, &ra);
    pthread_mutexattr_destroy(&ra);
    pthread_cond_init(&ss->cond, NULL);
    ss->rng = 0x9e3779b97f4a7c15u ^ ((uint64_t)n->id << 17) ^ kin__now_ns();
    if (!ss->rng)
        ss->rng = 1;
    n->svc = ss;
    static const struct {
        uint32_t handle;
        kin_policy policy;
        kin__handle_fn fn;
    } hs[] = {
        {KIN_HANDLE_SVC_ADD, KIN_POLICY_CHILD, locked_on_add},
        {KIN_HANDLE_SVC_DEL, KIN_POLICY_CHILD, locked_on_del},
        {KIN_HANDLE_SVC_HOLD, KIN_POLICY_CHILD, locked_on_hold},
        /* Operators are refused where they attach (router.c); the
         * service's own policy is checked by its provider. */
        {KIN_HANDLE_SVC_CALL, KIN_POLICY_ANY, locked_on_call},
        {KIN_HANDLE_SVC_RUN, KIN_POLICY_ANY, kin__svc_on_run},
    };
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) {
        kin__handler h = {.handle = hs[i].handle,
                          .policy = hs[i].policy,
                          .respondent = KIN_NO_CTX,
                          .fn = hs[i].fn};
        kin_err e = kin__handles_add(n, &h, NULL);
        if (e)
            return e;
    }
    return KIN_OK;
}

void
kin__services_free(kin_node *n)
{
    struct kin__services *ss = n->svc;
    if (!ss)
        return;
    kin__svc_calls_free(n);
    kin__u32map_fini(&ss->direct);
    for (int i = 0; i < ss->len; i++) {
        svc *s = ss->items[i];
        free(s->provs);
        free(s->holds);
        free(s);
    }
    free(ss->items);
    free(ss->offers);
    pthread_cond_destroy(&ss->cond);
    pthread_mutex_destroy(&ss->mu);
    pthread_mutex_destroy(&ss->rmu);
    free(ss);
    n->svc = NULL;
}
