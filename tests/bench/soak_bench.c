/* kin-soak: a tree run for a while under steady work, to see what grows.
 *
 * A master supervises three workers offering the service "soak" and a
 * logger; for --secs seconds (default 60) it keeps up:
 *  - steady calls: two threads calling soak.echo (256 bytes) at --rate
 *    calls/s in all (default 400), 2 s deadline each;
 *  - a supervised restart every --restart-every seconds (default 3): a
 *    worker, in turn, is killed with SIGKILL and its supervisor starts it
 *    again (calls to the service wait for it meanwhile);
 *  - a log flood: the logger logs --log-rate records/s (default 2000),
 *    read by a subscriber in the master that counts what came, was lost
 *    and was dropped;
 *  - operator queries: every second kin_monitor_ps of a worker and
 *    kin_monitor_graph of the whole tree (what `kin ps` and `kin pstree`
 *    do), through the API.
 * Every second it samples the master's and the logger's open fds, threads
 * and RSS, and the RSS of the whole tree; every --period seconds (default
 * 60) it prints a row: calls, errors, latency p50/p99/max, RSS, fds,
 * threads, restarts and log records of that period. At the end: slopes
 * per hour (least squares) of RSS over the per-second samples and of the
 * latency percentiles over the periods, and a raw-libzmq REQ/REP round
 * trip over ipc measured in the same run as a baseline for the call
 * latency.
 *
 * It asserts (exit 1 otherwise) that fds and threads stay flat after the
 * warm-up (--warmup, default a sixth of the run, at most 60 s): the
 * highest count in the second half of the samples after it is at most
 * the highest of the first half plus a small tolerance (fds 4, threads
 * 2), for the master and for the logger; that restarts happened; and
 * that no call took longer than its deadline plus 1 s. Everything else is
 * reported, not judged.
 *
 *   kin-soak [--secs N] [--period S] [--warmup S] [--rate N]
 *            [--restart-every S] [--log-rate N] [--json] */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include <kin/kin.h>

#include "tests/bench/bench_stats.h"

#define WORKERS 3
#define PAYLOAD 256
#define CALLERS 2
#define DEADLINE_MS 2000
#define FD_TOLERANCE 4
#define THREAD_TOLERANCE 2
#define MAX_SAMPLES 100000
#define MAX_PERIODS 10000
#define HIST_BUCKETS 1200 /* 1.02^1200 ns: beyond any deadline */

typedef struct config {
    double secs, period, warmup, restart_every;
    int rate, log_rate;
    bool json;
} config;

/* --- served by the children ------------------------------------------------
 */

static kin_err
fn_echo(kin_call *c, void *arg)
{
    const char *s;
    size_t len;
    kin_err e = kin_call_args(c, "S", &s, &len);
    return e ? e : kin_call_return(c, "S", s, len);
}

/* Logs `rate` records/s for `secs` seconds, in 10 ms ticks (cancellable). */
static kin_err
fn_flood(kin_call *c, void *arg)
{
    int rate, secs;
    kin_err e = kin_call_args(c, "ii", &rate, &secs);
    if (e)
        return e;
    uint64_t end = now_ns() + (uint64_t)secs * 1000000000u, i = 0;
    int per_tick = rate / 100 ? rate / 100 : 1;
    while (!e && now_ns() < end) {
        for (int k = 0; k < per_tick; k++, i++)
            KIN_LOGI("soak", KIN_FUINT("i", i));
        e = kin_task_sleep(10);
    }
    return e ? e : kin_call_return(c, "u", (unsigned)i);
}

/* --- process figures ------------------------------------------------------
 */

static long
count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n - (pid == getpid()); /* the directory's own fd */
}

/* A "Key:   value kB" line of /proc/PID/status; -1 if unreadable. */
static long
status_field(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

/* Least-squares slope of y over x (per unit of x); NAN with < 2 points. */
static double
slope(const double *x, const double *y, size_t n)
{
    if (n < 2)
        return NAN;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        sx += x[i];
        sy += y[i];
        sxx += x[i] * x[i];
        sxy += x[i] * y[i];
    }
    double d = (double)n * sxx - sx * sx;
    return d == 0 ? NAN : ((double)n * sxy - sx * sy) / d;
}

