/* SPDX-License-Identifier: MIT */
/*
 * Virtual-handler operations of the trap0e scenario (trap0e_virt.c):
 * WRITE, ALL and HYPERVISOR handlers registered on and removed from linear
 * ranges of the guest's address spaces while everything else goes on. The
 * callbacks answer DEFAULT (no result changes, only the path accesses take)
 * and check what they are told against a direct walk; the scenario's
 * pgm_audit after every operation checks the page counts against the
 * associations and that no covered page is mapped wider than its handler
 * allows.
 */
#ifndef FUZZ_TRAP0E_VIRT_H
#define FUZZ_TRAP0E_VIRT_H

#include <stdbool.h>
#include <stdint.h>

#include "pgm/pgm.h"

/* A new run on @p vm: no virtual handler registered. */
void t0v_begin(struct pgm_vm *vm);

/*
 * a0 % 4: 0 register WRITE, 1 register ALL, 2 register HYPERVISOR, 3
 * deregister; slot a1 % 4; the range starts at @p va's page and spans
 * 1 + (a1 >> 2 & 3) pages; its address space is @p cr3 (the caller's
 * choice: the vCPU's, or another root). @p may_fail: allocation failures
 * are injected (-ENOMEM is then an allowed result). @p nested: an EPT / NPT
 * VM, where registration must be refused with -EOPNOTSUPP.
 */
void t0v_op(struct pgm_vm *vm, unsigned a0, unsigned a1, uint64_t va, uint64_t cr3,
            bool may_fail, bool nested);

/* TRAP0E_STATS: print (and reset) what the operations reached. */
void t0v_print_stats(void);

#endif /* FUZZ_TRAP0E_VIRT_H */
