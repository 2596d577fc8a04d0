/* kin-bench: kin's call, spawn and memory figures next to a raw libzmq
 * baseline taken in the same run (docs/performance.md). The executable is
 * also its peers: a zmq echo peer (--zmq-peer EP) and a kin child.
 *
 * Raw zmq floors (tests/bench/zmq_floor.c, no kin code), for the goals the
 * plain baseline cannot say are reachable:
 *   zmq_handoff_rtt_us   the echo with a worker pool's two thread
 *                        hand-offs (the caller sleeps until the socket's
 *                        owner thread wakes it; the peer's owner hands the
 *                        request to a worker, which sends the reply under
 *                        the socket's lock): the floor of call_rtt_us;
 *   zmq_handoff1_rtt_us  the caller's hand-off only (the peer's owner
 *                        answers): the floor of icall_rtt_us;
 *   zmq_handoff_peer_rtt_us the peer's worker hand-off only (the caller
 *                        receives its reply itself): the floor of a
 *                        worker-pool call whose caller reads its own reply
 *                        (leader/follower; kin does not do that yet);
 *   zmq_handoff_msgs_per_s the two hand-offs pipelined as calls_per_s is
 *                        (same count, window and payload; the owner hands
 *                        the caller every reply it read in one wake, the
 *                        peer's owner queues requests for BENCH_WORKERS
 *                        worker threads): the floor of calls_per_s;
 *   zmq_handoff_peer_msgs_per_s the two hand-offs' peer pipelined, the
 *                        caller receiving its replies itself;
 *   zmq_handoff1_msgs_per_s the same, the peer's owner answering: the
 *                        floor of calls_per_s_inline;
 *   zmq_fork_first_ms    a warm single-threaded zygote with libzmq loaded
 *                        forks; the child connects, says hello, echoes
 *                        once: the floor of fork_first_call_ms;
 *   zmq_fork100_ms       100 such children started and stopped at once:
 *                        the floor of fork100_ms;
 *   zmq_fork_child_cpu_us the CPU such a child burns to its first echo:
 *                        the floor of fork_child_cpu_us;
 *   zmq_fork100_cpu_ms   the CPU zmq_fork100_ms burns (this process, the
 *                        zygote, the children): the floor of
 *                        fork100_cpu_ms. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include <kin/kin.h>

#include "tests/bench/bench_stats.h"
#include "tests/bench/zmq_floor.h"
#include "tests/bench/zrouter.h"

#define PAYLOAD 64 /* bytes per message / call argument */
#define RID_MAX ZROUTER_RID_MAX
#define IO_TIMEOUT 5000  /* ms: any single wait longer than this is a fault */
#define PIPE_ROUNDS 10   /* throughput rounds: zmq, kin, kin select */
#define FANOUT_THREADS 8 /* threads starting (and stopping) the fan-out */
/* The bench child's worker pool: kin_spawn(NULL) leaves
 * kin_node_opts.workers 0, which is 4; the pipelined hand-off floor's peer
 * has as many worker threads. */
#define BENCH_WORKERS 4
/* Providers of the "bench" service in the throughput figure (the first is
 * the latency figures' one provider, the call figures' child). */
#define SVC_PROVIDERS 4
/* The join figure: providers of the "join" service before the new one,
 * threads calling it, and calls each keeps in flight. */
#define JOIN_PROVIDERS 2
#define JOIN_CALLERS 4
#define JOIN_WINDOW 8
/* Replies before a provider joins: every caller's window twice over. */
#define JOIN_STEADY (2 * JOIN_CALLERS * JOIN_WINDOW)

/* Which kin figures to measure (--only); each comes with its baseline
 * unless --no-zmq. */
enum phase {
    PH_RTT = 1 << 0,   /* call round trip, one hop */
    PH_RTT2 = 1 << 1,  /* call round trip, two hops */
    PH_PIPE = 1 << 2,  /* pipelined calls */
    PH_SPAWN = 1 << 3, /* spawn-to-first-call, idle RSS, fan-out */
    PH_SVC = 1 << 4,   /* a provider joining a loaded service */
    PH_BIG = 1 << 5,   /* big payloads echoed: 1, 8 and 64 MiB */
    PH_ALL = (1 << 6) - 1,
};

typedef struct config {
    bool json;
    bool quick;
    bool zmq; /* measure the raw zmq baseline */
    unsigned phases;
    /* --kind: 0 every figure; else only the direct one-hop call (1) or
     * only the service call (2), for profiling one path alone. */
    int kind;
    int samples;           /* round trips per latency figure */
    int rounds;            /* latency rounds: zmq, kin, kin 2-hop take turns */
    int warmup;            /* round trips before the latency figures */
    int pipelined;         /* messages / calls per throughput figure */
    int window;            /* outstanding messages / calls */
    int spawns;            /* spawn-to-first-call repetitions */
    int fanout;            /* children in the fan-out figure */
    int joins;             /* provider-join repetitions */
    int big_rounds;        /* echoes of each big payload (median taken) */
    const char *smaps_dir; /* --smaps: where the idle processes' maps go */
    char self[PATH_MAX];
} config;

/* Every figure; NAN when it was not measured or its measurement failed. */
typedef struct results {
    double zmq_rtt_us, zmq_rtt_p99_us, zmq_msgs_per_s;
    double zmq_rtt2_us, zmq_rtt2_p99_us;
    double zmq_spawn_first_ms, zmq_spawn100_ms, zmq_peer_rss_kib;
    double zmq_peer_pss_kib, zmq_peer_uss_kib;
    double call_rtt_us, call_rtt_p99_us, call2_rtt_us, call2_rtt_p99_us;
    double icall_rtt_us, icall_rtt_p99_us, icall2_rtt_us, icall2_rtt_p99_us;
    double calls_per_s, calls_per_s_select, calls_per_s_inline;
    double svc_rtt_us, svc_rtt_p99_us, svc_calls_per_s, calls4_per_s;
    double spawn_ms, spawn_first_call_ms;
    double idle_rss_kib, idle_rss_anon_kib, idle_rss_file_kib, idle_threads;
    double idle_pss_kib, idle_uss_kib;
    double spawn100_ms, spawn100_start_ms, spawn100_stop_ms, spawn100_seq_ms;
    /* The fork factory (kin_spawn_opts.fork), beside the exec figures. */
    double zygote_start_ms, fork_ms, fork_first_call_ms;
    double fork_idle_rss_kib, fork_idle_pss_kib, fork_idle_uss_kib;
    /* CPU the child burned from its start to answering its first call:
     * less bound to the machine's load than the wall clock. */
    double spawn_child_cpu_us, fork_child_cpu_us;
    double fork100_ms, fork100_start_ms, fork100_stop_ms;
    /* The CPU the forked fan-out burned in this process, the zygote and
     * the children: on 2 CPUs, what fork100_ms is made of, and less bound
     * to the machine's other load. */
    double fork100_cpu_ms;
    /* A provider joining a service under load, and that load. */
    double svc_join_ms, svc_join_max_ms, svc_join_load_calls_per_s;
    /* Big payloads echoed by a child's function, and the same bytes
     * echoed by the raw zmq peer (ms, median). */
    double big1_rtt_ms, big8_rtt_ms, big_rtt_ms;
    double zmq_big1_rtt_ms, zmq_big8_rtt_ms, zmq_big_rtt_ms;
    /* The raw zmq floors (zmq_floor.h). */
    double zmq_handoff_rtt_us, zmq_handoff_rtt_p99_us;
    double zmq_handoff1_rtt_us, zmq_handoff1_rtt_p99_us;
    double zmq_handoff_peer_rtt_us, zmq_handoff_peer_rtt_p99_us;
    double zmq_handoff_msgs_per_s, zmq_handoff1_msgs_per_s;
    double zmq_handoff_peer_msgs_per_s;
    double zmq_fork_first_ms, zmq_fork100_ms, zmq_fork_child_cpu_us;
    double zmq_fork100_cpu_ms;
} results;

