/* SPDX-License-Identifier: MIT */
/*
 * The shadow engine on hand-built 4-level tables, through the soft MMU:
 * mapping, A/D emulation, guest faults with the guest's error code,
 * monitoring of guest tables (a guest write to its own PTE is seen), TLB
 * maintenance, handlers reflected into the shadows, and pgm_audit after
 * every step. Expected values are worked out from the tables below.
 *
 * Guest layout (PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000):
 *   VA 0x000000..0x3fffff (PT 0x4000): VA 0x1000 -> 0x10000, 0x2000 -> 0x11000
 *   VA 0x5000 -> the PT page itself (0x4000), so the guest can edit its PTEs
 *   VA 0x200000 (PD[1]) -> a 2 MiB page at 0x600000
 */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

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
poke(struct env *e, uint64_t gpa, uint64_t v)
{
    fixture_put64(e->vm, gpa, v);
}

static uint64_t
peek(struct env *e, uint64_t gpa)
{
    uint64_t v = 0;
    pgm_phys_read(e->vm, gpa, &v, 8);
    return v;
}

static int
env_setup_with(void **state, uint32_t unsync_threshold, enum pgm_paging_hw paging)
{
    struct env *e = test_calloc(1, sizeof(*e));
    assert_int_equal(pgm_soft_backend_create(1u << 14, &e->sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = paging;
    cfg.unsync_threshold = unsync_threshold;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    assert_int_equal(pgm_vm_create(&cfg, &e->vm), 0);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0, 16u << 20), 0);
    e->vcpu = pgm_vcpu_get(e->vm, 0);
    poke(e, 0x1000, 0x2007);
    poke(e, 0x2000, 0x3007);
    poke(e, 0x3000, 0x4007);
    poke(e, 0x3008, 0x600087);          /* 2 MiB, user, writable */
    poke(e, 0x4008, 0x10007);           /* VA 0x1000 */
    poke(e, 0x4010, 0x11005);           /* VA 0x2000: read-only */
    poke(e, 0x4028, 0x4003);            /* VA 0x5000 -> the PT (supervisor rw) */
    poke(e, 0x10000, 0x1122334455667788ull);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP,
                                .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME | PGM_EFER_NXE,
                                .cr3 = 0x1000 };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    *state = e;
    return 0;
}

static int
env_setup(void **state)
{
    return env_setup_with(state, 0, PGM_PAGING_SHADOW_AMD64);
}

/* Hosts whose own paging is 32-bit or PAE. */
static int
env_setup_host32(void **state)
{
    return env_setup_with(state, 0, PGM_PAGING_SHADOW_32);
}

static int
env_setup_host_pae(void **state)
{
    return env_setup_with(state, 0, PGM_PAGING_SHADOW_PAE);
}

/* Every shadowed table stays write-protected: each guest write is finished. */
static int
env_setup_monitor_only(void **state)
{
    return env_setup_with(state, PGM_UNSYNC_OFF, PGM_PAGING_SHADOW_AMD64);
}

static int
env_teardown(void **state)
{
    struct env *e = *state;
    fixture_vm_teardown(e->vm, e->sb);
    test_free(e);
    return 0;
}

static struct pgm_fault_out
access(struct env *e, uint64_t va, uint32_t acc, void *buf, size_t n)
{
    return fixture_soft_access(e->vcpu, e->vm, va, acc, buf, n);
}

