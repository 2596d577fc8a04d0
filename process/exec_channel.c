/* The exec factory. A child is started as
 *
 *   PREFIX... /bin/sh -c 'BOOTSTRAP' kin-boot ARGS...
 *
 * where PREFIX is any command that runs a program on the target with its
 * stdin and stdout connected (podman exec -i C, kubectl exec -i POD --,
 * unshare --net --, nsenter ..., chroot DIR). The bootstrap reads the
 * child's settings and, for zero-install, this executable from stdin as the
 * ssh factory's does, then runs the child with the channel moved to fds 3
 * and 4 (its stdout goes to stderr, so nothing it prints can corrupt the
 * channel). Inside the child a relay listens on unix sockets in the
 * bootstrap's private directory: its link up and its log connections
 * connect there, and each connection becomes a stream of frames over the
 * channel; the parent's relay opens a matching connection to its own
 * endpoint (or log endpoint) for each stream and copies the bytes, ZMTP as
 * it is. No network or shared filesystem is needed on the target. */
#include "process/exec_channel.h"

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
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log_internal.h"
#include "logs/logs.h"
#include "router/router.h"

/* POSIX sh, passed as one argument (no quoting layer in between). The EXIT
 * trap removes the private directory (the executable and the relay's
 * sockets) and the socket file the child names in $d/sock (a child killed
 * by a signal cannot remove it itself); HUP, INT and TERM become exits so
 * that dash runs it then too. */
static const char bootstrap[] =
    "umask 077; "
    "while IFS= read -r l && [ -n \"$l\" ]; do export \"$l\"; done; "
    "d=$(mktemp -d \"${TMPDIR:-/tmp}/kin-boot.XXXXXXXX\") || exit 125; "
    "clean() { if [ -s \"$d/sock\" ]; then rm -f \"$(cat \"$d/sock\")\"; "
    "fi; rm -rf \"$d\"; }; "
    "trap clean EXIT; "
    "trap \"exit 129\" HUP; trap \"exit 130\" INT; trap \"exit 143\" TERM; "
    "p=${KIN_BOOT_PROGRAM:-}; "
    "if [ -z \"$p\" ]; then "
    "p=$d/exe; "
    "head -c \"$KIN_BOOT_SIZE\" >\"$p\" || exit 125; "
    "if [ \"$(wc -c <\"$p\")\" -ne \"$KIN_BOOT_SIZE\" ]; then "
    "echo \"kin: the executable arrived truncated\" >&2; exit 125; fi; "
    "chmod 700 \"$p\"; "
    "fi; "
    "unset KIN_BOOT_PROGRAM KIN_BOOT_SIZE; "
    "export KIN_CHILD_STDIO_DIR=\"$d\"; "
    "\"$p\" \"$@\" 3<&0 4>&1 </dev/null >&2";

/* The child's first bytes on the channel: anything else there (a tool
 * printing to stdout) is reported instead of being taken for frames. */
static const char magic[8] = {'K', 'I', 'N', 'S', 'T', 'D', 'I', 'O'};

/* A frame: op, stream id (big-endian u32), length (big-endian u32), then
 * length bytes. Stream 0 is the link up; log connections get 1, 2, ... */
enum { OP_DATA = 1, OP_CLOSE = 2 };
#define HDR 9
#define CHUNK 65536
#define STREAMS 16 /* open at once; more log connections are refused */

/* --- the plan --------------------------------------------------------------
 */

bool
kin__exec_wanted(const kin_spawn_opts *opts)
{
    return opts && (opts->exec || opts->container);
}

void
kin__exec_plan_free(kin__exec_plan *p)
{
    for (size_t i = 0; p->argv && p->argv[i]; i++)
        free(p->argv[i]);
    free(p->argv);
    free(p->path);
    free(p->boot);
    free(p->up_target);
    free(p->log_target);
    *p = (kin__exec_plan){0};
}

static bool
has_newline(const char *s)
{
    return s && strpbrk(s, "\r\n");
}

/* "ipc:PATH" or "tcp:HOST:PORT" for a zmq endpoint this host reaches; a
 * wildcard address means this host. NULL for anything else. */
