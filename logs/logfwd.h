/* The log forwarder (logfwd.c): the XSUB/XPUB device a master embeds
 * (logpub.c) and the kin command runs on its own (context/tool.h). */
#ifndef KIN_LOGS_LOGFWD_H
#define KIN_LOGS_LOGFWD_H

#include <stdbool.h>
#include <stdint.h>

#include <kin/logs.h>

#include "router/curve.h"

typedef struct kin__logfwd kin__logfwd;

typedef struct kin__logfwd_opts {
    const char *backend;  /* publishers connect: XSUB binds here */
    const char *frontend; /* subscribers connect: XPUB binds here */
    int hwm;              /* 0: 10000 */
    /* Wait for the slowest subscriber instead of dropping its records:
     * pressure then reaches the publishers' queues, which drop and report
     * (for archival subscribers and the benchmark; one stuck subscriber
     * holds up the tree's logs). */
    bool lossless;
    /* Optional sink fed inside the process, set up before the first record
     * can flow, so it misses nothing (fd < 0: none). */
    int sink_fd;
    const char *sink_path; /* instead of sink_fd: a file the sink opens */
    size_t sink_max_bytes; /* with sink_path: rotation (kin_logsink_opts) */
    int sink_keep;
    kin_logsink_format sink_format;
    int sink_level;
    /* The CURVE key for tcp:// endpoints (both sides are CURVE servers
     * admitting only this key); a tcp endpoint without it is -EINVAL. */
    const kin__curve_key *curve;
    /* Recent records kept for subscribers that ask (kin logs -n, --since):
     * 0: KIN__LOGFWD_HISTORY_DEFAULT, < 0: none; also bounded to 4 MiB.
     * The forwarder subscribes to history_level (0: KIN_LOG_INFO) and up
     * itself, so the publishers send those levels even with no
     * subscriber around. */
    int history;
    int history_level;
} kin__logfwd_opts;

#define KIN__LOGFWD_HISTORY_DEFAULT 1000

typedef struct kin__logfwd_stats {
    uint64_t records;       /* forwarded to subscribers */
    uint64_t subscriptions; /* (un)subscribe messages forwarded upstream */
} kin__logfwd_stats;

/* Binds both sides and starts the forwarder thread. Wildcard endpoints
 * (tcp://host:*) are resolved: read them back with the accessors.
 * Errors: -EINVAL, -errno from ZMQ (e.g. -EADDRINUSE), -ENOMEM. */
kin_err kin__logfwd_start(kin__logfwd **out, const kin__logfwd_opts *opts);
const char *kin__logfwd_backend(const kin__logfwd *f);
const char *kin__logfwd_frontend(const kin__logfwd *f);
void kin__logfwd_stats_get(const kin__logfwd *f, kin__logfwd_stats *out);

/* Stops the thread (with a sink, after letting in-flight records settle
 * for a moment), closes the sockets and the sink, and removes the ipc
 * socket files it bound (those still its own: a path another forwarder
 * has bound since is left alone); *f = NULL. NULL-safe. */
void kin__logfwd_stop(kin__logfwd **f);

#endif
