/* libFuzzer target for the log subscriber's record stream: a subscriber
 * (logs/logsub.c) decodes every record it reads with one kin__logdec whose
 * arena and field table are reused from record to record. Here a sequence of
 * records, each an exact-size allocation, goes through one shared decoder
 * and, record by record, through a fresh one: both must agree (accept or
 * refuse alike, and the same record as JSON), so nothing of an earlier
 * record, longer or with more fields, leaks into a later one. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logs/logrec.h"

/* Input layout: records one after another, each a 2-byte little-endian
 * length then that many bytes (cut short at the end of the input). */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kin__logdec shared;
    kin__logdec_init(&shared);
    while (size >= 2) {
        size_t len = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2;
        size -= 2;
        if (len > size)
            len = size;
        uint8_t *p = malloc(len ? len : 1);
        if (!p)
            abort();
        memcpy(p, data, len);
        data += len;
        size -= len;

        kin__logdec fresh;
        kin__logdec_init(&fresh);
        const kin_logrec *a = NULL, *b = NULL;
        kin_err ea = kin__logdec_decode(&shared, p, len, &a);
        kin_err eb = kin__logdec_decode(&fresh, p, len, &b);
        if (ea != eb)
            abort(); /* the shared decoder judged by an earlier record */
        if (ea != KIN_OK && ea != KIN_EBADMSG && ea != -ENOMEM)
            abort();
        if (ea == KIN_OK) {
            kin_buf ja, jb;
            kin_buf_init(&ja);
            kin_buf_init(&jb);
            kin_logrec_json(a, &ja);
            kin_logrec_json(b, &jb);
            if (ja.len != jb.len || memcmp(ja.data, jb.data, ja.len) != 0)
                abort(); /* an earlier record shows through */
            kin_buf_release(&ja);
            kin_buf_release(&jb);
        }
        kin__logdec_fini(&fresh);
        free(p);
    }
    kin__logdec_fini(&shared);
    return 0;
}
