/* A context: one kin_node per process. It owns the broker thread, the link to
 * its parent (a ZMQ DEALER whose routing id is the context id) and the ROUTER
 * its children connect to, routes messages through the tree, and delivers
 * messages for it to receivers by handle. */
#ifndef KIN_NODE_H
#define KIN_NODE_H

#include <stdbool.h>

#include <kin/defs.h>
#include <kin/err.h>
#include <kin/latch.h>
#include <kin/msg.h>

typedef struct kin_node kin_node;
typedef struct kin_receiver kin_receiver;

/* Who may send to a handle, judged by the message's auth_id. */
typedef enum kin_policy {
    KIN_POLICY_PARENT = 0, /* auth is this context or one of its ancestors */
    KIN_POLICY_ANY = 1,    /* anyone */
    KIN_POLICY_CHILD = 2,  /* an immediate child, sending for itself */
} kin_policy;

/* Context id of the master. */
#define KIN_MASTER_ID 0u
/* "No particular context" for a receiver's respondent. */
#define KIN_NO_CTX UINT32_MAX

typedef struct kin_node_opts {
    const char *name; /* shown by the monitor; default "master"/"ctx-ID" */
    /* Child contexts: the parent's endpoint, the parent's id and this
     * context's id. NULL endpoint: a master (id 0). */
    const char *parent_endpoint;
    uint32_t parent_id;
    uint32_t id;
    /* Where children connect: NULL binds ipc:// in the per-user runtime
     * directory (0700); "tcp://127.0.0.1:*" and the like on request. */
    const char *bind;
    /* Largest payload of a message (bytes; the envelope comes on top, see
     * KIN_MAX_MSG_DEFAULT in kin/msg.h); 0: KIN_MAX_MSG_DEFAULT. */
    size_t max_msg_size;
    /* Worker pool size: at most this many tasks run at once. One worker
     * starts with the node, the others when calls or tasks wait with every
     * worker busy. 0: 4. */
    int workers;
    int connect_timeout_ms; /* children: wait for the parent; 0: 30000 */
    size_t task_history;    /* terminated tasks kept for the monitor; 0: 1000 */
    /* Attach to parent_endpoint as an operator (what the kin command
     * does): the context carries the parent's authority for monitor
     * requests, binds nothing and has no children. ipc endpoints only. */
    bool operator_link;
    /* Where this context publishes log records (the forwarder's XSUB
     * endpoint). NULL: a master embeds its own forwarder; children are
     * told their tree's endpoint by their parent. "" turns this context's
     * logs off. See kin/logs.h. */
    const char *log_endpoint;
    /* Master with the embedded forwarder: also append every record at
     * log_file_level (0: KIN_LOG_INFO) and above to this file, one JSON
     * object per line (created 0600). NULL: no file. A full disk loses
     * records, counted and told in the file once it takes writes again
     * (kin_logsink_opts.path says how). */
    const char *log_file;
    int log_file_level;
    /* Rotate log_file by size: past log_file_max_bytes it moves to
     * LOG_FILE.1 and so on, keeping log_file_keep of them (0: 1), as
     * kin_logsink_opts.max_bytes and keep. 0: never rotate. */
    size_t log_file_max_bytes;
    int log_file_keep;
    /* The tree's CURVE key pair, "PUBLIC:SECRET" in Z85 (40 + 1 + 40
     * characters). Every tcp:// link uses it: a context bound on tcp is a
     * CURVE server that admits only peers proving they hold this key, and
     * a child whose parent_endpoint is tcp:// presents it. NULL: a master
     * generates one; a child started by kin_spawn gets its parent's
     * through the spawn channel (never argv), or, started by the master
     * over ssh or exec, a certificate of its own, "PUBLIC:SECRET:SERVER"
     * (SERVER: the tree's public key; docs/remote.md). Wrong format:
     * -EINVAL. */
    const char *curve_key;
    /* Keepalive on links to other hosts (tcp links, and children started
     * over ssh): a ZMQ heartbeat every heartbeat_ms (0: 1000), and a link
     * silent for heartbeat_timeout_ms (0: 5000) is dropped, which callers
     * waiting on a context behind it get as KIN_EPEERGONE (and a child,
     * losing its parent, exits). Local ipc links have none: a local child
     * paused in a debugger keeps its link. Children take their parent's
     * values. Negative: no heartbeats. */
    int heartbeat_ms;
    int heartbeat_timeout_ms;
    /* Master: also accept contexts joining from outside the tree
     * (processes kin did not spawn, see kin_node_opts.join) at this
     * endpoint: "ipc:///path" (the socket file's directory decides who
     * may join: keep it 0700 for the same user only) or "tcp://HOST:PORT"
     * (CURVE with the tree's key, curve_key). NULL: joins are refused.
     * A live master already serving joins at an ipc path: -EADDRINUSE. */
    const char *join_bind;
    /* Keys per host for tcp joins (kin/cert.h, docs/remote.md). Master
     * with a tcp join_bind: join_certs is a directory of the public
     * certificates of the joiners it admits (czmq's format; read again
     * when it changes), and join_cert the secret certificate its join
     * endpoint serves with. A joiner presenting a certificate not in the
     * directory is refused in the CURVE handshake; removing a file
     * revokes it: new connections with it are refused at once, and a
     * joiner linked with it is dropped within 1 s (the master checks its
     * joiners' certificates every second). Joiner over tcp: join_cert is
     * its own secret certificate, join_server_cert the master's public
     * one (instead of curve_key). Unreadable or not a certificate:
     * -ENOENT / -EINVAL, errbuf naming the file. */
    const char *join_certs;
    const char *join_cert;
    const char *join_server_cert;
    /* Join the running tree whose master accepts joins at this endpoint
     * (its join_bind), from a process kin did not spawn: the master gives
     * this context an id and it links as the master's child under `name`
     * (required, 1 to 63 bytes, and not the name of a live context of the
     * tree: KIN_EEXISTS, errbuf naming the holder). parent_endpoint, id
     * and parent_id must be unset. Over tcp it presents curve_key. No one
     * supervises its process: its exit (or kin_node_destroy) drops its
     * link, which removes its routes and service offers at once. When the
     * link drops (the master restarts, the network fails) the context
     * keeps running and links again by itself when the endpoint answers
     * (retries back off from 100 ms to 5 s), keeping its id, and offers
     * its services again; callers meanwhile get KIN_ENOROUTE or
     * KIN_EPEERGONE. Errors of kin_node_new: -ENOENT (no socket at an
     * ipc endpoint), KIN_ETIMEOUT (no answer in connect_timeout_ms),
     * KIN_EEXISTS, KIN_EBADVERSION, -EINVAL; errbuf says which. */
    const char *join;
    /* Optional: when kin_node_new (or kin_init) fails, a sentence for the
     * user saying why, e.g. which runtime directory was refused, what is
     * wrong with it and what to do ("remove it, or set XDG_RUNTIME_DIR");
     * for errors without more to say, kin_strerror's text. Emptied on
     * success. The diagnostics hook (kin/diag.h) gets the same sentence. */
    char *errbuf;
    size_t errbuf_size;
} kin_node_opts;

