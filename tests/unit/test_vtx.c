/* SPDX-License-Identifier: MIT */
/*
 * VT-x vendor layer: exit decoding, the EPT/VPID capability MSR, EPTP and EPT
 * entries. Every vector is derived by hand from the Intel SDM; the layout
 * being checked is written next to it. The EPT misconfiguration matrix and
 * the EPTP matrix compare against rule tables written here from the SDM, as
 * literal masks, independently of src/backends/vtx.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "pgm/pgm.h"

/* ---------------------------------------------------------------------- */
/* Exit reason and interruption information                                */
/* ---------------------------------------------------------------------- */

static void
test_exit_reason(void **state)
{
    (void)state;
    struct pgm_vtx_exit_info ei;

    /* 48 = EPT violation in bits 15:0, nothing else. */
    assert_int_equal(pgm_vtx_decode_exit_reason(0x00000030u, &ei), 0);
    assert_int_equal(ei.basic, PGM_VTX_EXIT_EPT_VIOLATION);
    assert_false(ei.entry_failure);
    assert_false(ei.enclave);

    /* bit 31 (entry failure) | 33 (invalid guest state) = 0x80000021 */
    assert_int_equal(pgm_vtx_decode_exit_reason(0x80000021u, &ei), 0);
    assert_int_equal(ei.basic, PGM_VTX_EXIT_INVALID_GUEST_STATE);
    assert_true(ei.entry_failure);

    /* bit 27 (enclave) | bit 26 (bus lock) | bit 29 (VMX root) | bit 28 (MTF) | 12 (HLT) */
    assert_int_equal(pgm_vtx_decode_exit_reason(0x3C00000Cu, &ei), 0);
    assert_int_equal(ei.basic, PGM_VTX_EXIT_HLT);
    assert_true(ei.bus_lock && ei.enclave && ei.pending_mtf && ei.from_vmx_root);
    assert_false(ei.entry_failure);

    assert_int_equal(pgm_vtx_decode_exit_reason(0, NULL), -EINVAL);

    /* A few numbers from SDM appendix C, checked against the enum. */
    assert_int_equal(PGM_VTX_EXIT_EXCEPTION_NMI, 0);
    assert_int_equal(PGM_VTX_EXIT_INVLPG, 14);
    assert_int_equal(PGM_VTX_EXIT_CR_ACCESS, 28);
    assert_int_equal(PGM_VTX_EXIT_EPT_MISCONFIG, 49);
    assert_int_equal(PGM_VTX_EXIT_INVPCID, 58);
    assert_int_equal(PGM_VTX_EXIT_PML_FULL, 62);
}

static void
test_intr_info(void **state)
{
    (void)state;
    struct pgm_vtx_intr_info ii;

    /* #PF: valid(31) | EC valid(11) | type 3 (10:8 = 011) | vector 14 = 0x80000B0E */
    assert_int_equal(pgm_vtx_decode_intr_info(0x80000B0Eu, &ii), 0);
    assert_true(ii.valid);
    assert_int_equal(ii.vector, 14);
    assert_int_equal(ii.type, PGM_VTX_INTR_HW_EXCEPTION);
    assert_true(ii.error_code_valid);
    assert_false(ii.nmi_unblocking);

    /* NMI: valid | type 2 (0x200) | vector 2 = 0x80000202 */
    assert_int_equal(pgm_vtx_decode_intr_info(0x80000202u, &ii), 0);
    assert_int_equal(ii.type, PGM_VTX_INTR_NMI);
    assert_int_equal(ii.vector, 2);
    assert_false(ii.error_code_valid);

    /* #GP after IRET unblocked NMIs: valid | bit 12 | EC | type 3 | 13 = 0x80001B0D */
    assert_int_equal(pgm_vtx_decode_intr_info(0x80001B0Du, &ii), 0);
    assert_true(ii.nmi_unblocking);
    assert_int_equal(ii.vector, 13);

    /* #BP from INT3: software exception type 6 (0x600) | vector 3 = 0x80000603 */
    assert_int_equal(pgm_vtx_decode_intr_info(0x80000603u, &ii), 0);
    assert_int_equal(ii.type, PGM_VTX_INTR_SW_EXCEPTION);

    /* Not valid (bit 31 clear): everything else is undefined, output zeroed. */
    assert_int_equal(pgm_vtx_decode_intr_info(0x00000B0Eu, &ii), 0);
    assert_false(ii.valid);
    assert_int_equal(ii.vector, 0);

    /* Valid with a bit of 30:13 set (bit 13): the SDM clears them. */
    assert_int_equal(pgm_vtx_decode_intr_info(0x80002B0Eu, &ii), -EINVAL);
    assert_int_equal(pgm_vtx_decode_intr_info(0xC0000B0Eu, &ii), -EINVAL);
    assert_int_equal(pgm_vtx_decode_intr_info(0, NULL), -EINVAL);
}

static void
test_pf_exit(void **state)
{
    (void)state;
    struct pgm_hwvirt_pf pf;
    struct pgm_vtx_exit_fields f = {
        .exit_reason = 0,                 /* exception or NMI */
        .exit_qualification = 0x7ffff000dead0ull, /* linear address = CR2 */
        .intr_info = 0x80000B0Eu,         /* valid, EC, HW exception, #PF */
        .intr_error_code = 0x7,           /* P | W | U */
    };
    assert_int_equal(pgm_vtx_pf_exit(&f, &pf), 1);
    assert_int_equal(pf.error_code, 7);
    assert_int_equal(pf.cr2, 0x7ffff000dead0ull);
    assert_int_equal(pgm_vtx_pf_exit(&f, NULL), 1);

    /* #GP (vector 13) is not a page fault. */
    f.intr_info = 0x80000B0Du;
    assert_int_equal(pgm_vtx_pf_exit(&f, &pf), 0);
    /* vector 14 as a software exception (type 6) is not a #PF exit either */
    f.intr_info = 0x8000060Eu; /* valid | type 6 (0x600) | 14 */
    assert_int_equal(pgm_vtx_pf_exit(&f, &pf), 0);
    /* NMI exit */
    f.intr_info = 0x80000202u;
    assert_int_equal(pgm_vtx_pf_exit(&f, &pf), 0);
    /* #PF without "error code valid": impossible in hardware */
    f.intr_info = 0x8000030Eu;
    assert_int_equal(pgm_vtx_pf_exit(&f, &pf), -EINVAL);
    /* another basic reason with #PF-looking interruption info */
    f.intr_info = 0x80000B0Eu;
    f.exit_reason = PGM_VTX_EXIT_EPT_VIOLATION;
    assert_int_equal(pgm_vtx_pf_exit(&f, &pf), 0);
    /* entry failure bit with basic 0 */
    f.exit_reason = 0x80000000u;
    assert_int_equal(pgm_vtx_pf_exit(&f, &pf), 0);
    assert_int_equal(pgm_vtx_pf_exit(NULL, &pf), -EINVAL);
}

