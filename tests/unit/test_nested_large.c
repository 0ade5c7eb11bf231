/* SPDX-License-Identifier: MIT */
/*
 * The nested engine's large pages (2 MiB, 1 GiB: install, split by a
 * handler, re-merge on deregistration, the 1 GiB "fully touched" memory
 * bound), dirty logging on nested tables (write-protect rounds and EPT
 * D-bit rounds against a reference set), and allocation failure at every
 * allocation point. Entries are judged by the hardware walk of
 * tests/unit/nested_env.h; pgm_audit after every step.
 */
#include <errno.h>
#include <stdlib.h>

#include "tests/unit/nested_env.h"

#define GIB (1ull << 30)
#define MIB (1ull << 20)

/* ---- 2 MiB: install, split, merge ---- */

static enum pgm_fault_result
touch(struct nenv *e, pgm_gpa_t gpa, uint32_t value)
{
    return hw_access(e, gpa, true, &value, false);
}

static void
large_2m(enum pgm_paging_hw fmt)
{
    struct nenv e;
    assert_int_equal(nenv_create(&e, fmt, PGM_NESTED_LARGE_2M, true, 0), 0);
    assert_int_equal(pgm_phys_add_ram(e.vm, 0, 64 * MIB), 0);
    const pgm_gpa_t win = 4 * MIB;
    assert_int_equal(touch(&e, win + 0x1234, 1), PGM_FAULT_RESUME);
    struct hw_walk w = hw_walk(&e, win + 0x1ff000, PGM_ACCESS_WRITE);
    assert_int_equal(w.res, HW_OK);
    assert_int_equal(w.leaf_level, 2);              /* one 2 MiB leaf */
    struct pgm_stats s = nstats(&e);
    assert_int_equal(s.nested_large_maps, 1);
    assert_int_equal(s.nested_faults, 1);
    assert_int_equal(s.nested_table_pages, 3);      /* PML4, PDPT, PD */
    struct pgm_phys_info pi;
    pgm_phys_info(e.vm, &pi);
    assert_int_equal(pi.allocated_pages, 512);      /* the whole window is the guest's now */
    audit_ok(&e);
    /* A read of an untouched window maps the zero page, 4 KiB. */
    uint32_t v = 9;
    assert_int_equal(hw_access(&e, 8 * MIB, false, &v, false), PGM_FAULT_RESUME);
    assert_int_equal(v, 0);
    assert_int_equal(hw_walk(&e, 8 * MIB, 0).leaf_level, 1);
    audit_ok(&e);

    /* A handler on one page inside the large page splits it. */
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = win + 0x5000,
                                  .size = 0x1000, .fn = NULL };
    h.fn = (pgm_phys_handler_fn)(void (*)(void))abort; /* never called: no emulation here */
    uint64_t before = g_flush.requests;
    assert_int_equal(pgm_handler_register(e.vm, &h), 0);
    assert_int_equal(g_flush.requests - before, 1); /* split + narrowing: one request */
    assert_int_equal(g_flush.last_addr, 0);         /* scope ALL */
    s = nstats(&e);
    assert_int_equal(s.nested_splits, 1);
    audit_ok(&e);
    assert_int_equal(hw_walk(&e, win + 0x5000, PGM_ACCESS_WRITE).res, HW_VIOLATION);
    w = hw_walk(&e, win + 0x6000, PGM_ACCESS_WRITE);
    assert_int_equal(w.res, HW_OK);
    assert_int_equal(w.leaf_level, 1);
    /* The split kept every other page's frame: the data written before is there. */
    v = 0;
    assert_int_equal(hw_access(&e, win + 0x1234, false, &v, false), PGM_FAULT_RESUME);
    assert_int_equal(v, 1);
    assert_int_equal(nstats(&e).nested_faults, s.nested_faults);
    /* Deregistration re-merges the window. */
    assert_int_equal(pgm_handler_deregister(e.vm, win + 0x5000), 0);
    s = nstats(&e);
    assert_int_equal(s.nested_merges, 1);
    assert_int_equal(s.nested_table_pages, 4);      /* 3 + the zero-page PT at 8 MiB */
    w = hw_walk(&e, win + 0x5000, PGM_ACCESS_WRITE);
    assert_int_equal(w.res, HW_OK);
    assert_int_equal(w.leaf_level, 2);
    audit_ok(&e);
    nenv_destroy(&e);
}

