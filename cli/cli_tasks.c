/* kin ls, tree, ps, pstree, where, ps-terminated, where-terminated, cancel,
 * signal and stacktrace: the operator's view of a running tree. Each prints
 * a table, or JSON with --json. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <kin/call.h>
#include <kin/monitor.h>

#include "cli/cli.h"
#include "context/tool.h"

#define TIMEOUT_MS KIN_CLI_TIMEOUT_MS

static void
fmt_ms(char *out, size_t size, double ms)
{
    if (ms < 1000)
        snprintf(out, size, "%.0fms", ms);
    else if (ms < 120000)
        snprintf(out, size, "%.1fs", ms / 1000);
    else if (ms < 7200000)
        snprintf(out, size, "%.0fm", ms / 60000);
    else
        snprintf(out, size, "%.1fh", ms / 3600000);
}

/* Prints a top-level JSON object with the shape version added. */
static void
print_json(json_t *j)
{
    json_object_set_new(j, "version", json_integer(KIN_CLI_JSON_VERSION));
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s)
        puts(s);
    free(s);
    json_decref(j);
}

/* Prints {"version": 1, key: arr} when the user asked for JSON; frees arr
 * either way. A list is never the top level, so that every shape can carry
 * its version. */
static void
finish_json(const char *key, json_t *arr, bool json)
{
    if (json)
        print_json(json_pack("{s:o}", key, arr));
    else
        json_decref(arr);
}

/* Common options: PID first, then flags. Returns the index after PID or -1
 * after printing usage. */
typedef struct opts {
    int pid;
    bool json;
    bool persistent;
    bool has_ctx;
    uint32_t ctx;
    const char *filter;
    int limit; /* -n N, where the usage offers it; -1: not given */
    const char *args[4];
    int nargs;
} opts;

static int
parse(int argc, char **argv, const char *usage, int want_args, opts *o)
{
    memset(o, 0, sizeof *o);
    o->limit = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: kin %s %s\n", argv[0], usage);
            return 1;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--persistent")) {
            o->persistent = true;
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--ctx")) && i + 1 < argc) {
            o->has_ctx = true;
            o->ctx = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--filter")) &&
                   i + 1 < argc) {
            o->filter = argv[++i];
        } else if (!strcmp(a, "-n") && strstr(usage, "[-n N]") &&
                   i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 0 || n > 1000000) {
                fprintf(stderr, "kin %s: -n wants a count (0: all), not '%s'\n",
                        argv[0], argv[i]);
                return 2;
            }
            o->limit = (int)n;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kin %s: unknown option %s\nusage: kin %s %s\n",
                    argv[0], a, argv[0], usage);
            return 2;
        } else if (!o->pid) {
            char *end;
            long pid = strtol(a, &end, 10);
            if (*end || pid <= 0) {
                fprintf(stderr, "kin %s: '%s' is not a pid\n", argv[0], a);
                return 2;
            }
            o->pid = (int)pid;
        } else if (o->nargs < 4) {
            o->args[o->nargs++] = a;
        }
    }
    if (!o->pid || o->nargs < want_args) {
        fprintf(stderr, "usage: kin %s %s\n", argv[0], usage);
        return 2;
    }
    return 0;
}

/* The prelude of the commands taking PID: options and an attachment to
 * the tree. Returns the exit status to stop with, or -1 to go on with *n
 * attached. */
static int
open_tree(int argc, char **argv, const char *usage, int nargs, opts *o,
          kin_node **n)
{
    int rc = parse(argc, argv, usage, nargs, o);
    if (rc)
        return rc == 1 ? 0 : rc;
    return kin__cli_attach(o->pid, n) ? 2 : -1;
}

static int
max_int(int a, int b)
{
    return a > b ? a : b;
}

/* The HOST column of kin tree: the host name, then the exec channel in
 * brackets when there is one; returns its length (snprintf's). */
static int
host_label(const kin_ctx_info *c, char *out, size_t size)
{
    return c->where[0] ? snprintf(out, size, "%s [%s]", c->host, c->where)
                       : snprintf(out, size, "%s", c->host);
}

static int
by_id(const void *a, const void *b)
{
    uint32_t x = ((const kin_ctx_info *)a)->id,
             y = ((const kin_ctx_info *)b)->id;
    return x < y ? -1 : x > y;
}

/* --- ls ------------------------------------------------------------------ */

int
kin__cli_ls(int argc, char **argv)
{
    bool json = argc > 1 && !strcmp(argv[1], "--json");
    if (argc > 1 && !json) {
        printf("usage: kin ls [--json]\n  masters running on this host\n");
        return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 2 : 0;
    }
    char dir[160];
    if (kin__tool_runtime_dir(dir, sizeof dir)) {
        fprintf(stderr, "kin ls: no runtime directory\n");
        return 2;
    }
    DIR *d = opendir(dir);
    if (!d)
        return 2;
    json_t *arr = json_array();
    if (!json)
        printf("%-8s %-16s %8s %9s  %s\n", "PID", "NAME", "CONTEXTS", "UPTIME",
               "ENDPOINT");
    struct dirent *de;
    while ((de = readdir(d))) {
        int pid;
        uint32_t id;
        if (!kin__tool_sock_parse(de->d_name, &pid, &id) || id != KIN_MASTER_ID)
            continue;
        if (kill(pid, 0) && errno == ESRCH) {
            /* A master that died without cleaning up. */
            char path[400];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
            continue;
        }
        kin_node *n;
        if (kin__cli_attach(pid, &n))
            continue;
        kin_ctx_info *all;
        size_t count;
        if (kin__cli_contexts(n, &all, &count) == KIN_OK) {
            char up[32];
            fmt_ms(up, sizeof up, all[0].uptime_ms);
            if (json)
                json_array_append_new(
                    arr,
                    json_pack("{s:i,s:s,s:i,s:f,s:s}", "pid", pid, "name",
                              all[0].name, "contexts", (int)count, "uptime_ms",
                              all[0].uptime_ms, "endpoint", all[0].endpoint));
            else
                printf("%-8d %-16s %8zu %9s  %s\n", pid, all[0].name, count, up,
                       all[0].endpoint);
            free(all);
        }
        kin_node_destroy(&n);
    }
    closedir(d);
    finish_json("masters", arr, json);
    return 0;
}