/* Every figure by its JSON key, in output order. */
static const struct figure {
    const char *key;
    size_t off;
} figures[] = {
    {"zmq_rtt_us", offsetof(results, zmq_rtt_us)},
    {"zmq_rtt_p99_us", offsetof(results, zmq_rtt_p99_us)},
    {"zmq_rtt2_us", offsetof(results, zmq_rtt2_us)},
    {"zmq_rtt2_p99_us", offsetof(results, zmq_rtt2_p99_us)},
    {"zmq_msgs_per_s", offsetof(results, zmq_msgs_per_s)},
    {"zmq_spawn_first_ms", offsetof(results, zmq_spawn_first_ms)},
    {"zmq_spawn100_ms", offsetof(results, zmq_spawn100_ms)},
    {"zmq_peer_rss_kib", offsetof(results, zmq_peer_rss_kib)},
    {"zmq_peer_pss_kib", offsetof(results, zmq_peer_pss_kib)},
    {"zmq_peer_uss_kib", offsetof(results, zmq_peer_uss_kib)},
    {"call_rtt_us", offsetof(results, call_rtt_us)},
    {"call_rtt_p99_us", offsetof(results, call_rtt_p99_us)},
    {"call2_rtt_us", offsetof(results, call2_rtt_us)},
    {"call2_rtt_p99_us", offsetof(results, call2_rtt_p99_us)},
    {"icall_rtt_us", offsetof(results, icall_rtt_us)},
    {"icall_rtt_p99_us", offsetof(results, icall_rtt_p99_us)},
    {"icall2_rtt_us", offsetof(results, icall2_rtt_us)},
    {"icall2_rtt_p99_us", offsetof(results, icall2_rtt_p99_us)},
    {"calls_per_s", offsetof(results, calls_per_s)},
    {"calls_per_s_select", offsetof(results, calls_per_s_select)},
    {"calls_per_s_inline", offsetof(results, calls_per_s_inline)},
    {"svc_rtt_us", offsetof(results, svc_rtt_us)},
    {"svc_rtt_p99_us", offsetof(results, svc_rtt_p99_us)},
    {"svc_calls_per_s", offsetof(results, svc_calls_per_s)},
    {"calls4_per_s", offsetof(results, calls4_per_s)},
    {"spawn_ms", offsetof(results, spawn_ms)},
    {"spawn_first_call_ms", offsetof(results, spawn_first_call_ms)},
    {"idle_rss_kib", offsetof(results, idle_rss_kib)},
    {"idle_rss_anon_kib", offsetof(results, idle_rss_anon_kib)},
    {"idle_rss_file_kib", offsetof(results, idle_rss_file_kib)},
    {"idle_threads", offsetof(results, idle_threads)},
    {"idle_pss_kib", offsetof(results, idle_pss_kib)},
    {"idle_uss_kib", offsetof(results, idle_uss_kib)},
    {"spawn100_ms", offsetof(results, spawn100_ms)},
    {"spawn100_start_ms", offsetof(results, spawn100_start_ms)},
    {"spawn100_stop_ms", offsetof(results, spawn100_stop_ms)},
    {"spawn100_seq_ms", offsetof(results, spawn100_seq_ms)},
    {"zygote_start_ms", offsetof(results, zygote_start_ms)},
    {"fork_ms", offsetof(results, fork_ms)},
    {"fork_first_call_ms", offsetof(results, fork_first_call_ms)},
    {"fork_idle_rss_kib", offsetof(results, fork_idle_rss_kib)},
    {"fork_idle_pss_kib", offsetof(results, fork_idle_pss_kib)},
    {"fork_idle_uss_kib", offsetof(results, fork_idle_uss_kib)},
    {"spawn_child_cpu_us", offsetof(results, spawn_child_cpu_us)},
    {"fork_child_cpu_us", offsetof(results, fork_child_cpu_us)},
    {"fork100_ms", offsetof(results, fork100_ms)},
    {"fork100_start_ms", offsetof(results, fork100_start_ms)},
    {"fork100_stop_ms", offsetof(results, fork100_stop_ms)},
    {"fork100_cpu_ms", offsetof(results, fork100_cpu_ms)},
    {"svc_join_ms", offsetof(results, svc_join_ms)},
    {"svc_join_max_ms", offsetof(results, svc_join_max_ms)},
    {"svc_join_load_calls_per_s", offsetof(results, svc_join_load_calls_per_s)},
    {"big1_rtt_ms", offsetof(results, big1_rtt_ms)},
    {"big8_rtt_ms", offsetof(results, big8_rtt_ms)},
    {"big_rtt_ms", offsetof(results, big_rtt_ms)},
    {"zmq_big1_rtt_ms", offsetof(results, zmq_big1_rtt_ms)},
    {"zmq_big8_rtt_ms", offsetof(results, zmq_big8_rtt_ms)},
    {"zmq_big_rtt_ms", offsetof(results, zmq_big_rtt_ms)},
    {"zmq_handoff_rtt_us", offsetof(results, zmq_handoff_rtt_us)},
    {"zmq_handoff_rtt_p99_us", offsetof(results, zmq_handoff_rtt_p99_us)},
    {"zmq_handoff1_rtt_us", offsetof(results, zmq_handoff1_rtt_us)},
    {"zmq_handoff1_rtt_p99_us", offsetof(results, zmq_handoff1_rtt_p99_us)},
    {"zmq_handoff_peer_rtt_us", offsetof(results, zmq_handoff_peer_rtt_us)},
    {"zmq_handoff_peer_rtt_p99_us",
     offsetof(results, zmq_handoff_peer_rtt_p99_us)},
    {"zmq_handoff_msgs_per_s", offsetof(results, zmq_handoff_msgs_per_s)},
    {"zmq_handoff1_msgs_per_s", offsetof(results, zmq_handoff1_msgs_per_s)},
    {"zmq_handoff_peer_msgs_per_s",
     offsetof(results, zmq_handoff_peer_msgs_per_s)},
    {"zmq_fork_first_ms", offsetof(results, zmq_fork_first_ms)},
    {"zmq_fork100_ms", offsetof(results, zmq_fork100_ms)},
    {"zmq_fork_child_cpu_us", offsetof(results, zmq_fork_child_cpu_us)},
    {"zmq_fork100_cpu_ms", offsetof(results, zmq_fork100_cpu_ms)},
};
#define N_FIGURES (sizeof figures / sizeof figures[0])

static double *
figure(results *r, size_t i)
{
    return (double *)((char *)r + figures[i].off);
}

/* --- clocks and statistics ------------------------------------------------ */

/* --- processes ------------------------------------------------------------ */

/* One field of /proc/PID/status (kB for sizes, a count for Threads); NAN if
 * absent. */
static double
proc_status(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    size_t len = strlen(field);
    double v = NAN;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, len) && line[len] == ':') {
            v = strtod(line + len + 1, NULL);
            break;
        }
    fclose(f);
    return v;
}

/* Proportional and unique (private) set size in kB from
 * /proc/PID/smaps_rollup: what a process costs once shared libraries are
 * split among their users, and what its exit would free. */
static void
proc_pss_uss(pid_t pid, double *pss, double *uss)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    *pss = *uss = NAN;
    if (!f)
        return;
    double priv = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "Pss:", 4))
            *pss = strtod(line + 4, NULL);
        else if (!strncmp(line, "Private_Clean:", 14))
            priv += strtod(line + 14, NULL);
        else if (!strncmp(line, "Private_Dirty:", 14))
            priv += strtod(line + 14, NULL);
    }
    fclose(f);
    *uss = priv;
}

/* --smaps DIR: the process's /proc/PID/smaps as DIR/NAME.smaps, its
 * threads' names as DIR/NAME.threads, pid and time as DIR/NAME.when, for
 * the per-mapping account of docs/performance.md §15. Best effort: a
 * failure is only reported. */
static void
save_smaps(const char *dir, pid_t pid, const char *name)
{
    if (!dir)
        return;
    char src[64], dst[PATH_MAX], line[512];
    snprintf(src, sizeof src, "/proc/%d/smaps", (int)pid);
    snprintf(dst, sizeof dst, "%s/%s.smaps", dir, name);
    FILE *in = fopen(src, "r"), *out = in ? fopen(dst, "w") : NULL;
    while (out && fgets(line, sizeof line, in))
        fputs(line, out);
    if (!out)
        fprintf(stderr, "kin-bench: --smaps %s: %s\n", dst, strerror(errno));
    if (out)
        fclose(out);
    if (in)
        fclose(in);
    snprintf(src, sizeof src, "/proc/%d/task", (int)pid);
    snprintf(dst, sizeof dst, "%s/%s.threads", dir, name);
    DIR *d = opendir(src);
    out = d ? fopen(dst, "w") : NULL;
    for (struct dirent *de; out && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char comm[96];
        snprintf(comm, sizeof comm, "/proc/%d/task/%s/comm", (int)pid,
                 de->d_name);
        FILE *c = fopen(comm, "r");
        if (c && fgets(line, sizeof line, c))
            fprintf(out, "%s %s", de->d_name, line);
        if (c)
            fclose(c);
    }
    if (out)
        fclose(out);
    if (d)
        closedir(d);
    /* Which process, and when (CLOCK_MONOTONIC, shared by all): what
     * scripts/hot_text.sh needs to take the functions it had run by then. */
    snprintf(dst, sizeof dst, "%s/%s.when", dir, name);
    if ((out = fopen(dst, "w"))) {
        fprintf(out, "%d %llu\n", (int)pid, (unsigned long long)now_ns());
        fclose(out);
    }
}

/* Starts this executable as a raw zmq peer (or, with relay, a relay with
 * a peer behind it) connecting to endpoint. */
static pid_t
start_process(const config *cfg, const char *endpoint, bool relay)
{
    return zrouter_start_self(cfg->self, relay ? "--zmq-relay" : "--zmq-peer",
                              endpoint, NULL, NULL, -1);
}

/* --- the raw zmq peer ----------------------------------------------------- */

/* DEALER: says hello, echoes every message, stops at an empty one. It
 * waits as long as it takes: the phases between its uses (spawns under a
 * sanitizer) can take minutes, and it dies with the bench (PDEATHSIG). */
static int
zmq_peer(const char *endpoint)
{
    return zrouter_echo_peer(endpoint, "H", 1);
}

/* A raw zmq relay, the baseline of a two-hop call: a DEALER connected to
 * endpoint (the bench), a ROUTER bound in a directory of its own with a
 * peer of its own (started as the bench starts its peer), and one thread
 * that passes each message on, as a kin context's broker forwards a call
 * to its child. Says hello when its peer has; an empty message stops both. */
