/* Metrics with real processes: a child's exported functions called (done,
 * failed, cancelled, unknown) and counted by kin_monitor_metrics; the
 * context's own figures while a call holds its only worker; and `kin
 * metrics` parsed by a Prometheus text parser (Python's prometheus_client).
 * The test binary is also the child program (kin_init serves). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <kin/monitor.h>

#include "integration/harness.h"
#include "logs/logs_test.h"

/* Debian's python, which python3-prometheus-client installs into. */
#define PY "/usr/bin/python3"

static kin_node *master;

/* --- what the child serves --- */

static kin_err
ok(kin_call *c, void *arg)
{
    (void)arg;
    return kin_call_return(c, "i", 1);
}

static kin_err
failing(kin_call *c, void *arg)
{
    (void)arg;
    return kin_call_fail(c, 42, "asked to fail");
}

/* Sleeps 20 ms. */
static kin_err
slow(kin_call *c, void *arg)
{
    (void)arg;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    return kin_call_return(c, "i", 1);
}

/* Blocks at a kin blocking point until cancelled (or 30 s). */
static kin_err
block(kin_call *c, void *arg)
{
    (void)c;
    (void)arg;
    kin_latch *l;
    kin_err e = kin_latch_new(&l);
    if (e)
        return e;
    kin_msg *m = NULL;
    e = kin_latch_get(l, 30000, &m);
    kin_msg_destroy(&m);
    kin_latch_destroy(&l);
    return e;
}

/* Logs [count] records with the publisher held: its queue overflows. */
static kin_err
flood(kin_call *c, void *arg)
{
    (void)arg;
    int count = 0;
    kin_err e = kin_call_args(c, "i", &count);
    if (e)
        return e;
    kin__logs_hold(kin_call_node(c), true);
    for (int i = 0; i < count; i++)
        KIN_LOGI("flood", KIN_F("i", i));
    kin__logs_hold(kin_call_node(c), false);
    return kin_call_return(c, "i", count);
}

/* --- helpers --- */

static void
call_n(uint32_t ctx, const char *fn, int times, kin_err want)
{
    for (int i = 0; i < times; i++) {
        kin_msg *r = NULL;
        assert_int_equal(kin_call_sync(master, ctx, fn, 5000, &r, NULL), want);
        kin_msg_destroy(&r);
    }
}

static const kin_fn_metrics *
fn_of(const kin_ctx_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n_functions; i++)
        if (!strcmp(m->functions[i].name, name))
            return &m->functions[i];
    fail_msg("no metrics for %s", name);
    return NULL;
}

/* Waits until ctx has counted `want` calls (unknown ones included) and
 * leaves its metrics in *m. */
static void
counted(uint32_t ctx, uint64_t want, kin_ctx_metrics *m)
{
    double end = harness_now_ms() + 5000;
    for (;;) {
        assert_int_equal(kin_monitor_metrics(master, ctx, 3000, m), KIN_OK);
        uint64_t seen = m->calls_unknown;
        for (size_t i = 0; i < m->n_functions; i++)
            seen += m->functions[i].calls;
        if (seen >= want)
            return;
        kin_monitor_metrics_release(m);
        if (harness_now_ms() > end)
            fail_msg("ctx %u counted %llu calls, want %llu", ctx,
                     (unsigned long long)seen, (unsigned long long)want);
        struct timespec ts = {0, 2000000L};
        nanosleep(&ts, NULL);
    }
}

/* Starts m.block in ctx and waits until the child shows it waiting. */
static kin_receiver *
start_block(uint32_t ctx)
{
    kin_receiver *r;
    assert_int_equal(kin_call_async(master, ctx, "m.block", &r, NULL), KIN_OK);
    double end = harness_now_ms() + 5000;
    for (;;) {
        kin_ctx_metrics m;
        assert_int_equal(kin_monitor_metrics(master, ctx, 2000, &m), KIN_OK);
        bool waiting = m.tasks_waiting == 1;
        kin_monitor_metrics_release(&m);
        if (waiting)
            return r;
        if (harness_now_ms() > end)
            fail_msg("m.block never waited");
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
}

static void
cancel_block(kin_receiver **r)
{
    assert_int_equal(kin_call_cancel(*r), KIN_OK);
    kin_msg *m = NULL;
    assert_int_equal(kin_call_wait(*r, 5000, &m), KIN_ECANCELLED);
    kin_msg_destroy(&m);
    kin_receiver_destroy(r);
}

/* Calls of every kind in a child: each counted under its function and
 * kind, the unknown one apart, latency in the right bucket. */
static void
calls_are_counted_by_function(void **state)
{
    (void)state;
    kin_child *kid;
    assert_int_equal(
        kin_spawn(master, &(kin_spawn_opts){.name = "counted"}, &kid), KIN_OK);
    uint32_t ctx = kin_child_id(kid);
    call_n(ctx, "m.ok", 5, KIN_OK);
    call_n(ctx, "m.fail", 3, KIN_EREMOTE);
    call_n(ctx, "m.slow", 2, KIN_OK);
    call_n(ctx, "m.nope", 1, KIN_ENOFUNC);
    kin_receiver *r = start_block(ctx);
    cancel_block(&r);

    /* A call is counted just after its reply leaves: wait for the last. */
    kin_ctx_metrics m;
    counted(ctx, 12, &m);
    assert_int_equal(m.ctx, ctx);
    const kin_fn_metrics *f = fn_of(&m, "m.ok");
    assert_int_equal(f->calls, 5);
    for (int k = 0; k < KIN_FN_ERR_KINDS; k++)
        assert_int_equal(f->errors[k], 0);
    f = fn_of(&m, "m.fail");
    assert_int_equal(f->calls, 3);
    assert_int_equal(f->errors[KIN_FN_ERR_FAILED], 3);
    f = fn_of(&m, "m.block");
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->errors[KIN_FN_ERR_CANCELLED], 1);
    f = fn_of(&m, "m.slow");
    assert_int_equal(f->calls, 2);
    double p50 = kin_fn_latency_us(f->latency, 0.5);
    assert_true(p50 >= 20000 && p50 <= 65536);
    assert_true(f->latency_sum_s >= 0.040);
    assert_int_equal(m.calls_unknown, 1);
    assert_int_equal(m.n_functions, 4);
    assert_true(m.tasks_ended >= 12);
    kin_monitor_metrics_release(&m);
    kin_child_stop(kid, NULL);
    kin_child_destroy(&kid);
}

