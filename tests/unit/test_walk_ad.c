/* SPDX-License-Identifier: MIT */
/*
 * libpgm's guest walker against the SDM model (tests/model/sdm_model.c) on
 * hand-built cases: exact A/D updates, exact error codes, and bad input
 * (recursive and looping tables, tables outside RAM: in unassigned space,
 * MMIO and ROM; CR3 out of range; PAE PDPTE reserved bits; non-canonical
 * addresses; invalid arguments).
 *
 * Every walk is checked field by field against the model, and the whole guest
 * memory image is compared afterwards, so a stray or missing A/D write
 * anywhere fails. libpgm's documented rules used here (types.h, phys.h):
 * paging-structure reads from MMIO or unassigned GPA return all-ones and A/D
 * writes there are dropped; A/D writes to ROM are dropped; a faulting walk
 * writes nothing; PGM_ACCESS_NO_AD writes nothing.
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

#include <cmocka.h>

#include <pgm/pgm.h>

#include "sdm_model.h"

/* Guest-physical map of every test: RAM [0, RAM_END), optional ROM / MMIO
 * right above it, unassigned space beyond. The model's flat image covers
 * [0, IMAGE_SIZE); beyond it reads all-ones like libpgm's unassigned space. */
#define RAM_END    0xc0000ull
#define ROM_BASE   0xc0000ull
#define ROM_SIZE   0x40000ull
#define IMAGE_SIZE 0x100000ull
#define MMIO_BASE  0x100000ull
#define MMIO_SIZE  0x10000ull

#define P   0x1ull
#define RW  0x2ull
#define US  0x4ull
#define PWT 0x8ull
#define A   0x20ull
#define D   0x40ull
#define PS  0x80ull
#define G   0x100ull
#define XD  (1ull << 63)

struct env {
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    struct sdm_mem mem;
    struct sdm_cpu cpu;
    unsigned esize;
    bool has_rom;
    bool has_mmio;
    uint8_t *scratch; /* IMAGE_SIZE bytes for comparisons */
};

struct env_opts {
    enum sdm_mode mode;
    unsigned maxphyaddr; /* 0: 52 */
    bool no_gbpages;
    bool no_pse36;
    bool rom;  /* ROM_BASE..+ROM_SIZE is ROM (its image is the model's bytes there) */
    bool mmio; /* MMIO_BASE..+MMIO_SIZE is MMIO without handler */
};

/* Envs alive in the current test, freed by the teardown if a check fails
 * (cmocka leaves the test by longjmp). */
#define MAX_LIVE 8
static struct env *live[MAX_LIVE];

static struct env *env_new(const struct env_opts *o)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    for (unsigned i = 0; i < MAX_LIVE; i++) {
        if (!live[i]) {
            live[i] = e;
            break;
        }
    }
    e->mem.bytes = calloc(1, IMAGE_SIZE);
    e->scratch = calloc(1, IMAGE_SIZE);
    assert_non_null(e->mem.bytes);
    assert_non_null(e->scratch);
    e->mem.size = RAM_END;
    e->esize = o->mode == SDM_MODE_32BIT ? 4 : 8;
    e->has_rom = o->rom;
    e->has_mmio = o->mmio;

    assert_int_equal(pgm_soft_backend_create(1024, &e->sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_NONE;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    cfg.features.maxphyaddr = (uint8_t)(o->maxphyaddr ? o->maxphyaddr : 52);
    cfg.features.nx = true;
    cfg.features.pse = true;
    cfg.features.pse36 = !o->no_pse36;
    cfg.features.gbpages = !o->no_gbpages;
    cfg.features.la57 = true;
    cfg.features.smep = true;
    cfg.features.smap = true;
    cfg.features.pku = true;
    cfg.features.pge = true;
    assert_int_equal(pgm_vm_create(&cfg, &e->vm), 0);
    e->vcpu = pgm_vcpu_get(e->vm, 0);
    assert_non_null(e->vcpu);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0, RAM_END), 0);
    if (o->mmio) {
        assert_int_equal(pgm_phys_add_mmio(e->vm, MMIO_BASE, MMIO_SIZE), 0);
    }

    e->cpu.mode = o->mode;
    e->cpu.cr3 = 0x1000;
    e->cpu.cr0_wp = true;
    e->cpu.efer_nxe = true;
    e->cpu.cr4_pge = true;
    e->cpu.maxphyaddr = cfg.features.maxphyaddr;
    e->cpu.gbpages = cfg.features.gbpages;
    e->cpu.pse36 = cfg.features.pse36;
    return e;
}

/* ROM contents are taken from the model's image once the tables are built. */
static void env_add_rom(struct env *e)
{
    assert_true(e->has_rom);
    assert_int_equal(pgm_phys_add_rom(e->vm, ROM_BASE, ROM_SIZE, e->mem.bytes + ROM_BASE,
                                      ROM_SIZE),
                     0);
    e->mem.size = ROM_BASE + ROM_SIZE;
    e->mem.ro_base = ROM_BASE;
    e->mem.ro_size = ROM_SIZE;
}

static void env_free(struct env *e)
{
    for (unsigned i = 0; i < MAX_LIVE; i++) {
        if (live[i] == e) {
            live[i] = NULL;
        }
    }
    pgm_vm_destroy(e->vm);
    pgm_soft_backend_destroy(e->sb);
    free(e->mem.bytes);
    free(e->scratch);
    free(e);
}

/* Write an entry into both memories (the model image may also be a future
 * ROM image: writes below IMAGE_SIZE always land in the model). */
static void put(struct env *e, uint64_t gpa, uint64_t v)
{
    uint64_t size = e->mem.size;
    e->mem.size = IMAGE_SIZE; /* let the builder write the ROM image too */
    uint64_t ro = e->mem.ro_size;
    e->mem.ro_size = 0;
    sdm_mem_write(&e->mem, gpa, v, e->esize);
    e->mem.size = size;
    e->mem.ro_size = ro;
    if (gpa < RAM_END) {
        assert_int_equal(pgm_phys_write(e->vm, gpa, &v, e->esize), 0);
    }
}

static uint64_t lib_get(struct env *e, uint64_t gpa)
{
    uint64_t v = 0;
    (void)pgm_phys_read(e->vm, gpa, &v, e->esize);
    return v;
}

