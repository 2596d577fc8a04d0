/* Calls between real processes: results, remote errors, policies, nested
 * calls, many concurrent calls, a callee killed mid-call, timeouts with late
 * replies, and cancellation reaching the remote task. The test binary is
 * also the child program (kin_init serves when started as a child). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <kin/monitor.h>

#include "core/msg_internal.h"
#include "integration/harness.h"
#include "router/router.h"

/* 63 bytes, the longest name an export may have. */
#define LONG_INLINE_NAME                                                       \
    "t.an_inline_function_whose_name_uses_all_the_63_bytes_allowed__"

static kin_node *master;

/* --- functions served by every context ------------------------------------ */

static kin_err
add(kin_call *c, void *arg)
{
    int64_t a, b;
    kin_err e = kin_call_args(c, "II", &a, &b);
    return e ? e : kin_call_return(c, "I", a + b);
}

static kin_err
fail_fn(kin_call *c, void *arg)
{
    return kin_call_fail(c, -EDOM, "cannot do that: %d", 42);
}

/* Fails two frames down, so the error's stack has both (neither inlined
 * nor a tail call). */
static __attribute__((noinline)) kin_err
check_positive(kin_call *c, int64_t v)
{
    if (v > 0)
        return KIN_OK;
    kin_err e = kin_call_fail(c, -ERANGE, "%lld is not positive", (long long)v);
    __asm__ volatile("" ::: "memory");
    return e;
}

static kin_err
fail_deep_fn(kin_call *c, void *arg)
{
    int64_t v;
    kin_err e = kin_call_args(c, "I", &v);
    if (!e)
        e = check_positive(c, v);
    if (e)
        return e;
    return kin_call_return(c, "I", v);
}

static kin_err
getpid_fn(kin_call *c, void *arg)
{
    return kin_call_return(c, "i", (int)getpid());
}

/* Blocks in a kin blocking point until cancelled (or 30 s). */
static kin_err
block(kin_call *c, void *arg)
{
    kin_latch *l;
    kin_latch_new(&l);
    kin_msg *m = NULL;
    kin_err e = kin_latch_get(l, 30000, &m);
    kin_latch_destroy(&l);
    return e;
}

static kin_err
nap(kin_call *c, void *arg)
{
    return kin_task_sleep(30000);
}

static kin_err
sleep_ms(kin_call *c, void *arg)
{
    int ms;
    kin_err e = kin_call_args(c, "i", &ms);
    if (e)
        return e;
    usleep((useconds_t)ms * 1000);
    return kin_call_return(c, "i", ms);
}

/* Calls a function in the caller's parent from inside a call. */
static kin_err
call_parent(kin_call *c, void *arg)
{
    const char *fn;
    size_t len;
    kin_err e = kin_call_args(c, "S", &fn, &len);
    if (e)
        return e;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)len, fn);
    kin_msg *r = NULL;
    e = kin_call_sync(kin_call_node(c), kin_call_caller(c), name, 5000, &r,
                      "II", 40, 2);
    int64_t v = 0;
    if (!e)
        e = kin_msg_unpack(r, "I", &v);
    kin_msg_destroy(&r);
    return kin_call_return(c, "iI", e, v);
}

/* Spawns a grandchild and calls add in it (nested tree). */
static kin_err
spawn_and_add(kin_call *c, void *arg)
{
    kin_child *gc;
    kin_err e = kin_spawn(kin_call_node(c), NULL, &gc);
    if (e)
        return kin_call_fail(c, e, "spawn: %s", kin_strerror(e));
    kin_msg *r = NULL;
    e = kin_call_sync(kin_call_node(c), kin_child_id(gc), "t.add", 5000, &r,
                      "II", 20, 22);
    int64_t v = 0;
    if (!e)
        e = kin_msg_unpack(r, "I", &v);
    kin_msg_destroy(&r);
    kin_child_destroy(&gc);
    return e ? kin_call_fail(c, e, "%s", kin_strerror(e))
             : kin_call_return(c, "I", v);
}

/* The grandchild this context spawned for the master to call. */
static kin_child *grandchild;

/* Spawns a grandchild and keeps it; returns its context id and pid. */
static kin_err
spawn_gc(kin_call *c, void *arg)
{
    kin_err e = grandchild ? KIN_EEXISTS
                           : kin_spawn(kin_call_node(c), NULL, &grandchild);
    if (e)
        return kin_call_fail(c, e, "spawn: %s", kin_strerror(e));
    return kin_call_return(c, "ui", kin_child_id(grandchild),
                           (int)kin_child_pid(grandchild));
}

/* This process's pid and its parent's. */
static kin_err
getpids_fn(kin_call *c, void *arg)
{
    return kin_call_return(c, "ii", (int)getpid(), (int)getppid());
}

/* Streams count numbers back to the caller's receiver, then a nil end. */
static kin_err
stream(kin_call *c, void *arg)
{
    uint32_t ctx, handle;
    int count;
    kin_err e = kin_call_args(c, "uui", &ctx, &handle, &count);
    for (int i = 0; !e && i < count; i++)
        e = kin_send(kin_call_node(c), ctx, handle, "i", i * i);
    if (!e)
        e = kin_send(kin_call_node(c), ctx, handle, "n");
    return e;
}

