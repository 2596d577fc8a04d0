/* The broker-thread side of a context: its sockets, the receive path with
 * frame validation and the reverse-path check, routing by destination,
 * HELLO and route announcements, and link loss. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#include "core/ids.h"
#include "core/log_internal.h"
#include "core/msg_internal.h"
#include "core/pack_internal.h"
#include "core/sockname.h"
#include "router/certs.h"
#include "router/child_certs.h"
#include "router/join.h"
#include "router/lead.h"
#include "router/names.h"
#include "router/node_impl.h"
#include "router/service.h"
#include "router/zctx.h"

#define LINK(id) ((void *)(uintptr_t)((id) + 1u))
#define UNLINK(p) ((uint32_t)((uintptr_t)(p)-1u))

/* --- sending -------------------------------------------------------------- */

/* zmq is done with a body it sent without copying (any zmq thread). */
static void
unhold_body(void *data, void *hint)
{
    (void)data;
    kin__msg_unhold(hint);
}

/* Sends m's body as the last frame. A big body goes to zmq without a copy:
 * m is held until zmq has sent it (the caller may destroy m at once). */
static int
send_body(void *sock, const kin_msg *m)
{
    if (m->len < KIN__MSG_OUTSIDE_MIN)
        return zmq_send(sock, m->body, m->len, ZMQ_DONTWAIT) < 0 ? -errno : 0;
    zmq_msg_t f;
    kin__msg_hold(m);
    if (zmq_msg_init_data(&f, m->body, m->len, unhold_body, (void *)m)) {
        int err = errno;
        kin__msg_unhold((kin_msg *)m);
        return -err;
    }
    if (zmq_msg_send(&f, sock, ZMQ_DONTWAIT) < 0) {
        int err = errno;
        zmq_msg_close(&f); /* drops zmq's hold: m stays the caller's */
        return -err;
    }
    return 0;
}

/* Sends the first frame of a message to child link `link` on a ROUTER:
 * its 4-byte routing id (kin__link_of reads it back). */
