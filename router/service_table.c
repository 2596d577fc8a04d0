/* The service table: the providers of this context's subtree and the
 * ones restarting there, as SVC_ADD / SVC_DEL / SVC_HOLD report them a hop
 * at a time, passed on to the parent; and its listing. Broker thread,
 * except kin_service_list (a job). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pack_internal.h"
#include "router/service_impl.h"

#define UNLINK(p) ((uint32_t)((uintptr_t)(p)-1u))

/* --- the table -------------------------------------------------------------
 */

svc *
kin__svc_find(kin_node *n, const char *name, size_t len)
{
    struct kin__services *ss = n->svc;
    /* Calls come in runs to one service: the last one first (entries are
     * never freed while the node lives). */
    svc *s = ss->last;
    if (s && s->name_len == len && !memcmp(s->name, name, len))
        return s;
    for (int i = 0; i < ss->len; i++) {
        s = ss->items[i];
        if (s->name_len == len && !memcmp(s->name, name, len))
            return ss->last = s;
    }
    return NULL;
}

svc *
kin__svc_find_or_add(kin_node *n, const char *name, size_t len)
{
    svc *s = kin__svc_find(n, name, len);
    if (s)
        return s;
    struct kin__services *ss = n->svc;
    if (ss->len == ss->cap) {
        int cap = ss->cap ? ss->cap * 2 : 8;
        svc **items = realloc(ss->items, (size_t)cap * sizeof *items);
        if (!items)
            return NULL;
        ss->items = items;
        ss->cap = cap;
    }
    if (!(s = calloc(1, sizeof *s)))
        return NULL;
    memcpy(s->name, name, len);
    s->name_len = len;
    s->warm = NO_PROV;
    ss->items[ss->len++] = s;
    return s;
}

prov *
kin__svc_find_prov(svc *s, uint32_t ctx)
{
    for (int i = 0; i < s->nprov; i++)
        if (s->provs[i].ctx == ctx)
            return &s->provs[i];
    return NULL;
}

void
kin__svc_provs_changed(svc *s)
{
    s->same_hops = true;
    for (int i = 1; i < s->nprov && s->same_hops; i++)
        s->same_hops = s->provs[i].hops == s->provs[0].hops;
}

int
kin__svc_holds(const svc *s)
{
    int sum = s->own_hold;
    for (int i = 0; i < s->nholds; i++)
        sum += s->holds[i].count;
    return sum;
}

/* --- sending ---------------------------------------------------------------
 */

/* A body of msgpack objects packed with picture, sent to the parent. */
static void
send_up(kin_node *n, uint32_t handle, const char *picture, ...)
{
    if (!n->up || n->parent_lost || n->is_operator)
        return;
    kin_buf b = {0};
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vpack(&b, picture, ap);
    va_end(ap);
    kin_msg *m = NULL;
    if (!e && kin_msg_new_copy(&m, b.data, b.len) == KIN_OK) {
        m->dst = n->parent_id;
        m->handle = handle;
        kin__reply_send(n, m);
    }
    kin_buf_release(&b);
}

static void
announce_add(kin_node *n, svc *s, const prov *p)
{
    send_up(n, KIN_HANDLE_SVC_ADD, "suuu", s->name, p->ctx, p->hops,
            (uint32_t)p->bound);
}

void
kin__svc_announce_hold(kin_node *n, svc *s)
{
    send_up(n, KIN_HANDLE_SVC_HOLD, "suu", s->name, n->id,
            (uint32_t)kin__svc_holds(s));
}

/* --- offers from below -----------------------------------------------------
 */

/* Whether ctx is m's sender (a child) or lives behind it. */
static bool
from_subtree(kin_node *n, const kin_msg *m, uint32_t ctx)
{
    void *via = kin__u32map_get(&n->routes, ctx);
    return kin__u32map_has(&n->children, m->src) && via &&
           UNLINK(via) == m->src;
}

static void
bad_offer(kin_node *n, kin_msg *m)
{
    n->svc->bad++;
    atomic_fetch_add(&n->stats.malformed, 1);
    kin_msg_destroy(&m);
}

static kin_err
add_prov(svc *s, uint32_t ctx, uint32_t via, uint32_t hops, int bound,
         prov **out)
{
    prov *v = kin__svc_find_prov(s, ctx);
    if (!v) {
        if (s->nprov == s->cap) {
            int cap = s->cap ? s->cap * 2 : 4;
            prov *items = realloc(s->provs, (size_t)cap * sizeof *items);
            if (!items)
                return -ENOMEM;
            s->provs = items;
            s->cap = cap;
        }
        v = &s->provs[s->nprov++];
        memset(v, 0, sizeof *v);
        v->ctx = ctx;
    }
    v->via = via;
    v->hops = hops;
    v->bound = bound;
    /* Offered again: it takes calls. */
    v->refusing = false;
    v->unreachable_until = 0;
    kin__svc_provs_changed(s);
    *out = v;
    return KIN_OK;
}

/* Adds a provider and tells the parent; queued calls may go now. */
void
kin__svc_provider_add(kin_node *n, svc *s, uint32_t ctx, uint32_t via,
                      uint32_t hops, int bound)
{
    prov *v;
    if (add_prov(s, ctx, via, hops, bound, &v))
        return;
    announce_add(n, s, v);
    kin__svc_pump(n, s);
}

