/* SPDX-License-Identifier: MIT */
/*
 * The guest walker, per mode, on hand-built tables. Every expected value here
 * was worked out from the Intel SDM vol. 3A ch. 4 by hand (the comments show
 * the arithmetic); the exhaustive matrix against the independent model lives
 * in test_walk_matrix.c.
 */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define PE_PG (PGM_CR0_PE | PGM_CR0_PG)
#define W PGM_ACCESS_WRITE
#define U PGM_ACCESS_USER
#define X PGM_ACCESS_FETCH

static void
set_mode(struct fixture *f, enum pgm_guest_mode m, uint64_t cr0, uint64_t cr4, uint64_t efer,
         uint64_t cr3, uint32_t pkru)
{
    struct pgm_cpu_state s = { .cr0 = cr0 | PE_PG, .cr4 = cr4, .efer = efer, .cr3 = cr3,
                               .pkru = pkru };
    if (m >= PGM_MODE_PAE)
        s.cr4 |= PGM_CR4_PAE;
    if (m >= PGM_MODE_AMD64)
        s.efer |= PGM_EFER_LME;
    if (m == PGM_MODE_LA57)
        s.cr4 |= PGM_CR4_LA57;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    assert_int_equal(pgm_guest_mode(f->vcpu), m);
}

static struct pgm_walk
walk(struct fixture *f, uint64_t va, uint32_t access)
{
    struct pgm_walk w;
    memset(&w, 0xcc, sizeof(w));
    assert_int_equal(pgm_walk(f->vcpu, va, access, &w), 0);
    return w;
}

static void
expect_ok(struct fixture *f, uint64_t va, uint32_t access, uint64_t gpa, unsigned shift)
{
    struct pgm_walk w = walk(f, va, access);
    if (w.status != PGM_WALK_OK)
        fail_msg("va %#llx access %#x: expected gpa %#llx, got status %d ec %#x",
                 (unsigned long long)va, access, (unsigned long long)gpa, w.status, w.error_code);
    assert_true(w.gpa == gpa);
    assert_int_equal(w.page_shift, shift);
}

static void
expect_pf(struct fixture *f, uint64_t va, uint32_t access, uint32_t ec)
{
    struct pgm_walk w = walk(f, va, access);
    if (w.status != PGM_WALK_PAGE_FAULT || w.error_code != ec)
        fail_msg("va %#llx access %#x: expected #PF ec %#x, got status %d ec %#x gpa %#llx",
                 (unsigned long long)va, access, ec, w.status, w.error_code,
                 (unsigned long long)w.gpa);
}

/* ---- IA-32e 4-level: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000 ---- */

static void
amd64_tables(struct fixture *f, uint64_t flags)
{
    put64(f, 0x1000, 0x2000 | flags);
    put64(f, 0x2000, 0x3000 | flags);
    put64(f, 0x3000, 0x4000 | flags);
    put64(f, 0x4008, 0x5000 | flags); /* va 0x1000-0x1fff -> 0x5000 */
}

static void
test_amd64_basic_and_ad(void **state)
{
    struct fixture *f = *state;
    amd64_tables(f, 0x3); /* P|RW, supervisor */
    set_mode(f, PGM_MODE_AMD64, 0, 0, 0, 0x1000, 0);

    struct pgm_walk w = walk(f, 0x1234, 0);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_true(w.gpa == 0x5234);
    assert_int_equal(w.top_level, 4);
    assert_int_equal(w.last_level, 1);
    assert_true(w.entry_gpa[4] == 0x1000 && w.entry_gpa[1] == 0x4008);
    assert_int_equal(w.rights, PGM_RIGHT_WRITE | PGM_RIGHT_EXEC);
    assert_true(w.flags & PGM_WALK_F_AD_WRITTEN);
    /* A (bit 5) on every level, no D on a read */
    assert_true(get64(f, 0x1000) == 0x2023 && get64(f, 0x2000) == 0x3023);
    assert_true(get64(f, 0x3000) == 0x4023 && get64(f, 0x4008) == 0x5023);
    assert_true(w.entry[1] == 0x5023);

    /* a write adds D (bit 6) to the leaf only */
    w = walk(f, 0x1ff8, W);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_true(get64(f, 0x4008) == 0x5063 && get64(f, 0x3000) == 0x4023);
    /* nothing left to write: no A/D update */
    w = walk(f, 0x1000, W);
    assert_false(w.flags & PGM_WALK_F_AD_WRITTEN);

    /* NO_AD: query only */
    put64(f, 0x4010, 0x6003);
    w = walk(f, 0x2000, W | PGM_ACCESS_NO_AD);
    assert_true(w.gpa == 0x6000);
    assert_true(get64(f, 0x4010) == 0x6003);
}

