/* Internals of the message codec shared with the router: the wire header
 * codec, the decoder of received frames, dead messages, and the size rule
 * that both the send and the receive path apply. Not exported: the wire
 * format is kin's own business (docs/protocol.md describes it). */
#ifndef KIN_CORE_MSG_INTERNAL_H
#define KIN_CORE_MSG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <kin/err.h>
#include <kin/msg.h>
#include <kin/pack.h>

/* Bodies from this size up are not copied between a message and zmq: a
 * received frame becomes the body (kin__msg_decode_outside), a packed
 * buffer is taken over (kin__msg_from_buf), and the sender hands the body
 * to zmq_msg_init_data while holding the message (kin__msg_hold). Smaller
 * ones are copied: a copy costs less than the allocations and atomics. */
#define KIN__MSG_OUTSIDE_MIN (64u << 10)

/* A message whose body is len bytes at body, which the message does not
 * copy: release(hint) is called when the message is freed (by its last
 * holder). On error (-ENOMEM) the body stays the caller's and release is
 * not called. Any thread. */
kin_err kin__msg_new_outside(kin_msg **out, void *body, size_t len,
                             void (*release)(void *hint), void *hint);

/* A message whose body is what b holds: b's heap memory is taken over
 * (b is left empty) when it holds KIN__MSG_OUTSIDE_MIN bytes or more, else
 * copied (b unchanged). Errors: -ENOMEM (b unchanged). */
kin_err kin__msg_from_buf(kin_msg **out, kin_buf *b);

/* One more holder of m (m must stay readable until kin__msg_unhold): a
 * zmq message that sends m's body without copying it. The body is never
 * written while held. kin_msg_destroy drops the owner's hold; the memory
 * goes with the last one. Any thread. */
void kin__msg_hold(const kin_msg *m);
void kin__msg_unhold(kin_msg *m);

/* Whether a body for handle with flags fits a context's limit max (0:
 * KIN_MAX_MSG_DEFAULT): its payload -- the body without its envelope (a
 * CALL's function name and caller id, and msgpack's type and length
 * headers) -- is at most max bytes, and the whole body at most max +
 * KIN_MSG_ENVELOPE_MAX. A body that is not msgpack is all payload. Bodies
 * up to max bytes pass without being looked at. Errors: KIN_ETOOBIG. */
kin_err kin__msg_check_size(uint32_t handle, uint32_t flags, const void *body,
                            size_t len, size_t max);

/* The protocol version this process writes in headers and accepts:
 * KIN_PROTO_VERSION. Tests set another, before any node exists, to play a
 * peer of another kin build (test_childcert). */
unsigned kin__proto_version(void);
void kin__proto_version_set(unsigned v);

/* Writes the 24-byte wire header of m to out. Any thread. */
void kin__msg_header_encode(const kin_msg *m, uint8_t out[KIN_HDR_SIZE]);

/* Parses a wire header into m's header fields (m's body is untouched).
 * Errors: KIN_ESHORT (fewer than 24 bytes), KIN_EBADMSG (more than 24 bytes
 * or unknown flags), KIN_EBADMAGIC, KIN_EBADVERSION. On error m is
 * unchanged. Any thread. */
kin_err kin__msg_header_decode(kin_msg *m, const void *hdr, size_t len);

/* Decodes a header frame and a body frame into a new message. A body whose
 * payload exceeds max_size bytes (0 means KIN_MAX_MSG_DEFAULT), or which
 * exceeds max_size + KIN_MSG_ENVELOPE_MAX in all, fails with KIN_ETOOBIG
 * (see KIN_MAX_MSG_DEFAULT for what the payload is; a body that is not
 * msgpack is all payload, and a body of at most max_size bytes always
 * passes); header errors as kin__msg_header_decode. On error *out is
 * untouched. Any thread. */
kin_err kin__msg_decode(kin_msg **out, const void *hdr, size_t hdr_len,
                        const void *body, size_t body_len, size_t max_size);

/* kin__msg_decode, but with release non-NULL the body is not copied: the
 * message points at body and calls release(hint) when freed. On error
 * nothing is released: the body stays the caller's. */
kin_err kin__msg_decode_outside(kin_msg **out, const void *hdr, size_t hdr_len,
                                void *body, size_t body_len, size_t max_size,
                                void (*release)(void *hint), void *hint);

/* A dead message answering orig: addressed to orig's src and reply_to, from
 * from_ctx, flagged KIN_MSG_DEAD, body the msgpack array [reason, text].
 * text may be NULL (kin_strerror(reason) is used). Errors: -ENOMEM. */
kin_err kin__msg_new_dead(kin_msg **out, const kin_msg *orig, uint32_t from_ctx,
                          kin_err reason, const char *text);

#endif
