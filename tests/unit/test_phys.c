/* SPDX-License-Identifier: MIT */
/* Guest-physical memory: ranges, lazy RAM, ROM, MMIO, unassigned space. */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

static void
test_overlap_and_alignment(void **state)
{
    struct fixture *f = *state;
    /* fixture RAM is [0, 16 MiB) */
    assert_int_equal(pgm_phys_add_ram(f->vm, 0x800000, 0x1000), -EEXIST);
    assert_int_equal(pgm_phys_add_ram(f->vm, FIX_RAM_SIZE - 0x1000, 0x2000), -EEXIST);
    assert_int_equal(pgm_phys_add_rom(f->vm, 0, 0x1000, NULL, 0), -EEXIST);
    assert_int_equal(pgm_phys_add_ram(f->vm, 0x1000001, 0x1000), -EINVAL);
    assert_int_equal(pgm_phys_add_ram(f->vm, 0x2000000, 0x800), -EINVAL);
    assert_int_equal(pgm_phys_add_ram(f->vm, 0x2000000, 0), -EINVAL);
    /* beyond MAXPHYADDR (52) and wrapping */
    assert_int_equal(pgm_phys_add_ram(f->vm, 1ull << 52, 0x1000), -EINVAL);
    assert_int_equal(pgm_phys_add_ram(f->vm, (1ull << 52) - 0x1000, 0x2000), -EINVAL);
    assert_int_equal(pgm_phys_add_ram(f->vm, 0xfffffffffffff000ull, 0x2000), -EINVAL);
    /* adjacent is fine, on both sides of a hole */
    assert_int_equal(pgm_phys_add_ram(f->vm, FIX_RAM_SIZE, 0x1000), 0);
    assert_int_equal(pgm_phys_add_mmio(f->vm, FIX_RAM_SIZE + 0x2000, 0x1000), 0);
    assert_int_equal(pgm_phys_add_ram(f->vm, FIX_RAM_SIZE + 0x1000, 0x1000), 0);
    assert_int_equal(pgm_phys_add_ram(f->vm, FIX_RAM_SIZE + 0x2000, 0x1000), -EEXIST);
    struct pgm_phys_info info;
    pgm_phys_info(f->vm, &info);
    assert_int_equal(info.ranges, 4);
    assert_int_equal(info.ram_pages, (FIX_RAM_SIZE >> 12) + 2);
    assert_int_equal(info.mmio_pages, 1);
}

