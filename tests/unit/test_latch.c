/* Latches and selects: FIFO order, timeouts, close, many-thread delivery,
 * select fairness and membership, and cancellation of a blocked task. Waits
 * for "thread is blocked" look at the waiter counts in core/latch_impl.h. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <kin/latch.h>

#include "core/latch_impl.h"
#include "core/latch_lead.h"
#include "core/task.h"

#include "integration/harness.h"

#define WAIT_MS 10000  /* deadline for events that should come at once */
#define MARGIN_MS 2000 /* slack over a timeout, generous for sanitizers */
#define SETTLE_MS 50   /* gap before asserting a waiter still waits */

static kin_msg *
msg(uint32_t id)
{
    kin_msg *m = NULL;
    assert_int_equal(kin_msg_new(&m, 0), KIN_OK);
    m->handle = id;
    return m;
}

static void
put(kin_latch *l, uint32_t id)
{
    kin_msg *m = msg(id);
    assert_int_equal(kin_latch_put(l, &m), KIN_OK);
    assert_null(m);
}

/* Gets one message without waiting and checks its id. */
static void
expect(kin_latch *l, uint32_t id)
{
    kin_msg *m = NULL;
    assert_int_equal(kin_latch_get(l, 0, &m), KIN_OK);
    assert_non_null(m);
    assert_int_equal(m->handle, id);
    kin_msg_destroy(&m);
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static uint64_t
elapsed_ms(uint64_t since_ns)
{
    return (kin__now_ns() - since_ns) / 1000000u;
}

static unsigned
latch_waiters(kin_latch *l)
{
    pthread_mutex_lock(&l->mu);
    unsigned n = l->waiters;
    pthread_mutex_unlock(&l->mu);
    return n;
}

static unsigned
select_waiters(kin_select *s)
{
    pthread_mutex_lock(&s->wake_mu);
    unsigned n = s->waiters;
    pthread_mutex_unlock(&s->wake_mu);
    return n;
}

/* Waits until n threads are blocked on l (or s), failing after WAIT_MS. */
static void
await_latch_waiters(kin_latch *l, unsigned n)
{
    uint64_t t0 = kin__now_ns();
    while (latch_waiters(l) < n) {
        if (elapsed_ms(t0) > WAIT_MS)
            fail_msg("%u waiters never blocked on the latch", n);
        sleep_ms(1);
    }
}

static void
await_select_waiters(kin_select *s, unsigned n)
{
    uint64_t t0 = kin__now_ns();
    while (select_waiters(s) < n) {
        if (elapsed_ms(t0) > WAIT_MS)
            fail_msg("%u waiters never blocked on the select", n);
        sleep_ms(1);
    }
}

static void
join_within(pthread_t th, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    int rc = pthread_timedjoin_np(th, NULL, &ts);
    if (rc)
        fail_msg("thread did not finish within %d ms: %s", ms, strerror(rc));
}

/* A thread blocked in kin_latch_get (sel NULL) or kin_select_get, running
 * as a kin task when as_task is set. */
struct getter {
    kin_latch *l;
    kin_select *sel;
    int timeout_ms;
    bool as_task;
    kin_task task;
    kin_err rc;
    kin_msg *m;
    void *tag;
    atomic_bool done;
    pthread_t th;
};

static void *
getter_main(void *arg)
{
    struct getter *g = arg;
    if (g->as_task)
        kin__task_set_self(&g->task);
    if (g->sel)
        g->rc = kin_select_get(g->sel, g->timeout_ms, &g->m, &g->tag);
    else
        g->rc = kin_latch_get(g->l, g->timeout_ms, &g->m);
    kin__task_set_self(NULL);
    atomic_store(&g->done, true);
    return NULL;
}

static void
getter_start(struct getter *g, kin_latch *l, kin_select *sel, bool as_task)
{
    memset(g, 0, sizeof *g);
    g->l = l;
    g->sel = sel;
    g->timeout_ms = KIN_FOREVER;
    g->as_task = as_task;
    g->rc = 1; /* not a kin_err: "never returned" */
    if (as_task)
        kin__task_init(&g->task, 1, 7, "getter");
    assert_int_equal(pthread_create(&g->th, NULL, getter_main, g), 0);
}

/* Joins the getter; g->rc, g->m and g->tag are then the caller's to read
 * (and g->m to free). */
static void
getter_finish(struct getter *g)
{
    join_within(g->th, WAIT_MS);
    if (g->as_task)
        kin__task_fini(&g->task);
}

/* ---- latch ---- */

/* Interleaved puts and gets of growing batches, so the ring is full while
 * wrapped around when it has to grow. */
static void
put_get_interleaved(kin_latch *l)
{
    uint32_t next_put = 0, next_get = 0;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 5 + round * 7; i++)
            put(l, next_put++);
        for (int i = 0; i < 3 + round * 5; i++)
            expect(l, next_get++);
    }
    while (next_get < next_put)
        expect(l, next_get++);
    assert_int_equal(kin_latch_size(l), 0);
}

