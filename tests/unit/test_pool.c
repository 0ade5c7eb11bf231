/* SPDX-License-Identifier: MIT */
/*
 * The shadow page pool (src/pool/pool.c): keys and hash, LRU eviction,
 * pinning, the reserve contract, the budget, the eviction callbacks, pages
 * returned to the backend, and allocation failure at every point. A small
 * mock engine (entries written into the pool pages, parent and gfn reverse
 * maps kept in step) checks that eviction leaves a consistent structure.
 */
#include <errno.h>
#include <string.h>

#include "pgm/pgm.h"
#include "src/pool/pool.h"
#include "src/vm.h"
#include "tests/unit/fail_alloc.h"

/* ---- A deterministic PRNG ------------------------------------------------ */

static uint64_t rng_state;

static void
rng_seed(uint64_t seed)
{
    rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
}

static uint32_t
rng_below(uint32_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) % n);
}

/* ---- Environment: soft backend, VM, pool ---------------------------------- */

#define MAX_LOG 4096

struct env {
    struct fail_alloc fa;
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_pool *pool;
    /* What the evict callbacks saw. */
    uint64_t evicted_gfn[MAX_LOG];
    union pgm_role evicted_role[MAX_LOG];
    uint32_t evicted;
    uint32_t commits;
    uint32_t evicted_at_last_commit;
    bool mock_unlinks;     /* evict unlinks entries like the engine will */
};

static struct env *
env_new(uint32_t pool_pages, uint32_t vcpus, uint64_t backend_pages)
{
    struct env *e = test_calloc(1, sizeof(*e));
    assert_non_null(e);
    fail_alloc_reset(&e->fa);
    assert_int_equal(pgm_soft_backend_create(backend_pages, &e->sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    cfg.pool_pages = pool_pages;
    cfg.vcpu_count = vcpus;
    cfg.allocator = fail_alloc_hooks(&e->fa);
    assert_int_equal(pgm_vm_create(&cfg, &e->vm), 0);
    return e;
}

static struct pgm_pool *
env_pool(struct env *e)
{
    assert_int_equal(pgm_pool_create(e->vm, &e->pool), 0);
    return e->pool;
}

static void
env_free(struct env *e)
{
    pgm_pool_destroy(e->pool);
    /* The VM has no RAM: every backend page was a pool page. */
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), 0);
    pgm_vm_destroy(e->vm);
    assert_int_equal(e->fa.live, 0);
    pgm_soft_backend_destroy(e->sb);
    test_free(e);
}

static union pgm_role
role(unsigned level)
{
    return pgm_role_make(level, PGM_MODE_AMD64);
}

/* Reserve one page and allocate it: the fault-path pattern. */
static struct pgm_shadow_page *
get_page(struct pgm_pool *pool, uint64_t gfn, union pgm_role r)
{
    assert_int_equal(pgm_pool_reserve(pool, 1), 0);
    struct pgm_shadow_page *sp = pgm_pool_alloc(pool, gfn, r);
    assert_non_null(sp);
    return sp;
}

/* ---- A mock engine ----------------------------------------------------------
 * Entries live in the pool page itself (uint64_t[512]): 0 is not present; a
 * leaf table (level 1) entry is gfn << 12 | 1; an upper entry is the child's
 * descriptor address | 1. Every present entry has its reverse-map reference.
 */

static uint64_t *
entries(struct pgm_shadow_page *sp)
{
    return sp->ptr;
}

static int
mock_link(struct env *e, struct pgm_shadow_page *parent, uint32_t idx,
          struct pgm_shadow_page *child)
{
    assert_int_equal(entries(parent)[idx], 0);
    int rc = pgm_rmap_parent_add(&e->pool->rmap, child, parent, idx);
    if (rc)
        return rc;
    entries(parent)[idx] = (uint64_t)(uintptr_t)child | 1;
    parent->present_count++;
    return 0;
}

static int
mock_map(struct env *e, struct pgm_shadow_page *leaf, uint32_t idx, uint64_t gfn)
{
    assert_int_equal(entries(leaf)[idx], 0);
    int rc = pgm_rmap_gfn_add(&e->pool->rmap, gfn, leaf, idx);
    if (rc)
        return rc;
    entries(leaf)[idx] = gfn << 12 | 1;
    leaf->present_count++;
    return 0;
}

static void
mock_unlink_entry(struct env *e, struct pgm_shadow_page *sp, uint32_t idx)
{
    uint64_t v = entries(sp)[idx];
    assert_true(v & 1);
    if (sp->role.level == 1) {
        assert_int_equal(pgm_rmap_gfn_remove(&e->pool->rmap, v >> 12, sp, idx), 0);
    } else {
        struct pgm_shadow_page *child = (struct pgm_shadow_page *)(uintptr_t)(v & ~1ull);
        assert_int_equal(pgm_rmap_parent_remove(&e->pool->rmap, child, sp, idx), 0);
    }
    entries(sp)[idx] = 0;
    sp->present_count--;
}

