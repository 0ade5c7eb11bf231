/* SPDX-License-Identifier: MIT */
/*
 * The instruction decoder, on Capstone. This is the only file that includes
 * a Capstone header: everything else consumes `struct pgm_insn` (decode.h),
 * so another decoder can replace this one without touching the emulator.
 *
 * Trust model. Capstone decides what the instruction is (its id, length and
 * operands). What matters for the guest is re-derived or cross-checked here:
 *  - the legacy prefixes and REX are scanned from the bytes ourselves (for
 *    prefixes of one group only the last counts, as on the CPU; a REX that
 *    is not directly before the opcode is ignored), because Capstone keeps
 *    one byte per group and would lose a LOCK followed by a REP;
 *  - immediates are read from the encoding bytes and sign-extended from
 *    their encoded width, as the CPU does (Capstone 4 varies in how it
 *    reports them);
 *  - operand widths are checked against each other per operation, and any
 *    surprise (an unknown register, a second memory operand, a width that
 *    cannot be) refuses the instruction instead of guessing;
 *  - Capstone's `access` flags are never used (several 4.x releases mislabel
 *    them); the operation fixes which operand is read or written.
 *
 * Handles. cs_open() allocates, so each thread keeps one handle per code
 * size plus one cs_insn buffer (cs_malloc), created on first use and closed
 * by a thread-specific-data destructor when the thread exits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <capstone/capstone.h>

#include "src/emu/decode.h"

#if CS_API_MAJOR != 4
#error "decode_capstone.c is written against the Capstone 4 API"
#endif

/* ---- per-thread Capstone handles ---- */

struct decoder {
    csh handle[3];          /* 16-, 32-, 64-bit code */
    cs_insn *insn[3];
    bool open[3];
};

static pthread_key_t decoder_key;
static pthread_once_t decoder_once = PTHREAD_ONCE_INIT;
static int decoder_key_err;

static void
decoder_free(void *p)
{
    struct decoder *d = p;
    for (int i = 0; i < 3; i++) {
        if (!d->open[i])
            continue;
        cs_free(d->insn[i], 1);
        cs_close(&d->handle[i]);
    }
    free(d);
}

static void
decoder_key_create(void)
{
    decoder_key_err = pthread_key_create(&decoder_key, decoder_free);
}

/* The calling thread's handle for `code_bits`, opened on first use. */
static int
decoder_get(unsigned code_bits, csh *h, cs_insn **insn)
{
    pthread_once(&decoder_once, decoder_key_create);
    if (decoder_key_err)
        return -ENOMEM;
    struct decoder *d = pthread_getspecific(decoder_key);
    if (!d) {
        d = calloc(1, sizeof(*d));
        if (!d)
            return -ENOMEM;
        if (pthread_setspecific(decoder_key, d)) {
            free(d);
            return -ENOMEM;
        }
    }
    int i = code_bits == 16 ? 0 : code_bits == 32 ? 1 : 2;
    if (!d->open[i]) {
        cs_mode mode = i == 0 ? CS_MODE_16 : i == 1 ? CS_MODE_32 : CS_MODE_64;
        if (cs_open(CS_ARCH_X86, mode, &d->handle[i]) != CS_ERR_OK)
            return -ENOMEM;
        if (cs_option(d->handle[i], CS_OPT_DETAIL, CS_OPT_ON) != CS_ERR_OK ||
            !(d->insn[i] = cs_malloc(d->handle[i]))) {
            cs_close(&d->handle[i]);
            return -ENOMEM;
        }
        d->open[i] = true;
    }
    *h = d->handle[i];
    *insn = d->insn[i];
    return 0;
}

/* ---- registers ---- */

struct reg_info {
    uint8_t gpr;        /* enum pgm_gpr */
    uint8_t size;       /* bytes */
    bool high8;
};