static int
zmq_relay(const char *endpoint)
{
    char self[PATH_MAX], dir[64] = "/tmp/kin-bench-XXXXXX", down_ep[128];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0 || !mkdtemp(dir))
        return 1;
    self[len] = 0;
    snprintf(down_ep, sizeof down_ep, "ipc://%s/zmq.sock", dir);
    void *ctx = zmq_ctx_new();
    void *up = zmq_socket(ctx, ZMQ_DEALER);
    void *down = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 1000;
    zmq_setsockopt(up, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(down, ZMQ_LINGER, &linger, sizeof linger);
    int rc = 1;
    pid_t peer = -1;
    uint8_t rid[RID_MAX], body[PAYLOAD];
    int rid_len = -1;
    if (zmq_bind(down, down_ep) || zmq_connect(up, endpoint))
        goto out;
    config pc = {0};
    memcpy(pc.self, self, (size_t)len + 1);
    if ((peer = start_process(&pc, down_ep, false)) < 0 ||
        (rid_len = zmq_recv(down, rid, sizeof rid, 0)) < 0 ||
        zmq_recv(down, body, sizeof body, 0) != 1 ||
        zmq_send(up, "H", 1, 0) != 1)
        goto out;
    zmq_pollitem_t items[2] = {{up, 0, ZMQ_POLLIN, 0},
                               {down, 0, ZMQ_POLLIN, 0}};
    for (;;) {
        if (zmq_poll(items, 2, -1) < 0)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, up, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            bool stop = zmq_msg_size(&m) == 0;
            if (zmq_send(down, rid, (size_t)rid_len, ZMQ_SNDMORE) < 0 ||
                zmq_msg_send(&m, down, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            if (stop) {
                rc = 0;
                break;
            }
        }
        if (items[1].revents & ZMQ_POLLIN) {
            uint8_t from[RID_MAX];
            int more = 0;
            size_t sz = sizeof more;
            if (zmq_recv(down, from, sizeof from, 0) < 0 ||
                zmq_getsockopt(down, ZMQ_RCVMORE, &more, &sz) || !more)
                break;
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, down, 0) < 0 || zmq_msg_send(&m, up, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
        }
    }
out:
    if (peer > 0)
        bench_reap(peer, rc == 0 ? IO_TIMEOUT : 0);
    zmq_close(up);
    zmq_close(down);
    zmq_ctx_term(ctx);
    char path[128];
    snprintf(path, sizeof path, "%s/zmq.sock", dir);
    unlink(path);
    rmdir(dir);
    return rc;
}

/* --- the raw zmq side (a ROUTER bound here, like a kin parent's) ---------- */

typedef struct zpeer {
    pid_t pid;
    uint8_t rid[RID_MAX];
    size_t rid_len;
} zpeer;

/* [rid][body] to a peer. */
static int
zsend(zrouter *z, const zpeer *p, const void *body, size_t len)
{
    return zrouter_send(z, p->rid, p->rid_len, body, len);
}

/* Starts a peer and waits for its hello (which carries its routing id). */
static int
zpeer_start(const config *cfg, zrouter *z, zpeer *p, bool relay)
{
    *p = (zpeer){0};
    if ((p->pid = start_process(cfg, z->ep, relay)) < 0)
        return -1;
    char h;
    return zrouter_recv(z, p->rid, &p->rid_len, &h, 1) == 1 ? 0 : -1;
}

/* Asks the peer to stop (if it said hello), kills it otherwise, reaps. */
static void
zpeer_stop(zrouter *z, zpeer *p)
{
    if (p->pid <= 0)
        return;
    bool asked = p->rid_len && zsend(z, p, "", 0) == 0;
    bench_reap(p->pid, asked ? IO_TIMEOUT : 0);
    p->pid = 0;
}

static int
zping(zrouter *z, const zpeer *p, uint8_t *buf)
{
    uint8_t rid[RID_MAX];
    size_t rid_len;
    if (zsend(z, p, buf, PAYLOAD) ||
        zrouter_recv(z, rid, &rid_len, buf, PAYLOAD) != PAYLOAD)
        return -1;
    return 0;
}

/* --- functions served by every kin context -------------------------------- */

/* A child's grandchild, kept between calls (one per child process). */
typedef struct grandchild {
    pthread_mutex_t mu;
    kin_child *c;
} grandchild;

static kin_err
echo(kin_call *c, void *arg)
{
    const void *p;
    size_t len;
    kin_err e = kin_call_args(c, "B", &p, &len);
    return e ? e : kin_call_return(c, "B", p, len);
}

/* Offers the "bench" service here, taking `window` calls at a time as a
 * direct callee would queue them. */
static kin_err
offer_bench(kin_call *c, void *arg)
{
    (void)arg;
    int64_t bound = 0;
    kin_err e = kin_call_args(c, "I", &bound);
    if (!e)
        e = kin_service_offer(kin_call_node(c), "bench",
                              &(kin_service_opts){.bound = (int)bound});
    return e ? e : kin_call_return(c, "u", 0u);
}

/* Offers service [name] here with [bound]; -> the CLOCK_MONOTONIC time
 * (ns; one clock for every process on the machine) at which it called
 * kin_service_offer. (Not when that returned: on a busy machine this
 * thread may run again only after the first call was served here.) */
static kin_err
offer_at(kin_call *c, void *arg)
{
    (void)arg;
    const char *name = NULL;
    int64_t bound = 0;
    kin_err e = kin_call_args(c, "sI", &name, &bound);
    uint64_t from = now_ns();
    if (!e)
        e = kin_service_offer(kin_call_node(c), name,
                              &(kin_service_opts){.bound = (int)bound});
    return e ? e : kin_call_return(c, "U", from);
}

/* -> the id of the context serving the call. */
static kin_err
who(kin_call *c, void *arg)
{
    (void)arg;
    return kin_call_return(c, "u", kin_node_id(kin_call_node(c)));
}

static kin_err
spawn_grandchild(kin_call *c, void *arg)
{
    grandchild *g = arg;
    pthread_mutex_lock(&g->mu);
    kin_err e = g->c ? KIN_EEXISTS : kin_spawn(kin_call_node(c), NULL, &g->c);
    uint32_t id = e ? 0 : kin_child_id(g->c);
    pthread_mutex_unlock(&g->mu);
    if (e)
        return kin_call_fail(c, e, "spawn: %s", kin_strerror(e));
    return kin_call_return(c, "u", id);
}

static kin_err
stop_grandchild(kin_call *c, void *arg)
{
    grandchild *g = arg;
    pthread_mutex_lock(&g->mu);
    kin_child_destroy(&g->c);
    pthread_mutex_unlock(&g->mu);
    return KIN_OK;
}

/* --- one run -------------------------------------------------------------- */

/* What the figures are measured against. */
typedef struct bench {
    const config *cfg;
    results *res;
    kin_node *master;
    kin_child *child; /* serves the call figures */
    /* The "bench" service's providers: child, then SVC_PROVIDERS - 1 more
     * for the throughput figures. */
    kin_child *provs[SVC_PROVIDERS];
    uint32_t gc; /* its grandchild, 0 if none */
    zrouter z;
    zpeer peer;  /* echoes the baseline's round trips */
    zpeer relay; /* passes the two-hop baseline's on to a peer of its own */
    /* The hand-off floors: 2 hand-offs (worker pool) and 1 (inline). */
    zfloor_rtt *handoff2, *handoff1, *handoff_peer;
    /* The same pipelined (BENCH_WORKERS workers, inline). */
    zfloor_pipe *pipe2, *pipe1, *pipe_peer;
    uint8_t payload[PAYLOAD];
} bench;

/* The kinds of round trip, measured alternately: the baseline, a call on
 * the callee's worker pool and one served on its broker thread
 * (kin_export_inline), each over one hop and two; the hand-off floors. */
enum {
    M_ZMQ,
    M_KIN,
    M_KIN2,
    M_KINI,
    M_KIN2I,
    M_SVC,
    M_ZMQ2,
    M_ZH2,
    M_ZH1,
    M_ZHP,
    M_COUNT
};

static kin_err
call_echo(kin_node *n, uint32_t ctx, const uint8_t *payload, bool on_broker)
{
    kin_msg *r = NULL;
    kin_err e =
        kin_call_sync(n, ctx, on_broker ? "bench.echo_inline" : "bench.echo",
                      IO_TIMEOUT, &r, "B", payload, (size_t)PAYLOAD);
    kin_msg_destroy(&r);
    return e;
}

/* zmq failures as kin_err: zmq sets errno. */
static kin_err
zerr(void)
{
    return errno ? -errno : -EIO;
}

static kin_err
round_trip(bench *b, int method)
{
    switch (method) {
    case M_ZMQ:
        return zping(&b->z, &b->peer, b->payload) ? zerr() : KIN_OK;
    case M_ZMQ2:
        return zping(&b->z, &b->relay, b->payload) ? zerr() : KIN_OK;
    case M_ZH2:
    case M_ZH1:
    case M_ZHP:
        return zfloor_rtt_ping(method == M_ZH2   ? b->handoff2
                               : method == M_ZH1 ? b->handoff1
                                                 : b->handoff_peer,
                               b->payload, PAYLOAD)
                   ? zerr()
                   : KIN_OK;
    case M_KIN:
    case M_KINI:
        return call_echo(b->master, kin_child_id(b->child), b->payload,
                         method == M_KINI);
    case M_SVC: {
        kin_msg *r = NULL;
        kin_err e = kin_service_call(b->master, "bench.echo", IO_TIMEOUT, &r,
                                     "B", b->payload, (size_t)PAYLOAD);
        kin_msg_destroy(&r);
        return e;
    }
    default:
        return call_echo(b->master, b->gc, b->payload, method == M_KIN2I);
    }
}

/* The echo comes back intact. */
static kin_err
check_echo(kin_node *n, uint32_t ctx, const uint8_t *payload)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(n, ctx, "bench.echo", IO_TIMEOUT, &r, "B",
                              payload, (size_t)PAYLOAD);
    const void *back = NULL;
    size_t len = 0;
    if (!e)
        e = kin_msg_unpack(r, "B", &back, &len);
    if (!e && (len != PAYLOAD || memcmp(back, payload, len)))
        e = KIN_EBADMSG;
    kin_msg_destroy(&r);
    return e;
}

static const char *method_names[M_COUNT] = {"zmq round trip",
                                            "call",
                                            "two-hop call",
                                            "inline call",
                                            "two-hop inline call",
                                            "service call",
                                            "zmq two-hop round trip",
                                            "zmq 2 hand-off round trip",
                                            "zmq 1 hand-off round trip",
                                            "zmq peer's hand-off round trip"};

static kin_err
run_latency(bench *b)
{
    const config *cfg = b->cfg;
    bool on[M_COUNT] = {cfg->zmq,
                        cfg->phases & PH_RTT,
                        cfg->phases & PH_RTT2,
                        cfg->phases & PH_RTT,
                        cfg->phases & PH_RTT2,
                        cfg->phases & PH_RTT,
                        cfg->zmq && (cfg->phases & PH_RTT2),
                        cfg->zmq && (cfg->phases & PH_RTT),
                        cfg->zmq && (cfg->phases & PH_RTT),
                        cfg->zmq && (cfg->phases & PH_RTT)};
    if (cfg->kind)
        for (int k = M_KIN; k < M_ZMQ2; k++)
            on[k] = on[k] && k == (cfg->kind == 1 ? M_KIN : M_SVC);
    uint64_t *ns[M_COUNT] = {NULL};
    size_t n = (size_t)cfg->samples;
    kin_err e = KIN_OK;
    int m, cur = M_KIN;
    for (m = 0; m < M_COUNT && !e; m++)
        if (on[m] && !(ns[m] = malloc(n * sizeof *ns[m])))
            e = -ENOMEM;
    if (!e && on[M_KIN])
        e = check_echo(b->master, kin_child_id(b->child), b->payload);
    if (!e && on[M_KIN2]) {
        cur = M_KIN2;
        e = check_echo(b->master, b->gc, b->payload);
    }
    for (m = 0; m < M_COUNT && !e; m++)
        for (int i = 0; on[m] && i < cfg->warmup && !e; i++)
            e = round_trip(b, cur = m);
    /* Rounds, so that a burst of load on the machine hits every method. */
    int rounds = cfg->rounds;
    size_t per = n / (size_t)rounds;
    for (int r = 0; r < rounds && !e; r++) {
        size_t from = (size_t)r * per, to = r == rounds - 1 ? n : from + per;
        for (m = 0; m < M_COUNT && !e; m++)
            for (size_t i = from; on[m] && i < to && !e; i++) {
                uint64_t t0 = now_ns();
                e = round_trip(b, cur = m);
                ns[m][i] = now_ns() - t0;
            }
    }
    if (e) {
        fprintf(stderr, "kin-bench: %s: %s\n", method_names[cur],
                kin_strerror(e));
    } else {
        double *med[M_COUNT] = {
            &b->res->zmq_rtt_us,          &b->res->call_rtt_us,
            &b->res->call2_rtt_us,        &b->res->icall_rtt_us,
            &b->res->icall2_rtt_us,       &b->res->svc_rtt_us,
            &b->res->zmq_rtt2_us,         &b->res->zmq_handoff_rtt_us,
            &b->res->zmq_handoff1_rtt_us, &b->res->zmq_handoff_peer_rtt_us};
        double *p99[M_COUNT] = {&b->res->zmq_rtt_p99_us,
                                &b->res->call_rtt_p99_us,
                                &b->res->call2_rtt_p99_us,
                                &b->res->icall_rtt_p99_us,
                                &b->res->icall2_rtt_p99_us,
                                &b->res->svc_rtt_p99_us,
                                &b->res->zmq_rtt2_p99_us,
                                &b->res->zmq_handoff_rtt_p99_us,
                                &b->res->zmq_handoff1_rtt_p99_us,
                                &b->res->zmq_handoff_peer_rtt_p99_us};
        for (m = 0; m < M_COUNT; m++) {
            if (!on[m])
                continue;
            *med[m] = quantile(ns[m], n, 0.5) / 1e3;
            *p99[m] = quantile(ns[m], n, 0.99) / 1e3;
        }
    }
    for (m = 0; m < M_COUNT; m++)
        free(ns[m]);
    return e;
}

/* total messages with up to `window` in flight, answered by the peer.
 * Returns 0 or -1 (errno set by zmq). */
