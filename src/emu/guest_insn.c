/* SPDX-License-Identifier: MIT */
/*
 * pgm_emulate_insn: one guest instruction, end to end.
 *
 * The decoder and emulator (decode.h, emu.h) know nothing about guests;
 * this file gives them one. Instruction bytes are fetched through the guest
 * page tables at CS base + RIP; every data access is translated by the guest
 * walker with the instruction's CPL, RFLAGS.AC and access kind (setting A/D
 * as the CPU would) and performed on guest-physical memory through the
 * handler registry with origin PGM_ORIGIN_GUEST.
 *
 * Faults are carried out of the emulator's callbacks as one sentinel value
 * (FAULT_SENTINEL) with the details already written to `out`; the emulator
 * hands the sentinel back unchanged and leaves the registers as they were.
 */
#include <errno.h>
#include <string.h>

#include "pgm/paging.h"
#include "src/emu/decode.h"
#include "src/emu/emu.h"
#include "src/handlers/virt.h"
#include "src/phys.h"
#include "src/vm.h"

#define FAULT_SENTINEL (-EFAULT)
#define VEC_GP 13
#define VEC_PF 14

struct guest_ctx {
    struct pgm_vcpu *vcpu;
    uint32_t access;           /* PGM_ACCESS_USER / PGM_ACCESS_AC of the instruction */
    struct pgm_fault_out *out;
    uint64_t piece_la[2];      /* linear address of each piece of the last translate() */
};

static int
inject(struct pgm_fault_out *out, uint8_t vector, uint32_t ec, uint64_t address)
{
    out->result = PGM_FAULT_INJECT;
    out->vector = vector;
    out->error_code = ec;
    out->address = address;
    return FAULT_SENTINEL;
}

/*
 * Translate [la, la + size) for @access into one or two guest-physical
 * pieces (an access crossing a page). Both pages are translated before
 * anything is accessed, so a fault on the second leaves memory untouched
 * (the first page's A/D bits may already be set, as on a CPU).
 */
static int
translate(struct guest_ctx *g, uint64_t la, unsigned size, uint32_t access,
          pgm_gpa_t gpa[2], unsigned len[2], unsigned *pieces)
{
    g->piece_la[0] = la;
    unsigned first = (unsigned)(PGM_PAGE_SIZE - (la & ~PGM_PAGE_MASK));
    len[0] = size < first ? size : first;
    len[1] = size - len[0];
    *pieces = len[1] ? 2 : 1;
    for (unsigned i = 0; i < *pieces; i++) {
        uint64_t at = i ? la + len[0] : la;
        if (!(g->vcpu->state.efer & PGM_EFER_LMA))
            at = (uint32_t)at;
        struct pgm_walk w;
        int rc = pgm_walk(g->vcpu, at, access | g->access, &w);
        if (rc < 0)
            return rc;
        if (w.status == PGM_WALK_GP)
            return inject(g->out, VEC_GP, 0, 0);
        if (w.status == PGM_WALK_PAGE_FAULT)
            return inject(g->out, VEC_PF, w.error_code, at);
        gpa[i] = w.gpa;
        g->piece_la[i] = at;
    }
    return 0;
}

/*
 * Perform piece @piece of the last translate(): through the virtual handler
 * covering its linear page, if any, then on guest-physical memory through
 * physical handlers. A handler's EXIT becomes the fault outcome.
 */
static int
access_piece(struct guest_ctx *g, unsigned piece, pgm_gpa_t gpa, void *rbuf, const void *wbuf,
             unsigned n)
{
    int rc = pgm_virt_dispatch(g->vcpu, g->piece_la[piece], gpa, rbuf, wbuf, n);
    if (rc == 1)
        rc = pgm_phys_access_guest(g->vcpu, gpa, rbuf, wbuf, n);
    if (rc == PGM_RC_HANDLER_EXIT) {
        struct pgm_fault_out *out = g->out;
        out->result = PGM_FAULT_EXIT;
        out->exit_reason = PGM_EXIT_HANDLER;
        out->exit_gpa = gpa;
        out->exit_size = n;
        out->exit_write = wbuf != NULL;
        if (wbuf)
            memcpy(out->exit_data, wbuf, n < sizeof(out->exit_data) ? n : sizeof(out->exit_data));
        return FAULT_SENTINEL;
    }
    /* -ENODEV: MMIO with no handler behaves like the bus (all-ones, dropped). */
    return rc == -ENODEV ? 0 : rc;
}

