/* The await graph across the tree (kin_monitor_graph): tasks, the pools
 * of contexts whose every worker is taken while calls queue, who waits for
 * whom, which nodes are deadlocked, and a cycle for each deadlock. The kin
 * command prints it; C users get the same graph. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kin/monitor.h>

#include "monitor/query.h"

/* Appends ctx's children to *ids (parents[k]: the index in all of the
 * context it was found under). */
static kin_err
add_children(const kin_ctx_info *all, size_t i, uint32_t **ids,
             size_t **parents, size_t *len, size_t *cap)
{
    for (int c = 0; c < all[i].n_children; c++) {
        if (*len == *cap) {
            size_t want = *cap ? 2 * *cap : 64;
            uint32_t *mi = realloc(*ids, want * sizeof *mi);
            if (mi)
                *ids = mi;
            size_t *mp = realloc(*parents, want * sizeof *mp);
            if (mp)
                *parents = mp;
            if (!mi || !mp)
                return -ENOMEM;
            *cap = want;
        }
        (*ids)[*len] = all[i].children[c];
        (*parents)[(*len)++] = i;
    }
    return KIN_OK;
}

/* Level by level: every context of a level is asked at once
 * (kin__monitor_info_many), so a tree costs about its depth in round
 * trips; the order is breadth first, as asking one at a time gave. */
kin_err
kin_monitor_contexts(kin_node *n, int timeout_ms, kin_ctx_info **out,
                     size_t *count)
{
    size_t cap = 16, len = 1;
    kin_ctx_info *all = malloc(cap * sizeof *all);
    if (!all)
        return -ENOMEM;
    kin_err e = kin_monitor_info(n, KIN_MASTER_ID, timeout_ms, &all[0]);
    uint32_t *ids = NULL;
    size_t *parents = NULL, ids_cap = 0;
    kin_ctx_info *got = NULL;
    kin_err *errs = NULL;
    for (size_t level = 0; !e && level < len;) {
        size_t end = len, want = 0;
        for (size_t i = level; !e && i < end; i++)
            e = add_children(all, i, &ids, &parents, &want, &ids_cap);
        level = end;
        if (e || !want)
            break;
        kin_ctx_info *g = realloc(got, want * sizeof *g);
        kin_err *er = g ? realloc(errs, want * sizeof *er) : NULL;
        if (g)
            got = g;
        if (er)
            errs = er;
        if (!g || !er ||
            (e = kin__monitor_info_many(n, ids, want, timeout_ms, got, errs))) {
            e = e ? e : -ENOMEM;
            break;
        }
        if (len + want > cap) {
            while (len + want > cap)
                cap *= 2;
            kin_ctx_info *more = realloc(all, cap * sizeof *all);
            if (!more) {
                e = -ENOMEM;
                break;
            }
            all = more;
        }
        /* A context that died meanwhile is left out. */
        for (size_t k = 0; k < want; k++) {
            if (errs[k])
                continue;
            all[len] = got[k];
            all[len].parent = all[parents[k]].id;
            len++;
        }
    }
    free(ids);
    free(parents);
    free(got);
    free(errs);
    if (e) {
        free(all);
        return e;
    }
    *out = all;
    *count = len;
    return KIN_OK;
}

/* --- call tasks by (ctx, caller ctx, caller handle): open addressing --- */

typedef struct callmap {
    size_t *slot; /* node index + 1, 0 empty */
    size_t mask;
} callmap;

static size_t
hash3(uint32_t a, uint32_t b, uint32_t c)
{
    uint64_t h = (uint64_t)a * 0x9E3779B97F4A7C15u;
    h ^= (uint64_t)b * 0xC2B2AE3D27D4EB4Fu + (h >> 29);
    h ^= (uint64_t)c * 0x165667B19E3779F9u + (h >> 31);
    return (size_t)(h ^ (h >> 32));
}

static bool
callmap_init(callmap *m, const kin_graph *g)
{
    size_t cap = 16;
    while (cap < 2 * g->n_nodes)
        cap *= 2;
    m->slot = calloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
    if (!m->slot)
        return false;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const kin_task_info *t = &g->nodes[i].task;
        if (!t->caller_handle)
            continue;
        size_t h = hash3(t->ctx, t->caller_ctx, t->caller_handle) & m->mask;
        while (m->slot[h])
            h = (h + 1) & m->mask;
        m->slot[h] = i + 1;
    }
    return true;
}

