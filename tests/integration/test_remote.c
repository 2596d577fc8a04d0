/* The ssh factory across real hosts: run inside network namespace A of
 * tests/remote/hosts.sh (by with_hosts.sh), with real sshds in B and C. It
 * spawns a context on B over ssh (this executable streamed there), a
 * grandchild on C via B (A has no route to C), calls both, reads `kin ps`
 * and `kin pstree` over the whole tree, receives their forwarded log
 * records, then cuts the A-B link: callers must get KIN_EPEERGONE within
 * the heartbeat timeout and both remote contexts must exit on their own.
 *
 *   tests/remote/with_hosts.sh test_remote HOSTS_SH KIN_CLI */
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kin/kin.h>

#include "integration/harness.h"
#include "router/curve.h"
#include "router/router.h"

#define HB_MS 200
#define HB_TIMEOUT_MS 1500

static int failures;
static int skipped; /* checks this machine could not run: exit 77 */

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        CHECK(cond, __VA_ARGS__);                                              \
        if (!(cond))                                                           \
            goto out;                                                          \
    } while (0)

/* --- served in every context ---------------------------------------------
 */

/* The network namespace ("net:[INODE]") and pid this context runs in. */
static kin_err
fn_where(kin_call *c, void *arg)
{
    char ns[64] = "";
    ssize_t len = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
    if (len > 0)
        ns[len] = 0;
    return kin_call_return(c, "si", ns, (int)getpid());
}

/* The endpoint this context's link to its parent connects to. */
static kin_err
fn_parent_endpoint(kin_call *c, void *arg)
{
    return kin_call_return(c, "s", getenv("KIN_CHILD_ENDPOINT"));
}

/* The CURVE key this context holds, as kin__curve_format writes it. */
static kin_err
fn_key(kin_call *c, void *arg)
{
    char text[KIN__KEY_TEXT_LEN];
    kin__curve_format(kin__node_curve(kin_call_node(c)), text);
    return kin_call_return(c, "s", text);
}

static kin_err
fn_echo(kin_call *c, void *arg)
{
    const char *s;
    size_t len;
    kin_err e = kin_call_args(c, "S", &s, &len);
    return e ? e : kin_call_return(c, "S", s, len);
}

/* Sleeps (cancellably) for the given ms: a call in flight during the cut. */
static kin_err
fn_sleep(kin_call *c, void *arg)
{
    int ms;
    kin_err e = kin_call_args(c, "i", &ms);
    if (!e)
        e = kin_task_sleep(ms);
    return e;
}

/* Calls sleep in another context: a chain A -> B -> C for pstree. */
static kin_err
fn_relay(kin_call *c, void *arg)
{
    unsigned ctx;
    int ms;
    kin_err e = kin_call_args(c, "ui", &ctx, &ms);
    kin_msg *reply = NULL;
    if (!e)
        e = kin_call_sync(kin_call_node(c), ctx, "sleep", KIN_FOREVER, &reply,
                          "i", ms);
    kin_msg_destroy(&reply);
    return e;
}

static kin_err
fn_log(kin_call *c, void *arg)
{
    char *text = NULL;
    kin_err e = kin_call_args(c, "s", &text);
    if (!e)
        KIN_LOGI("remote says", KIN_FSTR("text", text));
    free(text);
    return e;
}

/* --- helpers --------------------------------------------------------------
 */

/* The test hosts' settings, from tests/remote/with_hosts.sh. */
static const char *
env(const char *key)
{
    const char *v = getenv(key);
    if (!v) {
        fprintf(stderr, "%s is not set: run me through with_hosts.sh\n", key);
        exit(1);
    }
    return v;
}

static kin_err
where(kin_node *n, uint32_t ctx, char *ns, size_t size, int *pid)
{
    kin_msg *reply = NULL;
    char *s = NULL;
    kin_err e = kin_call_sync(n, ctx, "where", 10000, &reply, "");
    if (!e)
        e = kin_msg_unpack(reply, "si", &s, pid);
    if (!e)
        snprintf(ns, size, "%s", s);
    free(s);
    kin_msg_destroy(&reply);
    return e;
}

/* Waits for a record saying `text` from context ctx in the JSON-lines log
 * file, up to timeout_ms. */
