/* The MONITOR service: decodes [cmd, {args}] requests on the broker thread
 * and answers with msgpack maps built straight from the task table (see
 * docs/monitor.md). Read-only commands are open to the whole tree;
 * cancel, signal and custom commands need parent authority. */
#include "monitor/service.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kin/logs.h>
#include <kin/monitor.h>

#include "core/log_internal.h"
#include "core/sync.h"
#include "logs/logs.h"
#include "monitor/errstack.h"
#include "monitor/metrics.h"
#include "monitor/request.h"
#include "monitor/stack.h"
#include "process/events.h"
#include "process/procs.h"
#include "router/router.h"
#include "router/service.h"

typedef struct custom {
    char name[32];
    char help[128];
    kin_monitor_fn fn;
    void *arg;
    struct custom *next;
} custom;

struct kin__monitor {
    pthread_mutex_t mu;
    custom *commands;
    /* Requests that capture stacks run on threads of their own (the broker
     * must keep routing, and its own stack is wanted too): how many run,
     * and whether the node is going away (no new ones then). */
    pthread_cond_t idle;
    int stacks_running;
    bool stopping;
};

/* The key of the monitor's state in its node. */
static const kin__layer monitor_layer = {"monitor"};

static struct kin__monitor *
monitor_of(const kin_node *n)
{
    return kin__node_layer(n, &monitor_layer);
}

typedef kin__monitor_req req;

static const struct {
    const char *name, *help;
    bool mutates;
} builtins[] = {
    {"help", "list commands", false},
    {"info", "this context: id, name, host, pid, children, tasks, rss", false},
    {"ps", "live tasks [filter] [persistent]", false},
    {"ps-terminated", "recently terminated tasks", false},
    {"where", "current stack of a task's thread [task]", false},
    {"where-terminated", "how a terminated task ended [task]", false},
    {"stacktrace", "stacks of every thread of this context", false},
    {"services", "this context's service table: providers, load, latency",
     false},
    {"metrics", "this context's figures and its functions' call metrics",
     false},
    {"cancel", "cancel a task [task]", true},
    {"signal", "send a signal to this context's process [signal]", true},
};

static double
ms_since(uint64_t now, uint64_t then)
{
    return then && now > then ? (double)(now - then) / 1e6 : 0.0;
}

static void
pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void
pack_key(msgpack_packer *pk, const char *k)
{
    pack_str(pk, k);
}

/* --- requests --- */

/* --- commands --- */

static void
pack_live(kin_node *n, msgpack_packer *pk, kin_task *t, uint64_t now)
{
    pthread_mutex_lock(&t->mu);
    msgpack_pack_array(pk, 18);
    msgpack_pack_uint32(pk, t->id);
    pack_str(pk, t->name);
    pack_str(pk, t->fn);
    msgpack_pack_int(pk, atomic_load(&t->state));
    if (t->persistent)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_pack_uint32(pk, t->caller_ctx);
    msgpack_pack_uint32(pk, t->caller_task);
    msgpack_pack_uint32(pk, t->caller_handle);
    msgpack_pack_double(
        pk, ms_since(now, t->started_ns ? t->started_ns : t->created_ns));
    pack_str(pk, t->wait_what ? t->wait_what : "");
    msgpack_pack_double(pk,
                        t->wait_what ? ms_since(now, t->wait_since_ns) : 0.0);
    /* A service call: the provider its resolver (this context, when the
     * caller's own table knows the providers) sent it to. */
    msgpack_pack_uint32(pk, t->await_svc
                                ? kin__svc_call_provider(n, t->await_handle)
                                : t->await_ctx);
    msgpack_pack_uint32(pk, t->await_handle);
    pack_str(pk, t->await_fn);
    char at[256] = "";
    if (t->created_file)
        snprintf(at, sizeof at, "%s:%d", t->created_file, t->created_line);
    pack_str(pk, at);
    /* The calls it waits for in a select: [ctx, handle, ctx, handle ...]
     * (the first KIN_TASK_MAX_AWAITS), then how many there are. */
    uint32_t kept =
        t->n_awaits < KIN_TASK_MAX_AWAITS ? t->n_awaits : KIN_TASK_MAX_AWAITS;
    msgpack_pack_array(pk, 2 * kept);
    for (uint32_t i = 0; i < kept; i++) {
        msgpack_pack_uint32(pk, t->awaits[i].ctx);
        msgpack_pack_uint32(pk, t->awaits[i].handle);
    }
    msgpack_pack_uint32(pk, t->n_awaits);
    /* The service of the awaited call ("": not a service call). */
    const char *dot = t->await_svc ? strchr(t->await_fn, '.') : NULL;
    msgpack_pack_str_with_body(pk, t->await_fn,
                               dot ? (size_t)(dot - t->await_fn) : 0);
    pthread_mutex_unlock(&t->mu);
}

