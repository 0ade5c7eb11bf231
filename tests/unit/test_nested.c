/* SPDX-License-Identifier: MIT */
/*
 * The nested engine (EPT and NPT) through pgm_nested_fault, checked with an
 * independent hardware walk (tests/unit/nested_env.h): first touch, ROM,
 * MMIO through the emulator and the fast-exit marker, WRITE / ALL handlers
 * updating existing leaves with counted flushes, unassigned space, range
 * removal, ROM mode switches, the exit-decoding helpers and guest walks on
 * a nested VM. pgm_audit after every step.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "tests/unit/nested_env.h"

#define MMIO_GPA 0xfee00000ull
#define ROM_GPA  0x02000000ull

static const enum pgm_paging_hw formats[2] = { PGM_PAGING_EPT, PGM_PAGING_NPT };

struct mmio_dev {
    unsigned calls;
    pgm_gpa_t gpa;
    bool write;
    uint32_t value;
    enum pgm_handler_result answer;
};

static enum pgm_handler_result
dev_fn(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
       enum pgm_access_origin origin, void *user)
{
    (void)vcpu;
    (void)origin;
    struct mmio_dev *d = user;
    d->calls++;
    d->gpa = gpa;
    d->write = write;
    if (write)
        memcpy(&d->value, buf, size < 4 ? size : 4);
    else
        memcpy(buf, &d->value, size < 4 ? size : 4);
    return d->answer;
}

static void
make_env(struct nenv *e, enum pgm_paging_hw fmt, uint32_t flags, bool blocks)
{
    assert_int_equal(nenv_create(e, fmt, flags, blocks, 0), 0);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0, 16ull << 20), 0);
}

/* ---- configuration and root ---- */

static void
test_config_and_root(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        struct nenv e;
        make_env(&e, formats[f], f == 0 ? PGM_NESTED_EPT_AD : PGM_NESTED_NPT_NXE, true);
        uint64_t ptr;
        assert_int_equal(pgm_nested_root(e.vm, &ptr), 0);
        assert_int_equal(e.ri.levels, 4);
        assert_int_equal(e.ri.root & 0xfff, 0);
        if (formats[f] == PGM_PAGING_EPT) {
            struct pgm_vtx_ept_caps caps;
            pgm_vtx_decode_ept_caps(e.ncfg.ept_caps, &caps);
            struct pgm_vtx_eptp d;
            assert_int_equal(pgm_vtx_eptp_check(&caps, 46, ptr, &d), 0);
            assert_int_equal(d.root, e.ri.root);
            assert_int_equal(d.levels, 4);
            assert_true(d.ad);
            assert_int_equal(d.memtype, PGM_VTX_MT_WB);
            assert_true(e.ri.ept_ad);
        } else {
            assert_int_equal(ptr, e.ri.root); /* nCR3 with PWT = PCD = 0 */
            assert_false(e.ri.ept_ad);
        }
        /* A fresh tree is one root table. */
        assert_int_equal(nstats(&e).nested_table_pages, 1);
        audit_ok(&e);
        nenv_destroy(&e);
    }
    /* Bad vendor parameters. */
    struct nenv e;
    struct pgm_soft_backend *sb;
    assert_int_equal(pgm_soft_backend_create(64, &sb), 0);
    struct pgm_nested_config nc;
    struct pgm_vm_config cfg;
    struct pgm_vm *vm = NULL;
    pgm_vm_config_init(&cfg);
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = sb;
    pgm_nested_config_init(&nc);
    cfg.nested = &nc;
    cfg.paging = PGM_PAGING_SHADOW_AMD64; /* nested parameters on a shadow VM */
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    cfg.paging = PGM_PAGING_EPT;
    nc.levels = 3;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    nc.levels = 5; /* the default caps have no 5-level walk */
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    pgm_nested_config_init(&nc);
    nc.ept_caps &= ~(1ull << 21); /* no A/D capability */
    nc.flags = PGM_NESTED_EPT_AD;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    pgm_nested_config_init(&nc);
    nc.flags = PGM_NESTED_NPT_NXE; /* an NPT flag on EPT */
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    pgm_nested_config_init(&nc);
    nc.reserved[3] = 1;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    cfg.paging = PGM_PAGING_NPT;
    pgm_nested_config_init(&nc);
    nc.flags = PGM_NESTED_EPT_AD;
    assert_int_equal(pgm_vm_create(&cfg, &vm), -EINVAL);
    pgm_soft_backend_destroy(sb);
    /* Not a nested VM: the entry points refuse. */
    assert_int_equal(nenv_create(&e, PGM_PAGING_NONE, 0, true, 0) < 0, false);
    uint64_t p;
    assert_int_equal(pgm_nested_root(e.vm, &p), -EINVAL);
    assert_int_equal(pgm_nested_fault(e.vcpu, 0, 0, NULL, NULL, &e.out), -EINVAL);
    nenv_destroy(&e);
}

