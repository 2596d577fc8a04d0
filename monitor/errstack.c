/* The stack a failed call's error reply carries (kin_call_error_stack):
 * the frames from where the served function called kin_call_fail down to
 * that function, symbolized here, in the callee, where its debug info is. */
#include "monitor/errstack.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/stack.h"
#include "router/router.h"

/* Appends one frame's line; false when out is full. */
static bool
put_frame(char *out, size_t cap, size_t *len, int i, const kin__frame *f)
{
    const char *file = strrchr(f->file, '/');
    file = file ? file + 1 : f->file;
    int w;
    if (f->line)
        w = snprintf(out + *len, cap - *len, "%s#%d %s (%s:%d)",
                     *len ? "\n" : "", i, f->fn, file, f->line);
    else if (*file)
        w = snprintf(out + *len, cap - *len, "%s#%d %s (%s)", *len ? "\n" : "",
                     i, f->fn, file);
    else
        w = snprintf(out + *len, cap - *len, "%s#%d %s", *len ? "\n" : "", i,
                     f->fn);
    if (w < 0 || (size_t)w >= cap - *len) {
        out[*len] = 0;
        return false;
    }
    *len += (size_t)w;
    return true;
}

/* Texts made lately, by where they were made: a function failing again
 * from the same place (the common case) costs a hash and a copy, not a
 * symbolization. Direct-mapped; a slot is taken by the newest. */
#define CACHE_SLOTS 32
typedef struct cached {
    uint64_t key;
    void *fn;
    int n;
    void *pcs[KIN__ERRSTACK_FRAMES];
    size_t len;
    char text[KIN__ERRSTACK_MAX];
} cached;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cached *cache; /* CACHE_SLOTS, made at the first failure */

static uint64_t
key_of(void *const *pcs, int n, void *fn)
{
    uint64_t h = 1469598103934665603u ^ (uintptr_t)fn;
    for (int i = 0; i < n; i++)
        h = (h ^ (uintptr_t)pcs[i]) * 1099511628211u;
    return h ^ (uint64_t)n;
}

static bool
is_entry(const cached *c, uint64_t key, void *const *pcs, int n, void *fn)
{
    return c->key == key && c->fn == fn && c->n == n &&
           !memcmp(c->pcs, pcs, (size_t)n * sizeof *pcs);
}

/* Copies a cached text for this place into out; false if none. */
static bool
lookup(uint64_t key, void *const *pcs, int n, void *fn, char *out, size_t cap,
       size_t *len)
{
    bool hit = false;
    pthread_mutex_lock(&cache_mu);
    const cached *c = cache ? &cache[key % CACHE_SLOTS] : NULL;
    if (c && is_entry(c, key, pcs, n, fn) && c->len < cap) {
        memcpy(out, c->text, c->len + 1);
        *len = c->len;
        hit = true;
    }
    pthread_mutex_unlock(&cache_mu);
    return hit;
}

static void
remember(uint64_t key, void *const *pcs, int n, void *fn, const char *text,
         size_t len)
{
    pthread_mutex_lock(&cache_mu);
    if (!cache)
        cache = calloc(CACHE_SLOTS, sizeof *cache);
    if (cache && len < KIN__ERRSTACK_MAX) {
        cached *c = &cache[key % CACHE_SLOTS];
        c->key = key;
        c->fn = fn;
        c->n = n;
        memcpy(c->pcs, pcs, (size_t)n * sizeof *pcs);
        memcpy(c->text, text, len + 1);
        c->len = len;
    }
    pthread_mutex_unlock(&cache_mu);
}

static size_t format(void *const *pcs, int n, void *fn, char *out, size_t cap);

size_t
kin__errstack_format(void *const *pcs, int n, void *fn, char *out, size_t cap)
{
    if (!cap)
        return 0;
    out[0] = 0;
    if (n > KIN__ERRSTACK_FRAMES)
        n = KIN__ERRSTACK_FRAMES;
    uint64_t key = key_of(pcs, n, fn);
    size_t len;
    if (lookup(key, pcs, n, fn, out, cap, &len))
        return len;
    len = format(pcs, n, fn, out, cap);
    remember(key, pcs, n, fn, out, len);
    return len;
}

static size_t
format(void *const *pcs, int n, void *fn, char *out, size_t cap)
{
    /* addrs[0] is the function's entry (one byte on, as symbolize looks one
     * byte back), then the stack. */
    uintptr_t addrs[KIN__ERRSTACK_FRAMES + 1];
    kin__frame frames[KIN__ERRSTACK_FRAMES + 1];
    addrs[0] = (uintptr_t)fn + 1;
    for (int i = 0; i < n; i++)
        addrs[i + 1] = (uintptr_t)pcs[i];
    kin__stack_symbolize(addrs, n + 1, frames);
    const kin__frame *entry = &frames[0];
    size_t len = 0;
    int shown = 0;
    bool reached = false;
    for (int i = 1; i <= n && !reached; i++) {
        reached = !strcmp(frames[i].fn, entry->fn);
        if (!put_frame(out, cap, &len, shown++, &frames[i]))
            return len;
    }
    if (!reached && strcmp(entry->fn, "??"))
        /* No stack, or it did not lead back to the function (inlined,
         * cut at the frame bound): name the function where it starts. */
        put_frame(out, cap, &len, shown, entry);
    return len;
}
