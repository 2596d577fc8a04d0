/* kin_node's public face: creating a context (master or child), its runtime
 * directory and endpoint, sending from any thread, receivers, id blocks and
 * shutdown. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/block_cache.h"
#include "core/ids.h"
#include "core/log_internal.h"
#include "core/msg_internal.h"
#include "core/sockname.h"
#include "core/str.h"
#include "core/sync.h"
#include "core/task.h"
#include "kin/call.h"
#include "router/call_impl.h"
#include "router/certs.h"
#include "router/join.h"
#include "router/lead.h"
#include "router/metrics.h"
#include "router/names.h"
#include "router/node_impl.h"
#include "router/service.h"

#define ID_BLOCK 64u

struct kin_receiver {
    kin_node *node;
    uint32_t handle;
    uint32_t respondent;
    kin_latch *latch;
    char fn[48];  /* the function a call's reply comes from, for the monitor */
    bool is_call; /* counted in the node's calls_out */
};

/* --- runtime directory -----------------------------------------------------
 */

/* Says why kin_node_new fails (what is wrong, what to do about it): to the
 * diagnostics hook, and into why (kin_node_opts.errbuf) when not NULL. */
static void explain(char *why, size_t why_size, const char *fmt, ...)
    KIN_PRINTF(3, 4);

static void
explain(char *why, size_t why_size, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    KIN_ERROR("%s", msg);
    if (why && why_size)
        snprintf(why, why_size, "%s", msg);
}

/* $XDG_RUNTIME_DIR/kin or /tmp/kin-UID, created 0700; refused when it exists
 * with another owner or looser permissions: another user could then reach
 * (or plant) the sockets in it. */
static kin_err
runtime_dir_why(char *out, size_t size, char *why, size_t why_size)
{
    static const char fix[] = "set XDG_RUNTIME_DIR to a directory of your "
                              "own (kin uses $XDG_RUNTIME_DIR/kin)";
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int len = xdg && *xdg ? snprintf(out, size, "%s/kin", xdg)
                          : snprintf(out, size, "/tmp/kin-%u", getuid());
    if (len < 0 || (size_t)len >= size) {
        explain(why, why_size,
                "runtime directory path too long (XDG_RUNTIME_DIR=%s): "
                "%s",
                xdg ? xdg : "", fix);
        return -ENAMETOOLONG;
    }
    if (mkdir(out, 0700) && errno != EEXIST) {
        kin_err e = -errno;
        explain(why, why_size, "cannot create the runtime directory %s: %s; %s",
                out, strerror(-e), fix);
        return e;
    }
    struct stat st;
    if (lstat(out, &st)) {
        kin_err e = -errno;
        explain(why, why_size, "cannot read the runtime directory %s: %s", out,
                strerror(-e));
        return e;
    }
    if (!S_ISDIR(st.st_mode)) {
        explain(why, why_size,
                "runtime directory %s is not a directory (a symbolic link "
                "or a file): remove it (rm %s), or %s",
                out, out, fix);
        return -EACCES;
    }
    if (st.st_uid != getuid()) {
        explain(why, why_size,
                "runtime directory %s belongs to uid %u, not to this user "
                "(uid %u), so kin will not put its sockets there: remove "
                "it (rm -r %s, as its owner or root), or %s",
                out, (unsigned)st.st_uid, (unsigned)getuid(), out, fix);
        return -EACCES;
    }
    if (st.st_mode & 0077) {
        explain(why, why_size,
                "runtime directory %s has mode %04o: other users could "
                "reach kin's sockets in it, so kin refuses it: remove it "
                "(rm -r %s; kin creates it again as 0700), or %s",
                out, (unsigned)(st.st_mode & 07777), out, fix);
        return -EACCES;
    }
    return KIN_OK;
}

kin_err
kin__runtime_dir(char *out, size_t size)
{
    return runtime_dir_why(out, size, NULL, 0);
}

/* Whether process pid is gone: it does not exist, or it is a zombie (dead,
 * its files closed, waiting for its parent or init to reap it; a slow init
 * can take seconds). */
