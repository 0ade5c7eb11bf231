/* SPDX-License-Identifier: MIT */
/*
 * pgm_soft_access: one guest access made through the soft MMU on libpgm's
 * shadow tables, the way a CPU makes it: TLB or walk; on a #PF, the shadow
 * engine either syncs the shadows (retry), reports a guest fault (inject), or
 * says libpgm must finish the access itself, which here needs no
 * instruction emulation because the data is at hand.
 *
 * On an EPT / NPT VM the soft MMU walks the guest's own tables through
 * libpgm's nested table, as hardware-assisted paging does: a guest #PF goes
 * straight to the guest (libpgm is not involved), an EPT violation /
 * misconfiguration or NPF is decoded from its raw exit values, exactly as an
 * embedder would, and handed to pgm_nested_fault.
 */
#include <errno.h>
#include <string.h>

#include "pgm/hwvirt.h"
#include "pgm/nested.h"
#include "pgm/paging.h"
#include "src/backends/soft.h"
#include "src/handlers/virt.h"
#include "src/modes/shadow.h"
#include "src/vm.h"

/* Give the soft vCPU the hardware state the shadows are built for. */
static int
load_hw_state(struct pgm_vcpu *vcpu)
{
    struct pgm_vm *vm = vcpu->vm;
    struct pgm_shadow *sh = vm->shadow;
    pthread_mutex_lock(&sh->lock);
    int rc = vcpu->root ? 0 : pgm_shadow_load_root(vcpu, true);
    pgm_hpa_t root = vcpu->root ? vcpu->root->hpa : 0;
    pthread_mutex_unlock(&sh->lock);
    if (rc < 0)
        return rc;
    const struct pgm_cpu_state *g = &vcpu->state;
    /*
     * The shadows assume CR0.WP = 1 (writes CR0.WP = 0 allows are finished by
     * libpgm) and EFER.NXE = 1 (XD marks non-executable guest pages); SMEP,
     * SMAP, PKE, PKRU and PGE are the guest's, checked by the MMU itself.
     */
    struct pgm_soft_cpu cpu = {
        /* The shadow format of this guest mode on this VM's host paging. */
        .format = vcpu->bops->fmt32 ? PGM_MODE_32BIT
                  : vcpu->bops->pae_root ? PGM_MODE_PAE : vcpu->mode,
        .cr3 = root,
        .wp = true,
        .pge = (g->cr4 & PGM_CR4_PGE) != 0,
        /* SMEP and SMAP mean nothing with paging off (the identity map is
         * all user pages), protection keys only in IA-32e paging. */
        .smep = (g->cr0 & PGM_CR0_PG) && (g->cr4 & PGM_CR4_SMEP),
        .smap = (g->cr0 & PGM_CR0_PG) && (g->cr4 & PGM_CR4_SMAP),
        .pke = (g->efer & PGM_EFER_LMA) && (g->cr4 & PGM_CR4_PKE),
        .nxe = true,
        .pkru = g->pkru,
    };
    return pgm_soft_mmu_set_cpu(vm->be_ctx, vcpu->id, &cpu);
}

/*
 * libpgm makes the access itself, the data being at hand: through the
 * virtual handler covering the linear page, if any, then on guest-physical
 * memory through physical handlers (a write to a shadowed guest table keeps
 * the shadows coherent in the physical layer). @out: RESUME, or EXIT when a
 * handler asked for it.
 */
static int
finish_direct(struct pgm_vcpu *vcpu, pgm_gva_t gva, pgm_gpa_t gpa, void *buf, size_t size,
              bool write, struct pgm_fault_out *out)
{
    void *rbuf = write ? NULL : buf;
    const void *wbuf = write ? buf : NULL;
    int rc = pgm_virt_dispatch(vcpu, gva, gpa, rbuf, wbuf, size);
    if (rc == 1)
        rc = pgm_phys_access_guest(vcpu, gpa, rbuf, wbuf, size);
    if (rc == PGM_RC_HANDLER_EXIT) {
        out->result = PGM_FAULT_EXIT;
        out->exit_reason = PGM_EXIT_HANDLER;
        out->exit_gpa = gpa;
        out->exit_size = (uint32_t)size;
        out->exit_write = write;
        if (write)
            memcpy(out->exit_data, buf, size < 16 ? size : 16);
        return 0;
    }
    if (rc < 0 && rc != -ENODEV) /* -ENODEV: MMIO with no device, as on the bus */
        return rc;
    out->result = PGM_FAULT_RESUME;
    return 0;
}

