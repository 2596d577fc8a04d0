/* kin-remote-bench: kin across hosts, next to raw libzmq over the same link.
 * Run by tests/remote/with_hosts.sh as the master inside namespace A of
 * tests/remote/hosts.sh (A <-> B over a veth pair, a real sshd in B), it
 * measures:
 *
 *   - spawn-to-first-call of a context on B over ssh (kin_spawn with
 *     .host, then one call), with a bare `ssh B true` as the baseline;
 *   - call round trips A -> B over the ssh-forwarded link (the default for
 *     remote children), worker pool and kin_export_inline;
 *   - call round trips A -> B over tcp+CURVE across the veth: a second
 *     master bound on tcp://IP_AB_A and a kin_node_new child in B;
 *   - raw zmq round trips A -> B, DEALER here to a ROUTER echo in B, over
 *     plain tcp (the baseline every ratio is taken against) and over
 *     tcp+CURVE with the same keys (so the cost of CURVE itself shows).
 *
 * The round trips are taken in interleaved rounds (each round starts with
 * a different method), so load from elsewhere hits every method alike.
 *
 * The executable plays every role: the master (default), the raw echo
 * peer (--raw-peer IP, inside B), the tcp kin child (--kin-peer, inside B)
 * and the ssh-spawned child (kin_init serves when the environment says
 * so). The peers in B are started with `ip netns exec NS_B SELF ...`; the
 * tree key reaches them in the environment, never in argv.
 *
 *   kin-remote-bench --env DIR/env [--quick] [--json] [--samples N]
 *                    [--rounds N] [--spawns N] */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
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

#define PAYLOAD 16      /* bytes per message / call argument */
#define IO_TIMEOUT 5000 /* ms: any single wait longer than this is a fault */
#define PEER_START_MS 15000 /* ms for a peer in B to come up */
#define PEER_STOP_MS 5000   /* ms for a peer to exit when asked, then SIGKILL */
#define PEER_IDLE_MS 120000 /* ms: a raw peer nobody talks to gives up */
#define KEY_LEN 81          /* chars of "PUBLIC:SECRET" in Z85 (40 + 1 + 40) */

/* Environment variables carrying the peers' settings. */
#define ENV_KEY "KIN_RBENCH_KEY" /* the tree's "PUBLIC:SECRET" */
#define ENV_PARENT "KIN_RBENCH_PARENT"
#define ENV_ID "KIN_RBENCH_ID"

typedef struct config {
    bool json;
    bool quick;
    int samples; /* round trips per method */
    int rounds;  /* the methods take turns this many times */
    int warmup;  /* round trips per method before any is timed */
    int spawns;  /* spawn-to-first-call repetitions */
    char self[PATH_MAX];
    char ip_tool[PATH_MAX];  /* ip(8), for `ip netns exec` */
    char ssh_tool[PATH_MAX]; /* ssh(1), for the login baseline */
    /* From the hosts' env file (hosts.sh up DIR writes DIR/env). */
    char ns_b[64], ip_a[64], ip_b[64], ssh_config[PATH_MAX];
} config;

/* The kinds of round trip, measured alternately. */
enum {
    M_RAW,   /* raw zmq over plain tcp: the baseline */
    M_RAWC,  /* raw zmq over tcp+CURVE */
    M_SSH,   /* kin call over the ssh-forwarded link, worker pool */
    M_SSHI,  /* the same, kin_export_inline */
    M_TCP,   /* kin call over tcp+CURVE, worker pool */
    M_TCPI,  /* the same, kin_export_inline */
    M_COUNT, /* */
};

static const struct method {
    const char *key;  /* JSON: KEY_rtt_us, KEY_rtt_p99_us, KEY_ratio */
    const char *name; /* table */
} methods[M_COUNT] = {
    {"raw", "raw zmq, tcp"},
    {"raw_curve", "raw zmq, tcp+CURVE"},
    {"ssh_call", "kin call, ssh link"},
    {"ssh_icall", "kin inline call, ssh link"},
    {"tcp_call", "kin call, tcp+CURVE"},
    {"tcp_icall", "kin inline call, tcp+CURVE"},
};

/* Every figure; NAN when not measured or its measurement failed. */
typedef struct results {
    double rtt_us[M_COUNT], rtt_p99_us[M_COUNT];
    double spawn_first_ms, spawn_first_min_ms; /* kin_spawn + first call */
    double spawn_ms;                           /* kin_spawn alone */
    double stop_ms;                            /* kin_child_destroy */
    double login_ms, login_min_ms;             /* ssh -F CFG B true */
} results;