/* A call holding the only worker: busy 1 of 1, one task waiting, and the
 * process's own figures. */
static void
context_figures_follow_its_tasks(void **state)
{
    (void)state;
    kin_child *kid;
    assert_int_equal(kin_spawn(master,
                               &(kin_spawn_opts){.name = "busy", .workers = 1},
                               &kid),
                     KIN_OK);
    uint32_t ctx = kin_child_id(kid);
    kin_ctx_metrics m;
    assert_int_equal(kin_monitor_metrics(master, ctx, 3000, &m), KIN_OK);
    assert_int_equal(m.workers, 1);
    assert_int_equal(m.workers_busy, 0);
    kin_monitor_metrics_release(&m);

    kin_receiver *r = start_block(ctx);
    /* A second call queues behind it. */
    kin_receiver *r2;
    assert_int_equal(kin_call_async(master, ctx, "m.ok", &r2, NULL), KIN_OK);
    double end = harness_now_ms() + 5000;
    for (;;) {
        assert_int_equal(kin_monitor_metrics(master, ctx, 3000, &m), KIN_OK);
        if (m.tasks_pending == 1)
            break;
        kin_monitor_metrics_release(&m);
        if (harness_now_ms() > end)
            fail_msg("the second call never queued");
    }
    assert_int_equal(m.workers_busy, 1);
    assert_int_equal(m.tasks_waiting, 1);
    assert_true(m.rss_kib > 1000);
    assert_true(m.cpu_s > 0);
    assert_true(m.uptime_s > 0);
    kin_monitor_metrics_release(&m);
    cancel_block(&r);
    kin_msg *reply = NULL;
    assert_int_equal(kin_call_wait(r2, 5000, &reply), KIN_OK);
    kin_msg_destroy(&reply);
    kin_receiver_destroy(&r2);
    kin_child_stop(kid, NULL);
    kin_child_destroy(&kid);
}

/* Waits until the supervisor's child is running as another process than
 * pid; returns its pid. */
static pid_t
running_other_than(kin_supervisor *sup, pid_t pid)
{
    double end = harness_now_ms() + 10000;
    for (;;) {
        kin_child_info info;
        assert_int_equal(kin_supervisor_child(sup, "flaky", &info), KIN_OK);
        if (info.state == KIN_CHILD_RUNNING && info.pid != pid)
            return info.pid;
        if (harness_now_ms() > end)
            fail_msg("the child was not restarted");
        uint64_t seen = kin_supervisor_changes(sup);
        kin_supervisor_wait(sup, seen, 100, NULL);
    }
}

/* A supervised child killed twice: the master counts two restarts. */
static void
restarts_are_counted(void **state)
{
    (void)state;
    kin_ctx_metrics m;
    assert_int_equal(kin_monitor_metrics(master, kin_node_id(master), 3000, &m),
                     KIN_OK);
    uint64_t before = m.child_restarts;
    kin_monitor_metrics_release(&m);
    kin_supervisor *sup;
    assert_int_equal(
        kin_supervisor_new(&sup, master,
                           &(kin_supervisor_opts){.backoff_ms = -1}),
        KIN_OK);
    kin_child_spec spec = {.name = "flaky", .restart = KIN_RESTART_PERMANENT};
    assert_int_equal(kin_supervisor_add(sup, &spec), KIN_OK);
    assert_int_equal(kin_supervisor_start(sup), KIN_OK);
    pid_t pid = running_other_than(sup, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(kill(pid, SIGKILL), 0);
        pid = running_other_than(sup, pid);
    }
    assert_int_equal(kin_monitor_metrics(master, kin_node_id(master), 3000, &m),
                     KIN_OK);
    assert_int_equal(m.child_restarts - before, 2);
    kin_monitor_metrics_release(&m);
    kin_supervisor_destroy(&sup);
}

