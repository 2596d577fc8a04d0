/* The router between real processes wired by hand (fork + exec of this binary
 * in a role, no kin_spawn): routing through a tree, the reverse-path check,
 * dead messages, garbage on the wire and shutdown with work in flight. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include <kin/monitor.h>

#include "core/msg_internal.h"
#include "integration/harness.h"
#include "router/node_impl.h"
#include "router/router.h"

/* The tree: master(0) -> A(1) -> A1(2), master -> B(3). */
enum {
    ID_A = 1,
    ID_A1 = 2,
    ID_B = 3,
    ID_NOWHERE = 4242,
    H_ECHO = 100000,        /* every role echoes here, policy ANY */
    H_ECHO_PARENT = 100001, /* ...and here, policy PARENT */
    H_ECHO_CHILD = 100002,  /* ...and here, policy CHILD */
    H_SINK = 100010,        /* the master's sink, policy ANY */
    H_NONE = 99999,         /* registered nowhere */
    SMALL_MAX = 4096,
};

extern char **environ;

/* --- round trips, shared by the master and the roles ---------------------- */

typedef struct rt_result {
    kin_err send_err;  /* from kin_node_send */
    kin_err reply_err; /* KIN_OK, a dead reply's reason or a wait error */
    uint32_t src;      /* who answered (for dead replies: who gave up) */
    size_t len;
    bool body_ok;   /* the reply is the request, byte for byte */
    char text[160]; /* a dead reply's text */
} rt_result;

static void
fill(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 31u + len);
}

static bool
filled(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(i * 31u + len))
            return false;
    return true;
}

/* Sends size patterned bytes from n to dst:handle and, when wait_ms is not
 * 0, waits for the reply on a receiver bound to dst. */
static void
roundtrip(kin_node *n, uint32_t dst, uint32_t handle, size_t size, int wait_ms,
          rt_result *out)
{
    memset(out, 0, sizeof *out);
    out->src = KIN_NO_CTX;
    kin_receiver *r = NULL;
    if (wait_ms &&
        (out->send_err = kin_receiver_new(&r, n, 0, KIN_POLICY_ANY, dst)))
        return;
    kin_msg *m;
    if ((out->send_err = kin_msg_new(&m, size))) {
        kin_receiver_destroy(&r);
        return;
    }
    fill(m->body, size);
    m->dst = dst;
    m->handle = handle;
    m->reply_to = r ? kin_receiver_handle(r) : 0;
    if ((out->send_err = kin_node_send(n, &m))) {
        kin_msg_destroy(&m);
        kin_receiver_destroy(&r);
        return;
    }
    if (!r)
        return;
    kin_msg *rep = NULL;
    out->reply_err = kin_latch_get(kin_receiver_latch(r), wait_ms, &rep);
    if (rep) {
        out->src = rep->src;
        out->len = rep->len;
        if (rep->flags & KIN_MSG_DEAD) {
            const char *text = "";
            size_t text_len = 0;
            out->reply_err = KIN_EBADMSG;
            kin_msg_dead_reason(rep, &out->reply_err, &text, &text_len);
            snprintf(out->text, sizeof out->text, "%.*s", (int)text_len, text);
        } else {
            out->body_ok = rep->len == size && filled(rep->body, rep->len);
        }
        kin_msg_destroy(&rep);
    }
    kin_receiver_destroy(&r);
}

/* --- the echo server every role runs -------------------------------------- */

typedef struct echo {
    kin_node *n;
    kin_receiver *r[3];
    kin_select *sel;
    pthread_t thread;
} echo;

static void *
echo_main(void *arg)
{
    echo *es = arg;
    kin_msg *m;
    /* Ends when every latch is closed and drained. */
    while (kin_select_get(es->sel, KIN_FOREVER, &m, NULL) == KIN_OK) {
        kin_msg *r;
        if (m->reply_to && !(m->flags & KIN_MSG_DEAD) &&
            kin_msg_new_copy(&r, m->body, m->len) == KIN_OK) {
            r->dst = m->src;
            r->handle = m->reply_to;
            if (kin_node_send(es->n, &r))
                kin_msg_destroy(&r);
        }
        kin_msg_destroy(&m);
    }
    return NULL;
}

static kin_err
echo_start(echo *es, kin_node *n)
{
    static const kin_policy policy[3] = {KIN_POLICY_ANY, KIN_POLICY_PARENT,
                                         KIN_POLICY_CHILD};
    memset(es, 0, sizeof *es);
    es->n = n;
    kin_err e = kin_select_new(&es->sel, false);
    for (int i = 0; i < 3 && !e; i++) {
        e = kin_receiver_new(&es->r[i], n, H_ECHO + (uint32_t)i, policy[i],
                             KIN_NO_CTX);
        if (!e)
            e = kin_select_add(es->sel, kin_receiver_latch(es->r[i]), NULL);
    }
    if (!e)
        e = -pthread_create(&es->thread, NULL, echo_main, es);
    return e;
}

static void
echo_stop(echo *es)
{
    for (int i = 0; i < 3; i++)
        kin_latch_close(kin_receiver_latch(es->r[i]));
    pthread_join(es->thread, NULL);
    kin_select_destroy(&es->sel);
    for (int i = 0; i < 3; i++)
        kin_receiver_destroy(&es->r[i]);
}

/* --- functions every process serves --------------------------------------- */

static atomic_int blocked;              /* calls waiting in t.block etc. */
static _Atomic(kin_receiver *) watched; /* t.watch's receiver */

/* (dst, handle, size, wait_ms) -> roundtrip's result. */
static kin_err
send_to_fn(kin_call *c, void *arg)
{
    unsigned dst, handle, size;
    int wait_ms;
    kin_err e = kin_call_args(c, "uuui", &dst, &handle, &size, &wait_ms);
    if (e)
        return e;
    rt_result r;
    roundtrip(kin_call_node(c), dst, handle, size, wait_ms, &r);
    return kin_call_return(c, "iiuubs", r.send_err, r.reply_err, r.src,
                           (unsigned)r.len, (int)r.body_ok, r.text);
}

/* (dst, src, auth, handle, size, reply_to): sends a message claiming any
 * src and auth, past kin_node_send's stamping. */
static kin_err
forge_fn(kin_call *c, void *arg)
{
    unsigned dst, src, auth, handle, size, reply_to;
    kin_err e = kin_call_args(c, "uuuuuu", &dst, &src, &auth, &handle, &size,
                              &reply_to);
    kin_msg *m = NULL;
    if (e || (e = kin_msg_new(&m, size)))
        return e;
    memset(m->body, 'f', size);
    *m = (kin_msg){.dst = dst,
                   .src = src,
                   .auth = auth,
                   .handle = handle,
                   .reply_to = reply_to,
                   .len = m->len,
                   .body = m->body};
    if ((e = kin__node_send_raw(kin_call_node(c), &m)))
        kin_msg_destroy(&m);
    return kin_call_return(c, "i", e);
}

static kin_err
stats_fn(kin_call *c, void *arg)
{
    kin_node_stats s;
    kin_node_stats_get(kin_call_node(c), &s);
    return kin_call_return(c, "UUUU", s.forged, s.malformed, s.dead_sent,
                           s.dropped);
}

/* Waits in a kin blocking point until cancelled (or 30 s). */
static kin_err
block_fn(kin_call *c, void *arg)
{
    kin_latch *l;
    kin_err e = kin_latch_new(&l);
    if (e)
        return e;
    atomic_fetch_add(&blocked, 1);
    kin_msg *m = NULL;
    e = kin_latch_get(l, 30000, &m);
    atomic_fetch_sub(&blocked, 1);
    kin_msg_destroy(&m);
    kin_latch_destroy(&l);
    return e;
}

