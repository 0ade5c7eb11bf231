/* SPDX-License-Identifier: MIT */
/*
 * Reverse maps (src/pool/rmap.c): list shapes, the gfn map and parent lists,
 * checked against a trivial model (a presence array) under random
 * operations, and under allocation failure at every allocation point.
 */
#include <errno.h>
#include <string.h>

#include "src/pool/pool.h"
#include "src/pool/rmap.h"
#include "tests/unit/fail_alloc.h"

/* ---- A deterministic PRNG ------------------------------------------------ */

static uint64_t rng_state;

static void
rng_seed(uint64_t seed)
{
    rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
}

static uint64_t
rng(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static uint32_t
rng_below(uint32_t n)
{
    return (uint32_t)(rng() % n);
}

/* ---- The model ------------------------------------------------------------ */

/*
 * Universe of references: list key k (a gfn number or a child page) x
 * shadow page s x entry slot i. Entry slots map to indices spread over the
 * whole 0..1023 range.
 */
#define NK 256
#define NS 8
#define NI 128

static struct pgm_shadow_page pages[NK];   /* fake shadow pages (parents use all) */

enum kind { KIND_GFN, KIND_PARENT };

struct model {
    enum kind kind;
    struct pgm_rmap *rmap;
    uint8_t present[NK][NS][NI];
    uint32_t count[NK];
    int32_t pos[NK][NS][NI];                 /* index into live[], -1 when absent */
    struct { uint16_t k, s, i; } live[NK * NS * NI];
    uint32_t nlive;
};

static struct model model;   /* large: static, reset per use */

static uint64_t
gfn_of(uint32_t k)
{
    /* Distinct, spread over 40 bits, with bucket collisions likely. */
    return ((uint64_t)k * 0x100000001ull + 0x12345) & ((1ull << 40) - 1);
}

static uint32_t
index_of(uint32_t i)
{
    return i * 8 + (i & 7);
}

static void
model_reset(enum kind kind, struct pgm_rmap *rmap)
{
    memset(&model, 0, sizeof(model));
    memset(model.pos, 0xff, sizeof(model.pos));
    memset(pages, 0, sizeof(pages));
    model.kind = kind;
    model.rmap = rmap;
}

static int
do_add(uint32_t k, uint32_t s, uint32_t i)
{
    if (model.kind == KIND_GFN)
        return pgm_rmap_gfn_add(model.rmap, gfn_of(k), &pages[s], index_of(i));
    return pgm_rmap_parent_add(model.rmap, &pages[k], &pages[s], index_of(i));
}

static int
do_remove(uint32_t k, uint32_t s, uint32_t i)
{
    if (model.kind == KIND_GFN)
        return pgm_rmap_gfn_remove(model.rmap, gfn_of(k), &pages[s], index_of(i));
    return pgm_rmap_parent_remove(model.rmap, &pages[k], &pages[s], index_of(i));
}

static const struct pgm_rmap_list *
list_of(uint32_t k)
{
    if (model.kind == KIND_GFN)
        return pgm_rmap_gfn_list(model.rmap, gfn_of(k));
    return pgm_rmap_parents(&pages[k]);
}

static void
model_set(uint32_t k, uint32_t s, uint32_t i)
{
    model.present[k][s][i] = 1;
    model.count[k]++;
    model.pos[k][s][i] = (int32_t)model.nlive;
    model.live[model.nlive].k = (uint16_t)k;
    model.live[model.nlive].s = (uint16_t)s;
    model.live[model.nlive].i = (uint16_t)i;
    model.nlive++;
}

static void
model_clear(uint32_t k, uint32_t s, uint32_t i)
{
    int32_t p = model.pos[k][s][i];
    model.present[k][s][i] = 0;
    model.count[k]--;
    model.pos[k][s][i] = -1;
    model.nlive--;
    if ((uint32_t)p != model.nlive) {
        model.live[p] = model.live[model.nlive];
        model.pos[model.live[p].k][model.live[p].s][model.live[p].i] = p;
    }
}

/* Add (k, s, i) if absent, through the rmap and, on success, the model. */
static int
step_add(uint32_t k, uint32_t s, uint32_t i)
{
    if (model.present[k][s][i])
        return 0;
    int rc = do_add(k, s, i);
    if (rc == 0)
        model_set(k, s, i);
    return rc;
}

static void
step_remove_random(void)
{
    if (!model.nlive)
        return;
    uint32_t p = rng_below(model.nlive);
    uint32_t k = model.live[p].k, s = model.live[p].s, i = model.live[p].i;
    assert_int_equal(do_remove(k, s, i), 0);
    model_clear(k, s, i);
}

/* The rmap holds exactly the model's references (list k only). */
static void
check_key(uint32_t k)
{
    static uint8_t seen[NS][NI];
    const struct pgm_rmap_list *list = list_of(k);
    if (model.kind == KIND_GFN && model.count[k] == 0) {
        assert_null(list);
        return;
    }
    assert_non_null(list);
    assert_int_equal(pgm_rmap_list_count(list), model.count[k]);
    assert_int_equal(pgm_rmap_list_check(list), 0);
    memset(seen, 0, sizeof(seen));
    struct pgm_rmap_iter it;
    struct pgm_rmap_ref ref;
    uint32_t visited = 0;
    pgm_rmap_for_each(list, it, ref) {
        ptrdiff_t s = ref.sp - pages;
        assert_true(s >= 0 && s < NS);
        assert_int_equal(ref.index % 8, (ref.index / 8) & 7);
        uint32_t i = ref.index / 8;
        assert_true(model.present[k][s][i]);
        assert_false(seen[s][i]);
        seen[s][i] = 1;
        visited++;
    }
    assert_int_equal(visited, model.count[k]);
    if (model.count[k]) {
        assert_true(pgm_rmap_list_first(list, &ref));
        assert_true(pgm_rmap_list_contains(list, ref.sp, ref.index));
    }
}

static void
check_all(void)
{
    uint64_t keys = 0, refs = 0;
    for (uint32_t k = 0; k < NK; k++) {
        check_key(k);
        keys += model.count[k] != 0;
        refs += model.count[k];
    }
    assert_int_equal(pgm_rmap_check(model.rmap), 0);
    if (model.kind == KIND_GFN) {
        assert_int_equal(model.rmap->gfn_count, keys);
        assert_int_equal(model.rmap->gfn_refs, refs);
    }
}

/* ---- Tests ---------------------------------------------------------------- */

static void
test_list_shapes(void **state)
{
    (void)state;
    struct pgm_rmap rm;
    assert_int_equal(pgm_rmap_init(&rm, NULL, 0), 0);
    struct pgm_rmap_list list = { 0 };
    struct pgm_shadow_page sp[3];
    struct pgm_rmap_ref ref;

    assert_false(pgm_rmap_list_first(&list, &ref));
    assert_int_equal(pgm_rmap_list_check(&list), 0);
    /* One reference: inline, no descriptor. */
    assert_int_equal(pgm_rmap_list_add(&rm, &list, &sp[0], 5), 0);
    assert_int_equal(list.count, 1);
    assert_int_equal(rm.descs_live, 0);
    assert_true(pgm_rmap_list_contains(&list, &sp[0], 5));
    assert_false(pgm_rmap_list_contains(&list, &sp[0], 6));
    /* Two to 2 + 7 + 7: descriptors fill at the head. */
    for (uint32_t n = 2; n <= 2 + 2 * PGM_RMAP_DESC_REFS; n++) {
        assert_int_equal(pgm_rmap_list_add(&rm, &list, &sp[1], n), 0);
        assert_int_equal(list.count, n);
        assert_int_equal(pgm_rmap_list_check(&list), 0);
        assert_int_equal(rm.descs_live, (n + PGM_RMAP_DESC_REFS - 1) / PGM_RMAP_DESC_REFS);
    }
    /* Remove down to one: back inline, every descriptor released. */
    for (uint32_t n = 2; n <= 2 + 2 * PGM_RMAP_DESC_REFS; n++) {
        assert_int_equal(pgm_rmap_list_remove(&rm, &list, &sp[1], n), 0);
        assert_int_equal(pgm_rmap_list_check(&list), 0);
    }
    assert_int_equal(list.count, 1);
    assert_int_equal(rm.descs_live, 0);
    assert_true(pgm_rmap_list_first(&list, &ref));
    assert_ptr_equal(ref.sp, &sp[0]);
    assert_int_equal(ref.index, 5);
    assert_int_equal(pgm_rmap_list_remove(&rm, &list, &sp[0], 5), 0);
    assert_int_equal(list.count, 0);
    assert_int_equal(pgm_rmap_list_check(&list), 0);

    /* Clear frees a long chain; removing the inline one of two keeps the other. */
    for (uint32_t n = 0; n < 50; n++)
        assert_int_equal(pgm_rmap_list_add(&rm, &list, &sp[2], n), 0);
    pgm_rmap_list_clear(&rm, &list);
    assert_int_equal(list.count, 0);
    assert_int_equal(rm.descs_live, 0);
    assert_int_equal(pgm_rmap_list_add(&rm, &list, &sp[0], 1), 0);
    assert_int_equal(pgm_rmap_list_add(&rm, &list, &sp[1], 2), 0);
    assert_int_equal(pgm_rmap_list_remove(&rm, &list, &sp[0], 1), 0);
    assert_true(pgm_rmap_list_first(&list, &ref));
    assert_ptr_equal(ref.sp, &sp[1]);
    assert_int_equal(ref.index, 2);
    assert_int_equal(pgm_rmap_list_remove(&rm, &list, &sp[1], 2), 0);
    assert_int_equal(pgm_rmap_check(&rm), 0);
    pgm_rmap_fini(&rm);
}

static void
test_bad_arguments_and_missing(void **state)
{
    (void)state;
    struct pgm_rmap rm;
    assert_int_equal(pgm_rmap_init(&rm, NULL, 100), 0);
    rm.assert_on_bug = false;
    struct pgm_shadow_page sp[2];
    memset(sp, 0, sizeof(sp));
    struct pgm_rmap_list list = { 0 };

    assert_int_equal(pgm_rmap_list_add(&rm, &list, NULL, 0), -EINVAL);
    assert_int_equal(pgm_rmap_list_add(&rm, &list, &sp[0], PGM_RMAP_INDEX_LIMIT), -EINVAL);
    assert_int_equal(pgm_rmap_list_add(&rm, &list, &sp[0], PGM_RMAP_INDEX_LIMIT - 1), 0);
    assert_int_equal(pgm_rmap_gfn_add(&rm, 7, NULL, 0), -EINVAL);
    assert_int_equal(pgm_rmap_gfn_add(&rm, 7, &sp[0], PGM_RMAP_INDEX_LIMIT), -EINVAL);
    assert_int_equal(pgm_rmap_parent_add(&rm, NULL, &sp[0], 0), -EINVAL);
    assert_int_equal(pgm_rmap_parent_add(&rm, &sp[1], NULL, 0), -EINVAL);
    assert_null(pgm_rmap_gfn_list(&rm, 7));

    /* Removing what is not there: -ENOENT, nothing changes, in every shape. */
    assert_int_equal(pgm_rmap_list_remove(&rm, &list, &sp[0], 0), -ENOENT);
    assert_int_equal(pgm_rmap_list_remove(&rm, &list, &sp[1], PGM_RMAP_INDEX_LIMIT - 1), -ENOENT);
    assert_int_equal(list.count, 1);
    for (uint32_t n = 0; n < 20; n++)
        assert_int_equal(pgm_rmap_list_add(&rm, &list, &sp[1], n), 0);
    assert_int_equal(pgm_rmap_list_remove(&rm, &list, &sp[0], 0), -ENOENT);
    assert_int_equal(list.count, 21);
    assert_int_equal(pgm_rmap_list_check(&list), 0);
    struct pgm_rmap_list empty = { 0 };
    assert_int_equal(pgm_rmap_list_remove(&rm, &empty, &sp[0], 0), -ENOENT);

    assert_int_equal(pgm_rmap_gfn_remove(&rm, 7, &sp[0], 0), -ENOENT);
    assert_int_equal(pgm_rmap_gfn_add(&rm, 7, &sp[0], 3), 0);
    assert_int_equal(pgm_rmap_gfn_remove(&rm, 7, &sp[0], 4), -ENOENT);
    assert_int_equal(pgm_rmap_gfn_remove(&rm, 8, &sp[0], 3), -ENOENT);
    assert_int_equal(pgm_rmap_gfn_count(&rm, 7), 1);
    assert_int_equal(pgm_rmap_parent_remove(&rm, &sp[1], &sp[0], 0), -ENOENT);
    assert_int_equal(pgm_rmap_parent_remove(&rm, NULL, &sp[0], 0), -EINVAL);
    assert_int_equal(pgm_rmap_check(&rm), 0);

    pgm_rmap_list_clear(&rm, &list);
    pgm_rmap_fini(&rm);
}

/* Random adds and removes over 256 gfns, model-checked. */
static void
test_gfn_random(void **state)
{
    (void)state;
    struct pgm_rmap rm;
    assert_int_equal(pgm_rmap_init(&rm, NULL, 0), 0);
    model_reset(KIND_GFN, &rm);
    rng_seed(1);
    for (int op = 0; op < 40000; op++) {
        /* Three phases: grow, churn, shrink, so lists get long and short. */
        uint32_t add_pct = op < 15000 ? 80 : op < 30000 ? 50 : 10;
        if (rng_below(100) < add_pct) {
            /* Skewed keys: a few hot gfns collect hundreds of references. */
            uint32_t k = rng_below(4) == 0 ? rng_below(4) : rng_below(NK);
            assert_int_equal(step_add(k, rng_below(NS), rng_below(NI)), 0);
        } else {
            step_remove_random();
        }
        if (op % 2000 == 0)
            check_all();
    }
    check_all();
    while (model.nlive)
        step_remove_random();
    check_all();
    assert_int_equal(rm.gfn_count, 0);
    assert_int_equal(rm.descs_live, 0);
    pgm_rmap_fini(&rm);
}

/* One gfn, thousands of references, added and removed in random orders. */
static void
test_gfn_one_long_list(void **state)
{
    (void)state;
    struct pgm_rmap rm;
    assert_int_equal(pgm_rmap_init(&rm, NULL, 0), 0);
    model_reset(KIND_GFN, &rm);
    rng_seed(2);
    static uint32_t order[NS * NI];
    for (uint32_t n = 0; n < NS * NI; n++)
        order[n] = n;
    for (uint32_t n = NS * NI - 1; n > 0; n--) {
        uint32_t j = rng_below(n + 1), t = order[n];
        order[n] = order[j];
        order[j] = t;
    }
    for (uint32_t n = 0; n < NS * NI; n++) {
        assert_int_equal(step_add(3, order[n] / NI, order[n] % NI), 0);
        if (n % 256 == 0)
            check_key(3);
    }
    check_all();
    assert_int_equal(pgm_rmap_gfn_count(&rm, gfn_of(3)), NS * NI);
    for (uint32_t n = 0; n < NS * NI; n++) {
        step_remove_random();
        if (n % 256 == 0)
            check_key(3);
    }
    check_all();
    assert_null(pgm_rmap_gfn_list(&rm, gfn_of(3)));
    assert_int_equal(rm.descs_live, 0);
    pgm_rmap_fini(&rm);
}

/* Many distinct gfns: the table grows; every gfn stays findable. */
static void
test_gfn_table_growth(void **state)
{
    (void)state;
    struct pgm_rmap rm;
    assert_int_equal(pgm_rmap_init(&rm, NULL, 0), 0);
    struct pgm_shadow_page sp;
    const uint32_t n = 20000;
    assert_int_equal(rm.bucket_mask + 1, 64);
    rng_seed(3);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(pgm_rmap_gfn_add(&rm, (uint64_t)i * 0x1001 + 77, &sp, i % 512), 0);
    assert_true(rm.bucket_mask + 1 >= n / 2);
    assert_int_equal(rm.gfn_count, n);
    assert_int_equal(pgm_rmap_check(&rm), 0);
    for (uint32_t i = 0; i < n; i++) {
        struct pgm_rmap_ref ref;
        assert_true(pgm_rmap_gfn_first(&rm, (uint64_t)i * 0x1001 + 77, &ref));
        assert_ptr_equal(ref.sp, &sp);
        assert_int_equal(ref.index, i % 512);
        assert_int_equal(pgm_rmap_gfn_count(&rm, (uint64_t)i * 0x1001 + 78), 0);
    }
    /* Remove-all loop through first(), as the engine will write it. */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t gfn = (uint64_t)i * 0x1001 + 77;
        struct pgm_rmap_ref ref;
        while (pgm_rmap_gfn_first(&rm, gfn, &ref))
            assert_int_equal(pgm_rmap_gfn_remove(&rm, gfn, ref.sp, ref.index), 0);
    }
    assert_int_equal(rm.gfn_count, 0);
    assert_int_equal(pgm_rmap_check(&rm), 0);
    pgm_rmap_fini(&rm);
}

