/* The recorder behind scripts/hot_text.sh: linked into a build made with
 * -finstrument-functions, it notes each function of the executable the
 * first time any thread enters it, with the time (CLOCK_MONOTONIC), and a
 * thread of its own writes the set to $KIN_HOT_TRACE_DIR/PID every 20 ms:
 * "OFFSET NS" per line, OFFSET from the executable's load address. In a
 * child forked from kin's zygote, only what the child ran after the fork.
 * Not part of libkin. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLOTS (1u << 16)

static void *fns[SLOTS];
static uint64_t first_ns[SLOTS];
static char *base;
static const char *dir;
static int in_zygote; /* the zygote, or a child it has not yet noticed */
static pid_t zygote_pid;

#define NOTRACE __attribute__((no_instrument_function))

NOTRACE static uint64_t
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

NOTRACE static void start_dumper(void);

/* An open-addressed set: a slot once claimed is never freed. A child
 * cloned from the zygote forgets what the zygote ran. */
NOTRACE void
__cyg_profile_func_enter(void *fn, void *site)
{
    (void)site;
    if (in_zygote && (pid_t)syscall(SYS_getpid) != zygote_pid) {
        in_zygote = 0;
        memset(fns, 0, sizeof fns);
        start_dumper();
    }
    for (uintptr_t h = ((uintptr_t)fn >> 3) & (SLOTS - 1);;
         h = (h + 1) & (SLOTS - 1)) {
        void *cur = __atomic_load_n(&fns[h], __ATOMIC_ACQUIRE);
        if (cur == fn)
            return;
        if (!cur &&
            __atomic_compare_exchange_n(&fns[h], &cur, fn, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            first_ns[h] = now();
            return;
        }
        if (cur == fn)
            return;
    }
}

NOTRACE void
__cyg_profile_func_exit(void *fn, void *site)
{
    (void)fn;
    (void)site;
}

NOTRACE static void
dump(void)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.%d", dir, (int)getpid());
    snprintf(path, sizeof path, "%s/%d", dir, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    for (unsigned i = 0; i < SLOTS; i++) {
        void *fn = __atomic_load_n(&fns[i], __ATOMIC_ACQUIRE);
        if (fn)
            fprintf(f, "%lx %llu\n", (unsigned long)((char *)fn - base),
                    (unsigned long long)first_ns[i]);
    }
    fclose(f);
    rename(tmp, path);
}

NOTRACE static void *
dumper(void *arg)
{
    (void)arg;
    for (;;) {
        usleep(20000);
        dump();
    }
    return NULL;
}

NOTRACE static void
start_dumper(void)
{
    pthread_t t;
    if (!pthread_create(&t, NULL, dumper, NULL))
        pthread_detach(t);
}

NOTRACE __attribute__((constructor)) static void
start(void)
{
    Dl_info info;
    if (!(dir = getenv("KIN_HOT_TRACE_DIR")) || !dladdr((void *)start, &info))
        return;
    base = info.dli_fbase;
    /* The zygote forks only while single-threaded, with a raw clone (no
     * atfork handlers): its children start the dumper at their first
     * function entry instead. */
    if (!strcmp(program_invocation_short_name, "kin-zygote")) {
        zygote_pid = getpid();
        in_zygote = 1;
    } else {
        start_dumper();
    }
}
