/* The tree's metrics in the Prometheus text exposition format (0.0.4):
 * every context asked for its info, metrics and service table, then one
 * metric family after another (a family's samples must be together). The
 * names are listed in docs/monitor.md and are stable. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kin/monitor.h>

typedef struct row {
    kin_ctx_info info;
    kin_err err; /* of asking for its metrics */
    kin_ctx_metrics m;
    kin_service_info *svc;
    size_t n_svc;
    kin_service_provider *prov;
} row;

typedef struct out {
    kin_buf *b;
    kin_err e;
} out;

static void put(out *o, const char *fmt, ...) KIN_PRINTF(2, 3);

static void
put(out *o, const char *fmt, ...)
{
    if (o->e)
        return;
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int len = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (len < 0) {
        o->e = -EINVAL;
        return;
    }
    if ((size_t)len < sizeof small) {
        o->e = kin_buf_printf(o->b, "%s", small);
        return;
    }
    char *big = malloc((size_t)len + 1);
    if (!big) {
        o->e = -ENOMEM;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)len + 1, fmt, ap);
    va_end(ap);
    o->e = kin_buf_printf(o->b, "%s", big);
    free(big);
}

/* s with \, " and newline escaped as a label value wants them. */
static void
escape(const char *s, char *dst, size_t size)
{
    size_t k = 0;
    for (; *s && k + 3 < size; s++) {
        if (*s == '\\' || *s == '"') {
            dst[k++] = '\\';
            dst[k++] = *s;
        } else if (*s == '\n') {
            dst[k++] = '\\';
            dst[k++] = 'n';
        } else {
            dst[k++] = *s;
        }
    }
    dst[k] = 0;
}

/* The labels every series of a context carries. */
static void
ctx_labels(const row *r, char *dst, size_t size)
{
    char name[160], host[160];
    escape(r->info.name, name, sizeof name);
    escape(r->info.host, host, sizeof host);
    snprintf(dst, size, "ctx=\"%u\",name=\"%s\",host=\"%s\"", r->info.id, name,
             host);
}

/* A sample value: integers exactly, other values to 9 digits. */
static const char *
num(double v, char *dst, size_t size)
{
    if (v == (double)(int64_t)v && v < 9007199254740992.0 &&
        v > -9007199254740992.0)
        snprintf(dst, size, "%lld", (long long)v);
    else
        snprintf(dst, size, "%.9g", v);
    return dst;
}

