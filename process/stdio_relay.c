/* The exec factory's relay, the same at both ends of the channel: thread
 * "out" copies the local stream connections (the child's link up, its log
 * connections) into frames on the channel, thread "in" copies frames from
 * the channel to them. In the parent it first writes the boot block (and
 * this executable) and opens a connection to the parent's own endpoint for
 * each stream the child starts; in the child it listens on unix sockets in
 * the bootstrap's directory. The ZMTP bytes pass as they are. */
#include "process/stdio_relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log_internal.h"
#include "core/sync.h"

/* The child's first bytes on the channel: anything else there (a tool
 * printing to stdout) is reported instead of being taken for frames. */
static const char magic[8] = {'K', 'I', 'N', 'S', 'T', 'D', 'I', 'O'};

/* A frame: op, stream id (big-endian u32), length (big-endian u32), then
 * length bytes. Stream 0 is the link up; log connections get 1, 2, ... */
enum { OP_DATA = 1, OP_CLOSE = 2 };
#define HDR 9
#define CHUNK 65536
#define STREAMS 16 /* open at once; more log connections are refused */

typedef struct stream {
    uint32_t id;
    int fd; /* -1: free slot */
} stream;

/* Both ends' relay: thread "out" copies the local connections into frames
 * on the channel (and, in the parent, first writes the boot block), thread
 * "in" copies frames from the channel to the connections. Only "out"
 * writes to the channel; a write to a connection waits only for the zmq I/O
 * thread reading it, so the two ends cannot wait on each other. */
typedef struct relay {
    pthread_mutex_t mu; /* guards streams, ended, refs */
    stream streams[STREAMS];
    int ch_in, ch_out;   /* the channel (one socket in the parent) */
    int wake[2];         /* "in" tells "out" of new streams and the end */
    int lsn_up, lsn_log; /* child: listeners, -1 when closed */
    int pidfd;           /* parent: the channel command, -1 in the child */
    uint32_t next_id;    /* child: the next log stream's id */
    uint32_t failed_id;  /* parent: the last log stream it could not open */
    char *target[2];     /* parent: where stream 0, and the others, lead */
    char *boot;          /* parent: written before anything else */
    size_t boot_len;
    bool stream_self;
    bool parent, ended;
    int refs; /* threads still running */
    void (*on_lost)(void);
    char name[64];
} relay;

static bool
write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t got = write(fd, p, len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        p += got;
        len -= (size_t)got;
    }
    return true;
}

/* Reads exactly len bytes, waiting also on the wake pipe: false at the end
 * of the channel, on an error, or once the relay ended. */