static bool
pid_gone(int pid)
{
    if (kill((pid_t)pid, 0))
        return errno == ESRCH;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* "pid (comm) S ...": comm may hold anything, the state follows the
     * last ')'. */
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Contexts killed without cleaning up leave "<pid>-..." sockets behind.
 * Removes those whose process is gone (pid_gone) and on which nothing
 * listens: a live pid may be a recycled one, and a listener may be a
 * context in another pid namespace sharing the directory (whose pid means
 * nothing here), or a process whose main thread ended while others serve
 * (it shows as a zombie); their files are left alone. Returns how many
 * went. */
static int
sweep_stale(const char *dir, bool (*live)(int pid, void *arg), void *arg)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int removed = 0;
    int self = (int)getpid();
    while (d && (de = readdir(d))) {
        int pid;
        if (!kin__sockname_any(de->d_name, &pid) || pid == self ||
            (live && live(pid, arg)) || !pid_gone(pid))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (!kin__sockname_listening(path) && !unlink(path))
            removed++;
    }
    if (d)
        closedir(d);
    return removed;
}

int
kin__runtime_sweep(bool (*live)(int pid, void *arg), void *arg)
{
    char dir[160];
    return runtime_dir_why(dir, sizeof dir, NULL, 0)
               ? 0
               : sweep_stale(dir, live, arg);
}

/* The socket paths this process's nodes hold: "PID-ID.sock" (what the kin
 * command looks for) for the first node with an id, "PID-ID.N.sock" for
 * more (two masters in one process: both are context 0). The holders are
 * a list that grows with the nodes, under paths_mu. */
static pthread_mutex_t paths_mu = PTHREAD_MUTEX_INITIALIZER;
static kin_node **path_holders;
static size_t path_holders_n, path_holders_cap;

static bool
ipc_path_taken(const char *path)
{
    for (size_t i = 0; i < path_holders_n; i++)
        if (!strcmp(path_holders[i]->ipc_path, path))
            return true;
    return false;
}

/* Errors: -ENOMEM, -ENAMETOOLONG; n->ipc_path stays empty on error. */
static kin_err
ipc_path_claim(kin_node *n, const char *dir)
{
    char path[sizeof n->ipc_path];
    kin_err e = KIN_OK;
    pthread_mutex_lock(&paths_mu);
    if (path_holders_n == path_holders_cap) {
        size_t cap = path_holders_cap ? 2 * path_holders_cap : 16;
        kin_node **p = realloc(path_holders, cap * sizeof *p);
        if (!p)
            e = -ENOMEM;
        else {
            path_holders = p;
            path_holders_cap = cap;
        }
    }
    for (unsigned seq = 0; !e; seq++) {
        int len =
            kin__sockname(path, sizeof path, dir, (int)getpid(), n->id, seq);
        if (len < 0 || (size_t)len >= sizeof path)
            e = -ENAMETOOLONG;
        else if (!ipc_path_taken(path))
            break;
    }
    if (!e) {
        memcpy(n->ipc_path, path, sizeof path);
        path_holders[path_holders_n++] = n;
    }
    pthread_mutex_unlock(&paths_mu);
    if (!e)
        unlink(n->ipc_path); /* a stale socket of a recycled pid */
    return e;
}

static void
ipc_path_release(kin_node *n)
{
    pthread_mutex_lock(&paths_mu);
    for (size_t i = 0; i < path_holders_n; i++) {
        if (path_holders[i] == n) {
            path_holders[i] = path_holders[--path_holders_n];
            break;
        }
    }
    pthread_mutex_unlock(&paths_mu);
    unlink(n->ipc_path);
}

/* --- waiting helpers -------------------------------------------------------
 */

typedef struct sync_call {
    kin_node *n;
    kin_err result;
    bool done;
} sync_call;

static void
open_job(void *arg, void *unused)
{
    sync_call *s = arg;
    kin_err e = kin__router_open(s->n);
    pthread_mutex_lock(&s->n->mu);
    s->result = e;
    s->done = true;
    pthread_cond_broadcast(&s->n->cond);
    pthread_mutex_unlock(&s->n->mu);
}

/* --- system handlers -------------------------------------------------------
 */

static void
reply_ids(kin_node *n, const kin_msg *req, uint32_t a, uint32_t b)
{
    const uint32_t ids[2] = {a, b};
    kin_msg *r;
    if (kin__ids_msg_new(&r, ids, 2) == KIN_OK) {
        r->dst = req->src;
        r->handle = req->reply_to;
        kin_node_send(n, &r);
        kin_msg_destroy(&r);
    }
}

/* Master only: hands out a block of context ids. */
static void
on_allocate_id(kin_node *n, kin_msg *m, void *arg)
{
    pthread_mutex_lock(&n->mu);
    uint32_t first = n->id_next;
    n->id_next += ID_BLOCK;
    pthread_mutex_unlock(&n->mu);
    reply_ids(n, m, first, ID_BLOCK);
    kin_msg_destroy(&m);
}

