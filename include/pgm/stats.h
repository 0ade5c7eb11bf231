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
    uint64_t shadow_syncs;     /**< shadow leaf entries installed or changed */
    uint64_t shadow_zaps;      /**< shadow entries removed */
    uint64_t shadow_flushes;   /**< VM-wide TLB flushes requested for removed/downgraded entries */
    uint64_t shadow_finished;  /**< accesses libpgm finished itself (monitored, handler, MMIO) */
    uint64_t shadow_unshadowed; /**< guest tables no longer shadowed after a write flood */
    uint64_t shadow_unsyncs;   /**< leaf tables let go out of sync */
    uint64_t shadow_resyncs;   /**< out-of-sync tables brought back in sync */
    uint64_t shadow_prefetches; /**< neighbouring shadow entries filled ahead of a fault */
    uint64_t shadow_refills;   /**< shadow entries updated in place after a guest PTE write */
    uint64_t pool_hits;        /**< shadow page lookups that found the page */
    uint64_t pool_misses;      /**< shadow page lookups that did not */
    uint64_t pool_evictions;   /**< shadow pages evicted to make room */
    /**
     * Shadow entries removed because a page's handler state changed
     * (register, deregister, modify, re-arm after temp-off, reset; a virtual
     * handler's association reaching the page). Found
     * through the reverse map: the mappings of the pages concerned, never a
     * scan of the pool.
     */
    uint64_t handler_entries_touched;
    /** TLB flush requests issued for those entries (at most one per page changed). */
    uint64_t handler_flushes;
    uint64_t virt_remaps;      /**< covered pages of virtual handlers found mapped elsewhere */
    uint64_t nested_faults;    /**< pgm_nested_fault calls (EPT violations, NPFs, misconfigs) */
    uint64_t nested_maps;      /**< nested leaves (or MMIO markers) installed or changed */
    uint64_t nested_zaps;      /**< nested entries removed */
    uint64_t nested_flushes;   /**< flush requests for nested entries removed or narrowed (each to every vCPU) */
    uint64_t nested_splits;    /**< large nested leaves split into a table */
    uint64_t nested_merges;    /**< tables merged back into one large leaf */
    uint64_t nested_table_pages; /**< nested table pages now (a gauge, not monotonic) */
    uint64_t nested_spurious;  /**< nested faults another vCPU had already fixed */
    uint64_t nested_mmio_fast; /**< MMIO fast-path exits (marker) sent straight to emulation */
    uint64_t nested_emulations; /**< nested faults finished by emulating the instruction */
    uint64_t nested_large_maps; /**< 2 MiB / 1 GiB nested leaves installed */
};

/** Fill @p stats with the VM's counters. */
PGM_API void pgm_stats(struct pgm_vm *vm, struct pgm_stats *stats);

/**
 * Check the laws of DESIGN.md section 2 over every live shadow page:
 * every present shadow leaf maps the host page backing the GPA the guest's
 * tables give (or the guest tightened it and libpgm may lag until a flush),
 * never wider than the guest allows, never writable while the guest D bit is
 * clear, the page is a shadowed guest table or has a handler; no shadow
 * table page is mapped to the guest; parent links and reverse maps mirror
 * the present entries. On a nested-paging VM (EPT / NPT) it checks the
 * nested tree instead: every entry is what the vendor classifier says,
 * every leaf maps the page backing its GPA no wider than the page's state
 * allows, large leaves cover eligible windows, and no narrowed entry waits
 * for its flush (docs/nested.md).
 * @param vm   the VM
 * @param msg  receives a description of the first violation (may be NULL)
 * @param len  size of @p msg
 * @return 0 when every check passes; 1 with @p msg filled on a violation;
 *         -EINVAL
 */
PGM_API int pgm_audit(struct pgm_vm *vm, char *msg, size_t len);

#endif /* PGM_STATS_H */
