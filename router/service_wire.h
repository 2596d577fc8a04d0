/* The bodies of the service and name messages as they arrive (SVC_ADD,
 * SVC_DEL, SVC_HOLD, SVC_CALL, SVC_RUN, NAME, LOOKUP), decoded and checked
 * apart from their handlers (service_table.c, service_resolver.c,
 * service_provider.c, names.c) so they can be fuzzed
 * (tests/fuzz/fuzz_service.c). Pure: no node, no allocation; strings point
 * into the body. Errors: KIN_EBADMSG for a body that decodes but breaks a
 * rule below, else those of kin_unpack (KIN_EBADMSG, KIN_ETYPE,
 * KIN_ESHORT, KIN_ETOOBIG, -ENOMEM). Any thread. */
#ifndef KIN_ROUTER_SERVICE_WIRE_H
#define KIN_ROUTER_SERVICE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/err.h>

/* A context's name: 1..63 bytes, as kin_node's name, no NUL inside. */
#define KIN__CTX_NAME_MAX 63
/* "service.function" of a service call: under 64 bytes in all. */
#define KIN__SVC_FN_MAX 63
/* Bounds of a provider's concurrency and of a hold's count. */
#define KIN__SVC_COUNT_MAX 65536

/* SVC_ADD [service, provider, hops, bound]: a valid service name, hops
 * under KIN_MAX_DEPTH (64), bound 1..KIN__SVC_COUNT_MAX. */
kin_err kin__svc_add_read(const void *body, size_t size, const char **name,
                          size_t *len, uint32_t *ctx, uint32_t *hops,
                          uint32_t *bound);

/* SVC_DEL [service, provider]: a valid service name. */
kin_err kin__svc_del_read(const void *body, size_t size, const char **name,
                          size_t *len, uint32_t *ctx);

/* SVC_HOLD [service, origin, count]: a valid service name, count
 * 0..KIN__SVC_COUNT_MAX. */
kin_err kin__svc_hold_read(const void *body, size_t size, const char **name,
                           size_t *len, uint32_t *origin, uint32_t *count);

/* A service call's head, [fn, task, remaining ms, args...] (SVC_CALL from
 * a caller; SVC_RUN from a resolver, whose task is 0): fn is a valid
 * service name, a dot and a function name without NUL, under 64 bytes in
 * all. svc_len: the service name's length; args_off: where the arguments
 * start in the body. */
typedef struct kin__svc_call_head {
    const char *fn;
    size_t fn_len, svc_len;
    uint32_t task;
    int64_t left;
    size_t args_off;
} kin__svc_call_head;

kin_err kin__svc_call_read(const void *body, size_t size,
                           kin__svc_call_head *out);

/* The "service.function" rules of a call's fn (len bytes): a valid service
 * name up to the first dot, no NUL after it. Sets *svc_len (the service
 * name's length) when they hold. */
bool kin__svc_fn_split(const char *fn, size_t len, size_t *svc_len);

/* The head written the one way this process writes it (SVC_CALL from a
 * caller here, SVC_RUN from a resolver here): fn as a msgpack str, task as
 * a uint 32 (0xce), ms left as an int 64 (0xd3), so kin__svc_call_read
 * reads it too, and a reader that knows where it came from finds each
 * field at its place (kin__svc_head_own). */
#define KIN__SVC_HEAD_MAX (2 + KIN__SVC_FN_MAX + 5 + 9)
/* The bytes of such a head after fn: the task's 5 and the ms left's 9. */
#define KIN__SVC_HEAD_TAIL 14

/* Writes the head of fn (fn_len under 64 bytes) to out (at least
 * KIN__SVC_HEAD_MAX bytes); returns its length. */
size_t kin__svc_head_put(uint8_t *out, const char *fn, size_t fn_len,
                         uint32_t task, int64_t left);

/* Reads a head laid out as kin__svc_head_put writes it (fn as a fixstr or
 * str 8), of a fn whose service name has svc_len bytes, at fixed places:
 * the resolver's way for a call made in this process. Any bytes and any
 * svc_len may be given: it reads nothing outside body[0..size), and what
 * it accepts kin__svc_call_read accepts with the same fields (fuzzed,
 * tests/fuzz/fuzz_service.c). Errors: KIN_EBADMSG when the body is not so
 * laid out or its fn breaks kin__svc_call_read's rules (*out zeroed); the
 * caller then reads it with kin__svc_call_read. */
kin_err kin__svc_head_own(const void *body, size_t size, size_t svc_len,
                          kin__svc_call_head *out);

/* NAME [id, name]: a context's name (KIN__CTX_NAME_MAX). */
kin_err kin__name_read(const void *body, size_t size, uint32_t *id,
                       const char **name, size_t *len);

/* LOOKUP [name, wait ms]: a context's name; the wait is cut to INT32_MAX
 * ms (a sender's "forever"). */
kin_err kin__lookup_read(const void *body, size_t size, const char **name,
                         size_t *len, int64_t *wait_ms);

#endif