static void
put_get_keeps_fifo_order(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    put_get_interleaved(l);

    /* A burst far beyond the ring's size, then the same again once the
     * drained ring has shrunk back. */
    for (uint32_t i = 0; i < 5000; i++)
        put(l, i);
    assert_int_equal(kin_latch_size(l), 5000);
    for (uint32_t i = 0; i < 5000; i++)
        expect(l, i);
    put_get_interleaved(l);
    kin_latch_destroy(&l);
    assert_null(l);
}

static void
get_times_out(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    kin_msg *m = NULL;
    uint64_t t0 = kin__now_ns();
    assert_int_equal(kin_latch_get(l, 150, &m), KIN_ETIMEOUT);
    uint64_t ms = elapsed_ms(t0);
    assert_null(m);
    assert_true(ms >= 150);
    assert_true(ms < 150 + MARGIN_MS);
    kin_latch_destroy(&l);
}

static void
poll_returns_at_once(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    kin_msg *m = NULL;
    uint64_t t0 = kin__now_ns();
    assert_int_equal(kin_latch_get(l, 0, &m), KIN_ETIMEOUT);
    assert_true(elapsed_ms(t0) < MARGIN_MS);
    assert_null(m);
    put(l, 42);
    expect(l, 42);
    assert_int_equal(kin_latch_get(l, 0, &m), KIN_ETIMEOUT);
    kin_latch_destroy(&l);
}

static void
get_wakes_on_put_from_another_thread(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    struct getter g;
    getter_start(&g, l, NULL, false);
    await_latch_waiters(l, 1);
    sleep_ms(SETTLE_MS);
    assert_false(atomic_load(&g.done));
    put(l, 5);
    getter_finish(&g);
    assert_int_equal(g.rc, KIN_OK);
    assert_int_equal(g.m->handle, 5);
    kin_msg_destroy(&g.m);
    kin_latch_destroy(&l);
}

static void
close_wakes_every_waiter(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    struct getter g[4];
    for (int i = 0; i < 4; i++)
        getter_start(&g[i], l, NULL, false);
    await_latch_waiters(l, 4);
    assert_false(kin_latch_closed(l));
    kin_latch_close(l);
    assert_true(kin_latch_closed(l));
    for (int i = 0; i < 4; i++) {
        getter_finish(&g[i]);
        assert_int_equal(g[i].rc, KIN_ECLOSED);
        assert_null(g[i].m);
    }
    kin_latch_close(l); /* idempotent */
    kin_latch_destroy(&l);
}

static void
close_keeps_queued_messages(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    put(l, 1);
    put(l, 2);
    kin_latch_close(l);
    expect(l, 1);
    kin_msg *m = NULL;
    assert_int_equal(kin_latch_get(l, KIN_FOREVER, &m), KIN_OK);
    assert_int_equal(m->handle, 2);
    kin_msg_destroy(&m);
    assert_int_equal(kin_latch_get(l, KIN_FOREVER, &m), KIN_ECLOSED);
    assert_int_equal(kin_latch_get(l, 0, &m), KIN_ECLOSED);
    assert_null(m);
    kin_latch_destroy(&l);
}

static void
put_after_close_leaves_message_with_caller(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    kin_latch_close(l);
    kin_msg *m = msg(9);
    kin_msg *orig = m;
    assert_int_equal(kin_latch_put(l, &m), KIN_ECLOSED);
    assert_ptr_equal(m, orig);
    assert_int_equal(m->handle, 9);
    assert_int_equal(kin_latch_size(l), 0);
    kin_msg_destroy(&m);
    kin_latch_destroy(&l);
}

static void
bad_arguments_are_errors(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    kin_msg *m = NULL;
    assert_int_equal(kin_latch_put(l, &m), -EINVAL);
    assert_int_equal(kin_latch_put(l, NULL), -EINVAL);
    assert_int_equal(kin_latch_get(l, 0, NULL), -EINVAL);
    kin_latch_destroy(&l);
    kin_latch_destroy(&l); /* NULL-safe */
    kin_latch_destroy(NULL);
    kin_select_destroy(NULL);
}

static void
destroy_frees_queued_messages(void **state)
{
    /* Under ASan a leak here fails the run. */
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    for (uint32_t i = 0; i < 20; i++)
        put(l, i);
    expect(l, 0);
    kin_latch_destroy(&l);
    assert_null(l);
}

