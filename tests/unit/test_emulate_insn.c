/* SPDX-License-Identifier: MIT */
/*
 * pgm_emulate_insn: guest instructions fetched through the guest's tables,
 * their accesses translated by the guest walker and routed through physical
 * handlers. Expected values are worked out by hand from the instruction and
 * the page tables below.
 *
 * Guest layout (4-level paging, PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000):
 *   VA 0x400000  -> GPA 0x10000  code (supervisor, read/execute)
 *   VA 0x401000  -> GPA 0x11000  code continued (mapped only in some tests)
 *   VA 0x600000  -> GPA 0xfee00000 MMIO page (handler)
 *   VA 0x601000  -> GPA 0x20000  RAM data (writable, supervisor)
 *   VA 0x602000  -> not present
 *   VA 0x603000  -> GPA 0x21000  RAM data, user, read-only
 */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define PTE(gpa, flags) ((uint64_t)(gpa) | (flags))

struct mmio_log {
    unsigned calls;
    pgm_gpa_t gpa;
    size_t size;
    bool write;
    uint64_t value;      /* written bytes, or what reads return (little-endian) */
    struct pgm_vcpu *vcpu;
    enum pgm_access_origin origin;
    enum pgm_handler_result answer;
};

static enum pgm_handler_result
mmio(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
     enum pgm_access_origin origin, void *user)
{
    struct mmio_log *l = user;
    l->calls++;
    l->gpa = gpa;
    l->size = size;
    l->write = write;
    l->vcpu = vcpu;
    l->origin = origin;
    if (write) {
        l->value = 0;
        memcpy(&l->value, buf, size < 8 ? size : 8);
    } else {
        memcpy(buf, &l->value, size < 8 ? size : 8);
    }
    return l->answer;
}

struct env {
    struct fixture *f;
    struct mmio_log log;
    struct pgm_regs regs;
    struct pgm_fault_out out;
};

static void
setup_guest(struct env *e)
{
    struct fixture *f = e->f;
    put64(f, 0x1000, PTE(0x2000, 7));
    put64(f, 0x2000, PTE(0x3000, 7));
    put64(f, 0x3000, PTE(0x4000, 7)); /* PD[2]: VA 0x400000.. */
    put64(f, 0x3000 + 8 * 2, PTE(0x4000, 7));
    put64(f, 0x3000 + 8 * 3, PTE(0x5000, 7)); /* PD[3]: VA 0x600000.. */
    put64(f, 0x4000 + 8 * 0, PTE(0x10000, 0x1));         /* code, read-only supervisor */
    put64(f, 0x5000 + 8 * 0, PTE(0xfee00000, 0x3));      /* MMIO */
    put64(f, 0x5000 + 8 * 1, PTE(0x20000, 0x3));         /* RAM rw */
    put64(f, 0x5000 + 8 * 3, PTE(0x21000, 0x5));         /* RAM user ro */
    assert_int_equal(pgm_phys_add_mmio(f->vm, 0xfee00000, 0x1000), 0);
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_MMIO, .gpa = 0xfee00000, .size = 0x1000,
                                  .fn = mmio, .user = &e->log };
    assert_int_equal(pgm_handler_register(f->vm, &h), 0);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP,
                                .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME | PGM_EFER_NXE,
                                .cr3 = 0x1000 };
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &st, 0), 0);
    memset(&e->regs, 0, sizeof(e->regs));
    e->regs.code_bits = 64;
    e->regs.rip = 0x400000;
    e->regs.rflags = 0x2;
    e->log.answer = PGM_HANDLER_HANDLED;
}

static void
code(struct env *e, const void *bytes, size_t n)
{
    assert_int_equal(pgm_phys_write(e->f->vm, 0x10000, bytes, n), 0);
}

static void
run(struct env *e)
{
    assert_int_equal(pgm_emulate_insn(e->f->vcpu, &e->regs, &e->out), 0);
}

static int
env_setup(void **state)
{
    struct env *e = test_calloc(1, sizeof(*e));
    e->f = fixture_new(NULL);
    setup_guest(e);
    *state = e;
    return 0;
}

static int
env_teardown(void **state)
{
    struct env *e = *state;
    fixture_free(e->f);
    test_free(e);
    return 0;
}

