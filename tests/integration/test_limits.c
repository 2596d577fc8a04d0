/* A child's resource limits, working directory and environment
 * (kin_spawn_opts.rlimits, cwd, env) seen by real child processes, the
 * errors for bad ones, their survival across supervisor restarts, and
 * exhaustion: the fd limit reached while spawning gives -EMFILE and the
 * node keeps serving; the log sink rotating by size, and a full disk
 * (a small tmpfs in a mount namespace of its own) under it losing only
 * counted records; and a child past its own memory cgroup's limit killed
 * by that cgroup's OOM killer (SIGKILL, a child.exit record) while the rest
 * serves. The test binary is also every child program (kin_init) and the
 * exhausted masters (--role=fd-exhaust, --role=disk-full). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* Allocates and touches 1 MiB after another; gives up (exit 9) at 512 MiB,
 * so a missing limit cannot hurt the machine. */
static kin_err
fn_hog(kin_call *c, void *arg)
{
    for (int mib = 0; mib < 512; mib++) {
        char *p = malloc(1 << 20);
        if (!p)
            _exit(8);
        memset(p, mib, 1 << 20);
    }
    _exit(9);
}

/* Logs n records "flood" (i = 0..n-1) with a pad of `pad` bytes. */
static kin_err
fn_flood(kin_call *c, void *arg)
{
    int n, pad;
    kin_err e = kin_call_args(c, "ii", &n, &pad);
    if (e)
        return e;
    char *p = malloc((size_t)pad + 1);
    if (!p)
        return -ENOMEM;
    memset(p, 'p', (size_t)pad);
    p[pad] = 0;
    for (int i = 0; i < n; i++)
        KIN_LOGI("flood", KIN_FINT("i", i), KIN_FSTR("pad", p));
    free(p);
    return kin_call_return(c, "");
}

/* Logs one record "mark" with m = the argument. */
static kin_err
fn_mark(kin_call *c, void *arg)
{
    char *m = NULL;
    kin_err e = kin_call_args(c, "s", &m);
    if (!e)
        KIN_LOGI("mark", KIN_FSTR("m", m));
    free(m);
    return e ? e : kin_call_return(c, "");
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

/* --- log files: rotation and a full disk -------------------------------------
 */

/* t.mark and t.flood on child id of n, the reply dropped. */
static kin_err
mark(kin_node *n, uint32_t id, const char *m)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(n, id, "t.mark", 5000, &r, "s", m);
    kin_msg_destroy(&r);
    return e;
}

static kin_err
flood(kin_node *n, uint32_t id, int count, int pad)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(n, id, "t.flood", 10000, &r, "ii", count, pad);
    kin_msg_destroy(&r);
    return e;
}

/* Whether every line of path is a whole JSON object; *lines gets their
 * number, *dropped the "dropped" lines and *dropped_count the sum of their
 * counts. False when the file cannot be read. */
static bool
whole_lines(const char *path, size_t *lines, size_t *dropped,
            uint64_t *dropped_count)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    bool ok = true;
    *lines = 0;
    if (dropped)
        *dropped = 0;
    if (dropped_count)
        *dropped_count = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        (*lines)++;
        if (len < 3 || line[0] != '{' || line[len - 1] != '\n' ||
            line[len - 2] != '}')
            ok = false;
        const char *k = strstr(line, "\"kind\":\"dropped\"");
        const char *c = strstr(line, "\"count\":");
        if (k && c && dropped) {
            (*dropped)++;
            *dropped_count += strtoull(c + 8, NULL, 10);
        }
    }
    free(line);
    fclose(f);
    return ok;
}

/* Marks until the sink wrote one (subscriptions take a moment to reach
 * the publishers), within 10 s. */
static bool
sink_joined(kin_node *n, uint32_t child, kin_logsink *k)
{
    double end = harness_now_ms() + 10000;
    kin_logsink_stats st;
    do {
        if (mark(n, child, "join"))
            return false;
        usleep(50 * 1000);
        kin_logsink_stats_get(k, &st);
    } while (!st.written && harness_now_ms() < end);
    return st.written > 0;
}

/* Waits up to 20 s until path holds needle. */
static bool
file_holds(const char *path, const char *needle)
{
    double end = harness_now_ms() + 20000;
    while (!harness_count_in_file(path, needle))
        if (harness_now_ms() > end)
            return false;
        else
            usleep(20 * 1000);
    return true;
}

static off_t
file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : st.st_size;
}

