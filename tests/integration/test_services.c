/* Services by name with real processes: providers offered and withdrawn,
 * no provider, saturation, siblings calling each other, and providers
 * SIGKILLed under load by a supervisor's watch. The test binary is also
 * every child program (kin_init serves). */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "integration/harness.h"

static kin_node *master;

/* --- what children serve ---------------------------------------------------
 */

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* [service, bound] */
static kin_err
offer(kin_call *c, void *arg)
{
    (void)arg;
    char *name = NULL;
    int64_t bound = 0;
    kin_err e = kin_call_args(c, "sI", &name, &bound);
    if (!e)
        e = kin_service_offer(kin_call_node(c), name,
                              &(kin_service_opts){.bound = (int)bound});
    free(name);
    return e;
}

/* [service, drain timeout ms] */
static kin_err
drain(kin_call *c, void *arg)
{
    (void)arg;
    char *name = NULL;
    int64_t ms = 0;
    kin_err e = kin_call_args(c, "sI", &name, &ms);
    if (!e)
        e = kin_service_drain(kin_call_node(c), name, (int)ms);
    free(name);
    return e;
}

/* [fn] -> the serving context's id, from a service call made here. */
static kin_err
call_svc(kin_call *c, void *arg)
{
    (void)arg;
    char *fn = NULL;
    kin_err e = kin_call_args(c, "s", &fn);
    kin_msg *reply = NULL;
    if (!e)
        e = kin_service_call(kin_call_node(c), fn, 2000, &reply, "");
    uint32_t who = 0;
    if (!e)
        e = kin_msg_unpack(reply, "u", &who);
    kin_msg_destroy(&reply);
    free(fn);
    return e ? kin_call_fail(c, e, "%s", kin_strerror(e))
             : kin_call_return(c, "u", who);
}

/* -> this context's id, after [ms] of work. */
static kin_err
who(kin_call *c, void *arg)
{
    (void)arg;
    int64_t ms = 0;
    kin_call_args(c, "I", &ms);
    if (ms > 0)
        sleep_ms((int)ms);
    return kin_call_return(c, "u", kin_node_id(kin_call_node(c)));
}

/* Not idempotent: appends its token [token, path] to a file, so the test
 * can count how many times each call ran. */
static kin_err
once(kin_call *c, void *arg)
{
    (void)arg;
    int64_t token = 0;
    char *path = NULL;
    kin_err e = kin_call_args(c, "Is", &token, &path);
    if (!e) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
        char line[32];
        int len = snprintf(line, sizeof line, "%lld\n", (long long)token);
        if (fd < 0 || write(fd, line, (size_t)len) != len)
            e = -EIO;
        if (fd >= 0)
            close(fd);
        sleep_ms(2);
    }
    free(path);
    return e ? e : kin_call_return(c, "u", kin_node_id(kin_call_node(c)));
}

/* [name] -> the id kin_node_lookup finds for it from this context. */
static kin_err
lookup(kin_call *c, void *arg)
{
    (void)arg;
    char *name = NULL;
    uint32_t id = 0;
    kin_err e = kin_call_args(c, "s", &name);
    if (!e)
        e = kin_node_lookup(kin_call_node(c), name, &id, 5000);
    free(name);
    return e ? kin_call_fail(c, e, "%s", kin_strerror(e))
             : kin_call_return(c, "u", id);
}

/* Idempotent work of [ms] that stops early when its task is cancelled (as
 * when its context stops): -> this context's id, or KIN_ECANCELLED. */
static kin_err
work(kin_call *c, void *arg)
{
    (void)arg;
    int64_t ms = 0;
    kin_call_args(c, "I", &ms);
    for (int64_t i = 0; i < ms; i++) {
        if (kin_task_cancelled())
            return KIN_ECANCELLED;
        sleep_ms(1);
    }
    return kin_call_return(c, "u", kin_node_id(kin_call_node(c)));
}

/* Holds a worker until cancelled or 3 s pass (arg: 30 s). */
static kin_err
hold(kin_call *c, void *arg)
{
    int rounds = arg ? 3000 : 300;
    for (int i = 0; i < rounds && !kin_task_cancelled(); i++)
        sleep_ms(10);
    return kin_call_return(c, "u", kin_node_id(kin_call_node(c)));
}

static void
export_all(void)
{
    kin_export("t.offer", offer, NULL, KIN_POLICY_PARENT);
    kin_export("t.drain", drain, NULL, KIN_POLICY_PARENT);
    kin_export("t.call_svc", call_svc, NULL, KIN_POLICY_PARENT);
    kin_export("t.lookup", lookup, NULL, KIN_POLICY_PARENT);
    kin_export_flags("primes.who", who, NULL, KIN_POLICY_PARENT,
                     KIN_EXPORT_IDEMPOTENT);
    kin_export("primes.once", once, NULL, KIN_POLICY_PARENT);
    kin_export_flags("primes.work", work, NULL, KIN_POLICY_PARENT,
                     KIN_EXPORT_IDEMPOTENT);
    kin_export("slow.hold", hold, NULL, KIN_POLICY_PARENT);
    /* Until `kin cancel`, however slow the `kin` runs before it (under a
     * sanitizer, each takes seconds). */
    kin_export("slow.hold_long", hold, "long", KIN_POLICY_PARENT);
    kin_export("slow.who", who, NULL, KIN_POLICY_PARENT);
    kin_export("alpha.who", who, NULL, KIN_POLICY_PARENT);
    kin_export("alpha.once", once, NULL, KIN_POLICY_PARENT);
    kin_export("beta.who", who, NULL, KIN_POLICY_PARENT);
    kin_export("mine.who", who, NULL, KIN_POLICY_PARENT);
}

/* --- helpers ---------------------------------------------------------------
 */

#define KIDS 4

typedef struct load load;

typedef struct fx {
    kin_child *kids[KIDS];
    kin_supervisor *sup;
    load *load; /* the callers load_begin started (owned) */
} fx;

static void load_end(fx *f);

static int
setup(void **state)
{
    *state = calloc(1, sizeof(fx));
    return *state ? 0 : -1;
}

static int
teardown(void **state)
{
    fx *f = *state;
    /* The callers first: a test that failed midway left them running. */
    load_end(f);
    free(f->load);
    kin_supervisor_destroy(&f->sup);
    for (int i = 0; i < KIDS; i++) {
        if (f->kids[i]) {
            kin_child_stop(f->kids[i], NULL);
            kin_child_destroy(&f->kids[i]);
        }
    }
    free(f);
    return 0;
}

