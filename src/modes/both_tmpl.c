/* SPDX-License-Identifier: MIT */
/*
 * Pair ("both") template: how the shadow engine follows one guest mode's
 * translation down its shadow tree. Compiled once per (guest mode, shadow
 * format) pair with -DPGM_GUEST_MODE=<n> (and -DPGM_SHADOW_FMT32=1 for the
 * 32-bit format) next to guest_tmpl.c: IA-32e guests on the 64-bit format
 * with the guest's levels, the other modes on the PAE format (3 levels under
 * a per-vCPU PDPTE root) or, under a 32-bit host paging, real, protected and
 * 32-bit guests on the 32-bit format. The level loop below has no mode or
 * format test: the compiler keeps one case.
 *
 * The role of each shadow page records what its content depends on: its
 * level, the guest mode, the quadrant of a 1024-entry guest table it
 * shadows, whether it is direct (a frame range, not a guest table), the
 * rights of the guest entries above it, and EFER.NXE (which makes bit 63
 * XD or reserved). Same role, same content: shadow pages are shared and
 * cached by it.
 */
#include <errno.h>

#include "src/modes/shadow.h"
#include "src/modes/tmpl.h"
#include "src/vm.h"

/*
 * PGM_SHADOW_FMT32=1 builds the instance for a 32-bit host paging (real,
 * protected and 32-bit guests on 2-level 32-bit-format shadows, whose 1024
 * 4-byte entries match a 32-bit guest's tables one to one).
 */
#ifndef PGM_SHADOW_FMT32
#  define PGM_SHADOW_FMT32 0
#endif

#if PGM_SHADOW_FMT32
#  if GST_LEVELS > 2
#    error "the 32-bit shadow format serves real, protected and 32-bit guests only"
#  endif
#  define BOTH_NAME(n) GST_NAME(PGM_CAT(n, 32))
#  define SHW_LEVELS 2          /* 32-bit format: PD, PT */
#  define SHW_PAE_ROOT 0
#  define SHW_IDX_BITS 10
#elif GST_LEVELS >= 4
#  define BOTH_NAME(n) GST_NAME(n)
#  define SHW_LEVELS GST_LEVELS /* IA-32e: the guest's own depth */
#  define SHW_PAE_ROOT 0
#  define SHW_IDX_BITS 9
#else
#  define BOTH_NAME(n) GST_NAME(n)
#  define SHW_LEVELS 3          /* PAE format: PDPTE root, PD, PT */
#  define SHW_PAE_ROOT 1
#  define SHW_IDX_BITS 9
#endif

#if GST_LEVELS != 0
/*
 * The rights of a direct table shadowing guest large page @w: W only once
 * the guest's leaf is dirty. Two guest leaves may map the same large frame
 * with the same rights, one dirty and one clean, and they must not share a
 * direct table: its entries made writable through the dirty one would let
 * writes through the clean one bypass the walk that sets its D bit.
 */
static inline unsigned
BOTH_NAME(large_rights)(const struct pgm_walk *w)
{
    bool dirty = (w->entry[w->last_level] & SPTE_D) != 0;
    return dirty ? w->rights : w->rights & ~(unsigned)PGM_RIGHT_WRITE;
}
#endif

/*
 * The shadow page below shadow level @level on the path of @gva: its gfn,
 * and its role's quadrant / direct bits; the rights accumulated into *@acc.
 */
