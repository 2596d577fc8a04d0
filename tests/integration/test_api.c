/* The public functions no other test calls, each used the way its header
 * says: tasks spawned by the application, calls read and answered with
 * msgpack-c, an inline function called from its own context, the payload
 * limit at exactly its size, a script without #!, supervisor snapshots and
 * state names, a child's stderr tail, node names and ids, log records
 * emitted by hand under a level floor into a sink, and raw monitor
 * requests. The binary is also the child program. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <kin/logs.h>
#include <kin/monitor.h>
#include <kin/supervisor.h>

#include "integration/harness.h"

#define CALL_MS 60000
#define DEADLINE_MS 15000
#define BIG ((size_t)KIN_MAX_MSG_DEFAULT)

static kin_node *master;

/* --- functions served by every context ------------------------------------ */

/* The length of its one bin argument. */
static kin_err
len_fn(kin_call *c, void *arg)
{
    const void *p;
    size_t len;
    kin_err e = kin_call_args(c, "B", &p, &len);
    return e ? e : kin_call_return(c, "U", (uint64_t)len);
}

/* Returns a bin of the size asked for. */
static kin_err
make_fn(kin_call *c, void *arg)
{
    uint64_t len;
    kin_err e = kin_call_args(c, "U", &len);
    if (e)
        return e;
    char *p = calloc(1, len ? len : 1);
    if (!p)
        return -ENOMEM;
    e = kin_call_return(c, "B", p, (size_t)len);
    free(p);
    return e;
}

/* The serving context's name and id. */
static kin_err
name_fn(kin_call *c, void *arg)
{
    kin_node *n = kin_call_node(c);
    return kin_call_return(c, "su", kin_node_name(n), kin_node_id(n));
}

/* Sums an array of integers read with msgpack-c through kin_call_reader and
 * packs [sum, count] and "done" with msgpack-c into kin_call_result. */
static kin_err
reader_fn(kin_call *c, void *arg)
{
    kin_reader *r = kin_call_reader(c);
    msgpack_object o;
    kin_err e = kin_reader_next(r, &o);
    if (e)
        return e;
    if (o.type != MSGPACK_OBJECT_ARRAY)
        return kin_call_fail(c, KIN_ETYPE, "want an array");
    int64_t sum = 0;
    for (uint32_t i = 0; i < o.via.array.size; i++) {
        const msgpack_object *x = &o.via.array.ptr[i];
        if (x->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
            x->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return kin_call_fail(c, KIN_ETYPE, "item %u is no integer", i);
        sum += x->via.i64;
    }
    if (!kin_reader_done(r))
        return kin_call_fail(c, -EINVAL, "more than one argument");
    msgpack_packer pk;
    kin_buf_packer(kin_call_result(c), &pk);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int64(&pk, sum);
    msgpack_pack_uint32(&pk, o.via.array.size);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "done", 4);
    return KIN_OK;
}

/* Writes its argument and a newline to stderr. */
static kin_err
stderr_fn(kin_call *c, void *arg)
{
    char *text = NULL;
    kin_err e = kin_call_args(c, "s", &text);
    if (e)
        return e;
    fprintf(stderr, "%s\n", text);
    fflush(stderr);
    free(text);
    return KIN_OK;
}

/* The thread the last call of thread_fn / thread_inline_fn ran on. */
static pthread_t ran_on;

static kin_err
thread_fn(kin_call *c, void *arg)
{
    ran_on = pthread_self();
    return KIN_OK;
}

static void
export_all(void)
{
    kin_export("a.len", len_fn, NULL, KIN_POLICY_PARENT);
    kin_export("a.make", make_fn, NULL, KIN_POLICY_PARENT);
    kin_export("a.name", name_fn, NULL, KIN_POLICY_PARENT);
    kin_export("a.reader", reader_fn, NULL, KIN_POLICY_PARENT);
    kin_export("a.stderr", stderr_fn, NULL, KIN_POLICY_PARENT);
    kin_export("a.thread", thread_fn, NULL, KIN_POLICY_PARENT);
    kin_export_inline("a.thread_inline", thread_fn, NULL, KIN_POLICY_PARENT);
}

/* --- helpers -------------------------------------------------------------- */