#define PRODUCERS 4
#define CONSUMERS 2
#define PER_PRODUCER 25000

struct pc {
    kin_latch *l;
    atomic_uint seen[PRODUCERS * PER_PRODUCER];
    atomic_uint received;
    atomic_bool out_of_order;
};

struct producer {
    struct pc *pc;
    uint32_t index;
};

static void *
producer_main(void *arg)
{
    struct producer *p = arg;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        kin_msg *m = NULL;
        if (kin_msg_new(&m, 0) != KIN_OK)
            abort();
        m->src = p->index;
        m->handle = p->index * PER_PRODUCER + i;
        if (kin_latch_put(p->pc->l, &m) != KIN_OK)
            abort();
    }
    return NULL;
}

static void *
consumer_main(void *arg)
{
    struct pc *pc = arg;
    int64_t last[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        last[i] = -1;
    kin_msg *m = NULL;
    while (kin_latch_get(pc->l, KIN_FOREVER, &m) == KIN_OK) {
        /* One latch: each consumer sees a producer's messages in order. */
        if ((int64_t)m->handle <= last[m->src])
            atomic_store(&pc->out_of_order, true);
        last[m->src] = m->handle;
        atomic_fetch_add(&pc->seen[m->handle], 1);
        atomic_fetch_add(&pc->received, 1);
        kin_msg_destroy(&m);
    }
    return NULL;
}

static void
producers_and_consumers_deliver_each_message_once(void **state)
{
    struct pc *pc = calloc(1, sizeof *pc);
    assert_non_null(pc);
    assert_int_equal(kin_latch_new(&pc->l), KIN_OK);
    pthread_t prod[PRODUCERS], cons[CONSUMERS];
    struct producer p[PRODUCERS];
    for (int i = 0; i < CONSUMERS; i++)
        assert_int_equal(pthread_create(&cons[i], NULL, consumer_main, pc), 0);
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){pc, i};
        assert_int_equal(pthread_create(&prod[i], NULL, producer_main, &p[i]),
                         0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        join_within(prod[i], 60000);
    /* Every message reaches a consumer blocked in get, not just the ones
     * that close would flush out. */
    uint64_t t0 = kin__now_ns();
    while (atomic_load(&pc->received) < PRODUCERS * PER_PRODUCER) {
        if (elapsed_ms(t0) > 60000)
            fail_msg("only %u messages received", atomic_load(&pc->received));
        sleep_ms(1);
    }
    kin_latch_close(pc->l);
    for (int i = 0; i < CONSUMERS; i++)
        join_within(cons[i], 60000);
    for (size_t i = 0; i < PRODUCERS * PER_PRODUCER; i++)
        if (atomic_load(&pc->seen[i]) != 1)
            fail_msg("message %zu received %u times", i,
                     atomic_load(&pc->seen[i]));
    assert_false(atomic_load(&pc->out_of_order));
    assert_int_equal(kin_latch_size(pc->l), 0);
    kin_latch_destroy(&pc->l);
    free(pc);
}

/* One message from a thread to a waiting reader, which destroys the latch
 * as soon as it has it: the putter may still be waking it. */
#define HANDOFFS 20000

static void *
handoff_putter(void *arg)
{
    kin_latch *l = arg;
    /* Until the reader sleeps (bounded: it may be slow to get there). */
    uint64_t t0 = kin__now_ns();
    while (latch_waiters(l) < 1 && elapsed_ms(t0) < WAIT_MS)
        sched_yield();
    kin_msg *m = msg(7);
    if (kin_latch_put(l, &m))
        kin_msg_destroy(&m); /* the reader's get then fails */
    return NULL;
}

static void
reader_may_destroy_the_latch_it_was_woken_for(void **state)
{
    for (int i = 0; i < HANDOFFS; i++) {
        kin_latch *l = NULL;
        assert_int_equal(kin_latch_new(&l), KIN_OK);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, handoff_putter, l), 0);
        kin_msg *m = NULL;
        assert_int_equal(kin_latch_get(l, 10000, &m), KIN_OK);
        assert_int_equal(m->handle, 7);
        kin_msg_destroy(&m);
        kin_latch_destroy(&l); /* the putter may not have returned yet */
        join_within(th, 10000);
    }
}

/* ---- gets led by their getter (core/latch_lead.h) ---- */

/* A lead that reads nothing: it sleeps on the thread's eventfd until a
 * put, close or cancel writes it (or the deadline), as router/lead.c's
 * does between its reads. */
