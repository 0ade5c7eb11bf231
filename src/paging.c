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
    if (sh && pgm_shadow_mode_supported(vcpu)) {
        pthread_mutex_lock(&sh->lock);
        int rc = pgm_shadow_load_root(vcpu, noflush);
        pthread_mutex_unlock(&sh->lock);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- shadow paging ------------------------------------------------------- */

#define VEC_GP 13
#define VEC_PF 14

/*
 * Finish an access libpgm must make itself (monitored table, handler page,
 * MMIO, a write only CR0.WP = 0 allows): snapshot the shadowed guest tables
 * it may write, let @finish do it, then zap the shadow entries of every
 * guest entry that changed. @gva/@size bound what may be written.
 */
static int
finish_with_snapshots(struct pgm_vcpu *vcpu, pgm_gva_t gva, unsigned size,
                      int (*finish)(void *ctx), void *ctx)
{
    struct pgm_vm *vm = vcpu->vm;
    uint64_t gfns[2];
    unsigned n = 0;
    static _Thread_local uint8_t snap[2][4096];
    bool shadowed[2] = { false, false };
    /* The written bytes lie on the page of gva and, if they cross, the next. */
    pgm_gva_t ends[2] = { gva, gva + (size ? size - 1 : 0) };
    for (unsigned k = 0; k < 2; k++) {
        if (k == 1 && (ends[1] >> PGM_PAGE_SHIFT) == (ends[0] >> PGM_PAGE_SHIFT))
            break;
        struct pgm_walk w;
        if (pgm_walk(vcpu, ends[k], PGM_ACCESS_NO_AD, &w) == 0 && w.status == PGM_WALK_OK) {
            gfns[n] = w.gpa >> PGM_PAGE_SHIFT;
            shadowed[n] = pgm_shadow_snapshot(vm, gfns[n], snap[n]);
            n++;
        }
    }
    int rc = finish(ctx);
    for (unsigned k = 0; k < n; k++)
        if (shadowed[k])
            pgm_shadow_written(vm, gfns[k], snap[k]);
    return rc;
}

struct emulate_ctx {
    struct pgm_vcpu *vcpu;
    struct pgm_regs *regs;
    struct pgm_fault_out *out;
};

static int
finish_by_emulation(void *ctx)
{
    struct emulate_ctx *e = ctx;
    return pgm_emulate_insn(e->vcpu, e->regs, e->out);
}

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
        vcpu->vm->shadow->emulations++;
        struct emulate_ctx e = { vcpu, regs, out };
        /* An instruction writes at most 16 bytes at the faulting address
         * (string instructions go one element per fault at a page edge). */
        return finish_with_snapshots(vcpu, cr2, 16, finish_by_emulation, &e);
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
     * Shadows are kept coherent by monitoring, so they already match the
     * guest's tables: only the hardware TLB holds anything stale.
     */
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
    if (vm->shadow && vm->be->flush) {
        struct pgm_flush_req req = { .scope = global ? PGM_FLUSH_ALL : PGM_FLUSH_NONGLOBAL };
        vm->be->flush(vm->be_ctx, vcpu->id, &req);
    }
    return 0;
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
