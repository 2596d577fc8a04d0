/* Certificates as files (czmq's zcert format) and the directory of
 * allowed public certificates a master admits tcp joiners by (a
 * zcertstore, read again whenever the directory changed). Only this file
 * pair calls czmq, through czmq_lazy.h. */
#ifndef KIN_ROUTER_CERTS_H
#define KIN_ROUTER_CERTS_H

#include <stdbool.h>
#include <stddef.h>

#include <kin/err.h>

#include "router/curve.h"

typedef struct kin__certs kin__certs;

/* Every function here that reads or writes a certificate loads czmq the
 * first time (czmq_lazy.h) and fails with -ELIBACC when it cannot. */

/* Opens the store of allowed public certificates in dir. Errors: -ENOENT
 * or -ENOTDIR (no such directory), -ELIBACC (czmq missing), -ENOMEM. */
kin_err kin__certs_open(kin__certs **out, const char *dir);
/* NULL-safe; *c = NULL. */
void kin__certs_close(kin__certs **c);

/* Whether the certificate of public key pub (Z85) is in the store now
 * (the directory is read again when it changed). who (may be NULL) gets
 * the certificate's "host" and "role" metadata, as "host/role". Any
 * thread (locked). */
bool kin__certs_allow(kin__certs *c, const char *pub, char *who,
                      size_t who_size);

/* The certificate's "host" and "role" metadata (each "" when absent, up
 * to 63 bytes), while it is in the store: false when it is not. Any
 * thread (locked). */
bool kin__certs_meta(kin__certs *c, const char *pub, char *host, char *role);

/* What kin__certs_admit calls on a refusal (the ZAP handler's thread, no
 * certs lock held): pub, the refused key (Z85); addr, the peer's. */
typedef void (*kin__certs_refused_fn)(void *arg, const char *pub,
                                      const char *addr);
/* Sets it (before any handshake can ask: the node's assembly). */
void kin__certs_on_refused(kin__certs *c, kin__certs_refused_fn fn, void *arg);
/* kin__certs_allow for a handshake from addr: a refusal is also told to
 * the kin__certs_on_refused hook, for the audit trail. */
bool kin__certs_admit(kin__certs *c, const char *pub, const char *addr,
                      char *who, size_t who_size);

/* Loads a certificate file: its public key and, when need_secret, its
 * secret (from path, or from path + "_secret" when path is the public
 * one). Errors: -ENOENT (no such file), -EINVAL (not a certificate, or no
 * secret key where one is needed), -ELIBACC (czmq missing). */
kin_err kin__cert_load(const char *path, bool need_secret, kin__curve_key *k);

/* kin_strerror(e), except that -ELIBACC names the library certificates
 * need and its package. Static string. Any thread. */
const char *kin__certs_strerror(kin_err e);

#endif