static int
sleeping_lead(void *arg, int wake_fd, uint64_t deadline, kin_msg **out)
{
    atomic_int *rounds = arg;
    atomic_fetch_add(rounds, 1);
    kin__fd_sleep(wake_fd, -1, deadline);
    return 0;
}

/* A lead that cannot lead (another thread reads the socket). */
static int
refused_lead(void *arg, int wake_fd, uint64_t deadline, kin_msg **out)
{
    return -1;
}

/* A lead that finds its message itself. */
static int
finding_lead(void *arg, int wake_fd, uint64_t deadline, kin_msg **out)
{
    *out = msg(42);
    return 1;
}

typedef struct led {
    kin_latch *l;
    int timeout_ms;
    kin__lead_fn fn;
    atomic_int rounds;
    kin_err e;
    uint32_t got;
    atomic_bool done;
} led;

static void *
led_getter(void *arg)
{
    led *g = arg;
    kin_msg *m = NULL;
    g->e = kin__latch_get_led(g->l, g->timeout_ms, &m, g->fn, &g->rounds);
    g->got = m ? m->handle : 0;
    kin_msg_destroy(&m);
    atomic_store(&g->done, true);
    return NULL;
}

/* Starts g's getter and waits until it leads (bounded). */
static void
start_led(led *g, pthread_t *th)
{
    assert_int_equal(pthread_create(th, NULL, led_getter, g), 0);
    uint64_t t0 = kin__now_ns();
    while (atomic_load(&g->rounds) < 1 && elapsed_ms(t0) < WAIT_MS)
        sched_yield();
}

static void
led_get_is_woken_by_a_put(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    led g = {.l = l, .timeout_ms = WAIT_MS, .fn = sleeping_lead};
    pthread_t th;
    uint64_t t0 = kin__now_ns();
    start_led(&g, &th);
    put(l, 9);
    join_within(th, WAIT_MS);
    assert_int_equal(g.e, KIN_OK);
    assert_int_equal(g.got, 9);
    assert_true(elapsed_ms(t0) < WAIT_MS);
    /* What a lead finds itself is the result; the latch is not read. */
    put(l, 10);
    kin_msg *m = NULL;
    assert_int_equal(kin__latch_get_led(l, 0, &m, finding_lead, NULL), KIN_OK);
    assert_int_equal(m->handle, 10); /* queued first: taken at once */
    kin_msg_destroy(&m);
    assert_int_equal(kin__latch_get_led(l, WAIT_MS, &m, finding_lead, NULL),
                     KIN_OK);
    assert_int_equal(m->handle, 42);
    kin_msg_destroy(&m);
    kin_latch_destroy(&l);
}

/* kin_call_wait may be called on one receiver from two threads: the second
 * getter, which cannot lead, must not take the leading one's wake-up away
 * (it used to clear the latch's eventfd as it left). */
static void
second_getter_leaves_the_leading_ones_wakeup(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    led a = {.l = l, .timeout_ms = WAIT_MS, .fn = sleeping_lead};
    pthread_t ta;
    start_led(&a, &ta);
    /* b cannot lead and times out while a still waits. */
    led b = {.l = l, .timeout_ms = 20, .fn = refused_lead};
    pthread_t tb;
    assert_int_equal(pthread_create(&tb, NULL, led_getter, &b), 0);
    join_within(tb, WAIT_MS);
    assert_int_equal(b.e, KIN_ETIMEOUT);
    assert_false(atomic_load(&a.done));
    uint64_t t1 = kin__now_ns();
    put(l, 11);
    join_within(ta, WAIT_MS);
    assert_int_equal(a.e, KIN_OK);
    assert_int_equal(a.got, 11);
    /* Woken by the put, not by its deadline. */
    assert_true(elapsed_ms(t1) < WAIT_MS - MARGIN_MS);
    kin_latch_destroy(&l);
}

static void
led_get_is_woken_by_close_and_times_out(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    led g = {.l = l, .timeout_ms = WAIT_MS, .fn = sleeping_lead};
    pthread_t th;
    start_led(&g, &th);
    kin_latch_close(l);
    join_within(th, WAIT_MS);
    assert_int_equal(g.e, KIN_ECLOSED);
    kin_latch_destroy(&l);

    assert_int_equal(kin_latch_new(&l), KIN_OK);
    kin_msg *m = NULL;
    atomic_int rounds = 0;
    uint64_t t0 = kin__now_ns();
    assert_int_equal(kin__latch_get_led(l, 30, &m, sleeping_lead, &rounds),
                     KIN_ETIMEOUT);
    assert_true(elapsed_ms(t0) >= 30);
    assert_int_equal(kin__latch_get_led(l, 30, &m, refused_lead, NULL),
                     KIN_ETIMEOUT);
    kin_latch_destroy(&l);
}

