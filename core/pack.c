/* Picture-string packing and reading of msgpack bodies (kin/pack.h): a
 * writer of msgpack into a kin_buf (core/buf.c), and a reader that walks
 * top-level objects and the arrays and maps opened inside them. */
#include <kin/pack.h>

#include "core/buf.h"
#include "core/pack_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define PACK_CHARS "iIuUdbsSBnaMm"
#define UNPACK_CHARS "iIuUdbsSBnaMm?"

/* Bodies are mostly small; msgpack-c grows the zone past this as needed. */
#define ZONE_CHUNK 1024

#define DEPTH_MAX                                                              \
    ((int)(sizeof((kin_reader *)0)->stack / sizeof(struct kin_reader_frame)))

/* msgpack_unpack's failures as kin codes. NOMEM also stands for objects
 * nested deeper than msgpack-c's fixed stack of 32, and for sizes too big to
 * allocate, which hostile input can claim in a few bytes: both are limits
 * of what kin reads rather than a broken process. */
static kin_err
unpack_error(msgpack_unpack_return ret)
{
    switch (ret) {
    case MSGPACK_UNPACK_CONTINUE:
        return KIN_ESHORT;
    case MSGPACK_UNPACK_PARSE_ERROR:
        return KIN_EBADMSG;
    default:
        return KIN_ETOOBIG;
    }
}

static bool
unpacked(msgpack_unpack_return ret)
{
    return ret == MSGPACK_UNPACK_SUCCESS || ret == MSGPACK_UNPACK_EXTRA_BYTES;
}

/* Whether the bytes at p hold one complete msgpack object whose every
 * array and map claims no more elements than bytes remain. msgpack-c
 * reserves memory for the claimed count before reading the elements, so a
 * 5-byte body claiming 2^32 elements would ask for ~100 GiB: peers' bodies
 * are checked with this first. Returns the object's length, 0 or SIZE_MAX
 * (as kin__msgpack_scan), and adds to *framing the bytes of the headers
 * of its strings, binaries, exts (their ext type included), arrays and
 * maps: numbers, nil and booleans are all value. */
static size_t
scan_one(const void *data, size_t len, size_t *framing)
{
    const uint8_t *p = data;
    size_t pos = 0;
    uint64_t pending = 1;
    while (pending) {
        if (pos >= len)
            return 0;
        uint8_t t = p[pos++];
        pending--;
        uint64_t items = 0, skip = 0;
        int lenbytes = 0;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
            continue;
        if (t >= 0xcc && t <= 0xd3) {
            /* An integer: all value; big ones are as good as the others. */
            int64_t v;
            bool big;
            size_t k = kin__mp_int(p + pos - 1, len - pos + 1, &v, &big);
            if (!k)
                return 0;
            pos += k - 1;
            continue;
        }
        /* Numbers are all value; the rest have a header to count. */
        if (t <= 0xbf || (t >= 0xc4 && t <= 0xc9) || t >= 0xd9)
            *framing += 1;
        else if (t >= 0xd4 && t <= 0xd8)
            *framing += 2; /* fixext: type byte and its ext type */
        if (t >= 0xc7 && t <= 0xc9)
            *framing += 1; /* ext8..32: its ext type */
        if (t <= 0x8f) {
            items = 2u * (t & 0x0f);
        } else if (t <= 0x9f) {
            items = t & 0x0f;
        } else if (t <= 0xbf) {
            skip = t & 0x1f;
        } else {
            switch (t) {
            case 0xc4:
            case 0xd9:
                lenbytes = 1;
                break;
            case 0xc5:
            case 0xda:
                lenbytes = 2;
                break;
            case 0xc6:
            case 0xdb:
                lenbytes = 4;
                break;
            case 0xc7:
                lenbytes = 1;
                skip = 1;
                break; /* ext8: + type */
            case 0xc8:
                lenbytes = 2;
                skip = 1;
                break;
            case 0xc9:
                lenbytes = 4;
                skip = 1;
                break;
            case 0xca: /* float 32 */
                skip = 4;
                break;
            case 0xcb: /* float 64 */
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break; /* fixext: type + data */
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
            case 0xde:
                lenbytes = 2;
                break;
            case 0xdd:
            case 0xdf:
                lenbytes = 4;
                break;
            default:
                return SIZE_MAX; /* 0xc1: never used */
            }
        }
        if (lenbytes) {
            if (len - pos < (size_t)lenbytes)
                return 0;
            uint64_t n = 0;
            for (int i = 0; i < lenbytes; i++)
                n = n << 8 | p[pos + i];
            pos += (size_t)lenbytes;
            *framing += (size_t)lenbytes; /* only headers have lengths */
            if (t >= 0xdc)
                items = t >= 0xde ? 2 * n : n;
            else
                skip += n;
        }
        /* Every element takes at least one byte. */
        if (items > len - pos || skip > len - pos)
            return 0;
        pending += items;
        pos += (size_t)skip;
    }
    return pos;
}

