/* Hooks into the node's publisher (logpub.c) for tests and benchmarks:
 * counters, the queue's backlog, a hold that lets a test fill the queue,
 * and process-wide tuning. The library itself only reads the counters
 * (the monitor's metrics). */
#ifndef KIN_LOGS_LOGS_TEST_H
#define KIN_LOGS_LOGS_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/node.h>

#include "logs/logrec.h"

/* Publisher counters, per level bucket (debug .. critical). */
typedef struct kin__logs_stats {
    uint64_t sent[KIN__LOG_BUCKETS];     /* handed to the socket */
    uint64_t unwanted[KIN__LOG_BUCKETS]; /* produced, no subscription: kept */
    uint64_t dropped[KIN__LOG_BUCKETS];  /* queue full */
    uint64_t notices;                    /* "dropped N" records sent */
    uint64_t blocked;                    /* socket at its high-water mark */
    uint64_t link_failures; /* the socket or link could not be made */
    int min_level;          /* lowest level produced now */
    bool synced;            /* the forwarder's subscription set is known */
} kin__logs_stats;

/* A snapshot; zeros when n has no publisher. Any thread. */
void kin__logs_stats_get(kin_node *n, kin__logs_stats *out);

/* Bytes waiting in n's publisher queue, and its capacity (0 and 0 without
 * a publisher). Producers that would rather wait than lose records (the
 * benchmark) look at it. Any thread. */
void kin__logs_backlog(kin_node *n, size_t *used, size_t *cap);

/* While held, the publisher sends nothing and its queue fills (tests use
 * it to overflow the queue deterministically). Any thread. */
void kin__logs_hold(kin_node *n, bool hold);

/* Process-wide settings for nodes started afterwards; 0 keeps a default. */
typedef struct kin__logs_tuning {
    size_t queue_bytes;  /* per publisher queue (x2 buffers); 512 KiB */
    int pub_hwm;         /* publisher socket; 10000 */
    int fwd_hwm;         /* forwarder, each direction; 10000 */
    int sync_timeout_ms; /* wait for the forwarder's subscriptions; 2000 */
    int fwd_lossless;    /* 1: the embedded forwarder is lossless */
} kin__logs_tuning;

void kin__logs_tune(const kin__logs_tuning *t);

#endif