static kin_err
blocked_fn(kin_call *c, void *arg)
{
    return kin_call_return(c, "i", atomic_load(&blocked));
}

/* (respondent) -> handle of a new receiver bound to respondent. */
static kin_err
watch_fn(kin_call *c, void *arg)
{
    unsigned respondent;
    kin_err e = kin_call_args(c, "u", &respondent);
    kin_receiver *r = NULL;
    if (e || (e = kin_receiver_new(&r, kin_call_node(c), 0, KIN_POLICY_ANY,
                                   respondent)))
        return e;
    uint32_t handle = kin_receiver_handle(r);
    kin_receiver *old = atomic_exchange(&watched, r);
    kin_receiver_destroy(&old);
    return kin_call_return(c, "u", handle);
}

/* (timeout_ms) -> (what the watch receiver gave, monotonic ms at wake-up).
 * Takes the receiver so that shutdown never frees it under this wait. */
static kin_err
watch_wait_fn(kin_call *c, void *arg)
{
    int timeout_ms;
    kin_err e = kin_call_args(c, "i", &timeout_ms);
    if (e)
        return e;
    kin_receiver *r = atomic_exchange(&watched, NULL);
    if (!r)
        return -ENOENT;
    atomic_fetch_add(&blocked, 1);
    kin_msg *m = NULL;
    e = kin_receiver_get(r, timeout_ms, &m);
    double woke = harness_now_ms();
    atomic_fetch_sub(&blocked, 1);
    kin_msg_destroy(&m);
    kin_receiver_destroy(&r);
    return kin_call_return(c, "id", e, woke);
}

/* (dst, fn, count): count calls to fn in dst, no reply wanted. */
static kin_err
call_nowait_fn(kin_call *c, void *arg)
{
    unsigned dst, count;
    const char *fn;
    size_t len;
    kin_err e = kin_call_args(c, "uSu", &dst, &fn, &len, &count);
    if (e)
        return e;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)len, fn);
    for (unsigned i = 0; i < count && !e; i++)
        e = kin_call_nowait(kin_call_node(c), dst, name, NULL);
    return kin_call_return(c, "i", e);
}

static kin_err
add_fn(kin_call *c, void *arg)
{
    int64_t a, b;
    kin_err e = kin_call_args(c, "II", &a, &b);
    return e ? e : kin_call_return(c, "I", a + b);
}

static void
export_all(void)
{
    kin_export("t.send_to", send_to_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.forge", forge_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.stats", stats_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.block", block_fn, NULL, KIN_POLICY_ANY);
    kin_export("t.blocked", blocked_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.watch", watch_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.watch_wait", watch_wait_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.call_nowait", call_nowait_fn, NULL, KIN_POLICY_PARENT);
    kin_export("t.add", add_fn, NULL, KIN_POLICY_PARENT);
}

/* --- a role: one context of the tree in its own process ------------------- */

static uint32_t
env_u32(const char *name)
{
    const char *v = getenv(name);
    return v ? (uint32_t)strtoul(v, NULL, 10) : 0;
}

/* Serves until SIGTERM, then shuts down cleanly (so ASan checks the role's
 * exit too). The parent's death kills it (PR_SET_PDEATHSIG). */
static int
role_main(const char *role)
{
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL); /* kin's threads inherit it */
    const char *bind = getenv("KT_BIND");
    kin_node_opts o = {
        .name = role,
        .parent_endpoint = getenv("KT_PARENT"),
        .parent_id = env_u32("KT_PARENT_ID"),
        .id = env_u32("KT_ID"),
        .bind = bind && *bind ? bind : NULL,
        .max_msg_size = env_u32("KT_MAX"),
        .connect_timeout_ms = 10000,
    };
    kin_node *n;
    kin_err e = kin_node_new(&n, &o);
    if (e) {
        fprintf(stderr, "role %s: kin_node_new: %s\n", role, kin_strerror(e));
        return 2;
    }
    echo es;
    if ((e = echo_start(&es, n))) {
        fprintf(stderr, "role %s: echo: %s\n", role, kin_strerror(e));
        return 2;
    }
    int sig;
    sigwait(&term, &sig);
    echo_stop(&es);
    kin_receiver *w = atomic_exchange(&watched, NULL);
    kin_receiver_destroy(&w);
    kin_node_destroy(&n);
    return 0;
}

/* --- processes the test starts -------------------------------------------- */

typedef struct proc {
    pid_t pid;
    char role[8];
    bool reaped;
    bool killed; /* on purpose, by the test */
    int status;
} proc;

#define MAX_PROCS 8
static proc procs[MAX_PROCS];
static int n_procs;

static struct {
    char dir[64];
    char master_ep[128], a_ep[128], a1_ep[128], b_ep[128];
    kin_node *master;
    proc *a, *a1, *b;
} fx;

static proc *
start_role(const char *role, uint32_t id, uint32_t parent,
           const char *parent_ep, const char *bind, size_t max_msg)
{
    if (n_procs == MAX_PROCS)
        return NULL;
    char v_id[32], v_parent[32], v_ep[160], v_bind[160], v_max[48];
    snprintf(v_id, sizeof v_id, "KT_ID=%u", id);
    snprintf(v_parent, sizeof v_parent, "KT_PARENT_ID=%u", parent);
    snprintf(v_ep, sizeof v_ep, "KT_PARENT=%s", parent_ep);
    snprintf(v_bind, sizeof v_bind, "KT_BIND=%s", bind);
    snprintf(v_max, sizeof v_max, "KT_MAX=%zu", max_msg);
    size_t count = 0;
    while (environ[count])
        count++;
    char **envp = calloc(count + 6, sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "KT_", 3))
            envp[k++] = environ[i];
    envp[k++] = v_id;
    envp[k++] = v_parent;
    envp[k++] = v_ep;
    envp[k++] = v_bind;
    envp[k++] = v_max;
    char *argv[] = {(char *)"test_router", (char *)"--role", (char *)role,
                    NULL};
    pid_t me = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != me)
            _exit(127);
        execve("/proc/self/exe", argv, envp);
        _exit(127);
    }
    free(envp);
    if (pid < 0)
        return NULL;
    proc *p = &procs[n_procs++];
    *p = (proc){.pid = pid};
    snprintf(p->role, sizeof p->role, "%s", role);
    return p;
}

/* Reaps p, waiting up to timeout_ms (negative: no limit). */
static bool
reap(proc *p, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    while (!p->reaped) {
        int st = 0;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid || (r < 0 && errno == ECHILD)) {
            p->reaped = true;
            p->status = st;
            break;
        }
        if (timeout_ms >= 0 && harness_now_ms() > end)
            return false;
        usleep(2000);
    }
    return true;
}

/* Stops every role: SIGTERM, then SIGKILL for any still there after 10 s.
 * Fails if a role did not exit cleanly (a crash, or ASan's report in a
 * role) unless the test killed it. */
static int
stop_procs(void)
{
    int rc = 0;
    for (int i = n_procs - 1; i >= 0; i--) {
        if (!procs[i].reaped) {
            /* SIGCONT first, for a role the test stopped: sent after
             * SIGTERM it could discard the SIGSTOP with which LeakSanitizer,
             * at the role's exit, stops threads to scan them, and hang it. */
            kill(procs[i].pid, SIGCONT);
            kill(procs[i].pid, SIGTERM);
        }
    }
    for (int i = n_procs - 1; i >= 0; i--) {
        proc *p = &procs[i];
        if (!reap(p, 10000)) {
            fprintf(stderr, "role %s (pid %d) ignored SIGTERM; killing it\n",
                    p->role, (int)p->pid);
            kill(p->pid, SIGKILL);
            reap(p, -1);
            rc = -1;
        } else if (!p->killed &&
                   !(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0)) {
            fprintf(stderr, "role %s (pid %d) ended badly: status 0x%x\n",
                    p->role, (int)p->pid, p->status);
            rc = -1;
        }
    }
    n_procs = 0;
    return rc;
}

