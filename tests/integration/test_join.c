/* Joining a running tree from outside, with real processes that the test
 * starts itself (join_peer, never kin_spawn): a joiner offers a service
 * the master calls, shows in `kin tree` as joined, its name is checked,
 * its service goes the moment it is killed, and it comes back by itself
 * to a master restarted at the same endpoint. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "integration/cut_proxy.h"
#include "integration/harness.h"

/* --- peers: processes started here, always reaped -------------------------
 */

typedef struct peer {
    pid_t pid;
    int in;  /* its stdin: closing it ends the peer */
    int out; /* its stdout */
    char line[512];
} peer;

#define PEERS_MAX 8
/* How long a wait for something to arrive (an offer, a name, a name's
 * going) may take before the test fails: generous, as on a loaded machine
 * (two test_joins beside two busy loops on 2 CPUs) 5 s ran out now and
 * then; a passing run waits only as long as the thing takes. */
#define ARRIVE_MS 20000
/* The peers started and not stopped yet, for teardown to stop after a
 * failed test: each peer a test starts must be static, as a failed
 * assertion leaves the test function's frame and teardown's own frame
 * takes its place (a peer there reads as a garbage pid to SIGKILL and
 * garbage descriptors to close, maybe the master's libzmq ones). */
static peer *live[PEERS_MAX];
static char dir[64]; /* holds the join sockets */
/* The test's own nodes (masters, and itself as a joiner): destroyed by
 * teardown when a test fails before it destroys them. */
static kin_node *m, *m2, *me;
static char rundir[256];          /* $XDG_RUNTIME_DIR/kin */
static void proxy_stop_all(void); /* stops the test's tcp proxy, if any */
static void held_close(void);     /* closes the raw JOIN socket, if open */

/* Starts join_peer with its arguments (up to 5, NULL after the last);
 * its first line is in p->line (or "" when it said nothing within
 * ARRIVE_MS). */
static void
peer_startv(peer *p, const char *a1, const char *a2, const char *a3,
            const char *a4, const char *a5)
{
    int in[2], out[2];
    /* Close-on-exec: a peer started later (a second master) must not hold
     * this one's stdin open, or closing it would not end this one. */
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (!p->pid) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        char *args[] = {"join_peer", (char *)a1, (char *)a2, (char *)a3,
                        (char *)a4,  (char *)a5, NULL};
        execv(JOIN_PEER, args);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->in = in[1];
    p->out = out[0];
    for (int i = 0; i < PEERS_MAX; i++)
        if (!live[i]) {
            live[i] = p;
            break;
        }
    size_t len = 0;
    double end = harness_now_ms() + ARRIVE_MS;
    p->line[0] = 0;
    while (len + 1 < sizeof p->line && harness_now_ms() < end) {
        struct pollfd pf = {.fd = p->out, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t got = read(p->out, p->line + len, 1);
        if (got <= 0 || p->line[len] == '\n')
            break;
        len++;
    }
    p->line[len] = 0;
}

static void
peer_start(peer *p, const char *a1, const char *a2, const char *a3)
{
    peer_startv(p, a1, a2, a3, NULL, NULL);
}

/* Removes the sockets a SIGKILLed process left in the runtime dir. */
static void
sweep_sockets(pid_t pid)
{
    char prefix[32];
    int plen = snprintf(prefix, sizeof prefix, "%d-", (int)pid);
    DIR *d = opendir(rundir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strncmp(de->d_name, prefix, (size_t)plen))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", rundir, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
}

/* Ends p: SIGKILL when kill, else closes its stdin (it destroys its node
 * and exits); reaped either way (SIGKILL after 10 s). Returns its wait
 * status. */
static int
peer_stop(peer *p, bool kill_it)
{
    if (!p->pid)
        return 0;
    if (kill_it)
        kill(p->pid, SIGKILL);
    close(p->in);
    int st = 0;
    double end = harness_now_ms() + 10000;
    while (waitpid(p->pid, &st, WNOHANG) == 0) {
        if (harness_now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            break;
        }
        poll(NULL, 0, 10);
    }
    close(p->out);
    if (kill_it || !WIFEXITED(st))
        sweep_sockets(p->pid);
    for (int i = 0; i < PEERS_MAX; i++)
        if (live[i] == p)
            live[i] = NULL;
    p->pid = 0;
    return st;
}

static uint32_t
joined_id(const peer *p)
{
    unsigned id = 0;
    if (sscanf(p->line, "joined %u", &id) != 1)
        fprintf(stderr, "join_peer said: '%s'\n", p->line);
    assert_int_equal(sscanf(p->line, "joined %u", &id), 1);
    return id;
}

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kin-join-XXXXXX");
    assert_non_null(mkdtemp(dir));
    /* Where kin puts its sockets (kin/node.h): $XDG_RUNTIME_DIR/kin, or
     * /tmp/kin-UID without XDG_RUNTIME_DIR (as in CI). */
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && *xdg)
        snprintf(rundir, sizeof rundir, "%s/kin", xdg);
    else
        snprintf(rundir, sizeof rundir, "/tmp/kin-%u", (unsigned)getuid());
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    /* Told to end (SIGKILL after 10 s): a peer's children end with it,
     * and their sockets go with them. */
    for (int i = 0; i < PEERS_MAX; i++)
        if (live[i])
            peer_stop(live[i], false);
    /* Everything a test may leave, even when it failed half-way. */
    kin_node_destroy(&me);
    kin_node_destroy(&m2);
    kin_node_destroy(&m);
    proxy_stop_all();
    kin_diag_set_handler(NULL, NULL, KIN_LOG_WARNING); /* count_refusals */
    held_close();
    harness_log_setup();
    char path[128];
    const char *names[] = {"tree.sock",     "none.sock",    "master",
                           "master_secret", "alpha",        "alpha_secret",
                           "rogue",         "rogue_secret", "allowed/alpha",
                           "allowed/rogue"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/allowed", dir);
    rmdir(path);
    rmdir(dir);
    return 0;
}

static void
endpoint(char *out, size_t size)
{
    snprintf(out, size, "ipc://%s/tree.sock", dir);
}

/* Waits until no live context is named name (at the master). */
static bool
name_gone(kin_node *n, const char *name, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    uint32_t id;
    while (kin_node_lookup(n, name, &id, 0) == KIN_OK)
        if (harness_now_ms() > end)
            return false;
        else
            poll(NULL, 0, 5);
    return true;
}

