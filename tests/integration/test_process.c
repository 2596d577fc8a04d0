/* Processes and supervision with real processes: terminate-then-kill, spawn
 * failures and their errors, no zombies, no orphans (a SIGKILLed master of a
 * 3-level tree, grandchildren in other process groups), the supervisor's
 * strategies, restart types, intensity and backoff, and the emergency stop.
 * The test binary is also every child program (kin_init, or a --role). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "integration/harness.h"

#define EARLY_MARKER "exit-early: giving up before HELLO"
#define SILENT_MARKER "silent: never saying HELLO"

static kin_node *master;

/* --- functions served by every context ------------------------------------ */

static kin_err
getpids(kin_call *c, void *arg)
{
    return kin_call_return(c, "ii", (int)getpid(), (int)getpgrp());
}

/* The uid and pid this context runs as, also told in a log record. */
static kin_err
whoami(kin_call *c, void *arg)
{
    KIN_LOGW("whoami", KIN_F("uid", (int)getuid()));
    return kin_call_return(c, "ii", (int)getuid(), (int)getpid());
}

static kin_err
exit_now(kin_call *c, void *arg)
{
    int code = 0;
    kin_call_args(c, "i", &code);
    _exit(code);
}

static void
hang_forever(void)
{
    for (;;)
        pause();
}

/* Makes this context deaf to a stop: SIGTERM ignored, and once kin_init
 * has shut the context down its exit never completes. */
static kin_err
stubborn(kin_call *c, void *arg)
{
    signal(SIGTERM, SIG_IGN);
    atexit(hang_forever);
    return KIN_OK;
}

static kin_child *grandchild; /* the one this context spawned, if any */

/* Spawns a grandchild; returns its pid and process group. */
static kin_err
spawn_gc(kin_call *c, void *arg)
{
    kin_err e = kin_spawn(kin_call_node(c), NULL, &grandchild);
    if (e)
        return kin_call_fail(c, e, "spawn: %s", kin_strerror(e));
    pid_t pid = kin_child_pid(grandchild);
    return kin_call_return(c, "ii", (int)pid, (int)getpgid(pid));
}

/* Asks the grandchild to exit with a code. */
static kin_err
gc_exit(kin_call *c, void *arg)
{
    int code = 0;
    kin_err e = kin_call_args(c, "i", &code);
    if (!e && !grandchild)
        e = -ENOENT;
    if (!e)
        e = kin_call_nowait(kin_call_node(c), kin_child_id(grandchild),
                            "t.exit", "i", code);
    return e;
}

static kin_err
estop(kin_call *c, void *arg)
{
    return kin_emergency_stop(kin_call_node(c));
}

static void
export_all(void)
{
    kin_export("t.getpids", getpids, NULL, KIN_POLICY_PARENT);
    kin_export("t.whoami", whoami, NULL, KIN_POLICY_PARENT);
    kin_export("t.exit", exit_now, NULL, KIN_POLICY_PARENT);
    kin_export("t.stubborn", stubborn, NULL, KIN_POLICY_PARENT);
    kin_export("t.spawn_gc", spawn_gc, NULL, KIN_POLICY_PARENT);
    kin_export("t.gc_exit", gc_exit, NULL, KIN_POLICY_PARENT);
    kin_export("t.estop", estop, NULL, KIN_POLICY_PARENT);
}

/* --- helpers ---------------------------------------------------------------
 */

/* Children of this process: how many live, how many zombies. */
static void
count_children(int *alive, int *zombies)
{
    *alive = *zombies = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[300], buf[512];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        char state;
        int ppid;
        if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2 ||
            ppid != (int)getpid())
            continue;
        if (state == 'Z')
            (*zombies)++;
        else
            (*alive)++;
        if (state == 'Z' || getenv("KIN_TEST_VERBOSE"))
            print_message("child of ours: %.*s\n", (int)(p + 3 - buf), buf);
    }
    closedir(d);
}

static void
assert_no_children(void)
{
    int alive, zombies;
    count_children(&alive, &zombies);
    if (alive || zombies)
        print_error("children left: %d alive, %d zombies\n", alive, zombies);
    assert_int_equal(alive, 0);
    assert_int_equal(zombies, 0);
}

static void forget_sockets(pid_t pid);

/* Kills a process a test started and reaps it if it is ours (a direct
 * child); a deeper descendant is reaped by its own parent or by init. */
static void
kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    if (waitpid(pid, NULL, 0) < 0 && !harness_wait_gone(pid, 5000))
        fprintf(stderr, "pid %d still there\n", (int)pid);
    forget_sockets(pid);
}

/* Removes the socket files a process killed by a signal left in the
 * runtime directory (kin's rule: $XDG_RUNTIME_DIR/kin or /tmp/kin-UID). */
static void
forget_sockets(pid_t pid)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    char pattern[256];
    if (xdg && *xdg)
        snprintf(pattern, sizeof pattern, "%s/kin/%d-*.sock", xdg, (int)pid);
    else
        snprintf(pattern, sizeof pattern, "/tmp/kin-%u/%d-*.sock", getuid(),
                 (int)pid);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; i++)
            unlink(g.gl_pathv[i]);
    globfree(&g);
}

/* Whether pid is gone for good: not even a zombie. */
static bool
reaped(pid_t pid)
{
    return kill(pid, 0) && errno == ESRCH;
}

static int
call_ints(kin_node *n, uint32_t ctx, const char *fn, int *a, int *b)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(n, ctx, fn, 30000, &r, NULL);
    if (!e)
        e = kin_msg_unpack(r, "ii", a, b);
    if (e && r && (r->flags & KIN_MSG_ERROR)) {
        kin_remote_error info;
        if (!kin_call_error(r, &info))
            print_error("%s: remote: %s\n", fn, info.message);
    }
    kin_msg_destroy(&r);
    return e;
}

