/* process/ssh.c's pure steps: which links the ssh factory forwards, the
 * argv ssh gets, and the NAME=VALUE lines the remote bootstrap reads. */
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
#include "process/ssh.h"

#define TAG 0xabcull
#define R_UP "/tmp/kin-0000000000000abc-up.sock"
#define R_LOG "/tmp/kin-0000000000000abc-log.sock"

static const kin__child_link child = {.id = 5, .name = "far", .workers = 2};

/* p's argv joined with single spaces. */
static char *
joined(const kin__ssh_plan *p)
{
    size_t len = 1;
    for (size_t i = 0; p->argv[i]; i++)
        len += strlen(p->argv[i]) + 1;
    char *s = calloc(1, len);
    for (size_t i = 0; p->argv[i]; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, p->argv[i]);
    }
    return s;
}

/* The last argument, the remote command, without the bootstrap. */
static const char *
remote_args(const kin__ssh_plan *p)
{
    size_t n = 0;
    while (p->argv[n])
        n++;
    const char *cmd = p->argv[n - 1];
    assert_true(!strncmp(cmd, "exec /bin/sh -c '", 17));
    const char *tail = strstr(cmd, "' kin-boot");
    assert_non_null(tail);
    return tail + strlen("' kin-boot");
}

/* A parent on ipc: both links ride ssh forwardings to fresh remote
 * sockets; the caller's ssh arguments come before kin's defaults (ssh
 * takes an option's first value); program arguments are quoted for the
 * remote shell; the boot block carries the settings, then the
 * bootstrap's, then an empty line. */
static void
ipc_parent_forwards_both_links(void **state)
{
    (void)state;
    char *ssh_args[] = {"-v", "-o", "BatchMode=no", NULL};
    char *argv[] = {"prog", "it's", "a b", NULL};
    kin_spawn_opts o = {.host = "user@box",
                        .ssh_port = 2222,
                        .ssh_identity = "/k",
                        .ssh_args = ssh_args,
                        .argv = argv};
    kin__ssh_in in = {.opts = &o,
                      .endpoint = "ipc:///run/kin/1-0.sock",
                      .far_endpoint = "ipc:///run/kin/1-0.far.sock",
                      .log_endpoint = "ipc:///run/kin/1-logs-in.sock",
                      .is_master = true,
                      .tag = TAG,
                      .ssh_path = "/usr/bin/ssh",
                      .exe_size = 12345,
                      .hb_ivl = 1000,
                      .hb_timeout = 9000};
    kin__ssh_route r;
    assert_int_equal(kin__ssh_route_plan(&in, &child, &r), KIN_OK);
    assert_false(r.up_direct);
    assert_string_equal(r.link.endpoint, "ipc://" R_UP);
    assert_string_equal(r.link.log_endpoint, "ipc://" R_LOG);
    assert_false(r.link.curve_up);
    assert_false(r.link.log_curve);
    assert_true(r.link.remote);
    assert_int_equal(r.link.id, 5);

    char *vars[] = {"KIN_CHILD_ID=5", "KIN_CHILD_NAME=far"};
    kin__ssh_plan p;
    assert_int_equal(kin__ssh_plan_build(&in, &r, vars, 2, &p), KIN_OK);
    assert_string_equal(p.path, "/usr/bin/ssh");
    assert_true(p.stream_self);
    char *all = joined(&p);
    print_message("%s\n", all);
    const char *want =
        "ssh -T -x -p 2222 -i /k -v -o BatchMode=no -o BatchMode=yes "
        "-o ExitOnForwardFailure=yes -o ServerAliveInterval=3 "
        "-o ServerAliveCountMax=3 -o ControlMaster=no -o ControlPath=none "
        "-R " R_UP ":/run/kin/1-0.far.sock "
        "-R " R_LOG ":/run/kin/1-logs-in.sock -- user@box exec /bin/sh -c '";
    assert_true(!strncmp(all, want, strlen(want)));
    assert_string_equal(remote_args(&p), " 'it'\\''s' 'a b'");
    assert_string_equal(p.boot, "KIN_CHILD_ID=5\nKIN_CHILD_NAME=far\n"
                                "KIN_BOOT_CLEAN=" R_UP " " R_LOG "\n"
                                "KIN_BOOT_SIZE=12345\n\n");
    assert_int_equal(p.boot_len, strlen(p.boot));
    free(all);
    kin__ssh_plan_free(&p);
    kin__ssh_route_free(&r);
}

/* A master bound on tcp on a real address: the child connects straight
 * to both endpoints (over CURVE), so nothing is forwarded or to clean up;
 * an explicit program is run, not streamed. */
