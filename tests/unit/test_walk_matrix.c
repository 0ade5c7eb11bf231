/* SPDX-License-Identifier: MIT */
/*
 * Exhaustive permission matrix: libpgm's guest walker (public API, soft
 * backend) against the independent SDM model (tests/model/sdm_model.c), for
 * every guest paging mode.
 *
 * For each mode, two adjacent levels form the "pair" under test (PDE + PTE;
 * in 4/5-level paging also PDPTE + PDE, for 1 GiB pages). Each entry of the
 * pair takes every combination of P, R/W, U/S, A, D, XD, PS (in 32-bit paging,
 * where there is no XD, G takes its place) and one of a few "extra bit"
 * choices (reserved bits, address bits, ignored bits; see the mode tables).
 * Every combination runs under every CPU state (CR0.WP, EFER.NXE, CR4.SMEP,
 * CR4.SMAP, CR4.PKE with PKRU values, CR4.PSE in 32-bit paging) and every
 * access (supervisor / user / implicit-supervisor x read / write / fetch,
 * each with RFLAGS.AC 0 and 1; implicit fetches do not exist).
 *
 * Entries above the pair are present and rotate through five variants (open
 * with A clear, open with A set, read-only, supervisor-only, XD; in PAE the
 * latched PDPTE alternates PWT/PCD/AVL bits), chosen by the CPU state and the
 * upper pair entry: every variant meets every CPU state and every upper pair
 * entry, though not every (variant, CPU state, entry) triple.
 *
 * Pruning (the only one): when the walk cannot reach the lower entry of the
 * pair (the upper one is not present, has a reserved bit, is a leaf, or
 * points elsewhere), the CPU never reads the lower entry, so its values are
 * collapsed to four representatives (all-clear, every flag set, and one
 * mixed value with each of the other two extra-bit choices) instead of all
 * 384. No other combination is skipped.
 *
 * Dimensions per pass: pair entries 128 flag combinations x 3 extra-bit
 * choices each (384 x 384); CPU states 16 (WP, NXE, SMEP, SMAP) x 4 PKE/PKRU
 * states in 4/5-level paging, x 2 (PKE off, PKE on with an all-deny PKRU,
 * which must change nothing) x 2 (CR4.PSE) in 32-bit paging, x 2 in PAE;
 * 16 accesses. Upper bound per pass: 384 x 384 x 64 x 16 = 151M walks
 * (PAE: 75.5M); the pruning above keeps 7-14 % of them.
 *
 * Case counts (a case is one pgm_walk plus one model walk; printed per pass):
 *   32-bit  : 3 passes (M=40 PSE-36, M=36 PSE-36, no PSE-36) x 20,250,624
 *             = 60,751,872
 *   PAE     : 2 passes (MAXPHYADDR 40, 52)              x  5,455,872
 *             = 10,911,744
 *   4-level : 2 passes (PDE x PTE, PDPTE x PDE; 1 GiB)  x 10,285,504
 *             = 20,571,008
 *   5-level : 2 passes (PDE x PTE, PDPTE x PDE; no 1 GiB pages)
 *             = 20,571,008
 *   total 112.8M walks, about 30 s at -O2 on one core (the four modes are
 *   separate cmocka tests in one program).
 *
 * Each case compares: status; #PF error code; GPA and page size on success;
 * effective rights, leaf level, protection key, G and PAT index on success;
 * the faulting level on a #PF; the walk flags AD_WRITTEN and NONRAM_TABLE;
 * and every paging-structure entry on the path read back through
 * pgm_phys_read() after the access (A/D bits). A mismatch prints
 * the full case (CPU state, access, address, every entry before the access,
 * the model's and libpgm's results); the first MAX_REPORTS are printed.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <pgm/pgm.h>

#include "sdm_model.h"

#define RAM_SIZE    (8u << 20) /* guest RAM at GPA 0; the model mirrors it */
#define MAX_REPORTS 20 /* default; WALK_MATRIX_REPORTS=<n> in the environment overrides */

/* Entry bits. */
#define B_P   (1ull << 0)
#define B_RW  (1ull << 1)
#define B_US  (1ull << 2)
#define B_A   (1ull << 5)
#define B_D   (1ull << 6)
#define B_PS  (1ull << 7)
#define B_G   (1ull << 8)
#define B_XD  (1ull << 63)

/* The 7 varied flags of a pair entry, as an index 0..127. */
enum {
    F_P = 1 << 0,
    F_RW = 1 << 1,
    F_US = 1 << 2,
    F_A = 1 << 3,
    F_D = 1 << 4,
    F_XD = 1 << 5, /* G in 32-bit paging */
    F_PS = 1 << 6,
    F_COUNT = 1 << 7,
};

