/* The process layer's per-node state, shared by spawn.c, emergency.c,
 * via.c and supervisor.c: the node's child processes, its emergency-stop
 * latch, and the watchers (supervisors) that must hear about a trip or a
 * node going. It is attached to the node by the context assembly
 * (kin__procs_attach) and has a lock of its own. */
#ifndef KIN_PROCESS_PROCS_H
#define KIN_PROCESS_PROCS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <kin/process.h>

typedef struct kin__watcher kin__watcher;

/* Someone to tell about the node's life: on_trip runs on the broker thread
 * under the layer's mu (it may only take its own leaf lock and signal);
 * quiesce runs on the thread destroying the node, without locks held, and
 * must stop the watcher's children and threads. */
struct kin__watcher {
    void (*on_trip)(void *arg);
    void (*quiesce)(void *arg);
    void *arg;
    kin__watcher *next;
};

typedef struct kin__procs {
    /* Guards everything below and the kin_child fields marked "under the
     * layer's mu"; cond signals their changes and child HELLOs. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    kin_node *node;
    /* Runs as another user than its parent: refuses kin.spawn. */
    bool spawn_refused;
    bool stopped;        /* kin__procs_stop ran: no more trips */
    kin_child *children; /* newest first */
    kin__watcher *watchers;
    bool tripped;
    uint32_t origin; /* who tripped it: a child's id, or the node's own */
    /* init.c: a serving child turns a trip into its own exit. */
    void (*on_trip_exit)(void);
    struct kin__zygote *zygote; /* zygote.c's, for kin_spawn_opts.fork */
    /* runtime_sweep.c's sweeps after reaps (broker thread only). */
    struct kin__sweeper *sweeper;
    /* Children its supervisors restarted (not under mu). */
    atomic_uint_fast64_t restarts;
} kin__procs;

/* Attaches the process layer to n (the context assembly, before the
 * router starts); other_user: n runs as another user than its parent and
 * refuses kin.spawn. Also exports kin.spawn, kin.child_wait and
 * kin.child_stop (once per process). Errors: -ENOMEM. */
kin_err kin__procs_attach(kin_node *n, bool other_user);
/* Quiesces the supervisors (they stop their own children) and stops every
 * child left, newest first; trips are ignored from then on. The kin_child
 * objects stay their owners'. Before the router stops its calls. */
void kin__procs_stop(kin_node *n);
/* Frees the state, once the router has stopped (no broker thread). */
void kin__procs_free(kin_node *n);

/* The node's process state; NULL when the layer is not attached. Any
 * thread. */
kin__procs *kin__procs_of(kin_node *n);

/* Children n's supervisors have restarted so far (0 when the layer is
 * not attached). Any thread. */
uint64_t kin__procs_restarts(kin_node *n);

/* via.c: exports kin.spawn, kin.child_wait and kin.child_stop (once). */
void kin__via_export(void);
/* file_push.c: exports kin.file_open, _write, _close and _abort (once);
 * kin__push_forget removes n's unfinished transfers (their temporary
 * files), from kin__procs_stop. */
void kin__push_export(void);
void kin__push_forget(kin_node *n);

/* Registers / unregisters a watcher. If the node has already tripped,
 * on_trip runs at once on the calling thread. Any thread. */
kin_err kin__procs_watch(kin_node *n, kin__watcher *w);
void kin__procs_unwatch(kin_node *n, kin__watcher *w);

/* Sets the hook a serving child (kin_init) uses to exit on a trip; runs it
 * at once if the node has already tripped. */
void kin__procs_on_trip_exit(kin_node *n, void (*fn)(void));