static void
test_amd64_faults_write_nothing(void **state)
{
    struct fixture *f = *state;
    amd64_tables(f, 0x7);
    put64(f, 0x3000, 0x4003); /* PD lacks U/S: user access fails at the end */
    set_mode(f, PGM_MODE_AMD64, PGM_CR0_WP, 0, 0, 0x1000, 0);
    expect_pf(f, 0x1000, U, 0x5);       /* P|U */
    expect_pf(f, 0x1000, U | W, 0x7);   /* P|W|U */
    assert_true(get64(f, 0x1000) == 0x2007 && get64(f, 0x4008) == 0x5007);
    /* not present leaf: P=0, only the access bits */
    put64(f, 0x4010, 0x6006);
    expect_pf(f, 0x2000, 0, 0x0);
    expect_pf(f, 0x2000, U | W, 0x6);
    struct pgm_walk w = walk(f, 0x2000, 0);
    assert_int_equal(w.last_level, 1);
    /* not present PML4E */
    expect_pf(f, 0x8000000000ull, W, 0x2);
    w = walk(f, 0x8000000000ull, W);
    assert_int_equal(w.last_level, 4);
    assert_true(get64(f, 0x1000) == 0x2007); /* still no A */
}

static void
test_amd64_reserved_bits(void **state)
{
    struct fixture *f = *state;
    amd64_tables(f, 0x3);
    set_mode(f, PGM_MODE_AMD64, 0, 0, 0, 0x1000, 0);
    /* bit 63 with EFER.NXE = 0 is reserved, at any level */
    put64(f, 0x2000, 0x3003 | 1ull << 63);
    expect_pf(f, 0x1000, 0, 0x9);  /* P|RSVD */
    expect_pf(f, 0x1000, X, 0x9);  /* no I/D without NXE or SMEP */
    set_mode(f, PGM_MODE_AMD64, 0, PGM_CR4_SMEP, 0, 0x1000, 0);
    expect_pf(f, 0x1000, X, 0x19); /* I/D with SMEP */
    set_mode(f, PGM_MODE_AMD64, 0, 0, PGM_EFER_NXE, 0x1000, 0);
    expect_ok(f, 0x1000, 0, 0x5000, 12); /* now XD */
    expect_pf(f, 0x1000, X, 0x11);       /* P|I/D: execute-disable */
    put64(f, 0x2000, 0x3003);
    /* IA-32e ignores bits 62:52 (52 = MAXPHYADDR here) */
    put64(f, 0x4008, 0x5003 | 0x7ff0000000000000ull);
    expect_ok(f, 0x1000, 0, 0x5000, 12);
    /* PS in a PML4E is reserved */
    put64(f, 0x1000, 0x2083);
    expect_pf(f, 0x1000, 0, 0x9);
    put64(f, 0x1000, 0x2003);
}

static void
test_amd64_reserved_maxphyaddr(void **state)
{
    (void)state;
    struct pgm_vm_config tmp;
    pgm_vm_config_init(&tmp);
    struct pgm_cpu_features feat = tmp.features;
    feat.maxphyaddr = 39;
    feat.gbpages = false;
    struct fixture *f = fixture_new(&feat);
    amd64_tables(f, 0x3);
    set_mode(f, PGM_MODE_AMD64, 0, 0, 0, 0x1000, 0);
    expect_ok(f, 0x1000, 0, 0x5000, 12);
    put64(f, 0x4008, 0x5003 | 1ull << 39); /* bit 39 >= MAXPHYADDR */
    expect_pf(f, 0x1000, W, 0xb);          /* P|W|RSVD */
    put64(f, 0x4008, 0x5003 | 1ull << 38);
    expect_ok(f, 0x1000, 0, 0x4000005000ull, 12);
    /* without 1 GiB pages, PS in a PDPTE is reserved */
    put64(f, 0x2008, 0x40000083);
    expect_pf(f, 0x40000000, 0, 0x9);
    /* CR3 at or above MAXPHYADDR */
    assert_int_equal(pgm_sync_cr3(f->vcpu, 1ull << 39), PGM_RC_INJECT_GP);
    fixture_free(f);
}

