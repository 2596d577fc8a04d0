/* The C API for monitor queries (include/kin/monitor.h): requests as calls
 * to the MONITOR handle of any context, replies decoded into structs. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <kin/call.h>
#include <kin/monitor.h>

#include "core/pack_internal.h"
#include "core/task.h"
#include "monitor/query.h"
#include "router/router.h"

/* Whether a reply is an error: a map whose first key is "error". Read from
 * its first bytes, since a kin_reader parses the whole top-level map first:
 * for a ps reply of 10,000 tasks that took as long as decoding it. */
static bool
is_error_reply(const kin_msg *m)
{
    const uint8_t *p = m->body;
    size_t left = m->len, h;
    uint32_t n;
    if (!(h = kin__mp_header(p, left, KIN__MP_MAP, &n)))
        return false;
    p += h;
    left -= h;
    if (!(h = kin__mp_header(p, left, KIN__MP_STR, &n)) || n != 5)
        return false;
    return left - h >= 5 && !memcmp(p + h, "error", 5);
}

kin_err
kin_monitor_request(kin_node *n, uint32_t ctx, const kin_buf *request,
                    int timeout_ms, kin_msg **reply)
{
    *reply = NULL;
    kin_receiver *r;
    kin_err e = kin_receiver_new(&r, n, 0, KIN_POLICY_ANY, ctx);
    if (e)
        return e;
    kin_msg *m;
    if ((e = kin_msg_new_copy(&m, request->data, request->len))) {
        kin_receiver_destroy(&r);
        return e;
    }
    m->dst = ctx;
    m->handle = KIN_HANDLE_MONITOR;
    m->reply_to = kin_receiver_handle(r);
    if ((e = kin_node_send(n, &m))) {
        kin_msg_destroy(&m);
        kin_receiver_destroy(&r);
        return e;
    }
    e = kin_receiver_get(r, timeout_ms, reply);
    kin_receiver_destroy(&r);
    if (e)
        return e;
    return is_error_reply(*reply) ? KIN_EREMOTE : KIN_OK;
}

/* The code of an error reply ({"error": text, "code": n}). */
static kin_err
error_code(const kin_msg *reply)
{
    int code = KIN_EREMOTE;
    kin_msg_unpack(reply, "M??Si", &(uint32_t){0}, &(const char *){0},
                   &(size_t){0}, &code);
    return code ? code : KIN_EREMOTE;
}

static kin_err
request(kin_node *n, uint32_t ctx, int timeout_ms, kin_msg **reply,
        const char *cmd, const char *picture, ...)
{
    kin_buf b = {0};
    kin_err e = kin_pack(&b, "s", cmd);
    if (!e && picture) {
        va_list ap;
        va_start(ap, picture);
        e = kin_vpack(&b, picture, ap);
        va_end(ap);
    }
    if (!e)
        e = kin_monitor_request(n, ctx, &b, timeout_ms, reply);
    kin_buf_release(&b);
    if (e == KIN_EREMOTE) {
        e = error_code(*reply);
        kin_msg_destroy(reply);
    }
    return e;
}

/* Finds key in the reply map and leaves the reader on its value. */
static kin_err
seek(kin_reader *rd, const char *key)
{
    uint32_t pairs;
    kin_err e = kin_unpack(rd, "M", &pairs);
    for (uint32_t i = 0; !e && i < pairs; i++) {
        const char *k;
        size_t len;
        if ((e = kin_unpack(rd, "S", &k, &len)))
            break;
        if (len == strlen(key) && !memcmp(k, key, len))
            return KIN_OK;
        e = kin_unpack(rd, "?");
    }
    return e ? e : KIN_EBADMSG;
}

static void
copy(char *dst, size_t size, const char *s, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(dst, s, len);
    dst[len] = 0;
}

/* Fields of a reply's task row, from msgpack-c's objects; false when the
 * field has another type. */
static bool
obj_u32(const msgpack_object *o, uint32_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
        return false;
    *v = (uint32_t)o->via.u64;
    return true;
}