/* ---- first touch: zero page read-only, then allocate on write ---- */

static void
first_touch(enum pgm_paging_hw fmt, bool blocks)
{
    struct nenv e;
    make_env(&e, fmt, 0, blocks);
    const pgm_gpa_t gpa = 0x5000;
    uint32_t v = 0x12345678;
    assert_int_equal(hw_walk(&e, gpa, 0).res, HW_VIOLATION);
    assert_int_equal(hw_access(&e, gpa + 8, false, &v, false), PGM_FAULT_RESUME);
    assert_int_equal(v, 0);
    struct hw_walk w = hw_walk(&e, gpa, 0);
    assert_int_equal(w.res, HW_OK);
    assert_int_equal(w.leaf_level, 1);
    assert_false(w.writable);                         /* the shared zero page */
    struct pgm_phys_info pi;
    pgm_phys_info(e.vm, &pi);
    assert_int_equal(pi.allocated_pages, 0);
    struct pgm_stats s = nstats(&e);
    assert_int_equal(s.nested_faults, 1);
    /* Upper levels 4, 3, 2 plus the PT. */
    assert_int_equal(s.nested_table_pages, 4);
    audit_ok(&e);

    uint64_t before = g_flush.requests;
    v = 0xcafef00d;
    assert_int_equal(hw_access(&e, gpa + 8, true, &v, false), PGM_FAULT_RESUME);
    w = hw_walk(&e, gpa, PGM_ACCESS_WRITE);
    assert_int_equal(w.res, HW_OK);
    assert_true(w.writable);
    pgm_phys_info(e.vm, &pi);
    assert_int_equal(pi.allocated_pages, 1);
    uint32_t back = 0;
    assert_int_equal(pgm_phys_read(e.vm, gpa + 8, &back, 4), 0);
    assert_int_equal(back, 0xcafef00d);
    /* The zero-page leaf was repointed: one flush of exactly that GPA. */
    assert_int_equal(g_flush.requests - before, 1);
    assert_int_equal(g_flush.gpa, 1);
    assert_int_equal(g_flush.last_addr, gpa);
    s = nstats(&e);
    assert_int_equal(s.nested_faults, 2);
    audit_ok(&e);

    /* A VMM write to a never-written page the guest only read: leaf follows. */
    v = 0;
    assert_int_equal(hw_access(&e, 0x7000, false, &v, false), PGM_FAULT_RESUME);
    uint32_t x = 0x600d;
    assert_int_equal(pgm_phys_write(e.vm, 0x7000, &x, 4), 0);
    audit_ok(&e);
    assert_int_equal(hw_access(&e, 0x7000, false, &v, false), PGM_FAULT_RESUME);
    assert_int_equal(v, 0x600d);

    /* Spurious: a fault for an access the leaf already allows. */
    assert_int_equal(pgm_nested_fault(e.vcpu, gpa, PGM_ACCESS_WRITE, NULL, NULL, &e.out), 0);
    assert_int_equal(e.out.result, PGM_FAULT_RESUME);
    assert_int_equal(nstats(&e).nested_spurious, 1);
    /* Bad arguments. */
    assert_int_equal(pgm_nested_fault(e.vcpu, gpa, PGM_ACCESS_WRITE | PGM_ACCESS_FETCH, NULL,
                                      NULL, &e.out), -EINVAL);
    /* Beyond the walk's reach: nothing can map it; emulation must finish it. */
    assert_int_equal(pgm_nested_fault(e.vcpu, 1ull << 48, 0, NULL, NULL, &e.out), 0);
    assert_true(e.out.result == PGM_FAULT_EXIT && e.out.exit_reason == PGM_EXIT_EMULATE &&
                e.out.exit_gpa == 1ull << 48 && !e.out.exit_write);
    assert_int_equal(pgm_nested_fault(e.vcpu, gpa, 0, NULL, NULL, NULL), -EINVAL);
    nenv_destroy(&e);
}

static void
test_first_touch(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        first_touch(formats[f], true);
        first_touch(formats[f], false);
    }
}

/* ---- ROM ---- */