static void
log_sink_rotates_by_size_keeping_n_files(void **state)
{
    char dir[] = "/tmp/kin-limits-rot-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], p1[160], p2[160], p3[160];
    snprintf(path, sizeof path, "%s/sink.jsonl", dir);
    snprintf(p1, sizeof p1, "%s.1", path);
    snprintf(p2, sizeof p2, "%s.2", path);
    snprintf(p3, sizeof p3, "%s.3", path);
    kin_child *c = NULL;
    kin_logsink *k = NULL;
    kin_logsink_opts so = {.endpoint = kin_logs_frontend(master),
                           .format = KIN_LOGSINK_JSON,
                           .min_level = KIN_LOG_INFO,
                           .path = path,
                           .max_bytes = 4096,
                           .keep = 2};
    kin_err spawned = kin_spawn(master, NULL, &c);
    kin_err made = spawned ? spawned : kin_logsink_new(&k, &so);
    bool joined = !made && sink_joined(master, kin_child_id(c), k);
    kin_err flooded =
        joined ? flood(master, kin_child_id(c), 100, 300) : KIN_ETIMEOUT;
    bool last = !flooded && file_holds(path, "\"i\":99,");
    kin_logsink_stats st = {0};
    if (k)
        kin_logsink_stats_get(k, &st);
    kin_logsink_destroy(&k);
    kin_child_destroy(&c);
    off_t s0 = file_size(path), s1 = file_size(p1), s2 = file_size(p2);
    bool absent3 = file_size(p3) < 0;
    size_t l0 = 0, l1 = 0, l2 = 0;
    bool whole = whole_lines(path, &l0, NULL, NULL) &&
                 whole_lines(p1, &l1, NULL, NULL) &&
                 whole_lines(p2, &l2, NULL, NULL);
    unlink(path);
    unlink(p1);
    unlink(p2);
    unlink(p3);
    rmdir(dir);
    assert_int_equal(spawned, KIN_OK);
    assert_int_equal(made, KIN_OK);
    assert_true(joined);
    assert_int_equal(flooded, KIN_OK);
    assert_true(last);
    /* 100 records of some 500 bytes in 4 KiB files: about a dozen. */
    assert_true(st.rotations >= 8);
    assert_int_equal(st.lost, 0);
    assert_true(s0 > 0 && s0 <= 4096);
    assert_true(s1 > 3000 && s1 <= 4096);
    assert_true(s2 > 3000 && s2 <= 4096);
    assert_true(absent3);
    assert_true(whole);
}

static void
node_log_file_rotates_by_size(void **state)
{
    char dir[] = "/tmp/kin-limits-nrot-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], p1[160], p2[160];
    snprintf(path, sizeof path, "%s/node.jsonl", dir);
    snprintf(p1, sizeof p1, "%s.1", path);
    snprintf(p2, sizeof p2, "%s.2", path);
    kin_node_opts o = {.name = "rot-master",
                       .log_file = path,
                       .log_file_max_bytes = 8192,
                       .log_file_keep = 1};
    kin_node *n = NULL;
    kin_child *c = NULL;
    kin_err made = kin_node_new(&n, &o);
    kin_err spawned = made ? made : kin_spawn(n, NULL, &c);
    kin_err flooded = spawned ? spawned : flood(n, kin_child_id(c), 100, 300);
    bool last = !flooded && file_holds(path, "\"i\":99,");
    kin_child_destroy(&c);
    kin_node_destroy(&n);
    off_t s0 = file_size(path), s1 = file_size(p1);
    bool absent2 = file_size(p2) < 0;
    unlink(path);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    assert_int_equal(made, KIN_OK);
    assert_int_equal(spawned, KIN_OK);
    assert_int_equal(flooded, KIN_OK);
    assert_true(last);
    assert_true(s0 > 0 && s0 <= 8192);
    assert_true(s1 > 6000 && s1 <= 8192);
    assert_true(absent2);
}

/* In a mount namespace of its own, a 512 KiB tmpfs: a ballast file leaves
 * 64 KiB, a child floods a sink on it until the disk is full. Then the
 * tree still serves; the sink counts what it lost (ENOSPC); with the
 * ballast gone the file takes writes again, the first a "dropped" line
 * for exactly the lost records, and no line is torn. Exits 77 when it
 * cannot make the namespace or the mount. */
