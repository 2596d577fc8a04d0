/* Tests of picture-string packing and reading (core/pack.c): the exact bytes
 * written, round trips of every picture character, nested arrays and maps,
 * borrowed pointers, range checks and every error with its specific code. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <kin/pack.h>

#include "core/buf.h"
#include "core/pack_internal.h"

#include "integration/harness.h"

/* Packs picture into a fresh buffer through kin_vpack and checks the bytes. */
static void
expect_bytes(const char *want, size_t want_len, const char *picture, ...)
{
    kin_buf b;
    kin_buf_init(&b);
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vpack(&b, picture, ap);
    va_end(ap);
    assert_int_equal(e, KIN_OK);
    assert_int_equal(b.len, want_len);
    if (want_len)
        assert_memory_equal(b.data, want, want_len);
    kin_buf_release(&b);
}

/* want is a string literal; its terminating NUL is not part of the bytes. */
#define EXPECT_BYTES(want, ...)                                                \
    expect_bytes(want, sizeof(want) - 1, __VA_ARGS__)

/* Reads body (a string literal of msgpack bytes) with picture through
 * kin_vunpack and checks the result code. */
static void
expect_unpack(kin_err want, const char *body, size_t len, const char *picture,
              ...)
{
    kin_reader r;
    kin_reader_init(&r, body, len);
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vunpack(&r, picture, ap);
    va_end(ap);
    kin_reader_release(&r);
    assert_int_equal(e, want);
}

#define EXPECT_UNPACK(want, body, ...)                                         \
    expect_unpack(want, body, sizeof(body) - 1, __VA_ARGS__)

/* Whether [p, p+n) lies inside b's bytes. */
static bool
inside(const kin_buf *b, const void *p, size_t n)
{
    uintptr_t lo = (uintptr_t)b->data, hi = lo + b->len, at = (uintptr_t)p;
    return at >= lo && at <= hi && n <= hi - at;
}

/* Reads a body with a one-character picture, passing outputs of the types
 * that character takes, and returns the result. */
static kin_err
read_one(const char *body, size_t len, char c)
{
    char pic[2] = {c, 0};
    int i;
    int64_t l;
    unsigned u;
    uint64_t U;
    double d;
    bool t;
    char *s = NULL;
    const char *str;
    const void *p;
    size_t n;
    uint32_t count;
    kin_err e;
    switch (c) {
    case 'i':
        return kin_unpack_buf(body, len, pic, &i);
    case 'I':
        return kin_unpack_buf(body, len, pic, &l);
    case 'u':
        return kin_unpack_buf(body, len, pic, &u);
    case 'U':
        return kin_unpack_buf(body, len, pic, &U);
    case 'd':
        return kin_unpack_buf(body, len, pic, &d);
    case 'b':
        return kin_unpack_buf(body, len, pic, &t);
    case 's':
        e = kin_unpack_buf(body, len, pic, &s);
        free(s);
        return e;
    case 'S':
        return kin_unpack_buf(body, len, pic, &str, &n);
    case 'B':
    case 'm':
        return kin_unpack_buf(body, len, pic, &p, &n);
    case 'a':
    case 'M':
        return kin_unpack_buf(body, len, pic, &count);
    default: /* 'n', '?' */
        return kin_unpack_buf(body, len, pic);
    }
}

#define READ_ONE(body, c) read_one(body, sizeof(body) - 1, c)

static void
buf_release_frees_and_resets(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(kin_pack(&b, "ss", "hello", "world"), KIN_OK);
    assert_non_null(b.data);
    assert_int_equal(b.len, 12);
    assert_true(b.cap >= b.len);
    kin_buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    kin_buf_release(&b);
    kin_buf_release(NULL);
}

/* Headers are told apart by kind, and one cut short reads as none. */
static void
mp_header_reads_each_width_and_refuses_short_ones(void **state)
{
    (void)state;
    uint32_t n = 0;
    const unsigned char fixmap[] = {0x83}, map16[] = {0xde, 0x01, 0x02},
                        str8[] = {0xd9, 0xc8}, arr32[] = {0xdd, 0, 1, 0, 0};
    assert_int_equal(kin__mp_header(fixmap, 1, KIN__MP_MAP, &n), 1);
    assert_int_equal(n, 3);
    assert_int_equal(kin__mp_header(fixmap, 1, KIN__MP_ARRAY, &n), 0);
    assert_int_equal(kin__mp_header(map16, 3, KIN__MP_MAP, &n), 3);
    assert_int_equal(n, 0x102);
    assert_int_equal(kin__mp_header(map16, 2, KIN__MP_MAP, &n), 0);
    assert_int_equal(kin__mp_header(str8, 2, KIN__MP_STR, &n), 2);
    assert_int_equal(n, 200);
    assert_int_equal(kin__mp_header(str8, 2, KIN__MP_ARRAY, &n), 0);
    assert_int_equal(kin__mp_header(arr32, 5, KIN__MP_ARRAY, &n), 5);
    assert_int_equal(n, 65536);
    assert_int_equal(kin__mp_header(arr32, 0, KIN__MP_ARRAY, &n), 0);
}

/* Every integer encoding reads back its value, signed ones sign-extended;
 * a cut-short integer, a non-integer and (unless asked for) a uint 64 above
 * INT64_MAX are refused. */
static void
mp_int_reads_every_encoding(void **state)
{
    (void)state;
    static const struct {
        unsigned char b[9];
        size_t len;
        int64_t v;
    } ok[] = {
        {{0x05}, 1, 5},
        {{0x7f}, 1, 127},
        {{0xe0}, 1, -32},
        {{0xff}, 1, -1},
        {{0xcc, 0xc8}, 2, 200},
        {{0xcd, 0x12, 0x34}, 3, 0x1234},
        {{0xce, 0x89, 0xab, 0xcd, 0xef}, 5, 0x89abcdef},
        {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, INT64_MAX},
        {{0xd0, 0x80}, 2, -128},
        {{0xd0, 0x7f}, 2, 127},
        {{0xd1, 0xff, 0x38}, 3, -200},
        {{0xd2, 0x80, 0, 0, 0}, 5, INT32_MIN},
        {{0xd2, 0x7f, 0xff, 0xff, 0xff}, 5, INT32_MAX},
        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, INT64_MIN},
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, 9, -2},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = 42;
        bool big = true;
        assert_int_equal(kin__mp_int(ok[i].b, ok[i].len, &v, &big), ok[i].len);
        assert_true(v == ok[i].v);
        assert_false(big);
        assert_int_equal(kin__mp_int(ok[i].b, ok[i].len, &v, NULL), ok[i].len);
        /* One byte short of the whole integer. */
        assert_int_equal(kin__mp_int(ok[i].b, ok[i].len - 1, &v, NULL), 0);
    }
    const unsigned char huge[] = {0xcf, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff};
    int64_t v = 0;
    bool big = false;
    assert_int_equal(kin__mp_int(huge, sizeof huge, &v, NULL), 0);
    assert_int_equal(kin__mp_int(huge, sizeof huge, &v, &big), 9);
    assert_true(big);
    const unsigned char other[] = {0xc0, 0xc3, 0xca, 0xcb, 0xa1, 0x90, 0xd4};
    for (size_t i = 0; i < sizeof other; i++)
        assert_int_equal(kin__mp_int(&other[i], sizeof other - i, &v, NULL), 0);
}

/* A buffer started in caller storage writes there until it is full, then
 * moves to the heap with what it held; release leaves the storage alone. */
