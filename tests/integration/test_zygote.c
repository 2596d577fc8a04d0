/* The fork factory (kin_spawn_opts.fork) with real processes: a forked
 * child answers calls and is the node's own child in a group of its own,
 * siblings draw different random numbers, a supervisor restarts a killed
 * one by forking again, and stop, node destroy and the emergency stop
 * leave no process (children, zygote) and nothing in the runtime dir.
 * The test binary is also the zygote and every child. */
#include <dirent.h>
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

#include "integration/harness.h"

/* --- served by every child ------------------------------------------------ */

static kin_err
getpids(kin_call *c, void *arg)
{
    return kin_call_return(c, "iii", (int)getpid(), (int)getpgrp(),
                           (int)getppid());
}

static kin_err
draw(kin_call *c, void *arg)
{
    return kin_call_return(c, "i", (int)random());
}

/* Busy for up to 5 s on its worker thread, where a stack can be taken. */
static kin_err
linger(kin_call *c, void *arg)
{
    for (int i = 0; i < 500; i++)
        usleep(10000);
    return KIN_OK;
}

/* Writes a certificate at the path given (kin keygen's call). */
static kin_err
keygen(kin_call *c, void *arg)
{
    const char *path;
    size_t len;
    char buf[512];
    kin_err e = kin_call_args(c, "S", &path, &len);
    if (e)
        return e;
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    snprintf(buf, sizeof buf, "%.*s", (int)len, path);
    return kin_cert_new(buf, "zygote-test", NULL, NULL);
}

/* Forks 2 children of this context (with fork: grandchildren of the test)
 * and returns, for each, what z.getpids and z.envforks answer, once it
 * answers: pid, pgrp, ppid, whether it sees KIN_CHILD_FORKS. They stop
 * with this context. */
#define GRAND 2
static kin_child *grand[GRAND];

static kin_err
envforks(kin_call *c, void *arg)
{
    return kin_call_return(c, "b", getenv("KIN_CHILD_FORKS") != NULL);
}

static kin_err
grow(kin_call *c, void *arg)
{
    kin_node *n = kin_call_node(c);
    int v[GRAND][4];
    for (int i = 0; i < GRAND; i++) {
        kin_spawn_opts o = {.fork = true, .stop_timeout_ms = 20000};
        kin_err e = grand[i] ? KIN_OK : kin_spawn(n, &o, &grand[i]);
        kin_msg *r = NULL;
        bool forks = true;
        if (!e)
            e = kin_call_sync(n, kin_child_id(grand[i]), "z.getpids", 5000, &r,
                              NULL);
        if (!e)
            e = kin_msg_unpack(r, "iii", &v[i][0], &v[i][1], &v[i][2]);
        kin_msg_destroy(&r);
        if (!e)
            e = kin_call_sync(n, kin_child_id(grand[i]), "z.envforks", 5000, &r,
                              NULL);
        if (!e)
            e = kin_msg_unpack(r, "b", &forks);
        kin_msg_destroy(&r);
        if (e)
            return kin_call_fail(c, e, "grandchild %d: %s", i, kin_strerror(e));
        v[i][3] = forks;
    }
    return kin_call_return(c, "iiiiiiii", v[0][0], v[0][1], v[0][2], v[0][3],
                           v[1][0], v[1][1], v[1][2], v[1][3]);
}

/* --- helpers ------------------------------------------------------------- */

/* Pids of parent's children (live or zombie), up to max. */
static int
children_of(pid_t parent, pid_t *out, int max)
{
    int n = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[300], buf[512];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = 0;
        char *rp = strrchr(buf, ')');
        int ppid = 0;
        if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == parent &&
            n < max)
            out[n++] = atoi(de->d_name);
    }
    closedir(d);
    return n;
}

static int
our_children(pid_t *out, int max)
{
    return children_of(getpid(), out, max);
}

/* Waits (up to 5 s) until this process has no child left. */
static int
children_left(void)
{
    pid_t kids[16];
    double dl = harness_now_ms() + 5000;
    int n;
    while ((n = our_children(kids, 16)) && harness_now_ms() < dl)
        usleep(10000);
    return n;
}

/* The argv[0] in /proc/PID/cmdline. */
static void
cmdline0(pid_t pid, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t got = fread(out, 1, size - 1, f);
    fclose(f);
    out[got] = 0;
}

/* Files in the runtime dir left by this process or by pids (named
 * "PID-..."); other tests may share the directory. */
