/* SPDX-License-Identifier: MIT */
/*
 * Reference model of x86 paging, written from the Intel SDM vol. 3A ch. 4.
 * See sdm_model.h for the policies. Section numbers below are the SDM's.
 */
#include "sdm_model.h"

#include <stdio.h>
#include <string.h>

/* ---- Entry bits (Tables 4-4 .. 4-20) ------------------------------------ */

#define E_P   (1ull << 0)  /* present */
#define E_RW  (1ull << 1)  /* read/write */
#define E_US  (1ull << 2)  /* user/supervisor */
#define E_A   (1ull << 5)  /* accessed */
#define E_D   (1ull << 6)  /* dirty (leaf only) */
#define E_PS  (1ull << 7)  /* page size (PDE, PDPTE); PAT in a 4 KiB PTE */
#define E_G   (1ull << 8)  /* global (leaf only) */
#define E_XD  (1ull << 63) /* execute-disable (PAE, 4/5-level, with EFER.NXE) */

/* Bits hi..lo inclusive; empty when hi < lo. */
static uint64_t bits(unsigned hi, unsigned lo)
{
    if (hi < lo || lo > 63) {
        return 0;
    }
    if (hi > 63) {
        hi = 63;
    }
    uint64_t upto_hi = (hi == 63) ? ~0ull : ((1ull << (hi + 1)) - 1);
    return upto_hi & ~((1ull << lo) - 1);
}

/* ---- Memory -------------------------------------------------------------- */

uint64_t sdm_mem_read(const struct sdm_mem *mem, uint64_t gpa, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++) {
        uint64_t a = gpa + i;
        uint64_t byte = 0xff;
        if (a >= gpa && a < mem->size) {
            byte = mem->bytes[a];
        }
        v |= byte << (8 * i);
    }
    return v;
}

void sdm_mem_write(struct sdm_mem *mem, uint64_t gpa, uint64_t val, unsigned size)
{
    for (unsigned i = 0; i < size; i++) {
        uint64_t a = gpa + i;
        bool rom = mem->ro_size != 0 && a >= mem->ro_base && a - mem->ro_base < mem->ro_size;
        if (a >= gpa && a < mem->size && !rom) {
            mem->bytes[a] = (uint8_t)(val >> (8 * i));
        }
    }
}

/* ---- Reserved bits -------------------------------------------------------- */

uint64_t sdm_high_rsvd_mask64(unsigned maxphyaddr)
{
    return bits(51, maxphyaddr);
}

/*
 * 32-bit paging, 4 MiB page (Table 4-4): M = min(MAXPHYADDR, 40) with PSE-36,
 * 32 without. PDE bits (M-20):13 are PA bits (M-1):32; bits 21:(M-19) are
 * reserved.
 */
static unsigned pse36_m(const struct sdm_cpu *cpu)
{
    if (!cpu->pse36) {
        return 32;
    }
    return cpu->maxphyaddr < 40 ? cpu->maxphyaddr : 40;
}

/* Reserved bits of a present entry @p e at @p level (4.3, 4.4.2, 4.5.4). */
static uint64_t rsvd_mask(const struct sdm_cpu *cpu, unsigned level, uint64_t e)
{
    unsigned m = cpu->maxphyaddr;
    uint64_t r = 0;

    switch (cpu->mode) {
    case SDM_MODE_32BIT:
        /* 4.3: PTEs and PDEs that reference a page table have no reserved
         * bits. PS in a PDE matters only with CR4.PSE (otherwise ignored). */
        if (level == 2 && cpu->cr4_pse && (e & E_PS)) {
            r = bits(21, pse36_m(cpu) - 19);
        }
        return r;

    case SDM_MODE_PAE:
        /* Tables 4-8 .. 4-11: bits 62:M reserved, bit 63 is XD only with
         * EFER.NXE (reserved otherwise). A 2 MiB PDE reserves 20:13. The PDPTEs
         * were checked at the CR3 load (4.4.1) and never come here. */
        r = bits(62, m);
        if (!cpu->efer_nxe) {
            r |= E_XD;
        }
        if (level == 2 && (e & E_PS)) {
            r |= bits(20, 13);
        }
        return r;

    case SDM_MODE_4LEVEL:
    case SDM_MODE_5LEVEL:
        /* Tables 4-14 .. 4-20: bits 51:M reserved everywhere; bit 63 is XD
         * only with EFER.NXE. PS is reserved in PML5Es and PML4Es; in a PDPTE
         * it maps 1 GiB only with CPUID Page1GB (else it is reserved), and a
         * 1 GiB page reserves 29:13; a 2 MiB page reserves 20:13. */
        r = bits(51, m);
        if (!cpu->efer_nxe) {
            r |= E_XD;
        }
        if (level >= 4) {
            r |= E_PS;
        } else if (level == 3 && (e & E_PS)) {
            r |= cpu->gbpages ? bits(29, 13) : E_PS;
        } else if (level == 2 && (e & E_PS)) {
            r |= bits(20, 13);
        }
        return r;
    }
    return 0;
}

