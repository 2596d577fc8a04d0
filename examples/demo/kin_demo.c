/* kin-demo: a small multi-process service, end to end. The master starts a
 * supervised tree of workers (one of them, the hub, supervises workers of
 * its own), fans prime-counting jobs out to them, gets results streamed
 * back, shows the workers' logs and a progress bar, makes one job hang in
 * its worker on purpose and kills that worker mid-job (the service layer
 * runs the job again on another worker; the supervisor restarts the killed
 * one), then prints the tree, the tasks and a summary. Every process but
 * the master is supervised, so killing any of them heals. The same
 * executable is every worker. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kin/kin.h>
#include <kin/logs.h>
#include <kin/monitor.h>
#include <kin/supervisor.h>

#define N_WORKERS 3   /* worker-1, worker-2 and hub (with two leaves) */
#define CALL_MS 20000 /* generous: jobs take milliseconds */

static bool color;

static const char *
c(const char *code)
{
    return color ? code : "";
}
#define BOLD c("\033[1m")
#define DIM c("\033[2m")
#define GREEN c("\033[32m")
#define YELLOW c("\033[33m")
#define CYAN c("\033[36m")
#define RESET c("\033[0m")

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* --- the workers' side -----------------------------------------------------
 */

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

static double
thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Counts the primes in [lo, hi) and adds the CPU time this thread spent on
 * it to *cpu_ms: CPU time, not elapsed time, so that a worker waiting for
 * a core does not count as working. */
static uint64_t
count_primes(uint64_t lo, uint64_t hi, double *cpu_ms)
{
    double t0 = thread_cpu_ms();
    uint64_t count = 0;
    for (uint64_t n = lo; n < hi; n++)
        count += is_prime(n);
    *cpu_ms += thread_cpu_ms() - t0;
    return count;
}

/* The hub supervises its two leaves (set once by demo.grow). */
static const char *leaf_names[2] = {"leaf-1", "leaf-2"};
static pthread_mutex_t hub_mu = PTHREAD_MUTEX_INITIALIZER;
static kin_supervisor *hub_sup;

static kin_supervisor *
leaves_supervisor(void)
{
    pthread_mutex_lock(&hub_mu);
    kin_supervisor *s = hub_sup;
    pthread_mutex_unlock(&hub_mu);
    return s;
}

/* demo.count(lo, hi) -> [primes in [lo, hi), CPU ms spent counting]. The
 * hub splits the range between its leaves; a half whose leaf is down (being
 * restarted) it counts itself. */
static kin_err
count_fn(kin_call *call, void *arg)
{
    uint64_t lo, hi;
    kin_err e = kin_call_args(call, "UU", &lo, &hi);
    if (e)
        return e;
    double t0 = now_ms(), cpu_ms = 0;
    uint64_t total = 0;
    kin_supervisor *sup = leaves_supervisor();
    if (sup) {
        /* Fan out further down the tree and gather both halves. */
        uint64_t mid = lo + (hi - lo) / 2;
        kin_receiver *r[2] = {NULL, NULL};
        uint32_t leaf[2] = {0, 0};
        uint64_t part[2][2] = {{lo, mid}, {mid, hi}};
        for (int i = 0; i < 2; i++) {
            kin_child_info info;
            if (kin_supervisor_child(sup, leaf_names[i], &info) == KIN_OK &&
                info.state == KIN_CHILD_RUNNING &&
                kin_call_async(kin_call_node(call), info.id, "demo.count",
                               &r[i], "UU", part[i][0], part[i][1]) == KIN_OK)
                leaf[i] = info.id;
        }
        kin_err failed = KIN_OK;
        for (int i = 0; i < 2; i++) {
            if (!r[i]) {
                total += count_primes(part[i][0], part[i][1], &cpu_ms);
                continue;
            }
            kin_msg *m = NULL;
            uint64_t v = 0;
            double leaf_cpu = 0;
            kin_err w = kin_call_wait(r[i], CALL_MS, &m);
            if (!w)
                w = kin_msg_unpack(m, "Ud", &v, &leaf_cpu);
            kin_msg_destroy(&m);
            kin_receiver_destroy(&r[i]);
            if (w && !failed)
                failed = kin_call_fail(call, w, "leaf %u: %s", leaf[i],
                                       kin_strerror(w));
            total += v;
            cpu_ms += leaf_cpu;
        }
        if (failed)
            return failed;
    } else {
        total = count_primes(lo, hi, &cpu_ms);
    }
    KIN_LOGD("counted", KIN_F("lo", lo), KIN_F("hi", hi),
             KIN_F("primes", total), KIN_F("ms", now_ms() - t0));
    return kin_call_return(call, "Ud", total, cpu_ms);
}

