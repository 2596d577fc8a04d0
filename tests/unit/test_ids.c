/* core/ids.c: the id-list body of system messages (HELLO chains, route
 * announcements, id blocks) written and read back, and bodies a peer might
 * send that must be refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/ids.h"
#include "integration/harness.h"

static void
round_trip_keeps_every_id(void **state)
{
    (void)state;
    const uint32_t ids[] = {0, 1, 127, 128, 65535, 65536, UINT32_MAX};
    size_t n = sizeof ids / sizeof *ids;
    kin_msg *m = NULL;
    assert_int_equal(kin__ids_msg_new(&m, ids, n), KIN_OK);
    uint32_t back[8] = {0};
    assert_int_equal(kin__ids_read(m->body, m->len, back, 8), (int)n);
    assert_memory_equal(back, ids, sizeof ids);
    /* Exactly as many as there is room for is not too many. */
    assert_int_equal(kin__ids_read(m->body, m->len, back, n), (int)n);
    kin_msg_destroy(&m);
}

static void
empty_list_reads_as_zero_ids(void **state)
{
    (void)state;
    kin_msg *m = NULL;
    assert_int_equal(kin__ids_msg_new(&m, NULL, 0), KIN_OK);
    assert_int_equal(m->len, 1); /* fixarray 0x90 */
    uint32_t back[1];
    assert_int_equal(kin__ids_read(m->body, m->len, back, 1), 0);
    assert_int_equal(kin__ids_read(m->body, m->len, NULL, 0), 0);
    kin_msg_destroy(&m);
}

static void
malformed_bodies_are_refused(void **state)
{
    (void)state;
    uint32_t back[4];
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } bad[] = {
        {"nothing", "", 0},
        {"not an array", "\x05", 1},
        {"a map", "\x81\x01\x02", 3},
        {"cut short", "\x93\x01\x02", 3},
        {"claims more than the bytes hold", "\xdd\xff\xff\xff\xff\x01", 6},
        {"bytes after the array", "\x91\x01\x01", 3},
        {"a byte msgpack never uses", "\x91\xc1", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (kin__ids_read(bad[i].bytes, bad[i].len, back, 4) != KIN_EBADMSG)
            fail_msg("%s: not refused as KIN_EBADMSG", bad[i].what);
}

static void
more_ids_than_room_is_too_big(void **state)
{
    (void)state;
    const uint32_t ids[] = {1, 2, 3, 4, 5};
    kin_msg *m = NULL;
    assert_int_equal(kin__ids_msg_new(&m, ids, 5), KIN_OK);
    uint32_t back[4] = {0};
    assert_int_equal(kin__ids_read(m->body, m->len, back, 4), KIN_ETOOBIG);
    kin_msg_destroy(&m);
}

static void
elements_that_are_not_u32_ids_are_refused(void **state)
{
    (void)state;
    uint32_t back[4];
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } bad[] = {
        {"negative", "\x92\x01\xff", 3},
        {"a string", "\x92\x01\xa1x", 4},
        {"nil", "\x91\xc0", 2},
        {"true", "\x91\xc3", 2},
        {"a float", "\x91\xca\x3f\x80\x00\x00", 6},
        {"a nested array", "\x91\x91\x01", 3},
        {"above UINT32_MAX", "\x91\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 10},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (kin__ids_read(bad[i].bytes, bad[i].len, back, 4) != KIN_EBADMSG)
            fail_msg("%s: not refused as KIN_EBADMSG", bad[i].what);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_keeps_every_id),
        cmocka_unit_test(empty_list_reads_as_zero_ids),
        cmocka_unit_test(malformed_bodies_are_refused),
        cmocka_unit_test(more_ids_than_room_is_too_big),
        cmocka_unit_test(elements_that_are_not_u32_ids_are_refused),
    };
    return harness_run_group(tests);
}