static void
test_rom(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        struct nenv e;
        make_env(&e, formats[f], 0, true);
        uint8_t image[8192];
        for (unsigned i = 0; i < sizeof(image); i++)
            image[i] = (uint8_t)(i * 7 + 1);
        assert_int_equal(pgm_phys_add_rom(e.vm, ROM_GPA, sizeof(image), image, sizeof(image)), 0);
        uint32_t v = 0;
        assert_int_equal(hw_access(&e, ROM_GPA + 0x1004, false, &v, false), PGM_FAULT_RESUME);
        uint32_t want;
        memcpy(&want, image + 0x1004, 4);
        assert_int_equal(v, want);
        assert_false(hw_walk(&e, ROM_GPA + 0x1000, 0).writable);
        audit_ok(&e);
        /* A write without registers: the embedder must finish it. */
        v = 0xdeadbeef;
        assert_int_equal(hw_access(&e, ROM_GPA + 0x1004, true, &v, false), PGM_FAULT_EXIT);
        assert_int_equal(e.out.exit_reason, PGM_EXIT_EMULATE);
        assert_int_equal(e.out.exit_gpa, ROM_GPA + 0x1004);
        assert_true(e.out.exit_write);
        /* With registers: emulated, and dropped (ROM mode). */
        assert_int_equal(hw_access(&e, ROM_GPA + 0x1004, true, &v, true), PGM_FAULT_EMULATED);
        assert_int_equal(e.regs.rip, CODE_GPA + 2);
        uint32_t back;
        assert_int_equal(pgm_phys_read(e.vm, ROM_GPA + 0x1004, &back, 4), 0);
        assert_int_equal(back, want);
        audit_ok(&e);
        /* Shadow RW: the leaf is repointed to the writable copy, in place. */
        uint64_t before = g_flush.requests;
        assert_int_equal(pgm_phys_rom_set_mode(e.vm, ROM_GPA, PGM_ROM_MODE_SHADOW_RW), 0);
        assert_int_equal(g_flush.requests - before, 1); /* one batched request */
        audit_ok(&e);
        struct hw_walk w = hw_walk(&e, ROM_GPA + 0x1000, PGM_ACCESS_WRITE);
        assert_int_equal(w.res, HW_OK);
        v = 0x11223344;
        assert_int_equal(hw_access(&e, ROM_GPA + 0x1004, true, &v, false), PGM_FAULT_RESUME);
        assert_int_equal(pgm_phys_read(e.vm, ROM_GPA + 0x1004, &back, 4), 0);
        assert_int_equal(back, 0x11223344);
        /* Back to ROM: the image again, read-only. */
        assert_int_equal(pgm_phys_rom_set_mode(e.vm, ROM_GPA, PGM_ROM_MODE_ROM), 0);
        audit_ok(&e);
        assert_int_equal(hw_walk(&e, ROM_GPA + 0x1000, PGM_ACCESS_WRITE).res, HW_VIOLATION);
        assert_int_equal(hw_access(&e, ROM_GPA + 0x1004, false, &v, false), PGM_FAULT_RESUME);
        assert_int_equal(v, want);
        nenv_destroy(&e);
    }
}

/* ---- MMIO through the emulator, and the fast-exit marker ---- */

