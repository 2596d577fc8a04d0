/* The fork factory: a warm zygote per node that forks children on request
 * (see zygote.h). The node's side starts it and asks it for children over
 * a SOCK_SEQPACKET pair; the zygote's side runs inside kin_init, before
 * anything in the process has started a thread. */
#include "process/zygote.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log_internal.h"
#include "core/task.h"
#include "router/router.h"

extern char **environ;

#define REQ_MAX 65536      /* a request: the child's settings */
#define FDS 3              /* with it: stdout, stderr, the reply socket */
#define REPLY_WAIT_MS 5000 /* the zygote answers in well under 1 ms */

/* The broker thread alone starts and ends a zygote (so it and the
 * children it forks die with that thread), always while a caller holds mu
 * (ensure, stop, a stuck fork); spawning threads send their requests on fd
 * under mu. ensure() reads pidfd after its own job ran. */
struct kin__zygote {
    pthread_mutex_t mu; /* serialises ensure(), stop() and sends on fd */
    pid_t pid;          /* 0: none */
    unsigned gen;       /* bumped by each start */
    bool broken;        /* a request found it gone: replace it */
    int pidfd;          /* -1: none */
    int fd;             /* our end of the control socket; -1: none */
};

/* --- the zygote's side ------------------------------------------------------
 */

/* Where glibc keeps a thread's kernel tid in its thread descriptor: glibc
 * publishes the offset for thread debuggers. A raw clone leaves the
 * parent's tid there, and glibc's own fork would have stored the child's;
 * the clone asks the kernel to store it (CLONE_CHILD_SETTID). -1: unknown. */
static long
tid_offset(void)
{
    const uint32_t *d = dlsym(RTLD_DEFAULT, "_thread_db_pthread_tid");
    /* {size in bits, count, offset} */
    if (!d || d[0] != 8 * sizeof(pid_t) || d[1] != 1)
        return -1;
    return (long)d[2];
}

static int
thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* fork(), but the child's parent is our parent: the node reaps it. */
static pid_t
clone_sibling(long tid_off)
{
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = CLONE_PARENT | CLONE_CHILD_SETTID;
    a.child_tid = (uint64_t)(uintptr_t)((char *)pthread_self() + tid_off);
    /* exit_signal stays 0: with CLONE_PARENT the kernel takes ours
     * (SIGCHLD), and a parent may not be told otherwise. */
    return (pid_t)syscall(SYS_clone3, &a, sizeof a);
}

static void
reseed(void)
{
    /* The zygote's generators would give every child the same numbers. */
    unsigned short s[3];
    if (getrandom(s, sizeof s, 0) != (ssize_t)sizeof s) {
        uint64_t t = kin__now_ns() ^ ((uint64_t)getpid() << 40);
        memcpy(s, &t, sizeof s);
    }
    unsigned seed = (unsigned)s[0] << 16 ^ s[1] ^ (unsigned)s[2] << 8;
    srandom(seed);
    srand(seed);
    seed48(s);
}