static size_t
runtime_files(const pid_t *pids, int npids)
{
    const char *rt = getenv("XDG_RUNTIME_DIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/kin", rt ? rt : "/tmp");
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int owner = atoi(de->d_name);
        bool ours = owner == getpid();
        for (int i = 0; i < npids; i++)
            ours |= owner == pids[i];
        n += ours;
    }
    closedir(d);
    return n;
}

typedef struct fx {
    kin_node *node;
    kin_child *kids[4];
    kin_supervisor *sup;
} fx;

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    kin_node_opts o = {.name = "zygote-master"};
    if (kin_node_new(&f->node, &o)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    kin_supervisor_destroy(&f->sup);
    for (int i = 0; i < 4; i++)
        kin_child_destroy(&f->kids[i]);
    kin_node_destroy(&f->node);
    free(f);
    return 0;
}

static kin_err
spawn_forked(fx *f, int i)
{
    char why[512] = "";
    /* A graceful stop gets 5 s before SIGTERM (a quarter of the stop
     * timeout): on a loaded machine 500 ms, the default's, was seen to
     * end a stopping child with 143 in test_exec. */
    kin_spawn_opts o = {.fork = true,
                        .stop_timeout_ms = 20000,
                        .errbuf = why,
                        .errbuf_size = sizeof why};
    kin_err e = kin_spawn(f->node, &o, &f->kids[i]);
    if (e)
        fprintf(stderr, "spawn: %s (%s)\n", kin_strerror(e), why);
    return e;
}

static void
call_getpids(fx *f, uint32_t id, int *pid, int *pgrp, int *ppid)
{
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(f->node, id, "z.getpids", 5000, &r, NULL),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "iii", pid, pgrp, ppid), KIN_OK);
    kin_msg_destroy(&r);
}

/* Whether pid has a library whose name contains lib mapped. */
static bool
maps_has(pid_t pid, const char *lib)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, lib) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* Where pid's C library is mapped (its first line in /proc/PID/maps): a
 * forked process keeps its parent's, an exec'd one gets another (address
 * space randomisation). 0: not found. */
static unsigned long
libc_base(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long base = 0;
    while (f && !base && fgets(line, sizeof line, f))
        if (strstr(line, "/libc.so"))
            base = strtoul(line, NULL, 16);
    if (f)
        fclose(f);
    return base;
}

/* --- tests ---------------------------------------------------------------- */

static void
forked_child_answers_and_is_ours(void **state)
{
    fx *f = *state;
    assert_int_equal(spawn_forked(f, 0), KIN_OK);
    pid_t pid = kin_child_pid(f->kids[0]);
    int cpid, pgrp, ppid;
    call_getpids(f, kin_child_id(f->kids[0]), &cpid, &pgrp, &ppid);
    /* Our child (not the zygote's), in a group of its own, not exec'd:
     * its argv is the zygote's. */
    assert_int_equal(cpid, pid);
    assert_int_equal(pgrp, pid);
    assert_int_equal(ppid, getpid());
    char arg0[64];
    cmdline0(pid, arg0, sizeof arg0);
    assert_string_equal(arg0, "kin-zygote");
    int st = -1;
    assert_int_equal(kin_child_stop(f->kids[0], &st), KIN_OK);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_false(harness_pid_alive(pid));
    kin_child_destroy(&f->kids[0]);
    kin_node_destroy(&f->node);
    assert_int_equal(children_left(), 0); /* the zygote went too */
    assert_int_equal(runtime_files(&pid, 1), 0);
}

static void
forked_siblings_draw_different_numbers(void **state)
{
    fx *f = *state;
    int got[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(spawn_forked(f, i), KIN_OK);
        kin_msg *r = NULL;
        assert_int_equal(kin_call_sync(f->node, kin_child_id(f->kids[i]),
                                       "z.draw", 5000, &r, NULL),
                         KIN_OK);
        assert_int_equal(kin_msg_unpack(r, "i", &got[i]), KIN_OK);
        kin_msg_destroy(&r);
    }
    assert_int_not_equal(got[0], got[1]);
    assert_int_not_equal(got[1], got[2]);
}