static int
send_link(void *sock, uint32_t link)
{
    uint8_t r[4] = {(uint8_t)link, (uint8_t)(link >> 8), (uint8_t)(link >> 16),
                    (uint8_t)(link >> 24)};
    return zmq_send(sock, r, 4, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ? -errno : 0;
}

static int
send_frames(void *sock, const uint32_t *rid, const kin_msg *m)
{
    uint8_t hdr[KIN_HDR_SIZE];
    kin__msg_header_encode(m, hdr);
    int rc = rid ? send_link(sock, *rid) : 0;
    if (rc)
        return rc;
    if (zmq_send(sock, hdr, sizeof hdr, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -errno;
    return send_body(sock, m);
}

static void
send_down(kin_node *n, uint32_t child, kin_msg *m)
{
    /* Children on other hosts hang off the far ROUTER, joiners off the
     * join ROUTER. */
    kin__child *c = n->down_far || n->down_join
                        ? kin__u32map_get(&n->children, child)
                        : NULL;
    void *sock = n->down;
    kin__watch *w = n->w_down;
    if (c && c->far) {
        sock = n->down_far;
        w = n->w_down_far;
    } else if (c && c->joined) {
        sock = n->down_join;
        w = n->w_down_join;
    }
    pthread_mutex_lock(&n->smu);
    int rc = send_frames(sock, &child, m);
    pthread_mutex_unlock(&n->smu);
    kin__broker_touch(w);
    if (rc) {
        char why[80];
        snprintf(why, sizeof why, "context %u cannot reach %u: %s", n->id,
                 m->dst, zmq_strerror(-rc));
        kin__reply_dead(n, m, rc == -EHOSTUNREACH ? KIN_EPEERGONE : rc, why);
        return;
    }
    atomic_fetch_add(&n->stats.routed, 1);
    kin_msg_destroy(&m);
}

static void
send_up(kin_node *n, kin_msg *m)
{
    pthread_mutex_lock(&n->smu);
    int rc = send_frames(n->up, NULL, m);
    pthread_mutex_unlock(&n->smu);
    kin__broker_touch(n->w_up);
    if (rc) {
        kin__reply_dead(n, m, KIN_EPEERGONE, "parent link unavailable");
        return;
    }
    atomic_fetch_add(&n->stats.routed, 1);
    kin_msg_destroy(&m);
}

void
kin__route(kin_node *n, kin_msg *m)
{
    if (m->dst == n->id) {
        kin__deliver(n, m);
        return;
    }
    void *via = kin__u32map_get(&n->routes, m->dst);
    if (via) {
        send_down(n, UNLINK(via), m);
        return;
    }
    if (n->up && !n->parent_lost) {
        send_up(n, m);
        return;
    }
    char why[64];
    snprintf(why, sizeof why, "no route to context %u from %u", m->dst, n->id);
    kin__reply_dead(n, m, KIN_ENOROUTE, why);
}

static void
open_direct(kin_node *n, bool open)
{
    pthread_mutex_lock(&n->smu);
    n->direct = open;
    pthread_mutex_unlock(&n->smu);
}

/* After a direct send found input on a socket: the broker drains it before
 * it next blocks (the watch is looked up there, where it lives). */
static void
drain_up_job(void *node, void *unused)
{
    kin_node *n = node;
    /* Cleared before the drain: input a send leaves after this point gets
     * a drain of its own. */
    atomic_store(&n->drain_due[1], false);
    kin__broker_touch(n->w_up);
}

static void
drain_down_job(void *node, void *unused)
{
    kin_node *n = node;
    atomic_store(&n->drain_due[0], false);
    kin__broker_touch(n->w_down);
}

void
kin__drain_later(kin_node *n, bool up)
{
    /* One drain queued at a time: under load most sends find one due
     * (a job, its allocation and the broker's wake saved). A drain whose
     * job could not be queued is not due: shutting down, or out of memory,
     * when a send that found the flag set in the meantime loses its drain
     * with this one (as a failed job always lost its own). */
    if (!atomic_exchange(&n->drain_due[up], true) &&
        kin__broker_defer(n->broker, up ? drain_up_job : drain_down_job, n,
                          NULL))
        atomic_store(&n->drain_due[up], false);
}

static bool route_direct(kin_node *n, kin_msg *m, bool up_too);

bool
kin__route_direct(kin_node *n, kin_msg *m)
{
    return route_direct(n, m, true);
}

bool
kin__route_direct_down(kin_node *n, kin_msg *m)
{
    return route_direct(n, m, false);
}

void *
kin__direct_socket(kin_node *n, uint32_t dst, bool up_too, uint32_t *child)
{
    if (!n->direct || kin__broker_stopping(n->broker))
        return NULL;
    void *via = kin__u32map_get(&n->routes, dst);
    if (via && !n->down_far && !n->down_join) {
        *child = UNLINK(via);
        return n->down; /* every child is on it */
    }
    if (!via && up_too && n->up && !n->parent_lost)
        return n->up;
    return NULL;
}

/* After a send from a thread that does not own sock (up, or down: `up`),
 * smu held: whether the broker must drain it. libzmq may have processed
 * the socket's commands in that send, reading its ZMQ_FD's signal: input
 * the broker has not seen would then not wake it. ZMQ_EVENTS processes
 * what is left and says whether there is input (a spare drain when the
 * broker was woken anyway). Not when a drain is due: it starts after this
 * (it clears the flag first), so it reads whatever this send left. */
static bool
left_input(kin_node *n, void *sock, bool up)
{
    int events = 0;
    size_t size = sizeof events;
    if (atomic_load(&n->drain_due[up]))
        return false;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &events, &size))
        return true; /* cannot tell: let the broker look */
    return (events & ZMQ_POLLIN) != 0;
}

int
kin__forward_down(kin_node *n, uint32_t link, zmq_msg_t *hdr, zmq_msg_t *body)
{
    /* A ROUTER takes the parts of a message whole once it took the
     * first: a link gone (EHOSTUNREACH) or full fails there, untouched. */
    int rc = send_link(n->down, link);
    if (!rc && (zmq_msg_send(hdr, n->down, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
                zmq_msg_send(body, n->down, ZMQ_DONTWAIT) < 0))
        rc = -errno;
    if (rc)
        return rc;
    if (left_input(n, n->down, false))
        kin__drain_later(n, false);
    atomic_fetch_add(&n->stats.routed, 1);
    return 0;
}

static bool
route_direct(kin_node *n, kin_msg *m, bool up_too)
{
    pthread_mutex_lock(&n->smu);
    uint32_t child = 0;
    void *sock = kin__direct_socket(n, m->dst, up_too, &child);
    bool up = sock && sock == n->up;
    int rc = -1;
    bool drain = false;
    if (sock) {
        rc = send_frames(sock, sock == n->down ? &child : NULL, m);
        drain = left_input(n, sock, up);
    }
    pthread_mutex_unlock(&n->smu);
    if (drain)
        kin__drain_later(n, up);
    if (rc)
        return false;
    atomic_fetch_add(&n->stats.routed, 1);
    kin_msg_destroy(&m);
    return true;
}

/* A system message with a msgpack array of ids as its body. */
static kin_msg *
ids_msg(kin_node *n, uint32_t dst, uint32_t handle, const uint32_t *ids,
        size_t count)
{
    kin_msg *m = NULL;
    if (kin__ids_msg_new(&m, ids, count) == KIN_OK) {
        m->dst = dst;
        m->src = m->auth = n->id;
        m->handle = handle;
    }
    return m;
}

/* HELLO: [id] and the context's name, or [id, 1] for an operator. */
static kin_msg *
hello_msg(kin_node *n)
{
    uint32_t ids[2] = {n->id, 1};
    kin_msg *m = NULL;
    if (n->is_operator) {
        m = ids_msg(n, n->parent_id, KIN_HANDLE_HELLO, ids, 2);
    } else {
        kin_buf b;
        kin_buf_init(&b);
        msgpack_packer pk;
        kin_buf_packer(&b, &pk);
        if (!msgpack_pack_array(&pk, 1) && !msgpack_pack_uint32(&pk, n->id) &&
            !msgpack_pack_str_with_body(&pk, n->name, strlen(n->name)) &&
            kin_msg_new_copy(&m, b.data, b.len) == KIN_OK) {
            m->dst = n->parent_id;
            m->src = m->auth = n->id;
            m->handle = KIN_HANDLE_HELLO;
        }
        kin_buf_release(&b);
    }
    return m;
}

/* Reads a body that is an array of ids; returns the count or -1. */
static int
read_ids(const kin_msg *m, uint32_t *ids, int max)
{
    int count = kin__ids_read(m->body, m->len, ids, (size_t)max);
    return count < 0 ? -1 : count;
}

/* read_ids for lists of any length (route announcements name whole
 * subtrees): *out is malloc'd (free it). Returns the count or -1. */
static int
read_id_list(const kin_msg *m, uint32_t **out)
{
    /* Each id takes at least one byte on the wire; a subtree of more than
     * 65,536 contexts is refused rather than allocated for. */
    int max = m->len < 65536u ? (int)m->len : 65536;
    *out = malloc(((size_t)max + 1) * sizeof **out);
    if (!*out)
        return -1;
    int count = read_ids(m, *out, max);
    if (count < 0) {
        free(*out);
        *out = NULL;
    }
    return count;
}

/* Announces ids to the parent (ADD_ROUTE / DEL_ROUTE). */
static void
announce_up(kin_node *n, uint32_t handle, const uint32_t *ids, size_t count)
{
    if (!n->up || n->parent_lost || !count)
        return;
    kin_msg *m = ids_msg(n, n->parent_id, handle, ids, count);
    if (m)
        send_up(n, m);
}

/* Tells every child except `except` that ids are gone. */
static void
announce_down(kin_node *n, const uint32_t *ids, size_t count, uint32_t except)
{
    uint32_t child;
    for (size_t it = 0; kin__u32map_next(&n->children, &it, &child, NULL);) {
        if (child == except)
            continue;
        kin_msg *m = ids_msg(n, child, KIN_HANDLE_DEL_ROUTE, ids, count);
        if (m)
            send_down(n, child, m);
    }
}

static void
forget_ids(kin_node *n, const uint32_t *ids, size_t count, uint32_t from)
{
    kin__handles_peer_gone(n, ids, count);
    kin__services_gone(n, ids, count);
    kin__names_gone(n, ids, count);
    announce_up(n, KIN_HANDLE_DEL_ROUTE, ids, count);
    announce_down(n, ids, count, from);
}

/* Tells the layers above (kin__node_on_link); no router lock held. */
static void
link_changed(kin_node *n, uint32_t child, bool up)
{
    size_t max = sizeof n->link_hooks / sizeof *n->link_hooks;
    for (size_t i = 0; i < max && n->link_hooks[i].fn; i++)
        n->link_hooks[i].fn(n->link_hooks[i].arg, child, up);
}

void
kin__router_link_down(kin_node *n, uint32_t child)
{
    pthread_mutex_lock(&n->mu);
    kin__u32map_del(&n->bad_version, child);
    pthread_mutex_unlock(&n->mu);
    kin__u32map_del(&n->exited, child);
    kin__child *c = kin__u32map_del(&n->children, child);
    if (!c)
        return;
    /* Still mapped: the connection's DISCONNECTED has not been read (a
     * process gone past its grace, a link replaced); read later, it finds
     * the descriptor unmapped, or dropped by settle_fd if a new
     * connection's HELLO came first. */
    void *mapped =
        c->fd >= 0 ? kin__u32map_get(&n->fds, (uint32_t)c->fd + 1) : NULL;
    if (mapped && UNLINK(mapped) == child)
        kin__u32map_del(&n->fds, (uint32_t)c->fd + 1);
    if (c->joined)
        kin__join_left(n, c);
    free(c);
    /* The child and everything routed through it. */
    size_t cap = 16, count = 0;
    uint32_t *ids = malloc(cap * sizeof *ids);
    uint32_t id;
    void *via;
    for (size_t it = 0; ids && kin__u32map_next(&n->routes, &it, &id, &via);) {
        if (UNLINK(via) != child)
            continue;
        if (count == cap) {
            uint32_t *bigger = realloc(ids, 2 * cap * sizeof *ids);
            if (!bigger)
                break;
            ids = bigger;
            cap *= 2;
        }
        ids[count++] = id;
    }
    pthread_mutex_lock(&n->smu);
    for (size_t i = 0; i < count; i++)
        kin__u32map_del(&n->routes, ids[i]);
    pthread_mutex_unlock(&n->smu);
    KIN_INFO("context %u: link to child %u down (%zu contexts gone)", n->id,
             child, count);
    pthread_mutex_lock(&n->mu);
    kin__u32map_del(&n->ready, child);
    pthread_mutex_unlock(&n->mu);
    link_changed(n, child, false);
    if (ids)
        forget_ids(n, ids, count, child);
    free(ids);
}

/* How long a child's link may outlive its process: the connection's
 * DISCONNECTED event normally comes at once, but a process the child
 * forked may hold the connection open. */
#define EXIT_GRACE_MS 250

static void
on_exit_grace(uv_timer_t *t)
{
    kin_node *n = t->data;
    uint64_t now = uv_now(t->loop), next = 0;
    uint32_t due[64];
    size_t count = 0;
    uint32_t id;
    void *when;
    for (size_t it = 0;
         count < 64 && kin__u32map_next(&n->exited, &it, &id, &when);) {
        if ((uint64_t)(uintptr_t)when <= now)
            due[count++] = id;
        else if (!next || (uint64_t)(uintptr_t)when < next)
            next = (uint64_t)(uintptr_t)when;
    }
    for (size_t i = 0; i < count; i++)
        kin__router_link_down(n, due[i]);
    if (count == 64)
        next = now; /* more were due */
    if (next)
        uv_timer_start(&n->exit_timer, on_exit_grace,
                       next > now ? next - now : 0, 0);
}

void
kin__router_child_exited(kin_node *n, uint32_t child)
{
    kin__child *c = kin__u32map_get(&n->children, child);
    if (!c || c->fd < 0 || c->far || c->joined ||
        kin__broker_stopping(n->broker)) {
        kin__router_link_down(n, child);
        return;
    }
    uv_loop_t *loop = kin__broker_loop(n->broker);
    if (!n->exit_inited) {
        uv_timer_init(loop, &n->exit_timer);
        n->exit_timer.data = n;
        n->exit_inited = true;
    }
    /* Its name (and its subtree's) goes now: a context that ended is not
     * found, even while its last messages are awaited. */
    uint32_t ids[64];
    size_t count = 0;
    uint32_t id;
    void *via;
    for (size_t it = 0;
         count < 64 && kin__u32map_next(&n->routes, &it, &id, &via);)
        if (UNLINK(via) == child)
            ids[count++] = id;
    kin__names_gone(n, ids, count);
    uint64_t when = uv_now(loop) + EXIT_GRACE_MS;
    if (kin__u32map_put(&n->exited, child, (void *)(uintptr_t)when)) {
        kin__router_link_down(n, child);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&n->exit_timer))
        uv_timer_start(&n->exit_timer, on_exit_grace, EXIT_GRACE_MS, 0);
}

/* --- system handlers -------------------------------------------------------
 */

static void settle_fd(kin_node *n, void *mon, int fd);

static void
hello_from_child(kin_node *n, uint32_t link, int fd, bool far, bool joined,
                 const char *key, kin_msg *m)
{
    /* Body [id] for a context, [id, 1] for an operator (the kin command),
     * accepted only on the main ipc endpoint, whose 0700 directory admits
     * only this user: never on tcp, never on the far ROUTER, which ssh
     * forwards to a socket on another host. */
    /* A context's [id] is followed by its name (str), for the master's
     * names (names.c). */
    bool as_operator;
    const char *name;
    size_t name_len;
    kin__hello_read(m->body, m->len, &as_operator, &name, &name_len);
    if (as_operator && (!n->ipc_path[0] || far || joined)) {
        atomic_fetch_add(&n->stats.forged, 1);
        kin_msg_destroy(&m);
        return;
    }
    /* The join endpoint admits only ids from the joined range: a joiner's
     * own (kin__join_on_request gave it), or one it comes back with after
     * this master restarted. */
    if (joined != kin__join_id_ok(link)) {
        atomic_fetch_add(&n->stats.forged, 1);
        KIN_WARN("context %u: HELLO from %u on the %s endpoint refused", n->id,
                 link, joined ? "join" : "children's");
        if (joined)
            kin__join_hello_refused(n, link, fd, "bad_id", key);
        kin_msg_destroy(&m);
        return;
    }
    kin__child *c = kin__u32map_get(&n->children, link);
    void *via = kin__u32map_get(&n->routes, link);
    if (via && UNLINK(via) != link) {
        /* An id already living elsewhere in the subtree. */
        atomic_fetch_add(&n->stats.forged, 1);
        KIN_WARN("context %u: HELLO from %u, which is routed via %u", n->id,
                 link, UNLINK(via));
        kin_msg_destroy(&m);
        return;
    }
    if (c && joined && c->joined && c->key[0] &&
        strcmp(c->key, key ? key : "")) {
        /* The id of a joiner admitted by another certificate: not its to
         * take over. Its connection is shut (libzmq handed the id to it). */
        atomic_fetch_add(&n->stats.forged, 1);
        KIN_WARN("context %u: HELLO as joined context %u with another "
                 "certificate (%s) refused",
                 n->id, link, key);
        kin__join_hello_refused(n, link, fd, "id_taken", key);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        kin_msg_destroy(&m);
        return;
    }
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || kin__u32map_put(&n->children, link, c)) {
            free(c);
            kin_msg_destroy(&m);
            return;
        }
        c->id = link;
        c->fd = -1;
    }
    c->is_operator = as_operator;
    c->far = far;
    c->joined = joined;
    snprintf(c->key, sizeof c->key, "%s", key ? key : "");
    c->revoked = false;
    bool new_conn = fd >= 0 && c->fd != fd;
    if (new_conn) {
        /* Earlier connections' DISCONNECTEDs for this number are dropped
         * before it is mapped to this one. */
        settle_fd(n,
                  far      ? n->down_far_mon
                  : joined ? n->down_join_mon
                           : n->down_mon,
                  fd);
        /* The link's earlier connection: its DISCONNECTED, to come, will
         * find the number unmapped (or dropped as above). */
        if (c->fd >= 0)
            kin__u32map_del(&n->fds, (uint32_t)c->fd + 1);
        /* Another link's connection had the number: closed, so its link
         * goes (its DISCONNECTED was just dropped, or is to come). */
        void *prev = kin__u32map_get(&n->fds, (uint32_t)fd + 1);
        if (prev && UNLINK(prev) != link)
            kin__router_link_down(n, UNLINK(prev));
        c->fd = fd;
        kin__u32map_put(&n->fds, (uint32_t)fd + 1, LINK(link));
    }
    pthread_mutex_lock(&n->smu);
    kin__u32map_put(&n->routes, link, LINK(link));
    pthread_mutex_unlock(&n->smu);

    /* Answer with our id and ancestors, so the child knows its authority
     * chain, then tell the tree above. */
    uint32_t chain[KIN_MAX_DEPTH + 1];
    chain[0] = n->id;
    int depth = n->n_ancestors < KIN_MAX_DEPTH ? n->n_ancestors : 0;
    memcpy(chain + 1, n->ancestors, (size_t)depth * sizeof *chain);
    kin_msg *ack = ids_msg(n, link, KIN_HANDLE_HELLO, chain, 1 + depth);
    if (ack)
        send_down(n, link, ack);
    announce_up(n, KIN_HANDLE_ADD_ROUTE, &link, 1);
    if (!as_operator && name)
        kin__names_linked(n, link, name, name_len);
    if (joined) {
        kin__join_linked(n, c, name, name_len, new_conn);
        KIN_INFO("context %u: context %u '%.*s' joined", n->id, link,
                 (int)name_len, name ? name : "");
    }
    kin_msg_destroy(&m);

    pthread_mutex_lock(&n->mu);
    kin__u32map_put(&n->ready, link, LINK(link));
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->mu);
    link_changed(n, link, true);
    kin_msg_destroy(&m);
}

