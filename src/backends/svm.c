/* SPDX-License-Identifier: MIT */
/*
 * AMD-V (SVM) vendor layer: #VMEXIT decoding (NPF, #PF intercept, CR
 * intercepts with DecodeAssists, INVLPG), CPUID Fn8000_000A features, and the
 * nested page table (NPT) entry and nCR3 formats.
 *
 * Sources: AMD APM vol. 2 ch. 15 (15.12 intercepts, 15.25 nested paging,
 * 15.33 decode assists), ch. 5 (long-mode page-table formats, which NPT
 * reuses for GPA -> HPA), appendix C (exit codes), and the CPUID spec for
 * Fn8000_000A. Everything is a pure function of its arguments.
 */
#include <errno.h>
#include <string.h>

#include "pgm/hwvirt.h"
#include "src/backends/hwvirt_bits.h"

/* ---- exits ---- */

int
pgm_svm_decode_npf(uint64_t exit_info1, uint64_t exit_info2, struct pgm_svm_npf *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->info1 = exit_info1;
    out->gpa = exit_info2;
    out->error_code = (uint32_t)exit_info1;
    out->present = hwv_bit(exit_info1, 0);
    out->write = hwv_bit(exit_info1, 1);
    out->user = hwv_bit(exit_info1, 2);
    out->rsvd = hwv_bit(exit_info1, 3);
    out->fetch = hwv_bit(exit_info1, 4);
    out->final_translation = (exit_info1 & PGM_SVM_NPF_FINAL) != 0;
    out->guest_walk = (exit_info1 & PGM_SVM_NPF_GUEST_WALK) != 0;
    return 0;
}

int
pgm_svm_pf_exit(const struct pgm_svm_exit_fields *f, struct pgm_hwvirt_pf *out)
{
    if (!f)
        return -EINVAL;
    if (f->exit_code != PGM_SVM_EXIT_PF)
        return 0;
    /* A #PF error code is 32 bits wide; more means the wrong field was passed. */
    if (f->exit_info1 >> 32)
        return -EINVAL;
    if (out) {
        out->error_code = (uint32_t)f->exit_info1;
        out->cr2 = f->exit_info2;
    }
    return 1;
}

int
pgm_svm_decode_cr_access(uint64_t exit_code, uint64_t exit_info1, bool decode_assists,
                         struct pgm_hwvirt_cr *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->gpr = -1;
    bool write;
    if (exit_code == PGM_SVM_EXIT_CR0_SEL_WRITE) {
        out->cr = 0;
        out->selective = true;
        write = true;
    } else if (exit_code <= PGM_SVM_EXIT_WRITE_CR0 + 15) {
        /* 0x00-0x0F read CRn, 0x10-0x1F write CRn. */
        out->cr = (uint8_t)(exit_code & 0xFu);
        write = (exit_code & 0x10u) != 0;
    } else {
        return -EINVAL;
    }
    /* EXITINFO1 is only defined with DecodeAssists; bit 63 says "a MOV CRx, GPR in 3:0". */
    if (decode_assists && (exit_info1 & PGM_SVM_CR_MOV_VALID)) {
        out->op = write ? PGM_HWVIRT_CR_MOV_TO : PGM_HWVIRT_CR_MOV_FROM;
        out->gpr = (int8_t)(exit_info1 & PGM_SVM_CR_GPR_MASK);
    } else {
        out->op = write ? PGM_HWVIRT_CR_WRITE_UNDECODED : PGM_HWVIRT_CR_READ_UNDECODED;
    }
    return 0;
}

