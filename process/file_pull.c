/* kin_pull_file and the built-ins that serve it: kin.file_stat gives a
 * file's size and mode, kin.file_read a chunk of it, kin.file_hash the
 * XXH3-64 of its first SIZE bytes once the copy is complete. The puller
 * writes a hidden temporary file beside the destination and renames it
 * only when size and checksum match. */
#include <kin/file.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <kin/call.h>
#include <kin/pack.h>

#include "process/file_xfer.h"
#include "process/procs.h"

#define CHUNK_DEFAULT (256 * 1024)
#define CHUNK_MAX (4 * 1024 * 1024)
/* kin.file_read calls in flight (answered in order): one, for the
 * reason given in file_push.c. */
#define WINDOW 4

/* Opens path for a served step; fails the call with the reason. */
static int
open_served(kin_call *c, const char *path, kin_err *e)
{
    kin__procs *p = kin__procs_of(kin_call_node(c));
    if (!p || p->spawn_refused) {
        *e = kin_call_fail(c, KIN_EREFUSED,
                           "this context runs as another user than its "
                           "parent: it gives no files");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && !fstat(fd, &st) && !S_ISREG(st.st_mode)) {
        close(fd);
        fd = -1;
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    }
    if (fd < 0) {
        int err = errno;
        *e = kin_call_fail(c, -err, "%s: %s", path, strerror(err));
    }
    return fd;
}

/* kin.file_stat(path) -> size, mode */
static kin_err
serve_stat(kin_call *c, void *arg)
{
    char *path = NULL;
    kin_err e = KIN_OK;
    if (kin_call_args(c, "s", &path) || !path)
        e = kin_call_fail(c, -EINVAL, "kin.file_stat: bad arguments");
    int fd = e ? -1 : open_served(c, path, &e);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st))
        e = kin_call_fail(c, -errno, "%s: %s", path, strerror(errno));
    else if (fd >= 0)
        e = kin_call_return(c, "Uu", (uint64_t)st.st_size,
                            (unsigned)(st.st_mode & 07777));
    if (fd >= 0)
        close(fd);
    free(path);
    return e;
}

/* kin.file_read(path, offset, len) -> bytes (fewer at the end) */
static kin_err
serve_read(kin_call *c, void *arg)
{
    char *path = NULL;
    uint64_t off = 0;
    unsigned len = 0;
    kin_err e = KIN_OK;
    if (kin_call_args(c, "sUu", &path, &off, &len) || !path || len > CHUNK_MAX)
        e = kin_call_fail(c, -EINVAL, "kin.file_read: bad arguments");
    int fd = e ? -1 : open_served(c, path, &e);
    char *buf = fd >= 0 ? malloc(len ? len : 1) : NULL;
    if (fd >= 0 && !buf)
        e = -ENOMEM;
    size_t got = 0;
    while (buf && got < len) {
        ssize_t k = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            e = kin_call_fail(c, -errno, "%s: %s", path, strerror(errno));
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    if (buf && !e)
        e = kin_call_return(c, "B", buf, got);
    free(buf);
    if (fd >= 0)
        close(fd);
    free(path);
    return e;
}

/* kin.file_hash(path, size) -> XXH3-64 of its first size bytes */
static kin_err
serve_hash(kin_call *c, void *arg)
{
    char *path = NULL;
    uint64_t size = 0;
    kin_err e = KIN_OK;
    if (kin_call_args(c, "sU", &path, &size) || !path)
        e = kin_call_fail(c, -EINVAL, "kin.file_hash: bad arguments");
    int fd = e ? -1 : open_served(c, path, &e);
    char *buf = fd >= 0 ? malloc(CHUNK_DEFAULT) : NULL;
    XXH3_state_t *h = buf ? XXH3_createState() : NULL;
    if (fd >= 0 && (!h || XXH3_64bits_reset(h) == XXH_ERROR))
        e = -ENOMEM;
    uint64_t done = 0;
    while (!e && done < size) {
        size_t want =
            size - done < CHUNK_DEFAULT ? (size_t)(size - done) : CHUNK_DEFAULT;
        ssize_t k = pread(fd, buf, want, (off_t)done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            e = kin_call_fail(c, -EIO, "%s changed while being read", path);
            break;
        }
        XXH3_64bits_update(h, buf, (size_t)k);
        done += (uint64_t)k;
    }
    if (fd >= 0 && !e)
        e = kin_call_return(c, "U", (uint64_t)XXH3_64bits_digest(h));
    XXH3_freeState(h);
    free(buf);
    if (fd >= 0)
        close(fd);
    free(path);
    return e;
}

void
kin__pull_export(void)
{
    kin_export("kin.file_stat", serve_stat, NULL, KIN_POLICY_PARENT);
    kin_export("kin.file_read", serve_read, NULL, KIN_POLICY_PARENT);
    kin_export("kin.file_hash", serve_hash, NULL, KIN_POLICY_PARENT);
}

/* --- the puller ------------------------------------------------------------
 */

static bool
write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        len -= (size_t)k;
    }
    return true;
}

