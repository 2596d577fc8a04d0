/* Structured logs from every context of a tree. An application logs a
 * message with typed key/value fields; its context's publisher sends the
 * record to the tree's log forwarder, and subscribers (kin logs, a file
 * sink, your own code) read them by minimum level and context.
 *
 *   KIN_LOGI("request done", KIN_F("path", path), KIN_F("status", 200),
 *            KIN_F("ms", 1.5));
 *   KIN_LOGW("disk almost full");
 *   KIN_LOGF(KIN_LOG_ERROR, "cannot open %s: %s", path, strerror(errno));
 *
 * A record is produced only when some subscriber wants its level: the
 * publisher learns the subscriptions from the forwarder, and a disabled
 * level costs one relaxed atomic load and a compare, with no formatting.
 * Records carry wall and monotonic time, level, context id and name, pid,
 * task id, file:line and a sequence number per (publisher, level, context)
 * stream, so loss anywhere is reported, never silent: a full queue in the
 * publisher becomes a "dropped N records" record, and a subscriber turns
 * holes in sequence numbers into gap records. See docs/logs.md. */
#ifndef KIN_LOGS_H
#define KIN_LOGS_H

#include <stdbool.h>

#include <kin/defs.h>
#include <kin/diag.h>
#include <kin/err.h>
#include <kin/node.h>
#include <kin/pack.h>

/* --- fields --------------------------------------------------------------- */

typedef enum kin_field_type {
    KIN_FIELD_END = 0, /* terminates a field list */
    KIN_FIELD_INT,
    KIN_FIELD_UINT,
    KIN_FIELD_DOUBLE,
    KIN_FIELD_BOOL,
    KIN_FIELD_STR,
    KIN_FIELD_NIL,
} kin_field_type;

/* One typed key/value field. Built with KIN_F and friends when logging;
 * filled by kin_logsub_next when reading (strings are then NUL-terminated
 * and len is exact). */
typedef struct kin_field {
    const char *key;
    kin_field_type type;
    union {
        int64_t i;
        uint64_t u;
        double d;
        bool b;
        struct {
            const char *p;
            size_t len; /* SIZE_MAX: NUL-terminated, measured if logged */
        } s;
    } v;
} kin_field;

static inline kin_field
kin__f_int(const char *k, int64_t v)
{
    kin_field f = {k, KIN_FIELD_INT, {.i = v}};
    return f;
}
static inline kin_field
kin__f_uint(const char *k, uint64_t v)
{
    kin_field f = {k, KIN_FIELD_UINT, {.u = v}};
    return f;
}
static inline kin_field
kin__f_dbl(const char *k, double v)
{
    kin_field f = {k, KIN_FIELD_DOUBLE, {.d = v}};
    return f;
}
static inline kin_field
kin__f_bool(const char *k, bool v)
{
    kin_field f = {k, KIN_FIELD_BOOL, {.b = v}};
    return f;
}
static inline kin_field
kin__f_strn(const char *k, const char *p, size_t len)
{
    kin_field f = {k, p ? KIN_FIELD_STR : KIN_FIELD_NIL, {.i = 0}};
    f.v.s.p = p;
    f.v.s.len = len;
    return f;
}
static inline kin_field
kin__f_str(const char *k, const char *s)
{
    return kin__f_strn(k, s, (size_t)-1);
}

/* A field whose type follows v's C type: strings (char *, NULL logs nil),
 * floating point (double), bool, unsigned integers (uint), any other
 * integer (int). A pointer of another type does not compile. The key must
 * stay valid during the logging call only. */
#define KIN_F(k, v)                                                            \
    _Generic((v),                                                              \
        char *: kin__f_str,                                                    \
        const char *: kin__f_str,                                              \
        float: kin__f_dbl,                                                     \
        double: kin__f_dbl,                                                    \
        long double: kin__f_dbl,                                               \
        _Bool: kin__f_bool,                                                    \
        unsigned char: kin__f_uint,                                            \
        unsigned short: kin__f_uint,                                           \
        unsigned int: kin__f_uint,                                             \
        unsigned long: kin__f_uint,                                            \
        unsigned long long: kin__f_uint,                                       \
        default: kin__f_int)((k), (v))
