/* SPDX-License-Identifier: MIT */
/* Unicorn 2 as the emulator's reference CPU: see unicorn_ref.h. */
#include "unicorn_ref.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unicorn/unicorn.h>

#define STATUS (PGM_RFLAGS_CF | PGM_RFLAGS_PF | PGM_RFLAGS_AF | PGM_RFLAGS_ZF | \
                PGM_RFLAGS_SF | PGM_RFLAGS_OF)

struct uref {
    uc_engine *uc;
    uc_context *fresh;      /* the CPU state right after uc_open() */
    unsigned bits;
    uint8_t page[4096];     /* a page read back from Unicorn */
};

static const int uc_gpr64[16] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX,
    UC_X86_REG_RSP, UC_X86_REG_RBP, UC_X86_REG_RSI, UC_X86_REG_RDI,
    UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15,
};
static const int uc_gpr32[8] = {
    UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX,
    UC_X86_REG_ESP, UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI,
};
static const int uc_seg[PGM_SEG_COUNT] = {
    UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS, UC_X86_REG_DS,
    UC_X86_REG_FS, UC_X86_REG_GS,
};

static const char *const dev_names[UREF_DEV_COUNT] = {
    [UREF_DEV_CMPXCHG_RAX] = "CMPXCHG RAX",
    [UREF_DEV_LOCK_NEG] = "LOCK NEG flags",
    [UREF_DEV_C6C7_REXR] = "C6/C7 REX.R #UD",
    [UREF_DEV_REX_IGNORED] = "ignored REX",
    [UREF_DEV_TEST_ALIAS] = "F6/F7 /1 #UD",
};

const char *
uref_dev_name(unsigned dev)
{
    return dev < UREF_DEV_COUNT ? dev_names[dev] : "?";
}

/* ------------------------------------------------------------------------ */
/* Known deviations                                                          */

static bool
is_legacy_prefix(uint8_t b)
{
    switch (b) {
    case 0x26: case 0x2e: case 0x36: case 0x3e: case 0x64: case 0x65:
    case 0x66: case 0x67: case 0xf0: case 0xf2: case 0xf3:
        return true;
    default:
        return false;
    }
}

static bool
is_rex(uint8_t b, unsigned bits)
{
    return bits == 64 && (b & 0xf0) == 0x40;
}

/* The REX prefix the CPU uses: the one immediately before the opcode (or
 * 0F), in 64-bit code; 0 when there is none. */
static unsigned
effective_rex(const uint8_t *code, unsigned len, unsigned bits)
{
    unsigned rex = 0;
    for (unsigned i = 0; i < len; i++) {
        if (is_rex(code[i], bits))
            rex = code[i];
        else if (is_legacy_prefix(code[i]))
            rex = 0;    /* a REX before a legacy prefix is ignored */
        else
            break;
    }
    return rex;
}

/* Index of the opcode byte (after every prefix). */
static unsigned
opcode_index(const uint8_t *code, unsigned len, unsigned bits)
{
    unsigned i = 0;
    while (i < len && (is_rex(code[i], bits) || is_legacy_prefix(code[i])))
        i++;
    return i;
}

/* Whether a REX prefix is followed by a legacy prefix (and so ignored). */
static bool
has_ignored_rex(const uint8_t *code, unsigned len, unsigned bits)
{
    for (unsigned i = 0; i + 1 < len && (is_rex(code[i], bits) || is_legacy_prefix(code[i])); i++)
        if (is_rex(code[i], bits) && is_legacy_prefix(code[i + 1]))
            return true;
    return false;
}

/* The bytes for Unicorn under UREF_DEV_REX_IGNORED: each REX that is
 * followed by a legacy prefix becomes a copy of that prefix (working back
 * from the opcode, so a run of them all take the legacy prefix after the
 * run). Same length, same prefixes in the same order: the SDM's reading. */
