/* The log forwarder: an XSUB (publishers connect) / XPUB (subscribers
 * connect) device on its own thread, embedded in the master or run by
 * `kin log-forwarder`. Its own loop rather than zmq_proxy: it subscribes
 * for itself (a sync topic every publisher waits for, and the levels of an
 * in-process file sink, fed through an inproc capture socket that is
 * connected before any record can flow), counts what it forwards, and
 * stops cleanly on a control message. */
#include "logs/logs_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "broker/broker.h"
#include "core/log_internal.h"
#include "core/task.h"
#include "router/zctx.h"

#define BURST 1000 /* messages per direction per poll */

/* An ipc socket file the forwarder bound: removed when it stops (libzmq
 * leaves it), unless another process has bound that path since. */
typedef struct bound_file {
    char path[256];
    dev_t dev;
    ino_t ino;
    bool set;
} bound_file;

struct kin__logfwd {
    pthread_t thread;
    bool running;
    char backend[256], frontend[256];
    char ctl_ep[64], cap_ep[64];
    kin__logfwd_opts o;
    kin__curve_key curve; /* o.curve points here */
    kin_logsink *sink;
    bound_file files[2]; /* backend, frontend; forwarder thread */

    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool bound, go, abort;
    kin_err err;

    atomic_uint_fast64_t records, subscriptions, last_ns;

    /* Lossless: a record the frontend had no room for yet. */
    zmq_msg_t held;
    int held_flags;
    bool holding;
};

/* Remembers the socket file ep made, if it made one of its own (not an
 * abstract name; not a wildcard, whose file libzmq removes itself). */
static void
note_file(bound_file *b, const char *ep)
{
    struct stat st;
    if (strncmp(ep, "ipc://", 6) || ep[6] == '@' || strchr(ep, '*') ||
        strlen(ep + 6) >= sizeof b->path || stat(ep + 6, &st))
        return;
    snprintf(b->path, sizeof b->path, "%s", ep + 6);
    b->dev = st.st_dev;
    b->ino = st.st_ino;
    b->set = true;
}

static void
remove_file(bound_file *b)
{
    struct stat st;
    if (b->set && !stat(b->path, &st) && st.st_dev == b->dev &&
        st.st_ino == b->ino)
        unlink(b->path);
    b->set = false;
}

static kin_err
bind_at(void *s, const char *ep, char *resolved, size_t size,
        const kin__curve_key *curve, bound_file *file)
{
    if (kin__endpoint_is_tcp(ep)) {
        if (!curve || !curve->pub[0]) {
            KIN_ERROR("log forwarder: %s is tcp, which needs the tree's "
                      "CURVE key",
                      ep);
            return -EINVAL;
        }
        kin_err e = kin__curve_server(s, curve);
        if (e)
            return e;
    }
    if (zmq_bind(s, ep))
        return -errno;
    if (file)
        note_file(file, ep);
    if (resolved) {
        size_t len = size;
        if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, resolved, &len))
            snprintf(resolved, size, "%s", ep);
    }
    return KIN_OK;
}

/* Sends m on; false when a lossless frontend has no room (m is kept). */
static bool
send_on(kin__logfwd *f, zmq_msg_t *m, void *to, int flags)
{
    if (zmq_msg_send(m, to, flags | ZMQ_DONTWAIT) >= 0)
        return true;
    if (errno == EAGAIN && f->o.lossless) {
        zmq_msg_init(&f->held);
        zmq_msg_move(&f->held, m);
        zmq_msg_close(m);
        f->held_flags = flags;
        f->holding = true;
        return false;
    }
    zmq_msg_close(m);
    return true;
}

/* Moves up to BURST messages from one side to the other; records going
 * out also go to the capture socket when they are at the sink's level.
 * Stops early when a lossless frontend is full. */
static void
forward(kin__logfwd *f, void *from, void *to, void *cap, int cap_bucket,
        atomic_uint_fast64_t *count)
{
    if (f->holding) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_move(&m, &f->held);
        zmq_msg_close(&f->held);
        f->holding = false;
        if (!send_on(f, &m, to, f->held_flags))
            return;
    }
    bool first = true; /* the next frame starts a message */
    for (int i = 0; i < BURST; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, from, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        int more = zmq_msg_more(&m);
        if (cap && first && !more && zmq_msg_size(&m) > 0) {
            int b = kin__log_letter_bucket(*(unsigned char *)zmq_msg_data(&m));
            if (b >= cap_bucket) {
                zmq_msg_t c;
                zmq_msg_init(&c);
                zmq_msg_copy(&c, &m);
                if (zmq_msg_send(&c, cap, ZMQ_DONTWAIT) < 0)
                    zmq_msg_close(&c);
            }
        }
        if (!more)
            atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
        if (!send_on(f, &m, to, more ? ZMQ_SNDMORE : 0))
            break;
        first = !more;
        if (i == BURST - 1 && more)
            i--; /* finish the message */
    }
    atomic_store_explicit(&f->last_ns, kin__now_ns(), memory_order_relaxed);
}

