/* SPDX-License-Identifier: MIT */
/*
 * fuzz_nested: the nested engine (EPT / NPT) under random operation
 * sequences - nested faults with and without registers, handler register /
 * deregister / temp-off / reset, ROM mode switches, dirty logs, VMM writes,
 * range removal and re-adding, allocation failures - played against a
 * hardware walk of the nested tables done here with the vendor classifiers.
 * After every operation: pgm_audit must be clean (laws 2 and 3), and a walk
 * of a random GPA that the tables allow must reach the bytes the physical
 * layer holds for that GPA (law 1), writes included.
 *
 * Input: byte 0 format and flags, byte 1 backend failure point (0: none),
 * then 4-byte operations (op, a, b, c). Guest-physical layout: RAM 0-8 MiB
 * (a RAM block when byte 0 bit 5 is clear), RAM 8-12 MiB page by page or
 * block (removable), ROM 16 MiB (16 KiB), MMIO 20 MiB (one page, handler).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgm/pgm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MIB      (1ull << 20)
#define RAM2     (8 * MIB)
#define ROM_GPA  (16 * MIB)
#define MMIO_GPA (20 * MIB)
#define CODE_GPA 0x10000ull

struct fz {
    struct pgm_soft_backend *sb;
    struct pgm_backend_ops ops;
    struct pgm_nested_config nc;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    struct pgm_nested_root_info ri;
    uint8_t answer; /* handler result */
};

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_nested: %s\n", what);
        abort();
    }
}

static enum pgm_handler_result
handler(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
        enum pgm_access_origin origin, void *user)
{
    (void)vcpu;
    (void)gpa;
    (void)origin;
    struct fz *f = user;
    if (!write)
        memset(buf, 0x5a, size);
    return f->answer % 3 == 0 ? PGM_HANDLER_DEFAULT
                              : f->answer % 3 == 1 ? PGM_HANDLER_HANDLED : PGM_HANDLER_EXIT;
}

/* The CPU's walk of the nested tables: host pointer of @gpa if @write (or a read) is allowed. */
static uint8_t *
hw_walk(struct fz *f, pgm_gpa_t gpa, bool write)
{
    struct pgm_vtx_ept_env ept = { .maxphyaddr = f->nc.host_maxphyaddr };
    pgm_vtx_decode_ept_caps(f->nc.ept_caps, &ept.caps);
    struct pgm_svm_npt_env npt = { .maxphyaddr = f->nc.host_maxphyaddr, .levels = f->ri.levels,
                                   .nxe = f->nc.flags & PGM_NESTED_NPT_NXE,
                                   .gbpages = f->nc.flags & PGM_NESTED_NPT_GBPAGES };
    pgm_hpa_t table = f->ri.root;
    bool w_ok = true, r_ok = true;
    for (unsigned level = f->ri.levels; level >= 1; level--) {
        uint64_t *t = f->ops.hpa_to_ptr(f->sb, table);
        check(t != NULL, "a nested entry points at no backend memory");
        uint64_t e = __atomic_load_n(&t[(gpa >> (12 + 9 * (level - 1))) & 511], __ATOMIC_ACQUIRE);
        bool leaf;
        if (f->ri.format == PGM_PAGING_EPT) {
            int c = pgm_vtx_ept_classify(&ept, level, e, NULL);
            if (c == PGM_EPT_NOT_PRESENT || c == PGM_EPT_MISCONFIG)
                return NULL;
            r_ok = r_ok && (e & PGM_EPT_R);
            w_ok = w_ok && (e & PGM_EPT_W);
            leaf = c == PGM_EPT_LEAF;
        } else {
            bool nu = false;
            int c = pgm_svm_npt_classify(&npt, level, e, &nu);
            if (c == PGM_NPT_NOT_PRESENT || c == PGM_NPT_RSVD)
                return NULL;
            check(!nu, "NPT entry without US");
            w_ok = w_ok && (e & PGM_NPT_RW);
            leaf = c == PGM_NPT_LEAF;
        }
        if (!leaf) {
            table = e & PGM_EPT_ADDR_MASK;
            continue;
        }
        if (!r_ok || (write && !w_ok))
            return NULL;
        uint64_t mask = (1ull << (12 + 9 * (level - 1))) - 1;
        uint8_t *p = f->ops.hpa_to_ptr(f->sb, (e & PGM_EPT_ADDR_MASK & ~mask) + (gpa & mask));
        check(p != NULL, "a nested leaf maps no backend memory");
        return p;
    }
    return NULL;
}

