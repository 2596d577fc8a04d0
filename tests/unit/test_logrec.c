/* Tests of the log record codec and views (logs/logrec.c, logs/logfmt.c):
 * a record survives encoding with every field type and edge value, limits
 * cut strings instead of failing, every truncation or corruption of a
 * record is refused without reading past it, and the human line and JSON
 * escape what could break them. */
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

#include "core/buf.h"
#include "logs/logrec.h"

#include "integration/harness.h"

/* Encodes a whole message (head + body) into a fresh exact-size buffer. */
static char *
encode(size_t *len, int level, const char *msg, const kin_field *fields,
       kin_logrec_kind kind)
{
    /* Started in inline storage as the publisher does: long messages move
     * the body to the heap on the way. */
    char mem[KIN__LOG_BODY_INLINE];
    kin_buf b;
    kin__buf_init_fixed(&b, mem, sizeof mem);
    assert_int_equal(kin__logrec_body(&b, level, 1700000000123456789ull, 42, 7,
                                      "dir/file.c", 99, msg, (size_t)-1,
                                      fields),
                     KIN_OK);
    char head[KIN__LOG_HEAD_MAX];
    size_t hl = kin__logrec_head(head, kin__log_bucket(level), 5, 0xdeadbeef, 1,
                                 3, "worker", 6, 4321, kind, 2);
    char *out = malloc(hl + b.len);
    memcpy(out, head, hl);
    memcpy(out + hl, b.data, b.len);
    *len = hl + b.len;
    kin_buf_release(&b);
    return out;
}

static void
roundtrip_keeps_every_field(void **state)
{
    kin_field f[] = {KIN_F("i", -5),
                     KIN_F("big", (int64_t)INT64_MIN),
                     KIN_F("u", (unsigned long long)UINT64_MAX),
                     KIN_F("u16", (unsigned)60000),
                     KIN_F("d", -0.125),
                     KIN_F("t", (_Bool)1),
                     KIN_F("f", (_Bool)0),
                     KIN_F("s", "hé \"q\""),
                     KIN_FSTRN("nul", "a\0b", 3),
                     KIN_FSTR("none", NULL),
                     KIN__FEND};
    size_t len;
    char *m = encode(&len, KIN_LOG_WARNING, "hello", f, KIN_LOGREC_LOG);
    assert_int_equal(m[0], 'W');
    kin__logdec d;
    kin__logdec_init(&d);
    const kin_logrec *r;
    assert_int_equal(kin__logdec_decode(&d, m, len, &r), KIN_OK);
    assert_int_equal(r->kind, KIN_LOGREC_LOG);
    assert_int_equal(r->level, KIN_LOG_WARNING);
    assert_int_equal(r->seq, 5);
    assert_int_equal(r->pub, 0xdeadbeef);
    assert_int_equal(r->pub_ctx, 1);
    assert_int_equal(r->ctx, 3);
    assert_string_equal(r->ctx_name, "worker");
    assert_int_equal(r->pid, 4321);
    assert_int_equal(r->drops, 2);
    assert_int_equal(r->task, 7);
    assert_true(r->wall_ns == 1700000000123456789ull);
    assert_int_equal(r->mono_ns, 42);
    assert_string_equal(r->file, "dir/file.c");
    assert_int_equal(r->line, 99);
    assert_string_equal(r->msg, "hello");
    assert_int_equal(r->n_fields, 10);
    assert_int_equal(r->fields[0].type, KIN_FIELD_INT);
    assert_int_equal(r->fields[0].v.i, -5);
    assert_true(r->fields[1].v.i == INT64_MIN);
    assert_int_equal(r->fields[2].type, KIN_FIELD_UINT);
    assert_true(r->fields[2].v.u == UINT64_MAX);
    assert_int_equal(r->fields[3].type, KIN_FIELD_INT); /* fits int64 */
    assert_int_equal(r->fields[3].v.i, 60000);
    assert_true(r->fields[4].v.d == -0.125);
    assert_true(r->fields[5].v.b);
    assert_false(r->fields[6].v.b);
    assert_string_equal(r->fields[7].v.s.p, "hé \"q\"");
    assert_int_equal(r->fields[8].v.s.len, 3);
    assert_memory_equal(r->fields[8].v.s.p, "a\0b", 3);
    assert_int_equal(r->fields[9].type, KIN_FIELD_NIL);
    kin__logdec_fini(&d);
    free(m);
}