static void
supervisor_restarts_by_forking(void **state)
{
    fx *f = *state;
    kin_supervisor_opts so = {.backoff_ms = -1};
    assert_int_equal(kin_supervisor_new(&f->sup, f->node, &so), KIN_OK);
    kin_child_spec spec = {.name = "forked", .spawn = {.fork = true}};
    assert_int_equal(kin_supervisor_add(f->sup, &spec), KIN_OK);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    kin_child_info info;
    assert_int_equal(kin_supervisor_child(f->sup, "forked", &info), KIN_OK);
    pid_t first = info.pid;
    assert_true(first > 0);
    assert_int_equal(kill(first, SIGKILL), 0);
    double dl = harness_now_ms() + 10000;
    for (;;) {
        assert_int_equal(kin_supervisor_child(f->sup, "forked", &info), KIN_OK);
        if (info.state == KIN_CHILD_RUNNING && info.pid != first)
            break;
        assert_true(harness_now_ms() < dl);
        usleep(5000);
    }
    assert_int_equal(info.restarts, 1);
    assert_true(WIFSIGNALED(info.last_status) &&
                WTERMSIG(info.last_status) == SIGKILL);
    int cpid, pgrp, ppid;
    call_getpids(f, info.id, &cpid, &pgrp, &ppid);
    assert_int_equal(cpid, info.pid);
    assert_int_equal(ppid, getpid());
    char arg0[64];
    cmdline0(info.pid, arg0, sizeof arg0);
    assert_string_equal(arg0, "kin-zygote");
    assert_false(harness_pid_alive(first));
    kin_supervisor_destroy(&f->sup);
    assert_false(harness_pid_alive(info.pid));
}

static void
emergency_stop_takes_forked_children(void **state)
{
    fx *f = *state;
    pid_t pids[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(spawn_forked(f, i), KIN_OK);
        pids[i] = kin_child_pid(f->kids[i]);
    }
    assert_int_equal(kin_emergency_stop(f->node), KIN_OK);
    assert_int_equal(kin_emergency_wait(f->node, 10000), KIN_OK);
    for (int i = 0; i < 3; i++)
        assert_false(harness_pid_alive(pids[i]));
    kin_spawn_opts o = {.fork = true};
    kin_child *c = NULL;
    assert_int_equal(kin_spawn(f->node, &o, &c), KIN_EEMERGENCY);
    for (int i = 0; i < 3; i++)
        kin_child_destroy(&f->kids[i]);
    kin_node_destroy(&f->node);
    assert_int_equal(children_left(), 0);
    assert_int_equal(runtime_files(pids, 3), 0);
}

static void
node_destroy_leaves_no_process(void **state)
{
    fx *f = *state;
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(spawn_forked(f, i), KIN_OK);
        pids[i] = kin_child_pid(f->kids[i]);
    }
    /* Killed behind kin's back: still reaped, by us. */
    assert_int_equal(kill(pids[3], SIGKILL), 0);
    int st = 0;
    assert_int_equal(kin_child_wait(f->kids[3], 5000, &st), KIN_OK);
    assert_true(WIFSIGNALED(st));
    kin_node_destroy(&f->node);
    for (int i = 0; i < 4; i++)
        assert_false(harness_pid_alive(pids[i]));
    assert_int_equal(children_left(), 0);
    assert_int_equal(runtime_files(pids, 4), 0);
}

/* The zygote: our child whose argv[0] is "kin-zygote" and that is no
 * kin_child of ours; 0 if none. */
static pid_t
find_zygote(fx *f)
{
    pid_t kids[16];
    int n = our_children(kids, 16);
    for (int i = 0; i < n; i++) {
        bool known = false;
        for (int k = 0; k < 4; k++)
            known |= f->kids[k] && kin_child_pid(f->kids[k]) == kids[i];
        char arg0[64];
        cmdline0(kids[i], arg0, sizeof arg0);
        if (!known && !strcmp(arg0, "kin-zygote"))
            return kids[i];
    }
    return 0;
}

/* A child spawned with forks_children has its node's zygote from its
 * start: a process of its own, there before it forks anything, and a fork
 * of it (not exec'd: the same library mappings). The grandchildren it
 * forks are its children, answer calls and do not see its settings; once
 * it is stopped, none of them (nor its zygote) is left, and nothing in the
 * runtime dir. */
