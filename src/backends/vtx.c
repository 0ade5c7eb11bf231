/* SPDX-License-Identifier: MIT */
/*
 * VT-x vendor layer: decoding of VM-exit information, the EPT / VPID
 * capability MSR, EPTP construction and checking, and EPT entries.
 *
 * Sources: Intel SDM vol. 3C ch. 27 (VMCS), 28 (VM exits: exit reason,
 * interruption information, exit qualifications), 29 (EPT formats and the
 * misconfiguration rules), vol. 3D appendix A.10 (IA32_VMX_EPT_VPID_CAP) and
 * appendix C (basic exit reasons). Everything is a pure function of its
 * arguments. docs/hwvirt.md describes the layouts and each choice made where
 * the manual is loose.
 */
#include <errno.h>
#include <string.h>

#include "pgm/hwvirt.h"
#include "src/backends/hwvirt_bits.h"

/* ---- exit reason and interruption information ---- */

int
pgm_vtx_decode_exit_reason(uint32_t raw, struct pgm_vtx_exit_info *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->basic = (uint16_t)(raw & 0xFFFFu);
    out->bus_lock = hwv_bit(raw, 26);
    out->enclave = hwv_bit(raw, 27);
    out->pending_mtf = hwv_bit(raw, 28);
    out->from_vmx_root = hwv_bit(raw, 29);
    out->entry_failure = hwv_bit(raw, 31);
    return 0;
}

/* Bits 30:13 of the interruption-information field, "always set to 0". */
#define INTR_INFO_RSVD ((uint32_t)hwv_bits(13, 30))

int
pgm_vtx_decode_intr_info(uint32_t raw, struct pgm_vtx_intr_info *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    /* With bit 31 clear "the remainder of the field is undefined". */
    if (!hwv_bit(raw, 31))
        return 0;
    out->valid = true;
    out->vector = (uint8_t)(raw & 0xFFu);
    out->type = (uint8_t)((raw >> 8) & 7u);
    out->error_code_valid = hwv_bit(raw, 11);
    out->nmi_unblocking = hwv_bit(raw, 12);
    return (raw & INTR_INFO_RSVD) ? -EINVAL : 0;
}

int
pgm_vtx_pf_exit(const struct pgm_vtx_exit_fields *f, struct pgm_hwvirt_pf *out)
{
    if (!f)
        return -EINVAL;
    /* A VM-entry failure (bit 31) never reports an exception. */
    if ((f->exit_reason & 0xFFFFu) != PGM_VTX_EXIT_EXCEPTION_NMI || hwv_bit(f->exit_reason, 31))
        return 0;
    struct pgm_vtx_intr_info ii;
    int rc = pgm_vtx_decode_intr_info(f->intr_info, &ii);
    if (rc)
        return rc;
    if (!ii.valid || ii.type != PGM_VTX_INTR_HW_EXCEPTION || ii.vector != 14)
        return 0;
    /* #PF always delivers an error code, so the exit always reports one. */
    if (!ii.error_code_valid)
        return -EINVAL;
    if (out) {
        out->error_code = f->intr_error_code;
        /* SDM 28.2.1: for #PF the exit qualification is the linear address (CR2 unchanged). */
        out->cr2 = f->exit_qualification;
    }
    return 1;
}

/* ---- control-register access ---- */

/* Reserved bits of the CR-access qualification: 7, 15:12, 63:32. */
#define CR_QUAL_RSVD ((1ull << 7) | hwv_bits(12, 15) | hwv_bits(32, 63))

int
pgm_vtx_decode_cr_access(uint64_t qual, struct pgm_vtx_cr_access *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->cr = (uint8_t)(qual & 0xFu);
    out->type = (uint8_t)((qual >> 4) & 3u);
    out->lmsw_memory = hwv_bit(qual, 6);
    out->gpr = (uint8_t)((qual >> 8) & 0xFu);
    out->lmsw_data = (uint16_t)((qual >> 16) & 0xFFFFu);
    if (qual & CR_QUAL_RSVD)
        return -EINVAL;
    switch (out->type) {
    case PGM_VTX_CR_MOV_TO:
        /* Only CR0, CR3, CR4 and CR8 loads can be made to exit. */
        if (out->cr != 0 && out->cr != 3 && out->cr != 4 && out->cr != 8)
            return -EINVAL;
        break;
    case PGM_VTX_CR_MOV_FROM:
        /* CR0 / CR4 reads are served from the read shadows and never exit. */
        if (out->cr != 3 && out->cr != 8)
            return -EINVAL;
        break;
    default: /* CLTS, LMSW: the CR field reads 0 (they act on CR0) */
        if (out->cr != 0 || out->gpr != 0)
            return -EINVAL;
        break;
    }
    /* The operand type and the source data exist only for LMSW ("cleared to 0" otherwise). */
    if (out->type != PGM_VTX_CR_LMSW && (out->lmsw_memory || out->lmsw_data))
        return -EINVAL;
    return 0;
}

