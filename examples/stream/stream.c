/* kin-stream: results streamed back while the work goes on.
 *
 * A call returns one reply at the end. To get progress and partial results
 * before that, the caller makes a receiver and passes its address (its
 * context id and handle) as arguments; the callee kin_send()s as many
 * messages as it likes to that address: a sender.
 *
 * Here the master starts three workers and gives each a range of numbers
 * to scan for primes, chunk by chunk. After each chunk a worker sends a
 * partial result, and at the end an end marker with its total. The master
 * waits on the three streams at once with a kin_select and prints what
 * arrives, from whichever worker, as it arrives; then it checks the totals
 * against each call's own reply and against its own count. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <kin/kin.h>

#define N_WORKERS 3
#define SPAN 300000   /* numbers per worker */
#define CHUNKS 5      /* partial results per worker */
#define CALL_MS 5000  /* calls take milliseconds; generous for slow CI */
#define WAIT_MS 20000 /* deadline for the whole stream */

/* What a stream message says: [job, kind, chunk, primes]. */
enum { MSG_PART = 0, MSG_END = 1 };

static bool
is_prime(uint64_t n)
{
    if (n < 2)
        return false;
    for (uint64_t d = 2; d * d <= n; d++)
        if (n % d == 0)
            return false;
    return true;
}

static uint64_t
count_primes(uint64_t lo, uint64_t hi)
{
    uint64_t count = 0;
    for (uint64_t n = lo; n < hi; n++)
        count += is_prime(n);
    return count;
}

/* --- the workers' side ---------------------------------------------------- */

/* primes.scan(job, lo, hi, chunks, to_ctx, to_handle) -> total. Streams
 * [job, MSG_PART, i, primes in chunk i] after each chunk and
 * [job, MSG_END, chunks, total] at the end to (to_ctx, to_handle). */
static kin_err
scan_fn(kin_call *c, void *arg)
{
    uint32_t job, chunks, to_ctx, to_handle;
    uint64_t lo, hi;
    kin_err e = kin_call_args(c, "uUUuuu", &job, &lo, &hi, &chunks, &to_ctx,
                              &to_handle);
    if (e)
        return e;
    if (chunks == 0 || hi < lo)
        return kin_call_fail(c, -EINVAL, "bad range or chunk count");
    kin_node *node = kin_call_node(c);
    uint64_t total = 0, step = (hi - lo + chunks - 1) / chunks;
    for (uint32_t i = 0; i < chunks; i++) {
        /* A caller that gave up cancels us: stop streaming then. */
        if (kin_task_cancelled())
            return KIN_ECANCELLED;
        uint64_t a = lo + i * step, b = a + step < hi ? a + step : hi;
        uint64_t n = count_primes(a, b);
        total += n;
        /* kin_send does not wait: the message is queued for the broker
         * thread, and messages on one route arrive in order. */
        if ((e = kin_send(node, to_ctx, to_handle, "uiuU", job, MSG_PART, i,
                          n)))
            return e;
    }
    if ((e = kin_send(node, to_ctx, to_handle, "uiuU", job, MSG_END, chunks,
                      total)))
        return e;
    return kin_call_return(c, "U", total);
}

/* --- the master's side ---------------------------------------------------- */

static int failed;

static void
fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kin-stream: FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failed = 1;
}

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct job {
    uint32_t id;
    uint64_t lo, hi;
    kin_child *worker;
    kin_receiver *stream; /* where the worker sends partial results */
    kin_receiver *call;   /* the call's own reply */
    uint64_t sum;         /* of the partial results so far */
    uint64_t total;       /* from the end marker */
    uint32_t parts;
    bool ended;
} job;

/* Starts job j in its worker: a receiver for its stream, then the call
 * that is told the receiver's address. */
static kin_err
start(kin_node *node, job *j, kin_select *sel)
{
    uint32_t ctx = kin_child_id(j->worker);
    /* KIN_POLICY_CHILD: only an immediate child (speaking for itself) may
     * send to this handle. Bound to ctx: if that worker dies, the stream
     * yields KIN_EPEERGONE instead of silence. */
    kin_err e = kin_receiver_new(&j->stream, node, 0, KIN_POLICY_CHILD, ctx);
    if (!e)
        e = kin_select_add(sel, kin_receiver_latch(j->stream), j);
    if (!e)
        e = kin_call_async(node, ctx, "primes.scan", &j->call, "uUUuuu", j->id,
                           j->lo, j->hi, CHUNKS, kin_node_id(node),
                           kin_receiver_handle(j->stream));
    return e;
}

/* Takes the next stream message from any worker and prints it. Returns
 * false when there is nothing more to wait for. */