static void
mmio(enum pgm_paging_hw fmt, uint32_t host_maxphy)
{
    struct nenv e;
    assert_int_equal(nenv_create(&e, fmt, 0, true, host_maxphy), 0);
    assert_int_equal(pgm_phys_add_ram(e.vm, 0, 16ull << 20), 0);
    assert_int_equal(pgm_phys_add_mmio(e.vm, MMIO_GPA, 0x1000), 0);
    struct mmio_dev dev = { .answer = PGM_HANDLER_HANDLED };
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_MMIO, .gpa = MMIO_GPA, .size = 0x1000,
                                  .fn = dev_fn, .user = &dev };
    assert_int_equal(pgm_handler_register(e.vm, &h), 0);
    bool marker = fmt == PGM_PAGING_EPT || host_maxphy < 52;

    uint32_t v = 0xabcd0123;
    assert_int_equal(hw_access(&e, MMIO_GPA + 0x30, true, &v, true), PGM_FAULT_EMULATED);
    assert_int_equal(dev.calls, 1);
    assert_true(dev.write);
    assert_int_equal(dev.gpa, MMIO_GPA + 0x30);
    assert_int_equal(dev.value, 0xabcd0123);
    assert_int_equal(e.regs.rip, CODE_GPA + 2);
    audit_ok(&e);
    /* The second access exits through the marker (or as not present). */
    struct hw_walk w = hw_walk(&e, MMIO_GPA + 0x30, 0);
    assert_int_equal(w.res, marker ? HW_MISCONFIG : HW_VIOLATION);
    dev.value = 0x5a5a1234;
    v = 0;
    assert_int_equal(hw_access(&e, MMIO_GPA + 0x30, false, &v, true), PGM_FAULT_EMULATED);
    assert_int_equal(v, 0x5a5a1234);
    assert_int_equal(dev.calls, 2);
    assert_false(dev.write);
    struct pgm_stats s = nstats(&e);
    assert_int_equal(s.nested_mmio_fast, marker ? 1 : 0);
    assert_int_equal(s.nested_emulations, 2);
    /* No registers: EXIT with the access described. */
    assert_int_equal(hw_access(&e, MMIO_GPA + 0x40, true, &v, false), PGM_FAULT_EXIT);
    assert_int_equal(e.out.exit_reason, PGM_EXIT_EMULATE);
    assert_int_equal(e.out.exit_gpa, MMIO_GPA + 0x40);
    /* A handler that says EXIT. */
    dev.answer = PGM_HANDLER_EXIT;
    assert_int_equal(hw_access(&e, MMIO_GPA + 0x30, true, &v, true), PGM_FAULT_EXIT);
    assert_int_equal(e.out.exit_reason, PGM_EXIT_HANDLER);
    assert_int_equal(e.out.exit_gpa, MMIO_GPA + 0x30);
    audit_ok(&e);
    /* Removing the MMIO range takes the marker with it, with a flush first. */
    assert_int_equal(pgm_handler_deregister(e.vm, MMIO_GPA), 0);
    assert_int_equal(pgm_phys_remove(e.vm, MMIO_GPA), 0);
    audit_ok(&e);
    assert_int_equal(hw_walk(&e, MMIO_GPA + 0x30, 0).res, HW_VIOLATION);
    /* Unassigned now: reads all-ones, writes dropped, by emulation. */
    v = 0;
    assert_int_equal(hw_access(&e, MMIO_GPA + 0x30, false, &v, true), PGM_FAULT_EMULATED);
    assert_int_equal(v, 0xffffffffu);
    v = 7;
    assert_int_equal(hw_access(&e, MMIO_GPA + 0x30, true, &v, true), PGM_FAULT_EMULATED);
    assert_int_equal(hw_walk(&e, MMIO_GPA + 0x30, 0).res, HW_VIOLATION);
    audit_ok(&e);
    nenv_destroy(&e);
}

static void
test_mmio(void **state)
{
    (void)state;
    mmio(PGM_PAGING_EPT, 46);
    mmio(PGM_PAGING_NPT, 46);
    mmio(PGM_PAGING_NPT, 52); /* no reserved address bit: no marker */
}

/* A stale marker (the map changed under a fast exit) takes the ordinary path. */
static void
test_misconfig_stale(void **state)
{
    (void)state;
    struct nenv e;
    make_env(&e, PGM_PAGING_EPT, 0, true);
    struct pgm_nested_fault_info info = { .flags = PGM_NESTED_FI_MISCONFIG };
    assert_int_equal(pgm_nested_fault(e.vcpu, 0x3000, 0, &info, NULL, &e.out), 0);
    assert_int_equal(e.out.result, PGM_FAULT_RESUME); /* RAM: simply mapped */
    assert_int_equal(nstats(&e).nested_mmio_fast, 0);
    assert_int_equal(hw_walk(&e, 0x3000, 0).res, HW_OK);
    audit_ok(&e);
    nenv_destroy(&e);
}

/* ---- handlers on mapped pages ---- */

