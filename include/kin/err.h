/* kin's error codes. Every fallible call returns a kin_err: KIN_OK (0) on
 * success, -errno for system errors, or one of kin's own codes below, which
 * sit far below errno's range so the two never collide. */
#ifndef KIN_ERR_H
#define KIN_ERR_H

#include <kin/defs.h>

/* X(name, value, message) */
#define KIN_ERR_MAP(X)                                                         \
    X(NOROUTE, -30001, "no route to destination")                              \
    X(PEERGONE, -30002, "peer gone")                                           \
    X(TIMEOUT, -30003, "timed out")                                            \
    X(CANCELLED, -30004, "cancelled")                                          \
    X(REFUSED, -30005, "refused by policy")                                    \
    X(BADMSG, -30006, "malformed message")                                     \
    X(BADMAGIC, -30007, "bad magic in message header")                         \
    X(BADVERSION, -30008, "unsupported protocol version")                      \
    X(SHORT, -30009, "truncated frame")                                        \
    X(TOOBIG, -30010, "message too large")                                     \
    X(NOHANDLE, -30011, "unknown handle")                                      \
    X(NOFUNC, -30012, "no such function")                                      \
    X(REMOTE, -30013, "remote error")                                          \
    X(CLOSED, -30014, "closed")                                                \
    X(TYPE, -30015, "type mismatch")                                           \
    X(SHUTDOWN, -30016, "shutting down")                                       \
    X(SPAWN, -30017, "child failed to start")                                  \
    X(EXISTS, -30018, "already exists")                                        \
    X(EMERGENCY, -30019, "emergency stop")                                     \
    X(NOPROVIDER, -30020, "no provider of the service")                        \
    X(BUSY, -30021, "every provider busy")

typedef enum kin_err {
    KIN_OK = 0,
#define KIN__ERR_ENUM(name, value, msg) KIN_E##name = value,
    KIN_ERR_MAP(KIN__ERR_ENUM)
#undef KIN__ERR_ENUM
} kin_err;

/* A human-readable description of err: "success" for KIN_OK, kin's own
 * message for kin codes, strerror() for -errno codes, "unknown error"
 * (without the number) otherwise. The string is static. Any thread. */
KIN_EXPORT const char *kin_strerror(int err);

/* The symbolic name of err ("KIN_ETIMEOUT", "ENOENT", "KIN_OK"); static
 * string, "KIN_EUNKNOWN" for values kin does not know. Any thread. */
KIN_EXPORT const char *kin_err_name(int err);

#endif
