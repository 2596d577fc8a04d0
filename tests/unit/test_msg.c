/* Tests of the message envelope (core/msg.c): the exact 24-byte wire header,
 * every way a header or body is rejected, the size limit, and dead messages.
 * Network input must fail with its specific code and leave outputs alone. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <kin/msg.h>
#include <kin/pack.h>

#include "core/msg_internal.h"
#include "integration/harness.h"

/* Every flag the protocol defines; a new flag is a wire change and belongs
 * here too. */
#define KNOWN_FLAGS (KIN_MSG_DEAD | KIN_MSG_CANCEL | KIN_MSG_ERROR)

/* A header every decoder accepts: magic, version 1, no flags, zero ids. */
static void
valid_header(uint8_t h[KIN_HDR_SIZE])
{
    memset(h, 0, KIN_HDR_SIZE);
    h[0] = 'K';
    h[1] = 'N';
    h[2] = 1;
}

static uint8_t sentinel_body[1];

/* A message whose header fields hold a recognisable pattern, so a decoder
 * that writes anything on error is caught. */
static kin_msg
sentinel_msg(void)
{
    kin_msg m;
    memset(&m, 0xA5, sizeof m);
    m.flags = 0x5A5A5A5A;
    m.dst = 11;
    m.src = 22;
    m.auth = 33;
    m.handle = 44;
    m.reply_to = 55;
    m.len = 66;
    m.body = sentinel_body;
    return m;
}

/* Decodes hdr[0..len) expecting err, with the output message unchanged. */
static void
expect_reject(const uint8_t *hdr, size_t len, kin_err err)
{
    kin_msg m = sentinel_msg();
    kin_msg before = m;
    kin_err got = kin__msg_header_decode(&m, hdr, len);
    if (got != err)
        fail_msg("len %zu: got %s, expected %s", len, kin_err_name(got),
                 kin_err_name(err));
    assert_memory_equal(&m, &before, sizeof m);

    /* The full decoder fails the same way and leaves *out alone. */
    kin_msg *out = (kin_msg *)&before;
    assert_int_equal(kin__msg_decode(&out, hdr, len, "x", 1, 0), err);
    assert_ptr_equal(out, &before);
}

static void
round_trip(const kin_msg *in)
{
    uint8_t wire[KIN_HDR_SIZE];
    kin__msg_header_encode(in, wire);
    kin_msg out = sentinel_msg();
    assert_int_equal(kin__msg_header_decode(&out, wire, sizeof wire), KIN_OK);
    assert_int_equal(out.flags, in->flags);
    assert_int_equal(out.dst, in->dst);
    assert_int_equal(out.src, in->src);
    assert_int_equal(out.auth, in->auth);
    assert_int_equal(out.handle, in->handle);
    assert_int_equal(out.reply_to, in->reply_to);
    /* The header decoder does not touch the body. */
    assert_int_equal(out.len, 66);
    assert_ptr_equal(out.body, sentinel_body);
}

static void
header_round_trips_extreme_values(void **state)
{
    const uint32_t ext[] = {0, 1, 0x80000000u, UINT32_MAX};
    const uint32_t flags[] = {0, KIN_MSG_DEAD, KIN_MSG_CANCEL, KIN_MSG_ERROR,
                              KNOWN_FLAGS};
    kin_msg m = {0};

    /* Every field at each extreme while the others hold the opposite one,
     * so a field leaking into its neighbour shows. */
    for (size_t f = 0; f < 5; f++) {
        for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
            for (size_t fl = 0; fl < sizeof flags / sizeof *flags; fl++) {
                uint32_t other = ext[i] ? 0 : UINT32_MAX;
                m.flags = flags[fl];
                m.dst = f == 0 ? ext[i] : other;
                m.src = f == 1 ? ext[i] : other;
                m.auth = f == 2 ? ext[i] : other;
                m.handle = f == 3 ? ext[i] : other;
                m.reply_to = f == 4 ? ext[i] : other;
                round_trip(&m);
            }
        }
    }
    m = (kin_msg){.dst = UINT32_MAX,
                  .src = UINT32_MAX,
                  .auth = UINT32_MAX,
                  .handle = UINT32_MAX,
                  .reply_to = UINT32_MAX,
                  .flags = KNOWN_FLAGS};
    round_trip(&m);
    m = (kin_msg){0};
    round_trip(&m);
}

