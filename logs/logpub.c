/* The per-context log publisher. Logging threads encode a record's body and
 * append it to a bounded, locked double buffer; the broker thread swaps the
 * buffers, stamps each record with its stream's sequence number and sends
 * it on an XPUB socket connected to the forwarder. XPUB (not PUB) so the
 * publisher sees the subscriptions and disables unwanted levels at the
 * source; XPUB_NODROP so pressure from the forwarder backs up into the
 * queue, where every drop is counted and reported. */
#include "logs/logs_impl.h"
#include "logs/logs_test.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "core/buf.h"
#include "core/log_internal.h"
#include "core/sync.h"
#include "core/task.h"
#include "router/zctx.h"

/* A queued record: this header, the context name (child lines only), the
 * body, padded to 8 bytes. */
typedef struct entry {
    uint32_t len; /* body bytes */
    uint32_t ctx;
    uint8_t bucket;
    uint8_t kind;
    uint8_t name_len; /* 0: the publisher's own name */
    uint8_t pad;
} entry;

#define ENTRY_SIZE(name_len, len)                                              \
    ((sizeof(entry) + (name_len) + (len) + 7u) & ~(size_t)7u)

/* Work per wake-up before the loop gets a turn for other sockets. */
#define PUMP_ROUNDS 4

/* A publisher makes its socket and links to the forwarder at its first
 * record, or this long after it started: the socket, the link's handshake
 * and the forwarder's subscriptions cost a new context ~0.3 ms of CPU,
 * which its first calls then do not wait behind (docs/performance.md §14),
 * and a short-lived child that never logs does not pay them at all (§18:
 * most of 100 forked children started and stopped at once live 100-300
 * ms). Until the subscriptions are known every level is produced and
 * queued, as before. */
#define LINK_DELAY_MS 1000

/* A socket that could not be made (out of fds or memory) is tried again
 * this long after the failure, the wait doubling up to LINK_RETRY_MAX_MS;
 * meanwhile records queue, bounded, and the overflow counts as dropped. */
#define LINK_RETRY_MS 1000
#define LINK_RETRY_MAX_MS 30000

/* How long a stop waits for the subscriptions of a link made late (as
 * long as a publisher waits for them otherwise, sync_timeout_ms). A child
 * stopped by its parent gets SIGTERM after a quarter of its
 * stop_timeout_ms (500 ms by default), which ends the wait sooner. */
#define STOP_SYNC_MS 2000

typedef struct sub {
    unsigned char *topic;
    size_t len;
} sub;

/* The broker's state of the streams about one context. */
typedef struct bstream {
    uint64_t seq[KIN__LOG_BUCKETS];         /* last number given */
    uint64_t drops[KIN__LOG_BUCKETS];       /* cumulative, carried by records */
    uint64_t unannounced[KIN__LOG_BUCKETS]; /* drops no notice told yet */
} bstream;

/* Drops of records about other contexts (child output), since the last
 * swap. Beyond this many contexts they count in the publisher's own. */
#define DROP_SLOTS 8

struct kin__logs {
    kin_node *n;
    uint32_t id;            /* n's */
    char name[64];          /* n's */
    char endpoint[256];     /* where records go (the forwarder's backend) */
    bool curve;             /* endpoint is forwarded to a tcp one: CURVE */
    struct kin__logs *next; /* in the process's list, newest first */
    uint32_t pub;           /* random per publisher */
    int pid;
    kin__logfwd *fwd; /* embedded forwarder (master) */
    int sink_fd;
    kin__logs_tuning tune; /* g_tune when it started */

    /* Under g_mu. */
    char *active;
    size_t active_len, cap;
    uint64_t qdrops[KIN__LOG_BUCKETS]; /* own context, since the swap */
    struct {
        uint32_t ctx;
        uint64_t n[KIN__LOG_BUCKETS];
    } qother[DROP_SLOTS];
    int n_qother;
    uint64_t qdrops_total[KIN__LOG_BUCKETS];
    bool open;
    int subs_floor; /* lowest level a subscription wants (INT_MAX: none) */

    /* Broker thread. */
    void *sock;
    kin__watch *w;
    uv_async_t wake;
    uv_timer_t sync_timer, retry_timer; /* sync_timer: the link's, first */
    bool linked, synced, blocked;
    /* The link failed: 0 before any failure, else the wait before the
     * next attempt (sync_timer runs it while link_retrying). */
    unsigned link_backoff_ms;
    bool link_retrying;
    char *draining; /* the buffer being sent */
    size_t drain_len, drain_off;
    bool notices_due; /* some stream has unannounced drops */
    sub *subs;
    size_t n_subs, cap_subs;
    bstream own;
    kin__u32map others; /* ctx -> bstream */

    atomic_bool held;
    atomic_uint_fast64_t sent[KIN__LOG_BUCKETS], unwanted[KIN__LOG_BUCKETS];
    atomic_uint_fast64_t notices, blocked_count, link_failures;
    atomic_bool synced_flag;

    /* Start and stop handshakes with the broker thread. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool job_done;
    kin_err job_err;
    int closed; /* uv handles closed */
};

/* The lowest level currently produced (INT_MAX: none). */
static int g_min = INT_MAX;