static void
long_strings_are_cut_not_refused(void **state)
{
    size_t n = KIN__LOG_STR_MAX + 500;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = 0;
    kin_field f[KIN__LOG_FIELDS_MAX + 5];
    for (int i = 0; i < KIN__LOG_FIELDS_MAX + 4; i++)
        f[i] = KIN_F("k", i);
    f[KIN__LOG_FIELDS_MAX + 4] = KIN__FEND;
    size_t len;
    char *m = encode(&len, KIN_LOG_INFO, big, f, KIN_LOGREC_LOG);
    kin__logdec d;
    kin__logdec_init(&d);
    const kin_logrec *r;
    assert_int_equal(kin__logdec_decode(&d, m, len, &r), KIN_OK);
    assert_int_equal(r->msg_len, KIN__LOG_STR_MAX);
    assert_int_equal(r->n_fields, KIN__LOG_FIELDS_MAX);
    kin__logdec_fini(&d);
    free(m);
    free(big);
}

static void
every_truncation_is_refused(void **state)
{
    kin_field f[] = {KIN_F("s", "text"), KIN_F("d", 2.5), KIN__FEND};
    size_t len;
    char *m = encode(&len, KIN_LOG_ERROR, "msg", f, KIN_LOGREC_LOG);
    kin__logdec d;
    kin__logdec_init(&d);
    for (size_t cut = 0; cut < len; cut++) {
        /* An exact-size copy: the sanitizers catch a read past it. */
        char *p = malloc(cut ? cut : 1);
        memcpy(p, m, cut);
        const kin_logrec *r;
        assert_int_equal(kin__logdec_decode(&d, p, cut, &r), KIN_EBADMSG);
        free(p);
    }
    kin__logdec_fini(&d);
    free(m);
}

static void
corrupt_records_never_crash(void **state)
{
    kin_field f[] = {KIN_F("s", "text"), KIN_F("n", -70000), KIN__FEND};
    size_t len;
    char *m = encode(&len, KIN_LOG_INFO, "msg", f, KIN_LOGREC_LOG);
    kin__logdec d;
    kin__logdec_init(&d);
    unsigned seed = 1;
    int accepted = 0;
    for (int round = 0; round < 20000; round++) {
        char *p = malloc(len);
        memcpy(p, m, len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            p[1 + (seed >> 8) % (len - 1)] = (char)(seed >> 16);
        }
        const kin_logrec *r;
        kin_err e = kin__logdec_decode(&d, p, len, &r);
        assert_true(e == KIN_OK || e == KIN_EBADMSG);
        if (e == KIN_OK) {
            accepted++;
            assert_non_null(r->msg);
            assert_true(r->msg_len < len);
        }
        free(p);
    }
    assert_true(accepted < 20000); /* the checks do reject things */
    kin__logdec_fini(&d);
    free(m);
}

static void
hostile_counts_are_refused(void **state)
{
    /* A map claiming 2^32-1 fields in a few bytes, and a wrong version. */
    size_t len;
    char *m = encode(&len, KIN_LOG_INFO, "m", NULL, KIN_LOGREC_LOG);
    char *p = malloc(len + 4);
    memcpy(p, m, len - 1);
    memcpy(p + len - 1, "\xdf\xff\xff\xff\xff", 5);
    kin__logdec d;
    kin__logdec_init(&d);
    const kin_logrec *r;
    assert_int_equal(kin__logdec_decode(&d, p, len + 4, &r), KIN_EBADMSG);
    memcpy(p, m, len);
    p[KIN__LOG_TOPIC_LEN + 3] = 2; /* version, after the array16 header */
    assert_int_equal(kin__logdec_decode(&d, p, len, &r), KIN_EBADMSG);
    memcpy(p, m, len);
    p[0] = 'x'; /* not a level topic */
    assert_int_equal(kin__logdec_decode(&d, p, len, &r), KIN_EBADMSG);
    kin__logdec_fini(&d);
    free(p);
    free(m);
}