static bool
matches(const kin_task *t, const req *r)
{
    if (r->persistent && !t->persistent)
        return false;
    return !r->filter[0] || strstr(t->name, r->filter) ||
           strstr(t->fn, r->filter);
}

static void
cmd_ps(kin_node *n, const req *r, msgpack_packer *pk)
{
    kin__tasktab *tab = kin__node_tasks(n);
    uint64_t now = kin__now_ns();
    kin__tasktab_lock(tab);
    uint32_t count = 0;
    kin_task *t;
    for (size_t it = 0; kin__tasktab_live_next(tab, &it, &t);)
        count += matches(t, r);
    msgpack_pack_map(pk, 2);
    pack_key(pk, "ctx");
    msgpack_pack_uint32(pk, kin_node_id(n));
    pack_key(pk, "tasks");
    msgpack_pack_array(pk, count);
    for (size_t it = 0; kin__tasktab_live_next(tab, &it, &t);)
        if (matches(t, r))
            pack_live(n, pk, t, now);
    kin__tasktab_unlock(tab);
}

static void
pack_ended(msgpack_packer *pk, const kin__ended *e, uint64_t now)
{
    msgpack_pack_array(pk, 12);
    msgpack_pack_uint32(pk, e->id);
    pack_str(pk, e->name);
    pack_str(pk, e->fn);
    msgpack_pack_int(pk, e->state);
    if (e->persistent)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_pack_uint32(pk, e->caller_ctx);
    msgpack_pack_uint32(pk, e->caller_task);
    msgpack_pack_int(pk, e->result);
    msgpack_pack_uint32(pk, e->cancelled_by_ctx);
    msgpack_pack_uint32(pk, e->cancelled_by_task);
    msgpack_pack_double(
        pk,
        ms_since(e->ended_ns, e->started_ns ? e->started_ns : e->created_ns));
    msgpack_pack_double(pk, ms_since(now, e->ended_ns));
}

static void
cmd_ps_terminated(kin_node *n, const req *r, msgpack_packer *pk)
{
    kin__tasktab *tab = kin__node_tasks(n);
    uint64_t now = kin__now_ns();
    kin__tasktab_lock(tab);
    size_t total = kin__tasktab_ended_count(tab);
    uint32_t count = 0;
    for (size_t i = 0; i < total; i++) {
        const kin__ended *e = kin__tasktab_ended_at(tab, i);
        count += (!r->task || e->id == r->task) &&
                 (!r->filter[0] || strstr(e->name, r->filter) ||
                  strstr(e->fn, r->filter));
    }
    msgpack_pack_map(pk, 2);
    pack_key(pk, "ctx");
    msgpack_pack_uint32(pk, kin_node_id(n));
    pack_key(pk, "tasks");
    msgpack_pack_array(pk, count);
    for (size_t i = 0; i < total; i++) {
        const kin__ended *e = kin__tasktab_ended_at(tab, i);
        if ((!r->task || e->id == r->task) &&
            (!r->filter[0] || strstr(e->name, r->filter) ||
             strstr(e->fn, r->filter)))
            pack_ended(pk, e, now);
    }
    kin__tasktab_unlock(tab);
}