/* Map a Capstone general-purpose register; false for anything else. */
static bool
reg_lookup(x86_reg r, struct reg_info *ri)
{
    static const x86_reg r64[16] = {
        X86_REG_RAX, X86_REG_RCX, X86_REG_RDX, X86_REG_RBX,
        X86_REG_RSP, X86_REG_RBP, X86_REG_RSI, X86_REG_RDI,
        X86_REG_R8, X86_REG_R9, X86_REG_R10, X86_REG_R11,
        X86_REG_R12, X86_REG_R13, X86_REG_R14, X86_REG_R15,
    };
    static const x86_reg r32[16] = {
        X86_REG_EAX, X86_REG_ECX, X86_REG_EDX, X86_REG_EBX,
        X86_REG_ESP, X86_REG_EBP, X86_REG_ESI, X86_REG_EDI,
        X86_REG_R8D, X86_REG_R9D, X86_REG_R10D, X86_REG_R11D,
        X86_REG_R12D, X86_REG_R13D, X86_REG_R14D, X86_REG_R15D,
    };
    static const x86_reg r16[16] = {
        X86_REG_AX, X86_REG_CX, X86_REG_DX, X86_REG_BX,
        X86_REG_SP, X86_REG_BP, X86_REG_SI, X86_REG_DI,
        X86_REG_R8W, X86_REG_R9W, X86_REG_R10W, X86_REG_R11W,
        X86_REG_R12W, X86_REG_R13W, X86_REG_R14W, X86_REG_R15W,
    };
    static const x86_reg r8[16] = {
        X86_REG_AL, X86_REG_CL, X86_REG_DL, X86_REG_BL,
        X86_REG_SPL, X86_REG_BPL, X86_REG_SIL, X86_REG_DIL,
        X86_REG_R8B, X86_REG_R9B, X86_REG_R10B, X86_REG_R11B,
        X86_REG_R12B, X86_REG_R13B, X86_REG_R14B, X86_REG_R15B,
    };
    static const x86_reg r8h[4] = {
        X86_REG_AH, X86_REG_CH, X86_REG_DH, X86_REG_BH,
    };
    if (r == X86_REG_INVALID)
        return false;
    for (uint8_t i = 0; i < 16; i++) {
        uint8_t size = r == r64[i] ? 8 : r == r32[i] ? 4 : r == r16[i] ? 2 :
                       r == r8[i] ? 1 : 0;
        if (size) {
            *ri = (struct reg_info){ .gpr = i, .size = size, .high8 = false };
            return true;
        }
    }
    for (uint8_t i = 0; i < 4; i++) {
        if (r == r8h[i]) {
            *ri = (struct reg_info){ .gpr = i, .size = 1, .high8 = true };
            return true;
        }
    }
    return false;
}

/* Capstone segment register -> enum pgm_seg, or -1. */
static int
seg_lookup(x86_reg r)
{
    switch (r) {
    case X86_REG_ES: return PGM_ES;
    case X86_REG_CS: return PGM_CS;
    case X86_REG_SS: return PGM_SS;
    case X86_REG_DS: return PGM_DS;
    case X86_REG_FS: return PGM_FS;
    case X86_REG_GS: return PGM_GS;
    default: return -1;
    }
}

/* ---- prefixes, scanned from the bytes ---- */

struct prefix_scan {
    uint16_t flags;     /* PGM_INSN_* */
    int seg;            /* last segment override, or -1 */
    uint8_t rex;        /* effective REX (directly before the opcode), or 0 */
    unsigned count;     /* prefix bytes, REX included */
};