/* --- tree ---------------------------------------------------------------- */

int
kin__cli_tree(int argc, char **argv)
{
    opts o;
    kin_node *n;
    int rc =
        open_tree(argc, argv,
                  "PID [--json]\n  the context tree: id, name, pid, tasks, "
                  "rss, uptime",
                  0, &o, &n);
    if (rc >= 0)
        return rc;
    kin_ctx_info *all;
    size_t count;
    kin_err e = kin__cli_contexts(n, &all, &count);
    kin_node_destroy(&n);
    if (e) {
        fprintf(stderr, "kin tree: %s\n", kin_strerror(e));
        return 2;
    }
    /* Children in id order: the list's order is the tables' hash order. */
    if (count > 1)
        qsort(all + 1, count - 1, sizeof *all, by_id);
    /* The CONTEXT column fits the widest label: indent, id and name. */
    int wl = 28;
    for (size_t i = 0; i < count; i++) {
        int depth = 0;
        for (size_t k = i; k && depth <= (int)count;) {
            size_t p = 0;
            while (p < count && all[p].id != all[k].parent)
                p++;
            depth++;
            k = p < count ? p : 0;
        }
        wl = max_int(wl,
                     snprintf(NULL, 0, "%*s%u %s%s", depth * 2, "", all[i].id,
                              all[i].name, all[i].joined ? " (joined)" : ""));
    }
    /* HOST: the host name, and the exec channel behind which the context
     * runs, if any ("web-1 [podman:web]"). */
    int wh = 16;
    for (size_t i = 0; i < count; i++)
        wh = max_int(wh, host_label(&all[i], NULL, 0));
    json_t *arr = json_array();
    if (!o.json)
        printf("%-*s %-*s %7s %6s %9s %8s\n", wl, "CONTEXT", wh, "HOST", "PID",
               "TASKS", "RSS", "UPTIME");
    /* Depth-first print from the breadth-first list: a stack of (index,
     * depth) pairs. */
    int *stack = malloc(2 * count * sizeof *stack);
    int top = 0;
    stack[top++] = 0;
    stack[top++] = 0;
    while (top) {
        int depth = stack[--top];
        kin_ctx_info *c = &all[stack[--top]];
        char label[160], up[32], host[160];
        host_label(c, host, sizeof host);
        snprintf(label, sizeof label, "%*s%u %s%s", depth * 2, "", c->id,
                 c->name, c->joined ? " (joined)" : "");
        fmt_ms(up, sizeof up, c->uptime_ms);
        if (o.json) {
            json_t *row = json_pack(
                "{s:i,s:s,s:s,s:s,s:i,s:o,s:i,s:I,s:f}", "id", c->id, "name",
                c->name, "host", c->host, "where", c->where, "pid", c->pid,
                "parent", depth ? json_integer(c->parent) : json_null(),
                "tasks", c->tasks, "rss_kib", (json_int_t)c->rss_kib,
                "uptime_ms", c->uptime_ms);
            if (row && c->joined) /* only joiners have the key */
                json_object_set_new(row, "joined", json_true());
            json_array_append_new(arr, row);
        } else
            printf("%-*s %-*s %7d %6u %7.1fMi %8s\n", wl, label, wh, host,
                   c->pid, c->tasks, (double)c->rss_kib / 1024.0, up);
        for (size_t i = count; i-- > 1;) {
            if (all[i].parent == c->id) {
                stack[top++] = (int)i;
                stack[top++] = depth + 1;
            }
        }
    }
    free(stack);
    free(all);
    finish_json("contexts", arr, o.json);
    return 0;
}

/* --- ps / pstree -----------------------------------------------------------
 */

/* The await graph of the tree (or of one context), from the library; the
 * contexts that did not answer are named on stderr. */
static int
load_graph(kin_node *n, const opts *o, kin_graph **g)
{
    kin_err e =
        kin_monitor_graph(n, o->has_ctx ? o->ctx : KIN_NO_CTX, TIMEOUT_MS, g);
    if (e == -ENOENT) {
        fprintf(stderr, "kin: no context %u in this tree\n", o->ctx);
        return 2;
    }
    if (e) {
        fprintf(stderr, "kin: cannot build the await graph: %s\n",
                kin_strerror(e));
        return 2;
    }
    for (size_t i = 0; i < (*g)->n_ctxs; i++)
        if ((*g)->ctx_errors[i])
            fprintf(stderr, "kin: context %u: %s\n", (*g)->ctxs[i].id,
                    kin_strerror((*g)->ctx_errors[i]));
    return 0;
}

static const kin_ctx_info *
ctx_of(const kin_graph *g, size_t node)
{
    return &g->ctxs[g->nodes[node].ctx_index];
}

