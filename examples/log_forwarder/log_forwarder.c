/* kin-log-forwarder: a tree that logs to a standalone forwarder.
 *
 * A master normally runs a log forwarder inside itself. Here the forwarder
 * is a process of its own, `kin log-forwarder`, as when several trees (or
 * hosts) share one: publishers connect to its backend, subscribers to its
 * frontend. This program
 *   1. makes the tree's CURVE key with `kin keygen`: tcp endpoints admit
 *      only holders of the key;
 *   2. starts `kin log-forwarder --backend tcp://127.0.0.1:*
 *      --frontend tcp://127.0.0.1:*` with the key in KIN_CURVE_KEY, and
 *      reads the ports it bound;
 *   3. starts the master with kin_node_opts.log_endpoint = the backend and
 *      curve_key = the key, and two workers, whose contexts publish there
 *      too (they get the key from their parent);
 *   4. subscribes at the frontend (INFO and up, with the key), waits until
 *      records from
 *      both workers come through, has each worker log a small batch with
 *      fields, and prints the records with kin_logrec_format;
 *   5. stops everything and reaps the forwarder.
 * Subscriptions travel from the subscriber through the forwarder to each
 * publisher, and only then are records sent: the PUB/SUB "slow joiner".
 * So the program waits for the records themselves, with a deadline, rather
 * than sleeping and hoping. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kin/kin.h>
#include <kin/logs.h>

#ifndef KIN_CLI
#define KIN_CLI "kin" /* the build passes the path of the kin command */
#endif

#define N_WORKERS 2
#define BATCH 3       /* records each worker logs at INFO */
#define CALL_MS 5000  /* calls take microseconds; generous for slow CI */
#define WAIT_MS 10000 /* deadline for anything we wait for */

/* --- the workers' side ---------------------------------------------------- */

/* log.probe(): one record, so the master can tell that records from this
 * context reach it. */
static kin_err
probe_fn(kin_call *c, void *arg)
{
    KIN_LOGI("probe");
    return KIN_OK;
}

/* log.batch(n): logs n INFO records with typed fields, a DEBUG record per
 * item that nobody subscribed to (so it is never even formatted), and a
 * WARNING at the end. */
static kin_err
batch_fn(kin_call *c, void *arg)
{
    int n;
    kin_err e = kin_call_args(c, "i", &n);
    if (e)
        return e;
    for (int i = 1; i <= n; i++) {
        KIN_LOGD("item details", KIN_F("item", i));
        /* KIN_F picks the field type from the C type; a comparison is an
         * int in C, so a bool field needs KIN_FBOOL. */
        KIN_LOGI("item done", KIN_F("item", i), KIN_F("ms", 1.5 * i),
                 KIN_FBOOL("cached", i % 2 == 0), KIN_F("path", "/data/items"));
    }
    KIN_LOGW("batch done", KIN_F("items", n));
    return KIN_OK;
}

/* --- the master's side ---------------------------------------------------- */

static int failed;

static void
fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kin-log-forwarder: FAILED: ");
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

typedef struct forwarder {
    pid_t pid;
    int out; /* its stdout */
    char backend[256], frontend[256];
    char key[128]; /* the tree's CURVE key, "PUBLIC:SECRET" */
} forwarder;

/* A fresh key pair from `kin keygen`. */
static int
make_key(forwarder *f)
{
    FILE *p = popen(KIN_CLI " keygen", "r");
    if (!p)
        return -1;
    bool ok = fgets(f->key, sizeof f->key, p) != NULL;
    if (pclose(p) != 0 || !ok)
        return -1;
    f->key[strcspn(f->key, "\n")] = 0;
    return 0;
}

/* Reads the forwarder's first two lines, "backend EP" and "frontend EP":
 * with port 0 ("*") it picks free ports and says which. */
static int
read_endpoints(forwarder *f)
{
    char buf[1024];
    size_t len = 0;
    double deadline = now_ms() + WAIT_MS;
    for (;;) {
        buf[len] = 0;
        char *nl = strchr(buf, '\n');
        if (nl && strchr(nl + 1, '\n') &&
            sscanf(buf, "backend %255s frontend %255s", f->backend,
                   f->frontend) == 2)
            return 0;
        int left = (int)(deadline - now_ms());
        if (left <= 0 || len + 1 >= sizeof buf)
            return -1;
        struct pollfd p = {.fd = f->out, .events = POLLIN};
        if (poll(&p, 1, left) < 0 && errno != EINTR)
            return -1;
        ssize_t n = read(f->out, buf + len, sizeof buf - 1 - len);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return -1; /* it exited: its stderr says why */
        if (n > 0)
            len += (size_t)n;
    }
}

