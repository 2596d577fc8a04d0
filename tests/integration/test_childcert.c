/* Certificates of children started through an exec channel (the same
 * code path as ssh's; test_remote runs ssh itself): a master bound on tcp
 * gives each one a key pair of its own instead of the tree's secret, with
 * nothing set up, and its link and log records get through with it; a
 * connection presenting that key as another context, after the child is
 * gone, or after the certificate expired is refused (an established link
 * stays up); and a child speaking another protocol version fails the
 * spawn at once with KIN_EBADVERSION naming both versions, on both sides.
 * The test binary is also every child program. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include <kin/kin.h>

#include "core/msg_internal.h"
#include "integration/harness.h"
#include "logs/logrec.h"
#include "router/child_certs.h"
#include "router/curve.h"
#include "router/router.h"

static char tree_key[96];
static char tree_pub[41];
static char tree_sec[41];

/* Diagnostics seen, by what they say. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int seen_hello_refused, seen_expired, seen_refused;

static void
on_log(kin_log_level level, const char *file, int line, const char *msg,
       void *arg)
{
    pthread_mutex_lock(&log_mu);
    if (strstr(msg, "refused HELLO from") &&
        strstr(msg, "was issued to another context"))
        seen_hello_refused++;
    if (strstr(msg, "refused a connection") && strstr(msg, "has expired"))
        seen_expired++;
    if (strstr(msg, "refused a connection") &&
        strstr(msg, "does not hold this tree's CURVE key"))
        seen_refused++;
    pthread_mutex_unlock(&log_mu);
    if (getenv("KIN_TEST_VERBOSE"))
        kin_diag_stderr(level, file, line, msg, arg);
}

static int
count(int *what)
{
    pthread_mutex_lock(&log_mu);
    int r = *what;
    pthread_mutex_unlock(&log_mu);
    return r;
}

/* Waits up to ms for *what to pass before. */
static bool
wait_count(int *what, int before, int ms)
{
    double end = harness_now_ms() + ms;
    while (count(what) <= before && harness_now_ms() < end)
        usleep(10000);
    return count(what) > before;
}

/* --- served by every child ------------------------------------------------ */

static kin_err
fn_echo(kin_call *c, void *arg)
{
    const char *s;
    size_t len;
    kin_err e = kin_call_args(c, "S", &s, &len);
    return e ? e : kin_call_return(c, "S", s, len);
}

/* The key this context holds, as kin__curve_format writes it. */
static kin_err
fn_key(kin_call *c, void *arg)
{
    char text[KIN__KEY_TEXT_LEN];
    kin__curve_format(kin__node_curve(kin_call_node(c)), text);
    return kin_call_return(c, "s", text);
}

static kin_err
fn_log(kin_call *c, void *arg)
{
    KIN_LOGW("from the child with a certificate", KIN_F("x", 1));
    return KIN_OK;
}

/* --- helpers ---------------------------------------------------------------
 */

