/* SPDX-License-Identifier: MIT */
/*
 * The instruction emulator (src/emu/), directed cases for what a run on a
 * reference CPU cannot show: the fault contract (registers untouched), REP
 * bounds and re-entry, the cmpxchg callback and lost races, page-crossing
 * accesses, CMPXCHG16B alignment, address arithmetic, flags, bad
 * arguments. The differential test against Unicorn is test_emu_diff.c.
 *
 * Guest memory is tests/emuref/flat_mem.h: sparse pages created on first
 * touch with content derived from a seed (`init`), so a test can check what
 * changed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "src/emu/emu.h"
#include "tests/emuref/flat_mem.h"

#define STATUS (PGM_RFLAGS_CF | PGM_RFLAGS_PF | PGM_RFLAGS_AF | PGM_RFLAGS_ZF | \
                PGM_RFLAGS_SF | PGM_RFLAGS_OF)

static struct flat flat_mem;   /* large: static, not on the stack */

static const struct pgm_emu_mem flat_ops = {
    .ctx = &flat_mem, .read = flat_read, .write = flat_write, .cmpxchg = flat_cmpxchg,
};
static const struct pgm_emu_mem flat_ops_nocx = {
    .ctx = &flat_mem, .read = flat_read, .write = flat_write,
};

static void
regs_init(struct pgm_regs *r, unsigned bits)
{
    memset(r, 0, sizeof(*r));
    r->code_bits = (uint8_t)bits;
    r->rflags = 0x2;
    r->rip = 0x1000;
}

/* Decode hex-free byte lists conveniently. */
static void
decode_ok(const uint8_t *b, size_t n, unsigned bits, struct pgm_insn *in)
{
    int rc = pgm_decode_insn(b, n, bits, in);
    if (rc != PGM_DECODE_OK)
        fail_msg("decode rc %d for '%s'", rc, in->mnemonic);
}

static void
test_fault_leaves_registers(void **state)
{
    (void)state;
    struct pgm_insn in;
    struct pgm_regs r, before;

    /* lock add [rax], rbx: the read succeeds, the compare-exchange faults */
    static const uint8_t add[] = { 0xf0, 0x48, 0x01, 0x18 };
    decode_ok(add, sizeof(add), 64, &in);
    regs_init(&r, 64);
    r.gpr[PGM_RAX] = 0x5000;
    r.gpr[PGM_RBX] = 7;
    before = r;
    flat_init(&flat_mem, 1, 1ull << 40);
    flat_mem.fault_after = 1;
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), FLAT_FAULT);
    assert_memory_equal(&r, &before, sizeof(r));
    /* nothing written */
    assert_memory_equal(flat_byte(&flat_mem, 0x5000), flat_page(&flat_mem, 5)->init, 8);

    /* mov eax, [rbx] faulting on the read: RAX keeps its upper half too */
    static const uint8_t mov[] = { 0x8b, 0x03 };
    decode_ok(mov, sizeof(mov), 64, &in);
    r.gpr[PGM_RAX] = 0x1122334455667788ull;
    r.gpr[PGM_RBX] = 1ull << 45;       /* beyond the flat limit */
    before = r;
    flat_init(&flat_mem, 1, 1ull << 40);
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), -EFAULT);
    assert_memory_equal(&r, &before, sizeof(r));
}

