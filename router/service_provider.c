/* The provider side: this context's own offers (kin_service_offer,
 * withdraw, drain) and the admission of the SVC_RUN calls resolvers send
 * it. The offers are under s->mu (any thread); the table learns of them
 * through a broker job. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg_internal.h"
#include "core/sync.h"
#include "router/call_impl.h"
#include "router/service_impl.h"

/* --- this context's own offers ---------------------------------------------
 */

static offer *
find_offer(struct kin__services *ss, const char *name, size_t len)
{
    for (int i = 0; i < ss->noffers; i++)
        if (strlen(ss->offers[i].name) == len &&
            !memcmp(ss->offers[i].name, name, len))
            return &ss->offers[i];
    return NULL;
}

/* Whether this context admits the service call (fn, svc_len bytes of it
 * the service) from auth: it has not withdrawn the service and its policy
 * lets auth in; when it does, the offer counts the call as running.
 * child_ok: whether auth is a linked child (asked only for the CHILD
 * policy; NULL: it is not, without asking). *withdrawn: why not. */
static bool
admit(kin_node *n, const char *fn, size_t svc_len, uint32_t auth,
      bool (*child_ok)(kin_node *, uint32_t), bool *withdrawn)
{
    struct kin__services *ss = n->svc;
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, fn, svc_len);
    *withdrawn = o && o->withdrawn;
    kin_service_policy policy = o ? o->policy : KIN_SERVICE_TREE;
    bool allowed =
        policy == KIN_SERVICE_TREE ||
        (policy == KIN_SERVICE_PARENT && kin__is_ancestor_or_self(n, auth)) ||
        (policy == KIN_SERVICE_CHILD && child_ok && child_ok(n, auth));
    bool in = !*withdrawn && allowed;
    if (o && in)
        o->running++;
    pthread_mutex_unlock(&ss->mu);
    return in;
}

/* SVC_RUN [fn, 0, remaining ms, args...] from a resolver: admitted when
 * this context has not withdrawn the service and its policy lets the
 * caller (auth) in; then it runs as a call. */
void
kin__svc_on_run(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    struct kin__services *ss = n->svc;
    kin__svc_call_head h;
    if (kin__svc_call_read(m->body, m->len, &h)) {
        ss->bad++;
        kin__reply_dead(n, m, KIN_EBADMSG, "malformed service call");
        return;
    }
    const char *fn = h.fn;
    size_t len = h.svc_len;
    bool withdrawn;
    if (admit(n, fn, len, m->auth, kin__node_child_linked, &withdrawn)) {
        kin__calls_dispatch(n, m);
        return;
    }
    char why[128];
    if (withdrawn) {
        snprintf(why, sizeof why, "'%.*s' withdrawn at context %u", (int)len,
                 fn, n->id);
        kin__reply_dead(n, m, KIN_ENOPROVIDER, why);
        return;
    }
    snprintf(why, sizeof why,
             "context %u may not call '%.*s' at %u (service policy)", m->auth,
             (int)len, fn, n->id);
    kin__reply_dead(n, m, KIN_EREFUSED, why);
}

bool
kin__svc_admit_here(kin_node *n, const kin_msg *m)
{
    kin__svc_call_head h;
    bool withdrawn;
    return n->svc && !kin__svc_call_read(m->body, m->len, &h) &&
           admit(n, h.fn, h.svc_len, m->auth, NULL, &withdrawn);
}

void
kin__service_stopped(kin_node *n, const kin_msg *m, bool started)
{
    kin_msg *d = NULL;
    if (!m->reply_to ||
        kin__msg_new_dead(&d, m, n->id,
                          started ? KIN_EPEERGONE : KIN_ENOPROVIDER,
                          started ? "provider stopped during the call"
                                  : "provider stopped before the call started"))
        return;
    atomic_fetch_add(&n->stats.dead_sent, 1);
    d->src = d->auth = n->id;
    /* To the resolver's broker thread even when it is this context's: its
     * bookkeeping sees the reply there (kin__svc_claim). */
    if (kin__broker_on_thread(n->broker))
        kin__route(n, d);
    else if (kin__node_send_raw(n, &d))
        kin_msg_destroy(&d);
}

