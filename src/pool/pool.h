/* SPDX-License-Identifier: MIT */
/*
 * The shadow page pool (internal; docs/pool.md).
 *
 * One pool per VM holds every shadow table page: a host page from the
 * backend plus its descriptor, struct pgm_shadow_page. A page is either
 *   FREE:    on the free list, owned by the pool, ready for pgm_pool_alloc;
 *   ACTIVE:  in the hash under its (gfn, role) key, and on the LRU list
 *            unless pinned as a root (root_count > 0);
 *   EVICTING: inside pgm_pool_reserve, between the engine's evict callback
 *            and the batch's commit: unhashed and on no list.
 * The pool never holds more than `budget` pages from the backend. Pages are
 * taken from the backend lazily by pgm_pool_reserve and kept (free or
 * active) until pgm_pool_trim or pgm_pool_destroy.
 *
 * The contract with the engine, in short (details in docs/pool.md):
 *   - reserve n pages before a fault path starts; then n allocs cannot fail;
 *   - reserve may evict LRU pages that are not roots: for each, the engine's
 *     evict callback unlinks its entries, then one commit callback requests
 *     the flush covering the batch, then the pages become free;
 *   - a page is freed only once nothing points at it (no parents, no present
 *     entries) and it is not pinned.
 *
 * Not thread-safe: every call is made with the shadow engine's lock held
 * (src/modes/shadow.h).
 */
#ifndef PGM_SRC_POOL_POOL_H
#define PGM_SRC_POOL_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "pgm/types.h"
#include "src/pool/rmap.h"
#include "src/pool/role.h"

struct pgm_vm;

/* Budget when the VM config says 0: maps 4 GiB of guest with 4 KiB pages. */
#define PGM_POOL_DEFAULT_PAGES 2048u
/*
 * Floor of the budget: PGM_POOL_MIN_PAGES plus PGM_POOL_PAGES_PER_VCPU per
 * vCPU. A vCPU pins at most 5 root pages (a PAE PDPT and four quadrant PDs
 * of a 32-bit guest) and one fault path builds at most 5 levels (LA57), so
 * with this floor a reserve always finds room for a fault path.
 */
#define PGM_POOL_MIN_PAGES      64u
#define PGM_POOL_PAGES_PER_VCPU 8u
/* Hash buckets: the budget rounded up to a power of two, within these. */
#define PGM_POOL_MIN_BUCKETS    64u
#define PGM_POOL_MAX_BUCKETS    (1u << 20)

enum pgm_sp_state {
    PGM_SP_FREE = 0,
    PGM_SP_ACTIVE,
    PGM_SP_EVICTING,
};

struct pgm_shadow_page {
    /* The table: a zeroed 4 KiB host page when allocated. */
    pgm_hpa_t hpa;
    void *ptr;

    /* Key, fixed while active. The engine may set role.invalid (through
     * pgm_pool_invalidate), never change anything else: the hash chain
     * depends on gfn only, so the page stays findable for for_each_gfn. */
    uint64_t gfn;
    union pgm_role role;

    /* Pinned as a root of some vCPU while > 0: never evicted, off the LRU. */
    uint32_t root_count;

    /* ---- Pool links (pool.c only) ---- */
    enum pgm_sp_state state;
    struct pgm_shadow_page *hash_next;      /* bucket chain, while ACTIVE */
    struct pgm_shadow_page **hash_pprev;    /* the pointer that points here */
    /* LRU (ACTIVE, unpinned; prev = more recent), or free list (next only). */
    struct pgm_shadow_page *lru_prev, *lru_next;

    /* ---- Engine bookkeeping: zero at alloc; the pool checks, never sets ---- */
    struct pgm_rmap_list parents;   /* (parent page, index) entries pointing here */
    uint16_t present_count;         /* present entries in the table */
    uint16_t unsync_children;       /* children (or their subtrees) that are unsync */
    uint8_t write_flood;            /* emulated writes since the table was last used */
    bool unsync;                    /* leaf table out of sync with its guest table */
};

