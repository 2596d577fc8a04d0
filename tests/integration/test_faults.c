/* Calls and logs across a bad network: run inside network namespace A of
 * tests/remote/hosts.sh (by with_hosts.sh), with children on host B over
 * ssh. nftables rules on A's end of the A-B link drop 1 % and 5 % of the
 * packets each way, cap the bandwidth, or drop everything (a blackout);
 * tests/remote/fault_relay, as ssh's ProxyCommand, delays every chunk with
 * jitter. Asserted:
 *  - under loss, a cap and delay, every call completes intact or fails with
 *    KIN_ETIMEOUT / KIN_EPEERGONE, within its deadline (plus 1 s), and
 *    most complete;
 *  - no call runs twice: the callee counts runs per token;
 *  - a log flood under loss: every record the subscriber did not get is
 *    counted as lost or dropped, and none comes twice;
 *  - with a 1 s heartbeat timeout, a 0.5 s blackout fails no call in
 *    flight, and a 3 s one fails each with KIN_EPEERGONE before it ends,
 *    and the child exits on its own.
 *
 *   tests/remote/with_hosts.sh test_faults FAULT_RELAY */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kin/kin.h>

#include "integration/harness.h"

#define HB_MS 200
#define LOSSY_HB_TIMEOUT_MS 5000
#define BLACKOUT_HB_TIMEOUT_MS 1000
#define CALL_DEADLINE_MS 5000
#define SLACK_MS 1000
#define TOKENS 100000
#define FLOOD 30000

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* cond is evaluated once: it may be a call. */
#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        bool req_ok_ = (cond);                                                 \
        CHECK(req_ok_, __VA_ARGS__);                                           \
        if (!req_ok_)                                                          \
            goto out;                                                          \
    } while (0)

/* --- served by the children on B ------------------------------------------
 */

static pthread_mutex_t runs_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char seen[TOKENS];
static unsigned runs, twice;

/* Not idempotent: counts its runs per token; echoes its payload. */
static kin_err
fn_bump(kin_call *c, void *arg)
{
    unsigned token;
    const char *s;
    size_t len;
    kin_err e = kin_call_args(c, "uS", &token, &s, &len);
    if (e)
        return e;
    pthread_mutex_lock(&runs_lock);
    runs++;
    if (token < TOKENS && seen[token]++)
        twice++;
    pthread_mutex_unlock(&runs_lock);
    return kin_call_return(c, "S", s, len);
}

/* Runs of bump so far, and how many of them repeated a token. */
static kin_err
fn_runs(kin_call *c, void *arg)
{
    pthread_mutex_lock(&runs_lock);
    unsigned r = runs, t = twice;
    pthread_mutex_unlock(&runs_lock);
    return kin_call_return(c, "uu", r, t);
}

static kin_err
fn_pid(kin_call *c, void *arg)
{
    return kin_call_return(c, "i", (int)getpid());
}

static kin_err
fn_sleep(kin_call *c, void *arg)
{
    int ms;
    kin_err e = kin_call_args(c, "i", &ms);
    return e ? e : kin_task_sleep(ms);
}

/* Logs n records "flood" numbered i = 0..n-1 as fast as it can. */
static kin_err
fn_flood(kin_call *c, void *arg)
{
    int n;
    kin_err e = kin_call_args(c, "i", &n);
    for (int i = 0; !e && i < n; i++)
        KIN_LOGI("flood", KIN_FINT("i", i));
    return e ? e : kin_call_return(c, "");
}

static kin_err
fn_hello(kin_call *c, void *arg)
{
    KIN_LOGI("hello");
    return kin_call_return(c, "");
}

/* --- helpers --------------------------------------------------------------
 */

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

/* Replaces the fault on A's end of the A-B link: `rule` is an nftables
 * statement applied to every packet in and out ("" removes the fault). */