/* ---------------------------------------------------------------------- */
/* CR access (SDM table 28-3)                                              */
/* 3:0 CR, 5:4 type, 6 LMSW mem, 7 rsvd, 11:8 GPR, 15:12 rsvd, 31:16 LMSW  */
/* ---------------------------------------------------------------------- */

struct cr_vec {
    uint64_t qual;
    int rc;
    uint8_t cr, type, gpr;
    bool mem;
    uint16_t data;
};

static void
test_cr_access(void **state)
{
    (void)state;
    static const struct cr_vec v[] = {
        /* MOV to CR3 from RAX: cr 3, type 00, gpr 0 */
        { 0x0000000000000003ull, 0, 3, PGM_VTX_CR_MOV_TO, 0, false, 0 },
        /* MOV to CR0 from R12: gpr 1100 in 11:8 = 0xC00 */
        { 0x0000000000000C00ull, 0, 0, PGM_VTX_CR_MOV_TO, 12, false, 0 },
        /* MOV to CR4 from RSP: 4 | 4<<8 */
        { 0x0000000000000404ull, 0, 4, PGM_VTX_CR_MOV_TO, 4, false, 0 },
        /* MOV to CR8 from R15: 8 | 15<<8 */
        { 0x0000000000000F08ull, 0, 8, PGM_VTX_CR_MOV_TO, 15, false, 0 },
        /* MOV from CR8 to RSI: 8 | 01<<4 | 6<<8 = 0x618 */
        { 0x0000000000000618ull, 0, 8, PGM_VTX_CR_MOV_FROM, 6, false, 0 },
        /* MOV from CR3 to RDX: 3 | 0x10 | 2<<8 = 0x213 */
        { 0x0000000000000213ull, 0, 3, PGM_VTX_CR_MOV_FROM, 2, false, 0 },
        /* CLTS: type 10 in 5:4 = 0x20 */
        { 0x0000000000000020ull, 0, 0, PGM_VTX_CR_CLTS, 0, false, 0 },
        /* LMSW AX=0x0011 from a register: type 11 (0x30) | 0x0011<<16 */
        { 0x0000000000110030ull, 0, 0, PGM_VTX_CR_LMSW, 0, false, 0x0011 },
        /* LMSW from memory, data 0xFFFF: 0x30 | bit 6 (0x40) | 0xFFFF<<16 */
        { 0x00000000FFFF0070ull, 0, 0, PGM_VTX_CR_LMSW, 0, true, 0xFFFF },
        /* reserved bit 7 */
        { 0x0000000000000083ull, -EINVAL, 3, 0, 0, false, 0 },
        /* reserved bit 12 */
        { 0x0000000000001003ull, -EINVAL, 3, 0, 0, false, 0 },
        /* reserved bit 32 */
        { 0x0000000100000003ull, -EINVAL, 3, 0, 0, false, 0 },
        /* MOV to CR2 cannot exit */
        { 0x0000000000000002ull, -EINVAL, 2, 0, 0, false, 0 },
        /* MOV from CR0 cannot exit (read shadow) */
        { 0x0000000000000010ull, -EINVAL, 0, 1, 0, false, 0 },
        /* MOV from CR4 cannot exit */
        { 0x0000000000000014ull, -EINVAL, 4, 1, 0, false, 0 },
        /* CLTS naming CR3 */
        { 0x0000000000000023ull, -EINVAL, 3, 2, 0, false, 0 },
        /* CLTS with a GPR (bits 11:8 cleared for CLTS) */
        { 0x0000000000000120ull, -EINVAL, 0, 2, 1, false, 0 },
        /* MOV with LMSW source data */
        { 0x0000000000010003ull, -EINVAL, 3, 0, 0, false, 1 },
        /* MOV with the LMSW memory flag */
        { 0x0000000000000043ull, -EINVAL, 3, 0, 0, true, 0 },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pgm_vtx_cr_access a;
        int rc = pgm_vtx_decode_cr_access(v[i].qual, &a);
        if (rc != v[i].rc)
            fail_msg("vector %zu (0x%llx): rc %d, want %d", i, (unsigned long long)v[i].qual,
                     rc, v[i].rc);
        assert_int_equal(a.cr, v[i].cr);
        assert_int_equal(a.type, v[i].type);
        assert_int_equal(a.gpr, v[i].gpr);
        assert_int_equal(a.lmsw_memory, v[i].mem);
        assert_int_equal(a.lmsw_data, v[i].data);
    }
    assert_int_equal(pgm_vtx_decode_cr_access(3, NULL), -EINVAL);
}

/* ---------------------------------------------------------------------- */
/* EPT violation (SDM table 28-7)                                          */
/* ---------------------------------------------------------------------- */

