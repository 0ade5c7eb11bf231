/* SPDX-License-Identifier: MIT */
/*
 * bench/nested_walk: the soft MMU's two-dimensional walk (guest tables read
 * through EPT / NPT) against the one-dimensional walk of the same guest
 * tables alone, both on a TLB miss, in the same process. Printed: mean ns
 * per translation, the 2D / 1D ratio, and paging-structure entries read per
 * walk (24 for a 4-level guest on 4-level nested tables, 35 for 5 on 5).
 *
 * Every translation is preceded by a flush that makes it miss:
 *   cold: PGM_FLUSH_ALL (INVEPT): no combined and no guest-physical mapping;
 *   warm: PGM_FLUSH_GVA (INVLPG): the guest-physical mappings stay cached,
 *         so only the guest entries are read through them.
 * The cost of the flush alone is measured too and subtracted. The 1D side
 * runs on vCPU 0, the 2D side on vCPU 1, in interleaved chunks of 1000
 * translations, so that both see the same machine load.
 *
 * usage: nested_walk [iterations]   (default 300000 per measurement)
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgm/pgm.h"

#include "bench_util.h"

#define BLK_PAGES (1ull << 14) /* 64 MiB of host address space */
#define RAM_OFF   0x1000000ull /* guest-physical page g lives at block + 16 MiB + g */
#define NPAGES    16           /* distinct linear pages walked round robin */

struct bench {
    struct pgm_soft_backend *sb;
    const struct pgm_backend_ops *ops;
    pgm_hpa_t B;
    uint8_t *P;
};

static uint64_t *
at(struct bench *b, pgm_hpa_t hpa)
{
    return (uint64_t *)(void *)(b->P + (hpa - b->B));
}

/*
 * A guest hierarchy of @levels levels mapping NPAGES pages at @va to data
 * pages, with tables at "addresses" @tbl(k) = base + k * 4 KiB (k = level)
 * written at host pointer at(wbase + k * 4 KiB). For the 1D copy base is an
 * HPA; for the 2D copy a GPA, written where the nested tables put it.
 */
static uint64_t
build_guest(struct bench *b, unsigned levels, uint64_t va, uint64_t base, pgm_hpa_t wbase,
            uint64_t data)
{
    for (unsigned l = levels; l >= 2; l--) {
        unsigned idx = (unsigned)(va >> (12 + 9 * (l - 1))) & 511;
        at(b, wbase + 0x1000ull * l)[idx] = (base + 0x1000ull * (l - 1)) | 0x7;
    }
    for (unsigned i = 0; i < NPAGES; i++) {
        unsigned idx = (unsigned)((va >> 12) + i) & 511;
        at(b, wbase + 0x1000)[idx] = (data + 0x1000ull * i) | 0x67; /* A, D set */
    }
    /* A set on the upper levels too, so no walk writes. */
    for (unsigned l = levels; l >= 2; l--) {
        unsigned idx = (unsigned)(va >> (12 + 9 * (l - 1))) & 511;
        at(b, wbase + 0x1000ull * l)[idx] |= 0x20;
    }
    return base + 0x1000ull * levels;
}

/* Nested tables (EPT or NPT, @levels) at B + 0x100000.. mapping GPA [0, 2 MiB) 4 KiB-wise. */
static pgm_hpa_t
build_nested(struct bench *b, unsigned levels, bool npt)
{
    pgm_hpa_t base = b->B + 0x100000;
    uint64_t t = 0x7, leaf = npt ? 0x67 : 0x37 | 0x300; /* NPT: P RW US A D; EPT: RWX WB A D */
    if (!npt)
        t |= 0x100; /* EPT A */
    else
        t |= 0x20;
    for (unsigned l = levels; l >= 2; l--)
        at(b, base + 0x1000ull * l)[0] = (base + 0x1000ull * (l - 1)) | t;
    for (unsigned i = 0; i < 512; i++)
        at(b, base + 0x1000)[i] = (b->B + RAM_OFF + 0x1000ull * i) | leaf;
    return base + 0x1000ull * levels;
}

/* ns for @n flushes (and translations) on vCPU @cpu. */
static double
chunk(struct bench *b, unsigned cpu, enum pgm_flush_scope scope, uint64_t va, bool translate,
      unsigned long n, uint64_t *sink)
{
    double t0 = now_ns();
    for (unsigned long i = 0; i < n; i++) {
        uint64_t a = va + ((i % NPAGES) << 12);
        struct pgm_flush_req req = { .scope = scope, .addr = a };
        b->ops->flush(b->sb, cpu, &req);
        if (translate) {
            struct pgm_soft_mmu_result r;
            pgm_soft_mmu_translate(b->sb, cpu, a, 0, &r);
            *sink += r.hpa;
        }
    }
    return now_ns() - t0;
}