/* The call task in ctx called by caller_ctx with reply handle, or -1. */
static long
callmap_find(const callmap *m, const kin_graph *g, uint32_t ctx,
             uint32_t caller_ctx, uint32_t handle)
{
    for (size_t h = hash3(ctx, caller_ctx, handle) & m->mask; m->slot[h];
         h = (h + 1) & m->mask) {
        const kin_task_info *t = &g->nodes[m->slot[h] - 1].task;
        if (t->ctx == ctx && t->caller_ctx == caller_ctx &&
            t->caller_handle == handle)
            return (long)(m->slot[h] - 1);
    }
    return -1;
}

/* --- building ------------------------------------------------------------ */

static bool
push_edge(kin_graph *g, size_t *cap, size_t from, size_t to,
          kin_graph_edge_kind kind)
{
    if (g->n_edges == *cap) {
        size_t want = *cap ? 2 * *cap : 64;
        kin_graph_edge *more = realloc(g->edges, want * sizeof *more);
        if (!more)
            return false;
        g->edges = more;
        *cap = want;
    }
    g->edges[g->n_edges++] = (kin_graph_edge){from, to, kind};
    g->nodes[from].n_edges++;
    g->nodes[to].n_in++;
    return true;
}

static bool
holds_worker(const kin_task_info *t)
{
    return !t->persistent &&
           (t->state == KIN_TASK_RUNNING || t->state == KIN_TASK_WAITING);
}

/* Adds a pool node for each context whose workers are all held while calls
 * queue. A context's tasks are contiguous in g->nodes. */
static kin_err
add_pools(kin_graph *g)
{
    size_t ntasks = g->n_nodes, npools = 0;
    for (size_t from = 0, to; from < ntasks; from = to) {
        int busy = 0, queued = 0;
        size_t ci = g->nodes[from].ctx_index;
        for (to = from; to < ntasks && g->nodes[to].ctx_index == ci; to++) {
            busy += holds_worker(&g->nodes[to].task);
            queued += g->nodes[to].task.state == KIN_TASK_PENDING;
        }
        npools +=
            queued && g->ctxs[ci].workers > 0 && busy >= g->ctxs[ci].workers;
    }
    if (!npools)
        return KIN_OK;
    kin_graph_node *more =
        realloc(g->nodes, (ntasks + npools) * sizeof *g->nodes);
    if (!more)
        return -ENOMEM;
    g->nodes = more;
    for (size_t from = 0, to; from < ntasks; from = to) {
        int busy = 0, queued = 0;
        size_t ci = g->nodes[from].ctx_index;
        for (to = from; to < ntasks && g->nodes[to].ctx_index == ci; to++) {
            busy += holds_worker(&g->nodes[to].task);
            queued += g->nodes[to].task.state == KIN_TASK_PENDING;
        }
        if (queued && g->ctxs[ci].workers > 0 && busy >= g->ctxs[ci].workers)
            g->nodes[g->n_nodes++] = (kin_graph_node){
                .kind = KIN_GRAPH_POOL,
                .ctx = g->ctxs[ci].id,
                .ctx_index = ci,
                .workers = g->ctxs[ci].workers,
                .busy = busy,
                .queued = queued,
            };
    }
    return KIN_OK;
}

/* The pool node of context index ci, or -1. */
static long
pool_of(const kin_graph *g, size_t first_pool, size_t ci)
{
    for (size_t i = first_pool; i < g->n_nodes; i++)
        if (g->nodes[i].ctx_index == ci)
            return (long)i;
    return -1;
}

