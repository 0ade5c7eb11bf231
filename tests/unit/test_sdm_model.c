/* SPDX-License-Identifier: MIT */
/*
 * Self-tests of the SDM reference model (tests/model/sdm_model.c). Every
 * expected value here was computed by hand from the Intel SDM vol. 3A ch. 4;
 * none needs libpgm. If one of these fails, the model is wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sdm_model.h"

#define RAM_SIZE 0x100000u /* 1 MiB of guest RAM at GPA 0 */

static uint8_t ram[RAM_SIZE];
static struct sdm_mem mem = {.bytes = ram, .size = RAM_SIZE};

/* Entry bits spelled out, so expected values below read like the SDM tables. */
#define P   0x1ull
#define RW  0x2ull
#define US  0x4ull
#define A   0x20ull
#define D   0x40ull
#define PS  0x80ull
#define G   0x100ull
#define XD  (1ull << 63)

#define EC_P    0x1u
#define EC_W    0x2u
#define EC_U    0x4u
#define EC_RSVD 0x8u
#define EC_ID   0x10u
#define EC_PK   0x20u

static void w64(uint64_t gpa, uint64_t v)
{
    sdm_mem_write(&mem, gpa, v, 8);
}

static void w32(uint64_t gpa, uint64_t v)
{
    sdm_mem_write(&mem, gpa, v, 4);
}

static uint64_t r64(uint64_t gpa)
{
    return sdm_mem_read(&mem, gpa, 8);
}

static uint64_t r32(uint64_t gpa)
{
    return sdm_mem_read(&mem, gpa, 4);
}

static int reset(void **state)
{
    (void)state;
    memset(ram, 0, sizeof(ram));
    return 0;
}

static struct sdm_cpu cpu_of(enum sdm_mode mode)
{
    struct sdm_cpu c;
    memset(&c, 0, sizeof(c));
    c.mode = mode;
    c.cr3 = 0x1000;
    c.cr0_wp = true;
    c.efer_nxe = true;
    c.maxphyaddr = 52;
    c.gbpages = true;
    c.pse36 = true;
    return c;
}

static struct sdm_access acc_of(enum sdm_priv priv, enum sdm_kind kind)
{
    struct sdm_access a = {kind, priv, false};
    return a;
}

static struct sdm_result run(const struct sdm_cpu *c, uint64_t la, enum sdm_priv priv,
                             enum sdm_kind kind)
{
    struct sdm_access a = acc_of(priv, kind);
    struct sdm_result r;
    sdm_translate(&mem, c, la, &a, &r);
    return r;
}

/* Snapshot of RAM, to prove that a faulting access wrote nothing. */
static uint8_t before[RAM_SIZE];

static void snapshot(void)
{
    memcpy(before, ram, RAM_SIZE);
}

static void assert_unchanged(void)
{
    assert_memory_equal(before, ram, RAM_SIZE);
}

static void assert_pf(const struct sdm_result *r, uint32_t ec)
{
    assert_int_equal(r->outcome, SDM_PF);
    assert_int_equal(r->error_code, ec);
}

/*
 * 4-level layout used below:
 *   la = PML4 1, PDPT 2, PD 3, PT 4, offset 0x567
 *      = (1<<39)|(2<<30)|(3<<21)|(4<<12)|0x567 = 0x8080604567
 *   CR3 0x1000: PML4E at 0x1008 -> PDPT 0x2000: PDPTE at 0x2010 -> PD 0x3000:
 *   PDE at 0x3018 -> PT 0x4000: PTE at 0x4020 -> page 0x5000.
 */
#define LA4 0x8080604567ull

static void build4(uint64_t pml4e, uint64_t pdpte, uint64_t pde, uint64_t pte)
{
    w64(0x1008, pml4e);
    w64(0x2010, pdpte);
    w64(0x3018, pde);
    w64(0x4020, pte);
}

