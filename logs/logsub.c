/* Log subscribers: a SUB socket on the forwarder's frontend subscribed by
 * level (and context) topics, sequence tracking per (publisher, level,
 * context) stream that turns holes into gap records, and sinks, threads
 * that write what a subscriber reads to a file descriptor. */
#include "logs/logs_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <zmq.h>

#include "core/buf.h"
#include "core/log_internal.h"
#include "core/sync.h"
#include "core/task.h"
#include "logs/logfile.h"
#include "router/zctx.h"

#define MAX_CTXS 64
#define TASK_SLICE_MS 100 /* how often a waiting kin task checks cancel */
#define HIST_WAIT_MS 3000 /* for the answer to a history request */

/* Where a history request stands. */
enum { HIST_NONE, HIST_WAIT, HIST_DRAIN };

typedef struct stream {
    uint32_t pub, ctx;
    uint8_t bucket;
    bool used, seen;
    uint64_t last;  /* highest record number accounted for */
    uint64_t drops; /* publisher's drops accounted for */
} stream;

struct kin_logsub {
    void *sock;
    int min_level;
    kin__logdec dec;
    /* What the last message turned into: a gap, a drop, the record. */
    const kin_logrec *queue[3];
    int qhead, qlen;
    kin_logrec gap, drop;
    char gap_name[64], drop_name[64], drop_msg[64], notice_msg[64];
    stream *streams;
    size_t cap, len;
    kin_logsub_stats st;
    /* History: the request's topic; live records that came before the
     * answer's end, held until the history is out. */
    int hist;
    char hist_topic[1024];
    size_t hist_len;
    uint64_t hist_deadline;
    zmq_msg_t *held;
    size_t n_held, cap_held, next_held;
};

/* --- streams -------------------------------------------------------------- */

static size_t
stream_hash(uint32_t pub, uint32_t ctx, uint8_t bucket)
{
    uint64_t h = ((uint64_t)pub << 32 | ctx) * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t)bucket * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ (h >> 29));
}

static stream *
stream_find(kin_logsub *s, uint32_t pub, uint32_t ctx, uint8_t bucket)
{
    if (s->len * 2 >= s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        stream *t = calloc(cap, sizeof *t);
        if (!t)
            return NULL;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->streams[i].used)
                continue;
            const stream *o = &s->streams[i];
            size_t j = stream_hash(o->pub, o->ctx, o->bucket) & (cap - 1);
            while (t[j].used)
                j = (j + 1) & (cap - 1);
            t[j] = *o;
        }
        free(s->streams);
        s->streams = t;
        s->cap = cap;
    }
    size_t j = stream_hash(pub, ctx, bucket) & (s->cap - 1);
    while (s->streams[j].used) {
        stream *x = &s->streams[j];
        if (x->pub == pub && x->ctx == ctx && x->bucket == bucket)
            return x;
        j = (j + 1) & (s->cap - 1);
    }
    stream *x = &s->streams[j];
    *x = (stream){pub, ctx, bucket, true, false, 0, 0};
    s->len++;
    return x;
}

/* --- subscribers ---------------------------------------------------------- */

static kin_err
subscribe(void *sock, int bucket, const uint32_t *ctx)
{
    unsigned char t[KIN__LOG_TOPIC_LEN];
    kin__log_topic(t, bucket, ctx ? *ctx : 0);
    return zmq_setsockopt(sock, ZMQ_SUBSCRIBE, t, ctx ? KIN__LOG_TOPIC_LEN : 1)
               ? -errno
               : KIN_OK;
}

