/* SPDX-License-Identifier: MIT */
/*
 * vCPU control state: mode selection and the precomputed walk context.
 *
 * Every input of the walk other than guest memory is folded into
 * `struct pgm_walk_ctx` here, once per mode change or CR3 load, so the walk
 * templates only mask and compare.
 */
#include <errno.h>
#include <string.h>

#include "pgm/paging.h"
#include "src/modes/shadow.h"
#include "src/vm.h"

/* Bits lo..hi inclusive. */
static inline uint64_t
bits(unsigned lo, unsigned hi)
{
    if (lo > hi)
        return 0;
    uint64_t upto = hi >= 63 ? ~0ull : (1ull << (hi + 1)) - 1;
    return upto & ~((1ull << lo) - 1);
}

static enum pgm_guest_mode
mode_of(const struct pgm_cpu_state *s)
{
    if (!(s->cr0 & PGM_CR0_PE))
        return PGM_MODE_REAL;
    if (!(s->cr0 & PGM_CR0_PG))
        return PGM_MODE_PROT;
    if (!(s->cr4 & PGM_CR4_PAE))
        return PGM_MODE_32BIT;
    if (!(s->efer & PGM_EFER_LMA))
        return PGM_MODE_PAE;
    return (s->cr4 & PGM_CR4_LA57) ? PGM_MODE_LA57 : PGM_MODE_AMD64;
}

/*
 * The permission bitmap (SDM 4.6). For each access kind (write, user, fetch,
 * SMAP override) and each combination of effective rights, does it fault?
 * - user accesses need U, and W for writes;
 * - supervisor writes need W only with CR0.WP;
 * - fetches need X (XD clear at every level; always set without NXE);
 * - SMEP: supervisor fetches from user pages fault;
 * - SMAP: supervisor data accesses to user pages fault unless RFLAGS.AC
 *   overrides an explicit access (WP = 0 does not relax it).
 */
static void
fill_perm(struct pgm_walk_ctx *c)
{
    for (unsigned idx = 0; idx < 16; idx++) {
        bool write = idx & 1, user = idx & 2, fetch = idx & 4, smap_ovr = idx & 8;
        uint8_t mask = 0;
        for (unsigned r = 0; r < 8; r++) {
            bool rw = r & PGM_RIGHT_WRITE, ru = r & PGM_RIGHT_USER, rx = r & PGM_RIGHT_EXEC;
            bool fault = fetch && !rx;
            if (user) {
                fault |= !ru || (write && !rw);
            } else {
                fault |= write && !rw && c->wp;
                if (ru && fetch)
                    fault |= c->smep;
                if (ru && !fetch)
                    fault |= c->smap && !smap_ovr;
            }
            if (fault)
                mask |= (uint8_t)(1u << r);
        }
        c->perm[idx] = mask;
    }
}

void
pgm_vcpu_refresh_walk_ctx(struct pgm_vcpu *vcpu)
{
    const struct pgm_cpu_features *f = &vcpu->vm->cfg.features;
    const struct pgm_cpu_state *s = &vcpu->state;
    struct pgm_walk_ctx *c = &vcpu->wctx;
    bool nxe = (s->efer & PGM_EFER_NXE) != 0;
    unsigned maxphy = f->maxphyaddr;

    memset(c->rsvd, 0, sizeof(c->rsvd));
    c->xd_mask = nxe ? 1ull << 63 : 0;
    c->wp = (s->cr0 & PGM_CR0_WP) != 0;
    c->pse = (s->cr4 & PGM_CR4_PSE) != 0;
    c->smep = (s->cr4 & PGM_CR4_SMEP) != 0;
    c->smap = (s->cr4 & PGM_CR4_SMAP) != 0;
    c->pke = (s->efer & PGM_EFER_LMA) && (s->cr4 & PGM_CR4_PKE);
    /* I/D is reported for SMEP, or for XD, which only PAE-format entries have. */
    c->report_fetch = c->smep || (nxe && (s->cr4 & PGM_CR4_PAE) && (s->cr0 & PGM_CR0_PG));
    c->pkru = s->pkru;
    c->pse36_bits = 0;
    fill_perm(c);

    switch (vcpu->mode) {
    case PGM_MODE_REAL:
    case PGM_MODE_PROT:
        break;
    case PGM_MODE_32BIT: {
        /*
         * 32-bit paging has reserved bits only in 4 MiB PDEs. PSE-36 policy
         * (docs/walker.md): with M = min(MAXPHYADDR, 40), PDE bits
         * (M-20):13 hold PA bits (M-1):32 and bits 21:(M-19) are reserved;
         * without PSE-36 bits 21:13 are reserved.
         */
        unsigned m = maxphy < 40 ? maxphy : 40;
        if (!c->pse)
            break; /* PS is then ignored, not a large page: no reserved bits */
        if (f->pse36) {
            c->pse36_bits = (uint8_t)(m - 32);
            c->rsvd[2][1] = bits(m - 19, 21);
        } else {
            c->rsvd[2][1] = bits(13, 21);
        }
        break;
    }
    case PGM_MODE_PAE:
    case PGM_MODE_AMD64:
    case PGM_MODE_LA57: {
        /* PAE paging reserves 62:M; IA-32e paging ignores 62:52. */
        uint64_t high = bits(maxphy, vcpu->mode == PGM_MODE_PAE ? 62 : 51);
        uint64_t base = high | (nxe ? 0 : 1ull << 63);
        c->rsvd[1][0] = c->rsvd[1][1] = base;            /* PTE: bit 7 is PAT */
        c->rsvd[2][0] = base;
        c->rsvd[2][1] = base | bits(13, 20);             /* 2 MiB: PAT at 12 */
        c->rsvd[3][0] = base;
        c->rsvd[3][1] = base | (f->gbpages ? bits(13, 29) : 1ull << 7);
        c->rsvd[4][0] = c->rsvd[4][1] = base | 1ull << 7; /* PS reserved */
        c->rsvd[5][0] = c->rsvd[5][1] = base | 1ull << 7;
        break;
    }
    case PGM_MODE_COUNT:
        break;
    }
}