/* The translation succeeded or raised #GP: finish the access. Else false. */
static bool
translated(const struct pgm_soft_mmu_result *r, void *buf, size_t size, bool write,
           struct pgm_fault_out *out)
{
    if (r->status == PGM_SOFT_MMU_GP) {
        out->result = PGM_FAULT_INJECT;
        out->vector = 13;
        return true;
    }
    if (r->status != PGM_SOFT_MMU_OK)
        return false;
    if (write)
        memcpy(r->ptr, buf, size);
    else
        memcpy(buf, r->ptr, size);
    out->result = PGM_FAULT_RESUME;
    return true;
}

/*
 * Load the soft vCPU's hardware state with @load and translate @gva: 1 when
 * the access is done or raised #GP (@out filled), 0 with the fault in @r,
 * or a negative errno.
 */
static int
try_translate(struct pgm_vcpu *vcpu, int (*load)(struct pgm_vcpu *), pgm_gva_t gva,
              uint32_t access, void *buf, size_t size, struct pgm_fault_out *out,
              struct pgm_soft_mmu_result *r)
{
    int rc = load(vcpu);
    if (rc == 0)
        rc = pgm_soft_mmu_translate(vcpu->vm->be_ctx, vcpu->id, gva, access, r);
    if (rc < 0)
        return rc;
    return translated(r, buf, size, (access & PGM_ACCESS_WRITE) != 0, out);
}

/* Give the soft vCPU the guest's own paging state over the VM's nested table. */
static int
load_nested_state(struct pgm_vcpu *vcpu)
{
    struct pgm_nested_root_info ni;
    int rc = pgm_nested_info(vcpu->vm, &ni);
    if (rc < 0)
        return rc;
    const struct pgm_cpu_state *g = &vcpu->state;
    bool paging = (g->cr0 & PGM_CR0_PG) != 0;
    bool pcide = paging && (g->cr4 & PGM_CR4_PCIDE);
    struct pgm_soft_cpu cpu = {
        .format = vcpu->mode,
        .cr3 = g->cr3,
        .pcid = pcide ? (uint16_t)(g->cr3 & 0xfff) : 0,
        .pcide = pcide,
        .wp = (g->cr0 & PGM_CR0_WP) != 0,
        .pse = (g->cr4 & PGM_CR4_PSE) != 0,
        .pge = (g->cr4 & PGM_CR4_PGE) != 0,
        .smep = paging && (g->cr4 & PGM_CR4_SMEP),
        .smap = paging && (g->cr4 & PGM_CR4_SMAP),
        .pke = (g->efer & PGM_EFER_LMA) && (g->cr4 & PGM_CR4_PKE),
        .nxe = (g->efer & PGM_EFER_NXE) != 0,
        .pkru = g->pkru,
        .nested = ni.format,
        .nested_root = ni.root,
        .nested_levels = ni.levels,
        .ept_ad = ni.ept_ad,
        /* NPT leaves carry NX only when the host runs with EFER.NXE; with it
         * set here bit 63 is never taken for reserved by mistake. */
        .nested_nxe = true,
        .nested_maxphyaddr = ni.host_maxphyaddr,
        .guest_maxphyaddr = vcpu->vm->cfg.features.maxphyaddr,
    };
    return pgm_soft_mmu_set_cpu(vcpu->vm->be_ctx, vcpu->id, &cpu);
}

