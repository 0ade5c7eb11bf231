/* SPDX-License-Identifier: MIT */
/*
 * The soft backend's MMU: its walks against the independent SDM model on
 * random hardware-format tables in backend memory, and its TLB semantics
 * (translations live until the right flush, faults drop the entry, a write
 * through a clean entry walks again, global entries and PCIDs).
 */
#include <errno.h>
#include <string.h>

#include "sdm_model.h"
#include "tests/unit/fixture.h"

#define NPAGES 24

struct env {
    struct pgm_soft_backend *sb;
    const struct pgm_backend_ops *ops;
    pgm_hpa_t hpa[NPAGES];
    uint8_t *ptr[NPAGES];
};

static void
env_init(struct env *e)
{
    assert_int_equal(pgm_soft_backend_create(64, &e->sb), 0);
    e->ops = pgm_soft_backend_ops();
    for (unsigned i = 0; i < NPAGES; i++) {
        void *p;
        assert_int_equal(e->ops->alloc_page(e->sb, &e->hpa[i], &p), 0);
        e->ptr[i] = p;
    }
}

static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A random entry: mostly present, pointing at one of the pages, random flags. */
static uint64_t
random_entry(struct env *e, uint64_t *seed, bool wide)
{
    uint64_t r = rnd(seed);
    uint64_t v = e->hpa[r % NPAGES] | (rnd(seed) & 0x1ff) | ((r >> 8) % 8 ? 1 : 0);
    if ((r >> 16) % 4)
        v |= 0x6; /* mostly writable user entries, so many walks complete */
    if ((r >> 20) % 2)
        v &= ~0x80ull; /* and fewer large pages */
    if (wide) {
        if (!(rnd(seed) % 8))
            v |= 1ull << 63;                       /* XD */
        if (!(rnd(seed) % 16))
            v |= 1ull << (13 + rnd(seed) % 17);    /* large-page reserved/address bits */
        if (!(rnd(seed) % 8))
            v |= (rnd(seed) & 0xfull) << 59;       /* protection key */
    }
    return v;
}

