/* The one growable byte buffer (kin_buf, kin/pack.h) as kin's own code uses
 * it: reserve, append, and a start in caller storage so that a hot path
 * (a log record) allocates nothing while its bytes fit. */
#ifndef KIN_CORE_BUF_H
#define KIN_CORE_BUF_H

#include <stddef.h>

#include <kin/pack.h>

/* Starts b empty in mem (size bytes, owned by the caller, outliving b):
 * b grows into heap memory past it; kin_buf_release frees only that. */
void kin__buf_init_fixed(kin_buf *b, char *mem, size_t size);

/* Room for n more bytes after b->len. Errors: -ENOMEM. */
kin_err kin__buf_reserve(kin_buf *b, size_t n);

/* n more bytes at the end (b->len grows by n) to be written by the caller,
 * or NULL (-ENOMEM, b unchanged). */
char *kin__buf_extend(kin_buf *b, size_t n);

/* Appends n bytes and keeps a NUL after them (not counted in len), so
 * b->data is a C string once anything was added. Errors: -ENOMEM (b
 * unchanged). */
kin_err kin__buf_add(kin_buf *b, const void *p, size_t n);

/* kin__buf_add of a NUL-terminated string. */
kin_err kin__buf_str(kin_buf *b, const char *s);

#endif
