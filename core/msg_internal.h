/* Internals of the message codec shared with the router: the size rule that
 * both the send and the receive path apply. */
#ifndef KIN_CORE_MSG_INTERNAL_H
#define KIN_CORE_MSG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <kin/err.h>

/* Whether a body for handle with flags fits a context's limit max (0:
 * KIN_MAX_MSG_DEFAULT): its payload -- the body without its envelope (a
 * CALL's function name and caller id, and msgpack's type and length
 * headers) -- is at most max bytes, and the whole body at most max +
 * KIN_MSG_ENVELOPE_MAX. A body that is not msgpack is all payload. Bodies
 * up to max bytes pass without being looked at. Errors: KIN_ETOOBIG. */
kin_err kin__msg_check_size(uint32_t handle, uint32_t flags, const void *body,
                            size_t len, size_t max);

#endif
