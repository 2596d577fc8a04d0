/* Spawning through another context (kin_spawn_opts.via): the request
 * travels as a call to the built-in function kin.spawn in context `via`,
 * which runs kin_spawn there, so the new context is via's child (on a host
 * only via may reach). The caller's kin_child is a proxy: stop and wait are
 * calls to kin.child_stop and kin.child_wait in via. Only an ancestor of
 * via (or via itself) may ask: the functions are exported with
 * KIN_POLICY_PARENT. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <kin/call.h>
#include <kin/process.h>

#include "core/log_internal.h"
#include "process/procs.h"
#include "router/router.h"

#define MAX_ARGS 64

/* --- the via side -----------------------------------------------------------
 * Children started on request, by id, until kin.child_stop frees them.
 * An entry is freed only once no call uses its child any more (refs), so a
 * stop never pulls the child from under a wait. */

/* The longest a kin.child_wait holds one of via's workers: the caller
 * asks again for longer waits, so via keeps serving. */
#define WAIT_SLICE_MS 1000

typedef struct started {
    kin_node *node;
    kin_child *child;
    int refs;      /* calls using child now */
    bool stopping; /* taken by kin.child_stop: freed at refs 0 */
    struct started *next;
} started;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static started *list;

/* The entry for (n, id), with a reference, or NULL. take: for a stop
 * (only one, and no further waits after it). */
static started *
acquire(kin_node *n, uint32_t id, bool take)
{
    pthread_mutex_lock(&mu);
    started *s = list;
    while (s && !(s->node == n && kin_child_id(s->child) == id))
        s = s->next;
    if (s && s->stopping)
        s = NULL;
    if (s) {
        s->refs++;
        s->stopping = take;
    }
    pthread_mutex_unlock(&mu);
    return s;
}

static void
release(started *s)
{
    pthread_mutex_lock(&mu);
    bool last = --s->refs == 0 && s->stopping;
    if (last)
        for (started **q = &list; *q; q = &(*q)->next)
            if (*q == s) {
                *q = s->next;
                break;
            }
    pthread_mutex_unlock(&mu);
    if (last) {
        kin_child_destroy(&s->child);
        free(s);
    }
}

/* Reads an array of strings into out (NULL-terminated). */
static kin_err
read_strings(kin_call *c, char **out, size_t max)
{
    uint32_t count;
    kin_err e = kin_call_args(c, "a", &count);
    if (e)
        return e;
    if (count >= max)
        return -E2BIG;
    for (uint32_t i = 0; i < count; i++)
        if ((e = kin_call_args(c, "s", &out[i])))
            return e;
    out[count] = NULL;
    return KIN_OK;
}

static kin_err
serve_spawn(kin_call *call, void *unused)
{
    char *name = NULL, *program = NULL, *host = NULL, *identity = NULL;
    char *argv[MAX_ARGS] = {0}, *ssh_args[MAX_ARGS] = {0};
    int port = 0, connect_ms = 0, stop_ms = 0, workers = 0;
    uint32_t fields;
    kin_err e = kin_call_args(call, "assss", &fields, &name, &program, &host,
                              &identity);
    if (!e && fields != 10)
        e = KIN_ETYPE;
    if (!e)
        e = kin_call_args(call, "iiii", &port, &connect_ms, &stop_ms, &workers);
    if (!e)
        e = read_strings(call, argv, MAX_ARGS);
    if (!e)
        e = read_strings(call, ssh_args, MAX_ARGS);
    kin_child *child = NULL;
    char why[512] = "";
    kin_node *n = kin_call_node(call);
    kin__procs *procs = kin__procs_of(n);
    if (!e && procs && procs->spawn_refused)
        e = kin_call_fail(call, KIN_EREFUSED,
                          "context %u runs as another user than its parent: "
                          "it starts no contexts on request",
                          kin_node_id(n));
    else if (!e && (!host || !*host))
        e = kin_call_fail(call, -EINVAL,
                          "kin.spawn starts contexts on other hosts: give "
                          "a host");
    if (!e) {
        kin_spawn_opts o = {.name = name,
                            .program = program,
                            .argv = argv[0] ? argv : NULL,
                            .host = host,
                            .ssh_port = port,
                            .ssh_identity = identity,
                            .ssh_args = ssh_args,
                            .connect_timeout_ms = connect_ms,
                            .stop_timeout_ms = stop_ms,
                            .workers = workers,
                            .errbuf = why,
                            .errbuf_size = sizeof why};
        e = kin_spawn(kin_call_node(call), &o, &child);
        /* The caller gave up meanwhile (its timeout cancels this call):
         * nobody would ever stop the child. */
        if (!e && kin_task_cancelled()) {
            kin_child_destroy(&child);
            e = KIN_ECANCELLED;
        }
    }
    started *s = child ? calloc(1, sizeof *s) : NULL;
    if (s) {
        s->node = kin_call_node(call);
        s->child = child;
        pthread_mutex_lock(&mu);
        s->next = list;
        list = s;
        pthread_mutex_unlock(&mu);
        e = kin_call_return(call, "ui", kin_child_id(child),
                            (int)kin_child_pid(child));
    } else if (child) {
        kin_child_destroy(&child);
        e = -ENOMEM;
    } else if (e && why[0]) {
        e = kin_call_fail(call, e, "%s", why);
    }
    free(name);
    free(program);
    free(host);
    free(identity);
    for (int i = 0; i < MAX_ARGS; i++) {
        free(argv[i]);
        free(ssh_args[i]);
    }
    return e;
}