static void
scan_prefixes(const uint8_t *b, size_t n, unsigned code_bits, struct prefix_scan *p)
{
    *p = (struct prefix_scan){ .seg = -1 };
    size_t i = 0;
    for (; i < n; i++) {
        uint8_t c = b[i];
        bool legacy = true;
        switch (c) {
        case 0xf0: p->flags |= PGM_INSN_LOCK; break;
        /* group 1: the last of F2 / F3 is the one that counts */
        case 0xf2: p->flags = (p->flags & ~PGM_INSN_REP) | PGM_INSN_REPNE; break;
        case 0xf3: p->flags = (p->flags & ~PGM_INSN_REPNE) | PGM_INSN_REP; break;
        case 0x26: p->seg = PGM_ES; break;
        case 0x2e: p->seg = PGM_CS; break;
        case 0x36: p->seg = PGM_SS; break;
        case 0x3e: p->seg = PGM_DS; break;
        case 0x64: p->seg = PGM_FS; break;
        case 0x65: p->seg = PGM_GS; break;
        case 0x66: p->flags |= PGM_INSN_OPSIZE; break;
        case 0x67: p->flags |= PGM_INSN_ADDRSIZE; break;
        default: legacy = false; break;
        }
        if (legacy) {
            p->rex = 0;     /* a REX followed by a legacy prefix is ignored */
            continue;
        }
        if (code_bits == 64 && (c & 0xf0) == 0x40) {
            p->rex = c;
            continue;
        }
        break;
    }
    p->count = (unsigned)i;
    if (p->seg >= 0)
        p->flags |= PGM_INSN_SEGOVR;
    if (p->rex)
        p->flags |= PGM_INSN_REX;
    if (p->rex & 0x08)
        p->flags |= PGM_INSN_REXW;
}

/* ---- the allow-list ---- */

static const char *const op_names[PGM_OP_COUNT] = {
    [PGM_OP_NONE] = "none",
    [PGM_OP_MOV] = "mov", [PGM_OP_MOVZX] = "movzx", [PGM_OP_MOVSX] = "movsx",
    [PGM_OP_XCHG] = "xchg", [PGM_OP_CMPXCHG] = "cmpxchg",
    [PGM_OP_CMPXCHG8B] = "cmpxchg8b",
    [PGM_OP_ADD] = "add", [PGM_OP_OR] = "or", [PGM_OP_ADC] = "adc",
    [PGM_OP_SBB] = "sbb", [PGM_OP_AND] = "and", [PGM_OP_SUB] = "sub",
    [PGM_OP_XOR] = "xor", [PGM_OP_CMP] = "cmp", [PGM_OP_TEST] = "test",
    [PGM_OP_INC] = "inc", [PGM_OP_DEC] = "dec", [PGM_OP_NOT] = "not",
    [PGM_OP_NEG] = "neg",
    [PGM_OP_BT] = "bt", [PGM_OP_BTS] = "bts", [PGM_OP_BTR] = "btr",
    [PGM_OP_BTC] = "btc",
    [PGM_OP_STOS] = "stos", [PGM_OP_MOVS] = "movs",
};

const char *
pgm_insn_op_name(unsigned op)
{
    return op < PGM_OP_COUNT ? op_names[op] : "?";
}

/* Capstone id -> operation (string widths come from the opcode byte). */
static enum pgm_insn_op
op_from_id(unsigned id, const uint8_t *opcode)
{
    switch (id) {
    case X86_INS_MOV:
    case X86_INS_MOVABS: return PGM_OP_MOV;
    case X86_INS_MOVZX: return PGM_OP_MOVZX;
    case X86_INS_MOVSX:
    case X86_INS_MOVSXD: return PGM_OP_MOVSX;
    case X86_INS_XCHG: return PGM_OP_XCHG;
    case X86_INS_CMPXCHG: return PGM_OP_CMPXCHG;
    case X86_INS_CMPXCHG8B:
    case X86_INS_CMPXCHG16B: return PGM_OP_CMPXCHG8B;
    case X86_INS_ADD: return PGM_OP_ADD;
    case X86_INS_OR: return PGM_OP_OR;
    case X86_INS_ADC: return PGM_OP_ADC;
    case X86_INS_SBB: return PGM_OP_SBB;
    case X86_INS_AND: return PGM_OP_AND;
    case X86_INS_SUB: return PGM_OP_SUB;
    case X86_INS_XOR: return PGM_OP_XOR;
    case X86_INS_CMP: return PGM_OP_CMP;
    case X86_INS_TEST: return PGM_OP_TEST;
    case X86_INS_INC: return PGM_OP_INC;
    case X86_INS_DEC: return PGM_OP_DEC;
    case X86_INS_NOT: return PGM_OP_NOT;
    case X86_INS_NEG: return PGM_OP_NEG;
    case X86_INS_BT: return PGM_OP_BT;
    case X86_INS_BTS: return PGM_OP_BTS;
    case X86_INS_BTR: return PGM_OP_BTR;
    case X86_INS_BTC: return PGM_OP_BTC;
    default: break;
    }
    /* String forms: one-byte opcodes AA/AB (STOS), A4/A5 (MOVS). The SSE
     * MOVSD (F2 0F 10/11) shares Capstone's id, hence the opcode check. */
    switch (opcode[0]) {
    case 0xaa:
    case 0xab:
        if (id == X86_INS_STOSB || id == X86_INS_STOSW ||
            id == X86_INS_STOSD || id == X86_INS_STOSQ)
            return PGM_OP_STOS;
        break;
    case 0xa4:
    case 0xa5:
        if (id == X86_INS_MOVSB || id == X86_INS_MOVSW ||
            id == X86_INS_MOVSD || id == X86_INS_MOVSQ)
            return PGM_OP_MOVS;
        break;
    default:
        break;
    }
    return PGM_OP_NONE;
}