static int
setup(void **state)
{
    kin_spawn_opts o = {.name = "kid"};
    kin_child *c;
    kin_err e = kin_spawn(master, &o, &c);
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
nap_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

/* Calls a.len in ctx with a bin of len bytes. */
static kin_err
call_len(uint32_t ctx, const void *p, size_t len, uint64_t *got)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(master, ctx, "a.len", CALL_MS, &r, "B", p, len);
    if (!e)
        e = kin_msg_unpack(r, "U", got);
    else
        assert_null(r);
    kin_msg_destroy(&r);
    return e;
}

/* --- tasks spawned by the application ------------------------------------- */

typedef struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ran;
    uint32_t self_id; /* kin_task_id(kin_task_self()) inside */
    pthread_t thread;
    kin_err result; /* what the task returns */
    bool sleep;     /* sleep until cancelled instead */
    kin_err slept;  /* what kin_task_sleep returned */
} job;

static kin_err
job_fn(void *arg)
{
    job *j = arg;
    kin_task *t = kin_task_self();
    pthread_mutex_lock(&j->mu);
    j->self_id = t ? kin_task_id(t) : 0;
    j->thread = pthread_self();
    j->ran = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (j->sleep) {
        kin_err e = kin_task_sleep(KIN_FOREVER);
        j->slept = e;
        return e;
    }
    return j->result;
}

