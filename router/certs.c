/* Certificates as files with czmq (zcert, zcertstore): loading a key pair
 * or a public key, the store of allowed certificates (czmq reads the
 * directory again on a lookup once it changed, so removing a file revokes
 * it for the next lookup), and kin_cert_new, which `kin keygen` calls.
 * czmq's sockets and zsys are not used: kin keeps its own ZMQ context.
 * czmq is loaded by the first of these calls (czmq_lazy.h). */
#include "router/certs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include <kin/cert.h>

#include "router/czmq_lazy.h"

struct kin__certs {
    pthread_mutex_t mu; /* zcertstore is not thread-safe */
    const kin__czmq *z; /* loaded before the store was made */
    zcertstore_t *store;
    kin__certs_refused_fn refused; /* set before the first handshake */
    void *refused_arg;
};

kin_err
kin__certs_open(kin__certs **out, const char *dir)
{
    *out = NULL;
    struct stat st;
    if (stat(dir, &st))
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    const kin__czmq *z = kin__czmq_get();
    if (!z)
        return -ELIBACC;
    kin__certs *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->z = z;
    if (!(c->store = z->certstore_new(dir))) {
        free(c);
        return -ENOMEM;
    }
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return KIN_OK;
}

void
kin__certs_close(kin__certs **cp)
{
    if (!cp || !*cp)
        return;
    kin__certs *c = *cp;
    c->z->certstore_destroy(&c->store);
    pthread_mutex_destroy(&c->mu);
    free(c);
    *cp = NULL;
}

bool
kin__certs_allow(kin__certs *c, const char *pub, char *who, size_t who_size)
{
    pthread_mutex_lock(&c->mu);
    zcert_t *cert = c->z->certstore_lookup(c->store, pub);
    if (cert && who && who_size) {
        const char *host = c->z->cert_meta(cert, "host");
        const char *role = c->z->cert_meta(cert, "role");
        snprintf(who, who_size, "%s/%s", host ? host : "?", role ? role : "?");
    }
    pthread_mutex_unlock(&c->mu);
    return cert != NULL;
}

bool
kin__certs_meta(kin__certs *c, const char *pub, char *host, char *role)
{
    host[0] = role[0] = 0;
    pthread_mutex_lock(&c->mu);
    zcert_t *cert = c->z->certstore_lookup(c->store, pub);
    if (cert) {
        const char *h = c->z->cert_meta(cert, "host");
        const char *r = c->z->cert_meta(cert, "role");
        snprintf(host, 64, "%s", h ? h : "");
        snprintf(role, 64, "%s", r ? r : "");
    }
    pthread_mutex_unlock(&c->mu);
    return cert != NULL;
}

void
kin__certs_on_refused(kin__certs *c, kin__certs_refused_fn fn, void *arg)
{
    c->refused = fn;
    c->refused_arg = arg;
}

bool
kin__certs_admit(kin__certs *c, const char *pub, const char *addr, char *who,
                 size_t who_size)
{
    bool ok = kin__certs_allow(c, pub, who, who_size);
    if (!ok && c->refused)
        c->refused(c->refused_arg, pub, addr ? addr : "");
    return ok;
}

kin_err
kin__cert_load(const char *path, bool need_secret, kin__curve_key *k)
{
    memset(k, 0, sizeof *k);
    if (access(path, R_OK))
        return -errno;
    const kin__czmq *z = kin__czmq_get();
    if (!z)
        return -ELIBACC;
    /* zcert_load takes the public file's name and reads "_secret" next to
     * it; given the secret file itself, it finds both keys in it. */
    zcert_t *cert = z->cert_load(path);
    if (!cert)
        return -EINVAL;
    const char *pub = z->cert_public_txt(cert);
    const char *sec = z->cert_secret_txt(cert);
    kin_err e = KIN_OK;
    if (!pub || strlen(pub) != KIN__KEY_LEN - 1)
        e = -EINVAL;
    else if (need_secret &&
             (!sec || strlen(sec) != KIN__KEY_LEN - 1 ||
              !strcmp(sec, "0000000000000000000000000000000000000000")))
        e = -EINVAL;
    if (!e) {
        memcpy(k->pub, pub, KIN__KEY_LEN);
        if (need_secret)
            memcpy(k->sec, sec, KIN__KEY_LEN);
    }
    z->cert_destroy(&cert);
    return e;
}

kin_err
kin_cert_new(const char *path, const char *host, const char *role, char *pub)
{
    if (!path || !*path)
        return -EINVAL;
    char secret[4096];
    if (snprintf(secret, sizeof secret, "%s_secret", path) >=
        (int)sizeof secret)
        return -ENAMETOOLONG;
    if (!access(path, F_OK) || !access(secret, F_OK))
        return KIN_EEXISTS;
    char me[256] = "";
    if (!host || !*host) {
        gethostname(me, sizeof me - 1);
        host = me;
    }
    const kin__czmq *z = kin__czmq_get();
    if (!z)
        return -ELIBACC;
    zcert_t *cert = z->cert_new();
    if (!cert)
        return zmq_has("curve") ? -ENOMEM : -ENOTSUP;
    z->cert_set_meta(cert, "host", "%s", host);
    if (role && *role)
        z->cert_set_meta(cert, "role", "%s", role);
    kin_err e = z->cert_save(cert, path) ? -EIO : KIN_OK;
    if (!e && chmod(secret, 0600))
        e = -errno;
    if (!e && pub)
        snprintf(pub, KIN__KEY_LEN, "%s", z->cert_public_txt(cert));
    z->cert_destroy(&cert);
    return e;
}

const char *
kin__certs_strerror(kin_err e)
{
    return e == -ELIBACC ? KIN__CZMQ_LIB " (Debian package libczmq4), which "
                                         "certificates need, cannot be loaded"
                         : kin_strerror(e);
}
