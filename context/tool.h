/* The kin command's one internal interface (cli/ may include nothing else
 * but the public headers, include/kin/; tests/check_layers.sh checks it).
 * It holds what the command needs and programs using kin do not: where
 * contexts put their sockets, a stand-alone log forwarder (kin
 * log-forwarder) and CURVE key generation (kin keygen). Everything else
 * the command does goes through the public API (kin/monitor.h, kin/logs.h,
 * kin/node.h). Only public types appear here. */
#ifndef KIN_CONTEXT_TOOL_H
#define KIN_CONTEXT_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/err.h>

/* The per-user runtime directory where contexts bind their ipc sockets,
 * "<pid>-<id>.sock" ($XDG_RUNTIME_DIR/kin or /tmp/kin-UID), created 0700
 * if missing. Errors: -EACCES (not ours or not 0700), -ENAMETOOLONG,
 * -errno. */
kin_err kin__tool_runtime_dir(char *out, size_t size);

/* The socket file of context id of process pid in dir (the runtime
 * directory): dir + "/<pid>-<id>.sock". Returns snprintf's result. */
int kin__tool_sock_path(char *out, size_t size, const char *dir, int pid,
                        uint32_t id);

/* Whether something listens on the socket file at path (a connect that
 * does not wait); true when it cannot tell. */
bool kin__tool_sock_listening(const char *path);

/* Whether a file name in the runtime directory is a context's socket,
 * "<pid>-<id>.sock"; sets *pid and *id when it is. */
bool kin__tool_sock_parse(const char *name, int *pid, uint32_t *id);

/* A new CURVE key pair as "PUBLIC:SECRET" in Z85 (size >= 82). Errors:
 * -ENOTSUP (this libzmq has no CURVE), -ENOSPC (size too small). */
kin_err kin__tool_keygen(char *out, size_t size);

/* Whether text is a key pair as kin__tool_keygen makes them. */
bool kin__tool_key_valid(const char *text);

/* Whether endpoint is a tcp:// one (those need the tree's key). */
bool kin__tool_endpoint_is_tcp(const char *endpoint);

/* A log forwarder on its own (as a master embeds one): publishers connect
 * to backend, subscribers to frontend. */
typedef struct kin__tool_fwd kin__tool_fwd;

typedef struct kin__tool_fwd_opts {
    const char *backend;  /* publishers connect: XSUB binds here */
    const char *frontend; /* subscribers connect: XPUB binds here */
    int hwm;              /* 0: 10000 */
    bool lossless;        /* wait for slow subscribers, never drop */
    /* The tree's key ("PUBLIC:SECRET"), required for tcp:// endpoints. */
    const char *curve_key;
    int history; /* recent records kept; 0: 1000, < 0: none */
} kin__tool_fwd_opts;

/* Binds both sides (wildcards resolved: read them back below) and starts
 * the forwarder thread. Errors: -EINVAL (bad key, tcp without a key),
 * -errno from ZMQ (e.g. -EADDRINUSE), -ENOMEM. */
kin_err kin__tool_fwd_start(kin__tool_fwd **out, const kin__tool_fwd_opts *o);
const char *kin__tool_fwd_backend(const kin__tool_fwd *f);
const char *kin__tool_fwd_frontend(const kin__tool_fwd *f);
/* Records forwarded to subscribers so far. */
uint64_t kin__tool_fwd_records(const kin__tool_fwd *f);
/* Stops the thread, closes the sockets; *f = NULL. NULL-safe. */
void kin__tool_fwd_stop(kin__tool_fwd **f);

#endif