static void
job_init(job *j, kin_err result, bool sleep)
{
    memset(j, 0, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->result = result;
    j->sleep = sleep;
}

static void
job_wait_ran(job *j)
{
    double end = harness_now_ms() + DEADLINE_MS;
    pthread_mutex_lock(&j->mu);
    while (!j->ran && harness_now_ms() < end) {
        pthread_mutex_unlock(&j->mu);
        nap_ms(2);
        pthread_mutex_lock(&j->mu);
    }
    bool ran = j->ran;
    pthread_mutex_unlock(&j->mu);
    assert_true(ran);
}

static void
job_fini(job *j)
{
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
}

/* Waits until task id of the master is in its termination history and
 * returns its record. */
static kin_task_info
terminated(uint32_t id)
{
    double end = harness_now_ms() + DEADLINE_MS;
    for (;;) {
        kin_task_info *tasks = NULL;
        size_t count = 0;
        assert_int_equal(kin_monitor_ps_terminated(master, KIN_MASTER_ID, 5000,
                                                   &tasks, &count),
                         KIN_OK);
        for (size_t i = 0; i < count; i++)
            if (tasks[i].id == id) {
                kin_task_info t = tasks[i];
                free(tasks);
                return t;
            }
        free(tasks);
        assert_true(harness_now_ms() < end);
        nap_ms(5);
    }
}

static void
task_spawn_runs_fn_as_a_task_on_the_pool(void **state)
{
    job ok, bad;
    job_init(&ok, KIN_OK, false);
    job_init(&bad, -EDOM, false);
    kin_task_opts o = {.name = "a.job"};
    uint32_t id_ok = 0, id_bad = 0;
    assert_int_equal(kin_task_spawn(master, &o, job_fn, &ok, &id_ok), KIN_OK);
    assert_int_equal(kin_task_spawn(master, NULL, job_fn, &bad, &id_bad),
                     KIN_OK);
    assert_true(id_ok != 0 && id_bad != 0 && id_ok != id_bad);
    job_wait_ran(&ok);
    job_wait_ran(&bad);
    /* It ran as the task whose id it was given, on a worker. */
    assert_int_equal(ok.self_id, id_ok);
    assert_int_equal(bad.self_id, id_bad);
    assert_false(pthread_equal(ok.thread, pthread_self()));

    /* Its return value decides how it ended. */
    kin_task_info t = terminated(id_ok);
    assert_string_equal(t.name, "a.job");
    assert_int_equal(t.state, KIN_TASK_DONE);
    assert_int_equal(t.result, KIN_OK);
    t = terminated(id_bad);
    assert_string_equal(t.name, "task"); /* the default name */
    assert_int_equal(t.state, KIN_TASK_FAILED);
    assert_int_equal(t.result, -EDOM);

    /* id is optional; fn is not. */
    job none;
    job_init(&none, KIN_OK, false);
    assert_int_equal(kin_task_spawn(master, NULL, job_fn, &none, NULL), KIN_OK);
    job_wait_ran(&none);
    assert_int_equal(kin_task_spawn(master, NULL, NULL, NULL, &id_ok), -EINVAL);
    job_fini(&ok);
    job_fini(&bad);
    job_fini(&none);
}

/* A spawned task shows in ps with where it was created and what it waits
 * on, persistent ones are found by the persistent filter, and cancelling
 * it wakes its kin_task_sleep with KIN_ECANCELLED. */
static void
spawned_task_is_seen_and_cancelled_by_the_monitor(void **state)
{
    job j;
    job_init(&j, KIN_OK, true);
    kin_task_opts o = {.name = "a.sleeper", .persistent = true};
    uint32_t id = 0;
    int line = __LINE__ + 1;
    assert_int_equal(kin_task_spawn(master, &o, job_fn, &j, &id), KIN_OK);
    job_wait_ran(&j);

    char where[64];
    snprintf(where, sizeof where, "test_api.c:%d", line);
    double end = harness_now_ms() + DEADLINE_MS;
    kin_task_info found = {0};
    for (;;) {
        kin_task_info *tasks = NULL;
        size_t count = 0;
        assert_int_equal(kin_monitor_ps(master, KIN_MASTER_ID, NULL, true, 5000,
                                        &tasks, &count),
                         KIN_OK);
        for (size_t i = 0; i < count; i++)
            if (tasks[i].id == id)
                found = tasks[i];
        free(tasks);
        if (found.id == id && !strcmp(found.waiting, "sleep"))
            break;
        assert_true(harness_now_ms() < end);
        nap_ms(5);
    }
    assert_string_equal(found.name, "a.sleeper");
    assert_true(found.persistent);
    assert_int_equal(found.state, KIN_TASK_WAITING);
    size_t cl = strlen(found.created_at), wl = strlen(where);
    assert_true(cl >= wl);
    assert_string_equal(found.created_at + cl - wl, where);

    assert_int_equal(kin_monitor_cancel(master, KIN_MASTER_ID, id, 5000),
                     KIN_OK);
    kin_task_info t = terminated(id);
    assert_int_equal(t.state, KIN_TASK_CANCELLED);
    assert_int_equal(t.cancelled_by_ctx, KIN_MASTER_ID);
    assert_int_equal(j.slept, KIN_ECANCELLED);
    /* It is gone from the live tasks. */
    assert_int_equal(kin_monitor_cancel(master, KIN_MASTER_ID, id, 5000),
                     -ENOENT);
    job_fini(&j);
}

static void
state_names_are_fixed(void **state)
{
    static const char *const task[] = {"pending", "running", "waiting",
                                       "done",    "failed",  "cancelled"};
    for (int s = KIN_TASK_PENDING; s <= KIN_TASK_CANCELLED; s++)
        assert_string_equal(kin_task_state_name((kin_task_state)s), task[s]);
    assert_string_equal(kin_task_state_name((kin_task_state)99), "?");

    static const char *const sup[] = {"idle", "running", "stopped", "gave-up",
                                      "emergency"};
    for (int s = KIN_SUP_IDLE; s <= KIN_SUP_EMERGENCY; s++)
        assert_string_equal(kin_supervisor_state_name((kin_supervisor_state)s),
                            sup[s]);
    assert_string_equal(kin_supervisor_state_name((kin_supervisor_state)99),
                        "unknown");

    static const char *const child[] = {"idle", "running", "restarting",
                                        "exited", "stopped"};
    for (int s = KIN_CHILD_IDLE; s <= KIN_CHILD_STOPPED; s++)
        assert_string_equal(kin_child_state_name((kin_child_state)s), child[s]);
    assert_string_equal(kin_child_state_name((kin_child_state)99), "unknown");

    static const char *const kind[] = {"log", "dropped", "stdout", "stderr",
                                       "gap"};
    for (int k = KIN_LOGREC_LOG; k <= KIN_LOGREC_GAP; k++)
        assert_string_equal(kin_logrec_kind_name((kin_logrec_kind)k), kind[k]);
    assert_string_equal(kin_logrec_kind_name((kin_logrec_kind)99), "?");
}

/* --- calls ---------------------------------------------------------------- */

static void
reader_and_result_serve_msgpack_c_users(void **state)
{
    kin_child *c = *state;
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "a.reader", 5000,
                                   &r, "aIII", 3u, (int64_t)40, (int64_t)-5,
                                   (int64_t)7),
                     KIN_OK);
    uint32_t n = 0, count = 0;
    int64_t sum = 0;
    const char *word;
    size_t word_len;
    assert_int_equal(
        kin_msg_unpack(r, "aIuS", &n, &sum, &count, &word, &word_len), KIN_OK);
    assert_int_equal(n, 2);
    assert_int_equal(sum, 42);
    assert_int_equal(count, 3);
    assert_int_equal(word_len, 4);
    assert_memory_equal(word, "done", 4);
    kin_msg_destroy(&r);

    /* What the reader sees is what was sent: two arguments are refused. */
    assert_int_equal(kin_call_sync(master, kin_child_id(c), "a.reader", 5000,
                                   &r, "ai", 0u, 1),
                     KIN_EREMOTE);
    kin_remote_error err;
    assert_int_equal(kin_call_error(r, &err), KIN_OK);
    assert_int_equal(err.code, -EINVAL);
    assert_string_equal(err.message, "more than one argument");
    kin_msg_destroy(&r);
}