static bool
log_seen(const char *file, const char *text, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    char line[4096];
    do {
        FILE *f = fopen(file, "r");
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, text)) {
                fclose(f);
                return true;
            }
        if (f)
            fclose(f);
        usleep(20000);
    } while (harness_now_ms() < end);
    return false;
}

/* Whether `kin tree` output has the row of context id: `depth` levels
 * deep, with its name, host (the column keeps 16 bytes) and pid. */
static bool
tree_row(const char *out, int depth, uint32_t id, const char *name,
         const char *host, int pid)
{
    for (const char *l = out; l && *l;) {
        int indent = (int)strspn(l, " ");
        unsigned rid;
        char rname[64], rhost[64];
        int rpid;
        if (indent == depth * 2 &&
            sscanf(l, "%u %63s %63s %d", &rid, rname, rhost, &rpid) == 4 &&
            rid == id && !strcmp(rname, name) && !strncmp(rhost, host, 16) &&
            rpid == pid)
            return true;
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    return false;
}

/* Whether `kin ps` output has a row of a task running fn in context id,
 * which it names ctx_name. */
static bool
ps_row(const char *out, uint32_t id, const char *ctx_name, const char *fn)
{
    for (const char *l = out; l && *l;) {
        unsigned rid, task;
        char rctx[64], rname[64], rfn[64];
        if (sscanf(l, "%u:%u %63s %63s %63s", &rid, &task, rctx, rname, rfn) ==
                5 &&
            rid == id && !strcmp(rctx, ctx_name) && !strcmp(rfn, fn))
            return true;
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    return false;
}

#define MARKER "kin-secret-payload-on-the-veth"
#define CONTROL "plaintext-control-on-the-veth"

/* Captures A's end of the A-B link while calls carrying MARKER go to ctx
 * over tcp+CURVE: the capture must not contain it, while a plaintext
 * CONTROL line sent to B's sshd port on the same link shows up in it. */
static void
sniff_the_veth(kin_node *n, uint32_t ctx)
{
    if (access("/usr/bin/tcpdump", X_OK)) {
        printf("skipped: the sniff check (no /usr/bin/tcpdump)\n");
        skipped++;
        return;
    }
    char pcap[300], cmd[600];
    snprintf(pcap, sizeof pcap, "%s/veth.pcap", env("HOSTS_DIR"));
    pid_t pid = harness_capture_start(env("VETH_A"), "tcp", pcap);
    CHECK(pid > 0, "tcpdump did not start capturing");
    if (pid <= 0)
        return;
    for (int i = 0; i < 10; i++) {
        kin_msg *reply = NULL;
        CHECK(kin_call_sync(n, ctx, "echo", 5000, &reply, "s", MARKER) ==
                  KIN_OK,
              "echo to d");
        kin_msg_destroy(&reply);
    }
    snprintf(cmd, sizeof cmd,
             "bash -c 'exec 3<>/dev/tcp/%s/%s; echo %s >&3; sleep 0.2' "
             ">/dev/null 2>&1",
             env("IP_AB_B"), env("SSH_PORT"), CONTROL);
    if (system(cmd)) {
    }
    harness_capture_stop(pid, pcap, CONTROL, 1);
    size_t control = harness_count_in_file(pcap, CONTROL),
           secret = harness_count_in_file(pcap, MARKER);
    printf("veth capture: %zu plaintext control hits, %zu kin hits\n", control,
           secret);
    CHECK(control > 0, "the capture did not see the plaintext control");
    CHECK(secret == 0, "the call's payload is readable on the wire");
}

/* Waiting on a child started via another context: many waiters hold none
 * of via's workers for long (via keeps answering), and a stop ends the
 * child and every wait. */
#define WAITERS 6

typedef struct waiter {
    kin_child *c;
    kin_err e;
} waiter;

static void *
wait_proxy(void *p)
{
    waiter *w = p;
    w->e = kin_child_wait(w->c, KIN_FOREVER, NULL);
    return NULL;
}

static void
proxy_waits_and_stop(kin_node *n, uint32_t via, char **ssh_args)
{
    char err[512] = "";
    kin_child *c2 = NULL;
    kin_spawn_opts o = {.name = "c2",
                        .host = env("IP_BC_C"),
                        .ssh_args = ssh_args,
                        .via = via,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_err e = kin_spawn(n, &o, &c2);
    CHECK(!e, "spawning c2 via %u: %s (%s)", via, kin_strerror(e), err);
    if (e)
        return;
    char ns[64];
    int pid_c2 = 0;
    CHECK(where(n, kin_child_id(c2), ns, sizeof ns, &pid_c2) == KIN_OK,
          "where c2");
    waiter w[WAITERS];
    pthread_t t[WAITERS];
    for (int i = 0; i < WAITERS; i++) {
        w[i] = (waiter){.c = c2, .e = -1};
        pthread_create(&t[i], NULL, wait_proxy, &w[i]);
    }
    /* More waiters than via has workers: via still answers. */
    double t0 = harness_now_ms();
    kin_msg *reply = NULL;
    e = kin_call_sync(n, via, "where", 3000, &reply, "");
    kin_msg_destroy(&reply);
    CHECK(!e, "via did not answer with %d waiters on c2: %s (%.0f ms)", WAITERS,
          kin_err_name(e), harness_now_ms() - t0);
    int status = -1;
    e = kin_child_stop(c2, &status);
    CHECK(e == KIN_OK, "stopping c2 through via: %s", kin_err_name(e));
    for (int i = 0; i < WAITERS; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].e == KIN_OK, "waiter %d: %s", i, kin_err_name(w[i].e));
    }
    CHECK(harness_wait_gone(pid_c2, 5000), "c2 (pid %d) still runs", pid_c2);
    kin_child_destroy(&c2);
}

/* Many spawns to one host at once: sshd refuses bursts of unauthenticated
 * connections beyond MaxStartups (10 by default); kin retries those. */
#define BURST 16

typedef struct burst_arg {
    kin_node *n;
    char **ssh_args;
    int index;
    kin_child *c;
    kin_err e;
    char err[512];
} burst_arg;

static void *
burst_spawn(void *p)
{
    burst_arg *a = p;
    char name[16];
    snprintf(name, sizeof name, "burst-%d", a->index);
    kin_spawn_opts o = {.name = name,
                        .host = env("IP_AB_B"),
                        .ssh_args = a->ssh_args,
                        .errbuf = a->err,
                        .errbuf_size = sizeof a->err};
    a->e = kin_spawn(a->n, &o, &a->c);
    return NULL;
}

static void
spawn_burst(kin_node *n, char **ssh_args)
{
    burst_arg args[BURST];
    pthread_t t[BURST];
    double t0 = harness_now_ms();
    for (int i = 0; i < BURST; i++) {
        args[i] = (burst_arg){.n = n, .ssh_args = ssh_args, .index = i};
        pthread_create(&t[i], NULL, burst_spawn, &args[i]);
    }
    int ok = 0;
    for (int i = 0; i < BURST; i++) {
        pthread_join(t[i], NULL);
        ok += args[i].e == KIN_OK;
        if (args[i].e)
            printf("burst-%d: %s: %s\n", i, kin_err_name(args[i].e),
                   args[i].err);
    }
    printf("%d of %d spawns at once to one host came up in %.0f ms\n", ok,
           BURST, harness_now_ms() - t0);
    CHECK(ok == BURST, "only %d of %d spawns at once came up", ok, BURST);
    for (int i = 0; i < BURST; i++)
        kin_child_destroy(&args[i].c);
}

/* Has ctx log until one of its records comes through s (10 s at most):
 * the subscription needs a moment to reach a new publisher. */
static bool
logs_arrive(kin_node *n, uint32_t ctx, kin_logsub *s)
{
    double end = harness_now_ms() + 10000;
    while (harness_now_ms() < end) {
        kin_msg *reply = NULL;
        kin_call_sync(n, ctx, "log", 5000, &reply, "s", "hello");
        kin_msg_destroy(&reply);
        const kin_logrec *r;
        while (kin_logsub_next(s, 50, &r) == KIN_OK)
            if (r->kind == KIN_LOGREC_LOG && r->ctx == ctx)
                return true;
    }
    return false;
}

/* A master bound on `bind` starts a child on B over ssh; its link to the
 * parent connects to an endpoint starting with `want`, and its log records
 * reach the master's forwarder. */
static void
tcp_parent(const char *bind, const char *want, char **ssh_args)
{
    char err[1024] = "";
    kin_node_opts to = {.name = "tcp-master",
                        .bind = bind,
                        .heartbeat_ms = HB_MS,
                        .heartbeat_timeout_ms = HB_TIMEOUT_MS};
    kin_node *tn = NULL;
    kin_child *d = NULL;
    kin_logsub *ds = NULL;
    kin_msg *reply = NULL;
    kin_err e = kin_node_new(&tn, &to);
    CHECK(!e, "master on %s: %s", bind, kin_strerror(e));
    kin_spawn_opts od = {.name = "d",
                         .host = env("IP_AB_B"),
                         .ssh_args = ssh_args,
                         .errbuf = err,
                         .errbuf_size = sizeof err};
    if (!e && (e = kin_spawn(tn, &od, &d)))
        CHECK(false, "spawning d from %s: %s (%s)", bind, kin_strerror(e), err);
    if (!e) {
        char *pe = NULL;
        e = kin_call_sync(tn, kin_child_id(d), "parent_endpoint", 10000, &reply,
                          "");
        CHECK(!e && !kin_msg_unpack(reply, "s", &pe) && pe &&
                  !strncmp(pe, want, strlen(want)),
              "d's parent endpoint is %s, not %s...", pe ? pe : "?", want);
        free(pe);
        kin_msg_destroy(&reply);
        /* d holds a certificate of its own, whose server is the tree's
         * key, not the tree's secret. */
        char *key = NULL;
        kin__curve_key k = {{0}, {0}, {0}};
        e = kin_call_sync(tn, kin_child_id(d), "key", 10000, &reply, "");
        CHECK(!e && !kin_msg_unpack(reply, "s", &key) && key &&
                  !kin__curve_parse(&k, key) &&
                  !strcmp(k.server, kin__node_curve(tn)->pub) &&
                  strcmp(k.pub, kin__node_curve(tn)->pub),
              "d holds public key %s (server %s), not a certificate of "
              "its own for tree key %s",
              k.pub, k.server, kin__node_curve(tn)->pub);
        free(key);
        kin_msg_destroy(&reply);
        kin_logsub_opts so = {.endpoint = kin_logs_frontend(tn),
                              .min_level = KIN_LOG_INFO};
        CHECK(kin_logsub_new(&ds, &so) == KIN_OK, "subscribing at tn");
        CHECK(ds && logs_arrive(tn, kin_child_id(d), ds),
              "d's records never reached the forwarder of %s", bind);
        /* And a grandchild on C, started via d: its records too. */
        kin_child *e2 = NULL;
        kin_spawn_opts oe = {.name = "e",
                             .host = env("IP_BC_C"),
                             .ssh_args = ssh_args,
                             .via = kin_child_id(d),
                             .errbuf = err,
                             .errbuf_size = sizeof err};
        kin_err ee = kin_spawn(tn, &oe, &e2);
        CHECK(!ee, "spawning e via d: %s (%s)", kin_strerror(ee), err);
        CHECK(ee || (ds && logs_arrive(tn, kin_child_id(e2), ds)),
              "e's records never reached the forwarder of %s", bind);
        kin_child_destroy(&e2);
        if (!strncmp(want, "tcp://", 6))
            sniff_the_veth(tn, kin_child_id(d));
        /* ssh killed: the child ends with it, whichever way it links. */
        char ns[64];
        int pid_d = 0;
        CHECK(where(tn, kin_child_id(d), ns, sizeof ns, &pid_d) == KIN_OK,
              "where d");
        kill(kin_child_pid(d), SIGKILL);
        CHECK(harness_wait_gone(pid_d, 10000),
              "d (pid %d) outlived its ssh (parent on %s)", pid_d, bind);
    }
    kin_logsub_destroy(&ds);
    kin_child_destroy(&d);
    kin_node_destroy(&tn);
}

int
main(int argc, char **argv)
{
    kin_export("where", fn_where, NULL, KIN_POLICY_ANY);
    kin_export("echo", fn_echo, NULL, KIN_POLICY_ANY);
    kin_export("sleep", fn_sleep, NULL, KIN_POLICY_ANY);
    kin_export("log", fn_log, NULL, KIN_POLICY_ANY);
    kin_export("relay", fn_relay, NULL, KIN_POLICY_ANY);
    kin_export("parent_endpoint", fn_parent_endpoint, NULL, KIN_POLICY_ANY);
    kin_export("key", fn_key, NULL, KIN_POLICY_ANY);
    if (kin_started_as_child())
        return kin_init(NULL, NULL); /* never returns */
    if (argc != 3) {
        fprintf(stderr, "usage: with_hosts.sh %s HOSTS_SH KIN_CLI\n", argv[0]);
        return 2;
    }
    harness_log_setup();
    const char *hosts_sh = argv[1], *kin_cli = argv[2];
    const char *dir = env("HOSTS_DIR");
    char log_file[300];
    snprintf(log_file, sizeof log_file, "%s/tree-log.jsonl", dir);

    kin_node *n = NULL;
    kin_child *b = NULL, *c = NULL;
    kin_receiver *rb = NULL, *rc = NULL;
    kin_node_opts no = {.heartbeat_ms = HB_MS,
                        .heartbeat_timeout_ms = HB_TIMEOUT_MS,
                        .log_file = log_file};
    kin_err e = kin_init(&n, &no);
    REQUIRE(!e, "kin_init: %s", kin_strerror(e));

    char *ssh_args[] = {"-F", (char *)env("SSH_CONFIG"), NULL};
    char err[1024] = "";
    char self_ns[64] = "";
    ssize_t sl = readlink("/proc/self/ns/net", self_ns, sizeof self_ns - 1);
    if (sl > 0)
        self_ns[sl] = 0;

    /* B over ssh, this executable streamed there. */
    double t0 = harness_now_ms();
    kin_spawn_opts ob = {.name = "b",
                         .host = env("IP_AB_B"),
                         .ssh_args = ssh_args,
                         .errbuf = err,
                         .errbuf_size = sizeof err};
    e = kin_spawn(n, &ob, &b);
    REQUIRE(!e, "spawning b over ssh: %s (%s)", kin_strerror(e), err);
    char ns_b[64], ns_c[64];
    int pid_b = 0, pid_c = 0;
    e = where(n, kin_child_id(b), ns_b, sizeof ns_b, &pid_b);
    REQUIRE(!e, "calling b: %s", kin_strerror(e));
    printf("spawn-to-first-call over ssh, A->B: %.1f ms\n",
           harness_now_ms() - t0);
    CHECK(strcmp(ns_b, self_ns) != 0, "b runs in A's namespace (%s)", ns_b);

    /* Failures say why, at once: no route from A to C, and a login ssh
     * refuses; nothing is left running. */
    kin_child *bad = NULL;
    char *no_key_args[] = {"-F", (char *)env("SSH_CONFIG"), "-o",
                           "PubkeyAuthentication=no", NULL};
    struct {
        const char *host;
        char **args;
        const char *program;
        const char *says;
    } bad_cases[] = {
        {env("IP_BC_C"), ssh_args, NULL, "unreachable"},
        {env("IP_AB_B"), no_key_args, NULL, "Permission denied"},
        {env("IP_AB_B"), ssh_args, "/no/such/kin-program", "not found"}};
    for (int i = 0; i < 3; i++) {
        err[0] = 0;
        kin_spawn_opts ox = {.name = "bad",
                             .host = bad_cases[i].host,
                             .ssh_args = bad_cases[i].args,
                             .program = bad_cases[i].program,
                             .connect_timeout_ms = 20000,
                             .errbuf = err,
                             .errbuf_size = sizeof err};
        t0 = harness_now_ms();
        e = kin_spawn(n, &ox, &bad);
        printf("spawn on %s: %s in %.0f ms: %s\n", bad_cases[i].host,
               kin_err_name(e), harness_now_ms() - t0, err);
        CHECK(e == KIN_ESPAWN && !bad && strstr(err, bad_cases[i].says),
              "a failed ssh spawn gave %s (%s)", kin_err_name(e), err);
        CHECK(harness_now_ms() - t0 < 10000, "the failure took too long");
        kin_child_destroy(&bad);
    }

    spawn_burst(n, ssh_args);

    /* C via B: A has no route to C at all. */
    t0 = harness_now_ms();
    kin_spawn_opts oc = {.name = "c",
                         .host = env("IP_BC_C"),
                         .ssh_args = ssh_args,
                         .via = kin_child_id(b),
                         .errbuf = err,
                         .errbuf_size = sizeof err};
    e = kin_spawn(n, &oc, &c);
    REQUIRE(!e, "spawning c via b: %s (%s)", kin_strerror(e), err);
    e = where(n, kin_child_id(c), ns_c, sizeof ns_c, &pid_c);
    REQUIRE(!e, "calling c: %s", kin_strerror(e));
    printf("spawn-to-first-call over ssh via B, A->C: %.1f ms\n",
           harness_now_ms() - t0);
    CHECK(strcmp(ns_c, self_ns) && strcmp(ns_c, ns_b),
          "c is not in a namespace of its own (%s)", ns_c);
    proxy_waits_and_stop(n, kin_child_id(b), ssh_args);

    /* The sockets ssh forwards to B and C lead to ROUTERs that refuse
     * operators: a process there cannot borrow the parent's authority. */
    glob_t g;
    int tried = 0;
    if (glob("/tmp/kin-*-up.sock", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char ep[300];
            snprintf(ep, sizeof ep, "ipc://%s", g.gl_pathv[i]);
            kin_node *op = NULL;
            kin_node_opts oo = {.parent_endpoint = ep,
                                .parent_id = KIN_MASTER_ID,
                                .id = 0x80000123u,
                                .operator_link = true,
                                .connect_timeout_ms = 1000};
            kin_err oe = kin_node_new(&op, &oo);
            CHECK(oe == KIN_ETIMEOUT, "operator through %s: %s", ep,
                  kin_err_name(oe));
            kin_node_destroy(&op);
            tried++;
        }
        globfree(&g);
    }
    CHECK(tried > 0, "no forwarded socket found in /tmp");

    /* Calls both ways of the tree carry data intact. */
    char big[20000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    kin_msg *reply = NULL;
    const char *s;
    size_t len;
    e = kin_call_sync(n, kin_child_id(c), "echo", 10000, &reply, "S", big,
                      sizeof big);
    CHECK(!e && !kin_msg_unpack(reply, "S", &s, &len) && len == sizeof big &&
              !memcmp(s, big, len),
          "echo through b to c: %s", kin_strerror(e));
    kin_msg_destroy(&reply);

    int st;
    char *out;
    /* kin tree: the master here, b on host B under it, c on host C under
     * b, each with its pid there. */
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    out = harness_run(&st, "%s tree %d", kin_cli, (int)getpid());
    CHECK(st == 0 && tree_row(out, 0, KIN_MASTER_ID, kin_node_name(n), host,
                              (int)getpid()),
          "kin tree lacks the master's row (exit %d):\n%s", st, out);
    CHECK(tree_row(out, 1, kin_child_id(b), "b", "host-b", pid_b),
          "kin tree lacks b's row (pid %d on host-b):\n%s", pid_b, out);
    CHECK(tree_row(out, 2, kin_child_id(c), "c", "host-c", pid_c),
          "kin tree lacks c's row under b (pid %d on host-c):\n%s", pid_c, out);
    printf("%s", out);
    free(out);

    /* Their log records reach the master's forwarder. */
    e = kin_call_sync(n, kin_child_id(c), "log", 10000, &reply, "s",
                      "hello from c");
    kin_msg_destroy(&reply);
    CHECK(!e, "log call to c: %s", kin_strerror(e));
    e = kin_call_sync(n, kin_child_id(b), "log", 10000, &reply, "s",
                      "hello from b");
    kin_msg_destroy(&reply);
    CHECK(log_seen(log_file, "hello from c", 10000),
          "c's record never reached the master's log file");
    CHECK(log_seen(log_file, "hello from b", 10000),
          "b's record never reached the master's log file");

    /* A parent bound on tcp on its veth address: the child started over
     * ssh links straight back over tcp with CURVE, logs included. On
     * loopback, it cannot: the link is forwarded by ssh to the tcp
     * endpoint, still with CURVE. */
    char bind[64], want[64];
    snprintf(bind, sizeof bind, "tcp://%s:*", env("IP_AB_A"));
    snprintf(want, sizeof want, "tcp://%s:", env("IP_AB_A"));
    tcp_parent(bind, want, ssh_args);
    tcp_parent("tcp://127.0.0.1:*", "ipc:///tmp/kin-", ssh_args);

    /* Calls in flight: A -> b (relay) -> c (sleep), and A -> c. */
    e = kin_call_async(n, kin_child_id(b), "relay", &rb, "ui", kin_child_id(c),
                       60000);
    REQUIRE(!e, "async call to b: %s", kin_strerror(e));
    e = kin_call_async(n, kin_child_id(c), "sleep", &rc, "i", 60000);
    REQUIRE(!e, "async call to c: %s", kin_strerror(e));

    /* kin ps / pstree see the tasks of every context of the tree. */
    double end = harness_now_ms() + 10000;
    bool seen = false;
    for (;;) {
        out = harness_run(&st, "%s ps %d", kin_cli, (int)getpid());
        seen = st == 0 && ps_row(out, kin_child_id(b), "b", "relay") &&
               ps_row(out, kin_child_id(c), "c", "sleep");
        /* One clock reading decides: the last output is kept to show. */
        if (seen || harness_now_ms() >= end)
            break;
        free(out);
        usleep(50000);
    }
    CHECK(seen, "kin ps does not show relay in b and sleep in c:\n%s", out);
    printf("%s", out);
    free(out);
    out = harness_run(&st, "%s pstree %d", kin_cli, (int)getpid());
    CHECK(st == 0 && strstr(out, "relay") && strstr(out, "sleep"),
          "kin pstree lacks the relay -> sleep chain (exit %d):\n%s", st, out);
    printf("%s", out);
    free(out);

    /* An operator on host B (b's network and UTS namespaces: another host
     * name) reads the same tree through b, its master being elsewhere. Not
     * with this process's XDG_RUNTIME_DIR: b, started by sshd, has none. */
    out = harness_run(
        &st,
        "env -u XDG_RUNTIME_DIR nsenter --target %d --net --uts %s ps %d 2>&1",
        pid_b, kin_cli, pid_b);
    CHECK(st == 0 && strstr(out, "main") && strstr(out, "relay") &&
              strstr(out, "sleep"),
          "kin ps on host B (exit %d):\n%s", st, out);
    free(out);
    /* The logs are at the master's host: kin logs says so at once. */
    out = harness_run(
        &st,
        "env -u XDG_RUNTIME_DIR nsenter --target %d --net --uts %s logs "
        "%d 2>&1",
        pid_b, kin_cli, pid_b);
    CHECK(st == 2 && strstr(out, "run kin logs"),
          "kin logs on host B (exit %d):\n%s", st, out);
    free(out);

    /* Cut the A-B link. */
    out = harness_run(&st, "%s cut %s 2>&1", hosts_sh, dir);
    REQUIRE(st == 0, "hosts.sh cut: %s", out);
    free(out);
    t0 = harness_now_ms();
    kin_err eb = kin_call_wait(rb, HB_TIMEOUT_MS + 3000, &reply);
    double gone_b = harness_now_ms() - t0;
    kin_msg_destroy(&reply);
    kin_err ec = kin_call_wait(rc, HB_TIMEOUT_MS + 3000, &reply);
    double gone_c = harness_now_ms() - t0;
    kin_msg_destroy(&reply);
    printf("link cut: b's caller got %s after %.0f ms, c's after %.0f ms "
           "(heartbeat timeout %d ms)\n",
           kin_err_name(eb), gone_b, gone_c, HB_TIMEOUT_MS);
    CHECK(eb == KIN_EPEERGONE, "b's caller got %s", kin_err_name(eb));
    CHECK(ec == KIN_EPEERGONE, "c's caller got %s", kin_err_name(ec));
    CHECK(gone_b < HB_TIMEOUT_MS + 1000 && gone_c < HB_TIMEOUT_MS + 1000,
          "peer gone came later than the heartbeat timeout allows");
    /* And both remote contexts go away by themselves. */
    CHECK(harness_wait_gone(pid_b, HB_TIMEOUT_MS + 10000),
          "b (pid %d) still runs after the cut", pid_b);
    CHECK(harness_wait_gone(pid_c, HB_TIMEOUT_MS + 10000),
          "c (pid %d) still runs after the cut", pid_c);

out:
    kin_receiver_destroy(&rb);
    kin_receiver_destroy(&rc);
    kin_child_destroy(&c);
    kin_child_destroy(&b);
    kin_node_destroy(&n);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else if (skipped)
        printf("test_remote: OK, but %d check(s) skipped: exit 77\n", skipped);
    else
        printf("test_remote: OK\n");
    return failures ? 1 : skipped ? 77 : 0;
}