static void test_4level_basic(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_4LEVEL);
    build4(0x2007, 0x3007, 0x4007, 0x5007);

    struct sdm_result r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x5567);
    assert_int_equal(r.page_shift, 12);
    assert_int_equal(r.top_level, 4);
    assert_int_equal(r.last_level, 1);
    assert_int_equal(r.rights, SDM_RIGHT_WRITE | SDM_RIGHT_USER | SDM_RIGHT_EXEC);
    /* A everywhere, no D on a read (4.8). */
    assert_int_equal(r64(0x1008), 0x2027);
    assert_int_equal(r64(0x2010), 0x3027);
    assert_int_equal(r64(0x3018), 0x4027);
    assert_int_equal(r64(0x4020), 0x5027);
    assert_int_equal(r.entry[1], 0x5027);
    assert_int_equal(r.entry_gpa[4], 0x1008);

    /* A write sets D in the leaf only. */
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r64(0x3018), 0x4027);
    assert_int_equal(r64(0x4020), 0x5067);

    /* Non-canonical: bit 47 = 1 with bits 63:48 = 0 -> #GP, no walk. */
    snapshot();
    r = run(&c, 0x0000800000000000ull, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.outcome, SDM_GP);
    r = run(&c, 0xffff7fffffffffffull, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.outcome, SDM_GP);
    assert_unchanged();
    /* Canonical upper half walks (PML4 index 511 is empty -> not present). */
    r = run(&c, 0xffff800000000000ull, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, 0);
    assert_int_equal(r.last_level, 4);
    assert_int_equal(r.entry_gpa[4], 0x1000 + 8 * 256);
}

static void test_4level_faults(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_4LEVEL);

    /* Read-only PTE: user write -> P|W|U (4.7); supervisor write with WP=1 ->
     * P|W; with WP=0 it succeeds and sets D. */
    build4(0x2007, 0x3007, 0x4007, 0x5005);
    snapshot();
    struct sdm_result r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W | EC_U);
    assert_int_equal(r.last_level, 1);
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W);
    assert_unchanged();
    c.cr0_wp = false;
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r64(0x4020), 0x5065);
    /* ... but a user write still faults with WP=0. */
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W | EC_U);
    c.cr0_wp = true;

    /* R/W=0 in the PDPTE alone also makes the page read-only (AND of levels). */
    build4(0x2007, 0x3005, 0x4007, 0x5007);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W | EC_U);
    assert_int_equal(r.rights, SDM_RIGHT_USER | SDM_RIGHT_EXEC);

    /* U/S=0 in the PML4E: user read faults P|U. */
    build4(0x2003, 0x3007, 0x4007, 0x5007);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_pf(&r, EC_P | EC_U);

    /* PDE not present: error code 0 for a supervisor read, W|U for a user
     * write; no P, and nothing written. */
    memset(ram, 0, RAM_SIZE);
    build4(0x2007, 0x3007, 0x4006, 0x5007);
    snapshot();
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, 0);
    assert_int_equal(r.last_level, 2);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_W | EC_U);
    assert_unchanged();

    /* Reserved bits: bit 51 with MAXPHYADDR 48 in the PML4E -> P|RSVD at
     * level 4 even though the PDE below is not present (first level wins). */
    build4(0x2007 | (1ull << 51), 0x3007, 0x4006, 0x5007);
    c.maxphyaddr = 48;
    snapshot();
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_RSVD);
    assert_int_equal(r.last_level, 4);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_P | EC_RSVD | EC_W | EC_U);
    assert_unchanged();
    /* With MAXPHYADDR 52 bit 51 is an address bit: PDPT at 0x8000000002000,
     * outside RAM, which reads all-ones: PDPTE with PS=1 and bits 29:13 set. */
    c.maxphyaddr = 52;
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_RSVD);
    assert_int_equal(r.last_level, 3);
    assert_int_equal(r.entry_gpa[3], 0x8000000002010ull);
    assert_int_equal(r.entry[3], ~0ull);

    /* Bit 63 with EFER.NXE=0 is reserved, in a non-leaf entry too. */
    build4(0x2007, 0x3007 | XD, 0x4007, 0x5007);
    c.efer_nxe = false;
    r = run(&c, LA4, SDM_PRIV_USER, SDM_FETCH);
    assert_pf(&r, EC_P | EC_RSVD | EC_U); /* no I/D: NXE=0 and SMEP=0 */
    assert_int_equal(r.last_level, 3);
    c.cr4_smep = true;
    r = run(&c, LA4, SDM_PRIV_USER, SDM_FETCH);
    assert_pf(&r, EC_P | EC_RSVD | EC_U | EC_ID);
    c.cr4_smep = false;
    /* With NXE=1 it is XD: reads work, fetches fault P|U|I/D. */
    c.efer_nxe = true;
    r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.rights, SDM_RIGHT_WRITE | SDM_RIGHT_USER);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_FETCH);
    assert_pf(&r, EC_P | EC_U | EC_ID);

    /* PS in a PML4E is reserved. */
    build4(0x2087, 0x3007, 0x4007, 0x5007);
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_RSVD);
    assert_int_equal(r.last_level, 4);

    /* Bits 58:52 and 62:59 (PK, when not a leaf or without PKE) are ignored. */
    build4(0x2007 | (0x7full << 52) | (0xfull << 59), 0x3007, 0x4007, 0x5007 | (0x7full << 52));
    r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x5567);
}

