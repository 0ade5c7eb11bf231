/* SPDX-License-Identifier: MIT */
/*
 * The instruction emulator (src/emu/), two ways:
 *
 *  1. Differential, against Unicorn 2 (QEMU's TCG) as an independent CPU:
 *     for every allow-listed form, in 16-, 32- and 64-bit code, random
 *     prefixes, ModRM/SIB/displacements, registers, flags, segment bases and
 *     memory (seeded); the instruction runs in Unicorn and in pgm_emulate()
 *     over a flat memory, and every GPR, RIP, the defined flags and every
 *     touched byte must agree. Skipped (with a message) when the build did not
 *     find Unicorn. PGM_EMU_DIFF_CASES and PGM_EMU_DIFF_SEED override the
 *     case count per mode and the seed.
 *  2. Directed cases for what a CPU run cannot show: the fault contract
 *     (registers untouched), REP bounds and re-entry, the cmpxchg callback,
 *     page-crossing accesses, CMPXCHG16B alignment, bad arguments.
 *
 * Unicorn-vs-SDM differences are handled in unicorn_deviation() below, each
 * explained there; everything else must match exactly.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#ifdef PGM_HAVE_UNICORN
#include <unicorn/unicorn.h>
#endif

#include "src/emu/emu.h"

#define STATUS (PGM_RFLAGS_CF | PGM_RFLAGS_PF | PGM_RFLAGS_AF | PGM_RFLAGS_ZF | \
                PGM_RFLAGS_SF | PGM_RFLAGS_OF)

/* ------------------------------------------------------------------------ */
/* Random numbers (splitmix64): the same seed gives the same cases.          */

static uint64_t
mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ------------------------------------------------------------------------ */
/* A sparse flat guest memory: pages created on first touch with content     */
/* derived from (seed, page number), so a second run (Unicorn) can be given  */
/* the very same initial bytes.                                              */

#define MAX_PAGES 24

struct page {
    uint64_t pfn;
    uint8_t init[4096];
    uint8_t data[4096];
};

struct flat {
    uint64_t seed;
    uint64_t limit;             /* addresses must be below */
    uint64_t forbidden[4];      /* page numbers that may not be touched */
    unsigned nforbidden;
    unsigned npages;
    struct page pages[MAX_PAGES];
    unsigned accesses;          /* callbacks made */
    unsigned last_size;         /* size of the last access */
    int fail_cmpxchg;           /* make this many cmpxchg calls lose a race */
    int fault_after;            /* fault on access number N (-1: never) */
};

static struct page *
flat_page(struct flat *f, uint64_t pfn)
{
    for (unsigned i = 0; i < f->npages; i++)
        if (f->pages[i].pfn == pfn)
            return &f->pages[i];
    for (unsigned i = 0; i < f->nforbidden; i++)
        if (f->forbidden[i] == pfn)
            return NULL;
    if (f->npages == MAX_PAGES)
        return NULL;
    struct page *p = &f->pages[f->npages++];
    p->pfn = pfn;
    uint64_t s = mix64(f->seed ^ (pfn * 0x2545f4914f6cdd1dull));
    for (unsigned i = 0; i < 4096; i += 8) {
        uint64_t v = mix64(s + i);
        /* some zero and all-ones runs make carries and ZF likely */
        if ((v & 0x700) == 0)
            v = 0;
        else if ((v & 0x700) == 0x100)
            v = ~0ull;
        memcpy(p->init + i, &v, 8);
    }
    memcpy(p->data, p->init, 4096);
    return p;
}

/* Resolve each byte; -EFAULT when outside the limit or the page budget. */
static int
flat_check(struct flat *f, uint64_t la, unsigned size)
{
    if (f->fault_after >= 0 && f->accesses++ == (unsigned)f->fault_after)
        return -1000;   /* a caller-defined fault code */
    f->last_size = size;
    if (la + size < la || la + size > f->limit)
        return -EFAULT;
    if (!flat_page(f, la >> 12) || !flat_page(f, (la + size - 1) >> 12))
        return -EFAULT;
    return 0;
}

static uint8_t *
flat_byte(struct flat *f, uint64_t la)
{
    return &flat_page(f, la >> 12)->data[la & 4095];
}

static int
flat_read(void *ctx, uint64_t la, void *buf, unsigned size)
{
    struct flat *f = ctx;
    int rc = flat_check(f, la, size);
    if (rc)
        return rc;
    for (unsigned i = 0; i < size; i++)
        ((uint8_t *)buf)[i] = *flat_byte(f, la + i);
    return 0;
}

static int
flat_write(void *ctx, uint64_t la, const void *buf, unsigned size)
{
    struct flat *f = ctx;
    int rc = flat_check(f, la, size);
    if (rc)
        return rc;
    for (unsigned i = 0; i < size; i++)
        *flat_byte(f, la + i) = ((const uint8_t *)buf)[i];
    return 0;
}

static int
flat_cmpxchg(void *ctx, uint64_t la, void *expected, const void *desired, unsigned size)
{
    struct flat *f = ctx;
    int rc = flat_check(f, la, size);
    if (rc)
        return rc;
    uint8_t cur[16];
    for (unsigned i = 0; i < size; i++)
        cur[i] = *flat_byte(f, la + i);
    if (f->fail_cmpxchg > 0) {
        /* another writer got there first: change memory, report it */
        f->fail_cmpxchg--;
        cur[0] ^= 0x5a;
        *flat_byte(f, la) = cur[0];
    }
    if (memcmp(cur, expected, size)) {
        memcpy(expected, cur, size);
        return 0;
    }
    for (unsigned i = 0; i < size; i++)
        *flat_byte(f, la + i) = ((const uint8_t *)desired)[i];
    return 0;
}

