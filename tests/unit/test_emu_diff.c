/* SPDX-License-Identifier: MIT */
/*
 * The instruction emulator (src/emu/) against Unicorn 2 (QEMU's TCG) as an
 * independent CPU: for every allow-listed form, in 16-, 32- and 64-bit
 * code, random prefixes (in random order), ModRM/SIB/displacements,
 * registers, flags, segment bases and memory (seeded); the instruction runs
 * in pgm_emulate() over a flat memory and in Unicorn over the same pages
 * (tests/emuref/unicorn_ref.h), and every GPR, RIP, the defined flags and
 * every touched byte must agree. Skipped (with a message) when the build did
 * not find Unicorn. PGM_EMU_DIFF_CASES and PGM_EMU_DIFF_SEED override the
 * case count per mode and the seed.
 *
 * Unicorn-vs-SDM differences are handled in one place, uref_deviations() in
 * tests/emuref/unicorn_ref.c, and counted here; everything else must match
 * exactly. The directed tests are test_emu.c.
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

#include "src/emu/emu.h"

#ifdef PGM_HAVE_UNICORN

#include "tests/emuref/flat_mem.h"
#include "tests/emuref/unicorn_ref.h"

#define STATUS (PGM_RFLAGS_CF | PGM_RFLAGS_PF | PGM_RFLAGS_AF | PGM_RFLAGS_ZF | \
                PGM_RFLAGS_SF | PGM_RFLAGS_OF)

static struct flat flat_mem;   /* large: static, not on the stack */

static const struct pgm_emu_mem flat_ops = {
    .ctx = &flat_mem, .read = flat_read, .write = flat_write, .cmpxchg = flat_cmpxchg,
};

/* Random numbers (splitmix64): the same seed gives the same cases. */
static uint64_t rng_state;