/* kin ps's CONTEXT: the name, and "(joined)" after a context that joined
 * from outside, as kin tree writes it. */
static const char *
ctx_label(const kin_graph *g, size_t node, char *out, size_t size)
{
    const kin_ctx_info *c = ctx_of(g, node);
    snprintf(out, size, "%s%s", c->name, c->joined ? " (joined)" : "");
    return out;
}

static void
describe_wait(const kin_graph *g, size_t node, char *out, size_t size)
{
    const kin_graph_node *v = &g->nodes[node];
    const kin_task_info *t = &v->task;
    char w[32];
    fmt_ms(w, sizeof w, t->wait_ms);
    if (v->kind == KIN_GRAPH_POOL)
        snprintf(out, size, "pool exhausted: every worker is taken");
    else if (v->n_edges && g->edges[v->first_edge].kind == KIN_GRAPH_QUEUED)
        snprintf(out, size, "queued: pool exhausted (%d/%d workers busy)",
                 g->nodes[g->edges[v->first_edge].to].busy,
                 g->nodes[g->edges[v->first_edge].to].workers);
    else if (t->n_awaits > 1)
        snprintf(out, size, "select over %u calls (%s)", t->n_awaits, w);
    else if (t->await_service[0] && t->await_ctx != KIN_NO_CTX)
        snprintf(out, size, "service call %s via provider ctx %u (%s)",
                 t->await_fn, t->await_ctx, w);
    else if (t->await_service[0])
        snprintf(out, size, "service call %s (%s)", t->await_fn, w);
    else if (t->await_ctx != KIN_NO_CTX)
        snprintf(out, size, "call %s in ctx %u (%s)",
                 t->await_fn[0] ? t->await_fn : "?", t->await_ctx, w);
    else if (t->waiting[0])
        snprintf(out, size, "%s (%s)", t->waiting, w);
    else
        snprintf(out, size, "-");
}

static json_t *
node_json(const kin_graph *g, size_t node)
{
    const kin_graph_node *v = &g->nodes[node];
    const kin_task_info *t = &v->task;
    char id[160];
    json_t *j;
    if (v->kind == KIN_GRAPH_POOL) {
        kin_monitor_graph_label(g, node, id, sizeof id);
        j = json_pack("{s:s,s:s,s:i,s:s,s:i,s:i,s:i}", "pool", id, "kind",
                      "pool", "ctx", v->ctx, "context", ctx_of(g, node)->name,
                      "workers", v->workers, "busy", v->busy, "queued",
                      v->queued);
    } else {
        snprintf(id, sizeof id, "%u:%u", t->ctx, t->id);
        j = json_pack("{s:s,s:i,s:i,s:s,s:s,s:s,s:s,s:b,s:f,s:s,s:f}", "task",
                      id, "ctx", t->ctx, "id", t->id, "context",
                      ctx_of(g, node)->name, "name", t->name, "fn", t->fn,
                      "state", kin_task_state_name(t->state), "persistent",
                      t->persistent, "age_ms", t->age_ms, "waiting", t->waiting,
                      "wait_ms", t->wait_ms);
        if (t->caller_ctx || t->caller_task) {
            snprintf(id, sizeof id, "%u:%u", t->caller_ctx, t->caller_task);
            json_object_set_new(j, "caller", json_string(id));
        }
        if (t->created_at[0])
            json_object_set_new(j, "created_at", json_string(t->created_at));
        if (t->await_ctx != KIN_NO_CTX) {
            json_object_set_new(j, "await_ctx", json_integer(t->await_ctx));
            json_object_set_new(j, "await_fn", json_string(t->await_fn));
        }
        if (t->await_service[0]) {
            json_object_set_new(j, "await_service",
                                json_string(t->await_service));
            json_object_set_new(j, "await_fn", json_string(t->await_fn));
        }
        if (t->n_awaits)
            json_object_set_new(j, "await_calls", json_integer(t->n_awaits));
        if (ctx_of(g, node)->joined) /* only joiners' tasks have the key */
            json_object_set_new(j, "joined", json_true());
    }
    if (v->deadlocked)
        json_object_set_new(j, "deadlocked", json_true());
    /* Every node it waits for, by label; "awaits" is the first. */
    if (v->n_edges) {
        json_t *all = json_array();
        for (size_t k = 0; k < v->n_edges; k++) {
            size_t to = g->edges[v->first_edge + k].to;
            const kin_graph_node *w = &g->nodes[to];
            if (w->kind == KIN_GRAPH_POOL)
                snprintf(id, sizeof id, "pool:%u", w->ctx);
            else
                snprintf(id, sizeof id, "%u:%u", w->task.ctx, w->task.id);
            json_array_append_new(all, json_string(id));
        }
        json_object_set(j, "awaits", json_array_get(all, 0));
        json_object_set_new(j, "awaits_all", all);
    }
    return j;
}

/* Whether node i is a task row of kin ps under its options. */
static bool
shown_in_ps(const kin_graph *g, size_t i, const opts *o)
{
    const kin_task_info *t = &g->nodes[i].task;
    return g->nodes[i].kind == KIN_GRAPH_TASK &&
           !(o->persistent && !t->persistent) &&
           !(o->filter && !strstr(t->name, o->filter) &&
             !strstr(t->fn, o->filter));
}