static int
guest_read(void *ctx, uint64_t la, void *buf, unsigned size)
{
    struct guest_ctx *g = ctx;
    pgm_gpa_t gpa[2];
    unsigned len[2], pieces;
    int rc = translate(g, la, size, PGM_ACCESS_READ, gpa, len, &pieces);
    for (unsigned i = 0; rc == 0 && i < pieces; i++)
        rc = access_piece(g, i, gpa[i], (uint8_t *)buf + (i ? len[0] : 0), NULL, len[i]);
    return rc;
}

static int
guest_write(void *ctx, uint64_t la, const void *buf, unsigned size)
{
    struct guest_ctx *g = ctx;
    pgm_gpa_t gpa[2];
    unsigned len[2], pieces;
    int rc = translate(g, la, size, PGM_ACCESS_WRITE, gpa, len, &pieces);
    for (unsigned i = 0; rc == 0 && i < pieces; i++)
        rc = access_piece(g, i, gpa[i], NULL, (const uint8_t *)buf + (i ? len[0] : 0), len[i]);
    return rc;
}

/*
 * Locked read-modify-write. Plain RAM within one page gets a real atomic
 * compare-exchange (1..8 bytes); anything else - a handler page, MMIO, a
 * page-crossing or 16-byte operand - is read, compared and written back
 * through the handlers, which is atomic only if nothing else writes that
 * memory meanwhile (documented in docs/emulator.md).
 */
