/* The body of kin's system messages that carry context ids (HELLO's
 * authority chain, ADD_ROUTE / DEL_ROUTE, ALLOCATE_ID's answer): one msgpack
 * array of unsigned integers that fit 32 bits. Pure functions. */
#ifndef KIN_CORE_IDS_H
#define KIN_CORE_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/err.h>
#include <kin/msg.h>

/* A new message (header fields zero) whose body is ids[0..count) as one
 * msgpack array. Errors: -ENOMEM, -EINVAL (count above UINT32_MAX, or ids
 * NULL with count > 0); on error *out is untouched. Any thread. */
kin_err kin__ids_msg_new(kin_msg **out, const uint32_t *ids, size_t count);

/* Reads a body of len bytes that is one such array into ids (room for
 * max). Returns the count (0 for an empty array), or KIN_EBADMSG (not one
 * complete msgpack array, bytes after it, an element that is not an
 * unsigned integer or does not fit 32 bits), or KIN_ETOOBIG (more than max
 * elements). ids past the count are unspecified on error. Any thread. */
int kin__ids_read(const void *body, size_t len, uint32_t *ids, size_t max);

/* Reads HELLO's body from a child: [id] followed by the context's name (a
 * str), or [id, 1] from an operator (the kin command). *as_operator is
 * whether the leading array is exactly [id, 1]; *name (borrowed from body,
 * never NULL when set) and *name_len are the str after the array, or NULL
 * and 0 when there is none or it is not a str. Nothing here is refused: the
 * router decides what a HELLO may do. Any thread. */
void kin__hello_read(const void *body, size_t len, bool *as_operator,
                     const char **name, size_t *name_len);

#endif
