/* Selects: wait on several latches at once. Member latches bump the
 * select's generation counter on every put and close; a getter scans the
 * members and sleeps only if the generation did not move during its scan. */
#include "core/latch_impl.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "core/sync.h"
#include "core/task.h"

void
kin__select_notify(kin_select *s)
{
    pthread_mutex_lock(&s->wake_mu);
    s->gen++;
    bool wake = s->waiters != 0;
    if (wake)
        atomic_fetch_add_explicit(&s->seq, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->wake_mu);
    /* After unlocking, as a latch's put: a woken waiter would block on
     * wake_mu at once. */
    if (wake)
        kin__futex_wake(&s->seq, INT_MAX);
}

kin_err
kin_select_new(kin_select **out, bool oneshot)
{
    if (!out)
        return -EINVAL;
    kin_select *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->oneshot = oneshot;
    int rc = pthread_mutex_init(&s->lock, NULL);
    if (rc) {
        free(s);
        return -rc;
    }
    rc = pthread_mutex_init(&s->wake_mu, NULL);
    if (rc) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return -rc;
    }
    *out = s;
    return KIN_OK;
}

/* Takes l out of s's list and clears its membership. s->lock and l->mu
 * held. */
static void
unlink_member(kin_select *s, kin_latch *l)
{
    if (s->cursor == l) /* the next member, wrapping; none if l was alone */
        s->cursor = l->next ? l->next : s->head == l ? NULL : s->head;
    if (l->prev)
        l->prev->next = l->next;
    else
        s->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        s->tail = l->prev;
    l->prev = l->next = NULL;
    l->sel = NULL;
    l->tag = NULL;
    s->count--;
}

void
kin_select_destroy(kin_select **sp)
{
    if (!sp || !*sp)
        return;
    kin_select *s = *sp;
    /* Detaching each latch under its mu is what makes freeing s safe: a
     * concurrent put only touches s while holding that mu with l->sel ==
     * s. */
    pthread_mutex_lock(&s->lock);
    while (s->head) {
        kin_latch *l = s->head;
        pthread_mutex_lock(&l->mu);
        unlink_member(s, l);
        pthread_mutex_unlock(&l->mu);
    }
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_destroy(&s->wake_mu);
    pthread_mutex_destroy(&s->lock);
    free(s);
    *sp = NULL;
}

kin_err
kin_select_add(kin_select *s, kin_latch *l, void *tag)
{
    if (!s || !l)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&l->mu);
    if (l->sel) {
        pthread_mutex_unlock(&l->mu);
        pthread_mutex_unlock(&s->lock);
        return KIN_EEXISTS;
    }
    l->sel = s;
    l->tag = tag;
    l->prev = s->tail;
    l->next = NULL;
    if (s->tail)
        s->tail->next = l;
    else
        s->head = l;
    s->tail = l;
    if (!s->cursor)
        s->cursor = l;
    s->count++;
    pthread_mutex_unlock(&l->mu);
    /* A waiter rescans: l may hold messages already. */
    kin__select_notify(s);
    pthread_mutex_unlock(&s->lock);
    return KIN_OK;
}

kin_err
kin_select_remove(kin_select *s, kin_latch *l)
{
    if (!s || !l)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&l->mu);
    bool member = l->sel == s;
    if (member)
        unlink_member(s, l);
    pthread_mutex_unlock(&l->mu);
    /* A waiter rescans: the remaining members may now all be closed. */
    if (member)
        kin__select_notify(s);
    pthread_mutex_unlock(&s->lock);
    return member ? KIN_OK : -ENOENT;
}