static void
handlers(enum pgm_paging_hw fmt)
{
    struct nenv e;
    make_env(&e, fmt, 0, true);
    const pgm_gpa_t page = 0x20000;
    uint32_t v = 0x1111;
    assert_int_equal(hw_access(&e, page, true, &v, false), PGM_FAULT_RESUME);
    assert_int_equal(hw_access(&e, page + 0x1000, true, &v, false), PGM_FAULT_RESUME);
    assert_true(hw_walk(&e, page, PGM_ACCESS_WRITE).writable);

    struct mmio_dev dev = { .answer = PGM_HANDLER_DEFAULT };
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = page, .size = 0x2000,
                                  .fn = dev_fn, .user = &dev };
    uint64_t before = g_flush.requests, maps = nstats(&e).nested_maps;
    assert_int_equal(pgm_handler_register(e.vm, &h), 0);
    /* Both leaves made read-only in place, one batched flush for the two. */
    assert_int_equal(g_flush.requests - before, 1);
    assert_int_equal(nstats(&e).nested_maps - maps, 2);
    audit_ok(&e);
    assert_int_equal(hw_walk(&e, page, PGM_ACCESS_WRITE).res, HW_VIOLATION);
    assert_int_equal(hw_walk(&e, page + 0x1000, PGM_ACCESS_WRITE).res, HW_VIOLATION);
    assert_int_equal(hw_walk(&e, page, 0).res, HW_OK); /* reads still run free */
    /* A guest write is emulated and reaches the handler, then lands (DEFAULT). */
    v = 0x2222;
    assert_int_equal(hw_access(&e, page + 4, true, &v, true), PGM_FAULT_EMULATED);
    assert_int_equal(dev.calls, 1);
    assert_int_equal(dev.value, 0x2222);
    uint32_t back;
    assert_int_equal(pgm_phys_read(e.vm, page + 4, &back, 4), 0);
    assert_int_equal(back, 0x2222);
    audit_ok(&e);
    /* temp_off widens lazily: the next write faults once and then runs free. */
    assert_int_equal(pgm_handler_temp_off(e.vm, page), 0);
    before = g_flush.requests;
    v = 0x3333;
    assert_int_equal(hw_access(&e, page + 8, true, &v, false), PGM_FAULT_RESUME);
    assert_int_equal(dev.calls, 1);
    assert_int_equal(g_flush.requests, before); /* widening needs no flush */
    audit_ok(&e);
    /* reset re-arms: read-only again, flushed. */
    assert_int_equal(pgm_handler_reset(e.vm, page), 0);
    assert_int_equal(g_flush.requests - before, 1);
    assert_int_equal(hw_walk(&e, page, PGM_ACCESS_WRITE).res, HW_VIOLATION);
    audit_ok(&e);
    /* Deregister: leaves widened in place, no flush. */
    before = g_flush.requests;
    assert_int_equal(pgm_handler_deregister(e.vm, page), 0);
    assert_int_equal(g_flush.requests, before);
    assert_int_equal(hw_walk(&e, page, PGM_ACCESS_WRITE).res, HW_OK);
    audit_ok(&e);

    /* An ALL handler: the leaf becomes the marker (or goes); reads emulated too. */
    struct mmio_dev all = { .answer = PGM_HANDLER_HANDLED, .value = 0x77 };
    struct pgm_phys_handler ha = { .kind = PGM_HANDLER_ALL, .gpa = page, .size = 0x1000,
                                   .fn = dev_fn, .user = &all };
    before = g_flush.requests;
    assert_int_equal(pgm_handler_register(e.vm, &ha), 0);
    assert_int_equal(g_flush.requests - before, 1);
    assert_int_equal(g_flush.last_addr, page);
    audit_ok(&e);
    assert_int_equal(hw_walk(&e, page, 0).res, HW_MISCONFIG);
    v = 0;
    assert_int_equal(hw_access(&e, page, false, &v, true), PGM_FAULT_EMULATED);
    assert_int_equal(v, 0x77);
    assert_int_equal(all.calls, 1);
    /* Move it: the old page maps again on demand, the new one is refused. */
    assert_int_equal(pgm_handler_modify(e.vm, page, page + 0x1000, 0x1000), 0);
    audit_ok(&e);
    assert_int_equal(hw_walk(&e, page + 0x1000, 0).res, HW_MISCONFIG);
    assert_int_equal(pgm_handler_deregister(e.vm, page + 0x1000), 0);
    audit_ok(&e);
    assert_int_equal(hw_access(&e, page, false, &v, false), PGM_FAULT_RESUME);
    assert_int_equal(v, 0x1111); /* mapped again: the first write's data */
    audit_ok(&e);
    nenv_destroy(&e);
}

static void
test_handlers(void **state)
{
    (void)state;
    handlers(PGM_PAGING_EPT);
    handlers(PGM_PAGING_NPT);
}

/* ---- 5-level nested tables ---- */

