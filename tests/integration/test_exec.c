/* The exec factory with real channels: a child started through `unshare
 * --net` (no network at all, so its link can only ride the channel's
 * stdio), `nsenter` into a network namespace the test made, `setpriv` as
 * another user and `setsid -w` (a command whose children live in a session
 * of their own). It serves calls, its own child links to it, big messages
 * cross both ways, killing the target or the command is seen at once, and
 * a stop leaves no process, no temporary directory and no socket file. The
 * test binary is also every child program. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "integration/harness.h"

extern char **environ;

static kin_node *master;
static char log_file[128]; /* the master's JSON-lines log */

/* --- functions served by every context ------------------------------------ */

static unsigned long long
netns_ino(pid_t pid)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    return stat(path, &st) ? 0 : (unsigned long long)st.st_ino;
}

/* Where this context runs: its network namespace, pid, uid and the exec
 * bootstrap's private directory ("" if none). */
static kin_err
info(kin_call *c, void *arg)
{
    const char *dir = getenv("KIN_CHILD_STDIO_DIR");
    return kin_call_return(c, "Uiis", (uint64_t)netns_ino(getpid()),
                           (int)getpid(), (int)getuid(), dir ? dir : "");
}

static kin_err
echo(kin_call *c, void *arg)
{
    const void *p;
    size_t len;
    kin_err e = kin_call_args(c, "B", &p, &len);
    return e ? e : kin_call_return(c, "B", p, len);
}

static kin_err
nap(kin_call *c, void *arg)
{
    int ms = 0;
    kin_call_args(c, "i", &ms);
    return kin_task_sleep(ms);
}

/* A warning record carrying marker. */
static kin_err
log_marker(kin_call *c, void *arg)
{
    char *m = NULL;
    kin_err e = kin_call_args(c, "s", &m);
    if (!e)
        KIN_LOGW("exec test", KIN_F("marker", (const char *)m));
    free(m);
    return e;
}

static kin_child *grandchild;

/* Starts a local child of this context and asks it where it runs. */
static kin_err
spawn_gc(kin_call *c, void *arg)
{
    kin_node *n = kin_call_node(c);
    kin_err e = kin_spawn(n, NULL, &grandchild);
    if (e)
        return kin_call_fail(c, e, "spawn: %s", kin_strerror(e));
    kin_msg *r = NULL;
    uint64_t ino = 0;
    int pid = 0;
    e = kin_call_sync(n, kin_child_id(grandchild), "x.info", 10000, &r, NULL);
    if (!e)
        e = kin_msg_unpack(r, "Ui", &ino, &pid);
    kin_msg_destroy(&r);
    if (!e)
        e = kin_call_sync(n, kin_child_id(grandchild), "x.log", 10000, &r, "s",
                          "marker-from-the-grandchild");
    kin_msg_destroy(&r);
    return e ? e : kin_call_return(c, "Ui", ino, pid);
}

static void
export_all(void)
{
    kin_export("x.info", info, NULL, KIN_POLICY_PARENT);
    kin_export("x.echo", echo, NULL, KIN_POLICY_PARENT);
    kin_export("x.nap", nap, NULL, KIN_POLICY_PARENT);
    kin_export("x.spawn_gc", spawn_gc, NULL, KIN_POLICY_PARENT);
    kin_export("x.log", log_marker, NULL, KIN_POLICY_PARENT);
}

/* --- helpers ---------------------------------------------------------------
 */

typedef struct where {
    unsigned long long ino;
    int pid, uid;
    char dir[256];
} where;

static kin_err
ask_info(uint32_t ctx, where *w)
{
    kin_msg *r = NULL;
    char *dir = NULL;
    uint64_t ino = 0;
    kin_err e = kin_call_sync(master, ctx, "x.info", 30000, &r, NULL);
    if (!e)
        e = kin_msg_unpack(r, "Uiis", &ino, &w->pid, &w->uid, &dir);
    w->ino = ino;
    snprintf(w->dir, sizeof w->dir, "%s", dir ? dir : "");
    free(dir);
    kin_msg_destroy(&r);
    return e;
}

/* Files in this test's kin runtime directory, but for this process's own
 * (its sockets, made on first use). */
static int
runtime_files(void)
{
    char path[512];
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && *xdg)
        snprintf(path, sizeof path, "%s/kin", xdg);
    else
        snprintf(path, sizeof path, "/tmp/kin-%u", getuid());
    DIR *d = opendir(path);
    int count = 0;
    struct dirent *de;
    char mine[32];
    snprintf(mine, sizeof mine, "%d-", (int)getpid());
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && strncmp(de->d_name, mine, strlen(mine)))
            count++;
    if (d)
        closedir(d);
    return count;
}