static void
remove_dir(void)
{
    if (!fx.dir[0])
        return;
    static const char *const socks[] = {"m.sock", "a.sock", "a1.sock",
                                        "b.sock"};
    for (size_t i = 0; i < sizeof socks / sizeof *socks; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", fx.dir, socks[i]);
        unlink(path);
    }
    rmdir(fx.dir);
    fx.dir[0] = 0;
}

/* Whatever ends this process, no role outlives it. */
static void
kill_all(void)
{
    for (int i = 0; i < n_procs; i++) {
        if (!procs[i].reaped) {
            kill(procs[i].pid, SIGKILL);
            waitpid(procs[i].pid, NULL, 0);
            procs[i].reaped = true;
        }
    }
    remove_dir();
}

/* --- the tree fixture ----------------------------------------------------- */

typedef struct tree_cfg {
    size_t a_max; /* A's message size limit; 0: the default */
} tree_cfg;

/* The master's side of a round trip started in context `from` (the master
 * itself for KIN_MASTER_ID). */
static void
rt(uint32_t from, uint32_t dst, uint32_t handle, unsigned size, rt_result *out)
{
    if (from == KIN_MASTER_ID) {
        roundtrip(fx.master, dst, handle, size, 5000, out);
        return;
    }
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(fx.master, from, "t.send_to", 15000, &r, "uuui",
                              dst, handle, size, 5000);
    if (e)
        print_error("t.send_to in %u: %s\n", from, kin_strerror(e));
    assert_int_equal(e, KIN_OK);
    int send_err, reply_err;
    unsigned src, len;
    bool ok;
    const char *text;
    size_t text_len;
    assert_int_equal(kin_msg_unpack(r, "iiuubS", &send_err, &reply_err, &src,
                                    &len, &ok, &text, &text_len),
                     KIN_OK);
    *out = (rt_result){.send_err = send_err,
                       .reply_err = reply_err,
                       .src = src,
                       .len = len,
                       .body_ok = ok};
    snprintf(out->text, sizeof out->text, "%.*s", (int)text_len, text);
    kin_msg_destroy(&r);
}

/* A round trip from `from` to dst:handle must end with `want` (KIN_OK: the
 * echo came back intact from dst) answered by context `by`. */
static void
expect_rt(uint32_t from, uint32_t dst, uint32_t handle, unsigned size,
          kin_err want, uint32_t by)
{
    rt_result r;
    rt(from, dst, handle, size, &r);
    if (r.send_err || r.reply_err != want || r.src != by ||
        (want == KIN_OK && !r.body_ok))
        print_error("%u -> %u:%u (%u bytes): send %s, reply %s from %u "
                    "(%s); wanted %s from %u\n",
                    from, dst, handle, size, kin_err_name(r.send_err),
                    kin_err_name(r.reply_err), r.src, r.text,
                    kin_err_name(want), by);
    assert_int_equal(r.send_err, KIN_OK);
    assert_int_equal(r.reply_err, want);
    assert_int_equal(r.src, by);
    if (want == KIN_OK)
        assert_true(r.body_ok);
}

/* Retries an echo to id until it works: the role's HELLO, the routes above
 * it and its echo receivers are all in place then. */
static bool
wait_echo(proc *p, uint32_t id, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    rt_result r;
    for (;;) {
        roundtrip(fx.master, id, H_ECHO, 8, 1000, &r);
        if (!r.send_err && !r.reply_err && r.body_ok)
            return true;
        if (harness_now_ms() > end || reap(p, 0)) {
            print_error("context %u not reachable: %s (%s)\n", id,
                        kin_err_name(r.send_err ? r.send_err : r.reply_err),
                        r.text);
            return false;
        }
        usleep(5000);
    }
}

static int
teardown_tree(void **state)
{
    int rc = stop_procs();
    kin_node_destroy(&fx.master);
    remove_dir();
    return rc;
}

static int
setup_tree(void **state)
{
    const tree_cfg *cfg = *state;
    memset(&fx, 0, sizeof fx);
    atomic_store(&blocked, 0);
    snprintf(fx.dir, sizeof fx.dir, "/tmp/kin-router-XXXXXX");
    if (!mkdtemp(fx.dir)) {
        fx.dir[0] = 0;
        return -1;
    }
    snprintf(fx.master_ep, sizeof fx.master_ep, "ipc://%s/m.sock", fx.dir);
    snprintf(fx.a_ep, sizeof fx.a_ep, "ipc://%s/a.sock", fx.dir);
    snprintf(fx.a1_ep, sizeof fx.a1_ep, "ipc://%s/a1.sock", fx.dir);
    snprintf(fx.b_ep, sizeof fx.b_ep, "ipc://%s/b.sock", fx.dir);
    kin_node_opts mo = {.bind = fx.master_ep};
    kin_err e = kin_node_new(&fx.master, &mo);
    if (e) {
        print_error("master: %s\n", kin_strerror(e));
        goto fail;
    }
    fx.a = start_role("A", ID_A, KIN_MASTER_ID, fx.master_ep, fx.a_ep,
                      cfg ? cfg->a_max : 0);
    fx.b = start_role("B", ID_B, KIN_MASTER_ID, fx.master_ep, fx.b_ep, 0);
    if (!fx.a || !fx.b || kin_node_wait_child(fx.master, ID_A, 15000) ||
        kin_node_wait_child(fx.master, ID_B, 15000))
        goto fail;
    /* A1 connects to A's ROUTER, bound where the test told A to. */
    fx.a1 = start_role("A1", ID_A1, ID_A, fx.a_ep, fx.a1_ep, 0);
    if (!fx.a1 || !wait_echo(fx.a, ID_A, 15000) ||
        !wait_echo(fx.b, ID_B, 15000) || !wait_echo(fx.a1, ID_A1, 15000))
        goto fail;
    return 0;
fail:
    print_error("tree setup failed\n");
    teardown_tree(state);
    return -1;
}

/* --- helpers for the tests ------------------------------------------------ */

static void
remote_stats(uint32_t id, kin_node_stats *s)
{
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(fx.master, id, "t.stats", 10000, &r, NULL),
                     KIN_OK);
    memset(s, 0, sizeof *s);
    assert_int_equal(kin_msg_unpack(r, "UUUU", &s->forged, &s->malformed,
                                    &s->dead_sent, &s->dropped),
                     KIN_OK);
    kin_msg_destroy(&r);
}

/* Makes context `in` send a message claiming src and auth. */
static void
remote_forge(uint32_t in, uint32_t dst, uint32_t src, uint32_t auth,
             uint32_t handle, unsigned size, uint32_t reply_to)
{
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(fx.master, in, "t.forge", 10000, &r,
                                   "uuuuuu", dst, src, auth, handle, size,
                                   reply_to),
                     KIN_OK);
    int e = -1;
    assert_int_equal(kin_msg_unpack(r, "i", &e), KIN_OK);
    assert_int_equal(e, KIN_OK);
    kin_msg_destroy(&r);
}

