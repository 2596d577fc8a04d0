/* kin web's subcommand runner (cli/web_run.h): posix_spawn with a pipe,
 * read until EOF or the deadline, then reaped whatever happened. */
#include "cli/web_run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
kin__web_run(char *const argv[], int timeout_ms, char **out, size_t *len,
             int *status)
{
    *out = NULL;
    *len = 0;
    *status = -1;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC))
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        return -rc;
    }
    size_t cap = 65536, used = 0;
    char *buf = malloc(cap);
    long long end = now_ms() + timeout_ms;
    bool killed = false;
    for (;;) {
        long long left = end - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        if (buf && used + 4096 > cap) {
            char *more = realloc(buf, cap * 2);
            if (!more) {
                free(buf);
                buf = NULL;
            } else {
                buf = more;
                cap *= 2;
            }
        }
        char sink[4096];
        ssize_t n = buf ? read(fds[0], buf + used, cap - used - 1)
                        : read(fds[0], sink, sizeof sink);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (buf)
            used += (size_t)n;
    }
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!buf)
        return -ENOMEM;
    buf[used] = 0;
    *out = buf;
    *len = used;
    *status = !killed && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return 0;
}
