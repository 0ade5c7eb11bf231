/* SPDX-License-Identifier: MIT */
/* Public paging entry points (MOV CR3, walks) that dispatch to the current mode's ops. */
#include <errno.h>
#include <string.h>

#include "pgm/paging.h"
#include "src/modes/shadow.h"
#include "src/vm.h"

#define ACCESS_KNOWN (PGM_ACCESS_WRITE | PGM_ACCESS_USER | PGM_ACCESS_FETCH | \
                      PGM_ACCESS_IMPLICIT | PGM_ACCESS_AC | PGM_ACCESS_NO_AD)

PGM_API int
pgm_walk(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, struct pgm_walk *walk)
{
    if (!vcpu || !walk || (access & ~(uint32_t)ACCESS_KNOWN))
        return -EINVAL;
    /* A fetch is not a write; an implicit access is a supervisor access. */
    if ((access & PGM_ACCESS_FETCH) && (access & PGM_ACCESS_WRITE))
        return -EINVAL;
    if ((access & PGM_ACCESS_IMPLICIT) && (access & PGM_ACCESS_USER))
        return -EINVAL;
    vcpu->stats.walks++;
    return vcpu->gops->walk(vcpu, gva, access, walk);
}

PGM_API int
pgm_sync_cr3(struct pgm_vcpu *vcpu, uint64_t cr3)
{
    if (!vcpu)
        return -EINVAL;
    const struct pgm_cpu_state *s = &vcpu->state;
    if (!(s->efer & PGM_EFER_LMA))
        cr3 &= 0xffffffffull;
    struct pgm_walk_ctx ctx = vcpu->wctx;
    if (vcpu->gops->load_cr3(vcpu->vm, cr3, (s->cr4 & PGM_CR4_PCIDE) != 0, &ctx)) {
        vcpu->stats.cr3_gp++;
        return PGM_RC_INJECT_GP;
    }
    vcpu->wctx = ctx;
    /* NOFLUSH (bit 63 with PCIDE) is an instruction modifier, never stored. */
    bool noflush = (s->cr4 & PGM_CR4_PCIDE) && (cr3 >> 63);
    vcpu->state.cr3 = cr3 & ~(1ull << 63);
    vcpu->stats.cr3_loads++;
    struct pgm_shadow *sh = vcpu->vm->shadow;
    if (sh) {
        pthread_mutex_lock(&sh->lock);
        int rc = pgm_shadow_load_root(vcpu, noflush);
        pthread_mutex_unlock(&sh->lock);
        if (rc < 0)
            return rc;
        pgm_virt_as_loaded(vcpu);
    }
    return 0;
}

/* ---- shadow paging ------------------------------------------------------- */

#define VEC_GP 13
#define VEC_PF 14

static void
inject_from_walk(const struct pgm_walk *w, pgm_gva_t gva, struct pgm_fault_out *out)
{
    out->result = PGM_FAULT_INJECT;
    if (w->status == PGM_WALK_GP) {
        out->vector = VEC_GP;
        return;
    }
    out->vector = VEC_PF;
    out->error_code = w->error_code;
    out->address = gva;
}

PGM_API int
pgm_trap0e(struct pgm_vcpu *vcpu, uint32_t error_code, pgm_gva_t cr2, struct pgm_regs *regs,
           struct pgm_fault_out *out)
{
    if (!vcpu || !regs || !out || !vcpu->vm->shadow)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    /*
     * The hardware error code describes the shadow access; only the kind of
     * access is taken from it (RSVD and P say nothing about the guest).
     */
    uint32_t access = (error_code & (PGM_PFEC_W | PGM_PFEC_U)) |
                      ((error_code & PGM_PFEC_ID) ? PGM_ACCESS_FETCH : 0) |
                      ((regs->rflags & PGM_RFLAGS_AC) ? PGM_ACCESS_AC : 0);
    /* A hypervisor-owned linear range: its handler decides first. */
    if (pgm_virt_hypervisor_fault(vcpu, cr2, error_code & PGM_PFEC_W, out) == 0)
        return 0;
    struct pgm_walk w;
    enum shadow_fault_action act;
    int rc = pgm_shadow_fault(vcpu, cr2, access, &w, &act);
    if (rc < 0)
        return rc;
    switch (act) {
    case SHADOW_RETRY:
        out->result = PGM_FAULT_RESUME;
        return 0;
    case SHADOW_INJECT:
        inject_from_walk(&w, cr2, out);
        return 0;
    case SHADOW_FINISH:
    default: {
        /* Its writes reach shadowed guest tables through the physical layer,
         * which keeps the shadows coherent (src/phys.c). */
        __atomic_fetch_add(&vcpu->vm->shadow->emulations, 1, __ATOMIC_RELAXED);
        return pgm_emulate_insn(vcpu, regs, out);
    }
    }
}

