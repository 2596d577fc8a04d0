/* kin-metrics-bench: what counting a call's metrics costs (docs/monitor.md,
 * "Metrics"): ns per kin__fn_metrics_record on one thread and on four
 * threads counting the same function at once, next to a kin call round
 * trip to a child process and a raw libzmq round trip (ipc, two threads)
 * measured in the same run. End-to-end runs are too noisy to show a cost
 * this small, so the hook is timed alone and set against a call. The
 * executable is also its kin child. */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kin/kin.h>
#include <zmq.h>

#include "router/metrics.h"

#include "tests/bench/bench_stats.h"

#define ROUNDS 5   /* microbenchmark rounds (median of) */
#define THREADS 4  /* contended variant */
#define PAYLOAD 64 /* bytes echoed per round trip */

typedef struct config {
    bool json, quick;
    long iters;  /* records per round and thread */
    int samples; /* round trips */
} config;

typedef struct results {
    double record_ns, record_4t_ns, call_rtt_us, zmq_rtt_us, record_pct;
} results;

static kin_err
echo(kin_call *c, void *arg)
{
    (void)arg;
    const void *p;
    size_t len;
    kin_err e = kin_call_args(c, "B", &p, &len);
    return e ? e : kin_call_return(c, "B", p, len);
}

/* --- the hook alone --- */

typedef struct worker {
    kin__fn_metrics *m;
    long iters;
    pthread_barrier_t *go;
    uint64_t ns;
} worker;

static void *
record_loop(void *arg)
{
    worker *w = arg;
    uint64_t arrived = now_ns();
    if (w->go)
        pthread_barrier_wait(w->go);
    uint64_t t0 = now_ns();
    for (long i = 0; i < w->iters; i++)
        kin__fn_metrics_record(w->m, "bench.echo", 10, (i & 63) ? 0 : -1,
                               arrived);
    w->ns = now_ns() - t0;
    return NULL;
}

static double
record_ns(const config *c, int threads)
{
    uint64_t per[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        kin__fn_metrics *m = kin__fn_metrics_new();
        if (!m)
            return NAN;
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, (unsigned)threads);
        worker w[THREADS];
        pthread_t th[THREADS];
        for (int t = 0; t < threads; t++) {
            w[t] = (worker){m, c->iters, threads > 1 ? &go : NULL, 0};
            if (threads > 1)
                pthread_create(&th[t], NULL, record_loop, &w[t]);
        }
        uint64_t worst = 0;
        if (threads == 1) {
            record_loop(&w[0]);
            worst = w[0].ns;
        } else {
            for (int t = 0; t < threads; t++) {
                pthread_join(th[t], NULL);
                worst = w[t].ns > worst ? w[t].ns : worst;
            }
        }
        pthread_barrier_destroy(&go);
        kin__fn_metrics_free(&m);
        per[r] = worst / (uint64_t)c->iters;
        if (!per[r])
            per[r] = 1;
    }
    /* ns per record on each thread: the slowest thread's time / iters. */
    return median(per, ROUNDS);
}

/* --- a kin call to a child --- */