static int
zmq_pipelined(bench *b, int total, uint64_t *ns)
{
    uint8_t buf[PAYLOAD], rid[RID_MAX];
    size_t rid_len;
    memcpy(buf, b->payload, sizeof buf);
    int window = b->cfg->window < total ? b->cfg->window : total;
    int sent = 0, got = 0;
    uint64_t t0 = now_ns();
    for (; sent < window; sent++)
        if (zsend(&b->z, &b->peer, buf, PAYLOAD))
            return -1;
    while (got < total) {
        if (zrouter_recv(&b->z, rid, &rid_len, buf, PAYLOAD) != PAYLOAD)
            return -1;
        got++;
        if (sent < total) {
            if (zsend(&b->z, &b->peer, buf, PAYLOAD))
                return -1;
            sent++;
        }
    }
    *ns += now_ns() - t0;
    return 0;
}

/* total calls with up to `window` in flight, waiting for the oldest
 * first. */
static kin_err
kin_pipelined_fn(bench *b, const char *fn, int total, uint64_t *ns)
{
    int window = b->cfg->window < total ? b->cfg->window : total;
    kin_receiver **ring = calloc((size_t)window, sizeof *ring);
    if (!ring)
        return -ENOMEM;
    uint32_t ctx = kin_child_id(b->child);
    kin_err e = KIN_OK;
    int issued = 0, done = 0;
    uint64_t t0 = now_ns();
    for (; issued < window && !e; issued++)
        e = kin_call_async(b->master, ctx, fn, &ring[issued], "B", b->payload,
                           (size_t)PAYLOAD);
    for (int head = 0; done < total && !e; head = (head + 1) % window) {
        kin_msg *m = NULL;
        e = kin_call_wait(ring[head], IO_TIMEOUT, &m);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&ring[head]);
        done++;
        if (!e && issued < total) {
            e = kin_call_async(b->master, ctx, fn, &ring[head], "B", b->payload,
                               (size_t)PAYLOAD);
            issued++;
        }
    }
    *ns += now_ns() - t0;
    for (int i = 0; i < window; i++)
        kin_receiver_destroy(&ring[i]);
    free(ring);
    return e;
}

static kin_err
kin_pipelined(bench *b, int total, uint64_t *ns)
{
    return kin_pipelined_fn(b, "bench.echo", total, ns);
}

/* The same through one oneshot kin_select over every call in flight. */
static kin_err
kin_pipelined_select(bench *b, int total, uint64_t *ns)
{
    int window = b->cfg->window < total ? b->cfg->window : total;
    kin_receiver **slot = calloc((size_t)window, sizeof *slot);
    kin_select *sel = NULL;
    kin_err e = slot ? kin_select_new(&sel, true) : -ENOMEM;
    uint32_t ctx = kin_child_id(b->child);
    int issued = 0, done = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < window && !e; i++, issued++) {
        e = kin_call_async(b->master, ctx, "bench.echo", &slot[i], "B",
                           b->payload, (size_t)PAYLOAD);
        if (!e)
            e = kin_select_add(sel, kin_receiver_latch(slot[i]),
                               (void *)(intptr_t)i);
    }
    while (done < total && !e) {
        kin_msg *m = NULL;
        void *tag = NULL;
        if ((e = kin_select_get(sel, IO_TIMEOUT, &m, &tag)))
            break;
        e = kin_call_result_of(&m);
        kin_msg_destroy(&m);
        int i = (int)(intptr_t)tag;
        kin_receiver_destroy(&slot[i]);
        done++;
        if (!e && issued < total) {
            e = kin_call_async(b->master, ctx, "bench.echo", &slot[i], "B",
                               b->payload, (size_t)PAYLOAD);
            if (!e)
                e = kin_select_add(sel, kin_receiver_latch(slot[i]), tag);
            issued++;
        }
    }
    *ns += now_ns() - t0;
    kin_select_destroy(&sel);
    for (int i = 0; slot && i < window; i++)
        kin_receiver_destroy(&slot[i]);
    free(slot);
    return e;
}

/* total calls with up to `window` in flight, waiting for the oldest
 * first: to the "bench" service (svc), or to the SVC_PROVIDERS children in
 * turn. */
static kin_err
pipelined4(bench *b, bool svc, int total, uint64_t *ns)
{
    int window = b->cfg->window < total ? b->cfg->window : total;
    kin_receiver **ring = calloc((size_t)window, sizeof *ring);
    if (!ring)
        return -ENOMEM;
    kin_err e = KIN_OK;
    int issued = 0, done = 0;
    uint64_t t0 = now_ns();
    for (int head = 0; done < total && !e; head = (head + 1) % window) {
        if (ring[head]) {
            kin_msg *m = NULL;
            e = kin_call_wait(ring[head], IO_TIMEOUT, &m);
            kin_msg_destroy(&m);
            kin_receiver_destroy(&ring[head]);
            done++;
        }
        if (!e && issued < total) {
            if (svc)
                e = kin_service_call_async(b->master, "bench.echo", IO_TIMEOUT,
                                           &ring[head], "B", b->payload,
                                           (size_t)PAYLOAD);
            else
                e = kin_call_async(
                    b->master, kin_child_id(b->provs[issued % SVC_PROVIDERS]),
                    "bench.echo", &ring[head], "B", b->payload,
                    (size_t)PAYLOAD);
            issued++;
        }
    }
    *ns += now_ns() - t0;
    for (int i = 0; i < window; i++)
        kin_receiver_destroy(&ring[i]);
    free(ring);
    return e;
}

static kin_err
run_throughput(bench *b)
{
    const config *cfg = b->cfg;
    int per = cfg->pipelined / PIPE_ROUNDS;
    if (per < 1)
        per = 1;
    uint64_t zns = 0, kns = 0, sns = 0, ins = 0, vns = 0, dns = 0;
    uint64_t h2ns = 0, h1ns = 0, hpns = 0;
    kin_err e = KIN_OK;
    for (int r = 0; r < PIPE_ROUNDS && !e; r++) {
        if (!e && cfg->kind != 1)
            e = pipelined4(b, true, per, &vns);
        if (!e && cfg->kind != 2)
            e = pipelined4(b, false, per, &dns);
        if (cfg->kind)
            continue; /* those two alone */
        if (cfg->zmq && zmq_pipelined(b, per, &zns))
            e = zerr();
        if (!e && cfg->zmq &&
            zfloor_pipe_run(b->pipe2, b->payload, PAYLOAD, per, &h2ns)) {
            e = zerr();
            fprintf(stderr, "kin-bench: zmq pipelined 2 hand-offs: %s\n",
                    kin_strerror(e));
        }
        if (!e && cfg->zmq &&
            zfloor_pipe_run(b->pipe1, b->payload, PAYLOAD, per, &h1ns)) {
            e = zerr();
            fprintf(stderr, "kin-bench: zmq pipelined 1 hand-off: %s\n",
                    kin_strerror(e));
        }
        if (!e && cfg->zmq &&
            zfloor_pipe_run(b->pipe_peer, b->payload, PAYLOAD, per, &hpns)) {
            e = zerr();
            fprintf(stderr, "kin-bench: zmq pipelined peer's hand-off: %s\n",
                    kin_strerror(e));
        }
        if (!e)
            e = kin_pipelined(b, per, &kns);
        if (!e)
            e = kin_pipelined_select(b, per, &sns);
        if (!e)
            e = kin_pipelined_fn(b, "bench.echo_inline", per, &ins);
    }
    if (e) {
        fprintf(stderr, "kin-bench: pipelined: %s\n", kin_strerror(e));
        return e;
    }
    double total = (double)per * PIPE_ROUNDS;
    /* A figure not taken (--kind) stays NAN. */
#define RATE(ns) ((ns) ? total / ((double)(ns) / 1e9) : NAN)
    if (cfg->zmq) {
        b->res->zmq_msgs_per_s = RATE(zns);
        b->res->zmq_handoff_msgs_per_s = RATE(h2ns);
        b->res->zmq_handoff1_msgs_per_s = RATE(h1ns);
        b->res->zmq_handoff_peer_msgs_per_s = RATE(hpns);
    }
    b->res->calls_per_s = RATE(kns);
    b->res->calls_per_s_select = RATE(sns);
    b->res->calls_per_s_inline = RATE(ins);
    b->res->svc_calls_per_s = RATE(vns);
    b->res->calls4_per_s = RATE(dns);
#undef RATE
    return 0;
}

/* Start, hello, one round trip: the raw counterpart of spawn-to-first-call;
 * the peer's memory after it. */
static int
zmq_spawn_first(bench *b, uint64_t *ns, uint64_t *rss)
{
    zpeer p;
    uint8_t buf[PAYLOAD] = {0};
    uint64_t t0 = now_ns();
    int rc =
        zpeer_start(b->cfg, &b->z, &p, false) || zping(&b->z, &p, buf) ? -1 : 0;
    *ns = now_ns() - t0;
    if (!rc) {
        *rss = (uint64_t)proc_status(p.pid, "VmRSS");
        proc_pss_uss(p.pid, &b->res->zmq_peer_pss_kib,
                     &b->res->zmq_peer_uss_kib);
        save_smaps(b->cfg->smaps_dir, p.pid, "zmq_peer");
    }
    zpeer_stop(&b->z, &p);
    return rc;
}

/* How long a child idles after its first call before its memory is read:
 * past the link of its log publisher, 1 s after its start (docs/logs.md). */
#define IDLE_SETTLE_MS 1150
/* Idle children whose memory is read, the median taken: each process's
 * libraries are loaded at addresses random to the page, so which of their
 * pages the kernel's 64 KiB fault-around maps with each fault, and so a
 * single process's RSS, varies by ±100 KiB (docs/performance.md §15). */
#define IDLE_CHILDREN 5

/* kin_spawn (fork: from the zygote), then the first call; the CPU the child
 * burned until then. */
static kin_err
kin_spawn_first(bench *b, bool fork, uint64_t *spawn_ns, uint64_t *first_ns,
                uint64_t *cpu_ns)
{
    kin_child *c = NULL;
    kin_spawn_opts o = {.fork = fork};
    uint64_t t0 = now_ns();
    kin_err e = kin_spawn(b->master, &o, &c);
    *spawn_ns = now_ns() - t0;
    if (!e)
        e = call_echo(b->master, kin_child_id(c), b->payload, false);
    *first_ns = now_ns() - t0;
    if (!e)
        *cpu_ns = (uint64_t)(proc_cpu_us(kin_child_pid(c)) * 1e3);
    kin_child_destroy(&c);
    return e;
}

/* The memory of IDLE_CHILDREN children (fork: from the zygote), each
 * started and called once, read together once they have settled: a
 * context's log publisher links to the forwarder 1 s after the start
 * when nothing was logged (docs/logs.md), and a long-idle child has. Only
 * these wait for that: the timed children follow each other without a
 * pause, as before (an idle pause cools the CPU). Medians. */
