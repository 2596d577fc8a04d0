/* For counting instructions per call under valgrind (docs/performance.md),
 * not built by default: valgrind 3.19 (Debian 12) does not know
 * pidfd_open, which kin_spawn needs. Preloaded into kin-bench, this stands
 * in for pidfds with a pipe that a thread writes once the child has exited,
 * and runs "/proc/self/exe" (which under valgrind is valgrind itself) as
 * $PIDFD_SHIM_SELF.
 *
 *   gcc -O2 -shared -fPIC -o pidfd_shim.so tests/bench/valgrind_pidfd.c
 *   PIDFD_SHIM_SELF=$PWD/build/tests/bench/kin-bench \
 *   LD_PRELOAD=$PWD/pidfd_shim.so valgrind --tool=callgrind \
 *       --trace-children=yes build/tests/bench/kin-bench --only rtt ...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS 4096

/* By the read end's fd: the child, and the write end. */
static pid_t pid_of[SLOTS];
static int writer_of[SLOTS];

static void *
watch(void *arg)
{
    int fd = (int)(long)arg;
    siginfo_t si;
    while (syscall(SYS_waitid, P_PID, pid_of[fd], &si, WEXITED | WNOWAIT,
                   NULL) < 0 &&
           errno == EINTR)
        ;
    char one = 1;
    if (write(writer_of[fd], &one, 1) < 0)
        return NULL;
    return NULL;
}

int
pidfd_open(pid_t pid, unsigned int flags)
{
    (void)flags;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    if (p[0] >= SLOTS) {
        close(p[0]);
        close(p[1]);
        errno = EMFILE;
        return -1;
    }
    pid_of[p[0]] = pid;
    writer_of[p[0]] = p[1];
    pthread_t t;
    if (pthread_create(&t, NULL, watch, (void *)(long)p[0])) {
        close(p[0]);
        close(p[1]);
        errno = EAGAIN;
        return -1;
    }
    pthread_detach(t);
    return p[0];
}

int
pidfd_send_signal(int fd, int sig, siginfo_t *info, unsigned int flags)
{
    (void)info;
    (void)flags;
    if (fd < 0 || fd >= SLOTS || !pid_of[fd]) {
        errno = EBADF;
        return -1;
    }
    return kill(pid_of[fd], sig);
}

int
waitid(idtype_t type, id_t id, siginfo_t *info, int options)
{
    if (type == P_PIDFD && id < SLOTS && pid_of[id]) {
        type = P_PID;
        id = (id_t)pid_of[id];
    }
    return (int)syscall(SYS_waitid, type, id, info, options, NULL);
}

int
execve(const char *path, char *const argv[], char *const envp[])
{
    const char *self = getenv("PIDFD_SHIM_SELF");
    if (self && !strcmp(path, "/proc/self/exe"))
        path = self;
    return (int)syscall(SYS_execve, path, argv, envp);
}
