/* CURVE on tcp links: a child holding the tree's key links and serves
 * calls; a peer with another key, or with no CURVE at all, is refused
 * during the handshake (nothing it sends is read, the refusal is logged);
 * a raw client with a wrong key gets nothing through any tcp CURVE server
 * kin binds (the router, the log backend, a forwarder's tcp frontend);
 * two trees in one process stay apart; another user cannot reach an ipc
 * endpoint; and what crosses the wire does not show the calls' contents (a
 * capture with tcpdump, run only as root, with a plaintext control proving that
 * the capture would have seen them). The test binary is also the child. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include <kin/kin.h>

#include "core/msg_internal.h"
#include "integration/harness.h"
#include "logs/logrec.h"
#include "logs/logs_impl.h"
#include "router/router.h"

#define MARKER "kin-secret-payload-7f3a9c"
#define CONTROL "plaintext-control-51d2e8"

static char tree_key[96];
static char tree_pub[41];

/* Refusals seen by the diagnostics hook. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int refusals;

static void
on_log(kin_log_level level, const char *file, int line, const char *msg,
       void *arg)
{
    if (strstr(msg, "refused a connection")) {
        pthread_mutex_lock(&log_mu);
        refusals++;
        pthread_mutex_unlock(&log_mu);
    }
    if (getenv("KIN_TEST_VERBOSE"))
        kin_diag_stderr(level, file, line, msg, arg);
}

static int
refusals_seen(void)
{
    pthread_mutex_lock(&log_mu);
    int r = refusals;
    pthread_mutex_unlock(&log_mu);
    return r;
}

static kin_err
fn_echo(kin_call *c, void *arg)
{
    const char *s;
    size_t len;
    kin_err e = kin_call_args(c, "S", &s, &len);
    return e ? e : kin_call_return(c, "S", s, len);
}

typedef struct fixture {
    kin_node *n;
    kin_child *c;
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kin_node_opts o = {.bind = "tcp://127.0.0.1:*", .curve_key = tree_key};
    if (kin_node_new(&f->n, &o)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    kin_child_destroy(&f->c);
    kin_node_destroy(&f->n);
    free(f);
    return 0;
}

static void
echo_ok(kin_node *n, uint32_t ctx, const char *text)
{
    kin_msg *reply = NULL;
    const char *s;
    size_t len;
    kin_err e = kin_call_sync(n, ctx, "echo", 10000, &reply, "s", text);
    assert_int_equal(e, KIN_OK);
    assert_int_equal(kin_msg_unpack(reply, "S", &s, &len), KIN_OK);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(s, text, len);
    kin_msg_destroy(&reply);
}

/* --- tests ------------------------------------------------------------------
 */

static void
child_with_the_tree_key_links_over_tcp(void **state)
{
    fixture *f = *state;
    assert_true(strncmp(kin_node_endpoint(f->n), "tcp://", 6) == 0);
    assert_int_equal(kin_spawn(f->n, NULL, &f->c), KIN_OK);
    echo_ok(f->n, kin_child_id(f->c), "over curve");
}

static kin_err
fn_log(kin_call *c, void *arg)
{
    KIN_LOGW("from the tcp child", KIN_F("x", 1));
    return KIN_OK;
}

/* A client with the server's public key but a key pair of its own
 * connects to endpoint: the ZAP handler refuses it, and says so. */
static void
wrong_key_refused_at(const char *endpoint, int type)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, type);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    char pub[41], sec[41];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, tree_pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    int before = refusals_seen();
    assert_int_equal(zmq_connect(s, endpoint), 0);
    double end = harness_now_ms() + 5000;
    while (refusals_seen() == before && harness_now_ms() < end)
        usleep(10000);
    zmq_close(s);
    zmq_ctx_term(ctx);
    assert_true(refusals_seen() > before);
}

/* A master bound on tcp: its log forwarder's backend is tcp with CURVE too
 * (children elsewhere publish there with the tree's key), its frontend is
 * in the private runtime directory (subscribers are this host's
 * operators). A child's record arrives. */
