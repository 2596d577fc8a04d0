/* kin-service: a calculator service in supervised worker processes.
 *
 * The master starts two workers, "calc-1" and "calc-2", under a supervisor
 * (one_for_one: a worker that dies is restarted on its own, the other
 * keeps serving). Every worker serves the exported functions calc.add,
 * calc.div and calc.sleep on a pool of 4 threads. The master then:
 *   1. calls calc.add in both workers;
 *   2. makes 4 slow calls at once to one worker: its pool runs them side
 *      by side;
 *   3. divides by zero and reads the worker's error with kin_call_error
 *      and where it failed with kin_call_error_stack, and calls a function
 *      nobody exported;
 *   4. kills calc-2 in the middle of a call: the call fails at once with
 *      KIN_EPEERGONE, the supervisor starts a new calc-2, and the retry
 *      succeeds.
 * The same executable is the master and the workers: kin_init returns in
 * the master and serves forever in a worker. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kin/kin.h>
#include <kin/monitor.h>

#define POOL 4        /* threads serving calls in each worker */
#define CALL_MS 5000  /* calls take microseconds; generous for slow CI */
#define SLOW_MS 200   /* how long one calc.sleep takes in step 2 */
#define WAIT_MS 10000 /* deadline for anything we wait for */

/* --- the workers' side ---------------------------------------------------- */

/* calc.add(a, b) -> a + b */
static kin_err
add_fn(kin_call *c, void *arg)
{
    int64_t a, b;
    kin_err e = kin_call_args(c, "II", &a, &b);
    return e ? e : kin_call_return(c, "I", a + b);
}

/* calc.div(a, b) -> a / b. Bad input is an error the caller can read
 * (code and message), never a crash of the worker. */
static kin_err
div_fn(kin_call *c, void *arg)
{
    int64_t a, b;
    kin_err e = kin_call_args(c, "II", &a, &b);
    if (e)
        return e;
    if (b == 0)
        return kin_call_fail(c, -EDOM, "cannot divide %lld by zero",
                             (long long)a);
    if (a == INT64_MIN && b == -1)
        return kin_call_fail(c, -ERANGE, "%lld / -1 overflows", (long long)a);
    return kin_call_return(c, "I", a / b);
}

/* calc.sleep(ms) -> pid of the worker: stands for slow work. It waits on a
 * latch nobody fills instead of calling sleep(), because a kin wait is a
 * blocking point: a cancelled call (or a stopping worker) wakes it at
 * once with KIN_ECANCELLED. */
static kin_err
sleep_fn(kin_call *c, void *arg)
{
    int ms;
    kin_err e = kin_call_args(c, "i", &ms);
    if (e)
        return e;
    kin_latch *never;
    if ((e = kin_latch_new(&never)))
        return e;
    kin_msg *m = NULL;
    e = kin_latch_get(never, ms, &m);
    kin_latch_destroy(&never);
    if (e != KIN_ETIMEOUT)
        return e; /* cancelled */
    return kin_call_return(c, "i", (int)getpid());
}

/* --- the master's side ---------------------------------------------------- */

static int failed; /* set by fail(); the exit code */

static void
fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kin-service: FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failed = 1;
}

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Runs on the supervisor's thread: only prints what happened. */
static void
on_event(kin_supervisor *s, const kin_sup_event *ev, void *arg)
{
    if (ev->kind == KIN_SUP_EV_STARTED)
        printf("  supervisor: %s %s as context %u (pid %d)\n",
               ev->restarts ? "restarted" : "started", ev->child, ev->id,
               (int)ev->pid);
    else if (ev->kind == KIN_SUP_EV_EXITED && WIFSIGNALED(ev->status))
        printf("  supervisor: %s (context %u) was killed by signal %d\n",
               ev->child, ev->id, WTERMSIG(ev->status));
    else if (ev->kind == KIN_SUP_EV_EXITED)
        printf("  supervisor: %s (context %u) exited with status %d\n",
               ev->child, ev->id, WEXITSTATUS(ev->status));
    fflush(stdout);
}

/* The context id of a supervised worker right now: it changes when the
 * supervisor restarts the worker, so look it up before calling. */
static uint32_t
worker_ctx(kin_supervisor *sup, const char *name)
{
    kin_child_info info;
    if (kin_supervisor_child(sup, name, &info) ||
        info.state != KIN_CHILD_RUNNING)
        return KIN_NO_CTX;
    return info.id;
}

/* Prints what a failed call said. Errors from the callee (KIN_EREMOTE,
 * KIN_ENOFUNC, KIN_EREFUSED) come with a reply that says more. */