static void
master_on_a_real_tcp_address_is_reached_directly(void **state)
{
    (void)state;
    kin_spawn_opts o = {.host = "box", .program = "/opt/bin/worker"};
    kin__ssh_in in = {.opts = &o,
                      .endpoint = "tcp://10.1.2.3:5555",
                      .far_endpoint = "tcp://10.1.2.3:5555",
                      .log_endpoint = "tcp://10.1.2.3:5556",
                      .is_master = true,
                      .tag = TAG,
                      .ssh_path = "/usr/bin/ssh"};
    kin__ssh_route r;
    assert_int_equal(kin__ssh_route_plan(&in, &child, &r), KIN_OK);
    assert_true(r.up_direct);
    assert_true(r.log_direct);
    assert_string_equal(r.link.endpoint, "tcp://10.1.2.3:5555");
    assert_string_equal(r.link.log_endpoint, "tcp://10.1.2.3:5556");
    assert_false(r.link.curve_up); /* not forwarded: CURVE as any tcp link */
    kin__ssh_plan p;
    assert_int_equal(kin__ssh_plan_build(&in, &r, NULL, 0, &p), KIN_OK);
    char *all = joined(&p);
    print_message("%s\n", all);
    assert_null(strstr(all, " -R "));
    assert_non_null(strstr(all, " -o ServerAliveInterval=15 "));
    assert_false(p.stream_self);
    assert_string_equal(p.boot, "KIN_BOOT_CLEAN= \n"
                                "KIN_BOOT_PROGRAM=/opt/bin/worker\n\n");
    free(all);
    kin__ssh_plan_free(&p);
    kin__ssh_route_free(&r);
}

/* A child (not the master) forwards even a reachable log endpoint, which
 * a host further away may not reach; forwardings that lead to tcp carry
 * CURVE; loopback and wildcard addresses are forwarded, to this host. */
static void
child_forwards_its_links_and_tcp_ones_carry_curve(void **state)
{
    (void)state;
    kin_spawn_opts o = {.host = "box"};
    kin__ssh_in in = {.opts = &o,
                      .endpoint = "tcp://0.0.0.0:7000",
                      .far_endpoint = "tcp://0.0.0.0:7000",
                      .log_endpoint = "tcp://10.1.2.3:5556",
                      .is_master = false,
                      .tag = TAG,
                      .ssh_path = "/usr/bin/ssh"};
    kin__ssh_route r;
    assert_int_equal(kin__ssh_route_plan(&in, &child, &r), KIN_OK);
    assert_false(r.up_direct);
    assert_false(r.log_direct);
    assert_string_equal(r.up, "127.0.0.1:7000");
    assert_string_equal(r.log, "10.1.2.3:5556");
    assert_true(r.link.curve_up);
    assert_true(r.link.log_curve);
    assert_string_equal(r.link.endpoint, "ipc://" R_UP);
    kin__ssh_route_free(&r);
}

/* Settings that would reach ssh's option parser or break the boot block's
 * lines, and endpoints ssh cannot forward, are refused. */
static void
bad_settings_are_refused(void **state)
{
    (void)state;
    kin_spawn_opts o = {.host = "box"};
    kin__ssh_in in = {.opts = &o,
                      .endpoint = "ipc:///a",
                      .far_endpoint = "ipc:///a",
                      .log_endpoint = "",
                      .ssh_path = "/usr/bin/ssh"};
    kin__ssh_route r;
    static const char *hosts[] = {"", "-oProxyCommand=x", "box\nKIN_X=1"};
    for (size_t i = 0; i < 3; i++) {
        o.host = hosts[i];
        assert_int_equal(kin__ssh_route_plan(&in, &child, &r), -EINVAL);
    }
    o.host = "box";
    o.ssh_port = 70000;
    assert_int_equal(kin__ssh_route_plan(&in, &child, &r), -EINVAL);
    o.ssh_port = 0;
    o.program = "/bin/x\n";
    assert_int_equal(kin__ssh_route_plan(&in, &child, &r), -EINVAL);
    o.program = NULL;
    kin__child_link bad = child;
    bad.name = "a\nb";
    assert_int_equal(kin__ssh_route_plan(&in, &bad, &r), -EINVAL);
    in.far_endpoint = "inproc://x";
    assert_int_equal(kin__ssh_route_plan(&in, &child, &r), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ipc_parent_forwards_both_links),
        cmocka_unit_test(master_on_a_real_tcp_address_is_reached_directly),
        cmocka_unit_test(child_forwards_its_links_and_tcp_ones_carry_curve),
        cmocka_unit_test(bad_settings_are_refused),
    };
    return harness_run_group(tests);
}