static void test_4level_large(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_4LEVEL);

    /* 2 MiB page: PDE 0x200000|PS|P|RW|US; la bits 20:0 = 0x4567. */
    build4(0x2007, 0x3007, 0x200087, 0);
    struct sdm_result r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x204567);
    assert_int_equal(r.page_shift, 21);
    assert_int_equal(r.last_level, 2);
    assert_int_equal(r64(0x3018), 0x2000e7); /* A|D on the leaf PDE */
    assert_int_equal(r64(0x2010), 0x3027);   /* A only above */
    /* PAT (bit 12) is an attribute, bit 13 is reserved. */
    build4(0x2007, 0x3007, 0x201087, 0);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x204567);
    build4(0x2007, 0x3007, 0x202087, 0);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_pf(&r, EC_P | EC_U | EC_RSVD);

    /* 1 GiB page: PDPTE 0x40000000|PS. la bits 29:0 = 0x604567. */
    build4(0x2007, 0x40000087, 0, 0);
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x40604567);
    assert_int_equal(r.page_shift, 30);
    assert_int_equal(r.last_level, 3);
    /* Bit 29 (misaligned) is reserved in a 1 GiB page. */
    build4(0x2007, 0x60000087, 0, 0);
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_RSVD);
    /* Without CPUID Page1GB, PS in a PDPTE is itself reserved. */
    c.gbpages = false;
    build4(0x2007, 0x40000087, 0, 0);
    snapshot();
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_RSVD);
    assert_int_equal(r.last_level, 3);
    assert_unchanged();
}

static void test_smep_smap(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_4LEVEL);
    build4(0x2007, 0x3007, 0x4007, 0x5007); /* user page, writable */
    struct sdm_result r;
    struct sdm_access a;

    /* SMEP: supervisor fetch from a user page -> P|I/D, even with NXE=0. */
    c.cr4_smep = true;
    c.efer_nxe = false;
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_FETCH);
    assert_pf(&r, EC_P | EC_ID);
    /* ... whatever WP says. */
    c.cr0_wp = false;
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_FETCH);
    assert_pf(&r, EC_P | EC_ID);
    /* User fetch is fine; a supervisor page is fine for a supervisor fetch. */
    r = run(&c, LA4, SDM_PRIV_USER, SDM_FETCH);
    assert_int_equal(r.outcome, SDM_OK);
    c.cr4_smep = false;
    c.cr0_wp = true;

    /* SMAP: supervisor data access to a user page. */
    c.cr4_smap = true;
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P);
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W);
    /* RFLAGS.AC=1 lets explicit accesses through ... */
    a = (struct sdm_access){SDM_WRITE, SDM_PRIV_SUPERVISOR, true};
    sdm_translate(&mem, &c, LA4, &a, &r);
    assert_int_equal(r.outcome, SDM_OK);
    /* ... but not implicit ones (U=0 in the error code: supervisor access). */
    a = (struct sdm_access){SDM_READ, SDM_PRIV_IMPLICIT, true};
    sdm_translate(&mem, &c, LA4, &a, &r);
    assert_pf(&r, EC_P);
    /* Fetches are exempt from SMAP; user accesses too. */
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_FETCH);
    assert_int_equal(r.outcome, SDM_OK);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    /* WP=0 does not relax SMAP. */
    c.cr0_wp = false;
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W);
    /* Supervisor page: SMAP is irrelevant; implicit access fine. */
    build4(0x2007, 0x3007, 0x4007, 0x5003);
    a = (struct sdm_access){SDM_WRITE, SDM_PRIV_IMPLICIT, false};
    sdm_translate(&mem, &c, LA4, &a, &r);
    assert_int_equal(r.outcome, SDM_OK);
}

