/* SPDX-License-Identifier: MIT */
/*
 * pgm_audit's part for virtual handlers: the page counts match the
 * associations, and no shadow entry of a vCPU running a handler's address
 * space lets a covered access bypass it.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "src/alloc.h"
#include "src/handlers/registry.h"
#include "src/handlers/virt.h"
#include "src/modes/shadow.h"
#include "src/vm.h"

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(char *msg, size_t len, const char *fmt, ...)
{
    if (msg && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, len, fmt, ap);
        va_end(ap);
    }
    return 1;
}

/* Expected counts: key 2 * gfn (WRITE handlers) or 2 * gfn + 1 (ALL). */
static int
check_counts(struct pgm_vm *vm, char *msg, size_t len)
{
    struct pgm_virt_watch expect = { 0 };
    const struct pgm_virt_map *map = vm->virt.map;
    int rc = 0;
    for (uint32_t i = 0; i < map->count && rc == 0; i++) {
        const struct pgm_virt_h *h = map->h[i];
        for (uint64_t k = 0; k < h->npages && rc == 0; k++) {
            const struct pgm_virt_page *p = &h->pages[k];
            if (!p->counted)
                continue;
            if (pgm_virt_watch_reserve(&expect, &vm->alloc, 1) < 0) {
                rc = -1; /* cannot check: not a violation */
                break;
            }
            pgm_virt_watch_add(&expect, 2 * (p->gpa >> PGM_PAGE_SHIFT) +
                                            (h->pub.kind == PGM_VIRT_HANDLER_ALL));
        }
    }
    const struct pgm_phys_map *pm = vm->phys.map;
    for (uint32_t r = 0; rc == 0 && r < pm->count; r++) {
        const struct pgm_phys_range *range = pm->range[r];
        for (uint64_t k = 0; range->pages && rc == 0 && k < range->size >> PGM_PAGE_SHIFT; k++) {
            uint64_t gfn = (range->start >> PGM_PAGE_SHIFT) + k;
            uint32_t v = __atomic_load_n(&range->pages[k].virt, __ATOMIC_RELAXED);
            uint32_t w = pgm_virt_watch_count(&expect, 2 * gfn);
            uint32_t a = pgm_virt_watch_count(&expect, 2 * gfn + 1);
            /* A count that reached PGM_VIRT_COUNT_MAX sticks (restricting more is safe). */
            if (((v & PGM_VIRT_COUNT_MAX) != w && (v & PGM_VIRT_COUNT_MAX) != PGM_VIRT_COUNT_MAX) ||
                ((v >> 16) != a && (v >> 16) != PGM_VIRT_COUNT_MAX))
                rc = fail(msg, len, "virtual handler counts of gfn %#" PRIx64 " are %#" PRIx32
                          ", the associations give %" PRIu32 " WRITE, %" PRIu32 " ALL", gfn, v, w, a);
        }
    }
    pgm_virt_watch_fini(&expect, &vm->alloc);
    return rc > 0 ? 1 : 0;
}

/* Can a vCPU in @mode access linear address @gva (canonical, or 32 bits)? */
static bool
linear_in_mode(enum pgm_guest_mode mode, pgm_gva_t gva)
{
    if (mode != PGM_MODE_AMD64 && mode != PGM_MODE_LA57)
        return gva <= UINT32_MAX;
    unsigned bits = mode == PGM_MODE_LA57 ? 57 : 48;
    return (uint64_t)((int64_t)(gva << (64 - bits)) >> (64 - bits)) == gva;
}

/* No shadow leaf of a vCPU in a handler's space maps a covered page wider than the handler allows. */
static int
check_shadows(struct pgm_vm *vm, char *msg, size_t len)
{
    struct pgm_shadow *sh = vm->shadow;
    const struct pgm_virt_map *map = vm->virt.map;
    int rc = 0;
    pthread_mutex_lock(&sh->lock);
    for (unsigned c = 0; c < vm->vcpu_count && rc == 0; c++) {
        struct pgm_vcpu *vcpu = &vm->vcpus[c];
        for (uint32_t i = 0; vcpu->root && i < map->count && rc == 0; i++) {
            const struct pgm_virt_h *h = map->h[i];
            if (!h->npages || !pgm_virt_same_space(h, vcpu->mode, vcpu->state.cr3))
                continue;
            for (uint64_t k = 0; k < h->npages && rc == 0; k++) {
                pgm_gva_t gva = h->pub.gva + (k << PGM_PAGE_SHIFT);
                if (!linear_in_mode(vcpu->mode, gva))
                    continue; /* the guest cannot reach it in this mode */
                struct pgm_shadow_info si;
                if (pgm_shadow_lookup_locked(vcpu, gva, &si) != 0 || !si.present)
                    continue;
                uint64_t leaf = si.entry[si.last_level];
                if (h->pub.kind == PGM_VIRT_HANDLER_ALL)
                    rc = fail(msg, len, "vCPU %u maps %#" PRIx64
                              ", covered by an ALL virtual handler", c, gva);
                else if (leaf & SPTE_RW)
                    rc = fail(msg, len, "vCPU %u maps %#" PRIx64
                              " writable under a WRITE virtual handler", c, gva);
            }
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

int
pgm_virt_audit(struct pgm_vm *vm, char *msg, size_t len)
{
    if (!vm->shadow)
        return 0;
    pgm_vm_lock(vm);
    int rc = 0;
    if (vm->virt.ever) {
        rc = check_counts(vm, msg, len);
        if (rc == 0)
            rc = check_shadows(vm, msg, len);
    }
    pgm_vm_unlock(vm);
    return rc;
}
