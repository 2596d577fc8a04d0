/* The message envelope and its wire codec.
 *
 * On the wire a message is two ZMQ frames (after any routing frame): a fixed
 * 24-byte little-endian header and a msgpack body. See docs/protocol.md. */
#ifndef KIN_MSG_H
#define KIN_MSG_H

#include <kin/defs.h>
#include <kin/err.h>

#define KIN_MAGIC 0x4E4Bu /* "KN" as little-endian bytes */
#define KIN_PROTO_VERSION 1u
#define KIN_HDR_SIZE 24u
/* The default limit on a message's payload: the body without its
 * envelope, which is the headers msgpack puts before strings, binaries,
 * exts, arrays and maps, and a call request's function name and caller
 * id. Numbers, nil and booleans count in full; a body that is not msgpack
 * is all payload. A body may exceed the limit by its envelope, up to
 * KIN_MSG_ENVELOPE_MAX bytes in all; the 24-byte header frame is not
 * counted. So a call may take one binary argument of exactly the limit. */
#define KIN_MAX_MSG_DEFAULT (64u << 20)  /* 64 MiB */
#define KIN_MSG_ENVELOPE_MAX (64u << 10) /* 64 KiB */

/* Reserved handles (below KIN_HANDLE_DYNAMIC). */
enum kin_handle {
    KIN_HANDLE_HELLO = 1,       /* child -> parent: link is up */
    KIN_HANDLE_CALL = 2,        /* call a function by name */
    KIN_HANDLE_CANCEL = 3,      /* cancel a running call task */
    KIN_HANDLE_MONITOR = 4,     /* monitor queries */
    KIN_HANDLE_ADD_ROUTE = 5,   /* a subtree appeared */
    KIN_HANDLE_DEL_ROUTE = 6,   /* a subtree disappeared */
    KIN_HANDLE_ALLOCATE_ID = 7, /* ask the master for a block of ids */
    KIN_HANDLE_SHUTDOWN = 8,    /* parent -> child: shut down */
    KIN_HANDLE_PING = 9,        /* echo */
    /* A process outside the tree asks a master's join endpoint for an id
     * (kin_node_opts.join); only on that endpoint, never routed. */
    KIN_HANDLE_JOIN = 24,
    KIN_HANDLE_DYNAMIC = 1000, /* first dynamically allocated handle */
};

enum kin_msg_flag {
    KIN_MSG_DEAD = 1u << 0,   /* body is [code, reason]: delivery failed */
    KIN_MSG_CANCEL = 1u << 1, /* reserved */
    KIN_MSG_ERROR = 1u << 2,  /* call reply: [code, message, ctx, fn] */
};

/* A message. Header fields are plain data; body is len bytes (not
 * NUL-terminated) that live exactly as long as the message: in the same
 * allocation, or, for a big body kin received or packed, the frame or
 * buffer it arrived in, which kin does not copy. Pointers into the body
 * (kin_msg_unpack's 'S', 'B' and 'm') are valid until kin_msg_destroy.
 * Created with kin_msg_new*, released with kin_msg_destroy; whoever holds
 * the pointer owns it. */
typedef struct kin_msg {
    uint32_t flags;
    uint32_t dst;      /* destination context id */
    uint32_t src;      /* sending context id */
    uint32_t auth;     /* context id whose authority the message carries */
    uint32_t handle;   /* handle at the destination */
    uint32_t reply_to; /* handle at src for replies, 0 for none */
    size_t len;
    uint8_t *body;
    void *local; /* scratch for the layer holding the message; not sent */
} kin_msg;

/* A new message with an uninitialised body of len bytes; header fields zero.
 * Errors: -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_msg_new(kin_msg **out, size_t len);

/* A new message whose body is a copy of len bytes at body (body may be NULL
 * when len is 0). Errors: -ENOMEM. Any thread. */
KIN_EXPORT kin_err kin_msg_new_copy(kin_msg **out, const void *body,
                                    size_t len);

/* Frees *m (NULL-safe) and sets *m to NULL. */
KIN_EXPORT void kin_msg_destroy(kin_msg **m);

/* Reads the reason of a dead message. text (optional) receives a pointer
 * into m's body, text_len its length (not NUL-terminated). Errors:
 * -EINVAL when m is not flagged dead, KIN_EBADMSG when its body is not
 * [int, str]. */
KIN_EXPORT kin_err kin_msg_dead_reason(const kin_msg *m, kin_err *reason,
                                       const char **text, size_t *text_len);

#endif
