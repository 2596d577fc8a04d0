/* Packing call arguments and reading results without walking msgpack_object
 * by hand: czmq-style picture strings over msgpack-c.
 *
 * A body is a sequence of msgpack objects. kin_pack appends one object per
 * picture character; kin_unpack reads them back in order.
 *
 *   pack picture  argument(s)                         msgpack
 *   i             int                                 int
 *   I             int64_t                             int
 *   u             unsigned                            uint
 *   U             uint64_t                            uint
 *   d             double                              float64
 *   b             int (0 = false)                     bool
 *   s             const char * (NUL-terminated;       str (nil for NULL)
 *                 NULL packs nil)
 *   S             const char *, size_t                str of that length
 *   B             const void *, size_t                bin
 *   n             (none)                              nil
 *   a             uint32_t count                      array header; the next
 *                                                     count items are its
 *                                                     elements
 *   M             uint32_t count                      map header; the next
 *                                                     2*count items are keys
 *                                                     and values
 *   m             const void *, size_t                one already-encoded
 *                                                     msgpack object, as is
 *
 *   unpack        argument(s)
 *   i             int *        (KIN_ETYPE if out of range)
 *   I             int64_t *
 *   u             unsigned *   (KIN_ETYPE if negative or out of range)
 *   U             uint64_t *
 *   d             double *     (ints are converted)
 *   b             bool *
 *   s             char **      malloc'd NUL-terminated copy, caller frees;
 *                              nil gives NULL
 *   S             const char **, size_t *   borrowed (see kin_reader)
 *   B             const void **, size_t *   borrowed
 *   n             (none)       expects nil
 *   a             uint32_t *   array size; the next items read its elements
 *   M             uint32_t *   map size; the next 2*size items read its
 *                              keys and values
 *   m             const void **, size_t *   the next whole object, raw
 *                              msgpack bytes, borrowed
 *   ?             (none)       skips the next object
 */
#ifndef KIN_PACK_H
#define KIN_PACK_H

#include <stdarg.h>
#include <stdbool.h>

#include <msgpack.h>

#include <kin/defs.h>
#include <kin/err.h>

/* A growable byte buffer that bodies are packed into. Zero-initialise it (or
 * call kin_buf_init); release with kin_buf_release. */
typedef struct kin_buf {
    char *data;
    size_t len;
    size_t cap;
} kin_buf;

KIN_EXPORT void kin_buf_init(kin_buf *b);

/* Frees b's memory and re-initialises it. NULL-safe. */
KIN_EXPORT void kin_buf_release(kin_buf *b);

/* Appends one msgpack object per picture character (table above). On error b
 * keeps its length from before the call. Errors: -EINVAL (unknown picture
 * character, or an 'a'/'M' header not followed by enough items), -ENOMEM.
 * Any thread (one buffer per thread at a time). */
KIN_EXPORT kin_err kin_pack(kin_buf *b, const char *picture, ...);
KIN_EXPORT kin_err kin_vpack(kin_buf *b, const char *picture, va_list ap);

/* A msgpack packer that writes into b, for those who want msgpack-c's own
 * API: msgpack_pack_int(&pk, 1) and so on append to b. */
KIN_EXPORT void kin_buf_packer(kin_buf *b, msgpack_packer *pk);

/* Reads a body. Borrowed pointers ('S', 'B', 'm') point into the data given
 * to kin_reader_init and stay valid while that data does. Strings copied by
 * 's' are the caller's. Release with kin_reader_release. */
typedef struct kin_reader {
    const char *data;
    size_t len;
    size_t off; /* offset of the next top-level object */
    msgpack_zone zone;
    /* Open arrays and maps whose elements are being read. */
    struct {
        const msgpack_object *items; /* arrays: elements */
        const msgpack_object_kv *kv; /* maps: key/value pairs */
        uint32_t n;                  /* items left (maps: 2 per pair) */
        uint32_t i;                  /* next item index */
    } stack[16];
    int depth;
} kin_reader;

/* Starts reading len bytes at data (not copied). Any thread. */
KIN_EXPORT void kin_reader_init(kin_reader *r, const void *data, size_t len);

/* Frees r's scratch memory. NULL-safe. */
KIN_EXPORT void kin_reader_release(kin_reader *r);

/* Reads one value per picture character (table above). Errors: KIN_ETYPE
 * (a value has another type), KIN_ESHORT (the body ends early), KIN_EBADMSG
 * (the bytes are not msgpack), -EINVAL (unknown picture character), -ENOMEM.
 * On error the reader's position is unspecified; values already stored stay
 * stored ('s' copies made before the error are freed and set to NULL). */
KIN_EXPORT kin_err kin_unpack(kin_reader *r, const char *picture, ...);
KIN_EXPORT kin_err kin_vunpack(kin_reader *r, const char *picture,
                               va_list ap);

/* Reads the next object into *obj for msgpack-c users. obj's pointers stay
 * valid until kin_reader_release. Errors as kin_unpack. */
KIN_EXPORT kin_err kin_reader_next(kin_reader *r, msgpack_object *obj);

/* Whether every object has been read (and no array/map is open). */
KIN_EXPORT bool kin_reader_done(const kin_reader *r);

/* Shorthand: reads data/len with picture into fresh reader, then releases
 * it. Borrowed pointers stay valid while data does. */
KIN_EXPORT kin_err kin_unpack_buf(const void *data, size_t len,
                                  const char *picture, ...);

#endif
