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

/* Captures the return addresses of thread tid of this process into ips
 * (up to max), waiting up to timeout_ms for the thread to answer; the
 * calling thread's own stack when tid is its own. Returns the number of
 * addresses (the capture's own frames first: kin__sym_frames skips them),
 * or -ESRCH (no such thread), -EPERM (the thread blocks the capture
 * signal, as libzmq's threads do: not tried), -ETIMEDOUT (the thread did
 * not run its handler in time), -ENOTSUP (disabled). Any thread; one
 * capture at a time per process (serialised inside). */
int kin__stack_capture_raw(int tid, uintptr_t *ips, int max, int timeout_ms);

/* Symbolization of captured stacks: open one for a batch of captures
 * (reading the process's modules once), close it after (what libdw read
 * is freed and the heap trimmed, so a process that was asked for stacks
 * does not keep their debug info). */
typedef struct kin__symbolizer kin__symbolizer;
kin__symbolizer *kin__sym_open(void);
/* Frames of a kin__stack_capture_raw result, without the capture's own;
 * returns how many (up to max). s NULL: addresses only ("??"). */
int kin__sym_frames(kin__symbolizer *s, const uintptr_t *ips, int count,
                    kin__frame *frames, int max);
void kin__sym_close(kin__symbolizer *s);

/* kin__stack_capture_raw, then its frames symbolized. Returns the number
 * of frames or the capture's error. */
int kin__stack_capture(int tid, kin__frame *frames, int max, int timeout_ms);

/* Symbolizes return addresses addrs[0..n) (as a stack holds them: each
 * looked up one byte back, at its call) into frames[0..n), with a Dwfl
 * kept for the process's life after the first use (so a second call
 * costs lookups only). An address outside every module gives "??". Any
 * thread; serialised inside. */
void kin__stack_symbolize(const uintptr_t *addrs, int n, kin__frame *frames);

#endif