static bool
obj_int(const msgpack_object *o, int *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT_MAX)
        *v = (int)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
             o->via.i64 >= INT_MIN)
        *v = (int)o->via.i64;
    else
        return false;
    return true;
}

static bool
obj_double(const msgpack_object *o, double *v)
{
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        *v = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *v = (double)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = (double)o->via.i64;
    else
        return false;
    return true;
}

static bool
obj_bool(const msgpack_object *o, bool *v)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *v = o->via.boolean;
    return true;
}

static bool
obj_str(const msgpack_object *o, char *dst, size_t size)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return false;
    copy(dst, size, o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
    return true;
}

/* One row of ps (live) or ps-terminated (ended); see docs/monitor.md. */
static bool
read_row(const msgpack_object *row, bool ended, kin_task_info *t)
{
    if (row->type != MSGPACK_OBJECT_ARRAY ||
        row->via.array.size < (ended ? 12u : 15u))
        return false;
    const msgpack_object *f = row->via.array.ptr;
    int state = 0;
    bool ok = obj_u32(&f[0], &t->id) &&
              obj_str(&f[1], t->name, sizeof t->name) &&
              obj_str(&f[2], t->fn, sizeof t->fn) && obj_int(&f[3], &state) &&
              obj_bool(&f[4], &t->persistent) &&
              obj_u32(&f[5], &t->caller_ctx) && obj_u32(&f[6], &t->caller_task);
    t->state = (kin_task_state)state;
    if (!ok)
        return false;
    if (ended)
        return obj_int(&f[7], &t->result) &&
               obj_u32(&f[8], &t->cancelled_by_ctx) &&
               obj_u32(&f[9], &t->cancelled_by_task) &&
               obj_double(&f[10], &t->age_ms) &&
               obj_double(&f[11], &t->ended_ago_ms);
    if (!(obj_u32(&f[7], &t->caller_handle) && obj_double(&f[8], &t->age_ms) &&
          obj_str(&f[9], t->waiting, sizeof t->waiting) &&
          obj_double(&f[10], &t->wait_ms) && obj_u32(&f[11], &t->await_ctx) &&
          obj_u32(&f[12], &t->await_handle) &&
          obj_str(&f[13], t->await_fn, sizeof t->await_fn) &&
          obj_str(&f[14], t->created_at, sizeof t->created_at)))
        return false;
    /* The calls of a select (fields 15 and 16; absent from older peers). */
    if (row->via.array.size < 17)
        return true;
    const msgpack_object *pairs = &f[15];
    if (pairs->type != MSGPACK_OBJECT_ARRAY || pairs->via.array.size % 2 ||
        pairs->via.array.size > 2 * KIN_TASK_MAX_AWAITS ||
        !obj_u32(&f[16], &t->n_awaits))
        return false;
    for (uint32_t i = 0; i < pairs->via.array.size / 2; i++)
        if (!obj_u32(&pairs->via.array.ptr[2 * i], &t->awaits[i].ctx) ||
            !obj_u32(&pairs->via.array.ptr[2 * i + 1], &t->awaits[i].handle))
            return false;
    if (t->n_awaits < pairs->via.array.size / 2)
        t->n_awaits = pairs->via.array.size / 2;
    /* The awaited call's service (field 17; absent from older peers). */
    return row->via.array.size < 18 ||
           obj_str(&f[17], t->await_service, sizeof t->await_service);
}

/* The next object at *off into zone, *off moved past it. */
static bool
next_object(const kin_msg *m, size_t *off, msgpack_zone *zone,
            msgpack_object *obj)
{
    msgpack_unpack_return ret =
        msgpack_unpack((const char *)m->body, m->len, off, zone, obj);
    return ret == MSGPACK_UNPACK_SUCCESS || ret == MSGPACK_UNPACK_EXTRA_BYTES;
}

