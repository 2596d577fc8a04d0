/* The caller side of calls: packing a CALL, waiting for its reply with a
 * timeout, cancelling the remote task on timeout or cancel, and reading
 * error replies. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/msg_internal.h"
#include "core/pack_internal.h"
#include "core/task.h"
#include "router/call_impl.h"
#include "router/lead.h"
#include "router/node_impl.h"
#include "router/service.h"

/* Sends the body packed in b (unless packing failed with e) to
 * ctx:handle, and releases b. */
static kin_err
send_buf(kin_node *n, kin_buf *b, kin_err e, uint32_t ctx, uint32_t handle,
         uint32_t reply_to)
{
    kin_msg *m = NULL;
    if (!e)
        e = kin__msg_from_buf(&m, b);
    kin_buf_release(b);
    if (e)
        return e;
    m->dst = ctx;
    m->handle = handle;
    m->reply_to = reply_to;
    if ((e = kin_node_send(n, &m)))
        kin_msg_destroy(&m);
    return e;
}

/* The calling thread's task id (adopting the thread if need be). */
uint32_t
kin__call_self_task(kin_node *n)
{
    kin_task *self = kin__adopt_begin(n);
    kin__adopt_end(self);
    return self ? self->id : 0u;
}

/* Builds and sends a CALL to ctx; reply_to 0 wants no reply. */
static kin_err
send_call(kin_node *n, uint32_t ctx, const char *fn, uint32_t reply_to,
          const char *picture, va_list ap)
{
    /* Packed in stack storage while it fits: one allocation, the
     * message's. */
    char mem[512];
    kin_buf b;
    kin__buf_init_fixed(&b, mem, sizeof mem);
    kin_err e = kin_pack(&b, "su", fn, kin__call_self_task(n));
    if (!e && picture && *picture)
        e = kin_vpack(&b, picture, ap);
    return send_buf(n, &b, e, ctx, KIN_HANDLE_CALL, reply_to);
}

static kin_err
vcall_async(kin_node *n, uint32_t ctx, const char *fn, kin_receiver **out,
            const char *picture, va_list ap)
{
    kin_receiver *r;
    kin_err e = kin_receiver_new(&r, n, 0, KIN_POLICY_ANY, ctx);
    if (e)
        return e;
    kin__receiver_set_fn(r, fn);
    if ((e = send_call(n, ctx, fn, kin_receiver_handle(r), picture, ap))) {
        kin_receiver_destroy(&r);
        return e;
    }
    *out = r;
    return KIN_OK;
}

kin_err
kin_call_async(kin_node *n, uint32_t ctx, const char *fn, kin_receiver **out,
               const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = vcall_async(n, ctx, fn, out, picture, ap);
    va_end(ap);
    return e;
}

kin_err
kin_call_nowait(kin_node *n, uint32_t ctx, const char *fn, const char *picture,
                ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = send_call(n, ctx, fn, 0, picture, ap);
    va_end(ap);
    return e;
}

kin_err
kin_call_result_of(kin_msg **reply)
{
    kin_err e = kin_msg_check_dead(reply);
    if (e)
        return e;
    if (!((*reply)->flags & KIN_MSG_ERROR))
        return KIN_OK;
    kin_remote_error info;
    if (kin_call_error(*reply, &info)) {
        kin_msg_destroy(reply);
        return KIN_EBADMSG;
    }
    if (info.code == KIN_EREFUSED || info.code == KIN_ENOFUNC ||
        info.code == KIN_ECANCELLED || info.code == KIN_ETOOBIG)
        return info.code;
    return KIN_EREMOTE;
}

/* Waits for r's reply as the calling thread's task, recording the awaited
 * call (ctx:handle, fn) for the monitor's await graph. */
static kin_err
wait_reply(kin_receiver *r, int timeout_ms, kin_msg **reply, const char *fn)
{
    *reply = NULL;
    kin_node *n;
    uint32_t ctx;
    kin__receiver_target(r, &n, &ctx);
    kin_task *t = kin__adopt_begin(n);
    if (!fn)
        fn = kin__receiver_fn(r);
    /* A service call's receiver names its function but no context (the
     * resolver picks one; kin ps asks it which). */
    if (ctx == KIN_NO_CTX && fn[0])
        kin__task_await_service(t, kin_receiver_handle(r), fn);
    else
        kin__task_await_call(t, ctx, kin_receiver_handle(r), fn);
    kin_msg *m;
    kin_err e = kin__lead_get(n, ctx, kin_receiver_handle(r),
                              kin_receiver_latch(r), timeout_ms, &m);
    kin__task_await_call(t, KIN_NO_CTX, 0, NULL);
    kin__adopt_end(t);
    if (e)
        return e;
    e = kin_call_result_of(&m);
    /* Errors from the callee keep their reply for kin_call_error. */
    if (e == KIN_OK || m)
        *reply = m;
    if (e == KIN_ECANCELLED || e == KIN_ETOOBIG)
        kin_msg_destroy(reply);
    return e;
}