size_t
kin__mp_header(const void *p, size_t len, kin__mp_kind kind, uint32_t *n)
{
    static const struct {
        uint8_t fix, fix_max, tags[3]; /* tags: 8-, 16-, 32-bit counts */
    } k[] = {[KIN__MP_ARRAY] = {0x90, 15, {0, 0xdc, 0xdd}},
             [KIN__MP_MAP] = {0x80, 15, {0, 0xde, 0xdf}},
             [KIN__MP_STR] = {0xa0, 31, {0xd9, 0xda, 0xdb}}};
    const uint8_t *b = p;
    if (!len)
        return 0;
    if (b[0] >= k[kind].fix && b[0] <= k[kind].fix + k[kind].fix_max) {
        *n = b[0] - k[kind].fix;
        return 1;
    }
    for (size_t t = 0; t < 3; t++) {
        size_t bytes = (size_t)1 << t;
        if (!k[kind].tags[t] || b[0] != k[kind].tags[t])
            continue;
        if (len < 1 + bytes)
            return 0;
        uint32_t v = 0;
        for (size_t i = 1; i <= bytes; i++)
            v = v << 8 | b[i];
        *n = v;
        return 1 + bytes;
    }
    return 0;
}

size_t
kin__msgpack_scan(const void *data, size_t len)
{
    size_t framing = 0;
    return scan_one(data, len, &framing);
}

size_t
kin__msgpack_envelope(const void *data, size_t len, unsigned whole)
{
    const uint8_t *p = data;
    size_t pos = 0, envelope = 0;
    for (unsigned i = 0; pos < len; i++) {
        size_t framing = 0;
        size_t n = scan_one(p + pos, len - pos, &framing);
        if (n == 0 || n == SIZE_MAX)
            return 0;
        envelope += i < whole ? n : framing;
        pos += n;
    }
    return envelope;
}

/* 'm' bytes go into the body unparsed, so a mistake would only surface when
 * the receiver fails to read the whole body; check them here instead. */
static kin_err
check_one_object(const void *p, size_t len)
{
    if (!p && len)
        return -EINVAL;
    if (kin__msgpack_scan(p, len) != len)
        return -EINVAL; /* truncated, trailing bytes, or not msgpack */
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, ZONE_CHUNK))
        return -ENOMEM;
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack(p, len, &off, &zone, &obj);
    msgpack_zone_destroy(&zone);
    if (ret == MSGPACK_UNPACK_SUCCESS)
        return KIN_OK;
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
        return KIN_ETOOBIG;
    return -EINVAL;
}

/* kin_pack writes msgpack itself, the bytes msgpack-c's packer would
 * write (the smallest form that holds each value; str 8 included), which
 * tests/unit/test_pack.c compares byte for byte. A call packs its
 * arguments here, and msgpack-c's packer writes each header and body
 * through a callback of its own. */

