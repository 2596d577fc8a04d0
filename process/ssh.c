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
#include "core/sync.h"
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
kin__ssh_route_plan(const kin__ssh_in *in, const kin__child_link *l,
                    kin__ssh_route *r)
{
    const kin_spawn_opts *o = in->opts;
    *r = (kin__ssh_route){0};
    if (!o->host || !*o->host || o->host[0] == '-' || has_newline(o->host) ||
        has_newline(o->program) || has_newline(l->name) || o->ssh_port < 0 ||
        o->ssh_port > 65535)
        return -EINVAL;
    r->up_direct = reachable_as_is(in->endpoint);
    /* Only a master hands out its log endpoint as it is: a child's is the
     * master's (or a forwarded one), which a host further away may not
     * reach; its own host forwards it. */
    r->log_direct = in->is_master && reachable_as_is(in->log_endpoint);
    r->up = local_target(in->far_endpoint, &r->tcp);
    r->log = in->log_endpoint[0] && !r->log_direct
                 ? local_target(in->log_endpoint, &r->log_tcp)
                 : NULL;
    if (!r->up) {
        kin__ssh_route_free(r);
        return -EINVAL;
    }
    snprintf(r->r_up, sizeof r->r_up, "/tmp/kin-%016llx-up.sock",
             (unsigned long long)in->tag);
    snprintf(r->r_log, sizeof r->r_log, "/tmp/kin-%016llx-log.sock",
             (unsigned long long)in->tag);
    snprintf(r->ep, sizeof r->ep, "ipc://%s", r->r_up);
    snprintf(r->lep, sizeof r->lep, "ipc://%s", r->log ? r->r_log : "");
    r->link = *l;
    r->link.endpoint = r->up_direct ? in->endpoint : r->ep;
    r->link.log_endpoint = r->log_direct ? in->log_endpoint
                           : r->log      ? r->lep
                                         : "";
    r->link.curve_up = r->tcp && !r->up_direct;
    r->link.log_curve = r->log && (r->log_tcp || in->logs_curve);
    r->link.remote = true;
    return KIN_OK;
}

void
kin__ssh_route_free(kin__ssh_route *r)
{
    free(r->up);
    free(r->log);
    r->up = r->log = NULL;
}

/* The boot block: the child's settings, then the bootstrap's own, then an
 * empty line. NULL when out of memory. */
static char *
boot_block(const kin__ssh_in *in, const kin__ssh_route *r, char *const *vars,
           int nvars, size_t *len)
{
    kin_buf b = {0};
    bool ok = true;
    for (int i = 0; i < nvars; i++) {
        sb_str(&b, &ok, vars[i]);
        sb_str(&b, &ok, "\n");
    }
    char line[256];
    snprintf(line, sizeof line, "KIN_BOOT_CLEAN=%s %s\n",
             r->up_direct ? "" : r->r_up, r->log ? r->r_log : "");
    sb_str(&b, &ok, line);
    if (in->opts->program) {
        sb_str(&b, &ok, "KIN_BOOT_PROGRAM=");
        sb_str(&b, &ok, in->opts->program);
        sb_str(&b, &ok, "\n");
    } else {
        snprintf(line, sizeof line, "KIN_BOOT_SIZE=%lld\n", in->exe_size);
        sb_str(&b, &ok, line);
    }
    sb_str(&b, &ok, "\n");
    if (!ok) {
        kin_buf_release(&b);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

kin_err
kin__ssh_plan_build(const kin__ssh_in *in, const kin__ssh_route *r,
                    char *const *vars, int nvars, kin__ssh_plan *p)
{
    const kin_spawn_opts *o = in->opts;
    *p = (kin__ssh_plan){0};
    p->stream_self = !o->program;
    p->path = strdup(in->ssh_path);
    p->boot = boot_block(in, r, vars, nvars, &p->boot_len);

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
    if (!p->path || !p->boot || !cmd_ok ||
        !(p->argv = calloc(extra + 32, sizeof *p->argv))) {
        kin_buf_release(&cmd);
        kin__ssh_plan_free(p);
        return -ENOMEM;
    }
    size_t k = 0;
    int alive = in->hb_ivl ? (in->hb_timeout + 2999) / 3000 : 15;
    char opt_alive[64], port[16], fwd_up[512], fwd_log[512];
    snprintf(opt_alive, sizeof opt_alive, "ServerAliveInterval=%d", alive);
    snprintf(port, sizeof port, "%d", o->ssh_port);
    snprintf(fwd_up, sizeof fwd_up, "%s:%s", r->r_up, r->up);
    snprintf(fwd_log, sizeof fwd_log, "%s:%s", r->r_log, r->log ? r->log : "");
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
    if (!r->up_direct) {
        words[w++] = "-R";
        words[w++] = fwd_up;
    }
    if (r->log) {
        words[w++] = "-R";
        words[w++] = fwd_log;
    }
    words[w++] = "--";
    words[w++] = o->host;
    for (size_t i = 0; i < w; i++)
        p->argv[k++] = strdup(words[i]);
    p->argv[k++] = cmd.data;
    for (size_t i = 0; i < k; i++) {
        if (!p->argv[i]) {
            kin__ssh_plan_free(p);
            return -ENOMEM;
        }
    }
    return KIN_OK;
}

kin_err
kin__ssh_prepare(kin_node *n, const kin_spawn_opts *o, const kin__child_link *l,
                 kin__ssh_plan *p)
{
    *p = (kin__ssh_plan){0};
    char far[256];
    kin_err e = kin__router_far_endpoint(n, far, sizeof far);
    if (e)
        return e;
    int hb_ivl, hb_timeout;
    kin__node_heartbeat(n, &hb_ivl, &hb_timeout);
    kin__ssh_in in = {.opts = o,
                      .endpoint = kin_node_endpoint(n),
                      .far_endpoint = far,
                      .log_endpoint = kin__logs_endpoint(n),
                      .is_master = !kin__node_has_parent(n),
                      .logs_curve = kin__logs_curve(n),
                      .hb_ivl = hb_ivl,
                      .hb_timeout = hb_timeout};
    if (getrandom(&in.tag, sizeof in.tag, 0) != sizeof in.tag)
        return -errno;
    kin__ssh_route r;
    if ((e = kin__ssh_route_plan(&in, l, &r)))
        return e;
    char *ssh = NULL;
    char *vars[KIN__CHILD_VARS_MAX];
    int count = -1;
    struct stat st;
    if (!(ssh = find_ssh())) {
        e = -errno;
        KIN_ERROR("no ssh client in PATH to start %s on %s", l->name, o->host);
    } else if (!o->program && stat("/proc/self/exe", &st)) {
        e = -errno;
    } else {
        in.ssh_path = ssh;
        in.exe_size = o->program ? 0 : (long long)st.st_size;
        count = kin__child_vars(n, &r.link, vars);
        e = count < 0 ? -ENOMEM : kin__ssh_plan_build(&in, &r, vars, count, p);
    }
    for (int i = 0; i < count; i++)
        free(vars[i]);
    free(ssh);
    kin__ssh_route_free(&r);
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
    kin__thread_name("kin-sshboot");
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
    return KIN_OK;
}