static void
on_ping(kin_node *n, kin_msg *m, void *arg)
{
    if (m->reply_to) {
        kin_msg *r;
        if (kin_msg_new_copy(&r, m->body, m->len) == KIN_OK) {
            r->dst = m->src;
            r->handle = m->reply_to;
            kin_node_send(n, &r);
            kin_msg_destroy(&r);
        }
    }
    kin_msg_destroy(&m);
}

static kin_err
add_system(kin_node *n, uint32_t handle, kin_policy policy, kin__handle_fn fn)
{
    kin__handler h = {.handle = handle,
                      .policy = policy,
                      .respondent = KIN_NO_CTX,
                      .fn = fn,
                      .arg = NULL};
    return kin__handles_add(n, &h, NULL);
}

/* --- lifecycle -------------------------------------------------------------
 */

static void
on_stop(void *arg)
{
    kin_node *n = arg;
    KIN_DEBUG("context %u stopping", n->id);
}

/* A master admitting tcp joiners by certificate: its store and key. */
static kin_err
open_certs(kin_node *n, const kin_node_opts *opts)
{
    if (!opts->join_certs || n->has_parent)
        return opts->join_certs ? -EINVAL : KIN_OK;
    kin_err e;
    if (!opts->join_cert || !kin__endpoint_is_tcp(n->join_bind)) {
        explain(opts->errbuf, opts->errbuf_size,
                "join_certs: needs a tcp join_bind and join_cert");
        return -EINVAL;
    }
    if ((e = kin__cert_load(opts->join_cert, true, &n->join_key))) {
        explain(opts->errbuf, opts->errbuf_size, "join_cert %s: %s",
                opts->join_cert,
                e == -EINVAL ? "not a certificate with a secret key"
                             : kin__certs_strerror(e));
        return e;
    }
    if ((e = kin__certs_open(&n->join_store, opts->join_certs)))
        explain(opts->errbuf, opts->errbuf_size, "join_certs %s: %s",
                opts->join_certs, kin__certs_strerror(e));
    else
        kin__certs_on_refused(n->join_store, kin__join_cert_refused, n);
    return e;
}

/* kin_node_opts.join and join_bind: checks them and, to join, asks the
 * master for an id (before the node exists: its id names its files). */
static kin_err
check_join(const kin_node_opts *opts, uint32_t *id, uint32_t *parent,
           char *log_ep, size_t log_size, char *server_pub, kin__curve_key *own)
{
    if (opts->join_bind && (opts->parent_endpoint || opts->join ||
                            strlen(opts->join_bind) >= 256 ||
                            (strncmp(opts->join_bind, "ipc://", 6) &&
                             !kin__endpoint_is_tcp(opts->join_bind)))) {
        explain(opts->errbuf, opts->errbuf_size,
                "join_bind: a master's ipc:// or tcp:// endpoint");
        return -EINVAL;
    }
    if (!opts->join)
        return KIN_OK;
    if (opts->parent_endpoint || opts->operator_link || opts->id ||
        opts->parent_id || !opts->name || !opts->name[0] ||
        strlen(opts->name) > 63 || strlen(opts->join) >= 256) {
        explain(opts->errbuf, opts->errbuf_size,
                "join: needs a name of 1 to 63 bytes and no "
                "parent_endpoint, id, parent_id or operator_link");
        return -EINVAL;
    }
    kin__curve_key key = {{0}, {0}, {0}};
    if (opts->curve_key && kin__curve_parse(&key, opts->curve_key)) {
        explain(opts->errbuf, opts->errbuf_size,
                "curve_key is not \"PUBLIC:SECRET\" in Z85 with a "
                "matching pair");
        return -EINVAL;
    }
    kin_err e;
    if (!opts->join_cert != !opts->join_server_cert) {
        explain(opts->errbuf, opts->errbuf_size,
                "join: join_cert and join_server_cert go together");
        return -EINVAL;
    }
    if (opts->join_cert) {
        kin__curve_key server;
        if ((e = kin__cert_load(opts->join_cert, true, own)) ||
            (e = kin__cert_load(opts->join_server_cert, false, &server))) {
            explain(opts->errbuf, opts->errbuf_size, "join: cannot load %s: %s",
                    own->sec[0] ? opts->join_server_cert : opts->join_cert,
                    e == -EINVAL ? "not a certificate (with a secret key "
                                   "for join_cert)"
                                 : kin__certs_strerror(e));
            return e;
        }
        memcpy(server_pub, server.pub, KIN__KEY_LEN);
    } else {
        *own = key;
        memcpy(server_pub, key.server[0] ? key.server : key.pub, KIN__KEY_LEN);
    }
    char why[384] = "";
    int timeout =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 30000;
    e = kin__join_ask(opts->join, opts->name, server_pub, own, timeout, id,
                      parent, log_ep, log_size, why, sizeof why);
    if (e)
        explain(opts->errbuf, opts->errbuf_size, "joining as '%s': %s",
                opts->name, why);
    return e;
}

