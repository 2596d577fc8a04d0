/* The kin command: looks inside running kin trees (ps, pstree, where, logs,
 * ...) and runs the standalone log forwarder. Dispatches to one function
 * per subcommand. */
#include <stdio.h>
#include <string.h>

#include "monitor/cli.h"

static const kin__cli_cmd cmds[] = {
    {"logs", "PID [-l LEVEL] [-c CTX] [-g TEXT] [-f] [--json]",
     "show the log records of a running tree", kin__cli_logs},
    {"log-forwarder", "--backend EP --frontend EP",
     "run a standalone log forwarder", kin__cli_log_forwarder},
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: kin COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-14s %s\n  %-14s   %s\n", cmds[i].name, cmds[i].args, "",
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