typedef struct self_call {
    const char *fn;
    pthread_t caller;
    kin_err e;
} self_call;

static void *
self_call_main(void *arg)
{
    self_call *s = arg;
    s->caller = pthread_self();
    kin_msg *r = NULL;
    s->e = kin_call_sync(master, KIN_MASTER_ID, s->fn, 5000, &r, NULL);
    kin_msg_destroy(&r);
    return NULL;
}

/* Called from its own context, an inline function runs on the calling
 * thread (whichever it is); a pool function runs on a worker. */
static void
own_inline_function_runs_on_the_calling_thread(void **state)
{
    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(master, KIN_MASTER_ID, "a.thread_inline", 5000, &r, NULL),
        KIN_OK);
    kin_msg_destroy(&r);
    assert_true(pthread_equal(ran_on, pthread_self()));

    self_call s = {.fn = "a.thread_inline"};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, self_call_main, &s), 0);
    pthread_join(th, NULL);
    assert_int_equal(s.e, KIN_OK);
    assert_true(pthread_equal(ran_on, s.caller));
    assert_false(pthread_equal(ran_on, pthread_self()));

    assert_int_equal(
        kin_call_sync(master, KIN_MASTER_ID, "a.thread", 5000, &r, NULL),
        KIN_OK);
    kin_msg_destroy(&r);
    assert_false(pthread_equal(ran_on, pthread_self()));
}

/* The limit is on the payload: an argument of exactly KIN_MAX_MSG_DEFAULT
 * bytes goes through (the call's name and msgpack headers come on top), one
 * byte more fails at once, and the tree goes on working. Results the same. */
static void
payload_of_exactly_the_limit_passes(void **state)
{
    kin_child *c = *state;
    uint32_t kid = kin_child_id(c);
    char *big = malloc(BIG + 1);
    assert_non_null(big);
    memset(big, 0x5A, BIG + 1);
    uint64_t got = 0;
    assert_int_equal(call_len(kid, big, BIG, &got), KIN_OK);
    assert_int_equal(got, BIG);
    assert_int_equal(call_len(kid, big, BIG + 1, &got), KIN_ETOOBIG);
    free(big);
    assert_int_equal(call_len(kid, "abc", 3, &got), KIN_OK);
    assert_int_equal(got, 3);

    /* Results: the child packs them, its send applies the same rule. */
    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(master, kid, "a.make", CALL_MS, &r, "U", (uint64_t)BIG),
        KIN_OK);
    const void *p;
    size_t len = 0;
    assert_int_equal(kin_msg_unpack(r, "B", &p, &len), KIN_OK);
    assert_int_equal(len, BIG);
    kin_msg_destroy(&r);
    assert_int_equal(kin_call_sync(master, kid, "a.make", CALL_MS, &r, "U",
                                   (uint64_t)BIG + 1),
                     KIN_ETOOBIG);
    assert_null(r);
    assert_int_equal(call_len(kid, "abcd", 4, &got), KIN_OK);
    assert_int_equal(got, 4);
}

/* --- processes ------------------------------------------------------------ */

/* Writes an executable file holding text; returns its path (static). */
static const char *
script(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/kin-api-script-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, 0755), 0);
    close(fd);
    return path;
}

