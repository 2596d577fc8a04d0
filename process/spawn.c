/* Child contexts: fork + exec from the broker thread (so the child's
 * PR_SET_PDEATHSIG is tied to a thread that lives as long as the context)
 * of this executable, another program, sudo or ssh (ssh.c), readiness by
 * HELLO, exit noticed through a pidfd on the broker's loop,
 * terminate-then-kill, and the public kin_child calls. Output capture is in
 * output.c, the emergency stop in emergency.c, spawning through another
 * context in via.c. */
#include <kin/process.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log_internal.h"
#include "core/sync.h"
#include "core/task.h"
#include "logs/logs.h"
#include "process/child.h"
#include "process/events.h"
#include "process/exec_channel.h"
#include "process/limits.h"
#include "process/procs.h"
#include "process/runtime_sweep.h"
#include "process/ssh.h"
#include "process/stdio_relay.h"
#include "process/zygote.h"
#include "router/child_certs.h"
#include "router/router.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

/* --- handle lifetimes ----------------------------------------------------- */

/* A kin_child holds libuv handles; its memory may go only once every one
 * of them has finished closing (their close callbacks ran). */
static void
on_child_handle_closed(uv_handle_t *h)
{
    kin__child_handle_closed(h->data);
}

/* --- signals ------------------------------------------------------------- */

/* Broker thread. While the child is unreaped its pid (and so its process
 * group id) cannot be reused, and the broker thread is the one that reaps:
 * signalling from here cannot hit a stranger. */
static void
signal_now(kin_child *c, int sig)
{
    if (c->pidfd < 0)
        return;
    kill(-c->pid, sig);
    pidfd_send_signal(c->pidfd, sig, NULL, 0);
}

static void
on_kill_timer(uv_timer_t *t)
{
    kin_child *c = t->data;
    if (c->pidfd < 0)
        return;
    KIN_WARN("child %s (%u, pid %d) still there after SIGTERM and its "
             "stop timeout (%d ms): SIGKILL",
             c->name, c->id, (int)c->pid, c->stop_timeout_ms);
    signal_now(c, SIGKILL);
}

/* Broker thread: SIGTERM now and SIGKILL in kill_after_ms, by a timer on
 * this loop, so the kill is not late by a thread's wake-up. An earlier
 * kill already planned stays. */
void
kin__child_terminate(kin_child *c, int kill_after_ms)
{
    if (c->pidfd < 0 || c->detaching)
        return;
    signal_now(c, SIGTERM);
    if (!c->timer_made) {
        uv_timer_init(kin__broker_loop(kin__node_broker(c->node)),
                      &c->kill_timer);
        c->kill_timer.data = c;
        c->timer_made = true;
        c->handles++;
    }
    uint64_t after = kill_after_ms > 0 ? (uint64_t)kill_after_ms : 0;
    if (uv_is_active((uv_handle_t *)&c->kill_timer) &&
        uv_timer_get_due_in(&c->kill_timer) <= after)
        return;
    uv_timer_start(&c->kill_timer, on_kill_timer, after, 0);
}

typedef struct term_req {
    kin_child *c;
    int kill_after_ms;
    bool done;
} term_req;

static void
terminate_job(void *arg, void *unused)
{
    term_req *r = arg;
    kin__procs *p = r->c->procs;
    kin__child_terminate(r->c, r->kill_after_ms);
    pthread_mutex_lock(&p->mu);
    r->done = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

/* terminate() from another thread; returns once it ran, so the caller may
 * free the child afterwards. False when the broker is shutting down. */
static bool
terminate_sync(kin_child *c, int kill_after_ms)
{
    kin_node *n = c->node;
    kin__procs *p = c->procs;
    term_req r = {.c = c, .kill_after_ms = kill_after_ms};
    if (kin__broker_defer(kin__node_broker(n), terminate_job, &r, NULL))
        return false;
    pthread_mutex_lock(&p->mu);
    while (!r.done)
        pthread_cond_wait(&p->cond, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return true;
}

/* --- exit ----------------------------------------------------------------- */

static void
reaped(kin_child *c, int status)
{
    kin_node *n = c->node;
    kin__procs *p = c->procs;
    if (c->exit_polling) {
        uv_close((uv_handle_t *)&c->exit_poll, on_child_handle_closed);
        c->exit_polling = false;
    }
    if (c->timer_made)
        uv_timer_stop(&c->kill_timer);
    /* Whatever the child wrote last still counts. */
    if (c->out.fd >= 0)
        kin__output_drain(&c->out);
    if (c->err.fd >= 0)
        kin__output_drain(&c->err);
    if (WIFSIGNALED(status))
        KIN_INFO("child %s (%u, pid %d) killed by signal %d", c->name, c->id,
                 (int)c->pid, WTERMSIG(status));
    else
        KIN_INFO("child %s (%u, pid %d) exited with %d", c->name, c->id,
                 (int)c->pid, WEXITSTATUS(status));
    kin__ev_child_exit(c->name, c->id, c->pid, status);
    kin__cgroup_remove(&c->cgroup);
    kin__child_cert_revoke(c->cert_pub);
    /* Callers waiting on it learn now (after what it sent last), not
     * after some heartbeat. */
    kin__router_child_exited(n, c->id);
    /* Nor could its children, killed with it: sweeps find their files. */
    kin__sweep_after_reap(p);
    pthread_mutex_lock(&p->mu);
    c->status = status;
    bool armed = c->armed;
    pthread_mutex_unlock(&p->mu);
    /* The owner hears of the exit before the trip it may cause, so a
     * supervisor books the exit first; and before waiters wake, so whoever
     * stops and frees the child knows the callback is over. */
    if (armed && c->on_exit)
        c->on_exit(c, status, c->on_exit_arg);
    if (kin__is_emergency(status))
        kin__procs_trip(n, c->id);
    pthread_mutex_lock(&p->mu);
    c->exited = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

static void
on_exit_ready(uv_poll_t *h, int status, int events)
{
    kin_child *c = h->data;
    siginfo_t si = {0};
    /* Look first without reaping: while the zombie holds the pid, its
     * process group id is still ours to signal, so nothing it left in its
     * group (helpers it forked) outlives it. */
    if (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) ||
        !si.si_pid)
        return;
    kill(-c->pid, SIGKILL);
    /* A child that was killed could not remove its socket files; while
     * it is a zombie, no other process can have the pid that names them. */
    kin__sweep_child_files(c->pid, c->id);
    si = (siginfo_t){0};
    if (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED | WNOHANG) || !si.si_pid)
        return;
    int st = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0)
                                      : si.si_status & 0x7f;
    close(c->pidfd);
    c->pidfd = -1;
    reaped(c, st);
}