/* Unlink @sp both ways: its own entries, and the entries pointing at it. */
static void
mock_zap(struct env *e, struct pgm_shadow_page *sp)
{
    for (uint32_t i = 0; i < 512 && sp->present_count; i++)
        if (entries(sp)[i])
            mock_unlink_entry(e, sp, i);
    struct pgm_rmap_ref ref;
    while (pgm_rmap_list_first(&sp->parents, &ref))
        mock_unlink_entry(e, ref.sp, ref.index);
}

static void
mock_evict(void *ctx, struct pgm_shadow_page *sp)
{
    struct env *e = ctx;
    assert_int_equal(sp->state, PGM_SP_ACTIVE);
    assert_int_equal(sp->root_count, 0);
    if (e->evicted < MAX_LOG) {
        e->evicted_gfn[e->evicted] = sp->gfn;
        e->evicted_role[e->evicted] = sp->role;
    }
    e->evicted++;
    if (e->mock_unlinks)
        mock_zap(e, sp);
}

static void
mock_commit(void *ctx)
{
    struct env *e = ctx;
    /* Every commit follows at least one evict. */
    assert_true(e->evicted > e->evicted_at_last_commit);
    e->evicted_at_last_commit = e->evicted;
    e->commits++;
}

static const struct pgm_pool_evict_ops mock_ops = { mock_evict, mock_commit };

struct audit {
    struct env *e;
    uint64_t leaf_entries, upper_entries, parent_refs;
};

/* Law 5 in miniature: every present entry has its reference and back. */
static int
audit_page(void *ctx, struct pgm_shadow_page *sp)
{
    struct audit *a = ctx;
    uint32_t present = 0;
    for (uint32_t i = 0; i < 512; i++) {
        uint64_t v = entries(sp)[i];
        if (!v)
            continue;
        present++;
        if (sp->role.level == 1) {
            a->leaf_entries++;
            assert_true(pgm_rmap_list_contains(pgm_rmap_gfn_list(&a->e->pool->rmap, v >> 12),
                                               sp, i));
        } else {
            struct pgm_shadow_page *child = (struct pgm_shadow_page *)(uintptr_t)(v & ~1ull);
            a->upper_entries++;
            assert_int_equal(child->state, PGM_SP_ACTIVE);
            assert_true(pgm_rmap_list_contains(&child->parents, sp, i));
        }
    }
    assert_int_equal(present, sp->present_count);
    a->parent_refs += pgm_rmap_list_count(&sp->parents);
    struct pgm_rmap_iter it;
    struct pgm_rmap_ref ref;
    pgm_rmap_for_each(&sp->parents, it, ref) {
        assert_int_equal(ref.sp->state, PGM_SP_ACTIVE);
        assert_int_equal(entries(ref.sp)[ref.index], (uint64_t)(uintptr_t)sp | 1);
    }
    return 0;
}

static void
audit(struct env *e)
{
    assert_int_equal(pgm_pool_check(e->pool), 0);
    assert_int_equal(pgm_rmap_check(&e->pool->rmap), 0);
    struct audit a = { .e = e };
    assert_int_equal(pgm_pool_for_each_page(e->pool, audit_page, &a), 0);
    assert_int_equal(a.leaf_entries, e->pool->rmap.gfn_refs);
    assert_int_equal(a.upper_entries, a.parent_refs);
    assert_true(e->pool->pages_held <= e->pool->budget);
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), e->pool->pages_held);
}

/* Pool invariants and the budget, for tests whose pages hold no mock entries. */
static void
check_pool(struct env *e)
{
    assert_int_equal(pgm_pool_check(e->pool), 0);
    assert_true(e->pool->pages_held <= e->pool->budget);
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), e->pool->pages_held);
}

static const uint8_t zero_page[PGM_PAGE_SIZE];

/* ---- Tests ------------------------------------------------------------------ */

static void
test_budget(void **state)
{
    (void)state;
    assert_int_equal(pgm_pool_budget_for(0, 1), PGM_POOL_DEFAULT_PAGES);
    assert_int_equal(pgm_pool_budget_for(1, 1), PGM_POOL_MIN_PAGES + PGM_POOL_PAGES_PER_VCPU);
    assert_int_equal(pgm_pool_budget_for(5000, 1), 5000);
    assert_int_equal(pgm_pool_budget_for(0, 256),
                     PGM_POOL_MIN_PAGES + 256 * PGM_POOL_PAGES_PER_VCPU);
    assert_int_equal(pgm_pool_budget_for(UINT32_MAX, 256), UINT32_MAX);

    struct env *e = env_new(0, 2, 64);
    struct pgm_pool *pool = env_pool(e);
    assert_int_equal(pool->budget, PGM_POOL_DEFAULT_PAGES);
    assert_int_equal(pool->bucket_mask + 1, 2048);
    assert_int_equal(pool->pages_held, 0);   /* lazy: no page before a reserve */
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), 0);
    assert_int_equal(pgm_pool_check(pool), 0);
    env_free(e);

    e = env_new(10, 1, 64);
    assert_int_equal(env_pool(e)->budget, 72);
    assert_int_equal(e->pool->bucket_mask + 1, 128);
    env_free(e);
}

