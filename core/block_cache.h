/* Small blocks kept for reuse across threads: a message's, a latch's, a
 * receiver's. Such a block is often freed on another thread than the one
 * that made it (a reply made by the broker is freed by the caller that
 * waited for it), which glibc's per-thread caches cannot absorb: each such
 * free and malloc takes an arena lock; and a call makes and frees several.
 * Here a thread keeps the blocks it frees in a list of its own, up to a
 * bound, and passes the rest to a list any thread takes whole when its own
 * runs out (docs/performance.md §16). */
#ifndef KIN_CORE_BLOCK_CACHE_H
#define KIN_CORE_BLOCK_CACHE_H

#include <stdbool.h>
#include <stddef.h>

/* The size of every cached block. */
#define KIN__BLOCK_SIZE 384u

/* A block of KIN__BLOCK_SIZE bytes (kept before, or new from malloc);
 * NULL when out of memory. Any thread. */
void *kin__block_get(void);

/* Gives back a block kin__block_get returned: kept for reuse, or freed
 * when the lists are full. Any thread. */
void kin__block_put(void *block);

#endif