static void
buf_moves_from_fixed_storage_to_heap(void **state)
{
    (void)state;
    char mem[8];
    kin_buf b;
    kin__buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(kin__buf_str(&b, "abc"), KIN_OK);
    assert_ptr_equal(b.data, mem);
    assert_string_equal(mem, "abc");
    assert_int_equal(kin__buf_str(&b, "defghij"), KIN_OK);
    assert_ptr_not_equal(b.data, mem);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "abcdefghij");
    char *at = kin__buf_extend(&b, 2);
    assert_non_null(at);
    memcpy(at, "kl", 2);
    assert_int_equal(b.len, 12);
    assert_memory_equal(b.data, "abcdefghijkl", 12);
    kin_buf_release(&b); /* frees the heap copy, not mem */
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    kin__buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(kin__buf_add(&b, "xy", 2), KIN_OK);
    kin_buf_release(&b);
    assert_null(b.data);
}

static void
pack_writes_msgpack_bytes(void **state)
{
    EXPECT_BYTES("\x01", "i", 1);
    EXPECT_BYTES("\xff", "i", -1);
    EXPECT_BYTES("\xd0\xdf", "i", -33);
    EXPECT_BYTES("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "I", INT64_MIN);
    EXPECT_BYTES("\xcc\xc8", "u", 200u);
    EXPECT_BYTES("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", "U", UINT64_MAX);
    EXPECT_BYTES("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", "d", 1.5);
    EXPECT_BYTES("\xc3\xc2", "bb", 7, 0);
    EXPECT_BYTES("\xa2"
                 "ab",
                 "s", "ab");
    EXPECT_BYTES("\xc0", "s", (const char *)NULL);
    EXPECT_BYTES("\xa3"
                 "a\0b",
                 "S", "a\0b", (size_t)3);
    EXPECT_BYTES("\xa0\xa0", "SS", "", (size_t)0, (const char *)NULL,
                 (size_t)0);
    EXPECT_BYTES("\xc4\x02\x00\x01", "B", "\x00\x01", (size_t)2);
    EXPECT_BYTES("\xc4\x00", "B", (const void *)NULL, (size_t)0);
    EXPECT_BYTES("\xc0", "n");
    EXPECT_BYTES("\x92\x81", "aM", 2u, 1u);
    EXPECT_BYTES("\xdd\x00\x01\x11\x70", "a", 70000u);
    EXPECT_BYTES("\xde\x01\x00", "M", 256u);
    EXPECT_BYTES("\x93\x01\x02\x03", "m", "\x93\x01\x02\x03", (size_t)4);
    EXPECT_BYTES("", "");
}

/* kin_pack writes a str's and a bin's header itself: byte for byte what
 * msgpack-c writes, at each length where the header changes form. */
static void
str_and_bin_headers_are_msgpack_c_ones(void **state)
{
    (void)state;
    static const size_t lens[] = {0,   1,     31,    32,    255,
                                  256, 65535, 65536, 70000, 1u << 20};
    char *body = calloc(1, 1u << 20);
    assert_non_null(body);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (int bin = 0; bin < 2; bin++) {
            kin_buf mine, theirs;
            kin_buf_init(&mine);
            kin_buf_init(&theirs);
            msgpack_packer pk;
            kin_buf_packer(&theirs, &pk);
            if (bin) {
                assert_int_equal(kin_pack(&mine, "B", body, lens[i]), KIN_OK);
                assert_int_equal(msgpack_pack_bin_with_body(&pk, body, lens[i]),
                                 0);
            } else {
                assert_int_equal(kin_pack(&mine, "S", body, lens[i]), KIN_OK);
                assert_int_equal(msgpack_pack_str_with_body(&pk, body, lens[i]),
                                 0);
            }
            assert_int_equal(mine.len, theirs.len);
            assert_memory_equal(mine.data, theirs.data, mine.len);
            kin_buf_release(&mine);
            kin_buf_release(&theirs);
        }
    }
    free(body);
}

/* The same for every other picture character: integers at each boundary
 * of their forms, doubles, booleans, nil, array and map headers. */
static void
scalar_bytes_are_msgpack_c_ones(void **state)
{
    (void)state;
    static const int64_t ints[] = {
        0,         1,          31,        32,        127,
        128,       255,        256,       65535,     65536,
        INT32_MAX, UINT32_MAX, INT64_MAX, -1,        -31,
        -32,       -33,        -127,      -128,      -129,
        -32767,    -32768,     -32769,    INT32_MIN, -2147483649LL,
        INT64_MIN};
    static const uint32_t counts[] = {0, 15, 16, 65535, 65536, UINT32_MAX};
    static const double ds[] = {0.0, -0.0, 1.5, -2.25e300, INFINITY};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] + 12 + 5 + 1; i++) {
        kin_buf mine, theirs;
        kin_buf_init(&mine);
        kin_buf_init(&theirs);
        msgpack_packer pk;
        kin_buf_packer(&theirs, &pk);
        size_t n = sizeof ints / sizeof ints[0];
        if (i < n) {
            int64_t v = ints[i];
            assert_int_equal(kin_pack(&mine, "I", v), KIN_OK);
            assert_int_equal(msgpack_pack_int64(&pk, v), 0);
            if (v >= INT_MIN && v <= INT_MAX) {
                assert_int_equal(kin_pack(&mine, "i", (int)v), KIN_OK);
                assert_int_equal(msgpack_pack_int(&pk, (int)v), 0);
            }
            if (v >= 0) {
                assert_int_equal(kin_pack(&mine, "U", (uint64_t)v), KIN_OK);
                assert_int_equal(msgpack_pack_uint64(&pk, (uint64_t)v), 0);
            }
            if (v >= 0 && v <= UINT_MAX) {
                assert_int_equal(kin_pack(&mine, "u", (unsigned)v), KIN_OK);
                assert_int_equal(msgpack_pack_unsigned_int(&pk, (unsigned)v),
                                 0);
            }
        } else if (i < n + 12) {
            uint32_t c = counts[(i - n) % 6];
            bool map = i - n >= 6;
            assert_int_equal(kin_pack(&mine, map ? "M" : "a", c), KIN_OK);
            assert_int_equal(
                map ? msgpack_pack_map(&pk, c) : msgpack_pack_array(&pk, c), 0);
        } else if (i < n + 17) {
            double d = ds[i - n - 12];
            assert_int_equal(kin_pack(&mine, "d", d), KIN_OK);
            assert_int_equal(msgpack_pack_double(&pk, d), 0);
        } else {
            assert_int_equal(kin_pack(&mine, "nbb", 1, 0), KIN_OK);
            assert_int_equal(msgpack_pack_nil(&pk), 0);
            assert_int_equal(msgpack_pack_true(&pk), 0);
            assert_int_equal(msgpack_pack_false(&pk), 0);
        }
        assert_int_equal(mine.len, theirs.len);
        assert_memory_equal(mine.data, theirs.data, mine.len);
        kin_buf_release(&mine);
        kin_buf_release(&theirs);
    }
}

static void
scalars_round_trip(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "iiIIuUddbbn", INT_MIN, INT_MAX, INT64_MIN,
                              INT64_MAX, UINT_MAX, UINT64_MAX, -2.5, INFINITY,
                              42, 0),
                     KIN_OK);

    int i1 = 0, i2 = 0;
    int64_t l1 = 0, l2 = 0;
    unsigned u = 0;
    uint64_t U = 0;
    double d1 = 0, d2 = 0;
    bool t = false, f = true;
    kin_reader r;
    kin_reader_init(&r, b.data, b.len);
    assert_false(kin_reader_done(&r));
    assert_int_equal(kin_unpack(&r, "iiIIuUddbbn", &i1, &i2, &l1, &l2, &u, &U,
                                &d1, &d2, &t, &f),
                     KIN_OK);
    assert_int_equal(i1, INT_MIN);
    assert_int_equal(i2, INT_MAX);
    assert_true(l1 == INT64_MIN);
    assert_true(l2 == INT64_MAX);
    assert_int_equal(u, UINT_MAX);
    assert_true(U == UINT64_MAX);
    assert_true(d1 == -2.5);
    assert_true(isinf(d2) && d2 > 0);
    assert_true(t);
    assert_false(f);
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);
    kin_buf_release(&b);
}