static kin_err
idle_memory(bench *b, bool fork)
{
    kin_child *c[IDLE_CHILDREN] = {0};
    kin_err e = KIN_OK;
    for (int i = 0; i < IDLE_CHILDREN && !e; i++) {
        kin_spawn_opts o = {.fork = fork};
        if (!(e = kin_spawn(b->master, &o, &c[i])))
            e = call_echo(b->master, kin_child_id(c[i]), b->payload, false);
    }
    if (!e)
        nanosleep(&(struct timespec){0, IDLE_SETTLE_MS * 1000000L}, NULL);
    enum { RSS, ANON, FILE_, PSS, USS, THREADS, FIGURES };
    uint64_t v[FIGURES][IDLE_CHILDREN];
    for (int i = 0; i < IDLE_CHILDREN && !e; i++) {
        pid_t pid = kin_child_pid(c[i]);
        double pss, uss;
        v[RSS][i] = (uint64_t)proc_status(pid, "VmRSS");
        v[ANON][i] = (uint64_t)proc_status(pid, "RssAnon");
        v[FILE_][i] = (uint64_t)proc_status(pid, "RssFile");
        v[THREADS][i] = (uint64_t)proc_status(pid, "Threads");
        proc_pss_uss(pid, &pss, &uss);
        v[PSS][i] = (uint64_t)pss;
        v[USS][i] = (uint64_t)uss;
        if (!i)
            save_smaps(b->cfg->smaps_dir, pid, fork ? "fork_child" : "child");
    }
    for (int i = 0; i < IDLE_CHILDREN; i++)
        kin_child_destroy(&c[i]);
    if (e)
        return e;
    results *r = b->res;
    if (fork) {
        r->fork_idle_rss_kib = median(v[RSS], IDLE_CHILDREN);
        r->fork_idle_pss_kib = median(v[PSS], IDLE_CHILDREN);
        r->fork_idle_uss_kib = median(v[USS], IDLE_CHILDREN);
        return KIN_OK;
    }
    r->idle_rss_kib = median(v[RSS], IDLE_CHILDREN);
    r->idle_rss_anon_kib = median(v[ANON], IDLE_CHILDREN);
    r->idle_rss_file_kib = median(v[FILE_], IDLE_CHILDREN);
    r->idle_threads = median(v[THREADS], IDLE_CHILDREN);
    r->idle_pss_kib = median(v[PSS], IDLE_CHILDREN);
    r->idle_uss_kib = median(v[USS], IDLE_CHILDREN);
    return KIN_OK;
}

/* Starts fanout peers, waits for every hello, stops and reaps them all. */
static int
zmq_fanout(bench *b)
{
    int count = b->cfg->fanout;
    zpeer *ps = calloc((size_t)count, sizeof *ps);
    if (!ps)
        return -1;
    int rc = 0, started = 0;
    uint64_t t0 = now_ns();
    for (; started < count; started++)
        if ((ps[started].pid = start_process(b->cfg, b->z.ep, false)) < 0) {
            rc = -1;
            break;
        }
    /* Hellos arrive in any order; only their routing ids matter (for the
     * stop), not which pid each belongs to. */
    for (int i = 0; i < started && !rc; i++) {
        char h;
        if (zrouter_recv(&b->z, ps[i].rid, &ps[i].rid_len, &h, 1) != 1)
            rc = -1;
    }
    for (int i = 0; i < started; i++)
        if (ps[i].rid_len && zsend(&b->z, &ps[i], "", 0))
            ps[i].rid_len = 0;
    for (int i = 0; i < started; i++)
        bench_reap(ps[i].pid, rc || !ps[i].rid_len ? 0 : IO_TIMEOUT);
    if (!rc)
        b->res->zmq_spawn100_ms = (double)(now_ns() - t0) / 1e6;
    free(ps);
    return rc;
}

/* A slice of the fan-out, started and stopped by one thread. */
typedef struct slice {
    kin_node *master;
    kin_child **kids;
    bool fork;
    int count;
    int started;
    kin_err e;
    pthread_t thread;
    bool joinable;
} slice;

static void *
slice_start(void *arg)
{
    slice *s = arg;
    kin_spawn_opts o = {.fork = s->fork};
    for (; s->started < s->count && !s->e; s->started++)
        s->e = kin_spawn(s->master, &o, &s->kids[s->started]);
    if (s->e)
        s->started--; /* the failed one left nothing behind */
    return NULL;
}

static void *
slice_stop(void *arg)
{
    slice *s = arg;
    for (int i = 0; i < s->started; i++)
        kin_child_destroy(&s->kids[i]);
    return NULL;
}

/* Runs fn on every slice, each on its own thread (or this one if a thread
 * cannot be had), and waits for all. */
static void
on_slices(slice *ss, int n, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++)
        ss[i].joinable = pthread_create(&ss[i].thread, NULL, fn, &ss[i]) == 0;
    for (int i = 0; i < n; i++) {
        if (ss[i].joinable)
            pthread_join(ss[i].thread, NULL);
        else
            fn(&ss[i]);
    }
}

/* The node's zygote: this process's child whose command is kin-zygote
 * (process/zygote.c), or 0. */
static pid_t
find_zygote(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = 0, self = getpid();
    while (d && !found && (de = readdir(d))) {
        char path[300], buf[512];
        int pid = atoi(de->d_name), ppid = 0;
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1 || ppid != self)
            continue;
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        f = fopen(path, "r");
        n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        if (!strcmp(buf, "kin-zygote"))
            found = pid;
    }
    if (d)
        closedir(d);
    return found;
}

/* Starts `fanout` children from `threads` threads at once (kin_spawn waits
 * for each HELLO, so one thread alone starts them one after the other),
 * then destroys them likewise; *start_ms and *stop_ms get the two phases,
 * *cpu_ms (unless NULL) the CPU this process, the children it reaped and
 * the zygote (fork) burned in both. */
static kin_err
kin_fanout(bench *b, int threads, bool fork, double *start_ms, double *stop_ms,
           double *cpu_ms)
{
    int count = b->cfg->fanout;
    kin_child **kids = calloc((size_t)count, sizeof *kids);
    slice *ss = calloc((size_t)threads, sizeof *ss);
    if (!kids || !ss) {
        free(kids);
        free(ss);
        return -ENOMEM;
    }
    for (int i = 0, from = 0; i < threads; i++) {
        int n = count / threads + (i < count % threads);
        ss[i] = (slice){
            .master = b->master, .kids = kids + from, .fork = fork, .count = n};
        from += n;
    }
    /* The zygote is there already (the figures before started it). */
    pid_t zygote = fork && cpu_ms ? find_zygote() : 0;
    double cpu0 = self_tree_cpu_ms() + (zygote ? proc_tree_cpu_ms(zygote) : 0);
    uint64_t t0 = now_ns();
    on_slices(ss, threads, slice_start);
    uint64_t t1 = now_ns();
    on_slices(ss, threads, slice_stop);
    uint64_t t2 = now_ns();
    if (cpu_ms)
        *cpu_ms = self_tree_cpu_ms() +
                  (zygote ? proc_tree_cpu_ms(zygote)
                   : fork ? NAN
                          : 0) -
                  cpu0;
    kin_err e = KIN_OK;
    for (int i = 0; i < threads && !e; i++)
        e = ss[i].e;
    *start_ms = (double)(t1 - t0) / 1e6;
    *stop_ms = (double)(t2 - t1) / 1e6;
    free(ss);
    free(kids);
    return e;
}

/* The same through the fork factory: the zygote's start once, then
 * spawn-to-first-call and the fan-out. */
static kin_err
run_forks(bench *b)
{
    size_t k = (size_t)b->cfg->spawns;
    uint64_t *spawn_ns = calloc(k, sizeof *spawn_ns);
    uint64_t *first_ns = calloc(k, sizeof *first_ns);
    uint64_t *cpu = calloc(k, sizeof *cpu);
    uint64_t zs = 0, zf = 0, zc = 0;
    kin_err e = spawn_ns && first_ns && cpu ? KIN_OK : -ENOMEM;
    if (!e)
        e = kin_spawn_first(b, true, &zs, &zf, &zc);
    for (size_t i = 0; i < k && !e; i++)
        e = kin_spawn_first(b, true, &spawn_ns[i], &first_ns[i], &cpu[i]);
    if (!e)
        e = idle_memory(b, true);
    double start = NAN, stop = NAN, cpu_ms = NAN;
    if (!e)
        e = kin_fanout(b, FANOUT_THREADS, true, &start, &stop, &cpu_ms);
    if (!e) {
        b->res->zygote_start_ms = (double)zs / 1e6;
        b->res->fork_ms = quantile(spawn_ns, k, 0.5) / 1e6;
        b->res->fork_first_call_ms = quantile(first_ns, k, 0.5) / 1e6;
        b->res->fork_child_cpu_us = quantile(cpu, k, 0.5) / 1e3;
        b->res->fork100_ms = start + stop;
        b->res->fork100_start_ms = start;
        b->res->fork100_stop_ms = stop;
        b->res->fork100_cpu_ms = cpu_ms;
    }
    free(cpu);
    free(first_ns);
    free(spawn_ns);
    return e;
}

static kin_err
run_spawns(bench *b)
{
    const config *cfg = b->cfg;
    size_t k = (size_t)cfg->spawns;
    uint64_t *zns = calloc(k, sizeof *zns);
    uint64_t *spawn_ns = calloc(k, sizeof *spawn_ns);
    uint64_t *first_ns = calloc(k, sizeof *first_ns);
    uint64_t *zrss = calloc(k, sizeof *zrss);
    uint64_t *cpu = calloc(k, sizeof *cpu);
    kin_err e = zns && spawn_ns && first_ns && zrss && cpu ? KIN_OK : -ENOMEM;
    const char *what = "spawn-to-first-call";
    for (size_t i = 0; i < k && !e; i++) {
        if (cfg->zmq && zmq_spawn_first(b, &zns[i], &zrss[i])) {
            what = "zmq peer start";
            e = zerr();
        } else {
            e = kin_spawn_first(b, false, &spawn_ns[i], &first_ns[i], &cpu[i]);
        }
    }
    if (!e && (e = idle_memory(b, false)))
        what = "idle child";
    if (!e && cfg->zmq && zmq_fanout(b)) {
        what = "zmq fan-out";
        e = zerr();
    }
    double start = NAN, stop = NAN, seq_start = NAN, seq_stop = NAN;
    if (!e && (e = kin_fanout(b, FANOUT_THREADS, false, &start, &stop, NULL)))
        what = "fan-out";
    if (!e && (e = kin_fanout(b, 1, false, &seq_start, &seq_stop, NULL)))
        what = "sequential fan-out";
    if (!e && (e = run_forks(b)))
        what = "fork";
    if (!e && cfg->zmq &&
        zfloor_fork(cfg->self, cfg->spawns, cfg->fanout, IO_TIMEOUT,
                    &b->res->zmq_fork_first_ms, &b->res->zmq_fork_child_cpu_us,
                    &b->res->zmq_fork100_ms, &b->res->zmq_fork100_cpu_ms)) {
        what = "zmq fork floor";
        e = zerr();
    }
    if (e) {
        fprintf(stderr, "kin-bench: %s: %s\n", what, kin_strerror(e));
    } else {
        if (cfg->zmq) {
            b->res->zmq_spawn_first_ms = quantile(zns, k, 0.5) / 1e6;
            b->res->zmq_peer_rss_kib = quantile(zrss, k, 0.5);
        }
        b->res->spawn_ms = quantile(spawn_ns, k, 0.5) / 1e6;
        b->res->spawn_first_call_ms = quantile(first_ns, k, 0.5) / 1e6;
        b->res->spawn_child_cpu_us = quantile(cpu, k, 0.5) / 1e3;
        b->res->spawn100_ms = start + stop;
        b->res->spawn100_start_ms = start;
        b->res->spawn100_stop_ms = stop;
        b->res->spawn100_seq_ms = seq_start + seq_stop;
    }
    free(cpu);
    free(zrss);
    free(first_ns);
    free(spawn_ns);
    free(zns);
    return e;
}