/* Answers on the request's own reply socket, and closes it. */
static void
reply(int back, int32_t v)
{
    while (send(back, &v, sizeof v, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
    close(back);
}

static void serve(int ctl, long off, pid_t parent);

/* The zygote a forked child made for its own node (KIN__ENV_FORKS in its
 * request), before it went on into kin_init; the node's first ensure()
 * takes it. pid 0: none. */
static pthread_mutex_t pending_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t pending_pid;
static int pending_pidfd = -1, pending_fd = -1;

/* Does the request ask for a sub-zygote? */
static bool
wants_zygote(const char *req, size_t len)
{
    static const char key[] = KIN__ENV_FORKS "=1";
    for (size_t i = 0; i < len;) {
        size_t l = strnlen(req + i, len - i);
        if (l == len - i)
            break;
        if (l == sizeof key - 1 && !memcmp(req + i, key, l))
            return true;
        i += l + 1;
    }
    return false;
}

/* The forked child, still single-threaded and before its own settings are
 * in its environment, forks the zygote of its node: a copy of the zygote
 * it came from (warm, every symbol bound), its own child, so the children
 * it forks (CLONE_PARENT) are this node's. Returns true only in such a
 * grandchild, set up already; in the child, false, with the sub-zygote in
 * pending (or none: ensure() then execs one). */
static bool
sub_zygote(char *req, size_t len, int out, int err, long off)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
        return false;
    pid_t self = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* Not the child's: its output pipes, and its settings (its ids,
         * the tree's key) that its parent sent. */
        close(sv[0]);
        if (out > STDERR_FILENO)
            close(out);
        if (err > STDERR_FILENO)
            close(err);
        memset(req, 0, len);
        /* A group of its own (the child's stop signals the child's group),
         * death with the child's main thread, which stays in kin_init
         * until the process exits; so do the grandchildren, whose parent
         * is that thread too. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != self)
            _exit(0);
        serve(sv[1], off, self);
        return true;
    }
    close(sv[1]);
    int pidfd = pid > 0 ? pidfd_open(pid, 0) : -1;
    if (pidfd < 0) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
        close(sv[0]);
        return false;
    }
    pthread_mutex_lock(&pending_mu);
    pending_pid = pid;
    pending_pidfd = pidfd;
    pending_fd = sv[0];
    pthread_mutex_unlock(&pending_mu);
    return false;
}

/* The forked child: its own process group, death with the thread that
 * started its zygote (its real parent too), a zygote of its own when
 * asked, its output pipes, and its settings in the environment. */
static void
become_child(char *req, size_t len, int ctl, int out, int err, int back,
             pid_t parent, long off)
{
    close(ctl);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* The child answers for itself (in its own group already, which the
     * node signals): should the zygote die right after the clone, the
     * node still learns of, and reaps, this child. */
    reply(back, (int32_t)getpid());
    if (getppid() != parent)
        _exit(127);
    if (wants_zygote(req, len) && sub_zygote(req, len, out, err, off))
        return; /* a child of the sub-zygote, on its way into kin_init */
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    if (out > STDERR_FILENO)
        close(out);
    if (err > STDERR_FILENO)
        close(err);
    for (size_t i = 0; i < len;) {
        char *s = req + i;
        size_t l = strnlen(s, len - i);
        if (l == len - i)
            break; /* not terminated: the parent never sends that */
        if (!strncmp(s, KIN__ENV_PREFIX, strlen(KIN__ENV_PREFIX)))
            putenv(s);
        i += l + 1;
    }
    reseed();
}

/* Forks a child per request on ctl (children of parent, ours) until ctl
 * is closed; returns only in a child, on its way into kin_init. */
static void
serve(int ctl, long off, pid_t parent)
{
    static char req[REQ_MAX];
    for (;;) {
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(FDS * sizeof(int))];
        } cm;
        struct iovec iov = {req, sizeof req - 1};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cm.buf,
                            .msg_controllen = sizeof cm.buf};
        ssize_t got = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            _exit(0); /* the node let us go */
        req[got] = 0;
        int fds[FDS] = {-1, -1, -1}; /* stdout, stderr, reply */
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(FDS * sizeof(int)))
            memcpy(fds, CMSG_DATA(c), sizeof fds);
        if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0 ||
            (mh.msg_flags & MSG_TRUNC)) {
            for (int i = 0; i < FDS; i++)
                if (fds[i] >= 0 && i != 2)
                    close(fds[i]);
            if (fds[2] >= 0)
                reply(fds[2], -EINVAL);
            continue; /* without a reply socket the asker times out */
        }
        fflush(NULL);
        pid_t pid = clone_sibling(off);
        if (pid == 0) {
            become_child(req, (size_t)got, ctl, fds[0], fds[1], fds[2], parent,
                         off);
            return; /* on into kin_init, as a child */
        }
        int32_t r = -errno;
        close(fds[0]);
        close(fds[1]);
        if (pid < 0)
            reply(fds[2], r);
        else
            close(fds[2]); /* the child answers */
    }
}