kin_err
kin__router_new(kin_node **out, const kin_node_opts *opts,
                const kin__router_hooks *hooks)
{
    *out = NULL;
    kin_node_opts none = {0};
    if (!opts)
        opts = &none;
    if (opts->parent_endpoint &&
        (opts->id == KIN_MASTER_ID || opts->id == opts->parent_id ||
         strlen(opts->parent_endpoint) >= 256))
        return -EINVAL;
    uint32_t join_id = 0, join_parent = 0;
    char log_ep[256] = "";
    char server_pub[KIN__KEY_LEN] = "";
    kin__curve_key own = {{0}, {0}, {0}};
    kin_err e = check_join(opts, &join_id, &join_parent, log_ep, sizeof log_ep,
                           server_pub, &own);
    if (e)
        return e;
    kin_node *n = calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    n->joined = opts->join != NULL;
    n->has_parent = opts->parent_endpoint != NULL || n->joined;
    n->is_operator = n->has_parent && opts->operator_link;
    n->id = n->joined ? join_id : n->has_parent ? opts->id : KIN_MASTER_ID;
    n->parent_id = n->joined ? join_parent : opts->parent_id;
    if (n->has_parent)
        snprintf(n->parent_endpoint, sizeof n->parent_endpoint, "%s",
                 n->joined ? opts->join : opts->parent_endpoint);
    if (opts->join_bind)
        snprintf(n->join_bind, sizeof n->join_bind, "%s", opts->join_bind);
    snprintf(n->tree_log, sizeof n->tree_log, "%s", log_ep);
    if (opts->join_cert && n->joined) {
        memcpy(n->join_server, server_pub, sizeof n->join_server);
        n->join_own = own;
    }
    if (opts->name)
        snprintf(n->name, sizeof n->name, "%s", opts->name);
    else if (n->has_parent)
        snprintf(n->name, sizeof n->name, "ctx-%u", n->id);
    else
        snprintf(n->name, sizeof n->name, "master");
    n->max_msg = opts->max_msg_size ? opts->max_msg_size : KIN_MAX_MSG_DEFAULT;
    n->connect_timeout_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 30000;
    n->next_handle = KIN_HANDLE_DYNAMIC;
    n->id_next = 1;
    n->curve_up = hooks && hooks->curve_up;
    n->hb_ivl_ms = opts->heartbeat_ms ? opts->heartbeat_ms : 1000;
    n->hb_timeout_ms =
        opts->heartbeat_timeout_ms ? opts->heartbeat_timeout_ms : 5000;
    if (n->hb_ivl_ms < 0 || n->hb_timeout_ms < 0)
        n->hb_ivl_ms = n->hb_timeout_ms = 0;
    n->hb_up =
        n->has_parent && !n->is_operator &&
        ((hooks && hooks->remote) || kin__endpoint_is_tcp(n->parent_endpoint));
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cond, NULL);
    kin__mutex_init_fast(&n->hmu);
    kin__mutex_init_fast(&n->smu);
    pthread_cond_init(&n->lead_cv, NULL);
    n->started_ns = kin__now_ns();
    if (kin__tasktab_init(&n->tasks, n->id, opts->task_history)) {
        pthread_mutex_destroy(&n->mu);
        pthread_cond_destroy(&n->cond);
        pthread_mutex_destroy(&n->hmu);
        pthread_mutex_destroy(&n->smu);
        pthread_cond_destroy(&n->lead_cv);
        free(n);
        return -ENOMEM;
    }
    kin__adopt_node_new(n);
    /* Without it calls are not counted, nothing else changes. */
    n->metrics = kin__fn_metrics_new();

    if (opts->curve_key) {
        if ((e = kin__curve_parse(&n->curve, opts->curve_key))) {
            explain(opts->errbuf, opts->errbuf_size,
                    "context %u: curve_key is not \"PUBLIC:SECRET\" in "
                    "Z85 with a matching pair",
                    n->id);
            goto fail;
        }
    } else if (!n->has_parent) {
        /* Without CURVE in libzmq, tcp binds fail later and say why. */
        kin__curve_generate(&n->curve);
    }
    if ((e = open_certs(n, opts)))
        goto fail;
    if (n->is_operator) {
        /* binds nothing */
    } else if (opts->bind) {
        snprintf(n->endpoint, sizeof n->endpoint, "%s", opts->bind);
    } else {
        char dir[160];
        if ((e = runtime_dir_why(dir, sizeof dir, opts->errbuf,
                                 opts->errbuf_size)))
            goto fail;
        if ((e = ipc_path_claim(n, dir))) {
            explain(opts->errbuf, opts->errbuf_size,
                    "context %u: no socket path in %s: %s", n->id, dir,
                    kin_strerror(e));
            goto fail;
        }
        snprintf(n->endpoint, sizeof n->endpoint, "ipc://%s", n->ipc_path);
        if (!n->has_parent)
            sweep_stale(dir, NULL, NULL);
    }

    if ((e = add_system(n, KIN_HANDLE_PING, KIN_POLICY_ANY, on_ping)))
        goto fail;
    /* Hooks go in before HELLO: a parent may ask us to stop at once. */
    if (hooks && hooks->on_shutdown &&
        (e = add_system(n, KIN_HANDLE_SHUTDOWN, KIN_POLICY_PARENT,
                        hooks->on_shutdown)))
        goto fail;
    if (hooks && hooks->on_parent_lost) {
        n->on_parent_lost = hooks->on_parent_lost;
        n->on_parent_lost_arg = hooks->on_parent_lost_arg;
    }
    if (!n->has_parent && (e = add_system(n, KIN_HANDLE_ALLOCATE_ID,
                                          KIN_POLICY_ANY, on_allocate_id)))
        goto fail;
    if ((e = kin__calls_start(n, opts->workers > 0 ? opts->workers : 4)))
        goto fail;
    if ((e = kin__services_start(n)))
        goto fail;
    if ((e = kin__names_start(n)))
        goto fail;
    if (!n->has_parent && (e = kin__join_start(n)))
        goto fail;
    if ((e = kin__broker_new(&n->broker, on_stop, n)))
        goto fail;
    *out = n;
    return KIN_OK;