/* The reply is read one row at a time through a small zone that is reused:
 * kin_unpack parses the whole top-level map before its first item and then
 * re-parses every field it passes, which made decoding a ps of 10,000 tasks
 * cost more than answering it (docs/performance.md, "Monitor"). */
static kin_err
read_tasks(const kin_msg *reply, bool ended, uint32_t ctx, kin_task_info **out,
           size_t *count)
{
    size_t len = 0, off;
    uint32_t pairs = 0, n = 0;
    /* Every claimed count checked first, so that msgpack-c never reserves
     * memory for a made-up one. */
    if (kin__msgpack_scan(reply->body, reply->len) != reply->len ||
        !(len = kin__mp_header(reply->body, reply->len, KIN__MP_MAP, &pairs)))
        return KIN_EBADMSG;
    off = len;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return -ENOMEM;
    kin_err e = KIN_OK;
    bool found = false;
    for (uint32_t i = 0; !e && !found && i < pairs; i++) {
        msgpack_object key, val;
        if (!next_object(reply, &off, &zone, &key)) {
            e = KIN_EBADMSG;
        } else if (key.type == MSGPACK_OBJECT_STR && key.via.str.size == 5 &&
                   !memcmp(key.via.str.ptr, "tasks", 5)) {
            found = (len = kin__mp_header(reply->body + off, reply->len - off,
                                          KIN__MP_ARRAY, &n)) > 0;
            if (found)
                off += len; /* at the first row */
            else
                e = KIN_EBADMSG; /* "tasks" is not an array */
        } else if (!next_object(reply, &off, &zone, &val)) {
            e = KIN_EBADMSG;
        }
        msgpack_zone_clear(&zone);
    }
    if (!e && !found)
        e = KIN_EBADMSG; /* no "tasks" array */
    kin_task_info *ts = e ? NULL : calloc(n ? n : 1, sizeof *ts);
    if (!e && !ts)
        e = -ENOMEM;
    for (uint32_t i = 0; !e && i < n; i++) {
        msgpack_object row;
        ts[i].ctx = ctx;
        ts[i].await_ctx = KIN_NO_CTX;
        if (!next_object(reply, &off, &zone, &row) ||
            !read_row(&row, ended, &ts[i]))
            e = KIN_EBADMSG;
        msgpack_zone_clear(&zone);
    }
    msgpack_zone_destroy(&zone);
    if (e) {
        free(ts);
        return e;
    }
    *out = ts;
    *count = n;
    return KIN_OK;
}

kin_err
kin_monitor_ps(kin_node *n, uint32_t ctx, const char *filter,
               bool persistent_only, int timeout_ms, kin_task_info **tasks,
               size_t *count)
{
    kin_msg *reply;
    kin_err e =
        request(n, ctx, timeout_ms, &reply, "ps", "Msssb", 2, "filter",
                filter ? filter : "", "persistent", (int)persistent_only);
    if (e)
        return e;
    e = read_tasks(reply, false, ctx, tasks, count);
    kin_msg_destroy(&reply);
    return e;
}

kin_err
kin_monitor_ps_terminated(kin_node *n, uint32_t ctx, int timeout_ms,
                          kin_task_info **tasks, size_t *count)
{
    kin_msg *reply;
    kin_err e = request(n, ctx, timeout_ms, &reply, "ps-terminated", NULL);
    if (e)
        return e;
    e = read_tasks(reply, true, ctx, tasks, count);
    kin_msg_destroy(&reply);
    return e;
}