void
kin__zygote_serve(void)
{
    const char *v = getenv(KIN__ENV_ZYGOTE);
    if (!v)
        return;
    int ctl = -1, ready = -1, bindnow = 0;
    if (sscanf(v, "%d,%d,%d", &ctl, &ready, &bindnow) != 3) {
        fprintf(stderr, "kin zygote: bad %s\n", KIN__ENV_ZYGOTE);
        _exit(1);
    }
    unsetenv(KIN__ENV_ZYGOTE);
    if (bindnow) /* ours, for the warm-up: not the children's */
        unsetenv("LD_BIND_NOW");
    fcntl(ctl, F_SETFD, FD_CLOEXEC);
    long off = tid_offset();
    /* Warm-up: the name service switch is read once per process, on the
     * first protocol lookup (libzmq makes one); read it here, not in every
     * child. */
    getprotobyname("tcp");
    endprotoent();
    /* libsodium (libzmq's, for CURVE) picks its implementations from the
     * CPU's features on first use: cpuid, slow under a hypervisor. Its
     * random numbers come from the kernel (getrandom), not from state the
     * children would share. */
    int (*sodium)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "sodium_init");
    if (sodium)
        sodium();
    /* libzmq built with OpenPGM calls pgm_init in every zmq_ctx_new: on
     * the first call it reads the protocol database and the CPU count and
     * sets up its clocks (~50 us of each child's start). Done once here,
     * the children's call only counts a reference. kin never uses pgm://,
     * so its state (its random generator's too) matters to no child. */
    bool (*pgm)(void **) = (bool (*)(void **))dlsym(RTLD_DEFAULT, "pgm_init");
    if (pgm)
        pgm(NULL);
    int threads = thread_count();
    char why = off < 0 ? 'N' : threads != 1 ? 'T' : 'R';
    fflush(NULL);
    while (write(ready, &why, 1) < 0 && errno == EINTR)
        ;
    close(ready);
    if (why != 'R')
        _exit(1);
    serve(ctl, off, getppid());
}

/* --- the node's side
 * ----------------------------------------------------------
 */

typedef struct start_req {
    kin__procs *p;
    char **envp;
    int ctl;   /* the zygote's end of the control socket */
    int ours;  /* ours */
    int ready; /* the write end of the ready pipe */
    int devnull;
    kin_err result;
    bool done;
} start_req;