/* --- fork + exec -------------------------------------------------------------
 */

typedef struct spawn_req {
    kin_child *c;
    const char *path;
    char *const *argv;
    char **envp;
    int in_fd;    /* the child's stdin (ssh's boot channel), or -1 */
    int out_fd;   /* its stdout instead of the pipe (an exec channel), or -1 */
    bool fork;    /* from the node's zygote (zygote.c), not fork + exec */
    pid_t forked; /* fork: the child the zygote made, or -errno */
    int forked_out[2]; /* fork: its stdout and stderr pipes' read ends */
    const kin_spawn_opts *opts; /* rlimits and cwd (limits.c) */
    int cgroup_fd;              /* its memory cgroup's cgroup.procs, or -1 */
    int fail_stage;             /* where the child failed (KIN__STAGE_*) */
    kin_err result;
    bool done;
} spawn_req;

static void
child_side(spawn_req *r, pid_t parent, int errfd, int out_w, int err_w)
{
    /* Only async-signal-safe calls between fork and exec. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127); /* the parent died before prctl took effect */
    /* Ignored signals survive exec: start the program from defaults. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    dup2(r->out_fd >= 0 ? r->out_fd : out_w, STDOUT_FILENO);
    dup2(err_w, STDERR_FILENO);
    if (r->in_fd >= 0)
        dup2(r->in_fd, STDIN_FILENO);
    int why[2] = {0, KIN__STAGE_EXEC}; /* errno, stage */
    if (!(why[0] = kin__limits_apply(r->opts, r->cgroup_fd, &why[1]))) {
        execve(r->path, r->argv, r->envp);
        why[0] = errno;
        why[1] = KIN__STAGE_EXEC;
    }
    if (write(errfd, why, sizeof why) < 0)
        _exit(126);
    _exit(127);
}

static void
spawn_job(void *arg, void *unused)
{
    spawn_req *r = arg;
    kin_child *c = r->c;
    kin_node *n = c->node;
    kin__procs *p = c->procs;
    int ep[2] = {-1, -1}, op[2] = {-1, -1}, xp[2] = {-1, -1};
    kin_err e = KIN_OK;
    /* Checked here, where trips happen: a child forked after this point
     * is on the list a trip walks. */
    if (p->tripped) {
        e = KIN_EEMERGENCY;
        goto out;
    }
    if (r->fork) {
        /* Forked already, on the spawning thread (zygote_fork below). */
        op[0] = r->forked_out[0];
        xp[0] = r->forked_out[1];
        r->forked_out[0] = r->forked_out[1] = -1;
    } else if (pipe2(ep, O_CLOEXEC) || pipe2(op, O_CLOEXEC) ||
               pipe2(xp, O_CLOEXEC)) {
        e = -errno;
        goto out;
    }
    pid_t parent = getpid();
    pid_t pid = r->fork ? r->forked : fork();
    r->forked = 0; /* ours now, whatever happens */
    if (pid < 0) {
        e = r->fork ? pid : -errno;
        goto out;
    }
    if (pid == 0)
        child_side(r, parent, ep[1], op[1], xp[1]);
    close(ep[1]);
    close(op[1]);
    close(xp[1]);
    ep[1] = op[1] = xp[1] = -1;
    int why[2] = {0, 0}; /* errno, stage */
    ssize_t got = 0;
    while (ep[0] >= 0 && (got = read(ep[0], why, sizeof why)) < 0 &&
           errno == EINTR)
        ;
    if (got == (ssize_t)sizeof why) {
        waitpid(pid, NULL, 0);
        e = -why[0];
        r->fail_stage = why[1];
        goto out;
    }
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0) {
        e = -errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        goto out;
    }
    c->pid = pid;
    c->pidfd = pidfd;
    fcntl(op[0], F_SETFL, O_NONBLOCK);
    fcntl(xp[0], F_SETFL, O_NONBLOCK);
    kin__output_watch(c, &c->out, op[0], false);
    kin__output_watch(c, &c->err, xp[0], true);
    op[0] = xp[0] = -1;
    uv_poll_init(kin__broker_loop(kin__node_broker(n)), &c->exit_poll,
                 c->pidfd);
    c->exit_poll.data = c;
    c->exit_polling = true;
    c->handles++;
    uv_poll_start(&c->exit_poll, UV_READABLE, on_exit_ready);
