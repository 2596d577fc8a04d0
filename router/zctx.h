/* The process's one ZMQ context, created on first use and never terminated
 * (sockets of every node in the process share it). */
#ifndef KIN_ROUTER_ZCTX_H
#define KIN_ROUTER_ZCTX_H

void *kin__zctx(void);

#endif
