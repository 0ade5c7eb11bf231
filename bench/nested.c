/* SPDX-License-Identifier: MIT */
/*
 * bench/nested: the nested engine's costs, each printed beside a baseline
 * measured in the same run - one guest walk (pgm_walk of a 4-level guest
 * address, cache hot, A/D already set) - and the ratio:
 *
 *   first touch, write  pgm_nested_fault for the first write to a page of
 *                       RAM (page allocated, leaf and missing tables built),
 *                       4 KiB leaves only, N distinct pages
 *   first touch, read   the same for a first read (shared zero page mapped)
 *   MMIO fast path      an access to a device page through the fast-exit
 *                       marker: pgm_nested_fault with the misconfiguration
 *                       flag -> decode and emulate `mov [ebx], eax` ->
 *                       handler; and the same exit without the marker
 *                       (a not-present violation: the table walk first)
 *
 *   dirty-log round    one round of a dirty log over N pages, every page
 *                      written once: per page, the first-write fault
 *                      (write-protect: claimed at the fault, no emulation;
 *                      EPT D bits: no fault, the D bit set as the CPU would)
 *                      plus pgm_dirty_log_get_and_clear's share
 *
 * and the memory overhead of 1 GiB of guest RAM fully touched (one write per
 * 4 KiB page, through a nested-table walk done here as the CPU would, a
 * fault where it stops): nested table pages (and KiB) with 4 KiB leaves,
 * 2 MiB leaves and 1 GiB leaves.
 *
 * The backend is the soft backend's memory with a flush op that only
 * counts, so the numbers are libpgm's own cost.
 *
 * usage: nested [pages]   (default 16384 pages per first-touch round)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgm/pgm.h"

#include "bench_util.h"

static uint64_t flushes;

static void
count_flush(void *ctx, unsigned vcpu, const struct pgm_flush_req *req)
{
    (void)ctx;
    (void)vcpu;
    (void)req;
    flushes++;
}

static void
die(const char *what)
{
    fprintf(stderr, "nested bench: %s failed\n", what);
    exit(1);
}

static struct pgm_backend_ops ops;

static struct pgm_vm *
make_vm(struct pgm_soft_backend *sb, enum pgm_paging_hw fmt, uint32_t flags)
{
    struct pgm_nested_config nc;
    pgm_nested_config_init(&nc);
    nc.flags = flags;
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = fmt;
    cfg.nested = &nc;
    cfg.backend = &ops;
    cfg.backend_ctx = sb;
    struct pgm_vm *vm;
    if (pgm_vm_create(&cfg, &vm) < 0)
        die("pgm_vm_create");
    return vm;
}

/* Baseline: ns per pgm_walk of a mapped guest address (4-level, hot). */
static double
walk_baseline(struct pgm_soft_backend *sb)
{
    struct pgm_vm *vm = make_vm(sb, PGM_PAGING_EPT, 0);
    if (pgm_phys_add_ram(vm, 0, 16u << 20) < 0)
        die("add_ram");
    put(vm, 0x1000, 0x2007);
    put(vm, 0x2000, 0x3007);
    put(vm, 0x3000, 0x4007);
    put(vm, 0x4000 + 8 * 5, 0x9067);
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG, .cr4 = PGM_CR4_PAE,
                                .efer = PGM_EFER_LME, .cr3 = 0x1000 };
    if (pgm_set_cpu_state(vcpu, &st, 0) != 0)
        die("set_cpu_state");
    struct pgm_walk w;
    const unsigned n = 1000000;
    double t0 = now_ns();
    for (unsigned i = 0; i < n; i++)
        pgm_walk(vcpu, 0x5000 + (i & 0xff8), 0, &w);
    double t = (now_ns() - t0) / n;
    if (w.status != PGM_WALK_OK)
        die("baseline walk");
    pgm_vm_destroy(vm);
    return t;
}

/* ns per first-touch nested fault (4 KiB leaves). */
static double
first_touch(struct pgm_soft_backend *sb, enum pgm_paging_hw fmt, unsigned pages, bool write)
{
    struct pgm_vm *vm = make_vm(sb, fmt, 0);
    if (pgm_phys_add_ram(vm, 0, (uint64_t)pages << 12) < 0)
        die("add_ram");
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    struct pgm_fault_out out;
    double t0 = now_ns();
    for (unsigned p = 0; p < pages; p++)
        if (pgm_nested_fault(vcpu, (uint64_t)p << 12, write ? PGM_ACCESS_WRITE : 0, NULL, NULL,
                             &out) != 0 ||
            out.result != PGM_FAULT_RESUME)
            die("first-touch fault");
    double t = (now_ns() - t0) / pages;
    char msg[256];
    if (pgm_audit(vm, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "audit: %s\n", msg);
        exit(1);
    }
    pgm_vm_destroy(vm);
    return t;
}

static uint32_t dev_value;