static void
test_rep_bound_and_reentry(void **state)
{
    (void)state;
    struct pgm_insn in;
    struct pgm_regs r;
    /* rep stosq, 100 iterations, 7 per call */
    static const uint8_t stos[] = { 0xf3, 0x48, 0xab };
    decode_ok(stos, sizeof(stos), 64, &in);
    regs_init(&r, 64);
    r.gpr[PGM_RCX] = 100;
    r.gpr[PGM_RDI] = 0x10000;
    r.gpr[PGM_RAX] = 0xdeadbeefcafef00dull;
    flat_init(&flat_mem, 2, 1ull << 40);
    unsigned calls = 0;
    int rc;
    while ((rc = pgm_emulate(&in, &r, &flat_ops, 7)) == PGM_EMU_AGAIN) {
        calls++;
        assert_int_equal(r.rip, 0x1000);    /* still on the instruction */
        assert_int_equal(r.gpr[PGM_RCX], 100 - 7 * calls);
    }
    assert_int_equal(rc, PGM_EMU_DONE);
    assert_int_equal(calls, 14);
    assert_int_equal(r.rip, 0x1003);
    assert_int_equal(r.gpr[PGM_RCX], 0);
    assert_int_equal(r.gpr[PGM_RDI], 0x10000 + 800);
    for (unsigned i = 0; i < 100; i++) {
        uint64_t v;
        memcpy(&v, flat_byte(&flat_mem, 0x10000 + 8 * i), 8);
        assert_int_equal(v, 0xdeadbeefcafef00dull);
    }

    /* a fault in iteration 3 commits iterations 1 and 2 */
    static const uint8_t movs[] = { 0xf3, 0xa4 };  /* rep movsb */
    decode_ok(movs, sizeof(movs), 32, &in);
    regs_init(&r, 32);
    r.gpr[PGM_RCX] = 10;
    r.gpr[PGM_RSI] = 0x20000;
    r.gpr[PGM_RDI] = 0x30000;
    flat_init(&flat_mem, 3, 1ull << 32);
    flat_mem.fault_after = 5;       /* read, write, read, write, read, FAULT */
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), FLAT_FAULT);
    assert_int_equal(r.gpr[PGM_RCX], 8);
    assert_int_equal(r.gpr[PGM_RSI], 0x20002);
    assert_int_equal(r.gpr[PGM_RDI], 0x30002);
    assert_int_equal(r.rip, 0x1000);

    /* REP with rCX = 0 only advances RIP; 16-bit addressing uses CX only */
    static const uint8_t stosb[] = { 0xf3, 0xaa };
    decode_ok(stosb, sizeof(stosb), 16, &in);
    regs_init(&r, 16);
    r.gpr[PGM_RCX] = 0x10000;   /* CX = 0 */
    flat_init(&flat_mem, 4, 1ull << 32);
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), PGM_EMU_DONE);
    assert_int_equal(r.rip, 0x1002);
    assert_int_equal(flat_mem.npages, 0);

    /* DF=1 with 16-bit addressing: DI wraps within 64 KiB, upper bits kept */
    regs_init(&r, 16);
    r.rflags |= PGM_RFLAGS_DF;
    r.gpr[PGM_RCX] = 0xabcd0002;
    r.gpr[PGM_RDI] = 0x12340000;
    r.seg_base[PGM_ES] = 0x50000;
    flat_init(&flat_mem, 4, 1ull << 32);
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), PGM_EMU_DONE);
    assert_int_equal(r.gpr[PGM_RCX], 0xabcd0000);
    assert_int_equal(r.gpr[PGM_RDI], 0x1234fffe);
}

static void
test_locked_race(void **state)
{
    (void)state;
    struct pgm_insn in;
    struct pgm_regs r;
    static const uint8_t xadd[] = { 0xf0, 0x83, 0x07, 0x01 };  /* lock add dword [edi], 1 */
    decode_ok(xadd, sizeof(xadd), 32, &in);
    regs_init(&r, 32);
    r.gpr[PGM_RDI] = 0x4000;
    flat_init(&flat_mem, 5, 1ull << 32);
    flat_mem.fail_cmpxchg = 3;  /* three lost races, then success */
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), PGM_EMU_DONE);
    uint32_t init, now;
    memcpy(&init, flat_page(&flat_mem, 4)->init, 4);
    memcpy(&now, flat_byte(&flat_mem, 0x4000), 4);
    init ^= 0x5a ^ 0x5a ^ 0x5a;     /* the "other writer" flipped byte 0 thrice */
    assert_int_equal(now, init + 1);

    /* always losing: give the instruction back, nothing committed */
    regs_init(&r, 32);
    r.gpr[PGM_RDI] = 0x4000;
    struct pgm_regs before = r;
    flat_init(&flat_mem, 5, 1ull << 32);
    flat_mem.fail_cmpxchg = 1000;
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), PGM_EMU_AGAIN);
    assert_memory_equal(&r, &before, sizeof(r));
}