/* What t.record saw in this process: how many numbers, and the index of
 * the first that was not the next one (-1: none). Run by a pool of one
 * worker, so by one thread at a time. */
static atomic_int recorded, recorded_wrong = -1;

static kin_err
record(kin_call *c, void *arg)
{
    int v;
    kin_err e = kin_call_args(c, "i", &v);
    if (e)
        return e;
    int n = atomic_load(&recorded);
    if (v != n && atomic_load(&recorded_wrong) < 0)
        atomic_store(&recorded_wrong, n);
    atomic_store(&recorded, n + 1);
    return KIN_OK;
}

static kin_err
records(kin_call *c, void *arg)
{
    return kin_call_return(c, "ii", atomic_load(&recorded),
                           atomic_load(&recorded_wrong));
}

static void
export_all(void)
{
    kin_export("t.record", record, NULL, KIN_POLICY_PARENT);
    kin_export("t.records", records, NULL, KIN_POLICY_PARENT);
    kin_export("t.stream", stream, NULL, KIN_POLICY_PARENT);
    kin_export("t.nap", nap, NULL, KIN_POLICY_PARENT);
    kin_export_inline("t.add_inline", add, NULL, KIN_POLICY_PARENT);
    kin_export_inline(LONG_INLINE_NAME, add, NULL, KIN_POLICY_PARENT);
    kin_export("t.add", add, NULL, KIN_POLICY_PARENT);
    kin_export("t.add_any", add, NULL, KIN_POLICY_ANY);
    kin_export("t.add_child", add, NULL, KIN_POLICY_CHILD);
    kin_export("t.fail", fail_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.fail_deep", fail_deep_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.getpid", getpid_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.block", block, NULL, KIN_POLICY_PARENT);
    kin_export("t.sleep", sleep_ms, NULL, KIN_POLICY_PARENT);
    kin_export("t.call_parent", call_parent, NULL, KIN_POLICY_PARENT);
    kin_export("t.spawn_and_add", spawn_and_add, NULL, KIN_POLICY_PARENT);
    kin_export("t.spawn_gc", spawn_gc, NULL, KIN_POLICY_PARENT);
    kin_export("t.getpids", getpids_fn, NULL, KIN_POLICY_PARENT);
}

/* --- tests -----------------------------------------------------------------
 */

static int
setup(void **state)
{
    kin_child *c;
    kin_err e = kin_spawn(master, NULL, &c);
    if (e) {
        fprintf(stderr, "spawn: %s\n", kin_strerror(e));
        return -1;
    }
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    kin_child *c = *state;
    kin_child_destroy(&c);
    return 0;
}

static void
add_returns_the_sum(void **state)
{
    kin_child *c = *state;
    kin_msg *r;
    assert_int_equal(
        kin_call_sync(master, kin_child_id(c), "t.add", 5000, &r, "II", 2, 3),
        KIN_OK);
    int64_t sum = 0;
    assert_int_equal(kin_msg_unpack(r, "I", &sum), KIN_OK);
    assert_int_equal(sum, 5);
    kin_msg_destroy(&r);

    /* The function really ran in the child process. */
    int pid = 0;
    assert_int_equal(
        kin_call_sync(master, kin_child_id(c), "t.getpid", 5000, &r, NULL),
        KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "i", &pid), KIN_OK);
    assert_int_equal(pid, kin_child_pid(c));
    kin_msg_destroy(&r);
}

static void
inline_functions_answer_from_the_broker(void **state)
{
    kin_child *c = *state;
    kin_msg *r;
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.add_inline",
                                   5000, &r, "II", 40, 2),
                     KIN_OK);
    int64_t sum = 0;
    assert_int_equal(kin_msg_unpack(r, "I", &sum), KIN_OK);
    assert_int_equal(sum, 42);
    kin_msg_destroy(&r);
    /* Same errors as any call: a type error comes back as remote. */
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.add_inline",
                                   5000, &r, "s", "x"),
                     KIN_EREMOTE);
    kin_msg_destroy(&r);
    /* It still answers while every worker is busy (that is the point). */
    kin_receiver *busy[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(kin_call_async(master, kin_child_id(c), "t.sleep",
                                        &busy[i], "i", 3000),
                         KIN_OK);
    double t0 = harness_now_ms();
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.add_inline",
                                   5000, &r, "II", 1, 2),
                     KIN_OK);
    assert_true(harness_now_ms() - t0 < 2500); /* the workers take 3 s */
    kin_msg_destroy(&r);
    assert_int_equal(strlen(LONG_INLINE_NAME), 63);
    t0 = harness_now_ms();
    assert_int_equal(kin_call_sync(master, kin_child_id(c), LONG_INLINE_NAME,
                                   5000, &r, "II", 1, 2),
                     KIN_OK);
    assert_true(harness_now_ms() - t0 < 2500);
    kin_msg_destroy(&r);
    for (int i = 0; i < 4; i++) {
        kin_msg *m = NULL;
        assert_int_equal(kin_call_wait(busy[i], 5000, &m), KIN_OK);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&busy[i]);
    }
}

