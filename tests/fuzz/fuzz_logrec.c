/* libFuzzer target for the log record decoder: arbitrary bytes go through
 * kin__logdec_decode; what it accepts must format as a human line and as
 * JSON without reading past the record or its decoded strings. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logs/logrec.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so a read past the end is caught. */
    uint8_t *p = malloc(size ? size : 1);
    if (!p)
        abort();
    memcpy(p, data, size);
    kin__logdec d;
    kin__logdec_init(&d);
    const kin_logrec *r;
    if (kin__logdec_decode(&d, p, size, &r) == KIN_OK) {
        char line[256];
        kin_logrec_format(r, KIN_LOGFMT_COLOR, line, sizeof line);
        kin_buf b;
        kin_buf_init(&b);
        kin_logrec_json(r, &b);
        kin_buf_release(&b);
    }
    kin__logdec_fini(&d);
    free(p);
    return 0;
}