static struct pgm_cpu_state state_of(const struct sdm_cpu *c)
{
    struct pgm_cpu_state st;
    memset(&st, 0, sizeof(st));
    st.cr0 = PGM_CR0_PE | PGM_CR0_PG | (c->cr0_wp ? PGM_CR0_WP : 0);
    st.cr3 = c->cr3;
    st.cr4 = (c->cr4_pge ? PGM_CR4_PGE : 0) | (c->cr4_pse ? PGM_CR4_PSE : 0) |
             (c->cr4_smep ? PGM_CR4_SMEP : 0) | (c->cr4_smap ? PGM_CR4_SMAP : 0) |
             (c->cr4_pke ? PGM_CR4_PKE : 0);
    st.efer = c->efer_nxe ? PGM_EFER_NXE : 0;
    switch (c->mode) {
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
    st.pkru = c->pkru;
    return st;
}

/* Load e->cpu into libpgm (and latch the model's PDPTEs). Must succeed. */
static void env_load(struct env *e)
{
    struct pgm_cpu_state st = state_of(&e->cpu);
    int rc = pgm_set_cpu_state(e->vcpu, &st, 0);
    if (rc != 0) {
        fprintf(stderr, "pgm_set_cpu_state(cr0=%#" PRIx64 " cr3=%#" PRIx64 " cr4=%#" PRIx64
                        " efer=%#" PRIx64 ") = %d\n",
                st.cr0, st.cr3, st.cr4, st.efer, rc);
        fail();
    }
    if (e->cpu.mode == SDM_MODE_PAE) {
        assert_true(sdm_pae_load_pdptes(&e->mem, e->cpu.cr3, e->cpu.maxphyaddr, e->cpu.pdpte));
    }
}

static const char *status_name(enum pgm_walk_status s)
{
    return s == PGM_WALK_OK ? "ok" : s == PGM_WALK_PAGE_FAULT ? "#PF" : "#GP";
}

/* Compare libpgm's whole image [0, IMAGE_SIZE) with the model's. */
static bool images_equal(struct env *e, uint64_t *first_diff)
{
    (void)pgm_phys_read(e->vm, 0, e->scratch, IMAGE_SIZE);
    uint64_t limit = e->mem.size;
    for (uint64_t i = 0; i < limit; i++) {
        if (e->scratch[i] != e->mem.bytes[i]) {
            *first_diff = i;
            return false;
        }
    }
    return true;
}

/* Did the walk read an entry from the ROM window? (PAE PDPTEs are latched.) */
static bool read_rom(const struct env *e, const struct sdm_result *m)
{
    if (!e->has_rom || m->outcome == SDM_GP) {
        return false;
    }
    for (unsigned l = m->top_level; l >= m->last_level && l >= 1; l--) {
        if (e->cpu.mode == SDM_MODE_PAE && l == 3) {
            continue;
        }
        if (m->entry_gpa[l] >= ROM_BASE && m->entry_gpa[l] < ROM_BASE + ROM_SIZE) {
            return true;
        }
    }
    return false;
}

enum {
    SKIP_ENTRY_VALUES = 1 << 0, /* walk.entry[] is ambiguous for an entry used twice */
    SKIP_AD_FLAG = 1 << 1,      /* checked separately (test_ad_flag_recursive) */
};

/*
 * Walk @p va with libpgm flags @p flags, and the model with the same access;
 * compare everything except what @p opts skips.
 */
static void check_walk_at(struct env *e, uint64_t va, uint32_t flags, unsigned opts,
                          struct pgm_walk *w_out, struct sdm_result *m_out, int line)
{
    struct sdm_access acc;
    acc.kind = (flags & PGM_ACCESS_WRITE) ? SDM_WRITE
               : (flags & PGM_ACCESS_FETCH) ? SDM_FETCH
                                            : SDM_READ;
    acc.priv = (flags & PGM_ACCESS_USER)       ? SDM_PRIV_USER
               : (flags & PGM_ACCESS_IMPLICIT) ? SDM_PRIV_IMPLICIT
                                               : SDM_PRIV_SUPERVISOR;
    acc.ac = (flags & PGM_ACCESS_AC) != 0;

    uint8_t *before = malloc(IMAGE_SIZE);
    assert_non_null(before);
    memcpy(before, e->mem.bytes, IMAGE_SIZE);

    struct sdm_result m;
    sdm_translate(&e->mem, &e->cpu, va, &acc, &m);
    if (flags & PGM_ACCESS_NO_AD) {
        /* A query: nothing written, entries reported as read. */
        memcpy(e->mem.bytes, before, IMAGE_SIZE);
        for (unsigned l = m.top_level; m.outcome != SDM_GP && l >= 1 && l >= m.last_level; l--) {
            if (e->cpu.mode != SDM_MODE_PAE || l != 3) {
                m.entry[l] = sdm_mem_read(&e->mem, m.entry_gpa[l], e->esize);
            }
        }
    }
    bool model_wrote = memcmp(before, e->mem.bytes, IMAGE_SIZE) != 0;
    assert_int_equal(model_wrote, m.ad_written && !(flags & PGM_ACCESS_NO_AD));
    free(before);

    struct pgm_walk w;
    memset(&w, 0xa5, sizeof(w));
    int rc = pgm_walk(e->vcpu, va, flags, &w);