static void
test_walks_match_model(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    /* the model's flat image covers HPA 0 .. end of the arena pages used */
    uint64_t image_size = e.hpa[NPAGES - 1] + 4096;
    uint8_t *image = test_calloc(1, image_size);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    unsigned compared = 0, translated = 0;
    static const enum pgm_guest_mode modes[] = { PGM_MODE_32BIT, PGM_MODE_PAE, PGM_MODE_AMD64,
                                                 PGM_MODE_LA57 };
    for (unsigned n = 0; n < 40000; n++) {
        enum pgm_guest_mode m = modes[n % 4];
        bool wide = m != PGM_MODE_32BIT;
        for (unsigned i = 0; i < NPAGES; i++) {
            memset(e.ptr[i], 0, 4096);
            /* a handful of entries per page, at indices a walk is likely to use */
            for (unsigned k = 0; k < 6; k++) {
                unsigned idx = (unsigned)(rnd(&seed) % 4);
                uint64_t v = random_entry(&e, &seed, wide);
                memcpy(e.ptr[i] + idx * (wide ? 8 : 4), &v, wide ? 8 : 4);
            }
        }
        struct pgm_soft_cpu cpu = {
            .format = m, .cr3 = e.hpa[rnd(&seed) % NPAGES], .wp = rnd(&seed) & 1,
            .pse = rnd(&seed) & 1, .pge = true, .smep = rnd(&seed) & 1, .smap = rnd(&seed) & 1,
            .pke = rnd(&seed) & 1, .nxe = rnd(&seed) & 1, .pkru = (uint32_t)rnd(&seed),
        };
        if (m == PGM_MODE_PAE) {
            /* PDPTEs must be loadable: P plus an address only */
            for (unsigned i = 0; i < 4; i++) {
                uint64_t v = (rnd(&seed) % 4) ? e.hpa[rnd(&seed) % NPAGES] | 1 : 0;
                memcpy(e.ptr[0] + 8 * i, &v, 8);
            }
            cpu.cr3 = e.hpa[0];
        }
        /* fresh state for every case: set_cpu to REAL first flushes the TLB */
        struct pgm_soft_cpu off = { .format = PGM_MODE_REAL };
        assert_int_equal(pgm_soft_mmu_set_cpu(e.sb, 0, &off), 0);
        assert_int_equal(pgm_soft_mmu_set_cpu(e.sb, 0, &cpu), 0);
        for (unsigned i = 0; i < NPAGES; i++)
            memcpy(image + e.hpa[i], e.ptr[i], 4096);

        uint64_t va = (rnd(&seed) & 0x3) << 12 | (rnd(&seed) & 0x3) << 21 |
                      (rnd(&seed) & 0x3) << 30 | (rnd(&seed) & 0x3ull) << 39 |
                      (rnd(&seed) & 0x3ull) << 48 | (rnd(&seed) & 0xfff);
        if (m == PGM_MODE_AMD64 && (va >> 47))
            va |= 0xffff000000000000ull;
        unsigned kind = rnd(&seed) % 3;
        uint32_t access = kind == 1 ? PGM_ACCESS_WRITE : kind == 2 ? PGM_ACCESS_FETCH : 0;
        unsigned who = rnd(&seed) % 3;
        access |= who == 1 ? PGM_ACCESS_USER : who == 2 ? PGM_ACCESS_IMPLICIT : 0;
        if (rnd(&seed) & 1)
            access |= PGM_ACCESS_AC;

        struct pgm_soft_mmu_result r;
        assert_int_equal(pgm_soft_mmu_translate(e.sb, 0, va, access, &r), 0);

        struct sdm_mem mem = { .bytes = image, .size = image_size };
        struct sdm_cpu mc = {
            .mode = m == PGM_MODE_32BIT ? SDM_MODE_32BIT : m == PGM_MODE_PAE ? SDM_MODE_PAE :
                    m == PGM_MODE_AMD64 ? SDM_MODE_4LEVEL : SDM_MODE_5LEVEL,
            .cr3 = cpu.cr3, .cr0_wp = cpu.wp, .cr4_pse = cpu.pse, .cr4_smep = cpu.smep,
            .cr4_smap = cpu.smap, .cr4_pke = cpu.pke, .efer_nxe = cpu.nxe, .pkru = cpu.pkru,
            .maxphyaddr = 52, .gbpages = true, .pse36 = true,
        };
        if (m == PGM_MODE_PAE)
            for (unsigned i = 0; i < 4; i++)
                memcpy(&mc.pdpte[i], image + cpu.cr3 + 8 * i, 8);
        struct sdm_access ma = {
            .kind = kind == 1 ? SDM_WRITE : kind == 2 ? SDM_FETCH : SDM_READ,
            .priv = who == 1 ? SDM_PRIV_USER : who == 2 ? SDM_PRIV_IMPLICIT : SDM_PRIV_SUPERVISOR,
            .ac = access & PGM_ACCESS_AC,
        };
        struct sdm_result mr;
        sdm_translate(&mem, &mc, va, &ma, &mr);
        if (mr.outside_ram)
            continue; /* the model reads all-ones there; the MMU reports BAD_HPA */
        compared++;
        int want = mr.outcome == SDM_OK ? PGM_SOFT_MMU_OK :
                   mr.outcome == SDM_PF ? PGM_SOFT_MMU_PF : PGM_SOFT_MMU_GP;
        if ((int)r.status != want && !(r.status == PGM_SOFT_MMU_BAD_HPA && want == PGM_SOFT_MMU_OK))
            fail_msg("case %u mode %d va %#llx access %#x: status %d, model %d (ec %#x)", n, m,
                     (unsigned long long)va, access, r.status, want, mr.error_code);
        if (r.status == PGM_SOFT_MMU_PF)
            assert_int_equal(r.error_code, mr.error_code);
        if (r.status == PGM_SOFT_MMU_OK) {
            translated++;
            assert_true(r.hpa == mr.gpa);
            assert_int_equal(r.page_shift, mr.page_shift);
        }
        /* A/D bits: the same in both memories */
        for (unsigned i = 0; i < NPAGES; i++)
            if (memcmp(image + e.hpa[i], e.ptr[i], 4096) != 0)
                fail_msg("case %u: A/D state differs from the model in page %u", n, i);
    }
    print_message("# soft MMU vs model: %u walks compared, %u translated\n", compared, translated);
    assert_true(compared > 20000 && translated > 2000);
    test_free(image);
    pgm_soft_backend_destroy(e.sb);
}

/* Build a 4-level path for va 0x1000 -> page 5 in pages 0..3 of @e. */
static void
build_path(struct env *e, uint64_t leaf_flags)
{
    uint64_t v;
    for (unsigned l = 0; l < 3; l++) {
        v = e->hpa[l + 1] | 0x7;
        memcpy(e->ptr[l], &v, 8);
    }
    v = e->hpa[5] | leaf_flags;
    memcpy(e->ptr[3] + 8, &v, 8);
}

