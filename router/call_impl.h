/* The RPC layer's hooks into a node's life (call.c, pool.c). */
#ifndef KIN_ROUTER_CALL_IMPL_H
#define KIN_ROUTER_CALL_IMPL_H

#include <kin/call.h>

/* Registers CALL and CANCEL and starts `workers` worker threads. */
kin_err kin__calls_start(kin_node *n, int workers);
/* Stops taking calls, cancels running ones and joins the workers. */
void kin__calls_stop(kin_node *n);
void kin__calls_free(kin_node *n);
/* The worker pool's size. */
int kin__calls_workers(kin_node *n);

#endif