static bool
read_full(relay *r, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        struct pollfd pf[3] = {{.fd = r->ch_in, .events = POLLIN},
                               {.fd = r->wake[0], .events = POLLIN},
                               {.fd = r->pidfd, .events = POLLIN}};
        if (poll(pf, r->pidfd >= 0 ? 3 : 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        pthread_mutex_lock(&r->mu);
        bool ended = r->ended;
        pthread_mutex_unlock(&r->mu);
        /* The command gone ends the channel, also for what it started
         * out of our reach (another session, a container): they see its
         * end and exit. */
        if (ended || pf[2].revents)
            return false;
        if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t got = read(r->ch_in, p, len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        p += got;
        len -= (size_t)got;
    }
    return true;
}

static void
poke(relay *r)
{
    char c = 1;
    if (write(r->wake[1], &c, 1) < 0) {
        /* Full: the other thread has wake-ups pending already. */
    }
}

/* Ends the relay (once): both threads leave their loops. */
static void
relay_end(relay *r)
{
    pthread_mutex_lock(&r->mu);
    bool first = !r->ended;
    r->ended = true;
    pthread_mutex_unlock(&r->mu);
    if (first) {
        poke(r);
        /* The peer learns at once, even while the other thread is still
         * on its way out. */
        shutdown(r->ch_out, SHUT_WR);
    }
}

static void
relay_release(relay *r)
{
    pthread_mutex_lock(&r->mu);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (!last)
        return;
    if (r->on_lost)
        r->on_lost();
    for (int i = 0; i < STREAMS; i++)
        if (r->streams[i].fd >= 0)
            close(r->streams[i].fd);
    if (r->lsn_up >= 0)
        close(r->lsn_up);
    if (r->lsn_log >= 0)
        close(r->lsn_log);
    close(r->ch_in);
    if (r->ch_out != r->ch_in)
        close(r->ch_out);
    close(r->wake[0]);
    close(r->wake[1]);
    if (r->pidfd >= 0)
        close(r->pidfd);
    pthread_mutex_destroy(&r->mu);
    free(r->target[0]);
    free(r->target[1]);
    free(r->boot);
    free(r);
}

static stream *
find_stream(relay *r, uint32_t id)
{
    for (int i = 0; i < STREAMS; i++)
        if (r->streams[i].fd >= 0 && r->streams[i].id == id)
            return &r->streams[i];
    return NULL;
}

/* Adds a stream (under mu); false when every slot is taken. */
static bool
add_stream(relay *r, uint32_t id, int fd)
{
    for (int i = 0; i < STREAMS; i++) {
        if (r->streams[i].fd < 0) {
            r->streams[i] = (stream){.id = id, .fd = fd};
            return true;
        }
    }
    return false;
}

static bool
send_frame(relay *r, uint8_t op, uint32_t id, const void *data, uint32_t len)
{
    unsigned char h[HDR];
    h[0] = op;
    uint32_t nid = htonl(id), nlen = htonl(len);
    memcpy(h + 1, &nid, 4);
    memcpy(h + 5, &nlen, 4);
    return write_all(r->ch_out, h, HDR) &&
           (!len || write_all(r->ch_out, data, len));
}

/* Parent: a connection to target "ipc:PATH" or "tcp:HOST:PORT". */
static int
connect_target(const char *target)
{
    int fd = -1;
    if (!strncmp(target, "ipc:", 4)) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(target + 4) >= sizeof a.sun_path)
            return -1;
        strcpy(a.sun_path, target + 4);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a)) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    char host[256];
    const char *hp = target + 4;
    const char *colon = strrchr(hp, ':');
    if (!colon || (size_t)(colon - hp) >= sizeof host)
        return -1;
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(h, colon + 1, &hints, &ai))
        return -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

/* Thread "in": frames from the channel to the connections. */
static void *
in_main(void *arg)
{
    relay *r = arg;
    kin__thread_name("kin-exec-in");
    char *buf = malloc(CHUNK);
    if (r->parent && buf) {
        char m[sizeof magic];
        if (!read_full(r, m, sizeof m)) {
            free(buf);
            buf = NULL;
        } else if (memcmp(m, magic, sizeof m)) {
            KIN_ERROR("exec channel of %s: its stdout carried something "
                      "other than kin's link (\"%.8s...\"): does the command "
                      "print on stdout?",
                      r->name, m);
            free(buf);
            buf = NULL;
        }
    }
    unsigned char h[HDR];
    while (buf && read_full(r, h, HDR)) {
        uint32_t id, len;
        memcpy(&id, h + 1, 4);
        memcpy(&len, h + 5, 4);
        id = ntohl(id);
        len = ntohl(len);
        if ((h[0] != OP_DATA && h[0] != OP_CLOSE) || len > CHUNK) {
            KIN_ERROR("exec channel of %s: a malformed frame", r->name);
            break;
        }
        if (len && !read_full(r, buf, len))
            break;
        pthread_mutex_lock(&r->mu);
        stream *s = find_stream(r, id);
        int fd = s ? s->fd : -1;
        pthread_mutex_unlock(&r->mu);
        if (h[0] == OP_CLOSE) {
            if (id == 0)
                break;
            pthread_mutex_lock(&r->mu);
            if ((s = find_stream(r, id))) {
                close(s->fd);
                s->fd = -1;
            }
            pthread_mutex_unlock(&r->mu);
            poke(r);
            continue;
        }
        if (fd < 0 && r->parent && id && id == r->failed_id)
            continue; /* reported already: its bytes go nowhere */
        if (fd < 0 && r->parent) {
            /* A new stream from the child: open its connection here. */
            const char *to = r->target[id ? 1 : 0];
            fd = to ? connect_target(to) : -1;
            if (fd < 0 && id == 0) {
                KIN_ERROR("exec channel of %s: cannot reach %s: %s", r->name,
                          r->target[0], strerror(errno));
                break;
            }
            if (fd < 0) {
                KIN_WARN("exec channel of %s: cannot reach %s: %s; log "
                         "records of that connection are lost",
                         r->name, to ? to : "(no log endpoint)",
                         strerror(errno));
                r->failed_id = id;
                continue;
            }
            pthread_mutex_lock(&r->mu);
            if (fd >= 0 && !add_stream(r, id, fd)) {
                close(fd);
                fd = -1;
            }
            pthread_mutex_unlock(&r->mu);
            poke(r);
        }
        if (fd >= 0 && !write_all(fd, buf, len) && id == 0)
            break;
    }
    free(buf);
    relay_end(r);
    relay_release(r);
    return NULL;
}

