/* On-demand stack capture (see stack.h): the target thread unwinds itself
 * in a signal handler into a shared slot; the requester symbolizes.
 * libunwind and libdw (with libelf and the compression libraries they
 * pull in) are loaded with dlopen when a stack is first asked for, so a
 * context that is never asked maps none of them. */
#include "monitor/stack.h"

#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
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

/* What is used of libunwind and libdw, once loaded (load_once). The
 * handler reads backtrace_fn with an atomic load: NULL (a stray signal
 * before any capture) unwinds nothing. */
typedef int (*backtrace_fn)(void **, int);
static _Atomic(backtrace_fn) unw_backtrace_fn;
static struct {
    Dwfl *(*begin)(const Dwfl_Callbacks *);
    void (*report_begin)(Dwfl *);
    int (*proc_report)(Dwfl *, pid_t);
    int (*report_end)(Dwfl *,
                      int (*)(Dwfl_Module *, void *, const char *, Dwarf_Addr,
                              void *),
                      void *);
    void (*end)(Dwfl *);
    Dwfl_Module *(*addrmodule)(Dwfl *, Dwarf_Addr);
    const char *(*addrname)(Dwfl_Module *, GElf_Addr);
    Dwfl_Line *(*getsrc)(Dwfl_Module *, Dwarf_Addr);
    const char *(*lineinfo)(Dwfl_Line *, Dwarf_Addr *, int *, int *, int *,
                            const char **);
    const char *(*module_info)(Dwfl_Module *, void ***, Dwarf_Addr *,
                               Dwarf_Addr *, Dwarf_Addr *, Dwarf_Addr *,
                               const char **, const char **);
    Dwfl_Callbacks cbs;
    bool ok;
} dw;
static pthread_once_t load_once_ctl = PTHREAD_ONCE_INIT;
static char *debuginfo_path;

#define LOAD(lib, var, name) (*(void **)&(var) = dlsym(lib, name)) != NULL

static void
load_once(void)
{
    /* RTLD_NOW: nothing is left for the dynamic linker to bind inside the
     * signal handler. */
    void *unw = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    backtrace_fn bt = unw ? (backtrace_fn)dlsym(unw, "unw_backtrace") : NULL;
    atomic_store(&unw_backtrace_fn, bt);
    void *lib = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
    dw.ok = lib && LOAD(lib, dw.begin, "dwfl_begin") &&
            LOAD(lib, dw.report_begin, "dwfl_report_begin") &&
            LOAD(lib, dw.proc_report, "dwfl_linux_proc_report") &&
            LOAD(lib, dw.report_end, "dwfl_report_end") &&
            LOAD(lib, dw.end, "dwfl_end") &&
            LOAD(lib, dw.addrmodule, "dwfl_addrmodule") &&
            LOAD(lib, dw.addrname, "dwfl_module_addrname") &&
            LOAD(lib, dw.getsrc, "dwfl_module_getsrc") &&
            LOAD(lib, dw.lineinfo, "dwfl_lineinfo") &&
            LOAD(lib, dw.module_info, "dwfl_module_info") &&
            LOAD(lib, dw.cbs.find_elf, "dwfl_linux_proc_find_elf") &&
            LOAD(lib, dw.cbs.find_debuginfo, "dwfl_standard_find_debuginfo");
    dw.cbs.debuginfo_path = &debuginfo_path;
}

/* Loads the unwinder and the symbolizer (once); -ENOTSUP without an
 * unwinder. A missing libdw only costs the names (frames stay "??"). */
static int
load(void)
{
    pthread_once(&load_once_ctl, load_once);
    return atomic_load(&unw_backtrace_fn) ? 0 : -ENOTSUP;
}

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
    backtrace_fn bt = atomic_load(&unw_backtrace_fn);
    if (atomic_load(&slot.target) == (int)syscall(SYS_gettid)) {
        slot.count = bt ? bt(slot.ips, KIN_STACK_MAX) : 0;
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
    Dwfl_Module *mod = dw.addrmodule(dwfl, pc);
    if (!mod)
        return;
    const char *name = dw.addrname(mod, pc);
    if (name)
        snprintf(f->fn, sizeof f->fn, "%s", name);
    Dwfl_Line *line = dw.getsrc(mod, pc);
    if (line) {
        int lineno = 0;
        const char *file = dw.lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
        if (file) {
            snprintf(f->file, sizeof f->file, "%s", file);
            f->line = lineno;
        }
    } else {
        const char *modname =
            dw.module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        if (modname)
            snprintf(f->file, sizeof f->file, "%s", modname);
    }
}

int
kin__stack_capture(int tid, kin__frame *frames, int max, int timeout_ms)
{
    if (!kin__stack_enabled())
        return -ENOTSUP;
    int rc = kin__stack_install();
    if (!rc)
        rc = load();
    if (rc)
        return rc;
    void *ips[KIN_STACK_MAX];
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
            rc = 0;
        } else {
            pthread_mutex_unlock(&slot.mu);
            return -ETIMEDOUT;
        }
    }
    count = slot.count;
    memcpy(ips, slot.ips, (size_t)count * sizeof *ips);
    pthread_mutex_unlock(&slot.mu);

    Dwfl *dwfl = dw.ok ? dw.begin(&dw.cbs) : NULL;
    if (dwfl) {
        dw.report_begin(dwfl);
        if (dw.proc_report(dwfl, getpid()) != 0 ||
            dw.report_end(dwfl, NULL, NULL) != 0) {
            dw.end(dwfl);
            dwfl = NULL;
        }
    }
    /* Skip the handler's own frames: up to and including the signal
     * trampoline (the frame after on_signal). */
    int skip = 0;
    for (int i = 0; i < count && i < 4; i++) {
        kin__frame f;
        symbolize(dwfl, (uintptr_t)ips[i], &f);
        if (!strcmp(f.fn, "__restore_rt") || strstr(f.fn, "on_signal"))
            skip = i + 1;
    }
    int n = 0;
    for (int i = skip; i < count && n < max; i++)
        symbolize(dwfl, (uintptr_t)ips[i], &frames[n++]);
    if (dwfl)
        dw.end(dwfl);
    return n;
}
