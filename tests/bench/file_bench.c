/* kin-file-bench: a file pushed to and pulled from a local child
 * (kin_push_file, kin_pull_file), next to a raw libzmq program doing the
 * same work in the same run: read the file, XXH3-hash it, send it in
 * chunks over a DEALER/ROUTER pair to another process that receives,
 * hashes and writes a temporary file, then checks the checksum, sets the
 * mode, fsyncs and renames it (docs/performance.md). The executable is
 * also its peers: the zmq receiver (--zmq-recv EP DIR) and a kin child. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zmq.h>

#include <kin/file.h>
#include <kin/kin.h>

#include "tests/bench/bench_stats.h"

#define MIB (1024.0 * 1024.0)
#define IO_TIMEOUT 60000 /* ms: any single zmq wait longer is a fault */
#define ZMQ_WINDOW 4     /* chunks queued each way: bounded memory */

typedef struct config {
    bool json, zmq;
    uint64_t size;  /* bytes */
    size_t chunk;   /* bytes per chunk, both sides */
    int rounds;     /* each figure is the median of this many */
    char base[256]; /* where the private directory goes */
    char self[PATH_MAX];
} config;

typedef struct results {
    double push_mib_s, pull_mib_s, zmq_file_mib_s, push_pct, pull_pct;
} results;

/* --- the raw zmq program ------------------------------------------------- */

/* Type frames of the raw program: open (size, mode), a chunk, close
 * (size, hash); the receiver answers open and close with one status byte
 * (0: ok). */
enum { Z_OPEN = 'o', Z_WRITE = 'w', Z_CLOSE = 'c' };

static int
zrecv_msg(void *s, zmq_msg_t *m)
{
    zmq_msg_init(m);
    int rc = zmq_msg_recv(m, s, 0);
    if (rc < 0)
        zmq_msg_close(m);
    return rc;
}

/* The receiver: binds ep, writes dir/zmq.out. Exits 0 after one file. */
static int
zmq_recv_main(const char *ep, const char *dir)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int hwm = ZMQ_WINDOW, tmo = IO_TIMEOUT;
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    if (zmq_bind(s, ep)) {
        fprintf(stderr, "zmq-recv: bind %s: %s\n", ep, zmq_strerror(errno));
        return 1;
    }
    char tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.zmq.out.XXXXXX", dir);
    snprintf(dst, sizeof dst, "%s/zmq.out", dir);
    int fd = -1, rc = 1;
    uint64_t size = 0, got = 0;
    unsigned mode = 0600;
    XXH3_state_t *h = XXH3_createState();
    XXH3_64bits_reset(h);
    for (;;) {
        zmq_msg_t id, type, body;
        if (zrecv_msg(s, &id) < 0)
            break;
        if (zrecv_msg(s, &type) < 0 || zrecv_msg(s, &body) < 0) {
            zmq_msg_close(&id);
            break;
        }
        char t = *(char *)zmq_msg_data(&type);
        const char *p = zmq_msg_data(&body);
        size_t len = zmq_msg_size(&body);
        char status = 0;
        bool reply = t != Z_WRITE, done = t == Z_CLOSE;
        if (t == Z_OPEN && len == 12) {
            memcpy(&size, p, 8);
            memcpy(&mode, p + 8, 4);
            fd = mkostemp(tmp, O_CLOEXEC);
            status = fd < 0 || (size && posix_fallocate(fd, 0, (off_t)size));
        } else if (t == Z_WRITE && fd >= 0) {
            if (pwrite(fd, p, len, (off_t)got) != (ssize_t)len)
                status = 1;
            XXH3_64bits_update(h, p, len);
            got += len;
        } else if (t == Z_CLOSE && fd >= 0 && len == 16) {
            uint64_t sz, sum;
            memcpy(&sz, p, 8);
            memcpy(&sum, p + 8, 8);
            status = sz != got || sz != size || sum != XXH3_64bits_digest(h) ||
                     fchmod(fd, mode) || fsync(fd) || close(fd) ||
                     rename(tmp, dst);
            fd = -1;
            rc = status;
        } else {
            status = 1;
            reply = done = true;
        }
        if (reply) {
            zmq_msg_send(&id, s, ZMQ_SNDMORE);
            zmq_send(s, &status, 1, 0);
        } else {
            zmq_msg_close(&id);
        }
        zmq_msg_close(&type);
        zmq_msg_close(&body);
        if (done)
            break;
    }
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    XXH3_freeState(h);
    int linger = IO_TIMEOUT;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}