int
kin__cli_ps(int argc, char **argv)
{
    opts o;
    kin_node *n;
    int rc = open_tree(argc, argv,
                       "PID [-c CTX] [-f TEXT] [-p] [--json]\n  tasks of every "
                       "context (or CTX); -f filters by name or function, -p "
                       "shows persistent tasks only",
                       0, &o, &n);
    if (rc >= 0)
        return rc;
    kin_graph *g;
    rc = load_graph(n, &o, &g);
    kin_node_destroy(&n);
    if (rc)
        return rc;
    json_t *arr = json_array();
    /* Columns as wide as their longest entry: names are never cut. */
    int wc = 7, wn = 4, wf = 8;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!shown_in_ps(g, i, &o))
            continue;
        const kin_task_info *t = &g->nodes[i].task;
        char label[96];
        wc = max_int(wc, (int)strlen(ctx_label(g, i, label, sizeof label)));
        wn = max_int(wn, (int)strlen(t->name));
        wf = max_int(wf, (int)strlen(t->fn));
    }
    if (!o.json)
        printf("%-9s %-*s %-*s %-*s %-9s %7s  %s\n", "TASK", wc, "CONTEXT", wn,
               "NAME", wf, "FUNCTION", "STATE", "AGE", "WAITING");
    for (size_t i = 0; i < g->n_nodes; i++) {
        const kin_task_info *t = &g->nodes[i].task;
        if (!shown_in_ps(g, i, &o))
            continue;
        if (o.json) {
            json_array_append_new(arr, node_json(g, i));
            continue;
        }
        char id[24], age[16], wait[96], label[96];
        snprintf(id, sizeof id, "%u:%u", t->ctx, t->id);
        fmt_ms(age, sizeof age, t->age_ms);
        describe_wait(g, i, wait, sizeof wait);
        printf("%-9s %-*s %-*s %-*s %-9s %7s  %s\n", id, wc,
               ctx_label(g, i, label, sizeof label), wn, t->name, wf,
               t->fn[0] ? t->fn : "-", kin_task_state_name(t->state), age,
               wait);
    }
    finish_json("tasks", arr, o.json);
    kin_monitor_graph_destroy(&g);
    return 0;
}

/* What repeats along a chain: the same context, function and state. */
static bool
same_hop(const kin_graph *g, size_t a, size_t b)
{
    const kin_graph_node *x = &g->nodes[a], *y = &g->nodes[b];
    return x->kind == y->kind && x->ctx == y->ctx &&
           x->task.state == y->task.state && !strcmp(x->task.fn, y->task.fn) &&
           !strcmp(x->task.name, y->task.name);
}

/* Deeper lines are indented up to this many levels, then the depth is
 * written out. */
#define MAX_INDENT 16

static void
print_hop(const kin_graph *g, size_t node, size_t depth)
{
    char l[160], wait[96], deep[32] = "";
    kin_monitor_graph_label(g, node, l, sizeof l);
    describe_wait(g, node, wait, sizeof wait);
    size_t indent = depth < MAX_INDENT ? depth : MAX_INDENT;
    if (depth > MAX_INDENT)
        snprintf(deep, sizeof deep, "[%zu] ", depth);
    printf("%*s%s%s%s [%s, pid %d] %s\n", (int)indent * 4, "",
           depth ? "└── " : "", deep, l, ctx_of(g, node)->name,
           ctx_of(g, node)->pid, wait);
}

/* Prints a chain (each hop awaits the next) from depth on, folding a
 * segment of up to 8 hops that repeats: its first and last copies are
 * printed, the copies between are counted on one line. */
static void
print_chain(const kin_graph *g, const size_t *c, size_t len, size_t depth)
{
    for (size_t i = 0; i < len;) {
        size_t best_p = 0, best_r = 0;
        for (size_t p = 1; p <= 8 && i + p <= len; p++) {
            size_t r = 1;
            while (i + (r + 1) * p <= len) {
                bool same = true;
                for (size_t k = 0; same && k < p; k++)
                    same = same_hop(g, c[i + k], c[i + r * p + k]);
                if (!same)
                    break;
                r++;
            }
            if (r >= 4 && r * p > best_r * best_p) {
                best_p = p;
                best_r = r;
            }
        }
        if (!best_p) {
            print_hop(g, c[i], depth + i);
            i++;
            continue;
        }
        size_t p = best_p, r = best_r;
        for (size_t k = 0; k < p; k++)
            print_hop(g, c[i + k], depth + i + k);
        size_t from = i + p, folded = (r - 2) * p;
        char first[160], last[160];
        kin_monitor_graph_label(g, c[from], first, sizeof first);
        kin_monitor_graph_label(g, c[from + folded - 1], last, sizeof last);
        size_t d = depth + from;
        printf("%*s┄┄ the %zu hop%s above repeated %zu more times: %zu hops, "
               "%s … %s\n",
               (int)(d < MAX_INDENT ? d : MAX_INDENT) * 4, "", p,
               p == 1 ? "" : "s", r - 2, folded, first, last);
        for (size_t k = 0; k < p; k++)
            print_hop(g, c[from + folded + k], depth + from + folded + k);
        i += r * p;
    }
}

/* Prints what node awaits, depth first; a node already printed is named,
 * not expanded again. Runs of single waits are printed as chains. */
