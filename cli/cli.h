/* The kin command's subcommands. Each returns the process exit status:
 * 0 success, 1 a finding (e.g. a deadlock cycle), 2 usage or target errors. */
#ifndef KIN_CLI_CLI_H
#define KIN_CLI_CLI_H

typedef struct kin__cli_cmd {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(int argc, char **argv);
} kin__cli_cmd;

#include <stddef.h>
#include <stdint.h>

#include <kin/monitor.h>
#include <kin/node.h>

/* The version of every --json shape the command prints, in a "version"
 * field at the top level (docs/kin.1): it goes up when a shape changes in
 * a way a parser would notice. */
#define KIN_CLI_JSON_VERSION 1

/* How long a command waits for a context to answer. Generous: on a loaded
 * machine a healthy master can take seconds to be scheduled (seen: 3 s
 * passed on a 2-core machine at load 16), and a command that gives up on a
 * live tree misleads more than one that waits. */
#define KIN_CLI_TIMEOUT_MS 10000

/* Attaches to the tree pid belongs to (as an operator of its master);
 * prints a clear message and returns an error when it cannot. */
int kin__cli_attach(int pid, kin_node **out);
/* The same for a link kept while kin__cli_attach links come and go (kin
 * monitor): one per process. Each attachment has an operator id of its
 * own, since a master refuses an id it has not yet seen leave. */
int kin__cli_attach_held(int pid, kin_node **out);
/* kin_monitor_info with the command's timeout. */
int kin__cli_info(kin_node *n, uint32_t ctx, kin_ctx_info *info);
/* Every context of the tree, master first, breadth first (free()); each
 * one's parent is the context it was found under. */
int kin__cli_contexts(kin_node *n, kin_ctx_info **out, size_t *count);
/* Parses "CTX:TASK"; prints the problem and returns -EINVAL if bad. */
int kin__cli_parse_task(const char *s, uint32_t *ctx, uint32_t *task);
/* The log endpoint (XPUB side) of pid's tree. */
int kin__cli_log_endpoint(int pid, char *ep, size_t size);

/* cli/cli_tasks.c */
int kin__cli_ls(int argc, char **argv);
int kin__cli_tree(int argc, char **argv);
int kin__cli_ps(int argc, char **argv);
int kin__cli_pstree(int argc, char **argv);
int kin__cli_where(int argc, char **argv);
int kin__cli_ps_terminated(int argc, char **argv);
int kin__cli_where_terminated(int argc, char **argv);
int kin__cli_cancel(int argc, char **argv);
int kin__cli_signal(int argc, char **argv);
int kin__cli_stacktrace(int argc, char **argv);

/* cli/cli_files.c */
int kin__cli_push(int argc, char **argv);
int kin__cli_pull(int argc, char **argv);

/* cli/cli_services.c */
int kin__cli_services(int argc, char **argv);

/* cli/cli_metrics.c */
int kin__cli_metrics(int argc, char **argv);

/* cli/cli_top.c */
int kin__cli_top(int argc, char **argv);

/* cli/cli_web.c */
int kin__cli_web(int argc, char **argv);

/* cli/cli_monitor.c */
int kin__cli_monitor(int argc, char **argv);

/* logs and log-forwarder (cli/cli_logs.c) */
int kin__cli_logs(int argc, char **argv);
int kin__cli_log_forwarder(int argc, char **argv);

#endif
