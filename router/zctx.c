/* The process-wide ZMQ context. A forked child must not use its parent's
 * context (its I/O threads did not survive the fork), so the child side of
 * fork forgets it and makes its own on first use. */
#include "router/zctx.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <zmq.h>

#include "core/sync.h"

static void *ctx;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void
forget_in_child(void)
{
    ctx = NULL;
    pthread_mutex_init(&mu, NULL);
}

void *
kin__zctx(void)
{
    kin__forget_in_child(forget_in_child);
    pthread_mutex_lock(&mu);
    if (!ctx) {
        ctx = zmq_ctx_new();
        /* Blocky sockets would make zmq_ctx_term wait forever; we never
         * terminate it, but sockets still get an explicit linger. */
        if (ctx)
            zmq_ctx_set(ctx, ZMQ_BLOCKY, 0);
    }
    void *c = ctx;
    pthread_mutex_unlock(&mu);
    return c;
}

static pthread_cond_t ended_cond = PTHREAD_COND_INITIALIZER;
static bool ended;

static void *
end_main(void *c)
{
    zmq_ctx_term(c);
    pthread_mutex_lock(&mu);
    ended = true;
    pthread_cond_broadcast(&ended_cond);
    pthread_mutex_unlock(&mu);
    return NULL;
}

bool
kin__zctx_end(int timeout_ms)
{
    pthread_mutex_lock(&mu);
    void *c = ctx;
    pthread_mutex_unlock(&mu);
    if (!c)
        return true;
    /* zmq_ctx_term waits without a bound while a socket is open: on a
     * thread of its own, waited for here with one. */
    pthread_t t;
    if (pthread_create(&t, NULL, end_main, c))
        return false;
    struct timespec by;
    kin__deadline(&by, CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&mu);
    while (!ended && pthread_cond_timedwait(&ended_cond, &mu, &by) != ETIMEDOUT)
        ;
    bool done = ended;
    pthread_mutex_unlock(&mu);
    /* Joined when it ended: a thread still on its way out while the
     * process exits trips LeakSanitizer's exit-time scan. */
    if (done)
        pthread_join(t, NULL);
    else
        pthread_detach(t);
    return done;
}
