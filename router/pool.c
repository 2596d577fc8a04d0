/* The callee side of calls: the process-wide export table, the worker pool
 * that runs every incoming call as a task, and CANCEL. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <unwind.h>

#include "core/buf.h"
#include "core/latch_lead.h"
#include "core/log_internal.h"
#include "core/msg_internal.h"
#include "core/pack_internal.h"
#include "core/str.h"
#include "core/sync.h"
#include "core/task.h"
#include "core/tasktab.h"
#include "router/call_impl.h"
#include "router/lead.h"
#include "router/metrics.h"
#include "router/node_impl.h"
#include "router/service.h"

typedef struct exported {
    char name[64];
    size_t len; /* strlen(name) */
    kin_fn fn;
    void *arg;
    kin_policy policy;
    bool on_broker;  /* kin_export_inline: runs on the broker thread */
    bool idempotent; /* KIN_EXPORT_IDEMPOTENT: services may retry it */
} exported;

/* Entries are never freed nor changed once added: a call keeps a pointer
 * to its export from dispatch to its worker. */
static struct {
    pthread_rwlock_t lock;
    exported **items;
    size_t len, cap;
    _Atomic uint64_t gen; /* + 1 per export added */
} exports = {.lock = PTHREAD_RWLOCK_INITIALIZER};

struct kin_call {
    kin_node *node;
    kin_msg *msg;
    kin_reader reader;
    kin_buf result;
    kin_task *task;
    int fail_code;
    char fail_msg[256];
    /* Where kin_call_fail was called: return addresses, innermost first. */
    void *fail_pcs[KIN__ERRSTACK_FRAMES];
    int fail_npcs;
};

/* Formats a failed call's stack for its error reply (set by the monitor
 * layer to its symbolizer); NULL: replies carry no stack. */
static _Atomic(kin__errstack_fmt) stack_fmt;

void
kin__calls_set_stack_fmt(kin__errstack_fmt fmt)
{
    atomic_store(&stack_fmt, fmt);
}

/* The pool starts one worker and grows on demand up to its size: each
 * worker a process never needs is a thread its start-up and its exit pay
 * for (docs/performance.md, "Forked children"). */
struct kin__calls {
    kin_latch *queue; /* incoming CALL messages and spawned tasks */
    int bound;        /* the pool's size: at most this many workers */
    /* Calls and tasks queued or running: put in before they are queued,
     * taken out when they end. More demand than workers started means a
     * queued one has no worker to take it: one more is started. */
    _Atomic int demand;
    _Atomic int started; /* workers started; only grows, under grow_mu */
    pthread_mutex_t grow_mu;
    bool stopping;      /* under grow_mu: no more workers */
    pthread_t *threads; /* bound entries, started in order */
    sigset_t mask;      /* every worker's signal mask: the creator's */
    kin_node *node;
};

static kin_err
add_export(const char *name, kin_fn fn, void *arg, kin_policy policy,
           unsigned flags)
{
    if (!name || !*name || strlen(name) >= 64 || !fn ||
        policy > KIN_POLICY_CHILD ||
        (flags & ~(KIN_EXPORT_IDEMPOTENT | KIN_EXPORT_INLINE)))
        return -EINVAL;
    kin_err e = KIN_OK;
    pthread_rwlock_wrlock(&exports.lock);
    for (size_t i = 0; i < exports.len; i++)
        if (!strcmp(exports.items[i]->name, name))
            e = KIN_EEXISTS;
    if (!e && exports.len == exports.cap) {
        size_t cap = exports.cap ? exports.cap * 2 : 16;
        exported **items = realloc(exports.items, cap * sizeof *items);
        if (items) {
            exports.items = items;
            exports.cap = cap;
        } else {
            e = -ENOMEM;
        }
    }
    exported *x = e ? NULL : calloc(1, sizeof *x);
    if (!e && !x)
        e = -ENOMEM;
    if (!e) {
        exports.items[exports.len++] = x;
        snprintf(x->name, sizeof x->name, "%s", name);
        x->len = strlen(x->name);
        x->fn = fn;
        x->arg = arg;
        x->policy = policy;
        x->on_broker = flags & KIN_EXPORT_INLINE;
        x->idempotent = flags & KIN_EXPORT_IDEMPOTENT;
        atomic_fetch_add(&exports.gen, 1);
    }
    pthread_rwlock_unlock(&exports.lock);
    return e;
}