static void
test_amd64_large_pages(void **state)
{
    struct fixture *f = *state;
    amd64_tables(f, 0x3);
    set_mode(f, PGM_MODE_AMD64, 0, 0, 0, 0x1000, 0);
    /* 2 MiB: va 0x212345 -> PD index 1 -> PDE 0x400083 -> 0x400000 + 0x12345 */
    put64(f, 0x3008, 0x400083);
    expect_ok(f, 0x212345, W, 0x412345, 21);
    assert_true(get64(f, 0x3008) == 0x4000e3); /* A|D on the large leaf */
    put64(f, 0x3008, 0x402083);                /* bit 13 in a 2 MiB PDE: reserved */
    expect_pf(f, 0x212345, 0, 0x9);
    put64(f, 0x3008, 0x401083);                /* bit 12 is the large-page PAT */
    struct pgm_walk w = walk(f, 0x212345, 0);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_int_equal(w.pat_index, 4);
    /* 1 GiB: va 0x52345678 -> PDPT index 1 -> 0x40000000 + 0x12345678 */
    put64(f, 0x2008, 0x40000083);
    expect_ok(f, 0x52345678, 0, 0x52345678, 30);
    put64(f, 0x2008, 0x80000083);
    expect_ok(f, 0x52345678, 0, 0x92345678, 30);
    put64(f, 0x2008, 0x40200083); /* bit 21: misaligned 1 GiB frame, reserved */
    expect_pf(f, 0x52345678, 0, 0x9);
}

static void
test_amd64_wp_smep_smap(void **state)
{
    struct fixture *f = *state;
    amd64_tables(f, 0x5); /* P|U/S, read-only, user */
    set_mode(f, PGM_MODE_AMD64, 0, 0, 0, 0x1000, 0);
    expect_ok(f, 0x1000, W, 0x5000, 12);    /* WP=0: supervisor writes ignore R/W */
    expect_pf(f, 0x1000, W | U, 0x7);       /* user writes do not */
    set_mode(f, PGM_MODE_AMD64, PGM_CR0_WP, 0, 0, 0x1000, 0);
    expect_pf(f, 0x1000, W, 0x3);
    /* SMAP: supervisor data access to a user page */
    set_mode(f, PGM_MODE_AMD64, 0, PGM_CR4_SMAP, 0, 0x1000, 0);
    expect_pf(f, 0x1000, 0, 0x1);
    expect_pf(f, 0x1000, W, 0x3);              /* WP=0 does not relax SMAP */
    expect_ok(f, 0x1000, PGM_ACCESS_AC, 0x5000, 12);
    expect_pf(f, 0x1000, PGM_ACCESS_AC | PGM_ACCESS_IMPLICIT, 0x1);
    expect_ok(f, 0x1000, X, 0x5000, 12);       /* fetches are exempt from SMAP */
    expect_ok(f, 0x1000, U, 0x5000, 12);
    /* SMEP: supervisor fetch from a user page */
    set_mode(f, PGM_MODE_AMD64, 0, PGM_CR4_SMEP, 0, 0x1000, 0);
    expect_pf(f, 0x1000, X, 0x11);
    expect_ok(f, 0x1000, 0, 0x5000, 12);
    expect_ok(f, 0x1000, X | U, 0x5000, 12);
    /* one supervisor level makes the page supervisor */
    put64(f, 0x2000, 0x3001 | 0x20);
    expect_ok(f, 0x1000, X, 0x5000, 12);
    expect_pf(f, 0x1000, U, 0x5);
    /* access combinations the CPU cannot make are refused */
    struct pgm_walk w;
    assert_int_equal(pgm_walk(f->vcpu, 0, W | X, &w), -EINVAL);
    assert_int_equal(pgm_walk(f->vcpu, 0, U | PGM_ACCESS_IMPLICIT, &w), -EINVAL);
    assert_int_equal(pgm_walk(f->vcpu, 0, 1u << 30, &w), -EINVAL);
    assert_int_equal(pgm_walk(NULL, 0, 0, &w), -EINVAL);
    assert_int_equal(pgm_walk(f->vcpu, 0, 0, NULL), -EINVAL);
}

