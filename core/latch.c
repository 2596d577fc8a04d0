/* Latches: a mutex, a futex word getters sleep on, a reference count and a
 * growable ring of messages. put and get allocate nothing in the steady
 * state: the ring doubles when full and shrinks back once a large burst
 * has drained. */
#include "core/block_cache.h"
#include "core/latch_impl.h"
#include "core/sync.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/latch_lead.h"
#include "core/task.h"

#define RING_MIN 8     /* slots of a new latch: its `small` ring */
#define RING_KEEP 1024 /* an emptied ring larger than this shrinks */
_Static_assert(sizeof((kin_latch *)0)->small == RING_MIN * sizeof(kin_msg *),
               "the small ring holds RING_MIN slots");

/* take() result meaning "nothing to return yet: block". */
#define MUST_WAIT 1

uint64_t
kin__deadline_ns(int timeout_ms)
{
    if (timeout_ms < 0)
        return UINT64_MAX;
    if (timeout_ms == 0)
        return 0;
    return kin__now_ns() + (uint64_t)timeout_ms * 1000000u;
}

bool
kin__deadline_passed(uint64_t deadline)
{
    return deadline == 0 ||
           (deadline != UINT64_MAX && kin__now_ns() >= deadline);
}

kin_err
kin_latch_new(kin_latch **out)
{
    if (!out)
        return -EINVAL;
    /* One cached block: a call makes a latch and its caller frees it. */
    _Static_assert(sizeof(kin_latch) <= KIN__BLOCK_SIZE, "a latch is small");
    kin_latch *l = kin__block_get();
    if (!l)
        return -ENOMEM;
    memset(l, 0, sizeof *l);
    l->ring = l->small;
    l->cap = RING_MIN;
    atomic_init(&l->refs, 1);
    int rc = kin__mutex_init_fast(&l->mu);
    if (rc) {
        kin__block_put(l);
        return -rc;
    }
    *out = l;
    return KIN_OK;
}

void
kin__latch_set_call(kin_latch *l, uint32_t ctx, uint32_t handle)
{
    atomic_store_explicit(&l->call_ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&l->call_handle, handle, memory_order_relaxed);
}

static void
latch_free(kin_latch *l)
{
    for (size_t i = 0; i < l->len; i++) {
        kin_msg *m = l->ring[(l->head + i) & (l->cap - 1)];
        kin_msg_destroy(&m);
    }
    if (l->ring != l->small)
        free(l->ring);
    pthread_mutex_destroy(&l->mu);
    kin__block_put(l);
}

