/* SPDX-License-Identifier: MIT */
/**
 * @file regs.h
 * @brief Guest register state handed to libpgm when it must finish an access
 *        itself (instruction emulation on a monitored or MMIO page).
 *
 * The embedder copies its vCPU's registers in before the call and back out
 * when libpgm reports that it emulated the instruction (RIP advanced, flags
 * and destination registers updated).
 */
#ifndef PGM_REGS_H
#define PGM_REGS_H

#include <stdint.h>

#include "common.h"

/** General-purpose registers, in the x86 encoding order. */
enum pgm_gpr {
    PGM_RAX = 0, PGM_RCX, PGM_RDX, PGM_RBX, PGM_RSP, PGM_RBP, PGM_RSI, PGM_RDI,
    PGM_R8, PGM_R9, PGM_R10, PGM_R11, PGM_R12, PGM_R13, PGM_R14, PGM_R15,
    PGM_GPR_COUNT
};

/** Segment registers, in the x86 encoding order. */
enum pgm_seg {
    PGM_ES = 0, PGM_CS, PGM_SS, PGM_DS, PGM_FS, PGM_GS,
    PGM_SEG_COUNT
};

/** RFLAGS bits the emulator reads or writes. */
#define PGM_RFLAGS_CF (1ull << 0)
#define PGM_RFLAGS_PF (1ull << 2)
#define PGM_RFLAGS_AF (1ull << 4)
#define PGM_RFLAGS_ZF (1ull << 6)
#define PGM_RFLAGS_SF (1ull << 7)
#define PGM_RFLAGS_DF (1ull << 10)
#define PGM_RFLAGS_OF (1ull << 11)
#define PGM_RFLAGS_AC (1ull << 18)

/** Guest registers. */
struct pgm_regs {
    uint64_t gpr[PGM_GPR_COUNT];       /**< RAX..R15 */
    uint64_t rip;                      /**< next instruction (the faulting one on a fault) */
    uint64_t rflags;                   /**< RFLAGS */
    uint64_t seg_base[PGM_SEG_COUNT];  /**< segment bases (FS/GS only count in 64-bit code) */
    uint8_t cpl;                       /**< current privilege level, 0..3 */
    uint8_t code_bits;                 /**< 16, 32 or 64: default operand/address size of CS */
    uint8_t reserved[6];               /**< must be zero */
};

#endif /* PGM_REGS_H */
