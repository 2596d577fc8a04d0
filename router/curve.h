/* CURVE on tcp links: the tree's key pair, socket setup for both ends and
 * the process-wide ZAP handler that admits only peers holding a tree key
 * or a certificate a context of the tree issued to its child
 * (child_certs.h). */
#ifndef KIN_ROUTER_CURVE_H
#define KIN_ROUTER_CURVE_H

#include <stdbool.h>

#include <kin/err.h>

/* Z85 text of a 32-byte key, NUL included. */
#define KIN__KEY_LEN 41

typedef struct kin__curve_key {
    char pub[KIN__KEY_LEN];
    char sec[KIN__KEY_LEN];
    /* "" when this is the tree's key pair; for a child's own certificate
     * (child_certs.h), the tree's public key: the key of the servers it
     * connects to. */
    char server[KIN__KEY_LEN];
} kin__curve_key;

/* Whether endpoint is tcp:// (the transports that leave the machine). */
bool kin__endpoint_is_tcp(const char *endpoint);

/* A fresh key pair. Errors: -ENOTSUP (libzmq without CURVE). */
kin_err kin__curve_generate(kin__curve_key *k);

/* Parses "PUBLIC:SECRET" (Z85), checking that SECRET belongs to PUBLIC,
 * or a child's certificate "PUBLIC:SECRET:SERVER" (SERVER the tree's
 * public key). Errors: -EINVAL. */
kin_err kin__curve_parse(kin__curve_key *k, const char *text);

/* Formats k as kin__curve_parse reads it into out (at least
 * KIN__KEY_TEXT_LEN bytes). */
#define KIN__KEY_TEXT_LEN (3 * KIN__KEY_LEN)
void kin__curve_format(const kin__curve_key *k, char *out);

/* Makes sock a CURVE server with k that admits only clients proving they
 * hold k, or a certificate issued in this process to a child of k's tree
 * (child_certs.h; the ZAP answer's user id, "User-Id" on its messages, is
 * then the certificate's public key in Z85). The process's ZAP handler is
 * started on first use. Errors: -ENOTSUP, -errno. */
kin_err kin__curve_server(void *sock, const kin__curve_key *k);

/* Makes sock a CURVE client of a server holding k (k->server when k is a
 * child's certificate), presenting k. */
kin_err kin__curve_client(void *sock, const kin__curve_key *k);

/* Makes sock a CURVE client of the server whose public key is server_pub
 * (Z85), presenting own. */
kin_err kin__curve_client_as(void *sock, const char *server_pub,
                             const kin__curve_key *own);

struct kin__certs;

/* Makes sock a CURVE server with k that admits only clients whose public
 * certificate is in certs (looked up at each handshake) until
 * kin__curve_forget(certs). The ZAP answer's user id is the client's public
 * key in Z85: messages from it carry it as "User-Id" (zmq_msg_gets).
 * Errors: as kin__curve_server, -ENOMEM (16 stores registered). */
kin_err kin__curve_server_certs(void *sock, const kin__curve_key *k,
                                struct kin__certs *certs);
/* The ZAP handler stops looking at certs (before it is closed). */
void kin__curve_forget(struct kin__certs *certs);

#endif
