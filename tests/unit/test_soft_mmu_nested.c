/* SPDX-License-Identifier: MIT */
/*
 * The soft MMU's two-dimensional walk (EPT / NPT). Guest tables, EPT and
 * NPT tables are written by hand, raw bits, into one soft-backend RAM block;
 * every expected value below is derived from the SDM / APM by hand (the
 * derivation is next to it), never read back from the code under test.
 *
 * Host layout (HPA = B + offset, B the block's 1 GiB aligned base):
 *   B + 0x0000 .. 0x3000   nested PML4, PDPT, PD, PT (4-level)
 *   B + 0x4000             nested PML5 (5-level: entry 0 -> the PML4)
 *   B + 0x8000 .. 0xb000   a second nested hierarchy (root tagging)
 *   B + 16 MiB + g         guest-physical page g (4 KiB EPT / NPT PTEs)
 * Guest layout (GPA): PML5 0x6000, PML4 0x1000, PDPT 0x2000, PD 0x3000,
 * PT 0x4000, data 0x5000. The linear address VA has indices 0 / 3 / 5 / 7 /
 * 9 and offset 0x123, so the guest entries read are at GPAs 0x6000 (PML5E),
 * 0x1018, 0x2028, 0x3038, 0x4048, and the final GPA is 0x5123.
 */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define BLK_PAGES (1ull << 18) /* 1 GiB of address space, committed lazily */
#define RAM_OFF   0x1000000ull

/* Linear address with PML5 / PML4 / PDPT / PD / PT indices 0 / 3 / 5 / 7 / 9. */
#define VA ((3ull << 39) | (5ull << 30) | (7ull << 21) | (9ull << 12) | 0x123)

/* EPT: table entry R W X (bits 2:0); leaf R W X + memory type WB (6 << 3). */
#define EPT_T 0x7ull
#define EPT_L 0x37ull
/* NPT (long-mode format): P RW US. */
#define NPT_T 0x7ull
#define NPT_L 0x7ull
/* Guest entries: P RW US, A and D clear. */
#define G_T 0x7ull

struct h {
    struct pgm_soft_backend *sb;
    const struct pgm_backend_ops *ops;
    pgm_hpa_t B;
    uint8_t *P;
    struct pgm_soft_cpu cpu;
};

static pgm_hpa_t
nt(const struct h *h, unsigned k)
{
    return h->B + 0x1000ull * k;
}

static uint64_t *
host64(struct h *h, pgm_hpa_t hpa)
{
    return (uint64_t *)(void *)(h->P + (hpa - h->B));
}

static pgm_hpa_t
gpa_hpa(const struct h *h, pgm_gpa_t g)
{
    return h->B + RAM_OFF + g;
}

static uint64_t *
guest64(struct h *h, pgm_gpa_t g)
{
    return host64(h, gpa_hpa(h, g));
}

/* The nested PTE (4 KiB mapping) of guest-physical page @g in the first hierarchy. */
static uint64_t *
npte(struct h *h, pgm_gpa_t g)
{
    return host64(h, nt(h, 3)) + ((g >> 12) & 511);
}

/*
 * Nested tables mapping GPA [0, 2 MiB) with 4 KiB pages to B + 16 MiB + g,
 * in hierarchy @base (page indices base .. base + 3, plus base + 4 for the PML5).
 */
static void
build_nested(struct h *h, unsigned base, bool npt, pgm_hpa_t ram)
{
    uint64_t t = npt ? NPT_T : EPT_T, l = npt ? NPT_L : EPT_L;
    host64(h, nt(h, base + 4))[0] = nt(h, base) | t;
    host64(h, nt(h, base))[0] = nt(h, base + 1) | t;
    host64(h, nt(h, base + 1))[0] = nt(h, base + 2) | t;
    host64(h, nt(h, base + 2))[0] = nt(h, base + 3) | t;
    for (unsigned i = 0; i < 512; i++)
        host64(h, nt(h, base + 3))[i] = (ram + 0x1000ull * i) | l;
}

static void
build_guest(struct h *h)
{
    *guest64(h, 0x6000) = 0x1000 | G_T;         /* PML5E[0] */
    *guest64(h, 0x1000 + 3 * 8) = 0x2000 | G_T; /* PML4E[3] */
    *guest64(h, 0x2000 + 5 * 8) = 0x3000 | G_T; /* PDPTE[5] */
    *guest64(h, 0x3000 + 7 * 8) = 0x4000 | G_T; /* PDE[7] */
    *guest64(h, 0x4000 + 9 * 8) = 0x5000 | G_T; /* PTE[9] */
}

static void
set_cpu(struct h *h)
{
    assert_int_equal(pgm_soft_mmu_set_cpu(h->sb, 0, &h->cpu), 0);
}

