/* SPDX-License-Identifier: MIT */
/*
 * pgm_soft_access: one guest access made through the soft MMU on libpgm's
 * shadow tables, the way a CPU makes it: TLB or walk; on a #PF, the shadow
 * engine either syncs the shadows (retry), reports a guest fault (inject), or
 * says libpgm must finish the access itself, which here needs no
 * instruction emulation because the data is at hand.
 */
#include <errno.h>
#include <string.h>

#include "pgm/paging.h"
#include "src/backends/soft.h"
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

struct direct_ctx {
    struct pgm_vcpu *vcpu;
    pgm_gpa_t gpa;
    void *buf;
    size_t size;
    bool write;
};

static int
finish_direct(void *ctx)
{
    struct direct_ctx *d = ctx;
    return pgm_phys_access_guest(d->vcpu, d->gpa, d->write ? NULL : d->buf,
                                 d->write ? d->buf : NULL, d->size);
}

PGM_API int
pgm_soft_access(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, void *buf, size_t size,
                struct pgm_fault_out *out)
{
    if (!vcpu || !buf || !out || !size || size > PGM_PAGE_SIZE ||
        (gva & ~PGM_PAGE_MASK) + size > PGM_PAGE_SIZE)
        return -EINVAL;
    struct pgm_vm *vm = vcpu->vm;
    if (!vm->shadow || vm->be != pgm_soft_backend_ops())
        return -EINVAL;
    if (!vcpu->bops)
        return -EOPNOTSUPP; /* an IA-32e guest on 32-bit or PAE host paging */
    memset(out, 0, sizeof(*out));
    bool write = access & PGM_ACCESS_WRITE;

    /* A bounded loop: each fault either resolves or changes the answer. */
    for (unsigned attempt = 0; attempt < 8; attempt++) {
        int rc = load_hw_state(vcpu);
        if (rc < 0)
            return rc;
        struct pgm_soft_mmu_result r;
        rc = pgm_soft_mmu_translate(vm->be_ctx, vcpu->id, gva, access, &r);
        if (rc < 0)
            return rc;
        switch (r.status) {
        case PGM_SOFT_MMU_OK:
            if (write)
                memcpy(r.ptr, buf, size);
            else
                memcpy(buf, r.ptr, size);
            out->result = PGM_FAULT_RESUME;
            return 0;
        case PGM_SOFT_MMU_GP:
            out->result = PGM_FAULT_INJECT;
            out->vector = 13;
            return 0;
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
        /* Writes to shadowed guest tables keep the shadows coherent in the
         * physical layer (src/phys.c). */
        struct direct_ctx d = { vcpu, w.gpa, buf, size, write };
        rc = finish_direct(&d);
        if (rc == PGM_RC_HANDLER_EXIT) {
            out->result = PGM_FAULT_EXIT;
            out->exit_reason = PGM_EXIT_HANDLER;
            out->exit_gpa = w.gpa;
            out->exit_size = (uint32_t)size;
            out->exit_write = write;
            if (write)
                memcpy(out->exit_data, buf, size < 16 ? size : 16);
            return 0;
        }
        if (rc < 0 && rc != -ENODEV)
            return rc;
        out->result = PGM_FAULT_RESUME;
        return 0;
    }
    return -ELOOP;
}