static void
pack_frames(msgpack_packer *pk, const kin__frame *f, int count)
{
    msgpack_pack_array(pk, (uint32_t)(count > 0 ? count : 0));
    for (int i = 0; i < count; i++) {
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint64(pk, f[i].addr);
        pack_str(pk, f[i].fn);
        pack_str(pk, f[i].file);
        msgpack_pack_int(pk, f[i].line);
    }
}

static void
pack_error(msgpack_packer *pk, int code, const char *text)
{
    msgpack_pack_map(pk, 2);
    pack_key(pk, "error");
    pack_str(pk, text);
    pack_key(pk, "code");
    msgpack_pack_int(pk, code);
}

static void
cmd_where(kin_node *n, const req *r, msgpack_packer *pk)
{
    kin__tasktab *tab = kin__node_tasks(n);
    kin__tasktab_lock(tab);
    kin_task *t = kin__tasktab_live_get(tab, r->task);
    int tid = t ? t->tid : 0;
    uint32_t caller_ctx = t ? t->caller_ctx : 0;
    uint32_t caller_task = t ? t->caller_task : 0;
    char name[48] = "";
    if (t)
        memcpy(name, t->name, sizeof name);
    kin__tasktab_unlock(tab);
    if (!t) {
        char why[64];
        snprintf(why, sizeof why, "no live task %u:%u", kin_node_id(n),
                 r->task);
        pack_error(pk, -ENOENT, why);
        return;
    }
    if (!tid) {
        pack_error(pk, -ESRCH, "the task is not on a thread right now");
        return;
    }
    kin__frame frames[KIN_STACK_MAX];
    int count = kin__stack_capture(tid, frames, KIN_STACK_MAX, 500);
    if (count < 0) {
        pack_error(pk, count, kin_strerror(count));
        return;
    }
    msgpack_pack_map(pk, 5);
    pack_key(pk, "ctx");
    msgpack_pack_uint32(pk, kin_node_id(n));
    pack_key(pk, "task");
    msgpack_pack_uint32(pk, r->task);
    pack_key(pk, "name");
    pack_str(pk, name);
    pack_key(pk, "chain");
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint32(pk, caller_ctx);
    msgpack_pack_uint32(pk, caller_task);
    pack_key(pk, "frames");
    pack_frames(pk, frames, count);
}

static void
cmd_stacktrace(kin_node *n, msgpack_packer *pk)
{
    int tids[256];
    int count = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)getpid());
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d)) && count < 256)
        if (de->d_name[0] != '.')
            tids[count++] = atoi(de->d_name);
    if (d)
        closedir(d);
    kin__symbolizer *sym = kin__sym_open();
    msgpack_pack_map(pk, 2);
    pack_key(pk, "ctx");
    msgpack_pack_uint32(pk, kin_node_id(n));
    pack_key(pk, "threads");
    msgpack_pack_array(pk, (uint32_t)count);
    for (int i = 0; i < count; i++) {
        char comm[32] = "";
        snprintf(path, sizeof path, "/proc/%d/task/%d/comm", (int)getpid(),
                 tids[i]);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(comm, sizeof comm, f))
                comm[strcspn(comm, "\n")] = 0;
            fclose(f);
        }
        uintptr_t ips[KIN_STACK_MAX];
        kin__frame frames[KIN_STACK_MAX];
        int nf = kin__stack_capture_raw(tids[i], ips, KIN_STACK_MAX, 200);
        if (nf > 0)
            nf = kin__sym_frames(sym, ips, nf, frames, KIN_STACK_MAX);
        char why[160] = "";
        if (nf == -EPERM)
            snprintf(why, sizeof why,
                     "%sblocks signal %d, which kin's stack capture uses: "
                     "not unwound",
                     !strncmp(comm, "ZMQbg", 5) ? "libzmq's own thread; " : "",
                     kin__stack_signal());
        else if (nf == -ETIMEDOUT)
            snprintf(why, sizeof why,
                     "did not answer the capture signal within 200 ms");
        else if (nf < 0)
            snprintf(why, sizeof why, "%s", kin_strerror(nf));
        /* [tid, name, error, frames, why] */
        msgpack_pack_array(pk, 5);
        msgpack_pack_int(pk, tids[i]);
        pack_str(pk, comm);
        msgpack_pack_int(pk, nf < 0 ? nf : 0);
        pack_frames(pk, frames, nf);
        pack_str(pk, why);
    }
    kin__sym_close(sym);
}

