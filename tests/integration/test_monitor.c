/* The monitor across real processes, through the kin command: the await
 * chain A -> B -> C across three contexts, a deadlock reported as a cycle,
 * where naming the blocking function and file:line, cancel plus
 * where-terminated, ps answering while every worker is busy, and the C API
 * for the same queries. The test binary is also the child program. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <kin/logs.h>
#include <kin/monitor.h>

#include "integration/harness.h"

static kin_node *master;

#define DEEP_HOPS 3000

/* --- served functions ------------------------------------------------------
 */

/* Blocks at a kin blocking point until cancelled (or 30 s). */
static kin_err
block(kin_call *c, void *arg)
{
    kin_latch *l;
    kin_latch_new(&l);
    kin_msg *m = NULL;
    kin_err e = kin_latch_get(l, 30000, &m); /* BLOCK_LINE */
    kin_latch_destroy(&l);
    return e;
}

/* chain(ids...): calls chain in the first id with the rest, or block. */
static kin_err
chain(kin_call *c, void *arg)
{
    uint32_t n = 0, ids[8];
    kin_err e = kin_call_args(c, "a", &n);
    for (uint32_t i = 0; !e && i < n && i < 8; i++)
        e = kin_call_args(c, "u", &ids[i]);
    if (e)
        return e;
    kin_msg *r = NULL;
    if (n == 1)
        e = kin_call_sync(kin_call_node(c), ids[0], "t.block", 30000, &r, NULL);
    else if (n == 2)
        e = kin_call_sync(kin_call_node(c), ids[0], "t.chain", 30000, &r, "au",
                          1, ids[1]);
    else
        e = kin_call_sync(kin_call_node(c), ids[0], "t.chain", 30000, &r, "auu",
                          2, ids[1], ids[2]);
    kin_msg_destroy(&r);
    return e;
}

/* Calls t.echo back in the caller: with one worker each, A -> B -> A. */
static kin_err
call_back(kin_call *c, void *arg)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(kin_call_node(c), kin_call_caller(c), "t.echo",
                              30000, &r, NULL);
    kin_msg_destroy(&r);
    return e;
}

static kin_err
ping_via(kin_call *c, void *arg)
{
    uint32_t peer;
    kin_err e = kin_call_args(c, "u", &peer);
    kin_msg *r = NULL;
    if (!e)
        e = kin_call_sync(kin_call_node(c), peer, "t.call_back", 30000, &r,
                          NULL);
    kin_msg_destroy(&r);
    return e;
}

static kin_err
echo(kin_call *c, void *arg)
{
    return KIN_OK;
}

/* ring(x, y, z): calls ring in x with (y, z, x), for ever: A -> B -> C ->
 * A ... until every pool is full and a call queues. */
static kin_err
ring(kin_call *c, void *arg)
{
    uint32_t x, y, z;
    kin_err e = kin_call_args(c, "uuu", &x, &y, &z);
    kin_msg *r = NULL;
    if (!e)
        e = kin_call_sync(kin_call_node(c), x, "t.ring", 30000, &r, "uuu", y, z,
                          x);
    kin_msg_destroy(&r);
    return e;
}

/* deep(n, x, y): calls deep(n - 1, y, x) in x; deep(0) blocks. */
static kin_err
deep(kin_call *c, void *arg)
{
    uint32_t n, x, y;
    kin_err e = kin_call_args(c, "uuu", &n, &x, &y);
    if (e)
        return e;
    if (!n)
        return block(c, arg);
    kin_msg *r = NULL;
    e = kin_call_sync(kin_call_node(c), x, "t.deep", 60000, &r, "uuu", n - 1, y,
                      x);
    kin_msg_destroy(&r);
    return e;
}

/* select8(x): 8 calls of t.block in x, waited for in one select. */
static kin_err
select8(kin_call *c, void *arg)
{
    uint32_t x;
    kin_err e = kin_call_args(c, "u", &x);
    kin_select *s = NULL;
    kin_receiver *r[8] = {NULL};
    if (!e)
        e = kin_select_new(&s, false);
    for (int i = 0; !e && i < 8; i++)
        if (!(e = kin_call_async(kin_call_node(c), x, "t.block", &r[i], NULL)))
            e = kin_select_add(s, kin_receiver_latch(r[i]), NULL);
    kin_msg *m = NULL;
    if (!e)
        e = kin_select_get(s, 30000, &m, NULL);
    kin_msg_destroy(&m);
    kin_select_destroy(&s);
    for (int i = 0; i < 8; i++) {
        if (r[i])
            kin_call_cancel(r[i]);
        kin_receiver_destroy(&r[i]);
    }
    return e;
}

/* grow(k): forks k children of this context (kept until it stops). */
#define GROW_MAX 64
static kin_child *grown[GROW_MAX];
static int n_grown;

static kin_err
grow(kin_call *c, void *arg)
{
    uint32_t k;
    kin_err e = kin_call_args(c, "u", &k);
    kin_spawn_opts o = {.fork = true, .workers = 1};
    for (uint32_t i = 0; !e && i < k && n_grown < GROW_MAX; i++)
        if (!(e = kin_spawn(kin_call_node(c), &o, &grown[n_grown])))
            n_grown++;
    return e;
}

/* --- helpers ------------------------------------------------------------- */

