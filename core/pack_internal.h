/* Internals of the pack helper shared with the router. */
#ifndef KIN_CORE_PACK_INTERNAL_H
#define KIN_CORE_PACK_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/err.h>

/* Checks that data holds one complete msgpack object whose arrays and maps
 * claim no more elements than bytes remain (so msgpack-c will not reserve
 * memory for a peer's made-up count). Returns the object's length, 0 when
 * the bytes end too early, SIZE_MAX for a byte msgpack never uses. */
size_t kin__msgpack_scan(const void *data, size_t len);

/* The envelope of a body made of msgpack objects one after another: the
 * whole of the first `whole` objects (a CALL's function name and caller)
 * and, in every other object, nested ones included, the headers of
 * strings, binaries, exts, arrays and maps. What remains -- their
 * contents, and numbers, nil and booleans -- is the payload. 0 when data
 * is not such a sequence (then all of it is payload). */
size_t kin__msgpack_envelope(const void *data, size_t len, unsigned whole);

/* The one reader of msgpack container and string headers for the code that
 * walks bodies by hand (log records, monitor replies, the reader here). */
typedef enum kin__mp_kind {
    KIN__MP_ARRAY, /* fixarray 0x90.., array 16 0xdc, array 32 0xdd */
    KIN__MP_MAP,   /* fixmap 0x80.., map 16 0xde, map 32 0xdf */
    KIN__MP_STR    /* fixstr 0xa0.., str 8 0xd9, str 16 0xda, str 32 0xdb */
} kin__mp_kind;

/* The header of a `kind` at p (len bytes readable): sets *n to the count
 * (elements, pairs, or bytes) it claims and returns the header's length;
 * 0 when p holds no complete header of that kind. The count is not checked
 * against the bytes left (kin__msgpack_scan does that). */
size_t kin__mp_header(const void *p, size_t len, kin__mp_kind kind,
                      uint32_t *n);

/* The one decoder of msgpack integers for the code that reads bodies by
 * hand (call headers, dead messages, the scan here): a positive or
 * negative fixint, uint 8/16/32/64 or int 8/16/32/64 at p (len bytes
 * readable). Sets *v and returns the integer's length; 0 when p holds no
 * complete integer. A uint 64 above INT64_MAX does not fit *v: with big
 * given, *big is set (and *v is INT64_MAX); without, it is refused (0).
 * Inline: every call's header goes through it. */
static inline size_t
kin__mp_int(const void *p, size_t len, int64_t *v, bool *big)
{
    const uint8_t *b = p;
    if (big)
        *big = false;
    if (!len)
        return 0;
    uint8_t t = b[0];
    if (t <= 0x7f || t >= 0xe0) {
        *v = (int8_t)t; /* a fixint is its own int8 */
        return 1;
    }
    if (t < 0xcc || t > 0xd3)
        return 0;
    /* 0xcc..0xcf uint, 0xd0..0xd3 int; the low two bits give the width. */
    size_t w = (size_t)1 << (t & 3);
    if (len - 1 < w)
        return 0;
    uint64_t u = 0;
    for (size_t i = 1; i <= w; i++)
        u = u << 8 | b[i];
    if (t >= 0xd0) {
        unsigned shift = (unsigned)(64 - 8 * w); /* sign-extend */
        *v = (int64_t)(u << shift) >> shift;
    } else if (u > INT64_MAX) {
        if (!big)
            return 0;
        *big = true;
        *v = INT64_MAX;
    } else {
        *v = (int64_t)u;
    }
    return 1 + w;
}

/* kin_unpack_buf with a va_list. */
kin_err kin__vunpack_buf(const void *data, size_t len, const char *picture,
                         va_list ap);

#endif
