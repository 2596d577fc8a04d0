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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
