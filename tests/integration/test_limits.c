/* A child's resource limits, working directory and environment
 * (kin_spawn_opts.rlimits, cwd, env) seen by real child processes, the
 * errors for bad ones, their survival across supervisor restarts, and
 * exhaustion: the fd limit reached while spawning gives -EMFILE and the
 * node keeps serving. The test binary is also every child program
 * (kin_init) and the exhausted master (--role=fd-exhaust). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "integration/harness.h"

static kin_node *master;

/* --- served by every child -------------------------------------------------
 */

/* The child's RLIMIT_NOFILE (soft, hard), working directory and the
 * values of two environment variables ("" when unset). */
static kin_err
fn_limits(kin_call *c, void *arg)
{
    struct rlimit r;
    char cwd[512];
    if (getrlimit(RLIMIT_NOFILE, &r) || !getcwd(cwd, sizeof cwd))
        return -errno;
    const char *color = getenv("KIN_TEST_COLOR");
    const char *home = getenv("HOME");
    return kin_call_return(c, "IIsss", (int64_t)r.rlim_cur, (int64_t)r.rlim_max,
                           cwd, color ? color : "", home ? home : "");
}

static kin_err
fn_pid(kin_call *c, void *arg)
{
    return kin_call_return(c, "i", (int)getpid());
}

static kin_err
fn_exit(kin_call *c, void *arg)
{
    _exit(5);
}

typedef struct seen {
    int64_t soft, hard;
    char cwd[512], color[64], home[256];
} seen;

static kin_err
ask_limits(kin_node *n, uint32_t id, seen *s)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(n, id, "t.limits", 5000, &r, NULL);
    char *cwd = NULL, *color = NULL, *home = NULL;
    if (!e)
        e = kin_msg_unpack(r, "IIsss", &s->soft, &s->hard, &cwd, &color, &home);
    if (!e) {
        snprintf(s->cwd, sizeof s->cwd, "%s", cwd);
        snprintf(s->color, sizeof s->color, "%s", color);
        snprintf(s->home, sizeof s->home, "%s", home);
    }
    free(cwd);
    free(color);
    free(home);
    kin_msg_destroy(&r);
    return e;
}

/* --- the tests ---------------------------------------------------------------
 */

static void
child_sees_its_limits_cwd_and_env(void **state)
{
    char dir[] = "/tmp/kin-limits-cwd-XXXXXX";
    assert_non_null(mkdtemp(dir));
    setenv("KIN_TEST_COLOR", "grey", 1); /* replaced for the child */
    kin_rlimit lim[] = {{RLIMIT_NOFILE, 37, 64}};
    char *env[] = {"KIN_TEST_COLOR=teal", "HOME=/nowhere/home", NULL};
    kin_spawn_opts o = {.name = "limited",
                        .rlimits = lim,
                        .n_rlimits = 1,
                        .cwd = dir,
                        .env = env};
    kin_child *c = NULL;
    kin_err e = kin_spawn(master, &o, &c);
    seen s = {0};
    kin_err asked = e ? e : ask_limits(master, kin_child_id(c), &s);
    kin_child_destroy(&c);
    rmdir(dir);
    unsetenv("KIN_TEST_COLOR");
    assert_int_equal(e, KIN_OK);
    assert_int_equal(asked, KIN_OK);
    assert_int_equal(s.soft, 37);
    assert_int_equal(s.hard, 64);
    assert_string_equal(s.cwd, dir);
    assert_string_equal(s.color, "teal");
    assert_string_equal(s.home, "/nowhere/home");
}

static void
expect_spawn_error(const kin_spawn_opts *in, kin_err want, const char *words)
{
    char why[512] = "";
    kin_spawn_opts o = *in;
    o.errbuf = why;
    o.errbuf_size = sizeof why;
    kin_child *c = NULL;
    kin_err e = kin_spawn(master, &o, &c);
    if (c)
        kin_child_destroy(&c);
    if (e != want || !strstr(why, words))
        print_error("want %s with \"%s\", got %s: \"%s\"\n", kin_strerror(want),
                    words, kin_strerror(e), why);
    assert_int_equal(e, want);
    assert_non_null(strstr(why, words));
}