/* Live adopted "main" tasks of ctx 0 in node n. */
static int
main_tasks(kin_node *n)
{
    kin_task_info *tasks = NULL;
    size_t count = 0;
    assert_int_equal(
        kin_monitor_ps(n, KIN_MASTER_ID, "main", false, 5000, &tasks, &count),
        KIN_OK);
    int mains = 0;
    for (size_t i = 0; i < count; i++)
        mains += !strcmp(tasks[i].name, "main");
    free(tasks);
    return mains;
}

/* A thread calling into two nodes of the process in turn is one task in
 * each, however often it switches, and nodes coming and going meanwhile
 * leave no ghost records behind. */
static void
a_thread_switching_nodes_is_one_task_in_each(void **state)
{
    kin_child *c = *state;
    kin_node *other = NULL;
    assert_int_equal(kin_node_new(&other, NULL), KIN_OK);
    for (int i = 0; i < 10; i++) {
        kin_msg *r = NULL;
        assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.add", 5000,
                                       &r, "II", 1, 2),
                         KIN_OK);
        kin_msg_destroy(&r);
        assert_int_equal(
            kin_call_sync(other, KIN_MASTER_ID, "t.add", 5000, &r, "II", 1, 2),
            KIN_OK);
        kin_msg_destroy(&r);
        kin_node *brief = NULL;
        assert_int_equal(kin_node_new(&brief, NULL), KIN_OK);
        assert_int_equal(
            kin_call_sync(brief, KIN_MASTER_ID, "t.add", 5000, &r, "II", 1, 2),
            KIN_OK);
        kin_msg_destroy(&r);
        kin_node_destroy(&brief);
    }
    assert_int_equal(main_tasks(master), 1);
    assert_int_equal(main_tasks(other), 1);
    kin_node_destroy(&other);
}

static void
errors_are_told_apart(void **state)
{
    kin_child *c = *state;
    uint32_t id = kin_child_id(c);
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(master, id, "t.fail", 5000, &r, NULL),
                     KIN_EREMOTE);
    assert_non_null(r);
    kin_remote_error info;
    assert_int_equal(kin_call_error(r, &info), KIN_OK);
    assert_int_equal(info.code, -EDOM);
    assert_int_equal(info.ctx, id);
    assert_string_equal(info.function, "t.fail");
    assert_string_equal(info.message, "cannot do that: 42");
    kin_msg_destroy(&r);

    assert_int_equal(kin_call_sync(master, id, "t.nope", 5000, &r, NULL),
                     KIN_ENOFUNC);
    kin_msg_destroy(&r);
    assert_int_equal(kin_call_sync(master, 9999, "t.add", 5000, &r, "II", 1, 2),
                     KIN_ENOROUTE);
    assert_null(r);
    /* Wrong argument types come back as the callee's type error. */
    assert_int_equal(kin_call_sync(master, id, "t.add", 5000, &r, "s", "x"),
                     KIN_EREMOTE);
    assert_int_equal(kin_call_error(r, &info), KIN_OK);
    assert_int_equal(info.code, KIN_ETYPE);
    kin_msg_destroy(&r);
}

/* The stack text of an error reply (printed, for the test's log). */
static const char *
stack_of(const kin_msg *r, char *buf, size_t cap)
{
    assert_int_equal(kin_call_error_stack(r, buf, cap), KIN_OK);
    print_message("stack:\n%s\n", buf);
    return buf;
}

static void
remote_errors_say_where(void **state)
{
    kin_child *c = *state;
    uint32_t id = kin_child_id(c);
    bool lines = harness_has_debug_info(__FILE__);
    char st[2048];
    kin_msg *r = NULL;

    /* Two frames down: innermost first, down to the served function. */
    assert_int_equal(
        kin_call_sync(master, id, "t.fail_deep", 5000, &r, "I", (int64_t)-3),
        KIN_EREMOTE);
    stack_of(r, st, sizeof st);
    assert_true(!strncmp(st, "#0 check_positive", 17));
    char *second = strstr(st, "\n#1 fail_deep_fn");
    assert_non_null(second);
    /* Nothing of kin's own worker below the function. */
    assert_null(strstr(st, "#2"));
    assert_null(strstr(st, "run_call"));
    if (lines) {
        assert_non_null(strstr(st, "#0 check_positive (test_calls.c:"));
        assert_non_null(strstr(second, "(test_calls.c:"));
    }
    kin_msg_destroy(&r);

    /* `return kin_call_fail(...)` is a tail call: the function is named
     * where it starts. */
    assert_int_equal(kin_call_sync(master, id, "t.fail", 5000, &r, NULL),
                     KIN_EREMOTE);
    assert_non_null(strstr(stack_of(r, st, sizeof st), "fail_fn"));
    assert_null(strstr(st, "run_call"));
    kin_msg_destroy(&r);

    /* An error returned without kin_call_fail names the function. */
    assert_int_equal(kin_call_sync(master, id, "t.add", 5000, &r, "s", "x"),
                     KIN_EREMOTE);
    assert_true(!strncmp(stack_of(r, st, sizeof st), "#0 add", 6));
    if (lines)
        assert_non_null(strstr(st, "#0 add (test_calls.c:"));
    kin_msg_destroy(&r);

    /* A call that never ran has no stack; a truncated copy stays a
     * string. */
    assert_int_equal(kin_call_sync(master, id, "t.nope", 5000, &r, NULL),
                     KIN_ENOFUNC);
    assert_string_equal(stack_of(r, st, sizeof st), "");
    kin_msg_destroy(&r);
    assert_int_equal(
        kin_call_sync(master, id, "t.fail_deep", 5000, &r, "I", (int64_t)0),
        KIN_EREMOTE);
    char small[8];
    assert_int_equal(kin_call_error_stack(r, small, sizeof small), KIN_OK);
    assert_string_equal(small, "#0 chec");
    kin_msg_destroy(&r);
    assert_int_equal(kin_call_sync(master, id, "t.add", 5000, &r, "II",
                                   (int64_t)1, (int64_t)2),
                     KIN_OK);
    assert_int_equal(kin_call_error_stack(r, st, sizeof st), -EINVAL);
    kin_msg_destroy(&r);
}