static void
header_layout_is_fixed(void **state)
{
    kin_msg m = {.flags = KIN_MSG_DEAD | KIN_MSG_ERROR,
                 .dst = 0x04030201u,
                 .src = 0x14131211u,
                 .auth = 0x24232221u,
                 .handle = 0x34333231u,
                 .reply_to = 0xF4F3F2F1u};
    const uint8_t expect[KIN_HDR_SIZE] = {
        'K',  'N',  1,    0x05, /* magic, version, flags */
        0x01, 0x02, 0x03, 0x04, /* dst */
        0x11, 0x12, 0x13, 0x14, /* src */
        0x21, 0x22, 0x23, 0x24, /* auth */
        0x31, 0x32, 0x33, 0x34, /* handle */
        0xF1, 0xF2, 0xF3, 0xF4, /* reply_to */
    };
    uint8_t wire[KIN_HDR_SIZE + 1];
    memset(wire, 0xEE, sizeof wire);
    kin__msg_header_encode(&m, wire);
    assert_memory_equal(wire, expect, KIN_HDR_SIZE);
    assert_int_equal(wire[KIN_HDR_SIZE], 0xEE); /* wrote exactly 24 bytes */
    assert_int_equal(KIN_HDR_SIZE, 24);

    /* Decoding those bytes yields the same fields. */
    kin_msg d = sentinel_msg();
    assert_int_equal(kin__msg_header_decode(&d, expect, sizeof expect), KIN_OK);
    assert_int_equal(d.flags, KIN_MSG_DEAD | KIN_MSG_ERROR);
    assert_int_equal(KIN_MSG_DEAD, 0x01);
    assert_int_equal(KIN_MSG_CANCEL, 0x02);
    assert_int_equal(KIN_MSG_ERROR, 0x04);
    assert_int_equal(d.dst, 0x04030201u);
    assert_int_equal(d.src, 0x14131211u);
    assert_int_equal(d.auth, 0x24232221u);
    assert_int_equal(d.handle, 0x34333231u);
    assert_int_equal(d.reply_to, 0xF4F3F2F1u);
}

static void
frames_under_four_bytes_are_short(void **state)
{
    uint8_t h[KIN_HDR_SIZE];
    valid_header(h);
    expect_reject(h, 0, KIN_ESHORT);
    expect_reject(NULL, 0, KIN_ESHORT);
    for (size_t len = 1; len < 4; len++)
        expect_reject(h, len, KIN_ESHORT);

    /* Even bytes that are not a kin header: too short to tell. */
    memset(h, 0xFF, sizeof h);
    for (size_t len = 0; len < 4; len++)
        expect_reject(h, len, KIN_ESHORT);
}

static void
wrong_magic_is_rejected(void **state)
{
    uint8_t h[KIN_HDR_SIZE];
    const uint8_t bad[][2] = {{'N', 'K'}, {'K', 0},   {0, 'N'},
                              {0, 0},     {'k', 'n'}, {0xFF, 0xFF}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        valid_header(h);
        h[0] = bad[i][0];
        h[1] = bad[i][1];
        expect_reject(h, sizeof h, KIN_EBADMAGIC);
    }
}

static void
wrong_version_is_rejected(void **state)
{
    uint8_t h[KIN_HDR_SIZE];
    const uint8_t bad[] = {0, 2, 3, 0x81, 0xFF};
    for (size_t i = 0; i < sizeof bad; i++) {
        valid_header(h);
        h[2] = bad[i];
        expect_reject(h, sizeof h, KIN_EBADVERSION);
    }
}

static void
truncated_header_is_short(void **state)
{
    uint8_t h[KIN_HDR_SIZE];
    valid_header(h);
    for (size_t len = 4; len < KIN_HDR_SIZE; len++)
        expect_reject(h, len, KIN_ESHORT);
}

static void
overlong_header_is_bad(void **state)
{
    uint8_t h[64];
    memset(h, 0, sizeof h);
    valid_header(h);
    const size_t lens[] = {KIN_HDR_SIZE + 1, KIN_HDR_SIZE + 2, 32, 64};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++)
        expect_reject(h, lens[i], KIN_EBADMSG);
}

static void
unknown_flags_are_rejected(void **state)
{
    uint8_t h[KIN_HDR_SIZE];
    for (int bit = 0; bit < 8; bit++) {
        if (KNOWN_FLAGS & (1u << bit))
            continue;
        valid_header(h);
        h[3] = (uint8_t)(1u << bit);
        expect_reject(h, sizeof h, KIN_EBADMSG);
        h[3] |= KIN_MSG_DEAD; /* a known flag does not excuse an unknown */
        expect_reject(h, sizeof h, KIN_EBADMSG);
    }
    valid_header(h);
    h[3] = 0xFF;
    expect_reject(h, sizeof h, KIN_EBADMSG);

    /* The known ones pass. */
    kin_msg m = sentinel_msg();
    h[3] = KNOWN_FLAGS;
    assert_int_equal(kin__msg_header_decode(&m, h, sizeof h), KIN_OK);
    assert_int_equal(m.flags, KNOWN_FLAGS);
}

