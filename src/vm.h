/* SPDX-License-Identifier: MIT */
/*
 * The VM and vCPU objects (internal).
 *
 * Locking (DESIGN.md section 10): `vm->lock` guards the writers of the
 * physical map and of the handler registry, page materialisation and, later,
 * the pool.
 * A vCPU's own fields are touched only by the thread running that vCPU, so
 * they need no lock; per-vCPU counters are plain integers summed by
 * pgm_stats().
 */
#ifndef PGM_SRC_VM_H
#define PGM_SRC_VM_H

#include <pthread.h>

#include "pgm/backend.h"
#include "pgm/stats.h"
#include "pgm/vm.h"
#include "src/handlers/registry.h"
#include "src/handlers/virt.h"
#include "src/modes/guest.h"
#include "src/phys.h"

struct pgm_vcpu {
    struct pgm_vm *vm;
    unsigned id;
    struct pgm_cpu_state state;          /* EFER.LMA kept up to date */
    enum pgm_guest_mode mode;
    const struct pgm_guest_ops *gops;    /* ops of `mode` */
    const struct pgm_both_ops *bops;     /* shadow engine ops of `mode` */
    struct pgm_walk_ctx wctx;
    struct walk_mem wmem;                /* walkers' range cache (owner thread) */
    struct pgm_shadow_page *root;        /* shadow root (shadow paging; shadow lock) */
    struct pgm_stats stats;              /* this vCPU's share */
};

struct pgm_vm {
    struct pgm_vm_config cfg;
    const struct pgm_backend_ops *be;
    void *be_ctx;
    struct pgm_allocator alloc;
    pthread_mutex_t lock;
    struct pgm_phys phys;
    struct pgm_handlers handlers;
    struct pgm_virt virt;                /* virtual handlers */
    struct pgm_dirty_log *dirty_logs;         /* active (VM lock) */
    struct pgm_dirty_log *dirty_logs_retired; /* stopped, freed with the VM */
    uint32_t dbit_logs;                       /* active D-bit logs (written under the lock) */
    struct pgm_stats stats;              /* VM-wide share (under lock) */
    struct pgm_shadow *shadow;           /* shadow paging engine, or NULL */
    struct pgm_nested *nested;           /* nested paging engine (EPT/NPT), or NULL */
    unsigned vcpu_count;
    struct pgm_vcpu *vcpus;
};

static inline void
pgm_vm_lock(struct pgm_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
}

/* Issue the nested engine's pending flush (src/nested/nested.h). */
void pgm_nested_commit(struct pgm_vm *vm);

/*
 * Every operation under the VM lock that narrowed a nested entry has its
 * flush sent here, once, before another thread can see the lock free.
 */
static inline void
pgm_vm_unlock(struct pgm_vm *vm)
{
    if (vm->nested)
        pgm_nested_commit(vm);
    pthread_mutex_unlock(&vm->lock);
}

/* Recompute vcpu->wctx from vcpu->state (everything but root/PDPTEs). */
void pgm_vcpu_refresh_walk_ctx(struct pgm_vcpu *vcpu);

#endif /* PGM_SRC_VM_H */
