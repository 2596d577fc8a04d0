/* The process's one ZMQ context, created on first use (sockets of every
 * node in the process share it); ended only by a child context on its way
 * out (kin__zctx_end). */
#ifndef KIN_ROUTER_ZCTX_H
#define KIN_ROUTER_ZCTX_H

#include <stdbool.h>

void *kin__zctx(void);

/* Ends the context once every socket in it is closed, waiting up to
 * timeout_ms: a socket closed with a linger delivers what it still holds
 * first (a stopping context's last log records). Returns whether it ended;
 * if not (a socket still open), the process is about to exit anyway. For
 * a process's exit path only: the context is not made again. */
bool kin__zctx_end(int timeout_ms);

#endif