static void
test_amd64_pkeys(void **state)
{
    struct fixture *f = *state;
    amd64_tables(f, 0x7);
    put64(f, 0x4008, 0x5007 | 5ull << 59); /* leaf key 5 */
    put64(f, 0x3000, 0x4007 | 9ull << 59); /* keys in non-leaf entries are ignored */
    const uint32_t ad5 = 1u << 10, wd5 = 1u << 11;
    set_mode(f, PGM_MODE_AMD64, PGM_CR0_WP, 0, 0, 0x1000, ad5);
    expect_ok(f, 0x1000, U, 0x5000, 12);              /* CR4.PKE = 0 */
    set_mode(f, PGM_MODE_AMD64, PGM_CR0_WP, PGM_CR4_PKE, 0, 0x1000, ad5);
    expect_pf(f, 0x1000, U, 0x25);                    /* P|U|PK */
    expect_pf(f, 0x1000, 0, 0x21);                    /* any CPL, user page */
    expect_ok(f, 0x1000, X | U, 0x5000, 12);          /* never for fetches */
    struct pgm_walk w = walk(f, 0x1000, X | U);
    assert_int_equal(w.pkey, 5);
    pgm_set_pkru(f->vcpu, wd5);
    expect_ok(f, 0x1000, U, 0x5000, 12);
    expect_pf(f, 0x1000, U | W, 0x27);                /* P|W|U|PK */
    expect_pf(f, 0x1000, W, 0x23);                    /* supervisor write, WP=1 */
    set_mode(f, PGM_MODE_AMD64, 0, PGM_CR4_PKE, 0, 0x1000, wd5);
    expect_ok(f, 0x1000, W, 0x5000, 12);              /* WP=0 lifts WD for supervisor */
    /* PK is reported together with another violation */
    put64(f, 0x4008, 0x5005 | 5ull << 59);            /* read-only */
    expect_pf(f, 0x1000, U | W, 0x27);
    /* supervisor pages are not subject to PKRU */
    put64(f, 0x4008, 0x5003 | 5ull << 59);
    pgm_set_pkru(f->vcpu, ad5);
    expect_ok(f, 0x1000, 0, 0x5000, 12);
}

static void
test_amd64_attributes(void **state)
{
    struct fixture *f = *state;
    amd64_tables(f, 0x3);
    put64(f, 0x4008, 0x5000 | 0x3 | 0x80 | 0x10 | 0x100); /* PAT, PCD, G */
    set_mode(f, PGM_MODE_AMD64, 0, PGM_CR4_PGE, 0, 0x1000, 0);
    struct pgm_walk w = walk(f, 0x1000, 0);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_int_equal(w.pat_index, 4 | 2);
    assert_true(w.global);
    assert_int_equal(w.pkey, 0);
}

static void
test_canonical(void **state)
{
    struct fixture *f = *state;
    amd64_tables(f, 0x3);
    set_mode(f, PGM_MODE_AMD64, 0, 0, 0, 0x1000, 0);
    struct pgm_walk w = walk(f, 0x0000800000000000ull, 0);
    assert_int_equal(w.status, PGM_WALK_GP);
    w = walk(f, 0xffff800000000000ull, 0);
    assert_int_equal(w.status, PGM_WALK_PAGE_FAULT); /* canonical, PML4E 256 absent */
    w = walk(f, 0xfffe800000000000ull, 0);
    assert_int_equal(w.status, PGM_WALK_GP);
    struct pgm_stats st;
    pgm_stats(f->vm, &st);
    assert_int_equal(st.walk_gp, 2);
}