bool
kin_logs_enabled(int level)
{
    return level >= __atomic_load_n(&g_min, __ATOMIC_RELAXED);
}

/* The key of a node's publisher in its node (kin__node_attach). */
static const kin__layer logs_layer = {"logs"};

static struct kin__logs *
logs_of(const kin_node *n)
{
    return kin__node_layer(n, &logs_layer);
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kin__logs *g_list; /* the head is the current publisher */
static int g_floor = INT_MIN;
static kin__logs_tuning g_tune = {512 * 1024, 10000, 10000, 2000, 0};

/* --- the process-wide switch ---------------------------------------------- */

static void
update_min_locked(void)
{
    int m = INT_MAX;
    if (g_list && g_list->subs_floor != INT_MAX)
        m = g_list->subs_floor > g_floor ? g_list->subs_floor : g_floor;
    __atomic_store_n(&g_min, m, __ATOMIC_RELAXED);
}

/* A forked child has none of its parent's threads: its publishers are the
 * parent's, not its own. */
static void
forget_in_child(void)
{
    pthread_mutex_init(&g_mu, NULL);
    g_list = NULL;
    __atomic_store_n(&g_min, INT_MAX, __ATOMIC_RELAXED);
}

void
kin_logs_set_level(int level)
{
    pthread_mutex_lock(&g_mu);
    g_floor = level;
    update_min_locked();
    pthread_mutex_unlock(&g_mu);
}

void
kin__logs_tune(const kin__logs_tuning *t)
{
    pthread_mutex_lock(&g_mu);
    if (t->queue_bytes)
        g_tune.queue_bytes = t->queue_bytes;
    if (t->pub_hwm)
        g_tune.pub_hwm = t->pub_hwm;
    if (t->fwd_hwm)
        g_tune.fwd_hwm = t->fwd_hwm;
    if (t->sync_timeout_ms)
        g_tune.sync_timeout_ms = t->sync_timeout_ms;
    if (t->fwd_lossless)
        g_tune.fwd_lossless = t->fwd_lossless > 0;
    pthread_mutex_unlock(&g_mu);
}

/* --- logging threads ------------------------------------------------------ */

static void
count_drop_locked(struct kin__logs *p, uint32_t ctx, int bucket)
{
    p->qdrops_total[bucket]++;
    if (ctx != p->id) {
        for (int i = 0; i < p->n_qother; i++) {
            if (p->qother[i].ctx == ctx) {
                p->qother[i].n[bucket]++;
                return;
            }
        }
        if (p->n_qother < DROP_SLOTS) {
            int i = p->n_qother++;
            memset(&p->qother[i], 0, sizeof p->qother[i]);
            p->qother[i].ctx = ctx;
            p->qother[i].n[bucket] = 1;
            return;
        }
    }
    p->qdrops[bucket]++;
}

/* Appends a record to p's queue, or counts it as dropped. g_mu held. */
static void
enqueue_locked(struct kin__logs *p, int bucket, kin_logrec_kind kind,
               uint32_t ctx, const char *name, size_t name_len,
               const char *body, size_t len)
{
    if (!p->open)
        return;
    if (name_len > 63)
        name_len = 63;
    size_t need = ENTRY_SIZE(name_len, len);
    bool was_empty = p->active_len == 0;
    if (p->active_len + need > p->cap) {
        count_drop_locked(p, ctx, bucket);
    } else {
        entry *en = (entry *)(p->active + p->active_len);
        en->len = (uint32_t)len;
        en->ctx = ctx;
        en->bucket = (uint8_t)bucket;
        en->kind = (uint8_t)kind;
        en->name_len = (uint8_t)name_len;
        en->pad = 0;
        if (name_len)
            memcpy(en + 1, name, name_len);
        memcpy((char *)(en + 1) + name_len, body, len);
        p->active_len += need;
    }
    /* Only the first record after a swap wakes the broker: the rest ride
     * on that wake-up. uv_async_send under g_mu, so stop cannot close the
     * handle between the check of open and the send. */
    if (was_empty)
        uv_async_send(&p->wake);
}

static uint64_t
clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
emit_body(int level, const char *file, int line, const char *msg,
          size_t msg_len, const kin_field *fields)
{
    kin_task *t = kin_task_self();
    char mem[KIN__LOG_BODY_INLINE];
    kin_buf b;
    kin__buf_init_fixed(&b, mem, sizeof mem);
    if (!kin__logrec_body(
            &b, level, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_MONOTONIC),
            t ? t->id : kin__task_home(), file, line, msg, msg_len, fields)) {
        pthread_mutex_lock(&g_mu);
        struct kin__logs *p = g_list;
        if (p && level >= g_floor)
            enqueue_locked(p, kin__log_bucket(level), KIN_LOGREC_LOG, p->id,
                           NULL, 0, b.data, b.len);
        pthread_mutex_unlock(&g_mu);
    }
    kin_buf_release(&b);
}

void
kin_logs_emit(int level, const char *file, int line, const char *msg,
              const kin_field *fields)
{
    if (!kin_logs_enabled(level))
        return;
    emit_body(level, file, line, msg, (size_t)-1, fields);
}

