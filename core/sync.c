/* Fork safety for kin's process-wide state: one pthread_atfork handler runs
 * the "forget" function of every module that keeps threads or locks, so
 * each module registers a function instead of an atfork pair of its own. */
#include "core/sync.h"

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FORGET_MAX 16

static void (*forget[FORGET_MAX])(void);
static atomic_int forget_n;
static pthread_mutex_t forget_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t forget_once = PTHREAD_ONCE_INIT;

static void
in_child(void)
{
    pthread_mutex_init(&forget_mu, NULL);
    int n = atomic_load_explicit(&forget_n, memory_order_acquire);
    for (int i = 0; i < n; i++)
        forget[i]();
}

static void
register_in_child(void)
{
    pthread_atfork(NULL, NULL, in_child);
}

static bool
known(void (*fn)(void), int n)
{
    for (int i = 0; i < n; i++)
        if (forget[i] == fn)
            return true;
    return false;
}

void
kin__forget_in_child(void (*fn)(void))
{
    if (known(fn, atomic_load_explicit(&forget_n, memory_order_acquire)))
        return;
    pthread_once(&forget_once, register_in_child);
    pthread_mutex_lock(&forget_mu);
    int n = atomic_load_explicit(&forget_n, memory_order_relaxed);
    if (!known(fn, n)) {
        if (n == FORGET_MAX)
            abort(); /* programmer error: raise FORGET_MAX */
        forget[n] = fn;
        atomic_store_explicit(&forget_n, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&forget_mu);
}

void
kin__futex_wait_until(_Atomic uint32_t *word, uint32_t expected,
                      uint64_t deadline)
{
    /* FUTEX_WAIT_BITSET takes an absolute time on CLOCK_MONOTONIC. */
    struct timespec ts, *tsp = NULL;
    if (deadline != UINT64_MAX) {
        ts.tv_sec = (time_t)(deadline / 1000000000u);
        ts.tv_nsec = (long)(deadline % 1000000000u);
        tsp = &ts;
    }
    syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected,
            tsp, NULL, FUTEX_BITSET_MATCH_ANY);
}

void
kin__futex_wake(_Atomic uint32_t *word, int count)
{
    syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, NULL, NULL,
            0);
}

void
kin__thread_name(const char *name)
{
    prctl(PR_SET_NAME, name, 0, 0, 0);
}