static void
text_file_without_shebang_is_enoexec(void **state)
{
    const char *path = script("echo this is no program\n");
    char err[512] = "";
    kin_spawn_opts o = {
        .program = path, .errbuf = err, .errbuf_size = sizeof err};
    kin_child *c = (kin_child *)&o; /* must become NULL */
    kin_err e = kin_spawn(master, &o, &c);
    unlink(path);
    assert_int_equal(e, -ENOEXEC);
    assert_null(c);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "#!"));

    /* With #! it is a program: it starts, and exits before HELLO. */
    path = script("#!/bin/sh\nexit 0\n");
    c = (kin_child *)&o;
    e = kin_spawn(master, &o, &c);
    unlink(path);
    assert_int_equal(e, KIN_ESPAWN);
    assert_null(c);
}

static bool
tail_ends_with(kin_child *c, const char *want)
{
    char buf[4096];
    size_t len = kin_child_stderr_tail(c, buf, sizeof buf);
    assert_int_equal(len, strlen(buf));
    size_t wl = strlen(want);
    return len >= wl && !memcmp(buf + len - wl, want, wl);
}

static void
wait_tail(kin_child *c, const char *want)
{
    double end = harness_now_ms() + DEADLINE_MS;
    while (!tail_ends_with(c, want)) {
        assert_true(harness_now_ms() < end);
        nap_ms(5);
    }
}

/* Has child c write text and a newline to its stderr. */
static void
say(kin_child *c, const char *text)
{
    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(master, kin_child_id(c), "a.stderr", 5000, &r, "s", text),
        KIN_OK);
    kin_msg_destroy(&r);
}

static void
stderr_tail_keeps_the_last_bytes(void **state)
{
    kin_child *c = *state;
    char buf[4096];
    say(c, "first line");
    say(c, "second line");
    wait_tail(c, "first line\nsecond line\n");

    /* A small buffer gets the newest size - 1 bytes and a NUL. */
    memset(buf, 'Q', sizeof buf);
    assert_int_equal(kin_child_stderr_tail(c, buf, 6), 5);
    assert_string_equal(buf, "line\n");
    assert_int_equal(kin_child_stderr_tail(c, buf, 1), 0);
    assert_string_equal(buf, "");
    buf[0] = 'Q';
    assert_int_equal(kin_child_stderr_tail(c, buf, 0), 0);
    assert_int_equal(buf[0], 'Q');

    /* Only the last 2 KiB are kept. */
    char line[100];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = 0;
    for (int i = 0; i < 30; i++)
        say(c, line);
    say(c, "end");
    wait_tail(c, "xx\nend\n");
    assert_int_equal(kin_child_stderr_tail(c, buf, sizeof buf), 2048);
}

static void
names_and_ids_are_what_was_asked(void **state)
{
    kin_child *c = *state;
    assert_string_equal(kin_node_name(master), "master");
    assert_int_equal(kin_node_id(master), KIN_MASTER_ID);
    assert_string_equal(kin_child_name(c), "kid");

    kin_msg *r = NULL;
    char *name = NULL;
    uint32_t id = 0;
    assert_int_equal(
        kin_call_sync(master, kin_child_id(c), "a.name", 5000, &r, NULL),
        KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "su", &name, &id), KIN_OK);
    kin_msg_destroy(&r);
    assert_string_equal(name, "kid");
    assert_int_equal(id, kin_child_id(c));
    free(name);

    /* Unnamed: "ctx-ID", on both sides. */
    kin_child *anon = NULL;
    assert_int_equal(kin_spawn(master, NULL, &anon), KIN_OK);
    char want[32];
    snprintf(want, sizeof want, "ctx-%u", kin_child_id(anon));
    assert_string_equal(kin_child_name(anon), want);
    kin_err e =
        kin_call_sync(master, kin_child_id(anon), "a.name", 5000, &r, NULL);
    if (!e)
        e = kin_msg_unpack(r, "su", &name, &id);
    kin_msg_destroy(&r);
    kin_child_destroy(&anon);
    assert_int_equal(e, KIN_OK);
    assert_string_equal(name, want);
    free(name);

    kin_node *other = NULL;
    kin_node_opts o = {.name = "api-side", .log_endpoint = ""};
    assert_int_equal(kin_node_new(&other, &o), KIN_OK);
    assert_string_equal(kin_node_name(other), "api-side");
    kin_node_destroy(&other);

    /* Ids allocated for the tree are new ones. */
    uint32_t a = 0, b = 0;
    assert_int_equal(kin_node_alloc_id(master, &a), KIN_OK);
    assert_int_equal(kin_node_alloc_id(master, &b), KIN_OK);
    assert_true(a != KIN_MASTER_ID && b != KIN_MASTER_ID && a != b);
    assert_true(a != kin_child_id(c) && b != kin_child_id(c));
}