/*
 * How the engine takes a page out of service. Both are called from
 * pgm_pool_reserve only. `evict` must unlink @sp: clear its present entries
 * (removing their rmap and parent references, so present_count drops to 0)
 * and clear the parent entries that point at it (so sp->parents is empty),
 * queuing the flushes this needs. It may free other pages with
 * pgm_pool_free, but must not pin, free or allocate @sp, call
 * pgm_pool_alloc or pgm_pool_reserve. `commit` (optional) is called once
 * after a batch of evicts and must request the queued flushes: only after it
 * returns can the pool hand the evicted pages out again.
 */
struct pgm_pool_evict_ops {
    void (*evict)(void *ctx, struct pgm_shadow_page *sp);
    void (*commit)(void *ctx);
};

/* Monotonic counters, for pgm_stats. */
struct pgm_pool_counters {
    uint64_t hits;            /* pgm_pool_lookup found the key */
    uint64_t misses;          /* pgm_pool_lookup did not */
    uint64_t allocations;     /* pgm_pool_alloc handed out a page */
    uint64_t frees;           /* pgm_pool_free took one back */
    uint64_t evictions;       /* pages evicted by pgm_pool_reserve */
    uint64_t backend_allocs;  /* pages taken from the backend */
    uint64_t backend_frees;   /* pages returned to it (trim, destroy) */
};

struct pgm_pool {
    struct pgm_vm *vm;              /* backend and allocator */
    uint32_t budget;                /* most pages held from the backend */
    uint32_t pages_held;            /* from the backend: free + active + evicting */
    uint32_t pages_free;            /* on the free list */
    uint32_t pages_active;          /* in the hash */
    uint32_t pages_pinned;          /* active with root_count > 0 */

    /* Chained hash of ACTIVE pages, bucket = pgm_pool_gfn_hash(gfn) & mask. */
    struct pgm_shadow_page **buckets;
    uint32_t bucket_mask;

    /* LRU of active unpinned pages: pages_active - pages_pinned of them. */
    struct pgm_shadow_page *lru_head;   /* most recently used */
    struct pgm_shadow_page *lru_tail;   /* next to evict */
    struct pgm_shadow_page *free_list;

    struct pgm_pool_evict_ops evict_ops;
    void *evict_ctx;

    /* The reverse maps; parent lists of the pages use its descriptors. */
    struct pgm_rmap rmap;

    struct pgm_pool_counters counters;
    bool assert_on_bug;             /* see src/pool/bug.h */
};

/*
 * The budget for a VM with @vcpu_count vCPUs asked for @pool_pages pages
 * (0: PGM_POOL_DEFAULT_PAGES): at least the floor above.
 */
uint32_t pgm_pool_budget_for(uint32_t pool_pages, uint32_t vcpu_count);

/*
 * Create the pool of @vm (budget from vm->cfg.pool_pages and vcpu_count).
 * No host page is taken yet. @return 0, -ENOMEM.
 */
int pgm_pool_create(struct pgm_vm *vm, struct pgm_pool **out);

/*
 * Return every page (active, pinned or free) to the backend and free all
 * memory, without calling the evict callbacks. NULL is accepted.
 */
void pgm_pool_destroy(struct pgm_pool *pool);

/* Register the engine's eviction callbacks (NULL evict: pages just go). */
void pgm_pool_set_evict_ops(struct pgm_pool *pool, const struct pgm_pool_evict_ops *ops,
                            void *ctx);

/*
 * Make sure the next @n pgm_pool_alloc calls succeed: at least @n pages on
 * the free list. Takes pages from the backend while under budget, then
 * evicts from the LRU tail. @return 0; -ENOMEM when @n pages cannot be found
 * (n above the budget, every page pinned, or the backend out of memory and
 * too few evictable pages); the pool is consistent either way (pages taken
 * or evicted so far stay free).
 */
int pgm_pool_reserve(struct pgm_pool *pool, uint32_t n);