static void
test_create_allocation_failures(void **state)
{
    (void)state;
    struct env *e = env_new(100, 1, 64);
    int64_t base = e->fa.live;
    for (int64_t n = 0;; n++) {
        fail_alloc_next(&e->fa, n);
        int64_t failures = e->fa.failures;
        struct pgm_pool *pool = NULL;
        int rc = pgm_pool_create(e->vm, &pool);
        if (e->fa.failures == failures) {
            assert_int_equal(rc, 0);
            pgm_pool_destroy(pool);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(e->fa.live, base);
    }
    e->fa.fail_at = -1;
    env_free(e);
}

/* Many keys: every one found, absent ones not, counters right. */
static void
test_lookup_many(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct env *e = env_new(4096, 1, 4096);
    struct pgm_pool *pool = env_pool(e);
    static struct pgm_shadow_page *sp[N];
    static uint64_t gfn[N];
    static union pgm_role r[N];
    rng_seed(11);
    assert_int_equal(pgm_pool_reserve(pool, N), 0);
    assert_int_equal(pool->pages_held, N);
    for (uint32_t i = 0; i < N; i++) {
        /* Groups of up to 8 keys share a gfn and differ in role. */
        gfn[i] = (i / 8) * 0x10003ull + (1ull << 39);
        r[i] = pgm_role_make(1 + (i % 8) / 2, PGM_MODE_PAE);
        r[i].quadrant = i % 2 ? 3 : 0;
        /* (level, quadrant) differ within a group; access is noise. */
        r[i].access = rng_below(8);
        assert_null(pgm_pool_lookup(pool, gfn[i], r[i]));
        sp[i] = pgm_pool_alloc(pool, gfn[i], r[i]);
        assert_non_null(sp[i]);
        assert_int_equal(sp[i]->gfn, gfn[i]);
        assert_int_equal(sp[i]->role.word, r[i].word);
    }
    assert_int_equal(pgm_pool_check(pool), 0);
    for (uint32_t i = 0; i < N; i++) {
        assert_ptr_equal(pgm_pool_lookup(pool, gfn[i], r[i]), sp[i]);
        union pgm_role other = r[i];
        other.smap_andnot_wp = 1;
        assert_null(pgm_pool_lookup(pool, gfn[i], other));
        assert_null(pgm_pool_lookup(pool, gfn[i] + 1, r[i]));
    }
    assert_int_equal(pool->counters.hits, N);
    assert_int_equal(pool->counters.misses, 3 * N);
    assert_int_equal(pool->counters.allocations, N);
    /* Free half; the rest stay findable, the freed ones do not. */
    for (uint32_t i = 0; i < N; i += 2)
        assert_int_equal(pgm_pool_free(pool, sp[i]), 0);
    for (uint32_t i = 0; i < N; i++) {
        struct pgm_shadow_page *found = pgm_pool_lookup(pool, gfn[i], r[i]);
        if (i % 2)
            assert_ptr_equal(found, sp[i]);
        else
            assert_null(found);
    }
    assert_int_equal(pool->counters.frees, N / 2);
    assert_int_equal(pool->pages_free, N / 2);
    assert_int_equal(pgm_pool_check(pool), 0);
    env_free(e);
}

/* Each role field alone makes a different key; the key hash separates them. */
static void
test_role_distinct(void **state)
{
    (void)state;
    struct env *e = env_new(100, 1, 256);
    struct pgm_pool *pool = env_pool(e);
    union pgm_role base = pgm_role_make(1, PGM_MODE_32BIT);
    union pgm_role v[12];
    for (int i = 0; i < 12; i++)
        v[i] = base;
    v[1].level = 2;
    v[2].guest_mode = PGM_MODE_PAE;
    v[3].quadrant = 1;
    v[4].quadrant = 2;
    v[5].direct = 1;
    v[6].access = PGM_RIGHT_WRITE;
    v[7].access = PGM_RIGHT_USER | PGM_RIGHT_EXEC;
    v[8].cr0_wp = 1;
    v[9].nxe = 1;
    v[10].smep_andnot_wp = 1;
    v[11].smap_andnot_wp = 1;
    struct pgm_shadow_page *sp[12];
    for (int i = 0; i < 12; i++) {
        for (int j = 0; j < i; j++) {
            assert_false(pgm_role_equal(v[i], v[j]));
            assert_false(pgm_pool_key_equal(pgm_pool_key_make(42, v[i]), pgm_pool_key_make(42, v[j])));
            assert_true(pgm_pool_key_hash(pgm_pool_key_make(42, v[i])) !=
                        pgm_pool_key_hash(pgm_pool_key_make(42, v[j])));
        }
        sp[i] = get_page(pool, 42, v[i]);
    }
    for (int i = 0; i < 12; i++)
        assert_ptr_equal(pgm_pool_lookup(pool, 42, v[i]), sp[i]);
    /* The role fields read back what was set, in one word. */
    assert_int_equal(v[2].guest_mode, PGM_MODE_PAE);
    assert_int_equal(v[7].access, PGM_RIGHT_USER | PGM_RIGHT_EXEC);
    assert_true(pgm_pool_key_equal(pgm_pool_key_make(42, v[3]), pgm_pool_key_make(42, v[3])));
    assert_false(pgm_pool_key_equal(pgm_pool_key_make(42, v[3]), pgm_pool_key_make(43, v[3])));
    assert_int_equal(sizeof(union pgm_role), 4);
    env_free(e);
}

/* for_each_gfn sees every role of a gfn; the shadow count skips direct and invalid. */
static void
test_gfn_iteration_and_count(void **state)
{
    (void)state;
    struct env *e = env_new(100, 1, 256);
    struct pgm_pool *pool = env_pool(e);
    e->pool->assert_on_bug = false;
    const uint64_t g = 0x1234;
    /* Other gfns on the same hash chain, which the iteration must skip. */
    uint64_t bucket = pgm_pool_gfn_hash(g) & pool->bucket_mask;
    uint32_t same = 0;
    for (uint64_t x = g + 1; same < 6; x++) {
        if ((pgm_pool_gfn_hash(x) & pool->bucket_mask) == bucket) {
            get_page(pool, x, role(1 + same % 2));
            same++;
        }
    }
    assert_null(pgm_pool_gfn_first(pool, g));
    assert_int_equal(pgm_pool_gfn_shadow_count(pool, g), 0);
    union pgm_role direct = role(1);
    direct.direct = 1;
    struct pgm_shadow_page *a = get_page(pool, g, role(1));
    struct pgm_shadow_page *b = get_page(pool, g, role(2));
    struct pgm_shadow_page *c = get_page(pool, g, direct);
    struct pgm_shadow_page *d = get_page(pool, g, role(3));
    assert_int_equal(pgm_pool_gfn_shadow_count(pool, g), 3);
    pgm_pool_invalidate(pool, d);
    assert_int_equal(pgm_pool_gfn_shadow_count(pool, g), 2);
    assert_null(pgm_pool_lookup(pool, g, role(3)));
    union pgm_role inv = role(3);
    inv.invalid = 1;
    assert_ptr_equal(pgm_pool_lookup(pool, g, inv), d);

    struct pgm_shadow_page *sp, *next;
    unsigned seen = 0;
    pgm_pool_for_each_gfn(pool, g, sp, next) {
        assert_int_equal(sp->gfn, g);
        seen |= (sp == a) << 0 | (sp == b) << 1 | (sp == c) << 2 | (sp == d) << 3;
    }
    assert_int_equal(seen, 0xf);
    /* Freeing the current page while iterating is allowed. */
    unsigned freed = 0;
    pgm_pool_for_each_gfn(pool, g, sp, next) {
        assert_int_equal(pgm_pool_free(pool, sp), 0);
        freed++;
    }
    assert_int_equal(freed, 4);
    assert_null(pgm_pool_gfn_first(pool, g));
    assert_int_equal(pgm_pool_gfn_shadow_count(pool, g), 0);
    assert_int_equal(pgm_pool_check(pool), 0);
    env_free(e);
}

/* Eviction takes the least recently used page; touch and alloc refresh. */
static void
test_lru_eviction_order(void **state)
{
    (void)state;
    struct env *e = env_new(1, 1, 256);   /* floor: 72 pages */
    struct pgm_pool *pool = env_pool(e);
    pgm_pool_set_evict_ops(pool, &mock_ops, e);
    const uint32_t n = pool->budget;
    assert_int_equal(n, 72);
    struct pgm_shadow_page *sp[72];
    for (uint32_t i = 0; i < n; i++)
        sp[i] = get_page(pool, 1000 + i, role(1));
    assert_int_equal(pool->pages_held, n);
    assert_int_equal(e->evicted, 0);
    /* Use order now: 0..71. Touch the even pages, in reverse: LRU order
     * becomes odd pages ascending, then even pages descending. */
    for (int32_t i = (int32_t)n - 2; i >= 0; i -= 2)
        pgm_pool_touch(pool, sp[i]);
    uint64_t expect[72];
    uint32_t k = 0;
    for (uint32_t i = 1; i < n; i += 2)
        expect[k++] = 1000 + i;
    for (int32_t i = (int32_t)n - 2; i >= 0; i -= 2)
        expect[k++] = 1000 + (uint64_t)i;

    /* One page at a time: one evict, one commit, the next in LRU order. */
    for (uint32_t i = 0; i < 10; i++) {
        assert_int_equal(pgm_pool_reserve(pool, 1), 0);
        assert_int_equal(e->evicted, i + 1);
        assert_int_equal(e->commits, i + 1);
        assert_int_equal(e->evicted_gfn[i], expect[i]);
        assert_null(pgm_pool_lookup(pool, expect[i], role(1)));
        assert_int_equal(pgm_pool_reserve(pool, 1), 0);   /* already free: no eviction */
        assert_int_equal(e->evicted, i + 1);
        /* The new page is most recent: it is not next. */
        assert_non_null(pgm_pool_alloc(pool, 5000 + i, role(1)));
    }
    /* A batch: five evicts, one commit. */
    assert_int_equal(pgm_pool_reserve(pool, 5), 0);
    assert_int_equal(e->evicted, 15);
    assert_int_equal(e->commits, 11);
    for (uint32_t i = 10; i < 15; i++)
        assert_int_equal(e->evicted_gfn[i], expect[i]);
    /* Exactly once per evicted page: all evicted keys distinct. */
    for (uint32_t i = 0; i < e->evicted; i++)
        for (uint32_t j = 0; j < i; j++)
            assert_true(e->evicted_gfn[i] != e->evicted_gfn[j]);
    assert_int_equal(pool->counters.evictions, 15);
    assert_int_equal(pool->pages_held, n);
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), n);
    assert_int_equal(pgm_pool_check(pool), 0);
    env_free(e);
}