void
pgm_svm_decode_caps(uint32_t eax, uint32_t ebx, uint32_t edx, struct pgm_svm_caps *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    out->edx = edx;
    out->revision = (uint8_t)(eax & 0xFFu);
    out->nasid = ebx;
    out->np = hwv_bit(edx, 0);
    out->lbr_virt = hwv_bit(edx, 1);
    out->svm_lock = hwv_bit(edx, 2);
    out->nrip_save = hwv_bit(edx, 3);
    out->tsc_rate = hwv_bit(edx, 4);
    out->vmcb_clean = hwv_bit(edx, 5);
    out->flush_by_asid = hwv_bit(edx, 6);
    out->decode_assists = hwv_bit(edx, 7);
    out->pause_filter = hwv_bit(edx, 10);
    out->pause_threshold = hwv_bit(edx, 12);
    out->avic = hwv_bit(edx, 13);
    out->vmsave_virt = hwv_bit(edx, 15);
    out->vgif = hwv_bit(edx, 16);
    out->gmet = hwv_bit(edx, 17);
    out->x2avic = hwv_bit(edx, 18);
    out->sss_check = hwv_bit(edx, 19);
    out->spec_ctrl = hwv_bit(edx, 20);
    out->vnmi = hwv_bit(edx, 25);
    out->svme_addr_chk = hwv_bit(edx, 28);
}

/* ---- NPT ---- */

static bool
npt_env_ok(const struct pgm_svm_npt_env *env)
{
    return env && hwv_maxphy_ok(env->maxphyaddr) && (env->levels == 4 || env->levels == 5);
}

int
pgm_svm_npt_classify(const struct pgm_svm_npt_env *env, unsigned level, uint64_t entry,
                     bool *no_user)
{
    if (no_user)
        *no_user = false;
    if (!npt_env_ok(env) || level < 1 || level > env->levels)
        return -EINVAL;
    /* P = 0: nothing else is looked at. */
    if (!(entry & PGM_NPT_P))
        return PGM_NPT_NOT_PRESENT;

    uint64_t rsvd = hwv_above_maxphy(env->maxphyaddr);
    if (!env->nxe)
        rsvd |= PGM_NPT_NX; /* bit 63 is reserved while the host's EFER.NXE = 0 */
    bool leaf;
    if (level >= 4) {
        /* PML5E / PML4E: bits 8:7 must be zero on AMD (no 512 GiB pages). */
        leaf = false;
        rsvd |= PGM_NPT_PS | (1ull << 8);
    } else if (level == 1) {
        leaf = true; /* bit 7 of a PTE is PAT */
    } else if (entry & PGM_NPT_PS) {
        leaf = true;
        if (level == 3 && !env->gbpages)
            rsvd |= PGM_NPT_PS;
        /* Bit 12 is the large page's PAT bit; the frame's low bits above it are reserved. */
        rsvd |= hwv_bits(13, level == 3 ? 29 : 20);
    } else {
        leaf = false;
    }
    if (no_user)
        *no_user = !(entry & PGM_NPT_US);
    if (entry & rsvd)
        return PGM_NPT_RSVD;
    return leaf ? PGM_NPT_LEAF : PGM_NPT_TABLE;
}

static bool
npt_addr_ok(const struct pgm_svm_npt_env *env, pgm_hpa_t addr, uint64_t align_mask)
{
    return !(addr & align_mask) && !(addr & ~PGM_NPT_ADDR_MASK) &&
           !(addr & hwv_above_maxphy(env->maxphyaddr));
}

int
pgm_svm_npt_make_table(const struct pgm_svm_npt_env *env, unsigned level, pgm_hpa_t table,
                       uint64_t *out)
{
    if (!npt_env_ok(env) || !out || level < 2 || level > env->levels)
        return -EINVAL;
    if (!npt_addr_ok(env, table, PGM_PAGE_SIZE - 1))
        return -EINVAL;
    /*
     * Upper levels grant everything (RW, US, no NX): the effective rights are
     * the AND over the walk, so the leaf alone decides. US must be 1 at every
     * level because the CPU makes all nested accesses as user accesses.
     */
    *out = table | PGM_NPT_P | PGM_NPT_RW | PGM_NPT_US | PGM_NPT_A;
    return 0;
}