static bool
fault(const char *rule)
{
    char file[300];
    snprintf(file, sizeof file, "%s/faults.nft", env("HOSTS_DIR"));
    FILE *f = fopen(file, "w");
    if (!f)
        return false;
    const char *veth = env("VETH_A");
    fprintf(f, "add table inet kin_faults\ndelete table inet kin_faults\n");
    if (*rule)
        fprintf(f,
                "table inet kin_faults {\n"
                "  chain in { type filter hook input priority 0; "
                "iifname \"%s\" %s; }\n"
                "  chain out { type filter hook output priority 0; "
                "oifname \"%s\" %s; }\n"
                "}\n",
                veth, rule, veth, rule);
    fclose(f);
    int st;
    char *out = harness_run(&st, "nft -f %s 2>&1", file);
    CHECK(st == 0, "nft -f %s (%s): %s", file, rule, out);
    free(out);
    return st == 0;
}

static kin_err
child_pid(kin_node *n, kin_child *c, int *pid)
{
    kin_msg *reply = NULL;
    kin_err e = kin_call_sync(n, kin_child_id(c), "pid", 10000, &reply, "");
    if (!e)
        e = kin_msg_unpack(reply, "i", pid);
    kin_msg_destroy(&reply);
    return e;
}

static kin_err
spawn_b(kin_node *n, const char *name, char **ssh_args, kin_child **out)
{
    char err[1024] = "";
    kin_spawn_opts o = {.name = name,
                        .host = env("IP_AB_B"),
                        .ssh_args = ssh_args,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_err e = kin_spawn(n, &o, out);
    CHECK(!e, "spawning %s on B: %s (%s)", name, kin_strerror(e), err);
    return e;
}

/* Calls from several threads for a while under a fault. */
#define CALLERS 2

typedef struct phase {
    const char *name;
    kin_node *n;
    uint32_t ctx;
    size_t payload;
    double secs;
    pthread_mutex_t lock;
    unsigned next_token, ok, timeouts, gone, other, late, corrupt;
    double worst_ms, sum_ok_ms;
    kin_err other_err;
} phase;

static unsigned tokens_issued;

static void *
caller(void *arg)
{
    phase *p = arg;
    char *buf = malloc(p->payload);
    double end = harness_now_ms() + p->secs * 1000;
    while (buf && harness_now_ms() < end) {
        pthread_mutex_lock(&p->lock);
        unsigned token = p->next_token++;
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i < p->payload; i++)
            buf[i] = (char)(token + i);
        kin_msg *reply = NULL;
        double t0 = harness_now_ms();
        kin_err e = kin_call_sync(p->n, p->ctx, "bump", CALL_DEADLINE_MS,
                                  &reply, "uS", token, buf, p->payload);
        double ms = harness_now_ms() - t0;
        const char *s;
        size_t len;
        bool intact = !e && !kin_msg_unpack(reply, "S", &s, &len) &&
                      len == p->payload && !memcmp(s, buf, len);
        kin_msg_destroy(&reply);
        pthread_mutex_lock(&p->lock);
        if (!e && intact) {
            p->ok++;
            p->sum_ok_ms += ms;
        } else if (!e)
            p->corrupt++;
        else if (e == KIN_ETIMEOUT)
            p->timeouts++;
        else if (e == KIN_EPEERGONE)
            p->gone++;
        else {
            p->other++;
            p->other_err = e;
        }
        if (ms > CALL_DEADLINE_MS + SLACK_MS)
            p->late++;
        if (ms > p->worst_ms)
            p->worst_ms = ms;
        pthread_mutex_unlock(&p->lock);
    }
    free(buf);
    return NULL;
}

/* Runs CALLERS callers of bump for secs under the current fault; checks
 * each outcome. Returns the mean latency of the calls that completed. */
static double
run_phase(const char *name, kin_node *n, kin_child *c, size_t payload,
          double secs)
{
    phase p = {.name = name,
               .n = n,
               .ctx = kin_child_id(c),
               .payload = payload,
               .secs = secs,
               .lock = PTHREAD_MUTEX_INITIALIZER,
               .next_token = tokens_issued};
    pthread_t t[CALLERS];
    for (int i = 0; i < CALLERS; i++)
        pthread_create(&t[i], NULL, caller, &p);
    for (int i = 0; i < CALLERS; i++)
        pthread_join(t[i], NULL);
    unsigned calls = p.next_token - tokens_issued;
    tokens_issued = p.next_token;
    double mean = p.ok ? p.sum_ok_ms / p.ok : 0;
    printf("%-22s %5u calls of %6zu B: %5u ok (mean %6.1f ms), %u timeout, "
           "%u peer-gone, %u other; slowest %.0f ms\n",
           name, calls, payload, p.ok, mean, p.timeouts, p.gone, p.other,
           p.worst_ms);
    CHECK(p.other == 0, "%s: %u calls failed with %s", name, p.other,
          kin_err_name(p.other_err));
    CHECK(p.corrupt == 0, "%s: %u replies did not echo the payload", name,
          p.corrupt);
    CHECK(p.late == 0, "%s: %u calls returned after their deadline + %d ms",
          name, p.late, SLACK_MS);
    CHECK(p.ok * 2 > calls, "%s: only %u of %u calls completed", name, p.ok,
          calls);
    return mean;
}