/* ---- EPT violation ---- */

int
pgm_vtx_decode_ept_violation(uint64_t qual, pgm_gpa_t gpa, pgm_gva_t gla, bool advanced,
                             struct pgm_vtx_ept_violation *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->qual = qual;
    out->gpa = gpa;
    out->read = hwv_bit(qual, 0);
    out->write = hwv_bit(qual, 1);
    out->fetch = hwv_bit(qual, 2);
    out->readable = hwv_bit(qual, 3);
    out->writable = hwv_bit(qual, 4);
    out->executable = hwv_bit(qual, 5);
    out->user_executable = hwv_bit(qual, 6);
    out->gla_valid = hwv_bit(qual, 7);
    out->gla = out->gla_valid ? gla : 0;
    /* Bit 8 is only defined when bit 7 is set (it is cleared otherwise). */
    out->translated = out->gla_valid && hwv_bit(qual, 8);
    /* Bits 11:9 describe the guest linear translation: only for a final access, and only with the capability. */
    out->advanced_valid = advanced && out->translated;
    if (out->advanced_valid) {
        out->user_la = hwv_bit(qual, 9);
        out->rw_la = hwv_bit(qual, 10);
        out->xd_la = hwv_bit(qual, 11);
    }
    out->nmi_unblocking = hwv_bit(qual, 12);
    out->shadow_stack = hwv_bit(qual, 13);
    out->sss = hwv_bit(qual, 14);
    return 0;
}

/* ---- capabilities and EPTP ---- */

void
pgm_vtx_decode_ept_caps(uint64_t msr, struct pgm_vtx_ept_caps *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    out->raw = msr;
    out->exec_only = hwv_bit(msr, 0);
    out->walk4 = hwv_bit(msr, 6);
    out->walk5 = hwv_bit(msr, 7);
    out->mt_uc = hwv_bit(msr, 8);
    out->mt_wb = hwv_bit(msr, 14);
    out->pages_2m = hwv_bit(msr, 16);
    out->pages_1g = hwv_bit(msr, 17);
    out->invept = hwv_bit(msr, 20);
    out->ad = hwv_bit(msr, 21);
    out->advanced_exit_info = hwv_bit(msr, 22);
    out->sss = hwv_bit(msr, 23);
    out->invept_single = hwv_bit(msr, 25);
    out->invept_all = hwv_bit(msr, 26);
    out->invvpid = hwv_bit(msr, 32);
    out->invvpid_addr = hwv_bit(msr, 40);
    out->invvpid_single = hwv_bit(msr, 41);
    out->invvpid_all = hwv_bit(msr, 42);
    out->invvpid_single_keep_global = hwv_bit(msr, 43);
}

static bool
eptp_memtype_ok(const struct pgm_vtx_ept_caps *caps, unsigned mt)
{
    /* Only UC (0) and WB (6) exist for paging-structure accesses, each gated by a capability bit. */
    return (mt == PGM_VTX_MT_UC && caps->mt_uc) || (mt == PGM_VTX_MT_WB && caps->mt_wb);
}

static bool
eptp_levels_ok(const struct pgm_vtx_ept_caps *caps, unsigned levels)
{
    return (levels == 4 && caps->walk4) || (levels == 5 && caps->walk5);
}

int
pgm_vtx_eptp_check(const struct pgm_vtx_ept_caps *caps, unsigned maxphyaddr, uint64_t eptp,
                   struct pgm_vtx_eptp *out)
{
    if (!caps || !hwv_maxphy_ok(maxphyaddr))
        return -EINVAL;
    struct pgm_vtx_eptp d = {
        .memtype = (unsigned)(eptp & PGM_VTX_EPTP_MT_MASK),
        .levels = (unsigned)((eptp & PGM_VTX_EPTP_PWL_MASK) >> PGM_VTX_EPTP_PWL_SHIFT) + 1,
        .ad = (eptp & PGM_VTX_EPTP_AD) != 0,
        .sss = (eptp & PGM_VTX_EPTP_SSS) != 0,
        .root = eptp & hwv_bits(12, maxphyaddr - 1),
    };
    if (out)
        *out = d;
    if (!eptp_memtype_ok(caps, d.memtype) || !eptp_levels_ok(caps, d.levels))
        return -EINVAL;
    if ((d.ad && !caps->ad) || (d.sss && !caps->sss))
        return -EINVAL;
    /* Bits 11:8 are reserved, and so is everything from N up (63:52 included). */
    if (eptp & (PGM_VTX_EPTP_RSVD_LOW | hwv_bits(maxphyaddr, 63)))
        return -EINVAL;
    return 0;
}

