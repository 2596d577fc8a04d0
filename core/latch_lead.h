/* Latch gets led by their getter: a thread waiting for one reply that
 * reads the reply's socket itself, instead of sleeping until another
 * thread receives the reply and puts it into the latch (docs/design.md,
 * "A caller that reads its own reply"). Internal to kin. */
#ifndef KIN_CORE_LATCH_LEAD_H
#define KIN_CORE_LATCH_LEAD_H

#include <stdint.h>

#include <kin/latch.h>

/* One round of a led wait: look for the reply (taking it into *out and
 * returning 1), or sleep until wake_fd or the reply's source is ready or
 * deadline (a kin__deadline_ns value) passes, and return 0 (the latch is
 * looked at again). -1: it cannot lead (any more); the get then sleeps on
 * the latch as kin_latch_get does. */
typedef int (*kin__lead_fn)(void *arg, int wake_fd, uint64_t deadline,
                            kin_msg **out);

/* kin_latch_get, with lead() called instead of sleeping while the latch is
 * empty (and not closed, nor the task cancelled, nor the deadline passed).
 * Meanwhile a put into l, closing it and cancelling the calling task write
 * the calling thread's eventfd, which lead() must poll. */
kin_err kin__latch_get_led(kin_latch *l, int timeout_ms, kin_msg **out,
                           kin__lead_fn lead, void *arg);

/* kin_latch_put, calling then(arg) once the message is in the latch and
 * before any getter is woken (with the latch's mutex held: then must take
 * no lock). A woken getter may run at once, before the putter gets the CPU
 * back: what it must see done, then does. */
kin_err kin__latch_put_then(kin_latch *l, kin_msg **m, void (*then)(void *),
                            void *arg);

/* The calling thread's eventfd (non-blocking), made on first use and
 * closed when the thread ends; -errno if none can be made. */
int kin__thread_wake_fd(void);

/* Writes 1 to eventfd fd. */
void kin__fd_wake(int fd);

/* Sleeps until eventfd fd or other_fd (-1: none) is readable, or deadline
 * passes; resets fd if it was. Returns 0, or -errno. */
int kin__fd_sleep(int fd, int other_fd, uint64_t deadline);

#endif