fail:
    kin__router_stop_calls(n);
    kin__router_stop(n);
    kin__router_free(n);
    return e;
}

kin_err
kin__router_start(kin_node *n, char *errbuf, size_t errbuf_size)
{
    sync_call s = {.n = n};
    kin_err e = kin__broker_defer(n->broker, open_job, &s, NULL);
    if (e)
        return e;
    pthread_mutex_lock(&n->mu);
    while (!s.done)
        pthread_cond_wait(&n->cond, &n->mu);
    e = s.result;
    if (!e && n->has_parent) {
        struct timespec dl;
        kin__deadline(&dl, CLOCK_REALTIME, n->connect_timeout_ms);
        while (!n->up_ready && !n->up_err && !e)
            if (pthread_cond_timedwait(&n->cond, &n->mu, &dl) == ETIMEDOUT)
                e = n->up_ready ? KIN_OK : KIN_ETIMEOUT;
        if (!n->up_ready && n->up_err) {
            e = n->up_err;
            explain(errbuf, errbuf_size, "context %u: parent %u at %s: %s",
                    n->id, n->parent_id, n->parent_endpoint, n->up_why);
        } else if (e)
            explain(errbuf, errbuf_size,
                    "context %u: parent %u at %s did not answer HELLO in "
                    "%d ms",
                    n->id, n->parent_id, n->parent_endpoint,
                    n->connect_timeout_ms);
    }
    pthread_mutex_unlock(&n->mu);
    /* The pool's first worker started before the router opened and found
     * no socket to read: it looks again, so that it reads the first call
     * too (lead.c). */
    if (!e && n->has_parent)
        kin__lead_kick(n);
    return e;
}

void
kin__router_stop_calls(kin_node *n)
{
    kin__calls_stop(n);
}

void
kin__router_stop(kin_node *n)
{
    kin__lead_stop(n);
    kin__join_say_leave(n);
    kin__broker_destroy(&n->broker, 1000);
    kin__router_close(n);
    kin__calls_free(n);
    kin__services_free(n);
    kin__names_free(n);
    kin__join_free(n);
    if (n->join_store) {
        kin__curve_forget(n->join_store);
        kin__certs_close(&n->join_store);
    }
}