static void
nested_calls_follow_policy(void **state)
{
    kin_child *c = *state;
    kin_msg *r = NULL;
    int err = 0;
    int64_t v = 0;
    /* The child calls the master back: allowed for an ANY function... */
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.call_parent",
                                   5000, &r, "s", "t.add_any"),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "iI", &err, &v), KIN_OK);
    assert_int_equal(err, KIN_OK);
    assert_int_equal(v, 42);
    kin_msg_destroy(&r);
    /* ...refused for a PARENT function: the child is not the master's
     * ancestor. */
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.call_parent",
                                   5000, &r, "s", "t.add"),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "iI", &err, &v), KIN_OK);
    assert_int_equal(err, KIN_EREFUSED);
    kin_msg_destroy(&r);
    /* CHILD: the master's immediate child may call it... */
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.call_parent",
                                   5000, &r, "s", "t.add_child"),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "iI", &err, &v), KIN_OK);
    assert_int_equal(err, KIN_OK);
    assert_int_equal(v, 42);
    kin_msg_destroy(&r);
    /* ...but the parent may not call the child's. */
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.add_child", 5000,
                                   &r, "II", 1, 2),
                     KIN_EREFUSED);
    kin_msg_destroy(&r);
}

/* Prints the remote error of a failed call's reply, if it has one. */
static void
print_remote(const kin_msg *r)
{
    kin_remote_error info;
    if (r && (r->flags & KIN_MSG_ERROR) && !kin_call_error(r, &info))
        print_error("remote: %s\n", info.message);
}

static void
grandchild_is_routed_through_child(void **state)
{
    kin_child *c = *state;
    kin_msg *r = NULL;
    /* The child calls its own child... */
    kin_err e = kin_call_sync(master, kin_child_id(c), "t.spawn_and_add", 20000,
                              &r, NULL);
    print_remote(r);
    assert_int_equal(e, KIN_OK);
    int64_t v = 0;
    assert_int_equal(kin_msg_unpack(r, "I", &v), KIN_OK);
    assert_int_equal(v, 42);
    kin_msg_destroy(&r);

    /* ...and the master addresses a grandchild it never spawned: the call
     * goes through the child, and the answer comes from a process whose
     * parent is the child. */
    e = kin_call_sync(master, kin_child_id(c), "t.spawn_gc", 20000, &r, NULL);
    print_remote(r);
    assert_int_equal(e, KIN_OK);
    uint32_t gc_id = 0;
    int gc_pid = 0;
    assert_int_equal(kin_msg_unpack(r, "ui", &gc_id, &gc_pid), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_not_equal(gc_id, kin_child_id(c));
    e = kin_call_sync(master, gc_id, "t.add", 5000, &r, "II", 20, 22);
    print_remote(r);
    assert_int_equal(e, KIN_OK);
    assert_int_equal(r->src, gc_id);
    assert_int_equal(kin_msg_unpack(r, "I", &v), KIN_OK);
    assert_int_equal(v, 42);
    kin_msg_destroy(&r);
    int pid = 0, ppid = 0;
    assert_int_equal(kin_call_sync(master, gc_id, "t.getpids", 5000, &r, NULL),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "ii", &pid, &ppid), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(pid, gc_pid);
    assert_int_equal(ppid, kin_child_pid(c));

    /* KIN_POLICY_CHILD admits only an immediate child: the master's
     * grandchild, calling for itself, is refused... */
    int err = KIN_OK;
    assert_int_equal(kin_call_sync(master, gc_id, "t.call_parent", 5000, &r,
                                   "s", "t.add_child"),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "iI", &err, &v), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(err, KIN_EREFUSED);
    /* ...and the child between them is admitted. */
    v = 0;
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.call_parent",
                                   5000, &r, "s", "t.add_child"),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "iI", &err, &v), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(err, KIN_OK);
    assert_int_equal(v, 42);
    /* The grandchild goes with the child (teardown). */
}