void
kin__svc_provider_del(kin_node *n, svc *s, uint32_t ctx)
{
    prov *v = kin__svc_find_prov(s, ctx);
    if (!v)
        return;
    /* Calls running there finish; their replies find no provider entry. */
    *v = s->provs[--s->nprov];
    kin__svc_provs_changed(s);
    send_up(n, KIN_HANDLE_SVC_DEL, "su", s->name, ctx);
    kin__svc_pump(n, s);
}

/* SVC_ADD [service, provider, hops from the sender, bound]. */
void
kin__svc_on_add(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    const char *name;
    size_t len;
    uint32_t ctx, hops, bound;
    if (kin__svc_add_read(m->body, m->len, &name, &len, &ctx, &hops, &bound) ||
        !from_subtree(n, m, ctx)) {
        bad_offer(n, m);
        return;
    }
    svc *s = kin__svc_find_or_add(n, name, len);
    if (s)
        kin__svc_provider_add(n, s, ctx, m->src, hops + 1, (int)bound);
    kin_msg_destroy(&m);
}

/* SVC_DEL [service, provider]. */
void
kin__svc_on_del(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    const char *name;
    size_t len;
    uint32_t ctx;
    if (kin__svc_del_read(m->body, m->len, &name, &len, &ctx) ||
        !from_subtree(n, m, ctx)) {
        bad_offer(n, m);
        return;
    }
    svc *s = kin__svc_find(n, name, len);
    if (s)
        kin__svc_provider_del(n, s, ctx);
    kin_msg_destroy(&m);
}

static void
set_hold(svc *s, uint32_t origin, uint32_t via, int count)
{
    for (int i = 0; i < s->nholds; i++) {
        if (s->holds[i].origin == origin) {
            if (count)
                s->holds[i].count = count;
            else
                s->holds[i] = s->holds[--s->nholds];
            return;
        }
    }
    if (!count)
        return;
    if (s->nholds == s->hcap) {
        int cap = s->hcap ? s->hcap * 2 : 4;
        hold *items = realloc(s->holds, (size_t)cap * sizeof *items);
        if (!items)
            return;
        s->holds = items;
        s->hcap = cap;
    }
    s->holds[s->nholds++] = (hold){origin, via, count};
}

/* SVC_HOLD [service, origin, providers restarting there]. */
void
kin__svc_on_hold(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    const char *name;
    size_t len;
    uint32_t origin, count;
    if (kin__svc_hold_read(m->body, m->len, &name, &len, &origin, &count) ||
        !from_subtree(n, m, origin)) {
        bad_offer(n, m);
        return;
    }
    svc *s = kin__svc_find_or_add(n, name, len);
    if (s) {
        set_hold(s, origin, m->src, (int)count);
        send_up(n, KIN_HANDLE_SVC_HOLD, "suu", s->name, origin, count);
        kin__svc_pump(n, s);
    }
    kin_msg_destroy(&m);
}

void
kin__services_gone(kin_node *n, const uint32_t *ids, size_t count)
{
    struct kin__services *ss = n->svc;
    if (!ss || !count)
        return;
    kin__svc_lock(n);
    for (int i = 0; i < ss->len; i++) {
        svc *s = ss->items[i];
        for (int k = 0; k < s->nprov;) {
            bool gone = false;
            for (size_t j = 0; j < count && !gone; j++)
                gone = s->provs[k].ctx == ids[j];
            if (gone)
                s->provs[k] = s->provs[--s->nprov];
            else
                k++;
        }
        kin__svc_provs_changed(s);
        for (int k = 0; k < s->nholds;) {
            bool gone = false;
            for (size_t j = 0; j < count && !gone; j++)
                gone = s->holds[k].origin == ids[j];
            if (gone)
                s->holds[k] = s->holds[--s->nholds];
            else
                k++;
        }
    }
    kin__svc_calls_gone(n, ids, count);
    kin__svc_unlock(n);
}

/* --- listing ---------------------------------------------------------------
 */

int
kin__services_snapshot(kin_node *n, kin_service_info *out, int max,
                       kin_service_provider *pv, int prov_max)
{
    struct kin__services *ss = n->svc;
    kin__svc_lock(n);
    for (int i = 0; i < ss->len && i < max; i++) {
        svc *s = ss->items[i];
        kin_service_info *o = &out[i];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", s->name);
        o->total = s->nprov;
        o->restarting = kin__svc_holds(s);
        o->queued = s->queued;
        o->retried = s->retried;
        o->failed = s->failed;
        o->resolved = s->resolved;
        for (int k = 0; pv && k < s->nprov && k < prov_max; k++) {
            prov *v = &s->provs[k];
            kin_service_provider *to =
                &pv[(size_t)i * (size_t)prov_max + (size_t)k];
            *to = (kin_service_provider){.ctx = v->ctx,
                                         .hops = v->hops,
                                         .bound = v->bound,
                                         .outstanding = v->outstanding,
                                         .served = v->served,
                                         .errors = v->errors,
                                         .retried = v->retried};
            memcpy(to->latency, v->lat, sizeof to->latency);
            o->providers = k + 1;
        }
    }
    int len = ss->len;
    kin__svc_unlock(n);
    return len;
}

static void
list_job(void *arg, void *unused)
{
    (void)unused;
    job *j = arg;
    j->result =
        kin__services_snapshot(j->n, j->out, j->max, j->pv, j->prov_max);
    kin__svc_job_done(j);
}

int
kin_service_list(kin_node *n, kin_service_info *out, int max,
                 kin_service_provider *pv, int prov_max)
{
    job j = {.out = out, .max = max, .pv = pv, .prov_max = prov_max};
    if (kin__svc_run_job(n, list_job, &j))
        return 0;
    return j.result;
}