static void
test_ram_is_lazy(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[8192];
    struct pgm_phys_info info;

    memset(buf, 0xaa, sizeof(buf));
    assert_int_equal(pgm_phys_read(f->vm, 0x3000, buf, sizeof(buf)), 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
    pgm_phys_info(f->vm, &info);
    assert_int_equal(info.allocated_pages, 0);
    uint64_t arena_before = pgm_soft_backend_pages_in_use(f->sb);
    bool paged = pgm_soft_backend_blocks_in_use(f->sb) == 0;
    assert_int_equal(arena_before, 0);

    /* A write straddling two pages materialises exactly those two. */
    memset(buf, 0x5c, 16);
    assert_int_equal(pgm_phys_write(f->vm, 0x4ff8, buf, 16), 0);
    pgm_phys_info(f->vm, &info);
    assert_int_equal(info.allocated_pages, 2);
    /* page-by-page backing takes them from the arena; a block needs none */
    assert_int_equal(pgm_soft_backend_pages_in_use(f->sb), paged ? 2 : 0);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(pgm_phys_read(f->vm, 0x4ff0, buf, 32), 0);
    for (int i = 0; i < 32; i++)
        assert_int_equal(buf[i], i >= 8 && i < 24 ? 0x5c : 0);
    struct pgm_stats st;
    pgm_stats(f->vm, &st);
    assert_int_equal(st.ram_pages_allocated, 2);
}

static void
test_unassigned_and_boundaries(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[16];
    /* RAM up to 16 MiB, then nothing: the last 4 bytes read all-ones. */
    uint32_t v = 0x11223344;
    assert_int_equal(pgm_phys_write(f->vm, FIX_RAM_SIZE - 4, &v, 4), 0);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(pgm_phys_read(f->vm, FIX_RAM_SIZE - 4, buf, 8), 0);
    assert_memory_equal(buf, "\x44\x33\x22\x11\xff\xff\xff\xff", 8);
    /* writes to nothing are dropped, and the RAM part still lands */
    memset(buf, 0x77, sizeof(buf));
    assert_int_equal(pgm_phys_write(f->vm, FIX_RAM_SIZE - 2, buf, 4), 0);
    assert_int_equal(pgm_phys_read(f->vm, FIX_RAM_SIZE - 4, buf, 8), 0);
    assert_memory_equal(buf, "\x44\x33\x77\x77\xff\xff\xff\xff", 8);
    assert_int_equal(pgm_phys_kind_at(f->vm, FIX_RAM_SIZE), PGM_PHYS_UNASSIGNED);
    assert_int_equal(pgm_phys_kind_at(f->vm, 0), PGM_PHYS_RAM);
    /* a span that wraps the address space is refused */
    assert_int_equal(pgm_phys_read(f->vm, UINT64_MAX - 3, buf, 8), -EINVAL);
    assert_int_equal(pgm_phys_read(f->vm, 0, NULL, 8), -EINVAL);
    assert_int_equal(pgm_phys_read(f->vm, 0, NULL, 0), 0);
}

static void
test_rom(void **state)
{
    struct fixture *f = *state;
    uint8_t image[6000];
    for (size_t i = 0; i < sizeof(image); i++)
        image[i] = (uint8_t)(i * 7);
    assert_int_equal(pgm_phys_add_rom(f->vm, 0xf0000, 0x1000, image, 0x1001), -EINVAL);
    assert_int_equal(pgm_phys_add_rom(f->vm, 0x2000000, 0x2000, image, sizeof(image)), 0);
    uint8_t buf[0x2000];
    assert_int_equal(pgm_phys_read(f->vm, 0x2000000, buf, sizeof(buf)), 0);
    assert_memory_equal(buf, image, sizeof(image));
    for (size_t i = sizeof(image); i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0); /* padded with zeros */
    memset(buf, 0xee, 64);
    assert_int_equal(pgm_phys_write(f->vm, 0x2000ff0, buf, 64), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0x2000ff0, buf, 64), 0);
    assert_memory_equal(buf, image + 0xff0, 64);
    assert_int_equal(pgm_phys_kind_at(f->vm, 0x2001fff), PGM_PHYS_ROM);
}