/* How a child reaches its parent: what kin__child_vars writes. */
typedef struct kin__child_link {
    uint32_t id;
    const char *name;
    int workers;              /* 0: the child's default */
    const char *endpoint;     /* the parent's endpoint as the child sees it */
    const char *log_endpoint; /* "" for none */
    bool curve_up;            /* endpoint is forwarded to a tcp one */
    bool log_curve;           /* log_endpoint is forwarded to a tcp one */
    bool remote;              /* on another host: heartbeats on its link */
    /* Runs as another user (sudo): it must not serve kin.spawn, which
     * would let its parent run any program as that user. */
    bool other_user;
    /* Started through an exec channel (exec_channel.c): its links ride
     * the channel's stdio, through the relay in the child. */
    bool stdio;
    /* The certificate issued to it (router/child_certs.h), which it gets
     * instead of this context's key; NULL: this context's key. */
    const struct kin__curve_key *cert;
} kin__child_link;

/* The environment a parent gives a child and kin_init reads: the one
 * spelling of each name. Every name starts with KIN__ENV_PREFIX, which a
 * parent strips from its own environment before adding a child's. */
#define KIN__ENV_PREFIX "KIN_CHILD_"
#define KIN__ENV_ENDPOINT KIN__ENV_PREFIX "ENDPOINT"   /* the parent's */
#define KIN__ENV_PARENT_ID KIN__ENV_PREFIX "PARENT_ID" /* decimal */
#define KIN__ENV_ID KIN__ENV_PREFIX "ID"               /* the child's id */
#define KIN__ENV_NAME KIN__ENV_PREFIX "NAME"
#define KIN__ENV_MAX_MSG KIN__ENV_PREFIX "MAX_MSG" /* bytes */
#define KIN__ENV_WORKERS KIN__ENV_PREFIX "WORKERS"
#define KIN__ENV_HEARTBEAT KIN__ENV_PREFIX "HEARTBEAT" /* "IVL,TIMEOUT" ms */
#define KIN__ENV_LOG_ENDPOINT KIN__ENV_PREFIX "LOG_ENDPOINT"
#define KIN__ENV_CURVE KIN__ENV_PREFIX "CURVE"         /* the tree's key pair */
#define KIN__ENV_CURVE_UP KIN__ENV_PREFIX "CURVE_UP"   /* set: "1" */
#define KIN__ENV_LOG_CURVE KIN__ENV_PREFIX "LOG_CURVE" /* set: "1" */
#define KIN__ENV_REMOTE KIN__ENV_PREFIX "REMOTE"       /* set: "1" */
#define KIN__ENV_OTHER_USER KIN__ENV_PREFIX "OTHER_USER" /* set: "1" */
#define KIN__ENV_STDIO KIN__ENV_PREFIX "STDIO"           /* set: "1" */
/* set: "1": a forked child that forks children of its own
 * (kin_spawn_opts.forks_children): it forks its node's zygote at its start
 * (process/zygote.c) */
#define KIN__ENV_FORKS KIN__ENV_PREFIX "FORKS"
/* Set by the exec factory's bootstrap: its private directory. */
#define KIN__ENV_STDIO_DIR KIN__ENV_PREFIX "STDIO_DIR"
/* Where a context runs, when an exec channel took it there ("podman:web");
 * not KIN_CHILD_-prefixed, so the contexts it starts there inherit it. */
#define KIN__ENV_WHERE "KIN_WHERE"

#define KIN__CHILD_VARS_MAX 16

/* The KIN_CHILD_* settings a child reads in kin_init ("NAME=VALUE",
 * malloc'd, the tree's CURVE key among them), into out. Returns how many,
 * -1 when out of memory. Any thread. */
int kin__child_vars(kin_node *n, const kin__child_link *l,
                    char *out[KIN__CHILD_VARS_MAX]);

/* via.c: kin_spawn through context opts->via, and the proxy's stop and
 * wait (calls to kin.child_stop / kin.child_wait there). */
kin_err kin__via_spawn(kin_node *n, const kin_spawn_opts *opts, uint32_t *id,
                       pid_t *pid);
kin_err kin__via_wait(kin_node *n, uint32_t via, uint32_t id, int timeout_ms,
                      int *status);
kin_err kin__via_stop(kin_node *n, uint32_t via, uint32_t id,
                      int stop_timeout_ms, int *status);

#endif
