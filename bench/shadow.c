/* SPDX-License-Identifier: MIT */
/*
 * bench/shadow: the shadow engine's per-operation costs, each printed beside
 * a baseline measured in the same run - one guest walk (pgm_walk, cache hot,
 * A/D already set) of the same kind of address - and the ratio:
 *
 *   trap0e sync      pgm_trap0e on a page whose guest PTE is present and
 *                    whose shadow entry is missing (the common fault), for
 *                    64 pages cycled (cache hot) and for the first touch of
 *                    16384 pages (cold: new shadow pages and reverse-map
 *                    nodes each time)
 *   sync_cr3 cached  pgm_sync_cr3 between two address spaces whose roots
 *                    the pool already holds
 *   PTE write        the guest rewriting one of its (shadowed) PTEs: the
 *                    write faults, pgm_trap0e emulates `mov [rdi], rax` and
 *                    zaps the shadow entry
 *
 * and an OS-like trace (a fork of a 1000-page process) with unsync on and
 * off: writes libpgm had to finish, guest walks (faults), and time.
 *
 * The backend is the soft backend's memory with load_root/flush that only
 * count, so the numbers are libpgm's own cost, not a TLB model's.
 *
 * usage: shadow [pages]   (default 16384 distinct pages per trap0e round)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgm/pgm.h"

#include "bench_util.h"

static uint64_t loads, flushes;

static void
count_load(void *ctx, unsigned vcpu, pgm_hpa_t root)
{
    (void)ctx;
    (void)vcpu;
    (void)root;
    loads++;
}

static void
count_flush(void *ctx, unsigned vcpu, const struct pgm_flush_req *req)
{
    (void)ctx;
    (void)vcpu;
    (void)req;
    flushes++;
}

#define PML4A 0x1000u
#define PML4B 0x2000u
#define PDPT  0x3000u
#define PD    0x4000u
#define PT0   0x100000u  /* page tables from 1 MiB up, data above 64 MiB */
#define DATA  0x4000000u

/*
 * An OS-like trace: a process of 1000 pages forks, so the kernel rewrites
 * all its PTEs read-only (copy-on-write) through a mapping of its page
 * tables, touching the process's memory now and then, and flushes with a
 * CR3 reload. Returns the writes libpgm had to finish and the ns spent.
 */
static double
fork_trace(struct pgm_soft_backend *sb, uint32_t unsync_threshold, uint64_t *finished,
           uint64_t *faults)
{
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    cfg.unsync_threshold = unsync_threshold;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = sb;
    struct pgm_vm *vm;
    if (pgm_vm_create(&cfg, &vm) < 0 || pgm_phys_add_ram(vm, 0, 64u << 20) < 0)
        exit(1);
    put(vm, 0x1000, 0x2007);
    put(vm, 0x2000, 0x3007);
    put(vm, 0x3000, 0x4007);                 /* VA 0 .. 2 MiB */
    put(vm, 0x3008, 0x5007);                 /* VA 2 .. 4 MiB */
    put(vm, 0x4008, 0x4003);                 /* VA 0x1000 -> PT 0 */
    put(vm, 0x4010, 0x5003);                 /* VA 0x2000 -> PT 1 */
    for (unsigned p = 0; p < 1000; p++) {    /* process pages from VA 0x10000 */
        uint64_t slot = 16 + p;
        put(vm, (slot < 512 ? 0x4000 : 0x5000) + 8 * (slot % 512), (0x100000 + 0x1000ull * p) | 0x67);
    }
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, .cr4 = PGM_CR4_PAE,
                                .efer = PGM_EFER_LME | PGM_EFER_NXE, .cr3 = 0x1000 };
    pgm_set_cpu_state(vcpu, &st, 0);
    struct pgm_fault_out out;
    uint64_t v;
    /* the process runs: every page touched once */
    for (unsigned p = 0; p < 1000; p++)
        pgm_soft_access(vcpu, 0x10000 + 0x1000ull * p, 0, &v, 8, &out);
    struct pgm_stats before, after;
    pgm_stats(vm, &before);
    double t0 = now_ns();
    for (unsigned p = 0; p < 1000; p++) {
        uint64_t slot = 16 + p;
        uint64_t va = (slot < 512 ? 0x1000 : 0x2000) + 8 * (slot % 512);
        uint64_t pte;
        pgm_soft_access(vcpu, va, 0, &pte, 8, &out);
        pte &= ~2ull;
        pgm_soft_access(vcpu, va, PGM_ACCESS_WRITE, &pte, 8, &out);
        if (p % 64 == 0)
            pgm_soft_access(vcpu, 0x10000 + 0x1000ull * p, 0, &v, 8, &out);
    }
    pgm_sync_cr3(vcpu, 0x1000);
    double t = now_ns() - t0;
    pgm_stats(vm, &after);
    char msg[256];
    if (pgm_audit(vm, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "fork audit: %s\n", msg);
        exit(1);
    }
    *finished = after.shadow_finished - before.shadow_finished;
    *faults = after.walks - before.walks;
    pgm_vm_destroy(vm);
    return t;
}

