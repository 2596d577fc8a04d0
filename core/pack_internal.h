/* Internals of the pack helper shared with the router. */
#ifndef KIN_CORE_PACK_INTERNAL_H
#define KIN_CORE_PACK_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include <kin/err.h>

/* Checks that data holds one complete msgpack object whose arrays and maps
 * claim no more elements than bytes remain (so msgpack-c will not reserve
 * memory for a peer's made-up count). Returns the object's length, 0 when
 * the bytes end too early, SIZE_MAX for a byte msgpack never uses. */
size_t kin__msgpack_scan(const void *data, size_t len);

/* The envelope of a body made of msgpack objects one after another: the
 * whole of the first `whole` objects (a CALL's function name and caller)
 * and, in every other object, nested ones included, the headers of
 * strings, binaries, exts, arrays and maps. What remains -- their
 * contents, and numbers, nil and booleans -- is the payload. 0 when data
 * is not such a sequence (then all of it is payload). */
size_t kin__msgpack_envelope(const void *data, size_t len, unsigned whole);

/* kin_unpack_buf with a va_list. */
kin_err kin__vunpack_buf(const void *data, size_t len, const char *picture,
                         va_list ap);

#endif
