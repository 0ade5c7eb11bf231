/* SPDX-License-Identifier: MIT */
/*
 * A handler state change on one page costs O(mappings of that page) shadow
 * entries, independent of how many shadow pages the pool holds.
 *
 * One target page T is mapped at VA 0x1000 by N address spaces (N = 1, 4,
 * 16), each with its own four guest tables, so each has its own shadow leaf
 * entry for T: exactly N entries map T. The pool (20000 pages) is first
 * filled with FILLER_PTS shadow page tables of a filler address space whose
 * page tables all map another page. Registering, deregistering, moving,
 * re-arming a WRITE handler on T must then touch exactly N entries and ask
 * for one flush per changed page with mappings; turning it off (temp_off)
 * only widens and touches none - with an empty pool and a full one alike.
 * The expected counts come from the layout, not from the engine.
 */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define POOL_PAGES   20000u
#define FILLER_PTS   16000u  /* shadow PTs of the filler (plus its PDs etc.) */
#define RAM_SIZE     (128ull << 20)
#define T_GPA        0x10000ull  /* the page the handlers cover */
#define T2_GPA       0x12000ull  /* where pgm_handler_modify moves the handler */
#define D_GPA        0x11000ull  /* what every filler PT maps */
#define AS_BASE      0x100000ull /* AS i: PML4, PDPT, PD, PT at AS_BASE + i * 0x4000 */
#define F_PML4       0x200000ull
#define F_PDPT       0x201000ull
#define F_PD0        0x202000ull /* filler PDs, one per 512 PTs */
#define F_PT0        0x400000ull /* filler PTs, one frame each */
#define MAX_AS       16u
#define PTE_FLAGS    0x67ull     /* P RW US A D */
#define UPPER_FLAGS  0x27ull     /* P RW US A */

struct env {
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
};

static void
audit(struct env *e)
{
    fixture_audit_vm(e->vm);
}

static void
put(struct env *e, uint64_t gpa, uint64_t v)
{
    fixture_put64(e->vm, gpa, v);
}

static uint64_t
as_root(unsigned i)
{
    return AS_BASE + i * 0x4000ull;
}

static void
env_init(struct env *e)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(pgm_soft_backend_create(1u << 17, &e->sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    cfg.pool_pages = POOL_PAGES;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    assert_int_equal(pgm_vm_create(&cfg, &e->vm), 0);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0, RAM_SIZE), 0);
    e->vcpu = pgm_vcpu_get(e->vm, 0);
    /* N address spaces, each PML4 -> PDPT -> PD -> PT -> T at VA 0x1000. */
    for (unsigned i = 0; i < MAX_AS; i++) {
        uint64_t b = as_root(i);
        put(e, b, (b + 0x1000) | UPPER_FLAGS);
        put(e, b + 0x1000, (b + 0x2000) | UPPER_FLAGS);
        put(e, b + 0x2000, (b + 0x3000) | UPPER_FLAGS);
        put(e, b + 0x3000 + 8, T_GPA | PTE_FLAGS);
    }
    /* The filler: PT j at VA j << 21 (PD j / 512, entry j % 512) maps D. */
    put(e, F_PML4, F_PDPT | UPPER_FLAGS);
    for (unsigned pd = 0; pd * 512 < FILLER_PTS; pd++)
        put(e, F_PDPT + pd * 8, (F_PD0 + pd * 0x1000ull) | UPPER_FLAGS);
    for (unsigned j = 0; j < FILLER_PTS; j++) {
        uint64_t pt = F_PT0 + j * 0x1000ull;
        put(e, F_PD0 + (j / 512) * 0x1000ull + (j % 512) * 8, pt | UPPER_FLAGS);
        put(e, pt, D_GPA | PTE_FLAGS);
    }
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP,
                                .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME | PGM_EFER_NXE,
                                .cr3 = as_root(0) };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
}

static void
env_fini(struct env *e)
{
    fixture_vm_teardown(e->vm, e->sb);
}

static void
guest_access(struct env *e, uint64_t cr3, uint64_t va, uint32_t acc)
{
    uint64_t v = 0;
    struct pgm_fault_out out;
    assert_int_equal(pgm_sync_cr3(e->vcpu, cr3), 0);
    assert_int_equal(pgm_soft_access(e->vcpu, va, acc, &v, 8, &out), 0);
    assert_int_equal(out.result, PGM_FAULT_RESUME);
}

/* Shadow every filler PT: one access through each. */
static void
fill_pool(struct env *e)
{
    for (unsigned j = 0; j < FILLER_PTS; j++)
        guest_access(e, F_PML4, (uint64_t)j << 21, 0);
    struct pgm_stats s;
    pgm_stats(e->vm, &s);
    /* Every filler PT got a shadow page and none was evicted to make room. */
    assert_true(s.pool_misses >= FILLER_PTS);
    assert_int_equal(s.pool_evictions, 0);
}

/* Map T in address spaces 0 .. n-1 (reads: allowed under a WRITE handler). */
static void
map_target(struct env *e, unsigned n, uint64_t va_page)
{
    for (unsigned i = 0; i < n; i++)
        guest_access(e, as_root(i), va_page, 0);
}

static struct pgm_stats
stats(struct env *e)
{
    struct pgm_stats s;
    pgm_stats(e->vm, &s);
    return s;
}

