/* The message envelope: allocation (header and body in one block) and the
 * strict wire codec for the 24-byte header frame. */
#include <kin/msg.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "core/block_cache.h"
#include "core/msg_internal.h"
#include "core/pack_internal.h"

#define KNOWN_FLAGS (KIN_MSG_DEAD | KIN_MSG_CANCEL | KIN_MSG_ERROR)

/* Every message is allocated in a block that starts with what only kin
 * sees: a count of holders (the message's owner, and libzmq while it sends
 * the body without copying it) and, for a body kin did not allocate
 * itself (a received zmq frame, a packed buffer taken over), the function
 * that frees it. */
typedef struct msg_block {
    atomic_uint refs;
    bool cached; /* from kin__block_get, KIN__BLOCK_SIZE bytes */
    void (*release)(void *hint); /* NULL: the body follows the block */
    void *hint;
    kin_msg m;
} msg_block;

static msg_block *
block_of(const kin_msg *m)
{
    return (msg_block *)((char *)m - offsetof(msg_block, m));
}

static kin_msg *
block_new(size_t len)
{
    bool small = len <= KIN__BLOCK_SIZE - sizeof(msg_block);
    msg_block *b = small ? kin__block_get() : malloc(sizeof *b + len);
    if (!b)
        return NULL;
    memset(b, 0, sizeof *b);
    b->cached = small;
    atomic_init(&b->refs, 1u);
    b->m.len = len;
    b->m.body = (uint8_t *)(b + 1);
    return &b->m;
}

kin_err
kin_msg_new(kin_msg **out, size_t len)
{
    if (len > SIZE_MAX - sizeof(msg_block))
        return -ENOMEM;
    kin_msg *m = block_new(len);
    if (!m)
        return -ENOMEM;
    *out = m;
    return KIN_OK;
}

kin_err
kin_msg_new_copy(kin_msg **out, const void *body, size_t len)
{
    kin_err e = kin_msg_new(out, len);
    if (e == KIN_OK && len)
        memcpy((*out)->body, body, len);
    return e;
}

kin_err
kin__msg_new_outside(kin_msg **out, void *body, size_t len,
                     void (*release)(void *hint), void *hint)
{
    kin_msg *m = block_new(0);
    if (!m)
        return -ENOMEM;
    msg_block *b = block_of(m);
    b->release = release;
    b->hint = hint;
    m->body = body;
    m->len = len;
    *out = m;
    return KIN_OK;
}

kin_err
kin__msg_from_buf(kin_msg **out, kin_buf *b)
{
    if (b->len < KIN__MSG_OUTSIDE_MIN || !b->data || b->data == b->fixed_)
        return kin_msg_new_copy(out, b->data, b->len);
    kin_err e = kin__msg_new_outside(out, b->data, b->len, free, b->data);
    if (e == KIN_OK)
        kin_buf_init(b); /* the message frees the memory now */
    return e;
}

void
kin__msg_hold(const kin_msg *m)
{
    /* Release: the holder that lets go last (libzmq's I/O thread, when
     * it is done sending a big body) frees memory this thread wrote. */
    atomic_fetch_add_explicit(&block_of(m)->refs, 1u, memory_order_release);
}

void
kin__msg_unhold(kin_msg *m)
{
    msg_block *b = block_of(m);
    /* One holder left: it is the caller, and nobody else can add one. */
    if (atomic_load_explicit(&b->refs, memory_order_acquire) != 1u &&
        atomic_fetch_sub_explicit(&b->refs, 1u, memory_order_acq_rel) != 1u)
        return;
    if (b->release)
        b->release(b->hint);
    if (b->cached)
        kin__block_put(b);
    else
        free(b);
}

void
kin_msg_destroy(kin_msg **m)
{
    if (m && *m) {
        kin__msg_unhold(*m);
        *m = NULL;
    }
}

static void
put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint8_t proto_version = KIN_PROTO_VERSION;

unsigned
kin__proto_version(void)
{
    return proto_version;
}

void
kin__proto_version_set(unsigned v)
{
    proto_version = (uint8_t)v;
}

/* Layout: magic u16 | version u8 | flags u8 | dst | src | auth | handle |
 * reply_to (u32 each), all little-endian. */
void
kin__msg_header_encode(const kin_msg *m, uint8_t out[KIN_HDR_SIZE])
{
    out[0] = (uint8_t)KIN_MAGIC;
    out[1] = (uint8_t)(KIN_MAGIC >> 8);
    out[2] = proto_version;
    out[3] = (uint8_t)m->flags;
    put32(out + 4, m->dst);
    put32(out + 8, m->src);
    put32(out + 12, m->auth);
    put32(out + 16, m->handle);
    put32(out + 20, m->reply_to);
}

kin_err
kin__msg_header_decode(kin_msg *m, const void *hdr, size_t len)
{
    const uint8_t *p = hdr;
    if (len < 4)
        return KIN_ESHORT;
    if ((p[0] | p[1] << 8) != KIN_MAGIC)
        return KIN_EBADMAGIC;
    if (p[2] != proto_version)
        return KIN_EBADVERSION;
    if (len < KIN_HDR_SIZE)
        return KIN_ESHORT;
    if (len > KIN_HDR_SIZE || (p[3] & ~KNOWN_FLAGS))
        return KIN_EBADMSG;
    m->flags = p[3];
    m->dst = get32(p + 4);
    m->src = get32(p + 8);
    m->auth = get32(p + 12);
    m->handle = get32(p + 16);
    m->reply_to = get32(p + 20);
    return KIN_OK;
}