/* --- processes ------------------------------------------------------------ */

/* Finds an executable by name in PATH, then the sbin directories (ip lives
 * in /usr/sbin, not always in a test runner's PATH). */
static int
find_tool(const char *name, char *out, size_t size)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin",
             path ? path : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(out, size, "%s/%s", d, name);
        if (*d && access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

/* Starts argv[0] (a full path) with envp; its stdout goes to out_fd when
 * that is >= 0, to /dev/null when quiet. The child dies with pdeath_sig if
 * this thread does, so no peer outlives a crashed bench. */
static pid_t
start(char *const argv[], char *const envp[], int out_fd, bool quiet,
      int pdeath_sig)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid; /* -1 on error */
    /* Only async-signal-safe calls between fork and exec. */
    prctl(PR_SET_PDEATHSIG, pdeath_sig);
    if (getppid() != parent)
        _exit(127);
    if (out_fd >= 0) {
        dup2(out_fd, STDOUT_FILENO);
        close(out_fd);
    } else if (quiet) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
        }
    }
    execve(argv[0], argv, envp);
    _exit(127);
}

extern char **environ;

/* This process's environment plus one or more NAME=VALUE entries (a
 * NULL-terminated list), for a peer. Returns a calloc'd array whose strings
 * belong to the caller's arguments and environ. */
static char **
env_with(char *const extra[])
{
    size_t count = 0, more = 0;
    while (environ[count])
        count++;
    while (extra[more])
        more++;
    char **envp = calloc(count + more + 1, sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "KIN_RBENCH_", 11))
            envp[k++] = environ[i];
    for (size_t i = 0; i < more; i++)
        envp[k++] = extra[i];
    return envp;
}

/* Reads one line from fd into buf within timeout_ms. */
static int
read_line(int fd, char *buf, size_t size, int timeout_ms)
{
    size_t len = 0;
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (len + 1 < size) {
        uint64_t now = now_ns();
        if (now >= end)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)((end - now) / 1000000u) + 1);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        ssize_t got = read(fd, buf + len, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1; /* the peer exited before saying anything */
        if (buf[len] == '\n') {
            buf[len] = 0;
            return 0;
        }
        len++;
    }
    return -1;
}

/* Copies an environment variable and wipes the original, so that
 * /proc/PID/environ no longer shows the key. */
static bool
take_env(const char *name, char *out, size_t size)
{
    char *v = getenv(name);
    if (!v || strlen(v) >= size)
        return false;
    snprintf(out, size, "%s", v);
    memset(v, 0, strlen(v));
    return true;
}

/* The tree's key pair, split. */
static bool
split_key(const char *key, char *pub, char *sec)
{
    if (strlen(key) != KEY_LEN || key[40] != ':')
        return false;
    memcpy(pub, key, 40);
    pub[40] = 0;
    memcpy(sec, key + 41, 40);
    sec[40] = 0;
    return true;
}

/* --- the raw zmq peer (runs in B) ----------------------------------------- */

/* Echoes every message of one ready ROUTER; false at an empty message (the
 * stop request) or an error. */
static bool
echo_ready(void *s)
{
    for (;;) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&rid, s, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            zmq_msg_close(&body);
            return errno == EAGAIN || errno == EINTR;
        }
        bool ok = zmq_msg_more(&rid) && zmq_msg_recv(&body, s, 0) >= 0 &&
                  zmq_msg_size(&body) > 0 &&
                  zmq_msg_send(&rid, s, ZMQ_SNDMORE) >= 0 &&
                  zmq_msg_send(&body, s, 0) >= 0;
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
        if (!ok)
            return false;
    }
}

/* Two ROUTERs on ip, ports of the system's choosing: plain tcp and a CURVE
 * server holding the tree's secret. Prints "PLAIN_EP CURVE_EP" on stdout
 * once both are bound, echoes until an empty message, an error or
 * PEER_IDLE_MS of silence. No ZAP handler: libzmq then admits any client
 * that completes the CURVE handshake, which is what kin's handler does for
 * a client holding the tree key, minus the key lookup. */
