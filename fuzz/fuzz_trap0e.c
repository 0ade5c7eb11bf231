/* SPDX-License-Identifier: MIT */
/*
 * fuzz_trap0e: random guest page tables (4- and 5-level, with a self-map)
 * and random operation sequences - accesses at CPL 0/3, guest PTE writes
 * through the self-map, MOV CR3, INVLPG, TLB flushes, control-state and
 * PKRU changes, WRITE handlers and dirty logs, small shadow pools - run
 * through libpgm's shadow engine on the soft backend. After every operation
 * each access must match a direct guest walk (law 1, with the SDM's
 * allowance for translations the guest has not flushed yet) and pgm_audit
 * must pass (laws 2 and 3). The input format and the rules are documented in
 * trap0e_scenario.c.
 */
#include "trap0e_scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct trap0e_opts opts = { .inject_failures = false };
    return trap0e_run(data, size, &opts);
}