static void
family(out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The per-context gauges and counters: one value each per answering context,
 * in the order values() fills them. */
static const struct {
    const char *name, *type, *help;
} scalars[] = {
    {"kin_tasks_ended_total", "counter",
     "tasks ended since the context started"},
    {"kin_workers", "gauge", "worker pool size"},
    {"kin_workers_busy", "gauge", "workers held by running or waiting tasks"},
    {"kin_queue_length", "gauge",
     "calls and spawned tasks waiting for a worker"},
    {"kin_resident_memory_bytes", "gauge",
     "resident set size of the context's process"},
    {"kin_cpu_seconds_total", "counter",
     "user and system CPU time of the context's process"},
    {"kin_uptime_seconds", "gauge", "time since the context started"},
    {"kin_child_restarts_total", "counter",
     "children the context's supervisors restarted"},
    {"kin_log_records_total", "counter", "log records the context sent"},
    {"kin_log_records_dropped_total", "counter",
     "log records dropped because the context's queue was full"},
    {"kin_calls_unknown_total", "counter",
     "calls of no exported function, or malformed"},
    {"kin_calls_uncounted_total", "counter",
     "calls of functions past the context's table of 64"},
};
#define NSCALARS (sizeof scalars / sizeof scalars[0])

static void
values(const row *r, double v[NSCALARS])
{
    const double filled[] = {
        (double)r->m.tasks_ended,
        r->m.workers,
        r->m.workers_busy,
        r->m.tasks_pending,
        (double)r->m.rss_kib * 1024.0,
        r->m.cpu_s,
        r->m.uptime_s,
        (double)r->m.child_restarts,
        (double)r->m.log_records,
        (double)r->m.log_dropped,
        (double)r->m.calls_unknown,
        (double)r->m.calls_uncounted,
    };
    _Static_assert(sizeof filled / sizeof filled[0] == NSCALARS,
                   "one value per entry of scalars[]");
    memcpy(v, filled, sizeof filled);
}

static void
per_ctx(out *o, const row *rows, size_t count)
{
    for (size_t k = 0; k < NSCALARS; k++) {
        family(o, scalars[k].name, scalars[k].type, scalars[k].help);
        for (size_t i = 0; i < count; i++) {
            if (rows[i].err)
                continue;
            char labels[400], n[40];
            double v[NSCALARS];
            values(&rows[i], v);
            ctx_labels(&rows[i], labels, sizeof labels);
            put(o, "%s{%s} %s\n", scalars[k].name, labels,
                num(v[k], n, sizeof n));
        }
    }
}

static void
contexts(out *o, const row *rows, size_t count)
{
    family(o, "kin_context_up", "gauge",
           "1 when the context answered for its metrics, else 0");
    for (size_t i = 0; i < count; i++) {
        char labels[400];
        ctx_labels(&rows[i], labels, sizeof labels);
        put(o, "kin_context_up{%s} %d\n", labels, rows[i].err ? 0 : 1);
    }
    family(o, "kin_context_info", "gauge",
           "always 1: a context's pid and parent context");
    for (size_t i = 0; i < count; i++) {
        char labels[400], parent[16] = "";
        ctx_labels(&rows[i], labels, sizeof labels);
        if (rows[i].info.parent != KIN_NO_CTX)
            snprintf(parent, sizeof parent, "%u", rows[i].info.parent);
        put(o, "kin_context_info{%s,pid=\"%d\",parent=\"%s\"} 1\n", labels,
            rows[i].info.pid, parent);
    }
    family(o, "kin_tasks", "gauge", "live tasks by state");
    static const char *const states[] = {"pending", "running", "waiting"};
    for (size_t i = 0; i < count; i++) {
        if (rows[i].err)
            continue;
        char labels[400];
        ctx_labels(&rows[i], labels, sizeof labels);
        const uint32_t v[3] = {rows[i].m.tasks_pending, rows[i].m.tasks_running,
                               rows[i].m.tasks_waiting};
        for (int s = 0; s < 3; s++)
            put(o, "kin_tasks{%s,state=\"%s\"} %u\n", labels, states[s], v[s]);
    }
    per_ctx(o, rows, count);
}

static void
fn_labels(const row *r, const kin_fn_metrics *f, char *dst, size_t size)
{
    char base[400], fn[160];
    ctx_labels(r, base, sizeof base);
    escape(f->name, fn, sizeof fn);
    snprintf(dst, size, "%s,function=\"%s\"", base, fn);
}

static void
functions(out *o, const row *rows, size_t count)
{
    family(o, "kin_function_calls_total", "counter",
           "calls of an exported function that ended, errors included");
    for (size_t i = 0; i < count; i++) {
        for (size_t k = 0; !rows[i].err && k < rows[i].m.n_functions; k++) {
            const kin_fn_metrics *f = &rows[i].m.functions[k];
            char labels[600];
            fn_labels(&rows[i], f, labels, sizeof labels);
            put(o, "kin_function_calls_total{%s} %llu\n", labels,
                (unsigned long long)f->calls);
        }
    }
    family(o, "kin_function_errors_total", "counter",
           "calls of an exported function that failed, by kind");
    for (size_t i = 0; i < count; i++) {
        for (size_t k = 0; !rows[i].err && k < rows[i].m.n_functions; k++) {
            const kin_fn_metrics *f = &rows[i].m.functions[k];
            char labels[600];
            fn_labels(&rows[i], f, labels, sizeof labels);
            for (int j = 0; j < KIN_FN_ERR_KINDS; j++)
                put(o, "kin_function_errors_total{%s,kind=\"%s\"} %llu\n",
                    labels, kin_fn_err_kind_name(j),
                    (unsigned long long)f->errors[j]);
        }
    }
    family(o, "kin_function_latency_seconds", "histogram",
           "from a call's arrival in the context to its reply");
    for (size_t i = 0; i < count; i++) {
        for (size_t k = 0; !rows[i].err && k < rows[i].m.n_functions; k++) {
            const kin_fn_metrics *f = &rows[i].m.functions[k];
            char labels[600];
            fn_labels(&rows[i], f, labels, sizeof labels);
            uint64_t seen = 0;
            for (int b = 0; b < KIN_FN_LAT_BUCKETS - 1; b++) {
                seen += f->latency[b];
                put(o,
                    "kin_function_latency_seconds_bucket{%s,le=\"%g\"} "
                    "%llu\n",
                    labels, (double)(1ull << b) * 1e-6,
                    (unsigned long long)seen);
            }
            put(o, "kin_function_latency_seconds_bucket{%s,le=\"+Inf\"} %llu\n",
                labels, (unsigned long long)f->calls);
            put(o, "kin_function_latency_seconds_sum{%s} %.9g\n", labels,
                f->latency_sum_s);
            put(o, "kin_function_latency_seconds_count{%s} %llu\n", labels,
                (unsigned long long)f->calls);
        }
    }
}

/* A service's figures: one family per field. */
static void
services(out *o, const row *rows, size_t count)
{
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"kin_service_providers", "gauge", "providers the resolver knows"},
        {"kin_service_providers_restarting", "gauge",
         "providers being restarted by a supervisor"},
        {"kin_service_queued", "gauge", "calls waiting at the resolver"},
        {"kin_service_resolved_total", "counter", "calls the context resolved"},
        {"kin_service_failed_total", "counter",
         "calls failed at the resolver: no provider, busy, gone"},
        {"kin_service_retried_total", "counter",
         "idempotent calls retried on another provider"},
    };
    for (size_t fi = 0; fi < sizeof fams / sizeof fams[0]; fi++) {
        family(o, fams[fi].name, fams[fi].type, fams[fi].help);
        for (size_t i = 0; i < count; i++) {
            char base[400];
            ctx_labels(&rows[i], base, sizeof base);
            for (size_t k = 0; k < rows[i].n_svc; k++) {
                const kin_service_info *s = &rows[i].svc[k];
                char sname[160];
                escape(s->name, sname, sizeof sname);
                double v[] = {s->total,          s->restarting,
                              s->queued,         (double)s->resolved,
                              (double)s->failed, (double)s->retried};
                char text[40];
                put(o, "%s{%s,service=\"%s\"} %s\n", fams[fi].name, base, sname,
                    num(v[fi], text, sizeof text));
            }
        }
    }
    family(o, "kin_service_provider_served_total", "counter",
           "replies the resolver relayed from a provider");
    for (size_t i = 0; i < count; i++) {
        char base[400];
        ctx_labels(&rows[i], base, sizeof base);
        const kin_service_provider *p = rows[i].prov;
        for (size_t k = 0; k < rows[i].n_svc; k++) {
            char sname[160];
            escape(rows[i].svc[k].name, sname, sizeof sname);
            for (int j = 0; j < rows[i].svc[k].providers; j++, p++)
                put(o,
                    "kin_service_provider_served_total{%s,service=\"%s\","
                    "provider=\"%u\"} %llu\n",
                    base, sname, p->ctx, (unsigned long long)p->served);
        }
    }
}