void
kin_logs_emitf(int level, const char *file, int line, const char *fmt, ...)
{
    if (!kin_logs_enabled(level))
        return;
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        emit_body(level, file, line, small, (size_t)n, NULL);
        return;
    }
    size_t size =
        (size_t)n + 1 < KIN__LOG_STR_MAX ? (size_t)n + 1 : KIN__LOG_STR_MAX;
    char *big = malloc(size);
    if (!big)
        return;
    va_start(ap, fmt);
    vsnprintf(big, size, fmt, ap);
    va_end(ap);
    emit_body(level, file, line, big, strlen(big), NULL);
    free(big);
}

void
kin__logs_child_line(kin_node *n, uint32_t child_id, const char *child_name,
                     bool is_stderr, const char *line, size_t len)
{
    int level = is_stderr ? KIN_LOG_WARNING : KIN_LOG_INFO;
    pthread_mutex_lock(&g_mu);
    struct kin__logs *p = logs_of(n);
    bool want = p && p->open && level >= g_floor && level >= p->subs_floor;
    pthread_mutex_unlock(&g_mu);
    if (!want)
        return;
    char mem[KIN__LOG_BODY_INLINE];
    kin_buf b;
    kin__buf_init_fixed(&b, mem, sizeof mem);
    if (!kin__logrec_body(&b, level, clock_ns(CLOCK_REALTIME),
                          clock_ns(CLOCK_MONOTONIC), 0, "", 0, line, len,
                          NULL)) {
        const char *name = child_name ? child_name : "";
        pthread_mutex_lock(&g_mu);
        if (logs_of(n) == p)
            enqueue_locked(p, kin__log_bucket(level),
                           is_stderr ? KIN_LOGREC_STDERR : KIN_LOGREC_STDOUT,
                           child_id, name, strlen(name), b.data, b.len);
        pthread_mutex_unlock(&g_mu);
    }
    kin_buf_release(&b);
}

/* --- broker thread: sending ----------------------------------------------- */

static bool
wanted(const struct kin__logs *p, const unsigned char *topic)
{
    for (size_t i = 0; i < p->n_subs; i++) {
        size_t l = p->subs[i].len;
        /* A subscription longer than the topic reaches into the record
         * itself; let the socket decide. */
        if (!memcmp(p->subs[i].topic, topic,
                    l < KIN__LOG_TOPIC_LEN ? l : KIN__LOG_TOPIC_LEN))
            return true;
    }
    return false;
}

static bstream *
bstream_for(struct kin__logs *p, uint32_t ctx)
{
    if (ctx == p->id)
        return &p->own;
    bstream *s = kin__u32map_get(&p->others, ctx);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (s && kin__u32map_put(&p->others, ctx, s)) {
            free(s);
            s = NULL;
        }
    }
    return s;
}

/* A record was handed to a socket (kin__logs_published). */
static atomic_bool g_published;

bool
kin__logs_published(void)
{
    return atomic_load_explicit(&g_published, memory_order_relaxed);
}

/* 0: sent or not wanted (done with it); -EAGAIN: the socket is full.
 * new_drops: drops this record announces (notices only). */
static int
publish(struct kin__logs *p, int bucket, kin_logrec_kind kind, uint32_t ctx,
        const char *name, size_t name_len, const char *body, size_t len,
        uint64_t new_drops)
{
    unsigned char topic[KIN__LOG_TOPIC_LEN];
    kin__log_topic(topic, bucket, ctx);
    if (!wanted(p, topic)) {
        /* Nobody listens: nobody is owed the news either, but later
         * records carry the drops. */
        bstream *x = bstream_for(p, ctx);
        if (x)
            x->drops[bucket] += new_drops;
        atomic_fetch_add(&p->unwanted[bucket], 1);
        return 0;
    }
    bstream *bs = bstream_for(p, ctx);
    if (!bs) {
        atomic_fetch_add(&p->unwanted[bucket], 1);
        return 0;
    }
    bs->drops[bucket] += new_drops; /* undone if the socket is full */
    if (!name_len && ctx == p->id) {
        name = p->name;
        name_len = strlen(name);
    }
    /* A notice takes no number of its own: losing one must not look like
     * a lost record, and the next record carries its drops anyway. */
    bool numbered = kind != KIN_LOGREC_DROPPED;
    char head[KIN__LOG_HEAD_MAX];
    size_t hl = kin__logrec_head(
        head, bucket, bs->seq[bucket] + numbered, p->pub, p->id, ctx, name,
        name_len, ctx == p->id ? p->pid : 0, kind, bs->drops[bucket]);
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, hl + len)) {
        bs->drops[bucket] -= new_drops;
        return -EAGAIN;
    }
    memcpy(zmq_msg_data(&m), head, hl);
    memcpy((char *)zmq_msg_data(&m) + hl, body, len);
    if (zmq_msg_send(&m, p->sock, ZMQ_DONTWAIT) < 0) {
        int err = errno;
        zmq_msg_close(&m);
        if (err == EAGAIN) {
            bs->drops[bucket] -= new_drops;
            return -EAGAIN;
        }
        atomic_fetch_add(&p->unwanted[bucket], 1);
        return 0;
    }
    if (!atomic_load_explicit(&g_published, memory_order_relaxed))
        atomic_store_explicit(&g_published, true, memory_order_relaxed);
    bs->seq[bucket] += numbered;
    atomic_fetch_add(&p->sent[bucket], 1);
    return 0;
}

