/* Log records on the wire: the topic (level letter + context id, so that
 * PUB/SUB prefix matching filters by level and context), the msgpack
 * record split into a head written by the publisher's broker thread and a
 * body written by the logging thread, and the decoder subscribers use. */
#ifndef KIN_LOGS_LOGREC_H
#define KIN_LOGS_LOGREC_H

#include <stdbool.h>

#include <kin/logs.h>

#define KIN__LOGREC_VERSION 1
#define KIN__LOGREC_ITEMS 17 /* array items in version 1 */
#define KIN__LOG_TOPIC_LEN 5 /* level letter + context id, big-endian */
#define KIN__LOG_BUCKETS 5   /* debug, info, warning, error, critical */
#define KIN__LOG_HEAD_MAX 160
#define KIN__LOG_STR_MAX (16 * 1024) /* message and string fields */
#define KIN__LOG_KEY_MAX 128
#define KIN__LOG_FIELDS_MAX 32
/* Not a level letter: a subscription to it matches no record. The
 * forwarder subscribes to it so that a publisher knows it has received
 * the forwarder's whole subscription set when this one arrives. */
#define KIN__LOG_SYNC_TOPIC '~'
/* Not a level letter either: a subscription "H" + 16 hex digits (a
 * nonce) + spec asks the forwarder for its history (logfwd.c); the answer
 * is records behind that whole subscription, then the subscription alone. */
#define KIN__LOG_HIST_TOPIC 'H'

/* 0..4 for a level (below info: debug, and so on). */
int kin__log_bucket(int level);
/* The lowest level of a bucket (INT_MIN for debug). */
int kin__log_bucket_floor(int bucket);
/* The level a bucket's synthetic records carry (10, 20 ... 50). */
int kin__log_bucket_level(int bucket);
char kin__log_letter(int bucket);
/* The bucket of a topic's first byte, or -1. */
int kin__log_letter_bucket(unsigned char c);
void kin__log_topic(unsigned char out[KIN__LOG_TOPIC_LEN], int bucket,
                    uint32_t ctx);

/* Inline storage that fits ordinary record bodies, for kin__buf_init_fixed
 * (core/buf.h): the logging thread then allocates nothing. */
#define KIN__LOG_BODY_INLINE 1024

/* Appends the body (items 9..16: level, wall_ns, mono_ns, task, file,
 * line, msg, fields) to b. fields: KIN_FIELD_END-terminated, or NULL.
 * Errors: -ENOMEM (b holds part of a body then: drop it). */
kin_err kin__logrec_body(kin_buf *b, int level, uint64_t wall_ns,
                         uint64_t mono_ns, uint32_t task, const char *file,
                         int line, const char *msg, size_t msg_len,
                         const kin_field *fields);

/* Writes topic + array header + items 0..8 (version, seq, pub, pub_ctx,
 * ctx, name, pid, kind, drops) into out (at least KIN__LOG_HEAD_MAX
 * bytes); returns the length. */
size_t kin__logrec_head(char *out, int bucket, uint64_t seq, uint32_t pub,
                        uint32_t pub_ctx, uint32_t ctx, const char *name,
                        size_t name_len, int pid, kin_logrec_kind kind,
                        uint64_t drops);

/* Decodes one message (topic included). The record and its strings live
 * in d until the next decode or fini. */
typedef struct kin__logdec {
    char *arena;
    size_t arena_cap;
    kin_field *fields;
    size_t fields_cap;
    kin_logrec rec;
} kin__logdec;

void kin__logdec_init(kin__logdec *d);
void kin__logdec_fini(kin__logdec *d);
/* Errors: KIN_EBADMSG (not a version-1 record), -ENOMEM. */
kin_err kin__logdec_decode(kin__logdec *d, const void *data, size_t len,
                           const kin_logrec **out);

#endif
