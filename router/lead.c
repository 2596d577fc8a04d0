/* A caller that reads its own reply. While a thread waits for the reply of
 * a call it sent on the up or down socket, it borrows that socket's watch
 * from the broker (kin__watch_lend: its input stops waking the broker) and
 * receives from the socket itself under smu, as the broker would: its own
 * reply it takes at once; anything else it holds, in order, for the broker,
 * which takes held messages before the socket's. A put into its latch (a
 * reply the broker read after all, a dead message), a cancel and
 * kin__lead_stop wake it through its thread's eventfd. One reader per
 * socket at a time; other callers wait on their latches as before. */
#include <errno.h>
#include <stdlib.h>

#include "core/latch_lead.h"
#include "core/log_internal.h"
#include "core/msg_internal.h"
#include "router/call_impl.h"
#include "router/lead.h"
#include "router/node_impl.h"
#include "router/service.h"

/* Messages one round reads before it looks at its latch again. */
#define LEAD_BUDGET 64

typedef struct kin__held {
    struct kin__held *next;
    int got;
    zmq_msg_t f[3];
} kin__held;

typedef struct lead {
    kin_node *n;
    uint32_t ctx, handle;
    bool svc; /* a service call's: the resolver must let it go */
    /* An idle worker's (kin__lead_serve): it takes a call for the pool
     * off the up socket, not a reply. queue: the pool's. */
    bool serve;
    kin_latch *queue;
    kin_msg *refused; /* a call it took but could not register */
    bool claimed;
    bool clean; /* its last receive found nothing (and processed commands) */
    int k;      /* 0: down, 1: up */
    void *sock;
    kin__watch *w;
    int zfd;
} lead;

static int
calls_out(kin_node *n)
{
    return atomic_load_explicit(&n->calls_out, memory_order_relaxed);
}

/* Whether an idle worker may read the up socket: with no call of its own
 * out (its reply is its caller's to read), and unless what came last was
 * neither a call for the pool nor a message it could pass down to the
 * subtree (inline exports' calls, replies, system messages: the
 * broker's). smu held. */
static bool
serves(kin_node *n)
{
    return !calls_out(n) &&
           !atomic_load_explicit(&n->serve_miss, memory_order_relaxed);
}

/* The header of frames hdr and body into *h, if it decodes and the body
 * is within the size limit. */
static bool
head_ok(kin_node *n, zmq_msg_t *hdr, zmq_msg_t *body, kin_msg *h)
{
    return !kin__msg_header_decode(h, zmq_msg_data(hdr), zmq_msg_size(hdr)) &&
           !kin__msg_check_size(h->handle, h->flags, zmq_msg_data(body),
                                zmq_msg_size(body), n->max_msg);
}

/* The broker's check of what comes from above: nobody there may speak for
 * this context or its subtree. smu held (routes). */
static bool
from_above_ok(kin_node *n, const kin_msg *h)
{
    return h->src != n->id && !kin__u32map_has(&n->routes, h->src);
}

/* Which socket the reply from ctx comes on, and borrows it. smu held. */
static bool
claim(lead *L, int wake_fd)
{
    kin_node *n = L->n;
    if (n->lead_off || (L->serve ? !serves(n) : calls_out(n) > 1))
        return false;
    /* Where the call went, so where its reply comes from. A tcp ROUTER's
     * links are checked by certificate key, which only the broker knows.
     * A worker serves calls from the parent. */
    uint32_t child;
    L->sock =
        kin__direct_socket(n, L->serve ? n->parent_id : L->ctx, true, &child);
    if (!L->sock || (L->sock == n->down && kin__endpoint_is_tcp(n->endpoint)) ||
        (L->serve && L->sock != n->up))
        return false;
    L->k = L->sock == n->up;
    L->w = L->k ? n->w_up : n->w_down;
    if (n->leading[L->k]) {
        /* A caller's reply comes before an idle worker's watch: the
         * worker gives the socket back when it wakes (serves()), and this
         * call's reply comes through the broker. */
        if (!L->serve && L->k && n->serving)
            kin__fd_wake(n->lead_fd[L->k]);
        return false;
    }
    if (kin__watch_lend(L->w))
        return false;
    n->leading[L->k] = true;
    if (L->k)
        n->serving = L->serve;
    n->lead_fd[L->k] = wake_fd;
    L->zfd = kin__watch_fd(L->w);
    L->claimed = true;
    return true;
}