    char why[160] = "";
    uint64_t diff = 0;
    if (rc != 0) {
        snprintf(why, sizeof(why), "pgm_walk returned %d", rc);
    } else if ((int)w.status != (int)m.outcome) {
        snprintf(why, sizeof(why), "status");
    } else if (m.outcome == SDM_PF && w.error_code != m.error_code) {
        snprintf(why, sizeof(why), "error code %#x, expected %#x", w.error_code, m.error_code);
    } else if (m.outcome != SDM_GP && w.last_level != m.last_level) {
        snprintf(why, sizeof(why), "last level %u, expected %u", w.last_level, m.last_level);
    } else if (m.outcome != SDM_GP && w.top_level != m.top_level) {
        snprintf(why, sizeof(why), "top level %u, expected %u", w.top_level, m.top_level);
    } else if (m.outcome == SDM_OK &&
               (w.gpa != m.gpa || w.page_shift != m.page_shift || w.rights != m.rights ||
                w.pkey != m.pkey || w.global != m.global || w.pat_index != m.pat_index)) {
        snprintf(why, sizeof(why), "translation fields");
    } else if (!(opts & SKIP_AD_FLAG) &&
               ((w.flags & PGM_WALK_F_AD_WRITTEN) != 0) != model_wrote) {
        snprintf(why, sizeof(why), "PGM_WALK_F_AD_WRITTEN is %d, expected %d",
                 (w.flags & PGM_WALK_F_AD_WRITTEN) != 0, model_wrote);
    } else if (m.outcome != SDM_GP &&
               ((w.flags & PGM_WALK_F_NONRAM_TABLE) != 0) != m.outside_ram) {
        snprintf(why, sizeof(why), "PGM_WALK_F_NONRAM_TABLE is %d, expected %d",
                 (w.flags & PGM_WALK_F_NONRAM_TABLE) != 0, m.outside_ram);
    } else if (m.outcome != SDM_GP &&
               ((w.flags & PGM_WALK_F_ROM_TABLE) != 0) != read_rom(e, &m)) {
        snprintf(why, sizeof(why), "PGM_WALK_F_ROM_TABLE is %d, expected %d",
                 (w.flags & PGM_WALK_F_ROM_TABLE) != 0, read_rom(e, &m));
    } else if (!images_equal(e, &diff)) {
        snprintf(why, sizeof(why), "memory differs at %#" PRIx64 " (entry %#" PRIx64
                                   " / model %#" PRIx64 ")",
                 diff, lib_get(e, diff & ~7ull), sdm_mem_read(&e->mem, diff & ~7ull, 8));
    } else if (m.outcome != SDM_GP) {
        for (unsigned l = m.top_level; l >= m.last_level && l >= 1; l--) {
            if (w.entry_gpa[l] != m.entry_gpa[l]) {
                snprintf(why, sizeof(why), "entry_gpa[%u] %#" PRIx64 ", expected %#" PRIx64, l,
                         w.entry_gpa[l], m.entry_gpa[l]);
                break;
            }
            if (!(opts & SKIP_ENTRY_VALUES) && w.entry[l] != m.entry[l]) {
                snprintf(why, sizeof(why), "entry[%u] %#" PRIx64 ", expected %#" PRIx64, l,
                         w.entry[l], m.entry[l]);
                break;
            }
        }
    }

