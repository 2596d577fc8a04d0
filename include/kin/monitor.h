/* The task monitor: every context answers MONITOR requests on its broker
 * thread (so it answers while every worker is blocked). This header is the
 * C API for the same queries the kin command makes: the tasks of any
 * context in the tree, its terminated tasks, a task's stack, cancel, and
 * custom commands. Requests and replies are documented in docs/monitor.md. */
#ifndef KIN_MONITOR_H
#define KIN_MONITOR_H

#include <kin/defs.h>
#include <kin/err.h>
#include <kin/node.h>
#include <kin/pack.h>
#include <kin/service.h>
#include <kin/task.h>

/* One task as the monitor reports it. */
typedef struct kin_task_info {
    uint32_t ctx, id;
    char name[48];
    char fn[48];
    kin_task_state state;
    bool persistent;
    /* Who created it: for call tasks the calling ctx:task and the reply
     * handle the caller waits on (0 for none). */
    uint32_t caller_ctx, caller_task, caller_handle;
    char created_at[128]; /* file:line of kin_task_spawn, "" for calls */
    /* Live tasks: since it started (or was created). Terminated tasks: how
     * long it ran. */
    double age_ms;
    /* What it waits on now: "" when running, else "receiver", "select",
     * "call", ... and for how long. */
    char waiting[16];
    double wait_ms;
    /* The call it waits for: ctx and reply handle (await_ctx KIN_NO_CTX:
     * none) and the function's name. */
    uint32_t await_ctx, await_handle;
    char await_fn[48];
    /* When that call is a service call: the service ("" otherwise).
     * await_ctx is then the provider the call went to, when the caller's
     * own context resolved it, else KIN_NO_CTX (queued, or resolved by an
     * ancestor). */
    char await_service[48];
    /* A task waiting in a select over calls: every call it waits for, ctx
     * and reply handle. n_awaits counts them all; the first
     * KIN_TASK_MAX_AWAITS are listed. */
    uint32_t n_awaits;
    struct {
        uint32_t ctx, handle;
    } awaits[KIN_TASK_MAX_AWAITS];
    /* Terminated tasks only. */
    int result;
    uint32_t cancelled_by_ctx, cancelled_by_task;
    double ended_ago_ms;
} kin_task_info;

/* One stack frame. */
typedef struct kin_frame_info {
    uint64_t addr;
    char fn[128];
    char file[192];
    int line;
} kin_frame_info;

/* What a context says about itself. */
typedef struct kin_ctx_info {
    uint32_t id;
    uint32_t parent; /* KIN_NO_CTX at the master */
    char name[64];
    char host[64]; /* the host name of the machine it runs on */
    /* The exec channel it runs behind, as its spawn named it ("podman:web",
     * "unshare --net --"; inherited by the contexts it starts there), ""
     * when none. */
    char where[64];
    int pid;        /* on that host */
    uint32_t tasks; /* live tasks */
    int workers;    /* worker pool size */
    int64_t rss_kib;
    double uptime_ms;
    char endpoint[256];     /* where its children connect */
    char log_endpoint[256]; /* where its log records go */
    char log_frontend[256]; /* where subscribers connect ("" unless it runs
                               the tree's embedded forwarder) */
    uint32_t children[256]; /* its child contexts (operators excluded) */
    int n_children;
    /* It joined the tree from outside (kin_node_opts.join): no one above
     * supervises its process. */
    bool joined;
} kin_ctx_info;

/* Asks context ctx about itself. Errors: those of a call, KIN_EBADMSG.
 * Any thread. */
KIN_EXPORT kin_err kin_monitor_info(kin_node *n, uint32_t ctx, int timeout_ms,
                                    kin_ctx_info *out);

/* Asks context ctx for its live tasks (filter: substring of name or
 * function, NULL for all; persistent_only: only persistent tasks). On
 * success *tasks is a malloc'd array of *count entries (free with free()).
 * Errors: those of a call (KIN_ETIMEOUT, KIN_ENOROUTE, KIN_EPEERGONE ...).
 * Any thread. */