static void
test_rom_shadow_modes(void **state)
{
    struct fixture *f = *state;
    uint8_t image[0x2000];
    for (size_t i = 0; i < sizeof(image); i++)
        image[i] = (uint8_t)(i ^ 0x5a);
    assert_int_equal(pgm_phys_add_rom(f->vm, 0x3000000, 0x2000, image, sizeof(image)), 0);
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0x3001000, PGM_ROM_MODE_SHADOW_RW), -ENOENT);
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0, PGM_ROM_MODE_SHADOW_RW), -ENOENT);
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0x3000000, (enum pgm_rom_mode)7), -EINVAL);
    uint32_t v = 0xdeadbeef, got;

    /* shadow RW: starts as a copy of the image, takes writes */
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0x3000000, PGM_ROM_MODE_SHADOW_RW), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0x3001ffc, &got, 4), 0);
    assert_memory_equal(&got, image + 0x1ffc, 4);
    assert_int_equal(pgm_phys_write(f->vm, 0x3000010, &v, 4), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0x3000010, &got, 4), 0);
    assert_true(got == 0xdeadbeef);
    /* back to ROM: the image, untouched */
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0x3000000, PGM_ROM_MODE_ROM), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0x3000010, &got, 4), 0);
    assert_memory_equal(&got, image + 0x10, 4);
    /* shadow RO: the copy with what was written, writes dropped */
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0x3000000, PGM_ROM_MODE_SHADOW_RO), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0x3000010, &got, 4), 0);
    assert_true(got == 0xdeadbeef);
    v = 1;
    assert_int_equal(pgm_phys_write(f->vm, 0x3000010, &v, 4), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0x3000010, &got, 4), 0);
    assert_true(got == 0xdeadbeef);

    /* the walker reads the current view, and sets A only in the writable copy */
    uint64_t pte = 0x5003, e;
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0x3000000, PGM_ROM_MODE_SHADOW_RW), 0);
    assert_int_equal(pgm_phys_write(f->vm, 0x3000008, &pte, 8), 0);
    put64(f, 0x1000, 0x2003);
    put64(f, 0x2000, 0x3003);
    put64(f, 0x3000, 0x3000003);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG, .cr4 = PGM_CR4_PAE,
                                .efer = PGM_EFER_LME, .cr3 = 0x1000 };
    assert_int_equal(pgm_set_cpu_state(f->vcpu, &st, 0), 0);
    struct pgm_walk w;
    assert_int_equal(pgm_walk(f->vcpu, 0x1000, 0, &w), 0);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_true(w.gpa == 0x5000);
    pgm_phys_read(f->vm, 0x3000008, &e, 8);
    assert_true(e == 0x5023);
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0x3000000, PGM_ROM_MODE_ROM), 0);
    assert_int_equal(pgm_walk(f->vcpu, 0x1000, 0, &w), 0);
    assert_int_equal(w.status, PGM_WALK_PAGE_FAULT); /* the image has no PTE there */

    /* the copy is allocated once; failure to allocate it changes nothing */
    assert_int_equal(pgm_phys_add_rom(f->vm, 0x3100000, 0x1000, image, 16), 0);
    pgm_soft_backend_fail_after(f->sb, 0);
    assert_int_equal(pgm_phys_rom_set_mode(f->vm, 0x3100000, PGM_ROM_MODE_SHADOW_RW), -ENOMEM);
    pgm_soft_backend_fail_after(f->sb, -1);
    v = 0x77;
    assert_int_equal(pgm_phys_write(f->vm, 0x3100000, &v, 4), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0x3100000, &got, 4), 0);
    assert_memory_equal(&got, image, 4);
}

static void
test_mmio_without_handler(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(pgm_phys_add_mmio(f->vm, 0xfee00000, 0x1000), 0);
    uint8_t buf[8] = { 0 };
    assert_int_equal(pgm_phys_read(f->vm, 0xfee00000, buf, 4), -ENODEV);
    assert_memory_equal(buf, "\xff\xff\xff\xff", 4);
    assert_int_equal(pgm_phys_write(f->vm, 0xfee00000, buf, 4), -ENODEV);
    /* a span touching RAM and MMIO reports MMIO but does the RAM part */
    assert_int_equal(pgm_phys_add_mmio(f->vm, FIX_RAM_SIZE, 0x1000), 0);
    uint32_t v = 0xcafef00d;
    assert_int_equal(pgm_phys_write(f->vm, FIX_RAM_SIZE - 4, (uint8_t[8]){ 1, 2, 3, 4, 5, 6, 7, 8 },
                                    8), -ENODEV);
    assert_int_equal(pgm_phys_read(f->vm, FIX_RAM_SIZE - 4, &v, 4), 0);
    assert_int_equal(v, 0x04030201);
}