static uint64_t
rnd(void)
{
    rng_state += 0x9e3779b97f4a7c15ull;
    return flat_mix64(rng_state);
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
                              (UREF_DEV_C6C7_REXR: such a case would only be
                              skipped; test_emu_decode checks the decoder) */

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
struct diff_case {
    unsigned bits;
    const struct form *form;
    uint8_t code[16];
    unsigned len;           /* generated length (the decoder must agree) */
    unsigned addr_bits;     /* generated address size */
    struct pgm_regs regs;   /* 16-bit: bases are selector << 4 */
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
    unsigned run, skipped;
    unsigned per_form[NFORMS];
    struct uref_stats ref;
};

static void
print_case(const struct diff_case *c, const struct pgm_insn *in, const char *why)
{
    uref_print_case(stderr, c->form->name, c->code, c->len, in, &c->regs, &flat_mem, why);
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
diff_one(struct uref *u, struct diff_case *c, struct diff_stats *st, uint64_t seed)
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
    if (!uref_state_ok(&c->regs)) {
        print_case(c, &in, "generated a state Unicorn cannot run");
        fail_msg("bad case");
    }

    /* the emulator, over pages created on first touch (the code and the
     * GDT are -EFAULT: outside what both sides can map) */
    uref_flat_init(&flat_mem, &c->regs, seed);
    struct pgm_regs er = c->regs;
    unsigned limit_iter = 1 + rndn(40);
    int loops = 0;
    while ((rc = pgm_emulate(&in, &er, &flat_ops, limit_iter)) == PGM_EMU_AGAIN) {
        if (++loops > 1000)
            fail_msg("emulator does not finish");
    }
    if (rc == -EFAULT)
        return 0;
    if (rc != PGM_EMU_DONE && rc != PGM_EMU_INJECT_GP) {
        print_case(c, &in, "emulator result");
        fail_msg("pgm_emulate rc %d", rc);
    }

    /* Unicorn, over the same pages, from the same state */
    char why[160];
    int v = uref_check(u, c->code, c->len, &in, &c->regs, rc, &er, &flat_mem, &st->ref,
                       why, sizeof(why));
    if (v == UREF_ERROR)
        fail_msg("Unicorn setup: %s", why);
    if (v == UREF_MISMATCH) {
        print_case(c, &in, why);
        fail_msg("emulator and Unicorn disagree (seed %#" PRIx64 ")", seed);
    }
    return v == UREF_SKIPPED ? 0 : 1;
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
            uint16_t sel = (uint16_t)(0x100 + rndn(0xe000));   /* real mode */
            r->seg_base[s] = (uint64_t)sel << 4;
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
    struct uref *u = uref_open(bits);
    if (!u)
        fail_msg("uc_open failed");
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
        if (diff_one(u, &c, &st, case_seed)) {
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
    char devs[160] = "";
    for (unsigned d = 0, n = 0; d < UREF_DEV_COUNT; d++)
        n += (unsigned)snprintf(devs + n, n < sizeof(devs) ? sizeof(devs) - n : 0,
                                "%s%u %s", d ? ", " : "", st.ref.dev[d], uref_dev_name(d));
    printf("# %u-bit: %u cases compared, %u skipped (address out of range or a "
           "deviation Unicorn cannot run), %u known Unicorn deviations (%s), "
           "%u differ in undefined flags, %u #GP on both, fewest per form %u, %.2f s\n",
           bits, st.run, st.skipped, st.ref.deviations, devs,
           st.ref.undefined_diff, st.ref.gp, least, secs);
    uref_close(u);
    assert_true(st.run >= cases);
    assert_true(least >= cases / NFORMS / 4);
}

/*
 * The reference itself: an engine that has refused instructions keeps
 * reporting refusals as refusals (Unicorn 2.0.1 turns the third undelivered
 * exception into a triple fault that looks like a successful run doing
 * nothing, unless each run starts from a fresh CPU context).
 */
static void
test_reference_after_exceptions(void **state)
{
    (void)state;
    static const uint8_t gp[] = { 0xf0, 0x48, 0x0f, 0xc7, 0x4f, 0x01 };  /* lock cmpxchg16b [rdi+1] */
    static const uint8_t ud[] = { 0x0f, 0x0b };                          /* ud2 */
    static const uint8_t ok[] = { 0x48, 0x89, 0x07 };                    /* mov [rdi], rax */
    struct uref *u = uref_open(64);
    assert_non_null(u);
    struct pgm_regs r;
    memset(&r, 0, sizeof(r));
    r.code_bits = 64;
    r.rflags = 0x2;
    r.gpr[PGM_RDI] = 0x3000;
    r.gpr[PGM_RAX] = 0x1122334455667788ull;
    struct uref_cpu out;
    char why[160];
    for (unsigned i = 0; i < 4; i++) {
        r.rip = 0x10000 + 0x1000 * i;
        uref_flat_init(&flat_mem, &r, 1);
        assert_non_null(flat_page(&flat_mem, 3));
        assert_int_equal(uref_run(u, gp, sizeof(gp), &r, &flat_mem, &out, why, sizeof(why)), 0);
        assert_int_not_equal(out.err, 0);
        assert_int_equal(out.rip, r.rip);
        assert_int_equal(uref_run(u, ud, sizeof(ud), &r, &flat_mem, &out, why, sizeof(why)), 0);
        assert_int_not_equal(out.err, 0);
        assert_int_equal(uref_run(u, ok, sizeof(ok), &r, &flat_mem, &out, why, sizeof(why)), 0);
        assert_int_equal(out.err, 0);
        assert_int_equal(out.rip, r.rip + sizeof(ok));
    }
    uref_close(u);
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
#define test_reference_after_exceptions test_diff_skipped

#endif

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_after_exceptions),
        cmocka_unit_test(test_diff_16),
        cmocka_unit_test(test_diff_32),
        cmocka_unit_test(test_diff_64),
    };
    return cmocka_run_group_tests_name("emu_diff", tests, NULL, NULL);
}
