/* Clock, statistics and child-process helpers shared by the benchmarks. */
#ifndef KIN_BENCH_STATS_H
#define KIN_BENCH_STATS_H

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* Waits up to timeout_ms for pid to exit, then kills it; always reaps.
 * Returns the wait status, or -1 when it had to be killed (or pid <= 0). */
static inline int
bench_reap(pid_t pid, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    int fd = pidfd_open(pid, 0), rc = -1, status = -1;
    if (fd >= 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        do
            rc = poll(&p, 1, timeout_ms);
        while (rc < 0 && errno == EINTR);
        close(fd);
    }
    if (rc <= 0)
        kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return rc <= 0 ? -1 : status;
}

/* The run time of every thread of pid so far (schedstat), in µs. */
static inline double
proc_cpu_us(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return NAN;
    double us = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char p[300];
        unsigned long long ns = 0;
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s/schedstat", path, de->d_name);
        FILE *f = fopen(p, "r");
        if (f && fscanf(f, "%llu", &ns) == 1)
            us += (double)ns / 1e3;
        if (f)
            fclose(f);
    }
    closedir(d);
    return us;
}

/* The CPU (user + system) of process pid and of the children it reaped
 * (/proc/PID/stat utime, stime, cutime, cstime), in ms, to the clock
 * tick; NAN when it cannot be read. */
static inline double
proc_tree_cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command may hold anything */
    unsigned long ut, st;
    long cut, cst;
    if (!p || sscanf(p + 1,
                     " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
                     "%ld %ld",
                     &ut, &st, &cut, &cst) != 4)
        return NAN;
    return (double)(ut + st + (unsigned long)cut + (unsigned long)cst) *
           1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* The CPU (user + system) of this process's threads and of the children
 * it reaped so far (getrusage), in ms. */
static inline double
self_tree_cpu_ms(void)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    double us = 0;
    const struct rusage *r[2] = {&a, &b};
    for (int i = 0; i < 2; i++)
        us += (double)(r[i]->ru_utime.tv_sec + r[i]->ru_stime.tv_sec) * 1e6 +
              (double)(r[i]->ru_utime.tv_usec + r[i]->ru_stime.tv_usec);
    return us / 1e3;
}

#endif