void
kin__router_free(kin_node *n)
{
    if (n->ipc_path[0])
        ipc_path_release(n);
    if (n->far_path[0])
        unlink(n->far_path);
    if (n->join_bound && !strncmp(n->join_bind, "ipc://", 6))
        unlink(n->join_bind + 6); /* libzmq leaves the socket file */
    uint32_t key;
    void *val;
    for (size_t it = 0; kin__u32map_next(&n->handles, &it, &key, &val);)
        kin__block_put(val); /* kin__handles_add's */
    for (size_t it = 0; kin__u32map_next(&n->children, &it, &key, &val);)
        free(val);
    kin__u32map_fini(&n->handles);
    kin__u32map_fini(&n->children);
    kin__u32map_fini(&n->routes);
    kin__u32map_fini(&n->fds);
    free(n->evq);
    kin__u32map_fini(&n->exited);
    kin__u32map_fini(&n->ready);
    kin__u32map_fini(&n->bad_version);
    kin__adopt_node_gone(n);
    kin__tasktab_fini(&n->tasks);
    kin__fn_metrics_free(&n->metrics);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cond);
    pthread_mutex_destroy(&n->hmu);
    pthread_mutex_destroy(&n->smu);
    pthread_cond_destroy(&n->lead_cv);
    free(n);
}

/* --- the layers above ------------------------------------------------------
 */

kin_err
kin__node_attach(kin_node *n, const kin__layer *key, void *state)
{
    for (size_t i = 0; i < KIN__LAYERS_MAX; i++) {
        if (n->layers[i].key == key)
            return KIN_EEXISTS;
        if (!n->layers[i].key) {
            n->layers[i].key = key;
            atomic_store(&n->layers[i].state, state);
            return KIN_OK;
        }
    }
    return -ENOMEM;
}

void *
kin__node_layer(const kin_node *n, const kin__layer *key)
{
    for (size_t i = 0; i < KIN__LAYERS_MAX && n->layers[i].key; i++)
        if (n->layers[i].key == key)
            return atomic_load(&((kin_node *)n)->layers[i].state);
    return NULL;
}

void
kin__node_detach(kin_node *n, const kin__layer *key)
{
    for (size_t i = 0; i < KIN__LAYERS_MAX && n->layers[i].key; i++)
        if (n->layers[i].key == key)
            atomic_store(&n->layers[i].state, NULL);
}

kin_err
kin__node_on_link(kin_node *n, kin__link_fn fn, void *arg)
{
    size_t max = sizeof n->link_hooks / sizeof *n->link_hooks;
    for (size_t i = 0; i < max; i++) {
        if (!n->link_hooks[i].fn) {
            n->link_hooks[i].fn = fn;
            n->link_hooks[i].arg = arg;
            return KIN_OK;
        }
    }
    return -ENOMEM;
}

kin_err
kin__node_on_join(kin_node *n, kin__join_fn fn, void *arg)
{
    if (n->join_hook)
        return KIN_EEXISTS;
    n->join_hook = fn;
    n->join_hook_arg = arg;
    return KIN_OK;
}

uint32_t
kin__node_parent_id(const kin_node *n)
{
    return n->parent_id;
}

bool
kin__node_has_parent(const kin_node *n)
{
    return n->has_parent;
}

bool
kin__node_is_operator(const kin_node *n)
{
    return n->is_operator;
}

size_t
kin__node_max_msg(const kin_node *n)
{
    return n->max_msg;
}

int
kin__node_connect_timeout(const kin_node *n)
{
    return n->connect_timeout_ms;
}

const char *
kin__node_ipc_path(const kin_node *n)
{
    return n->ipc_path;
}

const kin__curve_key *
kin__node_curve(const kin_node *n)
{
    return &n->curve;
}

void
kin__node_heartbeat(const kin_node *n, int *ivl_ms, int *timeout_ms)
{
    *ivl_ms = n->hb_ivl_ms;
    *timeout_ms = n->hb_timeout_ms;
}

uint64_t
kin__node_started_ns(const kin_node *n)
{
    return n->started_ns;
}

kin__broker *
kin__node_broker(const kin_node *n)
{
    return n->broker;
}

kin__tasktab *
kin__node_tasks(kin_node *n)
{
    return &n->tasks;
}

