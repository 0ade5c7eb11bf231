/* SPDX-License-Identifier: MIT */
/*
 * Guest-mode template: the page walker and CR3 loader of one guest paging
 * mode. Compiled once per mode by src/modes/meson.build with
 * -DPGM_GUEST_MODE=<n>; see tmpl.h for the per-mode constants.
 *
 * The walk follows Intel SDM vol. 3A chapter 4 in two phases:
 *
 *  1. Translate. From the root, read each entry; a clear P bit ends the walk
 *     with a not-present #PF, a set reserved bit with P|RSVD (the first
 *     failing level wins). Rights accumulate as the AND of R/W and U/S and the
 *     OR of XD. A PS bit where the level allows one ends the walk early.
 *  2. Check and commit. The access is checked against the accumulated rights
 *     (the per-mode permission bitmap, then protection keys). Only if it is allowed are the A bits of every entry
 *     used, and D of the leaf for a write, set - each with a compare-and-swap
 *     against the value read in phase 1. A lost race means the guest changed
 *     an entry under us: the whole walk restarts, so the result always
 *     describes one consistent set of entry values. A faulting walk writes
 *     nothing (the SDM lets hardware set upper A bits then; not doing it is
 *     within that latitude and is what the tests' model expects).
 */
#include <errno.h>
#include <string.h>

#include "src/modes/tmpl.h"
#include "src/modes/walk_support.h"
#include "src/vm.h"

#if GST_LEVELS == 0

/* Paging off: linear = physical, truncated to 32 bits (no A20 masking). */
static int
GST_NAME(walk)(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, struct pgm_walk *w)
{
    (void)vcpu;
    memset(w, 0, sizeof(*w));
    w->gva = gva;
    w->access = access;
    w->status = PGM_WALK_OK;
    w->gpa = (uint32_t)gva;
    w->page_shift = PGM_PAGE_SHIFT;
    w->rights = PGM_RIGHT_WRITE | PGM_RIGHT_USER | PGM_RIGHT_EXEC;
    return 0;
}

static int
GST_NAME(load_cr3)(struct pgm_vm *vm, uint64_t cr3, bool pcide, struct pgm_walk_ctx *ctx)
{
    (void)vm;
    (void)cr3;
    (void)pcide;
    ctx->root = 0;
    return 0;
}

#else /* GST_LEVELS != 0 */

#if GST_ENTRY_BYTES == 4
typedef uint32_t gst_entry_t;
#  define GST_LOAD(p)       pgm_load32((const uint32_t *)(const void *)(p))
#  define GST_CAS(p, e, d)  pgm_cas32((uint32_t *)(void *)(p), (e), (d))
#  define GST_ADDR_MASK     0xfffff000ull
#else
typedef uint64_t gst_entry_t;
#  define GST_LOAD(p)       pgm_load64((const uint64_t *)(const void *)(p))
#  define GST_CAS(p, e, d)  pgm_cas64((uint64_t *)(void *)(p), (e), (d))
#  define GST_ADDR_MASK     0x000ffffffffff000ull
#endif

/* Index bits per table and the VA shift of each level. */
#if PGM_GUEST_MODE == PGM_GMODE_32BIT
#  define GST_IDX_BITS 10
#  define GST_SHIFT(level) (12u + 10u * ((level) - 1u))
#else
#  define GST_IDX_BITS 9
#  define GST_SHIFT(level) (12u + 9u * ((level) - 1u))
#endif
#define GST_IDX_MASK ((1u << GST_IDX_BITS) - 1u)

/* PAE walks start below the latched PDPTEs. */
#if PGM_GUEST_MODE == PGM_GMODE_PAE
#  define GST_FIRST_TABLE_LEVEL 2
#else
#  define GST_FIRST_TABLE_LEVEL GST_LEVELS
#endif

/* Can a PS bit at @level end the walk (once the reserved check passed)? */
#if PGM_GUEST_MODE == PGM_GMODE_32BIT
#  define GST_PS_LEAF(c, level, e) ((level) == 2 && (c)->pse && ((e) & PTE_PS))
#else
/* PS at levels 4/5 is reserved, at level 3 without 1 GiB pages too: never here. */
#  define GST_PS_LEAF(c, level, e) ((level) <= 3 && ((e) & PTE_PS))
#endif

