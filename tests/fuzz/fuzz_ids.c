/* libFuzzer target for the id-list codec (core/ids.c): the body of route
 * announcements (ADD_ROUTE / DEL_ROUTE), HELLO's ids and ALLOCATE_ID's
 * answer, all from peers. kin__ids_read must return a count within its room
 * or a kin code, never read past the body (each body is an exact-size
 * allocation), and what it accepts must re-encode (kin__ids_msg_new) to a
 * body that reads back to the same ids. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kin/msg.h>

#include "core/ids.h"

#define ROOM 512

/* Input layout: byte 0 picks the room given to the reader (0..255; 255
 * means ROOM), the rest is the body. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max = data[0] == 255 ? ROOM : data[0];
    size_t len = size - 1;
    uint8_t *body = malloc(len ? len : 1);
    uint32_t *ids = malloc(ROOM * sizeof *ids);
    uint32_t *again = malloc(ROOM * sizeof *again);
    if (!body || !ids || !again)
        abort();
    memcpy(body, data + 1, len);

    int count = kin__ids_read(len ? body : NULL, len, ids, max);
    if (count < 0) {
        if (count != KIN_EBADMSG && count != KIN_ETOOBIG)
            abort(); /* an error that is not a kin code */
        goto out;
    }
    if ((size_t)count > max || (size_t)count > len)
        abort(); /* more ids than room, or than the bytes can hold */

    kin_msg *m = NULL;
    if (kin__ids_msg_new(&m, ids, (size_t)count) != KIN_OK)
        abort();
    /* The re-encoding is the canonical (shortest) form: never longer. */
    if (m->len > len)
        abort();
    if (kin__ids_read(m->body, m->len, again, max) != count ||
        memcmp(ids, again, (size_t)count * sizeof *ids) != 0)
        abort(); /* accepted ids that do not round trip */
    if (count > 0 &&
        kin__ids_read(m->body, m->len, again, (size_t)count - 1) != KIN_ETOOBIG)
        abort(); /* one id too many for the room must be refused */
    kin_msg_destroy(&m);

out:
    free(body);
    free(ids);
    free(again);
    return 0;
}