static void
test_five_levels(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        struct nenv e;
        memset(&e, 0, sizeof(e));
        assert_int_equal(nenv_create(&e, formats[f], 0, true, 0), 0);
        /* Recreate with a 5-level walk (EPT: the capability bit too). */
        pgm_vm_destroy(e.vm);
        e.ncfg.levels = 5;
        e.ncfg.ept_caps |= 1ull << 7;
        assert_int_equal(nenv_create_vm(&e), 0);
        assert_int_equal(e.ri.levels, 5);
        const pgm_gpa_t high = 1ull << 48; /* needs the fifth level */
        assert_int_equal(pgm_phys_add_ram(e.vm, high, 1ull << 20), 0);
        uint32_t v = 0x55aa;
        assert_int_equal(hw_access(&e, high + 0x3000, true, &v, false), PGM_FAULT_RESUME);
        assert_int_equal(hw_walk(&e, high + 0x3000, PGM_ACCESS_WRITE).res, HW_OK);
        assert_int_equal(nstats(&e).nested_table_pages, 5);
        assert_int_equal(pgm_nested_fault(e.vcpu, 1ull << 57, 0, NULL, NULL, &e.out), 0);
        assert_true(e.out.result == PGM_FAULT_EXIT && e.out.exit_reason == PGM_EXIT_EMULATE);
        uint32_t back;
        assert_int_equal(pgm_phys_read(e.vm, high + 0x3000, &back, 4), 0);
        assert_int_equal(back, 0x55aa);
        if (formats[f] == PGM_PAGING_EPT) {
            uint64_t eptp;
            struct pgm_vtx_ept_caps caps;
            struct pgm_vtx_eptp d;
            assert_int_equal(pgm_nested_root(e.vm, &eptp), 0);
            pgm_vtx_decode_ept_caps(e.ncfg.ept_caps, &caps);
            assert_int_equal(pgm_vtx_eptp_check(&caps, 46, eptp, &d), 0);
            assert_int_equal(d.levels, 5);
        }
        audit_ok(&e);
        nenv_destroy(&e);
    }
}

/* RAM beyond a 4-level walk's reach: never mapped (its faults are finished by
 * emulation), and its changes never touch low entries. */
static void
test_beyond_reach(void **state)
{
    (void)state;
    struct nenv e;
    make_env(&e, PGM_PAGING_EPT, 0, true);
    const pgm_gpa_t far = 1ull << 48; /* aliases GPA 0 in a 4-level tree */
    assert_int_equal(pgm_phys_add_ram(e.vm, far, 1ull << 20), 0);
    uint32_t v = 3;
    assert_int_equal(hw_access(&e, 0x0, true, &v, false), PGM_FAULT_RESUME);
    assert_int_equal(pgm_nested_fault(e.vcpu, far, PGM_ACCESS_WRITE, NULL, NULL, &e.out), 0);
    assert_true(e.out.result == PGM_FAULT_EXIT && e.out.exit_reason == PGM_EXIT_EMULATE &&
                e.out.exit_gpa == far && e.out.exit_write);
    assert_true(hw_walk(&e, 0x0, PGM_ACCESS_WRITE).writable); /* GPA 0's leaf kept */
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = far, .size = 0x1000,
                                  .fn = (pgm_phys_handler_fn)(void (*)(void))abort };
    assert_int_equal(pgm_handler_register(e.vm, &h), 0);
    assert_true(hw_walk(&e, 0x0, PGM_ACCESS_WRITE).writable); /* GPA 0 untouched */
    assert_int_equal(pgm_handler_deregister(e.vm, far), 0);
    assert_int_equal(pgm_phys_remove(e.vm, far), 0);
    assert_true(hw_walk(&e, 0x0, PGM_ACCESS_WRITE).writable);
    audit_ok(&e);
    nenv_destroy(&e);
}

/* ---- range removal ---- */

static void
test_remove_range(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        struct nenv e;
        make_env(&e, formats[f], 0, f == 0);
        assert_int_equal(pgm_phys_add_ram(e.vm, 64ull << 20, 4ull << 20), 0);
        uint32_t v = 5;
        for (pgm_gpa_t a = 64ull << 20; a < (68ull << 20); a += 0x81000)
            assert_int_equal(hw_access(&e, a, true, &v, false), PGM_FAULT_RESUME);
        uint64_t tables = nstats(&e).nested_table_pages;
        uint64_t before = g_flush.requests;
        assert_int_equal(pgm_phys_remove(e.vm, 64ull << 20), 0);
        assert_int_equal(g_flush.requests - before, 1);
        assert_int_equal(g_flush.last_addr, 0); /* a full flush */
        /* The two PTs (and the 2 MiB-aligned windows' tables) went with it. */
        assert_true(nstats(&e).nested_table_pages < tables);
        audit_ok(&e);
        assert_int_equal(hw_walk(&e, 64ull << 20, 0).res, HW_VIOLATION);
        nenv_destroy(&e);
    }
}

/* ---- exit-decoding helpers ---- */

