/* SPDX-License-Identifier: MIT */
/**
 * @file emu.h
 * @brief Execute one decoded instruction (decode.h) against guest registers
 *        and a guest-memory interface.
 *
 * libpgm emulates an instruction when it must finish a guest memory access
 * itself: a write to a write-protected guest page table, an MMIO access.
 * The emulator computes linear addresses itself (segment base + effective
 * address, truncated as the CPU does) and reaches guest memory only through
 * `struct pgm_emu_mem`, whose callbacks are the caller's: they translate,
 * check permissions, and may fault. See docs/emulator.md.
 *
 * Register contract: the emulator works on a copy of the registers and
 * stores it back only when the instruction (or, for REP string instructions,
 * an iteration) completed. A fault from a callback therefore leaves `regs`
 * exactly as they were before the faulting access.
 */
#ifndef PGM_EMU_EMU_H
#define PGM_EMU_EMU_H

#include <stdint.h>

#include "pgm/regs.h"
#include "src/emu/decode.h"

/**
 * Guest memory as the emulator sees it: linear addresses, little-endian
 * byte buffers. Every callback returns 0 on success or a negative value of
 * the caller's choosing (for example a #PF it will inject, encoded its own
 * way); the emulator stops at the first non-zero return and hands that very
 * value back from pgm_emulate().
 *
 * An access is always passed as one call of its full width, even when it
 * crosses a page boundary (the callee splits it, and must then make it
 * all-or-nothing: check both pages before writing either).
 */
struct pgm_emu_mem {
    void *ctx;  /**< passed to every callback */
    /** Read `size` bytes (1, 2, 4, 8 or 16) at linear address `la`. */
    int (*read)(void *ctx, uint64_t la, void *buf, unsigned size);
    /** Write `size` bytes at `la`. */
    int (*write)(void *ctx, uint64_t la, const void *buf, unsigned size);
    /**
     * Optional atomic compare-exchange of `size` bytes at `la`: if memory
     * equals `*expected`, store `desired`; otherwise copy the current memory
     * into `expected` and store nothing. Returns 0 in both cases (the
     * emulator tells them apart by comparing `expected`), or a fault. It is
     * a write access: it must fault as a write would even when the compare
     * fails. When NULL, locked instructions use read + write, which is only
     * atomic if nothing else writes guest memory meanwhile.
     */
    int (*cmpxchg)(void *ctx, uint64_t la, void *expected, const void *desired,
                   unsigned size);
};

/** Emulator results (non-negative; a negative value is a callback's fault
 *  passed through, or -EINVAL for invalid arguments). */
enum pgm_emu_result {
    /** Done: registers and memory updated, RIP advanced past the instruction. */
    PGM_EMU_DONE = 0,
    /**
     * Not finished, call again: a REP string instruction reached the
     * iteration bound (the completed iterations are committed: rCX, rSI, rDI
     * updated), or a locked read-modify-write lost its compare-exchange race
     * too many times (nothing committed). RIP still points at the
     * instruction, so resuming the guest re-executes it, as would re-entering
     * the emulator.
     */
    PGM_EMU_AGAIN = 1,
    /** The decoded instruction is not one the emulator executes. */
    PGM_EMU_UNSUPPORTED = 2,
    /** The guest must get #GP(0) (CMPXCHG16B on a misaligned operand).
     *  Nothing was accessed, registers unchanged. */
    PGM_EMU_INJECT_GP = 3,
};

/** Default bound on REP iterations per call (a 4 KiB page of STOSQ is 512). */
#define PGM_EMU_REP_DEFAULT 1024u

/**
 * Execute a decoded instruction.
 *
 * @param insn       from pgm_decode_insn() (PGM_DECODE_OK), decoded for
 *                   `regs->code_bits`
 * @param regs       guest registers, updated as described above
 * @param mem        guest memory callbacks (`read` and `write` required)
 * @param rep_limit  at most this many REP iterations in this call;
 *                   0 means PGM_EMU_REP_DEFAULT
 * @return an enum pgm_emu_result, a callback's negative fault unchanged, or
 *         -EINVAL (NULL argument, an instruction not decoded OK, a code size
 *         other than the one it was decoded for).
 */
int pgm_emulate(const struct pgm_insn *insn, struct pgm_regs *regs,
                const struct pgm_emu_mem *mem, unsigned rep_limit);

/**
 * The linear address of an instruction's memory operand (for MOVS, its
 * source; for BT* with a register bit offset, the operand before the offset
 * moves it), for comparing with the faulting address.
 *
 * @return 0, or -EINVAL.
 */
int pgm_emu_operand_address(const struct pgm_insn *insn, const struct pgm_regs *regs,
                            uint64_t *la);

/**
 * Arithmetic and logic with x86 flags, shared by the emulator's operations.
 *
 * @param op      PGM_OP_ADD ... PGM_OP_NEG (two-operand ops use `b`)
 * @param size    operand width in bytes: 1, 2, 4 or 8
 * @param a       destination (first) operand
 * @param b       source operand (ignored by INC, DEC, NOT, NEG)
 * @param rflags  flags before the operation (CF for ADC/SBB, flags kept)
 * @param result  the result, truncated to `size`
 * @return the flags after the operation: OF SF ZF AF PF CF as the SDM
 *         defines them; AF (undefined after AND/OR/XOR/TEST) is cleared;
 *         every other bit of `rflags` is kept.
 */
uint64_t pgm_emu_alu(unsigned op, unsigned size, uint64_t a, uint64_t b,
                     uint64_t rflags, uint64_t *result);

#endif /* PGM_EMU_EMU_H */
