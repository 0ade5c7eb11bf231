/* SPDX-License-Identifier: MIT */
/*
 * The shadow paging engine (internal; docs/shadow.md).
 *
 * The engine builds 64-bit-format shadow tables for guests in IA-32e paging
 * (AMD64 on 4-level, LA57 on 5-level) and PAE-format shadow tables (a
 * per-vCPU PDPTE root, 64-bit PDs and PTs) for every other guest mode:
 * PAE guests, 32-bit guests (their 1024-entry tables split into quadrants)
 * and guests with paging off (an identity map of guest-physical memory).
 *
 * Coherence comes from monitoring alone: every guest page table that has a
 * shadow page is write-protected in every shadow leaf, each guest write to
 * one is finished by libpgm, and the shadow entries shadowing the written
 * guest entries are zapped. Shadows are therefore never wider than the
 * guest's tables, and a guest TLB flush needs only a hardware flush.
 *
 * Locking: `shadow->lock` guards the pool, the reverse maps, the hpa map and
 * every shadow entry libpgm writes. It is taken after nothing and never held
 * across calls that take the VM lock (page materialisation) or run handlers.
 */
#ifndef PGM_SRC_MODES_SHADOW_H
#define PGM_SRC_MODES_SHADOW_H

#include <pthread.h>

#include "pgm/paging.h"
#include "src/pool/pool.h"
#include "src/pool/rmap.h"

/* 64-bit entry bits used by the shadow format. */
#define SPTE_P    (1ull << 0)
#define SPTE_RW   (1ull << 1)
#define SPTE_US   (1ull << 2)
#define SPTE_PWT  (1ull << 3)
#define SPTE_PCD  (1ull << 4)
#define SPTE_A    (1ull << 5)
#define SPTE_D    (1ull << 6)
#define SPTE_PAT  (1ull << 7)
#define SPTE_G    (1ull << 8)
#define SPTE_XD   (1ull << 63)
#define SPTE_ADDR 0x000ffffffffff000ull
#define SPTE_PKEY_SHIFT 59

/* One slot of the hpa -> shadow page map (open addressing, linear probe). */
struct shadow_hmap_slot {
    pgm_hpa_t hpa;                  /* 0: empty; ~0: deleted */
    struct pgm_shadow_page *sp;
    uint64_t *gfns;                 /* leaf tables: the gfn each entry maps */
    uint32_t writes;                /* writes libpgm finished on the table since in sync */
};

struct pgm_shadow {
    pthread_mutex_t lock;
    struct pgm_vm *vm;
    struct pgm_allocator alloc;
    struct pgm_pool *pool;
    struct pgm_rmap rmap;
    struct shadow_hmap_slot *slots;
    uint32_t slot_mask;
    uint64_t **spare_gfns;          /* gfn arrays ready for new leaf tables */
    uint32_t spare_count, spare_cap;
    bool flush_pending;             /* an entry was downgraded or removed */
    bool relatch_pending;           /* a PAE root's PDPTE changed: reload it */
    /* counters, folded into pgm_stats */
    uint64_t syncs, emulations, zaps, flushes, unshadowed, unsyncs, resyncs, prefetches, refills;
    uint32_t flood_threshold;
    uint32_t unsync_threshold;      /* PGM_UNSYNC_OFF: never */
    uint32_t unsync_count;          /* shadow pages out of sync now */
};

struct pgm_vm;
struct pgm_vcpu;

int pgm_shadow_create(struct pgm_vm *vm);
void pgm_shadow_destroy(struct pgm_vm *vm);

/*
 * Make sure @vcpu has the root for its current CR3 and mode (building or
 * looking it up), pinned, and tell the backend. Flushes as MOV CR3 does
 * unless @noflush. Lock held by the caller.
 */
int pgm_shadow_load_root(struct pgm_vcpu *vcpu, bool noflush);

/*
 * The vCPU's control state changed (pgm_set_cpu_state): a mode change flushes
 * its TLB and the root is rebuilt for the new mode. Takes the lock.
 */
void pgm_shadow_mode_changed(struct pgm_vcpu *vcpu);

/* Drop @vcpu's root (mode change, VM teardown). Lock held. */
void pgm_shadow_drop_root(struct pgm_vcpu *vcpu);

/* What a guest access that faulted on the shadows needs. */
enum shadow_fault_action {
    SHADOW_RETRY = 0,   /* shadows synced: retry the access */
    SHADOW_INJECT,      /* guest fault: `walk` has the error code */
    SHADOW_FINISH,      /* libpgm must finish the access (monitored, handler, MMIO, WP=0) */
};

/*
 * The shared core of pgm_trap0e and pgm_soft_access: walk the guest for
 * @gva with @access (A/D emulated), then sync the shadow path or say why the
 * access must be finished by libpgm. Lock NOT held (it is taken inside).
 */
