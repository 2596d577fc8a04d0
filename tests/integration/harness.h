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

/* Calls fn (no arguments) in context ctx until a log record of that
 * context with message msg reaches a subscriber of n's log frontend (at
 * WARNING and above), or timeout_ms passes: whether it did. */
bool harness_log_arrives(kin_node *n, uint32_t ctx, const char *fn,
                         const char *msg, int timeout_ms);

/* Sets a stderr log handler when KIN_TEST_VERBOSE is set. */
void harness_log_setup(void);

/* Runs the shell command made from fmt and returns its stdout (malloc'd,
 * "" if it could not run) and its exit status (-1 if it did not exit). */
char *harness_run(int *status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* How many times needle occurs in the file at path (0 if unreadable). */
size_t harness_count_in_file(const char *path, const char *needle);

/* Starts tcpdump capturing iface (with a pcap filter) into the file pcap
 * and returns its pid once it listens; -1 if it did not within 10 s (it is
 * reaped then; its stderr is in pcap.err). It dies with the test. */
pid_t harness_capture_start(const char *iface, const char *filter,
                            const char *pcap);

/* Waits (up to 5 s) until the capture holds `want` occurrences of
 * `marker`, then stops tcpdump and reaps it. */
void harness_capture_stop(pid_t pid, const char *pcap, const char *marker,
                          size_t want);

/* Skips the current cmocka test with a reason (printed to stderr) and
 * remembers that it did, so harness_run_group exits 77 (CTest: Skipped)
 * instead of 0. Never call cmocka's skip() directly: it exits 0 and the
 * skip would show as a pass (tests/check_skips.sh enforces this). */
#define harness_skip(...)                                                      \
    do {                                                                       \
        harness_note_skip(__VA_ARGS__);                                        \
        skip();                                                                \
    } while (0)
void harness_note_skip(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Runs a cmocka group and returns the exit status for main: the number of
 * failed tests, or 77 (CTest's SKIP_RETURN_CODE) when none failed but one
 * was skipped with harness_skip. Runs only the cases KIN_TEST_FILTER
 * matches (a cmocka pattern such as 'grandchild*') when it is set. */
#define harness_run_group(tests)                                               \
    (getenv("KIN_TEST_FILTER")                                                 \
         ? cmocka_set_test_filter(getenv("KIN_TEST_FILTER"))                   \
         : (void)0,                                                            \
     harness_group_status(cmocka_run_group_tests(tests, NULL, NULL)))
int harness_group_status(int failed);

/* From now on, an abort (SIGABRT: a libzmq or libuv assertion, glibc's
 * heap checks, abort()) prints to stderr, before the process dies of it,
 * where every thread of this process was: the aborting thread first, then
 * the others kin can unwind (libzmq's own threads block the signal kin
 * uses and are only named), function and file:line, as `kin where` shows
 * tasks. stdout is flushed first, so cmocka's last "[ RUN ]" line shows
 * which test it was. The process still dies of SIGABRT (CTest: "Subprocess
 * aborted"). */
void harness_stacks_on_abort(void);

/* Whether this executable carries DWARF debug info for the source file
 * `file` (pass __FILE__), i.e. whether kin can print file:line for frames in
 * it: true in Debug and RelWithDebInfo builds (or any build with -g), false
 * in Release and MinSizeRel. */
bool harness_has_debug_info(const char *file);

#endif