static void
hello_from_parent(kin_node *n, kin_msg *m)
{
    uint32_t chain[KIN_MAX_DEPTH];
    int count = read_ids(m, chain, KIN_MAX_DEPTH);
    kin_msg_destroy(&m);
    if (count < 1) {
        atomic_fetch_add(&n->stats.malformed, 1);
        return;
    }
    pthread_mutex_lock(&n->mu);
    memcpy(n->ancestors, chain, (size_t)count * sizeof *chain);
    n->n_ancestors = count;
    n->up_ready = true;
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->mu);
    if (n->joined && n->parent_lost) {
        /* Back in a tree (its master restarted, or the network came
         * back): the subtree and its offers are announced again. */
        pthread_mutex_lock(&n->smu);
        n->parent_lost = false;
        pthread_mutex_unlock(&n->smu);
        n->retry_ms = 1000;
        KIN_INFO("context %u: joined its tree again", n->id);
        size_t cap = n->routes.len, len = 0;
        uint32_t *ids = malloc((cap + 1) * sizeof *ids);
        uint32_t id;
        for (size_t it = 0;
             ids && len < cap && kin__u32map_next(&n->routes, &it, &id, NULL);)
            ids[len++] = id;
        if (ids)
            announce_up(n, KIN_HANDLE_ADD_ROUTE, ids, len);
        free(ids);
        kin__join_relinked(n);
    }
}

static void
add_route(kin_node *n, uint32_t link, kin_msg *m)
{
    uint32_t *ids;
    int count = read_id_list(m, &ids);
    kin_msg_destroy(&m);
    if (count < 0) {
        atomic_fetch_add(&n->stats.malformed, 1);
        return;
    }
    int ok = 0;
    for (int i = 0; i < count; i++) {
        void *via = kin__u32map_get(&n->routes, ids[i]);
        if (ids[i] == n->id || kin__is_ancestor_or_self(n, ids[i]) ||
            (via && UNLINK(via) != link)) {
            atomic_fetch_add(&n->stats.forged, 1);
            continue;
        }
        pthread_mutex_lock(&n->smu);
        kin__u32map_put(&n->routes, ids[i], LINK(link));
        pthread_mutex_unlock(&n->smu);
        kin__join_id_seen(n, ids[i]);
        ids[ok++] = ids[i];
    }
    announce_up(n, KIN_HANDLE_ADD_ROUTE, ids, (size_t)ok);
    free(ids);
}