/* Makes context `in` send size bytes to dst:handle, no reply wanted. */
static void
remote_send(uint32_t in, uint32_t dst, uint32_t handle, unsigned size)
{
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(fx.master, in, "t.send_to", 10000, &r,
                                   "uuui", dst, handle, size, 0),
                     KIN_OK);
    int send_err = -1;
    assert_int_equal(kin_msg_unpack(r, "i", &send_err), KIN_OK);
    assert_int_equal(send_err, KIN_OK);
    kin_msg_destroy(&r);
}

/* The next message on the master's sink must come from src, len bytes. */
static void
expect_sink(kin_receiver *sink, uint32_t src, size_t len)
{
    kin_msg *m = NULL;
    assert_int_equal(kin_receiver_get(sink, 5000, &m), KIN_OK);
    if (m->src != src || m->len != len)
        print_error("sink got %zu bytes from %u/%u, wanted %zu from %u\n",
                    m->len, m->src, m->auth, len, src);
    assert_int_equal(m->src, src);
    assert_int_equal(m->auth, src);
    assert_int_equal(m->dst, KIN_MASTER_ID);
    assert_int_equal(m->len, len);
    kin_msg_destroy(&m);
}

/* Waits until context id has `count` calls blocked in t.block or
 * t.watch_wait. */
static void
wait_remote_blocked(uint32_t id, int count)
{
    double end = harness_now_ms() + 10000;
    int now = -1;
    while (now != count && harness_now_ms() < end) {
        kin_msg *r = NULL;
        assert_int_equal(
            kin_call_sync(fx.master, id, "t.blocked", 5000, &r, NULL), KIN_OK);
        assert_int_equal(kin_msg_unpack(r, "i", &now), KIN_OK);
        kin_msg_destroy(&r);
        if (now != count)
            usleep(2000);
    }
    assert_int_equal(now, count);
}

static void
send_request(uint32_t dst, uint32_t handle, uint32_t reply_to, size_t size)
{
    kin_msg *m;
    assert_int_equal(kin_msg_new(&m, size), KIN_OK);
    fill(m->body, size);
    m->dst = dst;
    m->handle = handle;
    m->reply_to = reply_to;
    assert_int_equal(kin_node_send(fx.master, &m), KIN_OK);
}

/* --- 1. routing through the tree ------------------------------------------ */

static void
siblings_talk_through_the_tree(void **state)
{
    /* A1 -> A -> master -> B and back, both ways. */
    expect_rt(ID_A1, ID_B, H_ECHO, 64, KIN_OK, ID_B);
    expect_rt(ID_B, ID_A1, H_ECHO, 64, KIN_OK, ID_A1);
    /* One hop up, one hop down, two hops down. */
    expect_rt(ID_A1, ID_A, H_ECHO, 100, KIN_OK, ID_A);
    expect_rt(ID_A, ID_A1, H_ECHO, 100, KIN_OK, ID_A1);
    expect_rt(KIN_MASTER_ID, ID_A1, H_ECHO, 100, KIN_OK, ID_A1);
    /* Bodies cross three links intact, empty and large ones too. */
    expect_rt(ID_A1, ID_B, H_ECHO, 0, KIN_OK, ID_B);
    expect_rt(ID_A1, ID_B, H_ECHO, 256 * 1024, KIN_OK, ID_B);

    /* Calls are routed the same way: the master calls A1, A1 answers. */
    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(fx.master, ID_A1, "t.add", 5000, &r, "II", 40, 2),
        KIN_OK);
    int64_t sum = 0;
    assert_int_equal(kin_msg_unpack(r, "I", &sum), KIN_OK);
    assert_int_equal(sum, 42);
    kin_msg_destroy(&r);
}

static void
select_gathers_replies_from_two_processes(void **state)
{
    kin_receiver *from_a1, *from_b;
    assert_int_equal(
        kin_receiver_new(&from_a1, fx.master, 0, KIN_POLICY_ANY, ID_A1),
        KIN_OK);
    assert_int_equal(
        kin_receiver_new(&from_b, fx.master, 0, KIN_POLICY_ANY, ID_B), KIN_OK);
    kin_select *sel;
    assert_int_equal(kin_select_new(&sel, false), KIN_OK);
    assert_int_equal(kin_select_add(sel, kin_receiver_latch(from_a1),
                                    (void *)(uintptr_t)ID_A1),
                     KIN_OK);
    assert_int_equal(kin_select_add(sel, kin_receiver_latch(from_b),
                                    (void *)(uintptr_t)ID_B),
                     KIN_OK);
    enum { N = 50 };
    for (int i = 0; i < N; i++) {
        send_request(ID_A1, H_ECHO, kin_receiver_handle(from_a1),
                     (size_t)(10 + i));
        send_request(ID_B, H_ECHO, kin_receiver_handle(from_b),
                     (size_t)(10 + i));
    }
    int got_a1 = 0, got_b = 0;
    for (int k = 0; k < 2 * N; k++) {
        kin_msg *m = NULL;
        void *tag = NULL;
        assert_int_equal(kin_select_get(sel, 5000, &m, &tag), KIN_OK);
        assert_int_equal(kin_msg_check_dead(&m), KIN_OK);
        /* Each reply arrives on the receiver of the process it came from. */
        assert_int_equal(m->src, (uint32_t)(uintptr_t)tag);
        assert_true(filled(m->body, m->len));
        if (m->src == ID_A1)
            got_a1++;
        else
            got_b++;
        kin_msg_destroy(&m);
    }
    assert_int_equal(got_a1, N);
    assert_int_equal(got_b, N);
    /* Persistent: both latches stay after yielding. */
    assert_int_equal(kin_select_count(sel), 2);
    send_request(ID_B, H_ECHO, kin_receiver_handle(from_b), 5);
    kin_msg *m = NULL;
    void *tag = NULL;
    assert_int_equal(kin_select_get(sel, 5000, &m, &tag), KIN_OK);
    assert_int_equal((uintptr_t)tag, ID_B);
    kin_msg_destroy(&m);

    /* A1 dying shows up in the same select, on A1's receiver. */
    kill(fx.a1->pid, SIGKILL);
    fx.a1->killed = true;
    assert_int_equal(kin_select_get(sel, 5000, &m, &tag), KIN_OK);
    assert_int_equal((uintptr_t)tag, ID_A1);
    assert_int_equal(kin_msg_check_dead(&m), KIN_EPEERGONE);
    assert_null(m);
    assert_true(reap(fx.a1, 5000));

    kin_select_destroy(&sel);
    kin_receiver_destroy(&from_a1);
    kin_receiver_destroy(&from_b);
}

/* --- 2. the reverse-path check -------------------------------------------- */

static void
forged_src_is_dropped_and_counted(void **state)
{
    kin_receiver *sink;
    assert_int_equal(
        kin_receiver_new(&sink, fx.master, H_SINK, KIN_POLICY_ANY, KIN_NO_CTX),
        KIN_OK);
    kin_node_stats before, after, a_before, a_after;
    kin_node_stats_get(fx.master, &before);

    /* A1's messages reach the master as A1's, through A. */
    remote_send(ID_A1, KIN_MASTER_ID, H_SINK, 16);
    expect_sink(sink, ID_A1, 16);

    /* B claims to be A1. Its honest message sent right after it comes
     * first on the sink: the forged one, ahead of it on the same link,
     * was dropped. */
    remote_forge(ID_B, KIN_MASTER_ID, ID_A1, ID_A1, H_SINK, 17, 0);
    remote_send(ID_B, KIN_MASTER_ID, H_SINK, 18);
    expect_sink(sink, ID_B, 18);
    kin_node_stats_get(fx.master, &after);
    assert_int_equal(after.forged, before.forged + 1);

    /* B sends as itself but with the master's authority. */
    remote_forge(ID_B, KIN_MASTER_ID, ID_B, KIN_MASTER_ID, H_SINK, 19, 0);
    remote_send(ID_B, KIN_MASTER_ID, H_SINK, 20);
    expect_sink(sink, ID_B, 20);
    kin_node_stats_get(fx.master, &after);
    assert_int_equal(after.forged, before.forged + 2);

    /* A1 claims to be B: A, the first router on its way, drops it. */
    remote_stats(ID_A, &a_before);
    remote_forge(ID_A1, KIN_MASTER_ID, ID_B, ID_B, H_SINK, 21, 0);
    remote_send(ID_A1, KIN_MASTER_ID, H_SINK, 22);
    expect_sink(sink, ID_A1, 22);
    remote_stats(ID_A, &a_after);
    assert_int_equal(a_after.forged, a_before.forged + 1);
    kin_node_stats_get(fx.master, &after);
    assert_int_equal(after.forged, before.forged + 2);

    kin_msg *m = NULL;
    assert_int_equal(kin_receiver_get(sink, 0, &m), KIN_ETIMEOUT);
    kin_receiver_destroy(&sink);
}

