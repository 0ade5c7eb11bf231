/* SPDX-License-Identifier: MIT */
/*
 * gen_cases: seeded random `pgm walk` cases (case.h line format).
 *
 *   gen_cases --seed N --count K --mode amd64|32|pae|la57 [options]
 *
 * Every case builds a real walk path for its va through every level, with
 * random flags on each entry (P, R/W, U/S, PWT, PCD, A, D, PS/PAT, G, NX,
 * protection key, ignored bits), random CPU state (CPL, access, WP, SMEP,
 * SMAP, AC, NXE, PKE, PKRU, PGE, PSE, MAXPHYADDR), tables at random
 * page-aligned GPAs below 64 MiB, and occasionally a reserved bit, a shared
 * table, a self-referencing entry, a leaf outside RAM, a non-canonical va or
 * an illegal CR3. Options restrict the features to what an MMU models.
 */
#include "case.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opts {
    uint64_t seed;
    unsigned long count;
    enum wcase_mode mode;
    bool pku, gbpages, smep, smap, nx, rsvd, noncanon, outside_ram, selfref;
    int maxphyaddr; /* -1: random */
    int cpl;        /* -1: random */
};

/* ---- random numbers (splitmix64) ------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

/* true with probability pct percent */
static bool chance(unsigned pct)
{
    return below(100) < pct;
}

/* ---- case construction ---------------------------------------------------- */

#define PAGE_COUNT (WCASE_RAM_SIZE >> 12)

struct gen {
    const struct opts *o;
    struct wcase c;
    unsigned ntables;
    uint64_t tables[8];
    unsigned esize; /* 4 or 8 */
};

static bool page_used(const struct gen *g, uint64_t page)
{
    for (unsigned i = 0; i < g->ntables; i++)
        if ((g->tables[i] & ~0xfffull) == page)
            return true;
    return false;
}

static uint64_t fresh_page(struct gen *g, uint64_t limit)
{
    for (;;) {
        uint64_t p = below(limit >> 12) << 12;

        if (p != 0 && !page_used(g, p))
            return p;
    }
}

static void add_mem(struct gen *g, uint64_t gpa, uint64_t val)
{
    struct wcase *c = &g->c;

    for (unsigned i = 0; i < c->nmem; i++) {
        if (c->mem[i].gpa == gpa) {
            c->mem[i].val = val;
            return;
        }
    }
    if (c->nmem < WCASE_MAX_MEM) {
        c->mem[c->nmem].gpa = gpa;
        c->mem[c->nmem].val = val;
        c->mem[c->nmem].size = g->esize;
        c->nmem++;
    }
}

static bool mem_has(const struct gen *g, uint64_t gpa)
{
    for (unsigned i = 0; i < g->c.nmem; i++)
        if (g->c.mem[i].gpa == gpa)
            return true;
    return false;
}

static unsigned pick_maxphyaddr(const struct opts *o)
{
    static const unsigned choices[] = {36, 39, 40, 42, 45, 46, 48, 52};

    if (o->maxphyaddr > 0)
        return (unsigned)o->maxphyaddr;
    if (chance(50))
        return 48;
    return choices[below(sizeof(choices) / sizeof(choices[0]))];
}

/* A GPA for a leaf of 2^shift bytes, size aligned. Mostly in RAM, sometimes a
 * table page (self-map) or outside RAM. */
static uint64_t leaf_base(struct gen *g, unsigned shift)
{
    uint64_t lim = g->c.mode == WCASE_32 ? (1ull << 32) : (1ull << g->c.maxphyaddr);
    uint64_t align = 1ull << shift;

    if (g->o->selfref && shift == 12 && g->ntables && chance(6))
        return g->tables[below(g->ntables)] & ~0xfffull;
    if (g->o->outside_ram && chance(4)) {
        uint64_t top = lim > (1ull << 40) ? (1ull << 40) : lim;

        if (top > WCASE_RAM_SIZE)
            return (WCASE_RAM_SIZE + below(top - WCASE_RAM_SIZE)) & ~(align - 1);
    }
    return below(WCASE_RAM_SIZE >> shift) << shift;
}

/* Random ignored/software bits of a 64-bit entry (58:52 only with 4/5-level
 * paging; they are reserved in PAE entries). */
static uint64_t ignored_bits64(bool leaf, bool long_mode)
{
    uint64_t v = 0;

    if (chance(20))
        v |= below(8) << 9;
    if (long_mode && chance(10))
        v |= below(1ull << 7) << 52; /* 58:52 */
    if (!leaf && chance(10))
        v |= 0x40; /* D in a non-leaf entry is ignored */
    return v;
}

