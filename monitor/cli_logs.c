/* kin logs and kin log-forwarder (placeholder until the logs work lands). */
#include <stdio.h>

#include "monitor/cli.h"

int
kin__cli_logs(int argc, char **argv)
{
    fprintf(stderr, "kin logs: not implemented yet\n");
    return 2;
}

int
kin__cli_log_forwarder(int argc, char **argv)
{
    fprintf(stderr, "kin log-forwarder: not implemented yet\n");
    return 2;
}
