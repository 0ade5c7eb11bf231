/* SPDX-License-Identifier: MIT */
/**
 * @file stats.h
 * @brief Counters.
 */
#ifndef PGM_STATS_H
#define PGM_STATS_H

#include "types.h"
#include "vm.h"

/** VM-wide counters (monotonic since creation). */
struct pgm_stats {
    uint64_t walks;            /**< guest walks performed */
    uint64_t walk_faults;      /**< walks that ended in #PF */
    uint64_t walk_gp;          /**< walks refused as non-canonical */
    uint64_t walk_retries;     /**< walks restarted after a lost A/D race */
    uint64_t ad_updates;       /**< entries whose A/D bits a walk set */
    uint64_t nonram_table_reads; /**< paging-structure reads outside RAM/ROM */
    uint64_t cr3_loads;        /**< pgm_sync_cr3 calls that succeeded */
    uint64_t cr3_gp;           /**< CR3 / state loads refused with #GP */
    uint64_t ram_pages_allocated; /**< host pages allocated for guest RAM */
    uint64_t handler_calls;    /**< physical handler callbacks made */
};

/** Fill @p stats with the VM's counters. */
PGM_API void pgm_stats(struct pgm_vm *vm, struct pgm_stats *stats);

#endif /* PGM_STATS_H */