static void
decode_builds_a_message(void **state)
{
    uint8_t h[KIN_HDR_SIZE];
    kin_msg src = {.flags = KIN_MSG_CANCEL,
                   .dst = 5,
                   .src = 6,
                   .auth = 7,
                   .handle = KIN_HANDLE_CALL,
                   .reply_to = KIN_HANDLE_DYNAMIC};
    kin__msg_header_encode(&src, h);
    char body[] = "\x93\x01\x02\x03";

    kin_msg *m = NULL;
    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, 4, 0), KIN_OK);
    assert_non_null(m);
    assert_int_equal(m->flags, KIN_MSG_CANCEL);
    assert_int_equal(m->dst, 5);
    assert_int_equal(m->src, 6);
    assert_int_equal(m->auth, 7);
    assert_int_equal(m->handle, KIN_HANDLE_CALL);
    assert_int_equal(m->reply_to, KIN_HANDLE_DYNAMIC);
    assert_int_equal(m->len, 4);
    /* The body is a copy: the frame may be released after decoding. */
    assert_ptr_not_equal(m->body, body);
    memset(body, 0, sizeof body);
    assert_memory_equal(m->body, "\x93\x01\x02\x03", 4);
    kin_msg_destroy(&m);

    /* An empty body frame is fine. */
    assert_int_equal(kin__msg_decode(&m, h, sizeof h, NULL, 0, 0), KIN_OK);
    assert_int_equal(m->len, 0);
    assert_int_equal(m->dst, 5);
    kin_msg_destroy(&m);
}

static void
decode_enforces_max_size(void **state)
{
    uint8_t h[KIN_HDR_SIZE];
    valid_header(h);
    uint8_t body[101];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)i;
    kin_msg sentinel;
    kin_msg *m = &sentinel;

    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, 101, 100),
                     KIN_ETOOBIG);
    assert_ptr_equal(m, &sentinel);
    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, 2, 1), KIN_ETOOBIG);
    assert_ptr_equal(m, &sentinel);

    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, 100, 100), KIN_OK);
    assert_ptr_not_equal(m, &sentinel);
    assert_int_equal(m->len, 100);
    assert_memory_equal(m->body, body, 100);
    kin_msg_destroy(&m);

    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, 1, 1), KIN_OK);
    kin_msg_destroy(&m);

    /* A bad header is reported before the size. */
    m = &sentinel;
    h[2] = 9;
    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, 101, 100),
                     KIN_EBADVERSION);
    assert_ptr_equal(m, &sentinel);
}

static void
max_size_zero_means_default(void **state)
{
    uint8_t h[KIN_HDR_SIZE];
    valid_header(h);
    size_t big = (size_t)KIN_MAX_MSG_DEFAULT + 1;
    assert_int_equal(KIN_MAX_MSG_DEFAULT, 64u * 1024 * 1024);
    uint8_t *body = malloc(big);
    assert_non_null(body);
    memset(body, 0x5C, big);
    kin_msg sentinel;
    kin_msg *m = &sentinel;

    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, big, 0),
                     KIN_ETOOBIG);
    assert_ptr_equal(m, &sentinel);

    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, big - 1, 0),
                     KIN_OK);
    assert_int_equal(m->len, KIN_MAX_MSG_DEFAULT);
    assert_int_equal(m->body[0], 0x5C);
    assert_int_equal(m->body[KIN_MAX_MSG_DEFAULT - 1], 0x5C);
    kin_msg_destroy(&m);

    /* An explicit limit above the default is honoured. */
    assert_int_equal(kin__msg_decode(&m, h, sizeof h, body, big, big), KIN_OK);
    assert_int_equal(m->len, big);
    kin_msg_destroy(&m);
    free(body);
}

/* Decodes body as a message to handle with flags under limit max; returns
 * the result and frees what was decoded. */
static kin_err
decode_as(uint32_t handle, uint32_t flags, const kin_buf *body, size_t max)
{
    uint8_t h[KIN_HDR_SIZE];
    valid_header(h);
    h[3] = (uint8_t)flags;
    h[16] = (uint8_t)handle;
    h[17] = (uint8_t)(handle >> 8);
    kin_msg *m = NULL;
    kin_err e = kin__msg_decode(&m, h, sizeof h, body->data, body->len, max);
    if (e == KIN_OK) {
        assert_non_null(m);
        assert_int_equal(m->len, body->len);
        assert_int_equal(m->handle, handle);
    }
    kin_msg_destroy(&m);
    return e;
}

/* A call request: function name and caller, then one bin of n bytes. */
static void
call_body(kin_buf *b, size_t n)
{
    static uint8_t data[200];
    kin_buf_release(b);
    assert_int_equal(kin_pack(b, "suB", "t.echo", 7u, data, n), KIN_OK);
}