/* Everything a test starts, so teardown reaps it even after a failure. */
typedef struct fx {
    kin_node *node; /* where children go: master, or own */
    kin_node *own;  /* a private master (emergency tests trip it) */
    kin_child *kids[8];
    kin_supervisor *sup;
    pid_t raw[8]; /* plain processes: killed and reaped */
    pthread_mutex_t mu;
    char log[2048]; /* supervisor events, "S:a X:b T:c G E ..." */
    /* Child "a": when each exit reached the supervisor and when each
     * start's process was forked, in CLOCK_BOOTTIME ms (see fork_ms). */
    double exited_at[8], forked_at[8];
    int n_exited, n_started;
} fx;

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    pthread_mutex_init(&f->mu, NULL);
    f->node = master;
    *state = f;
    return 0;
}

/* A private master listening on tcp, for tests that trip their node. */
static int
setup_own_node(void **state)
{
    if (setup(state))
        return -1;
    fx *f = *state;
    kin_node_opts o = {.name = "estop-master", .bind = "tcp://127.0.0.1:*"};
    kin_err e = kin_node_new(&f->own, &o);
    if (e) {
        fprintf(stderr, "kin_node_new: %s\n", kin_strerror(e));
        return -1;
    }
    f->node = f->own;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    kin_supervisor_destroy(&f->sup);
    for (int i = 0; i < 8; i++)
        kin_child_destroy(&f->kids[i]);
    kin_node_destroy(&f->own);
    for (int i = 0; i < 8; i++)
        if (f->raw[i] > 0)
            kill_and_reap(f->raw[i]);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* CLOCK_BOOTTIME in ms: the clock of /proc/PID/stat's start time. */
static double
boot_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* When pid was forked, in CLOCK_BOOTTIME ms, rounded down to a clock tick
 * (10 ms); -1 if unknown. Unlike the STARTED event, which comes after the
 * child's HELLO, this leaves the child's own start-up time out. */
static double
fork_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    /* Field 22, counted from field 3 (the state) after the ")". */
    char *p = strrchr(buf, ')');
    unsigned long long start = 0;
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u "
                     "%*u %*d %*d %*d %*d %*d %*d %llu",
                     &start) != 1)
        return -1;
    return (double)start * 1e3 / (double)sysconf(_SC_CLK_TCK);
}

static void
on_event(kin_supervisor *s, const kin_sup_event *ev, void *arg)
{
    fx *f = arg;
    static const char tags[] = "SXTFGE";
    char item[80];
    if (ev->child)
        snprintf(item, sizeof item, "%c:%s ", tags[ev->kind], ev->child);
    else
        snprintf(item, sizeof item, "%c ", tags[ev->kind]);
    pthread_mutex_lock(&f->mu);
    size_t len = strlen(f->log);
    snprintf(f->log + len, sizeof f->log - len, "%s", item);
    if (ev->child && !strcmp(ev->child, "a")) {
        if (ev->kind == KIN_SUP_EV_EXITED && f->n_exited < 8)
            f->exited_at[f->n_exited++] = boot_ms();
        if (ev->kind == KIN_SUP_EV_STARTED && f->n_started < 8)
            f->forked_at[f->n_started++] = fork_ms(ev->pid);
    }
    pthread_mutex_unlock(&f->mu);
}

static void
log_clear(fx *f)
{
    pthread_mutex_lock(&f->mu);
    f->log[0] = 0;
    pthread_mutex_unlock(&f->mu);
}

/* Waits (on the supervisor's change counter, which moves after on_event
 * returned) until the event log reads exactly `want`. */
static bool
wait_log(fx *f, const char *want, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    char got[sizeof f->log];
    for (;;) {
        uint64_t seq = kin_supervisor_changes(f->sup);
        pthread_mutex_lock(&f->mu);
        memcpy(got, f->log, sizeof got);
        pthread_mutex_unlock(&f->mu);
        if (!strcmp(got, want))
            return true;
        int left = (int)(end - harness_now_ms());
        if (left <= 0 || kin_supervisor_wait(f->sup, seq, left, NULL)) {
            print_error("event log: want \"%s\", got \"%s\"\n", want, got);
            return false;
        }
    }
}

static pid_t
child_pid(fx *f, const char *name)
{
    kin_child_info info;
    assert_int_equal(kin_supervisor_child(f->sup, name, &info), KIN_OK);
    return info.pid;
}

static void
new_sup_opts(fx *f, kin_supervisor_opts o)
{
    o.on_event = on_event;
    o.arg = f;
    assert_int_equal(kin_supervisor_new(&f->sup, f->node, &o), KIN_OK);
}

static void
new_sup(fx *f, kin_strategy st, int intensity, int backoff_ms)
{
    new_sup_opts(f, (kin_supervisor_opts){.strategy = st,
                                          .intensity = intensity,
                                          .period_ms = 60000,
                                          .backoff_ms = backoff_ms});
}

/* Waits ms and asserts the supervisor saw nothing meanwhile. */
static void
assert_quiet_for(fx *f, int ms)
{
    uint64_t seq = kin_supervisor_changes(f->sup);
    kin_err e = kin_supervisor_wait(f->sup, seq, ms, NULL);
    if (e != KIN_ETIMEOUT)
        print_error("unexpected event; log: \"%s\"\n", f->log);
    assert_int_equal(e, KIN_ETIMEOUT);
}

