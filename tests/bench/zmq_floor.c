/* Raw libzmq + pthread floors for kin-bench: the hand-off round trips and
 * the fork of a warm zygote (see zmq_floor.h). No kin code here. */
#include "tests/bench/zmq_floor.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "tests/bench/bench_stats.h"
#include "tests/bench/zrouter.h"

#define RID_CAP ZROUTER_RID_MAX
#define PEER_WORKERS_MAX 16 /* a hand-off peer's worker threads */

/* --- shared pieces -------------------------------------------------------- */

static void
wake(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void
unwake(int fd)
{
    uint64_t n;
    while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
        ;
}

/* After a send from a thread other than the owner (under the socket's
 * lock): libzmq may have processed the socket's commands in that send and
 * so read the ZMQ_FD signal of input the owner has not seen; ZMQ_EVENTS
 * says whether input waits. True: the owner must be woken. */
static bool
input_waiting(void *sock)
{
    int events = 0;
    size_t sz = sizeof events;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &events, &sz))
        return true; /* cannot tell: let the owner look */
    return events & ZMQ_POLLIN;
}

/* Blocks until the socket's ZMQ_FD or the eventfd is readable. */
static void
owner_wait(int zfd, int wake_fd)
{
    struct pollfd p[2] = {{.fd = zfd, .events = POLLIN},
                          {.fd = wake_fd, .events = POLLIN}};
    if (poll(p, 2, -1) > 0 && (p[1].revents & POLLIN))
        unwake(wake_fd);
}

/* --- the caller's side, one at a time or pipelined ------------------------ */

/* A ROUTER bound in a directory of its own, the hand-off peer process behind
 * it, the socket's lock and the thread that owns the socket (woken through
 * wake_fd), and the lock and condition variable of the replies' hand-off to
 * the caller. */
typedef struct zside {
    zrouter r;
    pid_t pid;
    uint8_t rid[RID_CAP];
    size_t rid_len;
    int timeout_ms;
    pthread_mutex_t smu; /* the socket: one thread at a time */
    bool draining;       /* under smu: the owner receives again anyway */
    int wake_fd;         /* the owner re-drains the socket */
    atomic_bool stop;
    pthread_t owner;
    bool owner_started;
    bool self_recv; /* no owner: the caller receives from the socket */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
} zside;

