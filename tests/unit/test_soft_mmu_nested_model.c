/* SPDX-License-Identifier: MIT */
/*
 * The soft MMU's two-dimensional walk against a composition of independent
 * models, on random tables: the guest dimension is tests/model's SDM model
 * (run over a flat image of guest-physical memory), the nested dimension a
 * per-page rights table kept by this test and the EPT / NPT rules written
 * here from the SDM (29.3.3) and the APM (15.25.5-6). For every access the
 * expected outcome is: the first guest table read (in walk order) whose
 * nested translation fails; else the guest's own #PF; else the first guest
 * A/D update whose page is not nested-writable (EPT without A/D); else the
 * final GPA's nested translation. Exit values and guest A/D bits must match.
 */
#include <errno.h>
#include <string.h>

#include "sdm_model.h"
#include "tests/unit/fixture.h"

#define NG       24          /* guest-physical pages 1..NG (GPA 0x1000..) carry tables and data */
#define RAM_OFF  0x100000ull /* host page of GPA page i: B + RAM_OFF + perm[i] * 4 KiB */
#define BLK      (1ull << 12) /* 16 MiB of host address space */

static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

struct world {
    struct pgm_soft_backend *sb;
    const struct pgm_backend_ops *ops;
    pgm_hpa_t B;
    uint8_t *P;
    unsigned perm[NG + 1];  /* GPA page -> host page slot */
    uint64_t nleaf[NG + 1]; /* low bits of each GPA page's nested PTE (0: not present) */
    bool npt, ept_ad, nxe;
};

static uint8_t *
gpage(struct world *w, unsigned i)
{
    return w->P + RAM_OFF + 0x1000ull * w->perm[i];
}

/* Nested tables: PML4 / PDPT / PD at B, B + 4K, B + 8K, the PT at B + 12K. */
static void
build_nested(struct world *w)
{
    memset(w->P, 0, 0x4000);
    uint64_t t = 0x7; /* EPT RWX / NPT P RW US: tables grant everything */
    for (unsigned l = 0; l < 3; l++) {
        uint64_t e = (w->B + 0x1000ull * (l + 1)) | t;
        memcpy(w->P + 0x1000ull * l, &e, 8);
    }
    for (unsigned i = 1; i <= NG; i++) {
        uint64_t e = w->nleaf[i] ? (w->B + RAM_OFF + 0x1000ull * w->perm[i]) | w->nleaf[i] : 0;
        memcpy(w->P + 0x3000 + 8ull * i, &e, 8);
    }
}

/* Random nested rights of one page. */
static uint64_t
random_nleaf(struct world *w, uint64_t *s)
{
    unsigned r = (unsigned)(rnd(s) % 100);
    if (!w->npt) {
        /* XWR | memory type WB (6 << 3) */
        uint64_t xwr = r < 55 ? 7 : r < 65 ? 1 : r < 75 ? 5 : r < 80 ? 3 : r < 86 ? 0 :
                       r < 92 ? 4 : r < 96 ? 2 : 6;
        return xwr ? xwr | 0x30 : 0;
    }
    /* P RW US; NX; US clear; not present */
    if (r < 55)
        return 0x7;
    if (r < 67)
        return 0x5;
    if (r < 75)
        return 0x7 | (1ull << 63);
    if (r < 82)
        return 0x3;
    if (r < 90)
        return 0;
    return 0x5 | (1ull << 63);
}

enum nx { N_OK, N_NOTP, N_DENIED, N_RSVD, N_MISC };