static void test_pku(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_4LEVEL);
    uint64_t key1 = 1ull << 59;
    build4(0x2007 | (2ull << 59), 0x3007, 0x4007, 0x5007 | key1);
    c.cr4_pke = true;
    struct sdm_result r;

    /* PKRU AD1 (bit 2): user read -> P|U|PK. */
    c.pkru = 1u << 2;
    r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_pf(&r, EC_P | EC_U | EC_PK);
    assert_int_equal(r.pkey, 1);
    /* Supervisor read of the user page: also blocked (any CPL). */
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_PK);
    /* Fetches ignore keys. */
    r = run(&c, LA4, SDM_PRIV_USER, SDM_FETCH);
    assert_int_equal(r.outcome, SDM_OK);
    /* The key of the non-leaf PML4E (2) is ignored: PKRU AD2 blocks nothing. */
    c.pkru = 1u << 4;
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);

    /* PKRU WD1 (bit 3): reads fine, user writes -> P|W|U|PK. */
    c.pkru = 1u << 3;
    r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W | EC_U | EC_PK);
    /* Supervisor write: blocked with WP=1, allowed with WP=0. */
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W | EC_PK);
    c.cr0_wp = false;
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    c.cr0_wp = true;
    /* PK is reported alongside another violation (read-only page). */
    build4(0x2007, 0x3007, 0x4007, 0x5005 | key1);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W | EC_U | EC_PK);
    /* Supervisor page: keys do not apply (PKS is not modelled). */
    build4(0x2007, 0x3007, 0x4007, 0x5003 | key1);
    c.pkru = 0xffffffffu;
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    /* Without CR4.PKE nothing applies and the key reads as 0. */
    build4(0x2007, 0x3007, 0x4007, 0x5007 | key1);
    c.cr4_pke = false;
    r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.pkey, 0);
    /* Not-present and reserved faults never carry PK. */
    c.cr4_pke = true;
    build4(0x2007, 0x3007, 0x4007, 0x5006 | key1);
    r = run(&c, LA4, SDM_PRIV_USER, SDM_READ);
    assert_pf(&r, EC_U);
}

static void test_5level(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_5LEVEL);
    /* la = PML5 1 | LA4: PML5E at 0x1008 -> PML4 0x6000: PML4E at 0x6008 ->
     * PDPT 0x2000 ... */
    uint64_t la = (1ull << 48) | LA4;
    w64(0x1008, 0x6007);
    w64(0x6008, 0x2007);
    w64(0x2010, 0x3007);
    w64(0x3018, 0x4007);
    w64(0x4020, 0x5007);
    struct sdm_result r = run(&c, la, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x5567);
    assert_int_equal(r.top_level, 5);
    assert_int_equal(r64(0x1008), 0x6027);
    assert_int_equal(r64(0x6008), 0x2027);
    assert_int_equal(r64(0x4020), 0x5067);
    /* 0x0000800000000000 is canonical with 57 bits (walks) but not 48. */
    r = run(&c, 0x0000800000000000ull, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, 0);
    r = run(&c, 0x0100000000000000ull, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.outcome, SDM_GP);
    r = run(&c, 0xff00000000000000ull, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.outcome, SDM_PF);
    /* PS in a PML5E is reserved. */
    w64(0x1008, 0x6087);
    r = run(&c, la, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_RSVD);
    assert_int_equal(r.last_level, 5);
}

/*
 * 32-bit layout: la = PD 3, PT 5, offset 0xabc = 0x00c05abc. CR3 0x1000:
 * PDE at 0x100c -> PT 0x2000: PTE at 0x2014 -> page 0x7000.
 */
#define LA32 0x00c05abcull

static void test_32bit(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_32BIT);
    w32(0x100c, 0x2007);
    w32(0x2014, 0x7007);

    struct sdm_result r = run(&c, LA32, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x7abc);
    assert_int_equal(r.top_level, 2);
    assert_int_equal(r32(0x100c), 0x2027);
    assert_int_equal(r32(0x2014), 0x7067);
    /* Entries are 4 bytes: the neighbours were not touched. */
    assert_int_equal(r32(0x1010), 0);
    /* Upper 32 bits of the linear address are dropped outside IA-32e. */
    r = run(&c, 0xdead000000000000ull | LA32, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x7abc);

    /* No reserved bits in PTEs or non-PS PDEs: every bit set still walks. */
    w32(0x100c, 0x2000 | 0xfff);
    w32(0x2014, 0x7000 | 0xfff);
    r = run(&c, LA32, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x7abc);
    assert_int_equal(r.global, true);
    /* ... and PS in the PDE is ignored without CR4.PSE. */
    w32(0x100c, 0x2087);
    r = run(&c, LA32, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.page_shift, 12);
    assert_int_equal(r.gpa, 0x7abc);

    /* No XD in 32-bit paging; I/D is reported only with SMEP (CR4.PAE=0). */
    w32(0x2014, 0x7006);
    r = run(&c, LA32, SDM_PRIV_USER, SDM_FETCH);
    assert_pf(&r, EC_U);
    c.cr4_smep = true;
    r = run(&c, LA32, SDM_PRIV_USER, SDM_FETCH);
    assert_pf(&r, EC_U | EC_ID);
}

