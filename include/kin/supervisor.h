/* Supervisors, after Erlang/OTP: a supervisor starts child contexts from
 * specs in order, restarts them by their restart type and its strategy,
 * gives up when restarts come too often, and stops them in reverse order.
 *
 *   kin_supervisor *s;
 *   kin_supervisor_opts o = {.strategy = KIN_ONE_FOR_ONE,
 *                            .intensity = 3, .period_ms = 5000};
 *   kin_supervisor_new(&s, node, &o);
 *   kin_child_spec db = {.name = "db", .restart = KIN_RESTART_PERMANENT};
 *   kin_supervisor_add(s, &db);
 *   kin_err e = kin_supervisor_start(s);
 *   ...
 *   kin_child_info info;
 *   kin_supervisor_child(s, "db", &info);  (info.id to call it, info.pid)
 *   ...
 *   kin_supervisor_destroy(&s);            (stops the children)
 *
 * All starting, stopping and restarting happens on the supervisor's own
 * thread; the exit of a child reaches it through a quick notification from
 * the node's broker thread. A child exiting with KIN_EXIT_EMERGENCY is
 * never restarted: it trips the node's emergency stop (kin/process.h) and
 * every supervisor of the node stops its children for good. */
#ifndef KIN_SUPERVISOR_H
#define KIN_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <kin/defs.h>
#include <kin/err.h>
#include <kin/node.h>
#include <kin/process.h>

typedef struct kin_supervisor kin_supervisor;

/* When a child that exited is started again. */
typedef enum kin_restart {
    KIN_RESTART_PERMANENT = 0, /* always */
    KIN_RESTART_TRANSIENT = 1, /* only after an abnormal exit: a signal or
                                  a non-zero exit code */
    KIN_RESTART_TEMPORARY = 2, /* never (not even with its siblings) */
} kin_restart;

/* Which children a restart takes along. */
typedef enum kin_strategy {
    KIN_ONE_FOR_ONE = 0,  /* only the child that exited */
    KIN_ONE_FOR_ALL = 1,  /* all children: the others are stopped in
                             reverse order, then all start in order */
    KIN_REST_FOR_ONE = 2, /* the child and those added after it */
} kin_strategy;

typedef enum kin_supervisor_state {
    KIN_SUP_IDLE = 0,      /* never started */
    KIN_SUP_RUNNING = 1,   /* started, supervising */
    KIN_SUP_STOPPED = 2,   /* kin_supervisor_stop, or a start that failed */
    KIN_SUP_GAVE_UP = 3,   /* restart intensity exceeded: children stopped */
    KIN_SUP_EMERGENCY = 4, /* emergency stop: children stopped, for good */
} kin_supervisor_state;

typedef enum kin_child_state {
    KIN_CHILD_IDLE = 0,       /* not started yet */
    KIN_CHILD_RUNNING = 1,    /* its process runs */
    KIN_CHILD_RESTARTING = 2, /* exited (or stopped with a sibling) and
                                 waiting out its backoff */
    KIN_CHILD_EXITED = 3,     /* exited and not restarted (its restart
                                 type said so, or an emergency) */
    KIN_CHILD_STOPPED = 4,    /* stopped by the supervisor */
} kin_child_state;

/* How to start one child. The supervisor copies everything it needs
 * (strings, argv); the caller keeps ownership of the spec. */
typedef struct kin_child_spec {
    const char *name; /* unique in the supervisor, 1..63 bytes; also the
                         context's name unless spawn.name is set */
    /* How to start it, as for kin_spawn (argv, cwd, env and rlimits are
     * copied). errbuf and on_exit are ignored (the supervisor keeps the
     * last start error in kin_child_info). */
    kin_spawn_opts spawn;
    kin_restart restart;
    /* How long a stop waits before SIGKILL; 0: spawn.stop_timeout_ms, and
     * if that is 0 too, 2000. */
    int shutdown_timeout_ms;
    /* Services the child provides (NULL-terminated, up to
     * KIN_CHILD_SERVICES_MAX names; NULL: none): the supervisor's context
     * offers them on the child's behalf each time it starts, with the
     * child's worker count as bound, and while the child restarts, calls
     * to them wait (within their deadline) instead of failing with
     * KIN_ENOPROVIDER. See kin/service.h. */
    const char *const *services;
} kin_child_spec;