static void
test_cmpxchg16b_and_page_cross(void **state)
{
    (void)state;
    struct pgm_insn in;
    struct pgm_regs r;
    static const uint8_t cx16[] = { 0xf0, 0x48, 0x0f, 0xc7, 0x0e };  /* lock cmpxchg16b [rsi] */
    decode_ok(cx16, sizeof(cx16), 64, &in);
    assert_int_equal(in.size, 16);
    for (int with_cb = 0; with_cb < 2; with_cb++) {
        const struct pgm_emu_mem *ops = with_cb ? &flat_ops : &flat_ops_nocx;
        regs_init(&r, 64);
        r.gpr[PGM_RSI] = 0x7008;    /* misaligned */
        flat_init(&flat_mem, 6, 1ull << 40);
        assert_int_equal(pgm_emulate(&in, &r, ops, 0), PGM_EMU_INJECT_GP);
        assert_int_equal(r.rip, 0x1000);
        assert_int_equal(flat_mem.npages, 0);

        r.gpr[PGM_RSI] = 0x7010;
        uint64_t lo, hi;
        memcpy(&lo, flat_page(&flat_mem, 7)->init + 0x10, 8);
        memcpy(&hi, flat_page(&flat_mem, 7)->init + 0x18, 8);
        /* mismatch: RDX:RAX loaded, ZF=0 */
        r.gpr[PGM_RAX] = ~lo;
        r.gpr[PGM_RDX] = hi;
        r.rflags |= PGM_RFLAGS_ZF | PGM_RFLAGS_CF;
        assert_int_equal(pgm_emulate(&in, &r, ops, 0), PGM_EMU_DONE);
        assert_int_equal(r.gpr[PGM_RAX], lo);
        assert_int_equal(r.gpr[PGM_RDX], hi);
        assert_int_equal(r.rflags & (PGM_RFLAGS_ZF | PGM_RFLAGS_CF), PGM_RFLAGS_CF);
        assert_int_equal(flat_mem.last_size, 16);
        /* match: RCX:RBX stored, ZF=1 */
        r.gpr[PGM_RBX] = 0x1111;
        r.gpr[PGM_RCX] = 0x2222;
        r.rip = 0x1000;
        assert_int_equal(pgm_emulate(&in, &r, ops, 0), PGM_EMU_DONE);
        assert_true(r.rflags & PGM_RFLAGS_ZF);
        memcpy(&lo, flat_byte(&flat_mem, 0x7010), 8);
        memcpy(&hi, flat_byte(&flat_mem, 0x7018), 8);
        assert_int_equal(lo, 0x1111);
        assert_int_equal(hi, 0x2222);
    }

    /* an 8-byte store across a page boundary is one 8-byte callback */
    static const uint8_t mov[] = { 0x48, 0x89, 0x07 };   /* mov [rdi], rax */
    decode_ok(mov, sizeof(mov), 64, &in);
    regs_init(&r, 64);
    r.gpr[PGM_RDI] = 0x8ffc;
    r.gpr[PGM_RAX] = 0x0807060504030201ull;
    flat_init(&flat_mem, 7, 1ull << 40);
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), PGM_EMU_DONE);
    assert_int_equal(flat_mem.last_size, 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(*flat_byte(&flat_mem, 0x8ffc + i), i + 1);
}

static void
test_addresses(void **state)
{
    (void)state;
    struct pgm_insn in;
    struct pgm_regs r;
    uint64_t la;

    /* 64-bit: DS base ignored, FS base added, RIP-relative from next RIP */
    static const uint8_t rip[] = { 0x64, 0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00 };
    decode_ok(rip, sizeof(rip), 64, &in);
    regs_init(&r, 64);
    r.rip = 0x400000;
    r.seg_base[PGM_DS] = 0x55550000;
    r.seg_base[PGM_FS] = 0x7000000000ull;
    assert_int_equal(pgm_emu_operand_address(&in, &r, &la), 0);
    assert_int_equal(la, 0x7000000000ull + 0x400000 + 8 + 0x10);

    /* 32-bit: segment base + EA wraps at 4 GiB */
    static const uint8_t m32[] = { 0x8b, 0x43, 0x10 };   /* mov eax, [ebx+0x10] */
    decode_ok(m32, sizeof(m32), 32, &in);
    regs_init(&r, 32);
    r.gpr[PGM_RBX] = 0xfffffff8;
    r.seg_base[PGM_DS] = 0x100000;
    assert_int_equal(pgm_emu_operand_address(&in, &r, &la), 0);
    assert_int_equal(la, 0x100008);

    /* 16-bit: [bp+di-2] wraps at 64 KiB, then SS base */
    static const uint8_t m16[] = { 0x8b, 0x43, 0xfe };
    decode_ok(m16, sizeof(m16), 16, &in);
    regs_init(&r, 16);
    r.gpr[PGM_RBP] = 0xffff;
    r.gpr[PGM_RDI] = 0x0001;
    r.seg_base[PGM_SS] = 0x20000;
    r.seg_base[PGM_DS] = 0x90000;
    assert_int_equal(pgm_emu_operand_address(&in, &r, &la), 0);
    assert_int_equal(la, 0x20000 + 0xfffe);

    /* bad arguments */
    r.code_bits = 32;
    assert_int_equal(pgm_emu_operand_address(&in, &r, &la), -EINVAL);
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), -EINVAL);
    r.code_bits = 16;
    assert_int_equal(pgm_emulate(NULL, &r, &flat_ops, 0), -EINVAL);
    struct pgm_insn none = in;
    none.op = PGM_OP_NONE;
    assert_int_equal(pgm_emulate(&none, &r, &flat_ops, 0), -EINVAL);
}

