/* kin push / kin pull PID CTX SRC DST: a file to or from any context of a
 * running tree, through kin_push_file / kin_pull_file as an operator of its
 * master, with a progress line on a terminal. */
#include <errno.h>
#include <stdbool.h>
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

/* push or pull, which differ in their words and the function they call. */
static int
transfer(int argc, char **argv, bool push)
{
    const char *verb = push ? "push" : "pull";
    char usage[512];
    snprintf(usage, sizeof usage,
             "usage: kin %s PID CTX SRC DST\n"
             "  %s\n"
             "  in chunks, mode bits kept, renamed into place once its\n"
             "  checksum matches; nothing is left there on failure\n",
             verb,
             push ? "copies the local file SRC to DST (an absolute path) on "
                    "the host of\n  context CTX of PID's tree, as that "
                    "context's user:"
                  : "copies SRC (an absolute path on the host of context "
                    "CTX of PID's\n  tree, read as that context's user) to "
                    "the local file DST:");
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
    kin_file_opts o = {.progress = bar ? on_progress : NULL,
                       .progress_arg = argv[3],
                       .errbuf = err,
                       .errbuf_size = sizeof err};
    kin_err e = push ? kin_push_file(n, (uint32_t)ctx, argv[3], argv[4], &o)
                     : kin_pull_file(n, (uint32_t)ctx, argv[3], argv[4], &o);
    kin_node_destroy(&n);
    if (bar)
        fputc('\n', stderr);
    const char *from = push ? "" : "context ", *to = push ? "context " : "";
    char src[300], dst[300];
    snprintf(src, sizeof src, "%s%s%s%s", from, push ? "" : argv[2],
             push ? "" : ":", argv[3]);
    snprintf(dst, sizeof dst, "%s%s%s%s", to, push ? argv[2] : "",
             push ? ":" : "", argv[4]);
    if (e) {
        fprintf(stderr, "kin %s: %s -> %s: %s%s%s\n", verb, src, dst,
                kin_strerror(e), err[0] ? ": " : "", err);
        return 2;
    }
    printf("%sed %s to %s\n", push ? "push" : "pull", src, dst);
    return 0;
}

int
kin__cli_push(int argc, char **argv)
{
    return transfer(argc, argv, true);
}

int
kin__cli_pull(int argc, char **argv)
{
    return transfer(argc, argv, false);
}
