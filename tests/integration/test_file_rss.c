/* A big file pushed to a local child and pulled back (1 GiB; the
 * environment's KIN_TEST_FILE_MIB for another size) raises neither side's
 * resident memory by more than 32 MiB: the transfer streams in chunks with
 * a bounded window, the file is never held whole. VmRSS of this process
 * (the sender of the push, the receiver of the pull) and of the child is
 * sampled from the progress callback all through, and once more after. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "integration/harness.h"

#include <kin/file.h>
#include <kin/kin.h>

#define LIMIT_KIB (32 * 1024)

/* ASan keeps freed memory in a quarantine (256 MiB by default), which
 * would count here as resident; the child runs this executable too. */
__attribute__((visibility("default"), used)) const char *
__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "quarantine_size_mb=4";
}

static kin_node *master;

typedef struct fx {
    kin_child *kid;
    char dir[64];
} fx;

/* VmRSS of pid (0: this process) in KiB; -1 if unreadable. */
static long
rss_kib(pid_t pid)
{
    char path[64], line[256];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

typedef struct sampler {
    pid_t child;
    long self_max, child_max;
    int calls, samples;
    uint64_t last;
} sampler;

static void
sample(sampler *s)
{
    long a = rss_kib(0), b = rss_kib(s->child);
    if (a > s->self_max)
        s->self_max = a;
    if (b > s->child_max)
        s->child_max = b;
    s->samples++;
}

static void
on_progress(uint64_t sent, uint64_t total, void *arg)
{
    sampler *s = arg;
    s->last = sent;
    if (s->calls++ % 8 == 0) /* every 2 MiB of 256 KiB chunks */
        sample(s);
}

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    /* 2 GiB are written: into RAM (/dev/shm) when it has room, so that a
     * small disk does not fail the test; written pages there are not the
     * processes' RSS. */
    struct statvfs vs;
    bool shm = statvfs("/dev/shm", &vs) == 0 &&
               (unsigned long long)vs.f_bavail * vs.f_frsize > (3ull << 30);
    snprintf(f->dir, sizeof f->dir, "%s/kin-test-file-rss-XXXXXX",
             shm ? "/dev/shm" : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    kin_child_destroy(&f->kid);
    int rc;
    free(harness_run(&rc, "rm -rf %s", f->dir));
    free(f);
    return 0;
}

/* Pushes (or pulls) src to dst with the sampler; checks the growth of
 * both sides over base_self / base_child. */
static void
transfer(bool push, uint32_t ctx, const char *src, const char *dst,
         uint64_t size, pid_t child, long base_self, long base_child)
{
    sampler s = {.child = child};
    char err[256] = "";
    kin_file_opts o = {.timeout_ms = 60000,
                       .progress = on_progress,
                       .progress_arg = &s,
                       .errbuf = err,
                       .errbuf_size = sizeof err};
    kin_err e = push ? kin_push_file(master, ctx, src, dst, &o)
                     : kin_pull_file(master, ctx, src, dst, &o);
    if (e)
        fprintf(stderr, "%s: %s (%s)\n", push ? "push" : "pull",
                kin_strerror(e), err);
    assert_int_equal(e, KIN_OK);
    sample(&s);
    assert_int_equal(s.last, size);
    assert_true(s.samples >= 8);
    struct stat st;
    assert_int_equal(stat(dst, &st), 0);
    assert_int_equal((uint64_t)st.st_size, size);
    fprintf(stderr,
            "%s of %llu MiB: this process %ld -> %ld KiB, the child %ld -> "
            "%ld KiB (%d samples)\n",
            push ? "push" : "pull", (unsigned long long)(size >> 20), base_self,
            s.self_max, base_child, s.child_max, s.samples);
    assert_true(s.self_max - base_self <= LIMIT_KIB);
    assert_true(s.child_max - base_child <= LIMIT_KIB);
    unlink(dst);
}

static void
big_transfer_keeps_rss_flat(void **state)
{
    fx *f = *state;
    const char *mib_env = getenv("KIN_TEST_FILE_MIB");
    uint64_t mib =
        mib_env && atoi(mib_env) > 0 ? (uint64_t)atoi(mib_env) : 1024;
    uint64_t size = mib << 20;
    char src[128], dst[128], warm[128];
    snprintf(src, sizeof src, "%s/src", f->dir);
    snprintf(dst, sizeof dst, "%s/dst", f->dir);
    snprintf(warm, sizeof warm, "%s/warm", f->dir);
    /* A sparse source: read as zeros without touching the disk. */
    int fd = open(src, O_WRONLY | O_CREAT | O_EXCL, 0640);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
    fd = open(warm, O_WRONLY | O_CREAT | O_EXCL, 0640);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 8 << 20), 0);
    close(fd);

    assert_int_equal(kin_spawn(master, NULL, &f->kid), KIN_OK);
    uint32_t ctx = kin_child_id(f->kid);
    pid_t pid = kin_child_pid(f->kid);
    /* Warm up both ways with a small file: buffers, workers and the
     * allocator's arenas in place before the baseline. */
    kin_file_opts none = {.timeout_ms = 60000};
    assert_int_equal(kin_push_file(master, ctx, warm, dst, &none), KIN_OK);
    assert_int_equal(kin_pull_file(master, ctx, dst, warm, &none), KIN_OK);
    unlink(dst);

    long self0 = rss_kib(0), child0 = rss_kib(pid);
    assert_true(self0 > 0 && child0 > 0);
    transfer(true, ctx, src, dst, size, pid, self0, child0);
    transfer(false, ctx, src, dst, size, pid, self0, child0);
    unlink(src);
    unlink(warm);
}

int
main(void)
{
    harness_log_setup();
    char rt[] = "/tmp/kin-test-file-rss-rt-XXXXXX";
    bool own_rt = !kin_started_as_child() && mkdtemp(rt);
    if (own_rt)
        setenv("XDG_RUNTIME_DIR", rt, 1);
    kin_err e = kin_init(&master, NULL);
    if (e) {
        fprintf(stderr, "kin_init: %s\n", kin_strerror(e));
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(big_transfer_keeps_rss_flat, setup,
                                        teardown),
    };
    int rc = harness_run_group(tests);
    kin_node_destroy(&master);
    if (own_rt) {
        char sub[64];
        snprintf(sub, sizeof sub, "%s/kin", rt);
        if ((rmdir(sub) && errno != ENOENT) || rmdir(rt)) {
            fprintf(stderr, "runtime directory %s not empty\n", rt);
            rc = rc ? rc : 1;
        }
    }
    return rc;
}