/* A backend with one RAM block, 4-level guest tables and 4-level @hw tables. */
static void
h_init(struct h *h, enum pgm_paging_hw hw)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(pgm_soft_backend_create(64, &h->sb), 0);
    h->ops = pgm_soft_backend_ops();
    void *p;
    assert_int_equal(h->ops->alloc_ram_block(h->sb, BLK_PAGES, &h->B, &p), 0);
    h->P = p;
    assert_int_equal(h->B & ((1ull << 30) - 1), 0); /* the 1 GiB leaf test needs it */
    build_nested(h, 0, hw == PGM_PAGING_NPT, h->B + RAM_OFF);
    build_guest(h);
    h->cpu = (struct pgm_soft_cpu){
        .format = PGM_MODE_AMD64, .cr3 = 0x1000, .wp = true, .nxe = true,
        .nested = hw, .nested_root = nt(h, 0), .nested_levels = 4, .nested_nxe = true,
    };
    set_cpu(h);
}

static void
h_free(struct h *h)
{
    h->ops->free_ram_block(h->sb, h->B, h->P, BLK_PAGES);
    pgm_soft_backend_destroy(h->sb);
}

static struct pgm_soft_mmu_result
xl(struct h *h, uint64_t va, uint32_t access)
{
    struct pgm_soft_mmu_result r;
    assert_int_equal(pgm_soft_mmu_translate(h->sb, 0, va, access, &r), 0);
    return r;
}

static void
flush(struct h *h, enum pgm_flush_scope scope, uint64_t addr)
{
    struct pgm_flush_req req = { .scope = scope, .addr = addr, .pcid = 0 };
    h->ops->flush(h->sb, 0, &req);
}

static void
assert_ok(const struct pgm_soft_mmu_result *r, pgm_hpa_t hpa, pgm_gpa_t gpa)
{
    assert_int_equal(r->status, PGM_SOFT_MMU_OK);
    assert_int_equal(r->hpa, hpa);
    assert_int_equal(r->gpa, gpa);
}

/* An EPT violation with the exact qualification, also through the VT-x decoder. */
static void
assert_eptv(const struct pgm_soft_mmu_result *r, pgm_gpa_t gpa, uint64_t qual, bool guest_walk)
{
    assert_int_equal(r->status, PGM_SOFT_MMU_NESTED_FAULT);
    assert_int_equal(r->gpa, gpa);
    assert_int_equal(r->exit_qual, qual);
    assert_int_equal(r->guest_walk, guest_walk);
    assert_int_equal(r->exit_info1, 0);
    struct pgm_vtx_ept_violation d;
    assert_int_equal(pgm_vtx_decode_ept_violation(r->exit_qual, r->gpa, r->gla, false, &d), 0);
    assert_int_equal(d.gla_valid, r->gla_valid);
    assert_int_equal(d.translated, r->gla_valid && !guest_walk);
    struct pgm_vtx_exit_fields f = {
        .exit_reason = PGM_VTX_EXIT_EPT_VIOLATION, .exit_qualification = r->exit_qual,
        .guest_linear_address = r->gla, .guest_physical_address = r->gpa,
    };
    struct pgm_hwvirt_event ev;
    assert_int_equal(pgm_vtx_decode_exit(&f, NULL, &ev), 0);
    assert_int_equal(ev.kind, PGM_HWVIRT_NESTED_FAULT);
    assert_int_equal(ev.u.nested.gpa, gpa);
    assert_int_equal(ev.u.nested.stage, !r->gla_valid ? PGM_HWVIRT_STAGE_UNKNOWN
                                        : guest_walk  ? PGM_HWVIRT_STAGE_GUEST_WALK
                                                      : PGM_HWVIRT_STAGE_FINAL);
}

/* An NPF with the exact EXITINFO1, also through the SVM decoder. */
static void
assert_npf(const struct pgm_soft_mmu_result *r, pgm_gpa_t gpa, uint64_t info1)
{
    assert_int_equal(r->status, PGM_SOFT_MMU_NESTED_FAULT);
    assert_int_equal(r->gpa, gpa);
    assert_int_equal(r->exit_info1, info1);
    assert_int_equal(r->exit_info2, gpa);
    assert_int_equal(r->exit_qual, 0);
    struct pgm_svm_npf d;
    assert_int_equal(pgm_svm_decode_npf(r->exit_info1, r->exit_info2, &d), 0);
    assert_int_equal(d.guest_walk, r->guest_walk);
    assert_int_equal(d.final_translation, !r->guest_walk);
}

/* ---- EPT ------------------------------------------------------------- */