bool sdm_pae_load_pdptes(const struct sdm_mem *mem, uint64_t cr3, unsigned maxphyaddr,
                         uint64_t pdpte[4])
{
    /* 4.4.1, Table 4-8: CR3[31:5] locates the PDPT; a present PDPTE with bit
     * 63, bits 62:M, 8:5 or 2:1 set makes MOV CR3 raise #GP. */
    uint64_t base = cr3 & 0xffffffe0ull;
    uint64_t rsvd = E_XD | bits(62, maxphyaddr) | bits(8, 5) | bits(2, 1);
    uint64_t tmp[4];

    for (unsigned i = 0; i < 4; i++) {
        tmp[i] = sdm_mem_read(mem, base + 8 * i, 8);
        if ((tmp[i] & E_P) && (tmp[i] & rsvd)) {
            return false;
        }
    }
    memcpy(pdpte, tmp, sizeof(tmp));
    return true;
}

bool sdm_cr3_valid_long(uint64_t cr3, unsigned maxphyaddr)
{
    /* 4.5.2 / Table 4-12: CR3 bits 63:MAXPHYADDR are reserved (without PCIDE
     * bit 63 is not NOFLUSH). */
    return (cr3 & bits(63, maxphyaddr)) == 0;
}

bool sdm_canonical(enum sdm_mode mode, uint64_t la)
{
    /* 3.3.7.1 / 4.5: bits 63:47 (4-level) or 63:56 (5-level) must all equal. */
    unsigned top;
    if (mode == SDM_MODE_4LEVEL) {
        top = 47;
    } else if (mode == SDM_MODE_5LEVEL) {
        top = 56;
    } else {
        return true;
    }
    uint64_t hi = la & bits(63, top);
    return hi == 0 || hi == bits(63, top);
}

/* ---- The walk ------------------------------------------------------------- */

/* Index of @p la into the table at @p level. */
static uint64_t table_index(enum sdm_mode mode, unsigned level, uint64_t la)
{
    if (mode == SDM_MODE_32BIT) {
        return level == 2 ? (la >> 22) & 0x3ff : (la >> 12) & 0x3ff;
    }
    return (la >> (12 + 9 * (level - 1))) & 0x1ff;
}

/* Is the present, reserved-bit-free entry @p e at @p level a leaf? */
static bool is_leaf(const struct sdm_cpu *cpu, unsigned level, uint64_t e)
{
    if (level == 1) {
        return true;
    }
    if (cpu->mode == SDM_MODE_32BIT) {
        return level == 2 && cpu->cr4_pse && (e & E_PS);
    }
    /* PAE, 4/5-level: PS at PDE (and PDPTE in 4/5-level; PML4E/PML5E PS was
     * rejected as reserved). */
    return (level == 2 || level == 3) && (e & E_PS);
}

/* Page shift of a leaf at @p level. */
static unsigned leaf_shift(enum sdm_mode mode, unsigned level)
{
    switch (level) {
    case 1:
        return 12;
    case 2:
        return mode == SDM_MODE_32BIT ? 22 : 21;
    default:
        return 30;
    }
}

/* Physical address the leaf @p e at @p level maps @p la to. */
static uint64_t leaf_gpa(const struct sdm_cpu *cpu, unsigned level, uint64_t e, uint64_t la)
{
    unsigned shift = leaf_shift(cpu->mode, level);
    uint64_t offset = la & bits(shift - 1, 0);

    if (cpu->mode == SDM_MODE_32BIT) {
        if (level == 1) {
            return (e & 0xfffff000ull) | offset;
        }
        /* 4 MiB page: PA 31:22 from PDE 31:22, PA (M-1):32 from PDE (M-20):13. */
        unsigned width = pse36_m(cpu) - 32; /* 0..8 bits above bit 31 */
        uint64_t hi = (e >> 13) & ((1ull << width) - 1);
        return (e & 0xffc00000ull) | (hi << 32) | offset;
    }
    return (e & bits(cpu->maxphyaddr - 1, shift)) | offset;
}

