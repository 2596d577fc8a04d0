/* The raw zmq side of kin-bench's baselines (tests/bench/kin_bench.c,
 * zmq_floor.c): a ROUTER bound over ipc in a directory of its own, its
 * [rid][body] messages, and peers started from the bench's own executable.
 * No kin code. */
#ifndef KIN_BENCH_ZROUTER_H
#define KIN_BENCH_ZROUTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ZROUTER_RID_MAX 256 /* a ZMQ routing id is at most 255 bytes */

typedef struct zrouter {
    void *ctx;
    void *sock;
    char dir[64];
    char ep[128]; /* ipc://DIR/zmq.sock */
} zrouter;

/* Binds a ROUTER (ROUTER_MANDATORY, send and receive timeouts of
 * timeout_ms, no linger) at a new ep. 0, or -1 with errno set; call
 * zrouter_close either way. */
int zrouter_open(zrouter *r, int timeout_ms);

/* Closes the socket and its context, removes the socket file and
 * directory. */
void zrouter_close(zrouter *r);

/* One [rid][body] message (blocking up to the timeout), the body up to cap
 * bytes, rid up to ZROUTER_RID_MAX: the body's size, or -1. */
int zrouter_recv(zrouter *r, uint8_t *rid, size_t *rid_len, void *body,
                 size_t cap);

/* Sends [rid][body]: 0, or -1 with errno set. */
int zrouter_send(zrouter *r, const uint8_t *rid, size_t rid_len,
                 const void *body, size_t len);

/* Starts `self argv1 ep [arg [arg2]]` (its fd 0 is fd0 when >= 0), dying
 * with this process: its pid, or -1. */
pid_t zrouter_start_self(const char *self, const char *argv1, const char *ep,
                         const char *arg, const char *arg2, int fd0);

/* A DEALER connected to endpoint, in a context of its own: says hello (len
 * bytes), echoes every message, stops at an empty one. It waits as long as
 * it takes. 0 after the empty message, 1 on an error. */
int zrouter_echo_peer(const char *endpoint, const void *hello, size_t len);

#endif