/* bump's run counts in c: no token ran twice, and no more ran than were
 * sent to it. */
static void
check_runs(kin_node *n, kin_child *c, unsigned sent)
{
    kin_msg *reply = NULL;
    unsigned r = 0, t = 0;
    kin_err e = kin_call_sync(n, kin_child_id(c), "runs", 10000, &reply, "");
    if (!e)
        e = kin_msg_unpack(reply, "uu", &r, &t);
    kin_msg_destroy(&reply);
    printf("%s: bump ran %u times for %u calls, %u token(s) twice\n",
           kin_child_name(c), r, sent, t);
    CHECK(!e, "runs: %s", kin_err_name(e));
    CHECK(t == 0, "%u calls of bump ran twice", t);
    CHECK(r <= sent, "bump ran %u times for %u calls", r, sent);
}

/* Has ctx log until one of its records reaches s (the subscription needs a
 * moment to reach a new publisher). */
static bool
logs_arrive(kin_node *n, uint32_t ctx, kin_logsub *s)
{
    double end = harness_now_ms() + 10000;
    while (harness_now_ms() < end) {
        kin_msg *reply = NULL;
        kin_call_sync(n, ctx, "hello", 5000, &reply, "");
        kin_msg_destroy(&reply);
        const kin_logrec *r;
        while (kin_logsub_next(s, 50, &r) == KIN_OK)
            if (r->kind == KIN_LOGREC_LOG && r->ctx == ctx)
                return true;
    }
    return false;
}

/* Counts a record of the flood (msg "flood", field i); says whether it
 * was "hello" (the record that follows the flood). */
static bool
take(const kin_logrec *rec, unsigned char *got, unsigned *distinct,
     unsigned *dup)
{
    if (rec->kind != KIN_LOGREC_LOG)
        return false;
    if (!strcmp(rec->msg, "hello"))
        return true;
    if (strcmp(rec->msg, "flood"))
        return false;
    for (size_t i = 0; i < rec->n_fields; i++)
        if (!strcmp(rec->fields[i].key, "i") && rec->fields[i].v.i >= 0 &&
            rec->fields[i].v.i < FLOOD) {
            if (got[rec->fields[i].v.i]++)
                (*dup)++;
            else
                (*distinct)++;
        }
    return false;
}

/* FLOOD records from c under the current fault, to a subscriber that
 * queues only 100 and reads none until the flood is over, so records are
 * lost on the way: each either reaches it once or is counted lost (a gap)
 * or dropped. A "hello" after the flood reveals a loss at its end. */