static void
tcp_master_logs_over_curve(void **state)
{
    fixture *f = *state;
    assert_true(strncmp(kin_logs_backend(f->n), "tcp://", 6) == 0);
    assert_true(strncmp(kin_logs_frontend(f->n), "ipc://", 6) == 0);
    wrong_key_refused_at(kin_logs_backend(f->n), ZMQ_PUB);
    assert_int_equal(kin_spawn(f->n, NULL, &f->c), KIN_OK);
    assert_true(harness_log_arrives(f->n, kin_child_id(f->c), "log",
                                    "from the tcp child", 10000));
}

/* A raw DEALER speaking to the node: the right server key (the public half
 * is not secret), but its own client key or no CURVE at all. */
static void
intruder_is_refused(kin_node *n, bool curve)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (curve) {
        char pub[41], sec[41];
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, tree_pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    }
    uint8_t rid[4] = {7, 0, 0, 0};
    zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, sizeof rid);
    int before = refusals_seen();
    kin_node_stats st0, st1;
    kin_node_stats_get(n, &st0);
    assert_int_equal(zmq_connect(s, kin_node_endpoint(n)), 0);
    /* A HELLO-shaped message and a ping; neither may reach the router. */
    kin_msg *m;
    assert_int_equal(kin_msg_new(&m, 0), KIN_OK);
    m->src = m->auth = 7;
    m->dst = 0;
    m->handle = KIN_HANDLE_PING;
    m->reply_to = 1;
    uint8_t hdr[KIN_HDR_SIZE];
    kin__msg_header_encode(m, hdr);
    kin_msg_destroy(&m);
    zmq_send(s, hdr, sizeof hdr, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s, "", 0, ZMQ_DONTWAIT);
    if (curve) { /* the ZAP handler says no, and says so */
        double end = harness_now_ms() + 5000;
        while (refusals_seen() == before && harness_now_ms() < end)
            usleep(10000);
        assert_true(refusals_seen() > before);
    }
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 500), 0); /* no answer */
    kin_node_stats_get(n, &st1);
    assert_int_equal(st1.delivered, st0.delivered);
    assert_int_equal(st1.malformed, st0.malformed);
    assert_int_equal(st1.forged, st0.forged);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

static void
wrong_key_is_refused_and_logged(void **state)
{
    fixture *f = *state;
    assert_int_equal(kin_spawn(f->n, NULL, &f->c), KIN_OK);
    intruder_is_refused(f->n, true);
    echo_ok(f->n, kin_child_id(f->c), "still here");
}

static void
plain_peer_is_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(kin_spawn(f->n, NULL, &f->c), KIN_OK);
    intruder_is_refused(f->n, false);
    echo_ok(f->n, kin_child_id(f->c), "still here");
}

static void
child_with_another_key_cannot_link(void **state)
{
    fixture *f = *state;
    char pub[41], sec[41], other[96];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    snprintf(other, sizeof other, "%s:%s", pub, sec);
    kin_node *imposter = NULL;
    kin_node_opts o = {.parent_endpoint = kin_node_endpoint(f->n),
                       .id = 4000,
                       .parent_id = KIN_MASTER_ID,
                       .curve_key = other,
                       .connect_timeout_ms = 1000};
    assert_int_equal(kin_node_new(&imposter, &o), KIN_ETIMEOUT);
    assert_null(imposter);
    o.curve_key = "not a key";
    assert_int_equal(kin_node_new(&imposter, &o), -EINVAL);
}

/* The default ipc endpoint: another user cannot even reach the socket
 * file (its directory is 0700), so nothing it sends arrives. Root only:
 * the intruder is a forked process that becomes nobody. */