/* ---- 5-level: PML5 0x1000 .. PT 0x5000 -> 0x6000 ---- */

static void
test_la57(void **state)
{
    struct fixture *f = *state;
    const uint64_t va = 1ull << 48 | 0x1234; /* PML5 index 1, the rest 0 / 1 */
    put64(f, 0x1008, 0x2003);
    put64(f, 0x2000, 0x3003);
    put64(f, 0x3000, 0x4003);
    put64(f, 0x4000, 0x5003);
    put64(f, 0x5008, 0x6003);
    set_mode(f, PGM_MODE_LA57, 0, 0, 0, 0x1000, 0);
    struct pgm_walk w = walk(f, va, W);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_true(w.gpa == 0x6234);
    assert_int_equal(w.top_level, 5);
    assert_true(get64(f, 0x1008) == 0x2023 && get64(f, 0x5008) == 0x6063);
    /* canonical at bit 56 */
    assert_int_equal(walk(f, 0x0000800000000000ull, 0).status, PGM_WALK_PAGE_FAULT);
    assert_int_equal(walk(f, 1ull << 57, 0).status, PGM_WALK_GP);
    assert_int_equal(walk(f, 0xff00000000000000ull, 0).status, PGM_WALK_PAGE_FAULT);
    assert_int_equal(walk(f, 0xfe00000000000000ull, 0).status, PGM_WALK_GP);
    put64(f, 0x1008, 0x2083); /* PS in a PML5E */
    expect_pf(f, va, 0, 0x9);
}

/* ---- 32-bit: PD 0x1000, PT 0x2000 ---- */

static void
test_32bit(void **state)
{
    struct fixture *f = *state;
    put32(f, 0x1000, 0x2003);
    put32(f, 0x2004, 0x5003);
    set_mode(f, PGM_MODE_32BIT, 0, 0, 0, 0x1000, 0);
    struct pgm_walk w = walk(f, 0x1234, W);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_true(w.gpa == 0x5234);
    assert_int_equal(w.top_level, 2);
    assert_true(get32(f, 0x1000) == 0x2023 && get32(f, 0x2004) == 0x5063);
    assert_true(get32(f, 0x1004) == 0); /* 4-byte entries: the neighbour is untouched */
    /* PS is ignored without CR4.PSE */
    put32(f, 0x1000, 0x20a3);
    expect_ok(f, 0x1234, 0, 0x5234, 12);
    /* no reserved bits in 32-bit PTEs */
    put32(f, 0x2004, 0xfffff003);
    expect_ok(f, 0x1234, 0, 0xfffff234, 12);
    /* the address is truncated to 32 bits */
    expect_ok(f, 0x100001234ull, 0, 0xfffff234, 12);
    /* I/D: never from NXE in 32-bit paging, always with SMEP */
    put32(f, 0x2008, 0);
    set_mode(f, PGM_MODE_32BIT, 0, 0, PGM_EFER_NXE, 0x1000, 0);
    expect_pf(f, 0x2000, X, 0x0);
    set_mode(f, PGM_MODE_32BIT, 0, PGM_CR4_SMEP, 0, 0x1000, 0);
    expect_pf(f, 0x2000, X, 0x10);
}

static void
test_32bit_4m_pse36(void **state)
{
    struct fixture *f = *state;
    set_mode(f, PGM_MODE_32BIT, 0, PGM_CR4_PSE, 0, 0x1000, 0);
    /* va 0x400123 -> PDE 1 */
    put32(f, 0x1004, 0x00c00083);
    expect_ok(f, 0x400123, W, 0xc00123, 22);
    assert_true(get32(f, 0x1004) == 0x00c000e3);
    /* PSE-36 with MAXPHYADDR 52 (M = 40): PDE bits 20:13 are PA bits 39:32 */
    put32(f, 0x1004, 0x00c1e083);          /* bits 16:13 = 0xf */
    expect_ok(f, 0x400123, 0, 0xf00c00123ull, 22);
    put32(f, 0x1004, 0x00c00083 | 1u << 20); /* bit 20 -> PA bit 39 */
    expect_ok(f, 0x400123, 0, 0x8000c00123ull, 22);
    put32(f, 0x1004, 0x00c00083 | 1u << 21); /* bit 21 is always reserved */
    expect_pf(f, 0x400123, 0, 0x9);
}