void
kin__service_run_done(kin_node *n, const char *fn, size_t fn_len)
{
    struct kin__services *ss = n->svc;
    const char *dot = memchr(fn, '.', fn_len);
    if (!ss || !dot)
        return;
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, fn, (size_t)(dot - fn));
    if (o && o->running > 0 && --o->running == 0)
        pthread_cond_broadcast(&ss->cond);
    pthread_mutex_unlock(&ss->mu);
}

/* Broker: this context's table gains or loses itself as a provider. */
static void
own_job(void *arg, void *unused)
{
    (void)unused;
    job *j = arg;
    kin_node *n = j->n;
    svc *s = kin__svc_find_or_add(n, j->name, strlen(j->name));
    if (s && j->add)
        kin__svc_provider_add(n, s, n->id, n->id, 0, j->bound);
    else if (s)
        kin__svc_provider_del(n, s, n->id);
    kin__svc_job_done(j);
}

kin_err
kin_service_offer(kin_node *n, const char *name, const kin_service_opts *opts)
{
    if (!n || !name || !kin__service_name_ok(name, strlen(name)) ||
        n->is_operator ||
        (opts &&
         ((unsigned)opts->policy > KIN_SERVICE_CHILD || opts->bound < 0)))
        return -EINVAL;
    struct kin__services *ss = n->svc;
    int bound = opts && opts->bound ? opts->bound : kin__calls_workers(n);
    if (bound < 1)
        bound = 1;
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, name, strlen(name));
    if (!o && ss->noffers == ss->ocap) {
        int cap = ss->ocap ? ss->ocap * 2 : 4;
        offer *items = realloc(ss->offers, (size_t)cap * sizeof *items);
        if (items) {
            ss->offers = items;
            ss->ocap = cap;
        }
    }
    if (!o && ss->noffers < ss->ocap) {
        o = &ss->offers[ss->noffers++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", name);
    }
    if (o) {
        o->policy = opts ? opts->policy : KIN_SERVICE_TREE;
        o->bound = bound;
        o->withdrawn = false;
    }
    pthread_mutex_unlock(&ss->mu);
    if (!o)
        return -ENOMEM;
    job j = {.add = true, .bound = bound};
    snprintf(j.name, sizeof j.name, "%s", name);
    return kin__svc_run_job(n, own_job, &j);
}

kin_err
kin_service_withdraw(kin_node *n, const char *name)
{
    if (!n || !name || !kin__service_name_ok(name, strlen(name)))
        return -EINVAL;
    struct kin__services *ss = n->svc;
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, name, strlen(name));
    bool had = o && !o->withdrawn;
    if (o)
        o->withdrawn = true;
    pthread_mutex_unlock(&ss->mu);
    if (!had)
        return -ENOENT;
    job j = {.add = false};
    snprintf(j.name, sizeof j.name, "%s", name);
    return kin__svc_run_job(n, own_job, &j);
}

kin_err
kin_service_drain(kin_node *n, const char *name, int timeout_ms)
{
    kin_err e = kin_service_withdraw(n, name);
    if (e)
        return e;
    struct kin__services *ss = n->svc;
    struct timespec ts;
    const struct timespec *dl = kin__deadline_or_forever(&ts, timeout_ms);
    pthread_mutex_lock(&ss->mu);
    offer *o = find_offer(ss, name, strlen(name));
    while (o && o->running > 0 && e == KIN_OK) {
        if (kin__cond_wait_dl(&ss->cond, &ss->mu, dl) && o->running > 0)
            e = KIN_ETIMEOUT;
        o = find_offer(ss, name, strlen(name));
    }
    pthread_mutex_unlock(&ss->mu);
    return e;
}