kin_err
kin_monitor_where(kin_node *n, uint32_t ctx, uint32_t task, int timeout_ms,
                  kin_frame_info **frames, size_t *count)
{
    kin_msg *reply;
    kin_err e =
        request(n, ctx, timeout_ms, &reply, "where", "Msu", 1, "task", task);
    if (e)
        return e;
    kin_reader rd;
    kin_reader_init(&rd, reply->body, reply->len);
    uint32_t nf = 0;
    e = seek(&rd, "frames");
    if (!e)
        e = kin_unpack(&rd, "a", &nf);
    kin_frame_info *fs = e ? NULL : calloc(nf ? nf : 1, sizeof *fs);
    if (!e && !fs)
        e = -ENOMEM;
    for (uint32_t i = 0; !e && i < nf; i++) {
        uint32_t four;
        const char *fn, *file;
        size_t fl, il;
        e = kin_unpack(&rd, "aUSSi", &four, &fs[i].addr, &fn, &fl, &file, &il,
                       &fs[i].line);
        if (!e) {
            copy(fs[i].fn, sizeof fs[i].fn, fn, fl);
            copy(fs[i].file, sizeof fs[i].file, file, il);
        }
    }
    kin_reader_release(&rd);
    kin_msg_destroy(&reply);
    if (e) {
        free(fs);
        return e == -ENOMEM ? e : KIN_EBADMSG;
    }
    *frames = fs;
    *count = nf;
    return KIN_OK;
}

kin_err
kin_monitor_cancel(kin_node *n, uint32_t ctx, uint32_t task, int timeout_ms)
{
    kin_msg *reply;
    /* The cancelling task goes along, for the victim's record. */
    kin_task *self = kin__adopt_begin(n);
    kin__adopt_end(self);
    kin_err e = request(n, ctx, timeout_ms, &reply, "cancel", "Msusu", 2,
                        "task", task, "by", self ? self->id : 0u);
    kin_msg_destroy(&reply);
    return e;
}

uint32_t
kin_monitor_operator_id(int pid, unsigned seq)
{
    return 0x80000000u | ((uint32_t)pid & 0x3fffffu) << 8 | (seq & 0xffu);
}

bool
kin_monitor_operator_pid(uint32_t id, int *pid)
{
    if (!(id & 0x80000000u))
        return false;
    if (pid)
        *pid = (int)((id >> 8) & 0x3fffffu);
    return true;
}

