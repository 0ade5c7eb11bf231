/* SPDX-License-Identifier: MIT */
/*
 * Unicorn 2 (QEMU TCG) as the reference CPU for the instruction emulator:
 * run one instruction in 16-, 32- or 64-bit code from a given state
 * (GPRs, RIP, RFLAGS, segment bases) over the pages of a struct flat
 * (flat_mem.h, with their initial bytes), and compare the outcome with what
 * pgm_emulate() did: every GPR, RIP, the flags the SDM defines for the
 * operation, and every byte of every page.
 *
 * Used by tests/unit/test_emu_diff.c (generated cases) and fuzz/fuzz_emu.c
 * (fuzzed bytes and state). Where Unicorn departs from the SDM, the rule is
 * in one place (uref_deviations() in unicorn_ref.c); those differences are
 * counted, not reported as mismatches.
 *
 * What the reference can set up, and therefore what callers must keep to
 * (uref_normalise() and uref_state_ok() enforce it, uref_flat_init() makes
 * the memory side of it):
 *  - 16-bit code runs in real mode: every segment base is selector << 4;
 *    IP and the code stay below 64 KiB of CS.
 *  - 32-bit code runs in protected mode with a GDT at UREF_GDT_LA holding
 *    one flat 4 GiB data descriptor per segment register with its base; CS
 *    is flat (base 0).
 *  - 64-bit code runs without paging (linear = physical): code and data
 *    must lie below 2^36 (physical addresses are cut to the model's width).
 *  - Of RFLAGS, only OF SF ZF AF PF CF and DF are given to Unicorn (TF would
 *    raise #DB, VM switch to virtual-8086 mode); the emulator gets all of
 *    them and must leave every bit but the six status flags unchanged.
 *  - Data may not touch the code page(s) or the GDT page (32-bit);
 *    a flat memory from uref_flat_init() makes such accesses -EFAULT, and a
 *    run of the emulator that returns -EFAULT is not comparable (skip it).
 */
#ifndef PGM_TESTS_UNICORN_REF_H
#define PGM_TESTS_UNICORN_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/emu/emu.h"
#include "flat_mem.h"

#define UREF_GDT_LA 0x1000u

/** Outcome of uref_check(). */
enum uref_verdict {
    UREF_ERROR = -2,    /**< the harness could not set Unicorn up (`why`) */
    UREF_MISMATCH = -1, /**< the emulator and Unicorn disagree (`why`) */
    UREF_SKIPPED = 0,   /**< Unicorn cannot run it as the SDM says (a counted deviation) */
    UREF_MATCH = 1,     /**< same GPRs, RIP, defined flags and memory */
    UREF_GP_BOTH = 2,   /**< the emulator wants #GP and Unicorn refused too */
};

/** Known Unicorn-vs-SDM deviations (see uref_deviations()). */
enum uref_dev {
    UREF_DEV_CMPXCHG_RAX,   /**< successful CMPXCHG r/m32 zero-extends RAX */
    UREF_DEV_LOCK_NEG,      /**< LOCK NEG: SF ZF PF from the old operand */
    UREF_DEV_C6C7_REXR,     /**< MOV r/m, imm with REX.R: #UD */
    UREF_DEV_REX_IGNORED,   /**< REX before a legacy prefix: applied, not ignored */
    UREF_DEV_TEST_ALIAS,    /**< F6 /1, F7 /1 (TEST on CPUs): #UD */
    UREF_DEV_COUNT
};

struct uref_stats {
    unsigned compared;          /**< UREF_MATCH + UREF_GP_BOTH */
    unsigned gp;                /**< UREF_GP_BOTH */
    unsigned undefined_diff;    /**< differ only in flags the SDM leaves undefined */
    unsigned deviations;        /**< known deviations seen (sum of dev[]) */
    unsigned dev[UREF_DEV_COUNT];
};

/** Unicorn's state after a run. */
struct uref_cpu {
    int err;                /**< uc_err of uc_emu_start(): 0 = ran to the end */
    uint64_t gpr[PGM_GPR_COUNT];    /**< 16/32-bit code: EAX..EDI only */
    uint64_t rip;           /**< RIP / EIP (IP in 16-bit code: offset in CS) */
    uint64_t rflags;
};

struct uref;    /* one Unicorn engine for one code size, reused across runs */

/** Open an engine for 16-, 32- or 64-bit code; NULL on failure. */
struct uref *uref_open(unsigned bits);
void uref_close(struct uref *u);

/** Data addresses must be below this. */
uint64_t uref_addr_limit(unsigned bits);

/** Make `r` (r->code_bits set) representable: real-mode bases and IP in
 *  16-bit code, flat CS in 32/64-bit code, 32-bit EIP, RIP below 2^36, and
 *  the code moved off the GDT page. uref_state_ok() then holds. */
void uref_normalise(struct pgm_regs *r);

/** Whether the code can be placed at CS:RIP (after uref_normalise()). */
bool uref_state_ok(const struct pgm_regs *r);

/** An empty flat memory for a run from `r`: the address limit, and the
 *  code and GDT pages forbidden. Set `fill` after it if needed. */
void uref_flat_init(struct flat *f, const struct pgm_regs *r, uint64_t seed);

/**
 * Run `code` (`len` bytes) in Unicorn from `r` over the pages of `mem`
 * (mapped with their `init` bytes) and read the state back into `out`.
 * Unicorn "refused" when out->err is not 0. The final bytes of the pages are
 * then compared by uref_check(); uref_run() alone unmaps everything again.
 * @return 0, or -1 with `why` set when Unicorn could not be set up.
 */
int uref_run(struct uref *u, const uint8_t *code, unsigned len, const struct pgm_regs *r,
             const struct flat *mem, struct uref_cpu *out, char *why, size_t why_size);

/**
 * Run the instruction the emulator ran and compare.
 *
 * @param in      its decode (same bytes, r->code_bits)
 * @param before  the state both start from (representable, see above)
 * @param emu_rc  PGM_EMU_DONE or PGM_EMU_INJECT_GP
 * @param after   the emulator's registers at the end
 * @param mem     the flat memory the emulator ran on (`init`: before,
 *                `data`: after); every page it touched is mapped in Unicorn
 * @param st      counters to update (may be NULL)
 * @return an enum uref_verdict; `why` says what differed.
 */
int uref_check(struct uref *u, const uint8_t *code, unsigned len, const struct pgm_insn *in,
               const struct pgm_regs *before, int emu_rc, const struct pgm_regs *after,
               const struct flat *mem, struct uref_stats *st, char *why, size_t why_size);

/** The name of an enum uref_dev, for reports. */
const char *uref_dev_name(unsigned dev);

/** Flags the SDM defines after an operation (the rest may differ). */
uint64_t uref_defined_flags(unsigned op);

/** Print a case: label, bytes, mnemonic, address, why, registers, and the
 *  initial bytes at the memory operand. */
void uref_print_case(FILE *out, const char *label, const uint8_t *code, unsigned len,
                     const struct pgm_insn *in, const struct pgm_regs *r,
                     const struct flat *mem, const char *why);

#endif /* PGM_TESTS_UNICORN_REF_H */