/* --- a provider joining a loaded service ---------------------------------- */

/* The callers keeping "join" loaded, and what they watch for. */
typedef struct join_load {
    kin_node *master;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t target;  /* the joining provider (0: none yet) */
    uint64_t seen_at; /* when its first reply came back (0: not yet) */
    uint64_t calls;   /* replies received */
    bool stop;
    kin_err e; /* the first caller's failure */
} join_load;

/* One caller: JOIN_WINDOW service calls of join.who in flight, waiting for
 * the oldest first, until told to stop; then it waits for the rest. */
static void *
join_caller(void *arg)
{
    join_load *l = arg;
    kin_receiver *ring[JOIN_WINDOW] = {NULL};
    kin_err e = KIN_OK;
    bool stop = false;
    for (int head = 0; !e && !stop; head = (head + 1) % JOIN_WINDOW) {
        if (ring[head]) {
            kin_msg *m = NULL;
            uint32_t id = 0;
            e = kin_call_wait(ring[head], IO_TIMEOUT, &m);
            if (!e)
                e = kin_msg_unpack(m, "u", &id);
            uint64_t at = now_ns();
            kin_msg_destroy(&m);
            kin_receiver_destroy(&ring[head]);
            pthread_mutex_lock(&l->mu);
            bool wake = ++l->calls == JOIN_STEADY;
            if (!e && id && id == l->target && !l->seen_at) {
                l->seen_at = at;
                wake = true;
            }
            if (wake)
                pthread_cond_broadcast(&l->cv);
            stop = l->stop;
            pthread_mutex_unlock(&l->mu);
        }
        if (!e && !stop)
            e = kin_service_call_async(l->master, "join.who", IO_TIMEOUT,
                                       &ring[head], NULL);
    }
    for (int i = 0; i < JOIN_WINDOW; i++) {
        kin_msg *m = NULL;
        if (ring[i] && !e)
            e = kin_call_wait(ring[i], IO_TIMEOUT, &m);
        kin_msg_destroy(&m);
        kin_receiver_destroy(&ring[i]);
    }
    pthread_mutex_lock(&l->mu);
    if (e && !l->e)
        l->e = e;
    l->stop = true; /* one caller's failure ends the figure */
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Waits up to IO_TIMEOUT for done(l) (l->mu held) or a caller's failure. */
static kin_err
join_wait(join_load *l, bool (*done)(const join_load *))
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += IO_TIMEOUT / 1000;
    kin_err e = KIN_OK;
    pthread_mutex_lock(&l->mu);
    while (!done(l) && !l->stop && !e)
        if (pthread_cond_timedwait(&l->cv, &l->mu, &dl) == ETIMEDOUT)
            e = KIN_ETIMEOUT;
    if (!done(l) && !e)
        e = l->e ? l->e : KIN_ECANCELLED;
    pthread_mutex_unlock(&l->mu);
    return e;
}

/* Every caller has had a full window answered: the load is steady. */
static bool
join_loaded(const join_load *l)
{
    return l->calls >= JOIN_STEADY;
}

static bool
join_seen(const join_load *l)
{
    return l->seen_at != 0;
}

/* Offers "join" in context ctx; *from gets when kin_service_offer was
 * called there. */
static kin_err
offer_join(kin_node *n, uint32_t ctx, uint64_t *from)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(n, ctx, "bench.offer_at", IO_TIMEOUT, &r, "sI",
                              "join", (int64_t)0);
    if (!e)
        e = kin_msg_unpack(r, "U", from);
    kin_msg_destroy(&r);
    return e;
}

/* One repetition: the callers load "join" (offered by provs), a new child
 * offers it, *ns gets the time from its kin_service_offer call to the
 * callers' first reply from it, *calls and *load_ns what the callers did
 * meanwhile. The load stops before the new child is destroyed. */
static kin_err
join_once(bench *b, uint64_t *ns, uint64_t *calls, uint64_t *load_ns)
{
    kin_child *c = NULL;
    pthread_t th[JOIN_CALLERS];
    int started = 0;
    join_load l = {.master = b->master,
                   .mu = PTHREAD_MUTEX_INITIALIZER,
                   .cv = PTHREAD_COND_INITIALIZER};
    kin_err e = kin_spawn(b->master, NULL, &c);
    for (; started < JOIN_CALLERS && !e; started++)
        if (pthread_create(&th[started], NULL, join_caller, &l))
            e = -EAGAIN;
    uint64_t t0 = now_ns(), from = 0;
    if (!e)
        e = join_wait(&l, join_loaded);
    if (!e) {
        pthread_mutex_lock(&l.mu);
        l.target = kin_child_id(c);
        pthread_mutex_unlock(&l.mu);
        e = offer_join(b->master, kin_child_id(c), &from);
    }
    if (!e)
        e = join_wait(&l, join_seen);
    pthread_mutex_lock(&l.mu);
    l.stop = true;
    pthread_mutex_unlock(&l.mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    *load_ns = now_ns() - t0;
    if (!e && l.e)
        e = l.e;
    if (!e && l.seen_at <= from)
        e = KIN_EBADMSG; /* one clock: cannot happen */
    if (!e)
        *ns = l.seen_at - from;
    *calls = l.calls;
    kin_child_destroy(&c);
    return e;
}

/* svc_join_ms: JOIN_PROVIDERS children offer "join"; `joins` times,
 * JOIN_CALLERS threads load it and a new provider joins. */
static kin_err
run_join(bench *b)
{
    size_t k = (size_t)b->cfg->joins;
    kin_child *provs[JOIN_PROVIDERS] = {NULL};
    uint64_t *ns = calloc(k, sizeof *ns);
    uint64_t calls = 0, load_ns = 0;
    const char *what = "provider";
    kin_err e = ns ? KIN_OK : -ENOMEM;
    for (int i = 0; i < JOIN_PROVIDERS && !e; i++) {
        uint64_t from;
        e = kin_spawn(b->master, NULL, &provs[i]);
        if (!e)
            e = offer_join(b->master, kin_child_id(provs[i]), &from);
    }
    if (!e)
        what = "provider join";
    for (size_t i = 0; i < k && !e; i++) {
        uint64_t c = 0, t = 0;
        e = join_once(b, &ns[i], &c, &t);
        calls += c;
        load_ns += t;
    }
    if (e) {
        fprintf(stderr, "kin-bench: %s: %s\n", what, kin_strerror(e));
    } else {
        b->res->svc_join_ms = quantile(ns, k, 0.5) / 1e6;
        b->res->svc_join_max_ms = quantile(ns, k, 1.0) / 1e6;
        b->res->svc_join_load_calls_per_s =
            (double)calls / ((double)load_ns / 1e9);
    }
    for (int i = 0; i < JOIN_PROVIDERS; i++)
        kin_child_destroy(&provs[i]);
    free(ns);
    return e;
}

/* Sets up the peers the phases need, runs the phases, tears everything
 * down (every process started here is reaped). */
/* --- big payloads ----------------------------------------------------------
 */

#define BIG_MAX (64u << 20) /* the largest big payload: KIN_MAX_MSG_DEFAULT */
#define BIG_TIMEOUT 60000   /* ms: a big echo on a loaded machine */

static void
no_free(void *data, void *hint)
{
    (void)data;
    (void)hint;
}

/* The raw zmq floor: len bytes sent from buf without a copy
 * (zmq_msg_init_data) and the echo received into a zmq message, as a zmq
 * program moving big buffers would. */
static kin_err
zmq_big_echo(bench *b, const uint8_t *buf, size_t len)
{
    zmq_msg_t m;
    uint8_t rid[RID_MAX];
    if (zmq_send(b->z.sock, b->peer.rid, b->peer.rid_len, ZMQ_SNDMORE) < 0 ||
        zmq_msg_init_data(&m, (void *)buf, len, no_free, NULL))
        return zerr();
    if (zmq_msg_send(&m, b->z.sock, 0) < 0) {
        zmq_msg_close(&m);
        return zerr();
    }
    if (zmq_recv(b->z.sock, rid, sizeof rid, 0) < 0)
        return zerr();
    zmq_msg_init(&m);
    int n = zmq_msg_recv(&m, b->z.sock, 0);
    size_t got = zmq_msg_size(&m);
    zmq_msg_close(&m);
    if (n < 0)
        return zerr();
    return got == len ? KIN_OK : KIN_EBADMSG;
}

/* A kin call echoing len bytes of buf; the reply is read in place ('B'),
 * and compared with buf when check. */
static kin_err
kin_big_echo(bench *b, const uint8_t *buf, size_t len, bool check)
{
    kin_msg *r = NULL;
    kin_err e = kin_call_sync(b->master, kin_child_id(b->child), "bench.echo",
                              BIG_TIMEOUT, &r, "B", buf, len);
    const void *back = NULL;
    size_t got = 0;
    if (!e)
        e = kin_msg_unpack(r, "B", &back, &got);
    if (!e && (got != len || (check && memcmp(back, buf, len))))
        e = KIN_EBADMSG;
    kin_msg_destroy(&r);
    return e;
}

static kin_err
run_big(bench *b)
{
    static const size_t sizes[] = {1u << 20, 8u << 20, BIG_MAX};
    double *kin_ms[] = {&b->res->big1_rtt_ms, &b->res->big8_rtt_ms,
                        &b->res->big_rtt_ms};
    double *zmq_ms[] = {&b->res->zmq_big1_rtt_ms, &b->res->zmq_big8_rtt_ms,
                        &b->res->zmq_big_rtt_ms};
    int rounds = b->cfg->big_rounds;
    uint8_t *buf = malloc(BIG_MAX);
    uint64_t *kns = calloc((size_t)rounds, sizeof *kns);
    uint64_t *zns = calloc((size_t)rounds, sizeof *zns);
    kin_err e = buf && kns && zns ? KIN_OK : -ENOMEM;
    const char *what = "kin";
    if (!e)
        for (size_t i = 0; i < BIG_MAX; i++)
            buf[i] = (uint8_t)(i * 131 + (i >> 12));
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0] && !e; s++) {
        size_t len = sizes[s];
        /* Once untimed: the echo is intact, and pages are touched. */
        if ((e = kin_big_echo(b, buf, len, true)))
            break;
        if (b->cfg->zmq && (e = zmq_big_echo(b, buf, len))) {
            what = "zmq";
            break;
        }
        /* Turns, so that a burst of load on the machine hits both. */
        for (int r = 0; r < rounds && !e; r++) {
            uint64_t t0 = now_ns();
            what = "kin";
            e = kin_big_echo(b, buf, len, false);
            kns[r] = now_ns() - t0;
            if (!e && b->cfg->zmq) {
                what = "zmq";
                t0 = now_ns();
                e = zmq_big_echo(b, buf, len);
                zns[r] = now_ns() - t0;
            }
        }
        if (!e) {
            *kin_ms[s] = quantile(kns, (size_t)rounds, 0.5) / 1e6;
            if (b->cfg->zmq)
                *zmq_ms[s] = quantile(zns, (size_t)rounds, 0.5) / 1e6;
        }
    }
    if (e)
        fprintf(stderr, "kin-bench: big echo (%s): %s\n", what,
                kin_strerror(e));
    free(buf);
    free(kns);
    free(zns);
    return e;
}

