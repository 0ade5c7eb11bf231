/* SPDX-License-Identifier: MIT */
/*
 * The instruction decoder (src/emu/decode_capstone.c): hand-assembled bytes
 * against the fields they must decode to, the Capstone 4.0.2 quirks the
 * decoder works around, and refusals: truncated, over-long, prefix-heavy,
 * invalid-with-LOCK and random bytes must give a clean result, never a crash
 * and never an OK that breaks decode.h's invariants.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "src/emu/decode.h"

#define NOREG PGM_INSN_NOREG

struct expect {
    unsigned bits;
    const char *hex;
    int rc;
    unsigned op, size, reg_size, src;
    int mem_is_dest;
    unsigned seg, base, index, scale, addr_bits;
    int rip_rel;
    int64_t disp;
    unsigned gpr;
    int high8;
    int64_t imm;
    unsigned prefixes;      /* bits that must be set */
};

static size_t
unhex(const char *s, uint8_t *b)
{
    size_t n = 0;
    while (s[0] && s[1]) {
        unsigned v;
        sscanf(s, "%2x", &v);
        b[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

#define OK(bits, hex, op, size, rsz, src, dest, seg, base, index, scale, ab, rip, disp, gpr, h8, imm, pfx) \
    { bits, hex, PGM_DECODE_OK, op, size, rsz, src, dest, seg, base, index, scale, ab, rip, disp, \
      gpr, h8, imm, pfx }

static const struct expect cases[] = {
    /* MOV forms, 64-bit */
    OK(64, "48891f", PGM_OP_MOV, 8, 8, PGM_SRC_REG, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_RBX, 0, 0, PGM_INSN_REXW),
    OK(64, "8b0424", PGM_OP_MOV, 4, 4, PGM_SRC_REG, 0, PGM_SS, PGM_RSP, NOREG, 1, 64, 0, 0,
       PGM_RAX, 0, 0, 0),
    OK(64, "4c8b4cbd10", PGM_OP_MOV, 8, 8, PGM_SRC_REG, 0, PGM_SS, PGM_RBP, PGM_RDI, 4, 64, 0,
       0x10, PGM_R9, 0, 0, PGM_INSN_REXW),
    OK(64, "8827", PGM_OP_MOV, 1, 1, PGM_SRC_REG, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_RAX, 1, 0, 0),                                     /* mov [rdi], ah */
    OK(64, "402827", PGM_OP_SUB, 1, 1, PGM_SRC_REG, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_RSP, 0, 0, PGM_INSN_REX),                          /* sub [rdi], spl */
    OK(64, "48c707ffffff7f", PGM_OP_MOV, 8, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0,
       0, 0, 0, 0x7fffffff, PGM_INSN_REXW),
    OK(64, "48c70700000080", PGM_OP_MOV, 8, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0,
       0, 0, 0, -0x80000000ll, PGM_INSN_REXW),                /* imm32 sign-extended */
    OK(64, "44c70701000000", PGM_OP_MOV, 4, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0,
       0, 0, 0, 1, PGM_INSN_REX),                             /* REX.R ignored on /0 */
    OK(64, "48893d10000000", PGM_OP_MOV, 8, 8, PGM_SRC_REG, 1, PGM_DS, NOREG, NOREG, 1, 64, 1,
       0x10, PGM_RDI, 0, 0, PGM_INSN_REXW),                   /* RIP-relative */
    OK(64, "67893d10000000", PGM_OP_MOV, 4, 4, PGM_SRC_REG, 1, PGM_DS, NOREG, NOREG, 1, 32, 1,
       0x10, PGM_RDI, 0, 0, PGM_INSN_ADDRSIZE),               /* EIP-relative */
    OK(64, "48a3efcdab8967452301", PGM_OP_MOV, 8, 8, PGM_SRC_REG, 1, PGM_DS, NOREG, NOREG, 1, 64,
       0, 0x0123456789abcdefll, PGM_RAX, 0, 0, PGM_INSN_REXW), /* moffs64 */
    OK(64, "67a044332211", PGM_OP_MOV, 1, 1, PGM_SRC_REG, 0, PGM_DS, NOREG, NOREG, 1, 32, 0,
       0x11223344, PGM_RAX, 0, 0, PGM_INSN_ADDRSIZE),         /* moffs32 */
    OK(64, "65488b042500100000", PGM_OP_MOV, 8, 8, PGM_SRC_REG, 0, PGM_GS, NOREG, NOREG, 1, 64, 0,
       0x1000, PGM_RAX, 0, 0, PGM_INSN_SEGOVR),
    OK(64, "2e3e64890424", PGM_OP_MOV, 4, 4, PGM_SRC_REG, 1, PGM_FS, PGM_RSP, NOREG, 1, 64, 0, 0,
       PGM_RAX, 0, 0, PGM_INSN_SEGOVR),                       /* last override wins */
    /* MOVZX / MOVSX / MOVSXD */
    OK(64, "0fb607", PGM_OP_MOVZX, 1, 4, PGM_SRC_REG, 0, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_RAX, 0, 0, 0),
    OK(64, "480fbf07", PGM_OP_MOVSX, 2, 8, PGM_SRC_REG, 0, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_RAX, 0, 0, PGM_INSN_REXW),
    OK(64, "4c6307", PGM_OP_MOVSX, 4, 8, PGM_SRC_REG, 0, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_R8, 0, 0, PGM_INSN_REXW),
    OK(64, "6307", PGM_OP_MOVSX, 4, 4, PGM_SRC_REG, 0, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_RAX, 0, 0, 0),                 /* Capstone says rax; it is eax */
    OK(16, "0fbe4600", PGM_OP_MOVSX, 1, 2, PGM_SRC_REG, 0, PGM_SS, PGM_RBP, NOREG, 1, 16, 0, 0,
       PGM_RAX, 0, 0, 0),
    /* locked read-modify-write */
    OK(64, "f0480fb10f", PGM_OP_CMPXCHG, 8, 8, PGM_SRC_REG, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0,
       0, PGM_RCX, 0, 0, PGM_INSN_LOCK | PGM_INSN_REXW),
    OK(32, "f00fc70e", PGM_OP_CMPXCHG8B, 8, 0, PGM_SRC_NONE, 1, PGM_DS, PGM_RSI, NOREG, 1, 32, 0,
       0, 0, 0, 0, PGM_INSN_LOCK),
    OK(64, "f0480fc70e", PGM_OP_CMPXCHG8B, 16, 0, PGM_SRC_NONE, 1, PGM_DS, PGM_RSI, NOREG, 1, 64,
       0, 0, 0, 0, 0, PGM_INSN_LOCK | PGM_INSN_REXW),
    OK(64, "4887 07", PGM_OP_XCHG, 8, 8, PGM_SRC_REG, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_RAX, 0, 0, PGM_INSN_REXW),
    OK(32, "f0830701", PGM_OP_ADD, 4, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RDI, NOREG, 1, 32, 0, 0, 0, 0,
       1, PGM_INSN_LOCK),
    OK(32, "8307ff", PGM_OP_ADD, 4, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RDI, NOREG, 1, 32, 0, 0, 0, 0,
       -1, 0),                            /* imm8 sign-extended */
    OK(32, "8007ff", PGM_OP_ADD, 1, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RDI, NOREG, 1, 32, 0, 0, 0, 0,
       -1, 0),
    OK(32, "f0f30107", PGM_OP_ADD, 4, 4, PGM_SRC_REG, 1, PGM_DS, PGM_RDI, NOREG, 1, 32, 0, 0,
       PGM_RAX, 0, 0, PGM_INSN_LOCK | PGM_INSN_REP),  /* Capstone drops this LOCK */
    OK(32, "66f30107", PGM_OP_ADD, 2, 2, PGM_SRC_REG, 1, PGM_DS, PGM_RDI, NOREG, 1, 32, 0, 0,
       PGM_RAX, 0, 0, PGM_INSN_OPSIZE),   /* Capstone says dword */
    OK(32, "66f2812aacab", PGM_OP_SUB, 2, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RDX, NOREG, 1, 32, 0, 0,
       0, 0, (int16_t)0xabac, PGM_INSN_OPSIZE),  /* Capstone's imm_size is 4 */
    OK(64, "0339", PGM_OP_ADD, 4, 4, PGM_SRC_REG, 0, PGM_DS, PGM_RCX, NOREG, 1, 64, 0, 0,
       PGM_RDI, 0, 0, 0),                 /* reg += mem */
    OK(16, "f60710", PGM_OP_TEST, 1, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RBX, NOREG, 1, 16, 0, 0, 0, 0,
       0x10, 0),
    OK(16, "ff4efe", PGM_OP_DEC, 2, 0, PGM_SRC_NONE, 1, PGM_SS, PGM_RBP, NOREG, 1, 16, 0, -2, 0, 0,
       0, 0),
    OK(16, "66f71a", PGM_OP_NEG, 4, 0, PGM_SRC_NONE, 1, PGM_SS, PGM_RBP, PGM_RSI, 1, 16, 0, 0, 0,
       0, 0, PGM_INSN_OPSIZE),            /* [bp+si]: SS by default */
    /* bit tests */
    OK(64, "480fab07", PGM_OP_BTS, 8, 8, PGM_SRC_REG, 1, PGM_DS, PGM_RDI, NOREG, 1, 64, 0, 0,
       PGM_RAX, 0, 0, PGM_INSN_REXW),
    OK(32, "0fba3f1f", PGM_OP_BTC, 4, 0, PGM_SRC_IMM, 1, PGM_DS, PGM_RDI, NOREG, 1, 32, 0, 0, 0, 0,
       0x1f, 0),
    /* strings */
    OK(64, "f348ab", PGM_OP_STOS, 8, 0, PGM_SRC_NONE, 1, PGM_ES, PGM_RDI, NOREG, 1, 64, 0, 0, 0, 0,
       0, PGM_INSN_REP | PGM_INSN_REXW),
    OK(32, "66f3a5", PGM_OP_MOVS, 2, 0, PGM_SRC_NONE, 0, PGM_DS, PGM_RSI, NOREG, 1, 32, 0, 0, 0, 0,
       0, PGM_INSN_REP | PGM_INSN_OPSIZE),  /* Capstone says movsd */
    OK(16, "2667f2a4", PGM_OP_MOVS, 1, 0, PGM_SRC_NONE, 0, PGM_ES, PGM_RSI, NOREG, 1, 32, 0, 0, 0,
       0, 0, PGM_INSN_REPNE | PGM_INSN_ADDRSIZE | PGM_INSN_SEGOVR),
    OK(32, "64aa", PGM_OP_STOS, 1, 0, PGM_SRC_NONE, 1, PGM_ES, PGM_RDI, NOREG, 1, 32, 0, 0, 0, 0,
       0, PGM_INSN_SEGOVR),               /* STOS ignores the override */
};

/* Refusals: rc and, for UNSUPPORTED, the length Capstone saw. */
static const struct {
    unsigned bits;
    const char *hex;
    int rc;
    unsigned len;
} refusals[] = {
    { 64, "01d8", PGM_DECODE_UNSUPPORTED, 2 },        /* add eax, ebx: no memory */
    { 64, "f20f1007", PGM_DECODE_UNSUPPORTED, 4 },    /* movsd xmm0, [rdi] */
    { 64, "0f0117", PGM_DECODE_UNSUPPORTED, 3 },      /* lgdt */
    { 64, "8c07", PGM_DECODE_UNSUPPORTED, 2 },        /* mov [rdi], es */
    { 64, "a6", PGM_DECODE_UNSUPPORTED, 1 },          /* cmpsb */
    { 64, "ff17", PGM_DECODE_UNSUPPORTED, 2 },        /* call [rdi] */
    { 32, "6307", PGM_DECODE_UNSUPPORTED, 2 },        /* arpl */
    { 64, "666307", PGM_DECODE_UNSUPPORTED, 3 },      /* movsxd r16 */
    { 64, "f08907", PGM_DECODE_INVALID, 0 },          /* lock mov */
    { 64, "f00307", PGM_DECODE_INVALID, 0 },          /* lock add reg, mem */
    { 64, "f03907", PGM_DECODE_INVALID, 0 },          /* lock cmp */
    { 64, "f00fa307", PGM_DECODE_INVALID, 0 },        /* lock bt */
    { 64, "f0ab", PGM_DECODE_INVALID, 0 },            /* lock stos */
    { 64, "f001d8", PGM_DECODE_INVALID, 0 },          /* lock add reg, reg */
    { 64, "0fc70f", PGM_DECODE_OK, 3 },               /* (control: cmpxchg8b) */
    { 32, "480fc70f", PGM_DECODE_UNSUPPORTED, 1 },    /* 48 is DEC EAX here */
    { 64, "82 07 01", PGM_DECODE_INVALID, 0 },        /* 82 is invalid in 64-bit */
    { 64, "", PGM_DECODE_INVALID, 0 },
    { 64, "0f", PGM_DECODE_INVALID, 0 },
    { 64, "48", PGM_DECODE_INVALID, 0 },
    { 64, "f0f0f0f0f0f0f0f0f0f0f0f0f0f00107", PGM_DECODE_INVALID, 0 },  /* 16 bytes */
    { 64, "666666666666666666666666890424", PGM_DECODE_OK, 15 },        /* 15: fine */
    { 64, "66666666666666666666666666890424", PGM_DECODE_INVALID, 0 },  /* 16 */
};

static void
test_fields(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct expect *e = &cases[i];
        uint8_t b[32];
        char hex[64];
        size_t k = 0;
        for (const char *p = e->hex; *p; p++)   /* allow spaces */
            if (*p != ' ')
                hex[k++] = *p;
        hex[k] = 0;
        size_t n = unhex(hex, b);
        struct pgm_insn in;
        int rc = pgm_decode_insn(b, n, e->bits, &in);
        if (rc != e->rc || in.len != n || in.op != e->op || in.size != e->size ||
            in.src != e->src || in.mem_is_dest != (e->mem_is_dest != 0) ||
            in.mem.seg != e->seg || in.mem.base != e->base || in.mem.index != e->index ||
            in.mem.scale != e->scale || in.mem.addr_bits != e->addr_bits ||
            in.mem.rip_rel != (e->rip_rel != 0) || in.mem.disp != e->disp ||
            (in.prefixes & e->prefixes) != e->prefixes || in.code_bits != e->bits ||
            (e->src == PGM_SRC_REG && (in.reg.gpr != e->gpr ||
                                       in.reg.high8 != (e->high8 != 0) ||
                                       in.reg_size != e->reg_size)) ||
            (e->src == PGM_SRC_IMM && in.imm != e->imm))
            fail_msg("%u-bit %s ('%s'): rc %d len %u op %s size %u reg %u/%u h%d src %u "
                     "dest %d seg %u base %u index %u*%u ab %u rip %d disp %lld imm %lld "
                     "pfx %#x", e->bits, e->hex, in.mnemonic, rc, in.len,
                     pgm_insn_op_name(in.op), in.size, in.reg.gpr, in.reg_size,
                     in.reg.high8, in.src, in.mem_is_dest, in.mem.seg, in.mem.base,
                     in.mem.index, in.mem.scale, in.mem.addr_bits, in.mem.rip_rel,
                     (long long)in.mem.disp, (long long)in.imm, in.prefixes);
    }
}

static void
test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        uint8_t b[32];
        char hex[80];
        size_t k = 0;
        for (const char *p = refusals[i].hex; *p; p++)
            if (*p != ' ')
                hex[k++] = *p;
        hex[k] = 0;
        size_t n = unhex(hex, b);
        struct pgm_insn in;
        int rc = pgm_decode_insn(b, n, refusals[i].bits, &in);
        if (rc != refusals[i].rc)
            fail_msg("%u-bit %s: rc %d, want %d ('%s')", refusals[i].bits, refusals[i].hex,
                     rc, refusals[i].rc, in.mnemonic);
        if (rc == PGM_DECODE_UNSUPPORTED) {
            assert_int_equal(in.op, PGM_OP_NONE);
            assert_int_equal(in.len, refusals[i].len);
            assert_true(in.mnemonic[0] != 0);
        }
    }
    /* arguments */
    uint8_t b[4] = { 0x89, 0x07 };
    struct pgm_insn in;
    assert_int_equal(pgm_decode_insn(b, 2, 8, &in), -EINVAL);
    assert_int_equal(pgm_decode_insn(NULL, 2, 64, &in), -EINVAL);
    assert_int_equal(pgm_decode_insn(b, 2, 64, NULL), -EINVAL);
    assert_int_equal(pgm_decode_insn(b, 0, 64, &in), PGM_DECODE_INVALID);
}

