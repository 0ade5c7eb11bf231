/* SPDX-License-Identifier: MIT */
/*
 * The soft MMU's internals, shared by the one-dimensional walker and TLB
 * (soft_mmu.c) and the two-dimensional EPT / NPT walk (soft_mmu_nested.c).
 */
#ifndef PGM_SRC_BACKENDS_SOFT_MMU_H
#define PGM_SRC_BACKENDS_SOFT_MMU_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "src/backends/soft.h"

/* Host MAXPHYADDR of the modelled CPU (also the guest's, for guest entries). */
#define SOFT_MAXPHY 52

/*
 * Rights of a guest-physical translation, in EPT bit order (bits 2:0 of an
 * EPT entry, and bits 5:3 of the EPT-violation qualification shifted down).
 * NPT maps onto them: R = present with US at every level (nested accesses
 * are user accesses), W = RW at every level, X = no NX at any level.
 */
#define SOFT_NR 1u
#define SOFT_NW 2u
#define SOFT_NX 4u

/*
 * A TLB entry: a linear translation. In nested mode it is a combined mapping
 * (SDM 29.4.1): `frame` is then an HPA reached through both tables, `rights`
 * are the guest's and `nrights` the nested ones (the access needs both), and
 * `eptag` is the nested root (the EP4TA / nCR3 the mapping was made under).
 */
struct tlb_entry {
    bool valid;
    bool global;
    bool dirty;        /* the leaf's D bit when filled (nested: guest D and nested D) */
    uint8_t rights;    /* pgm_rights of the guest walk */
    uint8_t nrights;   /* nested mode: SOFT_NR / NW / NX of the final translation */
    uint8_t pkey;
    uint8_t shift;     /* page size */
    uint16_t pcid;
    uint64_t va_base;  /* va & ~(size - 1) */
    pgm_hpa_t frame;   /* hpa of the page (size aligned) */
    pgm_gpa_t gpa_base; /* nested mode: the GPA of va_base */
    pgm_hpa_t eptag;   /* nested mode: nested root; 0 for one-dimensional entries */
};

/*
 * A guest-physical mapping (SDM 29.4.1): GPA -> HPA through the nested
 * tables, used for guest paging-structure accesses and final translations.
 * Dropped only by PGM_FLUSH_GPA / PGM_FLUSH_ALL (INVEPT) or by a nested
 * fault on its address.
 */
struct gpa_entry {
    bool valid;
    bool dirty;        /* the nested leaf's D bit (true without nested A/D) */
    uint8_t nrights;   /* SOFT_NR / NW / NX */
    uint8_t shift;     /* nested page size */
    pgm_hpa_t tag;     /* nested root */
    pgm_gpa_t gpa_base;
    pgm_hpa_t frame;
};

#define SOFT_GPA_CACHE_ENTRIES 32

struct soft_vcpu {
    pthread_mutex_t lock;   /* flushes may come from other threads */
    struct pgm_soft_cpu cpu;
    uint64_t pdpte[4];      /* PAE latch */
    /* EPT with a PAE guest: the latch's nested fault, reported by the next translation. */
    bool pdpte_fault_pending;
    struct pgm_soft_mmu_result pdpte_fault;
    struct tlb_entry tlb[PGM_SOFT_TLB_ENTRIES];
    unsigned next_victim;
    struct gpa_entry gcache[SOFT_GPA_CACHE_ENTRIES];
    unsigned gcache_victim;
    struct pgm_soft_mmu_stats stats;
};

/* Per-walk state of a two-dimensional walk, filled by soft_nested_table(). */
struct soft_nested_walk {
    uint64_t gla;                 /* the linear address being translated */
    pgm_gpa_t table_gpa[6];       /* GPA of the guest entry read at each level */
    uint8_t table_nr[6];          /* nested rights (SOFT_NR / NW / NX) of its page */
    uint64_t refs;                /* paging-structure entries read (guest + nested) */
    struct pgm_soft_mmu_result fault; /* a nested fault (status NESTED_*) or BAD_HPA */
};

/* soft_mmu.c */
uint32_t soft_check_access(const struct pgm_soft_cpu *c, uint32_t access, unsigned rights,
                           unsigned pkey);
/*
 * The guest walk of @va. With @n, the tables are at GPAs read through the
 * nested tables (level @l's entry is at n->table_gpa[l]) and t->frame is a GPA.
 */
enum pgm_soft_mmu_status soft_guest_walk(struct pgm_soft_backend *sb, struct soft_vcpu *v,
                                         uint64_t va, uint32_t access, struct tlb_entry *t,
                                         uint32_t *ec, struct soft_nested_walk *n);
struct tlb_entry *soft_tlb_find(struct soft_vcpu *v, uint64_t va, uint16_t pcid, pgm_hpa_t tag);
struct tlb_entry *soft_tlb_insert(struct soft_vcpu *v, uint64_t va, const struct tlb_entry *fresh);
void soft_tlb_drop_va(struct soft_vcpu *v, uint64_t va, uint16_t pcid, pgm_hpa_t tag);

/* soft_mmu_nested.c */
/* Host pointer of the guest entry at @gpa, or NULL with n->fault filled. */
void *soft_nested_table(struct pgm_soft_backend *sb, struct soft_vcpu *v, pgm_gpa_t gpa,
                        unsigned level, struct soft_nested_walk *n);
/* Fill n->fault for a guest A/D update at @gpa refused by the nested tables. */
void soft_nested_ad_fault(struct soft_vcpu *v, pgm_gpa_t gpa, struct soft_nested_walk *n);
/* pgm_soft_mmu_translate in nested mode (vCPU locked, stats.translations counted). */
void soft_nested_translate(struct pgm_soft_backend *sb, struct soft_vcpu *v, uint64_t va,
                           uint32_t access, struct pgm_soft_mmu_result *out);
/* Latch the PDPTEs of a PAE guest through EPT (reads, SDM 29.3.3.2). */
void soft_nested_latch_pdptes(struct pgm_soft_backend *sb, struct soft_vcpu *v);
/* Drop every guest-physical mapping. */
void soft_gcache_flush(struct soft_vcpu *v);

#endif /* PGM_SRC_BACKENDS_SOFT_MMU_H */
