/* The runtime directory stays clean while a tree lives: a SIGKILLed
 * context's socket file goes when its parent reaps it, and those of its
 * own children (killed with it by PR_SET_PDEATHSIG, reaped by init) go by
 * the sweeps its parent makes after the reap; the live contexts' files
 * stay and the tree still answers. A sweep removes only files of gone
 * processes (zombies included) on which nothing listens. The test binary
 * is every context. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "integration/harness.h"

static kin_node *master;

/* --- served by every context ---------------------------------------------- */

static kin_child *leaves[2]; /* a hub's */

/* Starts two leaves under this context; returns "pid id pid id". */
static kin_err
spawn_leaves(kin_call *c, void *arg)
{
    static const char *const names[2] = {"leaf-1", "leaf-2"};
    for (int i = 0; i < 2; i++) {
        kin_spawn_opts o = {.name = names[i]};
        kin_err e =
            leaves[i] ? KIN_OK : kin_spawn(kin_call_node(c), &o, &leaves[i]);
        if (e)
            return kin_call_fail(c, e, "spawn: %s", kin_strerror(e));
    }
    return kin_call_return(
        c, "iiii", (int)kin_child_pid(leaves[0]), (int)kin_child_id(leaves[0]),
        (int)kin_child_pid(leaves[1]), (int)kin_child_id(leaves[1]));
}

static kin_err
getpid_fn(kin_call *c, void *arg)
{
    return kin_call_return(c, "i", (int)getpid());
}

/* --- helpers -------------------------------------------------------------- */

static char rundir[256]; /* $XDG_RUNTIME_DIR/kin or /tmp/kin-UID */

static void
sock_path(char *out, size_t size, pid_t pid, uint32_t id)
{
    snprintf(out, size, "%s/%d-%u.sock", rundir, (int)pid, id);
}

static bool
exists(pid_t pid, uint32_t id)
{
    char path[512];
    sock_path(path, sizeof path, pid, id);
    return !access(path, F_OK);
}

/* Waits, on inotify events of the runtime directory (watched by fd since
 * before the kill, so no removal is missed), until none of the n files
 * (pids[i], ids[i]) exists, or timeout_ms passes. */
static bool
wait_files_gone(int fd, const pid_t *pids, const uint32_t *ids, int n,
                int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    for (;;) {
        int left_files = 0;
        for (int i = 0; i < n; i++)
            left_files += exists(pids[i], ids[i]);
        if (!left_files)
            return true;
        int left = (int)(end - harness_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            for (int i = 0; i < n; i++)
                if (exists(pids[i], ids[i]))
                    print_error("still there: %d-%u.sock\n", (int)pids[i],
                                ids[i]);
            return false;
        }
        char buf[4096];
        while (read(fd, buf, sizeof buf) > 0)
            ;
    }
}

typedef struct fx {
    kin_supervisor *sup;
    int ino; /* inotify, watching rundir */
    /* EXITED events, and how many found the child's file still there
     * (written on the supervisor's thread, read after its change). */
    _Atomic int exits, files_at_exit;
} fx;

/* The supervisor hears of an exit after the reap: by then the child's
 * socket file must be gone. */
static void
on_event(kin_supervisor *s, const kin_sup_event *ev, void *arg)
{
    fx *f = arg;
    if (ev->kind != KIN_SUP_EV_EXITED)
        return;
    if (exists(ev->pid, ev->id)) {
        print_error("%s exited (pid %d), its file is still there\n", ev->child,
                    (int)ev->pid);
        f->files_at_exit++;
    }
    f->exits++;
}

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (f->ino < 0 || inotify_add_watch(f->ino, rundir, IN_DELETE) < 0) {
        fprintf(stderr, "inotify on %s: %s\n", rundir, strerror(errno));
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
    close(f->ino);
    free(f);
    return 0;
}

/* Waits (on the supervisor's change counter) until child name runs again
 * after its restarts-th restart; its info in *out. */
