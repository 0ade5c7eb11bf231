/* SPDX-License-Identifier: MIT */
/* Public paging entry points (MOV CR3, walks) that dispatch to the current mode's ops. */
#include <errno.h>

#include "pgm/paging.h"
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
    vcpu->state.cr3 = cr3 & ~(1ull << 63);
    vcpu->stats.cr3_loads++;
    return 0;
}