static enum pgm_handler_result
dev(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
    enum pgm_access_origin origin, void *user)
{
    (void)vcpu;
    (void)gpa;
    (void)origin;
    (void)user;
    if (write)
        memcpy(&dev_value, buf, size < 4 ? size : 4);
    return PGM_HANDLER_HANDLED;
}

/* ns per MMIO exit: fault -> emulate `mov [ebx], eax` -> handler. */
static double
mmio_exit(struct pgm_soft_backend *sb, enum pgm_paging_hw fmt, bool marker)
{
    struct pgm_vm *vm = make_vm(sb, fmt, marker ? 0 : PGM_NESTED_NO_MMIO_MARKER);
    if (pgm_phys_add_ram(vm, 0, 1u << 20) < 0 || pgm_phys_add_mmio(vm, 0xfee00000, 0x1000) < 0)
        die("ranges");
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_MMIO, .gpa = 0xfee00000, .size = 0x1000,
                                  .fn = dev };
    if (pgm_handler_register(vm, &h) < 0)
        die("handler");
    static const uint8_t code[2] = { 0x89, 0x03 };
    if (pgm_phys_write(vm, 0x10000, code, 2) < 0)
        die("code");
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE };
    if (pgm_set_cpu_state(vcpu, &st, 0) != 0)
        die("set_cpu_state");
    struct pgm_regs regs;
    struct pgm_fault_out out;
    struct pgm_nested_fault_info info = { .flags = marker ? PGM_NESTED_FI_MISCONFIG : 0 };
    /* The first exit installs the marker (when used). */
    memset(&regs, 0, sizeof(regs));
    regs.code_bits = 32;
    regs.rip = 0x10000;
    regs.gpr[PGM_RBX] = 0xfee00010;
    pgm_nested_fault(vcpu, 0xfee00010, PGM_ACCESS_WRITE, NULL, &regs, &out);
    const unsigned n = 200000;
    double t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        regs.rip = 0x10000;
        regs.gpr[PGM_RAX] = i;
        if (pgm_nested_fault(vcpu, 0xfee00010, PGM_ACCESS_WRITE, &info, &regs, &out) != 0 ||
            out.result != PGM_FAULT_EMULATED)
            die("mmio exit");
    }
    double t = (now_ns() - t0) / n;
    if (dev_value != n - 1)
        die("mmio value");
    struct pgm_stats s;
    pgm_stats(vm, &s);
    if (marker && s.nested_mmio_fast != n)
        die("fast path not taken");
    pgm_vm_destroy(vm);
    return t;
}

/* ns per page of a dirty-log round: first writes (faults in WP mode) + harvest. */
static double
dirty_round(struct pgm_soft_backend *sb, bool dbit, unsigned pages, double *harvest_ns)
{
    struct pgm_vm *vm = make_vm(sb, PGM_PAGING_EPT, dbit ? PGM_NESTED_EPT_AD : 0);
    uint64_t size = (uint64_t)pages << 12;
    if (pgm_phys_add_ram(vm, 0, size) < 0)
        die("add_ram");
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    struct pgm_fault_out out;
    for (unsigned p = 0; p < pages; p++) /* mapped writable before the log starts */
        pgm_nested_fault(vcpu, (uint64_t)p << 12, PGM_ACCESS_WRITE, NULL, NULL, &out);
    if (pgm_dirty_log_start(vm, 0, size) < 0)
        die("dirty_log_start");
    struct pgm_nested_root_info ri;
    pgm_nested_info(vm, &ri);
    uint64_t *bits = calloc((pages + 63) / 64, sizeof(uint64_t));
    double t0 = now_ns();
    for (unsigned p = 0; p < pages; p++) {
        uint64_t gpa = (uint64_t)p << 12;
        if (dbit) {
            /* The CPU sets D in the leaf (4 levels, 4 KiB leaves here). */
            uint64_t table = ri.root;
            for (unsigned level = 4; level > 1; level--)
                table = ((uint64_t *)ops.hpa_to_ptr(sb, table))[(gpa >> (12 + 9 * (level - 1))) & 511] &
                        0x000ffffffffff000ull;
            uint64_t *leaf = &((uint64_t *)ops.hpa_to_ptr(sb, table))[(gpa >> 12) & 511];
            __atomic_fetch_or(leaf, PGM_EPT_D, __ATOMIC_RELAXED);
        } else if (pgm_nested_fault(vcpu, gpa, PGM_ACCESS_WRITE, NULL, NULL, &out) != 0 ||
                   out.result != PGM_FAULT_RESUME) {
            die("dirty write fault");
        }
    }
    double t1 = now_ns();
    if (pgm_dirty_log_get_and_clear(vm, 0, bits) < 0)
        die("get_and_clear");
    double t2 = now_ns();
    for (unsigned p = 0; p < pages; p++)
        if (!(bits[p / 64] >> (p % 64) & 1))
            die("page not reported");
    free(bits);
    pgm_vm_destroy(vm);
    *harvest_ns = (t2 - t1) / pages;
    return (t1 - t0) / pages;
}