static void
test_read_write_and_ad(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    struct pgm_fault_out o = access(e, 0x1000, PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_true(v == 0x1122334455667788ull);
    /* the walk set A (not D) in the guest's entries */
    assert_true((peek(e, 0x4008) & 0x60) == 0x20 && (peek(e, 0x1000) & 0x20));
    /* a write: D set in the guest PTE, the data lands at the GPA */
    v = 42;
    o = access(e, 0x1008, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_true((peek(e, 0x4008) & 0x60) == 0x60);
    assert_true(peek(e, 0x10008) == 42);
    /* making the entry writable once D is set only widened it: no flush */
    struct pgm_stats s0;
    pgm_stats(e->vm, &s0);
    poke(e, 0x4018, 0x12007);                          /* VA 0x3000, D clear */
    access(e, 0x3000, 0, &v, 8);                        /* mapped read-only */
    v = 44;
    access(e, 0x3000, PGM_ACCESS_WRITE, &v, 8);         /* D set, widened */
    struct pgm_stats s0b;
    pgm_stats(e->vm, &s0b);
    assert_int_equal(s0b.shadow_flushes, s0.shadow_flushes);
    assert_int_equal(s0b.shadow_zaps, s0.shadow_zaps);
    assert_true(peek(e, 0x12000) == 44);
    /* a second write goes through the (now writable) shadow directly */
    struct pgm_stats s1, s2;
    pgm_stats(e->vm, &s1);
    v = 43;
    o = access(e, 0x1010, PGM_ACCESS_WRITE, &v, 8);
    pgm_stats(e->vm, &s2);
    assert_true(peek(e, 0x10010) == 43);
    assert_int_equal(s2.walks, s1.walks); /* no fault, no guest walk */
    /* the large page */
    v = 7;
    o = access(e, 0x212345, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 1);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_int_equal((uint8_t)peek(e, 0x612345), 7);
    assert_true((peek(e, 0x3008) & 0x60) == 0x60);
}

static void
test_guest_faults(void **state)
{
    struct env *e = *state;
    uint64_t v = 1;
    /* read-only page: the guest's own error code, P|W|U */
    struct pgm_fault_out o = access(e, 0x2000, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_INJECT);
    assert_int_equal(o.vector, 14);
    assert_int_equal(o.error_code, 0x7);
    assert_true(o.address == 0x2000);
    /* not present: U only */
    o = access(e, 0x3000, PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.error_code, 0x4);
    /* the PT mapping is supervisor: a user read faults P|U */
    o = access(e, 0x5000, PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.error_code, 0x5);
    /* XD page: fetch faults P|I/D */
    poke(e, 0x4030, 0x12003 | 1ull << 63);  /* VA 0x6000 */
    o = access(e, 0x6000, PGM_ACCESS_FETCH, &v, 1);
    assert_int_equal(o.error_code, 0x11);
}

static void
test_monitored_pte_write(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    access(e, 0x1000, 0, &v, 8);          /* shadows PT 0x4000: it is now monitored */
    assert_true(v == 0x1122334455667788ull);
    /* the guest remaps VA 0x1000 to 0x11000 by writing its PTE through VA 0x5008 */
    uint64_t pte = 0x11007;
    struct pgm_fault_out o = access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_true(peek(e, 0x4008) == 0x11007);
    poke(e, 0x11000, 0xabcdef);
    /* no INVLPG yet: the shadow entry was zapped when the PTE was written,
     * but the TLB may still hold the old translation (the SDM allows it) */
    pgm_invlpg(e->vcpu, 0x1000);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0xabcdef);
    /* the PT page itself stays read-only in the shadows while shadowed */
    struct pgm_stats s;
    pgm_stats(e->vm, &s);
    for (int k = 0; k < 3; k++) {
        pte = 0x10007 + (uint64_t)k * 0x1000;
        access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    }
    assert_true(peek(e, 0x4008) == 0x12007);
    struct pgm_stats s2;
    pgm_stats(e->vm, &s2);
    assert_int_equal(s2.shadow_finished - s.shadow_finished, 3); /* each PTE write went via libpgm */
    assert_true(s2.shadow_zaps > s.shadow_zaps);
    /* three writes with no translation through the table in between: a
     * flood (default threshold 3), so the table is no longer shadowed ... */
    assert_int_equal(s2.shadow_unshadowed - s.shadow_unshadowed, 1);
    /* ... and is shadowed again as soon as a walk goes through it */
    access(e, 0x1000, 0, &v, 8);
    pte = 0x10007;
    access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    struct pgm_stats s3;
    pgm_stats(e->vm, &s3);
    assert_int_equal(s3.shadow_finished - s2.shadow_finished, 1);
    pgm_invlpg(e->vcpu, 0x1000);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x1122334455667788ull);
}