static void
drop_ignored_rex(uint8_t *code, unsigned len, unsigned bits)
{
    unsigned end = 0;
    while (end < len && (is_rex(code[end], bits) || is_legacy_prefix(code[end])))
        end++;
    for (unsigned i = end; i-- > 1;)
        if (is_rex(code[i - 1], bits) && is_legacy_prefix(code[i]))
            code[i - 1] = code[i];
}

/*
 * Unicorn 2.0 (QEMU 5 TCG) behaviours that differ from the Intel SDM, all of
 * them here: the emulator follows the SDM, and uref_check() tolerates (and
 * counts) exactly the difference each rule describes, nothing else.
 *
 * UREF_DEV_CMPXCHG_RAX: SDM vol. 2A, CMPXCHG: "If the two values are equal,
 *   the second operand is loaded into the destination operand. Otherwise,
 *   the destination operand is loaded into AL, AX, EAX or RAX", so a
 *   successful 32-bit CMPXCHG in 64-bit code does not write EAX and keeps
 *   RAX[63:32]. QEMU writes EAX back in both cases, zero-extending RAX.
 *   Tolerated: RAX where Unicorn has the emulator's value zero-extended
 *   from 32 bits.
 * UREF_DEV_LOCK_NEG: SDM vol. 2B, NEG, Flags Affected: "The OF, SF, ZF, AF,
 *   and PF flags are set according to the result." QEMU's locked NEG
 *   computes SF, ZF and PF from the operand's old value (CF, OF, AF are
 *   right). Tolerated: SF, ZF, PF.
 * UREF_DEV_REX_IGNORED: SDM vol. 2A, 2.2.1: "the REX prefix byte must
 *   immediately precede the opcode byte or the escape opcode byte (0FH)
 *   ... Other placements are ignored." QEMU 5 applies a REX that is
 *   followed by legacy prefixes (66, 67, F0, F2, F3, segment overrides), so
 *   `48 67 0F C7 0E` becomes CMPXCHG16B instead of CMPXCHG8B. Handled by
 *   giving Unicorn the same instruction with each ignored REX replaced by a
 *   copy of the legacy prefix after it (same length, same meaning per the
 *   SDM); everything is then compared as usual.
 * UREF_DEV_TEST_ALIAS: F6 /1 and F7 /1. The SDM's opcode map leaves them
 *   undefined (vol. 2D, Table A-6, group 3: only /0 is TEST); Intel and
 *   AMD CPUs execute them as TEST, Capstone decodes them as TEST and the
 *   emulator runs them so (TEST only reads). QEMU raises #UD. Tolerated:
 *   Unicorn refusing; the case is skipped.
 * UREF_DEV_C6C7_REXR: SDM vol. 2A, 2.2.1.2: "REX.R modifies the ModR/M reg
 *   field when that field encodes a GPR, SSE, control or debug register.
 *   REX.R is ignored when ModR/M specifies other registers or defines an
 *   extended opcode." C6 /0 and C7 /0 (MOV r/m, imm) with REX.R are valid;
 *   QEMU raises #UD. Tolerated: Unicorn refusing with an invalid
 *   instruction; the case is skipped (test_emu_decode covers the decoding).
 */
