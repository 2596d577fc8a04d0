/* The logs layer's interface to the layers above it (process, monitor,
 * context): a node's publisher, started and stopped by the context
 * assembly, and the records the process layer writes for its children. */
#ifndef KIN_LOGS_LOGS_H
#define KIN_LOGS_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/node.h>

/* Starts n's logs: for a master without opts->log_endpoint the embedded
 * forwarder (and opts->log_file's sink), then, unless logs are off
 * (log_endpoint "", an operator link, or a child given no endpoint), the
 * publisher, which becomes the process's current one, attached to n.
 * curve: the log endpoint is a local socket forwarded by ssh to a tcp one,
 * so the link needs CURVE all the same. Errors: -EINVAL (bad endpoint),
 * -errno (binding, opening log_file), -ENOMEM. Called by the context
 * assembly once the broker runs, before the router starts. */
kin_err kin__logs_start(kin_node *n, const kin_node_opts *opts, bool curve);

/* Sends what is queued, closes the publisher on the broker thread, stops
 * the forwarder and sink, detaches it from n. Nothing happens when n has
 * no publisher. Called by kin_node_destroy while the broker still runs. */
void kin__logs_stop(kin_node *n);

/* Whether a publisher of this process ever handed a record to its socket:
 * libzmq's I/O thread may then still hold some when the process exits
 * (context/init.c waits for them). Any thread. */
bool kin__logs_published(void);

/* A line (without its newline) a child process wrote to stdout or stderr,
 * published as a record about that child (kind STDOUT at INFO, STDERR at
 * WARNING). Any thread; meant for the broker thread's pipe reader. */
void kin__logs_child_line(kin_node *n, uint32_t child_id,
                          const char *child_name, bool is_stderr,
                          const char *line, size_t len);

/* The endpoint n's records go to, "" when n has no publisher. Any
 * thread. */
const char *kin__logs_endpoint(const kin_node *n);
/* Whether that endpoint needs CURVE though it looks local (ssh forwards
 * it to a tcp one). */
bool kin__logs_curve(const kin_node *n);

#endif
