/* Joining a running tree from outside: the joiner's JOIN request (made on
 * a socket of its own before its node runs), the master's answer (an id
 * from the joined range, the name checked against the live contexts'),
 * and the joiner's announcements when its link to a master comes back. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <zmq.h>

#include <kin/pack.h>

#include "core/log_internal.h"
#include "core/msg_internal.h"
#include "core/sync.h"
#include "core/task.h"
#include "router/certs.h"
#include "router/join.h"
#include "router/names.h"
#include "router/node_impl.h"
#include "router/service_impl.h"
#include "router/zctx.h"

#define PENDING_MAX 64
#define ID_BLOCK 64u /* as node.c hands them out */

/* An id given to a joiner that has not said HELLO yet: neither the id nor
 * the name goes to another joiner meanwhile. */
typedef struct join_pending {
    uint32_t id;
    char name[64];
    uint64_t until; /* monotonic ns */
} join_pending;

struct kin__joins {
    join_pending items[PENDING_MAX];
    int len;
    uint64_t rng;
};

/* --- the joiner's request ------------------------------------------------- */

static void say(char *why, size_t size, const char *fmt, ...) KIN_PRINTF(3, 4);

static void
say(char *why, size_t size, const char *fmt, ...)
{
    if (!why || !size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
}

/* Sends m as header + body frames, after a routing frame when rid. */
static int
send_msg(void *sock, const void *rid, size_t rid_len, const kin_msg *m)
{
    uint8_t hdr[KIN_HDR_SIZE];
    kin__msg_header_encode(m, hdr);
    if (rid && zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -errno;
    if (zmq_send(sock, hdr, sizeof hdr, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(sock, m->body, m->len, ZMQ_DONTWAIT) < 0)
        return -errno;
    return 0;
}

bool
kin__join_endpoint_live(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6))
        return false;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(endpoint + 6) >= sizeof sa.sun_path)
        return false;
    strcpy(sa.sun_path, endpoint + 6);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool live = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return live;
}

/* A PAIR that hears of sock's handshakes refused by the server. */
static void *
refusal_watch(void *sock)
{
    static atomic_uint seq;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://kin-join-ask-%u",
             atomic_fetch_add(&seq, 1));
    if (zmq_socket_monitor(sock, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL))
        return NULL;
    void *pair = zmq_socket(kin__zctx(), ZMQ_PAIR);
    if (pair && zmq_connect(pair, ep)) {
        zmq_close(pair);
        pair = NULL;
    }
    return pair;
}

/* Reads the answer [code, id, parent, text, log endpoint]. */
static kin_err
read_answer(void *sock, void *mon, int timeout_ms, uint32_t *id,
            uint32_t *parent, char *log_ep, size_t log_size, char *why,
            size_t why_size, const char *endpoint)
{
    zmq_pollitem_t it[2] = {{.socket = sock, .events = ZMQ_POLLIN},
                            {.socket = mon, .events = ZMQ_POLLIN}};
    int rc = zmq_poll(it, mon ? 2 : 1, timeout_ms);
    if (rc > 0 && !(it[0].revents & ZMQ_POLLIN)) {
        say(why, why_size,
            "%s refused this context's certificate in the CURVE handshake "
            "(not in the master's allowed directory, revoked, or the "
            "wrong server key)",
            endpoint);
        return KIN_EREFUSED;
    }
    if (rc <= 0) {
        say(why, why_size,
            "no answer to the join request from %s within %d ms (is a "
            "master accepting joins there? kin_node_opts.join_bind)",
            endpoint, timeout_ms);
        return rc < 0 ? -errno : KIN_ETIMEOUT;
    }
    zmq_msg_t f[2];
    zmq_msg_init(&f[0]);
    zmq_msg_init(&f[1]);
    kin_err e = KIN_OK;
    if (zmq_msg_recv(&f[0], sock, 0) < 0 || !zmq_msg_more(&f[0]) ||
        zmq_msg_recv(&f[1], sock, 0) < 0 || zmq_msg_more(&f[1]))
        e = KIN_EBADMSG;
    kin_msg *m = NULL;
    if (!e)
        e = kin__msg_decode(&m, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]),
                            zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), 0);
    unsigned theirs =
        zmq_msg_size(&f[0]) > 2 ? ((const uint8_t *)zmq_msg_data(&f[0]))[2] : 0;
    zmq_msg_close(&f[0]);
    zmq_msg_close(&f[1]);
    int code = 0;
    const char *text = "", *log = "";
    size_t len = 0, log_len = 0;
    if (!e && kin_unpack_buf(m->body, m->len, "iuuSS", &code, id, parent, &text,
                             &len, &log, &log_len))
        e = KIN_EBADMSG;
    if (!e)
        snprintf(log_ep, log_size, "%.*s", (int)log_len, log);
    if (e == KIN_EBADVERSION) {
        say(why, why_size,
            "%s answered in kin protocol version %u; this build speaks "
            "version %u",
            endpoint, theirs, KIN_PROTO_VERSION);
    } else if (e) {
        say(why, why_size, "the answer to the join request from %s: %s",
            endpoint, kin_strerror(e));
    } else if (code) {
        e = code;
        say(why, why_size, "%s refused the join: %.*s", endpoint, (int)len,
            text);
    }
    kin_msg_destroy(&m);
    return e;
}

