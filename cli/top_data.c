/* kin top's model (cli/top.h): every refresh asks each context for its
 * metrics and tasks, compares them with the samples before (CPU%, calls/s,
 * the p99 of the calls that ended meanwhile) and lists the warnings. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/top.h"

static void
free_ctxs(kin__top_model *m)
{
    for (size_t i = 0; i < m->n_ctxs; i++) {
        kin_monitor_metrics_release(&m->ctxs[i].m);
        free(m->ctxs[i].tasks);
    }
    free(m->ctxs);
    m->ctxs = NULL;
    m->n_ctxs = 0;
}

void
kin__top_model_free(kin__top_model *m)
{
    free_ctxs(m);
    free(m->past);
    free(m->warnings);
    memset(m, 0, sizeof *m);
}

static kin__top_past *
past_of(kin__top_model *m, uint32_t ctx)
{
    for (size_t i = 0; i < m->n_past; i++)
        if (m->past[i].ctx == ctx)
            return &m->past[i];
    kin__top_past *more = realloc(m->past, (m->n_past + 1) * sizeof *more);
    if (!more)
        return NULL;
    m->past = more;
    kin__top_past *p = &m->past[m->n_past++];
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    return p;
}

/* The i-th sample of p counting back from the newest (0). */
#define BACK(p, i) (p)->s[((p)->head + (p)->len - 1 - (i)) % TOP_HISTORY]

static void warn(kin__top_model *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
warn(kin__top_model *m, const char *fmt, ...)
{
    char(*more)[192] = realloc(m->warnings, (m->n_warnings + 1) * sizeof *more);
    if (!more)
        return;
    m->warnings = more;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->warnings[m->n_warnings++], sizeof *more, fmt, ap);
    va_end(ap);
}

/* Records c's figures at now in its past and derives its rates. */
static void
remember(kin__top_model *m, kin__top_ctx *c, double now)
{
    c->cpu_pct = c->calls_per_s = c->p99_us = -1;
    kin__top_past *p = past_of(m, c->info.id);
    if (!p)
        return;
    p->seen = true;
    if (c->err)
        return;
    uint64_t hist[KIN_FN_LAT_BUCKETS] = {0};
    c->calls = 0;
    for (size_t k = 0; k < c->m.n_functions; k++) {
        c->calls += c->m.functions[k].calls;
        for (int b = 0; b < KIN_FN_LAT_BUCKETS; b++)
            hist[b] += c->m.functions[k].latency[b];
    }
    if (p->len) {
        const kin__top_point *prev = &BACK(p, 0);
        double dt = now - prev->t;
        if (dt > 0) {
            c->cpu_pct = 100.0 * (c->m.cpu_s - prev->cpu_s) / dt;
            if (c->cpu_pct < 0)
                c->cpu_pct = 0;
            c->calls_per_s = c->calls >= prev->calls
                                 ? (double)(c->calls - prev->calls) / dt
                                 : 0;
        }
        uint64_t delta[KIN_FN_LAT_BUCKETS];
        for (int b = 0; b < KIN_FN_LAT_BUCKETS; b++)
            delta[b] =
                hist[b] >= prev->latency[b] ? hist[b] - prev->latency[b] : 0;
        double q = kin_fn_latency_us(delta, 0.99);
        c->p99_us = q > 0 ? q : -1;
    }
    if (p->len == TOP_HISTORY) {
        p->head = (p->head + 1) % TOP_HISTORY;
        p->len--;
    }
    p->len++;
    kin__top_point *s = &BACK(p, 0);
    s->t = now;
    s->cpu_s = c->m.cpu_s;
    s->calls = c->calls;
    s->restarts = c->m.child_restarts;
    s->dropped = c->m.log_dropped;
    memcpy(s->latency, hist, sizeof hist);
}

/* The oldest sample of p within the window before now. */
static int
window_start(const kin__top_past *p, double now, double window)
{
    int i = 0;
    while (i + 1 < p->len && now - BACK(p, i + 1).t <= window)
        i++;
    return i;
}

static void
warnings(kin__top_model *m, double now)
{
    m->n_warnings = 0;
    for (size_t i = 0; i < m->n_ctxs; i++) {
        kin__top_ctx *c = &m->ctxs[i];
        if (c->err) {
            warn(m, "context %u (%s) does not answer: %s", c->info.id,
                 c->info.name, kin_strerror(c->err));
            continue;
        }
        if (c->m.workers > 0 && c->m.workers_busy >= c->m.workers &&
            c->m.tasks_pending > 0)
            warn(m, "pool of %u (%s) exhausted: %d/%d workers busy, %u queued",
                 c->info.id, c->info.name, c->m.workers_busy, c->m.workers,
                 c->m.tasks_pending);
        kin__top_past *p = past_of(m, c->info.id);
        if (p && p->len > 1) {
            int k = window_start(p, now, m->opts.window_s);
            uint64_t restarts = BACK(p, 0).restarts - BACK(p, k).restarts;
            uint64_t dropped = BACK(p, 0).dropped - BACK(p, k).dropped;
            if (restarts >= m->opts.restart_warn)
                warn(m,
                     "restart loop in %u (%s): %llu children restarted in "
                     "the last %.0f s",
                     c->info.id, c->info.name, (unsigned long long)restarts,
                     m->opts.window_s);
            if (dropped)
                warn(m, "%u (%s) dropped %llu log records in the last %.0f s",
                     c->info.id, c->info.name, (unsigned long long)dropped,
                     m->opts.window_s);
        }
        for (size_t k = 0; k < c->n_tasks; k++) {
            const kin_task_info *t = &c->tasks[k];
            if (t->waiting[0] && t->wait_ms / 1000.0 > m->opts.wait_warn_s)
                warn(m, "task %u:%u %s waiting on %s%s%s for %.1f s", t->ctx,
                     t->id, t->name, t->waiting, t->await_fn[0] ? " " : "",
                     t->await_fn, t->wait_ms / 1000.0);
        }
    }
}

int
kin__top_sample(kin__top_model *m, kin_node *n, double now)
{
    free_ctxs(m);
    kin_ctx_info *infos;
    size_t count;
    m->err = kin_monitor_contexts(n, m->opts.timeout_ms, &infos, &count);
    if (m->err)
        return 0;
    m->ctxs = calloc(count ? count : 1, sizeof *m->ctxs);
    if (!m->ctxs) {
        free(infos);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->n_past; i++)
        m->past[i].seen = false;
    for (size_t i = 0; i < count; i++) {
        kin__top_ctx *c = &m->ctxs[m->n_ctxs++];
        c->info = infos[i];
        c->err = kin_monitor_metrics(n, c->info.id, m->opts.timeout_ms, &c->m);
        if (!c->err &&
            kin_monitor_ps(n, c->info.id, NULL, false, m->opts.timeout_ms,
                           &c->tasks, &c->n_tasks)) {
            c->tasks = NULL;
            c->n_tasks = 0;
        }
        remember(m, c, now);
    }
    free(infos);
    /* Contexts gone: forget them. */
    size_t kept = 0;
    for (size_t i = 0; i < m->n_past; i++)
        if (m->past[i].seen)
            m->past[kept++] = m->past[i];
    m->n_past = kept;
    warnings(m, now);
    m->samples++;
    return 0;
}