kin_err
kin_call_wait(kin_receiver *r, int timeout_ms, kin_msg **reply)
{
    return wait_reply(r, timeout_ms, reply, NULL);
}

kin_err
kin__call_wait(kin_receiver *r, int timeout_ms, kin_msg **reply, const char *fn)
{
    return wait_reply(r, timeout_ms, reply, fn);
}

int
kin__call_clamp(int timeout_ms)
{
    uint64_t dl = kin__call_deadline();
    if (!dl)
        return timeout_ms;
    uint64_t now = kin__now_ns();
    int64_t left = dl > now ? (int64_t)((dl - now) / 1000000u) : 0;
    return timeout_ms < 0 || left < timeout_ms ? (int)left : timeout_ms;
}

kin_err
kin_call_cancel(kin_receiver *r)
{
    kin_node *n = NULL;
    uint32_t ctx = KIN_NO_CTX;
    kin__receiver_target(r, &n, &ctx);
    if (ctx == KIN_NO_CTX)
        return -EINVAL;
    kin_buf b = {0};
    kin_err e =
        kin_pack(&b, "uu", kin_receiver_handle(r), kin__call_self_task(n));
    return send_buf(n, &b, e, ctx, KIN_HANDLE_CANCEL, 0);
}

kin_err
kin_call_sync(kin_node *n, uint32_t ctx, const char *fn, int timeout_ms,
              kin_msg **reply, const char *picture, ...)
{
    *reply = NULL;
    kin_receiver *r;
    va_list ap;
    va_start(ap, picture);
    kin_err e = vcall_async(n, ctx, fn, &r, picture, ap);
    va_end(ap);
    if (e)
        return e;
    e = wait_reply(r, kin__call_clamp(timeout_ms), reply, fn);
    if (e == KIN_ETIMEOUT || e == KIN_ECANCELLED)
        kin_call_cancel(r);
    /* Destroying the receiver unregisters its handle: a late reply gets
     * "unknown handle" and, having no reply_to, is dropped by the router. */
    kin_receiver_destroy(&r);
    return e;
}

kin_err
kin_call_error(const kin_msg *reply, kin_remote_error *out)
{
    if (!(reply->flags & KIN_MSG_ERROR))
        return -EINVAL;
    int64_t code;
    uint32_t ctx;
    const char *msg, *fn;
    size_t msg_len, fn_len;
    kin_err e = kin_unpack_buf(reply->body, reply->len, "ISuS", &code, &msg,
                               &msg_len, &ctx, &fn, &fn_len);
    if (e)
        return KIN_EBADMSG;
    out->code = (int)code;
    out->ctx = ctx;
    snprintf(out->message, sizeof out->message, "%.*s", (int)msg_len, msg);
    snprintf(out->function, sizeof out->function, "%.*s", (int)fn_len, fn);
    return KIN_OK;
}

kin_err
kin_call_error_stack(const kin_msg *reply, char *buf, size_t cap)
{
    if (!(reply->flags & KIN_MSG_ERROR))
        return -EINVAL;
    if (cap)
        buf[0] = 0;
    int64_t code;
    uint32_t ctx;
    const char *msg, *fn, *stack;
    size_t msg_len, fn_len, stack_len;
    kin_reader rd;
    kin_reader_init(&rd, reply->body, reply->len);
    kin_err e =
        kin_unpack(&rd, "ISuS", &code, &msg, &msg_len, &ctx, &fn, &fn_len);
    if (!e && !kin_reader_done(&rd) &&
        !(e = kin_unpack(&rd, "S", &stack, &stack_len)) && cap)
        snprintf(buf, cap, "%.*s", (int)stack_len, stack);
    kin_reader_release(&rd);
    return e ? KIN_EBADMSG : KIN_OK;
}

kin_err
kin_msg_unpack(const kin_msg *m, const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin__vunpack_buf(m->body, m->len, picture, ap);
    va_end(ap);
    return e;
}

kin_err
kin_send(kin_node *n, uint32_t ctx, uint32_t handle, const char *picture, ...)
{
    kin_buf b = {0};
    va_list ap;
    va_start(ap, picture);
    kin_err e = picture ? kin_vpack(&b, picture, ap) : KIN_OK;
    va_end(ap);
    return send_buf(n, &b, e, ctx, handle, 0);
}
