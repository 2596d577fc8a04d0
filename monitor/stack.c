/* On-demand stack capture (see stack.h): the target thread unwinds itself
 * in a signal handler into a shared slot; the requester symbolizes. */
#define UNW_LOCAL_ONLY
#include "monitor/stack.h"

#include <elfutils/libdwfl.h>
#include <errno.h>
#include <libunwind.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mu; /* one capture at a time */
    sem_t done;
    atomic_int target; /* tid expected to answer, 0 when none */
    void *ips[KIN_STACK_MAX];
    int count;
} slot = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int install_rc;

int
kin__stack_signal(void)
{
    const char *v = getenv("KIN_STACK_SIGNAL");
    int sig = v ? atoi(v) : 0;
    return sig > 0 && sig < NSIG ? sig : SIGRTMIN + 3;
}

bool
kin__stack_enabled(void)
{
    const char *v = getenv("KIN_NO_STACKS");
    return !(v && *v && strcmp(v, "0"));
}

/* Async-signal-safe: local unwinding and sem_post only. */
static void
on_signal(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    if (atomic_load(&slot.target) == (int)syscall(SYS_gettid)) {
        slot.count = unw_backtrace(slot.ips, KIN_STACK_MAX);
        atomic_store(&slot.target, 0);
        sem_post(&slot.done);
    }
    errno = saved;
}

static void
install(void)
{
    sem_init(&slot.done, 0, 0);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    install_rc = sigaction(kin__stack_signal(), &sa, NULL) ? -errno : 0;
}

int
kin__stack_install(void)
{
    if (!kin__stack_enabled())
        return -ENOTSUP;
    pthread_once(&once, install);
    return install_rc;
}

/* Separate debug info is looked up by build id only (/usr/lib/debug/
 * .build-id/, where Debian's -dbg packages put it). Not through
 * dwfl_standard_find_debuginfo: where a module has none, it ends in the
 * debuginfod client, which loads libcurl, GnuTLS and OpenSSL into the
 * process for good (measured: a child went from 7.2 to 18.5 MiB RSS) and
 * would fetch files over the network from inside a service when
 * DEBUGINFOD_URLS is set. */
static int
find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
               Dwarf_Addr base, const char *file, const char *debuglink,
               GElf_Word crc, char **debuginfo_file_name)
{
    return dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file,
                                        debuglink, crc, debuginfo_file_name);
}

static char *debuginfo_path;
static const Dwfl_Callbacks dwfl_cbs = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = find_debuginfo,
    .debuginfo_path = &debuginfo_path,
};

static void
symbolize(Dwfl *dwfl, uintptr_t addr, kin__frame *f)
{
    f->addr = addr;
    snprintf(f->fn, sizeof f->fn, "??");
    f->file[0] = 0;
    f->line = 0;
    if (!dwfl)
        return;
    /* Return addresses point after the call: look up the call itself. */
    Dwarf_Addr pc = addr ? addr - 1 : 0;
    Dwfl_Module *mod = dwfl_addrmodule(dwfl, pc);
    if (!mod)
        return;
    const char *name = dwfl_module_addrname(mod, pc);
    if (name)
        snprintf(f->fn, sizeof f->fn, "%s", name);
    Dwfl_Line *line = dwfl_module_getsrc(mod, pc);
    if (line) {
        int lineno = 0;
        const char *file = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
        if (file) {
            snprintf(f->file, sizeof f->file, "%s", file);
            f->line = lineno;
        }
    } else {
        Dwarf_Addr start = 0;
        const char *modname =
            dwfl_module_info(mod, NULL, &start, NULL, NULL, NULL, NULL, NULL);
        /* Without a symbol, the offset in the module lets a person look
         * it up offline (addr2line -e MODULE OFFSET). */
        if (modname && !name)
            snprintf(f->file, sizeof f->file, "%s+0x%llx", modname,
                     (unsigned long long)(pc - start));
        else if (modname)
            snprintf(f->file, sizeof f->file, "%s", modname);
    }
}

/* A Dwfl over this process's modules as they are mapped now, or NULL. */
static Dwfl *
open_dwfl(void)
{
    Dwfl *dwfl = dwfl_begin(&dwfl_cbs);
    if (dwfl) {
        dwfl_report_begin(dwfl);
        if (dwfl_linux_proc_report(dwfl, getpid()) != 0 ||
            dwfl_report_end(dwfl, NULL, NULL) != 0) {
            dwfl_end(dwfl);
            dwfl = NULL;
        }
    }
    return dwfl;
}

/* The Dwfl kept for kin__stack_symbolize: made at the first use, remade
 * when an address falls outside every module it knows (a library loaded
 * since). */
static pthread_mutex_t kept_mu = PTHREAD_MUTEX_INITIALIZER;
static Dwfl *kept;

