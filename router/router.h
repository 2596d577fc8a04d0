/* The router's interface to the layers above it (logs, process, monitor,
 * context): functions only; the node's inside (node_impl.h) is the
 * router's own. An upper layer keeps its per-node state in a slot of the
 * node (kin__node_attach) and hears of child links through a hook
 * (kin__node_on_link); the router knows nothing of what is above it. */
#ifndef KIN_ROUTER_ROUTER_H
#define KIN_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/node.h>

#include "broker/broker.h"
#include "core/tasktab.h"
#include "router/curve.h"

typedef struct kin__handler kin__handler;

/* A broker-thread handler for a reserved handle; takes ownership of m. */
typedef void (*kin__handle_fn)(kin_node *n, kin_msg *m, void *arg);

struct kin__handler {
    uint32_t handle;
    kin_policy policy;
    uint32_t respondent;
    kin_latch *latch;  /* receivers */
    kin__handle_fn fn; /* or a broker-thread handler */
    void *arg;
    /* Its one answer has come (a service call's receiver after a retry or
     * a failure): anything more is dropped (under hmu). */
    bool sealed;
};

/* --- lifecycle (context/ assembles a node from these) -------------------- */

/* What the assembly sets up before the parent can reach the node. */
typedef struct kin__router_hooks {
    kin__handle_fn on_shutdown; /* SHUTDOWN from the parent */
    /* Broker thread: the link to the parent is lost. */
    void (*on_parent_lost)(kin_node *n, void *arg);
    void *on_parent_lost_arg;
    /* The parent endpoint is a local socket forwarded by ssh to a tcp
     * one: the link needs CURVE all the same. */
    bool curve_up;
    /* The link to the parent leaves the host (ssh): keep it alive. */
    bool remote;
} kin__router_hooks;

/* Makes the node: its ids, endpoint, system handles, call workers and
 * broker thread; nothing is bound or connected yet. hooks may be NULL.
 * Errors: as kin_node_new; a refused runtime directory or a bad curve_key
 * is explained in opts->errbuf. On error *out is NULL and nothing is
 * left. */
kin_err kin__router_new(kin_node **out, const kin_node_opts *opts,
                        const kin__router_hooks *hooks);
/* Binds and connects on the broker thread and, with a parent, waits for
 * its HELLO answer (connect_timeout_ms): KIN_ETIMEOUT, -errno. A HELLO
 * timeout is explained in errbuf (may be NULL). */
kin_err kin__router_start(kin_node *n, char *errbuf, size_t errbuf_size);
/* Stops taking calls, cancels running ones and joins the workers. */
void kin__router_stop_calls(kin_node *n);
/* Ends the broker thread and closes the sockets: no broker-thread work
 * runs after it. */
void kin__router_stop(kin_node *n);
/* Frees the node; every layer must have detached. */
void kin__router_free(kin_node *n);

/* --- the slots upper layers keep their state in --------------------------- */

/* A layer's key: the address of a static object of that layer. */
typedef struct kin__layer {
    const char *name;
} kin__layer;

#define KIN__LAYERS_MAX 8

/* Attaches state under key (assembly only: before kin__router_start).
 * Errors: KIN_EEXISTS (key attached already), -ENOMEM (no slot left). */
kin_err kin__node_attach(kin_node *n, const kin__layer *key, void *state);
/* The state attached under key, NULL when none. Any thread. */
void *kin__node_layer(const kin_node *n, const kin__layer *key);
/* Clears key's slot (its owner frees the state). Any thread; the layer
 * itself keeps readers away from the state it frees. */
void kin__node_detach(kin_node *n, const kin__layer *key);

/* Broker thread, no router lock held: a child's HELLO arrived (up) or its
 * link went down. kin__node_child_linked already answers accordingly. */
typedef void (*kin__link_fn)(void *arg, uint32_t child, bool up);
/* Adds a hook (assembly only). Errors: -ENOMEM (no slot left). */
kin_err kin__node_on_link(kin_node *n, kin__link_fn fn, void *arg);

/* --- joins, for the audit trail ------------------------------------------ */

/* What happened at a master's join endpoint (docs/logs.md, "Event
 * records": the process layer makes the join.* records of them). */
typedef enum kin__join_what {
    KIN__JOIN_ACCEPT,  /* a joiner's HELLO: it is a context of the tree */
    KIN__JOIN_LEAVE,   /* a joiner's link went (how says why) */
    KIN__JOIN_REFUSED, /* a join request or a connection refused */
    KIN__JOIN_REVOKED, /* a joiner's certificate left the allowed store */
} kin__join_what;

