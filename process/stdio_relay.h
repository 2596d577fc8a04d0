/* The exec factory's relay, run at both ends of the channel: each local
 * stream connection (the child's link up, its log connections) is carried
 * in frames over the channel's stdin and stdout, its ZMTP bytes as they
 * are. */
#ifndef KIN_PROCESS_STDIO_RELAY_H
#define KIN_PROCESS_STDIO_RELAY_H

#include <stddef.h>

#include "process/exec_channel.h"

/* Parent side: starts the relay threads on fd (our end of the channel's
 * stdin and stdout, a socket pair): they write the boot block (and this
 * executable), then carry the child's streams to p's targets until either
 * side ends or the channel command (pidfd, -1: not watched) exits. Takes
 * fd, pidfd and the plan's boot block and targets in every case. Errors:
 * -ENOMEM, -EAGAIN. */
kin_err kin__exec_relay_start(kin__exec_plan *p, int fd, int pidfd,
                              const char *name);

/* Child side (kin_init, when KIN_CHILD_STDIO is set): listens on unix
 * sockets in dir for the link up (and, with logs, for log connections),
 * writes their ipc:// endpoints into up and log, and carries them over
 * fds 3 and 4 (the channel, which the bootstrap moved there). on_lost runs
 * on a relay thread once the channel ends. Errors: -EINVAL (no such fds,
 * dir too long), -errno. */
kin_err kin__exec_child_start(const char *dir, bool logs, char *up,
                              size_t up_size, char *log, size_t log_size,
                              void (*on_lost)(void));

/* Child side: writes the path of this context's own socket (endpoint, when
 * ipc://) into dir/sock, where the bootstrap finds it to remove it if the
 * child is killed. Best effort. */
void kin__exec_child_note_socket(const char *dir, const char *endpoint);

#endif