static char *
target_of(const char *endpoint, bool *tcp)
{
    char *out = NULL;
    *tcp = false;
    if (!strncmp(endpoint, "ipc://", 6))
        return asprintf(&out, "ipc:%s", endpoint + 6) < 0 ? NULL : out;
    if (strncmp(endpoint, "tcp://", 6))
        return NULL;
    const char *hp = endpoint + 6;
    const char *colon = strrchr(hp, ':');
    if (!colon)
        return NULL;
    *tcp = true;
    if (!strncmp(hp, "0.0.0.0:", 8) || !strncmp(hp, "*:", 2))
        return asprintf(&out, "tcp:127.0.0.1%s", colon) < 0 ? NULL : out;
    return asprintf(&out, "tcp:%s", hp) < 0 ? NULL : out;
}

/* The prefix for a container preset, "TOOL:NAME". */
static kin_err
preset(const char *container, const char *words[6], size_t *count)
{
    const char *colon = strchr(container, ':');
    if (!colon || !colon[1] || colon[1] == '-')
        return -EINVAL;
    size_t tl = (size_t)(colon - container);
    const char *name = colon + 1;
    size_t k = 0;
    if (tl == 6 && !strncmp(container, "podman", 6)) {
        words[k++] = "podman";
    } else if (tl == 6 && !strncmp(container, "docker", 6)) {
        words[k++] = "docker";
    } else if (tl == 7 && !strncmp(container, "kubectl", 7)) {
        words[k++] = "kubectl";
    } else {
        return -EINVAL;
    }
    words[k++] = "exec";
    words[k++] = "-i";
    words[k++] = name;
    if (!strcmp(words[0], "kubectl"))
        words[k++] = "--";
    *count = k;
    return KIN_OK;
}