/* --- supervisors ---------------------------------------------------------- */

static void
supervisor_children_by_index(void **state)
{
    kin_supervisor *s = NULL;
    assert_int_equal(kin_supervisor_new(&s, master, NULL), KIN_OK);
    assert_int_equal(kin_supervisor_count(s), 0);
    kin_child_info info;
    assert_int_equal(kin_supervisor_child_at(s, 0, &info), -ENOENT);
    assert_string_equal(kin_supervisor_state_name(kin_supervisor_state_get(s)),
                        "idle");

    kin_child_spec one = {.name = "one"};
    kin_child_spec two = {.name = "two", .restart = KIN_RESTART_TEMPORARY};
    assert_int_equal(kin_supervisor_add(s, &one), KIN_OK);
    assert_int_equal(kin_supervisor_add(s, &two), KIN_OK);
    assert_int_equal(kin_supervisor_count(s), 2);
    assert_int_equal(kin_supervisor_child_at(s, 1, &info), KIN_OK);
    assert_string_equal(info.name, "two");
    assert_int_equal(info.restart, KIN_RESTART_TEMPORARY);
    assert_string_equal(kin_child_state_name(info.state), "idle");
    assert_int_equal(info.pid, 0);

    assert_int_equal(kin_supervisor_start(s), KIN_OK);
    assert_string_equal(kin_supervisor_state_name(kin_supervisor_state_get(s)),
                        "running");
    pid_t pids[2];
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(kin_supervisor_child_at(s, i, &info), KIN_OK);
        assert_string_equal(info.name, i ? "two" : "one");
        assert_string_equal(kin_child_state_name(info.state), "running");
        assert_true(info.pid > 0 && harness_pid_alive(info.pid));
        pids[i] = info.pid;
    }
    assert_int_equal(kin_supervisor_child_at(s, 2, &info), -ENOENT);
    assert_int_equal(kin_supervisor_child_at(s, SIZE_MAX, &info), -ENOENT);

    assert_int_equal(kin_supervisor_stop(s), KIN_OK);
    assert_string_equal(kin_supervisor_state_name(kin_supervisor_state_get(s)),
                        "stopped");
    assert_int_equal(kin_supervisor_child_at(s, 0, &info), KIN_OK);
    assert_string_equal(kin_child_state_name(info.state), "stopped");
    assert_int_equal(kin_supervisor_count(s), 2); /* specs stay */
    assert_false(harness_pid_alive(pids[0]));
    assert_false(harness_pid_alive(pids[1]));
    kin_supervisor_destroy(&s);
    assert_null(s);
}

/* --- logs ----------------------------------------------------------------- */

/* The sink's file, removed by sink_teardown even when the test fails. */
static char sink_path[64];

static int
sink_teardown(void **state)
{
    if (*sink_path)
        unlink(sink_path);
    *sink_path = 0;
    return 0;
}

/* Whether the file at path holds needle (the sink appends to it). */
static bool
file_has(const char *path, const char *needle)
{
    return harness_count_in_file(path, needle) > 0;
}