static void
side_init(zside *s, int timeout_ms)
{
    s->timeout_ms = timeout_ms;
    s->wake_fd = -1;
    pthread_mutex_init(&s->smu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* Binds, starts `self --zmq-handoff-peer EP handoffs [workers]`, waits for
 * its hello and starts owner(arg). -1 with errno and *what on failure. */
static int
side_start(zside *s, const char *self, const char *handoffs,
           const char *workers, void *(*owner)(void *), void *arg,
           const char **what)
{
    char h;
    *what = "bind";
    if (zrouter_open(&s->r, s->timeout_ms))
        return -1;
    *what = "eventfd";
    if ((s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        return -1;
    *what = "hand-off peer start";
    if ((s->pid = zrouter_start_self(self, "--zmq-handoff-peer", s->r.ep,
                                     handoffs, workers, -1)) < 0 ||
        zrouter_recv(&s->r, s->rid, &s->rid_len, &h, 1) != 1)
        return -1;
    *what = "owner thread";
    if (!owner) {
        s->self_recv = true; /* the caller receives itself */
        return 0;
    }
    if ((errno = pthread_create(&s->owner, NULL, owner, arg)))
        return -1;
    s->owner_started = true;
    return 0;
}

/* The caller sends len bytes of buf itself, under the socket's lock, and
 * wakes the owner if its send took the socket's ZMQ_FD signal. */
static int
side_send(zside *s, const uint8_t *buf, size_t len)
{
    pthread_mutex_lock(&s->smu);
    int rc = zrouter_send(&s->r, s->rid, s->rid_len, buf, len);
    int err = errno;
    bool kick = !s->self_recv && !s->draining && input_waiting(s->r.sock);
    pthread_mutex_unlock(&s->smu);
    if (kick)
        wake(s->wake_fd);
    errno = err;
    return rc;
}

/* The caller's deadline for one reply. */
static struct timespec
side_deadline(const zside *s)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += s->timeout_ms / 1000;
    t.tv_nsec += (long)(s->timeout_ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Asks the peer to stop, stops the owner, reaps the peer, unbinds. */
static void
side_fini(zside *s)
{
    bool asked = false;
    if (s->pid > 0 && s->rid_len) {
        pthread_mutex_lock(&s->smu);
        asked = zrouter_send(&s->r, s->rid, s->rid_len, "", 0) == 0;
        pthread_mutex_unlock(&s->smu);
    }
    if (s->owner_started) {
        atomic_store(&s->stop, true);
        wake(s->wake_fd);
        pthread_join(s->owner, NULL);
    }
    if (s->pid > 0)
        bench_reap(s->pid, asked ? s->timeout_ms : 0);
    zrouter_close(&s->r);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->smu);
}

/* The socket's ZMQ_FD, which the owner polls. */
static int
side_fd(zside *s)
{
    int zfd = -1;
    size_t sz = sizeof zfd;
    zmq_getsockopt(s->r.sock, ZMQ_FD, &zfd, &sz);
    return zfd;
}

/* --- the hand-off round trip: the caller's side --------------------------- */

struct zfloor_rtt {
    zside s;
    /* The reply, under s.mu. */
    uint8_t *dst;
    size_t cap, got;
    bool have;
};

/* The caller's side of the socket: receives every reply and wakes the
 * caller waiting for it. */
static void *
rtt_owner(void *arg)
{
    zfloor_rtt *f = arg;
    zside *s = &f->s;
    int zfd = side_fd(s);
    uint8_t rid[RID_CAP];
    while (!atomic_load(&s->stop)) {
        /* Receive until EAGAIN: that receive processed the socket's
         * commands, so its ZMQ_FD signals the next input. */
        for (;;) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            pthread_mutex_lock(&s->smu);
            bool got =
                zmq_recv(s->r.sock, rid, sizeof rid, ZMQ_DONTWAIT) >= 0 &&
                zmq_msg_recv(&m, s->r.sock, ZMQ_DONTWAIT) >= 0;
            pthread_mutex_unlock(&s->smu);
            if (got) {
                pthread_mutex_lock(&s->mu);
                if (f->dst && !f->have) {
                    f->got = zmq_msg_size(&m);
                    memcpy(f->dst, zmq_msg_data(&m),
                           f->got < f->cap ? f->got : f->cap);
                    f->have = true;
                    pthread_cond_signal(&s->cv);
                }
                pthread_mutex_unlock(&s->mu);
            }
            zmq_msg_close(&m);
            if (!got)
                break;
        }
        owner_wait(zfd, s->wake_fd);
    }
    return NULL;
}

static zfloor_rtt *
rtt_open(const char *self, int handoffs, bool self_recv, int timeout_ms)
{
    zfloor_rtt *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    side_init(&f->s, timeout_ms);
    char n[8];
    snprintf(n, sizeof n, "%d", handoffs);
    const char *what;
    if (!side_start(&f->s, self, n, NULL, self_recv ? NULL : rtt_owner, f,
                    &what))
        return f;
    int err = errno;
    fprintf(stderr, "kin-bench: zmq hand-off floor: %s: %s\n", what,
            strerror(err));
    zfloor_rtt_close(&f);
    errno = err;
    return NULL;
}

zfloor_rtt *
zfloor_rtt_open(const char *self, int handoffs, int timeout_ms)
{
    return rtt_open(self, handoffs, false, timeout_ms);
}

zfloor_rtt *
zfloor_rtt_open_self_recv(const char *self, int timeout_ms)
{
    return rtt_open(self, 2, true, timeout_ms);
}

int
zfloor_rtt_ping(zfloor_rtt *f, uint8_t *buf, size_t len)
{
    zside *s = &f->s;
    if (s->self_recv) {
        uint8_t rid[RID_CAP];
        size_t rid_len;
        if (zrouter_send(&s->r, s->rid, s->rid_len, buf, len))
            return -1;
        int got = zrouter_recv(&s->r, rid, &rid_len, buf, len);
        if (got < 0)
            return -1;
        if ((size_t)got != len) {
            errno = EBADMSG;
            return -1;
        }
        return 0;
    }
    pthread_mutex_lock(&s->mu);
    f->dst = buf;
    f->cap = len;
    f->have = false;
    pthread_mutex_unlock(&s->mu);
    int rc = side_send(s, buf, len), err = errno;
    struct timespec until = side_deadline(s);
    pthread_mutex_lock(&s->mu);
    while (!rc && !f->have)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) {
            rc = -1;
            err = ETIMEDOUT;
        }
    if (!rc && f->got != len) {
        rc = -1;
        err = EBADMSG;
    }
    f->dst = NULL;
    pthread_mutex_unlock(&s->mu);
    errno = err;
    return rc;
}

void
zfloor_rtt_close(zfloor_rtt **fp)
{
    zfloor_rtt *f = fp ? *fp : NULL;
    if (!f)
        return;
    side_fini(&f->s);
    free(f);
    *fp = NULL;
}

/* --- the pipelined hand-off: the caller's side ---------------------------- */

#define PIPE_BATCH 32 /* replies the owner reads per lock of the socket */

struct zfloor_pipe {
    zside s;
    int window;
    /* The replies' hand-off, under s.mu: the owner moves each into the slot
     * its sequence number names and wakes the caller when the slot it waits
     * for is filled (once per batch read). */
    int want; /* the slot the caller sleeps on; -1: not sleeping */
    zmq_msg_t *reply;
    bool *done;
};

/* A request's or reply's sequence number: its first 4 bytes. */
static uint32_t
seq_of(const void *body)
{
    uint32_t seq;
    memcpy(&seq, body, sizeof seq);
    return seq;
}

/* The caller's side of the socket: reads the replies in batches and hands
 * every batch over under one lock with at most one wake. */
static void *
pipe_owner(void *arg)
{
    zfloor_pipe *f = arg;
    zside *s = &f->s;
    int zfd = side_fd(s);
    uint8_t rid[RID_CAP];
    zmq_msg_t batch[PIPE_BATCH];
    for (int i = 0; i < PIPE_BATCH; i++)
        zmq_msg_init(&batch[i]);
    while (!atomic_load(&s->stop)) {
        int n = 0;
        bool empty = false;
        pthread_mutex_lock(&s->smu);
        while (n < PIPE_BATCH) {
            if (zmq_recv(s->r.sock, rid, sizeof rid, ZMQ_DONTWAIT) < 0) {
                empty = true;
                break;
            }
            if (zmq_msg_recv(&batch[n], s->r.sock, ZMQ_DONTWAIT) >= 0)
                n++;
        }
        /* Until the EAGAIN it receives again: no sender need wake it. */
        s->draining = !empty;
        pthread_mutex_unlock(&s->smu);
        if (n) {
            bool signal = false;
            pthread_mutex_lock(&s->mu);
            for (int i = 0; i < n; i++) {
                if (zmq_msg_size(&batch[i]) < sizeof(uint32_t))
                    continue; /* the caller times out on its slot */
                int slot = (int)(seq_of(zmq_msg_data(&batch[i])) %
                                 (uint32_t)f->window);
                if (f->done[slot])
                    continue; /* a duplicate: dropped */
                zmq_msg_move(&f->reply[slot], &batch[i]);
                f->done[slot] = true;
                signal |= slot == f->want;
            }
            pthread_mutex_unlock(&s->mu);
            if (signal)
                pthread_cond_signal(&s->cv);
            for (int i = 0; i < n; i++) {
                zmq_msg_close(&batch[i]);
                zmq_msg_init(&batch[i]);
            }
        }
        if (empty)
            owner_wait(zfd, s->wake_fd);
    }
    for (int i = 0; i < PIPE_BATCH; i++)
        zmq_msg_close(&batch[i]);
    return NULL;
}

static zfloor_pipe *
pipe_open(const char *self, int handoffs, int workers, bool self_recv,
          int window, int timeout_ms)
{
    if (window < 1 || (handoffs != 1 && handoffs != 2) || workers < 1 ||
        workers > PEER_WORKERS_MAX) {
        errno = EINVAL;
        return NULL;
    }
    zfloor_pipe *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    side_init(&f->s, timeout_ms);
    f->window = window;
    f->want = -1;
    char n[8], w[8];
    snprintf(n, sizeof n, "%d", handoffs);
    snprintf(w, sizeof w, "%d", workers);
    const char *what = "allocation";
    if ((f->reply = calloc((size_t)window, sizeof *f->reply)) &&
        (f->done = calloc((size_t)window, sizeof *f->done))) {
        for (int i = 0; i < window; i++)
            zmq_msg_init(&f->reply[i]);
        if (!side_start(&f->s, self, n, w, self_recv ? NULL : pipe_owner, f,
                        &what))
            return f;
    }
    int err = errno;
    fprintf(stderr, "kin-bench: zmq pipelined hand-off floor: %s: %s\n", what,
            strerror(err));
    zfloor_pipe_close(&f);
    errno = err;
    return NULL;
}

zfloor_pipe *
zfloor_pipe_open(const char *self, int handoffs, int workers, int window,
                 int timeout_ms)
{
    return pipe_open(self, handoffs, workers, false, window, timeout_ms);
}

zfloor_pipe *
zfloor_pipe_open_self_recv(const char *self, int workers, int window,
                           int timeout_ms)
{
    return pipe_open(self, 2, workers, true, window, timeout_ms);
}

/* Without an owner: receives replies (each into the slot its number
 * names) until slot's is there. */
static int
pipe_recv_until(zfloor_pipe *f, int slot)
{
    zside *s = &f->s;
    while (!f->done[slot]) {
        uint8_t rid[RID_CAP];
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_recv(s->r.sock, rid, sizeof rid, 0) < 0 ||
            zmq_msg_recv(&m, s->r.sock, 0) < 0) {
            int err = errno == EAGAIN ? ETIMEDOUT : errno;
            zmq_msg_close(&m);
            errno = err;
            return -1;
        }
        if (zmq_msg_size(&m) < sizeof(uint32_t)) {
            zmq_msg_close(&m);
            errno = EBADMSG;
            return -1;
        }
        int at = (int)(seq_of(zmq_msg_data(&m)) % (uint32_t)f->window);
        zmq_msg_move(&f->reply[at], &m);
        zmq_msg_close(&m);
        f->done[at] = true;
    }
    return 0;
}

/* Waits (up to the timeout) for request seq's reply and checks it. */
static int
pipe_wait(zfloor_pipe *f, uint32_t seq, size_t len)
{
    zside *s = &f->s;
    int slot = (int)(seq % (uint32_t)f->window), rc = 0, err = 0;
    if (s->self_recv && pipe_recv_until(f, slot))
        return -1;
    struct timespec until = side_deadline(s);
    pthread_mutex_lock(&s->mu);
    f->want = slot;
    while (!f->done[slot])
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) {
            rc = -1;
            err = ETIMEDOUT;
            break;
        }
    f->want = -1;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (f->done[slot]) {
        zmq_msg_move(&m, &f->reply[slot]);
        f->done[slot] = false;
    }
    pthread_mutex_unlock(&s->mu);
    if (!rc && (zmq_msg_size(&m) != len || seq_of(zmq_msg_data(&m)) != seq)) {
        rc = -1;
        err = EBADMSG;
    }
    zmq_msg_close(&m);
    errno = err;
    return rc;
}