/* kin_node_lookup that says on stderr what it got, and after how long,
 * when it fails: KIN_ETIMEOUT (its wait plus 5 s) means no answer at all
 * (the master dropped the lookup: the asker not linked there), -ENOENT
 * that no context had the name by the end of the wait. */
static kin_err
lookup_said(kin_node *n, const char *name, uint32_t *id, int wait_ms)
{
    double t0 = harness_now_ms();
    kin_err e = kin_node_lookup(n, name, id, wait_ms);
    if (e)
        fprintf(stderr, "lookup of '%s' (wait %d ms): %s after %.0f ms\n", name,
                wait_ms, kin_strerror(e), harness_now_ms() - t0);
    return e;
}

/* Calls fn as a service, again while it has no provider yet (a joiner's
 * offer reaches the master a moment after its kin_service_offer
 * returned), for up to timeout_ms. */
static kin_err
call_when_offered(kin_node *n, const char *fn, int timeout_ms, kin_msg **r)
{
    double end = harness_now_ms() + timeout_ms;
    kin_err e;
    while ((e = kin_service_call(n, fn, 2000, r, "")) && harness_now_ms() < end)
        poll(NULL, 0, 10);
    return e;
}

/* Waits up to 10 s for a record in `kin logs` at the master of process
 * pid (the real log path, as an operator reads it) holding each of the
 * strings after pid (NULL after the last). On failure, prints the log. */
static bool
logged(pid_t pid, ...)
{
    const char *want[12];
    int count = 0;
    va_list ap;
    va_start(ap, pid);
    for (const char *w; count < 12 && (w = va_arg(ap, const char *));)
        want[count++] = w;
    va_end(ap);
    double end = harness_now_ms() + 10000;
    char *out = NULL;
    for (;;) {
        int st;
        free(out);
        out = harness_run(&st, "%s logs %d -n all --json", KIN_CLI, (int)pid);
        char *save = NULL;
        for (char *l = strtok_r(out, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save)) {
            int i = 0;
            while (i < count && strstr(l, want[i]))
                i++;
            if (i == count) {
                free(out);
                return true;
            }
        }
        if (harness_now_ms() > end)
            break;
        poll(NULL, 0, 50);
    }
    free(out);
    int st;
    out = harness_run(&st, "%s logs %d -n all --json", KIN_CLI, (int)pid);
    fprintf(stderr, "no record with");
    for (int i = 0; i < count; i++)
        fprintf(stderr, " %s", want[i]);
    fprintf(stderr, " in:\n%s", out);
    free(out);
    return false;
}

/* "\"key\":value" for a record's field. */
static const char *
field_u(char *buf, size_t size, const char *key, unsigned long v)
{
    snprintf(buf, size, "\"%s\":%lu", key, v);
    return buf;
}

static const char *
field_s(char *buf, size_t size, const char *key, const char *v)
{
    snprintf(buf, size, "\"%s\":\"%s\"", key, v);
    return buf;
}

/* --- tests -----------------------------------------------------------------
 */

/* A joiner offers a service the master calls, shows in `kin tree` as
 * joined; killed, its service is gone at once. */
static void
joiner_serves_and_goes(void **state)
{
    (void)state;
    char ep[128];
    endpoint(ep, sizeof ep);
    kin_node_opts o = {.join_bind = ep};
    assert_int_equal(kin_node_new(&m, &o), KIN_OK);

    static peer a; /* static: teardown stops it after a failure */
    peer_start(&a, "joiner", ep, "alpha");
    uint32_t id = joined_id(&a);
    assert_true(id >= 0x40000000u);

    kin_msg *r = NULL;
    int pid = 0;
    assert_int_equal(call_when_offered(m, "peer.pid", ARRIVE_MS, &r), KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "i", &pid), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(pid, a.pid);
    /* Known now: each call answered at the first try. A master that
     * accepts joins sends nothing to a joiner from its caller's thread:
     * the caller's entry of the call is undone and the broker sends it. */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(kin_service_call(m, "peer.pid", 5000, &r, ""), KIN_OK);
        kin_msg_destroy(&r);
    }

    kin_ctx_info info;
    assert_int_equal(kin_monitor_info(m, id, 5000, &info), KIN_OK);
    assert_true(info.joined);
    assert_string_equal(info.name, "alpha");
    assert_int_equal(info.parent, KIN_MASTER_ID);
    assert_int_equal(info.pid, a.pid);
    uint32_t found = 0;
    assert_int_equal(kin_node_lookup(m, "alpha", &found, 0), KIN_OK);
    assert_int_equal(found, id);

    int st;
    char *out = harness_run(&st, "%s tree %d", KIN_CLI, (int)getpid());
    char want[64];
    snprintf(want, sizeof want, "%u alpha (joined)", id);
    if (!strstr(out, want))
        fprintf(stderr, "kin tree said:\n%s", out);
    assert_non_null(strstr(out, want));
    free(out);

    /* kin ps marks the joiner's tasks as kin tree does, in text and JSON;
     * the master's own tasks (this thread, waiting) are not marked. */
    kin_receiver *sleeping = NULL;
    assert_int_equal(kin_call_async(m, id, "peer.sleep", &sleeping, "i", 30000),
                     KIN_OK);
    bool shown = false;
    double until = harness_now_ms() + 10000;
    while (!shown && harness_now_ms() < until) {
        out = harness_run(&st, "%s ps %d", KIN_CLI, (int)getpid());
        assert_int_equal(st, 0);
        shown = strstr(out, " alpha (joined) ") && strstr(out, "peer.sleep");
        if (!shown)
            poll(NULL, 0, 20);
        free(out);
    }
    assert_true(shown);
    out = harness_run(&st, "%s ps %d --json", KIN_CLI, (int)getpid());
    assert_int_equal(st, 0);
    /* One row, alpha's, carries "joined". */
    const char *row = strstr(out, "\"fn\": \"peer.sleep\"");
    if (!row)
        fprintf(stderr, "kin ps --json said:\n%s", out);
    assert_non_null(row);
    const char *end_row = strchr(row, '}');
    const char *joined = strstr(out, "\"joined\": true");
    assert_non_null(joined);
    assert_null(strstr(joined + 1, "\"joined\""));
    const char *start_row = row;
    while (start_row > out && *start_row != '{')
        start_row--;
    assert_true(joined > start_row && joined < end_row);
    free(out);
    assert_int_equal(kin_call_cancel(sleeping), KIN_OK);
    kin_msg *gone = NULL;
    kin_call_wait(sleeping, 5000, &gone);
    kin_msg_destroy(&gone);
    kin_receiver_destroy(&sleeping);

    /* The audit trail: who joined, by pid and uid (SO_PEERCRED). */
    char f1[64], f2[64], f3[64];
    pid_t me_pid = getpid();
    assert_true(logged(
        me_pid, "\"msg\":\"join.accept\"", "\"event\":\"join.accept\"",
        field_u(f1, sizeof f1, "joiner_ctx", id),
        field_u(f2, sizeof f2, "joiner_pid", (unsigned)a.pid),
        field_u(f3, sizeof f3, "joiner_uid", getuid()), "\"joiner\":\"alpha\"",
        "\"transport\":\"ipc\"", "\"rejoin\":false", NULL));

    pid_t a_pid = a.pid;
    peer_stop(&a, true);
    assert_true(name_gone(m, "alpha", ARRIVE_MS));
    /* Killed: its leave is a lost link, not an explicit one. */
    assert_true(logged(me_pid, "\"join.leave\"",
                       field_u(f1, sizeof f1, "joiner_ctx", id),
                       field_u(f2, sizeof f2, "joiner_pid", (unsigned)a_pid),
                       "\"how\":\"link_lost\"", "\"joiner\":\"alpha\"", NULL));
    assert_int_equal(kin_service_call(m, "peer.pid", 5000, &r, ""),
                     KIN_ENOPROVIDER);
    assert_null(r);
    kin_node_destroy(&m);
}

