/* core/tasktab.c: the task table behind `kin ps` and `kin ps-terminated`:
 * the history ring drops the oldest first, persistent tasks are kept apart
 * and never dropped, cancelling an id that is not live says so. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/tasktab.h"
#include "integration/harness.h"

/* Adds a task named "tN" and ends it with result -N. */
static uint32_t
run_one(kin__tasktab *tab, int n, bool persistent)
{
    char name[16];
    snprintf(name, sizeof name, "t%d", n);
    kin_task *t = kin__tasktab_add(tab, name, "f");
    assert_non_null(t);
    t->persistent = persistent;
    uint32_t id = t->id;
    kin__tasktab_end(tab, t, KIN_TASK_DONE, -n);
    return id;
}

static void
ring_drops_the_oldest_first(void **state)
{
    (void)state;
    kin__tasktab tab;
    assert_int_equal(kin__tasktab_init(&tab, 7, 3), 0);
    uint32_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = run_one(&tab, i, false);
    kin__tasktab_lock(&tab);
    assert_int_equal(kin__tasktab_ended_count(&tab), 3);
    for (size_t i = 0; i < 3; i++) {
        const kin__ended *e = kin__tasktab_ended_at(&tab, i);
        char name[16];
        snprintf(name, sizeof name, "t%zu", i + 2);
        assert_int_equal(e->id, ids[i + 2]);
        assert_string_equal(e->name, name);
        assert_int_equal(e->result, -(int)(i + 2));
        assert_int_equal(e->state, KIN_TASK_DONE);
    }
    assert_int_equal(kin__tasktab_live_count(&tab), 0);
    kin__tasktab_unlock(&tab);
    kin__tasktab_fini(&tab);
}

static void
persistent_tasks_are_kept_apart_and_never_dropped(void **state)
{
    (void)state;
    kin__tasktab tab;
    assert_int_equal(kin__tasktab_init(&tab, 7, 2), 0);
    uint32_t kept[20];
    size_t nkept = 0;
    uint32_t last[2] = {0, 0};
    for (int i = 0; i < 40; i++) {
        if (i % 2)
            kept[nkept++] = run_one(&tab, i, true);
        else {
            last[0] = last[1];
            last[1] = run_one(&tab, i, false);
        }
    }
    kin__tasktab_lock(&tab);
    /* Persistent ones first, in the order they ended, then the ring. */
    assert_int_equal(kin__tasktab_ended_count(&tab), nkept + 2);
    for (size_t i = 0; i < nkept; i++) {
        const kin__ended *e = kin__tasktab_ended_at(&tab, i);
        assert_int_equal(e->id, kept[i]);
        assert_true(e->persistent);
    }
    assert_int_equal(kin__tasktab_ended_at(&tab, nkept)->id, last[0]);
    assert_int_equal(kin__tasktab_ended_at(&tab, nkept + 1)->id, last[1]);
    assert_false(kin__tasktab_ended_at(&tab, nkept + 1)->persistent);
    kin__tasktab_unlock(&tab);
    kin__tasktab_fini(&tab);
}

static void
cancel_of_an_unknown_id_is_enoent(void **state)
{
    (void)state;
    kin__tasktab tab;
    assert_int_equal(kin__tasktab_init(&tab, 7, 0), 0);
    assert_int_equal(kin__tasktab_cancel(&tab, 42, 0, 1), -ENOENT);
    kin_task *t = kin__tasktab_add(&tab, "victim", "f");
    assert_non_null(t);
    uint32_t id = t->id;
    assert_int_equal(kin__tasktab_cancel(&tab, id + 1, 0, 1), -ENOENT);
    assert_false(kin__task_cancel_pending(t));
    assert_int_equal(kin__tasktab_cancel(&tab, id, 3, 9), 0);
    assert_true(kin__task_cancel_pending(t));
    kin__tasktab_end(&tab, t, KIN_TASK_CANCELLED, KIN_ECANCELLED);
    /* Ended: no longer live, and its record names the canceller. */
    assert_int_equal(kin__tasktab_cancel(&tab, id, 0, 1), -ENOENT);
    kin__tasktab_lock(&tab);
    assert_null(kin__tasktab_live_get(&tab, id));
    const kin__ended *e = kin__tasktab_ended_at(&tab, 0);
    assert_int_equal(e->id, id);
    assert_int_equal(e->state, KIN_TASK_CANCELLED);
    assert_int_equal(e->cancelled_by_ctx, 3);
    assert_int_equal(e->cancelled_by_task, 9);
    kin__tasktab_unlock(&tab);
    kin__tasktab_fini(&tab);
}

/* Task id 0 means "no task" on the wire: the counter skips it. */
static void
ids_skip_zero_when_they_wrap(void **state)
{
    (void)state;
    kin__tasktab tab;
    assert_int_equal(kin__tasktab_init(&tab, 7, 0), 0);
    tab.next_id = UINT32_MAX - 1;
    kin_task *a = kin__tasktab_add(&tab, "a", NULL);
    kin_task *b = kin__tasktab_add(&tab, "b", NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->id, UINT32_MAX);
    assert_int_equal(b->id, 1);
    kin__tasktab_lock(&tab);
    assert_int_equal(kin__tasktab_live_count(&tab), 2);
    assert_ptr_equal(kin__tasktab_live_get(&tab, 1), b);
    kin__tasktab_unlock(&tab);
    kin__tasktab_end(&tab, a, KIN_TASK_DONE, 0);
    kin__tasktab_end(&tab, b, KIN_TASK_DONE, 0);
    kin__tasktab_fini(&tab);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ring_drops_the_oldest_first),
        cmocka_unit_test(persistent_tasks_are_kept_apart_and_never_dropped),
        cmocka_unit_test(cancel_of_an_unknown_id_is_enoent),
        cmocka_unit_test(ids_skip_zero_when_they_wrap),
    };
    return harness_run_group(tests);
}