/*
 * The active page with key (@gfn, @role), or NULL. Counts a hit or a miss;
 * does not touch the LRU (call pgm_pool_touch when the page is used). Never
 * finds an invalidated page when @role.invalid is 0.
 */
struct pgm_shadow_page *pgm_pool_lookup(struct pgm_pool *pool, uint64_t gfn, union pgm_role role);

/*
 * A zeroed page under key (@gfn, @role), most recently used, unpinned.
 * NULL only on a caller bug: nothing reserved (free list empty) or the key
 * already present (look up first).
 */
struct pgm_shadow_page *pgm_pool_alloc(struct pgm_pool *pool, uint64_t gfn, union pgm_role role);

/*
 * Put @sp back on the free list (its host page is kept for reuse). The
 * engine must have unlinked it (no parents, no present entries) and
 * requested the flushes covering its entries. @return 0; -EINVAL (not
 * active); -EBUSY (pinned, parents or present entries left): all bugs, and
 * @sp is left unchanged.
 */
int pgm_pool_free(struct pgm_pool *pool, struct pgm_shadow_page *sp);

/* Mark @sp most recently used (no-op while pinned). */
void pgm_pool_touch(struct pgm_pool *pool, struct pgm_shadow_page *sp);

/* Pin @sp as a root (root_count + 1). @return the new root_count, -EINVAL. */
int pgm_pool_pin(struct pgm_pool *pool, struct pgm_shadow_page *sp);

/*
 * Unpin @sp (root_count - 1); at 0 it rejoins the LRU as most recent.
 * @return the new root_count (the engine frees an invalid page at 0);
 * -EINVAL (not active or not pinned: a bug).
 */
int pgm_pool_unpin(struct pgm_pool *pool, struct pgm_shadow_page *sp);

/*
 * Set role.invalid on @sp (a zapped page still pinned as a root): lookups
 * stop finding it and it no longer counts as shadowing its gfn.
 */
void pgm_pool_invalidate(struct pgm_pool *pool, struct pgm_shadow_page *sp);

/*
 * Return free pages to the backend until at most @keep stay free.
 * @return the number of pages returned.
 */
uint32_t pgm_pool_trim(struct pgm_pool *pool, uint32_t keep);

/* ---- Per-gfn queries --------------------------------------------------- */

/* The first active page of @gfn (any role, invalid included), or NULL. */
struct pgm_shadow_page *pgm_pool_gfn_first(const struct pgm_pool *pool, uint64_t gfn);
/* The next active page with @sp's gfn after @sp, or NULL. */
struct pgm_shadow_page *pgm_pool_gfn_next(const struct pgm_shadow_page *sp);

/*
 * for (each active page @sp of @gfn), @next a spare pointer: the body may
 * free @sp (not any other page of the gfn).
 */
#define pgm_pool_for_each_gfn(pool, gfn, sp, next)                          \
    for ((sp) = pgm_pool_gfn_first((pool), (gfn));                          \
         (sp) && ((next) = pgm_pool_gfn_next(sp), 1); (sp) = (next))

/*
 * Shadow pages that make @gfn a shadowed guest table: active, not direct,
 * not invalid. "Monitored" (write-protected everywhere) means > 0.
 * O(1) average: one hash chain.
 */
uint32_t pgm_pool_gfn_shadow_count(const struct pgm_pool *pool, uint64_t gfn);

/*
 * Call @fn on every active page, stopping at the first nonzero return
 * (which is returned). @fn may free the page it is given, no other.
 */
int pgm_pool_for_each_page(struct pgm_pool *pool,
                           int (*fn)(void *ctx, struct pgm_shadow_page *sp), void *ctx);

/*
 * Check every pool invariant (counts, hash placement, lists, states).
 * O(pages + buckets). @return 0, or -EINVAL.
 */
int pgm_pool_check(const struct pgm_pool *pool);

#endif /* PGM_SRC_POOL_POOL_H */
