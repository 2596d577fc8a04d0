/* CURVE for tcp links. Every context of a tree holds the tree's key pair
 * (the master makes it; children get it through the spawn channel): tcp
 * servers are CURVE servers with it, and the ZAP handler below admits a
 * client only when the public key it proves to hold is that server's own
 * tree key, which the server names in its ZAP domain ("kin:" + the public
 * key in Z85). So a peer needs the tree's secret to get in, trees sharing a
 * process stay apart, and nothing is kept per tree; anyone else is refused
 * during the handshake, before a single message is read. Children started
 * over ssh or exec hold a certificate of their own instead of the tree's
 * secret (child_certs.c): the handler admits those too, for the tree they
 * were issued for, while they are valid. */
#include "router/curve.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "core/log_internal.h"
#include "core/sync.h"
#include "router/certs.h"
#include "router/child_certs.h"
#include "router/zctx.h"

#define DOMAIN_PREFIX "kin:"
#define DOMAIN_LEN (4 + KIN__KEY_LEN - 1)

/* The ZAP handler: one thread per process (per ZMQ context). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static bool zap_running;

/* Join endpoints admitting by certificate: their ZAP domain
 * ("kinj:" + a number) and store (under mu). */
#define CERT_DOMAIN_PREFIX "kinj:"
#define STORES_MAX 16
static struct {
    char domain[24];
    kin__certs *certs;
} stores[STORES_MAX];
static unsigned stores_seq;

static void
forget_in_child(void)
{
    /* The handler thread did not survive the fork; the ZMQ context is
     * forgotten too (zctx.c), so a child starts its own on demand. */
    pthread_mutex_init(&mu, NULL);
    zap_running = false;
    memset(stores, 0, sizeof stores);
}

bool
kin__endpoint_is_tcp(const char *endpoint)
{
    return endpoint && strncmp(endpoint, "tcp://", 6) == 0;
}

kin_err
kin__curve_generate(kin__curve_key *k)
{
    memset(k, 0, sizeof *k);
    if (!zmq_has("curve"))
        return -ENOTSUP;
    return zmq_curve_keypair(k->pub, k->sec) ? -errno : KIN_OK;
}

kin_err
kin__curve_parse(kin__curve_key *k, const char *text)
{
    memset(k, 0, sizeof *k);
    /* Z85 has ':' in its alphabet: the separators are found by position. */
    size_t len = text ? strlen(text) : 0;
    bool child = len == 3 * KIN__KEY_LEN - 1;
    if ((len != 2 * KIN__KEY_LEN - 1 && !child) ||
        text[KIN__KEY_LEN - 1] != ':' ||
        (child && text[2 * KIN__KEY_LEN - 1] != ':'))
        return -EINVAL;
    memcpy(k->pub, text, KIN__KEY_LEN - 1);
    memcpy(k->sec, text + KIN__KEY_LEN, KIN__KEY_LEN - 1);
    if (child)
        memcpy(k->server, text + 2 * KIN__KEY_LEN, KIN__KEY_LEN - 1);
    uint8_t raw[32];
    char derived[KIN__KEY_LEN];
    if (!zmq_z85_decode(raw, k->pub) || !zmq_z85_decode(raw, k->sec) ||
        (child && !zmq_z85_decode(raw, k->server)) ||
        zmq_curve_public(derived, k->sec) || strcmp(derived, k->pub)) {
        memset(k, 0, sizeof *k);
        return -EINVAL;
    }
    return KIN_OK;
}

void
kin__curve_format(const kin__curve_key *k, char *out)
{
    if (k->server[0])
        snprintf(out, KIN__KEY_TEXT_LEN, "%s:%s:%s", k->pub, k->sec, k->server);
    else
        snprintf(out, KIN__KEY_TEXT_LEN, "%s:%s", k->pub, k->sec);
}

/* --- the ZAP handler (RFC 27) ---------------------------------------------
 */

static bool
frame_is(zmq_msg_t *f, const char *s)
{
    size_t len = strlen(s);
    return zmq_msg_size(f) == len && memcmp(zmq_msg_data(f), s, len) == 0;
}

