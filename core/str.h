/* Copying names into fixed fields on hot paths, where snprintf("%s")
 * would cost its format machinery on every call. */
#ifndef KIN_CORE_STR_H
#define KIN_CORE_STR_H

#include <stddef.h>
#include <string.h>

/* Copies len bytes of src (cut to size - 1) to dst and ends it with a
 * NUL; size must be at least 1. */
static inline void
kin__str_copy_n(char *dst, size_t size, const char *src, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(dst, src, len);
    dst[len] = 0;
}

/* The same for a NUL-terminated src (NULL: ""). */
static inline void
kin__str_copy(char *dst, size_t size, const char *src)
{
    kin__str_copy_n(dst, size, src ? src : "", src ? strnlen(src, size) : 0);
}

#endif