/* Runs `kin ARGS...` and returns its stdout (malloc'd) and exit status. */
static char *
run_kin(int *status, const char *fmt, ...)
{
    char args[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return harness_run(status, "%s %s", KIN_CLI, args);
}

/* Waits until `kin ps` shows at least want tasks running fn in ctx in
 * state (deadline 10 s). */
static void
wait_tasks(uint32_t ctx, const char *fn, const char *state, size_t want)
{
    double end = harness_now_ms() + 10000;
    for (;;) {
        kin_task_info *ts;
        size_t count, found = 0;
        if (kin_monitor_ps(master, ctx, fn, false, 2000, &ts, &count) ==
            KIN_OK) {
            for (size_t i = 0; i < count; i++)
                found += !strcmp(ts[i].fn, fn) &&
                         !strcmp(kin_task_state_name(ts[i].state), state);
            free(ts);
        }
        if (found >= want)
            return;
        if (harness_now_ms() > end)
            fail_msg("%zu of %zu %s tasks %s in ctx %u", found, want, state, fn,
                     ctx);
        usleep(5000);
    }
}

/* Waits (10 s at most) until ctx has a task running fn in state. */
static void
wait_task(uint32_t ctx, const char *fn, const char *state)
{
    wait_tasks(ctx, fn, state, 1);
}

/* The id of the one live task running fn in ctx. */
static uint32_t
task_id(uint32_t ctx, const char *fn)
{
    kin_task_info *ts;
    size_t count;
    assert_int_equal(kin_monitor_ps(master, ctx, fn, false, 2000, &ts, &count),
                     KIN_OK);
    uint32_t id = 0;
    for (size_t i = 0; i < count; i++)
        if (!strcmp(ts[i].fn, fn)) {
            assert_int_equal(id, 0);
            id = ts[i].id;
        }
    free(ts);
    if (!id)
        fail_msg("no task %s in ctx %u", fn, ctx);
    return id;
}

/* Removes the indentation of kin's JSON (every newline and the spaces
 * after it), so it can be matched as one line. */
static void
squeeze_json(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '\n') {
            while (r[1] == ' ')
                r++;
            continue;
        }
        *w++ = *r;
    }
    *w = 0;
}

typedef struct tree {
    kin_child *c[3];
} tree;

static int
spawn3(void **state)
{
    tree *t = calloc(1, sizeof *t);
    kin_spawn_opts o = {.workers = 1};
    for (int i = 0; i < 3; i++)
        if (kin_spawn(master, &o, &t->c[i]))
            return -1;
    *state = t;
    return 0;
}

static int
stop3(void **state)
{
    tree *t = *state;
    for (int i = 0; i < 3; i++)
        kin_child_destroy(&t->c[i]);
    free(t);
    return 0;
}

/* --- tests -----------------------------------------------------------------
 */

typedef struct caller {
    pthread_t thread;
    uint32_t a, b, c;
    kin_err result;
} caller;

/* An application thread blocked in a call: adopted as a task, it heads
 * the await chain in the master. */
static void *
call_chain(void *arg)
{
    caller *cl = arg;
    kin_msg *m = NULL;
    cl->result = kin_call_sync(master, cl->a, "t.chain", 30000, &m, "auu", 2,
                               cl->b, cl->c);
    kin_msg_destroy(&m);
    return NULL;
}

