/* core/sockname.c: the socket file names the router writes and the kin
 * command reads back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/sockname.h"
#include "integration/harness.h"

/* What the router writes for a node the command reads back; the names of
 * second nodes and of other files are not contexts' sockets. */
static void
written_names_parse_back_and_others_do_not(void **state)
{
    (void)state;
    char path[128];
    kin__sockname(path, sizeof path, "/run/kin", 4321, 7, 0);
    assert_string_equal(path, "/run/kin/4321-7.sock");
    int pid = 0;
    uint32_t id = 0;
    assert_true(kin__sockname_parse(strrchr(path, '/') + 1, &pid, &id));
    assert_int_equal(pid, 4321);
    assert_int_equal(id, 7);

    kin__sockname(path, sizeof path, "/run/kin", 4321, 0, 2);
    assert_string_equal(path, "/run/kin/4321-0.2.sock");
    assert_false(kin__sockname_parse("4321-0.2.sock", &pid, &id));
    static const char *other[] = {"4321-0.sockx", "4321-0.sock.tmp",
                                  "x-0.sock",     "4321-logs.sock",
                                  "0-0.sock",     "4321-0"};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        if (kin__sockname_parse(other[i], &pid, &id))
            fail_msg("'%s' parsed as a context's socket", other[i]);
}

/* The sweep of a master removes every socket file a dead process left,
 * second nodes', far and log forwarder sockets included, and nothing
 * else. */
static void
every_socket_file_a_context_makes_is_recognised_for_sweeping(void **state)
{
    (void)state;
    char path[128], far[140];
    kin__sockname(path, sizeof path, "/run/kin", 4321, 7, 3);
    assert_true(kin__sockname_far(far, sizeof far, path) > 0);
    assert_string_equal(far, "/run/kin/4321-7.3.far.sock");
    assert_int_equal(kin__sockname_far(far, sizeof far, "/run/kin/x"), -1);
    static const char *ours[] = {"4321-7.sock",        "4321-7.3.sock",
                                 "4321-7.far.sock",    "4321-7.3.far.sock",
                                 "4321-0-logs.sock",   "4321-0-logs-in.sock",
                                 "4321-0.1-logs.sock", "4321-0.t2-logs.sock"};
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) {
        int pid = 0;
        if (!kin__sockname_any(ours[i], &pid) || pid != 4321)
            fail_msg("'%s' not recognised as pid 4321's socket", ours[i]);
    }
    static const char *other[] = {"4321-logs.sock", "4321-7.sockx",
                                  "4321-7.x.sock",  "0-7.sock",
                                  "4321-7.3",       "x-7.sock",
                                  "4321-0-logs",    "4321-0.t-logs.sock",
                                  "4321-0.t2.sock", "4321-0-logsx.sock"};
    int pid;
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        if (kin__sockname_any(other[i], &pid))
            fail_msg("'%s' taken for a context's socket", other[i]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(written_names_parse_back_and_others_do_not),
        cmocka_unit_test(
            every_socket_file_a_context_makes_is_recognised_for_sweeping),
    };
    return harness_run_group(tests);
}