static int
raw_peer(const char *ip)
{
    char key[KEY_LEN + 1], pub[41], sec[41];
    if (!take_env(ENV_KEY, key, sizeof key) || !split_key(key, pub, sec)) {
        fprintf(stderr, "raw peer: no key in %s\n", ENV_KEY);
        return 2;
    }
    void *ctx = zmq_ctx_new();
    void *plain = zmq_socket(ctx, ZMQ_ROUTER);
    void *curve = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, zero = 0, rc = 1;
    zmq_setsockopt(plain, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(curve, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(curve, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(curve, ZMQ_CURVE_SECRETKEY, sec, 40);
    char ep[128], ep_plain[128], ep_curve[128];
    size_t sz1 = sizeof ep_plain, sz2 = sizeof ep_curve;
    snprintf(ep, sizeof ep, "tcp://%s:*", ip);
    if (zmq_bind(plain, ep) || zmq_bind(curve, ep) ||
        zmq_getsockopt(plain, ZMQ_LAST_ENDPOINT, ep_plain, &sz1) ||
        zmq_getsockopt(curve, ZMQ_LAST_ENDPOINT, ep_curve, &sz2)) {
        fprintf(stderr, "raw peer: bind %s: %s\n", ep, zmq_strerror(errno));
        goto out;
    }
    printf("%s %s\n", ep_plain, ep_curve);
    fflush(stdout);
    zmq_pollitem_t items[2] = {{.socket = plain, .events = ZMQ_POLLIN},
                               {.socket = curve, .events = ZMQ_POLLIN}};
    for (;;) {
        int n = zmq_poll(items, 2, PEER_IDLE_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        bool more = true;
        for (int i = 0; i < 2 && more; i++)
            if (items[i].revents & ZMQ_POLLIN)
                more = echo_ready(items[i].socket);
        if (!more) {
            rc = 0; /* asked to stop (or the link broke: reaped anyway) */
            break;
        }
    }
out:
    zmq_close(plain);
    zmq_close(curve);
    zmq_ctx_term(ctx);
    return rc;
}

/* --- the tcp kin child (runs in B) ---------------------------------------- */

/* A context made with kin_node_new, child of the tcp master in A, serving
 * the exported functions until SIGTERM (the bench's stop request, or its
 * death through PR_SET_PDEATHSIG). */
static int
kin_peer(void)
{
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL); /* kin's threads inherit it */
    char key[KEY_LEN + 1];
    const char *parent = getenv(ENV_PARENT), *id = getenv(ENV_ID);
    if (!take_env(ENV_KEY, key, sizeof key) || !parent || !id) {
        fprintf(stderr, "kin peer: %s, %s and %s must be set\n", ENV_KEY,
                ENV_PARENT, ENV_ID);
        return 2;
    }
    kin_node_opts o = {.name = "b-tcp",
                       .parent_endpoint = parent,
                       .parent_id = KIN_MASTER_ID,
                       .id = (uint32_t)strtoul(id, NULL, 10),
                       .curve_key = key,
                       .connect_timeout_ms = PEER_START_MS};
    kin_node *n = NULL;
    kin_err e = kin_node_new(&n, &o);
    memset(key, 0, sizeof key);
    if (e) {
        fprintf(stderr, "kin peer: kin_node_new: %s\n", kin_strerror(e));
        return 1;
    }
    int sig;
    sigwait(&term, &sig);
    kin_node_destroy(&n);
    return 0;
}

/* --- served by every kin context ------------------------------------------ */

static kin_err
echo(kin_call *c, void *arg)
{
    const void *p;
    size_t len;
    kin_err e = kin_call_args(c, "B", &p, &len);
    return e ? e : kin_call_return(c, "B", p, len);
}

/* --- the master: what the round trips go through -------------------------- */

typedef struct bench {
    const config *cfg;
    results *res;
    char key[KEY_LEN + 1]; /* the tcp tree's "PUBLIC:SECRET" */
    kin_node *master;      /* kin_init's: ipc, the ssh children's parent */
    kin_node *tcp;         /* a second master bound on tcp://IP_AB_A:* */
    kin_child *ssh;        /* on B over ssh: serves the M_SSH* round trips */
    uint32_t tcp_id;       /* the kin peer's context id under tcp */
    pid_t kin_pid;         /* the kin peer ("ip netns exec" execs, same pid) */
    pid_t raw_pid;         /* the raw peer */
    void *zctx;            /* the raw DEALERs' own zmq context */
    void *dealer[2];       /* to the raw peer: plain, CURVE */
    uint8_t payload[PAYLOAD];
} bench;

/* zmq failures as kin_err (zmq sets errno); a receive timeout is EAGAIN. */
static kin_err
zerr(void)
{
    return errno == EAGAIN ? KIN_ETIMEOUT : errno ? -errno : -EIO;
}

static kin_err
raw_rtt(void *dealer, uint8_t *buf)
{
    if (zmq_send(dealer, buf, PAYLOAD, 0) != PAYLOAD ||
        zmq_recv(dealer, buf, PAYLOAD, 0) != PAYLOAD)
        return zerr();
    return KIN_OK;
}

static kin_err
call_echo(kin_node *n, uint32_t ctx, bool inline_fn, const uint8_t *payload,
          bool check)
{
    kin_msg *r = NULL;
    kin_err e =
        kin_call_sync(n, ctx, inline_fn ? "rbench.echo_inline" : "rbench.echo",
                      IO_TIMEOUT, &r, "B", payload, (size_t)PAYLOAD);
    const void *back = NULL;
    size_t len = 0;
    if (!e && check && !(e = kin_msg_unpack(r, "B", &back, &len)) &&
        (len != PAYLOAD || memcmp(back, payload, len)))
        e = KIN_EBADMSG;
    kin_msg_destroy(&r);
    return e;
}

static kin_err
round_trip(bench *b, int m, bool check)
{
    uint8_t buf[PAYLOAD];
    kin_err e;
    switch (m) {
    case M_RAW:
    case M_RAWC:
        memcpy(buf, b->payload, PAYLOAD);
        e = raw_rtt(b->dealer[m == M_RAWC], buf);
        if (!e && check && memcmp(buf, b->payload, PAYLOAD))
            e = KIN_EBADMSG;
        return e;
    case M_SSH:
    case M_SSHI:
        return call_echo(b->master, kin_child_id(b->ssh), m == M_SSHI,
                         b->payload, check);
    default:
        return call_echo(b->tcp, b->tcp_id, m == M_TCPI, b->payload, check);
    }
}

/* Starts the raw echo peer in B and connects a DEALER to each of its
 * ROUTERs. */
static kin_err
raw_start(bench *b)
{
    const config *cfg = b->cfg;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC))
        return -errno;
    char v_key[sizeof ENV_KEY + KEY_LEN + 1];
    snprintf(v_key, sizeof v_key, "%s=%s", ENV_KEY, b->key);
    char *extra[] = {v_key, NULL};
    char **envp = env_with(extra);
    char *argv[] = {(char *)cfg->ip_tool,
                    "netns",
                    "exec",
                    (char *)cfg->ns_b,
                    (char *)cfg->self,
                    "--raw-peer",
                    (char *)cfg->ip_b,
                    NULL};
    /* The write end is dup2'd onto the peer's stdout (dup2 clears
     * O_CLOEXEC on the copy). */
    b->raw_pid = envp ? start(argv, envp, fds[1], false, SIGKILL) : -1;
    kin_err e = b->raw_pid < 0 ? -ENOMEM : KIN_OK;
    free(envp);
    memset(v_key, 0, sizeof v_key);
    close(fds[1]);
    char line[300], ep_plain[140], ep_curve[140];
    if (!e && (read_line(fds[0], line, sizeof line, PEER_START_MS) ||
               sscanf(line, "%139s %139s", ep_plain, ep_curve) != 2)) {
        fprintf(stderr,
                "kin-remote-bench: the raw peer in %s did not "
                "report its endpoints\n",
                cfg->ns_b);
        e = KIN_ETIMEOUT;
    }
    close(fds[0]);
    if (e)
        return e;
    char pub[41], sec[41];
    split_key(b->key, pub, sec);
    b->zctx = zmq_ctx_new();
    for (int i = 0; i < 2 && !e; i++) {
        void *s = b->dealer[i] = zmq_socket(b->zctx, ZMQ_DEALER);
        int timeout = IO_TIMEOUT, linger = 0;
        if (!s || zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout) ||
            zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof timeout) ||
            zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger)) {
            e = zerr();
            break;
        }
        /* The client side of CURVE as kin sets it up: the tree's public
         * key is the server's, and the client presents the same pair. */
        if (i == 1 && (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, pub, 40) ||
                       zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40) ||
                       zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40)))
            e = zerr();
        else if (zmq_connect(s, i ? ep_curve : ep_plain))
            e = zerr();
    }
    memset(sec, 0, sizeof sec);
    if (e)
        fprintf(stderr, "kin-remote-bench: raw DEALER: %s\n", kin_strerror(e));
    return e;
}

