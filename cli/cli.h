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

#include <kin/node.h>

#define KIN_CLI_MAX_CHILDREN 256

/* What "info" says about one context. */
typedef struct kin__cli_info_t {
    uint32_t id, parent;
    int depth; /* in the tree, master 0 */
    char name[64];
    char host[64];
    int pid;
    uint32_t tasks;
    int workers;
    int64_t rss_kib;
    double uptime_ms;
    char endpoint[256];
    char log_endpoint[256];
    uint32_t children[KIN_CLI_MAX_CHILDREN];
    int n_children;
} kin__cli_info_t;

/* Attaches to the tree pid belongs to (as an operator of its master);
 * prints a clear message and returns an error when it cannot. */
int kin__cli_attach(int pid, kin_node **out);
/* The same for a link kept while kin__cli_attach links come and go (kin
 * monitor): one per process. Each attachment has an operator id of its
 * own, since a master refuses an id it has not yet seen leave. */
int kin__cli_attach_held(int pid, kin_node **out);
int kin__cli_info(kin_node *n, uint32_t ctx, kin__cli_info_t *info);
/* Every context of the tree, master first, breadth first (free()). */
int kin__cli_contexts(kin_node *n, kin__cli_info_t **out, size_t *count);
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

/* cli/cli_services.c */
int kin__cli_services(int argc, char **argv);

/* cli/cli_monitor.c */
int kin__cli_monitor(int argc, char **argv);

/* logs and log-forwarder (cli/cli_logs.c) */
int kin__cli_logs(int argc, char **argv);
int kin__cli_log_forwarder(int argc, char **argv);

#endif
