/* SPDX-License-Identifier: MIT */
/*
 * AMD-V vendor layer: NPF / #PF / CR / INVLPG decoding, CPUID Fn8000_000A,
 * NPT entries and nCR3. Vectors are derived by hand from the AMD APM vol. 2;
 * the layout being checked is written next to each. The NPT matrix compares
 * against a rule table written here as literal masks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pgm/pgm.h"

/* ---------------------------------------------------------------------- */
/* NPF: EXITINFO1 = #PF error code (31:0) + bit 32 final / 33 guest walk   */
/*      EXITINFO2 = faulting guest-physical address                        */
/* ---------------------------------------------------------------------- */

static void
test_npf(void **state)
{
    (void)state;
    struct pgm_svm_npf n;

    /* Write, user, not present, final translation: W(1) | U(2) | bit 32 = 0x1_0000_0006 */
    assert_int_equal(pgm_svm_decode_npf(0x100000006ull, 0xfee00000ull, &n), 0);
    assert_false(n.present);
    assert_true(n.write && n.user);
    assert_false(n.rsvd || n.fetch);
    assert_true(n.final_translation);
    assert_false(n.guest_walk);
    assert_int_equal(n.error_code, 6);
    assert_int_equal(n.gpa, 0xfee00000ull);

    /* Guest page-table walk, protection (P), write for A/D: P | W | U | bit 33 = 0x2_0000_0007 */
    assert_int_equal(pgm_svm_decode_npf(0x200000007ull, 0x3000, &n), 0);
    assert_true(n.present && n.write && n.guest_walk);
    assert_false(n.final_translation);

    /* Reserved bit in a nested entry: P | U | RSVD (bit 3) | bit 32 = 0x1_0000_000D */
    assert_int_equal(pgm_svm_decode_npf(0x10000000Dull, 0x5000, &n), 0);
    assert_true(n.present && n.rsvd);
    assert_false(n.write);

    /* Instruction fetch from an NX page: P | U | ID (bit 4) | bit 32 = 0x1_0000_0015 */
    assert_int_equal(pgm_svm_decode_npf(0x100000015ull, 0x6000, &n), 0);
    assert_true(n.fetch && n.present);
    assert_int_equal(n.info1, 0x100000015ull);

    assert_int_equal(pgm_svm_decode_npf(0, 0, NULL), -EINVAL);
}

/* #PF intercept: EXITCODE 0x4E, EXITINFO1 = error code, EXITINFO2 = CR2 */
static void
test_pf_intercept(void **state)
{
    (void)state;
    struct pgm_hwvirt_pf pf;
    struct pgm_svm_exit_fields f = { .exit_code = 0x4E, .exit_info1 = 0x2,
                                     .exit_info2 = 0x7fff0000 };
    assert_int_equal(pgm_svm_pf_exit(&f, &pf), 1);
    assert_int_equal(pf.error_code, 2);
    assert_int_equal(pf.cr2, 0x7fff0000);
    assert_int_equal(pgm_svm_pf_exit(&f, NULL), 1);
    /* #GP intercept is 0x40 + 13 = 0x4D */
    f.exit_code = 0x4D;
    assert_int_equal(pgm_svm_pf_exit(&f, &pf), 0);
    f.exit_code = 0x400;
    assert_int_equal(pgm_svm_pf_exit(&f, &pf), 0);
    /* An error code wider than 32 bits is not a #PF error code. */
    f.exit_code = 0x4E;
    f.exit_info1 = 0x100000002ull;
    assert_int_equal(pgm_svm_pf_exit(&f, &pf), -EINVAL);
    assert_int_equal(pgm_svm_pf_exit(NULL, &pf), -EINVAL);
    assert_int_equal(PGM_SVM_EXIT_PF, PGM_SVM_EXIT_EXCP_BASE + 14);
}

/* ---------------------------------------------------------------------- */
/* CR intercepts: EXITCODE 0x00+n read, 0x10+n write, 0x65 CR0 selective;  */
/* DecodeAssists EXITINFO1: bit 63 = MOV CRx, 3:0 = GPR                    */
/* ---------------------------------------------------------------------- */