/* Address of the table an entry references. */
static uint64_t next_table(const struct sdm_cpu *cpu, uint64_t e)
{
    if (cpu->mode == SDM_MODE_32BIT) {
        return e & 0xfffff000ull;
    }
    return e & bits(cpu->maxphyaddr - 1, 12);
}

/*
 * Access rights (4.6.1) and protection keys (4.6.2). @p w, @p u and @p xd are
 * the effective R/W, U/S and XD of the translation. Sets *pk when the error
 * code must carry PK (4.7: even when something else also faults).
 * @return true if the access is not allowed.
 */
static bool rights_fault(const struct sdm_cpu *cpu, const struct sdm_access *acc, bool w,
                         bool u, bool xd, uint64_t leaf, bool *pk)
{
    bool user_access = acc->priv == SDM_PRIV_USER;
    bool explicit_access = acc->priv != SDM_PRIV_IMPLICIT;
    /* SMAP forbids a supervisor data access to a user page unless it is explicit
     * and RFLAGS.AC = 1. */
    bool smap_blocks = cpu->cr4_smap && u && !user_access && (!acc->ac || !explicit_access);
    bool fault = false;

    *pk = false;
    switch (acc->kind) {
    case SDM_READ:
        if (user_access) {
            fault = !u;
        } else {
            fault = smap_blocks;
        }
        break;
    case SDM_WRITE:
        if (user_access) {
            fault = !u || !w;
        } else if (smap_blocks) {
            fault = true;
        } else {
            /* Supervisor write: with CR0.WP = 0 any page, else R/W = 1 needed. */
            fault = cpu->cr0_wp && !w;
        }
        break;
    case SDM_FETCH:
        if (user_access) {
            fault = !u || xd;
        } else {
            /* SMEP: no supervisor fetch from a user page. */
            fault = (cpu->cr4_smep && u) || xd;
        }
        break;
    }

    /* Protection keys: 4/5-level paging with CR4.PKE, data accesses to user
     * pages (any CPL), key from the leaf's bits 62:59. */
    bool ia32e = cpu->mode == SDM_MODE_4LEVEL || cpu->mode == SDM_MODE_5LEVEL;
    if (ia32e && cpu->cr4_pke && u && acc->kind != SDM_FETCH) {
        unsigned key = (unsigned)((leaf >> 59) & 0xf);
        bool ad = (cpu->pkru >> (2 * key)) & 1;
        bool wd = (cpu->pkru >> (2 * key + 1)) & 1;
        if (ad) {
            *pk = true;
        } else if (wd && acc->kind == SDM_WRITE && (user_access || cpu->cr0_wp)) {
            *pk = true;
        }
    }
    return fault || *pk;
}

/* The access-type part of the error code (4.7). */
static uint32_t access_error_bits(const struct sdm_cpu *cpu, const struct sdm_access *acc)
{
    uint32_t ec = 0;
    if (acc->kind == SDM_WRITE) {
        ec |= SDM_PFEC_W;
    }
    if (acc->priv == SDM_PRIV_USER) {
        ec |= SDM_PFEC_U;
    }
    /* I/D: a fetch, and CR4.SMEP = 1 or (CR4.PAE = 1 and EFER.NXE = 1). */
    if (acc->kind == SDM_FETCH &&
        (cpu->cr4_smep || (cpu->mode != SDM_MODE_32BIT && cpu->efer_nxe))) {
        ec |= SDM_PFEC_ID;
    }
    return ec;
}

static void page_fault(const struct sdm_cpu *cpu, const struct sdm_access *acc,
                       struct sdm_result *res, enum sdm_fault_cause cause, bool pk)
{
    res->outcome = SDM_PF;
    res->cause = cause;
    res->error_code = access_error_bits(cpu, acc);
    if (cause == SDM_CAUSE_RESERVED) {
        res->error_code |= SDM_PFEC_P | SDM_PFEC_RSVD;
    } else if (cause == SDM_CAUSE_PROTECTION) {
        res->error_code |= SDM_PFEC_P | (pk ? SDM_PFEC_PK : 0);
    }
}