void
kin__node_each_child(kin_node *n, void (*fn)(void *arg, uint32_t id), void *arg)
{
    void *val;
    uint32_t id;
    for (size_t it = 0; kin__u32map_next(&n->children, &it, &id, &val);)
        if (!((kin__child *)val)->is_operator)
            fn(arg, id);
}

bool
kin__node_joined(const kin_node *n)
{
    return n->joined;
}

void
kin__node_log_endpoint(kin_node *n, char *out, size_t size)
{
    pthread_mutex_lock(&n->mu);
    snprintf(out, size, "%s", n->tree_log);
    pthread_mutex_unlock(&n->mu);
}

void
kin__node_set_log_endpoint(kin_node *n, const char *endpoint)
{
    pthread_mutex_lock(&n->mu);
    snprintf(n->tree_log, sizeof n->tree_log, "%s", endpoint ? endpoint : "");
    pthread_mutex_unlock(&n->mu);
}

int
kin__node_workers(kin_node *n)
{
    return kin__calls_workers(n);
}

uint32_t
kin_node_id(const kin_node *n)
{
    return n->id;
}

const char *
kin_node_name(const kin_node *n)
{
    return n->name;
}

const char *
kin_node_endpoint(const kin_node *n)
{
    return n->endpoint;
}

const char *
kin_node_join_endpoint(const kin_node *n)
{
    return n->join_bind;
}

kin_err
kin_node_wait_child(kin_node *n, uint32_t id, int timeout_ms)
{
    struct timespec ts;
    const struct timespec *dl = kin__deadline_or_forever(&ts, timeout_ms);
    kin_err e = KIN_OK;
    pthread_mutex_lock(&n->mu);
    while (!kin__u32map_has(&n->ready, id) && !e)
        if (kin__cond_wait_dl(&n->cond, &n->mu, dl) == ETIMEDOUT)
            e = kin__u32map_has(&n->ready, id) ? KIN_OK : KIN_ETIMEOUT;
    pthread_mutex_unlock(&n->mu);
    return e;
}

/* --- sending ---------------------------------------------------------------
 */

static void
route_job(void *node, void *msg)
{
    kin__route(node, msg);
}

kin_err
kin_node_send(kin_node *n, kin_msg **mp)
{
    kin_msg *m = *mp;
    kin_err e =
        kin__msg_check_size(m->handle, m->flags, m->body, m->len, n->max_msg);
    if (e)
        return e;
    m->src = n->id;
    /* An operator acts with the authority of the context it attached to. */
    m->auth = n->is_operator ? n->parent_id : n->id;
    if (m->dst == n->id) {
        *mp = NULL;
        kin__deliver(n, m);
        return KIN_OK;
    }
    if (kin__broker_on_thread(n->broker)) {
        /* System handlers answer from the broker: no hop to ourselves. */
        *mp = NULL;
        kin__route(n, m);
        return KIN_OK;
    }
    if (kin__route_direct(n, m)) {
        /* Sent on the socket from this thread: no wake-up of the broker. */
        *mp = NULL;
        return KIN_OK;
    }
    e = kin__broker_defer(n->broker, route_job, n, m);
    if (e == KIN_OK)
        *mp = NULL;
    return e;
}

kin_err
kin__node_send_raw(kin_node *n, kin_msg **mp)
{
    /* Off the broker thread a message leaves by the same way as
     * kin_node_send's, so a thread's messages to one destination stay in
     * order; one to this context itself is the broker's to deliver. */
    if ((*mp)->dst != n->id && !kin__broker_on_thread(n->broker) &&
        kin__route_direct(n, *mp)) {
        *mp = NULL;
        return KIN_OK;
    }
    kin_err e = kin__broker_defer(n->broker, route_job, n, *mp);
    if (e == KIN_OK)
        *mp = NULL;
    return e;
}

void
kin_node_stats_get(kin_node *n, kin_node_stats *out)
{
    out->forged = atomic_load(&n->stats.forged);
    out->malformed = atomic_load(&n->stats.malformed);
    out->dead_sent = atomic_load(&n->stats.dead_sent);
    out->dropped = atomic_load(&n->stats.dropped);
    out->routed = atomic_load(&n->stats.routed);
    out->delivered = atomic_load(&n->stats.delivered);
}

/* --- receivers -------------------------------------------------------------
 */

