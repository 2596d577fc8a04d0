/* Private to core/latch.c and core/select.c: the latch and select structs,
 * the lock order that keeps them deadlock-free, and the wait helpers both
 * files share. */
#ifndef KIN_CORE_LATCH_IMPL_H
#define KIN_CORE_LATCH_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <kin/latch.h>

/* Lock order. A thread holding one of these locks only ever takes locks
 * further down the list:
 *
 *   1. kin_task.mu         kin__task_cancel holds it while calling a wake
 *                          function (latch_wake takes a latch's mu,
 *                          select_wake a select's wake_mu).
 *   2. kin_select.lock     the member list; held across a whole scan so a
 *                          member cannot be removed (and freed by its owner)
 *                          while select_get is taking from it.
 *   3. kin_latch.mu        the queue, and the latch's membership fields.
 *   4. kin_select.wake_mu  the generation counter the select waits on; put
 *                          and close bump it while still holding the latch's
 *                          mu.
 *
 * Consequences: no task lock is taken under a latch or select lock (waits
 * register with kin__task_wait_begin before locking anything), and select
 * code never takes a latch's mu while holding wake_mu.
 *
 * Why put notifies the select with the latch's mu held: latch->sel can only
 * be cleared under that mu (by remove, a oneshot get or select destroy), so
 * while put holds it the select it points to cannot be detached, let alone
 * freed. Releasing mu first would need a reference count on the select. */

struct kin_latch {
    pthread_mutex_t mu;
    _Atomic uint32_t seq; /* getters sleep on it (futex); bumped to wake */
    kin_msg **ring;       /* cap slots, cap a power of two: first `small` */
    size_t cap, head;     /* head: index of the oldest message */
    size_t len;           /* number of queued messages */
    unsigned waiters;     /* threads asleep on seq */
    unsigned wakes;       /* of them, woken and not yet back: put wakes one more
                             only while waiters > wakes */
    bool closed;          /* also set by kin_latch_destroy */
    /* A getter that reads its reply itself (kin__latch_get_led) sleeps in
     * poll on this eventfd, + 1 (0: none), instead of on seq: put, close
     * and a cancel write it, under mu. */
    int wake_fd1;

    /* 1 for the owner until kin_latch_destroy, +1 for each holder that must
     * outlive it: a put waking a waiter after unlocking mu, a delivery
     * between finding the latch and putting to it. The last one frees. */
    atomic_uint refs;

    /* The ring while it has its first capacity (latch.c's RING_MIN): a
     * latch is one allocation until a burst grows it. */
    kin_msg *small[8];

    /* Membership. sel and tag are written with both sel->lock and mu held
     * and read under mu (put, close) or, by the select that owns the latch,
     * under sel->lock. The links are guarded by sel->lock. */
    kin_select *sel;
    void *tag;
    kin_latch *prev, *next; /* in sel's member list, in add order */

    /* The call whose reply comes here (call_handle 0: none), set once
     * before the latch joins a select, which records it as an awaited
     * call: atomics, so a select over many calls reads them without
     * taking every member's lock on each wait. */
    _Atomic uint32_t call_ctx, call_handle;
};

struct kin_select {
    pthread_mutex_t lock; /* guards the fields below up to wake_mu */
    kin_latch *head, *tail;
    kin_latch *cursor; /* member to try first: round-robin fairness */
    size_t count;
    bool oneshot;

    pthread_mutex_t wake_mu; /* guards gen, waiters */
    _Atomic uint32_t seq;    /* waiters sleep on it (futex); bumped to wake */
    uint64_t gen; /* bumped by every event a waiter must rescan for */
    unsigned waiters;
};

/* Bumps s's generation and wakes its waiters. Called with the putting or
 * closing latch's mu held (lock order 3 then 4), with s->lock held, or by
 * a task's cancel (its mu held): any of them keeps s alive until it
 * returns, which it does after the wake, itself after wake_mu is
 * released. */
void kin__select_notify(kin_select *s);

/* Takes the oldest message of l, which must be non-empty; l->mu held. */
kin_msg *kin__latch_pop(kin_latch *l);

/* The monotonic time timeout_ms from now: KIN_FOREVER (any negative value)
 * gives UINT64_MAX, 0 gives 0 (already past). */
uint64_t kin__deadline_ns(int timeout_ms);

/* Whether deadline (from kin__deadline_ns) has passed. */
bool kin__deadline_passed(uint64_t deadline);

#endif
