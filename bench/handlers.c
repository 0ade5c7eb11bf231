/* SPDX-License-Identifier: MIT */
/*
 * bench/handlers: what physical handlers cost.
 *
 *  1. An MMIO exit emulated end to end: a guest `mov [rdi], eax` and
 *     `mov eax, [rdi]` on an MMIO page with a trivial handler, through
 *     pgm_trap0e (guest walk, instruction fetch through the guest's tables,
 *     decode, emulation, handler call), beside one guest walk (pgm_walk,
 *     cache hot, A/D set) of the same address in the same process, and the
 *     ratio.
 *  2. Registering and deregistering a WRITE handler on a page mapped by
 *     N = 16 address spaces while the pool holds 1k, 10k and 50k shadow
 *     pages (page tables of a filler address space): the time per call
 *     must stay flat as the pool grows (ratio to the smallest pool printed)
 *     and the counter pgm_stats.handler_entries_touched must grow by N per
 *     call, whatever the population.
 *
 * The backend is the soft backend's memory with load_root/flush that only
 * count, so the numbers are libpgm's own cost.
 *
 * usage: handlers [iterations]   (default 200000 MMIO exits per kind)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgm/pgm.h"

#include "bench_util.h"

static void
count_load(void *ctx, unsigned vcpu, pgm_hpa_t root)
{
    (void)ctx, (void)vcpu, (void)root;
}

static void
count_flush(void *ctx, unsigned vcpu, const struct pgm_flush_req *req)
{
    (void)ctx, (void)vcpu, (void)req;
}

static void
check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "handlers bench: %s\n", what);
        exit(1);
    }
}

static struct pgm_vm *
make_vm(struct pgm_soft_backend *sb, const struct pgm_backend_ops *ops, uint32_t pool_pages,
        uint64_t ram)
{
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    cfg.pool_pages = pool_pages;
    cfg.backend = ops;
    cfg.backend_ctx = sb;
    struct pgm_vm *vm;
    check(pgm_vm_create(&cfg, &vm) == 0 && pgm_phys_add_ram(vm, 0, ram) == 0, "VM creation");
    return vm;
}

static void
start_cpu(struct pgm_vcpu *vcpu, uint64_t cr3)
{
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, .cr4 = PGM_CR4_PAE,
                                .efer = PGM_EFER_LME | PGM_EFER_NXE, .cr3 = cr3 };
    check(pgm_set_cpu_state(vcpu, &st, 0) == 0, "cpu state");
}

/* ---- 1. MMIO exits --------------------------------------------------------------- */

#define MMIO_GPA 0xfe000000ull
#define MMIO_VA  0x600000ull
#define CODE_VA  0x400000ull
#define CODE_GPA 0x10000ull

static uint64_t mmio_calls;

static enum pgm_handler_result
trivial_mmio(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
             enum pgm_access_origin origin, void *user)
{
    (void)vcpu, (void)gpa, (void)origin, (void)user;
    if (!write)
        memset(buf, 0x5a, size);
    mmio_calls++;
    return PGM_HANDLER_HANDLED;
}

static double
time_exits(struct pgm_vcpu *vcpu, struct pgm_vm *vm, const char *insn, uint32_t ec, unsigned n)
{
    put(vm, CODE_GPA, 0);
    check(pgm_phys_write(vm, CODE_GPA, insn, 2) == 0, "code");
    struct pgm_regs regs = { .code_bits = 64, .rflags = 2 };
    struct pgm_fault_out out;
    regs.gpr[PGM_RDI] = MMIO_VA;
    regs.rip = CODE_VA;
    check(pgm_trap0e(vcpu, ec, MMIO_VA, &regs, &out) == 0 && out.result == PGM_FAULT_EMULATED &&
              regs.rip == CODE_VA + 2,
          "MMIO exit not emulated");
    uint64_t calls = mmio_calls;
    double t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        regs.rip = CODE_VA;
        pgm_trap0e(vcpu, ec, MMIO_VA, &regs, &out);
    }
    double t = (now_ns() - t0) / n;
    check(mmio_calls - calls == n, "handler not called once per exit");
    return t;
}

static void
bench_mmio(struct pgm_soft_backend *sb, const struct pgm_backend_ops *ops, unsigned n)
{
    struct pgm_vm *vm = make_vm(sb, ops, 0, 16u << 20);
    check(pgm_phys_add_mmio(vm, MMIO_GPA, 0x1000) == 0, "mmio range");
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_MMIO, .gpa = MMIO_GPA, .size = 0x1000,
                                  .fn = trivial_mmio };
    check(pgm_handler_register(vm, &h) == 0, "mmio handler");
    put(vm, 0x1000, 0x2003);
    put(vm, 0x2000, 0x3003);
    put(vm, 0x3000 + 8 * 2, 0x4003);
    put(vm, 0x3000 + 8 * 3, 0x5003);
    put(vm, 0x4000, CODE_GPA | 0x1);
    put(vm, 0x5000, MMIO_GPA | 0x3);
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    start_cpu(vcpu, 0x1000);

    struct pgm_walk w;
    uint64_t sink = 0;
    pgm_walk(vcpu, MMIO_VA, PGM_ACCESS_WRITE, &w);
    double t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        pgm_walk(vcpu, MMIO_VA, PGM_ACCESS_WRITE, &w);
        sink += w.gpa;
    }
    double walk_ns = (now_ns() - t0) / n;
    double st = time_exits(vcpu, vm, "\x89\x07", PGM_PFEC_W, n); /* mov [rdi], eax */
    double ld = time_exits(vcpu, vm, "\x8b\x07", 0, n);          /* mov eax, [rdi] */
    printf("# MMIO exit, store (trap0e: walk+fetch+decode+handler): %8.1f ns  = %5.1fx walk\n",
           st, st / walk_ns);
    printf("# MMIO exit, load                                       : %8.1f ns  = %5.1fx walk\n",
           ld, ld / walk_ns);
    printf("# guest walk alone (pgm_walk, hot)                      : %8.1f ns  (sink %llu)\n",
           walk_ns, (unsigned long long)(sink & 1));
    pgm_vm_destroy(vm);
}