static void
pstree_shows_chain_across_three_processes(void **state)
{
    tree *t = *state;
    uint32_t a = kin_child_id(t->c[0]), b = kin_child_id(t->c[1]),
             c = kin_child_id(t->c[2]);
    caller cl = {.a = a, .b = b, .c = c};
    assert_int_equal(pthread_create(&cl.thread, NULL, call_chain, &cl), 0);
    wait_task(c, "t.block", "waiting");

    int st;
    char *out = run_kin(&st, "pstree %d", (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 0);
    /* One chain: main (master) -> t.chain (A) -> t.chain (B) -> t.block
     * (C), each on its own deeper line. */
    char want[4][64];
    snprintf(want[0], sizeof want[0], "0:%s", "");
    snprintf(want[1], sizeof want[1], "└── %u:", a);
    snprintf(want[2], sizeof want[2], "    └── %u:", b);
    snprintf(want[3], sizeof want[3], "        └── %u:", c);
    const char *p = out;
    for (int i = 0; i < 4; i++) {
        p = strstr(p, want[i]);
        if (!p)
            fail_msg("missing '%s' in order", want[i]);
    }
    assert_non_null(strstr(p, "t.block"));
    assert_non_null(strstr(p, "receiver"));
    free(out);

    /* The C API sees the same: C's task waits, called from B. */
    kin_task_info *ts;
    size_t count;
    assert_int_equal(
        kin_monitor_ps(master, c, "t.block", false, 2000, &ts, &count), KIN_OK);
    assert_int_equal(count, 1);
    assert_int_equal(ts[0].caller_ctx, b);
    assert_string_equal(ts[0].waiting, "receiver");
    uint32_t block_id = ts[0].id;
    free(ts);

    /* kin where names the function it blocks in, and the file:line where
     * the binary has debug info (not in Release or MinSizeRel builds). */
    out = run_kin(&st, "where %d %u:%u", (int)getpid(), c, block_id);
    print_message("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "kin_latch_get"));
    if (harness_has_debug_info(__FILE__)) {
        assert_non_null(strstr(out, "  block at "));
        assert_non_null(strstr(out, "test_monitor.c:"));
    } else {
        assert_non_null(strstr(out, "  block ("));
    }
    free(out);

    /* kin cancel ends it; where-terminated says it was cancelled and by
     * whom (the operator), and the whole chain unwinds. */
    out = run_kin(&st, "cancel %d %u:%u", (int)getpid(), c, block_id);
    assert_int_equal(st, 0);
    free(out);
    /* The cancel is a log record of C: what, whom, and which operator. */
    char rec[2][96];
    snprintf(rec[0], sizeof rec[0], "\"target_task\":%u", block_id);
    snprintf(rec[1], sizeof rec[1], "\"ctx\":%u", c);
    double end = harness_now_ms() + 10000;
    bool seen = false;
    while (!seen && harness_now_ms() < end) {
        out = run_kin(&st, "logs %d -c %u -n 200 --json", (int)getpid(), c);
        for (char *l = strtok(out, "\n"); l && !seen; l = strtok(NULL, "\n"))
            seen = strstr(l, "\"operator.cancel\"") && strstr(l, rec[0]) &&
                   strstr(l, rec[1]) && strstr(l, "\"operator_pid\":") &&
                   strstr(l, "\"operator_uid\":");
        if (!seen)
            print_message("%s", out);
        free(out);
    }
    assert_true(seen);
    pthread_join(cl.thread, NULL);
    /* The chain unwinds: C's cancellation comes back up as cancelled. */
    assert_int_equal(cl.result, KIN_ECANCELLED);
    out = run_kin(&st, "where-terminated %d %u:%u", (int)getpid(), c, block_id);
    print_message("%s", out);
    assert_int_equal(st, 0);
    /* The word once, and the operator named by pid and user. */
    assert_non_null(strstr(out, " cancelled "));
    assert_null(strstr(out, "cancelled cancelled"));
    assert_non_null(strstr(out, "by operator (pid "));
    assert_non_null(strstr(out, ", user "));
    assert_null(strstr(out, "2147"));
    free(out);
    out = run_kin(&st, "where-terminated %d %u:%u --json", (int)getpid(), c,
                  block_id);
    assert_int_equal(st, 0);
    squeeze_json(out);
    print_message("%s\n", out);
    char jwant[64];
    snprintf(jwant, sizeof jwant, "\"task\": {\"cancelled_by\": \"");
    assert_non_null(strstr(out, jwant));
    snprintf(jwant, sizeof jwant, "\"task\": \"%u:%u\"", c, block_id);
    assert_non_null(strstr(out, jwant));
    assert_non_null(strstr(out, "\"version\": 1}"));
    free(out);
}

static void
timeout_cancel_names_the_cancelling_task(void **state)
{
    tree *t = *state;
    uint32_t c = kin_child_id(t->c[2]);
    kin_msg *m = NULL;
    /* The master's own thread times out: its CANCEL names the master's
     * adopted task, which where-terminated then shows. */
    assert_int_equal(kin_call_sync(master, c, "t.block", 300, &m, NULL),
                     KIN_ETIMEOUT);
    kin_task_info *ts = NULL;
    size_t count = 0;
    double end = harness_now_ms() + 10000;
    const kin_task_info *done = NULL;
    while (!done && harness_now_ms() < end) {
        free(ts);
        ts = NULL;
        assert_int_equal(
            kin_monitor_ps_terminated(master, c, 2000, &ts, &count), KIN_OK);
        for (size_t i = 0; i < count; i++)
            if (!strcmp(ts[i].fn, "t.block") &&
                ts[i].state == KIN_TASK_CANCELLED)
                done = &ts[i];
        if (!done)
            usleep(5000);
    }
    assert_non_null(done);
    assert_int_equal(done->cancelled_by_ctx, 0);
    assert_true(done->cancelled_by_task != 0);
    char id[32];
    snprintf(id, sizeof id, "%u:%u", c, done->id);
    free(ts);
    int st;
    char *out = run_kin(&st, "where-terminated %d %s", (int)getpid(), id);
    print_message("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "cancelled by 0:"));
    assert_non_null(strstr(out, "main"));
    free(out);
}

static void
deadlock_is_reported_as_cycle(void **state)
{
    tree *t = *state;
    uint32_t a = kin_child_id(t->c[0]), b = kin_child_id(t->c[1]);
    /* A's only worker calls B, whose only worker calls back into A: the
     * call queues behind A's worker forever. */
    kin_receiver *r;
    assert_int_equal(kin_call_async(master, a, "t.ping_via", &r, "u", b),
                     KIN_OK);
    wait_task(a, "t.echo", "pending");
    int st;
    char *out = run_kin(&st, "pstree %d", (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 1);
    assert_non_null(strstr(out, "ERROR: await graph contains cycles"));
    char want[256];
    snprintf(want, sizeof want, "%u:", a);
    const char *cyc = strstr(out, "cycle: ");
    assert_non_null(cyc);
    assert_non_null(strstr(cyc, want));
    snprintf(want, sizeof want, "→ %u:", b);
    assert_non_null(strstr(cyc, want));
    assert_non_null(strstr(cyc, "t.ping_via"));
    assert_non_null(strstr(cyc, "t.call_back"));
    free(out);

    /* The JSON names the same cycle, task by task: A's t.ping_via awaits
     * B's t.call_back, which awaits A's t.echo, queued behind t.ping_via. */
    char lab[4][64];
    snprintf(lab[0], sizeof lab[0], "%u:%u t.ping_via", a,
             task_id(a, "t.ping_via"));
    snprintf(lab[1], sizeof lab[1], "%u:%u t.call_back", b,
             task_id(b, "t.call_back"));
    snprintf(lab[2], sizeof lab[2], "%u:%u t.echo", a, task_id(a, "t.echo"));
    snprintf(lab[3], sizeof lab[3], "pool of %u (1/1 workers busy, 1 queued)",
             a);
    out = run_kin(&st, "pstree %d --json", (int)getpid());
    assert_int_equal(st, 1);
    squeeze_json(out);
    print_message("%s\n", out);
    /* One cycle, starting wherever the walk met it first: A's pool waits
     * for the task holding its only worker. */
    bool found = false;
    for (int i = 0; i < 4 && !found; i++) {
        snprintf(want, sizeof want,
                 "\"cycles\": [[\"%s\",\"%s\",\"%s\",\"%s\"]],", lab[i],
                 lab[(i + 1) % 4], lab[(i + 2) % 4], lab[(i + 3) % 4]);
        found = strstr(out, want) != NULL;
    }
    if (!found)
        fail_msg("pstree --json lacks the cycle %s -> %s -> %s -> %s", lab[0],
                 lab[1], lab[2], lab[3]);
    free(out);
    /* The master's wait ends with a timeout; the children are torn down
     * by the fixture. */
    kin_call_cancel(r);
    kin_receiver_destroy(&r);
}

static void
ps_answers_while_every_worker_is_blocked(void **state)
{
    tree *t = *state;
    uint32_t c = kin_child_id(t->c[2]);
    kin_receiver *r;
    assert_int_equal(kin_call_async(master, c, "t.block", &r, NULL), KIN_OK);
    wait_task(c, "t.block", "waiting");
    int st;
    double t0 = harness_now_ms();
    char *out = run_kin(&st, "ps %d -c %u", (int)getpid(), c);
    double dt = harness_now_ms() - t0;
    print_message("%s(kin ps took %.1f ms)\n", out, dt);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "t.block"));
    assert_non_null(strstr(out, "waiting"));
    free(out);
    out = run_kin(&st, "ps %d --json", (int)getpid());
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "\"fn\": \"t.block\""));
    /* The list sits under "tasks", beside the shape's version. */
    assert_int_equal(out[0], '{');
    assert_non_null(strstr(out, "\"tasks\": ["));
    assert_non_null(strstr(out, "\n  \"version\": 1\n}"));
    free(out);
    /* Errors are clear and non-zero. */
    out = run_kin(&st, "ps 1");
    assert_int_equal(st, 2);
    free(out);
    out = run_kin(&st, "where %d 99:1", (int)getpid());
    assert_int_equal(st, 2);
    free(out);
    out = run_kin(&st, "where %d nonsense", (int)getpid());
    assert_int_equal(st, 2);
    free(out);
    kin_call_cancel(r);
    kin_msg *m = NULL;
    kin_call_wait(r, 10000, &m);
    kin_msg_destroy(&m);
    kin_receiver_destroy(&r);
}