/* Law 1: what the tables let the CPU reach is what the physical layer says. */
static void
check_gpa(struct fz *f, pgm_gpa_t gpa, uint8_t val)
{
    uint8_t *p = hw_walk(f, gpa, false);
    if (!p)
        return;
    enum pgm_phys_kind k = pgm_phys_kind_at(f->vm, gpa);
    check(k == PGM_PHYS_RAM || k == PGM_PHYS_ROM, "a mapping of MMIO or unassigned space");
    check(pgm_handler_state(f->vm, gpa) != PGM_HANDLER_ALL, "a mapping of an ALL-handler page");
    uint8_t phys;
    pgm_phys_read(f->vm, gpa, &phys, 1);
    /* Handler-free pages only: a WRITE handler does not change reads. */
    check(*p == phys, "a nested leaf reads other bytes than the physical layer");
    uint8_t *wp = hw_walk(f, gpa, true);
    if (wp) {
        check(pgm_handler_state(f->vm, gpa) == PGM_HANDLER_NONE, "writable under a handler");
        *wp = val;
        pgm_phys_read(f->vm, gpa, &phys, 1);
        check(phys == val, "a write through the nested tables went elsewhere");
    }
}

static pgm_gpa_t
pick_gpa(uint8_t a, uint8_t b)
{
    static const pgm_gpa_t bases[8] = { 0, 2 * MIB, 4 * MIB, RAM2, RAM2 + 2 * MIB, ROM_GPA,
                                        MMIO_GPA, 24 * MIB };
    return bases[a & 7] + ((pgm_gpa_t)(((a >> 3) << 8) | b) % 512) * 4096 + (b & 0xf8);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct fz f;
    memset(&f, 0, sizeof(f));
    if (pgm_soft_backend_create(1u << 14, &f.sb) < 0)
        return 0;
    pgm_soft_backend_set_ram_blocks(f.sb, !(data[0] & 0x20));
    f.ops = *pgm_soft_backend_ops();
    bool npt = data[0] & 1;
    pgm_nested_config_init(&f.nc);
    f.nc.flags = (data[0] & 2 ? PGM_NESTED_LARGE_2M : 0) | (data[0] & 4 ? PGM_NESTED_LARGE_1G : 0) |
                 (data[0] & 8 ? (npt ? PGM_NESTED_NPT_NXE : PGM_NESTED_EPT_AD) : 0) |
                 (data[0] & 0x10 ? PGM_NESTED_NO_MMIO_MARKER : 0) |
                 (npt && (data[0] & 0x40) ? PGM_NESTED_NPT_GBPAGES : 0);
    if (data[0] & 0x80)
        f.nc.host_maxphyaddr = 52;
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = npt ? PGM_PAGING_NPT : PGM_PAGING_EPT;
    cfg.nested = &f.nc;
    cfg.backend = &f.ops;
    cfg.backend_ctx = f.sb;
    check(pgm_vm_create(&cfg, &f.vm) == 0, "vm create");
    f.vcpu = pgm_vcpu_get(f.vm, 0);
    pgm_nested_info(f.vm, &f.ri);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE };
    check(pgm_set_cpu_state(f.vcpu, &st, 0) == 0, "cpu state");
    static const uint8_t rom[64] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    check(pgm_phys_add_ram(f.vm, 0, 8 * MIB) == 0 && pgm_phys_add_ram(f.vm, RAM2, 4 * MIB) == 0 &&
          pgm_phys_add_rom(f.vm, ROM_GPA, 0x4000, rom, sizeof(rom)) == 0 &&
          pgm_phys_add_mmio(f.vm, MMIO_GPA, 0x1000) == 0, "ranges");
    struct pgm_phys_handler mh = { .kind = PGM_HANDLER_MMIO, .gpa = MMIO_GPA, .size = 0x1000,
                                   .fn = handler, .user = &f };
    check(pgm_handler_register(f.vm, &mh) == 0, "mmio handler");
    static const uint8_t code[4] = { 0x89, 0x03, 0x8b, 0x03 }; /* mov [ebx],eax; mov eax,[ebx] */
    check(pgm_phys_write(f.vm, CODE_GPA, code, 4) == 0, "code");
    if (data[1])
        pgm_soft_backend_fail_after(f.sb, data[1]);
    bool ram2 = true;
    uint64_t bitmap[16];
    char msg[256];
    for (size_t i = 2; i + 4 <= size && i < 2 + 4 * 256; i += 4) {
        uint8_t op = data[i], a = data[i + 1], b = data[i + 2], c = data[i + 3];
        pgm_gpa_t gpa = pick_gpa(a, b);
        struct pgm_fault_out out;
        int rc = 0;
        switch (op % 12) {
        case 0:
        case 1: { /* a nested fault as the CPU would raise it, no registers */
            struct pgm_nested_fault_info info = { .flags = c & 4 ? PGM_NESTED_FI_MISCONFIG : 0 };
            uint32_t acc = c % 3 == 0 ? 0 : c % 3 == 1 ? PGM_ACCESS_WRITE : PGM_ACCESS_FETCH;
            rc = pgm_nested_fault(f.vcpu, gpa, acc, &info, NULL, &out);
            check(rc == 0 || rc == -ENOMEM, "nested fault (no regs) result");
            break;
        }
        case 2: { /* an access finished by emulation */
            struct pgm_regs regs;
            memset(&regs, 0, sizeof(regs));
            regs.code_bits = 32;
            regs.rflags = 2;
            regs.rip = CODE_GPA + (c & 1 ? 2 : 0);
            regs.gpr[PGM_RBX] = gpa & ~3ull;
            regs.gpr[PGM_RAX] = a * 0x01010101u;
            f.answer = b;
            rc = pgm_nested_fault(f.vcpu, gpa, c & 1 ? 0 : PGM_ACCESS_WRITE, NULL, &regs, &out);
            check(rc == 0 || rc == -ENOMEM, "nested fault (regs) result");
            break;
        }
        case 3: { /* WRITE or ALL handler */
            struct pgm_phys_handler h = { .kind = c & 1 ? PGM_HANDLER_ALL : PGM_HANDLER_WRITE,
                                          .gpa = gpa & ~0xfffull,
                                          .size = ((c >> 1) % 4 + 1) * 0x1000ull,
                                          .fn = handler, .user = &f };
            rc = pgm_handler_register(f.vm, &h);
            break;
        }
        case 4:
            if ((gpa & ~0xfffull) != MMIO_GPA)
                rc = pgm_handler_deregister(f.vm, gpa & ~0xfffull);
            break;
        case 5:
            rc = c & 1 ? pgm_handler_temp_off(f.vm, gpa & ~0xfffull)
                       : pgm_handler_reset(f.vm, gpa & ~0xfffull);
            break;
        case 6:
            rc = pgm_phys_rom_set_mode(f.vm, ROM_GPA, (enum pgm_rom_mode)(c % 3));
            break;
        case 7: { /* dirty logs over 1 MiB windows of the first RAM range */
            pgm_gpa_t lg = (pgm_gpa_t)(a % 8) * MIB;
            if (c % 3 == 0)
                rc = pgm_dirty_log_start(f.vm, lg, 256 * 4096);
            else if (c % 3 == 1)
                rc = pgm_dirty_log_get_and_clear(f.vm, lg, bitmap);
            else
                rc = pgm_dirty_log_stop(f.vm, lg);
            break;
        }
        case 8: /* a VMM write */
            rc = pgm_phys_write(f.vm, gpa, &c, 1);
            break;
        case 9: /* remove or re-add the second RAM range */
            if (ram2 && pgm_phys_remove(f.vm, RAM2) == 0)
                ram2 = false;
            else if (!ram2 && pgm_phys_add_ram(f.vm, RAM2, 4 * MIB) == 0)
                ram2 = true;
            break;
        case 10:
            pgm_soft_backend_fail_after(f.sb, c & 0x80 ? -1 : c);
            break;
        case 11:
            check_gpa(&f, gpa, c);
            break;
        }
        (void)rc;
        if (pgm_audit(f.vm, msg, sizeof(msg)) != 0) {
            fprintf(stderr, "fuzz_nested: op %zu (%u): audit: %s\n", (i - 2) / 4, op % 12, msg);
            abort();
        }
        check_gpa(&f, pick_gpa(b, a), a);
    }
    pgm_vm_destroy(f.vm);
    check(pgm_soft_backend_pages_in_use(f.sb) == 0, "pages leaked");
    pgm_soft_backend_destroy(f.sb);
    return 0;
}