typedef struct fx {
    kin_child *kid;
    char container[64]; /* a podman container to remove, "" for none */
    char dir[128];      /* a directory to remove (after umount), or "" */
    pid_t raw;          /* a process the test started itself */
    int files;          /* runtime files before the test */
} fx;

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->files = runtime_files();
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    kin_child_destroy(&f->kid);
    if (f->container[0]) {
        int rc;
        free(harness_run(&rc, "podman rm -f -t 0 %s >/dev/null 2>&1",
                         f->container));
    }
    if (f->dir[0]) {
        int rc;
        free(harness_run(&rc, "umount %s/small 2>/dev/null; rm -rf %s %s.src",
                         f->dir, f->dir, f->dir));
    }
    if (f->raw > 0) {
        kill(f->raw, SIGKILL);
        waitpid(f->raw, NULL, 0);
    }
    free(f);
    return 0;
}

/* The stop timeout of the children the tests stop: kin_child_stop asks
 * first and sends SIGTERM after a quarter of it, which the bootstrap turns
 * into exit 143 and which leaves a push's temporary file behind. The
 * default (2 s: 500 ms to stop) is too short on a loaded machine for a
 * child that first stops a grandchild of its own (500 ms too) and ends an
 * exec channel; the tests check the graceful path, not its speed. */
#define STOP_MS 20000

static kin_err
spawn_through(fx *f, char *const *prefix, const char *name)
{
    char err[2048] = "";
    kin_spawn_opts o = {.name = name,
                        .exec = prefix,
                        .connect_timeout_ms = 30000,
                        .stop_timeout_ms = STOP_MS,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_err e = kin_spawn(master, &o, &f->kid);
    if (e)
        print_error("spawn through %s: %s\n", prefix[0], err);
    return e;
}

/* Stops the child and checks that nothing of it is left: the inner
 * process (pid, on this machine), the bootstrap's directory, socket
 * files. */
static void
stop_and_check_clean(fx *f, const where *w)
{
    int st = -1;
    assert_int_equal(kin_child_stop(f->kid, &st), KIN_OK);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    kin_child_destroy(&f->kid);
    assert_true(harness_wait_gone(w->pid, 10000));
    struct stat sb;
    assert_true(w->dir[0]);
    assert_int_not_equal(stat(w->dir, &sb), 0);
    assert_int_equal(runtime_files(), f->files);
}

/* --- tests -------------------------------------------------------------------
 */

static char *unshare_net[] = {"unshare", "--net", "--", NULL};

/* No network inside, and this test's runtime directory hidden under an
 * empty tmpfs (so no socket of this process is reachable there): the link,
 * a 1 MiB echo both ways, a grandchild inside and the log records of both
 * all go through the channel; a stop leaves nothing. */
static void
unshare_net_child_serves_and_leaves_nothing(void **state)
{
    fx *f = *state;
    if (system("unshare --net --mount true 2>/dev/null") != 0)
        harness_skip("unshare --net --mount is not allowed here");
    char *hidden[] = {"unshare",
                      "--net",
                      "--mount",
                      "--",
                      "sh",
                      "-c",
                      "mount -t tmpfs kin-hidden \"$XDG_RUNTIME_DIR\" && "
                      "exec \"$@\"",
                      "hide",
                      NULL};
    assert_int_equal(spawn_through(f, hidden, "in-netns"), KIN_OK);
    where w;
    assert_int_equal(ask_info(kin_child_id(f->kid), &w), KIN_OK);
    assert_int_not_equal(w.ino, netns_ino(getpid()));
    assert_int_not_equal(w.pid, kin_child_pid(f->kid));

    size_t len = 1 << 20;
    unsigned char *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)(i * 131 + (i >> 9));
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(master, kin_child_id(f->kid), "x.echo",
                                   30000, &r, "B", big, len),
                     KIN_OK);
    const void *back;
    size_t blen = 0;
    assert_int_equal(kin_msg_unpack(r, "B", &back, &blen), KIN_OK);
    assert_int_equal(blen, len);
    assert_memory_equal(back, big, len);
    kin_msg_destroy(&r);
    free(big);

    uint64_t gino = 0;
    int gpid = 0;
    assert_int_equal(kin_call_sync(master, kin_child_id(f->kid), "x.spawn_gc",
                                   30000, &r, NULL),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "Ui", &gino, &gpid), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(gino, w.ino);
    assert_true(harness_pid_alive(gpid));

    /* kin tree says where both run: behind the channel, by its prefix. */
    kin_ctx_info ci, gi;
    assert_int_equal(kin_monitor_info(master, kin_child_id(f->kid), 10000, &ci),
                     KIN_OK);
    assert_int_equal(ci.n_children, 1);
    assert_int_equal(kin_monitor_info(master, ci.children[0], 10000, &gi),
                     KIN_OK);
    assert_string_equal(gi.where, ci.where);
    assert_memory_equal(ci.where, "unshare --net --mount -- sh -c mount", 36);
    int rc = -1;
    char *tree = harness_run(&rc, "%s tree %d", KIN_CLI, (int)getpid());
    assert_int_equal(rc, 0);
    if (!strstr(tree, "[unshare --net --mount -- sh -c mount"))
        print_error("kin tree:\n%s", tree);
    assert_non_null(strstr(tree, "[unshare --net --mount -- sh -c mount"));
    free(tree);

    /* Log records of both, through the channel's log streams. */
    assert_int_equal(kin_call_sync(master, kin_child_id(f->kid), "x.log", 30000,
                                   &r, "s", "marker-from-the-child"),
                     KIN_OK);
    kin_msg_destroy(&r);
    double end = harness_now_ms() + 20000;
    while (harness_now_ms() < end &&
           (!harness_count_in_file(log_file, "marker-from-the-child") ||
            !harness_count_in_file(log_file, "marker-from-the-grandchild")))
        usleep(20000);
    assert_int_equal(harness_count_in_file(log_file, "marker-from-the-child"),
                     1);
    assert_int_equal(
        harness_count_in_file(log_file, "marker-from-the-grandchild"), 1);

    stop_and_check_clean(f, &w);
    assert_true(harness_wait_gone(gpid, 10000));
}