/* Explicit field types. */
#define KIN_FSTR(k, s) kin__f_str((k), (s))
#define KIN_FSTRN(k, p, n) kin__f_strn((k), (p), (n))
#define KIN_FINT(k, v) kin__f_int((k), (v))
#define KIN_FUINT(k, v) kin__f_uint((k), (v))
#define KIN_FDBL(k, v) kin__f_dbl((k), (v))
#define KIN_FBOOL(k, v) kin__f_bool((k), (v))

/* --- logging -------------------------------------------------------------- */

/* Whether a record at level would be produced: some subscriber wants it,
 * the floor set by kin_logs_set_level allows it, and this process has a
 * publisher. One relaxed atomic load behind a call. Any thread. */
KIN_EXPORT bool kin_logs_enabled(int level);

/* Logs msg with the fields of the KIN_FIELD_END-terminated list fields
 * (NULL: none) through this process's current publisher (the most recently
 * started node's). Copies everything it needs before returning. Never
 * blocks on I/O: when the publisher's queue is full the record is dropped
 * and counted, and a "dropped N records" record follows once there is
 * room. Strings longer than 16 KiB are cut. Any thread. */
KIN_EXPORT void kin_logs_emit(int level, const char *file, int line,
                              const char *msg, const kin_field *fields);

/* As kin_logs_emit with a printf-formatted message and no fields. */
KIN_EXPORT void kin_logs_emitf(int level, const char *file, int line,
                               const char *fmt, ...) KIN_PRINTF(4, 5);

/* KIN_LOG(level, msg, fields...): logs msg (a string, not a format) with
 * KIN_F fields (at most 32 are kept); level is evaluated once, msg and the
 * fields not at all when the level is disabled. C only (_Generic and
 * compound literals). */
#define KIN_LOG(level, ...) KIN__LOG((level), __VA_ARGS__, KIN__FEND)
#define KIN_LOGD(...) KIN_LOG(KIN_LOG_DEBUG, __VA_ARGS__)
#define KIN_LOGI(...) KIN_LOG(KIN_LOG_INFO, __VA_ARGS__)
#define KIN_LOGW(...) KIN_LOG(KIN_LOG_WARNING, __VA_ARGS__)
#define KIN_LOGE(...) KIN_LOG(KIN_LOG_ERROR, __VA_ARGS__)
#define KIN_LOGC(...) KIN_LOG(KIN_LOG_CRITICAL, __VA_ARGS__)
/* KIN_LOGF(level, fmt, ...): a printf-formatted message, no fields. */
#define KIN_LOGF(level, ...)                                                   \
    do {                                                                       \
        int kin__lvl_ = (level);                                               \
        if (kin_logs_enabled(kin__lvl_))                                       \
            kin_logs_emitf(kin__lvl_, __FILE__, __LINE__, __VA_ARGS__);        \
    } while (0)

#define KIN__FEND ((kin_field){NULL, KIN_FIELD_END, {.i = 0}})
#define KIN__LOG(level, msg, ...)                                              \
    do {                                                                       \
        int kin__lvl_ = (level);                                               \
        if (kin_logs_enabled(kin__lvl_))                                       \
            kin_logs_emit(kin__lvl_, __FILE__, __LINE__, (msg),                \
                          (const kin_field[]){__VA_ARGS__});                   \
    } while (0)

/* A floor under every subscription: records below level are never
 * produced in this process, whatever subscribers ask (default: none, i.e.
 * KIN_LOG_DEBUG and up may be). Any thread. */
KIN_EXPORT void kin_logs_set_level(int level);

/* The endpoint of the forwarder that n's records go to (publishers
 * connect there; children inherit it), or NULL when n has no publisher.
 * Owned by n. Any thread. */
KIN_EXPORT const char *kin_logs_backend(const kin_node *n);

/* The endpoint subscribers connect to when n runs the embedded forwarder
 * (a master without opts.log_endpoint), else NULL. Owned by n. Any
 * thread. */
KIN_EXPORT const char *kin_logs_frontend(const kin_node *n);

/* --- records -------------------------------------------------------------- */

typedef enum kin_logrec_kind {
    KIN_LOGREC_LOG = 0,     /* logged by the application */
    KIN_LOGREC_DROPPED = 1, /* the publisher's queue dropped `count` records */
    KIN_LOGREC_STDOUT = 2,  /* a line a child process wrote to stdout */
    KIN_LOGREC_STDERR = 3,  /* a line a child process wrote to stderr */
    KIN_LOGREC_GAP = 4,     /* subscriber side: `count` records never came */
} kin_logrec_kind;

