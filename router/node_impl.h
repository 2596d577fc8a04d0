/* The inside of a kin_node, shared by the router's files. Fields marked
 * "broker" are touched only on the broker thread. */
#ifndef KIN_ROUTER_NODE_IMPL_H
#define KIN_ROUTER_NODE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include <kin/node.h>

#include "broker/broker.h"
#include "core/tasktab.h"
#include "core/u32map.h"
#include "router/curve.h"

#define KIN_MAX_DEPTH 64

typedef struct kin__handler kin__handler;

/* A broker-thread handler for a reserved handle; takes ownership of m. */
typedef void (*kin__handle_fn)(kin_node *n, kin_msg *m, void *arg);

struct kin__handler {
    atomic_int refs; /* 1 for the table, +1 per delivery in progress */
    uint32_t handle;
    kin_policy policy;
    uint32_t respondent;
    kin_latch *latch;  /* receivers */
    kin__handle_fn fn; /* or a broker-thread handler */
    void *arg;
};

typedef struct kin__child {
    uint32_t id;
    int fd;           /* the connection's fd on our ROUTER, -1 until known */
    bool is_operator; /* a kin command attached over ipc, not a context */
    bool far;         /* linked through down_far (another host) */
} kin__child;

struct kin_node {
    uint32_t id;
    uint32_t parent_id;
    bool has_parent;
    bool is_operator; /* attached by the kin command: no children */
    char name[64];
    size_t max_msg;
    int connect_timeout_ms;
    char endpoint[256];
    char parent_endpoint[256];
    char log_endpoint[256]; /* where log publishers connect ("" for none) */
    struct kin__logs *logs; /* the log publisher (logpub.c), or NULL */
    char ipc_path[200];     /* unlinked at destroy; empty for tcp */
    kin__broker *broker;
    kin__curve_key curve; /* the tree's key; empty when CURVE is missing */
    bool curve_up;        /* the parent link uses CURVE (tcp behind it) */
    bool log_curve;       /* so does the log publisher's */
    int hb_ivl_ms, hb_timeout_ms; /* the tree's setting; 0: no heartbeats */
    bool hb_up;         /* the link to the parent is remote: heartbeats on it */
    bool spawn_refused; /* runs as another user than its parent */

    /* broker */
    void *up;       /* DEALER to the parent, or NULL */
    void *down;     /* ROUTER children connect to */
    void *down_mon; /* PAIR receiving down's monitor events */
    void *up_mon;
    kin__watch *w_up, *w_down, *w_down_mon, *w_up_mon;
    /* A second ROUTER, made on first use, for children on other hosts
     * (reached through ssh's forwarding): it has heartbeats, which the
     * local links go without. far_path is unlinked at destroy. */
    void *down_far, *down_far_mon;
    kin__watch *w_down_far, *w_down_far_mon;
    char far_path[200];
    kin__u32map routes;    /* dst id -> next-hop child id + 1 */
    kin__u32map children;  /* child id -> kin__child */
    kin__u32map fds;       /* fd + 1 -> child id + 1 */
    kin__u32map stale_fds; /* fd + 1 -> DISCONNECTED events to ignore */
    bool parent_lost;

    /* Set once the parent's HELLO answer arrived (under mu). */
    uint32_t ancestors[KIN_MAX_DEPTH];
    int n_ancestors;

    pthread_mutex_t mu; /* guards ready, up_ready, id block */
    pthread_cond_t cond;
    kin__u32map ready; /* children whose HELLO arrived */
    bool up_ready;
    uint32_t id_next, id_end;

    pthread_mutex_t hmu; /* guards handles, next_handle */
    kin__u32map handles; /* handle -> kin__handler */
    uint32_t next_handle;

    /* The process layer's hooks: stop child processes before the node
     * goes; react to SHUTDOWN from the parent. */
    void (*before_destroy)(kin_node *n);
    void *procs; /* the process layer's list of children */
    void (*on_parent_lost)(kin_node *n, void *arg);
    void *on_parent_lost_arg;

