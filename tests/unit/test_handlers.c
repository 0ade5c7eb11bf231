/* SPDX-License-Identifier: MIT */
/*
 * Physical access handlers: registration rules, dispatch of phys reads and
 * writes (HANDLED / DEFAULT / EXIT, split accesses), temp-off and reset,
 * move/resize, and the per-page state.
 */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

struct log {
    unsigned calls;
    pgm_gpa_t gpa[16];
    size_t size[16];
    bool write[16];
    uint8_t first_byte[16];
    enum pgm_handler_result answer;
    uint8_t fill; /* what HANDLED reads return */
};

static enum pgm_handler_result
record(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
       enum pgm_access_origin origin, void *user)
{
    struct log *l = user;
    assert_null(vcpu);
    assert_int_equal(origin, PGM_ORIGIN_PHYS_API);
    if (l->calls < 16) {
        l->gpa[l->calls] = gpa;
        l->size[l->calls] = size;
        l->write[l->calls] = write;
        l->first_byte[l->calls] = ((uint8_t *)buf)[0];
    }
    l->calls++;
    if (!write && l->answer == PGM_HANDLER_HANDLED)
        memset(buf, l->fill, size);
    if (write && l->answer == PGM_HANDLER_HANDLED)
        ((uint8_t *)buf)[0] ^= 0xff; /* must not reach the caller's buffer */
    return l->answer;
}

static struct pgm_phys_handler
handler(enum pgm_handler_kind kind, pgm_gpa_t gpa, uint64_t size, struct log *l)
{
    return (struct pgm_phys_handler){ .kind = kind, .gpa = gpa, .size = size, .fn = record,
                                      .user = l };
}

static void
test_registration_rules(void **state)
{
    struct fixture *f = *state;
    struct log l = { 0 };
    struct pgm_phys_handler h = handler(PGM_HANDLER_WRITE, 0x10000, 0x2000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), 0);
    assert_int_equal(pgm_handler_register(f->vm, &h), -EEXIST);
    h.gpa = 0x11000; /* overlaps the second page */
    assert_int_equal(pgm_handler_register(f->vm, &h), -EEXIST);
    h = handler(PGM_HANDLER_ALL, 0x12000, 0x1000, &l); /* adjacent is fine */
    assert_int_equal(pgm_handler_register(f->vm, &h), 0);
    h = handler(PGM_HANDLER_WRITE, 0x20800, 0x1000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), -EINVAL);
    h = handler(PGM_HANDLER_WRITE, 0x20000, 0, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), -EINVAL);
    h = handler(PGM_HANDLER_WRITE, 0x20000, 0x1000, &l);
    h.fn = NULL;
    assert_int_equal(pgm_handler_register(f->vm, &h), -EINVAL);
    h = handler((enum pgm_handler_kind)9, 0x20000, 0x1000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), -EINVAL);
    /* RAM needs WRITE/ALL, MMIO needs MMIO, unassigned takes nothing */
    h = handler(PGM_HANDLER_MMIO, 0x20000, 0x1000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), -EINVAL);
    assert_int_equal(pgm_phys_add_mmio(f->vm, 0x4000000, 0x4000), 0);
    h = handler(PGM_HANDLER_WRITE, 0x4000000, 0x1000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), -EINVAL);
    h = handler(PGM_HANDLER_MMIO, 0x4000000, 0x8000, &l); /* runs past the MMIO range */
    assert_int_equal(pgm_handler_register(f->vm, &h), -EINVAL);
    h = handler(PGM_HANDLER_ALL, FIX_RAM_SIZE - 0x1000, 0x2000, &l); /* into unassigned */
    assert_int_equal(pgm_handler_register(f->vm, &h), -EINVAL);
    assert_int_equal(pgm_handler_register(f->vm, NULL), -EINVAL);

    assert_int_equal(pgm_handler_state(f->vm, 0x10000), PGM_HANDLER_WRITE);
    assert_int_equal(pgm_handler_state(f->vm, 0x11fff), PGM_HANDLER_WRITE);
    assert_int_equal(pgm_handler_state(f->vm, 0x12000), PGM_HANDLER_ALL);
    assert_int_equal(pgm_handler_state(f->vm, 0x13000), PGM_HANDLER_NONE);
    /* a range with a handler cannot be removed */
    assert_int_equal(pgm_phys_remove(f->vm, 0), -EBUSY);
    assert_int_equal(pgm_handler_deregister(f->vm, 0x11000), -ENOENT);
    assert_int_equal(pgm_handler_deregister(f->vm, 0x10000), 0);
    assert_int_equal(pgm_handler_state(f->vm, 0x10000), PGM_HANDLER_NONE);
    assert_int_equal(pgm_handler_deregister(f->vm, 0x12000), 0);
    assert_int_equal(pgm_phys_remove(f->vm, 0), 0);
    assert_int_equal(l.calls, 0);
}