static void
print_error(const char *what, kin_err e, const kin_msg *reply)
{
    printf("  %s failed: %s (%s)\n", what, kin_err_name(e), kin_strerror(e));
    kin_remote_error info;
    if (reply && kin_call_error(reply, &info) == KIN_OK)
        printf("    the worker said: code %s, \"%s\", in %s, context %u\n",
               kin_err_name(info.code), info.message,
               info.function[0] ? info.function : "-", info.ctx);
    /* Where in the worker it failed, innermost frame first. */
    char stack[1024];
    if (reply && kin_call_error_stack(reply, stack, sizeof stack) == KIN_OK &&
        stack[0]) {
        printf("    where:\n");
        for (char *line = strtok(stack, "\n"); line; line = strtok(NULL, "\n"))
            printf("      %s\n", line);
    }
}

/* Step 1: calc.add in each worker. */
static void
add_in_each(kin_node *node, kin_supervisor *sup)
{
    const char *names[] = {"calc-1", "calc-2"};
    for (int i = 0; i < 2; i++) {
        kin_msg *reply = NULL;
        int64_t sum = 0;
        kin_err e = kin_call_sync(node, worker_ctx(sup, names[i]), "calc.add",
                                  CALL_MS, &reply, "II", 20 + i, 22);
        if (!e)
            e = kin_msg_unpack(reply, "I", &sum);
        kin_msg_destroy(&reply);
        if (e || sum != 42 + i)
            fail("calc.add in %s: %s", names[i], kin_strerror(e));
        else
            printf("  %s: calc.add(%d, 22) = %lld\n", names[i], 20 + i,
                   (long long)sum);
    }
}

/* Step 2: POOL slow calls at once to one worker. kin_call_async returns at
 * once with a receiver per call; the replies are gathered afterwards. */
static void
pool_at_work(kin_node *node, kin_supervisor *sup)
{
    kin_receiver *r[POOL] = {0};
    double t0 = now_ms();
    for (int i = 0; i < POOL; i++) {
        kin_err e = kin_call_async(node, worker_ctx(sup, "calc-1"),
                                   "calc.sleep", &r[i], "i", SLOW_MS);
        if (e)
            fail("calc.sleep: %s", kin_strerror(e));
    }
    int ok = 0;
    for (int i = 0; i < POOL; i++) {
        kin_msg *reply = NULL;
        kin_err e = r[i] ? kin_call_wait(r[i], CALL_MS, &reply) : KIN_OK;
        if (r[i] && e)
            print_error("calc.sleep", e, reply);
        ok += r[i] && !e;
        kin_msg_destroy(&reply);
        kin_receiver_destroy(&r[i]);
    }
    double ms = now_ms() - t0;
    printf("  %d calls of %d ms each took %.0f ms in all: the pool of %d "
           "ran them side by side\n",
           ok, SLOW_MS, ms, POOL);
    /* One after the other they would take POOL * SLOW_MS at least. */
    if (ok != POOL || ms >= POOL * SLOW_MS)
        fail("%d/%d slow calls done in %.0f ms", ok, POOL, ms);
}

/* Step 3: errors a caller can tell apart. */
static void
remote_errors(kin_node *node, kin_supervisor *sup)
{
    kin_msg *reply = NULL;
    kin_err e = kin_call_sync(node, worker_ctx(sup, "calc-1"), "calc.div",
                              CALL_MS, &reply, "II", 1, 0);
    print_error("calc.div(1, 0)", e, reply);
    kin_remote_error info = {0};
    if (e != KIN_EREMOTE || kin_call_error(reply, &info) || info.code != -EDOM)
        fail("calc.div(1, 0) should fail with EDOM, got %s", kin_err_name(e));
    char stack[1024] = "";
    if (reply)
        kin_call_error_stack(reply, stack, sizeof stack);
    if (!strstr(stack, "div_fn"))
        fail("calc.div's error should say it failed in div_fn: \"%s\"", stack);
    kin_msg_destroy(&reply);

    e = kin_call_sync(node, worker_ctx(sup, "calc-1"), "calc.pow", CALL_MS,
                      &reply, "II", 2, 8);
    print_error("calc.pow(2, 8)", e, reply);
    if (e != KIN_ENOFUNC)
        fail("calc.pow should not exist, got %s", kin_err_name(e));
    kin_msg_destroy(&reply);
}

/* Waits until ctx runs a task for function fn, so that what we do next
 * happens in the middle of that call. The monitor answers from the
 * worker's broker thread even while every pool thread is busy. */
static kin_err
wait_serving(kin_node *node, uint32_t ctx, const char *fn)
{
    double deadline = now_ms() + WAIT_MS;
    while (now_ms() < deadline) {
        kin_task_info *tasks;
        size_t n;
        kin_err e = kin_monitor_ps(node, ctx, fn, false, 1000, &tasks, &n);
        if (e)
            return e;
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= tasks[i].state == KIN_TASK_WAITING;
        free(tasks);
        if (found)
            return KIN_OK;
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL); /* poll */
    }
    return KIN_ETIMEOUT;
}

/* Waits until the supervisor has restarted `name` (its restart count went
 * past `restarts`) and runs it again. kin_supervisor_wait sleeps until the
 * supervisor's next event: no polling. */