/* Operations that accept LOCK (with a memory destination). */
static bool
op_lockable(enum pgm_insn_op op)
{
    switch (op) {
    case PGM_OP_ADD: case PGM_OP_OR: case PGM_OP_ADC: case PGM_OP_SBB:
    case PGM_OP_AND: case PGM_OP_SUB: case PGM_OP_XOR:
    case PGM_OP_INC: case PGM_OP_DEC: case PGM_OP_NOT: case PGM_OP_NEG:
    case PGM_OP_XCHG: case PGM_OP_CMPXCHG: case PGM_OP_CMPXCHG8B:
    case PGM_OP_BTS: case PGM_OP_BTR: case PGM_OP_BTC:
        return true;
    default:
        return false;
    }
}

static bool
valid_width(unsigned size)
{
    return size == 1 || size == 2 || size == 4 || size == 8;
}

/* Fill `out->mem` from a Capstone memory operand. */
static int
decode_mem(const cs_x86 *x, const cs_x86_op *op, const struct prefix_scan *ps,
           struct pgm_insn *out)
{
    struct pgm_insn_mem *m = &out->mem;
    struct reg_info ri;
    m->base = m->index = PGM_INSN_NOREG;
    m->scale = 1;
    m->addr_bits = (uint8_t)(x->addr_size * 8);
    m->disp = op->mem.disp;
    m->rip_rel = false;
    if (m->addr_bits != 16 && m->addr_bits != 32 && m->addr_bits != 64)
        return PGM_DECODE_UNSUPPORTED;

    bool stack = false;
    if (op->mem.base == X86_REG_RIP || op->mem.base == X86_REG_EIP) {
        if (out->code_bits != 64)
            return PGM_DECODE_UNSUPPORTED;
        m->rip_rel = true;
    } else if (op->mem.base != X86_REG_INVALID) {
        if (!reg_lookup(op->mem.base, &ri) || ri.high8 || ri.size == 1 ||
            ri.size != x->addr_size)
            return PGM_DECODE_UNSUPPORTED;
        m->base = ri.gpr;
        stack = ri.gpr == PGM_RSP || ri.gpr == PGM_RBP;
    }
    if (op->mem.index != X86_REG_INVALID && op->mem.index != X86_REG_EIZ &&
        op->mem.index != X86_REG_RIZ) {
        if (!reg_lookup(op->mem.index, &ri) || ri.high8 || ri.size == 1 ||
            ri.size != x->addr_size || m->rip_rel)
            return PGM_DECODE_UNSUPPORTED;
        if (op->mem.scale != 1 && op->mem.scale != 2 && op->mem.scale != 4 &&
            op->mem.scale != 8)
            return PGM_DECODE_UNSUPPORTED;
        m->index = ri.gpr;
        m->scale = (uint8_t)op->mem.scale;
    }