static void
forked_child_forks_grandchildren_without_exec(void **state)
{
    fx *f = *state;
    kin_spawn_opts o = {
        .fork = true, .forks_children = true, .stop_timeout_ms = 20000};
    assert_int_equal(kin_spawn(f->node, &o, &f->kids[0]), KIN_OK);
    pid_t c = kin_child_pid(f->kids[0]);
    uint32_t id = kin_child_id(f->kids[0]);
    int cpid, pgrp, ppid;
    call_getpids(f, id, &cpid, &pgrp, &ppid); /* up */
    pid_t kids[8];
    assert_int_equal(children_of(c, kids, 8), 1);
    pid_t z = kids[0];
    char arg0[64];
    cmdline0(z, arg0, sizeof arg0);
    assert_string_equal(arg0, "kin-zygote");
    unsigned long base = libc_base(c);
    assert_true(base != 0);
    assert_true(libc_base(z) == base);
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(f->node, id, "z.grow", 10000, &r, NULL),
                     KIN_OK);
    int v[GRAND][4];
    assert_int_equal(kin_msg_unpack(r, "iiiiiiii", &v[0][0], &v[0][1], &v[0][2],
                                    &v[0][3], &v[1][0], &v[1][1], &v[1][2],
                                    &v[1][3]),
                     KIN_OK);
    kin_msg_destroy(&r);
    pid_t all[GRAND + 2] = {c, z};
    for (int i = 0; i < GRAND; i++) {
        pid_t g = v[i][0];
        all[i + 2] = g;
        assert_int_equal(v[i][2], c);      /* the child's child */
        assert_int_equal(v[i][1], g);      /* in a group of its own */
        assert_int_equal(v[i][3], false);  /* not the child's settings */
        assert_true(libc_base(g) == base); /* forked from z, no exec */
    }
    /* Still the one zygote: the grandchildren came from it. */
    assert_int_equal(children_of(c, kids, 8), GRAND + 1);
    assert_int_equal(kin_call_sync(f->node, id, "z.grow", 10000, &r, NULL),
                     KIN_OK); /* they still answer */
    kin_msg_destroy(&r);
    kin_child_destroy(&f->kids[0]);
    for (int i = 0; i < GRAND + 2; i++)
        assert_true(harness_wait_gone(all[i], 5000));
    kin_node_destroy(&f->node);
    assert_int_equal(children_left(), 0);
    assert_int_equal(runtime_files(all, GRAND + 2), 0);
}

/* Killed, such a child takes its zygote and its grandchildren with it
 * (they die with its main thread): no process is left, and once another
 * master has started, no socket file. */
static void
killed_forking_child_leaves_no_process(void **state)
{
    fx *f = *state;
    kin_spawn_opts o = {
        .fork = true, .forks_children = true, .stop_timeout_ms = 20000};
    assert_int_equal(kin_spawn(f->node, &o, &f->kids[0]), KIN_OK);
    pid_t c = kin_child_pid(f->kids[0]);
    uint32_t id = kin_child_id(f->kids[0]);
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(f->node, id, "z.grow", 10000, &r, NULL),
                     KIN_OK);
    kin_msg_destroy(&r);
    pid_t kids[8];
    int n = children_of(c, kids, 8);
    assert_int_equal(n, GRAND + 1);
    assert_int_equal(kill(c, SIGKILL), 0);
    int st = 0;
    assert_int_equal(kin_child_wait(f->kids[0], 5000, &st), KIN_OK);
    assert_true(WIFSIGNALED(st));
    for (int i = 0; i < n; i++)
        assert_true(harness_wait_gone(kids[i], 5000));
    kin_child_destroy(&f->kids[0]);
    kin_node_destroy(&f->node);
    assert_int_equal(children_left(), 0);
    /* The grandchildren, killed, could not remove their sockets: the next
     * master started removes those of processes gone (reaped by init, no
     * longer zombies), as for any context killed. */
    for (int i = 0; i < n; i++) {
        double dl = harness_now_ms() + 5000;
        while (!(kill(kids[i], 0) && errno == ESRCH) && harness_now_ms() < dl)
            usleep(2000);
    }
    kin_node_opts mo = {.name = "zygote-sweeper"};
    assert_int_equal(kin_node_new(&f->node, &mo), KIN_OK);
    kin_node_destroy(&f->node);
    kids[n] = c;
    assert_int_equal(runtime_files(kids, n + 1), 0);
}