/* Entries touched and flushes issued by @what since @before. */
#define EXPECT_DELTA(before, touched, flushes)                                               \
    do {                                                                                     \
        struct pgm_stats after_ = stats(e);                                                  \
        assert_int_equal(after_.handler_entries_touched - (before).handler_entries_touched,  \
                         (touched));                                                         \
        assert_int_equal(after_.handler_flushes - (before).handler_flushes, (flushes));      \
    } while (0)

static enum pgm_handler_result
nop_handler(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
            enum pgm_access_origin origin, void *user)
{
    (void)vcpu, (void)gpa, (void)buf, (void)size, (void)write, (void)origin, (void)user;
    return PGM_HANDLER_DEFAULT;
}

static void
run_case(unsigned n, bool full_pool)
{
    struct env env, *e = &env;
    env_init(e);
    if (full_pool)
        fill_pool(e);
    audit(e);
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = T_GPA, .size = 0x1000,
                                  .fn = nop_handler };
    struct pgm_stats s;

    /* register: the n leaves mapping T go, one flush */
    map_target(e, n, 0x1000);
    s = stats(e);
    assert_int_equal(pgm_handler_register(e->vm, &h), 0);
    EXPECT_DELTA(s, n, 1);
    audit(e);
    /* registering again with nothing mapped: nothing to touch */
    s = stats(e);
    assert_int_equal(pgm_handler_deregister(e->vm, T_GPA), 0);
    assert_int_equal(pgm_handler_register(e->vm, &h), 0);
    EXPECT_DELTA(s, 0, 0);

    /* deregister with n read-only mappings of T */
    map_target(e, n, 0x1000);
    audit(e);
    s = stats(e);
    assert_int_equal(pgm_handler_deregister(e->vm, T_GPA), 0);
    EXPECT_DELTA(s, n, 1);
    audit(e);

    /* temp_off only widens: nothing touched; a write then maps T writable */
    assert_int_equal(pgm_handler_register(e->vm, &h), 0);
    map_target(e, n, 0x1000);
    s = stats(e);
    assert_int_equal(pgm_handler_temp_off(e->vm, T_GPA), 0);
    EXPECT_DELTA(s, 0, 0);
    for (unsigned i = 0; i < n; i++)
        guest_access(e, as_root(i), 0x1000, PGM_ACCESS_WRITE);
    audit(e);
    /* reset re-arms: the n (now writable) leaves go again */
    s = stats(e);
    assert_int_equal(pgm_handler_reset(e->vm, T_GPA), 0);
    EXPECT_DELTA(s, n, 1);
    audit(e);

    /* modify moves it to T2, which AS 0 maps at VA 0x3000: n + 1 entries */
    put(e, as_root(0) + 0x3000 + 0x18, T2_GPA | PTE_FLAGS);
    map_target(e, n, 0x1000);
    guest_access(e, as_root(0), 0x3000, 0);
    s = stats(e);
    assert_int_equal(pgm_handler_modify(e->vm, T_GPA, T2_GPA, 0x1000), 0);
    EXPECT_DELTA(s, n + 1, 2);
    audit(e);
    assert_int_equal(pgm_handler_deregister(e->vm, T2_GPA), 0);
    put(e, as_root(0) + 0x3000 + 0x18, 0);

    if (full_pool) {
        /* The filler is still there: the pool was never emptied to do this. */
        assert_int_equal(stats(e).pool_evictions, 0);
    }
    print_message("# N=%u pool %s: register/deregister/reset touched %u entries each\n", n,
                  full_pool ? "full" : "empty", n);
    env_fini(e);
}

static void test_n1_empty(void **s) { (void)s; run_case(1, false); }
static void test_n4_empty(void **s) { (void)s; run_case(4, false); }
static void test_n16_empty(void **s) { (void)s; run_case(16, false); }
static void test_n1_full(void **s) { (void)s; run_case(1, true); }
static void test_n4_full(void **s) { (void)s; run_case(4, true); }
static void test_n16_full(void **s) { (void)s; run_case(16, true); }

/* A dirty log's re-arm of one page touches only that page's mappings. */
static void
test_dirty_log_rearm(void **state)
{
    (void)state;
    struct env env, *e = &env;
    env_init(e);
    fill_pool(e);
    assert_int_equal(pgm_dirty_log_start(e->vm, T_GPA, 0x1000), 0);
    for (unsigned i = 0; i < 4; i++)
        guest_access(e, as_root(i), 0x1000, PGM_ACCESS_WRITE);
    map_target(e, 4, 0x1000); /* every address space maps T now */
    audit(e);
    struct pgm_stats s = stats(e);
    uint64_t bm = 0;
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, T_GPA, &bm), 0);
    assert_true(bm == 1);
    EXPECT_DELTA(s, 4, 1);
    audit(e);
    assert_int_equal(pgm_dirty_log_stop(e->vm, T_GPA), 0);
    env_fini(e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_n1_empty),  cmocka_unit_test(test_n4_empty),
        cmocka_unit_test(test_n16_empty), cmocka_unit_test(test_n1_full),
        cmocka_unit_test(test_n4_full),   cmocka_unit_test(test_n16_full),
        cmocka_unit_test(test_dirty_log_rearm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