/* A name already in the tree is refused with KIN_EEXISTS; leaving frees
 * it. */
static void
name_clash_is_refused(void **state)
{
    (void)state;
    char ep[128];
    endpoint(ep, sizeof ep);
    kin_node_opts o = {.join_bind = ep};
    assert_int_equal(kin_node_new(&m, &o), KIN_OK);

    static peer a, b, c; /* static: teardown stops them after a failure */
    peer_start(&a, "joiner", ep, "alpha");
    joined_id(&a);
    peer_start(&b, "joiner", ep, "alpha");
    int code = 0;
    int at = 0;
    /* "joined ID": accepted under a taken name (or the first alpha
     * dropped meanwhile, as it was when the master read its HELLO before
     * its JOIN request's connection closed); "" or another error:
     * something else. Said whole either way. */
    if (sscanf(b.line, "error %d %n", &code, &at) != 1 || code != KIN_EEXISTS ||
        !strstr(b.line, "'alpha' is taken by context"))
        fprintf(stderr, "the second alpha said: '%s'\n", b.line);
    assert_int_equal(sscanf(b.line, "error %d %n", &code, &at), 1);
    assert_int_equal(code, KIN_EEXISTS);
    assert_non_null(strstr(b.line, "'alpha' is taken by context"));
    pid_t b_pid = b.pid;
    assert_int_equal(WEXITSTATUS(peer_stop(&b, false)), 2);
    char f1[64], f2[64];
    assert_true(logged(getpid(), "\"msg\":\"join.refused\"",
                       "\"reason\":\"name_taken\"", "\"joiner\":\"alpha\"",
                       field_u(f1, sizeof f1, "joiner_pid", (unsigned)b_pid),
                       field_u(f2, sizeof f2, "joiner_uid", getuid()),
                       "is taken by context", NULL));

    peer_start(&c, "joiner", ep, "master");
    assert_int_equal(sscanf(c.line, "error %d", &code), 1);
    assert_int_equal(code, KIN_EEXISTS);
    peer_stop(&c, false);

    /* Leaving (kin_node_destroy) frees the name at once, and is logged
     * as an explicit leave. */
    pid_t a_pid = a.pid;
    assert_int_equal(WEXITSTATUS(peer_stop(&a, false)), 0);
    assert_true(name_gone(m, "alpha", ARRIVE_MS));
    assert_true(logged(getpid(), "\"msg\":\"join.leave\"", "\"how\":\"left\"",
                       "\"joiner\":\"alpha\"",
                       field_u(f1, sizeof f1, "joiner_pid", (unsigned)a_pid),
                       NULL));
    peer_start(&b, "joiner", ep, "alpha");
    joined_id(&b);
    peer_stop(&b, false);
    kin_node_destroy(&m);
}

/* A raw JOIN request's socket, sent on by hold_broker only (on the
 * master's broker thread), closed by the test or by teardown. */
static void *held_ctx, *held_sock;
static atomic_int held;      /* hold_broker held the broker up */
static atomic_int held_asks; /* the requests it sent */

/* Sends a JOIN request asking for name on s (as kin__join_ask does). */
static void
send_join(void *s, const char *name)
{
    uint8_t hdr[KIN_HDR_SIZE] = {0};
    hdr[0] = KIN_MAGIC & 0xff;
    hdr[1] = KIN_MAGIC >> 8;
    hdr[2] = KIN_PROTO_VERSION;
    hdr[16] = KIN_HANDLE_JOIN;
    kin_buf b = {0};
    assert_int_equal(kin_pack(&b, "us", KIN_PROTO_VERSION, name), 0);
    zmq_send(s, hdr, sizeof hdr, ZMQ_SNDMORE);
    zmq_send(s, b.data, b.len, 0);
    kin_buf_release(&b);
}

/* Holds the master's broker up between alpha's JOIN answer and its
 * HELLO, as a loaded machine does now and then: answering alpha, it finds
 * the request for "held-N" queued behind, whose log line waits here a
 * second, while alpha closes its request's connection and links on a new
 * one (over ipc, on the descriptor number the closed one had). */
static void
hold_broker(kin_log_level level, const char *file, int line, const char *msg,
            void *arg)
{
    (void)level, (void)file, (void)line, (void)arg;
    if (strstr(msg, "'alpha' joins as context")) {
        char name[32]; /* a pending join keeps its name a while */
        snprintf(name, sizeof name, "held-%d", atomic_fetch_add(&held_asks, 1));
        send_join(held_sock, name);
        poll(NULL, 0, 100); /* queued at the master before alpha's answer */
    } else if (strstr(msg, "'held-") && strstr(msg, "joins as context")) {
        poll(NULL, 0, 1000);
        atomic_store(&held, 1);
    }
}

static void
held_close(void)
{
    if (held_sock)
        zmq_close(held_sock);
    if (held_ctx)
        zmq_ctx_term(held_ctx);
    held_sock = held_ctx = NULL;
}