/* Request seq: its number in the payload's first 4 bytes, then sent. */
static int
pipe_send(zfloor_pipe *f, uint8_t *buf, size_t len, uint32_t seq)
{
    memcpy(buf, &seq, sizeof seq);
    return side_send(&f->s, buf, len);
}

int
zfloor_pipe_run(zfloor_pipe *f, const uint8_t *payload, size_t len, int total,
                uint64_t *ns)
{
    uint8_t buf[256];
    if (len < sizeof(uint32_t) || len > sizeof buf || total < 1) {
        errno = EINVAL;
        return -1;
    }
    memcpy(buf, payload, len);
    int window = f->window < total ? f->window : total;
    uint32_t issued = 0, done = 0;
    uint64_t t0 = now_ns();
    for (; issued < (uint32_t)window; issued++)
        if (pipe_send(f, buf, len, issued))
            return -1;
    /* The oldest first, as kin-bench's calls_per_s waits for them. */
    while (done < (uint32_t)total) {
        if (pipe_wait(f, done, len))
            return -1;
        done++;
        if (issued < (uint32_t)total && pipe_send(f, buf, len, issued++))
            return -1;
    }
    *ns += now_ns() - t0;
    return 0;
}

void
zfloor_pipe_close(zfloor_pipe **fp)
{
    zfloor_pipe *f = fp ? *fp : NULL;
    if (!f)
        return;
    side_fini(&f->s);
    for (int i = 0; f->reply && i < f->window; i++)
        zmq_msg_close(&f->reply[i]);
    free(f->reply);
    free(f->done);
    free(f);
    *fp = NULL;
}