static void
integers_cross_sizes_within_range(void **state)
{
    int i = 0;
    unsigned u = 0;
    int64_t l = 0;
    uint64_t U = 0;
    /* Values at each reader's limits, packed with the wider writers. */
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "IUUi", (int64_t)INT_MIN, (uint64_t)UINT_MAX,
                              (uint64_t)INT64_MAX, -7),
                     KIN_OK);
    assert_int_equal(kin_unpack_buf(b.data, b.len, "iuIU", &i, &u, &l, &U),
                     KIN_ETYPE); /* -7 is not a uint64 */
    assert_int_equal(i, INT_MIN);
    assert_int_equal(u, UINT_MAX);
    assert_true(l == INT64_MAX);
    assert_int_equal(kin_unpack_buf(b.data, b.len, "IIUI", &l, &l, &U, &l),
                     KIN_OK);
    assert_true(U == INT64_MAX);
    assert_true(l == -7);
    kin_buf_release(&b);
}

static void
strings_round_trip(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "sssSS", "hello", "", (const char *)NULL,
                              "a\0b", (size_t)3, "xyz", (size_t)2),
                     KIN_OK);

    char *hello = NULL, *empty = NULL, *nil = (char *)"sentinel";
    const char *ab = NULL, *xy = NULL;
    size_t ablen = 0, xylen = 0;
    assert_int_equal(kin_unpack_buf(b.data, b.len, "sssSS", &hello, &empty,
                                    &nil, &ab, &ablen, &xy, &xylen),
                     KIN_OK);
    assert_string_equal(hello, "hello");
    assert_false(inside(&b, hello, 1)); /* a copy, not borrowed */
    assert_non_null(empty);
    assert_string_equal(empty, "");
    assert_null(nil);
    assert_int_equal(ablen, 3);
    assert_memory_equal(ab, "a\0b", 3);
    assert_int_equal(xylen, 2);
    assert_memory_equal(xy, "xy", 2);

    /* An empty str still gives a pointer (msgpack-c's own is NULL). */
    const char *none = NULL;
    size_t nonelen = 99;
    assert_int_equal(kin_unpack_buf("\xa0", 1, "S", &none, &nonelen), KIN_OK);
    assert_non_null(none);
    assert_int_equal(nonelen, 0);
    free(hello);
    free(empty);
    kin_buf_release(&b);
}

static void
s_copy_outlives_the_input(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "s", "copied"), KIN_OK);
    char *s = NULL;
    assert_int_equal(kin_unpack_buf(b.data, b.len, "s", &s), KIN_OK);
    memset(b.data, 'X', b.len);
    kin_buf_release(&b);
    assert_string_equal(s, "copied");
    free(s);
}

static void
s_rejects_a_string_holding_nul(void **state)
{
    char *s = NULL;
    const char *p = NULL;
    size_t len = 0;
    EXPECT_UNPACK(KIN_ETYPE,
                  "\xa5"
                  "adm\0n",
                  "s", &s);
    assert_null(s);
    EXPECT_UNPACK(KIN_OK,
                  "\xa5"
                  "adm\0n",
                  "S", &p, &len);
    assert_int_equal(len, 5);
}

static void
bin_round_trip(void **state)
{
    const unsigned char bytes[] = {0, 1, 0xff, 0, 'x'};
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(
        kin_pack(&b, "BB", bytes, sizeof bytes, (const void *)NULL, (size_t)0),
        KIN_OK);
    const void *p = NULL, *q = NULL;
    size_t n = 0, m = 99;
    assert_int_equal(kin_unpack_buf(b.data, b.len, "BB", &p, &n, &q, &m),
                     KIN_OK);
    assert_int_equal(n, sizeof bytes);
    assert_memory_equal(p, bytes, sizeof bytes);
    assert_non_null(q);
    assert_int_equal(m, 0);
    kin_buf_release(&b);
}

/* msgpack_unpack references str and bin in the input, so 'S', 'B' and 'm'
 * point into it and survive the reader. */
static void
borrowed_pointers_point_into_the_input(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "SBaSBm", "top", (size_t)3, "\x01\x02",
                              (size_t)2, 2u, "inner", (size_t)5, "\x03",
                              (size_t)1, "\x92\x01\x02", (size_t)3),
                     KIN_OK);

    const char *top = NULL, *inner = NULL;
    const void *bin = NULL, *ibin = NULL, *raw = NULL;
    size_t toplen, binlen, innerlen, ibinlen, rawlen;
    uint32_t n = 0;
    kin_reader r;
    kin_reader_init(&r, b.data, b.len);
    assert_int_equal(kin_unpack(&r, "SBaSBm", &top, &toplen, &bin, &binlen, &n,
                                &inner, &innerlen, &ibin, &ibinlen, &raw,
                                &rawlen),
                     KIN_OK);
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);

    /* Exact places: each value sits right after a one-byte (str) or
     * two-byte (bin) header. */
    assert_ptr_equal(top, b.data + 1);
    assert_ptr_equal(bin, b.data + 6);
    assert_ptr_equal(inner, b.data + 10);
    assert_ptr_equal(ibin, b.data + 17);
    assert_ptr_equal(raw, b.data + 18);
    assert_true(inside(&b, raw, rawlen));
    /* Read after the reader is gone: ASan would catch zone memory. */
    assert_memory_equal(top, "top", 3);
    assert_memory_equal(bin, "\x01\x02", 2);
    assert_memory_equal(inner, "inner", 5);
    assert_memory_equal(ibin, "\x03", 1);
    assert_int_equal(rawlen, 3);
    assert_memory_equal(raw, "\x92\x01\x02", 3);

    const char *again = NULL;
    assert_int_equal(kin_unpack_buf(b.data, b.len, "S", &again, &toplen),
                     KIN_OK);
    assert_ptr_equal(again, b.data + 1);
    kin_buf_release(&b);
}

static void
large_bin_round_trip(void **state)
{
    const size_t size = 1 << 20;
    unsigned char *big = malloc(size);
    assert_non_null(big);
    for (size_t k = 0; k < size; k++)
        big[k] = (unsigned char)(k * 31 + 7);

    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "Bi", big, size, 5), KIN_OK);
    assert_int_equal(b.len, 5 + size + 1);
    assert_memory_equal(b.data, "\xc6\x00\x10\x00\x00", 5); /* bin 32 */

    const void *p = NULL;
    size_t n = 0;
    int tail = 0;
    assert_int_equal(kin_unpack_buf(b.data, b.len, "Bi", &p, &n, &tail),
                     KIN_OK);
    assert_ptr_equal(p, b.data + 5);
    assert_int_equal(n, size);
    assert_memory_equal(p, big, size);
    assert_int_equal(tail, 5);

    /* The same bin as an array element, read whole with 'm'. */
    b.len = 0;
    assert_int_equal(kin_pack(&b, "aBs", 2u, big, size, "end"), KIN_OK);
    uint32_t count = 0;
    const char *end = NULL;
    size_t endlen = 0;
    assert_int_equal(
        kin_unpack_buf(b.data, b.len, "amS", &count, &p, &n, &end, &endlen),
        KIN_OK);
    assert_int_equal(count, 2);
    assert_ptr_equal(p, b.data + 1);
    assert_int_equal(n, 5 + size);
    assert_memory_equal((const char *)p + 5, big, size);
    assert_int_equal(endlen, 3);
    assert_memory_equal(end, "end", 3);
    kin_buf_release(&b);
    free(big);
}