kin_err
kin__msg_check_size(uint32_t handle, uint32_t flags, const void *body,
                    size_t len, size_t max)
{
    if (!max)
        max = KIN_MAX_MSG_DEFAULT;
    if (len <= max)
        return KIN_OK;
    if (max <= SIZE_MAX - KIN_MSG_ENVELOPE_MAX &&
        len > max + KIN_MSG_ENVELOPE_MAX)
        return KIN_ETOOBIG;
    /* Only a call request carries the call's envelope; replies and dead
     * messages sent to a handle are all payload but their msgpack headers. */
    bool call =
        handle == KIN_HANDLE_CALL && !(flags & (KIN_MSG_DEAD | KIN_MSG_ERROR));
    size_t envelope = kin__msgpack_envelope(body, len, call ? 2u : 0u);
    return len - envelope > max ? KIN_ETOOBIG : KIN_OK;
}

kin_err
kin__msg_decode(kin_msg **out, const void *hdr, size_t hdr_len,
                const void *body, size_t body_len, size_t max_size)
{
    return kin__msg_decode_outside(out, hdr, hdr_len, (void *)body, body_len,
                                   max_size, NULL, NULL);
}

kin_err
kin__msg_decode_outside(kin_msg **out, const void *hdr, size_t hdr_len,
                        void *body, size_t body_len, size_t max_size,
                        void (*release)(void *hint), void *hint)
{
    kin_msg h;
    kin_err e = kin__msg_header_decode(&h, hdr, hdr_len);
    if (e)
        return e;
    if ((e = kin__msg_check_size(h.handle, h.flags, body, body_len, max_size)))
        return e;
    kin_msg *m;
    e = release ? kin__msg_new_outside(&m, body, body_len, release, hint)
                : kin_msg_new_copy(&m, body, body_len);
    if (e)
        return e;
    m->flags = h.flags;
    m->dst = h.dst;
    m->src = h.src;
    m->auth = h.auth;
    m->handle = h.handle;
    m->reply_to = h.reply_to;
    *out = m;
    return KIN_OK;
}

kin_err
kin__msg_new_dead(kin_msg **out, const kin_msg *orig, uint32_t from_ctx,
                  kin_err reason, const char *text)
{
    if (reason >= 0)
        reason = KIN_EBADMSG; /* a dead message always carries an error */
    if (!text)
        text = kin_strerror(reason);
    size_t tlen = strlen(text);
    if (tlen > 1024)
        tlen = 1024;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int64(&pk, reason);
    msgpack_pack_str_with_body(&pk, text, tlen);
    kin_err e = kin_msg_new_copy(out, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (e)
        return e;
    (*out)->flags = KIN_MSG_DEAD;
    (*out)->dst = orig->src;
    (*out)->src = from_ctx;
    (*out)->auth = from_ctx;
    (*out)->handle = orig->reply_to;
    return KIN_OK;
}

/* Reads a msgpack integer at *p (a negative code is checked by the
 * caller). Returns false on anything else. */
static bool
read_code(const uint8_t **p, const uint8_t *end, int64_t *v)
{
    size_t k = kin__mp_int(*p, (size_t)(end - *p), v, NULL);
    *p += k;
    return k != 0;
}

/* Reads a msgpack str header at *p: its length. */
static bool
read_str(const uint8_t **p, const uint8_t *end, size_t *len)
{
    const uint8_t *q = *p;
    if (q >= end)
        return false;
    uint8_t t = *q++;
    size_t n;
    if ((t & 0xe0) == 0xa0) {
        n = t & 0x1f;
    } else if (t >= 0xd9 && t <= 0xdb) {
        int bytes = 1 << (t - 0xd9);
        if (end - q < bytes)
            return false;
        n = 0;
        for (int i = 0; i < bytes; i++)
            n = n << 8 | q[i];
        q += bytes;
    } else {
        return false;
    }
    if ((size_t)(end - q) < n)
        return false;
    *len = n;
    *p = q;
    return true;
}

kin_err
kin_msg_dead_reason(const kin_msg *m, kin_err *reason, const char **text,
                    size_t *text_len)
{
    if (!(m->flags & KIN_MSG_DEAD))
        return -EINVAL;
    /* Parsed by hand: the body is tiny and fixed-shape, and msgpack-c would
     * reserve memory for whatever element count a peer claims. */
    const uint8_t *p = m->body, *end = m->body + m->len;
    int64_t code;
    size_t len;
    if (m->len < 1 || *p++ != 0x92 || !read_code(&p, end, &code) || code >= 0 ||
        code < INT32_MIN) {
        return KIN_EBADMSG;
    }
    const uint8_t *str = p;
    if (!read_str(&p, end, &len))
        return KIN_EBADMSG;
    str = p;
    if (p + len != end)
        return KIN_EBADMSG; /* trailing bytes */
    if (reason)
        *reason = (kin_err)code;
    if (text)
        *text = (const char *)str;
    if (text_len)
        *text_len = len;
    return KIN_OK;
}