kin_err
kin__join_ask(const char *endpoint, const char *name, const char *server_pub,
              const kin__curve_key *own, int timeout_ms, uint32_t *id,
              uint32_t *parent, char *log_ep, size_t log_size, char *why,
              size_t why_size)
{
    bool tcp = kin__endpoint_is_tcp(endpoint);
    if (!tcp && strncmp(endpoint, "ipc://", 6)) {
        say(why, why_size, "join endpoint %s: ipc:// or tcp:// only", endpoint);
        return -EINVAL;
    }
    struct stat st;
    if (!tcp && stat(endpoint + 6, &st)) {
        kin_err e = -errno;
        say(why, why_size, "no tree accepts joins at %s: %s", endpoint,
            strerror(errno));
        return e;
    }
    if (tcp && (!server_pub[0] || !own->sec[0])) {
        say(why, why_size,
            "joining over tcp needs keys: join_cert and join_server_cert "
            "(or the tree's curve_key)");
        return -EINVAL;
    }
    void *s = zmq_socket(kin__zctx(), ZMQ_DEALER);
    if (!s)
        return -errno;
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    kin_err e = tcp ? kin__curve_client_as(s, server_pub, own) : KIN_OK;
    void *mon = NULL;
    if (!e && tcp)
        mon = refusal_watch(s);
    if (!e && zmq_connect(s, endpoint))
        e = -errno;
    kin_buf b = {0};
    kin_msg *m = NULL;
    if (!e && !(e = kin_pack(&b, "us", (uint32_t)KIN_PROTO_VERSION, name)) &&
        !(e = kin_msg_new_copy(&m, b.data, b.len))) {
        m->handle = KIN_HANDLE_JOIN;
        m->dst = KIN_MASTER_ID;
        e = send_msg(s, NULL, 0, m);
        kin_msg_destroy(&m);
    }
    kin_buf_release(&b);
    if (e)
        say(why, why_size, "cannot send a join request to %s: %s", endpoint,
            kin_strerror(e));
    else
        e = read_answer(s, mon, timeout_ms, id, parent, log_ep, log_size, why,
                        why_size, endpoint);
    if (mon) {
        zmq_socket_monitor(s, NULL, 0);
        zmq_close(mon);
    }
    zmq_close(s);
    if (!e && !kin__join_id_ok(*id)) {
        say(why, why_size, "%s gave an id out of the joined range: %u",
            endpoint, *id);
        e = KIN_EBADMSG;
    }
    return e;
}

/* --- the audit trail ------------------------------------------------------ */

void
kin__join_peer_of(int fd, kin__join_peer *p)
{
    p->pid = p->uid = -1;
    p->address[0] = 0;
    snprintf(p->transport, sizeof p->transport, "?");
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len))
        return;
    if (ss.ss_family == AF_UNIX) {
        snprintf(p->transport, sizeof p->transport, "ipc");
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (!getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl)) {
            p->pid = (int)cr.pid;
            p->uid = (int)cr.uid;
        }
        return;
    }
    snprintf(p->transport, sizeof p->transport, "tcp");
    len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len))
        return;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(p->address, sizeof p->address, "%s:%u", host, port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 a6;
        memcpy(&a6, &ss, sizeof a6);
        inet_ntop(AF_INET6, &a6.sin6_addr, host, sizeof host);
        port = ntohs(a6.sin6_port);
        snprintf(p->address, sizeof p->address, "[%s]:%u", host, port);
    }
}