static double
call_rtt_us(kin_node *master, const config *c)
{
    kin_child *kid;
    if (kin_spawn(master, &(kin_spawn_opts){.name = "echo"}, &kid))
        return NAN;
    uint32_t ctx = kin_child_id(kid);
    char payload[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    uint64_t *v = calloc((size_t)c->samples, sizeof *v);
    double rtt = NAN;
    bool ok = v != NULL;
    for (int i = -c->samples / 10; ok && i < c->samples; i++) {
        kin_msg *r = NULL;
        uint64_t t0 = now_ns();
        ok = kin_call_sync(master, ctx, "bench.echo", 10000, &r, "B", payload,
                           sizeof payload) == KIN_OK;
        if (i >= 0)
            v[i] = now_ns() - t0;
        kin_msg_destroy(&r);
    }
    if (ok)
        rtt = median(v, (size_t)c->samples) / 1000.0;
    free(v);
    kin_child_stop(kid, NULL);
    kin_child_destroy(&kid);
    return rtt;
}

/* --- raw libzmq: REQ/REP over ipc between two threads --- */

typedef struct zpeer {
    void *ctx;
    char ep[128];
    int rounds;
} zpeer;

static void *
zmq_echo(void *arg)
{
    zpeer *p = arg;
    void *s = zmq_socket(p->ctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(s, p->ep);
    char buf[PAYLOAD];
    for (int i = 0; i < p->rounds; i++) {
        int n = zmq_recv(s, buf, sizeof buf, 0);
        if (n < 0 || zmq_send(s, buf, (size_t)n, 0) < 0)
            break;
    }
    zmq_close(s);
    return NULL;
}

static double
zmq_rtt_us(const config *c)
{
    zpeer p = {.ctx = zmq_ctx_new(), .rounds = c->samples + c->samples / 10};
    snprintf(p.ep, sizeof p.ep, "ipc:///tmp/kin-metrics-bench-%d",
             (int)getpid());
    void *s = zmq_socket(p.ctx, ZMQ_REQ);
    int linger = 0, timeout = 10000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    double rtt = NAN;
    uint64_t *v = calloc((size_t)c->samples, sizeof *v);
    pthread_t th;
    if (v && !zmq_bind(s, p.ep) && !pthread_create(&th, NULL, zmq_echo, &p)) {
        char buf[PAYLOAD];
        memset(buf, 'x', sizeof buf);
        bool ok = true;
        for (int i = -c->samples / 10; ok && i < c->samples; i++) {
            uint64_t t0 = now_ns();
            ok = zmq_send(s, buf, sizeof buf, 0) == PAYLOAD &&
                 zmq_recv(s, buf, sizeof buf, 0) == PAYLOAD;
            if (i >= 0)
                v[i] = now_ns() - t0;
        }
        if (ok)
            rtt = median(v, (size_t)c->samples) / 1000.0;
        zmq_close(s);
        s = NULL;
        pthread_join(th, NULL);
    }
    if (s)
        zmq_close(s);
    free(v);
    zmq_ctx_term(p.ctx);
    unlink(p.ep + strlen("ipc://"));
    return rtt;
}

static void
report(const config *c, const results *r)
{
    if (c->json) {
        printf("{\"record_ns\":%.1f,\"record_4t_ns\":%.1f,\"call_rtt_us\":%.1f,"
               "\"zmq_rtt_us\":%.1f,\"record_pct\":%.3f}\n",
               r->record_ns, r->record_4t_ns, r->call_rtt_us, r->zmq_rtt_us,
               r->record_pct);
        return;
    }
    printf("kin-metrics-bench (%ld records per round, median of %d rounds; "
           "%d round trips)\n",
           c->iters, ROUNDS, c->samples);
    printf("  %-44s %10.1f ns\n", "count one call (1 thread)", r->record_ns);
    printf("  %-44s %10.1f ns\n", "count one call (4 threads, same function)",
           r->record_4t_ns);
    printf("  %-44s %10.1f us\n", "kin call round trip to a child (64 B)",
           r->call_rtt_us);
    printf("  %-44s %10.1f us\n", "raw libzmq REQ/REP round trip (ipc, 64 B)",
           r->zmq_rtt_us);
    printf("  %-44s %10.3f %%\n", "counting / kin call round trip",
           r->record_pct);
}

int
main(int argc, char **argv)
{
    kin_export("bench.echo", echo, NULL, KIN_POLICY_PARENT);
    config c = {.iters = 2000000, .samples = 5000};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            c.json = true;
        } else if (!strcmp(argv[i], "--quick")) {
            c.quick = true;
        } else {
            fprintf(stderr, "usage: kin-metrics-bench [--quick] [--json]\n");
            return 2;
        }
    }
    if (c.quick) {
        c.iters = 100000;
        c.samples = 300;
    }
    kin_node *master;
    kin_err e = kin_init(&master, NULL); /* the child serves, never returns */
    if (e) {
        fprintf(stderr, "kin-metrics-bench: kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    results r;
    r.record_ns = record_ns(&c, 1);
    r.record_4t_ns = record_ns(&c, THREADS);
    r.call_rtt_us = call_rtt_us(master, &c);
    r.zmq_rtt_us = zmq_rtt_us(&c);
    r.record_pct = r.record_ns / (r.call_rtt_us * 1000.0) * 100.0;
    kin_node_destroy(&master);
    report(&c, &r);
    return isnan(r.call_rtt_us) || isnan(r.zmq_rtt_us) ? 1 : 0;
}