/* Sends a MONITOR request packed with picture to the master itself; the
 * reply's "code" (0 for a reply without error) in *code. */
static kin_err
raw_request(int *code, const char *picture, ...)
{
    kin_buf req;
    kin_buf_init(&req);
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vpack(&req, picture, ap);
    va_end(ap);
    kin_msg *reply = NULL;
    if (!e)
        e = kin_monitor_request(master, KIN_MASTER_ID, &req, 10000, &reply);
    *code = 0;
    if (e == KIN_EREMOTE) {
        kin_reader rd;
        kin_reader_init(&rd, reply->body, reply->len);
        uint32_t pairs = 0;
        kin_err pe = kin_unpack(&rd, "M", &pairs);
        for (uint32_t i = 0; !pe && i < pairs; i++) {
            const char *k;
            size_t kl;
            if ((pe = kin_unpack(&rd, "S", &k, &kl)))
                break;
            if (kl == 4 && !memcmp(k, "code", 4))
                pe = kin_unpack(&rd, "i", code);
            else
                pe = kin_unpack(&rd, "?");
        }
        kin_reader_release(&rd);
    }
    kin_msg_destroy(&reply);
    kin_buf_release(&req);
    return e;
}

/* A command, key or value with a NUL inside is not its prefix: the request
 * is refused as malformed. */
static void
request_with_a_nul_inside_is_malformed(void **state)
{
    int code;
    assert_int_equal(raw_request(&code, "S", "ps", (size_t)2), KIN_OK);
    assert_int_equal(raw_request(&code, "S", "ps\0x", (size_t)4), KIN_EREMOTE);
    assert_int_equal(code, KIN_EBADMSG);
    assert_int_equal(raw_request(&code, "SMSs", "ps", (size_t)2, 1, "filter\0x",
                                 (size_t)8, "t."),
                     KIN_EREMOTE);
    assert_int_equal(code, KIN_EBADMSG);
    assert_int_equal(raw_request(&code, "SMsS", "ps", (size_t)2, 1, "filter",
                                 "t\0x", (size_t)3),
                     KIN_EREMOTE);
    assert_int_equal(code, KIN_EBADMSG);
}

/* The thread block of `kin stacktrace` output that starts with the
 * thread line containing name, or NULL. */
static const char *
thread_block(const char *out, const char *name)
{
    for (const char *p = out; (p = strstr(p, "thread ")); p++)
        if (p == out || p[-1] == '\n') {
            const char *eol = strchr(p, '\n');
            const char *hit = strstr(p, name);
            if (hit && (!eol || hit < eol))
                return p;
        }
    return NULL;
}

static void
stacktrace_shows_every_thread(void **state)
{
    tree *t = *state;
    uint32_t c = kin_child_id(t->c[2]);
    kin_receiver *r;
    assert_int_equal(kin_call_async(master, c, "t.block", &r, NULL), KIN_OK);
    wait_task(c, "t.block", "waiting");
    int st;
    double t0 = harness_now_ms();
    char *out = run_kin(&st, "stacktrace %d %u", (int)getpid(), c);
    print_message("%s(kin stacktrace took %.1f ms)\n", out,
                  harness_now_ms() - t0);
    assert_int_equal(st, 0);
    /* The broker thread shows its frames: it keeps routing while another
     * thread answers. */
    const char *b = thread_block(out, "(kin-broker)");
    assert_non_null(b);
    const char *next = thread_block(b + 1, "");
    const char *uv = strstr(b, "uv_run");
    assert_true(uv && (!next || uv < next));
    /* A worker that waits for work: the first frames are libc's futex
     * system call, not the signal trampoline ("#0 ??"), then kin's latch. */
    const char *w = thread_block(out, "(kin-worker)");
    assert_non_null(w);
    assert_non_null(strstr(w, "#0  syscall"));
    assert_non_null(strstr(w, "kin__futex_wait_until"));
    assert_non_null(strstr(w, "kin_latch_get"));
    /* The blocked call's worker, down to the served function. */
    assert_non_null(strstr(out, "block"));
    /* libzmq's threads say in one line why they have no frames. */
    const char *z = thread_block(out, "(ZMQbg/");
    assert_non_null(z);
    assert_non_null(strstr(z, "libzmq's own thread; blocks signal"));
    free(out);
    out = run_kin(&st, "stacktrace %d %u --json", (int)getpid(), c);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "\"unwound_not\": \"libzmq's own thread"));
    assert_non_null(strstr(out, "\"fn\": \"kin_latch_get\""));
    free(out);
    kin_call_cancel(r);
    kin_msg *m = NULL;
    kin_call_wait(r, 10000, &m);
    kin_msg_destroy(&m);
    kin_receiver_destroy(&r);
}

static kin_err
hello_cmd(const char *args, kin_buf *out, void *arg)
{
    return kin_buf_printf(out, "hello from the master (%s)", args);
}

