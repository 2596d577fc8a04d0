/* libFuzzer target for the service and name messages' bodies
 * (router/service_wire.c): SVC_ADD, SVC_DEL, SVC_HOLD, SVC_CALL/SVC_RUN,
 * NAME and LOOKUP, which any context of the tree may send, and the
 * resolver's fixed-offset reader of a call's head (kin__svc_head_own).
 * Input: byte 0 picks the decoder (mod 7), the rest is the body (an
 * exact-size allocation); for the fixed-offset reader byte 1 is the
 * service name's length it is told and the body starts at byte 2.
 * Properties: an error is a kin code; an accepted body's
 * strings lie inside it and keep the rules (a valid service name, a
 * function part without NUL, a context name of 1..63 bytes without NUL,
 * counts and hops in range, the arguments' offset within the body); and
 * the same input spells a well-formed body, packed as kin's senders pack
 * it, which must read back with the same values, and with a NUL put into
 * its name must be refused with KIN_EBADMSG. The fixed-offset reader
 * takes only what kin__svc_call_read takes, with the same fields, and
 * reads back a head kin__svc_head_put wrote; told a wrong service name
 * length, or with a NUL in its function part, it refuses it. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kin/pack.h>

#include "core/buf.h"
#include "router/service.h"
#include "router/service_wire.h"

enum { ADD, DEL, HOLD, CALL, NAME, LOOKUP, OWN, KINDS };

static void
check_err(kin_err e)
{
    if (e != KIN_OK && e != KIN_ETYPE && e != KIN_ESHORT && e != KIN_EBADMSG &&
        e != KIN_ETOOBIG && e != -ENOMEM)
        abort(); /* not a kin code */
}

/* s[0..len) lies inside body[0..size). */
static void
inside(const uint8_t *body, size_t size, const char *s, size_t len)
{
    if (len &&
        ((const uint8_t *)s < body || (const uint8_t *)s + len > body + size))
        abort(); /* a string outside the body */
}

static bool
ctx_name_ok(const char *s, size_t len)
{
    return len >= 1 && len <= KIN__CTX_NAME_MAX && !memchr(s, 0, len);
}

/* Decodes body as kind; returns the error after checking what an accepted
 * body promises. Values in v[] (name, len, three numbers). */
typedef struct vals {
    const char *name;
    size_t len;
    uint32_t a, b, c;
    int64_t i;
    kin__svc_call_head h;
} vals;

static bool
same_head(const kin__svc_call_head *a, const kin__svc_call_head *b)
{
    return a->fn == b->fn && a->fn_len == b->fn_len &&
           a->svc_len == b->svc_len && a->task == b->task &&
           a->left == b->left && a->args_off == b->args_off;
}

/* The fixed-offset reader on body, told svc_len: KIN_OK or KIN_EBADMSG;
 * what it accepts lies inside the body and kin__svc_call_read reads the
 * same; what it refuses leaves *out zeroed. */
static kin_err
own(const uint8_t *body, size_t size, size_t svc_len, kin__svc_call_head *out)
{
    kin_err e = kin__svc_head_own(body, size, svc_len, out);
    if (e) {
        static const kin__svc_call_head zero;
        if (e != KIN_EBADMSG || memcmp(out, &zero, sizeof zero))
            abort(); /* another error, or a half-filled head */
        return e;
    }
    if (out->svc_len != svc_len || out->args_off > size)
        abort();
    inside(body, size, out->fn, out->fn_len);
    kin__svc_call_head full;
    if (kin__svc_call_read(body, size, &full) || !same_head(out, &full))
        abort(); /* taken here, refused or read otherwise by the full reader */
    return e;
}