kin_err
kin_export(const char *name, kin_fn fn, void *arg, kin_policy policy)
{
    return add_export(name, fn, arg, policy, 0);
}

kin_err
kin_export_inline(const char *name, kin_fn fn, void *arg, kin_policy policy)
{
    return add_export(name, fn, arg, policy, KIN_EXPORT_INLINE);
}

kin_err
kin_export_flags(const char *name, kin_fn fn, void *arg, kin_policy policy,
                 unsigned flags)
{
    return add_export(name, fn, arg, policy, flags);
}

/* The export of that name, or NULL. */
static const exported *
find_export(const char *name, size_t len)
{
    const exported *found = NULL;
    pthread_rwlock_rdlock(&exports.lock);
    for (size_t i = 0; i < exports.len && !found; i++)
        if (exports.items[i]->len == len &&
            !memcmp(exports.items[i]->name, name, len))
            found = exports.items[i];
    pthread_rwlock_unlock(&exports.lock);
    return found;
}

uint64_t
kin__exports_gen(void)
{
    return atomic_load(&exports.gen);
}

bool
kin__export_idempotent(const char *fn)
{
    const exported *x = find_export(fn, strlen(fn));
    return x && x->idempotent;
}

/* --- call headers, read by hand (no msgpack-c zone per call) ------------- */

/* --- the function's view ----------------------------------------------------
 */

kin_err
kin_call_args(kin_call *c, const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vunpack(&c->reader, picture, ap);
    va_end(ap);
    return e;
}

kin_reader *
kin_call_reader(kin_call *c)
{
    return &c->reader;
}

kin_err
kin_call_return(kin_call *c, const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vpack(&c->result, picture, ap);
    va_end(ap);
    return e;
}

kin_buf *
kin_call_result(kin_call *c)
{
    return &c->result;
}

/* Records the return addresses of the served code that called
 * kin_call_fail (symbolized once, when the reply is made): the frames
 * below run_call's, told apart by the stack address of the kin_call, which
 * lives in run_call's frame. _Unwind_GetCFA gives a frame's stack pointer
 * (at its call to the frame below), so a frame belongs to the served code
 * when its caller's is at or below c: each frame is decided when its
 * caller's turn comes. Unwound with libgcc's unwinder, which every C
 * program has, so libunwind stays unloaded until a stack is asked for. */
typedef struct unwinding {
    kin_call *c;
    int skip;        /* this function's and kin_call_fail's frames */
    void *undecided; /* the last frame seen, until its caller's turn */
} unwinding;

static _Unwind_Reason_Code
on_frame(struct _Unwind_Context *ctx, void *arg)
{
    unwinding *u = arg;
    kin_call *c = u->c;
    if (u->skip > 0) {
        u->skip--;
        return _URC_NO_REASON;
    }
    if (u->undecided) {
        if (_Unwind_GetCFA(ctx) > (uintptr_t)c ||
            c->fail_npcs == KIN__ERRSTACK_FRAMES)
            return _URC_END_OF_STACK;
        c->fail_pcs[c->fail_npcs++] = u->undecided;
    }
    u->undecided = (void *)_Unwind_GetIP(ctx);
    return _URC_NO_REASON;
}

static void __attribute__((noinline)) where_failed(kin_call *c)
{
    c->fail_npcs = 0;
    unwinding u = {.c = c, .skip = 2};
    _Unwind_Backtrace(on_frame, &u);
}

kin_err
kin_call_fail(kin_call *c, int code, const char *fmt, ...)
{
    c->fail_code = code ? code : KIN_EREMOTE;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fail_msg, sizeof c->fail_msg, fmt, ap);
    va_end(ap);
    where_failed(c);
    return KIN_EREMOTE;
}

uint32_t
kin_call_caller(const kin_call *c)
{
    /* A service call comes from its resolver, on the caller's authority. */
    return c->msg->handle == KIN_HANDLE_SVC_RUN ? c->msg->auth : c->msg->src;
}

kin_node *
kin_call_node(kin_call *c)
{
    return c->node;
}