static bool
wait_restarted(fx *f, const char *name, unsigned restarts, int timeout_ms,
               kin_child_info *out)
{
    double end = harness_now_ms() + timeout_ms;
    for (;;) {
        uint64_t seq = kin_supervisor_changes(f->sup);
        if (kin_supervisor_child(f->sup, name, out) == KIN_OK &&
            out->restarts >= restarts && out->state == KIN_CHILD_RUNNING)
            return true;
        int left = (int)(end - harness_now_ms());
        if (left <= 0 || kin_supervisor_wait(f->sup, seq, left, NULL)) {
            print_error("%s: not running again after %u restarts\n", name,
                        restarts);
            return false;
        }
    }
}

static kin_child_info
child_info(fx *f, const char *name)
{
    kin_child_info info;
    assert_int_equal(kin_supervisor_child(f->sup, name, &info), KIN_OK);
    assert_int_equal(info.state, KIN_CHILD_RUNNING);
    return info;
}

/* --- tests ---------------------------------------------------------------- */

/* master → hub → leaf-1, leaf-2, and master → worker, under the master's
 * supervisor. SIGKILL the hub: once it runs again no file of the old
 * hub or of its leaves is left, the live contexts' files are there and
 * the tree answers (a call, `kin tree`). SIGKILL the worker: its file is
 * gone by the time its supervisor hears of the exit. */
static void
sigkilled_hub_and_its_leaves_leave_no_socket_files(void **state)
{
    fx *f = *state;
    kin_supervisor_opts so = {.strategy = KIN_ONE_FOR_ONE,
                              .intensity = 10,
                              .period_ms = 60000,
                              .on_event = on_event,
                              .arg = f};
    assert_int_equal(kin_supervisor_new(&f->sup, master, &so), KIN_OK);
    kin_child_spec hub_spec = {.name = "hub", .restart = KIN_RESTART_PERMANENT};
    kin_child_spec worker_spec = {.name = "worker",
                                  .restart = KIN_RESTART_PERMANENT};
    assert_int_equal(kin_supervisor_add(f->sup, &hub_spec), KIN_OK);
    assert_int_equal(kin_supervisor_add(f->sup, &worker_spec), KIN_OK);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    kin_child_info hub = child_info(f, "hub");
    kin_child_info worker = child_info(f, "worker");

    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(master, hub.id, "rt.leaves", 30000, &r, NULL), KIN_OK);
    int p1 = 0, i1 = 0, p2 = 0, i2 = 0;
    assert_int_equal(kin_msg_unpack(r, "iiii", &p1, &i1, &p2, &i2), KIN_OK);
    kin_msg_destroy(&r);
    pid_t dead[3] = {hub.pid, (pid_t)p1, (pid_t)p2};
    uint32_t dead_ids[3] = {hub.id, (uint32_t)i1, (uint32_t)i2};
    for (int i = 0; i < 3; i++)
        assert_true(exists(dead[i], dead_ids[i]));
    assert_true(exists(worker.pid, worker.id));
    assert_true(exists(getpid(), KIN_MASTER_ID));

    double t0 = harness_now_ms();
    assert_int_equal(kill(hub.pid, SIGKILL), 0);
    kin_child_info hub2;
    assert_true(wait_restarted(f, "hub", 1, 30000, &hub2));
    assert_int_not_equal(hub2.pid, hub.pid);
    /* Its parent removed the hub's file before it reaped it. */
    assert_int_equal(f->exits, 1);
    assert_int_equal(f->files_at_exit, 0);
    /* The leaves', by the sweeps after the reap. */
    assert_true(wait_files_gone(f->ino, dead, dead_ids, 3, 15000));
    print_message("no file of the killed hub and its 2 leaves %.1f ms after "
                  "its SIGKILL\n",
                  harness_now_ms() - t0);
    assert_false(harness_pid_alive((pid_t)p1));
    assert_false(harness_pid_alive((pid_t)p2));

    /* The living are untouched and answer. */
    assert_true(exists(hub2.pid, hub2.id));
    assert_true(exists(worker.pid, worker.id));
    assert_true(exists(getpid(), KIN_MASTER_ID));
    int got = 0;
    assert_int_equal(
        kin_call_sync(master, hub2.id, "rt.getpid", 30000, &r, NULL), KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "i", &got), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(got, hub2.pid);
    int status = -1;
    char *out = harness_run(&status, "%s tree %d 2>&1", KIN_CLI, (int)getpid());
    print_message("kin tree:\n%s", out);
    bool listed = strstr(out, " hub ") && strstr(out, " worker ");
    free(out);
    assert_int_equal(status, 0);
    assert_true(listed);

    /* A plain child: its file is gone when its exit is known. */
    assert_int_equal(kill(worker.pid, SIGKILL), 0);
    kin_child_info worker2;
    assert_true(wait_restarted(f, "worker", 1, 30000, &worker2));
    assert_int_equal(f->exits, 2);
    assert_int_equal(f->files_at_exit, 0);
    assert_true(exists(worker2.pid, worker2.id));
    assert_true(exists(hub2.pid, hub2.id));
}

