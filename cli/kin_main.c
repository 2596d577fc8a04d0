/* The kin command: looks inside running kin trees (ps, pstree, where, logs,
 * ...), runs the standalone log forwarder and makes CURVE keys. Dispatches to
 * one function per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "context/tool.h"

/* A key pair for kin_node_opts.curve_key and KIN_CURVE_KEY: a tree whose
 * processes are not all started by kin (a standalone log forwarder, a
 * context made with kin_node_new) shares one this way. */
static int
keygen(int argc, char **argv)
{
    if (argc > 1) {
        FILE *out = strcmp(argv[1], "--help") ? stderr : stdout;
        fprintf(out, "usage: kin keygen\n  prints a new CURVE key pair, "
                     "PUBLIC:SECRET in Z85, for kin_node_opts.curve_key "
                     "and KIN_CURVE_KEY\n");
        return out == stdout ? 0 : 2;
    }
    char text[128];
    if (kin__tool_keygen(text, sizeof text)) {
        fprintf(stderr, "kin keygen: this libzmq has no CURVE\n");
        return 1;
    }
    printf("%s\n", text);
    return 0;
}

static const kin__cli_cmd cmds[] = {
    {"ls", "[--json]", "masters running on this host", kin__cli_ls},
    {"tree", "PID", "context tree: id, name, pid, tasks, rss, uptime",
     kin__cli_tree},
    {"ps", "PID [-c CTX] [-f TEXT] [-p]", "task table over the tree",
     kin__cli_ps},
    {"pstree", "PID", "await tree across contexts; a cycle exits 1",
     kin__cli_pstree},
    {"where", "PID CTX:TASK", "a task's current stack, file:line",
     kin__cli_where},
    {"ps-terminated", "PID [-c CTX] [-n N]", "recently terminated tasks",
     kin__cli_ps_terminated},
    {"where-terminated", "PID CTX:TASK",
     "how a terminated task ended, who cancelled it",
     kin__cli_where_terminated},
    {"cancel", "PID CTX:TASK", "cancel a task", kin__cli_cancel},
    {"signal", "PID CTX SIGNAME", "signal a context's process",
     kin__cli_signal},
    {"stacktrace", "PID CTX", "stacks of every thread of a context",
     kin__cli_stacktrace},
    {"push", "PID CTX SRC DST", "copy a file to a context's host, verified",
     kin__cli_push},
    {"pull", "PID CTX SRC DST", "copy a file from a context's host, verified",
     kin__cli_pull},
    {"services", "PID [--json]",
     "services, their providers, load, latency and retries", kin__cli_services},
    {"metrics", "PID [-c CTX] [--json]",
     "metrics of every context in the Prometheus text format",
     kin__cli_metrics},
    {"top", "PID [--interval MS] [--wait-warn S] [--batch N]",
     "live view: contexts, tasks, calls/s, p99, warnings", kin__cli_top},
    {"web", "PID [--listen ADDR:PORT]",
     "a live page of the tree, JSON under /api/ and /metrics", kin__cli_web},
    {"monitor", "PID [CTX]",
     "interactive monitor: completion, history, Enter repeats",
     kin__cli_monitor},
    {"logs", "PID [-l LEVEL] [-c CTX] [-g TEXT] [-f] [--json]",
     "show the log records of a running tree", kin__cli_logs},
    {"log-forwarder", "--backend EP --frontend EP",
     "run a standalone log forwarder", kin__cli_log_forwarder},
    {"keygen", "", "print a new CURVE key pair for a tree (PUBLIC:SECRET)",
     keygen},
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: kin COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-17s %s\n  %-17s   %s\n", cmds[i].name, cmds[i].args, "",
                cmds[i].help);
    fprintf(f, "\nEvery command takes --help; most take --json.\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kin: unknown command '%s' (try kin --help)\n", argv[1]);
    return 2;
}