/* --- 3. a dead subtree ---------------------------------------------------- */

typedef struct waiter {
    const char *what;
    kin_receiver *r;
    bool call;
    kin_err err;
    double woke_ms;
    pthread_t thread;
} waiter;

static void *
waiter_main(void *arg)
{
    waiter *w = arg;
    kin_msg *m = NULL;
    w->err = w->call ? kin_call_wait(w->r, 5000, &m)
                     : kin_receiver_get(w->r, 5000, &m);
    w->woke_ms = harness_now_ms();
    kin_msg_destroy(&m);
    return NULL;
}

static void
killed_subtree_wakes_every_waiter_quickly(void **state)
{
    kin_receiver *on_a, *on_a1, *on_b, *call_a, *call_a1, *call_b;
    assert_int_equal(
        kin_receiver_new(&on_a, fx.master, 0, KIN_POLICY_ANY, ID_A), KIN_OK);
    assert_int_equal(
        kin_receiver_new(&on_a1, fx.master, 0, KIN_POLICY_ANY, ID_A1), KIN_OK);
    assert_int_equal(
        kin_receiver_new(&on_b, fx.master, 0, KIN_POLICY_ANY, ID_B), KIN_OK);
    /* Calls running in A and A1 when A dies. */
    assert_int_equal(kin_call_async(fx.master, ID_A, "t.block", &call_a, NULL),
                     KIN_OK);
    assert_int_equal(
        kin_call_async(fx.master, ID_A1, "t.block", &call_a1, NULL), KIN_OK);
    wait_remote_blocked(ID_A, 1);
    wait_remote_blocked(ID_A1, 1);
    /* B waits on A1 too: the news must cross to a sibling subtree. */
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(fx.master, ID_B, "t.watch", 5000, &r, "u",
                                   (unsigned)ID_A1),
                     KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(
        kin_call_async(fx.master, ID_B, "t.watch_wait", &call_b, "i", 5000),
        KIN_OK);
    wait_remote_blocked(ID_B, 1);

    waiter w[] = {
        {.what = "receiver bound to A", .r = on_a},
        {.what = "receiver bound to A1", .r = on_a1},
        {.what = "call in A", .r = call_a, .call = true},
        {.what = "call in A1", .r = call_a1, .call = true},
    };
    enum { NW = sizeof w / sizeof *w };
    for (int i = 0; i < NW; i++)
        assert_int_equal(pthread_create(&w[i].thread, NULL, waiter_main, &w[i]),
                         0);

    double t0 = harness_now_ms();
    assert_int_equal(kill(fx.a->pid, SIGKILL), 0);
    fx.a->killed = true;
    for (int i = 0; i < NW; i++)
        pthread_join(w[i].thread, NULL);
    double worst = 0;
    for (int i = 0; i < NW; i++) {
        double dt = w[i].woke_ms - t0;
        print_message("%-22s %-14s after %5.1f ms\n", w[i].what,
                      kin_err_name(w[i].err), dt);
        assert_int_equal(w[i].err, KIN_EPEERGONE);
        worst = dt > worst ? dt : worst;
    }
    /* B's receiver, in another process, woke as quickly (one clock). */
    assert_int_equal(kin_call_wait(call_b, 5000, &r), KIN_OK);
    int b_err = 0;
    double b_woke = 0;
    assert_int_equal(kin_msg_unpack(r, "id", &b_err, &b_woke), KIN_OK);
    kin_msg_destroy(&r);
    print_message("%-22s %-14s after %5.1f ms\n", "receiver in B on A1",
                  kin_err_name(b_err), b_woke - t0);
    assert_int_equal(b_err, KIN_EPEERGONE);
    worst = b_woke - t0 > worst ? b_woke - t0 : worst;
    assert_true(worst < 100.0);

    assert_true(reap(fx.a, 5000));
    assert_true(WIFSIGNALED(fx.a->status) && WTERMSIG(fx.a->status) == SIGKILL);
    /* Nothing for receivers bound to B, which lives on. */
    kin_msg *m = NULL;
    assert_int_equal(kin_receiver_get(on_b, 0, &m), KIN_ETIMEOUT);
    expect_rt(KIN_MASTER_ID, ID_B, H_ECHO, 32, KIN_OK, ID_B);
    /* A1 is unreachable now, from the master and from B. */
    expect_rt(KIN_MASTER_ID, ID_A1, H_ECHO, 32, KIN_ENOROUTE, KIN_MASTER_ID);
    expect_rt(ID_B, ID_A1, H_ECHO, 32, KIN_ENOROUTE, KIN_MASTER_ID);
    expect_rt(ID_B, ID_A, H_ECHO, 32, KIN_ENOROUTE, KIN_MASTER_ID);
    assert_int_equal(
        kin_call_sync(fx.master, ID_A1, "t.add", 5000, &r, "II", 1, 2),
        KIN_ENOROUTE);

    kin_receiver_destroy(&on_a);
    kin_receiver_destroy(&on_a1);
    kin_receiver_destroy(&on_b);
    kin_receiver_destroy(&call_a);
    kin_receiver_destroy(&call_a1);
    kin_receiver_destroy(&call_b);
}

/* --- 4. refusals get the specific dead reply ------------------------------ */