#define GST_HAS_PKEYS (PGM_GUEST_MODE == PGM_GMODE_AMD64 || PGM_GUEST_MODE == PGM_GMODE_LA57)

/* Guest-physical frame of a large leaf at @level. */
static inline uint64_t
GST_NAME(large_frame)(const struct pgm_walk_ctx *c, uint64_t e, unsigned level)
{
#if PGM_GUEST_MODE == PGM_GMODE_32BIT
    (void)level;
    /* 4 MiB: bits 31:22, plus PSE-36 high bits from PDE bits 13.. */
    uint64_t high = (e >> 13) & ((1ull << c->pse36_bits) - 1);
    return (e & 0xffc00000ull) | (high << 32);
#else
    (void)c;
    return e & GST_ADDR_MASK & ~((1ull << GST_SHIFT(level)) - 1);
#endif
}

/*
 * Phase-2 slow path: set A in every entry used and D in the leaf of a write,
 * top down, each by compare-and-swap. Returns false if an entry changed
 * since phase 1 (the caller restarts the walk). Entries in ROM or outside
 * RAM are skipped: their updates are dropped.
 */
static bool
GST_NAME(set_ad)(const struct pgm_phys_map *map, struct pgm_walk *w, unsigned leaf, bool write,
                 uint32_t *flags, uint64_t *updates, uint32_t *written)
{
    for (unsigned l = GST_FIRST_TABLE_LEVEL; l >= leaf; l--) {
        uint64_t want = PTE_A | (l == leaf && write ? PTE_D : 0);
        if ((w->entry[l] & want) == want)
            continue;
        uint8_t *wr = pgm_walk_entry_writable(map, w->entry_gpa[l]);
        if (!wr)
            continue;
        gst_entry_t expected = (gst_entry_t)w->entry[l];
        if (!GST_CAS(wr, &expected, (gst_entry_t)(w->entry[l] | want)))
            return false;
        w->entry[l] |= want;
        *flags |= PGM_WALK_F_AD_WRITTEN;
        *written |= 1u << l;
        (*updates)++;
    }
    return true;
}

/*
 * The A/D bits just written (levels in @written) changed guest memory like
 * any write: a dirty log covering a table page must report it (the CPU's
 * A/D updates dirty pages too; a migration that missed them would lose the
 * bits). Other handlers are not called for the CPU's own bookkeeping.
 */
static void
GST_NAME(note_ad_writes)(struct pgm_vm *vm, const struct pgm_phys_map *map,
                         const struct pgm_walk *w, uint32_t written)
{
    for (unsigned l = 1; l <= GST_LEVELS; l++) {
        if (!(written & (1u << l)))
            continue;
        struct pgm_phys_range *r = pgm_phys_map_find(map, w->entry_gpa[l]);
        if (r && r->pages &&
            pgm_page_handler_state(&r->pages[(w->entry_gpa[l] - r->start) >> PGM_PAGE_SHIFT]) ==
                PGM_HANDLER_WRITE)
            pgm_dirty_log_note_write(vm, w->entry_gpa[l]);
    }
}

