/* Tests of the diagnostics hook (core/log.c): silence by default, delivery of
 * level, place and formatted text to the handler, the minimum level, turning
 * it off, and the level names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <kin/diag.h>

#include "integration/harness.h"

typedef struct record {
    int calls;
    kin_log_level level;
    const char *file;
    int line;
    char msg[2048];
    void *arg;
} record;

static void
recorder(kin_log_level level, const char *file, int line, const char *msg,
         void *arg)
{
    record *r = arg;
    r->calls++;
    r->level = level;
    r->file = file;
    r->line = line;
    r->arg = arg;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

static const kin_log_level all_levels[] = {KIN_LOG_DEBUG, KIN_LOG_INFO,
                                           KIN_LOG_WARNING, KIN_LOG_ERROR,
                                           KIN_LOG_CRITICAL};
#define NLEVELS (sizeof all_levels / sizeof *all_levels)

/* Redirects fd 1 and 2 to a temporary file while capturing. */
typedef struct capture {
    FILE *tmp;
    int saved_out, saved_err;
} capture;

static void
capture_start(capture *c)
{
    fflush(stdout);
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved_out = dup(1);
    c->saved_err = dup(2);
    assert_true(c->saved_out >= 0 && c->saved_err >= 0);
    assert_true(dup2(fileno(c->tmp), 1) >= 0);
    assert_true(dup2(fileno(c->tmp), 2) >= 0);
}

/* Restores fd 1 and 2; returns what was written (caller frees). */
static char *
capture_stop(capture *c)
{
    fflush(stdout);
    fflush(stderr);
    dup2(c->saved_out, 1);
    dup2(c->saved_err, 2);
    close(c->saved_out);
    close(c->saved_err);
    fseek(c->tmp, 0, SEEK_END);
    long n = ftell(c->tmp);
    assert_true(n >= 0);
    char *s = calloc(1, (size_t)n + 1);
    assert_non_null(s);
    rewind(c->tmp);
    if (n > 0)
        assert_int_equal(fread(s, 1, (size_t)n, c->tmp), (size_t)n);
    fclose(c->tmp);
    return s;
}

static int
reset(void **state)
{
    kin_diag_set_handler(NULL, NULL, KIN_LOG_DEBUG);
    return 0;
}

/* Runs first, before any handler was ever set: the library's default. */
static void
silent_by_default(void **state)
{
    for (size_t i = 0; i < NLEVELS; i++)
        assert_false(kin_diag_enabled(all_levels[i]));

    capture c;
    capture_start(&c);
    for (size_t i = 0; i < NLEVELS; i++)
        kin_diag_emit(all_levels[i], "f.c", 1, "should not appear %d", 1);
    char *out = capture_stop(&c);
    assert_string_equal(out, "");
    free(out);
}

static void
handler_receives_the_record(void **state)
{
    record r = {0};
    kin_diag_set_handler(recorder, &r, KIN_LOG_DEBUG);
    kin_diag_emit(KIN_LOG_WARNING, "router/node.c", 42, "peer %u gone: %s", 7u,
                  "timeout");
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.level, KIN_LOG_WARNING);
    assert_string_equal(r.file, "router/node.c");
    assert_int_equal(r.line, 42);
    assert_string_equal(r.msg, "peer 7 gone: timeout");
    assert_ptr_equal(r.arg, &r);

    kin_diag_emit(KIN_LOG_DEBUG, "a.c", 1, "plain");
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.level, KIN_LOG_DEBUG);
    assert_string_equal(r.msg, "plain");
}

static void
long_messages_are_truncated_safely(void **state)
{
    record r = {0};
    kin_diag_set_handler(recorder, &r, KIN_LOG_DEBUG);
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    kin_diag_emit(KIN_LOG_ERROR, "a.c", 1, "<%s>", big);
    assert_int_equal(r.calls, 1);
    size_t n = strlen(r.msg);
    assert_true(n > 0 && n < sizeof big);
    assert_int_equal(r.msg[0], '<');
    assert_int_equal(r.msg[n - 1], 'x');
}

