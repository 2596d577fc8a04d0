/* The runtime directory after a child's death (runtime_sweep.h). A killed
 * child cannot remove its socket files, and neither can its own children:
 * PR_SET_PDEATHSIG kills them with SIGKILL as it dies, and init, not kin,
 * reaps them. The parent removes the child's files by name while the
 * zombie still holds the pid; the grandchildren's, whose pids it never
 * knew, go in sweeps of the files of processes that no longer exist. They
 * die a moment after the child (the kernel signals them as it exits), so
 * one sweep at the reap could come too early: the sweeps follow a ladder
 * of delays after the latest reap. */
#include "process/runtime_sweep.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <uv.h>

#include "core/log_internal.h"
#include "core/sockname.h"
#include "process/child.h"
#include "router/router.h"

/* When to sweep, in ms after the latest reap: most orphans are gone by
 * the first, the rest (a loaded machine, a slow init) by the later ones. */
static const uint64_t ladder[] = {10, 100, 1000, 5000};
#define STEPS (sizeof ladder / sizeof *ladder)
/* The least time between two sweeps of one context. */
#define SWEEP_GAP_MS 100

typedef struct kin__sweeper {
    uv_timer_t timer;
    kin__procs *procs;
    uint64_t reaped_at; /* uv_now of the latest reap */
    uint64_t last;      /* uv_now of the latest sweep; 0: none yet */
    size_t step;        /* the next rung of the ladder */
} kin__sweeper;

void
kin__sweep_child_files(pid_t pid, uint32_t id)
{
    char dir[160], sock[256], far[270];
    if (kin__runtime_dir(dir, sizeof dir) != KIN_OK)
        return;
    int len = kin__sockname(sock, sizeof sock, dir, (int)pid, id, 0);
    if (len < 0 || (size_t)len >= sizeof sock)
        return;
    unlink(sock);
    len = kin__sockname_far(far, sizeof far, sock);
    if (len > 0 && (size_t)len < sizeof far)
        unlink(far); /* a child that started ssh children had one */
}

static void on_sweep(uv_timer_t *t);

/* Starts the timer for the current rung, unless it would fire later than
 * it already does (a flood of reaps must not put the sweep off forever). */
static void
arm(kin__sweeper *s)
{
    uv_loop_t *loop = s->timer.loop;
    uint64_t now = uv_now(loop);
    uint64_t due = s->reaped_at + ladder[s->step];
    if (s->last && due < s->last + SWEEP_GAP_MS)
        due = s->last + SWEEP_GAP_MS;
    uint64_t in = due > now ? due - now : 0;
    if (uv_is_active((uv_handle_t *)&s->timer) &&
        uv_timer_get_due_in(&s->timer) <= in)
        return;
    uv_timer_start(&s->timer, on_sweep, in, 0);
}

/* The pids of p's children not reaped yet, sorted; NULL (n 0) when there
 * are none or no memory. A child of ours not reaped yet is alive, or a
 * zombie whose files go by name at its reap (kin__sweep_child_files):
 * either way the sweep leaves its files alone, and need not read /proc to
 * know it. A copy, so the directory walk neither holds the layer's lock
 * nor walks the list for each file (a hub of 1,000 children, 1,000 files:
 * a million steps a sweep). A child spawned after the copy is alive and
 * kept by the sweep's own checks; one reaped after it was ours anyway. */
static pid_t *
children_pids(kin__procs *p, size_t *n)
{
    pthread_mutex_lock(&p->mu);
    size_t count = 0;
    for (kin_child *c = p->children; c; c = c->next)
        count++;
    pid_t *pids = count ? malloc(count * sizeof *pids) : NULL;
    *n = 0;
    for (kin_child *c = pids ? p->children : NULL; c; c = c->next)
        pids[(*n)++] = c->pid;
    pthread_mutex_unlock(&p->mu);
    return pids;
}

static int
pid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

typedef struct pid_set {
    pid_t *pids;
    size_t n;
} pid_set;

static bool
our_child(int pid, void *arg)
{
    const pid_set *s = arg;
    pid_t key = (pid_t)pid;
    return s->n && bsearch(&key, s->pids, s->n, sizeof key, pid_cmp);
}

static void
on_sweep(uv_timer_t *t)
{
    kin__sweeper *s = (kin__sweeper *)t;
    pid_set set;
    /* Without memory for the copy every file's process is looked up in
     * /proc: slower, as right (an unreaped zombie's files go early). */
    set.pids = children_pids(s->procs, &set.n);
    if (set.n)
        qsort(set.pids, set.n, sizeof *set.pids, pid_cmp);
    int removed = kin__runtime_sweep(our_child, &set);
    free(set.pids);
    if (removed)
        KIN_DEBUG("runtime directory: removed %d socket files of dead "
                  "contexts",
                  removed);
    s->last = uv_now(t->loop);
    if (!s->last)
        s->last = 1;
    /* Rungs already past (reaps long ago) are skipped. */
    while (++s->step < STEPS && s->reaped_at + ladder[s->step] <= s->last)
        ;
    if (s->step < STEPS)
        arm(s);
}

void
kin__sweep_after_reap(kin__procs *p)
{
    kin__sweeper *s = p->sweeper;
    if (!s) {
        if (!(s = calloc(1, sizeof *s)))
            return; /* the next master's sweep will do */
        uv_timer_init(kin__broker_loop(kin__node_broker(p->node)), &s->timer);
        s->procs = p;
        p->sweeper = s;
    }
    s->reaped_at = uv_now(s->timer.loop);
    s->step = 0;
    arm(s);
}

void
kin__sweep_free(kin__procs *p)
{
    free(p->sweeper);
    p->sweeper = NULL;
}
