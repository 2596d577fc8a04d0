/* A hash map from uint32_t keys to pointers (open addressing, linear
 * probing, backward-shift deletion). Not thread-safe: the owner locks. Used
 * for routes, handles and task tables. */
#ifndef KIN_CORE_U32MAP_H
#define KIN_CORE_U32MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kin__u32map {
    uint32_t *keys;
    void **vals;
    uint8_t *used;
    size_t cap; /* power of two, or 0 before the first insert */
    size_t len;
} kin__u32map;

/* Zero-initialise a map, or call this. */
void kin__u32map_init(kin__u32map *m);
void kin__u32map_fini(kin__u32map *m);

/* The value stored for key, or NULL. */
void *kin__u32map_get(const kin__u32map *m, uint32_t key);
bool kin__u32map_has(const kin__u32map *m, uint32_t key);

/* Stores val for key (replacing). Returns 0 or -ENOMEM. */
int kin__u32map_put(kin__u32map *m, uint32_t key, void *val);

/* Removes key; returns its value or NULL. */
void *kin__u32map_del(kin__u32map *m, uint32_t key);

/* Iteration: for (size_t i = 0; kin__u32map_next(m, &i, &k, &v);) ...
 * Deleting the current key while iterating may skip or repeat entries;
 * collect keys first when deleting. */
bool kin__u32map_next(const kin__u32map *m, size_t *it, uint32_t *key,
                      void **val);

#endif