static void
flat_init(struct flat *f, uint64_t seed, uint64_t limit)
{
    f->seed = seed;
    f->limit = limit;
    f->nforbidden = 0;
    f->npages = 0;
    f->accesses = 0;
    f->fail_cmpxchg = 0;
    f->fault_after = -1;
}

static struct flat flat_mem;   /* large: static, not on the stack */

static const struct pgm_emu_mem flat_ops = {
    .ctx = &flat_mem, .read = flat_read, .write = flat_write, .cmpxchg = flat_cmpxchg,
};
static const struct pgm_emu_mem flat_ops_nocx = {
    .ctx = &flat_mem, .read = flat_read, .write = flat_write,
};

/* ------------------------------------------------------------------------ */
/* Directed tests                                                            */

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
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), -1000);
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
    assert_int_equal(pgm_emulate(&in, &r, &flat_ops, 0), -1000);
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

/* ------------------------------------------------------------------------ */
/* Differential testing against Unicorn                                      */

#ifdef PGM_HAVE_UNICORN

static uint64_t rng_state;

static uint64_t
rnd(void)
{
    rng_state += 0x9e3779b97f4a7c15ull;
    return mix64(rng_state);
}

static unsigned
rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* Form flags */
#define FF_BYTE    0x001   /* 8-bit operand regardless of prefixes */
#define FF_LOCK    0x002   /* LOCK allowed (memory destination) */
#define FF_NO64    0x004   /* invalid in 64-bit code */
#define FF_ONLY64  0x008
#define FF_W       0x010   /* REX.W required */
#define FF_NOW     0x020   /* REX.W must be clear */
#define FF_MOFFS   0x040   /* A0-A3 */
#define FF_STRING  0x080
#define FF_0F      0x100   /* two-byte opcode */
#define FF_BTREG   0x200   /* BT* with a register bit offset */
#define FF_NOREXR  0x400   /* REX.R kept clear: Unicorn raises #UD for C6/C7
                              with REX.R, which the SDM says is ignored
                              (test_emu_decode checks the decoder on it) */

enum { IMM_NONE, IMM_8, IMM_Z };

struct form {
    const char *name;
    uint8_t opc;
    int8_t digit;           /* -1: ModRM.reg is a register operand */
    uint8_t imm;
    uint16_t flags;
    uint8_t op;             /* enum pgm_insn_op, for the flag mask */
};

