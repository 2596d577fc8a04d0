/* kin-monitor-bench: what the task monitor costs (docs/performance.md,
 * "Monitor"): `kin ps` and `kin pstree` over a context with 10,000 live
 * tasks and `kin ps` over a tree of 50 contexts, end to end (the kin
 * command, spawn to exit) and through the C API, and what task tracing adds
 * to a call round trip. The executable is also its kin children. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kin/kin.h>

#include "core/sync.h"
#include "core/task.h"
#include "core/tasktab.h"

#include "tests/bench/bench_stats.h"

#ifndef KIN_CLI
#error "KIN_CLI must name the kin command (tests/bench/CMakeLists.txt)"
#endif

#define IO_TIMEOUT 10000  /* ms: a single wait longer than this is a fault */
#define CLI_TIMEOUT 30000 /* ms: a kin command still running is killed */
#define BLOCK_MS 600000   /* how long the blocker waits unless cancelled */
#define PAYLOAD 64        /* bytes echoed per call in the round trip */
#define TRACE_ROUNDS 5    /* microbenchmark rounds (median of) */
#define MAX_CONTEXTS 256  /* kin_ctx_info.children holds 256 */

extern char **environ;

typedef struct config {
    bool json, quick;
    bool hold; /* keep the task context up until stdin closes (profiling) */
    /* the forked tree's inner contexts exec their zygotes
     * (kin_spawn_opts.forks_children off): the A/B switch */
    bool exec_zygotes;
    /* measure tree1000_spawn_cpu_ms: reading every thread's schedstat
     * around the spawn was seen to slow the tree's stop that follows */
    bool tree_cpu;
    int tasks;    /* live tasks in the big context */
    int contexts; /* contexts in the tree, the master included */
    int tree;     /* contexts in the 3-level forked tree, the master not */
    int runs;     /* kin command runs per figure (median of) */
    int api_runs; /* C API runs per figure (median of) */
    int samples;  /* call round trips */
    int warmup;
    int trace_iters; /* add+end pairs per microbenchmark round */
} config;

/* Every figure; NAN when it was not measured or its measurement failed. */
typedef struct results {
    double ps_10k_cli_ms, ps_10k_api_ms, ps_tree50_cli_ms, ps_tree50_api_ms;
    double pstree_10k_cli_ms, trace_ns_per_call, call_rtt_us, trace_pct;
    double trace_full_ns_per_call, trace_full_pct;
    double ps_idle_cli_ms, ps_10k_reply_kib, ps_10k_lines, pstree_10k_lines;
    double ps_tree50_lines, stacktrace_cli_ms;
    double tree1000_spawn_ms, tree1000_tree_ms, tree1000_ps_ms;
    double tree1000_stop_ms, tree1000_contexts, tree1000_spawn_cpu_ms;
} results;

static const struct figure {
    const char *key;
    size_t off;
} figures[] = {
    {"ps_10k_cli_ms", offsetof(results, ps_10k_cli_ms)},
    {"ps_10k_api_ms", offsetof(results, ps_10k_api_ms)},
    {"ps_tree50_cli_ms", offsetof(results, ps_tree50_cli_ms)},
    {"ps_tree50_api_ms", offsetof(results, ps_tree50_api_ms)},
    {"pstree_10k_cli_ms", offsetof(results, pstree_10k_cli_ms)},
    {"trace_ns_per_call", offsetof(results, trace_ns_per_call)},
    {"call_rtt_us", offsetof(results, call_rtt_us)},
    {"trace_pct", offsetof(results, trace_pct)},
    {"trace_full_ns_per_call", offsetof(results, trace_full_ns_per_call)},
    {"trace_full_pct", offsetof(results, trace_full_pct)},
    {"ps_idle_cli_ms", offsetof(results, ps_idle_cli_ms)},
    {"ps_10k_reply_kib", offsetof(results, ps_10k_reply_kib)},
    {"ps_10k_lines", offsetof(results, ps_10k_lines)},
    {"pstree_10k_lines", offsetof(results, pstree_10k_lines)},
    {"ps_tree50_lines", offsetof(results, ps_tree50_lines)},
    {"stacktrace_cli_ms", offsetof(results, stacktrace_cli_ms)},
    {"tree1000_spawn_ms", offsetof(results, tree1000_spawn_ms)},
    {"tree1000_tree_ms", offsetof(results, tree1000_tree_ms)},
    {"tree1000_ps_ms", offsetof(results, tree1000_ps_ms)},
    {"tree1000_stop_ms", offsetof(results, tree1000_stop_ms)},
    {"tree1000_contexts", offsetof(results, tree1000_contexts)},
    {"tree1000_spawn_cpu_ms", offsetof(results, tree1000_spawn_cpu_ms)},
};
#define N_FIGURES (sizeof figures / sizeof figures[0])

static double *
figure(results *r, size_t i)
{
    return (double *)((char *)r + figures[i].off);
}