static void
test_32bit_pse36_policies(void **state)
{
    (void)state;
    struct pgm_vm_config tmp;
    pgm_vm_config_init(&tmp);
    struct pgm_cpu_features feat = tmp.features;
    feat.maxphyaddr = 36; /* M = 36: bits 16:13 give PA 35:32, 21:17 reserved */
    struct fixture *f = fixture_new(&feat);
    set_mode(f, PGM_MODE_32BIT, 0, PGM_CR4_PSE, 0, 0x1000, 0);
    put32(f, 0x1004, 0x00c1e083);
    expect_ok(f, 0x400123, 0, 0xf00c00123ull, 22);
    put32(f, 0x1004, 0x00c20083); /* bit 17 */
    expect_pf(f, 0x400123, 0, 0x9);
    fixture_free(f);

    feat.pse36 = false; /* without PSE-36, bits 21:13 are all reserved */
    f = fixture_new(&feat);
    set_mode(f, PGM_MODE_32BIT, 0, PGM_CR4_PSE, 0, 0x1000, 0);
    put32(f, 0x1004, 0x00c02083);
    expect_pf(f, 0x400123, 0, 0x9);
    put32(f, 0x1004, 0x00c01083); /* bit 12 is PAT */
    expect_ok(f, 0x400123, 0, 0xc00123, 22);
    fixture_free(f);
}

/* ---- PAE: PDPT 0x1000, PD 0x2000, PT 0x3000 ---- */

static void
test_pae(void **state)
{
    struct fixture *f = *state;
    put64(f, 0x1000, 0x2001);
    put64(f, 0x2000, 0x3003);
    put64(f, 0x3008, 0x7003);
    set_mode(f, PGM_MODE_PAE, 0, 0, 0, 0x1000, 0);
    struct pgm_walk w = walk(f, 0x1000, 0);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_true(w.gpa == 0x7000);
    assert_int_equal(w.top_level, 3);
    assert_true(w.entry[3] == 0x2001);
    assert_true(get64(f, 0x1000) == 0x2001); /* PDPTEs get no A bit */
    assert_true(get64(f, 0x2000) == 0x3023);

    /* PDPTEs are latched: a write to the PDPT is seen only after a CR3 load */
    put64(f, 0x1000, 0);
    expect_ok(f, 0x1000, 0, 0x7000, 12);
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0x1000), 0);
    expect_pf(f, 0x1000, W, 0x2);
    w = walk(f, 0x1000, W);
    assert_int_equal(w.last_level, 3);

    /* a 32-byte aligned PDPT elsewhere in the page: CR3 bits 11:5 count */
    put64(f, 0x1060, 0x2001);
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0x1060), 0);
    expect_ok(f, 0x1000, 0, 0x7000, 12);
    /* PAE reserves bits 62:MAXPHYADDR, unlike IA-32e */
    put64(f, 0x3008, 0x7003 | 1ull << 52);
    expect_pf(f, 0x1000, 0, 0x9);
    /* 2 MiB pages; XD with NXE */
    put64(f, 0x2008, 0x600083 | 1ull << 63);
    set_mode(f, PGM_MODE_PAE, 0, 0, PGM_EFER_NXE, 0x1060, 0);
    expect_ok(f, 0x212345, 0, 0x612345, 21);
    expect_pf(f, 0x212345, X, 0x11);
    set_mode(f, PGM_MODE_PAE, 0, 0, 0, 0x1060, 0);
    expect_pf(f, 0x212345, 0, 0x9); /* bit 63 reserved without NXE */
}

/* ---- hostile tables ---- */

