/* SPDX-License-Identifier: MIT */
/*
 * qemu_mmu, before running: follow each case's tables (the navigator),
 * choose the top-level slot that maps the harness into the case's space,
 * where to plant the int3 of a fetch, and which cases not to run: those that
 * hit a known QEMU deviation from the SDM that cannot be corrected afterwards
 * (each with a comment naming the SDM rule), and those QEMU and pgm cannot
 * agree on by construction (tables outside RAM).
 */
#include "qemu_mmu.h"

#include <stdarg.h>
#include <stdio.h>

void set_skip(struct plan *p, const char *fmt, ...)
{
    va_list ap;

    p->kind = 2;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
    va_end(ap);
}

static uint64_t sext(uint64_t v, unsigned bits)
{
    return (uint64_t)((int64_t)(v << (64 - bits)) >> (64 - bits));
}

static int in_ram(uint64_t gpa, unsigned size)
{
    return gpa < WCASE_RAM_SIZE && gpa + size <= WCASE_RAM_SIZE;
}

/*
 * Follow the case's tables from CR3 to the leaf for va, recording every entry
 * read. This only navigates (present bit, and the PS bit where the mode gives
 * it a meaning); it does not check reserved bits or rights: the CPU decides
 * those. Returns 0, or -1 if an entry lies outside RAM (QEMU reads such
 * entries as 0, pgm as all-ones: not comparable).
 */
static int navigate(struct plan *p)
{
    const struct wcase *c = &p->c;
    uint64_t va = c->va, table, e;
    uint64_t addr_rsvd = (c->mode == WCASE_PAE ? 0x7fffffffffffffffull : 0x000fffffffffffffull) &
                         ~((1ull << c->maxphyaddr) - 1);
    int level, top;

    p->npath = 0;
    p->leaf_ok = 0;
#define ADD(g, sz, lvl)                                                                        \
    do {                                                                                       \
        if (!in_ram((g), (sz)))                                                                \
            return -1;                                                                         \
        p->path[p->npath].gpa = (g);                                                           \
        p->path[p->npath].size = (sz);                                                         \
        p->path[p->npath].level = (lvl);                                                       \
        p->npath++;                                                                            \
    } while (0)

    switch (c->mode) {
    case WCASE_32: {
        uint64_t pdea = (c->cr3 & 0xfffff000ull) + ((va >> 22) & 0x3ff) * 4;
        uint64_t ptea;

        ADD(pdea, 4, 2);
        e = wcase_read_initial(c, pdea, 4);
        if (!(e & 1))
            return 0;
        if (c->pse && (e & 0x80)) {
            p->leaf_ok = 1;
            p->leaf_idx = p->npath - 1;
            p->size_shift = 22;
            /* PSE-36 as QEMU (and libpgm with MAXPHYADDR >= 40): bits 20:13
             * are PA 39:32 */
            p->target = (e & 0xffc00000ull) | (((e >> 13) & 0xff) << 32) | (va & 0x3fffff);
            return 0;
        }
        ptea = (e & 0xfffff000ull) + ((va >> 12) & 0x3ff) * 4;
        ADD(ptea, 4, 1);
        e = wcase_read_initial(c, ptea, 4);
        if (!(e & 1))
            return 0;
        p->leaf_ok = 1;
        p->leaf_idx = p->npath - 1;
        p->size_shift = 12;
        p->target = (e & 0xfffff000ull) | (va & 0xfff);
        return 0;
    }
    case WCASE_PAE: {
        uint64_t a = (c->cr3 & 0xffffffe0ull) + ((va >> 30) & 3) * 8;

        ADD(a, 8, 3);
        e = wcase_read_initial(c, a, 8);
        if (!(e & 1))
            return 0;
        table = e & ADDR_MASK;
        top = 2;
        break;
    }
    case WCASE_AMD64:
    case WCASE_LA57:
        top = c->mode == WCASE_LA57 ? 5 : 4;
        if (sext(va, top == 5 ? 57 : 48) != va) {
            p->noncanonical = 1;
            return 0;
        }
        table = c->cr3 & ADDR_MASK;
        break;
    default:
        return 0;
    }
    for (level = top; level >= 1; level--) {
        unsigned shift = 12 + 9 * (unsigned)(level - 1);
        uint64_t a = table + ((va >> shift) & 511) * 8;

        ADD(a, 8, (unsigned)level);
        e = wcase_read_initial(c, a, 8);
        if (!(e & 1))
            return 0;
        /* Address bits at or above MAXPHYADDR (and, in PAE entries, bits
         * 62:52; bit 63 without NXE) are reserved: the walk ends here with a
         * reserved-bit fault, so do not follow the pointer. */
        if ((e & addr_rsvd) || (!c->nxe && (e >> 63)))
            return 0;
        if ((e & 0x80) && level >= 4)
            return 0; /* PS in a PML4E/PML5E: reserved, the walk stops */
        if ((e & 0x80) && (level == 2 || level == 3)) {
            if (level == 3 && c->mode == WCASE_PAE)
                return 0;
            p->leaf_ok = 1;
            p->leaf_idx = p->npath - 1;
            p->size_shift = shift;
            p->target = (e & ADDR_MASK & ~((1ull << shift) - 1)) | (va & ((1ull << shift) - 1));
            return 0;
        }
        if (level == 1) {
            p->leaf_ok = 1;
            p->leaf_idx = p->npath - 1;
            p->size_shift = 12;
            p->target = (e & ADDR_MASK) | (va & 0xfff);
            return 0;
        }
        table = e & ADDR_MASK;
    }
#undef ADD
    return 0;
}

