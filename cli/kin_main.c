/* The kin command: looks inside running kin trees (ps, pstree, where, logs,
 * ...), runs the standalone log forwarder and makes CURVE keys. Dispatches to
 * one function per subcommand. */
#include <stdio.h>
#include <string.h>

#include <kin/kin.h>

#include "cli/cli.h"
#include "context/tool.h"

/* kin keygen: a key pair for kin_node_opts.curve_key and KIN_CURVE_KEY (a
 * tree whose processes are not all started by kin shares one this way);
 * kin keygen PATH: a certificate for a host, as files in czmq's format
 * (kin_cert_new), for joining over tcp. */
static int
keygen_usage(FILE *out)
{
    fprintf(out, "usage: kin keygen\n"
                 "  prints a new CURVE key pair, PUBLIC:SECRET in Z85, for "
                 "kin_node_opts.curve_key and KIN_CURVE_KEY\n"
                 "usage: kin keygen PATH [--host HOST] [--role ROLE]\n"
                 "  writes a new certificate in czmq's format: PATH (public, "
                 "with the metadata: host, default this host's name, and role) "
                 "and PATH_secret (mode 0600); copy PATH to a master's "
                 "join_certs directory to let it join, remove it to revoke\n");
    return out == stdout ? 0 : 2;
}

static int
keygen(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--help"))
        return keygen_usage(stdout);
    if (argc > 1) {
        const char *host = NULL, *role = NULL;
        for (int i = 2; i < argc; i += 2) {
            if (i + 1 >= argc)
                return keygen_usage(stderr);
            if (!strcmp(argv[i], "--host"))
                host = argv[i + 1];
            else if (!strcmp(argv[i], "--role"))
                role = argv[i + 1];
            else
                return keygen_usage(stderr);
        }
        if (argv[1][0] == '-')
            return keygen_usage(stderr);
        char pub[KIN_CERT_KEY_LEN];
        /* Why czmq could not be loaded, should it come to that. */
        kin_diag_set_handler(kin_diag_stderr, NULL, KIN_LOG_ERROR);
        kin_err e = kin_cert_new(argv[1], host, role, pub);
        if (e) {
            fprintf(stderr, "kin keygen: %s: %s\n", argv[1],
                    e == KIN_EEXISTS ? "a certificate is there already (or "
                                       "its _secret file); nothing written"
                                     : kin_strerror(e));
            return 1;
        }
        printf("%s\n", pub);
        fprintf(stderr,
                "kin keygen: wrote %s (public) and %s_secret (keep it on "
                "this host)\n",
                argv[1], argv[1]);
        return 0;
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
    {"keygen", "[PATH [--host HOST] [--role ROLE]]",
     "a CURVE key pair for a tree, or a certificate file pair for a host",
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