typedef struct kin__join_event {
    kin__join_what what;
    uint32_t id;           /* the joiner's context id; 0 when it has none */
    const char *name;      /* its name (refused: the name asked); "" */
    const char *transport; /* "ipc" or "tcp" */
    int pid, uid;          /* the peer process's (SO_PEERCRED, ipc); -1 */
    const char *address;   /* a tcp peer's address, "HOST:PORT"; "" */
    const char *key;       /* its certificate's public key (Z85); "" */
    const char *cert_host, *cert_role; /* that certificate's metadata; "" */
    /* leave: "left" (kin_node_destroy), "link_lost" (exit, kill, a
     * network failure), "revoked"; refused: "unknown_certificate",
     * "name_taken", "protocol_version", "bad_name", "busy", "bad_id". */
    const char *how;
    const char *error;      /* refused: the sentence the peer was told; "" */
    unsigned their_version; /* refused for its version: the peer's; 0 */
    bool rejoin; /* accept: it came back with an id it had (not one this
                  * master has just given it) */
} kin__join_event;

/* The broker thread (the ZAP handler's for "unknown_certificate"), no
 * router lock held. */
typedef void (*kin__join_fn)(void *arg, const kin__join_event *ev);
/* Sets the hook (assembly only; one). Errors: KIN_EEXISTS (set already). */
kin_err kin__node_on_join(kin_node *n, kin__join_fn fn, void *arg);

/* --- what the node is ----------------------------------------------------- */

uint32_t kin__node_parent_id(const kin_node *n);
bool kin__node_has_parent(const kin_node *n);
/* Attached by the kin command (an operator link): no children. */
bool kin__node_is_operator(const kin_node *n);
size_t kin__node_max_msg(const kin_node *n);
/* kin_node_opts.connect_timeout_ms as in effect (default applied). */
int kin__node_connect_timeout(const kin_node *n);
/* The socket file n's ipc endpoint binds ("" when n binds tcp). */
const char *kin__node_ipc_path(const kin_node *n);
/* The tree's CURVE key (pub[0] == 0 when CURVE is missing). */
const kin__curve_key *kin__node_curve(const kin_node *n);
/* The tree's heartbeat interval and timeout in ms; 0 and 0 when off. */
void kin__node_heartbeat(const kin_node *n, int *ivl_ms, int *timeout_ms);
uint64_t kin__node_started_ns(const kin_node *n);
kin__broker *kin__node_broker(const kin_node *n);
/* The node's task table (live and terminated tasks). */
kin__tasktab *kin__node_tasks(kin_node *n);
/* Broker thread: calls fn for every child context linked to n (operator
 * links left out). */
void kin__node_each_child(kin_node *n, void (*fn)(void *arg, uint32_t id),
                          void *arg);
/* Joined a running tree from outside (kin_node_opts.join). */
bool kin__node_joined(const kin_node *n);
/* The tree's log endpoint: what a master's logs layer set (and the join
 * answer passes on to joiners), or what a joiner was told; "" when none.
 * Copied into out (size bytes). Any thread. */
void kin__node_log_endpoint(kin_node *n, char *out, size_t size);
void kin__node_set_log_endpoint(kin_node *n, const char *endpoint);
/* The worker pool's size. */
int kin__node_workers(kin_node *n);

/* Registers a handler (latch or fn). Errors: KIN_EEXISTS, -ENOMEM. */
kin_err kin__handles_add(kin_node *n, const kin__handler *h, uint32_t *handle);
void kin__handles_remove(kin_node *n, uint32_t handle);
/* The receiver of handle has had its answer: later messages to it are
 * dropped. No-op when it is gone. Any thread. */
void kin__handles_seal(kin_node *n, uint32_t handle);

/* Delivers m (dst == this node) to its handle, or answers with a dead
 * message. Takes ownership. Any thread. */
void kin__deliver(kin_node *n, kin_msg *m);

/* kin__deliver without the service resolver's look at m (for the reply
 * the resolver itself hands on). */
void kin__deliver_handle(kin_node *n, kin_msg *m);

/* Puts a dead message for every receiver bound to one of ids. Any thread. */
void kin__handles_peer_gone(kin_node *n, const uint32_t *ids, size_t count);

/* Sends m from this context (src and auth set here) from any thread,
 * routing directly when on the broker thread. Takes ownership. */
void kin__reply_send(kin_node *n, kin_msg *m);

/* Routes m toward its dst (broker thread). Takes ownership. */
void kin__route(kin_node *n, kin_msg *m);

/* Sends m (src and auth set, dst not this context) on the up or down
 * socket from the calling thread, under the node's socket lock, when its
 * route is a local child or the parent: then takes ownership and returns
 * true. False (m untouched) when the broker must route it: no such route,
 * a child on the far or join ROUTER, the router closed or stopping, or the
 * send failed (the broker answers that with a dead message). When the
 * socket holds input after the send (which may have consumed its ZMQ_FD
 * edge), the broker is told to drain it. Any thread but the broker's. */
bool kin__route_direct(kin_node *n, kin_msg *m);
/* kin__route_direct to a context with a route down only (never the
 * parent): false also when m->dst has no route here. */
bool kin__route_direct_down(kin_node *n, kin_msg *m);

/* Answers m with a dead message (if it wants replies) and frees it. */
void kin__reply_dead(kin_node *n, kin_msg *m, kin_err reason, const char *text);

