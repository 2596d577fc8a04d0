/* kin_strerror and kin_err_name for kin's own codes and for -errno. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include <kin/err.h>

#include "integration/harness.h"

static void
kin_codes_have_names_and_messages(void **state)
{
    assert_string_equal(kin_err_name(KIN_OK), "KIN_OK");
    assert_string_equal(kin_err_name(KIN_ETIMEOUT), "KIN_ETIMEOUT");
    assert_string_equal(kin_strerror(KIN_ENOROUTE), "no route to destination");
    assert_string_equal(kin_err_name(KIN_EPEERGONE), "KIN_EPEERGONE");
#define X(name, value, msg)                                                    \
    assert_true(value < -4096);                                                \
    assert_string_equal(kin_strerror(value), msg);
    KIN_ERR_MAP(X)
#undef X
}

static void
errno_codes_map_to_the_system(void **state)
{
    assert_string_equal(kin_err_name(-ENOENT), "ENOENT");
    assert_string_equal(kin_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(kin_err_name(-99999), "KIN_EUNKNOWN");
    assert_string_equal(kin_strerror(12345), "unknown error");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kin_codes_have_names_and_messages),
        cmocka_unit_test(errno_codes_map_to_the_system),
    };
    return harness_run_group(tests);
}