/* The limit is on the payload: a call's name and caller and msgpack's
 * headers come on top, so an argument of exactly the limit passes and one
 * byte more does not. */
static void
limit_applies_to_the_payload(void **state)
{
    kin_buf b = {0};
    call_body(&b, 100);
    assert_true(b.len > 100);
    assert_int_equal(decode_as(KIN_HANDLE_CALL, 0, &b, 100), KIN_OK);
    call_body(&b, 101);
    assert_int_equal(decode_as(KIN_HANDLE_CALL, 0, &b, 100), KIN_ETOOBIG);

    /* Elsewhere the name and caller are payload like any string and
     * number: only the bin's header is envelope. */
    call_body(&b, 100);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 100), KIN_ETOOBIG);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 107), KIN_OK);
    assert_int_equal(decode_as(KIN_HANDLE_CALL, KIN_MSG_ERROR, &b, 100),
                     KIN_ETOOBIG);
    kin_buf_release(&b);
    static uint8_t data[200];
    assert_int_equal(kin_pack(&b, "B", data, (size_t)100), KIN_OK);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 100), KIN_OK);
    kin_buf_release(&b);
    assert_int_equal(kin_pack(&b, "B", data, (size_t)101), KIN_OK);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 100), KIN_ETOOBIG);
    kin_buf_release(&b);

    /* Headers of arrays and strings nested inside are envelope too. */
    assert_int_equal(kin_pack(&b, "a", 50u), KIN_OK);
    for (int i = 0; i < 50; i++)
        assert_int_equal(kin_pack(&b, "S", "xy", (size_t)2), KIN_OK);
    assert_int_equal(b.len, 3 + 50 * 3);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 100), KIN_OK);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 99), KIN_ETOOBIG);
    kin_buf_release(&b);

    /* Numbers count in full: 12 uint64 are 108 bytes of payload. */
    for (int i = 0; i < 12; i++)
        assert_int_equal(kin_pack(&b, "U", UINT64_MAX), KIN_OK);
    assert_int_equal(b.len, 108);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 100), KIN_ETOOBIG);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 108), KIN_OK);
    kin_buf_release(&b);

    /* Bytes that are not msgpack (a bin claiming more than there is) are
     * all payload. */
    uint8_t raw[102] = {0xc4, 0xff};
    kin_buf r = {.data = (char *)raw, .len = sizeof raw};
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &r, 101), KIN_ETOOBIG);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &r, 102), KIN_OK);
}

/* The envelope has a ceiling: a body of empty strings is all envelope, and
 * it passes only while it stays within KIN_MSG_ENVELOPE_MAX of the limit. */
static void
envelope_is_capped(void **state)
{
    kin_buf b = {0};
    size_t strings = KIN_MSG_ENVELOPE_MAX + 100 - 5;
    assert_int_equal(kin_pack(&b, "a", (uint32_t)strings), KIN_OK);
    for (size_t i = 0; i < strings; i++)
        assert_int_equal(kin_pack(&b, "s", ""), KIN_OK);
    assert_int_equal(b.len, KIN_MSG_ENVELOPE_MAX + 100);
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 100), KIN_OK);
    assert_int_equal(kin_pack(&b, "s", ""), KIN_OK); /* one past the array */
    assert_int_equal(decode_as(KIN_HANDLE_DYNAMIC, 0, &b, 100), KIN_ETOOBIG);
    kin_buf_release(&b);
}

static void
new_messages_start_zeroed(void **state)
{
    kin_msg *m = NULL;
    assert_int_equal(kin_msg_new_copy(&m, NULL, 0), KIN_OK);
    assert_non_null(m);
    assert_int_equal(m->len, 0);
    assert_int_equal(m->flags, 0);
    assert_int_equal(m->dst, 0);
    assert_int_equal(m->src, 0);
    assert_int_equal(m->auth, 0);
    assert_int_equal(m->handle, 0);
    assert_int_equal(m->reply_to, 0);
    kin_msg_destroy(&m);

    assert_int_equal(kin_msg_new_copy(&m, "abc", 3), KIN_OK);
    assert_int_equal(m->len, 3);
    assert_memory_equal(m->body, "abc", 3);
    kin_msg_destroy(&m);

    assert_int_equal(kin_msg_new(&m, 16), KIN_OK);
    assert_int_equal(m->len, 16);
    assert_int_equal(m->dst, 0);
    assert_int_equal(m->handle, 0);
    memset(m->body, 1, 16); /* the body is writable, 16 bytes */
    kin_msg_destroy(&m);

    /* A size that cannot be allocated fails cleanly. */
    kin_msg sentinel;
    m = &sentinel;
    assert_int_equal(kin_msg_new(&m, SIZE_MAX), -ENOMEM);
    assert_ptr_equal(m, &sentinel);
}

