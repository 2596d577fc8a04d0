/* A local child's resource limits, working directory and extra environment
 * (kin_spawn_opts.rlimits, cwd, env): checked in the parent before the
 * fork, applied in the child between fork and exec. */
#ifndef KIN_PROCESS_LIMITS_H
#define KIN_PROCESS_LIMITS_H

#include <stdbool.h>
#include <stddef.h>

#include <kin/process.h>

/* What the child failed at before exec, told to the parent with errno. */
enum {
    KIN__STAGE_EXEC = 0,
    KIN__STAGE_RLIMIT = 1, /* + the index of the limit, from here */
    KIN__STAGE_CWD = 1000,
    KIN__STAGE_CGROUP = 1001,
};

/* Whether opts asks for any of rlimits, cwd, env or memory_max. */
bool kin__limits_wanted(const kin_spawn_opts *opts);

/* Checks them before anything is started: -EINVAL (a bad limit or
 * variable, or with a factory other than fork + exec), -ENOENT / -ENOTDIR /
 * -EACCES (cwd), with errbuf (optional) saying which. via_other: opts->via
 * names another context than the spawning one. */
kin_err kin__limits_check(const kin_spawn_opts *opts, bool via_other,
                          char *errbuf, size_t errbuf_size);

/* Whether the environment entry "NAME=..." is replaced by one of env. */
bool kin__env_replaced(const char *entry, char *const *env);

/* In the child after fork: joins the memory cgroup whose cgroup.procs is
 * open as cgroup_fd (-1: none), sets the limits and changes directory,
 * with async-signal-safe calls only. 0, or errno with *stage telling
 * where. */
int kin__limits_apply(const kin_spawn_opts *opts, int cgroup_fd, int *stage);

/* Makes child id's memory cgroup (opts->memory_max) under this process's
 * own: *dir gets its path (malloc'd), *procs_fd its cgroup.procs open for
 * the child to join. Errors: -ENOTSUP (no cgroup v1 memory controller),
 * -errno from mkdir and the limit files, -ENOMEM; errbuf says which. */
kin_err kin__cgroup_make(const kin_spawn_opts *opts, uint32_t id, char **dir,
                         int *procs_fd, char *errbuf, size_t errbuf_size);

/* Removes the cgroup (once its processes are gone) and frees *dir; *dir =
 * NULL. NULL-safe. */
void kin__cgroup_remove(char **dir);

/* The parent's errbuf text for a child that failed at stage with errno
 * err (as from kin__limits_apply). */
void kin__limits_describe(const kin_spawn_opts *opts, int stage, int err,
                          char *buf, size_t size);

#endif