static void
log_flood(kin_node *n, kin_child *c)
{
    uint32_t ctx = kin_child_id(c);
    kin_logsub *s = NULL;
    kin_logsub_opts so = {.endpoint = kin_logs_frontend(n),
                          .ctxs = &ctx,
                          .n_ctxs = 1,
                          .rcvhwm = 100};
    kin_err e = kin_logsub_new(&s, &so);
    CHECK(!e, "subscribing: %s", kin_err_name(e));
    if (e)
        return;
    if (!logs_arrive(n, ctx, s)) {
        CHECK(false, "no record of the child reached the subscriber");
        kin_logsub_destroy(&s);
        return;
    }
    const kin_logrec *rec;
    while (kin_logsub_next(s, 200, &rec) == KIN_OK) {
    }
    kin_logsub_stats before, after;
    kin_logsub_stats_get(s, &before);
    static unsigned char got[FLOOD];
    memset(got, 0, sizeof got);
    unsigned distinct = 0, dup = 0;
    kin_msg *reply = NULL;
    e = kin_call_sync(n, ctx, "flood", 30000, &reply, "i", FLOOD);
    kin_msg_destroy(&reply);
    CHECK(!e, "flood: %s", kin_err_name(e));
    /* Read until the hello that follows the flood comes (10 s at most). */
    bool hello = false;
    double end = harness_now_ms() + 10000;
    while (!hello && harness_now_ms() < end) {
        e = kin_call_sync(n, ctx, "hello", 5000, &reply, "");
        kin_msg_destroy(&reply);
        while (kin_logsub_next(s, 200, &rec) == KIN_OK)
            hello |= take(rec, got, &distinct, &dup);
    }
    CHECK(hello, "no record after the flood came");
    kin_logsub_stats_get(s, &after);
    uint64_t lost = after.lost - before.lost,
             dropped = after.dropped - before.dropped;
    printf("log flood: %u of %d records came, %llu counted lost, %llu "
           "dropped, %u twice\n",
           distinct, FLOOD, (unsigned long long)lost,
           (unsigned long long)dropped, dup);
    CHECK(dup == 0, "%u records came twice", dup);
    CHECK(FLOOD - distinct <= lost + dropped,
          "%u records never came but only %llu were counted", FLOOD - distinct,
          (unsigned long long)(lost + dropped));
    kin_logsub_destroy(&s);
}

typedef struct inflight {
    kin_receiver *r;
    kin_err e;
    double ms;
} inflight;

/* Starts `count` sleeps of sleep_ms in c, blacks the link out for
 * blackout_ms, then waits for each with deadline wait_ms (from the start
 * of the blackout); results in calls[]. */
static void
blackout(kin_node *n, kin_child *c, int sleep_ms, int blackout_ms, int wait_ms,
         inflight *calls, int count)
{
    for (int i = 0; i < count; i++) {
        calls[i] = (inflight){.e = -1};
        kin_err e = kin_call_async(n, kin_child_id(c), "sleep", &calls[i].r,
                                   "i", sleep_ms);
        CHECK(!e, "sleep call: %s", kin_err_name(e));
    }
    /* Let the calls reach the child before the link goes dark. */
    usleep(100 * 1000);
    double t0 = harness_now_ms();
    fault("drop");
    bool lifted = false;
    for (int i = 0; i < count; i++) {
        if (!calls[i].r)
            continue;
        for (;;) {
            double now = harness_now_ms();
            if (!lifted && now - t0 >= blackout_ms) {
                fault("");
                lifted = true;
            }
            int left = (int)(t0 + wait_ms - now);
            int step = lifted ? left : (int)(t0 + blackout_ms - now);
            if (step < 1)
                step = 1;
            kin_msg *reply = NULL;
            kin_err e = kin_call_wait(calls[i].r, step, &reply);
            kin_msg_destroy(&reply);
            if (e != KIN_ETIMEOUT || (lifted && left <= 1)) {
                calls[i].e = e;
                calls[i].ms = harness_now_ms() - t0;
                break;
            }
        }
        kin_receiver_destroy(&calls[i].r);
    }
    while (!lifted && harness_now_ms() - t0 < blackout_ms)
        usleep(10 * 1000);
    if (!lifted)
        fault("");
}

