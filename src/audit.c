/* SPDX-License-Identifier: MIT */
/*
 * pgm_audit: the laws of DESIGN.md section 2, checked over every live shadow
 * page. Tests and fuzzers call it after every step; it stops at the first
 * violation and says which page, entry and rule.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pgm/stats.h"
#include "src/handlers/registry.h"
#include "src/handlers/virt.h"
#include "src/modes/shadow.h"
#include "src/nested/nested.h"
#include "src/vm.h"

struct audit {
    struct pgm_vm *vm;
    struct pgm_shadow *sh;
    char *msg;
    size_t len;
};

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int
fail(struct audit *a, const struct pgm_shadow_page *sp, unsigned i, const char *fmt, ...);

static int
fail(struct audit *a, const struct pgm_shadow_page *sp, unsigned i, const char *fmt, ...)
{
    if (a->msg && a->len) {
        int n = snprintf(a->msg, a->len, "shadow page gfn %#" PRIx64 " level %u%s entry %u: ",
                         sp ? sp->gfn : 0, sp ? (unsigned)sp->role.level : 0,
                         sp && sp->role.direct ? " (direct)" : "", i);
        if (n > 0 && (size_t)n < a->len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(a->msg + n, a->len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return 1;
}

/* The leaf rules: transparency (frame), isolation (backing, rights), monitoring. */
static int
check_leaf(struct audit *a, struct pgm_shadow_page *sp, unsigned i, uint64_t e)
{
    struct pgm_shadow *sh = a->sh;
    pgm_hpa_t hpa = e & SPTE_ADDR;
    if (pgm_shadow_sp_of_hpa(sh, hpa))
        return fail(a, sp, i, "maps a shadow table page (hpa %#" PRIx64 ") to the guest", hpa);
    uint64_t gfn = pgm_shadow_gfns(sh, sp)[i];
    struct pgm_rmap_ref ref = { sp, i };
    if (!pgm_rmap_list_contains(pgm_rmap_gfn_list(&sh->rmap, gfn), ref.sp, ref.index))
        return fail(a, sp, i, "missing from the reverse map of gfn %#" PRIx64, gfn);

    /* Isolation: the host page that backs that GPA now. */
    struct pgm_phys_range *r =
        pgm_phys_map_find(pgm_phys_snapshot(&a->vm->phys), gfn << PGM_PAGE_SHIFT);
    if (!r || r->kind == PGM_PHYS_MMIO)
        return fail(a, sp, i, "maps gfn %#" PRIx64 ", which is not RAM or ROM", gfn);
    const struct pgm_page *pg = &r->pages[gfn - (r->start >> PGM_PAGE_SHIFT)];
    if (!pg->host || pg->hpa != hpa)
        return fail(a, sp, i, "maps hpa %#" PRIx64 " but gfn %#" PRIx64 " is backed by %#" PRIx64,
                    hpa, gfn, pg->host ? pg->hpa : 0);
    enum pgm_handler_kind hk = pgm_page_shadow_state(pg);
    if (hk == PGM_HANDLER_ALL)
        return fail(a, sp, i, "maps gfn %#" PRIx64 " whose ALL handler must see every access", gfn);

    unsigned acc = sp->role.access;
    bool w = e & SPTE_RW, u = e & SPTE_US, x = !(e & SPTE_XD);
    if ((w && !(acc & PGM_RIGHT_WRITE)) || (u && !(acc & PGM_RIGHT_USER)) ||
        (x && !(acc & PGM_RIGHT_EXEC)))
        return fail(a, sp, i, "rights wider than the upper guest levels allow");
    if (w) {
        bool ram = r->kind == PGM_PHYS_RAM ||
                   __atomic_load_n(&r->rom_mode, __ATOMIC_ACQUIRE) == PGM_ROM_MODE_SHADOW_RW;
        if (!ram)
            return fail(a, sp, i, "writable mapping of ROM");
        if (hk != PGM_HANDLER_NONE)
            return fail(a, sp, i, "writable mapping of gfn %#" PRIx64 " under a write handler", gfn);
        if (pgm_shadow_gfn_monitored(sh, gfn))
            return fail(a, sp, i, "writable mapping of gfn %#" PRIx64 ", a shadowed guest table",
                        gfn);
    }

    /*
     * An out-of-sync table is writable by the guest: its entries may lag the
     * guest's until the next INVLPG / MOV CR3 / flush resyncs it (the SDM
     * lets a TLB be that stale). Isolation was checked above; transparency
     * is checked when it is back in sync.
     */
    if (sp->unsync)
        return 0;
    if (sp->role.direct) {
        if (gfn != sp->gfn + i)
            return fail(a, sp, i, "direct entry maps gfn %#" PRIx64 ", not %#" PRIx64, gfn,
                        sp->gfn + i);
        return 0;
    }
    /* Transparency: the guest entry this shadows names that frame, with these rights. */
    uint64_t g = 0, frame_mask = SPTE_ADDR;
    if (sp->role.guest_mode == PGM_MODE_32BIT) {
        /* 4-byte entries; this page is half (quadrant) of a 1024-entry table */
        unsigned k = sp->role.fmt32 ? i : 512u * sp->role.quadrant + i;
        pgm_phys_read_backing(a->vm, (sp->gfn << PGM_PAGE_SHIFT) + 4u * k, &g, 4);
        frame_mask = 0xfffff000ull;
    } else {
        pgm_phys_read_backing(a->vm, (sp->gfn << PGM_PAGE_SHIFT) + 8u * i, &g, 8);
    }
    if (!(g & SPTE_P))
        return fail(a, sp, i, "present, but the guest entry %#" PRIx64 " is not", g);
    if (!(g & SPTE_A))
        return fail(a, sp, i, "present, but the guest entry %#" PRIx64 " is not accessed: "
                    "an access would skip setting A", g);
    if (((g & frame_mask) >> PGM_PAGE_SHIFT) != gfn)
        return fail(a, sp, i, "maps gfn %#" PRIx64 " but the guest entry %#" PRIx64 " names another",
                    gfn, g);
    if (w && (!(g & SPTE_RW) || !(g & SPTE_D)))
        return fail(a, sp, i, "writable, but the guest entry %#" PRIx64 " is read-only or clean", g);
    if (u && !(g & SPTE_US))
        return fail(a, sp, i, "user, but the guest entry %#" PRIx64 " is supervisor", g);
    if (x && (g & SPTE_XD))
        return fail(a, sp, i, "executable, but the guest entry %#" PRIx64 " has XD", g);
    return 0;
}