static kin_err
sub_new(kin_logsub **out, const kin_logsub_opts *o, bool all)
{
    if (!o || !o->endpoint || o->n_ctxs > MAX_CTXS || (o->n_ctxs && !o->ctxs))
        return -EINVAL;
    kin_logsub *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->min_level = o->min_level;
    kin__logdec_init(&s->dec);
    kin_err e = KIN_OK;
    s->sock = zmq_socket(kin__zctx(), ZMQ_SUB);
    if (!s->sock) {
        e = -errno;
        goto fail;
    }
    int hwm = o->rcvhwm > 0 ? o->rcvhwm : 10000, zero = 0;
    zmq_setsockopt(s->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
    /* Subscribe before connecting: the subscriptions then go out with the
     * connection itself. */
    if (all) {
        if (zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, "", 0))
            e = -errno;
    } else {
        for (int b = kin__log_bucket(o->min_level); !e && b < KIN__LOG_BUCKETS;
             b++) {
            if (!o->n_ctxs)
                e = subscribe(s->sock, b, NULL);
            for (size_t i = 0; !e && i < o->n_ctxs; i++)
                e = subscribe(s->sock, b, &o->ctxs[i]);
        }
    }
    if (!e && !all && (o->history || o->since_ns)) {
        /* Last, after the level subscriptions: every record the forwarder
         * passes after it answers is live here. */
        uint64_t nonce;
        if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce)
            nonce = kin__now_ns() ^ ((uint64_t)getpid() << 32);
        int n = snprintf(
            s->hist_topic, sizeof s->hist_topic,
            "%c%016llxn=%ld;s=%llu;b=%d;c=", KIN__LOG_HIST_TOPIC,
            (unsigned long long)nonce, o->history ? o->history : -1L,
            (unsigned long long)o->since_ns, kin__log_bucket(o->min_level));
        for (size_t i = 0; i < o->n_ctxs; i++)
            n += snprintf(s->hist_topic + n, sizeof s->hist_topic - (size_t)n,
                          "%s%u", i ? "," : "", o->ctxs[i]);
        s->hist_len = (size_t)n;
        s->hist = HIST_WAIT;
        s->hist_deadline = kin__now_ns() + HIST_WAIT_MS * 1000000ull;
        if (zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, s->hist_topic, s->hist_len))
            e = -errno;
    }
    if (!e && kin__endpoint_is_tcp(o->endpoint)) {
        kin__curve_key key;
        e = o->curve_key ? kin__curve_parse(&key, o->curve_key) : -EINVAL;
        if (e)
            KIN_ERROR("log subscriber: %s is tcp, which needs the tree's "
                      "CURVE key (kin_logsub_opts.curve_key)",
                      o->endpoint);
        else
            e = kin__curve_client(s->sock, &key);
    }
    if (!e && zmq_connect(s->sock, o->endpoint))
        e = -errno;
    if (e)
        goto fail;
    *out = s;
    return KIN_OK;
fail:
    kin_logsub_destroy(&s);
    return e;
}

kin_err
kin_logsub_new(kin_logsub **out, const kin_logsub_opts *opts)
{
    return sub_new(out, opts, false);
}

void
kin_logsub_destroy(kin_logsub **sp)
{
    if (!sp || !*sp)
        return;
    kin_logsub *s = *sp;
    if (s->sock)
        zmq_close(s->sock);
    for (size_t i = s->next_held; i < s->n_held; i++)
        zmq_msg_close(&s->held[i]);
    free(s->held);
    kin__logdec_fini(&s->dec);
    free(s->streams);
    free(s);
    *sp = NULL;
}

void
kin_logsub_stats_get(const kin_logsub *s, kin_logsub_stats *out)
{
    *out = s->st;
    out->history_pending = s->hist == HIST_WAIT;
}

/* What a record implies beside itself, in the order a reader should see
 * it: records lost before it (a gap), records the publisher dropped that
 * nobody was told of yet (a made-up DROPPED record, or the publisher's
 * notice with its count made exact). Queues them, then the record unless
 * it is below min_level or a notice with nothing new. */
static void
account(kin_logsub *s, kin_logrec *r)
{
    uint8_t bucket = (uint8_t)kin__log_bucket(r->level);
    bool notice = r->kind == KIN_LOGREC_DROPPED;
    bool shown = r->level >= s->min_level;
    s->qhead = s->qlen = 0;
    /* Publishers number records from 1: a record numbered 0 (from a peer
     * that is not kin's publisher) says nothing of gaps and would claim
     * 2^64 lost ones. */
    stream *x =
        notice || r->seq ? stream_find(s, r->pub, r->ctx, bucket) : NULL;
    if (!x) {
        if (shown) {
            s->st.records++;
            s->queue[s->qlen++] = r;
        }
        return;
    }
    bool first = !x->seen;
    if (!first && !notice && r->seq <= x->last)
        return; /* had it already (history and live overlap) */
    x->seen = true;
    /* A notice carries the number of the last record before it. */
    uint64_t before = notice ? r->seq : r->seq - 1;
    if (before > x->last) {
        kin_logrec *g = &s->gap;
        memset(g, 0, sizeof *g);
        g->kind = KIN_LOGREC_GAP;
        g->level = kin__log_bucket_level(bucket);
        g->seq = x->last + 1;
        g->count = before - x->last;
        g->before_join = first;
        g->pub = r->pub;
        g->pub_ctx = r->pub_ctx;
        g->ctx = r->ctx;
        snprintf(s->gap_name, sizeof s->gap_name, "%s", r->ctx_name);
        g->ctx_name = s->gap_name;
        g->pid = r->pid;
        g->wall_ns = r->wall_ns;
        g->mono_ns = r->mono_ns;
        g->file = g->msg = "";
        s->st.gaps++;
        s->st.lost += g->count;
        s->queue[s->qlen++] = g;
    }
    if (r->seq > x->last)
        x->last = r->seq;
    if (first) /* drops before we joined were someone else's news */
        x->drops =
            notice && r->drops >= r->count ? r->drops - r->count : r->drops;
    uint64_t delta = r->drops > x->drops ? r->drops - x->drops : 0;
    if (r->drops > x->drops)
        x->drops = r->drops;
    if (notice) {
        if (!delta)
            return;
        r->count = delta;
        snprintf(s->notice_msg, sizeof s->notice_msg, "dropped %llu records",
                 (unsigned long long)delta);
        r->msg = s->notice_msg;
        r->msg_len = strlen(s->notice_msg);
        s->st.dropped += delta;
        s->st.records++;
        s->queue[s->qlen++] = r;
        return;
    }
    if (delta) {
        /* The publisher's notice was lost; this record tells the tale. */
        kin_logrec *d = &s->drop;
        memset(d, 0, sizeof *d);
        d->kind = KIN_LOGREC_DROPPED;
        d->level = kin__log_bucket_level(bucket);
        d->seq = r->seq - 1;
        d->drops = r->drops;
        d->count = delta;
        d->pub = r->pub;
        d->pub_ctx = r->pub_ctx;
        d->ctx = r->ctx;
        snprintf(s->drop_name, sizeof s->drop_name, "%s", r->ctx_name);
        d->ctx_name = s->drop_name;
        d->pid = r->pid;
        d->wall_ns = r->wall_ns;
        d->mono_ns = r->mono_ns;
        d->file = "";
        snprintf(s->drop_msg, sizeof s->drop_msg, "dropped %llu records",
                 (unsigned long long)delta);
        d->msg = s->drop_msg;
        d->msg_len = strlen(s->drop_msg);
        s->st.dropped += delta;
        s->queue[s->qlen++] = d;
    }
    if (shown) {
        s->st.records++;
        s->queue[s->qlen++] = r;
    }
}

