/* SPDX-License-Identifier: MIT */
/*
 * Guest-side mode templates: one instance of guest_tmpl.c per guest paging
 * mode, each exporting a const `struct pgm_guest_ops`. The vCPU keeps a
 * pointer to the ops of its current mode, chosen once per mode change, so the
 * walk itself never tests the mode.
 */
#ifndef PGM_SRC_MODES_GUEST_H
#define PGM_SRC_MODES_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "pgm/types.h"

struct pgm_vcpu;
struct pgm_vm;

/*
 * Everything a walk depends on besides guest memory, precomputed from
 * CR0/CR3/CR4/EFER, PKRU and the guest CPUID at every mode change or CR3
 * load so the walk loop only masks and compares.
 */
struct pgm_walk_ctx {
    /* Reserved-bit masks, [level][PS bit of the entry]. Level 0 unused. */
    uint64_t rsvd[PGM_MAX_LEVELS + 1][2];
    uint64_t root;          /* GPA of the top-level table (PAE: of the PDPT) */
    uint64_t pdpte[4];      /* PAE: PDPTEs latched at the last CR3 load */
    uint64_t xd_mask;       /* bit 63 when EFER.NXE, else 0 (then reserved) */
    uint32_t pkru;
    bool wp;                /* CR0.WP */
    bool pse;               /* CR4.PSE (32-bit paging 4 MiB pages) */
    bool smep, smap;        /* CR4.SMEP, CR4.SMAP */
    bool pke;               /* CR4.PKE and IA-32e: protection keys apply */
    bool report_fetch;      /* I/D in the error code: CR4.SMEP, or EFER.NXE with PAE */
    uint8_t pse36_bits;     /* PDE bits 13.. giving PA 32.. for 4 MiB pages */
    /*
     * Permission bitmap (SDM 4.6): perm[walk_perm_index(access)] has bit r
     * set when an access with effective rights r (`pgm_rights`: W=1, U=2,
     * X=4) faults. Folds CR0.WP, SMEP, SMAP and NXE in once per mode change;
     * protection keys are checked separately.
     */
    uint8_t perm[16];
};

struct pgm_page;
struct pgm_phys_map;

/*
 * A walk's view of guest memory: the map snapshot plus a one-range cache.
 * The cache only ever holds a RAM range (size 0: empty), so the fast path is
 * a range compare and the entry load (block-backed RAM: pointer arithmetic)
 * or a descriptor load and the entry load (page-by-page RAM).
 * Each vCPU keeps its cache across walks; it is valid while the map snapshot
 * pointer is unchanged (snapshots are immutable and never freed before the
 * VM, so pointer equality means "same ranges"). A walk reads the cache into
 * locals so stores to the walk result cannot alias it.
 */
struct walk_mem {
    const struct pgm_phys_map *map;
    uint64_t start;
    uint64_t size;
    struct pgm_page *pages;
    uint8_t *base;      /* the range's block, or NULL: go through `pages` */
};

struct pgm_guest_ops {
    enum pgm_guest_mode mode;
    unsigned levels;        /* 0 without paging */
    /* The walk; see pgm_walk() in paging.h. Returns 0, or -ELOOP. */
    int (*walk)(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access,
                struct pgm_walk *w);
    /*
     * Validate a CR3 value for this mode and compute the walk root into
     * @ctx (PAE: latch the PDPTEs). Returns 0 or PGM_RC_INJECT_GP.
     */
    int (*load_cr3)(struct pgm_vm *vm, uint64_t cr3, bool pcide,
                    struct pgm_walk_ctx *ctx);
};

struct pgm_shadow_page;

/*
 * Pair ("both") ops: what the shadow engine does differently for each guest
 * mode on the shadow format that mode runs on (both_tmpl.c, one instance per
 * guest mode; IA-32e guests on 64-bit-format shadows, the others on PAE).
 */
struct pgm_both_ops {
    unsigned levels;  /* shadow levels: 2 (32-bit format), 3 (PAE format), 4 or 5 */
    bool pae_root;    /* the root is the vCPU's own four PDPTEs */
    bool fmt32;       /* 32-bit format: 1024 4-byte entries per table */
    /*
     * Walk the shadow tree along @gva from the vCPU's root, creating or
     * relinking the shadow page at each level to match the guest's
     * translation @w, and return the leaf table in *@leaf. Lock held,
     * everything reserved. Returns 0 or -ENOMEM.
     */
    int (*build_path)(struct pgm_vcpu *vcpu, pgm_gva_t gva, const struct pgm_walk *w,
                      struct pgm_shadow_page **leaf);
};

#define PGM_DECL_GUEST_OPS(suffix) extern const struct pgm_guest_ops pgm_guest_ops_##suffix; \
    extern const struct pgm_both_ops pgm_both_ops_##suffix

/* The guest modes a 32-bit host paging runs on 32-bit-format shadows. */
extern const struct pgm_both_ops pgm_both_ops32_real, pgm_both_ops32_prot, pgm_both_ops32_32bit;

PGM_DECL_GUEST_OPS(real);
PGM_DECL_GUEST_OPS(prot);
PGM_DECL_GUEST_OPS(32bit);
PGM_DECL_GUEST_OPS(pae);
PGM_DECL_GUEST_OPS(amd64);
PGM_DECL_GUEST_OPS(la57);

/* The ops of @mode. */
const struct pgm_guest_ops *pgm_guest_ops_for(enum pgm_guest_mode mode);
/*
 * The pair ops of guest @mode on host paging @paging (enum pgm_paging_hw),
 * or NULL when that host cannot shadow that mode (IA-32e guests need
 * SHADOW_AMD64).
 */
const struct pgm_both_ops *pgm_both_ops_for(int paging, enum pgm_guest_mode mode);

#endif /* PGM_SRC_MODES_GUEST_H */