static const char *
or_empty(const char *s)
{
    return s ? s : "";
}

/* Hands ev to the layer above (kin__node_on_join), every string set. */
static void
tell(kin_node *n, kin__join_event *ev)
{
    if (!n->join_hook)
        return;
    ev->name = or_empty(ev->name);
    ev->transport = or_empty(ev->transport);
    ev->address = or_empty(ev->address);
    ev->key = or_empty(ev->key);
    ev->cert_host = or_empty(ev->cert_host);
    ev->cert_role = or_empty(ev->cert_role);
    ev->how = or_empty(ev->how);
    ev->error = or_empty(ev->error);
    n->join_hook(n->join_hook_arg, ev);
}

/* An event about joined context c, from what the master knows of it. */
static kin__join_event
about(const kin__child *c, kin__join_what what)
{
    return (kin__join_event){.what = what,
                             .id = c->id,
                             .name = c->peer.name,
                             .transport = c->peer.transport,
                             .pid = c->peer.pid,
                             .uid = c->peer.uid,
                             .address = c->peer.address,
                             .key = c->key,
                             .cert_host = c->peer.host,
                             .cert_role = c->peer.role};
}

/* A join refused: how (a reason code), text (what the peer was told),
 * name (asked for) or id (claimed in a HELLO), the certificate key, over
 * connection fd. */
static void
refused(kin_node *n, int fd, const char *how, const char *text,
        const char *name, uint32_t id, const char *key, unsigned their_version)
{
    kin__join_peer p = {0};
    kin__join_peer_of(fd, &p);
    kin__join_event ev = {.what = KIN__JOIN_REFUSED,
                          .id = id,
                          .name = name,
                          .transport = p.transport,
                          .pid = p.pid,
                          .uid = p.uid,
                          .address = p.address,
                          .key = key,
                          .how = how,
                          .error = text,
                          .their_version = their_version};
    tell(n, &ev);
}

void
kin__join_hello_refused(kin_node *n, uint32_t id, int fd, const char *how,
                        const char *key)
{
    char text[128];
    if (!strcmp(how, "id_taken"))
        snprintf(text, sizeof text,
                 "HELLO as joined context %u, which another certificate "
                 "holds",
                 id);
    else
        snprintf(text, sizeof text,
                 "HELLO from %u, not an id of the joined range, on the join "
                 "endpoint",
                 id);
    refused(n, fd, how, text, NULL, id, key, 0);
}

void
kin__join_leaving(kin__child *c)
{
    c->peer.leaving = true;
}

void
kin__join_left(kin_node *n, const kin__child *c)
{
    kin__join_event ev = about(c, KIN__JOIN_LEAVE);
    ev.how = c->revoked ? "revoked" : c->peer.leaving ? "left" : "link_lost";
    tell(n, &ev);
}

void
kin__join_revoked(kin_node *n, const kin__child *c)
{
    kin__join_event ev = about(c, KIN__JOIN_REVOKED);
    tell(n, &ev);
}

void
kin__join_cert_refused(void *node, const char *pub, const char *addr)
{
    kin_node *n = node;
    kin__join_event ev = {
        .what = KIN__JOIN_REFUSED,
        .transport = "tcp",
        .pid = -1,
        .uid = -1,
        .address = addr,
        .key = pub,
        .how = "unknown_certificate",
        .error = "the certificate is not in the allowed directory (unknown "
                 "or revoked)"};
    tell(n, &ev);
}

/* --- the master's answer -------------------------------------------------- */

kin_err
kin__join_start(kin_node *n)
{
    struct kin__joins *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->rng = kin__now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15u;
    if (!j->rng)
        j->rng = 1;
    n->joins = j;
    return KIN_OK;
}

void
kin__join_free(kin_node *n)
{
    free(n->joins);
    n->joins = NULL;
}

