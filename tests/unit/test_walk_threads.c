/* SPDX-License-Identifier: MIT */
/*
 * Walks racing with a guest that rewrites its tables: two vCPU threads walk
 * the same tables (writes, so A and D are set) while a third thread keeps
 * clearing A/D behind them, as a guest OS scanning for accessed pages does.
 * Every walk must translate correctly, report a consistent entry set, and
 * the compare-and-swap protocol must never lose the guest's own change of a
 * bit it does not own (the AVL bits 9..11 the "guest" toggles here).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define ITERS 200000

struct shared {
    struct fixture *f;
    volatile int stop;
    uint64_t bad;
};

struct walker_arg {
    struct shared *sh;
    unsigned vcpu;
    uint64_t walks, retries_seen;
};

static void *
walker(void *p)
{
    struct walker_arg *a = p;
    struct pgm_vcpu *v = pgm_vcpu_get(a->sh->f->vm, a->vcpu);
    struct pgm_walk w;
    for (unsigned i = 0; i < ITERS; i++) {
        int rc = pgm_walk(v, 0x1000 + (i & 7) * 0x1000, PGM_ACCESS_WRITE, &w);
        if (rc == -ELOOP)
            continue; /* allowed under a livelocking guest, never a wrong result */
        if (rc != 0 || w.status != PGM_WALK_OK || w.gpa != 0x100000 + (i & 7) * 0x1000u)
            __atomic_fetch_add(&a->sh->bad, 1, __ATOMIC_RELAXED);
        /* the reported leaf has A and D and the address it translated */
        if ((w.entry[1] & 0x60) != 0x60 || (w.entry[1] & ~0xfffull) != w.gpa)
            __atomic_fetch_add(&a->sh->bad, 1, __ATOMIC_RELAXED);
        a->walks++;
    }
    return NULL;
}

static void *
guest(void *p)
{
    struct shared *sh = p;
    /* host view of the tables, through the guest-physical API's backing */
    uint64_t rounds = 0;
    while (!sh->stop) {
        for (unsigned l = 0; l < 4; l++) {
            uint64_t gpa = l == 3 ? 0x4008 + (rounds & 7) * 8 : 0x1000u * (l + 1);
            uint64_t v;
            pgm_phys_read(sh->f->vm, gpa, &v, 8);
            /* clear A/D and flip an AVL bit: a plain guest store */
            v = (v & ~0x60ull) ^ 0x200;
            pgm_phys_write(sh->f->vm, gpa, &v, 8);
        }
        rounds++;
    }
    return NULL;
}

static void
test_walks_race_guest_writes(void **state)
{
    (void)state;
    struct pgm_soft_backend *sb;
    assert_int_equal(pgm_soft_backend_create(1024, &sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.vcpu_count = 2;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = sb;
    struct fixture fx = { .sb = sb };
    assert_int_equal(pgm_vm_create(&cfg, &fx.vm), 0);
    assert_int_equal(pgm_phys_add_ram(fx.vm, 0, 4 << 20), 0);
    put64(&fx, 0x1000, 0x2003);
    put64(&fx, 0x2000, 0x3003);
    put64(&fx, 0x3000, 0x4003);
    for (unsigned i = 0; i < 8; i++)
        put64(&fx, 0x4008 + i * 8, (0x100000 + i * 0x1000u) | 3);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG, .cr4 = PGM_CR4_PAE,
                                .efer = PGM_EFER_LME, .cr3 = 0x1000 };
    for (unsigned i = 0; i < 2; i++)
        assert_int_equal(pgm_set_cpu_state(pgm_vcpu_get(fx.vm, i), &st, 0), 0);

    struct shared sh = { .f = &fx };
    struct walker_arg wa[2] = { { &sh, 0, 0, 0 }, { &sh, 1, 0, 0 } };
    pthread_t t[3];
    assert_int_equal(pthread_create(&t[2], NULL, guest, &sh), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, walker, &wa[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    sh.stop = 1;
    pthread_join(t[2], NULL);
    assert_int_equal(sh.bad, 0);
    assert_true(wa[0].walks + wa[1].walks > ITERS);
    struct pgm_stats s;
    pgm_stats(fx.vm, &s);
    assert_true(s.walks == 2ull * ITERS);
    print_message("# walks %llu, restarts after a lost A/D race %llu\n", (unsigned long long)s.walks,
                  (unsigned long long)s.walk_retries);
    pgm_vm_destroy(fx.vm);
    pgm_soft_backend_destroy(sb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walks_race_guest_writes),
    };
    return cmocka_run_group_tests_name("walk_threads", tests, NULL, NULL);
}
