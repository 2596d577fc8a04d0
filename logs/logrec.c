/* Log record encoding and decoding. The records are msgpack, written and
 * read here by hand: the layout is fixed (logs/logrec.h, docs/logs.md), and
 * a cursor over the bytes costs a fraction of msgpack-c's packer callbacks
 * and zone-allocated objects, on the logging thread and in subscribers.
 * Every read is bounds-checked: records come from the network. */
#include "logs/logrec.h"

#include "core/buf.h"
#include "core/pack_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- levels and topics ---------------------------------------------------- */

int
kin__log_bucket(int level)
{
    if (level < KIN_LOG_INFO)
        return 0;
    if (level < KIN_LOG_WARNING)
        return 1;
    if (level < KIN_LOG_ERROR)
        return 2;
    if (level < KIN_LOG_CRITICAL)
        return 3;
    return 4;
}

int
kin__log_bucket_floor(int bucket)
{
    static const int floors[] = {INT_MIN, KIN_LOG_INFO, KIN_LOG_WARNING,
                                 KIN_LOG_ERROR, KIN_LOG_CRITICAL};
    return bucket <= 0 ? INT_MIN : floors[bucket > 4 ? 4 : bucket];
}

int
kin__log_bucket_level(int bucket)
{
    return (bucket < 0 ? 0 : bucket > 4 ? 4 : bucket) * 10 + 10;
}

static const char letters[KIN__LOG_BUCKETS] = {'D', 'I', 'W', 'E', 'C'};

char
kin__log_letter(int bucket)
{
    return letters[bucket < 0 ? 0 : bucket > 4 ? 4 : bucket];
}

int
kin__log_letter_bucket(unsigned char c)
{
    for (int b = 0; b < KIN__LOG_BUCKETS; b++)
        if (letters[b] == c)
            return b;
    return -1;
}

void
kin__log_topic(unsigned char out[KIN__LOG_TOPIC_LEN], int bucket, uint32_t ctx)
{
    out[0] = (unsigned char)kin__log_letter(bucket);
    out[1] = (unsigned char)(ctx >> 24);
    out[2] = (unsigned char)(ctx >> 16);
    out[3] = (unsigned char)(ctx >> 8);
    out[4] = (unsigned char)ctx;
}

kin_err
kin_log_level_parse(const char *s, int *level)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {
        {"debug", KIN_LOG_DEBUG},     {"info", KIN_LOG_INFO},
        {"warning", KIN_LOG_WARNING}, {"warn", KIN_LOG_WARNING},
        {"error", KIN_LOG_ERROR},     {"critical", KIN_LOG_CRITICAL},
        {"crit", KIN_LOG_CRITICAL},
    };
    if (!s || !*s)
        return -EINVAL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcasecmp(s, names[i].name)) {
            *level = names[i].level;
            return KIN_OK;
        }
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < 0 || v > 1000)
        return -EINVAL;
    *level = (int)v;
    return KIN_OK;
}

const char *
kin_logrec_kind_name(kin_logrec_kind kind)
{
    static const char *names[] = {"log", "dropped", "stdout", "stderr", "gap"};
    return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}

/* --- encoding ------------------------------------------------------------- */

/* A writer into a kin_buf that remembers its first failed allocation, so
 * that a record is written without a check after every item. */
typedef struct wr {
    kin_buf *b;
    bool failed;
} wr;

/* Room for n more bytes, or NULL (and failed). */
static unsigned char *
room(wr *w, size_t n)
{
    if (w->failed)
        return NULL;
    unsigned char *at = (unsigned char *)kin__buf_extend(w->b, n);
    if (!at)
        w->failed = true;
    return at;
}

static void
be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

/* A type byte and a big-endian value of `bytes` bytes. */
static void
w_tagged(wr *b, unsigned char tag, uint64_t v, int bytes)
{
    unsigned char *p = room(b, 1 + (size_t)bytes);
    if (p) {
        p[0] = tag;
        be(p + 1, v, bytes);
    }
}

