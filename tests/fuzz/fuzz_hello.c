/* libFuzzer target for HELLO's body (kin__hello_read, core/ids.c), which a
 * child sends its parent: [id] and its name, or [id, 1] from an operator.
 * Properties: the name lies inside the body (an exact-size allocation, so
 * any read past it trips ASan), an operator's body is exactly one [id, 1]
 * array, and the HELLO a context sends (router/router.c: hello_msg), built
 * here from the same input, reads back as its id and name, not an
 * operator. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include <kin/pack.h>

#include "core/ids.h"
#include "core/pack_internal.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *body = malloc(size ? size : 1);
    if (!body)
        abort();
    memcpy(body, data, size);
    bool op = true;
    const char *name = (const char *)1;
    size_t name_len = 99;
    kin__hello_read(size ? body : NULL, size, &op, &name, &name_len);
    /* An empty name may be kin_unpack's static "" rather than the body. */
    if (name && name_len &&
        (name < (const char *)body || name_len > size ||
         name - (const char *)body > (ptrdiff_t)(size - name_len)))
        abort(); /* a name outside the body */
    if (!name && name_len)
        abort();
    if (op) {
        uint32_t ids[2];
        size_t arr = kin__msgpack_scan(body, size);
        if (!arr || arr > size || kin__ids_read(body, arr, ids, 2) != 2 ||
            ids[1] != 1)
            abort(); /* an operator without [id, 1] */
    }

    /* A context's own HELLO: [id] then its name, from the input. */
    uint32_t id = 0;
    for (size_t i = 0; i < size && i < 4; i++)
        id = id << 8 | data[i];
    kin_buf b;
    kin_buf_init(&b);
    msgpack_packer pk;
    kin_buf_packer(&b, &pk);
    if (msgpack_pack_array(&pk, 1) || msgpack_pack_uint32(&pk, id) ||
        msgpack_pack_str_with_body(&pk, data, size))
        abort();
    char *exact = malloc(b.len);
    if (!exact)
        abort();
    memcpy(exact, b.data, b.len);
    kin__hello_read(exact, b.len, &op, &name, &name_len);
    if (op || !name || name_len != size || memcmp(name, data, size) != 0)
        abort(); /* a context's HELLO does not read back */
    free(exact);
    kin_buf_release(&b);
    free(body);
    return 0;
}
