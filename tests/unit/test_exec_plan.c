/* process/exec_channel.c's pure step: the argv the exec factory runs (a
 * preset or the caller's prefix, then the bootstrap), the label kin tree
 * shows, the link the child is told (its endpoints are the relay's), the
 * boot block, and the bad requests it refuses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "integration/harness.h"
#include "process/exec_channel.h"

static char *vars[] = {"KIN_CHILD_ID=5", "KIN_CHILD_NAME=probe"};

static kin__exec_in
input(const kin_spawn_opts *o)
{
    return (kin__exec_in){.opts = o,
                          .far_endpoint = "ipc:///run/kin/7-0.far.sock",
                          .log_endpoint = "ipc:///run/kin/7-0-logs-in.sock",
                          .exe_size = 4242};
}

static kin_err
build(const kin_spawn_opts *o, kin__child_link *l, kin__exec_plan *p)
{
    kin__exec_in in = input(o);
    *l = (kin__child_link){.id = 5, .name = "probe"};
    return kin__exec_plan_build(&in, l, vars, 2, p);
}

/* The podman preset: `podman exec -i NAME`, then the bootstrap; the child
 * is told "stdio" endpoints and heartbeats; the relay's targets are the
 * parent's far and log sockets. */
static void
podman_preset(void **state)
{
    kin_spawn_opts o = {.container = "podman:web"};
    kin__child_link l;
    kin__exec_plan p;
    assert_int_equal(build(&o, &l, &p), KIN_OK);
    const char *want[] = {"podman", "exec", "-i", "web", "/bin/sh", "-c"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(p.argv[i], want[i]);
    assert_non_null(strstr(p.argv[6], "KIN_CHILD_STDIO_DIR"));
    assert_string_equal(p.argv[7], "kin-boot");
    assert_null(p.argv[8]);
    assert_string_equal(p.label, "podman:web");
    assert_string_equal(p.up_target, "ipc:/run/kin/7-0.far.sock");
    assert_string_equal(p.log_target, "ipc:/run/kin/7-0-logs-in.sock");
    assert_true(l.stdio && l.remote && !l.curve_up);
    assert_string_equal(l.endpoint, "stdio");
    assert_true(p.stream_self);
    char want_boot[] = "KIN_CHILD_ID=5\nKIN_CHILD_NAME=probe\n"
                       "KIN_WHERE=podman:web\nKIN_BOOT_SIZE=4242\n\n";
    assert_int_equal(p.boot_len, strlen(want_boot));
    assert_memory_equal(p.boot, want_boot, p.boot_len);
    kin__exec_plan_free(&p);
}

/* kubectl ends its prefix with "--"; a caller's prefix is taken as is,
 * with the program's arguments after the bootstrap; a tcp parent makes a
 * CURVE link and a named program is not streamed. */
static void
kubectl_and_prefix(void **state)
{
    kin_spawn_opts o = {.container = "kubectl:pod-1"};
    kin__child_link l;
    kin__exec_plan p;
    assert_int_equal(build(&o, &l, &p), KIN_OK);
    assert_string_equal(p.argv[3], "pod-1");
    assert_string_equal(p.argv[4], "--");
    assert_string_equal(p.argv[5], "/bin/sh");
    kin__exec_plan_free(&p);

    char *prefix[] = {"unshare", "--net", "--", NULL};
    char *argv[] = {"worker", "--role", "a b", NULL};
    o = (kin_spawn_opts){.exec = prefix, .argv = argv, .program = "/opt/w"};
    kin__exec_in in = input(&o);
    in.far_endpoint = "tcp://0.0.0.0:5555";
    l = (kin__child_link){.id = 5, .name = "probe"};
    assert_int_equal(kin__exec_plan_build(&in, &l, vars, 2, &p), KIN_OK);
    assert_string_equal(p.argv[0], "unshare");
    assert_string_equal(p.argv[3], "/bin/sh");
    assert_string_equal(p.argv[6], "kin-boot");
    assert_string_equal(p.argv[7], "--role");
    assert_string_equal(p.argv[8], "a b");
    assert_null(p.argv[9]);
    assert_string_equal(p.label, "unshare --net --");
    assert_string_equal(p.up_target, "tcp:127.0.0.1:5555");
    assert_true(l.curve_up);
    assert_false(p.stream_self);
    assert_non_null(strstr(p.boot, "KIN_BOOT_PROGRAM=/opt/w\n"));
    kin__exec_plan_free(&p);
}

static void
bad_requests(void **state)
{
    char *prefix[] = {"unshare", NULL};
    char *empty[] = {NULL};
    const kin_spawn_opts bad[] = {
        {.container = "lxc:web"},
        {.container = "podman:"},
        {.container = "podman"},
        {.container = "docker:-it"},
        {.container = "podman:a\nb"},
        {.exec = empty},
        {.exec = prefix, .container = "podman:web"},
        {.exec = prefix, .program = "/bin/x\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kin__child_link l;
        kin__exec_plan p;
        assert_int_equal(build(&bad[i], &l, &p), -EINVAL);
        assert_null(p.argv);
    }
    kin_spawn_opts o = {.exec = prefix};
    kin__exec_in in = input(&o);
    in.far_endpoint = "inproc://x";
    kin__child_link l = {.id = 5, .name = "probe"};
    kin__exec_plan p;
    assert_int_equal(kin__exec_plan_build(&in, &l, vars, 2, &p), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(podman_preset),
        cmocka_unit_test(kubectl_and_prefix),
        cmocka_unit_test(bad_requests),
    };
    return harness_run_group(tests);
}
