/* The ssh factory. A remote child is started as
 *
 *   ssh -T [user's ssh arguments] -R REMOTE_UP:LOCAL_UP [-R REMOTE_LOG:LOG]
 *       -- HOST exec /bin/sh -c 'BOOTSTRAP' kin-boot ARGS...
 *
 * The parent's ROUTER socket (and its log forwarder's) is forwarded to a
 * fresh unix socket on the remote host, so the link rides inside the ssh
 * connection: no port to open, ssh's authentication and encryption, and
 * sshd creates the remote socket 0600 (StreamLocalBindMask). A parent bound
 * on tcp on one of its addresses is reached directly instead, over tcp with
 * CURVE (the key travels in the boot block). The
 * bootstrap reads the child's settings from stdin, one NAME=VALUE per
 * line up to an empty line (so the tree's key never shows in argv), then,
 * for zero-install, KIN_BOOT_SIZE bytes of this very executable into a
 * private temporary directory, and runs it. It stays as the child's parent
 * to remove that directory and the forwarded sockets once the child is
 * gone, whatever killed it. */
#include "process/ssh.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log_internal.h"
#include "logs/logs.h"
#include "router/router.h"

/* POSIX sh on one line (login shells that are not POSIX, csh or fish,
 * still parse `exec /bin/sh -c '...'`), with no single quotes, since it
 * travels inside them. The EXIT trap cleans up; HUP, INT and TERM are
 * turned into exits so that dash runs it for them too. */
static const char bootstrap[] =
    "umask 077; "
    "while IFS= read -r l && [ -n \"$l\" ]; do export \"$l\"; done; "
    "c=${KIN_BOOT_CLEAN:-}; "
    "d=$(mktemp -d \"${TMPDIR:-/tmp}/kin-boot.XXXXXXXX\") || exit 125; "
    "trap \"rm -rf \\\"\\$d\\\" $c\" EXIT; "
    "trap \"exit 129\" HUP; trap \"exit 130\" INT; trap \"exit 143\" TERM; "
    "p=${KIN_BOOT_PROGRAM:-}; "
    "if [ -z \"$p\" ]; then "
    "p=$d/exe; "
    "head -c \"$KIN_BOOT_SIZE\" >\"$p\" || exit 125; "
    "if [ \"$(wc -c <\"$p\")\" -ne \"$KIN_BOOT_SIZE\" ]; then "
    "echo \"kin: the executable arrived truncated\" >&2; exit 125; fi; "
    "chmod 700 \"$p\"; "
    "fi; "
    "unset KIN_BOOT_CLEAN KIN_BOOT_PROGRAM KIN_BOOT_SIZE; "
    "\"$p\" \"$@\"";

/* Appends to a string; *ok turns false on the first failed allocation. */
static void
sb_str(kin_buf *b, bool *ok, const char *s)
{
    if (*ok && kin__buf_str(b, s))
        *ok = false;
}

/* s as one word for a POSIX shell: '...' with ' written as '\''. */
static void
sb_quoted(kin_buf *b, bool *ok, const char *s)
{
    sb_str(b, ok, "'");
    for (const char *q; (q = strchr(s, '\'')); s = q + 1) {
        if (*ok && kin__buf_add(b, s, (size_t)(q - s)))
            *ok = false;
        sb_str(b, ok, "'\\''");
    }
    sb_str(b, ok, s);
    sb_str(b, ok, "'");
}

static char *
find_ssh(void)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        char *cand;
        if (asprintf(&cand, "%.*s/ssh", (int)len, path) < 0)
            return NULL;
        if (access(cand, X_OK) == 0)
            return cand;
        free(cand);
        path += len + (path[len] == ':');
    }
    errno = ENOENT;
    return NULL;
}

/* Where the forwarded socket leads on this host, in ssh -R syntax: a
 * socket path, or host:port for a tcp endpoint (0.0.0.0 and * mean this
 * host). */
static char *
local_target(const char *endpoint, bool *tcp)
{
    char *out = NULL;
    *tcp = false;
    if (!strncmp(endpoint, "ipc://", 6))
        return strdup(endpoint + 6);
    if (!strncmp(endpoint, "tcp://", 6)) {
        const char *hp = endpoint + 6;
        const char *colon = strrchr(hp, ':');
        if (!colon)
            return NULL;
        *tcp = true;
        if (!strncmp(hp, "0.0.0.0:", 8) || !strncmp(hp, "*:", 2))
            return asprintf(&out, "127.0.0.1%s", colon) < 0 ? NULL : out;
        return strdup(hp);
    }
    return NULL;
}

/* Whether a remote child may connect to endpoint as it is: tcp on an
 * address of this host's (not a wildcard, not loopback). Such links skip
 * ssh's forwarding and go straight over tcp with CURVE, which costs about a
 * third less per call than through ssh and sshd (docs/remote.md). */