static void
signal_bound(kin__logfwd *f, kin_err e)
{
    pthread_mutex_lock(&f->mu);
    f->err = e;
    f->bound = true;
    pthread_cond_broadcast(&f->cond);
    while (!e && !f->go && !f->abort)
        pthread_cond_wait(&f->cond, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void *
fwd_main(void *arg)
{
    kin__logfwd *f = arg;
    void *ctx = kin__zctx();
    void *xsub = zmq_socket(ctx, ZMQ_XSUB);
    void *xpub = zmq_socket(ctx, ZMQ_XPUB);
    void *ctl = zmq_socket(ctx, ZMQ_PULL);
    void *cap = f->o.sink_fd >= 0 ? zmq_socket(ctx, ZMQ_PUB) : NULL;
    kin_err e = KIN_OK;
    if (!xsub || !xpub || !ctl || (f->o.sink_fd >= 0 && !cap))
        e = errno ? -errno : -ENOMEM;
    void *socks[] = {xsub, xpub, ctl, cap};
    for (size_t i = 0; i < 4; i++)
        if (socks[i])
            kin__zmq_set_int(socks[i], ZMQ_LINGER, 0);
    if (!e) {
        kin__zmq_set_int(xsub, ZMQ_RCVHWM, f->o.hwm);
        kin__zmq_set_int(xpub, ZMQ_SNDHWM, f->o.hwm);
        if (cap)
            kin__zmq_set_int(cap, ZMQ_SNDHWM, 100000);
        if (f->o.lossless)
            kin__zmq_set_int(xpub, ZMQ_XPUB_NODROP, 1);
        e = bind_at(xsub, f->o.backend, f->backend, sizeof f->backend,
                    f->o.curve, &f->files[0]);
    }
    if (!e)
        e = bind_at(xpub, f->o.frontend, f->frontend, sizeof f->frontend,
                    f->o.curve, &f->files[1]);
    if (!e)
        e = bind_at(ctl, f->ctl_ep, NULL, 0, NULL, NULL);
    if (!e && cap)
        e = bind_at(cap, f->cap_ep, NULL, 0, NULL, NULL);
    /* Waits for the sink to connect to the capture socket. */
    signal_bound(f, e);
    pthread_mutex_lock(&f->mu);
    bool abort = f->abort;
    pthread_mutex_unlock(&f->mu);
    if (!e && !abort) {
        /* Our own subscriptions, the sync topic last: a publisher that
         * sees it has seen every subscription made before it attached. */
        unsigned char s[2] = {1, 0};
        if (cap) {
            for (int b = kin__log_bucket(f->o.sink_level); b < KIN__LOG_BUCKETS;
                 b++) {
                s[1] = (unsigned char)kin__log_letter(b);
                zmq_send(xsub, s, 2, 0);
            }
        }
        s[1] = KIN__LOG_SYNC_TOPIC;
        zmq_send(xsub, s, 2, 0);
        int cap_bucket = kin__log_bucket(f->o.sink_level);
        zmq_pollitem_t items[3] = {{xsub, 0, ZMQ_POLLIN, 0},
                                   {xpub, 0, ZMQ_POLLIN, 0},
                                   {ctl, 0, ZMQ_POLLIN, 0}};
        for (;;) {
            /* While a record waits for room, leave the publishers' side
             * alone (they back up) and look again shortly: an XPUB always
             * polls writable. */
            items[0].events = f->holding ? 0 : ZMQ_POLLIN;
            int rc = zmq_poll(items, 3, f->holding ? 1 : -1);
            if (rc < 0) {
                if (errno == EINTR)
                    continue;
                KIN_ERROR("log forwarder: poll: %s", zmq_strerror(errno));
                break;
            }
            if (items[2].revents & ZMQ_POLLIN)
                break;
            if (f->holding || (items[0].revents & ZMQ_POLLIN))
                forward(f, xsub, xpub, cap, cap_bucket, &f->records);
            if (items[1].revents & ZMQ_POLLIN)
                forward(f, xpub, xsub, NULL, 0, &f->subscriptions);
        }
    }
    if (f->holding)
        zmq_msg_close(&f->held);
    for (size_t i = 0; i < 4; i++)
        if (socks[i])
            zmq_close(socks[i]);
    /* Nothing of a cleanly stopped forwarder stays behind. */
    remove_file(&f->files[0]);
    remove_file(&f->files[1]);
    return NULL;
}

kin_err
kin__logfwd_start(kin__logfwd **out, const kin__logfwd_opts *opts)
{
    if (!opts || !opts->backend || !opts->frontend)
        return -EINVAL;
    kin__logfwd *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->o = *opts;
    f->o.backend = NULL; /* the caller's strings: copied below */
    f->o.frontend = NULL;
    if (opts->curve) {
        f->curve = *opts->curve;
        f->o.curve = &f->curve;
    }
    if (f->o.hwm <= 0)
        f->o.hwm = 10000;
    if (strlen(opts->backend) >= sizeof f->backend ||
        strlen(opts->frontend) >= sizeof f->frontend) {
        free(f);
        return -EINVAL;
    }
    /* Until bound, backend/frontend hold what to bind. */
    char back[256], front[256];
    snprintf(back, sizeof back, "%s", opts->backend);
    snprintf(front, sizeof front, "%s", opts->frontend);
    f->o.backend = back;
    f->o.frontend = front;
    /* Named by a counter, never by f's address: a forwarder allocated
     * where a stopped one lived would find that one's names still bound
     * (ZMQ's reaper thread releases a closed socket's inproc endpoints
     * later) and fail with EADDRINUSE. */
    static atomic_uint seq;
    unsigned id = atomic_fetch_add(&seq, 1);
    snprintf(f->ctl_ep, sizeof f->ctl_ep, "inproc://kin-logfwd-ctl-%u", id);
    snprintf(f->cap_ep, sizeof f->cap_ep, "inproc://kin-logfwd-cap-%u", id);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cond, NULL);
    atomic_store(&f->last_ns, kin__now_ns());
    int rc = pthread_create(&f->thread, NULL, fwd_main, f);
    if (!rc)
        pthread_setname_np(f->thread, "kin-logfwd");
    if (rc) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cond);
        free(f);
        return -rc;
    }
    f->running = true;
    pthread_mutex_lock(&f->mu);
    while (!f->bound)
        pthread_cond_wait(&f->cond, &f->mu);
    kin_err e = f->err;
    pthread_mutex_unlock(&f->mu);
    if (!e && f->o.sink_fd >= 0) {
        kin_logsink_opts so = {.endpoint = f->cap_ep,
                               .fd = f->o.sink_fd,
                               .format = f->o.sink_format,
                               .min_level = f->o.sink_level};
        e = kin__logsink_new_all(&f->sink, &so);
    }
    pthread_mutex_lock(&f->mu);
    f->go = !e;
    f->abort = e != KIN_OK;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->mu);
    f->o.backend = f->backend;
    f->o.frontend = f->frontend;
    if (e) {
        pthread_join(f->thread, NULL);
        f->running = false;
        kin__logfwd_stop(&f);
        return e;
    }
    *out = f;
    return KIN_OK;
}