/*
 * An out-of-sync leaf table linked under a new parent entry: the guest
 * changed one of its entries without INVLPG (legal while the old address
 * keeps the stale translation), then made the table reachable at a new
 * address through a PDE that was not present. Nothing could be cached for
 * the new address, so it must see the entry as it is now.
 */
static void
test_unsync_relink(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    access(e, 0x1000, 0, &v, 8);                       /* PT 0x4000 shadowed */
    for (unsigned k = 0; k < 8; k++) {                 /* ... and out of sync */
        uint64_t pte = (0x20000 + 0x1000ull * k) | 7;
        access(e, 0x5000 + 8 * (8 + k), PGM_ACCESS_WRITE, &pte, 8);
        access(e, 0x1000, 0, &v, 8);
    }
    poke(e, 0x12000, 0x1212);
    poke(e, 0x13000, 0x1313);
    uint64_t pte = 0x12007;
    access(e, 0x5018, PGM_ACCESS_WRITE, &pte, 8);      /* VA 0x3000 -> 0x12000 */
    access(e, 0x3000, 0, &v, 8);
    assert_true(v == 0x1212);
    pte = 0x13007;                                     /* no INVLPG: stale at 0x3000 */
    access(e, 0x5018, PGM_ACCESS_WRITE, &pte, 8);
    poke(e, 0x3010, 0x4007);                           /* PDE 2: the same PT at 4 MiB */
    access(e, 0x401000, 0, &v, 8);                     /* links the shadow PT there */
    assert_true(v == 0x1122334455667788ull);
    access(e, 0x403000, 0, &v, 8);
    assert_true(v == 0x1313);
}

static void
test_unsync(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    access(e, 0x1000, 0, &v, 8);                       /* PT 0x4000 shadowed */
    struct pgm_stats s0, s1;
    pgm_stats(e->vm, &s0);
    /* a burst of PTE writes, the table used in between (no flood) */
    for (unsigned k = 0; k < 8; k++) {
        uint64_t pte = (0x20000 + 0x1000ull * k) | 7;
        access(e, 0x5000 + 8 * (8 + k), PGM_ACCESS_WRITE, &pte, 8); /* VA 0x8000 + k pages */
        access(e, 0x1000, 0, &v, 8);
    }
    pgm_stats(e->vm, &s1);
    /* three writes finished by libpgm (the default threshold), then the leaf
     * table went out of sync and the rest went straight to it */
    assert_int_equal(s1.shadow_finished - s0.shadow_finished, 3);
    assert_int_equal(s1.shadow_unsyncs - s0.shadow_unsyncs, 1);
    for (unsigned k = 0; k < 8; k++)
        assert_true(peek(e, 0x4040 + 8 * k) == ((0x20000 + 0x1000ull * k) | 7));
    /* remap VA 0x1000 while out of sync: the old translation may linger... */
    poke(e, 0x12000, 0x1212);
    uint64_t pte = 0x12007;
    access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    /* ... until the guest's INVLPG, which resyncs the table */
    pgm_invlpg(e->vcpu, 0x1000);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x1212);
    struct pgm_stats s2;
    pgm_stats(e->vm, &s2);
    assert_int_equal(s2.shadow_resyncs - s1.shadow_resyncs, 1);
    /* back in sync and write-protected: the next write is finished again */
    pte = 0x10007;
    access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    struct pgm_stats s3;
    pgm_stats(e->vm, &s3);
    assert_int_equal(s3.shadow_finished - s2.shadow_finished, 1);
    /* an entry changed and changed back while out of sync (A -> B -> A)
     * must not leave a shadow built from B behind */
    for (unsigned k = 0; k < 4; k++) {
        pte = 0x10007;
        access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
        access(e, 0x1000, 0, &v, 8);
    }
    pte = 0x13007;                                      /* B */
    access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    pgm_flush_tlb(e->vcpu, false);
    access(e, 0x1000, 0, &v, 8);                        /* a shadow entry built from B */
    pte = 0x10007;                                      /* back to A */
    access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    pgm_flush_tlb(e->vcpu, false);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x1122334455667788ull);
}

