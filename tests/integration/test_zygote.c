/* The fork factory (kin_spawn_opts.fork) with real processes: a forked
 * child answers calls and is the node's own child in a group of its own,
 * siblings draw different random numbers, a supervisor restarts a killed
 * one by forking again, and stop, node destroy and the emergency stop
 * leave no process (children, zygote) and nothing in the runtime dir.
 * The test binary is also the zygote and every child. */
#include <dirent.h>
#include <errno.h>
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

/* --- helpers ------------------------------------------------------------- */

/* Pids of this process's children (live or zombie), up to max. */
static int
our_children(pid_t *out, int max)
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
        if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == getpid() &&
            n < max)
            out[n++] = atoi(de->d_name);
    }
    closedir(d);
    return n;
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

static size_t
runtime_files(void)
{
    const char *rt = getenv("XDG_RUNTIME_DIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/kin", rt ? rt : "/tmp");
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
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
    kin_spawn_opts o = {.fork = true, .errbuf = why, .errbuf_size = sizeof why};
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
    assert_int_equal(runtime_files(), 0);
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
    assert_int_equal(runtime_files(), 0);
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
    assert_int_equal(runtime_files(), 0);
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
    assert_null(c);
    assert_int_equal(children_left(), 0); /* no zygote for nothing */
}

int
main(int argc, char **argv)
{
    kin_export("z.getpids", getpids, NULL, KIN_POLICY_PARENT);
    kin_export("z.draw", draw, NULL, KIN_POLICY_PARENT);
    harness_log_setup();
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
    };
    return harness_run_group(tests);
}