static bool
zsend2(void *s, char type, const void *p, size_t len)
{
    return zmq_send(s, &type, 1, ZMQ_SNDMORE) == 1 &&
           zmq_send(s, p, len, 0) == (int)len;
}

static bool
zwait_ok(void *s)
{
    char st = 1;
    return zmq_recv(s, &st, 1, 0) == 1 && st == 0;
}

/* Sends src to a receiver (started here, reaped here); the rate in MiB/s,
 * NAN on failure. */
static double
zmq_file_once(const config *cfg, const char *dir, const char *src)
{
    char ep[PATH_MAX + 8];
    snprintf(ep, sizeof ep, "ipc://%s/zmq.sock", dir);
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {"kin-file-bench", "--zmq-recv", ep, (char *)dir, NULL};
        execv(cfg->self, argv);
        _exit(127);
    }
    if (pid < 0)
        return NAN;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = ZMQ_WINDOW, tmo = IO_TIMEOUT, linger = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(s, ep);
    char *buf = malloc(cfg->chunk);
    XXH3_state_t *h = XXH3_createState();
    XXH3_64bits_reset(h);
    double rate = NAN;
    uint64_t t0 = now_ns();
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    struct stat st;
    bool ok = buf && fd >= 0 && !fstat(fd, &st);
    char open_args[12];
    uint64_t size = ok ? (uint64_t)st.st_size : 0, sent = 0;
    unsigned mode = ok ? (unsigned)(st.st_mode & 07777) : 0;
    memcpy(open_args, &size, 8);
    memcpy(open_args + 8, &mode, 4);
    ok = ok && zsend2(s, Z_OPEN, open_args, sizeof open_args) && zwait_ok(s);
    while (ok && sent < size) {
        size_t want = size - sent < cfg->chunk ? size - sent : cfg->chunk;
        ssize_t got = pread(fd, buf, want, (off_t)sent);
        if (got <= 0) {
            ok = false;
            break;
        }
        XXH3_64bits_update(h, buf, (size_t)got);
        ok = zsend2(s, Z_WRITE, buf, (size_t)got);
        sent += (uint64_t)got;
    }
    uint64_t close_args[2] = {sent, XXH3_64bits_digest(h)};
    ok = ok && zsend2(s, Z_CLOSE, close_args, sizeof close_args) && zwait_ok(s);
    uint64_t t1 = now_ns();
    if (ok)
        rate = (double)size / MIB / ((double)(t1 - t0) / 1e9);
    if (fd >= 0)
        close(fd);
    free(buf);
    XXH3_freeState(h);
    zmq_close(s);
    zmq_ctx_term(ctx);
    int status = bench_reap(pid, ok ? IO_TIMEOUT : 0);
    if (!ok || status != 0) {
        fprintf(stderr, "kin-file-bench: the raw zmq transfer failed\n");
        rate = NAN;
    }
    return rate;
}

/* --- kin ------------------------------------------------------------------ */

static double
kin_once(kin_node *n, uint32_t child, const config *cfg, bool push,
         const char *src, const char *dst)
{
    char err[256] = "";
    kin_file_opts o = {.timeout_ms = IO_TIMEOUT,
                       .chunk_size = cfg->chunk,
                       .errbuf = err,
                       .errbuf_size = sizeof err};
    uint64_t t0 = now_ns();
    kin_err e = push ? kin_push_file(n, child, src, dst, &o)
                     : kin_pull_file(n, child, src, dst, &o);
    uint64_t t1 = now_ns();
    if (e) {
        fprintf(stderr, "kin-file-bench: %s: %s (%s)\n",
                push ? "kin_push_file" : "kin_pull_file", kin_strerror(e), err);
        return NAN;
    }
    return (double)cfg->size / MIB / ((double)(t1 - t0) / 1e9);
}