static void
test_update_in_place(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    access(e, 0x1000, 0, &v, 8);                       /* PT 0x4000 shadowed */
    poke(e, 0x11000, 0x6161);
    /* the guest writes an accessed PTE: the shadow entry is rebuilt from it
     * right away, so the next access needs no fault and no guest walk */
    uint64_t pte = 0x11027;
    access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    pgm_invlpg(e->vcpu, 0x1000);
    struct pgm_stats s0, s1;
    pgm_stats(e->vm, &s0);
    access(e, 0x1000, 0, &v, 8);
    pgm_stats(e->vm, &s1);
    assert_true(v == 0x6161);
    assert_int_equal(s1.walks - s0.walks, 0);
    assert_true(s1.shadow_refills >= 1);
    /* a PTE without A is not prefilled: the access must walk to set A */
    pte = 0x10007;
    access(e, 0x5008, PGM_ACCESS_WRITE, &pte, 8);
    pgm_invlpg(e->vcpu, 0x1000);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x1122334455667788ull);
    assert_true(peek(e, 0x4008) & 0x20);
}

static void
test_vmm_writes_to_tables(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    access(e, 0x1000, 0, &v, 8);           /* PT 0x4000 is now shadowed */
    poke(e, 0x11000, 0x5151);
    /* the VMM (not the guest) rewrites the PTE with pgm_phys_write */
    poke(e, 0x4008, 0x11007);
    audit(e);                              /* the stale shadow entry is gone */
    pgm_invlpg(e->vcpu, 0x1000);           /* the TLB is the guest's business */
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x5151);
}

static void
test_cr3_switch_and_flush(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    access(e, 0x1000, 0, &v, 8);
    /* a second address space sharing the PDPT but mapping VA 0x1000 elsewhere */
    poke(e, 0x7000, 0x8007);               /* PML4 #2 -> PDPT 0x8000 */
    poke(e, 0x8000, 0x9007);
    poke(e, 0x9000, 0xa007);
    poke(e, 0xa008, 0x13007);              /* VA 0x1000 -> 0x13000 */
    poke(e, 0x13000, 99);
    assert_int_equal(pgm_sync_cr3(e->vcpu, 0x7000), 0);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 99);
    assert_int_equal(pgm_sync_cr3(e->vcpu, 0x1000), 0);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x1122334455667788ull);
    pgm_hpa_t root;
    assert_int_equal(pgm_before_entry(e->vcpu, &root), 0);
    assert_true(root != 0);
}

static void
test_handlers_reflected(void **state)
{
    struct env *e = *state;
    uint64_t v = 5;
    access(e, 0x1000, PGM_ACCESS_WRITE, &v, 8); /* mapped writable */
    /* dirty logging on the data page: the next write must be seen */
    assert_int_equal(pgm_dirty_log_start(e->vm, 0x10000, 0x1000), 0);
    uint64_t bm = 0;
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, 0x10000, &bm), 0);
    assert_true(bm == 0);
    v = 6;
    access(e, 0x1000, PGM_ACCESS_WRITE, &v, 8);
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, 0x10000, &bm), 0);
    assert_true(bm == 1);
    assert_true(peek(e, 0x10000) == 6);
    v = 7;
    access(e, 0x1000, PGM_ACCESS_WRITE, &v, 8);
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, 0x10000, &bm), 0);
    assert_true(bm == 1);
}

static void set_state(struct env *e, uint64_t cr0, uint64_t cr4, uint64_t efer, uint64_t cr3);