static char *
boot_block(const kin__exec_in *in, const kin__exec_plan *p, char *const *vars,
           int nvars, size_t *len)
{
    kin_buf b = {0};
    bool ok = true;
    char line[160];
    for (int i = 0; i < nvars && ok; i++)
        ok = !kin__buf_str(&b, vars[i]) && !kin__buf_str(&b, "\n");
    snprintf(line, sizeof line, KIN__ENV_WHERE "=%s\n", p->label);
    ok = ok && !kin__buf_str(&b, line);
    if (in->opts->program) {
        ok = ok && !kin__buf_str(&b, "KIN_BOOT_PROGRAM=") &&
             !kin__buf_str(&b, in->opts->program) && !kin__buf_str(&b, "\n");
    } else {
        snprintf(line, sizeof line, "KIN_BOOT_SIZE=%lld\n", in->exe_size);
        ok = ok && !kin__buf_str(&b, line);
    }
    ok = ok && !kin__buf_str(&b, "\n");
    if (!ok) {
        kin_buf_release(&b);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

kin_err
kin__exec_plan_build(const kin__exec_in *in, kin__child_link *l,
                     char *const *vars, int nvars, kin__exec_plan *p)
{
    const kin_spawn_opts *o = in->opts;
    const char *words[6];
    size_t nwords = 0;
    char *const *prefix = o->exec;
    *p = (kin__exec_plan){0};
    if ((o->exec && o->container) || has_newline(o->program) ||
        has_newline(l->name) || has_newline(o->container))
        return -EINVAL;
    if (o->container && preset(o->container, words, &nwords))
        return -EINVAL;
    if (o->exec && (!o->exec[0] || !o->exec[0][0]))
        return -EINVAL;
    bool up_tcp = false, log_tcp = false;
    p->stream_self = !o->program;
    p->up_target = target_of(in->far_endpoint, &up_tcp);
    if (!p->up_target)
        return -EINVAL;
    if (in->log_endpoint[0] &&
        !(p->log_target = target_of(in->log_endpoint, &log_tcp))) {
        kin__exec_plan_free(p);
        return -EINVAL;
    }
    /* The label kin tree shows: the preset as given, or the prefix. */
    if (o->container) {
        snprintf(p->label, sizeof p->label, "%s", o->container);
    } else {
        size_t at = 0;
        for (size_t i = 0; o->exec[i] && at < sizeof p->label - 1; i++)
            at += (size_t)snprintf(p->label + at, sizeof p->label - at, "%s%s",
                                   i ? " " : "", o->exec[i]);
        for (char *c = p->label; *c; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
    }
    l->endpoint = "stdio";
    l->log_endpoint = p->log_target ? "stdio" : "";
    l->curve_up = up_tcp;
    l->log_curve = p->log_target && (log_tcp || in->logs_curve);
    l->remote = true; /* heartbeats: the channel may stall, not only end */
    l->stdio = true;
    if (!vars)
        return KIN_OK;

    size_t extra = 0;
    while (prefix && prefix[extra])
        extra++;
    size_t args = 0;
    while (o->argv && o->argv[args])
        args++;
    p->boot = boot_block(in, p, vars, nvars, &p->boot_len);
    p->argv = calloc(extra + nwords + args + 6, sizeof *p->argv);
    if (!p->boot || !p->argv) {
        kin__exec_plan_free(p);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < nwords; i++)
        p->argv[k++] = strdup(words[i]);
    for (size_t i = 0; i < extra; i++)
        p->argv[k++] = strdup(prefix[i]);
    p->argv[k++] = strdup("/bin/sh");
    p->argv[k++] = strdup("-c");
    p->argv[k++] = strdup(bootstrap);
    p->argv[k++] = strdup("kin-boot");
    for (size_t i = 1; i < args; i++)
        p->argv[k++] = strdup(o->argv[i]);
    for (size_t i = 0; i < k; i++) {
        if (!p->argv[i]) {
            kin__exec_plan_free(p);
            return -ENOMEM;
        }
    }
    return KIN_OK;
}

/* name as execve wants it: as is with a slash, else the first match in
 * PATH. NULL with errno set when there is none. */
static char *
find_in_path(const char *name)
{
    if (strchr(name, '/'))
        return strdup(name);
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        char *cand;
        if (asprintf(&cand, "%.*s/%s", (int)len, path, name) < 0)
            return NULL;
        if (access(cand, X_OK) == 0)
            return cand;
        free(cand);
        path += len + (path[len] == ':');
    }
    errno = ENOENT;
    return NULL;
}

kin_err
kin__exec_prepare(kin_node *n, const kin_spawn_opts *o,
                  const kin__child_link *link, kin__exec_plan *p)
{
    *p = (kin__exec_plan){0};
    char far[256];
    kin_err e = kin__router_far_endpoint(n, far, sizeof far);
    if (e)
        return e;
    kin__exec_in in = {.opts = o,
                       .far_endpoint = far,
                       .log_endpoint = kin__logs_endpoint(n),
                       .logs_curve = kin__logs_curve(n)};
    struct stat st;
    if (!o->program) {
        if (stat("/proc/self/exe", &st))
            return -errno;
        in.exe_size = (long long)st.st_size;
    }
    kin__child_link l = *link;
    if ((e = kin__exec_plan_build(&in, &l, NULL, 0, p)))
        return e;
    kin__exec_plan_free(p);
    char *vars[KIN__CHILD_VARS_MAX];
    int count = kin__child_vars(n, &l, vars);
    if (count < 0)
        return -ENOMEM;
    e = kin__exec_plan_build(&in, &l, vars, count, p);
    for (int i = 0; i < count; i++)
        free(vars[i]);
    if (e)
        return e;
    if (!(p->path = find_in_path(p->argv[0]))) {
        e = -errno;
        KIN_ERROR("no %s in PATH to start %s through", p->argv[0], l.name);
        kin__exec_plan_free(p);
    }
    return e;
}

/* --- the relay ---------------------------------------------------------------
 */

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
    if (!rc)
        pthread_setname_np(t, "kin-exec-out");
    else
        r->refs = 1;
    int rc2 = rc ? -1 : pthread_create(&t, &attr, in_main, r);
    if (!rc2) {
        pthread_setname_np(t, "kin-exec-in");
    }
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