/* Tells subscribers of a stream about its unannounced drops. */
static int
send_notice(struct kin__logs *p, uint32_t ctx, bstream *bs, int bucket)
{
    uint64_t count = bs->unannounced[bucket];
    if (!count)
        return 0;
    char msg[80];
    int ml = snprintf(msg, sizeof msg, "dropped %llu records",
                      (unsigned long long)count);
    kin_field f[3] = {KIN_FUINT("dropped", count),
                      KIN_FUINT("dropped_total", bs->drops[bucket] + count),
                      KIN__FEND};
    char mem[KIN__LOG_BODY_INLINE];
    kin_buf b;
    kin__buf_init_fixed(&b, mem, sizeof mem);
    kin_err be = kin__logrec_body(
        &b, kin__log_bucket_level(bucket), clock_ns(CLOCK_REALTIME),
        clock_ns(CLOCK_MONOTONIC), 0, "", 0, msg, (size_t)ml, f);
    int r = be ? 0
               : publish(p, bucket, KIN_LOGREC_DROPPED, ctx, NULL, 0, b.data,
                         b.len, count);
    kin_buf_release(&b);
    if (!r) {
        bs->unannounced[bucket] = 0;
        atomic_fetch_add(&p->notices, 1);
    }
    return r;
}

static bool
send_notices(struct kin__logs *p)
{
    if (!p->notices_due)
        return true;
    for (int b = 0; b < KIN__LOG_BUCKETS; b++)
        if (send_notice(p, p->id, &p->own, b))
            return false;
    uint32_t ctx;
    void *val;
    for (size_t it = 0; kin__u32map_next(&p->others, &it, &ctx, &val);)
        for (int b = 0; b < KIN__LOG_BUCKETS; b++)
            if (send_notice(p, ctx, val, b))
                return false;
    p->notices_due = false;
    return true;
}

static void on_retry(uv_timer_t *t);

static void
mark_blocked(struct kin__logs *p)
{
    if (!p->blocked)
        atomic_fetch_add(&p->blocked_count, 1);
    p->blocked = true;
    /* The socket's fd says nothing about room to write that the broker's
     * watch would act on; look again shortly. */
    if (!uv_is_active((uv_handle_t *)&p->retry_timer))
        uv_timer_start(&p->retry_timer, on_retry, 1, 0);
}

/* Sends what the draining buffer still holds, then the notices; false when
 * the socket filled up first. */
static bool
send_pending(struct kin__logs *p)
{
    while (p->drain_off < p->drain_len) {
        entry *en = (entry *)(p->draining + p->drain_off);
        const char *name = (const char *)(en + 1);
        if (publish(p, en->bucket, (kin_logrec_kind)en->kind, en->ctx, name,
                    en->name_len, name + en->name_len, en->len, 0)) {
            mark_blocked(p);
            return false;
        }
        p->drain_off += ENTRY_SIZE(en->name_len, en->len);
    }
    if (!send_notices(p)) {
        mark_blocked(p);
        return false;
    }
    p->blocked = false;
    return true;
}

static bool
add_drops(bstream *bs, const uint64_t *n)
{
    bool any = false;
    for (int b = 0; b < KIN__LOG_BUCKETS; b++) {
        bs->unannounced[b] += n[b];
        any |= n[b] != 0;
    }
    return any;
}

/* Moves the queue to the draining buffer and its drops to the streams;
 * false when there was nothing. The drops happened after the queued
 * records were queued: the notice sent after them counts them first,
 * and records sent later carry the new total. */
static bool
swap_queue(struct kin__logs *p)
{
    pthread_mutex_lock(&g_mu);
    char *full = p->active;
    size_t len = p->active_len;
    p->active = p->draining;
    p->active_len = 0;
    bool drops = add_drops(&p->own, p->qdrops);
    memset(p->qdrops, 0, sizeof p->qdrops);
    for (int i = 0; i < p->n_qother; i++) {
        bstream *bs = bstream_for(p, p->qother[i].ctx);
        drops |= add_drops(bs ? bs : &p->own, p->qother[i].n);
    }
    p->n_qother = 0;
    pthread_mutex_unlock(&g_mu);
    p->notices_due |= drops;
    p->draining = full;
    p->drain_len = len;
    p->drain_off = 0;
    return len || drops;
}

/* Sends as much as the socket takes, a bounded amount per call. */
static void
pump(struct kin__logs *p, int rounds)
{
    if (!p->synced || !p->sock || atomic_load(&p->held))
        return;
    for (int i = 0; i < rounds; i++) {
        if (!send_pending(p))
            return;
        if (!swap_queue(p))
            return;
    }
    /* More may be queued: come back after the loop's other work. */
    uv_async_send(&p->wake);
}

static void on_sync_timeout(uv_timer_t *t);

static bool on_subscription(void *sock, void *arg);

/* Whether the link needs CURVE with the tree's key. */
static bool
needs_curve(const struct kin__logs *p)
{
    return p->curve || kin__endpoint_is_tcp(p->endpoint);
}