/* Asks the raw peer to stop (an empty message), closes the DEALERs and
 * reaps the peer, killing it if it does not go. */
static void
raw_stop(bench *b)
{
    bool asked = b->dealer[0] && zmq_send(b->dealer[0], "", 0, 0) == 0;
    for (int i = 0; i < 2; i++)
        if (b->dealer[i])
            zmq_close(b->dealer[i]);
    if (b->zctx)
        zmq_ctx_term(b->zctx); /* LINGER 0: returns at once */
    b->dealer[0] = b->dealer[1] = b->zctx = NULL;
    if (b->raw_pid > 0)
        bench_reap(b->raw_pid, asked ? PEER_STOP_MS : 0);
    b->raw_pid = 0;
}

/* Starts the tcp master here and the kin peer in B as its child. */
static kin_err
tcp_start(bench *b)
{
    const config *cfg = b->cfg;
    char bind[128];
    snprintf(bind, sizeof bind, "tcp://%s:*", cfg->ip_a);
    /* Logs off: this figure is about calls, and the master made by
     * kin_init already runs a forwarder. */
    kin_node_opts o = {.name = "master-tcp",
                       .bind = bind,
                       .curve_key = b->key,
                       .log_endpoint = ""};
    kin_err e = kin_node_new(&b->tcp, &o);
    if (e) {
        fprintf(stderr, "kin-remote-bench: master on %s: %s\n", bind,
                kin_strerror(e));
        return e;
    }
    /* A context id unique in the tcp tree, as kin_spawn would pick. */
    if ((e = kin_node_alloc_id(b->tcp, &b->tcp_id)))
        return e;
    char v_key[sizeof ENV_KEY + KEY_LEN + 1], v_parent[200], v_id[64];
    snprintf(v_key, sizeof v_key, "%s=%s", ENV_KEY, b->key);
    snprintf(v_parent, sizeof v_parent, "%s=%s", ENV_PARENT,
             kin_node_endpoint(b->tcp));
    snprintf(v_id, sizeof v_id, "%s=%u", ENV_ID, b->tcp_id);
    char *extra[] = {v_key, v_parent, v_id, NULL};
    char **envp = env_with(extra);
    char *argv[] = {
        (char *)cfg->ip_tool, "netns",      "exec", (char *)cfg->ns_b,
        (char *)cfg->self,    "--kin-peer", NULL};
    /* SIGTERM, not SIGKILL, if we die: the peer then leaves cleanly. */
    b->kin_pid = envp ? start(argv, envp, -1, false, SIGTERM) : -1;
    free(envp);
    memset(v_key, 0, sizeof v_key);
    if (b->kin_pid < 0)
        return -ENOMEM;
    if ((e = kin_node_wait_child(b->tcp, b->tcp_id, PEER_START_MS)))
        fprintf(stderr,
                "kin-remote-bench: the kin peer in %s did not say "
                "hello on %s: %s\n",
                cfg->ns_b, kin_node_endpoint(b->tcp), kin_strerror(e));
    return e;
}

