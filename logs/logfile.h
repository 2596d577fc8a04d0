/* The file behind a log sink: lines written whole or not at all, records
 * lost to a failed write counted and reported by a gap line once writing
 * works again, and rotation by size (PATH.1 .. PATH.keep). The sink's
 * thread owns it; the counters may be read from any thread. */
#ifndef KIN_LOGS_LOGFILE_H
#define KIN_LOGS_LOGFILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/logs.h>

typedef struct kin__logfile {
    int fd;
    bool own;   /* opened from path (closed, truncated, rotated by us) */
    char *path; /* own only */
    size_t max_bytes;
    int keep;
    kin_logsink_format format;
    uint64_t size;    /* of the current file, own only */
    uint64_t pending; /* lost records not yet told in the file */
    int pending_err;  /* errno of the failure they were lost to */
    bool warned;      /* the current failure went to the diagnostics */
    atomic_uint_fast64_t written, lost, rotations;
    atomic_int last_error;
} kin__logfile;

/* Checks opts' file part and opens path when given. Errors: -EINVAL,
 * -errno from open, -ENOMEM. */
kin_err kin__logfile_open(kin__logfile *f, const kin_logsink_opts *opts);
void kin__logfile_close(kin__logfile *f);

/* Whether a line that would make the buffer `total` bytes (`before` of
 * them already there) must start a new file: the file and buffer would
 * pass max_bytes, and something would be left before the line. */
bool kin__logfile_full(const kin__logfile *f, size_t before, size_t total);

/* Moves the file to PATH.1 (and older ones along) and opens a new one. */
void kin__logfile_rotate(kin__logfile *f);

/* Writes len bytes holding records whole lines: all of them, or, on a
 * failure, none (the file is cut back) and the records count as lost. */
void kin__logfile_write(kin__logfile *f, const char *data, size_t len,
                        uint64_t records);

void kin__logfile_stats(kin__logfile *f, kin_logsink_stats *out);

#endif