/* A record as a subscriber reads it. Strings are NUL-terminated. */
typedef struct kin_logrec {
    kin_logrec_kind kind;
    int level;
    /* Number in its (pub, level bucket, ctx) stream, from 1; a DROPPED
     * record has none of its own and carries the last one sent. */
    uint64_t seq;
    /* Records of this stream the publisher dropped so far (cumulative), so
     * a lost "dropped" record is made up for by the next record. */
    uint64_t drops;
    uint32_t pub;     /* publisher instance (random per start) */
    uint32_t pub_ctx; /* context whose publisher sent it */
    uint32_t ctx;     /* context it is about (a child for STDOUT/STDERR) */
    const char *ctx_name;
    int pid;       /* 0 when unknown (child output lines) */
    uint32_t task; /* kin task id in ctx, 0 outside tasks */
    uint64_t wall_ns, mono_ns;
    const char *file;
    int line;
    const char *msg;
    size_t msg_len;
    const kin_field *fields;
    size_t n_fields;
    /* DROPPED: records dropped since the last drop this subscriber was
     * told of (a subscriber also makes DROPPED records up when a record's
     * drops grew and the publisher's own notice was lost). GAP: records
     * lost; seq is the first lost one and before_join says the loss
     * precedes the first record of the stream this subscriber saw (it
     * joined late). */
    uint64_t count;
    bool before_join;
} kin_logrec;

/* "log", "dropped", "stdout", "stderr", "gap" (static); "?" for any other
 * value. Any thread. */
KIN_EXPORT const char *kin_logrec_kind_name(kin_logrec_kind kind);

#define KIN_LOGFMT_COLOR 1u /* ANSI colors */
#define KIN_LOGFMT_DATE 2u  /* full date, not only the time of day */

/* Formats r as one human line (no newline): time, level, ctx:name[pid],
 * task, file:line, message, then key=value fields, in aligned columns.
 * Writes at most size bytes including the NUL (size 0: measures); returns
 * the length the whole line needs, like snprintf. Any thread. */
KIN_EXPORT size_t kin_logrec_format(const kin_logrec *r, unsigned flags,
                                    char *buf, size_t size);

/* Appends r to out as one JSON object (no newline; schema in docs/logs.md).
 * Invalid UTF-8 becomes U+FFFD. Errors: -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_logrec_json(const kin_logrec *r, kin_buf *out);

/* Parses "debug", "info", "warning"/"warn", "error", "critical"/"crit"
 * (any case) or a number from 0 to 1000. Errors: -EINVAL. Any thread. */
KIN_EXPORT kin_err kin_log_level_parse(const char *s, int *level);

/* --- subscribers ---------------------------------------------------------- */

typedef struct kin_logsub kin_logsub;

typedef struct kin_logsub_opts {
    const char *endpoint; /* the forwarder's frontend (kin_logs_frontend) */
    int min_level;        /* records below are not sent to us; 0: all */
    /* Only these contexts (records about them, child output included);
     * NULL or 0: every context. At most 64. */
    const uint32_t *ctxs;
    size_t n_ctxs;
    int rcvhwm; /* records queued before loss; 0: 10000 */
    /* The tree's CURVE key pair ("PUBLIC:SECRET" in Z85, as
     * kin_node_opts.curve_key), required for a tcp:// endpoint: tcp
     * forwarders admit only holders of the key (-EINVAL without it). */
    const char *curve_key;
    /* Ask the forwarder for the recent records it keeps (docs/logs.md,
     * "History"): the last `history` of them matching min_level and ctxs
     * (-1: all it keeps; 0 with since_ns 0: none), logged at or after
     * since_ns (wall clock, ns; 0: any time). They come first, then the
     * live records, with none missed and none twice in between. A
     * forwarder that does not answer within 3 s is taken to keep none. */
    long history;
    uint64_t since_ns;
} kin_logsub_opts;

/* Connects a subscriber. Subscriptions travel to every publisher, which
 * then filter at the source; that takes a moment (slow joiner), so records
 * logged right after this call may not be seen. Errors: -EINVAL (no
 * endpoint, too many contexts, a tcp endpoint without a valid curve_key),
 * -errno from ZMQ (bad endpoint), -ENOMEM.
 * The thread that uses it owns it (one thread at a time). */