static void
del_route(kin_node *n, uint32_t link, bool from_parent, kin_msg *m)
{
    uint32_t *ids;
    int count = read_id_list(m, &ids);
    kin_msg_destroy(&m);
    if (count < 0) {
        atomic_fetch_add(&n->stats.malformed, 1);
        return;
    }
    int ok = 0;
    for (int i = 0; i < count; i++) {
        void *via = kin__u32map_get(&n->routes, ids[i]);
        if (from_parent ? via != NULL : (!via || UNLINK(via) != link))
            continue; /* not the sender's to withdraw */
        if (!from_parent) {
            pthread_mutex_lock(&n->smu);
            kin__u32map_del(&n->routes, ids[i]);
            pthread_mutex_unlock(&n->smu);
        }
        ids[ok++] = ids[i];
    }
    if (from_parent) {
        kin__handles_peer_gone(n, ids, (size_t)ok);
        announce_down(n, ids, (size_t)ok, UINT32_MAX);
    } else {
        forget_ids(n, ids, (size_t)ok, link);
    }
    free(ids);
}

/* --- receiving -------------------------------------------------------------
 */

/* Reads one multipart message of up to `want` frames. Returns the frame
 * count, or -1 when it had a different count (the rest is drained). */
int
kin__recv_frames(void *sock, zmq_msg_t *f, int want)
{
    int got = 0;
    int more = 1;
    while (more) {
        zmq_msg_t *dst = got < want ? &f[got] : NULL;
        zmq_msg_t spare;
        if (!dst) {
            zmq_msg_init(&spare);
            dst = &spare;
        } else {
            zmq_msg_init(dst);
        }
        if (zmq_msg_recv(dst, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(dst);
            if (got == 0)
                return 0;
            break; /* cannot happen mid-message; be safe */
        }
        more = zmq_msg_more(dst);
        if (dst == &spare)
            zmq_msg_close(&spare);
        got++;
    }
    if (got != want) {
        for (int i = 0; i < got && i < want; i++)
            zmq_msg_close(&f[i]);
        return -1;
    }
    return got;
}

static void
close_frames(zmq_msg_t *f, int count)
{
    for (int i = 0; i < count; i++)
        zmq_msg_close(&f[i]);
}

/* Validates header and size. An oversized body comes back as its header with
 * an empty body and *big set to the body's size: it is answered with a dead
 * reply only once the caller has checked where it came from. */
static void
free_frame(void *frame)
{
    zmq_msg_close(frame);
    free(frame);
}

kin_msg *
kin__decode(kin_node *n, zmq_msg_t *hdr, zmq_msg_t *body, size_t *big)
{
    *big = 0;
    kin_msg *m = NULL;
    /* A big body stays in its frame, which the message keeps. */
    zmq_msg_t *keep = NULL;
    if (zmq_msg_size(body) >= KIN__MSG_OUTSIDE_MIN &&
        (keep = malloc(sizeof *keep))) {
        zmq_msg_init(keep);
        zmq_msg_move(keep, body);
    }
    zmq_msg_t *f = keep ? keep : body;
    kin_err e = kin__msg_decode_outside(
        &m, zmq_msg_data(hdr), zmq_msg_size(hdr), zmq_msg_data(f),
        zmq_msg_size(f), n->max_msg, keep ? free_frame : NULL, keep);
    if (keep && e) {
        zmq_msg_move(body, keep); /* the caller closes it, as before */
        free_frame(keep);
    }
    if (e == KIN_ETOOBIG) {
        if (kin_msg_new(&m, 0))
            return NULL;
        kin__msg_header_decode(m, zmq_msg_data(hdr), zmq_msg_size(hdr));
        *big = zmq_msg_size(body);
        return m;
    }
    if (e) {
        atomic_fetch_add(&n->stats.malformed, 1);
        KIN_DEBUG("context %u: malformed message: %s", n->id, kin_strerror(e));
        return NULL;
    }
    return m;
}

static void
reply_too_big(kin_node *n, kin_msg *m, size_t size)
{
    char why[96];
    snprintf(why, sizeof why,
             "body of %zu bytes: payload over the limit of %zu at context %u",
             size, n->max_msg, n->id);
    kin__reply_dead(n, m, KIN_ETOOBIG, why);
}

/* Whether id lives in the subtree behind child link `link`. */
bool
kin__behind(kin_node *n, uint32_t id, uint32_t link)
{
    void *via = kin__u32map_get(&n->routes, id);
    return via && UNLINK(via) == link;
}

/* A JOIN request on fd: a link's connection that had the number has
 * closed. (The request's own DISCONNECTED, read later, finds the number
 * unmapped, or is dropped by settle_fd at a HELLO on it.) */
static void
ask_seen(kin_node *n, int fd)
{
    void *link = fd >= 0 ? kin__u32map_get(&n->fds, (uint32_t)fd + 1) : NULL;
    if (link)
        kin__router_link_down(n, UNLINK(link));
}

/* A JOIN request: frames routing id, header, body (closed here). */
static void
on_join_request(kin_node *n, void *sock, zmq_msg_t *f)
{
    uint8_t rid[256];
    size_t rid_len = zmq_msg_size(&f[0]);
    const uint8_t *h = zmq_msg_data(&f[1]);
    int fd = zmq_msg_get(&f[1], ZMQ_SRCFD);
    ask_seen(n, fd);
    if (rid_len <= sizeof rid && zmq_msg_size(&f[1]) >= 4 &&
        (h[0] | h[1] << 8) == KIN_MAGIC && h[2] != kin__proto_version()) {
        /* A joiner of another build: told so at once, both versions
         * named, rather than dropped as malformed. */
        memcpy(rid, zmq_msg_data(&f[0]), rid_len);
        unsigned theirs = h[2];
        close_frames(f, 3);
        kin__join_refuse_version(n, sock, rid, rid_len, fd, theirs);
        return;
    }
    size_t big;
    kin_msg *m =
        rid_len <= sizeof rid ? kin__decode(n, &f[1], &f[2], &big) : NULL;
    if (m)
        memcpy(rid, zmq_msg_data(&f[0]), rid_len);
    close_frames(f, 3);
    if (m && big) {
        atomic_fetch_add(&n->stats.malformed, 1);
        kin_msg_destroy(&m);
    }
    if (m)
        kin__join_on_request(n, sock, rid, rid_len, fd, m);
}

/* --- peers of another protocol version -----------------------------------
 *
 * The first four header bytes (magic, version) stay the same in every
 * version, and so does the shape of the refusal's body, [code, id,
 * parent, text, log endpoint] (as a JOIN answer's): builds of different
 * versions can always tell each other which versions they speak. */

#define BAD_VERSION_MAX 256

static void
version_text(char *out, size_t size, uint32_t child, unsigned theirs,
             uint32_t parent, unsigned ours)
{
    snprintf(out, size,
             "child %u speaks kin protocol version %u, its parent %u "
             "version %u",
             child, theirs, parent, ours);
}

/* Broker: a child linking with a HELLO of another version is answered at
 * once in this version's framing, and whoever spawns it is woken. */
static void
refuse_child_version(kin_node *n, void *sock, uint32_t link, unsigned theirs)
{
    char text[160];
    version_text(text, sizeof text, link, theirs, n->id, kin__proto_version());
    /* Still a message this version cannot read: counted as malformed. */
    atomic_fetch_add(&n->stats.malformed, 1);
    pthread_mutex_lock(&n->mu);
    bool told = kin__u32map_has(&n->bad_version, link);
    /* Kept until the child's link is reported down (its spawn failed):
     * bounded, since ids nobody spawned are never reported. */
    if (!told && n->bad_version.len < BAD_VERSION_MAX)
        kin__u32map_put(&n->bad_version, link, (void *)(uintptr_t)(theirs + 1));
    pthread_mutex_unlock(&n->mu);
    if (!told)
        KIN_WARN("context %u: refused a child's HELLO: %s", n->id, text);
    kin_buf b = {0};
    kin_msg *m = NULL;
    if (!kin_pack(&b, "iuuss", (int)KIN_EBADVERSION, link, n->id, text, "") &&
        !kin_msg_new_copy(&m, b.data, b.len)) {
        m->dst = link;
        m->src = m->auth = n->id;
        m->handle = KIN_HANDLE_HELLO;
        pthread_mutex_lock(&n->smu); /* direct senders share n->down */
        send_frames(sock, &link, m);
        pthread_mutex_unlock(&n->smu);
        kin__broker_touch(sock == n->down_far ? n->w_down_far : n->w_down);
    }
    kin_msg_destroy(&m);
    kin_buf_release(&b);
    if (!told)
        link_changed(n, link, false);
}

bool
kin__node_child_bad_version(kin_node *n, uint32_t id, char *why,
                            size_t why_size)
{
    pthread_mutex_lock(&n->mu);
    uintptr_t v = (uintptr_t)kin__u32map_get(&n->bad_version, id);
    pthread_mutex_unlock(&n->mu);
    if (v && why && why_size)
        version_text(why, why_size, id, (unsigned)(v - 1), n->id,
                     kin__proto_version());
    return v != 0;
}

/* Broker, in a child: its parent answered HELLO in another version. */
static void
parent_refused_version(kin_node *n, zmq_msg_t *hdr, zmq_msg_t *body)
{
    unsigned theirs = ((const uint8_t *)zmq_msg_data(hdr))[2];
    int code = 0;
    uint32_t id, parent;
    const char *text = NULL;
    size_t len = 0;
    char why[sizeof n->up_why];
    if (!kin_unpack_buf(zmq_msg_data(body), zmq_msg_size(body), "iuuS", &code,
                        &id, &parent, &text, &len) &&
        code == KIN_EBADVERSION)
        snprintf(why, sizeof why, "%.*s", (int)len, text);
    else
        version_text(why, sizeof why, n->id, kin__proto_version(), n->parent_id,
                     theirs);
    KIN_ERROR("context %u: its parent refused its HELLO: %s", n->id, why);
    pthread_mutex_lock(&n->mu);
    n->up_err = KIN_EBADVERSION;
    memcpy(n->up_why, why, sizeof why);
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->mu);
}