int
pgm_vtx_eptp_make(const struct pgm_vtx_ept_caps *caps, unsigned maxphyaddr, pgm_hpa_t root,
                  unsigned levels, unsigned memtype, uint64_t flags, uint64_t *eptp)
{
    if (!caps || !eptp || !hwv_maxphy_ok(maxphyaddr))
        return -EINVAL;
    if (flags & ~(PGM_VTX_EPTP_AD | PGM_VTX_EPTP_SSS))
        return -EINVAL;
    if ((root & ~PGM_PAGE_MASK) || (root & hwv_bits(maxphyaddr, 63)))
        return -EINVAL;
    if (levels < 4 || levels > 5 || memtype > 7)
        return -EINVAL;
    uint64_t v = root | memtype | ((uint64_t)(levels - 1) << PGM_VTX_EPTP_PWL_SHIFT) | flags;
    /* One set of rules: whatever we build must pass the VM-entry check. */
    int rc = pgm_vtx_eptp_check(caps, maxphyaddr, v, NULL);
    if (rc)
        return rc;
    *eptp = v;
    return 0;
}

/* ---- EPT entries ---- */

static bool
ept_env_ok(const struct pgm_vtx_ept_env *env)
{
    return env && hwv_maxphy_ok(env->maxphyaddr);
}

/* Is a leaf memory type (bits 5:3) one of the reserved values 2, 3, 7? */
static bool
ept_memtype_reserved(unsigned mt)
{
    return mt == 2 || mt == 3 || mt == 7;
}

int
pgm_vtx_ept_classify(const struct pgm_vtx_ept_env *env, unsigned level, uint64_t entry,
                     uint32_t *why)
{
    if (why)
        *why = 0;
    if (!ept_env_ok(env) || level < 1 || level > 5)
        return -EINVAL;

    unsigned xwr = (unsigned)(entry & PGM_EPT_XWR_MASK);
    /* With MBEC, bit 10 (user execute) alone also makes the entry present. */
    bool ux = env->mbec && (entry & PGM_EPT_UX);
    if (xwr == 0 && !ux)
        return PGM_EPT_NOT_PRESENT;

    uint32_t w = 0;
    /* Write without read: 010 (write-only) and 110 (write/execute). */
    if ((xwr & 3u) == 2u)
        w |= PGM_EPT_MC_WRITE_NO_READ;
    /*
     * Execute-only: 100, and with MBEC also 000 + user-execute (the entry is
     * present yet grants neither read nor write). See docs/hwvirt.md.
     */
    if ((xwr == 4u || (xwr == 0 && ux)) && !env->caps.exec_only)
        w |= PGM_EPT_MC_EXEC_ONLY;
    if (entry & hwv_above_maxphy(env->maxphyaddr))
        w |= PGM_EPT_MC_PHYS;

    bool leaf;
    bool ps = (entry & PGM_EPT_PS) != 0;
    if (level >= 4) {
        /* PML5E / PML4E: no pages that big, bit 7 is reserved with 6:3. */
        leaf = false;
        if (entry & hwv_bits(3, 7))
            w |= PGM_EPT_MC_RSVD_LOW;
    } else if (level == 1) {
        leaf = true; /* bit 7 of a PTE is ignored */
    } else if (ps) {
        leaf = true;
        bool supported = level == 3 ? env->caps.pages_1g : env->caps.pages_2m;
        if (!supported)
            w |= PGM_EPT_MC_LARGE_UNSUPPORTED;
        /* The frame is page-size aligned: 29:12 (1 GiB) or 20:12 (2 MiB) are reserved. */
        if (entry & hwv_bits(12, level == 3 ? 29 : 20))
            w |= PGM_EPT_MC_LARGE_ALIGN;
    } else {
        leaf = false;
        /* PDPTE / PDE referencing a table: 6:3 reserved (bit 7 is the 0 that says "table"). */
        if (entry & hwv_bits(3, 6))
            w |= PGM_EPT_MC_RSVD_LOW;
    }
    /* The memory type exists only in the last entry of a translation. */
    if (leaf && ept_memtype_reserved((unsigned)((entry & PGM_EPT_MT_MASK) >> PGM_EPT_MT_SHIFT)))
        w |= PGM_EPT_MC_MEMTYPE;

    if (why)
        *why = w;
    if (w)
        return PGM_EPT_MISCONFIG;
    return leaf ? PGM_EPT_LEAF : PGM_EPT_TABLE;
}