static void
test_pinned_never_evicted(void **state)
{
    (void)state;
    struct env *e = env_new(1, 1, 256);
    struct pgm_pool *pool = env_pool(e);
    pgm_pool_set_evict_ops(pool, &mock_ops, e);
    const uint32_t n = pool->budget;
    struct pgm_shadow_page *sp[72];
    for (uint32_t i = 0; i < n; i++) {
        sp[i] = get_page(pool, 2000 + i, role(4));
        if (i != 10 && i != 50)
            assert_int_equal(pgm_pool_pin(pool, sp[i]), 1);
    }
    assert_int_equal(pgm_pool_pin(pool, sp[0]), 2);   /* two vCPUs share a root */
    assert_int_equal(pool->pages_pinned, n - 2);
    /* Touching a pinned page does not put it on the LRU. */
    pgm_pool_touch(pool, sp[3]);
    assert_int_equal(pgm_pool_check(pool), 0);
    /* Three pages needed, two evictable: refused before anything is evicted. */
    assert_int_equal(pgm_pool_reserve(pool, 3), -ENOMEM);
    assert_int_equal(e->evicted, 0);
    assert_int_equal(pgm_pool_reserve(pool, 2), 0);
    assert_int_equal(e->evicted, 2);
    assert_int_equal(e->evicted_gfn[0], 2010);
    assert_int_equal(e->evicted_gfn[1], 2050);
    assert_int_equal(pgm_pool_reserve(pool, 3), -ENOMEM);
    /* Nothing else evictable while all are pinned, whatever is asked. */
    assert_non_null(pgm_pool_alloc(pool, 1, role(1)));
    assert_non_null(pgm_pool_alloc(pool, 2, role(1)));
    assert_int_equal(pgm_pool_pin(pool, pgm_pool_lookup(pool, 1, role(1))), 1);
    assert_int_equal(pgm_pool_pin(pool, pgm_pool_lookup(pool, 2, role(1))), 1);
    assert_int_equal(pgm_pool_reserve(pool, 1), -ENOMEM);
    assert_int_equal(e->evicted, 2);
    /* Unpinned: back on the LRU as most recent, evictable again. */
    assert_int_equal(pgm_pool_unpin(pool, sp[0]), 1);
    assert_int_equal(pgm_pool_reserve(pool, 1), -ENOMEM);
    assert_int_equal(pgm_pool_unpin(pool, sp[0]), 0);
    assert_int_equal(pgm_pool_unpin(pool, sp[5]), 0);
    assert_int_equal(pool->pages_pinned, n - 2);
    assert_int_equal(pgm_pool_reserve(pool, 1), 0);
    assert_int_equal(e->evicted_gfn[2], 2000);        /* unpinned first: least recent */
    assert_int_equal(pgm_pool_check(pool), 0);
    /* Pinned pages of every kind are returned at destroy. */
    env_free(e);
}

