/* The monitor's "metrics" command (docs/monitor.md): a context's figures
 * and its functions' call metrics, packed on the broker thread. */
#ifndef KIN_MONITOR_METRICS_H
#define KIN_MONITOR_METRICS_H

#include <msgpack.h>

#include <kin/node.h>

/* Packs n's metrics reply map. Broker thread (any thread works). */
void kin__monitor_pack_metrics(kin_node *n, msgpack_packer *pk);

#endif