static void
nested_arrays_and_maps(void **state)
{
    /* {"list": [1, [20, 30]], "empty": {}, 7: nil}, 99 */
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "MsaiaiisMinI", 3u, "list", 2u, 1, 2u, 20, 30,
                              "empty", 0u, 7, (int64_t)99),
                     KIN_OK);

    uint32_t pairs = 0, list = 0, inner = 0, empty = 9;
    int one = 0, twenty = 0, thirty = 0, seven = 0, top = 0;
    const char *k1 = NULL, *k2 = NULL;
    size_t k1len = 0, k2len = 0;
    kin_reader r;
    kin_reader_init(&r, b.data, b.len);
    assert_int_equal(kin_unpack(&r, "MSaiaiiSMini", &pairs, &k1, &k1len, &list,
                                &one, &inner, &twenty, &thirty, &k2, &k2len,
                                &empty, &seven, &top),
                     KIN_OK);
    assert_int_equal(pairs, 3);
    assert_int_equal(k1len, 4);
    assert_memory_equal(k1, "list", 4);
    assert_int_equal(list, 2);
    assert_int_equal(one, 1);
    assert_int_equal(inner, 2);
    assert_int_equal(twenty, 20);
    assert_int_equal(thirty, 30);
    assert_int_equal(k2len, 5);
    assert_memory_equal(k2, "empty", 5);
    assert_int_equal(empty, 0);
    assert_int_equal(seven, 7);
    assert_int_equal(top, 99);
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);
    kin_buf_release(&b);
}

/* When a nested array's items run out, reading goes on in the one around it
 * before the next top-level object. */
static void
reading_resumes_in_the_enclosing_array(void **state)
{
    uint32_t outer = 0, inner = 0;
    int a = 0, c = 0, d = 0, e = 0;
    bool t = false;
    /* [[1, true], 3], 4, 5 */
    EXPECT_UNPACK(KIN_OK, "\x92\x92\x01\xc3\x03\x04\x05", "aaibiii", &outer,
                  &inner, &a, &t, &c, &d, &e);
    assert_int_equal(outer, 2);
    assert_int_equal(inner, 2);
    assert_int_equal(a, 1);
    assert_true(t);
    assert_int_equal(c, 3);
    assert_int_equal(d, 4);
    assert_int_equal(e, 5);
}

static void
elements_may_be_read_and_packed_across_calls(void **state)
{
    kin_buf one, parts;
    kin_buf_init(&one);
    kin_buf_init(&parts);
    assert_int_equal(kin_pack(&one, "aisni", 3u, 10, "x", 11), KIN_OK);
    /* The header's items come in later calls. */
    assert_int_equal(kin_pack(&parts, "a", 3u), KIN_OK);
    assert_int_equal(kin_pack(&parts, "i", 10), KIN_OK);
    assert_int_equal(kin_pack(&parts, "sn", "x"), KIN_OK);
    assert_int_equal(kin_pack(&parts, "i", 11), KIN_OK);
    assert_int_equal(parts.len, one.len);
    assert_memory_equal(parts.data, one.data, one.len);

    kin_reader r;
    kin_reader_init(&r, parts.data, parts.len);
    uint32_t n = 0;
    int v = 0;
    char *s = NULL;
    assert_int_equal(kin_unpack(&r, "a", &n), KIN_OK);
    assert_int_equal(n, 3);
    assert_false(kin_reader_done(&r));
    assert_int_equal(kin_unpack(&r, "i", &v), KIN_OK);
    assert_int_equal(v, 10);
    assert_int_equal(kin_unpack(&r, "s", &s), KIN_OK);
    assert_string_equal(s, "x");
    free(s);
    /* All of the array's bytes are parsed, but it is still open. */
    assert_false(kin_reader_done(&r));
    assert_int_equal(kin_unpack(&r, "n"), KIN_OK);
    assert_false(kin_reader_done(&r));
    assert_int_equal(kin_unpack(&r, "i", &v), KIN_OK);
    assert_int_equal(v, 11);
    assert_true(kin_reader_done(&r));
    assert_int_equal(kin_unpack(&r, "i", &v), KIN_ESHORT);
    kin_reader_release(&r);
    kin_buf_release(&one);
    kin_buf_release(&parts);
}

static void
reader_done_only_at_the_end(void **state)
{
    kin_reader r;
    kin_reader_init(&r, "", 0);
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);

    kin_reader_init(&r, "\x91\x01", 2);
    uint32_t n = 0;
    int v = 0;
    assert_false(kin_reader_done(&r));
    assert_int_equal(kin_unpack(&r, "a", &n), KIN_OK);
    assert_false(kin_reader_done(&r));
    assert_int_equal(kin_unpack(&r, "i", &v), KIN_OK);
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);
}

static void
empty_arrays_and_maps_hold_nothing(void **state)
{
    uint32_t a = 9, m = 9, outer = 0, inner = 9;
    int five = 0, seven = 0;
    /* [], {}, [[], 5], 7 */
    EXPECT_UNPACK(KIN_OK, "\x90\x80\x92\x90\x05\x07", "aMaaii", &a, &m, &outer,
                  &inner, &five, &seven);
    assert_int_equal(a, 0);
    assert_int_equal(m, 0);
    assert_int_equal(outer, 2);
    assert_int_equal(inner, 0);
    assert_int_equal(five, 5);
    assert_int_equal(seven, 7);
}

static void
raw_objects_pass_through_unchanged(void **state)
{
    /* x = {1: [2, 3]} */
    kin_buf x;
    kin_buf_init(&x);
    assert_int_equal(kin_pack(&x, "Miaii", 1u, 1, 2u, 2, 3), KIN_OK);
    assert_int_equal(x.len, 5);

    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(
        kin_pack(&b, "masms", x.data, x.len, 3u, "x", x.data, x.len, "tail"),
        KIN_OK);
    assert_memory_equal(b.data, x.data, x.len);

    const void *top = NULL, *nested = NULL;
    size_t toplen = 0, nestedlen = 0;
    uint32_t n = 0;
    char *s1 = NULL, *s2 = NULL;
    kin_reader r;
    kin_reader_init(&r, b.data, b.len);
    assert_int_equal(kin_unpack(&r, "masms", &top, &toplen, &n, &s1, &nested,
                                &nestedlen, &s2),
                     KIN_OK);
    assert_ptr_equal(top, b.data);
    assert_int_equal(toplen, x.len);
    assert_int_equal(n, 3);
    assert_string_equal(s1, "x");
    assert_ptr_equal(nested, b.data + x.len + 3);
    assert_int_equal(nestedlen, x.len);
    assert_memory_equal(nested, x.data, x.len);
    assert_string_equal(s2, "tail");
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);
    free(s1);
    free(s2);
    kin_buf_release(&b);
    kin_buf_release(&x);
}

/* 'm' gives the bytes as sent, even where msgpack-c would encode the value
 * differently, and finds elements behind 16- and 32-bit headers. */