static int
GST_NAME(walk)(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, struct pgm_walk *w)
{
    const struct pgm_walk_ctx *c = &vcpu->wctx;
    struct walk_mem *mem = &vcpu->wmem;
    const struct pgm_phys_map *map = pgm_phys_snapshot(&vcpu->vm->phys);
    if (__builtin_expect(mem->map != map, 0))
        *mem = (struct walk_mem){ .map = map };
    uint64_t r_start = mem->start, r_size = mem->size;
    struct pgm_page *r_pages = mem->pages;
    const uint8_t *r_base = mem->base;
    uint32_t flags = 0;
    uint32_t ad_written = 0; /* survives restarts: A/D bits set by an earlier attempt stay set */
    uint32_t ec = 0;
    unsigned level;

    w->access = access;
    w->top_level = GST_LEVELS;
#if GST_VA_BITS == 32
    gva = (uint32_t)gva;
#else
    /* Canonical check: bits 63:VA_BITS-1 must all equal; else #GP, no walk. */
    if ((uint64_t)((int64_t)(gva << (64 - GST_VA_BITS)) >> (64 - GST_VA_BITS)) != gva) {
        w->gva = gva;
        w->status = PGM_WALK_GP;
        w->error_code = 0;
        w->last_level = 0;
        w->flags = 0;
        vcpu->stats.walk_gp++;
        return 0;
    }
#endif
    w->gva = gva;

    for (unsigned attempt = 0; attempt <= PGM_WALK_MAX_RETRIES; attempt++) {
        uint64_t e;
        uint64_t table;
        uint64_t and_all = ~0ull; /* AND of every entry: R/W, U/S and A */
        uint64_t or_all = 0;      /* OR of every entry: XD */
        flags = ad_written;

#if PGM_GUEST_MODE == PGM_GMODE_PAE
        {
            unsigned i = (unsigned)(gva >> 30) & 3;
            e = c->pdpte[i];
            w->entry[3] = e;
            w->entry_gpa[3] = c->root + 8u * i;
            if (!(e & PTE_P)) {
                level = 3;
                ec = walk_structural_ec(c, access, false);
                goto fault;
            }
            /* Reserved bits were checked at the CR3 load; no rights, no A bit. */
            table = e & GST_ADDR_MASK;
        }
#else
        table = c->root;
#endif

        /* Fully unrolled: every level's shift and reserved masks are constants. */
        PGM_UNROLL
        for (level = GST_FIRST_TABLE_LEVEL; level >= 1; level--) {
            pgm_gpa_t a = table + ((gva >> GST_SHIFT(level)) & GST_IDX_MASK) * GST_ENTRY_BYTES;
            const uint8_t *p;
            if (__builtin_expect(a - r_start < r_size, 1)) {
                p = __builtin_expect(r_base != NULL, 1)
                        ? r_base + (a - r_start)
                        : walk_page_ptr(&r_pages[(a - r_start) >> PGM_PAGE_SHIFT], a);
            } else {
                p = pgm_walk_entry_slow(mem, a, &flags); /* may refill the cache */
                r_start = mem->start;
                r_size = mem->size;
                r_pages = mem->pages;
                r_base = mem->base;
            }
            e = GST_LOAD(p);
            w->entry[level] = e;
            w->entry_gpa[level] = a;
            if (!(e & PTE_P)) {
                ec = walk_structural_ec(c, access, false);
                goto fault;
            }
            if (e & c->rsvd[level][(e >> 7) & 1]) {
                ec = walk_structural_ec(c, access, true);
                goto fault;
            }
            and_all &= e;
            or_all |= e;
            if (level == 1 || GST_PS_LEAF(c, level, e))
                break;
            table = e & GST_ADDR_MASK;
        }

        /* Phase 2: rights (PTE bits 1, 2 are W, U), then A/D. */
        uint32_t rights = (uint32_t)(and_all >> 1) & (PGM_RIGHT_WRITE | PGM_RIGHT_USER);
        if (!(or_all & c->xd_mask))
            rights |= PGM_RIGHT_EXEC;
        unsigned pkey = GST_HAS_PKEYS ? (unsigned)(e >> 59) & 0xf : 0;
        bool fault = (c->perm[walk_perm_index(access)] >> rights) & 1;
        bool pk = GST_HAS_PKEYS && c->pke && (rights & PGM_RIGHT_USER) &&
                  walk_pkey_fault(c, access, pkey);
        if (fault || pk) {
            ec = walk_rights_ec(c, access, pk);
            goto fault;
        }

        bool write = access & PGM_ACCESS_WRITE;
        if (!(access & PGM_ACCESS_NO_AD) &&
            (!(and_all & PTE_A) || (write && !(e & PTE_D)))) {
            uint32_t written = 0;
            bool done = GST_NAME(set_ad)(map, w, level, write, &flags, &vcpu->stats.ad_updates,
                                         &written);
            if (written)
                GST_NAME(note_ad_writes)(vcpu->vm, map, w, written);
            if (!done) {
                ad_written = flags & PGM_WALK_F_AD_WRITTEN;
                vcpu->stats.walk_retries++;
                continue;
            }
            e = w->entry[level];
        }

        w->status = PGM_WALK_OK;
        w->error_code = 0;
        w->last_level = level;
        w->rights = rights;
        w->flags = flags;
        if (level == 1) {
            w->page_shift = PGM_PAGE_SHIFT;
            w->gpa = (e & GST_ADDR_MASK) | (gva & ~PGM_PAGE_MASK);
            w->pat_index = (uint8_t)(((e & PTE_PAT) ? 4 : 0) | ((e >> 3) & 3));
        } else {
            w->page_shift = GST_SHIFT(level);
            w->gpa = GST_NAME(large_frame)(c, e, level) | (gva & ((1ull << w->page_shift) - 1));
            w->pat_index = (uint8_t)(((e & PTE_LARGE_PAT) ? 4 : 0) | ((e >> 3) & 3));
        }
        w->global = (e & PTE_G) != 0;
        w->pkey = c->pke ? (uint8_t)pkey : 0;
        if (flags & PGM_WALK_F_NONRAM_TABLE)
            vcpu->stats.nonram_table_reads++;
        return 0;
    }
    return -ELOOP;

fault:
    w->status = PGM_WALK_PAGE_FAULT;
    w->error_code = ec;
    w->last_level = level;
    w->flags = flags;
    w->gpa = 0;
    w->page_shift = 0;
    w->rights = 0;
    w->pat_index = 0;
    w->global = false;
    w->pkey = 0;
    vcpu->stats.walk_faults++;
    if (flags & PGM_WALK_F_NONRAM_TABLE)
        vcpu->stats.nonram_table_reads++;
    return 0;
}