/* The nested translation of @gpa needing @need (1 R, 2 W, 4 X): the model's own rules. */
static enum nx
nested_model(const struct world *w, uint64_t gpa, unsigned need, unsigned *rights)
{
    uint64_t page = gpa >> 12;
    uint64_t e = page >= 1 && page <= NG ? w->nleaf[page] : 0;
    *rights = 0;
    if (!w->npt) {
        unsigned xwr = (unsigned)(e & 7);
        if (!xwr)
            return N_NOTP;                 /* SDM 29.3.2: bits 2:0 all zero */
        if ((xwr & 3) == 2)
            return N_MISC;                 /* 29.3.3.1: W without R */
        *rights = xwr;
        return need & ~xwr ? N_DENIED : N_OK; /* 29.3.3.2 */
    }
    if (!(e & 1))
        return N_NOTP;
    if ((e >> 63) && !w->nxe)
        return N_RSVD;                     /* APM: bit 63 reserved without EFER.NXE */
    unsigned r = (e & 4) ? 1u | ((e & 2) ? 2u : 0) | ((e >> 63) && w->nxe ? 0 : 4u) : 0;
    *rights = r;
    /* every nested access is a user access: US (our R) always needed */
    return (need | 1u) & ~r ? N_DENIED : N_OK;
}

struct expect {
    int status;
    uint64_t gpa;
    bool guest_walk;
    uint64_t qual, info1;
};

/* Exit values of a nested fault, from the SDM table 28-7 / APM 15.25.6 by hand. */
static void
expect_fault(const struct world *w, enum nx k, unsigned rights, uint64_t gpa, bool guest_walk,
             unsigned acc, struct expect *x)
{
    x->gpa = gpa;
    x->guest_walk = guest_walk;
    if (k == N_MISC) {
        x->status = PGM_SOFT_MMU_NESTED_MISCONFIG;
        return;
    }
    x->status = PGM_SOFT_MMU_NESTED_FAULT;
    if (!w->npt) {
        /* bit 7 (GLA valid) is clear only for the PAE PDPTE loads (acc 0x100 marks them) */
        bool gla = !(acc & 0x100);
        acc &= 7;
        x->qual = acc | (k == N_NOTP ? 0 : (uint64_t)rights << 3) | (gla ? 0x80 : 0) |
                  (guest_walk ? 0 : 0x100);
    } else {
        x->info1 = 0x4 | (k == N_NOTP ? 0 : 1) | (k == N_RSVD ? 8 : 0) | ((acc & 2) ? 2 : 0) |
                   ((acc & 4) && w->nxe ? 0x10 : 0) | (guest_walk ? 1ull << 33 : 1ull << 32);
    }
}