static void
test_cr_intercepts(void **state)
{
    (void)state;
    struct pgm_hwvirt_cr c;

    /* MOV CR3, RBX: EXITCODE 0x13, EXITINFO1 = bit 63 | 3 */
    assert_int_equal(pgm_svm_decode_cr_access(0x13, 0x8000000000000003ull, true, &c), 0);
    assert_int_equal(c.op, PGM_HWVIRT_CR_MOV_TO);
    assert_int_equal(c.cr, 3);
    assert_int_equal(c.gpr, 3);
    assert_false(c.selective);
    /* Same without DecodeAssists: EXITINFO1 undefined, op undecoded */
    assert_int_equal(pgm_svm_decode_cr_access(0x13, 0x8000000000000003ull, false, &c), 0);
    assert_int_equal(c.op, PGM_HWVIRT_CR_WRITE_UNDECODED);
    assert_int_equal(c.gpr, -1);
    /* MOV R15, CR0: EXITCODE 0x00, EXITINFO1 = bit 63 | 15 */
    assert_int_equal(pgm_svm_decode_cr_access(0x00, 0x800000000000000Full, true, &c), 0);
    assert_int_equal(c.op, PGM_HWVIRT_CR_MOV_FROM);
    assert_int_equal(c.cr, 0);
    assert_int_equal(c.gpr, 15);
    /* SMSW: CR0 read with bit 63 clear */
    assert_int_equal(pgm_svm_decode_cr_access(0x00, 0, true, &c), 0);
    assert_int_equal(c.op, PGM_HWVIRT_CR_READ_UNDECODED);
    /* LMSW / CLTS as CR0 selective write (0x65), bit 63 clear */
    assert_int_equal(pgm_svm_decode_cr_access(0x65, 0, true, &c), 0);
    assert_int_equal(c.op, PGM_HWVIRT_CR_WRITE_UNDECODED);
    assert_int_equal(c.cr, 0);
    assert_true(c.selective);
    /* MOV CR0, RDX caught by the selective intercept: bit 63 | 2 */
    assert_int_equal(pgm_svm_decode_cr_access(0x65, 0x8000000000000002ull, true, &c), 0);
    assert_int_equal(c.op, PGM_HWVIRT_CR_MOV_TO);
    assert_int_equal(c.gpr, 2);
    assert_true(c.selective);
    /* MOV CR8, RAX: 0x18 */
    assert_int_equal(pgm_svm_decode_cr_access(0x18, 0x8000000000000000ull, true, &c), 0);
    assert_int_equal(c.cr, 8);
    assert_int_equal(c.gpr, 0);
    /* not CR intercepts */
    assert_int_equal(pgm_svm_decode_cr_access(0x20, 0, true, &c), -EINVAL);
    assert_int_equal(pgm_svm_decode_cr_access(0x400, 0, true, &c), -EINVAL);
    assert_int_equal(pgm_svm_decode_cr_access(0x13, 0, true, NULL), -EINVAL);
}

/* ---------------------------------------------------------------------- */
/* CPUID Fn8000_000A                                                       */
/* ---------------------------------------------------------------------- */

