/* Helpers for multi-process tests: clocks, process checks and a node that is
 * always torn down. Children started with kin_spawn are reaped by the node's
 * destroy even when a test fails. */
#ifndef KIN_TEST_HARNESS_H
#define KIN_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <kin/kin.h>

/* Monotonic milliseconds. */
double harness_now_ms(void);

/* Whether pid exists and is not a zombie. */
bool harness_pid_alive(pid_t pid);

/* Waits until pid is gone (or a zombie) or timeout_ms passes. */
bool harness_wait_gone(pid_t pid, int timeout_ms);

/* Sets a stderr log handler when KIN_TEST_VERBOSE is set. */
void harness_log_setup(void);

#endif