static void
dead_zygote_is_replaced(void **state)
{
    fx *f = *state;
    assert_int_equal(spawn_forked(f, 0), KIN_OK);
    pid_t z = find_zygote(f);
    assert_true(z > 0);
    assert_int_equal(kill(z, SIGKILL), 0);
    assert_true(harness_wait_gone(z, 5000));
    /* The child it made lives on: it is ours, not the zygote's. */
    int cpid, pgrp, ppid;
    call_getpids(f, kin_child_id(f->kids[0]), &cpid, &pgrp, &ppid);
    assert_int_equal(cpid, kin_child_pid(f->kids[0]));
    assert_int_equal(spawn_forked(f, 1), KIN_OK);
    call_getpids(f, kin_child_id(f->kids[1]), &cpid, &pgrp, &ppid);
    assert_int_equal(ppid, getpid());
    pid_t z2 = find_zygote(f);
    assert_true(z2 > 0 && z2 != z);
    kin_node_destroy(&f->node);
    assert_int_equal(children_left(), 0); /* the dead one was reaped too */
}

/* 8 threads fork 4 children each at once: the requests meet in the
 * zygote, each thread gets its own answer (32 distinct pids, each the pid
 * of the child that answers under that id); then the zygote is killed
 * while 8 threads are asking again: a spawn that finds it gone starts
 * another and asks that one, so all 32 succeed, and nothing is left once
 * the node is gone. */
#define FAN_THREADS 8
#define FAN_EACH 4

typedef struct fan {
    kin_node *node;
    kin_child *kids[FAN_EACH];
    kin_err e[FAN_EACH];
    pthread_t thread;
} fan;

static void *
fan_spawn(void *arg)
{
    fan *a = arg;
    kin_spawn_opts o = {.fork = true};
    for (int i = 0; i < FAN_EACH; i++)
        a->e[i] = kin_spawn(a->node, &o, &a->kids[i]);
    return NULL;
}

static void
fan_out(fx *f, fan *fs)
{
    for (int t = 0; t < FAN_THREADS; t++) {
        fs[t] = (fan){.node = f->node};
        assert_int_equal(pthread_create(&fs[t].thread, NULL, fan_spawn, &fs[t]),
                         0);
    }
}

static void
fan_in(fan *fs)
{
    for (int t = 0; t < FAN_THREADS; t++)
        pthread_join(fs[t].thread, NULL);
}

static void
fan_destroy(fan *fs)
{
    for (int t = 0; t < FAN_THREADS; t++)
        for (int i = 0; i < FAN_EACH; i++)
            kin_child_destroy(&fs[t].kids[i]);
}

static void
forks_from_many_threads_at_once(void **state)
{
    fx *f = *state;
    fan fs[FAN_THREADS];
    fan_out(f, fs);
    fan_in(fs);
    pid_t pids[FAN_THREADS * FAN_EACH];
    int n = 0;
    for (int t = 0; t < FAN_THREADS; t++) {
        for (int i = 0; i < FAN_EACH; i++) {
            if (fs[t].e[i])
                fail_msg("spawn %d of thread %d: %s", i, t,
                         kin_strerror(fs[t].e[i]));
            int cpid, pgrp, ppid;
            call_getpids(f, kin_child_id(fs[t].kids[i]), &cpid, &pgrp, &ppid);
            assert_int_equal(cpid, kin_child_pid(fs[t].kids[i]));
            assert_int_equal(ppid, getpid());
            for (int k = 0; k < n; k++)
                if (pids[k] == cpid)
                    fail_msg("pid %d handed out twice", cpid);
            pids[n++] = cpid;
        }
    }
    fan_destroy(fs);
    /* The zygote dies under 8 askers. */
    pid_t z = find_zygote(f);
    assert_true(z > 0);
    fan_out(f, fs);
    kill(z, SIGKILL);
    fan_in(fs);
    for (int t = 0; t < FAN_THREADS; t++)
        for (int i = 0; i < FAN_EACH; i++)
            if (fs[t].e[i])
                fail_msg("spawn %d of thread %d across the kill: %s", i, t,
                         kin_strerror(fs[t].e[i]));
    fan_destroy(fs);
    assert_int_equal(spawn_forked(f, 0), KIN_OK);
    int cpid, pgrp, ppid;
    call_getpids(f, kin_child_id(f->kids[0]), &cpid, &pgrp, &ppid);
    assert_int_equal(cpid, kin_child_pid(f->kids[0]));
    kin_child_destroy(&f->kids[0]);
    kin_node_destroy(&f->node);
    assert_int_equal(children_left(), 0);
    assert_int_equal(runtime_files(pids, n), 0);
}