/* Flip one reserved bit of an entry at @level (amd64/la57/pae conventions). */
static uint64_t reserved_bit(struct gen *g, int level, bool leaf, unsigned shift)
{
    unsigned m = g->c.maxphyaddr;
    unsigned r = (unsigned)below(4);

    if (r == 0 && m < 52)
        return 1ull << (m + below(52 - m));
    if (r == 1 && leaf && shift > 12)
        return 1ull << (13 + below(shift - 13)); /* large-page alignment bits */
    if (r == 2 && level == 4 && g->c.mode != WCASE_PAE)
        return 0x80; /* PS in a PML4E */
    if (m < 52)
        return 1ull << (m + below(52 - m));
    return 1ull << 63; /* reserved only with NXE=0; otherwise it is XD */
}

static void gen_case(const struct opts *o, struct wcase *out)
{
    struct gen g;
    struct wcase *c = &g.c;
    int levels, top_level;
    uint64_t table, va, lim;
    int rsvd_level = -1;

    memset(&g, 0, sizeof(g));
    g.o = o;
    wcase_init(c);
    c->mode = o->mode;
    g.esize = o->mode == WCASE_32 ? 4 : 8;
    c->cpl = o->cpl >= 0 ? (unsigned)o->cpl : chance(45) ? 3 : chance(90) ? 0 : 1 + (unsigned)below(2);
    c->acc = "rwx"[below(3)];
    c->wp = chance(50);
    c->pse = o->mode == WCASE_32 ? chance(70) : chance(50);
    c->pge = chance(30);
    c->smep = o->smep && chance(35);
    c->smap = o->smap && chance(35);
    c->ac = chance(40);
    c->nxe = o->nx && o->mode != WCASE_32 && chance(70);
    c->pke = o->pku && (o->mode == WCASE_AMD64 || o->mode == WCASE_LA57) && chance(40);
    c->pkru = c->pke || chance(20) ? (uint32_t)rnd() : 0;
    if (c->pke && chance(30))
        c->pkru &= (uint32_t)rnd(); /* more open keys */
    c->gbpages = o->gbpages ? !chance(10) : false;
    c->maxphyaddr = o->mode == WCASE_32 ? 52 : pick_maxphyaddr(o);
    if (o->mode == WCASE_32)
        c->maxphyaddr = o->maxphyaddr > 0 ? (unsigned)o->maxphyaddr : (chance(50) ? 36 : 40);
    if (o->rsvd && chance(18))
        rsvd_level = 1 + (int)below(o->mode == WCASE_LA57 ? 5 : o->mode == WCASE_AMD64 ? 4 : 3);

    switch (o->mode) {
    case WCASE_LA57:
        levels = 5;
        break;
    case WCASE_AMD64:
        levels = 4;
        break;
    case WCASE_PAE:
        levels = 3;
        break;
    default:
        levels = 2;
        break;
    }
    top_level = levels;

    /* va */
    if (o->mode == WCASE_32 || o->mode == WCASE_PAE) {
        va = rnd() & 0xffffffffull;
    } else {
        unsigned bits = o->mode == WCASE_LA57 ? 57 : 48;

        va = rnd();
        va = (uint64_t)((int64_t)(va << (64 - bits)) >> (64 - bits));
        if (o->noncanon && chance(2))
            va ^= 1ull << (bits + below(64 - bits));
    }
    c->va = va;

    /* cr3 */
    lim = WCASE_RAM_SIZE;
    table = fresh_page(&g, lim);
    if (o->mode == WCASE_PAE) {
        table |= below(128) << 5; /* PDPT is 32-byte aligned */
        c->cr3 = table | (chance(20) ? 0x18 : 0);
    } else {
        c->cr3 = table | (chance(20) ? (below(4) << 3) : 0);
        if (o->mode != WCASE_32 && o->rsvd && chance(2) && c->maxphyaddr < 52)
            c->cr3 |= 1ull << (c->maxphyaddr + below(52 - c->maxphyaddr));
    }
    g.tables[g.ntables++] = table;

    for (int level = top_level; level >= 1; level--) {
        unsigned idx, shift_idx;
        uint64_t ea, e = 0;
        bool leaf = false, large_ok;
        unsigned leaf_shift = 12;

        if (o->mode == WCASE_32) {
            shift_idx = level == 2 ? 22 : 12;
            idx = (unsigned)(va >> shift_idx) & 1023;
            ea = (table & ~0xfffull) + idx * 4ull;
        } else if (o->mode == WCASE_PAE && level == 3) {
            idx = (unsigned)(va >> 30) & 3;
            ea = (table & ~0x1full) + idx * 8ull;
        } else {
            shift_idx = 12 + 9 * (unsigned)(level - 1);
            idx = (unsigned)(va >> shift_idx) & 511;
            ea = (table & ~0xfffull) + idx * 8ull;
        }

        /* A shared/self-referencing table may already hold this entry. */
        if (mem_has(&g, ea))
            break;

        if (!chance(level == 1 ? 88 : 93)) {
            /* not present: random other bits */
            e = rnd() & ~1ull;
            if (g.esize == 4)
                e &= 0xffffffffull;
            if (chance(50))
                e = 0;
            add_mem(&g, ea, e);
            break;
        }
        e = 1; /* P */
        if (!(o->mode == WCASE_PAE && level == 3)) {
            if (chance(75))
                e |= 2; /* R/W */
            if (chance(75))
                e |= 4; /* U/S */
            if (chance(50))
                e |= 0x20; /* A */
        }
        if (chance(15))
            e |= 0x8; /* PWT */
        if (chance(15))
            e |= 0x10; /* PCD */

        /* large pages */
        if (o->mode == WCASE_32)
            large_ok = level == 2 && c->pse;
        else if (o->mode == WCASE_PAE)
            large_ok = level == 2;
        else
            large_ok = level == 2 || (level == 3 && (o->gbpages || chance(20)));
        if (level == 1) {
            leaf = true;
        } else if (large_ok && chance(level == 3 ? 20 : 25)) {
            leaf = true;
            leaf_shift = o->mode == WCASE_32 ? 22 : level == 3 ? 30 : 21;
            e |= 0x80;
        } else if (o->mode == WCASE_32 && level == 2 && !c->pse && chance(20)) {
            e |= 0x80; /* ignored without CR4.PSE */
        }

        if (leaf) {
            uint64_t base = leaf_base(&g, leaf_shift);

            if (chance(50))
                e |= 0x40; /* D */
            if (chance(25))
                e |= 0x100; /* G */
            if (leaf_shift == 12 && chance(15))
                e |= 0x80; /* PAT */
            if (leaf_shift > 12 && chance(15))
                e |= 0x1000; /* PAT of a large page */
            if (o->mode == WCASE_32 && leaf_shift == 22) {
                /* PSE-36: bits 39:32 of the address in bits 20:13 */
                if (chance(15))
                    e |= (below(16)) << 13;
                e |= base & 0xffc00000ull;
            } else {
                e |= base;
            }
        } else {
            uint64_t next;

            if (chance(8))
                e |= 0x100; /* bit 8 of a non-leaf entry: ignored (Intel; AMD reserves it in PML4Es) */

            if (o->selfref && chance(5))
                next = g.tables[below(g.ntables)] & ~0xfffull; /* shared / self-ref */
            else
                next = fresh_page(&g, WCASE_RAM_SIZE);
            if (o->outside_ram && chance(1))
                next = WCASE_RAM_SIZE + (below(1ull << 20) << 12);
            e |= next;
            table = next;
            if (g.ntables < 8 && next < WCASE_RAM_SIZE)
                g.tables[g.ntables++] = next;
        }

        if (g.esize == 8) {
            bool nx_allowed = !(o->mode == WCASE_PAE && level == 3);

            e |= ignored_bits64(leaf, o->mode == WCASE_AMD64 || o->mode == WCASE_LA57) &
                 (o->mode == WCASE_PAE && level == 3 ? 0 : ~0ull);
            if (nx_allowed && chance(c->nxe ? 25 : 5))
                e |= 1ull << 63;
            if (leaf && (o->mode == WCASE_AMD64 || o->mode == WCASE_LA57) && chance(50))
                e |= below(16) << 59; /* protection key (ignored without PKE) */
            if (o->mode == WCASE_PAE && level == 3)
                e &= ~0x1e6ull; /* bits 2:1, 8:5 reserved */
        }
        if (level == rsvd_level) {
            if (g.esize == 4) {
                if (leaf && leaf_shift == 22)
                    e |= 1ull << 21; /* reserved with PSE-36 */
            } else if (o->mode == WCASE_PAE && level == 3) {
                e |= chance(50) ? (1ull << (1 + below(2))) : (1ull << (5 + below(4)));
            } else {
                e |= reserved_bit(&g, level, leaf, leaf_shift);
            }
        }
        if (g.esize == 4)
            e &= 0xffffffffull;
        add_mem(&g, ea, e);
        if (leaf || table >= WCASE_RAM_SIZE)
            break; /* a table outside RAM reads all-ones: nothing to list */
    }

    /* decoys: entries next to the path, same tables */
    while (c->nmem < WCASE_MAX_MEM - 2 && chance(25)) {
        uint64_t t = g.tables[below(g.ntables)] & ~0xfffull;
        uint64_t ea = t + below(4096 / g.esize) * g.esize;

        if (!mem_has(&g, ea))
            add_mem(&g, ea, rnd() & (g.esize == 4 ? 0xffffffffull : ~0ull));
    }
    *out = g.c;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: gen_cases --seed N --count K --mode amd64|32|pae|la57 [options]\n"
            "  --no-pku          never set pke=1\n"
            "  --no-gbpages      gbpages=0 in every case (PS in a PDPTE is then reserved)\n"
            "  --no-smep --no-smap --no-nx   never enable that feature\n"
            "  --no-rsvd         no deliberately reserved bits, no illegal CR3\n"
            "  --no-noncanonical never a non-canonical va\n"
            "  --no-outside-ram  no leaf or table outside guest RAM\n"
            "  --no-selfref      no shared tables, self-references or leaves on tables\n"
            "  --maxphyaddr N    fixed MAXPHYADDR (default random, mostly 48)\n"
            "  --cpl N           fixed CPL\n");
}

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;

    errno = 0;
    *v = strtoull(s, &end, 0);
    return errno == 0 && *s && !*end;
}