static void
test_ept_violation(void **state)
{
    (void)state;
    struct pgm_vtx_ept_violation v;

    /*
     * Write to a read+execute page through a linear address:
     * bit 1 (W access) | 3 (readable) | 5 (executable) | 7 (GLA valid) | 8 (translated)
     * = 0x2 | 0x8 | 0x20 | 0x80 | 0x100 = 0x1AA
     */
    assert_int_equal(pgm_vtx_decode_ept_violation(0x1AA, 0x12345678, 0xffff800000001000ull,
                                                  false, &v), 0);
    assert_true(v.write);
    assert_false(v.read);
    assert_false(v.fetch);
    assert_true(v.readable);
    assert_false(v.writable);
    assert_true(v.executable);
    assert_true(v.gla_valid);
    assert_true(v.translated);
    assert_false(v.advanced_valid);
    assert_int_equal(v.gpa, 0x12345678);
    assert_int_equal(v.gla, 0xffff800000001000ull);

    /* Fetch from a not-present GPA: bit 2 | 7 | 8 = 0x184; bits 5:3 all zero */
    assert_int_equal(pgm_vtx_decode_ept_violation(0x184, 0x1000, 0x401000, false, &v), 0);
    assert_true(v.fetch);
    assert_false(v.readable || v.writable || v.executable);

    /* Guest page-walk read: bit 0 | 7, bit 8 clear = 0x81 (a paging-structure access) */
    assert_int_equal(pgm_vtx_decode_ept_violation(0x81, 0x2000, 0x400000, false, &v), 0);
    assert_true(v.read && v.gla_valid);
    assert_false(v.translated);

    /* PAE PDPTE load by MOV CR3: bit 0 only, no GLA; bit 8 ignored without bit 7 (0x101) */
    assert_int_equal(pgm_vtx_decode_ept_violation(0x101, 0x3000, 0xdead, false, &v), 0);
    assert_false(v.gla_valid);
    assert_false(v.translated);
    assert_int_equal(v.gla, 0);

    /*
     * Advanced info: 0x1AA | bit 9 (user LA) | bit 10 (RW LA) | bit 11 (XD LA)
     * = 0x1AA | 0x200 | 0x400 | 0x800 = 0xFAA
     */
    assert_int_equal(pgm_vtx_decode_ept_violation(0xFAA, 0, 0, true, &v), 0);
    assert_true(v.advanced_valid && v.user_la && v.rw_la && v.xd_la);
    assert_int_equal(pgm_vtx_decode_ept_violation(0xFAA, 0, 0, false, &v), 0);
    assert_false(v.advanced_valid || v.user_la || v.rw_la || v.xd_la);
    /* Advanced bits are not defined for a paging-structure access (bit 8 clear): 0xE81 */
    assert_int_equal(pgm_vtx_decode_ept_violation(0xE81, 0, 0, true, &v), 0);
    assert_false(v.advanced_valid);

    /* MBEC user-exec (bit 6), NMI unblocking (12), shadow stack (13), SSS (14): 0x7040 */
    assert_int_equal(pgm_vtx_decode_ept_violation(0x7040, 0, 0, false, &v), 0);
    assert_true(v.user_executable && v.nmi_unblocking && v.shadow_stack && v.sss);
    assert_int_equal(v.qual, 0x7040);

    /* Unknown high bits are kept but not interpreted. */
    assert_int_equal(pgm_vtx_decode_ept_violation(1ull << 40, 0, 0, false, &v), 0);
    assert_int_equal(v.qual, 1ull << 40);
    assert_int_equal(pgm_vtx_decode_ept_violation(0, 0, 0, false, NULL), -EINVAL);
}

/* ---------------------------------------------------------------------- */
/* IA32_VMX_EPT_VPID_CAP (SDM A.10)                                        */
/* ---------------------------------------------------------------------- */

static void
test_ept_caps(void **state)
{
    (void)state;
    struct pgm_vtx_ept_caps c;

    /*
     * 0x00000F0106734141:
     *   byte 0 = 0x41: bits 0 (exec-only), 6 (4-level)
     *   byte 1 = 0x41: bits 8 (UC), 14 (WB)
     *   byte 2 = 0x73: bits 16 (2M), 17 (1G), 20 (INVEPT), 21 (A/D), 22 (advanced)
     *   byte 3 = 0x06: bits 25 (single-ctx INVEPT), 26 (all-ctx INVEPT)
     *   byte 4 = 0x01: bit 32 (INVVPID)
     *   byte 5 = 0x0F: bits 40-43 (INVVPID addr, single, all, single-keep-global)
     */
    pgm_vtx_decode_ept_caps(0x00000F0106734141ull, &c);
    assert_true(c.exec_only && c.walk4 && c.mt_uc && c.mt_wb && c.pages_2m && c.pages_1g);
    assert_true(c.invept && c.ad && c.advanced_exit_info && c.invept_single && c.invept_all);
    assert_true(c.invvpid && c.invvpid_addr && c.invvpid_single && c.invvpid_all &&
                c.invvpid_single_keep_global);
    assert_false(c.walk5 || c.sss);
    assert_int_equal(c.raw, 0x00000F0106734141ull);

    /* Each documented bit alone sets exactly its member. */
    static const unsigned bitpos[] = { 0, 6, 7, 8, 14, 16, 17, 20, 21, 22, 23, 25, 26,
                                       32, 40, 41, 42, 43 };
    for (size_t i = 0; i < sizeof(bitpos) / sizeof(bitpos[0]); i++) {
        pgm_vtx_decode_ept_caps(1ull << bitpos[i], &c);
        bool m[] = { c.exec_only, c.walk4, c.walk5, c.mt_uc, c.mt_wb, c.pages_2m, c.pages_1g,
                     c.invept, c.ad, c.advanced_exit_info, c.sss, c.invept_single,
                     c.invept_all, c.invvpid, c.invvpid_addr, c.invvpid_single, c.invvpid_all,
                     c.invvpid_single_keep_global };
        for (size_t j = 0; j < sizeof(m) / sizeof(m[0]); j++)
            if (m[j] != (i == j))
                fail_msg("cap bit %u sets member %zu", bitpos[i], j);
    }
    /* Undocumented bits set nothing. */
    pgm_vtx_decode_ept_caps(~0ull & ~(0x00000F0106F341C1ull), &c);
    assert_false(c.exec_only || c.walk4 || c.walk5 || c.mt_uc || c.mt_wb || c.ad || c.sss);
    pgm_vtx_decode_ept_caps(0, NULL); /* must not crash */
}