/* --- clocks and statistics ------------------------------------------------ */

/* --- the served functions (every context) --------------------------------- */

/* Waits at a kin blocking point until cancelled: holds the only worker of
 * a workers=1 context while the calls behind it stay queued (pending). */
static kin_err
block(kin_call *c, void *arg)
{
    kin_latch *l;
    kin_err e = kin_latch_new(&l);
    if (e)
        return e;
    kin_msg *m = NULL;
    e = kin_latch_get(l, BLOCK_MS, &m);
    kin_msg_destroy(&m);
    kin_latch_destroy(&l);
    return e;
}

static kin_err
echo(kin_call *c, void *arg)
{
    const void *p = NULL;
    size_t len = 0;
    kin_err e = kin_call_args(c, "B", &p, &len);
    return e ? e : kin_call_return(c, "B", p, len);
}

static kin_err
nop(kin_call *c, void *arg)
{
    return KIN_OK;
}

/* The forked tree (section 4): this context's children, started by
 * mbench.subtree, stopped when the context is. */
#define SUBTREE_MAX 64
/* A context stops its children one after the other before it exits: an
 * inner context needs the time its subtree takes, or its parent's SIGKILL
 * cuts the stop short (and the subtree dies by PR_SET_PDEATHSIG, leaving
 * its sockets in the runtime dir). */
#define TREE_STOP_MS 60000
static kin_child *subtree_kids[SUBTREE_MAX];
static int subtree_count;

static kin_err grow(kin_node *n, kin_child **kids, int count, int fan, int next,
                    bool sub);

/* Forks `fan` children, then has each fork `next` of its own; sub: those
 * that fork children get their zygotes at their start
 * (kin_spawn_opts.forks_children). */
static kin_err
subtree(kin_call *c, void *arg)
{
    int fan = 0, next = 0;
    bool sub = false;
    kin_err e = kin_call_args(c, "iib", &fan, &next, &sub);
    if (e)
        return e;
    if (fan < 0 || fan > SUBTREE_MAX - subtree_count || next < 0)
        return -EINVAL;
    kin_node *n = kin_call_node(c);
    kin_spawn_opts o = {.fork = true,
                        .forks_children = sub && next > 0,
                        .stop_timeout_ms = TREE_STOP_MS};
    int first = subtree_count;
    for (int i = 0; i < fan && !e; i++)
        if (!(e = kin_spawn(n, &o, &subtree_kids[subtree_count])))
            subtree_count++;
    if (!e && next > 0)
        e = grow(n, subtree_kids + first, subtree_count - first, next, 0, sub);
    return e ? kin_call_fail(c, e, "subtree: %s", kin_strerror(e)) : KIN_OK;
}

/* Asks every one of kids to grow a subtree (fan, next), all at once, and
 * waits for them all. */
static kin_err
grow(kin_node *n, kin_child **kids, int count, int fan, int next, bool sub)
{
    kin_receiver **rs = calloc((size_t)count, sizeof *rs);
    if (!rs)
        return -ENOMEM;
    kin_err e = KIN_OK;
    for (int i = 0; i < count && !e; i++)
        e = kin_call_async(n, kin_child_id(kids[i]), "mbench.subtree", &rs[i],
                           "iib", fan, next, sub);
    for (int i = 0; i < count; i++) {
        kin_msg *r = NULL;
        kin_err w = rs[i] ? kin_call_wait(rs[i], 10 * IO_TIMEOUT, &r) : KIN_OK;
        if (!e)
            e = w;
        kin_msg_destroy(&r);
        kin_receiver_destroy(&rs[i]);
    }
    free(rs);
    return e;
}

/* --- the kin command, end to end ------------------------------------------ */

/* Runs `kin CMD PID` with stdout into a pipe that is read to the end, and
 * times it from spawn to exit. *lines gets the lines it printed. Returns
 * its exit status, or -1 when it could not run or ran past CLI_TIMEOUT
 * (then it is killed; it is always reaped). */