/* Random reserve / alloc / free / pin / touch: alloc after reserve never fails. */
static void
test_reserve_then_alloc_random(void **state)
{
    (void)state;
    struct env *e = env_new(100, 1, 1024);
    struct pgm_pool *pool = env_pool(e);
    pgm_pool_set_evict_ops(pool, &mock_ops, e);
    enum { LIVE = 400 };
    static struct pgm_shadow_page *live[LIVE];
    uint32_t nlive = 0;
    uint64_t next_gfn = 1;
    rng_seed(12);
    for (int op = 0; op < 20000; op++) {
        uint32_t r = rng_below(100);
        if (r < 40) {
            uint32_t k = 1 + rng_below(5);
            int rc = pgm_pool_reserve(pool, k);
            if (rc == 0) {
                for (uint32_t i = 0; i < k; i++) {
                    struct pgm_shadow_page *sp = pgm_pool_alloc(pool, next_gfn++, role(1 + i));
                    assert_non_null(sp);
                    /* A fresh page reads as zero, even when reused. */
                    assert_memory_equal(sp->ptr, zero_page, PGM_PAGE_SIZE);
                    entries(sp)[rng_below(512)] = 0xdead;
                    if (nlive < LIVE)
                        live[nlive++] = sp;
                }
            } else {
                assert_int_equal(rc, -ENOMEM);
                assert_true(pool->pages_pinned + k > pool->budget);
            }
        } else if (r < 60 && nlive) {
            uint32_t i = rng_below(nlive);
            struct pgm_shadow_page *sp = live[i];
            live[i] = live[--nlive];
            if (sp->state == PGM_SP_ACTIVE && !sp->root_count)
                assert_int_equal(pgm_pool_free(pool, sp), 0);
        } else if (r < 75 && nlive) {
            struct pgm_shadow_page *sp = live[rng_below(nlive)];
            if (sp->state == PGM_SP_ACTIVE && pool->pages_pinned < pool->budget - 10)
                assert_true(pgm_pool_pin(pool, sp) >= 1);
        } else if (r < 90 && nlive) {
            struct pgm_shadow_page *sp = live[rng_below(nlive)];
            if (sp->state == PGM_SP_ACTIVE && sp->root_count)
                assert_true(pgm_pool_unpin(pool, sp) >= 0);
        } else if (nlive) {
            struct pgm_shadow_page *sp = live[rng_below(nlive)];
            if (sp->state == PGM_SP_ACTIVE)
                pgm_pool_touch(pool, sp);
        }
        /* Evicted pages may have been reused for other keys: drop stale handles. */
        for (uint32_t i = 0; i < nlive; i++) {
            if (live[i]->state != PGM_SP_ACTIVE) {
                live[i] = live[--nlive];
                i--;
            }
        }
        assert_true(pool->pages_held <= pool->budget);
        if (op % 500 == 0)
            check_pool(e);
    }
    check_pool(e);
    assert_true(pool->counters.evictions > 100);
    assert_int_equal(pool->counters.evictions, e->evicted);
    assert_int_equal(pool->counters.allocations - pool->counters.frees - pool->counters.evictions,
                     pool->pages_active);
    env_free(e);
}