/* Whether a header frame is kin's, of another protocol version. */
static bool
other_version(zmq_msg_t *hdr)
{
    const uint8_t *h = zmq_msg_data(hdr);
    return zmq_msg_size(hdr) >= 4 && (h[0] | h[1] << 8) == KIN_MAGIC &&
           h[2] != kin__proto_version();
}

static void down_frames(kin_node *n, void *sock, zmq_msg_t *f, int got);

static bool
on_down(void *sock, void *arg)
{
    kin_node *n = arg;
    zmq_msg_t f[3];
    pthread_mutex_lock(&n->smu);
    int got = kin__lead_take(n, sock, f, 3);
    pthread_mutex_unlock(&n->smu);
    if (got == 0)
        return false; /* nothing there */
    down_frames(n, sock, f, got);
    kin__lead_handled(n, sock);
    return true;
}

/* One message from a ROUTER (a child's, an operator's or a joiner's). */
static void
down_frames(kin_node *n, void *sock, zmq_msg_t *f, int got)
{
    if (got == 3 && sock == n->down_join && zmq_msg_size(&f[0]) != 4) {
        /* A joiner without an id yet: its JOIN request. */
        on_join_request(n, sock, f);
        return;
    }
    if (got < 0 || zmq_msg_size(&f[0]) != 4) {
        if (got > 0)
            close_frames(f, got);
        atomic_fetch_add(&n->stats.malformed, 1);
        return;
    }
    uint32_t link = kin__link_of(&f[0]);
    if (sock != n->down_join && other_version(&f[1]) &&
        !kin__u32map_has(&n->children, link)) {
        /* A child of another kin build: told so at once, both versions
         * named, rather than dropped as malformed until a timeout. */
        unsigned theirs = ((const uint8_t *)zmq_msg_data(&f[1]))[2];
        close_frames(f, 3);
        refuse_child_version(n, sock, link, theirs);
        return;
    }
    int fd = zmq_msg_get(&f[1], ZMQ_SRCFD);
    /* A joiner's certificate key, or a child's on a tcp ROUTER, as the
     * ZAP handler named it ("" for the tree's key). */
    char key[KIN__KEY_LEN] = "";
    const char *uid =
        sock == n->down_join ||
                (sock == n->down && kin__endpoint_is_tcp(n->endpoint))
            ? zmq_msg_gets(&f[1], "User-Id")
            : NULL;
    if (uid && strlen(uid) == KIN__KEY_LEN - 1)
        memcpy(key, uid, KIN__KEY_LEN);
    size_t big;
    kin_msg *m = kin__decode(n, &f[1], &f[2], &big);
    close_frames(f, 3);
    if (!m)
        return;

    if (m->handle == KIN_HANDLE_HELLO && m->dst == n->id && !big) {
        /* A link is named after the id it claims; this context's own id
         * and its ancestors' can never be a child's. */
        if (m->src != link || m->auth != link ||
            kin__is_ancestor_or_self(n, link)) {
            atomic_fetch_add(&n->stats.forged, 1);
            kin_msg_destroy(&m);
            return;
        }
        uint32_t owner;
        if (sock == n->down && key[0] &&
            (!kin__child_cert_owner(key, &owner) || owner != link)) {
            /* A child's certificate admits the child it was issued to. */
            atomic_fetch_add(&n->stats.forged, 1);
            KIN_WARN("context %u: refused HELLO from %u: its certificate %s "
                     "was issued to another context",
                     n->id, link, key);
            kin_msg_destroy(&m);
            return;
        }
        hello_from_child(n, link, fd, sock == n->down_far, sock == n->down_join,
                         key, m);
        return;
    }
    /* Reverse-path check: a link speaks only for its own subtree (an
     * operator may also carry this context's authority). */
    kin__child *c = kin__u32map_get(&n->children, link);
    if (c && c->joined && fd >= 0 && c->fd >= 0 && fd != c->fd) {
        /* Not the connection that said HELLO as link: a stale one, or one
         * that took its id over without saying HELLO. */
        atomic_fetch_add(&n->stats.forged, 1);
        kin_msg_destroy(&m);
        return;
    }
    if (!c || (sock == n->down && strcmp(c->key, key)) ||
        !kin__behind(n, m->src, link) ||
        !(kin__behind(n, m->auth, link) ||
          (c->is_operator && m->auth == n->id))) {
        atomic_fetch_add(&n->stats.forged, 1);
        KIN_DEBUG("context %u: dropped message claiming %u/%u from link %u",
                  n->id, m->src, m->auth, link);
        kin_msg_destroy(&m);
        return;
    }
    if (big) {
        reply_too_big(n, m, big);
        return;
    }
    if (c->is_operator && kin__is_service_handle(m->handle)) {
        /* Services admit the contexts of the tree, which an operator
         * attached with the kin command is not. */
        kin__reply_dead(n, m, KIN_EREFUSED,
                        "services do not admit operators (not a context of "
                        "the tree)");
        return;
    }
    if (m->dst == n->id && m->src == link) {
        if (m->handle == KIN_HANDLE_JOIN && c->joined) {
            /* A joiner says it leaves: acknowledged (it waits for that
             * before closing); its disconnect follows. */
            kin__join_leaving(c);
            m->dst = link;
            m->src = m->auth = n->id;
            send_down(n, link, m);
            return;
        }
        if (m->handle == KIN_HANDLE_ADD_ROUTE) {
            add_route(n, link, m);
            return;
        }
        if (m->handle == KIN_HANDLE_DEL_ROUTE) {
            del_route(n, link, false, m);
            return;
        }
    }
    if (n->joined && m->handle == KIN_HANDLE_NAME)
        kin__names_passing(n, m); /* kept for a restarted master */
    kin__lead_route(n, sock == n->down ? 0 : -1, m);
    return;
}

