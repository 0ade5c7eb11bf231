/* SPDX-License-Identifier: MIT */
/* The counted set of guest-table gfns virtual handlers watch (virt_watch.c). */
#ifndef PGM_SRC_HANDLERS_VIRT_WATCH_H
#define PGM_SRC_HANDLERS_VIRT_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "pgm/vm.h"

/* Guest-table gfns on some covered page's path, with how many paths use them. */
struct pgm_virt_watch {
    uint64_t *keys;                 /* gfn + 1; 0 is an empty slot */
    uint32_t *counts;
    uint32_t cap, used;             /* cap: 0 or a power of two */
};

/* Make room for @n more gfns (so that add cannot fail). */
int pgm_virt_watch_reserve(struct pgm_virt_watch *w, const struct pgm_allocator *a, uint32_t n);
void pgm_virt_watch_add(struct pgm_virt_watch *w, uint64_t gfn);
void pgm_virt_watch_del(struct pgm_virt_watch *w, uint64_t gfn);
bool pgm_virt_watch_has(const struct pgm_virt_watch *w, uint64_t gfn);
/* How many times @gfn was added and not deleted. */
uint32_t pgm_virt_watch_count(const struct pgm_virt_watch *w, uint64_t gfn);
void pgm_virt_watch_fini(struct pgm_virt_watch *w, const struct pgm_allocator *a);

#endif /* PGM_SRC_HANDLERS_VIRT_WATCH_H */