KIN_EXPORT kin_err kin_monitor_ps(kin_node *n, uint32_t ctx, const char *filter,
                                  bool persistent_only, int timeout_ms,
                                  kin_task_info **tasks, size_t *count);

/* Terminated tasks of ctx, oldest first, as kin_monitor_ps. */
KIN_EXPORT kin_err kin_monitor_ps_terminated(kin_node *n, uint32_t ctx,
                                             int timeout_ms,
                                             kin_task_info **tasks,
                                             size_t *count);

/* The current stack of task's thread in ctx (captured now). *frames is a
 * malloc'd array (free()). Errors: -ENOENT (no such live task), -ESRCH
 * (the task is not on a thread right now), -ETIMEDOUT (its thread did not
 * answer the stack signal), -ENOTSUP (stacks disabled in that context),
 * and call errors. Any thread. */
KIN_EXPORT kin_err kin_monitor_where(kin_node *n, uint32_t ctx, uint32_t task,
                                     int timeout_ms, kin_frame_info **frames,
                                     size_t *count);

/* Requests cancellation of a live task in ctx on behalf of the calling
 * thread's task. Errors: -ENOENT (no such live task), call errors. */
KIN_EXPORT kin_err kin_monitor_cancel(kin_node *n, uint32_t ctx, uint32_t task,
                                      int timeout_ms);

/* Operator ids: the id a kin command attaches with (one per attachment):
 * the top bit set, then the command's pid (its low 22 bits), then seq
 * (0..255). A task cancelled by an operator names this id as its
 * canceller. Any thread. */
KIN_EXPORT uint32_t kin_monitor_operator_id(int pid, unsigned seq);

/* Whether id is an operator id; if so *pid (optional) gets the pid of
 * the kin command it stood for (its low 22 bits, which is all of it under
 * Linux's default pid_max). Any thread. */
KIN_EXPORT bool kin_monitor_operator_pid(uint32_t id, int *pid);

/* Asks context ctx for its service table (the services of its subtree, as
 * kin_service_list gives them there, answered on ctx's broker thread). On
 * success *services is a malloc'd array of *count entries and *providers
 * a malloc'd array holding the providers of services[0] first
 * (services[0].providers of them), then those of services[1], and so on;
 * free both with free(). The counters are those of ctx as a resolver: a
 * call is counted by the one context that resolved it, so summing every
 * context's table gives the tree's (what `kin services` shows). Errors:
 * those of a call, KIN_EBADMSG, -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_monitor_services(kin_node *n, uint32_t ctx,
                                        int timeout_ms,
                                        kin_service_info **services,
                                        size_t *count,
                                        kin_service_provider **providers);

/* Every context of the tree, breadth first from the master (each one's
 * parent is the context it was found under; one that dies meanwhile is
 * left out). The contexts of each level are asked at once (up to 128
 * requests in flight), so a tree costs about its depth in round trips. On
 * success *out is a malloc'd array of *count entries (free()). Errors: those of
 * asking the master (kin_monitor_info), -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_monitor_contexts(kin_node *n, int timeout_ms,
                                        kin_ctx_info **out, size_t *count);

/* --- metrics -------------------------------------------------------------
 *
 * Every context counts the calls of each exported function it ran (where
 * the call ends, with relaxed atomics: no lock, no allocation) and reports
 * them with figures about itself. kin_monitor_prometheus turns the whole
 * tree's into the Prometheus text format (docs/monitor.md lists the
 * metric names; they are stable). */

/* Longest function name counted, terminator included (as kin_export). */
#define KIN_FN_NAME_MAX 64

/* Latency buckets of a function: bucket 0 holds calls under 1 us, bucket
 * b (1 <= b < KIN_FN_LAT_BUCKETS - 1) those from 2^(b-1) us up to 2^b us,
 * the last everything longer. A call's latency runs from its arrival in
 * the context (queueing included) to its reply. */
#define KIN_FN_LAT_BUCKETS 32