static void
pack_provider(msgpack_packer *pk, const kin_service_provider *v)
{
    uint32_t used = 0;
    for (int b = 0; b < KIN_SERVICE_LAT_BUCKETS; b++)
        used += v->latency[b] != 0;
    msgpack_pack_array(pk, 8);
    msgpack_pack_uint32(pk, v->ctx);
    msgpack_pack_uint32(pk, v->hops);
    msgpack_pack_int(pk, v->bound);
    msgpack_pack_int(pk, v->outstanding);
    msgpack_pack_uint64(pk, v->served);
    msgpack_pack_uint64(pk, v->errors);
    msgpack_pack_uint64(pk, v->retried);
    msgpack_pack_array(pk, 2 * used); /* bucket, count, ... */
    for (int b = 0; b < KIN_SERVICE_LAT_BUCKETS; b++) {
        if (v->latency[b]) {
            msgpack_pack_int(pk, b);
            msgpack_pack_uint32(pk, v->latency[b]);
        }
    }
}

/* The service table as it is now: read twice on this thread (sizes, then
 * contents), so nothing changes in between. */
static void
cmd_services(kin_node *n, msgpack_packer *pk)
{
    int count = kin__services_snapshot(n, NULL, 0, NULL, 0);
    kin_service_info *infos = calloc(count ? (size_t)count : 1, sizeof *infos);
    if (!infos) {
        pack_error(pk, -ENOMEM, "out of memory");
        return;
    }
    kin__services_snapshot(n, infos, count, NULL, 0);
    int most = 1;
    for (int i = 0; i < count; i++)
        most = infos[i].total > most ? infos[i].total : most;
    kin_service_provider *pv =
        calloc((size_t)(count ? count : 1) * (size_t)most, sizeof *pv);
    if (!pv) {
        free(infos);
        pack_error(pk, -ENOMEM, "out of memory");
        return;
    }
    kin__services_snapshot(n, infos, count, pv, most);
    msgpack_pack_map(pk, 2);
    pack_key(pk, "ctx");
    msgpack_pack_uint32(pk, kin_node_id(n));
    pack_key(pk, "services");
    msgpack_pack_array(pk, (uint32_t)count);
    for (int i = 0; i < count; i++) {
        const kin_service_info *s = &infos[i];
        msgpack_pack_array(pk, 8);
        pack_str(pk, s->name);
        msgpack_pack_int(pk, s->total);
        msgpack_pack_int(pk, s->restarting);
        msgpack_pack_int(pk, s->queued);
        msgpack_pack_uint64(pk, s->retried);
        msgpack_pack_uint64(pk, s->failed);
        msgpack_pack_uint64(pk, s->resolved);
        msgpack_pack_array(pk, (uint32_t)s->providers);
        for (int k = 0; k < s->providers; k++)
            pack_provider(pk, &pv[(size_t)i * (size_t)most + (size_t)k]);
    }
    free(pv);
    free(infos);
}

static void
count_child(void *arg, uint32_t id)
{
    (*(uint32_t *)arg)++;
}

static void
pack_child(void *arg, uint32_t id)
{
    msgpack_pack_uint32(arg, id);
}