static uint32_t
spawn(fx *f, int i)
{
    assert_int_equal(kin_spawn(master, NULL, &f->kids[i]), KIN_OK);
    return kin_child_id(f->kids[i]);
}

static void
offer_in(uint32_t ctx, const char *svc, int bound)
{
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(master, ctx, "t.offer", 5000, &r, "sI", svc,
                                   (int64_t)bound),
                     KIN_OK);
    kin_msg_destroy(&r);
}

/* Whether the master's table lists `want` providers of svc within 5 s. */
static bool
providers_are(const char *svc, int want)
{
    double until = harness_now_ms() + 5000;
    for (;;) {
        kin_service_info info[8];
        int count = kin_service_list(master, info, 8, NULL, 0);
        int have = 0;
        for (int i = 0; i < count && i < 8; i++)
            if (!strcmp(info[i].name, svc))
                have = info[i].total;
        if (have == want)
            return true;
        if (harness_now_ms() >= until)
            return false;
        sleep_ms(2);
    }
}

/* Waits until the master's table lists `want` providers of svc. */
static void
wait_providers(const char *svc, int want)
{
    assert_true(providers_are(svc, want));
}

static uint32_t
call_who(const char *fn, kin_err *err)
{
    kin_msg *r = NULL;
    uint32_t id = UINT32_MAX;
    *err = kin_service_call(master, fn, 5000, &r, "I", (int64_t)0);
    if (!*err)
        kin_msg_unpack(r, "u", &id);
    kin_msg_destroy(&r);
    return id;
}

/* --- tests -----------------------------------------------------------------
 */

/* No provider anywhere: the specific error, long before the timeout. */
static void
no_provider_fails_at_once(void **state)
{
    (void)state;
    kin_msg *r = NULL;
    double t0 = harness_now_ms();
    assert_int_equal(kin_service_call(master, "nobody.home", 5000, &r, ""),
                     KIN_ENOPROVIDER);
    assert_true(harness_now_ms() - t0 < 1000);
    assert_null(r);
    assert_int_equal(kin_service_call(master, "no-dot", 100, &r, ""), -EINVAL);
}

/* Calls spread over the providers; a drained one gets none, and one added
 * under load takes calls at once. */
static void
providers_come_and_go(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0), b = spawn(f, 1);
    offer_in(a, "primes", 0);
    offer_in(b, "primes", 0);
    wait_providers("primes", 2);
    int hits_a = 0, hits_b = 0;
    for (int i = 0; i < 40; i++) {
        kin_err e;
        uint32_t id = call_who("primes.who", &e);
        assert_int_equal(e, KIN_OK);
        hits_a += id == a;
        hits_b += id == b;
    }
    assert_int_equal(hits_a + hits_b, 40);
    assert_true(hits_a > 0 && hits_b > 0);

    /* Drained: no new call goes to a. */
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(master, a, "t.drain", 5000, &r, "sI",
                                   "primes", (int64_t)2000),
                     KIN_OK);
    kin_msg_destroy(&r);
    wait_providers("primes", 1);
    for (int i = 0; i < 20; i++) {
        kin_err e;
        assert_int_equal(call_who("primes.who", &e), b);
        assert_int_equal(e, KIN_OK);
    }

    /* A third provider joins and takes calls. */
    uint32_t c = spawn(f, 2);
    offer_in(c, "primes", 0);
    wait_providers("primes", 2);
    int hits_c = 0;
    for (int i = 0; i < 40 && !hits_c; i++) {
        kin_err e;
        hits_c += call_who("primes.who", &e) == c;
        assert_int_equal(e, KIN_OK);
    }
    assert_true(hits_c > 0);
}

/* One provider taking one call at a time: the resolver queues up to its
 * bound, then answers KIN_EBUSY; its queue never shows above the bound. */
static void
saturation_is_busy_at_the_bound(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0);
    offer_in(a, "slow", 1);
    wait_providers("slow", 1);
    enum { N = KIN_SERVICE_QUEUE_MAX + 1 + 20 };
    kin_receiver **rs = calloc(N, sizeof *rs);
    assert_non_null(rs);
    for (int i = 0; i < N; i++)
        assert_int_equal(
            kin_service_call_async(master, "slow.hold", 5000, &rs[i], ""),
            KIN_OK);
    /* The busy answers come at once, before the running call ends. */
    int busy = 0;
    for (int i = 0; i < N; i++) {
        kin_msg *m = NULL;
        kin_err e = kin_call_wait(rs[i], 0, &m);
        if (e == KIN_ETIMEOUT)
            e = kin_call_wait(rs[i], i >= N - 20 ? 1000 : 0, &m);
        busy += e == KIN_EBUSY;
        kin_msg_destroy(&m);
    }
    assert_int_equal(busy, 20);
    kin_service_info info[8];
    int count = kin_service_list(master, info, 8, NULL, 0);
    for (int i = 0; i < count && i < 8; i++)
        if (!strcmp(info[i].name, "slow"))
            assert_true(info[i].queued <= KIN_SERVICE_QUEUE_MAX);
    for (int i = 0; i < N; i++)
        kin_receiver_destroy(&rs[i]);
    free(rs);
    /* Stop the provider: the queue fails with no provider, not later. */
    kin_child_stop(f->kids[0], NULL);
    kin_child_destroy(&f->kids[0]);
}

/* Calls one at a time stay on an idle provider for a while, then move on;
 * when no other provider has room (here: the other is held at its bound
 * by a long call), they stay, and none waits for the held one. */
static void
idle_provider_serves_while_the_other_is_held(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0), b = spawn(f, 1);
    offer_in(a, "slow", 1);
    offer_in(b, "slow", 1);
    wait_providers("slow", 2);
    kin_receiver *held = NULL;
    assert_int_equal(
        kin_service_call_async(master, "slow.hold", 10000, &held, ""), KIN_OK);
    /* Whichever took the hold is at its bound from now on. */
    uint32_t other = 0;
    double t0 = harness_now_ms();
    for (int i = 0; i < 40; i++) {
        kin_msg *r = NULL;
        kin_err e = kin_service_call(master, "slow.who", 1000, &r, "");
        uint32_t id = 0;
        if (!e)
            e = kin_msg_unpack(r, "u", &id);
        kin_msg_destroy(&r);
        assert_int_equal(e, KIN_OK);
        if (!other)
            other = id;
        assert_int_equal(id, other); /* never the held one */
    }
    /* All 40 well before the hold's 3 s end. */
    assert_true(harness_now_ms() - t0 < 2500);
    assert_true(other == a || other == b);
    kin_msg *r = NULL;
    assert_int_equal(kin_call_wait(held, 10000, &r), KIN_OK);
    kin_msg_destroy(&r);
    kin_receiver_destroy(&held);
}