KIN_EXPORT kin_err kin_logsub_new(kin_logsub **out,
                                  const kin_logsub_opts *opts);

/* The next record or gap, waiting up to timeout_ms (KIN_FOREVER: no
 * limit). A hole in a stream's sequence numbers comes out as a
 * KIN_LOGREC_GAP record before the record that revealed it. *out is owned
 * by s and valid until the next call or destroy. Malformed messages are
 * skipped and counted. Errors: KIN_ETIMEOUT, KIN_ECANCELLED (the calling
 * kin task was cancelled), -errno. */
KIN_EXPORT kin_err kin_logsub_next(kin_logsub *s, int timeout_ms,
                                   const kin_logrec **out);

typedef struct kin_logsub_stats {
    uint64_t records;   /* records returned (gaps excluded) */
    uint64_t gaps;      /* gap records returned */
    uint64_t lost;      /* records they account for */
    uint64_t dropped;   /* sum of DROPPED records' counts */
    uint64_t malformed; /* messages skipped */
    /* The history asked for (kin_logsub_opts.history, since_ns) has not
     * all come yet: its end is awaited, at most 3 s. */
    bool history_pending;
} kin_logsub_stats;

/* What s returned so far. The thread that uses s. */
KIN_EXPORT void kin_logsub_stats_get(const kin_logsub *s,
                                     kin_logsub_stats *out);

/* Disconnects and frees s; *s = NULL. NULL-safe. The thread that uses s,
 * not while it waits in kin_logsub_next. */
KIN_EXPORT void kin_logsub_destroy(kin_logsub **s);

/* --- sinks ---------------------------------------------------------------- */

/* A sink: a thread that subscribes and writes every record as a line to a
 * file descriptor, as text (kin_logrec_format) or JSON (kin_logrec_json).
 * A master can also get one through kin_node_opts.log_file. */
typedef struct kin_logsink kin_logsink;

typedef enum kin_logsink_format {
    KIN_LOGSINK_TEXT = 0,
    KIN_LOGSINK_JSON = 1,
} kin_logsink_format;

typedef struct kin_logsink_opts {
    const char *endpoint; /* the forwarder's frontend */
    int fd;               /* not closed by the sink; ignored with path */
    kin_logsink_format format;
    int min_level;       /* 0: all */
    unsigned text_flags; /* KIN_LOGFMT_* for TEXT */
    /* A file the sink opens itself (appending, created 0600) instead of
     * fd. Records go to it whole or not at all: a write that fails (a full
     * disk: -ENOSPC) is cut back to the last whole line, its records are
     * counted as lost (kin_logsink_stats), the sink goes on, and once a
     * write succeeds again a KIN_LOGREC_DROPPED line saying how many records
     * are missing and why comes first. NULL: fd. */
    const char *path;
    /* With path: rotate by size. A record that would take the file past
     * max_bytes first moves it to PATH.1 (PATH.1 to PATH.2, and so on; the
     * one past PATH.keep is deleted) and starts an empty PATH; a single
     * record larger than max_bytes still goes whole into a file of its
     * own. 0: never rotate. keep: rotated files kept, 0: 1. */
    size_t max_bytes;
    int keep;
} kin_logsink_opts;

/* Starts a sink; the fd stays the caller's and must outlive the sink.
 * Errors: -EINVAL (fd < 0 without path, max_bytes or keep without path,
 * keep < 0 or over 1000), -errno from open(path), as kin_logsub_new,
 * -errno from pthread_create. Any thread. */
KIN_EXPORT kin_err kin_logsink_new(kin_logsink **out,
                                   const kin_logsink_opts *opts);

typedef struct kin_logsink_stats {
    uint64_t written;   /* records written */
    uint64_t lost;      /* records whose write failed */
    uint64_t rotations; /* times the file was rotated */
    kin_err last_error; /* of the last failed write or rotation; KIN_OK */
} kin_logsink_stats;

/* What s has done so far. Any thread. */
KIN_EXPORT void kin_logsink_stats_get(kin_logsink *s, kin_logsink_stats *out);

/* Writes what has arrived, stops the thread and frees the sink; *s = NULL.
 * NULL-safe. Any thread but the sink's. */
KIN_EXPORT void kin_logsink_destroy(kin_logsink **s);

#endif