int
pgm_vtx_ept_decode(uint64_t entry, unsigned level, bool mbec, struct pgm_ept_entry_info *out)
{
    if (!out || level < 1 || level > 5)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->rights = (uint32_t)(entry & (PGM_EPT_XWR_MASK | (mbec ? PGM_EPT_UX : 0)));
    out->leaf = level == 1 || ((level == 2 || level == 3) && (entry & PGM_EPT_PS));
    out->accessed = (entry & PGM_EPT_A) != 0;
    out->suppress_ve = (entry & PGM_EPT_SUPPRESS_VE) != 0;
    if (out->leaf) {
        out->page_shift = 12 + 9 * (level - 1);
        out->memtype = (unsigned)((entry & PGM_EPT_MT_MASK) >> PGM_EPT_MT_SHIFT);
        out->ipat = (entry & PGM_EPT_IPAT) != 0;
        out->dirty = (entry & PGM_EPT_D) != 0;
        out->addr = entry & PGM_EPT_ADDR_MASK & ~((1ull << out->page_shift) - 1);
    } else {
        out->addr = entry & PGM_EPT_ADDR_MASK;
    }
    return 0;
}

/* Check the rights a builder is asked for; returns the entry bits or ~0 on error. */
static uint64_t
ept_rights_bits(const struct pgm_vtx_ept_env *env, uint64_t rights)
{
    uint64_t allowed = PGM_EPT_XWR_MASK | (env->mbec ? PGM_EPT_UX : 0);
    if (rights & ~allowed)
        return ~0ull;
    if (rights == 0)
        return ~0ull; /* a not-present entry is 0, not something to build */
    return rights;
}

static int
ept_finish(const struct pgm_vtx_ept_env *env, unsigned level, uint64_t e, int want, uint64_t *out)
{
    /* The builders share the classifier's rules, so they cannot build a misconfiguration. */
    if (pgm_vtx_ept_classify(env, level, e, NULL) != want)
        return -EINVAL;
    *out = e;
    return 0;
}

int
pgm_vtx_ept_make_table(const struct pgm_vtx_ept_env *env, unsigned level, pgm_hpa_t table,
                       uint64_t rights, uint32_t flags, uint64_t *out)
{
    if (!ept_env_ok(env) || !out || level < 2 || level > 5)
        return -EINVAL;
    if (flags & ~(uint32_t)(PGM_EPT_MAKE_A | PGM_EPT_MAKE_SUPPRESS_VE))
        return -EINVAL;
    if ((flags & PGM_EPT_MAKE_A) && !env->caps.ad)
        return -EINVAL;
    uint64_t r = ept_rights_bits(env, rights);
    if (r == ~0ull || (table & ~PGM_EPT_ADDR_MASK) || (table & hwv_above_maxphy(env->maxphyaddr)))
        return -EINVAL;
    uint64_t e = table | r;
    if (flags & PGM_EPT_MAKE_A)
        e |= PGM_EPT_A;
    if (flags & PGM_EPT_MAKE_SUPPRESS_VE)
        e |= PGM_EPT_SUPPRESS_VE;
    return ept_finish(env, level, e, PGM_EPT_TABLE, out);
}

int
pgm_vtx_ept_make_leaf(const struct pgm_vtx_ept_env *env, unsigned level, pgm_hpa_t page,
                      uint64_t rights, unsigned memtype, uint32_t flags, uint64_t *out)
{
    if (!ept_env_ok(env) || !out || level < 1 || level > 3 || memtype > 7)
        return -EINVAL;
    if (flags & ~(uint32_t)(PGM_EPT_MAKE_IPAT | PGM_EPT_MAKE_A | PGM_EPT_MAKE_D |
                            PGM_EPT_MAKE_SUPPRESS_VE))
        return -EINVAL;
    if ((flags & (PGM_EPT_MAKE_A | PGM_EPT_MAKE_D)) && !env->caps.ad)
        return -EINVAL;
    uint64_t r = ept_rights_bits(env, rights);
    uint64_t align = (1ull << (12 + 9 * (level - 1))) - 1;
    if (r == ~0ull || (page & align) || (page & ~PGM_EPT_ADDR_MASK) ||
        (page & hwv_above_maxphy(env->maxphyaddr)))
        return -EINVAL;
    uint64_t e = page | r | ((uint64_t)memtype << PGM_EPT_MT_SHIFT);
    if (level > 1)
        e |= PGM_EPT_PS;
    if (flags & PGM_EPT_MAKE_IPAT)
        e |= PGM_EPT_IPAT;
    if (flags & PGM_EPT_MAKE_A)
        e |= PGM_EPT_A;
    if (flags & PGM_EPT_MAKE_D)
        e |= PGM_EPT_D;
    if (flags & PGM_EPT_MAKE_SUPPRESS_VE)
        e |= PGM_EPT_SUPPRESS_VE;
    return ept_finish(env, level, e, PGM_EPT_LEAF, out);
}

