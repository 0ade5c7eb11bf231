/* SPDX-License-Identifier: MIT */
/*
 * The nested engine end to end on the soft MMU's two-dimensional walk: a
 * 4-level guest runs on libpgm's EPT / NPT tables, every access translated
 * by the soft MMU (which caches guest-physical and combined mappings until
 * the backend's flush op drops them), nested exits fed back through
 * pgm_nested_fault. A flush libpgm forgot would show as a stale translation:
 * after a WRITE handler is registered a cached writable mapping must be
 * gone; after a dirty-log harvest the next write must set D again.
 *
 * Guest layout: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000 (VA 0..2 MiB
 * identity for PT entries written below), 2 MiB page VA 0x200000 -> GPA
 * 0x400000 (PD[1], PS).
 */
#include <errno.h>
#include <stdlib.h>

#include "tests/unit/nested_env.h"

static void
guest_tables(struct nenv *e)
{
    uint64_t v[][2] = { { 0x1000, 0x2007 }, { 0x2000, 0x3007 }, { 0x3000, 0x4007 },
                        { 0x3008, 0x400000 | 0x87 } };
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(pgm_phys_write(e->vm, v[i][0], &v[i][1], 8), 0);
    for (uint64_t p = 0x10; p < 0x40; p++) { /* VA p*4K -> GPA p*4K */
        uint64_t pte = (p << 12) | 7;
        assert_int_equal(pgm_phys_write(e->vm, 0x4000 + 8 * p, &pte, 8), 0);
    }
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG, .cr4 = PGM_CR4_PAE,
                                .efer = PGM_EFER_LME, .cr3 = 0x1000 };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    struct pgm_soft_cpu cpu = { .format = PGM_MODE_AMD64, .cr3 = 0x1000, .nested = e->fmt,
                                .nested_root = e->ri.root, .nested_levels = e->ri.levels,
                                .ept_ad = e->ri.ept_ad,
                                .nested_maxphyaddr = e->ri.host_maxphyaddr };
    assert_int_equal(pgm_soft_mmu_set_cpu(e->sb, 0, &cpu), 0);
}

/* One translation; nested exits are handed to libpgm until it resolves. */
static struct pgm_soft_mmu_result
soft(struct nenv *e, uint64_t va, uint32_t access, unsigned *exits)
{
    struct pgm_soft_mmu_result r;
    for (int tries = 0; tries < 8; tries++) {
        assert_int_equal(pgm_soft_mmu_translate(e->sb, 0, va, access, &r), 0);
        if (r.status != PGM_SOFT_MMU_NESTED_FAULT && r.status != PGM_SOFT_MMU_NESTED_MISCONFIG)
            return r;
        struct pgm_nested_fault_info info = { 0 };
        uint32_t acc = r.nested_access & (PGM_ACCESS_WRITE | PGM_ACCESS_FETCH);
        if (r.status == PGM_SOFT_MMU_NESTED_MISCONFIG) {
            info.flags = PGM_NESTED_FI_MISCONFIG;
        } else if (e->fmt == PGM_PAGING_EPT) {
            struct pgm_vtx_ept_violation v;
            assert_int_equal(pgm_vtx_decode_ept_violation(r.exit_qual, r.gpa, r.gla, false, &v), 0);
            assert_int_equal(pgm_nested_info_from_ept(&v, &info, &acc), 0);
        } else {
            struct pgm_svm_npf npf;
            assert_int_equal(pgm_svm_decode_npf(r.exit_info1, r.exit_info2, &npf), 0);
            assert_int_equal(pgm_nested_info_from_npf(&npf, &info, &acc), 0);
        }
        if (exits)
            (*exits)++;
        assert_int_equal(pgm_nested_fault(e->vcpu, r.gpa, acc, &info, NULL, &e->out), 0);
        audit_ok(e);
        if (e->out.result != PGM_FAULT_RESUME)
            return r; /* needs emulation: the caller looks at e->out */
    }
    fail_msg("translation of %#llx never settled", (unsigned long long)va);
    return r;
}

