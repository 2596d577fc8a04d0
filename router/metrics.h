/* Per-function call metrics of a node: calls, errors by kind and a latency
 * histogram for every exported function it ran, counted where a call ends
 * (pool.c) with relaxed atomics: no lock, no allocation on the call path.
 * The monitor reads them (kin_monitor_metrics). */
#ifndef KIN_ROUTER_METRICS_H
#define KIN_ROUTER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/monitor.h>

/* Functions counted per node; the calls of any more are counted apart. */
#define KIN__FN_METRICS_MAX 64

typedef struct kin__fn_slot {
    _Atomic int state; /* 0 free, 1 being claimed, 2 named */
    char name[KIN_FN_NAME_MAX];
    atomic_uint_fast64_t calls;
    atomic_uint_fast64_t errors[KIN_FN_ERR_KINDS];
    atomic_uint_fast64_t latency[KIN_FN_LAT_BUCKETS];
    atomic_uint_fast64_t latency_ns; /* sum */
} kin__fn_slot;

typedef struct kin__fn_metrics {
    kin__fn_slot slots[KIN__FN_METRICS_MAX];
    atomic_uint_fast64_t unknown;  /* calls of no exported function */
    atomic_uint_fast64_t overflow; /* calls of functions past the table */
} kin__fn_metrics;

/* A zeroed table (calloc); NULL on -ENOMEM. */
kin__fn_metrics *kin__fn_metrics_new(void);
void kin__fn_metrics_free(kin__fn_metrics **m);

/* Counts one call of name (name_len bytes) that ended with code (KIN_OK
 * or the error its caller gets) and had arrived at arrived_ns
 * (kin__now_ns). KIN_ENOFUNC and KIN_EBADMSG count as unknown, not by
 * name. m may be NULL. Any thread; lock-free. */
void kin__fn_metrics_record(kin__fn_metrics *m, const char *name,
                            size_t name_len, int code, uint64_t arrived_ns);

/* The latency bucket of ns (see KIN_FN_LAT_BUCKETS). Pure. */
int kin__fn_lat_bucket(uint64_t ns);

/* Copies up to max functions' figures into out (relaxed reads: each
 * counter is exact, the set a moment's view) and returns how many
 * functions there are. Any thread. */
size_t kin__fn_metrics_read(kin__fn_metrics *m, kin_fn_metrics *out, size_t max,
                            uint64_t *unknown, uint64_t *overflow);

/* The node's table (NULL when it could not be made). */
kin__fn_metrics *kin__node_fn_metrics(kin_node *n);

#endif