static void
test_ept_translate(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    assert_int_equal(r.page_shift, 12);
    assert_false(r.tlb_hit);
    /* 4 guest entries, each at a GPA needing a 4-entry EPT walk, plus the
     * final GPA's 4-entry walk: 4 + 4 * 4 + 4 = 24. */
    struct pgm_soft_mmu_stats st;
    pgm_soft_mmu_stats(h.sb, 0, &st);
    assert_int_equal(st.nested_refs, 24);
    assert_int_equal(st.nested_walks, 1);
    assert_int_equal(st.nested_faults, 0);
    /* Guest A set at every level (bit 5), D (bit 6) not on a read. */
    assert_int_equal(*guest64(&h, 0x1018), 0x2000 | G_T | 0x20);
    assert_int_equal(*guest64(&h, 0x4048), 0x5000 | G_T | 0x20);
    /* EPT A/D disabled: EPT entries untouched. */
    assert_int_equal(*npte(&h, 0x5000), (h.B + RAM_OFF + 0x5000) | EPT_L);
    /* Cached: a hit; a write walks again to set the guest D. */
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_true(r.tlb_hit);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    r = xl(&h, VA + 8, PGM_ACCESS_WRITE);
    assert_false(r.tlb_hit);
    assert_ok(&r, gpa_hpa(&h, 0x512b), 0x512b);
    assert_int_equal(*guest64(&h, 0x4048), 0x5000 | G_T | 0x60);
    /* Second walk: every GPA page's translation is a cached guest-physical
     * mapping now, so only the 4 guest entries are read. */
    pgm_soft_mmu_stats(h.sb, 0, &st);
    assert_int_equal(st.nested_refs, 24 + 4);
    assert_int_equal(st.gpa_cache_hits, 5);
    /* A non-canonical address is #GP before any walk. */
    r = xl(&h, 1ull << 47, PGM_ACCESS_READ);
    assert_int_equal(r.status, PGM_SOFT_MMU_GP);
    h_free(&h);
}

/* A not-present EPT entry for each guest table page, then for the final page. */
static void
test_ept_violation_each_step(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    static const struct {
        pgm_gpa_t page, entry;
    } steps[] = {
        { 0x1000, 0x1018 }, { 0x2000, 0x2028 }, { 0x3000, 0x3038 }, { 0x4000, 0x4048 },
    };
    for (unsigned i = 0; i < 4; i++) {
        uint64_t saved = *npte(&h, steps[i].page);
        *npte(&h, steps[i].page) = 0;
        flush(&h, PGM_FLUSH_GPA, 0);
        struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
        /* qual: bit 0 (a read: guest table access without EPT A/D), bits
         * 5:3 = 0 (the entry used was not present), bit 7 (GLA valid),
         * bit 8 = 0 (a paging-structure access): 0x81. */
        assert_eptv(&r, steps[i].entry, 0x81, true);
        assert_int_equal(r.gla, VA);
        assert_true(r.gla_valid);
        assert_int_equal(r.nested_access, 0);
        *npte(&h, steps[i].page) = saved;
    }
    *npte(&h, 0x5000) = 0;
    flush(&h, PGM_FLUSH_GPA, 0);
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    /* final translation: bit 0, bit 7, bit 8: 0x181 */
    assert_eptv(&r, 0x5123, 0x181, false);
    /* not present higher up (the EPT PDE): the same, bits 5:3 still 0 */
    *npte(&h, 0x5000) = (h.B + RAM_OFF + 0x5000) | EPT_L;
    host64(&h, nt(&h, 2))[0] = 0;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_eptv(&r, 0x1018, 0x81, true);
    struct pgm_soft_mmu_stats st;
    pgm_soft_mmu_stats(h.sb, 0, &st);
    assert_int_equal(st.nested_faults, 6);
    h_free(&h);
}

static void
test_ept_rights(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    pgm_hpa_t data = h.B + RAM_OFF + 0x5000;
    /* read + execute: a write gives bit 1, bits 5:3 = 101, bits 7, 8: 0x1aa */
    *npte(&h, 0x5000) = data | 0x30 | 0x5;
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_eptv(&r, 0x5123, 0x1aa, false);
    assert_int_equal(r.nested_access, PGM_ACCESS_WRITE);
    assert_int_equal(r.nested_rights, PGM_EPT_R | PGM_EPT_X);
    /* ... while a read and a fetch pass */
    assert_ok((r = xl(&h, VA, PGM_ACCESS_READ), &r), gpa_hpa(&h, 0x5123), 0x5123);
    assert_ok((r = xl(&h, VA, PGM_ACCESS_FETCH), &r), gpa_hpa(&h, 0x5123), 0x5123);
    /* The guest D is set by the guest walk before the final GPA faults,
     * also when a cached (clean) combined mapping answers first. */
    *guest64(&h, 0x4048) &= ~0x40ull;
    flush(&h, PGM_FLUSH_GVA, VA);
    assert_ok((r = xl(&h, VA, PGM_ACCESS_READ), &r), gpa_hpa(&h, 0x5123), 0x5123);
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_eptv(&r, 0x5123, 0x1aa, false);
    assert_int_equal(*guest64(&h, 0x4048), 0x5000 | G_T | 0x60);
    /* read + write: a fetch gives bit 2, bits 5:3 = 011, bits 7, 8: 0x19c */
    *npte(&h, 0x5000) = data | 0x30 | 0x3;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_FETCH);
    assert_eptv(&r, 0x5123, 0x19c, false);
    assert_int_equal(r.nested_access, PGM_ACCESS_FETCH);
    /* execute-only (supported by the modelled CPU): a read gives 0x1a1 */
    *npte(&h, 0x5000) = data | 0x30 | 0x4;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_eptv(&r, 0x5123, 0x1a1, false);
    /* rights are AND-ed over the levels: PDE without X, leaf RWX: a fetch
     * reports bits 5:3 = 011 (0x19c) */
    *npte(&h, 0x5000) = data | EPT_L;
    host64(&h, nt(&h, 2))[0] = nt(&h, 3) | 0x3;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_FETCH);
    assert_eptv(&r, 0x5123, 0x19c, false);
    /* a guest #PF comes first and is the guest's own: XD page, fetch, NXE:
     * error code P | ID = 0x11, no nested fault */
    host64(&h, nt(&h, 2))[0] = nt(&h, 3) | EPT_T;
    *guest64(&h, 0x4048) |= 1ull << 63;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_FETCH);
    assert_int_equal(r.status, PGM_SOFT_MMU_PF);
    assert_int_equal(r.error_code, 0x11);
    h_free(&h);
}

