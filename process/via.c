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
#include "router/node_impl.h"

#define MAX_ARGS 64

/* --- the via side -----------------------------------------------------------
 * Children started on request, by id, until stopped. */

typedef struct started {
    kin_node *node;
    kin_child *child;
    struct started *next;
} started;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static started *list;

static kin_child *
find(kin_node *n, uint32_t id, bool take)
{
    pthread_mutex_lock(&mu);
    kin_child *c = NULL;
    for (started **s = &list; *s; s = &(*s)->next) {
        if ((*s)->node == n && kin_child_id((*s)->child) == id) {
            c = (*s)->child;
            if (take) {
                started *gone = *s;
                *s = gone->next;
                free(gone);
            }
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    return c;
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
    if (!e && n->spawn_refused)
        e = kin_call_fail(call, KIN_EREFUSED,
                          "context %u runs as another user than its parent: "
                          "it starts no contexts on request",
                          n->id);
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
    }
    started *s = child ? malloc(sizeof *s) : NULL;
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

/* (id, timeout_ms) -> wait status; KIN_ETIMEOUT while it runs. */
static kin_err
serve_wait(kin_call *call, void *unused)
{
    unsigned id;
    int timeout, status = 0;
    kin_err e = kin_call_args(call, "ui", &id, &timeout);
    kin_child *c = e ? NULL : find(kin_call_node(call), id, false);
    if (!e && !c)
        return kin_call_fail(call, -ESRCH, "no child %u started here", id);
    if (!e)
        e = kin_child_wait(c, timeout, &status);
    if (e == KIN_OK || e == KIN_EEMERGENCY)
        return kin_call_return(call, "i", status);
    return e;
}

/* (id) -> wait status, once it is stopped and freed. */
static kin_err
serve_stop(kin_call *call, void *unused)
{
    unsigned id;
    int status = 0;
    kin_err e = kin_call_args(call, "u", &id);
    kin_child *c = e ? NULL : find(kin_call_node(call), id, true);
    if (!e && !c)
        return kin_call_fail(call, -ESRCH, "no child %u started here", id);
    if (e)
        return e;
    kin_child_stop(c, &status);
    kin_child_destroy(&c);
    return kin_call_return(call, "i", status);
}

__attribute__((constructor)) static void
export_builtins(void)
{
    kin_export("kin.spawn", serve_spawn, NULL, KIN_POLICY_PARENT);
    kin_export("kin.child_wait", serve_wait, NULL, KIN_POLICY_PARENT);
    kin_export("kin.child_stop", serve_stop, NULL, KIN_POLICY_PARENT);
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
    int timeout =
        (o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 30000) + 10000;
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

kin_err
kin__via_wait(kin_node *n, uint32_t via, uint32_t id, int timeout_ms,
              int *status)
{
    int call_timeout = timeout_ms < 0 ? KIN_FOREVER : timeout_ms + 10000;
    kin_msg *reply = NULL;
    kin_err e = kin_call_sync(n, via, "kin.child_wait", call_timeout, &reply,
                              "ui", id, timeout_ms);
    if (!e)
        e = kin_msg_unpack(reply, "i", status);
    else if (e == KIN_EREMOTE && reply) {
        kin_remote_error re;
        if (kin_call_error(reply, &re) == KIN_OK && re.code == KIN_ETIMEOUT)
            e = KIN_ETIMEOUT;
    }
    kin_msg_destroy(&reply);
    return e;
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
    kin_msg_destroy(&reply);
    return e;
}