/* A joiner whose HELLO the master reads before it has seen the joiner's
 * JOIN request connection close (the broker held up in between, as under
 * load) stays joined: its service answers, its name is found and refused
 * to a second joiner. The new connection gets the closed one's descriptor
 * number in about half the joins (whether the joiner's libzmq closes the
 * old one before it connects anew), so the join is made several times. */
#define HELD_ROUNDS 6
static void
joiner_stays_when_its_request_closes_late(void **state)
{
    (void)state;
    char ep[128];
    endpoint(ep, sizeof ep);
    kin_node_opts o = {.join_bind = ep};
    assert_int_equal(kin_node_new(&m, &o), KIN_OK);
    held_ctx = zmq_ctx_new();
    held_sock = zmq_socket(held_ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(held_sock, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(held_sock, ep), 0);
    static peer a, b; /* static: teardown stops them after a failure */
    for (int round = 0; round < HELD_ROUNDS; round++) {
        atomic_store(&held, 0);
        kin_diag_set_handler(hold_broker, NULL, KIN_LOG_INFO);
        peer_start(&a, "joiner", ep, "alpha");
        uint32_t id = joined_id(&a);
        kin_msg *r = NULL;
        int pid = 0;
        kin_err e = call_when_offered(m, "peer.pid", ARRIVE_MS, &r);
        kin_diag_set_handler(NULL, NULL, KIN_LOG_WARNING);
        harness_log_setup();
        assert_int_equal(atomic_load(&held), 1); /* the broker was held */
        if (e)
            fprintf(stderr, "round %d: alpha's service: %s\n", round,
                    kin_strerror(e));
        assert_int_equal(e, KIN_OK);
        assert_int_equal(kin_msg_unpack(r, "i", &pid), KIN_OK);
        kin_msg_destroy(&r);
        assert_int_equal(pid, a.pid);
        uint32_t found = 0;
        assert_int_equal(kin_node_lookup(m, "alpha", &found, 0), KIN_OK);
        assert_int_equal(found, id);
        peer_start(&b, "joiner", ep, "alpha");
        if (strncmp(b.line, "error ", 6))
            fprintf(stderr, "round %d: the second alpha said: '%s'\n", round,
                    b.line);
        int code = 0;
        assert_int_equal(sscanf(b.line, "error %d", &code), 1);
        assert_int_equal(code, KIN_EEXISTS);
        assert_int_equal(WEXITSTATUS(peer_stop(&b, false)), 2);
        assert_int_equal(WEXITSTATUS(peer_stop(&a, false)), 0);
        assert_true(name_gone(m, "alpha", ARRIVE_MS));
    }
    held_close();
    kin_node_destroy(&m);
}

/* Joining where no tree listens fails at once, and a second master cannot
 * take a live join endpoint. */
static void
join_errors(void **state)
{
    (void)state;
    char ep[128], why[256];
    snprintf(ep, sizeof ep, "ipc://%s/none.sock", dir);
    kin_node *n = NULL;
    kin_node_opts o = {
        .join = ep, .name = "x", .errbuf = why, .errbuf_size = sizeof why};
    double t0 = harness_now_ms();
    assert_int_equal(kin_node_new(&n, &o), -ENOENT);
    assert_true(harness_now_ms() - t0 < 2000);
    assert_non_null(strstr(why, "no tree accepts joins"));
    assert_null(n);

    o.name = NULL; /* a joiner needs a name */
    assert_int_equal(kin_node_new(&n, &o), -EINVAL);

    endpoint(ep, sizeof ep);
    kin_node_opts mo = {.join_bind = ep};
    assert_int_equal(kin_node_new(&m, &mo), KIN_OK);
    assert_int_equal(kin_node_new(&m2, &mo), -EADDRINUSE);
    kin_node_destroy(&m);
}

/* SIGKILL the master and start another on the same endpoint: the joiners
 * (a peer process and this one) come back and the service answers
 * again. */
static void
joiners_come_back_to_a_new_master(void **state)
{
    (void)state;
    char ep[128];
    endpoint(ep, sizeof ep);
    static peer m1, m2, a; /* static: teardown stops them after a failure */
    peer_start(&m1, "master", ep, NULL);
    assert_non_null(strstr(m1.line, "ready"));
    peer_start(&a, "joiner", ep, "alpha");
    uint32_t id = joined_id(&a);

    char why[256];
    kin_node_opts o = {
        .join = ep, .name = "caller", .errbuf = why, .errbuf_size = sizeof why};
    assert_int_equal(kin_node_new(&me, &o), KIN_OK);
    uint32_t my_id = kin_node_id(me);
    kin_msg *r = NULL;
    char *name = NULL;
    assert_int_equal(call_when_offered(me, "peer.name", ARRIVE_MS, &r), KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "s", &name), KIN_OK);
    assert_string_equal(name, "alpha");
    free(name);
    kin_msg_destroy(&r);

    peer_stop(&m1, true);
    double t0 = harness_now_ms();
    peer_start(&m2, "master", ep, NULL);
    assert_non_null(strstr(m2.line, "ready"));
    /* Generous: the figure is a benchmark's business. */
    assert_int_equal(call_when_offered(me, "peer.name", 30000, &r), KIN_OK);
    fprintf(stderr, "# service back %.0f ms after the new master started\n",
            harness_now_ms() - t0);
    assert_int_equal(kin_msg_unpack(r, "s", &name), KIN_OK);
    assert_string_equal(name, "alpha");
    free(name);
    kin_msg_destroy(&r);
    /* Same ids as before, under the new master. */
    assert_int_equal(kin_node_id(me), my_id);
    uint32_t found = 0;
    assert_int_equal(lookup_said(me, "alpha", &found, ARRIVE_MS), KIN_OK);
    assert_int_equal(found, id);

    kin_node_destroy(&me);
    assert_int_equal(peer_stop(&a, false), 0); /* it ends when told */
    peer_stop(&m2, false);
}

static void
parent_ids(const peer *p, uint32_t *id, uint32_t *kid)
{
    unsigned a = 0, b = 0;
    if (sscanf(p->line, "joined %u child %u", &a, &b) != 2)
        fprintf(stderr, "parent said: %s\n", p->line);
    assert_int_equal(sscanf(p->line, "joined %u child %u", &a, &b), 2);
    *id = a;
    *kid = b;
}

/* Whether `kin tree PID` lists "ID NAME" indented under the line of
 * context parent (whose label starts with "PARENT "). */