static void
test_caps(void **state)
{
    (void)state;
    struct pgm_svm_caps c;

    /*
     * EAX = 1 (revision), EBX = 0x8000 ASIDs,
     * EDX = 0x0001B4FF: bits 0-7 (NP, LbrVirt, SVML, NRIPS, TscRate, VmcbClean,
     *       FlushByAsid, DecodeAssists), 10 (0x400 PauseFilter), 12 (0x1000
     *       threshold), 13 (0x2000 AVIC), 15 (0x8000 VMSAVEvirt), 16 (0x10000 VGIF)
     */
    pgm_svm_decode_caps(0x1, 0x8000, 0x0001B4FFu, &c);
    assert_int_equal(c.revision, 1);
    assert_int_equal(c.nasid, 0x8000);
    assert_true(c.np && c.lbr_virt && c.svm_lock && c.nrip_save && c.tsc_rate && c.vmcb_clean &&
                c.flush_by_asid && c.decode_assists);
    assert_true(c.pause_filter && c.pause_threshold && c.avic && c.vmsave_virt && c.vgif);
    assert_false(c.gmet || c.x2avic || c.sss_check || c.spec_ctrl || c.vnmi || c.svme_addr_chk);

    static const unsigned bitpos[] = { 0, 1, 2, 3, 4, 5, 6, 7, 10, 12, 13, 15, 16, 17, 18,
                                       19, 20, 25, 28 };
    for (size_t i = 0; i < sizeof(bitpos) / sizeof(bitpos[0]); i++) {
        pgm_svm_decode_caps(0, 0, 1u << bitpos[i], &c);
        bool m[] = { c.np, c.lbr_virt, c.svm_lock, c.nrip_save, c.tsc_rate, c.vmcb_clean,
                     c.flush_by_asid, c.decode_assists, c.pause_filter, c.pause_threshold,
                     c.avic, c.vmsave_virt, c.vgif, c.gmet, c.x2avic, c.sss_check,
                     c.spec_ctrl, c.vnmi, c.svme_addr_chk };
        for (size_t j = 0; j < sizeof(m) / sizeof(m[0]); j++)
            if (m[j] != (i == j))
                fail_msg("EDX bit %u sets member %zu", bitpos[i], j);
    }
    /* revision is EAX[7:0] only */
    pgm_svm_decode_caps(0xABCD12u, 0, 0, &c);
    assert_int_equal(c.revision, 0x12);
    pgm_svm_decode_caps(0, 0, 0, NULL);
}

/* ---------------------------------------------------------------------- */
/* NPT entries                                                             */
/* ---------------------------------------------------------------------- */

/*
 * Rule table (APM vol. 2 figs. 5-17..5-25 long-mode entries; 15.25.5):
 *   level  entry         PS   reserved                               leaf?
 *   5, 4   PML5E/PML4E   -    bits 8:7 = 0x180                       no
 *   3      PDPE          0    -                                      no
 *   3      PDPE 1 GiB    1    29:13 = 0x3FFFE000 (+ bit 7 w/o 1 GiB) yes
 *   2      PDE           0    -                                      no
 *   2      PDE 2 MiB     1    20:13 = 0x1FE000                       yes
 *   1      PTE           PAT  -                                      yes
 *   all: 51:N; bit 63 unless host EFER.NXE. P = 0: not present, nothing else read.
 */
static const uint64_t npt_rsvd[2][6] = {
    { 0, 0, 0, 0, 0x180, 0x180 },
    { 0, 0, 0x1FE000, 0x3FFFE000, 0x180, 0x180 },
};
static const bool npt_leaf[2][6] = {
    { false, true, false, false, false, false },
    { false, true, true, true, false, false },
};

static int
npt_model(bool nxe, bool gb, uint64_t high, unsigned level, uint64_t e, bool *no_user)
{
    *no_user = false;
    if (!(e & 1))
        return PGM_NPT_NOT_PRESENT;
    unsigned ps = (unsigned)((e >> 7) & 1);
    uint64_t r = high | npt_rsvd[ps][level];
    if (!nxe)
        r |= 1ull << 63;
    if (level == 3 && ps && !gb)
        r |= 0x80;
    *no_user = !(e & 4);
    if (e & r)
        return PGM_NPT_RSVD;
    return npt_leaf[ps][level] ? PGM_NPT_LEAF : PGM_NPT_TABLE;
}