    /* The segment: Capstone's view must agree with the scanned prefixes. */
    int cs_seg = seg_lookup(op->mem.segment);
    if (ps->seg >= 0) {
        if (cs_seg >= 0 && cs_seg != ps->seg)
            return PGM_DECODE_UNSUPPORTED;
        m->seg = (uint8_t)ps->seg;
    } else if (cs_seg >= 0) {
        /* only string destinations name ES without a prefix */
        if (!(out->op == PGM_OP_STOS || out->op == PGM_OP_MOVS))
            return PGM_DECODE_UNSUPPORTED;
        m->seg = (uint8_t)cs_seg;
    } else {
        m->seg = stack ? PGM_SS : PGM_DS;
    }
    return PGM_DECODE_OK;
}

/*
 * The immediate, from the encoding bytes, sign-extended from its width. In
 * every allow-listed form the immediate is the last field, so its width is
 * the length minus its offset: Capstone 4.0.2 sometimes reports a wrong
 * imm_size (4 for an imm16 after 66 F2) while its length is right. A 16- or
 * 32-bit immediate must match the operand size (`osize`).
 */
static int
decode_imm(const uint8_t *bytes, unsigned len, const cs_x86 *x, unsigned osize,
           int64_t *imm)
{
    unsigned off = x->encoding.imm_offset;
    if (!off || off >= len)
        return PGM_DECODE_UNSUPPORTED;
    unsigned size = len - off;
    if (size != 1 && size != (osize == 2 ? 2u : 4u))
        return PGM_DECODE_UNSUPPORTED;
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)bytes[off + i] << (8 * i);
    uint64_t sign = 1ull << (size * 8 - 1);
    v = (v ^ sign) - sign;
    memcpy(imm, &v, sizeof(v));
    return PGM_DECODE_OK;
}

/*
 * Check operand widths and sources per operation. `mem_size` is the memory
 * operand's width as Capstone reports it.
 */
static int
check_forms(struct pgm_insn *out)
{
    switch (out->op) {
    case PGM_OP_MOVZX:
    case PGM_OP_MOVSX:
        if (out->src != PGM_SRC_REG || out->mem_is_dest)
            return PGM_DECODE_UNSUPPORTED;
        if (out->size > out->reg_size || out->size > 4 || out->reg_size < 2)
            return PGM_DECODE_UNSUPPORTED;
        return PGM_DECODE_OK;
    case PGM_OP_CMPXCHG8B:
        if (out->src != PGM_SRC_NONE)
            return PGM_DECODE_UNSUPPORTED;
        if (out->size == 16 ? !(out->prefixes & PGM_INSN_REXW) : out->size != 8)
            return PGM_DECODE_UNSUPPORTED;
        return PGM_DECODE_OK;
    case PGM_OP_INC:
    case PGM_OP_DEC:
    case PGM_OP_NOT:
    case PGM_OP_NEG:
        return out->src == PGM_SRC_NONE ? PGM_DECODE_OK : PGM_DECODE_UNSUPPORTED;
    case PGM_OP_XCHG:
    case PGM_OP_CMPXCHG:
        if (out->src != PGM_SRC_REG)
            return PGM_DECODE_UNSUPPORTED;
        out->mem_is_dest = true;    /* XCHG is symmetric; CMPXCHG always is */
        break;
    case PGM_OP_BT:
    case PGM_OP_BTS:
    case PGM_OP_BTR:
    case PGM_OP_BTC:
        if (out->size == 1 || !out->mem_is_dest)
            return PGM_DECODE_UNSUPPORTED;
        if (out->src == PGM_SRC_IMM)
            return PGM_DECODE_OK;
        break;
    case PGM_OP_MOV:
    case PGM_OP_ADD: case PGM_OP_OR: case PGM_OP_ADC: case PGM_OP_SBB:
    case PGM_OP_AND: case PGM_OP_SUB: case PGM_OP_XOR: case PGM_OP_CMP:
    case PGM_OP_TEST:
        if (out->src == PGM_SRC_IMM)
            return out->mem_is_dest ? PGM_DECODE_OK : PGM_DECODE_UNSUPPORTED;
        break;
    default:
        return PGM_DECODE_UNSUPPORTED;
    }
    /* reg forms: the register is as wide as the memory operand */
    if (out->src != PGM_SRC_REG || out->reg_size != out->size)
        return PGM_DECODE_UNSUPPORTED;
    return PGM_DECODE_OK;
}