    if (why[0]) {
        char cpu_s[512], acc_s[64], res_s[512];
        fprintf(stderr,
                "\nMISMATCH (line %d): %s\n  cpu: %s\n  access: %s flags=%#x va=%#" PRIx64
                "\n  model : %s\n  libpgm: status=%s ec=%#x gpa=%#" PRIx64
                " shift=%u level=%u..%u rights=%#x pkey=%u global=%d pat=%u flags=%#x\n",
                line, why, sdm_cpu_format(&e->cpu, cpu_s, sizeof(cpu_s)),
                sdm_access_format(&acc, acc_s, sizeof(acc_s)), flags, va,
                sdm_result_format(&m, res_s, sizeof(res_s)), status_name(w.status),
                w.error_code, w.gpa, w.page_shift, w.top_level, w.last_level, w.rights, w.pkey,
                w.global, w.pat_index, w.flags);
        fprintf(stderr, "  libpgm entries:");
        for (unsigned l = PGM_MAX_LEVELS; l >= 1; l--) {
            if (l <= w.top_level && l >= w.last_level) {
                fprintf(stderr, " L%u[%#" PRIx64 "]=%#" PRIx64, l, w.entry_gpa[l], w.entry[l]);
            }
        }
        fprintf(stderr, "\n");
        fail_msg("walk mismatch at line %d: %s", line, why);
    }
    if (w_out) {
        *w_out = w;
    }
    if (m_out) {
        *m_out = m;
    }
}

#define check_walk(e, va, flags) check_walk_at((e), (va), (flags), 0, NULL, NULL, __LINE__)
#define check_walk_r(e, va, flags, w, m) check_walk_at((e), (va), (flags), 0, (w), (m), __LINE__)

#define R  PGM_ACCESS_READ
#define W  PGM_ACCESS_WRITE
#define X  PGM_ACCESS_FETCH
#define U  PGM_ACCESS_USER
#define IM PGM_ACCESS_IMPLICIT
#define AC PGM_ACCESS_AC

/* ---- Layouts (same as tests/unit/test_sdm_model.c) ------------------------ */

/* 4-level: la = PML4 1, PDPT 2, PD 3, PT 4, offset 0x567. */
#define LA4 0x8080604567ull
static void build4(struct env *e, uint64_t pml4e, uint64_t pdpte, uint64_t pde, uint64_t pte)
{
    put(e, 0x1008, pml4e);
    put(e, 0x2010, pdpte);
    put(e, 0x3018, pde);
    put(e, 0x4020, pte);
}

/* 32-bit: la = PD 3, PT 5, offset 0xabc; PDE at 0x100c, PTE at 0x2014. */
#define LA32 0x00c05abcull

/* PAE: CR3 0x1020; la = PDPT 2, PD 3, PT 5; PDPTE at 0x1030, PDE 0x3018,
 * PTE 0x4028. */
#define LAPAE 0x80605abcull

static struct env *env4(void)
{
    struct env_opts o = {.mode = SDM_MODE_4LEVEL};
    return env_new(&o);
}

/* ---- A/D exactness -------------------------------------------------------- */

static void test_ad_sequence_4level(void **state)
{
    (void)state;
    struct env *e = env4();
    build4(e, 0x2007, 0x3007, 0x4007, 0x5007);
    env_load(e);
    struct pgm_walk w;

    /* First read: A at all four levels, flag set; second: nothing to do. */
    check_walk_r(e, LA4, R, &w, NULL);
    assert_true(w.flags & PGM_WALK_F_AD_WRITTEN);
    assert_int_equal(lib_get(e, 0x1008), 0x2027);
    assert_int_equal(lib_get(e, 0x4020), 0x5027);
    check_walk_r(e, LA4, R | U, &w, NULL);
    assert_false(w.flags & PGM_WALK_F_AD_WRITTEN);
    /* Fetch: like a read. */
    check_walk(e, LA4, X | U);
    /* Write: D only in the leaf. */
    check_walk_r(e, LA4, W, &w, NULL);
    assert_true(w.flags & PGM_WALK_F_AD_WRITTEN);
    assert_int_equal(lib_get(e, 0x3018), 0x4027);
    assert_int_equal(lib_get(e, 0x4020), 0x5067);
    check_walk_r(e, LA4, W | U, &w, NULL);
    assert_false(w.flags & PGM_WALK_F_AD_WRITTEN);

    /* A set only in some levels: only the missing ones are added. */
    build4(e, 0x2027, 0x3007, 0x4027, 0x5047); /* leaf has D but no A */
    check_walk(e, LA4, R);
    assert_int_equal(lib_get(e, 0x4020), 0x5067);

    /* D already set in a non-leaf PDE is left alone; never added there. */
    build4(e, 0x2007, 0x3047, 0x4007, 0x5007);
    check_walk(e, LA4, W);
    assert_int_equal(lib_get(e, 0x2010), 0x3067);
    assert_int_equal(lib_get(e, 0x3018), 0x4027);
    env_free(e);
}

static void test_ad_no_write_on_fault(void **state)
{
    (void)state;
    struct env *e = env4();
    env_load(e);
    struct pgm_walk w;
    static const struct {
        uint64_t pml4e, pdpte, pde, pte;
        uint32_t flags;
    } cases[] = {
        {0x2007, 0x3007, 0x4007, 0x5006, R},          /* leaf not present */
        {0x2007, 0x3007, 0x4006, 0x5007, W | U},      /* PDE not present */
        {0x2007, 0x3007, 0x4007, 0x5005, W | U},      /* read-only leaf */
        {0x2007, 0x3003, 0x4007, 0x5007, R | U},      /* supervisor PDPTE */
        {0x2007, 0x3007, 0x4007, 0x5007 | XD, X},     /* XD leaf */
        {0x2007, 0x3007, 0x4007 | PS | 0x2000, 0, R}, /* reserved bit 13 in a 2M PDE */
        {0x2007 | PS, 0x3007, 0x4007, 0x5007, R},     /* PS in a PML4E */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        build4(e, cases[i].pml4e, cases[i].pdpte, cases[i].pde, cases[i].pte);
        check_walk_r(e, LA4, cases[i].flags, &w, NULL);
        assert_int_equal(w.status, PGM_WALK_PAGE_FAULT);
        assert_false(w.flags & PGM_WALK_F_AD_WRITTEN);
        assert_int_equal(lib_get(e, 0x1008), cases[i].pml4e); /* upper A not set either */
    }
    env_free(e);
}

static void test_ad_no_ad_flag(void **state)
{
    (void)state;
    struct env *e = env4();
    build4(e, 0x2007, 0x3007, 0x4007, 0x5007);
    env_load(e);
    struct pgm_walk w;
    check_walk_r(e, LA4, W | U | PGM_ACCESS_NO_AD, &w, NULL);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_int_equal(w.gpa, 0x5567);
    assert_false(w.flags & PGM_WALK_F_AD_WRITTEN);
    assert_int_equal(lib_get(e, 0x4020), 0x5007);
    env_free(e);
}

static void test_ad_large_pages(void **state)
{
    (void)state;
    struct env *e = env4();
    env_load(e);
    /* 2 MiB leaf: A|D in the PDE, A above. */
    build4(e, 0x2007, 0x3007, 0x200087, 0);
    check_walk(e, LA4, W | U);
    assert_int_equal(lib_get(e, 0x3018), 0x2000e7);
    /* 1 GiB leaf. */
    build4(e, 0x2007, 0x40000087, 0, 0);
    check_walk(e, LA4, W);
    assert_int_equal(lib_get(e, 0x2010), 0x400000e7);
    env_free(e);

    /* 4 MiB leaf in 32-bit paging (4-byte entries: neighbours untouched, the
     * full image compare checks it). */
    struct env_opts o = {.mode = SDM_MODE_32BIT};
    e = env_new(&o);
    e->cpu.cr4_pse = true;
    put(e, 0x100c, 0x00400087);
    put(e, 0x1010, 0xffffff00);
    env_load(e);
    check_walk(e, LA32, W | U);
    assert_int_equal(lib_get(e, 0x100c) & 0xffffffffu, 0x004000e7);
    env_free(e);
}

static void test_ad_pae(void **state)
{
    (void)state;
    struct env_opts o = {.mode = SDM_MODE_PAE};
    struct env *e = env_new(&o);
    e->cpu.cr3 = 0x1020;
    put(e, 0x1030, 0x3001);
    put(e, 0x3018, 0x4007);
    put(e, 0x4028, 0x5007);
    env_load(e);
    struct pgm_walk w;
    check_walk_r(e, LAPAE, W | U, &w, NULL);
    assert_int_equal(w.entry_gpa[3], 0x1030);
    assert_int_equal(lib_get(e, 0x1030), 0x3001); /* PDPTE: no A bit */
    assert_int_equal(lib_get(e, 0x3018), 0x4027);
    assert_int_equal(lib_get(e, 0x4028), 0x5067);
    env_free(e);
}

/* ---- Error-code exactness (literal values from SDM 4.7) ------------------ */

static void test_error_codes(void **state)
{
    (void)state;
    struct pgm_walk w;
    struct env *e = env4();
    env_load(e);

    static const struct {
        uint64_t pte;
        bool wp, nxe, smep, smap, pke;
        uint32_t pkru;
        uint32_t flags;
        uint32_t ec;
    } cases[] = {
        /* not present: P=0; W/U/I-D from the access */
        {0x5006, 1, 1, 0, 0, 0, 0, R, 0x00},
        {0x5006, 1, 1, 0, 0, 0, 0, W | U, 0x06},
        {0x5006, 1, 1, 0, 0, 0, 0, X | U, 0x14},
        {0x5006, 1, 0, 0, 0, 0, 0, X | U, 0x04},       /* no I/D without NXE/SMEP */
        {0x5006, 1, 0, 1, 0, 0, 0, X, 0x10},           /* ... but with SMEP */
        {0x5006, 1, 1, 0, 0, 0, 0, W | IM, 0x02},      /* implicit: U=0 */
        /* reserved: P|RSVD */
        {0x5007 | XD, 1, 0, 0, 0, 0, 0, X | U, 0x0d},
        /* protection */
        {0x5005, 1, 1, 0, 0, 0, 0, W | U, 0x07},
        {0x5005, 1, 1, 0, 0, 0, 0, W, 0x03},
        {0x5003, 1, 1, 0, 0, 0, 0, R | U, 0x05},
        {0x5007 | XD, 1, 1, 0, 0, 0, 0, X, 0x11},
        {0x5007, 1, 0, 1, 0, 0, 0, X, 0x11},           /* SMEP */
        {0x5007, 1, 1, 0, 1, 0, 0, R, 0x01},           /* SMAP */
        {0x5007, 1, 1, 0, 1, 0, 0, R | AC, 0x00},      /* SMAP, AC=1: no fault (ec unused) */
        {0x5007, 1, 1, 0, 1, 0, 0, R | IM | AC, 0x01}, /* SMAP, implicit ignores AC */
        {0x5007 | (1ull << 59), 1, 1, 0, 0, 1, 0x4, R | U, 0x25},  /* PK AD */
        {0x5005 | (1ull << 59), 1, 1, 0, 0, 1, 0x8, W | U, 0x27},  /* PK WD + RO */
        {0x5007 | (1ull << 59), 0, 1, 0, 0, 1, 0x8, W, 0x00},      /* WD, WP=0: ok */
        {0x5007 | (1ull << 59), 1, 1, 0, 0, 1, 0x8, W, 0x23},      /* WD, WP=1 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        build4(e, 0x2007, 0x3007, 0x4007, cases[i].pte);
        e->cpu.cr0_wp = cases[i].wp;
        e->cpu.efer_nxe = cases[i].nxe;
        e->cpu.cr4_smep = cases[i].smep;
        e->cpu.cr4_smap = cases[i].smap;
        e->cpu.cr4_pke = cases[i].pke;
        e->cpu.pkru = cases[i].pkru;
        env_load(e);
        check_walk_r(e, LA4, cases[i].flags, &w, NULL);
        if (w.status == PGM_WALK_PAGE_FAULT) {
            assert_int_equal(w.error_code, cases[i].ec);
        } else {
            assert_int_equal(cases[i].ec, 0);
        }
    }
    env_free(e);

    /* Bit 51 is reserved with MAXPHYADDR 46 (P|RSVD); 32-bit and PAE I/D. */
    struct env_opts o46 = {.mode = SDM_MODE_4LEVEL, .maxphyaddr = 46};
    e = env_new(&o46);
    build4(e, 0x2007, 0x3007, 0x4007, 0x5007 | (1ull << 51));
    env_load(e);
    check_walk_r(e, LA4, W | U, &w, NULL);
    assert_int_equal(w.error_code, 0x0f);
    env_free(e);

    struct env_opts o32 = {.mode = SDM_MODE_32BIT};
    e = env_new(&o32);
    put(e, 0x100c, 0x2007);
    put(e, 0x2014, 0x7006);
    env_load(e); /* NXE=1, SMEP=0, CR4.PAE=0: no I/D */
    check_walk_r(e, LA32, X | U, &w, NULL);
    assert_int_equal(w.error_code, 0x04);
    env_free(e);

    struct env_opts opae = {.mode = SDM_MODE_PAE};
    e = env_new(&opae);
    e->cpu.cr3 = 0x1020;
    put(e, 0x1030, 0x3001);
    put(e, 0x3018, 0x4007);
    put(e, 0x4028, 0x5006);
    env_load(e); /* NXE=1, CR4.PAE=1: I/D */
    check_walk_r(e, LAPAE, X | U, &w, NULL);
    assert_int_equal(w.error_code, 0x14);
    env_free(e);
}

/* ---- Recursive and looping tables ---------------------------------------- */

static void test_recursive_4level(void **state)
{
    (void)state;
    struct env *e = env4();
    /* PML4E[511] points at the PML4 itself (the classic self-map). */
    put(e, 0x1000 + 8 * 511, 0x1007);
    build4(e, 0x2007, 0x3007, 0x4007, 0x5007);
    env_load(e);
    /* Four recursions: the page is the PML4 itself. */
    uint64_t self4 = 0xfffffffffffff000ull | 0x8;
    /* Three: the PML4 used as PDPT, PD, PT ... page = PDPT of slot 1. */
    uint64_t self3 = 0xffffffffffe01000ull | 0x10;
    /* Two: ... page = PD. One: page = PT. */
    uint64_t self2 = 0xffffffffc0202000ull | 0x18;
    uint64_t self1 = 0xffffff8040403000ull | 0x20;
    const uint64_t vas[] = {self4, self3, self2, self1};
    for (size_t i = 0; i < 4; i++) {
        check_walk_at(e, vas[i], R | U, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);
        check_walk_at(e, vas[i], W | U, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);
    }
    struct pgm_walk w;
    check_walk_at(e, self4, R, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, &w, NULL, __LINE__);
    assert_int_equal(w.gpa, 0x1008);
    check_walk_at(e, self1, R, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, &w, NULL, __LINE__);
    assert_int_equal(w.gpa, 0x4020);
    /* The self-map entry collected A (all levels) and D (leaf). */
    assert_int_equal(lib_get(e, 0x1000 + 8 * 511), 0x1067);

    /* Read-only self-map: writes through it fault, nothing written. */
    put(e, 0x1000 + 8 * 511, 0x1005);
    check_walk_at(e, self2, W | U, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);
    /* PS in the self-map entry: reserved at PML4 level, before anything else. */
    put(e, 0x1000 + 8 * 511, 0x1087);
    check_walk_at(e, self1, R, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);
    env_free(e);
}

static void test_looping_tables(void **state)
{
    (void)state;
    /* Two tables pointing at each other: PML4 (0x1000) -> 0x2000 -> back to
     * 0x1000 -> 0x2000; all index 0 with la 0. Also an entry pointing at
     * its own table from a lower level (PTE maps the PT). */
    struct env *e = env4();
    put(e, 0x1000, 0x2007);
    put(e, 0x2000, 0x1007);
    env_load(e);
    check_walk_at(e, 0x123, W | U, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);
    check_walk_at(e, 0x123, X, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);

    /* 5-level: one entry used at all five levels, then as the page. */
    env_free(e);
    struct env_opts o = {.mode = SDM_MODE_5LEVEL};
    e = env_new(&o);
    put(e, 0x1000, 0x1003);
    env_load(e);
    check_walk_at(e, 0x456, W, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);
    assert_int_equal(lib_get(e, 0x1000), 0x1063);
    env_free(e);

    /* 32-bit: PDE 0 -> the PD itself as PT; PAE: PDE -> PD. */
    struct env_opts o32 = {.mode = SDM_MODE_32BIT};
    e = env_new(&o32);
    put(e, 0x1000, 0x1007);
    env_load(e);
    check_walk_at(e, 0x00000abc, W | U, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);
    check_walk_at(e, 0x003ffabc, R, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__); /* PTE 0x3ff: 0 */
    env_free(e);

    struct env_opts opae = {.mode = SDM_MODE_PAE};
    e = env_new(&opae);
    e->cpu.cr3 = 0x1000;
    put(e, 0x1000, 0x3001);
    put(e, 0x3000, 0x3007);
    env_load(e);
    check_walk_at(e, 0x789, W | U, SKIP_ENTRY_VALUES | SKIP_AD_FLAG, NULL, NULL, __LINE__);
    assert_int_equal(lib_get(e, 0x3000), 0x3067);
    env_free(e);
}

/*
 * SDM 4.3 and Table 4-5: with CR4.PSE = 0 the PS bit of a 32-bit PDE is
 * ignored and the PDE references a page table; such a PDE has no reserved
 * bits. So bits 21:13 (reserved only in a 4 MiB PDE) must not fault.
 */
static void test_32bit_ps_ignored_without_pse(void **state)
{
    (void)state;
    /* Without PSE-36 bit 13 is reserved in a 4 MiB PDE; here it is just an
     * address bit of the page table at 0x82000. */
    struct env_opts o = {.mode = SDM_MODE_32BIT, .no_pse36 = true};
    struct env *e = env_new(&o);
    put(e, 0x100c, 0x00082000 | PS | 0x7);
    put(e, 0x82014, 0x7007);
    env_load(e); /* CR4.PSE = 0 */
    struct pgm_walk w;
    check_walk_r(e, LA32, W | U, &w, NULL);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_int_equal(w.gpa, 0x7abc);
    assert_int_equal(w.page_shift, 12);
    env_free(e);
}

/*
 * PGM_WALK_F_AD_WRITTEN must say whether the walk wrote A/D bits, also when
 * one entry serves several levels (libpgm may restart the walk after its own
 * compare-and-swap changed an entry it reads again).
 */
static void test_ad_flag_recursive(void **state)
{
    (void)state;
    struct env *e = env4();
    put(e, 0x1000 + 8 * 511, 0x1007);
    env_load(e);
    struct pgm_walk w;
    check_walk_at(e, 0xfffffffffffff008ull, R | U, SKIP_ENTRY_VALUES, &w, NULL, __LINE__);
    assert_true(w.flags & PGM_WALK_F_AD_WRITTEN);
    check_walk_at(e, 0xfffffffffffff008ull, W | U, SKIP_ENTRY_VALUES, &w, NULL, __LINE__);
    assert_true(w.flags & PGM_WALK_F_AD_WRITTEN);
    env_free(e);

    /* Two tables pointing at each other. */
    e = env4();
    put(e, 0x1000, 0x2007);
    put(e, 0x2000, 0x1007);
    env_load(e);
    check_walk_at(e, 0x123, W | U, SKIP_ENTRY_VALUES, &w, NULL, __LINE__);
    assert_true(w.flags & PGM_WALK_F_AD_WRITTEN);
    env_free(e);
}

/* ---- Tables outside RAM --------------------------------------------------- */

static void test_tables_unassigned(void **state)
{
    (void)state;
    struct pgm_walk w;
    /* MAXPHYADDR 52: a PT in unassigned space reads all-ones: a present,
     * writable, user, XD, global leaf with key 15 at 0xffffffffff000. */
    struct env *e = env4();
    build4(e, 0x2007, 0x3007, 0x40000007, 0);
    env_load(e);
    check_walk_r(e, LA4, W | U, &w, NULL);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_int_equal(w.gpa, 0xffffffffff567ull);
    assert_true(w.flags & PGM_WALK_F_NONRAM_TABLE);
    assert_int_equal(lib_get(e, 0x3018), 0x40000027); /* A in RAM entries only */
    check_walk(e, LA4, X); /* XD */
    e->cpu.efer_nxe = false; /* bit 63 reserved now */
    env_load(e);
    check_walk(e, LA4, R);
    /* A PD there: all-ones PDE = 2 MiB page with bits 20:13 set: reserved. */
    e->cpu.efer_nxe = true;
    env_load(e);
    build4(e, 0x2007, 0x40000007, 0, 0);
    check_walk_r(e, LA4, R, &w, NULL);
    assert_int_equal(w.error_code, PGM_PFEC_P | PGM_PFEC_RSVD);
    assert_int_equal(w.last_level, 2);
    /* CR3 in unassigned space (below MAXPHYADDR: a legal load): the PML4E
     * reads all-ones, PS is reserved there. */
    e->cpu.cr3 = 0x7fff0000000ull;
    env_load(e);
    check_walk(e, LA4, R);
    env_free(e);

    /* MAXPHYADDR 46: an all-ones entry has reserved bits 51:46. */
    struct env_opts o46 = {.mode = SDM_MODE_4LEVEL, .maxphyaddr = 46};
    e = env_new(&o46);
    build4(e, 0x2007, 0x3007, 0x40000007, 0);
    env_load(e);
    check_walk(e, LA4, R);
    env_free(e);
}

static void test_tables_unassigned_32bit(void **state)
{
    (void)state;
    struct env *e;

    /* 32-bit without PSE-36 (M=32): 21:13 reserved in the all-ones 4 MiB PDE. */
    struct env_opts o32n = {.mode = SDM_MODE_32BIT, .no_pse36 = true};
    e = env_new(&o32n);
    e->cpu.cr3 = 0xfff00000;
    e->cpu.cr4_pse = true;
    env_load(e);
    check_walk(e, LA32, R);
    env_free(e);

    /* 32-bit: CR3 in unassigned space. With CR4.PSE and PSE-36 (M=40) bit 21
     * of the all-ones PDE is reserved. Without CR4.PSE: PDE 0xffffffff -> PT
     * 0xfffff000 -> PTE 0xffffffff: page 0xfffff000, all updates dropped. */
    struct env_opts o32 = {.mode = SDM_MODE_32BIT};
    e = env_new(&o32);
    e->cpu.cr3 = 0xfff00000;
    e->cpu.cr4_pse = true;
    env_load(e);
    check_walk(e, LA32, W | U);
    e->cpu.cr4_pse = false;
    env_load(e);
    check_walk(e, LA32, W | U);
    env_free(e);
}

static void test_tables_mmio(void **state)
{
    (void)state;
    /* A page table in MMIO (no handler): reads all-ones, like unassigned. */
    struct env_opts o = {.mode = SDM_MODE_4LEVEL, .mmio = true};
    struct env *e = env_new(&o);
    build4(e, 0x2007, 0x3007, MMIO_BASE | 0x7, 0);
    env_load(e);
    struct pgm_walk w;
    check_walk_r(e, LA4, R | U, &w, NULL);
    assert_true(w.flags & PGM_WALK_F_NONRAM_TABLE);
    /* The PML4 itself in MMIO. */
    e->cpu.cr3 = MMIO_BASE;
    env_load(e);
    check_walk(e, LA4, R);
    env_free(e);
}

static void test_tables_rom(void **state)
{
    (void)state;
    /* PD and PT in ROM: the walk reads them, A/D there are dropped, the RAM
     * entries above get their A bits. */
    struct env_opts o = {.mode = SDM_MODE_4LEVEL, .rom = true};
    struct env *e = env_new(&o);
    put(e, 0x1008, 0x2007);
    put(e, 0x2010, ROM_BASE | 0x7);            /* PD at ROM_BASE */
    put(e, ROM_BASE + 0x18, (ROM_BASE + 0x1000) | 0x7); /* PT at ROM_BASE+0x1000 */
    put(e, ROM_BASE + 0x1000 + 0x20, 0x5007);
    env_add_rom(e);
    env_load(e);
    struct pgm_walk w;
    check_walk_r(e, LA4, W | U, &w, NULL);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_int_equal(w.gpa, 0x5567);
    assert_true(w.flags & PGM_WALK_F_ROM_TABLE);
    assert_int_equal(lib_get(e, 0x2010), ROM_BASE | 0x27);
    assert_int_equal(lib_get(e, ROM_BASE + 0x1020), 0x5007);
    env_free(e);
}

/* ---- CR3 and PDPTE loads ---------------------------------------------------- */

static void test_cr3_long_range(void **state)
{
    (void)state;
    struct env_opts o = {.mode = SDM_MODE_4LEVEL, .maxphyaddr = 46};
    struct env *e = env_new(&o);
    build4(e, 0x2007, 0x3007, 0x4007, 0x5007);
    env_load(e);
    struct pgm_cpu_state st;

    static const uint64_t bad[] = {1ull << 46, 1ull << 51, (1ull << 63) | 0x1000,
                                   0xfff0000000001000ull};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(sdm_cr3_valid_long(bad[i], 46));
        assert_int_equal(pgm_sync_cr3(e->vcpu, bad[i]), PGM_RC_INJECT_GP);
        pgm_get_cpu_state(e->vcpu, &st);
        assert_int_equal(st.cr3, 0x1000);
        check_walk(e, LA4, R); /* still the old tables */
        /* The same CR3 in a whole-state load. */
        struct pgm_cpu_state s2 = state_of(&e->cpu);
        s2.cr3 = bad[i];
        assert_int_equal(pgm_set_cpu_state(e->vcpu, &s2, 0), PGM_RC_INJECT_GP);
        pgm_get_cpu_state(e->vcpu, &st);
        assert_int_equal(st.cr3, 0x1000);
    }
    /* The highest legal CR3 (unassigned space) loads. */
    uint64_t top = (1ull << 46) - 0x1000;
    assert_true(sdm_cr3_valid_long(top, 46));
    assert_int_equal(pgm_sync_cr3(e->vcpu, top), 0);
    e->cpu.cr3 = top;
    check_walk(e, LA4, R);
    env_free(e);
}

static void test_pae_pdpte_load(void **state)
{
    (void)state;
    struct env_opts o = {.mode = SDM_MODE_PAE, .maxphyaddr = 40};
    struct env *e = env_new(&o);
    e->cpu.cr3 = 0x1020;
    put(e, 0x1030, 0x3001);
    put(e, 0x3018, 0x4007);
    put(e, 0x4028, 0x5007);
    env_load(e);
    check_walk(e, LAPAE, R);

    /* Each reserved bit of a present PDPTE, in each of the four slots. */
    static const uint64_t bad[] = {XD,        1ull << 62, 1ull << 52, 1ull << 40, 1ull << 8,
                                   1ull << 7, 1ull << 6,  1ull << 5,  RW,         US};
    struct pgm_cpu_state st;
    for (unsigned slot = 0; slot < 4; slot++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            uint64_t gpa = 0x1020 + 8 * slot;
            uint64_t good = slot == 2 ? 0x3001 : 0;
            uint64_t mem[4];
            put(e, gpa, 0x6001 | bad[i]);
            assert_false(sdm_pae_load_pdptes(&e->mem, 0x1020, 40, mem));
            assert_int_equal(pgm_sync_cr3(e->vcpu, 0x1020), PGM_RC_INJECT_GP);
            pgm_get_cpu_state(e->vcpu, &st);
            assert_int_equal(st.cr3, 0x1020);
            check_walk(e, LAPAE, R); /* the old latched PDPTEs still apply */
            /* Not present: the same bits are fine. */
            put(e, gpa, 0x6000 | bad[i]);
            assert_true(sdm_pae_load_pdptes(&e->mem, 0x1020, 40, mem));
            assert_int_equal(pgm_sync_cr3(e->vcpu, 0x1020), 0);
            assert_true(sdm_pae_load_pdptes(&e->mem, 0x1020, 40, e->cpu.pdpte));
            check_walk(e, LAPAE, R);
            put(e, gpa, good);
            assert_int_equal(pgm_sync_cr3(e->vcpu, 0x1020), 0);
            assert_true(sdm_pae_load_pdptes(&e->mem, 0x1020, 40, e->cpu.pdpte));
        }
    }
    /* Legal PDPTE bits: PWT, PCD, AVL, address below MAXPHYADDR. */
    put(e, 0x1030, 0x3001 | 0x18 | 0xe00);
    assert_int_equal(pgm_sync_cr3(e->vcpu, 0x1020), 0);
    assert_true(sdm_pae_load_pdptes(&e->mem, 0x1020, 40, e->cpu.pdpte));
    check_walk(e, LAPAE, W);