/* Fills path with size bytes that are not all alike (xorshift). */
static int
make_source(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    size_t blk = 1 << 20;
    uint64_t *buf = malloc(blk), x = 0x9e3779b97f4a7c15ull;
    int rc = buf ? 0 : -ENOMEM;
    for (uint64_t done = 0; !rc && done < size;) {
        for (size_t i = 0; i < blk / 8; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = x;
        }
        size_t len = size - done < blk ? (size_t)(size - done) : blk;
        if (write(fd, buf, len) != (ssize_t)len)
            rc = -EIO;
        done += len;
    }
    free(buf);
    if (fsync(fd) && !rc)
        rc = -errno;
    close(fd);
    return rc;
}

static double
median_of(double *v, int n)
{
    uint64_t u[64];
    int k = 0;
    for (int i = 0; i < n && k < 64; i++)
        if (!isnan(v[i]))
            u[k++] = (uint64_t)(v[i] * 1000.0);
    return k == n ? median(u, (size_t)k) / 1000.0 : NAN;
}

static int
run(const config *cfg, results *r)
{
    char dir[512], src[600], out[600], zout[600], zsock[600];
    snprintf(dir, sizeof dir, "%s/kin-file-bench-XXXXXX", cfg->base);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "kin-file-bench: mkdtemp in %s: %s\n", cfg->base,
                strerror(errno));
        return 1;
    }
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(zout, sizeof zout, "%s/zmq.out", dir);
    snprintf(zsock, sizeof zsock, "%s/zmq.sock", dir);
    int rc = 1;
    kin_node *n = NULL;
    kin_child *kc = NULL;
    uint32_t child = 0;
    kin_err e = make_source(src, cfg->size);
    if (e)
        fprintf(stderr, "kin-file-bench: writing %s: %s\n", src, strerror(-e));
    else if ((e = kin_init(&n, NULL)))
        fprintf(stderr, "kin-file-bench: kin_init: %s\n", kin_strerror(e));
    else if ((e = kin_spawn(n, NULL, &kc)))
        fprintf(stderr, "kin-file-bench: kin_spawn: %s\n", kin_strerror(e));
    else
        child = kin_child_id(kc);
    double push[64], pull[64], zmq[64];
    for (int i = 0; !e && i < cfg->rounds; i++) {
        zmq[i] = cfg->zmq ? zmq_file_once(cfg, dir, src) : NAN;
        unlink(zout);
        push[i] = kin_once(n, child, cfg, true, src, out);
        unlink(out);
        pull[i] = kin_once(n, child, cfg, false, src, out);
        unlink(out);
        if (isnan(push[i]) || isnan(pull[i]) || (cfg->zmq && isnan(zmq[i])))
            e = -EIO;
    }
    if (!e) {
        r->push_mib_s = median_of(push, cfg->rounds);
        r->pull_mib_s = median_of(pull, cfg->rounds);
        r->zmq_file_mib_s = cfg->zmq ? median_of(zmq, cfg->rounds) : NAN;
        r->push_pct = 100.0 * r->push_mib_s / r->zmq_file_mib_s;
        r->pull_pct = 100.0 * r->pull_mib_s / r->zmq_file_mib_s;
        rc = 0;
    }
    int status = -1;
    if (kc && (kin_child_stop(kc, &status) || status != 0)) {
        fprintf(stderr, "kin-file-bench: the child did not stop cleanly\n");
        rc = 1;
    }
    kin_child_destroy(&kc);
    kin_node_destroy(&n);
    unlink(src);
    unlink(out);
    unlink(zout);
    unlink(zsock);
    if (rmdir(dir)) {
        fprintf(stderr, "kin-file-bench: %s left behind: %s\n", dir,
                strerror(errno));
        rc = 1;
    }
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: kin-file-bench [--json] [--quick] [--size MIB] "
               "[--chunk KIB] [--rounds N] [--dir DIR] [--no-zmq]\n"
               "  --size MIB   the file's size (default 1024; --quick: 64)\n"
               "  --chunk KIB  bytes per chunk (default 256)\n"
               "  --rounds N   each figure the median of N runs (default 3; "
               "--quick: 1)\n"
               "  --dir DIR    where the private directory goes (default "
               "$TMPDIR or /tmp)\n");
}

