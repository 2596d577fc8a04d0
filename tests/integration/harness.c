/* Test helpers shared by the integration tests (see harness.h). */
#include "integration/harness.h"

#include <dirent.h>
#include <dlfcn.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "monitor/stack.h"

double
harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

bool
harness_pid_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The state follows the parenthesised command name. */
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

bool
harness_wait_gone(pid_t pid, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    while (harness_pid_alive(pid)) {
        if (harness_now_ms() > end)
            return false;
        usleep(2000);
    }
    return true;
}

void
harness_log_setup(void)
{
    if (getenv("KIN_TEST_VERBOSE"))
        kin_diag_set_handler(kin_diag_stderr, NULL, KIN_LOG_DEBUG);
}

char *
harness_run(int *status, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    size_t cap = 65536, len = 0, got;
    char *out = malloc(cap);
    out[0] = 0;
    *status = -1;
    FILE *p = popen(cmd, "r");
    if (!p)
        return out;
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap)
            out = realloc(out, cap *= 2);
    }
    out[len] = 0;
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

size_t
harness_count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t count = 0, nlen = strlen(needle), len = 0, cap = 1 << 16, got;
    char *buf = malloc(cap);
    while ((got = fread(buf + len, 1, cap - len, f)) > 0)
        if ((len += got) == cap)
            buf = realloc(buf, cap *= 2);
    fclose(f);
    for (size_t i = 0; nlen && i + nlen <= len; i++)
        count += !memcmp(buf + i, needle, nlen);
    free(buf);
    return count;
}

pid_t
harness_capture_start(const char *iface, const char *filter, const char *pcap)
{
    char errf[512];
    snprintf(errf, sizeof errf, "%s.err", pcap);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Only async-signal-safe calls: the test has threads. */
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with a failed test */
        int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(126);
        execl("/usr/bin/tcpdump", "tcpdump", "-i", iface, "-U", "-s", "0", "-w",
              pcap, filter, (char *)NULL);
        _exit(127);
    }
    /* tcpdump says "listening on" once it captures. */
    double end = harness_now_ms() + 10000;
    while (!harness_count_in_file(errf, "listening on") &&
           harness_now_ms() < end)
        usleep(20000);
    if (harness_count_in_file(errf, "listening on"))
        return pid;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

void
harness_capture_stop(pid_t pid, const char *pcap, const char *marker,
                     size_t want)
{
    double end = harness_now_ms() + 5000;
    while (harness_count_in_file(pcap, marker) < want && harness_now_ms() < end)
        usleep(20000);
    kill(pid, SIGINT); /* tcpdump flushes and exits */
    end = harness_now_ms() + 5000;
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        if (harness_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return;
        }
        usleep(10000);
    }
}

static int skipped;

void
harness_note_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("skipped: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    skipped++;
}

int
harness_group_status(int failed)
{
    if (failed == 0 && skipped > 0) {
        fprintf(stderr, "%d test(s) skipped, none failed: exit 77\n", skipped);
        return 77;
    }
    return failed;
}

/* libdw through dlopen, as kin itself loads it: a test program linked
 * against it would map it from the start, and tests that check kin maps
 * it only when a stack is asked for would see it anyway. */
static struct {
    Dwarf *(*begin)(int, Dwarf_Cmd);
    int (*nextcu)(Dwarf *, Dwarf_Off, Dwarf_Off *, size_t *, Dwarf_Off *,
                  uint8_t *, uint8_t *);
    Dwarf_Die *(*offdie)(Dwarf *, Dwarf_Off, Dwarf_Die *);
    const char *(*diename)(Dwarf_Die *);
    int (*end)(Dwarf *);
} dwf;

static bool
load_libdw(void)
{
    void *lib = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
    return lib && (*(void **)&dwf.begin = dlsym(lib, "dwarf_begin")) &&
           (*(void **)&dwf.nextcu = dlsym(lib, "dwarf_nextcu")) &&
           (*(void **)&dwf.offdie = dlsym(lib, "dwarf_offdie")) &&
           (*(void **)&dwf.diename = dlsym(lib, "dwarf_diename")) &&
           (*(void **)&dwf.end = dlsym(lib, "dwarf_end"));
}

/* What harness_has_debug_info asks and answers, on its own thread. */
typedef struct {
    const char *file;
    bool found;
} debug_info_job;

static void *
debug_info_main(void *arg)
{
    debug_info_job *j = arg;
    if (!load_libdw())
        return NULL;
    const char *base = strrchr(j->file, '/');
    base = base ? base + 1 : j->file;
    size_t blen = strlen(base);
    bool found = false;
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    Dwarf *dw = dwf.begin(fd, DWARF_C_READ);
    Dwarf_Off off = 0, next;
    size_t hsize;
    while (dw && !found &&
           dwf.nextcu(dw, off, &next, &hsize, NULL, NULL, NULL) == 0) {
        Dwarf_Die die;
        const char *name =
            dwf.offdie(dw, off + hsize, &die) ? dwf.diename(&die) : NULL;
        size_t len = name ? strlen(name) : 0;
        found = len >= blen && strcmp(name + len - blen, base) == 0;
        off = next;
    }
    if (dw)
        dwf.end(dw);
    close(fd);
    j->found = found;
    return NULL;
}