static void
test_info_helpers(void **state)
{
    (void)state;
    struct pgm_nested_fault_info info;
    uint32_t access;
    struct pgm_vtx_ept_violation v;
    /* Recorded qualification: write, GLA valid, translated access (0x182). */
    assert_int_equal(pgm_vtx_decode_ept_violation(0x182, 0x1234000, 0x7fff0000, false, &v), 0);
    assert_int_equal(pgm_nested_info_from_ept(&v, &info, &access), 0);
    assert_int_equal(access, PGM_ACCESS_WRITE);
    assert_int_equal(info.flags, PGM_NESTED_FI_GVA_VALID);
    assert_int_equal(info.gva, 0x7fff0000);
    /* A read during the guest's own walk: GLA valid, bit 8 clear (0x81). */
    assert_int_equal(pgm_vtx_decode_ept_violation(0x81, 0x2000, 0x1000, false, &v), 0);
    assert_int_equal(pgm_nested_info_from_ept(&v, &info, &access), 0);
    assert_int_equal(access, PGM_ACCESS_READ);
    assert_int_equal(info.flags, PGM_NESTED_FI_GVA_VALID | PGM_NESTED_FI_GUEST_WALK);
    /* NPF: fetch, not present, final translation. */
    struct pgm_svm_npf npf;
    assert_int_equal(pgm_svm_decode_npf(PGM_SVM_NPF_FINAL | 0x14, 0x5000, &npf), 0);
    assert_int_equal(pgm_nested_info_from_npf(&npf, &info, &access), 0);
    assert_int_equal(access, PGM_ACCESS_FETCH);
    assert_int_equal(info.flags, 0);
    /* NPF: reserved bit (P | RSVD | W): the MMIO fast path. */
    assert_int_equal(pgm_svm_decode_npf(PGM_SVM_NPF_FINAL | 0xb, 0x5000, &npf), 0);
    assert_int_equal(pgm_nested_info_from_npf(&npf, &info, &access), 0);
    assert_int_equal(access, PGM_ACCESS_WRITE);
    assert_int_equal(info.flags, PGM_NESTED_FI_MISCONFIG);
    /* NPF during the guest walk. */
    assert_int_equal(pgm_svm_decode_npf(PGM_SVM_NPF_GUEST_WALK | 0x1, 0x5000, &npf), 0);
    assert_int_equal(pgm_nested_info_from_npf(&npf, &info, &access), 0);
    assert_int_equal(info.flags, PGM_NESTED_FI_GUEST_WALK);
    /* Vendor-neutral events. */
    struct pgm_vtx_exit_fields fl = { .exit_reason = PGM_VTX_EXIT_EPT_MISCONFIG,
                                      .guest_physical_address = 0xfee00040 };
    struct pgm_hwvirt_event ev;
    assert_int_equal(pgm_vtx_decode_exit(&fl, NULL, &ev), 0);
    pgm_gpa_t gpa;
    assert_int_equal(pgm_nested_info_from_event(&ev, &info, &access, &gpa), 0);
    assert_int_equal(gpa, 0xfee00040);
    assert_int_equal(info.flags, PGM_NESTED_FI_MISCONFIG);
    fl = (struct pgm_vtx_exit_fields){ .exit_reason = PGM_VTX_EXIT_EPT_VIOLATION,
                                       .exit_qualification = 0x182,
                                       .guest_linear_address = 0x400000,
                                       .guest_physical_address = 0x9000 };
    assert_int_equal(pgm_vtx_decode_exit(&fl, NULL, &ev), 0);
    assert_int_equal(pgm_nested_info_from_event(&ev, &info, &access, &gpa), 0);
    assert_int_equal(gpa, 0x9000);
    assert_int_equal(access, PGM_ACCESS_WRITE);
    assert_int_equal(info.flags, PGM_NESTED_FI_GVA_VALID);
    assert_int_equal(info.gva, 0x400000);
    ev.kind = PGM_HWVIRT_PAGE_FAULT;
    assert_int_equal(pgm_nested_info_from_event(&ev, &info, &access, &gpa), -EINVAL);
    assert_int_equal(pgm_nested_info_from_ept(NULL, &info, &access), -EINVAL);
}

/* ---- guest walks on a nested VM: the guest's tables through the GPA layer ---- */

static void
test_guest_walk(void **state)
{
    (void)state;
    struct nenv e;
    make_env(&e, PGM_PAGING_EPT, 0, true);
    uint64_t pte[4][2] = { { 0x1000, 0x2000 | 7 }, { 0x2000, 0x3000 | 7 }, { 0x3000, 0x4000 | 7 },
                           { 0x4000 + 8 * 5, 0x9000 | 3 } };
    for (int i = 0; i < 4; i++)
        assert_int_equal(pgm_phys_write(e.vm, pte[i][0], &pte[i][1], 8), 0);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG, .cr4 = PGM_CR4_PAE,
                                .efer = PGM_EFER_LME, .cr3 = 0x1000 };
    assert_int_equal(pgm_set_cpu_state(e.vcpu, &st, 0), 0);
    struct pgm_walk w;
    assert_int_equal(pgm_walk(e.vcpu, 0x5123, PGM_ACCESS_WRITE, &w), 0);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_int_equal(w.gpa, 0x9123);
    /* The walk set D in the guest PTE, through the physical layer. */
    uint64_t got;
    assert_int_equal(pgm_phys_read(e.vm, 0x4000 + 8 * 5, &got, 8), 0);
    assert_int_equal(got, 0x9000 | 3 | 0x60);
    audit_ok(&e);
    nenv_destroy(&e);
}

