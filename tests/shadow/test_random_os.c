/* SPDX-License-Identifier: MIT */
/*
 * A seeded random OS-like workload on the shadow engine: processes are
 * created, forked, switched and killed; pages are mapped, touched, unmapped,
 * protected, swapped, aged; 2 MiB pages are split and merged; global kernel
 * pages are remapped; CR0.WP and CR4.SMAP are toggled - each with the TLB
 * maintenance a correct OS does. After every step, law 1 (pgm_soft_access ==
 * guest walk == the kernel's model, for a sample of addresses and access
 * kinds) and pgm_audit (laws 2 and 3) are checked.
 *
 * Configurations cover IA-32e (4 and 5 levels), 32-bit paging (4 MiB pages)
 * and PAE guests (PDPTEs reloaded with MOV CR3 when a PD is added).
 *
 * Environment: PGM_RANDOM_SEED (default: fixed), PGM_RANDOM_STEPS (steps per
 * configuration, scaled by its steps_pct), PGM_RANDOM_CONFIG (run only
 * configuration N, or a comma-separated list), and from
 * guest.c PGM_SHADOW_TRACE=1|2 (print every table write / TLB operation /
 * access made through the API, to turn a failure into a reproducer). A failure prints the seed, the configuration and the step:
 * rerun with PGM_RANDOM_SEED=<seed> PGM_RANDOM_STEPS=<step + 1> to reproduce.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "guest.h"
#include "vhandlers.h"

#define DEFAULT_SEED  0x5eed5eed2024ull
/* Under ASan (+UBSan) each step costs ~8x more: fewer steps keep the shadow
 * suite near 3 minutes there (about one minute at -O2 without them). */
#if defined(__SANITIZE_ADDRESS__)
#define PGM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PGM_SANITIZED 1
#endif
#endif
#ifdef PGM_SANITIZED
#define DEFAULT_STEPS 2000u
#else
#define DEFAULT_STEPS 8000u
#endif

static uint64_t seed_base = DEFAULT_SEED;
static unsigned nsteps = DEFAULT_STEPS;

struct config {
    const char *name;
    unsigned levels, nvcpu;  /* levels: 2 (32-bit), 3 (PAE), 4, 5 */
    uint64_t cr4;
    unsigned steps_pct;      /* share of PGM_RANDOM_STEPS this configuration runs */
};

enum op {
    OP_CREATE, OP_DESTROY, OP_FORK, OP_SWITCH, OP_MMAP, OP_MMAP_LARGE, OP_MUNMAP,
    OP_MPROTECT, OP_SWAP_OUT, OP_ACCESS, OP_AGE, OP_SPLIT, OP_MERGE, OP_PROTECT_SUB,
    OP_FREE_PT, OP_KTEXT, OP_WP, OP_SMAP, OP_SPURIOUS_FLUSH, OP_VHANDLER, OP_DIRTY_LOG,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "create", "destroy", "fork", "switch", "mmap", "mmap-2M", "munmap", "mprotect",
    "swap-out", "access", "age", "split", "merge", "protect-sub", "free-pt", "ktext-remap",
    "cr0.wp", "cr4.smap", "spurious-flush", "virt-handler", "dirty-log",
};

/* relative weights */
static const unsigned op_weight[OP_COUNT] = {
    [OP_CREATE] = 3, [OP_DESTROY] = 2, [OP_FORK] = 3, [OP_SWITCH] = 10, [OP_MMAP] = 14,
    [OP_MMAP_LARGE] = 1, [OP_MUNMAP] = 8, [OP_MPROTECT] = 8, [OP_SWAP_OUT] = 5,
    [OP_ACCESS] = 30, [OP_AGE] = 4, [OP_SPLIT] = 2, [OP_MERGE] = 2, [OP_PROTECT_SUB] = 2,
    [OP_FREE_PT] = 3, [OP_KTEXT] = 1, [OP_WP] = 1, [OP_SMAP] = 1, [OP_SPURIOUS_FLUSH] = 2,
    [OP_VHANDLER] = 2, [OP_DIRTY_LOG] = 1,
};

