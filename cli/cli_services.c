/* kin services: every service of a tree with its providers, gathered from
 * every context's table (each call is counted by the one context that
 * resolved it, so the sums are the tree's), as a table or JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <kin/monitor.h>
#include <kin/service.h>

#include "cli/cli.h"

#define TIMEOUT_MS KIN_CLI_TIMEOUT_MS

/* A provider summed over the resolvers that know it. */
typedef struct mprov {
    kin_service_provider p;
    bool hops_from_master; /* p.hops is the master's count */
} mprov;

typedef struct msvc {
    kin_service_info info; /* info.providers: entries of prov */
    mprov *prov;
    int cap;
} msvc;

typedef struct merged {
    msvc *items;
    size_t len, cap;
} merged;

static msvc *
svc_of(merged *m, const char *name)
{
    for (size_t i = 0; i < m->len; i++)
        if (!strcmp(m->items[i].info.name, name))
            return &m->items[i];
    if (m->len == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 8;
        msvc *more = realloc(m->items, cap * sizeof *more);
        if (!more)
            return NULL;
        m->items = more;
        m->cap = cap;
    }
    msvc *s = &m->items[m->len++];
    memset(s, 0, sizeof *s);
    snprintf(s->info.name, sizeof s->info.name, "%s", name);
    return s;
}

static mprov *
prov_of(msvc *s, uint32_t ctx)
{
    for (int i = 0; i < s->info.providers; i++)
        if (s->prov[i].p.ctx == ctx)
            return &s->prov[i];
    if (s->info.providers == s->cap) {
        int cap = s->cap ? 2 * s->cap : 4;
        mprov *more = realloc(s->prov, (size_t)cap * sizeof *more);
        if (!more)
            return NULL;
        s->prov = more;
        s->cap = cap;
    }
    mprov *v = &s->prov[s->info.providers++];
    memset(v, 0, sizeof *v);
    v->p.ctx = ctx;
    v->p.hops = UINT32_MAX;
    return v;
}

/* Adds context `from`'s table (its services and their providers) to m. */
static kin_err
merge(merged *m, uint32_t from, const kin_service_info *ss, size_t count,
      const kin_service_provider *ps)
{
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        msvc *s = svc_of(m, ss[i].name);
        if (!s)
            return -ENOMEM;
        kin_service_info *t = &s->info;
        /* The master's table holds every provider and every restart. */
        if (ss[i].total > t->total)
            t->total = ss[i].total;
        if (ss[i].restarting > t->restarting)
            t->restarting = ss[i].restarting;
        t->queued += ss[i].queued;
        t->retried += ss[i].retried;
        t->failed += ss[i].failed;
        t->resolved += ss[i].resolved;
        for (int k = 0; k < ss[i].providers; k++, at++) {
            const kin_service_provider *p = &ps[at];
            mprov *v = prov_of(s, p->ctx);
            if (!v)
                return -ENOMEM;
            if (from == KIN_MASTER_ID ||
                (!v->hops_from_master && p->hops < v->p.hops)) {
                v->p.hops = p->hops;
                v->hops_from_master = from == KIN_MASTER_ID;
            }
            v->p.bound = p->bound;
            v->p.outstanding += p->outstanding;
            v->p.served += p->served;
            v->p.errors += p->errors;
            v->p.retried += p->retried;
            for (int b = 0; b < KIN_SERVICE_LAT_BUCKETS; b++)
                v->p.latency[b] += p->latency[b];
        }
    }
    return KIN_OK;
}

static void
merged_free(merged *m)
{
    for (size_t i = 0; i < m->len; i++)
        free(m->items[i].prov);
    free(m->items);
}

static const kin_ctx_info *
ctx_info(const kin_ctx_info *all, size_t count, uint32_t id)
{
    for (size_t i = 0; i < count; i++)
        if (all[i].id == id)
            return &all[i];
    return NULL;
}

static void
fmt_us(char *out, size_t size, double us)
{
    if (us <= 0)
        snprintf(out, size, "-");
    else if (us < 1000)
        snprintf(out, size, "%.0fus", us);
    else if (us < 1e6)
        snprintf(out, size, "%.1fms", us / 1000);
    else
        snprintf(out, size, "%.2fs", us / 1e6);
}

