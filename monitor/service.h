/* The MONITOR service of a context (answered on the broker thread). The
 * router starts it with every node: the one place the router calls into
 * monitor/, through these two functions. */
#ifndef KIN_MONITOR_SERVICE_H
#define KIN_MONITOR_SERVICE_H

#include <kin/node.h>

kin_err kin__monitor_start(kin_node *n);
void kin__monitor_free(kin_node *n);

#endif