static bool
tree_has_child(pid_t pid, uint32_t parent, uint32_t id, const char *name)
{
    int st;
    char *out = harness_run(&st, "%s tree %d", KIN_CLI, (int)pid);
    char want_p[32], want_c[96];
    snprintf(want_p, sizeof want_p, "%u ", parent);
    snprintf(want_c, sizeof want_c, "%u %s ", id, name);
    bool ok = false;
    int parent_indent = -1;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l && !ok;
         l = strtok_r(NULL, "\n", &save)) {
        int indent = (int)strspn(l, " ");
        if (!strncmp(l + indent, want_p, strlen(want_p)))
            parent_indent = indent;
        else if (parent_indent >= 0 && indent == parent_indent + 2 &&
                 !strncmp(l + indent, want_c, strlen(want_c)))
            ok = true;
        else if (parent_indent >= 0 && indent <= parent_indent)
            parent_indent = -1;
    }
    if (!ok) {
        free(out);
        out = harness_run(&st, "%s tree %d", KIN_CLI, (int)pid);
        fprintf(stderr, "kin tree said:\n%s", out);
    }
    free(out);
    return ok;
}

/* A joined context spawns a child of its own: the master sees it under
 * the joiner in kin tree, finds it by name and calls it. */
static void
joiner_spawns_children(void **state)
{
    (void)state;
    char ep[128];
    endpoint(ep, sizeof ep);
    kin_node_opts o = {.join_bind = ep};
    assert_int_equal(kin_node_new(&m, &o), KIN_OK);
    static peer b; /* static: teardown stops it after a failure */
    peer_start(&b, "parent", ep, "beta");
    uint32_t id, kid;
    parent_ids(&b, &id, &kid);
    assert_true(kid != id);
    assert_true(tree_has_child(getpid(), id, kid, "beta-kid"));
    uint32_t found = 0;
    assert_int_equal(lookup_said(m, "beta-kid", &found, ARRIVE_MS), KIN_OK);
    assert_int_equal(found, kid);
    kin_msg *r = NULL;
    int pid = 0;
    assert_int_equal(kin_call_sync(m, kid, "peer.pid", 5000, &r, NULL), KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "i", &pid), KIN_OK);
    kin_msg_destroy(&r);
    assert_true(pid > 0 && pid != b.pid);
    kin_ctx_info info;
    assert_int_equal(kin_monitor_info(m, kid, 5000, &info), KIN_OK);
    assert_int_equal(info.parent, id);
    assert_int_equal(info.pid, pid);
    /* Leaving takes its children along: the name goes. */
    assert_int_equal(WEXITSTATUS(peer_stop(&b, false)), 0);
    assert_true(name_gone(m, "beta-kid", ARRIVE_MS));
    kin_node_destroy(&m);
}

/* A joiner's children come back with it to a restarted master: their
 * names are registered again and a sibling calls them by name. */
static void
joiners_children_come_back(void **state)
{
    (void)state;
    char ep[128];
    endpoint(ep, sizeof ep);
    static peer m1, m2, b; /* static: teardown stops them after a failure */
    peer_start(&m1, "master", ep, NULL);
    assert_non_null(strstr(m1.line, "ready"));
    peer_start(&b, "parent", ep, "beta");
    uint32_t id, kid;
    parent_ids(&b, &id, &kid);

    char why[256];
    kin_node_opts o = {.join = ep,
                       .name = "sibling",
                       .errbuf = why,
                       .errbuf_size = sizeof why};
    assert_int_equal(kin_node_new(&me, &o), KIN_OK);
    uint32_t found = 0;
    assert_int_equal(lookup_said(me, "beta-kid", &found, ARRIVE_MS), KIN_OK);
    assert_int_equal(found, kid);
    kin_msg *r = NULL;
    int pid = 0, pid2 = 0;
    assert_int_equal(kin_call_sync(me, kid, "peer.pid", 5000, &r, NULL),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "i", &pid), KIN_OK);
    kin_msg_destroy(&r);
    assert_true(tree_has_child(m1.pid, id, kid, "beta-kid"));
    /* A grandchild of the joiner too: its name reaches the master
     * through the joiner. */
    uint32_t grand = 0;
    assert_int_equal(
        kin_call_sync(me, kid, "peer.spawn", 10000, &r, "s", "beta-grandkid"),
        KIN_OK);
    assert_int_equal(kin_msg_unpack(r, "u", &grand), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(lookup_said(me, "beta-grandkid", &found, ARRIVE_MS),
                     KIN_OK);
    assert_int_equal(found, grand);

    peer_stop(&m1, true);
    double t0 = harness_now_ms();
    peer_start(&m2, "master", ep, NULL);
    assert_non_null(strstr(m2.line, "ready"));
    /* Generous deadlines: the figure is printed, not judged. Until this
     * joiner is back itself, its lookups fail (KIN_ENOROUTE). */
    kin_err e;
    double end = harness_now_ms() + 30000;
    while ((e = kin_node_lookup(me, "beta-kid", &found, 1000)) &&
           harness_now_ms() < end)
        poll(NULL, 0, 20);
    if (e)
        fprintf(stderr, "beta-kid not found at the new master: %s\n",
                kin_strerror(e));
    assert_int_equal(e, KIN_OK);
    assert_int_equal(found, kid);
    double dt = harness_now_ms() - t0;
    end = harness_now_ms() + 30000;
    while ((e = kin_call_sync(me, kid, "peer.pid", 2000, &r, NULL)) &&
           harness_now_ms() < end)
        poll(NULL, 0, 20);
    assert_int_equal(e, KIN_OK);
    fprintf(stderr,
            "# joiner's child found by name %.0f ms, called %.0f ms after "
            "the new master started\n",
            dt, harness_now_ms() - t0);
    assert_int_equal(kin_msg_unpack(r, "i", &pid2), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(pid2, pid); /* the same process, not a restart */
    assert_true(tree_has_child(m2.pid, id, kid, "beta-kid"));
    assert_true(tree_has_child(m2.pid, kid, grand, "beta-grandkid"));
    assert_int_equal(lookup_said(me, "beta-grandkid", &found, ARRIVE_MS),
                     KIN_OK);
    assert_int_equal(found, grand);
    assert_int_equal(kin_call_sync(me, grand, "peer.pid", 5000, &r, NULL),
                     KIN_OK);
    kin_msg_destroy(&r);

    kin_node_destroy(&me);
    /* It ends when told, and its children with it (their sockets gone). */
    assert_int_equal(peer_stop(&b, false), 0);
    peer_stop(&m2, false);
}

/* A joiner speaking another protocol version gets an answer at once that
 * names both versions (a raw ZMQ peer plays the other build). */
static void
other_version_is_told_at_once(void **state)
{
    (void)state;
    char ep[128];
    endpoint(ep, sizeof ep);
    kin_node_opts o = {.join_bind = ep};
    assert_int_equal(kin_node_new(&m, &o), KIN_OK);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(s, ep), 0);
    uint8_t hdr[KIN_HDR_SIZE] = {0};
    hdr[0] = KIN_MAGIC & 0xff;
    hdr[1] = KIN_MAGIC >> 8;
    hdr[2] = KIN_PROTO_VERSION + 1;
    hdr[16] = KIN_HANDLE_JOIN;
    kin_buf b = {0};
    assert_int_equal(kin_pack(&b, "us", KIN_PROTO_VERSION + 1, "newer"), 0);
    zmq_send(s, hdr, sizeof hdr, ZMQ_SNDMORE);
    zmq_send(s, b.data, b.len, 0);
    kin_buf_release(&b);
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
    zmq_msg_t f[2];
    zmq_msg_init(&f[0]);
    zmq_msg_init(&f[1]);
    assert_true(zmq_msg_recv(&f[0], s, 0) >= 0);
    assert_true(zmq_msg_recv(&f[1], s, 0) >= 0);
    int code = 0;
    uint32_t id, parent;
    const char *text;
    size_t len;
    assert_int_equal(kin_unpack_buf(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]),
                                    "iuuS", &code, &id, &parent, &text, &len),
                     KIN_OK);
    assert_int_equal(code, KIN_EBADVERSION);
    char t[200];
    snprintf(t, sizeof t, "%.*s", (int)len, text);
    char want[100];
    snprintf(want, sizeof want, "version %u, this tree version %u",
             KIN_PROTO_VERSION + 1, KIN_PROTO_VERSION);
    if (!strstr(t, want))
        fprintf(stderr, "answer: %s\n", t);
    assert_non_null(strstr(t, want));
    zmq_msg_close(&f[0]);
    zmq_msg_close(&f[1]);
    zmq_close(s);
    zmq_ctx_term(ctx);
    /* Logged at the master, with both versions and who asked (this
     * process, the raw peer). */
    char f1[64], f2[64], f3[64];
    assert_true(logged(
        getpid(), "\"msg\":\"join.refused\"", "\"reason\":\"protocol_version\"",
        field_u(f1, sizeof f1, "their_version", KIN_PROTO_VERSION + 1),
        field_u(f2, sizeof f2, "our_version", KIN_PROTO_VERSION),
        field_u(f3, sizeof f3, "joiner_pid", (unsigned)getpid()), NULL));
    kin_node_destroy(&m);
}