out:
    for (int i = 0; i < 2; i++) {
        if (ep[i] >= 0)
            close(ep[i]);
        if (op[i] >= 0)
            close(op[i]);
        if (xp[i] >= 0)
            close(xp[i]);
    }
    pthread_mutex_lock(&p->mu);
    if (c->pid > 0) {
        c->next = p->children;
        p->children = c;
    }
    r->result = e;
    r->done = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

int
kin__child_vars(kin_node *n, const kin__child_link *l,
                char *out[KIN__CHILD_VARS_MAX])
{
    char key[KIN__KEY_TEXT_LEN];
    int k = 0;
#define ADD(...)                                                               \
    do {                                                                       \
        if (asprintf(&out[k], __VA_ARGS__) < 0)                                \
            goto oom;                                                          \
        k++;                                                                   \
    } while (0)
    ADD(KIN__ENV_ENDPOINT "=%s", l->endpoint);
    ADD(KIN__ENV_PARENT_ID "=%u", kin_node_id(n));
    ADD(KIN__ENV_ID "=%u", l->id);
    ADD(KIN__ENV_NAME "=%s", l->name);
    ADD(KIN__ENV_MAX_MSG "=%zu", kin__node_max_msg(n));
    ADD(KIN__ENV_WORKERS "=%d", l->workers);
    int hb_ivl, hb_timeout;
    kin__node_heartbeat(n, &hb_ivl, &hb_timeout);
    ADD(KIN__ENV_HEARTBEAT "=%d,%d", hb_ivl ? hb_ivl : -1,
        hb_ivl ? hb_timeout : -1);
    if (l->log_endpoint[0])
        ADD(KIN__ENV_LOG_ENDPOINT "=%s", l->log_endpoint);
    const kin__curve_key *own = l->cert ? l->cert : kin__node_curve(n);
    if (own->pub[0]) {
        kin__curve_format(own, key);
        ADD(KIN__ENV_CURVE "=%s", key);
    }
    if (l->curve_up)
        ADD(KIN__ENV_CURVE_UP "=1");
    if (l->log_curve)
        ADD(KIN__ENV_LOG_CURVE "=1");
    if (l->remote)
        ADD(KIN__ENV_REMOTE "=1");
    if (l->other_user)
        ADD(KIN__ENV_OTHER_USER "=1");
    if (l->stdio)
        ADD(KIN__ENV_STDIO "=1");
#undef ADD
    return k;
oom:
    while (k > 0)
        free(out[--k]);
    return -1;
}

/* This process's environment without KIN_CHILD_*, plus the child's
 * settings for a local child (with_vars), or without them for the ssh
 * client, which sends them over its stdin instead. */
static char **
child_env(kin_node *n, kin_child *c, bool with_vars, bool sudo,
          char *const *extra)
{
    size_t count = 0, more = 0;
    while (environ[count])
        count++;
    while (extra && extra[more])
        more++;
    /* + 1: add_forks_var's */
    char **env = calloc(count + more + KIN__CHILD_VARS_MAX + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        if (strncmp(environ[i], KIN__ENV_PREFIX, strlen(KIN__ENV_PREFIX)) &&
            !kin__env_replaced(environ[i], extra) &&
            !(env[k++] = strdup(environ[i])))
            goto oom;
    }
    for (size_t i = 0; i < more; i++)
        if (!(env[k++] = strdup(extra[i])))
            goto oom;
    kin__child_link l = {.id = c->id,
                         .name = c->name,
                         .workers = c->workers,
                         .endpoint = kin_node_endpoint(n),
                         .log_endpoint = kin__logs_endpoint(n),
                         .other_user = sudo};
    if (with_vars && kin__child_vars(n, &l, env + k) < 0)
        goto oom;
    return env;
oom:
    for (size_t j = 0; j < k; j++)
        free(env[j]);
    free(env);
    return NULL;
}

/* kin_spawn_opts.forks_children: the child forks its own zygote at its
 * start (process/zygote.c). env has room for one more entry. */
static kin_err
add_forks_var(char **env)
{
    size_t k = 0;
    while (env[k])
        k++;
    return (env[k] = strdup(KIN__ENV_FORKS "=1")) ? KIN_OK : -ENOMEM;
}