static inline uint64_t
BOTH_NAME(child_key)(const struct pgm_vcpu *vcpu, const struct pgm_walk *w, pgm_gva_t gva,
                     unsigned level, unsigned *acc, union pgm_role *role)
{
    unsigned shift = 12 + SHW_IDX_BITS * (level - 1); /* VA span of one entry at @level */
    (void)vcpu;
#if PGM_SHADOW_FMT32 && GST_LEVELS == 2
    /* 32-bit guest, 32-bit shadow: the page table itself, or a 4 MiB page
     * as a direct table of its 1024 frames. */
    (void)gva;
    (void)level;
    if (w->last_level == 2) {
        role->direct = 1;
        *acc = BOTH_NAME(large_rights)(w);
        return (w->gpa & ~((1ull << shift) - 1)) >> PGM_PAGE_SHIFT;
    }
    *acc &= pgm_shadow_entry_rights(w->entry[2], 0);
    return (w->entry[2] & 0xfffff000ull) >> PGM_PAGE_SHIFT;
#elif GST_LEVELS == 0
    /* Paging off: the identity map of guest-physical memory, direct throughout. */
    (void)gva;
    (void)acc;
    role->direct = 1;
    return (w->gpa & ~((1ull << shift) - 1)) >> PGM_PAGE_SHIFT;
#elif PGM_GUEST_MODE == PGM_GMODE_32BIT
    if (level == 3) {
        /* A quarter of the guest's page directory (256 of its 4 MiB PDEs). */
        role->quadrant = (unsigned)(gva >> 30) & 3;
        return w->entry_gpa[2] >> PGM_PAGE_SHIFT;
    }
    if (w->last_level == 2) {
        /* A 4 MiB guest page: its 2 MiB half as a direct table. */
        role->direct = 1;
        *acc = BOTH_NAME(large_rights)(w);
        return (w->gpa & ~((1ull << shift) - 1)) >> PGM_PAGE_SHIFT;
    }
    /* Half a guest page table (512 of its 1024 PTEs): VA bit 21. */
    *acc &= pgm_shadow_entry_rights(w->entry[2], 0);
    role->quadrant = (unsigned)(gva >> 21) & 1;
    return (w->entry[2] & 0xfffff000ull) >> PGM_PAGE_SHIFT;
#else
#  if PGM_GUEST_MODE == PGM_GMODE_PAE
    if (level == 3)
        return (w->entry[3] & SPTE_ADDR) >> PGM_PAGE_SHIFT; /* PDPTEs carry no rights */
#  endif
    (void)gva;
    if (level > w->last_level) {
        /* The guest has a table below this level: shadow it. */
        *acc &= pgm_shadow_entry_rights(w->entry[level], vcpu->wctx.xd_mask);
        return (w->entry[level] & SPTE_ADDR) >> PGM_PAGE_SHIFT;
    }
    /* Inside a guest large page: a direct table of its frames. */
    role->direct = 1;
    *acc = BOTH_NAME(large_rights)(w);
    return (w->gpa & ~((1ull << shift) - 1)) >> PGM_PAGE_SHIFT;
#endif
}

static int
BOTH_NAME(build_path)(struct pgm_vcpu *vcpu, pgm_gva_t gva, const struct pgm_walk *w,
                      struct pgm_shadow_page **leaf)
{
    struct pgm_vm *vm = vcpu->vm;
    struct pgm_shadow *sh = vm->shadow;
    unsigned acc = PGM_RIGHT_WRITE | PGM_RIGHT_USER | PGM_RIGHT_EXEC;
    struct pgm_shadow_page *sp = vcpu->root;
    bool relatch = false;
    sp->write_flood = 0;
    PGM_UNROLL
    for (unsigned level = SHW_LEVELS; level > 1; level--) {
        unsigned shift = 12 + SHW_IDX_BITS * (level - 1);
        unsigned i = (unsigned)(gva >> shift) & ((1u << SHW_IDX_BITS) - 1);
        union pgm_role role = pgm_role_make(level - 1, (enum pgm_guest_mode)PGM_GUEST_MODE);
        role.nxe = vcpu->wctx.xd_mask != 0;
        role.pse = PGM_GUEST_MODE == PGM_GMODE_32BIT && vcpu->wctx.pse;
        role.fmt32 = PGM_SHADOW_FMT32;
        uint64_t child_gfn = BOTH_NAME(child_key)(vcpu, w, gva, level, &acc, &role);
        role.access = acc & 7;
        uint64_t e = spte_get(sp, i);
        struct pgm_shadow_page *child = NULL;
        if (e & SPTE_P) {
            child = pgm_shadow_sp_of_hpa(sh, e & SPTE_ADDR);
            if (child->gfn != child_gfn || !pgm_role_equal(child->role, role)) {
                /* The guest's entry above changed: relink. */
                pgm_shadow_zap_entry(sh, sp, i);
                child = NULL;
            } else {
                pgm_pool_touch(sh->pool, child);
            }
        }
        if (!child) {
            child = pgm_shadow_get_sp(sh, child_gfn, role);
            if (!child)
                return -ENOMEM;
#if PGM_SHADOW_FMT32
            /* A 4-byte entry cannot point above 4 GiB: the backend must give
             * a 32-bit host paging its table pages below (soft backend: yes). */
            if (child->hpa >> 32)
                return -ENOMEM;
#endif
            pgm_shadow_link_child(sh, sp, i, child);
#if SHW_PAE_ROOT
            if (level == 3) {
                /* PAE-format PDPTEs: only P and the address; the CPU latches
                 * them at CR3 load, so hand the root over again. */
                spte_set(sp, i, child->hpa | SPTE_P);
                relatch = true;
            }
#endif
        }
        child->write_flood = 0; /* used as a table: not a flood */
        sp = child;
    }
    if (relatch && vm->be->load_root)
        vm->be->load_root(vm->be_ctx, vcpu->id, vcpu->root->hpa);
    *leaf = sp;
    return 0;
}

const struct pgm_both_ops BOTH_NAME(pgm_both_ops) = {
    .levels = SHW_LEVELS,
    .pae_root = SHW_PAE_ROOT,
    .fmt32 = PGM_SHADOW_FMT32,
    .build_path = BOTH_NAME(build_path),
};

#undef BOTH_NAME
#undef SHW_LEVELS
#undef SHW_PAE_ROOT
#undef SHW_IDX_BITS