/* Guest A/D updates are writes to the guest table's page (SDM 29.3.3.2). */
static void
test_ept_guest_ad_needs_write(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    /* the guest PT page read-only in EPT (R, WB) */
    *npte(&h, 0x4000) = (h.B + RAM_OFF + 0x4000) | 0x31;
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    /* setting A in the PTE at 0x4048: a locked RMW, bits 0 and 1; bits 5:3
     * = 001; bit 7; not final: 0x8b */
    assert_eptv(&r, 0x4048, 0x8b, true);
    assert_int_equal(r.nested_access, PGM_ACCESS_WRITE);
    /* the levels above were set on the way down (their pages are writable) */
    assert_int_equal(*guest64(&h, 0x3038), 0x4000 | G_T | 0x20);
    assert_int_equal(*guest64(&h, 0x4048), 0x5000 | G_T);
    /* with A already set a read needs no write ... */
    *guest64(&h, 0x4048) |= 0x20;
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    /* ... but a write must set D: the same violation */
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_eptv(&r, 0x4048, 0x8b, true);

    /* EPT A/D on: every guest table access is a write, even with A/D set */
    *guest64(&h, 0x4048) |= 0x40;
    h.cpu.ept_ad = true;
    set_cpu(&h);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_eptv(&r, 0x4048, 0x8b, true);
    h_free(&h);
}

/* EPT accessed / dirty flags (SDM 29.3.5). */
static void
test_ept_ad_flags(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    h.cpu.ept_ad = true;
    set_cpu(&h);
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    /* A (bit 8) in the EPT PML4E / PDPTE / PDE; the guest table pages'
     * PTEs get A and D (bit 9): table accesses are writes; the data
     * page's PTE only A on a read. */
    assert_int_equal(host64(&h, nt(&h, 0))[0], nt(&h, 1) | EPT_T | 0x100);
    assert_int_equal(host64(&h, nt(&h, 2))[0], nt(&h, 3) | EPT_T | 0x100);
    assert_int_equal(*npte(&h, 0x1000), (h.B + RAM_OFF + 0x1000) | EPT_L | 0x300);
    assert_int_equal(*npte(&h, 0x4000), (h.B + RAM_OFF + 0x4000) | EPT_L | 0x300);
    assert_int_equal(*npte(&h, 0x5000), (h.B + RAM_OFF + 0x5000) | EPT_L | 0x100);
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    assert_int_equal(*npte(&h, 0x5000), (h.B + RAM_OFF + 0x5000) | EPT_L | 0x300);
    h_free(&h);
}

static void
test_ept_misconfig(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    pgm_hpa_t data = h.B + RAM_OFF + 0x5000;
    /* XWR = 010 (write without read), XWR = 110, memory type 2, 3 and 7 */
    static const uint64_t bad_leaf[] = { 0x32, 0x36, 0x17, 0x1f, 0x3f };
    for (unsigned i = 0; i < 5; i++) {
        *npte(&h, 0x5000) = data | bad_leaf[i];
        flush(&h, PGM_FLUSH_GPA, 0);
        struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
        assert_int_equal(r.status, PGM_SOFT_MMU_NESTED_MISCONFIG);
        assert_int_equal(r.gpa, 0x5123);
        assert_int_equal(r.exit_qual, 0);
    }
    /* bit 46 of the address field: an address with MAXPHYADDR 52 (beyond
     * the block: BAD_HPA), reserved with MAXPHYADDR 46 (misconfig) */
    *npte(&h, 0x5000) = data | EPT_L | (1ull << 46);
    flush(&h, PGM_FLUSH_GPA, 0);
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    assert_int_equal(r.status, PGM_SOFT_MMU_BAD_HPA);
    h.cpu.nested_maxphyaddr = 46;
    set_cpu(&h);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_int_equal(r.status, PGM_SOFT_MMU_NESTED_MISCONFIG);
    assert_int_equal(r.gpa, 0x5123);
    struct pgm_soft_cpu bad = h.cpu;
    bad.nested_maxphyaddr = 31;
    assert_int_equal(pgm_soft_mmu_set_cpu(h.sb, 0, &bad), -EINVAL);
    /* a PDE referencing a table with bit 3 set (6:3 reserved): misconfig on
     * the first guest table access, the PML4E at 0x1018 */
    *npte(&h, 0x5000) = data | EPT_L;
    host64(&h, nt(&h, 2))[0] = nt(&h, 3) | EPT_T | 0x8;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_int_equal(r.status, PGM_SOFT_MMU_NESTED_MISCONFIG);
    assert_int_equal(r.gpa, 0x1018);
    assert_true(r.guest_walk);
    /* a misconfig below a not-present entry is never reached */
    host64(&h, nt(&h, 1))[0] = 0;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_eptv(&r, 0x1018, 0x81, true);
    h_free(&h);
}

