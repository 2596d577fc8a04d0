/* Clock and statistics helpers shared by the benchmarks. */
#ifndef KIN_BENCH_STATS_H
#define KIN_BENCH_STATS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of v[], which it sorts; NAN when empty. */
static inline double
quantile(uint64_t *v, size_t n, double q)
{
    if (!n)
        return NAN;
    qsort(v, n, sizeof *v, cmp_u64);
    return (double)v[(size_t)(q * (double)(n - 1) + 0.5)];
}

/* The median of v[] (which it sorts), NAN when empty. */
static inline double
median(uint64_t *v, size_t n)
{
    if (!n)
        return NAN;
    qsort(v, n, sizeof *v, cmp_u64);
    return n % 2 ? (double)v[n / 2]
                 : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

#endif
