/* SPDX-License-Identifier: MIT */
/* VM creation, configuration checks, control-state loads and mode selection. */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define CR0_PE_PG (PGM_CR0_PE | PGM_CR0_PG)

static void
base_config(struct pgm_vm_config *cfg, struct pgm_soft_backend *sb)
{
    pgm_vm_config_init(cfg);
    cfg->backend = pgm_soft_backend_ops();
    cfg->backend_ctx = sb;
}

static void
test_config_validation(void **state)
{
    (void)state;
    struct pgm_soft_backend *sb;
    assert_int_equal(pgm_soft_backend_create(64, &sb), 0);
    struct pgm_vm_config cfg;
    struct pgm_vm *vm = NULL;

    base_config(&cfg, sb);
    assert_int_equal(pgm_vm_create(NULL, &vm), -EINVAL);
    assert_int_equal(pgm_vm_create(&cfg, NULL), -EINVAL);
    cfg.struct_size--;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    base_config(&cfg, sb);
    cfg.reserved[7] = 1;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    base_config(&cfg, sb);
    cfg.features.maxphyaddr = 31;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    cfg.features.maxphyaddr = 53;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    base_config(&cfg, sb);
    cfg.vcpu_count = 0;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    cfg.vcpu_count = PGM_MAX_VCPUS + 1;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    base_config(&cfg, sb);
    cfg.backend = NULL;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    base_config(&cfg, sb);
    cfg.paging = (enum pgm_paging_hw)99; /* no such paging hardware */
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    assert_null(vm);
    base_config(&cfg, sb);
    cfg.paging = PGM_PAGING_EPT; /* nested paging: built (tests/unit/test_nested.c) */
    assert_int_equal(pgm_vm_create(&cfg, &vm), 0);
    pgm_vm_destroy(vm);
    vm = NULL;

    base_config(&cfg, sb);
    cfg.vcpu_count = 4;
    assert_int_equal(pgm_vm_create(&cfg, &vm), 0);
    assert_non_null(pgm_vcpu_get(vm, 3));
    assert_null(pgm_vcpu_get(vm, 4));
    assert_int_equal(pgm_vm_features(vm)->maxphyaddr, 52);
    assert_int_equal(pgm_guest_mode(pgm_vcpu_get(vm, 0)), PGM_MODE_REAL);
    pgm_vm_destroy(vm);
    pgm_vm_destroy(NULL);
    assert_int_equal(pgm_soft_backend_pages_in_use(sb), 0);
    pgm_soft_backend_destroy(sb);
}

/* An allocator that fails the Nth call, to prove every failure path is clean. */
struct failing_alloc {
    int countdown;
    int live;
};

static void *
fa_alloc(void *ctx, size_t size)
{
    struct failing_alloc *fa = ctx;
    if (fa->countdown-- == 0)
        return NULL;
    fa->live++;
    return test_malloc(size);
}

static void
fa_free(void *ctx, void *p)
{
    struct failing_alloc *fa = ctx;
    fa->live--;
    test_free(p);
}

static void
test_allocation_failures(void **state)
{
    (void)state;
    struct pgm_soft_backend *sb;
    assert_int_equal(pgm_soft_backend_create(64, &sb), 0);
    int succeeded_at = -1;
    for (int n = 0; n < 64 && succeeded_at < 0; n++) {
        struct failing_alloc fa = { .countdown = n };
        struct pgm_vm_config cfg;
        base_config(&cfg, sb);
        cfg.allocator = (struct pgm_allocator){ fa_alloc, fa_free, &fa };
        struct pgm_vm *vm = NULL;
        int rc = pgm_vm_create(&cfg, &vm);
        if (rc == 0) {
            rc = pgm_phys_add_ram(vm, 0, 0x10000);
            if (rc == 0)
                succeeded_at = n;
            else
                assert_int_equal(rc, -ENOMEM);
            pgm_vm_destroy(vm);
        } else {
            assert_int_equal(rc, -ENOMEM);
        }
        assert_int_equal(fa.live, 0); /* nothing leaked on any path */
    }
    assert_true(succeeded_at > 0);
    pgm_soft_backend_destroy(sb);
}