static void
free_env(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

/* --- the node's list of children ---------------------------------------------
 */

static void
list_remove(kin_child *c)
{
    kin__procs *p = c->procs;
    pthread_mutex_lock(&p->mu);
    for (kin_child **q = &p->children; *q; q = &(*q)->next) {
        if (*q == c) {
            *q = c->next;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void
kin__child_handle_closed(kin_child *c)
{
    if (--c->handles || !c->detaching)
        return;
    kin__procs *p = c->procs;
    pthread_mutex_lock(&p->mu);
    c->node = NULL; /* detach() may go on */
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

/* Broker thread: closes the child's handles; the last close callback
 * tells detach() (at once if none is open). */
static void
close_handles_job(void *arg, void *unused)
{
    kin_child *c = arg;
    c->detaching = true;
    c->handles++; /* held while closing, so no callback finishes early */
    kin__output_stop(&c->out);
    kin__output_stop(&c->err);
    if (c->exit_polling) { /* not reaped: only after a failed stop */
        uv_close((uv_handle_t *)&c->exit_poll, on_child_handle_closed);
        c->exit_polling = false;
    }
    if (c->timer_made && !uv_is_closing((uv_handle_t *)&c->kill_timer))
        uv_close((uv_handle_t *)&c->kill_timer, on_child_handle_closed);
    kin__child_handle_closed(c);
}

/* Takes an exited child off its node: its pipe polls are closed on the
 * broker thread, and c->node becomes NULL. */
static void
detach(kin_child *c)
{
    kin_node *n = c->node;
    kin__procs *p = c->procs;
    list_remove(c);
    if (kin__broker_defer(kin__node_broker(n), close_handles_job, c, NULL) ==
        KIN_OK) {
        pthread_mutex_lock(&p->mu);
        while (c->node)
            pthread_cond_wait(&p->cond, &p->mu);
        pthread_mutex_unlock(&p->mu);
    } else {
        c->node = NULL;
    }
}

/* Sends child id the stop request over its link (when the link is up);
 * whether it went. */
static bool
ask_stop(kin_node *n, uint32_t id)
{
    kin_msg *m;
    if (!kin__node_child_linked(n, id) || kin_msg_new(&m, 0) != KIN_OK)
        return false;
    m->dst = id;
    m->handle = KIN_HANDLE_SHUTDOWN;
    if (kin_node_send(n, &m)) {
        kin_msg_destroy(&m);
        return false;
    }
    return true;
}

/* Asks every child of p to stop at once: a tree then winds down level by
 * level in parallel, not one process after the other (each context stops
 * its own children before it exits). */
static void
ask_all_stop(kin_node *n, kin__procs *p)
{
    pthread_mutex_lock(&p->mu);
    size_t count = 0;
    for (kin_child *c = p->children; c; c = c->next)
        count++;
    uint32_t *ids = calloc(count ? count : 1, sizeof *ids);
    size_t k = 0;
    for (kin_child *c = p->children; ids && c; c = c->next)
        if (!c->exited)
            ids[k++] = c->id;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < k; i++)
        ask_stop(n, ids[i]);
    free(ids);
}

void
kin__procs_stop(kin_node *n)
{
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        kin__watcher *w = p->watchers;
        if (w)
            p->watchers = w->next;
        pthread_mutex_unlock(&p->mu);
        if (!w)
            break;
        w->quiesce(w->arg);
    }
    ask_all_stop(n, p);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        kin_child *c = p->children;
        pthread_mutex_unlock(&p->mu);
        if (!c)
            break;
        kin_child_stop(c, NULL);
        detach(c);
    }
    kin__zygote_stop(p);
    pthread_mutex_lock(&p->mu);
    p->stopped = true;
    pthread_mutex_unlock(&p->mu);
    kin__push_forget(n); /* unfinished pushes to n leave no file */
}

/* --- public ------------------------------------------------------------------
 */

/* The argv of `sudo -n -u USER --preserve-env=KIN_CHILD_... -- PATH ARGS`:
 * sudo resets the environment, and the child's ids and endpoints travel
 * there, never in argv. Errors: -EACCES (this context's endpoint is a
 * private ipc one), -E2BIG (too many arguments), -EINVAL (bad user). */
static kin_err
sudo_command(kin_node *n, const char *user, const char *path, char *const *argv,
             char **out, size_t max)
{
    if (!*user || strchr(user, '/') || user[0] == '-')
        return -EINVAL;
    if (kin__node_ipc_path(n)[0]) {
        KIN_ERROR("a child running as %s cannot reach %s (a 0700 directory "
                  "of this user): bind this context on tcp "
                  "(kin_node_opts.bind) to start children as other users",
                  user, kin_node_endpoint(n));
        return -EACCES;
    }
    static char preserve[] =
        "--preserve-env=" KIN__ENV_ENDPOINT "," KIN__ENV_PARENT_ID
        "," KIN__ENV_ID "," KIN__ENV_NAME "," KIN__ENV_MAX_MSG
        "," KIN__ENV_WORKERS "," KIN__ENV_LOG_ENDPOINT "," KIN__ENV_HEARTBEAT
        "," KIN__ENV_CURVE "," KIN__ENV_OTHER_USER;
    size_t k = 0;
    out[k++] = "sudo";
    out[k++] = "-n"; /* never prompt: fail at once without a password */
    out[k++] = "-u";
    out[k++] = (char *)user;
    out[k++] = preserve;
    out[k++] = "--";
    out[k++] = (char *)path;
    for (size_t i = 1; argv && argv[i]; i++) {
        if (k + 1 >= max)
            return -E2BIG;
        out[k++] = argv[i];
    }
    out[k] = NULL;
    return KIN_OK;
}

static kin_err
exit_result(const kin_child *c, int *status)
{
    if (status)
        *status = c->status;
    return kin__is_emergency(c->status) ? KIN_EEMERGENCY : KIN_OK;
}

static kin_err
spawn_via(kin_node *n, const kin_spawn_opts *opts, kin_child **out)
{
    kin_child *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    kin_err e = kin__via_spawn(n, opts, &c->id, &c->pid);
    if (e) {
        free(c);
        return e;
    }
    c->proxy = true;
    pthread_mutex_init(&c->proxy_mu, NULL);
    c->caller = n;
    c->via = opts->via;
    c->pidfd = c->channel_fd = -1;
    c->stop_timeout_ms = opts->stop_timeout_ms;
    if (opts->name)
        snprintf(c->name, sizeof c->name, "%s", opts->name);
    else
        snprintf(c->name, sizeof c->name, "ctx-%u", c->id);
    *out = c;
    return KIN_OK;
}

/* Whether a call to via failing with e means the child is gone: via
 * itself is gone (and a child exits when its parent link goes), or via no
 * longer has it (stopped through another proxy call). */
static bool
proxy_gone(kin_err e)
{
    return e == KIN_EPEERGONE || e == KIN_ENOROUTE || e == -ESRCH;
}

/* Records the proxied child's end (under the proxy's lock). */
static kin_err
proxy_end(kin_child *c, kin_err e, int st, int *status)
{
    pthread_mutex_lock(&c->proxy_mu);
    if (!c->proxy_done) {
        c->proxy_done = true;
        c->status = e ? W_EXITCODE(3, 0) : st;
    }
    kin_err r = exit_result(c, status);
    pthread_mutex_unlock(&c->proxy_mu);
    return r;
}

static bool
proxy_ended(kin_child *c, int *status, kin_err *result)
{
    pthread_mutex_lock(&c->proxy_mu);
    bool done = c->proxy_done;
    if (done)
        *result = exit_result(c, status);
    pthread_mutex_unlock(&c->proxy_mu);
    return done;
}

/* A proxy's wait, in slices: via answers each within a second, so a long
 * wait never holds one of its workers. */
static kin_err
proxy_wait(kin_child *c, int timeout_ms, int *status)
{
    struct timespec ts;
    const struct timespec *dl = kin__deadline_or_forever(&ts, timeout_ms);
    for (;;) {
        kin_err r;
        if (proxy_ended(c, status, &r))
            return r;
        int slice = 1000;
        if (dl) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            int64_t left = (dl->tv_sec - now.tv_sec) * 1000 +
                           (dl->tv_nsec - now.tv_nsec) / 1000000;
            slice = left < 0 ? 0 : left < slice ? (int)left : slice;
        }
        int st = 0;
        kin_err e = kin__via_wait(c->caller, c->via, c->id, slice, &st);
        if (e == KIN_OK || e == KIN_EEMERGENCY || proxy_gone(e))
            return proxy_end(c, e == KIN_EEMERGENCY ? KIN_OK : e, st, status);
        if (e != KIN_ETIMEOUT)
            return e;
        if (dl && slice == 0)
            return KIN_ETIMEOUT;
    }
}

/* ssh's words when sshd dropped the connection before the key exchange:
 * its MaxStartups limit (a burst of spawns to one host) or a restart. */
static bool
refused_early(const char *why)
{
    /* ssh's own words only: a program that ran and printed "Connection
     * reset by peer" must not be started again. */
    return strstr(why, "kex_exchange_identification:") != NULL;
}

static kin_err spawn_once(kin_node *n, const kin_spawn_opts *opts,
                          kin_child **out);

/* A child started over ssh or exec gets a certificate of its own instead
 * of the tree's secret, from the master (whose process holds the tree's
 * CURVE servers: its tcp ROUTER and log backend). Elsewhere *cert stays
 * NULL: the child gets this context's key, as a local child does. */
static kin_err
issue_cert(kin_node *n, kin_child *c, const char *host, kin__curve_key *key,
           const kin__curve_key **cert)
{
    const kin__curve_key *tree = kin__node_curve(n);
    *cert = NULL;
    if (kin__node_has_parent(n) || !tree->pub[0] || tree->server[0])
        return KIN_OK;
    kin_err e = kin__child_cert_issue(tree, c->id, c->name, host, key);
    if (e)
        return e;
    snprintf(c->cert_pub, sizeof c->cert_pub, "%s", key->pub);
    *cert = key;
    return KIN_OK;
}

kin_err
kin_spawn(kin_node *n, const kin_spawn_opts *opts, kin_child **out)
{
    if (!opts || !opts->host || (opts->via && opts->via != kin_node_id(n)))
        return spawn_once(n, opts, out);
    /* Over ssh, a connection sshd dropped before authentication is tried
     * again, after a doubling, jittered pause (5 more times at most, about
     * 3 to 6 s in all: on a loaded host a burst keeps sshd's MaxStartups
     * full for seconds). */
    kin_spawn_opts o = *opts;
    char why[1024] = "";
    if (!o.errbuf || !o.errbuf_size) {
        o.errbuf = why;
        o.errbuf_size = sizeof why;
    }
    for (int attempt = 0;; attempt++) {
        o.errbuf[0] = 0;
        kin_err e = spawn_once(n, &o, out);
        if (e != KIN_ESPAWN || attempt == 5 || !refused_early(o.errbuf))
            return e;
        unsigned jitter = 0;
        if (getrandom(&jitter, sizeof jitter, 0) != sizeof jitter)
            jitter = 0;
        int base = 100 << attempt;
        int ms = base + (int)(jitter % (unsigned)base);
        KIN_WARN("ssh to %s was dropped before login (%s); trying again in "
                 "%d ms",
                 o.host, o.errbuf, ms);
        if (kin_task_sleep(ms) == KIN_ECANCELLED)
            return e;
    }
}

/* Undoes zygote_fork for a child spawn_job did not take in. */
static void
unfork(spawn_req *r)
{
    if (r->forked > 0) {
        kill(r->forked, SIGKILL);
        while (waitpid(r->forked, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    r->forked = 0;
    for (int i = 0; i < 2; i++) {
        if (r->forked_out[i] >= 0)
            close(r->forked_out[i]);
        r->forked_out[i] = -1;
    }
}

/* The spawning thread asks the zygote itself (kin__zygote_fork waits for
 * its own answer), so the broker never waits on a fork and spawns from
 * several threads reach the zygote together; spawn_job then only takes the
 * child in. */
static kin_err
zygote_fork(kin__procs *p, spawn_req *r)
{
    int op[2], xp[2] = {-1, -1};
    if (pipe2(op, O_CLOEXEC))
        return -errno;
    if (pipe2(xp, O_CLOEXEC)) {
        kin_err e = -errno;
        close(op[0]);
        close(op[1]);
        return e;
    }
    r->forked = kin__zygote_fork(p, r->envp, op[1], xp[1]);
    if (r->forked == -EPIPE) {
        /* It died under us (killed, or crashed): once more, with a new
         * one. */
        const kin_spawn_opts *o = r->opts;
        kin_err e = kin__zygote_ensure(
            p, o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 30000,
            o->errbuf, o->errbuf_size);
        r->forked = e ? e : kin__zygote_fork(p, r->envp, op[1], xp[1]);
    }
    close(op[1]);
    close(xp[1]);
    r->forked_out[0] = op[0];
    r->forked_out[1] = xp[0];
    if (r->forked < 0) {
        kin_err e = r->forked;
        unfork(r);
        return e;
    }
    return KIN_OK;
}

static kin_err
spawn_once(kin_node *n, const kin_spawn_opts *opts, kin_child **out)
{
    *out = NULL;
    kin_spawn_opts none = {0};
    if (!opts)
        opts = &none;
    if (kin__broker_on_thread(kin__node_broker(n)))
        return -EDEADLK;
    kin__procs *p = kin__procs_of(n);
    if (!p)
        return -ENOMEM;
    if (kin_emergency_stopped(n, NULL))
        return KIN_EEMERGENCY;
    if (opts->forks_children && !opts->fork)
        return -EINVAL;
    /* The zygote runs this executable, here, as us. */
    if (opts->fork &&
        (opts->program || opts->argv || opts->user || opts->host ||
         kin__exec_wanted(opts) || (opts->via && opts->via != kin_node_id(n))))
        return -EINVAL;
    if (kin__exec_wanted(opts) && (opts->host || opts->user ||
                                   (opts->via && opts->via != kin_node_id(n))))
        return -EINVAL;
    kin_err bad =
        kin__limits_check(opts, opts->via && opts->via != kin_node_id(n),
                          opts->errbuf, opts->errbuf_size);
    if (bad)
        return bad;
    if (opts->via && opts->via != kin_node_id(n))
        return spawn_via(n, opts, out);
    kin_child *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->node = n;
    c->procs = p;
    c->pidfd = c->out.fd = c->err.fd = c->channel_fd = -1;
    c->stop_timeout_ms =
        opts->stop_timeout_ms > 0 ? opts->stop_timeout_ms : 2000;
    c->on_exit = opts->on_exit;
    c->on_exit_arg = opts->on_exit_arg;
    kin_err e = kin_node_alloc_id(n, &c->id);
    if (e) {
        free(c);
        return e;
    }
    if (opts->name)
        snprintf(c->name, sizeof c->name, "%s", opts->name);
    else
        snprintf(c->name, sizeof c->name, "ctx-%u", c->id);

    char self[4096];
    const char *path = opts->program;
    char *self_argv[2] = {NULL, NULL};
    char *const *argv = opts->argv;
    if (!path) {
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len < 0) {
            free(c);
            return -errno;
        }
        self[len] = 0;
        path = self;
    }
    if (!argv) {
        self_argv[0] = (char *)(opts->program ? opts->program : c->name);
        argv = self_argv;
    }
    /* This executable is run through the magic link, not by its name: a
     * binary replaced on disk (rebuilt, upgraded) still starts the same
     * program as the parent runs. */
    spawn_req r = {.c = c,
                   .path = opts->program ? path : "/proc/self/exe",
                   .argv = argv,
                   .in_fd = -1,
                   .out_fd = -1,
                   .opts = opts,
                   .cgroup_fd = -1};
    char *sudo_argv[64];
    char where[512];
    kin__ssh_plan ssh = {0};
    kin__exec_plan xp = {0};
    kin__curve_key cert = {{0}, {0}, {0}};
    int boot[2] = {-1, -1}; /* ssh's stdin: ours, the child's */
    c->workers = opts->workers > 0 ? opts->workers : 0;
    if (opts->user && opts->host) {
        e = -EINVAL; /* ssh's own user@host says who, remotely */
    } else if (opts->user) {
        e = sudo_command(n, opts->user, path, argv, sudo_argv,
                         sizeof sudo_argv / sizeof *sudo_argv);
        /* sudo execs the program by name: the magic link would be sudo's. */
        r.path = "/usr/bin/sudo";
        r.argv = sudo_argv;
    } else if (opts->host) {
        kin__child_link l = {
            .id = c->id, .name = c->name, .workers = c->workers};
        if (!(e = issue_cert(n, c, opts->host, &cert, &l.cert)) &&
            !(e = kin__ssh_prepare(n, opts, &l, &ssh)) &&
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, boot))
            e = -errno;
        r.path = ssh.path;
        r.argv = ssh.argv;
        r.in_fd = boot[1];
        snprintf(where, sizeof where, "%s:%s", opts->host,
                 opts->program ? opts->program : "(this executable)");
        path = where;
    } else if (kin__exec_wanted(opts)) {
        kin__child_link l = {
            .id = c->id, .name = c->name, .workers = c->workers};
        const char *host = opts->container ? opts->container : opts->exec[0];
        if (!(e = issue_cert(n, c, host, &cert, &l.cert)) &&
            !(e = kin__exec_prepare(n, opts, &l, &xp)) &&
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, boot))
            e = -errno;
        r.path = xp.path;
        r.argv = xp.argv;
        r.in_fd = r.out_fd = boot[1];
        snprintf(where, sizeof where, "%s:%s", xp.label,
                 opts->program ? opts->program : "(this executable)");
        path = where;
    }
    bool vars_in_env = !opts->host && !kin__exec_wanted(opts);
    if (!e &&
        !(r.envp = child_env(n, c, vars_in_env, opts->user != NULL, opts->env)))
        e = -ENOMEM;
    if (!e && opts->forks_children)
        e = add_forks_var(r.envp);
    if (!e && opts->fork) {
        r.fork = true;
        path = "zygote";
        e = kin__zygote_ensure(
            p, opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 30000,
            opts->errbuf, opts->errbuf_size);
    }
    if (!e && opts->memory_max)
        e = kin__cgroup_make(opts, c->id, &c->cgroup, &r.cgroup_fd,
                             opts->errbuf, opts->errbuf_size);
    r.forked_out[0] = r.forked_out[1] = -1;
    if (!e && r.fork)
        e = zygote_fork(p, &r);
    if (!e)
        e = kin__broker_defer(kin__node_broker(n), spawn_job, &r, NULL);
    if (e) {
        unfork(&r);
        if (r.cgroup_fd >= 0)
            close(r.cgroup_fd);
        kin__cgroup_remove(&c->cgroup);
        free_env(r.envp);
        kin__ssh_plan_free(&ssh);
        kin__exec_plan_free(&xp);
        for (int i = 0; i < 2; i++)
            if (boot[i] >= 0)
                close(boot[i]);
        kin__child_cert_revoke(c->cert_pub);
        free(c);
        return e;
    }
    int timeout =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 30000;
    struct timespec dl;
    kin__deadline(&dl, CLOCK_REALTIME, timeout);
    pthread_mutex_lock(&p->mu);
    while (!r.done)
        pthread_cond_wait(&p->cond, &p->mu);
    e = r.result;
    pthread_mutex_unlock(&p->mu);
    if (e && c->pid <= 0)
        unfork(&r); /* forked, but refused (a trip came meanwhile) */
    if (r.cgroup_fd >= 0)
        close(r.cgroup_fd);
    if (boot[1] >= 0)
        close(boot[1]);
    if (xp.argv) {
        /* The relay takes our end: the channel lives as long as it does.
         * It gets a pidfd of its own on the command (c->pidfd belongs to
         * the broker). Should the command already be reaped, pidfd_open
         * fails and the relay just is not told; the channel's end tells
         * it then. A pid reused within these microseconds is not a
         * concern worth a lock across layers. */
        int pidfd = e ? -1 : pidfd_open(c->pid, 0);
        if (e)
            close(boot[0]);
        else if ((e = kin__exec_relay_start(&xp, boot[0], pidfd, c->name)))
            KIN_ERROR("cannot start the exec channel relay for %s", c->name);
        boot[0] = -1;
    }
    if (boot[0] >= 0) {
        /* The writer gets a copy; ours stays open while the child lives,
         * so the remote child's stdin (the ssh channel) ends exactly when
         * ssh does: that is how it learns that ssh was stopped, even when
         * its link to us does not run through ssh. */
        int copy = e ? -1 : fcntl(boot[0], F_DUPFD_CLOEXEC, 0);
        if (!e && copy < 0)
            e = -errno;
        else if (!e && (e = kin__ssh_boot(&ssh, copy)))
            KIN_ERROR("cannot start the boot writer for %s", c->name);
        c->channel_fd = boot[0];
    }
    /* A child of another protocol version is told so by the router,
     * which wakes us at once (version below). */
    char version[160] = "";
    pthread_mutex_lock(&p->mu);
    while (!e && !kin__node_child_linked(n, c->id) && !c->exited &&
           !kin__node_child_bad_version(n, c->id, NULL, 0))
        if (pthread_cond_timedwait(&p->cond, &p->mu, &dl) == ETIMEDOUT)
            break;
    if (!e && kin__node_child_linked(n, c->id) && !c->exited)
        c->armed = true; /* from here on, its exit is reported */
    else if (!e &&
             kin__node_child_bad_version(n, c->id, version, sizeof version))
        e = KIN_EBADVERSION;
    else if (!e)
        e = c->exited ? KIN_ESPAWN : KIN_ETIMEOUT;
    if (e && p->tripped)
        e = KIN_EEMERGENCY;
    pthread_mutex_unlock(&p->mu);
    free_env(r.envp);
    kin__ssh_plan_free(&ssh);
    kin__exec_plan_free(&xp);
    memset(&cert, 0, sizeof cert);
    if (e) {
        char tail[1024] = "";
        if (c->pid > 0) {
            /* Told why, it ends by itself (its own words reach stderr),
             * within what is left of the connect timeout. */
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            int64_t left = (dl.tv_sec - now.tv_sec) * 1000 +
                           (dl.tv_nsec - now.tv_nsec) / 1000000;
            if (e == KIN_EBADVERSION && left > 0)
                kin_child_wait(c, (int)left, NULL);
            kin_child_stop(c, NULL);
            kin_child_stderr_tail(c, tail, sizeof tail);
            kin_child_destroy(&c);
        } else {
            if (c->channel_fd >= 0)
                close(c->channel_fd);
            kin__cgroup_remove(&c->cgroup);
            kin__child_cert_revoke(c->cert_pub);
            free(c);
        }
        size_t len = strlen(tail);
        while (len && tail[len - 1] == '\n')
            tail[--len] = 0;
        /* execve's words for a text file without #! do not say so. */
        const char *hint =
            e == -ENOEXEC ? " (not a program: a script needs a #! line)" : "";
        char stage[600] = "";
        kin__limits_describe(opts, r.fail_stage, -e, stage, sizeof stage);
        if (opts->errbuf && opts->errbuf_size && *stage)
            snprintf(opts->errbuf, opts->errbuf_size, "%s: %s", path, stage);
        else if (opts->errbuf && opts->errbuf_size && *version)
            snprintf(opts->errbuf, opts->errbuf_size, "%s: %s%s%s", path,
                     version, *tail ? "; stderr: " : "", tail);
        else if (opts->errbuf && opts->errbuf_size)
            snprintf(opts->errbuf, opts->errbuf_size, "%s: %s%s%s%s", path,
                     kin_strerror(e), hint, *tail ? "; stderr: " : "", tail);
        KIN_ERROR("spawning %s failed: %s%s%s", path, kin_strerror(e),
                  *tail ? "; stderr: " : "", tail);
        return e;
    }
    *out = c;
    return KIN_OK;
}

uint32_t
kin_child_id(const kin_child *c)
{
    return c->id;
}

pid_t
kin_child_pid(const kin_child *c)
{
    return c->pid;
}

const char *
kin_child_name(const kin_child *c)
{
    return c->name;
}

bool
kin_child_exited(kin_child *c)
{
    if (c->proxy)
        return proxy_wait(c, 0, NULL) != KIN_ETIMEOUT;
    kin_node *n = c->node;
    if (!n)
        return true;
    kin__procs *p = c->procs;
    pthread_mutex_lock(&p->mu);
    bool e = c->exited;
    pthread_mutex_unlock(&p->mu);
    return e;
}

kin_err
kin_child_wait(kin_child *c, int timeout_ms, int *status)
{
    if (c->proxy)
        return proxy_wait(c, timeout_ms, status);
    kin_node *n = c->node;
    if (!n)
        return exit_result(c, status);
    kin__procs *p = c->procs;
    struct timespec ts;
    const struct timespec *dl = kin__deadline_or_forever(&ts, timeout_ms);
    pthread_mutex_lock(&p->mu);
    while (!c->exited)
        if (kin__cond_wait_dl(&p->cond, &p->mu, dl) == ETIMEDOUT)
            break;
    kin_err e = c->exited ? exit_result(c, status) : KIN_ETIMEOUT;
    pthread_mutex_unlock(&p->mu);
    return e;
}

kin_err
kin_child_stop(kin_child *c, int *status)
{
    if (c->proxy) {
        /* Also after the child ended: via then frees what it kept. */
        int st = 0;
        kin_err e = c->proxy_stopped ? -ESRCH
                                     : kin__via_stop(c->caller, c->via, c->id,
                                                     c->stop_timeout_ms, &st);
        if (e && !proxy_gone(e))
            return e;
        c->proxy_stopped = true;
        return proxy_end(c, e, st, status);
    }
    kin_node *n = c->node;
    if (!n || kin_child_exited(c))
        return kin_child_wait(c, 0, status);
    uint64_t start = kin__now_ns();
    kin_err e;
    /* Ask nicely over the wire first, if it ever got that far. */
    if (ask_stop(n, c->id)) {
        e = kin_child_wait(c, c->stop_timeout_ms / 4, status);
        if (e != KIN_ETIMEOUT)
            return e;
    }
    /* SIGTERM now, SIGKILL by the broker's timer at the deadline. */
    int spent = (int)((kin__now_ns() - start) / 1000000u);
    int left = c->stop_timeout_ms - spent;
    if (!terminate_sync(c, left > 0 ? left : 0))
        return kin_child_wait(c, c->stop_timeout_ms, status) == KIN_ETIMEOUT
                   ? KIN_ESHUTDOWN
                   : exit_result(c, status);
    return kin_child_wait(c, KIN_FOREVER, status);
}

void
kin_child_destroy(kin_child **cp)
{
    if (!cp || !*cp)
        return;
    kin_child *c = *cp;
    if (c->proxy) {
        kin_child_stop(c, NULL);
        pthread_mutex_destroy(&c->proxy_mu);
    } else if (c->node) {
        kin_child_stop(c, NULL);
        detach(c);
    }
    if (c->channel_fd >= 0)
        close(c->channel_fd);
    kin__cgroup_remove(&c->cgroup); /* reaped: gone already */
    kin__child_cert_revoke(c->cert_pub);
    free(c);
    *cp = NULL;
}