/* A child whose log queue overflows: its records sent and dropped. */
static void
log_drops_are_counted(void **state)
{
    (void)state;
    kin_child *kid;
    assert_int_equal(
        kin_spawn(master, &(kin_spawn_opts){.name = "flooder"}, &kid), KIN_OK);
    uint32_t ctx = kin_child_id(kid);
    kin_ctx_metrics m;
    assert_int_equal(kin_monitor_metrics(master, ctx, 3000, &m), KIN_OK);
    assert_int_equal(m.log_dropped, 0);
    kin_monitor_metrics_release(&m);
    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(master, ctx, "m.flood", 30000, &r, "i", 20000), KIN_OK);
    kin_msg_destroy(&r);
    /* The queue drains after the hold: wait for what it sent. */
    double end = harness_now_ms() + 10000;
    for (;;) {
        assert_int_equal(kin_monitor_metrics(master, ctx, 3000, &m), KIN_OK);
        if (m.log_dropped > 0 && m.log_records + m.log_dropped >= 20000)
            break;
        kin_monitor_metrics_release(&m);
        if (harness_now_ms() > end)
            fail_msg("no drops counted");
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(m.log_records > 0);
    kin_monitor_metrics_release(&m);
    kin_child_stop(kid, NULL);
    kin_child_destroy(&kid);
}

/* `kin metrics PID`: text a Prometheus parser accepts, a series for every
 * context, the functions' counts. */
static void
kin_metrics_is_prometheus_text(void **state)
{
    (void)state;
    int st;
    char *out = harness_run(&st, PY " -c 'import prometheus_client' "
                                    "2>&1");
    if (st) {
        free(out);
        harness_skip("python3-prometheus-client is not installed "
                     "(scripts/setup.sh installs it)");
    }
    free(out);
    kin_child *a, *b;
    assert_int_equal(kin_spawn(master, &(kin_spawn_opts){.name = "alpha"}, &a),
                     KIN_OK);
    assert_int_equal(kin_spawn(master, &(kin_spawn_opts){.name = "beta"}, &b),
                     KIN_OK);
    call_n(kin_child_id(a), "m.ok", 7, KIN_OK);
    call_n(kin_child_id(b), "m.fail", 2, KIN_EREMOTE);
    kin_ctx_metrics m;
    counted(kin_child_id(a), 7, &m);
    kin_monitor_metrics_release(&m);
    counted(kin_child_id(b), 2, &m);
    kin_monitor_metrics_release(&m);
    out = harness_run(&st, "%s metrics %d | " PY " %s", KIN_CLI, (int)getpid(),
                      PROM_CHECK);
    print_message("%s", out);
    assert_int_equal(st, 0);
    char want[200];
    const char *names[] = {"master", "alpha", "beta"};
    uint32_t ids[] = {kin_node_id(master), kin_child_id(a), kin_child_id(b)};
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "kin_context_up ctx=%u name=%s 1\n", ids[i],
                 names[i]);
        assert_non_null(strstr(out, want));
        snprintf(want, sizeof want, "kin_resident_memory_bytes ctx=%u name=%s ",
                 ids[i], names[i]);
        assert_non_null(strstr(out, want));
    }
    snprintf(want, sizeof want,
             "kin_function_calls_total ctx=%u name=alpha function=m.ok 7\n",
             ids[1]);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want,
             "kin_function_errors_total ctx=%u name=beta function=m.fail "
             "kind=failed 2\n",
             ids[2]);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want,
             "kin_function_latency_seconds_count ctx=%u name=alpha "
             "function=m.ok 7\n",
             ids[1]);
    assert_non_null(strstr(out, want));
    free(out);

    /* One context only; a bad one is an error. */
    out = harness_run(&st, "%s metrics %d -c %u | " PY " %s", KIN_CLI,
                      (int)getpid(), ids[1], PROM_CHECK);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "name=alpha"));
    assert_null(strstr(out, "name=beta"));
    free(out);
    out = harness_run(&st, "%s metrics %d -c 999 2>&1", KIN_CLI, (int)getpid());
    assert_int_equal(st, 2);
    assert_non_null(strstr(out, "no context 999"));
    free(out);
    kin_child_stop(a, NULL);
    kin_child_destroy(&a);
    kin_child_stop(b, NULL);
    kin_child_destroy(&b);
}

int
main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    kin_export("m.ok", ok, NULL, KIN_POLICY_PARENT);
    kin_export("m.fail", failing, NULL, KIN_POLICY_PARENT);
    kin_export("m.slow", slow, NULL, KIN_POLICY_PARENT);
    kin_export("m.block", block, NULL, KIN_POLICY_PARENT);
    kin_export("m.flood", flood, NULL, KIN_POLICY_PARENT);
    harness_log_setup();
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calls_are_counted_by_function),
        cmocka_unit_test(context_figures_follow_its_tasks),
        cmocka_unit_test(restarts_are_counted),
        cmocka_unit_test(log_drops_are_counted),
        cmocka_unit_test(kin_metrics_is_prometheus_text),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