/* ---- select ---- */

static void
select_gets_from_each_latch_with_its_tag(void **state)
{
    kin_latch *l[3];
    int tags[3];
    kin_select *s = NULL;
    assert_int_equal(kin_select_new(&s, false), KIN_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kin_latch_new(&l[i]), KIN_OK);
        assert_int_equal(kin_select_add(s, l[i], &tags[i]), KIN_OK);
    }
    assert_int_equal(kin_select_count(s), 3);
    /* Put in reverse order: the select still goes by member order. */
    for (int i = 2; i >= 0; i--)
        put(l[i], 100 + (uint32_t)i);
    for (int i = 0; i < 3; i++) {
        kin_msg *m = NULL;
        void *tag = NULL;
        assert_int_equal(kin_select_get(s, 0, &m, &tag), KIN_OK);
        assert_ptr_equal(tag, &tags[i]);
        assert_int_equal(m->handle, 100 + i);
        kin_msg_destroy(&m);
    }
    kin_msg *m = NULL;
    assert_int_equal(kin_select_get(s, 0, &m, NULL), KIN_ETIMEOUT);
    assert_int_equal(kin_select_count(s), 3); /* persistent */
    kin_select_destroy(&s);
    assert_null(s);
    for (int i = 0; i < 3; i++) {
        assert_null(l[i]->sel);
        kin_latch_destroy(&l[i]);
    }
}

static void
select_is_round_robin(void **state)
{
    kin_latch *a = NULL, *b = NULL;
    kin_select *s = NULL;
    assert_int_equal(kin_latch_new(&a), KIN_OK);
    assert_int_equal(kin_latch_new(&b), KIN_OK);
    assert_int_equal(kin_select_new(&s, false), KIN_OK);
    assert_int_equal(kin_select_add(s, a, "a"), KIN_OK);
    assert_int_equal(kin_select_add(s, b, "b"), KIN_OK);
    for (uint32_t i = 0; i < 3; i++) {
        put(a, i);
        put(b, 10 + i);
    }
    /* A busy first latch does not starve the second. */
    const char *want = "ababab";
    for (int i = 0; i < 6; i++) {
        kin_msg *m = NULL;
        void *tag = NULL;
        assert_int_equal(kin_select_get(s, 0, &m, &tag), KIN_OK);
        assert_int_equal(*(const char *)tag, want[i]);
        assert_int_equal(m->handle, (want[i] == 'a' ? 0 : 10) + i / 2);
        kin_msg_destroy(&m);
    }
    kin_select_destroy(&s);
    kin_latch_destroy(&a);
    kin_latch_destroy(&b);
}

static void
oneshot_select_forgets_latch_after_one_message(void **state)
{
    kin_latch *a = NULL, *b = NULL;
    kin_select *s = NULL;
    assert_int_equal(kin_latch_new(&a), KIN_OK);
    assert_int_equal(kin_latch_new(&b), KIN_OK);
    assert_int_equal(kin_select_new(&s, true), KIN_OK);
    assert_int_equal(kin_select_add(s, a, "a"), KIN_OK);
    assert_int_equal(kin_select_add(s, b, "b"), KIN_OK);
    put(a, 1);
    put(a, 2);
    put(b, 3);
    put(b, 4);

    kin_msg *m = NULL;
    void *tag = NULL;
    assert_int_equal(kin_select_get(s, 0, &m, &tag), KIN_OK);
    assert_string_equal(tag, "a");
    assert_int_equal(m->handle, 1);
    kin_msg_destroy(&m);
    assert_int_equal(kin_select_count(s), 1);
    assert_int_equal(kin_select_remove(s, a), -ENOENT);

    assert_int_equal(kin_select_get(s, 0, &m, &tag), KIN_OK);
    assert_string_equal(tag, "b");
    assert_int_equal(m->handle, 3);
    kin_msg_destroy(&m);
    assert_int_equal(kin_select_count(s), 0);

    assert_int_equal(kin_select_get(s, KIN_FOREVER, &m, &tag), KIN_ECLOSED);
    /* The second messages stayed in their latches. */
    expect(a, 2);
    expect(b, 4);
    /* A forgotten latch may join a select again. */
    assert_int_equal(kin_select_add(s, a, "a"), KIN_OK);
    kin_select_destroy(&s);
    kin_latch_destroy(&a);
    kin_latch_destroy(&b);
}