static int
run(const config *cfg, results *res)
{
    bench b = {.cfg = cfg, .res = res};
    memset(b.payload, 'k', sizeof b.payload);
    bool calls = cfg->phases & (PH_RTT | PH_RTT2 | PH_PIPE | PH_BIG);
    bool zpeer =
        cfg->zmq && (cfg->phases & (PH_RTT | PH_RTT2 | PH_PIPE | PH_BIG));
    int rc = 1;
    kin_err e = kin_init(&b.master, NULL);
    if (e) {
        fprintf(stderr, "kin-bench: kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    if (cfg->zmq && zrouter_open(&b.z, IO_TIMEOUT)) {
        fprintf(stderr, "kin-bench: zmq bind %s: %s\n", b.z.ep,
                zmq_strerror(errno));
        goto out;
    }
    if (zpeer && zpeer_start(cfg, &b.z, &b.peer, false)) {
        fprintf(stderr, "kin-bench: the zmq peer did not say hello\n");
        goto out;
    }
    if (cfg->zmq && (cfg->phases & PH_RTT2) &&
        zpeer_start(cfg, &b.z, &b.relay, true)) {
        fprintf(stderr, "kin-bench: the zmq relay did not say hello\n");
        goto out;
    }
    if (cfg->zmq && (cfg->phases & PH_RTT) &&
        (!(b.handoff2 = zfloor_rtt_open(cfg->self, 2, IO_TIMEOUT)) ||
         !(b.handoff1 = zfloor_rtt_open(cfg->self, 1, IO_TIMEOUT)) ||
         !(b.handoff_peer = zfloor_rtt_open_self_recv(cfg->self, IO_TIMEOUT))))
        goto out;
    if (cfg->zmq && (cfg->phases & PH_PIPE) && !cfg->kind &&
        (!(b.pipe2 = zfloor_pipe_open(cfg->self, 2, BENCH_WORKERS, cfg->window,
                                      IO_TIMEOUT)) ||
         !(b.pipe1 =
               zfloor_pipe_open(cfg->self, 1, 1, cfg->window, IO_TIMEOUT)) ||
         !(b.pipe_peer = zfloor_pipe_open_self_recv(cfg->self, BENCH_WORKERS,
                                                    cfg->window, IO_TIMEOUT))))
        goto out;
    if (calls && (e = kin_spawn(b.master, NULL, &b.child))) {
        fprintf(stderr, "kin-bench: spawn: %s\n", kin_strerror(e));
        goto out;
    }
    b.provs[0] = b.child;
    for (int i = 0; calls && i < SVC_PROVIDERS; i++) {
        if (i && !(cfg->phases & PH_PIPE))
            break;
        if (i && (e = kin_spawn(b.master, NULL, &b.provs[i]))) {
            fprintf(stderr, "kin-bench: spawn: %s\n", kin_strerror(e));
            goto out;
        }
        /* Its offer reaches this table before the reply, on the same
         * link. */
        kin_msg *r = NULL;
        e = kin_call_sync(b.master, kin_child_id(b.provs[i]), "bench.offer",
                          IO_TIMEOUT, &r, "I", (int64_t)cfg->window);
        kin_msg_destroy(&r);
        if (e) {
            fprintf(stderr, "kin-bench: offer: %s\n", kin_strerror(e));
            goto out;
        }
    }
    if (cfg->phases & PH_RTT2) {
        kin_msg *r = NULL;
        e = kin_call_sync(b.master, kin_child_id(b.child),
                          "bench.spawn_grandchild", 30000, &r, NULL);
        if (!e)
            e = kin_msg_unpack(r, "u", &b.gc);
        kin_msg_destroy(&r);
        if (e) {
            fprintf(stderr, "kin-bench: grandchild: %s\n", kin_strerror(e));
            goto out;
        }
    }
    if ((cfg->phases & (PH_RTT | PH_RTT2)) && run_latency(&b))
        goto out;
    if ((cfg->phases & PH_PIPE) && run_throughput(&b))
        goto out;
    if ((cfg->phases & PH_SPAWN) && run_spawns(&b))
        goto out;
    if ((cfg->phases & PH_SVC) && run_join(&b))
        goto out;
    if ((cfg->phases & PH_BIG) && run_big(&b))
        goto out;
    rc = 0;
out:
    zpeer_stop(&b.z, &b.peer);
    zpeer_stop(&b.z, &b.relay);
    zrouter_close(&b.z);
    zfloor_rtt_close(&b.handoff2);
    zfloor_rtt_close(&b.handoff1);
    zfloor_rtt_close(&b.handoff_peer);
    zfloor_pipe_close(&b.pipe2);
    zfloor_pipe_close(&b.pipe1);
    zfloor_pipe_close(&b.pipe_peer);
    if (b.gc) {
        kin_msg *r = NULL;
        kin_call_sync(b.master, kin_child_id(b.child), "bench.stop_grandchild",
                      30000, &r, NULL);
        kin_msg_destroy(&r);
    }
    kin_child_destroy(&b.child);
    for (int i = 1; i < SVC_PROVIDERS; i++)
        kin_child_destroy(&b.provs[i]);
    /* Stops and reaps any child still running. */
    kin_node_destroy(&b.master);
    return rc;
}

/* --- output --------------------------------------------------------------- */

static void
print_json(const config *cfg, results *r)
{
    printf("{\"quick\":%s,\"samples\":%d,\"pipelined\":%d,\"window\":%d,"
           "\"spawns\":%d,\"fanout\":%d,\"joins\":%d,\"payload\":%d",
           cfg->quick ? "true" : "false", cfg->samples, cfg->pipelined,
           cfg->window, cfg->spawns, cfg->fanout, cfg->joins, PAYLOAD);
    for (size_t i = 0; i < N_FIGURES; i++) {
        double v = *figure(r, i);
        if (isnan(v))
            printf(",\"%s\":null", figures[i].key);
        else
            printf(",\"%s\":%.3f", figures[i].key, v);
    }
    printf("}\n");
}

/* One table row. A goal is either a ratio to the baseline (goal_ratio) or
 * a bound on the figure itself (goal_abs); either is a minimum when
 * `more`. */
static void
row(const char *name, double kin, double base, double goal_ratio,
    double goal_abs, bool more)
{
    double ratio = kin / base;
    char goal[32] = "";
    const char *verdict = "";
    if (!isnan(goal_ratio)) {
        snprintf(goal, sizeof goal, "%s %.2fx", more ? ">=" : "<=", goal_ratio);
        if (!isnan(ratio))
            verdict = (more ? ratio >= goal_ratio : ratio <= goal_ratio)
                          ? "ok"
                          : "MISS";
    } else if (!isnan(goal_abs)) {
        snprintf(goal, sizeof goal, "%s %.0f", more ? ">=" : "<=", goal_abs);
        if (!isnan(kin))
            verdict =
                (more ? kin >= goal_abs : kin <= goal_abs) ? "ok" : "MISS";
    }
    printf("%-28s %11.1f %11.1f %7.2fx  %-10s %s\n", name, kin, base, ratio,
           goal, verdict);
}

static void
print_table(const config *cfg, const results *r)
{
    printf("kin-bench%s: %d round trips per latency figure, %d pipelined "
           "(window %d), %d-byte payload, %d spawns, %d-child fan-out\n\n",
           cfg->quick ? " --quick" : "", cfg->samples, cfg->pipelined,
           cfg->window, PAYLOAD, cfg->spawns, cfg->fanout);
    printf("%-28s %11s %11s %8s  %-10s %s\n", "figure", "kin", "raw zmq",
           "ratio", "goal", "");
    row("call rtt median (us)", r->call_rtt_us, r->zmq_rtt_us, 1.35, NAN,
        false);
    row("call rtt p99 (us)", r->call_rtt_p99_us, r->zmq_rtt_p99_us, NAN, NAN,
        false);
    row("2-hop call rtt median (us)", r->call2_rtt_us, r->zmq_rtt_us, 2.0, NAN,
        false);
    row("2-hop call vs zmq 2-hop (us)", r->call2_rtt_us, r->zmq_rtt2_us, NAN,
        NAN, false);
    row("2-hop call rtt p99 (us)", r->call2_rtt_p99_us, r->zmq_rtt_p99_us, NAN,
        NAN, false);
    row("inline call rtt median (us)", r->icall_rtt_us, r->zmq_rtt_us, 1.2, NAN,
        false);
    row("2-hop inline call rtt (us)", r->icall2_rtt_us, r->zmq_rtt_us, 2.0, NAN,
        false);
    row("pipelined calls/s", r->calls_per_s, r->zmq_msgs_per_s, NAN, 450000,
        true);
    row("pipelined calls/s (select)", r->calls_per_s_select, r->zmq_msgs_per_s,
        NAN, 450000, true);
    row("pipelined inline calls/s", r->calls_per_s_inline, r->zmq_msgs_per_s,
        NAN, 450000, true);
    /* The service figures' baseline is kin's own direct call. */
    row("service call rtt median (us)", r->svc_rtt_us, r->call_rtt_us, 1.10,
        NAN, false);
    row("4 providers: svc calls/s", r->svc_calls_per_s, r->calls4_per_s, 0.90,
        NAN, true);
    row("spawn-to-first-call (ms)", r->spawn_first_call_ms,
        r->zmq_spawn_first_ms, NAN, 5, false);
    row("idle child RSS (KiB)", r->idle_rss_kib, r->zmq_peer_rss_kib, NAN, NAN,
        false);
    row("  RSS above the zmq peer", r->idle_rss_kib - r->zmq_peer_rss_kib, NAN,
        NAN, 512, false);
    row("idle child PSS (KiB)", r->idle_pss_kib, r->zmq_peer_pss_kib, NAN, 1536,
        false);
    row("idle child USS (KiB)", r->idle_uss_kib, r->zmq_peer_uss_kib, NAN, 512,
        false);
    row("100 children (ms)", r->spawn100_ms, r->zmq_spawn100_ms, NAN, 1000,
        false);
    row("100 children, 1 thread (ms)", r->spawn100_seq_ms, r->zmq_spawn100_ms,
        NAN, 1000, false);
    row("fork: first call (ms)", r->fork_first_call_ms, r->spawn_first_call_ms,
        NAN, 1, false);
    row("fork: 100 children (ms)", r->fork100_ms, r->spawn100_ms, NAN, 100,
        false);
    row("fork: idle child RSS (KiB)", r->fork_idle_rss_kib, r->zmq_peer_rss_kib,
        NAN, NAN, false);
    row("svc: provider join (ms)", r->svc_join_ms, NAN, NAN, NAN, false);
    printf("\nAgainst the raw zmq floors (zmq_floor.c: the same thread "
           "hand-offs, the same fork of a warm zygote; no goal):\n");
    row("call vs 2 hand-offs (us)", r->call_rtt_us, r->zmq_handoff_rtt_us, NAN,
        NAN, false);
    row("  p99 (us)", r->call_rtt_p99_us, r->zmq_handoff_rtt_p99_us, NAN, NAN,
        false);
    row("inline vs 1 hand-off (us)", r->icall_rtt_us, r->zmq_handoff1_rtt_us,
        NAN, NAN, false);
    row("  p99 (us)", r->icall_rtt_p99_us, r->zmq_handoff1_rtt_p99_us, NAN, NAN,
        false);
    row("call vs peer's hand-off (us)", r->call_rtt_us,
        r->zmq_handoff_peer_rtt_us, NAN, NAN, false);
    row("calls/s vs 2 hand-offs", r->calls_per_s, r->zmq_handoff_msgs_per_s,
        NAN, NAN, true);
    row("inline calls/s vs 1 hand-off", r->calls_per_s_inline,
        r->zmq_handoff1_msgs_per_s, NAN, NAN, true);
    row("calls/s vs peer's hand-off", r->calls_per_s,
        r->zmq_handoff_peer_msgs_per_s, NAN, NAN, true);
    row("fork: first call (ms)", r->fork_first_call_ms, r->zmq_fork_first_ms,
        NAN, NAN, false);
    row("fork: 100 children (ms)", r->fork100_ms, r->zmq_fork100_ms, NAN, NAN,
        false);
    row("fork: child CPU to 1st (us)", r->fork_child_cpu_us,
        r->zmq_fork_child_cpu_us, NAN, NAN, false);
    row("fork: 100 children, CPU (ms)", r->fork100_cpu_ms,
        r->zmq_fork100_cpu_ms, NAN, NAN, false);
    printf("Floors vs plain zmq: 2 hand-offs %.2fx, 1 hand-off %.2fx, the "
           "peer's hand-off %.2fx the round trip; pipelined %.2fx, %.2fx its "
           "msgs/s.\n",
           r->zmq_handoff_rtt_us / r->zmq_rtt_us,
           r->zmq_handoff1_rtt_us / r->zmq_rtt_us,
           r->zmq_handoff_peer_rtt_us / r->zmq_rtt_us,
           r->zmq_handoff_msgs_per_s / r->zmq_msgs_per_s,
           r->zmq_handoff1_msgs_per_s / r->zmq_msgs_per_s);
    printf("\nFork (baseline column: exec): the zygote started in %.1f ms, "
           "kin_spawn alone %.2f ms; idle forked child PSS %.0f KiB, USS %.0f "
           "KiB; 100 forked children: start %.0f ms, stop %.0f ms.\n",
           r->zygote_start_ms, r->fork_ms, r->fork_idle_pss_kib,
           r->fork_idle_uss_kib, r->fork100_start_ms, r->fork100_stop_ms);
    printf("CPU a child burns to its first call (all threads): exec'd %.0f "
           "us, forked %.0f us.\n",
           r->spawn_child_cpu_us, r->fork_child_cpu_us);
    printf("\nkin_spawn alone %.2f ms. Idle child: anon %.0f KiB, file %.0f "
           "KiB, PSS %.0f KiB, USS %.0f KiB, %.0f threads. %d children from "
           "%d threads: start %.0f ms, stop %.0f ms.\n",
           r->spawn_ms, r->idle_rss_anon_kib, r->idle_rss_file_kib,
           r->idle_pss_kib, r->idle_uss_kib, r->idle_threads, cfg->fanout,
           FANOUT_THREADS, r->spawn100_start_ms, r->spawn100_stop_ms);
    printf("\nBig payloads echoed (median of %d; raw zmq sends without a "
           "copy and receives into a zmq message):\n",
           cfg->big_rounds);
    row("1 MiB echo (ms)", r->big1_rtt_ms, r->zmq_big1_rtt_ms, NAN, NAN, false);
    row("8 MiB echo (ms)", r->big8_rtt_ms, r->zmq_big8_rtt_ms, NAN, NAN, false);
    row("64 MiB echo (ms)", r->big_rtt_ms, r->zmq_big_rtt_ms, 1.3, NAN, false);
    printf("\nProvider join: %d repetitions, slowest %.2f ms; %d providers "
           "before it, %d caller threads x %d calls in flight: %.0f service "
           "calls/s.\n",
           cfg->joins, r->svc_join_max_ms, JOIN_PROVIDERS, JOIN_CALLERS,
           JOIN_WINDOW, r->svc_join_load_calls_per_s);
}

/* --- main ----------------------------------------------------------------- */

static void
usage(FILE *f)
{
    fprintf(f, "usage: kin-bench [--quick] [--json] [--samples N] [--rounds N] "
               "[--no-zmq] "
               "[--only rtt,rtt2,pipe,spawn,svc,big] [--kind direct|svc]\n"
               "[--smaps DIR]\n"
               "Raw zmq baselines in the same run unless --no-zmq; with rtt, "
               "pipe and spawn\nalso the floors of zmq_floor.c: "
               "zmq_handoff_rtt_us (call's two thread hand-offs),\n"
               "zmq_handoff1_rtt_us (inline's one), zmq_handoff_peer_rtt_us "
               "(the peer's\nworker hand-off only; pipelined: "
               "zmq_handoff_peer_msgs_per_s), zmq_handoff_msgs_per_s "
               "and\nzmq_handoff1_msgs_per_s (the same pipelined as "
               "calls_per_s and calls_per_s_inline),\nzmq_fork_first_ms, "
               "zmq_fork100_ms and zmq_fork_child_cpu_us (a warm\n"
               "single-threaded zygote forks zmq children).\n"
               "--smaps DIR: with spawn, the /proc/PID/smaps and thread names "
               "of the\nidle zmq peer, exec'd child and forked child "
               "(DIR/NAME.smaps, .threads).\n");
}

static unsigned
parse_phases(const char *list)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"rtt", PH_RTT},     {"rtt2", PH_RTT2}, {"pipe", PH_PIPE},
                 {"spawn", PH_SPAWN}, {"svc", PH_SVC},   {"big", PH_BIG}};
    unsigned bits = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strcmp(t, names[i].name))
                bit = names[i].bit;
        if (!bit)
            return 0;
        bits |= bit;
    }
    return bits;
}