/* The local temporary file beside dst; -errno on failure. */
static int
make_temp(const char *dst, char **tmp)
{
    const char *slash = strrchr(dst, '/');
    const char *base = slash ? slash + 1 : dst;
    int dl = slash ? (int)(slash - dst) : 1;
    const char *dir = slash ? dst : ".";
    if (!*base)
        return -EISDIR;
    struct stat st;
    if (!stat(dst, &st) && S_ISDIR(st.st_mode))
        return -EISDIR;
    if (asprintf(tmp, "%.*s/.%s.kin-XXXXXX", slash == dst ? 0 : dl, dir, base) <
        0) {
        *tmp = NULL;
        return -ENOMEM;
    }
    int fd = mkostemp(*tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        free(*tmp);
        *tmp = NULL;
        return e;
    }
    return fd;
}

kin_err
kin_pull_file(kin_node *n, uint32_t ctx, const char *src, const char *dst,
              const kin_file_opts *opts)
{
    kin_file_opts none = {0};
    const kin_file_opts *o = opts ? opts : &none;
    if (o->errbuf && o->errbuf_size)
        o->errbuf[0] = 0;
    if (!src || !dst || src[0] != '/' || !*dst)
        return -EINVAL;
    int timeout = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    size_t chunk = o->chunk_size ? o->chunk_size : CHUNK_DEFAULT;
    if (chunk > CHUNK_MAX)
        chunk = CHUNK_MAX;
    kin_msg *r = NULL;
    uint64_t total = 0;
    unsigned mode = 0;
    kin_err e = kin_call_sync(n, ctx, "kin.file_stat", timeout, &r, "s", src);
    if (!(e = kin__file_step(ctx, "kin.file_stat", &r, o, e)))
        e = kin_msg_unpack(r, "Uu", &total, &mode);
    kin_msg_destroy(&r);
    if (e)
        return e;
    char *tmp = NULL;
    int fd = make_temp(dst, &tmp);
    if (fd < 0)
        return fd;
    if (total && (errno = posix_fallocate(fd, 0, (off_t)total)) &&
        errno != EOPNOTSUPP && errno != EINVAL)
        e = -errno;
    XXH3_state_t *hash = XXH3_createState();
    if (!e && (!hash || XXH3_64bits_reset(hash) == XXH_ERROR))
        e = -ENOMEM;
    uint64_t got = 0, asked = 0;
    /* Up to WINDOW reads in flight, a ring of their receivers, the
     * oldest at head; each chunk is written as its answer comes. */
    kin_receiver *rx[WINDOW] = {0};
    unsigned wants[WINDOW] = {0}, head = 0, count = 0;
    while (!e && (asked < total || count)) {
        if (asked < total && count < WINDOW) {
            unsigned want = (unsigned)(total - asked < chunk ? total - asked
                                                             : (uint64_t)chunk);
            unsigned slot = (head + count) % WINDOW;
            e = kin_call_async(n, ctx, "kin.file_read", &rx[slot], "sUu", src,
                               asked, want);
            if ((e = kin__file_step(ctx, "kin.file_read", &r, o, e)))
                break;
            wants[slot] = want;
            asked += want;
            count++;
            continue;
        }
        e = kin_call_wait(rx[head], timeout, &r);
        kin_receiver_destroy(&rx[head]);
        const void *p = NULL;
        size_t len = 0;
        if (!(e = kin__file_step(ctx, "kin.file_read", &r, o, e)))
            e = kin_msg_unpack(r, "B", &p, &len);
        if (!e && len != wants[head])
            e = -EIO; /* shrunk while being pulled */
        if (!e && !write_all(fd, p, len))
            e = -errno;
        if (!e) {
            XXH3_64bits_update(hash, p, len);
            got += len;
            if (o->progress)
                o->progress(got, total, o->progress_arg);
        }
        kin_msg_destroy(&r);
        head = (head + 1) % WINDOW;
        count--;
    }
    for (unsigned i = 0; i < WINDOW; i++)
        kin_receiver_destroy(&rx[i]);
    uint64_t sum = 0;
    if (!e) {
        e = kin_call_sync(n, ctx, "kin.file_hash", timeout, &r, "sU", src,
                          total);
        if (!(e = kin__file_step(ctx, "kin.file_hash", &r, o, e)))
            e = kin_msg_unpack(r, "U", &sum);
        kin_msg_destroy(&r);
    }
    if (!e && sum != XXH3_64bits_digest(hash)) {
        e = -EIO;
        if (o->errbuf && o->errbuf_size)
            snprintf(o->errbuf, o->errbuf_size,
                     "%s: the checksum does not match (changed while being "
                     "pulled?)",
                     src);
    }
    if (!e && (fchmod(fd, mode & 07777) || fsync(fd)))
        e = -errno;
    if (close(fd) && !e)
        e = -errno;
    if (!e && rename(tmp, dst))
        e = -errno;
    if (e)
        unlink(tmp);
    free(tmp);
    XXH3_freeState(hash);
    return e;
}