int pgm_shadow_fault(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access,
                     struct pgm_walk *walk, enum shadow_fault_action *action);

/*
 * Before libpgm writes guest page @gfn on the guest's behalf: copy it to
 * @snap if it is a shadowed table (returns true). After the write, pass the
 * same @snap to pgm_shadow_written to zap the shadow entries of every guest
 * entry that changed.
 */
bool pgm_shadow_snapshot(struct pgm_vm *vm, uint64_t gfn, uint8_t snap[4096]);
void pgm_shadow_written(struct pgm_vm *vm, uint64_t gfn, const uint8_t snap[4096]);

/*
 * The backing or the handler state of guest page @gfn changed (handler
 * registered, ROM mode switched, range removed): remove every shadow leaf
 * that maps it; the next access faults and maps it as it is now. Takes the
 * shadow lock (callers may hold the VM lock: the order is VM, then shadow).
 */
void pgm_shadow_unmap_gfn(struct pgm_vm *vm, uint64_t gfn);
/*
 * The same, reporting how many shadow entries it removed and (@flushed, may
 * be NULL) whether it requested a TLB flush for them.
 */
unsigned pgm_shadow_unmap_gfn_counted(struct pgm_vm *vm, uint64_t gfn, bool *flushed);

/* Send the pending flush (to every vCPU) if any. Lock held. */
void pgm_shadow_commit_flush(struct pgm_vm *vm);

/*
 * The guest's TLB-maintenance points (INVLPG, MOV CR3 without NOFLUSH, a TLB
 * flush): bring every out-of-sync table back in sync. Takes the lock.
 */
void pgm_shadow_resync_all(struct pgm_vm *vm);

/* Is @gfn write-protected in the shadows (shadowed, in sync)? Lock held. */
bool pgm_shadow_gfn_monitored(struct pgm_shadow *sh, uint64_t gfn);

/* ---- shared with the per-mode templates (both_tmpl.c); lock held ---- */

/* Entries per shadow table: 512 8-byte entries, or 1024 in the 32-bit format. */
static inline unsigned
sp_entries(const struct pgm_shadow_page *sp)
{
    return sp->role.fmt32 ? 1024 : 512;
}

/*
 * Shadow entries are read and written with atomics: the MMU walking them
 * (the soft MMU, a real CPU) sets their A/D bits concurrently. In the 32-bit
 * format an entry is 4 bytes: the bits above 31 (XD, protection keys) do not
 * exist there and are dropped on the way in.
 */
static inline uint64_t
spte_get(const struct pgm_shadow_page *sp, unsigned i)
{
    if (sp->role.fmt32)
        return __atomic_load_n((const uint32_t *)sp->ptr + i, __ATOMIC_RELAXED);
    return __atomic_load_n((const uint64_t *)sp->ptr + i, __ATOMIC_RELAXED);
}

static inline void
spte_set(struct pgm_shadow_page *sp, unsigned i, uint64_t v)
{
    if (sp->role.fmt32)
        __atomic_store_n((uint32_t *)sp->ptr + i, (uint32_t)v, __ATOMIC_RELAXED);
    else
        __atomic_store_n((uint64_t *)sp->ptr + i, v, __ATOMIC_RELAXED);
}

/* Rights of one guest entry as pgm_rights (XD counts only with EFER.NXE). */
static inline unsigned
pgm_shadow_entry_rights(uint64_t e, uint64_t xd_mask)
{
    return (unsigned)((e >> 1) & 3) | ((e & xd_mask) ? 0 : PGM_RIGHT_EXEC);
}

/* Remove entry @i of @sp (reverse maps, pending flush). */
void pgm_shadow_zap_entry(struct pgm_shadow *sh, struct pgm_shadow_page *sp, unsigned i);
/* Look up or create the shadow page (gfn, role); reserve first. NULL: pool empty. */
struct pgm_shadow_page *pgm_shadow_get_sp(struct pgm_shadow *sh, uint64_t gfn, union pgm_role role);
/* Point entry @i of @parent at @child (full rights: the leaf carries them). */
void pgm_shadow_link_child(struct pgm_shadow *sh, struct pgm_shadow_page *parent, unsigned i,
                           struct pgm_shadow_page *child);

/* pgm_shadow_lookup's walk of @vcpu's shadow tree. Lock held. */
int pgm_shadow_lookup_locked(struct pgm_vcpu *vcpu, pgm_gva_t gva, struct pgm_shadow_info *out);

/* Audit (src/audit.c) helpers. */
struct pgm_shadow_page *pgm_shadow_sp_of_hpa(struct pgm_shadow *sh, pgm_hpa_t hpa);
uint64_t *pgm_shadow_gfns(struct pgm_shadow *sh, const struct pgm_shadow_page *sp);

#endif /* PGM_SRC_MODES_SHADOW_H */