/* ---- NPT ------------------------------------------------------------- */

static void
test_npt(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_NPT);
    pgm_hpa_t data = h.B + RAM_OFF + 0x5000;
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    /* NPT A (bit 5) set everywhere; guest table pages also D (bit 6): the
     * guest walk's accesses are user writes; the data page only A. */
    assert_int_equal(host64(&h, nt(&h, 0))[0], nt(&h, 1) | NPT_T | 0x20);
    assert_int_equal(*npte(&h, 0x2000), (h.B + RAM_OFF + 0x2000) | NPT_L | 0x60);
    assert_int_equal(*npte(&h, 0x5000), data | NPT_L | 0x20);

    /* EXITINFO1 = #PF-style code + bit 32 (final) / bit 33 (guest table):
     * final write, not present: W | US = 0x6 */
    *npte(&h, 0x5000) = 0;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_npf(&r, 0x5123, 0x100000006ull);
    /* final write, read-only page: P | W | US = 0x7 */
    *npte(&h, 0x5000) = data | 0x5;
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_npf(&r, 0x5123, 0x100000007ull);
    /* final read, US = 0 (nested accesses are user accesses): P | US = 0x5 */
    *npte(&h, 0x5000) = data | 0x3;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_npf(&r, 0x5123, 0x100000005ull);
    /* final fetch, NX with host NXE: P | US | ID = 0x15 */
    *npte(&h, 0x5000) = data | NPT_L | (1ull << 63);
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_FETCH);
    assert_npf(&r, 0x5123, 0x100000015ull);
    /* without host NXE bit 63 is reserved: P | US | RSV = 0xd on a read */
    h.cpu.nested_nxe = false;
    set_cpu(&h);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_npf(&r, 0x5123, 0x10000000dull);
    h.cpu.nested_nxe = true;
    set_cpu(&h);
    /* bit 50 with host MAXPHYADDR 48: reserved, a final write 0x10000000f */
    *npte(&h, 0x5000) = data | NPT_L | (1ull << 50);
    h.cpu.nested_maxphyaddr = 48;
    set_cpu(&h);
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_npf(&r, 0x5123, 0x10000000full);
    h.cpu.nested_maxphyaddr = 0;
    set_cpu(&h);
    *npte(&h, 0x5000) = data | NPT_L;

    /* guest table page not present: a user write, bit 33: 0x200000006 */
    *npte(&h, 0x3000) = 0;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_npf(&r, 0x3038, 0x200000006ull);
    assert_true(r.guest_walk);
    /* guest table page read-only: P | W | US = 0x200000007, though the
     * guest entry's A is already set */
    *npte(&h, 0x3000) = (h.B + RAM_OFF + 0x3000) | 0x5;
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_npf(&r, 0x3038, 0x200000007ull);
    *npte(&h, 0x3000) = (h.B + RAM_OFF + 0x3000) | NPT_L;

    /* reserved bits: PML4E bit 8 (AMD: 8:7 MBZ), met on the first guest
     * table access: P | W | US | RSV = 0x20000000f */
    host64(&h, nt(&h, 0))[0] |= 1ull << 8;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_npf(&r, 0x1018, 0x20000000full);
    host64(&h, nt(&h, 0))[0] &= ~(1ull << 8);
    /* a 2 MiB leaf with bit 13 set (20:13 reserved): final read 0x10000000d;
     * the guest tables are at GPAs below 2 MiB too, so make the first access
     * hit it: the PML4E at 0x1018 -> 0x20000000f */
    host64(&h, nt(&h, 2))[0] = (h.B + RAM_OFF) | NPT_L | 0x80 | (1ull << 13);
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_npf(&r, 0x1018, 0x20000000full);
    struct pgm_soft_mmu_stats st;
    pgm_soft_mmu_stats(h.sb, 0, &st);
    assert_int_equal(st.nested_faults, 10);
    h_free(&h);
}

/* ---- Caching and flushes ---------------------------------------------- */