static void
cmd_info(kin_node *n, msgpack_packer *pk)
{
    long rss_kib = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            rss_kib = atol(line + 6);
    if (f)
        fclose(f);
    kin__tasktab *tab = kin__node_tasks(n);
    kin__tasktab_lock(tab);
    uint32_t live = (uint32_t)kin__tasktab_live_count(tab);
    kin__tasktab_unlock(tab);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *where = getenv(KIN__ENV_WHERE);
    msgpack_pack_map(pk, 15);
    pack_key(pk, "joined");
    if (kin__node_joined(n))
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    pack_key(pk, "host");
    pack_str(pk, host);
    pack_key(pk, "where");
    pack_str(pk, where ? where : "");
    pack_key(pk, "workers");
    msgpack_pack_int(pk, kin__node_workers(n));
    pack_key(pk, "id");
    msgpack_pack_uint32(pk, kin_node_id(n));
    pack_key(pk, "name");
    pack_str(pk, kin_node_name(n));
    pack_key(pk, "pid");
    msgpack_pack_int(pk, (int)getpid());
    pack_key(pk, "parent");
    if (kin__node_has_parent(n))
        msgpack_pack_uint32(pk, kin__node_parent_id(n));
    else
        msgpack_pack_nil(pk);
    pack_key(pk, "children");
    uint32_t nchild = 0;
    kin__node_each_child(n, count_child, &nchild);
    msgpack_pack_array(pk, nchild);
    kin__node_each_child(n, pack_child, pk);
    pack_key(pk, "tasks");
    msgpack_pack_uint32(pk, live);
    pack_key(pk, "rss_kib");
    msgpack_pack_long(pk, rss_kib);
    pack_key(pk, "uptime_ms");
    msgpack_pack_double(pk, ms_since(kin__now_ns(), kin__node_started_ns(n)));
    pack_key(pk, "endpoint");
    pack_str(pk, kin_node_endpoint(n));
    pack_key(pk, "log_endpoint");
    pack_str(pk, kin__logs_endpoint(n));
    pack_key(pk, "log_frontend");
    const char *front = kin_logs_frontend(n);
    pack_str(pk, front ? front : "");
}

static void
cmd_help(kin_node *n, msgpack_packer *pk)
{
    struct kin__monitor *mon = monitor_of(n);
    pthread_mutex_lock(&mon->mu);
    uint32_t count = sizeof builtins / sizeof builtins[0];
    for (custom *c = mon->commands; c; c = c->next)
        count++;
    msgpack_pack_map(pk, 1);
    pack_key(pk, "commands");
    msgpack_pack_array(pk, count);
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        msgpack_pack_array(pk, 3);
        pack_str(pk, builtins[i].name);
        pack_str(pk, builtins[i].help);
        msgpack_pack_false(pk);
    }
    for (custom *c = mon->commands; c; c = c->next) {
        msgpack_pack_array(pk, 3);
        pack_str(pk, c->name);
        pack_str(pk, c->help);
        msgpack_pack_true(pk);
    }
    pthread_mutex_unlock(&mon->mu);
}

static int
signal_number(const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
                {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                {"TERM", SIGTERM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}};
    if (!strncmp(name, "SIG", 3))
        name += 3;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (!strcmp(name, sigs[i].name))
            return sigs[i].sig;
    int n = atoi(name);
    return n > 0 && n < NSIG ? n : 0;
}

static void
ok_reply(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    pack_key(pk, "ok");
    msgpack_pack_true(pk);
}

static bool
run_custom(kin_node *n, const req *r, uint32_t from, msgpack_packer *pk,
           kin_buf *out)
{
    struct kin__monitor *mon = monitor_of(n);
    pthread_mutex_lock(&mon->mu);
    custom *c = mon->commands;
    while (c && strcmp(c->name, r->cmd))
        c = c->next;
    kin_monitor_fn fn = c ? c->fn : NULL;
    void *arg = c ? c->arg : NULL;
    pthread_mutex_unlock(&mon->mu);
    if (!fn)
        return false;
    kin_buf text = {0};
    kin_err e = fn(r->args, &text, arg);
    kin__ev_op_command(from, r->cmd, r->args, e);
    if (e) {
        char why[300];
        snprintf(why, sizeof why, "%.*s%s%s", (int)text.len,
                 text.data ? text.data : "", text.len ? ": " : "",
                 kin_strerror(e));
        pack_error(pk, e, why);
    } else {
        msgpack_pack_map(pk, 1);
        pack_key(pk, "output");
        msgpack_pack_str_with_body(pk, text.data ? text.data : "", text.len);
    }
    kin_buf_release(&text);
    (void)out;
    return true;
}