/* v big-endian in bytes bytes at out. */
static void
put_be(uint8_t *out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        out[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

/* A tag and then v in bytes bytes; returns the length. */
static size_t
put_tagged(uint8_t *out, uint8_t tag, uint64_t v, int bytes)
{
    out[0] = tag;
    put_be(out + 1, v, bytes);
    return 1 + (size_t)bytes;
}

static size_t
put_uint(uint8_t *out, uint64_t v)
{
    if (v < 128) {
        out[0] = (uint8_t)v;
        return 1;
    }
    if (v < 256)
        return put_tagged(out, 0xcc, v, 1);
    if (v < 65536)
        return put_tagged(out, 0xcd, v, 2);
    if (v <= UINT32_MAX)
        return put_tagged(out, 0xce, v, 4);
    return put_tagged(out, 0xcf, v, 8);
}

/* A non-negative int is written as an unsigned one, as msgpack-c does. */
static size_t
put_int(uint8_t *out, int64_t v)
{
    if (v >= -32) {
        if (v >= 0)
            return put_uint(out, (uint64_t)v);
        out[0] = (uint8_t)v; /* a negative fixint */
        return 1;
    }
    if (v >= INT8_MIN)
        return put_tagged(out, 0xd0, (uint64_t)v, 1);
    if (v >= INT16_MIN)
        return put_tagged(out, 0xd1, (uint64_t)v, 2);
    if (v >= INT32_MIN)
        return put_tagged(out, 0xd2, (uint64_t)v, 4);
    return put_tagged(out, 0xd3, (uint64_t)v, 8);
}

/* An array's or a map's header: fix is 0x90 or 0x80, tag16 0xdc or 0xde
 * (tag16 + 1 is the 32-bit one). */
static size_t
put_count(uint8_t *out, uint32_t n, uint8_t fix, uint8_t tag16)
{
    if (n < 16) {
        out[0] = (uint8_t)(fix | n);
        return 1;
    }
    if (n < 65536)
        return put_tagged(out, tag16, n, 2);
    return put_tagged(out, (uint8_t)(tag16 + 1), n, 4);
}

/* h (hn bytes), then len bytes of p, appended to b. */
static kin_err
append2(kin_buf *b, const uint8_t *h, size_t hn, const void *p, size_t len)
{
    uint8_t *at = (uint8_t *)kin__buf_extend(b, hn + len);
    if (!at)
        return -ENOMEM;
    if (hn)
        memcpy(at, h, hn);
    if (len)
        memcpy(at + hn, p, len);
    return KIN_OK;
}

/* A str or bin of len bytes at p. */
static kin_err
pack_raw(kin_buf *b, char type, const void *p, size_t len)
{
    if (!p && len)
        return -EINVAL;
    /* A header holds at most a 32-bit length. */
    if (len > UINT32_MAX)
        return KIN_ETOOBIG;
    uint8_t h[5];
    size_t hn;
    bool bin = type == 'B';
    if (!bin && len < 32) {
        h[0] = (uint8_t)(0xa0 | len);
        hn = 1;
    } else if (len < 256) {
        hn = put_tagged(h, bin ? 0xc4 : 0xd9, len, 1);
    } else if (len < 65536) {
        hn = put_tagged(h, bin ? 0xc5 : 0xda, len, 2);
    } else {
        hn = put_tagged(h, bin ? 0xc6 : 0xdb, len, 4);
    }
    return append2(b, h, hn, p, len);
}

static kin_err
pack_one(kin_buf *b, char c, va_list *ap)
{
    uint8_t h[9];
    size_t hn = 1;
    switch (c) {
    case 'i':
        hn = put_int(h, va_arg(*ap, int));
        break;
    case 'I':
        hn = put_int(h, va_arg(*ap, int64_t));
        break;
    case 'u':
        hn = put_uint(h, va_arg(*ap, unsigned));
        break;
    case 'U':
        hn = put_uint(h, va_arg(*ap, uint64_t));
        break;
    case 'd': {
        double d = va_arg(*ap, double);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        hn = put_tagged(h, 0xcb, bits, 8);
        break;
    }
    case 'b':
        h[0] = va_arg(*ap, int) ? 0xc3 : 0xc2;
        break;
    case 's': {
        const char *s = va_arg(*ap, const char *);
        if (s)
            return pack_raw(b, 'S', s, strlen(s));
        h[0] = 0xc0;
        break;
    }
    case 'S':
    case 'B': {
        const void *p = va_arg(*ap, const void *);
        size_t len = va_arg(*ap, size_t);
        return pack_raw(b, c, p, len);
    }
    case 'n':
        h[0] = 0xc0;
        break;
    case 'a':
        hn = put_count(h, va_arg(*ap, uint32_t), 0x90, 0xdc);
        break;
    case 'M':
        hn = put_count(h, va_arg(*ap, uint32_t), 0x80, 0xde);
        break;
    case 'm': {
        const void *p = va_arg(*ap, const void *);
        size_t len = va_arg(*ap, size_t);
        kin_err e = check_one_object(p, len);
        return e ? e : append2(b, NULL, 0, p, len);
    }
    }
    return append2(b, h, hn, NULL, 0);
}

kin_err
kin_vpack(kin_buf *b, const char *picture, va_list ap)
{
    /* Checked up front so that a typo costs no half-packed work. */
    if (!b || !picture || picture[strspn(picture, PACK_CHARS)])
        return -EINVAL;
    size_t len0 = b->len;
    /* A va_list parameter may be an array type, whose address is not a
     * va_list *; a local copy's address is. */
    va_list args;
    va_copy(args, ap);
    kin_err e = KIN_OK;
    for (const char *p = picture; *p && e == KIN_OK; p++)
        e = pack_one(b, *p, &args);
    va_end(args);
    if (e != KIN_OK)
        b->len = len0;
    return e;
}

kin_err
kin_pack(kin_buf *b, const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vpack(b, picture, ap);
    va_end(ap);
    return e;
}

void
kin_reader_init(kin_reader *r, const void *data, size_t len)
{
    /* A zeroed zone (chunk_size 0) means "not made yet": see zone_ready. */
    memset(r, 0, sizeof *r);
    r->data = data;
    r->len = len;
}

void
kin_reader_release(kin_reader *r)
{
    if (!r)
        return;
    if (r->zone.chunk_size)
        msgpack_zone_destroy(&r->zone);
    memset(r, 0, sizeof *r);
}

/* kin_reader_init cannot fail, so the zone is made by the first read. */
static kin_err
zone_ready(kin_reader *r)
{
    if (r->zone.chunk_size)
        return KIN_OK;
    if (!msgpack_zone_init(&r->zone, ZONE_CHUNK)) {
        memset(&r->zone, 0, sizeof r->zone);
        return -ENOMEM;
    }
    return KIN_OK;
}

/* Big-endian integers of n bytes at p. */
static uint64_t
be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* A signed value as msgpack-c gives it: positive when it is not negative,
 * whatever its encoding. */
static void
signed_obj(int64_t v, msgpack_object *obj)
{
    if (v >= 0) {
        obj->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        obj->via.u64 = (uint64_t)v;
    } else {
        obj->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
        obj->via.i64 = v;
    }
}

/* A str or bin of n bytes after a header of h bytes at p. */
static void
bytes_obj(msgpack_object_type type, const uint8_t *p, int h, uint64_t n,
          msgpack_object *obj)
{
    /* msgpack-c gives an empty str no pointer. */
    const char *at =
        n || type == MSGPACK_OBJECT_BIN ? (const char *)p + h : NULL;
    obj->type = type;
    if (type == MSGPACK_OBJECT_STR) {
        obj->via.str.size = (uint32_t)n;
        obj->via.str.ptr = at;
    } else {
        obj->via.bin.size = (uint32_t)n;
        obj->via.bin.ptr = at;
    }
}

/* The top-level object at p (complete: kin__msgpack_scan said so) read
 * without msgpack-c when it is a scalar (nil, boolean, number, str, bin),
 * into the msgpack_object msgpack_unpack would make of it. False for
 * arrays, maps and exts, which msgpack_unpack reads into the zone. */
static bool
scalar(const uint8_t *p, msgpack_object *obj)
{
    uint8_t c = p[0];
    memset(obj, 0, sizeof *obj);
    if (c <= 0x7f) {
        obj->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        obj->via.u64 = c;
    } else if (c >= 0xe0) {
        signed_obj((int8_t)c, obj);
    } else if (c >= 0xa0 && c <= 0xbf) {
        bytes_obj(MSGPACK_OBJECT_STR, p, 1, c & 0x1fu, obj);
    } else {
        switch (c) {
        case 0xc0:
            obj->type = MSGPACK_OBJECT_NIL;
            break;
        case 0xc2:
        case 0xc3:
            obj->type = MSGPACK_OBJECT_BOOLEAN;
            obj->via.boolean = c == 0xc3;
            break;
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            obj->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
            obj->via.u64 = be(p + 1, 1 << (c - 0xcc));
            break;
        case 0xd0:
            signed_obj((int8_t)p[1], obj);
            break;
        case 0xd1:
            signed_obj((int16_t)be(p + 1, 2), obj);
            break;
        case 0xd2:
            signed_obj((int32_t)be(p + 1, 4), obj);
            break;
        case 0xd3:
            signed_obj((int64_t)be(p + 1, 8), obj);
            break;
        case 0xca: {
            uint32_t u = (uint32_t)be(p + 1, 4);
            float f;
            memcpy(&f, &u, sizeof f);
            obj->type = MSGPACK_OBJECT_FLOAT32;
            obj->via.f64 = f;
            break;
        }
        case 0xcb: {
            uint64_t u = be(p + 1, 8);
            double d;
            memcpy(&d, &u, sizeof d);
            obj->type = MSGPACK_OBJECT_FLOAT64;
            obj->via.f64 = d;
            break;
        }
        case 0xd9:
        case 0xda:
        case 0xdb:
            bytes_obj(MSGPACK_OBJECT_STR, p, 1 + (1 << (c - 0xd9)),
                      be(p + 1, 1 << (c - 0xd9)), obj);
            break;
        case 0xc4:
        case 0xc5:
        case 0xc6:
            bytes_obj(MSGPACK_OBJECT_BIN, p, 1 + (1 << (c - 0xc4)),
                      be(p + 1, 1 << (c - 0xc4)), obj);
            break;
        default:
            return false;
        }
    }
    return true;
}

/* Takes the next item: the next element of the innermost open array or map,
 * or else the next top-level object, whose bytes begin at *start. A nested
 * item is taken from the top-level object msgpack-c already parsed. */
static kin_err
take(kin_reader *r, msgpack_object *obj, size_t *start)
{
    if (r->depth > 0) {
        struct kin_reader_frame *f = &r->stack[r->depth - 1];
        *start = f->off;
        if (f->kv)
            *obj = f->i % 2 ? f->kv[f->i / 2].val : f->kv[f->i / 2].key;
        else
            *obj = f->items[f->i];
        f->i++;
        f->n--;
        return KIN_OK;
    }
    if (r->off >= r->len)
        return KIN_ESHORT;
    size_t off = r->off;
    size_t scanned = kin__msgpack_scan(r->data + off, r->len - off);
    if (scanned == SIZE_MAX)
        return KIN_EBADMSG;
    if (!scanned)
        return KIN_ESHORT;
    if (scalar((const uint8_t *)r->data + off, obj)) {
        *start = off;
        r->off = off + scanned;
        return KIN_OK;
    }
    kin_err e = zone_ready(r);
    if (e != KIN_OK)
        return e;
    /* msgpack_unpack leaves str and bin pointing into r->data: that is what
     * makes 'S', 'B' and 'm' borrowed rather than copied. */
    msgpack_unpack_return ret =
        msgpack_unpack(r->data, r->len, &off, &r->zone, obj);
    if (!unpacked(ret))
        return unpack_error(ret);
    *start = r->off;
    r->off = off;
    return KIN_OK;
}

/* Where the item just taken, beginning at start, ends. A top-level object's
 * end is known from parsing it; msgpack_object records no byte offsets, so a
 * nested item is parsed again by itself to find its end. */
static kin_err
item_end(kin_reader *r, size_t start, size_t *end)
{
    if (r->depth == 0) {
        *end = r->off;
        return KIN_OK;
    }
    msgpack_object obj;
    *end = start;
    msgpack_unpack_return ret =
        msgpack_unpack(r->data, r->len, end, &r->zone, &obj);
    return unpacked(ret) ? KIN_OK : unpack_error(ret);
}

/* The item just taken ends at end: reading goes on after it, and the arrays
 * and maps it was the last item of are closed, each ending there too. */
static void
close_to(kin_reader *r, size_t end)
{
    while (r->depth > 0) {
        struct kin_reader_frame *f = &r->stack[r->depth - 1];
        f->off = end;
        if (f->n > 0)
            return;
        r->depth--;
    }
}

/* Moves past the item just taken, which is not being opened. */
static kin_err
pass(kin_reader *r, size_t start)
{
    size_t end;
    kin_err e = item_end(r, start, &end);
    if (e == KIN_OK)
        close_to(r, end);
    return e;
}

static kin_err
take_pass(kin_reader *r, msgpack_object *obj, size_t *start)
{
    kin_err e = take(r, obj, start);
    return e == KIN_OK ? pass(r, *start) : e;
}

/* Opens the array or map just taken, at start, so that the next items read
 * its elements. */
static kin_err
open_container(kin_reader *r, const msgpack_object *obj, size_t start)
{
    bool map = obj->type == MSGPACK_OBJECT_MAP;
    uint32_t n = map ? obj->via.map.size : obj->via.array.size;
    /* A frame counts a map's keys and values together. */
    if (map && n > UINT32_MAX / 2)
        return KIN_ETOOBIG;
    if (map)
        n *= 2;
    /* msgpack-c tells where a container's bytes begin but not where its
     * first element does. */
    uint32_t claimed;
    size_t first =
        start + kin__mp_header(r->data + start, r->len - start,
                               map ? KIN__MP_MAP : KIN__MP_ARRAY, &claimed);
    if (n == 0) {
        close_to(r, first);
        return KIN_OK;
    }
    /* Frames whose last item this is have nothing more to read; closing them
     * now lets chains of one-element containers go deeper than the stack. */
    while (r->depth > 0 && r->stack[r->depth - 1].n == 0)
        r->depth--;
    if (r->depth == DEPTH_MAX)
        return KIN_ETOOBIG;
    struct kin_reader_frame *f = &r->stack[r->depth++];
    f->items = map ? NULL : obj->via.array.ptr;
    f->kv = map ? obj->via.map.ptr : NULL;
    f->n = n;
    f->i = 0;
    f->off = first;
    return KIN_OK;
}

/* Reads an array ('a') or map ('M') header and opens it. On a type error
 * the value is passed over so the reader stays in step. */
static kin_err
read_container(kin_reader *r, msgpack_object_type type, uint32_t *size)
{
    msgpack_object obj;
    size_t start;
    kin_err e = take(r, &obj, &start);
    if (e != KIN_OK)
        return e;
    if (obj.type != type) {
        e = pass(r, start);
        return e == KIN_OK ? KIN_ETYPE : e;
    }
    e = open_container(r, &obj, start);
    if (e == KIN_OK)
        *size =
            type == MSGPACK_OBJECT_MAP ? obj.via.map.size : obj.via.array.size;
    return e;
}

static kin_err
to_int64(const msgpack_object *obj, int64_t *v)
{
    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = obj->via.i64;
        return KIN_OK;
    }
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        obj->via.u64 <= INT64_MAX) {
        *v = (int64_t)obj->via.u64;
        return KIN_OK;
    }
    return KIN_ETYPE;
}