/* Caller bugs: documented errors, nothing changed (assertions off). */
static void
test_bugs_return_errors(void **state)
{
    (void)state;
    struct env *e = env_new(1, 1, 256);
    struct pgm_pool *pool = env_pool(e);
    pool->assert_on_bug = false;
    pool->rmap.assert_on_bug = false;
    assert_null(pgm_pool_alloc(pool, 1, role(1)));            /* nothing reserved */
    assert_int_equal(pgm_pool_reserve(pool, 3), 0);
    struct pgm_shadow_page *a = pgm_pool_alloc(pool, 1, role(1));
    assert_non_null(a);
    assert_null(pgm_pool_alloc(pool, 1, role(1)));            /* duplicate key */
    struct pgm_shadow_page *b = pgm_pool_alloc(pool, 2, role(2));
    assert_int_equal(pgm_pool_unpin(pool, a), -EINVAL);       /* not pinned */
    assert_int_equal(pgm_pool_pin(pool, a), 1);
    assert_int_equal(pgm_pool_free(pool, a), -EBUSY);         /* pinned */
    assert_int_equal(pgm_pool_unpin(pool, a), 0);
    assert_int_equal(pgm_rmap_parent_add(&pool->rmap, a, b, 0), 0);
    assert_int_equal(pgm_pool_free(pool, a), -EBUSY);         /* has a parent */
    assert_int_equal(pgm_rmap_parent_remove(&pool->rmap, a, b, 1), -ENOENT);
    assert_int_equal(pgm_rmap_parent_remove(&pool->rmap, a, b, 0), 0);
    a->present_count = 1;
    assert_int_equal(pgm_pool_free(pool, a), -EBUSY);         /* entries left */
    a->present_count = 0;
    assert_int_equal(pgm_pool_check(pool), 0);
    assert_int_equal(pgm_pool_free(pool, a), 0);
    assert_int_equal(pgm_pool_free(pool, a), -EINVAL);        /* double free */
    assert_int_equal(pgm_pool_pin(pool, a), -EINVAL);         /* free page */
    assert_int_equal(pgm_pool_unpin(pool, a), -EINVAL);
    assert_int_equal(pgm_pool_free(pool, NULL), -EINVAL);
    pgm_pool_touch(pool, a);                                  /* ignored */
    pgm_pool_invalidate(pool, a);                             /* ignored */
    assert_int_equal(a->role.invalid, 0);
    assert_int_equal(pgm_pool_reserve(pool, pool->budget + 1), -ENOMEM);
    assert_int_equal(pgm_pool_check(pool), 0);
    /* A parent list with descriptors is released at destroy. */
    for (uint32_t i = 0; i < 20; i++)
        assert_int_equal(pgm_rmap_parent_add(&pool->rmap, b, b, i), 0);
    env_free(e);
}