static kin_msg
call_from(uint32_t src, uint32_t reply_to)
{
    return (kin_msg){.dst = 3,
                     .src = src,
                     .auth = src,
                     .handle = KIN_HANDLE_CALL,
                     .reply_to = reply_to};
}

static void
dead_message_answers_the_sender(void **state)
{
    kin_msg orig = call_from(42, 1234);
    kin_msg *d = NULL;
    assert_int_equal(
        kin__msg_new_dead(&d, &orig, 0, KIN_ENOROUTE, "no route to 3"), KIN_OK);
    assert_int_equal(d->flags, KIN_MSG_DEAD);
    assert_int_equal(d->dst, 42);
    assert_int_equal(d->handle, 1234);
    assert_int_equal(d->src, 0);
    /* A dead message never asks for a reply, so two dead peers cannot
     * bounce dead messages between them. */
    assert_int_equal(d->reply_to, 0);

    kin_err reason = KIN_OK;
    const char *text = NULL;
    size_t tlen = 0;
    assert_int_equal(kin_msg_dead_reason(d, &reason, &text, &tlen), KIN_OK);
    assert_int_equal(reason, KIN_ENOROUTE);
    assert_int_equal(tlen, strlen("no route to 3"));
    assert_memory_equal(text, "no route to 3", tlen);
    /* The text points into the body. */
    assert_true(text >= (const char *)d->body &&
                text + tlen <= (const char *)d->body + d->len);

    /* The body on the wire is the msgpack array [-30001, "no route to 3"]. */
    const uint8_t wire[] = {0x92, 0xD1, 0x8A, 0xCF, 0xAD, 'n', 'o', ' ', 'r',
                            'o',  'u',  't',  'e',  ' ',  't', 'o', ' ', '3'};
    assert_int_equal(d->len, sizeof wire);
    assert_memory_equal(d->body, wire, sizeof wire);

    /* Output parameters are optional. */
    assert_int_equal(kin_msg_dead_reason(d, NULL, NULL, NULL), KIN_OK);
    kin_msg_destroy(&d);

    /* A dead message survives the wire. */
    assert_int_equal(
        kin__msg_new_dead(&d, &orig, 7, KIN_EREFUSED, "refused by 7"), KIN_OK);
    uint8_t h[KIN_HDR_SIZE];
    kin__msg_header_encode(d, h);
    kin_msg *r = NULL;
    assert_int_equal(kin__msg_decode(&r, h, sizeof h, d->body, d->len, 0),
                     KIN_OK);
    assert_int_equal(r->flags, KIN_MSG_DEAD);
    assert_int_equal(r->src, 7);
    assert_int_equal(r->dst, 42);
    assert_int_equal(kin_msg_dead_reason(r, &reason, &text, &tlen), KIN_OK);
    assert_int_equal(reason, KIN_EREFUSED);
    assert_int_equal(tlen, strlen("refused by 7"));
    assert_memory_equal(text, "refused by 7", tlen);
    kin_msg_destroy(&r);
    kin_msg_destroy(&d);
}

static void
dead_message_default_text_is_strerror(void **state)
{
    const kin_err codes[] = {KIN_EPEERGONE, KIN_ETOOBIG, KIN_ENOHANDLE,
                             -ENOENT};
    kin_msg orig = call_from(9, KIN_HANDLE_DYNAMIC + 1);
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        kin_msg *d = NULL;
        assert_int_equal(kin__msg_new_dead(&d, &orig, 1, codes[i], NULL),
                         KIN_OK);
        kin_err reason = KIN_OK;
        const char *text = NULL;
        size_t tlen = 0;
        assert_int_equal(kin_msg_dead_reason(d, &reason, &text, &tlen), KIN_OK);
        assert_int_equal(reason, codes[i]);
        const char *want = kin_strerror(codes[i]);
        assert_int_equal(tlen, strlen(want));
        assert_memory_equal(text, want, tlen);
        assert_int_equal(d->handle, KIN_HANDLE_DYNAMIC + 1);
        kin_msg_destroy(&d);
    }
}

static void
dead_reason_of_live_message_is_einval(void **state)
{
    kin_msg *d = NULL;
    kin_msg orig = call_from(2, 3);
    assert_int_equal(kin__msg_new_dead(&d, &orig, 1, KIN_ETIMEOUT, NULL),
                     KIN_OK);
    /* The same well-formed body, without the flag, is not a dead message. */
    kin_err reason = 12345;
    d->flags = 0;
    assert_int_equal(kin_msg_dead_reason(d, &reason, NULL, NULL), -EINVAL);
    d->flags = KIN_MSG_CANCEL;
    assert_int_equal(kin_msg_dead_reason(d, &reason, NULL, NULL), -EINVAL);
    assert_int_equal(reason, 12345);
    kin_msg_destroy(&d);
}