const char *
kin__logfwd_backend(const kin__logfwd *f)
{
    return f->backend;
}

const char *
kin__logfwd_frontend(const kin__logfwd *f)
{
    return f->frontend;
}

void
kin__logfwd_stats_get(const kin__logfwd *f, kin__logfwd_stats *out)
{
    out->records = atomic_load(&f->records);
    out->subscriptions = atomic_load(&f->subscriptions);
}

void
kin__logfwd_stop(kin__logfwd **fp)
{
    if (!fp || !*fp)
        return;
    kin__logfwd *f = *fp;
    if (f->running) {
        if (f->sink) {
            /* Records of contexts that just stopped may still be on their
             * way; the sink should have them. */
            uint64_t start = kin__now_ns();
            while (kin__now_ns() - atomic_load(&f->last_ns) < 20000000u &&
                   kin__now_ns() - start < 300000000u)
                nanosleep(&(struct timespec){0, 2000000}, NULL);
        }
        void *push = zmq_socket(kin__zctx(), ZMQ_PUSH);
        if (push) {
            kin__zmq_set_int(push, ZMQ_LINGER, 1000);
            zmq_connect(push, f->ctl_ep);
            zmq_send(push, "", 0, 0);
            zmq_close(push);
        }
        pthread_join(f->thread, NULL);
    }
    kin_logsink_destroy(&f->sink);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cond);
    free(f);
    *fp = NULL;
}