/* The publisher's XPUB, watched on the broker. Broker thread. */
static kin_err
open_sock(struct kin__logs *p)
{
    kin_node *n = p->n;
    kin_err e = KIN_OK;
    int hwm = p->tune.pub_hwm, one = 1, zero = 0;
    void *sock = zmq_socket(kin__zctx(), ZMQ_XPUB);
    if (!sock)
        return -errno;
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    if ((needs_curve(p) && (e = kin__curve_client(sock, kin__node_curve(n)))) ||
        (e = kin__broker_watch(kin__node_broker(n), sock, on_subscription, p,
                               &p->w))) {
        zmq_close(sock);
        return e;
    }
    p->sock = sock;
    return KIN_OK;
}

static void on_link_due(uv_timer_t *t);

/* The socket could not be made or connected: says so once, and tries
 * again later. Broker thread. */
static void
link_failed(struct kin__logs *p, const char *what, const char *why)
{
    if (p->sock) {
        kin__broker_unwatch(&p->w);
        zmq_close(p->sock);
        p->sock = NULL;
    }
    p->linked = false;
    atomic_fetch_add(&p->link_failures, 1);
    if (!p->link_backoff_ms) {
        fprintf(stderr,
                "kin: context %u: logs cannot %s %s: %s; trying again, "
                "records queue meanwhile\n",
                p->id, what, p->endpoint, why);
        p->link_backoff_ms = LINK_RETRY_MS;
    } else if ((p->link_backoff_ms *= 2) > LINK_RETRY_MAX_MS) {
        p->link_backoff_ms = LINK_RETRY_MAX_MS;
    }
    p->link_retrying = true;
    uv_timer_start(&p->sync_timer, on_link_due, p->link_backoff_ms, 0);
}

/* Makes the socket and connects it to the forwarder, once it works; a
 * failure waits for its retry (link_failed). Broker thread. */
static void
link_up(struct kin__logs *p)
{
    if (p->linked || p->link_retrying)
        return;
    p->linked = true;
    kin_err e = open_sock(p);
    if (e) {
        link_failed(p, "open a socket for", kin_strerror(e));
        return;
    }
    if (zmq_connect(p->sock, p->endpoint)) {
        /* The endpoint was checked at the start (endpoint_ok). */
        link_failed(p, "connect to", zmq_strerror(errno));
        return;
    }
    if (p->link_backoff_ms)
        fprintf(stderr, "kin: context %u: logs linked to %s after all\n", p->id,
                p->endpoint);
    p->link_backoff_ms = 0;
    uv_timer_start(&p->sync_timer, on_sync_timeout,
                   (uint64_t)p->tune.sync_timeout_ms, 0);
}

static void
on_link_due(uv_timer_t *t)
{
    struct kin__logs *p = t->data;
    p->link_retrying = false;
    link_up(p);
}

static void
on_wake(uv_async_t *a)
{
    link_up(a->data); /* a record is queued */
    pump(a->data, PUMP_ROUNDS);
}

static void
on_retry(uv_timer_t *t)
{
    pump(t->data, PUMP_ROUNDS);
}

/* --- broker thread: subscriptions ----------------------------------------- */

static int
compute_floor(const struct kin__logs *p)
{
    int floor = INT_MAX;
    for (size_t i = 0; i < p->n_subs; i++) {
        int f;
        if (p->subs[i].len == 0) {
            f = INT_MIN;
        } else {
            int b = kin__log_letter_bucket(p->subs[i].topic[0]);
            if (b < 0)
                continue;
            f = kin__log_bucket_floor(b);
        }
        if (f < floor)
            floor = f;
    }
    return floor;
}

static void
publish_floor(struct kin__logs *p)
{
    /* Until the forwarder's subscriptions are known, produce everything:
     * records wait in the queue for the verdict. */
    int floor = p->synced ? compute_floor(p) : INT_MIN;
    pthread_mutex_lock(&g_mu);
    p->subs_floor = floor;
    if (p == g_list)
        update_min_locked();
    pthread_mutex_unlock(&g_mu);
}

static void
set_synced(struct kin__logs *p)
{
    if (p->synced)
        return;
    p->synced = true;
    atomic_store(&p->synced_flag, true);
    uv_timer_stop(&p->sync_timer);
    publish_floor(p);
    /* Pump from the loop, once the rest of this batch of subscriptions
     * has been read. */
    uv_async_send(&p->wake);
}

static void
on_sync_timeout(uv_timer_t *t)
{
    struct kin__logs *p = t->data;
    KIN_WARN("logs: no subscription set from the forwarder at %s within "
             "%d ms; going on with what arrived",
             p->endpoint, p->tune.sync_timeout_ms);
    set_synced(p);
}

static void
sub_change(struct kin__logs *p, bool add, const unsigned char *t, size_t len)
{
    for (size_t i = 0; i < p->n_subs; i++) {
        if (p->subs[i].len == len && !memcmp(p->subs[i].topic, t, len)) {
            if (!add) {
                free(p->subs[i].topic);
                p->subs[i] = p->subs[--p->n_subs];
            }
            return;
        }
    }
    if (!add)
        return;
    if (p->n_subs == p->cap_subs) {
        size_t cap = p->cap_subs ? p->cap_subs * 2 : 8;
        sub *s = realloc(p->subs, cap * sizeof *s);
        if (!s)
            return;
        p->subs = s;
        p->cap_subs = cap;
    }
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    memcpy(copy, t, len);
    p->subs[p->n_subs++] = (sub){copy, len};
}

