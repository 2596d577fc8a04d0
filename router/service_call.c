/* The caller side of service calls: a SVC_CALL addressed to the calling
 * context itself, whose service table resolves it or sends it up, and a
 * receiver for the reply that works like a direct call's. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "core/buf.h"
#include "core/msg_internal.h"
#include "router/call_impl.h"
#include "router/node_impl.h"
#include "router/service.h"
#include "router/service_impl.h"

/* Broker thread: the call goes straight to this context's resolver (no
 * handle lookup: it is our own message). */
static void
resolve_job(void *node, void *msg)
{
    kin_msg *m = msg;
    size_t svc_len = (size_t)(uintptr_t)m->local;
    m->local = NULL;
    kin__svc_resolve(node, m, svc_len);
}

static kin_err
vservice_async(kin_node *n, const char *fn, int timeout_ms, kin_receiver **out,
               const char *picture, va_list ap)
{
    size_t fn_len = fn ? strlen(fn) : 0, svc_len = 0;
    if (!n || !out || fn_len > KIN__SVC_FN_MAX ||
        !kin__svc_fn_split(fn, fn_len, &svc_len) || svc_len + 1 == fn_len)
        return -EINVAL;
    timeout_ms = kin__call_clamp(timeout_ms);
    kin_receiver *r;
    kin_err e = kin_receiver_new(&r, n, 0, KIN_POLICY_ANY, KIN_NO_CTX);
    if (e)
        return e;
    kin__receiver_set_fn(r, fn);
    char mem[512];
    kin_buf b;
    kin__buf_init_fixed(&b, mem, sizeof mem);
    /* The head by hand, as the resolver reads it (kin__svc_head_own). */
    kin__svc_call_head h = {.fn_len = fn_len,
                            .svc_len = svc_len,
                            .task = kin__call_self_task(n),
                            .left = timeout_ms < 0 ? -1 : timeout_ms};
    b.len = kin__svc_head_put((uint8_t *)mem, fn, fn_len, h.task, h.left);
    h.args_off = b.len;
    if (!e && picture && *picture)
        e = kin_vpack(&b, picture, ap);
    kin_msg *m = NULL;
    if (!e)
        e = kin_msg_new_copy(&m, b.data, b.len);
    kin_buf_release(&b);
    if (!e)
        e = kin__msg_check_size(KIN_HANDLE_SVC_CALL, 0, m->body, m->len,
                                n->max_msg);
    if (!e) {
        /* Never through kin_node_send, which delivers a message to n
         * itself right here. */
        m->dst = m->src = m->auth = n->id;
        m->handle = KIN_HANDLE_SVC_CALL;
        m->reply_to = kin_receiver_handle(r);
        /* The usual case resolves and sends here, as a direct call does
         * (kin__svc_fast_send); the rest is the broker's. */
        /* Where the head's fields are: no need to read them back. */
        h.fn = (const char *)m->body + h.args_off - KIN__SVC_HEAD_TAIL - fn_len;
        if (kin__svc_fast_send(n, m, &h)) {
            m = NULL;
        } else {
            /* Tells resolve_job where the head's fields are. */
            m->local = (void *)(uintptr_t)svc_len;
            e = kin__broker_defer(n->broker, resolve_job, n, m);
            if (!e)
                m = NULL;
        }
    }
    kin_msg_destroy(&m);
    if (e) {
        kin_receiver_destroy(&r);
        return e;
    }
    *out = r;
    return KIN_OK;
}

kin_err
kin_service_call_async(kin_node *n, const char *fn, int timeout_ms,
                       kin_receiver **out, const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = vservice_async(n, fn, timeout_ms, out, picture, ap);
    va_end(ap);
    return e;
}

kin_err
kin_service_call(kin_node *n, const char *fn, int timeout_ms, kin_msg **reply,
                 const char *picture, ...)
{
    *reply = NULL;
    timeout_ms = kin__call_clamp(timeout_ms);
    kin_receiver *r;
    va_list ap;
    va_start(ap, picture);
    kin_err e = vservice_async(n, fn, timeout_ms, &r, picture, ap);
    va_end(ap);
    if (e)
        return e;
    e = kin__call_wait(r, timeout_ms, reply, fn);
    /* The resolver cancels the call at the provider when its deadline,
     * the same as ours, passes; a late reply finds no handle. */
    kin_receiver_destroy(&r);
    return e;
}
