/* Certificates a context issues to the children it starts over ssh or
 * through an exec channel: a fresh CURVE key pair per child, with its
 * metadata (host, role "child", name, id, expiry) kept in this process,
 * where the ZAP handler (curve.c) admits the child's key for the tree's
 * CURVE servers until it expires or is revoked (the child is gone). */
#ifndef KIN_ROUTER_CHILD_CERTS_H
#define KIN_ROUTER_CHILD_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kin/err.h>

#include "router/curve.h"

/* How long a child certificate may wait for its first connection after
 * it was issued: one hour (docs/remote.md, "Certificates of children").
 * Once presented in time, it admits connections until it is revoked. */
#define KIN__CHILD_CERT_LIFETIME_MS (60 * 60 * 1000)

/* Issues child `id` (named name, started on host) a certificate of the
 * tree whose key is tree (a pair holding the tree's secret): out gets a
 * fresh key pair, with out->server the tree's public key, and this
 * process's CURVE servers of that tree admit it from now on until
 * kin__child_cert_revoke, unless it is first presented after its
 * lifetime (KIN__CHILD_CERT_LIFETIME_MS from now): it has then expired. Errors:
 * -EINVAL (tree is itself a child's certificate, or empty), -ENOTSUP (no
 * CURVE), -ENOMEM. Any thread. */
kin_err kin__child_cert_issue(const kin__curve_key *tree, uint32_t id,
                              const char *name, const char *host,
                              kin__curve_key *out);

/* Forgets the certificate of public key pub (Z85): new connections with
 * it are refused. NULL or unknown: nothing. Any thread. */
void kin__child_cert_revoke(const char *pub);

/* The ZAP handler's question for a CURVE server of the tree whose public
 * key is tree_pub: whether the 32-byte key is a certificate issued here
 * for that tree and not expired (admitting it marks it used: it no
 * longer expires). Either way, when it is one, who gets
 * "NAME (id ID, HOST)" and *expired says whether it has expired. False
 * and who "" for a key never issued (or revoked). Any thread. */
bool kin__child_cert_admit(const char *tree_pub, const uint8_t key[32],
                           bool *expired, char *who, size_t who_size);

/* Whether pub (Z85) is a live child certificate issued here; *id gets
 * the id of the child it was issued to. Any thread. */
bool kin__child_cert_owner(const char *pub, uint32_t *id);

/* Tests only: the lifetime of every certificate, those issued already too
 * (ms; <= 0: the default). */
void kin__child_cert_set_lifetime(int ms);

#endif