static void
test_mmio_load_store(void **state)
{
    struct env *e = *state;
    /* mov eax, [rbx] ; rbx = 0x600010 -> MMIO gpa 0xfee00010, 4 bytes */
    code(e, "\x8b\x03", 2);
    e->regs.gpr[PGM_RBX] = 0x600010;
    e->regs.gpr[PGM_RAX] = 0xffffffffffffffffull;
    e->log.value = 0x12345678;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EMULATED);
    assert_true(e->regs.gpr[PGM_RAX] == 0x12345678); /* 32-bit write zero-extends */
    assert_true(e->regs.rip == 0x400002);
    assert_true(e->log.gpa == 0xfee00010 && e->log.size == 4 && !e->log.write);
    assert_ptr_equal(e->log.vcpu, e->f->vcpu);
    assert_int_equal(e->log.origin, PGM_ORIGIN_GUEST);

    /* mov word [rbx+2], cx  (66 89 4b 02) */
    code(e, "\x66\x89\x4b\x02", 4);
    e->regs.rip = 0x400000;
    e->regs.gpr[PGM_RCX] = 0xabcd;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EMULATED);
    assert_true(e->log.gpa == 0xfee00012 && e->log.size == 2 && e->log.write);
    assert_true(e->log.value == 0xabcd);
    assert_true(e->regs.rip == 0x400004);

    /* or dword [rbx], 0x80 (81 0b 80 00 00 00): read, then write back */
    code(e, "\x81\x0b\x80\x00\x00\x00", 6);
    e->regs.rip = 0x400000;
    e->log.value = 0x1;
    unsigned before = e->log.calls;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EMULATED);
    assert_int_equal(e->log.calls, before + 2);
    assert_true(e->log.write && e->log.value == 0x81);
}

static void
test_ram_access_sets_dirty(void **state)
{
    struct env *e = *state;
    /* mov [rdi], rax ; rdi = 0x601008 -> RAM 0x20008 */
    code(e, "\x48\x89\x07", 3);
    e->regs.gpr[PGM_RDI] = 0x601008;
    e->regs.gpr[PGM_RAX] = 0x1122334455667788ull;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EMULATED);
    assert_true(get64(e->f, 0x20008) == 0x1122334455667788ull);
    assert_true((get64(e->f, 0x5008) & 0x60) == 0x60); /* the walker set A and D */
    assert_true((get64(e->f, 0x4000) & 0x60) == 0x20); /* the fetch set A on the code PTE */

    /* lock cmpxchg [rdi], rcx: RAM, compare succeeds */
    code(e, "\xf0\x48\x0f\xb1\x0f", 5);
    e->regs.rip = 0x400000;
    e->regs.gpr[PGM_RCX] = 42;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EMULATED);
    assert_true(get64(e->f, 0x20008) == 42);
    assert_true(e->regs.rflags & PGM_RFLAGS_ZF);

    /* rep stosb across the end of the RAM page into the unmapped one */
    code(e, "\xf3\xaa", 2);
    e->regs.rip = 0x400000;
    e->regs.gpr[PGM_RDI] = 0x601ffe;
    e->regs.gpr[PGM_RCX] = 4;
    e->regs.gpr[PGM_RAX] = 0x5a;
    run(e);
    /* two bytes land, then #PF on 0x602000 with the guest's code W (0x2) */
    assert_int_equal(e->out.result, PGM_FAULT_INJECT);
    assert_int_equal(e->out.vector, 14);
    assert_int_equal(e->out.error_code, 0x2);
    assert_true(e->out.address == 0x602000);
    assert_true(e->regs.gpr[PGM_RCX] == 2 && e->regs.gpr[PGM_RDI] == 0x602000);
    uint16_t two;
    pgm_phys_read(e->f->vm, 0x20ffe, &two, 2);
    assert_int_equal(two, 0x5a5a);
}

static void
test_faults(void **state)
{
    struct env *e = *state;
    /* a 8-byte store straddling into the unmapped page writes nothing */
    code(e, "\x48\x89\x07", 3);
    e->regs.gpr[PGM_RDI] = 0x601ffc;
    e->regs.gpr[PGM_RAX] = ~0ull;
    struct pgm_regs before = e->regs;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_INJECT);
    assert_true(e->out.address == 0x602000 && e->out.error_code == 0x2);
    assert_memory_equal(&before, &e->regs, sizeof(before));
    assert_true(get64(e->f, 0x20ff8) == 0);

    /* CPL 3: the page is supervisor -> P|W|U */
    e->regs.cpl = 3;
    e->regs.gpr[PGM_RDI] = 0x601000;
    run(e);
    /* the code page itself is supervisor: the fetch faults first (P|U|I/D) */
    assert_int_equal(e->out.result, PGM_FAULT_INJECT);
    assert_int_equal(e->out.error_code, 0x15);
    assert_true(e->out.address == 0x400000);
    e->regs.cpl = 0;

    /* user read-only page, supervisor write with WP=1 -> P|W */
    e->regs.gpr[PGM_RDI] = 0x603000;
    run(e);
    assert_int_equal(e->out.error_code, 0x3);

    /* non-canonical operand -> #GP */
    e->regs.gpr[PGM_RDI] = 0x0000800000000000ull;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_INJECT);
    assert_int_equal(e->out.vector, 13);
}

