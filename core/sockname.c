/* Contexts' socket file names (core/sockname.h). */
#include "core/sockname.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
kin__sockname(char *out, size_t size, const char *dir, int pid, uint32_t id,
              unsigned seq)
{
    if (seq)
        return snprintf(out, size, "%s/%d-%u.%u.sock", dir, pid, id, seq);
    return snprintf(out, size, "%s/%d-%u.sock", dir, pid, id);
}

bool
kin__sockname_parse(const char *name, int *pid, uint32_t *id)
{
    int p, end = 0;
    unsigned i;
    if (sscanf(name, "%d-%u.sock%n", &p, &i, &end) != 2 || !end || name[end] ||
        p <= 0)
        return false;
    *pid = p;
    *id = i;
    return true;
}

int
kin__sockname_far(char *out, size_t size, const char *ipc_path)
{
    size_t len = strlen(ipc_path);
    if (len < 5 || strcmp(ipc_path + len - 5, ".sock"))
        return -1;
    return snprintf(out, size, "%.*s.far.sock", (int)(len - 5), ipc_path);
}

bool
kin__sockname_any(const char *name, int *pid)
{
    int p, end = 0;
    unsigned id, seq;
    const char *rest;
    if (sscanf(name, "%d-%u%n", &p, &id, &end) != 2 || !end || p <= 0)
        return false;
    rest = name + end;
    if (rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9') {
        end = 0;
        if (sscanf(rest, ".%u%n", &seq, &end) != 1 || !end)
            return false;
        rest += end;
    }
    if (!strncmp(rest, ".far", 4))
        rest += 4;
    else if (!strncmp(rest, ".t", 2) && rest[2] >= '0' && rest[2] <= '9') {
        /* a tcp-bound master's log frontend: ".t<N>-logs.sock" */
        end = 0;
        if (sscanf(rest, ".t%u%n", &seq, &end) != 1 || !end ||
            strcmp(rest + end, "-logs.sock"))
            return false;
        rest = ".sock";
    } else if (!strcmp(rest, "-logs.sock") || !strcmp(rest, "-logs-in.sock"))
        rest = ".sock"; /* the embedded log forwarder's (logs/logpub.c) */
    if (strcmp(rest, ".sock"))
        return false;
    *pid = p;
    return true;
}

bool
kin__sockname_listening(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof a.sun_path)
        return true;
    memcpy(a.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return true;
    bool yes = !connect(fd, (struct sockaddr *)&a, sizeof a) ||
               (errno != ECONNREFUSED && errno != ENOENT);
    close(fd);
    return yes;
}
