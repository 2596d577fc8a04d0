/* The inside of a kin_child, shared by the process layer's files: spawn.c
 * (fork + exec, reaping, stopping, the public calls), output.c (stdout and
 * stderr lines) and emergency.c (the node-wide emergency stop). */
#ifndef KIN_PROCESS_CHILD_H
#define KIN_PROCESS_CHILD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <uv.h>

#include <kin/process.h>

#define TAIL_SIZE 2048 /* bytes of stderr kept for error reports */
#define LINE_MAX_LEN 4096

typedef struct outpipe {
    kin_child *c;
    int fd;
    bool is_err;
    uv_poll_t poll;
    bool polling;
    char line[LINE_MAX_LEN];
    size_t len;
} outpipe;

struct kin_child {
    kin_node *node;
    struct kin__procs *procs; /* node's process layer (its lock) */
    uint32_t id;
    /* A child started through another context (kin_spawn_opts.via): a
     * proxy whose stop and wait are calls to via. */
    uint32_t via;
    kin_node *caller;
    bool proxy;
    pthread_mutex_t proxy_mu; /* guards proxy_done and status */
    bool proxy_done;          /* the proxied child is known to have ended */
    bool proxy_stopped;       /* via has let it go (kin.child_stop) */
    char name[64];
    pid_t pid;
    int pidfd;      /* broker thread; -1 once reaped */
    int channel_fd; /* ssh's stdin, held open while the child lives */
    /* The public key of the certificate it was issued (ssh and exec
     * children, router/child_certs.h), revoked once it is gone; "": none. */
    char cert_pub[41];
    int stop_timeout_ms;
    int workers;  /* the child's pool size, 0: its default */
    char *cgroup; /* its memory cgroup (limits.c), removed when reaped */
    kin_child_exit_fn on_exit;
    void *on_exit_arg;
    uv_poll_t exit_poll;
    bool exit_polling;
    outpipe out, err;
    uv_timer_t kill_timer; /* SIGKILL after SIGTERM, on the broker */
    bool timer_made;
    int handles;    /* broker: libuv handles not yet closed */
    bool detaching; /* broker: close_handles_job ran */
    /* under the layer's mu (kin__procs) */
    bool armed;  /* kin_spawn handed it out: on_exit may run */
    bool exited; /* reaped and on_exit done: waiters may go */
    int status;
    char tail[TAIL_SIZE]; /* ring of the last stderr bytes */
    size_t tail_pos, tail_len;
    kin_child *next; /* in the node's list */
};

/* spawn.c: one of c's libuv handles finished closing (broker thread). */
void kin__child_handle_closed(kin_child *c);
/* spawn.c: SIGTERM now, SIGKILL in kill_after_ms (broker thread). */
void kin__child_terminate(kin_child *c, int kill_after_ms);

/* output.c: capture fd as c's stdout or stderr, line by line, on the
 * broker's loop; read what is left; stop (closes fd). Broker thread. */
void kin__output_watch(kin_child *c, outpipe *p, int fd, bool is_err);
void kin__output_drain(outpipe *p);
void kin__output_stop(outpipe *p);

/* emergency.c */
bool kin__is_emergency(int status);
/* Trips n's emergency stop (broker thread); origin is who asked. */
void kin__procs_trip(kin_node *n, uint32_t origin);

#endif