static void
test_write_handler_dispatch(void **state)
{
    struct fixture *f = *state;
    struct log l = { .answer = PGM_HANDLER_DEFAULT };
    struct pgm_phys_handler h = handler(PGM_HANDLER_WRITE, 0x10000, 0x2000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), 0);
    uint8_t buf[0x3000];
    memset(buf, 0x5a, sizeof(buf));

    /* reads do not call a WRITE handler */
    assert_int_equal(pgm_phys_read(f->vm, 0x10000, buf, 16), 0);
    assert_int_equal(l.calls, 0);
    /* a write spanning RAM, both handler pages and RAM: two calls, split at pages */
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(pgm_phys_write(f->vm, 0xfff0, buf, 0x2020), 0);
    assert_int_equal(l.calls, 2);
    assert_true(l.gpa[0] == 0x10000 && l.size[0] == 0x1000 && l.write[0]);
    assert_true(l.gpa[1] == 0x11000 && l.size[1] == 0x1000);
    assert_int_equal(l.first_byte[0], 0x5a); /* the handler saw the value before it landed */
    uint8_t v = 0;
    pgm_phys_read(f->vm, 0x11fff, &v, 1);
    assert_int_equal(v, 0x5a); /* DEFAULT: written */

    /* HANDLED: libpgm does not write, and the caller's buffer is untouched */
    l.answer = PGM_HANDLER_HANDLED;
    memset(buf, 0x77, 8);
    assert_int_equal(pgm_phys_write(f->vm, 0x10008, buf, 8), 0);
    assert_int_equal(buf[0], 0x77);
    pgm_phys_read(f->vm, 0x10008, &v, 1);
    assert_int_equal(v, 0x5a);

    /* EXIT: stop there; bytes before were written, none after */
    l.answer = PGM_HANDLER_EXIT;
    memset(buf, 0x33, sizeof(buf));
    assert_int_equal(pgm_phys_write(f->vm, 0xfffc, buf, 8), PGM_RC_HANDLER_EXIT);
    pgm_phys_read(f->vm, 0xfffc, &v, 1);
    assert_int_equal(v, 0x33);
    pgm_phys_read(f->vm, 0x10000, &v, 1);
    assert_int_equal(v, 0x5a);

    /* temp-off: no more callbacks for that page until reset */
    l.answer = PGM_HANDLER_DEFAULT;
    unsigned before = l.calls;
    assert_int_equal(pgm_handler_temp_off(f->vm, 0x11000), 0);
    assert_int_equal(pgm_handler_state(f->vm, 0x11000), PGM_HANDLER_NONE);
    assert_int_equal(pgm_phys_write(f->vm, 0x11000, buf, 4), 0);
    assert_int_equal(l.calls, before);
    assert_int_equal(pgm_phys_write(f->vm, 0x10000, buf, 4), 0);
    assert_int_equal(l.calls, before + 1);
    assert_int_equal(pgm_handler_reset(f->vm, 0x10000), 0);
    assert_int_equal(pgm_phys_write(f->vm, 0x11000, buf, 4), 0);
    assert_int_equal(l.calls, before + 2);
    assert_int_equal(pgm_handler_temp_off(f->vm, 0x30000), -ENOENT);
    assert_int_equal(pgm_handler_reset(f->vm, 0x11000), -ENOENT);

    struct pgm_stats st;
    pgm_stats(f->vm, &st);
    assert_int_equal(st.handler_calls, l.calls);
}

