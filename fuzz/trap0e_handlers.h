/* SPDX-License-Identifier: MIT */
/*
 * Operation families of the trap0e scenario that exercise physical
 * handlers and the access API (trap0e_handlers.c): an MMIO device on the
 * scenario's MMIO page, an ALL handler on a RAM page, guest instructions
 * emulated against the MMIO page, and pgm_read_gva / pgm_write_gva (and
 * their simple variants) checked against a direct guest walk.
 */
#ifndef FUZZ_TRAP0E_HANDLERS_H
#define FUZZ_TRAP0E_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgm/pgm.h"

/* Guest-physical bytes an operation may have written. */
struct t0x_span {
    uint64_t gpa;
    size_t len;
};

struct t0x_ctx {
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    uint64_t ram_size;       /* RAM at GPA 0 */
    uint64_t mmio_gpa;       /* the scenario's MMIO page */
    unsigned data_first;     /* first RAM page code may be placed in */
    bool inject_failures;    /* fuzz_alloc: negative results are allowed */
    /* out: what the operation may have written (guest RAM only) */
    struct t0x_span spans[4];
    unsigned nspans;
    /* out: an injected failure cut the operation short: the spans are only
     * where it may have written, not where it did */
    bool uncertain;
};

/* TRAP0E_STATS: print (and reset) what the operations of this family reached. */
void t0x_print_stats(void);

/* A new run: no handler of this family is registered. */
void t0x_begin(void);

/*
 * Handler op: a0 % 4: 0 register the MMIO device, 1 deregister it, 2 a
 * guest instruction (a3 % 6: mov [rdi] of 1/2/4/8 bytes, mov eax, [rdi],
 * movzx eax, byte [rdi]) run by pgm_emulate_insn against linear address
 * @va with the code at @code_va, 3 toggle an ALL handler on RAM page
 * a1 % (ram_size / 4096).
 */
void t0x_handler_op(struct t0x_ctx *c, unsigned a0, unsigned a1, unsigned a3, uint64_t va,
                    uint64_t code_va);

/*
 * Guest-virtual op at @va: flags bit 0 write, bit 1 simple variant, bit 2
 * CPL 3, bit 3 NO_AD; length 1 + (a3 & 63), bit 6 of a3 moves the span
 * across the page end; origin a0 % 3.
 */
void t0x_gva_op(struct t0x_ctx *c, unsigned fl, unsigned a0, unsigned a3, uint64_t va);

#endif /* FUZZ_TRAP0E_HANDLERS_H */