/* A dead process's pid: forked, exited and reaped (no longer anyone's
 * unless recycled within this test, which the listener check also
 * covers). With zombie set, the child is left unreaped (*zombie = its
 * pid) and that is returned. */
static pid_t
dead_pid(bool zombie)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    if (zombie) {
        /* A zombie once it has exited: wait for that without reaping. */
        siginfo_t si = {0};
        assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
        return pid;
    }
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

/* A unix socket bound at the path of (pid, id); listening, or closed at
 * once (a file a killed process left). Returns the fd, or -1 closed. */
static int
plant(pid_t pid, uint32_t id, bool listen_on)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    sock_path(a.sun_path, sizeof a.sun_path, pid, id);
    unlink(a.sun_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    if (listen_on) {
        assert_int_equal(listen(fd, 4), 0);
        return fd;
    }
    close(fd);
    return -1;
}

/* What a sweep removes (a master's start sweeps; so does a context after
 * reaping a child): files of processes gone, zombies included; never one
 * something listens on (a context in another pid namespace sharing the
 * directory), nor one of a live process. */
static void
sweep_removes_only_files_of_gone_processes_nobody_listens_on(void **state)
{
    enum { ID = 4000000000u };
    pid_t gone = dead_pid(false), zombie = dead_pid(true);
    int listener = plant(gone, ID + 1, true);
    plant(gone, ID + 2, false);
    plant(zombie, ID + 3, false);
    plant(getpid(), ID + 4, false); /* live pid, no listener */
    kin_node *n = NULL;
    kin_node_opts o = {.name = "sweeper"};
    assert_int_equal(kin_node_new(&n, &o), KIN_OK);
    bool kept_listened = exists(gone, ID + 1);
    bool removed_dead = !exists(gone, ID + 2);
    bool removed_zombie = !exists(zombie, ID + 3);
    bool kept_live = exists(getpid(), ID + 4);
    kin_node_destroy(&n);
    waitpid(zombie, NULL, 0);
    close(listener);
    char path[512];
    for (uint32_t i = 1; i <= 4; i++) {
        sock_path(path, sizeof path,
                  i == 3   ? zombie
                  : i == 4 ? getpid()
                           : gone,
                  ID + i);
        unlink(path);
    }
    assert_true(kept_listened);
    assert_true(removed_dead);
    assert_true(removed_zombie);
    assert_true(kept_live);
}

/* --- main ----------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    kin_export("rt.leaves", spawn_leaves, NULL, KIN_POLICY_PARENT);
    kin_export("rt.getpid", getpid_fn, NULL, KIN_POLICY_PARENT);
    harness_log_setup();
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && *xdg)
        snprintf(rundir, sizeof rundir, "%s/kin", xdg);
    else
        snprintf(rundir, sizeof rundir, "/tmp/kin-%u", (unsigned)getuid());
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            sigkilled_hub_and_its_leaves_leave_no_socket_files, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            sweep_removes_only_files_of_gone_processes_nobody_listens_on, setup,
            teardown),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