static void
oneshot_select_continues_after_the_yielding_latch(void **state)
{
    kin_latch *l[3];
    kin_select *s = NULL;
    assert_int_equal(kin_select_new(&s, true), KIN_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kin_latch_new(&l[i]), KIN_OK);
        assert_int_equal(kin_select_add(s, l[i], l[i]), KIN_OK);
    }
    put(l[1], 1);
    put(l[2], 2);
    kin_msg *m = NULL;
    void *tag = NULL;
    assert_int_equal(kin_select_get(s, 0, &m, &tag), KIN_OK);
    assert_ptr_equal(tag, l[1]);
    kin_msg_destroy(&m);
    /* l[0] now has a message too, but l[2] comes first in the rotation. */
    put(l[0], 0);
    assert_int_equal(kin_select_get(s, 0, &m, &tag), KIN_OK);
    assert_ptr_equal(tag, l[2]);
    kin_msg_destroy(&m);
    assert_int_equal(kin_select_get(s, 0, &m, &tag), KIN_OK);
    assert_ptr_equal(tag, l[0]);
    kin_msg_destroy(&m);
    assert_int_equal(kin_select_get(s, 0, &m, &tag), KIN_ECLOSED);
    kin_select_destroy(&s);
    for (int i = 0; i < 3; i++)
        kin_latch_destroy(&l[i]);
}

static void
select_wakes_on_put_from_another_thread(void **state)
{
    kin_latch *l[3];
    kin_select *s = NULL;
    assert_int_equal(kin_select_new(&s, false), KIN_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kin_latch_new(&l[i]), KIN_OK);
        assert_int_equal(kin_select_add(s, l[i], l[i]), KIN_OK);
    }
    struct getter g;
    getter_start(&g, NULL, s, false);
    await_select_waiters(s, 1);
    sleep_ms(SETTLE_MS);
    assert_false(atomic_load(&g.done));
    put(l[2], 77);
    getter_finish(&g);
    assert_int_equal(g.rc, KIN_OK);
    assert_ptr_equal(g.tag, l[2]);
    assert_int_equal(g.m->handle, 77);
    kin_msg_destroy(&g.m);
    kin_select_destroy(&s);
    for (int i = 0; i < 3; i++)
        kin_latch_destroy(&l[i]);
}

static void
select_times_out(void **state)
{
    kin_latch *l = NULL;
    kin_select *s = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    assert_int_equal(kin_select_new(&s, false), KIN_OK);
    assert_int_equal(kin_select_add(s, l, NULL), KIN_OK);
    kin_msg *m = NULL;
    uint64_t t0 = kin__now_ns();
    assert_int_equal(kin_select_get(s, 150, &m, NULL), KIN_ETIMEOUT);
    uint64_t ms = elapsed_ms(t0);
    assert_true(ms >= 150);
    assert_true(ms < 150 + MARGIN_MS);
    assert_null(m);
    kin_select_destroy(&s);
    kin_latch_destroy(&l);
}

static void
select_returns_closed_when_members_closed(void **state)
{
    kin_select *s = NULL;
    kin_msg *m = NULL;
    assert_int_equal(kin_select_new(&s, false), KIN_OK);
    assert_int_equal(kin_select_get(s, KIN_FOREVER, &m, NULL), KIN_ECLOSED);

    kin_latch *a = NULL, *b = NULL;
    assert_int_equal(kin_latch_new(&a), KIN_OK);
    assert_int_equal(kin_latch_new(&b), KIN_OK);
    assert_int_equal(kin_select_add(s, a, "a"), KIN_OK);
    assert_int_equal(kin_select_add(s, b, "b"), KIN_OK);
    put(a, 5);
    kin_latch_close(a);
    /* a is closed but not empty, b is open: nothing final yet. */
    assert_int_equal(kin_select_get(s, 0, &m, NULL), KIN_OK);
    assert_int_equal(m->handle, 5);
    kin_msg_destroy(&m);
    assert_int_equal(kin_select_get(s, 0, &m, NULL), KIN_ETIMEOUT);

    /* Closing the last open member wakes a blocked select. */
    struct getter g;
    getter_start(&g, NULL, s, false);
    await_select_waiters(s, 1);
    kin_latch_close(b);
    getter_finish(&g);
    assert_int_equal(g.rc, KIN_ECLOSED);
    assert_null(g.m);
    assert_int_equal(kin_select_get(s, KIN_FOREVER, &m, NULL), KIN_ECLOSED);
    assert_int_equal(kin_select_count(s), 2);
    kin_select_destroy(&s);
    kin_latch_destroy(&a);
    kin_latch_destroy(&b);
}