static void
raw_elements_keep_their_encoding(void **state)
{
    const void *p = NULL, *q = NULL;
    size_t n = 0, m = 0;
    uint32_t count = 0;
    const char *z = NULL;
    size_t zlen = 0;

    /* [uint32 1, "z"] */
    EXPECT_UNPACK(KIN_OK,
                  "\x92\xce\x00\x00\x00\x01\xa1"
                  "z",
                  "amS", &count, &p, &n, &z, &zlen);
    assert_int_equal(n, 5);
    assert_memory_equal(p, "\xce\x00\x00\x00\x01", 5);
    assert_int_equal(zlen, 1);
    assert_memory_equal(z, "z", 1);

    /* array 16 holding 1, 2 */
    EXPECT_UNPACK(KIN_OK, "\xdc\x00\x02\x01\x02", "amm", &count, &p, &n, &q,
                  &m);
    assert_int_equal(count, 2);
    assert_int_equal(n, 1);
    assert_memory_equal(p, "\x01", 1);
    assert_int_equal(m, 1);
    assert_memory_equal(q, "\x02", 1);

    /* array 32 holding nil */
    EXPECT_UNPACK(KIN_OK, "\xdd\x00\x00\x00\x01\xc0", "am", &count, &p, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(p, "\xc0", 1);

    /* map 16 and map 32, each {"k": 7} */
    EXPECT_UNPACK(KIN_OK,
                  "\xde\x00\x01\xa1"
                  "k\x07",
                  "Mmm", &count, &p, &n, &q, &m);
    assert_int_equal(n, 2);
    assert_memory_equal(p, "\xa1k", 2);
    assert_int_equal(m, 1);
    assert_memory_equal(q, "\x07", 1);
    EXPECT_UNPACK(KIN_OK,
                  "\xdf\x00\x00\x00\x01\xa1"
                  "k\x07",
                  "Mmm", &count, &p, &n, &q, &m);
    assert_int_equal(count, 1);
    assert_memory_equal(p, "\xa1k", 2);
    assert_memory_equal(q, "\x07", 1);
}

/* Arrays closed by reading their last element, and values skipped with '?',
 * must leave 'm' at the right bytes. */
static void
raw_elements_after_closed_and_skipped_values(void **state)
{
    /* [[1, [2]], {3: 4}, "end"] */
    static const char body[] = "\x93\x92\x01\x91\x02\x81\x03\x04\xa3"
                               "end";
    uint32_t outer = 0, e0 = 0, e01 = 0;
    int one = 0, two = 0;
    const void *p = NULL;
    size_t n = 0;
    const char *s = NULL;
    size_t slen = 0;
    EXPECT_UNPACK(KIN_OK, body, "aaiaimS", &outer, &e0, &one, &e01, &two, &p,
                  &n, &s, &slen);
    assert_int_equal(outer, 3);
    assert_int_equal(two, 2);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "\x81\x03\x04", 3);
    assert_int_equal(slen, 3);
    assert_memory_equal(s, "end", 3);

    EXPECT_UNPACK(KIN_OK, body, "a?m?", &outer, &p, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "\x81\x03\x04", 3);

    /* Map keys and values skipped and read raw: {"a": [1], "b": 2} */
    EXPECT_UNPACK(KIN_OK,
                  "\x82\xa1"
                  "a\x91\x01\xa1"
                  "b\x02",
                  "M??mm", &outer, &p, &n, &s, &slen);
    assert_int_equal(n, 2);
    assert_memory_equal(p,
                        "\xa1"
                        "b",
                        2);
    assert_int_equal(slen, 1);
    assert_memory_equal(s, "\x02", 1);

    /* [[[[1]]], "x"]: three arrays close at once */
    uint32_t d1, d2, d3, d4;
    EXPECT_UNPACK(KIN_OK, "\x92\x91\x91\x91\x01\xa1x", "aaaaim", &d1, &d2, &d3,
                  &d4, &one, &p, &n);
    assert_int_equal(d1, 2);
    assert_int_equal(one, 1);
    assert_int_equal(n, 2);
    assert_memory_equal(p, "\xa1x", 2);
}

static void
question_mark_skips_whole_objects(void **state)
{
    int v = 0;
    /* [1, [2, 3]], {"k": "v"}, 5 */
    EXPECT_UNPACK(KIN_OK,
                  "\x92\x01\x92\x02\x03\x81\xa1k\xa1"
                  "v\x05",
                  "??i", &v);
    assert_int_equal(v, 5);
    /* Inside an array: skip the nested array, read the element after it. */
    uint32_t n = 0;
    EXPECT_UNPACK(KIN_OK, "\x93\x92\x01\x02\x09\x05", "a?ii", &n, &v, &v);
    assert_int_equal(v, 5);
    EXPECT_UNPACK(KIN_OK, "\x93\x92\x01\x02\x09\x05", "a?i", &n, &v);
    assert_int_equal(v, 9);
}

