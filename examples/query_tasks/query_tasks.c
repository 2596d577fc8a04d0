/* kin-query-tasks: asking a running tree about its tasks, from code.
 *
 * The master starts three worker processes and calls functions in them
 * that do not finish on their own: job.wait blocks waiting for an event
 * that never comes (a latch nobody fills), job.spin computes in a loop
 * that polls kin_task_cancelled(). Then, with the C API of kin/monitor.h
 * (the same queries the `kin` command makes), it:
 *   - walks the context tree (kin_monitor_info) and lists every task in
 *     every context (kin_monitor_ps), with what each one waits on;
 *   - prints the stack of a blocked task, function and file:line
 *     (kin_monitor_where);
 *   - cancels that task and the spinning one (kin_monitor_cancel) and
 *     finds them in the terminated lists with who cancelled them
 *     (kin_monitor_ps_terminated).
 * Stacks show file:line only for code built with -g. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kin/kin.h>
#include <kin/monitor.h>

#define N_WORKERS 3
#define CALL_MS 5000  /* monitor queries answer in milliseconds */
#define WAIT_MS 10000 /* deadline for anything we wait for */
#define BLOCK_MS 60000

/* --- the workers' side ---------------------------------------------------- */

/* job.wait(ms): waits up to ms for an event that never comes, standing for
 * a lock, a queue or a reply that is late. kin_latch_get is a kin blocking
 * point, so the monitor sees the task as waiting and a cancel wakes it. */
static kin_err
job_wait_fn(kin_call *c, void *arg)
{
    int ms;
    kin_err e = kin_call_args(c, "i", &ms);
    if (e)
        return e;
    kin_latch *event;
    if ((e = kin_latch_new(&event)))
        return e;
    kin_msg *m = NULL;
    e = kin_latch_get(event, ms, &m); /* the stack will point here */
    kin_latch_destroy(&event);
    return e; /* KIN_ECANCELLED when cancelled */
}

/* job.spin(ms): busy work that never blocks in kin, so it must poll for
 * cancellation itself; kin cannot interrupt plain computation. */
static kin_err
job_spin_fn(kin_call *c, void *arg)
{
    int ms;
    kin_err e = kin_call_args(c, "i", &ms);
    if (e)
        return e;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    volatile double x = 0;
    do {
        for (int i = 0; i < 100000; i++)
            x += i * 0.5; /* a slice of "work" */
        if (kin_task_cancelled())
            return KIN_ECANCELLED;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 +
                 (t.tv_nsec - t0.tv_nsec) / 1000000 <
             ms);
    return kin_call_return(c, "d", x);
}

/* --- the master's side ---------------------------------------------------- */

static int failed;

static void
fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kin-query-tasks: FAILED: ");
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

/* Finds the live task of ctx that runs fn; returns its id or 0. */
static uint32_t
find_task(kin_node *node, uint32_t ctx, const char *fn, kin_task_state state)
{
    kin_task_info *tasks;
    size_t n;
    uint32_t id = 0;
    if (kin_monitor_ps(node, ctx, fn, false, CALL_MS, &tasks, &n))
        return 0;
    for (size_t i = 0; i < n && !id; i++)
        if (!strcmp(tasks[i].fn, fn) && tasks[i].state == state)
            id = tasks[i].id;
    free(tasks);
    return id;
}

/* Waits until ctx has a task running fn in the given state. A call is
 * asynchronous: it reaches the worker and a pool thread picks it up a
 * moment after kin_call_async returned. */
static uint32_t
wait_task(kin_node *node, uint32_t ctx, const char *fn, kin_task_state state)
{
    double deadline = now_ms() + WAIT_MS;
    uint32_t id;
    while (!(id = find_task(node, ctx, fn, state)) && now_ms() < deadline)
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL); /* poll */
    return id;
}