static void up_frames(kin_node *n, zmq_msg_t *f, int got);

static bool
on_up(void *sock, void *arg)
{
    kin_node *n = arg;
    zmq_msg_t f[2];
    pthread_mutex_lock(&n->smu);
    int got = kin__lead_take(n, sock, f, 2);
    pthread_mutex_unlock(&n->smu);
    if (got == 0)
        return false; /* nothing there */
    up_frames(n, f, got);
    kin__lead_handled(n, sock);
    return true;
}

/* One message from the parent. */
static void
up_frames(kin_node *n, zmq_msg_t *f, int got)
{
    if (got < 0) {
        atomic_fetch_add(&n->stats.malformed, 1);
        return;
    }
    if (!n->up_ready && other_version(&f[0])) {
        parent_refused_version(n, &f[0], &f[1]);
        close_frames(f, 2);
        return;
    }
    size_t big;
    kin_msg *m = kin__decode(n, &f[0], &f[1], &big);
    close_frames(f, 2);
    if (!m)
        return;
    /* From above, nobody may speak for us or our subtree. */
    if (m->src == n->id || kin__u32map_has(&n->routes, m->src)) {
        atomic_fetch_add(&n->stats.forged, 1);
        kin_msg_destroy(&m);
        return;
    }
    if (big) {
        reply_too_big(n, m, big);
        return;
    }
    if (m->dst == n->id && m->src == n->parent_id) {
        if (m->handle == KIN_HANDLE_HELLO) {
            hello_from_parent(n, m);
            return;
        }
        if (m->handle == KIN_HANDLE_JOIN && n->joined) {
            kin_msg_destroy(&m); /* its leave notice was heard */
            kin__join_leave_acked(n);
            return;
        }
        if (m->handle == KIN_HANDLE_DEL_ROUTE) {
            del_route(n, n->parent_id, true, m);
            return;
        }
    }
    kin__lead_route(n, 1, m);
}

/* Socket monitor events: 2 frames, the first u16 event + u32 value.
 * Returns 1 for an event, 0 when nothing was there, -1 for anything else. */
static int
read_event(void *sock, uint16_t *event, uint32_t *value)
{
    zmq_msg_t f[2];
    int got = kin__recv_frames(sock, f, 2);
    if (got != 2)
        return got == 0 ? 0 : -1;
    bool ok = zmq_msg_size(&f[0]) >= 6;
    if (ok) {
        const uint8_t *p = zmq_msg_data(&f[0]);
        memcpy(event, p, 2);
        memcpy(value, p + 2, 4);
    }
    close_frames(f, 2);
    return ok ? 1 : -1;
}

/* A down monitor's event, read ahead of its turn by settle_fd. ev 0: one
 * settle_fd dropped (an earlier connection's, of a number reused). */
struct kin__down_ev {
    void *mon;
    uint32_t fd;
    uint16_t ev;
};

/* A DISCONNECTED from mon (one of the down monitors): the link whose
 * connection had fd goes, after what it sent before it closed. */
static void
down_event(kin_node *n, void *mon, uint32_t fd)
{
    void *link = kin__u32map_get(&n->fds, fd + 1);
    if (!link)
        return;
    /* What a child or joiner sent before its connection closed comes
     * first (a joiner's leave notice, a provider's last replies and
     * refused calls): the data socket is read apart from this one. It
     * may hold a HELLO from a new connection that took the number (the
     * link then went there): this event is not that one's. */
    void *data = mon == n->down_join_mon ? n->down_join
                 : mon == n->down_mon    ? n->down
                                         : NULL;
    for (int i = 0; data && kin__u32map_get(&n->fds, fd + 1) == link &&
                    i < 512 && on_down(data, n);
         i++)
        ;
    /* Unmapped first: this is the DISCONNECTED its link down awaits. */
    if (kin__u32map_get(&n->fds, fd + 1) != link)
        return;
    kin__u32map_del(&n->fds, fd + 1);
    kin__router_link_down(n, UNLINK(link));
}

/* Handles the events settle_fd read ahead, in order; each may read more
 * ahead (a HELLO read before a link goes), appended behind. */
static void
run_queued(kin_node *n)
{
    while (n->evq_head < n->evq_len) {
        struct kin__down_ev e = n->evq[n->evq_head++];
        bool open =
            e.mon && (e.mon == n->down_mon || e.mon == n->down_join_mon ||
                      e.mon == n->down_far_mon);
        if (open && e.ev == ZMQ_EVENT_DISCONNECTED)
            down_event(n, e.mon, e.fd);
    }
    n->evq_head = n->evq_len = 0;
}

static void
run_queued_deferred(void *arg, void *unused)
{
    (void)unused;
    kin_node *n = arg;
    n->evq_deferred = false;
    run_queued(n);
}

/* Reads every event waiting on mon into the queue (short of memory, the
 * rest stay on the socket, read in their turn). */
static void
read_ahead(kin_node *n, void *mon)
{
    for (;;) {
        if (n->evq_len == n->evq_cap) {
            size_t cap = n->evq_cap ? 2 * n->evq_cap : 16;
            struct kin__down_ev *q = realloc(n->evq, cap * sizeof *q);
            if (!q)
                return;
            n->evq = q;
            n->evq_cap = cap;
        }
        uint16_t ev;
        uint32_t fd;
        int got = read_event(mon, &ev, &fd);
        if (got == 0)
            return;
        if (got > 0)
            n->evq[n->evq_len++] = (struct kin__down_ev){mon, fd, ev};
    }
}

/* A HELLO came on a connection with descriptor fd of mon's socket. The
 * broker reads the data sockets and their monitors apart, so the
 * DISCONNECTED of an earlier connection with the same number (any down
 * socket's: a link's, a JOIN request's, one that never spoke) may still be
 * waiting to be read, and must not be taken for this one's. libzmq queues
 * a connection's DISCONNECTED before it closes the descriptor and a new
 * one's ACCEPTED before its first message, so every event of the number's
 * earlier connections is on the monitors now: read them all, and drop each
 * DISCONNECTED of fd that came before this connection's ACCEPTED (on
 * another socket's monitor: every one). The rest are handled in order, on
 * the broker's next turn. */
static void
settle_fd(kin_node *n, void *mon, int fd)
{
    void *mons[] = {n->down_mon, n->down_join_mon, n->down_far_mon};
    for (size_t i = 0; i < sizeof mons / sizeof *mons; i++)
        if (mons[i])
            read_ahead(n, mons[i]);
    size_t accepted = n->evq_head;
    for (size_t i = n->evq_head; i < n->evq_len; i++)
        if (n->evq[i].mon == mon && n->evq[i].fd == (uint32_t)fd &&
            n->evq[i].ev == ZMQ_EVENT_ACCEPTED)
            accepted = i;
    for (size_t i = n->evq_head; i < n->evq_len; i++) {
        struct kin__down_ev *e = &n->evq[i];
        if (e->fd == (uint32_t)fd && e->ev == ZMQ_EVENT_DISCONNECTED &&
            (e->mon != mon || i < accepted))
            e->ev = 0;
    }
    if (n->evq_head < n->evq_len && !n->evq_deferred &&
        !kin__broker_defer(n->broker, run_queued_deferred, n, NULL))
        n->evq_deferred = true;
}

static bool
on_down_event(void *sock, void *arg)
{
    kin_node *n = arg;
    run_queued(n); /* older than anything still on the monitors */
    uint16_t ev;
    uint32_t fd;
    int got = read_event(sock, &ev, &fd);
    if (got > 0 && ev == ZMQ_EVENT_DISCONNECTED)
        down_event(n, sock, fd);
    return got != 0;
}

static void
on_retry(uv_timer_t *t)
{
    kin_node *n = t->data;
    if (!n->parent_lost)
        return;
    /* The refused connection's session is gone: a fresh one. */
    pthread_mutex_lock(&n->smu);
    zmq_disconnect(n->up, n->parent_endpoint);
    int rc = zmq_connect(n->up, n->parent_endpoint);
    pthread_mutex_unlock(&n->smu);
    if (rc)
        KIN_WARN("context %u: cannot connect to %s again: %s", n->id,
                 n->parent_endpoint, zmq_strerror(errno));
}