/* --- replies ----------------------------------------------------------------
 */

static void
send_reply(kin_node *n, const kin_msg *req, uint32_t flags, kin_buf *body)
{
    if (!req->reply_to)
        return;
    kin_msg *r;
    if (kin__msg_from_buf(&r, body))
        return;
    r->flags = flags;
    r->dst = req->src;
    r->handle = req->reply_to;
    kin_err e;
    if (req->handle == KIN_HANDLE_SVC_RUN && req->src == n->id &&
        !kin__broker_on_thread(n->broker)) {
        /* This context resolved the call for itself: its resolver sees
         * the reply on the broker thread (kin__svc_claim), never here. */
        e = kin__msg_check_size(r->handle, r->flags, r->body, r->len,
                                n->max_msg);
        r->src = r->auth = n->id;
        if (!e)
            e = kin__node_send_raw(n, &r);
    } else {
        e = kin_node_send(n, &r);
    }
    if (e == KIN_ETOOBIG) {
        /* The result itself is too large: say so instead. */
        kin_msg_destroy(&r);
        kin_buf err = {0};
        kin_pack(&err, "isus", KIN_ETOOBIG, "result over the message limit",
                 n->id, "");
        send_reply(n, req, KIN_MSG_ERROR, &err);
        kin_buf_release(&err);
        return;
    }
    kin_msg_destroy(&r);
}

static void
reply_error(kin_node *n, const kin_msg *req, int code, const char *text,
            const char *fn, size_t fn_len)
{
    kin_buf b = {0};
    if (kin_pack(&b, "isuS", code, text, n->id, fn, fn_len) == KIN_OK)
        send_reply(n, req, KIN_MSG_ERROR, &b);
    kin_buf_release(&b);
}

/* The error reply of a function that failed: with its stack as a fifth
 * element where the monitor layer gave a formatter (readers of four
 * ignore it). pcs: where kin_call_fail was called (none: the function
 * returned an error, so only the function itself is named). */
static void
reply_failed(kin_node *n, const kin_msg *req, int code, const char *text,
             const exported *x, void *const *pcs, int npcs)
{
    kin__errstack_fmt fmt = atomic_load(&stack_fmt);
    char stack[KIN__ERRSTACK_MAX];
    size_t len = fmt ? fmt(pcs, npcs, (void *)x->fn, stack, sizeof stack) : 0;
    if (!len) {
        reply_error(n, req, code, text, x->name, x->len);
        return;
    }
    kin_buf b = {0};
    if (kin_pack(&b, "isuSS", code, text, n->id, x->name, x->len, stack, len) ==
        KIN_OK)
        send_reply(n, req, KIN_MSG_ERROR, &b);
    kin_buf_release(&b);
}

/* --- the pool --- */

/* Runs one call whose task was registered (pending) on arrival; found is
 * the export looked up then (NULL: none found). */