/* Whether `kin tree` output has a row for a child of the master: two
 * spaces deep, its id, name, this host and its pid. */
static bool
has_child_row(const char *out, uint32_t id, const char *name, pid_t pid)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    for (const char *l = out; l && *l;
         l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        unsigned rid;
        char rname[64], rhost[64];
        int rpid;
        if (strncmp(l, "  ", 2) || l[2] == ' ' ||
            sscanf(l, "%u %63s %63s %d", &rid, rname, rhost, &rpid) != 4)
            continue;
        if (rid == id && !strcmp(rname, name) && !strncmp(rhost, host, 16) &&
            rpid == (int)pid)
            return true;
    }
    return false;
}

static void
tree_and_custom_commands(void **state)
{
    tree *t = *state;
    int st;
    char *out = run_kin(&st, "tree %d", (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 0);
    for (int i = 0; i < 3; i++)
        if (!has_child_row(out, kin_child_id(t->c[i]), kin_child_name(t->c[i]),
                           kin_child_pid(t->c[i])))
            fail_msg("kin tree has no row for child %u (%s, pid %d)",
                     kin_child_id(t->c[i]), kin_child_name(t->c[i]),
                     (int)kin_child_pid(t->c[i]));
    free(out);
    /* `kin ls` lists this master. */
    char want[64];
    out = run_kin(&st, "ls");
    snprintf(want, sizeof want, "%d", (int)getpid());
    assert_non_null(strstr(out, want));
    free(out);
    /* Every JSON shape carries its version at the top level; kin tree's
     * contexts name their parents (null for the master). */
    out = run_kin(&st, "tree %d --json", (int)getpid());
    assert_int_equal(st, 0);
    squeeze_json(out);
    print_message("%s\n", out);
    assert_non_null(strstr(out, "\"version\": 1}"));
    assert_non_null(strstr(out, "\"parent\": null"));
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want,
                 "\"id\": %u,\"name\": \"%s\",\"parent\": 0,",
                 kin_child_id(t->c[i]), kin_child_name(t->c[i]));
        if (!strstr(out, want))
            fail_msg("kin tree --json lacks %s", want);
    }
    free(out);
    out = run_kin(&st, "ls --json");
    assert_int_equal(st, 0);
    squeeze_json(out);
    assert_non_null(strstr(out, "{\"masters\": ["));
    assert_non_null(strstr(out, "\"version\": 1}"));
    free(out);
    /* The custom command runs in the master, with its arguments; help
     * lists it. */
    out = harness_run(&st, "printf 'hello big world\\nhelp\\n' | %s monitor %d",
                      KIN_CLI, (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "hello from the master (big world)\n"));
    assert_non_null(strstr(out, "says hello"));
    free(out);
    /* The custom command is a log record of the master, with its args. */
    double end = harness_now_ms() + 10000;
    bool seen = false;
    while (!seen && harness_now_ms() < end) {
        out = run_kin(&st, "logs %d -c 0 -n 200 --json", (int)getpid());
        seen = strstr(out, "\"command\":\"hello\",\"args\":\"big world\"");
        free(out);
    }
    assert_true(seen);
}

/* kin signal TERM ends the context's process and still reports success:
 * the answer may not leave before the signal ends its sender. */
static void
signal_term_is_success(void **state)
{
    tree *t = *state;
    int st;
    uint32_t id = kin_child_id(t->c[1]);
    char *out = run_kin(&st, "signal %d %u NOSUCH", (int)getpid(), id);
    assert_int_equal(st, 2);
    free(out);
    out = run_kin(&st, "signal %d %u TERM", (int)getpid(), id);
    print_message("%s", out);
    assert_int_equal(st, 0);
    char want[64];
    snprintf(want, sizeof want, "sent TERM to context %u", id);
    assert_non_null(strstr(out, want));
    free(out);
    int status = 0;
    assert_int_equal(kin_child_wait(t->c[1], 10000, &status), KIN_OK);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGTERM);
}

typedef struct five {
    kin_child *c[5];
} five;

static int
spawn5_named(void **state)
{
    five *t = calloc(1, sizeof *t);
    for (int i = 0; i < 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "a-rather-long-context-name-%d", i);
        kin_spawn_opts o = {.name = name, .workers = 1};
        if (kin_spawn(master, &o, &t->c[i]))
            return -1;
    }
    *state = t;
    return 0;
}

static int
stop5(void **state)
{
    five *t = *state;
    for (int i = 0; i < 5; i++)
        kin_child_destroy(&t->c[i]);
    free(t);
    return 0;
}