/* Whether the client's key (credential) is the key the domain names, or a
 * valid certificate issued here to a child of that tree (user gets its
 * public key then, and the refusal of an expired one is logged here). */
static bool
key_matches(zmq_msg_t *domain, zmq_msg_t *credential, char *user,
            const char *addr, bool *said)
{
    if (zmq_msg_size(domain) != DOMAIN_LEN ||
        memcmp(zmq_msg_data(domain), DOMAIN_PREFIX, 4) ||
        zmq_msg_size(credential) != 32)
        return false;
    char text[KIN__KEY_LEN];
    memcpy(text, (char *)zmq_msg_data(domain) + 4, KIN__KEY_LEN - 1);
    text[KIN__KEY_LEN - 1] = 0;
    uint8_t key[32];
    if (!zmq_z85_decode(key, text))
        return false;
    if (memcmp(key, zmq_msg_data(credential), 32) == 0)
        return true;
    bool expired;
    char who[160];
    if (kin__child_cert_admit(text, zmq_msg_data(credential), &expired, who,
                              sizeof who)) {
        zmq_z85_encode(user, zmq_msg_data(credential), 32);
        return true;
    }
    if (expired) {
        char pub[KIN__KEY_LEN];
        zmq_z85_encode(pub, zmq_msg_data(credential), 32);
        KIN_WARN("refused a connection from %s: the certificate %s of child "
                 "%s has expired",
                 addr, pub, who);
        *said = true;
    }
    return false;
}

/* A join endpoint's domain: whether the client's certificate (the
 * credential) is in its store; user gets the key in Z85. */
static bool
cert_allowed(zmq_msg_t *domain, zmq_msg_t *credential, char *user,
             const char *addr)
{
    size_t len = zmq_msg_size(domain);
    if (zmq_msg_size(credential) != 32)
        return false;
    zmq_z85_encode(user, zmq_msg_data(credential), 32);
    bool ok = false, known = false;
    char who[160] = "";
    pthread_mutex_lock(&mu);
    for (int i = 0; i < STORES_MAX; i++) {
        if (stores[i].certs && strlen(stores[i].domain) == len &&
            !memcmp(stores[i].domain, zmq_msg_data(domain), len)) {
            known = true;
            ok = kin__certs_admit(stores[i].certs, user, addr, who, sizeof who);
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    if (ok)
        KIN_INFO("admitted a joiner from %s with certificate %s (%s)", addr,
                 user, who);
    else if (known)
        KIN_WARN("refused a joiner from %s: certificate %s is not in the "
                 "allowed directory (unknown or revoked)",
                 addr, user);
    return ok;
}

static bool
is_cert_domain(zmq_msg_t *domain)
{
    size_t n = strlen(CERT_DOMAIN_PREFIX);
    return zmq_msg_size(domain) > n &&
           !memcmp(zmq_msg_data(domain), CERT_DOMAIN_PREFIX, n);
}

/* Frames: version, request id, domain, address, routing id, mechanism,
 * then the mechanism's credentials (CURVE: the client's public key). */
static void
answer(void *sock, zmq_msg_t *f, int count)
{
    char user[KIN__KEY_LEN] = "";
    char addr[64] = "?";
    if (count > 3) {
        size_t len = zmq_msg_size(&f[3]);
        if (len >= sizeof addr)
            len = sizeof addr - 1;
        memcpy(addr, zmq_msg_data(&f[3]), len);
        addr[len] = 0;
    }
    bool by_cert = count == 7 && is_cert_domain(&f[2]);
    bool ok = count == 7 && frame_is(&f[0], "1.0") && frame_is(&f[5], "CURVE");
    bool said = false;
    if (ok && by_cert)
        ok = cert_allowed(&f[2], &f[6], user, addr);
    else if (ok)
        ok = key_matches(&f[2], &f[6], user, addr, &said);
    if (!ok && !by_cert && !said) {
        KIN_WARN("refused a connection from %s: it does not hold this "
                 "tree's CURVE key (nor a live certificate of a child)",
                 addr);
    }
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    if (count > 1)
        zmq_send(sock, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    const char *text = ok ? "OK" : "unknown key";
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE); /* user id */
    zmq_send(sock, "", 0, 0);                        /* metadata */
}

static void *
zap_main(void *sock)
{
    kin__thread_name("kin-zap");
    for (;;) {
        zmq_msg_t f[8];
        int count = 0;
        int more = 1;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, sock, 0) < 0) {
                zmq_msg_close(&part);
                if (errno == EINTR)
                    continue;
                goto out; /* the context is going away */
            }
            more = zmq_msg_more(&part);
            if (count < 8)
                f[count++] = part;
            else
                zmq_msg_close(&part);
        }
        answer(sock, f, count);
        for (int i = 0; i < count; i++)
            zmq_msg_close(&f[i]);
    }
