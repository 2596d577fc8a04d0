/* kin push PID CTX SRC DST: a file to any context of a running tree,
 * through kin_push_file as an operator of its master, with a progress bar
 * on a terminal. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kin/file.h>

#include "cli/cli.h"

static void
on_progress(uint64_t sent, uint64_t total, void *arg)
{
    const char *src = arg;
    double pct = total ? 100.0 * (double)sent / (double)total : 100.0;
    fprintf(stderr, "\r%s: %5.1f%%  %.1f / %.1f MiB", src, pct,
            (double)sent / 1048576.0, (double)total / 1048576.0);
}

int
kin__cli_push(int argc, char **argv)
{
    static const char usage[] =
        "usage: kin push PID CTX SRC DST\n"
        "  copies the local file SRC to DST (an absolute path) on the host\n"
        "  of context CTX of PID's tree, as that context's user: chunked,\n"
        "  mode bits kept, renamed into place once its checksum matches\n";
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc != 5) {
        fputs(usage, stderr);
        return 2;
    }
    char *end;
    long pid = strtol(argv[1], &end, 10);
    unsigned long ctx = strtoul(argv[2], &end, 10);
    if (pid <= 0 || *end || argv[2][0] == '-') {
        fputs(usage, stderr);
        return 2;
    }
    kin_node *n;
    if (kin__cli_attach((int)pid, &n))
        return 2;
    char err[512] = "";
    bool bar = isatty(STDERR_FILENO);
    kin_push_opts o = {.progress = bar ? on_progress : NULL,
                       .progress_arg = argv[3],
                       .errbuf = err,
                       .errbuf_size = sizeof err};
    kin_err e = kin_push_file(n, (uint32_t)ctx, argv[3], argv[4], &o);
    kin_node_destroy(&n);
    if (bar)
        fputc('\n', stderr);
    if (e) {
        fprintf(stderr, "kin push: %s -> context %lu:%s: %s%s%s\n", argv[3],
                ctx, argv[4], kin_strerror(e), err[0] ? ": " : "", err);
        return 2;
    }
    printf("pushed %s to context %lu:%s\n", argv[3], ctx, argv[4]);
    return 0;
}
