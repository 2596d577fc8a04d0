/* A local child's resource limits, working directory and extra environment:
 * the checks a spawn makes before it forks, what the child does between
 * fork and exec, and the words for what went wrong. */
#include "process/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log_internal.h"
#include "process/exec_channel.h"
#include "process/procs.h"

static const char *
resource_name(int r)
{
    switch (r) {
    case RLIMIT_AS:
        return "RLIMIT_AS";
    case RLIMIT_CORE:
        return "RLIMIT_CORE";
    case RLIMIT_CPU:
        return "RLIMIT_CPU";
    case RLIMIT_DATA:
        return "RLIMIT_DATA";
    case RLIMIT_FSIZE:
        return "RLIMIT_FSIZE";
    case RLIMIT_MEMLOCK:
        return "RLIMIT_MEMLOCK";
    case RLIMIT_NOFILE:
        return "RLIMIT_NOFILE";
    case RLIMIT_NPROC:
        return "RLIMIT_NPROC";
    case RLIMIT_STACK:
        return "RLIMIT_STACK";
    default:
        return "resource";
    }
}

bool
kin__limits_wanted(const kin_spawn_opts *opts)
{
    return opts->n_rlimits || opts->rlimits || opts->cwd || opts->env ||
           opts->memory_max;
}

/* errbuf gets "WHAT: strerror(e)"; returns e. */
static kin_err say(kin_err e, char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static kin_err
say(kin_err e, char *buf, size_t size, const char *fmt, ...)
{
    if (buf && size) {
        char what[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(buf, size, "%s: %s", what, strerror(-e));
    }
    return e;
}

kin_err
kin__limits_check(const kin_spawn_opts *opts, bool via_other, char *errbuf,
                  size_t errbuf_size)
{
    if (!kin__limits_wanted(opts))
        return KIN_OK;
    if (opts->fork || opts->user || opts->host || kin__exec_wanted(opts) ||
        via_other)
        return say(-EINVAL, errbuf, errbuf_size,
                   "rlimits, cwd, env and memory_max are for a child forked "
                   "and exec'd here");
    if (opts->n_rlimits && !opts->rlimits)
        return say(-EINVAL, errbuf, errbuf_size,
                   "rlimits NULL with n_rlimits %zu", opts->n_rlimits);
    for (size_t i = 0; i < opts->n_rlimits; i++) {
        const kin_rlimit *l = &opts->rlimits[i];
        if (l->resource < 0 || l->resource >= RLIM_NLIMITS)
            return say(-EINVAL, errbuf, errbuf_size,
                       "rlimits[%zu]: no such resource %d", i, l->resource);
        if (l->soft > l->hard)
            return say(-EINVAL, errbuf, errbuf_size,
                       "rlimits[%zu] (%s): soft %llu above hard %llu", i,
                       resource_name(l->resource), (unsigned long long)l->soft,
                       (unsigned long long)l->hard);
    }
    for (size_t i = 0; opts->env && opts->env[i]; i++) {
        const char *v = opts->env[i];
        const char *eq = strchr(v, '=');
        if (!eq || eq == v ||
            !strncmp(v, KIN__ENV_PREFIX, strlen(KIN__ENV_PREFIX)))
            return say(-EINVAL, errbuf, errbuf_size,
                       "env[%zu] \"%s\": not NAME=VALUE, or a KIN_CHILD_ name",
                       i, v);
    }
    if (opts->cwd) {
        struct stat st;
        if (stat(opts->cwd, &st))
            return say(-errno, errbuf, errbuf_size, "cwd %s", opts->cwd);
        if (!S_ISDIR(st.st_mode))
            return say(-ENOTDIR, errbuf, errbuf_size, "cwd %s", opts->cwd);
    }
    return KIN_OK;
}

bool
kin__env_replaced(const char *entry, char *const *env)
{
    const char *eq = strchr(entry, '=');
    size_t len = eq ? (size_t)(eq - entry) : strlen(entry);
    for (size_t i = 0; env && env[i]; i++)
        if (!strncmp(env[i], entry, len) && env[i][len] == '=')
            return true;
    return false;
}

int
kin__limits_apply(const kin_spawn_opts *opts, int cgroup_fd, int *stage)
{
    /* "0": the writing process, in cgroup v1's cgroup.procs. */
    if (cgroup_fd >= 0 && write(cgroup_fd, "0", 1) != 1) {
        *stage = KIN__STAGE_CGROUP;
        return errno;
    }
    for (size_t i = 0; i < opts->n_rlimits; i++) {
        const kin_rlimit *l = &opts->rlimits[i];
        struct rlimit r = {.rlim_cur = l->soft, .rlim_max = l->hard};
        if (setrlimit(l->resource, &r)) {
            *stage = KIN__STAGE_RLIMIT + (int)i;
            return errno;
        }
    }
    if (opts->cwd && chdir(opts->cwd)) {
        *stage = KIN__STAGE_CWD;
        return errno;
    }
    return 0;
}

void
kin__limits_describe(const kin_spawn_opts *opts, int stage, int err, char *buf,
                     size_t size)
{
    if (!size)
        return;
    buf[0] = 0;
    if (stage >= KIN__STAGE_RLIMIT && stage < KIN__STAGE_CWD &&
        (size_t)(stage - KIN__STAGE_RLIMIT) < opts->n_rlimits) {
        const kin_rlimit *l = &opts->rlimits[stage - KIN__STAGE_RLIMIT];
        snprintf(buf, size, "setrlimit %s (soft %llu, hard %llu): %s",
                 resource_name(l->resource), (unsigned long long)l->soft,
                 (unsigned long long)l->hard, strerror(err));
    } else if (stage == KIN__STAGE_CWD && opts->cwd) {
        snprintf(buf, size, "chdir %s: %s", opts->cwd, strerror(err));
    } else if (stage == KIN__STAGE_CGROUP) {
        snprintf(buf, size, "joining its memory cgroup: %s", strerror(err));
    }
}

/* --- a memory cgroup of its own --------------------------------------------
 */

#define MEMCG_ROOT "/sys/fs/cgroup/memory"

/* This process's memory cgroup (cgroup v1), as a directory: 0 or -errno. */
static kin_err
own_memcg(char *out, size_t size)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return -ENOTSUP;
    char line[1024];
    kin_err e = -ENOTSUP;
    while (e && fgets(line, sizeof line, f)) {
        /* N:controller,controller:path */
        char *c = strchr(line, ':');
        char *p = c ? strchr(c + 1, ':') : NULL;
        if (!p)
            continue;
        *p++ = 0;
        p[strcspn(p, "\n")] = 0;
        bool memory = false;
        for (char *w = strtok(c + 1, ","); w; w = strtok(NULL, ","))
            memory |= !strcmp(w, "memory");
        if (memory && snprintf(out, size, "%s%s", MEMCG_ROOT,
                               strcmp(p, "/") ? p : "") < (int)size)
            e = KIN_OK;
    }
    fclose(f);
    struct stat st;
    if (!e && stat(out, &st))
        e = -ENOTSUP;
    return e;
}

static kin_err
write_file(const char *dir, const char *name, const char *value)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    kin_err e = write(fd, value, len) == (ssize_t)len ? KIN_OK : -errno;
    close(fd);
    return e;
}

