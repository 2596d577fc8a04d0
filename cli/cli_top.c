/* kin top: a full-screen live view of a tree (ncurses), refreshed every
 * second: contexts with CPU%, RSS, tasks, calls/s, p99 and restarts, or
 * every task; sort keys; and warnings (a task waiting too long, a pool
 * exhausted, a restart loop, log records dropped). The figures come from
 * cli/top_data.c; this file lays them out as lines and draws them. */
#include <curses.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kin/monitor.h>

#include "cli/cli.h"
#include "cli/top.h"

typedef enum view { VIEW_CONTEXTS, VIEW_TASKS } view;

typedef struct screen {
    view view;
    char ctx_sort;  /* c m t r p i */
    char task_sort; /* w a i */
    int pid;
    int interval_ms;
} screen;

/* A frame: lines of text, each with how to show it. */
enum { PLAIN, HEADER, WARNING, TITLE };
typedef struct frame {
    char (*text)[512];
    int *kind;
    size_t len, cap;
} frame;

static void line(frame *f, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
line(frame *f, int kind, const char *fmt, ...)
{
    if (f->len == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        char(*t)[512] = realloc(f->text, cap * sizeof *t);
        if (!t)
            return;
        f->text = t;
        int *k = realloc(f->kind, cap * sizeof *k);
        if (!k)
            return;
        f->kind = k;
        f->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->text[f->len], sizeof f->text[0], fmt, ap);
    va_end(ap);
    f->kind[f->len++] = kind;
}

static const char *
state_name(kin_task_state s)
{
    static const char *const names[] = {"pending", "running", "waiting",
                                        "done",    "failed",  "cancelled"};
    return (unsigned)s < 6 ? names[s] : "?";
}

static const char *
ctx_sort_name(char k)
{
    switch (k) {
    case 'c':
        return "cpu";
    case 'm':
        return "rss";
    case 't':
        return "tasks";
    case 'r':
        return "calls/s";
    case 'p':
        return "p99";
    default:
        return "id";
    }
}

static double
ctx_key(const kin__top_ctx *c, char k)
{
    switch (k) {
    case 'c':
        return c->cpu_pct;
    case 'm':
        return (double)c->m.rss_kib;
    case 't':
        return c->err ? -1
                      : (double)(c->m.tasks_pending + c->m.tasks_running +
                                 c->m.tasks_waiting);
    case 'r':
        return c->calls_per_s;
    case 'p':
        return c->p99_us;
    default:
        return -(double)c->info.id; /* ascending ids */
    }
}

static char sort_by; /* qsort has no argument */

static int
cmp_ctx(const void *a, const void *b)
{
    double x = ctx_key(*(kin__top_ctx *const *)a, sort_by);
    double y = ctx_key(*(kin__top_ctx *const *)b, sort_by);
    return (x < y) - (x > y); /* descending */
}

static double
task_key(const kin_task_info *t, char k)
{
    switch (k) {
    case 'w':
        return t->waiting[0] ? t->wait_ms : -1;
    case 'a':
        return t->age_ms;
    default:
        return -((double)t->ctx * 4294967296.0 + t->id);
    }
}

static int
cmp_task(const void *a, const void *b)
{
    double x = task_key(*(kin_task_info *const *)a, sort_by);
    double y = task_key(*(kin_task_info *const *)b, sort_by);
    return (x < y) - (x > y);
}

static void
fmt_num(char *dst, size_t size, double v, const char *f)
{
    if (v < 0 || isnan(v))
        snprintf(dst, size, "-");
    else
        snprintf(dst, size, f, v);
}

static void
fmt_us(char *dst, size_t size, double us)
{
    if (us < 0)
        snprintf(dst, size, "-");
    else if (us < 1000)
        snprintf(dst, size, "%.0fus", us);
    else if (us < 1e6)
        snprintf(dst, size, "%.1fms", us / 1e3);
    else
        snprintf(dst, size, "%.1fs", us / 1e6);
}

static void
contexts_view(const kin__top_model *m, const screen *s, frame *f)
{
    line(f, HEADER, "%5s %-16s %-12s %7s %6s %8s %6s %7s %6s %8s %8s %8s %6s",
         "CTX", "NAME", "HOST", "PID", "CPU%", "RSS MiB", "TASKS", "BUSY",
         "QUEUE", "CALLS/S", "P99", "RESTARTS", "DROPS");
    kin__top_ctx **order = malloc((m->n_ctxs ? m->n_ctxs : 1) * sizeof *order);
    if (!order)
        return;
    for (size_t i = 0; i < m->n_ctxs; i++)
        order[i] = &m->ctxs[i];
    sort_by = s->ctx_sort;
    qsort(order, m->n_ctxs, sizeof *order, cmp_ctx);
    for (size_t i = 0; i < m->n_ctxs; i++) {
        const kin__top_ctx *c = order[i];
        if (c->err) {
            line(f, WARNING, "%5u %-16.16s %-12.12s %7d  %s", c->info.id,
                 c->info.name, c->info.host, c->info.pid, kin_strerror(c->err));
            continue;
        }
        char cpu[16], rate[16], p99[16], busy[16];
        fmt_num(cpu, sizeof cpu, c->cpu_pct, "%.1f");
        fmt_num(rate, sizeof rate, c->calls_per_s, "%.1f");
        fmt_us(p99, sizeof p99, c->p99_us);
        snprintf(busy, sizeof busy, "%d/%d", c->m.workers_busy, c->m.workers);
        line(f, PLAIN,
             "%5u %-16.16s %-12.12s %7d %6s %8.1f %6u %7s %6u %8s %8s %8llu "
             "%6llu",
             c->info.id, c->info.name, c->info.host, c->info.pid, cpu,
             (double)c->m.rss_kib / 1024.0,
             c->m.tasks_pending + c->m.tasks_running + c->m.tasks_waiting, busy,
             c->m.tasks_pending, rate, p99,
             (unsigned long long)c->m.child_restarts,
             (unsigned long long)c->m.log_dropped);
    }
    free(order);
}

static void
tasks_view(const kin__top_model *m, const screen *s, frame *f)
{
    line(f, HEADER, "%-11s %-24s %-20s %-9s %-10s %8s %9s", "CTX:TASK", "NAME",
         "FUNCTION", "STATE", "WAITING", "WAIT s", "AGE s");
    size_t total = 0;
    for (size_t i = 0; i < m->n_ctxs; i++)
        total += m->ctxs[i].n_tasks;
    kin_task_info **order = malloc((total ? total : 1) * sizeof *order);
    if (!order)
        return;
    size_t k = 0;
    for (size_t i = 0; i < m->n_ctxs; i++)
        for (size_t j = 0; j < m->ctxs[i].n_tasks; j++)
            order[k++] = &m->ctxs[i].tasks[j];
    sort_by = s->task_sort;
    qsort(order, total, sizeof *order, cmp_task);
    for (size_t i = 0; i < total; i++) {
        const kin_task_info *t = order[i];
        char id[24], wait[16];
        snprintf(id, sizeof id, "%u:%u", t->ctx, t->id);
        fmt_num(wait, sizeof wait, t->waiting[0] ? t->wait_ms / 1e3 : -1,
                "%.1f");
        bool late = t->waiting[0] && t->wait_ms / 1e3 > m->opts.wait_warn_s;
        line(f, late ? WARNING : PLAIN,
             "%-11s %-24.24s %-20.20s %-9s %-10.10s "
             "%8s %9.1f",
             id, t->name, t->fn, state_name(t->state), t->waiting, wait,
             t->age_ms / 1e3);
    }
    free(order);
}

static void
render(const kin__top_model *m, const screen *s, frame *f)
{
    f->len = 0;
    time_t now = time(NULL);
    char clock[16];
    strftime(clock, sizeof clock, "%H:%M:%S", localtime(&now));
    size_t tasks = 0;
    for (size_t i = 0; i < m->n_ctxs; i++)
        tasks += m->ctxs[i].n_tasks;
    line(f, TITLE, "kin top - tree of %d: %zu contexts, %zu tasks  %s  #%u",
         s->pid, m->n_ctxs, tasks, clock, m->samples);
    if (s->view == VIEW_CONTEXTS)
        line(f, PLAIN,
             "contexts, sort: %s   [Tab] tasks  sort: c cpu  m rss  t tasks  "
             "r calls/s  p p99  i id  [q] quit",
             ctx_sort_name(s->ctx_sort));
    else
        line(f, PLAIN,
             "tasks, sort: %s   [Tab] contexts  sort: w wait  a age  i id  "
             "[q] quit",
             s->task_sort == 'w'   ? "wait"
             : s->task_sort == 'a' ? "age"
                                   : "id");
    if (m->err)
        line(f, WARNING, "cannot list the tree's contexts: %s",
             kin_strerror(m->err));
    line(f, PLAIN, "%s", "");
    if (s->view == VIEW_CONTEXTS)
        contexts_view(m, s, f);
    else
        tasks_view(m, s, f);
}

/* The warnings, drawn at the bottom whatever the view. */
static void
render_warnings(const kin__top_model *m, frame *f)
{
    f->len = 0;
    if (!m->n_warnings) {
        line(f, PLAIN, "no warnings");
        return;
    }
    line(f, HEADER, "WARNINGS (%zu)", m->n_warnings);
    for (size_t i = 0; i < m->n_warnings; i++)
        line(f, WARNING, "! %s", m->warnings[i]);
}

static void
draw(const frame *body, const frame *warn)
{
    erase();
    int rows = LINES, cols = COLS;
    int wn = (int)warn->len;
    if (wn > rows / 3 + 1)
        wn = rows / 3 + 1;
    int top = rows - wn - 1;
    for (int i = 0; i < (int)body->len && i < top; i++) {
        int a = body->kind[i] == HEADER    ? A_REVERSE
                : body->kind[i] == WARNING ? A_BOLD
                : body->kind[i] == TITLE   ? A_BOLD
                                           : A_NORMAL;
        attron(a);
        mvaddnstr(i, 0, body->text[i], cols);
        attroff(a);
    }
    for (int i = 0; i < wn; i++) {
        int a = warn->kind[i] == HEADER    ? A_REVERSE
                : warn->kind[i] == WARNING ? A_BOLD
                                           : A_NORMAL;
        attron(a);
        mvaddnstr(rows - wn + i, 0, warn->text[i], cols);
        attroff(a);
    }
    refresh();
}

static void
print_frame(const frame *body, const frame *warn)
{
    for (size_t i = 0; i < body->len; i++)
        printf("%s\n", body->text[i]);
    printf("\n");
    for (size_t i = 0; i < warn->len; i++)
        printf("%s\n", warn->text[i]);
    fflush(stdout);
}

static double
mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
usage(FILE *f, int rc)
{
    fprintf(f, "usage: kin top PID [--interval MS] [--wait-warn S] "
               "[--restart-warn N]\n               [--window S] [--batch N]\n"
               "  a live view of the tree, refreshed every second (--interval):"
               "\n  contexts with CPU%%, RSS, tasks, workers busy, queue, "
               "calls/s, p99,\n  restarts and log drops, or (Tab) every task; "
               "sort keys c m t r p i\n  (contexts) and w a i (tasks); q quits."
               " Warnings: a task waiting\n  longer than --wait-warn seconds "
               "(10), a pool exhausted, --restart-warn\n  restarts (3) or "
               "dropped log records within --window seconds (30), a\n  context "
               "that does not answer. --batch N prints N frames as text.\n");
    return rc;
}

static bool
number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && !*end && *v >= 0;
}