/* Child: accepts a connection on a listener as stream id. */
static void
accept_stream(relay *r, int *lsn, uint32_t id, bool once)
{
    int fd = accept4(*lsn, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    pthread_mutex_lock(&r->mu);
    bool ok = add_stream(r, id, fd);
    pthread_mutex_unlock(&r->mu);
    if (!ok) {
        KIN_WARN("exec channel: more than %d log connections, one refused",
                 STREAMS - 1);
        close(fd);
    }
    if (once) {
        close(*lsn);
        *lsn = -1;
    }
}

static bool
write_boot(relay *r)
{
    if (!write_all(r->ch_out, r->boot, r->boot_len))
        return false;
    free(r->boot);
    r->boot = NULL;
    int exe =
        r->stream_self ? open("/proc/self/exe", O_RDONLY | O_CLOEXEC) : -1;
    if (r->stream_self && exe < 0)
        return false;
    bool ok = true;
    char *buf = exe >= 0 ? malloc(CHUNK) : NULL;
    if (exe >= 0 && !buf)
        ok = false;
    while (ok && exe >= 0) {
        ssize_t got = read(exe, buf, CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got == 0)
            break;
        ok = got > 0 && write_all(r->ch_out, buf, (size_t)got);
    }
    free(buf);
    if (exe >= 0)
        close(exe);
    return ok;
}

/* Thread "out": the connections into frames on the channel. */
static void *
out_main(void *arg)
{
    relay *r = arg;
    kin__thread_name("kin-exec-out");
    char *buf = malloc(CHUNK);
    bool ok = buf && (!r->parent || write_boot(r));
    if (!r->parent && ok)
        ok = write_all(r->ch_out, magic, sizeof magic);
    while (ok) {
        struct pollfd pf[STREAMS + 3];
        uint32_t ids[STREAMS + 3];
        nfds_t n = 0;
        pf[n++] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
        if (r->lsn_up >= 0)
            pf[n++] = (struct pollfd){.fd = r->lsn_up, .events = POLLIN};
        if (r->lsn_log >= 0)
            pf[n++] = (struct pollfd){.fd = r->lsn_log, .events = POLLIN};
        nfds_t first = n;
        pthread_mutex_lock(&r->mu);
        bool ended = r->ended;
        for (int i = 0; i < STREAMS; i++) {
            if (r->streams[i].fd >= 0) {
                ids[n] = r->streams[i].id;
                pf[n++] =
                    (struct pollfd){.fd = r->streams[i].fd, .events = POLLIN};
            }
        }
        pthread_mutex_unlock(&r->mu);
        if (ended || poll(pf, n, -1) < 0) {
            if (!ended && errno == EINTR)
                continue;
            break;
        }
        if (pf[0].revents) {
            char drain[64];
            if (read(r->wake[0], drain, sizeof drain) < 0) {
                /* Nothing pending after all. */
            }
        }
        for (nfds_t i = 1; i < first; i++) {
            if (!pf[i].revents)
                continue;
            if (pf[i].fd == r->lsn_up)
                accept_stream(r, &r->lsn_up, 0, true);
            else
                accept_stream(r, &r->lsn_log, r->next_id++, false);
        }
        for (nfds_t i = first; ok && i < n; i++) {
            if (!pf[i].revents)
                continue;
            ssize_t got = read(pf[i].fd, buf, CHUNK);
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (got > 0) {
                ok = send_frame(r, OP_DATA, ids[i], buf, (uint32_t)got);
                continue;
            }
            /* A connection ended here: the link up ends the relay. */
            if (ids[i] == 0)
                ok = false;
            else
                ok = send_frame(r, OP_CLOSE, ids[i], NULL, 0);
            pthread_mutex_lock(&r->mu);
            stream *s = find_stream(r, ids[i]);
            if (s && s->fd == pf[i].fd) {
                close(s->fd);
                s->fd = -1;
            }
            pthread_mutex_unlock(&r->mu);
        }
    }
    free(buf);
    relay_end(r);
    relay_release(r);
    return NULL;
}

static relay *
relay_new(int ch_in, int ch_out)
{
    relay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (pipe2(r->wake, O_CLOEXEC | O_NONBLOCK)) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    for (int i = 0; i < STREAMS; i++)
        r->streams[i].fd = -1;
    r->ch_in = ch_in;
    r->ch_out = ch_out;
    r->lsn_up = r->lsn_log = r->pidfd = -1;
    r->next_id = 1;
    return r;
}

/* Starts both threads; on failure the relay is freed (fds closed). */
static kin_err
relay_run(relay *r)
{
    /* A write to a channel whose reader is gone must fail with EPIPE, not
     * kill the process: the threads start with SIGPIPE blocked (a
     * thread-directed SIGPIPE then stays pending and dies with them). */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    r->refs = 2;
    int rc = pthread_create(&t, &attr, out_main, r);
    if (rc)
        r->refs = 1;
    int rc2 = rc ? -1 : pthread_create(&t, &attr, in_main, r);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc2) {
        relay_end(r);
        relay_release(r); /* the one of the thread that did not start */
    }
    return rc || rc2 ? -EAGAIN : KIN_OK;
}

