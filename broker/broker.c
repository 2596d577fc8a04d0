/* The broker thread: a libuv loop with a locked defer queue woken through
 * an eventfd, ZMQ sockets watched through their ZMQ_FD, and a stop that
 * gives pending work a grace period before it forces. */
#include "broker/broker.h"
#include "core/sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq.h>

#include "core/log_internal.h"
#include "core/task.h"

/* Input drained from one socket per loop turn before others get a go. */
#define DRAIN_BUDGET 512

typedef struct job {
    kin__defer_fn fn;
    void *arg;
    void *data;
    struct job *next;
} job;

struct kin__watch {
    kin__broker *b;
    void *sock;
    kin__readable_fn fn;
    void *arg;
    uv_poll_t poll;
    /* A lendable watch polls an epoll set holding the socket's ZMQ_FD
     * (set, zfd); lending takes the ZMQ_FD out of the set. -1: not
     * lendable. */
    int set, zfd;
    bool starved; /* budget ran out with input left */
    bool dirty;   /* used since its last drain: its ZMQ_FD edge may be gone */
    kin__watch *next;
};

struct kin__broker {
    uv_loop_t loop;
    /* A plain eventfd rather than uv_async: uv_async_send's handshake makes
     * the woken loop spin until the sender has finished. */
    int wake_fd;
    uv_poll_t wake;
    uv_prepare_t recheck; /* re-drains sockets before the loop blocks */
    uv_idle_t spin;       /* keeps the loop from blocking while starved */
    uv_timer_t grace;
    pthread_t thread;
    pthread_mutex_t mu; /* guards the job queue and stopping */
    job *head, *tail;
    atomic_bool stopping;
    bool forced;
    int grace_ms;
    kin__stop_fn on_stop;
    void *on_stop_arg;
    kin__watch *watches;
};

static void
drain_socket(kin__watch *w)
{
    w->starved = false;
    w->dirty = false;
    /* Receive until EAGAIN: a receive that finds nothing has processed the
     * socket's commands (re-arming ZMQ_FD's edge) as a ZMQ_EVENTS query
     * would, without costing one more query per message. */
    for (int n = 0; n < DRAIN_BUDGET; n++) {
        if (!w->fn(w->sock, w->arg)) {
            /* That EAGAIN came after every send this drain made on the
             * socket itself (a reply going back where its request came
             * from): those sends cannot have taken an edge it still needs.
             * Only a later use (draining another socket) dirties it again. */
            w->dirty = false;
            return;
        }
    }
    w->starved = true;
}

static void
on_poll(uv_poll_t *p, int status, int events)
{
    drain_socket(p->data);
}

static bool
run_jobs(kin__broker *b)
{
    pthread_mutex_lock(&b->mu);
    job *j = b->head;
    b->head = b->tail = NULL;
    pthread_mutex_unlock(&b->mu);
    bool any = j != NULL;
    while (j) {
        job *next = j->next;
        j->fn(j->arg, j->data);
        free(j);
        j = next;
    }
    return any;
}

static void
maybe_finish(kin__broker *b)
{
    if (!atomic_load(&b->stopping))
        return;
    pthread_mutex_lock(&b->mu);
    bool idle = !b->head;
    pthread_mutex_unlock(&b->mu);
    if (idle || b->forced)
        uv_stop(&b->loop);
}