static void
add_child(fx *f, const char *name, kin_restart restart)
{
    kin_child_spec spec = {.name = name, .restart = restart};
    assert_int_equal(kin_supervisor_add(f->sup, &spec), KIN_OK);
}

/* --- stop ----------------------------------------------------------------- */

static void
child_ignoring_sigterm_is_killed_after_its_timeout(void **state)
{
    fx *f = *state;
    enum { TIMEOUT = 1000 };
    kin_spawn_opts o = {.name = "stubborn", .stop_timeout_ms = TIMEOUT};
    assert_int_equal(kin_spawn(master, &o, &f->kids[0]), KIN_OK);
    kin_child *c = f->kids[0];
    pid_t pid = kin_child_pid(c);
    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(master, kin_child_id(c), "t.stubborn", 30000, &r, NULL),
        KIN_OK);
    kin_msg_destroy(&r);

    double t0 = harness_now_ms();
    int status = 0;
    assert_int_equal(kin_child_stop(c, &status), KIN_OK);
    double dt = harness_now_ms() - t0;
    print_message("stop of a child ignoring SIGTERM: %.1f ms (timeout %d)\n",
                  dt, TIMEOUT);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_true(dt >= TIMEOUT - 15);
    assert_true(dt <= TIMEOUT + 500);
    assert_true(kin_child_exited(c));
    assert_true(reaped(pid));
    kin_child_destroy(&f->kids[0]);
    assert_no_children();
}

/* --- spawn failures ---------------------------------------------------------
 */

static void
child_exiting_before_hello_is_espawn_with_stderr(void **state)
{
    char *argv[] = {"test_process", "--role=exit-early", NULL};
    char err[512] = "";
    kin_spawn_opts o = {.argv = argv, .errbuf = err, .errbuf_size = sizeof err};
    kin_child *c = NULL;
    assert_int_equal(kin_spawn(master, &o, &c), KIN_ESPAWN);
    assert_null(c);
    print_message("errbuf: %s\n", err);
    assert_non_null(strstr(err, kin_strerror(KIN_ESPAWN)));
    assert_non_null(strstr(err, EARLY_MARKER));
    assert_no_children();
}

