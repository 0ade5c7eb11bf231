/* SPDX-License-Identifier: MIT */
/*
 * bench/walk: mean ns per cache-hot guest walk (pgm_walk, A/D already set)
 * for each paged mode, beside a baseline measured in the same run: a bare
 * pointer chase over the same table entries in a flat copy of guest memory
 * (read entry, mask address, index the next table - no checks at all).
 * The ratio is what matters; absolute times depend on the machine.
 *
 * Guest RAM is measured both ways the soft backend can back it: one
 * host-contiguous block (GPA -> host pointer is arithmetic) and page by page
 * (one descriptor load per level).
 *
 * usage: walk [iterations]   (default 2000000 per mode and measurement)
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgm/pgm.h"

#include "bench_util.h"

#define RAM_SIZE   (8u << 20)
#define NPAGES     64          /* distinct VAs walked round-robin: all cache-hot */

struct mode_setup {
    const char *name;
    enum pgm_guest_mode mode;
    unsigned levels;
    unsigned esize;
    unsigned idx_bits;
};

static const struct mode_setup modes[] = {
    { "32bit 4K", PGM_MODE_32BIT, 2, 4, 10 },
    { "pae 4K", PGM_MODE_PAE, 3, 8, 9 },
    { "amd64 4K", PGM_MODE_AMD64, 4, 8, 9 },
    { "la57 4K", PGM_MODE_LA57, 5, 8, 9 },
};

static unsigned
shift_of(const struct mode_setup *m, unsigned level)
{
    return 12 + m->idx_bits * (level - 1);
}

/* Build one chain of tables per level for NPAGES consecutive pages at va_base. */
static void
build(struct pgm_vm *vm, const struct mode_setup *m, uint64_t va_base, uint64_t *cr3)
{
    uint64_t next = 0x10000;
    uint64_t table[6] = { 0 };
    unsigned top = m->levels;
    /* PAE: the 4-entry PDPT lives at 0x1000 and is not a full level. */
    for (unsigned l = top; l >= 1; l--) {
        table[l] = next;
        next += 0x1000;
    }
    if (m->mode == PGM_MODE_PAE)
        table[3] = 0x1000;
    for (unsigned l = top; l > 1; l--) {
        uint64_t idx = (va_base >> shift_of(m, l)) & ((1u << m->idx_bits) - 1);
        if (m->mode == PGM_MODE_PAE && l == 3)
            idx = (va_base >> 30) & 3;
        uint64_t e = table[l - 1] | (m->mode == PGM_MODE_PAE && l == 3 ? 0x1 : 0x67);
        pgm_phys_write(vm, table[l] + idx * m->esize, &e, m->esize);
    }
    for (unsigned i = 0; i < NPAGES; i++) {
        uint64_t va = va_base + ((uint64_t)i << 12);
        uint64_t idx = (va >> 12) & ((1u << m->idx_bits) - 1);
        uint64_t e = (0x200000 + ((uint64_t)i << 12)) | 0x67;
        pgm_phys_write(vm, table[1] + idx * m->esize, &e, m->esize);
    }
    *cr3 = table[top];
}

/* The baseline: follow the same entries through a flat image of guest RAM. */
static uint64_t
chase(const uint8_t *flat, const struct mode_setup *m, uint64_t cr3, uint64_t va)
{
    uint64_t table = cr3;
    unsigned level = m->levels;
    if (m->mode == PGM_MODE_PAE) {
        uint64_t e;
        memcpy(&e, flat + cr3 + ((va >> 30) & 3) * 8, 8);
        table = e & 0x000ffffffffff000ull;
        level = 2;
    }
    uint64_t e = 0;
    for (;; level--) {
        uint64_t off = table + ((va >> shift_of(m, level)) & ((1u << m->idx_bits) - 1)) * m->esize;
        if (m->esize == 4) {
            uint32_t e32;
            memcpy(&e32, flat + off, 4);
            e = e32;
        } else {
            memcpy(&e, flat + off, 8);
        }
        if (level == 1)
            break;
        table = e & (m->esize == 4 ? 0xfffff000ull : 0x000ffffffffff000ull);
    }
    return (e & 0x000ffffffffff000ull) | (va & 0xfff);
}

