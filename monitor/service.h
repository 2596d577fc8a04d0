/* The MONITOR service of a context (answered on the broker thread): the
 * context assembly (context/) starts it with every node, before the
 * router starts, and frees it once the router has stopped. */
#ifndef KIN_MONITOR_SERVICE_H
#define KIN_MONITOR_SERVICE_H

#include <kin/node.h>

kin_err kin__monitor_start(kin_node *n);
/* Waits for the threads answering stack requests; no new ones start. Before
 * the router stops (they reply through it). */
void kin__monitor_stop(kin_node *n);
void kin__monitor_free(kin_node *n);

#endif