/* ---- whole exits ---- */

static int
vtx_cr_event(uint64_t qual, struct pgm_hwvirt_cr *cr)
{
    struct pgm_vtx_cr_access a;
    int rc = pgm_vtx_decode_cr_access(qual, &a);
    if (rc)
        return rc;
    memset(cr, 0, sizeof(*cr));
    cr->cr = a.cr;
    cr->gpr = -1;
    switch (a.type) {
    case PGM_VTX_CR_MOV_TO:
        cr->op = PGM_HWVIRT_CR_MOV_TO;
        cr->gpr = (int8_t)a.gpr;
        break;
    case PGM_VTX_CR_MOV_FROM:
        cr->op = PGM_HWVIRT_CR_MOV_FROM;
        cr->gpr = (int8_t)a.gpr;
        break;
    case PGM_VTX_CR_CLTS:
        cr->op = PGM_HWVIRT_CR_CLTS;
        break;
    default:
        cr->op = PGM_HWVIRT_CR_LMSW;
        cr->lmsw_memory = a.lmsw_memory;
        cr->lmsw_data = a.lmsw_data;
        break;
    }
    return 0;
}

static void
vtx_nested_event(const struct pgm_vtx_ept_violation *v, struct pgm_hwvirt_nested *n)
{
    memset(n, 0, sizeof(*n));
    n->gpa = v->gpa;
    /* A read-modify-write sets the write bit (and maybe read): it is a write. */
    if (v->write)
        n->access = PGM_ACCESS_WRITE;
    else if (v->fetch)
        n->access = PGM_ACCESS_FETCH;
    else
        n->access = PGM_ACCESS_READ;
    n->gva_valid = v->gla_valid;
    n->gva = v->gla;
    if (v->gla_valid)
        n->stage = v->translated ? PGM_HWVIRT_STAGE_FINAL : PGM_HWVIRT_STAGE_GUEST_WALK;
    n->present = v->readable || v->writable || v->executable;
}

int
pgm_vtx_decode_exit(const struct pgm_vtx_exit_fields *f, const struct pgm_vtx_ept_caps *caps,
                    struct pgm_hwvirt_event *out)
{
    if (!f || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    struct pgm_vtx_exit_info ei;
    pgm_vtx_decode_exit_reason(f->exit_reason, &ei);
    out->reason = ei.basic;
    out->kind = PGM_HWVIRT_OTHER;
    if (ei.entry_failure)
        return 0;

    int rc;
    switch (ei.basic) {
    case PGM_VTX_EXIT_EXCEPTION_NMI:
        rc = pgm_vtx_pf_exit(f, &out->u.pf);
        if (rc < 0)
            return rc;
        if (rc == 1)
            out->kind = PGM_HWVIRT_PAGE_FAULT;
        else
            memset(&out->u, 0, sizeof(out->u));
        return 0;
    case PGM_VTX_EXIT_CR_ACCESS:
        rc = vtx_cr_event(f->exit_qualification, &out->u.cr);
        if (rc)
            return rc;
        out->kind = PGM_HWVIRT_CR_ACCESS;
        return 0;
    case PGM_VTX_EXIT_INVLPG:
        out->kind = PGM_HWVIRT_INVLPG;
        out->u.invlpg.gva_valid = true;
        out->u.invlpg.gva = f->exit_qualification;
        return 0;
    case PGM_VTX_EXIT_EPT_VIOLATION: {
        struct pgm_vtx_ept_violation v;
        pgm_vtx_decode_ept_violation(f->exit_qualification, f->guest_physical_address,
                                     f->guest_linear_address,
                                     caps && caps->advanced_exit_info, &v);
        out->kind = PGM_HWVIRT_NESTED_FAULT;
        vtx_nested_event(&v, &out->u.nested);
        return 0;
    }
    case PGM_VTX_EXIT_EPT_MISCONFIG:
        out->kind = PGM_HWVIRT_NESTED_MISCONFIG;
        out->u.misconfig_gpa = f->guest_physical_address;
        return 0;
    default:
        return 0;
    }
}