/* ---------------------------------------------------------------------- */
/* EPTP (SDM "Format of Extended-Page-Table Pointer", VM-entry checks)     */
/* 2:0 memtype (0 UC, 6 WB), 5:3 walk length - 1, 6 A/D, 7 SSS,            */
/* 11:8 reserved, N-1:12 root, 63:N reserved                              */
/* ---------------------------------------------------------------------- */

static struct pgm_vtx_ept_caps
caps_from(uint64_t msr)
{
    struct pgm_vtx_ept_caps c;
    pgm_vtx_decode_ept_caps(msr, &c);
    return c;
}

static void
test_eptp_vectors(void **state)
{
    (void)state;
    struct pgm_vtx_ept_caps c = caps_from(0x00000F0106734141ull); /* WB, UC, 4-level, A/D */
    uint64_t eptp = 0;
    struct pgm_vtx_eptp d;

    /* WB (6) | (4-1)<<3 = 0x18 | A/D 0x40 -> 0x5E, root 0x12345000 */
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 0x12345000, 4, PGM_VTX_MT_WB,
                                       PGM_VTX_EPTP_AD, &eptp), 0);
    assert_int_equal(eptp, 0x1234505Eull);
    assert_int_equal(pgm_vtx_eptp_check(&c, 46, eptp, &d), 0);
    assert_int_equal(d.memtype, 6);
    assert_int_equal(d.levels, 4);
    assert_true(d.ad);
    assert_false(d.sss);
    assert_int_equal(d.root, 0x12345000);

    /* UC (0) | 0x18 -> 0x18 */
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 0x1000, 4, PGM_VTX_MT_UC, 0, &eptp), 0);
    assert_int_equal(eptp, 0x1018ull);

    /* 5-level without bit 7 of the capability */
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 0x1000, 5, PGM_VTX_MT_WB, 0, &eptp), -EINVAL);
    /* with it: (5-1)<<3 = 0x20 | 6 = 0x26 */
    struct pgm_vtx_ept_caps c5 = caps_from(0x00000F0106734141ull | (1ull << 7));
    assert_int_equal(pgm_vtx_eptp_make(&c5, 52, 0xFFFFFFFFFF000ull, 5, PGM_VTX_MT_WB, 0, &eptp),
                     0);
    assert_int_equal(eptp, 0xFFFFFFFFFF026ull);
    /* 3-level walks do not exist */
    assert_int_equal(pgm_vtx_eptp_make(&c5, 52, 0x1000, 3, PGM_VTX_MT_WB, 0, &eptp), -EINVAL);
    /* WC (1) is not a paging-structure memory type */
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 0x1000, 4, PGM_VTX_MT_WC, 0, &eptp), -EINVAL);
    /* SSS without bit 23 */
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 0x1000, 4, PGM_VTX_MT_WB, PGM_VTX_EPTP_SSS,
                                       &eptp), -EINVAL);
    /* misaligned root, root at 2^N, unknown flag, bad MAXPHYADDR, NULLs */
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 0x1800, 4, PGM_VTX_MT_WB, 0, &eptp), -EINVAL);
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 1ull << 46, 4, PGM_VTX_MT_WB, 0, &eptp), -EINVAL);
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 0x1000, 4, PGM_VTX_MT_WB, 1ull << 8, &eptp),
                     -EINVAL);
    assert_int_equal(pgm_vtx_eptp_make(&c, 53, 0x1000, 4, PGM_VTX_MT_WB, 0, &eptp), -EINVAL);
    assert_int_equal(pgm_vtx_eptp_make(&c, 31, 0x1000, 4, PGM_VTX_MT_WB, 0, &eptp), -EINVAL);
    assert_int_equal(pgm_vtx_eptp_make(NULL, 46, 0x1000, 4, PGM_VTX_MT_WB, 0, &eptp), -EINVAL);
    assert_int_equal(pgm_vtx_eptp_make(&c, 46, 0x1000, 4, PGM_VTX_MT_WB, 0, NULL), -EINVAL);

    /* check: reserved 11:8 (bit 9 -> 0x21E), bit 63, bit N */
    assert_int_equal(pgm_vtx_eptp_check(&c, 46, 0x1000 | 0x200 | 0x1E, NULL), -EINVAL);
    assert_int_equal(pgm_vtx_eptp_check(&c, 46, (1ull << 63) | 0x101E, NULL), -EINVAL);
    assert_int_equal(pgm_vtx_eptp_check(&c, 46, (1ull << 46) | 0x101E, NULL), -EINVAL);
    assert_int_equal(pgm_vtx_eptp_check(&c, 46, (1ull << 45) | 0x101E, NULL), 0);
    assert_int_equal(pgm_vtx_eptp_check(NULL, 46, 0x101E, NULL), -EINVAL);
}

/* Independent EPTP rule (SDM VM-entry checks on the EPTP field). */
static bool
eptp_model_ok(uint64_t capmsr, unsigned maxphy, uint64_t eptp)
{
    unsigned mt = (unsigned)(eptp & 7), pwl = (unsigned)((eptp >> 3) & 7);
    if (!((mt == 0 && (capmsr & 0x100)) || (mt == 6 && (capmsr & 0x4000))))
        return false;
    if (!((pwl == 3 && (capmsr & 0x40)) || (pwl == 4 && (capmsr & 0x80))))
        return false;
    if ((eptp & 0x40) && !(capmsr & 0x200000))
        return false;
    if ((eptp & 0x80) && !(capmsr & 0x800000))
        return false;
    if (eptp & 0xF00)
        return false;
    return (eptp >> maxphy) == 0;
}