static void
thousand_concurrent_calls_all_answered(void **state)
{
    kin_child *c = *state;
    enum { N = 1000 };
    kin_receiver **rs = calloc(N, sizeof *rs);
    kin_select *sel;
    assert_int_equal(kin_select_new(&sel, true), KIN_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(kin_call_async(master, kin_child_id(c), "t.add",
                                        &rs[i], "II", (int64_t)i, 1000),
                         KIN_OK);
        assert_int_equal(
            kin_select_add(sel, kin_receiver_latch(rs[i]), (void *)(intptr_t)i),
            KIN_OK);
    }
    int seen = 0;
    char *got = calloc(N, 1);
    for (int k = 0; k < N; k++) {
        kin_msg *m;
        void *tag;
        assert_int_equal(kin_select_get(sel, 10000, &m, &tag), KIN_OK);
        assert_int_equal(kin_call_result_of(&m), KIN_OK);
        int64_t v;
        assert_int_equal(kin_msg_unpack(m, "I", &v), KIN_OK);
        int i = (int)(intptr_t)tag;
        assert_int_equal(v, i + 1000);
        assert_false(got[i]);
        got[i] = 1;
        seen++;
        kin_msg_destroy(&m);
    }
    assert_int_equal(seen, N);
    kin_select_destroy(&sel);
    for (int i = 0; i < N; i++)
        kin_receiver_destroy(&rs[i]);
    free(rs);
    free(got);
}

/* Callers on many threads at once, for seconds: kin_node_send sends on
 * the up and down sockets from the calling thread, and such a send can
 * take the ZMQ_FD signal of input the broker has not seen yet (after
 * which that link's later messages raise no signal either): every call
 * must still be answered within its deadline. Half the threads call the
 * child, the others have the child call back up (its workers send on its
 * up socket while the replies come down it). */
enum { STORM_THREADS = 8, STORM_MS = 3000 };

typedef struct storm {
    kin_child *c;
    int index;
    double end;
    long calls;
    kin_err first_error;
    char what[96];
} storm;

static void *
storm_caller(void *arg)
{
    storm *s = arg;
    bool up = s->index % 2;
    for (int64_t i = 0; harness_now_ms() < s->end; i++) {
        kin_msg *r = NULL;
        int64_t want = up ? 42 : i + s->index;
        kin_err e =
            up ? kin_call_sync(master, kin_child_id(s->c), "t.call_parent",
                               10000, &r, "s", "t.add_child")
               : kin_call_sync(master, kin_child_id(s->c), "t.add", 10000, &r,
                               "II", i, (int64_t)s->index);
        int64_t v = -1;
        int err = KIN_OK;
        if (!e)
            e = up ? kin_msg_unpack(r, "iI", &err, &v)
                   : kin_msg_unpack(r, "I", &v);
        if (!e)
            e = err;
        kin_msg_destroy(&r);
        if (!e && v != want)
            e = KIN_EBADMSG;
        if (e) {
            s->first_error = e;
            snprintf(s->what, sizeof s->what, "thread %d call %lld: %s",
                     s->index, (long long)i, kin_strerror(e));
            break;
        }
        s->calls++;
    }
    return NULL;
}

static void
concurrent_callers_never_lose_a_wakeup(void **state)
{
    storm s[STORM_THREADS];
    pthread_t t[STORM_THREADS];
    double end = harness_now_ms() + STORM_MS;
    for (int i = 0; i < STORM_THREADS; i++) {
        s[i] = (storm){.c = *state, .index = i, .end = end};
        assert_int_equal(pthread_create(&t[i], NULL, storm_caller, &s[i]), 0);
    }
    long calls = 0;
    for (int i = 0; i < STORM_THREADS; i++) {
        pthread_join(t[i], NULL);
        if (s[i].first_error)
            print_error("%s\n", s[i].what);
        calls += s[i].calls;
    }
    for (int i = 0; i < STORM_THREADS; i++) {
        assert_int_equal(s[i].first_error, KIN_OK);
        assert_true(s[i].calls > 0);
    }
    print_message("%ld calls from %d threads in %d ms\n", calls, STORM_THREADS,
                  STORM_MS);
}

static void
killed_callee_gives_peer_gone_quickly(void **state)
{
    kin_child *c = *state;
    kin_receiver *r;
    assert_int_equal(
        kin_call_async(master, kin_child_id(c), "t.block", &r, NULL), KIN_OK);
    /* Make sure the call is running before the kill. */
    kin_msg *pong;
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.add", 5000,
                                   &pong, "II", 1, 1),
                     KIN_OK);
    kin_msg_destroy(&pong);
    double t0 = harness_now_ms();
    kill(kin_child_pid(c), SIGKILL);
    kin_msg *m = NULL;
    assert_int_equal(kin_call_wait(r, 5000, &m), KIN_EPEERGONE);
    double dt = harness_now_ms() - t0;
    /* Within the wait's deadline, from the exit: a local link has no
     * heartbeat, so without it the call would wait forever. How fast is
     * printed, not asserted (a loaded machine is no benchmark). */
    print_message("peer gone after %.1f ms\n", dt);
    kin_receiver_destroy(&r);
    int status = 0;
    assert_int_equal(kin_child_wait(c, 5000, &status), KIN_OK);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void