static void
test_large_2m(void **state)
{
    (void)state;
    large_2m(PGM_PAGING_EPT);
    large_2m(PGM_PAGING_NPT);
}

/* ---- 1 GiB: fully touched, the table-page bound; split twice ---- */

static void
large_1g(enum pgm_paging_hw fmt, uint32_t flags)
{
    struct nenv e;
    assert_int_equal(nenv_create(&e, fmt, flags, true, 0), 0);
    /* A small block first: the 1 GiB one is not the backend's first (alignment). */
    assert_int_equal(pgm_phys_add_ram(e.vm, 0, 16 * MIB), 0);
    assert_int_equal(pgm_phys_add_ram(e.vm, GIB, GIB), 0);
    for (pgm_gpa_t a = GIB; a < 2 * GIB; a += 0x1000)
        assert_int_equal(touch(&e, a + 8, (uint32_t)a), PGM_FAULT_RESUME);
    struct pgm_stats s = nstats(&e);
    bool one_g = (flags & PGM_NESTED_LARGE_1G) &&
                 (fmt == PGM_PAGING_EPT || (flags & PGM_NESTED_NPT_GBPAGES));
    /* Upper levels: PML4 + PDPT. Per GiB: 0 with a 1 GiB leaf, 1 PD with 2 MiB. */
    print_message("# %s, %s: %llu nested table pages for 1 GiB fully touched, %llu faults\n",
                  fmt == PGM_PAGING_EPT ? "EPT" : "NPT", one_g ? "1 GiB pages" : "2 MiB pages",
                  (unsigned long long)s.nested_table_pages, (unsigned long long)s.nested_faults);
    assert_true(s.nested_table_pages <= 2 + 2);
    assert_int_equal(s.nested_table_pages, one_g ? 2 : 3);
    assert_int_equal(s.nested_faults, one_g ? 1 : 512);
    assert_int_equal(hw_walk(&e, GIB + 0x12345000, 0).leaf_level, one_g ? 3 : 2);
    uint32_t v;
    assert_int_equal(pgm_phys_read(e.vm, GIB + 0x12345008, &v, 4), 0);
    assert_int_equal(v, (uint32_t)(GIB + 0x12345000));
    audit_ok(&e);
    if (one_g) {
        /* A handler in the middle splits 1 GiB -> 2 MiB -> 4 KiB. */
        struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = GIB + 0x12345000,
                                      .size = 0x1000,
                                      .fn = (pgm_phys_handler_fn)(void (*)(void))abort };
        assert_int_equal(pgm_handler_register(e.vm, &h), 0);
        s = nstats(&e);
        assert_int_equal(s.nested_splits, 2);
        assert_int_equal(s.nested_table_pages, 4);
        assert_int_equal(hw_walk(&e, GIB + 0x12345000, PGM_ACCESS_WRITE).res, HW_VIOLATION);
        assert_int_equal(hw_walk(&e, GIB + 0x12346000, PGM_ACCESS_WRITE).leaf_level, 1);
        assert_int_equal(hw_walk(&e, GIB + 0x12600000, PGM_ACCESS_WRITE).leaf_level, 2);
        audit_ok(&e);
        assert_int_equal(pgm_handler_deregister(e.vm, GIB + 0x12345000), 0);
        s = nstats(&e);
        assert_int_equal(s.nested_merges, 1);       /* straight back to one 1 GiB leaf */
        assert_int_equal(s.nested_table_pages, 2);
        audit_ok(&e);
    }
    nenv_destroy(&e);
}