/* --- certificates ---------------------------------------------------------
 */

static atomic_int refusals; /* "refused a joiner" diagnostics seen */

static void
count_refusals(kin_log_level level, const char *file, int line, const char *msg,
               void *arg)
{
    (void)level, (void)file, (void)line, (void)arg;
    if (strstr(msg, "refused a joiner"))
        atomic_fetch_add(&refusals, 1);
    if (getenv("KIN_TEST_VERBOSE"))
        fprintf(stderr, "kin: %s\n", msg);
}

/* Writes certificate name in dir; key (41 bytes, may be NULL) gets its
 * public key. */
static void
keygen(const char *name, const char *role, char *key)
{
    int st;
    char *out = harness_run(&st, "%s keygen %s/%s --host test-host --role %s",
                            KIN_CLI, dir, name, role);
    assert_int_equal(st, 0);
    assert_int_equal(strlen(out), 41); /* the public key and a newline */
    if (key)
        snprintf(key, 41, "%.40s", out);
    free(out);
}

static void
path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* Where libczmq.so.4 cannot be loaded (here: /dev/null mounted over it
 * in a mount namespace of this test's own), `kin keygen` fails, names the
 * library and its package, and writes nothing. */
static void
missing_czmq_is_named(void **state)
{
    (void)state;
    int st;
    free(harness_run(&st, "unshare -rm true 2>/dev/null"));
    if (st != 0)
        harness_skip("unshare -rm (a user and mount namespace) is not "
                     "allowed here");
    char *out =
        harness_run(&st,
                    "unshare -rm sh -c 'for f in /lib/*/libczmq.so.4 "
                    "/usr/lib/*/libczmq.so.4; do [ -e \"$f\" ] && "
                    "mount --bind /dev/null \"$(readlink -f \"$f\")\"; done; "
                    "exec %s keygen %s/master' 2>&1",
                    KIN_CLI, dir);
    assert_int_equal(st, 1);
    if (!strstr(out, "libczmq.so.4") || !strstr(out, "libczmq4"))
        fprintf(stderr, "kin keygen said: %s\n", out);
    assert_non_null(strstr(out, "libczmq.so.4"));
    assert_non_null(strstr(out, "libczmq4"));
    free(out);
    char file[128];
    path(file, sizeof file, "master");
    assert_int_equal(access(file, F_OK), -1);
    /* The same command, czmq in place, works. */
    keygen("master", "master", NULL);
}

/* Over tcp with certificates from `kin keygen`: an unknown one never gets
 * in; an allowed one serves until its file is removed from the allowed
 * directory, then its link is dropped and its reconnects are refused. */
static void
certificates_admit_and_revoke(void **state)
{
    (void)state;
    char akey[41], rkey[41];
    keygen("master", "master", NULL);
    keygen("alpha", "joiner", akey);
    keygen("rogue", "joiner", rkey);
    char allowed[128], cert[128], mcert[128], msecret[128], asecret[128],
        rsecret[128], revoked[128];
    path(allowed, sizeof allowed, "allowed");
    assert_int_equal(mkdir(allowed, 0700), 0);
    path(cert, sizeof cert, "alpha");
    path(revoked, sizeof revoked, "allowed/alpha");
    path(mcert, sizeof mcert, "master");
    path(msecret, sizeof msecret, "master_secret");
    path(asecret, sizeof asecret, "alpha_secret");
    path(rsecret, sizeof rsecret, "rogue_secret");
    assert_int_equal(link(cert, revoked), 0);

    kin_diag_set_handler(count_refusals, NULL, KIN_LOG_WARNING);
    char why[256];
    kin_node_opts o = {.join_bind = "tcp://127.0.0.1:*",
                       .join_certs = allowed,
                       .join_cert = msecret,
                       .errbuf = why,
                       .errbuf_size = sizeof why};
    assert_int_equal(kin_node_new(&m, &o), KIN_OK);
    const char *ep = kin_node_join_endpoint(m);
    assert_non_null(strstr(ep, "tcp://127.0.0.1:"));

    static peer r, a; /* static: teardown stops them after a failure */
    peer_startv(&r, "joiner", ep, "rogue", rsecret, mcert);
    int code = 0;
    assert_int_equal(sscanf(r.line, "error %d", &code), 1);
    assert_int_equal(code, KIN_EREFUSED);
    assert_non_null(strstr(r.line, "refused this context's certificate"));
    peer_stop(&r, false);
    assert_true(atomic_load(&refusals) >= 1);
    /* The refusal is a record naming the certificate and the address. */
    char f1[80], f2[80];
    pid_t me_pid = getpid();
    assert_true(logged(me_pid, "\"msg\":\"join.refused\"",
                       "\"reason\":\"unknown_certificate\"",
                       field_s(f1, sizeof f1, "certificate", rkey),
                       "\"address\":\"127.0.0.1\"", "\"transport\":\"tcp\"",
                       NULL));

    peer_startv(&a, "joiner", ep, "alpha", asecret, mcert);
    uint32_t id = joined_id(&a);
    kin_msg *rep = NULL;
    int pid = 0;
    assert_int_equal(call_when_offered(m, "peer.pid", ARRIVE_MS, &rep), KIN_OK);
    assert_int_equal(kin_msg_unpack(rep, "i", &pid), KIN_OK);
    kin_msg_destroy(&rep);
    assert_int_equal(pid, a.pid);
    uint32_t found = 0;
    assert_int_equal(kin_node_lookup(m, "alpha", &found, 0), KIN_OK);
    assert_int_equal(found, id);
    /* Admitted: the certificate and its metadata name the host. */
    assert_true(logged(me_pid, "\"msg\":\"join.accept\"",
                       field_u(f1, sizeof f1, "joiner_ctx", id),
                       field_s(f2, sizeof f2, "certificate", akey),
                       "\"cert_host\":\"test-host\"",
                       "\"cert_role\":\"joiner\"",
                       "\"address\":\"127.0.0.1:", "\"rejoin\":false", NULL));

    /* Revoke: its link goes within the check interval (1 s). */
    int before = atomic_load(&refusals);
    double t0 = harness_now_ms();
    assert_int_equal(unlink(revoked), 0);
    assert_true(name_gone(m, "alpha", 10000));
    fprintf(stderr, "# revoked joiner dropped %.0f ms after its file went\n",
            harness_now_ms() - t0);
    assert_int_equal(kin_service_call(m, "peer.pid", 5000, &rep, ""),
                     KIN_ENOPROVIDER);
    /* Revoked and dropped: two records, with the metadata the certificate
     * had. */
    assert_true(logged(me_pid, "\"msg\":\"join.revoked\"",
                       field_u(f1, sizeof f1, "joiner_ctx", id),
                       field_s(f2, sizeof f2, "certificate", akey),
                       "\"joiner\":\"alpha\"", "\"cert_host\":\"test-host\"",
                       NULL));
    assert_true(logged(me_pid, "\"msg\":\"join.leave\"",
                       field_u(f1, sizeof f1, "joiner_ctx", id),
                       "\"how\":\"revoked\"", NULL));
    /* It tries again (it still runs) and is refused each time. */
    double end = harness_now_ms() + 15000;
    while (atomic_load(&refusals) == before && harness_now_ms() < end)
        poll(NULL, 0, 20);
    assert_true(atomic_load(&refusals) > before);
    assert_true(harness_pid_alive(a.pid));
    assert_int_equal(kin_node_lookup(m, "alpha", &found, 0), -ENOENT);

    /* Allowed again: it comes back by itself, same id, and serves. */
    assert_int_equal(link(cert, revoked), 0);
    assert_int_equal(kin_node_lookup(m, "alpha", &found, 20000), KIN_OK);
    assert_int_equal(found, id);
    /* Its reconnects were refused by certificate; now it is back. */
    assert_true(logged(me_pid, "\"msg\":\"join.refused\"",
                       field_s(f1, sizeof f1, "certificate", akey),
                       "\"reason\":\"unknown_certificate\"", NULL));
    assert_true(logged(me_pid, "\"msg\":\"join.accept\"",
                       field_u(f2, sizeof f2, "joiner_ctx", id),
                       "\"rejoin\":true", NULL));
    assert_int_equal(call_when_offered(m, "peer.pid", ARRIVE_MS, &rep), KIN_OK);
    kin_msg_destroy(&rep);
    unlink(revoked);

    peer_stop(&a, false);
    kin_node_destroy(&m);
    kin_diag_set_handler(NULL, NULL, KIN_LOG_WARNING);
    /* teardown removes the files */
}

/* The key (Z85) on the line "KEY-key = ..." of certificate file path. */
static void
cert_key(const char *path, const char *which, char out[41])
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256], want[32];
    snprintf(want, sizeof want, "%s-key = \"", which);
    out[0] = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, want))
            snprintf(out, 41, "%.40s", strstr(line, want) + strlen(want));
    fclose(f);
    assert_int_equal(strlen(out), 40);
}