static void
answer(kin_node *n, void *sock, const void *rid, size_t rid_len, kin_err code,
       uint32_t id, const char *text)
{
    kin_buf b = {0};
    kin_msg *m = NULL;
    pthread_mutex_lock(&n->mu);
    char log[sizeof n->tree_log];
    memcpy(log, n->tree_log, sizeof log);
    pthread_mutex_unlock(&n->mu);
    if (!kin_pack(&b, "iuuss", (int)code, id, n->id, text, log) &&
        !kin_msg_new_copy(&m, b.data, b.len)) {
        m->src = m->auth = n->id;
        m->handle = KIN_HANDLE_JOIN;
        send_msg(sock, rid, rid_len, m);
        kin__broker_touch(n->w_down_join);
    }
    kin_msg_destroy(&m);
    kin_buf_release(&b);
}

static void
expire(struct kin__joins *j)
{
    uint64_t now = kin__now_ns();
    for (int i = 0; i < j->len;)
        if (j->items[i].until <= now)
            j->items[i] = j->items[--j->len];
        else
            i++;
}

static bool
pending_has(struct kin__joins *j, uint32_t id, const char *name)
{
    for (int i = 0; i < j->len; i++)
        if (j->items[i].id == id || (name && !strcmp(j->items[i].name, name)))
            return true;
    return false;
}

static uint32_t
draw_id(kin_node *n)
{
    struct kin__joins *j = n->joins;
    for (;;) {
        j->rng ^= j->rng << 13;
        j->rng ^= j->rng >> 7;
        j->rng ^= j->rng << 17;
        uint32_t id =
            KIN__JOIN_ID_FIRST +
            (uint32_t)(j->rng % (KIN__JOIN_ID_LAST - KIN__JOIN_ID_FIRST + 1u));
        if (!kin__u32map_has(&n->routes, id) && !pending_has(j, id, NULL))
            return id;
    }
}

void
kin__join_on_request(kin_node *n, void *sock, const void *rid, size_t rid_len,
                     int fd, kin_msg *m)
{
    struct kin__joins *j = n->joins;
    uint32_t version = 0;
    const char *name = NULL;
    size_t len = 0;
    char text[192];
    if (m->handle != KIN_HANDLE_JOIN || !j ||
        kin_unpack_buf(m->body, m->len, "uS", &version, &name, &len)) {
        atomic_fetch_add(&n->stats.malformed, 1);
        kin_msg_destroy(&m);
        return;
    }
    char nm[64];
    snprintf(nm, sizeof nm, "%.*s", (int)(len < 63 ? len : 63), name);
    bool name_ok = len && len <= 63 && !memchr(name, 0, len);
    kin_msg_destroy(&m); /* name pointed into it */
    expire(j);
    if (version != KIN_PROTO_VERSION) {
        snprintf(text, sizeof text,
                 "protocol version %u asked, this tree speaks version %u",
                 version, KIN_PROTO_VERSION);
        refused(n, fd, "protocol_version", text, nm, 0, NULL, version);
        answer(n, sock, rid, rid_len, KIN_EBADVERSION, 0, text);
        return;
    }
    if (!name_ok) {
        const char *why = "a joiner needs a name of 1 to 63 bytes";
        refused(n, fd, "bad_name", why, nm, 0, NULL, 0);
        answer(n, sock, rid, rid_len, -EINVAL, 0, why);
        return;
    }
    uint32_t holder = kin__names_find(n, nm);
    if (holder != KIN_NO_CTX || !strcmp(nm, n->name) ||
        pending_has(j, UINT32_MAX, nm)) {
        snprintf(text, sizeof text,
                 "the name '%s' is taken by context %u of the tree", nm,
                 holder != KIN_NO_CTX   ? holder
                 : !strcmp(nm, n->name) ? n->id
                                        : UINT32_MAX);
        KIN_WARN("context %u: join as '%s' refused: name taken", n->id, nm);
        refused(n, fd, "name_taken", text, nm, 0, NULL, 0);
        answer(n, sock, rid, rid_len, KIN_EEXISTS, 0, text);
        return;
    }
    if (j->len == PENDING_MAX) {
        const char *why = "too many joins under way; try again";
        refused(n, fd, "busy", why, nm, 0, NULL, 0);
        answer(n, sock, rid, rid_len, KIN_EBUSY, 0, why);
        return;
    }
    join_pending *p = &j->items[j->len++];
    p->id = draw_id(n);
    snprintf(p->name, sizeof p->name, "%s", nm);
    p->until = kin__now_ns() + (uint64_t)n->connect_timeout_ms * 1000000u;
    KIN_INFO("context %u: '%s' joins as context %u", n->id, nm, p->id);
    answer(n, sock, rid, rid_len, KIN_OK, p->id, "");
}