/* Decodes an info reply into *info and destroys it. */
static kin_err
read_info(kin_msg *reply, uint32_t ctx, kin_ctx_info *info)
{
    kin_err e;
    memset(info, 0, sizeof *info);
    info->id = ctx;
    info->parent = KIN_NO_CTX;
    kin_reader rd;
    kin_reader_init(&rd, reply->body, reply->len);
    uint32_t pairs;
    e = kin_unpack(&rd, "M", &pairs);
    for (uint32_t i = 0; !e && i < pairs; i++) {
        const char *k, *s;
        size_t kl, sl;
        if ((e = kin_unpack(&rd, "S", &k, &kl)))
            break;
        char key[32];
        copy(key, sizeof key, k, kl);
        if (!strcmp(key, "name")) {
            if (!(e = kin_unpack(&rd, "S", &s, &sl)))
                copy(info->name, sizeof info->name, s, sl);
        } else if (!strcmp(key, "endpoint")) {
            if (!(e = kin_unpack(&rd, "S", &s, &sl)))
                copy(info->endpoint, sizeof info->endpoint, s, sl);
        } else if (!strcmp(key, "log_frontend")) {
            if (!(e = kin_unpack(&rd, "S", &s, &sl)))
                copy(info->log_frontend, sizeof info->log_frontend, s, sl);
        } else if (!strcmp(key, "log_endpoint")) {
            if (!(e = kin_unpack(&rd, "S", &s, &sl)))
                copy(info->log_endpoint, sizeof info->log_endpoint, s, sl);
        } else if (!strcmp(key, "host")) {
            if (!(e = kin_unpack(&rd, "S", &s, &sl)))
                copy(info->host, sizeof info->host, s, sl);
        } else if (!strcmp(key, "where")) {
            if (!(e = kin_unpack(&rd, "S", &s, &sl)))
                copy(info->where, sizeof info->where, s, sl);
        } else if (!strcmp(key, "pid")) {
            e = kin_unpack(&rd, "i", &info->pid);
        } else if (!strcmp(key, "joined")) {
            e = kin_unpack(&rd, "b", &info->joined);
        } else if (!strcmp(key, "workers")) {
            e = kin_unpack(&rd, "i", &info->workers);
        } else if (!strcmp(key, "tasks")) {
            e = kin_unpack(&rd, "u", &info->tasks);
        } else if (!strcmp(key, "rss_kib")) {
            e = kin_unpack(&rd, "I", &info->rss_kib);
        } else if (!strcmp(key, "uptime_ms")) {
            e = kin_unpack(&rd, "d", &info->uptime_ms);
        } else if (!strcmp(key, "parent")) {
            msgpack_object o;
            if (!(e = kin_reader_next(&rd, &o)) &&
                o.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                info->parent = (uint32_t)o.via.u64;
        } else if (!strcmp(key, "children")) {
            uint32_t nc;
            if ((e = kin_unpack(&rd, "a", &nc)))
                break;
            for (uint32_t c = 0; !e && c < nc; c++) {
                uint32_t id;
                e = kin_unpack(&rd, "u", &id);
                if (!e && info->n_children < 256)
                    info->children[info->n_children++] = id;
            }
        } else {
            e = kin_unpack(&rd, "?");
        }
    }
    kin_reader_release(&rd);
    kin_msg_destroy(&reply);
    return e ? KIN_EBADMSG : KIN_OK;
}

kin_err
kin_monitor_info(kin_node *n, uint32_t ctx, int timeout_ms, kin_ctx_info *info)
{
    kin_msg *reply;
    kin_err e = request(n, ctx, timeout_ms, &reply, "info", NULL);
    return e ? e : read_info(reply, ctx, info);
}

/* --- many contexts at once ------------------------------------------------
 */

/* One request in flight. */
typedef struct pending {
    kin_receiver *r;
    uint64_t deadline_ns;
    kin_err e; /* of sending */
} pending;

static kin_err
send_one(kin_node *n, uint32_t ctx, const kin_buf *request, int timeout_ms,
         pending *p)
{
    p->r = NULL;
    p->deadline_ns =
        kin__now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    kin_err e = kin_receiver_new(&p->r, n, 0, KIN_POLICY_ANY, ctx);
    kin_msg *m = NULL;
    if (!e && !(e = kin_msg_new_copy(&m, request->data, request->len))) {
        m->dst = ctx;
        m->handle = KIN_HANDLE_MONITOR;
        m->reply_to = kin_receiver_handle(p->r);
        e = kin_node_send(n, &m);
        kin_msg_destroy(&m);
    }
    if (e)
        kin_receiver_destroy(&p->r);
    return p->e = e;
}

/* The reply to p (as `request` returns it: an error reply turned into its
 * code), its receiver destroyed. */
static kin_err
take_one(pending *p, int timeout_ms, kin_msg **reply)
{
    *reply = NULL;
    if (p->e)
        return p->e;
    kin_err e;
    if (timeout_ms < 0) {
        e = kin_receiver_get(p->r, -1, reply);
    } else {
        uint64_t now = kin__now_ns();
        int left = now >= p->deadline_ns
                       ? 0
                       : (int)((p->deadline_ns - now + 999999u) / 1000000u);
        e = kin_receiver_get(p->r, left, reply);
    }
    kin_receiver_destroy(&p->r);
    if (!e && is_error_reply(*reply)) {
        e = error_code(*reply);
        kin_msg_destroy(reply);
    }
    return e;
}

typedef void (*reply_fn)(size_t i, kin_err e, kin_msg *reply, void *arg);

/* Sends request to each of ctxs, at most KIN__MONITOR_WINDOW in flight,
 * and hands each reply (or error) to fn in the order of ctxs; fn owns the
 * reply. */
static kin_err
request_many(kin_node *n, const uint32_t *ctxs, size_t count,
             const kin_buf *request, int timeout_ms, reply_fn fn, void *arg)
{
    size_t window = count < KIN__MONITOR_WINDOW ? count : KIN__MONITOR_WINDOW;
    pending *ps = calloc(window ? window : 1, sizeof *ps);
    if (!ps)
        return -ENOMEM;
    size_t sent = 0;
    for (size_t done = 0; done < count; done++) {
        for (; sent < count && sent - done < window; sent++)
            send_one(n, ctxs[sent], request, timeout_ms, &ps[sent % window]);
        kin_msg *reply;
        kin_err e = take_one(&ps[done % window], timeout_ms, &reply);
        fn(done, e, reply, arg);
    }
    free(ps);
    return KIN_OK;
}

typedef struct info_many {
    const uint32_t *ctxs;
    kin_ctx_info *infos;
    kin_err *errs;
} info_many;

static void
on_info(size_t i, kin_err e, kin_msg *reply, void *arg)
{
    info_many *im = arg;
    im->errs[i] = e ? e : read_info(reply, im->ctxs[i], &im->infos[i]);
}

kin_err
kin__monitor_info_many(kin_node *n, const uint32_t *ctxs, size_t count,
                       int timeout_ms, kin_ctx_info *infos, kin_err *errs)
{
    kin_buf b = {0};
    kin_err e = kin_pack(&b, "s", "info");
    info_many im = {.ctxs = ctxs, .infos = infos, .errs = errs};
    if (!e)
        e = request_many(n, ctxs, count, &b, timeout_ms, on_info, &im);
    kin_buf_release(&b);
    return e;
}

typedef struct ps_many {
    const uint32_t *ctxs;
    kin__monitor_ps_fn fn;
    void *arg;
} ps_many;

static void
on_ps(size_t i, kin_err e, kin_msg *reply, void *arg)
{
    ps_many *pm = arg;
    kin_task_info *ts = NULL;
    size_t count = 0;
    if (!e) {
        e = read_tasks(reply, false, pm->ctxs[i], &ts, &count);
        kin_msg_destroy(&reply);
    }
    pm->fn(i, e, e ? NULL : ts, e ? 0 : count, pm->arg);
}

kin_err
kin__monitor_ps_many(kin_node *n, const uint32_t *ctxs, size_t count,
                     int timeout_ms, kin__monitor_ps_fn fn, void *arg)
{
    kin_buf b = {0};
    /* What kin_monitor_ps(n, ctx, NULL, false, ...) sends. */
    kin_err e = kin_pack(&b, "sMsssb", "ps", 2, "filter", "", "persistent", 0);
    ps_many pm = {.ctxs = ctxs, .fn = fn, .arg = arg};
    if (!e)
        e = request_many(n, ctxs, count, &b, timeout_ms, on_ps, &pm);
    kin_buf_release(&b);
    return e;
}

/* One provider row of a services reply: [ctx, hops, bound, outstanding,
 * served, errors, retried, [bucket, count, ...]]. */
static bool
read_provider(const msgpack_object *row, kin_service_provider *v)
{
    if (row->type != MSGPACK_OBJECT_ARRAY || row->via.array.size < 8)
        return false;
    const msgpack_object *f = row->via.array.ptr;
    memset(v, 0, sizeof *v);
    double served = 0, errors = 0, retried = 0;
    bool ok = obj_u32(&f[0], &v->ctx) && obj_u32(&f[1], &v->hops) &&
              obj_int(&f[2], &v->bound) && obj_int(&f[3], &v->outstanding) &&
              obj_double(&f[4], &served) && obj_double(&f[5], &errors) &&
              obj_double(&f[6], &retried) &&
              f[7].type == MSGPACK_OBJECT_ARRAY && served >= 0 && errors >= 0 &&
              retried >= 0;
    v->served = (uint64_t)served;
    v->errors = (uint64_t)errors;
    v->retried = (uint64_t)retried;
    for (uint32_t i = 0; ok && i + 1 < f[7].via.array.size; i += 2) {
        uint32_t b, c;
        ok = obj_u32(&f[7].via.array.ptr[i], &b) &&
             obj_u32(&f[7].via.array.ptr[i + 1], &c) &&
             b < KIN_SERVICE_LAT_BUCKETS;
        if (ok)
            v->latency[b] = c;
    }
    return ok;
}

/* One service row: [name, total, restarting, queued, retried, failed,
 * resolved, [providers]]. */
static bool
read_service(const msgpack_object *row, kin_service_info *s)
{
    if (row->type != MSGPACK_OBJECT_ARRAY || row->via.array.size < 8)
        return false;
    const msgpack_object *f = row->via.array.ptr;
    memset(s, 0, sizeof *s);
    double retried = 0, failed = 0, resolved = 0;
    bool ok = obj_str(&f[0], s->name, sizeof s->name) &&
              obj_int(&f[1], &s->total) && obj_int(&f[2], &s->restarting) &&
              obj_int(&f[3], &s->queued) && obj_double(&f[4], &retried) &&
              obj_double(&f[5], &failed) && obj_double(&f[6], &resolved) &&
              f[7].type == MSGPACK_OBJECT_ARRAY;
    s->retried = (uint64_t)retried;
    s->failed = (uint64_t)failed;
    s->resolved = (uint64_t)resolved;
    s->providers = ok ? (int)f[7].via.array.size : 0;
    return ok;
}

static kin_err
read_services(const kin_msg *reply, kin_service_info **out, size_t *count,
              kin_service_provider **prov)
{
    if (kin__msgpack_scan(reply->body, reply->len) != reply->len)
        return KIN_EBADMSG;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return -ENOMEM;
    msgpack_object top, *list = NULL;
    size_t off = 0;
    kin_err e =
        next_object(reply, &off, &zone, &top) && top.type == MSGPACK_OBJECT_MAP
            ? KIN_OK
            : KIN_EBADMSG;
    for (uint32_t i = 0; !e && i < top.via.map.size; i++) {
        const msgpack_object_kv *kv = &top.via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 8 &&
            !memcmp(kv->key.via.str.ptr, "services", 8) &&
            kv->val.type == MSGPACK_OBJECT_ARRAY)
            list = (msgpack_object *)&kv->val;
    }
    if (!e && !list)
        e = KIN_EBADMSG;
    uint32_t ns = e ? 0 : list->via.array.size;
    size_t np = 0;
    for (uint32_t i = 0; i < ns; i++) {
        const msgpack_object *row = &list->via.array.ptr[i];
        if (row->type == MSGPACK_OBJECT_ARRAY && row->via.array.size >= 8 &&
            row->via.array.ptr[7].type == MSGPACK_OBJECT_ARRAY)
            np += row->via.array.ptr[7].via.array.size;
    }
    kin_service_info *ss = e ? NULL : calloc(ns ? ns : 1, sizeof *ss);
    kin_service_provider *ps = e ? NULL : calloc(np ? np : 1, sizeof *ps);
    if (!e && (!ss || !ps))
        e = -ENOMEM;
    for (uint32_t i = 0, at = 0; !e && i < ns; i++) {
        const msgpack_object *row = &list->via.array.ptr[i];
        if (!read_service(row, &ss[i])) {
            e = KIN_EBADMSG;
            break;
        }
        const msgpack_object *pr = &row->via.array.ptr[7];
        for (uint32_t k = 0; !e && k < pr->via.array.size; k++)
            if (!read_provider(&pr->via.array.ptr[k], &ps[at++]))
                e = KIN_EBADMSG;
    }
    msgpack_zone_destroy(&zone);
    if (e) {
        free(ss);
        free(ps);
        return e;
    }
    *out = ss;
    *count = ns;
    *prov = ps;
    return KIN_OK;
}

kin_err
kin_monitor_services(kin_node *n, uint32_t ctx, int timeout_ms,
                     kin_service_info **services, size_t *count,
                     kin_service_provider **providers)
{
    kin_msg *reply;
    kin_err e = request(n, ctx, timeout_ms, &reply, "services", NULL);
    if (e)
        return e;
    e = read_services(reply, services, count, providers);
    kin_msg_destroy(&reply);
    return e;
}