static const struct form forms[] = {
#define ALU(n, base, o) \
    { n " m8,r8", base + 0, -1, IMM_NONE, FF_BYTE | FF_LOCK, o }, \
    { n " m,r", base + 1, -1, IMM_NONE, FF_LOCK, o }, \
    { n " r8,m8", base + 2, -1, IMM_NONE, FF_BYTE, o }, \
    { n " r,m", base + 3, -1, IMM_NONE, 0, o }, \
    { n " m8,i8", 0x80, base / 8, IMM_8, FF_BYTE | FF_LOCK, o }, \
    { n " m,iz", 0x81, base / 8, IMM_Z, FF_LOCK, o }, \
    { n " m,i8s", 0x83, base / 8, IMM_8, FF_LOCK, o }, \
    { n " m8,i8 (82)", 0x82, base / 8, IMM_8, FF_BYTE | FF_LOCK | FF_NO64, o }
    ALU("add", 0x00, PGM_OP_ADD), ALU("or", 0x08, PGM_OP_OR),
    ALU("adc", 0x10, PGM_OP_ADC), ALU("sbb", 0x18, PGM_OP_SBB),
    ALU("and", 0x20, PGM_OP_AND), ALU("sub", 0x28, PGM_OP_SUB),
    ALU("xor", 0x30, PGM_OP_XOR),
#undef ALU
    { "cmp m8,r8", 0x38, -1, IMM_NONE, FF_BYTE, PGM_OP_CMP },
    { "cmp m,r", 0x39, -1, IMM_NONE, 0, PGM_OP_CMP },
    { "cmp r8,m8", 0x3a, -1, IMM_NONE, FF_BYTE, PGM_OP_CMP },
    { "cmp r,m", 0x3b, -1, IMM_NONE, 0, PGM_OP_CMP },
    { "cmp m8,i8", 0x80, 7, IMM_8, FF_BYTE, PGM_OP_CMP },
    { "cmp m,iz", 0x81, 7, IMM_Z, 0, PGM_OP_CMP },
    { "cmp m,i8s", 0x83, 7, IMM_8, 0, PGM_OP_CMP },
    { "test m8,r8", 0x84, -1, IMM_NONE, FF_BYTE, PGM_OP_TEST },
    { "test m,r", 0x85, -1, IMM_NONE, 0, PGM_OP_TEST },
    { "test m8,i8", 0xf6, 0, IMM_8, FF_BYTE, PGM_OP_TEST },
    { "test m,iz", 0xf7, 0, IMM_Z, 0, PGM_OP_TEST },
    { "mov m8,r8", 0x88, -1, IMM_NONE, FF_BYTE, PGM_OP_MOV },
    { "mov m,r", 0x89, -1, IMM_NONE, 0, PGM_OP_MOV },
    { "mov r8,m8", 0x8a, -1, IMM_NONE, FF_BYTE, PGM_OP_MOV },
    { "mov r,m", 0x8b, -1, IMM_NONE, 0, PGM_OP_MOV },
    { "mov m8,i8", 0xc6, 0, IMM_8, FF_BYTE | FF_NOREXR, PGM_OP_MOV },
    { "mov m,iz", 0xc7, 0, IMM_Z, FF_NOREXR, PGM_OP_MOV },
    { "mov al,moffs", 0xa0, 0, IMM_NONE, FF_BYTE | FF_MOFFS, PGM_OP_MOV },
    { "mov eax,moffs", 0xa1, 0, IMM_NONE, FF_MOFFS, PGM_OP_MOV },
    { "mov moffs,al", 0xa2, 0, IMM_NONE, FF_BYTE | FF_MOFFS, PGM_OP_MOV },
    { "mov moffs,eax", 0xa3, 0, IMM_NONE, FF_MOFFS, PGM_OP_MOV },
    { "movzx r,m8", 0xb6, -1, IMM_NONE, FF_0F, PGM_OP_MOVZX },
    { "movzx r,m16", 0xb7, -1, IMM_NONE, FF_0F, PGM_OP_MOVZX },
    { "movsx r,m8", 0xbe, -1, IMM_NONE, FF_0F, PGM_OP_MOVSX },
    { "movsx r,m16", 0xbf, -1, IMM_NONE, FF_0F, PGM_OP_MOVSX },
    { "movsxd r64,m32", 0x63, -1, IMM_NONE, FF_ONLY64 | FF_W, PGM_OP_MOVSX },
    { "xchg m8,r8", 0x86, -1, IMM_NONE, FF_BYTE | FF_LOCK, PGM_OP_XCHG },
    { "xchg m,r", 0x87, -1, IMM_NONE, FF_LOCK, PGM_OP_XCHG },
    { "cmpxchg m8,r8", 0xb0, -1, IMM_NONE, FF_0F | FF_BYTE | FF_LOCK, PGM_OP_CMPXCHG },
    { "cmpxchg m,r", 0xb1, -1, IMM_NONE, FF_0F | FF_LOCK, PGM_OP_CMPXCHG },
    { "cmpxchg8b m64", 0xc7, 1, IMM_NONE, FF_0F | FF_LOCK | FF_NOW, PGM_OP_CMPXCHG8B },
    { "cmpxchg16b m128", 0xc7, 1, IMM_NONE, FF_0F | FF_LOCK | FF_W | FF_ONLY64,
      PGM_OP_CMPXCHG8B },
    { "inc m8", 0xfe, 0, IMM_NONE, FF_BYTE | FF_LOCK, PGM_OP_INC },
    { "inc m", 0xff, 0, IMM_NONE, FF_LOCK, PGM_OP_INC },
    { "dec m8", 0xfe, 1, IMM_NONE, FF_BYTE | FF_LOCK, PGM_OP_DEC },
    { "dec m", 0xff, 1, IMM_NONE, FF_LOCK, PGM_OP_DEC },
    { "not m8", 0xf6, 2, IMM_NONE, FF_BYTE | FF_LOCK, PGM_OP_NOT },
    { "not m", 0xf7, 2, IMM_NONE, FF_LOCK, PGM_OP_NOT },
    { "neg m8", 0xf6, 3, IMM_NONE, FF_BYTE | FF_LOCK, PGM_OP_NEG },
    { "neg m", 0xf7, 3, IMM_NONE, FF_LOCK, PGM_OP_NEG },
    { "bt m,r", 0xa3, -1, IMM_NONE, FF_0F | FF_BTREG, PGM_OP_BT },
    { "bts m,r", 0xab, -1, IMM_NONE, FF_0F | FF_BTREG | FF_LOCK, PGM_OP_BTS },
    { "btr m,r", 0xb3, -1, IMM_NONE, FF_0F | FF_BTREG | FF_LOCK, PGM_OP_BTR },
    { "btc m,r", 0xbb, -1, IMM_NONE, FF_0F | FF_BTREG | FF_LOCK, PGM_OP_BTC },
    { "bt m,i8", 0xba, 4, IMM_8, FF_0F, PGM_OP_BT },
    { "bts m,i8", 0xba, 5, IMM_8, FF_0F | FF_LOCK, PGM_OP_BTS },
    { "btr m,i8", 0xba, 6, IMM_8, FF_0F | FF_LOCK, PGM_OP_BTR },
    { "btc m,i8", 0xba, 7, IMM_8, FF_0F | FF_LOCK, PGM_OP_BTC },
    { "stosb", 0xaa, 0, IMM_NONE, FF_BYTE | FF_STRING, PGM_OP_STOS },
    { "stos", 0xab, 0, IMM_NONE, FF_STRING, PGM_OP_STOS },
    { "movsb", 0xa4, 0, IMM_NONE, FF_BYTE | FF_STRING, PGM_OP_MOVS },
    { "movs", 0xa5, 0, IMM_NONE, FF_STRING, PGM_OP_MOVS },
};
#define NFORMS (sizeof(forms) / sizeof(forms[0]))

/* Flags the SDM defines after each operation (the rest may differ). */
static uint64_t
defined_flags(unsigned op)
{
    switch (op) {
    case PGM_OP_AND: case PGM_OP_OR: case PGM_OP_XOR: case PGM_OP_TEST:
        return STATUS & ~PGM_RFLAGS_AF;
    case PGM_OP_BT: case PGM_OP_BTS: case PGM_OP_BTR: case PGM_OP_BTC:
        return PGM_RFLAGS_CF | PGM_RFLAGS_ZF;
    default:
        return STATUS;
    }
}