/* Another allowed certificate cannot take a joiner's id over: a raw ZMQ
 * peer with the joiner's routing id, saying HELLO as it, gets nothing
 * (with certificates the join endpoint does not hand ids over), and the
 * joiner keeps its link and answers. */
static void
another_certificate_cannot_take_an_id(void **state)
{
    (void)state;
    char allowed[128], mcert[128], msecret[128], asecret[128], rsecret[128],
        p1[128], p2[128], cert[128];
    keygen("master", "master", NULL);
    keygen("alpha", "joiner", NULL);
    char rkey[41];
    keygen("rogue", "joiner", rkey);
    path(allowed, sizeof allowed, "allowed");
    assert_int_equal(mkdir(allowed, 0700), 0);
    path(cert, sizeof cert, "alpha");
    path(p1, sizeof p1, "allowed/alpha");
    assert_int_equal(link(cert, p1), 0);
    path(cert, sizeof cert, "rogue");
    path(p2, sizeof p2, "allowed/rogue");
    assert_int_equal(link(cert, p2), 0);
    path(mcert, sizeof mcert, "master");
    path(msecret, sizeof msecret, "master_secret");
    path(asecret, sizeof asecret, "alpha_secret");
    path(rsecret, sizeof rsecret, "rogue_secret");
    kin_node_opts o = {.join_bind = "tcp://127.0.0.1:*",
                       .join_certs = allowed,
                       .join_cert = msecret};
    assert_int_equal(kin_node_new(&m, &o), KIN_OK);
    const char *ep = kin_node_join_endpoint(m);
    static peer a; /* static: teardown stops it after a failure */
    peer_startv(&a, "joiner", ep, "alpha", asecret, mcert);
    uint32_t id = joined_id(&a);
    kin_msg *r = NULL;
    assert_int_equal(call_when_offered(m, "peer.pid", ARRIVE_MS, &r), KIN_OK);
    kin_msg_destroy(&r);

    char server[41], pub[41], sec[41];
    cert_key(mcert, "public", server);
    cert_key(rsecret, "public", pub);
    cert_key(rsecret, "secret", sec);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    uint8_t rid[4] = {id & 0xff, id >> 8 & 0xff, id >> 16 & 0xff, id >> 24};
    zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, sizeof rid);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server, 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    assert_int_equal(zmq_connect(s, ep), 0);
    uint8_t hdr[KIN_HDR_SIZE] = {0};
    hdr[0] = KIN_MAGIC & 0xff;
    hdr[1] = KIN_MAGIC >> 8;
    hdr[2] = KIN_PROTO_VERSION;
    memcpy(hdr + 8, rid, 4);  /* src */
    memcpy(hdr + 12, rid, 4); /* auth */
    hdr[16] = KIN_HANDLE_HELLO;
    uint8_t body[] = {0x91,
                      0xce,
                      id >> 24,
                      id >> 16 & 0xff,
                      id >> 8 & 0xff,
                      id & 0xff,
                      0xa5,
                      'r',
                      'o',
                      'g',
                      'u',
                      'e'};
    zmq_send(s, hdr, sizeof hdr, ZMQ_SNDMORE);
    zmq_send(s, body, sizeof body, 0);
    /* Its handshake goes through (an allowed certificate) and it tries
     * for a while; nothing comes back to it. */
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 1500), 0);
    /* The joiner is still alpha, the same process, answering, and calls
     * made meanwhile reach it. */
    kin_msg *mid = NULL;
    assert_int_equal(kin_call_sync(m, id, "peer.pid", 5000, &mid, NULL),
                     KIN_OK);
    kin_msg_destroy(&mid);
    zmq_close(s);
    zmq_ctx_term(ctx);
    uint32_t found = 0;
    assert_int_equal(kin_node_lookup(m, "alpha", &found, 20000), KIN_OK);
    assert_int_equal(found, id);
    kin_err e;
    double end = harness_now_ms() + 30000;
    while ((e = kin_call_sync(m, id, "peer.pid", 1000, &r, NULL)) &&
           harness_now_ms() < end)
        poll(NULL, 0, 20);
    assert_int_equal(e, KIN_OK);
    int pid = 0;
    assert_int_equal(kin_msg_unpack(r, "i", &pid), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(pid, a.pid);
    unlink(p1);
    unlink(p2);
    peer_stop(&a, false);
    kin_node_destroy(&m);
}