static void
dead_reason_rejects_garbage_body(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"", 0},                              /* empty */
        {"\xc1", 1},                          /* never-used msgpack byte */
        {"\x91\xff", 2},                      /* [-1]: too short */
        {"\x93\xff\xa1x\xc0", 5},             /* [-1, "x", nil]: too long */
        {"\x92\xa1x\xff", 4},                 /* ["x", -1]: swapped */
        {"\x92\xff\xff", 3},                  /* [-1, -1]: text not a string */
        {"\x92\xff\xa5xy", 5},                /* string runs off the end */
        {"\x92\xff", 2},                      /* array runs off the end */
        {"\x82\xff\xa1x\x01\x02", 6},         /* a map, not an array */
        {"\xa5hello", 6},                     /* a bare string */
        {"\x92\xcb\0\0\0\0\0\0\0\0\xa0", 11}, /* code is a float */
        {"\x92\xff\xa1x\x00", 5},             /* trailing bytes */
        /* The fuzzer's finds: codes that truncate to KIN_OK or positive. */
        {"\x92\xd3\xff\xff\xff\xff\0\0\0\0\xa0", 11}, /* -2^32 */
        {"\x92\x05\xa0", 3},                          /* positive code */
        {"\x92\x00\xa0", 3},                          /* KIN_OK */
        {"\xdd\xff\xff\xff\xff", 5},                  /* huge array claim */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kin_msg *m = NULL;
        assert_int_equal(kin_msg_new_copy(&m, bad[i].bytes, bad[i].len),
                         KIN_OK);
        m->flags = KIN_MSG_DEAD;
        kin_err got = kin_msg_dead_reason(m, NULL, NULL, NULL);
        if (got != KIN_EBADMSG)
            fail_msg("case %zu: got %s", i, kin_err_name(got));
        kin_msg_destroy(&m);
    }
}

static void
destroy_is_null_safe_and_nulls(void **state)
{
    kin_msg_destroy(NULL);
    kin_msg *m = NULL;
    kin_msg_destroy(&m);
    assert_null(m);
    assert_int_equal(kin_msg_new(&m, 8), KIN_OK);
    assert_non_null(m);
    kin_msg_destroy(&m);
    assert_null(m);
    kin_msg_destroy(&m); /* a second destroy is harmless */
    assert_null(m);
}

/* --- bodies kin does not copy ----------------------------------------------
 */

static int released;

static void
count_release(void *hint)
{
    released++;
    free(hint);
}

static void
outside_body_is_released_with_its_message(void **state)
{
    released = 0;
    char *body = malloc(5);
    memcpy(body, "hello", 5);
    kin_msg *m = NULL;
    assert_int_equal(kin__msg_new_outside(&m, body, 5, count_release, body),
                     KIN_OK);
    assert_ptr_equal(m->body, body); /* not copied */
    assert_int_equal(m->len, 5);
    assert_int_equal(m->flags | m->dst | m->src | m->handle, 0);
    assert_int_equal(released, 0);
    kin_msg_destroy(&m);
    assert_int_equal(released, 1);
}

/* What a zero-copy send does: zmq holds the message while it writes the
 * body, and the owner may destroy it first. */
static void
held_message_lives_until_the_last_holder(void **state)
{
    released = 0;
    char *body = malloc(3);
    kin_msg *m = NULL;
    assert_int_equal(kin__msg_new_outside(&m, body, 3, count_release, body),
                     KIN_OK);
    kin__msg_hold(m);
    kin_msg *zmq_side = m;
    kin_msg_destroy(&m);
    assert_int_equal(released, 0);
    memset(zmq_side->body, 'z', zmq_side->len); /* still there (ASan) */
    kin__msg_unhold(zmq_side);
    assert_int_equal(released, 1);
    /* The other order: the holder lets go first. */
    assert_int_equal(kin_msg_new_copy(&m, "abc", 3), KIN_OK);
    kin__msg_hold(m);
    kin__msg_unhold(m);
    assert_memory_equal(m->body, "abc", 3);
    kin_msg_destroy(&m);
}

