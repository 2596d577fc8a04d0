/* Certificates for joining a tree over tcp: CURVE key pairs as files in
 * czmq's format (zcert), one per host or role, which a master admits by
 * finding the public one in its directory of allowed certificates
 * (kin_node_opts.join_certs) and revokes when the file is removed. See
 * docs/remote.md. */
#ifndef KIN_CERT_H
#define KIN_CERT_H

#include <kin/defs.h>
#include <kin/err.h>

/* Z85 text of a CURVE public key, NUL included. */
#define KIN_CERT_KEY_LEN 41

/* Writes a new certificate: path holds the public key and the metadata
 * (host: host, or this machine's name when NULL or empty; role: role,
 * left out when NULL or empty), path + "_secret" also the secret key
 * (mode 0600). Copy path alone to the master's allowed directory; keep
 * the secret file on the host it names. pub (KIN_CERT_KEY_LEN bytes, may
 * be NULL) gets the public key in Z85. czmq (libczmq.so.4) is loaded by
 * the first certificate a process reads or writes, not before. Errors:
 * KIN_EEXISTS (either file exists: nothing is overwritten), -EINVAL
 * (empty path), -ENOTSUP (libzmq without CURVE), -ELIBACC (libczmq.so.4
 * cannot be loaded: the reason goes to the diagnostics hook), -EIO
 * (cannot write), -errno. Any thread. */
KIN_EXPORT kin_err kin_cert_new(const char *path, const char *host,
                                const char *role, char *pub);

#endif