/*
 * Dirty logging over all guest RAM, in rounds: every page whose bytes
 * changed since the previous round (guest writes, the CPU's A/D updates)
 * must be reported. Logging write-protects the pages in libpgm's tables;
 * a write that still gets through a stale writable translation (a flush
 * libpgm forgot - on EPT / NPT an INVEPT-scope one) changes a page that is
 * then not reported.
 */
static struct {
    bool on;
    uint8_t *snap, *cur;
    uint64_t bitmap[G_NFRAMES / 64];
    uint64_t rounds, pages;
} dlog;

static void
dirty_log_step(struct g_kernel *k, uint64_t r)
{
    if (!dlog.snap) {
        dlog.snap = malloc(G_RAM_SIZE);
        dlog.cur = malloc(G_RAM_SIZE);
        assert_non_null(dlog.snap);
        assert_non_null(dlog.cur);
    }
    if (!dlog.on) {
        int rc = pgm_dirty_log_start(k->vm, 0, G_RAM_SIZE);
        if (rc == -EEXIST)
            return; /* a handler covers part of RAM */
        assert_int_equal(rc, 0);
        assert_int_equal(pgm_phys_read(k->vm, 0, dlog.snap, G_RAM_SIZE), 0);
        dlog.on = true;
        return;
    }
    assert_int_equal(pgm_dirty_log_get_and_clear(k->vm, 0, dlog.bitmap), 0);
    assert_int_equal(pgm_phys_read(k->vm, 0, dlog.cur, G_RAM_SIZE), 0);
    for (uint64_t f = 0; f < G_NFRAMES; f++) {
        bool dirty = (dlog.bitmap[f / 64] >> (f % 64)) & 1;
        dlog.pages += dirty;
        if (dirty || !memcmp(dlog.snap + (f << 12), dlog.cur + (f << 12), 4096))
            continue;
        for (unsigned i = 0; i < 4096; i += 8) { /* what changed, for the report */
            uint64_t x, y;
            memcpy(&x, dlog.snap + (f << 12) + i, 8);
            memcpy(&y, dlog.cur + (f << 12) + i, 8);
            if (x != y)
                fprintf(stderr, "# +%#x: %#" PRIx64 " -> %#" PRIx64 "\n", i, x, y);
        }
        g_fail(k, "page %#" PRIx64 " changed since the last dirty-log round but is not "
                  "reported dirty", f << 12);
    }
    uint8_t *t = dlog.snap;
    dlog.snap = dlog.cur;
    dlog.cur = t;
    dlog.rounds++;
    if ((r & 3) == 0) {
        assert_int_equal(pgm_dirty_log_stop(k->vm, 0), 0);
        dlog.on = false;
    }
}

static uint64_t total_steps, total_accesses;

static int
live_as(struct g_kernel *k, uint64_t r)
{
    unsigned n = 0;
    for (unsigned a = 0; a < G_MAX_AS; a++)
        n += k->as[a].live;
    if (!n)
        return -1;
    unsigned pick = (unsigned)(r % n);
    for (unsigned a = 0; a < G_MAX_AS; a++)
        if (k->as[a].live && !pick--)
            return (int)a;
    return -1;
}

static struct g_page *
rand_page(struct g_kernel *k, int as, uint64_t r)
{
    if (as < 0 || !k->as[as].npages)
        return NULL;
    return &k->as[as].pages[r % k->as[as].npages];
}

static struct g_page *
rand_large(struct g_kernel *k, int as, uint64_t r)
{
    if (as < 0)
        return NULL;
    struct g_as *a = &k->as[as];
    for (unsigned i = 0; i < a->npages; i++) {
        struct g_page *p = &a->pages[(i + r) % a->npages];
        if (p->large)
            return p;
    }
    return NULL;
}

static uint64_t
rand_user_va(struct g_kernel *k, uint64_t r)
{
    return g_user_va(k, (unsigned)(r % 3), (unsigned)(r >> 4), (unsigned)((r >> 8) % 4),
                     (unsigned)((r >> 12) % 24));
}