/* Whether this worker, running a job sent with hang set, is the one that
 * hangs: the master (the caller) says yes once, to the first worker that
 * asks (not the hub), so the job's retry on another worker runs. */
static bool
told_to_hang(kin_call *call)
{
    kin_node *n = kin_call_node(call);
    kin_msg *m = NULL;
    bool yes = false;
    if (kin_call_sync(n, kin_call_caller(call), "demo.hang", CALL_MS, &m, "s",
                      kin_node_name(n)) == KIN_OK &&
        kin_msg_unpack(m, "b", &yes) != KIN_OK)
        yes = false;
    kin_msg_destroy(&m);
    return yes;
}

/* demo.job(id, lo, hi, to_ctx, to_handle, hang): counts and streams the
 * result [id, primes, ms, cpu_ms] back to the master's receiver (a
 * sender). With hang set, the worker may be the one told to hang in the
 * job until the master kills it. */
static kin_err
job_fn(kin_call *call, void *arg)
{
    uint32_t id, to_ctx, to_handle;
    uint64_t lo, hi;
    bool hang;
    kin_err e = kin_call_args(call, "uUUuub", &id, &lo, &hi, &to_ctx,
                              &to_handle, &hang);
    if (e)
        return e;
    /* Until SIGKILL: `kin ps` would show this task waiting on a sleep. If
     * the master never kills us, the call's deadline cancels the sleep. */
    if (hang && told_to_hang(call))
        return kin_task_sleep(KIN_FOREVER);
    double t0 = now_ms();
    kin_msg *m = NULL;
    uint64_t primes = 0;
    double cpu_ms = 0;
    /* Through our own demo.count, so a hub fans out to its leaves. */
    e = kin_call_sync(kin_call_node(call), kin_node_id(kin_call_node(call)),
                      "demo.count", CALL_MS, &m, "UU", lo, hi);
    if (!e)
        e = kin_msg_unpack(m, "Ud", &primes, &cpu_ms);
    kin_msg_destroy(&m);
    if (e)
        return e;
    double ms = now_ms() - t0;
    /* Every job is logged; the demo shows INFO and up, so a sample of them
     * reaches the terminal (kin logs -l debug shows them all). */
    if (id % 8 == 0)
        KIN_LOGI("job done", KIN_F("job", id), KIN_F("primes", primes),
                 KIN_F("ms", (int)ms));
    else
        KIN_LOGD("job done", KIN_F("job", id), KIN_F("primes", primes),
                 KIN_F("ms", (int)ms));
    return kin_send(kin_call_node(call), to_ctx, to_handle, "uUdds", id, primes,
                    ms, cpu_ms, kin_node_name(kin_call_node(call)));
}

static void
on_leaf_event(kin_supervisor *s, const kin_sup_event *ev, void *arg)
{
    if (ev->kind == KIN_SUP_EV_STARTED)
        KIN_LOGI(ev->restarts ? "leaf restarted" : "leaf started",
                 KIN_F("leaf", ev->child), KIN_F("context", ev->id),
                 KIN_F("pid", (int)ev->pid));
    else if (ev->kind == KIN_SUP_EV_EXITED)
        KIN_LOGW("leaf exited", KIN_F("leaf", ev->child),
                 KIN_F("context", ev->id),
                 KIN_F("signal",
                       WIFSIGNALED(ev->status) ? WTERMSIG(ev->status) : 0));
}

/* demo.grow(): the hub starts its two leaves under a supervisor of its own,
 * once. The hub's node stops them when the hub stops; they die with it
 * when it is killed, and the new hub grows new ones. */
