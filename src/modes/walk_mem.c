/* SPDX-License-Identifier: MIT */
/*
 * Slow paths of the walkers' guest-memory access (see walk_support.h):
 * refilling the one-range cache and finding where A/D bits may be written.
 * Shared by every guest-mode instance, so compiled once.
 */
#include "src/modes/walk_support.h"

const uint8_t *
pgm_walk_entry_slow(struct walk_mem *m, pgm_gpa_t gpa, uint32_t *flags)
{
    const struct pgm_phys_range *r = pgm_phys_map_find(m->map, gpa);
    uint64_t off = gpa & ~PGM_PAGE_MASK;
    if (!r || r->kind == PGM_PHYS_MMIO) {
        *flags |= PGM_WALK_F_NONRAM_TABLE;
        return pgm_ones_page + off;
    }
    if (r->kind == PGM_PHYS_RAM) {
        m->start = r->start;
        m->size = r->size;
        m->pages = r->pages;
        m->base = r->block;
    } else {
        *flags |= PGM_WALK_F_ROM_TABLE;
    }
    uint8_t *host = pgm_load_acquire(&r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT].host);
    return (host ? host : pgm_zero_page) + off;
}

uint8_t *
pgm_walk_entry_writable(const struct pgm_phys_map *map, pgm_gpa_t gpa)
{
    const struct pgm_phys_range *r = pgm_phys_map_find(map, gpa);
    /* A ROM's writable shadow copy takes A/D updates like RAM; its image never does. */
    if (!r || (r->kind != PGM_PHYS_RAM &&
               !(r->kind == PGM_PHYS_ROM &&
                 __atomic_load_n(&r->rom_mode, __ATOMIC_ACQUIRE) == PGM_ROM_MODE_SHADOW_RW)))
        return NULL;
    uint8_t *host = pgm_load_acquire(&r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT].host);
    return host ? host + (gpa & ~PGM_PAGE_MASK) : NULL;
}