static bool
on_subscription(void *sock, void *arg)
{
    struct kin__logs *p = arg;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return false; /* nothing there */
    }
    const unsigned char *d = zmq_msg_data(&m);
    size_t size = zmq_msg_size(&m);
    if (size >= 1 && d[0] <= 1) {
        if (size == 2 && d[1] == KIN__LOG_SYNC_TOPIC) {
            if (d[0] == 1)
                set_synced(p);
        } else {
            sub_change(p, d[0] == 1, d + 1, size - 1);
            publish_floor(p);
            /* Records held back while nobody wanted them are gone; new
             * ones flow from here on. */
        }
    }
    zmq_msg_close(&m);
    return true;
}

/* --- start and stop ------------------------------------------------------- */

static void
job_finish(struct kin__logs *p, kin_err e)
{
    pthread_mutex_lock(&p->mu);
    p->job_err = e;
    p->job_done = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

/* What zmq_connect would refuse at once, told at the start rather than at
 * the deferred link: a transport kin's publisher uses, an address after it,
 * and a tcp port. */
static bool
endpoint_ok(const char *ep)
{
    const char *a;
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return strchr(ep, '/')[2] != 0;
    if (strncmp(ep, "tcp://", 6))
        return false;
    a = strrchr(ep + 6, ':');
    return a && a > ep + 6 && a[1];
}

static void
open_job(void *arg, void *unused)
{
    struct kin__logs *p = arg;
    kin_node *n = p->n;
    /* What the link will need is checked now: a context that cannot
     * publish fails at its start, not at its first record. */
    kin_err e = !needs_curve(p)               ? KIN_OK
                : !zmq_has("curve")           ? -ENOTSUP
                : !kin__node_curve(n)->pub[0] ? -EINVAL
                                              : KIN_OK;
    if (e) {
        KIN_ERROR("context %u: logs to %s need the tree's CURVE key: %s", p->id,
                  p->endpoint, kin_strerror(e));
        job_finish(p, e);
        return;
    }
    uv_loop_t *loop = kin__broker_loop(kin__node_broker(n));
    uv_async_init(loop, &p->wake, on_wake);
    p->wake.data = p;
    uv_timer_init(loop, &p->sync_timer);
    p->sync_timer.data = p;
    uv_timer_init(loop, &p->retry_timer);
    p->retry_timer.data = p;
    /* The socket is made and linked at the first record, or LINK_DELAY_MS
     * from now. */
    uv_timer_start(&p->sync_timer, on_link_due, LINK_DELAY_MS, 0);
    job_finish(p, KIN_OK);
}

static void
on_closed(uv_handle_t *h)
{
    struct kin__logs *p = h->data;
    pthread_mutex_lock(&p->mu);
    p->closed++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

static void
stop_job(void *arg, void *unused)
{
    struct kin__logs *p = arg;
    /* Send everything still queued; g_list no longer has p, so nothing new
     * arrives. A link made just now gets a little time for the forwarder's
     * subscriptions (an XPUB drops what nobody subscribed to yet), and the
     * socket a little time if it is full. */
    atomic_store(&p->held, false);
    uint64_t deadline = kin__now_ns() + 500 * 1000000ull;
    uint64_t sync_by = kin__now_ns() + STOP_SYNC_MS * 1000000ull;
    bool queued = p->active_len || p->drain_off < p->drain_len;
    if (queued && p->link_retrying) { /* one last try, now */
        uv_timer_stop(&p->sync_timer);
        p->link_retrying = false;
    }
    if (queued)
        link_up(p);
    while (queued && p->sock && !p->synced && kin__now_ns() < sync_by)
        if (!on_subscription(p->sock, p))
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    p->synced = true;
    for (; p->sock;) {
        if (send_pending(p)) {
            if (!swap_queue(p))
                break;
            continue;
        }
        if (kin__now_ns() > deadline)
            break;
        /* An XPUB always polls writable; wait a little instead. */
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    if (p->sock) {
        kin__broker_unwatch(&p->w);
        /* A linger lets the I/O thread deliver what the socket still
         * holds; a child's exit waits for that by ending the context
         * (context/init.c). */
        int linger = 500;
        zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(p->sock);
        p->sock = NULL;
    }
    uv_close((uv_handle_t *)&p->wake, on_closed);
    uv_close((uv_handle_t *)&p->sync_timer, on_closed);
    uv_close((uv_handle_t *)&p->retry_timer, on_closed);
    job_finish(p, KIN_OK);
}

static kin_err
run_job(struct kin__logs *p, kin__defer_fn fn, int handles)
{
    p->job_done = false;
    kin_err e = kin__broker_defer(kin__node_broker(p->n), fn, p, NULL);
    if (e)
        return e;
    pthread_mutex_lock(&p->mu);
    while (!p->job_done || p->closed < handles)
        pthread_cond_wait(&p->cond, &p->mu);
    e = p->job_err;
    pthread_mutex_unlock(&p->mu);
    return e;
}

static void
free_logs(struct kin__logs *p)
{
    kin__logfwd_stop(&p->fwd);
    if (p->sink_fd >= 0)
        close(p->sink_fd);
    uint32_t key;
    void *val;
    for (size_t it = 0; kin__u32map_next(&p->others, &it, &key, &val);)
        free(val);
    kin__u32map_fini(&p->others);
    for (size_t i = 0; i < p->n_subs; i++)
        free(p->subs[i].topic);
    free(p->subs);
    free(p->active);
    free(p->draining);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
}

/* The embedded forwarder's endpoints, next to the node's own. */
static kin_err
forwarder_endpoints(kin_node *n, const kin_node_opts *opts, char *back,
                    char *front, size_t size)
{
    char base[256];
    if (kin__node_ipc_path(n)[0]) {
        snprintf(base, sizeof base, "%s", kin__node_ipc_path(n));
        char *dot = strrchr(base, '.');
        if (dot && !strcmp(dot, ".sock"))
            *dot = 0;
    } else if (opts->bind && !strncmp(opts->bind, "tcp://", 6)) {
        /* Publishers may be elsewhere (other users, other hosts): the
         * backend goes on the same interface, a port of the system's
         * choosing, with CURVE; subscribers are operators of this host,
         * so the frontend stays in the private runtime directory. */
        char host[200], dir[160];
        snprintf(host, sizeof host, "%s", opts->bind + 6);
        char *colon = strrchr(host, ':');
        if (colon)
            *colon = 0;
        kin_err e = kin__runtime_dir(dir, sizeof dir);
        if (e)
            return e;
        static atomic_uint seq;
        snprintf(back, size, "tcp://%s:*", host);
        snprintf(front, size, "ipc://%s/%d-%u.t%u-logs.sock", dir,
                 (int)getpid(), kin_node_id(n), atomic_fetch_add(&seq, 1));
        unlink(front + 6);
        return KIN_OK;
    } else {
        char dir[160];
        kin_err e = kin__runtime_dir(dir, sizeof dir);
        if (e)
            return e;
        snprintf(base, sizeof base, "%s/%d-%u", dir, (int)getpid(),
                 kin_node_id(n));
    }
    if (strlen(base) + 20 > size || strlen(base) + 14 > 107)
        return -ENAMETOOLONG;
    snprintf(back, size, "ipc://%s-logs-in.sock", base);
    snprintf(front, size, "ipc://%s-logs.sock", base);
    /* Stale sockets of a recycled pid. */
    unlink(back + 6);
    unlink(front + 6);
    return KIN_OK;
}

/* KIN_LOG_HISTORY="N[:LEVEL]": how many recent records the embedded
 * forwarder keeps (0: none) and from which level (default info). */
static void
history_from_env(kin__logfwd_opts *fo)
{
    const char *v = getenv("KIN_LOG_HISTORY");
    if (!v || !*v)
        return;
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || n < 0 || n > 1000000 || (*end && *end != ':')) {
        KIN_WARN("KIN_LOG_HISTORY='%s' is not N[:LEVEL]; keeping the "
                 "default",
                 v);
        return;
    }
    int level = 0;
    if (*end == ':' && kin_log_level_parse(end + 1, &level)) {
        KIN_WARN("KIN_LOG_HISTORY='%s': bad level; keeping the default", v);
        return;
    }
    fo->history = n ? (int)n : -1;
    fo->history_level = level;
}

static kin_err
start_forwarder(struct kin__logs *p, const kin_node_opts *opts)
{
    char back[256], front[256];
    kin_err e = forwarder_endpoints(p->n, opts, back, front, sizeof back);
    if (e)
        return e;
    kin__logfwd_opts fo = {.backend = back,
                           .frontend = front,
                           .hwm = p->tune.fwd_hwm,
                           .lossless = p->tune.fwd_lossless > 0,
                           .sink_fd = -1,
                           .curve = kin__node_curve(p->n)};
    history_from_env(&fo);
    if (opts->log_file) {
        /* The sink opens it: whole lines only, rotation, lost records
         * counted (logfile.c). */
        fo.sink_path = opts->log_file;
        fo.sink_max_bytes = opts->log_file_max_bytes;
        fo.sink_keep = opts->log_file_keep;
        fo.sink_format = KIN_LOGSINK_JSON;
        fo.sink_level =
            opts->log_file_level ? opts->log_file_level : KIN_LOG_INFO;
    }
    return kin__logfwd_start(&p->fwd, &fo);
}

kin_err
kin__logs_start(kin_node *n, const kin_node_opts *opts, bool curve)
{
    kin_node_opts none = {0};
    if (!opts)
        opts = &none;
    const char *ep = opts->log_endpoint;
    /* A joiner publishes where the master told it to (join answer). */
    char joined_ep[256] = "";
    if (!ep && kin__node_joined(n)) {
        kin__node_log_endpoint(n, joined_ep, sizeof joined_ep);
        ep = joined_ep[0] ? joined_ep : NULL;
    }
    if (kin__node_is_operator(n) || (ep && !*ep) ||
        (kin__node_has_parent(n) && !ep))
        return KIN_OK;
    if (ep && strlen(ep) >= sizeof((struct kin__logs *)0)->endpoint)
        return -EINVAL;
    kin__forget_in_child(forget_in_child);
    struct kin__logs *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->n = n;
    p->id = kin_node_id(n);
    snprintf(p->name, sizeof p->name, "%s", kin_node_name(n));
    p->curve = curve;
    p->pid = (int)getpid();
    p->sink_fd = -1;
    p->subs_floor = INT_MIN;
    if (getrandom(&p->pub, sizeof p->pub, GRND_NONBLOCK) != sizeof p->pub)
        p->pub = (uint32_t)(clock_ns(CLOCK_MONOTONIC) ^ (uint64_t)p->pid);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    pthread_mutex_lock(&g_mu);
    p->tune = g_tune;
    pthread_mutex_unlock(&g_mu);
    p->cap = p->tune.queue_bytes;
    p->active = malloc(p->cap);
    p->draining = malloc(p->cap);
    kin_err e = p->active && p->draining ? KIN_OK : -ENOMEM;
    if (!e && !ep) {
        if (!(e = start_forwarder(p, opts)))
            ep = kin__logfwd_backend(p->fwd);
    }
    if (!e && !endpoint_ok(ep))
        e = -EINVAL;
    if (!e) {
        snprintf(p->endpoint, sizeof p->endpoint, "%s", ep);
        if (!kin__node_has_parent(n)) /* passed on to joiners */
            kin__node_set_log_endpoint(n, ep);
        e = run_job(p, open_job, 0);
    }
    if (e) {
        KIN_ERROR("logs: cannot start for context %u (endpoint %s): %s", p->id,
                  ep ? ep : "-", kin_strerror(e));
        free_logs(p);
        return e;
    }
    pthread_mutex_lock(&g_mu);
    if (!(e = kin__node_attach(n, &logs_layer, p))) {
        p->open = true;
        p->next = g_list;
        g_list = p;
        update_min_locked();
    }
    pthread_mutex_unlock(&g_mu);
    if (e && !run_job(p, stop_job, 3))
        free_logs(p);
    return e;
}

void
kin__logs_stop(kin_node *n)
{
    pthread_mutex_lock(&g_mu);
    struct kin__logs *p = logs_of(n);
    if (!p) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    kin__node_detach(n, &logs_layer);
    p->open = false;
    for (struct kin__logs **q = &g_list; *q; q = &(*q)->next) {
        if (*q == p) {
            *q = p->next;
            break;
        }
    }
    update_min_locked();
    pthread_mutex_unlock(&g_mu);
    if (run_job(p, stop_job, 3)) {
        /* The broker is gone and took the handles with it; p's memory may
         * still be referenced by them, so it stays. */
        KIN_ERROR("logs: context %u stopped without its broker", p->id);
        return;
    }
    free_logs(p);
}

void
kin__logs_stats_get(kin_node *n, kin__logs_stats *out)
{
    memset(out, 0, sizeof *out);
    out->min_level = INT_MAX;
    pthread_mutex_lock(&g_mu);
    struct kin__logs *p = logs_of(n);
    if (p) {
        for (int b = 0; b < KIN__LOG_BUCKETS; b++) {
            out->sent[b] = atomic_load(&p->sent[b]);
            out->unwanted[b] = atomic_load(&p->unwanted[b]);
            out->dropped[b] = p->qdrops_total[b];
        }
        out->notices = atomic_load(&p->notices);
        out->blocked = atomic_load(&p->blocked_count);
        out->link_failures = atomic_load(&p->link_failures);
        out->synced = atomic_load(&p->synced_flag);
        out->min_level = p->subs_floor > g_floor ? p->subs_floor : g_floor;
    }
    pthread_mutex_unlock(&g_mu);
}

void
kin__logs_backlog(kin_node *n, size_t *used, size_t *cap)
{
    pthread_mutex_lock(&g_mu);
    struct kin__logs *p = logs_of(n);
    *used = p ? p->active_len : 0;
    *cap = p ? p->cap : 0;
    pthread_mutex_unlock(&g_mu);
}

void
kin__logs_hold(kin_node *n, bool hold)
{
    pthread_mutex_lock(&g_mu);
    struct kin__logs *p = logs_of(n);
    if (p) {
        atomic_store(&p->held, hold);
        if (!hold && p->open)
            uv_async_send(&p->wake);
    }
    pthread_mutex_unlock(&g_mu);
}

const char *
kin__logs_endpoint(const kin_node *n)
{
    struct kin__logs *p = logs_of(n);
    return p ? p->endpoint : "";
}

bool
kin__logs_curve(const kin_node *n)
{
    struct kin__logs *p = logs_of(n);
    return p && p->curve;
}

const char *
kin_logs_backend(const kin_node *n)
{
    struct kin__logs *p = logs_of(n);
    return p ? p->endpoint : NULL;
}

const char *
kin_logs_frontend(const kin_node *n)
{
    struct kin__logs *p = logs_of(n);
    return p && p->fwd ? kin__logfwd_frontend(p->fwd) : NULL;
}