/* On tcp every link is CURVE: the child can only link up if the tree's
 * key reached it through the zygote's request. */
static void
forked_child_links_over_curve(void **state)
{
    fx *f = *state;
    kin_node_destroy(&f->node);
    kin_node_opts o = {.name = "zygote-tcp", .bind = "tcp://127.0.0.1:*"};
    assert_int_equal(kin_node_new(&f->node, &o), KIN_OK);
    assert_int_equal(spawn_forked(f, 0), KIN_OK);
    int cpid, pgrp, ppid;
    call_getpids(f, kin_child_id(f->kids[0]), &cpid, &pgrp, &ppid);
    assert_int_equal(ppid, getpid());
}

/* A zygote whose main misbehaves before kin_init (told through the
 * environment it copies from us): the spawn fails with the reason, and
 * nothing is left. */
static void
zygote_must_reach_kin_init_alone(void **state)
{
    fx *f = *state;
    const char *roles[] = {"thread", "exit"};
    const char *why[] = {"started threads before kin_init",
                         "exited before kin_init"};
    for (int i = 0; i < 2; i++) {
        kin_node_destroy(&f->node);
        kin_node_opts o = {.name = "zygote-master"};
        assert_int_equal(kin_node_new(&f->node, &o), KIN_OK);
        setenv("ZYG_TEST_BEFORE_INIT", roles[i], 1);
        char buf[512] = "";
        kin_spawn_opts so = {
            .fork = true, .errbuf = buf, .errbuf_size = sizeof buf};
        kin_child *c = NULL;
        kin_err e = kin_spawn(f->node, &so, &c);
        unsetenv("ZYG_TEST_BEFORE_INIT");
        assert_int_equal(e, KIN_ESPAWN);
        assert_null(c);
        assert_non_null(strstr(buf, why[i]));
        assert_int_equal(children_left(), 0);
    }
}

static void *
idle_thread(void *arg)
{
    pause();
    return NULL;
}

static void
bad_fork_options_are_refused(void **state)
{
    fx *f = *state;
    kin_child *c = NULL;
    kin_spawn_opts o = {.fork = true, .program = "/bin/true"};
    assert_int_equal(kin_spawn(f->node, &o, &c), -EINVAL);
    o = (kin_spawn_opts){.fork = true, .user = "nobody"};
    assert_int_equal(kin_spawn(f->node, &o, &c), -EINVAL);
    o = (kin_spawn_opts){.fork = true, .host = "localhost"};
    assert_int_equal(kin_spawn(f->node, &o, &c), -EINVAL);
    o = (kin_spawn_opts){.fork = true, .via = 42, .host = "localhost"};
    assert_int_equal(kin_spawn(f->node, &o, &c), -EINVAL);
    o = (kin_spawn_opts){.forks_children = true}; /* and exec? no */
    assert_int_equal(kin_spawn(f->node, &o, &c), -EINVAL);
    assert_null(c);
    assert_int_equal(children_left(), 0); /* no zygote for nothing */
}

/* An idle child maps neither libdw nor libunwind (nor what they pull
 * in); the first stack asked for loads them and still says file:line. */
static void
stack_symbolizer_loads_on_first_stack(void **state)
{
    fx *f = *state;
    bool fork = false;
    for (int round = 0; round < 2; round++, fork = true) {
        kin_child **c = &f->kids[round];
        kin_spawn_opts o = {.fork = fork};
        assert_int_equal(kin_spawn(f->node, &o, c), KIN_OK);
        pid_t pid = kin_child_pid(*c);
        uint32_t id = kin_child_id(*c);
        assert_false(maps_has(pid, "libdw"));
        assert_false(maps_has(pid, "libunwind"));
        assert_false(maps_has(pid, "libbz2"));
        assert_int_equal(kin_call_nowait(f->node, id, "z.linger", NULL),
                         KIN_OK);
        kin_task_info *tasks = NULL;
        size_t count = 0;
        uint32_t task = 0;
        double dl = harness_now_ms() + 5000;
        while (!task && harness_now_ms() < dl) {
            if (kin_monitor_ps(f->node, id, "z.linger", false, 2000, &tasks,
                               &count) == KIN_OK &&
                count && tasks[0].state == KIN_TASK_RUNNING)
                task = tasks[0].id; /* on its thread, not queued */
            free(tasks);
            tasks = NULL;
            if (!task)
                usleep(5000);
        }
        assert_true(task != 0);
        kin_frame_info *frames = NULL;
        assert_int_equal(
            kin_monitor_where(f->node, id, task, 5000, &frames, &count),
            KIN_OK);
        bool named = false, placed = false;
        for (size_t i = 0; i < count; i++) {
            named |= strstr(frames[i].fn, "linger") != NULL;
            placed |= strstr(frames[i].file, "test_zygote.c") != NULL &&
                      frames[i].line > 0;
        }
        free(frames);
        assert_true(named);
        if (harness_has_debug_info(__FILE__))
            assert_true(placed);
        assert_true(maps_has(pid, "libdw"));
        assert_true(maps_has(pid, "libunwind"));
        kin_child_destroy(c);
    }
}

