/* SPDX-License-Identifier: MIT */
/*
 * The scenario shared by fuzz_trap0e and fuzz_alloc: decode an input into a
 * guest (RAM image with 32-bit, PAE or 4/5-level tables, control bits, pool size) and a
 * sequence of operations, run them through libpgm's shadow engine and the
 * soft backend, and check the laws of DESIGN.md section 2 after every step.
 * Any violation prints a line on stderr and abort()s. The input format and
 * the law-1 comparison rule are documented in trap0e_scenario.c.
 */
#ifndef FUZZ_TRAP0E_SCENARIO_H
#define FUZZ_TRAP0E_SCENARIO_H

#include <stddef.h>
#include <stdint.h>

#include "pgm/pgm.h"

/* How a run treats allocation failures. */
struct trap0e_opts {
    /*
     * false (fuzz_trap0e): every API call must succeed, in every guest
     * mode (all of them are shadowed).
     * true (fuzz_alloc): the input arms failure injection in the VM's
     * allocator and the soft backend; any negative result is accepted, but
     * never a crash, a leak, -EIO (a shadow entry pointing at no page) or an
     * audit violation, and results that claim success are still checked.
     */
    bool inject_failures;
};

/* Run one input. Returns 0; aborts on a violation. */
int trap0e_run(const uint8_t *data, size_t size, const struct trap0e_opts *opts);

#endif /* FUZZ_TRAP0E_SCENARIO_H */