static uint8_t
rand_prot(uint64_t r)
{
    static const uint8_t prots[] = { G_PROT_W, G_PROT_W, G_PROT_W | G_PROT_X, G_PROT_X, 0 };
    return prots[r % 5];
}

static enum op
pick_op(struct g_kernel *k)
{
    unsigned total = 0;
    for (unsigned i = 0; i < OP_COUNT; i++)
        total += op_weight[i];
    unsigned r = (unsigned)(g_rand(k) % total);
    for (unsigned i = 0; i < OP_COUNT; i++) {
        if (r < op_weight[i])
            return (enum op)i;
        r -= op_weight[i];
    }
    return OP_ACCESS;
}

static void
do_step(struct g_kernel *k, const struct config *c)
{
    unsigned v = (unsigned)(g_rand(k) % k->nvcpu);
    int cur = k->cur_as[v];
    /* most edits hit the running process (self-map possible), some another one */
    int as = (cur >= 0 && (g_rand(k) & 3)) ? cur : live_as(k, g_rand(k));
    uint64_t r = g_rand(k);
    enum op op = pick_op(k);
    size_t n = strlen(k->ctx);
    snprintf(k->ctx + n, sizeof(k->ctx) - n, " op %s vcpu %u as %d", op_names[op], v, as);
    switch (op) {
    case OP_CREATE: {
        int a = g_as_create(k, v);
        if (a >= 0) {
            for (unsigned i = 0; i < 4; i++)
                g_mmap(k, v, a, rand_user_va(k, g_rand(k)), rand_prot(g_rand(k)),
                       g_rand(k) & 1);
            if (r & 1)
                g_switch(k, v, a);
        }
        break;
    }
    case OP_DESTROY: {
        int a = live_as(k, r);
        if (a < 0)
            break;
        /* every vCPU running it goes back to the boot tables first */
        for (unsigned i = 0; i < k->nvcpu; i++)
            if (k->cur_as[i] == a)
                g_switch(k, i, -1);
        g_vh_as_destroyed(k, a);
        g_as_destroy(k, v, a);
        break;
    }
    case OP_FORK:
        if (cur >= 0) {
            int child = g_fork(k, v, cur);
            if (child >= 0 && (r & 1))
                g_switch(k, v, child);
        }
        break;
    case OP_SWITCH:
        g_switch(k, v, (r & 7) ? live_as(k, r >> 3) : -1);
        break;
    case OP_MMAP:
        if (as >= 0)
            g_mmap(k, v, as, rand_user_va(k, r), rand_prot(r >> 32), (r >> 40) & 1);
        break;
    case OP_MMAP_LARGE:
        if (as >= 0)
            g_mmap_large(k, v, as, g_user_va(k, (unsigned)(r % 3), (unsigned)(r >> 4),
                                             8 + (unsigned)((r >> 8) & 1), 0),
                         rand_prot(r >> 32));
        break;
    case OP_MUNMAP: {
        struct g_page *p = rand_page(k, as, r);
        if (p)
            g_munmap(k, v, as, p);
        break;
    }
    case OP_MPROTECT: {
        struct g_page *p = rand_page(k, as, r);
        if (p)
            g_mprotect(k, v, as, p, rand_prot(r >> 32));
        break;
    }
    case OP_SWAP_OUT: {
        struct g_page *p = rand_page(k, as, r);
        if (p)
            g_swap_out(k, v, as, p);
        break;
    }
    case OP_ACCESS: {
        static const uint32_t kinds[] = {
            PGM_ACCESS_USER, PGM_ACCESS_USER | PGM_ACCESS_WRITE, PGM_ACCESS_USER | PGM_ACCESS_WRITE,
            PGM_ACCESS_USER | PGM_ACCESS_FETCH, PGM_ACCESS_READ, PGM_ACCESS_WRITE | PGM_ACCESS_AC,
        };
        for (unsigned i = 0; i < 4; i++) {
            struct g_page *p = rand_page(k, cur, g_rand(k));
            uint64_t va = p ? p->va + (p->large ? (g_rand(k) % k->lp_frames) * 4096 : 0) +
                                  (g_rand(k) & 0xff8)
                            : rand_user_va(k, g_rand(k));
            g_program_access(k, v, va, kinds[g_rand(k) % 6]);
        }
        break;
    }
    case OP_AGE: {
        struct g_page *p = rand_page(k, as, r);
        if (p)
            g_age(k, v, as, p, (r >> 32) & 1);
        break;
    }
    case OP_SPLIT: {
        struct g_page *p = rand_large(k, as, r);
        if (p)
            g_split_large(k, v, as, p);
        break;
    }
    case OP_MERGE: {
        struct g_page *p = rand_large(k, as, r);
        if (p)
            g_merge_large(k, v, as, p);
        break;
    }
    case OP_PROTECT_SUB: {
        struct g_page *p = rand_large(k, as, r);
        if (p)
            g_split_protect_sub(k, v, as, p, (unsigned)((r >> 16) % k->lp_frames));
        break;
    }
    case OP_FREE_PT:
        if (as >= 0)
            g_free_empty_pt(k, v, as, rand_user_va(k, r));
        break;
    case OP_KTEXT:
        g_ktext_remap(k, v, (unsigned)(r % G_KTEXT_PAGES), (r >> 8) & 1);
        break;
    case OP_WP:
        g_set_cr0(k, v, k->cr0[v] ^ PGM_CR0_WP);
        break;
    case OP_SMAP:
        if (c->cr4 & PGM_CR4_SMAP)
            g_set_cr4(k, v, k->cr4[v] ^ PGM_CR4_SMAP);
        break;
    case OP_SPURIOUS_FLUSH:
        /* a guest may flush more than it needs to */
        if (r & 1)
            g_invlpg(k, v, rand_user_va(k, r >> 1));
        else
            g_flush_tlb(k, v, (r >> 1) & 1);
        break;
    case OP_DIRTY_LOG:
        dirty_log_step(k, r);
        break;
    case OP_VHANDLER:
        g_vh_step(k, as, r);
        break;
    case OP_COUNT:
        break;
    }
}