/* ---- several vCPUs: every flush reaches each; concurrent faults and handler changes ---- */

struct racer {
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    unsigned seed;
    unsigned resumes, exits;
};

static void *
race_faults(void *arg)
{
    struct racer *r = arg;
    struct pgm_fault_out out;
    for (unsigned i = 0; i < 20000; i++) {
        r->seed = r->seed * 1103515245u + 12345u;
        pgm_gpa_t gpa = ((pgm_gpa_t)(r->seed >> 8) % 2048) << 12;
        uint32_t access = (r->seed & 1) ? PGM_ACCESS_WRITE : 0;
        if (pgm_nested_fault(r->vcpu, gpa, access, NULL, NULL, &out) != 0)
            abort();
        if (out.result == PGM_FAULT_RESUME)
            r->resumes++;
        else
            r->exits++;
    }
    return NULL;
}

static void
test_vcpus_and_threads(void **state)
{
    (void)state;
    struct nenv e;
    make_env(&e, PGM_PAGING_EPT, PGM_NESTED_LARGE_2M, true);
    /* Rebuild the VM with 3 vCPUs over the same backend. */
    pgm_vm_destroy(e.vm);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_EPT;
    cfg.vcpu_count = 3;
    cfg.backend = &e.ops;
    cfg.backend_ctx = e.sb;
    cfg.nested = &e.ncfg;
    assert_int_equal(pgm_vm_create(&cfg, &e.vm), 0);
    assert_int_equal(pgm_phys_add_ram(e.vm, 0, 16ull << 20), 0);
    assert_int_equal(pgm_nested_info(e.vm, &e.ri), 0);
    e.vcpu = pgm_vcpu_get(e.vm, 0);
    uint32_t v = 1;
    assert_int_equal(hw_access(&e, 0x30000, true, &v, false), PGM_FAULT_RESUME);
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = 0x30000, .size = 0x1000,
                                  .fn = (pgm_phys_handler_fn)(void (*)(void))abort };
    uint64_t before = g_flush.requests, nf = nstats(&e).nested_flushes;
    assert_int_equal(pgm_handler_register(e.vm, &h), 0);
    assert_int_equal(g_flush.requests - before, 3); /* one request, to each vCPU */
    assert_int_equal(nstats(&e).nested_flushes - nf, 1);
    assert_int_equal(pgm_handler_deregister(e.vm, 0x30000), 0);
    audit_ok(&e);

    struct racer r[2] = { { e.vm, pgm_vcpu_get(e.vm, 1), 1, 0, 0 },
                          { e.vm, pgm_vcpu_get(e.vm, 2), 2, 0, 0 } };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_faults, &r[i]), 0);
    for (unsigned k = 0; k < 200; k++) {
        h.gpa = (pgm_gpa_t)(k % 8) << 21 | 0x5000;
        assert_int_equal(pgm_handler_register(e.vm, &h), 0);
        assert_int_equal(pgm_handler_deregister(e.vm, h.gpa), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    audit_ok(&e);
    struct pgm_stats s = nstats(&e);
    print_message("# threads: %u + %u resumed, %u + %u exits, %llu spurious, %llu splits, "
                  "%llu merges\n", r[0].resumes, r[1].resumes, r[0].exits, r[1].exits,
                  (unsigned long long)s.nested_spurious, (unsigned long long)s.nested_splits,
                  (unsigned long long)s.nested_merges);
    assert_int_equal(r[0].resumes + r[0].exits, 20000);
    nenv_destroy(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_and_root),
        cmocka_unit_test(test_first_touch),
        cmocka_unit_test(test_rom),
        cmocka_unit_test(test_mmio),
        cmocka_unit_test(test_misconfig_stale),
        cmocka_unit_test(test_handlers),
        cmocka_unit_test(test_five_levels),
        cmocka_unit_test(test_beyond_reach),
        cmocka_unit_test(test_remove_range),
        cmocka_unit_test(test_info_helpers),
        cmocka_unit_test(test_guest_walk),
        cmocka_unit_test(test_vcpus_and_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