size_t
kin_select_count(kin_select *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* One non-blocking pass over the members, round-robin from the cursor.
 * Returns KIN_OK with a message, KIN_ECLOSED when there is nothing left to
 * wait for, or KIN_ETIMEOUT when a wait could help. */
static kin_err
scan(kin_select *s, kin_msg **out, void **tag)
{
    pthread_mutex_lock(&s->lock);
    kin_latch *l = s->cursor;
    bool all_closed = true;
    for (size_t i = 0; i < s->count; i++) {
        pthread_mutex_lock(&l->mu);
        if (l->len) {
            *out = kin__latch_pop(l);
            if (tag)
                *tag = l->tag;
            /* The next call starts after l. next is l only when l is the
             * sole member, and then a oneshot select is left empty. */
            kin_latch *next = l->next ? l->next : s->head;
            if (s->oneshot)
                unlink_member(s, l);
            s->cursor = s->count ? next : NULL;
            pthread_mutex_unlock(&l->mu);
            pthread_mutex_unlock(&s->lock);
            return KIN_OK;
        }
        all_closed = all_closed && l->closed;
        pthread_mutex_unlock(&l->mu);
        l = l->next ? l->next : s->head;
    }
    pthread_mutex_unlock(&s->lock);
    return all_closed ? KIN_ECLOSED : KIN_ETIMEOUT;
}

/* Called by kin__task_cancel with the task's mu held (lock order 1 then 4).
 * Bumping the generation makes the waiter rescan and then see the flag. */
static void
select_wake(void *obj)
{
    kin__select_notify(obj);
}

/* Records the calls among s's members as t's awaited calls (for the
 * monitor's await graph). Taken under s->lock, recorded after it: the
 * task's lock comes first in the lock order. */
static void
record_calls(kin_select *s, kin_task *t)
{
    uint32_t calls[KIN_TASK_MAX_AWAITS][2];
    uint32_t n = 0;
    pthread_mutex_lock(&s->lock);
    kin_latch *l = s->head;
    for (size_t i = 0; l && i < s->count; i++, l = l->next) {
        uint32_t h =
            atomic_load_explicit(&l->call_handle, memory_order_relaxed);
        if (h) {
            if (n < KIN_TASK_MAX_AWAITS) {
                calls[n][0] =
                    atomic_load_explicit(&l->call_ctx, memory_order_relaxed);
                calls[n][1] = h;
            }
            n++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    kin__task_await_calls(t, (const uint32_t(*)[2])calls, n);
}

static uint64_t
generation(kin_select *s)
{
    pthread_mutex_lock(&s->wake_mu);
    uint64_t g = s->gen;
    pthread_mutex_unlock(&s->wake_mu);
    return g;
}

kin_err
kin_select_get(kin_select *s, int timeout_ms, kin_msg **out, void **tag)
{
    if (!s || !out)
        return -EINVAL;
    kin_task *t = kin_task_self();
    uint64_t deadline = 0;
    bool waiting = false; /* registered with the task */
    kin_err rc;

    for (;;) {
        /* Snapshot before scanning: an event during or after the scan
         * changes gen, so the wait below cannot miss it. */
        uint64_t g = generation(s);
        rc = scan(s, out, tag);
        if (rc != KIN_ETIMEOUT)
            break;
        if (kin__task_cancel_pending(t)) {
            rc = KIN_ECANCELLED;
            break;
        }
        if (timeout_ms == 0 || (waiting && kin__deadline_passed(deadline)))
            break;
        if (!waiting) {
            /* Register, then scan again: a cancel from here on bumps gen. */
            deadline = kin__deadline_ns(timeout_ms);
            kin__task_wait_begin(t, select_wake, s, "select");
            if (t)
                record_calls(s, t);
            waiting = true;
            continue;
        }
        pthread_mutex_lock(&s->wake_mu);
        s->waiters++;
        while (s->gen == g && !kin__deadline_passed(deadline)) {
            uint32_t seen = atomic_load_explicit(&s->seq, memory_order_relaxed);
            pthread_mutex_unlock(&s->wake_mu);
            kin__futex_wait_until(&s->seq, seen, deadline);
            pthread_mutex_lock(&s->wake_mu);
        }
        s->waiters--;
        pthread_mutex_unlock(&s->wake_mu);
    }
    if (waiting) {
        kin__task_await_calls(t, NULL, 0);
        kin__task_wait_end(t);
    }
    return rc;
}