/* A joiner refused in the CURVE handshake (its certificate revoked, or
 * not yet allowed): libzmq does not retry a connection that failed
 * authentication, so it is made again after a pause (1 s, doubling up to
 * 5 s), until the master lets it in. */
static void
rejoin_later(kin_node *n)
{
    if (!n->joined || kin__broker_stopping(n->broker))
        return;
    if (!n->retry_inited) {
        uv_timer_init(kin__broker_loop(n->broker), &n->retry_timer);
        n->retry_timer.data = n;
        n->retry_inited = true;
        n->retry_ms = 1000;
    }
    KIN_WARN("context %u: %s refused this context's certificate (not "
             "allowed, or revoked); trying again in %d ms",
             n->id, n->parent_endpoint, n->retry_ms);
    uv_timer_start(&n->retry_timer, on_retry, (uint64_t)n->retry_ms, 0);
    n->retry_ms = n->retry_ms < 2500 ? 2 * n->retry_ms : 5000;
}

static bool
on_up_event(void *sock, void *arg)
{
    kin_node *n = arg;
    uint16_t ev;
    uint32_t fd;
    int got = read_event(sock, &ev, &fd);
    if (got > 0 && ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && n->joined &&
        n->parent_lost) {
        /* A joiner's link is back (libzmq reconnects, with backoff):
         * HELLO again; the answer ends the loss (hello_from_parent). Not
         * on CONNECTED: a connection refused in the CURVE handshake would
         * leave a HELLO queued each time. */
        KIN_INFO("context %u: link to %s back; saying HELLO", n->id,
                 n->parent_endpoint);
        kin_msg *hello = hello_msg(n);
        if (hello)
            send_up(n, hello);
        return true;
    }
    if (got > 0 && (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                    ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)) {
        rejoin_later(n);
        return true;
    }
    if (got <= 0 || ev != ZMQ_EVENT_DISCONNECTED || n->parent_lost)
        return got != 0;
    pthread_mutex_lock(&n->smu);
    n->parent_lost = true;
    pthread_mutex_unlock(&n->smu);
    KIN_WARN("context %u: lost the link to its parent %u", n->id, n->parent_id);
    /* Everything not in our subtree is unreachable now. */
    uint32_t ids[KIN_MAX_DEPTH + 1];
    ids[0] = n->parent_id;
    int count = 1;
    for (int i = 0; i < n->n_ancestors && count < KIN_MAX_DEPTH + 1; i++)
        if (n->ancestors[i] != n->parent_id)
            ids[count++] = n->ancestors[i];
    kin__handles_peer_gone(n, ids, (size_t)count);
    if (n->joined) {
        KIN_WARN("context %u: will join %s again when it answers", n->id,
                 n->parent_endpoint);
        return true;
    }
    if (n->on_parent_lost)
        n->on_parent_lost(n, n->on_parent_lost_arg);
    return true;
}

/* --- sockets ---------------------------------------------------------------
 */

static void *
monitor_pair(kin_node *n, void *sock, const char *tag, int events)
{
    /* Named by a counter, not by n's address: a node allocated where a
     * destroyed one lived would find that one's inproc endpoint still
     * bound (ZMQ releases it asynchronously) and fail with EADDRINUSE. */
    static atomic_uint seq;
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://kin-mon-%u-%u-%s",
             atomic_fetch_add(&seq, 1), n->id, tag);
    if (zmq_socket_monitor(sock, ep, events))
        return NULL;
    void *pair = zmq_socket(kin__zctx(), ZMQ_PAIR);
    /* No high-water mark: libzmq's monitor would block its I/O thread on a
     * full pipe, and a lost DISCONNECTED would leave a link up. */
    if (pair)
        kin__zmq_set_int(pair, ZMQ_RCVHWM, 0);
    if (pair && zmq_connect(pair, ep)) {
        zmq_close(pair);
        return NULL;
    }
    return pair;
}

/* Heartbeats make a remote link that went silent (a cable cut, a host
 * gone) disconnect within the timeout, on both ends: the child's link to
 * its parent when it is remote, and the parent's tcp ROUTER or the far one
 * its ssh-started children link to. (The TTL a child's PINGs carry is no
 * substitute on the parent's end: any other message arriving after the
 * last PING disarms it.) Local links go without, so a child paused in a
 * debugger keeps its link; its pidfd tells its death. */
static void
set_heartbeat(kin_node *n, void *sock)
{
    if (!n->hb_ivl_ms)
        return;
    kin__zmq_set_int(sock, ZMQ_HEARTBEAT_IVL, n->hb_ivl_ms);
    kin__zmq_set_int(sock, ZMQ_HEARTBEAT_TIMEOUT, n->hb_timeout_ms);
    kin__zmq_set_int(sock, ZMQ_HEARTBEAT_TTL, n->hb_timeout_ms);
}

/* A tcp link leaves the machine: CURVE with the tree's key, or nothing. */
static kin_err
secure(kin_node *n, void *sock, bool server)
{
    if (!n->curve.pub[0]) {
        KIN_ERROR("context %u: tcp links need CURVE: %s", n->id,
                  zmq_has("curve") ? "no tree key (kin_node_opts.curve_key)"
                                   : "this libzmq was built without it");
        return zmq_has("curve") ? -EINVAL : -ENOTSUP;
    }
    kin_err e = server ? kin__curve_server(sock, &n->curve)
                       : kin__curve_client(sock, &n->curve);
    if (e)
        KIN_ERROR("context %u: cannot set up CURVE: %s", n->id,
                  kin_strerror(e));
    return e;
}

/* A ROUTER children connect to, bound at *endpoint (read back resolved),
 * with its monitor pair, both watched on the broker. */
static kin_err
open_router(kin_node *n, char *endpoint, size_t size, bool heartbeat,
            void **sock, void **mon, kin__watch **w, kin__watch **wmon)
{
    kin_err e;
    if (!(*sock = zmq_socket(kin__zctx(), ZMQ_ROUTER)))
        return -errno;
    kin__zmq_set_int(*sock, ZMQ_ROUTER_MANDATORY, 1);
    kin__zmq_set_int(*sock, ZMQ_SNDHWM, 0);
    kin__zmq_set_int(*sock, ZMQ_RCVHWM, 0);
    kin__zmq_set_int(*sock, ZMQ_LINGER, 200);
    if (heartbeat)
        set_heartbeat(n, *sock);
    /* A joiner coming back with its id over a new connection takes it
     * over from the one the master still holds (a tcp link broken on the
     * joiner's side is seen here only at the heartbeat timeout); its HELLO
     * then moves the link to the new connection (hello_from_child). Not
     * with certificates: libzmq hands the id over before kin sees who
     * connects, so any allowed certificate could take a joiner's id (and
     * receive what is sent to it); there, the first connection keeps it. */
    if (sock == &n->down_join && !n->join_store)
        kin__zmq_set_int(*sock, ZMQ_ROUTER_HANDOVER, 1);
    if (sock == &n->down_join && n->join_store) {
        /* Joiners by certificate (certs.c), not by the tree's key. */
        if ((e = kin__curve_server_certs(*sock, &n->join_key, n->join_store)))
            return e;
    } else if (kin__endpoint_is_tcp(endpoint) && (e = secure(n, *sock, true))) {
        return e;
    }
    if (zmq_bind(*sock, endpoint)) {
        e = -errno;
        KIN_ERROR("context %u: cannot bind %s: %s", n->id, endpoint,
                  zmq_strerror(errno));
        return e;
    }
    zmq_getsockopt(*sock, ZMQ_LAST_ENDPOINT, endpoint, &size);
    if (!(*mon = monitor_pair(n, *sock, "down",
                              ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED)))
        return -errno;
    /* The node's own ROUTER may be lent to a caller reading its reply. */
    if ((e = (w == &n->w_down ? kin__broker_watch_lendable : kin__broker_watch)(
             n->broker, *sock, on_down, n, w)) ||
        (e = kin__broker_watch(n->broker, *mon, on_down_event, n, wmon)))
        return e;
    return KIN_OK;
}

