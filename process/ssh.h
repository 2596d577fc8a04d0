/* The ssh factory's pieces for kin_spawn: the ssh command line, the boot
 * block the remote bootstrap reads from stdin, and the thread that writes
 * it (and this executable, for zero-install) into ssh's stdin. */
#ifndef KIN_PROCESS_SSH_H
#define KIN_PROCESS_SSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/process.h>

#include "process/procs.h"

typedef struct kin__ssh_plan {
    char *path;  /* the ssh client */
    char **argv; /* NULL-terminated, every string malloc'd */
    char *boot;  /* KIN_* lines and an empty line */
    size_t boot_len;
    bool stream_self; /* this executable follows the boot block */
} kin__ssh_plan;

/* Builds the ssh command for a child l of n started on opts->host, with
 * the parent's socket (and log endpoint) forwarded to fresh socket paths
 * on that host: gathers what the plan needs from n and the system, then
 * runs the two pure steps below. Errors: -EINVAL (bad host, port or a
 * newline in a setting), -ENOENT (no ssh client in PATH), -ENOMEM,
 * -errno. Any thread. */
kin_err kin__ssh_prepare(kin_node *n, const kin_spawn_opts *opts,
                         const kin__child_link *l, kin__ssh_plan *p);

/* What the plan is made from (all of it read from the node and the system
 * by kin__ssh_prepare; tests fill it in themselves). */
typedef struct kin__ssh_in {
    const kin_spawn_opts *opts;
    const char *endpoint;     /* the node's own endpoint */
    const char *far_endpoint; /* where remote children connect */
    const char *log_endpoint; /* the node's log endpoint, "" for none */
    bool is_master;           /* only a master's log endpoint goes as is */
    bool logs_curve;          /* the node's log link uses CURVE */
    uint64_t tag;             /* random: names the remote sockets */
    const char *ssh_path;     /* the ssh client */
    long long exe_size;       /* this executable's size (opts->program NULL) */
    int hb_ivl, hb_timeout;   /* the node's heartbeats (0: none) */
} kin__ssh_in;

/* How the child's links go: through ssh forwardings to remote socket
 * paths, or straight to a tcp endpoint it can reach as it is. */
typedef struct kin__ssh_route {
    char *up;  /* where the up forwarding leads here (ssh -R syntax) */
    char *log; /* the same for logs; NULL: no log forwarding */
    bool up_direct, log_direct; /* the child connects to the endpoint as is */
    bool tcp, log_tcp;          /* the forwarding leads to a tcp endpoint */
    char r_up[96], r_log[96];   /* the remote socket paths */
    char ep[128], lep[128];     /* ipc:// endpoints of those */
    kin__child_link link; /* the child's link, pointing into in and here */
} kin__ssh_route;

/* Pure: decides the route of child l from in. Errors: -EINVAL (bad host,
 * port or a newline in a setting; an endpoint ssh cannot forward), -ENOMEM.
 * Free with kin__ssh_route_free. */
kin_err kin__ssh_route_plan(const kin__ssh_in *in, const kin__child_link *l,
                            kin__ssh_route *r);
void kin__ssh_route_free(kin__ssh_route *r);

/* Pure: the ssh argv and the boot block (vars: the child's NAME=VALUE
 * settings, from kin__child_vars of r->link). Errors: -ENOMEM (p is empty
 * then). */
kin_err kin__ssh_plan_build(const kin__ssh_in *in, const kin__ssh_route *r,
                            char *const *vars, int nvars, kin__ssh_plan *p);

/* Starts a thread that writes p's boot block (and this executable, if
 * p->stream_self) into fd, ssh's stdin, then closes it. Takes fd and the
 * block (p->boot becomes NULL) in every case. Errors: -EAGAIN. */
kin_err kin__ssh_boot(kin__ssh_plan *p, int fd);

void kin__ssh_plan_free(kin__ssh_plan *p);

#endif