/*
 * CR3 for this mode. 32-bit: bits 31:12 locate the page directory. PAE:
 * bits 31:5 locate the PDPT, whose four entries are latched now; one that is
 * present with a reserved bit set (63, 62:M, 8:5, 2:1) makes the MOV #GP
 * (SDM 4.4.1). IA-32e: bits 51:12 locate the top table; bits 63:M set
 * (except NOFLUSH, bit 63, with CR4.PCIDE) make the MOV #GP.
 */
static int
GST_NAME(load_cr3)(struct pgm_vm *vm, uint64_t cr3, bool pcide, struct pgm_walk_ctx *ctx)
{
#if PGM_GUEST_MODE == PGM_GMODE_32BIT
    (void)vm;
    (void)pcide;
    ctx->root = cr3 & 0xfffff000ull;
    return 0;
#elif PGM_GUEST_MODE == PGM_GMODE_PAE
    (void)pcide;
    unsigned maxphy = vm->cfg.features.maxphyaddr;
    uint64_t rsvd = (1ull << 63) | (~0ull << maxphy & ~(1ull << 63)) |
                    (0xfull << 5) | (0x3ull << 1);
    uint64_t pdpt = cr3 & 0xffffffe0ull;
    uint64_t pdpte[4];
    /* MMIO or unassigned PDPTs read as all-ones: reserved bits, so #GP. */
    (void)pgm_phys_read_backing(vm, pdpt, pdpte, sizeof(pdpte));
    for (unsigned i = 0; i < 4; i++)
        if ((pdpte[i] & PTE_P) && (pdpte[i] & rsvd))
            return PGM_RC_INJECT_GP;
    memcpy(ctx->pdpte, pdpte, sizeof(pdpte));
    ctx->root = pdpt;
    return 0;
#else
    unsigned maxphy = vm->cfg.features.maxphyaddr;
    uint64_t v = pcide ? cr3 & ~(1ull << 63) : cr3;
    if (maxphy < 64 && (v >> maxphy))
        return PGM_RC_INJECT_GP;
    ctx->root = v & GST_ADDR_MASK;
    return 0;
#endif
}

#undef GST_LOAD
#undef GST_CAS
#undef GST_ADDR_MASK
#undef GST_IDX_BITS
#undef GST_SHIFT
#undef GST_IDX_MASK
#undef GST_FIRST_TABLE_LEVEL
#undef GST_PS_LEAF
#undef GST_HAS_PKEYS

#endif /* GST_LEVELS */

const struct pgm_guest_ops GST_NAME(pgm_guest_ops) = {
    .mode = (enum pgm_guest_mode)PGM_GUEST_MODE,
    .levels = GST_LEVELS,
    .walk = GST_NAME(walk),
    .load_cr3 = GST_NAME(load_cr3),
};