/* The target killed with a call in flight: the caller hears KIN_EPEERGONE
 * and the command ends. */
static void
killed_target_is_a_dead_peer(void **state)
{
    fx *f = *state;
    if (system("unshare --net true 2>/dev/null") != 0)
        harness_skip("unshare --net is not allowed here");
    assert_int_equal(spawn_through(f, unshare_net, "doomed"), KIN_OK);
    where w;
    assert_int_equal(ask_info(kin_child_id(f->kid), &w), KIN_OK);
    kin_receiver *rcv = NULL;
    assert_int_equal(
        kin_call_async(master, kin_child_id(f->kid), "x.nap", &rcv, "i", 60000),
        KIN_OK);
    assert_int_equal(kill(w.pid, SIGKILL), 0);
    kin_msg *r = NULL;
    assert_int_equal(kin_call_wait(rcv, 20000, &r), KIN_EPEERGONE);
    kin_receiver_destroy(&rcv);
    assert_int_equal(kin_child_wait(f->kid, 20000, NULL), KIN_OK);
    kin_child_destroy(&f->kid);
    struct stat sb;
    assert_int_not_equal(stat(w.dir, &sb), 0);
    assert_int_equal(runtime_files(), f->files);
}

/* `setsid -w` runs the bootstrap in a session of its own, out of reach of
 * the signals kin sends the command's process group: killing the command
 * must still end the child (the channel closes when the command goes). */
static void
killed_command_ends_the_child_out_of_reach(void **state)
{
    fx *f = *state;
    static char *setsid_w[] = {"setsid", "-w", "--", NULL};
    assert_int_equal(spawn_through(f, setsid_w, "in-session"), KIN_OK);
    where w;
    assert_int_equal(ask_info(kin_child_id(f->kid), &w), KIN_OK);
    assert_int_not_equal(getsid(w.pid), getsid(kin_child_pid(f->kid)));
    assert_int_equal(kill(kin_child_pid(f->kid), SIGKILL), 0);
    assert_int_equal(kin_child_wait(f->kid, 20000, NULL), KIN_OK);
    assert_true(harness_wait_gone(w.pid, 20000));
    kin_child_destroy(&f->kid);
    /* The bootstrap cleans up after its child: wait for it too. */
    struct stat sb;
    double end = harness_now_ms() + 10000;
    while (!stat(w.dir, &sb) && harness_now_ms() < end)
        usleep(10000);
    assert_int_not_equal(stat(w.dir, &sb), 0);
}

