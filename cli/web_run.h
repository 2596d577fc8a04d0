/* Runs this kin command again with arguments and collects its stdout, so
 * kin web serves exactly what `kin … --json` prints (cli/web_run.c). */
#ifndef KIN_CLI_WEB_RUN_H
#define KIN_CLI_WEB_RUN_H

#include <stddef.h>

/* Runs /proc/self/exe with argv (argv[0] included, NULL-terminated), its
 * stdin and stderr on /dev/null, and returns its stdout in *out (malloc'd,
 * NUL-terminated, *len bytes) and its exit status in *status (-1 when it
 * was killed after timeout_ms). Returns 0 or -errno. Any thread. */
int kin__web_run(char *const argv[], int timeout_ms, char **out, size_t *len,
                 int *status);

#endif