static kin_err
to_uint64(const msgpack_object *obj, uint64_t max, uint64_t *v)
{
    if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER || obj->via.u64 > max)
        return KIN_ETYPE;
    *v = obj->via.u64;
    return KIN_OK;
}

static kin_err
to_double(const msgpack_object *obj, double *v)
{
    switch (obj->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *v = obj->via.f64;
        return KIN_OK;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *v = (double)obj->via.u64;
        return KIN_OK;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *v = (double)obj->via.i64;
        return KIN_OK;
    default:
        return KIN_ETYPE;
    }
}

/* msgpack-c gives an empty str a NULL pointer; 'S' and 'B' results go to
 * memcpy and the like, where NULL is undefined even with length 0. */
static const char empty[1] = "";

static kin_err
to_strdup(const msgpack_object *obj, char **out)
{
    if (obj->type == MSGPACK_OBJECT_NIL) {
        *out = NULL;
        return KIN_OK;
    }
    if (obj->type != MSGPACK_OBJECT_STR)
        return KIN_ETYPE;
    const char *p = obj->via.str.ptr;
    uint32_t len = obj->via.str.size;
    /* A C string cannot hold it whole, and a shortened one could pass a
     * check its full value would fail. */
    if (len && memchr(p, 0, len))
        return KIN_ETYPE;
    char *s = malloc((size_t)len + 1);
    if (!s)
        return -ENOMEM;
    if (len)
        memcpy(s, p, len);
    s[len] = '\0';
    *out = s;
    return KIN_OK;
}

