/* router/metrics.c: the per-function call counts behind kin metrics:
 * counts by name and kind, unknown calls apart, the 65th function counted
 * as uncounted, latency buckets and quantiles, and exact counts when
 * threads count the same new functions at once (the slot claiming). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/task.h"
#include "integration/harness.h"
#include "router/metrics.h"

static const kin_fn_metrics *
find(const kin_fn_metrics *fs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(fs[i].name, name))
            return &fs[i];
    return NULL;
}

static void
record(kin__fn_metrics *m, const char *name, int code)
{
    kin__fn_metrics_record(m, name, strlen(name), code, kin__now_ns());
}

static void
counts_by_name_and_kind(void **state)
{
    (void)state;
    kin__fn_metrics *m = kin__fn_metrics_new();
    assert_non_null(m);
    record(m, "a", KIN_OK);
    record(m, "a", KIN_EREMOTE);
    record(m, "a", 42); /* a code of the function's own */
    record(m, "a", KIN_ECANCELLED);
    record(m, "a", KIN_EREFUSED);
    record(m, "a", KIN_ETIMEOUT);
    record(m, "b", KIN_OK);
    record(m, "nope", KIN_ENOFUNC);
    record(m, "", KIN_EBADMSG);
    /* A name is its first name_len bytes: this is "a" again. */
    kin__fn_metrics_record(m, "ab", 1, KIN_OK, kin__now_ns());
    kin_fn_metrics fs[KIN__FN_METRICS_MAX];
    uint64_t unknown, overflow;
    size_t n =
        kin__fn_metrics_read(m, fs, KIN__FN_METRICS_MAX, &unknown, &overflow);
    assert_int_equal(n, 2);
    assert_int_equal(unknown, 2);
    assert_int_equal(overflow, 0);
    const kin_fn_metrics *a = find(fs, n, "a");
    assert_non_null(a);
    assert_int_equal(a->calls, 7);
    assert_int_equal(a->errors[KIN_FN_ERR_FAILED], 2);
    assert_int_equal(a->errors[KIN_FN_ERR_CANCELLED], 1);
    assert_int_equal(a->errors[KIN_FN_ERR_REFUSED], 1);
    assert_int_equal(a->errors[KIN_FN_ERR_TIMEOUT], 1);
    assert_int_equal(find(fs, n, "b")->calls, 1);
    assert_string_equal(kin_fn_err_kind_name(KIN_FN_ERR_REFUSED), "refused");
    assert_string_equal(kin_fn_err_kind_name(KIN_FN_ERR_KINDS), "?");
    kin__fn_metrics_free(&m);
    assert_null(m);
    kin__fn_metrics_record(NULL, "a", 1, KIN_OK, 0); /* no table: nothing */
}

static void
the_65th_function_is_uncounted(void **state)
{
    (void)state;
    kin__fn_metrics *m = kin__fn_metrics_new();
    char name[16];
    for (int i = 0; i < KIN__FN_METRICS_MAX + 3; i++) {
        snprintf(name, sizeof name, "f%d", i);
        record(m, name, KIN_OK);
    }
    record(m, "f0", KIN_OK); /* counted still */
    kin_fn_metrics fs[KIN__FN_METRICS_MAX];
    uint64_t unknown, overflow;
    size_t n = kin__fn_metrics_read(m, fs, 4, &unknown, &overflow);
    assert_int_equal(n, KIN__FN_METRICS_MAX); /* how many there are */
    assert_int_equal(overflow, 3);
    n = kin__fn_metrics_read(m, fs, KIN__FN_METRICS_MAX, &unknown, &overflow);
    assert_int_equal(find(fs, n, "f0")->calls, 2);
    kin__fn_metrics_free(&m);
}

static void
latency_buckets_and_quantiles(void **state)
{
    (void)state;
    assert_int_equal(kin__fn_lat_bucket(0), 0);
    assert_int_equal(kin__fn_lat_bucket(999), 0);
    assert_int_equal(kin__fn_lat_bucket(1000), 1);      /* 1 us */
    assert_int_equal(kin__fn_lat_bucket(1999), 1);      /* < 2 us */
    assert_int_equal(kin__fn_lat_bucket(2000), 2);      /* [2, 4) us */
    assert_int_equal(kin__fn_lat_bucket(20000000), 15); /* 20 ms */
    assert_int_equal(kin__fn_lat_bucket(UINT64_MAX), KIN_FN_LAT_BUCKETS - 1);
    uint64_t h[KIN_FN_LAT_BUCKETS] = {0};
    assert_true(kin_fn_latency_us(h, 0.5) == 0);
    h[3] = 98; /* [4, 8) us */
    h[10] = 2; /* [512, 1024) us */
    assert_true(kin_fn_latency_us(h, 0.5) == 8);
    assert_true(kin_fn_latency_us(h, 0.98) == 8);
    assert_true(kin_fn_latency_us(h, 0.99) == 1024);
    assert_true(kin_fn_latency_us(h, 1.0) == 1024);

    kin__fn_metrics *m = kin__fn_metrics_new();
    kin__fn_metrics_record(m, "slow", 4, KIN_OK, kin__now_ns() - 20000000);
    kin_fn_metrics f;
    uint64_t unknown, overflow;
    assert_int_equal(kin__fn_metrics_read(m, &f, 1, &unknown, &overflow), 1);
    assert_int_equal(f.latency[15], 1);
    assert_true(f.latency_sum_s >= 0.020 && f.latency_sum_s < 1);
    kin__fn_metrics_free(&m);
}

#define THREADS 4
#define PER_THREAD 20000
#define NAMES 40

static void *
hammer(void *arg)
{
    kin__fn_metrics *m = arg;
    char name[16];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(name, sizeof name, "n%d", i % NAMES);
        record(m, name, i % 10 ? KIN_OK : KIN_EREMOTE);
    }
    return NULL;
}

/* Threads that meet new names at the same time claim one slot each. */
static void
threads_count_exactly(void **state)
{
    (void)state;
    kin__fn_metrics *m = kin__fn_metrics_new();
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, hammer, m), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    kin_fn_metrics fs[KIN__FN_METRICS_MAX];
    uint64_t unknown, overflow;
    size_t n =
        kin__fn_metrics_read(m, fs, KIN__FN_METRICS_MAX, &unknown, &overflow);
    assert_int_equal(n, NAMES);
    uint64_t calls = 0, failed = 0, hist = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fs[i].calls, THREADS * PER_THREAD / NAMES);
        calls += fs[i].calls;
        failed += fs[i].errors[KIN_FN_ERR_FAILED];
        for (int b = 0; b < KIN_FN_LAT_BUCKETS; b++)
            hist += fs[i].latency[b];
    }
    assert_int_equal(calls, THREADS * PER_THREAD);
    assert_int_equal(failed, THREADS * PER_THREAD / 10);
    assert_int_equal(hist, calls);
    kin__fn_metrics_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_by_name_and_kind),
        cmocka_unit_test(the_65th_function_is_uncounted),
        cmocka_unit_test(latency_buckets_and_quantiles),
        cmocka_unit_test(threads_count_exactly),
    };
    return harness_run_group(tests);
}
