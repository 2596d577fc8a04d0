/* How log records are shown: an aligned human line (optionally colored)
 * and a JSON object, the schema of JSON-lines files and `kin logs --json`
 * (docs/logs.md). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "logs/logrec.h"

#include "core/buf.h"

/* --- human lines ---------------------------------------------------------- */

typedef struct out {
    char *buf;
    size_t size, len;
} out;

static void KIN_PRINTF(2, 3) put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->size ? o->size - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void
putn(out *o, const char *s, size_t n)
{
    if (o->len < o->size) {
        size_t room = o->size - o->len - 1;
        memcpy(o->buf + o->len, s, n < room ? n : room);
        o->buf[o->len + (n < room ? n : room)] = 0;
    }
    o->len += n;
}

/* Pads to col characters from start (visible columns; escapes are added
 * outside the padded text). */
static void
pad_to(out *o, size_t start, size_t col)
{
    while (o->len - start < col)
        putn(o, " ", 1);
}

static const char *
level_color(int level)
{
    switch (kin__log_bucket(level)) {
    case 0:
        return "\033[2m";
    case 1:
        return "\033[32m";
    case 2:
        return "\033[33m";
    case 3:
        return "\033[31m";
    default:
        return "\033[1;35m";
    }
}

static const char *
level_tag(int level)
{
    static const char *tags[] = {"DEBUG", "INFO", "WARN", "ERROR", "CRIT"};
    return tags[kin__log_bucket(level)];
}

static const char *
base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* A string shown bare when it has no space, quote or '=', else quoted
 * with C-style escapes. */
static void
put_value_str(out *o, const char *s, size_t len)
{
    bool bare = len > 0;
    for (size_t i = 0; i < len && bare; i++) {
        unsigned char c = (unsigned char)s[i];
        bare = c > ' ' && c != '"' && c != '=' && c != '\\' && c != 0x7f;
    }
    if (bare) {
        putn(o, s, len);
        return;
    }
    putn(o, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            put(o, "\\%c", c);
        else if (c == '\n')
            putn(o, "\\n", 2);
        else if (c == '\t')
            putn(o, "\\t", 2);
        else if (c < ' ' || c == 0x7f)
            put(o, "\\x%02x", c);
        else
            putn(o, (const char *)&s[i], 1);
    }
    putn(o, "\"", 1);
}

static void
put_field(out *o, const kin_field *f, bool color)
{
    if (color)
        put(o, "\033[2m%s=\033[0m", f->key);
    else
        put(o, "%s=", f->key);
    switch (f->type) {
    case KIN_FIELD_INT:
        put(o, "%lld", (long long)f->v.i);
        break;
    case KIN_FIELD_UINT:
        put(o, "%llu", (unsigned long long)f->v.u);
        break;
    case KIN_FIELD_DOUBLE:
        put(o, "%g", f->v.d);
        break;
    case KIN_FIELD_BOOL:
        put(o, "%s", f->v.b ? "true" : "false");
        break;
    case KIN_FIELD_STR:
        put_value_str(o, f->v.s.p, f->v.s.len);
        break;
    default:
        put(o, "nil");
        break;
    }
}