static kin_err
decode(int kind, const uint8_t *body, size_t size, vals *v)
{
    memset(v, 0, sizeof *v);
    kin_err e;
    switch (kind) {
    case ADD:
        e = kin__svc_add_read(body, size, &v->name, &v->len, &v->a, &v->b,
                              &v->c);
        if (!e && (v->b >= 64 || !v->c || v->c > KIN__SVC_COUNT_MAX))
            abort(); /* hops or bound out of range */
        break;
    case DEL:
        e = kin__svc_del_read(body, size, &v->name, &v->len, &v->a);
        break;
    case HOLD:
        e = kin__svc_hold_read(body, size, &v->name, &v->len, &v->a, &v->b);
        if (!e && v->b > KIN__SVC_COUNT_MAX)
            abort(); /* count out of range */
        break;
    case CALL:
        e = kin__svc_call_read(body, size, &v->h);
        if (!e) {
            v->name = v->h.fn;
            v->len = v->h.svc_len;
            if (v->h.fn_len > KIN__SVC_FN_MAX || v->h.svc_len >= v->h.fn_len ||
                v->h.fn[v->h.svc_len] != '.' ||
                memchr(v->h.fn, 0, v->h.fn_len) || v->h.args_off > size)
                abort(); /* a function name or offset out of its rules */
            inside(body, size, v->h.fn, v->h.fn_len);
            /* Whatever the fixed-offset reader makes of it agrees. */
            kin__svc_call_head h;
            own(body, size, v->h.svc_len, &h);
        }
        break;
    case NAME:
        e = kin__name_read(body, size, &v->a, &v->name, &v->len);
        if (!e && !ctx_name_ok(v->name, v->len))
            abort();
        break;
    case LOOKUP:
        e = kin__lookup_read(body, size, &v->name, &v->len, &v->i);
        if (!e && (!ctx_name_ok(v->name, v->len) || v->i > INT32_MAX))
            abort();
        break;
    default: /* OWN: body[0] is the service name's length it is told */
        if (!size)
            return KIN_EBADMSG;
        e = own(body + 1, size - 1, body[0], &v->h);
        if (!e) {
            v->name = v->h.fn;
            v->len = v->h.svc_len;
        }
        break;
    }
    check_err(e);
    if (!e) {
        inside(body, size, v->name, v->len);
        if ((kind <= CALL || kind == OWN) &&
            !kin__service_name_ok(v->name, v->len))
            abort(); /* an invalid service name accepted */
    }
    return e;
}

static kin_err
decode_exact(int kind, const kin_buf *b, vals *v, uint8_t **keep)
{
    uint8_t *copy = malloc(b->len ? b->len : 1);
    if (!copy)
        abort();
    memcpy(copy, b->data, b->len);
    *keep = copy;
    return decode(kind, copy, b->len, v);
}

/* A body for OWN: the service name's length the reader is told, then the
 * head as a caller here writes it and two arguments. */
static kin_err
put_own(kin_buf *b, size_t svc_len, const char *fn, size_t fn_len, uint32_t x,
        int64_t ms, uint32_t y)
{
    uint8_t head[1 + KIN__SVC_HEAD_MAX];
    head[0] = (uint8_t)svc_len;
    size_t len = 1 + kin__svc_head_put(head + 1, fn, fn_len, x, ms);
    kin_err e = kin__buf_add(b, head, len);
    return e ? e : kin_pack(b, "si", "arg", (int)y);
}