/* The master's resident memory in KiB (0: unknown). */
static long
rss_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[128];
    long kib = 0;
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, "VmRSS:", 6))
            kib = strtol(line + 6, NULL, 10);
    if (fp)
        fclose(fp);
    return kib;
}

/* One round of 10x the queue bound fired at a provider taking one call at
 * a time, each with OVERLOAD_ARG bytes of arguments: the queue takes what
 * it may, the rest is KIN_EBUSY; every call gets one of the two answers. */
enum { OVERLOAD_N = 10 * KIN_SERVICE_QUEUE_MAX, OVERLOAD_ARG = 8192 };

static void
overload_round(kin_receiver **rs, const uint8_t *arg)
{
    for (int i = 0; i < OVERLOAD_N; i++)
        assert_int_equal(kin_service_call_async(master, "slow.who", 30000,
                                                &rs[i], "IB", (int64_t)2, arg,
                                                (size_t)OVERLOAD_ARG),
                         KIN_OK);
    kin_service_info info[8];
    int count = kin_service_list(master, info, 8, NULL, 0);
    for (int i = 0; i < count && i < 8; i++)
        if (!strcmp(info[i].name, "slow"))
            assert_true(info[i].queued <= KIN_SERVICE_QUEUE_MAX);
    int ok = 0, busy = 0;
    for (int i = 0; i < OVERLOAD_N; i++) {
        kin_msg *m = NULL;
        kin_err e = kin_call_wait(rs[i], 30000, &m);
        ok += e == KIN_OK;
        busy += e == KIN_EBUSY;
        kin_msg_destroy(&m);
        kin_receiver_destroy(&rs[i]);
    }
    print_message("overload round: %d served, %d busy\n", ok, busy);
    assert_int_equal(ok + busy, OVERLOAD_N);
    /* All that fit in the queue ran; most of the rest was refused. */
    assert_true(ok >= KIN_SERVICE_QUEUE_MAX + 1);
    assert_true(busy >= OVERLOAD_N / 2);
}

/* A saturated service under 10x overload, round after round: the master's
 * memory stays flat (what it holds per refused or served call is given
 * back), and its queue never goes past the bound. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KIN_TEST_SAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KIN_TEST_SAN 1
#endif
#endif
#ifndef KIN_TEST_SAN
#define KIN_TEST_SAN 0
#endif

static void
overload_keeps_master_memory_flat(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0);
    offer_in(a, "slow", 1);
    wait_providers("slow", 1);
    kin_receiver **rs = calloc(OVERLOAD_N, sizeof *rs);
    uint8_t *arg = calloc(1, OVERLOAD_ARG);
    assert_non_null(rs);
    assert_non_null(arg);
    /* The first round sizes the heap for a burst. RSS is read after
     * malloc_trim, so that what glibc's arenas keep free (which varies
     * from run to run with the threads involved: seen +0 to +11 MiB) is
     * not counted; memory still held by kin is. */
    overload_round(rs, arg);
    malloc_trim(0);
    long before = rss_kib();
    for (int r = 0; r < 6; r++)
        overload_round(rs, arg);
    malloc_trim(0);
    long after = rss_kib();
    free(arg);
    free(rs);
    print_message("master VmRSS %ld KiB -> %ld KiB\n", before, after);
    assert_true(before > 0);
#if KIN_TEST_SAN
    /* ASan's quarantine keeps freed memory resident (up to 256 MiB), TSan
     * maps shadow memory for what the calls touch: RSS says nothing here;
     * LeakSanitizer checks at exit that nothing was kept. */
    print_message("RSS bound not asserted under a sanitizer\n");
#else
    assert_true(after - before < 1024);
#endif
}

/* A call that outlived its deadline at the resolver is cancelled at the
 * provider; the reply that then comes late answers nobody, not the next
 * call (which the resolver may serve from the same recycled entry). */
static void
late_reply_answers_no_later_call(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0);
    offer_in(a, "slow", 0);
    wait_providers("slow", 1);
    for (int i = 0; i < 3; i++) {
        kin_msg *r = NULL;
        assert_int_equal(kin_service_call(master, "slow.hold", 100, &r, ""),
                         KIN_ETIMEOUT);
        /* This call finds the late one at the resolver (which fails and
         * cancels it) and runs while the cancelled one replies. */
        assert_int_equal(
            kin_service_call(master, "slow.who", 5000, &r, "I", (int64_t)50),
            KIN_OK);
        uint32_t who = 0;
        assert_int_equal(kin_msg_unpack(r, "u", &who), KIN_OK);
        assert_int_equal(who, a);
        kin_msg_destroy(&r);
    }
}

/* The outstanding calls the master's table counts at provider ctx of svc
 * (-1: no such provider). */
static int
outstanding_at(const char *svc, uint32_t ctx)
{
    kin_service_info info[8];
    kin_service_provider prov[8 * 4];
    int count = kin_service_list(master, info, 8, prov, 4);
    for (int i = 0; i < count && i < 8; i++) {
        if (strcmp(info[i].name, svc))
            continue;
        for (int k = 0; k < info[i].providers && k < 4; k++)
            if (prov[4 * i + k].ctx == ctx)
                return prov[4 * i + k].outstanding;
    }
    return -1;
}

/* Waits until the master's table has no call running at ctx for svc. */
static void
wait_idle(const char *svc, uint32_t ctx)
{
    double until = harness_now_ms() + 5000;
    while (outstanding_at(svc, ctx) != 0) {
        assert_true(harness_now_ms() < until);
        sleep_ms(2);
    }
}

/* Calls whose caller gave up (receiver destroyed before the reply) still
 * end at the resolver: the provider, bound to one call at a time, takes
 * the next call instead of being counted busy for ever. */
static void
abandoned_calls_free_their_provider(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0);
    offer_in(a, "slow", 1);
    wait_providers("slow", 1);
    for (int i = 0; i < 4; i++) {
        kin_receiver *r = NULL;
        assert_int_equal(kin_service_call_async(master, "slow.who", 5000, &r,
                                                "I", (int64_t)20),
                         KIN_OK);
        kin_receiver_destroy(&r);
    }
    kin_err e;
    assert_int_equal(call_who("slow.who", &e), a);
    assert_int_equal(e, KIN_OK);
    wait_idle("slow", a);
}

/* The master is a provider of its own service: its workers' replies are
 * seen by its resolver like anyone's, so calls keep flowing at bound 1. */