PGM_API int
pgm_invlpg(struct pgm_vcpu *vcpu, pgm_gva_t gva)
{
    if (!vcpu)
        return -EINVAL;
    struct pgm_vm *vm = vcpu->vm;
    /* INVLPG of a non-canonical address does nothing. */
    if (vcpu->state.efer & PGM_EFER_LMA) {
        unsigned vb = vcpu->mode == PGM_MODE_LA57 ? 57 : 48;
        if ((uint64_t)((int64_t)(gva << (64 - vb)) >> (64 - vb)) != gva)
            return 0;
    }
    /*
     * Monitored tables already match the guest's; out-of-sync ones are
     * brought back in sync here (all of them: simple, and rarely many).
     * Then only the hardware TLB holds anything stale.
     */
    pgm_virt_invlpg(vcpu, gva);
    pgm_shadow_resync_all(vm);
    if (vm->shadow && vm->be->flush) {
        struct pgm_flush_req req = { .scope = PGM_FLUSH_GVA, .addr = gva };
        vm->be->flush(vm->be_ctx, vcpu->id, &req);
    }
    return 0;
}

PGM_API int
pgm_flush_tlb(struct pgm_vcpu *vcpu, bool global)
{
    if (!vcpu)
        return -EINVAL;
    struct pgm_vm *vm = vcpu->vm;
    pgm_virt_as_loaded(vcpu);
    pgm_shadow_resync_all(vm);
    if (vm->shadow && vm->be->flush) {
        struct pgm_flush_req req = { .scope = global ? PGM_FLUSH_ALL : PGM_FLUSH_NONGLOBAL };
        vm->be->flush(vm->be_ctx, vcpu->id, &req);
    }
    return 0;
}

PGM_API int
pgm_invpcid(struct pgm_vcpu *vcpu, unsigned type, uint32_t pcid, pgm_gva_t gva)
{
    if (!vcpu)
        return -EINVAL;
    bool pcide = vcpu->state.cr4 & PGM_CR4_PCIDE;
    if (type > PGM_INVPCID_ALL || pcid > 0xfff)
        return PGM_RC_INJECT_GP;
    if (type <= PGM_INVPCID_SINGLE && pcid && !pcide)
        return PGM_RC_INJECT_GP;
    if (type == PGM_INVPCID_ADDRESS) {
        unsigned vb = vcpu->mode == PGM_MODE_LA57 ? 57 : 48;
        if ((uint64_t)((int64_t)(gva << (64 - vb)) >> (64 - vb)) != gva)
            return PGM_RC_INJECT_GP;
    }
    struct pgm_vm *vm = vcpu->vm;
    if (type == PGM_INVPCID_ADDRESS)
        pgm_virt_invlpg(vcpu, gva);
    else
        pgm_virt_as_loaded(vcpu);
    pgm_shadow_resync_all(vm);
    if (vm->shadow && vm->be->flush) {
        struct pgm_flush_req req = { .scope = PGM_FLUSH_NONGLOBAL };
        if (type == PGM_INVPCID_ADDRESS)
            req = (struct pgm_flush_req){ .scope = PGM_FLUSH_GVA, .addr = gva };
        else if (type == PGM_INVPCID_ALL_GLOBAL)
            req.scope = PGM_FLUSH_ALL;
        vm->be->flush(vm->be_ctx, vcpu->id, &req);
    }
    return 0;
}

PGM_API int
pgm_shadow_lookup(struct pgm_vcpu *vcpu, pgm_gva_t gva, struct pgm_shadow_info *out)
{
    if (!vcpu || !out || !vcpu->vm->shadow)
        return -EINVAL;
    struct pgm_shadow *sh = vcpu->vm->shadow;
    pthread_mutex_lock(&sh->lock);
    int rc = pgm_shadow_lookup_locked(vcpu, gva, out);
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

PGM_API int
pgm_before_entry(struct pgm_vcpu *vcpu, pgm_hpa_t *root)
{
    if (!vcpu || !root || !vcpu->vm->shadow)
        return -EINVAL;
    struct pgm_shadow *sh = vcpu->vm->shadow;
    pthread_mutex_lock(&sh->lock);
    int rc = vcpu->root ? 0 : pgm_shadow_load_root(vcpu, true);
    if (rc == 0)
        *root = vcpu->root->hpa;
    pthread_mutex_unlock(&sh->lock);
    return rc;
}