kin_err
kin_receiver_new(kin_receiver **out, kin_node *n, uint32_t handle,
                 kin_policy policy, uint32_t respondent)
{
    if (policy > KIN_POLICY_CHILD)
        return -EINVAL;
    /* A cached block (core/block_cache.h): a call makes one. */
    _Static_assert(sizeof(kin_receiver) <= KIN__BLOCK_SIZE,
                   "a receiver is small");
    kin_receiver *r = kin__block_get();
    if (!r)
        return -ENOMEM;
    memset(r, 0, sizeof *r);
    kin_err e = kin_latch_new(&r->latch);
    if (e) {
        kin__block_put(r);
        return e;
    }
    kin__handler h = {.handle = handle,
                      .policy = policy,
                      .respondent = respondent,
                      .latch = r->latch};
    if ((e = kin__handles_add(n, &h, &r->handle))) {
        kin_latch_destroy(&r->latch);
        kin__block_put(r);
        return e;
    }
    r->node = n;
    r->respondent = respondent;
    *out = r;
    return KIN_OK;
}

void
kin_receiver_destroy(kin_receiver **rp)
{
    if (!rp || !*rp)
        return;
    kin_receiver *r = *rp;
    if (r->is_call)
        atomic_fetch_sub_explicit(&r->node->calls_out, 1, memory_order_relaxed);
    kin__handles_remove(r->node, r->handle);
    kin_latch_destroy(&r->latch);
    kin__block_put(r);
    *rp = NULL;
}

void
kin__receiver_target(kin_receiver *r, kin_node **n, uint32_t *respondent)
{
    *n = r->node;
    *respondent = r->respondent;
}

const char *
kin__receiver_fn(kin_receiver *r)
{
    return r->fn;
}

void
kin__receiver_set_fn(kin_receiver *r, const char *fn)
{
    kin__str_copy(r->fn, sizeof r->fn, fn);
    kin__latch_set_call(r->latch, r->respondent, r->handle);
    if (!r->is_call) {
        r->is_call = true;
        atomic_fetch_add_explicit(&r->node->calls_out, 1, memory_order_relaxed);
    }
}

uint32_t
kin_receiver_handle(const kin_receiver *r)
{
    return r->handle;
}

kin_latch *
kin_receiver_latch(kin_receiver *r)
{
    return r->latch;
}

kin_err
kin_msg_check_dead(kin_msg **m)
{
    if (!((*m)->flags & KIN_MSG_DEAD))
        return KIN_OK;
    kin_err reason = KIN_EBADMSG;
    kin_msg_dead_reason(*m, &reason, NULL, NULL);
    kin_msg_destroy(m);
    return reason;
}

kin_err
kin_receiver_get(kin_receiver *r, int timeout_ms, kin_msg **out)
{
    kin_msg *m;
    kin_err e = kin_latch_get(r->latch, timeout_ms, &m);
    if (e)
        return e;
    if ((e = kin_msg_check_dead(&m)))
        return e;
    *out = m;
    return KIN_OK;
}

/* --- ids -------------------------------------------------------------------
 */

kin_err
kin_node_alloc_id(kin_node *n, uint32_t *id)
{
    pthread_mutex_lock(&n->mu);
    if (!n->has_parent || n->id_next < n->id_end) {
        *id = n->id_next++;
        pthread_mutex_unlock(&n->mu);
        return KIN_OK;
    }
    pthread_mutex_unlock(&n->mu);

    kin_receiver *r;
    kin_err e = kin_receiver_new(&r, n, 0, KIN_POLICY_ANY, KIN_MASTER_ID);
    if (e)
        return e;
    kin_msg *m;
    if ((e = kin_msg_new(&m, 0))) {
        kin_receiver_destroy(&r);
        return e;
    }
    m->dst = KIN_MASTER_ID;
    m->handle = KIN_HANDLE_ALLOCATE_ID;
    m->reply_to = r->handle;
    if ((e = kin_node_send(n, &m))) {
        kin_msg_destroy(&m);
        kin_receiver_destroy(&r);
        return e;
    }
    kin_msg *reply = NULL;
    e = kin_receiver_get(r, n->connect_timeout_ms, &reply);
    kin_receiver_destroy(&r);
    if (e)
        return e;
    uint32_t block[2] = {0, 0}; /* [first, count] */
    int got = kin__ids_read(reply->body, reply->len, block, 2);
    kin_msg_destroy(&reply);
    uint32_t first = block[0], count = block[1];
    if (got != 2 || !count)
        return KIN_EBADMSG;
    pthread_mutex_lock(&n->mu);
    n->id_next = first + 1;
    n->id_end = first + count;
    pthread_mutex_unlock(&n->mu);
    *id = first;
    return KIN_OK;
}