struct diff_case {
    unsigned bits;
    const struct form *form;
    uint8_t code[16];
    unsigned len;           /* generated length (the decoder must agree) */
    unsigned addr_bits;     /* generated address size */
    struct pgm_regs regs;
    uint16_t sel[PGM_SEG_COUNT];    /* 16-bit: selectors; 32-bit: GDT slots */
};

/* A register value: mostly addresses that stay in a mappable range, some
 * that wrap or are large, so both address arithmetic and ALU see extremes. */
static uint64_t
rnd_reg(unsigned bits)
{
    uint64_t v;
    switch (rndn(bits == 64 ? 14 : 10)) {
    case 0: case 1: case 2: v = rnd() & 0xffff; break;
    case 3: v = rnd() & 0xffffffff; break;
    case 4: v = 0xffff0000 | (rnd() & 0xffff); break;
    case 5: v = rnd() & 0xfffffffffull; break;
    case 6: v = 0 - (rnd() & 0xffff); break;
    case 7: v = rndn(4) ? 0 : ~0ull; break;
    case 8: v = 0x80000000u + rndn(3) - 1; break;
    case 9: v = rnd(); break;
    default: v = rnd() & 0xfffffff; break;
    }
    return bits == 64 ? v : v & 0xffffffff;
}

static void
emit(struct diff_case *c, uint8_t b)
{
    if (c->len < sizeof(c->code))
        c->code[c->len++] = b;
}

static void
emit_n(struct diff_case *c, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        emit(c, (uint8_t)(v >> (8 * i)));
}

/* A displacement value, small more often than not. */
static uint64_t
rnd_disp(void)
{
    switch (rndn(4)) {
    case 0: return rnd() & 0x7f;
    case 1: return 0 - (rnd() & 0x7f);
    case 2: return rnd() & 0xffff;
    default: return rnd();
    }
}

/* ModRM (+SIB, +disp) with a memory operand and ModRM.reg = reg. */
static void
emit_modrm(struct diff_case *c, unsigned addr_bits, unsigned reg)
{
    unsigned mod = rndn(3), rm = rndn(8);
    emit(c, (uint8_t)(mod << 6 | (reg & 7) << 3 | rm));
    if (addr_bits == 16) {
        if (mod == 1)
            emit_n(c, rnd_disp(), 1);
        else if (mod == 2 || (mod == 0 && rm == 6))
            emit_n(c, rnd_disp(), 2);
        return;
    }
    bool disp32 = mod == 2 || (mod == 0 && rm == 5);
    if (rm == 4) {
        uint8_t sib = (uint8_t)rnd();
        emit(c, sib);
        if (mod == 0 && (sib & 7) == 5)
            disp32 = true;
    }
    if (mod == 1)
        emit_n(c, rnd_disp(), 1);
    else if (disp32)
        emit_n(c, rnd_disp(), 4);
}

/* Random prefixes in random order, then REX; returns the effective sizes. */
static void
gen_insn(struct diff_case *c)
{
    const struct form *f = c->form;
    unsigned bits = c->bits;
    uint8_t pfx[6];
    unsigned np = 0;
    bool opsize = rndn(4) == 0, addrsize = rndn(6) == 0;
    if (f->flags & FF_MOFFS && bits == 16)
        addrsize = rndn(4) == 0;
    if (opsize)
        pfx[np++] = 0x66;
    if (addrsize)
        pfx[np++] = 0x67;
    if (rndn(4) == 0) {
        static const uint8_t segs[] = { 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65 };
        pfx[np++] = segs[rndn(6)];
    }
    bool lock = (f->flags & FF_LOCK) && rndn(3) == 0;
    if (lock)
        pfx[np++] = 0xf0;
    if (f->flags & FF_STRING && rndn(3))
        pfx[np++] = rndn(4) ? 0xf3 : 0xf2;
    else if (lock && rndn(8) == 0)
        pfx[np++] = rndn(2) ? 0xf3 : 0xf2;  /* XACQUIRE / XRELEASE hints */
    for (unsigned i = np; i > 1; i--) {
        unsigned j = rndn(i);
        uint8_t t = pfx[i - 1];
        pfx[i - 1] = pfx[j];
        pfx[j] = t;
    }
    c->len = 0;
    for (unsigned i = 0; i < np; i++)
        emit(c, pfx[i]);

    unsigned addr_bits = bits == 64 ? (addrsize ? 32 : 64) :
                         (bits == 32) != addrsize ? 32 : 16;
    c->addr_bits = addr_bits;
    unsigned reg = rndn(8), rex = 0;
    if (bits == 64) {
        rex = rndn(3) ? (unsigned)rndn(16) : 0;
        if (f->flags & FF_W)
            rex |= 8;
        if (f->flags & FF_NOW)
            rex &= ~8u;
        if (f->flags & FF_NOREXR)
            rex &= ~4u;
        if (rex)
            emit(c, (uint8_t)(0x40 | rex));
    }
    if (f->flags & FF_0F)
        emit(c, 0x0f);
    emit(c, f->opc);
    /* operand size, for the width of an iz immediate */
    unsigned osize = (f->flags & FF_BYTE) ? 1 : (rex & 8) ? 8 :
                     (bits == 16) != opsize ? 2 : 4;
    if (f->flags & FF_MOFFS) {
        /* a 64-bit offset is mostly kept mappable */
        emit_n(c, addr_bits == 64 && rndn(8) ? rnd() & 0xfffffffffull : rnd(), addr_bits / 8);
    } else if (!(f->flags & FF_STRING)) {
        emit_modrm(c, addr_bits, f->digit >= 0 ? (unsigned)f->digit : reg);
    }
    if (f->imm == IMM_8)
        emit_n(c, rnd(), 1);
    else if (f->imm == IMM_Z)
        emit_n(c, rnd(), osize == 2 ? 2 : 4);
}