static void
child_never_saying_hello_times_out(void **state)
{
    /* A program that is no kin child at all. */
    char *sleep_argv[] = {"sleep", "60", NULL};
    char err[512] = "";
    kin_spawn_opts o = {.program = "/bin/sleep",
                        .argv = sleep_argv,
                        .connect_timeout_ms = 300,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_child *c = NULL;
    assert_int_equal(kin_spawn(master, &o, &c), KIN_ETIMEOUT);
    assert_null(c);
    assert_non_null(strstr(err, kin_strerror(KIN_ETIMEOUT)));
    assert_no_children();

    /* One that talks on stderr first: its words end up in the error. */
    char *argv[] = {"test_process", "--role=silent", NULL};
    o = (kin_spawn_opts){.argv = argv,
                         .connect_timeout_ms = 2000,
                         .errbuf = err,
                         .errbuf_size = sizeof err};
    assert_int_equal(kin_spawn(master, &o, &c), KIN_ETIMEOUT);
    print_message("errbuf: %s\n", err);
    assert_non_null(strstr(err, SILENT_MARKER));
    assert_no_children();
}

static void
missing_or_unexecutable_program_fails_at_once(void **state)
{
    char err[512] = "";
    kin_spawn_opts o = {.program = "/nonexistent/kin-test-program",
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_child *c = NULL;
    double t0 = harness_now_ms();
    assert_int_equal(kin_spawn(master, &o, &c), -ENOENT);
    /* At once: nowhere near the 30 s connect timeout. */
    assert_true(harness_now_ms() - t0 < 5000);
    assert_null(c);
    assert_non_null(strstr(err, strerror(ENOENT)));
    assert_no_children();

    char path[] = "/tmp/kin-test-noexec-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, "#!/bin/sh\nexit 0\n", 17) == 17);
    close(fd);
    chmod(path, 0644);
    o.program = path;
    t0 = harness_now_ms();
    kin_err e = kin_spawn(master, &o, &c);
    unlink(path);
    assert_int_equal(e, -EACCES);
    assert_true(harness_now_ms() - t0 < 5000);
    assert_non_null(strstr(err, strerror(EACCES)));
    assert_no_children();
}

/* --- no orphans -------------------------------------------------------------
 */

/* The --role=tree-master program: a master with a child and a grandchild,
 * which reports "master child grandchild" pids on fd and waits to die. */
static int
tree_master(int fd)
{
    kin_node *n;
    kin_child *c;
    if (kin_init(&n, NULL) || kin_spawn(n, NULL, &c))
        return 1;
    int gpid = 0, gpgid = 0;
    if (call_ints(n, kin_child_id(c), "t.spawn_gc", &gpid, &gpgid))
        return 1;
    dprintf(fd, "%d %d %d\n", (int)getpid(), (int)kin_child_pid(c), gpid);
    close(fd);
    hang_forever();
    return 0;
}

static void
sigkilled_master_takes_its_whole_tree(void **state)
{
    fx *f = *state;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    char fdarg[32];
    snprintf(fdarg, sizeof fdarg, "%d", p[1]);
    char *argv[] = {"test_process", "--role=tree-master", fdarg, NULL};
    pid_t m = fork();
    assert_true(m >= 0);
    if (m == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fcntl(p[1], F_SETFD, 0);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    f->raw[0] = m;
    close(p[1]);
    /* The report comes once the tree is up (EOF if the master died). */
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    int ready = poll(&pfd, 1, 30000);
    FILE *in = fdopen(p[0], "r");
    int mp = 0, cp = 0, gp = 0;
    int got = ready == 1 ? fscanf(in, "%d %d %d", &mp, &cp, &gp) : 0;
    fclose(in);
    assert_int_equal(got, 3);
    assert_int_equal(mp, m);
    f->raw[1] = cp;
    f->raw[2] = gp;
    assert_true(harness_pid_alive(cp) && harness_pid_alive(gp));

    double t0 = harness_now_ms();
    assert_int_equal(kill(m, SIGKILL), 0);
    assert_int_equal(waitpid(m, NULL, 0), m);
    f->raw[0] = 0;
    assert_true(harness_wait_gone(cp, 2000));
    assert_true(harness_wait_gone(gp, 2000));
    forget_sockets(m);
    forget_sockets(cp);
    forget_sockets(gp);
    double dt = harness_now_ms() - t0;
    print_message("3-level tree gone %.1f ms after SIGKILL of its master\n",
                  dt);
    assert_true(dt <= 2000);
    f->raw[1] = f->raw[2] = 0;
    assert_no_children();
}

/* Spawns a child that spawns a grandchild; checks that each sits in a
 * process group of its own, so no group signal of ours can reach the
 * grandchild. */
static void
child_with_grandchild(fx *f, int slot, pid_t *gpid)
{
    assert_int_equal(kin_spawn(master, NULL, &f->kids[slot]), KIN_OK);
    uint32_t id = kin_child_id(f->kids[slot]);
    int cpid = 0, cpgid = 0, gpgid = 0;
    int g = 0;
    assert_int_equal(call_ints(master, id, "t.getpids", &cpid, &cpgid), 0);
    assert_int_equal(cpid, kin_child_pid(f->kids[slot]));
    assert_int_equal(cpgid, cpid);
    assert_int_not_equal(cpgid, getpgrp());
    assert_int_equal(call_ints(master, id, "t.spawn_gc", &g, &gpgid), 0);
    f->raw[slot] = g;
    assert_int_equal(gpgid, g);
    assert_int_not_equal(gpgid, cpgid);
    *gpid = g;
}

static void
grandchild_in_another_group_dies_with_its_parent(void **state)
{
    fx *f = *state;
    pid_t g;
    /* Stopped in order: the child stops its own children first. */
    child_with_grandchild(f, 0, &g);
    assert_int_equal(kin_child_stop(f->kids[0], NULL), KIN_OK);
    assert_true(harness_wait_gone(g, 2000));
    forget_sockets(g);
    f->raw[0] = 0;

    /* Killed outright: PR_SET_PDEATHSIG takes the grandchild. */
    child_with_grandchild(f, 1, &g);
    double t0 = harness_now_ms();
    kill(kin_child_pid(f->kids[1]), SIGKILL);
    assert_true(harness_wait_gone(g, 2000));
    forget_sockets(g);
    print_message("grandchild gone %.1f ms after SIGKILL of its parent\n",
                  harness_now_ms() - t0);
    f->raw[1] = 0;
    int status = 0;
    assert_int_equal(kin_child_wait(f->kids[1], 5000, &status), KIN_OK);
    assert_true(WIFSIGNALED(status));
    kin_child_destroy(&f->kids[0]);
    kin_child_destroy(&f->kids[1]);
    assert_no_children();
}

/* --- supervisor
 * --------------------------------------------------------------- */

/* Starts a, b, c; kills b; checks that exactly the `restarted` ones got
 * new processes, in the order the log says; stops in reverse. */
static void
strategy_case(fx *f, kin_strategy st, const char *expect,
              const bool restarted[3])
{
    static const char *const names[3] = {"a", "b", "c"};
    new_sup(f, st, 5, 0);
    for (int i = 0; i < 3; i++)
        add_child(f, names[i], KIN_RESTART_PERMANENT);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    assert_true(wait_log(f, "S:a S:b S:c ", 0));
    pid_t before[3];
    for (int i = 0; i < 3; i++)
        before[i] = child_pid(f, names[i]);
    log_clear(f);

    assert_int_equal(kill(before[1], SIGKILL), 0);
    assert_true(wait_log(f, expect, 30000));
    for (int i = 0; i < 3; i++) {
        kin_child_info info;
        assert_int_equal(kin_supervisor_child(f->sup, names[i], &info), KIN_OK);
        assert_int_equal(info.state, KIN_CHILD_RUNNING);
        assert_true(harness_pid_alive(info.pid));
        assert_int_equal(info.restarts, restarted[i] ? 1 : 0);
        if (restarted[i]) {
            assert_int_not_equal(info.pid, before[i]);
            assert_true(reaped(before[i]));
        } else {
            assert_int_equal(info.pid, before[i]);
        }
    }
    kin_child_info b;
    kin_supervisor_child(f->sup, "b", &b);
    assert_true(b.exited && WIFSIGNALED(b.last_status) &&
                WTERMSIG(b.last_status) == SIGKILL);
    assert_int_equal(kin_supervisor_state_get(f->sup), KIN_SUP_RUNNING);

    pid_t now[3];
    for (int i = 0; i < 3; i++)
        now[i] = child_pid(f, names[i]);
    log_clear(f);
    assert_int_equal(kin_supervisor_stop(f->sup), KIN_OK);
    assert_true(wait_log(f, "T:c T:b T:a ", 0));
    assert_int_equal(kin_supervisor_state_get(f->sup), KIN_SUP_STOPPED);
    for (int i = 0; i < 3; i++)
        assert_true(reaped(now[i]));
    assert_no_children();
}

static void
one_for_one_restarts_only_the_dead(void **state)
{
    const bool r[3] = {false, true, false};
    strategy_case(*state, KIN_ONE_FOR_ONE, "X:b S:b ", r);
}

static void
one_for_all_restarts_everyone(void **state)
{
    const bool r[3] = {true, true, true};
    strategy_case(*state, KIN_ONE_FOR_ALL, "X:b T:c T:a S:a S:b S:c ", r);
}

static void
rest_for_one_restarts_the_rest(void **state)
{
    const bool r[3] = {false, true, true};
    strategy_case(*state, KIN_REST_FOR_ONE, "X:b T:c S:b S:c ", r);
}

static void
exceeding_intensity_gives_up(void **state)
{
    fx *f = *state;
    new_sup(f, KIN_ONE_FOR_ONE, 2, 0);
    add_child(f, "a", KIN_RESTART_PERMANENT);
    add_child(f, "b", KIN_RESTART_PERMANENT);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    pid_t b = child_pid(f, "b");
    log_clear(f);
    /* Two restarts are allowed... */
    kill(child_pid(f, "a"), SIGKILL);
    assert_true(wait_log(f, "X:a S:a ", 30000));
    kill(child_pid(f, "a"), SIGKILL);
    assert_true(wait_log(f, "X:a S:a X:a S:a ", 30000));
    /* ...the third is one too many: everything stops, and it says so. */
    pid_t a = child_pid(f, "a");
    kill(a, SIGKILL);
    assert_true(wait_log(f, "X:a S:a X:a S:a X:a T:b G ", 30000));
    assert_int_equal(kin_supervisor_state_get(f->sup), KIN_SUP_GAVE_UP);
    kin_child_info info;
    kin_supervisor_child(f->sup, "a", &info);
    assert_int_equal(info.state, KIN_CHILD_EXITED);
    assert_int_equal(info.restarts, 2);
    assert_int_equal(info.pid, 0);
    kin_supervisor_child(f->sup, "b", &info);
    assert_int_equal(info.state, KIN_CHILD_STOPPED);
    assert_true(reaped(a) && reaped(b));
    assert_no_children();
}

static void
restart_types_are_honoured(void **state)
{
    fx *f = *state;
    new_sup(f, KIN_ONE_FOR_ONE, 10, 0);
    add_child(f, "perm", KIN_RESTART_PERMANENT);
    add_child(f, "tr", KIN_RESTART_TRANSIENT);
    add_child(f, "tr2", KIN_RESTART_TRANSIENT);
    add_child(f, "tmp", KIN_RESTART_TEMPORARY);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    kin_child_info info;
    log_clear(f);

    /* Transient, normal exit: left alone. */
    kin_supervisor_child(f->sup, "tr", &info);
    kin_call_nowait(f->node, info.id, "t.exit", "i", 0);
    assert_true(wait_log(f, "X:tr ", 30000));
    /* Temporary, killed: left alone. */
    kill(child_pid(f, "tmp"), SIGKILL);
    assert_true(wait_log(f, "X:tr X:tmp ", 30000));
    /* Permanent, normal exit: restarted. The supervisor handles exits one
     * by one, so by now it has decided about the two above. */
    kin_supervisor_child(f->sup, "perm", &info);
    kin_call_nowait(f->node, info.id, "t.exit", "i", 0);
    assert_true(wait_log(f, "X:tr X:tmp X:perm S:perm ", 30000));
    /* Transient, abnormal exit: restarted. */
    kin_supervisor_child(f->sup, "tr2", &info);
    kin_call_nowait(f->node, info.id, "t.exit", "i", 3);
    assert_true(wait_log(f, "X:tr X:tmp X:perm S:perm X:tr2 S:tr2 ", 30000));

    kin_supervisor_child(f->sup, "tr", &info);
    assert_int_equal(info.state, KIN_CHILD_EXITED);
    assert_true(info.exited && WIFEXITED(info.last_status) &&
                WEXITSTATUS(info.last_status) == 0);
    assert_int_equal(info.restarts, 0);
    kin_supervisor_child(f->sup, "tmp", &info);
    assert_int_equal(info.state, KIN_CHILD_EXITED);
    assert_int_equal(info.restarts, 0);
    kin_supervisor_child(f->sup, "tr2", &info);
    assert_int_equal(info.state, KIN_CHILD_RUNNING);
    assert_true(WIFEXITED(info.last_status) &&
                WEXITSTATUS(info.last_status) == 3);
    assert_int_equal(info.restarts, 1);
    /* Stopping skips the exited ones and goes in reverse order. */
    log_clear(f);
    assert_int_equal(kin_supervisor_stop(f->sup), KIN_OK);
    assert_true(wait_log(f, "T:tr2 T:perm ", 0));
    assert_no_children();
}

/* Each restart inside the period waits twice as long as the one before,
 * up to the cap: B, 2B, 4B, then 4B again (uncapped it would be 8B; linear
 * growth would give 3B for the third). A gap runs from the exit reaching
 * the supervisor to the fork of the next process; lower bounds are exact
 * (the supervisor never starts early), the one upper bound leaves 2B of
 * slack for a loaded machine. */
static void
restarts_back_off_exponentially_up_to_the_cap(void **state)
{
    fx *f = *state;
    enum { B = 150, CAP = 4 * B, RESTARTS = 4, TICK = 10 };
    new_sup_opts(f, (kin_supervisor_opts){.strategy = KIN_ONE_FOR_ONE,
                                          .intensity = 10,
                                          .period_ms = 60000,
                                          .backoff_ms = B,
                                          .backoff_max_ms = CAP});
    add_child(f, "a", KIN_RESTART_PERMANENT);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    log_clear(f);
    char want[256] = "";
    for (int i = 0; i < RESTARTS; i++) {
        assert_int_equal(kill(child_pid(f, "a"), SIGKILL), 0);
        strcat(want, "X:a S:a ");
        assert_true(wait_log(f, want, 30000));
    }
    const double expect[RESTARTS] = {B, 2 * B, 4 * B, CAP};
    double gap[RESTARTS];
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->n_exited, RESTARTS);
    assert_int_equal(f->n_started, RESTARTS + 1); /* forked_at[0]: first */
    for (int i = 0; i < RESTARTS; i++) {
        assert_true(f->forked_at[i + 1] > 0);
        gap[i] = f->forked_at[i + 1] - f->exited_at[i];
    }
    pthread_mutex_unlock(&f->mu);
    print_message("restart gaps: %.0f %.0f %.0f %.0f ms (backoff %d, cap %d; "
                  "ratios %.2f %.2f %.2f)\n",
                  gap[0], gap[1], gap[2], gap[3], B, CAP, gap[1] / gap[0],
                  gap[2] / gap[1], gap[3] / gap[2]);
    /* The fork time is rounded down to a clock tick. */
    for (int i = 0; i < RESTARTS; i++)
        if (gap[i] < expect[i] - TICK - 1)
            fail_msg("restart %d came after %.0f ms, before its backoff of "
                     "%.0f ms",
                     i + 1, gap[i], expect[i]);
    /* At the cap it stops growing. */
    if (gap[3] >= CAP + 2 * B)
        fail_msg("restart 4 came after %.0f ms: the backoff grew past its cap "
                 "of %d ms",
                 gap[3], CAP);
}

/* The intensity counts only restarts inside the period: with intensity 2
 * in a short period, crashes spaced wider than the period go on being
 * restarted however many there are; three quick ones make it give up. */
static void
intensity_counts_only_restarts_within_the_period(void **state)
{
    fx *f = *state;
    enum { PERIOD = 500, SPACING = PERIOD + 150 };
    new_sup_opts(f, (kin_supervisor_opts){.strategy = KIN_ONE_FOR_ONE,
                                          .intensity = 2,
                                          .period_ms = PERIOD,
                                          .backoff_ms = -1});
    add_child(f, "a", KIN_RESTART_PERMANENT);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    log_clear(f);
    char want[256] = "";
    for (int i = 0; i < 4; i++) {
        /* Nothing happens meanwhile, and the last restart leaves the
         * period. */
        assert_quiet_for(f, SPACING);
        assert_int_equal(kill(child_pid(f, "a"), SIGKILL), 0);
        strcat(want, "X:a S:a ");
        assert_true(wait_log(f, want, 30000));
    }
    assert_int_equal(kin_supervisor_state_get(f->sup), KIN_SUP_RUNNING);
    kin_child_info info;
    assert_int_equal(kin_supervisor_child(f->sup, "a", &info), KIN_OK);
    assert_int_equal(info.restarts, 4);

    /* Now two crashes in quick succession: with the last spaced restart,
     * the second makes three restarts within the period. */
    double t0 = harness_now_ms();
    assert_int_equal(kill(child_pid(f, "a"), SIGKILL), 0);
    strcat(want, "X:a S:a ");
    assert_true(wait_log(f, want, 30000));
    pid_t a = child_pid(f, "a");
    print_message("a quick restart took %.0f ms (period %d ms)\n",
                  harness_now_ms() - t0, PERIOD);
    assert_int_equal(kill(a, SIGKILL), 0);
    strcat(want, "X:a G ");
    assert_true(wait_log(f, want, 30000));
    assert_int_equal(kin_supervisor_state_get(f->sup), KIN_SUP_GAVE_UP);
    assert_true(reaped(a));
    assert_no_children();
}

/* --- emergency stop
 * ----------------------------------------------------------- */

static void
emergency_exit_stops_everything_and_is_not_restarted(void **state)
{
    fx *f = *state;
    new_sup(f, KIN_ONE_FOR_ALL, 5, 0);
    add_child(f, "a", KIN_RESTART_PERMANENT);
    add_child(f, "b", KIN_RESTART_PERMANENT);
    add_child(f, "c", KIN_RESTART_PERMANENT);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    pid_t pa = child_pid(f, "a"), pc = child_pid(f, "c");
    kin_child_info b;
    kin_supervisor_child(f->sup, "b", &b);
    log_clear(f);

    kin_call_nowait(f->node, b.id, "t.exit", "i", KIN_EXIT_EMERGENCY);
    assert_true(wait_log(f, "X:b T:c T:a E ", 30000));
    assert_int_equal(kin_supervisor_state_get(f->sup), KIN_SUP_EMERGENCY);
    kin_supervisor_child(f->sup, "b", &b);
    assert_int_equal(b.state, KIN_CHILD_EXITED);
    assert_true(b.emergency);
    assert_int_equal(WEXITSTATUS(b.last_status), KIN_EXIT_EMERGENCY);
    assert_int_equal(b.restarts, 0);
    uint32_t origin = 0;
    assert_true(kin_emergency_stopped(f->node, &origin));
    assert_int_equal(origin, b.id);
    assert_int_equal(kin_emergency_wait(f->node, 5000), KIN_OK);
    assert_true(reaped(pa) && reaped(pc));
    /* For good: nothing starts on this node any more. */
    assert_int_equal(kin_supervisor_start(f->sup), KIN_EEMERGENCY);
    kin_child *c = NULL;
    assert_int_equal(kin_spawn(f->node, NULL, &c), KIN_EEMERGENCY);
    assert_null(c);
    assert_no_children();
}

static void
emergency_travels_up_from_a_grandchild(void **state)
{
    fx *f = *state;
    assert_int_equal(kin_spawn(f->node, NULL, &f->kids[0]), KIN_OK);
    assert_int_equal(kin_spawn(f->node, NULL, &f->kids[1]), KIN_OK);
    uint32_t id = kin_child_id(f->kids[0]);
    int g = 0, gpgid = 0;
    assert_int_equal(call_ints(f->node, id, "t.spawn_gc", &g, &gpgid), 0);
    f->raw[0] = g;
    pid_t bystander = kin_child_pid(f->kids[1]);

    assert_int_equal(
        kin_call_nowait(f->node, id, "t.gc_exit", "i", KIN_EXIT_EMERGENCY),
        KIN_OK);
    /* The child saw its child's emergency and exited with it. */
    int status = 0;
    assert_int_equal(kin_child_wait(f->kids[0], 30000, &status),
                     KIN_EEMERGENCY);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == KIN_EXIT_EMERGENCY);
    assert_int_equal(kin_emergency_wait(f->node, 10000), KIN_OK);
    uint32_t origin = 0;
    assert_true(kin_emergency_stopped(f->node, &origin));
    assert_int_equal(origin, id);
    assert_true(reaped(bystander));
    assert_true(harness_wait_gone(g, 2000));
    forget_sockets(g);
    f->raw[0] = 0;
    assert_no_children();
}

static void
emergency_stop_call_in_a_child_stops_the_tree(void **state)
{
    fx *f = *state;
    pid_t g = 0;
    assert_int_equal(kin_spawn(f->node, NULL, &f->kids[0]), KIN_OK);
    assert_int_equal(kin_spawn(f->node, NULL, &f->kids[1]), KIN_OK);
    uint32_t id = kin_child_id(f->kids[0]);
    int gpgid = 0, gi = 0;
    assert_int_equal(call_ints(f->node, id, "t.spawn_gc", &gi, &gpgid), 0);
    g = gi;
    f->raw[0] = g;
    assert_int_equal(kin_call_nowait(f->node, id, "t.estop", NULL), KIN_OK);
    int status = 0;
    assert_int_equal(kin_child_wait(f->kids[0], 30000, &status),
                     KIN_EEMERGENCY);
    assert_int_equal(kin_emergency_wait(f->node, 10000), KIN_OK);
    assert_true(kin_child_exited(f->kids[1]));
    assert_true(harness_wait_gone(g, 2000));
    forget_sockets(g);
    f->raw[0] = 0;
    assert_no_children();
}

static void
emergency_stop_call_in_the_master(void **state)
{
    fx *f = *state;
    assert_int_equal(kin_spawn(f->node, NULL, &f->kids[0]), KIN_OK);
    assert_int_equal(kin_spawn(f->node, NULL, &f->kids[1]), KIN_OK);
    int g = 0, gpgid = 0;
    assert_int_equal(
        call_ints(f->node, kin_child_id(f->kids[0]), "t.spawn_gc", &g, &gpgid),
        0);
    f->raw[0] = g;
    assert_false(kin_emergency_stopped(f->node, NULL));
    assert_int_equal(kin_emergency_stop(f->node), KIN_OK);
    assert_int_equal(kin_emergency_wait(f->node, 10000), KIN_OK);
    uint32_t origin = 99;
    assert_true(kin_emergency_stopped(f->node, &origin));
    assert_int_equal(origin, kin_node_id(f->node));
    for (int i = 0; i < 2; i++) {
        int status = 0;
        kin_child_wait(f->kids[i], 0, &status);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    }
    assert_true(harness_wait_gone(g, 2000));
    forget_sockets(g);
    f->raw[0] = 0;
    assert_no_children();
}

/* --- sudo factory --------------------------------------------------------- */

/* The other user must be able to run the program, and a checkout may live
 * where only we can go (a 0700 home or build directory): the child runs a
 * copy of this executable in a fresh 0755 directory under /tmp. Fills dir
 * and path; returns 0, or -1 with why set (what is made is removed). */
static int
reachable_copy(char *dir, size_t dsize, char *path, size_t psize, char *why,
               size_t wsize)
{
    snprintf(dir, dsize, "/tmp/kin-sudo-test.XXXXXX");
    if (!mkdtemp(dir)) {
        snprintf(why, wsize, "mkdtemp %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(path, psize, "%s/test_process", dir);
    int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    bool ok = in >= 0 && out >= 0;
    char buf[65536];
    ssize_t n;
    while (ok && (n = read(in, buf, sizeof buf)) != 0)
        ok = n > 0 && write(out, buf, (size_t)n) == n;
    if (ok)
        snprintf(why, wsize, "copied");
    else
        snprintf(why, wsize, "copying this program to %s: %s", path,
                 strerror(errno));
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out))
        ok = false;
    ok = ok && !chmod(path, 0755) && !chmod(dir, 0755);
    if (!ok) {
        unlink(path);
        rmdir(dir);
        return -1;
    }
    return 0;
}

static void
sudo_child_runs_as_the_other_user(void **state)
{
    fx *f = *state;
    /* Where sudo can run a command as nobody without a password (root
     * with Debian's default sudoers) the test runs; elsewhere it says
     * why it skips. */
    struct passwd *pw = getpwnam("nobody");
    if (access("/usr/bin/sudo", X_OK) || !pw ||
        system("sudo -n -u nobody true >/dev/null 2>&1") != 0) {
        harness_skip("sudo -n -u nobody is not available here");
    }
    kin_child *c = NULL;
    char why[512] = "";
    kin_spawn_opts o = {.user = "nobody",
                        .connect_timeout_ms = 10000,
                        .errbuf = why,
                        .errbuf_size = sizeof why};
    /* The default ipc endpoint is private: refused at once, clearly. */
    assert_int_equal(kin_spawn(master, &o, &c), -EACCES);
    assert_null(c);
    char dir[64], path[128];
    if (reachable_copy(dir, sizeof dir, path, sizeof path, why, sizeof why))
        fail_msg("%s", why);
    struct statvfs vfs;
    bool noexec = !statvfs(dir, &vfs) && (vfs.f_flag & ST_NOEXEC);
    kin_err e = -EACCES;
    if (!noexec) {
        o.program = path;
        e = kin_spawn(f->own, &o, &f->kids[0]);
    }
    /* Running, the child needs the file no more: removed before any check
     * can fail. */
    unlink(path);
    rmdir(dir);
    if (noexec)
        harness_skip("/tmp is mounted noexec");
    if (e)
        fail_msg("sudo spawn: %s: %s", kin_strerror(e), why);
    /* Its log records reach the tree's forwarder: the backend of a master
     * bound on tcp is tcp with CURVE, which the child's key opens. */
    kin_logsub_opts so = {.endpoint = kin_logs_frontend(f->own),
                          .min_level = KIN_LOG_WARNING};
    kin_logsub *s = NULL;
    assert_int_equal(kin_logsub_new(&s, &so), KIN_OK);
    int uid = -1, pid = 0;
    bool logged = false;
    double end = harness_now_ms() + 10000;
    while (!logged && harness_now_ms() < end) {
        kin_msg *r = NULL;
        assert_int_equal(kin_call_sync(f->own, kin_child_id(f->kids[0]),
                                       "t.whoami", 5000, &r, NULL),
                         KIN_OK);
        assert_int_equal(kin_msg_unpack(r, "ii", &uid, &pid), KIN_OK);
        kin_msg_destroy(&r);
        const kin_logrec *rec;
        while (!logged && kin_logsub_next(s, 50, &rec) == KIN_OK)
            logged = rec->kind == KIN_LOGREC_LOG &&
                     !strcmp(rec->msg, "whoami") &&
                     rec->ctx == kin_child_id(f->kids[0]);
    }
    kin_logsub_destroy(&s);
    assert_int_equal(uid, (int)pw->pw_uid);
    assert_true(logged);
    /* Stopped like any child: the context as nobody, and sudo, are gone. */
    int status = 0;
    assert_int_equal(kin_child_stop(f->kids[0], &status), KIN_OK);
    assert_true(harness_wait_gone(pid, 2000));
    assert_false(harness_pid_alive(kin_child_pid(f->kids[0])));
}

/* Heartbeats are for links to other hosts: a local child stopped (as in a
 * debugger) for longer than the heartbeat timeout keeps its link, and
 * answers once it goes on. */
static void
paused_local_child_keeps_its_link(void **state)
{
    fx *f = *state;
    kin_node_opts o = {
        .name = "hb-master", .heartbeat_ms = 100, .heartbeat_timeout_ms = 300};
    assert_int_equal(kin_node_new(&f->own, &o), KIN_OK);
    assert_int_equal(kin_spawn(f->own, NULL, &f->kids[0]), KIN_OK);
    kin_msg *r = NULL;
    int uid, pid;
    assert_int_equal(kin_call_sync(f->own, kin_child_id(f->kids[0]), "t.whoami",
                                   5000, &r, NULL),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "ii", &uid, &pid), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    usleep(1000 * 1000); /* the point: over three heartbeat timeouts */
    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(kin_call_sync(f->own, kin_child_id(f->kids[0]), "t.whoami",
                                   5000, &r, NULL),
                     KIN_OK);
    kin_msg_destroy(&r);
    assert_false(kin_child_exited(f->kids[0]));
}

/* --- main ------------------------------------------------------------------
 */

int
main(int argc, char **argv)
{
    export_all();
    if (argc > 1 && !strcmp(argv[1], "--role=exit-early")) {
        fprintf(stderr, "%s\n", EARLY_MARKER);
        return 7;
    }
    if (argc > 1 && !strcmp(argv[1], "--role=silent")) {
        fprintf(stderr, "%s\n", SILENT_MARKER);
        fflush(stderr);
        sleep(60);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[1], "--role=tree-master"))
        return tree_master(atoi(argv[2]));

    harness_log_setup();
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            child_ignoring_sigterm_is_killed_after_its_timeout, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            child_exiting_before_hello_is_espawn_with_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(child_never_saying_hello_times_out,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            missing_or_unexecutable_program_fails_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(sigkilled_master_takes_its_whole_tree,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            grandchild_in_another_group_dies_with_its_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(one_for_one_restarts_only_the_dead,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(one_for_all_restarts_everyone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rest_for_one_restarts_the_rest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(exceeding_intensity_gives_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(restart_types_are_honoured, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            restarts_back_off_exponentially_up_to_the_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(
            intensity_counts_only_restarts_within_the_period, setup, teardown),
        cmocka_unit_test_setup_teardown(
            emergency_exit_stops_everything_and_is_not_restarted,
            setup_own_node, teardown),
        cmocka_unit_test_setup_teardown(emergency_travels_up_from_a_grandchild,
                                        setup_own_node, teardown),
        cmocka_unit_test_setup_teardown(
            emergency_stop_call_in_a_child_stops_the_tree, setup_own_node,
            teardown),
        cmocka_unit_test_setup_teardown(emergency_stop_call_in_the_master,
                                        setup_own_node, teardown),
        cmocka_unit_test_setup_teardown(sudo_child_runs_as_the_other_user,
                                        setup_own_node, teardown),
        cmocka_unit_test_setup_teardown(paused_local_child_keeps_its_link,
                                        setup, teardown),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
