/* Certificates as files (czmq's zcert format) and the directory of
 * allowed public certificates a master admits tcp joiners by (a
 * zcertstore, read again whenever the directory changed). Only this file
 * pair calls czmq. */
#ifndef KIN_ROUTER_CERTS_H
#define KIN_ROUTER_CERTS_H

#include <stdbool.h>
#include <stddef.h>

#include <kin/err.h>

#include "router/curve.h"

typedef struct kin__certs kin__certs;

/* Opens the store of allowed public certificates in dir. Errors: -ENOENT
 * or -ENOTDIR (no such directory), -ENOMEM. */
kin_err kin__certs_open(kin__certs **out, const char *dir);
/* NULL-safe; *c = NULL. */
void kin__certs_close(kin__certs **c);

/* Whether the certificate of public key pub (Z85) is in the store now
 * (the directory is read again when it changed). who (may be NULL) gets
 * the certificate's "host" and "role" metadata, as "host/role". Any
 * thread (locked). */
bool kin__certs_allow(kin__certs *c, const char *pub, char *who,
                      size_t who_size);

/* Loads a certificate file: its public key and, when need_secret, its
 * secret (from path, or from path + "_secret" when path is the public
 * one). Errors: -ENOENT (no such file), -EINVAL (not a certificate, or no
 * secret key where one is needed). */
kin_err kin__cert_load(const char *path, bool need_secret, kin__curve_key *k);

#endif