static void
test_eptp_matrix(void **state)
{
    (void)state;
    /* Capability bits that matter: 6, 7, 8, 14, 21, 23 (all 64 subsets). */
    static const unsigned capbits[] = { 6, 7, 8, 14, 21, 23 };
    static const uint64_t extra[] = { 0, 1ull << 8, 1ull << 11, 1ull << 39, 1ull << 46,
                                      1ull << 51, 1ull << 52, 1ull << 63 };
    static const unsigned maxphys[] = { 39, 46, 52 };
    unsigned cases = 0;
    for (unsigned cs = 0; cs < 64; cs++) {
        uint64_t msr = 0;
        for (unsigned b = 0; b < 6; b++)
            if (cs & (1u << b))
                msr |= 1ull << capbits[b];
        struct pgm_vtx_ept_caps c = caps_from(msr);
        for (unsigned mp = 0; mp < 3; mp++)
            for (unsigned low = 0; low < 256; low++) /* memtype, PWL, A/D, SSS */
                for (unsigned x = 0; x < sizeof(extra) / sizeof(extra[0]); x++) {
                    uint64_t eptp = 0xABC000ull | low | extra[x];
                    bool want = eptp_model_ok(msr, maxphys[mp], eptp);
                    int rc = pgm_vtx_eptp_check(&c, maxphys[mp], eptp, NULL);
                    if ((rc == 0) != want)
                        fail_msg("eptp 0x%llx caps 0x%llx maxphy %u: rc %d",
                                 (unsigned long long)eptp, (unsigned long long)msr,
                                 maxphys[mp], rc);
                    /* make() accepts exactly the valid ones it can express */
                    if (x == 0) {
                        uint64_t made = 0;
                        unsigned levels = ((low >> 3) & 7) + 1;
                        int mrc = pgm_vtx_eptp_make(&c, maxphys[mp], 0xABC000ull, levels,
                                                    low & 7, low & 0xC0, &made);
                        if ((mrc == 0) != want || (want && made != eptp))
                            fail_msg("eptp_make low 0x%x caps 0x%llx: rc %d", low,
                                     (unsigned long long)msr, mrc);
                    }
                    cases++;
                }
    }
    print_message("# EPTP matrix: %u cases\n", cases);
}

/* ---------------------------------------------------------------------- */
/* EPT entries: misconfiguration matrix                                    */
/* ---------------------------------------------------------------------- */

/*
 * The rule table, from SDM 29.3.2 (entry formats) and 29.3.3.1
 * (misconfigurations), as literal masks:
 *
 *   level  entry        bit 7   reserved low bits    leaf?
 *   5      PML5E        -       7:3  = 0xF8          no
 *   4      PML4E        -       7:3  = 0xF8          no
 *   3      PDPTE        0       6:3  = 0x78          no
 *   3      PDPTE 1 GiB  1       29:12 = 0x3FFFF000   yes (bit 7 reserved w/o cap bit 17)
 *   2      PDE          0       6:3  = 0x78          no
 *   2      PDE 2 MiB    1       20:12 = 0x1FF000     yes (bit 7 reserved w/o cap bit 16)
 *   1      PTE          ignored none                 yes
 *
 *   all levels: bits 51:N reserved.
 *   XWR (bits 2:0): 000 not present; 010, 110 misconfig; 100 misconfig unless
 *   exec-only (cap bit 0); with MBEC, 000 + bit 10 present and exec-only.
 *   leaf memory type (5:3): 0 UC, 1 WC, 4 WT, 5 WP, 6 WB legal; 2, 3, 7 misconfig.
 */
static const uint64_t model_rsvd_low[2][6] = {
    /* bit 7 = 0 */ { 0, 0, 0x78, 0x78, 0xF8, 0xF8 },
    /* bit 7 = 1 */ { 0, 0, 0x1FF000, 0x3FFFF000, 0xF8, 0xF8 },
};
static const bool model_leaf[2][6] = {
    { false, true, false, false, false, false },
    { false, true, true, true, false, false },
};
static const bool model_mt_ok[8] = { true, true, false, false, true, true, true, false };

struct model_env {
    bool exec_only, p2m, p1g, mbec;
    uint64_t high; /* bits 51:N */
};

/* Returns a pgm_ept_class and the expected why bits. */
static int
ept_model(const struct model_env *m, unsigned level, uint64_t e, uint32_t *why)
{
    unsigned xwr = (unsigned)(e & 7);
    bool ux = m->mbec && ((e >> 10) & 1);
    *why = 0;
    if (xwr == 0 && !ux)
        return PGM_EPT_NOT_PRESENT;
    unsigned ps = (unsigned)((e >> 7) & 1);
    if (xwr == 2 || xwr == 6)
        *why |= PGM_EPT_MC_WRITE_NO_READ;
    if ((xwr == 4 || xwr == 0) && !m->exec_only)
        *why |= PGM_EPT_MC_EXEC_ONLY;
    if (e & m->high)
        *why |= PGM_EPT_MC_PHYS;
    bool leaf = model_leaf[ps][level];
    uint64_t low = model_rsvd_low[ps][level];
    if (e & low)
        *why |= leaf ? PGM_EPT_MC_LARGE_ALIGN : PGM_EPT_MC_RSVD_LOW;
    if (ps && level == 3 && !m->p1g)
        *why |= PGM_EPT_MC_LARGE_UNSUPPORTED;
    if (ps && level == 2 && !m->p2m)
        *why |= PGM_EPT_MC_LARGE_UNSUPPORTED;
    if (leaf && !model_mt_ok[(e >> 3) & 7])
        *why |= PGM_EPT_MC_MEMTYPE;
    if (*why)
        return PGM_EPT_MISCONFIG;
    return leaf ? PGM_EPT_LEAF : PGM_EPT_TABLE;
}