/* Creates a context and starts its broker thread. A master binds its ROUTER;
 * a child also connects to its parent and returns once the parent has
 * answered its HELLO. Errors: KIN_ETIMEOUT (parent silent for
 * connect_timeout_ms), -EINVAL (bad options), -errno from ZMQ or the runtime
 * directory: -EACCES when $XDG_RUNTIME_DIR/kin (or /tmp/kin-UID without
 * XDG_RUNTIME_DIR) exists but is not a directory, not ours or open to
 * others (not 0700); opts->errbuf then names the directory, what is wrong
 * and the fix. Any thread. */
KIN_EXPORT kin_err kin_node_new(kin_node **out, const kin_node_opts *opts);

/* Shuts the context down: child processes are stopped, running tasks are
 * cancelled and the worker pool joined (a task stuck in user code that
 * never reaches a kin blocking point or polls kin_task_cancelled() delays
 * this), then the broker gets a grace period of one second for pending
 * sends. Frees n, *n = NULL. NULL-safe. Receivers made on n must be
 * destroyed first. Not from a kin thread of the same node. */
KIN_EXPORT void kin_node_destroy(kin_node **n);

/* The context's id, and its name: opts.name, else "master" or "ctx-ID" (a
 * child started by kin_spawn gets its kin_spawn_opts.name). The name is
 * owned by n. Any thread. */