static void
removing_last_member_wakes_select(void **state)
{
    kin_latch *l = NULL;
    kin_select *s = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    assert_int_equal(kin_select_new(&s, false), KIN_OK);
    assert_int_equal(kin_select_add(s, l, NULL), KIN_OK);
    struct getter g;
    getter_start(&g, NULL, s, false);
    await_select_waiters(s, 1);
    assert_int_equal(kin_select_remove(s, l), KIN_OK);
    getter_finish(&g);
    assert_int_equal(g.rc, KIN_ECLOSED);
    assert_null(g.m);
    kin_select_destroy(&s);
    kin_latch_destroy(&l);
}

static void
latch_joins_one_select_at_a_time(void **state)
{
    kin_latch *l = NULL;
    kin_select *s1 = NULL, *s2 = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    assert_int_equal(kin_select_new(&s1, false), KIN_OK);
    assert_int_equal(kin_select_new(&s2, false), KIN_OK);
    assert_int_equal(kin_select_add(s1, l, NULL), KIN_OK);
    assert_int_equal(kin_select_add(s1, l, NULL), KIN_EEXISTS);
    assert_int_equal(kin_select_add(s2, l, NULL), KIN_EEXISTS);
    assert_int_equal(kin_select_remove(s2, l), -ENOENT);
    assert_int_equal(kin_select_count(s1), 1);
    assert_int_equal(kin_select_remove(s1, l), KIN_OK);
    assert_int_equal(kin_select_count(s1), 0);
    assert_int_equal(kin_select_add(s2, l, NULL), KIN_OK);
    /* Messages queued before the add count. */
    put(l, 3);
    kin_msg *m = NULL;
    assert_int_equal(kin_select_get(s2, 0, &m, NULL), KIN_OK);
    kin_msg_destroy(&m);
    /* Destroying a member latch takes it out of its select. */
    kin_latch_destroy(&l);
    assert_int_equal(kin_select_count(s2), 0);
    kin_select_destroy(&s1);
    kin_select_destroy(&s2);
}

/* Membership changes racing puts: for TSan, and to catch a put touching a
 * select that is being detached or freed. */
struct churn {
    kin_latch *l;
    atomic_bool stop;
    atomic_uint puts;
};

static void *
churn_putter(void *arg)
{
    struct churn *c = arg;
    while (!atomic_load(&c->stop)) {
        kin_msg *m = NULL;
        if (kin_msg_new(&m, 0) != KIN_OK || kin_latch_put(c->l, &m) != KIN_OK)
            abort();
        atomic_fetch_add(&c->puts, 1);
        kin_msg *got = NULL;
        if (kin_latch_get(c->l, 0, &got) == KIN_OK)
            kin_msg_destroy(&got);
    }
    return NULL;
}

static void
membership_changes_race_puts(void **state)
{
    struct churn c = {0};
    assert_int_equal(kin_latch_new(&c.l), KIN_OK);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, churn_putter, &c), 0);
    /* Run until both sides have done plenty, whichever thread is slower. */
    uint64_t t0 = kin__now_ns();
    for (int i = 0; i < 2000 || atomic_load(&c.puts) < 2000; i++) {
        if (elapsed_ms(t0) > WAIT_MS)
            fail_msg("putter made %u puts", atomic_load(&c.puts));
        kin_select *s = NULL;
        assert_int_equal(kin_select_new(&s, i % 2), KIN_OK);
        assert_int_equal(kin_select_add(s, c.l, NULL), KIN_OK);
        kin_msg *m = NULL;
        if (kin_select_get(s, 0, &m, NULL) == KIN_OK)
            kin_msg_destroy(&m);
        if (i % 3 == 0)
            kin_select_remove(s, c.l); /* -ENOENT after a oneshot get */
        kin_select_destroy(&s);
    }
    atomic_store(&c.stop, true);
    join_within(th, WAIT_MS);
    kin_latch_destroy(&c.l);
}

/* ---- cancellation ---- */

static void
assert_waits_for(kin_task *t, const char *what)
{
    pthread_mutex_lock(&t->mu);
    const char *w = t->wait_what;
    pthread_mutex_unlock(&t->mu);
    assert_non_null(w);
    assert_string_equal(w, what);
    assert_int_equal(atomic_load(&t->state), KIN_TASK_WAITING);
}

static void
cancel_wakes_latch_get(void **state)
{
    kin_latch *l = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    struct getter g;
    getter_start(&g, l, NULL, true);
    await_latch_waiters(l, 1);
    assert_waits_for(&g.task, "receiver");
    sleep_ms(SETTLE_MS);
    assert_false(atomic_load(&g.done));
    kin__task_cancel(&g.task, 1, 1);
    getter_finish(&g);
    assert_int_equal(g.rc, KIN_ECANCELLED);
    assert_null(g.m);
    assert_int_equal(atomic_load(&g.task.state), KIN_TASK_RUNNING);
    /* The latch itself is untouched and still works. */
    assert_false(kin_latch_closed(l));
    put(l, 1);
    expect(l, 1);
    kin_latch_destroy(&l);
}