static void
test_large_1g(void **state)
{
    (void)state;
    large_1g(PGM_PAGING_EPT, PGM_NESTED_LARGE_2M | PGM_NESTED_LARGE_1G);
    large_1g(PGM_PAGING_NPT, PGM_NESTED_LARGE_2M | PGM_NESTED_LARGE_1G | PGM_NESTED_NPT_GBPAGES);
    large_1g(PGM_PAGING_EPT, PGM_NESTED_LARGE_2M);
    /* NPT without gbpages: 1 GiB asked for but not possible -> 2 MiB. */
    large_1g(PGM_PAGING_NPT, PGM_NESTED_LARGE_2M | PGM_NESTED_LARGE_1G);
}

/* Page-by-page RAM (no block) never gets large leaves. */
static void
test_large_needs_block(void **state)
{
    (void)state;
    struct nenv e;
    assert_int_equal(nenv_create(&e, PGM_PAGING_EPT, PGM_NESTED_LARGE_2M, false, 0), 0);
    assert_int_equal(pgm_phys_add_ram(e.vm, 0, 8 * MIB), 0);
    assert_int_equal(touch(&e, 2 * MIB, 1), PGM_FAULT_RESUME);
    assert_int_equal(hw_walk(&e, 2 * MIB, 0).leaf_level, 1);
    assert_int_equal(nstats(&e).nested_large_maps, 0);
    audit_ok(&e);
    nenv_destroy(&e);
}

/* ---- dirty logging ---- */

#define LOG_GPA   (2 * MIB)
#define LOG_PAGES 1024u

static void
dirty_rounds(enum pgm_paging_hw fmt, uint32_t flags)
{
    struct nenv e;
    assert_int_equal(nenv_create(&e, fmt, flags, true, 0), 0);
    assert_int_equal(pgm_phys_add_ram(e.vm, 0, 16 * MIB), 0);
    bool dbit = flags & PGM_NESTED_EPT_AD;
    /* Some pages mapped (2 MiB leaves where allowed) before the log starts. */
    for (unsigned i = 0; i < LOG_PAGES; i += 97)
        assert_int_equal(touch(&e, LOG_GPA + i * 0x1000ull, 1), PGM_FAULT_RESUME);
    assert_int_equal(pgm_dirty_log_start(e.vm, LOG_GPA, LOG_PAGES * 0x1000ull), 0);
    assert_int_equal(pgm_handler_state(e.vm, LOG_GPA),
                     dbit ? PGM_HANDLER_NONE : PGM_HANDLER_WRITE);
    audit_ok(&e);
    srand(7);
    uint64_t ref[LOG_PAGES / 64], got[LOG_PAGES / 64];
    uint64_t cb_before = nstats(&e).handler_calls;
    for (int round = 0; round < 6; round++) {
        memset(ref, 0, sizeof(ref));
        unsigned writes = 1 + (unsigned)rand() % 200;
        for (unsigned k = 0; k < writes; k++) {
            unsigned page = (unsigned)rand() % LOG_PAGES;
            uint32_t v = round * 1000 + k;
            ref[page / 64] |= 1ull << (page % 64);
            /* Guest writes: emulated `mov` when the page is write-protected. */
            enum pgm_fault_result r =
                hw_access(&e, LOG_GPA + page * 0x1000ull + (k % 1000) * 4, true, &v, true);
            assert_true(r == PGM_FAULT_RESUME || r == PGM_FAULT_EMULATED);
        }
        /* A VMM write counts too. */
        unsigned vp = (unsigned)rand() % LOG_PAGES;
        uint32_t x = 1;
        assert_int_equal(pgm_phys_write(e.vm, LOG_GPA + vp * 0x1000ull, &x, 4), 0);
        ref[vp / 64] |= 1ull << (vp % 64);
        audit_ok(&e);
        uint64_t flushes = g_flush.requests;
        assert_int_equal(pgm_dirty_log_get_and_clear(e.vm, LOG_GPA, got), 0);
        assert_int_equal(g_flush.requests - flushes, 1); /* one batched flush per harvest */
        for (unsigned wd = 0; wd < LOG_PAGES / 64; wd++)
            assert_int_equal(got[wd], ref[wd]);
        audit_ok(&e);
        /* Every page logged is write-protected again (WP) or has D clear (D-bit). */
        for (unsigned p = 0; p < LOG_PAGES; p++) {
            struct hw_walk w = hw_walk(&e, LOG_GPA + p * 0x1000ull, 0);
            if (w.res != HW_OK)
                continue;
            assert_int_equal(w.leaf_level, 1);
            if (dbit)
                assert_false(w.leaf & PGM_EPT_D);
            else
                assert_false(w.writable && (ref[p / 64] >> (p % 64) & 1));
        }
    }
    /* No guest write was emulated: a WP log claims the page at the fault. */
    assert_int_equal(nstats(&e).nested_emulations, 0);
    if (dbit)
        assert_int_equal(nstats(&e).handler_calls, cb_before); /* no callback at all */
    /* Nothing written: nothing reported. */
    assert_int_equal(pgm_dirty_log_get_and_clear(e.vm, LOG_GPA, got), 0);
    for (unsigned wd = 0; wd < LOG_PAGES / 64; wd++)
        assert_int_equal(got[wd], 0);
    assert_int_equal(pgm_dirty_log_stop(e.vm, LOG_GPA), 0);
    audit_ok(&e);
    nenv_destroy(&e);
}

