/* Small synchronisation helpers shared by kin's modules. */
#ifndef KIN_CORE_SYNC_H
#define KIN_CORE_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* KIN__KEEP_FREED: 1 unless built with AddressSanitizer. Caches that keep
 * freed blocks for reuse (message blocks, ended tasks) keep nothing under
 * ASan, so a use after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define KIN__KEEP_FREED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KIN__KEEP_FREED 0
#endif
#endif
#ifndef KIN__KEEP_FREED
#define KIN__KEEP_FREED 1
#endif

/* A mutex for short critical sections on hot paths (queues, tables): it
 * spins briefly before sleeping, which saves the futex wait/wake pair when
 * the holder is about to release it. Returns 0 or an errno value. */
static inline int
kin__mutex_init_fast(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    int rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

/* Runs fn in the child after every later fork (for state the child must
 * drop: threads that did not survive the fork, locks they may have held).
 * Registers fn once however often it is called; cheap after the first
 * call, so call it on a module's first-use path. Any thread. */
void kin__forget_in_child(void (*fn)(void));

/* Sets *ts to ms milliseconds from now on clock, for timed waits
 * (pthread_cond_timedwait uses CLOCK_REALTIME unless told otherwise). */
void kin__deadline(struct timespec *ts, clockid_t clock, int ms);

/* For waits that may be KIN_FOREVER (ms < 0): NULL, else *ts set as
 * kin__deadline(ts, CLOCK_REALTIME, ms) and ts returned. */
static inline const struct timespec *
kin__deadline_or_forever(struct timespec *ts, int ms)
{
    if (ms < 0)
        return NULL;
    kin__deadline(ts, CLOCK_REALTIME, ms);
    return ts;
}

/* pthread_cond_timedwait, or pthread_cond_wait when dl is NULL. */
static inline int
kin__cond_wait_dl(pthread_cond_t *c, pthread_mutex_t *m,
                  const struct timespec *dl)
{
    return dl ? pthread_cond_timedwait(c, m, dl) : pthread_cond_wait(c, m);
}

/* A wait on a 32-bit word (Linux futex, process-private): sleeps while
 * *word == expected, until kin__futex_wake on word, the monotonic deadline
 * (ns; UINT64_MAX: none) or a spurious wake-up. Callers re-check their
 * condition. Used instead of a condition variable where the waiter re-takes
 * a mutex: after pthread_cond_wait glibc marks that mutex contended, so its
 * next unlock costs a system call even when nobody waits. */
void kin__futex_wait_until(_Atomic uint32_t *word, uint32_t expected,
                           uint64_t deadline);

/* Wakes up to count threads sleeping on word (INT_MAX: all). */
void kin__futex_wake(_Atomic uint32_t *word, int count);
/* Names the calling thread (its comm: what ps, top and the monitor show).
 * Each of kin's threads names itself first thing: naming another thread
 * writes /proc/self/task/TID/comm, and each /proc entry opened in a
 * process makes its reaping slower (the kernel prunes them then; measured
 * 5 us against 75-940 us with six threads named so). Any thread. */
void kin__thread_name(const char *name);

/* The calling thread's kernel id, cached (gettid is a system call). */
int kin__gettid(void);

#endif
