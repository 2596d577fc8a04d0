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
 * 'a' and 'M' write only the header: their items may follow in the same call or
 * in later ones, and nothing checks that they do. 's', 'S' and 'B' take at
 * most 2^32-1 bytes (msgpack's limit); 'S' and 'B' accept NULL with length 0.
 *
 *   unpack        argument(s)
 *   i             int *        (KIN_ETYPE if out of range)
 *   I             int64_t *    (KIN_ETYPE if above INT64_MAX)
 *   u             unsigned *   (KIN_ETYPE if negative or out of range)
 *   U             uint64_t *
 *   d             double *     (float32, float64; ints are converted)
 *   b             bool *
 *   s             char **      malloc'd NUL-terminated copy, caller frees;
 *                              nil gives NULL; a str holding a NUL byte is
 *                              KIN_ETYPE (it would be cut short; use 'S')
 *   S             const char **, size_t *   borrowed (see kin_reader);
 *                              never NULL, even when empty
 *   B             const void **, size_t *   borrowed; never NULL
 *   n             (none)       expects nil
 *   a             uint32_t *   array size; the next items read its elements
 *   M             uint32_t *   map size; the next 2*size items read its
 *                              keys and values
 *   m             const void **, size_t *   the next whole object, raw
 *                              msgpack bytes, borrowed
 *   ?             (none)       skips the next object
 *
 * After 'a' or 'M' the next picture characters, in this call or later ones,
 * read the elements; when they run out, reading goes on in the enclosing
 * array or map, or at the next top-level object.
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
    char *fixed_; /* kin's own: storage data started in (not freed); NULL */
} kin_buf;

KIN_EXPORT void kin_buf_init(kin_buf *b);

/* Frees b's memory and re-initialises it. NULL-safe. */
KIN_EXPORT void kin_buf_release(kin_buf *b);

/* Appends one msgpack object per picture character (table above), each in
 * its smallest msgpack form: the bytes msgpack-c's packer writes for it
 * (str 8 included). On error b keeps its length from before the call. Errors:
 * -EINVAL (unknown picture character, NULL b or picture, NULL 'S'/'B' pointer
 * with a length, 'm' bytes that are not exactly one msgpack object),
 * KIN_ETOOBIG (a string or bin over 2^32-1 bytes, an 'm' object nested deeper
 * than msgpack-c's limit of 32), -ENOMEM. Any thread (one buffer per thread at
 * a time). */
KIN_EXPORT kin_err kin_pack(kin_buf *b, const char *picture, ...);
KIN_EXPORT kin_err kin_vpack(kin_buf *b, const char *picture, va_list ap);

/* Appends printf-formatted text (no NUL) to b: for text outputs such as
 * custom monitor commands. Errors: -ENOMEM. */
KIN_EXPORT kin_err kin_buf_printf(kin_buf *b, const char *fmt, ...)
    KIN_PRINTF(2, 3);

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
    struct kin_reader_frame {
        const msgpack_object *items; /* arrays: elements */
        const msgpack_object_kv *kv; /* maps: key/value pairs */
        uint32_t n;                  /* items left (maps: 2 per pair) */
        uint32_t i;                  /* next item index */
        size_t off;                  /* byte offset of the next item, for 'm' */
    } stack[16];
    int depth;
} kin_reader;

/* Starts reading len bytes at data (not copied). Cannot fail: scratch
 * memory is allocated by the first read of an array, map or ext (scalars
 * are read without it). Any thread. */
KIN_EXPORT void kin_reader_init(kin_reader *r, const void *data, size_t len);

/* Frees r's scratch memory and leaves r reading an empty body. NULL-safe;
 * releasing twice is harmless. */
KIN_EXPORT void kin_reader_release(kin_reader *r);

/* Reads one value per picture character (table above). Errors: KIN_ETYPE
 * (a value has another type), KIN_ESHORT (the body ends early), KIN_EBADMSG
 * (the bytes are not msgpack), -EINVAL (unknown picture character, checked
 * before anything is read; NULL r or picture), KIN_ETOOBIG (an object nested
 * deeper than msgpack-c's limit of 32, more than 16 arrays/maps open at once
 * in r, or sizes msgpack-c cannot allocate for), -ENOMEM. On error the
 * reader's position is unspecified; values already stored stay stored ('s'
 * copies made in this call before the error are freed and set to NULL).
 * Any thread (one reader per thread at a time). */
KIN_EXPORT kin_err kin_unpack(kin_reader *r, const char *picture, ...);
KIN_EXPORT kin_err kin_vunpack(kin_reader *r, const char *picture, va_list ap);

/* Reads the next object into *obj for msgpack-c users: the next element if
 * an array or map is open (as kin_unpack would), else the next top-level
 * object. obj's arrays and maps stay valid until kin_reader_release, its
 * strings and bins while the data does. Errors as kin_unpack. */
KIN_EXPORT kin_err kin_reader_next(kin_reader *r, msgpack_object *obj);

/* Whether every object has been read (and no array/map is open). */
KIN_EXPORT bool kin_reader_done(const kin_reader *r);

/* Shorthand: reads data/len with picture into fresh reader, then releases
 * it. Borrowed pointers stay valid while data does. */
KIN_EXPORT kin_err kin_unpack_buf(const void *data, size_t len,
                                  const char *picture, ...);

#endif