/* How many lines of out start with prefix. */
static int
count_lines(const char *out, const char *prefix)
{
    int n = 0;
    for (const char *l = out; l && *l;
         l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        n += !strncmp(l, prefix, strlen(prefix));
    return n;
}

/* kin ps prints whole names, kin tree lists children by id, and
 * ps-terminated shows 20 rows per context unless -n says otherwise. */
static void
ps_tree_and_ps_terminated_words(void **state)
{
    five *t = *state;
    kin_child *c = t->c[0];
    uint32_t id = kin_child_id(c);
    kin_receiver *r = NULL;
    assert_int_equal(kin_call_async(master, id, "t.block", &r, NULL), KIN_OK);
    wait_task(id, "t.block", "waiting");
    int st;
    char *out = run_kin(&st, "ps %d", (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, " a-rather-long-context-name-0 "));
    free(out);
    kin_call_cancel(r);
    kin_receiver_destroy(&r);

    out = run_kin(&st, "tree %d", (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 0);
    const char *p = out;
    uint32_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = kin_child_id(t->c[i]);
    for (int i = 0; i < 5; i++) /* the smallest id left comes next */
        for (int k = i + 1; k < 5; k++)
            if (ids[k] < ids[i]) {
                uint32_t x = ids[i];
                ids[i] = ids[k];
                ids[k] = x;
            }
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof want, "\n  %u a-rather-long", ids[i]);
        if (!(p = strstr(p, want)))
            fail_msg("kin tree: child %u out of id order", ids[i]);
        /* Long names do not push HOST out of its column. */
        const char *row = p + 1, *host = strstr(out, "HOST");
        char h[256] = "";
        gethostname(h, sizeof h - 1);
        h[16] = 0;
        assert_non_null(host);
        assert_memory_equal(row + (host - out), h, strlen(h));
    }
    free(out);

    for (int i = 0; i < 25; i++) {
        kin_msg *m = NULL;
        assert_int_equal(kin_call_sync(master, id, "t.echo", 10000, &m, NULL),
                         KIN_OK);
        kin_msg_destroy(&m);
    }
    char row[32];
    snprintf(row, sizeof row, "%u:", id);
    out = run_kin(&st, "ps-terminated %d -c %u", (int)getpid(), id);
    print_message("%s", out);
    assert_int_equal(st, 0);
    assert_int_equal(count_lines(out, row), 20);
    assert_non_null(strstr(out, "older in context"));
    free(out);
    out = run_kin(&st, "ps-terminated %d -c %u -n 3", (int)getpid(), id);
    assert_int_equal(count_lines(out, row), 3);
    free(out);
    out = run_kin(&st, "ps-terminated %d -c %u -n 0", (int)getpid(), id);
    assert_true(count_lines(out, row) >= 26); /* 25 echos, the block */
    assert_null(strstr(out, "older in context"));
    free(out);
    out = run_kin(&st, "ps-terminated %d -n many 2>&1", (int)getpid());
    assert_int_equal(st, 2);
    assert_non_null(strstr(out, "-n wants a count"));
    free(out);
}

/* A record logged by the master's main thread between kin calls names
 * the task ps shows for that thread, not "-". */
static void
main_thread_records_name_its_task(void **state)
{
    tree *t = *state;
    kin_msg *m = NULL;
    assert_int_equal(
        kin_call_sync(master, kin_child_id(t->c[0]), "t.echo", 10000, &m, NULL),
        KIN_OK);
    kin_msg_destroy(&m);
    KIN_LOGI("probe-main-task");
    kin_task_info *ts;
    size_t count;
    assert_int_equal(
        kin_monitor_ps(master, 0, "main", false, 2000, &ts, &count), KIN_OK);
    assert_int_equal(count, 1);
    char want[32];
    snprintf(want, sizeof want, "\"task\":%u,", ts[0].id);
    free(ts);
    double end = harness_now_ms() + 10000;
    char *line = NULL;
    while (!line && harness_now_ms() < end) {
        int st;
        char *out = run_kin(&st, "logs %d -c 0 -n 500 --json", (int)getpid());
        for (char *l = strtok(out, "\n"); l && !line; l = strtok(NULL, "\n"))
            if (strstr(l, "\"msg\":\"probe-main-task\""))
                line = strdup(l);
        free(out);
    }
    assert_non_null(line);
    print_message("%s\n", line);
    if (!strstr(line, want))
        fail_msg("the record lacks %s", want);
    free(line);
}

/* Three contexts with the default pool: a ring of calls fills every pool
 * and the next call queues. The pools are nodes of the graph, so the
 * deadlock is a cycle naming all three contexts, through the CLI and the
 * C API alike. */
static void
ring_deadlock_with_default_pools(void **state)
{
    tree *t = *state;
    uint32_t id[3];
    for (int i = 0; i < 3; i++)
        id[i] = kin_child_id(t->c[i]);
    kin_receiver *r;
    assert_int_equal(
        kin_call_async(master, id[0], "t.ring", &r, "uuu", id[1], id[2], id[0]),
        KIN_OK);
    wait_task(id[0], "t.ring", "pending");
    /* The first call queued in A does not close the ring yet: C's newest
     * t.ring may still be on its way to A. Wait until every task in the
     * ring waits (the graph's cycle), within a deadline. */
    double until = harness_now_ms() + 10000;
    for (;;) {
        kin_graph *g0 = NULL;
        size_t cycles = 0;
        if (kin_monitor_graph(master, KIN_NO_CTX, 3000, &g0) == KIN_OK)
            cycles = g0->n_cycles;
        kin_monitor_graph_destroy(&g0);
        if (cycles)
            break;
        if (harness_now_ms() > until)
            fail_msg("no deadlock cycle within 10 s");
        usleep(20000);
    }
    int st;
    char *out = run_kin(&st, "pstree %d", (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 1);
    const char *cyc = strstr(out, "cycle: ");
    assert_non_null(cyc);
    const char *eol = strchr(cyc, '\n');
    char want[64];
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, " %u:", id[i]);
        const char *p = strstr(cyc, want);
        if (!p || p > eol)
            fail_msg("the cycle does not name context %u", id[i]);
    }
    snprintf(want, sizeof want, "pool of %u (4/4 workers busy", id[0]);
    const char *p = strstr(cyc, want);
    assert_true(p && p < eol);
    free(out);

    /* The C API finds the same cycle. */
    kin_graph *g;
    assert_int_equal(kin_monitor_graph(master, KIN_NO_CTX, 3000, &g), KIN_OK);
    assert_int_equal(g->n_cycles, 1);
    bool seen[3] = {false}, pool = false;
    for (size_t k = g->cycle_start[0]; k < g->cycle_start[1]; k++) {
        const kin_graph_node *v = &g->nodes[g->cycle_nodes[k]];
        assert_true(v->deadlocked);
        pool |= v->kind == KIN_GRAPH_POOL && v->ctx == id[0];
        for (int i = 0; i < 3; i++)
            seen[i] |= v->ctx == id[i];
    }
    assert_true(pool && seen[0] && seen[1] && seen[2]);
    kin_monitor_graph_destroy(&g);
    kin_call_cancel(r);
    kin_receiver_destroy(&r);
}

/* A task waiting in a select over 8 calls has an edge to each; the calls
 * beyond the 4 workers queue: "pool exhausted", but no cycle. */
