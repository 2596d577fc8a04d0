/* kin_init: the same executable serves as master and as child. Started by a
 * kin parent (KIN_CHILD_* in the environment) it becomes a serving child
 * that exits when told to stop, when its parent link is lost, or after an
 * emergency stop (with KIN_EXIT_EMERGENCY, so the parent trips too). */
#include <kin/process.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "context/context.h"
#include "context/tool.h"
#include "core/log_internal.h"
#include "core/sync.h"
#include "logs/logs.h"
#include "process/exec_channel.h"
#include "process/procs.h"
#include "process/stdio_relay.h"
#include "process/zygote.h"
#include "router/router.h"
#include "router/zctx.h"

/* The longest a stopping child that logged waits for libzmq to write its
 * last records: well under a quarter of the default stop timeout (2 s),
 * when the parent sends SIGTERM, so that a socket the application left
 * open (which keeps the ZMQ context from ending) delays the exit, not
 * fails it. The writing itself took under 50 ms in the suite under load. */
#define END_WAIT_MS 250

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
enum { SERVING, STOP_ASKED, PARENT_LOST, EMERGENCY };
static int stop_reason = SERVING;

static void
request_stop(int reason)
{
    pthread_mutex_lock(&mu);
    /* An emergency wins over a plain stop: the parent must hear of it. */
    if (stop_reason == SERVING || reason == EMERGENCY)
        stop_reason = reason;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

/* Broker thread: only the parent may ask (policy PARENT on the handle). */
static void
on_shutdown(kin_node *n, kin_msg *m, void *arg)
{
    kin_msg_destroy(&m);
    request_stop(STOP_ASKED);
}

static void
on_parent_lost(kin_node *n, void *arg)
{
    request_stop(PARENT_LOST);
}

static bool linked; /* under mu: kin__context_new has returned */

/* A relay thread: the exec channel ended. Before the link is up nothing
 * would notice (the parent is gone, or the channel carried something
 * else): the child gives up, unless the link attempt ends first. */
static void
on_channel_lost(void)
{
    /* A parent that refuses this child (another protocol version) closes
     * the link's stream right after its answer: kin__context_new gets up
     * to 2 s to read that answer and say why, instead of racing it to the
     * exit with the words below. */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    pthread_mutex_lock(&mu);
    while (!linked)
        if (pthread_cond_timedwait(&cond, &mu, &dl) == ETIMEDOUT)
            break;
    bool up = linked;
    pthread_mutex_unlock(&mu);
    if (!up) {
        fprintf(stderr, "kin child: its exec channel ended before it "
                        "linked to its parent\n");
        _exit(1);
    }
    request_stop(PARENT_LOST);
}

/* A child started over ssh: its stdin is the ssh channel, which its parent
 * holds open while it wants the child. When it ends (ssh stopped, killed,
 * or gone with its host), so does the child, even if its link to the
 * parent does not run through ssh (a direct tcp link). */
static void *
watch_channel(void *unused)
{
    kin__thread_name("kin-channel");
    char buf[256];
    for (;;) {
        ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
    }
    request_stop(PARENT_LOST);
    return NULL;
}

/* Broker thread, from a trip: the children are already being stopped. */
static void
on_emergency(void)
{
    request_stop(EMERGENCY);
}

bool
kin_started_as_child(void)
{
    /* A zygote becomes children: it must reach kin_init as they would. */
    return getenv(KIN__ENV_ENDPOINT) != NULL || getenv(KIN__ENV_ZYGOTE) != NULL;
}

static uint32_t
env_u32(const char *name)
{
    const char *v = getenv(name);
    return v ? (uint32_t)strtoul(v, NULL, 10) : 0;
}

/* The tree's key travels in the environment (never argv); once copied, the
 * original is wiped so /proc/PID/environ no longer shows it. */
static const char *
take_curve_key(char *copy, size_t size)
{
    char *v = getenv(KIN__ENV_CURVE);
    if (!v)
        return NULL;
    snprintf(copy, size, "%s", v);
    memset(v, 0, strlen(v));
    return copy;
}

kin_err
kin_init(kin_node **out, const kin_node_opts *opts)
{
    /* A zygote forks here, before this process has a thread, and each
     * child it forks goes on as a child started by its parent. */
    kin__zygote_serve();
    if (!kin_started_as_child())
        return kin_node_new(out, opts);

    kin_node_opts o = opts ? *opts : (kin_node_opts){0};
    o.parent_endpoint = getenv(KIN__ENV_ENDPOINT);
    o.parent_id = env_u32(KIN__ENV_PARENT_ID);
    o.id = env_u32(KIN__ENV_ID);
    o.name = getenv(KIN__ENV_NAME);
    o.max_msg_size = env_u32(KIN__ENV_MAX_MSG);
    o.workers = (int)env_u32(KIN__ENV_WORKERS);
    o.log_endpoint = getenv(KIN__ENV_LOG_ENDPOINT);
    o.bind = NULL;
    char key[128];
    o.curve_key = take_curve_key(key, sizeof key);
    const char *hb = getenv(KIN__ENV_HEARTBEAT);
    if (hb &&
        sscanf(hb, "%d,%d", &o.heartbeat_ms, &o.heartbeat_timeout_ms) != 2)
        o.heartbeat_ms = o.heartbeat_timeout_ms = 0;
    kin_node *n;
    kin__context_hooks hooks = {.on_shutdown = on_shutdown,
                                .on_parent_lost = on_parent_lost,
                                .curve_up = getenv(KIN__ENV_CURVE_UP) != NULL,
                                .log_curve = getenv(KIN__ENV_LOG_CURVE) != NULL,
                                .remote = getenv(KIN__ENV_REMOTE) != NULL,
                                .other_user =
                                    getenv(KIN__ENV_OTHER_USER) != NULL};
    /* Exec'd through /proc/self/exe, the process would be called "exe" in
     * ps and top: give it the context's name. */
    if (o.name)
        prctl(PR_SET_NAME, o.name, 0, 0, 0);
    /* Started through an exec channel: the links go to the relay's
     * sockets, which carry them over the channel (fds 3 and 4). */
    char up[300], logs[300];
    bool stdio = getenv(KIN__ENV_STDIO) != NULL;
    const char *dir = getenv(KIN__ENV_STDIO_DIR);
    if (stdio) {
        /* Where this context's socket will be, noted for the bootstrap
         * before it exists: whichever way this process ends (killed, or
         * giving up before it linked), the bootstrap removes it. */
        char rt[160], sock[256] = "ipc://";
        if (dir && kin__tool_runtime_dir(rt, sizeof rt) == KIN_OK &&
            kin__tool_sock_path(sock + 6, sizeof sock - 6, rt, (int)getpid(),
                                o.id) < (int)sizeof sock - 6)
            kin__exec_child_note_socket(dir, sock);
        kin_err e = dir ? kin__exec_child_start(dir, o.log_endpoint != NULL, up,
                                                sizeof up, logs, sizeof logs,
                                                on_channel_lost)
                        : -EINVAL;
        if (e) {
            fprintf(stderr, "kin child %u: cannot relay its exec channel: %s\n",
                    o.id, kin_strerror(e));
            exit(1);
        }
        o.parent_endpoint = up;
        if (o.log_endpoint)
            o.log_endpoint = logs;
    }
    char why[512] = "";
    if (!o.errbuf || !o.errbuf_size) {
        o.errbuf = why;
        o.errbuf_size = sizeof why;
    }
    kin_err e = kin__context_new(&n, &o, &hooks);
    memset(key, 0, sizeof key);
    pthread_mutex_lock(&mu);
    linked = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
    if (e) {
        fprintf(stderr, "kin child %u: cannot reach parent at %s: %s%s%s\n",
                o.id, o.parent_endpoint, kin_strerror(e), *o.errbuf ? ": " : "",
                o.errbuf);
        exit(1);
    }
    kin__procs_on_trip_exit(n, on_emergency);
    pthread_t watcher;
    if (hooks.remote && !stdio &&
        !pthread_create(&watcher, NULL, watch_channel, NULL))
        pthread_detach(watcher);

    /* Messages sent on this context's links from now on. */
    kin_node_stats st;
    kin_node_stats_get(n, &st);
    uint64_t routed = st.routed;

    pthread_mutex_lock(&mu);
    while (stop_reason == SERVING)
        pthread_cond_wait(&cond, &mu);
    pthread_mutex_unlock(&mu);
    kin_node_stats_get(n, &st);
    bool sent = st.routed != routed;
    /* Stops this context's children (and supervisors) before it goes. */
    kin_node_destroy(&n);
    /* Its sockets are closed, but libzmq's I/O thread may not have written
     * what they took last: a log record, or on the link a reply or a
     * refused call that its caller then never sees (a provider that
     * refused a call just before its stop request, as a drained one does,
     * failed that call with KIN_EPEERGONE). Once a record or a message
     * after the link's start went out, exit only when they are written
     * (the context ends when its lingering sockets are done), or
     * END_WAIT_MS from now. A child that did neither does not wait. */
    if (sent || kin__logs_published())
        kin__zctx_end(END_WAIT_MS);
    pthread_mutex_lock(&mu);
    int reason = stop_reason; /* an emergency may have come meanwhile */
    pthread_mutex_unlock(&mu);
    exit(reason == STOP_ASKED  ? 0
         : reason == EMERGENCY ? KIN_EXIT_EMERGENCY
                               : 3);
}
