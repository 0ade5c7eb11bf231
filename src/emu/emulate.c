/* SPDX-License-Identifier: MIT */
/*
 * Execution of one decoded instruction (decode.h) against `struct pgm_regs`
 * and the caller's memory callbacks (emu.h).
 *
 * Invariants:
 *  - All register changes are made on a private copy (`struct emu.r`) and
 *    stored back to the caller's registers only at a commit point: the end
 *    of the instruction, or the end of each REP iteration. A callback fault
 *    returns before the commit, so the guest sees the registers it had
 *    before the faulting access.
 *  - Memory values cross the callback boundary as little-endian byte
 *    arrays; the emulator never casts guest buffers to wider types.
 *  - Addresses follow the CPU: effective address = base + index * scale +
 *    disp (+ next RIP when RIP-relative), truncated to the address size;
 *    linear = segment base + effective address, truncated to 32 bits outside
 *    64-bit code; in 64-bit code only the FS and GS bases are added.
 *    Segment limits, access rights and canonicality are not checked here:
 *    the memory callbacks see the final linear address and may fault on it.
 *  - Register writes: 8- and 16-bit writes merge into the register, 32-bit
 *    writes zero the upper half (in every code size: in 16/32-bit code that
 *    half is not architecturally visible), 64-bit writes replace it.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "src/emu/emu.h"

/* Retries of a locked read-modify-write whose compare-exchange keeps losing
 * to another writer, before giving the instruction back (PGM_EMU_AGAIN). */
#define LOCKED_RETRIES 64

struct emu {
    const struct pgm_insn *in;
    const struct pgm_emu_mem *mem;
    struct pgm_regs r;      /* working copy, committed by the caller */
    uint64_t next_rip;
};

/* ---- values ---- */