static void
test_tlb_staleness(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    pgm_hpa_t old = gpa_hpa(&h, 0x5123), moved = h.B + 0x2000000;
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, old, 0x5123);
    /* The EPT moves GPA 0x5000 without INVEPT: the combined mapping stays. */
    *npte(&h, 0x5000) = moved | EPT_L;
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_true(r.tlb_hit);
    assert_ok(&r, old, 0x5123);
    /* Guest-scope flushes drop the combined mapping but not the
     * guest-physical one: still the old page. */
    flush(&h, PGM_FLUSH_GVA, VA);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_false(r.tlb_hit);
    assert_ok(&r, old, 0x5123);
    flush(&h, PGM_FLUSH_NONGLOBAL, 0);
    flush(&h, PGM_FLUSH_PCID, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, old, 0x5123);
    /* The guest's own flush-everything (a CR4.PGE toggle) neither. */
    struct pgm_flush_req all = { .scope = PGM_FLUSH_ALL };
    pgm_soft_mmu_guest_flush(h.sb, 0, &all);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_false(r.tlb_hit);
    assert_ok(&r, old, 0x5123);
    /* INVEPT: the new page. */
    flush(&h, PGM_FLUSH_GPA, 0x5000);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, moved | 0x123, 0x5123);

    /* The guest remaps VA to GPA 0x7000: stale until INVLPG. */
    *guest64(&h, 0x4048) = 0x7000 | G_T | 0x20;
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, moved | 0x123, 0x5123);
    flush(&h, PGM_FLUSH_GVA, VA);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x7123), 0x7123);
    /* INVEPT also drops combined mappings. */
    *guest64(&h, 0x4048) = 0x6000 | G_T | 0x20;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x6123), 0x6123);

    /* Tightening without INVEPT: the cached guest-physical mapping still
     * allows the write (the guest D was clear, so the combined mapping is
     * walked again, and the walk takes the cached GPA translation). */
    *guest64(&h, 0x4048) |= 0x40;
    *npte(&h, 0x6000) = (h.B + RAM_OFF + 0x6000) | 0x31;
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_false(r.tlb_hit);
    assert_ok(&r, gpa_hpa(&h, 0x6123), 0x6123);
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    /* write, bits 5:3 = 001, bits 7 and 8: 0x18a */
    assert_eptv(&r, 0x6123, 0x18a, false);
    /* Loosening needs no flush: the violation dropped the mappings of its
     * GPA and linear address (SDM 29.4.3.1). */
    *npte(&h, 0x6000) = (h.B + RAM_OFF + 0x6000) | EPT_L;
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_ok(&r, gpa_hpa(&h, 0x6123), 0x6123);

    /* A tightened entry met through a stale combined mapping's cached
     * rights: the cached rights decide (the stricter of stale and fresh
     * here, since the cache holds R only). */
    *npte(&h, 0x6000) = (h.B + RAM_OFF + 0x6000) | 0x31;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x6123), 0x6123);
    *npte(&h, 0x6000) = (h.B + RAM_OFF + 0x6000) | EPT_L;
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_true(r.tlb_hit);
    assert_eptv(&r, 0x6123, 0x18a, false);
    r = xl(&h, VA, PGM_ACCESS_WRITE);
    assert_ok(&r, gpa_hpa(&h, 0x6123), 0x6123);
    h_free(&h);
}

/* Mappings are tagged with the nested root (EP4TA): switching roots neither uses nor drops them. */
static void
test_root_tagging(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    /* a second hierarchy at pages 8..12: the same guest tables, data elsewhere */
    build_nested(&h, 8, false, h.B + RAM_OFF);
    host64(&h, nt(&h, 11))[5] = (h.B + 0x3000000) | EPT_L;
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    h.cpu.nested_root = nt(&h, 8);
    set_cpu(&h);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_false(r.tlb_hit);
    assert_ok(&r, h.B + 0x3000123, 0x5123);
    h.cpu.nested_root = nt(&h, 0);
    set_cpu(&h);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_true(r.tlb_hit);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    /* load_root of an EPT VM sets the nested root, not the guest CR3 */
    h.ops->load_root(h.sb, 0, nt(&h, 8));
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_ok(&r, h.B + 0x3000123, 0x5123);
    h_free(&h);
}

/* ---- Walk lengths, page sizes, guest modes ----------------------------- */

static void
test_levels(void **state)
{
    (void)state;
    for (unsigned npt = 0; npt < 2; npt++) {
        struct h h;
        h_init(&h, npt ? PGM_PAGING_NPT : PGM_PAGING_EPT);
        /* 4-level guest on 5-level nested tables: 4 * (5 + 1) + 5 = 29 refs */
        h.cpu.nested_levels = 5;
        h.cpu.nested_root = nt(&h, 4);
        set_cpu(&h);
        struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
        assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
        struct pgm_soft_mmu_stats st;
        pgm_soft_mmu_stats(h.sb, 0, &st);
        assert_int_equal(st.nested_refs, 29);
        /* 5-level guest (PML5 at 0x6000) on 5-level tables: 5 * 6 + 5 = 35 */
        h.cpu.format = PGM_MODE_LA57;
        h.cpu.cr3 = 0x6000;
        set_cpu(&h);
        flush(&h, PGM_FLUSH_GPA, 0); /* no cached guest-physical mappings */
        r = xl(&h, VA, PGM_ACCESS_READ);
        assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
        pgm_soft_mmu_stats(h.sb, 0, &st);
        assert_int_equal(st.nested_refs, 29 + 35);
        /* a fault in the 5th nested level: PML5E not present -> the guest
         * PML5E read at 0x6000 (EPT 0x81, NPT user write 0x200000006) */
        host64(&h, nt(&h, 4))[0] = 0;
        flush(&h, PGM_FLUSH_GPA, 0);
        r = xl(&h, VA, PGM_ACCESS_READ);
        if (npt)
            assert_npf(&r, 0x6000, 0x200000006ull);
        else
            assert_eptv(&r, 0x6000, 0x81, true);
        /* levels other than 4 and 5, and unknown nested kinds, are refused */
        struct pgm_soft_cpu bad = h.cpu;
        bad.nested_levels = 3;
        assert_int_equal(pgm_soft_mmu_set_cpu(h.sb, 0, &bad), -EINVAL);
        bad = h.cpu;
        bad.nested = PGM_PAGING_SHADOW_PAE;
        assert_int_equal(pgm_soft_mmu_set_cpu(h.sb, 0, &bad), -EINVAL);
        h_free(&h);
    }
}

