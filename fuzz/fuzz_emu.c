/* SPDX-License-Identifier: MIT */
/*
 * fuzz_emu: random instruction bytes, code size and register state through
 * the decoder and the emulator. Neither may crash, hang or read outside its
 * buffers, and the emulator's contract must hold on every path:
 *  - a decoder OK result keeps decode.h's invariants;
 *  - PGM_EMU_DONE advances RIP by the instruction length (non-REP) or leaves
 *    rCX = 0 (REP);
 *  - a fault from a memory callback comes back unchanged, and (outside REP
 *    string instructions, which commit per iteration) leaves the registers
 *    exactly as they were;
 *  - PGM_EMU_AGAIN leaves RIP on the instruction; re-entering finishes.
 * A violation aborts, which the fuzzer reports as a crash.
 *
 * With Unicorn (PGM_HAVE_UNICORN, tests/emuref/unicorn_ref.h) the target is
 * also differential: when the instruction decoded OK and the run above
 * ended in PGM_EMU_DONE or PGM_EMU_INJECT_GP (no injected fault), it runs
 * again from the same registers, made representable for the reference
 * (uref_normalise(): real-mode segment bases in 16-bit code, flat CS, RIP
 * below 2^36), over a flat memory whose pages hold the input's tail bytes,
 * and Unicorn runs it from that state: every GPR, RIP, the defined flags and
 * every touched byte must agree, with the unit test's rules (an address
 * Unicorn cannot map is skipped; Unicorn's known SDM deviations are
 * tolerated, see uref_deviations()). One engine per code size, reused.
 *
 * Input layout (short inputs are padded with zeros):
 *   0      code size (% 3: 16, 32, 64)
 *   1      bit 0: no cmpxchg callback; bits 7:1: REP bound per call (+1)
 *   2      fault selector: access number N % 8 faults when bit 3 is set
 *   3..17  instruction bytes (15)
 *   18..   GPRs (16 x 8), RFLAGS (8), segment bases (6 x 8)
 *   202..  memory of the differential run: byte la is tail[la % length]
 *          (no tail: a pattern seeded from the input's first 202 bytes)
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/emu/emu.h"

#ifdef PGM_HAVE_UNICORN
#include <stdio.h>

#include "tests/emuref/flat_mem.h"
#include "tests/emuref/unicorn_ref.h"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAULT_CODE (-4242)
#define WINDOW 65536u

struct fmem {
    uint8_t window[WINDOW];
    unsigned accesses;
    int fault_at;
};

static struct fmem fm;

static uint8_t *
at(uint64_t la)
{
    return &fm.window[(la ^ (la >> 16) ^ (la >> 32)) % WINDOW];
}

static int
access_check(unsigned size)
{
    if (size != 1 && size != 2 && size != 4 && size != 8 && size != 16)
        abort();
    if (fm.fault_at >= 0 && fm.accesses == (unsigned)fm.fault_at)
        return FAULT_CODE;
    fm.accesses++;
    return 0;
}

static int
f_read(void *ctx, uint64_t la, void *buf, unsigned size)
{
    (void)ctx;
    int rc = access_check(size);
    for (unsigned i = 0; !rc && i < size; i++)
        ((uint8_t *)buf)[i] = *at(la + i);
    return rc;
}

static int
f_write(void *ctx, uint64_t la, const void *buf, unsigned size)
{
    (void)ctx;
    int rc = access_check(size);
    for (unsigned i = 0; !rc && i < size; i++)
        *at(la + i) = ((const uint8_t *)buf)[i];
    return rc;
}

static int
f_cmpxchg(void *ctx, uint64_t la, void *expected, const void *desired, unsigned size)
{
    (void)ctx;
    int rc = access_check(size);
    if (rc)
        return rc;
    uint8_t cur[16];
    for (unsigned i = 0; i < size; i++)
        cur[i] = *at(la + i);
    if (memcmp(cur, expected, size)) {
        memcpy(expected, cur, size);
        return 0;
    }
    for (unsigned i = 0; i < size; i++)
        *at(la + i) = ((const uint8_t *)desired)[i];
    return 0;
}

static uint64_t
get(const uint8_t *d, size_t size, size_t off, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)(off + i < size ? d[off + i] : 0) << (8 * i);
    return v;
}

#ifdef PGM_HAVE_UNICORN

#define TAIL_OFF 202u

static struct flat diff_mem;            /* large: static */
static struct uref *engines[3];         /* 16, 32, 64: opened once, reused */

struct tail {
    const uint8_t *bytes;
    size_t len;
};

static void
fill_from_tail(void *arg, uint64_t pfn, uint8_t page[4096])
{
    const struct tail *t = arg;
    uint64_t la = pfn << 12;
    size_t k = (size_t)(la % t->len);
    for (unsigned i = 0; i < 4096; i++) {
        page[i] = t->bytes[k];
        if (++k == t->len)
            k = 0;
    }
}

/* The same instruction from the same state in the emulator (flat memory)
 * and in Unicorn; aborts on any difference. */