/* Gives the socket back, and has the broker drain it if the reader may
 * have left input unsignalled. smu held: the broker is still there (a
 * destroy waits in kin__lead_stop until leading is cleared). */
static void
give_back(lead *L)
{
    kin_node *n = L->n;
    kin__watch_return(L->w);
    int events = 0;
    size_t size = sizeof events;
    /* A last receive that found nothing processed the socket's commands:
     * whatever came since signalled ZMQ_FD, which now wakes the broker.
     * Otherwise ZMQ_EVENTS tells (as after a direct send). */
    if (!L->clean && zmq_getsockopt(L->sock, ZMQ_EVENTS, &events, &size))
        events = ZMQ_POLLIN;
    if (events & ZMQ_POLLIN)
        kin__drain_later(n, L->k); /* takes the broker's queue lock only */
    n->leading[L->k] = false;
    if (L->k)
        n->serving = false;
    L->claimed = false;
    pthread_cond_broadcast(&n->lead_cv);
}

/* Whether frames f (want of them, received on L's socket) are L's reply
 * and pass the checks the broker's receive makes. smu held (routes). */
static bool
is_reply(lead *L, zmq_msg_t *f, int want)
{
    kin_node *n = L->n;
    zmq_msg_t *hdr = &f[want - 2], *body = &f[want - 1];
    kin_msg h;
    if (!head_ok(n, hdr, body, &h) || h.dst != n->id || h.handle != L->handle)
        return false;
    if (L->k == 1)
        return from_above_ok(n, &h);
    if (zmq_msg_size(&f[0]) != 4)
        return false;
    uint32_t link = kin__link_of(&f[0]);
    /* The reverse-path check: a link speaks for its own subtree only. */
    return kin__behind(n, h.src, link) && kin__behind(n, h.auth, link);
}

/* L's reply decoded from frames f (want of them, which stay as they
 * are), or NULL when it is the broker's after all: out of memory, or a
 * service call's reply its resolver does not let go here (a big one is
 * always the broker's: decoding would take its body frame). smu held, so
 * that the resolver sees it before anything that came after it. */
static kin_msg *
take_reply(lead *L, zmq_msg_t *f, int want)
{
    kin_node *n = L->n;
    zmq_msg_t *hdr = &f[want - 2], *body = &f[want - 1];
    if (L->svc && zmq_msg_size(body) >= KIN__MSG_OUTSIDE_MIN)
        return NULL;
    size_t big;
    kin_msg *m = kin__decode(n, hdr, body, &big);
    if (m && L->svc && !kin__svc_take_own(n, m))
        kin_msg_destroy(&m);
    return m;
}

/* For a serving worker: the call for the pool that frames f (header,
 * body; which stay as they are) carry, decoded, admitted (a service
 * call's) and registered as the broker's dispatch would, or NULL when the
 * message is the broker's: not a small CALL or SVC_RUN to this context
 * that passes the checks of the broker's receive (from above, nobody
 * speaks for this context), an inline export's, one the service refuses,
 * or calls are queued already (they go first). smu held, so the
 * call is registered before anything that came after it is handled (a
 * CANCEL finds it). */
static kin_msg *
take_call(lead *L, zmq_msg_t *f)
{
    kin_node *n = L->n;
    zmq_msg_t *hdr = &f[0], *body = &f[1];
    const void *entry;
    kin_msg h;
    if (!head_ok(n, hdr, body, &h) || h.dst != n->id ||
        (h.handle != KIN_HANDLE_CALL && h.handle != KIN_HANDLE_SVC_RUN) ||
        zmq_msg_size(body) >= KIN__MSG_OUTSIDE_MIN || !from_above_ok(n, &h) ||
        kin_latch_size(L->queue) ||
        !kin__calls_for_worker(zmq_msg_data(body), zmq_msg_size(body), &entry))
        return NULL;
    size_t big;
    kin_msg *m = kin__decode(n, hdr, body, &big);
    if (m && m->handle == KIN_HANDLE_SVC_RUN && !kin__svc_admit_here(n, m)) {
        kin_msg_destroy(&m); /* the broker refuses it */
        return NULL;
    }
    if (m && !kin__calls_accept(n, m, entry)) {
        L->refused = m; /* answered once smu is let go */
        return NULL;
    }
    return m;
}

