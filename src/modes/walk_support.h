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

/*
 * Where to read the paging-structure entry at @gpa. The policy for tables
 * outside RAM (docs/walker.md): ROM reads its image (A/D updates dropped);
 * MMIO and unassigned space read as all-ones, as on a PC bus, with no device
 * side effect; RAM never written reads as zeros (entries not present).
 * Out-of-line slow path: entries outside the cached range.
 * Refills the cache (it only ever holds a RAM range; ROM tables take this
 * path every time, which is rare and sets PGM_WALK_F_ROM_TABLE).
 */
const uint8_t *pgm_walk_entry_slow(struct walk_mem *m, pgm_gpa_t gpa, uint32_t *flags);

/*
 * Pointer through which A/D bits of the entry at @gpa may be written, or NULL
 * when they must be dropped (ROM, MMIO, unassigned, never-written RAM).
 */
uint8_t *pgm_walk_entry_writable(const struct pgm_phys_map *map, pgm_gpa_t gpa);

/* Fast path: where the entry at @gpa lives in the (cached) RAM page @pg. */
static inline const uint8_t *
walk_page_ptr(struct pgm_page *pg, pgm_gpa_t gpa)
{
    const uint8_t *host = pgm_load_acquire(&pg->host);
    return (host ? host : pgm_zero_page) + (gpa & ~PGM_PAGE_MASK);
}

/*
 * Index into pgm_walk_ctx.perm for an access: bit 0 write, bit 1 user,
 * bit 2 fetch, bit 3 "SMAP override" (RFLAGS.AC = 1 on an explicit access).
 */
static inline unsigned
walk_perm_index(uint32_t access)
{
    return ((access >> 1) & 3) | ((access >> 2) & 4) |
           ((access & (PGM_ACCESS_AC | PGM_ACCESS_IMPLICIT)) == PGM_ACCESS_AC ? 8 : 0);
}

/*
 * Protection-key check (SDM 4.6.2): data accesses to user pages at any CPL.
 * AD blocks every data access; WD blocks writes, except supervisor writes
 * with CR0.WP = 0. Callers only ask for user pages in IA-32e mode with PKE.
 */
static inline bool
walk_pkey_fault(const struct pgm_walk_ctx *c, uint32_t access, unsigned pkey)
{
    if (access & PGM_ACCESS_FETCH)
        return false;
    unsigned kb = (c->pkru >> (2 * pkey)) & 3;
    return (kb & 1) || ((kb & 2) && (access & PGM_ACCESS_WRITE) &&
                        ((access & PGM_ACCESS_USER) || c->wp));
}

/* Error code of a permission fault (@pk: protection-key violation too). */
static inline uint32_t
walk_rights_ec(const struct pgm_walk_ctx *c, uint32_t access, bool pk)
{
    return PGM_PFEC_P | (access & (PGM_PFEC_W | PGM_PFEC_U)) |
           ((access & PGM_ACCESS_FETCH) && c->report_fetch ? PGM_PFEC_ID : 0) |
           (pk ? PGM_PFEC_PK : 0);
}

/* Error code of a not-present (@rsvd false) or reserved-bit fault. */
static inline uint32_t
walk_structural_ec(const struct pgm_walk_ctx *c, uint32_t access, bool rsvd)
{
    return (rsvd ? PGM_PFEC_P | PGM_PFEC_RSVD : 0) | (access & (PGM_PFEC_W | PGM_PFEC_U)) |
           ((access & PGM_ACCESS_FETCH) && c->report_fetch ? PGM_PFEC_ID : 0);
}

#endif /* PGM_SRC_MODES_WALK_SUPPORT_H */
