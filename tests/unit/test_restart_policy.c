/* process/restart_policy.c: the backoff a supervisor waits before a
 * restart (doubling, capped) and the intensity window that makes it give
 * up (restarts inside the period count, older ones do not). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "integration/harness.h"
#include "process/restart_policy.h"

#define MS 1000000ull

static void
backoff_doubles_per_restart_up_to_the_cap(void **state)
{
    (void)state;
    assert_int_equal(kin__restart_backoff_ms(10, 1000, 1), 10);
    assert_int_equal(kin__restart_backoff_ms(10, 1000, 2), 20);
    assert_int_equal(kin__restart_backoff_ms(10, 1000, 3), 40);
    assert_int_equal(kin__restart_backoff_ms(10, 1000, 7), 640);
    assert_int_equal(kin__restart_backoff_ms(10, 1000, 8), 1000);
    assert_int_equal(kin__restart_backoff_ms(10, 1000, 1000), 1000);
    /* A cap below the base wins; a negative base means none at all. */
    assert_int_equal(kin__restart_backoff_ms(50, 30, 1), 30);
    assert_int_equal(kin__restart_backoff_ms(-1, 1000, 5), 0);
    /* The first restart in a window (k 0 when nothing was booked) waits
     * the base. */
    assert_int_equal(kin__restart_backoff_ms(10, 1000, 0), 10);
}

static void
restarts_inside_the_period_count_and_trip_the_intensity(void **state)
{
    (void)state;
    uint64_t times[3]; /* intensity 2 */
    kin__restart_window w = {.times = times, .size = 3};
    uint64_t period = 1000 * MS, t0 = 5000 * MS;
    assert_true(kin__restart_window_book(&w, t0, period));
    assert_true(kin__restart_window_book(&w, t0 + 100 * MS, period));
    assert_int_equal(kin__restart_window_count(&w, t0 + 100 * MS, period), 2);
    /* The third within the period is one too many. */
    assert_false(kin__restart_window_book(&w, t0 + 1000 * MS, period));
}

static void
restarts_outside_the_period_are_forgotten(void **state)
{
    (void)state;
    uint64_t times[3]; /* intensity 2 */
    kin__restart_window w = {.times = times, .size = 3};
    uint64_t period = 1000 * MS, t0 = 5000 * MS;
    assert_true(kin__restart_window_book(&w, t0, period));
    assert_true(kin__restart_window_book(&w, t0 + 10 * MS, period));
    /* Just past the period after both: they no longer count. */
    uint64_t later = t0 + 10 * MS + period + 1;
    assert_int_equal(kin__restart_window_count(&w, later, period), 0);
    assert_true(kin__restart_window_book(&w, later, period));
    assert_true(kin__restart_window_book(&w, later + 1, period));
    /* Restarts spaced so that at most two fall in any period go on for
     * ever. */
    uint64_t base = later + 1 + period + 1;
    for (uint64_t i = 0; i < 20; i++)
        assert_true(kin__restart_window_book(&w, base + i * 501 * MS, period));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_doubles_per_restart_up_to_the_cap),
        cmocka_unit_test(
            restarts_inside_the_period_count_and_trip_the_intensity),
        cmocka_unit_test(restarts_outside_the_period_are_forgotten),
    };
    return harness_run_group(tests);
}