static void
records_below_min_level_are_dropped(void **state)
{
    record r = {0};
    kin_diag_set_handler(recorder, &r, KIN_LOG_WARNING);

    assert_false(kin_diag_enabled(KIN_LOG_DEBUG));
    assert_false(kin_diag_enabled(KIN_LOG_INFO));
    assert_false(kin_diag_enabled(KIN_LOG_WARNING - 1));
    assert_true(kin_diag_enabled(KIN_LOG_WARNING));
    assert_true(kin_diag_enabled(KIN_LOG_ERROR));
    assert_true(kin_diag_enabled(KIN_LOG_CRITICAL));

    kin_diag_emit(KIN_LOG_DEBUG, "a.c", 1, "debug");
    kin_diag_emit(KIN_LOG_INFO, "a.c", 2, "info");
    assert_int_equal(r.calls, 0);

    kin_diag_emit(KIN_LOG_WARNING, "a.c", 3, "warning");
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.msg, "warning");
    kin_diag_emit(KIN_LOG_CRITICAL, "a.c", 4, "critical");
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.level, KIN_LOG_CRITICAL);

    /* Raising the minimum takes effect at once. */
    kin_diag_set_handler(recorder, &r, KIN_LOG_CRITICAL);
    assert_false(kin_diag_enabled(KIN_LOG_ERROR));
    kin_diag_emit(KIN_LOG_ERROR, "a.c", 5, "error");
    assert_int_equal(r.calls, 2);
}

static void
null_handler_turns_logging_off(void **state)
{
    record r = {0};
    kin_diag_set_handler(recorder, &r, KIN_LOG_DEBUG);
    kin_diag_emit(KIN_LOG_INFO, "a.c", 1, "on");
    assert_int_equal(r.calls, 1);

    kin_diag_set_handler(NULL, &r, KIN_LOG_DEBUG);
    for (size_t i = 0; i < NLEVELS; i++) {
        assert_false(kin_diag_enabled(all_levels[i]));
        kin_diag_emit(all_levels[i], "a.c", 2, "off");
    }
    assert_int_equal(r.calls, 1);

    /* Off means silent, not a fallback to stderr. */
    kin_diag_set_handler(kin_diag_stderr, NULL, KIN_LOG_DEBUG);
    kin_diag_set_handler(NULL, NULL, KIN_LOG_DEBUG);
    capture c;
    capture_start(&c);
    kin_diag_emit(KIN_LOG_CRITICAL, "a.c", 3, "off");
    char *out = capture_stop(&c);
    assert_string_equal(out, "");
    free(out);
}

static void
new_handler_replaces_old(void **state)
{
    record a = {0}, b = {0};
    kin_diag_set_handler(recorder, &a, KIN_LOG_DEBUG);
    kin_diag_set_handler(recorder, &b, KIN_LOG_DEBUG);
    kin_diag_emit(KIN_LOG_INFO, "a.c", 1, "to b");
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
    assert_string_equal(b.msg, "to b");
}

static void
stderr_handler_prints_one_line(void **state)
{
    kin_diag_set_handler(kin_diag_stderr, NULL, KIN_LOG_DEBUG);
    capture c;
    capture_start(&c);
    kin_diag_emit(KIN_LOG_ERROR, "core/x.c", 17, "bad %s", "thing");
    char *out = capture_stop(&c);
    assert_string_equal(out, "kin error core/x.c:17: bad thing\n");
    free(out);
}

static void
level_names(void **state)
{
    assert_string_equal(kin_log_level_name(KIN_LOG_DEBUG), "debug");
    assert_string_equal(kin_log_level_name(KIN_LOG_INFO), "info");
    assert_string_equal(kin_log_level_name(KIN_LOG_WARNING), "warning");
    assert_string_equal(kin_log_level_name(KIN_LOG_ERROR), "error");
    assert_string_equal(kin_log_level_name(KIN_LOG_CRITICAL), "critical");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        /* First: it checks the state before any handler is set. */
        cmocka_unit_test(silent_by_default),
        cmocka_unit_test_teardown(handler_receives_the_record, reset),
        cmocka_unit_test_teardown(long_messages_are_truncated_safely, reset),
        cmocka_unit_test_teardown(records_below_min_level_are_dropped, reset),
        cmocka_unit_test_teardown(null_handler_turns_logging_off, reset),
        cmocka_unit_test_teardown(new_handler_replaces_old, reset),
        cmocka_unit_test_teardown(stderr_handler_prints_one_line, reset),
        cmocka_unit_test(level_names),
    };
    return harness_run_group(tests);
}
