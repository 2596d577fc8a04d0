/* libFuzzer target for MONITOR requests (kin__monitor_req_parse,
 * monitor/request.c), which any context of the tree and the operator's kin
 * command send. Properties: an error is a kin code, every string field ends
 * with a NUL inside its array, no read passes the body (an exact-size
 * allocation), and a request packed as kin's clients pack it (cmd, then a
 * map of filter, args, signal, persistent, task, by and an unknown key)
 * reads back with the same values. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kin/pack.h>

#include "monitor/request.h"

#define TERMINATED(f) (memchr((f), 0, sizeof(f)) != NULL)

static void
check(kin_err e, const kin__monitor_req *r)
{
    if (e != KIN_OK && e != KIN_ETYPE && e != KIN_ESHORT && e != KIN_EBADMSG &&
        e != KIN_ETOOBIG && e != -ENOMEM)
        abort(); /* not a kin code */
    if (!TERMINATED(r->cmd) || !TERMINATED(r->filter) || !TERMINATED(r->args) ||
        !TERMINATED(r->signal))
        abort(); /* a string field without its NUL */
}

/* A printable string of up to max bytes from the input at *p. */
static size_t
take(const uint8_t **p, const uint8_t *end, char *out, size_t max)
{
    size_t n = 0;
    while (*p < end && n < max && **p != '|') {
        out[n++] = (char)(' ' + **p % 95);
        (*p)++;
    }
    if (*p < end)
        (*p)++;
    out[n] = 0;
    return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *body = malloc(size ? size : 1);
    if (!body)
        abort();
    memcpy(body, data, size);
    kin__monitor_req r;
    check(kin__monitor_req_parse(body, size, &r), &r);
    free(body);

    /* The same input spells a well-formed request: fields split at '|'. */
    const uint8_t *p = data, *end = data + size;
    char cmd[32], filter[64], args[256], sig[16];
    take(&p, end, cmd, sizeof cmd - 1);
    take(&p, end, filter, sizeof filter - 1);
    take(&p, end, args, sizeof args - 1);
    take(&p, end, sig, sizeof sig - 1);
    unsigned task = size ? data[size - 1] * 7919u : 0, by = (unsigned)size;
    kin_buf b;
    kin_buf_init(&b);
    if (kin_pack(&b, "sMsssssssbsbsusu", cmd, 7, "filter", filter, "args", args,
                 "signal", sig, "persistent", (int)(size & 1), "x", 1, "task",
                 task, "by", by))
        abort();
    char *exact = malloc(b.len);
    if (!exact)
        abort();
    memcpy(exact, b.data, b.len);
    kin_err e = kin__monitor_req_parse(exact, b.len, &r);
    check(e, &r);
    if (e || strcmp(r.cmd, cmd) || strcmp(r.filter, filter) ||
        strcmp(r.args, args) || strcmp(r.signal, sig) ||
        r.persistent != (size & 1) || r.task != task || r.by != by)
        abort(); /* a well-formed request does not read back */
    free(exact);
    kin_buf_release(&b);
    return 0;
}