static void test_32bit_pse(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_32BIT);
    c.cr4_pse = true;
    struct sdm_result r;

    /* 4 MiB page at 0x00400000; la bits 21:0 = 0x005abc. */
    w32(0x100c, 0x00400087);
    r = run(&c, LA32, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x00405abc);
    assert_int_equal(r.page_shift, 22);
    assert_int_equal(r.last_level, 2);
    assert_int_equal(r32(0x100c), 0x004000e7);

    /* PSE-36, MAXPHYADDR 52 -> M = 40: PDE bits 20:13 are PA 39:32, bit 21
     * is reserved. Bit 13 -> PA 32; bit 20 -> PA 39; bit 12 is PAT. */
    w32(0x100c, 0x00400087 | (1u << 13) | (1u << 20) | (1u << 12));
    r = run(&c, LA32, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x8100405abcull);
    w32(0x100c, 0x00400087 | (1u << 21));
    r = run(&c, LA32, SDM_PRIV_USER, SDM_READ);
    assert_pf(&r, EC_P | EC_U | EC_RSVD);

    /* MAXPHYADDR 36 -> M = 36: PDE bits 16:13 are PA 35:32, 21:17 reserved. */
    c.maxphyaddr = 36;
    w32(0x100c, 0x00400087 | (1u << 16));
    r = run(&c, LA32, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x800405abcull);
    w32(0x100c, 0x00400087 | (1u << 17));
    r = run(&c, LA32, SDM_PRIV_USER, SDM_READ);
    assert_pf(&r, EC_P | EC_U | EC_RSVD);

    /* Without PSE-36 (M = 32): bits 21:13 all reserved. */
    c.maxphyaddr = 52;
    c.pse36 = false;
    w32(0x100c, 0x00400087 | (1u << 13));
    r = run(&c, LA32, SDM_PRIV_USER, SDM_READ);
    assert_pf(&r, EC_P | EC_U | EC_RSVD);
    w32(0x100c, 0x00400087 | (1u << 12));
    r = run(&c, LA32, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x00405abc);

    /* A not-present PDE with "reserved" bits is just not present. */
    w32(0x100c, 0x00400086 | (1u << 21));
    r = run(&c, LA32, SDM_PRIV_SUPERVISOR, SDM_WRITE);
    assert_pf(&r, EC_W);
}

static void test_32bit_outside_ram(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_32BIT);
    /* CR3 beyond RAM: the PDE reads 0xffffffff. Without PSE it points at the
     * page table 0xfffff000 (also all-ones): a 4 KiB page at 0xfffff000, user
     * writable. The A/D writes are dropped. */
    c.cr3 = 0xfff00000;
    snapshot();
    struct sdm_result r = run(&c, LA32, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0xfffffabcull);
    assert_int_equal(r.entry_gpa[1], 0xfffff000ull + 5 * 4);
    assert_unchanged();
    /* With PSE + PSE-36 (M=40) the all-ones PDE has bit 21 set: reserved. */
    c.cr4_pse = true;
    r = run(&c, LA32, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W | EC_U | EC_RSVD);
}

/*
 * PAE layout: CR3 0x1020 (32-byte aligned PDPT inside page 0x1000).
 * la = PDPT 2, PD 3, PT 5, offset 0xabc = (2<<30)|(3<<21)|(5<<12)|0xabc
 *    = 0x80605abc. PDPTE 2 at 0x1030 -> PD 0x3000: PDE at 0x3018 -> PT
 * 0x4000: PTE at 0x4028 -> page 0x5000.
 */
#define LAPAE 0x80605abcull

