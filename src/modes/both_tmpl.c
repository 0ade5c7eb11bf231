/* SPDX-License-Identifier: MIT */
/*
 * Pair ("both") template: how the shadow engine follows one guest mode's
 * translation down its shadow tree. Compiled once per guest mode with
 * -DPGM_GUEST_MODE=<n> next to guest_tmpl.c; the shadow format is the one
 * that mode runs on (IA-32e guests: 64-bit format with the guest's levels;
 * every other mode: PAE format, 3 levels under a per-vCPU PDPTE root), so
 * the level loop below has no mode test: the compiler keeps one case.
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

#if GST_LEVELS >= 4
#  define SHW_LEVELS GST_LEVELS /* IA-32e: the guest's own depth */
#  define SHW_PAE_ROOT 0
#else
#  define SHW_LEVELS 3          /* PAE format: PDPTE root, PD, PT */
#  define SHW_PAE_ROOT 1
#endif

/*
 * The shadow page below shadow level @level on the path of @gva: its gfn,
 * and its role's quadrant / direct bits; the rights accumulated into *@acc.
 */
static inline uint64_t
GST_NAME(child_key)(const struct pgm_vcpu *vcpu, const struct pgm_walk *w, pgm_gva_t gva,
                    unsigned level, unsigned *acc, union pgm_role *role)
{
    unsigned shift = 12 + 9 * (level - 1); /* VA span of one entry at @level */
    (void)vcpu;
#if GST_LEVELS == 0
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
        *acc = w->rights;
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
    *acc = w->rights;
    return (w->gpa & ~((1ull << shift) - 1)) >> PGM_PAGE_SHIFT;
#endif
}

static int
GST_NAME(build_path)(struct pgm_vcpu *vcpu, pgm_gva_t gva, const struct pgm_walk *w,
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
        unsigned shift = 12 + 9 * (level - 1);
        unsigned i = (unsigned)(gva >> shift) & 511;
        union pgm_role role = pgm_role_make(level - 1, (enum pgm_guest_mode)PGM_GUEST_MODE);
        role.nxe = vcpu->wctx.xd_mask != 0;
        uint64_t child_gfn = GST_NAME(child_key)(vcpu, w, gva, level, &acc, &role);
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

const struct pgm_both_ops GST_NAME(pgm_both_ops) = {
    .levels = SHW_LEVELS,
    .pae_root = SHW_PAE_ROOT,
    .build_path = GST_NAME(build_path),
};

#undef SHW_LEVELS
#undef SHW_PAE_ROOT