static void
select_over_eight_calls_has_eight_edges(void **state)
{
    tree *t = *state;
    uint32_t a = kin_child_id(t->c[0]), b = kin_child_id(t->c[1]);
    kin_receiver *r;
    assert_int_equal(kin_call_async(master, b, "t.select8", &r, "u", a),
                     KIN_OK);
    /* All 8 calls arrived and every worker holds one: a task only queued
     * (a worker not yet woken for it) has no pool edge. */
    wait_tasks(a, "t.block", "waiting", 4);
    wait_tasks(a, "t.block", "pending", 4);
    wait_task(b, "t.select8", "waiting");
    int st;
    char *out = run_kin(&st, "pstree %d --json", (int)getpid());
    assert_int_equal(st, 0);
    squeeze_json(out);
    const char *p = strstr(out, "\"await_calls\": 8");
    assert_non_null(p);
    p = strstr(p, "\"awaits_all\": [");
    assert_non_null(p);
    int edges = 1;
    for (p += 15; *p && *p != ']'; p++)
        edges += *p == ',';
    assert_int_equal(edges, 8);
    free(out);
    out = run_kin(&st, "pstree %d", (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "select over 8 calls"));
    assert_non_null(strstr(out, "queued: pool exhausted (4/4 workers busy)"));
    free(out);
    kin_call_cancel(r);
    kin_msg *m = NULL;
    kin_call_wait(r, 10000, &m);
    kin_msg_destroy(&m);
    kin_receiver_destroy(&r);
}

static void *
call_deep(void *arg)
{
    caller *cl = arg;
    kin_msg *m = NULL;
    cl->result = kin_call_sync(master, cl->a, "t.deep", 120000, &m, "uuu",
                               DEEP_HOPS - 1, cl->b, cl->a);
    kin_msg_destroy(&m);
    return NULL;
}

/* A chain of 3,000 calls between two contexts: --json lists every hop,
 * the text folds the repeating pair and counts what it folds. */
static void
deep_chain_loses_no_hop(void **state)
{
    tree *t = *state;
    caller cl = {.a = kin_child_id(t->c[0]), .b = kin_child_id(t->c[1])};
    assert_int_equal(pthread_create(&cl.thread, NULL, call_deep, &cl), 0);
    double end = harness_now_ms() + 120000;
    bool ready = false;
    while (!ready && harness_now_ms() < end) {
        size_t total = 0;
        for (int c = 0; c < 2; c++) {
            kin_task_info *ts;
            size_t count;
            if (kin_monitor_ps(master, c ? cl.b : cl.a, "t.deep", false, 2000,
                               &ts, &count) == KIN_OK) {
                total += count;
                free(ts);
            }
        }
        ready = total == DEEP_HOPS;
        if (!ready)
            usleep(20000);
    }
    assert_true(ready);
    int st;
    char *out = run_kin(&st, "pstree %d --json", (int)getpid());
    assert_int_equal(st, 0);
    int hops = 0;
    for (const char *p = out; (p = strstr(p, "\"fn\": \"t.deep\"")); p++)
        hops++;
    assert_int_equal(hops, DEEP_HOPS);
    /* In one tree: the caller at depth 0, the last hop at depth 3000. */
    char want[32];
    snprintf(want, sizeof want, "\"depth\": %d,", DEEP_HOPS);
    assert_non_null(strstr(out, want));
    free(out);
    out = run_kin(&st, "pstree %d", (int)getpid());
    assert_int_equal(st, 0);
    int lines = 0, folded = 0, nfold = 0;
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
        size_t more, n;
        const char *f = strstr(l, "above repeated ");
        if (f && sscanf(f, "above repeated %zu more times: %zu hops", &more,
                        &n) == 2) {
            print_message("%s\n", l);
            folded += (int)n;
            nfold++;
        } else if (strstr(l, " t.deep [")) {
            lines++;
        }
    }
    print_message("%d lines, %d hops folded\n", lines, folded);
    assert_true(nfold >= 1);
    assert_true(lines < 40);
    assert_int_equal(lines + folded, DEEP_HOPS);
    free(out);
    /* Cancelling the calling thread's task unwinds the whole chain. */
    kin_task_info *ts;
    size_t count;
    assert_int_equal(kin_monitor_ps(master, 0, NULL, false, 2000, &ts, &count),
                     KIN_OK);
    for (size_t i = 0; i < count; i++)
        if (ts[i].await_ctx == cl.a)
            kin_monitor_cancel(master, 0, ts[i].id, 2000);
    free(ts);
    pthread_join(cl.thread, NULL);
}

static int
spawn3_default(void **state)
{
    tree *t = calloc(1, sizeof *t);
    kin_spawn_opts o = {0};
    for (int i = 0; i < 3; i++)
        if (kin_spawn(master, &o, &t->c[i]))
            return -1;
    *state = t;
    return 0;
}

static int
spawn2_deep(void **state)
{
    tree *t = calloc(1, sizeof *t);
    kin_spawn_opts o = {.workers = DEEP_HOPS / 2 + 1};
    for (int i = 0; i < 2; i++)
        if (kin_spawn(master, &o, &t->c[i]))
            return -1;
    *state = t;
    return 0;
}

/* More contexts on one level than the monitor keeps requests in flight
 * (KIN__MONITOR_WINDOW, 128): 3 forked children with 45 forked children
 * each. kin_monitor_contexts lists all 139 once each, breadth first, under
 * the right parents; kin_monitor_graph puts each context's tasks under it
 * (a call blocked in the very last grandchild); `kin tree` has a row for
 * every one. */
#define WIDE_KIDS 45

static int
spawn3_forked(void **state)
{
    tree *t = calloc(1, sizeof *t);
    kin_spawn_opts o = {.fork = true};
    for (int i = 0; i < 3; i++)
        if (kin_spawn(master, &o, &t->c[i]))
            return -1;
    *state = t;
    return 0;
}