static json_t *
service_json(const msvc *s, const kin_ctx_info *all, size_t nctx)
{
    const kin_service_info *t = &s->info;
    json_t *provs = json_array();
    for (int k = 0; k < t->providers; k++) {
        const kin_service_provider *p = &s->prov[k].p;
        const kin_ctx_info *c = ctx_info(all, nctx, p->ctx);
        json_t *j = json_pack(
            "{s:i,s:s,s:i,s:s,s:i,s:i,s:i,s:I,s:I,s:I,s:f,s:f}", "ctx",
            (int)p->ctx, "name", c ? c->name : "", "pid", c ? c->pid : 0,
            "host", c ? c->host : "", "hops", (int)p->hops, "bound", p->bound,
            "outstanding", p->outstanding, "served", (json_int_t)p->served,
            "errors", (json_int_t)p->errors, "retried", (json_int_t)p->retried,
            "p50_us", kin_service_latency_us(p->latency, 0.5), "p99_us",
            kin_service_latency_us(p->latency, 0.99));
        json_array_append_new(provs, j);
    }
    return json_pack("{s:s,s:i,s:i,s:i,s:I,s:I,s:I,s:o}", "name", t->name,
                     "total", t->total, "restarting", t->restarting, "queued",
                     t->queued, "retried", (json_int_t)t->retried, "failed",
                     (json_int_t)t->failed, "resolved", (json_int_t)t->resolved,
                     "providers", provs);
}

static void
service_print(const msvc *s, const kin_ctx_info *all, size_t nctx)
{
    const kin_service_info *t = &s->info;
    printf("%s: %d provider%s, %d restarting, %d queued; %llu resolved, "
           "%llu retried, %llu failed\n",
           t->name, t->total, t->total == 1 ? "" : "s", t->restarting,
           t->queued, (unsigned long long)t->resolved,
           (unsigned long long)t->retried, (unsigned long long)t->failed);
    if (!t->providers)
        return;
    printf("  %-7s %-16s %-12s %7s %5s %5s %8s %6s %7s %8s %8s\n", "CONTEXT",
           "NAME", "HOST", "PID", "BOUND", "OUT", "SERVED", "ERRORS", "RETRIED",
           "P50", "P99");
    for (int k = 0; k < t->providers; k++) {
        const kin_service_provider *p = &s->prov[k].p;
        const kin_ctx_info *c = ctx_info(all, nctx, p->ctx);
        char p50[16], p99[16];
        fmt_us(p50, sizeof p50, kin_service_latency_us(p->latency, 0.5));
        fmt_us(p99, sizeof p99, kin_service_latency_us(p->latency, 0.99));
        printf("  %-7u %-16.16s %-12.12s %7d %5d %5d %8llu %6llu %7llu %8s "
               "%8s\n",
               p->ctx, c ? c->name : "?", c ? c->host : "?", c ? c->pid : 0,
               p->bound, p->outstanding, (unsigned long long)p->served,
               (unsigned long long)p->errors, (unsigned long long)p->retried,
               p50, p99);
    }
}

static int
usage(FILE *f, int rc)
{
    fprintf(f, "usage: kin services PID [--json]\n  every service of the "
               "tree: its providers (context, name, pid, host, bound,\n  "
               "outstanding, served, errors, retried, p50/p99 round trip "
               "at the resolver)\n  and the calls retried, queued and "
               "failed\n");
    return rc;
}

int
kin__cli_services(int argc, char **argv)
{
    int pid = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        char *end;
        long v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return usage(stdout, 0);
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!pid && (v = strtol(argv[i], &end, 10)) > 0 && !*end) {
            pid = (int)v;
        } else {
            fprintf(stderr, "kin services: unexpected '%s'\n", argv[i]);
            return usage(stderr, 2);
        }
    }
    if (!pid)
        return usage(stderr, 2);
    kin_node *n;
    if (kin__cli_attach(pid, &n))
        return 2;
    kin_ctx_info *all;
    size_t nctx;
    kin_err e = kin__cli_contexts(n, &all, &nctx);
    if (e) {
        fprintf(stderr, "kin services: cannot list contexts: %s\n",
                kin_strerror(e));
        kin_node_destroy(&n);
        return 2;
    }
    merged m = {0};
    for (size_t i = 0; i < nctx && !e; i++) {
        kin_service_info *ss;
        kin_service_provider *ps;
        size_t count;
        kin_err qe =
            kin_monitor_services(n, all[i].id, TIMEOUT_MS, &ss, &count, &ps);
        if (qe) { /* gone meanwhile, or an older kin: its table is missed */
            fprintf(stderr, "kin services: context %u: %s\n", all[i].id,
                    kin_strerror(qe));
            continue;
        }
        e = merge(&m, all[i].id, ss, count, ps);
        free(ss);
        free(ps);
    }
    kin_node_destroy(&n);
    if (e) {
        fprintf(stderr, "kin services: %s\n", kin_strerror(e));
        merged_free(&m);
        free(all);
        return 2;
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < m.len; i++)
            json_array_append_new(arr, service_json(&m.items[i], all, nctx));
        json_t *top = json_pack("{s:i,s:i,s:o}", "version", 1, "master_pid",
                                all[0].pid, "services", arr);
        char *s = json_dumps(top, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (s)
            puts(s);
        free(s);
        json_decref(top);
    } else if (!m.len) {
        printf("no services in this tree\n");
    } else {
        for (size_t i = 0; i < m.len; i++)
            service_print(&m.items[i], all, nctx);
    }
    merged_free(&m);
    free(all);
    return 0;
}
