/* Per-function call metrics (router/metrics.h): a fixed open-addressing
 * table per node, claimed slot by slot with a compare-and-swap, so the
 * worker that ends a call counts it without a lock or an allocation. */
#include "router/metrics.h"

#include <stdlib.h>
#include <string.h>

#include "core/task.h"
#include "router/node_impl.h"

kin__fn_metrics *
kin__fn_metrics_new(void)
{
    return calloc(1, sizeof(kin__fn_metrics));
}

void
kin__fn_metrics_free(kin__fn_metrics **m)
{
    if (!m)
        return;
    free(*m);
    *m = NULL;
}

int
kin__fn_lat_bucket(uint64_t ns)
{
    uint64_t us = ns / 1000;
    int b = us ? 64 - __builtin_clzll(us) : 0;
    return b < KIN_FN_LAT_BUCKETS ? b : KIN_FN_LAT_BUCKETS - 1;
}

static int
error_kind(int code)
{
    switch (code) {
    case KIN_ECANCELLED:
        return KIN_FN_ERR_CANCELLED;
    case KIN_EREFUSED:
        return KIN_FN_ERR_REFUSED;
    case KIN_ETIMEOUT:
        return KIN_FN_ERR_TIMEOUT;
    default:
        return KIN_FN_ERR_FAILED;
    }
}

static bool
same_name(const kin__fn_slot *s, const char *name, size_t len)
{
    return !memcmp(s->name, name, len) && !s->name[len];
}

/* The slot of name, claimed if new; NULL when the table is full. */
static kin__fn_slot *
slot_of(kin__fn_metrics *m, const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    for (size_t k = 0; k < KIN__FN_METRICS_MAX; k++) {
        kin__fn_slot *s = &m->slots[(h + k) % KIN__FN_METRICS_MAX];
        int st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == 0) {
            int want = 0;
            if (atomic_compare_exchange_strong(&s->state, &want, 1)) {
                memcpy(s->name, name, len);
                s->name[len] = 0;
                atomic_store_explicit(&s->state, 2, memory_order_release);
                return s;
            }
            st = want;
        }
        /* Another worker names it right now: a few stores away. */
        while (st == 1)
            st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (same_name(s, name, len))
            return s;
    }
    return NULL;
}

void
kin__fn_metrics_record(kin__fn_metrics *m, const char *name, size_t name_len,
                       int code, uint64_t arrived_ns)
{
    if (!m)
        return;
    if (code == KIN_ENOFUNC || code == KIN_EBADMSG || !name_len ||
        name_len >= KIN_FN_NAME_MAX) {
        atomic_fetch_add_explicit(&m->unknown, 1, memory_order_relaxed);
        return;
    }
    kin__fn_slot *s = slot_of(m, name, name_len);
    if (!s) {
        atomic_fetch_add_explicit(&m->overflow, 1, memory_order_relaxed);
        return;
    }
    uint64_t now = kin__now_ns();
    uint64_t ns = arrived_ns && now > arrived_ns ? now - arrived_ns : 0;
    atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
    if (code)
        atomic_fetch_add_explicit(&s->errors[error_kind(code)], 1,
                                  memory_order_relaxed);
    atomic_fetch_add_explicit(&s->latency[kin__fn_lat_bucket(ns)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&s->latency_ns, ns, memory_order_relaxed);
}

size_t
kin__fn_metrics_read(kin__fn_metrics *m, kin_fn_metrics *out, size_t max,
                     uint64_t *unknown, uint64_t *overflow)
{
    size_t count = 0;
    *unknown = m ? atomic_load_explicit(&m->unknown, memory_order_relaxed) : 0;
    *overflow =
        m ? atomic_load_explicit(&m->overflow, memory_order_relaxed) : 0;
    for (size_t i = 0; m && i < KIN__FN_METRICS_MAX; i++) {
        kin__fn_slot *s = &m->slots[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != 2)
            continue;
        if (count < max) {
            kin_fn_metrics *f = &out[count];
            memset(f, 0, sizeof *f);
            memcpy(f->name, s->name, sizeof f->name);
            f->calls = atomic_load_explicit(&s->calls, memory_order_relaxed);
            for (int k = 0; k < KIN_FN_ERR_KINDS; k++)
                f->errors[k] =
                    atomic_load_explicit(&s->errors[k], memory_order_relaxed);
            for (int b = 0; b < KIN_FN_LAT_BUCKETS; b++)
                f->latency[b] =
                    atomic_load_explicit(&s->latency[b], memory_order_relaxed);
            f->latency_sum_s = (double)atomic_load_explicit(
                                   &s->latency_ns, memory_order_relaxed) /
                               1e9;
        }
        count++;
    }
    return count;
}

kin__fn_metrics *
kin__node_fn_metrics(kin_node *n)
{
    return n->metrics;
}
