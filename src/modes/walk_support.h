/* SPDX-License-Identifier: MIT */
/*
 * Mode-independent pieces of the guest walk, inlined into every instance:
 * locating a paging-structure entry in guest-physical memory, and the
 * permission check on the accumulated rights of a complete walk.
 */
#ifndef PGM_SRC_MODES_WALK_SUPPORT_H
#define PGM_SRC_MODES_WALK_SUPPORT_H

#include "pgm/paging.h"
#include "src/modes/guest.h"
#include "src/phys.h"

/* Entry bits shared by every x86 format. */
#define PTE_P   (1ull << 0)
#define PTE_RW  (1ull << 1)
#define PTE_US  (1ull << 2)
#define PTE_PWT (1ull << 3)
#define PTE_PCD (1ull << 4)
#define PTE_A   (1ull << 5)
#define PTE_D   (1ull << 6)
#define PTE_PS  (1ull << 7)
#define PTE_PAT (1ull << 7)   /* in a 4 KiB leaf */
#define PTE_G   (1ull << 8)
#define PTE_LARGE_PAT (1ull << 12)

/* A walk's view of guest memory: the map snapshot plus a one-range cache. */
struct walk_mem {
    const struct pgm_phys_map *map;
    const struct pgm_phys_range *last;
};

/*
 * Locate the paging-structure entry at @gpa.
 *
 * Returns a pointer to read the entry from; *@wr receives a pointer to write
 * A/D bits through, or NULL when the entry must not be written. The policy
 * for tables outside RAM (docs/walker.md): ROM reads its image and A/D
 * writes are dropped; MMIO and unassigned space read as all-ones (no device
 * side effect for a page walk) and writes are dropped. RAM that was never
 * written reads as zeros, and zero entries are not present, so such an entry
 * is never written either.
 */
static inline const uint8_t *
walk_entry_ptr(struct walk_mem *m, pgm_gpa_t gpa, uint8_t **wr, uint32_t *flags)
{
    const struct pgm_phys_range *r = m->last;
    uint64_t off = gpa & ~PGM_PAGE_MASK;
    *wr = NULL;
    if (!r || gpa - r->start >= r->size) {
        r = pgm_phys_map_find(m->map, gpa);
        if (!r) {
            *flags |= PGM_WALK_F_NONRAM_TABLE;
            return pgm_ones_page + off;
        }
        m->last = r;
    }
    if (r->kind == PGM_PHYS_MMIO) {
        *flags |= PGM_WALK_F_NONRAM_TABLE;
        return pgm_ones_page + off;
    }
    struct pgm_page *pg = &r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT];
    uint8_t *host = pgm_load_acquire(&pg->host);
    if (!host)
        return pgm_zero_page + off;
    if (r->kind == PGM_PHYS_RAM)
        *wr = host + off;
    else
        *flags |= PGM_WALK_F_ROM_TABLE;
    return host + off;
}

/*
 * Permission check of a complete walk (SDM 4.6) on the effective @rights
 * (`pgm_rights`) with the leaf's protection key @pkey. Returns 0 when the
 * access is allowed, else the #PF error code.
 */
static inline uint32_t
walk_check_rights(const struct pgm_walk_ctx *c, uint32_t access, uint32_t rights,
                  unsigned pkey, bool pkeys_possible)
{
    bool write = access & PGM_ACCESS_WRITE;
    bool fetch = access & PGM_ACCESS_FETCH;
    bool user_access = access & PGM_ACCESS_USER;
    bool user_page = rights & PGM_RIGHT_USER;
    bool fault = false;

    if (user_access) {
        fault = !user_page || (write && !(rights & PGM_RIGHT_WRITE));
    } else {
        /* CR0.WP = 0: supervisor writes ignore R/W everywhere. */
        fault = write && !(rights & PGM_RIGHT_WRITE) && c->wp;
        if (user_page) {
            if (fetch)
                fault |= c->smep;
            else if (c->smap && (!(access & PGM_ACCESS_AC) || (access & PGM_ACCESS_IMPLICIT)))
                fault = true; /* SMAP: WP = 0 does not relax it */
        }
    }
    if (fetch && !(rights & PGM_RIGHT_EXEC))
        fault = true;

    /*
     * Protection keys: data accesses to user pages at any CPL. AD blocks
     * every data access; WD blocks writes, except supervisor writes with
     * CR0.WP = 0. PK is reported even alongside another violation.
     */
    bool pk = false;
    if (pkeys_possible && c->pke && user_page && !fetch) {
        unsigned kb = (c->pkru >> (2 * pkey)) & 3;
        pk = (kb & 1) || ((kb & 2) && write && (user_access || c->wp));
    }
    if (!fault && !pk)
        return 0;
    return PGM_PFEC_P | (access & (PGM_PFEC_W | PGM_PFEC_U)) |
           (fetch && c->report_fetch ? PGM_PFEC_ID : 0) | (pk ? PGM_PFEC_PK : 0);
}

/* Error code of a not-present (@rsvd false) or reserved-bit fault. */
static inline uint32_t
walk_structural_ec(const struct pgm_walk_ctx *c, uint32_t access, bool rsvd)
{
    return (rsvd ? PGM_PFEC_P | PGM_PFEC_RSVD : 0) | (access & (PGM_PFEC_W | PGM_PFEC_U)) |
           ((access & PGM_ACCESS_FETCH) && c->report_fetch ? PGM_PFEC_ID : 0);
}

#endif /* PGM_SRC_MODES_WALK_SUPPORT_H */