static void
test_all_and_mmio_handlers(void **state)
{
    struct fixture *f = *state;
    struct log l = { .answer = PGM_HANDLER_HANDLED, .fill = 0xab };
    struct pgm_phys_handler h = handler(PGM_HANDLER_ALL, 0x10000, 0x1000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), 0);
    uint8_t buf[32] = { 0 };
    assert_int_equal(pgm_phys_read(f->vm, 0x10010, buf, 4), 0);
    assert_int_equal(buf[0], 0xab);
    assert_false(l.write[0]);
    l.answer = PGM_HANDLER_DEFAULT; /* reads the backing page (zeros) */
    assert_int_equal(pgm_phys_read(f->vm, 0x10010, buf, 4), 0);
    assert_int_equal(buf[0], 0);
    assert_int_equal(pgm_handler_temp_off(f->vm, 0x10000), 0);

    /* MMIO: without a handler -ENODEV; with one, its answers */
    assert_int_equal(pgm_phys_add_mmio(f->vm, 0xfee00000, 0x2000), 0);
    assert_int_equal(pgm_phys_read(f->vm, 0xfee00000, buf, 4), -ENODEV);
    struct log m = { .answer = PGM_HANDLER_HANDLED, .fill = 0x42 };
    h = handler(PGM_HANDLER_MMIO, 0xfee00000, 0x1000, &m);
    assert_int_equal(pgm_handler_register(f->vm, &h), 0);
    assert_int_equal(pgm_handler_state(f->vm, 0xfee00abc), PGM_HANDLER_MMIO);
    assert_int_equal(pgm_handler_state(f->vm, 0xfee01000), PGM_HANDLER_NONE);
    assert_int_equal(pgm_phys_read(f->vm, 0xfee00ffe, buf, 4), -ENODEV); /* 2nd page: none */
    assert_memory_equal(buf, "\x42\x42\xff\xff", 4);
    assert_int_equal(pgm_phys_write(f->vm, 0xfee00000, buf, 4), 0);
    assert_true(m.write[m.calls - 1] && m.size[m.calls - 1] == 4);
    m.answer = PGM_HANDLER_DEFAULT; /* nothing behind MMIO: all-ones */
    assert_int_equal(pgm_phys_read(f->vm, 0xfee00000, buf, 2), 0);
    assert_memory_equal(buf, "\xff\xff", 2);
    assert_int_equal(pgm_handler_temp_off(f->vm, 0xfee00000), -EINVAL);
}

static void
test_modify(void **state)
{
    struct fixture *f = *state;
    struct log l = { .answer = PGM_HANDLER_DEFAULT };
    struct pgm_phys_handler h = handler(PGM_HANDLER_WRITE, 0x10000, 0x2000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), 0);
    h = handler(PGM_HANDLER_WRITE, 0x20000, 0x1000, &l);
    assert_int_equal(pgm_handler_register(f->vm, &h), 0);
    assert_int_equal(pgm_handler_modify(f->vm, 0x10000, 0x1f000, 0x2000), -EEXIST);
    assert_int_equal(pgm_handler_modify(f->vm, 0x10000, 0x10800, 0x2000), -EINVAL);
    assert_int_equal(pgm_handler_modify(f->vm, 0x13000, 0x14000, 0x1000), -ENOENT);
    assert_int_equal(pgm_handler_state(f->vm, 0x10000), PGM_HANDLER_WRITE); /* unchanged */
    /* grow in place over itself, then move */
    assert_int_equal(pgm_handler_modify(f->vm, 0x10000, 0x10000, 0x4000), 0);
    assert_int_equal(pgm_handler_state(f->vm, 0x13000), PGM_HANDLER_WRITE);
    assert_int_equal(pgm_handler_modify(f->vm, 0x10000, 0x30000, 0x1000), 0);
    assert_int_equal(pgm_handler_state(f->vm, 0x10000), PGM_HANDLER_NONE);
    assert_int_equal(pgm_handler_state(f->vm, 0x13000), PGM_HANDLER_NONE);
    assert_int_equal(pgm_handler_state(f->vm, 0x30000), PGM_HANDLER_WRITE);
    uint32_t v = 1;
    assert_int_equal(pgm_phys_write(f->vm, 0x10000, &v, 4), 0);
    assert_int_equal(l.calls, 0);
    assert_int_equal(pgm_phys_write(f->vm, 0x30000, &v, 4), 0);
    assert_int_equal(l.calls, 1);
}