/* Decode a nested fault from the raw exit values, as an embedder does. */
static int
nested_fault_info(const struct pgm_soft_mmu_result *r, enum pgm_paging_hw hw,
                  struct pgm_nested_fault_info *info, uint32_t *access)
{
    if (r->status == PGM_SOFT_MMU_NESTED_MISCONFIG) {
        struct pgm_hwvirt_event ev = { .kind = PGM_HWVIRT_NESTED_MISCONFIG,
                                       .reason = PGM_VTX_EXIT_EPT_MISCONFIG,
                                       .u.misconfig_gpa = r->gpa };
        pgm_gpa_t gpa;
        return pgm_nested_info_from_event(&ev, info, access, &gpa);
    }
    if (hw == PGM_PAGING_EPT) {
        struct pgm_vtx_ept_violation v;
        int rc = pgm_vtx_decode_ept_violation(r->exit_qual, r->gpa, r->gla, false, &v);
        return rc < 0 ? rc : pgm_nested_info_from_ept(&v, info, access);
    }
    struct pgm_svm_npf npf;
    int rc = pgm_svm_decode_npf(r->exit_info1, r->exit_info2, &npf);
    if (rc < 0)
        return rc;
    rc = pgm_nested_info_from_npf(&npf, info, access);
    /* SVM reports no linear address; the soft CPU knows it, for the fault's
     * EXIT report only. */
    if (rc == 0 && r->gla_valid) {
        info->flags |= PGM_NESTED_FI_GVA_VALID;
        info->gva = r->gla;
    }
    return rc;
}

static int
soft_access_nested(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, void *buf,
                   size_t size, struct pgm_fault_out *out)
{
    struct pgm_vm *vm = vcpu->vm;
    bool write = access & PGM_ACCESS_WRITE;
    /* Each nested fault maps something (or says why not): a few per access -
     * the guest's tables, its A/D updates (two rounds each when a handler
     * must see them), the final page. */
    unsigned rewrote = 0; /* guest-walk writes handed to the handlers (once) */
    for (unsigned attempt = 0; attempt < 32; attempt++) {
        struct pgm_soft_mmu_result r;
        int rc = try_translate(vcpu, load_nested_state, gva, access, buf, size, out, &r);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        switch (r.status) {
        case PGM_SOFT_MMU_OK:
        case PGM_SOFT_MMU_GP:
            break; /* handled above */
        case PGM_SOFT_MMU_PF:
            /* The guest's own tables fault: delivered to the guest directly. */
            out->result = PGM_FAULT_INJECT;
            out->vector = 14;
            out->error_code = r.error_code;
            out->address = gva;
            return 0;
        case PGM_SOFT_MMU_BAD_HPA:
            return -EIO; /* a nested entry points at no backend page: pgm_audit says why */
        case PGM_SOFT_MMU_NESTED_FAULT:
        case PGM_SOFT_MMU_NESTED_MISCONFIG:
            break;
        }
        struct pgm_nested_fault_info info;
        uint32_t nacc;
        struct pgm_nested_root_info ni;
        rc = pgm_nested_info(vm, &ni);
        if (rc < 0)
            return rc;
        rc = nested_fault_info(&r, ni.format, &info, &nacc);
        if (rc < 0)
            return rc;
        struct pgm_fault_out fo;
        memset(&fo, 0, sizeof(fo));
        rc = pgm_nested_fault(vcpu, r.gpa, nacc, &info, NULL, &fo);
        if (rc < 0)
            return rc;
        if (fo.result == PGM_FAULT_RESUME)
            continue;
        if (fo.result == PGM_FAULT_EXIT && fo.exit_reason == PGM_EXIT_EMULATE && r.guest_walk &&
            (r.nested_access & PGM_ACCESS_WRITE) && !rewrote++) {
            /*
             * The CPU's own write to a guest paging-structure entry (an A/D
             * update, or a table access EPT A/D / NPT count as a write) hit a
             * page libpgm wants to see written (a WRITE handler, a dirty
             * log). An emulator would redo the walk with its A/D writes
             * through the handlers; the soft CPU lets the handlers see a
             * write of the entry's current value, then walks again. Only
             * byte 1 is rewritten (bits 15:8: G, ignored bits, address bits
             * 15:12), which no CPU updates: another vCPU's A/D update of the
             * same entry cannot be lost.
             */
            uint8_t cur;
            pgm_gpa_t ea = r.gpa + 1;
            rc = pgm_phys_access_guest(vcpu, ea, &cur, NULL, 1);
            if (rc == 0)
                rc = pgm_phys_access_guest(vcpu, ea, NULL, &cur, 1);
            if (rc < 0 && rc != -ENODEV && rc != PGM_RC_HANDLER_EXIT)
                return rc;
            continue;
        }
        if (fo.result == PGM_FAULT_EXIT && fo.exit_reason == PGM_EXIT_EMULATE && !r.guest_walk) {
            /*
             * The final access must be finished by the embedder's emulator:
             * here the data is at hand, so make it on guest-physical memory
             * (through the physical handlers), as the shadow path does.
             */
            return finish_direct(vcpu, gva, r.gpa, buf, size, write, out);
        }
        if (fo.result == PGM_FAULT_EXIT && fo.exit_reason == PGM_EXIT_EMULATE && r.guest_walk) {
            /*
             * The guest's own walk reads a table no nested entry can map
             * (unassigned space, a GPA beyond the nested walk), or its A/D
             * update still needs libpgm after the rewrite above: an
             * emulator would walk in software, reading and updating the
             * tables through the physical layer. So does the soft CPU,
             * then makes the access.
             */
            struct pgm_walk w;
            rc = pgm_walk(vcpu, gva, access, &w);
            if (rc < 0)
                return rc;
            if (w.status != PGM_WALK_OK) {
                out->result = PGM_FAULT_INJECT;
                out->vector = w.status == PGM_WALK_GP ? 13 : 14;
                out->error_code = w.status == PGM_WALK_GP ? 0 : w.error_code;
                out->address = w.status == PGM_WALK_GP ? 0 : gva;
                return 0;
            }
            return finish_direct(vcpu, gva, w.gpa, buf, size, write, out);
        }
        *out = fo; /* INJECT, EMULATED, other exits: the caller's */
        return 0;
    }
    return -ELOOP;
}