static void
emitted_records_obey_the_floor(void **state)
{
    char *path = sink_path;
    snprintf(sink_path, sizeof sink_path, "/tmp/kin-api-sink-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    kin_logsink *sink = (kin_logsink *)path;
    kin_logsink_opts so = {.endpoint = kin_logs_frontend(master), .fd = -1};
    assert_int_equal(kin_logsink_new(&sink, &so), -EINVAL);
    so.fd = fd;
    sink = NULL;
    assert_int_equal(kin_logsink_new(&sink, &so), KIN_OK);
    assert_non_null(sink);

    /* Subscriptions reach the publisher after a while: probe until one
     * arrives (kin_logs_emitf produces nothing before). */
    double end = harness_now_ms() + DEADLINE_MS;
    for (int i = 0; !file_has(path, "api-probe"); i++) {
        assert_true(harness_now_ms() < end);
        kin_logs_emitf(KIN_LOG_INFO, __FILE__, __LINE__, "api-probe %d", i);
        nap_ms(20);
    }

    const kin_field fields[] = {
        KIN_F("answer", 42), KIN_FSTR("who", "api"), {.type = KIN_FIELD_END}};
    kin_logs_emit(KIN_LOG_WARNING, "made-up.c", 7, "api-emitted", fields);
    end = harness_now_ms() + DEADLINE_MS;
    while (!file_has(path, "api-emitted")) {
        assert_true(harness_now_ms() < end);
        nap_ms(5);
    }

    /* Under a floor of WARNING, INFO is not even produced. */
    assert_true(kin_logs_enabled(KIN_LOG_INFO));
    kin_logs_set_level(KIN_LOG_WARNING);
    assert_false(kin_logs_enabled(KIN_LOG_INFO));
    assert_true(kin_logs_enabled(KIN_LOG_WARNING));
    kin_logs_emitf(KIN_LOG_INFO, __FILE__, __LINE__, "api-below-%s", "floor");
    kin_logs_emit(KIN_LOG_INFO, __FILE__, __LINE__, "api-below-floor", NULL);
    kin_logs_emitf(KIN_LOG_ERROR, __FILE__, __LINE__, "api-above-%s", "floor");
    end = harness_now_ms() + DEADLINE_MS;
    while (!file_has(path, "api-above-floor")) {
        assert_true(harness_now_ms() < end);
        nap_ms(5);
    }
    kin_logs_set_level(KIN_LOG_DEBUG);
    assert_true(kin_logs_enabled(KIN_LOG_INFO));

    kin_logsink_destroy(&sink);
    assert_null(sink);
    kin_logsink_destroy(&sink); /* NULL-safe */
    close(fd);
    assert_true(file_has(path, "made-up.c:7"));
    assert_true(file_has(path, "answer=42"));
    assert_true(file_has(path, "who=api"));
    assert_false(file_has(path, "api-below-floor"));
}

/* --- monitor -------------------------------------------------------------- */

static void
raw_monitor_request_answers_a_map(void **state)
{
    kin_child *c = *state;
    kin_buf req = {0};
    assert_int_equal(kin_pack(&req, "s", "info"), KIN_OK);
    kin_msg *r = NULL;
    assert_int_equal(
        kin_monitor_request(master, kin_child_id(c), &req, 5000, &r), KIN_OK);
    kin_buf_release(&req);
    kin_reader rd;
    kin_reader_init(&rd, r->body, r->len);
    uint32_t n = 0;
    assert_int_equal(kin_unpack(&rd, "M", &n), KIN_OK);
    char *name = NULL;
    int pid = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        assert_int_equal(kin_unpack(&rd, "S", &k, &kl), KIN_OK);
        if (kl == 4 && !memcmp(k, "name", 4))
            assert_int_equal(kin_unpack(&rd, "s", &name), KIN_OK);
        else if (kl == 3 && !memcmp(k, "pid", 3))
            assert_int_equal(kin_unpack(&rd, "i", &pid), KIN_OK);
        else
            assert_int_equal(kin_unpack(&rd, "?"), KIN_OK);
    }
    kin_reader_release(&rd);
    kin_msg_destroy(&r);
    assert_non_null(name);
    assert_string_equal(name, "kid");
    free(name);
    assert_int_equal(pid, kin_child_pid(c));

    assert_int_equal(kin_pack(&req, "s", "no-such-command"), KIN_OK);
    assert_int_equal(
        kin_monitor_request(master, kin_child_id(c), &req, 5000, &r),
        KIN_EREMOTE);
    kin_buf_release(&req);
    kin_msg_destroy(&r);
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
        cmocka_unit_test(task_spawn_runs_fn_as_a_task_on_the_pool),
        cmocka_unit_test(spawned_task_is_seen_and_cancelled_by_the_monitor),
        cmocka_unit_test(state_names_are_fixed),
        cmocka_unit_test_setup_teardown(reader_and_result_serve_msgpack_c_users,
                                        setup, teardown),
        cmocka_unit_test(own_inline_function_runs_on_the_calling_thread),
        cmocka_unit_test_setup_teardown(payload_of_exactly_the_limit_passes,
                                        setup, teardown),
        cmocka_unit_test(text_file_without_shebang_is_enoexec),
        cmocka_unit_test_setup_teardown(stderr_tail_keeps_the_last_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(names_and_ids_are_what_was_asked, setup,
                                        teardown),
        cmocka_unit_test(supervisor_children_by_index),
        cmocka_unit_test_teardown(emitted_records_obey_the_floor,
                                  sink_teardown),
        cmocka_unit_test_setup_teardown(raw_monitor_request_answers_a_map,
                                        setup, teardown),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