/* For a serving worker in a context with children: forwards frames f
 * (header, body, from up) down to the child link its destination's route
 * names, as the broker's routing would, when the message is for the
 * subtree, passes the from-above check and the size limit, and down takes
 * direct sends (no far or join ROUTER). smu held. true: sent, the frames
 * are empty; false: untouched, the broker's. */
static bool
relay(lead *L, zmq_msg_t *f)
{
    kin_node *n = L->n;
    kin_msg h;
    uint32_t child;
    return head_ok(n, &f[0], &f[1], &h) && h.dst != n->id &&
           from_above_ok(n, &h) &&
           kin__direct_socket(n, h.dst, false, &child) == n->down &&
           kin__forward_down(n, child, &f[0], &f[1]) == 0;
}

/* Queues frames f for the broker. smu held. false: out of memory, the
 * message is lost (and counted). */
static bool
hold(kin_node *n, int k, zmq_msg_t *f, int got)
{
    kin__held *h = malloc(sizeof *h);
    if (!h) {
        for (int i = 0; i < got; i++)
            zmq_msg_close(&f[i]);
        atomic_fetch_add(&n->stats.dropped, 1);
        return false;
    }
    h->next = NULL;
    h->got = got;
    for (int i = 0; i < got; i++) {
        zmq_msg_init(&h->f[i]);
        zmq_msg_move(&h->f[i], &f[i]);
    }
    if (n->held_tail[k])
        n->held_tail[k]->next = h;
    else
        n->held[k] = h;
    n->held_tail[k] = h;
    return true;
}

int
kin__lead_take(kin_node *n, void *sock, zmq_msg_t *f, int want)
{
    int k = sock == n->down ? 0 : sock == n->up ? 1 : -1;
    kin__held *h = k >= 0 ? n->held[k] : NULL;
    if (!h) {
        int got = kin__recv_frames(sock, f, want);
        if (got && k >= 0)
            atomic_store_explicit(&n->handling[k], true, memory_order_relaxed);
        return got;
    }
    atomic_store_explicit(&n->handling[k], true, memory_order_relaxed);
    if (!(n->held[k] = h->next))
        n->held_tail[k] = NULL;
    int got = h->got;
    for (int i = 0; i < got; i++) {
        zmq_msg_init(&f[i]);
        zmq_msg_move(&f[i], &h->f[i]);
    }
    free(h);
    return got;
}

void
kin__lead_kick(kin_node *n)
{
    pthread_mutex_lock(&n->smu);
    bool reading = n->leading[1];
    pthread_mutex_unlock(&n->smu);
    /* A worker reading up already would find the kick queued and leave
     * the first call to the broker. */
    if (!reading)
        kin__calls_kick(n);
}

void
kin__lead_route(kin_node *n, int k, kin_msg *m)
{
    bool call =
        k >= 0 && m->dst == n->id &&
        (m->handle == KIN_HANDLE_CALL || m->handle == KIN_HANDLE_SVC_RUN);
    if (call) {
        n->handling_call = m;
        n->handling_k = k;
    }
    kin__route(n, m); /* m may be gone */
    n->handling_call = NULL;
}

bool
kin__lead_handling(kin_node *n, const kin_msg *m)
{
    return kin__broker_on_thread(n->broker) && m == n->handling_call;
}

void
kin__lead_queued(void *node)
{
    kin_node *n = node;
    atomic_store_explicit(&n->handling[n->handling_k], false,
                          memory_order_release);
}

void
kin__lead_handled(kin_node *n, void *sock)
{
    int k = sock == n->down ? 0 : sock == n->up ? 1 : -1;
    if (k >= 0)
        atomic_store_explicit(&n->handling[k], false, memory_order_release);
}

/* One round (kin__lead_fn): read what L's socket has, then sleep on it and
 * the thread's eventfd. */