static void
test_npt_matrix(void **state)
{
    (void)state;
    static const uint64_t addrs[] = { 0x40000000ull, 0x201000ull, 0x200000ull, 0x2000ull,
                                      0x20000000ull, 1ull << 40, 1ull << 51 };
    static const uint64_t hi[] = { 0, 1ull << 52, 0x7FF0000000000000ull, 1ull << 63 };
    static const unsigned maxphys[] = { 40, 48, 52 };
    unsigned cases = 0;
    for (unsigned env_bits = 0; env_bits < 8; env_bits++) {
        for (unsigned mp = 0; mp < 3; mp++) {
            struct pgm_svm_npt_env env = {
                .maxphyaddr = maxphys[mp],
                .levels = (env_bits & 4) ? 5 : 4,
                .nxe = env_bits & 1,
                .gbpages = env_bits & 2,
            };
            uint64_t high = ((1ull << 52) - 1) & ~((1ull << maxphys[mp]) - 1);
            for (unsigned level = 1; level <= env.levels; level++)
                for (unsigned low = 0; low < 512; low++) /* P RW US PWT PCD A D PS G */
                    for (size_t a = 0; a < sizeof(addrs) / sizeof(addrs[0]); a++)
                        for (size_t h = 0; h < sizeof(hi) / sizeof(hi[0]); h++) {
                            uint64_t e = low | addrs[a] | hi[h] | 0xE00; /* + AVL 11:9 */
                            bool want_nu, nu;
                            int want = npt_model(env.nxe, env.gbpages, high, level, e,
                                                 &want_nu);
                            int got = pgm_svm_npt_classify(&env, level, e, &nu);
                            if (got != want || nu != want_nu)
                                fail_msg("level %u entry 0x%016llx env %u maxphy %u: %d/%d, "
                                         "want %d/%d", level, (unsigned long long)e,
                                         env_bits, maxphys[mp], got, nu, want, want_nu);
                            cases++;
                        }
        }
    }
    print_message("# NPT matrix: %u entries classified\n", cases);

    struct pgm_svm_npt_env env = { .maxphyaddr = 48, .levels = 4, .nxe = true, .gbpages = true };
    assert_int_equal(pgm_svm_npt_classify(&env, 5, 1, NULL), -EINVAL);
    assert_int_equal(pgm_svm_npt_classify(&env, 0, 1, NULL), -EINVAL);
    assert_int_equal(pgm_svm_npt_classify(NULL, 1, 1, NULL), -EINVAL);
    env.levels = 3;
    assert_int_equal(pgm_svm_npt_classify(&env, 1, 1, NULL), -EINVAL);
}