static void
run_call(kin_node *n, kin_msg *m, const exported *found)
{
    kin_task *t = m->local;
    /* The result is packed in stack storage while it fits. */
    char mem[256];
    uint64_t arrived_ns = t->created_ns; /* t is freed before the count */
    kin_call c = {.node = n, .msg = m, .task = t};
    kin__buf_init_fixed(&c.result, mem, sizeof mem);
    kin_reader_init(&c.reader, m->body, m->len);
    const char *name = "";
    size_t name_len = 0, args_off = 0;
    uint32_t caller_task = 0;
    const exported *x = NULL;
    int state = KIN_TASK_FAILED;
    kin_err e = KIN_OK;
    char why[160];
    bool svc = m->handle == KIN_HANDLE_SVC_RUN;
    int64_t left = -1;
    if (!kin__call_head(m, svc, &name, &name_len, &caller_task, &left,
                        &args_off)) {
        e = KIN_EBADMSG;
        snprintf(why, sizeof why, "malformed call");
    } else if (!(x = found && found->len == name_len &&
                             !memcmp(found->name, name, name_len)
                         ? found
                         : find_export(name, name_len))) {
        e = KIN_ENOFUNC;
        snprintf(why, sizeof why, "no function '%.*s' in context %u",
                 (int)(name_len < 64 ? name_len : 64), name, n->id);
    } else if (!svc && !kin__policy_allows(n, x->policy, m)) {
        e = KIN_EREFUSED;
        snprintf(why, sizeof why,
                 "context %u may not call '%s' in context %u (policy)", m->auth,
                 x->name, n->id);
    }
    c.reader.off = args_off;
    pthread_mutex_lock(&t->mu);
    /* Named on arrival already, unless its name did not fit there. */
    if (strlen(t->fn) != name_len || memcmp(t->fn, name, name_len)) {
        kin__str_copy_n(t->name, sizeof t->name, name, name_len);
        kin__str_copy_n(t->fn, sizeof t->fn, name, name_len);
    }
    t->caller_task = caller_task;
    pthread_mutex_unlock(&t->mu);
    if (!e && atomic_load(&t->cancel)) {
        /* Cancelled while queued: never runs. */
        e = KIN_ECANCELLED;
        state = KIN_TASK_CANCELLED;
        snprintf(why, sizeof why, "cancelled before it started");
    }
    if (e) {
        /* Ended before the reply, so a caller that then asks for the
         * terminated tasks finds it. */
        kin__tasktab_end(&n->tasks, t, state, e);
        if (svc && state == KIN_TASK_CANCELLED &&
            kin_latch_closed(n->calls->queue))
            kin__service_stopped(n, m, false); /* may run elsewhere */
        else
            reply_error(n, m, e, why, name, name_len);
        goto done;
    }

    t->tid = kin__gettid();
    kin_task *prev = kin__task_set_self(t);
    t->started_ns = kin__now_ns();
    atomic_store(&t->state, KIN_TASK_RUNNING);
    /* Nested calls end by the service call's deadline. */
    uint64_t outer = kin__call_deadline();
    if (svc && left >= 0)
        kin__call_deadline_set(t->started_ns + (uint64_t)left * 1000000u);
    e = x->fn(&c, x->arg);
    kin__call_deadline_set(outer);
    t->ended_ns = kin__now_ns();
    t->tid = 0;
    kin__task_set_self(prev);
    bool cancelled = atomic_load(&t->cancel);
    if (e == KIN_OK && !c.fail_code) {
        kin__tasktab_end(&n->tasks, t, KIN_TASK_DONE, KIN_OK);
        send_reply(n, m, 0, &c.result);
    } else {
        int code = c.fail_code ? c.fail_code : e;
        const char *text = c.fail_code ? c.fail_msg : kin_strerror(e);
        kin__tasktab_end(&n->tasks, t,
                         cancelled ? KIN_TASK_CANCELLED : KIN_TASK_FAILED,
                         code);
        if (svc && cancelled && kin_latch_closed(n->calls->queue))
            kin__service_stopped(n, m, true); /* as if it died */
        else
            reply_failed(n, m, code, text, x, c.fail_pcs,
                         c.fail_code ? c.fail_npcs : 0);
    }
done:
    kin__fn_metrics_record(n->metrics, name, name_len,
                           c.fail_code ? c.fail_code : e, arrived_ns);
    if (svc)
        kin__service_run_done(n, name, name_len);
    kin_reader_release(&c.reader);
    kin_buf_release(&c.result);
    kin_msg_destroy(&m);
}

/* A task spawned in this context: a local message (handle 0) whose body
 * carries the function and its argument. */
typedef struct job {
    kin_task_fn fn;
    void *arg;
} job;

static void
run_job(kin_node *n, kin_msg *m)
{
    kin_task *t = m->local;
    job j;
    memcpy(&j, m->body, sizeof j);
    kin_msg_destroy(&m);
    if (atomic_load(&t->cancel)) {
        kin__tasktab_end(&n->tasks, t, KIN_TASK_CANCELLED, KIN_ECANCELLED);
        return;
    }
    t->tid = kin__gettid();
    kin_task *prev = kin__task_set_self(t);
    t->started_ns = kin__now_ns();
    atomic_store(&t->state, KIN_TASK_RUNNING);
    kin_err e = j.fn(j.arg);
    t->ended_ns = kin__now_ns();
    t->tid = 0;
    kin__task_set_self(prev);
    int state = e == KIN_OK ? KIN_TASK_DONE
                : e == KIN_ECANCELLED || atomic_load(&t->cancel)
                    ? KIN_TASK_CANCELLED
                    : KIN_TASK_FAILED;
    kin__tasktab_end(&n->tasks, t, state, e);
}