static void
json_escapes_and_repairs(void **state)
{
    kin_field f[] = {KIN_F("q", "a\"b\\c\n\x01"), KIN_F("nan", NAN),
                     KIN_F("whole", 3.0), KIN_FSTRN("bad", "\xff\xc3", 2),
                     KIN__FEND};
    size_t len;
    char *m = encode(&len, KIN_LOG_INFO, "caf\xc3\xa9", f, KIN_LOGREC_LOG);
    kin__logdec d;
    kin__logdec_init(&d);
    const kin_logrec *r;
    assert_int_equal(kin__logdec_decode(&d, m, len, &r), KIN_OK);
    kin_buf b;
    kin_buf_init(&b);
    assert_int_equal(kin_logrec_json(r, &b), KIN_OK);
    assert_true(!strncmp(b.data, "{\"version\":1,\"kind\":\"log\",", 26));
    assert_non_null(strstr(b.data, "\"msg\":\"caf\xc3\xa9\""));
    assert_non_null(strstr(b.data, "\"q\":\"a\\\"b\\\\c\\n\\u0001\""));
    assert_non_null(strstr(b.data, "\"nan\":null"));
    assert_non_null(strstr(b.data, "\"whole\":3.0"));
    assert_non_null(strstr(b.data, "\"bad\":\"\\ufffd\\ufffd\""));
    assert_non_null(strstr(b.data, "\"level\":\"info\""));
    assert_non_null(strstr(b.data, "\"time\":\"2023-11-14T22:13:20.123456Z\""));
    assert_null(strchr(b.data, '\n'));
    kin_buf_release(&b);
    kin__logdec_fini(&d);
    free(m);
}

static void
human_line_is_one_line(void **state)
{
    kin_field f[] = {KIN_F("path", "/x y"), KIN_F("n", 3), KIN__FEND};
    size_t len;
    char *m = encode(&len, KIN_LOG_ERROR, "two\nlines", f, KIN_LOGREC_LOG);
    kin__logdec d;
    kin__logdec_init(&d);
    const kin_logrec *r;
    assert_int_equal(kin__logdec_decode(&d, m, len, &r), KIN_OK);
    char line[512];
    size_t need = kin_logrec_format(r, 0, line, sizeof line);
    assert_int_equal(need, strlen(line));
    assert_null(strchr(line, '\n'));
    assert_null(strchr(line, '\033'));
    assert_non_null(strstr(line, "ERROR"));
    assert_non_null(strstr(line, "worker[4321]"));
    assert_non_null(strstr(line, "3:7"));
    assert_non_null(strstr(line, "file.c:99"));
    assert_non_null(strstr(line, "two\\x0alines"));
    assert_non_null(strstr(line, "path=\"/x y\" n=3"));
    /* Measuring, and cutting to a small buffer, agree with the whole. */
    assert_int_equal(kin_logrec_format(r, 0, NULL, 0), need);
    char small[16];
    assert_int_equal(kin_logrec_format(r, 0, small, sizeof small), need);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_non_null(strchr(line, ' '));
    char colored[1024];
    kin_logrec_format(r, KIN_LOGFMT_COLOR, colored, sizeof colored);
    assert_non_null(strchr(colored, '\033'));
    kin__logdec_fini(&d);
    free(m);

    kin_logrec gap = {.kind = KIN_LOGREC_GAP,
                      .level = KIN_LOG_INFO,
                      .ctx = 3,
                      .ctx_name = "worker",
                      .seq = 10,
                      .count = 5};
    kin_logrec_format(&gap, 0, line, sizeof line);
    assert_string_equal(
        line, "!! lost 5 info records from ctx 3 (worker), seq 10..14");
}

static void
levels_parse_and_bucket(void **state)
{
    int l;
    assert_int_equal(kin_log_level_parse("warn", &l), KIN_OK);
    assert_int_equal(l, KIN_LOG_WARNING);
    assert_int_equal(kin_log_level_parse("ERROR", &l), KIN_OK);
    assert_int_equal(l, KIN_LOG_ERROR);
    assert_int_equal(kin_log_level_parse("25", &l), KIN_OK);
    assert_int_equal(l, 25);
    assert_int_equal(kin_log_level_parse("loud", &l), -EINVAL);
    assert_int_equal(kin_log_level_parse("", &l), -EINVAL);
    assert_int_equal(kin__log_bucket(5), 0);
    assert_int_equal(kin__log_bucket(KIN_LOG_INFO), 1);
    assert_int_equal(kin__log_bucket(25), 1);
    assert_int_equal(kin__log_bucket(99), 4);
    assert_int_equal(kin__log_letter_bucket('E'), 3);
    assert_int_equal(kin__log_letter_bucket(KIN__LOG_SYNC_TOPIC), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_keeps_every_field),
        cmocka_unit_test(long_strings_are_cut_not_refused),
        cmocka_unit_test(every_truncation_is_refused),
        cmocka_unit_test(corrupt_records_never_crash),
        cmocka_unit_test(hostile_counts_are_refused),
        cmocka_unit_test(json_escapes_and_repairs),
        cmocka_unit_test(human_line_is_one_line),
        cmocka_unit_test(levels_parse_and_bucket),
    };
    return harness_run_group(tests);
}
