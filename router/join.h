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

/* What a master knows of a joiner's process and certificate, for the
 * audit trail (kin__join_event). */
typedef struct kin__join_peer {
    int pid, uid;      /* SO_PEERCRED over ipc; -1 over tcp */
    char transport[4]; /* "ipc", "tcp" */
    char address[64];  /* a tcp peer's "HOST:PORT", else "" */
    char name[64];
    char host[64], role[64]; /* its certificate's metadata */
    bool leaving;            /* it said it leaves (kin_node_destroy) */
} kin__join_peer;

struct kin__child;

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

/* The peer process at the other end of connection fd: pid and uid over a
 * unix socket, address over tcp (p->name and the certificate's fields are
 * left alone). */
void kin__join_peer_of(int fd, kin__join_peer *p);

/* Master, broker thread: a JOIN request from the peer with routing id
 * rid (rid_len bytes) on sock, the join ROUTER, over connection fd (-1:
 * unknown). Answers it; a refusal is a join.refused event. Takes m. */
void kin__join_on_request(kin_node *n, void *sock, const void *rid,
                          size_t rid_len, int fd, kin_msg *m);

/* Master, broker thread: answers a JOIN request whose header says protocol
 * version theirs with KIN_EBADVERSION, naming both versions. */
void kin__join_refuse_version(kin_node *n, void *sock, const void *rid,
                              size_t rid_len, int fd, unsigned theirs);

/* Master, broker thread: joined context c said HELLO as name (name_len
 * bytes) over c->fd (its pending entry goes). new_conn: on a connection
 * not seen before, an accept event (not for a HELLO said again). */
void kin__join_linked(kin_node *n, struct kin__child *c, const char *name,
                      size_t name_len, bool new_conn);

/* Master, broker thread: a HELLO on the join endpoint claiming id over
 * connection fd (with certificate key, "" when none) refused: how is
 * "bad_id" (not of the joined range) or "id_taken" (a joiner of another
 * certificate holds it). */
void kin__join_hello_refused(kin_node *n, uint32_t id, int fd, const char *how,
                             const char *key);

/* Master, broker thread: joined context c says it leaves (a JOIN message
 * on its link, which the caller acknowledges); its disconnect follows. */
void kin__join_leaving(struct kin__child *c);

/* Master, broker thread: joined context c's link went (c is about to be
 * freed): a leave event. */
void kin__join_left(kin_node *n, const struct kin__child *c);

/* Master, broker thread: joined context c's certificate went from the
 * allowed store; its connection is being shut. */
void kin__join_revoked(kin_node *n, const struct kin__child *c);

/* The ZAP handler's thread (kin__certs_on_refused, node is the master):
 * a tcp handshake from addr with certificate pub refused. */
void kin__join_cert_refused(void *node, const char *pub, const char *addr);

/* Joiner, any thread but the broker's, as its node stops: tells the
 * master that it leaves (so its leave is logged as such, not as a lost
 * link) and waits (up to 500 ms) for the master's acknowledgement. */
void kin__join_say_leave(kin_node *n);

/* Joiner, broker thread: the master acknowledged its leave notice. */
void kin__join_leave_acked(kin_node *n);

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