static void
test_mode_selection(void **state)
{
    struct fixture *f = *state;
    static const struct {
        uint64_t cr0, cr4, efer;
        enum pgm_guest_mode mode;
    } cases[] = {
        { 0, 0, 0, PGM_MODE_REAL },
        { PGM_CR0_PE, PGM_CR4_PAE, PGM_EFER_LME, PGM_MODE_PROT },
        { CR0_PE_PG, PGM_CR4_PSE, 0, PGM_MODE_32BIT },
        { CR0_PE_PG, PGM_CR4_PAE, 0, PGM_MODE_PAE },
        { CR0_PE_PG, PGM_CR4_PAE | PGM_CR4_LA57, 0, PGM_MODE_PAE }, /* LA57 needs IA-32e */
        { CR0_PE_PG, PGM_CR4_PAE, PGM_EFER_LME, PGM_MODE_AMD64 },
        { CR0_PE_PG, PGM_CR4_PAE | PGM_CR4_LA57, PGM_EFER_LME, PGM_MODE_LA57 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pgm_cpu_state s = { .cr0 = cases[i].cr0, .cr4 = cases[i].cr4,
                                   .efer = cases[i].efer };
        assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
        assert_int_equal(pgm_guest_mode(f->vcpu), cases[i].mode);
        struct pgm_cpu_state back;
        pgm_get_cpu_state(f->vcpu, &back);
        assert_int_equal(!!(back.efer & PGM_EFER_LMA), cases[i].mode >= PGM_MODE_AMD64);
    }
    assert_string_equal(pgm_guest_mode_name(PGM_MODE_LA57), "la57");
    assert_string_equal(pgm_guest_mode_name((enum pgm_guest_mode)99), "invalid");
}

static void
test_state_checks(void **state)
{
    struct fixture *f = *state;
    struct pgm_cpu_state s;
    struct pgm_cpu_state lm = { .cr0 = CR0_PE_PG, .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME };

    s = (struct pgm_cpu_state){ .cr0 = PGM_CR0_PG };
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), PGM_RC_INJECT_GP);
    s = (struct pgm_cpu_state){ .cr0 = CR0_PE_PG, .efer = PGM_EFER_LME }; /* LM without PAE */
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), PGM_RC_INJECT_GP);
    s = (struct pgm_cpu_state){ .cr0 = CR0_PE_PG, .cr4 = PGM_CR4_PAE | PGM_CR4_PCIDE };
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), PGM_RC_INJECT_GP);
    assert_int_equal(pgm_set_cpu_state(f->vcpu, NULL, 0), -EINVAL);
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &lm, 0x80), -EINVAL);
    assert_int_equal(pgm_guest_mode(f->vcpu), PGM_MODE_REAL); /* unchanged by refusals */

    /* Transition rules only with PGM_STATE_GUEST_WRITE. */
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &lm, 0), 0);
    s = lm;
    s.cr4 |= PGM_CR4_LA57;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, PGM_STATE_GUEST_WRITE), PGM_RC_INJECT_GP);
    assert_int_equal(pgm_guest_mode(f->vcpu), PGM_MODE_AMD64);
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    assert_int_equal(pgm_guest_mode(f->vcpu), PGM_MODE_LA57);
    s = lm;
    s.cr3 = 0x1005;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    s.cr4 |= PGM_CR4_PCIDE; /* enabling PCIDE with a nonzero PCID in CR3 */
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, PGM_STATE_GUEST_WRITE), PGM_RC_INJECT_GP);
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0); /* a restore may */
    s = lm;
    s.efer = 0; /* clearing LME while paging: #GP as a guest write */
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &lm, 0), 0);
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, PGM_STATE_GUEST_WRITE), PGM_RC_INJECT_GP);

    struct pgm_stats st;
    pgm_stats(f->vm, &st);
    assert_true(st.cr3_gp >= 5);
}

