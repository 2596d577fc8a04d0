/* czmq, loaded with dlopen by the first certificate function (certs.c):
 * a process that never reads or writes a certificate maps neither libczmq
 * nor what it alone pulls in (libsystemd, libgcrypt, libgpg-error, liblz4,
 * libzstd, liblzma, libcap, libuuid), each of which costs every process
 * its relocated and written pages. Only certs.c calls this. */
#ifndef KIN_ROUTER_CZMQ_LAZY_H
#define KIN_ROUTER_CZMQ_LAZY_H

#include <czmq.h>

/* The library's file name, as dlopen is given it and errors name it. */
#define KIN__CZMQ_LIB "libczmq.so.4"

/* The czmq functions kin uses, resolved in the loaded library. */
typedef struct kin__czmq {
    __typeof__(zcert_new) *cert_new;
    __typeof__(zcert_load) *cert_load;
    __typeof__(zcert_save) *cert_save;
    __typeof__(zcert_destroy) *cert_destroy;
    __typeof__(zcert_public_txt) *cert_public_txt;
    __typeof__(zcert_secret_txt) *cert_secret_txt;
    __typeof__(zcert_meta) *cert_meta;
    __typeof__(zcert_set_meta) *cert_set_meta;
    __typeof__(zcertstore_new) *certstore_new;
    __typeof__(zcertstore_lookup) *certstore_lookup;
    __typeof__(zcertstore_destroy) *certstore_destroy;
} kin__czmq;

/* Loads libczmq.so.4 and resolves the functions above, the first time
 * only (the library stays loaded). NULL when it cannot be loaded or lacks
 * one of them: the reason, naming the library, goes to the diagnostics
 * hook once, and the caller returns -ELIBACC. Any thread. */
const kin__czmq *kin__czmq_get(void);

#endif