void
kin__join_refuse_version(kin_node *n, void *sock, const void *rid,
                         size_t rid_len, int fd, unsigned theirs)
{
    char text[160];
    snprintf(text, sizeof text,
             "the joiner speaks kin protocol version %u, this tree version "
             "%u",
             theirs, KIN_PROTO_VERSION);
    KIN_WARN("context %u: join refused: %s", n->id, text);
    refused(n, fd, "protocol_version", text, NULL, 0, NULL, theirs);
    answer(n, sock, rid, rid_len, KIN_EBADVERSION, 0, text);
}

void
kin__join_linked(kin_node *n, kin__child *c, const char *name, size_t name_len,
                 bool new_conn)
{
    struct kin__joins *j = n->joins;
    bool given = false;
    for (int i = 0; j && i < j->len; i++)
        if (j->items[i].id == c->id) {
            j->items[i] = j->items[--j->len];
            given = true;
            break;
        }
    if (!new_conn)
        return;
    kin__join_peer *p = &c->peer;
    kin__join_peer_of(c->fd, p);
    snprintf(p->name, sizeof p->name, "%.*s",
             (int)(name_len < 63 ? name_len : 63), name ? name : "");
    p->host[0] = p->role[0] = 0;
    if (c->key[0] && n->join_store)
        kin__certs_meta(n->join_store, c->key, p->host, p->role);
    p->leaving = false;
    kin__join_event ev = about(c, KIN__JOIN_ACCEPT);
    ev.rejoin = !given;
    tell(n, &ev);
}

void
kin__join_id_seen(kin_node *n, uint32_t id)
{
    if (n->has_parent || kin__join_id_ok(id) || id >= KIN__JOIN_ID_FIRST)
        return;
    pthread_mutex_lock(&n->mu);
    if (id >= n->id_next) /* blocks are [64k + 1, 64k + 64] */
        n->id_next = ((id - 1u) / ID_BLOCK + 1u) * ID_BLOCK + 1u;
    pthread_mutex_unlock(&n->mu);
}

/* --- the joiner, back ----------------------------------------------------- */

void
kin__join_leave_acked(kin_node *n)
{
    pthread_mutex_lock(&n->mu);
    n->leave_acked = true;
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->mu);
}

static void
leave_job(void *arg, void *data)
{
    (void)data;
    kin_node *n = arg;
    kin_msg *m = NULL;
    if (!n->up || n->parent_lost || kin_msg_new_copy(&m, "", 0)) {
        kin__join_leave_acked(n); /* nobody to tell */
        return;
    }
    m->src = m->auth = n->id;
    m->dst = n->parent_id;
    m->handle = KIN_HANDLE_JOIN;
    kin__route(n, m);
}

/* How long a leaving joiner waits for the master to hear it. */
#define LEAVE_WAIT_MS 500

void
kin__join_say_leave(kin_node *n)
{
    if (!n->joined || !n->broker)
        return;
    pthread_mutex_lock(&n->mu);
    n->leave_acked = false;
    pthread_mutex_unlock(&n->mu);
    if (kin__broker_defer(n->broker, leave_job, n, NULL))
        return;
    /* The process may exit right after kin_node_destroy, and libzmq's I/O
     * thread with it: the notice must have left before. */
    struct timespec ts;
    kin__deadline(&ts, CLOCK_REALTIME, LEAVE_WAIT_MS);
    pthread_mutex_lock(&n->mu);
    while (!n->leave_acked &&
           pthread_cond_timedwait(&n->cond, &n->mu, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&n->mu);
}

void
kin__join_relinked(kin_node *n)
{
    kin__names_relinked(n);
    struct kin__services *ss = n->svc;
    if (ss)
        kin__svc_lock(n);
    for (int i = 0; ss && i < ss->len; i++) {
        svc *s = ss->items[i];
        for (int k = 0; k < s->nprov; k++) {
            prov p = s->provs[k];
            kin__svc_provider_add(n, s, p.ctx, p.via, p.hops, p.bound);
        }
        if (kin__svc_holds(s))
            kin__svc_announce_hold(n, s);
    }
    if (ss)
        kin__svc_unlock(n);
}
