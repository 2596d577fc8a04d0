/* A context's task table: live tasks by id, and a bounded ring of
 * terminated ones (persistent tasks are kept apart, never evicted). The
 * monitor reads it; the worker pool and adopted threads write it. */
#ifndef KIN_CORE_TASKTAB_H
#define KIN_CORE_TASKTAB_H

#include "core/task.h"
#include "core/u32map.h"

/* What remains of a task once it ended. */
typedef struct kin__ended {
    uint32_t id;
    char name[48];
    char fn[48];
    int state; /* done, failed, cancelled */
    int result;
    uint32_t caller_ctx, caller_task;
    const char *created_file;
    int created_line;
    bool persistent;
    uint32_t cancelled_by_ctx, cancelled_by_task;
    uint64_t created_ns, started_ns, ended_ns;
} kin__ended;

typedef struct kin__tasktab {
    pthread_mutex_t mu;
    uint32_t ctx;
    uint32_t next_id;
    kin__u32map live; /* id -> kin_task */
    kin__ended *ring; /* terminated, oldest first from head */
    size_t ring_cap, ring_len, ring_head;
    kin__ended *kept; /* persistent terminated tasks */
    size_t kept_len, kept_cap;
    uint64_t ended_total;
    /* Ended tasks' memory for the next ones: a call's task is made on the
     * broker and ended on a worker, a free glibc's per-thread caches do
     * not absorb. */
    kin_task *spare[32];
    unsigned nspare;
} kin__tasktab;

/* history: terminated tasks kept (0: 1000). Returns 0 or -ENOMEM. */
int kin__tasktab_init(kin__tasktab *tab, uint32_t ctx, size_t history);
/* Frees every record; live tasks must not be in use any more. */
void kin__tasktab_fini(kin__tasktab *tab);

/* A new registered task (state pending). NULL on -ENOMEM. Any thread. */
kin_task *kin__tasktab_add(kin__tasktab *tab, const char *name, const char *fn);
/* The same for an incoming call, with who called (context, reply handle)
 * and the export it names set before any other thread can see the task
 * (the monitor and CANCEL read them): for calls registered on a worker. */
kin_task *kin__tasktab_add_call(kin__tasktab *tab, const char *name,
                                const char *fn, uint32_t caller_ctx,
                                uint32_t caller_handle, const void *entry);

/* Ends t: unregisters it, records it in the history with its final state
 * and result, frees it. Any thread. */
void kin__tasktab_end(kin__tasktab *tab, kin_task *t, int state, int result);

/* Cancels the live task id on behalf of by_ctx:by_task. Returns 0 or
 * -ENOENT. Any thread. */
int kin__tasktab_cancel(kin__tasktab *tab, uint32_t id, uint32_t by_ctx,
                        uint32_t by_task);

/* Reading the table: lock it, walk it, unlock it; the calls between take
 * no lock of their own. */
void kin__tasktab_lock(kin__tasktab *tab);
void kin__tasktab_unlock(kin__tasktab *tab);
/* Live tasks: *it = 0 to start; false after the last. */
bool kin__tasktab_live_next(kin__tasktab *tab, size_t *it, kin_task **t);
size_t kin__tasktab_live_count(const kin__tasktab *tab);
/* The live task id, or NULL. */
kin_task *kin__tasktab_live_get(kin__tasktab *tab, uint32_t id);
/* Terminated tasks, persistent ones first, then the ring oldest first:
 * i < kin__tasktab_ended_count. */
size_t kin__tasktab_ended_count(const kin__tasktab *tab);
/* Tasks ended since the table was made (kept or not). */
uint64_t kin__tasktab_ended_total(const kin__tasktab *tab);
const kin__ended *kin__tasktab_ended_at(const kin__tasktab *tab, size_t i);

#endif