static int
by_id(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Lists the tasks of ctx, then of its children, depth first. The tree is
 * learnt from the contexts themselves: info names a context's children
 * (in no particular order, so they are sorted for the display). */
static void
print_tasks(kin_node *node, uint32_t ctx)
{
    kin_ctx_info info;
    kin_err e = kin_monitor_info(node, ctx, CALL_MS, &info);
    if (e) {
        fail("info of context %u: %s", ctx, kin_strerror(e));
        return;
    }
    kin_task_info *tasks;
    size_t n;
    if ((e = kin_monitor_ps(node, ctx, NULL, false, CALL_MS, &tasks, &n))) {
        fail("ps of context %u: %s", ctx, kin_strerror(e));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const kin_task_info *t = &tasks[i];
        char id[24], caller[24] = "-", waits[64] = "-";
        snprintf(id, sizeof id, "%u:%u", ctx, t->id);
        if (t->caller_ctx != KIN_NO_CTX && t->caller_task)
            snprintf(caller, sizeof caller, "%u:%u", t->caller_ctx,
                     t->caller_task);
        if (t->await_ctx != KIN_NO_CTX)
            snprintf(waits, sizeof waits, "call %s in %u", t->await_fn,
                     t->await_ctx);
        else if (t->waiting[0])
            snprintf(waits, sizeof waits, "%s for %.0f ms", t->waiting,
                     t->wait_ms);
        printf("  %-7s %-9s %-6d %-10s %-8s %-9s %s\n", id, info.name, info.pid,
               t->fn[0] ? t->fn : t->name, kin_task_state_name(t->state),
               caller, waits);
    }
    free(tasks);
    qsort(info.children, (size_t)info.n_children, sizeof info.children[0],
          by_id);
    for (int i = 0; i < info.n_children; i++)
        print_tasks(node, info.children[i]);
}

/* Prints the stack of task `id` in ctx as the task's own thread sees it
 * right now, and checks that it blocks in job_wait_fn. */
static void
print_stack(kin_node *node, uint32_t ctx, uint32_t id)
{
    kin_frame_info *frames;
    size_t n;
    kin_err e = kin_monitor_where(node, ctx, id, CALL_MS, &frames, &n);
    if (e) {
        fail("where %u:%u: %s", ctx, id, kin_strerror(e));
        return;
    }
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        const char *file = strrchr(frames[i].file, '/');
        file = file ? file + 1 : frames[i].file;
        if (frames[i].line > 0)
            printf("  #%-2zu %s at %s:%d\n", i, frames[i].fn, file,
                   frames[i].line);
        else
            printf("  #%-2zu %s\n", i, frames[i].fn[0] ? frames[i].fn : "?");
        found |= !strcmp(frames[i].fn, "job_wait_fn") &&
                 !strcmp(file, "query_tasks.c") && frames[i].line > 0;
    }
    free(frames);
    if (!found)
        fail("no job_wait_fn at query_tasks.c:LINE in the stack");
}

/* Looks for task `id` among ctx's terminated tasks; *out gets a copy.
 * Returns KIN_OK, -ENOENT (not there) or the query's error. */
static kin_err
find_terminated(kin_node *node, uint32_t ctx, uint32_t id, kin_task_info *out)
{
    kin_task_info *tasks;
    size_t n;
    kin_err e = kin_monitor_ps_terminated(node, ctx, CALL_MS, &tasks, &n);
    if (e)
        return e;
    e = -ENOENT;
    for (size_t i = 0; i < n; i++)
        if (tasks[i].id == id) {
            *out = tasks[i];
            e = KIN_OK;
        }
    free(tasks);
    return e;
}

/* Prints how task `id` of ctx ended and who cancelled it (ctx:task).
 * Returns the canceller's task id, or UINT32_MAX when the task was not
 * cancelled by the master. */
static uint32_t
print_terminated(kin_node *node, uint32_t ctx, uint32_t id)
{
    /* The record moves to the terminated list as the task's thread
     * finishes, which can be a moment after its caller got the reply: look
     * again until it is there. */
    kin_task_info t;
    double deadline = now_ms() + WAIT_MS;
    kin_err e;
    while ((e = find_terminated(node, ctx, id, &t)) == -ENOENT &&
           now_ms() < deadline)
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL); /* poll */
    if (e) {
        fail("task %u:%u is not among the terminated: %s", ctx, id,
             kin_strerror(e));
        return UINT32_MAX;
    }
    printf("  %u:%u %-9s %-9s result %-14s cancelled by %u:%u\n", ctx, t.id,
           t.fn, kin_task_state_name(t.state), kin_err_name(t.result),
           t.cancelled_by_ctx, t.cancelled_by_task);
    if (t.state != KIN_TASK_CANCELLED || t.cancelled_by_ctx != KIN_MASTER_ID) {
        fail("task %u:%u should be cancelled by the master", ctx, id);
        return UINT32_MAX;
    }
    return t.cancelled_by_task;
}

/* Cancels task `id` in ctx through its monitor, as `kin cancel` does, and
 * waits for the reply of the call the task served: its caller sees the
 * cancellation as the call's result. */
static void
cancel_task(kin_node *node, uint32_t ctx, uint32_t id, const char *fn,
            kin_receiver *call)
{
    kin_err e = kin_monitor_cancel(node, ctx, id, CALL_MS);
    if (e) {
        fail("cancel %u:%u: %s", ctx, id, kin_strerror(e));
        return;
    }
    kin_msg *reply = NULL;
    e = kin_call_wait(call, WAIT_MS, &reply);
    kin_msg_destroy(&reply);
    printf("  kin_monitor_cancel: %s %u:%u; its caller got %s\n", fn, ctx, id,
           kin_err_name(e));
    if (e != KIN_ECANCELLED)
        fail("the call should end with KIN_ECANCELLED");
}

/* The id of the master's "main" task: the main thread, adopted as a task
 * when it first waited in kin. kin_call_cancel names it as the canceller. */