static void
test_ept_misconfig_matrix(void **state)
{
    (void)state;
    /* Address parts: clean 4K frame, 2M-misaligned, 1G-misaligned, 1G-aligned, above N. */
    static const uint64_t addrs[] = {
        0x0000000040000000ull, /* 1 GiB aligned */
        0x0000000000201000ull, /* bit 12: misaligned for 2 MiB and 1 GiB */
        0x0000000000200000ull, /* bit 21: 2 MiB aligned, 1 GiB misaligned */
        0x0000000020000000ull, /* bit 29 */
        0x0000008000000000ull, /* bit 39: beyond N = 39 only */
        0x0008000000000000ull, /* bit 51: beyond any N < 52 */
    };
    /* Ignored / feature bits that must never matter: 8, 9, 11, 52-62, 63 (and 10 without MBEC). */
    static const uint64_t ignored[] = { 0, (1ull << 8) | (1ull << 9), 1ull << 11,
                                        0x7FF0000000000000ull, 1ull << 63 };
    static const unsigned maxphys[] = { 39, 52 };
    unsigned cases = 0, misconfigs = 0;

    for (unsigned capset = 0; capset < 16; capset++) {
        for (unsigned mp = 0; mp < 2; mp++) {
            struct model_env m = {
                .exec_only = capset & 1, .p2m = capset & 2, .p1g = capset & 4,
                .mbec = capset & 8,
                .high = ((1ull << 52) - 1) & ~((1ull << maxphys[mp]) - 1),
            };
            struct pgm_vtx_ept_env env;
            memset(&env, 0, sizeof(env));
            pgm_vtx_decode_ept_caps((m.exec_only ? 1ull : 0) | (m.p2m ? 1ull << 16 : 0) |
                                        (m.p1g ? 1ull << 17 : 0) | (1ull << 21),
                                    &env.caps);
            env.maxphyaddr = maxphys[mp];
            env.mbec = m.mbec;
            for (unsigned level = 1; level <= 5; level++)
                for (unsigned low = 0; low < 256; low++) /* XWR, memtype, IPAT, bit 7 */
                    for (unsigned ux = 0; ux < 2; ux++)
                        for (size_t a = 0; a < sizeof(addrs) / sizeof(addrs[0]); a++)
                            for (size_t ig = 0; ig < sizeof(ignored) / sizeof(ignored[0]);
                                 ig++) {
                                uint64_t e = low | addrs[a] | ignored[ig] |
                                             (ux ? 1ull << 10 : 0);
                                uint32_t want_why, why;
                                int want = ept_model(&m, level, e, &want_why);
                                int got = pgm_vtx_ept_classify(&env, level, e, &why);
                                if (got != want || why != want_why)
                                    fail_msg("level %u entry 0x%016llx caps %u maxphy %u: "
                                             "class %d why 0x%x, want %d 0x%x",
                                             level, (unsigned long long)e, capset,
                                             maxphys[mp], got, why, want, want_why);
                                if (got == PGM_EPT_MISCONFIG)
                                    misconfigs++;
                                cases++;
                            }
        }
    }
    print_message("# EPT misconfiguration matrix: %u entries classified (%u misconfig)\n",
                  cases, misconfigs);
}

static struct pgm_vtx_ept_env
full_env(unsigned maxphy, bool mbec)
{
    struct pgm_vtx_ept_env env;
    memset(&env, 0, sizeof(env));
    pgm_vtx_decode_ept_caps(0x00000F0106734141ull, &env.caps);
    env.maxphyaddr = maxphy;
    env.mbec = mbec;
    return env;
}

static void
test_ept_classify_vectors(void **state)
{
    (void)state;
    struct pgm_vtx_ept_env env = full_env(46, false);
    uint32_t why;

    /* PTE RWX, WB (6<<3 = 0x30), frame 0x1234000: 0x1234037 -> leaf */
    assert_int_equal(pgm_vtx_ept_classify(&env, 1, 0x1234037, &why), PGM_EPT_LEAF);
    assert_int_equal(why, 0);
    /* Same with memory type 2 (0x10): misconfig */
    assert_int_equal(pgm_vtx_ept_classify(&env, 1, 0x1234017, &why), PGM_EPT_MISCONFIG);
    assert_int_equal(why, PGM_EPT_MC_MEMTYPE);
    /* KVM's MMIO marker: W+X without R (0x6) on a PTE */
    assert_int_equal(pgm_vtx_ept_classify(&env, 1, 0x1234006, &why), PGM_EPT_MISCONFIG);
    assert_int_equal(why, PGM_EPT_MC_WRITE_NO_READ);
    /* PML4E with IPAT (bit 6): reserved in a non-leaf */
    assert_int_equal(pgm_vtx_ept_classify(&env, 4, 0x5000047, &why), PGM_EPT_MISCONFIG);
    assert_int_equal(why, PGM_EPT_MC_RSVD_LOW);
    /* PML4E with bit 7: reserved */
    assert_int_equal(pgm_vtx_ept_classify(&env, 4, 0x5000087, &why), PGM_EPT_MISCONFIG);
    /* PDE with bit 7, 2 MiB frame 0x40200000, WB: leaf */
    assert_int_equal(pgm_vtx_ept_classify(&env, 2, 0x402000B7, &why), PGM_EPT_LEAF);
    /* not present: XWR = 0 with every other bit set */
    assert_int_equal(pgm_vtx_ept_classify(&env, 3, ~7ull, &why), PGM_EPT_NOT_PRESENT);
    assert_int_equal(why, 0);
    /* bad arguments */
    assert_int_equal(pgm_vtx_ept_classify(&env, 0, 7, &why), -EINVAL);
    assert_int_equal(pgm_vtx_ept_classify(&env, 6, 7, &why), -EINVAL);
    assert_int_equal(pgm_vtx_ept_classify(NULL, 1, 7, &why), -EINVAL);
    env.maxphyaddr = 60;
    assert_int_equal(pgm_vtx_ept_classify(&env, 1, 7, NULL), -EINVAL);
}