static void
test_dirty_wp(void **state)
{
    (void)state;
    dirty_rounds(PGM_PAGING_EPT, PGM_NESTED_LARGE_2M);
    dirty_rounds(PGM_PAGING_NPT, PGM_NESTED_LARGE_2M);
}

static void
test_dirty_dbit(void **state)
{
    (void)state;
    dirty_rounds(PGM_PAGING_EPT, PGM_NESTED_EPT_AD | PGM_NESTED_LARGE_2M);
    dirty_rounds(PGM_PAGING_EPT, PGM_NESTED_EPT_AD);
}

/* ---- allocation failure at every allocation point ---- */

struct step_result {
    int failures;
};

/* The scenario; each step either works or fails with -ENOMEM, audit clean either way. */
static void
scenario(struct nenv *e, struct step_result *res)
{
    static const struct {
        pgm_gpa_t gpa;
        bool write;
    } acc[] = {
        { 0x3000, false }, { 0x3000, true }, { 4 * MIB + 0x10, true }, { 0x200000 - 8, true },
        { 6 * MIB, false }, { 0xfee00000, true },
    };
    for (unsigned i = 0; i < sizeof(acc) / sizeof(acc[0]); i++) {
        uint32_t v = 0x100 + i;
        if (acc[i].gpa == 0xfee00000) {
            static const uint8_t st[2] = { 0x89, 0x03 };
            int wr = pgm_phys_write(e->vm, CODE_GPA, st, 2);
            if (wr == -ENOMEM) {
                res->failures++;
                continue;
            }
            assert_int_equal(wr, 0);
            e->regs.rip = CODE_GPA;
            e->regs.gpr[PGM_RBX] = acc[i].gpa;
            e->regs.gpr[PGM_RAX] = v;
        }
        int rc = pgm_nested_fault(e->vcpu, acc[i].gpa, acc[i].write ? PGM_ACCESS_WRITE : 0, NULL,
                                  acc[i].gpa == 0xfee00000 ? &e->regs : NULL, &e->out);
        if (rc == -ENOMEM)
            res->failures++;
        else
            assert_int_equal(rc, 0);
        audit_ok(e);
    }
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = 4 * MIB + 0x3000,
                                  .size = 0x1000,
                                  .fn = (pgm_phys_handler_fn)(void (*)(void))abort };
    int rc = pgm_handler_register(e->vm, &h);
    if (rc == -ENOMEM)
        res->failures++;
    else
        assert_true(rc == 0 || rc == -EEXIST);
    audit_ok(e);
    rc = pgm_handler_deregister(e->vm, 4 * MIB + 0x3000);
    if (rc == -ENOMEM)
        res->failures++;
    else
        assert_true(rc == 0 || rc == -ENOENT);
    audit_ok(e);
}

