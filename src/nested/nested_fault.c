/* SPDX-License-Identifier: MIT */
/*
 * The nested fault path: pgm_nested_fault() and the helpers that turn
 * decoded VT-x / AMD-V exits into its arguments. Decision table in
 * docs/nested.md.
 */
#include <errno.h>
#include <string.h>

#include "pgm/nested.h"
#include "src/handlers/registry.h"
#include "src/nested/nested.h"
#include "src/vm.h"

PGM_API int
pgm_nested_info_from_ept(const struct pgm_vtx_ept_violation *v, struct pgm_nested_fault_info *info,
                         uint32_t *access)
{
    if (!v || !info || !access)
        return -EINVAL;
    memset(info, 0, sizeof(*info));
    *access = v->write ? PGM_ACCESS_WRITE : v->fetch ? PGM_ACCESS_FETCH : PGM_ACCESS_READ;
    if (v->gla_valid) {
        info->flags |= PGM_NESTED_FI_GVA_VALID;
        info->gva = v->gla;
        /* Bit 8 is meaningful only with bit 7: 0 = the guest's own table access. */
        if (!v->translated)
            info->flags |= PGM_NESTED_FI_GUEST_WALK;
    }
    return 0;
}

PGM_API int
pgm_nested_info_from_npf(const struct pgm_svm_npf *npf, struct pgm_nested_fault_info *info,
                         uint32_t *access)
{
    if (!npf || !info || !access)
        return -EINVAL;
    memset(info, 0, sizeof(*info));
    *access = npf->write ? PGM_ACCESS_WRITE : npf->fetch ? PGM_ACCESS_FETCH : PGM_ACCESS_READ;
    if (npf->guest_walk && !npf->final_translation)
        info->flags |= PGM_NESTED_FI_GUEST_WALK;
    if (npf->present && npf->rsvd)
        info->flags |= PGM_NESTED_FI_MISCONFIG;
    return 0;
}

PGM_API int
pgm_nested_info_from_event(const struct pgm_hwvirt_event *ev, struct pgm_nested_fault_info *info,
                           uint32_t *access, pgm_gpa_t *gpa)
{
    if (!ev || !info || !access || !gpa)
        return -EINVAL;
    memset(info, 0, sizeof(*info));
    if (ev->kind == PGM_HWVIRT_NESTED_MISCONFIG) {
        *access = PGM_ACCESS_READ;
        *gpa = ev->u.misconfig_gpa;
        info->flags = PGM_NESTED_FI_MISCONFIG;
        return 0;
    }
    if (ev->kind != PGM_HWVIRT_NESTED_FAULT)
        return -EINVAL;
    const struct pgm_hwvirt_nested *nf = &ev->u.nested;
    *gpa = nf->gpa;
    *access = nf->access & (PGM_ACCESS_WRITE | PGM_ACCESS_FETCH);
    if (nf->gva_valid) {
        info->flags |= PGM_NESTED_FI_GVA_VALID;
        info->gva = nf->gva;
    }
    if (nf->stage == PGM_HWVIRT_STAGE_GUEST_WALK)
        info->flags |= PGM_NESTED_FI_GUEST_WALK;
    return 0;
}

static bool
allows(uint32_t rights, uint32_t access)
{
    if (access & PGM_ACCESS_WRITE)
        return rights & NR_W;
    if (access & PGM_ACCESS_FETCH)
        return rights & NR_X;
    return rights & NR_R;
}

/* The access must be finished by libpgm: emulate, or hand it out without registers. */
static int
finish(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, uint32_t access,
       const struct pgm_nested_fault_info *info, struct pgm_regs *regs, struct pgm_fault_out *out)
{
    struct pgm_nested *n = vcpu->vm->nested;
    if (regs) {
        __atomic_fetch_add(&n->c.emulations, 1, __ATOMIC_RELAXED);
        int rc = pgm_emulate_insn(vcpu, regs, out);
        if (rc != -ENOTSUP)
            return rc;
        memset(out, 0, sizeof(*out)); /* built without the emulator */
    }
    out->result = PGM_FAULT_EXIT;
    out->exit_reason = PGM_EXIT_EMULATE;
    out->exit_gpa = gpa;
    out->exit_size = 0;
    out->exit_write = (access & PGM_ACCESS_WRITE) != 0;
    if (info && (info->flags & PGM_NESTED_FI_GVA_VALID))
        out->address = info->gva;
    return 0;
}