/* ---- 2. Registration vs pool population -------------------------------------------- */

#define NAS       16u
#define T_GPA     0x10000ull
#define D_GPA     0x11000ull
#define AS_BASE   0x100000ull
#define F_PML4    0x200000ull
#define F_PDPT    0x201000ull
#define F_PD0     0x202000ull
#define F_PT0     0x400000ull

static enum pgm_handler_result
nop_write(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
          enum pgm_access_origin origin, void *user)
{
    (void)vcpu, (void)gpa, (void)buf, (void)size, (void)write, (void)origin, (void)user;
    return PGM_HANDLER_DEFAULT;
}

/*
 * A read fault on a present guest PTE whose shadow entry is missing: the
 * sync path of pgm_trap0e maps it (RESUME).
 */
static void
fault_in(struct pgm_vcpu *vcpu, uint64_t va)
{
    struct pgm_regs regs = { .code_bits = 64, .rflags = 2 };
    struct pgm_fault_out out;
    check(pgm_trap0e(vcpu, 0, va, &regs, &out) == 0 && out.result == PGM_FAULT_RESUME,
          "fault-in");
}

static void
map_target(struct pgm_vcpu *vcpu)
{
    for (unsigned a = 0; a < NAS; a++) {
        pgm_sync_cr3(vcpu, AS_BASE + a * 0x4000ull);
        fault_in(vcpu, 0x1000);
    }
}

struct reg_result {
    double reg_ns, dereg_ns, touched_per_call;
};

static struct reg_result
bench_register(struct pgm_soft_backend *sb, const struct pgm_backend_ops *ops,
               unsigned population, unsigned iters)
{
    uint64_t ram = F_PT0 + (uint64_t)population * 0x1000 + (1u << 20);
    struct pgm_vm *vm = make_vm(sb, ops, population + 2048, ram);
    for (unsigned a = 0; a < NAS; a++) {
        uint64_t b = AS_BASE + a * 0x4000ull;
        put(vm, b, (b + 0x1000) | 0x27);
        put(vm, b + 0x1000, (b + 0x2000) | 0x27);
        put(vm, b + 0x2000, (b + 0x3000) | 0x27);
        put(vm, b + 0x3000 + 8, T_GPA | 0x67);
    }
    put(vm, F_PML4, F_PDPT | 0x27);
    for (unsigned j = 0; j < population; j++) {
        uint64_t pt = F_PT0 + j * 0x1000ull;
        if (j % 512 == 0)
            put(vm, F_PDPT + (j / 512) * 8, (F_PD0 + (j / 512) * 0x1000ull) | 0x27);
        put(vm, F_PD0 + (j / 512) * 0x1000ull + (j % 512) * 8, pt | 0x27);
        put(vm, pt, D_GPA | 0x67);
    }
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    start_cpu(vcpu, F_PML4);
    for (unsigned j = 0; j < population; j++)
        fault_in(vcpu, (uint64_t)j << 21);

    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = T_GPA, .size = 0x1000,
                                  .fn = nop_write };
    struct pgm_stats s0, s1;
    pgm_stats(vm, &s0);
    double treg = 0, tdereg = 0;
    for (unsigned i = 0; i < iters; i++) {
        map_target(vcpu);
        double t0 = now_ns();
        pgm_handler_register(vm, &h);
        double t1 = now_ns();
        map_target(vcpu);
        double t2 = now_ns();
        pgm_handler_deregister(vm, T_GPA);
        double t3 = now_ns();
        treg += t1 - t0;
        tdereg += t3 - t2;
    }
    pgm_stats(vm, &s1);
    check(s1.pool_evictions == s0.pool_evictions, "the filler was evicted: pool too small");
    char msg[256];
    check(pgm_audit(vm, msg, sizeof(msg)) == 0, msg);
    pgm_vm_destroy(vm);
    return (struct reg_result){
        .reg_ns = treg / iters,
        .dereg_ns = tdereg / iters,
        .touched_per_call =
            (double)(s1.handler_entries_touched - s0.handler_entries_touched) / (2.0 * iters),
    };
}

int
main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 200000;
    if (n == 0)
        n = 200000;
    struct pgm_soft_backend *sb;
    check(pgm_soft_backend_create(1u << 18, &sb) == 0, "soft backend");
    struct pgm_backend_ops ops = *pgm_soft_backend_ops();
    ops.load_root = count_load;
    ops.flush = count_flush;

    bench_mmio(sb, &ops, n);

    static const unsigned pops[] = { 1000, 10000, 50000 };
    struct reg_result r[3];
    for (unsigned i = 0; i < 3; i++) {
        r[i] = bench_register(sb, &ops, pops[i], 2000);
        printf("# WRITE handler on a page mapped by %u address spaces, pool of %5u shadow pages:"
               " register %7.1f ns (%4.2fx), deregister %7.1f ns (%4.2fx),"
               " %.1f entries touched per call\n",
               NAS, pops[i], r[i].reg_ns, r[i].reg_ns / r[0].reg_ns, r[i].dereg_ns,
               r[i].dereg_ns / r[0].dereg_ns, r[i].touched_per_call);
    }
    pgm_soft_backend_destroy(sb);
    return 0;
}