static unsigned
uref_deviations(const struct pgm_insn *in, const uint8_t *code, unsigned len, unsigned bits)
{
    unsigned dev = 0;
    if (in->op == PGM_OP_CMPXCHG && in->size == 4 && bits == 64)
        dev |= 1u << UREF_DEV_CMPXCHG_RAX;
    if (in->op == PGM_OP_NEG && (in->prefixes & PGM_INSN_LOCK))
        dev |= 1u << UREF_DEV_LOCK_NEG;
    if (in->op == PGM_OP_MOV && in->src == PGM_SRC_IMM && (effective_rex(code, len, bits) & 4))
        dev |= 1u << UREF_DEV_C6C7_REXR;
    unsigned op = opcode_index(code, len, bits);
    if (in->op == PGM_OP_TEST && op + 1 < len && (code[op] & 0xfe) == 0xf6 &&
        ((code[op + 1] >> 3) & 7) == 1)
        dev |= 1u << UREF_DEV_TEST_ALIAS;
    if (has_ignored_rex(code, len, bits))
        dev |= 1u << UREF_DEV_REX_IGNORED;
    return dev;
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */

uint64_t
uref_defined_flags(unsigned op)
{
    switch (op) {
    case PGM_OP_AND: case PGM_OP_OR: case PGM_OP_XOR: case PGM_OP_TEST:
        return STATUS & ~PGM_RFLAGS_AF;
    case PGM_OP_BT: case PGM_OP_BTS: case PGM_OP_BTR: case PGM_OP_BTC:
        return PGM_RFLAGS_CF | PGM_RFLAGS_ZF;
    default:
        return STATUS;  /* MOV, XCHG, STOS, MOVS...: unchanged, defined too */
    }
}

uint64_t
uref_addr_limit(unsigned bits)
{
    /* 64-bit: no paging, physical addresses are cut to the model's width */
    return bits == 64 ? 1ull << 36 : 1ull << 32;
}

static uint64_t
code_la(const struct pgm_regs *r)
{
    return r->code_bits == 16 ? r->seg_base[PGM_CS] + r->rip : r->rip;
}

void
uref_normalise(struct pgm_regs *r)
{
    /* Then keep the code (16 bytes with the HLT after it) inside IP's
     * 64 KiB, below the address limit, and off the GDT page: a moved RIP is
     * simply part of the state both runs start from. */
    if (r->code_bits == 16) {
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++)
            r->seg_base[s] &= 0xffff0;
        r->rip &= 0xffff;
        if (r->rip > 0x10000 - 16)
            r->rip -= 16;
        return;
    }
    uint64_t limit = uref_addr_limit(r->code_bits);
    r->seg_base[PGM_CS] = 0;
    if (r->code_bits == 32)
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++)
            r->seg_base[s] &= 0xffffffff;
    r->rip &= limit - 1;
    if (r->code_bits == 32 && r->rip < 2 * UREF_GDT_LA && r->rip + 16 > UREF_GDT_LA)
        r->rip += 0x10000;
    if (r->rip + 16 > limit)
        r->rip -= 0x10000;
}

bool
uref_state_ok(const struct pgm_regs *r)
{
    uint64_t la = code_la(r);
    /* the instruction and a HLT after it: 16 bytes, inside IP's 64 KiB */
    if (r->code_bits == 16 && (r->rip + 16 > 0x10000 || (r->seg_base[PGM_CS] & ~0xffff0ull)))
        return false;
    if (r->code_bits != 16 && r->seg_base[PGM_CS] != 0)
        return false;
    if (la + 16 > uref_addr_limit(r->code_bits))
        return false;
    if (r->code_bits == 32 && ((la >> 12) == UREF_GDT_LA >> 12 ||
                               ((la + 16) >> 12) == UREF_GDT_LA >> 12))
        return false;
    return true;
}

void
uref_flat_init(struct flat *f, const struct pgm_regs *r, uint64_t seed)
{
    uint64_t la = code_la(r);
    flat_init(f, seed, uref_addr_limit(r->code_bits));
    flat_forbid(f, la >> 12);
    flat_forbid(f, (la + 16) >> 12);
    if (r->code_bits == 32)
        flat_forbid(f, UREF_GDT_LA >> 12);
}

/* ------------------------------------------------------------------------ */
/* Running                                                                   */

struct uref *
uref_open(unsigned bits)
{
    uc_mode mode = bits == 16 ? UC_MODE_16 : bits == 32 ? UC_MODE_32 : UC_MODE_64;
    struct uref *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    if (uc_open(UC_ARCH_X86, mode, &u->uc) != UC_ERR_OK) {
        free(u);
        return NULL;
    }
    if (uc_context_alloc(u->uc, &u->fresh) != UC_ERR_OK ||
        uc_context_save(u->uc, u->fresh) != UC_ERR_OK) {
        uref_close(u);
        return NULL;
    }
    u->bits = bits;
    return u;
}