/* Reads one picture character's value. Outputs are fetched before reading so
 * that the arguments stay in step whatever happens. */
static kin_err
unpack_one(kin_reader *r, char c, va_list *ap)
{
    msgpack_object obj;
    size_t start;
    kin_err e;
    int64_t i64;
    uint64_t u64;
    switch (c) {
    case 'i': {
        int *out = va_arg(*ap, int *);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK ||
            (e = to_int64(&obj, &i64)) != KIN_OK)
            return e;
        if (i64 < INT_MIN || i64 > INT_MAX)
            return KIN_ETYPE;
        *out = (int)i64;
        return KIN_OK;
    }
    case 'I': {
        int64_t *out = va_arg(*ap, int64_t *);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK ||
            (e = to_int64(&obj, &i64)) != KIN_OK)
            return e;
        *out = i64;
        return KIN_OK;
    }
    case 'u': {
        unsigned *out = va_arg(*ap, unsigned *);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK ||
            (e = to_uint64(&obj, UINT_MAX, &u64)) != KIN_OK)
            return e;
        *out = (unsigned)u64;
        return KIN_OK;
    }
    case 'U': {
        uint64_t *out = va_arg(*ap, uint64_t *);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK ||
            (e = to_uint64(&obj, UINT64_MAX, &u64)) != KIN_OK)
            return e;
        *out = u64;
        return KIN_OK;
    }
    case 'd': {
        double *out = va_arg(*ap, double *);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK)
            return e;
        return to_double(&obj, out);
    }
    case 'b': {
        bool *out = va_arg(*ap, bool *);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK)
            return e;
        if (obj.type != MSGPACK_OBJECT_BOOLEAN)
            return KIN_ETYPE;
        *out = obj.via.boolean;
        return KIN_OK;
    }
    case 's': {
        char **out = va_arg(*ap, char **);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK)
            return e;
        return to_strdup(&obj, out);
    }
    case 'S': {
        const char **out = va_arg(*ap, const char **);
        size_t *len = va_arg(*ap, size_t *);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK)
            return e;
        if (obj.type != MSGPACK_OBJECT_STR)
            return KIN_ETYPE;
        *len = obj.via.str.size;
        *out = *len ? obj.via.str.ptr : empty;
        return KIN_OK;
    }
    case 'B': {
        const void **out = va_arg(*ap, const void **);
        size_t *len = va_arg(*ap, size_t *);
        if ((e = take_pass(r, &obj, &start)) != KIN_OK)
            return e;
        if (obj.type != MSGPACK_OBJECT_BIN)
            return KIN_ETYPE;
        *len = obj.via.bin.size;
        *out = *len ? obj.via.bin.ptr : empty;
        return KIN_OK;
    }
    case 'n':
        if ((e = take_pass(r, &obj, &start)) != KIN_OK)
            return e;
        return obj.type == MSGPACK_OBJECT_NIL ? KIN_OK : KIN_ETYPE;
    case 'a':
        return read_container(r, MSGPACK_OBJECT_ARRAY, va_arg(*ap, uint32_t *));
    case 'M':
        return read_container(r, MSGPACK_OBJECT_MAP, va_arg(*ap, uint32_t *));
    case 'm': {
        const void **out = va_arg(*ap, const void **);
        size_t *len = va_arg(*ap, size_t *);
        size_t end;
        if ((e = take(r, &obj, &start)) != KIN_OK ||
            (e = item_end(r, start, &end)) != KIN_OK)
            return e;
        close_to(r, end);
        *out = r->data + start;
        *len = end - start;
        return KIN_OK;
    }
    default: /* '?' */
        return take_pass(r, &obj, &start);
    }
}