static void test_pae(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_PAE);
    c.cr3 = 0x1020;
    w64(0x1030, 0x3001);
    w64(0x3018, 0x4007);
    w64(0x4028, 0x5007);
    assert_true(sdm_pae_load_pdptes(&mem, c.cr3, c.maxphyaddr, c.pdpte));
    assert_int_equal(c.pdpte[2], 0x3001);
    assert_int_equal(c.pdpte[0], 0);

    struct sdm_result r = run(&c, LAPAE, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x5abc);
    assert_int_equal(r.top_level, 3);
    assert_int_equal(r.entry_gpa[3], 0x1030);
    /* The PDPTE has no A bit; the PDE and PTE get A, the PTE D. */
    assert_int_equal(r64(0x1030), 0x3001);
    assert_int_equal(r64(0x3018), 0x4027);
    assert_int_equal(r64(0x4028), 0x5067);

    /* The walk uses the latched PDPTE: clearing it in memory changes nothing
     * until the next load. */
    w64(0x1030, 0);
    r = run(&c, LAPAE, SDM_PRIV_USER, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_true(sdm_pae_load_pdptes(&mem, c.cr3, c.maxphyaddr, c.pdpte));
    r = run(&c, LAPAE, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_W | EC_U);
    assert_int_equal(r.last_level, 3);

    /* PDPTE reserved bits -> #GP at load: 63, 62:M, 8:5, 2:1; only if P=1. */
    static const uint64_t bad[] = {XD, 1ull << 52, 1ull << 62, 1ull << 8, 1ull << 5,
                                   RW, US};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t keep[4] = {1, 2, 3, 4};
        w64(0x1030, 0x3001 | bad[i]);
        assert_false(sdm_pae_load_pdptes(&mem, c.cr3, c.maxphyaddr, keep));
        assert_int_equal(keep[0], 1); /* unchanged on #GP */
        w64(0x1030, 0x3000 | bad[i]);
        assert_true(sdm_pae_load_pdptes(&mem, c.cr3, c.maxphyaddr, keep));
    }
    /* Bits 4:3 (PWT/PCD), 11:9 and 51:M only with a lower MAXPHYADDR. */
    w64(0x1030, 0x3019 | 0xe00);
    assert_true(sdm_pae_load_pdptes(&mem, c.cr3, c.maxphyaddr, c.pdpte));
    w64(0x1030, 0x3001 | (1ull << 40));
    assert_true(sdm_pae_load_pdptes(&mem, c.cr3, 52, c.pdpte));
    assert_false(sdm_pae_load_pdptes(&mem, c.cr3, 40, c.pdpte));

    /* PDE/PTE: bits 62:M reserved (PAE has no ignored high bits), bit 63
     * without NXE, 2 MiB PDE bits 20:13. */
    w64(0x1030, 0x3001);
    assert_true(sdm_pae_load_pdptes(&mem, c.cr3, c.maxphyaddr, c.pdpte));
    w64(0x4028, 0x5007 | (1ull << 59));
    r = run(&c, LAPAE, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_RSVD);
    assert_int_equal(r.last_level, 1);
    w64(0x4028, 0x5007 | XD);
    r = run(&c, LAPAE, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    r = run(&c, LAPAE, SDM_PRIV_SUPERVISOR, SDM_FETCH);
    assert_pf(&r, EC_P | EC_ID);
    c.efer_nxe = false;
    r = run(&c, LAPAE, SDM_PRIV_SUPERVISOR, SDM_FETCH);
    assert_pf(&r, EC_P | EC_RSVD);
    c.efer_nxe = true;
    /* 2 MiB page at 0x200000 (la bits 20:0 = 0x005abc). */
    w64(0x3018, 0x200087);
    r = run(&c, LAPAE, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x205abc);
    assert_int_equal(r.page_shift, 21);
    w64(0x3018, 0x200087 | (1u << 20));
    r = run(&c, LAPAE, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_pf(&r, EC_P | EC_RSVD);
    /* Keys do not exist in PAE paging: CR4.PKE changes nothing. */
    w64(0x3018, 0x4007);
    w64(0x4028, 0x5007);
    c.cr4_pke = true;
    c.pkru = 0xffffffffu;
    r = run(&c, LAPAE, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.pkey, 0);
}

static void test_cr3_long(void **state)
{
    (void)state;
    assert_true(sdm_cr3_valid_long(0x1000, 36));
    assert_true(sdm_cr3_valid_long(0xffffffff000ull, 44));
    assert_false(sdm_cr3_valid_long(1ull << 36, 36));
    assert_false(sdm_cr3_valid_long(1ull << 63, 52));
    assert_true(sdm_cr3_valid_long((1ull << 52) - 0x1000, 52));
}

static void test_recursive(void **state)
{
    (void)state;
    /* PML4E 0 points at the PML4 itself (a recursive slot): la 0 walks
     * PML4E[0] four times and ends on page 0x1000 (the PML4). All four uses
     * are the same entry; on a write it collects A and D. */
    struct sdm_cpu c = cpu_of(SDM_MODE_4LEVEL);
    w64(0x1000, 0x1007);
    struct sdm_result r = run(&c, 0x123, SDM_PRIV_USER, SDM_WRITE);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.gpa, 0x1123);
    assert_int_equal(r64(0x1000), 0x1067);
    /* As a large page at PD level: PS set makes the PDE a 2 MiB leaf, but the
     * same entry as PML4E has PS reserved. */
    w64(0x1000, 0x1087);
    r = run(&c, 0x123, SDM_PRIV_USER, SDM_WRITE);
    assert_pf(&r, EC_P | EC_W | EC_U | EC_RSVD);
    assert_int_equal(r.last_level, 4);
}