static int
parse_args(int argc, char **argv, config *cfg)
{
    *cfg = (config){.zmq = true,
                    .phases = PH_ALL,
                    .samples = 20000,
                    .rounds = 20,
                    .warmup = 2000,
                    .pipelined = 100000,
                    .window = 256,
                    .spawns = 20,
                    .fanout = 100,
                    .joins = 15,
                    .big_rounds = 7};
    int samples = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            cfg->json = true;
        } else if (!strcmp(argv[i], "--quick")) {
            cfg->quick = true;
        } else if (!strcmp(argv[i], "--no-zmq")) {
            cfg->zmq = false;
        } else if (!strcmp(argv[i], "--samples") && i + 1 < argc) {
            if ((samples = atoi(argv[++i])) < 1)
                return -1;
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            if ((cfg->rounds = atoi(argv[++i])) < 1)
                return -1;
        } else if (!strcmp(argv[i], "--kind") && i + 1 < argc) {
            i++;
            if (!strcmp(argv[i], "direct"))
                cfg->kind = 1;
            else if (!strcmp(argv[i], "svc"))
                cfg->kind = 2;
            else
                return -1;
        } else if (!strcmp(argv[i], "--smaps") && i + 1 < argc) {
            cfg->smaps_dir = argv[++i];
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            if (!(cfg->phases = parse_phases(argv[++i])))
                return -1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else {
            return -1;
        }
    }
    if (cfg->quick) {
        cfg->samples = 1000;
        cfg->warmup = 200;
        cfg->pipelined = 10000;
        cfg->spawns = 3;
        cfg->joins = 3;
        cfg->big_rounds = 3;
    }
    if (samples)
        cfg->samples = samples;
    ssize_t len = readlink("/proc/self/exe", cfg->self, sizeof cfg->self - 1);
    if (len < 0)
        return -1;
    cfg->self[len] = 0;
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--zmq-peer"))
        return zmq_peer(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--zmq-relay"))
        return zmq_relay(argv[2]);
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "--zmq-handoff-peer"))
        return zfloor_handoff_peer_main(argv[2], atoi(argv[3]),
                                        argc == 5 ? atoi(argv[4]) : 1);
    if (argc == 3 && !strcmp(argv[1], "--zmq-zygote"))
        return zfloor_zygote_main(argv[2]);

    /* Every context serves these. A kin child never returns from kin_init,
     * so g lives as long as the process does. */
    grandchild g = {.mu = PTHREAD_MUTEX_INITIALIZER};
    kin_export("bench.echo", echo, NULL, KIN_POLICY_PARENT);
    kin_export_inline("bench.echo_inline", echo, NULL, KIN_POLICY_PARENT);
    kin_export("bench.spawn_grandchild", spawn_grandchild, &g,
               KIN_POLICY_PARENT);
    kin_export("bench.stop_grandchild", stop_grandchild, &g, KIN_POLICY_PARENT);
    kin_export("bench.offer", offer_bench, NULL, KIN_POLICY_PARENT);
    kin_export("bench.offer_at", offer_at, NULL, KIN_POLICY_PARENT);
    kin_export("join.who", who, NULL, KIN_POLICY_PARENT);
    if (kin_started_as_child()) {
        kin_node *n;
        return kin_init(&n, NULL) ? 1 : 0;
    }

    config cfg;
    if (parse_args(argc, argv, &cfg)) {
        usage(stderr);
        return 2;
    }
    results res;
    for (size_t i = 0; i < N_FIGURES; i++)
        *figure(&res, i) = NAN;
    int rc = run(&cfg, &res);
    if (cfg.json)
        print_json(&cfg, &res);
    else
        print_table(&cfg, &res);
    return rc;
}
