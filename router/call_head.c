/* The header of calls, read by hand: it is read for every call, and
 * msgpack-c's unpacker costs more than the rest of the dispatch. Its own
 * file so the fuzz target of service bodies (tests/fuzz/fuzz_service.c)
 * runs the very code every call goes through. */
#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/pack_internal.h"
#include "router/call_impl.h"

bool
kin__call_head(const kin_msg *m, bool with_left, const char **fn,
               size_t *fn_len, uint32_t *task, int64_t *left, size_t *args_off)
{
    const uint8_t *p = m->body;
    uint32_t n;
    size_t off;
    if (m->len && (p[0] & 0xe0) == 0xa0) { /* a fixstr: a name under 32 bytes */
        n = p[0] & 0x1f;
        off = 1;
    } else {
        off = kin__mp_header(p, m->len, KIN__MP_STR, &n);
    }
    if (!off || m->len - off < n)
        return false;
    *fn = (const char *)p + off;
    *fn_len = n;
    off += n;
    int64_t v;
    size_t k;
    uint32_t t32;
    uint64_t t64;
    /* A uint 32 task and an int 64 ms left, as service heads are written
     * (kin__svc_head_put), read whole; any other form the general way. */
    if (m->len - off >= 5 && p[off] == 0xce) {
        memcpy(&t32, p + off + 1, 4);
        v = be32toh(t32);
        k = 5;
    } else {
        k = kin__mp_int(p + off, m->len - off, &v, NULL);
    }
    if (!k || v < 0 || v > UINT32_MAX)
        return false;
    *task = (uint32_t)v;
    off += k;
    *left = -1;
    if (with_left && m->len - off >= 9 && p[off] == 0xd3) {
        memcpy(&t64, p + off + 1, 8);
        *left = (int64_t)be64toh(t64);
        k = 9;
    } else if (with_left &&
               !(k = kin__mp_int(p + off, m->len - off, left, NULL))) {
        return false;
    }
    *args_off = with_left ? off + k : off;
    return true;
}
