/* kin metrics: the tree's metrics in the Prometheus text exposition format
 * (kin_monitor_prometheus), for a scraper's textfile collector or a look
 * by hand; --json gives the same figures per context. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <kin/monitor.h>

#include "cli/cli.h"

#define TIMEOUT_MS 3000

static int
usage(FILE *f, int rc)
{
    fprintf(f, "usage: kin metrics PID [-c CTX] [--json]\n  every context's "
               "metrics in the Prometheus text format (docs/monitor.md,\n  "
               "\"Metrics\"): tasks, workers, queue, RSS, CPU, restarts, log "
               "drops, and per\n  exported function calls, errors by kind and "
               "a latency histogram\n");
    return rc;
}

static json_t *
fn_json(const kin_fn_metrics *f)
{
    json_t *errors = json_object();
    for (int k = 0; k < KIN_FN_ERR_KINDS; k++)
        json_object_set_new(errors, kin_fn_err_kind_name(k),
                            json_integer((json_int_t)f->errors[k]));
    return json_pack("{s:s,s:I,s:o,s:f,s:f,s:f}", "function", f->name, "calls",
                     (json_int_t)f->calls, "errors", errors, "latency_sum_s",
                     f->latency_sum_s, "p50_us",
                     kin_fn_latency_us(f->latency, 0.5), "p99_us",
                     kin_fn_latency_us(f->latency, 0.99));
}

static json_t *
ctx_json(const kin_ctx_info *c, kin_err e, const kin_ctx_metrics *m)
{
    json_t *o = json_pack("{s:i,s:s,s:s,s:i}", "ctx", (int)c->id, "name",
                          c->name, "host", c->host, "pid", c->pid);
    json_object_set_new(o, "parent",
                        c->parent == KIN_NO_CTX ? json_null()
                                                : json_integer(c->parent));
    if (e) {
        json_object_set_new(o, "error", json_string(kin_strerror(e)));
        return o;
    }
    json_t *fns = json_array();
    for (size_t i = 0; i < m->n_functions; i++)
        json_array_append_new(fns, fn_json(&m->functions[i]));
    json_object_update_new(
        o,
        json_pack("{s:{s:i,s:i,s:i},s:I,s:i,s:i,s:I,s:f,s:f,s:I,s:I,s:I,s:I,"
                  "s:o}",
                  "tasks", "pending", (int)m->tasks_pending, "running",
                  (int)m->tasks_running, "waiting", (int)m->tasks_waiting,
                  "tasks_ended", (json_int_t)m->tasks_ended, "workers",
                  m->workers, "workers_busy", m->workers_busy, "rss_kib",
                  (json_int_t)m->rss_kib, "cpu_s", m->cpu_s, "uptime_s",
                  m->uptime_s, "child_restarts", (json_int_t)m->child_restarts,
                  "log_records", (json_int_t)m->log_records, "log_dropped",
                  (json_int_t)m->log_dropped, "calls_unknown",
                  (json_int_t)m->calls_unknown, "functions", fns));
    return o;
}

static int
print_json(kin_node *n, uint32_t ctx)
{
    kin_ctx_info *all;
    size_t count;
    kin_err e = kin__cli_contexts(n, &all, &count);
    if (e) {
        fprintf(stderr, "kin metrics: cannot list contexts: %s\n",
                kin_strerror(e));
        return 2;
    }
    json_t *arr = json_array();
    size_t shown = 0;
    for (size_t i = 0; i < count; i++) {
        if (ctx != KIN_NO_CTX && all[i].id != ctx)
            continue;
        kin_ctx_metrics m;
        kin_err qe = kin_monitor_metrics(n, all[i].id, TIMEOUT_MS, &m);
        json_array_append_new(arr, ctx_json(&all[i], qe, &m));
        kin_monitor_metrics_release(&m);
        shown++;
    }
    int rc = 0;
    if (!shown) {
        fprintf(stderr, "kin metrics: no context %u in this tree\n", ctx);
        rc = 2;
    } else {
        json_t *top =
            json_pack("{s:i,s:i,s:o}", "version", KIN_CLI_JSON_VERSION,
                      "master_pid", all[0].pid, "contexts", arr);
        arr = NULL;
        char *s = json_dumps(top, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (s)
            puts(s);
        free(s);
        json_decref(top);
    }
    json_decref(arr);
    free(all);
    return rc;
}

int
kin__cli_metrics(int argc, char **argv)
{
    int pid = 0;
    uint32_t ctx = KIN_NO_CTX;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        char *end;
        long v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return usage(stdout, 0);
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            v = strtol(argv[++i], &end, 10);
            if (v < 0 || *end || end == argv[i]) {
                fprintf(stderr, "kin metrics: bad context '%s'\n", argv[i]);
                return usage(stderr, 2);
            }
            ctx = (uint32_t)v;
        } else if (!pid && (v = strtol(argv[i], &end, 10)) > 0 && !*end) {
            pid = (int)v;
        } else {
            fprintf(stderr, "kin metrics: unexpected '%s'\n", argv[i]);
            return usage(stderr, 2);
        }
    }
    if (!pid)
        return usage(stderr, 2);
    kin_node *n;
    if (kin__cli_attach(pid, &n))
        return 2;
    int rc = 0;
    if (json) {
        rc = print_json(n, ctx);
    } else {
        kin_buf b = {0};
        kin_err e = kin_monitor_prometheus(n, ctx, TIMEOUT_MS, &b);
        if (e == -ENOENT) {
            fprintf(stderr, "kin metrics: no context %u in this tree\n", ctx);
            rc = 2;
        } else if (e) {
            fprintf(stderr, "kin metrics: %s\n", kin_strerror(e));
            rc = 2;
        } else {
            fwrite(b.data, 1, b.len, stdout);
        }
        kin_buf_release(&b);
    }
    kin_node_destroy(&n);
    return rc;
}