static void
end_to_end(enum pgm_paging_hw fmt, uint32_t flags)
{
    struct nenv e;
    assert_int_equal(nenv_create(&e, fmt, flags, true, 0), 0);
    assert_int_equal(pgm_phys_add_ram(e.vm, 0, 16ull << 20), 0);
    guest_tables(&e);

    /* Law 1: a guest write lands in the page backing its GPA. */
    unsigned exits = 0;
    struct pgm_soft_mmu_result r = soft(&e, 0x12345, PGM_ACCESS_WRITE, &exits);
    assert_int_equal(r.status, PGM_SOFT_MMU_OK);
    assert_int_equal(r.gpa, 0x12345);
    assert_true(exits >= 1);
    uint32_t v = 0xfeedbeef, back = 0;
    memcpy(r.ptr, &v, 4);
    assert_int_equal(pgm_phys_read(e.vm, 0x12345, &back, 4), 0);
    assert_int_equal(back, v);
    /* Cached now: the same write hits the TLB. */
    r = soft(&e, 0x12345, PGM_ACCESS_WRITE, NULL);
    assert_int_equal(r.status, PGM_SOFT_MMU_OK);
    assert_true(r.tlb_hit);

    /* Law 3: a WRITE handler must take the cached writable mapping away. */
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = 0x12000, .size = 0x1000,
                                  .fn = (pgm_phys_handler_fn)(void (*)(void))abort };
    assert_int_equal(pgm_handler_register(e.vm, &h), 0);
    audit_ok(&e);
    r = soft(&e, 0x12345, PGM_ACCESS_WRITE, NULL);
    assert_int_equal(r.status, PGM_SOFT_MMU_NESTED_FAULT);
    assert_int_equal(e.out.result, PGM_FAULT_EXIT); /* emulation needed, no registers */
    assert_int_equal(e.out.exit_gpa, 0x12345);
    r = soft(&e, 0x12345, 0, NULL); /* reads still run */
    assert_int_equal(r.status, PGM_SOFT_MMU_OK);
    assert_int_equal(pgm_handler_deregister(e.vm, 0x12000), 0);
    r = soft(&e, 0x12345, PGM_ACCESS_WRITE, NULL);
    assert_int_equal(r.status, PGM_SOFT_MMU_OK);

    /* A guest 2 MiB page over GPA 0x400000 (a 2 MiB nested leaf when allowed). */
    r = soft(&e, 0x200000 + 0x5008, PGM_ACCESS_WRITE, NULL);
    assert_int_equal(r.status, PGM_SOFT_MMU_OK);
    assert_int_equal(r.gpa, 0x405008);
    memcpy(r.ptr, &v, 4);
    assert_int_equal(pgm_phys_read(e.vm, 0x405008, &back, 4), 0);
    assert_int_equal(back, v);
    h.gpa = 0x406000;
    assert_int_equal(pgm_handler_register(e.vm, &h), 0); /* splits when large */
    r = soft(&e, 0x200000 + 0x6000, PGM_ACCESS_WRITE, NULL);
    assert_int_equal(r.status, PGM_SOFT_MMU_NESTED_FAULT);
    r = soft(&e, 0x200000 + 0x5008, PGM_ACCESS_WRITE, NULL);
    assert_int_equal(r.status, PGM_SOFT_MMU_OK);
    assert_int_equal(pgm_handler_deregister(e.vm, 0x406000), 0);
    audit_ok(&e);

    /* Dirty log rounds through the real walk: each round's writes, no more. */
    assert_int_equal(pgm_dirty_log_start(e.vm, 0x10000, 0x30000), 0);
    uint64_t bm;
    for (int round = 0; round < 3; round++) {
        uint64_t want = 0;
        for (unsigned k = 0; k < 5; k++) {
            unsigned page = (unsigned)(round * 7 + k * 5) % 0x30;
            want |= 1ull << page;
            r = soft(&e, 0x10000 + page * 0x1000ull + 0x10, PGM_ACCESS_WRITE, NULL);
            if (r.status == PGM_SOFT_MMU_NESTED_FAULT) {
                /* Write-protect mode: the write needs emulation; do it through the phys layer. */
                assert_int_equal(e.out.result, PGM_FAULT_EXIT);
                assert_int_equal(pgm_phys_write(e.vm, e.out.exit_gpa, &v, 4), 0);
                continue;
            }
            assert_int_equal(r.status, PGM_SOFT_MMU_OK);
            memcpy(r.ptr, &v, 4);
        }
        assert_int_equal(pgm_dirty_log_get_and_clear(e.vm, 0x10000, &bm), 0);
        /* Page 2 (GPA 0x12000) and the guest's own table pages are outside the log. */
        assert_int_equal(bm, want);
        audit_ok(&e);
    }
    assert_int_equal(pgm_dirty_log_stop(e.vm, 0x10000), 0);

    /* Range removal: a cached mapping into the removed range must go. */
    assert_int_equal(pgm_phys_add_ram(e.vm, 0x2000000, 0x200000), 0);
    uint64_t pde = 0x2000000 | 0x87;
    assert_int_equal(pgm_phys_write(e.vm, 0x3000 + 8 * 16, &pde, 8), 0); /* VA 32 MiB */
    r = soft(&e, 0x2000000, PGM_ACCESS_WRITE, NULL);
    assert_int_equal(r.status, PGM_SOFT_MMU_OK);
    assert_int_equal(pgm_phys_remove(e.vm, 0x2000000), 0);
    audit_ok(&e);
    struct pgm_soft_mmu_result r2;
    assert_int_equal(pgm_soft_mmu_translate(e.sb, 0, 0x2000000, 0, &r2), 0);
    assert_int_equal(r2.status, PGM_SOFT_MMU_NESTED_FAULT);
    nenv_destroy(&e);
}

static void
test_end_to_end(void **state)
{
    (void)state;
    end_to_end(PGM_PAGING_EPT, 0);
    end_to_end(PGM_PAGING_EPT, PGM_NESTED_EPT_AD | PGM_NESTED_LARGE_2M);
    end_to_end(PGM_PAGING_NPT, PGM_NESTED_LARGE_2M);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