static void
caller_serves_itself(void **state)
{
    (void)state;
    assert_int_equal(
        kin_service_offer(master, "alpha", &(kin_service_opts){.bound = 1}),
        KIN_OK);
    wait_providers("alpha", 1);
    for (int i = 0; i < 20; i++) {
        kin_err e;
        assert_int_equal(call_who("alpha.who", &e), kin_node_id(master));
        assert_int_equal(e, KIN_OK);
    }
    wait_idle("alpha", kin_node_id(master));
    assert_int_equal(kin_service_withdraw(master, "alpha"), KIN_OK);
    wait_providers("alpha", 0);
}

typedef struct held_call {
    pthread_t thread;
    kin_err result;
} held_call;

static void *
call_hold(void *arg)
{
    held_call *h = arg;
    kin_msg *r = NULL;
    h->result = kin_service_call(master, "slow.hold_long", 60000, &r, "");
    kin_msg_destroy(&r);
    return NULL;
}

/* The JSON row of kin ps whose task awaits a call of service svc, or
 * NULL. */
static json_t *
ps_row_awaiting(json_t *rows, const char *svc)
{
    json_t *it;
    size_t i;
    json_array_foreach(rows, i, it)
    {
        const char *s = json_string_value(json_object_get(it, "await_service"));
        if (s && !strcmp(s, svc))
            return it;
    }
    return NULL;
}

/* `kin ps` and `kin pstree` show which service a waiting caller's call
 * went through and the provider it went to; the await graph follows it
 * into the provider's task. */
static void
ps_shows_the_service_and_its_provider(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0);
    offer_in(a, "slow", 0);
    wait_providers("slow", 1);
    held_call h = {.result = 1};
    assert_int_equal(pthread_create(&h.thread, NULL, call_hold, &h), 0);
    /* Until the call runs at the provider (ps shows its task there). */
    double until = harness_now_ms() + 10000;
    json_t *top = NULL, *row = NULL;
    int st;
    for (;;) {
        char *out = harness_run(&st, "%s ps %d --json", KIN_CLI, (int)getpid());
        json_error_t jerr;
        json_decref(top);
        top = json_loads(out, 0, &jerr);
        if (!top)
            fail_msg("kin ps --json: %s\n%s", jerr.text, out);
        free(out);
        row = ps_row_awaiting(json_object_get(top, "tasks"), "slow");
        if (row && json_object_get(row, "awaits"))
            break;
        assert_true(harness_now_ms() < until);
        sleep_ms(20);
    }
    assert_int_equal(json_integer_value(json_object_get(row, "ctx")),
                     kin_node_id(master));
    assert_int_equal(json_integer_value(json_object_get(row, "await_ctx")), a);
    assert_string_equal(json_string_value(json_object_get(row, "await_fn")),
                        "slow.hold_long");
    /* The edge leads into the provider's task running slow.hold_long. */
    const char *to = json_string_value(json_object_get(row, "awaits"));
    char prefix[16], served_by[32];
    snprintf(prefix, sizeof prefix, "%u:", a);
    assert_non_null(to);
    assert_memory_equal(to, prefix, strlen(prefix));
    snprintf(served_by, sizeof served_by, "%s", to);
    json_decref(top);

    char want[64];
    snprintf(want, sizeof want,
             "service call slow.hold_long via provider ctx %u", a);
    char *out = harness_run(&st, "%s ps %d", KIN_CLI, (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, want));
    free(out);
    out = harness_run(&st, "%s pstree %d", KIN_CLI, (int)getpid());
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, want));
    free(out);
    /* Cancelled, slow.hold_long returns at once, and the call succeeds. */
    out =
        harness_run(&st, "%s cancel %d %s", KIN_CLI, (int)getpid(), served_by);
    assert_int_equal(st, 0);
    free(out);
    pthread_join(h.thread, NULL);
    assert_int_equal(h.result, KIN_OK);
}

/* Siblings call each other's services, default policies on both sides. */
static void
siblings_call_each_other(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0), b = spawn(f, 1);
    offer_in(a, "alpha", 0);
    offer_in(b, "beta", 0);
    wait_providers("alpha", 1);
    wait_providers("beta", 1);
    kin_msg *r = NULL;
    uint32_t got = 0;
    assert_int_equal(
        kin_call_sync(master, a, "t.call_svc", 5000, &r, "s", "beta.who"),
        KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "u", &got), KIN_OK);
    assert_int_equal(got, b);
    kin_msg_destroy(&r);
    assert_int_equal(
        kin_call_sync(master, b, "t.call_svc", 5000, &r, "s", "alpha.who"),
        KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "u", &got), KIN_OK);
    assert_int_equal(got, a);
    kin_msg_destroy(&r);
    /* A provider's failure says where it failed, through the service. */
    assert_int_equal(kin_service_call(master, "alpha.once", 5000, &r, "Is",
                                      (int64_t)1, "/nonexistent/dir/file"),
                     KIN_EREMOTE);
    char st[512];
    assert_int_equal(kin_call_error_stack(r, st, sizeof st), KIN_OK);
    print_message("alpha.once failed at:\n%s\n", st);
    assert_true(!strncmp(st, "#0 once", 7));
    kin_msg_destroy(&r);
}

/* --- the kill storm --------------------------------------------------------
 */

typedef struct storm {
    atomic_bool stop;
    atomic_int idem_ok, idem_failed, once_ok, once_failed, once_odd;
    atomic_int overdue;
    int first_fail;
    double first_fail_ms; /* how long the first failed call took */
    char path[256];
} storm;

/* The calls of the primes service the resolver retried so far. */
static uint64_t
primes_retried(void)
{
    kin_service_info info[8];
    int count = kin_service_list(master, info, 8, NULL, 0);
    for (int i = 0; i < count && i < 8; i++)
        if (!strcmp(info[i].name, "primes"))
            return info[i].retried;
    return 0;
}

/* A storm call's deadline: a sanitizer build runs several times slower,
 * and a restart under it takes longer than 3 s on a loaded 2-core machine
 * (seen: 4 idempotent calls of 644 timed out there). */
#define STORM_CALL_MS (KIN_TEST_SAN ? 10000 : 3000)