/* --- the hand-off round trip: the peer ------------------------------------ */

typedef struct job {
    zmq_msg_t m;
    struct job *next;
} job;

typedef struct hpeer {
    void *sock;
    pthread_mutex_t smu; /* the socket: one thread at a time */
    /* Under smu: the owner is between its first receive and the EAGAIN
     * that ends its drain, so it receives again after any send; a sender
     * need not wake it. */
    bool draining;
    int wake_fd;
    /* The worker's queue. */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    job *head, *tail;
    bool stop;
} hpeer;

/* The worker: takes a request off the queue and sends the reply itself,
 * under the socket's lock. */
static void *
hpeer_worker(void *arg)
{
    hpeer *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->qmu);
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->qcv, &p->qmu);
        job *j = p->head;
        if (j && !(p->head = j->next))
            p->tail = NULL;
        pthread_mutex_unlock(&p->qmu);
        if (!j)
            return NULL;
        pthread_mutex_lock(&p->smu);
        if (zmq_msg_send(&j->m, p->sock, 0) < 0)
            zmq_msg_close(&j->m);
        bool kick = !p->draining && input_waiting(p->sock);
        pthread_mutex_unlock(&p->smu);
        if (kick)
            wake(p->wake_fd);
        free(j);
    }
}

static void
hpeer_push(hpeer *p, job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&p->qmu);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_mutex_unlock(&p->qmu);
    pthread_cond_signal(&p->qcv);
}