static kin_err
grow_fn(kin_call *call, void *arg)
{
    kin_err e = KIN_OK;
    pthread_mutex_lock(&hub_mu);
    if (!hub_sup) {
        kin_supervisor *s = NULL;
        kin_supervisor_opts so = {.strategy = KIN_ONE_FOR_ONE,
                                  .intensity = 5,
                                  .period_ms = 10000,
                                  .on_event = on_leaf_event};
        e = kin_supervisor_new(&s, kin_call_node(call), &so);
        for (int i = 0; !e && i < 2; i++) {
            kin_child_spec spec = {.name = leaf_names[i],
                                   .restart = KIN_RESTART_PERMANENT};
            e = kin_supervisor_add(s, &spec);
        }
        if (!e)
            e = kin_supervisor_start(s);
        if (e)
            kin_supervisor_destroy(&s);
        hub_sup = s;
    }
    pthread_mutex_unlock(&hub_mu);
    return e ? kin_call_fail(call, e, "starting the leaves: %s",
                             kin_strerror(e))
             : KIN_OK;
}

/* --- the master's side -----------------------------------------------------
 */

/* The worker that hangs on purpose, by name, once one was told to (empty
 * before). Set by demo.hang on a worker thread of the master, read by the
 * master's main loop. */
static pthread_mutex_t hang_mu = PTHREAD_MUTEX_INITIALIZER;
static char hang_who[64];

/* demo.hang(name) -> bool: yes to the first worker asking but the hub
 * (killing it would take its leaves along), no after. */
static kin_err
hang_fn(kin_call *call, void *arg)
{
    const char *name;
    size_t len;
    kin_err e = kin_call_args(call, "S", &name, &len);
    if (e)
        return e;
    pthread_mutex_lock(&hang_mu);
    bool yes = !hang_who[0] && len > 0 && len < sizeof hang_who &&
               !(len == 3 && !memcmp(name, "hub", 3));
    if (yes) {
        memcpy(hang_who, name, len);
        hang_who[len] = 0;
    }
    pthread_mutex_unlock(&hang_mu);
    return kin_call_return(call, "b", yes);
}

/* Copies the name of the worker hanging on purpose to who; false while
 * none is. */
static bool
hanging_worker(char *who, size_t size)
{
    pthread_mutex_lock(&hang_mu);
    snprintf(who, size, "%s", hang_who);
    pthread_mutex_unlock(&hang_mu);
    return who[0] != 0;
}

typedef struct job {
    uint32_t id;
    uint64_t lo, hi;
    kin_receiver *call; /* the job's service call in flight */
    bool sent, done;
} job;

typedef struct demo {
    kin_node *node;
    kin_supervisor *sup;
    kin_receiver *results;
    kin_select *sel;
    kin_logsub *logs;
    job *jobs;
    int n_jobs, done, failed;
    int in_flight, next;       /* service calls out; the next job to send */
    int per_worker[N_WORKERS]; /* jobs finished */
    uint64_t primes;
    double t0, cpu_ms; /* CPU time the finished jobs took, all workers */
    uint32_t hang_job; /* from this job on, one may hang (see demo.hang) */
    char victim[64];   /* the worker killed mid-job (empty: none yet) */
    bool tty;
    int bar_shown;
} demo;

static const char *worker_names[N_WORKERS] = {"worker-1", "worker-2", "hub"};

/* How to run the kin command here: the one built next to this demo
 * (build/kin beside build/examples/demo/kin-demo, or kin in the same
 * directory once installed), relative to the current directory when it is
 * below it; "kin" from PATH if neither exists. */
static char kin_cmd[PATH_MAX];

static void
find_kin_cmd(void)
{
    snprintf(kin_cmd, sizeof kin_cmd, "kin");
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return;
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return;
    *slash = 0;
    const char *tries[] = {"/../../kin", "/kin"};
    char path[PATH_MAX + 16], real[PATH_MAX], cwd[PATH_MAX];
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        snprintf(path, sizeof path, "%s%s", exe, tries[i]);
        if (!realpath(path, real) || access(real, X_OK))
            continue;
        size_t n = getcwd(cwd, sizeof cwd) ? strlen(cwd) : 0;
        /* "./kin", not "kin": a bare name would be looked up in PATH. */
        const char *rel = real + n + 1;
        if (n > 1 && !strncmp(real, cwd, n) && real[n] == '/')
            snprintf(kin_cmd, sizeof kin_cmd, "%s%s",
                     strchr(rel, '/') ? "" : "./", rel);
        else
            snprintf(kin_cmd, sizeof kin_cmd, "%s", real);
        return;
    }
}

static void
clear_bar(demo *d)
{
    if (d->tty && d->bar_shown) {
        fprintf(stderr, "\r\033[K");
        d->bar_shown = 0;
    }
}

