/* A supervisor's restart policy as pure steps: the intensity window (how
 * many restarts fell within the period) and the backoff before a restart
 * (doubling, capped). process/supervisor.c applies them. */
#ifndef KIN_PROCESS_RESTART_POLICY_H
#define KIN_PROCESS_RESTART_POLICY_H

#include <stdbool.h>
#include <stdint.h>

/* The times of the latest restarts, a ring of intensity + 1 entries: one
 * more than the intensity allows, so the restart that is one too many is
 * seen. times is owned by the caller; start with len = pos = 0. */
typedef struct kin__restart_window {
    uint64_t *times; /* monotonic ns; size entries */
    int size, len, pos;
} kin__restart_window;

/* The restarts booked in w at most period_ns before now (now included). */
int kin__restart_window_count(const kin__restart_window *w, uint64_t now,
                              uint64_t period_ns);

/* Books a restart at now (forgetting the oldest when the ring is full).
 * Returns whether the restarts within period_ns stay at most the intensity
 * (size - 1): false means give up. */
bool kin__restart_window_book(kin__restart_window *w, uint64_t now,
                              uint64_t period_ns);

/* The delay before a restart that is the k-th within the period (k >= 1):
 * base_ms doubled k - 1 times, at most max_ms; 0 when base_ms < 0 (no
 * backoff). In ms. */
uint64_t kin__restart_backoff_ms(int base_ms, int max_ms, int k);

#endif