static int overlaps(uint64_t a, unsigned an, uint64_t b, unsigned bn)
{
    return a < b + bn && b < a + an;
}

/* Is [gpa, gpa+n) free of everything the case uses? */
static int location_free(const struct plan *p, uint64_t gpa, unsigned n)
{
    const struct wcase *c = &p->c;

    for (unsigned i = 0; i < c->nmem; i++)
        if (overlaps(gpa, n, c->mem[i].gpa, c->mem[i].size))
            return 0;
    for (unsigned i = 0; i < p->npath; i++)
        if (overlaps(gpa, n, p->path[i].gpa, p->path[i].size))
            return 0;
    if (p->leaf_ok && overlaps(gpa, n, p->target, 1))
        return 0;
    return 1;
}

/* Pick the top-level slot that maps the harness into the case's space. */
static int choose_slot(struct plan *p)
{
    const struct wcase *c = &p->c;
    uint64_t base;
    unsigned nslots, esize, vaslot;

    switch (c->mode) {
    case WCASE_32:
        base = c->cr3 & 0xfffff000ull;
        nslots = 1024;
        esize = 4;
        vaslot = (unsigned)(c->va >> 22) & 1023;
        p->slot_val = (QG_HB + QG_OFF_PT32) | 7;
        break;
    case WCASE_PAE:
        base = c->cr3 & 0xffffffe0ull;
        nslots = 4;
        esize = 8;
        vaslot = (unsigned)(c->va >> 30) & 3;
        p->slot_val = (QG_HB + QG_OFF_PD) | 1;
        break;
    case WCASE_AMD64:
        base = c->cr3 & ADDR_MASK;
        nslots = 512;
        esize = 8;
        vaslot = (unsigned)(c->va >> 39) & 511;
        p->slot_val = (QG_HB + QG_OFF_PDPT) | 7;
        break;
    default:
        base = c->cr3 & ADDR_MASK;
        nslots = 512;
        esize = 8;
        vaslot = (unsigned)(c->va >> 48) & 511;
        p->slot_val = (QG_HB + QG_OFF_PML4) | 7;
        break;
    }
    if (!in_ram(base, esize * nslots))
        return -1;
    for (unsigned i = 0; i < nslots; i++) {
        unsigned s = nslots - 1 - i;
        uint64_t gpa = base + (uint64_t)s * esize;

        if (s == vaslot)
            continue;
        if (!location_free(p, gpa, esize))
            continue;
        p->slot = s;
        p->slot_gpa = gpa;
        p->slot_size = esize;
        return 0;
    }
    return -1;
}

/* PAE PDPTE reserved bits (SDM 4.4.1, Table 4-8): 2:1, 8:5, 63:MAXPHYADDR. */
static int pae_pdpte_reserved(const struct wcase *c, uint64_t e)
{
    uint64_t rsvd = 0x1e6ull | ~((1ull << c->maxphyaddr) - 1);

    return (e & 1) && (e & rsvd);
}

