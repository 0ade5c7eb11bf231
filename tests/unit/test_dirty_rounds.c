/* SPDX-License-Identifier: MIT */
/*
 * Dirty-log rounds against a reference set.
 *
 * A shadow VM with two vCPUs and three guest address spaces that map a
 * 64-page logged RAM range (some frames shared between address spaces, some
 * pages mapped outside the log). Random steps, from a fixed seed: guest
 * writes and reads (pgm_soft_access, every size), VMM writes
 * (pgm_phys_write, pgm_phys_write_simple, pgm_write_gva - spans that cross
 * pages), the guest remapping one of its pages by writing its own PTE
 * through a mapping of its page table (then INVLPG), context switches, and
 * once a log stop / start in the middle of a round. At the end of each
 * round the bitmap from pgm_dirty_log_get_and_clear must equal the set of
 * logged pages the test wrote since the previous call - exactly, no page
 * missing, none extra - and pgm_audit is clean after every step.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define NVCPU     2u
#define NAS       3u
#define NPAGES    64u                   /* pages each address space maps */
#define LOG_GPA   0x400000ull           /* the logged range: NPAGES frames */
#define OUT_GPA   0x500000ull           /* 16 frames outside the log */
#define AS_GPA    0x100000ull           /* AS a: PML4, PDPT, PD, PT at + a * 0x4000 */
#define VA_DATA   0x10000000ull         /* page i at VA_DATA + i * 4096 */
#define VA_PT     0x10100000ull         /* the AS's own PT, supervisor rw (PT entry 256) */
#define ROUNDS    40u
#define STEPS     40u

struct env {
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu[NVCPU];
    int cur_as[NVCPU];
    uint64_t map[NAS][NPAGES];  /* frame GPA of each data page */
    bool ref[NPAGES];           /* logged pages written since the last get_and_clear */
    bool logging;
    uint64_t rng;
    unsigned step;
    unsigned n_guest_w, n_vmm_w, n_remap, n_reported;
};

static uint64_t
rnd(struct env *e)
{
    e->rng ^= e->rng << 13;
    e->rng ^= e->rng >> 7;
    e->rng ^= e->rng << 17;
    return e->rng;
}

static void
audit(struct env *e)
{
    char msg[256];
    if (pgm_audit(e->vm, msg, sizeof(msg)) != 0)
        fail_msg("step %u: audit: %s", e->step, msg);
}

static void
put(struct env *e, uint64_t gpa, uint64_t v)
{
    fixture_put64(e->vm, gpa, v);
}

static uint64_t
as_base(unsigned a)
{
    return AS_GPA + a * 0x4000ull;
}

/* Note a write of [gpa, gpa + len) in the reference set. */
static void
note(struct env *e, uint64_t gpa, size_t len)
{
    if (!e->logging || !len)
        return;
    for (uint64_t p = gpa >> 12; p <= (gpa + len - 1) >> 12; p++)
        if (p >= LOG_GPA >> 12 && p < (LOG_GPA >> 12) + NPAGES)
            e->ref[p - (LOG_GPA >> 12)] = true;
}

static void
env_init(struct env *e)
{
    memset(e, 0, sizeof(*e));
    e->rng = 0x9e3779b97f4a7c15ull;
    assert_int_equal(pgm_soft_backend_create(1u << 14, &e->sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    cfg.vcpu_count = NVCPU;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    assert_int_equal(pgm_vm_create(&cfg, &e->vm), 0);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0, 16u << 20), 0);
    for (unsigned a = 0; a < NAS; a++) {
        uint64_t b = as_base(a);
        put(e, b, (b + 0x1000) | 7);
        put(e, b + 0x1000, (b + 0x2000) | 7);
        put(e, b + 0x2000 + 8 * (VA_DATA >> 21), (b + 0x3000) | 7);
        put(e, b + 0x3000 + 8 * 256, (b + 0x3000) | 3);
        for (unsigned i = 0; i < NPAGES; i++) {
            /* AS 0 maps frame i, AS 1 frame i + 16 (shared with AS 0), AS 2 a mix
             * with its last 16 pages outside the log */
            uint64_t f = a == 0 ? LOG_GPA + i * 0x1000ull
                       : a == 1 ? LOG_GPA + ((i + 16) % NPAGES) * 0x1000ull
                       : i < 48 ? LOG_GPA + ((i * 3) % NPAGES) * 0x1000ull
                                : OUT_GPA + (i - 48) * 0x1000ull;
            e->map[a][i] = f;
            put(e, b + 0x3000 + 8 * i, f | 7);
        }
    }
    for (unsigned v = 0; v < NVCPU; v++) {
        e->vcpu[v] = pgm_vcpu_get(e->vm, v);
        struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP,
                                    .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME | PGM_EFER_NXE,
                                    .cr3 = as_base(v) };
        assert_int_equal(pgm_set_cpu_state(e->vcpu[v], &st, 0), 0);
        e->cur_as[v] = (int)v;
    }
}

static void
switch_to(struct env *e, unsigned v, unsigned a)
{
    if (e->cur_as[v] == (int)a)
        return;
    assert_int_equal(pgm_sync_cr3(e->vcpu[v], as_base(a)), 0);
    e->cur_as[v] = (int)a;
}

static void
guest_access(struct env *e, unsigned v, uint64_t va, uint32_t acc, void *buf, size_t n)
{
    struct pgm_fault_out out;
    assert_int_equal(pgm_soft_access(e->vcpu[v], va, acc, buf, n, &out), 0);
    if (out.result != PGM_FAULT_RESUME)
        fail_msg("step %u: access %#llx ended with %d", e->step, (unsigned long long)va,
                 out.result);
}