static void
refusals_are_specific_and_harmless(void **state)
{
    /* Unknown handle: answered by the context that lacks it. */
    expect_rt(ID_A1, ID_B, H_NONE, 10, KIN_ENOHANDLE, ID_B);
    expect_rt(KIN_MASTER_ID, ID_A1, H_NONE, 10, KIN_ENOHANDLE, ID_A1);

    /* PARENT: ancestors only. */
    expect_rt(KIN_MASTER_ID, ID_B, H_ECHO_PARENT, 10, KIN_OK, ID_B);
    expect_rt(KIN_MASTER_ID, ID_A1, H_ECHO_PARENT, 10, KIN_OK, ID_A1);
    expect_rt(ID_A, ID_A1, H_ECHO_PARENT, 10, KIN_OK, ID_A1);
    expect_rt(ID_A1, ID_B, H_ECHO_PARENT, 10, KIN_EREFUSED, ID_B);
    expect_rt(ID_A1, ID_A, H_ECHO_PARENT, 10, KIN_EREFUSED, ID_A);
    /* CHILD: immediate children only. */
    expect_rt(ID_A1, ID_A, H_ECHO_CHILD, 10, KIN_OK, ID_A);
    expect_rt(KIN_MASTER_ID, ID_B, H_ECHO_CHILD, 10, KIN_EREFUSED, ID_B);
    expect_rt(ID_B, ID_A, H_ECHO_CHILD, 10, KIN_EREFUSED, ID_A);
    expect_rt(KIN_MASTER_ID, ID_A1, H_ECHO_CHILD, 10, KIN_EREFUSED, ID_A1);

    /* Too big for A (4 KiB limit), from its child, from above on the way
     * to A1, and from a sibling subtree; the limit itself passes. */
    expect_rt(ID_A1, ID_A, H_ECHO, SMALL_MAX + 1, KIN_ETOOBIG, ID_A);
    expect_rt(KIN_MASTER_ID, ID_A1, H_ECHO, 5000, KIN_ETOOBIG, ID_A);
    expect_rt(ID_B, ID_A, H_ECHO, 5000, KIN_ETOOBIG, ID_A);
    expect_rt(ID_A1, ID_A, H_ECHO, SMALL_MAX, KIN_OK, ID_A);
    expect_rt(KIN_MASTER_ID, ID_A1, H_ECHO, SMALL_MAX, KIN_OK, ID_A1);
    /* A's own oversized send fails at once, before any routing. */
    rt_result r;
    rt(ID_A, ID_B, H_ECHO, 5000, &r);
    assert_int_equal(r.send_err, KIN_ETOOBIG);

    /* An oversized message forged by A1 in B's name gets no dead reply
     * sent to B: A checks where it came from first. */
    kin_node_stats a_before, a_after;
    remote_stats(ID_A, &a_before);
    kin_msg *m = NULL;
    assert_int_equal(kin_call_sync(fx.master, ID_B, "t.watch", 5000, &m, "u",
                                   (unsigned)KIN_NO_CTX),
                     KIN_OK);
    unsigned b_handle = 0;
    assert_int_equal(kin_msg_unpack(m, "u", &b_handle), KIN_OK);
    kin_msg_destroy(&m);
    remote_forge(ID_A1, ID_A, ID_B, ID_B, H_ECHO, 5000, b_handle);
    double end = harness_now_ms() + 5000;
    do {
        remote_stats(ID_A, &a_after);
    } while (a_after.forged == a_before.forged && harness_now_ms() < end);
    assert_int_equal(a_after.forged, a_before.forged + 1);
    /* A dead reply from A would have reached B ahead of this echo. */
    expect_rt(ID_A, ID_B, H_ECHO, 10, KIN_OK, ID_B);
    assert_int_equal(
        kin_call_sync(fx.master, ID_B, "t.watch_wait", 5000, &m, "i", 0),
        KIN_OK);
    int b_err = 0;
    double woke;
    assert_int_equal(kin_msg_unpack(m, "id", &b_err, &woke), KIN_OK);
    kin_msg_destroy(&m);
    assert_int_equal(b_err, KIN_ETIMEOUT);

    /* Every router on the way still serves ordinary traffic. */
    expect_rt(ID_A1, ID_B, H_ECHO, 64, KIN_OK, ID_B);
    expect_rt(ID_B, ID_A1, H_ECHO, 64, KIN_OK, ID_A1);
    expect_rt(KIN_MASTER_ID, ID_A, H_ECHO, 64, KIN_OK, ID_A);
}

/* --- 5. garbage on the master's ROUTER ------------------------------------ */

typedef struct part {
    const void *p;
    size_t len;
} part;

static void
send_parts(void *s, const part *parts, int count)
{
    for (int i = 0; i < count; i++)
        assert_true(zmq_send(s, parts[i].p, parts[i].len,
                             i + 1 < count ? ZMQ_SNDMORE : 0) >= 0);
}

static void *
raw_dealer(void *z, const void *rid, size_t rid_len)
{
    void *s = zmq_socket(z, ZMQ_DEALER);
    assert_non_null(s);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (rid)
        zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, rid_len);
    assert_int_equal(zmq_connect(s, kin_node_endpoint(fx.master)), 0);
    return s;
}

static void
header(uint8_t out[KIN_HDR_SIZE], uint32_t dst, uint32_t src, uint32_t auth,
       uint32_t handle)
{
    kin_msg m = {.dst = dst, .src = src, .auth = auth, .handle = handle};
    kin__msg_header_encode(&m, out);
}

static uint32_t rng = 0x2545F491u;

static uint32_t
rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* One message the router must count as malformed, of a random kind. */
static void
send_garbage(void *s)
{
    uint8_t junk[64], body[64], h[KIN_HDR_SIZE];
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (uint8_t)rnd();
        body[i] = (uint8_t)rnd();
    }
    size_t len = rnd() % sizeof junk, body_len = rnd() % sizeof body;
    header(h, KIN_MASTER_ID, rnd(), rnd(), rnd());
    switch (rnd() % 5) {
    case 0: /* random bytes, one frame */
        send_parts(s, (part[]){{junk, len}}, 1);
        break;
    case 1: /* a header that is not ours (magic's first byte wrong) */
        junk[0] = 0;
        send_parts(s, (part[]){{junk, len}, {body, body_len}}, 2);
        break;
    case 2: /* a header cut short */
        send_parts(s, (part[]){{h, rnd() % KIN_HDR_SIZE}, {body, body_len}}, 2);
        break;
    case 3: /* an unknown version or unknown flags */
        if (rnd() % 2)
            h[2] = (uint8_t)(2 + rnd() % 250);
        else
            h[3] |= 0x80;
        send_parts(s, (part[]){{h, sizeof h}, {body, body_len}}, 2);
        break;
    default: /* 1 or 3 to 6 frames */ {
        int frames = rnd() % 2 ? 1 : 3 + (int)(rnd() % 4);
        part p[6];
        p[0] = (part){h, sizeof h};
        for (int i = 1; i < frames; i++)
            p[i] = (part){body, body_len};
        send_parts(s, p, frames);
        break;
    }
    }
}

