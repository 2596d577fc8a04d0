/* The tree tests/integration/test_monitor_tui.sh looks at with kin monitor
 * (and test_top_tui.sh with kin top): a master with one child blocked in a
 * call and a custom command "hello". Prints its pid once the call is
 * blocked and lives until stdin closes. Lines on stdin: "spawn" starts a
 * child named "late", "queue" queues a second call behind the blocked one
 * (the child has one worker: its pool is then exhausted), "deadlock"
 * starts a child "loop" with one worker calling t.recurse, which calls its
 * own context and waits for a worker it holds itself (a cycle). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kin/kin.h>
#include <kin/monitor.h>

/* Blocks at a kin blocking point until cancelled (or 60 s). */
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
    e = kin_latch_get(l, 60000, &m);
    kin_msg_destroy(&m);
    kin_latch_destroy(&l);
    return e;
}

/* Calls t.block in its own context: with one worker, a deadlock. */
static kin_err
recurse(kin_call *c, void *arg)
{
    (void)arg;
    kin_node *n = kin_call_node(c);
    kin_msg *m = NULL;
    kin_err e = kin_call_sync(n, kin_node_id(n), "t.block", 60000, &m, NULL);
    kin_msg_destroy(&m);
    return e;
}

static kin_err
hello(const char *args, kin_buf *out, void *arg)
{
    (void)args;
    (void)arg;
    return kin_buf_printf(out, "hello from the target");
}

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Whether ctx shows fn waiting. */
static bool
blocked(kin_node *n, uint32_t ctx, const char *fn)
{
    kin_task_info *ts;
    size_t count;
    bool found = false;
    if (kin_monitor_ps(n, ctx, fn, false, 2000, &ts, &count))
        return false;
    for (size_t i = 0; i < count; i++)
        found |= !strcmp(ts[i].fn, fn) && ts[i].state == KIN_TASK_WAITING;
    free(ts);
    return found;
}

int
main(void)
{
    kin_export("t.block", block, NULL, KIN_POLICY_ANY);
    kin_export("t.recurse", recurse, NULL, KIN_POLICY_ANY);
    kin_node *master;
    kin_err e = kin_init(&master, NULL); /* a child serves and never returns */
    if (e) {
        fprintf(stderr, "monitor_target: kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    int rc = 1;
    kin_child *child = NULL;
    kin_receiver *r = NULL, *r2 = NULL, *r3 = NULL;
    kin_child *late = NULL, *loop = NULL;
    kin_spawn_opts o = {.name = "worker", .workers = 1};
    if ((e = kin_monitor_command(master, "hello", "says hello", hello, NULL)) ||
        (e = kin_spawn(master, &o, &child)) ||
        (e = kin_call_async(master, kin_child_id(child), "t.block", &r,
                            NULL))) {
        fprintf(stderr, "monitor_target: %s\n", kin_strerror(e));
        goto out;
    }
    double end = now_ms() + 10000;
    while (!blocked(master, kin_child_id(child), "t.block")) {
        if (now_ms() > end) {
            fprintf(stderr, "monitor_target: the call never blocked\n");
            goto out;
        }
        usleep(5000);
    }
    KIN_LOGI("target ready"); /* kin logs shows it from the history */
    printf("%d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strcmp(line, "spawn\n") && !late)
            e = kin_spawn(master, &(kin_spawn_opts){.name = "late"}, &late);
        else if (!strcmp(line, "queue\n") && !r2)
            e = kin_call_async(master, kin_child_id(child), "t.block", &r2,
                               NULL);
        else if (!strcmp(line, "deadlock\n") && !loop &&
                 !(e = kin_spawn(
                       master, &(kin_spawn_opts){.name = "loop", .workers = 1},
                       &loop)))
            e = kin_call_async(master, kin_child_id(loop), "t.recurse", &r3,
                               NULL);
        if (e)
            fprintf(stderr, "monitor_target: %s: %s", line, kin_strerror(e));
    }
    rc = 0;
out:
    if (r3) {
        kin_call_cancel(r3);
        kin_msg *m = NULL;
        kin_call_wait(r3, 5000, &m);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&r3);
    }
    if (r2) {
        /* Both cancelled before either is waited for: r2 waits for r's
         * worker. */
        kin_call_cancel(r2);
        if (r)
            kin_call_cancel(r);
        kin_msg *m = NULL;
        kin_call_wait(r2, 5000, &m);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&r2);
    }
    if (r) {
        kin_call_cancel(r);
        kin_msg *m = NULL;
        kin_call_wait(r, 5000, &m);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&r);
    }
    kin_child_destroy(&child);
    kin_child_destroy(&late);
    kin_child_destroy(&loop);
    kin_node_destroy(&master);
    return rc;
}