static void
reader_next_gives_msgpack_objects(void **state)
{
    /* {"k": [1, -2]}, 7 */
    static const char body[] = "\x81\xa1k\x92\x01\xfe\x07";
    kin_reader r;
    kin_reader_init(&r, body, sizeof body - 1);
    msgpack_object map, seven, none;
    assert_int_equal(kin_reader_next(&r, &map), KIN_OK);
    assert_int_equal(kin_reader_next(&r, &seven), KIN_OK);
    assert_int_equal(kin_reader_next(&r, &none), KIN_ESHORT);
    /* map's arrays stay valid after later reads. */
    assert_int_equal(map.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(map.via.map.size, 1);
    const msgpack_object_kv *kv = map.via.map.ptr;
    assert_int_equal(kv->key.type, MSGPACK_OBJECT_STR);
    assert_ptr_equal(kv->key.via.str.ptr, body + 2);
    assert_int_equal(kv->val.type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(kv->val.via.array.size, 2);
    assert_int_equal(kv->val.via.array.ptr[0].via.u64, 1);
    assert_int_equal(kv->val.via.array.ptr[1].type,
                     MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_int_equal(kv->val.via.array.ptr[1].via.i64, -2);
    assert_int_equal(seven.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(seven.via.u64, 7);
    kin_reader_release(&r);

    /* Inside an open map it gives the keys and values in turn. */
    kin_reader_init(&r, body, sizeof body - 1);
    uint32_t pairs = 0;
    msgpack_object key, val;
    int v = 0;
    assert_int_equal(kin_unpack(&r, "M", &pairs), KIN_OK);
    assert_int_equal(kin_reader_next(&r, &key), KIN_OK);
    assert_int_equal(key.type, MSGPACK_OBJECT_STR);
    assert_int_equal(kin_reader_next(&r, &val), KIN_OK);
    assert_int_equal(val.type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(kin_unpack(&r, "i", &v), KIN_OK);
    assert_int_equal(v, 7);
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);
}

/* msgpack-c's own packer writes into a kin_buf; kin_unpack reads it. */
static void
msgpack_packer_output_reads_back(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    msgpack_packer pk;
    kin_buf_packer(&b, &pk);
    assert_int_equal(msgpack_pack_array(&pk, 4), 0);
    assert_int_equal(msgpack_pack_int(&pk, -5), 0);
    assert_int_equal(msgpack_pack_str_with_body(&pk, "hi", 2), 0);
    assert_int_equal(msgpack_pack_float(&pk, 0.5f), 0);
    assert_int_equal(msgpack_pack_map(&pk, 1), 0);
    assert_int_equal(msgpack_pack_uint16(&pk, 1), 0);
    assert_int_equal(msgpack_pack_bin_with_body(&pk, "\x00", 1), 0);
    /* kin_pack appends after what the packer wrote. */
    assert_int_equal(kin_pack(&b, "b", 1), KIN_OK);

    uint32_t n = 0, pairs = 0;
    int v = 0;
    unsigned key = 0;
    char *s = NULL;
    double d = 0;
    const void *bin = NULL;
    size_t binlen = 0;
    bool t = false;
    assert_int_equal(kin_unpack_buf(b.data, b.len, "aisdMuBb", &n, &v, &s, &d,
                                    &pairs, &key, &bin, &binlen, &t),
                     KIN_OK);
    assert_int_equal(n, 4);
    assert_int_equal(v, -5);
    assert_string_equal(s, "hi");
    assert_true(d == 0.5);
    assert_int_equal(pairs, 1);
    assert_int_equal(key, 1);
    assert_int_equal(binlen, 1);
    assert_true(t);
    free(s);
    kin_buf_release(&b);
}

static void
d_reads_floats_and_integers(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    msgpack_packer pk;
    kin_buf_packer(&b, &pk);
    assert_int_equal(msgpack_pack_float(&pk, 1.5f), 0);
    assert_int_equal(kin_pack(&b, "diU", 0.1, -7, UINT64_MAX), KIN_OK);
    double f32 = 0, f64 = 0, neg = 0, big = 0;
    assert_int_equal(
        kin_unpack_buf(b.data, b.len, "dddd", &f32, &f64, &neg, &big), KIN_OK);
    assert_true(f32 == 1.5);
    assert_true(f64 == 0.1);
    assert_true(neg == -7.0);
    assert_true(big == (double)UINT64_MAX);
    kin_buf_release(&b);
}

static void
integer_range_checks(void **state)
{
    struct {
        char pack;
        int64_t s;
        uint64_t v;
        char read;
    } cases[] = {
        {'I', (int64_t)INT_MAX + 1, 0, 'i'},
        {'I', (int64_t)INT_MIN - 1, 0, 'i'},
        {'U', 0, (uint64_t)UINT64_MAX, 'i'},
        {'I', -1, 0, 'u'},
        {'U', 0, (uint64_t)UINT_MAX + 1, 'u'},
        {'U', 0, (uint64_t)INT64_MAX + 1, 'I'},
        {'I', -1, 0, 'U'},
        {'I', INT64_MIN, 0, 'U'},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kin_buf b;
        kin_buf_init(&b);
        char pic[2] = {cases[k].pack, 0};
        if (cases[k].pack == 'I')
            assert_int_equal(kin_pack(&b, pic, cases[k].s), KIN_OK);
        else
            assert_int_equal(kin_pack(&b, pic, cases[k].v), KIN_OK);
        kin_err e = read_one(b.data, b.len, cases[k].read);
        if (e != KIN_ETYPE)
            fail_msg("case %zu: got %d, want KIN_ETYPE", k, e);
        kin_buf_release(&b);
    }
}

static void
type_mismatches_are_etype(void **state)
{
    assert_int_equal(READ_ONE("\xa1x", 'i'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 'i'),
                     KIN_ETYPE);
    assert_int_equal(READ_ONE("\xca\x3f\xc0\x00\x00", 'I'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xc3", 'u'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xc0", 'U'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xa1x", 'd'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xc0", 'd'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\x01", 'b'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xc4\x01x", 's'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\x90", 's'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xc0", 'S'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xc4\x01x", 'S'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xa1x", 'B'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\x00", 'n'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xc2", 'n'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\x80", 'a'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\xa0", 'a'), KIN_ETYPE);
    assert_int_equal(READ_ONE("\x90", 'M'), KIN_ETYPE);
    /* Inside an array too. */
    uint32_t c;
    int i;
    EXPECT_UNPACK(KIN_ETYPE, "\x92\x01\xa1x", "aii", &c, &i, &i);

    char *s = (char *)"untouched";
    EXPECT_UNPACK(KIN_ETYPE, "\x01", "s", &s);
    assert_string_equal(s, "untouched");
}

static void
truncated_bodies_are_eshort(void **state)
{
    static const char pictures[] = "iIuUdbsSBnaMm?";
    for (const char *c = pictures; *c; c++) {
        kin_err e = read_one("", 0, *c);
        if (e != KIN_ESHORT)
            fail_msg("'%c' on an empty body: got %d", *c, e);
    }
    int i = 0;
    uint32_t c;
    assert_int_equal(READ_ONE("\xa5"
                              "ab",
                              'S'),
                     KIN_ESHORT);
    assert_int_equal(READ_ONE("\xcd\x01", 'i'), KIN_ESHORT);
    assert_int_equal(READ_ONE("\x92\x01", 'a'), KIN_ESHORT);
    assert_int_equal(READ_ONE("\x92\x01", 'm'), KIN_ESHORT);
    assert_int_equal(READ_ONE("\xc6\x00\x10\x00\x00xyz", 'B'), KIN_ESHORT);
    EXPECT_UNPACK(KIN_ESHORT, "\x01", "ii", &i, &i);
    /* After the array's items, reading goes on past the end. */
    EXPECT_UNPACK(KIN_ESHORT, "\x91\x01", "aii", &c, &i, &i);

    kin_reader r;
    msgpack_object obj;
    kin_reader_init(&r, "", 0);
    assert_int_equal(kin_reader_next(&r, &obj), KIN_ESHORT);
    kin_reader_release(&r);
}

static void
garbage_is_ebadmsg(void **state)
{
    int i = 0;
    const void *p;
    size_t n;
    uint32_t c;
    /* 0xc1 is the one byte msgpack never uses. */
    EXPECT_UNPACK(KIN_EBADMSG, "\xc1", "i", &i);
    EXPECT_UNPACK(KIN_EBADMSG, "\xc1", "?");
    EXPECT_UNPACK(KIN_EBADMSG, "\xc1", "m", &p, &n);
    EXPECT_UNPACK(KIN_EBADMSG, "\x92\x01\xc1", "a", &c);

    kin_reader r;
    kin_reader_init(&r, "\x05\xc1", 2);
    assert_int_equal(kin_unpack(&r, "i", &i), KIN_OK);
    assert_int_equal(i, 5);
    msgpack_object obj;
    assert_int_equal(kin_reader_next(&r, &obj), KIN_EBADMSG);
    kin_reader_release(&r);
}

static void
unknown_picture_characters_are_einval(void **state)
{
    int i = 0, j = 0;
    kin_reader r;
    kin_reader_init(&r, "\x01\x02", 2);
    /* Checked before reading: the reader has not moved. */
    assert_int_equal(kin_unpack(&r, "ix", &i), -EINVAL);
    assert_int_equal(kin_unpack(&r, " ", &i), -EINVAL);
    assert_int_equal(kin_unpack(&r, NULL), -EINVAL);
    assert_int_equal(i, 0);
    assert_int_equal(kin_unpack(&r, "ii", &i, &j), KIN_OK);
    assert_int_equal(i, 1);
    assert_int_equal(j, 2);
    kin_reader_release(&r);
    assert_int_equal(kin_unpack(NULL, "i", &i), -EINVAL);
    assert_int_equal(kin_unpack_buf("\x01", 1, "?z"), -EINVAL);

    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "i?", 1), -EINVAL);
    assert_int_equal(kin_pack(&b, "iz", 1), -EINVAL);
    assert_int_equal(kin_pack(&b, NULL), -EINVAL);
    assert_int_equal(b.len, 0);
    assert_int_equal(kin_pack(NULL, "i", 1), -EINVAL);
    kin_buf_release(&b);
}

/* Each failed kin_pack must leave b as it was before the call. */
static void
expect_pack_error(kin_buf *b, kin_err want, const char *picture, ...)
{
    va_list ap;
    va_start(ap, picture);
    kin_err e = kin_vpack(b, picture, ap);
    va_end(ap);
    assert_int_equal(e, want);
    assert_int_equal(b->len, 5);
    assert_memory_equal(b->data, "\xa4keep", 5);
}

static void
pack_errors_restore_the_length(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "s", "keep"), KIN_OK);

    expect_pack_error(&b, -EINVAL, "iiS", 1, 2, (const char *)NULL, (size_t)3);
    expect_pack_error(&b, -EINVAL, "sB", "abc", (const void *)NULL, (size_t)1);
#if SIZE_MAX > UINT32_MAX
    /* Rejected on the length alone: the bytes are never read. */
    expect_pack_error(&b, KIN_ETOOBIG, "iB", 1, "x", (size_t)UINT32_MAX + 1);
    expect_pack_error(&b, KIN_ETOOBIG, "S", "x", (size_t)UINT32_MAX + 1);
#endif
    /* 'm' takes exactly one well-formed object. */
    expect_pack_error(&b, -EINVAL, "im", 1, "\xc1", (size_t)1);
    expect_pack_error(&b, -EINVAL, "m", "\x01\x02", (size_t)2);
    expect_pack_error(&b, -EINVAL, "m", "\x92\x01", (size_t)2);
    expect_pack_error(&b, -EINVAL, "m", "", (size_t)0);
    expect_pack_error(&b, -EINVAL, "m", (const void *)NULL, (size_t)0);
    expect_pack_error(&b, -EINVAL, "m", (const void *)NULL, (size_t)1);
    char deep[34];
    memset(deep, 0x91, 33); /* 33 nested one-element arrays */
    deep[33] = 0x01;
    expect_pack_error(&b, KIN_ETOOBIG, "m", deep, sizeof deep);

    assert_int_equal(kin_pack(&b, "i", 7), KIN_OK);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "\xa4keep\x07", 6);
    kin_buf_release(&b);
}