/* How a call failed, as its caller sees the error. */
typedef enum kin_fn_err_kind {
    KIN_FN_ERR_FAILED,    /* the function returned an error (kin_call_fail) */
    KIN_FN_ERR_CANCELLED, /* KIN_ECANCELLED */
    KIN_FN_ERR_REFUSED,   /* KIN_EREFUSED: the policy refused the caller */
    KIN_FN_ERR_TIMEOUT,   /* KIN_ETIMEOUT */
    KIN_FN_ERR_KINDS
} kin_fn_err_kind;

/* "failed", "cancelled", "refused", "timeout" (static); "?" otherwise.
 * Any thread. */
KIN_EXPORT const char *kin_fn_err_kind_name(int kind);

/* One exported function's figures in one context, since it started. */
typedef struct kin_fn_metrics {
    char name[KIN_FN_NAME_MAX];
    uint64_t calls;                    /* ended, errors included */
    uint64_t errors[KIN_FN_ERR_KINDS]; /* by kin_fn_err_kind */
    uint64_t latency[KIN_FN_LAT_BUCKETS];
    double latency_sum_s;
} kin_fn_metrics;

/* The q-quantile (0 < q <= 1) of a function's latency histogram in
 * microseconds: the upper edge of its bucket, so at most twice the true
 * value. 0 when empty. Any thread. */
KIN_EXPORT double kin_fn_latency_us(const uint64_t *latency, double q);

/* What a context reports about itself for metrics. */
typedef struct kin_ctx_metrics {
    uint32_t ctx;
    /* Live tasks by state (queued calls and spawned tasks are pending). */
    uint32_t tasks_pending, tasks_running, tasks_waiting;
    uint64_t tasks_ended; /* since it started */
    int workers;          /* the worker pool's size */
    int workers_busy;     /* workers held by running or waiting tasks */
    int64_t rss_kib;
    double cpu_s; /* user + system CPU time of its process */
    double uptime_s;
    uint64_t child_restarts;   /* children its supervisors restarted */
    uint64_t log_records;      /* log records it sent */
    uint64_t log_dropped;      /* log records its full queue dropped */
    uint64_t calls_unknown;    /* calls of no exported function, malformed */
    uint64_t calls_uncounted;  /* calls of functions past its table (64) */
    kin_fn_metrics *functions; /* malloc'd, n_functions entries */
    size_t n_functions;
} kin_ctx_metrics;

/* Asks context ctx for its metrics. On success *out holds them (release
 * with kin_monitor_metrics_release). Errors: those of a call,
 * KIN_EBADMSG, -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_monitor_metrics(kin_node *n, uint32_t ctx,
                                       int timeout_ms, kin_ctx_metrics *out);

/* Frees m's functions and zeroes it; NULL is fine. */
KIN_EXPORT void kin_monitor_metrics_release(kin_ctx_metrics *m);

/* Appends the metrics of every context of the tree (ctx KIN_NO_CTX) or of
 * context ctx, and their service tables, to out in the Prometheus text
 * exposition format (version 0.0.4), each series labelled with ctx, name
 * and host (and function, service, kind, state as fits). A context that
 * does not answer shows as kin_context_up 0. Errors: those of listing the
 * contexts, -ENOENT (no context ctx), -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_monitor_prometheus(kin_node *n, uint32_t ctx,
                                          int timeout_ms, kin_buf *out);

/* A custom monitor command: appends its text output to out; args is the
 * rest of the command line ("" when none). Runs on the broker thread: it
 * must be quick and must not block. Return KIN_OK or an error (its text is
 * shown). */
typedef kin_err (*kin_monitor_fn)(const char *args, kin_buf *out, void *arg);

/* Registers a custom command in n's monitor, shown by help (help is cut to
 * 127 bytes). Commands cannot be removed; they go with the node. Errors:
 * KIN_EEXISTS, -EINVAL (NULL fn; a name that is empty, built in, of 32
 * bytes or more, or contains a space), -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_monitor_command(kin_node *n, const char *name,
                                       const char *help, kin_monitor_fn fn,
                                       void *arg);

/* Sends one monitor request (msgpack [cmd, {args}]) to ctx and returns the
 * reply map's bytes in *reply (the caller frees it). The kin command is
 * built on this; see docs/monitor.md. Errors: those of a call (then *reply
 * is NULL), and KIN_EREMOTE for an error reply ({"error": text, "code": n}),
 * which *reply still holds for the caller to read and free. Any thread. */