/* Backend out of memory: reserve falls back to eviction, else -ENOMEM. */
static void
test_backend_out_of_memory(void **state)
{
    (void)state;
    struct env *e = env_new(100, 1, 1024);
    struct pgm_pool *pool = env_pool(e);
    pgm_pool_set_evict_ops(pool, &mock_ops, e);
    pgm_soft_backend_fail_after(e->sb, 10);
    assert_int_equal(pgm_pool_reserve(pool, 12), -ENOMEM);    /* 10 pages, nothing to evict */
    assert_int_equal(pool->pages_held, 10);
    assert_int_equal(pool->pages_free, 10);
    assert_int_equal(pgm_pool_check(pool), 0);
    for (uint32_t i = 0; i < 10; i++)
        assert_non_null(pgm_pool_alloc(pool, 100 + i, role(1)));
    /* Under budget but the backend refuses: the LRU pays. */
    assert_int_equal(pgm_pool_reserve(pool, 4), 0);
    assert_int_equal(e->evicted, 4);
    assert_int_equal(e->commits, 1);
    assert_int_equal(e->evicted_gfn[0], 100);
    assert_int_equal(pool->pages_held, 10);
    /* The metadata allocation failing is handled the same way. */
    pgm_soft_backend_fail_after(e->sb, -1);
    e->fa.fail_from = e->fa.calls;
    assert_int_equal(pgm_pool_reserve(pool, 6), 0);
    assert_int_equal(e->evicted, 6);
    assert_int_equal(pool->pages_held, 10);
    e->fa.fail_from = -1;
    assert_int_equal(pgm_pool_reserve(pool, 7), 0);           /* grows again */
    assert_int_equal(pool->pages_held, 11);
    assert_int_equal(pgm_pool_check(pool), 0);
    env_free(e);
}

static void
test_trim(void **state)
{
    (void)state;
    struct env *e = env_new(100, 1, 1024);
    struct pgm_pool *pool = env_pool(e);
    assert_int_equal(pgm_pool_reserve(pool, 30), 0);
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), 30);
    struct pgm_shadow_page *sp = pgm_pool_alloc(pool, 9, role(2));
    assert_int_equal(pgm_pool_trim(pool, 5), 24);
    assert_int_equal(pool->pages_free, 5);
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), 6);
    assert_int_equal(pool->counters.backend_frees, 24);
    assert_int_equal(pgm_pool_free(pool, sp), 0);
    assert_int_equal(pgm_pool_trim(pool, 0), 6);
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), 0);
    assert_int_equal(pgm_pool_trim(pool, 0), 0);
    assert_int_equal(pgm_pool_check(pool), 0);
    env_free(e);
}

static int
count_and_free_odd(void *ctx, struct pgm_shadow_page *sp)
{
    struct env *e = ctx;
    e->evicted++;   /* reused as a visit counter */
    if (sp->gfn & 1)
        assert_int_equal(pgm_pool_free(e->pool, sp), 0);
    return sp->gfn == 0xdead ? 7 : 0;
}

static void
test_for_each_page(void **state)
{
    (void)state;
    struct env *e = env_new(300, 1, 1024);
    struct pgm_pool *pool = env_pool(e);
    for (uint64_t g = 0; g < 200; g++)
        get_page(pool, g * 3, role(1));
    assert_int_equal(pgm_pool_for_each_page(pool, count_and_free_odd, e), 0);
    assert_int_equal(e->evicted, 200);
    assert_int_equal(pool->pages_active, 100);
    get_page(pool, 0xdead, role(1));
    e->evicted = 0;
    assert_int_equal(pgm_pool_for_each_page(pool, count_and_free_odd, e), 7);
    assert_true(e->evicted <= 101);
    assert_int_equal(pgm_pool_check(pool), 0);
    env_free(e);
}

/*
 * A tree built by the mock engine (pinned root, upper tables, leaf tables
 * mapping shared gfns) under a full pool: eviction through the callback
 * leaves every entry with its reverse-map reference and vice versa.
 */
static void
build_tree(struct env *e, uint32_t leaves)
{
    struct pgm_pool *pool = e->pool;
    struct pgm_shadow_page *root = get_page(pool, 1, role(4));
    assert_int_equal(pgm_pool_pin(pool, root), 1);
    struct pgm_shadow_page *upper[8];
    for (uint32_t i = 0; i < 8; i++) {
        upper[i] = get_page(pool, 10 + i, role(3));
        assert_int_equal(mock_link(e, root, i, upper[i]), 0);
    }
    for (uint32_t l = 0; l < leaves; l++) {
        struct pgm_shadow_page *leaf = get_page(pool, 100 + l, role(1));
        /* Each leaf is linked from one or two upper tables (a DAG). */
        assert_int_equal(mock_link(e, upper[l % 8], l, leaf), 0);
        if (l % 3 == 0)
            assert_int_equal(mock_link(e, upper[(l + 1) % 8], 256 + l, leaf), 0);
        for (uint32_t j = 0; j < 20; j++)
            assert_int_equal(mock_map(e, leaf, j * 7, 5000 + (l * 3 + j) % 50), 0);
    }
}

