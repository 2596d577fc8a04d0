/* The cache of small blocks (core/block_cache.h): each thread's own
 * list, and a shared one. Pushing to the shared list is a compare-and-swap
 * on its head; taking from it is an exchange of the whole list with
 * nothing, so no block is ever taken out from under another thread (no
 * ABA). Under AddressSanitizer nothing is kept: every block is malloc'd
 * and freed, so a use after free is still caught. */
#include "core/block_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/sync.h"

#define KEEP KIN__KEEP_FREED

/* Blocks a thread keeps for itself, and all threads together in the shared
 * list: at most (64 per thread + 1024) * 384 bytes beyond what is in use. */
#define MINE_MAX 64
#define SHARED_MAX 1024

typedef struct node {
    struct node *next;
} node;

static _Atomic(node *) shared;
static atomic_int shared_n;

static _Thread_local node *mine;
static _Thread_local int mine_n;
static _Thread_local bool registered;

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void
push_shared(node *b)
{
    if (atomic_fetch_add_explicit(&shared_n, 1, memory_order_relaxed) >=
        SHARED_MAX) {
        atomic_fetch_sub_explicit(&shared_n, 1, memory_order_relaxed);
        free(b);
        return;
    }
    node *head = atomic_load_explicit(&shared, memory_order_relaxed);
    do
        b->next = head;
    while (!atomic_compare_exchange_weak_explicit(
        &shared, &head, b, memory_order_release, memory_order_relaxed));
}

/* A thread's own blocks go to the shared list when it ends. A block
 * freed by a later destructor registers the thread again. */
static void
on_thread_exit(void *unused)
{
    (void)unused;
    while (mine) {
        node *b = mine;
        mine = b->next;
        push_shared(b);
    }
    mine_n = 0;
    registered = false;
}

static void
make_key(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
}

/* This thread's blocks will go back when it ends. */
static bool
registered_for_exit(void)
{
    if (!registered) {
        pthread_once(&exit_once, make_key);
        registered = !pthread_setspecific(exit_key, (void *)1);
    }
    return registered;
}

/* Takes up to MINE_MAX blocks of the shared list for this thread; the rest
 * goes back as one chain (private to this thread until then: no ABA). */
static void
refill(void)
{
    if (!atomic_load_explicit(&shared, memory_order_relaxed) ||
        !registered_for_exit())
        return;
    /* Acquire: the blocks' links were written by the threads that pushed
     * them. */
    node *l = atomic_exchange_explicit(&shared, NULL, memory_order_acquire);
    node *last = NULL;
    int k = 0;
    for (node *b = l; b && k < MINE_MAX; b = b->next, k++)
        last = b;
    if (!k)
        return;
    node *rest = last->next;
    last->next = NULL;
    atomic_fetch_sub_explicit(&shared_n, k, memory_order_relaxed);
    mine = l;
    mine_n = k;
    if (rest) {
        node *tail = rest;
        while (tail->next)
            tail = tail->next;
        node *head = atomic_load_explicit(&shared, memory_order_relaxed);
        do
            tail->next = head;
        while (!atomic_compare_exchange_weak_explicit(
            &shared, &head, rest, memory_order_release, memory_order_relaxed));
    }
}

void *
kin__block_get(void)
{
    if (KEEP && !mine)
        refill();
    if (KEEP && mine) {
        node *b = mine;
        mine = b->next;
        mine_n--;
        return b;
    }
    return malloc(KIN__BLOCK_SIZE);
}

void
kin__block_put(void *block)
{
    node *b = block;
    if (!KEEP || !b) {
        free(b);
        return;
    }
    if (mine_n >= MINE_MAX || !registered_for_exit()) {
        push_shared(b);
        return;
    }
    b->next = mine;
    mine = b;
    mine_n++;
}