KIN_EXPORT kin_err kin_monitor_request(kin_node *n, uint32_t ctx,
                                       const kin_buf *request, int timeout_ms,
                                       kin_msg **reply);

/* --- the await graph ---------------------------------------------------
 *
 * Who waits for whom across the tree: the graph `kin pstree` prints. Its
 * nodes are the live tasks of every context and, for a context whose
 * every worker is taken while calls queue ("pool exhausted"), the pool
 * itself: a queued call waits for the pool, and the pool waits for the
 * tasks holding its workers (any one of them ending frees a worker). A
 * task waits for the call task it called (in whatever context), and a
 * task waiting in a select for each call of the select.
 *
 * Every wait here is a wait for any one of the node's successors, so a
 * node is deadlocked when it has successors and all of them are
 * deadlocked: the graph marks them, and lists one cycle for every group of
 * deadlocked nodes that wait on each other (a deadlock at any pool size).
 * Nothing is cut: chains of any depth, any number of tasks. */

typedef enum kin_graph_node_kind {
    KIN_GRAPH_TASK, /* a live task (task) */
    KIN_GRAPH_POOL, /* an exhausted worker pool of context ctx */
} kin_graph_node_kind;

typedef enum kin_graph_edge_kind {
    KIN_GRAPH_CALL,   /* a task waits for the call task it called */
    KIN_GRAPH_QUEUED, /* a queued call waits for its context's pool */
    KIN_GRAPH_WORKER, /* a pool waits for a task holding one of its workers */
} kin_graph_edge_kind;

typedef struct kin_graph_node {
    kin_graph_node_kind kind;
    uint32_t ctx;
    size_t ctx_index;   /* into kin_graph.ctxs */
    kin_task_info task; /* KIN_GRAPH_TASK */
    /* KIN_GRAPH_POOL: pool size, workers held by live tasks, calls queued. */
    int workers, busy, queued;
    bool deadlocked; /* waits, and everything it waits for is deadlocked */
    /* Its out-edges: kin_graph.edges[first_edge .. first_edge + n_edges). */
    size_t first_edge, n_edges;
    size_t n_in; /* how many edges lead to it */
} kin_graph_node;

typedef struct kin_graph_edge {
    size_t from, to; /* node indices */
    kin_graph_edge_kind kind;
} kin_graph_edge;

typedef struct kin_graph {
    kin_ctx_info *ctxs;  /* the contexts asked, breadth-first from the master */
    kin_err *ctx_errors; /* per context: KIN_OK, or why its tasks are missing */
    size_t n_ctxs;
    kin_graph_node *nodes; /* each context's tasks, then the pools */
    size_t n_nodes;
    kin_graph_edge *edges; /* grouped by from, in node order */
    size_t n_edges;
    /* Cycle i is cycle_nodes[cycle_start[i] .. cycle_start[i + 1]): each
     * node waits for the next, the last for the first. */
    size_t n_cycles;
    size_t *cycle_start; /* n_cycles + 1 entries */
    size_t *cycle_nodes;
} kin_graph;

/* Builds the await graph of the whole tree (ctx KIN_NO_CTX) or of one
 * context's tasks, asking every context for its tasks (kin_monitor_ps; all
 * contexts at once, up to 128 requests in flight). A
 * context that does not answer is listed with its error in ctx_errors and
 * contributes no nodes. On success *out is the graph (free with
 * kin_monitor_graph_destroy). Errors: those of listing the contexts,
 * -ENOENT (no context ctx in the tree), -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_monitor_graph(kin_node *n, uint32_t ctx, int timeout_ms,
                                     kin_graph **out);

/* Frees *g and sets it to NULL; NULL and *g NULL are fine. */
KIN_EXPORT void kin_monitor_graph_destroy(kin_graph **g);

/* Writes a node's label into out: "CTX:TASK NAME" for a task, "pool of
 * CTX (B/W workers busy, Q queued)" for a pool. */
KIN_EXPORT void kin_monitor_graph_label(const kin_graph *g, size_t node,
                                        char *out, size_t size);

#endif