/* Every proper prefix of a valid instruction is refused, never OK. */
static void
test_truncated(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t b[32];
        char hex[64];
        size_t k = 0;
        for (const char *p = cases[i].hex; *p; p++)
            if (*p != ' ')
                hex[k++] = *p;
        hex[k] = 0;
        size_t n = unhex(hex, b);
        for (size_t cut = 0; cut < n; cut++) {
            struct pgm_insn in;
            int rc = pgm_decode_insn(b, cut, cases[i].bits, &in);
            if (rc == PGM_DECODE_OK)
                fail_msg("%s cut to %zu decoded as '%s'", cases[i].hex, cut, in.mnemonic);
        }
    }
}

static uint64_t rng = 0x1234567;

static uint64_t
next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Random bytes (biased towards prefixes and allow-listed opcodes): no crash,
 * and every OK result keeps decode.h's invariants. */
static void
test_random_bytes(void **state)
{
    (void)state;
    static const uint8_t interesting[] = {
        0xf0, 0xf2, 0xf3, 0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x48, 0x4f, 0x40,
        0x0f, 0x01, 0x89, 0x8b, 0xc7, 0x81, 0x83, 0xf7, 0xff, 0xab, 0xa5, 0xa3, 0xb1, 0xc7,
        0x63, 0xba,
    };
    unsigned ok = 0, unsupported = 0, invalid = 0;
    for (unsigned iter = 0; iter < 60000; iter++) {
        uint8_t b[PGM_INSN_MAX_LEN + 4];
        for (unsigned i = 0; i < sizeof(b); i++) {
            uint64_t r = next_rand();
            b[i] = (r & 3) ? (uint8_t)(r >> 8) :
                   interesting[(r >> 8) % sizeof(interesting)];
        }
        unsigned bits = (unsigned[]){ 16, 32, 64 }[iter % 3];
        size_t n = next_rand() % sizeof(b);
        struct pgm_insn in;
        int rc = pgm_decode_insn(b, n, bits, &in);
        assert_true(rc == PGM_DECODE_OK || rc == PGM_DECODE_INVALID ||
                    rc == PGM_DECODE_UNSUPPORTED);
        if (rc == PGM_DECODE_INVALID) {
            invalid++;
            continue;
        }
        assert_true(in.len >= 1 && in.len <= PGM_INSN_MAX_LEN && in.len <= n);
        if (rc == PGM_DECODE_UNSUPPORTED) {
            assert_int_equal(in.op, PGM_OP_NONE);
            unsupported++;
            continue;
        }
        ok++;
        assert_true(in.op > PGM_OP_NONE && in.op < PGM_OP_COUNT);
        assert_true(in.size == 1 || in.size == 2 || in.size == 4 || in.size == 8 ||
                    (in.size == 16 && in.op == PGM_OP_CMPXCHG8B && bits == 64));
        assert_true(in.mem.seg < PGM_SEG_COUNT);
        assert_true(in.mem.base == NOREG || in.mem.base < (bits == 64 ? 16 : 8));
        assert_true(in.mem.index == NOREG || in.mem.index < (bits == 64 ? 16 : 8));
        assert_true(in.mem.addr_bits == 16 || in.mem.addr_bits == 32 ||
                    in.mem.addr_bits == 64);
        assert_true(!in.mem.rip_rel || bits == 64);
        if (in.src == PGM_SRC_REG)
            assert_true(!in.reg.high8 || in.reg.gpr < 4);
        if (in.prefixes & PGM_INSN_LOCK)
            assert_true(in.mem_is_dest);
    }
    printf("# random bytes: %u allow-listed, %u outside, %u invalid\n", ok, unsupported, invalid);
    assert_true(ok > 100);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests_name("emu_decode", tests, NULL, NULL);
}