static int
parse_args(int argc, char **argv, config *cfg)
{
    const char *tmp = getenv("TMPDIR");
    *cfg = (config){
        .zmq = true, .size = 1024ull << 20, .chunk = 256 << 10, .rounds = 3};
    snprintf(cfg->base, sizeof cfg->base, "%s", tmp && *tmp ? tmp : "/tmp");
    bool sized = false, rounded = false, quick = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            cfg->json = true;
        } else if (!strcmp(a, "--quick")) {
            quick = true;
        } else if (!strcmp(a, "--no-zmq")) {
            cfg->zmq = false;
        } else if (!strcmp(a, "--size") && v && atoi(v) > 0) {
            cfg->size = (uint64_t)atoi(v) << 20;
            sized = true;
            i++;
        } else if (!strcmp(a, "--chunk") && v && atoi(v) > 0 &&
                   atoi(v) <= 4096) {
            cfg->chunk = (size_t)atoi(v) << 10;
            i++;
        } else if (!strcmp(a, "--rounds") && v && atoi(v) > 0 &&
                   atoi(v) <= 64) {
            cfg->rounds = atoi(v);
            rounded = true;
            i++;
        } else if (!strcmp(a, "--dir") && v) {
            snprintf(cfg->base, sizeof cfg->base, "%s", v);
            i++;
        } else {
            return -1;
        }
    }
    if (quick && !sized)
        cfg->size = 64ull << 20;
    if (quick && !rounded)
        cfg->rounds = 1;
    ssize_t k = readlink("/proc/self/exe", cfg->self, sizeof cfg->self - 1);
    if (k <= 0)
        return -1;
    cfg->self[k] = 0;
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--zmq-recv"))
        return zmq_recv_main(argv[2], argv[3]);
    if (kin_started_as_child()) {
        kin_node *n;
        return kin_init(&n, NULL) ? 1 : 0;
    }
    config cfg;
    if (parse_args(argc, argv, &cfg)) {
        usage(stderr);
        return 2;
    }
    results r = {NAN, NAN, NAN, NAN, NAN};
    int rc = run(&cfg, &r);
    double mib = (double)cfg.size / MIB;
    if (cfg.json) {
        printf("{\"size_mib\":%.0f,\"chunk_kib\":%zu,\"rounds\":%d", mib,
               cfg.chunk >> 10, cfg.rounds);
        const char *keys[] = {"push_mib_s", "pull_mib_s", "zmq_file_mib_s",
                              "push_pct", "pull_pct"};
        const double vals[] = {r.push_mib_s, r.pull_mib_s, r.zmq_file_mib_s,
                               r.push_pct, r.pull_pct};
        for (int i = 0; i < 5; i++) {
            if (isnan(vals[i]))
                printf(",\"%s\":null", keys[i]);
            else
                printf(",\"%s\":%.1f", keys[i], vals[i]);
        }
        printf("}\n");
    } else {
        printf("%.0f MiB file, %zu KiB chunks, to a local child in %s, "
               "median of %d\n\n",
               mib, cfg.chunk >> 10, cfg.base, cfg.rounds);
        printf("%-34s %10s %8s\n", "transfer", "MiB/s", "% zmq");
        printf("%-34s %10.1f %8s\n", "raw zmq (read, hash, send; write)",
               r.zmq_file_mib_s, "100");
        printf("%-34s %10.1f %8.1f\n", "kin_push_file", r.push_mib_s,
               r.push_pct);
        printf("%-34s %10.1f %8.1f\n", "kin_pull_file", r.pull_mib_s,
               r.pull_pct);
    }
    return rc;
}