static void answer(kin_node *n, kin_msg *m, const req *r, bool parsed);

typedef struct stack_job {
    kin_node *n;
    kin_msg *m;
    req r;
} stack_job;

static void *
stack_thread(void *arg)
{
    stack_job *j = arg;
    struct kin__monitor *mon = monitor_of(j->n);
    kin__thread_name("kin-monitor");
    answer(j->n, j->m, &j->r, true);
    free(j);
    pthread_mutex_lock(&mon->mu);
    if (--mon->stacks_running == 0)
        pthread_cond_broadcast(&mon->idle);
    pthread_mutex_unlock(&mon->mu);
    return NULL;
}

/* Starts a thread answering a where or stacktrace request; false (the
 * broker answers it then) when none can start. */
static bool
answer_on_thread(kin_node *n, kin_msg *m, const req *r)
{
    struct kin__monitor *mon = monitor_of(n);
    stack_job *j = malloc(sizeof *j);
    if (!j)
        return false;
    *j = (stack_job){.n = n, .m = m, .r = *r};
    pthread_mutex_lock(&mon->mu);
    bool ok = !mon->stopping;
    if (ok)
        mon->stacks_running++;
    pthread_mutex_unlock(&mon->mu);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (ok && pthread_create(&t, &at, stack_thread, j)) {
        pthread_mutex_lock(&mon->mu);
        mon->stacks_running--;
        pthread_mutex_unlock(&mon->mu);
        ok = false;
    }
    pthread_attr_destroy(&at);
    if (!ok)
        free(j);
    return ok;
}

static void
on_monitor(kin_node *n, kin_msg *m, void *arg)
{
    req r;
    bool parsed = !kin__monitor_req_parse(m->body, m->len, &r);
    if (parsed && (!strcmp(r.cmd, "where") || !strcmp(r.cmd, "stacktrace")) &&
        answer_on_thread(n, m, &r))
        return;
    answer(n, m, &r, parsed);
}

/* Answers one MONITOR request and frees m. */
static void
answer(kin_node *n, kin_msg *m, const req *rp, bool parsed)
{
    kin_buf out = {0};
    msgpack_packer pk;
    kin_buf_packer(&out, &pk);
    bool authority = kin__is_ancestor_or_self(n, m->auth);
    int raise_sig = 0; /* sent after the reply: it may end this process */
    req r = parsed ? *rp : (req){0};
    if (!parsed) {
        pack_error(&pk, KIN_EBADMSG, "malformed monitor request");
    } else if (!strcmp(r.cmd, "help")) {
        cmd_help(n, &pk);
    } else if (!strcmp(r.cmd, "info")) {
        cmd_info(n, &pk);
    } else if (!strcmp(r.cmd, "ps")) {
        cmd_ps(n, &r, &pk);
    } else if (!strcmp(r.cmd, "ps-terminated") ||
               !strcmp(r.cmd, "where-terminated")) {
        cmd_ps_terminated(n, &r, &pk);
    } else if (!strcmp(r.cmd, "where")) {
        cmd_where(n, &r, &pk);
    } else if (!strcmp(r.cmd, "stacktrace")) {
        cmd_stacktrace(n, &pk);
    } else if (!strcmp(r.cmd, "services")) {
        cmd_services(n, &pk);
    } else if (!strcmp(r.cmd, "metrics")) {
        kin__monitor_pack_metrics(n, &pk);
    } else if (!authority) {
        char why[96];
        snprintf(why, sizeof why,
                 "'%s' needs the authority of an ancestor of context %u", r.cmd,
                 kin_node_id(n));
        pack_error(&pk, KIN_EREFUSED, why);
    } else if (!strcmp(r.cmd, "cancel")) {
        kin_err e =
            kin__tasktab_cancel(kin__node_tasks(n), r.task, m->src, r.by)
                ? -ENOENT
                : KIN_OK;
        kin__ev_op_cancel(m->src, r.by, r.task, e);
        if (e)
            pack_error(&pk, -ENOENT, "no such live task");
        else
            ok_reply(&pk);
    } else if (!strcmp(r.cmd, "signal")) {
        raise_sig = signal_number(r.signal);
        if (!raise_sig)
            pack_error(&pk, -EINVAL, "unknown signal");
        else
            ok_reply(&pk);
    } else if (!run_custom(n, &r, m->src, &pk, &out)) {
        char why[64];
        snprintf(why, sizeof why, "unknown command '%s' (try help)", r.cmd);
        pack_error(&pk, -EINVAL, why);
    }
    if (m->reply_to) {
        kin_msg *reply;
        if (kin_msg_new_copy(&reply, out.data, out.len) == KIN_OK) {
            reply->dst = m->src;
            reply->handle = m->reply_to;
            kin__reply_send(n, reply);
        }
    }
    uint32_t from = m->src;
    kin_buf_release(&out);
    kin_msg_destroy(&m);
    if (raise_sig) {
        kin__ev_op_signal(from, raise_sig);
        kill(getpid(), raise_sig);
    }
}

