/* Supervisors: child specs started in order and stopped in reverse, restart
 * by type (permanent, transient, temporary) and strategy (one_for_one,
 * one_for_all, rest_for_one), intensity, backoff and the emergency stop.
 * One thread per supervisor does all the work; the broker thread only
 * notes exits and trips (see kin_child_exit_fn). */
#include <kin/supervisor.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "core/log_internal.h"
#include "core/sync.h"
#include "core/task.h"
#include "process/child.h"
#include "process/events.h"
#include "process/limits.h"
#include "process/procs.h"
#include "process/restart_policy.h"
#include "router/service.h"

enum cmd { CMD_NONE, CMD_START, CMD_STOP, CMD_ADD };

typedef struct slot {
    kin_supervisor *s;
    /* the spec, copied */
    char name[64];
    char *ctx_name, *program;
    char **argv;
    char *cwd;
    char **env;
    kin_rlimit *rlimits;
    kin_spawn_opts spawn;
    kin_restart restart;
    int shutdown_ms;
    char svc_names[KIN_CHILD_SERVICES_MAX][KIN_SERVICE_NAME_MAX + 1];
    const char *svc[KIN_CHILD_SERVICES_MAX + 1]; /* NULL-terminated */
    bool held; /* its services are announced as restarting */
    /* under s->mu; child, state and the counters change on s's thread */
    kin_child *child;
    kin_child_state state;
    uint32_t id;
    pid_t pid;
    unsigned restarts;
    bool exited;
    int last_status;
    kin_err last_error;
    uint64_t restart_at; /* monotonic ns, while RESTARTING */
    bool stopping;       /* s is stopping it: its exit is no news */
    bool exit_pending;   /* set by the broker thread */
    kin_child *exit_child;
    int exit_status;
} slot;

struct kin_supervisor {
    kin_node *node; /* NULL once the node went first */
    kin_supervisor_opts opts;
    kin__watcher watcher;
    pthread_t thread;
    bool thread_live;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast for everything */
    slot **slots;
    size_t count, cap;
    kin_supervisor_state state;
    bool tripped, quit;
    uint64_t changes;
    kin__restart_window restarts; /* times owned here */
    enum cmd cmd;
    slot *cmd_slot;
    bool cmd_done;
    kin_err cmd_result;
};

/* --- helpers ---------------------------------------------------------------
 */

static struct timespec
to_timespec(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u),
                             .tv_nsec = (long)(ns % 1000000000u)};
}

static bool
on_own_thread(kin_supervisor *s)
{
    return s->thread_live && pthread_equal(pthread_self(), s->thread);
}

static void
free_slot(slot *x)
{
    if (!x)
        return;
    free(x->ctx_name);
    free(x->program);
    for (size_t i = 0; x->argv && x->argv[i]; i++)
        free(x->argv[i]);
    free(x->argv);
    free(x->cwd);
    for (size_t i = 0; x->env && x->env[i]; i++)
        free(x->env[i]);
    free(x->env);
    free(x->rlimits);
    free(x);
}

static slot *
find(kin_supervisor *s, const char *name)
{
    for (size_t i = 0; i < s->count; i++)
        if (!strcmp(s->slots[i]->name, name))
            return s->slots[i];
    return NULL;
}

static size_t
index_of(kin_supervisor *s, slot *x)
{
    for (size_t i = 0; i < s->count; i++)
        if (s->slots[i] == x)
            return i;
    return s->count;
}

/* The event's log record (process/events.h); exits are logged where the
 * child is reaped, give-ups by give_up. */
static void
log_event(kin_sup_event_kind kind, const slot *x, kin_err error)
{
    static const char *const names[] = {
        [KIN_SUP_EV_STARTED] = KIN__EV_CHILD_START,
        [KIN_SUP_EV_STOPPED] = KIN__EV_CHILD_STOP,
        [KIN_SUP_EV_START_FAILED] = KIN__EV_CHILD_START_FAILED,
    };
    if (!x || (unsigned)kind >= sizeof names / sizeof *names || !names[kind])
        return;
    const char *ev = kind == KIN_SUP_EV_STARTED && x->restarts
                         ? KIN__EV_CHILD_RESTART
                         : names[kind];
    kin__ev_sup_child(ev, x->name, x->id, x->pid, x->restarts, error);
}