static void
ipc_endpoint_refuses_other_users(void **state)
{
    if (geteuid() != 0) {
        harness_skip("needs root to become another user");
    }
    kin_node *n = NULL;
    kin_node_opts o = {.curve_key = tree_key};
    assert_int_equal(kin_node_new(&n, &o), KIN_OK);
    const char *ep = kin_node_endpoint(n);
    assert_true(strncmp(ep, "ipc://", 6) == 0);
    kin_node_stats st0, st1;
    kin_node_stats_get(n, &st0);
    /* A fresh process (exec'd, since this one has threads whose locks a
     * forked copy could find held) that becomes nobody first thing. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_curve", "--intruder", ep, (char *)NULL);
        _exit(127);
    }
    int status = -1;
    double end = harness_now_ms() + 20000;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (harness_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(10000);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    kin_node_stats_get(n, &st1);
    assert_int_equal(st1.malformed, st0.malformed);
    assert_int_equal(st1.delivered, st0.delivered);
    kin_node_destroy(&n);
}

/* Two trees in one process: the key of one does not open the other, and
 * any number of tcp trees may come and go. */
static void
trees_in_one_process_stay_apart(void **state)
{
    fixture *f = *state; /* tree A, with tree_key */
    char pub[41], sec[41], key_b[96];
    for (int i = 0; i < 20; i++) { /* more than any fixed table */
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        snprintf(key_b, sizeof key_b, "%s:%s", pub, sec);
        kin_node *b = NULL;
        kin_node_opts ob = {.bind = "tcp://127.0.0.1:*", .curve_key = key_b};
        assert_int_equal(kin_node_new(&b, &ob), KIN_OK);
        if (i == 19) {
            /* A child holding A's key knocks at B: refused. */
            kin_node *x = NULL;
            kin_node_opts ox = {.parent_endpoint = kin_node_endpoint(b),
                                .id = 4001,
                                .parent_id = KIN_MASTER_ID,
                                .curve_key = tree_key,
                                .connect_timeout_ms = 1000};
            assert_int_equal(kin_node_new(&x, &ox), KIN_ETIMEOUT);
            /* With B's key it gets in; A is not bothered. */
            ox.curve_key = key_b;
            assert_int_equal(kin_node_new(&x, &ox), KIN_OK);
            kin_node_destroy(&x);
        }
        kin_node_destroy(&b);
    }
    assert_int_equal(kin_spawn(f->n, NULL, &f->c), KIN_OK);
    echo_ok(f->n, kin_child_id(f->c), "tree A still works");
}

/* --- a wrong client key gets nothing through ------------------------------
 * Raw libzmq clients against every CURVE server socket kin binds on tcp,
 * each knowing the server's public key: one with the tree's key pair (the
 * control: what it sends or asks for arrives), one with a pair of its own.
 * The server refuses the latter's handshake (libzmq reports the refusal on
 * the client's side, not kin's log) and nothing it sends, nor anything it
 * subscribes to, gets through. */

typedef struct raw_client {
    void *s, *mon;
} raw_client;

static raw_client
raw_connect(void *zc, int type, const char *endpoint, bool tree_pair)
{
    static int seq;
    raw_client c = {zmq_socket(zc, type), zmq_socket(zc, ZMQ_PAIR)};
    assert_non_null(c.s);
    assert_non_null(c.mon);
    int linger = 0;
    zmq_setsockopt(c.s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c.mon, ZMQ_LINGER, &linger, sizeof linger);
    char pub[41], sec[41];
    if (tree_pair) {
        memcpy(pub, tree_key, 40);
        memcpy(sec, tree_key + 41, 40);
        pub[40] = sec[40] = 0;
    } else {
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    }
    zmq_setsockopt(c.s, ZMQ_CURVE_SERVERKEY, tree_pub, 40);
    zmq_setsockopt(c.s, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(c.s, ZMQ_CURVE_SECRETKEY, sec, 40);
    if (type == ZMQ_SUB)
        zmq_setsockopt(c.s, ZMQ_SUBSCRIBE, "", 0);
    if (type == ZMQ_DEALER) { /* a link id, as a child's (7 or 8) */
        uint8_t rid[4] = {tree_pair ? 7 : 8, 0, 0, 0};
        zmq_setsockopt(c.s, ZMQ_ROUTING_ID, rid, sizeof rid);
    }
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://raw-client-mon-%d", seq++);
    assert_int_equal(
        zmq_socket_monitor(c.s, mon_ep,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL),
        0);
    assert_int_equal(zmq_connect(c.mon, mon_ep), 0);
    assert_int_equal(zmq_connect(c.s, endpoint), 0);
    return c;
}

/* How c's first handshake ended (a ZMQ_EVENT_HANDSHAKE_* event), 0 if it
 * did not within 10 s. */
static int
handshake_outcome(raw_client *c)
{
    zmq_pollitem_t it = {.socket = c->mon, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, 10000) != 1)
        return 0;
    uint8_t ev[6] = {0};
    int n = zmq_recv(c->mon, ev, sizeof ev, 0);
    char addr[256];
    while (zmq_recv(c->mon, addr, sizeof addr, ZMQ_DONTWAIT) >= 0) {
    } /* the address frame */
    return n >= 2 ? ev[0] | ev[1] << 8 : 0;
}

static void
raw_close(raw_client *c)
{
    zmq_socket_monitor(c->s, NULL, 0);
    zmq_close(c->s);
    zmq_close(c->mon);
}

/* A WARNING record about context ctx saying msg, as a publisher sends it. */
static void
send_record(void *pub, uint32_t ctx, uint64_t seq, const char *msg)
{
    char head[KIN__LOG_HEAD_MAX];
    size_t hl =
        kin__logrec_head(head, kin__log_bucket(KIN_LOG_WARNING), seq, ctx, ctx,
                         ctx, "raw", 3, (int)getpid(), KIN_LOGREC_LOG, 0);
    kin_buf b = {0};
    assert_int_equal(kin__logrec_body(&b, KIN_LOG_WARNING, 0, 0, 0, __FILE__,
                                      __LINE__, msg, strlen(msg), NULL),
                     KIN_OK);
    zmq_msg_t m;
    assert_int_equal(zmq_msg_init_size(&m, hl + b.len), 0);
    memcpy(zmq_msg_data(&m), head, hl);
    memcpy((char *)zmq_msg_data(&m) + hl, b.data, b.len);
    kin_buf_release(&b);
    if (zmq_msg_send(&m, pub, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&m);
}

/* The node's tcp ROUTER: the intruder's junk would count as malformed, the
 * control's well-formed message from a peer that never said HELLO counts
 * as forged; once the control's has been read (the intruder's went
 * first), nothing of the intruder's was, and it got no answer. */
static void
wrong_key_reaches_nothing_on_the_router(void **state)
{
    fixture *f = *state;
    void *zc = zmq_ctx_new();
    kin_node_stats st0, st1;
    kin_node_stats_get(f->n, &st0);
    raw_client bad = raw_connect(zc, ZMQ_DEALER, kin_node_endpoint(f->n), 0);
    zmq_send(bad.s, "junk", 4, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(bad.s, "", 0, ZMQ_DONTWAIT);
    int bad_end = handshake_outcome(&bad);
    raw_client good = raw_connect(zc, ZMQ_DEALER, kin_node_endpoint(f->n), 1);
    kin_msg *m;
    assert_int_equal(kin_msg_new(&m, 0), KIN_OK);
    m->src = m->auth = 7;
    m->handle = KIN_HANDLE_PING;
    m->reply_to = 1;
    uint8_t hdr[KIN_HDR_SIZE];
    kin__msg_header_encode(m, hdr);
    kin_msg_destroy(&m);
    zmq_send(good.s, hdr, sizeof hdr, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(good.s, "", 0, ZMQ_DONTWAIT);
    int good_end = handshake_outcome(&good);
    double end = harness_now_ms() + 10000;
    do {
        kin_node_stats_get(f->n, &st1);
    } while (st1.forged == st0.forged && harness_now_ms() < end &&
             !usleep(5000));
    zmq_pollitem_t it = {.socket = bad.s, .events = ZMQ_POLLIN};
    int answered = zmq_poll(&it, 1, 0);
    raw_close(&bad);
    raw_close(&good);
    zmq_ctx_term(zc);
    assert_int_equal(good_end, ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    assert_int_equal(bad_end, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    assert_int_equal(st1.forged, st0.forged + 1); /* the control's */
    assert_int_equal(st1.malformed, st0.malformed);
    assert_int_equal(st1.delivered, st0.delivered);
    assert_int_equal(answered, 0);
}

/* Publishes "admitted" through good and "intruder" through bad (both
 * publishers into one forwarder) until sub has read `want` admitted
 * records; counts what sub and, if given, bad_sub read of each. */
typedef struct seen {
    int admitted, intruder, bad_sub;
} seen;

static void
publish_both(void *good, void *bad, kin_logsub *sub, void *raw_sub,
             void *bad_sub, int want, seen *out)
{
    kin__logdec d;
    kin__logdec_init(&d);
    uint64_t seq = 1;
    double end = harness_now_ms() + 15000;
    while (out->admitted < want && harness_now_ms() < end) {
        if (bad)
            send_record(bad, 4243, seq, "intruder");
        send_record(good, 4242, seq, "admitted");
        seq++;
        const kin_logrec *r;
        while (sub && kin_logsub_next(sub, 20, &r) == KIN_OK) {
            if (r->kind != KIN_LOGREC_LOG)
                continue;
            out->admitted += !strcmp(r->msg, "admitted");
            out->intruder += !strcmp(r->msg, "intruder");
        }
        zmq_pollitem_t it = {.socket = raw_sub, .events = ZMQ_POLLIN};
        while (raw_sub && zmq_poll(&it, 1, 20) == 1) {
            char buf[1024];
            int n = zmq_recv(raw_sub, buf, sizeof buf, 0);
            if (n > 0 && kin__logdec_decode(&d, buf, (size_t)n, &r) == KIN_OK)
                out->admitted += !strcmp(r->msg, "admitted");
        }
        char buf[1024];
        while (bad_sub && zmq_recv(bad_sub, buf, sizeof buf, ZMQ_DONTWAIT) >= 0)
            out->bad_sub++;
    }
    kin__logdec_fini(&d);
}

/* The master's log backend (tcp, where children elsewhere publish): a
 * publisher with the wrong key is refused and none of its records reach
 * the master's subscribers, while the control's do. */
static void
wrong_key_publishes_nothing_to_the_log_backend(void **state)
{
    fixture *f = *state;
    assert_true(strncmp(kin_logs_backend(f->n), "tcp://", 6) == 0);
    void *zc = zmq_ctx_new();
    kin_logsub_opts so = {.endpoint = kin_logs_frontend(f->n),
                          .min_level = KIN_LOG_WARNING};
    kin_logsub *sub = NULL;
    assert_int_equal(kin_logsub_new(&sub, &so), KIN_OK);
    raw_client bad = raw_connect(zc, ZMQ_PUB, kin_logs_backend(f->n), 0);
    int bad_end = handshake_outcome(&bad);
    raw_client good = raw_connect(zc, ZMQ_PUB, kin_logs_backend(f->n), 1);
    seen got = {0};
    publish_both(good.s, bad.s, sub, NULL, NULL, 5, &got);
    kin_logsub_destroy(&sub);
    raw_close(&bad);
    raw_close(&good);
    zmq_ctx_term(zc);
    assert_int_equal(bad_end, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    assert_true(got.admitted >= 5);
    assert_int_equal(got.intruder, 0);
}

/* A forwarder with both sides on tcp (as `kin log-forwarder` can run): a
 * subscriber with the wrong key is refused at its frontend and reads
 * nothing, while the control reads the records. */
static void
wrong_key_reads_nothing_from_a_tcp_frontend(void **state)
{
    kin__curve_key key;
    assert_int_equal(kin__curve_parse(&key, tree_key), KIN_OK);
    kin__logfwd_opts fo = {.backend = "tcp://127.0.0.1:*",
                           .frontend = "tcp://127.0.0.1:*",
                           .sink_fd = -1,
                           .curve = &key};
    kin__logfwd *fwd = NULL;
    assert_int_equal(kin__logfwd_start(&fwd, &fo), KIN_OK);
    void *zc = zmq_ctx_new();
    raw_client bad = raw_connect(zc, ZMQ_SUB, kin__logfwd_frontend(fwd), 0);
    int bad_end = handshake_outcome(&bad);
    raw_client good = raw_connect(zc, ZMQ_SUB, kin__logfwd_frontend(fwd), 1);
    raw_client pub = raw_connect(zc, ZMQ_PUB, kin__logfwd_backend(fwd), 1);
    seen got = {0};
    publish_both(pub.s, NULL, NULL, good.s, bad.s, 5, &got);
    raw_close(&bad);
    raw_close(&good);
    raw_close(&pub);
    zmq_ctx_term(zc);
    kin__logfwd_stop(&fwd);
    assert_int_equal(bad_end, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    assert_true(got.admitted >= 5);
    assert_int_equal(got.bad_sub, 0);
}

/* --- sniffing ---------------------------------------------------------------
 */

static int
port_of(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    return colon ? atoi(colon + 1) : 0;
}

static void
sniffed_traffic_is_unreadable(void **state)
{
    fixture *f = *state;
    if (geteuid() != 0 || access("/usr/bin/tcpdump", X_OK)) {
        harness_skip("capturing needs root and tcpdump");
    }
    assert_int_equal(kin_spawn(f->n, NULL, &f->c), KIN_OK);
    /* The control: a plaintext ZMQ pair on another port. */
    void *zc = zmq_ctx_new();
    void *a = zmq_socket(zc, ZMQ_PAIR), *b = zmq_socket(zc, ZMQ_PAIR);
    int linger = 0;
    zmq_setsockopt(a, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(b, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(a, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t sz = sizeof ep;
    zmq_getsockopt(a, ZMQ_LAST_ENDPOINT, ep, &sz);
    assert_int_equal(zmq_connect(b, ep), 0);

    char dir[] = "/tmp/kin-sniff.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pcap[128], filter[128], cmd[512];
    snprintf(pcap, sizeof pcap, "%s/cap.pcap", dir);
    snprintf(filter, sizeof filter, "tcp port %d or tcp port %d",
             port_of(kin_node_endpoint(f->n)), port_of(ep));
    pid_t pid = harness_capture_start("lo", filter, pcap);
    bool listening = pid > 0;

    for (int i = 0; i < 20; i++)
        echo_ok(f->n, kin_child_id(f->c), MARKER);
    for (int i = 0; i < 20; i++) {
        char buf[64];
        zmq_send(b, CONTROL, strlen(CONTROL), 0);
        zmq_recv(a, buf, sizeof buf, 0);
    }
    /* Let the last packets reach the file, then stop the capture. */
    if (listening)
        harness_capture_stop(pid, pcap, CONTROL, 20);
    size_t control = harness_count_in_file(pcap, CONTROL);
    size_t secret = harness_count_in_file(pcap, MARKER);
    fprintf(stderr, "capture: %zu plaintext control hits, %zu kin hits\n",
            control, secret);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(zc);
    assert_true(listening);
    assert_true(control >= 20); /* the capture saw plaintext */
    assert_int_equal(secret, 0);
}

/* The other user of ipc_endpoint_refuses_other_users: as nobody, the
 * socket file is out of reach and nothing sent to it is answered. Exit 0
 * when refused. */
static int
intruder(const char *ep)
{
    if (setgid(65534) || setuid(65534))
        return 3;
    if (access(ep + 6, F_OK) == 0 || errno != EACCES)
        return 4; /* the socket file is reachable */
    void *zc = zmq_ctx_new();
    void *s = zmq_socket(zc, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(s, ep);
    zmq_send(s, "hello", 5, ZMQ_DONTWAIT);
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    int got = zmq_poll(&it, 1, 300);
    zmq_close(s);
    zmq_ctx_term(zc);
    return got == 0 ? 0 : 5;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--intruder"))
        return intruder(argv[2]);
    kin_export("echo", fn_echo, NULL, KIN_POLICY_ANY);
    kin_export("log", fn_log, NULL, KIN_POLICY_ANY);
    if (kin_started_as_child())
        return kin_init(NULL, NULL);
    kin_diag_set_handler(on_log, NULL, KIN_LOG_INFO);
    char sec[41];
    if (zmq_curve_keypair(tree_pub, sec)) {
        fprintf(stderr, "libzmq without CURVE\n");
        return 1;
    }
    snprintf(tree_key, sizeof tree_key, "%s:%s", tree_pub, sec);
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(child_with_the_tree_key_links_over_tcp,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(tcp_master_logs_over_curve, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(wrong_key_is_refused_and_logged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(plain_peer_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(child_with_another_key_cannot_link,
                                        setup, teardown),
        cmocka_unit_test(ipc_endpoint_refuses_other_users),
        cmocka_unit_test_setup_teardown(trees_in_one_process_stay_apart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(wrong_key_reaches_nothing_on_the_router,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            wrong_key_publishes_nothing_to_the_log_backend, setup, teardown),
        cmocka_unit_test(wrong_key_reads_nothing_from_a_tcp_frontend),
        cmocka_unit_test_setup_teardown(sniffed_traffic_is_unreadable, setup,
                                        teardown),
    };
    return harness_run_group(tests);
}
