/* The names of contexts' ipc socket files in the runtime directory, written
 * by the router and read by the kin command: one spelling of the format. */
#ifndef KIN_CORE_SOCKNAME_H
#define KIN_CORE_SOCKNAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* dir + "/<pid>-<id>.sock" (seq 0: what the kin command looks for), or
 * "/<pid>-<id>.<seq>.sock" for another node with the same id in one
 * process (two masters). Returns snprintf's result. */
int kin__sockname(char *out, size_t size, const char *dir, int pid, uint32_t id,
                  unsigned seq);

/* Whether a file name is "<pid>-<id>.sock" (seq 0, no directory); sets
 * *pid and *id when it is. */
bool kin__sockname_parse(const char *name, int *pid, uint32_t *id);

/* The far socket of the node whose socket is ipc_path (a kin__sockname
 * path): the same with ".far.sock" for ".sock" (ssh forwards it to remote
 * children). Returns snprintf's result, or -1 when ipc_path does not end
 * in ".sock". */
int kin__sockname_far(char *out, size_t size, const char *ipc_path);

/* Whether a file name (no directory) is any socket file a context makes:
 * "<pid>-<id>.sock", "<pid>-<id>.<seq>.sock", the far socket of either,
 * or the embedded log forwarder's next to them ("...-logs.sock",
 * "...-logs-in.sock", "<pid>-<id>.t<N>-logs.sock"); sets *pid when it is.
 * For sweeping the files of dead pids. */
bool kin__sockname_any(const char *name, int *pid);

/* Whether something listens on the unix socket at path: a non-blocking
 * connect. A full backlog, a path too long to try and a socket that cannot
 * be made count as listening (cannot tell). */
bool kin__sockname_listening(const char *path);

#endif
