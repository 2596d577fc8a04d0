/* How the kin command reaches a running tree: find the context socket of a
 * pid in the per-user runtime directory, attach to it as an operator, and
 * move to the tree's master (ctx 0) when that is another process. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kin/call.h>
#include <kin/monitor.h>

#include "monitor/cli.h"
#include "router/node_impl.h"

#define TIMEOUT_MS 3000

/* The socket of pid's context: "<pid>-<id>.sock". */
static kin_err
find_socket(int pid, char *path, size_t size, uint32_t *ctx)
{
    char dir[160];
    kin_err e = kin__runtime_dir(dir, sizeof dir);
    if (e)
        return e;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *de;
    e = -ESRCH;
    while ((de = readdir(d))) {
        int p;
        unsigned id;
        char tail[8];
        if (sscanf(de->d_name, "%d-%u.%7s", &p, &id, tail) == 3 && p == pid &&
            !strcmp(tail, "sock")) {
            snprintf(path, size, "ipc://%s/%s", dir, de->d_name);
            *ctx = id;
            e = KIN_OK;
            break;
        }
    }
    closedir(d);
    return e;
}

static kin_err
attach_to(int pid, kin_node **out)
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
        .id = 0x80000000u | (uint32_t)getpid(),
        .operator_link = true,
        .workers = 1,
        .connect_timeout_ms = TIMEOUT_MS,
    };
    return kin_node_new(out, &o);
}

int
kin__cli_info(kin_node *n, uint32_t ctx, kin__cli_info_t *info)
{
    kin_buf b = {0};
    kin_pack(&b, "s", "info");
    kin_msg *reply;
    kin_err e = kin_monitor_request(n, ctx, &b, TIMEOUT_MS, &reply);
    kin_buf_release(&b);
    if (e) {
        kin_msg_destroy(&reply);
        return e;
    }
    memset(info, 0, sizeof *info);
    info->id = ctx;
    kin_reader rd;
    kin_reader_init(&rd, reply->body, reply->len);
    uint32_t pairs;
    e = kin_unpack(&rd, "M", &pairs);
    for (uint32_t i = 0; !e && i < pairs; i++) {
        const char *k, *s;
        size_t kl, sl;
        if ((e = kin_unpack(&rd, "S", &k, &kl)))
            break;
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)kl, k);
        if (!strcmp(key, "name") || !strcmp(key, "endpoint") ||
            !strcmp(key, "log_endpoint")) {
            if ((e = kin_unpack(&rd, "S", &s, &sl)))
                break;
            char *dst = key[0] == 'n'   ? info->name
                        : key[0] == 'e' ? info->endpoint
                                        : info->log_endpoint;
            size_t cap =
                key[0] == 'n' ? sizeof info->name : sizeof info->endpoint;
            snprintf(dst, cap, "%.*s", (int)sl, s);
        } else if (!strcmp(key, "pid")) {
            e = kin_unpack(&rd, "i", &info->pid);
        } else if (!strcmp(key, "workers")) {
            e = kin_unpack(&rd, "i", &info->workers);
        } else if (!strcmp(key, "tasks")) {
            e = kin_unpack(&rd, "u", &info->tasks);
        } else if (!strcmp(key, "rss_kib")) {
            e = kin_unpack(&rd, "I", &info->rss_kib);
        } else if (!strcmp(key, "uptime_ms")) {
            e = kin_unpack(&rd, "d", &info->uptime_ms);
        } else if (!strcmp(key, "parent")) {
            msgpack_object o;
            if (!(e = kin_reader_next(&rd, &o)))
                info->parent = o.type == MSGPACK_OBJECT_POSITIVE_INTEGER
                                   ? (uint32_t)o.via.u64
                                   : KIN_NO_CTX;
        } else if (!strcmp(key, "children")) {
            uint32_t nc;
            if ((e = kin_unpack(&rd, "a", &nc)))
                break;
            for (uint32_t c = 0; !e && c < nc; c++) {
                uint32_t id;
                e = kin_unpack(&rd, "u", &id);
                if (!e && info->n_children < KIN_CLI_MAX_CHILDREN)
                    info->children[info->n_children++] = id;
            }
        } else {
            e = kin_unpack(&rd, "?");
        }
    }
    kin_reader_release(&rd);
    kin_msg_destroy(&reply);
    return e ? KIN_EBADMSG : KIN_OK;
}

int
kin__cli_attach(int pid, kin_node **out)
{
    if (pid <= 0 || (kill(pid, 0) && errno == ESRCH)) {
        fprintf(stderr, "kin: no process %d\n", pid);
        return -ESRCH;
    }
    kin_node *n;
    kin_err e = attach_to(pid, &n);
    if (e == -ESRCH) {
        fprintf(stderr, "kin: process %d is not a kin context of yours\n", pid);
        return e;
    }
    if (e) {
        fprintf(stderr, "kin: cannot attach to %d: %s\n", pid, kin_strerror(e));
        return e;
    }
    kin__cli_info_t master;
    if ((e = kin__cli_info(n, KIN_MASTER_ID, &master))) {
        fprintf(stderr, "kin: the master of %d does not answer: %s\n", pid,
                kin_strerror(e));
        kin_node_destroy(&n);
        return e;
    }
    if (master.pid != pid) {
        /* Operate from the master: every context is below it. */
        kin_node_destroy(&n);
        if ((e = attach_to(master.pid, &n))) {
            fprintf(stderr, "kin: cannot attach to master %d: %s\n", master.pid,
                    kin_strerror(e));
            return e;
        }
    }
    *out = n;
    return KIN_OK;
}

int
kin__cli_log_endpoint(int pid, char *ep, size_t size)
{
    kin_node *n;
    kin_err e = kin__cli_attach(pid, &n);
    if (e)
        return e;
    kin__cli_info_t master;
    e = kin__cli_info(n, KIN_MASTER_ID, &master);
    kin_node_destroy(&n);
    if (e)
        return e;
    if (!master.log_endpoint[0])
        return KIN_ENOROUTE;
    snprintf(ep, size, "%s", master.log_endpoint);
    return KIN_OK;
}

int
kin__cli_contexts(kin_node *n, kin__cli_info_t **out, size_t *count)
{
    size_t cap = 16, len = 0;
    kin__cli_info_t *all = malloc(cap * sizeof *all);
    if (!all)
        return -ENOMEM;
    kin_err e = kin__cli_info(n, KIN_MASTER_ID, &all[0]);
    if (e) {
        free(all);
        return e;
    }
    len = 1;
    /* Breadth first; a context that died meanwhile is skipped. */
    for (size_t i = 0; i < len; i++) {
        for (int c = 0; c < all[i].n_children; c++) {
            if (len == cap) {
                kin__cli_info_t *more = realloc(all, 2 * cap * sizeof *all);
                if (!more)
                    break;
                all = more;
                cap *= 2;
            }
            if (kin__cli_info(n, all[i].children[c], &all[len]) == KIN_OK) {
                all[len].parent = all[i].id;
                all[len].depth = all[i].depth + 1;
                len++;
            }
        }
    }
    *out = all;
    *count = len;
    return KIN_OK;
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