void
uref_close(struct uref *u)
{
    if (!u)
        return;
    if (u->fresh)
        uc_context_free(u->fresh);
    uc_close(u->uc);
    free(u);
}

static uint64_t
uc_get(uc_engine *uc, int id)
{
    uint64_t v = 0;
    uc_reg_read(uc, id, &v);
    return v;
}

static uc_err
uc_set(uc_engine *uc, int id, uint64_t v)
{
    return uc_reg_write(uc, id, &v);
}

/* Undo what setup() mapped. */
static void
unmap_some(struct uref *u, const struct flat *mem, uint64_t code_page, unsigned code_pages,
           unsigned data_mapped, bool gdt)
{
    for (unsigned i = 0; i < data_mapped; i++)
        uc_mem_unmap(u->uc, mem->pages[i].pfn << 12, 4096);
    if (code_pages)
        uc_mem_unmap(u->uc, code_page, 4096u * code_pages);
    if (gdt)
        uc_mem_unmap(u->uc, UREF_GDT_LA, 4096);
}

static void
code_pages_of(const struct pgm_regs *r, uint64_t *page, unsigned *n)
{
    uint64_t la = code_la(r);
    *page = la & ~0xfffull;
    *n = ((la + 16) >> 12) != (la >> 12) ? 2 : 1;
}