void sdm_translate(struct sdm_mem *mem, const struct sdm_cpu *cpu, uint64_t la,
                   const struct sdm_access *acc, struct sdm_result *res)
{
    static const unsigned top_of_mode[] = {2, 3, 4, 5};
    unsigned esize = cpu->mode == SDM_MODE_32BIT ? 4 : 8;
    unsigned level = top_of_mode[cpu->mode];
    uint64_t table;
    bool w = true, u = true, xd = false;

    memset(res, 0, sizeof(*res));
    res->top_level = level;

    if (cpu->mode == SDM_MODE_4LEVEL || cpu->mode == SDM_MODE_5LEVEL) {
        if (!sdm_canonical(cpu->mode, la)) {
            res->outcome = SDM_GP;
            res->top_level = 0;
            return;
        }
    } else {
        la &= 0xffffffffull;
    }

    if (cpu->mode == SDM_MODE_PAE) {
        /* 4.4.2: the PDPTE register selected by bits 31:30. It has no R/W, U/S,
         * XD or A bit. */
        unsigned i = (unsigned)((la >> 30) & 3);
        uint64_t e = cpu->pdpte[i];
        res->entry[3] = e;
        res->entry_gpa[3] = (cpu->cr3 & 0xffffffe0ull) + 8 * i;
        res->last_level = 3;
        if (!(e & E_P)) {
            page_fault(cpu, acc, res, SDM_CAUSE_NOT_PRESENT, false);
            return;
        }
        table = next_table(cpu, e);
        level = 2;
    } else if (cpu->mode == SDM_MODE_32BIT) {
        table = cpu->cr3 & 0xfffff000ull;
    } else {
        table = cpu->cr3 & bits(cpu->maxphyaddr - 1, 12);
    }

    for (;;) {
        uint64_t egpa = table + table_index(cpu->mode, level, la) * esize;
        uint64_t e = sdm_mem_read(mem, egpa, esize);
        if (egpa >= mem->size || egpa + esize > mem->size) {
            res->outside_ram = true;
        }
        res->entry[level] = e;
        res->entry_gpa[level] = egpa;
        res->last_level = level;
        if (!(e & E_P)) {
            page_fault(cpu, acc, res, SDM_CAUSE_NOT_PRESENT, false);
            return;
        }
        if (e & rsvd_mask(cpu, level, e)) {
            page_fault(cpu, acc, res, SDM_CAUSE_RESERVED, false);
            return;
        }
        w = w && (e & E_RW);
        u = u && (e & E_US);
        if (cpu->mode != SDM_MODE_32BIT && cpu->efer_nxe && (e & E_XD)) {
            xd = true;
        }
        if (is_leaf(cpu, level, e)) {
            break;
        }
        table = next_table(cpu, e);
        level--;
    }

    uint64_t leaf = res->entry[level];
    bool ia32e = cpu->mode == SDM_MODE_4LEVEL || cpu->mode == SDM_MODE_5LEVEL;
    res->page_shift = leaf_shift(cpu->mode, level);
    res->rights = (w ? SDM_RIGHT_WRITE : 0) | (u ? SDM_RIGHT_USER : 0) |
                  (xd ? 0 : SDM_RIGHT_EXEC);
    res->pkey = (ia32e && cpu->cr4_pke) ? (unsigned)((leaf >> 59) & 0xf) : 0;
    res->global = (leaf & E_G) != 0;
    /* Tables 4-4..4-20: PWT bit 3, PCD bit 4, PAT bit 7 (4 KiB) or 12 (large). */
    unsigned pat_bit = level == 1 ? 7 : 12;
    res->pat_index = (unsigned)(((leaf >> pat_bit) & 1) << 2 | ((leaf >> 4) & 1) << 1 |
                                ((leaf >> 3) & 1));

    bool pk;
    if (rights_fault(cpu, acc, w, u, xd, leaf, &pk)) {
        page_fault(cpu, acc, res, SDM_CAUSE_PROTECTION, pk);
        return;
    }

    /* 4.8: A in every entry used, D in the leaf on a write. The PAE PDPTE
     * registers have no A bit. Bits are ORed into memory as it is now, so an
     * entry used at two levels (recursive tables) collects both updates. */
    for (unsigned l = res->top_level; l >= level; l--) {
        if (cpu->mode == SDM_MODE_PAE && l == 3) {
            continue;
        }
        uint64_t set = E_A;
        if (l == level && acc->kind == SDM_WRITE) {
            set |= E_D;
        }
        uint64_t now = sdm_mem_read(mem, res->entry_gpa[l], esize);
        if ((now & set) != set) {
            sdm_mem_write(mem, res->entry_gpa[l], now | set, esize);
        }
        /* Report the bits that landed (none in ROM or outside RAM). */
        uint64_t landed = set & sdm_mem_read(mem, res->entry_gpa[l], esize);
        if (landed & ~now) {
            res->ad_written = true;
        }
        res->entry[l] |= landed;
    }

    res->outcome = SDM_OK;
    res->cause = SDM_CAUSE_NONE;
    res->gpa = leaf_gpa(cpu, level, leaf, la);
}