static void
test_evict_unlinks(void **state)
{
    (void)state;
    struct env *e = env_new(100, 1, 1024);
    struct pgm_pool *pool = env_pool(e);
    pgm_pool_set_evict_ops(pool, &mock_ops, e);
    e->mock_unlinks = true;
    build_tree(e, 91);                 /* 1 + 8 + 91 = the budget */
    assert_int_equal(pool->pages_held, pool->budget);
    audit(e);
    /* Shared gfns have long lists. */
    assert_true(pgm_rmap_gfn_count(&pool->rmap, 5000) > 20);
    assert_int_equal(pgm_pool_reserve(pool, 30), 0);
    assert_int_equal(e->evicted, 30);
    assert_int_equal(e->commits, 1);
    audit(e);
    /* The least recent were the upper tables (allocated first); the root is pinned. */
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(e->evicted_gfn[i], 10 + i);
    struct pgm_shadow_page *root = pgm_pool_lookup(pool, 1, role(4));
    assert_non_null(root);
    assert_int_equal(root->present_count, 0);
    /* Rebuild under pressure, then everything is torn down at destroy. */
    for (uint32_t i = 0; i < 30; i++) {
        struct pgm_shadow_page *leaf = pgm_pool_alloc(pool, 9000 + i, role(1));
        assert_non_null(leaf);
        assert_int_equal(mock_link(e, root, 100 + i, leaf), 0);
        assert_int_equal(mock_map(e, leaf, 1, 5000), 0);
    }
    audit(e);
    assert_int_equal(pgm_pool_reserve(pool, 50), 0);
    audit(e);
    env_free(e);
}

/*
 * Allocation failure at every point of a pool script (reserve, links,
 * maps, eviction): each failure is -ENOMEM with a consistent pool, and the
 * pool releases everything at destroy.
 */
static bool
script_step(struct env *e, int op, int64_t *enomem)
{
    struct pgm_pool *pool = e->pool;
    int rc = pgm_pool_reserve(pool, 2);
    if (rc) {
        assert_int_equal(rc, -ENOMEM);
        (*enomem)++;
        audit(e);
        return false;
    }
    struct pgm_shadow_page *root = pgm_pool_lookup(pool, 1, role(4));
    if (!root) {
        root = pgm_pool_alloc(pool, 1, role(4));
        assert_non_null(root);
        assert_int_equal(pgm_pool_pin(pool, root), 1);
    }
    struct pgm_shadow_page *leaf = pgm_pool_alloc(pool, 100 + (uint64_t)op, role(1));
    assert_non_null(leaf);
    rc = mock_link(e, root, (uint32_t)op % 512, leaf);
    if (rc == 0) {
        for (uint32_t j = 0; j < 12 && rc == 0; j++)
            rc = mock_map(e, leaf, j, 7000 + ((uint64_t)op + j) % 40);
    }
    if (rc) {
        assert_int_equal(rc, -ENOMEM);
        (*enomem)++;
        audit(e);
        /* Undo the half-built leaf as the engine would. */
        mock_zap(e, leaf);
        assert_int_equal(pgm_pool_free(pool, leaf), 0);
    }
    return true;
}

static void
test_allocation_failures(void **state)
{
    (void)state;
    int64_t points = 0, enomem = 0;
    for (int mode = 0; mode < 2; mode++) {
        for (int64_t n = 0;; n++) {
            struct env *e = env_new(1, 1, 1024);
            int64_t before = e->fa.calls;
            if (mode == 0)
                e->fa.fail_at = before + n;
            else
                e->fa.fail_from = before + n;
            int rc = pgm_pool_create(e->vm, &e->pool);
            if (rc == 0) {
                pgm_pool_set_evict_ops(e->pool, &mock_ops, e);
                e->mock_unlinks = true;
                /* 150 leaves through a 72-page pool: eviction runs too.
                 * The root entry slot of a leaf is reused once it is evicted. */
                for (int op = 0; op < 150; op++) {
                    struct pgm_shadow_page *root = pgm_pool_lookup(e->pool, 1, role(4));
                    if (root && entries(root)[op % 512])
                        continue;
                    script_step(e, op, &enomem);
                }
                audit(e);
            } else {
                assert_int_equal(rc, -ENOMEM);
            }
            bool done = e->fa.failures == 0;
            e->fa.fail_at = e->fa.fail_from = -1;
            env_free(e);   /* checks backend pages and live allocations */
            points++;
            if (done)
                break;
        }
    }
    assert_true(points > 20);
    assert_true(enomem > 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_create_allocation_failures),
        cmocka_unit_test(test_lookup_many),
        cmocka_unit_test(test_role_distinct),
        cmocka_unit_test(test_gfn_iteration_and_count),
        cmocka_unit_test(test_lru_eviction_order),
        cmocka_unit_test(test_pinned_never_evicted),
        cmocka_unit_test(test_reserve_then_alloc_random),
        cmocka_unit_test(test_bugs_return_errors),
        cmocka_unit_test(test_backend_out_of_memory),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_for_each_page),
        cmocka_unit_test(test_evict_unlinks),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
