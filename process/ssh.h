/* The ssh factory's pieces for kin_spawn: the ssh command line, the boot
 * block the remote bootstrap reads from stdin, and the thread that writes
 * it (and this executable, for zero-install) into ssh's stdin. */
#ifndef KIN_PROCESS_SSH_H
#define KIN_PROCESS_SSH_H

#include <stdbool.h>
#include <stddef.h>

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
 * on that host. Errors: -EINVAL (bad host, port or a newline in a
 * setting), -ENOENT (no ssh client in PATH), -ENOMEM, -errno. Any thread. */
kin_err kin__ssh_prepare(kin_node *n, const kin_spawn_opts *opts,
                         const kin__child_link *l, kin__ssh_plan *p);

/* Starts a thread that writes p's boot block (and this executable, if
 * p->stream_self) into fd, ssh's stdin, then closes it. Takes fd and the
 * block (p->boot becomes NULL) in every case. Errors: -EAGAIN. */
kin_err kin__ssh_boot(kin__ssh_plan *p, int fd);

void kin__ssh_plan_free(kin__ssh_plan *p);

#endif