/* nsenter into a network namespace the test made (a sleeper's). */
static void
nsenter_into_a_namespace(void **state)
{
    fx *f = *state;
    if (system("unshare --net true 2>/dev/null") != 0)
        harness_skip("unshare --net is not allowed here");
    char *argv[] = {"unshare", "--net", "sleep", "600", NULL};
    assert_int_equal(
        posix_spawnp(&f->raw, "unshare", NULL, NULL, argv, environ), 0);
    double end = harness_now_ms() + 10000;
    while (netns_ino(f->raw) == netns_ino(getpid()) && harness_now_ms() < end)
        usleep(5000);
    unsigned long long target = netns_ino(f->raw);
    assert_int_not_equal(target, netns_ino(getpid()));
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)f->raw);
    char *prefix[] = {"nsenter", "-t", pid, "-n", "--", NULL};
    assert_int_equal(spawn_through(f, prefix, "entered"), KIN_OK);
    where w;
    assert_int_equal(ask_info(kin_child_id(f->kid), &w), KIN_OK);
    assert_int_equal(w.ino, target);
    stop_and_check_clean(f, &w);
}

/* setpriv to another user: the child runs as nobody. */
static void
setpriv_as_another_user(void **state)
{
    fx *f = *state;
    if (getuid() != 0)
        harness_skip("setpriv to another user needs root");
    /* nobody cannot enter this user's runtime directory: the child uses
     * its own (/tmp/kin-65534). */
    char *prefix[] = {"setpriv",
                      "--reuid=65534",
                      "--regid=65534",
                      "--clear-groups",
                      "--",
                      "env",
                      "-u",
                      "XDG_RUNTIME_DIR",
                      "--",
                      NULL};
    assert_int_equal(spawn_through(f, prefix, "nobody"), KIN_OK);
    where w;
    assert_int_equal(ask_info(kin_child_id(f->kid), &w), KIN_OK);
    assert_int_equal(w.uid, 65534);
    stop_and_check_clean(f, &w);
}

static void make_file(const char *path, size_t len, mode_t mode);
static bool same_file(const char *a, const char *b);

/* Names of the processes running in container name, one per line. */
static char *
container_comms(const char *name)
{
    int rc;
    return harness_run(&rc,
                       "podman exec %s sh -c 'cat /proc/[0-9]*/comm' "
                       "2>/dev/null",
                       name);
}

/* A context inside a --network none podman container through the preset:
 * it serves calls, a grandchild inside links to it, log records of both
 * arrive, kin tree names the container, a stop leaves nothing inside; then
 * a second one sees the container killed as a dead peer. Needs the root
 * filesystem tests/exec/podman_rootfs.sh makes (KIN_PODMAN_ROOTFS). */