/* After an error, frees the 's' copies made by the first n picture
 * characters, walking the arguments again from the start. */
static void
free_copies(const char *picture, size_t n, va_list *ap)
{
    for (size_t k = 0; k < n; k++) {
        switch (picture[k]) {
        case 's': {
            char **s = va_arg(*ap, char **);
            free(*s);
            *s = NULL;
            break;
        }
        case 'i':
            (void)va_arg(*ap, int *);
            break;
        case 'I':
            (void)va_arg(*ap, int64_t *);
            break;
        case 'u':
            (void)va_arg(*ap, unsigned *);
            break;
        case 'U':
            (void)va_arg(*ap, uint64_t *);
            break;
        case 'd':
            (void)va_arg(*ap, double *);
            break;
        case 'b':
            (void)va_arg(*ap, bool *);
            break;
        case 'S':
            (void)va_arg(*ap, const char **);
            (void)va_arg(*ap, size_t *);
            break;
        case 'B':
        case 'm':
            (void)va_arg(*ap, const void **);
            (void)va_arg(*ap, size_t *);
            break;
        case 'a':
        case 'M':
            (void)va_arg(*ap, uint32_t *);
            break;
        }
    }
}

kin_err
kin_vunpack(kin_reader *r, const char *picture, va_list ap)
{
    /* Checked up front so that a typo leaves the reader where it was. */
    if (!r || !picture || picture[strspn(picture, UNPACK_CHARS)])
        return -EINVAL;
    va_list args, again;
    va_copy(args, ap);
    va_copy(again, ap);
    kin_err e = KIN_OK;
    size_t k;
    for (k = 0; picture[k]; k++) {
        e = unpack_one(r, picture[k], &args);
        if (e != KIN_OK)
            break;
    }
    if (e != KIN_OK)
        free_copies(picture, k, &again);
    va_end(again);
    va_end(args);
    return e;
}

kin_err
kin_unpack(kin_reader *r, const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vunpack(r, picture, ap);
    va_end(ap);
    return e;
}

kin_err
kin_reader_next(kin_reader *r, msgpack_object *obj)
{
    if (!r || !obj)
        return -EINVAL;
    size_t start;
    return take_pass(r, obj, &start);
}

bool
kin_reader_done(const kin_reader *r)
{
    return r->depth == 0 && r->off >= r->len;
}

kin_err
kin__vunpack_buf(const void *data, size_t len, const char *picture, va_list ap)
{
    kin_reader r;
    kin_reader_init(&r, data, len);
    kin_err e = kin_vunpack(&r, picture, ap);
    kin_reader_release(&r);
    return e;
}

kin_err
kin_unpack_buf(const void *data, size_t len, const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin__vunpack_buf(data, len, picture, ap);
    va_end(ap);
    return e;
}
