/* The id-list body of kin's system messages (core/ids.h). */
#include "core/ids.h"

#include <errno.h>

#include <msgpack.h>

#include "core/pack_internal.h"
#include <kin/pack.h>

kin_err
kin__ids_msg_new(kin_msg **out, const uint32_t *ids, size_t count)
{
    if (count > UINT32_MAX || (!ids && count))
        return -EINVAL;
    kin_buf b;
    kin_buf_init(&b);
    msgpack_packer pk;
    kin_buf_packer(&b, &pk);
    kin_err e = msgpack_pack_array(&pk, (uint32_t)count) ? -ENOMEM : KIN_OK;
    for (size_t i = 0; i < count && !e; i++)
        if (msgpack_pack_uint32(&pk, ids[i]))
            e = -ENOMEM;
    if (!e)
        e = kin_msg_new_copy(out, b.data, b.len);
    kin_buf_release(&b);
    return e;
}

int
kin__ids_read(const void *body, size_t len, uint32_t *ids, size_t max)
{
    /* The scan refuses counts the bytes cannot hold, so a peer's claim of
     * four billion elements costs nothing; the array must be all of it. */
    if (!body || !len || kin__msgpack_scan(body, len) != len)
        return KIN_EBADMSG;
    msgpack_zone z;
    msgpack_zone_init(&z, 256);
    msgpack_object o;
    size_t off = 0;
    int count = KIN_EBADMSG;
    if (msgpack_unpack(body, len, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS &&
        off == len && o.type == MSGPACK_OBJECT_ARRAY) {
        if (o.via.array.size > max || o.via.array.size > INT32_MAX)
            count = KIN_ETOOBIG;
        else
            count = 0;
        for (uint32_t i = 0; count >= 0 && i < o.via.array.size; i++) {
            msgpack_object *e = &o.via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                e->via.u64 > UINT32_MAX)
                count = KIN_EBADMSG;
            else
                ids[count++] = (uint32_t)e->via.u64;
        }
    }
    msgpack_zone_destroy(&z);
    return count;
}

void
kin__hello_read(const void *body, size_t len, bool *as_operator,
                const char **name, size_t *name_len)
{
    uint32_t ids[2] = {0, 0};
    size_t ids_len = body ? kin__msgpack_scan(body, len) : 0;
    if (!ids_len || ids_len > len)
        ids_len = len;
    *as_operator = kin__ids_read(body, ids_len, ids, 2) == 2 && ids[1] == 1;
    *name = NULL;
    *name_len = 0;
    if (ids_len < len && kin_unpack_buf((const char *)body + ids_len,
                                        len - ids_len, "S", name, name_len)) {
        *name = NULL;
        *name_len = 0;
    }
}
