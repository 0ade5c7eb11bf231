/* SPDX-License-Identifier: MIT */
/*
 * The shadow page pool: page budget, free list, (gfn, role) hash, LRU,
 * pinning and eviction. States and the engine contract are in
 * src/pool/pool.h and docs/pool.md.
 */
#include <errno.h>
#include <string.h>

#include "src/alloc.h"
#include "src/pool/bug.h"
#include "src/pool/pool.h"
#include "src/vm.h"

/*
 * Initial size of the gfn map, in gfns per pool page: 128 KiB of buckets for
 * the default budget. The map doubles as needed (a full pool of leaf tables
 * can map up to 512 gfns per page).
 */
#define RMAP_GFNS_PER_POOL_PAGE 8u

uint32_t
pgm_pool_budget_for(uint32_t pool_pages, uint32_t vcpu_count)
{
    uint64_t floor = PGM_POOL_MIN_PAGES + (uint64_t)PGM_POOL_PAGES_PER_VCPU * vcpu_count;
    uint64_t budget = pool_pages ? pool_pages : PGM_POOL_DEFAULT_PAGES;
    if (budget < floor)
        budget = floor;
    return budget > UINT32_MAX ? UINT32_MAX : (uint32_t)budget;
}

/* ---- Lists ----------------------------------------------------------------- */

static struct pgm_shadow_page **
bucket_of(const struct pgm_pool *pool, uint64_t gfn)
{
    return &pool->buckets[pgm_pool_gfn_hash(gfn) & pool->bucket_mask];
}

static void
hash_insert(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    struct pgm_shadow_page **slot = bucket_of(pool, sp->gfn);
    sp->hash_next = *slot;
    if (*slot)
        (*slot)->hash_pprev = &sp->hash_next;
    *slot = sp;
    sp->hash_pprev = slot;
}

static void
hash_remove(struct pgm_shadow_page *sp)
{
    *sp->hash_pprev = sp->hash_next;
    if (sp->hash_next)
        sp->hash_next->hash_pprev = sp->hash_pprev;
    sp->hash_next = NULL;
    sp->hash_pprev = NULL;
}

static void
lru_push_head(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    sp->lru_prev = NULL;
    sp->lru_next = pool->lru_head;
    if (pool->lru_head)
        pool->lru_head->lru_prev = sp;
    else
        pool->lru_tail = sp;
    pool->lru_head = sp;
}

static void
lru_unlink(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    if (sp->lru_prev)
        sp->lru_prev->lru_next = sp->lru_next;
    else
        pool->lru_head = sp->lru_next;
    if (sp->lru_next)
        sp->lru_next->lru_prev = sp->lru_prev;
    else
        pool->lru_tail = sp->lru_prev;
    sp->lru_prev = sp->lru_next = NULL;
}

static void
free_list_push(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    sp->state = PGM_SP_FREE;
    sp->lru_prev = NULL;
    sp->lru_next = pool->free_list;
    pool->free_list = sp;
    pool->pages_free++;
}

/* ---- Creation and destruction --------------------------------------------- */

