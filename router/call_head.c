/* The header of calls, read by hand: it is read for every call, and
 * msgpack-c's unpacker costs more than the rest of the dispatch. Its own
 * file so the fuzz target of service bodies (tests/fuzz/fuzz_service.c)
 * runs the very code every call goes through. */
#include <stdbool.h>
#include <stdint.h>

#include "core/pack_internal.h"
#include "router/call_impl.h"

/* A msgpack integer at p (len bytes readable): its length, 0 if none. */
static size_t
mp_get_int(const uint8_t *p, size_t len, int64_t *v)
{
    if (!len)
        return 0;
    uint8_t t = p[0];
    if (t <= 0x7f || t >= 0xe0) {
        *v = t <= 0x7f ? (int64_t)t : (int64_t)(int8_t)t;
        return 1;
    }
    size_t w = 0;
    bool sign = false;
    switch (t) {
    case 0xcc:
        w = 1;
        break;
    case 0xcd:
        w = 2;
        break;
    case 0xce:
        w = 4;
        break;
    case 0xcf:
        w = 8;
        break;
    case 0xd0:
        w = 1, sign = true;
        break;
    case 0xd1:
        w = 2, sign = true;
        break;
    case 0xd2:
        w = 4, sign = true;
        break;
    case 0xd3:
        w = 8, sign = true;
        break;
    default:
        return 0;
    }
    if (len < 1 + w)
        return 0;
    uint64_t u = 0;
    for (size_t i = 0; i < w; i++)
        u = u << 8 | p[1 + i];
    if (sign && w < 8 && (u >> (8 * w - 1)) & 1)
        u |= ~0ull << (8 * w); /* sign-extend */
    if (!sign && u > INT64_MAX)
        return 0;
    *v = (int64_t)u;
    return 1 + w;
}

bool
kin__call_head(const kin_msg *m, bool with_left, const char **fn,
               size_t *fn_len, uint32_t *task, int64_t *left, size_t *args_off)
{
    const uint8_t *p = m->body;
    uint32_t n;
    size_t off = kin__mp_header(p, m->len, KIN__MP_STR, &n);
    if (!off || m->len - off < n)
        return false;
    *fn = (const char *)p + off;
    *fn_len = n;
    off += n;
    int64_t v;
    size_t k = mp_get_int(p + off, m->len - off, &v);
    if (!k || v < 0 || v > UINT32_MAX)
        return false;
    *task = (uint32_t)v;
    off += k;
    *left = -1;
    if (with_left && !(k = mp_get_int(p + off, m->len - off, left)))
        return false;
    *args_off = with_left ? off + k : off;
    return true;
}
