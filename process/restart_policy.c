/* A supervisor's restart policy (process/restart_policy.h). */
#include "process/restart_policy.h"

int
kin__restart_window_count(const kin__restart_window *w, uint64_t now,
                          uint64_t period_ns)
{
    int count = 0;
    for (int i = 0; i < w->len; i++)
        if (now - w->times[i] <= period_ns)
            count++;
    return count;
}

bool
kin__restart_window_book(kin__restart_window *w, uint64_t now,
                         uint64_t period_ns)
{
    w->times[w->pos] = now;
    w->pos = (w->pos + 1) % w->size;
    if (w->len < w->size)
        w->len++;
    return kin__restart_window_count(w, now, period_ns) <= w->size - 1;
}

uint64_t
kin__restart_backoff_ms(int base_ms, int max_ms, int k)
{
    if (base_ms < 0)
        return 0;
    uint64_t ms = (uint64_t)base_ms, cap = max_ms < 0 ? 0 : (uint64_t)max_ms;
    for (int i = 1; i < k && ms < cap; i++)
        ms *= 2;
    return ms > cap ? cap : ms;
}