void plan_case(struct plan *p)
{
    const struct wcase *c = &p->c;

    switch (c->mode) {
    case WCASE_32:
        p->mode = QG_MODE_32;
        break;
    case WCASE_PAE:
        p->mode = QG_MODE_PAE;
        break;
    case WCASE_AMD64:
        p->mode = QG_MODE_LM4;
        break;
    case WCASE_LA57:
        p->mode = QG_MODE_LM5;
        break;
    default:
        set_skip(p, "mode %s is not run by the QEMU harness", wcase_mode_name(c->mode));
        return;
    }
    /*
     * PSE-36: QEMU always takes PA 39:32 from PDE bits 20:13 and reserves only
     * bit 21, whatever phys-bits is; libpgm uses M = min(MAXPHYADDR, 40). They
     * agree for MAXPHYADDR >= 40 only. (Without CR4.PSE there are no 4 MiB
     * pages and no MAXPHYADDR dependence in 32-bit paging.)
     */
    if (c->mode == WCASE_32 && c->pse && c->maxphyaddr < 40) {
        set_skip(p, "PSE-36 with MAXPHYADDR < 40: QEMU always decodes 40 bits");
        return;
    }
    /*
     * QEMU TCG does not load the PAE PDPTE registers at MOV to CR3: it reads
     * the PDPTE on every walk, never raises #GP for a reserved bit (SDM 4.4.1:
     * "If any of the PDPTEs sets both the P flag and any reserved bit, the MOV
     * to CR3 causes a general-protection exception") and ignores bits 2:1 and
     * 8:5. Cases with such a PDPTE are excluded.
     */
    if (c->mode == WCASE_PAE) {
        uint64_t pdpt = c->cr3 & 0xffffffe0ull;

        if (!in_ram(pdpt, 32)) {
            set_skip(p, "PAE PDPT outside RAM (QEMU reads 0, pgm all-ones)");
            return;
        }
        for (unsigned i = 0; i < 4; i++)
            if (pae_pdpte_reserved(c, wcase_read_initial(c, pdpt + 8 * i, 8))) {
                set_skip(p, "PAE PDPTE with reserved bits: QEMU has no #GP at MOV CR3");
                return;
            }
    }
    /*
     * QEMU TCG's MOV to CR3 checks no reserved bit, so there is no #GP for a
     * CR3 with bits at or above MAXPHYADDR (SDM Vol. 2, MOV to/from Control
     * Registers: #GP(0) on an attempt to write a 1 to a reserved bit of CR3;
     * SDM 4.5.2: CR3 bits 63:M are reserved in 4/5-level paging).
     */
    if ((c->mode == WCASE_AMD64 || c->mode == WCASE_LA57) && c->maxphyaddr < 64 &&
        (c->cr3 >> c->maxphyaddr)) {
        set_skip(p, "CR3 with bits above MAXPHYADDR: QEMU has no #GP at MOV CR3");
        return;
    }
    if (navigate(p) < 0) {
        set_skip(p, "walk reads an entry outside RAM (QEMU reads 0, pgm all-ones)");
        return;
    }
    /*
     * QEMU's walker takes PS=1 in a PDPTE as a 1 GiB page whatever CPUID says;
     * without CPUID.80000001H:EDX.Page1GB that bit is reserved (SDM 4.5.4,
     * "reserved ... bit 7 in a PDPTE if 1-GByte pages are not supported").
     */
    if ((c->mode == WCASE_AMD64 || c->mode == WCASE_LA57) && !c->gbpages)
        for (unsigned i = 0; i < p->npath; i++)
            if (p->path[i].level == 3 &&
                (wcase_read_initial(c, p->path[i].gpa, 8) & 0x81) == 0x81) {
                set_skip(p, "PS=1 PDPTE without gbpages: QEMU maps a 1 GiB page");
                return;
            }
    if (p->noncanonical) {
        /* #GP before any walk; still needs a slot, which any will do */
        p->npath = 0;
    }
    if (choose_slot(p) < 0) {
        set_skip(p, "no free top-level slot for the harness");
        return;
    }
    p->plant = QG_NO_PLANT;
    if (p->leaf_ok && p->target >= 0xf8000000ull && p->target < 0x100000000ull) {
        /* harness VRAM, IOAPIC, HPET, LAPIC, BIOS ROM: not unassigned in QEMU */
        set_skip(p, "target GPA in QEMU's device/harness range 0xf8000000..4G");
        return;
    }
    if (c->acc == 'x' && p->leaf_ok) {
        if (p->target < WCASE_RAM_SIZE) {
            for (unsigned i = 0; i < p->npath; i++)
                if (overlaps(p->target, 1, p->path[i].gpa, p->path[i].size)) {
                    set_skip(p, "fetch target is a paging entry of the walk (bytes not controlled)");
                    return;
                }
            p->plant = (uint32_t)p->target;
        } else {
            p->unplanted_fetch = 1; /* unassigned: QEMU fetches 00 00 (add %al,(%rax)) */
            if ((c->va & 0xfff) == 0xfff) {
                set_skip(p, "unplanted fetch at the end of a page");
                return;
            }
        }
    }
}
