/* The file behind a log sink: whole lines or nothing, lost records counted
 * and told in the file once it takes writes again, rotation by size. */
#include "logs/logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log_internal.h"

#define KEEP_MAX 1000

static int
open_path(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

kin_err
kin__logfile_open(kin__logfile *f, const kin_logsink_opts *o)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->format = o->format;
    if (!o->path)
        return o->fd < 0 || o->max_bytes || o->keep ? -EINVAL
                                                    : (f->fd = o->fd, KIN_OK);
    if (!*o->path || o->keep < 0 || o->keep > KEEP_MAX)
        return -EINVAL;
    if (!(f->path = strdup(o->path)))
        return -ENOMEM;
    f->own = true;
    f->max_bytes = o->max_bytes;
    f->keep = o->keep ? o->keep : 1;
    if ((f->fd = open_path(f->path)) < 0) {
        kin_err e = -errno;
        free(f->path);
        f->path = NULL;
        return e;
    }
    struct stat st;
    if (!fstat(f->fd, &st))
        f->size = (uint64_t)st.st_size;
    return KIN_OK;
}

void
kin__logfile_close(kin__logfile *f)
{
    if (f->own && f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    free(f->path);
    f->path = NULL;
}

bool
kin__logfile_full(const kin__logfile *f, size_t before, size_t total)
{
    return f->own && f->max_bytes && f->size + total > f->max_bytes &&
           f->size + before > 0;
}

static void
failed(kin__logfile *f, int err, const char *what)
{
    atomic_store(&f->last_error, -err);
    if (!f->warned) /* once per failure, not per record */
        KIN_WARN("log file %s: %s: %s; records are counted as lost until "
                 "it works again",
                 f->path ? f->path : "(fd)", what, strerror(err));
    f->warned = true;
}

void
kin__logfile_rotate(kin__logfile *f)
{
    if (!f->own)
        return;
    size_t len = strlen(f->path) + 16;
    char *from = malloc(len), *to = malloc(len);
    if (!from || !to) {
        free(from);
        free(to);
        return;
    }
    /* PATH.keep-1 over PATH.keep (rename drops the old one), ..., PATH to
     * PATH.1. */
    for (int i = f->keep - 1; i >= 0; i--) {
        if (i)
            snprintf(from, len, "%s.%d", f->path, i);
        else
            snprintf(from, len, "%s", f->path);
        snprintf(to, len, "%s.%d", f->path, i + 1);
        if (rename(from, to) && errno != ENOENT)
            failed(f, errno, "rotating");
    }
    free(from);
    free(to);
    if (f->fd >= 0)
        close(f->fd);
    f->fd = open_path(f->path);
    if (f->fd < 0)
        failed(f, errno, "reopening after rotation");
    f->size = 0;
    atomic_fetch_add(&f->rotations, 1);
}

/* One write of it all, cut back to the old size when it fails part way:
 * 0 or errno. */
static int
write_whole(kin__logfile *f, const char *data, size_t len)
{
    if (f->fd < 0 && f->own && (f->fd = open_path(f->path)) >= 0) {
        struct stat st;
        if (!fstat(f->fd, &st))
            f->size = (uint64_t)st.st_size;
    }
    if (f->fd < 0)
        return EBADF;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(f->fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            /* No torn line: what went in of this batch goes again. */
            if (off && f->own && ftruncate(f->fd, (off_t)f->size))
                err = errno;
            return err;
        }
        off += (size_t)n;
    }
    f->size += len;
    return 0;
}

/* The line telling how many records are missing, and why. */
static void
pending_line(kin__logfile *f, kin_buf *b)
{
    char msg[256];
    snprintf(msg, sizeof msg, "log file: %llu record%s not written: %s",
             (unsigned long long)f->pending, f->pending == 1 ? "" : "s",
             strerror(f->pending_err));
    struct timespec now, mono;
    clock_gettime(CLOCK_REALTIME, &now);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    kin_logrec r = {
        .kind = KIN_LOGREC_DROPPED,
        .level = KIN_LOG_WARNING,
        .ctx_name = "log-sink",
        .pid = (int)getpid(),
        .wall_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec,
        .mono_ns = (uint64_t)mono.tv_sec * 1000000000u + (uint64_t)mono.tv_nsec,
        .file = "",
        .msg = msg,
        .msg_len = strlen(msg),
        .count = f->pending};
    if (f->format == KIN_LOGSINK_JSON) {
        if (kin_logrec_json(&r, b))
            return;
    } else {
        size_t need = kin_logrec_format(&r, 0, NULL, 0) + 1;
        if (kin__buf_reserve(b, need))
            return;
        b->len += kin_logrec_format(&r, 0, b->data + b->len, need);
    }
    kin__buf_add(b, "\n", 1);
}

void
kin__logfile_write(kin__logfile *f, const char *data, size_t len,
                   uint64_t records)
{
    if (!len)
        return;
    int err = 0;
    if (f->pending) {
        kin_buf b;
        kin_buf_init(&b);
        pending_line(f, &b);
        err = b.len ? write_whole(f, b.data, b.len) : ENOMEM;
        kin_buf_release(&b);
        if (!err)
            f->pending = 0;
    }
    if (!err)
        err = write_whole(f, data, len);
    if (err) {
        if (!f->pending)
            f->pending_err = err;
        f->pending += records;
        atomic_fetch_add(&f->lost, records);
        failed(f, err, "write");
        return;
    }
    f->warned = false;
    atomic_fetch_add(&f->written, records);
}

void
kin__logfile_stats(kin__logfile *f, kin_logsink_stats *out)
{
    out->written = atomic_load(&f->written);
    out->lost = atomic_load(&f->lost);
    out->rotations = atomic_load(&f->rotations);
    out->last_error = atomic_load(&f->last_error);
}