/* Map code, data (and the GDT), load the registers; on failure undo. */
static int
setup(struct uref *u, const uint8_t *code, unsigned len, const struct pgm_regs *r,
      const struct flat *mem, char *why, size_t why_size)
{
    uc_engine *uc = u->uc;
    uint64_t la = code_la(r), code_page;
    unsigned code_pages, mapped = 0;
    bool gdt_mapped = false;
    uint8_t bytes[16];
    uc_err e;

    if (len < 1 || len > 15 || r->code_bits != u->bits) {
        snprintf(why, why_size, "bad arguments");
        return -1;
    }
    /* Start from the CPU state of a new engine: an exception Unicorn does
     * not deliver stays pending in QEMU (old_exception), so after two #GPs
     * a third exception becomes a triple fault, reported as a successful
     * run that executed nothing. */
    if ((e = uc_context_restore(uc, u->fresh)) != UC_ERR_OK) {
        snprintf(why, why_size, "uc_context_restore: %s", uc_strerror(e));
        return -1;
    }
    code_pages_of(r, &code_page, &code_pages);
    if ((e = uc_mem_map(uc, code_page, 4096u * code_pages, UC_PROT_ALL)) != UC_ERR_OK) {
        snprintf(why, why_size, "map code %#" PRIx64 ": %s", code_page, uc_strerror(e));
        return -1;
    }
    memcpy(bytes, code, len);
    bytes[len] = 0xf4;      /* hlt, in case Unicorn runs past `until` */
    uc_mem_write(uc, la, bytes, len + 1);
    for (; mapped < mem->npages; mapped++) {
        const struct flat_page *p = &mem->pages[mapped];
        if ((e = uc_mem_map(uc, p->pfn << 12, 4096, UC_PROT_ALL)) != UC_ERR_OK) {
            snprintf(why, why_size, "map data %#" PRIx64 ": %s", p->pfn << 12,
                     uc_strerror(e));
            goto fail;
        }
        uc_mem_write(uc, p->pfn << 12, p->init, 4096);
    }
    if (u->bits == 32) {
        if ((e = uc_mem_map(uc, UREF_GDT_LA, 4096, UC_PROT_ALL)) != UC_ERR_OK) {
            snprintf(why, why_size, "map GDT: %s", uc_strerror(e));
            goto fail;
        }
        gdt_mapped = true;
        uint8_t gdt[8 * 8] = { 0 };
        for (unsigned s = 0; s < PGM_SEG_COUNT; s++) {
            if (s == PGM_CS)
                continue;
            uint32_t base = (uint32_t)r->seg_base[s];
            uint8_t *d = gdt + 8 * (s + 1);
            d[0] = 0xff; d[1] = 0xff;               /* limit 15:0 */
            d[2] = (uint8_t)base; d[3] = (uint8_t)(base >> 8);
            d[4] = (uint8_t)(base >> 16);
            d[5] = 0x93;                            /* P, DPL 0, data RW, A */
            d[6] = 0xcf;                            /* G, D/B, limit 19:16 */
            d[7] = (uint8_t)(base >> 24);
        }
        uc_mem_write(uc, UREF_GDT_LA, gdt, sizeof(gdt));
        uc_x86_mmr gdtr = { .base = UREF_GDT_LA, .limit = sizeof(gdt) - 1 };
        e = uc_reg_write(uc, UC_X86_REG_GDTR, &gdtr);
        for (unsigned s = 0; e == UC_ERR_OK && s < PGM_SEG_COUNT; s++)
            if (s != PGM_CS)
                e = uc_set(uc, uc_seg[s], 8 * (s + 1));
    } else if (u->bits == 16) {
        /* real mode: loading a selector sets the base to selector << 4 */
        for (unsigned s = 0; e == UC_ERR_OK && s < PGM_SEG_COUNT; s++)
            e = uc_set(uc, uc_seg[s], r->seg_base[s] >> 4);
    } else {
        if ((e = uc_set(uc, UC_X86_REG_FS_BASE, r->seg_base[PGM_FS])) == UC_ERR_OK)
            e = uc_set(uc, UC_X86_REG_GS_BASE, r->seg_base[PGM_GS]);
    }
    for (unsigned i = 0; e == UC_ERR_OK && i < (u->bits == 64 ? 16u : 8u); i++)
        e = uc_set(uc, u->bits == 64 ? uc_gpr64[i] : uc_gpr32[i], r->gpr[i]);
    /* Only the status flags and DF: TF would raise #DB after the
     * instruction, VM would switch to virtual-8086 mode, and the emulator
     * only reads DF (uref_check() checks it leaves the other bits alone). */
    if (e == UC_ERR_OK)
        e = uc_set(uc, UC_X86_REG_EFLAGS, 0x2 | (r->rflags & (STATUS | PGM_RFLAGS_DF)));
    if (e != UC_ERR_OK) {
        snprintf(why, why_size, "register setup: %s", uc_strerror(e));
        goto fail;
    }
    uc_ctl_remove_cache(uc, la, la + 17);
    return 0;

fail:
    unmap_some(u, mem, code_page, code_pages, mapped, gdt_mapped);
    return -1;
}

static void
read_state(struct uref *u, struct uref_cpu *out)
{
    memset(out->gpr, 0, sizeof(out->gpr));
    for (unsigned i = 0; i < (u->bits == 64 ? 16u : 8u); i++)
        out->gpr[i] = uc_get(u->uc, u->bits == 64 ? uc_gpr64[i] : uc_gpr32[i]);
    out->rip = uc_get(u->uc, u->bits == 64 ? UC_X86_REG_RIP : UC_X86_REG_EIP);
    out->rflags = uc_get(u->uc, UC_X86_REG_EFLAGS);
}

/* Run with everything mapped (setup() done); the caller unmaps. */
static void
run_mapped(struct uref *u, unsigned len, const struct pgm_regs *r, struct uref_cpu *out)
{
    uint64_t la = code_la(r);
    out->err = uc_emu_start(u->uc, la, la + len, 0, 0);
    read_state(u, out);
}

static void
unmap_run(struct uref *u, const struct pgm_regs *r, const struct flat *mem)
{
    uint64_t code_page;
    unsigned code_pages;
    code_pages_of(r, &code_page, &code_pages);
    unmap_some(u, mem, code_page, code_pages, mem->npages, u->bits == 32);
}