kin_err
kin__monitor_start(kin_node *n)
{
    struct kin__monitor *mon = calloc(1, sizeof *mon);
    if (!mon)
        return -ENOMEM;
    pthread_mutex_init(&mon->mu, NULL);
    pthread_cond_init(&mon->idle, NULL);
    kin_err e = kin__node_attach(n, &monitor_layer, mon);
    if (e) {
        pthread_cond_destroy(&mon->idle);
        pthread_mutex_destroy(&mon->mu);
        free(mon);
        return e;
    }
    kin__stack_install();
    /* Failed calls served here say where they failed. */
    kin__calls_set_stack_fmt(kin__errstack_format);
    kin__handler h = {.handle = KIN_HANDLE_MONITOR,
                      .policy = KIN_POLICY_ANY,
                      .respondent = KIN_NO_CTX,
                      .fn = on_monitor};
    return kin__handles_add(n, &h, NULL);
}

void
kin__monitor_stop(kin_node *n)
{
    struct kin__monitor *mon = monitor_of(n);
    if (!mon)
        return;
    /* Stack requests end by their own deadlines (200 ms a thread). */
    pthread_mutex_lock(&mon->mu);
    mon->stopping = true;
    while (mon->stacks_running)
        pthread_cond_wait(&mon->idle, &mon->mu);
    pthread_mutex_unlock(&mon->mu);
}

void
kin__monitor_free(kin_node *n)
{
    struct kin__monitor *mon = monitor_of(n);
    if (!mon)
        return;
    for (custom *c = mon->commands; c;) {
        custom *next = c->next;
        free(c);
        c = next;
    }
    kin__node_detach(n, &monitor_layer);
    pthread_cond_destroy(&mon->idle);
    pthread_mutex_destroy(&mon->mu);
    free(mon);
}

kin_err
kin_monitor_command(kin_node *n, const char *name, const char *help,
                    kin_monitor_fn fn, void *arg)
{
    if (!name || !*name || strlen(name) >= 32 || !fn || strchr(name, ' '))
        return -EINVAL;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!strcmp(builtins[i].name, name))
            return -EINVAL;
    struct kin__monitor *mon = monitor_of(n);
    custom *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->help, sizeof c->help, "%s", help ? help : "");
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&mon->mu);
    for (custom *o = mon->commands; o; o = o->next) {
        if (!strcmp(o->name, name)) {
            pthread_mutex_unlock(&mon->mu);
            free(c);
            return KIN_EEXISTS;
        }
    }
    c->next = mon->commands;
    mon->commands = c;
    pthread_mutex_unlock(&mon->mu);
    return KIN_OK;
}