static void
tcp_stop(bench *b)
{
    if (b->kin_pid > 0) {
        kill(b->kin_pid, SIGTERM);
        int st = bench_reap(b->kin_pid, PEER_STOP_MS);
        if (!WIFEXITED(st) || WEXITSTATUS(st))
            fprintf(stderr,
                    "kin-remote-bench: the kin peer ended badly "
                    "(status 0x%x)\n",
                    st);
    }
    b->kin_pid = 0;
    kin_node_destroy(&b->tcp);
}

static kin_err
ssh_spawn(bench *b, kin_child **out)
{
    const config *cfg = b->cfg;
    char *ssh_args[] = {"-F", (char *)cfg->ssh_config, NULL};
    char err[1024] = "";
    kin_spawn_opts o = {.name = "b",
                        .host = cfg->ip_b,
                        .ssh_args = ssh_args,
                        .errbuf = err,
                        .errbuf_size = sizeof err};
    kin_err e = kin_spawn(b->master, &o, out);
    if (e)
        fprintf(stderr, "kin-remote-bench: spawn on %s over ssh: %s (%s)\n",
                cfg->ip_b, kin_strerror(e), err);
    return e;
}

/* --- the figures ---------------------------------------------------------- */

static kin_err
run_latency(bench *b)
{
    const config *cfg = b->cfg;
    size_t n = (size_t)cfg->samples;
    uint64_t *ns[M_COUNT] = {NULL};
    kin_err e = KIN_OK;
    int m, cur = 0; /* the method at work, for the error message */
    for (m = 0; m < M_COUNT && !e; m++)
        if (!(ns[m] = malloc(n * sizeof *ns[m])))
            e = -ENOMEM;
    /* Each target echoes intact once, then warms up. */
    for (m = 0; m < M_COUNT && !e; m++)
        e = round_trip(b, cur = m, true);
    for (m = 0; m < M_COUNT && !e; m++)
        for (int i = 0; i < cfg->warmup && !e; i++)
            e = round_trip(b, cur = m, false);
    /* Rounds, so that a burst of load hits every method; each round starts
     * with the next method, so none is always first after a switch. */
    int rounds = cfg->rounds;
    size_t per = n / (size_t)rounds;
    for (int r = 0; r < rounds && !e; r++) {
        size_t from = (size_t)r * per, to = r == rounds - 1 ? n : from + per;
        for (int k = 0; k < M_COUNT && !e; k++) {
            cur = (r + k) % M_COUNT;
            for (size_t i = from; i < to && !e; i++) {
                uint64_t t0 = now_ns();
                e = round_trip(b, cur, false);
                ns[cur][i] = now_ns() - t0;
            }
        }
    }
    if (e) {
        fprintf(stderr, "kin-remote-bench: %s: %s\n", methods[cur].name,
                kin_strerror(e));
    } else {
        for (m = 0; m < M_COUNT; m++) {
            b->res->rtt_us[m] = quantile(ns[m], n, 0.5) / 1e3;
            b->res->rtt_p99_us[m] = quantile(ns[m], n, 0.99) / 1e3;
        }
    }
    for (m = 0; m < M_COUNT; m++)
        free(ns[m]);
    return e;
}

