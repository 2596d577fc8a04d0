/* Open-addressing u32 -> pointer map (see u32map.h). */
#include "core/u32map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t
slot_of(uint32_t key, size_t cap)
{
    /* Fibonacci hashing spreads sequential ids over the table. */
    return (size_t)((key * 2654435769u) & (uint32_t)(cap - 1));
}

void
kin__u32map_init(kin__u32map *m)
{
    memset(m, 0, sizeof *m);
}

void
kin__u32map_fini(kin__u32map *m)
{
    free(m->keys);
    free(m->vals);
    free(m->used);
    kin__u32map_init(m);
}

static size_t
find(const kin__u32map *m, uint32_t key, bool *found)
{
    size_t i = slot_of(key, m->cap);
    while (m->used[i]) {
        if (m->keys[i] == key) {
            *found = true;
            return i;
        }
        i = (i + 1) & (m->cap - 1);
    }
    *found = false;
    return i;
}

void *
kin__u32map_get(const kin__u32map *m, uint32_t key)
{
    if (!m->len)
        return NULL;
    bool found;
    size_t i = find(m, key, &found);
    return found ? m->vals[i] : NULL;
}

bool
kin__u32map_has(const kin__u32map *m, uint32_t key)
{
    if (!m->len)
        return false;
    bool found;
    find(m, key, &found);
    return found;
}

static int
grow(kin__u32map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    kin__u32map n = {.cap = cap};
    n.keys = malloc(cap * sizeof *n.keys);
    n.vals = malloc(cap * sizeof *n.vals);
    n.used = calloc(cap, 1);
    if (!n.keys || !n.vals || !n.used) {
        kin__u32map_fini(&n);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->used[i])
            continue;
        bool found;
        size_t j = find(&n, m->keys[i], &found);
        n.used[j] = 1;
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
        n.len++;
    }
    kin__u32map_fini(m);
    *m = n;
    return 0;
}

int
kin__u32map_put(kin__u32map *m, uint32_t key, void *val)
{
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m))
        return -ENOMEM;
    bool found;
    size_t i = find(m, key, &found);
    if (!found) {
        m->used[i] = 1;
        m->keys[i] = key;
        m->len++;
    }
    m->vals[i] = val;
    return 0;
}

void *
kin__u32map_del(kin__u32map *m, uint32_t key)
{
    if (!m->len)
        return NULL;
    bool found;
    size_t i = find(m, key, &found);
    if (!found)
        return NULL;
    void *val = m->vals[i];
    /* Backward-shift: move later members of the probe run into the hole. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & (m->cap - 1);
        if (!m->used[j])
            break;
        size_t home = slot_of(m->keys[j], m->cap);
        /* Move j to hole unless its home lies cyclically in (hole, j]. */
        bool in_range =
            hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->used[hole] = 0;
    m->len--;
    return val;
}

bool
kin__u32map_next(const kin__u32map *m, size_t *it, uint32_t *key, void **val)
{
    for (; *it < m->cap; (*it)++) {
        if (m->used[*it]) {
            if (key)
                *key = m->keys[*it];
            if (val)
                *val = m->vals[*it];
            (*it)++;
            return true;
        }
    }
    return false;
}