static void *
storm_caller(void *arg)
{
    storm *st = arg;
    static atomic_int next_thread;
    int me = atomic_fetch_add(&next_thread, 1);
    for (int64_t i = 0; !atomic_load(&st->stop); i++) {
        kin_msg *r = NULL;
        double t0 = harness_now_ms();
        kin_err e = kin_service_call(master, "primes.who", STORM_CALL_MS, &r,
                                     "I", (int64_t)2);
        if (harness_now_ms() - t0 > STORM_CALL_MS + 500)
            atomic_fetch_add(&st->overdue, 1);
        kin_msg_destroy(&r);
        if (e) {
            if (!atomic_fetch_add(&st->idem_failed, 1)) {
                st->first_fail = e;
                st->first_fail_ms = harness_now_ms() - t0;
            }
        } else {
            atomic_fetch_add(&st->idem_ok, 1);
        }
        int64_t token = (int64_t)me * 1000000 + i;
        e = kin_service_call(master, "primes.once", STORM_CALL_MS, &r, "Is",
                             token, st->path);
        kin_msg_destroy(&r);
        if (!e)
            atomic_fetch_add(&st->once_ok, 1);
        else if (e == KIN_EPEERGONE || e == KIN_ENOPROVIDER || e == KIN_EBUSY)
            atomic_fetch_add(&st->once_failed, 1);
        else
            atomic_fetch_add(&st->once_odd, 1);
    }
    return NULL;
}

/* How many tokens of the file appear more than once. */
static int
duplicates(const char *path, int *lines)
{
    FILE *fp = fopen(path, "r");
    int dup = 0;
    *lines = 0;
    long long *seen = NULL;
    size_t len = 0, cap = 0;
    long long t;
    while (fp && fscanf(fp, "%lld", &t) == 1) {
        for (size_t i = 0; i < len; i++)
            dup += seen[i] == t;
        if (len == cap) {
            cap = cap ? cap * 2 : 1024;
            seen = realloc(seen, cap * sizeof *seen);
            assert_non_null(seen);
        }
        seen[len++] = t;
        (*lines)++;
    }
    if (fp)
        fclose(fp);
    free(seen);
    return dup;
}

/* 4 supervised providers, 4 caller threads, a random provider SIGKILLed
 * every 100 ms: idempotent calls never fail (retries show), and the
 * others run at most once. KIN_STORM_S sets the length (default 3 s; the
 * issue's figure is 10). */
static void
kill_storm_loses_no_idempotent_call(void **state)
{
    fx *f = *state;
    assert_int_equal(
        kin_supervisor_new(&f->sup, master,
                           &(kin_supervisor_opts){.intensity = 100000,
                                                  .period_ms = 1000,
                                                  .backoff_ms = -1}),
        KIN_OK);
    static const char *const svcs[] = {"primes", NULL};
    for (int i = 0; i < KIDS; i++) {
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i);
        kin_child_spec spec = {
            .name = name, .restart = KIN_RESTART_PERMANENT, .services = svcs};
        assert_int_equal(kin_supervisor_add(f->sup, &spec), KIN_OK);
    }
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    wait_providers("primes", KIDS);

    storm st = {0};
    snprintf(st.path, sizeof st.path, "/tmp/kin-svc-once-%d", (int)getpid());
    unlink(st.path);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, storm_caller, &st), 0);
    const char *env = getenv("KIN_STORM_S");
    int seconds = env ? atoi(env) : 3;
    double end = harness_now_ms() + seconds * 1000.0;
    int kills = 0;
    unsigned seed = (unsigned)getpid();
    while (harness_now_ms() < end) {
        sleep_ms(100);
        char name[16];
        snprintf(name, sizeof name, "worker-%d", (int)(rand_r(&seed) % KIDS));
        kin_child_info info;
        if (kin_supervisor_child(f->sup, name, &info) == KIN_OK &&
            info.state == KIN_CHILD_RUNNING && info.pid > 0 &&
            kill(info.pid, SIGKILL) == 0)
            kills++;
    }
    atomic_store(&st.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);

    uint64_t retried = primes_retried();
    int lines = 0;
    int dup = duplicates(st.path, &lines);
    fprintf(stderr,
            "storm %d s: %d kills, idempotent %d ok %d failed (first %s "
            "after %.0f ms), retried %llu; once %d ok %d failed %d odd, %d "
            "runs, %d twice\n",
            seconds, kills, atomic_load(&st.idem_ok),
            atomic_load(&st.idem_failed), kin_err_name(st.first_fail),
            st.first_fail_ms, (unsigned long long)retried,
            atomic_load(&st.once_ok), atomic_load(&st.once_failed),
            atomic_load(&st.once_odd), lines, dup);
    unlink(st.path);
    /* A tick whose pick is still restarting kills nothing; restarts are
     * slower under a sanitizer (5 kills in 3 s seen there at a load of
     * 17 on the 2-vCPU machine). That kills landed mid-call: retried. */
    assert_true(kills >= seconds * (KIN_TEST_SAN ? 1 : 5));
    assert_int_equal(atomic_load(&st.idem_failed), 0);
    assert_true(atomic_load(&st.idem_ok) > 0);
    assert_true(retried > 0);
    assert_int_equal(dup, 0);
    assert_int_equal(atomic_load(&st.once_odd), 0);
    assert_true(lines >= atomic_load(&st.once_ok));
    assert_int_equal(atomic_load(&st.overdue), 0);
}

/* --- pipelined load while providers leave ------------------------------- */

/* Calls each caller thread keeps in flight. */
#define LOAD_WINDOW 8
#define LOAD_CALL_MS (KIN_TEST_SAN ? 10000 : 5000)

/* The fixture of the scenarios where providers leave under load (rolling
 * restart, drain, stop): callers on the primes service and what they saw.
 * Idempotent calls (primes.work) must all succeed; non-idempotent ones
 * (primes.once, which writes its token to the token file) succeed or, as
 * a scenario allows, fail with KIN_EPEERGONE. */
struct load {
    atomic_bool stop;
    atomic_int idem_ok, once_ok, once_gone, failed, overdue;
    atomic_int first_fail;
    atomic_bool first_once; /* the first failure was a primes.once */
    int64_t work_ms;        /* each primes.work call's */
    char path[256];         /* the token file */
    pthread_t th[4];
    int threads;   /* callers running (0: none, or load_end joined them) */
    int runs, dup; /* the token file's lines and tokens seen twice */
};

static void
load_tally(load *l, bool once, kin_err e)
{
    if (!e) {
        atomic_fetch_add(once ? &l->once_ok : &l->idem_ok, 1);
    } else if (once && e == KIN_EPEERGONE) {
        atomic_fetch_add(&l->once_gone, 1);
    } else if (!atomic_fetch_add(&l->failed, 1)) {
        atomic_store(&l->first_fail, e);
        atomic_store(&l->first_once, once);
    }
}

