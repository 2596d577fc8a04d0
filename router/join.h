/* Joining a running tree from outside (join.c): the JOIN handshake a
 * process started by anyone makes with a master that accepts joins, the
 * master's side of it (ids from a range of their own, names checked
 * unique), and what a joiner does when its link comes back. */
#ifndef KIN_ROUTER_JOIN_H
#define KIN_ROUTER_JOIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/node.h>

#include "router/curve.h"

/* Joined contexts get ids in a range of their own: a master restarted at
 * the same join endpoint starts its spawn ids from 1 again, and a joiner
 * coming back keeps its id, which must not be one of those. Ids are drawn
 * at random in the range (operators have 0x80000000 and up). */
#define KIN__JOIN_ID_FIRST 0x40000000u
#define KIN__JOIN_ID_LAST 0x7fffffffu

static inline bool
kin__join_id_ok(uint32_t id)
{
    return id >= KIN__JOIN_ID_FIRST && id <= KIN__JOIN_ID_LAST;
}

/* Calling thread, before the joiner's node runs: asks the master
 * listening at endpoint for an id under name; on tcp as a CURVE client of
 * server_pub presenting own.
 * Fills *id, *parent and log_ep (the tree's log endpoint, "" when the
 * master has none to give; log_size bytes). Errors: KIN_EEXISTS (the name is
 * taken), KIN_EREFUSED (the master refused the certificate), KIN_EBADVERSION,
 * -ENOENT (no socket at an ipc endpoint), KIN_ETIMEOUT (no answer within
 * timeout_ms), -EINVAL, -errno; why (may be NULL) says which in a sentence. */
kin_err kin__join_ask(const char *endpoint, const char *name,
                      const char *server_pub, const kin__curve_key *own,
                      int timeout_ms, uint32_t *id, uint32_t *parent,
                      char *log_ep, size_t log_size, char *why,
                      size_t why_size);

/* Made and freed with a master's node (pending joins). */
kin_err kin__join_start(kin_node *n);
void kin__join_free(kin_node *n);

/* Master, broker thread: a JOIN request from the peer with routing id
 * rid (rid_len bytes) on sock, the join ROUTER. Answers it. Takes m. */
void kin__join_on_request(kin_node *n, void *sock, const void *rid,
                          size_t rid_len, kin_msg *m);

/* Master, broker thread: answers a JOIN request whose header says protocol
 * version theirs with KIN_EBADVERSION, naming both versions. */
void kin__join_refuse_version(kin_node *n, void *sock, const void *rid,
                              size_t rid_len, unsigned theirs);

/* Master, broker thread: joined context id said HELLO (its pending entry
 * goes). */
void kin__join_linked(kin_node *n, uint32_t id);

/* Master, broker thread: a route to id was announced; blocks of spawn ids
 * handed out later start past id's block (a joiner coming back to a
 * restarted master brings ids the old one handed out). */
void kin__join_id_seen(kin_node *n, uint32_t id);

/* Joiner, broker thread: the link to the master is back (its HELLO was
 * answered): announces the subtree's routes and service offers again. */
void kin__join_relinked(kin_node *n);

/* Whether a unix socket at an ipc:// endpoint has a live listener (a
 * master already serving joins there). */
bool kin__join_endpoint_live(const char *endpoint);

#endif