typedef struct far_req {
    kin_node *n;
    char endpoint[256];
    kin_err result;
    bool done;
} far_req;

static void
far_job(void *arg, void *unused)
{
    far_req *r = arg;
    kin_node *n = r->n;
    kin_err e = KIN_OK;
    if (!n->down_far) {
        kin__sockname_far(n->far_path, sizeof n->far_path, n->ipc_path);
        unlink(n->far_path);
        char ep[256];
        snprintf(ep, sizeof ep, "ipc://%s", n->far_path);
        /* Under smu: direct senders look at down_far. */
        pthread_mutex_lock(&n->smu);
        e = open_router(n, ep, sizeof ep, n->hb_ivl_ms > 0, &n->down_far,
                        &n->down_far_mon, &n->w_down_far, &n->w_down_far_mon);
        pthread_mutex_unlock(&n->smu);
        if (e) {
            /* Closed with the others at the node's end; not used. */
            n->far_path[0] = 0;
        }
    }
    if (!e && !n->far_path[0])
        e = -EIO; /* an earlier attempt failed */
    snprintf(r->endpoint, sizeof r->endpoint, "ipc://%s", n->far_path);
    pthread_mutex_lock(&n->mu);
    r->result = e;
    r->done = true;
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->mu);
}

kin_err
kin__router_far_endpoint(kin_node *n, char *out, size_t size)
{
    if (!n->ipc_path[0]) {
        snprintf(out, size, "%s", n->endpoint);
        return KIN_OK;
    }
    far_req r = {.n = n};
    kin_err e = kin__broker_defer(n->broker, far_job, &r, NULL);
    if (e)
        return e;
    pthread_mutex_lock(&n->mu);
    while (!r.done)
        pthread_cond_wait(&n->cond, &n->mu);
    pthread_mutex_unlock(&n->mu);
    if (!r.result)
        snprintf(out, size, "%s", r.endpoint);
    return r.result;
}

/* How often a master admitting joiners by certificate checks that theirs
 * are still allowed: the bound on how long a revoked joiner stays. */
#define REVOKE_CHECK_MS 1000

/* Broker: drops the joiners whose certificate left the allowed directory.
 * libzmq cannot close one peer of a ROUTER; shutting the connection's
 * socket down makes it see the peer gone (DISCONNECTED, then
 * kin__router_link_down as for any lost link), and a reconnect is
 * refused in the handshake. */
static void
check_revoked(uv_timer_t *t)
{
    kin_node *n = t->data;
    void *val;
    uint32_t id;
    for (size_t it = 0; kin__u32map_next(&n->children, &it, &id, &val);) {
        kin__child *c = val;
        if (!c->joined || !c->key[0] || c->revoked || c->fd < 0 ||
            kin__certs_allow(n->join_store, c->key, NULL, 0))
            continue;
        c->revoked = true;
        kin__join_revoked(n, c);
        KIN_WARN("context %u: certificate %s of joined context %u was "
                 "revoked: dropping its link",
                 n->id, c->key, id);
        shutdown(c->fd, SHUT_RDWR);
    }
}

kin_err
kin__router_open(kin_node *n)
{
    void *ctx = kin__zctx();
    kin_err e = KIN_OK;
    if (n->is_operator)
        goto up; /* an operator has no children */
    /* Links over tcp may cross a network: heartbeats. */
    if ((e = open_router(n, n->endpoint, sizeof n->endpoint,
                         kin__endpoint_is_tcp(n->endpoint), &n->down,
                         &n->down_mon, &n->w_down, &n->w_down_mon)))
        return e;
    if (n->join_store) {
        uv_timer_init(kin__broker_loop(n->broker), &n->revoke_timer);
        n->revoke_timer.data = n;
        uv_timer_start(&n->revoke_timer, check_revoked, REVOKE_CHECK_MS,
                       REVOKE_CHECK_MS);
    }
    if (n->join_bind[0]) {
        if (kin__join_endpoint_live(n->join_bind)) {
            KIN_ERROR("context %u: a tree already accepts joins at %s", n->id,
                      n->join_bind);
            return -EADDRINUSE;
        }
        if ((e = open_router(n, n->join_bind, sizeof n->join_bind,
                             kin__endpoint_is_tcp(n->join_bind), &n->down_join,
                             &n->down_join_mon, &n->w_down_join,
                             &n->w_down_join_mon)))
            return e;
        n->join_bound = true;
    }

up:
    if (!n->has_parent) {
        open_direct(n, true);
        return KIN_OK;
    }
    n->up = zmq_socket(ctx, ZMQ_DEALER);
    if (!n->up)
        return -errno;
    uint8_t rid[4] = {(uint8_t)n->id, (uint8_t)(n->id >> 8),
                      (uint8_t)(n->id >> 16), (uint8_t)(n->id >> 24)};
    zmq_setsockopt(n->up, ZMQ_ROUTING_ID, rid, sizeof rid);
    kin__zmq_set_int(n->up, ZMQ_SNDHWM, 0);
    kin__zmq_set_int(n->up, ZMQ_RCVHWM, 0);
    kin__zmq_set_int(n->up, ZMQ_LINGER, 200);
    if (n->hb_up)
        set_heartbeat(n, n->up);
    if (n->join_server[0]) {
        if ((e = kin__curve_client_as(n->up, n->join_server, &n->join_own)))
            return e;
    } else if ((n->curve_up || kin__endpoint_is_tcp(n->parent_endpoint)) &&
               (e = secure(n, n->up, false))) {
        return e;
    }
    if (n->joined) {
        /* Rejoining: libzmq retries the connection, backing off from
         * 100 ms to 5 s between attempts. */
        kin__zmq_set_int(n->up, ZMQ_RECONNECT_IVL, 100);
        kin__zmq_set_int(n->up, ZMQ_RECONNECT_IVL_MAX, 5000);
    }
    int events = ZMQ_EVENT_DISCONNECTED |
                 (n->joined ? ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                  ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                  ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                            : 0);
    if (!(n->up_mon = monitor_pair(n, n->up, "up", events)))
        return -errno;
    if ((e = kin__broker_watch_lendable(n->broker, n->up, on_up, n,
                                        &n->w_up)) ||
        (e = kin__broker_watch(n->broker, n->up_mon, on_up_event, n,
                               &n->w_up_mon)))
        return e;
    if (zmq_connect(n->up, n->parent_endpoint)) {
        return -errno;
    }
    kin_msg *hello = hello_msg(n);
    if (!hello)
        return -ENOMEM;
    send_up(n, hello);
    open_direct(n, true);
    return KIN_OK;
}

void
kin__router_close(kin_node *n)
{
    /* A direct send under way ends before the sockets close; later ones
     * find the router closed. */
    open_direct(n, false);
    /* The broker has closed the watches with the rest of its handles. */
    n->w_up = n->w_down = n->w_up_mon = n->w_down_mon = NULL;
    n->w_down_far = n->w_down_far_mon = NULL;
    n->w_down_join = n->w_down_join_mon = NULL;
    if (n->down_join) {
        zmq_socket_monitor(n->down_join, NULL, 0);
        zmq_close(n->down_join);
    }
    if (n->down_join_mon)
        zmq_close(n->down_join_mon);
    n->down_join = n->down_join_mon = NULL;
    if (n->down_far) {
        zmq_socket_monitor(n->down_far, NULL, 0);
        zmq_close(n->down_far);
    }
    if (n->down_far_mon)
        zmq_close(n->down_far_mon);
    n->down_far = n->down_far_mon = NULL;
    if (n->up) {
        zmq_socket_monitor(n->up, NULL, 0);
        zmq_close(n->up);
    }
    if (n->down) {
        zmq_socket_monitor(n->down, NULL, 0);
        zmq_close(n->down);
    }
    if (n->up_mon)
        zmq_close(n->up_mon);
    if (n->down_mon)
        zmq_close(n->down_mon);
    n->up = n->down = n->up_mon = n->down_mon = NULL;
    kin__lead_free(n);
}
