/* kin-log-bench: records per second through the log forwarder from N
 * publisher processes (default 4) to one subscriber, with every loss
 * accounted for (received + dropped + lost = logged), next to a raw libzmq
 * PUB -> XSUB/XPUB proxy -> SUB baseline taken in the same run. Prints a
 * table, or one JSON object with --json; reports, never fails on timings.
 * The executable is also its peers: a kin child when kin_init says so, a
 * raw publisher when run as `kin-log-bench --zmq-pub EP COUNT SIZE`. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include <kin/kin.h>

#include "logs/logs_test.h"

#define MAX_PUBS 16
#define RAW_SIZE 128 /* bytes per raw message, about a bench record */
#define DEADLINE_MS 60000

typedef struct config {
    bool json, quick, zmq, lossless;
    int pubs;
    int records; /* per publisher */
    char self[PATH_MAX];
} config;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- the publishers (kin children) ---------------------------------------- */

/* Logs count records as fast as the pipeline takes them: a producer that
 * outruns the publisher waits while its queue is more than half full,
 * rather than have the queue drop (drops would still be counted). */
static kin_err
flood(kin_call *c, void *arg)
{
    int count, paced;
    kin_err e = kin_call_args(c, "ib", &count, &paced);
    if (e)
        return e;
    kin_node *n = kin_call_node(c);
    for (int i = 0; i < count; i++) {
        if (paced && (i & 31) == 0) {
            size_t used, cap;
            for (;;) {
                kin__logs_backlog(n, &used, &cap);
                if (used <= cap / 2)
                    break;
                sched_yield();
            }
        }
        KIN_LOGI("bench", KIN_F("i", i), KIN_F("what", "a typical record"),
                 KIN_F("ms", 0.25));
    }
    kin__logs_stats st;
    kin__logs_stats_get(n, &st);
    return kin_call_return(c, "iU", count, st.dropped[1]);
}

/* [n]: logs "probe N", so the subscriber can tell which probe came last. */
static kin_err
probe(kin_call *c, void *arg)
{
    int n = 0;
    kin_err e = kin_call_args(c, "i", &n);
    if (e)
        return e;
    KIN_LOGF(KIN_LOG_INFO, "probe %d", n);
    return KIN_OK;
}

/* --- the subscriber ------------------------------------------------------- */

typedef struct counts {
    uint64_t bench, probes, dropped, lost;
    int last_probe; /* the number of the last probe seen */
} counts;

typedef struct subscriber {
    kin_logsub *sub;
    pthread_t thread;
    pthread_mutex_t mu;
    bool stop;
    uint32_t ids[MAX_PUBS];
    int n;
    counts c[MAX_PUBS];
    double first, last; /* bench records */
} subscriber;

static int
index_of(subscriber *s, uint32_t ctx)
{
    for (int i = 0; i < s->n; i++)
        if (s->ids[i] == ctx)
            return i;
    return -1;
}

