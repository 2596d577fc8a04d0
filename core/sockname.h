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

#endif