void
kin__stack_symbolize(const uintptr_t *addrs, int n, kin__frame *frames)
{
    pthread_mutex_lock(&kept_mu);
    if (!kept)
        kept = open_dwfl();
    for (int i = 0; i < n && kept; i++)
        if (addrs[i] && !dwfl_addrmodule(kept, addrs[i] - 1)) {
            dwfl_end(kept);
            kept = open_dwfl();
            break;
        }
    for (int i = 0; i < n; i++)
        symbolize(kept, addrs[i], &frames[i]);
    pthread_mutex_unlock(&kept_mu);
}

/* Whether thread tid of this process blocks sig (its SigBlk mask in
 * /proc): libzmq's own threads block every signal. */
static bool
blocks_signal(int tid, int sig)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    FILE *f = fopen(path, "r");
    bool blocked = false;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "SigBlk:", 7)) {
            unsigned long long mask = strtoull(line + 7, NULL, 16);
            blocked = sig <= 64 && (mask >> (sig - 1) & 1);
            break;
        }
    if (f)
        fclose(f);
    return blocked;
}

int
kin__stack_capture_raw(int tid, uintptr_t *ips, int max, int timeout_ms)
{
    if (!kin__stack_enabled())
        return -ENOTSUP;
    int rc = kin__stack_install();
    if (rc)
        return rc;
    if (max > KIN_STACK_MAX)
        max = KIN_STACK_MAX;
    if (tid == (int)syscall(SYS_gettid)) {
        /* The asking thread itself: no signal needed. Its first frame is
         * this function's, as the handler's is on_signal. */
        void *own[KIN_STACK_MAX];
        int count = unw_backtrace(own, max);
        for (int i = 0; i < count; i++)
            ips[i] = (uintptr_t)own[i];
        return count;
    }
    if (blocks_signal(tid, kin__stack_signal()))
        return -EPERM;
    int count;
    pthread_mutex_lock(&slot.mu);
    while (sem_trywait(&slot.done) == 0)
        ; /* a late answer from an earlier timed-out capture */
    atomic_store(&slot.target, tid);
    if (syscall(SYS_tgkill, getpid(), tid, kin__stack_signal())) {
        rc = -errno;
        atomic_store(&slot.target, 0);
        pthread_mutex_unlock(&slot.mu);
        return rc;
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += (long)timeout_ms * 1000000L;
    dl.tv_sec += dl.tv_nsec / 1000000000L;
    dl.tv_nsec %= 1000000000L;
    while ((rc = sem_timedwait(&slot.done, &dl)) && errno == EINTR)
        ;
    if (rc) {
        /* If the handler runs later it finds no target and does nothing. */
        int expected = tid;
        if (!atomic_compare_exchange_strong(&slot.target, &expected, 0)) {
            sem_wait(&slot.done); /* it answered just now */
        } else {
            pthread_mutex_unlock(&slot.mu);
            return -ETIMEDOUT;
        }
    }
    count = slot.count < max ? slot.count : max;
    for (int i = 0; i < count; i++)
        ips[i] = (uintptr_t)slot.ips[i];
    pthread_mutex_unlock(&slot.mu);
    return count;
}

struct kin__symbolizer {
    Dwfl *dwfl;
};

kin__symbolizer *
kin__sym_open(void)
{
    kin__symbolizer *s = calloc(1, sizeof *s);
    if (s)
        s->dwfl = open_dwfl();
    return s;
}

int
kin__sym_frames(kin__symbolizer *s, const uintptr_t *ips, int count,
                kin__frame *frames, int max)
{
    Dwfl *dwfl = s ? s->dwfl : NULL;
    /* Skip the capture's own frames: up to and including the signal
     * trampoline (the frame after on_signal), or kin__stack_capture_raw
     * for the asking thread itself. */
    int skip = 0;
    for (int i = 0; i < count && i < 4; i++) {
        kin__frame f;
        symbolize(dwfl, ips[i], &f);
        if (strstr(f.fn, "on_signal")) /* then the signal trampoline */
            skip = i + 2;
        else if (!strcmp(f.fn, "__restore_rt") ||
                 !strncmp(f.fn, "kin__stack_capture_raw", 22))
            skip = i + 1;
    }
    if (skip > count)
        skip = count;
    int n = 0;
    for (int i = skip; i < count && n < max; i++)
        symbolize(dwfl, ips[i], &frames[n++]);
    return n;
}

void
kin__sym_close(kin__symbolizer *s)
{
    if (!s)
        return;
    if (s->dwfl)
        dwfl_end(s->dwfl);
    free(s);
    /* What libdw read (symbol tables, line tables) was heap memory: give
     * it back instead of keeping the high-water mark for good. */
    malloc_trim(0);
}

int
kin__stack_capture(int tid, kin__frame *frames, int max, int timeout_ms)
{
    uintptr_t ips[KIN_STACK_MAX];
    int count = kin__stack_capture_raw(tid, ips, KIN_STACK_MAX, timeout_ms);
    if (count < 0)
        return count;
    kin__symbolizer *s = kin__sym_open();
    int n = kin__sym_frames(s, ips, count, frames, max);
    kin__sym_close(s);
    return n;
}