/* Under s->mu, on s's thread: tells on_event (without the lock, so it may
 * query), then counts the change and wakes waiters, who thus see both the
 * new state and whatever on_event did. */
static void
emit(kin_supervisor *s, kin_sup_event_kind kind, slot *x, int status,
     kin_err error)
{
    log_event(kind, x, error);
    if (s->opts.on_event) {
        char name[64] = "";
        kin_sup_event ev = {.kind = kind, .status = status, .error = error};
        if (x) {
            memcpy(name, x->name, sizeof name);
            ev.child = name;
            ev.id = x->id;
            ev.pid = x->pid;
            ev.restarts = x->restarts;
        }
        pthread_mutex_unlock(&s->mu);
        s->opts.on_event(s, &ev, s->opts.arg);
        pthread_mutex_lock(&s->mu);
    }
    s->changes++;
    pthread_cond_broadcast(&s->cond);
}

/* --- notifications from the broker thread ----------------------------------
 */

static void
on_child_exit(kin_child *c, int status, void *arg)
{
    slot *x = arg;
    kin_supervisor *s = x->s;
    pthread_mutex_lock(&s->mu);
    if (!x->stopping) {
        x->exit_pending = true;
        x->exit_child = c;
        x->exit_status = status;
        /* Reaped: it is not running, whatever the supervisor's thread
         * has still to book. */
        if (x->child == c && x->state == KIN_CHILD_RUNNING) {
            x->state = KIN_CHILD_EXITED;
            s->changes++;
        }
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
}

static void
on_trip(void *arg)
{
    kin_supervisor *s = arg;
    pthread_mutex_lock(&s->mu);
    s->tripped = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* --- starting and stopping one child (s's thread, s->mu held) --------------
 */

static kin_err
start_slot(kin_supervisor *s, slot *x, bool is_restart)
{
    if (s->tripped)
        return KIN_EEMERGENCY;
    kin_spawn_opts o = x->spawn;
    o.on_exit = on_child_exit;
    o.on_exit_arg = x;
    o.stop_timeout_ms = x->shutdown_ms;
    x->exit_pending = false;
    x->stopping = false;
    pthread_mutex_unlock(&s->mu);
    kin_child *c = NULL;
    kin_err e = kin_spawn(s->node, &o, &c);
    pthread_mutex_lock(&s->mu);
    if (e) {
        x->last_error = e;
        KIN_WARN("supervisor: starting %s failed: %s", x->name,
                 kin_strerror(e));
        emit(s, KIN_SUP_EV_START_FAILED, x, 0, e);
        return e;
    }
    x->child = c;
    x->id = kin_child_id(c);
    x->pid = kin_child_pid(c);
    x->state = KIN_CHILD_RUNNING;
    x->last_error = KIN_OK;
    if (is_restart) {
        x->restarts++;
        kin__procs *ps = s->node ? kin__procs_of(s->node) : NULL;
        if (ps)
            atomic_fetch_add_explicit(&ps->restarts, 1, memory_order_relaxed);
    }
    if (x->svc[0]) {
        /* Not under mu: the broker thread takes it to report exits. */
        uint32_t id = x->id;
        bool held = x->held;
        x->held = false;
        pthread_mutex_unlock(&s->mu);
        kin__service_offer_for(s->node, id, x->svc, x->spawn.workers);
        if (held)
            kin__service_hold(s->node, x->svc, -1);
        pthread_mutex_lock(&s->mu);
    }
    /* An exit that raced with kin_spawn's return is for this child. */
    if (x->exit_pending && x->exit_child != c)
        x->exit_pending = false;
    emit(s, KIN_SUP_EV_STARTED, x, 0, KIN_OK);
    return KIN_OK;
}

/* x's services are (+1) or no longer (-1) waiting for its restart. */
static void
set_held(kin_supervisor *s, slot *x, bool held)
{
    if (!x->svc[0] || x->held == held || !s->node)
        return;
    x->held = held;
    pthread_mutex_unlock(&s->mu);
    kin__service_hold(s->node, x->svc, held ? 1 : -1);
    pthread_mutex_lock(&s->mu);
}

/* Stops x's process if it has one; x ends STOPPED either way. */
static void
stop_slot(kin_supervisor *s, slot *x)
{
    kin_child *c = x->child;
    set_held(s, x, false);
    if (!c) {
        if (x->state == KIN_CHILD_RESTARTING || x->state == KIN_CHILD_RUNNING)
            x->state = KIN_CHILD_STOPPED;
        return;
    }
    x->stopping = true;
    x->exit_pending = false;
    pthread_mutex_unlock(&s->mu);
    int st = 0;
    kin_child_stop(c, &st);
    kin_child_destroy(&c);
    pthread_mutex_lock(&s->mu);
    x->child = NULL;
    x->stopping = false;
    x->exit_pending = false;
    x->exited = true;
    x->last_status = st;
    x->state = KIN_CHILD_STOPPED;
    emit(s, KIN_SUP_EV_STOPPED, x, st, KIN_OK);
    x->pid = 0;
}

/* Books an exit the broker thread reported; x ends EXITED. */
static void
record_exit(kin_supervisor *s, slot *x)
{
    kin_child *c = x->child;
    int st = x->exit_status;
    x->exit_pending = false;
    x->child = NULL;
    x->exited = true;
    x->last_status = st;
    x->state = KIN_CHILD_EXITED;
    pthread_mutex_unlock(&s->mu);
    kin_child_destroy(&c); /* reaped already: this only frees */
    pthread_mutex_lock(&s->mu);
    if (WIFSIGNALED(st))
        KIN_INFO("supervisor: %s (pid %d) killed by signal %d", x->name,
                 (int)x->pid, WTERMSIG(st));
    else
        KIN_INFO("supervisor: %s (pid %d) exited with %d", x->name, (int)x->pid,
                 WEXITSTATUS(st));
    emit(s, KIN_SUP_EV_EXITED, x, st, KIN_OK);
    x->pid = 0;
}

/* The first child with an exit to book (only emergency exits if asked). */
static slot *
pending_exit(kin_supervisor *s, bool only_emergency)
{
    for (size_t i = 0; i < s->count; i++) {
        slot *x = s->slots[i];
        if (x->exit_pending && x->child && x->exit_child == x->child &&
            (!only_emergency || kin__is_emergency(x->exit_status)))
            return x;
    }
    return NULL;
}

static void
record_pending(kin_supervisor *s, bool only_emergency)
{
    slot *x;
    while ((x = pending_exit(s, only_emergency)))
        record_exit(s, x);
}

/* Every child in reverse order. */
static void
stop_all(kin_supervisor *s)
{
    for (size_t i = s->count; i-- > 0;)
        stop_slot(s, s->slots[i]);
}

/* --- intensity and backoff -------------------------------------------------
 */

static uint64_t
period_ns(const kin_supervisor *s)
{
    return (uint64_t)s->opts.period_ms * 1000000u;
}

/* Books a restart; false when that makes too many within the period. */
static bool
count_restart(kin_supervisor *s, uint64_t now)
{
    return kin__restart_window_book(&s->restarts, now, period_ns(s));
}

static uint64_t
backoff_ns(kin_supervisor *s, uint64_t now)
{
    int k = kin__restart_window_count(&s->restarts, now, period_ns(s));
    return kin__restart_backoff_ms(s->opts.backoff_ms, s->opts.backoff_max_ms,
                                   k) *
           1000000u;
}

static void
give_up(kin_supervisor *s)
{
    KIN_ERROR("supervisor: more than %d restarts in %d ms, giving up",
              s->opts.intensity, s->opts.period_ms);
    kin__ev_sup_gave_up(s->opts.intensity, s->opts.period_ms);
    s->state = KIN_SUP_GAVE_UP;
    record_pending(s, false);
    stop_all(s);
    emit(s, KIN_SUP_EV_GAVE_UP, NULL, 0, KIN_OK);
}

static void
emergency(kin_supervisor *s)
{
    s->state = KIN_SUP_EMERGENCY;
    /* The child that asked for it shows it (its exit was booked before the
     * trip); the others count as stopped, whether the trip's SIGTERM or
     * stop_all got them. */
    record_pending(s, true);
    stop_all(s);
    emit(s, KIN_SUP_EV_EMERGENCY, NULL, 0, KIN_OK);
}

/* --- restarts --------------------------------------------------------------
 */

static bool
wants_restart(const slot *x, int status)
{
    if (kin__is_emergency(status))
        return false;
    switch (x->restart) {
    case KIN_RESTART_PERMANENT:
        return true;
    case KIN_RESTART_TRANSIENT:
        return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    default:
        return false;
    }
}

/* x exited on its own while RUNNING: book it, then restart what the
 * strategy says, after the backoff. */
static void
handle_exit(kin_supervisor *s, slot *x)
{
    int st = x->exit_status;
    record_exit(s, x);
    if (s->tripped || s->state != KIN_SUP_RUNNING || !wants_restart(x, st))
        return;
    uint64_t now = kin__now_ns();
    if (!count_restart(s, now)) {
        give_up(s);
        return;
    }
    uint64_t at = now + backoff_ns(s, now);
    size_t first = s->opts.strategy == KIN_ONE_FOR_ALL    ? 0
                   : s->opts.strategy == KIN_REST_FOR_ONE ? index_of(s, x)
                                                          : s->count;
    /* The others of its group go in reverse order... */
    for (size_t i = s->count; i-- > first;) {
        slot *y = s->slots[i];
        if (y == x)
            continue;
        bool was_up = y->child != NULL;
        if (was_up)
            stop_slot(s, y);
        if (y->state == KIN_CHILD_RESTARTING ||
            (was_up && y->restart != KIN_RESTART_TEMPORARY)) {
            y->state = KIN_CHILD_RESTARTING;
            if (y->restart_at < at)
                y->restart_at = at;
        }
        if (s->tripped || s->state != KIN_SUP_RUNNING)
            return;
    }
    /* ...and come back in order with it (run_restarts keeps the order). */
    x->state = KIN_CHILD_RESTARTING;
    x->restart_at = at;
    set_held(s, x, true);
}

/* Starts the first RESTARTING child that is due; *next gets the earliest
 * time one will be. Returns whether it started (or tried) one. */
static bool
run_restarts(kin_supervisor *s, uint64_t *next)
{
    bool ordered = s->opts.strategy != KIN_ONE_FOR_ONE;
    uint64_t now = kin__now_ns();
    *next = UINT64_MAX;
    for (size_t i = 0; i < s->count; i++) {
        slot *x = s->slots[i];
        if (x->state != KIN_CHILD_RESTARTING)
            continue;
        if (x->restart_at > now) {
            if (x->restart_at < *next)
                *next = x->restart_at;
            if (ordered)
                break; /* who comes later waits for it */
            continue;
        }
        kin_err e = start_slot(s, x, true);
        if (e && !s->tripped && s->state == KIN_SUP_RUNNING) {
            now = kin__now_ns();
            if (!count_restart(s, now)) {
                give_up(s);
                return true;
            }
            x->state = KIN_CHILD_RESTARTING;
            x->restart_at = now + backoff_ns(s, now);
        }
        return true;
    }
    return false;
}

/* --- commands --------------------------------------------------------------
 */

static kin_err
cmd_start(kin_supervisor *s)
{
    if (s->tripped || s->state == KIN_SUP_EMERGENCY)
        return KIN_EEMERGENCY;
    if (s->state == KIN_SUP_RUNNING)
        return KIN_OK;
    s->state = KIN_SUP_RUNNING;
    s->restarts.len = s->restarts.pos = 0;
    for (size_t i = 0; i < s->count; i++) {
        slot *x = s->slots[i];
        kin_err e = start_slot(s, x, false);
        if (e) {
            stop_all(s);
            x->state = KIN_CHILD_STOPPED;
            if (s->state == KIN_SUP_RUNNING)
                s->state = KIN_SUP_STOPPED;
            return e;
        }
    }
    return KIN_OK;
}

static kin_err
cmd_stop(kin_supervisor *s)
{
    record_pending(s, false);
    stop_all(s);
    if (s->state == KIN_SUP_RUNNING)
        s->state = KIN_SUP_STOPPED;
    s->changes++;
    pthread_cond_broadcast(&s->cond);
    return KIN_OK;
}

static kin_err
cmd_add(kin_supervisor *s, slot *x)
{
    if (s->tripped)
        return KIN_EEMERGENCY;
    if (s->state != KIN_SUP_RUNNING)
        return KIN_OK;
    return start_slot(s, x, false);
}

static void
run_cmd(kin_supervisor *s)
{
    kin_err e = KIN_OK;
    switch (s->cmd) {
    case CMD_START:
        e = cmd_start(s);
        break;
    case CMD_STOP:
        e = cmd_stop(s);
        break;
    case CMD_ADD:
        e = cmd_add(s, s->cmd_slot);
        break;
    default:
        break;
    }
    s->cmd_result = e;
    s->cmd_done = true;
    pthread_cond_broadcast(&s->cond);
}

/* --- the thread ------------------------------------------------------------
 */

static void *
sup_main(void *arg)
{
    kin_supervisor *s = arg;
    kin__thread_name("kin-supervisor");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->cmd != CMD_NONE && !s->cmd_done) {
            run_cmd(s);
            continue;
        }
        if (s->quit)
            break;
        if (s->tripped && s->state != KIN_SUP_EMERGENCY) {
            emergency(s);
            continue;
        }
        slot *x = pending_exit(s, false);
        if (x) {
            handle_exit(s, x);
            continue;
        }
        uint64_t next = UINT64_MAX;
        if (s->state == KIN_SUP_RUNNING && run_restarts(s, &next))
            continue;
        if (next == UINT64_MAX) {
            pthread_cond_wait(&s->cond, &s->mu);
        } else {
            struct timespec ts = to_timespec(next);
            pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Runs a command on s's thread and waits for its result. */
static kin_err
post(kin_supervisor *s, enum cmd cmd, slot *x)
{
    if (on_own_thread(s))
        return -EDEADLK;
    pthread_mutex_lock(&s->mu);
    while (s->cmd != CMD_NONE && !s->quit)
        pthread_cond_wait(&s->cond, &s->mu);
    if (s->quit || !s->thread_live) {
        pthread_mutex_unlock(&s->mu);
        return KIN_ESHUTDOWN;
    }
    s->cmd = cmd;
    s->cmd_slot = x;
    s->cmd_done = false;
    pthread_cond_broadcast(&s->cond);
    while (!s->cmd_done)
        pthread_cond_wait(&s->cond, &s->mu);
    kin_err e = s->cmd_result;
    s->cmd = CMD_NONE;
    s->cmd_slot = NULL;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return e;
}

/* Stops the children and ends the thread (idempotent). */
static void
shut_down(kin_supervisor *s)
{
    if (!s->thread_live)
        return;
    post(s, CMD_STOP, NULL);
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->thread_live = false;
}

/* The node is going (kin_node_destroy, on its destroying thread). */
static void
quiesce(void *arg)
{
    kin_supervisor *s = arg;
    shut_down(s);
    s->node = NULL;
}

/* --- public ----------------------------------------------------------------
 */

kin_err
kin_supervisor_new(kin_supervisor **out, kin_node *n,
                   const kin_supervisor_opts *opts)
{
    kin_supervisor_opts o = opts ? *opts : (kin_supervisor_opts){0};
    if (o.strategy > KIN_REST_FOR_ONE || o.intensity < 0 || o.period_ms < 0 ||
        o.backoff_max_ms < 0)
        return -EINVAL;
    if (!o.intensity)
        o.intensity = 3;
    if (!o.period_ms)
        o.period_ms = 5000;
    if (!o.backoff_ms)
        o.backoff_ms = 10;
    if (!o.backoff_max_ms)
        o.backoff_max_ms = 1000;
    kin_supervisor *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->restarts.size = o.intensity + 1;
    s->restarts.times = calloc((size_t)s->restarts.size, sizeof(uint64_t));
    if (!s->restarts.times) {
        free(s);
        return -ENOMEM;
    }
    s->node = n;
    s->opts = o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->watcher =
        (kin__watcher){.on_trip = on_trip, .quiesce = quiesce, .arg = s};
    kin_err e = kin__procs_watch(n, &s->watcher);
    if (!e) {
        int rc = pthread_create(&s->thread, NULL, sup_main, s);
        if (rc) {
            kin__procs_unwatch(n, &s->watcher);
            e = -rc;
        }
    }
    if (e) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->mu);
        free(s->restarts.times);
        free(s);
        return e;
    }
    s->thread_live = true;
    *out = s;
    return KIN_OK;
}

static char *
dup_or_null(const char *p, bool *failed)
{
    if (!p)
        return NULL;
    char *d = strdup(p);
    if (!d)
        *failed = true;
    return d;
}

/* A copy of the NULL-terminated v (NULL: NULL). */
static char **
dup_strv(char *const *v, bool *failed)
{
    if (!v)
        return NULL;
    size_t count = 0;
    while (v[count])
        count++;
    char **d = calloc(count + 1, sizeof *d);
    *failed |= !d;
    for (size_t i = 0; d && i < count; i++)
        d[i] = dup_or_null(v[i], failed);
    return d;
}

static slot *
make_slot(kin_supervisor *s, const kin_child_spec *spec)
{
    slot *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->s = s;
    snprintf(x->name, sizeof x->name, "%s", spec->name);
    bool failed = false;
    x->spawn = spec->spawn;
    x->ctx_name =
        dup_or_null(spec->spawn.name ? spec->spawn.name : spec->name, &failed);
    x->program = dup_or_null(spec->spawn.program, &failed);
    x->argv = dup_strv(spec->spawn.argv, &failed);
    x->cwd = dup_or_null(spec->spawn.cwd, &failed);
    x->env = dup_strv(spec->spawn.env, &failed);
    if (spec->spawn.rlimits && spec->spawn.n_rlimits) {
        size_t size = spec->spawn.n_rlimits * sizeof *x->rlimits;
        if ((x->rlimits = malloc(size)))
            memcpy(x->rlimits, spec->spawn.rlimits, size);
        failed |= !x->rlimits;
    }
    if (failed) {
        free_slot(x);
        return NULL;
    }
    x->spawn.name = x->ctx_name;
    x->spawn.program = x->program;
    x->spawn.argv = x->argv;
    x->spawn.cwd = x->cwd;
    x->spawn.env = x->env;
    x->spawn.rlimits = x->rlimits;
    x->spawn.errbuf = NULL;
    x->spawn.errbuf_size = 0;
    x->restart = spec->restart;
    x->shutdown_ms = spec->shutdown_timeout_ms > 0 ? spec->shutdown_timeout_ms
                     : spec->spawn.stop_timeout_ms > 0
                         ? spec->spawn.stop_timeout_ms
                         : 2000;
    for (size_t i = 0; spec->services && spec->services[i]; i++) {
        size_t len = strlen(spec->services[i]);
        if (i == KIN_CHILD_SERVICES_MAX ||
            !kin__service_name_ok(spec->services[i], len)) {
            free_slot(x);
            return NULL;
        }
        memcpy(x->svc_names[i], spec->services[i], len + 1);
        x->svc[i] = x->svc_names[i];
    }
    x->state = KIN_CHILD_IDLE;
    return x;
}

kin_err
kin_supervisor_add(kin_supervisor *s, const kin_child_spec *spec)
{
    if (!spec || !spec->name || !spec->name[0] || strlen(spec->name) > 63 ||
        spec->restart > KIN_RESTART_TEMPORARY)
        return -EINVAL;
    if (on_own_thread(s))
        return -EDEADLK;
    for (size_t i = 0; spec->services && spec->services[i]; i++)
        if (i == KIN_CHILD_SERVICES_MAX ||
            !kin__service_name_ok(spec->services[i], strlen(spec->services[i])))
            return -EINVAL;
    /* A bad limit or variable is bad at every start; a missing cwd may
     * yet appear, and fails the start that finds it missing. */
    if (kin__limits_check(&spec->spawn, false, NULL, 0) == -EINVAL)
        return -EINVAL;
    slot *x = make_slot(s, spec);
    if (!x)
        return -ENOMEM;
    pthread_mutex_lock(&s->mu);
    kin_err e = KIN_OK;
    if (find(s, spec->name)) {
        e = KIN_EEXISTS;
    } else if (s->count == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        slot **bigger = realloc(s->slots, cap * sizeof *bigger);
        if (bigger) {
            s->slots = bigger;
            s->cap = cap;
        } else {
            e = -ENOMEM;
        }
    }
    if (!e)
        s->slots[s->count++] = x;
    bool running = s->state == KIN_SUP_RUNNING;
    pthread_mutex_unlock(&s->mu);
    if (e) {
        free_slot(x);
        return e;
    }
    if (!running)
        return KIN_OK;
    if ((e = post(s, CMD_ADD, x))) {
        /* As OTP's start_child: a child that cannot start is not kept. The
         * thread is idle between commands, and x never ran. */
        pthread_mutex_lock(&s->mu);
        size_t i = index_of(s, x);
        if (i < s->count && !x->child) {
            memmove(&s->slots[i], &s->slots[i + 1],
                    (s->count - i - 1) * sizeof *s->slots);
            s->count--;
        } else {
            x = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        free_slot(x);
    }
    return e;
}

kin_err
kin_supervisor_start(kin_supervisor *s)
{
    return post(s, CMD_START, NULL);
}

kin_err
kin_supervisor_stop(kin_supervisor *s)
{
    kin_err e = post(s, CMD_STOP, NULL);
    return e == KIN_ESHUTDOWN ? KIN_OK : e;
}

kin_supervisor_state
kin_supervisor_state_get(kin_supervisor *s)
{
    pthread_mutex_lock(&s->mu);
    kin_supervisor_state st = s->state;
    pthread_mutex_unlock(&s->mu);
    return st;
}

size_t
kin_supervisor_count(kin_supervisor *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void
snapshot(const slot *x, kin_child_info *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->name, x->name, sizeof out->name);
    out->state = x->state;
    out->restart = x->restart;
    out->id = x->id;
    out->pid = x->state == KIN_CHILD_RUNNING ? x->pid : 0;
    out->restarts = x->restarts;
    out->exited = x->exited;
    out->last_status = x->last_status;
    out->emergency = x->exited && kin__is_emergency(x->last_status);
    out->last_error = x->last_error;
}

kin_err
kin_supervisor_child(kin_supervisor *s, const char *name, kin_child_info *out)
{
    pthread_mutex_lock(&s->mu);
    slot *x = name ? find(s, name) : NULL;
    if (x)
        snapshot(x, out);
    pthread_mutex_unlock(&s->mu);
    return x ? KIN_OK : -ENOENT;
}

kin_err
kin_supervisor_child_at(kin_supervisor *s, size_t index, kin_child_info *out)
{
    pthread_mutex_lock(&s->mu);
    bool ok = index < s->count;
    if (ok)
        snapshot(s->slots[index], out);
    pthread_mutex_unlock(&s->mu);
    return ok ? KIN_OK : -ENOENT;
}

uint64_t
kin_supervisor_changes(kin_supervisor *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t c = s->changes;
    pthread_mutex_unlock(&s->mu);
    return c;
}

kin_err
kin_supervisor_wait(kin_supervisor *s, uint64_t since, int timeout_ms,
                    uint64_t *now)
{
    struct timespec ts = to_timespec(
        kin__now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u);
    pthread_mutex_lock(&s->mu);
    while (s->changes <= since)
        if (timeout_ms < 0)
            pthread_cond_wait(&s->cond, &s->mu);
        else if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) == ETIMEDOUT)
            break;
    kin_err e = s->changes > since ? KIN_OK : KIN_ETIMEOUT;
    if (now)
        *now = s->changes;
    pthread_mutex_unlock(&s->mu);
    return e;
}

const char *
kin_supervisor_state_name(kin_supervisor_state st)
{
    static const char *const names[] = {"idle", "running", "stopped", "gave-up",
                                        "emergency"};
    return (unsigned)st < 5 ? names[st] : "unknown";
}

const char *
kin_child_state_name(kin_child_state st)
{
    static const char *const names[] = {"idle", "running", "restarting",
                                        "exited", "stopped"};
    return (unsigned)st < 5 ? names[st] : "unknown";
}

void
kin_supervisor_destroy(kin_supervisor **sp)
{
    if (!sp || !*sp)
        return;
    kin_supervisor *s = *sp;
    if (on_own_thread(s)) {
        KIN_ERROR("kin_supervisor_destroy called from its own thread");
        return;
    }
    shut_down(s);
    if (s->node)
        kin__procs_unwatch(s->node, &s->watcher);
    for (size_t i = 0; i < s->count; i++)
        free_slot(s->slots[i]);
    free(s->slots);
    free(s->restarts.times);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
    *sp = NULL;
}