static void grow(struct kin__calls *cs);

static void *
worker_main(void *arg)
{
    kin_node *n = arg;
    struct kin__calls *cs = n->calls;
    kin__thread_name("kin-worker");
    kin_msg *m;
    /* Idle, a worker may read its next call off the socket itself
     * (lead.c); one it took there counts in demand, so grow. */
    while (kin__lead_serve(n, cs->queue, &m) == KIN_OK) {
        if (m->handle == 0 && !m->local) {
            kin_msg_destroy(&m); /* kin__calls_kick's: look again */
            continue;
        }
        grow(cs);
        if (m->handle == 0)
            run_job(n, m);
        else
            run_call(n, m, ((kin_task *)m->local)->entry);
        atomic_fetch_sub(&cs->demand, 1);
    }
    return NULL;
}

/* Under grow_mu. */
static int
start_worker(struct kin__calls *cs)
{
    pthread_attr_t a;
    int rc = pthread_attr_init(&a);
    if (rc)
        return rc;
    /* Grown from whichever thread queued the call (the broker's, which
     * blocks no signals of its own): a worker gets the pool creator's mask
     * as the first workers did. */
    rc = pthread_attr_setsigmask_np(&a, &cs->mask);
    int started = atomic_load(&cs->started);
    if (!rc)
        rc = pthread_create(&cs->threads[started], &a, worker_main, cs->node);
    pthread_attr_destroy(&a);
    if (!rc)
        atomic_store(&cs->started, started + 1);
    return rc;
}

/* A call or task was queued with demand already counting it: while more
 * are queued or running than workers started, start another (up to the
 * pool's size). Any thread. */
static void
grow(struct kin__calls *cs)
{
    /* demand and started are sequentially consistent: of two threads that
     * queue at once, the later sees both counted, and only grow_mu's
     * holder adds to started. */
    if (atomic_load(&cs->demand) <= atomic_load(&cs->started) ||
        atomic_load(&cs->started) >= cs->bound)
        return;
    pthread_mutex_lock(&cs->grow_mu);
    while (!cs->stopping && atomic_load(&cs->started) < cs->bound &&
           atomic_load(&cs->started) < atomic_load(&cs->demand)) {
        int rc = start_worker(cs);
        if (rc) {
            /* The call waits for a worker already running. */
            KIN_WARN("cannot start a worker: %s", strerror(rc));
            break;
        }
    }
    pthread_mutex_unlock(&cs->grow_mu);
}

/* kin_latch_put for the pool's queue, counting the demand first (so a
 * worker that takes it at once never counts below zero), and growing the
 * pool for it. */
static kin_err
enqueue(struct kin__calls *cs, kin_msg **m, bool on_broker)
{
    atomic_fetch_add(&cs->demand, 1);
    /* A call the broker dispatches, once queued, no longer needs the
     * broker to keep the order of its socket: an idle worker may read the
     * next message (lead.c). Said before the put wakes a worker, which on
     * one CPU runs at once and may read the next call before the broker
     * runs again. */
    kin_err e = kin__latch_put_then(
        cs->queue, m, on_broker ? kin__lead_queued : NULL, cs->node);
    if (e) {
        atomic_fetch_sub(&cs->demand, 1);
        return e;
    }
    grow(cs);
    return KIN_OK;
}

kin_err
kin_task_spawn_at(kin_node *n, const kin_task_opts *opts, kin_task_fn fn,
                  void *arg, uint32_t *id, const char *file, int line)
{
    if (!fn)
        return -EINVAL;
    kin_msg *m;
    kin_err e = kin_msg_new(&m, sizeof(job));
    if (e)
        return e;
    job j = {fn, arg};
    memcpy(m->body, &j, sizeof j);
    const char *name = opts && opts->name ? opts->name : "task";
    kin_task *t = kin__tasktab_add(&n->tasks, name, "");
    if (!t) {
        kin_msg_destroy(&m);
        return -ENOMEM;
    }
    t->persistent = opts && opts->persistent;
    t->created_file = file;
    t->created_line = line;
    kin_task *parent = kin_task_self();
    if (parent) {
        t->caller_ctx = parent->ctx;
        t->caller_task = parent->id;
    }
    uint32_t tid = t->id;
    m->local = t;
    if ((e = enqueue(n->calls, &m, false))) {
        kin__tasktab_end(&n->tasks, t, KIN_TASK_FAILED, KIN_ESHUTDOWN);
        kin_msg_destroy(&m);
        return KIN_ESHUTDOWN;
    }
    if (id)
        *id = tid;
    return KIN_OK;
}