    /* Latching: clearing the PDPTE in memory changes nothing until the next
     * CR3 load; then the walk faults not-present at level 3. */
    put(e, 0x1030, 0);
    check_walk(e, LAPAE, R | U);
    assert_int_equal(pgm_sync_cr3(e->vcpu, 0x1020), 0);
    assert_true(sdm_pae_load_pdptes(&e->mem, 0x1020, 40, e->cpu.pdpte));
    struct pgm_walk w;
    check_walk_r(e, LAPAE, W | U, &w, NULL);
    assert_int_equal(w.error_code, PGM_PFEC_W | PGM_PFEC_U);
    assert_int_equal(w.last_level, 3);

    /* A PDPT in unassigned space: the PDPTEs read all-ones -> #GP. */
    assert_int_equal(pgm_sync_cr3(e->vcpu, 0xffffffe0), PGM_RC_INJECT_GP);
    env_free(e);
}

/* ---- Canonical addresses and arguments ------------------------------------ */

static void test_canonical(void **state)
{
    (void)state;
    struct env *e = env4();
    build4(e, 0x2007, 0x3007, 0x4007, 0x5007);
    env_load(e);
    static const uint64_t vas4[] = {0x00007fffffffffffull, 0x0000800000000000ull,
                                    0xffff800000000000ull, 0xffff7fffffffffffull,
                                    0x8000000000000000ull, 0x0001000000000000ull};
    struct pgm_walk w;
    for (size_t i = 0; i < sizeof(vas4) / sizeof(vas4[0]); i++) {
        check_walk_r(e, vas4[i], R, &w, NULL);
        bool canon = sdm_canonical(SDM_MODE_4LEVEL, vas4[i]);
        assert_int_equal(w.status == PGM_WALK_GP, !canon);
        check_walk(e, vas4[i], W | U);
        check_walk(e, vas4[i], X);
    }
    env_free(e);

    struct env_opts o = {.mode = SDM_MODE_5LEVEL};
    e = env_new(&o);
    put(e, 0x1000, 0x6007);
    put(e, 0x6008, 0x2007);
    put(e, 0x2010, 0x3007);
    put(e, 0x3018, 0x4007);
    put(e, 0x4020, 0x5007);
    env_load(e);
    static const uint64_t vas5[] = {0x0000800000000000ull, 0x00ffffffffffffffull,
                                    0x0100000000000000ull, 0xff00000000000000ull,
                                    0xfeffffffffffffffull, LA4};
    for (size_t i = 0; i < sizeof(vas5) / sizeof(vas5[0]); i++) {
        check_walk_r(e, vas5[i], R, &w, NULL);
        bool canon = sdm_canonical(SDM_MODE_5LEVEL, vas5[i]);
        assert_int_equal(w.status == PGM_WALK_GP, !canon);
    }
    env_free(e);

    /* Outside IA-32e the address is truncated to 32 bits, never #GP. */
    struct env_opts o32 = {.mode = SDM_MODE_32BIT};
    e = env_new(&o32);
    put(e, 0x100c, 0x2007);
    put(e, 0x2014, 0x7007);
    env_load(e);
    check_walk_r(e, 0x8000000000000000ull | LA32, R, &w, NULL);
    assert_int_equal(w.status, PGM_WALK_OK);
    assert_int_equal(w.gpa, 0x7abc);
    env_free(e);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct env *e = env4();
    env_load(e);
    struct pgm_walk w;
    assert_int_equal(pgm_walk(NULL, LA4, R, &w), -EINVAL);
    assert_int_equal(pgm_walk(e->vcpu, LA4, R, NULL), -EINVAL);
    assert_int_equal(pgm_walk(e->vcpu, LA4, 1u << 31, &w), -EINVAL);
    assert_int_equal(pgm_walk(e->vcpu, LA4, 1u << 0, &w), -EINVAL); /* P is not an access flag */
    assert_int_equal(pgm_sync_cr3(NULL, 0x1000), -EINVAL);
    assert_int_equal(pgm_set_cpu_state(e->vcpu, NULL, 0), -EINVAL);
    env_free(e);
}