/* Waits for the call in ring[i] (if any) and counts its outcome. */
static void
load_reap(load *l, kin_receiver **ring, const bool *once, const double *sent,
          int i)
{
    if (!ring[i])
        return;
    kin_msg *m = NULL;
    kin_err e = kin_call_wait(ring[i], LOAD_CALL_MS + 2000, &m);
    if (e == KIN_ETIMEOUT)
        fprintf(stderr, "DBG caller timeout h %u\n",
                kin_receiver_handle(ring[i]));
    if (harness_now_ms() - sent[i] > LOAD_CALL_MS + 500)
        atomic_fetch_add(&l->overdue, 1);
    kin_msg_destroy(&m);
    kin_receiver_destroy(&ring[i]);
    load_tally(l, once[i], e);
}

/* Keeps LOAD_WINDOW service calls in flight, every fourth a primes.once,
 * until told to stop; then waits for the rest. */
static void *
load_caller(void *arg)
{
    load *l = arg;
    static atomic_int next_thread;
    int64_t me = atomic_fetch_add(&next_thread, 1);
    kin_receiver *ring[LOAD_WINDOW] = {NULL};
    bool once[LOAD_WINDOW] = {false};
    double sent[LOAD_WINDOW] = {0};
    for (int64_t i = 0; !atomic_load(&l->stop); i++) {
        int head = (int)(i % LOAD_WINDOW);
        load_reap(l, ring, once, sent, head);
        once[head] = i % 4 == 3;
        sent[head] = harness_now_ms();
        kin_err e =
            once[head]
                ? kin_service_call_async(master, "primes.once", LOAD_CALL_MS,
                                         &ring[head], "Is", me * 10000000 + i,
                                         l->path)
                : kin_service_call_async(master, "primes.work", LOAD_CALL_MS,
                                         &ring[head], "I", l->work_ms);
        if (e)
            load_tally(l, once[head], e);
    }
    for (int i = 0; i < LOAD_WINDOW; i++)
        load_reap(l, ring, once, sent, i);
    return NULL;
}

/* One primes.once at a time, 3 s deadline, until told to stop: every
 * failure counts (the rolling restart may fail none). */
static void *
rolling_caller(void *arg)
{
    load *l = arg;
    for (int64_t i = 0; !atomic_load(&l->stop); i++) {
        kin_msg *r = NULL;
        kin_err e =
            kin_service_call(master, "primes.once", 3000, &r, "Is", i, l->path);
        kin_msg_destroy(&r);
        if (e) {
            if (!atomic_fetch_add(&l->failed, 1))
                atomic_store(&l->first_fail, e);
        } else {
            atomic_fetch_add(&l->once_ok, 1);
        }
    }
    return NULL;
}

typedef struct load_opts {
    int bound;               /* each provider's (0: its workers) */
    const char *tag;         /* the token file is /tmp/kin-svc-TAG-PID */
    void *(*caller)(void *); /* each caller thread's, given the load */
    int threads;             /* 1..4 */
    int work_ms;             /* each primes.work call's */
    bool steady; /* wait for 200 idempotent calls answered (or a failure) */
} load_opts;

/* KIDS children of f offering primes with o->bound, all listed at the
 * master; an empty token file; o->threads callers running o->caller on
 * f->load, which it returns. Ended by load_end (teardown's, if the test
 * fails first). */
static load *
load_begin(fx *f, const load_opts *o)
{
    for (int i = 0; i < KIDS; i++)
        offer_in(spawn(f, i), "primes", o->bound);
    wait_providers("primes", KIDS);
    load *l = f->load = calloc(1, sizeof *l);
    assert_non_null(l);
    l->work_ms = o->work_ms;
    snprintf(l->path, sizeof l->path, "/tmp/kin-svc-%s-%d", o->tag,
             (int)getpid());
    unlink(l->path);
    for (; l->threads < o->threads; l->threads++)
        assert_int_equal(pthread_create(&l->th[l->threads], NULL, o->caller, l),
                         0);
    /* Steady before anything leaves (load_stop checks it got there). */
    double until = harness_now_ms() + 10000;
    while (o->steady && atomic_load(&l->idem_ok) < 200 &&
           !atomic_load(&l->failed) && harness_now_ms() < until)
        sleep_ms(5);
    return l;
}

/* Stops and joins f's callers, counts the token file's lines and repeats
 * (f->load->runs, ->dup) and removes it. Nothing when none run. */
static void
load_end(fx *f)
{
    load *l = f->load;
    if (!l || !l->threads)
        return;
    atomic_store(&l->stop, true);
    for (int i = 0; i < l->threads; i++)
        pthread_join(l->th[i], NULL);
    l->threads = 0;
    l->dup = duplicates(l->path, &l->runs);
    unlink(l->path);
}

/* Ends f's load (load_caller's) and checks what the callers saw; e is the
 * scenario's own outcome; primes.once ran at most once per call. */
static void
load_stop(fx *f, const char *what, kin_err e)
{
    load *l = f->load;
    load_end(f);
    assert_int_equal(e, KIN_OK);
    uint64_t retried = primes_retried();
    fprintf(stderr,
            "%s: idempotent %d ok; once %d ok %d peer gone, %d runs, %d "
            "twice; %d failed (first %s, %s); %d overdue; retried %llu\n",
            what, atomic_load(&l->idem_ok), atomic_load(&l->once_ok),
            atomic_load(&l->once_gone), l->runs, l->dup,
            atomic_load(&l->failed), kin_err_name(atomic_load(&l->first_fail)),
            atomic_load(&l->first_once) ? "primes.once" : "primes.work",
            atomic_load(&l->overdue), (unsigned long long)retried);
    assert_int_equal(atomic_load(&l->failed), 0);
    assert_int_equal(atomic_load(&l->overdue), 0);
    assert_int_equal(l->dup, 0);
    assert_true(l->runs >= atomic_load(&l->once_ok));
    assert_true(atomic_load(&l->idem_ok) > 0);
}

static kin_err
call_in(uint32_t ctx, const char *fn, int64_t arg)
{
    kin_msg *r = NULL;
    kin_err e =
        kin_call_sync(master, ctx, fn, LOAD_CALL_MS, &r, "sI", "primes", arg);
    kin_msg_destroy(&r);
    return e;
}

/* Stops f's child k and starts another there, which offers primes. */
static kin_err
replace_kid(fx *f, int k, int bound)
{
    kin_child_stop(f->kids[k], NULL);
    kin_child_destroy(&f->kids[k]);
    kin_err e = kin_spawn(master, NULL, &f->kids[k]);
    if (!e)
        e = call_in(kin_child_id(f->kids[k]), "t.offer", bound);
    return e;
}

/* Each of 4 providers in turn is drained, stopped and replaced under load:
 * not one call fails, not even a non-idempotent one. */
