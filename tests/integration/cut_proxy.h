/* A tcp proxy for test_join that cuts one side only: it forwards
 * 127.0.0.1:port to a local target port; a cut (cut_now) closes the
 * client's side of every connection and leaves the target's side open
 * but silent, as a network failure the target has not noticed yet would.
 * Its thread polls with 20 ms timeouts; cuts_done counts cuts made. */
#ifndef KIN_TESTS_CUT_PROXY_H
#define KIN_TESTS_CUT_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define PAIRS_MAX 16

typedef struct proxy {
    int lfd, port, target_port;
    int cl[PAIRS_MAX], sv[PAIRS_MAX]; /* -1: none; sv of a cut pair stays */
    bool cut[PAIRS_MAX];
    atomic_bool stop, cut_now;
    atomic_int cuts_done;
    pthread_t thread;
} proxy;

/* Listens on an ephemeral port of 127.0.0.1 (x->port) forwarding to
 * target_port; asserts (cmocka) on failure. */
void proxy_start(proxy *x, int target_port);
/* Ends the thread and closes every socket; a no-op once stopped or when
 * never started (x zeroed). */
void proxy_stop(proxy *x);

#endif