static void
differential(const struct pgm_insn *in, const uint8_t *code, const struct pgm_regs *start,
             const struct pgm_emu_mem *proto, unsigned limit, const uint8_t *data, size_t size)
{
    unsigned mode = start->code_bits == 16 ? 0 : start->code_bits == 32 ? 1 : 2;
    if (!engines[mode] && !(engines[mode] = uref_open(start->code_bits)))
        abort();
    struct pgm_regs before = *start;
    uref_normalise(&before);
    if (!uref_state_ok(&before))
        abort();    /* uref_normalise() must make it so */

    uint64_t seed = 0;
    for (size_t i = 0; i < size && i < TAIL_OFF; i++)
        seed = flat_mix64(seed ^ data[i]);
    uref_flat_init(&diff_mem, &before, seed);
    struct tail t = { .bytes = data + TAIL_OFF, .len = size > TAIL_OFF ? size - TAIL_OFF : 0 };
    if (t.len) {
        diff_mem.fill = fill_from_tail;
        diff_mem.fill_arg = &t;
    }
    struct pgm_emu_mem mem = { .ctx = &diff_mem, .read = flat_read, .write = flat_write,
                               .cmpxchg = proto->cmpxchg ? flat_cmpxchg : NULL };
    struct pgm_regs r = before;
    unsigned rounds = 0;
    int rc;
    while ((rc = pgm_emulate(in, &r, &mem, limit)) == PGM_EMU_AGAIN)
        if (++rounds > 2000)
            abort();
    if (rc == -EFAULT)
        return;     /* outside what both sides can map: not comparable */
    if (rc != PGM_EMU_DONE && rc != PGM_EMU_INJECT_GP)
        abort();

    char why[192];
    int v = uref_check(engines[mode], code, in->len, in, &before, rc, &r, &diff_mem, NULL,
                       why, sizeof(why));
    if (v == UREF_MISMATCH || v == UREF_ERROR) {
        uref_print_case(stderr, v == UREF_ERROR ? "unicorn setup" : "mismatch", code, in->len,
                        in, &before, &diff_mem, why);
        abort();
    }
}

#endif /* PGM_HAVE_UNICORN */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned bits = (unsigned[]){ 16, 32, 64 }[get(data, size, 0, 1) % 3];
    unsigned opt = (unsigned)get(data, size, 1, 1);
    unsigned fsel = (unsigned)get(data, size, 2, 1);
    uint8_t code[PGM_INSN_MAX_LEN];
    for (unsigned i = 0; i < sizeof(code); i++)
        code[i] = (uint8_t)get(data, size, 3 + i, 1);
    size_t n = size > 3 ? size - 3 : 0;
    if (n > sizeof(code))
        n = sizeof(code);

    struct pgm_insn in;
    int rc = pgm_decode_insn(code, n, bits, &in);
    if (rc < 0 || rc > PGM_DECODE_UNSUPPORTED)
        abort();
    if (rc != PGM_DECODE_OK)
        return 0;
    if (in.len < 1 || in.len > n || in.op == PGM_OP_NONE || in.op >= PGM_OP_COUNT)
        abort();

    struct pgm_regs r;
    memset(&r, 0, sizeof(r));
    for (unsigned i = 0; i < PGM_GPR_COUNT; i++)
        r.gpr[i] = get(data, size, 18 + 8 * i, 8);
    r.rflags = get(data, size, 18 + 128, 8);
    for (unsigned i = 0; i < PGM_SEG_COUNT; i++)
        r.seg_base[i] = get(data, size, 18 + 136 + 8 * i, 8);
    r.code_bits = (uint8_t)bits;
    r.rip = r.gpr[PGM_R15] ^ r.gpr[PGM_R14];
    bool string = in.op == PGM_OP_STOS || in.op == PGM_OP_MOVS;
    bool rep = string && (in.prefixes & (PGM_INSN_REP | PGM_INSN_REPNE));
    if (rep)
        r.gpr[PGM_RCX] &= 0x3ff;    /* keep REP runs short */

    struct pgm_emu_mem mem = { .ctx = &fm, .read = f_read, .write = f_write,
                               .cmpxchg = (opt & 1) ? NULL : f_cmpxchg };
    fm.accesses = 0;
    fm.fault_at = (fsel & 8) ? (int)(fsel & 7) : -1;
    unsigned limit = (opt >> 1) + 1;

    struct pgm_regs before = r;
    unsigned rounds = 0;
    while ((rc = pgm_emulate(&in, &r, &mem, limit)) == PGM_EMU_AGAIN) {
        if (r.rip != before.rip || ++rounds > 2000)
            abort();
    }
    switch (rc) {
    case PGM_EMU_DONE: {
        uint64_t next = before.rip + in.len;
        if (bits != 64)
            next &= 0xffffffff;
        if (r.rip != next)
            abort();
        uint64_t am = in.mem.addr_bits == 64 ? ~0ull : (1ull << in.mem.addr_bits) - 1;
        if (rep && (r.gpr[PGM_RCX] & am) != 0)
            abort();
        break;
    }
    case FAULT_CODE:
        if (!string && memcmp(&r, &before, sizeof(r)))
            abort();
        if (r.rip != before.rip)
            abort();
        break;
    case PGM_EMU_INJECT_GP:
        if (in.op != PGM_OP_CMPXCHG8B || in.size != 16 || memcmp(&r, &before, sizeof(r)))
            abort();
        break;
    default:
        abort();
    }
#ifdef PGM_HAVE_UNICORN
    if (rc == PGM_EMU_DONE || rc == PGM_EMU_INJECT_GP)
        differential(&in, code, &before, &mem, limit, data, size);
#endif
    return 0;
}