static int
disk_full_role(void)
{
    if (unshare(CLONE_NEWNS) ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
        SAY("skip: no private mount namespace here (%s)\n", strerror(errno));
        return 77;
    }
    char dir[] = "/tmp/kin-limits-tmpfs-XXXXXX";
    if (!mkdtemp(dir))
        return 2;
    if (mount("kin-limits", dir, "tmpfs", 0, "size=512k,mode=0700")) {
        SAY("skip: cannot mount a tmpfs (%s)\n", strerror(errno));
        rmdir(dir);
        return 77;
    }
    int bad = 0;
    char path[128], ballast[128];
    snprintf(path, sizeof path, "%s/sink.jsonl", dir);
    snprintf(ballast, sizeof ballast, "%s/ballast", dir);
    int fd = open(ballast, O_WRONLY | O_CREAT, 0600);
    char block[4096];
    memset(block, 'b', sizeof block);
    for (int i = 0; fd >= 0 && i < 112; i++) /* 448 KiB */
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
            bad++, SAY("ballast write failed\n");
    if (fd >= 0)
        close(fd);
    kin_node *n = NULL;
    kin_child *c = NULL;
    kin_logsink *k = NULL;
    kin_logsink_stats st = {0};
    if (kin_init(&n, NULL) || kin_spawn(n, NULL, &c)) {
        SAY("setup failed\n");
        bad++;
        goto out;
    }
    kin_logsink_opts so = {.endpoint = kin_logs_frontend(n),
                           .format = KIN_LOGSINK_JSON,
                           .min_level = KIN_LOG_INFO,
                           .path = path};
    if (kin_logsink_new(&k, &so) || !sink_joined(n, kin_child_id(c), k)) {
        SAY("sink did not start\n");
        bad++;
        goto out;
    }
    /* 300 records of some 700 bytes: 210 KiB into 64 KiB. */
    kin_err e = flood(n, kin_child_id(c), 300, 500);
    double end = harness_now_ms() + 20000;
    do {
        kin_logsink_stats_get(k, &st);
        if (st.lost)
            break;
        usleep(20 * 1000);
    } while (harness_now_ms() < end);
    SAY("flood: %s; lost %llu, written %llu, error %s\n", kin_strerror(e),
        (unsigned long long)st.lost, (unsigned long long)st.written,
        kin_strerror(st.last_error));
    if (e || !st.lost || st.last_error != -ENOSPC)
        bad++;
    seen s;
    e = ask_limits(n, kin_child_id(c), &s);
    SAY("call with the disk full: %s\n", kin_strerror(e));
    if (e)
        bad++;
    unlink(ballast);
    if (mark(n, kin_child_id(c), "after"))
        bad++;
    bool after = file_holds(path, "\"m\":\"after\"");
    kin_logsink_stats_get(k, &st);
    kin_logsink_destroy(&k);
    size_t lines = 0, dropped = 0;
    uint64_t told = 0;
    bool whole = whole_lines(path, &lines, &dropped, &told);
    SAY("after: %s; %zu lines, %zu dropped lines telling %llu, whole %s; "
        "written %llu, lost %llu\n",
        after ? "written" : "missing", lines, dropped, (unsigned long long)told,
        whole ? "yes" : "no", (unsigned long long)st.written,
        (unsigned long long)st.lost);
    if (!after || !whole || !dropped || told != st.lost ||
        lines != st.written + dropped)
        bad++;
out:
    kin_child_destroy(&c);
    kin_node_destroy(&n);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
    return bad ? 1 : 0;
}

static void
full_disk_under_the_log_sink_loses_counted_records(void **state)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = 0;
    int status = -1;
    char *out = harness_run(&status, "'%s' --role=disk-full 2>&1", self);
    if (status == 77) {
        char why[256];
        snprintf(why, sizeof why, "%s", out);
        free(out);
        harness_skip("%s", why);
    }
    if (status != 0)
        print_error("disk-full said:\n%s\n", out);
    bool said = strstr(out, "error No space left on device") != NULL;
    free(out);
    assert_int_equal(status, 0);
    assert_true(said);
}

/* --- a memory cgroup ---------------------------------------------------------
 */

/* The memory cgroup line of /proc/PID/cgroup ("" if none). */
static void
memcg_of(pid_t pid, char *out, size_t size)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, ":memory:"))
            snprintf(out, size, "%s", strstr(line, ":memory:") + 8);
    if (f)
        fclose(f);
    out[strcspn(out, "\n")] = 0;
}

