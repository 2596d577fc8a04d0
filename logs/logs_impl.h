/* The logs subsystem's private interface (its interface to the layers
 * above is logs/logs.h and logs/logfwd.h): a node's publisher (logpub.c),
 * the forwarder device (logfwd.c) and the subscriber internals the
 * forwarder's file sink uses (logsub.c). */
#ifndef KIN_LOGS_LOGS_IMPL_H
#define KIN_LOGS_LOGS_IMPL_H

#include <stdbool.h>

#include <kin/logs.h>

#include "logs/logfwd.h"
#include "logs/logrec.h"
#include "logs/logs.h"
#include "router/router.h"

/* --- the node's publisher (logpub.c) -------------------------------------- */

/* Counters, backlog, hold and tuning of the publisher: logs/logs_test.h
 * (for tests and benchmarks). */

/* --- subscriber internals (logsub.c) -------------------------------------- */

/* A sink subscribed to everything at endpoint (the forwarder's capture
 * socket), filtering by opts->min_level itself. Connected before it
 * returns. */
kin_err kin__logsink_new_all(kin_logsink **out, const kin_logsink_opts *opts);

#endif
