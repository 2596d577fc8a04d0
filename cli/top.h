/* kin top's model (cli/top_data.c): samples of every context's metrics and
 * tasks, the rates between two samples, and the warnings; the screen
 * (cli/cli_top.c) only draws it. */
#ifndef KIN_CLI_TOP_H
#define KIN_CLI_TOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/monitor.h>

/* Samples kept per context for the windowed warnings (one a refresh). */
#define TOP_HISTORY 64

typedef struct kin__top_ctx {
    kin_ctx_info info;
    kin_err err; /* of asking for its metrics */
    kin_ctx_metrics m;
    kin_task_info *tasks;
    size_t n_tasks;
    /* Since the previous sample; negative when unknown. */
    double cpu_pct, calls_per_s, p99_us;
    uint64_t calls; /* every function's, summed */
} kin__top_ctx;

/* One sample of a context's counters. */
typedef struct kin__top_point {
    double t, cpu_s;
    uint64_t calls, restarts, dropped;
    uint64_t latency[KIN_FN_LAT_BUCKETS];
} kin__top_point;

/* What is remembered of a context between samples. */
typedef struct kin__top_past {
    uint32_t ctx;
    int len, head; /* ring of samples, oldest at head */
    kin__top_point s[TOP_HISTORY];
    bool seen; /* in the latest sample */
} kin__top_past;

typedef struct kin__top_opts {
    double wait_warn_s;    /* a task waiting longer is a warning */
    double window_s;       /* restarts and drops within it count */
    unsigned restart_warn; /* this many restarts within the window */
    int timeout_ms;        /* per query */
} kin__top_opts;

typedef struct kin__top_model {
    kin__top_opts opts;
    kin__top_ctx *ctxs;
    size_t n_ctxs;
    kin_err err; /* listing the contexts failed */
    kin__top_past *past;
    size_t n_past;
    char (*warnings)[192];
    size_t n_warnings;
    unsigned samples;
} kin__top_model;

/* Takes a sample of the tree n is attached to at time now_s (seconds on
 * any monotonic clock) and updates rates and warnings. Errors: -ENOMEM
 * (listing failures are kept in m->err and shown, not returned). */
int kin__top_sample(kin__top_model *m, kin_node *n, double now_s);

void kin__top_model_free(kin__top_model *m);

#endif