#define KIN_CHILD_SERVICES_MAX 8

/* What happened, for kin_supervisor_opts.on_event. */
typedef enum kin_sup_event_kind {
    KIN_SUP_EV_STARTED = 0,      /* child started (restart > 0: a restart) */
    KIN_SUP_EV_EXITED = 1,       /* child exited on its own; status set */
    KIN_SUP_EV_STOPPED = 2,      /* child stopped by the supervisor */
    KIN_SUP_EV_START_FAILED = 3, /* a (re)start failed; error set */
    KIN_SUP_EV_GAVE_UP = 4,      /* intensity exceeded; children stopped */
    KIN_SUP_EV_EMERGENCY = 5,    /* emergency stop; children stopped */
} kin_sup_event_kind;

typedef struct kin_sup_event {
    kin_sup_event_kind kind;
    const char *child; /* the child's name; NULL for GAVE_UP, EMERGENCY */
    uint32_t id;       /* its context id */
    pid_t pid;
    int status;        /* EXITED, STOPPED: the wait status */
    kin_err error;     /* START_FAILED: why */
    unsigned restarts; /* the child's restart count after this event */
} kin_sup_event;

/* Runs on the supervisor's thread, one event at a time. It may query the
 * supervisor (state, children) and call into kin, but must not call
 * kin_supervisor_start/stop/add/destroy on the same supervisor (they
 * return -EDEADLK). ev and its strings live for the call only. */
typedef void (*kin_sup_event_fn)(kin_supervisor *s, const kin_sup_event *ev,
                                 void *arg);

typedef struct kin_supervisor_opts {
    kin_strategy strategy;
    /* Intensity: more than `intensity` restarts within `period_ms` and
     * the supervisor gives up (KIN_SUP_GAVE_UP). 0: 3 and 5000 ms. A
     * failed restart attempt counts as a restart; a restart of several
     * children at once (one_for_all, rest_for_one) counts once. */
    int intensity;
    int period_ms;
    /* Delay before a restart: backoff_ms doubled for each earlier restart
     * still inside the period, capped at backoff_max_ms. 0: 10 and 1000;
     * backoff_ms < 0: restart at once. */
    int backoff_ms;
    int backoff_max_ms;
    kin_sup_event_fn on_event; /* optional */
    void *arg;
} kin_supervisor_opts;

/* The state of one child, a snapshot. */
typedef struct kin_child_info {
    char name[64];
    kin_child_state state;
    kin_restart restart;
    uint32_t id;        /* context id of the running (or last) process */
    pid_t pid;          /* 0 unless RUNNING */
    unsigned restarts;  /* times it was started again */
    bool exited;        /* whether it has exited at least once; then: */
    int last_status;    /* wait status of its last exit */
    bool emergency;     /* its last exit was KIN_EXIT_EMERGENCY */
    kin_err last_error; /* last failed start, KIN_OK if none */
} kin_child_info;

/* Creates a supervisor for children of n (opts may be NULL: one_for_one
 * with the defaults) and starts its thread; no child runs until
 * kin_supervisor_start. If n is (or later is) in an emergency stop, the
 * supervisor goes to KIN_SUP_EMERGENCY. Errors: -EINVAL (bad strategy,
 * negative intensity, period or backoff_max), -ENOMEM, -errno from
 * pthread_create. The caller owns *out; destroy it before n where you
 * can (see kin_supervisor_destroy). Any thread. */
KIN_EXPORT kin_err kin_supervisor_new(kin_supervisor **out, kin_node *n,
                                      const kin_supervisor_opts *opts);