static void
garbage_does_not_crash_or_stall_the_master(void **state)
{
    kin_receiver *sink;
    assert_int_equal(
        kin_receiver_new(&sink, fx.master, H_SINK, KIN_POLICY_ANY, KIN_NO_CTX),
        KIN_OK);
    kin_node_stats before, after;
    kin_node_stats_get(fx.master, &before);
    void *z = zmq_ctx_new();
    assert_non_null(z);
    const uint8_t garb_id[4] = {'G', 'A', 'R', 'B'};
    uint32_t garb = 'G' | 'A' << 8 | 'R' << 16 | (uint32_t)'B' << 24;
    const uint8_t a1_id[4] = {ID_A1, 0, 0, 0}, a_id[4] = {ID_A, 0, 0, 0};
    const uint8_t master_id[4] = {0, 0, 0, 0};
    void *g = raw_dealer(z, garb_id, sizeof garb_id);
    void *anon = raw_dealer(z, NULL, 0);
    void *as_a1 = raw_dealer(z, a1_id, sizeof a1_id);
    void *as_a = raw_dealer(z, a_id, sizeof a_id);
    void *as_master = raw_dealer(z, master_id, sizeof master_id);

    uint8_t h[KIN_HDR_SIZE], h30[30], body[8] = "garbage";
    int malformed = 0, forged = 0;
    /* Malformed, one kind at a time. */
    send_parts(g, (part[]){{"\x01\x02\x03", 3}}, 1);
    header(h, KIN_MASTER_ID, garb, garb, H_SINK);
    h[0] ^= 0xFF;
    send_parts(g, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    header(h, KIN_MASTER_ID, garb, garb, H_SINK);
    h[2] = 7;
    send_parts(g, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    header(h, KIN_MASTER_ID, garb, garb, H_SINK);
    send_parts(g, (part[]){{h, 10}, {body, sizeof body}}, 2);
    memset(h30, 0, sizeof h30);
    memcpy(h30, h, sizeof h);
    send_parts(g, (part[]){{h30, sizeof h30}, {body, sizeof body}}, 2);
    h[3] = 0x40;
    send_parts(g, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    header(h, KIN_MASTER_ID, garb, garb, H_SINK);
    send_parts(g, (part[]){{h, sizeof h}}, 1);
    send_parts(
        g, (part[]){{h, sizeof h}, {body, 1}, {body, 2}, {body, 3}, {body, 4}},
        5);
    send_parts(g, (part[]){{NULL, 0}}, 1);
    /* A well-formed message, but the routing id is not a context id. */
    send_parts(anon, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    malformed += 10;

    /* Forged: HELLOs claiming another id, or an id that lives elsewhere
     * in the tree, or the master's own; messages from links that never
     * said HELLO. */
    header(h, KIN_MASTER_ID, ID_B, ID_B, KIN_HANDLE_HELLO);
    send_parts(g, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    header(h, KIN_MASTER_ID, garb, garb, H_SINK);
    send_parts(g, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    header(h, KIN_MASTER_ID, ID_B, ID_B, H_SINK);
    send_parts(g, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    header(h, KIN_MASTER_ID, ID_A1, ID_A1, KIN_HANDLE_HELLO);
    send_parts(as_a1, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    header(h, KIN_MASTER_ID, KIN_MASTER_ID, KIN_MASTER_ID, KIN_HANDLE_HELLO);
    send_parts(as_master, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    header(h, KIN_MASTER_ID, KIN_MASTER_ID, KIN_MASTER_ID, H_SINK);
    send_parts(as_master, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);
    forged += 6;
    /* A second connection with live child A's routing id: ZMQ ignores it
     * (no handover), so it must not take A's place. */
    header(h, KIN_MASTER_ID, ID_A, ID_A, KIN_HANDLE_HELLO);
    send_parts(as_a, (part[]){{h, sizeof h}, {body, sizeof body}}, 2);

    /* The flood, with a real round trip through it. */
    for (int i = 0; i < 1000; i++)
        send_garbage(g);
    malformed += 1000;
    double t0 = harness_now_ms();
    expect_rt(KIN_MASTER_ID, ID_A1, H_ECHO, 64, KIN_OK, ID_A1);
    double dt = harness_now_ms() - t0;
    print_message("echo to A1 during the flood: %.1f ms\n", dt);
    assert_true(dt < 2000.0);

    double end = harness_now_ms() + 10000;
    do {
        kin_node_stats_get(fx.master, &after);
        if (after.malformed - before.malformed >= (uint64_t)malformed &&
            after.forged - before.forged >= (uint64_t)forged)
            break;
        usleep(2000);
    } while (harness_now_ms() < end);
    print_message("malformed +%llu, forged +%llu\n",
                  (unsigned long long)(after.malformed - before.malformed),
                  (unsigned long long)(after.forged - before.forged));
    assert_int_equal(after.malformed - before.malformed, malformed);
    assert_int_equal(after.forged - before.forged, forged);
    kin_msg *m = NULL;
    assert_int_equal(kin_receiver_get(sink, 0, &m), KIN_ETIMEOUT);

    zmq_close(g);
    zmq_close(anon);
    zmq_close(as_a1);
    zmq_close(as_a);
    zmq_close(as_master);
    zmq_ctx_term(z);

    /* The tree is intact: A1 still routed via A, B still answers calls. */
    t0 = harness_now_ms();
    expect_rt(KIN_MASTER_ID, ID_A1, H_ECHO, 64, KIN_OK, ID_A1);
    expect_rt(ID_A1, ID_B, H_ECHO, 64, KIN_OK, ID_B);
    kin_msg *r = NULL;
    assert_int_equal(
        kin_call_sync(fx.master, ID_B, "t.add", 5000, &r, "II", 1, 2), KIN_OK);
    kin_msg_destroy(&r);
    assert_true(harness_now_ms() - t0 < 2000.0);
    kin_receiver_destroy(&sink);
}

/* --- 6. shutdown with work in flight -------------------------------------- */

static char
proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
}

static void
destroy_with_work_in_flight_is_bounded(void **state)
{
    /* Eight calls from A1 into the master's four workers: four run and
     * block, four wait in the queue. */
    kin_msg *r = NULL;
    assert_int_equal(kin_call_sync(fx.master, ID_A1, "t.call_nowait", 5000, &r,
                                   "usu", (unsigned)KIN_MASTER_ID, "t.block",
                                   8u),
                     KIN_OK);
    kin_msg_destroy(&r);
    double end = harness_now_ms() + 10000;
    while (atomic_load(&blocked) < 4 && harness_now_ms() < end)
        usleep(2000);
    assert_int_equal(atomic_load(&blocked), 4);

    /* B stops reading: what is sent to it piles up. */
    assert_int_equal(kill(fx.b->pid, SIGSTOP), 0);
    end = harness_now_ms() + 5000;
    while (proc_state(fx.b->pid) != 'T' && harness_now_ms() < end)
        usleep(2000);
    assert_int_equal(proc_state(fx.b->pid), 'T');
    for (int i = 0; i < 10000; i++) {
        send_request(ID_B, H_ECHO, H_NONE, 1024);
        send_request(ID_NOWHERE, H_ECHO, H_NONE, 64);
    }

    double t0 = harness_now_ms();
    kin_node_destroy(&fx.master);
    double dt = harness_now_ms() - t0;
    print_message("kin_node_destroy with work in flight: %.1f ms\n", dt);
    assert_null(fx.master);
    assert_true(dt < 3000.0);
    /* No call is left running. */
    assert_int_equal(atomic_load(&blocked), 0);
}

/* More masters in one process than any fixed table would hold: each gets a
 * socket of its own in the runtime directory (the kin command finds them
 * there), and destroying them removes every one. */
#define MANY_NODES 70

static void
many_masters_get_distinct_sockets_and_remove_them(void **state)
{
    (void)state;
    kin_node *nodes[MANY_NODES] = {0};
    char paths[MANY_NODES][200];
    for (int i = 0; i < MANY_NODES; i++) {
        kin_node_opts o = {.name = "many"};
        kin_err e = kin_node_new(&nodes[i], &o);
        if (e) {
            for (int j = 0; j < i; j++)
                kin_node_destroy(&nodes[j]);
            fail_msg("node %d: %s", i, kin_strerror(e));
        }
        const char *ep = kin_node_endpoint(nodes[i]);
        assert_non_null(ep);
        assert_int_equal(strncmp(ep, "ipc://", 6), 0);
        snprintf(paths[i], sizeof paths[i], "%s", ep + 6);
    }
    int clashes = 0, missing = 0;
    for (int i = 0; i < MANY_NODES; i++) {
        missing += access(paths[i], F_OK) != 0;
        for (int j = 0; j < i; j++)
            clashes += !strcmp(paths[i], paths[j]);
    }
    for (int i = 0; i < MANY_NODES; i++)
        kin_node_destroy(&nodes[i]);
    int left = 0;
    for (int i = 0; i < MANY_NODES; i++)
        left += access(paths[i], F_OK) == 0;
    assert_int_equal(clashes, 0);
    assert_int_equal(missing, 0);
    assert_int_equal(left, 0);
}

/* Holds the thread that logs a diagnostic containing hold_on until
 * released, at most 2 s: what a loaded machine does to a broker at the
 * worst moment. */
static atomic_int holding, release_hold;
static char hold_on[64];

static void
hold_where_logged(kin_log_level level, const char *file, int line,
                  const char *msg, void *arg)
{
    (void)level, (void)file, (void)line, (void)arg;
    if (!strstr(msg, hold_on))
        return;
    atomic_store(&holding, 1);
    double end = harness_now_ms() + 2000;
    while (!atomic_load(&release_hold) && harness_now_ms() < end)
        poll(NULL, 0, 1);
    atomic_store(&holding, 0);
}

/* Connects to the unix socket at path and closes at once, never speaking
 * (kin's own command probes a context's socket that way before it
 * attaches). */
static void
silent_connection(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
}

typedef struct attach_job {
    const char *ep;
    uint32_t id;
    kin_node *op;
    kin_err e;
} attach_job;

static void *
attach_thread(void *arg)
{
    attach_job *j = arg;
    kin_node_opts o = {.name = "op",
                       .parent_endpoint = j->ep,
                       .parent_id = KIN_MASTER_ID,
                       .id = j->id,
                       .operator_link = true,
                       .workers = 1,
                       .connect_timeout_ms = 10000};
    j->e = kin_node_new(&j->op, &o);
    return NULL;
}

/* Waits (bounded) until the master's broker is held. */
static void
wait_held(void)
{
    double end = harness_now_ms() + 5000;
    while (!atomic_load(&holding) && harness_now_ms() < end)
        poll(NULL, 0, 1);
    assert_int_equal(atomic_load(&holding), 1);
}

/* With the master's broker held: attaches an operator with id on a
 * thread, gives it time to connect and send its HELLO, releases the
 * broker and returns the operator once attached (the caller destroys
 * it), after asking the master for its info: whether it answered. */
static bool
attach_while_held(const char *ep, uint32_t id, int round, kin_node **op)
{
    attach_job j = {.ep = ep, .id = id};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, attach_thread, &j), 0);
    poll(NULL, 0, 100); /* connected, its HELLO sent */
    atomic_store(&release_hold, 1);
    pthread_join(t, NULL);
    assert_int_equal(j.e, KIN_OK);
    *op = j.op;
    kin_ctx_info info;
    kin_err e = kin_monitor_info(j.op, KIN_MASTER_ID, 3000, &info);
    if (e)
        print_error("round %d: the master does not answer: %s\n", round,
                    kin_strerror(e));
    return !e;
}

/* A connection that never spoke closes, and an operator's connection
 * gets its descriptor number; the master reads the operator's HELLO
 * before it has seen the silent one close (its broker held up meanwhile
 * in the middle of reading its ROUTER, as under load). The operator stays
 * linked: the master answers it. The broker is held where it drops a
 * message a third operator forged. */
#define SILENT_ROUNDS 10
static void
a_link_on_a_silent_connections_number_stays(void **state)
{
    (void)state;
    kin_node *m = NULL, *hook = NULL;
    assert_int_equal(kin_node_new(&m, NULL), KIN_OK);
    const char *ep = kin_node_endpoint(m);
    assert_int_equal(strncmp(ep, "ipc://", 6), 0);
    attach_job h = {.ep = ep,
                    .id = kin_monitor_operator_id((int)getpid(), 254)};
    attach_thread(&h);
    assert_int_equal(h.e, KIN_OK);
    hook = h.op;
    snprintf(hold_on, sizeof hold_on, "from link %u", h.id);
    int answered = 0;
    for (int round = 0; round < SILENT_ROUNDS; round++) {
        atomic_store(&release_hold, 0);
        kin_diag_set_handler(hold_where_logged, NULL, KIN_LOG_DEBUG);
        kin_msg *f = NULL;
        assert_int_equal(kin_msg_new(&f, 1), KIN_OK);
        f->dst = KIN_MASTER_ID;
        f->src = f->auth = 0x7ffffff0u; /* not behind the hook's link */
        f->handle = 77;
        assert_int_equal(kin__node_send_raw(hook, &f), KIN_OK);
        wait_held();
        silent_connection(ep + 6);
        poll(NULL, 0, 20); /* closed at the master: its number free */
        kin_node *op = NULL;
        answered += attach_while_held(
            ep, kin_monitor_operator_id((int)getpid(), (unsigned)round), round,
            &op);
        kin_diag_set_handler(NULL, NULL, KIN_LOG_WARNING);
        harness_log_setup();
        kin_node_destroy(&op);
    }
    kin_node_destroy(&hook);
    kin_node_destroy(&m);
    assert_int_equal(answered, SILENT_ROUNDS);
}

/* Holds the broker thread it is deferred to, as hold_where_logged does. */
static void
hold_deferred(void *arg, void *data)
{
    (void)arg, (void)data;
    hold_where_logged(KIN_LOG_DEBUG, NULL, 0, hold_on, NULL);
}

/* An operator detaches, and the next one's connection gets its descriptor
 * number while the master's broker is held; released, the broker handles
 * the first one's disconnect and, reading what that link sent last, finds
 * the new one's HELLO there. Only the link that went goes: the new
 * operator stays linked, and the master answers it. */
#define TAKEN_ROUNDS 10
static void
a_link_that_takes_a_closing_links_number_stays(void **state)
{
    (void)state;
    kin_node *m = NULL;
    assert_int_equal(kin_node_new(&m, NULL), KIN_OK);
    const char *ep = kin_node_endpoint(m);
    snprintf(hold_on, sizeof hold_on, "held");
    int answered = 0;
    for (int round = 0; round < TAKEN_ROUNDS; round++) {
        attach_job first = {
            .ep = ep,
            .id = kin_monitor_operator_id((int)getpid(), (unsigned)round)};
        attach_thread(&first);
        assert_int_equal(first.e, KIN_OK);
        kin_node_destroy(&first.op);
        atomic_store(&release_hold, 0);
        assert_int_equal(
            kin__broker_defer(kin__node_broker(m), hold_deferred, NULL, NULL),
            KIN_OK);
        wait_held();
        kin_node *op = NULL;
        answered += attach_while_held(
            ep, kin_monitor_operator_id((int)getpid(), (unsigned)round + 100),
            round, &op);
        kin_node_destroy(&op);
    }
    kin_node_destroy(&m);
    assert_int_equal(answered, TAKEN_ROUNDS);
}

int
main(int argc, char **argv)
{
    export_all();
    harness_log_setup();
    if (argc == 3 && !strcmp(argv[1], "--role"))
        return role_main(argv[2]);
    atexit(kill_all);

    static tree_cfg plain = {0}, small_a = {.a_max = SMALL_MAX};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(
            siblings_talk_through_the_tree, setup_tree, teardown_tree, &plain),
        cmocka_unit_test_prestate_setup_teardown(
            select_gathers_replies_from_two_processes, setup_tree,
            teardown_tree, &plain),
        cmocka_unit_test_prestate_setup_teardown(
            forged_src_is_dropped_and_counted, setup_tree, teardown_tree,
            &plain),
        cmocka_unit_test_prestate_setup_teardown(
            killed_subtree_wakes_every_waiter_quickly, setup_tree,
            teardown_tree, &plain),
        cmocka_unit_test_prestate_setup_teardown(
            refusals_are_specific_and_harmless, setup_tree, teardown_tree,
            &small_a),
        cmocka_unit_test_prestate_setup_teardown(
            garbage_does_not_crash_or_stall_the_master, setup_tree,
            teardown_tree, &plain),
        cmocka_unit_test_prestate_setup_teardown(
            destroy_with_work_in_flight_is_bounded, setup_tree, teardown_tree,
            &plain),
        cmocka_unit_test(many_masters_get_distinct_sockets_and_remove_them),
        cmocka_unit_test(a_link_on_a_silent_connections_number_stays),
        cmocka_unit_test(a_link_that_takes_a_closing_links_number_stays),
    };
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    return harness_run_group(tests);
}