/* The baseline of a remote spawn: `ssh -F CFG B true`, a login that runs
 * one command (kin's ssh factory adds its forwards, keepalives and the
 * streamed executable to this). */
static kin_err
ssh_login(bench *b, uint64_t *ns)
{
    const config *cfg = b->cfg;
    char *argv[] = {(char *)cfg->ssh_tool,
                    "-T",
                    "-x",
                    "-F",
                    (char *)cfg->ssh_config,
                    "-o",
                    "BatchMode=yes",
                    "--",
                    (char *)cfg->ip_b,
                    "true",
                    NULL};
    uint64_t t0 = now_ns();
    pid_t pid = start(argv, environ, -1, true, SIGKILL);
    if (pid < 0)
        return -errno;
    int st = bench_reap(pid, 30000);
    *ns = now_ns() - t0;
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "kin-remote-bench: ssh %s true: status 0x%x\n",
                cfg->ip_b, st);
        return KIN_ESPAWN;
    }
    return KIN_OK;
}

/* kin_spawn over ssh, the first call, then kin_child_destroy, timed. */
static kin_err
spawn_first(bench *b, uint64_t *spawn_ns, uint64_t *first_ns, uint64_t *stop_ns)
{
    kin_child *c = NULL;
    uint64_t t0 = now_ns();
    kin_err e = ssh_spawn(b, &c);
    uint64_t t1 = now_ns();
    if (!e &&
        (e = call_echo(b->master, kin_child_id(c), false, b->payload, true)))
        fprintf(stderr, "kin-remote-bench: first call over ssh: %s\n",
                kin_strerror(e));
    uint64_t t2 = now_ns();
    kin_child_destroy(&c);
    *spawn_ns = t1 - t0;
    *first_ns = t2 - t0;
    *stop_ns = now_ns() - t2;
    return e;
}

static kin_err
run_spawns(bench *b)
{
    size_t k = (size_t)b->cfg->spawns;
    uint64_t *v = calloc(4 * k, sizeof *v);
    if (!v)
        return -ENOMEM;
    uint64_t *spawn = v, *first = v + k, *stop = v + 2 * k, *login = v + 3 * k;
    kin_err e = KIN_OK;
    /* Alternate, and alternate which goes first. */
    for (size_t i = 0; i < k && !e; i++) {
        if (i % 2 == 0)
            e = ssh_login(b, &login[i]);
        if (!e)
            e = spawn_first(b, &spawn[i], &first[i], &stop[i]);
        if (!e && i % 2 == 1)
            e = ssh_login(b, &login[i]);
    }
    if (!e) {
        results *r = b->res;
        r->spawn_first_ms = median(first, k) / 1e6;
        r->spawn_first_min_ms = (double)first[0] / 1e6; /* sorted */
        r->spawn_ms = median(spawn, k) / 1e6;
        r->stop_ms = median(stop, k) / 1e6;
        r->login_ms = median(login, k) / 1e6;
        r->login_min_ms = (double)login[0] / 1e6;
    }
    free(v);
    return e;
}

/* Sets everything up, measures, tears everything down (every process
 * started here is reaped, on every path). */
