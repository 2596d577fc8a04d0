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
#include "core/sync.h"
#include "core/task.h"
#include "router/zctx.h"

#define BURST 1000                /* messages per direction per poll */
#define HIST_BYTES_MAX (4u << 20) /* the history ring's bound in bytes */

/* The recent records (at hist_bucket and up), oldest first: what a late
 * subscriber asks for with a history request (a subscription to
 * "H<nonce><spec>", answered to that topic only). Forwarder thread. */
typedef struct hist_ring {
    zmq_msg_t *msgs;
    size_t cap, head, len, bytes;
    int bucket;
} hist_ring;

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

    hist_ring hist;

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

static void
hist_drop_oldest(hist_ring *h)
{
    zmq_msg_t *m = &h->msgs[h->head];
    h->bytes -= zmq_msg_size(m);
    zmq_msg_close(m);
    h->head = (h->head + 1) % h->cap;
    h->len--;
}

/* Keeps a copy of record m, dropping the oldest to stay in bounds. */
static void
hist_add(hist_ring *h, zmq_msg_t *m)
{
    size_t size = zmq_msg_size(m);
    if (!h->cap || size > HIST_BYTES_MAX)
        return;
    while (h->len && (h->len == h->cap || h->bytes + size > HIST_BYTES_MAX))
        hist_drop_oldest(h);
    /* A copy of the bytes, not a share: a shared message can pin the
     * whole receive batch it was decoded from, and the bound would lie. */
    zmq_msg_t *slot = &h->msgs[(h->head + h->len) % h->cap];
    if (zmq_msg_init_size(slot, size))
        return;
    memcpy(zmq_msg_data(slot), zmq_msg_data(m), size);
    h->len++;
    h->bytes += size;
}

static void
hist_free(hist_ring *h)
{
    while (h->len)
        hist_drop_oldest(h);
    free(h->msgs);
    h->msgs = NULL;
    h->cap = 0;
}

/* A history request's spec, after "H" and the 16-hex-digit nonce:
 * "n=N;s=SINCE_WALL_NS;b=MIN_BUCKET;c=CTX,CTX..." (every part optional;
 * n < 0 or absent: all kept). */
typedef struct hist_spec {
    long long n;
    uint64_t since;
    int bucket;
    uint32_t ctxs[64];
    size_t n_ctxs;
} hist_spec;

static void
hist_parse(const char *p, const char *end, hist_spec *q)
{
    *q = (hist_spec){.n = -1};
    while (p + 2 <= end) {
        char key = p[0];
        const char *v = p + 2;
        const char *stop = memchr(v, ';', (size_t)(end - v));
        if (!stop)
            stop = end;
        char num[32];
        while (v < stop) {
            const char *comma = memchr(v, ',', (size_t)(stop - v));
            const char *e = comma ? comma : stop;
            size_t len = (size_t)(e - v) < sizeof num - 1 ? (size_t)(e - v)
                                                          : sizeof num - 1;
            memcpy(num, v, len);
            num[len] = 0;
            if (key == 'n')
                q->n = strtoll(num, NULL, 10);
            else if (key == 's')
                q->since = strtoull(num, NULL, 10);
            else if (key == 'b')
                q->bucket = atoi(num);
            else if (key == 'c' && q->n_ctxs < 64)
                q->ctxs[q->n_ctxs++] = (uint32_t)strtoul(num, NULL, 10);
            v = e + 1;
        }
        p = stop + 1;
    }
}

static bool
hist_match(const hist_spec *q, kin__logdec *dec, zmq_msg_t *m)
{
    const unsigned char *d = zmq_msg_data(m);
    size_t size = zmq_msg_size(m);
    if (size < KIN__LOG_TOPIC_LEN || kin__log_letter_bucket(d[0]) < q->bucket)
        return false;
    if (q->n_ctxs) {
        uint32_t ctx = (uint32_t)d[1] << 24 | (uint32_t)d[2] << 16 |
                       (uint32_t)d[3] << 8 | d[4];
        size_t i = 0;
        while (i < q->n_ctxs && q->ctxs[i] != ctx)
            i++;
        if (i == q->n_ctxs)
            return false;
    }
    if (q->since) {
        const kin_logrec *r;
        if (kin__logdec_decode(dec, d, size, &r) || r->wall_ns < q->since)
            return false;
    }
    return true;
}

static void
send_prefixed(void *to, const void *prefix, size_t plen, zmq_msg_t *rec)
{
    size_t size = rec ? zmq_msg_size(rec) : 0;
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, plen + size))
        return;
    memcpy(zmq_msg_data(&m), prefix, plen);
    if (size)
        memcpy((char *)zmq_msg_data(&m) + plen, zmq_msg_data(rec), size);
    if (zmq_msg_send(&m, to, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&m);
}

/* Answers a history request (topic: the subscription's bytes) with the
 * matching records, oldest first, each behind the topic, then the topic
 * alone as the end. Sent on the frontend: only the asker matches it. */
