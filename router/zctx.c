/* The process-wide ZMQ context. A forked child must not use its parent's
 * context (its I/O threads did not survive the fork), so the child side of
 * fork forgets it and makes its own on first use. */
#include "router/zctx.h"

#include <pthread.h>

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