static void
test_npt_builders(void **state)
{
    (void)state;
    struct pgm_svm_npt_env env = { .maxphyaddr = 48, .levels = 4, .nxe = true, .gbpages = true };
    uint64_t e;
    bool nu;

    /* PTE RW X, PAT 0: 0x123456000 | P RW US A D (0x67) = 0x123456067 */
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 1, 0x123456000ull,
                                           PGM_NPT_RIGHT_WRITE | PGM_NPT_RIGHT_EXEC, 0, &e), 0);
    assert_int_equal(e, 0x123456067ull);
    /* PTE read-only NX with PAT index 4 (PTE bit 7): P US A (0x25) | 0x80 | NX */
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 1, 0x1000, 0, 4, &e), 0);
    assert_int_equal(e, 0x80000000000010A5ull);
    /*
     * 2 MiB, NX, PAT index 5 (PAT=1, PWT=1): P US A (0x25) | PWT 0x8 | PS 0x80 |
     * PAT bit 12 (0x1000) | NX = 0x80000000400010AD for frame 0x40000000
     */
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 2, 0x40000000ull, 0, 5, &e), 0);
    assert_int_equal(e, 0x80000000400010ADull);
    assert_int_equal(pgm_svm_npt_classify(&env, 2, e, &nu), PGM_NPT_LEAF);
    assert_false(nu);
    /* 1 GiB RWX PAT 2 (PCD 0x10): 0x80000000 | 0x67 | 0x10 | 0x80 = 0x800000F7 */
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 3, 0x80000000ull,
                                           PGM_NPT_RIGHT_WRITE | PGM_NPT_RIGHT_EXEC, 2, &e), 0);
    assert_int_equal(e, 0x800000F7ull);
    /* Table: P RW US A = 0x27 */
    assert_int_equal(pgm_svm_npt_make_table(&env, 4, 0x7000, &e), 0);
    assert_int_equal(e, 0x7027ull);
    assert_int_equal(pgm_svm_npt_classify(&env, 4, e, &nu), PGM_NPT_TABLE);

    /* Every builder output classifies as what it was built to be, with US set. */
    for (unsigned level = 1; level <= 3; level++)
        for (uint32_t r = 0; r < 4; r++)
            for (unsigned pat = 0; pat < 8; pat++) {
                assert_int_equal(pgm_svm_npt_make_leaf(&env, level, 0x40000000ull, r, pat, &e),
                                 0);
                assert_int_equal(pgm_svm_npt_classify(&env, level, e, &nu), PGM_NPT_LEAF);
                assert_false(nu);
                /* PAT index round trip: PWT bit 3, PCD bit 4, PAT bit 7 (PTE) / 12 (large) */
                unsigned pat_bit = level == 1 ? 7 : 12;
                unsigned got = (unsigned)(((e >> 3) & 1) | (((e >> 4) & 1) << 1) |
                                          (((e >> pat_bit) & 1) << 2));
                assert_int_equal(got, pat);
            }
    for (unsigned level = 2; level <= 4; level++) {
        assert_int_equal(pgm_svm_npt_make_table(&env, level, 0x40000000ull, &e), 0);
        assert_int_equal(pgm_svm_npt_classify(&env, level, e, &nu), PGM_NPT_TABLE);
    }

    /* refusals */
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 2, 0x40001000ull, 1, 0, &e), -EINVAL);
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 1, 1ull << 48, 1, 0, &e), -EINVAL);
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 4, 0, 1, 0, &e), -EINVAL);
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 1, 0, 1, 8, &e), -EINVAL);
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 1, 0, 4, 0, &e), -EINVAL);
    assert_int_equal(pgm_svm_npt_make_table(&env, 1, 0x1000, &e), -EINVAL);
    assert_int_equal(pgm_svm_npt_make_table(&env, 5, 0x1000, &e), -EINVAL);
    assert_int_equal(pgm_svm_npt_make_table(&env, 2, 0x1800, &e), -EINVAL);
    env.gbpages = false;
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 3, 0x40000000ull, 3, 0, &e), -EINVAL);
    env.nxe = false;
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 1, 0x1000, PGM_NPT_RIGHT_WRITE, 0, &e),
                     -EINVAL);
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 1, 0x1000, PGM_NPT_RIGHT_EXEC, 0, &e), 0);
    assert_int_equal(e, 0x1025ull);
    assert_int_equal(pgm_svm_npt_make_leaf(NULL, 1, 0x1000, 3, 0, &e), -EINVAL);
    assert_int_equal(pgm_svm_npt_make_leaf(&env, 1, 0x1000, 3, 0, NULL), -EINVAL);
}

static void
test_ncr3(void **state)
{
    (void)state;
    struct pgm_svm_npt_env env = { .maxphyaddr = 48, .levels = 4, .nxe = true };
    uint64_t v;
    /* nCR3: 51:12 root, bit 3 PWT, bit 4 PCD */
    assert_int_equal(pgm_svm_ncr3_make(&env, 0xABCDE000ull, 0, &v), 0);
    assert_int_equal(v, 0xABCDE000ull);
    assert_int_equal(pgm_svm_ncr3_make(&env, 0xABCDE000ull, PGM_NPT_PWT | PGM_NPT_PCD, &v), 0);
    assert_int_equal(v, 0xABCDE018ull);
    assert_int_equal(pgm_svm_ncr3_make(&env, 0xABCDE800ull, 0, &v), -EINVAL);
    assert_int_equal(pgm_svm_ncr3_make(&env, 1ull << 48, 0, &v), -EINVAL);
    assert_int_equal(pgm_svm_ncr3_make(&env, 0x1000, PGM_NPT_RW, &v), -EINVAL);
    assert_int_equal(pgm_svm_ncr3_make(&env, 0x1000, 0, NULL), -EINVAL);
    env.maxphyaddr = 20;
    assert_int_equal(pgm_svm_ncr3_make(&env, 0x1000, 0, &v), -EINVAL);
}

