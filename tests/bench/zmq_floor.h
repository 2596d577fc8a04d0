/* Raw libzmq + pthread floors for kin-bench (tests/bench/zmq_floor.c): no
 * kin code, the same work kin does with the same thread hand-offs.
 *
 * Hand-off round trip: one socket per side, owned by a thread that polls
 * its ZMQ_FD and an eventfd and receives; other threads send on it under
 * a mutex and then ask ZMQ_EVENTS, waking the owner when input is waiting
 * (a send may have consumed the ZMQ_FD edge). The caller sends and sleeps
 * on a condition variable until the owner hands it the reply; the peer's
 * owner hands each request to a worker thread that sends the reply
 * (2 hand-offs, as a worker-pool call), or answers it itself (1 hand-off,
 * as an inline call).
 *
 * Pipelined hand-off: the same sockets and hand-offs with the caller keeping
 * a window of requests in flight and waiting for the oldest first; the
 * owner reads the replies in batches, moves each into the slot its sequence
 * number (the payload's first 4 bytes) names and wakes the caller once per
 * batch; the peer's owner queues each request for a pool of worker threads
 * (or answers it itself). A thread sending on the socket need not wake the
 * owner while the owner is still draining it (it receives again anyway).
 *
 * Fork: a single-threaded process with libzmq loaded and nothing else done
 * (a zygote) forks on request; the child makes a context and a DEALER,
 * connects over ipc, says hello and echoes until an empty message. */
#ifndef KIN_BENCH_ZMQ_FLOOR_H
#define KIN_BENCH_ZMQ_FLOOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct zfloor_rtt zfloor_rtt;

/* Binds a ROUTER in a directory of its own, starts `self --zmq-handoff-peer
 * EP 1|2` and waits for its hello, then starts the socket's owner thread.
 * handoffs: 2 (the peer's worker replies) or 1 (its owner does). Returns
 * NULL on failure (errno set, the message on stderr). */
zfloor_rtt *zfloor_rtt_open(const char *self, int handoffs, int timeout_ms);

/* As zfloor_rtt_open with handoffs 2 on the peer, but no owner thread on
 * this side: the caller receives its reply from the socket itself, as a
 * caller that reads its own reply (leader/follower) would. */
zfloor_rtt *zfloor_rtt_open_self_recv(const char *self, int timeout_ms);

/* One round trip of len bytes of buf, the echo written back into buf.
 * Returns 0, or -1 with errno set (ETIMEDOUT past the timeout). */
int zfloor_rtt_ping(zfloor_rtt *f, uint8_t *buf, size_t len);

/* Stops the peer (reaped, killed if it does not stop), the owner thread,
 * and removes the directory. NULL is fine. */
void zfloor_rtt_close(zfloor_rtt **f);

typedef struct zfloor_pipe zfloor_pipe;

/* As zfloor_rtt_open, the peer with `workers` worker threads (1..16; used
 * with handoffs 2), for at most `window` requests in flight. */
zfloor_pipe *zfloor_pipe_open(const char *self, int handoffs, int workers,
                              int window, int timeout_ms);

/* As zfloor_pipe_open with handoffs 2, but no owner thread on this side:
 * the caller receives the replies from the socket itself. */
zfloor_pipe *zfloor_pipe_open_self_recv(const char *self, int workers,
                                        int window, int timeout_ms);

/* total requests of len bytes (4..256) of payload, at most the window in
 * flight, each reply checked (length, sequence number); the time taken is
 * added to *ns. Returns 0, or -1 with errno set (ETIMEDOUT, EBADMSG). */
int zfloor_pipe_run(zfloor_pipe *f, const uint8_t *payload, size_t len,
                    int total, uint64_t *ns);

/* As zfloor_rtt_close. NULL is fine. */
void zfloor_pipe_close(zfloor_pipe **f);

/* The peer process: argv "--zmq-handoff-peer EP N [WORKERS]" (WORKERS: 1
 * unless given). Returns 2 for a bad WORKERS. */
int zfloor_handoff_peer_main(const char *endpoint, int handoffs, int workers);

/* The zygote process: argv "--zmq-zygote EP"; requests on fd 0. */
int zfloor_zygote_main(const char *endpoint);

/* The fork floor: starts a zygote, then `reps` times (after one warm-up)
 * request -> hello -> one echo (ms: *first_ms, the median; the CPU the
 * child's threads burned until then: *child_cpu_us, the median), then
 * `fanout` children at once, started (each said hello) and stopped (each
 * exited): *fanout_ms, and the CPU that burned in this process, the
 * zygote and the children: *fanout_cpu_ms. Returns 0 or -1 (the reason on
 * stderr). */
int zfloor_fork(const char *self, int reps, int fanout, int timeout_ms,
                double *first_ms, double *child_cpu_us, double *fanout_ms,
                double *fanout_cpu_ms);

#endif