static void
rolling_restart_fails_no_call(void **state)
{
    fx *f = *state;
    load *l = load_begin(
        f, &(load_opts){.tag = "roll", .caller = rolling_caller, .threads = 1});
    for (int i = 0; i < KIDS; i++) {
        kin_msg *r = NULL;
        kin_err e = kin_call_sync(master, kin_child_id(f->kids[i]), "t.drain",
                                  5000, &r, "sI", "primes", (int64_t)3000);
        kin_msg_destroy(&r);
        assert_int_equal(e, KIN_OK);
        kin_child_stop(f->kids[i], NULL);
        kin_child_destroy(&f->kids[i]);
        offer_in(spawn(f, i), "primes", 0);
        wait_providers("primes", KIDS);
    }
    load_end(f);
    fprintf(stderr, "rolling: %d ok, %d failed (first %s)\n",
            atomic_load(&l->once_ok), atomic_load(&l->failed),
            kin_err_name(atomic_load(&l->first_fail)));
    assert_true(atomic_load(&l->once_ok) > 0);
    assert_int_equal(atomic_load(&l->failed), 0);
}

/* Providers drained under pipelined load, each in turn: every other one
 * stays alive and offers again, the others are stopped right after the
 * drain and replaced. Calls that take no time and a bound of 4 per
 * provider (its workers) against 32 in flight: calls queue at the
 * resolver, and a provider gets calls after it withdrew, before the
 * resolver hears of it, which it refuses. Not one call fails or waits for
 * its deadline, not even a non-idempotent one. KIN_DRAIN_ROUNDS sets the
 * number of drains (default 64: without the fix, 5 of 6 runs failed). */
static void
drain_under_load_answers_every_call(void **state)
{
    fx *f = *state;
    load *l = load_begin(f, &(load_opts){.bound = 4,
                                         .tag = "drain",
                                         .caller = load_caller,
                                         .threads = 4,
                                         .steady = true});
    const char *env = getenv("KIN_DRAIN_ROUNDS");
    int rounds = env ? atoi(env) : 64;
    kin_err e = KIN_OK;
    for (int round = 0; round < rounds && !e; round++) {
        int k = round % KIDS;
        uint32_t ctx = kin_child_id(f->kids[k]);
        e = call_in(ctx, "t.drain", LOAD_CALL_MS);
        if (!e && !providers_are("primes", KIDS - 1))
            e = KIN_ETIMEOUT;
        if (!e)
            e = round % 2 ? replace_kid(f, k, 4) : call_in(ctx, "t.offer", 4);
        if (!e && !providers_are("primes", KIDS))
            e = KIN_ETIMEOUT;
    }
    load_stop(f, "drain under load", e);
    assert_int_equal(atomic_load(&l->once_gone), 0);
}

/* Providers stopped under pipelined load without a drain (their process
 * ends normally, kin_node_destroy cancelling the calls it runs or has
 * queued: a bound of 8 against 4 workers, so some wait there): idempotent calls
 * are retried elsewhere and never fail; the others succeed or fail with
 * KIN_EPEERGONE, never twice, never with the provider's own shutdown errors. */
static void
stop_under_load_retries_idempotent_calls(void **state)
{
    fx *f = *state;
    load_begin(f, &(load_opts){.bound = 8,
                               .tag = "stop",
                               .caller = load_caller,
                               .threads = 4,
                               .work_ms = 2,
                               .steady = true});
    kin_err e = KIN_OK;
    for (int round = 0; round < 2 * KIDS && !e; round++) {
        e = replace_kid(f, round % KIDS, 8);
        if (!e && !providers_are("primes", KIDS))
            e = KIN_ETIMEOUT;
    }
    load_stop(f, "stop under load", e);
}

/* The id worker `name` of f->sup runs under once RUNNING (and not `old`). */
static uint32_t
running_id(fx *f, const char *name, uint32_t old)
{
    uint64_t seen = kin_supervisor_changes(f->sup);
    for (;;) {
        kin_child_info info;
        assert_int_equal(kin_supervisor_child(f->sup, name, &info), KIN_OK);
        if (info.state == KIN_CHILD_RUNNING && info.id != old)
            return info.id;
        assert_int_equal(kin_supervisor_wait(f->sup, seen, 10000, &seen),
                         KIN_OK);
    }
}

static uint32_t
lookup_from(uint32_t ctx, const char *name)
{
    kin_msg *r = NULL;
    uint32_t id = KIN_NO_CTX;
    assert_int_equal(
        kin_call_sync(master, ctx, "t.lookup", 10000, &r, "s", name), KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "u", &id), KIN_OK);
    kin_msg_destroy(&r);
    return id;
}

/* kin_node_lookup finds a context by name, from the master and from a
 * sibling; a supervised child restarted under a new id is found under its
 * name; a context that stopped is not found. */
static void
lookup_follows_restarts(void **state)
{
    fx *f = *state;
    assert_int_equal(
        kin_supervisor_new(&f->sup, master,
                           &(kin_supervisor_opts){.backoff_ms = -1}),
        KIN_OK);
    for (int i = 0; i < 2; i++) {
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i);
        kin_child_spec spec = {.name = name, .restart = KIN_RESTART_PERMANENT};
        assert_int_equal(kin_supervisor_add(f->sup, &spec), KIN_OK);
    }
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    uint32_t w0 = running_id(f, "worker-0", KIN_NO_CTX);
    uint32_t w1 = running_id(f, "worker-1", KIN_NO_CTX);
    uint32_t id = KIN_NO_CTX;
    assert_int_equal(kin_node_lookup(master, "worker-1", &id, 5000), KIN_OK);
    assert_int_equal(id, w1);
    assert_int_equal(kin_node_lookup(master, kin_node_name(master), &id, 0),
                     KIN_OK);
    assert_int_equal(id, KIN_MASTER_ID);
    assert_int_equal(lookup_from(w0, "worker-1"), w1);

    /* SIGKILL worker-1: its restart is found under its name. */
    kin_child_info info;
    assert_int_equal(kin_supervisor_child(f->sup, "worker-1", &info), KIN_OK);
    assert_int_equal(kill(info.pid, SIGKILL), 0);
    uint32_t again = running_id(f, "worker-1", w1);
    assert_int_not_equal(again, w1);
    assert_int_equal(kin_node_lookup(master, "worker-1", &id, 5000), KIN_OK);
    assert_int_equal(id, again);
    assert_int_equal(lookup_from(w0, "worker-1"), again);

    /* A context that stopped is not found; the error comes at once. */
    assert_int_equal(
        kin_spawn(master, &(kin_spawn_opts){.name = "temp-1"}, &f->kids[0]),
        KIN_OK);
    uint32_t temp = kin_child_id(f->kids[0]);
    assert_int_equal(kin_node_lookup(master, "temp-1", &id, 5000), KIN_OK);
    assert_int_equal(id, temp);
    kin_child_stop(f->kids[0], NULL);
    kin_child_destroy(&f->kids[0]);
    double t0 = harness_now_ms();
    assert_int_equal(kin_node_lookup(master, "temp-1", &id, 0), -ENOENT);
    assert_int_equal(kin_node_lookup(master, "nobody", &id, 50), -ENOENT);
    assert_true(harness_now_ms() - t0 < 2000);
    assert_int_equal(kin_node_lookup(master, "", &id, 0), -EINVAL);
}