out:
    zmq_close(sock);
    return NULL;
}

/* Starts the handler, once per process. */
static kin_err
zap_start(void)
{
    kin__forget_in_child(forget_in_child);
    kin_err e = KIN_OK;
    pthread_mutex_lock(&mu);
    if (!zap_running) {
        void *sock = zmq_socket(kin__zctx(), ZMQ_REP);
        pthread_t t;
        if (!sock || zmq_bind(sock, "inproc://zeromq.zap.01")) {
            e = -errno;
        } else if (pthread_create(&t, NULL, zap_main, sock)) {
            e = -EAGAIN;
        } else {
            pthread_detach(t);
            zap_running = true;
        }
        if (e && sock)
            zmq_close(sock);
    }
    pthread_mutex_unlock(&mu);
    return e;
}

/* --- sockets ---------------------------------------------------------------
 */

kin_err
kin__curve_server(void *sock, const kin__curve_key *k)
{
    if (!zmq_has("curve"))
        return -ENOTSUP;
    kin_err e = zap_start();
    if (e)
        return e;
    char domain[DOMAIN_LEN + 1];
    snprintf(domain, sizeof domain, DOMAIN_PREFIX "%s", k->pub);
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k->sec, KIN__KEY_LEN - 1) ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, DOMAIN_LEN))
        return -errno;
    return KIN_OK;
}

kin_err
kin__curve_client(void *sock, const kin__curve_key *k)
{
    if (!zmq_has("curve"))
        return -ENOTSUP;
    const char *server = k->server[0] ? k->server : k->pub;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, KIN__KEY_LEN - 1) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k->pub, KIN__KEY_LEN - 1) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k->sec, KIN__KEY_LEN - 1))
        return -errno;
    return KIN_OK;
}

kin_err
kin__curve_client_as(void *sock, const char *server_pub,
                     const kin__curve_key *own)
{
    if (!zmq_has("curve"))
        return -ENOTSUP;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_pub,
                       KIN__KEY_LEN - 1) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, own->pub, KIN__KEY_LEN - 1) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, own->sec, KIN__KEY_LEN - 1))
        return -errno;
    return KIN_OK;
}

kin_err
kin__curve_server_certs(void *sock, const kin__curve_key *k,
                        struct kin__certs *certs)
{
    if (!zmq_has("curve"))
        return -ENOTSUP;
    kin_err e = zap_start();
    if (e)
        return e;
    char domain[24] = "";
    pthread_mutex_lock(&mu);
    for (int i = 0; i < STORES_MAX && !domain[0]; i++) {
        if (!stores[i].certs) {
            snprintf(stores[i].domain, sizeof stores[i].domain,
                     CERT_DOMAIN_PREFIX "%u", stores_seq++);
            stores[i].certs = certs;
            memcpy(domain, stores[i].domain, sizeof domain);
        }
    }
    pthread_mutex_unlock(&mu);
    if (!domain[0])
        return -ENOMEM;
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k->sec, KIN__KEY_LEN - 1) ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)))
        return -errno;
    return KIN_OK;
}

void
kin__curve_forget(struct kin__certs *certs)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < STORES_MAX; i++)
        if (stores[i].certs == certs)
            stores[i].certs = NULL;
    pthread_mutex_unlock(&mu);
}