/* --- the run ----------------------------------------------------------------
 */

typedef struct period {
    double t_end;
    unsigned long calls, errors, restarts, queries, query_errors;
    unsigned long log_records;
    double p50_us, p99_us, max_us;
    long rss_kib, tree_rss_kib, fds, threads, logger_fds, logger_threads;
} period;

typedef struct sample {
    double t;
    long fds, threads, rss_kib, tree_rss_kib, logger_fds, logger_threads,
        logger_rss_kib;
} sample;

static struct {
    config cfg;
    kin_node *n;
    kin_supervisor *sup;
    atomic_bool stop;
    pthread_mutex_t mu;
    uint64_t *lat; /* this period's call latencies, ns */
    size_t nlat, caplat;
    /* Every call's latency over the run, in buckets 2 % wide (fixed
     * memory: the bench must not grow itself). */
    uint64_t hist[HIST_BUCKETS];
    uint64_t nhist;
    unsigned long calls, errors, late, err_timeout, err_gone, err_other;
    kin_err last_other;
    atomic_ulong log_records, log_lost, log_dropped;
    uint32_t logger_ctx;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t
bucket_of(uint64_t ns)
{
    size_t b = ns > 1 ? (size_t)(log((double)ns) / log(1.02)) : 0;
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* The q-quantile of the run's latencies, ns (a bucket's middle); NAN when
 * there were none. Under g.mu or after the callers ended. */
static double
hist_quantile(double q)
{
    if (!g.nhist)
        return NAN;
    uint64_t rank = (uint64_t)(q * (double)(g.nhist - 1)), seen = 0;
    for (size_t b = 0; b < HIST_BUCKETS; b++) {
        seen += g.hist[b];
        if (seen > rank)
            return pow(1.02, (double)b + 0.5);
    }
    return NAN;
}

static void *
caller(void *arg)
{
    (void)arg;
    char buf[PAYLOAD];
    memset(buf, 'x', sizeof buf);
    double gap_ns = 1e9 * CALLERS / g.cfg.rate;
    uint64_t next = now_ns();
    while (!atomic_load(&g.stop)) {
        uint64_t now = now_ns();
        if (now < next) {
            uint64_t d = next - now;
            struct timespec ts = {(time_t)(d / 1000000000u),
                                  (long)(d % 1000000000u)};
            nanosleep(&ts, NULL);
        }
        next += (uint64_t)gap_ns;
        if (next < now_ns() - 1000000000u)
            next = now_ns(); /* fell far behind (a stall): no burst */
        kin_msg *reply = NULL;
        uint64_t t0 = now_ns();
        kin_err e = kin_service_call(g.n, "soak.echo", DEADLINE_MS, &reply, "S",
                                     buf, sizeof buf);
        uint64_t dt = now_ns() - t0;
        kin_msg_destroy(&reply);
        pthread_mutex_lock(&g.mu);
        g.calls++;
        if (dt > (DEADLINE_MS + 1000) * 1000000ull)
            g.late++;
        if (!e) {
            if (g.nlat == g.caplat) {
                size_t cap = g.caplat ? g.caplat * 2 : 4096;
                uint64_t *p = realloc(g.lat, cap * sizeof *p);
                if (p) {
                    g.lat = p;
                    g.caplat = cap;
                }
            }
            if (g.nlat < g.caplat)
                g.lat[g.nlat++] = dt;
            g.hist[bucket_of(dt)]++;
            g.nhist++;
        } else {
            g.errors++;
            if (e == KIN_ETIMEOUT)
                g.err_timeout++;
            else if (e == KIN_EPEERGONE)
                g.err_gone++;
            else {
                g.err_other++;
                g.last_other = e;
            }
        }
        pthread_mutex_unlock(&g.mu);
    }
    return NULL;
}

static void *
subscriber(void *arg)
{
    kin_logsub *s = arg;
    const kin_logrec *r;
    while (!atomic_load(&g.stop)) {
        if (kin_logsub_next(s, 100, &r))
            continue;
        if (r->kind == KIN_LOGREC_LOG && r->ctx == g.logger_ctx &&
            !strcmp(r->msg, "soak"))
            atomic_fetch_add(&g.log_records, 1);
    }
    kin_logsub_stats st;
    kin_logsub_stats_get(s, &st);
    atomic_store(&g.log_lost, st.lost);
    atomic_store(&g.log_dropped, st.dropped);
    return NULL;
}

/* The raw libzmq baseline: REQ/REP round trips of PAYLOAD bytes over ipc
 * between two threads; median in us. */
static void *
zmq_rep(void *sock)
{
    char buf[PAYLOAD];
    for (;;) {
        int n = zmq_recv(sock, buf, sizeof buf, 0);
        if (n < 0 || zmq_send(sock, buf, (size_t)n, 0) < 0)
            return NULL;
    }
}

static double
zmq_baseline(size_t rounds)
{
    char ep[128];
    snprintf(ep, sizeof ep, "ipc:///tmp/kin-soak-zmq-%d.sock", (int)getpid());
    void *ctx = zmq_ctx_new();
    void *rep = zmq_socket(ctx, ZMQ_REP), *req = zmq_socket(ctx, ZMQ_REQ);
    double med = NAN;
    pthread_t t;
    if (zmq_bind(rep, ep) || zmq_connect(req, ep) ||
        pthread_create(&t, NULL, zmq_rep, rep))
        goto out;
    uint64_t *v = malloc(rounds * sizeof *v);
    char buf[PAYLOAD];
    memset(buf, 'x', sizeof buf);
    size_t got = 0;
    for (size_t i = 0; v && i < rounds; i++) {
        uint64_t t0 = now_ns();
        if (zmq_send(req, buf, sizeof buf, 0) < 0 ||
            zmq_recv(req, buf, sizeof buf, 0) < 0)
            break;
        v[got++] = now_ns() - t0;
    }
    med = got ? median(v, got) / 1000 : NAN;
    free(v);
    zmq_close(req);
    zmq_ctx_shutdown(ctx); /* ends zmq_rep's recv */
    pthread_join(t, NULL);
    zmq_close(rep);
out:
    zmq_ctx_term(ctx);
    unlink(ep + strlen("ipc://"));
    return med;
}

static unsigned
restarts_so_far(void)
{
    unsigned total = 0;
    for (size_t i = 0; i < kin_supervisor_count(g.sup); i++) {
        kin_child_info ci;
        if (!kin_supervisor_child_at(g.sup, i, &ci))
            total += ci.restarts;
    }
    return total;
}

static long
tree_rss(void)
{
    long total = status_field(getpid(), "VmRSS");
    for (size_t i = 0; i < kin_supervisor_count(g.sup); i++) {
        kin_child_info ci;
        if (!kin_supervisor_child_at(g.sup, i, &ci) && ci.pid > 0) {
            long r = status_field(ci.pid, "VmRSS");
            if (r > 0)
                total += r;
        }
    }
    return total;
}

static pid_t
child_pid(const char *name, uint32_t *id)
{
    kin_child_info ci;
    if (kin_supervisor_child(g.sup, name, &ci))
        return 0;
    if (id)
        *id = ci.id;
    return ci.pid;
}

static int
parse(int argc, char **argv, config *c)
{
    *c = (config){.secs = 60,
                  .period = 60,
                  .warmup = -1,
                  .restart_every = 3,
                  .rate = 400,
                  .log_rate = 2000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json"))
            c->json = true;
        else if (v && !strcmp(a, "--secs") && ++i)
            c->secs = atof(v);
        else if (v && !strcmp(a, "--period") && ++i)
            c->period = atof(v);
        else if (v && !strcmp(a, "--warmup") && ++i)
            c->warmup = atof(v);
        else if (v && !strcmp(a, "--rate") && ++i)
            c->rate = atoi(v);
        else if (v && !strcmp(a, "--restart-every") && ++i)
            c->restart_every = atof(v);
        else if (v && !strcmp(a, "--log-rate") && ++i)
            c->log_rate = atoi(v);
        else
            return -1;
    }
    if (c->warmup < 0)
        c->warmup = fmin(c->secs / 6, 60);
    if (c->secs < 10 || c->period < 1 || c->rate < 1 ||
        c->restart_every < 0.5 || c->log_rate < 1 || c->warmup >= c->secs / 2)
        return -1;
    return 0;
}

/* Whether the counts in the second half of the samples after the warm-up
 * stay within tol of the highest count of the first half. */
static bool
flat(const sample *s, size_t n, size_t from, size_t off, long tol,
     long *first_max, long *second_max)
{
    size_t mid = from + (n - from) / 2;
    *first_max = *second_max = -1;
    for (size_t i = from; i < n; i++) {
        long v = *(const long *)((const char *)&s[i] + off);
        long *m = i < mid ? first_max : second_max;
        if (v > *m)
            *m = v;
    }
    return *first_max >= 0 && *second_max <= *first_max + tol;
}

int
main(int argc, char **argv)
{
    kin_export("soak.echo", fn_echo, NULL, KIN_POLICY_ANY);
    kin_export("flood", fn_flood, NULL, KIN_POLICY_ANY);
    if (kin_started_as_child()) {
        kin_node *cn;
        return kin_init(&cn, NULL) ? 1 : 0;
    }
    if (parse(argc, argv, &g.cfg)) {
        fprintf(stderr,
                "usage: kin-soak [--secs N>=10] [--period S] [--warmup S] "
                "[--rate N] [--restart-every S] [--log-rate N] [--json]\n");
        return 2;
    }
    const config *cfg = &g.cfg;
    signal(SIGPIPE, SIG_IGN);
    double zmq_rtt_us = zmq_baseline(5000);

    kin_err e = kin_init(&g.n, NULL);
    if (e) {
        fprintf(stderr, "kin-soak: kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    kin_supervisor_opts so = {.intensity = 1000,
                              .period_ms = 1000,
                              .backoff_ms = 10,
                              .backoff_max_ms = 200};
    static const char *const services[] = {"soak", NULL};
    e = kin_supervisor_new(&g.sup, g.n, &so);
    for (int i = 0; !e && i < WORKERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        kin_child_spec spec = {.name = name, .services = services};
        e = kin_supervisor_add(g.sup, &spec);
    }
    kin_child_spec logger = {.name = "logger"};
    if (!e)
        e = kin_supervisor_add(g.sup, &logger);
    if (!e)
        e = kin_supervisor_start(g.sup);
    if (e) {
        fprintf(stderr, "kin-soak: starting the tree: %s\n", kin_strerror(e));
        kin_supervisor_destroy(&g.sup);
        kin_node_destroy(&g.n);
        return 1;
    }
    pid_t logger_pid = child_pid("logger", &g.logger_ctx);

    kin_logsub *sub = NULL;
    kin_logsub_opts lo = {.endpoint = kin_logs_frontend(g.n),
                          .min_level = KIN_LOG_INFO,
                          .ctxs = &g.logger_ctx,
                          .n_ctxs = 1};
    e = kin_logsub_new(&sub, &lo);
    pthread_t callers[CALLERS], subt;
    for (int i = 0; i < CALLERS; i++)
        pthread_create(&callers[i], NULL, caller, NULL);
    if (!e)
        pthread_create(&subt, NULL, subscriber, sub);
    kin_receiver *flood = NULL;
    kin_call_async(g.n, g.logger_ctx, "flood", &flood, "ii", cfg->log_rate,
                   (int)ceil(cfg->secs) + 5);

    size_t nsamples = 0, nperiods = 0;
    sample *samples = calloc(MAX_SAMPLES, sizeof *samples);
    period *periods = calloc(MAX_PERIODS, sizeof *periods);
    unsigned long queries = 0, query_errors = 0, ps_errors = 0;
    kin_err last_query_error = KIN_OK;
    unsigned long p_calls = 0, p_errors = 0, p_queries = 0, p_qerr = 0,
                  p_logs = 0;
    unsigned p_restarts = restarts_so_far(), restarts_start = p_restarts;
    unsigned victim = 0;
    uint64_t t_start = now_ns();
    double next_sample = 1, next_period = cfg->period,
           next_restart = cfg->restart_every;
    size_t warm_index = 0;
    if (!cfg->json)
        printf("%8s %8s %6s %9s %9s %9s %9s %9s %5s %7s %8s %8s\n", "t (s)",
               "calls", "errors", "p50 (us)", "p99 (us)", "max (us)", "RSS kiB",
               "tree kiB", "fds", "threads", "restarts", "log recs");
    while (samples && periods) {
        double t = (double)(now_ns() - t_start) / 1e9;
        if (t >= cfg->secs && next_period > cfg->secs + 1e-6)
            break; /* after the last period's row */
        if (t >= next_restart && t < cfg->secs) {
            char name[16];
            snprintf(name, sizeof name, "w%u", victim++ % WORKERS);
            pid_t pid = child_pid(name, NULL);
            if (pid > 0)
                kill(pid, SIGKILL);
            next_restart += cfg->restart_every;
        }
        if (t >= next_sample) {
            /* Operator queries, then the sample. */
            uint32_t wctx = 0;
            child_pid("w0", &wctx);
            kin_task_info *tasks = NULL;
            size_t count = 0;
            queries++;
            kin_err qe =
                kin_monitor_ps(g.n, wctx, NULL, false, 2000, &tasks, &count);
            if (qe) {
                query_errors++;
                ps_errors++;
                last_query_error = qe;
            }
            free(tasks);
            kin_graph *gr = NULL;
            queries++;
            qe = kin_monitor_graph(g.n, KIN_NO_CTX, 2000, &gr);
            if (qe) {
                query_errors++;
                last_query_error = qe;
            }
            kin_monitor_graph_destroy(&gr);
            if (nsamples < MAX_SAMPLES) {
                sample *s = &samples[nsamples++];
                s->t = t;
                s->fds = count_fds(getpid());
                s->threads = status_field(getpid(), "Threads");
                s->rss_kib = status_field(getpid(), "VmRSS");
                s->tree_rss_kib = tree_rss();
                s->logger_fds = count_fds(logger_pid);
                s->logger_threads = status_field(logger_pid, "Threads");
                s->logger_rss_kib = status_field(logger_pid, "VmRSS");
                if (t < cfg->warmup)
                    warm_index = nsamples;
            }
            next_sample += 1;
        }
        if (t >= next_period && nperiods < MAX_PERIODS && nsamples) {
            period *p = &periods[nperiods++];
            pthread_mutex_lock(&g.mu);
            p->calls = g.calls - p_calls;
            p->errors = g.errors - p_errors;
            p_calls = g.calls;
            p_errors = g.errors;
            p->p50_us = quantile(g.lat, g.nlat, 0.5) / 1000;
            p->p99_us = quantile(g.lat, g.nlat, 0.99) / 1000;
            p->max_us = g.nlat ? (double)g.lat[g.nlat - 1] / 1000 : NAN;
            g.nlat = 0;
            pthread_mutex_unlock(&g.mu);
            unsigned r = restarts_so_far();
            p->restarts = r - p_restarts;
            p_restarts = r;
            p->queries = queries - p_queries;
            p->query_errors = query_errors - p_qerr;
            p_queries = queries;
            p_qerr = query_errors;
            unsigned long lr = atomic_load(&g.log_records);
            p->log_records = lr - p_logs;
            p_logs = lr;
            const sample *s = &samples[nsamples - 1];
            p->t_end = t;
            p->rss_kib = s->rss_kib;
            p->tree_rss_kib = s->tree_rss_kib;
            p->fds = s->fds;
            p->threads = s->threads;
            p->logger_fds = s->logger_fds;
            p->logger_threads = s->logger_threads;
            if (!cfg->json) {
                printf("%8.0f %8lu %6lu %9.0f %9.0f %9.0f %9ld %9ld %5ld %7ld "
                       "%8lu %8lu\n",
                       t, p->calls, p->errors, p->p50_us, p->p99_us, p->max_us,
                       p->rss_kib, p->tree_rss_kib, p->fds, p->threads,
                       p->restarts, p->log_records);
                fflush(stdout);
            }
            next_period += cfg->period;
        }
        usleep(20000);
    }
    atomic_store(&g.stop, true);
    for (int i = 0; i < CALLERS; i++)
        pthread_join(callers[i], NULL);
    if (flood) {
        kin_call_cancel(flood);
        kin_msg *m = NULL;
        kin_call_wait(flood, 5000, &m);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&flood);
    }
    if (sub) {
        pthread_join(subt, NULL);
        kin_logsub_destroy(&sub);
    }
    unsigned restarts = restarts_so_far() - restarts_start;
    kin_supervisor_stop(g.sup);
    kin_supervisor_destroy(&g.sup);
    kin_node_destroy(&g.n);

    /* Flat after the warm-up; slopes per hour. */
    long fd1, fd2, th1, th2, lfd1, lfd2, lth1, lth2;
    bool fds_flat =
        samples &&
        flat(samples, nsamples, warm_index, offsetof(sample, fds), FD_TOLERANCE,
             &fd1, &fd2) &&
        flat(samples, nsamples, warm_index, offsetof(sample, logger_fds),
             FD_TOLERANCE, &lfd1, &lfd2);
    bool threads_flat =
        samples &&
        flat(samples, nsamples, warm_index, offsetof(sample, threads),
             THREAD_TOLERANCE, &th1, &th2) &&
        flat(samples, nsamples, warm_index, offsetof(sample, logger_threads),
             THREAD_TOLERANCE, &lth1, &lth2);
    size_t ns = nsamples > warm_index ? nsamples - warm_index : 0;
    double *x = calloc(ns + nperiods + 1, sizeof *x),
           *y = calloc(ns + nperiods + 1, sizeof *y);
    double rss_slope = NAN, tree_slope = NAN, logger_slope = NAN,
           p50_slope = NAN, p99_slope = NAN;
    if (x && y) {
        for (size_t i = 0; i < ns; i++) {
            x[i] = samples[warm_index + i].t / 3600;
            y[i] = (double)samples[warm_index + i].rss_kib;
        }
        rss_slope = slope(x, y, ns);
        for (size_t i = 0; i < ns; i++)
            y[i] = (double)samples[warm_index + i].tree_rss_kib;
        tree_slope = slope(x, y, ns);
        for (size_t i = 0; i < ns; i++)
            y[i] = (double)samples[warm_index + i].logger_rss_kib;
        logger_slope = slope(x, y, ns);
        size_t np = 0;
        for (size_t i = 0; i < nperiods; i++)
            if (periods[i].t_end - cfg->period >= cfg->warmup - 1e-9 &&
                !isnan(periods[i].p50_us)) {
                x[np] = (periods[i].t_end - cfg->period / 2) / 3600;
                y[np++] = periods[i].p50_us;
            }
        p50_slope = slope(x, y, np);
        np = 0;
        for (size_t i = 0; i < nperiods; i++)
            if (periods[i].t_end - cfg->period >= cfg->warmup - 1e-9 &&
                !isnan(periods[i].p99_us)) {
                x[np] = (periods[i].t_end - cfg->period / 2) / 3600;
                y[np++] = periods[i].p99_us;
            }
        p99_slope = slope(x, y, np);
    }
    free(x);
    free(y);
    bool ok = fds_flat && threads_flat && restarts > 0 && !g.late;
    const sample *first = ns ? &samples[warm_index] : NULL,
                 *last = nsamples ? &samples[nsamples - 1] : NULL;
    /* Over the whole run. */
    double p50_all = hist_quantile(0.5) / 1000,
           p99_all = hist_quantile(0.99) / 1000;
    if (cfg->json) {
        printf("{\"secs\":%.0f,\"period_s\":%.0f,\"warmup_s\":%.0f,"
               "\"calls\":%lu,\"call_errors\":%lu,\"call_timeouts\":%lu,"
               "\"call_peer_gone\":%lu,\"call_other_errors\":%lu,"
               "\"late_calls\":%lu,\"call_p50_us\":%.1f,"
               "\"call_p99_us\":%.1f,\"zmq_rtt_us\":%.1f,"
               "\"restarts\":%u,\"queries\":%lu,\"query_errors\":%lu,"
               "\"log_records\":%lu,\"log_lost\":%lu,\"log_dropped\":%lu,"
               "\"rss_kib\":%ld,\"rss_kib_per_h\":%.1f,"
               "\"tree_rss_kib\":%ld,\"tree_rss_kib_per_h\":%.1f,"
               "\"logger_rss_kib_per_h\":%.1f,\"p50_us_per_h\":%.1f,"
               "\"p99_us_per_h\":%.1f,\"fds_after_warmup\":%ld,"
               "\"fds_end\":%ld,\"threads_after_warmup\":%ld,"
               "\"threads_end\":%ld,\"logger_fds_end\":%ld,"
               "\"logger_threads_end\":%ld,\"fds_flat\":%s,"
               "\"threads_flat\":%s,\"periods\":[",
               cfg->secs, cfg->period, cfg->warmup, g.calls, g.errors,
               g.err_timeout, g.err_gone, g.err_other, g.late, p50_all, p99_all,
               zmq_rtt_us, restarts, queries, query_errors,
               atomic_load(&g.log_records), atomic_load(&g.log_lost),
               atomic_load(&g.log_dropped), last ? last->rss_kib : -1,
               rss_slope, last ? last->tree_rss_kib : -1, tree_slope,
               logger_slope, p50_slope, p99_slope, first ? first->fds : -1,
               last ? last->fds : -1, first ? first->threads : -1,
               last ? last->threads : -1, last ? last->logger_fds : -1,
               last ? last->logger_threads : -1, fds_flat ? "true" : "false",
               threads_flat ? "true" : "false");
        for (size_t i = 0; i < nperiods; i++) {
            const period *p = &periods[i];
            printf("%s{\"t\":%.0f,\"calls\":%lu,\"errors\":%lu,"
                   "\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
                   "\"rss_kib\":%ld,\"tree_rss_kib\":%ld,\"fds\":%ld,"
                   "\"threads\":%ld,\"restarts\":%lu,\"log_records\":%lu}",
                   i ? "," : "", p->t_end, p->calls, p->errors, p->p50_us,
                   p->p99_us, p->max_us, p->rss_kib, p->tree_rss_kib, p->fds,
                   p->threads, p->restarts, p->log_records);
        }
        printf("],\"ok\":%s}\n", ok ? "true" : "false");
    } else {
        printf("\n%lu calls (%lu failed: %lu timeout, %lu peer-gone, %lu "
               "other%s%s), %lu late; %u restarts; %lu operator queries (%lu "
               "failed: %lu ps, %lu graph; last %s)\n",
               g.calls, g.errors, g.err_timeout, g.err_gone, g.err_other,
               g.err_other ? ", last " : "",
               g.err_other ? kin_err_name(g.last_other) : "", g.late, restarts,
               queries, query_errors, ps_errors, query_errors - ps_errors,
               kin_err_name(last_query_error));
        printf("log: %lu records came, %lu counted lost, %lu dropped\n",
               atomic_load(&g.log_records), atomic_load(&g.log_lost),
               atomic_load(&g.log_dropped));
        printf("call p50 %.0f us, p99 %.0f us (raw libzmq REQ/REP over ipc: "
               "%.1f us)\n",
               p50_all, p99_all, zmq_rtt_us);
        printf("slopes per hour after the warm-up (%.0f s): master RSS %+.0f "
               "kiB, tree RSS %+.0f kiB, logger RSS %+.0f kiB, p50 %+.0f us, "
               "p99 %+.0f us\n",
               cfg->warmup, rss_slope, tree_slope, logger_slope, p50_slope,
               p99_slope);
        printf("fds: master %ld -> %ld, logger %ld -> %ld: %s; threads: "
               "master %ld -> %ld, logger %ld -> %ld: %s\n",
               fd1, fd2, lfd1, lfd2, fds_flat ? "flat" : "GREW", th1, th2, lth1,
               lth2, threads_flat ? "flat" : "GREW");
        printf("%s\n", ok ? "ok" : "FAILED");
    }
    if (!fds_flat || !threads_flat)
        fprintf(stderr, "kin-soak: fds or threads grew after the warm-up\n");
    if (!restarts)
        fprintf(stderr, "kin-soak: no restart happened\n");
    if (g.late)
        fprintf(stderr, "kin-soak: %lu calls outlived their deadline\n",
                g.late);
    free(samples);
    free(periods);
    free(g.lat);
    return ok ? 0 : 1;
}