static void
put_time(out *o, uint64_t wall_ns, unsigned flags)
{
    time_t sec = (time_t)(wall_ns / 1000000000u);
    struct tm tm;
    localtime_r(&sec, &tm);
    char t[32];
    strftime(t, sizeof t,
             flags & KIN_LOGFMT_DATE ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
    put(o, "%s.%03u", t, (unsigned)(wall_ns / 1000000u % 1000u));
}

size_t
kin_logrec_format(const kin_logrec *r, unsigned flags, char *buf, size_t size)
{
    out o = {buf, size, 0};
    if (size)
        buf[0] = 0;
    bool color = flags & KIN_LOGFMT_COLOR;
    const char *reset = color ? "\033[0m" : "";
    const char *dim = color ? "\033[2m" : "";
    if (r->kind == KIN_LOGREC_GAP) {
        /* Records from before we joined are news, not a loss. */
        const char *hl = !color           ? ""
                         : r->before_join ? "\033[2m"
                                          : "\033[1;33m";
        if (r->before_join)
            put(&o,
                "%s~~ %llu %s record%s from ctx %u (%s) before this "
                "subscriber joined%s",
                hl, (unsigned long long)r->count, kin_log_level_name(r->level),
                r->count == 1 ? "" : "s", r->ctx, r->ctx_name, reset);
        else
            put(&o,
                "%s!! lost %llu %s record%s from ctx %u (%s), seq %llu..%llu%s",
                hl, (unsigned long long)r->count, kin_log_level_name(r->level),
                r->count == 1 ? "" : "s", r->ctx, r->ctx_name,
                (unsigned long long)r->seq,
                (unsigned long long)(r->seq + r->count - 1), reset);
        return o.len;
    }
    if (color)
        putn(&o, dim, strlen(dim));
    put_time(&o, r->wall_ns, flags);
    if (color)
        putn(&o, reset, strlen(reset));
    putn(&o, " ", 1);
    if (color)
        put(&o, "%s", level_color(r->level));
    size_t col = o.len;
    put(&o, "%s", level_tag(r->level));
    pad_to(&o, col, 6);
    if (color)
        putn(&o, reset, strlen(reset));

    if (color)
        put(&o, "\033[36m");
    size_t vis = o.len;
    if (r->pid)
        put(&o, "%s[%d]", r->ctx_name, r->pid);
    else
        put(&o, "%s", r->ctx_name);
    vis = o.len - vis;
    if (color)
        putn(&o, reset, strlen(reset));
    for (size_t i = vis; i < 20; i++)
        putn(&o, " ", 1);
    putn(&o, " ", 1);

    col = o.len;
    if (r->task)
        put(&o, "%u:%u", r->ctx, r->task);
    else
        put(&o, "%u:-", r->ctx);
    pad_to(&o, col, 8);
    putn(&o, " ", 1);

    if (color)
        putn(&o, dim, strlen(dim));
    vis = o.len;
    switch (r->kind) {
    case KIN_LOGREC_STDOUT:
        put(&o, "stdout");
        break;
    case KIN_LOGREC_STDERR:
        put(&o, "stderr");
        break;
    case KIN_LOGREC_DROPPED:
        put(&o, "(kin)");
        break;
    default:
        put(&o, "%s:%d", base_name(r->file), r->line);
        break;
    }
    vis = o.len - vis;
    if (color)
        putn(&o, reset, strlen(reset));
    for (size_t i = vis; i < 22; i++)
        putn(&o, " ", 1);
    putn(&o, " ", 1);

    if (r->kind == KIN_LOGREC_DROPPED) {
        if (color)
            put(&o, "\033[1;33m");
        put(&o, "dropped %llu record%s (publisher queue full)",
            (unsigned long long)r->count, r->count == 1 ? "" : "s");
        if (color)
            putn(&o, reset, strlen(reset));
        return o.len;
    }
    if (color && r->level >= KIN_LOG_ERROR)
        put(&o, "\033[1m");
    /* Control characters in a message would break the one-line layout. */
    for (size_t i = 0; i < r->msg_len; i++) {
        unsigned char c = (unsigned char)r->msg[i];
        if (c < ' ' && c != '\t')
            put(&o, "\\x%02x", c);
        else
            putn(&o, &r->msg[i], 1);
    }
    if (color && r->level >= KIN_LOG_ERROR)
        putn(&o, reset, strlen(reset));
    for (size_t i = 0; i < r->n_fields; i++) {
        putn(&o, i ? " " : "  ", i ? 1 : 2);
        put_field(&o, &r->fields[i], color);
    }
    return o.len;
}

/* --- JSON ----------------------------------------------------------------- */

static int
bput(kin_buf *b, const char *s, size_t n)
{
    return kin__buf_add(b, s, n);
}

static int KIN_PRINTF(2, 3) bprintf(kin_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return n < 0 ? -EINVAL
                 : bput(b, tmp,
                        (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int
json_str(kin_buf *b, const char *s, size_t n)
{
    int e = bput(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (!e && i < n) {
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' &&
               u[run] != '\\')
            run++;
        if (run > i) {
            e = bput(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            e = bput(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            e = c == '\n'   ? bput(b, "\\n", 2)
                : c == '\t' ? bput(b, "\\t", 2)
                : c == '\r' ? bput(b, "\\r", 2)
                            : bprintf(b, "\\u%04x", c);
            i++;
        } else {
            size_t l = utf8_len(u + i, n - i);
            e = l ? bput(b, s + i, l) : bput(b, "\\ufffd", 6);
            i += l ? l : 1;
        }
    }
    return e ? e : bput(b, "\"", 1);
}

static int
json_key(kin_buf *b, const char *k, bool first)
{
    int e = first ? 0 : bput(b, ",", 1);
    if (!e)
        e = json_str(b, k, strlen(k));
    return e ? e : bput(b, ":", 1);
}

static int
json_double(kin_buf *b, double d)
{
    if (!isfinite(d))
        return bput(b, "null", 4);
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.17g", d);
    /* Keep it a JSON number that reads back as a float. */
    bool intlike = !strpbrk(tmp, ".eEn");
    int e = bput(b, tmp, (size_t)n);
    return e ? e : intlike ? bput(b, ".0", 2) : 0;
}

kin_err
kin_logrec_json(const kin_logrec *r, kin_buf *b)
{
    size_t start = b->len;
    int e = bput(b, "{", 1);
    /* The shape's version, as in every JSON the kin command prints. */
    e = e ? e : json_key(b, "version", true);
    e = e ? e : bput(b, "1", 1);
    e = e ? e : json_key(b, "kind", false);
    e = e ? e : bprintf(b, "\"%s\"", kin_logrec_kind_name(r->kind));
    if (r->kind != KIN_LOGREC_GAP) {
        time_t sec = (time_t)(r->wall_ns / 1000000000u);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char t[40];
        strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
        e = e ? e : json_key(b, "time", false);
        e = e ? e
              : bprintf(b, "\"%s.%06uZ\"", t,
                        (unsigned)(r->wall_ns / 1000u % 1000000u));
        e = e ? e : json_key(b, "wall_ns", false);
        e = e ? e : bprintf(b, "%llu", (unsigned long long)r->wall_ns);
        e = e ? e : json_key(b, "mono_ns", false);
        e = e ? e : bprintf(b, "%llu", (unsigned long long)r->mono_ns);
    }
    e = e ? e : json_key(b, "level", false);
    e = e ? e : bprintf(b, "\"%s\"", kin_log_level_name(r->level));
    e = e ? e : json_key(b, "levelno", false);
    e = e ? e : bprintf(b, "%d", r->level);
    e = e ? e : json_key(b, "ctx", false);
    e = e ? e : bprintf(b, "%u", r->ctx);
    e = e ? e : json_key(b, "ctx_name", false);
    e = e ? e : json_str(b, r->ctx_name, strlen(r->ctx_name));
    if (r->kind != KIN_LOGREC_GAP) {
        e = e ? e : json_key(b, "pid", false);
        e = e ? e : bprintf(b, "%d", r->pid);
        e = e ? e : json_key(b, "task", false);
        e = e ? e : bprintf(b, "%u", r->task);
        e = e ? e : json_key(b, "file", false);
        e = e ? e : json_str(b, r->file, strlen(r->file));
        e = e ? e : json_key(b, "line", false);
        e = e ? e : bprintf(b, "%d", r->line);
        e = e ? e : json_key(b, "msg", false);
        e = e ? e : json_str(b, r->msg, r->msg_len);
        e = e ? e : json_key(b, "fields", false);
        e = e ? e : bput(b, "{", 1);
        for (size_t i = 0; !e && i < r->n_fields; i++) {
            const kin_field *f = &r->fields[i];
            e = json_key(b, f->key, i == 0);
            if (e)
                break;
            switch (f->type) {
            case KIN_FIELD_INT:
                e = bprintf(b, "%lld", (long long)f->v.i);
                break;
            case KIN_FIELD_UINT:
                e = bprintf(b, "%llu", (unsigned long long)f->v.u);
                break;
            case KIN_FIELD_DOUBLE:
                e = json_double(b, f->v.d);
                break;
            case KIN_FIELD_BOOL:
                e = f->v.b ? bput(b, "true", 4) : bput(b, "false", 5);
                break;
            case KIN_FIELD_STR:
                e = json_str(b, f->v.s.p, f->v.s.len);
                break;
            default:
                e = bput(b, "null", 4);
                break;
            }
        }
        e = e ? e : bput(b, "}", 1);
    }
    e = e ? e : json_key(b, "seq", false);
    e = e ? e : bprintf(b, "%llu", (unsigned long long)r->seq);
    e = e ? e : json_key(b, "pub", false);
    e = e ? e : bprintf(b, "%u", r->pub);
    e = e ? e : json_key(b, "pub_ctx", false);
    e = e ? e : bprintf(b, "%u", r->pub_ctx);
    if (r->kind == KIN_LOGREC_DROPPED || r->kind == KIN_LOGREC_GAP) {
        e = e ? e : json_key(b, "count", false);
        e = e ? e : bprintf(b, "%llu", (unsigned long long)r->count);
    }
    if (r->kind == KIN_LOGREC_GAP) {
        e = e ? e : json_key(b, "before_join", false);
        e = e ? e : bprintf(b, "%s", r->before_join ? "true" : "false");
    }
    e = e ? e : bput(b, "}", 1);
    if (e) {
        b->len = start;
        if (b->data)
            b->data[start] = 0;
    }
    return e;
}