static void
test_tlb_semantics(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    build_path(&e, 0x7);
    struct pgm_soft_cpu cpu = { .format = PGM_MODE_AMD64, .cr3 = e.hpa[0], .wp = true,
                                .pge = true };
    assert_int_equal(pgm_soft_mmu_set_cpu(e.sb, 1, &cpu), 0);
    struct pgm_soft_mmu_result r;
    assert_int_equal(pgm_soft_mmu_translate(e.sb, 1, 0x1234, 0, &r), 0);
    assert_int_equal(r.status, PGM_SOFT_MMU_OK);
    assert_false(r.tlb_hit);
    assert_true(r.hpa == e.hpa[5] + 0x234);
    assert_ptr_equal(r.ptr, e.ptr[5] + 0x234);

    /* remap the leaf without a flush: the TLB keeps the old translation */
    uint64_t v = e.hpa[6] | 0x7;
    memcpy(e.ptr[3] + 8, &v, 8);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_true(r.tlb_hit && r.hpa == e.hpa[5]);
    /* a CR3 load alone does not flush either */
    pgm_soft_backend_ops()->load_root(e.sb, 1, e.hpa[0]);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_true(r.tlb_hit && r.hpa == e.hpa[5]);
    /* INVLPG of another page: still stale; of this page: fresh */
    struct pgm_flush_req req = { .scope = PGM_FLUSH_GVA, .addr = 0x2000 };
    e.ops->flush(e.sb, 1, &req);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_true(r.hpa == e.hpa[5]);
    req.addr = 0x1fff;
    e.ops->flush(e.sb, 1, &req);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_true(!r.tlb_hit && r.hpa == e.hpa[6]);

    /* the first read cached D = 0: a write walks again and sets D */
    uint64_t leaf;
    memcpy(&leaf, e.ptr[3] + 8, 8);
    assert_true((leaf & 0x60) == 0x20);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, PGM_ACCESS_WRITE, &r);
    assert_false(r.tlb_hit);
    memcpy(&leaf, e.ptr[3] + 8, 8);
    assert_true((leaf & 0x60) == 0x60);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, PGM_ACCESS_WRITE, &r);
    assert_true(r.tlb_hit);

    /* tightening without a flush is not seen; a denied access faults and drops the entry */
    v = e.hpa[6] | 0x65; /* read-only now */
    memcpy(e.ptr[3] + 8, &v, 8);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &r);
    assert_true(r.status == PGM_SOFT_MMU_OK && r.tlb_hit); /* stale rights, as the SDM allows */
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, PGM_ACCESS_FETCH | PGM_ACCESS_USER, &r);
    assert_true(r.status == PGM_SOFT_MMU_OK);
    cpu.smap = true; /* applied at access time to the cached rights */
    assert_int_equal(pgm_soft_mmu_set_cpu(e.sb, 1, &cpu), 0);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_int_equal(r.status, PGM_SOFT_MMU_PF);
    assert_int_equal(r.error_code, PGM_PFEC_P);
    assert_true(r.tlb_hit);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &r);
    assert_int_equal(r.status, PGM_SOFT_MMU_PF); /* the entry was dropped: a fresh walk */
    assert_false(r.tlb_hit);
    assert_int_equal(r.error_code, PGM_PFEC_P | PGM_PFEC_W | PGM_PFEC_U);

    /* global entries survive PCID and non-global flushes, not ALL */
    cpu.smap = false;
    cpu.pcide = true;
    cpu.pcid = 3;
    assert_int_equal(pgm_soft_mmu_set_cpu(e.sb, 1, &cpu), 0); /* PCIDE change: full flush */
    v = e.hpa[7] | 0x107;                                      /* G */
    memcpy(e.ptr[3] + 8, &v, 8);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_true(!r.tlb_hit && r.hpa == e.hpa[7]);
    cpu.pcid = 4;
    assert_int_equal(pgm_soft_mmu_set_cpu(e.sb, 1, &cpu), 0);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_true(r.tlb_hit); /* global: any PCID */
    req = (struct pgm_flush_req){ .scope = PGM_FLUSH_NONGLOBAL };
    e.ops->flush(e.sb, 1, &req);
    req = (struct pgm_flush_req){ .scope = PGM_FLUSH_PCID, .pcid = 3 };
    e.ops->flush(e.sb, 1, &req);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_true(r.tlb_hit);
    req = (struct pgm_flush_req){ .scope = PGM_FLUSH_ALL };
    e.ops->flush(e.sb, 1, &req);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_false(r.tlb_hit);

    /* a table pointing at a freed page is an isolation bug, not a translation */
    e.ops->free_page(e.sb, e.hpa[2], e.ptr[2]);
    e.ops->flush(e.sb, 1, &req);
    pgm_soft_mmu_translate(e.sb, 1, 0x1000, 0, &r);
    assert_int_equal(r.status, PGM_SOFT_MMU_BAD_HPA);

    struct pgm_soft_mmu_stats st;
    pgm_soft_mmu_stats(e.sb, 1, &st);
    assert_true(st.tlb_hits >= 8 && st.walks >= 6 && st.flushes >= 6);
    assert_int_equal(pgm_soft_mmu_translate(e.sb, PGM_SOFT_MAX_VCPUS, 0, 0, &r), -EINVAL);
    pgm_soft_backend_destroy(e.sb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walks_match_model),
        cmocka_unit_test(test_tlb_semantics),
    };
    return cmocka_run_group_tests_name("soft_mmu", tests, NULL, NULL);
}
