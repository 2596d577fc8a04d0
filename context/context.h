/* The assembly of a context from its layers (context.c): the router with
 * its calls, the logs, the processes and the monitor, built in that order
 * and torn down in reverse by kin_node_destroy. kin_init (init.c) uses it
 * to start a serving child. */
#ifndef KIN_CONTEXT_CONTEXT_H
#define KIN_CONTEXT_CONTEXT_H

#include <stdbool.h>

#include <kin/msg.h>
#include <kin/node.h>

/* What kin_init needs in place before the child says HELLO. */
typedef struct kin__context_hooks {
    /* SHUTDOWN from the parent (broker thread; takes ownership of m). */
    void (*on_shutdown)(kin_node *n, kin_msg *m, void *arg);
    /* The link to the parent is lost (broker thread). */
    void (*on_parent_lost)(kin_node *n, void *arg);
    /* The parent endpoint (the log endpoint) is a local socket forwarded
     * by ssh to a tcp one: the link needs CURVE all the same. */
    bool curve_up, log_curve;
    /* The link to the parent leaves the host (ssh): keep it alive. */
    bool remote;
    /* Started as another user than its parent (sudo): refuse kin.spawn. */
    bool other_user;
} kin__context_hooks;

/* kin_node_new with hooks installed before the parent can reach us. */
kin_err kin__context_new(kin_node **out, const kin_node_opts *opts,
                         const kin__context_hooks *hooks);

#endif
