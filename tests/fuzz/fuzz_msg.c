/* libFuzzer target for the message decoder: arbitrary header and body frames
 * go through kin__msg_decode; what it accepts must re-encode to the same bytes,
 * and the reason of any dead message it accepts must read back safely. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kin/msg.h>

#include "core/msg_internal.h"

/* Input layout: byte 0 picks the header length (clamped to what is left),
 * byte 1 the size limit (0 means the default), then the header frame, then
 * the body frame. Each frame gets its own exact-size allocation so the
 * sanitizer sees any read past either one. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t hdr_len = data[0] & 0x3f;
    size_t max_size = data[1];
    data += 2;
    size -= 2;
    if (hdr_len > size)
        hdr_len = size;
    size_t body_len = size - hdr_len;

    uint8_t *hdr = malloc(hdr_len ? hdr_len : 1);
    uint8_t *body = malloc(body_len ? body_len : 1);
    if (!hdr || !body)
        abort();
    memcpy(hdr, data, hdr_len);
    memcpy(body, data + hdr_len, body_len);

    kin_msg sentinel;
    kin_msg *m = &sentinel;
    kin_err e = kin__msg_decode(&m, hdr, hdr_len, body_len ? body : NULL,
                                body_len, max_size);

    /* The header decoder alone must agree with the full decoder. */
    kin_msg h;
    memset(&h, 0x5A, sizeof h);
    kin_msg h_before = h;
    kin_err he = kin__msg_header_decode(&h, hdr, hdr_len);

    if (e != KIN_OK) {
        if (m != &sentinel)
            abort(); /* *out written on error */
        if (he != KIN_OK ? e != he : e != KIN_ETOOBIG)
            abort();
        if (he == KIN_OK &&
            body_len <= (max_size ? max_size : KIN_MAX_MSG_DEFAULT))
            abort(); /* refused a body within the limit */
        if (he != KIN_OK && memcmp(&h, &h_before, sizeof h) != 0)
            abort(); /* header fields written on error */
        goto out;
    }

    if (he != KIN_OK || hdr_len != KIN_HDR_SIZE)
        abort();
    /* The limit applies to the payload: a body may pass it by its
     * envelope (msgpack headers, a call's name), up to
     * KIN_MSG_ENVELOPE_MAX, and one within the limit always passes. */
    size_t limit = max_size ? max_size : KIN_MAX_MSG_DEFAULT;
    if (body_len > limit + KIN_MSG_ENVELOPE_MAX)
        abort();
    if (m->len != body_len || (body_len && memcmp(m->body, body, body_len)))
        abort();
    if (m->flags & ~(uint32_t)(KIN_MSG_DEAD | KIN_MSG_CANCEL | KIN_MSG_ERROR))
        abort();

    uint8_t again[KIN_HDR_SIZE];
    kin__msg_header_encode(m, again);
    if (memcmp(again, hdr, KIN_HDR_SIZE) != 0)
        abort(); /* accepted a header that does not round trip */

    if (m->flags & KIN_MSG_DEAD) {
        kin_err reason = KIN_OK;
        const char *text = NULL;
        size_t text_len = 0;
        kin_err de = kin_msg_dead_reason(m, &reason, &text, &text_len);
        if (de == KIN_OK) {
            /* msgpack-c gives an empty string a NULL pointer. */
            const char *b = (const char *)m->body;
            if (text_len && (!text || text < b || text_len > m->len ||
                             text - b > (ptrdiff_t)(m->len - text_len)))
                abort(); /* text outside the body */
            if (reason >= 0)
                abort(); /* a dead message must carry an error code */
        } else if (de != KIN_EBADMSG) {
            abort();
        }
    } else if (kin_msg_dead_reason(m, NULL, NULL, NULL) != -EINVAL) {
        abort();
    }
    kin_msg_destroy(&m);

out:
    free(hdr);
    free(body);
    return 0;
}
