/* The inside of a kin_node, shared by the router's files. Fields marked
 * "broker" are touched only on the broker thread. */
#ifndef KIN_ROUTER_NODE_IMPL_H
#define KIN_ROUTER_NODE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include <uv.h>

#include <kin/node.h>

#include "core/u32map.h"
#include "router/join.h"
#include "router/router.h"

#define KIN_MAX_DEPTH 64

typedef struct kin__child {
    uint32_t id;
    int fd;           /* the connection's fd on our ROUTER, -1 until known */
    bool is_operator; /* a kin command attached over ipc, not a context */
    bool far;         /* linked through down_far (another host) */
    bool joined;      /* linked through down_join: it joined from outside */
    bool revoked;     /* its certificate went: its connection is shut */
    char key[KIN__KEY_LEN]; /* a joiner's certificate key (Z85), or "" */
    kin__join_peer peer;    /* a joiner's process and certificate */
} kin__child;

struct kin_node {
    uint32_t id;
    uint32_t parent_id;
    bool has_parent;
    bool is_operator; /* attached by the kin command: no children */
    /* This context joined a running tree (kin_node_opts.join): its link
     * comes back by itself when it drops. */
    bool joined;
    char name[64];
    size_t max_msg;
    int connect_timeout_ms;
    char endpoint[256];
    char parent_endpoint[256];
    char ipc_path[200]; /* unlinked at destroy; empty for tcp */
    kin__broker *broker;
    kin__curve_key curve; /* the tree's key; empty when CURVE is missing */
    bool curve_up;        /* the parent link uses CURVE (tcp behind it) */
    int hb_ivl_ms, hb_timeout_ms; /* the tree's setting; 0: no heartbeats */
    bool hb_up; /* the link to the parent is remote: heartbeats on it */

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
    /* A master's ROUTER for processes joining from outside
     * (kin_node_opts.join_bind); empty join_bind: none. */
    char join_bind[256];
    void *down_join, *down_join_mon;
    bool join_bound; /* bound here: an ipc socket file to remove */
    kin__watch *w_down_join, *w_down_join_mon;
    struct kin__joins *joins; /* join.c, the master's pending joins */
    /* A master admitting tcp joiners by certificate: the allowed store,
     * the key its join endpoint serves with, and the timer that drops
     * joiners whose certificate went (broker). */
    struct kin__certs *join_store;
    kin__curve_key join_key;
    uv_timer_t revoke_timer;
    /* A joiner by certificate: the master's public key and its own pair
     * (join_server empty: the tree key, curve). */
    char join_server[KIN__KEY_LEN];
    kin__curve_key join_own;
    /* A joiner refused in the handshake: libzmq gives up on that
     * connection, so this timer connects again (broker). */
    uv_timer_t retry_timer;
    bool retry_inited;
    /* Children whose process ended before their connection's DISCONNECTED
     * event: child id -> when their link goes down anyway (uv_now ms), and
     * the timer that sees to it (broker). */
    kin__u32map exited;
    uv_timer_t exit_timer;
    bool exit_inited;
    int retry_ms; /* the next pause: 1 s doubling up to 5 s */
    /* The tree's log endpoint (under mu): a master's, as its logs layer
     * tells it (kin__node_set_log_endpoint); a joiner's, from the join
     * answer. Empty: none known. */
    char tree_log[256];
    kin__u32map routes;   /* dst id -> next-hop child id + 1 */
    kin__u32map children; /* child id -> kin__child */
    kin__u32map fds;      /* fd + 1 -> child id + 1 */
    /* Events of the down monitors read ahead of their turn (router.c's
     * settle_fd), handled in order before the monitors are read again. */
    struct kin__down_ev *evq;
    size_t evq_head, evq_len, evq_cap;
    bool evq_deferred;
    bool parent_lost;