/* The function name at the head of a CALL body (a msgpack str), read
 * without allocating. */
static bool
head_name(const uint8_t *p, size_t size, const char **name, size_t *len)
{
    const uint8_t *end = p + size;
    if (p < end && (*p & 0xe0) == 0xa0) {
        *len = *p++ & 0x1f;
    } else if (p < end && *p == 0xd9 && end - p >= 2) {
        *len = p[1];
        p += 2;
    } else {
        return false;
    }
    *name = (const char *)p;
    return (size_t)(end - p) >= *len;
}

/* The same copied into out; "call" when it is not there. */
static void
call_name(const kin_msg *m, char *out, size_t size)
{
    const char *name;
    size_t len;
    if (head_name(m->body, m->len, &name, &len))
        kin__str_copy_n(out, size, name, len);
    else
        snprintf(out, size, "call");
}

/* Registers call m as a task (pending), so that ps and the await graph see
 * queued calls too (a full pool is how cross-process deadlocks happen).
 * NULL: out of memory. */
static kin_task *
register_call(kin_node *n, kin_msg *m, const char *fn, const exported *x)
{
    kin_task *t =
        kin__tasktab_add_call(&n->tasks, fn, fn, m->src, m->reply_to, x);
    if (t)
        m->local = t;
    return t;
}

bool
kin__calls_for_worker(const void *body, size_t size, const void **entry)
{
    const char *name;
    size_t len;
    const exported *x =
        head_name(body, size, &name, &len) ? find_export(name, len) : NULL;
    *entry = x;
    return !x || !x->on_broker;
}

void
kin__calls_kick(kin_node *n)
{
    kin_msg *m;
    if (kin_msg_new(&m, 0))
        return; /* the worker reads from the second call on */
    m->local = NULL;
    /* Not counted in demand: no worker is needed for it. */
    if (kin_latch_put(n->calls->queue, &m))
        kin_msg_destroy(&m);
}

bool
kin__calls_accept(kin_node *n, kin_msg *m, const void *entry)
{
    char fn[64]; /* exported names have up to 63 bytes */
    call_name(m, fn, sizeof fn);
    kin_task *t = register_call(n, m, fn, entry);
    if (!t) {
        if (m->handle == KIN_HANDLE_SVC_RUN)
            kin__service_run_done(n, fn, strlen(fn));
        return false;
    }
    /* kin__calls_stop closes the queue, then cancels the live tasks: a
     * call the worker read after its last look at the queue but registered
     * after that sweep would otherwise run uncancelled while the node
     * waits for its workers. Registered before the sweep, the sweep
     * cancels it; after, the queue is seen closed here. */
    if (kin_latch_closed(n->calls->queue))
        kin__task_cancel(t, n->id, 0);
    atomic_fetch_add(&n->calls->demand, 1);
    return true;
}

/* Broker thread: queue the call for the pool (no decoding here, so the
 * broker never waits on user data). */
void
kin__calls_dispatch(kin_node *n, kin_msg *m)
{
    char fn[64]; /* exported names have up to 63 bytes */
    call_name(m, fn, sizeof fn);
    const exported *x = find_export(fn, strlen(fn));
    kin_task *t = register_call(n, m, fn, x);
    if (!t) {
        if (m->handle == KIN_HANDLE_SVC_RUN)
            kin__service_run_done(n, fn, strlen(fn));
        kin__reply_dead(n, m, -ENOMEM, "out of memory for the call");
        return;
    }
    if (x && x->on_broker) {
        /* Promised not to block: no hand-off to a worker and back. */
        run_call(n, m, x);
        return;
    }
    /* A call an idle worker could have read itself: they read again. */
    if (atomic_load_explicit(&n->serve_miss, memory_order_relaxed))
        atomic_store_explicit(&n->serve_miss, false, memory_order_relaxed);
    if (enqueue(n->calls, &m, kin__lead_handling(n, m))) {
        if (m->handle == KIN_HANDLE_SVC_RUN)
            kin__service_run_done(n, fn, strlen(fn));
        kin__tasktab_end(&n->tasks, t, KIN_TASK_FAILED, KIN_ESHUTDOWN);
        kin__reply_dead(n, m, KIN_ESHUTDOWN, "context is shutting down");
    }
}