static uint64_t
width_mask(unsigned size)
{
    return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

static uint64_t
sign_extend(uint64_t v, unsigned size)
{
    if (size >= 8)
        return v;
    uint64_t sign = 1ull << (size * 8 - 1);
    v &= width_mask(size);
    return (v ^ sign) - sign;
}

static uint64_t
load_le(const uint8_t *b, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size && i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static void
store_le(uint8_t *b, uint64_t v, unsigned size)
{
    for (unsigned i = 0; i < size && i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

/* ---- registers ---- */

static uint64_t
reg_get(const struct pgm_regs *r, unsigned gpr, unsigned size, bool high8)
{
    if (high8)
        return (r->gpr[gpr] >> 8) & 0xff;
    return r->gpr[gpr] & width_mask(size);
}

static void
reg_set(struct pgm_regs *r, unsigned gpr, unsigned size, bool high8, uint64_t v)
{
    uint64_t *g = &r->gpr[gpr];
    if (high8)
        *g = (*g & ~0xff00ull) | ((v & 0xff) << 8);
    else if (size == 1)
        *g = (*g & ~0xffull) | (v & 0xff);
    else if (size == 2)
        *g = (*g & ~0xffffull) | (v & 0xffff);
    else if (size == 4)
        *g = v & 0xffffffffull;
    else
        *g = v;
}

/* An address-sized register (rSI, rDI, rCX of string instructions). */
static void
reg_set_addr(struct pgm_regs *r, unsigned gpr, unsigned addr_bits, uint64_t v)
{
    reg_set(r, gpr, addr_bits / 8, false, v);
}

/* ---- addresses ---- */

static uint64_t
effective_address(const struct emu *e)
{
    const struct pgm_insn_mem *m = &e->in->mem;
    uint64_t ea = (uint64_t)m->disp;
    if (m->rip_rel)
        ea += e->next_rip;
    if (m->base != PGM_INSN_NOREG)
        ea += e->r.gpr[m->base];
    if (m->index != PGM_INSN_NOREG)
        ea += e->r.gpr[m->index] * m->scale;
    return ea & width_mask(m->addr_bits / 8);
}

static uint64_t
linear_address(const struct emu *e, unsigned seg, uint64_t ea)
{
    if (e->in->code_bits == 64)
        return (seg == PGM_FS || seg == PGM_GS) ? e->r.seg_base[seg] + ea : ea;
    return (e->r.seg_base[seg] + ea) & 0xffffffffull;
}

/* ---- memory ---- */

static int
mem_read(const struct emu *e, uint64_t la, unsigned size, uint64_t *v)
{
    uint8_t b[8] = { 0 };
    int rc = e->mem->read(e->mem->ctx, la, b, size);
    if (rc)
        return rc;
    *v = load_le(b, size);
    return 0;
}

static int
mem_write(const struct emu *e, uint64_t la, unsigned size, uint64_t v)
{
    uint8_t b[8] = { 0 };
    store_le(b, v, size);
    return e->mem->write(e->mem->ctx, la, b, size);
}

/*
 * Compare-exchange of up to 8 bytes: *cur is the value expected, and on
 * return the value memory held (equal to the expected one iff the store
 * happened). Without a cmpxchg callback, a read then a conditional write.
 */
static int
mem_cmpxchg(const struct emu *e, uint64_t la, unsigned size, uint64_t *cur,
            uint64_t desired, bool *stored)
{
    uint64_t expected = *cur;
    if (e->mem->cmpxchg) {
        uint8_t exp[8] = { 0 }, des[8] = { 0 };
        store_le(exp, expected, size);
        store_le(des, desired, size);
        int rc = e->mem->cmpxchg(e->mem->ctx, la, exp, des, size);
        if (rc)
            return rc;
        *cur = load_le(exp, size);
    } else {
        int rc = mem_read(e, la, size, cur);
        if (rc)
            return rc;
        if (*cur == expected && (rc = mem_write(e, la, size, desired)))
            return rc;
    }
    *stored = *cur == expected;
    return 0;
}

/*
 * Read-modify-write of the memory operand: new = fn(old). Atomic (through
 * compare-exchange) when `locked`. On success *old holds the value the
 * update was applied to. PGM_EMU_AGAIN when the race is lost too often.
 */
struct rmw {
    unsigned op;            /* enum pgm_insn_op of pgm_emu_alu, or a BT* op */
    unsigned size;
    uint64_t src;           /* second operand / bit mask */
    uint64_t rflags_in;
    uint64_t rflags_out;
};

static uint64_t
rmw_apply(struct rmw *w, uint64_t old)
{
    uint64_t r;
    switch (w->op) {
    case PGM_OP_XCHG:
        return w->src;
    case PGM_OP_BTS:
        return old | w->src;
    case PGM_OP_BTR:
        return old & ~w->src;
    case PGM_OP_BTC:
        return old ^ w->src;
    default:
        w->rflags_out = pgm_emu_alu(w->op, w->size, old, w->src, w->rflags_in, &r);
        return r;
    }
}

static int
mem_rmw(const struct emu *e, uint64_t la, bool locked, struct rmw *w, uint64_t *old)
{
    int rc = mem_read(e, la, w->size, old);
    if (rc)
        return rc;
    if (!locked)
        return mem_write(e, la, w->size, rmw_apply(w, *old));
    for (unsigned tries = 0; tries < LOCKED_RETRIES; tries++) {
        uint64_t cur = *old;
        bool stored;
        rc = mem_cmpxchg(e, la, w->size, &cur, rmw_apply(w, *old), &stored);
        if (rc)
            return rc;
        if (stored)
            return 0;
        *old = cur;
    }
    return PGM_EMU_AGAIN;
}

/* ---- instructions ---- */

/* The non-memory operand's value, truncated to the operation width. */
static uint64_t
source_value(const struct emu *e)
{
    const struct pgm_insn *in = e->in;
    if (in->src == PGM_SRC_IMM)
        return (uint64_t)in->imm & width_mask(in->size);
    return reg_get(&e->r, in->reg.gpr, in->reg_size, in->reg.high8);
}

static void
source_set(struct emu *e, uint64_t v)
{
    const struct pgm_insn *in = e->in;
    reg_set(&e->r, in->reg.gpr, in->reg_size, in->reg.high8, v);
}

static bool
insn_locked(const struct pgm_insn *in)
{
    return (in->prefixes & PGM_INSN_LOCK) || in->op == PGM_OP_XCHG;
}

static int
do_mov(struct emu *e, uint64_t la)
{
    const struct pgm_insn *in = e->in;
    if (in->mem_is_dest)
        return mem_write(e, la, in->size, source_value(e));
    uint64_t v;
    int rc = mem_read(e, la, in->size, &v);
    if (rc)
        return rc;
    if (in->op == PGM_OP_MOVSX)
        v = sign_extend(v, in->size);
    source_set(e, v);   /* MOVZX: v is already zero-extended */
    return 0;
}

static int
do_alu(struct emu *e, uint64_t la)
{
    const struct pgm_insn *in = e->in;
    struct rmw w = { .op = in->op, .size = in->size, .rflags_in = e->r.rflags };
    uint64_t old, result;
    int rc;

    if (!in->mem_is_dest) {
        /* reg op= mem: only the register (and flags) change */
        if ((rc = mem_read(e, la, in->size, &old)))
            return rc;
        uint64_t a = source_value(e);
        e->r.rflags = pgm_emu_alu(in->op, in->size, a, old, e->r.rflags, &result);
        if (in->op != PGM_OP_CMP && in->op != PGM_OP_TEST)
            source_set(e, result);
        return 0;
    }
    if (in->src != PGM_SRC_NONE)
        w.src = source_value(e);
    if (in->op == PGM_OP_CMP || in->op == PGM_OP_TEST) {
        if ((rc = mem_read(e, la, in->size, &old)))
            return rc;
        e->r.rflags = pgm_emu_alu(in->op, in->size, old, w.src, e->r.rflags, &result);
        return 0;
    }
    w.rflags_out = e->r.rflags;
    if ((rc = mem_rmw(e, la, insn_locked(in), &w, &old)))
        return rc;
    e->r.rflags = w.rflags_out;
    return 0;
}

static int
do_xchg(struct emu *e, uint64_t la)
{
    struct rmw w = { .op = PGM_OP_XCHG, .size = e->in->size, .src = source_value(e) };
    uint64_t old;
    int rc = mem_rmw(e, la, true, &w, &old);
    if (rc)
        return rc;
    source_set(e, old);
    return 0;
}

/*
 * CMPXCHG: compare the accumulator with the operand; equal: store the source
 * register, ZF=1; else: load the operand into the accumulator, ZF=0. The
 * other flags are those of CMP accumulator, operand. The accumulator is only
 * written on failure (so a 32-bit CMPXCHG that succeeds in 64-bit code keeps
 * RAX's upper half), and memory only on success (the CPU's write-back of the
 * unchanged value on failure is not reproduced).
 */
static int
do_cmpxchg(struct emu *e, uint64_t la)
{
    const struct pgm_insn *in = e->in;
    uint64_t acc = reg_get(&e->r, PGM_RAX, in->size, false);
    uint64_t cur = acc, result;
    bool stored;
    int rc = mem_cmpxchg(e, la, in->size, &cur, source_value(e), &stored);
    if (rc)
        return rc;
    e->r.rflags = pgm_emu_alu(PGM_OP_CMP, in->size, acc, cur, e->r.rflags, &result);
    if (!stored)
        reg_set(&e->r, PGM_RAX, in->size, false, cur);
    return 0;
}

/*
 * CMPXCHG8B / CMPXCHG16B: EDX:EAX (RDX:RAX) against the operand; equal:
 * store ECX:EBX (RCX:RBX), ZF=1; else load the operand into EDX:EAX, ZF=0.
 * No other flag changes. CMPXCHG16B needs a 16-byte aligned operand (#GP).
 */
static int
do_cmpxchg8b(struct emu *e, uint64_t la)
{
    unsigned half = e->in->size / 2;
    uint64_t m = width_mask(half);
    uint8_t exp[16] = { 0 }, des[16] = { 0 }, before[16];
    store_le(exp, e->r.gpr[PGM_RAX] & m, half);
    store_le(exp + half, e->r.gpr[PGM_RDX] & m, half);
    store_le(des, e->r.gpr[PGM_RBX] & m, half);
    store_le(des + half, e->r.gpr[PGM_RCX] & m, half);
    memcpy(before, exp, sizeof(before));
    if (half == 8 && (la & 15))
        return PGM_EMU_INJECT_GP;

    int rc;
    if (e->mem->cmpxchg) {
        rc = e->mem->cmpxchg(e->mem->ctx, la, exp, des, e->in->size);
    } else {
        rc = e->mem->read(e->mem->ctx, la, exp, e->in->size);
        if (!rc && !memcmp(exp, before, e->in->size))
            rc = e->mem->write(e->mem->ctx, la, des, e->in->size);
    }
    if (rc)
        return rc;
    if (!memcmp(exp, before, e->in->size)) {
        e->r.rflags |= PGM_RFLAGS_ZF;
    } else {
        e->r.rflags &= ~PGM_RFLAGS_ZF;
        reg_set(&e->r, PGM_RAX, half, false, load_le(exp, half));
        reg_set(&e->r, PGM_RDX, half, false, load_le(exp + half, half));
    }
    return 0;
}

/*
 * BT, BTS, BTR, BTC. An immediate bit offset is taken modulo the operand
 * width and addresses the operand itself. A register bit offset is signed
 * and may address memory outside the operand, as the SDM says: the operand
 * moves by (offset SAR log2(width in bits)) * width bytes, computed on the
 * effective address (then truncated to the address size, then segmented),
 * and the bit is offset mod width. CF = the bit's old value; OF, SF, AF and
 * PF (undefined in the SDM) and ZF (unaffected) are kept.
 */
static int
do_bt(struct emu *e, uint64_t ea)
{
    const struct pgm_insn *in = e->in;
    unsigned bits = in->size * 8;
    unsigned shift = bits == 16 ? 4 : bits == 32 ? 5 : 6;
    uint64_t bit;
    if (in->src == PGM_SRC_IMM) {
        bit = (uint64_t)in->imm & (bits - 1);
    } else {
        uint64_t off = sign_extend(source_value(e), in->size);
        bit = off & (bits - 1);
        /* off SAR shift, in unsigned arithmetic (wraps like the CPU's) */
        uint64_t moved = (off >> shift) | ((off >> 63) ? ~(~0ull >> shift) : 0);
        ea = (ea + moved * in->size) & width_mask(in->mem.addr_bits / 8);
    }
    uint64_t la = linear_address(e, in->mem.seg, ea);
    uint64_t old;
    int rc;
    if (in->op == PGM_OP_BT) {
        if ((rc = mem_read(e, la, in->size, &old)))
            return rc;
    } else {
        struct rmw w = { .op = in->op, .size = in->size, .src = 1ull << bit };
        if ((rc = mem_rmw(e, la, insn_locked(in), &w, &old)))
            return rc;
    }
    if ((old >> bit) & 1)
        e->r.rflags |= PGM_RFLAGS_CF;
    else
        e->r.rflags &= ~PGM_RFLAGS_CF;
    return 0;
}

/*
 * STOS and MOVS, with or without REP (F3, or F2, which the CPU treats the
 * same for these two). rCX, rSI and rDI are the address-size registers;
 * each iteration moves them by the width, backwards when DF is set. At most
 * `limit` iterations; each completed one is committed to `out`, so a fault
 * or the bound leaves the guest able to resume the instruction.
 */
static int
do_string(struct emu *e, struct pgm_regs *out, unsigned limit)
{
    const struct pgm_insn *in = e->in;
    unsigned ab = in->mem.addr_bits, size = in->size;
    uint64_t am = width_mask(ab / 8);
    bool rep = (in->prefixes & (PGM_INSN_REP | PGM_INSN_REPNE)) != 0;
    uint64_t step = (e->r.rflags & PGM_RFLAGS_DF) ? (uint64_t)0 - size : size;

    for (unsigned n = 0;; n++) {
        if (rep && (e->r.gpr[PGM_RCX] & am) == 0)
            break;
        if (rep && n == limit) {
            *out = e->r;
            return PGM_EMU_AGAIN;
        }
        uint64_t di = e->r.gpr[PGM_RDI] & am;
        uint64_t dst = linear_address(e, PGM_ES, di);
        uint64_t v;
        int rc;
        if (in->op == PGM_OP_STOS) {
            v = reg_get(&e->r, PGM_RAX, size, false);
        } else {
            uint64_t si = e->r.gpr[PGM_RSI] & am;
            if ((rc = mem_read(e, linear_address(e, in->mem.seg, si), size, &v)))
                return rc;
        }
        if ((rc = mem_write(e, dst, size, v)))
            return rc;
        reg_set_addr(&e->r, PGM_RDI, ab, di + step);
        if (in->op == PGM_OP_MOVS)
            reg_set_addr(&e->r, PGM_RSI, ab, (e->r.gpr[PGM_RSI] & am) + step);
        if (!rep)
            break;
        reg_set_addr(&e->r, PGM_RCX, ab, (e->r.gpr[PGM_RCX] & am) - 1);
        *out = e->r;    /* iteration committed */
    }
    e->r.rip = e->next_rip;
    *out = e->r;
    return PGM_EMU_DONE;
}

static uint64_t
next_rip(const struct pgm_insn *in, const struct pgm_regs *r)
{
    uint64_t rip = r->rip + in->len;
    return in->code_bits == 64 ? rip : rip & 0xffffffffull;
}

static bool
insn_ok(const struct pgm_insn *in, const struct pgm_regs *r)
{
    if (in->op == PGM_OP_NONE || in->op >= PGM_OP_COUNT || in->len == 0 ||
        in->len > PGM_INSN_MAX_LEN || in->code_bits != r->code_bits)
        return false;
    if (in->mem.seg >= PGM_SEG_COUNT ||
        (in->mem.base != PGM_INSN_NOREG && in->mem.base >= PGM_GPR_COUNT) ||
        (in->mem.index != PGM_INSN_NOREG && in->mem.index >= PGM_GPR_COUNT) ||
        (in->mem.addr_bits != 16 && in->mem.addr_bits != 32 && in->mem.addr_bits != 64))
        return false;
    if (in->src == PGM_SRC_REG && (in->reg.gpr >= PGM_GPR_COUNT ||
        (in->reg.high8 && in->reg.gpr > PGM_RBX)))
        return false;
    if (in->op == PGM_OP_CMPXCHG8B)
        return in->size == 8 || (in->size == 16 && in->code_bits == 64);
    return in->size == 1 || in->size == 2 || in->size == 4 || in->size == 8;
}

int
pgm_emu_operand_address(const struct pgm_insn *insn, const struct pgm_regs *regs,
                        uint64_t *la)
{
    if (!insn || !regs || !la || !insn_ok(insn, regs))
        return -EINVAL;
    struct emu e = { .in = insn, .r = *regs, .next_rip = next_rip(insn, regs) };
    *la = linear_address(&e, insn->mem.seg, effective_address(&e));
    return 0;
}

int
pgm_emulate(const struct pgm_insn *insn, struct pgm_regs *regs,
            const struct pgm_emu_mem *mem, unsigned rep_limit)
{
    if (!insn || !regs || !mem || !mem->read || !mem->write || !insn_ok(insn, regs))
        return -EINVAL;
    struct emu e = { .in = insn, .mem = mem, .r = *regs,
                     .next_rip = next_rip(insn, regs) };
    if (insn->op == PGM_OP_STOS || insn->op == PGM_OP_MOVS)
        return do_string(&e, regs, rep_limit ? rep_limit : PGM_EMU_REP_DEFAULT);

    uint64_t ea = effective_address(&e);
    uint64_t la = linear_address(&e, insn->mem.seg, ea);
    int rc;
    switch (insn->op) {
    case PGM_OP_MOV:
    case PGM_OP_MOVZX:
    case PGM_OP_MOVSX:
        rc = do_mov(&e, la);
        break;
    case PGM_OP_XCHG:
        rc = do_xchg(&e, la);
        break;
    case PGM_OP_CMPXCHG:
        rc = do_cmpxchg(&e, la);
        break;
    case PGM_OP_CMPXCHG8B:
        rc = do_cmpxchg8b(&e, la);
        break;
    case PGM_OP_ADD: case PGM_OP_OR: case PGM_OP_ADC: case PGM_OP_SBB:
    case PGM_OP_AND: case PGM_OP_SUB: case PGM_OP_XOR: case PGM_OP_CMP:
    case PGM_OP_TEST: case PGM_OP_INC: case PGM_OP_DEC: case PGM_OP_NOT:
    case PGM_OP_NEG:
        rc = do_alu(&e, la);
        break;
    case PGM_OP_BT: case PGM_OP_BTS: case PGM_OP_BTR: case PGM_OP_BTC:
        rc = do_bt(&e, ea);
        break;
    default:
        return PGM_EMU_UNSUPPORTED;
    }
    if (rc)
        return rc;
    e.r.rip = e.next_rip;
    *regs = e.r;
    return PGM_EMU_DONE;
}
