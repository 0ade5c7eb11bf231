/* SPDX-License-Identifier: MIT */
/* Shared cmocka fixture: a soft backend and a VM with RAM at GPA 0. */
#ifndef PGM_TESTS_UNIT_FIXTURE_H
#define PGM_TESTS_UNIT_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgm/pgm.h"

#define FIX_RAM_SIZE (16ull << 20)

struct fixture {
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
};

/* @ram_blocks: back RAM with one block (true) or page by page (false). */
static inline struct fixture *
fixture_new_opts(const struct pgm_cpu_features *features, bool ram_blocks)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(pgm_soft_backend_create(1u << 14, &f->sb), 0);
    pgm_soft_backend_set_ram_blocks(f->sb, ram_blocks);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    if (features)
        cfg.features = *features;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = f->sb;
    assert_int_equal(pgm_vm_create(&cfg, &f->vm), 0);
    assert_int_equal(pgm_phys_add_ram(f->vm, 0, FIX_RAM_SIZE), 0);
    f->vcpu = pgm_vcpu_get(f->vm, 0);
    assert_non_null(f->vcpu);
    return f;
}

static inline struct fixture *
fixture_new(const struct pgm_cpu_features *features)
{
    return fixture_new_opts(features, true);
}

static inline void
fixture_free(struct fixture *f)
{
    pgm_vm_destroy(f->vm);
    assert_int_equal(pgm_soft_backend_pages_in_use(f->sb), 0);
    assert_int_equal(pgm_soft_backend_blocks_in_use(f->sb), 0);
    pgm_soft_backend_destroy(f->sb);
    test_free(f);
}

static inline int
fixture_setup(void **state)
{
    *state = fixture_new(NULL);
    return 0;
}

static inline int
fixture_setup_paged(void **state)
{
    *state = fixture_new_opts(NULL, false);
    return 0;
}

static inline int
fixture_teardown(void **state)
{
    fixture_free(*state);
    return 0;
}

static inline void
put64(struct fixture *f, uint64_t gpa, uint64_t v)
{
    assert_int_equal(pgm_phys_write(f->vm, gpa, &v, 8), 0);
}

static inline void
put32(struct fixture *f, uint64_t gpa, uint32_t v)
{
    assert_int_equal(pgm_phys_write(f->vm, gpa, &v, 4), 0);
}

static inline uint64_t
get64(struct fixture *f, uint64_t gpa)
{
    uint64_t v = 0;
    pgm_phys_read(f->vm, gpa, &v, 8);
    return v;
}

static inline uint32_t
get32(struct fixture *f, uint64_t gpa)
{
    uint32_t v = 0;
    pgm_phys_read(f->vm, gpa, &v, 4);
    return v;
}

/* pgm_audit: fail the test with its message on a violation. */
static inline void
fixture_audit_vm(struct pgm_vm *vm)
{
    char msg[256];
    if (pgm_audit(vm, msg, sizeof(msg)) != 0)
        fail_msg("audit: %s", msg);
}

/* Write one 64-bit value to guest-physical memory (through handlers). */
static inline void
fixture_put64(struct pgm_vm *vm, uint64_t gpa, uint64_t v)
{
    assert_int_equal(pgm_phys_write(vm, gpa, &v, 8), 0);
}

/*
 * End of a shadow test: pgm_audit, destroy @vm, check that it gave every
 * page back to @sb, destroy @sb.
 */
static inline void
fixture_vm_teardown(struct pgm_vm *vm, struct pgm_soft_backend *sb)
{
    fixture_audit_vm(vm);
    pgm_vm_destroy(vm);
    assert_int_equal(pgm_soft_backend_pages_in_use(sb), 0);
    pgm_soft_backend_destroy(sb);
}

/* One guest access through pgm_soft_access (which must not fail), then pgm_audit. */
static inline struct pgm_fault_out
fixture_soft_access(struct pgm_vcpu *vcpu, struct pgm_vm *vm, uint64_t va, uint32_t acc,
                    void *buf, size_t n)
{
    struct pgm_fault_out out;
    assert_int_equal(pgm_soft_access(vcpu, va, acc, buf, n, &out), 0);
    fixture_audit_vm(vm);
    return out;
}

#endif /* PGM_TESTS_UNIT_FIXTURE_H */