static void
on_call(kin_node *n, kin_msg *m, void *arg)
{
    (void)arg;
    kin__calls_dispatch(n, m);
}

/* CANCEL body: the reply handle of the call to cancel, and the cancelling
 * task. Matches on (caller context, reply handle). */
static void
on_cancel(kin_node *n, kin_msg *m, void *arg)
{
    uint32_t handle = 0, by_task = 0;
    if (kin_unpack_buf(m->body, m->len, "uu", &handle, &by_task) == KIN_OK) {
        kin__tasktab *tab = &n->tasks;
        pthread_mutex_lock(&tab->mu);
        void *val;
        for (size_t it = 0; kin__u32map_next(&tab->live, &it, NULL, &val);) {
            kin_task *t = val;
            if (t->caller_ctx == m->src && t->caller_handle == handle)
                kin__task_cancel(t, m->src, by_task);
        }
        pthread_mutex_unlock(&tab->mu);
    }
    kin_msg_destroy(&m);
}

kin_err
kin__calls_start(kin_node *n, int workers)
{
    struct kin__calls *cs = calloc(1, sizeof *cs);
    if (!cs)
        return -ENOMEM;
    n->calls = cs;
    cs->node = n;
    cs->bound = workers;
    pthread_mutex_init(&cs->grow_mu, NULL);
    pthread_sigmask(SIG_SETMASK, NULL, &cs->mask);
    kin_err e = kin_latch_new(&cs->queue);
    if (e)
        return e;
    kin__handler h = {.handle = KIN_HANDLE_CALL,
                      .policy = KIN_POLICY_ANY,
                      .respondent = KIN_NO_CTX,
                      .fn = on_call};
    if ((e = kin__handles_add(n, &h, NULL)))
        return e;
    h.handle = KIN_HANDLE_CANCEL;
    h.fn = on_cancel;
    if ((e = kin__handles_add(n, &h, NULL)))
        return e;
    cs->threads = calloc((size_t)workers, sizeof *cs->threads);
    if (!cs->threads)
        return -ENOMEM;
    /* One now; the rest when calls need them (grow). */
    pthread_mutex_lock(&cs->grow_mu);
    int rc = start_worker(cs);
    pthread_mutex_unlock(&cs->grow_mu);
    return -rc;
}

void
kin__calls_stop(kin_node *n)
{
    struct kin__calls *cs = n->calls;
    if (!cs || !cs->queue)
        return;
    kin_latch_close(cs->queue);
    kin__tasktab *tab = &n->tasks;
    pthread_mutex_lock(&tab->mu);
    void *val;
    for (size_t it = 0; kin__u32map_next(&tab->live, &it, NULL, &val);)
        kin__task_cancel(val, n->id, 0);
    pthread_mutex_unlock(&tab->mu);
    pthread_mutex_lock(&cs->grow_mu);
    cs->stopping = true; /* no worker starts after this */
    int started = atomic_load(&cs->started);
    pthread_mutex_unlock(&cs->grow_mu);
    for (int i = 0; i < started; i++)
        pthread_join(cs->threads[i], NULL);
    atomic_store(&cs->started, 0);
}

int
kin__calls_workers(kin_node *n)
{
    return n->calls ? n->calls->bound : 0;
}

void
kin__calls_free(kin_node *n)
{
    struct kin__calls *cs = n->calls;
    if (!cs)
        return;
    kin_latch_destroy(&cs->queue);
    pthread_mutex_destroy(&cs->grow_mu);
    free(cs->threads);
    free(cs);
    n->calls = NULL;
}