static void
w_uint(wr *b, uint64_t v)
{
    if (v < 128) {
        unsigned char *p = room(b, 1);
        if (p)
            *p = (unsigned char)v;
    } else if (v <= UINT8_MAX) {
        w_tagged(b, 0xcc, v, 1);
    } else if (v <= UINT16_MAX) {
        w_tagged(b, 0xcd, v, 2);
    } else if (v <= UINT32_MAX) {
        w_tagged(b, 0xce, v, 4);
    } else {
        w_tagged(b, 0xcf, v, 8);
    }
}

static void
w_int(wr *b, int64_t v)
{
    if (v >= 0) {
        w_uint(b, (uint64_t)v);
    } else if (v >= -32) {
        unsigned char *p = room(b, 1);
        if (p)
            *p = (unsigned char)(int8_t)v;
    } else if (v >= INT8_MIN) {
        w_tagged(b, 0xd0, (uint64_t)v, 1);
    } else if (v >= INT16_MIN) {
        w_tagged(b, 0xd1, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        w_tagged(b, 0xd2, (uint64_t)v, 4);
    } else {
        w_tagged(b, 0xd3, (uint64_t)v, 8);
    }
}

static void
w_double(wr *b, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    w_tagged(b, 0xcb, bits, 8);
}

static void
w_simple(wr *b, unsigned char c)
{
    unsigned char *p = room(b, 1);
    if (p)
        *p = c;
}

/* Headers of str (fix 0xa0), array (fix 0x90) and map (fix 0x80). */
static void
w_header(wr *b, unsigned char fix, unsigned fix_max,
         const unsigned char tags[3], uint32_t n)
{
    if (n <= fix_max)
        w_simple(b, (unsigned char)(fix | n));
    else if (tags[0] && n <= UINT8_MAX)
        w_tagged(b, tags[0], n, 1);
    else if (n <= UINT16_MAX)
        w_tagged(b, tags[1], n, 2);
    else
        w_tagged(b, tags[2], n, 4);
}

static const unsigned char str_tags[3] = {0xd9, 0xda, 0xdb};
static const unsigned char array_tags[3] = {0, 0xdc, 0xdd};
static const unsigned char map_tags[3] = {0, 0xde, 0xdf};

/* A string cut to max bytes; NULL is nil. len SIZE_MAX: NUL-terminated. */
static void
w_str(wr *b, const char *s, size_t len, size_t max)
{
    if (!s) {
        w_simple(b, 0xc0);
        return;
    }
    if (len == (size_t)-1)
        len = strnlen(s, max);
    if (len > max)
        len = max;
    w_header(b, 0xa0, 31, str_tags, (uint32_t)len);
    unsigned char *p = room(b, len);
    if (p)
        memcpy(p, s, len);
}

kin_err
kin__logrec_body(kin_buf *out, int level, uint64_t wall_ns, uint64_t mono_ns,
                 uint32_t task, const char *file, int line, const char *msg,
                 size_t msg_len, const kin_field *fields)
{
    wr w = {.b = out}, *b = &w;
    w_int(b, level);
    w_uint(b, wall_ns);
    w_uint(b, mono_ns);
    w_uint(b, task);
    w_str(b, file ? file : "", (size_t)-1, KIN__LOG_KEY_MAX * 2);
    w_int(b, line);
    w_str(b, msg ? msg : "", msg_len, KIN__LOG_STR_MAX);
    uint32_t n = 0;
    while (fields && fields[n].type != KIN_FIELD_END && n < KIN__LOG_FIELDS_MAX)
        n++;
    w_header(b, 0x80, 15, map_tags, n);
    for (uint32_t i = 0; i < n; i++) {
        const kin_field *f = &fields[i];
        w_str(b, f->key ? f->key : "", (size_t)-1, KIN__LOG_KEY_MAX);
        switch (f->type) {
        case KIN_FIELD_INT:
            w_int(b, f->v.i);
            break;
        case KIN_FIELD_UINT:
            w_uint(b, f->v.u);
            break;
        case KIN_FIELD_DOUBLE:
            w_double(b, f->v.d);
            break;
        case KIN_FIELD_BOOL:
            w_simple(b, f->v.b ? 0xc3 : 0xc2);
            break;
        case KIN_FIELD_STR:
            w_str(b, f->v.s.p, f->v.s.len, KIN__LOG_STR_MAX);
            break;
        default:
            w_simple(b, 0xc0);
            break;
        }
    }
    return w.failed ? -ENOMEM : KIN_OK;
}

size_t
kin__logrec_head(char *out, int bucket, uint64_t seq, uint32_t pub,
                 uint32_t pub_ctx, uint32_t ctx, const char *name,
                 size_t name_len, int pid, kin_logrec_kind kind, uint64_t drops)
{
    /* Written straight into out: at most 111 bytes (a 63-byte name and
     * every number at its widest), well under KIN__LOG_HEAD_MAX. */
    kin_buf kb;
    kin__buf_init_fixed(&kb, out, KIN__LOG_HEAD_MAX);
    wr b = {.b = &kb};
    unsigned char *t = room(&b, KIN__LOG_TOPIC_LEN);
    kin__log_topic(t, bucket, ctx);
    if (name_len > 63)
        name_len = 63;
    w_header(&b, 0x90, 15, array_tags, KIN__LOGREC_ITEMS);
    w_uint(&b, KIN__LOGREC_VERSION);
    w_uint(&b, seq);
    w_uint(&b, pub);
    w_uint(&b, pub_ctx);
    w_uint(&b, ctx);
    w_str(&b, name, name_len, 63);
    w_int(&b, pid);
    w_uint(&b, kind);
    w_uint(&b, drops);
    size_t len = kb.len;
    kin_buf_release(&kb); /* frees nothing: out was big enough */
    return len;
}

/* --- decoding ------------------------------------------------------------- */

typedef struct cur {
    const unsigned char *p, *end;
} cur;

static bool
take(cur *c, size_t n, const unsigned char **at)
{
    if ((size_t)(c->end - c->p) < n)
        return false;
    *at = c->p;
    c->p += n;
    return true;
}

static bool
r_be(cur *c, int bytes, uint64_t *v)
{
    const unsigned char *p;
    if (!take(c, (size_t)bytes, &p))
        return false;
    uint64_t x = 0;
    for (int i = 0; i < bytes; i++)
        x = x << 8 | p[i];
    *v = x;
    return true;
}

/* Any msgpack integer, as a sign and a magnitude-preserving pair. */
static bool
r_integer(cur *c, bool *neg, uint64_t *u, int64_t *i)
{
    const unsigned char *p;
    if (!take(c, 1, &p))
        return false;
    unsigned char t = *p;
    uint64_t v;
    *neg = false;
    if (t < 0x80) {
        *u = t;
    } else if (t >= 0xe0) {
        *neg = true;
        *i = (int8_t)t;
    } else if (t >= 0xcc && t <= 0xcf) {
        if (!r_be(c, 1 << (t - 0xcc), &v))
            return false;
        *u = v;
    } else if (t >= 0xd0 && t <= 0xd3) {
        int bytes = 1 << (t - 0xd0);
        if (!r_be(c, bytes, &v))
            return false;
        int64_t s = bytes == 8
                        ? (int64_t)v
                        : (int64_t)(v << (64 - 8 * bytes)) >> (64 - 8 * bytes);
        if (s >= 0) {
            *u = (uint64_t)s;
        } else {
            *neg = true;
            *i = s;
        }
    } else {
        return false;
    }
    return true;
}

static bool
r_u64(cur *c, uint64_t *v)
{
    bool neg;
    int64_t i;
    return r_integer(c, &neg, v, &i) && !neg;
}

static bool
r_u32(cur *c, uint32_t *v)
{
    uint64_t u;
    if (!r_u64(c, &u) || u > UINT32_MAX)
        return false;
    *v = (uint32_t)u;
    return true;
}

static bool
r_int(cur *c, int *v)
{
    bool neg;
    uint64_t u;
    int64_t i;
    if (!r_integer(c, &neg, &u, &i))
        return false;
    if (neg ? i < INT_MIN : u > INT_MAX)
        return false;
    *v = neg ? (int)i : (int)u;
    return true;
}

/* A container or str header (core's one reader of them). */
static bool
r_header(cur *c, kin__mp_kind kind, uint32_t *n)
{
    size_t len = kin__mp_header(c->p, (size_t)(c->end - c->p), kind, n);
    c->p += len;
    return len > 0;
}

/* A str (or nil, read as ""), borrowed. */
static bool
r_str(cur *c, const char **s, uint32_t *len)
{
    if (c->p < c->end && *c->p == 0xc0) {
        c->p++;
        *s = "";
        *len = 0;
        return true;
    }
    const unsigned char *p;
    if (!r_header(c, KIN__MP_STR, len) || !take(c, *len, &p))
        return false;
    *s = (const char *)p;
    return true;
}

/* Skips one object; nesting is bounded so a hostile record cannot recurse
 * deep, and counts are checked against the bytes left. */
static bool
skip(cur *c, int depth)
{
    if (depth > 16 || c->p >= c->end)
        return false;
    unsigned char t = *c->p;
    const unsigned char *p;
    uint32_t n;
    uint64_t v;
    if (t < 0x80 || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        return take(c, 1, &p);
    if (t >= 0xcc && t <= 0xd3) {
        bool neg;
        int64_t i;
        return r_integer(c, &neg, &v, &i);
    }
    if (t == 0xca || t == 0xcb)
        return take(c, t == 0xca ? 5 : 9, &p);
    if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb)) {
        const char *s;
        return r_str(c, &s, &n);
    }
    if (t >= 0xc4 && t <= 0xc6) { /* bin */
        c->p++;
        return r_be(c, 1 << (t - 0xc4), &v) && take(c, (size_t)v, &p);
    }
    bool map = (t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf;
    if (!r_header(c, map ? KIN__MP_MAP : KIN__MP_ARRAY, &n))
        return false; /* ext types and reserved bytes: not ours */
    uint64_t items = map ? 2 * (uint64_t)n : n;
    if (items > (uint64_t)(c->end - c->p))
        return false; /* every item takes at least a byte */
    for (uint64_t k = 0; k < items; k++)
        if (!skip(c, depth + 1))
            return false;
    return true;
}

void
kin__logdec_init(kin__logdec *d)
{
    memset(d, 0, sizeof *d);
}

void
kin__logdec_fini(kin__logdec *d)
{
    free(d->arena);
    free(d->fields);
    memset(d, 0, sizeof *d);
}

/* Copies a borrowed string into the arena, NUL-terminated. */
static const char *
keep(kin__logdec *d, size_t *used, const char *s, uint32_t len)
{
    char *dst = d->arena + *used;
    memcpy(dst, s, len);
    dst[len] = 0;
    *used += (size_t)len + 1;
    return dst;
}

static bool
r_value(kin__logdec *d, size_t *used, cur *c, kin_field *f)
{
    if (c->p >= c->end)
        return false;
    unsigned char t = *c->p;
    if (t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3)) {
        bool neg;
        uint64_t u = 0;
        int64_t i = 0;
        if (!r_integer(c, &neg, &u, &i))
            return false;
        if (neg || u <= INT64_MAX) {
            f->type = KIN_FIELD_INT;
            f->v.i = neg ? i : (int64_t)u;
        } else {
            f->type = KIN_FIELD_UINT;
            f->v.u = u;
        }
    } else if (t == 0xca || t == 0xcb) {
        c->p++;
        uint64_t bits;
        if (!r_be(c, t == 0xca ? 4 : 8, &bits))
            return false;
        f->type = KIN_FIELD_DOUBLE;
        if (t == 0xca) {
            uint32_t b32 = (uint32_t)bits;
            float fl;
            memcpy(&fl, &b32, sizeof fl);
            f->v.d = fl;
        } else {
            memcpy(&f->v.d, &bits, sizeof f->v.d);
        }
    } else if (t == 0xc2 || t == 0xc3) {
        c->p++;
        f->type = KIN_FIELD_BOOL;
        f->v.b = t == 0xc3;
    } else if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb)) {
        const char *s;
        uint32_t len;
        if (!r_str(c, &s, &len))
            return false;
        f->type = KIN_FIELD_STR;
        f->v.s.p = keep(d, used, s, len);
        f->v.s.len = len;
    } else {
        /* nil, or something kin does not log (arrays, maps, bin): nil */
        if (!skip(c, 0))
            return false;
        f->type = KIN_FIELD_NIL;
        f->v.s.p = NULL;
        f->v.s.len = 0;
    }
    return true;
}

