/* A context assembled from its layers: the router (ids, sockets, calls,
 * broker thread), then the logs (the publisher, and a master's embedded
 * forwarder), the process layer (children, emergency stop), the monitor
 * service, and only then the router's sockets and the HELLO to the
 * parent. kin_node_destroy takes it apart in reverse. Each layer keeps its
 * own state in its slot of the node (router/router.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "context/context.h"
#include "logs/logs.h"
#include "monitor/service.h"
#include "process/procs.h"
#include "router/router.h"

kin_err
kin_node_new(kin_node **out, const kin_node_opts *opts)
{
    return kin__context_new(out, opts, NULL);
}

kin_err
kin__context_new(kin_node **out, const kin_node_opts *opts,
                 const kin__context_hooks *hooks)
{
    kin__context_hooks none = {0};
    if (!hooks)
        hooks = &none;
    kin_node_opts no_opts = {0};
    if (!opts)
        opts = &no_opts;
    size_t why_size = opts->errbuf ? opts->errbuf_size : 0;
    if (why_size)
        opts->errbuf[0] = 0;
    kin__router_hooks rh = {.on_shutdown = hooks->on_shutdown,
                            .on_parent_lost = hooks->on_parent_lost,
                            .curve_up = hooks->curve_up,
                            .remote = hooks->remote};
    kin_node *n = NULL;
    kin_err e = kin__router_new(&n, opts, &rh);
    /* Before the router opens: calls served at once may log. */
    if (!e && ((e = kin__logs_start(n, opts, hooks->log_curve)) ||
               (e = kin__procs_attach(n, hooks->other_user)) ||
               (e = kin__monitor_start(n)) ||
               (e = kin__router_start(n, opts->errbuf, why_size))))
        kin_node_destroy(&n);
    if (e && why_size && !opts->errbuf[0])
        snprintf(opts->errbuf, why_size, "%s", kin_strerror(e));
    *out = n;
    return e;
}

void
kin_node_destroy(kin_node **np)
{
    if (!np || !*np)
        return;
    kin_node *n = *np;
    /* Child processes and supervisors first: they may still call. */
    kin__procs_stop(n);
    kin__monitor_stop(n);
    kin__router_stop_calls(n);
    /* Records logged until now still go out, through the running broker. */
    kin__logs_stop(n);
    kin__router_stop(n);
    /* No broker thread from here on: nothing reads the layers' state. */
    kin__monitor_free(n);
    kin__procs_free(n);
    kin__router_free(n);
    *np = NULL;
}
