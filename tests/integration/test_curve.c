/* CURVE on tcp links: a child holding the tree's key links and serves
 * calls; a peer with another key, or with no CURVE at all, is refused
 * during the handshake (nothing it sends is read, the refusal is logged);
 * another user cannot reach an ipc endpoint; and what crosses the wire does not
 * show the calls' contents (a capture with tcpdump, run only as root, with a
 * plaintext control proving that the capture would have seen them). The test
 * binary is also the child. */
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

#include "integration/harness.h"

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
        kin_log_stderr(level, file, line, msg, arg);
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
    kin_logsub_opts so = {.endpoint = kin_logs_frontend(f->n),
                          .min_level = KIN_LOG_WARNING};
    kin_logsub *s = NULL;
    assert_int_equal(kin_logsub_new(&s, &so), KIN_OK);
    bool found = false;
    double end = harness_now_ms() + 10000;
    while (!found && harness_now_ms() < end) {
        kin_msg *reply = NULL;
        assert_int_equal(
            kin_call_sync(f->n, kin_child_id(f->c), "log", 5000, &reply, ""),
            KIN_OK);
        kin_msg_destroy(&reply);
        const kin_logrec *r;
        while (!found && kin_logsub_next(s, 50, &r) == KIN_OK)
            found = r->kind == KIN_LOGREC_LOG &&
                    !strcmp(r->msg, "from the tcp child") &&
                    r->ctx == kin_child_id(f->c);
    }
    kin_logsub_destroy(&s);
    assert_true(found);
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
    kin_msg_header_encode(m, hdr);
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
    if (kin_is_child())
        return kin_init(NULL, NULL);
    kin_log_set_handler(on_log, NULL, KIN_LOG_INFO);
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
        cmocka_unit_test_setup_teardown(sniffed_traffic_is_unreadable, setup,
                                        teardown),
    };
    return harness_run_group(tests);
}