typedef struct fixture {
    kin_node *n;
    kin_node *n_ipc; /* a second master, on ipc, or NULL */
    kin_child *c;
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kin_node_opts o = {.bind = "tcp://127.0.0.1:*", .curve_key = tree_key};
    if (!f || kin_node_new(&f->n, &o)) {
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
    kin__child_cert_set_lifetime(0);
    kin_child_destroy(&f->c);
    kin_node_destroy(&f->n);
    kin_node_destroy(&f->n_ipc);
    free(f);
    return 0;
}

static char *setsid_w[] = {"setsid", "-w", "--", NULL};

static void
spawn_exec(fixture *f, const char *name)
{
    char err[2048] = "";
    kin_spawn_opts o = {.name = name,
                        .exec = setsid_w,
                        .connect_timeout_ms = 30000,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_err e = kin_spawn(f->n, &o, &f->c);
    if (e)
        print_error("spawn: %s: %s\n", kin_strerror(e), err);
    assert_int_equal(e, KIN_OK);
}

static void
echo_ok(fixture *f, const char *text)
{
    kin_msg *reply = NULL;
    const char *s;
    size_t len;
    assert_int_equal(kin_call_sync(f->n, kin_child_id(f->c), "echo", 10000,
                                   &reply, "s", text),
                     KIN_OK);
    assert_int_equal(kin_msg_unpack(reply, "S", &s, &len), KIN_OK);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(s, text, len);
    kin_msg_destroy(&reply);
}

/* The child's key, parsed. */
static void
child_key(fixture *f, kin__curve_key *k)
{
    kin_msg *reply = NULL;
    char *text = NULL;
    assert_int_equal(
        kin_call_sync(f->n, kin_child_id(f->c), "key", 10000, &reply, ""),
        KIN_OK);
    assert_int_equal(kin_msg_unpack(reply, "s", &text), KIN_OK);
    kin_msg_destroy(&reply);
    kin_err e = kin__curve_parse(k, text);
    free(text);
    assert_int_equal(e, KIN_OK);
}

/* A raw DEALER of its own ZMQ context with routing id `id`, presenting k
 * to the node's tcp endpoint. */
typedef struct raw {
    void *ctx, *s;
} raw;

static void
raw_connect(raw *r, const char *endpoint, const kin__curve_key *k, uint32_t id)
{
    r->ctx = zmq_ctx_new();
    r->s = zmq_socket(r->ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(r->s, ZMQ_LINGER, &linger, sizeof linger);
    uint8_t rid[4] = {(uint8_t)id, (uint8_t)(id >> 8), (uint8_t)(id >> 16),
                      (uint8_t)(id >> 24)};
    zmq_setsockopt(r->s, ZMQ_ROUTING_ID, rid, sizeof rid);
    zmq_setsockopt(r->s, ZMQ_CURVE_SERVERKEY, k->server, 40);
    zmq_setsockopt(r->s, ZMQ_CURVE_PUBLICKEY, k->pub, 40);
    zmq_setsockopt(r->s, ZMQ_CURVE_SECRETKEY, k->sec, 40);
    assert_int_equal(zmq_connect(r->s, endpoint), 0);
}

/* Queues a HELLO from `id` to the master (sent once the handshake is
 * done, if ever). */
static void
raw_hello(raw *r, uint32_t id)
{
    uint8_t h[KIN_HDR_SIZE] = {0};
    h[0] = KIN_MAGIC & 0xff;
    h[1] = KIN_MAGIC >> 8;
    h[2] = KIN_PROTO_VERSION;
    for (int i = 0; i < 4; i++) {
        h[8 + i] = (uint8_t)(id >> (8 * i));  /* src */
        h[12 + i] = (uint8_t)(id >> (8 * i)); /* auth */
    }
    h[16] = KIN_HANDLE_HELLO;
    /* [id] "x" */
    uint8_t body[8] = {0x91,
                       0xce,
                       (uint8_t)(id >> 24),
                       (uint8_t)(id >> 16),
                       (uint8_t)(id >> 8),
                       (uint8_t)id,
                       0xa1,
                       'x'};
    zmq_send(r->s, h, sizeof h, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(r->s, body, sizeof body, ZMQ_DONTWAIT);
}

static void
raw_close(raw *r)
{
    zmq_close(r->s);
    zmq_ctx_term(r->ctx);
}

/* --- tests ------------------------------------------------------------------
 */

/* Zero setup: the child holds a key pair of its own, not the tree's
 * secret, whose server key is the tree's; calls and log records get
 * through the master's CURVE servers with it. */
static void
exec_child_links_with_a_certificate_of_its_own(void **state)
{
    fixture *f = *state;
    spawn_exec(f, "cert-a");
    echo_ok(f, "over its own certificate");
    kin__curve_key k;
    child_key(f, &k);
    assert_string_not_equal(k.pub, tree_pub);
    assert_string_not_equal(k.sec, tree_sec);
    assert_string_equal(k.server, tree_pub);

    assert_true(harness_log_arrives(f->n, kin_child_id(f->c), "log",
                                    "from the child with a certificate",
                                    10000));
}

/* The certificate admits its own child only: another process holding it
 * cannot say HELLO as another context, and once the child is gone, a
 * connection with it is refused in the handshake. */
static void
a_child_certificate_admits_its_child_only(void **state)
{
    fixture *f = *state;
    spawn_exec(f, "cert-b");
    kin__curve_key k;
    child_key(f, &k);
    uint32_t other = kin_child_id(f->c) + 100;

    int before = count(&seen_hello_refused);
    raw r;
    raw_connect(&r, kin_node_endpoint(f->n), &k, other);
    raw_hello(&r, other);
    assert_true(wait_count(&seen_hello_refused, before, 10000));
    raw_close(&r);
    echo_ok(f, "still linked");

    int st = -1;
    assert_int_equal(kin_child_stop(f->c, &st), KIN_OK);
    kin_child_destroy(&f->c);
    before = count(&seen_refused);
    raw_connect(&r, kin_node_endpoint(f->n), &k, other);
    assert_true(wait_count(&seen_refused, before, 10000));
    raw_close(&r);
}

/* A certificate first presented after its lifetime admits no connection
 * (the refusal says it expired); the child's own, presented in time,
 * still passes the handshake after the lifetime (only its HELLO as
 * another id is refused), and the link the child made stays up. */
static void
an_expired_certificate_admits_no_new_connection(void **state)
{
    fixture *f = *state;
    spawn_exec(f, "cert-c");
    kin__curve_key k;
    child_key(f, &k);
    kin__child_cert_set_lifetime(1);
    /* Issued here for the same tree (the table matches the tree's public
     * key; the secret only marks it as a tree's, not a child's), never
     * presented until its millisecond is over. */
    kin__curve_key tree = {0}, late;
    memcpy(tree.pub, k.server, sizeof tree.pub);
    memcpy(tree.sec, k.sec, sizeof tree.sec);
    assert_int_equal(kin__child_cert_issue(&tree, kin_child_id(f->c) + 200,
                                           "late", "h", &late),
                     KIN_OK);
    double end = harness_now_ms() + 3;
    while (harness_now_ms() < end)
        ;
    int before = count(&seen_expired);
    raw r;
    raw_connect(&r, kin_node_endpoint(f->n), &late, kin_child_id(f->c) + 200);
    assert_true(wait_count(&seen_expired, before, 10000));
    raw_close(&r);

    before = count(&seen_hello_refused);
    int expired_before = count(&seen_expired);
    raw_connect(&r, kin_node_endpoint(f->n), &k, kin_child_id(f->c) + 100);
    raw_hello(&r, kin_child_id(f->c) + 100);
    assert_true(wait_count(&seen_hello_refused, before, 10000));
    raw_close(&r);
    assert_int_equal(count(&seen_expired), expired_before);
    kin__child_cert_revoke(late.pub);
    echo_ok(f, "an established link stays");
}

/* A child of another kin build (its protocol version forced to the next
 * one, TEST_PROTO in its environment, through `env` as the exec channel):
 * the spawn fails at once with
 * KIN_EBADVERSION, not a timeout, and the error names both versions on
 * both sides: the parent's sentence, then the child's own words on its
 * stderr. Through a master on tcp (its ROUTER) and one on ipc (its far
 * ROUTER). */
static void
another_version_fails_the_spawn_at_once(void **state)
{
    fixture *f = *state;
    assert_int_equal(kin_node_new(&f->n_ipc, NULL), KIN_OK);
    kin_node *masters[] = {f->n, f->n_ipc};
    char env[32];
    snprintf(env, sizeof env, "TEST_PROTO=%u", KIN_PROTO_VERSION + 1);
    char *with_env[] = {"env", env, NULL};
    char want[128];
    snprintf(want, sizeof want,
             "speaks kin protocol version %u, its parent 0 "
             "version %u",
             KIN_PROTO_VERSION + 1, KIN_PROTO_VERSION);
    for (int i = 0; i < 2; i++) {
        char err[2048] = "";
        kin_spawn_opts o = {.name = "newer",
                            .exec = with_env,
                            .connect_timeout_ms = 30000,
                            .errbuf = err,
                            .errbuf_size = sizeof err};
        kin_child *c = NULL;
        double t0 = harness_now_ms();
        kin_err e = kin_spawn(masters[i], &o, &c);
        if (getenv("KIN_TEST_VERBOSE"))
            fprintf(stderr, "spawn took %.0f ms\n", harness_now_ms() - t0);
        if (e != KIN_EBADVERSION || !strstr(err, want) ||
            !strstr(strstr(err, want) + 1, want))
            print_error("%s: %s\n", kin_strerror(e), err);
        if (getenv("KIN_TEST_VERBOSE"))
            fprintf(stderr, "spawn error: %s\n", err);
        assert_int_equal(e, KIN_EBADVERSION);
        assert_null(c);
        const char *parent_says = strstr(err, want);
        assert_non_null(parent_says);
        /* The child's words, after the parent's. */
        const char *child_says = strstr(parent_says + 1, "cannot reach parent");
        assert_non_null(child_says);
        assert_non_null(strstr(child_says, want));
    }
}

int
main(void)
{
    kin_export("echo", fn_echo, NULL, KIN_POLICY_ANY);
    kin_export("key", fn_key, NULL, KIN_POLICY_PARENT);
    kin_export("log", fn_log, NULL, KIN_POLICY_ANY);
    if (kin_started_as_child()) {
        if (getenv("TEST_PROTO"))
            kin__proto_version_set((unsigned)atoi(getenv("TEST_PROTO")));
        return kin_init(NULL, NULL);
    }
    kin_diag_set_handler(on_log, NULL, KIN_LOG_INFO);
    if (zmq_curve_keypair(tree_pub, tree_sec)) {
        fprintf(stderr, "libzmq without CURVE\n");
        return 1;
    }
    snprintf(tree_key, sizeof tree_key, "%s:%s", tree_pub, tree_sec);
    if (getenv("KIN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KIN_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            exec_child_links_with_a_certificate_of_its_own, setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_child_certificate_admits_its_child_only, setup, teardown),
        cmocka_unit_test_setup_teardown(
            an_expired_certificate_admits_no_new_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(another_version_fails_the_spawn_at_once,
                                        setup, teardown),
    };
    return harness_run_group(tests);
}