/* Applies key k; false when it quits. */
static bool
key(screen *s, int k)
{
    if (k == 'q' || k == 'Q')
        return false;
    if (k == '\t')
        s->view = s->view == VIEW_CONTEXTS ? VIEW_TASKS : VIEW_CONTEXTS;
    else if (k > 0 && k < 128 && s->view == VIEW_CONTEXTS &&
             strchr("cmtrpi", k))
        s->ctx_sort = (char)k;
    else if (k > 0 && k < 128 && s->view == VIEW_TASKS && strchr("wai", k))
        s->task_sort = (char)k;
    return true;
}

int
kin__cli_top(int argc, char **argv)
{
    screen s = {.view = VIEW_CONTEXTS,
                .ctx_sort = 'i',
                .task_sort = 'w',
                .interval_ms = 1000};
    kin__top_model m = {.opts = {.wait_warn_s = 10,
                                 .window_s = 30,
                                 .restart_warn = 3,
                                 .timeout_ms = 2000}};
    double batch = 0;
    for (int i = 1; i < argc; i++) {
        double v;
        char *end;
        long p;
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout, 0);
        if (!strcmp(a, "--interval") && has && number(argv[i + 1], &v) &&
            v >= 50) {
            s.interval_ms = (int)v;
            i++;
        } else if (!strcmp(a, "--wait-warn") && has &&
                   number(argv[i + 1], &v)) {
            m.opts.wait_warn_s = v;
            i++;
        } else if (!strcmp(a, "--restart-warn") && has &&
                   number(argv[i + 1], &v) && v >= 1) {
            m.opts.restart_warn = (unsigned)v;
            i++;
        } else if (!strcmp(a, "--window") && has && number(argv[i + 1], &v) &&
                   v > 0) {
            m.opts.window_s = v;
            i++;
        } else if (!strcmp(a, "--batch") && has && number(argv[i + 1], &v) &&
                   v >= 1) {
            batch = v;
            i++;
        } else if (!s.pid && (p = strtol(a, &end, 10)) > 0 && !*end) {
            s.pid = (int)p;
        } else {
            fprintf(stderr, "kin top: unexpected or bad '%s'\n", a);
            return usage(stderr, 2);
        }
    }
    if (!s.pid)
        return usage(stderr, 2);
    if (!batch && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))) {
        fprintf(stderr, "kin top: needs a terminal (or --batch N)\n");
        return 2;
    }
    kin_node *n;
    if (kin__cli_attach(s.pid, &n))
        return 2;
    frame body = {0}, warn = {0};
    int rc = 0;
    if (batch) {
        for (int i = 0; i < (int)batch && !rc; i++) {
            if (i)
                usleep((useconds_t)s.interval_ms * 1000);
            rc = kin__top_sample(&m, n, mono_s()) ? 2 : 0;
            render(&m, &s, &body);
            render_warnings(&m, &warn);
            print_frame(&body, &warn);
        }
    } else {
        initscr();
        cbreak();
        noecho();
        keypad(stdscr, TRUE);
        curs_set(0);
        bool running = true;
        double next = 0;
        while (running && !rc) {
            double now = mono_s();
            if (now >= next) {
                rc = kin__top_sample(&m, n, now) ? 2 : 0;
                next = now + s.interval_ms / 1000.0;
            }
            render(&m, &s, &body);
            render_warnings(&m, &warn);
            draw(&body, &warn);
            int wait = (int)((next - mono_s()) * 1000);
            timeout(wait > 0 ? wait : 0);
            int k = getch();
            if (k != ERR)
                running = key(&s, k);
        }
        endwin();
    }
    free(body.text);
    free(body.kind);
    free(warn.text);
    free(warn.kind);
    kin__top_model_free(&m);
    kin_node_destroy(&n);
    if (rc)
        fprintf(stderr, "kin top: out of memory\n");
    return rc;
}