static void
test_alu_flags(void **state)
{
    (void)state;
    uint64_t res, f;
    /* 0x7f + 1 (byte): OF SF AF, no CF */
    f = pgm_emu_alu(PGM_OP_ADD, 1, 0x7f, 1, 0x2, &res);
    assert_int_equal(res, 0x80);
    assert_int_equal(f & STATUS, PGM_RFLAGS_OF | PGM_RFLAGS_SF | PGM_RFLAGS_AF);
    /* 0 - 1 (qword): CF SF AF PF */
    f = pgm_emu_alu(PGM_OP_SUB, 8, 0, 1, 0x2, &res);
    assert_int_equal(res, ~0ull);
    assert_int_equal(f & STATUS, PGM_RFLAGS_CF | PGM_RFLAGS_SF | PGM_RFLAGS_AF |
                     PGM_RFLAGS_PF);
    /* ADC with carry in: 0xffff + 0 + 1 = 0 carry, ZF PF AF */
    f = pgm_emu_alu(PGM_OP_ADC, 2, 0xffff, 0, 0x2 | PGM_RFLAGS_CF, &res);
    assert_int_equal(res, 0);
    assert_int_equal(f & STATUS, PGM_RFLAGS_CF | PGM_RFLAGS_ZF | PGM_RFLAGS_PF |
                     PGM_RFLAGS_AF);
    /* INC keeps CF; NOT keeps everything; logic clears CF OF AF */
    f = pgm_emu_alu(PGM_OP_INC, 4, 0xffffffff, 0, 0x2 | PGM_RFLAGS_CF, &res);
    assert_int_equal(f & STATUS, PGM_RFLAGS_CF | PGM_RFLAGS_ZF | PGM_RFLAGS_PF |
                     PGM_RFLAGS_AF);
    f = pgm_emu_alu(PGM_OP_NOT, 4, 0, 0, 0x2 | STATUS, &res);
    assert_int_equal(f, 0x2 | STATUS);
    assert_int_equal(res, 0xffffffff);
    f = pgm_emu_alu(PGM_OP_XOR, 1, 0x0f, 0xf0, 0x2 | STATUS, &res);
    assert_int_equal(f & STATUS, PGM_RFLAGS_SF | PGM_RFLAGS_PF);
    /* NEG 0: CF clear; NEG 0x80 (byte): OF CF */
    f = pgm_emu_alu(PGM_OP_NEG, 1, 0, 0, 0x2 | PGM_RFLAGS_CF, &res);
    assert_int_equal(f & PGM_RFLAGS_CF, 0);
    f = pgm_emu_alu(PGM_OP_NEG, 1, 0x80, 0, 0x2, &res);
    assert_int_equal(res, 0x80);
    assert_true(f & PGM_RFLAGS_OF);
    assert_true(f & PGM_RFLAGS_CF);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alu_flags),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_fault_leaves_registers),
        cmocka_unit_test(test_rep_bound_and_reentry),
        cmocka_unit_test(test_locked_race),
        cmocka_unit_test(test_cmpxchg16b_and_page_cross),
    };
    return cmocka_run_group_tests_name("emu", tests, NULL, NULL);
}
