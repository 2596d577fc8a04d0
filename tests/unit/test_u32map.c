/* kin__u32map: the hash map under routes, handles and task tables. Keys that
 * collide, deletion inside a probe run, growth, and iteration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/u32map.h"
#include "integration/harness.h"

#define VAL(k) ((void *)(uintptr_t)((k)*2u + 1u))

static void
empty_map_has_nothing(void **state)
{
    kin__u32map m;
    kin__u32map_init(&m);
    assert_null(kin__u32map_get(&m, 7));
    assert_false(kin__u32map_has(&m, 0));
    assert_null(kin__u32map_del(&m, 7));
    size_t it = 0;
    uint32_t k;
    void *v;
    assert_false(kin__u32map_next(&m, &it, &k, &v));
    kin__u32map_fini(&m);
}

static void
put_replaces_and_del_returns_the_value(void **state)
{
    kin__u32map m;
    kin__u32map_init(&m);
    assert_int_equal(kin__u32map_put(&m, 0, VAL(0)), 0);
    assert_int_equal(kin__u32map_put(&m, UINT32_MAX, VAL(1)), 0);
    assert_int_equal(kin__u32map_put(&m, 0, VAL(2)), 0);
    assert_int_equal(m.len, 2);
    assert_ptr_equal(kin__u32map_get(&m, 0), VAL(2));
    assert_ptr_equal(kin__u32map_get(&m, UINT32_MAX), VAL(1));
    assert_ptr_equal(kin__u32map_del(&m, 0), VAL(2));
    assert_false(kin__u32map_has(&m, 0));
    assert_true(kin__u32map_has(&m, UINT32_MAX));
    assert_int_equal(m.len, 1);
    kin__u32map_fini(&m);
}

/* Keys 2^28 apart share their home slot in any table of up to 2^28 slots
 * (the hash multiplies, then keeps the low bits), so they form one probe
 * run: deleting inside it must shift the rest back, not cut the run. */
static void
deleting_inside_a_probe_run_keeps_the_rest(void **state)
{
    kin__u32map m;
    kin__u32map_init(&m);
    const uint32_t step = 1u << 28;
    for (uint32_t i = 0; i < 6; i++)
        assert_int_equal(kin__u32map_put(&m, 5 + i * step, VAL(i)), 0);
    assert_ptr_equal(kin__u32map_del(&m, 5 + 0 * step), VAL(0));
    assert_ptr_equal(kin__u32map_del(&m, 5 + 3 * step), VAL(3));
    for (uint32_t i = 0; i < 6; i++) {
        if (i == 0 || i == 3)
            assert_false(kin__u32map_has(&m, 5 + i * step));
        else
            assert_ptr_equal(kin__u32map_get(&m, 5 + i * step), VAL(i));
    }
    kin__u32map_fini(&m);
}

static void
grows_and_iterates_every_key_once(void **state)
{
    enum { N = 5000 };
    kin__u32map m;
    kin__u32map_init(&m);
    for (uint32_t k = 0; k < N; k++)
        assert_int_equal(kin__u32map_put(&m, k * 7919u, VAL(k)), 0);
    for (uint32_t k = 0; k < N; k += 2)
        assert_ptr_equal(kin__u32map_del(&m, k * 7919u), VAL(k));
    assert_int_equal(m.len, N / 2);
    assert_true((m.cap & (m.cap - 1)) == 0 && m.cap >= m.len);

    unsigned char *seen = calloc(N, 1);
    size_t it = 0, count = 0;
    uint32_t key;
    void *val;
    while (kin__u32map_next(&m, &it, &key, &val)) {
        uint32_t k = key / 7919u;
        assert_true(k < N && k % 2 == 1 && key == k * 7919u);
        assert_ptr_equal(val, VAL(k));
        assert_int_equal(seen[k]++, 0);
        count++;
    }
    assert_int_equal(count, N / 2);
    free(seen);
    kin__u32map_fini(&m);
    assert_int_equal(m.len, 0);
    assert_null(kin__u32map_get(&m, 7919u));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_map_has_nothing),
        cmocka_unit_test(put_replaces_and_del_returns_the_value),
        cmocka_unit_test(deleting_inside_a_probe_run_keeps_the_rest),
        cmocka_unit_test(grows_and_iterates_every_key_once),
    };
    return harness_run_group(tests);
}