/* A DEALER that says hello and echoes every message until an empty one;
 * the main thread owns the socket; with handoffs == 2 one of `workers`
 * threads (taking requests off one queue) replies. */
int
zfloor_handoff_peer_main(const char *endpoint, int handoffs, int workers)
{
    if (workers < 1 || workers > PEER_WORKERS_MAX)
        return 2;
    hpeer p = {.qmu = PTHREAD_MUTEX_INITIALIZER,
               .smu = PTHREAD_MUTEX_INITIALIZER,
               .qcv = PTHREAD_COND_INITIALIZER};
    void *ctx = zmq_ctx_new();
    p.sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 1000, rc = 1, zfd = -1;
    size_t sz = sizeof zfd;
    zmq_setsockopt(p.sock, ZMQ_LINGER, &linger, sizeof linger);
    pthread_t worker[PEER_WORKERS_MAX];
    int started = 0;
    p.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p.wake_fd < 0 || zmq_getsockopt(p.sock, ZMQ_FD, &zfd, &sz) ||
        zmq_connect(p.sock, endpoint) || zmq_send(p.sock, "H", 1, 0) != 1)
        goto out;
    for (; handoffs == 2 && started < workers; started++)
        if (pthread_create(&worker[started], NULL, hpeer_worker, &p))
            goto out;
    for (bool done = false; !done;) {
        for (;;) {
            job *j = malloc(sizeof *j);
            if (!j)
                goto out;
            zmq_msg_init(&j->m);
            pthread_mutex_lock(&p.smu);
            bool got = zmq_msg_recv(&j->m, p.sock, ZMQ_DONTWAIT) >= 0;
            p.draining = got;
            bool stop = got && zmq_msg_size(&j->m) == 0;
            bool inl = got && !stop && handoffs != 2;
            /* Inline: the owner answers (its own send cannot take an
             * edge it needs: it receives until EAGAIN after it). */
            if (inl && zmq_msg_send(&j->m, p.sock, 0) < 0)
                zmq_msg_close(&j->m);
            pthread_mutex_unlock(&p.smu);
            if (!got || stop || inl) {
                zmq_msg_close(&j->m);
                free(j);
                if (stop) {
                    rc = 0;
                    done = true;
                }
                if (!got || stop)
                    break;
                continue;
            }
            hpeer_push(&p, j);
        }
        if (!done)
            owner_wait(zfd, p.wake_fd);
    }