static void
s_copies_are_freed_when_a_later_value_fails(void **state)
{
    /* "x", "y", 5, "z", "w" */
    static const char body[] = "\xa1x\xa1y\x05\xa1z\xa1w";
    char *a = NULL, *b = NULL, *c = NULL;
    int i = 0;
    kin_reader r;
    kin_reader_init(&r, body, sizeof body - 1);
    assert_int_equal(kin_unpack(&r, "ssin", &a, &b, &i, &c), KIN_ETYPE);
    assert_null(a);
    assert_null(b);
    assert_int_equal(i, 5); /* not an 's' copy: stays stored */
    kin_reader_release(&r);

    /* Copies from an earlier call are the caller's and stay. */
    kin_reader_init(&r, body, sizeof body - 1);
    assert_int_equal(kin_unpack(&r, "s", &a), KIN_OK);
    assert_int_equal(kin_unpack(&r, "ss", &b, &c), KIN_ETYPE);
    assert_string_equal(a, "x");
    assert_null(b);
    kin_reader_release(&r);
    free(a);

    /* The same through kin_unpack_buf, failing at the end of the body. */
    char *d = NULL, *e = NULL, *f = NULL;
    a = b = NULL;
    assert_int_equal(
        kin_unpack_buf(body, sizeof body - 1, "ss?sss", &a, &b, &d, &e, &f),
        KIN_ESHORT);
    assert_null(a);
    assert_null(b);
    assert_null(d);
    assert_null(e);
    assert_null(f);
}

static void
reader_stack_holds_sixteen_open_arrays(void **state)
{
    /* Each array is [child, k] so that none closes before its child. */
    kin_buf b;
    kin_buf_init(&b);
    for (int k = 0; k < 17; k++)
        assert_int_equal(kin_pack(&b, "a", 2u), KIN_OK);
    assert_int_equal(kin_pack(&b, "ii", 100, 101), KIN_OK);
    for (int k = 16; k > 0; k--)
        assert_int_equal(kin_pack(&b, "i", k), KIN_OK);

    kin_reader r;
    kin_reader_init(&r, b.data, b.len);
    uint32_t n = 0;
    for (int k = 0; k < 16; k++)
        assert_int_equal(kin_unpack(&r, "a", &n), KIN_OK);
    assert_int_equal(kin_unpack(&r, "a", &n), KIN_ETOOBIG);
    kin_reader_release(&r);

    /* Sixteen levels read through to the end. */
    kin_reader_init(&r, b.data + 1, b.len - 1 - 1);
    int v = 0;
    for (int k = 0; k < 16; k++)
        assert_int_equal(kin_unpack(&r, "a", &n), KIN_OK);
    assert_int_equal(kin_unpack(&r, "ii", &v, &v), KIN_OK);
    assert_int_equal(v, 101);
    for (int k = 16; k > 1; k--) {
        assert_int_equal(kin_unpack(&r, "i", &v), KIN_OK);
        assert_int_equal(v, k);
    }
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);
    kin_buf_release(&b);
}

static void
nesting_limits(void **state)
{
    /* 32 one-element arrays around 7: within msgpack-c's limit, and
     * exhausted arrays close as they open so the reader's 16 suffice. */
    char body[34];
    memset(body, 0x91, 33);
    body[32] = 0x07;
    kin_reader r;
    kin_reader_init(&r, body, 33);
    uint32_t n = 0;
    int v = 0;
    for (int k = 0; k < 32; k++)
        assert_int_equal(kin_unpack(&r, "a", &n), KIN_OK);
    assert_int_equal(kin_unpack(&r, "i", &v), KIN_OK);
    assert_int_equal(v, 7);
    assert_true(kin_reader_done(&r));
    kin_reader_release(&r);

    /* 33 is past msgpack-c's parser stack. */
    body[32] = (char)0x91;
    body[33] = 0x07;
    expect_unpack(KIN_ETOOBIG, body, 34, "a", &n);
    msgpack_object obj;
    kin_reader_init(&r, body, 34);
    assert_int_equal(kin_reader_next(&r, &obj), KIN_ETOOBIG);
    kin_reader_release(&r);
}

static void
huge_claims_are_refused_without_allocating(void **state)
{
    /* 5 bytes claiming 2^32-1 elements: msgpack-c would reserve ~100 GiB
     * (and ASan would abort); the scan refuses first. */
    uint32_t n = 0;
    EXPECT_UNPACK(KIN_ESHORT, "\xdd\xff\xff\xff\xff", "a", &n);
    EXPECT_UNPACK(KIN_ESHORT, "\xdf\xff\xff\xff\xff", "M", &n);
    EXPECT_UNPACK(KIN_ESHORT, "\x92\xdd\x7f\xff\xff\xff", "a", &n);
    EXPECT_UNPACK(KIN_EBADMSG, "\xc1", "?");
}

static void
unpack_buf_reads_and_releases(void **state)
{
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_pack(&b, "Si", "name", (size_t)4, 3), KIN_OK);
    const char *p = NULL;
    size_t n = 0;
    int v = 0;
    assert_int_equal(kin_unpack_buf(b.data, b.len, "Si", &p, &n, &v), KIN_OK);
    assert_ptr_equal(p, b.data + 1);
    assert_int_equal(n, 4);
    assert_int_equal(v, 3);
    assert_int_equal(kin_unpack_buf(b.data, b.len, "ii", &v, &v), KIN_ETYPE);
    assert_int_equal(kin_unpack_buf(b.data, b.len, "Sii", &p, &n, &v, &v),
                     KIN_ESHORT);
    kin_buf_release(&b);
}

