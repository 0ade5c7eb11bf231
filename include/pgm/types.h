/* SPDX-License-Identifier: MIT */
/**
 * @file types.h
 * @brief Addresses, access bits, #PF error-code bits and the walk result.
 */
#ifndef PGM_TYPES_H
#define PGM_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef uint64_t pgm_gva_t; /**< guest-virtual (linear) address */
typedef uint64_t pgm_gpa_t; /**< guest-physical address */
typedef uint64_t pgm_hpa_t; /**< host-physical address, as the backend's hardware sees it */

#define PGM_PAGE_SHIFT 12
#define PGM_PAGE_SIZE  ((uint64_t)1 << PGM_PAGE_SHIFT)
#define PGM_PAGE_MASK  (~(PGM_PAGE_SIZE - 1))

/**
 * Access flags passed to the walker. WRITE, USER and FETCH sit at the same bit
 * positions as in the #PF error code so the error code is assembled by masking.
 */
enum pgm_access {
    PGM_ACCESS_READ     = 0,        /**< data read (no flag) */
    PGM_ACCESS_WRITE    = 1u << 1,  /**< data write */
    PGM_ACCESS_USER     = 1u << 2,  /**< CPL 3 access that is not implicit */
    PGM_ACCESS_FETCH    = 1u << 4,  /**< instruction fetch */
    /** Implicit supervisor access (GDT/LDT/IDT/TSS): SMAP applies whatever RFLAGS.AC says. */
    PGM_ACCESS_IMPLICIT = 1u << 8,
    /** RFLAGS.AC was 1 at the access: explicit supervisor data accesses skip SMAP. */
    PGM_ACCESS_AC       = 1u << 9,
    /** Query only: do not set A/D bits (debuggers, introspection). */
    PGM_ACCESS_NO_AD    = 1u << 10,
};

/** #PF error-code bits (Intel SDM vol. 3A, 4.7). */
enum pgm_pfec {
    PGM_PFEC_P    = 1u << 0, /**< 0: not present, 1: protection / reserved violation */
    PGM_PFEC_W    = 1u << 1, /**< the access was a write */
    PGM_PFEC_U    = 1u << 2, /**< the access was a user-mode access */
    PGM_PFEC_RSVD = 1u << 3, /**< a reserved bit was set in a paging-structure entry */
    PGM_PFEC_ID   = 1u << 4, /**< instruction fetch (only with CR4.SMEP, or EFER.NXE in PAE/IA-32e paging) */
    PGM_PFEC_PK   = 1u << 5, /**< protection-key violation */
};

/** Guest paging modes (DESIGN.md section 5). */
enum pgm_guest_mode {
    PGM_MODE_REAL = 0, /**< CR0.PE = 0 */
    PGM_MODE_PROT,     /**< CR0.PE = 1, CR0.PG = 0 */
    PGM_MODE_32BIT,    /**< 2-level, 4-byte entries */
    PGM_MODE_PAE,      /**< 3-level, PDPTEs latched at CR3 load */
    PGM_MODE_AMD64,    /**< 4-level (IA-32e) */
    PGM_MODE_LA57,     /**< 5-level (IA-32e with CR4.LA57) */
    PGM_MODE_COUNT
};

/** Outcome of a guest walk. */
enum pgm_walk_status {
    PGM_WALK_OK = 0,     /**< translated: gpa, page size and rights are valid */
    PGM_WALK_PAGE_FAULT, /**< #PF: error_code and fault_level are valid */
    PGM_WALK_GP,         /**< #GP (or #SS) before any walk: non-canonical address */
};

/** Effective rights of a translation (the AND of R/W and U/S, the OR of XD). */
enum pgm_rights {
    PGM_RIGHT_WRITE = 1u << 0, /**< writable at every level */
    PGM_RIGHT_USER  = 1u << 1, /**< user-accessible at every level */
    PGM_RIGHT_EXEC  = 1u << 2, /**< executable (no XD at any level, or EFER.NXE = 0) */
};

/** Flags describing how a walk went. */
enum pgm_walk_flags {
    /** The walk wrote A and/or D bits into guest entries. */
    PGM_WALK_F_AD_WRITTEN  = 1u << 0,
    /**
     * A paging-structure read hit a guest-physical page that is not RAM or ROM
     * (MMIO or unassigned). Such reads return all-ones, as on a PC bus, and A/D
     * updates to them are dropped. See docs/walker.md, "Tables outside RAM".
     */
    PGM_WALK_F_NONRAM_TABLE = 1u << 1,
    /** An entry was read from ROM (A/D updates land only in a writable shadow copy). */
    PGM_WALK_F_ROM_TABLE   = 1u << 2,
};

/** Deepest paging hierarchy (LA57). Levels are numbered 1 (PTE) to 5 (PML5E). */
#define PGM_MAX_LEVELS 5

/**
 * The full result of one guest page walk.
 *
 * Entries are indexed by level: `entry[1]` is the PTE, `entry[2]` the PDE,
 * `entry[3]` the PDPTE, `entry[4]` the PML4E, `entry[5]` the PML5E. Only the
 * levels from `top_level` down to `last_level` are valid. In PAE mode
 * `entry[3]` is the PDPTE latched at the last CR3 load, and `entry_gpa[3]` is
 * where it was read from. Entries hold the values after any A/D update.
 */
struct pgm_walk {
    pgm_gva_t gva;                       /**< the address walked */
    uint32_t access;                     /**< the `pgm_access` flags of the walk */
    enum pgm_walk_status status;         /**< outcome */
    uint32_t error_code;                 /**< #PF error code when status is PAGE_FAULT */
    pgm_gpa_t gpa;                       /**< translated address when status is OK */
    unsigned page_shift;                 /**< 12, 21 (2 MiB), 22 (4 MiB) or 30 (1 GiB) */
    unsigned top_level;                  /**< first level walked (0 without paging) */
    unsigned last_level;                 /**< leaf level, or the level that faulted */
    uint64_t entry[PGM_MAX_LEVELS + 1];      /**< entry value per level */
    pgm_gpa_t entry_gpa[PGM_MAX_LEVELS + 1]; /**< where each entry lives */
    uint32_t rights;                     /**< `pgm_rights` of the full walk (valid when OK) */
    uint8_t pat_index;                   /**< PAT index: PAT<<2 | PCD<<1 | PWT of the leaf */
    bool global;                         /**< leaf G bit (meaningful with CR4.PGE) */
    uint8_t pkey;                        /**< leaf protection key (IA-32e with CR4.PKE, else 0) */
    uint32_t flags;                      /**< `pgm_walk_flags` */
};

#endif /* PGM_TYPES_H */