struct diff_stats {
    unsigned run, skipped, deviations, undefined_diff;
    unsigned dev_cmpxchg_rax, dev_lock_neg, gp;
    unsigned per_form[NFORMS];
};

struct uc_env {
    uc_engine *uc;
    unsigned bits;
};

static uint64_t
uc_get(uc_engine *uc, int id)
{
    uint64_t v = 0;
    uc_reg_read(uc, id, &v);
    return v;
}

static void
uc_set(uc_engine *uc, int id, uint64_t v)
{
    uc_err e = uc_reg_write(uc, id, &v);
    if (e != UC_ERR_OK)
        fail_msg("uc_reg_write(%d): %s", id, uc_strerror(e));
}

static const int uc_gpr64[16] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX,
    UC_X86_REG_RSP, UC_X86_REG_RBP, UC_X86_REG_RSI, UC_X86_REG_RDI,
    UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15,
};
static const int uc_gpr32[8] = {
    UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX,
    UC_X86_REG_ESP, UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI,
};
static const int uc_seg[PGM_SEG_COUNT] = {
    UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS, UC_X86_REG_DS,
    UC_X86_REG_FS, UC_X86_REG_GS,
};

#define GDT_LA 0x1000u

static void
print_case(const struct diff_case *c, const struct pgm_insn *in, const char *why)
{
    char hex[64];
    for (unsigned i = 0; i < c->len && i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", c->code[i]);
    fprintf(stderr, "# %u-bit %s [%s] '%s' at %#" PRIx64 ": %s\n", c->bits,
            c->form->name, hex, in ? in->mnemonic : "",
            c->regs.seg_base[PGM_CS] + c->regs.rip, why);
    fprintf(stderr, "#   regs:");
    for (unsigned i = 0; i < PGM_GPR_COUNT; i++)
        fprintf(stderr, " %" PRIx64, c->regs.gpr[i]);
    fprintf(stderr, " fl %" PRIx64 "\n", c->regs.rflags);
    uint64_t la;
    if (in && pgm_emu_operand_address(in, &c->regs, &la) == 0) {
        fprintf(stderr, "#   operand at %#" PRIx64 ":", la);
        for (unsigned i = 0; i < flat_mem.npages; i++) {
            const struct page *p = &flat_mem.pages[i];
            if (p->pfn == la >> 12)
                for (unsigned k = 0; k < 8 && (la & 4095) + k < 4096; k++)
                    fprintf(stderr, " %02x", p->init[(la & 4095) + k]);
        }
        fprintf(stderr, "\n");
    }
}

/*
 * Known Unicorn (QEMU 5 TCG) behaviours that differ from the SDM; the
 * emulator follows the SDM. Returns true when the difference in `what` is
 * one of them (counted, not failed).
 */
static bool
unicorn_deviation(const struct diff_case *c, const struct pgm_insn *in,
                  unsigned gpr, uint64_t emu, uint64_t uni)
{
    /* CMPXCHG r/m32 that succeeds in 64-bit code: the SDM writes the
     * accumulator only on failure, so RAX[63:32] survive; QEMU writes
     * EAX back (zero-extending RAX) in both cases. */
    if (in->op == PGM_OP_CMPXCHG && in->size == 4 && c->bits == 64 &&
        gpr == PGM_RAX && (emu & 0xffffffff) == uni)
        return true;
    return false;
}

/*
 * Flags Unicorn computes wrongly for an instruction. LOCK NEG: QEMU 5
 * derives SF, ZF and PF from the operand's old value instead of the
 * negated result (CF, OF and AF are right).
 */
static uint64_t
unicorn_flag_deviation(const struct pgm_insn *in)
{
    if (in->op == PGM_OP_NEG && (in->prefixes & PGM_INSN_LOCK))
        return PGM_RFLAGS_SF | PGM_RFLAGS_ZF | PGM_RFLAGS_PF;
    return 0;
}

/*
 * Make the interesting outcomes likely: CMPXCHG16B operands mostly aligned
 * (through the base register), and the compare of CMPXCHG / CMPXCHG8B / 16B
 * succeeding half of the time (accumulators loaded from the operand, whose
 * initial bytes are known from the seed).
 */
static void
prepare_compare(struct diff_case *c, const struct pgm_insn *in, uint64_t seed)
{
    struct pgm_regs *r = &c->regs;
    uint64_t la;
    if (in->op != PGM_OP_CMPXCHG && in->op != PGM_OP_CMPXCHG8B)
        return;
    if (in->size == 16 && in->mem.base != PGM_INSN_NOREG && rndn(4) &&
        pgm_emu_operand_address(in, r, &la) == 0)
        r->gpr[in->mem.base] -= la & 15;
    if (rndn(2) || pgm_emu_operand_address(in, r, &la) != 0)
        return;
    uint8_t cur[16];
    flat_init(&flat_mem, seed, c->bits == 64 ? 1ull << 36 : 1ull << 32);
    if (flat_read(&flat_mem, la, cur, in->size) != 0)
        return;
    uint64_t lo = 0, hi = 0;
    unsigned half = in->op == PGM_OP_CMPXCHG ? in->size : in->size / 2;
    for (unsigned i = 0; i < half && i < 8; i++) {
        lo |= (uint64_t)cur[i] << (8 * i);
        if (in->op == PGM_OP_CMPXCHG8B)
            hi |= (uint64_t)cur[half + i] << (8 * i);
    }
    uint64_t m = half >= 8 ? ~0ull : (1ull << (8 * half)) - 1;
    r->gpr[PGM_RAX] = (r->gpr[PGM_RAX] & ~m) | lo;
    if (in->op == PGM_OP_CMPXCHG8B)
        r->gpr[PGM_RDX] = (r->gpr[PGM_RDX] & ~m) | hi;
}

/* Run one case in both; returns 1 when compared, 0 when skipped. */
static int
diff_one(struct uc_env *env, struct diff_case *c, struct diff_stats *st, uint64_t seed)
{
    struct pgm_insn in;
    int rc = pgm_decode_insn(c->code, c->len, c->bits, &in);
    if (rc != PGM_DECODE_OK) {
        print_case(c, &in, "not decoded");
        fail_msg("decode rc %d", rc);
    }
    if (in.len != c->len) {
        print_case(c, &in, "length");
        fail_msg("decoded length %u, generated %u", in.len, c->len);
    }
    prepare_compare(c, &in, seed);
    uint64_t code_la = c->regs.seg_base[PGM_CS] + c->regs.rip;
    /* Unicorn's 64-bit mode runs without paging: linear = physical, and
     * physical addresses are cut to the model's address width, so stay low */
    uint64_t limit = c->bits == 64 ? 1ull << 36 : 1ull << 32;

    /* --- emulator --- */
    flat_init(&flat_mem, seed, limit);
    flat_mem.forbidden[flat_mem.nforbidden++] = code_la >> 12;
    flat_mem.forbidden[flat_mem.nforbidden++] = (code_la + 16) >> 12;
    if (c->bits == 32)
        flat_mem.forbidden[flat_mem.nforbidden++] = GDT_LA >> 12;
    flat_mem.forbidden[flat_mem.nforbidden++] = 0;
    struct pgm_regs er = c->regs;
    unsigned limit_iter = 1 + rndn(40);
    int loops = 0;
    while ((rc = pgm_emulate(&in, &er, &flat_ops, limit_iter)) == PGM_EMU_AGAIN) {
        if (++loops > 1000)
            fail_msg("emulator does not finish");
    }
    if (rc == -EFAULT)
        return 0;   /* an address outside what both sides can map */
    bool want_gp = rc == PGM_EMU_INJECT_GP;
    if (rc != PGM_EMU_DONE && !want_gp) {
        print_case(c, &in, "emulator result");
        fail_msg("pgm_emulate rc %d", rc);
    }

    /* --- Unicorn, over the same pages --- */
    uc_engine *uc = env->uc;
    uint64_t code_page = code_la & ~0xfffull;
    unsigned code_pages = ((code_la + 16) >> 12) != (code_la >> 12) ? 2 : 1;
    uc_err e = uc_mem_map(uc, code_page, 4096u * code_pages, UC_PROT_ALL);
    if (e != UC_ERR_OK)
        fail_msg("map code: %s", uc_strerror(e));
    uint8_t code[17];
    memcpy(code, c->code, c->len);
    code[c->len] = 0xf4;    /* hlt, in case Unicorn runs past `until` */
    uc_mem_write(uc, code_la, code, c->len + 1);
    for (unsigned i = 0; i < flat_mem.npages; i++) {
        struct page *p = &flat_mem.pages[i];
        if ((e = uc_mem_map(uc, p->pfn << 12, 4096, UC_PROT_ALL)) != UC_ERR_OK)
            fail_msg("map data: %s", uc_strerror(e));
        uc_mem_write(uc, p->pfn << 12, p->init, 4096);
    }
    if (c->bits == 32) {
        uc_mem_map(uc, GDT_LA, 4096, UC_PROT_ALL);
        uint8_t gdt[8 * 8] = { 0 };
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++) {
            if (s == PGM_CS)
                continue;
            uint32_t base = (uint32_t)c->regs.seg_base[s];
            uint8_t *d = gdt + 8 * (s + 1);
            d[0] = 0xff; d[1] = 0xff;               /* limit 15:0 */
            d[2] = (uint8_t)base; d[3] = (uint8_t)(base >> 8);
            d[4] = (uint8_t)(base >> 16);
            d[5] = 0x93;                            /* P, DPL 0, data RW, A */
            d[6] = 0xcf;                            /* G, D/B, limit 19:16 */
            d[7] = (uint8_t)(base >> 24);
        }
        uc_mem_write(uc, GDT_LA, gdt, sizeof(gdt));
        uc_x86_mmr gdtr = { .base = GDT_LA, .limit = sizeof(gdt) - 1 };
        if ((e = uc_reg_write(uc, UC_X86_REG_GDTR, &gdtr)) != UC_ERR_OK)
            fail_msg("gdtr: %s", uc_strerror(e));
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++)
            if (s != PGM_CS)
                uc_set(uc, uc_seg[s], 8 * (s + 1));
    } else if (c->bits == 16) {
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++)
            uc_set(uc, uc_seg[s], c->sel[s]);
    } else {
        uc_set(uc, UC_X86_REG_FS_BASE, c->regs.seg_base[PGM_FS]);
        uc_set(uc, UC_X86_REG_GS_BASE, c->regs.seg_base[PGM_GS]);
    }
    for (unsigned i = 0; i < (c->bits == 64 ? 16u : 8u); i++)
        uc_set(uc, c->bits == 64 ? uc_gpr64[i] : uc_gpr32[i], c->regs.gpr[i]);
    uc_set(uc, UC_X86_REG_EFLAGS, c->regs.rflags);
    uc_ctl_remove_cache(uc, code_la, code_la + 17);
    e = uc_emu_start(uc, code_la, code_la + c->len, 0, 0);

    int verdict = 1;
    if (want_gp) {
        /* Unicorn must refuse too: it reports the #GP as an exception, or
         * (after earlier runs on the same engine) stops without executing */
        if (e == UC_ERR_OK && uc_get(uc, c->bits == 64 ? UC_X86_REG_RIP : UC_X86_REG_EIP) !=
            (c->bits == 16 ? c->regs.rip : code_la)) {
            fprintf(stderr, "# unicorn rip %" PRIx64 "\n", uc_get(uc, UC_X86_REG_RIP));
            print_case(c, &in, "emulator #GP, Unicorn ran it");
            verdict = -1;
        } else {
            st->gp++;
            verdict = 2;
        }
    } else if (e != UC_ERR_OK) {
        print_case(c, &in, uc_strerror(e));
        verdict = -1;
    }
    uint64_t ur[16], urip, ufl;
    for (unsigned i = 0; i < (c->bits == 64 ? 16u : 8u); i++)
        ur[i] = uc_get(uc, c->bits == 64 ? uc_gpr64[i] : uc_gpr32[i]);
    urip = uc_get(uc, c->bits == 64 ? UC_X86_REG_RIP : UC_X86_REG_EIP);
    ufl = uc_get(uc, UC_X86_REG_EFLAGS);

    uint64_t rmask = c->bits == 64 ? ~0ull : 0xffffffffull;
    if (verdict == 2)
        er = c->regs;   /* #GP: nothing may have changed */
    for (unsigned i = 0; verdict == 1 && i < (c->bits == 64 ? 16u : 8u); i++) {
        uint64_t ev = er.gpr[i] & rmask, uv = ur[i] & rmask;
        if (ev == uv)
            continue;
        if (unicorn_deviation(c, &in, i, ev, uv)) {
            st->deviations++;
            st->dev_cmpxchg_rax++;
            continue;
        }
        char why[96];
        snprintf(why, sizeof(why), "gpr %u: emu %#" PRIx64 " unicorn %#" PRIx64
                 " (was %#" PRIx64 ")", i, ev, uv, c->regs.gpr[i]);
        print_case(c, &in, why);
        verdict = -1;
    }
    if (verdict == 1 && (er.rip & rmask) != (urip & rmask)) {
        char why[96];
        snprintf(why, sizeof(why), "rip: emu %#" PRIx64 " unicorn %#" PRIx64, er.rip, urip);
        print_case(c, &in, why);
        verdict = -1;
    }
    uint64_t fmask = defined_flags(in.op) | PGM_RFLAGS_DF;
    uint64_t quirk = unicorn_flag_deviation(&in);
    if (verdict == 1 && ((er.rflags ^ ufl) & fmask & quirk)) {
        st->deviations++;
        st->dev_lock_neg++;
        fmask &= ~quirk;
    }
    if (verdict == 1 && ((er.rflags ^ ufl) & fmask)) {
        char why[96];
        snprintf(why, sizeof(why), "flags: emu %#" PRIx64 " unicorn %#" PRIx64
                 " (was %#" PRIx64 ")", er.rflags, ufl, c->regs.rflags);
        print_case(c, &in, why);
        verdict = -1;
    }
    if (verdict == 1 && ((er.rflags ^ ufl) & STATUS & ~fmask))
        st->undefined_diff++;
    for (unsigned i = 0; verdict > 0 && i < flat_mem.npages; i++) {
        static uint8_t ubuf[4096];
        struct page *p = &flat_mem.pages[i];
        uc_mem_read(uc, p->pfn << 12, ubuf, 4096);
        if (memcmp(ubuf, p->data, 4096)) {
            unsigned k = 0;
            while (ubuf[k] == p->data[k])
                k++;
            char why[96];
            snprintf(why, sizeof(why), "memory %#" PRIx64 ": emu %02x unicorn %02x",
                     (p->pfn << 12) + k, p->data[k], ubuf[k]);
            print_case(c, &in, why);
            verdict = -1;
        }
    }

    for (unsigned i = 0; i < flat_mem.npages; i++)
        uc_mem_unmap(uc, flat_mem.pages[i].pfn << 12, 4096);
    uc_mem_unmap(uc, code_page, 4096u * code_pages);
    if (c->bits == 32)
        uc_mem_unmap(uc, GDT_LA, 4096);
    if (verdict < 0)
        fail_msg("emulator and Unicorn disagree (seed %#" PRIx64 ")", seed);
    return 1;
}