static void
test_remove(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(pgm_phys_add_ram(f->vm, 0x4000000, 0x10000), 0);
    uint64_t v = 42;
    assert_int_equal(pgm_phys_write(f->vm, 0x4008000, &v, 8), 0);
    uint64_t pages_before = pgm_soft_backend_pages_in_use(f->sb);
    uint64_t blocks_before = pgm_soft_backend_blocks_in_use(f->sb);
    assert_int_equal(pgm_phys_remove(f->vm, 0x4001000), -ENOENT);
    assert_int_equal(pgm_phys_remove(f->vm, 0x4000000), 0);
    /* the range's host memory goes back: one page, or its whole block */
    assert_int_equal(pgm_soft_backend_pages_in_use(f->sb) + pgm_soft_backend_blocks_in_use(f->sb),
                     pages_before + blocks_before - 1);
    assert_int_equal(pgm_phys_kind_at(f->vm, 0x4008000), PGM_PHYS_UNASSIGNED);
    assert_int_equal(pgm_phys_read(f->vm, 0x4008000, &v, 8), 0);
    assert_true(v == UINT64_MAX);
    /* the space can be reused */
    assert_int_equal(pgm_phys_add_ram(f->vm, 0x4000000, 0x1000), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0x4000000, &v, 8), 0);
    assert_true(v == 0);
}

/* Page-by-page backing only: a block has its memory from the start. */
static void
test_host_memory_exhaustion(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[3 * 4096];
    memset(buf, 1, sizeof(buf));
    pgm_soft_backend_fail_after(f->sb, 1);
    /* the first page is written, the second cannot be allocated, the third untouched */
    assert_int_equal(pgm_phys_write(f->vm, 0x100000, buf, sizeof(buf)), -ENOMEM);
    pgm_soft_backend_fail_after(f->sb, -1);
    uint8_t b = 0;
    pgm_phys_read(f->vm, 0x100000, &b, 1);
    assert_int_equal(b, 1);
    pgm_phys_read(f->vm, 0x101000, &b, 1);
    assert_int_equal(b, 0);
    pgm_phys_read(f->vm, 0x102000, &b, 1);
    assert_int_equal(b, 0);
    /* ROM needs its pages up front */
    pgm_soft_backend_fail_after(f->sb, 0);
    assert_int_equal(pgm_phys_add_rom(f->vm, 0x3000000, 0x1000, buf, 16), -ENOMEM);
    pgm_soft_backend_fail_after(f->sb, -1);
    assert_int_equal(pgm_phys_kind_at(f->vm, 0x3000000), PGM_PHYS_UNASSIGNED);
}

static void
test_block_fallback(void **state)
{
    (void)state;
    /* a backend that cannot give a block: libpgm falls back to pages */
    struct pgm_soft_backend *sb;
    assert_int_equal(pgm_soft_backend_create(64, &sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = sb;
    struct pgm_vm *vm;
    assert_int_equal(pgm_vm_create(&cfg, &vm), 0);
    pgm_soft_backend_fail_after(sb, 0);
    assert_int_equal(pgm_phys_add_ram(vm, 0, 1ull << 20), 0);
    pgm_soft_backend_fail_after(sb, -1);
    assert_int_equal(pgm_soft_backend_blocks_in_use(sb), 0);
    uint64_t v = 7;
    assert_int_equal(pgm_phys_write(vm, 0x1000, &v, 8), 0);
    assert_int_equal(pgm_soft_backend_pages_in_use(sb), 1);
    pgm_vm_destroy(vm);
    assert_int_equal(pgm_soft_backend_pages_in_use(sb), 0);
    pgm_soft_backend_destroy(sb);
}

int
main(void)
{
    /* Every test runs on block-backed RAM and again on page-by-page RAM. */
#define BOTH(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown), \
                 cmocka_unit_test_setup_teardown(fn, fixture_setup_paged, fixture_teardown)
    const struct CMUnitTest tests[] = {
        BOTH(test_overlap_and_alignment),
        BOTH(test_ram_is_lazy),
        BOTH(test_unassigned_and_boundaries),
        BOTH(test_rom),
        BOTH(test_rom_shadow_modes),
        BOTH(test_mmio_without_handler),
        BOTH(test_remove),
        cmocka_unit_test_setup_teardown(test_host_memory_exhaustion, fixture_setup_paged,
                                        fixture_teardown),
        cmocka_unit_test(test_block_fallback),
    };
#undef BOTH
    return cmocka_run_group_tests_name("phys", tests, NULL, NULL);
}