static void
test_dirty_log(void **state)
{
    struct fixture *f = *state;
    uint64_t bm[2];
    assert_int_equal(pgm_dirty_log_start(f->vm, 0x100000, 0x41000), 0); /* 65 pages */
    assert_int_equal(pgm_dirty_log_start(f->vm, 0x140000, 0x1000), -EEXIST);
    assert_int_equal(pgm_dirty_log_start(f->vm, FIX_RAM_SIZE - 0x1000, 0x2000), -EINVAL);
    assert_int_equal(pgm_dirty_log_get_and_clear(f->vm, 0x101000, bm), -ENOENT);
    assert_int_equal(pgm_dirty_log_get_and_clear(f->vm, 0x100000, NULL), -EINVAL);

    uint64_t v = 1;
    assert_int_equal(pgm_phys_write(f->vm, 0x100008, &v, 8), 0);  /* page 0 */
    assert_int_equal(pgm_phys_write(f->vm, 0x100010, &v, 8), 0);  /* page 0 again: free */
    assert_int_equal(pgm_phys_write(f->vm, 0x13fffc, &v, 8), 0);  /* pages 63 and 64 */
    assert_int_equal(pgm_phys_read(f->vm, 0x105000, &v, 8), 0);   /* reads never count */
    struct pgm_stats st;
    pgm_stats(f->vm, &st);
    assert_int_equal(st.handler_calls, 3); /* one per page per round */
    assert_int_equal(pgm_handler_state(f->vm, 0x100000), PGM_HANDLER_NONE); /* off until read out */
    assert_int_equal(pgm_dirty_log_get_and_clear(f->vm, 0x100000, bm), 0);
    assert_true(bm[0] == (1ull | 1ull << 63) && bm[1] == 1);
    /* the written data landed */
    assert_int_equal(pgm_phys_read(f->vm, 0x100008, &v, 8), 0);
    assert_true(v == 1);
    /* re-armed: an empty round, then a new write is seen again */
    assert_int_equal(pgm_dirty_log_get_and_clear(f->vm, 0x100000, bm), 0);
    assert_true(bm[0] == 0 && bm[1] == 0);
    assert_int_equal(pgm_phys_write(f->vm, 0x100008, &v, 1), 0);
    assert_int_equal(pgm_dirty_log_get_and_clear(f->vm, 0x100000, bm), 0);
    assert_true(bm[0] == 1 && bm[1] == 0);
    assert_int_equal(pgm_dirty_log_stop(f->vm, 0x100000), 0);
    assert_int_equal(pgm_dirty_log_stop(f->vm, 0x100000), -ENOENT);
    assert_int_equal(pgm_handler_state(f->vm, 0x100000), PGM_HANDLER_NONE);
    assert_int_equal(pgm_phys_write(f->vm, 0x100008, &v, 1), 0);
    pgm_stats(f->vm, &st);
    assert_int_equal(st.handler_calls, 4); /* 3 in round one, 1 after re-arm, none after stop */
    /* the range is free for a new log */
    assert_int_equal(pgm_dirty_log_start(f->vm, 0x100000, 0x1000), 0);
}

/* Every allocation failure leaves the registry as it was (the allocator fails call N). */
struct failing {
    int countdown;
};

static void *
fail_alloc(void *ctx, size_t size)
{
    struct failing *fl = ctx;
    if (fl->countdown-- == 0)
        return NULL;
    return test_malloc(size);
}

static void
fail_free(void *ctx, void *p)
{
    (void)ctx;
    test_free(p);
}

static void
test_allocation_failures(void **state)
{
    (void)state;
    struct pgm_soft_backend *sb;
    assert_int_equal(pgm_soft_backend_create(256, &sb), 0);
    for (int n = 0; n < 40; n++) {
        struct failing fl = { .countdown = -1 };
        struct pgm_vm_config cfg;
        pgm_vm_config_init(&cfg);
        cfg.backend = pgm_soft_backend_ops();
        cfg.backend_ctx = sb;
        cfg.allocator = (struct pgm_allocator){ fail_alloc, fail_free, &fl };
        struct pgm_vm *vm;
        assert_int_equal(pgm_vm_create(&cfg, &vm), 0);
        assert_int_equal(pgm_phys_add_ram(vm, 0, 0x100000), 0);
        struct log l = { .answer = PGM_HANDLER_DEFAULT };
        struct pgm_phys_handler h = handler(PGM_HANDLER_WRITE, 0x1000, 0x1000, &l);
        fl.countdown = n; /* fail the n-th allocation from here on */
        int rc1 = pgm_handler_register(vm, &h);
        int rc2 = pgm_handler_modify(vm, 0x1000, 0x2000, 0x2000);
        int rc3 = pgm_handler_deregister(vm, rc2 == 0 ? 0x2000 : 0x1000);
        assert_true(rc1 == 0 || rc1 == -ENOMEM);
        if (rc1 == -ENOMEM) {
            assert_int_equal(pgm_handler_state(vm, 0x1000), PGM_HANDLER_NONE);
        } else {
            assert_true(rc2 == 0 || rc2 == -ENOMEM);
            assert_true(rc3 == 0 || rc3 == -ENOMEM);
            if (rc3 == 0) {
                assert_int_equal(pgm_handler_state(vm, 0x1000), PGM_HANDLER_NONE);
                assert_int_equal(pgm_handler_state(vm, 0x2000), PGM_HANDLER_NONE);
            }
        }
        fl.countdown = -1;
        pgm_vm_destroy(vm); /* test_malloc/test_free catch any leak */
    }
    pgm_soft_backend_destroy(sb);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_registration_rules),
        T(test_write_handler_dispatch),
        T(test_all_and_mmio_handlers),
        T(test_modify),
        T(test_dirty_log),
        cmocka_unit_test(test_allocation_failures),
    };
#undef T
    return cmocka_run_group_tests_name("handlers", tests, NULL, NULL);
}