out:
    if (started) {
        pthread_mutex_lock(&p.qmu);
        p.stop = true;
        pthread_mutex_unlock(&p.qmu);
        pthread_cond_broadcast(&p.qcv);
        while (started > 0)
            pthread_join(worker[--started], NULL);
    }
    for (job *j = p.head, *next; j; j = next) {
        next = j->next;
        zmq_msg_close(&j->m);
        free(j);
    }
    if (p.wake_fd >= 0)
        close(p.wake_fd);
    zmq_close(p.sock);
    zmq_ctx_term(ctx);
    return rc;
}

/* --- the fork of a warm zygote -------------------------------------------- */

/* The forked child: context, DEALER, hello (its pid), echoes until an
 * empty one. */
static int
fork_child(const char *endpoint)
{
    int32_t pid = (int32_t)getpid();
    return zrouter_echo_peer(endpoint, &pid, sizeof pid);
}

static int
read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    size_t off = 0;
    while (off < len) {
        if (timeout_ms >= 0) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int n = poll(&p, 1, timeout_ms);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                errno = n ? errno : ETIMEDOUT;
                return -1;
            }
        }
        ssize_t n = read(fd, (char *)buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errno = n ? errno : EPIPE;
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

/* Single-threaded; nothing done but what main() does before it. A request
 * on fd 0 is a count k: fork k children, wait for them all to exit, answer
 * with how many exited 0. EOF ends it. */
int
zfloor_zygote_main(const char *endpoint)
{
    pid_t self = getpid();
    int32_t k;
    while (read_full(0, &k, sizeof k, -1) == 0 && k > 0 && k <= 100000) {
        pid_t *pids = calloc((size_t)k, sizeof *pids);
        if (!pids)
            return 1;
        for (int32_t i = 0; i < k; i++) {
            if ((pids[i] = fork()) == 0) {
                close(0);
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != self)
                    _exit(127);
                _exit(fork_child(endpoint));
            }
        }
        int32_t ok = 0;
        for (int32_t i = 0; i < k; i++) {
            int status = 0;
            if (pids[i] <= 0)
                continue;
            while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
                ;
            ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
        }
        free(pids);
        if (write(0, &ok, sizeof ok) != sizeof ok)
            return 1;
    }
    return 0;
}

/* k children from the zygote at once: each says hello (the first echoes
 * once when ping), then all are stopped and the zygote counts their clean
 * exits. *ns: from the request to that count. */
static int
zygote_round(zrouter *r, int sv, int32_t k, bool ping, int timeout_ms,
             uint64_t *ns)
{
    uint8_t(*rids)[RID_CAP] = calloc((size_t)k, sizeof *rids);
    size_t *lens = calloc((size_t)k, sizeof *lens);
    int rc = rids && lens ? 0 : -1;
    int32_t said = 0, ok = -1;
    uint64_t t0 = now_ns();
    if (!rc && write(sv, &k, sizeof k) != sizeof k)
        rc = -1;
    for (; !rc && said < k; said++) {
        int32_t pid;
        if (zrouter_recv(r, rids[said], &lens[said], &pid, sizeof pid) != 4)
            rc = -1;
    }
    if (!rc && ping) {
        uint8_t buf[64], back[64], rid[RID_CAP];
        size_t rid_len;
        memset(buf, 'z', sizeof buf);
        if (zrouter_send(r, rids[0], lens[0], buf, sizeof buf) ||
            zrouter_recv(r, rid, &rid_len, back, sizeof back) != sizeof back ||
            memcmp(buf, back, sizeof buf))
            rc = -1;
    }
    /* Those that said hello are asked to stop; the rest die with the
     * zygote if this failed. */
    for (int32_t i = 0; i < said; i++)
        if (lens[i])
            zrouter_send(r, rids[i], lens[i], "", 0);
    if (!rc && (read_full(sv, &ok, sizeof ok, timeout_ms) || ok != k))
        rc = -1;
    *ns = now_ns() - t0;
    free(lens);
    free(rids);
    return rc;
}