kin_err
kin__exec_relay_start(kin__exec_plan *p, int fd, int pidfd, const char *name)
{
    relay *r = relay_new(fd, fd);
    if (!r) {
        close(fd);
        if (pidfd >= 0)
            close(pidfd);
        return -ENOMEM;
    }
    r->pidfd = pidfd;
    r->parent = true;
    r->target[0] = p->up_target;
    r->target[1] = p->log_target;
    r->boot = p->boot;
    r->boot_len = p->boot_len;
    r->stream_self = p->stream_self;
    p->up_target = p->log_target = p->boot = NULL;
    snprintf(r->name, sizeof r->name, "%s", name);
    return relay_run(r);
}

static int
listen_at(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 8)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

kin_err
kin__exec_child_start(const char *dir, bool logs, char *up, size_t up_size,
                      char *log, size_t log_size, void (*on_lost)(void))
{
    /* The channel must not leak into this context's own children: they
     * would hold it open after this process is gone. */
    if (fcntl(3, F_SETFD, FD_CLOEXEC) || fcntl(4, F_SETFD, FD_CLOEXEC))
        return -EINVAL;
    relay *r = relay_new(3, 4);
    if (!r)
        return -ENOMEM;
    r->on_lost = on_lost;
    snprintf(r->name, sizeof r->name, "parent");
    char path[256];
    kin_err e = KIN_OK;
    snprintf(path, sizeof path, "%s/up.sock", dir);
    if ((r->lsn_up = listen_at(path)) < 0 ||
        snprintf(up, up_size, "ipc://%s", path) >= (int)up_size)
        e = r->lsn_up < 0 ? -errno : -EINVAL;
    snprintf(path, sizeof path, "%s/log.sock", dir);
    if (!e && logs &&
        ((r->lsn_log = listen_at(path)) < 0 ||
         snprintf(log, log_size, "ipc://%s", path) >= (int)log_size))
        e = r->lsn_log < 0 ? -errno : -EINVAL;
    if (e) {
        r->on_lost = NULL;
        r->refs = 1;
        relay_release(r);
        return e;
    }
    return relay_run(r);
}

void
kin__exec_child_note_socket(const char *dir, const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6))
        return;
    char path[300];
    if (snprintf(path, sizeof path, "%s/sock", dir) >= (int)sizeof path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (!write_all(fd, endpoint + 6, strlen(endpoint + 6)))
        KIN_WARN("cannot note %s in %s", endpoint, path);
    close(fd);
}