static int
run(const config *cfg, results *res)
{
    bench b = {.cfg = cfg, .res = res};
    memset(b.payload, 'k', sizeof b.payload);
    int rc = 1;
    kin_err e = kin_init(&b.master, NULL);
    if (e) {
        fprintf(stderr, "kin-remote-bench: kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    /* One key pair for the tcp tree and the raw CURVE baseline. */
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec)) {
        fprintf(stderr, "kin-remote-bench: no CURVE in libzmq: %s\n",
                zmq_strerror(errno));
        goto out;
    }
    snprintf(b.key, sizeof b.key, "%s:%s", pub, sec);
    memset(sec, 0, sizeof sec);
    if (raw_start(&b) || tcp_start(&b) || ssh_spawn(&b, &b.ssh))
        goto out;
    if (run_latency(&b) || run_spawns(&b))
        goto out;
    rc = 0;
out:
    raw_stop(&b);
    tcp_stop(&b);
    kin_child_destroy(&b.ssh);
    kin_node_destroy(&b.master); /* reaps any child still running */
    memset(b.key, 0, sizeof b.key);
    return rc;
}

/* --- output --------------------------------------------------------------- */

static void
json_num(const char *key, double v)
{
    if (isnan(v))
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.3f", key, v);
}

static void
print_json(const config *cfg, const results *r, bool ok)
{
    printf("{\"quick\":%s,\"samples\":%d,\"rounds\":%d,\"spawns\":%d,"
           "\"payload\":%d",
           cfg->quick ? "true" : "false", cfg->samples, cfg->rounds,
           cfg->spawns, PAYLOAD);
    char key[64];
    for (int m = 0; m < M_COUNT; m++) {
        snprintf(key, sizeof key, "%s_rtt_us", methods[m].key);
        json_num(key, r->rtt_us[m]);
        snprintf(key, sizeof key, "%s_rtt_p99_us", methods[m].key);
        json_num(key, r->rtt_p99_us[m]);
        if (m != M_RAW) {
            snprintf(key, sizeof key, "%s_ratio", methods[m].key);
            json_num(key, r->rtt_us[m] / r->rtt_us[M_RAW]);
        }
    }
    /* kin over tcp+CURVE against raw zmq with the same CURVE: what kin
     * itself adds on that link. */
    json_num("tcp_call_curve_ratio", r->rtt_us[M_TCP] / r->rtt_us[M_RAWC]);
    json_num("tcp_icall_curve_ratio", r->rtt_us[M_TCPI] / r->rtt_us[M_RAWC]);
    json_num("ssh_spawn_first_call_ms", r->spawn_first_ms);
    json_num("ssh_spawn_first_call_min_ms", r->spawn_first_min_ms);
    json_num("ssh_spawn_ms", r->spawn_ms);
    json_num("ssh_stop_ms", r->stop_ms);
    json_num("ssh_login_ms", r->login_ms);
    json_num("ssh_login_min_ms", r->login_min_ms);
    json_num("ssh_spawn_first_call_login_ratio",
             r->spawn_first_ms / r->login_ms);
    printf(",\"ok\":%s}\n", ok ? "true" : "false");
}

static void
print_table(const config *cfg, const results *r)
{
    printf("kin-remote-bench%s: A (%s) -> B (%s) over veth, %d-byte "
           "payload, %d round trips per method in %d interleaved rounds, "
           "%d spawns\n\n",
           cfg->quick ? " --quick" : "", cfg->ip_a, cfg->ip_b, PAYLOAD,
           cfg->samples, cfg->rounds, cfg->spawns);
    printf("%-30s %10s %10s %11s %12s\n", "round trip A -> B", "median us",
           "p99 us", "vs raw tcp", "vs raw CURVE");
    for (int m = 0; m < M_COUNT; m++) {
        printf("%-30s %10.1f %10.1f %10.2fx", methods[m].name, r->rtt_us[m],
               r->rtt_p99_us[m], r->rtt_us[m] / r->rtt_us[M_RAW]);
        if (m == M_TCP || m == M_TCPI)
            printf(" %11.2fx", r->rtt_us[m] / r->rtt_us[M_RAWC]);
        printf("\n");
    }
    printf("\n%-30s %10s %10s %11s\n", "spawn over ssh, A -> B", "median ms",
           "min ms", "vs login");
    printf("%-30s %10.1f %10.1f %10.2fx\n", "kin_spawn + first call",
           r->spawn_first_ms, r->spawn_first_min_ms,
           r->spawn_first_ms / r->login_ms);
    printf("%-30s %10.1f\n", "kin_spawn alone", r->spawn_ms);
    printf("%-30s %10.1f\n", "kin_child_destroy", r->stop_ms);
    printf("%-30s %10.1f %10.1f\n", "ssh login (ssh B true)", r->login_ms,
           r->login_min_ms);
}

/* --- main ----------------------------------------------------------------- */