static void
test_ept_decode_entry(void **state)
{
    (void)state;
    struct pgm_ept_entry_info d;

    /*
     * 1 GiB PDPTE: frame 0x80000000 | SVE bit 63 | D 0x200 | A 0x100 | PS 0x80 |
     * IPAT 0x40 | WT (4<<3 = 0x20) | R X (0x5) = 0x80000000800003E5
     */
    assert_int_equal(pgm_vtx_ept_decode(0x80000000800003E5ull, 3, false, &d), 0);
    assert_true(d.leaf);
    assert_int_equal(d.page_shift, 30);
    assert_int_equal(d.rights, PGM_EPT_R | PGM_EPT_X);
    assert_int_equal(d.memtype, PGM_VTX_MT_WT);
    assert_true(d.ipat && d.accessed && d.dirty && d.suppress_ve);
    assert_int_equal(d.addr, 0x80000000ull);

    /* PDE to a table with UX (bit 10): 0x7000403 -> rights R W (+UX with MBEC) */
    assert_int_equal(pgm_vtx_ept_decode(0x7000403, 2, false, &d), 0);
    assert_false(d.leaf);
    assert_int_equal(d.page_shift, 0);
    assert_int_equal(d.rights, PGM_EPT_R | PGM_EPT_W);
    assert_int_equal(d.addr, 0x7000000);
    assert_int_equal(pgm_vtx_ept_decode(0x7000403, 2, true, &d), 0);
    assert_int_equal(d.rights, PGM_EPT_R | PGM_EPT_W | PGM_EPT_UX);

    /* PTE: bit 7 ignored, frame keeps bit 12 */
    assert_int_equal(pgm_vtx_ept_decode(0x1234081, 1, false, &d), 0);
    assert_true(d.leaf);
    assert_int_equal(d.addr, 0x1234000);
    assert_int_equal(pgm_vtx_ept_decode(0, 0, false, &d), -EINVAL);
    assert_int_equal(pgm_vtx_ept_decode(0, 1, false, NULL), -EINVAL);
}

static void
test_ept_builders(void **state)
{
    (void)state;
    struct pgm_vtx_ept_env env = full_env(46, false);
    uint64_t e;

    /* PTE RW, WB: 0x1234000 | 0x30 | 0x3 = 0x1234033 */
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 1, 0x1234000, PGM_EPT_R | PGM_EPT_W,
                                           PGM_VTX_MT_WB, 0, &e), 0);
    assert_int_equal(e, 0x1234033ull);
    /* 2 MiB R X, UC, IPAT, A, D: 0x40200000 | PS 0x80 | IPAT 0x40 | 0x300 | 0x5 = 0x402003C5 */
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 2, 0x40200000, PGM_EPT_R | PGM_EPT_X,
                                           PGM_VTX_MT_UC,
                                           PGM_EPT_MAKE_IPAT | PGM_EPT_MAKE_A | PGM_EPT_MAKE_D,
                                           &e), 0);
    assert_int_equal(e, 0x402003C5ull);
    /* table PML4E RWX with suppress-#VE: 0x5000000 | 7 | bit 63 */
    assert_int_equal(pgm_vtx_ept_make_table(&env, 4, 0x5000000, 7, PGM_EPT_MAKE_SUPPRESS_VE,
                                            &e), 0);
    assert_int_equal(e, 0x8000000005000007ull);

    /* Every rights x memtype x level: built iff legal, and the result classifies as wanted. */
    unsigned built = 0;
    for (unsigned mb = 0; mb < 2; mb++) {
        for (unsigned eo = 0; eo < 2; eo++) {
            env = full_env(46, mb);
            env.caps.exec_only = eo;
            for (uint64_t r = 0; r < 16; r++) {
                uint64_t rights = (r & 7) | ((r & 8) ? PGM_EPT_UX : 0);
                bool rights_ok = rights != 0 && (mb || !(r & 8)) && (r & 3) != 2 &&
                                 (eo || (r & 3) != 0);
                for (unsigned mt = 0; mt < 8; mt++)
                    for (unsigned level = 1; level <= 3; level++) {
                        int rc = pgm_vtx_ept_make_leaf(&env, level, 0x40000000, rights, mt, 0,
                                                       &e);
                        bool ok = rights_ok && model_mt_ok[mt];
                        if ((rc == 0) != ok)
                            fail_msg("make_leaf rights 0x%llx mt %u level %u: %d",
                                     (unsigned long long)rights, mt, level, rc);
                        if (rc == 0) {
                            assert_int_equal(pgm_vtx_ept_classify(&env, level, e, NULL),
                                             PGM_EPT_LEAF);
                            built++;
                        }
                    }
                for (unsigned level = 2; level <= 5; level++) {
                    int rc = pgm_vtx_ept_make_table(&env, level, 0x40000000, rights, 0, &e);
                    if ((rc == 0) != rights_ok)
                        fail_msg("make_table rights 0x%llx level %u: %d",
                                 (unsigned long long)rights, level, rc);
                    if (rc == 0)
                        assert_int_equal(pgm_vtx_ept_classify(&env, level, e, NULL),
                                         PGM_EPT_TABLE);
                }
            }
        }
    }
    print_message("# EPT builders: %u leaves built and re-classified\n", built);

    env = full_env(46, false);
    /* misaligned 2 MiB, above N, level 4 leaf, large without capability, A/D without caps */
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 2, 0x40201000, 7, 6, 0, &e), -EINVAL);
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 1, 1ull << 46, 7, 6, 0, &e), -EINVAL);
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 4, 0, 7, 6, 0, &e), -EINVAL);
    assert_int_equal(pgm_vtx_ept_make_table(&env, 1, 0x1000, 7, 0, &e), -EINVAL);
    assert_int_equal(pgm_vtx_ept_make_table(&env, 2, 0x1800, 7, 0, &e), -EINVAL);
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 1, 0x1000, 7, 6, 1u << 7, &e), -EINVAL);
    env.caps.pages_1g = false;
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 3, 0x40000000, 7, 6, 0, &e), -EINVAL);
    env.caps.ad = false;
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 1, 0x1000, 7, 6, PGM_EPT_MAKE_D, &e), -EINVAL);
    assert_int_equal(pgm_vtx_ept_make_table(&env, 2, 0x1000, 7, PGM_EPT_MAKE_A, &e), -EINVAL);
    assert_int_equal(pgm_vtx_ept_make_leaf(NULL, 1, 0x1000, 7, 6, 0, &e), -EINVAL);
    assert_int_equal(pgm_vtx_ept_make_leaf(&env, 1, 0x1000, 7, 6, 0, NULL), -EINVAL);
}

