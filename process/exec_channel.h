/* The exec factory's plan for kin_spawn: a child started through any
 * command that runs a program on the target with its stdin and stdout
 * connected (podman/docker/kubectl exec -i, nsenter, unshare, chroot, ...),
 * its link to the parent riding that stdio (the relay: stdio_relay.h). */
#ifndef KIN_PROCESS_EXEC_CHANNEL_H
#define KIN_PROCESS_EXEC_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

#include <kin/process.h>

#include "process/procs.h"

typedef struct kin__exec_plan {
    char *path;  /* the channel command, found in PATH */
    char **argv; /* prefix + /bin/sh -c BOOTSTRAP kin-boot ARGS, malloc'd */
    char *boot;  /* KIN_* lines and an empty line */
    size_t boot_len;
    bool stream_self; /* this executable follows the boot block */
    char *up_target;  /* where stream 0 leads here: "ipc:PATH" / "tcp:H:P" */
    char *log_target; /* the same for log streams; NULL: no logs */
    char label[64];   /* where the child runs, as kin tree shows it */
} kin__exec_plan;

/* Whether opts asks for the exec factory (exec or container set). */
bool kin__exec_wanted(const kin_spawn_opts *opts);

/* What the plan is made from (read from the node and the system by
 * kin__exec_prepare; unit tests fill it in themselves). */
typedef struct kin__exec_in {
    const kin_spawn_opts *opts;
    const char *far_endpoint; /* the parent's endpoint with heartbeats */
    const char *log_endpoint; /* "" for none */
    bool logs_curve;          /* the node's log link uses CURVE */
    long long exe_size;       /* this executable's size (opts->program NULL) */
} kin__exec_in;

/* Pure: the channel's argv (without the path lookup: argv[0] is the
 * command as given), the targets, the label and, with the child's
 * settings vars (from kin__child_vars of the link it fills in *l: l->id,
 * name and workers set by the caller), the boot block. Call it first with
 * vars NULL to get *l, then with the vars. Errors: -EINVAL (both exec and
 * container, an empty prefix, a container not "podman:", "docker:" or
 * "kubectl:" followed by a name, a newline in a setting, an endpoint the
 * relay cannot reach), -ENOMEM. Free with kin__exec_plan_free. */
kin_err kin__exec_plan_build(const kin__exec_in *in, kin__child_link *l,
                             char *const *vars, int nvars, kin__exec_plan *p);

/* Gathers the inputs from n and builds the plan for child l, with the
 * command found in PATH. Errors: those of kin__exec_plan_build, -ENOENT
 * (no such command in PATH), -errno. Any thread but n's broker. */
kin_err kin__exec_prepare(kin_node *n, const kin_spawn_opts *opts,
                          const kin__child_link *l, kin__exec_plan *p);

void kin__exec_plan_free(kin__exec_plan *p);

#endif
