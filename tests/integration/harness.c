/* Test helpers shared by the integration tests (see harness.h). */
#include "integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double
harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

bool
harness_pid_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The state follows the parenthesised command name. */
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

bool
harness_wait_gone(pid_t pid, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    while (harness_pid_alive(pid)) {
        if (harness_now_ms() > end)
            return false;
        usleep(2000);
    }
    return true;
}

void
harness_log_setup(void)
{
    if (getenv("KIN_TEST_VERBOSE"))
        kin_log_set_handler(kin_log_stderr, NULL, KIN_LOG_DEBUG);
}
