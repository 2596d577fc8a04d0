/* Metrics of a context (include/kin/monitor.h, "metrics"): the reply the
 * monitor packs on the broker thread, and its decoding for
 * kin_monitor_metrics. */
#include "monitor/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kin/monitor.h>

#include "core/pack_internal.h"
#include "core/task.h"
#include "logs/logs_test.h"
#include "process/procs.h"
#include "router/metrics.h"
#include "router/router.h"

static const char *const kind_names[KIN_FN_ERR_KINDS] = {"failed", "cancelled",
                                                         "refused", "timeout"};

const char *
kin_fn_err_kind_name(int kind)
{
    return kind >= 0 && kind < KIN_FN_ERR_KINDS ? kind_names[kind] : "?";
}

double
kin_fn_latency_us(const uint64_t *latency, double q)
{
    uint64_t total = 0, seen = 0;
    for (int b = 0; latency && b < KIN_FN_LAT_BUCKETS; b++)
        total += latency[b];
    if (!total || q <= 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total + 0.999999);
    if (want > total)
        want = total;
    for (int b = 0; b < KIN_FN_LAT_BUCKETS; b++) {
        seen += latency[b];
        if (seen >= want)
            return (double)(1ull << b);
    }
    return 0;
}

/* --- the context's side --- */

static void
pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

static int64_t
rss_kib(void)
{
    long kib = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = atol(line + 6);
    if (f)
        fclose(f);
    return kib;
}

static double
cpu_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts))
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
pack_function(msgpack_packer *pk, const kin_fn_metrics *f)
{
    uint32_t used = 0;
    for (int b = 0; b < KIN_FN_LAT_BUCKETS; b++)
        used += f->latency[b] != 0;
    msgpack_pack_array(pk, 5);
    msgpack_pack_str_with_body(pk, f->name, strlen(f->name));
    msgpack_pack_uint64(pk, f->calls);
    msgpack_pack_array(pk, KIN_FN_ERR_KINDS);
    for (int k = 0; k < KIN_FN_ERR_KINDS; k++)
        msgpack_pack_uint64(pk, f->errors[k]);
    msgpack_pack_double(pk, f->latency_sum_s);
    msgpack_pack_array(pk, 2 * used); /* bucket, count, ... */
    for (int b = 0; b < KIN_FN_LAT_BUCKETS; b++) {
        if (f->latency[b]) {
            msgpack_pack_int(pk, b);
            msgpack_pack_uint64(pk, f->latency[b]);
        }
    }
}

void
kin__monitor_pack_metrics(kin_node *n, msgpack_packer *pk)
{
    uint32_t by_state[3] = {0, 0, 0};
    int busy = 0;
    kin__tasktab *tab = kin__node_tasks(n);
    kin__tasktab_lock(tab);
    kin_task *t;
    for (size_t it = 0; kin__tasktab_live_next(tab, &it, &t);) {
        int st = atomic_load(&t->state);
        if (st >= KIN_TASK_PENDING && st <= KIN_TASK_WAITING)
            by_state[st]++;
        /* As the await graph counts them (monitor/graph.c). */
        busy += !t->persistent &&
                (st == KIN_TASK_RUNNING || st == KIN_TASK_WAITING);
    }
    uint64_t ended = kin__tasktab_ended_total(tab);
    kin__tasktab_unlock(tab);
    int workers = kin__node_workers(n);
    kin__logs_stats ls;
    kin__logs_stats_get(n, &ls);
    uint64_t sent = 0, dropped = 0;
    for (int b = 0; b < KIN__LOG_BUCKETS; b++) {
        sent += ls.sent[b];
        dropped += ls.dropped[b];
    }
    kin_fn_metrics *fns = calloc(KIN__FN_METRICS_MAX, sizeof *fns);
    uint64_t unknown = 0, uncounted = 0;
    size_t nf = kin__fn_metrics_read(kin__node_fn_metrics(n), fns,
                                     fns ? KIN__FN_METRICS_MAX : 0, &unknown,
                                     &uncounted);
    if (!fns || nf > KIN__FN_METRICS_MAX)
        nf = fns ? KIN__FN_METRICS_MAX : 0;
    msgpack_pack_map(pk, 15);
    pack_key(pk, "ctx");
    msgpack_pack_uint32(pk, kin_node_id(n));
    pack_key(pk, "tasks");
    msgpack_pack_array(pk, 3);
    for (int s = 0; s < 3; s++)
        msgpack_pack_uint32(pk, by_state[s]);
    pack_key(pk, "tasks_ended");
    msgpack_pack_uint64(pk, ended);
    pack_key(pk, "workers");
    msgpack_pack_int(pk, workers);
    pack_key(pk, "workers_busy");
    msgpack_pack_int(pk, busy < workers ? busy : workers);
    pack_key(pk, "rss_kib");
    msgpack_pack_int64(pk, rss_kib());
    pack_key(pk, "cpu_s");
    msgpack_pack_double(pk, cpu_seconds());
    pack_key(pk, "uptime_s");
    uint64_t now = kin__now_ns(), start = kin__node_started_ns(n);
    msgpack_pack_double(pk, now > start ? (double)(now - start) / 1e9 : 0.0);
    pack_key(pk, "child_restarts");
    msgpack_pack_uint64(pk, kin__procs_restarts(n));
    pack_key(pk, "log_records");
    msgpack_pack_uint64(pk, sent);
    pack_key(pk, "log_dropped");
    msgpack_pack_uint64(pk, dropped);
    pack_key(pk, "calls_unknown");
    msgpack_pack_uint64(pk, unknown);
    pack_key(pk, "calls_uncounted");
    msgpack_pack_uint64(pk, uncounted);
    pack_key(pk, "functions");
    msgpack_pack_array(pk, (uint32_t)nf);
    for (size_t i = 0; i < nf; i++)
        pack_function(pk, &fns[i]);
    pack_key(pk, "version");
    msgpack_pack_int(pk, 1);
    free(fns);
}