/* Starts `kin log-forwarder` on free local ports. */
static int
forwarder_start(forwarder *f)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t parent = getpid();
    f->pid = fork();
    if (f->pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (f->pid == 0) {
        /* If this program dies without stopping it, the forwarder gets
         * SIGTERM rather than lingering (unless we died before prctl). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        /* The key travels in the environment, never in argv. */
        setenv("KIN_CURVE_KEY", f->key, 1);
        execl(KIN_CLI, "kin", "log-forwarder", "--backend", "tcp://127.0.0.1:*",
              "--frontend", "tcp://127.0.0.1:*", (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", KIN_CLI, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    f->out = fds[0];
    return read_endpoints(f);
}

/* Stops the forwarder with SIGTERM (it exits cleanly on it), SIGKILL if it
 * has not exited within the deadline, and reaps it. Returns its wait
 * status. */
static int
forwarder_stop(forwarder *f)
{
    int status = 0;
    if (f->pid <= 0)
        return 0;
    kill(f->pid, SIGTERM);
    double deadline = now_ms() + WAIT_MS;
    pid_t r;
    while ((r = waitpid(f->pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL); /* poll */
    if (r == 0) {
        fail("the forwarder ignored SIGTERM; killing it");
        kill(f->pid, SIGKILL);
        waitpid(f->pid, &status, 0);
    }
    close(f->out);
    f->pid = 0;
    return status;
}

/* Which worker a record is about, or -1. */
static int
worker_of(const kin_logrec *r, kin_child **workers)
{
    for (int i = 0; i < N_WORKERS; i++)
        if (r->ctx == kin_child_id(workers[i]))
            return i;
    return -1;
}

static void
print_record(const kin_logrec *r)
{
    char line[1024];
    kin_logrec_format(r, 0, line, sizeof line); /* cut if longer */
    printf("  %s\n", line);
}

/* The slow joiner. Asks every worker whose records have not come through
 * yet to log a probe, then reads what arrives; until the subscription has
 * reached a worker's publisher, its probes are simply not sent. */
static void
wait_until_records_flow(kin_node *node, kin_child **workers, kin_logsub *sub)
{
    bool seen[N_WORKERS] = {false};
    int probes[N_WORKERS] = {0}, flowing = 0;
    double deadline = now_ms() + WAIT_MS;
    while (flowing < N_WORKERS && now_ms() < deadline) {
        for (int i = 0; i < N_WORKERS; i++) {
            kin_msg *reply = NULL;
            if (!seen[i] &&
                kin_call_sync(node, kin_child_id(workers[i]), "log.probe",
                              CALL_MS, &reply, NULL) == KIN_OK)
                probes[i]++;
            kin_msg_destroy(&reply);
        }
        const kin_logrec *r;
        while (kin_logsub_next(sub, 50, &r) == KIN_OK) {
            int w = worker_of(r, workers);
            if (w >= 0 && !seen[w] && r->kind == KIN_LOGREC_LOG &&
                !strcmp(r->msg, "probe")) {
                seen[w] = true;
                flowing++;
            }
        }
    }
    for (int i = 0; i < N_WORKERS; i++)
        if (seen[i])
            printf("  records from %s come through (after %d probe%s)\n",
                   kin_child_name(workers[i]), probes[i],
                   probes[i] == 1 ? "" : "s");
        else
            fail("no record from %s came through", kin_child_name(workers[i]));
}

/* Has each worker log a batch and prints every record, until all arrived. */
static void
log_batches(kin_node *node, kin_child **workers, kin_logsub *sub)
{
    for (int i = 0; i < N_WORKERS; i++) {
        kin_msg *reply = NULL;
        kin_err e = kin_call_sync(node, kin_child_id(workers[i]), "log.batch",
                                  CALL_MS, &reply, "i", BATCH);
        kin_msg_destroy(&reply);
        if (e)
            fail("log.batch in %s: %s", kin_child_name(workers[i]),
                 kin_strerror(e));
    }
    /* Each worker: BATCH "item done" records, then "batch done". */
    int items[N_WORKERS] = {0}, done = 0;
    double deadline = now_ms() + WAIT_MS;
    while (done < N_WORKERS && now_ms() < deadline) {
        const kin_logrec *r;
        kin_err e = kin_logsub_next(sub, 100, &r);
        if (e == KIN_ETIMEOUT)
            continue;
        if (e) {
            fail("reading records: %s", kin_strerror(e));
            return;
        }
        int w = worker_of(r, workers);
        if (r->kind == KIN_LOGREC_LOG && !strcmp(r->msg, "probe"))
            continue;    /* a late probe from the previous step */
        print_record(r); /* records, and losses if any ("!! lost ...") */
        if (r->kind != KIN_LOGREC_LOG || w < 0)
            continue;
        if (r->level < KIN_LOG_INFO)
            fail("a record below INFO was delivered");
        else if (!strcmp(r->msg, "item done"))
            items[w]++;
        else if (!strcmp(r->msg, "batch done"))
            done++;
    }
    for (int i = 0; i < N_WORKERS; i++)
        if (items[i] != BATCH)
            fail("%s: %d of %d records", kin_child_name(workers[i]), items[i],
                 BATCH);
    if (done != N_WORKERS)
        fail("only %d of %d batches ended", done, N_WORKERS);
}

int
main(void)
{
    kin_export("log.probe", probe_fn, NULL, KIN_POLICY_PARENT);
    kin_export("log.batch", batch_fn, NULL, KIN_POLICY_PARENT);

    /* Workers run this main too: only the master starts the forwarder.
     * (A worker learns the backend from its parent, in kin_init.) */
    forwarder fwd = {0};
    if (!kin_started_as_child()) {
        if (make_key(&fwd) || forwarder_start(&fwd)) {
            fprintf(stderr,
                    "kin-log-forwarder: cannot start %s "
                    "log-forwarder\n",
                    KIN_CLI);
            forwarder_stop(&fwd);
            return 1;
        }
        printf("Started `kin log-forwarder` (pid %d):\n  backend  %s\n"
               "  frontend %s\n",
               (int)fwd.pid, fwd.backend, fwd.frontend);
    }

    kin_node *node = NULL;
    kin_node_opts o = {.name = "master",
                       .log_endpoint = fwd.backend,
                       .curve_key = kin_started_as_child() ? NULL : fwd.key};
    kin_err e = kin_init(&node, &o);
    if (e) {
        fprintf(stderr, "kin-log-forwarder: kin_init: %s\n", kin_strerror(e));
        forwarder_stop(&fwd);
        return 1;
    }

    kin_child *workers[N_WORKERS] = {0};
    kin_logsub *sub = NULL;
    for (int i = 0; !e && i < N_WORKERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i + 1);
        e = kin_spawn(node, &(kin_spawn_opts){.name = name}, &workers[i]);
    }
    if (e) {
        fail("spawning the workers: %s", kin_strerror(e));
    } else {
        printf("\nThe master and %d workers publish to the backend; "
               "subscribing at the frontend (INFO and up):\n",
               N_WORKERS);
        kin_logsub_opts so = {.endpoint = fwd.frontend,
                              .min_level = KIN_LOG_INFO,
                              .curve_key = fwd.key};
        if ((e = kin_logsub_new(&sub, &so)))
            fail("subscribing at %s: %s", fwd.frontend, kin_strerror(e));
    }
    if (sub) {
        wait_until_records_flow(node, workers, sub);
        if (!failed) {
            printf("\nEach worker logs %d items (DEBUG details are not "
                   "wanted, so never sent):\n",
                   BATCH);
            log_batches(node, workers, sub);
        }
        kin_logsub_stats st;
        kin_logsub_stats_get(sub, &st);
        printf("\nsubscriber: %llu records, %llu lost\n",
               (unsigned long long)st.records, (unsigned long long)st.lost);
    }

    kin_logsub_destroy(&sub);
    for (int i = 0; i < N_WORKERS; i++)
        kin_child_destroy(&workers[i]);
    kin_node_destroy(&node);
    /* Last, once no publisher is left: stop and reap the forwarder. */
    int status = forwarder_stop(&fwd);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        printf("forwarder stopped (exit status 0)\n");
    else
        fail("the forwarder ended with wait status %#x", status);
    if (failed)
        return 1;
    printf("\nlog_forwarder example: OK\n");
    return 0;
}