static void
hist_serve(kin__logfwd *f, void *xpub, const char *topic, size_t len)
{
    hist_ring *h = &f->hist;
    hist_spec q;
    if (len >= 17)
        hist_parse(topic + 17, topic + len, &q);
    else
        q = (hist_spec){.n = -1};
    kin__logdec dec;
    kin__logdec_init(&dec);
    /* Newest first to count the last n, then sent oldest first. */
    size_t first = h->len, taken = 0;
    for (size_t i = h->len; i-- > 0;) {
        if (q.n >= 0 && taken >= (size_t)q.n)
            break;
        if (hist_match(&q, &dec, &h->msgs[(h->head + i) % h->cap])) {
            first = i;
            taken++;
        }
    }
    for (size_t i = first; taken && i < h->len; i++) {
        zmq_msg_t *m = &h->msgs[(h->head + i) % h->cap];
        if (hist_match(&q, &dec, m))
            send_prefixed(xpub, topic, len, m);
    }
    kin__logdec_fini(&dec);
    send_prefixed(xpub, topic, len, NULL);
}

/* Moves up to BURST messages from one side to the other; records going
 * out also go to the capture socket when they are at the sink's level.
 * Stops early when a lossless frontend is full. */
static void
forward(kin__logfwd *f, void *from, void *to, void *cap, int cap_bucket,
        atomic_uint_fast64_t *count, bool up)
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
        if (up && first && !more && zmq_msg_size(&m) >= 2 &&
            ((char *)zmq_msg_data(&m))[1] == KIN__LOG_HIST_TOPIC) {
            /* A history request (or its end): answered here, not passed
             * on to the publishers. */
            if (*(unsigned char *)zmq_msg_data(&m) == 1)
                hist_serve(f, from, (char *)zmq_msg_data(&m) + 1,
                           zmq_msg_size(&m) - 1);
            zmq_msg_close(&m);
            continue;
        }
        if (!up && first && !more && zmq_msg_size(&m) > 0 && f->hist.cap &&
            kin__log_letter_bucket(*(unsigned char *)zmq_msg_data(&m)) >=
                f->hist.bucket)
            hist_add(&f->hist, &m);
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
    kin__thread_name("kin-logfwd");
    void *ctx = kin__zctx();
    void *xsub = zmq_socket(ctx, ZMQ_XSUB);
    void *xpub = zmq_socket(ctx, ZMQ_XPUB);
    void *ctl = zmq_socket(ctx, ZMQ_PULL);
    bool sink = f->o.sink_fd >= 0 || f->o.sink_path;
    void *cap = sink ? zmq_socket(ctx, ZMQ_PUB) : NULL;
    kin_err e = KIN_OK;
    if (!xsub || !xpub || !ctl || (sink && !cap))
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
        int own = KIN__LOG_BUCKETS; /* lowest bucket we want ourselves */
        if (cap)
            own = kin__log_bucket(f->o.sink_level);
        if (f->hist.cap && f->hist.bucket < own)
            own = f->hist.bucket;
        for (int b = own; b < KIN__LOG_BUCKETS; b++) {
            s[1] = (unsigned char)kin__log_letter(b);
            zmq_send(xsub, s, 2, 0);
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
                forward(f, xsub, xpub, cap, cap_bucket, &f->records, false);
            if (items[1].revents & ZMQ_POLLIN)
                forward(f, xpub, xsub, NULL, 0, &f->subscriptions, true);
        }
    }
    if (f->holding)
        zmq_msg_close(&f->held);
    hist_free(&f->hist);
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
    if (f->o.history >= 0) {
        f->hist.cap =
            f->o.history ? (size_t)f->o.history : KIN__LOGFWD_HISTORY_DEFAULT;
        f->hist.bucket = kin__log_bucket(f->o.history_level ? f->o.history_level
                                                            : KIN_LOG_INFO);
        f->hist.msgs = calloc(f->hist.cap, sizeof *f->hist.msgs);
        if (!f->hist.msgs) {
            free(f);
            return -ENOMEM;
        }
    }
    if (strlen(opts->backend) >= sizeof f->backend ||
        strlen(opts->frontend) >= sizeof f->frontend) {
        free(f->hist.msgs);
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
    if (rc) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cond);
        free(f->hist.msgs);
        free(f);
        return -rc;
    }
    f->running = true;
    pthread_mutex_lock(&f->mu);
    while (!f->bound)
        pthread_cond_wait(&f->cond, &f->mu);
    kin_err e = f->err;
    pthread_mutex_unlock(&f->mu);
    if (!e && (f->o.sink_fd >= 0 || f->o.sink_path)) {
        kin_logsink_opts so = {.endpoint = f->cap_ep,
                               .fd = f->o.sink_fd,
                               .path = f->o.sink_path,
                               .max_bytes = f->o.sink_max_bytes,
                               .keep = f->o.sink_keep,
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