timeout_then_late_reply_is_discarded(void **state)
{
    kin_child *c = *state;
    kin_node_stats before, after;
    kin_node_stats_get(master, &before);
    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(master, kin_child_id(c), "t.sleep", 50, &r, "i", 300),
        KIN_ETIMEOUT);
    assert_null(r);
    /* The late reply arrives after its receiver is gone: the master drops
     * it (it has no reply_to to answer with a dead message) and counts
     * the drop. */
    double end = harness_now_ms() + 10000;
    do {
        kin_node_stats_get(master, &after);
        if (after.dropped > before.dropped)
            break;
        usleep(2000);
    } while (harness_now_ms() < end);
    print_message("dropped +%llu, dead sent +%llu\n",
                  (unsigned long long)(after.dropped - before.dropped),
                  (unsigned long long)(after.dead_sent - before.dead_sent));
    assert_int_equal(after.dropped - before.dropped, 1);
    assert_int_equal(after.dead_sent, before.dead_sent);
    /* The next call gets its own answer, not the stale one. */
    assert_int_equal(
        kin_call_sync(master, kin_child_id(c), "t.add", 5000, &r, "II", 7, 8),
        KIN_OK);
    int64_t v = 0;
    assert_int_equal(kin_msg_unpack(r, "I", &v), KIN_OK);
    assert_int_equal(v, 15);
    kin_msg_destroy(&r);
}

/* Waits until ctx's terminated tasks show fn cancelled and none runs it
 * any more; returns who cancelled it (context). */
static uint32_t
wait_cancelled(uint32_t ctx, const char *fn)
{
    double end = harness_now_ms() + 10000;
    for (;;) {
        kin_task_info *ts = NULL;
        size_t count = 0;
        uint32_t by = KIN_NO_CTX;
        bool ended = false;
        assert_int_equal(
            kin_monitor_ps_terminated(master, ctx, 2000, &ts, &count), KIN_OK);
        for (size_t i = 0; i < count; i++)
            if (!strcmp(ts[i].fn, fn) && ts[i].state == KIN_TASK_CANCELLED) {
                ended = true;
                by = ts[i].cancelled_by_ctx;
            }
        free(ts);
        assert_int_equal(
            kin_monitor_ps(master, ctx, fn, false, 2000, &ts, &count), KIN_OK);
        bool live = false;
        for (size_t i = 0; i < count; i++)
            live |= !strcmp(ts[i].fn, fn);
        free(ts);
        if (ended && !live)
            return by;
        if (harness_now_ms() > end)
            fail_msg("%s in ctx %u: %s", fn, ctx,
                     ended ? "cancelled but still live" : "never cancelled");
        usleep(5000);
    }
}

static void
cancel_reaches_remote_task(void **state)
{
    kin_child *c = *state;
    kin_receiver *r;
    assert_int_equal(
        kin_call_async(master, kin_child_id(c), "t.block", &r, NULL), KIN_OK);
    kin_msg *m = NULL;
    /* Still running after a while: nothing else ends it. */
    assert_int_equal(kin_call_wait(r, 200, &m), KIN_ETIMEOUT);
    assert_int_equal(kin_call_cancel(r), KIN_OK);
    /* The remote task wakes from its blocking point with KIN_ECANCELLED
     * and says so in its reply, long before its 30 s wait would end. */
    assert_int_equal(kin_call_wait(r, 5000, &m), KIN_ECANCELLED);
    kin_receiver_destroy(&r);
    /* The callee's own record says so: cancelled, by the master. */
    assert_int_equal(wait_cancelled(kin_child_id(c), "t.block"), KIN_MASTER_ID);
}

static void
task_sleep_is_a_cancellable_blocking_point(void **state)
{
    kin_child *c = *state;
    kin_receiver *r;
    assert_int_equal(kin_call_async(master, kin_child_id(c), "t.nap", &r, NULL),
                     KIN_OK);
    /* The monitor shows it asleep. */
    double end = harness_now_ms() + 5000;
    bool asleep = false;
    while (!asleep && harness_now_ms() < end) {
        kin_task_info *ts;
        size_t n;
        if (kin_monitor_ps(master, kin_child_id(c), "t.nap", false, 2000, &ts,
                           &n) == KIN_OK) {
            asleep = n == 1 && !strcmp(ts[0].waiting, "sleep");
            free(ts);
        }
        if (!asleep)
            usleep(2000);
    }
    assert_true(asleep);
    assert_int_equal(kin_call_cancel(r), KIN_OK);
    kin_msg *m = NULL;
    assert_int_equal(kin_call_wait(r, 10000, &m), KIN_ECANCELLED);
    kin_receiver_destroy(&r);
    /* It woke from its sleep as cancelled, not after its 30 s. */
    assert_int_equal(wait_cancelled(kin_child_id(c), "t.nap"), KIN_MASTER_ID);
}