static kin_err
wait_restarted(kin_supervisor *sup, const char *name, unsigned restarts,
               kin_child_info *info)
{
    double deadline = now_ms() + WAIT_MS;
    uint64_t seen = kin_supervisor_changes(sup);
    for (;;) {
        kin_err e = kin_supervisor_child(sup, name, info);
        if (e)
            return e;
        if (info->restarts > restarts && info->state == KIN_CHILD_RUNNING)
            return KIN_OK;
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return KIN_ETIMEOUT;
        if ((e = kin_supervisor_wait(sup, seen, left, &seen)))
            return e;
    }
}

/* Step 4: a worker dies in the middle of a call. */
static void
kill_and_retry(kin_node *node, kin_supervisor *sup)
{
    kin_child_info before;
    if (kin_supervisor_child(sup, "calc-2", &before)) {
        fail("no calc-2");
        return;
    }
    kin_receiver *r = NULL;
    kin_err e = kin_call_async(node, before.id, "calc.sleep", &r, "i", 60000);
    if (!e)
        e = wait_serving(node, before.id, "calc.sleep");
    if (e) {
        fail("starting calc.sleep in calc-2: %s", kin_strerror(e));
        kin_receiver_destroy(&r);
        return;
    }
    printf("  killing calc-2 (pid %d) while it serves calc.sleep(60000)\n",
           (int)before.pid);
    fflush(stdout);
    double t0 = now_ms();
    kill(before.pid, SIGKILL);

    /* The receiver is bound to calc-2's context: when that context's link
     * drops, the call ends with KIN_EPEERGONE at once, not after the 60 s
     * the function would have taken nor after a heartbeat timeout. */
    kin_msg *reply = NULL;
    e = kin_call_wait(r, WAIT_MS, &reply);
    kin_msg_destroy(&reply);
    kin_receiver_destroy(&r);
    printf("  the call failed after %.0f ms: %s (%s)\n", now_ms() - t0,
           kin_err_name(e), kin_strerror(e));
    if (e != KIN_EPEERGONE)
        fail("expected KIN_EPEERGONE, got %s", kin_err_name(e));

    /* Whether to retry is the caller's decision (kin cannot know whether
     * the work had side effects). A calculator call is safe to repeat. */
    kin_child_info after;
    if ((e = wait_restarted(sup, "calc-2", before.restarts, &after))) {
        fail("calc-2 was not restarted: %s", kin_strerror(e));
        return;
    }
    int pid = 0;
    e = kin_call_sync(node, after.id, "calc.sleep", CALL_MS, &reply, "i", 10);
    if (!e)
        e = kin_msg_unpack(reply, "i", &pid);
    kin_msg_destroy(&reply);
    if (e || pid != after.pid)
        fail("retry in calc-2: %s", kin_strerror(e));
    else
        printf("  retry succeeded: calc.sleep served by the new calc-2 "
               "(context %u, pid %d, restarts %u)\n",
               after.id, pid, after.restarts);
}

int
main(void)
{
    /* Exports first: a worker runs this same main, and kin_init makes it
     * serve what is exported by then. */
    kin_export("calc.add", add_fn, NULL, KIN_POLICY_PARENT);
    kin_export("calc.div", div_fn, NULL, KIN_POLICY_PARENT);
    kin_export("calc.sleep", sleep_fn, NULL, KIN_POLICY_PARENT);

    kin_node *node;
    kin_err e = kin_init(&node, &(kin_node_opts){.name = "master"});
    if (e) { /* only the master gets here */
        fprintf(stderr, "kin-service: kin_init: %s\n", kin_strerror(e));
        return 1;
    }

    printf("Starting 2 workers under a one_for_one supervisor:\n");
    fflush(stdout);
    kin_supervisor *sup = NULL;
    kin_supervisor_opts so = {.strategy = KIN_ONE_FOR_ONE,
                              .intensity = 3, /* restarts per period_ms */
                              .period_ms = 5000,
                              .on_event = on_event};
    e = kin_supervisor_new(&sup, node, &so);
    const char *names[] = {"calc-1", "calc-2"};
    for (int i = 0; !e && i < 2; i++) {
        kin_child_spec spec = {.name = names[i],
                               .restart = KIN_RESTART_PERMANENT,
                               .spawn = {.workers = POOL}};
        e = kin_supervisor_add(sup, &spec);
    }
    if (!e)
        e = kin_supervisor_start(sup);
    if (e) {
        fail("starting the workers: %s", kin_strerror(e));
    } else {
        printf("\n1. Calls by name:\n");
        add_in_each(node, sup);
        printf("\n2. A worker's pool serves calls in parallel:\n");
        pool_at_work(node, sup);
        printf("\n3. Errors come back as values:\n");
        remote_errors(node, sup);
        printf("\n4. A worker dies mid-call:\n");
        fflush(stdout);
        kill_and_retry(node, sup);
    }

    /* Stops the workers (asks, then SIGTERM, then SIGKILL) and reaps them. */
    kin_supervisor_destroy(&sup);
    kin_node_destroy(&node);
    if (failed)
        return 1;
    printf("\nservice example: OK\n");
    return 0;
}