static void
on_wake(uv_poll_t *p, int status, int events)
{
    kin__broker *b = p->data;
    /* Reset the eventfd before taking the queue: a job pushed after the
     * take finds the queue empty and writes it again. */
    uint64_t n;
    if (read(b->wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
        KIN_WARN("broker: eventfd read: %s", strerror(errno));
    run_jobs(b);
    maybe_finish(b);
}

static void
on_spin(uv_idle_t *i)
{
    /* Being active keeps the loop from blocking in its poll while a socket
     * still has input; on_recheck does the draining. */
    kin__broker *b = i->data;
    bool pending = false;
    for (kin__watch *w = b->watches; w; w = w->next)
        pending |= w->starved || w->dirty;
    if (!pending)
        uv_idle_stop(i);
}

static void
on_recheck(uv_prepare_t *p)
{
    kin__broker *b = p->data;
    /* Only sockets used since their last drain can hold input whose
     * ZMQ_FD edge was consumed; the others wake the loop on their own. */
    for (kin__watch *w = b->watches; w; w = w->next)
        if (w->dirty || w->starved)
            drain_socket(w);
    /* Draining one socket routes into others and so may consume the edge
     * of a socket this pass has left behind (a child's reply sent up while
     * the parent's next request waits in the up socket): the loop must not
     * block while any is dirty or starved. The spin makes its next poll
     * return at once, and this runs again before it. */
    bool pending = false;
    for (kin__watch *w = b->watches; w; w = w->next)
        pending |= w->starved || w->dirty;
    if (pending)
        uv_idle_start(&b->spin, on_spin);
    maybe_finish(b);
}

static void
on_grace(uv_timer_t *t)
{
    kin__broker *b = t->data;
    KIN_WARN("broker: grace period of %d ms over, forcing stop", b->grace_ms);
    b->forced = true;
    uv_stop(&b->loop);
}

static void
begin_stop(void *arg, void *unused)
{
    kin__broker *b = arg;
    if (b->on_stop)
        b->on_stop(b->on_stop_arg);
    uv_timer_start(&b->grace, on_grace, (uint64_t)b->grace_ms, 0);
}

static void
free_watch(uv_handle_t *h)
{
    kin__watch *w = h->data;
    if (w->set >= 0)
        close(w->set);
    free(w);
}

/* Handles other than watches belong to their creators (timers, child
 * process polls), who must not touch them once the broker is gone. */
static void
close_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void *
thread_main(void *arg)
{
    kin__broker *b = arg;
    kin__thread_name("kin-broker");
    kin__task_set_self(NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    /* Work deferred before the stop still runs (it is non-blocking broker
     * work and may own memory); then every handle is closed, including
     * watches the owner left behind. */
    while (run_jobs(b))
        ;
    for (kin__watch *w = b->watches; w; w = w->next)
        uv_close((uv_handle_t *)&w->poll, free_watch);
    b->watches = NULL;
    uv_walk(&b->loop, close_handle, NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    while (run_jobs(b))
        ;
    uv_loop_close(&b->loop);
    return NULL;
}

kin_err
kin__broker_new(kin__broker **out, kin__stop_fn on_stop, void *arg)
{
    kin__broker *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    int rc = uv_loop_init(&b->loop);
    if (rc) {
        free(b);
        return rc;
    }
    kin__mutex_init_fast(&b->mu);
    b->on_stop = on_stop;
    b->on_stop_arg = arg;
    b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->wake_fd < 0 || uv_poll_init(&b->loop, &b->wake, b->wake_fd)) {
        int err = b->wake_fd < 0 ? -errno : -EINVAL;
        if (b->wake_fd >= 0)
            close(b->wake_fd);
        uv_loop_close(&b->loop);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return err;
    }
    b->wake.data = b;
    uv_poll_start(&b->wake, UV_READABLE, on_wake);
    uv_prepare_init(&b->loop, &b->recheck);
    b->recheck.data = b;
    uv_prepare_start(&b->recheck, on_recheck);
    uv_idle_init(&b->loop, &b->spin);
    b->spin.data = b;
    uv_timer_init(&b->loop, &b->grace);
    b->grace.data = b;
    rc = pthread_create(&b->thread, NULL, thread_main, b);
    if (rc) {
        uv_walk(&b->loop, close_handle, NULL);
        uv_run(&b->loop, UV_RUN_DEFAULT);
        uv_loop_close(&b->loop);
        close(b->wake_fd);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return -rc;
    }
    *out = b;
    return KIN_OK;
}

static kin_err
push(kin__broker *b, kin__defer_fn fn, void *arg, void *data, bool stop)
{
    job *j = malloc(sizeof *j);
    if (!j)
        return -ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->data = data;
    j->next = NULL;
    pthread_mutex_lock(&b->mu);
    if (atomic_load(&b->stopping)) {
        pthread_mutex_unlock(&b->mu);
        free(j);
        return KIN_ESHUTDOWN;
    }
    if (stop)
        atomic_store(&b->stopping, true);
    bool was_empty = !b->head;
    if (b->tail)
        b->tail->next = j;
    else
        b->head = j;
    b->tail = j;
    pthread_mutex_unlock(&b->mu);
    /* A wake is already due when the queue was not empty: skipping the
     * write saves a syscall per message under load. */
    if (was_empty) {
        uint64_t one = 1;
        while (write(b->wake_fd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
    return KIN_OK;
}

kin_err
kin__broker_defer(kin__broker *b, kin__defer_fn fn, void *arg, void *data)
{
    return push(b, fn, arg, data, false);
}

void
kin__broker_destroy(kin__broker **bp, int grace_ms)
{
    if (!bp || !*bp)
        return;
    kin__broker *b = *bp;
    b->grace_ms = grace_ms < 0 ? 0 : grace_ms;
    push(b, begin_stop, b, NULL, true);
    pthread_join(b->thread, NULL);
    close(b->wake_fd);
    pthread_mutex_destroy(&b->mu);
    free(b);
    *bp = NULL;
}

bool
kin__broker_on_thread(const kin__broker *b)
{
    return pthread_equal(pthread_self(), b->thread);
}

uv_loop_t *
kin__broker_loop(kin__broker *b)
{
    return &b->loop;
}

bool
kin__broker_stopping(const kin__broker *b)
{
    return atomic_load(&b->stopping);
}

static kin_err
watch(kin__broker *b, void *sock, kin__readable_fn fn, void *arg, bool lendable,
      kin__watch **out)
{
    int fd;
    size_t sz = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &sz))
        return -errno;
    kin__watch *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->b = b;
    w->sock = sock;
    w->fn = fn;
    w->arg = arg;
    w->set = -1;
    w->zfd = fd;
    if (lendable) {
        struct epoll_event ev = {.events = EPOLLIN};
        if ((w->set = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            epoll_ctl(w->set, EPOLL_CTL_ADD, fd, &ev)) {
            kin_err e = -errno;
            if (w->set >= 0)
                close(w->set);
            free(w);
            return e;
        }
    }
    int rc = uv_poll_init(&b->loop, &w->poll, lendable ? w->set : fd);
    if (rc) {
        if (w->set >= 0)
            close(w->set);
        free(w);
        return rc;
    }
    w->poll.data = w;
    w->dirty = true;
    uv_poll_start(&w->poll, UV_READABLE, on_poll);
    w->next = b->watches;
    b->watches = w;
    *out = w;
    return KIN_OK;
}

kin_err
kin__broker_watch(kin__broker *b, void *sock, kin__readable_fn fn, void *arg,
                  kin__watch **out)
{
    return watch(b, sock, fn, arg, false, out);
}

kin_err
kin__broker_watch_lendable(kin__broker *b, void *sock, kin__readable_fn fn,
                           void *arg, kin__watch **out)
{
    return watch(b, sock, fn, arg, true, out);
}

kin_err
kin__watch_lend(kin__watch *w)
{
    if (!w || w->set < 0)
        return -EINVAL;
    /* Modified rather than deleted and added again: a third of the cost
     * (no allocation, no check for epoll loops). */
    struct epoll_event none = {.events = 0};
    return epoll_ctl(w->set, EPOLL_CTL_MOD, w->zfd, &none) ? -errno : KIN_OK;
}

void
kin__watch_return(kin__watch *w)
{
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(w->set, EPOLL_CTL_MOD, w->zfd, &ev))
        KIN_ERROR("broker: a lent socket's watch could not be returned: %s",
                  strerror(errno));
}

int
kin__watch_fd(const kin__watch *w)
{
    return w->zfd;
}

void
kin__broker_touch(kin__watch *w)
{
    if (w)
        w->dirty = true;
}

void
kin__broker_unwatch(kin__watch **wp)
{
    if (!wp || !*wp)
        return;
    kin__watch *w = *wp;
    for (kin__watch **p = &w->b->watches; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&w->poll, free_watch);
    *wp = NULL;
}

void
kin__zmq_set_int(void *sock, int opt, int v)
{
    zmq_setsockopt(sock, opt, &v, sizeof v);
}