static void
test_large_nested_pages(void **state)
{
    (void)state;
    for (unsigned npt = 0; npt < 2; npt++) {
        struct h h;
        h_init(&h, npt ? PGM_PAGING_NPT : PGM_PAGING_EPT);
        uint64_t leaf = npt ? NPT_L : EPT_L;
        /* 2 MiB: the nested PDE maps GPA [0, 2 MiB) at B + 16 MiB (2 MiB aligned) */
        host64(&h, nt(&h, 2))[0] = (h.B + RAM_OFF) | leaf | 0x80;
        flush(&h, PGM_FLUSH_GPA, 0);
        struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
        assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
        assert_int_equal(r.page_shift, 12); /* the guest's 4 KiB page is smaller */
        /* 4 guest entries, one 3-entry nested walk (then cached for the
         * whole 2 MiB, final GPA included): 4 + 3 */
        struct pgm_soft_mmu_stats st;
        pgm_soft_mmu_stats(h.sb, 0, &st);
        assert_int_equal(st.nested_refs, 7);
        /* guest paging off: the combined page is the nested one */
        h.cpu.format = PGM_MODE_PROT;
        set_cpu(&h);
        r = xl(&h, 0x5123, PGM_ACCESS_READ);
        assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
        assert_int_equal(r.page_shift, 21);
        r = xl(&h, 0x1ff000, PGM_ACCESS_WRITE);
        assert_true(r.tlb_hit);
        assert_ok(&r, gpa_hpa(&h, 0x1ff000), 0x1ff000);
        /* 1 GiB: the nested PDPTE maps GPA [0, 1 GiB) at B */
        host64(&h, nt(&h, 1))[0] = h.B | leaf | 0x80;
        flush(&h, PGM_FLUSH_GPA, 0);
        r = xl(&h, 0x3456789, PGM_ACCESS_READ);
        assert_ok(&r, h.B + 0x3456789, 0x3456789);
        assert_int_equal(r.page_shift, 30);
        /* above 1 GiB the PDPTE[1] is not present: a final-translation fault */
        r = xl(&h, 0x40000010, PGM_ACCESS_FETCH);
        if (npt)
            assert_npf(&r, 0x40000010, 0x100000014ull); /* US | ID */
        else
            assert_eptv(&r, 0x40000010, 0x184, false);  /* fetch, 7, 8 */
        h_free(&h);
    }
}

/* Guest paging off: GVA = GPA, only the nested walk. */
static void
test_guest_paging_off(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    h.cpu.format = PGM_MODE_REAL;
    set_cpu(&h);
    struct pgm_soft_mmu_result r = xl(&h, 0x5123, PGM_ACCESS_WRITE);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    struct pgm_soft_mmu_stats st;
    pgm_soft_mmu_stats(h.sb, 0, &st);
    assert_int_equal(st.nested_refs, 4);
    /* linear addresses are 32 bits wide: 0x1_0000_5123 is 0x5123 */
    r = xl(&h, 0x100005123ull, PGM_ACCESS_READ);
    assert_ok(&r, gpa_hpa(&h, 0x5123), 0x5123);
    r = xl(&h, 0x200000, PGM_ACCESS_READ); /* beyond the EPT PT: PDE[1] absent */
    assert_eptv(&r, 0x200000, 0x181, false);
    assert_int_equal(r.gla, 0x200000);
    h_free(&h);
}