int
pgm_svm_npt_make_leaf(const struct pgm_svm_npt_env *env, unsigned level, pgm_hpa_t page,
                      uint32_t rights, unsigned pat_index, uint64_t *out)
{
    if (!npt_env_ok(env) || !out || level < 1 || level > 3 || pat_index > 7)
        return -EINVAL;
    if (rights & ~(uint32_t)(PGM_NPT_RIGHT_WRITE | PGM_NPT_RIGHT_EXEC))
        return -EINVAL;
    if (level == 3 && !env->gbpages)
        return -EINVAL;
    /* A non-executable leaf needs NX, which exists only with the host's EFER.NXE. */
    if (!(rights & PGM_NPT_RIGHT_EXEC) && !env->nxe)
        return -EINVAL;
    if (!npt_addr_ok(env, page, (1ull << (12 + 9 * (level - 1))) - 1))
        return -EINVAL;

    uint64_t e = page | PGM_NPT_P | PGM_NPT_US | PGM_NPT_A;
    if (rights & PGM_NPT_RIGHT_WRITE)
        e |= PGM_NPT_RW | PGM_NPT_D; /* pre-dirty: the CPU never has to write the entry */
    if (!(rights & PGM_NPT_RIGHT_EXEC))
        e |= PGM_NPT_NX;
    if (pat_index & 1u)
        e |= PGM_NPT_PWT;
    if (pat_index & 2u)
        e |= PGM_NPT_PCD;
    if (pat_index & 4u)
        e |= level == 1 ? PGM_NPT_PS : PGM_NPT_PAT_LARGE; /* PTE bit 7 is PAT */
    if (level > 1)
        e |= PGM_NPT_PS;
    *out = e;
    return 0;
}

int
pgm_svm_ncr3_make(const struct pgm_svm_npt_env *env, pgm_hpa_t root, uint64_t flags,
                  uint64_t *ncr3)
{
    if (!npt_env_ok(env) || !ncr3)
        return -EINVAL;
    if (flags & ~(PGM_NPT_PWT | PGM_NPT_PCD))
        return -EINVAL;
    if (!npt_addr_ok(env, root, PGM_PAGE_SIZE - 1))
        return -EINVAL;
    *ncr3 = root | flags;
    return 0;
}

/* ---- whole exits ---- */

int
pgm_svm_decode_exit(const struct pgm_svm_exit_fields *f, bool decode_assists,
                    struct pgm_hwvirt_event *out)
{
    if (!f || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->reason = f->exit_code;
    out->kind = PGM_HWVIRT_OTHER;

    int rc;
    if (f->exit_code == PGM_SVM_EXIT_PF) {
        rc = pgm_svm_pf_exit(f, &out->u.pf);
        if (rc < 0)
            return rc;
        out->kind = PGM_HWVIRT_PAGE_FAULT;
        return 0;
    }
    if (f->exit_code <= PGM_SVM_EXIT_WRITE_CR0 + 15 || f->exit_code == PGM_SVM_EXIT_CR0_SEL_WRITE) {
        rc = pgm_svm_decode_cr_access(f->exit_code, f->exit_info1, decode_assists, &out->u.cr);
        if (rc)
            return rc;
        out->kind = PGM_HWVIRT_CR_ACCESS;
        return 0;
    }
    if (f->exit_code == PGM_SVM_EXIT_INVLPG) {
        out->kind = PGM_HWVIRT_INVLPG;
        /* With DecodeAssists EXITINFO1 holds the linear address operand. */
        out->u.invlpg.gva_valid = decode_assists;
        out->u.invlpg.gva = decode_assists ? f->exit_info1 : 0;
        return 0;
    }
    if (f->exit_code == PGM_SVM_EXIT_NPF) {
        struct pgm_svm_npf npf;
        pgm_svm_decode_npf(f->exit_info1, f->exit_info2, &npf);
        struct pgm_hwvirt_nested *n = &out->u.nested;
        out->kind = PGM_HWVIRT_NESTED_FAULT;
        n->gpa = npf.gpa;
        n->access = npf.fetch ? PGM_ACCESS_FETCH : npf.write ? PGM_ACCESS_WRITE : PGM_ACCESS_READ;
        /* Exactly one of bits 32 / 33 names the stage; anything else is not trusted. */
        if (npf.final_translation != npf.guest_walk)
            n->stage = npf.final_translation ? PGM_HWVIRT_STAGE_FINAL : PGM_HWVIRT_STAGE_GUEST_WALK;
        n->present = npf.present;
        return 0;
    }
    return 0;
}