static void
child_past_its_memory_cgroup_is_oom_killed(void **state)
{
    char why[512] = "";
    kin_spawn_opts o = {.name = "hog",
                        .memory_max = 64u << 20,
                        .errbuf = why,
                        .errbuf_size = sizeof why};
    char logdir[] = "/tmp/kin-limits-oom-XXXXXX";
    assert_non_null(mkdtemp(logdir));
    char path[128];
    snprintf(path, sizeof path, "%s/events.jsonl", logdir);
    /* A sibling without a limit, and a sink for the child.exit record. */
    kin_child *hog = NULL, *calm = NULL;
    kin_logsink *k = NULL;
    kin_logsink_opts so = {.endpoint = kin_logs_frontend(master),
                           .format = KIN_LOGSINK_JSON,
                           .min_level = KIN_LOG_INFO,
                           .path = path};
    kin_err e0 = kin_spawn(master, NULL, &calm);
    if (!e0)
        e0 = kin_logsink_new(&k, &so);
    if (!e0 && !sink_joined(master, kin_child_id(calm), k))
        e0 = KIN_ETIMEOUT;
    kin_err e = e0 ? e0 : kin_spawn(master, &o, &hog);
    if (e == -ENOTSUP || e == -EACCES || e == -EPERM || e == -EROFS) {
        kin_logsink_destroy(&k);
        kin_child_destroy(&calm);
        unlink(path);
        rmdir(logdir);
        harness_skip("no memory cgroup for a child here: %s", why);
    }
    char mine[512] = "", its[512] = "", dir[700] = "";
    if (!e) {
        memcg_of(getpid(), mine, sizeof mine);
        memcg_of(kin_child_pid(hog), its, sizeof its);
        snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory%s", its);
    }
    struct stat st;
    bool made = *dir && !stat(dir, &st);
    int status = 0;
    kin_err waited = KIN_ETIMEOUT;
    if (!e && !kin_call_nowait(master, kin_child_id(hog), "t.hog", ""))
        waited = kin_child_wait(hog, 30000, &status);
    bool told = !waited && file_holds(path, "\"signal_name\":\"KILL\"") &&
                harness_count_in_file(path, "\"child\":\"hog\"");
    seen s;
    kin_err asked = calm ? ask_limits(master, kin_child_id(calm), &s) : e0;
    bool gone = *dir && stat(dir, &st) && errno == ENOENT;
    kin_logsink_destroy(&k);
    kin_child_destroy(&hog);
    kin_child_destroy(&calm);
    unlink(path);
    rmdir(logdir);
    if (e)
        print_error("spawn: %s: %s\n", kin_strerror(e), why);
    assert_int_equal(e0, KIN_OK);
    assert_int_equal(e, KIN_OK);
    /* Its own cgroup, under ours. */
    assert_true(strlen(its) > strlen(mine));
    assert_memory_equal(its, mine, strlen(mine));
    assert_non_null(strstr(its, "/kin-"));
    assert_true(made);
    assert_int_equal(waited, KIN_OK);
    if (!WIFSIGNALED(status))
        print_error("hog exited with %d\n", WEXITSTATUS(status));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    /* A child.exit record says so; the sibling and the master serve on;
     * the cgroup went with the child. */
    assert_true(told);
    assert_int_equal(asked, KIN_OK);
    assert_true(gone);
}

/* --- main ------------------------------------------------------------------
 */

int
main(int argc, char **argv)
{
    kin_export("t.limits", fn_limits, NULL, KIN_POLICY_PARENT);
    kin_export("t.pid", fn_pid, NULL, KIN_POLICY_PARENT);
    kin_export("t.exit", fn_exit, NULL, KIN_POLICY_PARENT);
    kin_export("t.flood", fn_flood, NULL, KIN_POLICY_PARENT);
    kin_export("t.mark", fn_mark, NULL, KIN_POLICY_PARENT);
    kin_export("t.hog", fn_hog, NULL, KIN_POLICY_PARENT);
    if (argc > 1 && !strcmp(argv[1], "--role=fd-exhaust"))
        return fd_exhaust_role();
    if (argc > 1 && !strcmp(argv[1], "--role=disk-full"))
        return disk_full_role();
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
        cmocka_unit_test(log_sink_rotates_by_size_keeping_n_files),
        cmocka_unit_test(node_log_file_rotates_by_size),
        cmocka_unit_test(full_disk_under_the_log_sink_loses_counted_records),
        cmocka_unit_test(child_past_its_memory_cgroup_is_oom_killed),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