static void
podman_context_end_to_end(void **state)
{
    fx *f = *state;
    const char *rootfs = getenv("KIN_PODMAN_ROOTFS");
    if (!rootfs || !*rootfs)
        harness_skip("KIN_PODMAN_ROOTFS not set (run through ctest: "
                     "test_exec_podman)");
    snprintf(f->container, sizeof f->container, "kin-exec-%d", (int)getpid());
    /* :O, an overlay: what the container writes (a killed bootstrap's
     * directory, the pushed file) goes with it, not into the cache. */
    int rc = -1;
    char *out =
        harness_run(&rc,
                    "podman --runtime runc run -d --name %s --network none "
                    "--ulimit nofile=20000:20000 --ulimit nproc=1024:1024 "
                    "--rootfs %s:O sleep 3600 2>&1",
                    f->container, rootfs);
    if (rc != 0)
        print_error("podman run: %s\n", out);
    free(out);
    assert_int_equal(rc, 0);

    char preset[96];
    snprintf(preset, sizeof preset, "podman:%s", f->container);
    char err[2048] = "";
    kin_spawn_opts o = {.name = "in-podman",
                        .container = preset,
                        .stop_timeout_ms = STOP_MS,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_err e = kin_spawn(master, &o, &f->kid);
    if (e)
        print_error("spawn in %s: %s\n", preset, err);
    assert_int_equal(e, KIN_OK);
    where w;
    assert_int_equal(ask_info(kin_child_id(f->kid), &w), KIN_OK);
    assert_int_not_equal(w.ino, netns_ino(getpid()));

    size_t len = 1 << 20;
    unsigned char *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)(i * 7 + (i >> 11));
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(master, kin_child_id(f->kid), "x.echo",
                                   30000, &r, "B", big, len),
                     KIN_OK);
    const void *back;
    size_t blen = 0;
    assert_int_equal(kin_msg_unpack(r, "B", &back, &blen), KIN_OK);
    assert_int_equal(blen, len);
    assert_memory_equal(back, big, len);
    kin_msg_destroy(&r);
    free(big);

    uint64_t gino = 0;
    int gpid = 0;
    assert_int_equal(kin_call_sync(master, kin_child_id(f->kid), "x.spawn_gc",
                                   30000, &r, NULL),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "Ui", &gino, &gpid), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(gino, w.ino);
    assert_int_equal(kin_call_sync(master, kin_child_id(f->kid), "x.log", 30000,
                                   &r, "s", "marker-from-podman"),
                     KIN_OK);
    kin_msg_destroy(&r);

    double end;
    char want[128];
    snprintf(want, sizeof want, "[%s]", preset);
    char *tree = harness_run(&rc, "%s tree %d", KIN_CLI, (int)getpid());
    if (!strstr(tree, want))
        print_error("kin tree:\n%s", tree);
    assert_non_null(strstr(tree, want));
    free(tree);
    /* kin ps sees a task running in there. */
    kin_receiver *napping = NULL;
    assert_int_equal(kin_call_async(master, kin_child_id(f->kid), "x.nap",
                                    &napping, "i", 30000),
                     KIN_OK);
    char *ps = NULL;
    end = harness_now_ms() + 10000;
    do {
        free(ps);
        ps = harness_run(&rc, "%s ps %d", KIN_CLI, (int)getpid());
    } while (!strstr(ps, "x.nap") && harness_now_ms() < end);
    if (!strstr(ps, "in-podman"))
        print_error("kin ps:\n%s", ps);
    assert_non_null(strstr(ps, "in-podman"));
    assert_non_null(strstr(ps, "x.nap"));
    free(ps);
    kin_call_cancel(napping);
    kin_receiver_destroy(&napping);

    end = harness_now_ms() + 20000;
    while (harness_now_ms() < end &&
           (!harness_count_in_file(log_file, "marker-from-podman") ||
            harness_count_in_file(log_file, "marker-from-the-grandchild") < 2))
        usleep(20000);
    assert_int_equal(harness_count_in_file(log_file, "marker-from-podman"), 1);

    /* A file pushed in, read back through podman. */
    char src[96];
    snprintf(src, sizeof src, "/tmp/kin-exec-podman-%d.src", (int)getpid());
    make_file(src, 2 * 1024 * 1024 + 77, 0640);
    char perr[512] = "";
    kin_file_opts po = {.errbuf = perr, .errbuf_size = sizeof perr};
    e = kin_push_file(master, kin_child_id(f->kid), src, "/srv/pushed.bin",
                      &po);
    if (e)
        print_error("push: %s\n", perr);
    assert_int_equal(e, KIN_OK);
    char *same = harness_run(&rc,
                             "podman exec %s cat /srv/pushed.bin | cmp - %s "
                             "&& podman exec %s stat -c %%a /srv/pushed.bin",
                             f->container, src, f->container);
    assert_int_equal(rc, 0);
    assert_string_equal(same, "640\n");
    free(same);
    /* And pulled back out. */
    char pulled[128];
    snprintf(pulled, sizeof pulled, "%s.back", src);
    assert_int_equal(kin_pull_file(master, kin_child_id(f->kid),
                                   "/srv/pushed.bin", pulled, &po),
                     KIN_OK);
    bool same_back = same_file(src, pulled);
    unlink(pulled);
    unlink(src);
    assert_true(same_back);

    char *comms = container_comms(f->container);
    assert_non_null(strstr(comms, "in-podman"));
    free(comms);
    int st = -1;
    assert_int_equal(kin_child_stop(f->kid, &st), KIN_OK);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    kin_child_destroy(&f->kid);
    comms = container_comms(f->container);
    if (strstr(comms, "in-podman") || strstr(comms, "ctx-"))
        print_error("left in the container:\n%s", comms);
    assert_null(strstr(comms, "in-podman"));
    assert_null(strstr(comms, "ctx-"));
    free(comms);
    /* No bootstrap directory, no socket file in the runtime directory
     * (/tmp/kin-0: podman exec passes none of our environment). */
    char *tmp = harness_run(&rc,
                            "podman exec %s sh -c 'ls -A /tmp/kin-0; "
                            "ls -d /tmp/kin-boot.* 2>/dev/null'",
                            f->container);
    assert_string_equal(tmp, "");
    free(tmp);

    /* The podman exec command killed: the context inside ends too (its
     * channel closes), nothing of it stays in the container. */
    o.name = "cut-in-podman";
    assert_int_equal(kin_spawn(master, &o, &f->kid), KIN_OK);
    where cw;
    assert_int_equal(ask_info(kin_child_id(f->kid), &cw), KIN_OK);
    comms = container_comms(f->container);
    assert_non_null(strstr(comms, "cut-in-podman"));
    free(comms);
    assert_int_equal(kill(kin_child_pid(f->kid), SIGKILL), 0);
    assert_int_equal(kin_child_wait(f->kid, 30000, NULL), KIN_OK);
    kin_child_destroy(&f->kid);
    end = harness_now_ms() + 20000;
    for (;;) {
        comms = container_comms(f->container);
        bool left = strstr(comms, "cut-in-podman") != NULL;
        if (!left || harness_now_ms() > end) {
            if (left)
                print_error("left in the container:\n%s", comms);
            free(comms);
            assert_false(left);
            break;
        }
        free(comms);
        usleep(50000);
    }

    /* The container killed under a call in flight: a dead peer. */
    o.name = "doomed-in-podman";
    assert_int_equal(kin_spawn(master, &o, &f->kid), KIN_OK);
    kin_receiver *rcv = NULL;
    assert_int_equal(
        kin_call_async(master, kin_child_id(f->kid), "x.nap", &rcv, "i", 60000),
        KIN_OK);
    double t0 = harness_now_ms();
    free(harness_run(&rc, "podman kill %s >/dev/null 2>&1", f->container));
    assert_int_equal(rc, 0);
    assert_int_equal(kin_call_wait(rcv, 30000, &r), KIN_EPEERGONE);
    print_message("dead peer seen %.0f ms after podman kill was run\n",
                  harness_now_ms() - t0);
    kin_receiver_destroy(&rcv);
    assert_int_equal(kin_child_wait(f->kid, 30000, NULL), KIN_OK);
    kin_child_destroy(&f->kid);
}