static void
print_tree(const kin_graph *g, size_t root, bool *seen, size_t *stack,
           size_t *chain)
{
    size_t top = 0;
    stack[top++] = root;
    stack[top++] = 0;
    while (top) {
        size_t depth = stack[--top], v = stack[--top];
        if (seen[v]) {
            char l[160];
            kin_monitor_graph_label(g, v, l, sizeof l);
            size_t indent = depth < MAX_INDENT ? depth : MAX_INDENT;
            printf("%*s└── %s (shown above)\n", (int)indent * 4, "", l);
            continue;
        }
        size_t len = 0;
        chain[len++] = v;
        seen[v] = true;
        for (;;) {
            const kin_graph_node *w = &g->nodes[chain[len - 1]];
            if (w->n_edges != 1)
                break;
            size_t next = g->edges[w->first_edge].to;
            if (seen[next])
                break;
            seen[next] = true;
            chain[len++] = next;
        }
        print_chain(g, chain, len, depth);
        const kin_graph_node *end = &g->nodes[chain[len - 1]];
        for (size_t k = end->n_edges; k-- > 0;) {
            stack[top++] = g->edges[end->first_edge + k].to;
            stack[top++] = depth + len;
        }
    }
}

/* The same walk for --json: every node once, in print order, with its
 * depth (no folding: every hop is listed). */
static json_t *
tree_json(const kin_graph *g, size_t root, bool *seen, size_t *stack)
{
    json_t *arr = json_array();
    size_t top = 0;
    stack[top++] = root;
    stack[top++] = 0;
    while (top) {
        size_t depth = stack[--top], v = stack[--top];
        if (seen[v])
            continue;
        seen[v] = true;
        json_t *j = node_json(g, v);
        json_object_set_new(j, "depth", json_integer((json_int_t)depth));
        json_array_append_new(arr, j);
        const kin_graph_node *w = &g->nodes[v];
        for (size_t k = w->n_edges; k-- > 0;) {
            stack[top++] = g->edges[w->first_edge + k].to;
            stack[top++] = depth + 1;
        }
    }
    return arr;
}

int
kin__cli_pstree(int argc, char **argv)
{
    opts o;
    kin_node *n;
    int rc =
        open_tree(argc, argv,
                  "PID [--json]\n  await tree across contexts; a cycle is a "
                  "deadlock: printed, exit status 1",
                  0, &o, &n);
    if (rc >= 0)
        return rc;
    kin_graph *g;
    rc = load_graph(n, &o, &g);
    kin_node_destroy(&n);
    if (rc)
        return rc;

    /* The cycles, as the library found them. */
    json_t *cycles = json_array();
    for (size_t c = 0; c < g->n_cycles; c++) {
        json_t *cyc = json_array();
        if (!o.json && !c)
            printf("ERROR: await graph contains cycles\n");
        if (!o.json)
            printf("  cycle:");
        for (size_t k = g->cycle_start[c]; k <= g->cycle_start[c + 1]; k++) {
            size_t v =
                g->cycle_nodes[k < g->cycle_start[c + 1] ? k
                                                         : g->cycle_start[c]];
            char l[160];
            kin_monitor_graph_label(g, v, l, sizeof l);
            if (k < g->cycle_start[c + 1])
                json_array_append_new(cyc, json_string(l));
            if (!o.json)
                printf("%s %s", k > g->cycle_start[c] ? " →" : "", l);
        }
        if (!o.json)
            printf("\n");
        json_array_append_new(cycles, cyc);
    }

    /* Trees: from every node nobody awaits, then from whatever is left
     * (nodes only cycles lead to), so that no node goes unshown. */
    size_t nn = g->n_nodes ? g->n_nodes : 1;
    bool *seen = calloc(nn, sizeof *seen);
    size_t *stack = malloc(2 * (g->n_edges + nn) * sizeof *stack);
    size_t *chain = malloc(nn * sizeof *chain);
    if (!seen || !stack || !chain) {
        fprintf(stderr, "kin pstree: out of memory\n");
        free(seen);
        free(stack);
        free(chain);
        json_decref(cycles);
        kin_monitor_graph_destroy(&g);
        return 2;
    }
    json_t *trees = o.json ? json_array() : NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < g->n_nodes; i++) {
            if (seen[i] || (!pass && g->nodes[i].n_in))
                continue;
            if (o.json)
                json_array_append_new(trees, tree_json(g, i, seen, stack));
            else
                print_tree(g, i, seen, stack, chain);
        }
    }
    free(seen);
    free(stack);
    free(chain);
    size_t ncycles = g->n_cycles;
    if (o.json)
        print_json(json_pack("{s:o,s:o}", "trees", trees, "cycles", cycles));
    else
        json_decref(cycles);
    kin_monitor_graph_destroy(&g);
    return ncycles ? 1 : 0;
}

/* The prelude of the commands taking PID CTX:TASK: options, the task id,
 * and an attachment to the tree. Returns the exit status to stop with, or
 * -1 to go on with *n attached. */
static int
open_task(int argc, char **argv, const char *usage, opts *o, uint32_t *ctx,
          uint32_t *task, kin_node **n)
{
    int rc = parse(argc, argv, usage, 1, o);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (kin__cli_parse_task(o->args[0], ctx, task) ||
        kin__cli_attach(o->pid, n))
        return 2;
    return -1;
}

/* --- where / terminated -------------------------------------------------- */