static int
run_cli(const char *cmd, pid_t target, const char *extra, uint64_t *ns,
        size_t *lines)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)target);
    char *argv[] = {"kin", (char *)cmd, pid, (char *)extra, NULL};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC))
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    pid_t child;
    uint64_t t0 = now_ns();
    /* posix_spawn (vfork-like in glibc): no copy of this process's page
     * tables, so the figure is kin's and not the bench's. */
    int rc = posix_spawn(&child, KIN_CLI, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        errno = rc;
        return -1;
    }
    char buf[65536];
    size_t nl = 0;
    uint64_t deadline = t0 + (uint64_t)CLI_TIMEOUT * 1000000u;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline)
            break;
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int left = (int)((deadline - now) / 1000000u) + 1;
        if (poll(&p, 1, left) < 0 && errno != EINTR)
            break;
        ssize_t got = read(fds[0], buf, sizeof buf);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            break;
        for (ssize_t i = 0; i < got; i++)
            nl += buf[i] == '\n';
    }
    close(fds[0]);
    uint64_t now = now_ns();
    int left = now < deadline ? (int)((deadline - now) / 1000000u) : 0;
    int status = bench_reap(child, left);
    *ns = now_ns() - t0;
    *lines = nl;
    if (status < 0 || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* Median of `runs` runs of `kin CMD PID [EXTRA]` (exit status 0 each, at
 * least min_lines lines of output). */
static kin_err
time_cli_args(const config *cfg, const char *cmd, const char *extra,
              size_t min_lines, double *ms, double *lines_out)
{
    uint64_t *ns = calloc((size_t)cfg->runs, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    kin_err e = KIN_OK;
    size_t lines = 0;
    for (int i = 0; i < cfg->runs && !e; i++) {
        int st = run_cli(cmd, getpid(), extra, &ns[i], &lines);
        if (st != 0) {
            fprintf(stderr, "kin-monitor-bench: kin %s: %s %d\n", cmd,
                    st < 0 ? "failed or timed out" : "exit status", st);
            e = KIN_EREMOTE;
        } else if (lines < min_lines) {
            fprintf(stderr,
                    "kin-monitor-bench: kin %s printed %zu lines, expected "
                    "at least %zu\n",
                    cmd, lines, min_lines);
            e = KIN_EBADMSG;
        }
    }
    if (!e) {
        *ms = median(ns, (size_t)cfg->runs) / 1e6;
        if (lines_out)
            *lines_out = (double)lines;
    }
    free(ns);
    return e;
}

static kin_err
time_cli(const config *cfg, const char *cmd, size_t min_lines, double *ms,
         double *lines_out)
{
    return time_cli_args(cfg, cmd, NULL, min_lines, ms, lines_out);
}

/* --- the C API ------------------------------------------------------------ */

/* kin_monitor_ps of one context; *count gets how many tasks it has. */
static kin_err
api_ps(kin_node *n, uint32_t ctx, size_t *count)
{
    kin_task_info *ts = NULL;
    kin_err e = kin_monitor_ps(n, ctx, NULL, false, IO_TIMEOUT, &ts, count);
    free(ts);
    return e;
}

/* What `kin ps` asks over the C API (kin_monitor_graph). *nctx gets the
 * contexts, *tasks the total of their tasks. */
static kin_err
api_ps_tree(kin_node *n, size_t *nctx, size_t *tasks)
{
    kin_graph *g = NULL;
    kin_err e = kin_monitor_graph(n, KIN_NO_CTX, IO_TIMEOUT, &g);
    *nctx = *tasks = 0;
    for (size_t i = 0; !e && i < g->n_ctxs; i++)
        if (g->ctx_errors[i])
            e = g->ctx_errors[i];
    if (!e) {
        *nctx = g->n_ctxs;
        for (size_t i = 0; i < g->n_nodes; i++)
            *tasks += g->nodes[i].kind == KIN_GRAPH_TASK;
    }
    kin_monitor_graph_destroy(&g);
    return e;
}

/* --- 1. a context with `tasks` live tasks ----------------------------------
 */

typedef struct big {
    kin_child *child;
    uint32_t id;
    kin_receiver *blocker;
    kin_receiver **queued;
    int nqueued;
} big;

/* Waits until ctx has `want` live tasks (deadline IO_TIMEOUT). */
static kin_err
wait_tasks(kin_node *n, uint32_t ctx, uint32_t want, uint32_t *have)
{
    uint64_t end = now_ns() + (uint64_t)IO_TIMEOUT * 1000000u;
    kin_ctx_info *info = malloc(sizeof *info);
    if (!info)
        return -ENOMEM;
    kin_err e;
    for (;;) {
        e = kin_monitor_info(n, ctx, IO_TIMEOUT, info);
        *have = e ? 0 : info->tasks;
        if (e || *have >= want)
            break;
        if (now_ns() > end) {
            e = KIN_ETIMEOUT;
            break;
        }
        usleep(2000);
    }
    free(info);
    return e;
}

/* Waits until the blocker holds the child's only worker (deadline
 * IO_TIMEOUT). */
static kin_err
wait_blocked(kin_node *n, uint32_t ctx)
{
    uint64_t end = now_ns() + (uint64_t)IO_TIMEOUT * 1000000u;
    for (;;) {
        kin_task_info *ts = NULL;
        size_t count = 0;
        bool waiting = false;
        kin_err e = kin_monitor_ps(n, ctx, "mbench.block", false, IO_TIMEOUT,
                                   &ts, &count);
        for (size_t i = 0; !e && i < count; i++)
            waiting |= ts[i].state == KIN_TASK_WAITING;
        free(ts);
        if (e)
            return e;
        if (waiting)
            return KIN_OK;
        if (now_ns() > end)
            return KIN_ETIMEOUT;
        usleep(1000);
    }
}

/* A child with one worker, blocked, and tasks-1 calls queued behind it. */
static kin_err
big_start(const config *cfg, kin_node *master, big *b)
{
    kin_spawn_opts o = {.name = "big", .workers = 1};
    kin_err e = kin_spawn(master, &o, &b->child);
    if (e)
        return e;
    b->id = kin_child_id(b->child);
    if ((e = kin_call_async(master, b->id, "mbench.block", &b->blocker, NULL)))
        return e;
    if ((e = wait_blocked(master, b->id)))
        return e;
    int want = cfg->tasks - 1;
    b->queued = calloc((size_t)want, sizeof *b->queued);
    if (!b->queued)
        return -ENOMEM;
    for (; b->nqueued < want && !e; b->nqueued++)
        e = kin_call_async(master, b->id, "mbench.nop", &b->queued[b->nqueued],
                           NULL);
    if (e) {
        b->nqueued--;
        return e;
    }
    uint32_t have = 0;
    e = wait_tasks(master, b->id, (uint32_t)cfg->tasks, &have);
    if (e || have != (uint32_t)cfg->tasks) {
        fprintf(stderr,
                "kin-monitor-bench: context %u has %u live tasks, expected "
                "%d\n",
                b->id, have, cfg->tasks);
        return e ? e : KIN_EBADMSG;
    }
    return KIN_OK;
}

/* Cancels the blocker (the queued calls then run and end), drops every
 * receiver and stops the child. */
static void
big_stop(big *b)
{
    if (b->blocker)
        kin_call_cancel(b->blocker);
    kin_receiver_destroy(&b->blocker);
    for (int i = 0; i < b->nqueued; i++)
        kin_receiver_destroy(&b->queued[i]);
    free(b->queued);
    b->queued = NULL;
    kin_child_destroy(&b->child);
}

static kin_err
run_big(const config *cfg, kin_node *master, results *res)
{
    big b = {0};
    kin_err e = big_start(cfg, master, &b);
    const char *what = "setting up the task context";
    if (!e) {
        /* The size of what one ps of that context sends. */
        kin_buf req = {0};
        kin_msg *reply = NULL;
        e = kin_pack(&req, "s", "ps");
        if (!e)
            e = kin_monitor_request(master, b.id, &req, IO_TIMEOUT, &reply);
        if (!e)
            res->ps_10k_reply_kib = (double)reply->len / 1024.0;
        kin_msg_destroy(&reply);
        kin_buf_release(&req);
    }
    if (!e && cfg->hold) {
        /* For profiling the kin command against this context. */
        fprintf(stderr,
                "kin-monitor-bench: context %u holds %d tasks; try `%s ps "
                "%d`; close stdin (Ctrl-D) to go on\n",
                b.id, cfg->tasks, KIN_CLI, (int)getpid());
        char line[64];
        while (fgets(line, sizeof line, stdin))
            ;
    }
    uint64_t *ns = calloc((size_t)cfg->api_runs, sizeof *ns);
    if (!e && !ns)
        e = -ENOMEM;
    for (int i = 0; i < cfg->api_runs && !e; i++) {
        size_t count = 0;
        uint64_t t0 = now_ns();
        e = api_ps(master, b.id, &count);
        ns[i] = now_ns() - t0;
        if (!e && count != (size_t)cfg->tasks)
            e = KIN_EBADMSG;
        what = "kin_monitor_ps";
    }
    if (!e)
        res->ps_10k_api_ms = median(ns, (size_t)cfg->api_runs) / 1e6;
    free(ns);
    /* `kin ps` prints a header and one line per task of the tree (the
     * master's own tasks included). */
    if (!e && (e = time_cli(cfg, "ps", (size_t)cfg->tasks + 1,
                            &res->ps_10k_cli_ms, &res->ps_10k_lines)))
        what = "kin ps";
    /* `kin pstree` prints at least one line per task (each queued call is
     * a root whose chain ends at the blocker). */
    if (!e && (e = time_cli(cfg, "pstree", (size_t)cfg->tasks,
                            &res->pstree_10k_cli_ms, &res->pstree_10k_lines)))
        what = "kin pstree";
    if (e)
        fprintf(stderr, "kin-monitor-bench: %d tasks: %s: %s\n", cfg->tasks,
                what, kin_strerror(e));
    big_stop(&b);
    return e;
}

/* --- 2. a tree of contexts, and the call round trip ------------------------
 */

static kin_err
call_rtt(const config *cfg, kin_node *master, uint32_t ctx, double *us)
{
    uint8_t payload[PAYLOAD];
    memset(payload, 'k', sizeof payload);
    int total = cfg->warmup + cfg->samples;
    uint64_t *ns = calloc((size_t)cfg->samples, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    kin_err e = KIN_OK;
    for (int i = 0; i < total && !e; i++) {
        kin_msg *r = NULL;
        uint64_t t0 = now_ns();
        e = kin_call_sync(master, ctx, "mbench.echo", IO_TIMEOUT, &r, "B",
                          payload, sizeof payload);
        uint64_t t1 = now_ns();
        const void *p = NULL;
        size_t len = 0;
        if (!e && i == 0 &&
            (kin_msg_unpack(r, "B", &p, &len) || len != PAYLOAD ||
             memcmp(p, payload, PAYLOAD)))
            e = KIN_EBADMSG;
        kin_msg_destroy(&r);
        if (i >= cfg->warmup)
            ns[i - cfg->warmup] = t1 - t0;
    }
    if (!e)
        *us = median(ns, (size_t)cfg->samples) / 1e3;
    free(ns);
    return e;
}

static kin_err
run_tree(const config *cfg, kin_node *master, results *res)
{
    int nkids = cfg->contexts - 1;
    kin_child **kids = calloc((size_t)nkids, sizeof *kids);
    uint64_t *ns = calloc((size_t)cfg->api_runs, sizeof *ns);
    kin_err e = kids && ns ? KIN_OK : -ENOMEM;
    const char *what = "spawn";
    int started = 0;
    for (; started < nkids && !e; started++)
        e = kin_spawn(master, NULL, &kids[started]);
    if (e)
        started--;
    if (!e &&
        (e = call_rtt(cfg, master, kin_child_id(kids[0]), &res->call_rtt_us)))
        what = "call round trip";
    for (int i = 0; i < cfg->api_runs && !e; i++) {
        size_t nctx = 0, tasks = 0;
        uint64_t t0 = now_ns();
        e = api_ps_tree(master, &nctx, &tasks);
        ns[i] = now_ns() - t0;
        if (!e && nctx != (size_t)cfg->contexts)
            e = KIN_EBADMSG;
        what = "kin_monitor_info + kin_monitor_ps over the tree";
    }
    if (!e)
        res->ps_tree50_api_ms = median(ns, (size_t)cfg->api_runs) / 1e6;
    if (!e && (e = time_cli(cfg, "ps", 2, &res->ps_tree50_cli_ms,
                            &res->ps_tree50_lines)))
        what = "kin ps";
    if (e)
        fprintf(stderr, "kin-monitor-bench: %d contexts: %s: %s\n",
                cfg->contexts, what, kin_strerror(e));
    for (int i = 0; i < started; i++)
        kin_child_destroy(&kids[i]);
    free(ns);
    free(kids);
    return e;
}

/* --- 4. a tree of forked contexts ------------------------------------------
 */

/* Three levels under the master, a x b x c, about cfg->tree contexts. */
static void
tree_shape(int total, int *a, int *b, int *c)
{
    int f = 1;
    while ((f + 1) * (f + 1) * (f + 1) <= total)
        f++;
    *a = *b = f;
    int rest = total - f - f * f;
    *c = (rest + f * f / 2) / (f * f); /* rounded */
    if (*c < 1)
        *c = 1;
}

/* The parent of pid from /proc/PID/stat; -1 if gone. */
static pid_t
ppid_of(const char *pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = 0;
    char *rp = strrchr(buf, ')');
    int ppid = -1;
    if (!rp || sscanf(rp + 2, "%*c %d", &ppid) != 1)
        return -1;
    return ppid;
}

/* Nanoseconds on a CPU so far of every thread of pid (the first field of
 * /proc/PID/task/TID/schedstat). */
static double
threads_cpu_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    double ns = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char file[128];
        snprintf(file, sizeof file, "/proc/%d/task/%s/schedstat", (int)pid,
                 de->d_name);
        FILE *f = fopen(file, "r");
        unsigned long long run = 0;
        if (f && fscanf(f, "%llu", &run) == 1)
            ns += (double)run;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return ns;
}

/* CPU time run so far by this process and all its descendants (their live
 * threads): the forked tree's spawn takes the difference, a figure the
 * machine's other load does not inflate as it does the wall time. */
static double
tree_cpu_ns(void)
{
    size_t cap = 4096, n = 0;
    pid_t(*procs)[2] = malloc(cap * sizeof *procs); /* pid, ppid */
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (procs && d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        pid_t pp = ppid_of(de->d_name);
        if (pp < 0)
            continue;
        if (n == cap) {
            void *more = realloc(procs, 2 * cap * sizeof *procs);
            if (!more)
                break;
            procs = more;
            cap *= 2;
        }
        procs[n][0] = atoi(de->d_name);
        procs[n][1] = pp;
        n++;
    }
    if (d)
        closedir(d);
    bool *ours = calloc(n ? n : 1, sizeof *ours);
    double ns = threads_cpu_ns(getpid());
    /* Marks descendants level by level until no more are found. */
    for (bool more = ours != NULL; more;) {
        more = false;
        for (size_t i = 0; i < n; i++) {
            if (ours[i])
                continue;
            bool up = procs[i][1] == getpid();
            for (size_t j = 0; !up && j < n; j++)
                up = ours[j] && procs[j][0] == procs[i][1];
            if (up) {
                ours[i] = more = true;
                ns += threads_cpu_ns(procs[i][0]);
            }
        }
    }
    free(ours);
    free(procs);
    return ns;
}

static void *
destroy_child(void *arg)
{
    kin_child_destroy(arg);
    return NULL;
}

static kin_err
run_forked_tree(const config *cfg, kin_node *master, results *res)
{
    int a, b, c;
    tree_shape(cfg->tree, &a, &b, &c);
    int total = a + a * b + a * b * c;
    kin_child **kids = calloc((size_t)a, sizeof *kids);
    kin_err e = kids ? KIN_OK : -ENOMEM;
    const char *what = "spawn";
    int started = 0;
    bool sub = !cfg->exec_zygotes;
    kin_spawn_opts o = {
        .fork = true, .forks_children = sub, .stop_timeout_ms = TREE_STOP_MS};
    double cpu0 = cfg->tree_cpu ? tree_cpu_ns() : 0;
    uint64_t t0 = now_ns();
    for (; started < a && !e; started++)
        e = kin_spawn(master, &o, &kids[started]);
    if (e)
        started--;
    if (!e)
        e = grow(master, kids, started, b, c, sub);
    if (!e)
        res->tree1000_spawn_ms = (double)(now_ns() - t0) / 1e6;
    if (!e && cfg->tree_cpu)
        res->tree1000_spawn_cpu_ms = (tree_cpu_ns() - cpu0) / 1e6;
    /* kin tree: a header and a line per context; kin ps: at least the
     * header. */
    if (!e && (e = time_cli(cfg, "tree", (size_t)total + 1,
                            &res->tree1000_tree_ms, NULL)))
        what = "kin tree";
    if (!e && (e = time_cli(cfg, "ps", 1, &res->tree1000_ps_ms, NULL)))
        what = "kin ps";
    if (e)
        fprintf(stderr, "kin-monitor-bench: forked tree of %d: %s: %s\n", total,
                what, kin_strerror(e));
    uint64_t t1 = now_ns();
    /* The subtrees stop side by side, one thread each. */
    pthread_t *ts = calloc((size_t)a, sizeof *ts);
    bool *joinable = calloc((size_t)a, sizeof *joinable);
    for (int i = 0; ts && joinable && i < started; i++)
        joinable[i] = !pthread_create(&ts[i], NULL, destroy_child, &kids[i]);
    for (int i = 0; i < started; i++) {
        if (joinable && joinable[i])
            pthread_join(ts[i], NULL);
        else
            kin_child_destroy(&kids[i]);
    }
    free(joinable);
    free(ts);
    if (!e) {
        res->tree1000_stop_ms = (double)(now_ns() - t1) / 1e6;
        res->tree1000_contexts = total;
    }
    free(kids);
    return e;
}

/* --- 3. the cost of tracing ------------------------------------------------
 */

/* What the call path does for a task record besides add and end, done here
 * the same way: on_call reads the name, run_call renames the record under
 * its lock and stamps it, and the caller's thread records what it awaits
 * and that it waits (router/pool.c, router/call.c, core/latch.c). */
static void
trace_extras(kin_task *t, kin_task *caller)
{
    char fn[48];
    snprintf(fn, sizeof fn, "%.*s", 11, "mbench.echo");
    pthread_mutex_lock(&t->mu);
    snprintf(t->name, sizeof t->name, "%.*s", 11, fn);
    snprintf(t->fn, sizeof t->fn, "%.*s", 11, fn);
    pthread_mutex_unlock(&t->mu);
    t->tid = kin__gettid();
    kin_task *prev = kin__task_set_self(t);
    t->started_ns = kin__now_ns();
    atomic_store(&t->state, KIN_TASK_RUNNING);
    t->ended_ns = kin__now_ns();
    t->tid = 0;
    kin__task_set_self(prev);
    kin__task_await_call(caller, 1, 1000, "mbench.echo");
    kin__task_wait_begin(caller, NULL, NULL, "receiver");
    kin__task_wait_end(caller);
    kin__task_await_call(caller, KIN_NO_CTX, 0, NULL);
}

/* ns per call of kin__tasktab_add + kin__tasktab_end (full: with the
 * extras above), median of TRACE_ROUNDS rounds. */
static kin_err
trace_cost(const config *cfg, bool full, double *ns_per_call)
{
    kin__tasktab tab;
    if (kin__tasktab_init(&tab, 1, 0))
        return -ENOMEM;
    kin_task *caller = kin__tasktab_add(&tab, "main", "");
    kin_err e = caller ? KIN_OK : -ENOMEM;
    uint64_t ns[TRACE_ROUNDS];
    for (int r = 0; r < TRACE_ROUNDS && !e; r++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < cfg->trace_iters; i++) {
            kin_task *t = kin__tasktab_add(&tab, "mbench.echo", "mbench.echo");
            if (!t) {
                e = -ENOMEM;
                break;
            }
            t->caller_ctx = 1;
            t->caller_handle = 1000;
            if (full)
                trace_extras(t, caller);
            kin__tasktab_end(&tab, t, KIN_TASK_DONE, KIN_OK);
        }
        ns[r] = now_ns() - t0;
    }
    if (!e)
        *ns_per_call = median(ns, TRACE_ROUNDS) / cfg->trace_iters;
    kin__tasktab_fini(&tab); /* frees caller, still live */
    return e;
}

/* --- the run -------------------------------------------------------------- */

static int
run(const config *cfg, results *res)
{
    kin_node *master = NULL;
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin-monitor-bench: kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    int rc = 1;
    if ((e = trace_cost(cfg, false, &res->trace_ns_per_call)) ||
        (e = trace_cost(cfg, true, &res->trace_full_ns_per_call))) {
        fprintf(stderr, "kin-monitor-bench: tracing: %s\n", kin_strerror(e));
        goto out;
    }
    /* The floor: the kin command over the master alone. */
    if (time_cli(cfg, "ps", 1, &res->ps_idle_cli_ms, NULL))
        goto out;
    /* Every thread of the master unwound and symbolized: at least its main
     * thread, broker and workers, a few frames each. */
    if (time_cli_args(cfg, "stacktrace", "0", 12, &res->stacktrace_cli_ms,
                      NULL))
        goto out;
    if (run_big(cfg, master, res))
        goto out;
    if (run_tree(cfg, master, res))
        goto out;
    if (cfg->tree && run_forked_tree(cfg, master, res))
        goto out;
    res->trace_pct = res->trace_ns_per_call / (res->call_rtt_us * 1e3) * 100;
    res->trace_full_pct =
        res->trace_full_ns_per_call / (res->call_rtt_us * 1e3) * 100;
    rc = 0;
out:
    /* Stops and reaps any child still running. */
    kin_node_destroy(&master);
    return rc;
}

/* --- output --------------------------------------------------------------- */

static void
print_json(const config *cfg, results *r)
{
    printf("{\"quick\":%s,\"tasks\":%d,\"contexts\":%d,\"runs\":%d,"
           "\"api_runs\":%d,\"samples\":%d,\"exec_zygotes\":%s",
           cfg->quick ? "true" : "false", cfg->tasks, cfg->contexts, cfg->runs,
           cfg->api_runs, cfg->samples, cfg->exec_zygotes ? "true" : "false");
    for (size_t i = 0; i < N_FIGURES; i++) {
        double v = *figure(r, i);
        if (isnan(v))
            printf(",\"%s\":null", figures[i].key);
        else
            printf(",\"%s\":%.3f", figures[i].key, v);
    }
    printf("}\n");
}

/* One table row; goal NAN: reported, not judged. */
static void
row(const char *name, double v, double goal)
{
    char g[16] = "";
    const char *verdict = "";
    if (!isnan(goal)) {
        snprintf(g, sizeof g, "<= %g", goal);
        if (!isnan(v))
            verdict = v <= goal ? "ok" : "MISS";
    }
    printf("%-40s %12.3f  %-10s %s\n", name, v, g, verdict);
}

static void
print_table(const config *cfg, const results *r)
{
    char name[64];
    printf("kin-monitor-bench%s: %d live tasks, %d contexts, median of %d "
           "kin runs / %d API runs, %d round trips\n\n",
           cfg->quick ? " --quick" : "", cfg->tasks, cfg->contexts, cfg->runs,
           cfg->api_runs, cfg->samples);
    printf("%-40s %12s  %-10s %s\n", "figure", "value", "goal", "");
    snprintf(name, sizeof name, "kin ps, %d tasks (ms)", cfg->tasks);
    row(name, r->ps_10k_cli_ms, 50);
    snprintf(name, sizeof name, "kin_monitor_ps, %d tasks (ms)", cfg->tasks);
    row(name, r->ps_10k_api_ms, NAN);
    snprintf(name, sizeof name, "kin pstree, %d tasks (ms)", cfg->tasks);
    row(name, r->pstree_10k_cli_ms, NAN);
    snprintf(name, sizeof name, "kin ps, %d contexts (ms)", cfg->contexts);
    row(name, r->ps_tree50_cli_ms, 200);
    snprintf(name, sizeof name, "info + ps API, %d contexts (ms)",
             cfg->contexts);
    row(name, r->ps_tree50_api_ms, NAN);
    row("kin ps, master alone (ms)", r->ps_idle_cli_ms, NAN);
    row("kin stacktrace, master's threads (ms)", r->stacktrace_cli_ms, NAN);
    snprintf(name, sizeof name, "forked tree of %.0f: spawn (ms)",
             r->tree1000_contexts);
    row(name, r->tree1000_spawn_ms, 1500);
    snprintf(name, sizeof name, "forked tree of %.0f: spawn CPU (ms)",
             r->tree1000_contexts);
    row(name, r->tree1000_spawn_cpu_ms, NAN);
    snprintf(name, sizeof name, "forked tree of %.0f: kin tree (ms)",
             r->tree1000_contexts);
    row(name, r->tree1000_tree_ms, 500);
    snprintf(name, sizeof name, "forked tree of %.0f: kin ps (ms)",
             r->tree1000_contexts);
    row(name, r->tree1000_ps_ms, 500);
    snprintf(name, sizeof name, "forked tree of %.0f: stop (ms)",
             r->tree1000_contexts);
    row(name, r->tree1000_stop_ms, NAN);
    row("task add+end (ns/call)", r->trace_ns_per_call, NAN);
    row("all task tracing of a call (ns/call)", r->trace_full_ns_per_call, NAN);
    row("call rtt median (us)", r->call_rtt_us, NAN);
    row("task add+end / call rtt (%)", r->trace_pct, 5);
    row("all tracing / call rtt (%)", r->trace_full_pct, 5);
    printf("\nps reply for %d tasks: %.0f KiB; kin ps printed %.0f lines, kin "
           "pstree %.0f, kin ps over %d contexts %.0f.\n",
           cfg->tasks, r->ps_10k_reply_kib, r->ps_10k_lines,
           r->pstree_10k_lines, cfg->contexts, r->ps_tree50_lines);
}

/* --- main ----------------------------------------------------------------- */

static void
usage(FILE *f)
{
    fprintf(f, "usage: kin-monitor-bench [--quick] [--json] [--tasks N] "
               "[--contexts N] [--tree N] [--runs N] [--hold] "
               "[--exec-zygotes] [--tree-cpu]\n");
}

static int
parse_args(int argc, char **argv, config *cfg)
{
    *cfg = (config){.tasks = 10000,
                    .contexts = 50,
                    .tree = 1000,
                    .runs = 7,
                    .api_runs = 15,
                    .samples = 5000,
                    .warmup = 500,
                    .trace_iters = 1000000};
    int tasks = 0, contexts = 0, runs = 0, tree = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            cfg->json = true;
        } else if (!strcmp(argv[i], "--quick")) {
            cfg->quick = true;
        } else if (!strcmp(argv[i], "--hold")) {
            cfg->hold = true;
        } else if (!strcmp(argv[i], "--exec-zygotes")) {
            cfg->exec_zygotes = true;
        } else if (!strcmp(argv[i], "--tree-cpu")) {
            cfg->tree_cpu = true;
        } else if (!strcmp(argv[i], "--tasks") && i + 1 < argc) {
            if ((tasks = atoi(argv[++i])) < 2)
                return -1;
        } else if (!strcmp(argv[i], "--contexts") && i + 1 < argc) {
            contexts = atoi(argv[++i]);
            if (contexts < 2 || contexts > MAX_CONTEXTS)
                return -1;
        } else if (!strcmp(argv[i], "--tree") && i + 1 < argc) {
            tree = atoi(argv[++i]); /* 0: no forked tree */
            if (tree < 0 || tree > 20000)
                return -1;
        } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            if ((runs = atoi(argv[++i])) < 1)
                return -1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else {
            return -1;
        }
    }
    if (cfg->quick) {
        *cfg = (config){.json = cfg->json,
                        .quick = true,
                        .hold = cfg->hold,
                        .exec_zygotes = cfg->exec_zygotes,
                        .tree_cpu = cfg->tree_cpu,
                        .tasks = 1000,
                        .contexts = 6,
                        .tree = 48,
                        .runs = 3,
                        .api_runs = 5,
                        .samples = 500,
                        .warmup = 100,
                        .trace_iters = 100000};
    }
    if (tasks)
        cfg->tasks = tasks;
    if (contexts)
        cfg->contexts = contexts;
    if (runs)
        cfg->runs = runs;
    if (tree >= 0)
        cfg->tree = tree;
    return 0;
}

int
main(int argc, char **argv)
{
    /* Every context serves these; a kin child never returns from kin_init. */
    kin_export("mbench.block", block, NULL, KIN_POLICY_PARENT);
    kin_export("mbench.echo", echo, NULL, KIN_POLICY_PARENT);
    kin_export("mbench.nop", nop, NULL, KIN_POLICY_PARENT);
    kin_export("mbench.subtree", subtree, NULL, KIN_POLICY_PARENT);
    if (kin_started_as_child()) {
        kin_node *n;
        return kin_init(&n, NULL) ? 1 : 0;
    }
    config cfg;
    if (parse_args(argc, argv, &cfg)) {
        usage(stderr);
        return 2;
    }
    results res;
    for (size_t i = 0; i < N_FIGURES; i++)
        *figure(&res, i) = NAN;
    int rc = run(&cfg, &res);
    if (cfg.json)
        print_json(&cfg, &res);
    else
        print_table(&cfg, &res);
    return rc;
}
