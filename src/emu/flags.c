/* SPDX-License-Identifier: MIT */
/*
 * Integer arithmetic with the x86 status flags (OF SF ZF AF PF CF).
 *
 * Every width is computed the same way: operands and result are truncated to
 * `size` bytes, and the carries come from the sign bit of the width (bit
 * n-1), using the identities
 *   carry out of a + b = r:   ((a & b) | ((a | b) & ~r)) bit n-1
 *   borrow of a - b = r:      ((~a & b) | (~(a ^ b) & r)) bit n-1
 *   overflow of a + b:        ((a ^ r) & (b ^ r)) bit n-1
 *   overflow of a - b:        ((a ^ b) & (a ^ r)) bit n-1
 *   auxiliary carry (bit 3):  (a ^ b ^ r) bit 4
 * which hold for any n because they only look at the bits of one column.
 *
 * Undefined-flag policy: AND, OR, XOR and TEST leave AF undefined in the SDM;
 * we clear it (what current Intel and AMD parts and QEMU do). Flags an
 * operation does not touch (CF for INC/DEC, all for NOT) are kept.
 */
#include "src/emu/emu.h"

#define STATUS_FLAGS (PGM_RFLAGS_CF | PGM_RFLAGS_PF | PGM_RFLAGS_AF | \
                      PGM_RFLAGS_ZF | PGM_RFLAGS_SF | PGM_RFLAGS_OF)

static uint64_t
width_mask(unsigned size)
{
    return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

/* PF: set when the low byte of the result has an even number of ones. */
static uint64_t
parity_flag(uint64_t r)
{
    unsigned b = (unsigned)(r & 0xff);
    b ^= b >> 4;
    b ^= b >> 2;
    b ^= b >> 1;
    return (b & 1) ? 0 : PGM_RFLAGS_PF;
}

/* SF, ZF and PF of a result already truncated to `size`. */
static uint64_t
result_flags(uint64_t r, unsigned size)
{
    uint64_t f = parity_flag(r);
    if (r == 0)
        f |= PGM_RFLAGS_ZF;
    if ((r >> (size * 8 - 1)) & 1)
        f |= PGM_RFLAGS_SF;
    return f;
}

static uint64_t
add_flags(uint64_t a, uint64_t b, uint64_t r, unsigned size)
{
    unsigned top = size * 8 - 1;
    uint64_t f = result_flags(r, size);
    if ((((a & b) | ((a | b) & ~r)) >> top) & 1)
        f |= PGM_RFLAGS_CF;
    if ((((a ^ r) & (b ^ r)) >> top) & 1)
        f |= PGM_RFLAGS_OF;
    if ((a ^ b ^ r) & 0x10)
        f |= PGM_RFLAGS_AF;
    return f;
}

static uint64_t
sub_flags(uint64_t a, uint64_t b, uint64_t r, unsigned size)
{
    unsigned top = size * 8 - 1;
    uint64_t f = result_flags(r, size);
    if ((((~a & b) | (~(a ^ b) & r)) >> top) & 1)
        f |= PGM_RFLAGS_CF;
    if ((((a ^ b) & (a ^ r)) >> top) & 1)
        f |= PGM_RFLAGS_OF;
    if ((a ^ b ^ r) & 0x10)
        f |= PGM_RFLAGS_AF;
    return f;
}

uint64_t
pgm_emu_alu(unsigned op, unsigned size, uint64_t a, uint64_t b, uint64_t rflags,
            uint64_t *result)
{
    uint64_t m = width_mask(size);
    uint64_t cf = (rflags & PGM_RFLAGS_CF) ? 1 : 0;
    uint64_t r, f;
    a &= m;
    b &= m;
    switch (op) {
    case PGM_OP_ADD:
        r = (a + b) & m;
        f = add_flags(a, b, r, size);
        break;
    case PGM_OP_ADC:
        r = (a + b + cf) & m;
        f = add_flags(a, b, r, size);
        break;
    case PGM_OP_SUB:
    case PGM_OP_CMP:
        r = (a - b) & m;
        f = sub_flags(a, b, r, size);
        break;
    case PGM_OP_SBB:
        r = (a - b - cf) & m;
        f = sub_flags(a, b, r, size);
        break;
    case PGM_OP_AND:
    case PGM_OP_TEST:
        r = a & b;
        f = result_flags(r, size);
        break;
    case PGM_OP_OR:
        r = a | b;
        f = result_flags(r, size);
        break;
    case PGM_OP_XOR:
        r = a ^ b;
        f = result_flags(r, size);
        break;
    case PGM_OP_INC:
        r = (a + 1) & m;
        f = (add_flags(a, 1, r, size) & ~PGM_RFLAGS_CF) | (rflags & PGM_RFLAGS_CF);
        break;
    case PGM_OP_DEC:
        r = (a - 1) & m;
        f = (sub_flags(a, 1, r, size) & ~PGM_RFLAGS_CF) | (rflags & PGM_RFLAGS_CF);
        break;
    case PGM_OP_NEG:
        r = (0 - a) & m;
        f = sub_flags(0, a, r, size);  /* CF = (a != 0) */
        break;
    case PGM_OP_NOT:
        *result = ~a & m;
        return rflags;
    default:
        *result = a;
        return rflags;
    }
    *result = r;
    return (rflags & ~STATUS_FLAGS) | f;
}
