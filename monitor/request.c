/* A MONITOR request's body (monitor/request.h). */
#include "monitor/request.h"

#include <stdio.h>
#include <string.h>

#include <kin/pack.h>

/* Copies a string of the request, cut to its field. One with a NUL inside
 * is refused (KIN_EBADMSG): "ps\0junk" is not "ps". */
static kin_err
copy_s(char *dst, size_t size, const char *s, size_t len)
{
    if (len && memchr(s, 0, len))
        return KIN_EBADMSG;
    snprintf(dst, size, "%.*s", (int)(len < size ? len : size - 1), s);
    return KIN_OK;
}

kin_err
kin__monitor_req_parse(const void *data, size_t size, kin__monitor_req *r)
{
    memset(r, 0, sizeof *r);
    kin_reader rd;
    kin_reader_init(&rd, data, size);
    const char *s;
    size_t len;
    uint32_t pairs = 0;
    kin_err e = kin_unpack(&rd, "S", &s, &len);
    if (!e)
        e = copy_s(r->cmd, sizeof r->cmd, s, len);
    if (!e && !kin_reader_done(&rd))
        e = kin_unpack(&rd, "M", &pairs);
    for (uint32_t i = 0; !e && i < pairs; i++) {
        const char *k;
        size_t klen;
        if ((e = kin_unpack(&rd, "S", &k, &klen)))
            break;
        char key[32];
        if ((e = copy_s(key, sizeof key, k, klen)))
            break;
        if (!strcmp(key, "filter") || !strcmp(key, "args") ||
            !strcmp(key, "signal")) {
            if ((e = kin_unpack(&rd, "S", &s, &len)))
                break;
            if (key[0] == 'f')
                e = copy_s(r->filter, sizeof r->filter, s, len);
            else if (key[0] == 'a')
                e = copy_s(r->args, sizeof r->args, s, len);
            else
                e = copy_s(r->signal, sizeof r->signal, s, len);
        } else if (!strcmp(key, "persistent")) {
            e = kin_unpack(&rd, "b", &r->persistent);
        } else if (!strcmp(key, "task")) {
            e = kin_unpack(&rd, "u", &r->task);
        } else if (!strcmp(key, "by")) {
            e = kin_unpack(&rd, "u", &r->by);
        } else {
            e = kin_unpack(&rd, "?");
        }
    }
    kin_reader_release(&rd);
    return e;
}