int main(int argc, char **argv)
{
    struct opts o = {
        .seed = 1, .count = 100, .mode = WCASE_AMD64, .pku = true, .gbpages = true,
        .smep = true, .smap = true, .nx = true, .rsvd = true, .noncanon = true,
        .outside_ram = true, .selfref = true, .maxphyaddr = -1, .cpl = -1,
    };
    char buf[WCASE_LINE_MAX];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        uint64_t v;

        if (!strcmp(a, "--seed") && i + 1 < argc && parse_u64(argv[i + 1], &v)) {
            o.seed = v;
            i++;
        } else if (!strcmp(a, "--count") && i + 1 < argc && parse_u64(argv[i + 1], &v)) {
            o.count = (unsigned long)v;
            i++;
        } else if (!strcmp(a, "--mode") && i + 1 < argc) {
            const char *m = argv[++i];

            if (!strcmp(m, "amd64"))
                o.mode = WCASE_AMD64;
            else if (!strcmp(m, "la57"))
                o.mode = WCASE_LA57;
            else if (!strcmp(m, "pae"))
                o.mode = WCASE_PAE;
            else if (!strcmp(m, "32"))
                o.mode = WCASE_32;
            else {
                usage();
                return 2;
            }
        } else if (!strcmp(a, "--maxphyaddr") && i + 1 < argc && parse_u64(argv[i + 1], &v) &&
                   v >= 32 && v <= 52) {
            o.maxphyaddr = (int)v;
            i++;
        } else if (!strcmp(a, "--cpl") && i + 1 < argc && parse_u64(argv[i + 1], &v) && v <= 3) {
            o.cpl = (int)v;
            i++;
        } else if (!strcmp(a, "--no-pku")) {
            o.pku = false;
        } else if (!strcmp(a, "--no-gbpages")) {
            o.gbpages = false;
        } else if (!strcmp(a, "--no-smep")) {
            o.smep = false;
        } else if (!strcmp(a, "--no-smap")) {
            o.smap = false;
        } else if (!strcmp(a, "--no-nx")) {
            o.nx = false;
        } else if (!strcmp(a, "--no-rsvd")) {
            o.rsvd = false;
        } else if (!strcmp(a, "--no-noncanonical")) {
            o.noncanon = false;
        } else if (!strcmp(a, "--no-outside-ram")) {
            o.outside_ram = false;
        } else if (!strcmp(a, "--no-selfref")) {
            o.selfref = false;
        } else {
            usage();
            return 2;
        }
    }

    rng_state = o.seed * 0x2545f4914f6cdd1dull + 1;
    printf("# gen_cases --seed %llu --count %lu --mode %s\n", (unsigned long long)o.seed, o.count,
           wcase_mode_name(o.mode));
    for (unsigned long n = 0; n < o.count; n++) {
        struct wcase c;

        gen_case(&o, &c);
        wcase_format(&c, buf, sizeof(buf));
        puts(buf);
    }
    return 0;
}