static bool
reachable_as_is(const char *endpoint)
{
    if (strncmp(endpoint, "tcp://", 6))
        return false;
    const char *h = endpoint + 6;
    static const char *local[] = {"0.0.0.0:",    "*:",    "127.",
                                  "localhost:",  "[::]:", "[::1]:",
                                  "[::ffff:127."};
    for (size_t i = 0; i < sizeof local / sizeof *local; i++)
        if (!strncmp(h, local[i], strlen(local[i])))
            return false;
    return true;
}

static bool
has_newline(const char *s)
{
    return s && strpbrk(s, "\r\n");
}

void
kin__ssh_plan_free(kin__ssh_plan *p)
{
    for (size_t i = 0; p->argv && p->argv[i]; i++)
        free(p->argv[i]);
    free(p->argv);
    free(p->path);
    free(p->boot);
    *p = (kin__ssh_plan){0};
}

kin_err
kin__ssh_prepare(kin_node *n, const kin_spawn_opts *o, const kin__child_link *l,
                 kin__ssh_plan *p)
{
    *p = (kin__ssh_plan){0};
    if (!*o->host || o->host[0] == '-' || has_newline(o->host) ||
        has_newline(o->program) || has_newline(l->name) || o->ssh_port < 0 ||
        o->ssh_port > 65535)
        return -EINVAL;
    bool tcp = false, log_tcp = false;
    const char *endpoint = kin_node_endpoint(n);
    const char *log_endpoint = kin__logs_endpoint(n);
    bool up_direct = reachable_as_is(endpoint);
    /* Only a master hands out its log endpoint as it is: a child's is the
     * master's (or a forwarded one), which a host further away may not
     * reach; its own host forwards it. */
    bool log_direct = !kin__node_has_parent(n) && reachable_as_is(log_endpoint);
    /* An ipc parent takes remote children on a ROUTER of their own, the
     * one with heartbeats. */
    char far[256];
    kin_err fe = kin__router_far_endpoint(n, far, sizeof far);
    if (fe)
        return fe;
    char *up = local_target(far, &tcp);
    char *log = log_endpoint[0] && !log_direct
                    ? local_target(log_endpoint, &log_tcp)
                    : NULL;
    uint64_t tag = 0;
    kin_err e = KIN_OK;
    if (!up) {
        e = -EINVAL;
        goto out;
    }
    if (getrandom(&tag, sizeof tag, 0) != sizeof tag) {
        e = -errno;
        goto out;
    }
    if (!(p->path = find_ssh())) {
        e = -errno;
        KIN_ERROR("no ssh client in PATH to start %s on %s", l->name, o->host);
        goto out;
    }
    char r_up[96], r_log[96], ep[128], lep[128];
    snprintf(r_up, sizeof r_up, "/tmp/kin-%016llx-up.sock",
             (unsigned long long)tag);
    snprintf(r_log, sizeof r_log, "/tmp/kin-%016llx-log.sock",
             (unsigned long long)tag);
    snprintf(ep, sizeof ep, "ipc://%s", r_up);
    snprintf(lep, sizeof lep, "ipc://%s", log ? r_log : "");

    /* The boot block. */
    kin__child_link rl = *l;
    rl.endpoint = up_direct ? endpoint : ep;
    rl.log_endpoint = log_direct ? log_endpoint : log ? lep : "";
    rl.curve_up = tcp && !up_direct;
    rl.log_curve = log && (log_tcp || kin__logs_curve(n));
    rl.remote = true;
    char *vars[KIN__CHILD_VARS_MAX];
    int count = kin__child_vars(n, &rl, vars);
    if (count < 0) {
        e = -ENOMEM;
        goto out;
    }
    kin_buf b = {0};
    bool ok = true;
    for (int i = 0; i < count; i++) {
        sb_str(&b, &ok, vars[i]);
        sb_str(&b, &ok, "\n");
        free(vars[i]);
    }
    char line[256];
    snprintf(line, sizeof line, "KIN_BOOT_CLEAN=%s %s\n", up_direct ? "" : r_up,
             log ? r_log : "");
    sb_str(&b, &ok, line);
    p->stream_self = !o->program;
    if (o->program) {
        sb_str(&b, &ok, "KIN_BOOT_PROGRAM=");
        sb_str(&b, &ok, o->program);
        sb_str(&b, &ok, "\n");
    } else {
        struct stat st;
        if (stat("/proc/self/exe", &st)) {
            e = -errno;
            kin_buf_release(&b);
            goto out;
        }
        snprintf(line, sizeof line, "KIN_BOOT_SIZE=%lld\n",
                 (long long)st.st_size);
        sb_str(&b, &ok, line);
    }
    sb_str(&b, &ok, "\n");
    if (!ok) {
        kin_buf_release(&b);
        e = -ENOMEM;
        goto out;
    }
    p->boot = b.data;
    p->boot_len = b.len;

    /* The remote command: the bootstrap and the program's arguments. */
    kin_buf cmd = {0};
    bool cmd_ok = true;
    sb_str(&cmd, &cmd_ok, "exec /bin/sh -c '");
    sb_str(&cmd, &cmd_ok, bootstrap);
    sb_str(&cmd, &cmd_ok, "' kin-boot");
    for (size_t i = 1; o->argv && o->argv[i]; i++) {
        sb_str(&cmd, &cmd_ok, " ");
        sb_quoted(&cmd, &cmd_ok, o->argv[i]);
    }

    /* ssh takes the first value given for an option: the caller's
     * arguments come first, so they override these defaults. */
    size_t extra = 0;
    while (o->ssh_args && o->ssh_args[extra])
        extra++;
    if (!(p->argv = calloc(extra + 32, sizeof *p->argv)) || !cmd_ok) {
        kin_buf_release(&cmd);
        e = -ENOMEM;
        goto out;
    }
    size_t k = 0;
    int hb_ivl, hb_timeout;
    kin__node_heartbeat(n, &hb_ivl, &hb_timeout);
    int alive = hb_ivl ? (hb_timeout + 2999) / 3000 : 15;
    char opt_alive[64], port[16], fwd_up[512], fwd_log[512];
    snprintf(opt_alive, sizeof opt_alive, "ServerAliveInterval=%d", alive);
    snprintf(port, sizeof port, "%d", o->ssh_port);
    snprintf(fwd_up, sizeof fwd_up, "%s:%s", r_up, up);
    snprintf(fwd_log, sizeof fwd_log, "%s:%s", r_log, log ? log : "");
    const char *words[32];
    size_t w = 0;
    words[w++] = "ssh";
    words[w++] = "-T"; /* no terminal: the channel carries bytes */
    words[w++] = "-x";
    if (o->ssh_port) {
        words[w++] = "-p";
        words[w++] = port;
    }
    if (o->ssh_identity) {
        words[w++] = "-i";
        words[w++] = o->ssh_identity;
    }
    for (size_t i = 0; i < w; i++)
        p->argv[k++] = strdup(words[i]);
    for (size_t i = 0; i < extra; i++)
        p->argv[k++] = strdup(o->ssh_args[i]);
    w = 0;
    words[w++] = "-o";
    words[w++] = "BatchMode=yes"; /* a prompt would hang the spawn */
    words[w++] = "-o";
    words[w++] = "ExitOnForwardFailure=yes";
    words[w++] = "-o";
    words[w++] = opt_alive;
    words[w++] = "-o";
    words[w++] = "ServerAliveCountMax=3";
    /* Not through a multiplexing master of the user's config: its
     * forwardings and sessions would outlive the ssh we stop. */
    words[w++] = "-o";
    words[w++] = "ControlMaster=no";
    words[w++] = "-o";
    words[w++] = "ControlPath=none";
    if (!up_direct) {
        words[w++] = "-R";
        words[w++] = fwd_up;
    }
    if (log) {
        words[w++] = "-R";
        words[w++] = fwd_log;
    }
    words[w++] = "--";
    words[w++] = o->host;
    for (size_t i = 0; i < w; i++)
        p->argv[k++] = strdup(words[i]);
    p->argv[k++] = cmd.data;
    for (size_t i = 0; i < k; i++)
        if (!p->argv[i])
            e = -ENOMEM;
out:
    free(up);
    free(log);
    if (e)
        kin__ssh_plan_free(p);
    return e;
}