static void
fire_and_forget_runs(void **state)
{
    kin_child *c = *state;
    kin_receiver *to;
    assert_int_equal(
        kin_receiver_new(&to, master, 0, KIN_POLICY_CHILD, kin_child_id(c)),
        KIN_OK);
    /* No reply wanted, yet the call runs: t.stream sends its numbers to
     * the receiver, then nil. */
    assert_int_equal(kin_call_nowait(master, kin_child_id(c), "t.stream", "uui",
                                     kin_node_id(master),
                                     kin_receiver_handle(to), 3),
                     KIN_OK);
    for (int i = 0; i < 3; i++) {
        kin_msg *m = NULL;
        assert_int_equal(kin_receiver_get(to, 5000, &m), KIN_OK);
        int v = -1;
        assert_int_equal(kin_msg_unpack(m, "i", &v), KIN_OK);
        assert_int_equal(v, i * i);
        kin_msg_destroy(&m);
    }
    kin_msg *end = NULL;
    assert_int_equal(kin_receiver_get(to, 5000, &end), KIN_OK);
    assert_int_equal(kin_msg_unpack(end, "n"), KIN_OK);
    kin_msg_destroy(&end);
    kin_receiver_destroy(&to);
}

static void
child_streams_results_back(void **state)
{
    kin_child *c = *state;
    kin_receiver *stream_to;
    assert_int_equal(kin_receiver_new(&stream_to, master, 0, KIN_POLICY_CHILD,
                                      kin_child_id(c)),
                     KIN_OK);
    kin_msg *r;
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "t.stream", 5000,
                                   &r, "uui", kin_node_id(master),
                                   kin_receiver_handle(stream_to), 100),
                     KIN_OK);
    kin_msg_destroy(&r);
    /* Every item, in order, then the end marker; each carries the child's
     * id as its source. */
    for (int i = 0; i < 100; i++) {
        kin_msg *m;
        assert_int_equal(kin_receiver_get(stream_to, 5000, &m), KIN_OK);
        assert_int_equal(m->src, kin_child_id(c));
        int v = -1;
        assert_int_equal(kin_msg_unpack(m, "i", &v), KIN_OK);
        assert_int_equal(v, i * i);
        kin_msg_destroy(&m);
    }
    kin_msg *end;
    assert_int_equal(kin_receiver_get(stream_to, 5000, &end), KIN_OK);
    assert_int_equal(kin_msg_unpack(end, "n"), KIN_OK);
    kin_msg_destroy(&end);
    kin_receiver_destroy(&stream_to);
}

/* A caller waiting for its reply reads the socket itself (docs/design.md,
 * "A caller that reads its own reply") while its call is the one its
 * context has out: what it reads for others goes to the broker, which
 * must deliver it in the order it came, none lost, while the caller's
 * replies pass it. One thread makes calls (every other one calls back
 * into the master while it waits) on the link over which the child sends
 * 5 streams of 20,000 items to a receiver the main thread reads. The
 * streams are started with kin_call_nowait, which has no reply and so
 * leaves the caller's call the only one out. */
enum { PASS_ITEMS = 20000, PASS_ROUNDS = 5 };

typedef struct passer {
    kin_child *c;
    atomic_bool done;
    long calls;
    kin_err first_error;
} passer;

static void *
passing_caller(void *arg)
{
    passer *p = arg;
    for (int64_t i = 0; !atomic_load(&p->done); i++) {
        kin_msg *r = NULL;
        bool back = i % 2;
        kin_err e =
            back ? kin_call_sync(master, kin_child_id(p->c), "t.call_parent",
                                 10000, &r, "s", "t.add_child")
                 : kin_call_sync(master, kin_child_id(p->c), "t.add", 10000, &r,
                                 "II", i, (int64_t)1);
        int64_t v = -1;
        int err = KIN_OK;
        if (!e)
            e = back ? kin_msg_unpack(r, "iI", &err, &v)
                     : kin_msg_unpack(r, "I", &v);
        kin_msg_destroy(&r);
        if (!e)
            e = err;
        if (!e && v != (back ? 42 : i + 1))
            e = KIN_EBADMSG;
        if (e) {
            p->first_error = e;
            break;
        }
        p->calls++;
    }
    return NULL;
}

static void
replies_read_by_their_callers_keep_the_order_of_others(void **state)
{
    kin_child *c = *state;
    kin_receiver *items;
    assert_int_equal(
        kin_receiver_new(&items, master, 0, KIN_POLICY_CHILD, kin_child_id(c)),
        KIN_OK);
    passer p = {.c = c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, passing_caller, &p), 0);
    int i = 0, round = 0;
    kin_err e = KIN_OK;
    for (; !e && round < PASS_ROUNDS; round++) {
        e = kin_call_nowait(master, kin_child_id(c), "t.stream", "uui",
                            kin_node_id(master), kin_receiver_handle(items),
                            PASS_ITEMS);
        for (i = 0; !e && i <= PASS_ITEMS; i++) {
            kin_msg *m;
            if ((e = kin_receiver_get(items, 10000, &m)))
                break;
            int v = -1;
            /* the items, then a nil end marker */
            e = i < PASS_ITEMS ? kin_msg_unpack(m, "i", &v)
                               : kin_msg_unpack(m, "n");
            kin_msg_destroy(&m);
            if (!e && i < PASS_ITEMS && v != i * i)
                e = KIN_EBADMSG;
        }
    }
    atomic_store(&p.done, true);
    pthread_join(t, NULL);
    if (e)
        print_error("round %d item %d: %s\n", round, i, kin_strerror(e));
    assert_int_equal(e, KIN_OK);
    assert_int_equal(p.first_error, KIN_OK);
    assert_true(p.calls > 0);
    kin_receiver_destroy(&items);
    print_message("%d x %d items in order beside %ld calls\n", PASS_ROUNDS,
                  PASS_ITEMS, p.calls);
}