    struct {
        atomic_uint_fast64_t forged, malformed, dead_sent, dropped, routed,
            delivered;
    } stats;

    struct kin__calls *calls; /* the RPC layer (call.c) */
    kin__tasktab tasks;       /* live and terminated tasks */
    struct kin__monitor *monitor;
    uint64_t started_ns;
    uint64_t serial; /* unique in the process, for adopt.c */
};

/* What kin_init needs in place before the child says HELLO. */
typedef struct kin__node_hooks {
    kin__handle_fn on_shutdown; /* SHUTDOWN from the parent */
    void (*on_parent_lost)(kin_node *n, void *arg);
    /* The parent endpoint (the log endpoint) is a local socket forwarded
     * by ssh to a tcp one: the link needs CURVE all the same. */
    bool curve_up, log_curve;
    /* The link to the parent leaves the host (ssh): keep it alive. */
    bool remote;
    /* Started as another user than its parent (sudo): refuse kin.spawn. */
    bool other_user;
} kin__node_hooks;

/* kin_node_new with hooks installed before the parent can reach us. */
kin_err kin__node_new_with(kin_node **out, const kin_node_opts *opts,
                           const kin__node_hooks *hooks);

/* Registers a handler (latch or fn). Errors: KIN_EEXISTS, -ENOMEM. */
kin_err kin__handles_add(kin_node *n, const kin__handler *h, uint32_t *handle);
void kin__handles_remove(kin_node *n, uint32_t handle);

/* Delivers m (dst == this node) to its handle, or answers with a dead
 * message. Takes ownership. Any thread. */
void kin__deliver(kin_node *n, kin_msg *m);

/* Puts a dead message for every receiver bound to one of ids. Any thread. */
void kin__handles_peer_gone(kin_node *n, const uint32_t *ids, size_t count);

/* Sends m from this context (src and auth set here) from any thread,
 * routing directly when on the broker thread. Takes ownership. */
void kin__reply_send(kin_node *n, kin_msg *m);

/* Routes m toward its dst (broker thread). Takes ownership. */
void kin__route(kin_node *n, kin_msg *m);

/* Answers m with a dead message (if it wants replies) and frees it. */
void kin__reply_dead(kin_node *n, kin_msg *m, kin_err reason, const char *text);

/* Broker thread: sets up sockets. Closing happens after the broker thread
 * has ended (its loop closed the watches). */
kin_err kin__router_open(kin_node *n);
void kin__router_close(kin_node *n);

/* The endpoint children on other hosts connect to (through ssh): a ROUTER
 * of its own, with heartbeats (unless they are off) and refusing
 * operators, bound on first use in the runtime directory; n's own endpoint
 * when n is bound on tcp (whose ROUTER has both already). Errors: -errno.
 * Any thread but n's broker. */
kin_err kin__router_far_endpoint(kin_node *n, char *out, size_t size);

/* Broker thread: a child's link is gone (socket disconnect or process
 * exit); idempotent. */
void kin__router_link_down(kin_node *n, uint32_t child);

/* The node and respondent a receiver was made with. */
void kin__receiver_target(kin_receiver *r, kin_node **n, uint32_t *respondent);
/* The function whose reply a call's receiver waits for ("" if none). */
const char *kin__receiver_fn(kin_receiver *r);
void kin__receiver_set_fn(kin_receiver *r, const char *fn);

/* Routes *m as is, src and auth included (tests forge messages with it).
 * Takes ownership on success. Any thread. */
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

/* Whether m's authority passes policy here (handles and exported
 * functions share the rules). Any thread. */
bool kin__policy_allows(kin_node *n, kin_policy policy, const kin_msg *m);

/* Whether id is an immediate child of this node (its link is up). Any
 * thread. */
bool kin__is_child(kin_node *n, uint32_t id);

/* Whether id is this node, or an ancestor of it. */
bool kin__is_ancestor_or_self(kin_node *n, uint32_t id);

#endif