#define MAX_EXTRA 3

/* One pass: a mode, its tables and the pair under test. */
struct pass {
    const char *name;
    enum sdm_mode mode;
    enum pgm_guest_mode pgm_mode;
    unsigned maxphyaddr;
    bool gbpages;
    bool pse36;
    uint64_t va;
    uint64_t cr3;
    /* table[l]: GPA of the table holding the level-l entry (PAE: table[3] is
     * the 32-byte PDPT). table[0]: the 4 KiB page the PTE maps. */
    uint64_t table[6];
    unsigned pair;                /* level of the upper pair entry (2 or 3) */
    uint64_t extra_hi[MAX_EXTRA]; /* extra-bit choices of the upper pair entry */
    uint64_t extra_lo[MAX_EXTRA]; /* ... of the lower one */
    unsigned n_extra_hi, n_extra_lo;
};

/*
 * 32-bit: M = min(52, 40) = 40 with PSE-36. The PT sits at 4 MiB so a PDE's
 * address field is both a PT pointer (PS=0 or CR4.PSE=0) and a 4 MiB page
 * base. PDE extras: bit 13 (PA 32 of a 4 MiB page, or moves the PT), bit 21
 * (reserved in a 4 MiB PDE, else moves the PT). PTE extras: bits 11:9 (AVL),
 * bit 31 (address). No reserved bits exist in PTEs.
 */