PGM_API int
pgm_soft_access(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, void *buf, size_t size,
                struct pgm_fault_out *out)
{
    if (!vcpu || !buf || !out || !size || size > PGM_PAGE_SIZE ||
        (gva & ~PGM_PAGE_MASK) + size > PGM_PAGE_SIZE)
        return -EINVAL;
    struct pgm_vm *vm = vcpu->vm;
    if (vm->be != pgm_soft_backend_ops())
        return -EINVAL;
    if (vm->nested) {
        memset(out, 0, sizeof(*out));
        return soft_access_nested(vcpu, gva, access, buf, size, out);
    }
    if (!vm->shadow)
        return -EINVAL;
    if (!vcpu->bops)
        return -EOPNOTSUPP; /* an IA-32e guest on 32-bit or PAE host paging */
    memset(out, 0, sizeof(*out));
    bool write = access & PGM_ACCESS_WRITE;

    /* A bounded loop: each fault either resolves or changes the answer. */
    for (unsigned attempt = 0; attempt < 8; attempt++) {
        struct pgm_soft_mmu_result r;
        int rc = try_translate(vcpu, load_hw_state, gva, access, buf, size, out, &r);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        switch (r.status) {
        case PGM_SOFT_MMU_OK:
        case PGM_SOFT_MMU_GP:
            break; /* handled above */
        case PGM_SOFT_MMU_BAD_HPA:
            return -EIO; /* a shadow entry points at no backend page: pgm_audit says why */
        case PGM_SOFT_MMU_NESTED_FAULT:
        case PGM_SOFT_MMU_NESTED_MISCONFIG:
            return -EIO; /* the soft vCPU is never put in nested mode on a shadow VM */
        case PGM_SOFT_MMU_PF:
            break;
        }
        struct pgm_walk w;
        enum shadow_fault_action act;
        rc = pgm_shadow_fault(vcpu, gva, access, &w, &act);
        if (rc < 0)
            return rc;
        if (act == SHADOW_RETRY)
            continue;
        if (act == SHADOW_INJECT) {
            out->result = PGM_FAULT_INJECT;
            out->vector = w.status == PGM_WALK_GP ? 13 : 14;
            out->error_code = w.status == PGM_WALK_GP ? 0 : w.error_code;
            out->address = w.status == PGM_WALK_GP ? 0 : gva;
            return 0;
        }
        /* SHADOW_FINISH: libpgm makes the access on guest-physical memory. */
        __atomic_fetch_add(&vm->shadow->emulations, 1, __ATOMIC_RELAXED);
        return finish_direct(vcpu, w.gva, w.gpa, buf, size, write, out);
    }
    return -ELOOP;
}