static void
say(demo *d, const char *fmt, ...)
{
    clear_bar(d);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void
draw_bar(demo *d)
{
    if (!d->tty)
        return;
    int width = 30, full = d->n_jobs ? d->done * width / d->n_jobs : 0;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < full ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r\033[K  [%s] %d/%d jobs  %.1fs", bar, d->done, d->n_jobs,
            (now_ms() - d->t0) / 1e3);
    d->bar_shown = 1;
}

/* Prints the log records that arrived (workers' logs, child output). */
static void
show_logs(demo *d)
{
    const kin_logrec *r;
    while (d->logs && kin_logsub_next(d->logs, 0, &r) == KIN_OK) {
        char line[1024];
        kin_logrec_format(r, color ? KIN_LOGFMT_COLOR : 0, line, sizeof line);
        clear_bar(d);
        printf("  %s%s%s\n", DIM, line, RESET);
    }
}

static void
on_event(kin_supervisor *s, const kin_sup_event *ev, void *arg)
{
    demo *d = arg;
    if (ev->kind == KIN_SUP_EV_STARTED && !strcmp(ev->child, "hub")) {
        /* A new hub starts its leaves (the supervisor's thread may call
         * into kin; the next restart waits until this returns). */
        kin_msg *m = NULL;
        kin_err e =
            kin_call_sync(d->node, ev->id, "demo.grow", CALL_MS, &m, "");
        kin_msg_destroy(&m);
        if (e)
            say(d, "%smaster: hub could not start its leaves: %s%s\n", YELLOW,
                kin_strerror(e), RESET);
    }
    if (ev->kind == KIN_SUP_EV_STARTED && ev->restarts)
        say(d, "%ssupervisor: restarted %s as context %u (pid %d)%s\n", YELLOW,
            ev->child, ev->id, (int)ev->pid, RESET);
    else if (ev->kind == KIN_SUP_EV_EXITED)
        say(d, "%ssupervisor: %s (context %u) exited: %s %d%s\n", YELLOW,
            ev->child, ev->id, WIFSIGNALED(ev->status) ? "signal" : "status",
            WIFSIGNALED(ev->status) ? WTERMSIG(ev->status)
                                    : WEXITSTATUS(ev->status),
            RESET);
}

/* Sends jobs to the "demo" service, N_WORKERS at a time: the service
 * layer picks a worker for each, and retries a job on another worker when
 * its worker dies mid-job (demo.job is exported idempotent). */
static kin_err
dispatch(demo *d)
{
    while (d->in_flight < N_WORKERS && d->next < d->n_jobs) {
        job *j = &d->jobs[d->next];
        kin_err e = kin_service_call_async(
            d->node, "demo.job", CALL_MS, &j->call, "uUUuub", j->id, j->lo,
            j->hi, kin_node_id(d->node), kin_receiver_handle(d->results),
            j->id >= d->hang_job && !d->victim[0]);
        if (e)
            return e;
        kin_select_add(d->sel, kin_receiver_latch(j->call), j);
        j->sent = true;
        d->next++;
        d->in_flight++;
    }
    return KIN_OK;
}

/* Calls the service layer retried on another worker. */
static unsigned long long
service_retries(demo *d)
{
    kin_service_info info[8];
    int count = kin_service_list(d->node, info, 8, NULL, 0);
    for (int i = 0; i < count && i < 8; i++)
        if (!strcmp(info[i].name, "demo"))
            return (unsigned long long)info[i].retried;
    return 0;
}

static int
by_id(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Prints ctx and, below it, its children in context id order (the order
 * they were first started in; a restarted one gets a new, higher id).
 * indent: the lines drawn for the levels above; last: ctx is the last of
 * its siblings. */
static void
print_tree_at(demo *d, uint32_t ctx, const char *indent, bool root, bool last)
{
    kin_ctx_info info;
    if (kin_monitor_info(d->node, ctx, 2000, &info))
        return;
    char label[256];
    snprintf(label, sizeof label, "%s%s%s", indent,
             root   ? ""
             : last ? "└── "
                    : "├── ",
             info.name);
    /* Pad by characters, not bytes: the tree lines are UTF-8. */
    int width = 0;
    for (const char *p = label; *p; p++)
        width += ((unsigned char)*p & 0xc0) != 0x80;
    printf("  %s%s%s%*s context %-3u pid %-7d %2u tasks  %5.1f MiB\n", BOLD,
           label, RESET, width < 22 ? 22 - width : 0, "", info.id, info.pid,
           info.tasks, (double)info.rss_kib / 1024.0);
    char below[256];
    snprintf(below, sizeof below, "%s%s", indent,
             root   ? ""
             : last ? "    "
                    : "│   ");
    qsort(info.children, (size_t)info.n_children, sizeof info.children[0],
          by_id);
    for (int i = 0; i < info.n_children; i++)
        print_tree_at(d, info.children[i], below, false,
                      i + 1 == info.n_children);
}

static void
print_tree(demo *d)
{
    print_tree_at(d, kin_node_id(d->node), "", true, true);
}

static void
print_ps(demo *d, uint32_t ctx)
{
    kin_ctx_info info;
    if (kin_monitor_info(d->node, ctx, 2000, &info))
        return;
    kin_task_info *ts;
    size_t n;
    if (kin_monitor_ps(d->node, ctx, NULL, false, 2000, &ts, &n) == KIN_OK) {
        for (size_t i = 0; i < n; i++) {
            char wait[64] = "";
            if (ts[i].await_ctx != KIN_NO_CTX)
                snprintf(wait, sizeof wait, "awaits %s in context %u",
                         ts[i].await_fn, ts[i].await_ctx);
            else if (ts[i].waiting[0])
                snprintf(wait, sizeof wait, "waits on a %s", ts[i].waiting);
            char id[24];
            snprintf(id, sizeof id, "%u:%u", ctx, ts[i].id);
            printf("  %-8s %-10s %-12s %-9s %s\n", id, info.name, ts[i].name,
                   kin_task_state_name(ts[i].state), wait);
        }
        free(ts);
    }
    qsort(info.children, (size_t)info.n_children, sizeof info.children[0],
          by_id);
    for (int i = 0; i < info.n_children; i++)
        print_ps(d, info.children[i]);
}

/* Takes one streamed result or finished call; returns false on timeout. */
static bool
step(demo *d)
{
    kin_msg *m;
    /* Results stream in on their own receiver. */
    while (kin_receiver_get(d->results, 0, &m) == KIN_OK) {
        uint32_t id;
        uint64_t primes;
        double ms, cpu_ms;
        const char *who = NULL;
        size_t who_len = 0;
        /* A job retried after its worker sent the result and died comes
         * back twice: counted once. */
        if (kin_msg_unpack(m, "uUddS", &id, &primes, &ms, &cpu_ms, &who,
                           &who_len) == KIN_OK &&
            id < (uint32_t)d->n_jobs && !d->jobs[id].done) {
            d->jobs[id].done = true;
            d->done++;
            d->primes += primes;
            d->cpu_ms += cpu_ms;
            for (int w = 0; w < N_WORKERS; w++)
                if (strlen(worker_names[w]) == who_len &&
                    !memcmp(worker_names[w], who, who_len))
                    d->per_worker[w]++;
        }
        kin_msg_destroy(&m);
    }
    void *tag;
    kin_err e = kin_select_get(d->sel, 20, &m, &tag);
    if (e == KIN_ETIMEOUT || e == KIN_ECLOSED)
        return false;
    job *j = tag;
    e = kin_call_result_of(&m);
    kin_msg_destroy(&m);
    kin_receiver_destroy(&j->call);
    d->in_flight--;
    if (e && !j->done) {
        /* The service layer gave up on it (no retry here): say so. */
        say(d, "%smaster: job %u failed: %s%s\n", YELLOW, j->id,
            kin_strerror(e), RESET);
        d->failed++;
    }
    return true;
}

static int
run(demo *d, int n_jobs, uint64_t limit, bool linger)
{
    d->n_jobs = n_jobs;
    d->hang_job = (uint32_t)n_jobs / 3;
    d->jobs = calloc((size_t)n_jobs, sizeof *d->jobs);
    uint64_t span = limit / (uint64_t)n_jobs;
    for (int i = 0; i < n_jobs; i++)
        d->jobs[i] = (job){.id = (uint32_t)i,
                           .lo = (uint64_t)i * span,
                           .hi = (uint64_t)(i + 1) * span};
    kin_receiver_new(&d->results, d->node, 0, KIN_POLICY_ANY, KIN_NO_CTX);
    kin_select_new(&d->sel, true);

    kin_logsub_opts lo = {.endpoint = kin_logs_frontend(d->node),
                          .min_level = KIN_LOG_INFO};
    if (lo.endpoint)
        kin_logsub_new(&d->logs, &lo);

    say(d, "%sStarting the tree%s (a supervisor, one_for_one):\n", BOLD, RESET);
    kin_supervisor_opts so = {.strategy = KIN_ONE_FOR_ONE,
                              .intensity = 5,
                              .period_ms = 10000,
                              .on_event = on_event,
                              .arg = d};
    kin_err e = kin_supervisor_new(&d->sup, d->node, &so);
    /* Each worker provides the "demo" service: the supervisor offers it
     * for them on every (re)start, and holds calls while one restarts. */
    static const char *const services[] = {"demo", NULL};
    for (int w = 0; !e && w < N_WORKERS; w++) {
        kin_child_spec spec = {.name = worker_names[w],
                               .restart = KIN_RESTART_PERMANENT,
                               .services = services};
        e = kin_supervisor_add(d->sup, &spec);
    }
    if (!e)
        e = kin_supervisor_start(d->sup);
    if (e) {
        fprintf(stderr, "kin-demo: starting the workers: %s\n",
                kin_strerror(e));
        return 1;
    }
    print_tree(d);

    say(d,
        "\n%sFanning out %d jobs%s (count the primes below %llu; "
        "results stream back over a sender).\nLog records forwarded from "
        "the workers (a sample: every 8th job) show time, level,\n"
        "process[pid], context:task, file:line, message and fields:\n",
        BOLD, n_jobs, RESET, (unsigned long long)limit);
    d->t0 = now_ms();
    bool shown_ps = false;
    while (d->done + d->failed < d->n_jobs) {
        if ((e = dispatch(d))) {
            say(d, "kin-demo: sending a job: %s\n", kin_strerror(e));
            break;
        }
        step(d);
        show_logs(d);
        kin_child_info info;
        if (!d->victim[0] && hanging_worker(d->victim, sizeof d->victim) &&
            kin_supervisor_child(d->sup, d->victim, &info) == KIN_OK &&
            info.pid > 0) {
            say(d,
                "%smaster: a job hangs in %s (pid %d): killing it on "
                "purpose, mid-job%s\n",
                YELLOW, d->victim, (int)info.pid, RESET);
            kill(info.pid, SIGKILL);
        }
        if (!shown_ps && d->done >= d->n_jobs / 2) {
            say(d,
                "\n%sTasks right now, in every process%s (what `%s ps "
                "%d` shows):\n",
                BOLD, RESET, kin_cmd, (int)getpid());
            print_ps(d, kin_node_id(d->node));
            printf("\n");
            shown_ps = true;
        }
        draw_bar(d);
        if (now_ms() - d->t0 > 50000) {
            say(d, "kin-demo: giving up after 50 s\n");
            break;
        }
    }
    double wall = now_ms() - d->t0;
    /* The work can finish before the killed worker is back: wait for the
     * supervisor (with a deadline) so the tree below shows it. */
    for (double end = now_ms() + 10000; d->victim[0] && now_ms() < end;) {
        uint64_t seen = kin_supervisor_changes(d->sup);
        kin_child_info info;
        if (kin_supervisor_child(d->sup, d->victim, &info) == KIN_OK &&
            info.restarts > 0 && info.state == KIN_CHILD_RUNNING)
            break;
        kin_supervisor_wait(d->sup, seen, 200, NULL);
    }
    show_logs(d);
    clear_bar(d);

    if (d->victim[0])
        printf("\n%sThe tree now%s (%s is a new process):\n", BOLD, RESET,
               d->victim);
    else
        printf("\n%sThe tree now%s:\n", BOLD, RESET);
    print_tree(d);

    unsigned restarts = 0;
    for (int w = 0; w < N_WORKERS; w++) {
        kin_child_info info;
        if (kin_supervisor_child(d->sup, worker_names[w], &info) == KIN_OK)
            restarts += info.restarts;
    }
    printf("\n%sSummary%s\n", BOLD, RESET);
    printf("  %s%d/%d jobs done%s, %llu primes below %llu\n", GREEN, d->done,
           d->n_jobs, RESET, (unsigned long long)d->primes,
           (unsigned long long)limit);
    /* CPU time over wall time: how many cores were busy counting on
     * average. Wall time per job would count a worker waiting for a core
     * as working, and so claim more parallelism than the cores allow. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("  wall time %.2f s, CPU time spent counting %.2f s: on average "
           "%.1f of\n  this machine's %ld cores were busy counting\n",
           wall / 1e3, d->cpu_ms / 1e3, wall > 0 ? d->cpu_ms / wall : 0, cores);
    printf("  jobs per worker:");
    for (int w = 0; w < N_WORKERS; w++)
        printf(" %s %d%s", worker_names[w], d->per_worker[w],
               w + 1 < N_WORKERS ? "," : "\n");
    printf("  worker restarts: %u, calls the service layer retried on "
           "another worker: %llu\n",
           restarts, service_retries(d));

    if (linger) {
        printf("\n%sStill running%s (pid %d). In another terminal try:\n", BOLD,
               RESET, (int)getpid());
        const char *cmds[] = {"tree", "ps", "pstree", "logs", "monitor"};
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
            printf("  %s%s %s %d%s\n", CYAN, kin_cmd, cmds[i], (int)getpid(),
                   RESET);
        printf("Every process but this master is supervised: kill -9 any of "
               "them and watch it come back.\nPress Ctrl-C to stop.\n");
        fflush(stdout);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        /* Shows the workers' logs (the hub's leaf restarts among them)
         * until Ctrl-C. */
        struct timespec tick = {.tv_sec = 0, .tv_nsec = 200 * 1000000L};
        while (sigtimedwait(&set, NULL, &tick) < 0)
            show_logs(d);
        printf("\nstopping\n");
    }

    for (int i = 0; i < d->n_jobs; i++)
        kin_receiver_destroy(&d->jobs[i].call);
    kin_select_destroy(&d->sel);
    kin_receiver_destroy(&d->results);
    kin_supervisor_destroy(&d->sup);
    kin_logsub_destroy(&d->logs);
    free(d->jobs);
    return d->done == d->n_jobs ? 0 : 1;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: kin-demo [--linger] [--jobs N] [--limit N] "
               "[--no-color]\n"
               "  Runs a small supervised tree of worker processes, fans jobs "
               "out to them,\n"
               "  kills one on purpose mid-job and shows the job retried and "
               "the worker\n  restarted, then prints a summary.\n"
               "  --linger   stay up afterwards and print kin commands to try\n"
               "  --jobs N   number of jobs (default 60)\n"
               "  --limit N  count primes below N (default 24000000)\n");
}