int
uref_run(struct uref *u, const uint8_t *code, unsigned len, const struct pgm_regs *r,
         const struct flat *mem, struct uref_cpu *out, char *why, size_t why_size)
{
    if (setup(u, code, len, r, mem, why, why_size))
        return -1;
    run_mapped(u, len, r, out);
    unmap_run(u, r, mem);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Comparing                                                                 */

static void
count_dev(struct uref_stats *st, unsigned dev)
{
    if (st) {
        st->deviations++;
        st->dev[dev]++;
    }
}

int
uref_check(struct uref *u, const uint8_t *code, unsigned len, const struct pgm_insn *in,
           const struct pgm_regs *before, int emu_rc, const struct pgm_regs *after,
           const struct flat *mem, struct uref_stats *st, char *why, size_t why_size)
{
    unsigned bits = u->bits;
    unsigned ngpr = bits == 64 ? 16u : 8u;
    uint64_t rmask = bits == 64 ? ~0ull : 0xffffffffull;
    unsigned dev = uref_deviations(in, code, len, bits);
    struct uref_cpu uo;
    int verdict = UREF_MATCH;

    why[0] = 0;
    if (emu_rc != PGM_EMU_DONE && emu_rc != PGM_EMU_INJECT_GP) {
        snprintf(why, why_size, "emulator result %d is not comparable", emu_rc);
        return UREF_ERROR;
    }
    uint8_t bytes[16];
    memcpy(bytes, code, len < 16 ? len : 16);
    if (dev & (1u << UREF_DEV_REX_IGNORED)) {
        drop_ignored_rex(bytes, len, bits);
        count_dev(st, UREF_DEV_REX_IGNORED);
    }
    if (setup(u, bytes, len, before, mem, why, why_size))
        return UREF_ERROR;
    run_mapped(u, len, before, &uo);

    if (emu_rc == PGM_EMU_INJECT_GP) {
        /* Unicorn must refuse too, reporting the #GP as an exception */
        if (uo.err != UC_ERR_EXCEPTION) {
            snprintf(why, why_size, "emulator #GP, Unicorn: %s (rip %#" PRIx64 ")",
                     uc_strerror((uc_err)uo.err), uo.rip);
            verdict = UREF_MISMATCH;
        } else {
            verdict = UREF_GP_BOTH;
        }
    } else if (uo.err != UC_ERR_OK) {
        if ((dev & (1u << UREF_DEV_C6C7_REXR)) && uo.err == UC_ERR_INSN_INVALID) {
            count_dev(st, UREF_DEV_C6C7_REXR);
            verdict = UREF_SKIPPED;
        } else if ((dev & (1u << UREF_DEV_TEST_ALIAS)) && uo.err == UC_ERR_INSN_INVALID) {
            count_dev(st, UREF_DEV_TEST_ALIAS);
            verdict = UREF_SKIPPED;
        } else {
            snprintf(why, why_size, "Unicorn refused: %s", uc_strerror((uc_err)uo.err));
            verdict = UREF_MISMATCH;
        }
    }

    for (unsigned i = 0; verdict == UREF_MATCH && i < ngpr; i++) {
        uint64_t ev = after->gpr[i] & rmask, uv = uo.gpr[i] & rmask;
        if (ev == uv)
            continue;
        if ((dev & (1u << UREF_DEV_CMPXCHG_RAX)) && i == PGM_RAX && (ev & 0xffffffff) == uv) {
            count_dev(st, UREF_DEV_CMPXCHG_RAX);
            continue;
        }
        snprintf(why, why_size, "gpr %u: emu %#" PRIx64 " unicorn %#" PRIx64
                 " (was %#" PRIx64 ")", i, ev, uv, before->gpr[i]);
        verdict = UREF_MISMATCH;
    }
    if (verdict == UREF_MATCH && (after->rip & rmask) != (uo.rip & rmask)) {
        snprintf(why, why_size, "rip: emu %#" PRIx64 " unicorn %#" PRIx64, after->rip, uo.rip);
        verdict = UREF_MISMATCH;
    }
    if (verdict == UREF_MATCH && ((after->rflags ^ before->rflags) & ~STATUS)) {
        snprintf(why, why_size, "flags: emu %#" PRIx64 " changed bits outside OF SF ZF AF PF "
                 "CF (was %#" PRIx64 ")", after->rflags, before->rflags);
        verdict = UREF_MISMATCH;
    }
    uint64_t fmask = uref_defined_flags(in->op) | PGM_RFLAGS_DF;
    uint64_t fdiff = after->rflags ^ uo.rflags;
    if (verdict == UREF_MATCH && (dev & (1u << UREF_DEV_LOCK_NEG))) {
        uint64_t quirk = PGM_RFLAGS_SF | PGM_RFLAGS_ZF | PGM_RFLAGS_PF;
        if (fdiff & quirk)
            count_dev(st, UREF_DEV_LOCK_NEG);
        fdiff &= ~quirk;
    }
    if (verdict == UREF_MATCH && (fdiff & fmask)) {
        snprintf(why, why_size, "flags: emu %#" PRIx64 " unicorn %#" PRIx64
                 " (was %#" PRIx64 ")", after->rflags, uo.rflags, before->rflags);
        verdict = UREF_MISMATCH;
    }
    if (verdict == UREF_MATCH && (fdiff & STATUS & ~fmask) && st)
        st->undefined_diff++;
    for (unsigned i = 0; verdict > 0 && i < mem->npages; i++) {
        const struct flat_page *p = &mem->pages[i];
        uc_mem_read(u->uc, p->pfn << 12, u->page, 4096);
        if (memcmp(u->page, p->data, 4096)) {
            unsigned k = 0;
            while (u->page[k] == p->data[k])
                k++;
            snprintf(why, why_size, "memory %#" PRIx64 ": emu %02x unicorn %02x (was %02x)",
                     (p->pfn << 12) + k, p->data[k], u->page[k], p->init[k]);
            verdict = UREF_MISMATCH;
        }
    }
    unmap_run(u, before, mem);
    if (st && verdict > 0) {
        st->compared++;
        if (verdict == UREF_GP_BOTH)
            st->gp++;
    }
    return verdict;
}

void
uref_print_case(FILE *out, const char *label, const uint8_t *code, unsigned len,
                const struct pgm_insn *in, const struct pgm_regs *r,
                const struct flat *mem, const char *why)
{
    char hex[2 * 16 + 1] = "";
    for (unsigned i = 0; i < len && i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", code[i]);
    fprintf(out, "# %u-bit %s [%s] '%s' at %#" PRIx64 ": %s\n", r->code_bits,
            label ? label : "", hex, in ? in->mnemonic : "", code_la(r), why);
    fprintf(out, "#   regs:");
    for (unsigned i = 0; i < PGM_GPR_COUNT; i++)
        fprintf(out, " %" PRIx64, r->gpr[i]);
    fprintf(out, " fl %" PRIx64 "\n#   seg bases:", r->rflags);
    for (unsigned s = 0; s < PGM_SEG_COUNT; s++)
        fprintf(out, " %" PRIx64, r->seg_base[s]);
    fprintf(out, "\n");
    uint64_t la;
    if (in && mem && pgm_emu_operand_address(in, r, &la) == 0) {
        fprintf(out, "#   operand at %#" PRIx64 ":", la);
        const struct flat_page *p = flat_find(mem, la >> 12);
        for (unsigned k = 0; p && k < 8 && (la & 4095) + k < 4096; k++)
            fprintf(out, " %02x", p->init[(la & 4095) + k]);
        fprintf(out, "\n");
    }
}