static void
reader_release_is_null_safe_and_repeatable(void **state)
{
    kin_reader_release(NULL);
    kin_reader r;
    kin_reader_init(&r, "\x91\x01", 2);
    uint32_t n = 0;
    assert_int_equal(kin_unpack(&r, "a", &n), KIN_OK);
    kin_reader_release(&r);
    assert_true(kin_reader_done(&r));
    int v = 0;
    assert_int_equal(kin_unpack(&r, "i", &v), KIN_ESHORT);
    kin_reader_release(&r);
}

/* The reader reads scalars itself (no msgpack-c, no scratch memory) and
 * everything else through msgpack_unpack: each scalar encoding, at the
 * edges of its range, must come out as the msgpack_object msgpack_unpack
 * makes of the same bytes, str and bin pointing into the body. */
static void
check_scalar_like_msgpack_c(const char *bytes, size_t len)
{
    kin_reader r;
    kin_reader_init(&r, bytes, len);
    msgpack_object ours;
    assert_int_equal(kin_reader_next(&r, &ours), KIN_OK);
    assert_true(kin_reader_done(&r));
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 256));
    msgpack_object theirs;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(bytes, len, &off, &zone, &theirs),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    assert_int_equal(ours.type, theirs.type);
    switch (ours.type) {
    case MSGPACK_OBJECT_BOOLEAN:
        assert_int_equal(ours.via.boolean, theirs.via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        assert_true(ours.via.u64 == theirs.via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        assert_true(ours.via.i64 == theirs.via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        assert_memory_equal(&ours.via.f64, &theirs.via.f64, sizeof(double));
        break;
    case MSGPACK_OBJECT_STR:
        assert_int_equal(ours.via.str.size, theirs.via.str.size);
        assert_ptr_equal(ours.via.str.ptr, theirs.via.str.ptr);
        break;
    case MSGPACK_OBJECT_BIN:
        assert_int_equal(ours.via.bin.size, theirs.via.bin.size);
        /* An empty bin's pointer is msgpack-c's whim (one byte into its
         * header): nothing may be read there. */
        if (ours.via.bin.size)
            assert_ptr_equal(ours.via.bin.ptr, theirs.via.bin.ptr);
        break;
    default:
        break;
    }
    msgpack_zone_destroy(&zone);
    kin_reader_release(&r);
}

static void
scalars_read_as_msgpack_c_reads_them(void **state)
{
    (void)state;
    static const int64_t ints[] = {
        0,         1,      127,    128,          255,
        256,       65535,  65536,  4294967295LL, 4294967296LL,
        INT64_MAX, -1,     -32,    -33,          -128,
        -129,      -32768, -32769, INT32_MIN,    (int64_t)INT32_MIN - 1,
        INT64_MIN};
    static const size_t sizes[] = {0, 1, 31, 32, 255, 256, 65535, 65536};
    char *big = calloc(1, 70000);
    assert_non_null(big);
    for (int pass = 0; pass < 6; pass++) {
        size_t count = pass < 2   ? sizeof ints / sizeof *ints
                       : pass < 4 ? sizeof sizes / sizeof *sizes
                                  : 1;
        for (size_t i = 0; i < count; i++) {
            kin_buf b;
            kin_buf_init(&b);
            msgpack_packer pk;
            kin_buf_packer(&b, &pk);
            if (pass == 0)
                msgpack_pack_int64(&pk, ints[i]);
            else if (pass == 1)
                msgpack_pack_uint64(&pk, (uint64_t)ints[i]);
            else if (pass == 2)
                msgpack_pack_str_with_body(&pk, big, sizes[i]);
            else if (pass == 3)
                msgpack_pack_bin_with_body(&pk, big, sizes[i]);
            else if (pass == 4) {
                msgpack_pack_nil(&pk);
                msgpack_pack_true(&pk);
                msgpack_pack_false(&pk);
                msgpack_pack_float(&pk, 1.5f);
                msgpack_pack_double(&pk, -0.25);
                msgpack_pack_double(&pk, NAN);
            }
            if (pass < 4) {
                check_scalar_like_msgpack_c(b.data, b.len);
            } else if (pass == 4) {
                /* Six objects: each by itself. */
                size_t at = 0;
                for (int k = 0; k < 6; k++) {
                    size_t n = kin__msgpack_scan(b.data + at, b.len - at);
                    check_scalar_like_msgpack_c(b.data + at, n);
                    at += n;
                }
            }
            kin_buf_release(&b);
        }
    }
    /* Signed encodings of values that are not negative, and the widest
     * unsigned one of a small value: msgpack-c calls them positive. */
    static const char *odd[] = {"\xd0\x05", "\xd1\x00\x05",
                                "\xd2\x7f\xff\xff\xff",
                                "\xd3\x00\x00\x00\x00\x00\x00\x00\x00",
                                "\xcf\x00\x00\x00\x00\x00\x00\x00\x07"};
    static const size_t odd_len[] = {2, 3, 5, 9, 9};
    for (size_t i = 0; i < 5; i++)
        check_scalar_like_msgpack_c(odd[i], odd_len[i]);
    free(big);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_release_frees_and_resets),
        cmocka_unit_test(buf_moves_from_fixed_storage_to_heap),
        cmocka_unit_test(mp_header_reads_each_width_and_refuses_short_ones),
        cmocka_unit_test(mp_int_reads_every_encoding),
        cmocka_unit_test(pack_writes_msgpack_bytes),
        cmocka_unit_test(str_and_bin_headers_are_msgpack_c_ones),
        cmocka_unit_test(scalar_bytes_are_msgpack_c_ones),
        cmocka_unit_test(scalars_round_trip),
        cmocka_unit_test(integers_cross_sizes_within_range),
        cmocka_unit_test(strings_round_trip),
        cmocka_unit_test(s_copy_outlives_the_input),
        cmocka_unit_test(s_rejects_a_string_holding_nul),
        cmocka_unit_test(bin_round_trip),
        cmocka_unit_test(borrowed_pointers_point_into_the_input),
        cmocka_unit_test(large_bin_round_trip),
        cmocka_unit_test(nested_arrays_and_maps),
        cmocka_unit_test(reading_resumes_in_the_enclosing_array),
        cmocka_unit_test(elements_may_be_read_and_packed_across_calls),
        cmocka_unit_test(reader_done_only_at_the_end),
        cmocka_unit_test(empty_arrays_and_maps_hold_nothing),
        cmocka_unit_test(raw_objects_pass_through_unchanged),
        cmocka_unit_test(raw_elements_keep_their_encoding),
        cmocka_unit_test(raw_elements_after_closed_and_skipped_values),
        cmocka_unit_test(question_mark_skips_whole_objects),
        cmocka_unit_test(reader_next_gives_msgpack_objects),
        cmocka_unit_test(msgpack_packer_output_reads_back),
        cmocka_unit_test(d_reads_floats_and_integers),
        cmocka_unit_test(integer_range_checks),
        cmocka_unit_test(type_mismatches_are_etype),
        cmocka_unit_test(truncated_bodies_are_eshort),
        cmocka_unit_test(garbage_is_ebadmsg),
        cmocka_unit_test(unknown_picture_characters_are_einval),
        cmocka_unit_test(pack_errors_restore_the_length),
        cmocka_unit_test(s_copies_are_freed_when_a_later_value_fails),
        cmocka_unit_test(reader_stack_holds_sixteen_open_arrays),
        cmocka_unit_test(nesting_limits),
        cmocka_unit_test(huge_claims_are_refused_without_allocating),
        cmocka_unit_test(unpack_buf_reads_and_releases),
        cmocka_unit_test(reader_release_is_null_safe_and_repeatable),
        cmocka_unit_test(scalars_read_as_msgpack_c_reads_them),
    };
    return harness_run_group(tests);
}