/* 32-bit and PAE guests; the PAE PDPTEs through EPT (latched) and NPT (per walk). */
static void
test_legacy_guests(void **state)
{
    (void)state;
    for (unsigned npt = 0; npt < 2; npt++) {
        struct h h;
        h_init(&h, npt ? PGM_PAGING_NPT : PGM_PAGING_EPT);
        /* 32-bit: PD at GPA 0x8000, PT at 0x9000; VA 0x00c0a456: PDE 3, PTE 10 */
        *(uint32_t *)(void *)guest64(&h, 0x8000 + 3 * 4) = 0x9000 | 0x7;
        *(uint32_t *)(void *)guest64(&h, 0x9000 + 10 * 4) = 0xa000 | 0x7;
        h.cpu.format = PGM_MODE_32BIT;
        h.cpu.cr3 = 0x8000;
        set_cpu(&h);
        struct pgm_soft_mmu_result r = xl(&h, 0x00c0a456, PGM_ACCESS_READ);
        assert_ok(&r, gpa_hpa(&h, 0xa456), 0xa456);
        /* 2 guest entries on 4-level tables: 2 * 5 + 4 = 14 */
        struct pgm_soft_mmu_stats st;
        pgm_soft_mmu_stats(h.sb, 0, &st);
        assert_int_equal(st.nested_refs, 14);
        assert_int_equal(*(uint32_t *)(void *)guest64(&h, 0x9000 + 40), 0xa000 | 0x27);

        /* PAE: PDPT at GPA 0xb000 (PDPTE 1 -> PD 0xc000), PD 0xc000 entry 2
         * -> PT 0xd000, PTE 4 -> 0xe000. VA = 1 << 30 | 2 << 21 | 4 << 12 | 0x10 */
        *guest64(&h, 0xb008) = 0xc000 | 0x1;
        *guest64(&h, 0xc010) = 0xd000 | 0x7;
        *guest64(&h, 0xd020) = 0xe000 | 0x7;
        uint64_t va = (1ull << 30) | (2ull << 21) | (4ull << 12) | 0x10;
        h.cpu.format = PGM_MODE_PAE;
        h.cpu.cr3 = 0xb000;
        set_cpu(&h);
        r = xl(&h, va, PGM_ACCESS_READ);
        assert_ok(&r, gpa_hpa(&h, 0xe010), 0xe010);
        /* The PDPT page not mapped. */
        *npte(&h, 0xb000) = 0;
        flush(&h, PGM_FLUSH_GPA, 0);
        if (npt) {
            /* AMD reads the PDPTE at each walk: a guest table access at
             * 0xb008, user write: 0x200000006 */
            r = xl(&h, va, PGM_ACCESS_READ);
            assert_npf(&r, 0xb008, 0x200000006ull);
        } else {
            /* Latched: the walk still works from the latch, also when the
             * same state is set again ... */
            r = xl(&h, va, PGM_ACCESS_READ);
            assert_ok(&r, gpa_hpa(&h, 0xe010), 0xe010);
            set_cpu(&h);
            flush(&h, PGM_FLUSH_GPA, 0);
            r = xl(&h, va, PGM_ACCESS_READ);
            assert_ok(&r, gpa_hpa(&h, 0xe010), 0xe010);
            /* ... until the next CR3 load, whose PDPTE load (a read, no
             * linear address: bit 0 only) at 0xb000 faults */
            assert_int_equal(pgm_soft_mmu_guest_cr3_load(h.sb, 0), 0);
            r = xl(&h, va, PGM_ACCESS_READ);
            assert_eptv(&r, 0xb000, 0x1, true);
            assert_false(r.gla_valid);
            /* the fault stays until the load succeeds (the MOV CR3 runs
             * again after the exit): set_cpu retries it */
            r = xl(&h, va, PGM_ACCESS_READ);
            assert_eptv(&r, 0xb000, 0x1, true);
            *npte(&h, 0xb000) = (h.B + RAM_OFF + 0xb000) | EPT_L;
            set_cpu(&h);
            r = xl(&h, va, PGM_ACCESS_READ);
            assert_ok(&r, gpa_hpa(&h, 0xe010), 0xe010);
        }
        h_free(&h);
    }
}

/* Tables pointing outside backend memory are isolation bugs, not translations. */
static void
test_bad_hpa(void **state)
{
    (void)state;
    struct h h;
    h_init(&h, PGM_PAGING_EPT);
    *npte(&h, 0x5000) = 0x7000000000ull | EPT_L;
    struct pgm_soft_mmu_result r = xl(&h, VA, PGM_ACCESS_READ);
    assert_int_equal(r.status, PGM_SOFT_MMU_BAD_HPA);
    host64(&h, nt(&h, 0))[0] = 0x7000000000ull | EPT_T;
    flush(&h, PGM_FLUSH_GPA, 0);
    r = xl(&h, VA, PGM_ACCESS_READ);
    assert_int_equal(r.status, PGM_SOFT_MMU_BAD_HPA);
    h_free(&h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ept_translate),
        cmocka_unit_test(test_ept_violation_each_step),
        cmocka_unit_test(test_ept_rights),
        cmocka_unit_test(test_ept_guest_ad_needs_write),
        cmocka_unit_test(test_ept_ad_flags),
        cmocka_unit_test(test_ept_misconfig),
        cmocka_unit_test(test_npt),
        cmocka_unit_test(test_tlb_staleness),
        cmocka_unit_test(test_root_tagging),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_large_nested_pages),
        cmocka_unit_test(test_guest_paging_off),
        cmocka_unit_test(test_legacy_guests),
        cmocka_unit_test(test_bad_hpa),
    };
    return cmocka_run_group_tests_name("soft_mmu_nested", tests, NULL, NULL);
}