/* --- a stale tcp connection -----------------------------------------------
 */

static proxy px; /* stopped by teardown too */

static void
proxy_stop_all(void)
{
    proxy_stop(&px);
}

/* Over tcp (with the tree's key), a joiner whose connection broke on its
 * side only comes back at once: its new connection replaces the one the
 * master still holds, rather than waiting for the master's heartbeat
 * timeout (set to a minute here, longer than the test waits). */
static void
rejoin_replaces_a_stale_connection(void **state)
{
    (void)state;
    char pub[41], sec[41], key[82];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    snprintf(key, sizeof key, "%s:%s", pub, sec);
    char why[256];
    kin_node_opts o = {.join_bind = "tcp://127.0.0.1:*",
                       .curve_key = key,
                       .heartbeat_timeout_ms = 60000,
                       .errbuf = why,
                       .errbuf_size = sizeof why};
    assert_int_equal(kin_node_new(&m, &o), KIN_OK);
    int port = 0;
    assert_int_equal(
        sscanf(kin_node_join_endpoint(m), "tcp://127.0.0.1:%d", &port), 1);
    proxy_start(&px, port);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", px.port);

    static peer a; /* static: teardown stops it after a failure */
    peer_startv(&a, "joiner", ep, "alpha", "key", key);
    uint32_t id = joined_id(&a);
    kin_msg *r = NULL;
    assert_int_equal(call_when_offered(m, "peer.pid", ARRIVE_MS, &r), KIN_OK);
    kin_msg_destroy(&r);

    double t0 = harness_now_ms();
    atomic_store(&px.cut_now, true);
    while (!atomic_load(&px.cuts_done))
        poll(NULL, 0, 5);
    /* Back through a new connection, well within the heartbeat timeout;
     * calls meanwhile may go to the stale one and time out. */
    kin_err e;
    double end = harness_now_ms() + 30000;
    while ((e = kin_call_sync(m, id, "peer.pid", 1000, &r, NULL)) &&
           harness_now_ms() < end)
        poll(NULL, 0, 20);
    assert_int_equal(e, KIN_OK);
    fprintf(stderr, "# joiner answered again %.0f ms after its side was cut\n",
            harness_now_ms() - t0);
    int pid = 0;
    assert_int_equal(kin_msg_unpack(r, "i", &pid), KIN_OK);
    kin_msg_destroy(&r);
    assert_int_equal(pid, a.pid);
    /* The same context: its id and name, never left. */
    uint32_t found = 0;
    assert_int_equal(kin_node_lookup(m, "alpha", &found, 0), KIN_OK);
    assert_int_equal(found, id);
    char f1[64];
    assert_true(logged(getpid(), "\"msg\":\"join.accept\"",
                       field_u(f1, sizeof f1, "joiner_ctx", id),
                       "\"rejoin\":true", NULL));

    peer_stop(&a, false);
    kin_node_destroy(&m);
    proxy_stop(&px);
}

int
main(void)
{
    harness_log_setup();
    harness_stacks_on_abort(); /* it aborted once in CI, unexplained */
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(joiner_serves_and_goes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(name_clash_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(
            joiner_stays_when_its_request_closes_late, setup, teardown),
        cmocka_unit_test_setup_teardown(join_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(joiners_come_back_to_a_new_master,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(missing_czmq_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(certificates_admit_and_revoke, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(joiner_spawns_children, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(joiners_children_come_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rejoin_replaces_a_stale_connection,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(another_certificate_cannot_take_an_id,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(other_version_is_told_at_once, setup,
                                        teardown),
    };
    return harness_run_group(tests);
}