void
kin__latch_ref(kin_latch *l)
{
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void
kin__latch_unref(kin_latch *l)
{
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        latch_free(l);
}

void
kin_latch_destroy(kin_latch **lp)
{
    if (!lp || !*lp)
        return;
    kin_latch *l = *lp;

    /* A member would leave a dangling pointer in its select's list: it
     * leaves first (the select's lock is taken before mu, so not under
     * it). A put still waking a waiter holds a reference: it frees the
     * latch if it finishes last. Closed, so that a put through a reference
     * taken earlier (a delivery's) is refused rather than queued for
     * nobody. */
    pthread_mutex_lock(&l->mu);
    kin_select *s = l->sel;
    if (!s)
        l->closed = true;
    pthread_mutex_unlock(&l->mu);
    if (s) {
        kin_select_remove(s, l);
        pthread_mutex_lock(&l->mu);
        l->closed = true;
        pthread_mutex_unlock(&l->mu);
    }
    kin__latch_unref(l);
    *lp = NULL;
}

/* Doubles a full ring. The full ring wraps at head, so the wrapped prefix
 * [0, head) moves to just past the old end to keep the messages contiguous
 * modulo the new capacity. */
static int
grow(kin_latch *l)
{
    if (l->cap > SIZE_MAX / 2 / sizeof *l->ring)
        return -ENOMEM;
    size_t cap = l->cap * 2;
    kin_msg **ring;
    if (l->ring == l->small) {
        if ((ring = malloc(cap * sizeof *ring)))
            memcpy(ring, l->small, sizeof l->small);
    } else {
        ring = realloc(l->ring, cap * sizeof *ring);
    }
    if (!ring)
        return -ENOMEM;
    memcpy(ring + l->cap, ring, l->head * sizeof *ring);
    l->ring = ring;
    l->cap = cap;
    return 0;
}

kin_msg *
kin__latch_pop(kin_latch *l)
{
    kin_msg *m = l->ring[l->head];
    l->head = (l->head + 1) & (l->cap - 1);
    if (--l->len == 0) {
        l->head = 0;
        if (l->cap > RING_KEEP) {
            /* Give a drained burst's memory back. */
            free(l->ring);
            l->ring = l->small;
            l->cap = RING_MIN;
        }
    }
    return m;
}

kin_err
kin_latch_put(kin_latch *l, kin_msg **m)
{
    return kin__latch_put_then(l, m, NULL, NULL);
}

kin_err
kin__latch_put_then(kin_latch *l, kin_msg **m, void (*then)(void *), void *arg)
{
    if (!l || !m || !*m)
        return -EINVAL;
    pthread_mutex_lock(&l->mu);
    if (l->closed) {
        pthread_mutex_unlock(&l->mu);
        return KIN_ECLOSED;
    }
    if (l->len == l->cap) {
        int rc = grow(l);
        if (rc) {
            pthread_mutex_unlock(&l->mu);
            return rc;
        }
    }
    l->ring[(l->head + l->len) & (l->cap - 1)] = *m;
    l->len++;
    *m = NULL;
    if (then)
        then(arg);
    /* The waiter is woken after mu is released: woken while mu is still
     * held, it would block on mu at once (on one CPU it runs first and
     * sleeps again until the putter unlocks: two more switches). The
     * reference keeps the latch alive if the woken reader destroys it
     * before the wake returns. One wake per sleeping getter: a burst of
     * puts made before the woken ones run (on one CPU, all of it) wakes
     * each once, not once per put. */
    bool wake = l->waiters > l->wakes;
    if (wake) {
        l->wakes++;
        atomic_fetch_add_explicit(&l->seq, 1, memory_order_relaxed);
        kin__latch_ref(l);
    }
    if (l->sel)
        kin__select_notify(l->sel);
    if (l->wake_fd1)
        kin__fd_wake(l->wake_fd1 - 1);
    pthread_mutex_unlock(&l->mu);
    if (wake) {
        kin__futex_wake(&l->seq, 1);
        kin__latch_unref(l);
    }
    return KIN_OK;
}

/* One look at the latch, mu held: a result for get, or MUST_WAIT. The order
 * of the checks is the documented precedence: a queued message, then
 * closed, then cancelled, then timed out. */
static int
take(kin_latch *l, kin_task *t, uint64_t deadline, kin_msg **out)
{
    if (l->len) {
        *out = kin__latch_pop(l);
        return KIN_OK;
    }
    if (l->closed)
        return KIN_ECLOSED;
    if (kin__task_cancel_pending(t))
        return KIN_ECANCELLED;
    if (kin__deadline_passed(deadline))
        return KIN_ETIMEOUT;
    return MUST_WAIT;
}

/* Wakes every getter asleep on l (mu held). */
static void
wake_all(kin_latch *l)
{
    if (l->wake_fd1)
        kin__fd_wake(l->wake_fd1 - 1);
    if (!l->waiters)
        return;
    l->wakes = l->waiters;
    atomic_fetch_add_explicit(&l->seq, 1, memory_order_relaxed);
    kin__futex_wake(&l->seq, INT_MAX);
}

/* Called by kin__task_cancel with the task's mu held (lock order 1 then 3).
 * Broadcast: the latch's other waiters go back to sleep. */
static void
latch_wake(void *obj)
{
    kin_latch *l = obj;
    pthread_mutex_lock(&l->mu);
    wake_all(l);
    pthread_mutex_unlock(&l->mu);
}

/* The fast path of a get: one look, no clock read, no task bookkeeping
 * (KIN_ETIMEOUT: nothing yet). */
static int
take_now(kin_latch *l, kin_task *t, kin_msg **out)
{
    pthread_mutex_lock(&l->mu);
    int rc = take(l, t, 0, out);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* Sleeps on l until take() has a result (the slow half of get). Inlined,
 * so that a stack shows the get that waits (kin where, kin stacktrace). */
static inline __attribute__((always_inline)) kin_err
wait_taken(kin_latch *l, kin_task *t, uint64_t deadline, kin_msg **out)
{
    /* Register before looking again: a cancel from now on either is seen by
     * take() or wakes the wait below (kin__task_cancel sets the flag first
     * and latch_wake takes mu, which the waiter holds until it sleeps). */
    kin__task_wait_begin(t, latch_wake, l, "receiver");
    pthread_mutex_lock(&l->mu);
    int rc;
    while ((rc = take(l, t, deadline, out)) == MUST_WAIT) {
        l->waiters++;
        uint32_t seen = atomic_load_explicit(&l->seq, memory_order_relaxed);
        pthread_mutex_unlock(&l->mu);
        kin__futex_wait_until(&l->seq, seen, deadline);
        pthread_mutex_lock(&l->mu);
        l->waiters--;
        if (l->wakes)
            l->wakes--; /* this one, or one still on its way: harmless */
    }
    pthread_mutex_unlock(&l->mu);
    kin__task_wait_end(t);
    return rc;
}

kin_err
kin_latch_get(kin_latch *l, int timeout_ms, kin_msg **out)
{
    if (!l || !out)
        return -EINVAL;
    kin_task *t = kin_task_self();
    int rc = take_now(l, t, out);
    if (rc != KIN_ETIMEOUT || timeout_ms == 0)
        return rc;
    return wait_taken(l, t, kin__deadline_ns(timeout_ms), out);
}

/* --- gets led by their getter ------------------------------------------- */

static __thread int thread_fd = -1;
static pthread_key_t thread_fd_key;
static pthread_once_t thread_fd_once = PTHREAD_ONCE_INIT;

static void
close_thread_fd(void *fd1)
{
    close((int)(intptr_t)fd1 - 1);
    thread_fd = -1;
}

/* A forked child's thread is not the parent's: its eventfd is shared with
 * the parent's, so it gets its own when it first needs one. */
static void
forget_thread_fd(void)
{
    if (thread_fd >= 0)
        close(thread_fd);
    thread_fd = -1;
    pthread_setspecific(thread_fd_key, NULL);
}

static void
make_thread_fd_key(void)
{
    pthread_key_create(&thread_fd_key, close_thread_fd);
}

int
kin__thread_wake_fd(void)
{
    if (thread_fd >= 0)
        return thread_fd;
    pthread_once(&thread_fd_once, make_thread_fd_key);
    kin__forget_in_child(forget_thread_fd);
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (pthread_setspecific(thread_fd_key, (void *)(intptr_t)(fd + 1))) {
        close(fd);
        return -ENOMEM;
    }
    return thread_fd = fd;
}

void
kin__fd_wake(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

int
kin__fd_sleep(int fd, int other_fd, uint64_t deadline)
{
    int ms = -1;
    if (deadline != UINT64_MAX) {
        uint64_t now = kin__now_ns();
        ms = deadline > now ? (int)((deadline - now + 999999u) / 1000000u) : 0;
    }
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                          {.fd = other_fd, .events = POLLIN}};
    int rc = poll(p, other_fd >= 0 ? 2 : 1, ms);
    if (rc > 0 && p[0].revents) {
        uint64_t v;
        if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
            return -errno;
    }
    return rc < 0 && errno != EINTR ? -errno : 0;
}

kin_err
kin__latch_get_led(kin_latch *l, int timeout_ms, kin_msg **out,
                   kin__lead_fn lead, void *arg)
{
    kin_task *t = kin_task_self();
    int rc = take_now(l, t, out);
    if (rc != KIN_ETIMEOUT || timeout_ms == 0)
        return rc;
    uint64_t deadline = kin__deadline_ns(timeout_ms);
    int fd = kin__thread_wake_fd();
    if (fd < 0)
        return wait_taken(l, t, deadline, out);

    kin__task_wait_begin(t, latch_wake, l, "receiver");
    pthread_mutex_lock(&l->mu);
    if (l->wake_fd1) {
        /* Another thread leads a get of this latch (kin_call_wait may be
         * called from any thread): this one sleeps on seq. */
        pthread_mutex_unlock(&l->mu);
        kin__task_wait_end(t);
        return wait_taken(l, t, deadline, out);
    }
    l->wake_fd1 = fd + 1;
    int led = 0;
    while ((rc = take(l, t, deadline, out)) == MUST_WAIT) {
        pthread_mutex_unlock(&l->mu);
        led = lead(arg, fd, deadline, out);
        pthread_mutex_lock(&l->mu);
        if (led)
            break;
    }
    l->wake_fd1 = 0;
    pthread_mutex_unlock(&l->mu);
    kin__task_wait_end(t);
    if (led > 0)
        return KIN_OK;
    if (led < 0)
        return wait_taken(l, t, deadline, out);
    return rc;
}

void
kin_latch_close(kin_latch *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    if (!l->closed) {
        l->closed = true;
        wake_all(l);
        if (l->sel)
            kin__select_notify(l->sel);
    }
    pthread_mutex_unlock(&l->mu);
}

bool
kin_latch_closed(kin_latch *l)
{
    pthread_mutex_lock(&l->mu);
    bool closed = l->closed;
    pthread_mutex_unlock(&l->mu);
    return closed;
}

size_t
kin_latch_size(kin_latch *l)
{
    pthread_mutex_lock(&l->mu);
    size_t n = l->len;
    pthread_mutex_unlock(&l->mu);
    return n;
}