static int
check_page(void *ctx, struct pgm_shadow_page *sp)
{
    struct audit *a = ctx;
    struct pgm_shadow *sh = a->sh;
    if (pgm_shadow_sp_of_hpa(sh, sp->hpa) != sp)
        return fail(a, sp, 0, "not in the hpa map");
    if (sp->role.level == 1 && !pgm_shadow_gfns(sh, sp))
        return fail(a, sp, 0, "leaf table without its gfn array");
    unsigned present = 0;
    for (unsigned i = 0; i < sp_entries(sp); i++) {
        uint64_t e = spte_get(sp, i);
        if (!(e & SPTE_P))
            continue;
        present++;
        if (sp->role.level == 1) {
            int rc = check_leaf(a, sp, i, e);
            if (rc)
                return rc;
            continue;
        }
        struct pgm_shadow_page *child = pgm_shadow_sp_of_hpa(sh, e & SPTE_ADDR);
        if (!child)
            return fail(a, sp, i, "points at hpa %#" PRIx64 ", which is no shadow page",
                        (uint64_t)(e & SPTE_ADDR));
        if (child->role.level + 1 != sp->role.level)
            return fail(a, sp, i, "points at a level-%u page", (unsigned)child->role.level);
        if (!pgm_rmap_list_contains(&child->parents, sp, i))
            return fail(a, sp, i, "missing from its child's parent list");
    }
    if (present != sp->present_count)
        return fail(a, sp, 0, "present_count %u, %u entries present", sp->present_count, present);
    /* Every parent reference is a present entry pointing here. */
    struct pgm_rmap_iter it;
    struct pgm_rmap_ref ref;
    pgm_rmap_for_each(&sp->parents, it, ref) {
        uint64_t e = spte_get(ref.sp, ref.index);
        if (!(e & SPTE_P) || (e & SPTE_ADDR) != sp->hpa)
            return fail(a, sp, 0, "parent reference (gfn %#" PRIx64 ", entry %u) does not point here",
                        ref.sp->gfn, ref.index);
    }
    return 0;
}

PGM_API int
pgm_audit(struct pgm_vm *vm, char *msg, size_t len)
{
    if (!vm)
        return -EINVAL;
    if (msg && len)
        msg[0] = 0;
    if (vm->nested) {
        pgm_vm_lock(vm);
        int nrc = pgm_nested_audit(vm, msg, len);
        pgm_vm_unlock(vm);
        return nrc;
    }
    struct pgm_shadow *sh = vm->shadow;
    if (!sh)
        return 0;
    struct audit a = { vm, sh, msg, len };
    pthread_mutex_lock(&sh->lock);
    int rc = 0;
    if (pgm_pool_check(sh->pool) != 0)
        rc = fail(&a, NULL, 0, "pool invariants broken");
    else if (pgm_rmap_check(&sh->rmap) != 0)
        rc = fail(&a, NULL, 0, "reverse map invariants broken");
    for (unsigned i = 0; rc == 0 && i < vm->vcpu_count; i++) {
        const struct pgm_shadow_page *root = vm->vcpus[i].root;
        if (root && !root->root_count)
            rc = fail(&a, root, 0, "root of vCPU %u is not pinned", i);
    }
    if (rc == 0)
        rc = pgm_pool_for_each_page(sh->pool, check_page, &a);
    pthread_mutex_unlock(&sh->lock);
    if (rc == 0)
        rc = pgm_virt_audit(vm, msg, len);
    return rc ? 1 : 0;
}