/* Decodes one record (topic included) and queues what it implies. */
static void
take(kin_logsub *s, const void *data, size_t size)
{
    const kin_logrec *r;
    if (kin__logdec_decode(&s->dec, data, size, &r))
        s->st.malformed++;
    else
        account(s, &s->dec.rec);
}

/* Keeps a live message until the history is out; false: no memory. */
static bool
hold(kin_logsub *s, zmq_msg_t *m)
{
    if (s->n_held == s->cap_held) {
        size_t cap = s->cap_held ? s->cap_held * 2 : 64;
        zmq_msg_t *t = realloc(s->held, cap * sizeof *t);
        if (!t)
            return false;
        s->held = t;
        s->cap_held = cap;
    }
    zmq_msg_t *slot = &s->held[s->n_held++];
    zmq_msg_init(slot);
    zmq_msg_move(slot, m);
    zmq_msg_close(m);
    return true;
}

kin_err
kin_logsub_next(kin_logsub *s, int timeout_ms, const kin_logrec **out)
{
    kin_task *t = kin_task_self();
    uint64_t deadline = timeout_ms < 0
                            ? UINT64_MAX
                            : kin__now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        if (s->qhead < s->qlen) {
            *out = s->queue[s->qhead++];
            return KIN_OK;
        }
        if (s->hist == HIST_DRAIN) {
            if (s->next_held < s->n_held) {
                zmq_msg_t *h = &s->held[s->next_held++];
                take(s, zmq_msg_data(h), zmq_msg_size(h));
                zmq_msg_close(h);
                continue;
            }
            free(s->held);
            s->held = NULL;
            s->n_held = s->cap_held = s->next_held = 0;
            s->hist = HIST_NONE;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->sock, ZMQ_DONTWAIT) >= 0) {
            const char *d = zmq_msg_data(&m);
            size_t size = zmq_msg_size(&m);
            if (size && d[0] == KIN__LOG_HIST_TOPIC) {
                /* Ours: a kept record, or the end of them; another's
                 * answer reaches us only when we subscribed to all. */
                if (s->hist == HIST_WAIT && size >= s->hist_len &&
                    !memcmp(d, s->hist_topic, s->hist_len)) {
                    if (size == s->hist_len)
                        s->hist = HIST_DRAIN;
                    else
                        take(s, d + s->hist_len, size - s->hist_len);
                }
                zmq_msg_close(&m);
                continue;
            }
            if (s->hist == HIST_WAIT) {
                if (hold(s, &m))
                    continue;
                /* no memory to hold it: taken now, out of order */
            }
            take(s, d, size);
            zmq_msg_close(&m);
            continue;
        }
        int err = errno;
        zmq_msg_close(&m);
        if (err != EAGAIN && err != EINTR)
            return -err;
        if (kin__task_cancel_pending(t))
            return KIN_ECANCELLED;
        uint64_t now = kin__now_ns();
        if (s->hist == HIST_WAIT && now >= s->hist_deadline) {
            s->hist = HIST_DRAIN; /* a forwarder without history */
            continue;
        }
        if (now >= deadline)
            return KIN_ETIMEOUT;
        uint64_t wake = deadline;
        if (s->hist == HIST_WAIT && s->hist_deadline < wake)
            wake = s->hist_deadline; /* to give up waiting for history */
        long wait =
            wake == UINT64_MAX ? -1 : (long)((wake - now + 999999u) / 1000000u);
        if (t && (wait < 0 || wait > TASK_SLICE_MS))
            wait = TASK_SLICE_MS;
        zmq_pollitem_t it = {s->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, wait) < 0 && errno != EINTR)
            return -errno;
    }
}