/* --- the asker's side --- */

static bool
as_u64(const msgpack_object *o, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
}

static bool
as_double(const msgpack_object *o, double *v)
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
as_int(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        o->via.u64 <= (uint64_t)INT64_MAX)
        *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = o->via.i64;
    else
        return false;
    return true;
}

static bool
key_is(const msgpack_object *k, const char *s)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(s) &&
           !memcmp(k->via.str.ptr, s, k->via.str.size);
}

/* [name, calls, [errors...], latency_sum_s, [bucket, count, ...]] */
static bool
read_function(const msgpack_object *row, kin_fn_metrics *f)
{
    if (row->type != MSGPACK_OBJECT_ARRAY || row->via.array.size < 5)
        return false;
    const msgpack_object *v = row->via.array.ptr;
    if (v[0].type != MSGPACK_OBJECT_STR || !as_u64(&v[1], &f->calls) ||
        v[2].type != MSGPACK_OBJECT_ARRAY ||
        !as_double(&v[3], &f->latency_sum_s) ||
        v[4].type != MSGPACK_OBJECT_ARRAY || v[4].via.array.size % 2)
        return false;
    size_t len = v[0].via.str.size < KIN_FN_NAME_MAX - 1 ? v[0].via.str.size
                                                         : KIN_FN_NAME_MAX - 1;
    if (len)
        memcpy(f->name, v[0].via.str.ptr, len);
    f->name[len] = 0;
    for (uint32_t k = 0; k < v[2].via.array.size && k < KIN_FN_ERR_KINDS; k++)
        if (!as_u64(&v[2].via.array.ptr[k], &f->errors[k]))
            return false;
    for (uint32_t i = 0; i < v[4].via.array.size; i += 2) {
        uint64_t b, count;
        if (!as_u64(&v[4].via.array.ptr[i], &b) ||
            !as_u64(&v[4].via.array.ptr[i + 1], &count) ||
            b >= KIN_FN_LAT_BUCKETS)
            return false;
        f->latency[b] = count;
    }
    return true;
}

