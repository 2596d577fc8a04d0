/* The certificates this process issued to its ssh- and exec-started
 * children: a table under one lock, looked up by the ZAP handler at each
 * CURVE handshake and by the router when a child says HELLO (a key admits
 * the id it was issued to only). An entry goes when its child is gone
 * (kin__child_cert_revoke). A certificate not presented within its
 * lifetime has expired: it is kept, refused, until its child is gone, so
 * the refusal can say whose it was; one presented in time lives as long
 * as its child. */
#include "router/child_certs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "core/sync.h"
#include "core/task.h"

typedef struct entry {
    char pub[KIN__KEY_LEN];
    char tree[KIN__KEY_LEN]; /* the tree's public key */
    uint8_t raw[32];         /* pub decoded, as the handshake gives it */
    uint32_t id;
    char name[64];
    char host[64];
    uint64_t issued_ns; /* kin__now_ns() clock */
    bool used;          /* admitted once: no expiry from then on */
} entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static entry *table; /* under mu */
static size_t count, cap;
static int lifetime_ms = KIN__CHILD_CERT_LIFETIME_MS;

static void
forget_in_child(void)
{
    /* A forked child issues its own; its parent's are not its to admit. */
    pthread_mutex_init(&mu, NULL);
    free(table);
    table = NULL;
    count = cap = 0;
}

void
kin__child_cert_set_lifetime(int ms)
{
    pthread_mutex_lock(&mu);
    lifetime_ms = ms > 0 ? ms : KIN__CHILD_CERT_LIFETIME_MS;
    pthread_mutex_unlock(&mu);
}

kin_err
kin__child_cert_issue(const kin__curve_key *tree, uint32_t id, const char *name,
                      const char *host, kin__curve_key *out)
{
    memset(out, 0, sizeof *out);
    if (!tree->pub[0] || !tree->sec[0] || tree->server[0])
        return -EINVAL;
    kin_err e = kin__curve_generate(out);
    if (e)
        return e;
    memcpy(out->server, tree->pub, KIN__KEY_LEN);
    entry en = {.id = id};
    memcpy(en.pub, out->pub, KIN__KEY_LEN);
    memcpy(en.tree, tree->pub, KIN__KEY_LEN);
    zmq_z85_decode(en.raw, en.pub);
    snprintf(en.name, sizeof en.name, "%s", name ? name : "");
    snprintf(en.host, sizeof en.host, "%s", host ? host : "");
    kin__forget_in_child(forget_in_child);
    pthread_mutex_lock(&mu);
    en.issued_ns = kin__now_ns();
    if (count == cap) {
        size_t ncap = cap ? 2 * cap : 16;
        entry *t = realloc(table, ncap * sizeof *t);
        if (!t) {
            pthread_mutex_unlock(&mu);
            memset(out, 0, sizeof *out);
            return -ENOMEM;
        }
        table = t;
        cap = ncap;
    }
    table[count++] = en;
    pthread_mutex_unlock(&mu);
    return KIN_OK;
}

void
kin__child_cert_revoke(const char *pub)
{
    if (!pub || !pub[0])
        return;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < count; i++) {
        if (!strcmp(table[i].pub, pub)) {
            table[i] = table[--count];
            break;
        }
    }
    pthread_mutex_unlock(&mu);
}

bool
kin__child_cert_admit(const char *tree_pub, const uint8_t key[32],
                      bool *expired, char *who, size_t who_size)
{
    bool found = false, ok = false;
    if (who && who_size)
        who[0] = 0;
    *expired = false;
    pthread_mutex_lock(&mu);
    uint64_t now = kin__now_ns();
    for (size_t i = 0; i < count && !found; i++) {
        entry *en = &table[i];
        if (memcmp(en->raw, key, 32) || strcmp(en->tree, tree_pub))
            continue;
        found = true;
        *expired = !en->used &&
                   now - en->issued_ns >= (uint64_t)lifetime_ms * 1000000u;
        ok = !*expired;
        en->used = ok;
        if (who && who_size)
            snprintf(who, who_size, "%s (id %u, %s)", en->name, en->id,
                     en->host);
    }
    pthread_mutex_unlock(&mu);
    return ok;
}

bool
kin__child_cert_owner(const char *pub, uint32_t *id)
{
    bool found = false;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < count && !found; i++) {
        if (!strcmp(table[i].pub, pub)) {
            found = true;
            *id = table[i].id;
        }
    }
    pthread_mutex_unlock(&mu);
    return found;
}