kin_err
kin_monitor_prometheus(kin_node *n, uint32_t ctx, int timeout_ms, kin_buf *b)
{
    kin_ctx_info *infos;
    size_t count;
    kin_err e = kin_monitor_contexts(n, timeout_ms, &infos, &count);
    if (e)
        return e;
    row *rows = calloc(count ? count : 1, sizeof *rows);
    if (!rows) {
        free(infos);
        return -ENOMEM;
    }
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        if (ctx != KIN_NO_CTX && infos[i].id != ctx)
            continue;
        row *r = &rows[used++];
        r->info = infos[i];
        r->err = kin_monitor_metrics(n, r->info.id, timeout_ms, &r->m);
        if (kin_monitor_services(n, r->info.id, timeout_ms, &r->svc, &r->n_svc,
                                 &r->prov)) {
            r->svc = NULL;
            r->n_svc = 0;
            r->prov = NULL;
        }
    }
    free(infos);
    if (ctx != KIN_NO_CTX && !used)
        e = -ENOENT;
    out o = {b, KIN_OK};
    if (!e) {
        contexts(&o, rows, used);
        functions(&o, rows, used);
        services(&o, rows, used);
        e = o.e;
    }
    for (size_t i = 0; i < used; i++) {
        kin_monitor_metrics_release(&rows[i].m);
        free(rows[i].svc);
        free(rows[i].prov);
    }
    free(rows);
    return e;
}