static kin_err
read_field(const msgpack_object *k, const msgpack_object *v, kin_ctx_metrics *m)
{
    uint64_t u = 0;
    int64_t i = 0;
    bool ok = true;
    if (key_is(k, "ctx")) {
        ok = as_u64(v, &u) && u <= UINT32_MAX;
        m->ctx = (uint32_t)u;
    } else if (key_is(k, "tasks")) {
        ok = v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size >= 3;
        uint32_t *dst[3] = {&m->tasks_pending, &m->tasks_running,
                            &m->tasks_waiting};
        for (int s = 0; ok && s < 3; s++) {
            ok = as_u64(&v->via.array.ptr[s], &u) && u <= UINT32_MAX;
            *dst[s] = (uint32_t)u;
        }
    } else if (key_is(k, "tasks_ended")) {
        ok = as_u64(v, &m->tasks_ended);
    } else if (key_is(k, "workers")) {
        ok = as_int(v, &i);
        m->workers = (int)i;
    } else if (key_is(k, "workers_busy")) {
        ok = as_int(v, &i);
        m->workers_busy = (int)i;
    } else if (key_is(k, "rss_kib")) {
        ok = as_int(v, &m->rss_kib);
    } else if (key_is(k, "cpu_s")) {
        ok = as_double(v, &m->cpu_s);
    } else if (key_is(k, "uptime_s")) {
        ok = as_double(v, &m->uptime_s);
    } else if (key_is(k, "child_restarts")) {
        ok = as_u64(v, &m->child_restarts);
    } else if (key_is(k, "log_records")) {
        ok = as_u64(v, &m->log_records);
    } else if (key_is(k, "log_dropped")) {
        ok = as_u64(v, &m->log_dropped);
    } else if (key_is(k, "calls_unknown")) {
        ok = as_u64(v, &m->calls_unknown);
    } else if (key_is(k, "calls_uncounted")) {
        ok = as_u64(v, &m->calls_uncounted);
    } else if (key_is(k, "functions")) {
        if (v->type != MSGPACK_OBJECT_ARRAY)
            return KIN_EBADMSG;
        uint32_t nf = v->via.array.size;
        free(m->functions);
        m->n_functions = 0;
        m->functions = calloc(nf ? nf : 1, sizeof *m->functions);
        if (!m->functions)
            return -ENOMEM;
        for (uint32_t f = 0; ok && f < nf; f++)
            ok = read_function(&v->via.array.ptr[f], &m->functions[f]);
        m->n_functions = nf;
    }
    return ok ? KIN_OK : KIN_EBADMSG;
}

static kin_err
read_metrics(const kin_msg *reply, kin_ctx_metrics *m)
{
    if (kin__msgpack_scan(reply->body, reply->len) != reply->len)
        return KIN_EBADMSG;
    msgpack_unpacked top;
    msgpack_unpacked_init(&top);
    size_t off = 0;
    msgpack_unpack_return ret =
        msgpack_unpack_next(&top, (const char *)reply->body, reply->len, &off);
    kin_err e =
        (ret == MSGPACK_UNPACK_SUCCESS || ret == MSGPACK_UNPACK_EXTRA_BYTES) &&
                top.data.type == MSGPACK_OBJECT_MAP
            ? KIN_OK
            : KIN_EBADMSG;
    for (uint32_t i = 0; !e && i < top.data.via.map.size; i++)
        e = read_field(&top.data.via.map.ptr[i].key,
                       &top.data.via.map.ptr[i].val, m);
    msgpack_unpacked_destroy(&top);
    return e;
}

kin_err
kin_monitor_metrics(kin_node *n, uint32_t ctx, int timeout_ms,
                    kin_ctx_metrics *out)
{
    memset(out, 0, sizeof *out);
    kin_buf b = {0};
    kin_msg *reply = NULL;
    kin_err e = kin_pack(&b, "s", "metrics");
    if (!e)
        e = kin_monitor_request(n, ctx, &b, timeout_ms, &reply);
    kin_buf_release(&b);
    if (e == KIN_EREMOTE) {
        int code = KIN_EREMOTE;
        kin_msg_unpack(reply, "M??Si", &(uint32_t){0}, &(const char *){0},
                       &(size_t){0}, &code);
        kin_msg_destroy(&reply);
        return code ? code : KIN_EREMOTE;
    }
    if (e)
        return e;
    out->ctx = ctx;
    e = read_metrics(reply, out);
    kin_msg_destroy(&reply);
    if (e)
        kin_monitor_metrics_release(out);
    return e;
}

void
kin_monitor_metrics_release(kin_ctx_metrics *m)
{
    if (!m)
        return;
    free(m->functions);
    memset(m, 0, sizeof *m);
}