/* Parent lists: child page -> (parent, index), model-checked. */
static void
test_parents_random(void **state)
{
    (void)state;
    struct pgm_rmap rm;
    assert_int_equal(pgm_rmap_init(&rm, NULL, 0), 0);
    model_reset(KIND_PARENT, &rm);
    rng_seed(4);
    for (int op = 0; op < 20000; op++) {
        uint32_t add_pct = op < 10000 ? 70 : 20;
        if (rng_below(100) < add_pct)
            assert_int_equal(step_add(rng_below(NK), rng_below(NS), rng_below(NI)), 0);
        else
            step_remove_random();
        if (op % 2000 == 0)
            check_all();
    }
    check_all();
    while (model.nlive)
        step_remove_random();
    check_all();
    assert_int_equal(rm.descs_live, 0);
    pgm_rmap_fini(&rm);
}

/* After pgm_rmap_reserve(n), n adds succeed with the allocator failing everything. */
static void
test_reserve(void **state)
{
    (void)state;
    struct fail_alloc fa;
    fail_alloc_reset(&fa);
    struct pgm_allocator hooks = fail_alloc_hooks(&fa);
    struct pgm_rmap rm;
    assert_int_equal(pgm_rmap_init(&rm, &hooks, 0), 0);
    struct pgm_shadow_page sp[4];
    memset(sp, 0, sizeof(sp));

    assert_int_equal(pgm_rmap_reserve(&rm, 20), 0);
    fa.fail_from = fa.calls;
    /* 21 adds, 16 of which need a new gfn node or a new descriptor. */
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(pgm_rmap_gfn_add(&rm, 1000 + i, &sp[0], 0), 0);    /* nodes */
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(pgm_rmap_gfn_add(&rm, 1000 + i, &sp[1], 0), 0);    /* 1 -> 2 */
    assert_int_equal(pgm_rmap_parent_add(&rm, &sp[2], &sp[0], 0), 0);
    for (uint32_t i = 1; i < 5; i++)
        assert_int_equal(pgm_rmap_parent_add(&rm, &sp[2], &sp[0], i * 7), 0);
    assert_int_equal(pgm_rmap_gfn_add(&rm, 1000, &sp[2], 0), 0);   /* fits in its head */
    assert_int_equal(rm.spare_node_count, 10);
    assert_int_equal(rm.spare_desc_count, 14);
    assert_int_equal(pgm_rmap_check(&rm), 0);
    assert_int_equal(pgm_rmap_reserve(&rm, 30), -ENOMEM);
    assert_int_equal(pgm_rmap_check(&rm), 0);

    fa.fail_from = -1;
    for (uint32_t i = 0; i < 10; i++) {
        struct pgm_rmap_ref ref;
        while (pgm_rmap_gfn_first(&rm, 1000 + i, &ref))
            assert_int_equal(pgm_rmap_gfn_remove(&rm, 1000 + i, ref.sp, ref.index), 0);
    }
    pgm_rmap_list_clear(&rm, &sp[2].parents);
    pgm_rmap_fini(&rm);
    assert_int_equal(fa.live, 0);
}