int
main(int argc, char **argv)
{
    kin_export("demo.count", count_fn, NULL, KIN_POLICY_PARENT);
    /* Idempotent: run twice, it sends the same result twice, and the
     * master counts a job once. */
    kin_export_flags("demo.job", job_fn, NULL, KIN_POLICY_PARENT,
                     KIN_EXPORT_IDEMPOTENT);
    kin_export("demo.grow", grow_fn, NULL, KIN_POLICY_PARENT);
    /* Served by the master, asked by its children. */
    kin_export("demo.hang", hang_fn, NULL, KIN_POLICY_CHILD);

    bool linger = false;
    int jobs = 60;
    uint64_t limit = 24000000;
    color = isatty(STDOUT_FILENO);
    for (int i = 1; !kin_started_as_child() && i < argc; i++) {
        if (!strcmp(argv[i], "--linger")) {
            linger = true;
        } else if (!strcmp(argv[i], "--no-color")) {
            color = false;
        } else if (!strcmp(argv[i], "--jobs") && i + 1 < argc) {
            jobs = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            limit = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (jobs < 3 || jobs > 10000 || limit < (uint64_t)jobs) {
        fprintf(stderr, "kin-demo: need 3 <= jobs <= 10000 and limit >= "
                        "jobs\n");
        return 2;
    }
    if (linger) {
        /* Taken by sigwait at the end, on this thread only. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }

    demo d = {.tty = isatty(STDERR_FILENO)};
    char why[512];
    kin_node_opts o = {
        .name = "master", .errbuf = why, .errbuf_size = sizeof why};
    kin_err e = kin_init(&d.node, &o); /* a worker never comes back */
    if (e) {
        fprintf(stderr, "kin-demo: %s\n", why);
        return 1;
    }
    find_kin_cmd();
    printf("%skin demo%s: this master (pid %d) starts worker processes, "
           "calls functions in them by name,\nsupervises them and watches "
           "every task. Everything below is real processes and sockets.\n\n",
           BOLD, RESET, (int)getpid());
    int rc = run(&d, jobs, limit, linger);
    kin_node_destroy(&d.node);
    return rc;
}