int
main(int argc, char **argv)
{
    unsigned pages = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 16384;
    if (pages < 512 || pages > 512 * 256)
        pages = 16384;
    unsigned tables = pages / 512;
    struct pgm_soft_backend *sb;
    if (pgm_soft_backend_create(1u << 18, &sb) < 0)
        return 1;
    struct pgm_backend_ops ops = *pgm_soft_backend_ops();
    ops.load_root = count_load;
    ops.flush = count_flush;
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    cfg.pool_pages = 4096;
    cfg.flood_threshold = 1u << 30; /* the PTE rounds below would look like a flood */
    cfg.unsync_threshold = PGM_UNSYNC_OFF; /* ... or go out of sync: measure the writes */
    cfg.backend = &ops;
    cfg.backend_ctx = sb;
    struct pgm_vm *vm;
    if (pgm_vm_create(&cfg, &vm) < 0 || pgm_phys_add_ram(vm, 0, 256u << 20) < 0)
        return 1;
    /* Two address spaces sharing the PDPT; PD maps `tables` page tables. */
    put(vm, PML4A, PDPT | 7);
    put(vm, PML4B, PDPT | 7);
    put(vm, PDPT, PD | 7);
    for (unsigned t = 0; t < tables; t++) {
        put(vm, PD + 8 * t, (PT0 + 0x1000ull * t) | 7);
        for (unsigned i = 0; i < 512; i++)
            put(vm, PT0 + 0x1000ull * t + 8 * i, (DATA + 0x1000ull * (t * 512 + i)) | 0x67);
    }
    /* the last page table maps itself at the last slot of PT 0 for the PTE writes */
    put(vm, PT0 + 8 * 511, PT0 | 0x63);
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, .cr4 = PGM_CR4_PAE,
                                .efer = PGM_EFER_LME | PGM_EFER_NXE, .cr3 = PML4A };
    if (pgm_set_cpu_state(vcpu, &st, 0) != 0)
        return 1;

    struct pgm_walk w;
    struct pgm_regs regs = { .code_bits = 64, .rflags = 2 };
    struct pgm_fault_out out;
    uint64_t sink = 0;

    /* baseline: a cache-hot walk of one of these addresses (A/D set) */
    for (unsigned i = 0; i < 64; i++)
        pgm_walk(vcpu, 0x1000ull * i, PGM_ACCESS_WRITE, &w);
    double t0 = now_ns();
    for (unsigned n = 0; n < 1000000; n++) {
        pgm_walk(vcpu, 0x1000ull * (n & 63), PGM_ACCESS_WRITE, &w);
        sink += w.gpa;
    }
    double walk_ns = (now_ns() - t0) / 1e6;

    /* trap0e: first fault on each page (guest PTE present, shadow missing) */
    t0 = now_ns();
    for (unsigned p = 0; p < pages; p++) {
        pgm_trap0e(vcpu, PGM_PFEC_W, 0x1000ull * p, &regs, &out);
        sink += out.result;
    }
    double trap_ns = (now_ns() - t0) / pages;
    if (out.result != PGM_FAULT_RESUME) {
        fprintf(stderr, "trap0e did not resume (%d)\n", out.result);
        return 1;
    }

    /* sync_cr3 between two cached roots */
    pgm_sync_cr3(vcpu, PML4B);
    pgm_sync_cr3(vcpu, PML4A);
    t0 = now_ns();
    for (unsigned n = 0; n < 500000; n++) {
        pgm_sync_cr3(vcpu, PML4B);
        pgm_sync_cr3(vcpu, PML4A);
    }
    double cr3_ns = (now_ns() - t0) / 1e6;

    /* Hot trap0e and emulated PTE writes: VA 0x1fe000 holds `mov [rdi], rax`,
     * VA 0x1ff000 maps PT 0 itself. Each round rewrites the PTEs of pages
     * 0..63 (alternating frames, so each write changes them and zaps the
     * shadow entry), then faults them in again. */
    put(vm, PT0 + 8 * 510, 0x3ff000 | 0x63);
    pgm_phys_write(vm, 0x3ff000, "\x48\x89\x07", 3);
    struct pgm_stats before, after;
    pgm_stats(vm, &before);
    double hot_ns = 0, pte_ns = 0;
    unsigned rounds = 2000;
    for (unsigned r = 0; r < rounds; r++) {
        double a0 = now_ns();
        for (unsigned i = 0; i < 64; i++) {
            struct pgm_regs er = { .code_bits = 64, .rflags = 2, .rip = 0x1fe000 };
            er.gpr[PGM_RDI] = 0x1ff000 + 8 * i;
            er.gpr[PGM_RAX] = (DATA + 0x1000ull * (i + ((r & 1) ? 64 : 0))) | 0x67;
            pgm_trap0e(vcpu, PGM_PFEC_P | PGM_PFEC_W, er.gpr[PGM_RDI], &er, &out);
            if (out.result != PGM_FAULT_EMULATED) {
                fprintf(stderr, "PTE write not emulated (%d)\n", out.result);
                return 1;
            }
        }
        double a1 = now_ns();
        for (unsigned i = 0; i < 64; i++) {
            pgm_trap0e(vcpu, PGM_PFEC_W, 0x1000ull * i, &regs, &out);
            sink += out.result;
        }
        double a2 = now_ns();
        pte_ns += a1 - a0;
        hot_ns += a2 - a1;
    }
    pte_ns /= 64.0 * rounds;
    hot_ns /= 64.0 * rounds;
    pgm_stats(vm, &after);

    printf("%-18s %10s %14s %8s\n", "operation", "ns", "guest walk ns", "ratio");
    printf("%-18s %10.1f %14.1f %8.2f\n", "trap0e sync", hot_ns, walk_ns, hot_ns / walk_ns);
    printf("%-18s %10.1f %14.1f %8.2f\n", "trap0e first touch", trap_ns, walk_ns, trap_ns / walk_ns);
    printf("%-18s %10.1f %14.1f %8.2f\n", "sync_cr3 cached", cr3_ns, walk_ns, cr3_ns / walk_ns);
    printf("%-18s %10.1f %14.1f %8.2f\n", "PTE write", pte_ns, walk_ns, pte_ns / walk_ns);
    printf("pool: %llu hits, %llu misses, %llu evictions; %llu writes finished by libpgm, "
           "%llu unshadowed\n",
           (unsigned long long)after.pool_hits, (unsigned long long)after.pool_misses,
           (unsigned long long)after.pool_evictions,
           (unsigned long long)(after.shadow_finished - before.shadow_finished),
           (unsigned long long)after.shadow_unshadowed);
    char msg[256];
    if (pgm_audit(vm, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "audit: %s\n", msg);
        return 1;
    }
    if (sink == 42)
        puts("");
    pgm_vm_destroy(vm);

    uint64_t fin_on, fin_off, faults_on, faults_off;
    double ns_on = fork_trace(sb, 0, &fin_on, &faults_on);
    double ns_off = fork_trace(sb, PGM_UNSYNC_OFF, &fin_off, &faults_off);
    printf("fork of a 1000-page process: unsync on: %llu writes finished by libpgm, "
           "%llu guest walks, %.0f us; unsync off: %llu, %llu, %.0f us (ratio %.2f)\n",
           (unsigned long long)fin_on, (unsigned long long)faults_on, ns_on / 1e3,
           (unsigned long long)fin_off, (unsigned long long)faults_off, ns_off / 1e3,
           ns_off / ns_on);
    pgm_soft_backend_destroy(sb);
    return 0;
}