/* ---------------------------------------------------------------------- */
/* Whole #VMEXITs into vendor-neutral events                               */
/* ---------------------------------------------------------------------- */

static void
test_decode_exit(void **state)
{
    (void)state;
    struct pgm_hwvirt_event ev;
    struct pgm_svm_exit_fields f;

    f = (struct pgm_svm_exit_fields){ .exit_code = 0x4E, .exit_info1 = 0x7,
                                      .exit_info2 = 0xb8000 };
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_PAGE_FAULT);
    assert_int_equal(ev.u.pf.error_code, 7);
    assert_int_equal(ev.u.pf.cr2, 0xb8000);
    f.exit_info1 = 1ull << 40;
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), -EINVAL);

    f = (struct pgm_svm_exit_fields){ .exit_code = 0x14, .exit_info1 = 0x8000000000000009ull };
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_CR_ACCESS);
    assert_int_equal(ev.u.cr.cr, 4);
    assert_int_equal(ev.u.cr.gpr, 9);
    assert_int_equal(ev.u.cr.op, PGM_HWVIRT_CR_MOV_TO);

    /* INVLPG: EXITINFO1 = linear address with DecodeAssists */
    f = (struct pgm_svm_exit_fields){ .exit_code = 0x79, .exit_info1 = 0xffff888000001000ull };
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_INVLPG);
    assert_true(ev.u.invlpg.gva_valid);
    assert_int_equal(ev.u.invlpg.gva, 0xffff888000001000ull);
    assert_int_equal(pgm_svm_decode_exit(&f, false, &ev), 0);
    assert_false(ev.u.invlpg.gva_valid);

    /* NPF, fetch, final translation: ID | U | bit 32 */
    f = (struct pgm_svm_exit_fields){ .exit_code = 0x400, .exit_info1 = 0x100000014ull,
                                      .exit_info2 = 0x9000 };
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_NESTED_FAULT);
    assert_int_equal(ev.u.nested.gpa, 0x9000);
    assert_int_equal(ev.u.nested.access, PGM_ACCESS_FETCH);
    assert_int_equal(ev.u.nested.stage, PGM_HWVIRT_STAGE_FINAL);
    assert_false(ev.u.nested.present);
    assert_false(ev.u.nested.gva_valid);
    /* NPF during a guest walk, write (A/D), present: 0x2_0000_0007 */
    f.exit_info1 = 0x200000007ull;
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), 0);
    assert_int_equal(ev.u.nested.access, PGM_ACCESS_WRITE);
    assert_int_equal(ev.u.nested.stage, PGM_HWVIRT_STAGE_GUEST_WALK);
    assert_true(ev.u.nested.present);
    /* neither / both stage bits: unknown */
    f.exit_info1 = 0x300000001ull;
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), 0);
    assert_int_equal(ev.u.nested.stage, PGM_HWVIRT_STAGE_UNKNOWN);
    assert_int_equal(ev.u.nested.access, PGM_ACCESS_READ);

    /* others */
    f = (struct pgm_svm_exit_fields){ .exit_code = 0x72 };
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_OTHER);
    assert_int_equal(ev.reason, 0x72);
    f.exit_code = PGM_SVM_EXIT_INVALID;
    assert_int_equal(pgm_svm_decode_exit(&f, true, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_OTHER);
    assert_int_equal(pgm_svm_decode_exit(NULL, true, &ev), -EINVAL);
    assert_int_equal(pgm_svm_decode_exit(&f, true, NULL), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npf),
        cmocka_unit_test(test_pf_intercept),
        cmocka_unit_test(test_cr_intercepts),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_npt_matrix),
        cmocka_unit_test(test_npt_builders),
        cmocka_unit_test(test_ncr3),
        cmocka_unit_test(test_decode_exit),
    };
    return cmocka_run_group_tests_name("svm", tests, NULL, NULL);
}
