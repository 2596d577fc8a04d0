/* How the kin command reaches a running tree: find the context socket of a
 * pid in the per-user runtime directory, attach to it as an operator, and
 * move to the tree's master (ctx 0) when that is another process. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kin/call.h>
#include <kin/monitor.h>

#include "cli/cli.h"
#include "context/tool.h"

#define TIMEOUT_MS KIN_CLI_TIMEOUT_MS

/* The socket of pid's context: "<pid>-<id>.sock" with a listener (a context
 * killed without cleaning up leaves its socket file behind, and pids come
 * round again, so the file may be a dead context's). */
static kin_err
find_socket(int pid, char *path, size_t size, uint32_t *ctx)
{
    char dir[160];
    kin_err e = kin__tool_runtime_dir(dir, sizeof dir);
    if (e)
        return e;
    /* Most often pid is a master: look at its socket before scanning the
     * directory, which costs milliseconds once dead contexts have left
     * thousands of files there (docs/performance.md, "Monitor"). */
    char file[512];
    kin__tool_sock_path(file, sizeof file, dir, pid, KIN_MASTER_ID);
    if (!access(file, F_OK) && kin__tool_sock_listening(file)) {
        snprintf(path, size, "ipc://%s", file);
        *ctx = KIN_MASTER_ID;
        return KIN_OK;
    }
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *de;
    e = -ESRCH;
    while ((de = readdir(d))) {
        int p;
        uint32_t id;
        if (!kin__tool_sock_parse(de->d_name, &p, &id) || p != pid)
            continue;
        snprintf(file, sizeof file, "%s/%s", dir, de->d_name);
        if (!kin__tool_sock_listening(file))
            continue;
        snprintf(path, size, "ipc://%s", file);
        *ctx = id;
        e = KIN_OK;
        break;
    }
    closedir(d);
    return e;
}

static kin_err
attach_to(int pid, uint32_t id, kin_node **out)
{
    char ep[256];
    uint32_t ctx = 0;
    kin_err e = find_socket(pid, ep, sizeof ep, &ctx);
    if (e)
        return e;
    kin_node_opts o = {
        .name = "kin",
        .parent_endpoint = ep,
        .parent_id = ctx,
        .id = id,
        .operator_link = true,
        .workers = 1,
        .connect_timeout_ms = TIMEOUT_MS,
    };
    return kin_node_new(out, &o);
}

int
kin__cli_info(kin_node *n, uint32_t ctx, kin_ctx_info *info)
{
    return kin_monitor_info(n, ctx, TIMEOUT_MS, info);
}

/* Operator ids: one per attachment, so an attachment held open (the
 * interactive monitor) and the short ones its commands make never share
 * an id: top bit set, then the pid, then a sequence number. The held one
 * has 255 to itself; the others wrap round 0..254 (a master refuses an id
 * still attached, so the held one must never come round again). */
#define HELD_SEQ 0xffu
static atomic_uint attach_seq;

static uint32_t
operator_id(bool held)
{
    unsigned seq =
        held ? HELD_SEQ : atomic_fetch_add(&attach_seq, 1) % HELD_SEQ;
    return kin_monitor_operator_id((int)getpid(), seq);
}

static kin_err
attach(int pid, bool held, kin_node **out)
{
    if (pid <= 0 || (kill(pid, 0) && errno == ESRCH)) {
        fprintf(stderr, "kin: no process %d\n", pid);
        return -ESRCH;
    }
    kin_node *n;
    kin_err e = attach_to(pid, operator_id(false), &n);
    if (e == -ESRCH) {
        fprintf(stderr, "kin: process %d is not a kin context of yours\n", pid);
        return e;
    }
    if (e) {
        fprintf(stderr, "kin: cannot attach to %d: %s\n", pid, kin_strerror(e));
        return e;
    }
    kin_ctx_info master;
    if ((e = kin__cli_info(n, KIN_MASTER_ID, &master))) {
        fprintf(stderr, "kin: the master of %d does not answer: %s\n", pid,
                kin_strerror(e));
        kin_node_destroy(&n);
        return e;
    }
    /* A context started over ssh has its master on another host, where
     * master.pid means nothing here: operate through pid's context then
     * (read-only commands reach the whole tree from any context). */
    char here[64] = "";
    gethostname(here, sizeof here - 1);
    bool master_here = !master.host[0] || !strcmp(master.host, here);
    if (master_here && (master.pid != pid || held)) {
        /* Operate from the master, every context is below it, with a new
         * id (the held one, or another: the tree may still route the old
         * one through pid's context). The old link goes once the new one
         * is up, so the master cannot give the new one the old one's fd
         * while it has yet to see that one close (it tells links' ends
         * apart by fd). */
        kin_node *first = n;
        n = NULL;
        e = attach_to(master.pid, operator_id(held), &n);
        kin_node_destroy(&first);
        if (e) {
            fprintf(stderr, "kin: cannot attach to master %d: %s\n", master.pid,
                    kin_strerror(e));
            return e;
        }
    }
    *out = n;
    return KIN_OK;
}

int
kin__cli_attach(int pid, kin_node **out)
{
    return attach(pid, false, out);
}

int
kin__cli_attach_held(int pid, kin_node **out)
{
    return attach(pid, true, out);
}

int
kin__cli_log_endpoint(int pid, char *ep, size_t size)
{
    kin_node *n;
    kin_err e = kin__cli_attach(pid, &n);
    if (e)
        return e;
    kin_ctx_info master;
    e = kin_monitor_info(n, KIN_MASTER_ID, TIMEOUT_MS, &master);
    kin_node_destroy(&n);
    if (e)
        return e;
    if (!master.log_frontend[0])
        return KIN_ENOROUTE; /* logs go to a standalone forwarder */
    char here[64] = "";
    gethostname(here, sizeof here - 1);
    if (master.host[0] && strcmp(master.host, here) &&
        !strncmp(master.log_frontend, "ipc://", 6)) {
        /* Its socket is on the master's host, not on this one. */
        fprintf(stderr,
                "kin: the logs of %d's tree are at its master, on host %s: "
                "run kin logs %d there\n",
                pid, master.host, master.pid);
        return -EREMOTE;
    }
    snprintf(ep, size, "%s", master.log_frontend);
    return KIN_OK;
}

int
kin__cli_contexts(kin_node *n, kin_ctx_info **out, size_t *count)
{
    /* Breadth first, each level asked at once; a context that died
     * meanwhile is skipped. */
    return kin_monitor_contexts(n, TIMEOUT_MS, out, count);
}

int
kin__cli_parse_task(const char *s, uint32_t *ctx, uint32_t *task)
{
    unsigned c, t;
    char extra;
    if (sscanf(s, "%u:%u%c", &c, &t, &extra) != 2) {
        fprintf(stderr, "kin: '%s' is not a task id (CTX:TASK, e.g. 1:7)\n", s);
        return -EINVAL;
    }
    *ctx = c;
    *task = t;
    return 0;
}