/* A caller that read its reply off the socket and stops reading there
 * must leave the rest of what came to the broker: libzmq signals no new
 * input on a link whose queue was not read empty, so items that follow
 * the reply would otherwise wait until the next call. Each round starts a
 * stream of items (no reply), makes one call while they come, and then
 * expects every item without calling again. */
enum { UNREAD_ROUNDS = 200, UNREAD_ITEMS = 300 };

static void
a_reader_leaves_nothing_unread(void **state)
{
    kin_child *c = *state;
    kin_receiver *items;
    assert_int_equal(
        kin_receiver_new(&items, master, 0, KIN_POLICY_CHILD, kin_child_id(c)),
        KIN_OK);
    kin_err e = KIN_OK;
    int round = 0, i = 0;
    for (; !e && round < UNREAD_ROUNDS; round++) {
        e = kin_call_nowait(master, kin_child_id(c), "t.stream", "uui",
                            kin_node_id(master), kin_receiver_handle(items),
                            UNREAD_ITEMS);
        kin_msg *r = NULL;
        if (!e)
            e = kin_call_sync(master, kin_child_id(c), "t.add", 10000, &r, "II",
                              (int64_t)round, (int64_t)1);
        kin_msg_destroy(&r);
        for (i = 0; !e && i <= UNREAD_ITEMS; i++) {
            kin_msg *m;
            if (!(e = kin_receiver_get(items, 5000, &m)))
                kin_msg_destroy(&m);
        }
    }
    if (e)
        print_error("round %d item %d: %s\n", round, i, kin_strerror(e));
    assert_int_equal(e, KIN_OK);
    kin_receiver_destroy(&items);
}

/* A pool of one worker runs the calls of one caller in the order they
 * came, whoever read them off the socket: the idle worker itself, or the
 * broker while the worker ran one (an idle worker reads only while no
 * call is queued). Between them come inline calls, which a worker reading
 * the socket hands to the broker, and calls the caller waits for. */
enum { ORDER_CALLS = 4000 };

static void
a_pool_of_one_runs_calls_in_order(void **state)
{
    (void)state;
    kin_child *c;
    assert_int_equal(kin_spawn(master, &(kin_spawn_opts){.workers = 1}, &c),
                     KIN_OK);
    uint32_t id = kin_child_id(c);
    kin_err e = KIN_OK;
    int i = 0;
    for (; !e && i < ORDER_CALLS; i++) {
        e = kin_call_nowait(master, id, "t.record", "i", i);
        if (!e && i % 7 == 0)
            e = kin_call_nowait(master, id, "t.add_inline", "II", (int64_t)i,
                                (int64_t)1);
        if (!e && i % 101 == 0) {
            kin_msg *r = NULL;
            int64_t v = 0;
            e = kin_call_sync(master, id, "t.add", 10000, &r, "II", (int64_t)i,
                              (int64_t)1);
            if (!e)
                e = kin_msg_unpack(r, "I", &v);
            kin_msg_destroy(&r);
            if (!e && v != i + 1)
                e = KIN_EBADMSG;
        }
    }
    if (e)
        print_error("call %d: %s\n", i, kin_strerror(e));
    assert_int_equal(e, KIN_OK);
    /* t.records runs after every t.record when the order holds; it is
     * asked again until all are in, to tell a lost call from a late one. */
    int got = 0, wrong = -1;
    double t0 = harness_now_ms();
    while (!e && got < ORDER_CALLS && wrong < 0 &&
           harness_now_ms() - t0 < 20000) {
        kin_msg *r = NULL;
        e = kin_call_sync(master, id, "t.records", 10000, &r, NULL);
        if (!e)
            e = kin_msg_unpack(r, "ii", &got, &wrong);
        kin_msg_destroy(&r);
    }
    kin_child_destroy(&c);
    assert_int_equal(e, KIN_OK);
    assert_int_equal(wrong, -1);
    assert_int_equal(got, ORDER_CALLS);
}

int
main(void)
{
    export_all();
    harness_log_setup();
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(add_returns_the_sum, setup, teardown),
        cmocka_unit_test_setup_teardown(inline_functions_answer_from_the_broker,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(errors_are_told_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(remote_errors_say_where, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            a_thread_switching_nodes_is_one_task_in_each, setup, teardown),
        cmocka_unit_test_setup_teardown(nested_calls_follow_policy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(grandchild_is_routed_through_child,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(thousand_concurrent_calls_all_answered,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_callers_never_lose_a_wakeup,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(killed_callee_gives_peer_gone_quickly,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_then_late_reply_is_discarded,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_reaches_remote_task, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(fire_and_forget_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(
            task_sleep_is_a_cancellable_blocking_point, setup, teardown),
        cmocka_unit_test_setup_teardown(child_streams_results_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            replies_read_by_their_callers_keep_the_order_of_others, setup,
            teardown),
        cmocka_unit_test(a_pool_of_one_runs_calls_in_order),
        cmocka_unit_test_setup_teardown(a_reader_leaves_nothing_unread, setup,
                                        teardown),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