/* (id, timeout_ms) -> wait status; KIN_ETIMEOUT while it runs (after at
 * most WAIT_SLICE_MS). */
static kin_err
serve_wait(kin_call *call, void *unused)
{
    unsigned id;
    int timeout, status = 0;
    kin_err e = kin_call_args(call, "ui", &id, &timeout);
    if (e)
        return e;
    started *s = acquire(kin_call_node(call), id, false);
    if (!s)
        return kin_call_fail(call, -ESRCH, "no child %u started here", id);
    if (timeout < 0 || timeout > WAIT_SLICE_MS)
        timeout = WAIT_SLICE_MS;
    e = kin_child_wait(s->child, timeout, &status);
    release(s);
    if (e == KIN_OK || e == KIN_EEMERGENCY)
        return kin_call_return(call, "i", status);
    return e;
}

/* (id) -> wait status, once it is stopped; freed once no wait uses it. */
static kin_err
serve_stop(kin_call *call, void *unused)
{
    unsigned id;
    int status = 0;
    kin_err e = kin_call_args(call, "u", &id);
    if (e)
        return e;
    started *s = acquire(kin_call_node(call), id, true);
    if (!s)
        return kin_call_fail(call, -ESRCH, "no child %u started here", id);
    kin_child_stop(s->child, &status);
    release(s);
    return kin_call_return(call, "i", status);
}

static void
export_builtins(void)
{
    kin_export("kin.spawn", serve_spawn, NULL, KIN_POLICY_PARENT);
    kin_export("kin.child_wait", serve_wait, NULL, KIN_POLICY_PARENT);
    kin_export("kin.child_stop", serve_stop, NULL, KIN_POLICY_PARENT);
}

/* Called when the process layer is attached to a node: a program that
 * makes no context exports nothing. */
void
kin__via_export(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, export_builtins);
}

/* --- the caller side ------------------------------------------------------
 */

static void
pack_strings(kin_buf *b, char *const *v)
{
    uint32_t count = 0;
    while (v && v[count])
        count++;
    kin_pack(b, "a", count);
    for (uint32_t i = 0; i < count; i++)
        kin_pack(b, "s", v[i]);
}

kin_err
kin__via_spawn(kin_node *n, const kin_spawn_opts *o, uint32_t *id, pid_t *pid)
{
    if (o->on_exit || o->user)
        return -EINVAL;
    kin_buf b;
    kin_buf_init(&b);
    kin_pack(&b, "assssiiii", 10, o->name, o->program, o->host, o->ssh_identity,
             o->ssh_port, o->connect_timeout_ms, o->stop_timeout_ms,
             o->workers);
    /* argv[0] is this side's idea of the name; via picks its own. */
    pack_strings(&b, o->argv);
    pack_strings(&b, o->ssh_args);
    /* Long enough for via's kin_spawn with its retries (4 attempts and
     * their pauses); were it to give up first, via would stop the child. */
    int timeout =
        4 * (o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 30000) + 12000;
    kin_msg *reply = NULL;
    kin_err e = kin_call_sync(n, o->via, "kin.spawn", timeout, &reply, "m",
                              b.data, b.len);
    kin_buf_release(&b);
    int p = 0;
    if (!e)
        e = kin_msg_unpack(reply, "ui", id, &p);
    *pid = p;
    if (e == KIN_EREMOTE && reply) {
        kin_remote_error re;
        if (kin_call_error(reply, &re) == KIN_OK) {
            if (o->errbuf && o->errbuf_size)
                snprintf(o->errbuf, o->errbuf_size, "via %u: %s", o->via,
                         re.message);
            KIN_ERROR("spawning through context %u failed: %s", o->via,
                      re.message);
            if (re.code)
                e = re.code;
        }
    }
    kin_msg_destroy(&reply);
    return e;
}

/* A call's result with a callee's error turned into its own code (the
 * reply is freed). */
static kin_err
own_code(kin_err e, kin_msg **reply)
{
    kin_remote_error re;
    if (e == KIN_EREMOTE && *reply && kin_call_error(*reply, &re) == KIN_OK &&
        re.code)
        e = re.code;
    kin_msg_destroy(reply);
    return e;
}

kin_err
kin__via_wait(kin_node *n, uint32_t via, uint32_t id, int timeout_ms,
              int *status)
{
    /* via answers within WAIT_SLICE_MS; the margin is for the trip. */
    int slice = timeout_ms < 0 || timeout_ms > WAIT_SLICE_MS ? WAIT_SLICE_MS
                                                             : timeout_ms;
    kin_msg *reply = NULL;
    kin_err e = kin_call_sync(n, via, "kin.child_wait", slice + 10000, &reply,
                              "ui", id, slice);
    if (!e)
        e = kin_msg_unpack(reply, "i", status);
    return own_code(e, &reply);
}

kin_err
kin__via_stop(kin_node *n, uint32_t via, uint32_t id, int stop_timeout_ms,
              int *status)
{
    kin_msg *reply = NULL;
    int timeout = (stop_timeout_ms > 0 ? stop_timeout_ms : 2000) + 10000;
    kin_err e =
        kin_call_sync(n, via, "kin.child_stop", timeout, &reply, "u", id);
    if (!e)
        e = kin_msg_unpack(reply, "i", status);
    return own_code(e, &reply);
}