/* --- file push ------------------------------------------------------------ */

/* A file of len pseudo-random bytes at path, with mode. */
static void
make_file(const char *path, size_t len, mode_t mode)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    uint64_t x = 0x9e3779b97f4a7c15ull ^ len;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        fputc((int)(x & 0xff), fp);
    }
    fclose(fp);
    assert_int_equal(chmod(path, mode), 0);
}

static bool
same_file(const char *a, const char *b)
{
    int rc;
    char *out = harness_run(&rc, "cmp %s %s 2>&1", a, b);
    if (rc)
        print_error("cmp: %s\n", out);
    free(out);
    return rc == 0;
}

/* Entries of directory path (0 if unreadable). */
static int
dir_entries(const char *path)
{
    DIR *d = opendir(path);
    int count = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            count++;
    if (d)
        closedir(d);
    return count;
}

typedef struct progress {
    uint64_t last, total;
    int calls;
    kin_child *stop_at_first; /* stopped from the first progress call */
} progress;

static void
on_progress(uint64_t sent, uint64_t total, void *arg)
{
    progress *p = arg;
    p->last = sent;
    p->total = total;
    if (p->calls++ == 0 && p->stop_at_first)
        kin_child_stop(p->stop_at_first, NULL);
}

/* Two hops (to a grandchild through its parent inside unshare --net): the
 * content and the mode arrive intact; the errors a user meets are
 * specific and leave nothing in the directory. */