static uint32_t
main_task(kin_node *node)
{
    kin_task_info *tasks;
    size_t n;
    uint32_t id = 0;
    if (kin_monitor_ps(node, KIN_MASTER_ID, "main", false, CALL_MS, &tasks,
                       &n) == KIN_OK) {
        for (size_t i = 0; i < n && !id; i++)
            if (!strcmp(tasks[i].name, "main"))
                id = tasks[i].id;
        free(tasks);
    }
    return id;
}

static void
run(kin_node *node, kin_child **workers, kin_receiver **waits,
    kin_receiver **spin)
{
    uint32_t ctx[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i + 1);
        kin_err e = kin_spawn(
            node, &(kin_spawn_opts){.name = name, .workers = 2}, &workers[i]);
        if (e) {
            fail("spawning %s: %s", name, kin_strerror(e));
            return;
        }
        ctx[i] = kin_child_id(workers[i]);
    }

    /* One blocked call in each worker, and a busy one in the last. */
    for (int i = 0; i < N_WORKERS; i++)
        if (kin_call_async(node, ctx[i], "job.wait", &waits[i], "i",
                           BLOCK_MS)) {
            fail("calling job.wait");
            return;
        }
    if (kin_call_async(node, ctx[2], "job.spin", spin, "i", BLOCK_MS)) {
        fail("calling job.spin");
        return;
    }
    uint32_t blocked = 0, spinning;
    for (int i = 0; i < N_WORKERS; i++) {
        uint32_t id = wait_task(node, ctx[i], "job.wait", KIN_TASK_WAITING);
        if (!id) {
            fail("no job.wait task in context %u", ctx[i]);
            return;
        }
        if (i == 0)
            blocked = id;
    }
    if (!(spinning = wait_task(node, ctx[2], "job.spin", KIN_TASK_RUNNING))) {
        fail("no job.spin task in context %u", ctx[2]);
        return;
    }

    printf("Every task in every context (from context %u down):\n",
           KIN_MASTER_ID);
    printf("  %-7s %-9s %-6s %-10s %-8s %-9s %s\n", "TASK", "CONTEXT", "PID",
           "FUNCTION", "STATE", "CALLER", "WAITS ON");
    print_tasks(node, KIN_MASTER_ID);

    printf("\nWhere task %u:%u is blocked (its thread's stack, now):\n", ctx[0],
           blocked);
    print_stack(node, ctx[0], blocked);

    printf("\nCancelling them: two through the monitor, the others the "
           "caller's way:\n");
    cancel_task(node, ctx[0], blocked, "job.wait", waits[0]);
    cancel_task(node, ctx[2], spinning, "job.spin", *spin);
    /* kin_call_cancel sends CANCEL for the call behind a receiver; the
     * callee records the calling task (here: the main thread's). */
    uint32_t others[N_WORKERS] = {0};
    for (int i = 1; i < N_WORKERS; i++) {
        others[i] = find_task(node, ctx[i], "job.wait", KIN_TASK_WAITING);
        kin_msg *reply = NULL;
        kin_call_cancel(waits[i]);
        kin_err e = kin_call_wait(waits[i], WAIT_MS, &reply);
        kin_msg_destroy(&reply);
        printf("  kin_call_cancel: job.wait %u:%u; its caller got %s\n", ctx[i],
               others[i], kin_err_name(e));
        if (e != KIN_ECANCELLED)
            fail("job.wait in context %u did not end cancelled", ctx[i]);
    }

    uint32_t me = main_task(node);
    printf("\nTerminated tasks and who cancelled them (ctx:task; the master's "
           "main thread\nis 0:%u, task 0 means the context itself or an "
           "operator):\n",
           me);
    print_terminated(node, ctx[0], blocked);
    print_terminated(node, ctx[2], spinning);
    for (int i = 1; i < N_WORKERS; i++)
        if (print_terminated(node, ctx[i], others[i]) != me)
            fail("job.wait %u:%u should be cancelled by 0:%u", ctx[i],
                 others[i], me);
}

int
main(void)
{
    kin_export("job.wait", job_wait_fn, NULL, KIN_POLICY_PARENT);
    kin_export("job.spin", job_spin_fn, NULL, KIN_POLICY_PARENT);

    kin_node *node;
    kin_err e = kin_init(&node, &(kin_node_opts){.name = "master"});
    if (e) { /* only the master gets here; workers serve in kin_init */
        fprintf(stderr, "kin-query-tasks: kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    kin_child *workers[N_WORKERS] = {0};
    kin_receiver *waits[N_WORKERS] = {0}, *spin = NULL;
    run(node, workers, waits, &spin);

    /* Receivers first (the node must outlive them), then the processes. */
    for (int i = 0; i < N_WORKERS; i++)
        kin_receiver_destroy(&waits[i]);
    kin_receiver_destroy(&spin);
    for (int i = 0; i < N_WORKERS; i++)
        kin_child_destroy(&workers[i]);
    kin_node_destroy(&node);
    if (failed)
        return 1;
    printf("\nquery_tasks example: OK\n");
    return 0;
}