static void
job_done(kin__procs *p, bool *done)
{
    pthread_mutex_lock(&p->mu);
    *done = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

static void
wait_done(kin__procs *p, bool *done)
{
    pthread_mutex_lock(&p->mu);
    while (!*done)
        pthread_cond_wait(&p->cond, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* Broker thread (so the zygote, and the children it forks as our
 * children, die with this thread through PR_SET_PDEATHSIG). */
static void
start_job(void *arg, void *unused)
{
    start_req *r = arg;
    kin__zygote *z = r->p->zygote;
    pid_t parent = getpid();
    static char *const argv[] = {"kin-zygote", NULL};
    pid_t pid = fork();
    if (pid < 0) {
        r->result = -errno;
    } else if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++)
            sigaction(sig, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(r->devnull, STDIN_FILENO);
        dup2(r->devnull, STDOUT_FILENO);
        fcntl(r->ctl, F_SETFD, 0);
        fcntl(r->ready, F_SETFD, 0);
        execve("/proc/self/exe", argv, r->envp);
        _exit(127);
    } else {
        int pidfd = pidfd_open(pid, 0);
        if (pidfd < 0) {
            r->result = -errno;
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        } else {
            z->pid = pid;
            z->pidfd = pidfd;
            z->gen++;
            z->broken = false;
            z->fd = r->ours;
            r->ours = -1;
        }
    }
    job_done(r->p, &r->done);
}

/* Broker thread: kills the zygote (it holds nothing worth a goodbye, and
 * may still be in the program's main) and reaps it. */
static void
retire(kin__zygote *z)
{
    if (z->pid > 0) {
        kill(z->pid, SIGKILL);
        while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (z->pidfd >= 0)
        close(z->pidfd);
    if (z->fd >= 0)
        close(z->fd);
    z->pid = 0;
    z->pidfd = z->fd = -1;
}

typedef struct retire_req {
    kin__procs *p;
    bool done;
} retire_req;

static void
retire_job(void *arg, void *unused)
{
    retire_req *r = arg;
    retire(r->p->zygote);
    job_done(r->p, &r->done);
}

static kin_err
retire_sync(kin__procs *p)
{
    retire_req r = {.p = p};
    kin_err e =
        kin__broker_defer(kin__node_broker(p->node), retire_job, &r, NULL);
    if (!e)
        wait_done(p, &r.done);
    return e;
}

/* This environment without KIN_CHILD_*, plus the zygote's setting and
 * LD_BIND_NOW (every symbol bound before the first fork, not once per
 * child), unless the program runs with it already. */
static char **
zygote_env(int ctl, int ready)
{
    size_t count = 0;
    while (environ[count])
        count++;
    char **env = calloc(count + 3, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    bool bindnow = getenv("LD_BIND_NOW") != NULL;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], KIN__ENV_PREFIX, strlen(KIN__ENV_PREFIX)) &&
            !(env[k++] = strdup(environ[i])))
            goto oom;
    if (asprintf(&env[k++], KIN__ENV_ZYGOTE "=%d,%d,%d", ctl, ready, !bindnow) <
            0 ||
        (!bindnow && !(env[k++] = strdup("LD_BIND_NOW=1"))))
        goto oom;
    return env;
oom:
    for (size_t j = 0; j < k; j++)
        free(env[j]);
    free(env);
    return NULL;
}

static bool
alive(const kin__zygote *z)
{
    struct pollfd pf = {.fd = z->pidfd, .events = POLLIN};
    return z->pidfd >= 0 && poll(&pf, 1, 0) == 0;
}

/* Reads the zygote's first word: 'R' once it serves. */
static kin_err
await_ready(int fd, int timeout_ms, char *errbuf, size_t errbuf_size)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    uint64_t dl = kin__now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        uint64_t now = kin__now_ns();
        int left = now >= dl ? 0 : (int)((dl - now) / 1000000u);
        int got = poll(&pf, 1, left);
        if (got < 0 && errno == EINTR)
            continue;
        if (got == 0) {
            snprintf(errbuf, errbuf_size,
                     "zygote: not ready within %d ms (is kin_init reached?)",
                     timeout_ms);
            return KIN_ETIMEOUT;
        }
        break;
    }
    char why = 0;
    ssize_t n;
    while ((n = read(fd, &why, 1)) < 0 && errno == EINTR)
        ;
    if (n == 1 && why == 'R')
        return KIN_OK;
    snprintf(errbuf, errbuf_size, "zygote: %s",
             why == 'N'   ? "this C library does not say where a thread's "
                            "id lives (_thread_db_pthread_tid)"
             : why == 'T' ? "the program started threads before kin_init"
                          : "the program exited before kin_init");
    return why == 'N' ? -ENOSYS : KIN_ESPAWN;
}

static kin_err
start(kin__procs *p, int timeout_ms, char *errbuf, size_t errbuf_size)
{
    int sv[2] = {-1, -1}, rp[2] = {-1, -1};
    start_req r = {.p = p, .ctl = -1, .ours = -1, .ready = -1, .devnull = -1};
    kin_err e = KIN_OK;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) ||
        pipe2(rp, O_CLOEXEC) ||
        (r.devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        e = -errno;
        goto out;
    }
    r.ours = sv[0];
    r.ctl = sv[1];
    r.ready = rp[1];
    sv[0] = -1;
    if (!(r.envp = zygote_env(r.ctl, r.ready))) {
        e = -ENOMEM;
        goto out;
    }
    if ((e = kin__broker_defer(kin__node_broker(p->node), start_job, &r, NULL)))
        goto out;
    wait_done(p, &r.done);
    if ((e = r.result))
        goto out;
    close(rp[1]);
    rp[1] = -1;
    if ((e = await_ready(rp[0], timeout_ms, errbuf, errbuf_size)))
        retire_sync(p);