static int
lead_round(void *arg, int wake_fd, uint64_t deadline, kin_msg **out)
{
    lead *L = arg;
    kin_node *n = L->n;
    kin_msg *mine = NULL;
    bool held = false, lost = false, gave_up = false;
    pthread_mutex_lock(&n->smu);
    if (!L->claimed && !claim(L, wake_fd)) {
        pthread_mutex_unlock(&n->smu);
        return -1;
    }
    if (n->lead_off || (L->serve && !serves(n))) {
        give_back(L);
        pthread_mutex_unlock(&n->smu);
        return -1;
    }
    L->clean = false;
    for (int i = 0; i < LEAD_BUDGET && !mine; i++) {
        zmq_msg_t f[3];
        int nf = L->k ? 2 : 3;
        int got = kin__recv_frames(L->sock, f, nf);
        if (got == 0) {
            L->clean = true;
            break;
        }
        if (got < 0) { /* the wrong frame count: the broker's count */
            atomic_fetch_add(&n->stats.malformed, 1);
            continue;
        }
        /* A message goes past the broker only when the broker has handled
         * everything that came before it on the socket (a route it
         * announces, say): otherwise it queues behind those, and the
         * broker puts it into the latch or the pool's queue. */
        bool first =
            !n->held[L->k] &&
            !atomic_load_explicit(&n->handling[L->k], memory_order_acquire);
        bool taken = false, sent = false;
        if (first && L->serve) {
            taken = (mine = take_call(L, f)) || L->refused;
            sent = !taken && relay(L, f);
        } else if (first) {
            taken = is_reply(L, f, nf) && (mine = take_reply(L, f, nf));
        }
        if (taken || sent) {
            for (int j = 0; j < nf; j++)
                zmq_msg_close(&f[j]);
            if (taken)
                break;
            continue;
        }
        if (hold(n, L->k, f, got))
            held = true;
        else
            lost = true;
        if (L->serve) {
            /* Not a call for it: a worker reading an inline export's
             * calls, say, would only stand between them and the broker.
             * It sleeps on the queue for the rest of this wait. */
            atomic_store_explicit(&n->serve_miss, true, memory_order_relaxed);
            give_back(L);
            gave_up = true;
            break;
        }
    }
    pthread_mutex_unlock(&n->smu);
    if (held)
        kin__drain_later(n, L->k);
    if (lost)
        KIN_WARN("context %u: out of memory: a message was lost", n->id);
    if (L->refused) {
        kin__reply_dead(n, L->refused, -ENOMEM, "out of memory for the call");
        L->refused = NULL;
        return 0;
    }
    if (mine) {
        atomic_fetch_add(&n->stats.delivered, 1);
        *out = mine;
        return 1;
    }
    if (gave_up)
        return -1;
    if (L->clean)
        kin__fd_sleep(wake_fd, L->zfd, deadline);
    return 0;
}

/* kin__latch_get_led with L's rounds; the socket given back after. */
static kin_err
led_get(lead *L, kin_latch *l, int timeout_ms, kin_msg **out)
{
    kin_err e = kin__latch_get_led(l, timeout_ms, out, lead_round, L);
    if (L->claimed) {
        pthread_mutex_lock(&L->n->smu);
        give_back(L);
        pthread_mutex_unlock(&L->n->smu);
    }
    return e;
}

kin_err
kin__lead_get(kin_node *n, uint32_t ctx, uint32_t handle, kin_latch *l,
              int timeout_ms, kin_msg **out)
{
    if (kin__broker_on_thread(n->broker) || calls_out(n) > 1)
        return kin_latch_get(l, timeout_ms, out);
    /* A service call's reply comes from the provider it is at. */
    bool svc = ctx == KIN_NO_CTX;
    if (svc)
        ctx = kin__svc_own_provider(n, handle);
    if (ctx == KIN_NO_CTX || ctx == n->id)
        return kin_latch_get(l, timeout_ms, out);
    lead L = {.n = n, .ctx = ctx, .handle = handle, .svc = svc};
    return led_get(&L, l, timeout_ms, out);
}

kin_err
kin__lead_serve(kin_node *n, kin_latch *queue, kin_msg **out)
{
    if (!n->has_parent)
        return kin_latch_get(queue, KIN_FOREVER, out);
    lead L = {.n = n, .serve = true, .queue = queue};
    return led_get(&L, queue, KIN_FOREVER, out);
}

void
kin__lead_stop(kin_node *n)
{
    pthread_mutex_lock(&n->smu);
    n->lead_off = true;
    for (int k = 0; k < 2; k++)
        if (n->leading[k])
            kin__fd_wake(n->lead_fd[k]);
    while (n->leading[0] || n->leading[1])
        pthread_cond_wait(&n->lead_cv, &n->smu);
    pthread_mutex_unlock(&n->smu);
}

void
kin__lead_free(kin_node *n)
{
    for (int k = 0; k < 2; k++) {
        while (n->held[k]) {
            kin__held *h = n->held[k];
            n->held[k] = h->next;
            for (int i = 0; i < h->got; i++)
                zmq_msg_close(&h->f[i]);
            free(h);
        }
        n->held_tail[k] = NULL;
    }
}