static void
push_file_two_hops_and_errors(void **state)
{
    fx *f = *state;
    if (system("unshare --net true 2>/dev/null") != 0)
        harness_skip("unshare --net is not allowed here");
    assert_int_equal(spawn_through(f, unshare_net, "pushed-to"), KIN_OK);
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(master, kin_child_id(f->kid), "x.spawn_gc",
                                   30000, &r, NULL),
                     KIN_OK);
    kin_msg_destroy(&r);
    kin_ctx_info ci;
    assert_int_equal(kin_monitor_info(master, kin_child_id(f->kid), 10000, &ci),
                     KIN_OK);
    assert_int_equal(ci.n_children, 1);
    uint32_t gc = ci.children[0];

    char *dir = f->dir, src[160], dst[160];
    snprintf(f->dir, sizeof f->dir, "/tmp/kin-exec-push-%d", (int)getpid());
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(src, sizeof src, "%s.src", dir);
    snprintf(dst, sizeof dst, "%s/out.bin", dir);
    size_t len = 3 * 1024 * 1024 + 12345;
    make_file(src, len, 0751);
    char err[512] = "";
    progress pr = {0};
    kin_file_opts po = {.progress = on_progress,
                        .progress_arg = &pr,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    assert_int_equal(kin_push_file(master, gc, src, dst, &po), KIN_OK);
    assert_true(same_file(src, dst));
    struct stat sb;
    assert_int_equal(stat(dst, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0751);
    assert_int_equal(pr.last, len);
    assert_int_equal(pr.total, len);
    assert_true(pr.calls >= 13); /* 256 KiB chunks */
    assert_int_equal(dir_entries(dir), 1);

    /* Pulled back from there: content and mode; a missing source is
     * -ENOENT and leaves nothing here. */
    char back[200];
    snprintf(back, sizeof back, "%s/pulled.bin", dir);
    progress pp = {0};
    kin_file_opts pull_o = {.progress = on_progress, .progress_arg = &pp};
    assert_int_equal(kin_pull_file(master, gc, dst, back, &pull_o), KIN_OK);
    assert_true(same_file(src, back));
    assert_int_equal(stat(back, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0751);
    assert_int_equal(pp.last, len);
    assert_int_equal(kin_pull_file(master, gc, "/no/such/file", back, NULL),
                     -ENOENT);
    assert_int_equal(kin_pull_file(master, gc, dir, back, NULL), -EISDIR);
    unlink(back);
    assert_int_equal(dir_entries(dir), 1);

    /* The same with kin push, and its error for a missing directory. */
    char dst2[200];
    snprintf(dst2, sizeof dst2, "%s/by-cli.bin", dir);
    int rc = -1;
    free(harness_run(&rc, "%s push %d %u %s %s", KIN_CLI, (int)getpid(), gc,
                     src, dst2));
    assert_int_equal(rc, 0);
    assert_true(same_file(src, dst2));
    char back2[200];
    snprintf(back2, sizeof back2, "%s/by-cli-back.bin", dir);
    free(harness_run(&rc, "%s pull %d %u %s %s", KIN_CLI, (int)getpid(), gc,
                     dst2, back2));
    assert_int_equal(rc, 0);
    assert_true(same_file(src, back2));
    unlink(back2);
    char *why = harness_run(&rc, "%s push %d %u %s %s/nodir/x 2>&1", KIN_CLI,
                            (int)getpid(), gc, src, dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(why, "no directory"));
    free(why);
    unlink(dst2);

    /* Over an existing file: replaced whole, the new mode with it. */
    make_file(src, 1000, 0600);
    assert_int_equal(kin_push_file(master, gc, src, dst, &po), KIN_OK);
    assert_true(same_file(src, dst));
    assert_int_equal(stat(dst, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);

    /* A missing directory, a directory as destination, a relative path,
     * a missing source. */
    char nodir[200];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x", dir);
    assert_int_equal(kin_push_file(master, gc, src, nodir, &po), -ENOENT);
    assert_non_null(strstr(err, "no directory"));
    assert_int_equal(kin_push_file(master, gc, src, dir, &po), -EISDIR);
    assert_int_equal(kin_push_file(master, gc, src, "rel/x", &po), -EINVAL);
    assert_int_equal(kin_push_file(master, gc, "/no/such/src", dst, &po),
                     -ENOENT);
    assert_int_equal(dir_entries(dir), 1);

    /* No space: a 1 MiB tmpfs (root only). */
    if (getuid() == 0) {
        char small[160];
        snprintf(small, sizeof small, "%s/small", dir);
        assert_int_equal(mkdir(small, 0700), 0);
        free(harness_run(&rc, "mount -t tmpfs -o size=1m kin-push %s", small));
        if (rc == 0) {
            make_file(src, 3 * 1024 * 1024, 0644);
            char big[200];
            snprintf(big, sizeof big, "%s/big", small);
            assert_int_equal(kin_push_file(master, gc, src, big, &po), -ENOSPC);
            assert_int_equal(dir_entries(small), 0);
            free(harness_run(&rc, "umount %s", small));
        }
        rmdir(small);
    }

    /* The target stopped in the middle: an error here, and no file (nor a
     * temporary one) there. */
    make_file(src, 4 * 1024 * 1024, 0644);
    unlink(dst);
    progress stop = {.stop_at_first = f->kid};
    po.progress_arg = &stop;
    kin_err e = kin_push_file(master, kin_child_id(f->kid), src, dst, &po);
    assert_int_not_equal(e, KIN_OK);
    /* Chunks answered before the stop are still told (as many as were in
     * flight), never the whole file. */
    assert_in_range(stop.calls, 1, 5);
    assert_true(stop.last < 4 * 1024 * 1024);
    assert_int_equal(dir_entries(dir), 0);

    /* The same for a pull: the source is read from a new target, which
     * is stopped after the first chunk; nothing is left here. */
    kin_child_destroy(&f->kid);
    assert_int_equal(spawn_through(f, unshare_net, "pulled-from"), KIN_OK);
    char got[200];
    snprintf(got, sizeof got, "%s/got.bin", dir);
    progress stop2 = {.stop_at_first = f->kid};
    kin_file_opts so = {.progress = on_progress, .progress_arg = &stop2};
    e = kin_pull_file(master, kin_child_id(f->kid), src, got, &so);
    assert_int_not_equal(e, KIN_OK);
    assert_in_range(stop2.calls, 1, 5);
    assert_true(stop2.last < 4 * 1024 * 1024);
    assert_int_equal(dir_entries(dir), 0);
    unlink(src);
    rmdir(dir);
}

/* Bad input: specific errors at once, nothing started. */
static void
bad_requests_fail_at_once(void **state)
{
    fx *f = *state;
    static char *missing[] = {"kin-no-such-command", NULL};
    static char *empty[] = {NULL};
    kin_spawn_opts o = {.exec = missing};
    assert_int_equal(kin_spawn(master, &o, &f->kid), -ENOENT);
    o.exec = empty;
    assert_int_equal(kin_spawn(master, &o, &f->kid), -EINVAL);
    o = (kin_spawn_opts){.container = "lxc:web"};
    assert_int_equal(kin_spawn(master, &o, &f->kid), -EINVAL);
    o.container = "podman:";
    assert_int_equal(kin_spawn(master, &o, &f->kid), -EINVAL);
    o = (kin_spawn_opts){.exec = unshare_net, .container = "podman:web"};
    assert_int_equal(kin_spawn(master, &o, &f->kid), -EINVAL);
    o = (kin_spawn_opts){.exec = unshare_net, .host = "localhost"};
    assert_int_equal(kin_spawn(master, &o, &f->kid), -EINVAL);
    assert_null(f->kid);
}

/* A command that prints on its stdout corrupts the channel: the spawn
 * fails (the relay says why in the log) and nothing is left. */
static void
a_chatty_command_fails_the_spawn(void **state)
{
    fx *f = *state;
    char *prefix[] = {"sh", "-c", "echo hello; exec \"$@\"", "chatty", NULL};
    char err[1024] = "";
    kin_spawn_opts o = {.exec = prefix,
                        .connect_timeout_ms = 20000,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_err e = kin_spawn(master, &o, &f->kid);
    assert_int_equal(e, KIN_ESPAWN);
    assert_null(f->kid);
    assert_int_equal(runtime_files(), f->files);
}

int
main(void)
{
    export_all();
    harness_log_setup();
    /* A runtime directory of its own, inherited by every child: its
     * files are this test's alone, even with other tests running. */
    char rt[] = "/tmp/kin-test-exec-rt-XXXXXX";
    bool own_rt = !kin_started_as_child() && mkdtemp(rt);
    if (own_rt)
        setenv("XDG_RUNTIME_DIR", rt, 1);
    snprintf(log_file, sizeof log_file, "/tmp/kin-test-exec-%d.jsonl",
             (int)getpid());
    kin_node_opts o = {.log_file = log_file, .log_file_level = KIN_LOG_WARNING};
    kin_err e = kin_init(&master, kin_started_as_child() ? NULL : &o);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    /* The podman case runs as test_exec_podman (heavy), which makes its
     * root filesystem first. */
    else if (!getenv("KIN_PODMAN_ROOTFS"))
        cmocka_set_skip_filter("podman*");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            unshare_net_child_serves_and_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(killed_target_is_a_dead_peer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            killed_command_ends_the_child_out_of_reach, setup, teardown),
        cmocka_unit_test_setup_teardown(nsenter_into_a_namespace, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(setpriv_as_another_user, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(push_file_two_hops_and_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bad_requests_fail_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(podman_context_end_to_end, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_chatty_command_fails_the_spawn, setup,
                                        teardown),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    unlink(log_file);
    if (own_rt) {
        char sub[64];
        snprintf(sub, sizeof sub, "%s/kin", rt);
        if ((rmdir(sub) && errno != ENOENT) || rmdir(rt)) {
            fprintf(stderr, "runtime directory %s not empty\n", rt);
            rc = rc ? rc : 1;
        }
    }
    return rc;
}