static int
decode_string(const cs_x86 *x, const struct prefix_scan *ps, uint8_t width,
              struct pgm_insn *out)
{
    struct pgm_insn_mem *m = &out->mem;
    m->addr_bits = (uint8_t)(x->addr_size * 8);
    if (m->addr_bits != 16 && m->addr_bits != 32 && m->addr_bits != 64)
        return PGM_DECODE_UNSUPPORTED;
    m->index = PGM_INSN_NOREG;
    m->scale = 1;
    m->disp = 0;
    m->rip_rel = false;
    if (out->op == PGM_OP_STOS) {
        m->seg = PGM_ES;            /* not overridable */
        m->base = PGM_RDI;
    } else {
        m->seg = ps->seg >= 0 ? (uint8_t)ps->seg : PGM_DS;
        m->base = PGM_RSI;
    }
    out->size = width;
    out->mem_is_dest = out->op == PGM_OP_STOS;
    out->src = PGM_SRC_NONE;
    return PGM_DECODE_OK;
}

/* "mnemonic operands", cut to fit (diagnostics only). */
static void
describe(const char *mnemonic, const char *ops, char *dst, size_t cap)
{
    size_t k = 0;
    for (const char *p = mnemonic; *p && k + 1 < cap; p++)
        dst[k++] = *p;
    if (*ops && k + 1 < cap)
        dst[k++] = ' ';
    for (const char *p = ops; *p && k + 1 < cap; p++)
        dst[k++] = *p;
    dst[k] = 0;
}

int
pgm_decode_insn(const uint8_t *bytes, size_t n, unsigned code_bits,
                struct pgm_insn *out)
{
    if (!bytes || !out || (code_bits != 16 && code_bits != 32 && code_bits != 64))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->code_bits = (uint8_t)code_bits;
    out->mem.base = out->mem.index = PGM_INSN_NOREG;
    if (n > PGM_INSN_MAX_LEN)
        n = PGM_INSN_MAX_LEN;
    if (n == 0)
        return PGM_DECODE_INVALID;

    csh h;
    cs_insn *ci;
    int rc = decoder_get(code_bits, &h, &ci);
    if (rc < 0)
        return rc;
    const uint8_t *code = bytes;
    size_t left = n;
    uint64_t addr = 0;
    if (!cs_disasm_iter(h, &code, &left, &addr, ci))
        return PGM_DECODE_INVALID;
    if (ci->size == 0 || ci->size > n)
        return PGM_DECODE_INVALID;
    out->len = (uint8_t)ci->size;
    describe(ci->mnemonic, ci->op_str, out->mnemonic, sizeof(out->mnemonic));

    const cs_x86 *x = &ci->detail->x86;
    struct prefix_scan ps;
    scan_prefixes(bytes, out->len, code_bits, &ps);
    out->prefixes = ps.flags;
    if (ps.count >= out->len)
        return PGM_DECODE_INVALID;
    /* Capstone must have seen the same REX (it reports none outside 64-bit) */
    if (code_bits == 64 && x->rex != ps.rex)
        return PGM_DECODE_UNSUPPORTED;

    /* Operand and address size from the prefixes: Capstone 4.0.2 drops a
     * 66 that comes before F2/F3 (it takes it for a mandatory prefix) and
     * then reports the wrong width, so widths are ours. */
    unsigned osize = (ps.flags & PGM_INSN_REXW) ? 8 :
                     ((code_bits == 16) != !!(ps.flags & PGM_INSN_OPSIZE)) ? 2 : 4;
    unsigned abits = code_bits == 64 ? ((ps.flags & PGM_INSN_ADDRSIZE) ? 32 : 64) :
                     ((code_bits == 16) != !!(ps.flags & PGM_INSN_ADDRSIZE)) ? 16 : 32;
    if (x->addr_size * 8u != abits)
        return PGM_DECODE_UNSUPPORTED;

