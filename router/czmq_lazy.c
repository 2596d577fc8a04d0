/* czmq loaded on first use (see czmq_lazy.h): one dlopen under
 * pthread_once, the functions resolved into a table that is never written
 * again, so readers need no lock. */
#include "router/czmq_lazy.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>

#include "core/log_internal.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static kin__czmq fns;
static bool loaded;

#define RESOLVE(field, name)                                                   \
    ((*(void **)&fns.field = dlsym(lib, name)) != NULL ||                      \
     (missing = name, false))

static void
load_once(void)
{
    /* RTLD_LOCAL: czmq's symbols stay out of the global scope, so nothing
     * loaded later binds to them by accident; RTLD_NOW: a missing symbol
     * fails here, not in the middle of a handshake. */
    void *lib = dlopen(KIN__CZMQ_LIB, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        KIN_ERROR("certificates need " KIN__CZMQ_LIB
                  " (Debian package libczmq4), which cannot be loaded: %s",
                  why ? why : "unknown reason");
        return;
    }
    const char *missing = NULL;
    loaded = RESOLVE(cert_new, "zcert_new") &&
             RESOLVE(cert_load, "zcert_load") &&
             RESOLVE(cert_save, "zcert_save") &&
             RESOLVE(cert_destroy, "zcert_destroy") &&
             RESOLVE(cert_public_txt, "zcert_public_txt") &&
             RESOLVE(cert_secret_txt, "zcert_secret_txt") &&
             RESOLVE(cert_meta, "zcert_meta") &&
             RESOLVE(cert_set_meta, "zcert_set_meta") &&
             RESOLVE(certstore_new, "zcertstore_new") &&
             RESOLVE(certstore_lookup, "zcertstore_lookup") &&
             RESOLVE(certstore_destroy, "zcertstore_destroy");
    if (!loaded)
        KIN_ERROR("certificates need " KIN__CZMQ_LIB
                  ", whose copy here has no %s",
                  missing);
}

const kin__czmq *
kin__czmq_get(void)
{
    pthread_once(&once, load_once);
    return loaded ? &fns : NULL;
}