int
pgm_pool_create(struct pgm_vm *vm, struct pgm_pool **out)
{
    struct pgm_pool *pool = pgm_zalloc(&vm->alloc, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    pool->vm = vm;
    pool->budget = pgm_pool_budget_for(vm->cfg.pool_pages, vm->vcpu_count);
#ifndef NDEBUG
    pool->assert_on_bug = true;
#endif
    /* Sized once: with the table as large as the budget the average chain
     * stays at most 1 and no rehash is ever needed. */
    uint32_t nb = PGM_POOL_MIN_BUCKETS;
    while (nb < pool->budget && nb < PGM_POOL_MAX_BUCKETS)
        nb <<= 1;
    pool->buckets = pgm_zalloc_array(&vm->alloc, nb, sizeof(*pool->buckets));
    if (!pool->buckets) {
        pgm_free(&vm->alloc, pool);
        return -ENOMEM;
    }
    pool->bucket_mask = nb - 1;
    if (pgm_rmap_init(&pool->rmap, &vm->alloc,
                      (uint64_t)pool->budget * RMAP_GFNS_PER_POOL_PAGE) < 0) {
        pgm_free(&vm->alloc, pool->buckets);
        pgm_free(&vm->alloc, pool);
        return -ENOMEM;
    }
    *out = pool;
    return 0;
}

/* Give @sp's host page back to the backend and free its descriptor. */
static void
release_page(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    struct pgm_vm *vm = pool->vm;
    pgm_rmap_list_clear(&pool->rmap, &sp->parents);
    vm->be->free_page(vm->be_ctx, sp->hpa, sp->ptr);
    pgm_free(&vm->alloc, sp);
    pool->pages_held--;
    pool->counters.backend_frees++;
}

void
pgm_pool_destroy(struct pgm_pool *pool)
{
    if (!pool)
        return;
    for (uint32_t b = 0; b <= pool->bucket_mask; b++) {
        struct pgm_shadow_page *sp = pool->buckets[b];
        while (sp) {
            struct pgm_shadow_page *next = sp->hash_next;
            release_page(pool, sp);
            sp = next;
        }
    }
    while (pool->free_list) {
        struct pgm_shadow_page *next = pool->free_list->lru_next;
        release_page(pool, pool->free_list);
        pool->free_list = next;
    }
    pgm_rmap_fini(&pool->rmap);
    struct pgm_vm *vm = pool->vm;
    pgm_free(&vm->alloc, pool->buckets);
    pgm_free(&vm->alloc, pool);
}

void
pgm_pool_set_evict_ops(struct pgm_pool *pool, const struct pgm_pool_evict_ops *ops, void *ctx)
{
    if (ops)
        pool->evict_ops = *ops;
    else
        memset(&pool->evict_ops, 0, sizeof(pool->evict_ops));
    pool->evict_ctx = ctx;
}

uint32_t
pgm_pool_trim(struct pgm_pool *pool, uint32_t keep)
{
    uint32_t released = 0;
    while (pool->pages_free > keep) {
        struct pgm_shadow_page *sp = pool->free_list;
        pool->free_list = sp->lru_next;
        pool->pages_free--;
        release_page(pool, sp);
        released++;
    }
    return released;
}

/* ---- Reserve and eviction ------------------------------------------------- */

/* One more page from the backend onto the free list. */
static int
grow_one(struct pgm_pool *pool)
{
    struct pgm_vm *vm = pool->vm;
    struct pgm_shadow_page *sp = pgm_zalloc(&vm->alloc, sizeof(*sp));
    if (!sp)
        return -ENOMEM;
    void *ptr;
    if (vm->be->alloc_page(vm->be_ctx, &sp->hpa, &ptr) < 0) {
        pgm_free(&vm->alloc, sp);
        return -ENOMEM;
    }
    sp->ptr = ptr;
    pool->pages_held++;
    pool->counters.backend_allocs++;
    free_list_push(pool, sp);
    return 0;
}

/*
 * Evict LRU pages until @n are free. The engine unlinks each page (evict),
 * then requests one flush for the batch (commit); only then do the pages
 * become free, so no page is reused while a vCPU may still walk through it.
 */
static int
evict_until(struct pgm_pool *pool, uint32_t n)
{
    struct pgm_shadow_page *batch = NULL;
    uint32_t batched = 0;
    /* The evict callback may free other pages: re-read both counts each round. */
    while (pool->pages_free + batched < n && pool->lru_tail) {
        struct pgm_shadow_page *sp = pool->lru_tail;
        if (pool->evict_ops.evict)
            pool->evict_ops.evict(pool->evict_ctx, sp);
        if (sp->state != PGM_SP_ACTIVE || sp->root_count || sp->lru_next ||
            sp != pool->lru_tail) {
            /* The callback freed, pinned or touched the page it was given. */
            PGM_POOL_BUG(pool->assert_on_bug, "evict callback changed the evicted page's state");
            break;
        }
        if (sp->parents.count || sp->present_count) {
            PGM_POOL_BUG(pool->assert_on_bug, "evict callback left entries linked");
            pgm_rmap_list_clear(&pool->rmap, &sp->parents);
            sp->present_count = 0;
        }
        lru_unlink(pool, sp);
        hash_remove(sp);
        pool->pages_active--;
        sp->state = PGM_SP_EVICTING;
        sp->lru_next = batch;
        batch = sp;
        batched++;
        pool->counters.evictions++;
    }
    if (batched && pool->evict_ops.commit)
        pool->evict_ops.commit(pool->evict_ctx);
    while (batch) {
        struct pgm_shadow_page *next = batch->lru_next;
        free_list_push(pool, batch);
        batch = next;
    }
    return pool->pages_free >= n ? 0 : -ENOMEM;
}

int
pgm_pool_reserve(struct pgm_pool *pool, uint32_t n)
{
    if (pool->pages_free >= n)
        return 0;
    uint32_t need = n - pool->pages_free;
    uint32_t room = pool->budget - pool->pages_held;
    uint32_t evictable = pool->pages_active - pool->pages_pinned;
    /* Fail before evicting anything when even a full eviction cannot do it. */
    if ((uint64_t)need > (uint64_t)room + evictable)
        return -ENOMEM;
    while (pool->pages_free < n && pool->pages_held < pool->budget) {
        if (grow_one(pool) < 0)
            break;   /* backend or allocator out of memory: evict instead */
    }
    if (pool->pages_free >= n)
        return 0;
    return evict_until(pool, n);
}

/* ---- Lookup, alloc, free --------------------------------------------------- */

static struct pgm_shadow_page *
find(const struct pgm_pool *pool, uint64_t gfn, union pgm_role role)
{
    for (struct pgm_shadow_page *sp = *bucket_of(pool, gfn); sp; sp = sp->hash_next)
        if (sp->gfn == gfn && sp->role.word == role.word)
            return sp;
    return NULL;
}

struct pgm_shadow_page *
pgm_pool_lookup(struct pgm_pool *pool, uint64_t gfn, union pgm_role role)
{
    struct pgm_shadow_page *sp = find(pool, gfn, role);
    if (sp)
        pool->counters.hits++;
    else
        pool->counters.misses++;
    return sp;
}

struct pgm_shadow_page *
pgm_pool_alloc(struct pgm_pool *pool, uint64_t gfn, union pgm_role role)
{
    struct pgm_shadow_page *sp = pool->free_list;
    if (!sp) {
        PGM_POOL_BUG(pool->assert_on_bug, "pgm_pool_alloc without pgm_pool_reserve");
        return NULL;
    }
    if (find(pool, gfn, role)) {
        PGM_POOL_BUG(pool->assert_on_bug, "pgm_pool_alloc of a key already in the pool");
        return NULL;
    }
    pool->free_list = sp->lru_next;
    pool->pages_free--;

    /* Keep the host page, reset everything else. */
    pgm_hpa_t hpa = sp->hpa;
    void *ptr = sp->ptr;
    memset(sp, 0, sizeof(*sp));
    sp->hpa = hpa;
    sp->ptr = ptr;
    memset(ptr, 0, PGM_PAGE_SIZE);
    sp->gfn = gfn;
    sp->role = role;
    sp->state = PGM_SP_ACTIVE;
    hash_insert(pool, sp);
    lru_push_head(pool, sp);
    pool->pages_active++;
    pool->counters.allocations++;
    return sp;
}

int
pgm_pool_free(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    if (!sp || sp->state != PGM_SP_ACTIVE) {
        PGM_POOL_BUG(pool->assert_on_bug, "pgm_pool_free of a page that is not active");
        return -EINVAL;
    }
    if (sp->root_count || sp->parents.count || sp->present_count) {
        PGM_POOL_BUG(pool->assert_on_bug, "pgm_pool_free of a pinned or linked page");
        return -EBUSY;
    }
    lru_unlink(pool, sp);
    hash_remove(sp);
    pool->pages_active--;
    free_list_push(pool, sp);
    pool->counters.frees++;
    return 0;
}

/* ---- LRU and pinning ------------------------------------------------------- */

void
pgm_pool_touch(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    if (sp->state != PGM_SP_ACTIVE || sp->root_count || pool->lru_head == sp)
        return;
    lru_unlink(pool, sp);
    lru_push_head(pool, sp);
}

int
pgm_pool_pin(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    if (sp->state != PGM_SP_ACTIVE || sp->root_count == UINT32_MAX) {
        PGM_POOL_BUG(pool->assert_on_bug, "pgm_pool_pin of a page that is not active");
        return -EINVAL;
    }
    if (sp->root_count++ == 0) {
        /* Pinned pages are off the LRU, so eviction never has to skip them. */
        lru_unlink(pool, sp);
        pool->pages_pinned++;
    }
    return (int)(sp->root_count > INT32_MAX ? INT32_MAX : sp->root_count);
}

int
pgm_pool_unpin(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    if (sp->state != PGM_SP_ACTIVE || sp->root_count == 0) {
        PGM_POOL_BUG(pool->assert_on_bug, "pgm_pool_unpin of a page that is not pinned");
        return -EINVAL;
    }
    if (--sp->root_count == 0) {
        lru_push_head(pool, sp);
        pool->pages_pinned--;
    }
    return (int)(sp->root_count > INT32_MAX ? INT32_MAX : sp->root_count);
}

void
pgm_pool_invalidate(struct pgm_pool *pool, struct pgm_shadow_page *sp)
{
    if (sp->state != PGM_SP_ACTIVE) {
        PGM_POOL_BUG(pool->assert_on_bug, "pgm_pool_invalidate of a page that is not active");
        return;
    }
    /* The bucket depends on gfn only: the page stays on its chain. */
    sp->role.invalid = 1;
}

/* ---- Per-gfn queries and iteration ---------------------------------------- */

struct pgm_shadow_page *
pgm_pool_gfn_first(const struct pgm_pool *pool, uint64_t gfn)
{
    struct pgm_shadow_page *sp = *bucket_of(pool, gfn);
    while (sp && sp->gfn != gfn)
        sp = sp->hash_next;
    return sp;
}

struct pgm_shadow_page *
pgm_pool_gfn_next(const struct pgm_shadow_page *sp)
{
    struct pgm_shadow_page *next = sp->hash_next;
    while (next && next->gfn != sp->gfn)
        next = next->hash_next;
    return next;
}

uint32_t
pgm_pool_gfn_shadow_count(const struct pgm_pool *pool, uint64_t gfn)
{
    uint32_t count = 0;
    for (const struct pgm_shadow_page *sp = *bucket_of(pool, gfn); sp; sp = sp->hash_next)
        if (sp->gfn == gfn && !sp->role.direct && !sp->role.invalid)
            count++;
    return count;
}

int
pgm_pool_for_each_page(struct pgm_pool *pool, int (*fn)(void *ctx, struct pgm_shadow_page *sp),
                       void *ctx)
{
    for (uint32_t b = 0; b <= pool->bucket_mask; b++) {
        struct pgm_shadow_page *sp = pool->buckets[b];
        while (sp) {
            struct pgm_shadow_page *next = sp->hash_next;
            int rc = fn(ctx, sp);
            if (rc)
                return rc;
            sp = next;
        }
    }
    return 0;
}

/* ---- Checking --------------------------------------------------------------- */

int
pgm_pool_check(const struct pgm_pool *pool)
{
    uint32_t active = 0, pinned = 0, on_lru = 0, free_pages = 0;
    for (uint32_t b = 0; b <= pool->bucket_mask; b++) {
        struct pgm_shadow_page *const *pprev = &pool->buckets[b];
        for (const struct pgm_shadow_page *sp = pool->buckets[b]; sp; sp = sp->hash_next) {
            if (sp->state != PGM_SP_ACTIVE || sp->hash_pprev != pprev)
                return -EINVAL;
            if ((pgm_pool_gfn_hash(sp->gfn) & pool->bucket_mask) != b)
                return -EINVAL;
            if (find(pool, sp->gfn, sp->role) != sp)
                return -EINVAL;   /* duplicate key */
            if (pgm_rmap_list_check(&sp->parents) < 0)
                return -EINVAL;
            if (sp->root_count)
                pinned++;
            if (++active > pool->pages_active)
                return -EINVAL;
            pprev = &sp->hash_next;
        }
    }
    const struct pgm_shadow_page *prev = NULL;
    for (const struct pgm_shadow_page *sp = pool->lru_head; sp; sp = sp->lru_next) {
        if (sp->state != PGM_SP_ACTIVE || sp->root_count || sp->lru_prev != prev)
            return -EINVAL;
        if (++on_lru > active)
            return -EINVAL;
        prev = sp;
    }
    if (pool->lru_tail != prev)
        return -EINVAL;
    for (const struct pgm_shadow_page *sp = pool->free_list; sp; sp = sp->lru_next) {
        if (sp->state != PGM_SP_FREE || sp->hash_pprev)
            return -EINVAL;
        if (++free_pages > pool->pages_free)
            return -EINVAL;
    }
    if (active != pool->pages_active || pinned != pool->pages_pinned ||
        on_lru != active - pinned || free_pages != pool->pages_free)
        return -EINVAL;
    /* Outside reserve nothing is EVICTING, so held = active + free. */
    if (pool->pages_held != active + free_pages || pool->pages_held > pool->budget)
        return -EINVAL;
    return 0;
}
