/* libFuzzer target for picture unpacking (core/pack.c) over bytes from a
 * peer: the call envelope ("SuI" / "Su" then the arguments, router/pool.c),
 * the reply ("ISuS", router/call.c), CANCEL ("uu"), HELLO's name ("S"),
 * names ("uS", "SI"), the pictures services use ("suI", "sI", "Is", "b", an
 * array of I) and any picture spelled by the input itself. Properties: an
 * error is one of kin's codes, borrowed pointers lie inside the body, 'S' and
 * 'B' are never NULL, an 's' copy is freed and NULL after an error (and
 * NUL-free after success), nothing leaks (LeakSanitizer), and no read
 * passes the body (an exact-size allocation). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kin/pack.h>

static const uint8_t *lo, *hi; /* the body, for borrowed pointers */

static void
check_err(kin_err e)
{
    if (e != KIN_OK && e != KIN_ETYPE && e != KIN_ESHORT && e != KIN_EBADMSG &&
        e != KIN_ETOOBIG && e != -ENOMEM)
        abort(); /* not a code kin_unpack documents */
}

static void
check_borrowed(const void *p, size_t len)
{
    if (!p)
        abort(); /* 'S', 'B' and 'm' never give NULL */
    const uint8_t *b = p;
    if (len && (b < lo || b > hi || len > (size_t)(hi - b)))
        abort(); /* outside the body */
}

/* An 's' result: NULL after an error; after success NULL (nil) or a
 * NUL-terminated copy with no NUL inside. Frees it. */
static void
check_copy(kin_err e, char *s)
{
    if (e != KIN_OK && s)
        abort(); /* a copy that outlives the error */
    free(s);
}

/* The pictures kin's own decoders use, each as one call. */
static void
fixed(int which)
{
    const uint8_t *d = lo;
    size_t n = (size_t)(hi - lo);
    const char *s1 = NULL, *s2 = NULL;
    size_t l1 = 0, l2 = 0;
    unsigned u1 = 0, u2 = 0;
    int64_t i1 = 0;
    bool b = false;
    char *c = NULL;
    kin_err e;
    switch (which) {
    case 0: { /* the call envelope, then two arguments through the reader */
        kin_reader r;
        kin_reader_init(&r, d, n);
        e = kin_unpack(&r, "SuI", &s1, &l1, &u1, &i1);
        check_err(e);
        if (!e) {
            check_borrowed(s1, l1);
            e = kin_unpack(&r, "sI", &c, &i1);
            check_err(e);
            check_copy(e, c);
            (void)kin_reader_done(&r);
        }
        kin_reader_release(&r);
        kin_reader_release(&r); /* twice is harmless */
        return;
    }
    case 1:
        e = kin_unpack_buf(d, n, "Su", &s1, &l1, &u1);
        break;
    case 2:
        e = kin_unpack_buf(d, n, "ISuS", &i1, &s1, &l1, &u1, &s2, &l2);
        break;
    case 3:
        e = kin_unpack_buf(d, n, "uu", &u1, &u2);
        break;
    case 4:
        e = kin_unpack_buf(d, n, "S", &s1, &l1);
        break;
    case 5:
        e = kin_unpack_buf(d, n, "uS", &u1, &s1, &l1);
        break;
    case 6:
        e = kin_unpack_buf(d, n, "SI", &s1, &l1, &i1);
        break;
    case 7:
        e = kin_unpack_buf(d, n, "suI", &c, &u1, &i1);
        break;
    case 8:
        e = kin_unpack_buf(d, n, "Is", &i1, &c);
        break;
    case 9:
        e = kin_unpack_buf(d, n, "b", &b);
        break;
    default: { /* an array of I, every element */
        kin_reader r;
        kin_reader_init(&r, d, n);
        uint32_t count = 0;
        e = kin_unpack(&r, "a", &count);
        for (uint32_t i = 0; !e && i < count; i++)
            e = kin_unpack(&r, "I", &i1);
        check_err(e);
        kin_reader_release(&r);
        return;
    }
    }
    check_err(e);
    check_copy(e, c);
    if (!e && s1)
        check_borrowed(s1, l1);
    if (!e && s2)
        check_borrowed(s2, l2);
}

/* A picture spelled by the input, read one character per call. */
static void
spelled(const uint8_t *pic, size_t pic_len)
{
    static const char alphabet[] = "iIuUdbsSBnaMm?";
    kin_reader r;
    kin_reader_init(&r, lo, (size_t)(hi - lo));
    kin_err e = KIN_OK;
    for (size_t k = 0; k < pic_len && !e; k++) {
        char p[2] = {alphabet[pic[k] % (sizeof alphabet - 1)], 0};
        int i;
        int64_t I;
        unsigned u;
        uint64_t U;
        double dv;
        bool bv;
        char *c = NULL;
        const void *ptr = NULL;
        size_t len = 0;
        uint32_t count;
        switch (p[0]) {
        case 'i':
            e = kin_unpack(&r, p, &i);
            break;
        case 'I':
            e = kin_unpack(&r, p, &I);
            break;
        case 'u':
            e = kin_unpack(&r, p, &u);
            break;
        case 'U':
            e = kin_unpack(&r, p, &U);
            break;
        case 'd':
            e = kin_unpack(&r, p, &dv);
            break;
        case 'b':
            e = kin_unpack(&r, p, &bv);
            break;
        case 's':
            e = kin_unpack(&r, p, &c);
            if (!e && c && strlen(c) > (size_t)(hi - lo))
                abort();
            check_copy(e, c);
            break;
        case 'S':
        case 'B':
        case 'm':
            e = kin_unpack(&r, p, &ptr, &len);
            if (!e)
                check_borrowed(ptr, len);
            break;
        case 'a':
        case 'M':
            e = kin_unpack(&r, p, &count);
            break;
        default:
            e = kin_unpack(&r, p);
            break;
        }
        check_err(e);
    }
    kin_reader_release(&r);
}

/* Input layout: byte 0 below 0x80 picks one of kin's pictures (mod 11),
 * the rest is the body; byte 0 from 0x80 spells a picture of (byte 0 &
 * 0x1f) characters from the next bytes, then the body. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t pic_len = data[0] & 0x80 ? data[0] & 0x1f : 0;
    if (pic_len > size - 1)
        pic_len = size - 1;
    size_t len = size - 1 - pic_len;
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        abort();
    memcpy(body, data + 1 + pic_len, len);
    lo = body;
    hi = body + len;
    if (data[0] & 0x80)
        spelled(data + 1, pic_len);
    else
        fixed(data[0] % 11);
    free(body);
    return 0;
}