int
zfloor_fork(const char *self, int reps, int fanout, int timeout_ms,
            double *first_ms, double *child_cpu_us, double *fanout_ms,
            double *fanout_cpu_ms)
{
    zrouter r = {0};
    int sv[2] = {-1, -1};
    pid_t zygote = -1;
    uint64_t *ns = calloc((size_t)reps, sizeof *ns);
    uint64_t *cpu = calloc((size_t)reps, sizeof *cpu);
    const char *what = "bind";
    int rc = -1;
    if (!ns || !cpu || zrouter_open(&r, timeout_ms))
        goto out;
    what = "zygote start";
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) ||
        (zygote = zrouter_start_self(self, "--zmq-zygote", r.ep, NULL, NULL,
                                     sv[1])) < 0)
        goto out;
    close(sv[1]);
    sv[1] = -1;
    /* The first fork warms the zygote (and this side's ROUTER) up. */
    uint64_t t;
    what = "first fork";
    if (zygote_round(&r, sv[0], 1, true, timeout_ms, &t))
        goto out;
    what = "forked child's first echo";
    for (int i = 0; i < reps; i++) {
        /* The figure stops at the echo: that child's stop is not in it. */
        uint64_t t0 = now_ns();
        int32_t one = 1, ok = -1, pid = 0;
        uint8_t rid[RID_CAP], buf[64], back[64];
        size_t rid_len, l2;
        memset(buf, 'z', sizeof buf);
        if (write(sv[0], &one, sizeof one) != sizeof one ||
            zrouter_recv(&r, rid, &rid_len, &pid, sizeof pid) != 4 ||
            zrouter_send(&r, rid, rid_len, buf, sizeof buf) ||
            zrouter_recv(&r, (uint8_t[RID_CAP]){0}, &l2, back, sizeof back) !=
                sizeof back ||
            memcmp(buf, back, sizeof buf))
            goto out;
        ns[i] = now_ns() - t0;
        /* The child, idle now: the CPU of all its threads so far. */
        cpu[i] = (uint64_t)(proc_cpu_us(pid) * 1e3);
        if (zrouter_send(&r, rid, rid_len, "", 0) ||
            read_full(sv[0], &ok, sizeof ok, timeout_ms) || ok != 1)
            goto out;
    }
    what = "fan-out";
    /* The zygote reaps its children: their CPU shows in its cutime. */
    double cpu0 = self_tree_cpu_ms() + proc_tree_cpu_ms(zygote);
    if (zygote_round(&r, sv[0], fanout, false, timeout_ms, &t))
        goto out;
    *fanout_cpu_ms = self_tree_cpu_ms() + proc_tree_cpu_ms(zygote) - cpu0;
    *first_ms = quantile(ns, (size_t)reps, 0.5) / 1e6;
    *child_cpu_us = quantile(cpu, (size_t)reps, 0.5) / 1e3;
    *fanout_ms = (double)t / 1e6;
    rc = 0;
out:;
    int err = errno;
    if (rc)
        fprintf(stderr, "kin-bench: zmq fork floor: %s: %s\n", what,
                strerror(err));
    if (sv[0] >= 0)
        close(sv[0]); /* EOF: the zygote ends */
    if (sv[1] >= 0)
        close(sv[1]);
    if (zygote > 0)
        bench_reap(zygote, rc ? 0 : timeout_ms);
    zrouter_close(&r);
    free(cpu);
    free(ns);
    errno = err;
    return rc;
}