static void
wide_tree_is_listed_whole(void **state)
{
    tree *t = *state;
    kin_receiver *r[3] = {NULL};
    for (int i = 0; i < 3; i++)
        assert_int_equal(kin_call_async(master, kin_child_id(t->c[i]), "t.grow",
                                        &r[i], "u", WIDE_KIDS),
                         KIN_OK);
    for (int i = 0; i < 3; i++) {
        kin_msg *m = NULL;
        assert_int_equal(kin_receiver_get(r[i], 60000, &m), KIN_OK);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&r[i]);
    }
    /* The oracle: each child's own list of children, asked one by one. */
    uint32_t kids[3][WIDE_KIDS];
    for (int i = 0; i < 3; i++) {
        kin_ctx_info ci;
        assert_int_equal(
            kin_monitor_info(master, kin_child_id(t->c[i]), 5000, &ci), KIN_OK);
        assert_int_equal(ci.n_children, WIDE_KIDS);
        memcpy(kids[i], ci.children, sizeof kids[i]);
    }
    uint32_t last = kids[2][WIDE_KIDS - 1];
    kin_receiver *blocked = NULL;
    assert_int_equal(kin_call_async(master, last, "t.block", &blocked, NULL),
                     KIN_OK);
    wait_task(last, "t.block", "waiting");

    kin_ctx_info *all;
    size_t count;
    assert_int_equal(kin_monitor_contexts(master, 10000, &all, &count), KIN_OK);
    assert_int_equal(count, 1 + 3 + 3 * WIDE_KIDS);
    assert_int_equal(all[0].id, KIN_MASTER_ID);
    for (size_t k = 1; k < count; k++) {
        for (size_t j = 0; j < k; j++)
            if (all[j].id == all[k].id)
                fail_msg("context %u listed twice", all[k].id);
        bool found = false;
        if (k <= 3) { /* the first level first */
            assert_int_equal(all[k].parent, KIN_MASTER_ID);
            for (int i = 0; i < 3; i++)
                found |= all[k].id == kin_child_id(t->c[i]);
        } else {
            for (int i = 0; i < 3; i++)
                for (int c = 0; c < WIDE_KIDS; c++)
                    found |= all[k].id == kids[i][c] &&
                             all[k].parent == kin_child_id(t->c[i]);
        }
        if (!found)
            fail_msg("context %u under %u is not in the tree there", all[k].id,
                     all[k].parent);
    }
    free(all);

    kin_graph *g = NULL;
    assert_int_equal(kin_monitor_graph(master, KIN_NO_CTX, 10000, &g), KIN_OK);
    assert_int_equal(g->n_ctxs, 1 + 3 + 3 * WIDE_KIDS);
    bool seen = false;
    for (size_t i = 0; i < g->n_ctxs; i++)
        assert_int_equal(g->ctx_errors[i], KIN_OK);
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].kind != KIN_GRAPH_TASK)
            continue;
        assert_int_equal(g->nodes[i].ctx, g->ctxs[g->nodes[i].ctx_index].id);
        assert_int_equal(g->nodes[i].task.ctx, g->nodes[i].ctx);
        seen |=
            g->nodes[i].ctx == last && !strcmp(g->nodes[i].task.fn, "t.block");
    }
    kin_monitor_graph_destroy(&g);
    if (!seen)
        fail_msg("the graph lacks t.block in context %u", last);

    int st;
    char *out = run_kin(&st, "tree %d", (int)getpid());
    assert_int_equal(st, 0);
    size_t lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    free(out);
    assert_int_equal(lines, 1 + 1 + 3 + 3 * WIDE_KIDS); /* header, rows */
    kin_call_cancel(blocked);
    kin_receiver_destroy(&blocked);
}

int
main(void)
{
    kin_export("t.block", block, NULL, KIN_POLICY_ANY);
    kin_export("t.chain", chain, NULL, KIN_POLICY_ANY);
    kin_export("t.call_back", call_back, NULL, KIN_POLICY_ANY);
    kin_export("t.ping_via", ping_via, NULL, KIN_POLICY_ANY);
    kin_export("t.echo", echo, NULL, KIN_POLICY_ANY);
    kin_export("t.ring", ring, NULL, KIN_POLICY_ANY);
    kin_export("t.deep", deep, NULL, KIN_POLICY_ANY);
    kin_export("t.select8", select8, NULL, KIN_POLICY_ANY);
    kin_export("t.grow", grow, NULL, KIN_POLICY_ANY);
    harness_log_setup();
    if (kin_init(&master, NULL)) {
        fprintf(stderr, "kin_init failed\n");
        return 1;
    }
    kin_monitor_command(master, "hello", "says hello", hello_cmd, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            pstree_shows_chain_across_three_processes, spawn3, stop3),
        cmocka_unit_test_setup_teardown(
            timeout_cancel_names_the_cancelling_task, spawn3, stop3),
        cmocka_unit_test_setup_teardown(deadlock_is_reported_as_cycle, spawn3,
                                        stop3),
        cmocka_unit_test_setup_teardown(
            ps_answers_while_every_worker_is_blocked, spawn3, stop3),
        cmocka_unit_test_setup_teardown(stacktrace_shows_every_thread, spawn3,
                                        stop3),
        cmocka_unit_test_setup_teardown(tree_and_custom_commands, spawn3,
                                        stop3),
        cmocka_unit_test_setup_teardown(signal_term_is_success, spawn3, stop3),
        cmocka_unit_test_setup_teardown(main_thread_records_name_its_task,
                                        spawn3, stop3),
        cmocka_unit_test_setup_teardown(ps_tree_and_ps_terminated_words,
                                        spawn5_named, stop5),
        cmocka_unit_test_setup_teardown(ring_deadlock_with_default_pools,
                                        spawn3_default, stop3),
        cmocka_unit_test_setup_teardown(select_over_eight_calls_has_eight_edges,
                                        spawn3_default, stop3),
        cmocka_unit_test_setup_teardown(deep_chain_loses_no_hop, spawn2_deep,
                                        stop3),
        cmocka_unit_test_setup_teardown(wide_tree_is_listed_whole,
                                        spawn3_forked, stop3),
        cmocka_unit_test(request_with_a_nul_inside_is_malformed),
    };
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
