/* SPDX-License-Identifier: MIT */
/* Counters: per-vCPU shares (unlocked, owner thread only) plus the VM's. */
#include <string.h>

#include "src/modes/shadow.h"
#include "src/nested/nested.h"
#include "src/vm.h"

PGM_API void
pgm_stats(struct pgm_vm *vm, struct pgm_stats *out)
{
    if (!vm || !out)
        return;
    pgm_vm_lock(vm);
    *out = vm->stats;
    if (vm->nested) {
        const struct nested_counters *c = &vm->nested->c;
        out->nested_faults = __atomic_load_n(&c->faults, __ATOMIC_RELAXED);
        out->nested_maps = c->maps;
        out->nested_zaps = c->zaps;
        out->nested_flushes = c->flushes;
        out->nested_splits = c->splits;
        out->nested_merges = c->merges;
        out->nested_table_pages = c->table_pages;
        out->nested_spurious = c->spurious;
        out->nested_mmio_fast = __atomic_load_n(&c->mmio_fast, __ATOMIC_RELAXED);
        out->nested_emulations = __atomic_load_n(&c->emulations, __ATOMIC_RELAXED);
        out->nested_large_maps = c->large_maps;
    }
    pgm_vm_unlock(vm);
    /*
     * Sum the vCPU shares field by field. struct pgm_stats holds only
     * uint64_t counters, which the assertion keeps true.
     */
    _Static_assert(sizeof(struct pgm_stats) % sizeof(uint64_t) == 0,
                   "pgm_stats must hold only 64-bit counters");
    if (vm->shadow) {
        struct pgm_shadow *sh = vm->shadow;
        pthread_mutex_lock(&sh->lock);
        out->shadow_syncs = sh->syncs;
        out->shadow_zaps = sh->zaps;
        out->shadow_flushes = sh->flushes;
        out->shadow_finished = sh->emulations;
        out->shadow_unshadowed = sh->unshadowed;
        out->shadow_unsyncs = sh->unsyncs;
        out->shadow_resyncs = sh->resyncs;
        out->shadow_prefetches = sh->prefetches;
        out->shadow_refills = sh->refills;
        out->pool_hits = sh->pool->counters.hits;
        out->pool_misses = sh->pool->counters.misses;
        out->pool_evictions = sh->pool->counters.evictions;
        pthread_mutex_unlock(&sh->lock);
    }
    uint64_t *dst = (uint64_t *)out;
    for (unsigned i = 0; i < vm->vcpu_count; i++) {
        const uint64_t *src = (const uint64_t *)&vm->vcpus[i].stats;
        for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++)
            dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
    }
}