/* The provider row of ctx in a `kin services --json` service, or NULL. */
static json_t *
json_provider(json_t *svc, uint32_t ctx)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(svc, "providers"), i,
                       p) if (json_integer_value(json_object_get(p, "ctx")) ==
                              (json_int_t)ctx) return p;
    return NULL;
}

/* `kin services` lists both providers of a service with the calls each
 * served (summed over the tree's resolvers), their pids and latencies. */
static void
kin_services_lists_providers(void **state)
{
    fx *f = *state;
    uint32_t a = spawn(f, 0), b = spawn(f, 1);
    offer_in(a, "primes", 0);
    offer_in(b, "primes", 0);
    wait_providers("primes", 2);
    int hits_a = 0, hits_b = 0;
    for (int i = 0; i < 40; i++) {
        kin_err e;
        uint32_t id = call_who("primes.who", &e);
        assert_int_equal(e, KIN_OK);
        hits_a += id == a;
        hits_b += id == b;
    }
    assert_true(hits_a > 0 && hits_b > 0);

    int st;
    char *out =
        harness_run(&st, "%s services %d --json", KIN_CLI, (int)getpid());
    json_error_t jerr;
    json_t *top = json_loads(out, 0, &jerr);
    if (!top)
        fail_msg("kin services --json: %s\n%s", jerr.text, out);
    assert_int_equal(st, 0);
    assert_int_equal(json_integer_value(json_object_get(top, "version")), 1);
    json_t *svc = NULL, *it;
    size_t i;
    json_array_foreach(
        json_object_get(top, "services"), i,
        it) if (!strcmp(json_string_value(json_object_get(it, "name")),
                        "primes")) svc = it;
    assert_non_null(svc);
    assert_int_equal(json_integer_value(json_object_get(svc, "total")), 2);
    json_t *pa = json_provider(svc, a), *pb = json_provider(svc, b);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_int_equal(json_integer_value(json_object_get(pa, "served")), hits_a);
    assert_int_equal(json_integer_value(json_object_get(pb, "served")), hits_b);
    assert_int_equal(json_integer_value(json_object_get(pa, "pid")),
                     kin_child_pid(f->kids[0]));
    assert_true(json_real_value(json_object_get(pa, "p50_us")) > 0);
    assert_true(json_real_value(json_object_get(pb, "p99_us")) >=
                json_real_value(json_object_get(pb, "p50_us")));
    assert_int_equal(json_integer_value(json_object_get(svc, "retried")), 0);
    json_decref(top);
    free(out);

    /* The table names both providers' contexts. */
    out = harness_run(&st, "%s services %d", KIN_CLI, (int)getpid());
    print_message("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "primes: 2 providers"));
    char row[32];
    snprintf(row, sizeof row, "\n  %-7u %-16.16s", a,
             kin_child_name(f->kids[0]));
    assert_non_null(strstr(out, row));
    snprintf(row, sizeof row, "\n  %-7u %-16.16s", b,
             kin_child_name(f->kids[1]));
    assert_non_null(strstr(out, row));
    free(out);
}

/* A child that offers a service from its own code (here t.offer, called
 * once it runs), not through kin_child_spec.services: the offer belongs to
 * that process. A supervised restart starts a process that has not
 * offered, so the service is gone until the new process offers again;
 * the supervisor neither re-offers it nor holds its calls. */
static void
own_offer_is_not_renewed_by_a_restart(void **state)
{
    fx *f = *state;
    assert_int_equal(
        kin_supervisor_new(&f->sup, master,
                           &(kin_supervisor_opts){.backoff_ms = -1}),
        KIN_OK);
    kin_child_spec spec = {.name = "own-0", .restart = KIN_RESTART_PERMANENT};
    assert_int_equal(kin_supervisor_add(f->sup, &spec), KIN_OK);
    assert_int_equal(kin_supervisor_start(f->sup), KIN_OK);
    uint32_t w = running_id(f, "own-0", KIN_NO_CTX);
    offer_in(w, "mine", 0);
    wait_providers("mine", 1);
    kin_err e;
    assert_int_equal(call_who("mine.who", &e), w);
    assert_int_equal(e, KIN_OK);

    kin_child_info info;
    assert_int_equal(kin_supervisor_child(f->sup, "own-0", &info), KIN_OK);
    assert_int_equal(kill(info.pid, SIGKILL), 0);
    uint32_t again = running_id(f, "own-0", w);
    /* The old process's offer went with its route; nothing renews it. */
    wait_providers("mine", 0);
    double t0 = harness_now_ms();
    call_who("mine.who", &e);
    assert_int_equal(e, KIN_ENOPROVIDER);
    assert_true(harness_now_ms() - t0 < 1000);

    /* Offered again by the new process, it serves from there. */
    offer_in(again, "mine", 0);
    wait_providers("mine", 1);
    assert_int_equal(call_who("mine.who", &e), again);
    assert_int_equal(e, KIN_OK);
}

int
main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    export_all();
    harness_log_setup();
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(no_provider_fails_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(providers_come_and_go, setup, teardown),
        cmocka_unit_test_setup_teardown(kin_services_lists_providers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(lookup_follows_restarts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(saturation_is_busy_at_the_bound, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            idle_provider_serves_while_the_other_is_held, setup, teardown),
        cmocka_unit_test_setup_teardown(overload_keeps_master_memory_flat,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(late_reply_answers_no_later_call, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(abandoned_calls_free_their_provider,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(caller_serves_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(ps_shows_the_service_and_its_provider,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(siblings_call_each_other, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rolling_restart_fails_no_call, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(drain_under_load_answers_every_call,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            stop_under_load_retries_idempotent_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(own_offer_is_not_renewed_by_a_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(kill_storm_loses_no_idempotent_call,
                                        setup, teardown),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    return rc;
}