kin_err
kin__logdec_decode(kin__logdec *d, const void *data, size_t len,
                   const kin_logrec **out)
{
    if (len <= KIN__LOG_TOPIC_LEN ||
        kin__log_letter_bucket(((const unsigned char *)data)[0]) < 0)
        return KIN_EBADMSG;
    cur c = {(const unsigned char *)data + KIN__LOG_TOPIC_LEN,
             (const unsigned char *)data + len};
    /* Every string fits in the message, plus a NUL each; strings are at
     * least one byte (their header) on the wire, so len NULs suffice. */
    if (2 * len > d->arena_cap) {
        char *a = realloc(d->arena, 2 * len);
        if (!a)
            return -ENOMEM;
        d->arena = a;
        d->arena_cap = 2 * len;
    }
    uint32_t items, nf, kind, name_len, file_len, msg_len;
    uint64_t version;
    const char *name, *file, *msg;
    kin_logrec *r = &d->rec;
    memset(r, 0, sizeof *r);
    if (!r_header(&c, KIN__MP_ARRAY, &items) || items < KIN__LOGREC_ITEMS ||
        !r_u64(&c, &version) || version != KIN__LOGREC_VERSION ||
        !r_u64(&c, &r->seq) || !r_u32(&c, &r->pub) || !r_u32(&c, &r->pub_ctx) ||
        !r_u32(&c, &r->ctx) || !r_str(&c, &name, &name_len) ||
        !r_int(&c, &r->pid) || !r_u32(&c, &kind) || kind >= KIN_LOGREC_GAP ||
        !r_u64(&c, &r->drops) || !r_int(&c, &r->level) ||
        !r_u64(&c, &r->wall_ns) || !r_u64(&c, &r->mono_ns) ||
        !r_u32(&c, &r->task) || !r_str(&c, &file, &file_len) ||
        !r_int(&c, &r->line) || !r_str(&c, &msg, &msg_len) ||
        !r_header(&c, KIN__MP_MAP, &nf))
        return KIN_EBADMSG;
    if ((uint64_t)nf * 2 > (uint64_t)(c.end - c.p))
        return KIN_EBADMSG;
    if (nf > d->fields_cap) {
        kin_field *f = realloc(d->fields, nf * sizeof *f);
        if (!f)
            return -ENOMEM;
        d->fields = f;
        d->fields_cap = nf;
    }
    size_t used = 0;
    r->kind = (kin_logrec_kind)kind;
    r->ctx_name = keep(d, &used, name, name_len);
    r->file = keep(d, &used, file, file_len);
    r->msg = keep(d, &used, msg, msg_len);
    r->msg_len = msg_len;
    for (uint32_t i = 0; i < nf; i++) {
        const char *k;
        uint32_t kl;
        kin_field *f = &d->fields[i];
        if (!r_str(&c, &k, &kl) || !r_value(d, &used, &c, f))
            return KIN_EBADMSG;
        f->key = keep(d, &used, k, kl);
        if (r->kind == KIN_LOGREC_DROPPED && !strcmp(f->key, "dropped") &&
            f->type == KIN_FIELD_INT)
            r->count = (uint64_t)f->v.i;
    }
    r->fields = d->fields;
    r->n_fields = nf;
    /* Items a later version appends are ignored. */
    *out = r;
    return KIN_OK;
}