PGM_API int
pgm_nested_fault(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, uint32_t access,
                 const struct pgm_nested_fault_info *info, struct pgm_regs *regs,
                 struct pgm_fault_out *out)
{
    if (!vcpu || !out || !vcpu->vm->nested)
        return -EINVAL;
    if ((access & ~(uint32_t)(PGM_ACCESS_WRITE | PGM_ACCESS_FETCH)) ||
        access == (PGM_ACCESS_WRITE | PGM_ACCESS_FETCH))
        return -EINVAL;
    struct pgm_vm *vm = vcpu->vm;
    struct pgm_nested *n = vm->nested;
    memset(out, 0, sizeof(*out));
    /*
     * A GPA beyond the walk length (48 bits with 4 levels) cannot be mapped:
     * its index would alias a lower GPA's entry, and the CPU walks only the
     * low bits. A guest reaches one when its entries are checked against a
     * wider host MAXPHYADDR than the nested table covers; as KVM does with a
     * GFN beyond its MMU, treat it as memory no table maps: the access is
     * finished by emulation on the physical layer (unassigned space reads
     * all-ones, drops writes). A GPA above the guest's CPUID MAXPHYADDR but
     * within reach is likewise unassigned space.
     */
    if (!pgm_nested_reaches(n, gpa)) {
        __atomic_fetch_add(&n->c.faults, 1, __ATOMIC_RELAXED);
        return finish(vcpu, gpa, access, info, regs, out);
    }
    struct nested_target tgt;

    /*
     * Fast path: a misconfiguration / reserved-bit exit comes only from the
     * MMIO marker. If the GPA still wants the marker, emulate at once; else
     * (the map changed since) fall through to the ordinary path, which
     * replaces the stale entry.
     */
    if (info && (info->flags & PGM_NESTED_FI_MISCONFIG)) {
        pgm_nested_target(vm, gpa, &tgt);
        if (tgt.kind == NT_MARKER) {
            __atomic_fetch_add(&n->c.faults, 1, __ATOMIC_RELAXED);
            __atomic_fetch_add(&n->c.mmio_fast, 1, __ATOMIC_RELAXED);
            return finish(vcpu, gpa, access, info, regs, out);
        }
    }

    bool claimed = false;
    for (unsigned attempt = 0;; attempt++) {
        pgm_vm_lock(vm);
        if (attempt == 0)
            __atomic_fetch_add(&n->c.faults, 1, __ATOMIC_RELAXED);
        unsigned level;
        uint64_t *slot = pgm_nested_slot(n, gpa, &level, NULL);
        uint64_t cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        enum nested_kind kind = pgm_nested_kind(n, level, cur);
        if (kind == NE_LEAF && allows(pgm_nested_rights(n, cur), access)) {
            /* Another vCPU already mapped it (or the page allocation just did). */
            if (attempt == 0)
                n->c.spurious++;
            pgm_vm_unlock(vm);
            out->result = PGM_FAULT_RESUME;
            return 0;
        }
        pgm_nested_target(vm, gpa, &tgt);
        if (tgt.kind == NT_MAP && allows(tgt.rights, access)) {
            int rc = pgm_nested_install(vm, gpa, access, &tgt);
            pgm_vm_unlock(vm);
            if (rc < 0)
                return rc;
            out->result = PGM_FAULT_RESUME;
            return 0;
        }
        if (!claimed && tgt.kind == NT_MAP && (access & PGM_ACCESS_WRITE) && tgt.pg &&
            tgt.r->kind == PGM_PHYS_RAM && pgm_page_handler_state(tgt.pg) == PGM_HANDLER_WRITE) {
            /*
             * Write-protect dirty logging: log the page and map it writable
             * (what the log's callback does) instead of emulating the write.
             * Either way, start over: the state may have changed unlocked.
             */
            pgm_vm_unlock(vm);
            claimed = true;
            (void)pgm_dirty_wp_claim(vm, gpa);
            continue;
        }
        if (tgt.materialize && (access & PGM_ACCESS_WRITE) && attempt < 2) {
            /* First write to never-written RAM: allocate it, then map it. */
            pgm_vm_unlock(vm);
            int rc = pgm_phys_page_materialize(vm, tgt.r, tgt.pg);
            if (rc < 0)
                return rc;
            continue;
        }
        /*
         * libpgm must finish this access. Map what the page does allow
         * (reads of a WRITE-handler page, the marker) so that other accesses
         * do not exit; failing that only costs another fault later.
         */
        if (kind == NE_NONE || (kind == NE_MARKER) != (tgt.kind == NT_MARKER))
            (void)pgm_nested_install(vm, gpa, PGM_ACCESS_READ, &tgt);
        pgm_vm_unlock(vm);
        return finish(vcpu, gpa, access, info, regs, out);
    }
}