/*
 * A fixed script of operations, run once per allocation point with that
 * allocation failing (and once with it and all later ones failing): every
 * failure is -ENOMEM with the references exactly as before, and nothing
 * leaks.
 */
static void
run_script(enum kind kind, struct pgm_rmap *rm, int64_t *enomem)
{
    model_reset(kind, rm);
    rng_seed(5);
    for (int op = 0; op < 700; op++) {
        uint32_t r = rng_below(100);
        int rc = 0;
        if (r < 3) {
            rc = pgm_rmap_reserve(rm, 1 + rng_below(4));
        } else if (r < 70) {
            uint32_t k = rng_below(3) == 0 ? rng_below(3) : rng_below(200);
            rc = step_add(k, rng_below(NS), rng_below(NI));
        } else {
            step_remove_random();
        }
        if (rc) {
            assert_int_equal(rc, -ENOMEM);
            (*enomem)++;
            check_all();
        }
    }
    check_all();
    while (model.nlive)
        step_remove_random();
    check_all();
}

static void
test_allocation_failures(void **state)
{
    (void)state;
    for (int kind = KIND_GFN; kind <= KIND_PARENT; kind++) {
        for (int mode = 0; mode < 2; mode++) {
            bool done = false;
            int64_t points = 0, enomem = 0;
            for (int64_t n = 0; !done; n++) {
                struct fail_alloc fa;
                fail_alloc_reset(&fa);
                if (mode == 0)
                    fa.fail_at = n;
                else
                    fa.fail_from = n;
                struct pgm_allocator hooks = fail_alloc_hooks(&fa);
                struct pgm_rmap rm;
                int rc = pgm_rmap_init(&rm, &hooks, 16);
                if (rc == 0) {
                    run_script((enum kind)kind, &rm, &enomem);
                    pgm_rmap_fini(&rm);
                } else {
                    assert_int_equal(rc, -ENOMEM);
                }
                assert_int_equal(fa.live, 0);
                done = fa.failures == 0;   /* the script ended before call n */
                points++;
            }
            /* The script allocates often enough to be a real test. */
            assert_true(points > 30);
            assert_true(enomem > points / 2);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_shapes),
        cmocka_unit_test(test_bad_arguments_and_missing),
        cmocka_unit_test(test_gfn_random),
        cmocka_unit_test(test_gfn_one_long_list),
        cmocka_unit_test(test_gfn_table_growth),
        cmocka_unit_test(test_parents_random),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