int
kin__cli_where(int argc, char **argv)
{
    opts o;
    uint32_t ctx, task;
    kin_node *n;
    int rc = open_task(argc, argv,
                       "PID CTX:TASK [--json]\n  the current stack of a task's "
                       "thread (function and file:line) and who created it",
                       &o, &ctx, &task, &n);
    if (rc >= 0)
        return rc;
    kin_frame_info *fs;
    size_t count;
    kin_err e = kin_monitor_where(n, ctx, task, TIMEOUT_MS, &fs, &count);
    kin_task_info *ts = NULL;
    size_t nts = 0;
    if (!e)
        kin_monitor_ps(n, ctx, NULL, false, TIMEOUT_MS, &ts, &nts);
    kin_node_destroy(&n);
    if (e) {
        fprintf(stderr, "kin where: task %u:%u: %s\n", ctx, task,
                e == -ENOENT ? "no such live task" : kin_strerror(e));
        return 2;
    }
    const kin_task_info *t = NULL;
    for (size_t i = 0; i < nts; i++)
        if (ts[i].id == task)
            t = &ts[i];
    json_t *frames = json_array();
    if (!o.json && t) {
        printf("task %u:%u %s (%s)", ctx, task, t->name,
               kin_task_state_name(t->state));
        if (t->created_at[0])
            printf(", created at %s", t->created_at);
        if (t->caller_ctx || t->caller_task)
            printf(", %s by %u:%u", t->created_at[0] ? "spawned" : "called",
                   t->caller_ctx, t->caller_task);
        printf("\n");
    } else if (!o.json) {
        /* It was live when its stack was taken, gone when asked for its
         * details: say so rather than print a stack under no header. */
        printf("task %u:%u ended just after this stack was taken\n", ctx, task);
    }
    for (size_t i = 0; i < count; i++) {
        if (o.json)
            json_array_append_new(
                frames, json_pack("{s:I,s:s,s:s,s:i}", "addr",
                                  (json_int_t)fs[i].addr, "fn", fs[i].fn,
                                  "file", fs[i].file, "line", fs[i].line));
        else if (fs[i].line)
            printf("  #%-2zu %s at %s:%d\n", i, fs[i].fn, fs[i].file,
                   fs[i].line);
        else
            printf("  #%-2zu %s (%s)\n", i, fs[i].fn, fs[i].file);
    }
    if (o.json) {
        json_t *j = json_pack("{s:i,s:i,s:o}", "ctx", ctx, "task", task,
                              "frames", frames);
        if (!t)
            json_object_set_new(j, "ended", json_true());
        if (t && (t->caller_ctx || t->caller_task)) {
            char id[32];
            snprintf(id, sizeof id, "%u:%u", t->caller_ctx, t->caller_task);
            json_object_set_new(j, "caller", json_string(id));
        }
        print_json(j);
    } else {
        json_decref(frames);
    }
    free(fs);
    free(ts);
    return 0;
}

/* Who cancelled: "operator (pid P, user U)" for a kin command (the
 * runtime directory admits only this user, so U is ours), else the
 * cancelling task "CTX:TASK". */
static void
describe_canceller(char *buf, size_t size, uint32_t ctx, uint32_t task)
{
    int pid;
    if (kin_monitor_operator_pid(ctx, &pid)) {
        struct passwd *pw = getpwuid(getuid());
        char uid[16];
        snprintf(uid, sizeof uid, "%u", (unsigned)getuid());
        snprintf(buf, size, "operator (pid %d, user %s)", pid,
                 pw ? pw->pw_name : uid);
    } else {
        snprintf(buf, size, "%u:%u", ctx, task);
    }
}

static void
print_terminated(const kin_task_info *t, bool json, json_t *arr)
{
    char id[32], by[96] = "", dur[16], ago[16];
    snprintf(id, sizeof id, "%u:%u", t->ctx, t->id);
    if (t->state == KIN_TASK_CANCELLED)
        describe_canceller(by, sizeof by, t->cancelled_by_ctx,
                           t->cancelled_by_task);
    if (json) {
        json_t *j = json_pack(
            "{s:s,s:s,s:s,s:s,s:i,s:s,s:f,s:f}", "task", id, "name", t->name,
            "fn", t->fn, "state", kin_task_state_name(t->state), "result",
            t->result, "error", t->result ? kin_strerror(t->result) : "",
            "duration_ms", t->age_ms, "ended_ago_ms", t->ended_ago_ms);
        if (by[0])
            json_object_set_new(j, "cancelled_by", json_string(by));
        json_array_append_new(arr, j);
        return;
    }
    fmt_ms(dur, sizeof dur, t->age_ms);
    fmt_ms(ago, sizeof ago, t->ended_ago_ms);
    /* A cancelled task's state says so: its result column says by whom. */
    if (by[0])
        printf("%-9s %-20s %-10s %7s %7s  by %s\n", id, t->name,
               kin_task_state_name(t->state), dur, ago, by);
    else
        printf("%-9s %-20s %-10s %7s %7s  %s\n", id, t->name,
               kin_task_state_name(t->state), dur, ago,
               t->result ? kin_strerror(t->result) : "");
}

/* where-terminated's JSON: {"version": 1, "task": {...}} and, when the
 * canceller is still alive, "canceller": {"name", "state"}; arr holds the
 * task's object and then the canceller's. */
static void
finish_terminated(json_t *arr, bool json)
{
    if (json) {
        json_t *j = json_pack("{s:O}", "task", json_array_get(arr, 0));
        if (json_array_size(arr) > 1)
            json_object_set(j, "canceller", json_array_get(arr, 1));
        print_json(j);
    }
    json_decref(arr);
}

/* kin ps-terminated's rows per context without -n. */
#define PS_TERMINATED_ROWS 20