static void
cancel_wakes_select_get(void **state)
{
    kin_latch *l = NULL;
    kin_select *s = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    assert_int_equal(kin_select_new(&s, false), KIN_OK);
    assert_int_equal(kin_select_add(s, l, NULL), KIN_OK);
    struct getter g;
    getter_start(&g, NULL, s, true);
    await_select_waiters(s, 1);
    assert_waits_for(&g.task, "select");
    sleep_ms(SETTLE_MS);
    assert_false(atomic_load(&g.done));
    kin__task_cancel(&g.task, 1, 1);
    getter_finish(&g);
    assert_int_equal(g.rc, KIN_ECANCELLED);
    assert_null(g.m);
    kin_select_destroy(&s);
    kin_latch_destroy(&l);
}

static void
queued_message_beats_pending_cancel(void **state)
{
    kin_latch *l = NULL;
    kin_select *s = NULL;
    kin_latch *sl = NULL;
    assert_int_equal(kin_latch_new(&l), KIN_OK);
    assert_int_equal(kin_latch_new(&sl), KIN_OK);
    assert_int_equal(kin_select_new(&s, false), KIN_OK);
    assert_int_equal(kin_select_add(s, sl, NULL), KIN_OK);
    kin_task t;
    kin__task_init(&t, 1, 2, "self");
    kin_task *old = kin__task_set_self(&t);
    kin__task_cancel(&t, 1, 1);
    assert_true(kin_task_cancelled());

    put(l, 1);
    put(sl, 2);
    kin_msg *m = NULL;
    assert_int_equal(kin_latch_get(l, KIN_FOREVER, &m), KIN_OK);
    kin_msg_destroy(&m);
    assert_int_equal(kin_select_get(s, KIN_FOREVER, &m, NULL), KIN_OK);
    kin_msg_destroy(&m);
    /* Empty now: a cancelled task never blocks, not even to poll. */
    assert_int_equal(kin_latch_get(l, KIN_FOREVER, &m), KIN_ECANCELLED);
    assert_int_equal(kin_latch_get(l, 0, &m), KIN_ECANCELLED);
    assert_int_equal(kin_select_get(s, KIN_FOREVER, &m, NULL), KIN_ECANCELLED);
    /* Closed and empty outranks cancelled. */
    kin_latch_close(l);
    assert_int_equal(kin_latch_get(l, KIN_FOREVER, &m), KIN_ECLOSED);

    kin__task_set_self(old);
    kin__task_fini(&t);
    kin_select_destroy(&s);
    kin_latch_destroy(&sl);
    kin_latch_destroy(&l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_keeps_fifo_order),
        cmocka_unit_test(get_times_out),
        cmocka_unit_test(poll_returns_at_once),
        cmocka_unit_test(get_wakes_on_put_from_another_thread),
        cmocka_unit_test(close_wakes_every_waiter),
        cmocka_unit_test(close_keeps_queued_messages),
        cmocka_unit_test(put_after_close_leaves_message_with_caller),
        cmocka_unit_test(bad_arguments_are_errors),
        cmocka_unit_test(destroy_frees_queued_messages),
        cmocka_unit_test(producers_and_consumers_deliver_each_message_once),
        cmocka_unit_test(select_gets_from_each_latch_with_its_tag),
        cmocka_unit_test(select_is_round_robin),
        cmocka_unit_test(oneshot_select_forgets_latch_after_one_message),
        cmocka_unit_test(oneshot_select_continues_after_the_yielding_latch),
        cmocka_unit_test(select_wakes_on_put_from_another_thread),
        cmocka_unit_test(select_times_out),
        cmocka_unit_test(select_returns_closed_when_members_closed),
        cmocka_unit_test(removing_last_member_wakes_select),
        cmocka_unit_test(latch_joins_one_select_at_a_time),
        cmocka_unit_test(membership_changes_race_puts),
        cmocka_unit_test(cancel_wakes_latch_get),
        cmocka_unit_test(cancel_wakes_select_get),
        cmocka_unit_test(queued_message_beats_pending_cancel),
        cmocka_unit_test(reader_may_destroy_the_latch_it_was_woken_for),
        cmocka_unit_test(led_get_is_woken_by_a_put),
        cmocka_unit_test(second_getter_leaves_the_leading_ones_wakeup),
        cmocka_unit_test(led_get_is_woken_by_close_and_times_out),
    };
    return harness_run_group(tests);
}