/* Static consistency of a state, as the CPU enforces on the writes that make it. */
static bool
state_is_consistent(const struct pgm_cpu_features *f, const struct pgm_cpu_state *s)
{
    if ((s->cr0 & PGM_CR0_PG) && !(s->cr0 & PGM_CR0_PE))
        return false;
    if (((s->cr4 & PGM_CR4_PSE) && !f->pse) || ((s->cr4 & PGM_CR4_PGE) && !f->pge) ||
        ((s->cr4 & PGM_CR4_SMEP) && !f->smep) || ((s->cr4 & PGM_CR4_SMAP) && !f->smap) ||
        ((s->cr4 & PGM_CR4_PKE) && !f->pku) || ((s->cr4 & PGM_CR4_LA57) && !f->la57) ||
        ((s->cr4 & PGM_CR4_PCIDE) && !f->pcid))
        return false;
    if ((s->efer & PGM_EFER_NXE) && !f->nx)
        return false;
    bool lma = (s->efer & PGM_EFER_LME) && (s->cr0 & PGM_CR0_PG);
    if (lma && !(s->cr4 & PGM_CR4_PAE))
        return false;
    if ((s->cr4 & PGM_CR4_PCIDE) && !lma)
        return false;
    return true;
}

/* Checks of a guest MOV CR0 / MOV CR4 / WRMSR EFER against the current state. */
static bool
transition_is_legal(const struct pgm_cpu_state *old, const struct pgm_cpu_state *s)
{
    bool old_lma = (old->efer & PGM_EFER_LMA) != 0;
    bool new_lma = (s->efer & PGM_EFER_LME) && (s->cr0 & PGM_CR0_PG);
    if (old_lma && new_lma && ((old->cr4 ^ s->cr4) & PGM_CR4_LA57))
        return false;
    if ((old->cr0 & PGM_CR0_PG) && (s->cr0 & PGM_CR0_PG) &&
        ((old->efer ^ s->efer) & PGM_EFER_LME))
        return false;
    if (!(old->cr4 & PGM_CR4_PCIDE) && (s->cr4 & PGM_CR4_PCIDE) && (s->cr3 & 0xfff))
        return false;
    return true;
}

PGM_API int
pgm_set_cpu_state(struct pgm_vcpu *vcpu, const struct pgm_cpu_state *state, uint32_t flags)
{
    if (!vcpu || !state || (flags & ~(uint32_t)PGM_STATE_GUEST_WRITE))
        return -EINVAL;
    const struct pgm_cpu_features *f = &vcpu->vm->cfg.features;
    struct pgm_cpu_state s = *state;
    s.efer &= ~PGM_EFER_LMA;
    if ((s.efer & PGM_EFER_LME) && (s.cr0 & PGM_CR0_PG))
        s.efer |= PGM_EFER_LMA;

    if (!state_is_consistent(f, &s) ||
        ((flags & PGM_STATE_GUEST_WRITE) && !transition_is_legal(&vcpu->state, &s))) {
        vcpu->stats.cr3_gp++;
        return PGM_RC_INJECT_GP;
    }

    /* Build the new context aside so a #GP on the CR3 check changes nothing. */
    struct pgm_vcpu next = *vcpu;
    next.state = s;
    next.mode = mode_of(&s);
    next.gops = pgm_guest_ops_for(next.mode);
    next.bops = pgm_both_ops_for(vcpu->vm->cfg.paging, next.mode);
    pgm_vcpu_refresh_walk_ctx(&next);
    if (!(s.efer & PGM_EFER_LMA))
        s.cr3 &= 0xffffffffull; /* outside IA-32e mode CR3 has 32 bits */
    if (next.gops->load_cr3(vcpu->vm, s.cr3, (s.cr4 & PGM_CR4_PCIDE) != 0, &next.wctx)) {
        vcpu->stats.cr3_gp++;
        return PGM_RC_INJECT_GP;
    }
    next.state.cr3 = s.cr3 & ~(1ull << 63);
    *vcpu = next;
    if (vcpu->vm->shadow) {
        pgm_shadow_mode_changed(vcpu);
        pgm_virt_as_loaded(vcpu);
    }
    return 0;
}

PGM_API void
pgm_get_cpu_state(const struct pgm_vcpu *vcpu, struct pgm_cpu_state *state)
{
    if (vcpu && state)
        *state = vcpu->state;
}

PGM_API void
pgm_set_pkru(struct pgm_vcpu *vcpu, uint32_t pkru)
{
    if (!vcpu)
        return;
    vcpu->state.pkru = pkru;
    vcpu->wctx.pkru = pkru;
}

PGM_API enum pgm_guest_mode
pgm_guest_mode(const struct pgm_vcpu *vcpu)
{
    return vcpu ? vcpu->mode : PGM_MODE_REAL;
}

PGM_API const char *
pgm_guest_mode_name(enum pgm_guest_mode mode)
{
    static const char *const names[PGM_MODE_COUNT] = {
        [PGM_MODE_REAL] = "real", [PGM_MODE_PROT] = "prot", [PGM_MODE_32BIT] = "32",
        [PGM_MODE_PAE] = "pae",   [PGM_MODE_AMD64] = "amd64", [PGM_MODE_LA57] = "la57",
    };
    return (unsigned)mode < PGM_MODE_COUNT ? names[mode] : "invalid";
}