int
kin__cli_ps_terminated(int argc, char **argv)
{
    opts o;
    kin_node *n;
    int rc = open_tree(argc, argv,
                       "PID [-c CTX] [-n N] [--json]\n  recently terminated "
                       "tasks and how they ended; -n: the N most recent of "
                       "each context (default 20, 0: all)",
                       0, &o, &n);
    if (rc >= 0)
        return rc;
    kin_ctx_info *ctxs;
    size_t nctx;
    if (kin__cli_contexts(n, &ctxs, &nctx)) {
        kin_node_destroy(&n);
        return 2;
    }
    json_t *arr = json_array();
    if (!o.json)
        printf("%-9s %-20s %-10s %7s %7s  %s\n", "TASK", "NAME", "STATE", "RAN",
               "AGO", "RESULT");
    for (size_t i = 0; i < nctx; i++) {
        if (o.has_ctx && ctxs[i].id != o.ctx)
            continue;
        kin_task_info *ts;
        size_t count;
        if (kin_monitor_ps_terminated(n, ctxs[i].id, TIMEOUT_MS, &ts, &count))
            continue;
        size_t limit = o.limit < 0 ? PS_TERMINATED_ROWS : (size_t)o.limit;
        size_t first = limit && count > limit ? count - limit : 0;
        for (size_t k = first; k < count; k++)
            print_terminated(&ts[k], o.json, arr);
        if (first && !o.json)
            printf("  (%zu older in context %u not shown: -n 0 shows all)\n",
                   first, ctxs[i].id);
        free(ts);
    }
    kin_node_destroy(&n);
    free(ctxs);
    finish_json("tasks", arr, o.json);
    return 0;
}

int
kin__cli_where_terminated(int argc, char **argv)
{
    opts o;
    uint32_t ctx, task;
    kin_node *n;
    int rc =
        open_task(argc, argv,
                  "PID CTX:TASK [--json]\n  how a terminated task ended, and "
                  "who cancelled it (and what that task is doing)",
                  &o, &ctx, &task, &n);
    if (rc >= 0)
        return rc;
    kin_task_info *ts = NULL;
    size_t count = 0;
    kin_err e = kin_monitor_ps_terminated(n, ctx, TIMEOUT_MS, &ts, &count);
    const kin_task_info *t = NULL;
    for (size_t i = 0; !e && i < count; i++)
        if (ts[i].id == task)
            t = &ts[i];
    if (e || !t) {
        fprintf(stderr, "kin where-terminated: %u:%u: %s\n", ctx, task,
                e ? kin_strerror(e) : "not in the termination history");
        free(ts);
        kin_node_destroy(&n);
        return 2;
    }
    json_t *arr = json_array();
    print_terminated(t, o.json, arr);
    /* The canceller chain: who cancelled, and that task's own state. */
    if (t->state == KIN_TASK_CANCELLED) {
        uint32_t bc = t->cancelled_by_ctx, bt = t->cancelled_by_task;
        kin_task_info *live = NULL;
        size_t nlive = 0;
        bool op = kin_monitor_operator_pid(bc, NULL);
        if (bt && !op &&
            !kin_monitor_ps(n, bc, NULL, false, TIMEOUT_MS, &live, &nlive)) {
            for (size_t i = 0; i < nlive; i++) {
                if (live[i].id != bt)
                    continue;
                if (o.json) {
                    char bid[32];
                    snprintf(bid, sizeof bid, "%u:%u", bc, bt);
                    json_array_append_new(
                        arr, json_pack("{s:s,s:s,s:s}", "task", bid, "name",
                                       live[i].name, "state",
                                       kin_task_state_name(live[i].state)));
                } else {
                    printf("  cancelled by %u:%u %s (%s)", bc, bt, live[i].name,
                           kin_task_state_name(live[i].state));
                    if (live[i].caller_ctx || live[i].caller_task)
                        printf(", itself called by %u:%u", live[i].caller_ctx,
                               live[i].caller_task);
                    printf("\n");
                }
            }
        } else if (!o.json) {
            char by[96];
            describe_canceller(by, sizeof by, bc, bt);
            printf("  cancelled by %s%s\n", by,
                   bt || op ? "" : " (the context itself)");
        }
        free(live);
    }
    kin_node_destroy(&n);
    free(ts);
    finish_terminated(arr, o.json);
    return 0;
}

/* --- cancel / signal / stacktrace ------------------------------------------
 */

int
kin__cli_cancel(int argc, char **argv)
{
    opts o;
    uint32_t ctx, task;
    kin_node *n;
    int rc =
        open_task(argc, argv,
                  "PID CTX:TASK\n  cancel a task (it sees it at its next kin "
                  "blocking point)",
                  &o, &ctx, &task, &n);
    if (rc >= 0)
        return rc;
    kin_err e = kin_monitor_cancel(n, ctx, task, TIMEOUT_MS);
    kin_node_destroy(&n);
    if (e) {
        fprintf(stderr, "kin cancel: %u:%u: %s\n", ctx, task,
                e == -ENOENT ? "no such live task" : kin_strerror(e));
        return 2;
    }
    if (o.json)
        printf("{\"cancelled\": \"%u:%u\", \"version\": %d}\n", ctx, task,
               KIN_CLI_JSON_VERSION);
    else
        printf("cancel requested for %u:%u\n", ctx, task);
    return 0;
}