static void
gen_case(struct diff_case *c, unsigned bits, const struct form *f)
{
    memset(c, 0, sizeof(*c));
    c->bits = bits;
    c->form = f;
    struct pgm_regs *r = &c->regs;
    r->code_bits = (uint8_t)bits;
    for (unsigned i = 0; i < PGM_GPR_COUNT; i++)
        r->gpr[i] = bits == 64 || i < 8 ? rnd_reg(bits) : 0;
    r->rflags = 0x2 | (rnd() & STATUS) | (rndn(4) == 0 ? PGM_RFLAGS_DF : 0);
    if (f->flags & FF_BTREG && rndn(2)) {
        /* keep register bit offsets near the operand half of the time */
        for (unsigned i = 0; i < PGM_GPR_COUNT; i++)
            if (rndn(2))
                r->gpr[i] = (uint64_t)(int64_t)(int16_t)rnd();
        if (bits != 64)
            for (unsigned i = 0; i < 8; i++)
                r->gpr[i] &= 0xffffffff;
    }
    if (bits == 16) {
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++) {
            c->sel[s] = (uint16_t)(0x100 + rndn(0xe000));
            r->seg_base[s] = (uint64_t)c->sel[s] << 4;
        }
        r->rip = 0x100 + rndn(0xe000);
    } else if (bits == 32) {
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++)
            r->seg_base[s] = s == PGM_CS ? 0 :
                             rndn(3) == 0 ? 0 : rnd() & (rndn(2) ? 0xfffff000 : 0xffffffff);
        r->rip = 0x10000 + (rnd() & 0x7ffff000) + rndn(4080);
    } else {
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++)
            r->seg_base[s] = rnd();     /* must be ignored, except FS / GS */
        r->seg_base[PGM_CS] = 0;
        r->seg_base[PGM_FS] = rndn(2) ? 0 : rnd() & 0x7ffffffffull;
        r->seg_base[PGM_GS] = rndn(2) ? 0 : rnd() & 0xffffffffull;
        r->rip = 0x10000 + (rnd() & 0x7fffff000ull) + rndn(4080);
    }
    do                      /* the CPU refuses more than 15 bytes */
        gen_insn(c);
    while (c->len > 15);
    if (f->flags & FF_STRING) {
        /* short runs; bits above the address size must not count */
        r->gpr[PGM_RCX] = rndn(40);
        if (c->addr_bits < 64 && rndn(2))
            r->gpr[PGM_RCX] |= (rnd() << c->addr_bits) & (bits == 64 ? ~0ull : 0xffffffffull);
    }
}