int
main(int argc, char **argv)
{
    unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 0) : 2000000ul;
    if (!iters)
        iters = 1;
    struct pgm_soft_backend *sb;
    if (pgm_soft_backend_create(4096, &sb) < 0)
        return 1;
    uint8_t *flat = malloc(RAM_SIZE);
    if (!flat)
        return 1;
    printf("%-10s %-11s %9s %12s %8s\n", "mode", "measure", "walk ns", "baseline ns", "ratio");
    int status = 0;
    for (size_t run = 0; run < 2 * sizeof(modes) / sizeof(modes[0]); run++) {
        /* First every mode on block-backed RAM, then on page-by-page RAM. */
        size_t nmodes = sizeof(modes) / sizeof(modes[0]);
        const struct mode_setup *m = &modes[run % nmodes];
        bool paged = run >= nmodes;
        if (run == nmodes)
            puts("-- guest RAM backed page by page (no contiguous block) --");
        pgm_soft_backend_set_ram_blocks(sb, !paged);
        struct pgm_vm_config cfg;
        pgm_vm_config_init(&cfg);
        cfg.backend = pgm_soft_backend_ops();
        cfg.backend_ctx = sb;
        struct pgm_vm *vm;
        if (pgm_vm_create(&cfg, &vm) < 0 || pgm_phys_add_ram(vm, 0, RAM_SIZE) < 0)
            return 1;
        uint64_t va_base = m->mode >= PGM_MODE_AMD64 ? 0x7f1234000000ull : 0x40000000ull;
        if (m->mode == PGM_MODE_LA57)
            va_base |= 1ull << 50;
        uint64_t cr3;
        build(vm, m, va_base, &cr3);
        struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, .cr3 = cr3 };
        if (m->mode >= PGM_MODE_PAE)
            st.cr4 |= PGM_CR4_PAE;
        if (m->mode >= PGM_MODE_AMD64)
            st.efer |= PGM_EFER_LME | PGM_EFER_NXE;
        if (m->mode == PGM_MODE_LA57)
            st.cr4 |= PGM_CR4_LA57;
        struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
        if (pgm_set_cpu_state(vcpu, &st, 0) != 0)
            return 1;
        pgm_phys_read(vm, 0, flat, RAM_SIZE);

        /* Check both sides agree before timing anything. */
        struct pgm_walk w;
        for (unsigned i = 0; i < NPAGES; i++) {
            uint64_t va = va_base + ((uint64_t)i << 12) + 0x10;
            if (pgm_walk(vcpu, va, 0, &w) || w.status != PGM_WALK_OK ||
                w.gpa != chase(flat, m, cr3, va)) {
                fprintf(stderr, "%s: walk and baseline disagree at %#" PRIx64 "\n", m->name, va);
                return 1;
            }
        }

        /*
         * Two measurements per side, best of three runs each:
         *  latency:    each walk's VA depends on the previous result (through
         *              a term that is always 0 but unknown to the CPU), as in
         *              a fault handler that waits for its walk;
         *  throughput: independent walks the CPU may overlap.
         */
        uint64_t sink = 0;
        double best[2][2] = { { 1e30, 1e30 }, { 1e30, 1e30 } }; /* [lat/tput][walk/chase] */
        for (int rep = 0; rep < 3; rep++) {
            uint64_t prev = 0;
            double t0 = now_ns();
            for (unsigned long i = 0; i < iters; i++) {
                uint64_t va = va_base + (((i + (prev >> 63)) % NPAGES) << 12);
                pgm_walk(vcpu, va, PGM_ACCESS_WRITE, &w);
                prev = w.gpa;
            }
            double t1 = now_ns();
            for (unsigned long i = 0; i < iters; i++)
                prev = chase(flat, m, cr3, va_base + (((i + (prev >> 63)) % NPAGES) << 12));
            double t2 = now_ns();
            for (unsigned long i = 0; i < iters; i++) {
                pgm_walk(vcpu, va_base + ((i % NPAGES) << 12), PGM_ACCESS_WRITE, &w);
                sink += w.gpa;
            }
            double t3 = now_ns();
            for (unsigned long i = 0; i < iters; i++)
                sink += chase(flat, m, cr3, va_base + ((i % NPAGES) << 12));
            double t4 = now_ns();
            sink += prev;
            double t[2][2] = { { t1 - t0, t2 - t1 }, { t3 - t2, t4 - t3 } };
            for (int k = 0; k < 2; k++)
                for (int j = 0; j < 2; j++)
                    if (t[k][j] / (double)iters < best[k][j])
                        best[k][j] = t[k][j] / (double)iters;
        }
        static const char *const kind[2] = { "latency", "throughput" };
        for (int k = 0; k < 2; k++)
            printf("%-10s %-11s %9.2f %12.2f %8.2f\n", m->name, kind[k], best[k][0], best[k][1],
                   best[k][0] / best[k][1]);
        if (sink == 42)
            puts("");
        pgm_vm_destroy(vm);
    }
    free(flat);
    pgm_soft_backend_destroy(sb);
    return status;
}