    /* Direct sends (kin__route_direct): any thread may send on up and down,
     * one at a time. smu serializes every use of those two sockets (the
     * broker's receives and sends included) and guards the broker's writes
     * of routes, parent_lost, down_far and direct, which other threads read
     * under it (the broker reads them without: it is the only writer). */
    pthread_mutex_t smu;
    bool direct; /* open for direct sends: the router is up, not closed */
    /* A drain of up [1] or down [0] is queued on the broker and has not
     * started: a direct send that leaves input unread need not queue
     * another (route_direct). */
    atomic_bool drain_due[2];
    /* Callers that read their own reply (lead.c), under smu: whether down
     * [0] or up [1] is lent to one, that thread's wake eventfd, and the
     * messages it read that were not its reply, oldest first, which the
     * broker takes before the socket's (on_down, on_up). lead_cv: a
     * socket given back (kin__lead_stop waits for that). */
    bool leading[2];
    bool serving; /* up is lent to an idle worker (lead.c kin__lead_serve) */
    /* An idle worker read a message that was not a call for it: workers
     * do not read up until the broker next hands a CALL to the pool. */
    atomic_bool serve_miss;
    bool lead_off; /* no more: the node is being destroyed */
    /* The broker took a message from down [0] / up [1] and has not
     * finished handling it (set under smu, cleared after): a reader keeps
     * its reply behind it. */
    atomic_bool handling[2];
    /* Broker only: the CALL or SVC_RUN for this context it took from down
     * [handling_k 0] or up [1] and is routing (kin__lead_route). */
    const kin_msg *handling_call;
    int handling_k;
    /* Receivers of calls (and service calls) not yet destroyed: a caller
     * reads its own reply only while its call is the one out, when every
     * message it reads is most likely its reply (a pipelining caller's
     * replies are better read by the broker, beside it). */
    atomic_int calls_out;
    int lead_fd[2];
    struct kin__held *held[2], *held_tail[2];
    pthread_cond_t lead_cv;

    /* Set once the parent's HELLO answer arrived (under mu). */
    uint32_t ancestors[KIN_MAX_DEPTH];
    int n_ancestors;

    pthread_mutex_t mu; /* guards ready, up_ready, id block, leave_acked */
    pthread_cond_t cond;
    kin__u32map ready; /* children whose HELLO arrived */
    /* child id -> its protocol version + 1: its HELLO spoke another
     * version, and it was told so (kin__node_child_bad_version) */
    kin__u32map bad_version;
    bool up_ready;
    /* The parent refused this context's HELLO (another protocol
     * version): the error and the parent's sentence. */
    kin_err up_err;
    char up_why[256];
    uint32_t id_next, id_end;
    bool leave_acked; /* a joiner: the master heard it leave */

    pthread_mutex_t hmu; /* guards handles, next_handle */
    kin__u32map handles; /* handle -> kin__handler */
    uint32_t next_handle;

    /* The layers above (kin__node_attach, kin__node_on_link): set while
     * the node is assembled, before the router starts. */
    struct {
        const kin__layer *key;
        _Atomic(void *) state;
    } layers[KIN__LAYERS_MAX];
    struct {
        kin__link_fn fn;
        void *arg;
    } link_hooks[4];
    kin__join_fn join_hook; /* kin__node_on_join */
    void *join_hook_arg;
    void (*on_parent_lost)(kin_node *n, void *arg);
    void *on_parent_lost_arg;

    struct {
        atomic_uint_fast64_t forged, malformed, dead_sent, dropped, routed,
            delivered;
    } stats;

    struct kin__calls *calls;        /* the RPC layer (call.c) */
    struct kin__services *svc;       /* services (service.c) */
    struct kin__names *names;        /* context names (names.c, the master) */
    struct kin__fn_metrics *metrics; /* per-function calls (metrics.c) */
    kin__tasktab tasks;              /* live and terminated tasks */
    uint64_t started_ns;
    uint64_t serial; /* unique in the process, for adopt.c */
};

/* Broker thread: sets up sockets. Closing happens after the broker thread
 * has ended (its loop closed the watches). */
kin_err kin__router_open(kin_node *n);
void kin__router_close(kin_node *n);

#endif
