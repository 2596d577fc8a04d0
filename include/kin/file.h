/* Files pushed to and pulled from any context of the tree: streamed in chunks
 * through the tree's links (however many hops, whatever channel: ssh, an exec
 * channel), written to a temporary name beside the destination and renamed once
 * complete and verified (size and an XXH3 checksum), mode bits kept. */
#ifndef KIN_FILE_H
#define KIN_FILE_H

#include <stddef.h>
#include <stdint.h>

#include <kin/defs.h>
#include <kin/err.h>
#include <kin/node.h>

/* Told how far a transfer got: sent of total bytes, after each chunk the
 * target has written (a pull: this side). Runs on the calling thread. */
typedef void (*kin_file_progress_fn)(uint64_t sent, uint64_t total, void *arg);

typedef struct kin_file_opts {
    int timeout_ms;    /* each step's answer must come within; 0: 30000 */
    size_t chunk_size; /* bytes per step; 0: 256 KiB; at most 4 MiB */
    kin_file_progress_fn progress; /* optional */
    void *progress_arg;
    /* Optional: on failure, what went wrong (the target's words). */
    char *errbuf;
    size_t errbuf_size;
} kin_file_opts;

/* Copies the regular file src (on this host) to dst (an absolute path on
 * the host where context ctx runs), as ctx's user. Four chunks are in
 * flight at a time, so neither side holds more than a few chunks in
 * memory.
 * The target writes a hidden temporary file in dst's directory and, once
 * the size and the XXH3-64 checksum match, sets src's mode bits (07777)
 * and renames it over dst; on any failure it removes the temporary file,
 * so dst is either untouched or complete. Errors: -ENOENT / -EACCES /
 * -EISDIR / -EINVAL (src missing, unreadable, a directory or not a regular
 * file; dst not absolute, or a directory), and the target's: -ENOENT (no
 * such directory), -EACCES / -EROFS / -EPERM, -ENOSPC / -EDQUOT (checked
 * before the first byte with fallocate where the file system supports
 * it), -EIO (the checksum did not match), KIN_EREFUSED (ctx runs as
 * another user than its parent, or this context is not its ancestor),
 * and those of a call (KIN_ETIMEOUT, KIN_EPEERGONE, ...). opts may be
 * NULL. Any thread but n's broker; the calling thread waits. */
KIN_EXPORT kin_err kin_push_file(kin_node *n, uint32_t ctx, const char *src,
                                 const char *dst, const kin_file_opts *opts);

/* Copies the regular file src (an absolute path on the host where context
 * ctx runs, read as ctx's user) to dst on this host: chunk by chunk, four
 * in flight, into a hidden temporary file beside dst, renamed over dst
 * once its size and XXH3-64 checksum match the source's (read again at
 * the end by ctx), with src's mode bits (07777). On any failure the
 * temporary file is removed: dst is untouched or complete. Errors: the
 * target's -ENOENT / -EACCES / -EISDIR / -EINVAL (src missing, unreadable,
 * a directory or not a regular file), -EIO (changed while being pulled:
 * the checksum did not match), KIN_EREFUSED (as kin_push_file); here
 * -ENOENT / -EACCES / -EISDIR / -ENOSPC (dst's directory missing, not
 * writable, dst a directory, no room), -EINVAL (src not absolute), and
 * those of a call. opts may be NULL. Any thread but n's broker. */
KIN_EXPORT kin_err kin_pull_file(kin_node *n, uint32_t ctx, const char *src,
                                 const char *dst, const kin_file_opts *opts);

#endif