static int
simple_request(kin_node *n, uint32_t ctx, const char *cmd, const char *key,
               const char *val, kin_msg **reply)
{
    kin_buf b = {0};
    if (key)
        kin_pack(&b, "sMss", cmd, 1, key, val);
    else
        kin_pack(&b, "s", cmd);
    kin_err e = kin_monitor_request(n, ctx, &b, TIMEOUT_MS, reply);
    kin_buf_release(&b);
    return e;
}

static void
print_error_reply(const char *what, kin_err e, kin_msg *reply)
{
    const char *text = NULL;
    size_t len = 0;
    if (reply && kin_msg_unpack(reply, "M?S", &(uint32_t){0}, &text, &len))
        text = NULL;
    if (text)
        fprintf(stderr, "kin %s: %.*s\n", what, (int)len, text);
    else
        fprintf(stderr, "kin %s: %s\n", what, kin_strerror(e));
}

int
kin__cli_signal(int argc, char **argv)
{
    opts o;
    kin_node *n;
    int rc =
        open_tree(argc, argv,
                  "PID CTX SIGNAME\n  send a signal (TERM, INT, USR1, ...) to "
                  "the process of context CTX",
                  2, &o, &n);
    if (rc >= 0)
        return rc;
    uint32_t ctx = (uint32_t)strtoul(o.args[0], NULL, 10);
    kin_msg *reply = NULL;
    kin_err e = simple_request(n, ctx, "signal", "signal", o.args[1], &reply);
    kin_node_destroy(&n);
    if (e == KIN_EPEERGONE) {
        /* The context got the request (it was routed to it) and its
         * process ended before its answer left: the signal ended it. */
        kin_msg_destroy(&reply);
        printf("sent %s to context %u (its process ended)\n", o.args[1], ctx);
        return 0;
    }
    if (e) {
        print_error_reply("signal", e, reply);
        kin_msg_destroy(&reply);
        return 2;
    }
    kin_msg_destroy(&reply);
    printf("sent %s to context %u\n", o.args[1], ctx);
    return 0;
}

/* Prints frames (a JSON array of {fn, file, line}) as a stack. */
static void
print_frames(json_t *frames)
{
    size_t i;
    json_t *f;
    json_array_foreach(frames, i, f)
    {
        const char *fn = json_string_value(json_object_get(f, "fn"));
        const char *file = json_string_value(json_object_get(f, "file"));
        int line = (int)json_integer_value(json_object_get(f, "line"));
        if (line)
            printf("  #%-2zu %s at %s:%d\n", i, fn, file, line);
        else
            printf("  #%-2zu %s (%s)\n", i, fn, file);
    }
}

int
kin__cli_stacktrace(int argc, char **argv)
{
    opts o;
    kin_node *n;
    int rc =
        open_tree(argc, argv,
                  "PID CTX [--json]\n  the stacks of every thread of context "
                  "CTX",
                  1, &o, &n);
    if (rc >= 0)
        return rc;
    uint32_t ctx = (uint32_t)strtoul(o.args[0], NULL, 10);
    kin_msg *reply = NULL;
    kin_err e = simple_request(n, ctx, "stacktrace", NULL, NULL, &reply);
    kin_node_destroy(&n);
    if (e) {
        print_error_reply("stacktrace", e, reply);
        kin_msg_destroy(&reply);
        return 2;
    }
    kin_reader rd;
    kin_reader_init(&rd, reply->body, reply->len);
    uint32_t pairs, nthreads = 0;
    /* {"ctx": id, "threads": [...]} */
    e = kin_unpack(&rd, "M??Sa", &pairs, &(const char *){0}, &(size_t){0},
                   &nthreads);
    json_t *arr = json_array();
    for (uint32_t i = 0; !e && i < nthreads; i++) {
        uint32_t items, nf;
        int tid, err;
        const char *name;
        size_t nl;
        /* [tid, name, error, frames, why]; older contexts send no why */
        if ((e = kin_unpack(&rd, "aiSia", &items, &tid, &name, &nl, &err, &nf)))
            break;
        json_t *frames = json_array();
        uint32_t four;
        for (uint32_t f = 0; !e && f < nf; f++) {
            uint64_t addr;
            const char *fn, *file;
            size_t fl, il;
            int line;
            if ((e = kin_unpack(&rd, "aUSSi", &four, &addr, &fn, &fl, &file,
                                &il, &line)))
                break;
            json_array_append_new(frames,
                                  json_pack("{s:s%,s:s%,s:i}", "fn", fn, fl,
                                            "file", file, il, "line", line));
        }
        const char *why = "";
        size_t wl = 0;
        if (!e && items >= 5)
            e = kin_unpack(&rd, "S", &why, &wl);
        if (e) {
            json_decref(frames);
            break;
        }
        if (!wl && err) {
            why = kin_strerror(err);
            wl = strlen(why);
        }
        if (!o.json) {
            printf("thread %d (%.*s)%s%.*s\n", tid, (int)nl, name,
                   wl ? ": " : "", (int)wl, why);
            print_frames(frames);
        }
        json_t *t = json_pack("{s:i,s:s%,s:o}", "tid", tid, "name", name, nl,
                              "frames", frames);
        if (wl)
            json_object_set_new(t, "unwound_not", json_stringn(why, wl));
        json_array_append_new(arr, t);
    }
    kin_reader_release(&rd);
    kin_msg_destroy(&reply);
    finish_json("threads", arr, o.json);
    if (e)
        fprintf(stderr, "kin stacktrace: bad reply from context %u: %s\n", ctx,
                kin_strerror(e));
    return e ? 2 : 0;
}