/* --- the boot writer ------------------------------------------------------
 */

typedef struct boot_job {
    int fd;
    char *boot;
    size_t len;
    bool stream_self;
} boot_job;

static bool
send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t got = send(fd, p, len, MSG_NOSIGNAL);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        p += got;
        len -= (size_t)got;
    }
    return true;
}

static void *
boot_main(void *arg)
{
    boot_job *j = arg;
    bool ok = send_all(j->fd, j->boot, j->len);
    int exe = ok && j->stream_self
                  ? open("/proc/self/exe", O_RDONLY | O_CLOEXEC)
                  : -1;
    if (exe >= 0) {
        char buf[65536];
        ssize_t got;
        while (ok && (got = read(exe, buf, sizeof buf)) != 0) {
            if (got < 0 && errno == EINTR)
                continue;
            ok = got > 0 && send_all(j->fd, buf, (size_t)got);
        }
        close(exe);
    }
    /* A failure here means ssh is gone; kin_spawn hears of it from its
     * exit, with ssh's own words on stderr. */
    close(j->fd);
    free(j->boot);
    free(j);
    return NULL;
}

kin_err
kin__ssh_boot(kin__ssh_plan *p, int fd)
{
    boot_job *j = malloc(sizeof *j);
    if (!j) {
        close(fd);
        return -ENOMEM;
    }
    *j = (boot_job){.fd = fd,
                    .boot = p->boot,
                    .len = p->boot_len,
                    .stream_self = p->stream_self};
    p->boot = NULL;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, boot_main, j);
    pthread_attr_destroy(&attr);
    if (rc) {
        close(fd);
        free(j->boot);
        free(j);
        return -EAGAIN;
    }
    pthread_setname_np(t, "kin-sshboot");
    return KIN_OK;
}