/* --- sinks ---------------------------------------------------------------- */

struct kin_logsink {
    pthread_t thread;
    kin_logsub *sub;
    kin_logsink_opts o;
    kin__logfile file;
    atomic_bool stop;
};

static void
append_line(kin_logsink *k, kin_buf *b, const kin_logrec *r)
{
    if (k->o.format == KIN_LOGSINK_JSON) {
        if (kin_logrec_json(r, b))
            return;
    } else {
        size_t need = kin_logrec_format(r, k->o.text_flags, NULL, 0) + 1;
        if (kin__buf_reserve(b, need))
            return;
        b->len += kin_logrec_format(r, k->o.text_flags, b->data + b->len, need);
    }
    kin__buf_add(b, "\n", 1);
}

/* Writes the first len bytes of b (records whole lines) and keeps the
 * rest. */
static void
flush(kin_logsink *k, kin_buf *b, size_t len, uint64_t records)
{
    kin__logfile_write(&k->file, b->data, len, records);
    memmove(b->data, b->data + len, b->len - len);
    b->len -= len;
}

static void *
sink_main(void *arg)
{
    kin_logsink *k = arg;
    kin__thread_name("kin-logsink");
    kin_buf b;
    kin_buf_init(&b);
    uint64_t records = 0; /* in b */
    for (;;) {
        bool stop = atomic_load(&k->stop);
        /* Write as soon as nothing more is waiting. */
        int timeout = b.len ? 0 : stop ? 20 : 100;
        const kin_logrec *r;
        kin_err e = kin_logsub_next(k->sub, timeout, &r);
        if (e) {
            if (b.len)
                flush(k, &b, b.len, records);
            else if (stop)
                break;
            records = 0;
            continue;
        }
        if (r->level < k->o.min_level)
            continue;
        size_t before = b.len;
        append_line(k, &b, r);
        if (b.len == before)
            continue;
        records++;
        if (kin__logfile_full(&k->file, before, b.len)) {
            /* This line starts the next file. */
            if (before)
                flush(k, &b, before, records - 1);
            records = 1;
            if (k->file.size)
                kin__logfile_rotate(&k->file);
        }
        if (b.len >= 64 * 1024) {
            flush(k, &b, b.len, records);
            records = 0;
        }
    }
    kin_buf_release(&b);
    return NULL;
}

static kin_err
sink_new(kin_logsink **out, const kin_logsink_opts *o, bool all)
{
    if (!o)
        return -EINVAL;
    kin_logsink *k = calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    kin_err fe = kin__logfile_open(&k->file, o);
    if (fe) {
        free(k);
        return fe;
    }
    k->o = *o;
    k->o.path = NULL; /* the file's copy is the one kept */
    kin_logsub_opts so = {.endpoint = o->endpoint,
                          .min_level = o->min_level,
                          .rcvhwm = all ? 100000 : 0};
    kin_err e = sub_new(&k->sub, &so, all);
    if (e) {
        kin__logfile_close(&k->file);
        free(k);
        return e;
    }
    k->o.endpoint = NULL; /* not needed any more, and not ours */
    int rc = pthread_create(&k->thread, NULL, sink_main, k);
    if (rc) {
        kin_logsub_destroy(&k->sub);
        kin__logfile_close(&k->file);
        free(k);
        return -rc;
    }
    *out = k;
    return KIN_OK;
}

kin_err
kin_logsink_new(kin_logsink **out, const kin_logsink_opts *opts)
{
    return sink_new(out, opts, false);
}

kin_err
kin__logsink_new_all(kin_logsink **out, const kin_logsink_opts *opts)
{
    return sink_new(out, opts, true);
}

void
kin_logsink_destroy(kin_logsink **kp)
{
    if (!kp || !*kp)
        return;
    kin_logsink *k = *kp;
    atomic_store(&k->stop, true);
    pthread_join(k->thread, NULL);
    kin_logsub_destroy(&k->sub);
    kin__logfile_close(&k->file);
    free(k);
    *kp = NULL;
}

void
kin_logsink_stats_get(kin_logsink *s, kin_logsink_stats *out)
{
    kin__logfile_stats(&s->file, out);
}
