/* The worker pool with real processes. A pool starts one worker and grows
 * while calls wait: N calls into a fresh child with N workers all run at
 * once (exec'd and forked children, and N tasks spawned at the master),
 * never more than N, and a fresh child has one worker thread until calls
 * need more. The test binary is also every child. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "integration/harness.h"

static kin_node *master;

/* --- a meeting point, one per process ------------------------------------ */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int running, peak; /* under mu: now, and the most ever at once */

/* Waits until `want` calls (or tasks) have run here at once, or wait_ms
 * pass: returns the most that ever ran at once. */
static int
meet(int want, int wait_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += wait_ms / 1000;
    dl.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&mu);
    if (++running > peak)
        peak = running;
    pthread_cond_broadcast(&cond);
    while (peak < want)
        if (pthread_cond_timedwait(&cond, &mu, &dl) == ETIMEDOUT)
            break;
    int seen = peak;
    running--;
    pthread_mutex_unlock(&mu);
    return seen;
}

static kin_err
meet_fn(kin_call *c, void *arg)
{
    int want, wait_ms;
    kin_err e = kin_call_args(c, "ii", &want, &wait_ms);
    return e ? e : kin_call_return(c, "i", meet(want, wait_ms));
}

/* The kin-worker threads of this process, from /proc. */
static int
count_workers(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[300], name[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(name, sizeof name, f) && !strcmp(name, "kin-worker\n"))
            n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

static kin_err
workers_fn(kin_call *c, void *arg)
{
    return kin_call_return(c, "i", count_workers());
}

/* --- helpers ------------------------------------------------------------- */

#define WORKERS 4
#define MEET_MS 5000 /* far longer than calls that run at once need */

/* Calls meet(want, wait_ms) count times at once in c; fills seen[]. */
static void
meet_calls(kin_child *c, int count, int want, int wait_ms, int *seen)
{
    kin_receiver *rs[8];
    assert_true(count <= 8);
    for (int i = 0; i < count; i++)
        assert_int_equal(kin_call_async(master, kin_child_id(c), "p.meet",
                                        &rs[i], "ii", want, wait_ms),
                         KIN_OK);
    for (int i = 0; i < count; i++) {
        kin_msg *m = NULL;
        seen[i] = -1;
        assert_int_equal(kin_call_wait(rs[i], wait_ms * 2 + 5000, &m), KIN_OK);
        assert_int_equal(kin_msg_unpack(m, "i", &seen[i]), KIN_OK);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&rs[i]);
    }
}

static int
workers_of(kin_child *c)
{
    kin_msg *m = NULL;
    int n = -1;
    assert_int_equal(
        kin_call_sync(master, kin_child_id(c), "p.workers", 5000, &m, NULL),
        KIN_OK);
    assert_int_equal(kin_msg_unpack(m, "i", &n), KIN_OK);
    kin_msg_destroy(&m);
    return n;
}

/* A fresh child with WORKERS workers: one worker thread; WORKERS blocking
 * calls at once all run (each meets all the others), which takes a worker
 * each. */
static void
all_run_at_once(bool fork)
{
    kin_child *c;
    kin_spawn_opts o = {.fork = fork, .workers = WORKERS};
    assert_int_equal(kin_spawn(master, &o, &c), KIN_OK);
    /* The call that counts holds the one worker. */
    assert_int_equal(workers_of(c), 1);
    int seen[WORKERS];
    double t0 = harness_now_ms();
    meet_calls(c, WORKERS, WORKERS, MEET_MS, seen);
    print_message("%d calls met in %.1f ms\n", WORKERS, harness_now_ms() - t0);
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(seen[i], WORKERS);
    assert_int_equal(workers_of(c), WORKERS);
    kin_child_destroy(&c);
}

/* --- tests --------------------------------------------------------------- */

static void
exec_child_runs_n_calls_at_once(void **state)
{
    all_run_at_once(false);
}

static void
forked_child_runs_n_calls_at_once(void **state)
{
    all_run_at_once(true);
}

/* Two workers, three calls that wait for three: only two ever run at once
 * (they give up, then the third runs alone and gives up too). */
static void
pool_never_outgrows_its_size(void **state)
{
    kin_child *c;
    kin_spawn_opts o = {.workers = 2};
    assert_int_equal(kin_spawn(master, &o, &c), KIN_OK);
    int seen[3];
    meet_calls(c, 3, 3, 300, seen);
    for (int i = 0; i < 3; i++)
        assert_true(seen[i] < 3);
    assert_int_equal(workers_of(c), 2);
    kin_child_destroy(&c);
}

/* Tasks that ended, and those that met all the others (under mu; static:
 * tasks left running by a failed test still find them). */
static int tasks_done, tasks_met;

static kin_err
meet_task(void *arg)
{
    int seen = meet(WORKERS, MEET_MS);
    pthread_mutex_lock(&mu);
    tasks_done++;
    tasks_met += seen == WORKERS;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
    return KIN_OK;
}

/* Tasks spawned from an application thread grow the pool too: WORKERS of
 * them meet in the master (WORKERS workers by default, serving no calls
 * here). */
static void
spawned_tasks_run_at_once(void **state)
{
    pthread_mutex_lock(&mu);
    running = peak = tasks_done = tasks_met = 0;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(kin_task_spawn(master, NULL, meet_task, NULL, NULL),
                         KIN_OK);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += MEET_MS / 1000 * 2 + 5;
    pthread_mutex_lock(&mu);
    while (tasks_done < WORKERS)
        if (pthread_cond_timedwait(&cond, &mu, &dl) == ETIMEDOUT)
            break;
    int done = tasks_done, met = tasks_met;
    pthread_mutex_unlock(&mu);
    assert_int_equal(done, WORKERS);
    assert_int_equal(met, WORKERS);
}

int
main(void)
{
    kin_export("p.meet", meet_fn, NULL, KIN_POLICY_PARENT);
    kin_export("p.workers", workers_fn, NULL, KIN_POLICY_PARENT);
    harness_log_setup();
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exec_child_runs_n_calls_at_once),
        cmocka_unit_test(forked_child_runs_n_calls_at_once),
        cmocka_unit_test(pool_never_outgrows_its_size),
        cmocka_unit_test(spawned_tasks_run_at_once),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