static void
step_once(struct env *e)
{
    unsigned v = (unsigned)(rnd(e) % NVCPU), a = (unsigned)(rnd(e) % NAS);
    unsigned i = (unsigned)(rnd(e) % NPAGES);
    static const size_t sizes[4] = { 1, 2, 4, 8 };
    size_t n = sizes[rnd(e) % 4];
    uint64_t off = (rnd(e) % (4096 / n)) * n;
    uint8_t buf[64];
    for (size_t k = 0; k < sizeof(buf); k++)
        buf[k] = (uint8_t)rnd(e);
    unsigned kind = (unsigned)(rnd(e) % 16);
    if (kind < 7) {                 /* guest write */
        switch_to(e, v, a);
        guest_access(e, v, VA_DATA + i * 0x1000ull + off, PGM_ACCESS_WRITE | PGM_ACCESS_USER,
                     buf, n);
        note(e, e->map[a][i] + off, n);
        e->n_guest_w++;
    } else if (kind < 9) {          /* guest read */
        switch_to(e, v, a);
        guest_access(e, v, VA_DATA + i * 0x1000ull + off, PGM_ACCESS_USER, buf, n);
    } else if (kind < 13) {         /* VMM writes, possibly across pages */
        uint64_t gpa = LOG_GPA + rnd(e) % (NPAGES * 0x1000ull) - 16;
        size_t len = 1 + rnd(e) % 48;
        int rc;
        switch (kind) {
        case 9:
            rc = pgm_phys_write(e->vm, gpa, buf, len);
            note(e, gpa, len);
            break;
        case 10:
            rc = pgm_phys_write_simple(e->vm, gpa, buf, len); /* logs still record it */
            note(e, gpa, len);
            break;
        case 11:
            rc = pgm_phys_write_origin(e->vm, gpa, buf, len, PGM_ORIGIN_DMA);
            note(e, gpa, len);
            break;
        default: {
            /* through the guest's mapping, across its (discontiguous) pages */
            uint64_t va = VA_DATA + i * 0x1000ull + 4096 - 8;
            size_t l = i + 1 < NPAGES ? 16 : 8;
            switch_to(e, v, a);
            rc = pgm_write_gva(e->vcpu[v], va, buf, l, 0, PGM_ORIGIN_GUEST, NULL);
            note(e, e->map[a][i] + 4096 - 8, 8);
            if (l == 16)
                note(e, e->map[a][i + 1], 8);
            break;
        }
        }
        assert_int_equal(rc, 0);
        e->n_vmm_w++;
    } else if (kind < 15) {         /* the guest remaps one of its pages */
        switch_to(e, v, a);
        uint64_t f = rnd(e) % 4 ? LOG_GPA + (rnd(e) % NPAGES) * 0x1000ull
                                : OUT_GPA + (rnd(e) % 16) * 0x1000ull;
        uint64_t pte = f | 7; /* A and D clear: the next write sets them */
        guest_access(e, v, VA_PT + 8 * i, PGM_ACCESS_WRITE, &pte, 8);
        e->map[a][i] = f;
        for (unsigned w = 0; w < NVCPU; w++)
            if (e->cur_as[w] == (int)a)
                assert_int_equal(pgm_invlpg(e->vcpu[w], VA_DATA + i * 0x1000ull), 0);
        e->n_remap++;
    } else {                        /* VMM reads: no effect on the log */
        assert_int_equal(pgm_phys_read(e->vm, LOG_GPA + rnd(e) % (NPAGES * 0x1000ull) - 8,
                                       buf, 16), 0);
    }
    audit(e);
}

static void
check_round(struct env *e, unsigned round)
{
    uint64_t bm[(NPAGES + 63) / 64] = { 0 };
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, LOG_GPA, bm), 0);
    for (unsigned p = 0; p < NPAGES; p++) {
        bool got = (bm[p / 64] >> (p % 64)) & 1;
        if (got != e->ref[p])
            fail_msg("round %u: page %u reported %d, written %d", round, p, got, e->ref[p]);
        e->n_reported += got;
    }
    memset(e->ref, 0, sizeof(e->ref));
    audit(e);
}

static void
test_rounds(void **state)
{
    (void)state;
    struct env env, *e = &env;
    env_init(e);
    assert_int_equal(pgm_dirty_log_start(e->vm, LOG_GPA, NPAGES * 0x1000ull), 0);
    e->logging = true;
    audit(e);
    for (unsigned r = 0; r < ROUNDS; r++) {
        for (unsigned s = 0; s < STEPS; s++, e->step++) {
            if (r == ROUNDS / 2 && s == STEPS / 3) {
                assert_int_equal(pgm_dirty_log_stop(e->vm, LOG_GPA), 0);
                assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, LOG_GPA, (uint64_t[1]){ 0 }),
                                 -ENOENT);
                e->logging = false;
                memset(e->ref, 0, sizeof(e->ref)); /* a new log starts empty */
                audit(e);
            }
            if (r == ROUNDS / 2 && s == 2 * STEPS / 3) {
                assert_int_equal(pgm_dirty_log_start(e->vm, LOG_GPA, NPAGES * 0x1000ull), 0);
                e->logging = true;
                audit(e);
            }
            step_once(e);
        }
        check_round(e, r);
        /* A round with no write reports nothing. */
        if (r == 3)
            check_round(e, r);
    }
    print_message("# %u rounds: %u guest writes, %u VMM writes, %u remaps, %u pages reported\n",
                  ROUNDS, e->n_guest_w, e->n_vmm_w, e->n_remap, e->n_reported);
    assert_int_equal(pgm_dirty_log_stop(e->vm, LOG_GPA), 0);
    fixture_vm_teardown(e->vm, e->sb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
