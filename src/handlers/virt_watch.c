/* SPDX-License-Identifier: MIT */
/*
 * The set of guest tables on covered pages' paths (virt.h): a counted hash
 * set of gfns, open addressing with linear probing and backward-shift
 * deletion (no tombstones, so a lookup stops at the first empty slot).
 * VM lock held for everything.
 */
#include <errno.h>

#include "src/alloc.h"
#include "src/handlers/virt_watch.h"

static inline uint32_t
slot_of(uint64_t key, uint32_t cap)
{
    key *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(key >> 32) & (cap - 1);
}

static int
grow(struct pgm_virt_watch *w, const struct pgm_allocator *a)
{
    uint32_t cap = w->cap ? w->cap * 2 : 64;
    uint64_t *keys = pgm_zalloc_array(a, cap, sizeof(*keys));
    uint32_t *counts = pgm_zalloc_array(a, cap, sizeof(*counts));
    if (!keys || !counts) {
        pgm_free(a, keys);
        pgm_free(a, counts);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < w->cap; i++) {
        if (!w->keys[i])
            continue;
        uint32_t s = slot_of(w->keys[i], cap);
        while (keys[s])
            s = (s + 1) & (cap - 1);
        keys[s] = w->keys[i];
        counts[s] = w->counts[i];
    }
    pgm_free(a, w->keys);
    pgm_free(a, w->counts);
    w->keys = keys;
    w->counts = counts;
    w->cap = cap;
    return 0;
}

static int64_t
find(const struct pgm_virt_watch *w, uint64_t key)
{
    if (!w->cap)
        return -1;
    for (uint32_t s = slot_of(key, w->cap);; s = (s + 1) & (w->cap - 1)) {
        if (w->keys[s] == key)
            return s;
        if (!w->keys[s])
            return -1;
    }
}

int
pgm_virt_watch_reserve(struct pgm_virt_watch *w, const struct pgm_allocator *a, uint32_t n)
{
    /* Keep the load at most 1/2 with @n more keys. */
    while ((uint64_t)(w->used + n) * 2 > w->cap) {
        int rc = grow(w, a);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void
pgm_virt_watch_add(struct pgm_virt_watch *w, uint64_t gfn)
{
    uint64_t key = gfn + 1;
    int64_t at = find(w, key);
    if (at >= 0) {
        w->counts[at]++;
        return;
    }
    /* pgm_virt_watch_reserve() made room. */
    uint32_t s = slot_of(key, w->cap);
    while (w->keys[s])
        s = (s + 1) & (w->cap - 1);
    w->keys[s] = key;
    w->counts[s] = 1;
    w->used++;
}

void
pgm_virt_watch_del(struct pgm_virt_watch *w, uint64_t gfn)
{
    int64_t at = find(w, gfn + 1);
    if (at < 0 || --w->counts[at])
        return;
    /* Backward shift: pull later members of the probe run into the hole. */
    uint32_t hole = (uint32_t)at, mask = w->cap - 1;
    for (uint32_t s = (hole + 1) & mask; w->keys[s]; s = (s + 1) & mask) {
        uint32_t home = slot_of(w->keys[s], w->cap);
        /* Movable if its home is not in (hole, s] (cyclically). */
        bool in_between = hole < s ? (home > hole && home <= s) : (home > hole || home <= s);
        if (!in_between) {
            w->keys[hole] = w->keys[s];
            w->counts[hole] = w->counts[s];
            hole = s;
        }
    }
    w->keys[hole] = 0;
    w->counts[hole] = 0;
    w->used--;
}

bool
pgm_virt_watch_has(const struct pgm_virt_watch *w, uint64_t gfn)
{
    return find(w, gfn + 1) >= 0;
}

uint32_t
pgm_virt_watch_count(const struct pgm_virt_watch *w, uint64_t gfn)
{
    int64_t at = find(w, gfn + 1);
    return at < 0 ? 0 : w->counts[at];
}

void
pgm_virt_watch_fini(struct pgm_virt_watch *w, const struct pgm_allocator *a)
{
    pgm_free(a, w->keys);
    pgm_free(a, w->counts);
    *w = (struct pgm_virt_watch){ 0 };
}