static const char alphabet[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    int kind = data[0] % KINDS;
    uint8_t *body = calloc(1, size - 1 ? size - 1 : 1);
    if (!body)
        abort();
    memcpy(body, data + 1, size - 1);
    vals v;
    decode(kind, body, size - 1, &v);
    free(body);

    /* The same input spells a well-formed body: a name of 1..40 bytes from
     * the service alphabet, a function part, numbers in range. */
    char name[48], fn[64];
    size_t nlen = 1 + (size > 1 ? data[1] % 40 : 0);
    for (size_t i = 0; i < nlen; i++)
        name[i] = alphabet[data[(i + 2) % size] % (sizeof alphabet - 1)];
    name[nlen] = 0;
    uint32_t x = (uint32_t)size * 2654435761u, y = data[size - 1];
    uint32_t hops = y % 64, count = 1 + x % KIN__SVC_COUNT_MAX;
    int64_t ms = (int64_t)x * (size & 1 ? -1 : 1);
    snprintf(fn, sizeof fn, "%s.f%u", name, (unsigned)(y % 1000));
    kin_buf b;
    kin_buf_init(&b);
    kin_err e;
    switch (kind) {
    case ADD:
        e = kin_pack(&b, "suuu", name, x, hops, count);
        break;
    case DEL:
        e = kin_pack(&b, "su", name, x);
        break;
    case HOLD:
        e = kin_pack(&b, "suu", name, x, count - 1);
        break;
    case CALL:
        e = kin_pack(&b, "suIsi", fn, x, ms, "arg", (int)y);
        break;
    case NAME:
        e = kin_pack(&b, "us", x, name);
        break;
    case LOOKUP:
        e = kin_pack(&b, "sI", name, ms);
        break;
    default:
        e = put_own(&b, nlen, fn, strlen(fn), x, ms, y);
        break;
    }
    if (e)
        abort();
    uint8_t *keep;
    e = decode_exact(kind, &b, &v, &keep);
    bool same = !e;
    if (same && (kind == CALL || kind == OWN))
        same = v.h.fn_len == strlen(fn) && !memcmp(v.h.fn, fn, v.h.fn_len) &&
               v.h.svc_len == nlen && v.h.task == x && v.h.left == ms &&
               v.h.args_off < b.len;
    else if (same)
        same = v.len == nlen && !memcmp(v.name, name, nlen) &&
               (kind == LOOKUP ? v.i == (ms > INT32_MAX ? INT32_MAX : ms)
                               : v.a == x) &&
               (kind != ADD || (v.b == hops && v.c == count)) &&
               (kind != HOLD || v.b == count - 1);
    if (!same)
        abort(); /* a well-formed body does not read back */
    free(keep);

    /* Told the wrong length of its service name, the fixed-offset reader
     * refuses it. */
    for (int d = -1; kind == OWN && d <= 1; d += 2) {
        kin_buf_release(&b);
        kin_buf_init(&b);
        if (put_own(&b, nlen + d, fn, strlen(fn), x, ms, y))
            abort();
        if (decode_exact(kind, &b, &v, &keep) != KIN_EBADMSG)
            abort(); /* a head read at the wrong places */
        free(keep);
    }

    /* With a NUL in its name it is refused. */
    bool in_fn = kind == CALL || kind == OWN;
    size_t flen = strlen(fn), at = in_fn ? flen - 1 : nlen - 1;
    kin_buf_release(&b);
    kin_buf_init(&b);
    if (kind == CALL) {
        fn[at] = 0;
        e = kin_pack(&b, "SuI", fn, strlen(fn) + 1, x, ms);
    } else if (kind == OWN) {
        fn[at] = 0;
        e = put_own(&b, nlen, fn, flen, x, ms, y);
    } else {
        name[at] = 0;
        switch (kind) {
        case ADD:
            e = kin_pack(&b, "Suuu", name, nlen, x, hops, count);
            break;
        case DEL:
            e = kin_pack(&b, "Su", name, nlen, x);
            break;
        case HOLD:
            e = kin_pack(&b, "Suu", name, nlen, x, count - 1);
            break;
        case NAME:
            e = kin_pack(&b, "uS", x, name, nlen);
            break;
        default: /* LOOKUP */
            e = kin_pack(&b, "SI", name, nlen, ms);
            break;
        }
    }
    if (e)
        abort();
    e = decode_exact(kind, &b, &v, &keep);
    if (e != KIN_EBADMSG)
        abort(); /* a name with a NUL inside accepted */
    free(keep);
    kin_buf_release(&b);
    return 0;
}