/* Mean ns per translation (flush subtracted) on vCPU 0 (1D) and vCPU 1 (2D), interleaved. */
static void
measure(struct bench *b, enum pgm_flush_scope scope, uint64_t va, unsigned long iters,
        uint64_t *sink, double *one, double *two)
{
    double t[2] = { 0, 0 }, f[2] = { 0, 0 };
    unsigned long done = 0;
    while (done < iters) {
        unsigned long n = iters - done < 1000 ? iters - done : 1000;
        for (unsigned cpu = 0; cpu < 2; cpu++) {
            f[cpu] += chunk(b, cpu, scope, va, false, n, sink);
            t[cpu] += chunk(b, cpu, scope, va, true, n, sink);
        }
        done += n;
    }
    *one = (t[0] - f[0]) / (double)iters;
    *two = (t[1] - f[1]) / (double)iters;
}

int
main(int argc, char **argv)
{
    unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 0) : 300000ul;
    if (!iters)
        iters = 1;
    struct bench b;
    if (pgm_soft_backend_create(64, &b.sb) < 0)
        return 1;
    b.ops = pgm_soft_backend_ops();
    void *p;
    if (b.ops->alloc_ram_block(b.sb, BLK_PAGES, &b.B, &p) < 0)
        return 1;
    b.P = p;

    static const struct {
        const char *name;
        enum pgm_paging_hw hw;
        unsigned levels; /* guest and nested */
    } cases[] = {
        { "ept 4/4", PGM_PAGING_EPT, 4 },
        { "npt 4/4", PGM_PAGING_NPT, 4 },
        { "ept 5/5", PGM_PAGING_EPT, 5 },
    };
    printf("%-8s %-5s %9s %9s %8s %10s\n", "case", "cache", "1D ns", "2D ns", "2D/1D",
           "refs/walk");
    uint64_t sink = 0;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        unsigned lv = cases[c].levels;
        enum pgm_guest_mode mode = lv == 5 ? PGM_MODE_LA57 : PGM_MODE_AMD64;
        uint64_t va = (3ull << 39) | (5ull << 30) | (7ull << 21) | (16ull << 12);
        memset(b.P, 0, 0x200000); /* tables live in the first 2 MiB */
        /* 1D: the guest's tables at HPAs (B + 0x10000..), data at B + 0x40000. */
        uint64_t cr3_1d = build_guest(&b, lv, va, b.B + 0x10000, b.B + 0x10000, b.B + 0x40000);
        /* 2D: the same tables at GPAs 0x10000.., data at GPA 0x40000. */
        uint64_t cr3_2d = build_guest(&b, lv, va, 0x10000, b.B + RAM_OFF + 0x10000, 0x40000);
        pgm_hpa_t root = build_nested(&b, lv, cases[c].hw == PGM_PAGING_NPT);
        struct pgm_soft_cpu one = { .format = mode, .cr3 = cr3_1d, .wp = true, .nxe = true };
        struct pgm_soft_cpu two = one;
        two.cr3 = cr3_2d;
        two.nested = cases[c].hw;
        two.nested_root = root;
        two.nested_levels = lv;
        two.ept_ad = cases[c].hw == PGM_PAGING_EPT;
        two.nested_nxe = true;

        /* Both sides must agree (same offset in the data pages) before timing. */
        struct pgm_soft_mmu_result r1, r2;
        pgm_soft_mmu_set_cpu(b.sb, 0, &one);
        pgm_soft_mmu_translate(b.sb, 0, va + 0x10, 0, &r1);
        pgm_soft_mmu_set_cpu(b.sb, 1, &two);
        pgm_soft_mmu_translate(b.sb, 1, va + 0x10, 0, &r2);
        if (r1.status != PGM_SOFT_MMU_OK || r2.status != PGM_SOFT_MMU_OK ||
            r1.hpa != b.B + 0x40010 || r2.hpa != b.B + RAM_OFF + 0x40010) {
            fprintf(stderr, "%s: translations wrong (%d %d)\n", cases[c].name, r1.status,
                    r2.status);
            return 1;
        }
        static const enum pgm_flush_scope scopes[2] = { PGM_FLUSH_ALL, PGM_FLUSH_GVA };
        for (int s = 0; s < 2; s++) {
            double best1 = 1e30, best2 = 1e30;
            struct pgm_soft_mmu_stats a, z;
            for (int rep = 0; rep < 3; rep++) {
                double t1, t2;
                pgm_soft_mmu_stats(b.sb, 1, &a);
                measure(&b, scopes[s], va, iters, &sink, &t1, &t2);
                pgm_soft_mmu_stats(b.sb, 1, &z);
                best1 = t1 < best1 ? t1 : best1;
                best2 = t2 < best2 ? t2 : best2;
            }
            double refs = (double)(z.nested_refs - a.nested_refs) /
                          (double)(z.nested_walks - a.nested_walks);
            printf("%-8s %-5s %9.1f %9.1f %8.2f %10.1f\n", cases[c].name, s ? "warm" : "cold",
                   best1, best2, best2 / best1, refs);
        }
    }
    if (sink == 42)
        puts("");
    b.ops->free_ram_block(b.sb, b.B, b.P, BLK_PAGES);
    pgm_soft_backend_destroy(b.sb);
    return 0;
}
