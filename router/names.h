/* Names of contexts (names.c): every context announces its name to the
 * master once its parent link is up; the master keeps id -> name for the
 * live contexts and answers lookups (kin_node_lookup). The name comes
 * with each context's HELLO to its parent. */
#ifndef KIN_ROUTER_NAMES_H
#define KIN_ROUTER_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include <kin/node.h>

/* Registers the NAME and LOOKUP handles; called while the node is made. */
kin_err kin__names_start(kin_node *n);
void kin__names_free(kin_node *n);

/* Broker thread: n's child `child` linked (HELLO) under name (len bytes):
 * recorded here at the master, else sent to it. */
void kin__names_linked(kin_node *n, uint32_t child, const char *name,
                       size_t len);

/* Joiner, broker thread: m, a NAME from its subtree on its way up to the
 * master; its name is kept (not taken). */
void kin__names_passing(kin_node *n, const kin_msg *m);

/* Joiner, broker thread: its link to a master is back (after its routes
 * were announced again): sends the master its subtree's names again. */
void kin__names_relinked(kin_node *n);

/* Master, broker thread: the live context that announced name last, or
 * KIN_NO_CTX (also anywhere but at the master). */
uint32_t kin__names_find(kin_node *n, const char *name);

/* Broker thread: the contexts ids are gone; the master (or a joiner, of
 * its subtree) forgets them. */
void kin__names_gone(kin_node *n, const uint32_t *ids, size_t count);

#endif