static void
decode_outside_keeps_the_body_or_leaves_it(void **state)
{
    kin_msg h = {.flags = 0, .dst = 3, .src = 4, .handle = 1000};
    uint8_t hdr[KIN_HDR_SIZE];
    kin__msg_header_encode(&h, hdr);
    released = 0;
    char *body = malloc(16);
    memset(body, 0xc0, 16); /* msgpack nil x 16 */
    kin_msg *m = NULL;
    assert_int_equal(kin__msg_decode_outside(&m, hdr, sizeof hdr, body, 16, 0,
                                             count_release, body),
                     KIN_OK);
    assert_ptr_equal(m->body, body);
    assert_int_equal(m->dst, 3);
    assert_int_equal(m->handle, 1000);
    kin_msg_destroy(&m);
    assert_int_equal(released, 1);
    /* Refused: too big, or a bad header. The body stays the caller's and
     * nothing is released. */
    released = 0;
    body = malloc(16);
    memset(body, 0xc0, 16);
    assert_int_equal(kin__msg_decode_outside(&m, hdr, sizeof hdr, body, 16, 8,
                                             count_release, body),
                     KIN_ETOOBIG);
    assert_int_equal(
        kin__msg_decode_outside(&m, hdr, 3, body, 16, 0, count_release, body),
        KIN_ESHORT);
    assert_null(m);
    assert_int_equal(released, 0);
    free(body);
}

static void
big_buffers_are_taken_small_ones_copied(void **state)
{
    kin_buf b = {0};
    assert_int_equal(kin_pack(&b, "B", "xy", (size_t)2), KIN_OK);
    char *small = b.data;
    kin_msg *m = NULL;
    assert_int_equal(kin__msg_from_buf(&m, &b), KIN_OK);
    assert_ptr_not_equal(m->body, small);
    assert_ptr_equal(b.data, small); /* still the buffer's */
    assert_memory_equal(m->body, small, b.len);
    kin_msg_destroy(&m);
    kin_buf_release(&b);

    size_t len = KIN__MSG_OUTSIDE_MIN;
    char *payload = malloc(len);
    memset(payload, 'p', len);
    assert_int_equal(kin_pack(&b, "B", payload, len), KIN_OK);
    char *big = b.data;
    size_t big_len = b.len;
    assert_int_equal(kin__msg_from_buf(&m, &b), KIN_OK);
    assert_ptr_equal(m->body, big); /* taken, not copied */
    assert_int_equal(m->len, big_len);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    kin_buf_release(&b); /* frees nothing: the message has it */
    const void *p;
    size_t n;
    assert_int_equal(kin_msg_unpack(m, "B", &p, &n), KIN_OK);
    assert_int_equal(n, len);
    assert_memory_equal(p, payload, len);
    kin_msg_destroy(&m); /* ASan: freed once, here */
    free(payload);
}

/* Messages made on one thread and freed on another (a reply made by the
 * broker, destroyed by its caller) go back to the block cache
 * (core/block_cache.c) from many threads at once: no block may ever be handed
 * to two owners. Each thread keeps messages stamped with its own pattern
 * alive while the others make and free theirs, checks them, then passes
 * them on to be checked and freed by the next thread. */
enum { CT_THREADS = 4, CT_HOLD = 32, CT_ROUNDS = 3000 };

typedef struct ct_box {
    pthread_mutex_t mu;
    kin_msg *q[CT_THREADS * CT_HOLD * 2];
    int len;
} ct_box;

static ct_box ct_boxes[CT_THREADS];
static atomic_int ct_bad;

static void
ct_stamp(kin_msg *m, int t, int r, int i)
{
    uint8_t v = (uint8_t)(t * 61 + r * 7 + i);
    memset(m->body, v, m->len);
    m->dst = (uint32_t)t;
    m->handle = (uint32_t)r;
    m->reply_to = (uint32_t)i;
}

static void
ct_check(const kin_msg *m)
{
    uint8_t v = (uint8_t)(m->dst * 61 + m->handle * 7 + m->reply_to);
    for (size_t k = 0; k < m->len; k++)
        if (m->body[k] != v) {
            atomic_fetch_add(&ct_bad, 1);
            return;
        }
}

static void *
ct_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    kin_msg *held[CT_HOLD] = {NULL};
    ct_box *next = &ct_boxes[(t + 1) % CT_THREADS], *mine = &ct_boxes[t];
    for (int r = 0; r < CT_ROUNDS; r++) {
        for (int i = 0; i < CT_HOLD; i++) {
            if (held[i]) {
                ct_check(held[i]);
                pthread_mutex_lock(&next->mu);
                if (next->len < (int)(sizeof next->q / sizeof next->q[0]))
                    next->q[next->len++] = held[i];
                else
                    kin_msg_destroy(&held[i]);
                pthread_mutex_unlock(&next->mu);
                held[i] = NULL;
            }
            /* Sizes on both sides of the cached block's. */
            size_t len = (size_t)((r * 13 + i * 29) % 420);
            if (kin_msg_new(&held[i], len) == KIN_OK)
                ct_stamp(held[i], t, r, i);
        }
        pthread_mutex_lock(&mine->mu);
        int n = mine->len;
        kin_msg *got[sizeof mine->q / sizeof mine->q[0]];
        memcpy(got, mine->q, (size_t)n * sizeof got[0]);
        mine->len = 0;
        pthread_mutex_unlock(&mine->mu);
        for (int k = 0; k < n; k++) {
            ct_check(got[k]);
            kin_msg_destroy(&got[k]);
        }
    }
    for (int i = 0; i < CT_HOLD; i++) {
        if (held[i])
            ct_check(held[i]);
        kin_msg_destroy(&held[i]);
    }
    return NULL;
}