static void
test_random_2d_vs_models(void **state)
{
    (void)state;
    struct world w;
    memset(&w, 0, sizeof(w));
    assert_int_equal(pgm_soft_backend_create(16, &w.sb), 0);
    w.ops = pgm_soft_backend_ops();
    void *p;
    assert_int_equal(w.ops->alloc_ram_block(w.sb, BLK, &w.B, &p), 0);
    w.P = p;
    uint64_t gsize = 0x1000ull * (NG + 1);
    uint8_t *image = test_calloc(1, gsize);
    uint8_t *before = test_calloc(1, gsize);
    uint64_t seed = 0x2d2d2d2d12345ull;
    unsigned compared = 0, ok = 0, pf = 0, nf_walk = 0, nf_final = 0, nf_ad = 0, misc = 0;
    static const enum pgm_guest_mode modes[] = { PGM_MODE_32BIT, PGM_MODE_PAE, PGM_MODE_AMD64,
                                                 PGM_MODE_LA57 };

    for (unsigned n = 0; n < 160000; n++) {
        enum pgm_guest_mode m = modes[n % 4];
        bool wide = m != PGM_MODE_32BIT;
        unsigned es = wide ? 8 : 4;
        w.npt = (n / 4) & 1;
        w.ept_ad = !w.npt && (rnd(&seed) & 1);
        w.nxe = rnd(&seed) % 4 != 0;
        for (unsigned i = 1; i <= NG; i++) {
            w.perm[i] = (unsigned)((i * 7 + n) % (NG + 8));
            w.nleaf[i] = random_nleaf(&w, &seed);
        }
        build_nested(&w);
        /* guest pages: a few random entries at the indices a walk is likely to use */
        for (unsigned i = 1; i <= NG; i++) {
            memset(gpage(&w, i), 0, 4096);
            for (unsigned k = 0; k < 10; k++) {
                unsigned idx = (unsigned)(rnd(&seed) % 4);
                uint64_t r = rnd(&seed);
                uint64_t tgt = (r % 16) ? 0x1000ull * (1 + r % NG) : 0x300000; /* some unmapped */
                uint64_t v = tgt | ((r >> 8) & 0x1ff) | ((r >> 20) % 16 ? 1 : 0);
                if ((r >> 24) % 4)
                    v |= 0x6;
                if ((r >> 28) % 8)
                    v &= ~0x80ull; /* mostly 4 KiB pages, whose frames are mapped */
                if (wide && !(rnd(&seed) % 8))
                    v |= 1ull << 63;
                /* an address bit reserved below some guest MAXPHYADDRs (below
                 * bit 48: what 4-level nested tables do with higher GPA bits
                 * is not what this test is about) */
                if (wide && !(rnd(&seed) % 16))
                    v |= 1ull << (36 + rnd(&seed) % 12);
                memcpy(gpage(&w, i) + idx * es, &v, es);
            }
        }
        struct pgm_soft_cpu cpu = {
            .format = m, .cr3 = 0x1000ull * (1 + rnd(&seed) % NG), .wp = rnd(&seed) & 1,
            .pse = rnd(&seed) & 1, .smep = rnd(&seed) & 1, .smap = rnd(&seed) & 1,
            .pke = rnd(&seed) % 4 == 0, .nxe = rnd(&seed) & 1, .pkru = (uint32_t)rnd(&seed),
            .nested = w.npt ? PGM_PAGING_NPT : PGM_PAGING_EPT, .nested_root = w.B,
            .nested_levels = 4, .ept_ad = w.ept_ad, .nested_nxe = w.nxe,
            .guest_maxphyaddr = (unsigned[]){ 36, 40, 46, 52 }[rnd(&seed) % 4],
        };
        if (m == PGM_MODE_PAE) {
            /* PDPTEs must be loadable (P plus an address, SDM 4.4.1) */
            cpu.cr3 &= ~0xfffull;
            for (unsigned i = 0; i < 4; i++) {
                uint64_t v = (rnd(&seed) % 4) ? (0x1000ull * (1 + rnd(&seed) % NG)) | 1 : 0;
                memcpy(gpage(&w, (unsigned)(cpu.cr3 >> 12)) + 8 * i, &v, 8);
            }
        }
        /* fresh caches for every case: a change of nested mode drops everything */
        struct pgm_soft_cpu off = { .format = PGM_MODE_REAL };
        assert_int_equal(pgm_soft_mmu_set_cpu(w.sb, 0, &off), 0);
        assert_int_equal(pgm_soft_mmu_set_cpu(w.sb, 0, &cpu), 0);

        for (unsigned i = 1; i <= NG; i++)
            memcpy(image + 0x1000ull * i, gpage(&w, i), 4096);
        memcpy(before, image, gsize);
        uint64_t va = (rnd(&seed) & 0x3) << 12 | (rnd(&seed) & 0x3) << 21 |
                      (rnd(&seed) & 0x3) << 30 | (rnd(&seed) & 0x3ull) << 39 |
                      (rnd(&seed) & 0x3ull) << 48 | (rnd(&seed) & 0xfff);
        if (m == PGM_MODE_AMD64 && (va >> 47))
            va |= 0xffff000000000000ull;
        if (m == PGM_MODE_32BIT)
            va = (uint32_t)va;
        unsigned kind = rnd(&seed) % 3;
        uint32_t access = kind == 1 ? PGM_ACCESS_WRITE : kind == 2 ? PGM_ACCESS_FETCH : 0;
        unsigned who = rnd(&seed) % 3;
        access |= who == 1 ? PGM_ACCESS_USER : who == 2 ? PGM_ACCESS_IMPLICIT : 0;

        struct pgm_soft_mmu_result r;
        assert_int_equal(pgm_soft_mmu_translate(w.sb, 0, va, access, &r), 0);

        /* the guest dimension: the SDM model over guest-physical memory */
        struct sdm_mem mem = { .bytes = image, .size = gsize };
        struct sdm_cpu mc = {
            .mode = m == PGM_MODE_32BIT ? SDM_MODE_32BIT : m == PGM_MODE_PAE ? SDM_MODE_PAE :
                    m == PGM_MODE_AMD64 ? SDM_MODE_4LEVEL : SDM_MODE_5LEVEL,
            .cr3 = cpu.cr3, .cr0_wp = cpu.wp, .cr4_pse = cpu.pse, .cr4_smep = cpu.smep,
            .cr4_smap = cpu.smap, .cr4_pke = cpu.pke, .efer_nxe = cpu.nxe, .pkru = cpu.pkru,
            .maxphyaddr = cpu.guest_maxphyaddr, .gbpages = true, .pse36 = true,
        };
        struct sdm_access ma = {
            .kind = kind == 1 ? SDM_WRITE : kind == 2 ? SDM_FETCH : SDM_READ,
            .priv = who == 1 ? SDM_PRIV_USER : who == 2 ? SDM_PRIV_IMPLICIT : SDM_PRIV_SUPERVISOR,
        };
        if (m == PGM_MODE_PAE)
            for (unsigned i = 0; i < 4; i++)
                memcpy(&mc.pdpte[i], image + cpu.cr3 + 8 * i, 8);
        struct sdm_result mr;
        sdm_translate(&mem, &mc, va, &ma, &mr);
        if (mr.outcome == SDM_GP)
            continue;

        /* compose */
        struct expect x = { .status = -1 };
        bool table_write = w.npt || w.ept_ad;
        unsigned tacc = 1u | (table_write ? 2u : 0); /* qualification bits of a table access */
        unsigned fault_level = 0;
        if (m == PGM_MODE_PAE && !w.npt) {
            /* EPT latches the four PDPTEs when CR3 is set: reads, no GLA
             * (SDM 29.3.3.2, table 28-7 bit 7); the first refused one is
             * reported by the next translation */
            for (unsigned i = 0; i < 4 && x.status < 0; i++) {
                unsigned rights;
                enum nx k = nested_model(&w, cpu.cr3 + 8 * i, 1u, &rights);
                if (k != N_OK)
                    expect_fault(&w, k, rights, cpu.cr3 + 8 * i, true, 0x101, &x);
            }
        }
        for (unsigned l = mr.top_level; x.status < 0 && l >= mr.last_level && l >= 1; l--) {
            /* the PDPTE: latched with EPT, read at each walk with NPT */
            if (m == PGM_MODE_PAE && l == 3 && !w.npt)
                continue;
            unsigned rights;
            enum nx k = nested_model(&w, mr.entry_gpa[l], table_write ? 3u : 1u, &rights);
            if (k != N_OK) {
                expect_fault(&w, k, rights, mr.entry_gpa[l], true, tacc, &x);
                break;
            }
        }
        if (x.status < 0 && mr.outcome == SDM_PF) {
            x.status = PGM_SOFT_MMU_PF;
        } else if (x.status < 0) {
            /* guest A/D updates, top down, need nested W (only EPT without A/D
             * can lack it here: otherwise the reads already needed it) */
            for (unsigned l = mr.top_level; l >= mr.last_level && l >= 1; l--) {
                uint64_t old = sdm_mem_read(&(struct sdm_mem){ before, gsize, 0, 0 },
                                            mr.entry_gpa[l], es);
                if (old == mr.entry[l])
                    continue;
                unsigned rights;
                enum nx k = nested_model(&w, mr.entry_gpa[l], 2u, &rights);
                if (k != N_OK) {
                    expect_fault(&w, k, rights, mr.entry_gpa[l], true, 3u, &x);
                    fault_level = l;
                    break;
                }
            }
        }
        unsigned facc = kind == 1 ? 2u : kind == 2 ? 4u : 1u;
        if (x.status < 0) {
            unsigned rights;
            enum nx k = nested_model(&w, mr.gpa, facc, &rights);
            if (k != N_OK)
                expect_fault(&w, k, rights, mr.gpa, false, facc, &x);
            else
                x.status = PGM_SOFT_MMU_OK;
        }
        compared++;
        if ((int)r.status != x.status)
            fail_msg("case %u (%s, %s%s) va %#llx access %#x: status %d, expected %d "
                     "(model outcome %d gpa %#llx)", n, w.npt ? "npt" : "ept",
                     w.ept_ad ? "A/D " : "", sdm_mode_name(mc.mode), (unsigned long long)va,
                     access, r.status, x.status, mr.outcome, (unsigned long long)mr.gpa);
        switch (x.status) {
        case PGM_SOFT_MMU_OK: {
            ok++;
            uint64_t page = mr.gpa >> 12;
            assert_int_equal(r.gpa, mr.gpa);
            assert_int_equal(r.hpa, w.B + RAM_OFF + 0x1000ull * w.perm[page] + (mr.gpa & 0xfff));
            break;
        }
        case PGM_SOFT_MMU_PF:
            pf++;
            assert_int_equal(r.error_code, mr.error_code);
            break;
        case PGM_SOFT_MMU_NESTED_MISCONFIG:
            misc++;
            assert_int_equal(r.gpa, x.gpa);
            break;
        default:
            if (x.guest_walk && fault_level)
                nf_ad++;
            else if (x.guest_walk)
                nf_walk++;
            else
                nf_final++;
            if (r.gpa != x.gpa || r.guest_walk != x.guest_walk || r.exit_qual != x.qual ||
                r.exit_info1 != x.info1)
                fail_msg("case %u (%s%s): gpa %#llx/%#llx walk %d/%d qual %#llx/%#llx info1 "
                         "%#llx/%#llx (got/expected)", n, w.npt ? "npt" : "ept",
                         w.ept_ad ? " A/D" : "", (unsigned long long)r.gpa,
                         (unsigned long long)x.gpa, r.guest_walk, x.guest_walk,
                         (unsigned long long)r.exit_qual, (unsigned long long)x.qual,
                         (unsigned long long)r.exit_info1, (unsigned long long)x.info1);
            break;
        }
        /* Guest A/D bits: all the model's when the guest walk completed (OK or
         * a final-translation fault), those above the refused level for an
         * A/D fault, none otherwise. */
        uint8_t *want = before;
        if (x.status == PGM_SOFT_MMU_OK || (x.status != PGM_SOFT_MMU_PF && !x.guest_walk)) {
            want = image;
        } else if (fault_level) {
            for (unsigned l = mr.top_level; l > fault_level; l--)
                sdm_mem_write(&(struct sdm_mem){ before, gsize, 0, 0 }, mr.entry_gpa[l],
                              mr.entry[l], es);
        }
        for (unsigned i = 1; i <= NG; i++)
            if (memcmp(want + 0x1000ull * i, gpage(&w, i), 4096))
                fail_msg("case %u (%s): guest A/D state differs from the models in page %u", n,
                         w.npt ? "npt" : "ept", i);
    }
    print_message("# 2D walk vs models: %u compared: %u OK, %u guest #PF, %u nested faults on "
                  "guest tables, %u on A/D updates, %u final, %u misconfigs\n",
                  compared, ok, pf, nf_walk, nf_ad, nf_final, misc);
    assert_true(ok > 1000 && pf > 1000 && nf_walk > 1000 && nf_ad > 50 && nf_final > 300 &&
                misc > 100);
    test_free(image);
    test_free(before);
    w.ops->free_ram_block(w.sb, w.B, w.P, BLK);
    pgm_soft_backend_destroy(w.sb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_2d_vs_models),
    };
    return cmocka_run_group_tests_name("soft_mmu_nested_model", tests, NULL, NULL);
}
