/* A caller that reads its own reply (docs/design.md): while a thread waits
 * for the reply of a call it sent itself, it borrows the watch of the
 * socket the reply comes on and receives from it, so that neither the
 * broker nor a latch hand-off stands between the reply and the caller.
 * Internal to the router. */
#ifndef KIN_ROUTER_LEAD_H
#define KIN_ROUTER_LEAD_H

#include <stdbool.h>
#include <stdint.h>

#include <zmq.h>

#include <kin/latch.h>
#include <kin/node.h>

/* Waits up to timeout_ms for a message on l, the latch of the receiver
 * with handle `handle` whose reply comes from context ctx, as
 * kin_latch_get does; when the reply would come on the up or down socket
 * and no other thread reads that one, the calling thread reads it itself
 * meanwhile. Any thread but the broker's (which gets as kin_latch_get). */
kin_err kin__lead_get(kin_node *n, uint32_t ctx, uint32_t handle, kin_latch *l,
                      int timeout_ms, kin_msg **out);

/* A worker's wait for its next call: kin_latch_get(queue, KIN_FOREVER,
 * out), but in a child with no call of its own out, the first idle worker
 * reads the up socket meanwhile and takes a call for the pool from it
 * itself (registered as kin__calls_dispatch does), so that the broker
 * does not hand it over; what comes for the subtree it passes down.
 * Workers only. */
kin_err kin__lead_serve(kin_node *n, kin_latch *queue, kin_msg **out);

/* Receives one message of up to `want` frames from sock for the broker:
 * first what a reading caller held for it (down and up only), then the
 * socket's. As recv_frames: the frame count, 0 for none, -1 for a message
 * of another count. smu held. */
int kin__lead_take(kin_node *n, void *sock, zmq_msg_t *f, int want);

/* The broker has handled the message kin__lead_take gave it from sock:
 * a caller may take its reply past the broker again. */
void kin__lead_handled(kin_node *n, void *sock);

/* Once the parent answered HELLO: unless a worker reads up already, has
 * the pool's idle worker, which started before the router opened and so
 * found nothing to read, look again (kin__calls_kick). */
void kin__lead_kick(kin_node *n);

/* Broker: kin__route(n, m) for a message it took from down (k 0) or up
 * (1); -1: another socket. While it routes a CALL or SVC_RUN for this
 * context, kin__lead_handling knows that message. */
void kin__lead_route(kin_node *n, int k, kin_msg *m);

/* Whether m is the call the broker took from down or up and is handling
 * now (not one made meanwhile: a self-call of an inline export, an
 * SVC_RUN its resolver sends to this context). Any thread: false but on
 * the broker. */
bool kin__lead_handling(kin_node *n, const kin_msg *m);

/* Broker: the call kin__lead_handling named is on the pool's queue, which
 * is all of its effect a reader must wait for: clears that socket's
 * handling flag (kin__lead_handled's, early). Called with the pool
 * latch's mutex held; takes no lock. */
void kin__lead_queued(void *node);

/* Ends reading callers for good (they go back to their latches) and waits
 * until none reads; frees nothing. Before the broker stops. */
void kin__lead_stop(kin_node *n);

/* Frees messages held for the broker that it never took. After the broker
 * has stopped. */
void kin__lead_free(kin_node *n);

/* From router.c, shared with lead.c. */
/* The socket a message to dst goes out on from any thread (down, with
 * *child the link, or, with up_too, up), or NULL when only the broker can
 * route it (no route, a far or join ROUTER, the router closed or
 * stopping). smu held. */
void *kin__direct_socket(kin_node *n, uint32_t dst, bool up_too,
                         uint32_t *child);
/* The child link a ROUTER frame names (its 4-byte routing id). */
static inline uint32_t
kin__link_of(zmq_msg_t *rid)
{
    const uint8_t *r = zmq_msg_data(rid);
    return (uint32_t)r[0] | (uint32_t)r[1] << 8 | (uint32_t)r[2] << 16 |
           (uint32_t)r[3] << 24;
}
int kin__recv_frames(void *sock, zmq_msg_t *f, int want);
/* Sends frames hdr and body (emptied when sent) down to child link `link`
 * as the broker's routing would, from a thread that does not own down, and
 * has the broker drain down if input waits there. 0, or -errno with
 * nothing sent (the frames untouched). smu held. */
int kin__forward_down(kin_node *n, uint32_t link, zmq_msg_t *hdr,
                      zmq_msg_t *body);
kin_msg *kin__decode(kin_node *n, zmq_msg_t *hdr, zmq_msg_t *body, size_t *big);
/* Has the broker drain up (or down) before it next blocks, unless such a
 * drain is already due. Any thread. */
void kin__drain_later(kin_node *n, bool up);
/* Whether id lives in the subtree behind child link `link` (routes: the
 * broker, or smu held). */
bool kin__behind(kin_node *n, uint32_t id, uint32_t link);

#endif