/* Appends a child spec (copied); it starts after the ones added before.
 * When the supervisor runs, the child is started at once and the call
 * returns that start's result; as with OTP's start_child, a spec whose
 * start failed is not kept. Errors: -EINVAL (no name, name too long, a bad
 * service name, bad restart type, a bad rlimit or env entry of spawn, or
 * these with a factory that cannot take them), KIN_EEXISTS (name taken),
 * -ENOMEM, a start error as kin_spawn, KIN_EEMERGENCY, KIN_ESHUTDOWN (the node
 * was destroyed), -EDEADLK (from the supervisor's own thread). Any thread. */
KIN_EXPORT kin_err kin_supervisor_add(kin_supervisor *s,
                                      const kin_child_spec *spec);

/* Starts every child in the order they were added and returns when all
 * run. If one fails to start, those already started are stopped in reverse
 * order, the supervisor is STOPPED and the error is returned (that child's
 * kin_child_info.last_error says it too). Starting a RUNNING supervisor
 * does nothing; a STOPPED or GAVE_UP one starts afresh (restart counts and
 * history kept, intensity window cleared). Errors: as kin_spawn,
 * KIN_EEMERGENCY (after an emergency stop), KIN_ESHUTDOWN (the node was
 * destroyed), -EDEADLK. Any thread. */
KIN_EXPORT kin_err kin_supervisor_start(kin_supervisor *s);

/* Stops every child in reverse order (each with terminate-then-kill and
 * its shutdown timeout) and returns when they are gone; the supervisor is
 * STOPPED (or stays GAVE_UP / EMERGENCY). Errors: -EDEADLK. Any thread. */
KIN_EXPORT kin_err kin_supervisor_stop(kin_supervisor *s);

/* The supervisor's state. Any thread. */
KIN_EXPORT kin_supervisor_state kin_supervisor_state_get(kin_supervisor *s);

/* Number of child specs (whatever their state: stopped and exited
 * children keep theirs). Any thread. */
KIN_EXPORT size_t kin_supervisor_count(kin_supervisor *s);

/* A snapshot of the child named name, or of the index-th child (in the
 * order added, from 0 to kin_supervisor_count - 1). Errors: -ENOENT (no
 * such name, index out of range). Any thread. */
KIN_EXPORT kin_err kin_supervisor_child(kin_supervisor *s, const char *name,
                                        kin_child_info *out);
KIN_EXPORT kin_err kin_supervisor_child_at(kin_supervisor *s, size_t index,
                                           kin_child_info *out);

/* A counter that goes up with every event, once on_event has returned
 * (and at the end of a kin_supervisor_stop). Any thread. */
KIN_EXPORT uint64_t kin_supervisor_changes(kin_supervisor *s);

/* Waits up to timeout_ms (KIN_FOREVER: no limit) until the change counter
 * exceeds since; *now (optional) gets its value. Lets a thread wait for a
 * restart without polling: read the counter, check what you wait for,
 * wait, check again. Errors: KIN_ETIMEOUT. Any thread. */
KIN_EXPORT kin_err kin_supervisor_wait(kin_supervisor *s, uint64_t since,
                                       int timeout_ms, uint64_t *now);

/* Name of a state, static: "idle", "running", "stopped", "gave-up",
 * "emergency" for a supervisor; "idle", "running", "restarting", "exited",
 * "stopped" for a child; "unknown" for any other value. Any thread. */
KIN_EXPORT const char *kin_supervisor_state_name(kin_supervisor_state st);
KIN_EXPORT const char *kin_child_state_name(kin_child_state st);

/* Stops the children (as kin_supervisor_stop), ends the thread and frees
 * the supervisor; *s = NULL. NULL-safe. Not from its own thread (on_event:
 * it then logs and does nothing). If the node was destroyed first (a
 * serving child's node goes when its parent stops it), the node's destroy
 * stopped the children and ended the thread, and this only frees. */
KIN_EXPORT void kin_supervisor_destroy(kin_supervisor **s);

#endif