    enum pgm_insn_op op = op_from_id(ci->id, x->opcode);
    if (op == PGM_OP_NONE)
        return PGM_DECODE_UNSUPPORTED;
    out->op = (uint8_t)op;

    if (op == PGM_OP_STOS || op == PGM_OP_MOVS) {
        if (ps.flags & PGM_INSN_LOCK)
            return PGM_DECODE_INVALID;      /* #UD */
        rc = decode_string(x, &ps, (x->opcode[0] & 1) ? (uint8_t)osize : 1, out);
        if (rc != PGM_DECODE_OK)
            out->op = PGM_OP_NONE;
        return rc;
    }

    /* Operands: exactly one memory operand, at most one register or
     * immediate besides it. Capstone lists the destination first. */
    const cs_x86_op *mem = NULL, *other = NULL;
    int mem_pos = -1;
    for (int i = 0; i < x->op_count; i++) {
        const cs_x86_op *o = &x->operands[i];
        if (o->type == X86_OP_MEM) {
            if (mem)
                goto unsupported;
            mem = o;
            mem_pos = i;
        } else if (o->type == X86_OP_REG || o->type == X86_OP_IMM) {
            if (other)
                goto unsupported;
            other = o;
        } else {
            goto unsupported;
        }
    }
    if (!mem)
        goto unsupported;
    out->mem_is_dest = mem_pos == 0;
    out->size = mem->size;
    if (!(valid_width(out->size) || (op == PGM_OP_CMPXCHG8B && out->size == 16)))
        goto unsupported;
    if (decode_mem(x, mem, &ps, out) != PGM_DECODE_OK)
        goto unsupported;

    if (other && other->type == X86_OP_REG) {
        struct reg_info ri;
        if (!reg_lookup(other->reg, &ri))
            goto unsupported;
        /* AH..BH cannot be encoded with a REX prefix */
        if (ri.high8 && ps.rex)
            goto unsupported;
        out->src = PGM_SRC_REG;
        out->reg.gpr = ri.gpr;
        out->reg.high8 = ri.high8;
        out->reg_size = ri.size;
    } else if (other) {
        out->src = PGM_SRC_IMM;
        if (decode_imm(bytes, out->len, x, osize, &out->imm) != PGM_DECODE_OK)
            goto unsupported;
    }
    /* Widths that follow the operand-size attribute are ours (see osize);
     * Capstone is trusted only to tell byte forms (size 1) from the rest. */
    switch (op) {
    case PGM_OP_MOVZX:
    case PGM_OP_MOVSX:
        if (out->src == PGM_SRC_REG && ci->id != X86_INS_MOVSXD)
            out->reg_size = (uint8_t)osize;
        break;
    case PGM_OP_CMPXCHG8B:
        break;
    default:
        if (out->size != 1)
            out->size = (uint8_t)osize;
        if (out->src == PGM_SRC_REG && out->reg_size != 1)
            out->reg_size = (uint8_t)osize;
        break;
    }
    /* Capstone 4 reports MOVSXD's destination as 64-bit even without
     * REX.W; the width follows REX.W. Without it (a plain 32-bit move, or a
     * 16-bit one with 66) only the 32-bit form is accepted. */
    if (ci->id == X86_INS_MOVSXD) {
        if (ps.flags & PGM_INSN_REXW)
            out->reg_size = 8;
        else if (ps.flags & PGM_INSN_OPSIZE)
            goto unsupported;
        else
            out->reg_size = 4;
        if (out->size != 4)
            goto unsupported;
    }
    if (check_forms(out) != PGM_DECODE_OK)
        goto unsupported;

    if ((ps.flags & PGM_INSN_LOCK) && !(op_lockable(op) && out->mem_is_dest)) {
        out->op = PGM_OP_NONE;
        return PGM_DECODE_INVALID;          /* the CPU raises #UD */
    }
    return PGM_DECODE_OK;

unsupported:
    out->op = PGM_OP_NONE;
    return PGM_DECODE_UNSUPPORTED;
}