static void
bad_limits_cwd_and_env_fail_with_specific_errors(void **state)
{
    kin_rlimit no_such[] = {{RLIM_NLIMITS + 3, 1, 1}};
    kin_rlimit upside_down[] = {{RLIMIT_NOFILE, 64, 32}};
    /* Past fs.nr_open: the kernel refuses it in the child, even to root. */
    kin_rlimit too_many[] = {{RLIMIT_NOFILE, 1u << 30, 1u << 30}};
    char *no_eq[] = {"JUSTANAME", NULL};
    char *ours[] = {"KIN_CHILD_ID=7", NULL};
    expect_spawn_error(&(kin_spawn_opts){.rlimits = no_such, .n_rlimits = 1},
                       -EINVAL, "no such resource");
    expect_spawn_error(
        &(kin_spawn_opts){.rlimits = upside_down, .n_rlimits = 1}, -EINVAL,
        "soft 64 above hard 32");
    expect_spawn_error(&(kin_spawn_opts){.n_rlimits = 1}, -EINVAL,
                       "rlimits NULL");
    expect_spawn_error(&(kin_spawn_opts){.env = no_eq}, -EINVAL, "JUSTANAME");
    expect_spawn_error(&(kin_spawn_opts){.env = ours}, -EINVAL, "KIN_CHILD_");
    expect_spawn_error(&(kin_spawn_opts){.cwd = "/nonexistent/kin-limits"},
                       -ENOENT, "cwd /nonexistent/kin-limits");
    expect_spawn_error(&(kin_spawn_opts){.cwd = "/dev/null"}, -ENOTDIR,
                       "cwd /dev/null");
    expect_spawn_error(&(kin_spawn_opts){.cwd = "/tmp", .fork = true}, -EINVAL,
                       "forked and exec'd here");
    expect_spawn_error(&(kin_spawn_opts){.rlimits = too_many, .n_rlimits = 1},
                       -EPERM, "setrlimit RLIMIT_NOFILE");
    /* The node still spawns and serves. */
    kin_child *c = NULL;
    assert_int_equal(kin_spawn(master, NULL, &c), KIN_OK);
    seen s;
    kin_err e = ask_limits(master, kin_child_id(c), &s);
    kin_child_destroy(&c);
    assert_int_equal(e, KIN_OK);
}

static bool
wait_restarted(kin_supervisor *s, unsigned restarts, kin_child_info *info)
{
    double end = harness_now_ms() + 10000;
    for (;;) {
        uint64_t seq = kin_supervisor_changes(s);
        if (kin_supervisor_child(s, "limited", info) == KIN_OK &&
            info->restarts >= restarts && info->state == KIN_CHILD_RUNNING)
            return true;
        int left = (int)(end - harness_now_ms());
        if (left <= 0 || kin_supervisor_wait(s, seq, left, NULL))
            return false;
    }
}

static void
supervised_child_keeps_its_limits_across_restarts(void **state)
{
    kin_supervisor *s = NULL;
    kin_supervisor_opts so = {.intensity = 5, .period_ms = 5000};
    assert_int_equal(kin_supervisor_new(&s, master, &so), KIN_OK);
    char dir[] = "/tmp/kin-limits-sup-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* The spec's arrays are gone once added: the supervisor copied them. */
    kin_rlimit *lim = malloc(sizeof *lim);
    *lim = (kin_rlimit){RLIMIT_NOFILE, 41, 77};
    char **env = calloc(2, sizeof *env);
    env[0] = strdup("KIN_TEST_COLOR=plum");
    char *cwd = strdup(dir);
    kin_child_spec spec = {
        .name = "limited",
        .spawn = {.rlimits = lim, .n_rlimits = 1, .cwd = cwd, .env = env}};
    kin_err added = kin_supervisor_add(s, &spec);
    memset(lim, 0xff, sizeof *lim);
    free(lim);
    memset(env[0], 'x', strlen(env[0]));
    free(env[0]);
    free(env);
    memset(cwd, 'x', strlen(cwd));
    free(cwd);
    kin_err started = added ? added : kin_supervisor_start(s);
    kin_child_info info = {0};
    bool up = !started && wait_restarted(s, 0, &info);
    if (up)
        kin_call_nowait(master, info.id, "t.exit", "");
    bool again = up && wait_restarted(s, 1, &info);
    seen v = {0};
    kin_err asked = again ? ask_limits(master, info.id, &v) : KIN_ENOROUTE;
    kin_supervisor_destroy(&s);
    rmdir(dir);
    assert_int_equal(added, KIN_OK);
    assert_int_equal(started, KIN_OK);
    assert_true(again);
    assert_int_equal(asked, KIN_OK);
    assert_int_equal(v.soft, 41);
    assert_int_equal(v.hard, 77);
    assert_string_equal(v.cwd, dir);
    assert_string_equal(v.color, "plum");
}