KIN_EXPORT uint32_t kin_node_id(const kin_node *n);
KIN_EXPORT const char *kin_node_name(const kin_node *n);

/* The endpoint children connect to (owned by n). */
KIN_EXPORT const char *kin_node_endpoint(const kin_node *n);

/* The endpoint joiners connect to: kin_node_opts.join_bind as bound (a tcp
 * port given as 0 or * is the one chosen); "" when n accepts no joins.
 * Owned by n. Any thread. */
KIN_EXPORT const char *kin_node_join_endpoint(const kin_node *n);

/* Allocates a context id unique in the whole tree (the master hands out
 * blocks). Errors: whatever the call to the master fails with. Any thread. */
KIN_EXPORT kin_err kin_node_alloc_id(kin_node *n, uint32_t *id);

/* Waits up to timeout_ms (KIN_FOREVER: no limit) until the child with
 * context id `id` has said HELLO (the link is up). Errors: KIN_ETIMEOUT.
 * Any thread. */
KIN_EXPORT kin_err kin_node_wait_child(kin_node *n, uint32_t id,
                                       int timeout_ms);

/* The id of the live context named `name` (kin_node_opts.name, a child's
 * kin_spawn_opts.name or its supervisor spec's name), asked of the master,
 * which learns every context's name when it links and forgets it with its
 * route: a supervised child restarted under a new id is found under its
 * name once the new one is up. When several live contexts share a name,
 * the one that linked last. Waits up to timeout_ms (0: answer now,
 * KIN_FOREVER: no limit) for such a context to appear. Errors: -ENOENT (none
 * within timeout_ms), -EINVAL (empty name or longer than 63 bytes),
 * KIN_EBUSY (256 lookups already waiting at the master), KIN_ETIMEOUT (the
 * master did not answer within timeout_ms + 5 s), call errors
 * (KIN_ENOROUTE ...). Any thread except n's broker. */
KIN_EXPORT kin_err kin_node_lookup(kin_node *n, const char *name, uint32_t *id,
                                   int timeout_ms);

/* Sends *m: src and auth are set to this context; dst, handle and reply_to
 * are the caller's. Takes ownership on success (*m = NULL). Errors:
 * KIN_ETOOBIG (payload over max_msg_size, or body over max_msg_size +
 * KIN_MSG_ENVELOPE_MAX: see KIN_MAX_MSG_DEFAULT), KIN_ESHUTDOWN. Delivery
 * failures come back later as dead messages to reply_to. Any thread. */
KIN_EXPORT kin_err kin_node_send(kin_node *n, kin_msg **m);

/* A receiver: a handle whose messages queue in a latch. handle 0 allocates a
 * dynamic handle (>= KIN_HANDLE_DYNAMIC). When respondent is a context id,
 * the receiver gets a dead message (KIN_EPEERGONE) as soon as that
 * context's route disappears. Errors: KIN_EEXISTS (handle taken), -EINVAL,
 * -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_receiver_new(kin_receiver **out, kin_node *n,
                                    uint32_t handle, kin_policy policy,
                                    uint32_t respondent);

/* Unregisters the handle (later messages to it get a dead reply "unknown
 * handle"), frees queued messages and the receiver; *r = NULL. NULL-safe.
 * No thread may be waiting on it. */
KIN_EXPORT void kin_receiver_destroy(kin_receiver **r);

KIN_EXPORT uint32_t kin_receiver_handle(const kin_receiver *r);

/* The receiver's latch, to add to a kin_select. Owned by r. */
KIN_EXPORT kin_latch *kin_receiver_latch(kin_receiver *r);

/* Next message, waiting up to timeout_ms. A dead message is consumed and
 * turned into its reason: KIN_EPEERGONE, KIN_ENOROUTE, KIN_ENOHANDLE,
 * KIN_EREFUSED, KIN_ETOOBIG...; latch errors as kin_latch_get. On success
 * the caller owns *out. Any thread. */
KIN_EXPORT kin_err kin_receiver_get(kin_receiver *r, int timeout_ms,
                                    kin_msg **out);

/* Turns a message taken from a receiver's latch (e.g. via kin_select_get)
 * into the receiver's result: a dead message is destroyed and its reason
 * returned, anything else is KIN_OK and left alone. */
KIN_EXPORT kin_err kin_msg_check_dead(kin_msg **m);

#endif