/* Reads NAME='VALUE' lines of the file hosts.sh up writes. */
static int
load_env(config *cfg, const char *path)
{
    static const struct {
        const char *name;
        size_t off, size;
    } want[] = {
        {"NS_B", offsetof(config, ns_b), sizeof((config *)0)->ns_b},
        {"IP_AB_A", offsetof(config, ip_a), sizeof((config *)0)->ip_a},
        {"IP_AB_B", offsetof(config, ip_b), sizeof((config *)0)->ip_b},
        {"SSH_CONFIG", offsetof(config, ssh_config),
         sizeof((config *)0)->ssh_config},
    };
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "kin-remote-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[PATH_MAX + 64];
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        char *v = eq + 1;
        v[strcspn(v, "\n")] = 0;
        if (*v == '\'' || *v == '"') {
            v++;
            v[strcspn(v, "'\"")] = 0;
        }
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
            if (!strcmp(line, want[i].name))
                snprintf((char *)cfg + want[i].off, want[i].size, "%s", v);
    }
    fclose(f);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!*((char *)cfg + want[i].off)) {
            fprintf(stderr, "kin-remote-bench: %s lacks %s\n", path,
                    want[i].name);
            return -1;
        }
    return 0;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: kin-remote-bench --env HOSTS_DIR/env [--quick] "
               "[--json] [--samples N] [--rounds N] [--spawns N]\n"
               "(run inside namespace A of tests/remote/hosts.sh:\n"
               "  tests/remote/with_hosts.sh sh -c "
               "'exec \"$0\" --env \"$HOSTS_DIR/env\" \"$@\"' "
               "kin-remote-bench [--json])\n");
}

static int
parse_args(int argc, char **argv, config *cfg)
{
    *cfg = (config){.samples = 5000, .rounds = 10, .warmup = 500, .spawns = 5};
    const char *env_file = NULL;
    int samples = 0, rounds = 0, spawns = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--json")) {
            cfg->json = true;
        } else if (!strcmp(a, "--quick")) {
            cfg->quick = true;
        } else if (!strcmp(a, "--env") && has) {
            env_file = argv[++i];
        } else if (!strcmp(a, "--samples") && has) {
            if ((samples = atoi(argv[++i])) < 1)
                return -1;
        } else if (!strcmp(a, "--rounds") && has) {
            if ((rounds = atoi(argv[++i])) < 1)
                return -1;
        } else if (!strcmp(a, "--spawns") && has) {
            if ((spawns = atoi(argv[++i])) < 1)
                return -1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else {
            return -1;
        }
    }
    if (cfg->quick) {
        cfg->samples = 200;
        cfg->rounds = 4;
        cfg->warmup = 50;
        cfg->spawns = 2;
    }
    if (samples)
        cfg->samples = samples;
    if (rounds)
        cfg->rounds = rounds;
    if (spawns)
        cfg->spawns = spawns;
    if (cfg->rounds > cfg->samples)
        cfg->rounds = cfg->samples;
    if (!env_file || load_env(cfg, env_file))
        return -1;
    if (find_tool("ip", cfg->ip_tool, sizeof cfg->ip_tool) ||
        find_tool("ssh", cfg->ssh_tool, sizeof cfg->ssh_tool)) {
        fprintf(stderr, "kin-remote-bench: ip or ssh not found\n");
        return -1;
    }
    ssize_t len = readlink("/proc/self/exe", cfg->self, sizeof cfg->self - 1);
    if (len < 0)
        return -1;
    cfg->self[len] = 0;
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--raw-peer"))
        return raw_peer(argv[2]);

    /* Every context serves these: the ssh child (this executable streamed
     * to B), the kin peer and both masters. */
    kin_export("rbench.echo", echo, NULL, KIN_POLICY_PARENT);
    kin_export_inline("rbench.echo_inline", echo, NULL, KIN_POLICY_PARENT);
    if (kin_started_as_child()) {
        kin_node *n;
        return kin_init(&n, NULL) ? 1 : 0; /* serves; never returns */
    }
    if (argc == 2 && !strcmp(argv[1], "--kin-peer"))
        return kin_peer();

    config cfg;
    if (parse_args(argc, argv, &cfg)) {
        usage(stderr);
        return 2;
    }
    results res;
    for (int m = 0; m < M_COUNT; m++)
        res.rtt_us[m] = res.rtt_p99_us[m] = NAN;
    res.spawn_first_ms = res.spawn_first_min_ms = res.spawn_ms = NAN;
    res.stop_ms = res.login_ms = res.login_min_ms = NAN;
    int rc = run(&cfg, &res);
    if (cfg.json)
        print_json(&cfg, &res, rc == 0);
    else
        print_table(&cfg, &res);
    return rc;
}