static bool
take(kin_select *sel, double deadline)
{
    int left = (int)(deadline - now_ms());
    kin_msg *m = NULL;
    void *tag = NULL;
    kin_err e = kin_select_get(sel, left > 0 ? left : 0, &m, &tag);
    if (e) {
        fail("waiting for results: %s", kin_strerror(e));
        return false;
    }
    job *j = tag;
    /* A message taken from a receiver's latch may be a "dead" one: the
     * reason the stream broke (e.g. KIN_EPEERGONE). */
    if ((e = kin_msg_check_dead(&m))) {
        fail("job %u: stream broke: %s", j->id, kin_strerror(e));
        return false;
    }
    uint32_t id, chunk;
    int kind;
    uint64_t primes;
    e = kin_msg_unpack(m, "uiuU", &id, &kind, &chunk, &primes);
    kin_msg_destroy(&m);
    if (e || id != j->id) {
        fail("job %u: bad stream message: %s", j->id, kin_strerror(e));
        return false;
    }
    const char *who = kin_child_name(j->worker);
    if (kind == MSG_PART) {
        j->parts++;
        j->sum += primes;
        printf("  %-8s job %u: chunk %u/%d: %5llu primes (%3u%%)\n", who, j->id,
               chunk + 1, CHUNKS, (unsigned long long)primes,
               j->parts * 100 / CHUNKS);
    } else {
        j->ended = true;
        j->total = primes;
        printf("  %-8s job %u: end of stream, %llu primes in [%llu, %llu)\n",
               who, j->id, (unsigned long long)primes,
               (unsigned long long)j->lo, (unsigned long long)j->hi);
        /* Nothing more will come from this job. */
        kin_select_remove(sel, kin_receiver_latch(j->stream));
    }
    return true;
}

/* Checks one finished job: the streamed parts, the end marker, the call's
 * reply and the master's own count must all agree. */
static void
check(job *j)
{
    kin_msg *reply = NULL;
    uint64_t returned = 0;
    kin_err e = kin_call_wait(j->call, CALL_MS, &reply);
    if (!e)
        e = kin_msg_unpack(reply, "U", &returned);
    kin_msg_destroy(&reply);
    uint64_t expected = count_primes(j->lo, j->hi);
    if (e)
        fail("job %u: the call failed: %s", j->id, kin_strerror(e));
    else if (!j->ended || j->parts != CHUNKS || j->sum != expected ||
             j->total != expected || returned != expected)
        fail("job %u: parts %u, sum %llu, end %llu, reply %llu, want %llu",
             j->id, j->parts, (unsigned long long)j->sum,
             (unsigned long long)j->total, (unsigned long long)returned,
             (unsigned long long)expected);
}

int
main(void)
{
    kin_export("primes.scan", scan_fn, NULL, KIN_POLICY_PARENT);

    kin_node *node;
    kin_err e = kin_init(&node, &(kin_node_opts){.name = "master"});
    if (e) { /* only the master gets here; workers serve in kin_init */
        fprintf(stderr, "kin-stream: kin_init: %s\n", kin_strerror(e));
        return 1;
    }

    job jobs[N_WORKERS] = {0};
    kin_select *sel = NULL;
    e = kin_select_new(&sel, false); /* persistent: many messages per latch */
    for (int i = 0; !e && i < N_WORKERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i + 1);
        jobs[i] = (job){.id = (uint32_t)i + 1,
                        .lo = (uint64_t)i * SPAN,
                        .hi = (uint64_t)(i + 1) * SPAN};
        e = kin_spawn(node, &(kin_spawn_opts){.name = name}, &jobs[i].worker);
    }
    if (e) {
        fail("starting: %s", kin_strerror(e));
    } else {
        printf("Scanning [0, %d) for primes in %d workers, %d chunks each; "
               "results stream in as they come:\n",
               N_WORKERS * SPAN, N_WORKERS, CHUNKS);
        for (int i = 0; !e && i < N_WORKERS; i++)
            if ((e = start(node, &jobs[i], sel)))
                fail("starting job %u: %s", jobs[i].id, kin_strerror(e));
        double deadline = now_ms() + WAIT_MS;
        while (!e && kin_select_count(sel) > 0 && take(sel, deadline))
            ;
        uint64_t all = 0;
        for (int i = 0; !failed && i < N_WORKERS; i++) {
            check(&jobs[i]);
            all += jobs[i].total;
        }
        if (!failed)
            printf("\n%llu primes below %d; every stream matched its call's "
                   "reply and a local count\n",
                   (unsigned long long)all, N_WORKERS * SPAN);
    }

    /* The select only refers to the latches; destroy it first, then the
     * receivers (before the node), then stop and reap the workers. */
    kin_select_destroy(&sel);
    for (int i = 0; i < N_WORKERS; i++) {
        if (jobs[i].call && !jobs[i].ended)
            kin_call_cancel(jobs[i].call); /* stop a worker still busy */
        kin_receiver_destroy(&jobs[i].call);
        kin_receiver_destroy(&jobs[i].stream);
        kin_child_destroy(&jobs[i].worker);
    }
    kin_node_destroy(&node);
    if (failed)
        return 1;
    printf("\nstream example: OK\n");
    return 0;
}