static void
supervisor_refuses_a_bad_limit_at_once(void **state)
{
    kin_supervisor *s = NULL;
    assert_int_equal(kin_supervisor_new(&s, master, NULL), KIN_OK);
    kin_rlimit upside_down[] = {{RLIMIT_CORE, 2, 1}};
    kin_child_spec spec = {.name = "limited",
                           .spawn = {.rlimits = upside_down, .n_rlimits = 1}};
    kin_err e = kin_supervisor_add(s, &spec);
    kin_supervisor_destroy(&s);
    assert_int_equal(e, -EINVAL);
}

/* --- fd exhaustion -----------------------------------------------------------
 */

#define SAY(...) (printf(__VA_ARGS__), fflush(stdout))

/* A master whose own RLIMIT_NOFILE is lowered and then used up: a spawn
 * fails with -EMFILE, a running child still answers, and once fds are
 * free again spawning works. Prints one line per fact; exits 0 when all
 * held. */
static int
fd_exhaust_role(void)
{
    kin_node *n = NULL;
    kin_child *c = NULL, *d = NULL;
    int *fds = NULL, nfds = 0, bad = 0;
    if (kin_init(&n, NULL) || kin_spawn(n, NULL, &c)) {
        SAY("setup failed\n");
        return 2;
    }
    seen s;
    if (ask_limits(n, kin_child_id(c), &s))
        bad++, SAY("first call failed\n");
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = 256;
    setrlimit(RLIMIT_NOFILE, &r);
    fds = calloc(256, sizeof *fds);
    for (int fd; (fd = dup(0)) >= 0;)
        fds[nfds++] = fd;
    char why[256] = "";
    kin_spawn_opts o = {.errbuf = why, .errbuf_size = sizeof why};
    kin_err e = kin_spawn(n, &o, &d);
    SAY("spawn while exhausted: %s (%s)\n", kin_strerror(e), why);
    if (e != -EMFILE || d || !strstr(why, "Too many open files"))
        bad++;
    e = ask_limits(n, kin_child_id(c), &s);
    SAY("call while exhausted: %s\n", kin_strerror(e));
    if (e)
        bad++;
    while (nfds > 0)
        close(fds[--nfds]);
    free(fds);
    e = ask_limits(n, kin_child_id(c), &s);
    SAY("call after: %s\n", kin_strerror(e));
    if (e)
        bad++;
    e = kin_spawn(n, NULL, &d);
    SAY("spawn after: %s\n", kin_strerror(e));
    if (e || ask_limits(n, kin_child_id(d), &s))
        bad++;
    kin_child_destroy(&d);
    kin_child_destroy(&c);
    kin_node_destroy(&n);
    return bad ? 1 : 0;
}

static void
fd_limit_reached_while_spawning_is_emfile(void **state)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = 0;
    int status = -1;
    char *out = harness_run(&status, "'%s' --role=fd-exhaust 2>&1", self);
    if (status != 0)
        print_error("fd-exhaust said:\n%s\n", out);
    bool said =
        strstr(out, "spawn while exhausted: Too many open files") != NULL;
    free(out);
    assert_int_equal(status, 0);
    assert_true(said);
}

/* --- main ------------------------------------------------------------------
 */

int
main(int argc, char **argv)
{
    kin_export("t.limits", fn_limits, NULL, KIN_POLICY_PARENT);
    kin_export("t.pid", fn_pid, NULL, KIN_POLICY_PARENT);
    kin_export("t.exit", fn_exit, NULL, KIN_POLICY_PARENT);
    if (argc > 1 && !strcmp(argv[1], "--role=fd-exhaust"))
        return fd_exhaust_role();
    harness_log_setup();
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(child_sees_its_limits_cwd_and_env),
        cmocka_unit_test(bad_limits_cwd_and_env_fail_with_specific_errors),
        cmocka_unit_test(supervised_child_keeps_its_limits_across_restarts),
        cmocka_unit_test(supervisor_refuses_a_bad_limit_at_once),
        cmocka_unit_test(fd_limit_reached_while_spawning_is_emfile),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