/* libdw and libelf keep thread-local state, which glibc allocates with
 * malloc for a library loaded with dlopen. GCC 12's LeakSanitizer takes
 * such a block that happens to start 16 bytes into a page for a glibc
 * 2.18 one, reads a bogus range from the allocator's chunk header and
 * crashes at the exit-time leak check ("Tracer caught signal 11" at a
 * small address) if the thread that owns the block still runs then. A
 * thread of its own, gone before the check, leaves no such block behind
 * (if the thread cannot start, the caller's thread asks: the old way). */
bool
harness_has_debug_info(const char *file)
{
    debug_info_job j = {.file = file};
    pthread_t t;
    if (pthread_create(&t, NULL, debug_info_main, &j))
        debug_info_main(&j);
    else
        pthread_join(t, NULL);
    return j.found;
}

bool
harness_log_arrives(kin_node *n, uint32_t ctx, const char *fn, const char *msg,
                    int timeout_ms)
{
    kin_logsub_opts so = {.endpoint = kin_logs_frontend(n),
                          .min_level = KIN_LOG_WARNING};
    kin_logsub *s = NULL;
    if (kin_logsub_new(&s, &so) != KIN_OK)
        return false;
    bool found = false;
    double end = harness_now_ms() + timeout_ms;
    while (!found && harness_now_ms() < end) {
        kin_msg *reply = NULL;
        if (kin_call_sync(n, ctx, fn, 5000, &reply, "") != KIN_OK)
            break;
        kin_msg_destroy(&reply);
        const kin_logrec *r;
        while (!found && kin_logsub_next(s, 50, &r) == KIN_OK)
            found = r->kind == KIN_LOGREC_LOG && !strcmp(r->msg, msg) &&
                    r->ctx == ctx;
    }
    kin_logsub_destroy(&s);
    return found;
}

/* --- stacks on abort ------------------------------------------------------
 */

static void
print_frames(const kin__frame *f, int n)
{
    for (int i = 0; i < n; i++)
        if (f[i].file[0])
            fprintf(stderr, "  #%-2d %s at %s:%d\n", i, f[i].fn, f[i].file,
                    f[i].line);
        else
            fprintf(stderr, "  #%-2d %s (0x%lx)\n", i, f[i].fn,
                    (unsigned long)f[i].addr);
}

static void
thread_name(int tid, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(out, (int)size, f))
            out[strcspn(out, "\n")] = 0;
        fclose(f);
    }
}

/* Not async-signal-safe past the unwinding (symbols are read with malloc,
 * stdio prints them): the process is dying anyway, and an alarm ends it
 * should the heap it aborted on be locked. Its name ends in "on_signal" as
 * kin's own capture handler's does: kin__sym_frames leaves it and the
 * signal trampoline out of the stack. */
static void
abort_on_signal(int sig)
{
    (void)sig;
    int self = (int)syscall(SYS_gettid);
    uintptr_t ips[KIN_STACK_MAX];
    int count = kin__stack_capture_raw(self, ips, KIN_STACK_MAX, 0);
    alarm(30);
    fflush(stdout);
    char name[32];
    thread_name(self, name, sizeof name);
    fprintf(stderr, "\n=== SIGABRT in thread %d (%s) of process %d:\n", self,
            name, (int)getpid());
    kin__frame frames[KIN_STACK_MAX];
    kin__symbolizer *sym = kin__sym_open();
    if (count > 0)
        print_frames(frames,
                     kin__sym_frames(sym, ips, count, frames, KIN_STACK_MAX));
    else
        fprintf(stderr, "  (no stack: %s)\n", strerror(-count));
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        int tid = atoi(de->d_name);
        if (tid <= 0 || tid == self)
            continue;
        thread_name(tid, name, sizeof name);
        fprintf(stderr, "=== thread %d (%s):\n", tid, name);
        int n = kin__stack_capture_raw(tid, ips, KIN_STACK_MAX, 1000);
        if (n > 0)
            print_frames(frames,
                         kin__sym_frames(sym, ips, n, frames, KIN_STACK_MAX));
        else
            fprintf(stderr, "  (no stack: %s)\n",
                    n == -EPERM ? "it blocks the capture signal"
                                : strerror(-n));
    }
    if (d)
        closedir(d);
    kin__sym_close(sym);
    fprintf(stderr, "=== end of stacks\n");
    /* SA_RESETHAND made the action the default: dies of it once this
     * handler returns, whether abort() or a kill sent it. */
    raise(SIGABRT);
}

void
harness_stacks_on_abort(void)
{
    /* Loads the unwinder and the symbolizer now, not in the handler. */
    uintptr_t ips[4];
    kin__stack_capture_raw((int)syscall(SYS_gettid), ips, 4, 0);
    kin__sym_close(kin__sym_open());
    struct sigaction sa = {.sa_handler = abort_on_signal,
                           .sa_flags = SA_RESETHAND};
    sigaction(SIGABRT, &sa, NULL);
}