static const struct pass pass_32 = {
    .name = "32bit",
    .mode = SDM_MODE_32BIT,
    .pgm_mode = PGM_MODE_32BIT,
    .maxphyaddr = 52,
    .gbpages = true,
    .pse36 = true,
    .va = 0x12345678,
    .cr3 = 0x1000,
    .table = {0x23456000, 0x400000, 0x1000},
    .pair = 2,
    .extra_hi = {0, 1ull << 13, 1ull << 21},
    .extra_lo = {0, 0xe00, 1ull << 31},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

/* 32-bit, MAXPHYADDR 36 with PSE-36 -> M = 36: PDE bits 16:13 are PA 35:32,
 * 21:17 reserved. Extras: bit 16 (PA 35), bit 17 (reserved). */
static const struct pass pass_32_m36 = {
    .name = "32bit-m36",
    .mode = SDM_MODE_32BIT,
    .pgm_mode = PGM_MODE_32BIT,
    .maxphyaddr = 36,
    .gbpages = false,
    .pse36 = true,
    .va = 0xfedcba98,
    .cr3 = 0x7000,
    .table = {0x89abc000, 0x400000, 0x7000},
    .pair = 2,
    .extra_hi = {0, 1ull << 16, 1ull << 17},
    .extra_lo = {0, 0x200, 1ull << 30},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

/* 32-bit without PSE-36 -> M = 32: PDE bits 21:13 reserved. Extras: bit 12
 * (PAT of a 4 MiB page, or moves the PT), bit 13 (reserved). */
static const struct pass pass_32_nopse36 = {
    .name = "32bit-nopse36",
    .mode = SDM_MODE_32BIT,
    .pgm_mode = PGM_MODE_32BIT,
    .maxphyaddr = 52,
    .gbpages = false,
    .pse36 = false,
    .va = 0x00400fff,
    .cr3 = 0x2000,
    .table = {0xfffff000, 0x400000, 0x2000},
    .pair = 2,
    .extra_hi = {0, 1ull << 12, 1ull << 13},
    .extra_lo = {0, 0x18, 0xe00},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

/*
 * PAE, MAXPHYADDR 40: bits 62:40 reserved in PDEs/PTEs. PDPT at 0x1fe0 (a
 * 32-byte aligned CR3 that is not page aligned). PDE extras: bit 40, bit 13
 * (reserved in a 2 MiB PDE, moves the PT otherwise). PTE extras: bit 40,
 * bit 59 (a protection-key bit in 4-level paging, reserved in PAE).
 */
static const struct pass pass_pae = {
    .name = "pae",
    .mode = SDM_MODE_PAE,
    .pgm_mode = PGM_MODE_PAE,
    .maxphyaddr = 40,
    .gbpages = true,
    .pse36 = true,
    .va = 0xc0a12345,
    .cr3 = 0x1fe0,
    .table = {0x23456000, 0x200000, 0x3000, 0x1fe0},
    .pair = 2,
    .extra_hi = {0, 1ull << 40, 1ull << 13},
    .extra_lo = {0, 1ull << 40, 1ull << 59},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

/* PAE, MAXPHYADDR 52: bit 51 is an address bit (a PT there is unassigned
 * space: all-ones), bits 62:52 are still reserved. */
static const struct pass pass_pae_m52 = {
    .name = "pae-m52",
    .mode = SDM_MODE_PAE,
    .pgm_mode = PGM_MODE_PAE,
    .maxphyaddr = 52,
    .gbpages = true,
    .pse36 = true,
    .va = 0x3fe01fff,
    .cr3 = 0x5000,
    .table = {0x8000000001000ull, 0x200000, 0x6000, 0x5000},
    .pair = 2,
    .extra_hi = {0, 1ull << 51, 1ull << 52},
    .extra_lo = {0, 1ull << 51, 1ull << 62},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

/*
 * 4-level, MAXPHYADDR 46, 1 GiB pages. Extras: bit 46 (reserved), bit 13
 * (reserved in a large page), bits 52 + 45 (ignored bit + top address bit).
 */
static const struct pass pass_4l = {
    .name = "4level",
    .mode = SDM_MODE_4LEVEL,
    .pgm_mode = PGM_MODE_AMD64,
    .maxphyaddr = 46,
    .gbpages = true,
    .pse36 = true,
    .va = 0xffff923456789abcull,
    .cr3 = 0x1000,
    .table = {0x123456000ull, 0x200000, 0x3000, 0x2000, 0x1000},
    .pair = 2,
    .extra_hi = {0, 1ull << 46, 1ull << 13},
    .extra_lo = {0, 1ull << 46, (1ull << 52) | (1ull << 45)},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

/* The same with the PDPTE + PDE pair; the PD sits at GPA 0 (1 GiB aligned). */
static const struct pass pass_4l_1g = {
    .name = "4level-1g",
    .mode = SDM_MODE_4LEVEL,
    .pgm_mode = PGM_MODE_AMD64,
    .maxphyaddr = 46,
    .gbpages = true,
    .pse36 = true,
    .va = 0xffff923456789abcull,
    .cr3 = 0x1000,
    .table = {0x123456000ull, 0x200000, 0x0, 0x2000, 0x1000},
    .pair = 3,
    .extra_hi = {0, 1ull << 46, 1ull << 13},
    .extra_lo = {0, 1ull << 46, 1ull << 13},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

/*
 * 5-level, MAXPHYADDR 52 (no high reserved bits: bit 51 is an address bit,
 * and a table there is unassigned space that reads all-ones), no 1 GiB pages
 * (PS in a PDPTE is reserved).
 */
static const struct pass pass_5l = {
    .name = "5level",
    .mode = SDM_MODE_5LEVEL,
    .pgm_mode = PGM_MODE_LA57,
    .maxphyaddr = 52,
    .gbpages = false,
    .pse36 = true,
    .va = 0xff123456789abcdeull,
    .cr3 = 0x1000,
    .table = {0x8123456000ull, 0x200000, 0x3000, 0x2000, 0x4000, 0x1000},
    .pair = 2,
    .extra_hi = {0, 1ull << 51, 1ull << 13},
    .extra_lo = {0, 1ull << 51, (1ull << 52) | (1ull << 62)},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

static const struct pass pass_5l_1g = {
    .name = "5level-1g",
    .mode = SDM_MODE_5LEVEL,
    .pgm_mode = PGM_MODE_LA57,
    .maxphyaddr = 52,
    .gbpages = false,
    .pse36 = true,
    .va = 0xff123456789abcdeull,
    .cr3 = 0x1000,
    .table = {0x8123456000ull, 0x200000, 0x0, 0x2000, 0x4000, 0x1000},
    .pair = 3,
    .extra_hi = {0, 1ull << 51, 1ull << 13},
    .extra_lo = {0, 1ull << 51, 1ull << 13},
    .n_extra_hi = 3,
    .n_extra_lo = 3,
};

/* ---- Accesses ------------------------------------------------------------ */

struct access_case {
    enum sdm_kind kind;
    enum sdm_priv priv;
    bool ac;
};

static const struct access_case accesses[] = {
    {SDM_READ, SDM_PRIV_SUPERVISOR, false},  {SDM_READ, SDM_PRIV_SUPERVISOR, true},
    {SDM_WRITE, SDM_PRIV_SUPERVISOR, false}, {SDM_WRITE, SDM_PRIV_SUPERVISOR, true},
    {SDM_FETCH, SDM_PRIV_SUPERVISOR, false}, {SDM_FETCH, SDM_PRIV_SUPERVISOR, true},
    {SDM_READ, SDM_PRIV_USER, false},        {SDM_READ, SDM_PRIV_USER, true},
    {SDM_WRITE, SDM_PRIV_USER, false},       {SDM_WRITE, SDM_PRIV_USER, true},
    {SDM_FETCH, SDM_PRIV_USER, false},       {SDM_FETCH, SDM_PRIV_USER, true},
    {SDM_READ, SDM_PRIV_IMPLICIT, false},    {SDM_READ, SDM_PRIV_IMPLICIT, true},
    {SDM_WRITE, SDM_PRIV_IMPLICIT, false},   {SDM_WRITE, SDM_PRIV_IMPLICIT, true},
};
#define N_ACCESSES (sizeof(accesses) / sizeof(accesses[0]))

static uint32_t pgm_access_flags(const struct access_case *a)
{
    uint32_t f = 0;
    if (a->kind == SDM_WRITE) {
        f |= PGM_ACCESS_WRITE;
    } else if (a->kind == SDM_FETCH) {
        f |= PGM_ACCESS_FETCH;
    }
    if (a->priv == SDM_PRIV_USER) {
        f |= PGM_ACCESS_USER;
    } else if (a->priv == SDM_PRIV_IMPLICIT) {
        f |= PGM_ACCESS_IMPLICIT;
    }
    if (a->ac) {
        f |= PGM_ACCESS_AC;
    }
    return f;
}

/* ---- CPU states ---------------------------------------------------------- */

/*
 * Protection-key states. Long modes: the leaf carries key 1 and non-leaf
 * entries key 2 (ignored by the CPU); PKRU always denies key 2 when PKE=1.
 * PAE/32-bit have no keys: PKE=1 with an all-deny PKRU must change nothing.
 */
struct pk_state {
    bool pke;
    uint32_t pkru;
};

static const struct pk_state pk_long[] = {
    {false, 0xffffffffu},    /* PKE off: PKRU must be ignored */
    {true, 0x30},            /* key 1 open, key 2 AD|WD */
    {true, 0x30 | 0x4},      /* key 1 AD */
    {true, 0x30 | 0x8},      /* key 1 WD */
};
static const struct pk_state pk_legacy[] = {
    {false, 0},
    {true, 0xffffffffu},
};

#define KEY_LEAF    (1ull << 59)
#define KEY_NONLEAF (2ull << 59)

/* ---- One pass ------------------------------------------------------------ */

struct ctx {
    const struct pass *p;
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    struct sdm_mem mem;
    struct sdm_cpu cpu;
    unsigned top;         /* top level (PAE: 3, the PDPTE) */
    unsigned esize;       /* entry size */
    uint64_t slot[6];     /* GPA of the path entry at each level */
    uint64_t want[6];     /* entry values for the current case */
    uint64_t lib_cur[6];  /* what libpgm's memory holds at slot[] */
    bool lib_known[6];
    uint64_t cases;
    uint64_t mismatches;
    uint64_t pruned;
};

static unsigned top_level(enum sdm_mode mode)
{
    static const unsigned top[] = {2, 3, 4, 5};
    return top[mode];
}

static uint64_t index_of(enum sdm_mode mode, unsigned level, uint64_t va)
{
    if (mode == SDM_MODE_32BIT) {
        return level == 2 ? (va >> 22) & 0x3ff : (va >> 12) & 0x3ff;
    }
    if (mode == SDM_MODE_PAE && level == 3) {
        return (va >> 30) & 3;
    }
    return (va >> (12 + 9 * (level - 1))) & 0x1ff;
}

static bool is_long(enum sdm_mode mode)
{
    return mode == SDM_MODE_4LEVEL || mode == SDM_MODE_5LEVEL;
}

/* Pair entry at @p level from flag index @p f and extra bits @p extra. */
static uint64_t pair_entry(const struct ctx *c, unsigned level, unsigned f, uint64_t extra)
{
    const struct pass *p = c->p;
    uint64_t e = p->table[level - 1] | extra;
    e |= (f & F_P) ? B_P : 0;
    e |= (f & F_RW) ? B_RW : 0;
    e |= (f & F_US) ? B_US : 0;
    e |= (f & F_A) ? B_A : 0;
    e |= (f & F_D) ? B_D : 0;
    e |= (f & F_PS) ? B_PS : 0;
    if (f & F_XD) {
        e |= p->mode == SDM_MODE_32BIT ? B_G : B_XD;
    }
    if (is_long(p->mode)) {
        /* key 1 where the entry is a leaf, key 2 where it is not */
        bool leaf = level == 1 || (f & F_PS);
        e |= leaf ? KEY_LEAF : KEY_NONLEAF;
    }
    return e;
}

/* Variants of the entries above the pair. */
enum { UV_OPEN, UV_OPEN_A, UV_RO, UV_SUP, UV_XD, UV_COUNT };

static uint64_t upper_entry(const struct ctx *c, unsigned level, unsigned variant)
{
    const struct pass *p = c->p;
    uint64_t e = p->table[level - 1] | B_P;
    if (p->mode == SDM_MODE_PAE) {
        /* PDPTE: only P, PWT, PCD and AVL exist; alternate the latter. */
        return variant & 1 ? e | 0x18 | 0xe00 : e;
    }
    e |= B_RW | B_US | KEY_NONLEAF;
    switch (variant) {
    case UV_OPEN_A:
        e |= B_A;
        break;
    case UV_RO:
        e &= ~B_RW;
        break;
    case UV_SUP:
        e &= ~B_US;
        break;
    case UV_XD:
        e |= B_XD;
        break;
    default:
        break;
    }
    return e;
}

/* Entries below the pair (only the PTE, in the 1 GiB passes). */
static uint64_t lower_entry(const struct ctx *c, unsigned level)
{
    uint64_t e = c->p->table[level - 1] | B_P | B_RW | B_US;
    if (is_long(c->p->mode)) {
        e |= level == 1 ? KEY_LEAF : KEY_NONLEAF;
    }
    return e;
}

static void fail_setup(const char *what, int rc)
{
    fprintf(stderr, "walk_matrix: %s failed: %d\n", what, rc);
    fail();
}

static void ctx_init(struct ctx *c, const struct pass *p)
{
    memset(c, 0, sizeof(*c));
    c->p = p;
    c->top = top_level(p->mode);
    c->esize = p->mode == SDM_MODE_32BIT ? 4 : 8;
    c->mem.size = RAM_SIZE;
    c->mem.bytes = calloc(1, RAM_SIZE);
    assert_non_null(c->mem.bytes);

    struct pgm_soft_backend *sb = NULL;
    int rc = pgm_soft_backend_create(4096, &sb);
    c->sb = sb;
    if (rc != 0) {
        fail_setup("pgm_soft_backend_create", rc);
    }
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_NONE;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = sb;
    cfg.features.maxphyaddr = (uint8_t)p->maxphyaddr;
    cfg.features.nx = true;
    cfg.features.pse = true;
    cfg.features.pse36 = p->pse36;
    cfg.features.gbpages = p->gbpages;
    cfg.features.la57 = true;
    cfg.features.smep = true;
    cfg.features.smap = true;
    cfg.features.pku = true;
    cfg.features.pge = true;
    rc = pgm_vm_create(&cfg, &c->vm);
    if (rc != 0) {
        fail_setup("pgm_vm_create", rc);
    }
    c->vcpu = pgm_vcpu_get(c->vm, 0);
    assert_non_null(c->vcpu);
    rc = pgm_phys_add_ram(c->vm, 0, RAM_SIZE);
    if (rc != 0) {
        fail_setup("pgm_phys_add_ram", rc);
    }

    for (unsigned l = c->top; l >= 1; l--) {
        c->slot[l] = p->table[l] + index_of(p->mode, l, p->va) * c->esize;
    }

    c->cpu.mode = p->mode;
    c->cpu.cr3 = p->cr3;
    c->cpu.maxphyaddr = p->maxphyaddr;
    c->cpu.gbpages = p->gbpages;
    c->cpu.pse36 = p->pse36;

}

/* Write @p v at path slot @p l in both memories (libpgm only if it differs). */
static void put_entry(struct ctx *c, unsigned l, uint64_t v)
{
    c->want[l] = v;
    if (!c->lib_known[l] || c->lib_cur[l] != v) {
        int rc = pgm_phys_write(c->vm, c->slot[l], &v, c->esize);
        if (rc != 0) {
            fail_setup("pgm_phys_write", rc);
        }
        c->lib_cur[l] = v;
        c->lib_known[l] = true;
    }
    sdm_mem_write(&c->mem, c->slot[l], v, c->esize);
}

static uint64_t lib_read(struct ctx *c, uint64_t gpa)
{
    uint64_t v = 0;
    int rc = pgm_phys_read(c->vm, gpa, &v, c->esize);
    if (rc != 0) {
        v = ~0ull; /* MMIO without handler: not expected here */
    }
    return v;
}

static uint64_t max_reports(void)
{
    static uint64_t n = UINT64_MAX;
    if (n == UINT64_MAX) {
        const char *e = getenv("WALK_MATRIX_REPORTS");
        n = e ? strtoull(e, NULL, 0) : MAX_REPORTS;
    }
    return n;
}

static const char *status_name(enum pgm_walk_status s)
{
    switch (s) {
    case PGM_WALK_OK:
        return "ok";
    case PGM_WALK_PAGE_FAULT:
        return "#PF";
    case PGM_WALK_GP:
        return "#GP";
    }
    return "?";
}

static void report(struct ctx *c, const struct access_case *a, const char *why,
                   const struct sdm_result *m, const struct pgm_walk *w, int rc,
                   const uint64_t after_lib[6], const uint64_t after_model[6])
{
    c->mismatches++;
    if (c->mismatches > max_reports()) {
        return;
    }
    char cpu_s[512], acc_s[64], res_s[512];
    struct sdm_access sa = {a->kind, a->priv, a->ac};
    fprintf(stderr,
            "\nMISMATCH [%s] %s\n  cpu: %s\n  access: %s (pgm flags %#x) va=%#" PRIx64 "\n",
            c->p->name, why, sdm_cpu_format(&c->cpu, cpu_s, sizeof(cpu_s)),
            sdm_access_format(&sa, acc_s, sizeof(acc_s)), pgm_access_flags(a), c->p->va);
    fprintf(stderr, "  entries before:");
    for (unsigned l = c->top; l >= 1; l--) {
        fprintf(stderr, " L%u@%#" PRIx64 "=%#" PRIx64, l, c->slot[l], c->want[l]);
    }
    fprintf(stderr, "\n  model : %s\n", sdm_result_format(m, res_s, sizeof(res_s)));
    fprintf(stderr,
            "  libpgm: rc=%d status=%s ec=%#x gpa=%#" PRIx64 " shift=%u level=%u..%u "
            "rights=%#x pkey=%u global=%d pat=%u flags=%#x\n",
            rc, status_name(w->status), w->error_code, w->gpa, w->page_shift, w->top_level,
            w->last_level, w->rights, w->pkey, w->global, w->pat_index, w->flags);
    fprintf(stderr, "  entries after (model / libpgm):");
    for (unsigned l = c->top; l >= 1; l--) {
        fprintf(stderr, " L%u=%#" PRIx64 "/%#" PRIx64, l, after_model[l], after_lib[l]);
    }
    fprintf(stderr, "\n");
}

/* Run one access on the current tables and CPU state; compare. */
static void run_case(struct ctx *c, const struct access_case *a)
{
    struct sdm_access sa = {a->kind, a->priv, a->ac};
    struct sdm_result m;
    struct pgm_walk w;

    memset(&w, 0, sizeof(w));
    sdm_translate(&c->mem, &c->cpu, c->p->va, &sa, &m);
    int rc = pgm_walk(c->vcpu, c->p->va, pgm_access_flags(a), &w);
    c->cases++;

    uint64_t after_lib[6] = {0}, after_model[6] = {0};
    for (unsigned l = c->top; l >= 1; l--) {
        after_lib[l] = lib_read(c, c->slot[l]);
        after_model[l] = sdm_mem_read(&c->mem, c->slot[l], c->esize);
        c->lib_cur[l] = after_lib[l];
    }

    const char *why = NULL;
    char buf[96];
    if (rc != 0) {
        why = "pgm_walk returned an error";
    } else if ((int)w.status != (int)m.outcome) {
        why = "status";
    } else if (m.outcome == SDM_PF && w.error_code != m.error_code) {
        snprintf(buf, sizeof(buf), "error code %#x, expected %#x", w.error_code, m.error_code);
        why = buf;
    } else if (m.outcome == SDM_PF && w.last_level != m.last_level) {
        why = "fault level";
    } else if (m.outcome == SDM_OK && w.gpa != m.gpa) {
        why = "gpa";
    } else if (m.outcome == SDM_OK && w.page_shift != m.page_shift) {
        why = "page size";
    } else if (m.outcome == SDM_OK && w.last_level != m.last_level) {
        why = "leaf level";
    } else if (m.outcome == SDM_OK && w.rights != m.rights) {
        why = "rights";
    } else if (m.outcome == SDM_OK && w.pkey != m.pkey) {
        why = "pkey";
    } else if (m.outcome == SDM_OK && w.global != m.global) {
        why = "global";
    } else if (m.outcome == SDM_OK && w.pat_index != m.pat_index) {
        why = "pat index";
    } else if (((w.flags & PGM_WALK_F_AD_WRITTEN) != 0) != m.ad_written) {
        why = "PGM_WALK_F_AD_WRITTEN";
    } else if (m.outcome != SDM_GP &&
               ((w.flags & PGM_WALK_F_NONRAM_TABLE) != 0) != m.outside_ram) {
        why = "PGM_WALK_F_NONRAM_TABLE";
    } else {
        for (unsigned l = c->top; l >= 1; l--) {
            if (after_lib[l] != after_model[l]) {
                snprintf(buf, sizeof(buf), "entry L%u after the access", l);
                why = buf;
                break;
            }
        }
    }
    if (why) {
        report(c, a, why, &m, &w, rc, after_lib, after_model);
    }
}

static void set_cpu(struct ctx *c, bool wp, bool nxe, bool smep, bool smap,
                    const struct pk_state *pk, bool pse)
{
    struct sdm_cpu *s = &c->cpu;
    s->cr0_wp = wp;
    s->efer_nxe = nxe;
    s->cr4_smep = smep;
    s->cr4_smap = smap;
    s->cr4_pke = pk->pke;
    s->pkru = pk->pkru;
    s->cr4_pse = pse;
    s->cr4_pge = true;

    struct pgm_cpu_state st;
    memset(&st, 0, sizeof(st));
    st.cr0 = PGM_CR0_PE | PGM_CR0_PG | (wp ? PGM_CR0_WP : 0);
    st.cr3 = c->p->cr3;
    st.cr4 = PGM_CR4_PGE | (pse ? PGM_CR4_PSE : 0) | (smep ? PGM_CR4_SMEP : 0) |
             (smap ? PGM_CR4_SMAP : 0) | (pk->pke ? PGM_CR4_PKE : 0);
    st.efer = nxe ? PGM_EFER_NXE : 0;
    switch (c->p->mode) {
    case SDM_MODE_32BIT:
        break;
    case SDM_MODE_PAE:
        st.cr4 |= PGM_CR4_PAE;
        break;
    case SDM_MODE_4LEVEL:
        st.cr4 |= PGM_CR4_PAE;
        st.efer |= PGM_EFER_LME | PGM_EFER_LMA;
        break;
    case SDM_MODE_5LEVEL:
        st.cr4 |= PGM_CR4_PAE | PGM_CR4_LA57;
        st.efer |= PGM_EFER_LME | PGM_EFER_LMA;
        break;
    }
    st.pkru = pk->pkru;
    int rc = pgm_set_cpu_state(c->vcpu, &st, 0);
    if (rc != 0) {
        fprintf(stderr, "walk_matrix[%s]: pgm_set_cpu_state(cr0=%#" PRIx64 " cr4=%#" PRIx64
                        " efer=%#" PRIx64 ") = %d\n",
                c->p->name, st.cr0, st.cr4, st.efer, rc);
        fail();
    }
    if (pgm_guest_mode(c->vcpu) != c->p->pgm_mode) {
        fprintf(stderr, "walk_matrix[%s]: guest mode %d, expected %d\n", c->p->name,
                (int)pgm_guest_mode(c->vcpu), (int)c->p->pgm_mode);
        fail();
    }
    /* Also exercise MOV CR3 (re-latches the PDPTEs in PAE mode). */
    rc = pgm_sync_cr3(c->vcpu, c->p->cr3);
    if (rc != 0) {
        fail_setup("pgm_sync_cr3", rc);
    }
    if (c->p->mode == SDM_MODE_PAE) {
        assert_true(sdm_pae_load_pdptes(&c->mem, c->p->cr3, c->p->maxphyaddr, s->pdpte));
    }
}

/* The lower-entry values kept when the walk cannot reach the lower entry. */
static bool representative(unsigned ulo)
{
    unsigned f = ulo % F_COUNT, x = ulo / F_COUNT;
    return (x == 0 && (f == 0 || f == F_COUNT - 1)) || (x == 1 && f == 0x2a) ||
           (x == 2 && f == 0x55);
}

/* Does the walk read the lower pair entry (at its slot) under the current
 * CPU state and upper entries? Asked of the model with a plain read. */
static bool lower_reached(struct ctx *c)
{
    struct sdm_access sa = {SDM_READ, SDM_PRIV_SUPERVISOR, false};
    struct sdm_result m;
    unsigned lower = c->p->pair - 1;
    /* Use a non-destructive probe: the walk may set A bits, so snapshot. */
    uint64_t saved[6];
    for (unsigned l = c->top; l >= 1; l--) {
        saved[l] = sdm_mem_read(&c->mem, c->slot[l], c->esize);
    }
    sdm_translate(&c->mem, &c->cpu, c->p->va, &sa, &m);
    for (unsigned l = c->top; l >= 1; l--) {
        sdm_mem_write(&c->mem, c->slot[l], saved[l], c->esize);
    }
    return m.outcome != SDM_GP && m.last_level <= lower && m.entry_gpa[lower] == c->slot[lower];
}

static void run_pass(const struct pass *p, uint64_t *cases_out, uint64_t *mismatch_out)
{
    struct ctx c;
    ctx_init(&c, p);

    const struct pk_state *pks = is_long(p->mode) ? pk_long : pk_legacy;
    unsigned n_pk = is_long(p->mode) ? 4 : 2;
    unsigned n_pse = p->mode == SDM_MODE_32BIT ? 2 : 1;
    unsigned hi = p->pair, lo = p->pair - 1;
    unsigned cpu_index = 0;

    /* Fixed entries below the pair. */
    for (unsigned l = lo - 1; l >= 1; l--) {
        put_entry(&c, l, lower_entry(&c, l));
    }

    for (unsigned pse = 0; pse < n_pse; pse++) {
        for (unsigned pk = 0; pk < n_pk; pk++) {
            for (unsigned cpubits = 0; cpubits < 16; cpubits++, cpu_index++) {
                bool wp = cpubits & 1, nxe = cpubits & 2, smep = cpubits & 4;
                bool smap = cpubits & 8;
                /* CR4.PSE matters only in 32-bit paging; elsewhere it stays on. */
                bool pse_on = p->mode == SDM_MODE_32BIT ? pse != 0 : true;

                /* PAE: the PDPTE variant is per CPU state, written before the
                 * CR3 load that latches it. Other modes rotate the variant of
                 * the upper entries with the upper pair entry. */
                if (p->mode == SDM_MODE_PAE) {
                    put_entry(&c, 3, upper_entry(&c, 3, cpu_index % UV_COUNT));
                }
                set_cpu(&c, wp, nxe, smep, smap, &pks[pk], pse_on);

                for (unsigned uhi = 0; uhi < F_COUNT * p->n_extra_hi; uhi++) {
                    unsigned variant = (cpu_index * 3 + uhi) % UV_COUNT;
                    for (unsigned l = c.top; l > hi; l--) {
                        if (p->mode != SDM_MODE_PAE) {
                            put_entry(&c, l, upper_entry(&c, l, variant));
                        }
                    }
                    unsigned fhi = uhi % F_COUNT;
                    uint64_t ehi = p->extra_hi[uhi / F_COUNT];
                    put_entry(&c, hi, pair_entry(&c, hi, fhi, ehi));
                    put_entry(&c, lo, pair_entry(&c, lo, 0, 0));
                    bool reached = lower_reached(&c);

                    for (unsigned ulo = 0; ulo < F_COUNT * p->n_extra_lo; ulo++) {
                        unsigned flo = ulo % F_COUNT;
                        uint64_t elo = p->extra_lo[ulo / F_COUNT];
                        if (!reached && !representative(ulo)) {
                            c.pruned += N_ACCESSES;
                            continue;
                        }
                        uint64_t vhi = pair_entry(&c, hi, fhi, ehi);
                        uint64_t vlo = pair_entry(&c, lo, flo, elo);
                        for (size_t ai = 0; ai < N_ACCESSES; ai++) {
                            /* (re)write every path entry: the previous access
                             * may have set A/D bits */
                            for (unsigned l = c.top; l >= 1; l--) {
                                uint64_t v = l == hi ? vhi : l == lo ? vlo : c.want[l];
                                put_entry(&c, l, v);
                            }
                            run_case(&c, &accesses[ai]);
                        }
                    }
                }
            }
        }
    }

    fprintf(stderr, "walk_matrix[%s]: %" PRIu64 " cases, %" PRIu64 " pruned, %" PRIu64
                    " mismatches\n",
            p->name, c.cases, c.pruned, c.mismatches);
    *cases_out = c.cases;
    *mismatch_out = c.mismatches;
    pgm_vm_destroy(c.vm);
    pgm_soft_backend_destroy(c.sb);
    free(c.mem.bytes);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void run_passes(const struct pass *const *passes, size_t n)
{
    uint64_t total = 0, bad = 0;
    double t0 = now_seconds();
    for (size_t i = 0; i < n; i++) {
        uint64_t cases = 0, mism = 0;
        run_pass(passes[i], &cases, &mism);
        total += cases;
        bad += mism;
    }
    fprintf(stderr, "walk_matrix: %" PRIu64 " cases in %.1f s, %" PRIu64 " mismatches\n", total,
            now_seconds() - t0, bad);
    assert_int_equal(bad, 0);
}

static void test_matrix_32bit(void **state)
{
    (void)state;
    const struct pass *const passes[] = {&pass_32, &pass_32_m36, &pass_32_nopse36};
    run_passes(passes, 3);
}

static void test_matrix_pae(void **state)
{
    (void)state;
    const struct pass *const passes[] = {&pass_pae, &pass_pae_m52};
    run_passes(passes, 2);
}

static void test_matrix_4level(void **state)
{
    (void)state;
    const struct pass *const passes[] = {&pass_4l, &pass_4l_1g};
    run_passes(passes, 2);
}

static void test_matrix_5level(void **state)
{
    (void)state;
    const struct pass *const passes[] = {&pass_5l, &pass_5l_1g};
    run_passes(passes, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix_32bit),
        cmocka_unit_test(test_matrix_pae),
        cmocka_unit_test(test_matrix_4level),
        cmocka_unit_test(test_matrix_5level),
    };
    return cmocka_run_group_tests_name("walk_matrix", tests, NULL, NULL);
}