kin_err
kin__cgroup_make(const kin_spawn_opts *opts, uint32_t id, char **dir,
                 int *procs_fd, char *errbuf, size_t errbuf_size)
{
    char base[512], path[600], limit[32];
    *dir = NULL;
    *procs_fd = -1;
    if (own_memcg(base, sizeof base))
        return say(-ENOTSUP, errbuf, errbuf_size,
                   "memory_max: no cgroup v1 memory controller for this "
                   "process under " MEMCG_ROOT);
    snprintf(path, sizeof path, "%s/kin-%d-%u", base, (int)getpid(), id);
    if (mkdir(path, 0755) && errno != EEXIST)
        return say(-errno, errbuf, errbuf_size, "memory_max: mkdir %s", path);
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)opts->memory_max);
    kin_err e = write_file(path, "memory.limit_in_bytes", limit);
    if (e) {
        say(e, errbuf, errbuf_size, "memory_max: %s/memory.limit_in_bytes",
            path);
        rmdir(path);
        return e;
    }
    /* With swap, the limit on memory and swap together (absent without
     * swap accounting: nothing to hold then). */
    write_file(path, "memory.memsw.limit_in_bytes", limit);
    char procs[640];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", path);
    *procs_fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (*procs_fd < 0 || !(*dir = strdup(path))) {
        e = *procs_fd < 0 ? -errno : -ENOMEM;
        if (*procs_fd >= 0)
            close(*procs_fd);
        *procs_fd = -1;
        rmdir(path);
        return say(e, errbuf, errbuf_size, "memory_max: %s", procs);
    }
    return KIN_OK;
}

void
kin__cgroup_remove(char **dir)
{
    if (!dir || !*dir)
        return;
    if (rmdir(*dir) && errno != ENOENT)
        KIN_WARN("cannot remove the memory cgroup %s: %s", *dir,
                 strerror(errno));
    free(*dir);
    *dir = NULL;
}