/* Edges grouped by node, in node order: first_edge set per node. */
static kin_err
add_edges(kin_graph *g, size_t ntasks)
{
    callmap m;
    if (!callmap_init(&m, g))
        return -ENOMEM;
    size_t cap = 0;
    kin_err e = KIN_OK;
    for (size_t i = 0; !e && i < g->n_nodes; i++) {
        kin_graph_node *v = &g->nodes[i];
        v->first_edge = g->n_edges;
        if (v->kind == KIN_GRAPH_POOL) {
            for (size_t k = 0; !e && k < ntasks; k++)
                if (g->nodes[k].ctx_index == v->ctx_index &&
                    holds_worker(&g->nodes[k].task) &&
                    !push_edge(g, &cap, i, k, KIN_GRAPH_WORKER))
                    e = -ENOMEM;
            continue;
        }
        const kin_task_info *t = &v->task;
        if (t->state == KIN_TASK_PENDING) {
            long p = pool_of(g, ntasks, v->ctx_index);
            if (p >= 0 && !push_edge(g, &cap, i, (size_t)p, KIN_GRAPH_QUEUED))
                e = -ENOMEM;
            continue;
        }
        if (t->await_ctx != KIN_NO_CTX && t->await_handle) {
            long k = callmap_find(&m, g, t->await_ctx, t->ctx, t->await_handle);
            if (k >= 0 && !push_edge(g, &cap, i, (size_t)k, KIN_GRAPH_CALL))
                e = -ENOMEM;
        }
        uint32_t listed = t->n_awaits < KIN_TASK_MAX_AWAITS
                              ? t->n_awaits
                              : KIN_TASK_MAX_AWAITS;
        for (uint32_t a = 0; !e && a < listed; a++) {
            if (t->awaits[a].ctx == t->await_ctx &&
                t->awaits[a].handle == t->await_handle)
                continue;
            long k = callmap_find(&m, g, t->awaits[a].ctx, t->ctx,
                                  t->awaits[a].handle);
            if (k >= 0 && !push_edge(g, &cap, i, (size_t)k, KIN_GRAPH_CALL))
                e = -ENOMEM;
        }
    }
    free(m.slot);
    return e;
}

/* Every wait is a wait for any one successor: a node can go on when it has
 * no successor or one of them can. What is left cannot: deadlocked. A
 * worklist over the reversed edges, linear in the graph. */
static kin_err
mark_deadlocked(kin_graph *g)
{
    size_t n = g->n_nodes;
    size_t *in_first = calloc(n + 1, sizeof *in_first);
    size_t *in_from = malloc((g->n_edges ? g->n_edges : 1) * sizeof *in_from);
    size_t *work = malloc((n ? n : 1) * sizeof *work);
    bool *free_ = calloc(n ? n : 1, sizeof *free_);
    kin_err e = in_first && in_from && work && free_ ? KIN_OK : -ENOMEM;
    if (!e) {
        for (size_t i = 0; i < g->n_edges; i++)
            in_first[g->edges[i].to + 1]++;
        for (size_t i = 0; i < n; i++)
            in_first[i + 1] += in_first[i];
        size_t *fill = work; /* borrowed as per-node fill counters */
        for (size_t i = 0; i < n; i++)
            fill[i] = in_first[i];
        for (size_t i = 0; i < g->n_edges; i++)
            in_from[fill[g->edges[i].to]++] = g->edges[i].from;
        size_t top = 0;
        for (size_t i = 0; i < n; i++)
            if (!g->nodes[i].n_edges) {
                free_[i] = true;
                work[top++] = i;
            }
        while (top) {
            size_t v = work[--top];
            for (size_t k = in_first[v]; k < in_first[v + 1]; k++) {
                size_t p = in_from[k];
                if (!free_[p]) {
                    free_[p] = true;
                    work[top++] = p;
                }
            }
        }
        for (size_t i = 0; i < n; i++)
            g->nodes[i].deadlocked = !free_[i];
    }
    free(in_first);
    free(in_from);
    free(work);
    free(free_);
    return e;
}

/* One cycle per group of deadlocked nodes: from each, follow the first
 * successor (every successor of a deadlocked node is deadlocked); meeting
 * a node of the current walk again closes a new cycle. */
static kin_err
find_cycles(kin_graph *g)
{
    size_t n = g->n_nodes;
    size_t *mark = calloc(n ? n : 1, sizeof *mark);
    g->cycle_nodes = malloc((n ? n : 1) * sizeof *g->cycle_nodes);
    g->cycle_start = malloc((n + 1) * sizeof *g->cycle_start);
    if (!mark || !g->cycle_nodes || !g->cycle_start) {
        free(mark);
        return -ENOMEM;
    }
    size_t len = 0;
    g->cycle_start[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (!g->nodes[i].deadlocked)
            continue;
        size_t stamp = i + 1, k = i;
        while (!mark[k]) {
            mark[k] = stamp;
            k = g->edges[g->nodes[k].first_edge].to;
        }
        if (mark[k] != stamp)
            continue;
        size_t j = k;
        do {
            g->cycle_nodes[len++] = j;
            mark[j] = SIZE_MAX; /* reported once */
            j = g->edges[g->nodes[j].first_edge].to;
        } while (j != k);
        g->cycle_start[++g->n_cycles] = len;
    }
    free(mark);
    return KIN_OK;
}

