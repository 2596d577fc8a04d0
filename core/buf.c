/* The growable byte buffer (kin_buf): the public calls of kin/pack.h and
 * the internal ones of core/buf.h. Every growing buffer in kin is this one. */
#include "core/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void
kin_buf_init(kin_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->fixed_ = NULL;
}

void
kin__buf_init_fixed(kin_buf *b, char *mem, size_t size)
{
    b->data = mem;
    b->len = 0;
    b->cap = size;
    b->fixed_ = mem;
}

void
kin_buf_release(kin_buf *b)
{
    if (!b)
        return;
    if (b->data != b->fixed_)
        free(b->data);
    kin_buf_init(b);
}

/* Buffers this big (big message bodies) are fresh memory from mmap, and
 * filling them page by page costs a fault per 4 KiB (16,384 for 64 MiB):
 * their untouched part asks for transparent huge pages, where the system
 * gives them only on request (THP "madvise", Debian's default). */
#define HUGE_MIN (4u << 20)
#define HUGE_PAGE (2u << 20)

static void
want_huge_pages(char *from, size_t len)
{
    uintptr_t a =
        ((uintptr_t)from + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    uintptr_t z = ((uintptr_t)from + len) & ~(uintptr_t)(HUGE_PAGE - 1);
    if (z > a)
        madvise((void *)a, z - a, MADV_HUGEPAGE); /* advice: errors ignored */
}

kin_err
kin__buf_reserve(kin_buf *b, size_t n)
{
    if (n <= b->cap - b->len)
        return KIN_OK;
    if (n > SIZE_MAX - b->len)
        return -ENOMEM;
    size_t need = b->len + n;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    bool fixed = b->data && b->data == b->fixed_;
    char *data = fixed ? malloc(cap) : realloc(b->data, cap);
    if (!data)
        return -ENOMEM;
    if (fixed)
        memcpy(data, b->data, b->len);
    if (cap >= HUGE_MIN)
        want_huge_pages(data + b->len, cap - b->len);
    b->data = data;
    b->cap = cap;
    return KIN_OK;
}

char *
kin__buf_extend(kin_buf *b, size_t n)
{
    if (kin__buf_reserve(b, n) != KIN_OK)
        return NULL;
    char *at = b->data + b->len;
    b->len += n;
    return at;
}

kin_err
kin__buf_add(kin_buf *b, const void *p, size_t n)
{
    if (n == SIZE_MAX)
        return -ENOMEM;
    kin_err e = kin__buf_reserve(b, n + 1);
    if (e)
        return e;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return KIN_OK;
}

kin_err
kin__buf_str(kin_buf *b, const char *s)
{
    return kin__buf_add(b, s, strlen(s));
}

/* msgpack-c's write callback: 0 on success, and any other value is passed
 * back by the msgpack_pack_* call that wrote. */
static int
append(void *data, const char *buf, size_t len)
{
    kin_buf *b = data;
    /* Empty str and bin bodies arrive here too, possibly with buf NULL,
     * which memcpy must not be given. */
    if (len == 0)
        return 0;
    char *at = kin__buf_extend(b, len);
    if (!at)
        return -1;
    memcpy(at, buf, len);
    return 0;
}

kin_err
kin_buf_printf(kin_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    kin_err e = kin__buf_reserve(b, (size_t)n + 1);
    if (e)
        return e;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return KIN_OK;
}

void
kin_buf_packer(kin_buf *b, msgpack_packer *pk)
{
    msgpack_packer_init(pk, b, append);
}