out:
    if (e && errbuf && errbuf_size && !errbuf[0])
        snprintf(errbuf, errbuf_size, "zygote: %s", kin_strerror(e));
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (rp[i] >= 0)
            close(rp[i]);
    }
    if (r.ours >= 0)
        close(r.ours);
    if (r.devnull >= 0)
        close(r.devnull);
    for (size_t i = 0; r.envp && r.envp[i]; i++)
        free(r.envp[i]);
    free(r.envp);
    return e;
}

/* Takes the sub-zygote this process forked at its start, if any (once:
 * a zygote replaced later is exec'd). */
static bool
adopt(kin__zygote *z)
{
    pthread_mutex_lock(&pending_mu);
    bool got = pending_pid > 0;
    if (got) {
        z->pid = pending_pid;
        z->pidfd = pending_pidfd;
        z->fd = pending_fd;
        z->gen++;
        z->broken = false;
        pending_pid = 0;
        pending_pidfd = pending_fd = -1;
    }
    pthread_mutex_unlock(&pending_mu);
    return got;
}

/* A sub-zygote no node took: ended with the first node stopped. */
static void
drop_pending(void)
{
    pthread_mutex_lock(&pending_mu);
    if (pending_pid > 0) {
        close(pending_fd); /* it exits on its own; the kill makes sure */
        kill(pending_pid, SIGKILL);
        while (waitpid(pending_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        close(pending_pidfd);
    }
    pending_pid = 0;
    pending_pidfd = pending_fd = -1;
    pthread_mutex_unlock(&pending_mu);
}

kin_err
kin__zygote_ensure(kin__procs *p, int timeout_ms, char *errbuf,
                   size_t errbuf_size)
{
    pthread_mutex_lock(&p->mu);
    if (!p->zygote && (p->zygote = calloc(1, sizeof *p->zygote))) {
        pthread_mutex_init(&p->zygote->mu, NULL);
        p->zygote->pidfd = p->zygote->fd = -1;
    }
    kin__zygote *z = p->zygote;
    pthread_mutex_unlock(&p->mu);
    if (!z)
        return -ENOMEM;
    char none[1];
    if (!errbuf || !errbuf_size) {
        errbuf = none;
        errbuf_size = sizeof none;
    }
    errbuf[0] = 0;
    pthread_mutex_lock(&z->mu);
    kin_err e = KIN_OK;
    if (z->broken || !alive(z)) {
        if (z->pid > 0) {
            KIN_WARN("zygote (pid %d) is gone: starting another", (int)z->pid);
            e = retire_sync(p);
        }
        if (!e && !adopt(z))
            e = start(p, timeout_ms, errbuf, errbuf_size);
    }
    pthread_mutex_unlock(&z->mu);
    return e;
}

/* Sends one request on the shared control socket (a SOCK_SEQPACKET
 * message is atomic, so spawning threads need no lock to send), with its
 * own reply socket: each asker waits for its own answer while the zygote
 * works through the requests in order. */
static kin_err
send_request(kin__zygote *z, const char *req, size_t len, const int fds[FDS],
             unsigned *gen)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(FDS * sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof cm);
    struct iovec iov = {(void *)req, len};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cm.buf,
                        .msg_controllen = sizeof cm.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(FDS * sizeof(int));
    memcpy(CMSG_DATA(c), fds, FDS * sizeof(int));
    /* Under z->mu only to read z->fd: a retire (stop, or a zygote
     * replaced) closes it under the same lock. */
    pthread_mutex_lock(&z->mu);
    ssize_t sent = -1;
    errno = EPIPE;
    *gen = z->gen;
    if (z->fd >= 0)
        while ((sent = sendmsg(z->fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
            ;
    pthread_mutex_unlock(&z->mu);
    if (sent < 0)
        return errno == ECONNRESET ? -EPIPE : -errno;
    return KIN_OK;
}

/* The zygote of generation gen hung up on a request: it is dying (its
 * pidfd may not say so yet), so the next ensure() replaces it. */
static kin_err
gone(kin__zygote *z, unsigned gen)
{
    pthread_mutex_lock(&z->mu);
    if (z->gen == gen)
        z->broken = true;
    pthread_mutex_unlock(&z->mu);
    return -EPIPE;
}

/* The KIN_CHILD_* entries of envp, each with its NUL: the request. */
static char *
pack_request(char *const *envp, size_t *len)
{
    size_t n = 0;
    for (size_t i = 0; envp[i]; i++)
        if (!strncmp(envp[i], KIN__ENV_PREFIX, strlen(KIN__ENV_PREFIX)))
            n += strlen(envp[i]) + 1;
    if (n >= REQ_MAX) {
        errno = E2BIG;
        return NULL;
    }
    char *req = malloc(n + 1);
    if (!req)
        return NULL;
    n = 0;
    for (size_t i = 0; envp[i]; i++) {
        if (strncmp(envp[i], KIN__ENV_PREFIX, strlen(KIN__ENV_PREFIX)))
            continue;
        size_t l = strlen(envp[i]) + 1;
        memcpy(req + n, envp[i], l);
        n += l;
    }
    *len = n;
    return req;
}

pid_t
kin__zygote_fork(kin__procs *p, char *const *envp, int out_fd, int err_fd)
{
    pthread_mutex_lock(&p->mu);
    kin__zygote *z = p->zygote;
    pthread_mutex_unlock(&p->mu);
    if (!z)
        return -EPIPE;
    size_t len = 0;
    char *req = pack_request(envp, &len);
    if (!req)
        return -errno;
    int back[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, back)) {
        free(req);
        return -errno;
    }
    int fds[FDS] = {out_fd, err_fd, back[1]};
    unsigned gen;
    kin_err e = send_request(z, req, len, fds, &gen);
    free(req);
    close(back[1]); /* the zygote has its copy: our end sees EOF if it dies */
    if (e) {
        close(back[0]);
        return e == -EPIPE ? gone(z, gen) : e;
    }
    struct pollfd pf = {.fd = back[0], .events = POLLIN};
    int ready;
    while ((ready = poll(&pf, 1, REPLY_WAIT_MS)) < 0 && errno == EINTR)
        ;
    int32_t r = 0;
    ssize_t got = 0;
    if (ready > 0)
        while ((got = recv(back[0], &r, sizeof r, 0)) < 0 && errno == EINTR)
            ;
    close(back[0]);
    if (ready == 0) {
        KIN_ERROR("zygote did not answer within %d ms: replacing it",
                  REPLY_WAIT_MS);
        pthread_mutex_lock(&z->mu);
        if (retire_sync(p))
            retire(z);
        pthread_mutex_unlock(&z->mu);
        return -ETIMEDOUT;
    }
    if (got != (ssize_t)sizeof r)
        return gone(z, gen);
    return r;
}

void
kin__zygote_stop(kin__procs *p)
{
    drop_pending();
    kin__zygote *z = p->zygote;
    if (!z)
        return;
    pthread_mutex_lock(&z->mu);
    if (z->pid > 0 && retire_sync(p))
        retire(z); /* the broker is gone: nobody else uses it now */
    pthread_mutex_unlock(&z->mu);
    pthread_mutex_lock(&p->mu);
    p->zygote = NULL;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&z->mu);
    free(z);
}