static void
run_config(const struct config *c, unsigned index)
{
    uint64_t seed = seed_base + index;
    /* PGM_RANDOM_CONFIG: one index or a comma-separated list */
    const char *only = getenv("PGM_RANDOM_CONFIG");
    if (only && *only) {
        bool found = false;
        for (const char *q = only; *q;) {
            char *end;
            unsigned long i = strtoul(q, &end, 0);
            if (end == q)
                break;
            found |= i == index;
            q = *end == ',' ? end + 1 : end;
        }
        if (!found)
            return; /* not selected: passes (the meson tests split the list) */
    }
    unsigned steps = (unsigned)((uint64_t)nsteps * c->steps_pct / 100);
    struct g_kernel *k = calloc(1, sizeof(*k));
    assert_non_null(k);
    struct config cc = *c; /* debugging overrides */
    if (getenv("PGM_RANDOM_NVCPU"))
        cc.nvcpu = (unsigned)atoi(getenv("PGM_RANDOM_NVCPU"));
    if (getenv("PGM_RANDOM_CR4"))
        cc.cr4 = strtoull(getenv("PGM_RANDOM_CR4"), NULL, 0);
    c = &cc;
    g_init(k, c->levels, c->nvcpu, seed);
    dlog.on = false;
    dlog.rounds = dlog.pages = 0;
    for (unsigned v = 0; v < c->nvcpu; v++)
        g_boot_cpu(k, v, c->cr4);
    g_vh_init(k);
    clock_t t0 = clock();
    for (unsigned step = 0; step < steps; step++) {
        snprintf(k->ctx, sizeof(k->ctx),
                 "config %s seed %#" PRIx64 " (PGM_RANDOM_SEED=%#" PRIx64 ") step %u", c->name,
                 seed, seed_base, step);
        if (k->trace)
            fprintf(stderr, "T --- %s\n", k->ctx);
        do_step(k, c);
        if (k->trace)
            fprintf(stderr, "T --- check\n");
        g_check(k, (step % 97) == 0);
        if (step % 256 == 255)
            g_check_memory(k);
        total_steps++;
    }
    snprintf(k->ctx, sizeof(k->ctx), "config %s seed %#" PRIx64 " end", c->name, seed);
    g_check_memory(k);
    total_accesses += k->n_access;
    uint64_t vh_calls = g_vh_fini(k);
    fprintf(stderr,
            "# %s: %u steps, %" PRIu64 " checked accesses, %" PRIu64 " injected, %" PRIu64
            " table writes, %" PRIu64 " faults fixed, %" PRIu64 " invlpg, %" PRIu64
            " flushes, %" PRIu64 " cr3 loads, %" PRIu64 " virtual handler calls, %.1f s\n",
            c->name, steps, k->n_access, k->n_inject, k->n_table_writes, k->n_faults_fixed,
            k->n_invlpg, k->n_flush, k->n_cr3, vh_calls, (double)(clock() - t0) / CLOCKS_PER_SEC);
    if (dlog.rounds)
        fprintf(stderr, "# %s: %" PRIu64 " dirty-log rounds, %" PRIu64 " pages reported\n",
                c->name, dlog.rounds, dlog.pages);
    g_fini(k);
    free(k);
}