/* Neither an exec'd nor a forked idle child maps czmq or what it alone
 * pulls in (libsystemd, libgcrypt: every library mapped costs each process
 * its written pages); the first certificate it writes loads czmq, and
 * works. */
static void
czmq_loads_on_first_certificate(void **state)
{
    fx *f = *state;
    bool fork = false;
    for (int round = 0; round < 2; round++, fork = true) {
        kin_child **c = &f->kids[round];
        kin_spawn_opts o = {.fork = fork};
        assert_int_equal(kin_spawn(f->node, &o, c), KIN_OK);
        pid_t pid = kin_child_pid(*c);
        int cpid, pgrp, ppid;
        call_getpids(f, kin_child_id(*c), &cpid, &pgrp, &ppid); /* idle */
        bool idle_czmq = maps_has(pid, "libczmq");
        bool idle_systemd = maps_has(pid, "libsystemd");
        bool idle_gcrypt = maps_has(pid, "libgcrypt");
        char dir[] = "/tmp/kin-zyg-cert-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[128], secret[160];
        snprintf(path, sizeof path, "%s/cert", dir);
        snprintf(secret, sizeof secret, "%s_secret", path);
        kin_msg *r = NULL;
        kin_err e = kin_call_sync(f->node, kin_child_id(*c), "z.keygen", 5000,
                                  &r, "s", path);
        kin_msg_destroy(&r);
        bool loaded = maps_has(pid, "libczmq");
        bool written = access(path, R_OK) == 0 && access(secret, R_OK) == 0;
        unlink(path);
        unlink(secret);
        rmdir(dir);
        kin_child_destroy(c);
        assert_false(idle_czmq);
        assert_false(idle_systemd);
        assert_false(idle_gcrypt);
        assert_int_equal(e, KIN_OK);
        assert_true(loaded);
        assert_true(written);
    }
}

int
main(int argc, char **argv)
{
    kin_export("z.getpids", getpids, NULL, KIN_POLICY_PARENT);
    kin_export("z.draw", draw, NULL, KIN_POLICY_PARENT);
    kin_export("z.linger", linger, NULL, KIN_POLICY_PARENT);
    kin_export("z.keygen", keygen, NULL, KIN_POLICY_PARENT);
    kin_export("z.grow", grow, NULL, KIN_POLICY_PARENT);
    kin_export("z.envforks", envforks, NULL, KIN_POLICY_PARENT);
    harness_log_setup();
    const char *before = getenv("ZYG_TEST_BEFORE_INIT");
    if (before && kin_started_as_child() && !strcmp(before, "exit"))
        return 0;
    pthread_t th;
    if (before && kin_started_as_child() && !strcmp(before, "thread") &&
        pthread_create(&th, NULL, idle_thread, NULL))
        return 1;
    /* Children (and the zygote) serve here and never return; the tests
     * make nodes of their own. */
    kin_node *m = NULL;
    if (kin_init(&m, NULL))
        return 1;
    kin_node_destroy(&m);
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(forked_child_answers_and_is_ours, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(forked_siblings_draw_different_numbers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(supervisor_restarts_by_forking, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(emergency_stop_takes_forked_children,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(node_destroy_leaves_no_process, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bad_fork_options_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(dead_zygote_is_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            forked_child_forks_grandchildren_without_exec, setup, teardown),
        cmocka_unit_test_setup_teardown(killed_forking_child_leaves_no_process,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(forks_from_many_threads_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(forked_child_links_over_curve, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(zygote_must_reach_kin_init_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stack_symbolizer_loads_on_first_stack,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(czmq_loads_on_first_certificate, setup,
                                        teardown),
    };
    return harness_run_group(tests);
}