/*
 * One run: VM, RAM, MMIO, the scenario; with allocation @k failing (backend
 * or host allocator; -1: none). Checks -ENOMEM-or-success everywhere, audit
 * clean, no leak, and that the scenario completes once injection is off.
 * Returns the allocations the run made (backend or host).
 */
static int64_t
run_with_failure(enum pgm_paging_hw fmt, bool backend, int64_t k)
{
    struct nenv e;
    assert_int_equal(nenv_create(&e, fmt, PGM_NESTED_LARGE_2M, true, 0), 0);
    pgm_vm_destroy(e.vm);
    e.vm = NULL;
    fail_alloc_reset(&e.fa);
    g_backend_allocs = 0;
    if (k >= 0 && backend)
        pgm_soft_backend_fail_after(e.sb, k);
    else if (k >= 0)
        e.fa.fail_at = k;
    int rc = nenv_create_vm(&e);
    if (rc == 0)
        rc = pgm_phys_add_ram(e.vm, 0, 16 * MIB);
    if (rc == 0)
        rc = pgm_phys_add_mmio(e.vm, 0xfee00000, 0x1000);
    struct step_result res = { 0 };
    if (rc == 0)
        scenario(&e, &res);
    else
        assert_int_equal(rc, -ENOMEM);
    int64_t made = backend ? (int64_t)g_backend_allocs : e.fa.calls;
    if (e.vm) {
        /* Injection off: the same steps complete and the state is whole. */
        pgm_soft_backend_fail_after(e.sb, -1);
        e.fa.fail_at = -1;
        if (pgm_phys_kind_at(e.vm, 0) != PGM_PHYS_RAM)
            assert_int_equal(pgm_phys_add_ram(e.vm, 0, 16 * MIB), 0);
        if (pgm_phys_kind_at(e.vm, 0xfee00000) != PGM_PHYS_MMIO)
            assert_int_equal(pgm_phys_add_mmio(e.vm, 0xfee00000, 0x1000), 0);
        struct step_result again = { 0 };
        scenario(&e, &again);
        assert_int_equal(again.failures, 0);
        assert_int_equal(hw_walk(&e, 0x3000, PGM_ACCESS_WRITE).res, HW_OK);
        assert_int_equal(hw_walk(&e, 4 * MIB + 0x10, PGM_ACCESS_WRITE).res, HW_OK);
        assert_int_equal(hw_walk(&e, 0xfee00000, 0).res, HW_MISCONFIG);
    }
    nenv_destroy(&e);
    return made;
}

static void
alloc_failures(enum pgm_paging_hw fmt, bool backend)
{
    int64_t n = run_with_failure(fmt, backend, -1);
    assert_true(n > 3);
    for (int64_t k = 0; k < n; k++)
        run_with_failure(fmt, backend, k);
    print_message("# %s: each of the %lld %s allocations failed in turn\n",
                  fmt == PGM_PAGING_EPT ? "EPT" : "NPT", (long long)n,
                  backend ? "backend" : "host-allocator");
}

static void
test_alloc_failures(void **state)
{
    (void)state;
    alloc_failures(PGM_PAGING_EPT, true);
    alloc_failures(PGM_PAGING_EPT, false);
    alloc_failures(PGM_PAGING_NPT, true);
    alloc_failures(PGM_PAGING_NPT, false);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_2m),
        cmocka_unit_test(test_large_1g),
        cmocka_unit_test(test_large_needs_block),
        cmocka_unit_test(test_dirty_wp),
        cmocka_unit_test(test_dirty_dbit),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