static void
messages_freed_on_other_threads_are_never_shared(void **state)
{
    (void)state;
    pthread_t th[CT_THREADS];
    for (int t = 0; t < CT_THREADS; t++)
        pthread_mutex_init(&ct_boxes[t].mu, NULL);
    for (int t = 0; t < CT_THREADS; t++)
        assert_int_equal(
            pthread_create(&th[t], NULL, ct_thread, (void *)(intptr_t)t), 0);
    for (int t = 0; t < CT_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < CT_THREADS; t++) {
        for (int k = 0; k < ct_boxes[t].len; k++) {
            ct_check(ct_boxes[t].q[k]);
            kin_msg_destroy(&ct_boxes[t].q[k]);
        }
        pthread_mutex_destroy(&ct_boxes[t].mu);
    }
    assert_int_equal(atomic_load(&ct_bad), 0);
}

/* A thread that takes blocks from the shared list and ends gives them
 * back: 30 times, the main thread fills the shared list and a new thread
 * makes and frees one message and ends; the process's memory stays where
 * it was (a thread that kept the list it took would leave ~390 KiB). */
static long
vm_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

static void *
one_message(void *unused)
{
    (void)unused;
    kin_msg *m = NULL;
    if (kin_msg_new(&m, 100) == KIN_OK)
        memset(m->body, 1, m->len);
    kin_msg_destroy(&m);
    return NULL;
}

static void
exiting_threads_give_their_blocks_back(void **state)
{
    (void)state;
    enum { MANY = 1200, ROUNDS = 30 };
    kin_msg **ms = calloc(MANY, sizeof *ms);
    assert_non_null(ms);
    long before = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < MANY; i++)
            assert_int_equal(kin_msg_new(&ms[i], 100), KIN_OK);
        for (int i = 0; i < MANY; i++)
            kin_msg_destroy(&ms[i]);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, one_message, NULL), 0);
        pthread_join(th, NULL);
        if (round == 1)
            before = vm_rss_kib(); /* stacks and arenas are made by now */
    }
    long after = vm_rss_kib();
    free(ms);
    assert_true(before > 0);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* ASan keeps no blocks (and quarantines freed memory), TSan maps shadow
     * memory for what the threads touch: RSS says nothing there. */
    (void)after;
#else
    assert_true(after - before < 4096);
#endif
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_round_trips_extreme_values),
        cmocka_unit_test(header_layout_is_fixed),
        cmocka_unit_test(frames_under_four_bytes_are_short),
        cmocka_unit_test(wrong_magic_is_rejected),
        cmocka_unit_test(wrong_version_is_rejected),
        cmocka_unit_test(truncated_header_is_short),
        cmocka_unit_test(overlong_header_is_bad),
        cmocka_unit_test(unknown_flags_are_rejected),
        cmocka_unit_test(decode_builds_a_message),
        cmocka_unit_test(decode_enforces_max_size),
        cmocka_unit_test(max_size_zero_means_default),
        cmocka_unit_test(limit_applies_to_the_payload),
        cmocka_unit_test(envelope_is_capped),
        cmocka_unit_test(new_messages_start_zeroed),
        cmocka_unit_test(dead_message_answers_the_sender),
        cmocka_unit_test(dead_message_default_text_is_strerror),
        cmocka_unit_test(dead_reason_of_live_message_is_einval),
        cmocka_unit_test(dead_reason_rejects_garbage_body),
        cmocka_unit_test(destroy_is_null_safe_and_nulls),
        cmocka_unit_test(outside_body_is_released_with_its_message),
        cmocka_unit_test(held_message_lives_until_the_last_holder),
        cmocka_unit_test(decode_outside_keeps_the_body_or_leaves_it),
        cmocka_unit_test(big_buffers_are_taken_small_ones_copied),
        cmocka_unit_test(messages_freed_on_other_threads_are_never_shared),
        cmocka_unit_test(exiting_threads_give_their_blocks_back),
    };
    return harness_run_group(tests);
}