static void *
sub_main(void *arg)
{
    subscriber *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        const kin_logrec *r;
        if (kin_logsub_next(s->sub, 50, &r))
            continue;
        pthread_mutex_lock(&s->mu);
        int i = index_of(s, r->ctx);
        if (i >= 0) {
            counts *c = &s->c[i];
            switch (r->kind) {
            case KIN_LOGREC_GAP:
                /* Gaps before joining are earlier records: not ours. */
                if (!r->before_join)
                    c->lost += r->count;
                break;
            case KIN_LOGREC_DROPPED:
                c->dropped += r->count;
                break;
            default:
                if (!strcmp(r->msg, "bench")) {
                    double t = now_s();
                    if (!s->first)
                        s->first = t;
                    s->last = t;
                    c->bench++;
                } else if (r->msg_len > 6 && !strncmp(r->msg, "probe ", 6)) {
                    c->probes++;
                    c->last_probe = atoi(r->msg + 6);
                }
                break;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* Probes publisher i until the last probe sent arrives; returns the probes
 * logged, -1 on timeout. Records of one publisher arrive in order, so when
 * its last probe is seen every record before it has come or shows as a
 * gap: nothing of it is still on its way. (Waiting for any probe was not
 * enough: a probe sent after an earlier slow one could still be on its way
 * when the count was taken, and showed as one unreported record.) */
static int
probe_until_seen(kin_node *n, subscriber *s, int i)
{
    static int next_probe = 1;
    double end = now_s() + DEADLINE_MS / 1e3;
    int sent = 0;
    while (now_s() < end) {
        int no = next_probe++;
        kin_msg *r = NULL;
        if (kin_call_sync(n, s->ids[i], "bench.probe", 5000, &r, "i", no) ==
            KIN_OK)
            sent++;
        kin_msg_destroy(&r);
        for (int k = 0; k < 20; k++) {
            pthread_mutex_lock(&s->mu);
            bool seen = s->c[i].last_probe == no;
            pthread_mutex_unlock(&s->mu);
            if (seen)
                return sent;
            usleep(1000);
        }
    }
    return -1;
}

typedef struct kin_result {
    double records_per_s, seconds;
    uint64_t logged, received, dropped, lost;
    int64_t unreported;
    bool ok;
} kin_result;

static void
run_kin(const config *cfg, kin_node *master, kin_result *res)
{
    memset(res, 0, sizeof *res);
    subscriber s = {.n = cfg->pubs};
    pthread_mutex_init(&s.mu, NULL);
    kin_child *kids[MAX_PUBS] = {0};
    for (int i = 0; i < cfg->pubs; i++) {
        char name[32];
        snprintf(name, sizeof name, "pub-%d", i);
        kin_spawn_opts o = {.name = name};
        if (kin_spawn(master, &o, &kids[i])) {
            fprintf(stderr, "kin-log-bench: spawn failed\n");
            goto out;
        }
        s.ids[i] = kin_child_id(kids[i]);
    }
    kin_logsub_opts so = {.endpoint = kin_logs_frontend(master),
                          .min_level = KIN_LOG_INFO,
                          .rcvhwm = 200000};
    if (kin_logsub_new(&s.sub, &so) ||
        pthread_create(&s.thread, NULL, sub_main, &s)) {
        fprintf(stderr, "kin-log-bench: subscriber failed\n");
        goto out;
    }
    int probes[MAX_PUBS];
    for (int i = 0; i < cfg->pubs; i++)
        if ((probes[i] = probe_until_seen(master, &s, i)) < 0)
            goto stop;
    /* Count from here: what came before was the subscription settling. */
    pthread_mutex_lock(&s.mu);
    counts base[MAX_PUBS];
    memcpy(base, s.c, sizeof base);
    s.first = s.last = 0;
    pthread_mutex_unlock(&s.mu);

    double t0 = now_s();
    kin_receiver *calls[MAX_PUBS] = {0};
    for (int i = 0; i < cfg->pubs; i++)
        kin_call_async(master, s.ids[i], "bench.flood", &calls[i], "ib",
                       cfg->records, 1);
    for (int i = 0; i < cfg->pubs; i++) {
        kin_msg *r = NULL;
        if (calls[i] && kin_call_wait(calls[i], DEADLINE_MS, &r) == KIN_OK)
            res->logged += (uint64_t)cfg->records;
        kin_msg_destroy(&r);
        kin_receiver_destroy(&calls[i]);
    }
    /* A probe after the flood accounts for everything before it. */
    int after[MAX_PUBS];
    for (int i = 0; i < cfg->pubs; i++)
        if ((after[i] = probe_until_seen(master, &s, i)) < 0)
            goto stop;
    pthread_mutex_lock(&s.mu);
    uint64_t probes_logged = 0, probes_got = 0;
    for (int i = 0; i < cfg->pubs; i++) {
        counts *c = &s.c[i], *b = &base[i];
        res->received += c->bench - b->bench;
        res->dropped += c->dropped - b->dropped;
        res->lost += c->lost - b->lost;
        probes_logged += (uint64_t)after[i];
        probes_got += c->probes - b->probes;
    }
    double last = s.last;
    pthread_mutex_unlock(&s.mu);
    res->seconds = last - t0;
    res->records_per_s = res->seconds > 0 ? res->received / res->seconds : 0;
    /* Gaps count lost probes too (same streams): what is left unexplained
     * once probes are counted on both sides is unreported loss. */
    res->unreported =
        (int64_t)(res->logged + probes_logged) -
        (int64_t)(res->received + probes_got + res->dropped + res->lost);
    res->lost -= probes_logged - probes_got; /* the bench records' share */
    res->ok = true;
stop:
    pthread_mutex_lock(&s.mu);
    s.stop = true;
    pthread_mutex_unlock(&s.mu);
    pthread_join(s.thread, NULL);
out:
    kin_logsub_destroy(&s.sub);
    for (int i = 0; i < cfg->pubs; i++)
        kin_child_destroy(&kids[i]);
    pthread_mutex_destroy(&s.mu);
}

/* --- raw libzmq baseline -------------------------------------------------- */

/* Publisher process: XPUB (so it can wait for the subscription) with
 * NODROP and blocking sends, so nothing is lost. */
static int
zmq_pub_main(const char *ep, int count, int size)
{
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_XPUB);
    int one = 1, hwm = 10000;
    zmq_setsockopt(pub, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_setsockopt(pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_connect(pub, ep))
        return 1;

    char sub[16];
    if (zmq_recv(pub, sub, sizeof sub, 0) < 0)
        return 1;

    char *msg = calloc(1, (size_t)size);
    msg[0] = 'I';
    for (int i = 0; i < count; i++) {
        memcpy(msg + 1, &i, sizeof i);
        while (zmq_send(pub, msg, (size_t)size, 0) < 0 && errno == EINTR)
            ;
    }
    free(msg);
    int linger = 5000;
    zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    return 0;
}

typedef struct raw_proxy {
    void *ctx, *xsub, *xpub, *ctl;
    char back[256];
} raw_proxy;

static void *
proxy_main(void *arg)
{
    raw_proxy *p = arg;
    zmq_proxy_steerable(p->xsub, p->xpub, NULL, p->ctl);
    return NULL;
}

static double
run_zmq(const config *cfg)
{
    raw_proxy p = {.ctx = zmq_ctx_new()};
    int hwm = 10000;
    p.xsub = zmq_socket(p.ctx, ZMQ_XSUB);
    p.xpub = zmq_socket(p.ctx, ZMQ_XPUB);
    p.ctl = zmq_socket(p.ctx, ZMQ_PAIR);
    zmq_setsockopt(p.xsub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(p.xpub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    /* The baseline loses nothing: the proxy waits for the subscriber and
     * the publishers for the proxy. */
    int one = 1;
    zmq_setsockopt(p.xpub, ZMQ_XPUB_NODROP, &one, sizeof one);
    char front[256];
    snprintf(p.back, sizeof p.back, "ipc:///tmp/kin-log-bench-%d-in",
             (int)getpid());
    snprintf(front, sizeof front, "ipc:///tmp/kin-log-bench-%d-out",
             (int)getpid());
    zmq_bind(p.xsub, p.back);
    zmq_bind(p.xpub, front);
    zmq_bind(p.ctl, "inproc://kin-log-bench-ctl");
    void *sub = zmq_socket(p.ctx, ZMQ_SUB);
    int rhwm = 200000;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &rhwm, sizeof rhwm);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "I", 1);
    zmq_connect(sub, front);
    pthread_t t;
    pthread_create(&t, NULL, proxy_main, &p);

    pid_t pids[MAX_PUBS];
    char count[32], size[32];
    snprintf(count, sizeof count, "%d", cfg->records);
    snprintf(size, sizeof size, "%d", RAW_SIZE);
    for (int i = 0; i < cfg->pubs; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            execl(cfg->self, cfg->self, "--zmq-pub", p.back, count, size,
                  (char *)NULL);
            _exit(127);
        }
    }
    uint64_t want = (uint64_t)cfg->pubs * (uint64_t)cfg->records, got = 0;
    int timeout = 5000; /* between two messages */
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char buf[RAW_SIZE];
    double first = 0, last = 0;
    while (got < want) {
        if (zmq_recv(sub, buf, sizeof buf, 0) < 0)
            break;
        last = now_s();
        if (!first)
            first = last;
        got++;
    }
    for (int i = 0; i < cfg->pubs; i++) {
        if (got < want)
            kill(pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
    }
    void *stop = zmq_socket(p.ctx, ZMQ_PAIR);
    zmq_connect(stop, "inproc://kin-log-bench-ctl");
    zmq_send(stop, "TERMINATE", 9, 0);
    pthread_join(t, NULL);
    int zero = 0;
    void *socks[] = {stop, sub, p.xsub, p.xpub, p.ctl};
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++) {
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(socks[i]);
    }
    zmq_ctx_term(p.ctx);
    /* The first message arrives once every publisher is connected: the
     * rate is from there, as for kin where subscriptions settle first. */
    return got == want && last > first ? (double)(got - 1) / (last - first) : 0;
}

/* --- main ----------------------------------------------------------------- */

static void
usage(FILE *f)
{
    fprintf(f, "usage: kin-log-bench [--json] [--quick] [--no-zmq] "
               "[--publishers N] [--records N]\n"
               "  --records N     per publisher (default 250000; --quick "
               "20000)\n"
               "  --publishers N  publisher processes (default 4)\n");
}

int
main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "--zmq-pub"))
        return zmq_pub_main(argv[2], atoi(argv[3]), atoi(argv[4]));
    kin_export("bench.flood", flood, NULL, KIN_POLICY_PARENT);
    kin_export("bench.probe", probe, NULL, KIN_POLICY_PARENT);
    config cfg = {.zmq = true, .pubs = 4, .records = 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            cfg.json = true;
        else if (!strcmp(argv[i], "--quick"))
            cfg.quick = true;
        else if (!strcmp(argv[i], "--no-zmq"))
            cfg.zmq = false;
        else if (!strcmp(argv[i], "--publishers") && i + 1 < argc)
            cfg.pubs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--records") && i + 1 < argc)
            cfg.records = atoi(argv[++i]);
        else if (!kin_started_as_child()) {
            usage(!strcmp(argv[i], "--help") ? stdout : stderr);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (cfg.pubs < 1 || cfg.pubs > MAX_PUBS)
        cfg.pubs = 4;
    if (cfg.records <= 0)
        cfg.records = cfg.quick ? 20000 : 250000;
    ssize_t len = readlink("/proc/self/exe", cfg.self, sizeof cfg.self - 1);
    cfg.self[len > 0 ? len : 0] = 0;

    /* Two runs: a lossless forwarder (it waits for the subscriber, so the
     * publishers' paced producers wait too) gives the sustained rate; the
     * default one (a slow subscriber loses records, reported as gaps)
     * shows what gets through under overload. */
    kin_result k, over;
    for (int run = 0; run < 2; run++) {
        kin__logs_tuning t = {.fwd_lossless = run == 0 ? 1 : -1};
        kin__logs_tune(&t);
        kin_node *master;
        kin_err e = kin_init(&master, NULL); /* a child serves, never returns */
        if (e) {
            fprintf(stderr, "kin-log-bench: kin_init: %s\n", kin_strerror(e));
            return 1;
        }
        run_kin(&cfg, master, run == 0 ? &k : &over);
        kin_node_destroy(&master);
    }
    double zmq_rate = cfg.zmq ? run_zmq(&cfg) : 0;

    if (cfg.json) {
        printf("{\"publishers\":%d,\"records_per_publisher\":%d,"
               "\"records_per_s\":%.0f,\"seconds\":%.3f,\"logged\":%llu,"
               "\"received\":%llu,\"dropped\":%llu,\"lost\":%llu,"
               "\"unreported\":%lld,",
               cfg.pubs, cfg.records, k.records_per_s, k.seconds,
               (unsigned long long)k.logged, (unsigned long long)k.received,
               (unsigned long long)k.dropped, (unsigned long long)k.lost,
               (long long)k.unreported);
        printf("\"overload_records_per_s\":%.0f,\"overload_logged\":%llu,"
               "\"overload_received\":%llu,\"overload_dropped\":%llu,"
               "\"overload_lost\":%llu,\"overload_unreported\":%lld,"
               "\"zmq_msgs_per_s\":%.0f}\n",
               over.records_per_s, (unsigned long long)over.logged,
               (unsigned long long)over.received,
               (unsigned long long)over.dropped, (unsigned long long)over.lost,
               (long long)over.unreported, zmq_rate);
    } else {
        printf("kin-log-bench: %d publisher processes x %d records -> "
               "forwarder -> 1 subscriber\n",
               cfg.pubs, cfg.records);
        const kin_result *rs[2] = {&k, &over};
        const char *names[2] = {"sustained (lossless fwd)",
                                "overload (default fwd)"};
        for (int i = 0; i < 2; i++) {
            const kin_result *r = rs[i];
            printf("  %-26s %10.0f records/s  logged %llu = received %llu + "
                   "dropped %llu + lost %llu; unreported %lld\n",
                   names[i], r->records_per_s, (unsigned long long)r->logged,
                   (unsigned long long)r->received,
                   (unsigned long long)r->dropped, (unsigned long long)r->lost,
                   (long long)r->unreported);
        }
        if (cfg.zmq)
            printf("  %-26s %10.0f msgs/s (%d-byte messages, lossless)\n",
                   "raw zmq baseline", zmq_rate, RAW_SIZE);
    }
    return k.ok && over.ok ? 0 : 1;
}