/* kin_monitor_graph's gathering: each context's tasks become nodes. */
typedef struct gather {
    kin_graph *g;
    const size_t *idx; /* the ctxs index of each context asked */
    size_t cap;        /* of g->nodes */
    kin_err e;         /* -ENOMEM: the graph is incomplete */
} gather;

static void
on_tasks(size_t i, kin_err e, kin_task_info *ts, size_t count, void *arg)
{
    gather *gt = arg;
    kin_graph *g = gt->g;
    size_t ci = gt->idx[i];
    if ((g->ctx_errors[ci] = e) || gt->e) {
        free(ts);
        return;
    }
    if (g->n_nodes + count > gt->cap) {
        size_t want = gt->cap ? gt->cap : 64;
        while (want < g->n_nodes + count)
            want *= 2;
        kin_graph_node *more = realloc(g->nodes, want * sizeof *more);
        if (!more) {
            free(ts);
            gt->e = -ENOMEM;
            return;
        }
        g->nodes = more;
        gt->cap = want;
    }
    for (size_t k = 0; k < count; k++)
        g->nodes[g->n_nodes++] = (kin_graph_node){
            .kind = KIN_GRAPH_TASK,
            .ctx = g->ctxs[ci].id,
            .ctx_index = ci,
            .task = ts[k],
        };
    free(ts);
}

kin_err
kin_monitor_graph(kin_node *n, uint32_t ctx, int timeout_ms, kin_graph **out)
{
    if (!n || !out)
        return -EINVAL;
    *out = NULL;
    kin_graph *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    kin_err e = kin_monitor_contexts(n, timeout_ms, &g->ctxs, &g->n_ctxs);
    if (e) {
        free(g);
        return e;
    }
    g->ctx_errors = calloc(g->n_ctxs, sizeof *g->ctx_errors);
    if (!g->ctx_errors)
        e = -ENOMEM;
    bool found = ctx == KIN_NO_CTX;
    uint32_t *ids =
        e ? NULL : malloc((g->n_ctxs ? g->n_ctxs : 1) * sizeof *ids);
    size_t *idx = e ? NULL : malloc((g->n_ctxs ? g->n_ctxs : 1) * sizeof *idx);
    if (!e && (!ids || !idx))
        e = -ENOMEM;
    size_t want = 0;
    for (size_t i = 0; !e && i < g->n_ctxs; i++) {
        if (ctx != KIN_NO_CTX && g->ctxs[i].id != ctx)
            continue;
        found = true;
        ids[want] = g->ctxs[i].id;
        idx[want++] = i;
    }
    /* Every context asked at once: one round trip, not one per context. */
    gather gt = {.g = g, .idx = idx};
    if (!e && want &&
        !(e = kin__monitor_ps_many(n, ids, want, timeout_ms, on_tasks, &gt)))
        e = gt.e;
    free(ids);
    free(idx);
    if (!e && !found)
        e = -ENOENT;
    size_t ntasks = g->n_nodes;
    if (!e)
        e = add_pools(g);
    if (!e)
        e = add_edges(g, ntasks);
    if (!e)
        e = mark_deadlocked(g);
    if (!e)
        e = find_cycles(g);
    if (e) {
        kin_monitor_graph_destroy(&g);
        return e;
    }
    *out = g;
    return KIN_OK;
}

void
kin_monitor_graph_destroy(kin_graph **gp)
{
    if (!gp || !*gp)
        return;
    kin_graph *g = *gp;
    free(g->ctxs);
    free(g->ctx_errors);
    free(g->nodes);
    free(g->edges);
    free(g->cycle_start);
    free(g->cycle_nodes);
    free(g);
    *gp = NULL;
}

void
kin_monitor_graph_label(const kin_graph *g, size_t node, char *out, size_t size)
{
    if (!g || node >= g->n_nodes) {
        snprintf(out, size, "?");
        return;
    }
    const kin_graph_node *v = &g->nodes[node];
    if (v->kind == KIN_GRAPH_POOL)
        snprintf(out, size, "pool of %u (%d/%d workers busy, %d queued)",
                 v->ctx, v->busy, v->workers, v->queued);
    else
        snprintf(out, size, "%u:%u %s", v->task.ctx, v->task.id, v->task.name);
}
