/* Stacks of live threads, captured on demand: a real-time signal makes the
 * target thread unwind itself with libunwind; the addresses are symbolized
 * to function + file:line with libdw. See docs/monitor.md for the signal
 * used and how to opt out. */
#ifndef KIN_MONITOR_STACK_H
#define KIN_MONITOR_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KIN_STACK_MAX 64

typedef struct kin__frame {
    uintptr_t addr;
    char fn[128];
    char file[192];
    int line;
} kin__frame;

/* The signal used (SIGRTMIN + 3 unless KIN_STACK_SIGNAL names a number),
 * and whether capture is enabled (KIN_NO_STACKS=1 in the environment
 * disables it: no handler is installed). */
int kin__stack_signal(void);
bool kin__stack_enabled(void);

/* Installs the handler (once per process). Returns 0 or -errno. */
int kin__stack_install(void);

/* Captures the stack of thread tid of this process into frames (up to max),
 * waiting up to timeout_ms for the thread to answer. Returns the number of
 * frames, or -ESRCH (no such thread), -ETIMEDOUT (the thread did not run its
 * handler: e.g. blocked the signal), -ENOTSUP (disabled). Any thread but
 * tid; one capture at a time per process (serialised inside). */
int kin__stack_capture(int tid, kin__frame *frames, int max, int timeout_ms);

/* Symbolizes return addresses addrs[0..n) (as a stack holds them: each
 * looked up one byte back, at its call) into frames[0..n), with a Dwfl
 * kept for the process's life after the first use (so a second call
 * costs lookups only). An address outside every module gives "??". Any
 * thread; serialised inside. */
void kin__stack_symbolize(const uintptr_t *addrs, int n, kin__frame *frames);

#endif