/* The endpoint children on other hosts connect to (through ssh): a ROUTER
 * of its own, with heartbeats (unless they are off) and refusing
 * operators, bound on first use in the runtime directory; n's own endpoint
 * when n is bound on tcp (whose ROUTER has both already). Errors: -errno.
 * Any thread but n's broker. */
kin_err kin__router_far_endpoint(kin_node *n, char *out, size_t size);

/* Broker thread: a child's link is gone (socket disconnect or process
 * exit); idempotent. */
void kin__router_link_down(kin_node *n, uint32_t child);
/* Broker: child's process ended (reaped). Its link goes down when its
 * connection's DISCONNECTED event comes, after what it sent last was read
 * from the data socket (a reply, a refused call: else counted as lost
 * with the child), or 250 ms later at the latest. */
void kin__router_child_exited(kin_node *n, uint32_t child);

/* The node and respondent a receiver was made with. */
void kin__receiver_target(kin_receiver *r, kin_node **n, uint32_t *respondent);
/* The function whose reply a call's receiver waits for ("" if none). */
const char *kin__receiver_fn(kin_receiver *r);
void kin__receiver_set_fn(kin_receiver *r, const char *fn);

/* Routes *m as is, src and auth included (tests forge messages with it),
 * in order with the calling thread's kin_node_send to the same
 * destination. Takes ownership on success. Any thread. */
kin_err kin__node_send_raw(kin_node *n, kin_msg **m);

/* Adopts the calling application thread as a task of n (once) and makes it
 * the thread's current task until kin__adopt_end; a thread that already
 * runs a task keeps it. May return NULL (out of memory). Any thread. */
kin_task *kin__adopt_begin(kin_node *n);
void kin__adopt_end(kin_task *t);
/* kin_node_new / kin_node_destroy: n's adopted records live (and may be
 * ended) from the first call until the second, which happens before n's
 * task table goes. */
void kin__adopt_node_new(kin_node *n);
void kin__adopt_node_gone(kin_node *n);

/* The per-user runtime directory ($XDG_RUNTIME_DIR/kin or /tmp/kin-UID),
 * created 0700 if missing. Errors: -EACCES when it is not ours or not
 * 0700, -errno. */
kin_err kin__runtime_dir(char *out, size_t size);

/* Removes the socket files of dead contexts from the runtime directory:
 * those whose process no longer exists or is a zombie, and on which
 * nothing listens (what a master does when it starts). One readdir;
 * returns how many files went. Files of a pid for which live(pid, arg)
 * says true are left without a look at the process (a parent's own
 * unreaped children: their files go by name at the reap); live may be
 * NULL. Any thread. */
int kin__runtime_sweep(bool (*live)(int pid, void *arg), void *arg);

/* Whether m's authority passes policy here (handles and exported
 * functions share the rules). Any thread. */
bool kin__policy_allows(kin_node *n, kin_policy policy, const kin_msg *m);

/* Whether id is an immediate child of this node (its link is up). Any
 * thread. */
bool kin__node_child_linked(kin_node *n, uint32_t id);

/* Whether child id said HELLO in another protocol version (it was told
 * so at once, and not linked); why (may be NULL) gets the sentence both
 * sides show, naming both versions. Any thread. */
bool kin__node_child_bad_version(kin_node *n, uint32_t id, char *why,
                                 size_t why_size);

/* Whether id is this node, or an ancestor of it. */
bool kin__is_ancestor_or_self(kin_node *n, uint32_t id);

/* What happened to the messages a node saw (router/node.c counts them);
 * tests read them. */
typedef struct kin_node_stats {
    uint64_t forged;    /* dropped: failed the reverse-path check */
    uint64_t malformed; /* dropped: bad frames (magic, version, sizes) */
    uint64_t dead_sent; /* dead replies generated here */
    uint64_t dropped;   /* undeliverable and no reply_to to tell */
    uint64_t routed;    /* messages forwarded to another link */
    uint64_t delivered; /* messages delivered to local handles */
} kin_node_stats;

/* A snapshot of n's counters. Any thread. */
void kin_node_stats_get(kin_node *n, kin_node_stats *out);

/* A failed call's stack in its error reply: at most this many frames from
 * where kin_call_fail was called, at most this many bytes of text. */
#define KIN__ERRSTACK_FRAMES 24
#define KIN__ERRSTACK_MAX 2048
/* Writes the text of a failed call's stack into out (NUL-terminated, at
 * most cap bytes): the frames pcs[0..n) (innermost first) down to the
 * served function fn, or, with n == 0, fn alone. Returns the text's length
 * (0: nothing to say). Runs on the worker that ran the call. */
typedef size_t (*kin__errstack_fmt)(void *const *pcs, int n, void *fn,
                                    char *out, size_t cap);
/* Sets the formatter used for every error reply of this process; NULL
 * (the default) sends none. Any thread. */
void kin__calls_set_stack_fmt(kin__errstack_fmt fmt);

#endif