static int free_live(void **state)
{
    (void)state;
    for (unsigned i = 0; i < MAX_LIVE; i++) {
        if (live[i]) {
            env_free(live[i]);
        }
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ad_sequence_4level, free_live),
        cmocka_unit_test_teardown(test_ad_no_write_on_fault, free_live),
        cmocka_unit_test_teardown(test_ad_no_ad_flag, free_live),
        cmocka_unit_test_teardown(test_ad_large_pages, free_live),
        cmocka_unit_test_teardown(test_ad_pae, free_live),
        cmocka_unit_test_teardown(test_error_codes, free_live),
        cmocka_unit_test_teardown(test_recursive_4level, free_live),
        cmocka_unit_test_teardown(test_looping_tables, free_live),
        cmocka_unit_test_teardown(test_ad_flag_recursive, free_live),
        cmocka_unit_test_teardown(test_32bit_ps_ignored_without_pse, free_live),
        cmocka_unit_test_teardown(test_tables_unassigned, free_live),
        cmocka_unit_test_teardown(test_tables_unassigned_32bit, free_live),
        cmocka_unit_test_teardown(test_tables_mmio, free_live),
        cmocka_unit_test_teardown(test_tables_rom, free_live),
        cmocka_unit_test_teardown(test_cr3_long_range, free_live),
        cmocka_unit_test_teardown(test_pae_pdpte_load, free_live),
        cmocka_unit_test_teardown(test_canonical, free_live),
        cmocka_unit_test_teardown(test_bad_arguments, free_live),
    };
    return cmocka_run_group_tests_name("walk_ad", tests, NULL, NULL);
}
