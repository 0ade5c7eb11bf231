/* SPDX-License-Identifier: MIT */
/**
 * @file decode.h
 * @brief The decoded form of one guest instruction that libpgm may have to
 *        finish itself (a write to a monitored page table, an MMIO access).
 *
 * The decoder (decode_capstone.c, the only file that knows Capstone) turns
 * at most 15 instruction bytes into a `struct pgm_insn`: which allow-listed
 * operation it is, how wide, where its memory operand is (as components, not
 * as an address: the emulator adds segment bases and truncates), and what
 * the other operand is. Anything outside the allow-list is refused with
 * PGM_DECODE_UNSUPPORTED, and the struct still says what was seen (length,
 * mnemonic), so the caller can log it and fall back.
 *
 * Invariants of a PGM_DECODE_OK result, relied on by the emulator:
 *  - `op` is never PGM_OP_NONE; `len` is 1..15.
 *  - exactly one memory operand (`mem`), except MOVS, whose source is `mem`
 *    (DS:rSI, overridable) and destination ES:rDI, and STOS, whose `mem` is
 *    ES:rDI; `size` is its width in bytes (1, 2, 4, 8, or 16 for
 *    CMPXCHG16B); for MOVZX/MOVSX/MOVSXD `size` is the memory width and
 *    `reg_size` the destination register width.
 *  - LOCK (`PGM_INSN_LOCK`) appears only on an instruction that accepts it
 *    with a memory destination; anything else the CPU would #UD on is
 *    refused, not decoded.
 */
#ifndef PGM_EMU_DECODE_H
#define PGM_EMU_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgm/regs.h"

/** The longest x86 instruction; more bytes are never looked at. */
#define PGM_INSN_MAX_LEN 15

/** The allow-listed operations. */
enum pgm_insn_op {
    PGM_OP_NONE = 0,    /**< not decoded / not in the allow-list */
    PGM_OP_MOV,         /**< MOV (incl. moffs forms A0-A3, MOVABS) */
    PGM_OP_MOVZX,       /**< MOVZX reg, r/m8 or r/m16 */
    PGM_OP_MOVSX,       /**< MOVSX reg, r/m8 or r/m16; MOVSXD reg, r/m32 */
    PGM_OP_XCHG,        /**< XCHG r/m, reg (always locked) */
    PGM_OP_CMPXCHG,     /**< CMPXCHG r/m, reg */
    PGM_OP_CMPXCHG8B,   /**< CMPXCHG8B m64, and CMPXCHG16B m128 (size 16) */
    PGM_OP_ADD,
    PGM_OP_OR,
    PGM_OP_ADC,
    PGM_OP_SBB,
    PGM_OP_AND,
    PGM_OP_SUB,
    PGM_OP_XOR,
    PGM_OP_CMP,
    PGM_OP_TEST,
    PGM_OP_INC,
    PGM_OP_DEC,
    PGM_OP_NOT,
    PGM_OP_NEG,
    PGM_OP_BT,
    PGM_OP_BTS,
    PGM_OP_BTR,
    PGM_OP_BTC,
    PGM_OP_STOS,        /**< STOS ES:[rDI], rAX */
    PGM_OP_MOVS,        /**< MOVS ES:[rDI], seg:[rSI] */
    PGM_OP_COUNT
};

/** `struct pgm_insn.prefixes` bits. */
#define PGM_INSN_LOCK      (1u << 0)  /**< F0 */
#define PGM_INSN_REP       (1u << 1)  /**< F3 (REP / REPE) */
#define PGM_INSN_REPNE     (1u << 2)  /**< F2 (REPNE) */
#define PGM_INSN_OPSIZE    (1u << 3)  /**< 66 */
#define PGM_INSN_ADDRSIZE  (1u << 4)  /**< 67 */
#define PGM_INSN_REX       (1u << 5)  /**< a REX prefix is present */
#define PGM_INSN_REXW      (1u << 6)  /**< REX.W */
#define PGM_INSN_SEGOVR    (1u << 7)  /**< a segment override prefix */

/** Register number meaning "none" in `struct pgm_insn_mem`. */
#define PGM_INSN_NOREG 0xff

/** A memory operand, as components. */
struct pgm_insn_mem {
    uint8_t seg;        /**< enum pgm_seg, after any override */
    uint8_t base;       /**< enum pgm_gpr, or PGM_INSN_NOREG */
    uint8_t index;      /**< enum pgm_gpr, or PGM_INSN_NOREG */
    uint8_t scale;      /**< 1, 2, 4 or 8 (1 without index) */
    uint8_t addr_bits;  /**< 16, 32 or 64: width the address is computed in */
    bool rip_rel;       /**< base is the address of the next instruction */
    int64_t disp;       /**< displacement, sign-extended (moffs: the offset) */
};

/** What the instruction's non-memory operand is. */
enum pgm_insn_src {
    PGM_SRC_NONE = 0,   /**< INC/DEC/NOT/NEG, CMPXCHG8B, string ops */
    PGM_SRC_REG,        /**< `reg` */
    PGM_SRC_IMM,        /**< `imm` */
};

/** A general-purpose register operand. */
struct pgm_insn_reg {
    uint8_t gpr;        /**< enum pgm_gpr */
    bool high8;         /**< AH, CH, DH or BH: bits 15:8 of gpr 0..3 */
};

/** One decoded instruction. */
struct pgm_insn {
    uint8_t len;            /**< bytes, RIP advances by this */
    uint8_t op;             /**< enum pgm_insn_op */
    uint8_t code_bits;      /**< 16, 32 or 64: the mode it was decoded for */
    uint8_t size;           /**< memory operand width in bytes */
    uint8_t reg_size;       /**< width of `reg` (MOVZX/MOVSX: destination) */
    uint8_t src;            /**< enum pgm_insn_src */
    bool mem_is_dest;       /**< memory is the destination (r/m, reg / imm) */
    uint16_t prefixes;      /**< PGM_INSN_* bits */
    struct pgm_insn_mem mem;
    struct pgm_insn_reg reg;
    int64_t imm;            /**< immediate, sign-extended as the CPU does */
    char mnemonic[48];      /**< what the decoder saw, for diagnostics */
};

/** Decoder results (non-negative; negative values are errno codes). */
enum pgm_decode_result {
    PGM_DECODE_OK = 0,          /**< an allow-listed instruction */
    PGM_DECODE_INVALID = 1,     /**< not an instruction (or truncated bytes) */
    PGM_DECODE_UNSUPPORTED = 2, /**< a valid instruction outside the allow-list;
                                     `len` and `mnemonic` say which */
};

/**
 * Decode one instruction.
 *
 * @param bytes      instruction bytes; only the first `n` are read
 * @param n          bytes available (at most PGM_INSN_MAX_LEN are used)
 * @param code_bits  16, 32 or 64: the default operand/address size of CS
 * @param out        filled on every non-negative return
 * @return PGM_DECODE_OK, PGM_DECODE_INVALID or PGM_DECODE_UNSUPPORTED;
 *         -EINVAL for a bad argument, -ENOMEM when Capstone could not be
 *         set up. Thread-safe.
 */
int pgm_decode_insn(const uint8_t *bytes, size_t n, unsigned code_bits,
                    struct pgm_insn *out);

/** Name of an operation, for diagnostics ("add", "cmpxchg8b", ...). */
const char *pgm_insn_op_name(unsigned op);

#endif /* PGM_EMU_DECODE_H */