static void
test_exits(void **state)
{
    struct env *e = *state;
    /* a handler that exits: the access is described, registers unchanged */
    code(e, "\x89\x03", 2); /* mov [rbx], eax */
    e->regs.gpr[PGM_RBX] = 0x600100;
    e->regs.gpr[PGM_RAX] = 0xcafe;
    e->log.answer = PGM_HANDLER_EXIT;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EXIT);
    assert_int_equal(e->out.exit_reason, PGM_EXIT_HANDLER);
    assert_true(e->out.exit_gpa == 0xfee00100 && e->out.exit_size == 4 && e->out.exit_write);
    assert_memory_equal(e->out.exit_data, "\xfe\xca\x00\x00", 4);
    assert_true(e->regs.rip == 0x400000);

    /* outside the allow-list: cpuid */
    code(e, "\x0f\xa2", 2);
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EXIT);
    assert_int_equal(e->out.exit_reason, PGM_EXIT_UNEMULATABLE);
    assert_int_equal(e->out.insn_len, 2);
    assert_memory_equal(e->out.insn, "\x0f\xa2", 2);

    /* an instruction cut by the end of the code page, next page unmapped:
     * the CPU would fetch on, so this is a #PF on the next page */
    e->regs.rip = 0x400ffe;
    assert_int_equal(pgm_phys_write(e->f->vm, 0x10ffe, "\x48\x89", 2), 0);
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_INJECT);
    assert_true(e->out.address == 0x401000);
    assert_int_equal(e->out.error_code, 0x10); /* not present, I/D (NXE) */
    /* ... and mapped, it decodes across the boundary */
    put64(e->f, 0x4008, PTE(0x11000, 0x1));
    assert_int_equal(pgm_phys_write(e->f->vm, 0x11000, "\x07", 1), 0); /* mov [rdi], rax */
    e->regs.gpr[PGM_RDI] = 0x601010;
    e->regs.gpr[PGM_RAX] = 7;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EMULATED);
    assert_true(e->regs.rip == 0x401001);
    assert_true(get64(e->f, 0x20010) == 7);

    /* bad arguments */
    struct pgm_fault_out out;
    e->regs.code_bits = 48;
    assert_int_equal(pgm_emulate_insn(e->f->vcpu, &e->regs, &out), -EINVAL);
    assert_int_equal(pgm_emulate_insn(NULL, &e->regs, &out), -EINVAL);
}

static void
test_32bit_code(void **state)
{
    struct env *e = *state;
    /* 32-bit paging, CS base 0x1000: EIP 0x3ff000 + base = linear 0x400000 */
    put32(e->f, 0x8000 + 4 * 1, 0x9000 | 0x7);      /* PD[1]: 4 MiB .. 8 MiB */
    put32(e->f, 0x9000 + 4 * 0, 0x10000 | 0x1);     /* linear 0x400000 -> code */
    put32(e->f, 0x9000 + 4 * 1, 0x20000 | 0x3);     /* linear 0x401000 -> RAM */
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG, .cr3 = 0x8000 };
    assert_int_equal(pgm_set_cpu_state(e->f->vcpu, &st, 0), 0);
    /* mov [ebx+4], eax with DS base 0x1000 -> linear 0x401004 -> 0x20004 */
    code(e, "\x89\x43\x04", 3);
    e->regs.code_bits = 32;
    e->regs.seg_base[PGM_CS] = 0x1000;
    e->regs.seg_base[PGM_DS] = 0x1000;
    e->regs.rip = 0x3ff000;
    e->regs.gpr[PGM_RBX] = 0x400000;
    e->regs.gpr[PGM_RAX] = 0x89abcdef;
    run(e);
    assert_int_equal(e->out.result, PGM_FAULT_EMULATED);
    assert_true(get32(e->f, 0x20004) == 0x89abcdef);
    assert_true(e->regs.rip == 0x3ff003);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, env_setup, env_teardown)
    const struct CMUnitTest tests[] = {
        T(test_mmio_load_store),
        T(test_ram_access_sets_dirty),
        T(test_faults),
        T(test_exits),
        T(test_32bit_code),
    };
#undef T
    return cmocka_run_group_tests_name("emulate_insn", tests, NULL, NULL);
}