/* ---- Names and dumps ----------------------------------------------------- */

const char *sdm_mode_name(enum sdm_mode mode)
{
    switch (mode) {
    case SDM_MODE_32BIT:
        return "32bit";
    case SDM_MODE_PAE:
        return "pae";
    case SDM_MODE_4LEVEL:
        return "4level";
    case SDM_MODE_5LEVEL:
        return "5level";
    }
    return "?";
}

const char *sdm_kind_name(enum sdm_kind kind)
{
    switch (kind) {
    case SDM_READ:
        return "read";
    case SDM_WRITE:
        return "write";
    case SDM_FETCH:
        return "fetch";
    }
    return "?";
}

const char *sdm_priv_name(enum sdm_priv priv)
{
    switch (priv) {
    case SDM_PRIV_SUPERVISOR:
        return "sup";
    case SDM_PRIV_USER:
        return "user";
    case SDM_PRIV_IMPLICIT:
        return "implicit";
    }
    return "?";
}

char *sdm_cpu_format(const struct sdm_cpu *cpu, char *buf, size_t len)
{
    snprintf(buf, len,
             "mode=%s cr3=%#llx wp=%d pse=%d pge=%d smep=%d smap=%d pke=%d nxe=%d "
             "pkru=%#x maxphyaddr=%u gbpages=%d pse36=%d pdpte=[%#llx %#llx %#llx %#llx]",
             sdm_mode_name(cpu->mode), (unsigned long long)cpu->cr3, cpu->cr0_wp,
             cpu->cr4_pse, cpu->cr4_pge, cpu->cr4_smep, cpu->cr4_smap, cpu->cr4_pke,
             cpu->efer_nxe, cpu->pkru, cpu->maxphyaddr, cpu->gbpages, cpu->pse36,
             (unsigned long long)cpu->pdpte[0], (unsigned long long)cpu->pdpte[1],
             (unsigned long long)cpu->pdpte[2], (unsigned long long)cpu->pdpte[3]);
    return buf;
}

char *sdm_access_format(const struct sdm_access *acc, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s ac=%d", sdm_priv_name(acc->priv), sdm_kind_name(acc->kind),
             acc->ac);
    return buf;
}

char *sdm_result_format(const struct sdm_result *res, char *buf, size_t len)
{
    static const char *const outcome[] = {"ok", "#PF", "#GP"};
    static const char *const cause[] = {"", "not-present", "reserved", "protection"};
    int n = snprintf(buf, len, "%s", outcome[res->outcome]);
    if (res->outcome == SDM_PF && n >= 0 && (size_t)n < len) {
        n += snprintf(buf + n, len - (size_t)n, " ec=%#x (%s) level=%u", res->error_code,
                      cause[res->cause], res->last_level);
    } else if (res->outcome == SDM_OK && n >= 0 && (size_t)n < len) {
        n += snprintf(buf + n, len - (size_t)n,
                      " gpa=%#llx shift=%u level=%u rights=%#x pkey=%u global=%d pat=%u",
                      (unsigned long long)res->gpa, res->page_shift, res->last_level,
                      res->rights, res->pkey, res->global, res->pat_index);
    }
    for (unsigned l = res->top_level; res->outcome != SDM_GP && l >= 1 && l >= res->last_level;
         l--) {
        if (n < 0 || (size_t)n >= len) {
            break;
        }
        n += snprintf(buf + n, len - (size_t)n, " L%u[%#llx]=%#llx", l,
                      (unsigned long long)res->entry_gpa[l], (unsigned long long)res->entry[l]);
    }
    return buf;
}
