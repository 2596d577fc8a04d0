/* The service and name messages' bodies (router/service_wire.h). */
#include "router/service_wire.h"

#include <string.h>

#include <kin/pack.h>

#include "router/call_impl.h"
#include "router/node_impl.h"
#include "router/service.h"

/* What a service name is made of. */
static inline bool
name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool
kin__service_name_ok(const char *name, size_t len)
{
    if (!name || !len || len > KIN_SERVICE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char(name[i]))
            return false;
    return true;
}

static bool
ctx_name_ok(const char *name, size_t len)
{
    return len && len <= KIN__CTX_NAME_MAX && !memchr(name, 0, len);
}

kin_err
kin__svc_add_read(const void *body, size_t size, const char **name, size_t *len,
                  uint32_t *ctx, uint32_t *hops, uint32_t *bound)
{
    kin_err e = kin_unpack_buf(body, size, "Suuu", name, len, ctx, hops, bound);
    if (!e && (!kin__service_name_ok(*name, *len) || *hops >= KIN_MAX_DEPTH ||
               !*bound || *bound > KIN__SVC_COUNT_MAX))
        e = KIN_EBADMSG;
    return e;
}

kin_err
kin__svc_del_read(const void *body, size_t size, const char **name, size_t *len,
                  uint32_t *ctx)
{
    kin_err e = kin_unpack_buf(body, size, "Su", name, len, ctx);
    if (!e && !kin__service_name_ok(*name, *len))
        e = KIN_EBADMSG;
    return e;
}

kin_err
kin__svc_hold_read(const void *body, size_t size, const char **name,
                   size_t *len, uint32_t *origin, uint32_t *count)
{
    kin_err e = kin_unpack_buf(body, size, "Suu", name, len, origin, count);
    if (!e &&
        (!kin__service_name_ok(*name, *len) || *count > KIN__SVC_COUNT_MAX))
        e = KIN_EBADMSG;
    return e;
}

kin_err
kin__svc_call_read(const void *body, size_t size, kin__svc_call_head *out)
{
    memset(out, 0, sizeof *out);
    /* The call path's own header reader, so that what is fuzzed here is
     * what reads every call. */
    kin_msg m = {.body = (void *)body, .len = size};
    if (!kin__call_head(&m, true, &out->fn, &out->fn_len, &out->task,
                        &out->left, &out->args_off))
        return KIN_EBADMSG;
    if (out->fn_len > KIN__SVC_FN_MAX ||
        !kin__svc_fn_split(out->fn, out->fn_len, &out->svc_len))
        return KIN_EBADMSG;
    return KIN_OK;
}

bool
kin__svc_fn_split(const char *fn, size_t len, size_t *svc_len)
{
    /* One pass: kin__service_name_ok's rules up to the dot, then no NUL. */
    size_t i = 0;
    for (; i < len && fn[i] != '.'; i++)
        if (!name_char(fn[i]))
            return false;
    if (i == len || i == 0 || i > KIN_SERVICE_NAME_MAX)
        return false;
    *svc_len = i;
    for (i++; i < len; i++)
        if (!fn[i])
            return false;
    return true;
}

kin_err
kin__name_read(const void *body, size_t size, uint32_t *id, const char **name,
               size_t *len)
{
    kin_err e = kin_unpack_buf(body, size, "uS", id, name, len);
    if (!e && !ctx_name_ok(*name, *len))
        e = KIN_EBADMSG;
    return e;
}

kin_err
kin__lookup_read(const void *body, size_t size, const char **name, size_t *len,
                 int64_t *wait_ms)
{
    kin_err e = kin_unpack_buf(body, size, "SI", name, len, wait_ms);
    if (!e && !ctx_name_ok(*name, *len))
        e = KIN_EBADMSG;
    if (!e && *wait_ms > INT32_MAX)
        *wait_ms = INT32_MAX;
    return e;
}

size_t
kin__svc_head_put(uint8_t *out, const char *fn, size_t fn_len, uint32_t task,
                  int64_t left)
{
    size_t off = 1;
    if (fn_len < 32) {
        out[0] = (uint8_t)(0xa0 | fn_len);
    } else {
        out[0] = 0xd9;
        out[1] = (uint8_t)fn_len;
        off = 2;
    }
    memcpy(out + off, fn, fn_len);
    off += fn_len;
    uint32_t t = __builtin_bswap32(task);
    uint64_t l = __builtin_bswap64((uint64_t)left);
    out[off] = 0xce;
    memcpy(out + off + 1, &t, 4);
    out[off + 5] = 0xd3;
    memcpy(out + off + 6, &l, 8);
    return off + KIN__SVC_HEAD_TAIL;
}

kin_err
kin__svc_head_own(const void *body, size_t size, size_t svc_len,
                  kin__svc_call_head *out)
{
    const uint8_t *p = body;
    memset(out, 0, sizeof *out);
    if (size < 2)
        return KIN_EBADMSG;
    size_t off = 1, fn_len = p[0] & 0x1f;
    if ((p[0] & 0xe0) != 0xa0) {
        if (p[0] != 0xd9)
            return KIN_EBADMSG;
        fn_len = p[1];
        off = 2;
    }
    /* Every byte read below lies before off + fn_len + 14 <= size. */
    if (fn_len > KIN__SVC_FN_MAX || svc_len >= fn_len ||
        size - off < fn_len + 14 || p[off + svc_len] != '.' ||
        p[off + fn_len] != 0xce || p[off + fn_len + 5] != 0xd3)
        return KIN_EBADMSG;
    /* The rules kin__svc_call_read keeps, so that this reader never takes
     * a head that one refuses: a few dozen bytes, checked again here
     * because the body is only as good as whoever built it. */
    const char *fn = (const char *)p + off;
    if (!kin__service_name_ok(fn, svc_len) ||
        memchr(fn + svc_len + 1, 0, fn_len - svc_len - 1))
        return KIN_EBADMSG;
    out->fn = fn;
    out->fn_len = fn_len;
    out->svc_len = svc_len;
    uint32_t t;
    uint64_t l;
    memcpy(&t, p + off + fn_len + 1, 4);
    memcpy(&l, p + off + fn_len + 6, 8);
    out->task = __builtin_bswap32(t);
    out->left = (int64_t)__builtin_bswap64(l);
    out->args_off = off + fn_len + 14;
    return KIN_OK;
}
