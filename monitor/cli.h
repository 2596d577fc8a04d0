/* The kin command's subcommands. Each returns the process exit status:
 * 0 success, 1 a finding (e.g. a deadlock cycle), 2 usage or target errors. */
#ifndef KIN_MONITOR_CLI_H
#define KIN_MONITOR_CLI_H

typedef struct kin__cli_cmd {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(int argc, char **argv);
} kin__cli_cmd;

/* logs and log-forwarder (monitor/cli_logs.c) */
int kin__cli_logs(int argc, char **argv);
int kin__cli_log_forwarder(int argc, char **argv);

#endif