static unsigned
env_unsigned(const char *name, unsigned dflt)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 0) : dflt;
}

static void
diff_mode(unsigned bits)
{
    uc_engine *uc;
    uc_mode mode = bits == 16 ? UC_MODE_16 : bits == 32 ? UC_MODE_32 : UC_MODE_64;
    uc_err e = uc_open(UC_ARCH_X86, mode, &uc);
    if (e != UC_ERR_OK)
        fail_msg("uc_open: %s", uc_strerror(e));
    struct uc_env env = { .uc = uc, .bits = bits };
    unsigned cases = env_unsigned("PGM_EMU_DIFF_CASES", 10000);
    uint64_t seed = env_unsigned("PGM_EMU_DIFF_SEED", 0x5eed) * 1000003ull + bits;
    static struct diff_stats st;
    memset(&st, 0, sizeof(st));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rng_state = seed;
    unsigned attempts = 0;
    while (st.run < cases && attempts < cases * 4) {
        attempts++;
        unsigned fi = rndn(NFORMS);
        const struct form *f = &forms[fi];
        if ((f->flags & FF_NO64 && bits == 64) || (f->flags & FF_ONLY64 && bits != 64))
            continue;
        static struct diff_case c;
        gen_case(&c, bits, f);
        uint64_t case_seed = rnd();
        if (diff_one(&env, &c, &st, case_seed)) {
            st.run++;
            st.per_form[fi]++;
        } else {
            st.skipped++;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    unsigned least = ~0u;
    for (unsigned i = 0; i < NFORMS; i++) {
        const struct form *f = &forms[i];
        if ((f->flags & FF_NO64 && bits == 64) || (f->flags & FF_ONLY64 && bits != 64))
            continue;
        if (st.per_form[i] < least)
            least = st.per_form[i];
    }
    printf("# %u-bit: %u cases compared, %u skipped (address out of range), "
           "%u known Unicorn deviations (%u CMPXCHG RAX, %u LOCK NEG flags), "
           "%u differ in undefined flags, %u #GP on both, fewest per form %u, %.2f s\n",
           bits, st.run, st.skipped, st.deviations, st.dev_cmpxchg_rax, st.dev_lock_neg,
           st.undefined_diff, st.gp, least, secs);
    uc_close(uc);
    assert_true(st.run >= cases);
    assert_true(least >= cases / NFORMS / 4);
}

static void test_diff_16(void **state) { (void)state; diff_mode(16); }
static void test_diff_32(void **state) { (void)state; diff_mode(32); }
static void test_diff_64(void **state) { (void)state; diff_mode(64); }

#else /* !PGM_HAVE_UNICORN */

static void
test_diff_skipped(void **state)
{
    (void)state;
    printf("# Unicorn not found by pkg-config at build time: "
           "differential tests skipped (install libunicorn-dev)\n");
    skip();
}
#define test_diff_16 test_diff_skipped
#define test_diff_32 test_diff_skipped
#define test_diff_64 test_diff_skipped

#endif

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
        cmocka_unit_test(test_diff_16),
        cmocka_unit_test(test_diff_32),
        cmocka_unit_test(test_diff_64),
    };
    return cmocka_run_group_tests_name("emu", tests, NULL, NULL);
}
