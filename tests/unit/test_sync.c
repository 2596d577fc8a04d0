/* core/sync.c: the one fork handler that runs every module's "forget"
 * function in a forked child. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/sync.h"
#include "integration/harness.h"

static int forgot_a, forgot_b;

static void
forget_a(void)
{
    forgot_a++;
}

static void
forget_b(void)
{
    forgot_b++;
}

/* The exit status of a forked child that reports the counters. */
static int
child_reports(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(forgot_a * 10 + forgot_b);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Each registered function runs once in the child, however often it was
 * registered; the parent's state is untouched; a function registered
 * later joins for later forks. */
static void
forget_runs_each_function_once_in_the_child(void **state)
{
    (void)state;
    kin__forget_in_child(forget_a);
    kin__forget_in_child(forget_a);
    assert_int_equal(child_reports(), 10);
    kin__forget_in_child(forget_b);
    assert_int_equal(child_reports(), 11);
    assert_int_equal(forgot_a, 0);
    assert_int_equal(forgot_b, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forget_runs_each_function_once_in_the_child),
    };
    return harness_run_group(tests);
}