static void
test_self_reference_and_loops(void **state)
{
    struct fixture *f = *state;
    /* PML4E 0 points at the PML4 itself: every level reads the same entry */
    put64(f, 0x1000, 0x1003);
    set_mode(f, PGM_MODE_AMD64, 0, 0, 0, 0x1000, 0);
    expect_ok(f, 0x234, W, 0x1234, 12);
    assert_true(get64(f, 0x1000) == 0x1063); /* A from the upper uses, D from the leaf */
    /* two tables pointing at each other: the walk is bounded by the level count */
    put64(f, 0x2000, 0x3003);
    put64(f, 0x3000, 0x2003);
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0x2000), 0);
    /* PML4 0x2000 -> PDPT 0x3000 -> PD 0x2000 -> PT 0x3000, whose entry 0 maps 0x2000 */
    expect_ok(f, 0x0, 0, 0x2000, 12);
}

static void
test_tables_outside_ram(void **state)
{
    struct fixture *f = *state;
    set_mode(f, PGM_MODE_AMD64, 0, 0, 0, 0x8000000, 0); /* 128 MiB: unassigned */
    /* all-ones PML4E: P=1 with PS (reserved at level 4) */
    struct pgm_walk w = walk(f, 0x1000, 0);
    assert_int_equal(w.status, PGM_WALK_PAGE_FAULT);
    assert_int_equal(w.error_code, 0x9);
    assert_true(w.flags & PGM_WALK_F_NONRAM_TABLE);
    /* MMIO reads the same way and nothing reaches a device */
    assert_int_equal(pgm_phys_add_mmio(f->vm, 0x9000000, 0x1000), 0);
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0x9000000), 0);
    w = walk(f, 0x1000, 0);
    assert_int_equal(w.error_code, 0x9);
    assert_true(w.flags & PGM_WALK_F_NONRAM_TABLE);
    /* RAM never written is zero: not present */
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0x100000), 0);
    expect_pf(f, 0x1000, 0, 0x0);
    /* a page table in ROM: the walk succeeds, the A bit cannot be written */
    uint64_t rom_pt[512] = { 0 };
    rom_pt[1] = 0x5003;
    assert_int_equal(pgm_phys_add_rom(f->vm, 0xa000000, 0x1000, rom_pt, sizeof(rom_pt)), 0);
    put64(f, 0x1000, 0x2003);
    put64(f, 0x2000, 0x3003);
    put64(f, 0x3000, 0xa000003);
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0x1000), 0);
    w = walk(f, 0x1000, W);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_true(w.gpa == 0x5000);
    assert_true(w.flags & PGM_WALK_F_ROM_TABLE);
    assert_true(get64(f, 0xa000008) == 0x5003);
    assert_true(get64(f, 0x3000) == 0xa000023);
    /* the leaf page itself may be anywhere: translation does not read it */
    put64(f, 0x3000, 0x4003);
    put64(f, 0x4008, 0xfff00000003ull);
    expect_ok(f, 0x1000, 0, 0xfff00000000ull, 12);
}

static void
test_real_and_prot(void **state)
{
    struct fixture *f = *state;
    struct pgm_cpu_state s = { 0 };
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    expect_ok(f, 0xffff0, X, 0xffff0, 12);
    s.cr0 = PGM_CR0_PE;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    expect_ok(f, 0x1fedcba98ull, W | U, 0xfedcba98, 12);
}

int
main(void)
{
    /* Tests with a fixture run on block-backed and on page-by-page RAM. */
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown), \
              cmocka_unit_test_setup_teardown(fn, fixture_setup_paged, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_amd64_basic_and_ad),
        T(test_amd64_faults_write_nothing),
        T(test_amd64_reserved_bits),
        cmocka_unit_test(test_amd64_reserved_maxphyaddr),
        T(test_amd64_large_pages),
        T(test_amd64_wp_smep_smap),
        T(test_amd64_pkeys),
        T(test_amd64_attributes),
        T(test_canonical),
        T(test_la57),
        T(test_32bit),
        T(test_32bit_4m_pse36),
        cmocka_unit_test(test_32bit_pse36_policies),
        T(test_pae),
        T(test_self_reference_and_loops),
        T(test_tables_outside_ram),
        T(test_real_and_prot),
    };
#undef T
    return cmocka_run_group_tests_name("walk", tests, NULL, NULL);
}