/* ---------------------------------------------------------------------- */
/* Whole exits into vendor-neutral events                                  */
/* ---------------------------------------------------------------------- */

static void
test_decode_exit(void **state)
{
    (void)state;
    struct pgm_vtx_ept_caps caps = caps_from(0x00000F0106734141ull);
    struct pgm_hwvirt_event ev;
    struct pgm_vtx_exit_fields f;

    /* #PF exit */
    memset(&f, 0, sizeof(f));
    f.intr_info = 0x80000B0Eu;
    f.intr_error_code = 0x15; /* P | U | ID */
    f.exit_qualification = 0x401000;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_PAGE_FAULT);
    assert_int_equal(ev.u.pf.error_code, 0x15);
    assert_int_equal(ev.u.pf.cr2, 0x401000);
    /* NMI exit: other */
    f.intr_info = 0x80000202u;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_OTHER);
    assert_int_equal(ev.reason, 0);

    /* MOV to CR3 from RBX: 3 | 3<<8 = 0x303 */
    memset(&f, 0, sizeof(f));
    f.exit_reason = PGM_VTX_EXIT_CR_ACCESS;
    f.exit_qualification = 0x303;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_CR_ACCESS);
    assert_int_equal(ev.u.cr.op, PGM_HWVIRT_CR_MOV_TO);
    assert_int_equal(ev.u.cr.cr, 3);
    assert_int_equal(ev.u.cr.gpr, 3);
    /* LMSW 0x0001 from memory: 0x30 | 0x40 | 1<<16 */
    f.exit_qualification = 0x10070;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.u.cr.op, PGM_HWVIRT_CR_LMSW);
    assert_int_equal(ev.u.cr.gpr, -1);
    assert_true(ev.u.cr.lmsw_memory);
    assert_int_equal(ev.u.cr.lmsw_data, 1);
    /* CLTS */
    f.exit_qualification = 0x20;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.u.cr.op, PGM_HWVIRT_CR_CLTS);
    /* malformed */
    f.exit_qualification = 0x80;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), -EINVAL);

    /* INVLPG: qualification = linear address */
    memset(&f, 0, sizeof(f));
    f.exit_reason = PGM_VTX_EXIT_INVLPG;
    f.exit_qualification = 0xffffffff80001000ull;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_INVLPG);
    assert_true(ev.u.invlpg.gva_valid);
    assert_int_equal(ev.u.invlpg.gva, 0xffffffff80001000ull);

    /* EPT violation: RMW write (bits 0 and 1) to a read-only page, final: 0x1 | 0x2 | 0x8 | 0x180 */
    memset(&f, 0, sizeof(f));
    f.exit_reason = PGM_VTX_EXIT_EPT_VIOLATION;
    f.exit_qualification = 0x18B;
    f.guest_physical_address = 0xfee00030;
    f.guest_linear_address = 0xfffffffffee00030ull;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_NESTED_FAULT);
    assert_int_equal(ev.u.nested.gpa, 0xfee00030);
    assert_int_equal(ev.u.nested.access, PGM_ACCESS_WRITE);
    assert_true(ev.u.nested.gva_valid);
    assert_int_equal(ev.u.nested.gva, 0xfffffffffee00030ull);
    assert_int_equal(ev.u.nested.stage, PGM_HWVIRT_STAGE_FINAL);
    assert_true(ev.u.nested.present);
    /* guest walk read of a not-present GPA: 0x81 */
    f.exit_qualification = 0x81;
    assert_int_equal(pgm_vtx_decode_exit(&f, NULL, &ev), 0);
    assert_int_equal(ev.u.nested.access, PGM_ACCESS_READ);
    assert_int_equal(ev.u.nested.stage, PGM_HWVIRT_STAGE_GUEST_WALK);
    assert_false(ev.u.nested.present);
    /* PDPTE load: no GLA */
    f.exit_qualification = 0x1;
    assert_int_equal(pgm_vtx_decode_exit(&f, NULL, &ev), 0);
    assert_int_equal(ev.u.nested.stage, PGM_HWVIRT_STAGE_UNKNOWN);
    assert_false(ev.u.nested.gva_valid);
    assert_int_equal(ev.u.nested.gva, 0);
    /* fetch */
    f.exit_qualification = 0x184;
    assert_int_equal(pgm_vtx_decode_exit(&f, NULL, &ev), 0);
    assert_int_equal(ev.u.nested.access, PGM_ACCESS_FETCH);

    /* EPT misconfiguration */
    memset(&f, 0, sizeof(f));
    f.exit_reason = PGM_VTX_EXIT_EPT_MISCONFIG;
    f.guest_physical_address = 0xfed00000;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_NESTED_MISCONFIG);
    assert_int_equal(ev.u.misconfig_gpa, 0xfed00000);

    /* VM-entry failure with basic reason 48 is not an EPT violation */
    f.exit_reason = 0x80000000u | PGM_VTX_EXIT_EPT_VIOLATION;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_OTHER);
    /* CPUID */
    f.exit_reason = PGM_VTX_EXIT_CPUID;
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_OTHER);
    assert_int_equal(ev.reason, 10);

    assert_int_equal(pgm_vtx_decode_exit(NULL, &caps, &ev), -EINVAL);
    assert_int_equal(pgm_vtx_decode_exit(&f, &caps, NULL), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_reason),
        cmocka_unit_test(test_intr_info),
        cmocka_unit_test(test_pf_exit),
        cmocka_unit_test(test_cr_access),
        cmocka_unit_test(test_ept_violation),
        cmocka_unit_test(test_ept_caps),
        cmocka_unit_test(test_eptp_vectors),
        cmocka_unit_test(test_eptp_matrix),
        cmocka_unit_test(test_ept_misconfig_matrix),
        cmocka_unit_test(test_ept_classify_vectors),
        cmocka_unit_test(test_ept_decode_entry),
        cmocka_unit_test(test_ept_builders),
        cmocka_unit_test(test_decode_exit),
    };
    return cmocka_run_group_tests_name("vtx", tests, NULL, NULL);
}