static void test_pat_index(void **state)
{
    (void)state;
    struct sdm_cpu c = cpu_of(SDM_MODE_4LEVEL);
    /* 4 KiB: PAT is bit 7 of the PTE; PCD bit 4, PWT bit 3. */
    build4(0x2007 | 0x18, 0x3007, 0x4007, 0x5007 | 0x80 | 0x08);
    struct sdm_result r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r.pat_index, 5); /* PAT=1 PCD=0 PWT=1; PML4E bits ignored */
    /* 2 MiB: PAT is bit 12. */
    build4(0x2007, 0x3007, 0x201087 | 0x10, 0);
    r = run(&c, LA4, SDM_PRIV_SUPERVISOR, SDM_READ);
    assert_int_equal(r.pat_index, 6);
}

static void test_rom_window(void **state)
{
    (void)state;
    /* A table page in the read-only window: A/D updates there are dropped,
     * the others happen. */
    struct sdm_cpu c = cpu_of(SDM_MODE_4LEVEL);
    build4(0x2007, 0x3007, 0x4007, 0x5007);
    mem.ro_base = 0x3000;
    mem.ro_size = 0x1000;
    struct sdm_result r = run(&c, LA4, SDM_PRIV_USER, SDM_WRITE);
    mem.ro_size = 0;
    assert_int_equal(r.outcome, SDM_OK);
    assert_int_equal(r64(0x2010), 0x3027);
    assert_int_equal(r64(0x3018), 0x4007);
    assert_int_equal(r64(0x4020), 0x5067);
}

static void test_mem_accessors(void **state)
{
    (void)state;
    w64(RAM_SIZE - 4, 0x1122334455667788ull);
    /* The half above RAM reads all-ones and the write to it was dropped. */
    assert_int_equal(r64(RAM_SIZE - 4), 0xffffffff55667788ull);
    assert_int_equal(r32(RAM_SIZE), 0xffffffffu);
    assert_int_equal(sdm_mem_read(&mem, ~0ull - 3, 8), ~0ull); /* no wrap to 0 */
    assert_int_equal(sdm_high_rsvd_mask64(52), 0);
    assert_int_equal(sdm_high_rsvd_mask64(40), 0x000fff0000000000ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_4level_basic, reset),
        cmocka_unit_test_setup(test_4level_faults, reset),
        cmocka_unit_test_setup(test_4level_large, reset),
        cmocka_unit_test_setup(test_smep_smap, reset),
        cmocka_unit_test_setup(test_pku, reset),
        cmocka_unit_test_setup(test_5level, reset),
        cmocka_unit_test_setup(test_32bit, reset),
        cmocka_unit_test_setup(test_32bit_pse, reset),
        cmocka_unit_test_setup(test_32bit_outside_ram, reset),
        cmocka_unit_test_setup(test_pae, reset),
        cmocka_unit_test_setup(test_cr3_long, reset),
        cmocka_unit_test_setup(test_recursive, reset),
        cmocka_unit_test_setup(test_pat_index, reset),
        cmocka_unit_test_setup(test_rom_window, reset),
        cmocka_unit_test_setup(test_mem_accessors, reset),
    };
    return cmocka_run_group_tests_name("sdm_model", tests, NULL, NULL);
}