static int
guest_cmpxchg(void *ctx, uint64_t la, void *expected, const void *desired, unsigned size)
{
    struct guest_ctx *g = ctx;
    pgm_gpa_t gpa[2];
    unsigned len[2], pieces;
    int rc = translate(g, la, size, PGM_ACCESS_WRITE, gpa, len, &pieces);
    if (rc)
        return rc;
    /* A virtual handler's page goes through its handler like any handler page. */
    uint8_t *host = pieces == 1 && size <= 8 && !pgm_virt_covers(g->vcpu, la)
                        ? pgm_phys_plain_ram_ptr(g->vcpu->vm, gpa[0])
                        : NULL;
    if (host && !((uintptr_t)host & (size - 1))) {
        bool ok;
        switch (size) {
        case 1: ok = __atomic_compare_exchange_n(host, (uint8_t *)expected, *(const uint8_t *)desired,
                                                 false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); break;
        case 2: {
            uint16_t e, d;
            memcpy(&e, expected, 2);
            memcpy(&d, desired, 2);
            ok = __atomic_compare_exchange_n((uint16_t *)(void *)host, &e, d, false,
                                             __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            memcpy(expected, &e, 2);
            break;
        }
        case 4: {
            uint32_t e, d;
            memcpy(&e, expected, 4);
            memcpy(&d, desired, 4);
            ok = __atomic_compare_exchange_n((uint32_t *)(void *)host, &e, d, false,
                                             __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            memcpy(expected, &e, 4);
            break;
        }
        default: {
            uint64_t e, d;
            memcpy(&e, expected, 8);
            memcpy(&d, desired, 8);
            ok = __atomic_compare_exchange_n((uint64_t *)(void *)host, &e, d, false,
                                             __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            memcpy(expected, &e, 8);
            break;
        }
        }
        (void)ok; /* the emulator tells success from failure by comparing `expected` */
        return 0;
    }
    uint8_t cur[16];
    for (unsigned i = 0; rc == 0 && i < pieces; i++)
        rc = access_piece(g, i, gpa[i], cur + (i ? len[0] : 0), NULL, len[i]);
    if (rc)
        return rc;
    if (memcmp(cur, expected, size) != 0) {
        memcpy(expected, cur, size);
        return 0;
    }
    for (unsigned i = 0; rc == 0 && i < pieces; i++)
        rc = access_piece(g, i, gpa[i], NULL, (const uint8_t *)desired + (i ? len[0] : 0), len[i]);
    return rc;
}

/* Fetch up to 15 instruction bytes at @la; the second page only if needed. */
static int
fetch_and_decode(struct guest_ctx *g, uint64_t la, unsigned code_bits, struct pgm_insn *insn)
{
    struct pgm_fault_out *out = g->out;
    unsigned first = (unsigned)(PGM_PAGE_SIZE - (la & ~PGM_PAGE_MASK));
    unsigned n = first < 15 ? first : 15;
    pgm_gpa_t gpa[2];
    unsigned len[2], pieces;
    int rc = translate(g, la, n, PGM_ACCESS_FETCH, gpa, len, &pieces);
    if (rc == 0)
        rc = access_piece(g, 0, gpa[0], out->insn, NULL, n);
    if (rc)
        return rc;
    int d = pgm_decode_insn(out->insn, n, code_bits, insn);
    if (d == PGM_DECODE_INVALID && n < 15) {
        /* Maybe truncated at the page end: the CPU would fetch on. */
        rc = translate(g, la + n, 15 - n, PGM_ACCESS_FETCH, gpa, len, &pieces);
        if (rc == 0)
            rc = access_piece(g, 0, gpa[0], out->insn + n, NULL, 15 - n);
        if (rc)
            return rc;
        n = 15;
        d = pgm_decode_insn(out->insn, n, code_bits, insn);
    }
    out->insn_len = (uint8_t)(d == PGM_DECODE_INVALID ? n : insn->len);
    if (d == PGM_DECODE_OK)
        return 0;
    out->result = PGM_FAULT_EXIT;
    out->exit_reason = d == PGM_DECODE_INVALID ? PGM_EXIT_INVALID : PGM_EXIT_UNEMULATABLE;
    return FAULT_SENTINEL;
}

PGM_API int
pgm_emulate_insn(struct pgm_vcpu *vcpu, struct pgm_regs *regs, struct pgm_fault_out *out)
{
    if (!vcpu || !regs || !out)
        return -EINVAL;
    unsigned bits = regs->code_bits;
    if (bits != 16 && bits != 32 && bits != 64)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    struct guest_ctx g = {
        .vcpu = vcpu,
        .access = (regs->cpl == 3 ? PGM_ACCESS_USER : 0) |
                  ((regs->rflags & PGM_RFLAGS_AC) ? PGM_ACCESS_AC : 0),
        .out = out,
    };
    /* 64-bit code ignores the CS base; elsewhere IP/EIP wraps and adds to it. */
    uint64_t ip = bits == 16 ? (regs->rip & 0xffff) : bits == 32 ? (uint32_t)regs->rip : regs->rip;
    uint64_t la = bits == 64 ? ip : (uint32_t)(regs->seg_base[PGM_CS] + ip);

    struct pgm_insn insn;
    int rc = fetch_and_decode(&g, la, bits, &insn);
    if (rc == 0) {
        const struct pgm_emu_mem mem = { .ctx = &g, .read = guest_read, .write = guest_write,
                                         .cmpxchg = guest_cmpxchg };
        rc = pgm_emulate(&insn, regs, &mem, 0);
        switch (rc) {
        case PGM_EMU_DONE:
            out->result = PGM_FAULT_EMULATED;
            return 0;
        case PGM_EMU_AGAIN:
            out->result = PGM_FAULT_RESUME;
            return 0;
        case PGM_EMU_INJECT_GP:
            inject(out, VEC_GP, 0, 0);
            return 0;
        case PGM_EMU_UNSUPPORTED:
            out->result = PGM_FAULT_EXIT;
            out->exit_reason = PGM_EXIT_UNEMULATABLE;
            return 0;
        default:
            break;
        }
    }
    /* A fault or exit described in `out`, or a real error (-ENOMEM...). */
    return rc == FAULT_SENTINEL ? 0 : rc;
}