static void
test_features_gate_cr4(void **state)
{
    (void)state;
    struct pgm_cpu_features feat;
    struct pgm_vm_config tmp;
    pgm_vm_config_init(&tmp);
    feat = tmp.features;
    feat.pku = false;
    feat.smap = false;
    feat.nx = false;
    feat.la57 = false;
    struct fixture *f = fixture_new(&feat);
    struct pgm_cpu_state s = { .cr0 = CR0_PE_PG, .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME };
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    s.cr4 |= PGM_CR4_PKE;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), PGM_RC_INJECT_GP);
    s.cr4 = PGM_CR4_PAE | PGM_CR4_SMAP;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), PGM_RC_INJECT_GP);
    s.cr4 = PGM_CR4_PAE | PGM_CR4_LA57;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), PGM_RC_INJECT_GP);
    s.cr4 = PGM_CR4_PAE;
    s.efer |= PGM_EFER_NXE;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), PGM_RC_INJECT_GP);
    fixture_free(f);
}

static void
test_cr3_loads(void **state)
{
    struct fixture *f = *state;
    struct pgm_cpu_state s = { .cr0 = CR0_PE_PG, .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME };
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    /* IA-32e: bits at or above MAXPHYADDR (52) #GP, bit 63 included without PCIDE */
    assert_int_equal(pgm_sync_cr3(f->vcpu, 1ull << 52), PGM_RC_INJECT_GP);
    assert_int_equal(pgm_sync_cr3(f->vcpu, (1ull << 63) | 0x1000), PGM_RC_INJECT_GP);
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0x1000), 0);
    /* with PCIDE, NOFLUSH is accepted and not stored */
    s.cr4 |= PGM_CR4_PCIDE;
    s.cr3 = 0x1000;
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    assert_int_equal(pgm_sync_cr3(f->vcpu, (1ull << 63) | 0x2007), 0);
    struct pgm_cpu_state back;
    pgm_get_cpu_state(f->vcpu, &back);
    assert_true(back.cr3 == 0x2007);
    assert_int_equal(pgm_sync_cr3(NULL, 0), -EINVAL);

    /* PAE: a present PDPTE with a reserved bit makes the load #GP and changes nothing */
    s = (struct pgm_cpu_state){ .cr0 = CR0_PE_PG, .cr4 = PGM_CR4_PAE, .cr3 = 0x3000 };
    put64(f, 0x3000, 0x5001);
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &s, 0), 0);
    static const uint64_t bad[] = { 1ull << 63, 1ull << 52, 1ull << 62, 1u << 5, 1u << 8,
                                    1u << 1, 1u << 2 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put64(f, 0x4018, 0x6001 | bad[i]);
        assert_int_equal(pgm_sync_cr3(f->vcpu, 0x4000), PGM_RC_INJECT_GP);
        pgm_get_cpu_state(f->vcpu, &back);
        assert_true(back.cr3 == 0x3000);
        /* the same bits in a not-present PDPTE do not matter */
        put64(f, 0x4018, 0x6000 | bad[i]);
        assert_int_equal(pgm_sync_cr3(f->vcpu, 0x4000), 0);
        assert_int_equal(pgm_sync_cr3(f->vcpu, 0x3000), 0);
    }
    /* PWT/PCD (bits 3, 4) and ignored bits 11:9 are fine; CR3 bits 4:0 ignored */
    put64(f, 0x4018, 0x6001 | 0x18 | 0xe00);
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0x4000 | 0x1f), 0);
    /* a PDPT outside RAM reads all-ones: reserved bits, #GP */
    assert_int_equal(pgm_sync_cr3(f->vcpu, 0xfffff000), PGM_RC_INJECT_GP);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test_setup_teardown(test_mode_selection, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_state_checks, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_features_gate_cr4),
        cmocka_unit_test_setup_teardown(test_cr3_loads, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests_name("vm", tests, NULL, NULL);
}
