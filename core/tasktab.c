/* The task table: live tasks in a hash map, terminated ones in a ring (see
 * tasktab.h). */
#include "core/tasktab.h"
#include "core/sync.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Whether an ended task's block is kept: up to the spare array's size,
 * none under AddressSanitizer, so a task used after its end is still
 * caught. */
#define KEEP_SPARES KIN__KEEP_FREED

static bool
spare_room(const kin__tasktab *tab)
{
#if KEEP_SPARES
    return tab->nspare < sizeof tab->spare / sizeof tab->spare[0];
#else
    (void)tab;
    return false;
#endif
}

int
kin__tasktab_init(kin__tasktab *tab, uint32_t ctx, size_t history)
{
    memset(tab, 0, sizeof *tab);
    tab->ctx = ctx;
    tab->ring_cap = history ? history : 1000;
    tab->ring = calloc(tab->ring_cap, sizeof *tab->ring);
    if (!tab->ring)
        return -ENOMEM;
    kin__mutex_init_fast(&tab->mu);
    return 0;
}

void
kin__tasktab_fini(kin__tasktab *tab)
{
    uint32_t id;
    void *val;
    for (size_t it = 0; kin__u32map_next(&tab->live, &it, &id, &val);) {
        kin__task_fini(val);
        free(val);
    }
    kin__u32map_fini(&tab->live);
    for (unsigned i = 0; i < tab->nspare; i++)
        free(tab->spare[i]);
    free(tab->ring);
    free(tab->kept);
    pthread_mutex_destroy(&tab->mu);
    memset(tab, 0, sizeof *tab);
}

kin_task *
kin__tasktab_add(kin__tasktab *tab, const char *name, const char *fn)
{
    return kin__tasktab_add_call(tab, name, fn, 0, 0, NULL);
}

kin_task *
kin__tasktab_add_call(kin__tasktab *tab, const char *name, const char *fn,
                      uint32_t caller_ctx, uint32_t caller_handle,
                      const void *entry)
{
    pthread_mutex_lock(&tab->mu);
    kin_task *t = tab->nspare ? tab->spare[--tab->nspare] : NULL;
    if (!t) {
        pthread_mutex_unlock(&tab->mu);
        if (!(t = malloc(sizeof *t)))
            return NULL;
        pthread_mutex_lock(&tab->mu);
    }
    uint32_t id = ++tab->next_id;
    if (!id)
        id = ++tab->next_id; /* 0 means "no task" on the wire */
    kin__task_init(t, tab->ctx, id, name);
    if (fn)
        strncpy(t->fn, fn, sizeof t->fn - 1);
    t->caller_ctx = caller_ctx;
    t->caller_handle = caller_handle;
    t->entry = entry;
    if (kin__u32map_put(&tab->live, id, t)) {
        pthread_mutex_unlock(&tab->mu);
        kin__task_fini(t);
        free(t);
        return NULL;
    }
    pthread_mutex_unlock(&tab->mu);
    return t;
}

static void
record(kin__ended *e, const kin_task *t, int state, int result)
{
    e->id = t->id;
    memcpy(e->name, t->name, sizeof e->name);
    memcpy(e->fn, t->fn, sizeof e->fn);
    e->state = state;
    e->result = result;
    e->caller_ctx = t->caller_ctx;
    e->caller_task = t->caller_task;
    e->created_file = t->created_file;
    e->created_line = t->created_line;
    e->persistent = t->persistent;
    e->cancelled_by_ctx = t->cancelled_by_ctx;
    e->cancelled_by_task = t->cancelled_by_task;
    e->created_ns = t->created_ns;
    e->started_ns = t->started_ns;
    e->ended_ns = t->ended_ns;
}

void
kin__tasktab_end(kin__tasktab *tab, kin_task *t, int state, int result)
{
    atomic_store(&t->state, state);
    t->result = result;
    if (!t->ended_ns)
        t->ended_ns = kin__now_ns();
    pthread_mutex_lock(&tab->mu);
    kin__u32map_del(&tab->live, t->id);
    tab->ended_total++;
    if (t->persistent) {
        if (tab->kept_len == tab->kept_cap) {
            size_t cap = tab->kept_cap ? tab->kept_cap * 2 : 16;
            kin__ended *k = realloc(tab->kept, cap * sizeof *k);
            if (k) {
                tab->kept = k;
                tab->kept_cap = cap;
            }
        }
        if (tab->kept_len < tab->kept_cap)
            record(&tab->kept[tab->kept_len++], t, state, result);
    } else {
        size_t slot = (tab->ring_head + tab->ring_len) % tab->ring_cap;
        if (tab->ring_len == tab->ring_cap)
            tab->ring_head = (tab->ring_head + 1) % tab->ring_cap;
        else
            tab->ring_len++;
        record(&tab->ring[slot], t, state, result);
    }
    /* Out of the live map: nobody finds t any more. */
    kin__task_fini(t);
    if (spare_room(tab)) {
        tab->spare[tab->nspare++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&tab->mu);
    free(t);
}

int
kin__tasktab_cancel(kin__tasktab *tab, uint32_t id, uint32_t by_ctx,
                    uint32_t by_task)
{
    pthread_mutex_lock(&tab->mu);
    kin_task *t = kin__u32map_get(&tab->live, id);
    if (t)
        kin__task_cancel(t, by_ctx, by_task);
    pthread_mutex_unlock(&tab->mu);
    return t ? 0 : -ENOENT;
}

void
kin__tasktab_lock(kin__tasktab *tab)
{
    pthread_mutex_lock(&tab->mu);
}

void
kin__tasktab_unlock(kin__tasktab *tab)
{
    pthread_mutex_unlock(&tab->mu);
}

bool
kin__tasktab_live_next(kin__tasktab *tab, size_t *it, kin_task **t)
{
    void *val;
    if (!kin__u32map_next(&tab->live, it, NULL, &val))
        return false;
    *t = val;
    return true;
}

size_t
kin__tasktab_live_count(const kin__tasktab *tab)
{
    return tab->live.len;
}

kin_task *
kin__tasktab_live_get(kin__tasktab *tab, uint32_t id)
{
    return kin__u32map_get(&tab->live, id);
}

size_t
kin__tasktab_ended_count(const kin__tasktab *tab)
{
    return tab->kept_len + tab->ring_len;
}

uint64_t
kin__tasktab_ended_total(const kin__tasktab *tab)
{
    return tab->ended_total;
}

const kin__ended *
kin__tasktab_ended_at(const kin__tasktab *tab, size_t i)
{
    if (i < tab->kept_len)
        return &tab->kept[i];
    i -= tab->kept_len;
    return &tab->ring[(tab->ring_head + i) % tab->ring_cap];
}