int
main(int argc, char **argv)
{
    kin_export("bump", fn_bump, NULL, KIN_POLICY_ANY);
    kin_export("runs", fn_runs, NULL, KIN_POLICY_ANY);
    kin_export("pid", fn_pid, NULL, KIN_POLICY_ANY);
    kin_export("sleep", fn_sleep, NULL, KIN_POLICY_ANY);
    kin_export("flood", fn_flood, NULL, KIN_POLICY_ANY);
    kin_export("hello", fn_hello, NULL, KIN_POLICY_ANY);
    if (kin_started_as_child())
        return kin_init(NULL, NULL); /* never returns */
    if (argc != 2) {
        fprintf(stderr, "usage: with_hosts.sh %s FAULT_RELAY\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines survive an abrupt end */
    harness_log_setup();
    int st;
    char *out = harness_run(&st, "nft list tables 2>&1");
    free(out);
    if (st != 0) {
        printf("skipped: nft does not work here (apt-get install nftables)\n");
        return 77;
    }
    char *ssh_args[] = {"-F", (char *)env("SSH_CONFIG"), NULL};
    char proxy[600];
    snprintf(proxy, sizeof proxy, "ProxyCommand=%s 40 30 %%h %%p", argv[1]);
    char *relay_args[] = {"-F", (char *)env("SSH_CONFIG"), "-o", proxy, NULL};

    kin_node *n = NULL, *nb = NULL;
    kin_child *lossy = NULL, *slow = NULL, *dark = NULL;
    kin_node_opts no = {.heartbeat_ms = HB_MS,
                        .heartbeat_timeout_ms = LOSSY_HB_TIMEOUT_MS};
    kin_err e = kin_init(&n, &no);
    REQUIRE(!e, "kin_init: %s", kin_strerror(e));
    /* A second tree with the short heartbeat timeout, for the blackouts. */
    kin_node_opts nbo = {.name = "dark-master",
                         .heartbeat_ms = HB_MS,
                         .heartbeat_timeout_ms = BLACKOUT_HB_TIMEOUT_MS};
    e = kin_node_new(&nb, &nbo);
    REQUIRE(!e, "second master: %s", kin_strerror(e));

    REQUIRE(!spawn_b(n, "lossy", ssh_args, &lossy), "lossy");
    REQUIRE(!spawn_b(n, "slow", relay_args, &slow), "slow");

    /* A clean baseline, then loss, a cap, delay. */
    unsigned first = tokens_issued;
    double clean = run_phase("clean", n, lossy, 4096, 1);
    fault("numgen random mod 100 < 1 drop");
    run_phase("1% loss", n, lossy, 4096, 3);
    fault("numgen random mod 100 < 5 drop");
    run_phase("5% loss", n, lossy, 4096, 4);
    log_flood(n, lossy);
    fault("limit rate over 256 kbytes/second drop");
    run_phase("cap 256 KB/s", n, lossy, 65536, 4);
    fault("");
    check_runs(n, lossy, tokens_issued - first);

    first = tokens_issued;
    double delayed = run_phase("delay 40+0..30 ms", n, slow, 4096, 3);
    check_runs(n, slow, tokens_issued - first);
    /* The relay is in the path: each way adds at least 40 ms. */
    CHECK(delayed >= clean + 80,
          "calls through the relay took %.1f ms, "
          "clean ones %.1f ms: is it in the path?",
          delayed, clean);

    /* Blackouts, 1 s heartbeat timeout (a child started now: the loss and
     * the cap above could have delayed its heartbeats that long): 0.5 s
     * fails nothing in flight... */
    REQUIRE(!spawn_b(nb, "dark", ssh_args, &dark), "dark");
    int pid_dark = 0;
    REQUIRE(!child_pid(nb, dark, &pid_dark), "dark's pid");
    inflight calls[3];
    blackout(nb, dark, 1500, 500, 5000, calls, 3);
    for (int i = 0; i < 3; i++) {
        printf("0.5 s blackout: call %d: %s after %.0f ms\n", i,
               kin_err_name(calls[i].e), calls[i].ms);
        CHECK(calls[i].e == KIN_OK, "0.5 s blackout failed call %d: %s", i,
              kin_err_name(calls[i].e));
    }
    int pid_again = 0;
    CHECK(!child_pid(nb, dark, &pid_again) && pid_again == pid_dark,
          "dark is not the same process after a 0.5 s blackout");
    /* ... 3 s fails each with KIN_EPEERGONE while it lasts. */
    blackout(nb, dark, 20000, 3000, 6000, calls, 3);
    for (int i = 0; i < 3; i++) {
        printf("3 s blackout: call %d: %s after %.0f ms\n", i,
               kin_err_name(calls[i].e), calls[i].ms);
        CHECK(calls[i].e == KIN_EPEERGONE, "3 s blackout: call %d got %s", i,
              kin_err_name(calls[i].e));
        CHECK(calls[i].ms < 3000, "3 s blackout: call %d failed after %.0f ms",
              i, calls[i].ms);
    }
    CHECK(harness_wait_gone(pid_dark, 15000),
          "dark (pid %d) still runs after losing its parent", pid_dark);

out:
    fault("");
    kin_child_destroy(&dark);
    kin_child_destroy(&slow);
    kin_child_destroy(&lossy);
    kin_node_destroy(&nb);
    kin_node_destroy(&n);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("test_faults: OK\n");
    return failures ? 1 : 0;
}