/* The CPU's side for the memory test: is @gpa writable through the tables? */
static int
hw_writable(struct pgm_soft_backend *sb, const struct pgm_nested_root_info *ri, uint64_t gpa)
{
    uint64_t table = ri->root;
    for (unsigned level = ri->levels; level >= 1; level--) {
        const uint64_t *t = ops.hpa_to_ptr(sb, table);
        uint64_t e = t[(gpa >> (12 + 9 * (level - 1))) & 511];
        bool present = ri->format == PGM_PAGING_EPT ? (e & 7) != 0 : (e & 1) != 0;
        if (!present)
            return 0;
        if (level == 1 || (e & 0x80))
            return (e & 2) != 0;
        table = e & 0x000ffffffffff000ull;
    }
    return 0;
}

/* Nested table pages after 1 GiB of RAM is fully written; also faults and ns. */
static uint64_t
gib_touched(struct pgm_soft_backend *sb, uint32_t flags, uint64_t *faults, double *ns)
{
    struct pgm_vm *vm = make_vm(sb, PGM_PAGING_EPT, flags);
    const uint64_t gib = 1ull << 30;
    if (pgm_phys_add_ram(vm, gib, gib) < 0)
        die("add_ram 1 GiB");
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    struct pgm_nested_root_info ri;
    pgm_nested_info(vm, &ri);
    struct pgm_fault_out out;
    double t0 = now_ns();
    for (uint64_t a = gib; a < 2 * gib; a += 4096)
        if (!hw_writable(sb, &ri, a) &&
            (pgm_nested_fault(vcpu, a, PGM_ACCESS_WRITE, NULL, NULL, &out) != 0 ||
             out.result != PGM_FAULT_RESUME))
            die("touch");
    *ns = now_ns() - t0;
    struct pgm_stats s;
    pgm_stats(vm, &s);
    *faults = s.nested_faults;
    pgm_vm_destroy(vm);
    return s.nested_table_pages;
}

int
main(int argc, char **argv)
{
    unsigned pages = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 16384;
    if (!pages)
        pages = 16384;
    struct pgm_soft_backend *sb;
    if (pgm_soft_backend_create(1u << 20, &sb) < 0)
        die("backend");
    ops = *pgm_soft_backend_ops();
    ops.flush = count_flush;

    double base = walk_baseline(sb);
    printf("nested: baseline pgm_walk (4-level, hot)            %8.1f ns\n", base);
    static const enum pgm_paging_hw fmts[2] = { PGM_PAGING_EPT, PGM_PAGING_NPT };
    for (int f = 0; f < 2; f++) {
        const char *name = fmts[f] == PGM_PAGING_EPT ? "EPT" : "NPT";
        double w = first_touch(sb, fmts[f], pages, true);
        double r = first_touch(sb, fmts[f], pages, false);
        printf("nested: %s first touch, write (%u pages)      %8.1f ns  %6.1fx walk\n", name,
               pages, w, w / base);
        printf("nested: %s first touch, read (zero page)       %8.1f ns  %6.1fx walk\n", name,
               r, r / base);
        double fast = mmio_exit(sb, fmts[f], true);
        double slow = mmio_exit(sb, fmts[f], false);
        printf("nested: %s MMIO exit, fast path (marker)       %8.1f ns  %6.1fx walk\n", name,
               fast, fast / base);
        printf("nested: %s MMIO exit, not-present violation    %8.1f ns  %6.1fx walk\n", name,
               slow, slow / base);
    }
    for (int dbit = 0; dbit < 2; dbit++) {
        double harvest;
        double w = dirty_round(sb, dbit, pages, &harvest);
        printf("nested: EPT dirty log %-6s first write/page    %8.1f ns  %6.1fx walk\n",
               dbit ? "D bits" : "WP", w, w / base);
        printf("nested: EPT dirty log %-6s harvest/page        %8.1f ns  %6.1fx walk\n",
               dbit ? "D bits" : "WP", harvest, harvest / base);
    }
    static const struct {
        const char *name;
        uint32_t flags;
    } sizes[3] = { { "4 KiB", 0 }, { "2 MiB", PGM_NESTED_LARGE_2M },
                   { "1 GiB", PGM_NESTED_LARGE_2M | PGM_NESTED_LARGE_1G } };
    uint64_t small = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t faults;
        double ns;
        uint64_t tp = gib_touched(sb, sizes[i].flags, &faults, &ns);
        if (i == 0)
            small = tp;
        printf("nested: EPT 1 GiB touched, %s leaves: %6llu table pages (%7llu KiB, %5.3fx of 4 KiB), "
               "%6llu faults, %6.1f ms\n",
               sizes[i].name, (unsigned long long)tp, (unsigned long long)tp * 4,
               (double)tp / (double)small, (unsigned long long)faults, ns / 1e6);
    }
    printf("nested: flush requests made: %llu\n", (unsigned long long)flushes);
    pgm_soft_backend_destroy(sb);
    return 0;
}
