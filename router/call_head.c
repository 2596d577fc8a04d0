/* The header of calls, read by hand: it is read for every call, and
 * msgpack-c's unpacker costs more than the rest of the dispatch. Its own
 * file so the fuzz target of service bodies (tests/fuzz/fuzz_service.c)
 * runs the very code every call goes through. */
#include <stdbool.h>
#include <stdint.h>

#include "core/pack_internal.h"
#include "router/call_impl.h"

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
    size_t k = kin__mp_int(p + off, m->len - off, &v, NULL);
    if (!k || v < 0 || v > UINT32_MAX)
        return false;
    *task = (uint32_t)v;
    off += k;
    *left = -1;
    if (with_left && !(k = kin__mp_int(p + off, m->len - off, left, NULL)))
        return false;
    *args_off = with_left ? off + k : off;
    return true;
}
