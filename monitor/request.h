/* A MONITOR request's body, [cmd] or [cmd, {args}] (docs/monitor.md),
 * decoded apart from the service (service.c) so it can be fuzzed. Pure. */
#ifndef KIN_MONITOR_REQUEST_H
#define KIN_MONITOR_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/err.h>

typedef struct kin__monitor_req {
    char cmd[32];
    char filter[64];
    char args[256];
    char signal[16];
    bool persistent;
    uint32_t task;
    uint32_t by; /* cancel: the requesting task in the sender's context */
} kin__monitor_req;

/* Reads data (size bytes) into *r (zeroed first; strings cut to their
 * field, always NUL-terminated; unknown keys skipped). Errors: KIN_EBADMSG
 * for a string (command, key or value) with a NUL inside, and those of
 * kin_unpack (KIN_EBADMSG, KIN_ETYPE, KIN_ESHORT, KIN_ETOOBIG, -ENOMEM).
 * Any thread. */
kin_err kin__monitor_req_parse(const void *data, size_t size,
                               kin__monitor_req *r);

#endif