static const struct config configs[] = {
    { "amd64-1cpu", 4, 1, 0, 100 },
    { "amd64-2cpu-pcid-smep-smap", 4, 2, PGM_CR4_PCIDE | PGM_CR4_SMEP | PGM_CR4_SMAP, 100 },
    { "la57-1cpu-smap", 5, 1, PGM_CR4_SMAP, 100 },
    { "la57-3cpu", 5, 3, 0, 100 },
    { "32bit-1cpu-smap", 2, 1, PGM_CR4_SMAP, 75 },
    { "32bit-2cpu-smep-smap", 2, 2, PGM_CR4_SMEP | PGM_CR4_SMAP, 75 },
    { "pae-1cpu-smap", 3, 1, PGM_CR4_SMAP, 75 },
    { "pae-2cpu-smep-smap", 3, 2, PGM_CR4_SMEP | PGM_CR4_SMAP, 75 },
};

static void
test_config0(void **state)
{
    (void)state;
    run_config(&configs[0], 0);
}

static void
test_config1(void **state)
{
    (void)state;
    run_config(&configs[1], 1);
}

static void
test_config2(void **state)
{
    (void)state;
    run_config(&configs[2], 2);
}

static void
test_config3(void **state)
{
    (void)state;
    run_config(&configs[3], 3);
}

static void test_config4(void **state) { (void)state; run_config(&configs[4], 4); }
static void test_config5(void **state) { (void)state; run_config(&configs[5], 5); }
static void test_config6(void **state) { (void)state; run_config(&configs[6], 6); }
static void test_config7(void **state) { (void)state; run_config(&configs[7], 7); }

int
main(void)
{
    const char *s = getenv("PGM_RANDOM_SEED");
    if (s && *s)
        seed_base = strtoull(s, NULL, 0);
    s = getenv("PGM_RANDOM_STEPS");
    if (s && *s)
        nsteps = (unsigned)strtoul(s, NULL, 0);
    fprintf(stderr, "# PGM_RANDOM_SEED=%#" PRIx64 " PGM_RANDOM_STEPS=%u\n", seed_base, nsteps);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config0),
        cmocka_unit_test(test_config1),
        cmocka_unit_test(test_config2),
        cmocka_unit_test(test_config3),
        cmocka_unit_test(test_config4),
        cmocka_unit_test(test_config5),
        cmocka_unit_test(test_config6),
        cmocka_unit_test(test_config7),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr, "# %" PRIu64 " steps, %" PRIu64 " checked accesses in all\n", total_steps,
            total_accesses);
    return rc;
}