static void
test_nxe_change(void **state)
{
    struct env *e = *state;
    poke(e, 0x4030, 0x12003 | 1ull << 63);              /* VA 0x6000: XD */
    uint64_t v;
    struct pgm_fault_out o = access(e, 0x6000, 0, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);      /* NXE = 1: a readable page */
    /* EFER.NXE = 0: bit 63 is reserved now, the same shadows must not answer */
    set_state(e, PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, PGM_CR4_PAE, PGM_EFER_LME, 0x1000);
    o = access(e, 0x6000, 0, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_INJECT);
    assert_int_equal(o.error_code, 0x9);               /* P|RSVD */
    set_state(e, PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, PGM_CR4_PAE,
              PGM_EFER_LME | PGM_EFER_NXE, 0x1000);
    o = access(e, 0x6000, 0, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
}

static void
test_bad_args(void **state)
{
    struct env *e = *state;
    uint64_t v;
    struct pgm_fault_out o;
    assert_int_equal(pgm_soft_access(e->vcpu, 0xffe, 0, &v, 8, &o), -EINVAL); /* crosses a page */
    assert_int_equal(pgm_soft_access(e->vcpu, 0x1000, 0, NULL, 8, &o), -EINVAL);
    assert_int_equal(pgm_trap0e(e->vcpu, 0, 0x1000, NULL, &o), -EINVAL);
}

static void
set_state(struct env *e, uint64_t cr0, uint64_t cr4, uint64_t efer, uint64_t cr3)
{
    struct pgm_cpu_state st = { .cr0 = cr0, .cr4 = cr4, .efer = efer, .cr3 = cr3 };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
}

/* 32-bit paging: PD 0x20000, PT 0x21000, 4-byte entries, on a PAE-format shadow. */
static void
test_32bit_guest(void **state)
{
    struct env *e = *state;
    uint32_t pde0 = 0x21007, pde1 = 0x00c00087;      /* PDE 1: a 4 MiB page at 0xc00000 */
    pgm_phys_write(e->vm, 0x20000, &pde0, 4);
    pgm_phys_write(e->vm, 0x20004, &pde1, 4);
    uint32_t pte1 = 0x10007, pte5 = 0x21003;         /* VA 0x5000 maps the PT itself */
    pgm_phys_write(e->vm, 0x21004, &pte1, 4);
    pgm_phys_write(e->vm, 0x21014, &pte5, 4);
    set_state(e, PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, PGM_CR4_PSE, 0, 0x20000);
    uint64_t v = 0;
    struct pgm_fault_out o = access(e, 0x1000, PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_true(v == 0x1122334455667788ull);
    uint32_t got;
    pgm_phys_read(e->vm, 0x21004, &got, 4);
    assert_int_equal(got & 0x60, 0x20);               /* A, set in the 4-byte PTE */
    /* the 4 MiB page, second 2 MiB half */
    v = 0x77;
    o = access(e, 0x600010, PGM_ACCESS_WRITE, &v, 1);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_int_equal((uint8_t)peek(e, 0xe00010), 0x77);
    pgm_phys_read(e->vm, 0x20004, &got, 4);
    assert_int_equal(got & 0x60, 0x60);
    /* a user write to a supervisor page: the guest's 32-bit error code, no I/D */
    o = access(e, 0x5000, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 4);
    assert_int_equal(o.result, PGM_FAULT_INJECT);
    assert_int_equal(o.error_code, 0x7);
    /* the guest remaps VA 0x1000 through its own 4-byte PTE (monitored) */
    uint32_t npte = 0x11007;
    o = access(e, 0x5004, PGM_ACCESS_WRITE, &npte, 4);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    poke(e, 0x11000, 0x3232);
    pgm_invlpg(e->vcpu, 0x1000);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x3232);
    /* a PDE write zaps both 2 MiB halves it shadows */
    uint32_t npde = 0x00800087;                       /* 4 MiB page now at 0x800000 */
    poke(e, 0xa00010, 0x99);
    access(e, 0x5000, 0, &v, 4);                      /* keep the PT mapping in use */
    pgm_phys_write(e->vm, 0x20004, &npde, 4);          /* the VMM rewrites the PDE */
    audit(e);
    pgm_flush_tlb(e->vcpu, true);
    v = 0;
    access(e, 0x600010, 0, &v, 1);
    assert_int_equal((uint8_t)v, 0x99);
}

/* PAE paging: PDPT at 0x30020 (32-byte aligned), PD 0x31000, PT 0x32000. */
static void
test_pae_guest(void **state)
{
    struct env *e = *state;
    poke(e, 0x30020, 0x31001);
    poke(e, 0x31000, 0x32007);
    poke(e, 0x32008, 0x10007);
    poke(e, 0x32010, 0x11007 | 1ull << 63);           /* VA 0x2000: XD */
    set_state(e, PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, PGM_CR4_PAE, PGM_EFER_NXE, 0x30020);
    uint64_t v = 0;
    struct pgm_fault_out o = access(e, 0x1000, 0, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_true(v == 0x1122334455667788ull);
    o = access(e, 0x2000, PGM_ACCESS_FETCH, &v, 1);
    assert_int_equal(o.result, PGM_FAULT_INJECT);
    assert_int_equal(o.error_code, 0x11);
    /* PDPTEs are latched: rewriting the PDPT changes nothing until MOV CR3 */
    poke(e, 0x33000, 0x34007);
    poke(e, 0x34008, 0x12007);
    poke(e, 0x12000, 0x4444);
    poke(e, 0x30020, 0x33001);
    pgm_flush_tlb(e->vcpu, true);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x1122334455667788ull);
    assert_int_equal(pgm_sync_cr3(e->vcpu, 0x30020), 0);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x4444);
    /* a write sets D in the guest's 8-byte PTE */
    v = 5;
    access(e, 0x1000, PGM_ACCESS_WRITE, &v, 8);
    assert_true((peek(e, 0x34008) & 0x60) == 0x60);
}

