/* SPDX-License-Identifier: MIT */
/**
 * @file paging.h
 * @brief Guest paging events and queries: MOV CR3 and the guest page walk.
 */
#ifndef PGM_PAGING_H
#define PGM_PAGING_H

#include "types.h"
#include "vm.h"

/**
 * MOV CR3. Validates the new value against the current mode (bits above
 * MAXPHYADDR in IA-32e mode raise #GP) and, in PAE mode, latches the four
 * PDPTEs from guest memory; a PDPTE with reserved bits set makes the load
 * raise #GP (SDM 4.4.1). With CR4.PCIDE, bit 63 (NOFLUSH) is accepted and
 * stripped; bits 11:0 are the PCID.
 * @return 0; PGM_RC_INJECT_GP if the guest's MOV must raise #GP(0) (CR3 and
 *         the latched PDPTEs are then unchanged); -EINVAL for a NULL vCPU.
 */
PGM_API int pgm_sync_cr3(struct pgm_vcpu *vcpu, uint64_t cr3);

/**
 * Walk the guest's page tables for @p gva exactly as the CPU would for an
 * access of kind @p access (a `pgm_access` mask), in the vCPU's current mode.
 *
 * On success A bits are set in every entry used and, for a write, D in the
 * leaf, each with an atomic compare-and-swap (a guest entry that changes
 * under the walk restarts it). A faulting walk writes no A/D bit. With
 * PGM_ACCESS_NO_AD nothing is written.
 *
 * @param vcpu    the vCPU whose CR0/CR3/CR4/EFER/PKRU govern the walk
 * @param gva     linear address (truncated to 32 bits outside IA-32e mode)
 * @param access  `pgm_access` flags
 * @param walk    receives the full result (see struct pgm_walk)
 * @return 0 when @p walk holds a result (translation, #PF or #GP alike);
 *         -EINVAL for NULL pointers or unknown access flags;
 *         -ELOOP if the guest kept changing an entry under the walk (after
 *         PGM_WALK_MAX_RETRIES restarts; nothing is then written).
 */
PGM_API int pgm_walk(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access,
                     struct pgm_walk *walk);

/** Restarts of a walk whose A/D compare-and-swap lost a race before -ELOOP. */
#define PGM_WALK_MAX_RETRIES 64

#endif /* PGM_PAGING_H */