/* Paging off: linear = guest-physical, through the identity map. */
static void
test_real_and_prot_guest(void **state)
{
    struct env *e = *state;
    set_state(e, 0, 0, 0, 0);
    uint64_t v = 0;
    struct pgm_fault_out o = access(e, 0x10000, 0, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_true(v == 0x1122334455667788ull);
    v = 9;
    access(e, 0x123458, PGM_ACCESS_WRITE, &v, 8);
    assert_true(peek(e, 0x123458) == 9);
    set_state(e, PGM_CR0_PE, 0, 0, 0);
    access(e, 0x123458, 0, &v, 8);
    assert_true(v == 9);
    /* an MMIO page with no handler: reads see all-ones */
    assert_int_equal(pgm_phys_add_mmio(e->vm, 0xfee00000, 0x1000), 0);
    o = access(e, 0xfee00000, 0, &v, 4);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_int_equal((uint32_t)v, 0xffffffffu);
    /* back to long mode: the IA-32e tables still work */
    set_state(e, PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP, PGM_CR4_PAE,
              PGM_EFER_LME | PGM_EFER_NXE, 0x1000);
    access(e, 0x1000, 0, &v, 8);
    assert_true(v == 0x1122334455667788ull);
}

/* Guest modes a 32-bit or PAE host cannot run: IA-32e. */
static void
test_host_cannot_run_ia32e(void **state)
{
    struct env *e = *state;
    uint64_t v;
    struct pgm_fault_out o;
    /* env_setup left the vCPU in IA-32e paging */
    assert_int_equal(pgm_soft_access(e->vcpu, 0x1000, 0, &v, 8, &o), -EOPNOTSUPP);
    pgm_hpa_t root;
    assert_int_equal(pgm_before_entry(e->vcpu, &root), -EOPNOTSUPP);
    struct pgm_regs regs = { .code_bits = 64 };
    assert_int_equal(pgm_trap0e(e->vcpu, 0, 0x1000, &regs, &o), -EOPNOTSUPP);
}

/* A 32-bit host: 32-bit guests on 32-bit-format shadows, one to one. */
static void
test_host32_32bit_guest(void **state)
{
    test_32bit_guest(state);
    struct env *e = *state;
    struct pgm_shadow_info si;
    assert_int_equal(pgm_shadow_lookup(e->vcpu, 0x1000, &si), 0);
    assert_int_equal(si.levels, 2);
    assert_true(si.present);
}

/*
 * Two guest 2 MiB pages on one frame, one dirty and one clean, with the same
 * rights: a write through the clean one must set its D bit, even after the
 * dirty one made the frame's shadow entries writable (they may not share a
 * direct shadow table).
 */
static void
test_large_alias_dirty(void **state)
{
    struct env *e = *state;
    poke(e, 0x3010, 0x6000e7); /* VA 0x400000: the frame of VA 0x200000, A and D set */
    uint64_t v = 0;
    /* The clean page is linked into the shadows (a read of another 4 KiB). */
    assert_int_equal(access(e, 0x205000, PGM_ACCESS_USER, &v, 8).result, PGM_FAULT_RESUME);
    assert_true((peek(e, 0x3008) & 0x60) == 0x20); /* read: A, not D */
    /* A write through the dirty alias maps its 4 KiB writable. */
    v = 1;
    assert_int_equal(access(e, 0x400100, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 8).result,
                     PGM_FAULT_RESUME);
    /* A write to that 4 KiB through the clean page must set the clean page's D. */
    v = 3;
    assert_int_equal(access(e, 0x200100, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 8).result,
                     PGM_FAULT_RESUME);
    assert_true((peek(e, 0x3008) & 0x60) == 0x60);
    assert_true(peek(e, 0x600100) == 3);
}

/*
 * A new VM on a backend whose vCPU 0 ran another VM: translations that VM
 * left in the (soft) TLB point at freed host pages and must be flushed
 * before the new VM runs, also when it starts in real mode, where no mode
 * change would flush.
 */
static void
test_new_vm_on_used_backend(void **state)
{
    (void)state;
    struct pgm_soft_backend *sb;
    assert_int_equal(pgm_soft_backend_create(1u << 12, &sb), 0);
    for (unsigned round = 0; round < 3; round++) {
        struct pgm_vm_config cfg;
        pgm_vm_config_init(&cfg);
        cfg.paging = PGM_PAGING_SHADOW_AMD64;
        cfg.backend = pgm_soft_backend_ops();
        cfg.backend_ctx = sb;
        struct pgm_vm *vm;
        assert_int_equal(pgm_vm_create(&cfg, &vm), 0);
        assert_int_equal(pgm_phys_add_ram(vm, 0, 1u << 20), 0);
        struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
        /* Real mode: the identity map; the page gets a fresh host page each round. */
        uint64_t v = 0x1234 + round, back = 0;
        struct pgm_fault_out out;
        assert_int_equal(pgm_soft_access(vcpu, 0x5000, PGM_ACCESS_WRITE, &v, 8, &out), 0);
        assert_int_equal(out.result, PGM_FAULT_RESUME);
        assert_int_equal(pgm_soft_access(vcpu, 0x5000, PGM_ACCESS_READ, &back, 8, &out), 0);
        assert_true(back == v);
        assert_int_equal(pgm_phys_read(vm, 0x5000, &back, 8), 0);
        assert_true(back == v);
        fixture_audit_vm(vm);
        pgm_vm_destroy(vm);
    }
    assert_int_equal(pgm_soft_backend_pages_in_use(sb), 0);
    pgm_soft_backend_destroy(sb);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, env_setup, env_teardown)
#define TM(fn) cmocka_unit_test_setup_teardown(fn, env_setup_monitor_only, env_teardown)
#define T32(fn) cmocka_unit_test_setup_teardown(fn, env_setup_host32, env_teardown)
#define TP(fn) cmocka_unit_test_setup_teardown(fn, env_setup_host_pae, env_teardown)
    const struct CMUnitTest tests[] = {
        T(test_read_write_and_ad),
        T(test_large_alias_dirty),
        cmocka_unit_test(test_new_vm_on_used_backend),
        T(test_guest_faults),
        TM(test_monitored_pte_write),
        T(test_unsync),
        T(test_unsync_relink),
        TM(test_update_in_place),
        T(test_vmm_writes_to_tables),
        T(test_cr3_switch_and_flush),
        T(test_handlers_reflected),
        T(test_nxe_change),
        T(test_bad_args),
        T(test_32bit_guest),
        T(test_pae_guest),
        T(test_real_and_prot_guest),
        T32(test_host_cannot_run_ia32e),
        T32(test_host32_32bit_guest),
        T32(test_pae_guest),
        TP(test_host_cannot_run_ia32e),
        TP(test_32bit_guest),
        TP(test_pae_guest),
    };
#undef TM
#undef T
#undef T32
#undef TP
    return cmocka_run_group_tests_name("shadow", tests, NULL, NULL);
}
