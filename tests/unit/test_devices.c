/* SPDX-License-Identifier: MIT */
/*
 * Device models driven by guest code running on libpgm's shadow tables:
 * a 16550-like UART and a register file (MMIO, every access a handler
 * call) and a 32-bpp framebuffer (RAM whose WRITE handler records damaged
 * rectangles; reads are plain; later a dirty log).
 *
 * The "CPU" of this test: each guest instruction lives in guest RAM and is
 * fetched by libpgm through the guest's page tables. Before "executing" it
 * the test looks up the shadow entries of the memory operands the
 * instruction will touch (the test knows them, as the hardware would): if
 * one is missing or too narrow for the access, the hardware would raise
 * #PF, so the test calls pgm_trap0e with that CR2 and error code (it syncs
 * and returns RESUME, or finishes the access by emulation: EMULATED, or a
 * REP instruction's partial RESUME). Only when every operand is mapped does
 * the instruction run "natively", for which pgm_emulate_insn stands in (on
 * plain mapped RAM it does what the CPU would). pgm_audit after every step.
 *
 * Expected register, memory and device results are derived by hand from
 * the instructions and the device definitions below.
 *
 * Guest layout (4-level, PML4 0x1000, PDPT 0x2000, PD 0x3000):
 *   VA 0x400000 -> GPA 0x10000   code (PT 0x4000)
 *   VA 0x600000 -> GPA 0xfe000000 UART (MMIO)          (PT 0x5000)
 *   VA 0x601000 -> GPA 0xfe001000 register file (MMIO)
 *   VA 0x800000 .. 0x80ffff -> GPA 0x100000 .. framebuffer, 16 pages (PT 0x6000)
 *   VA 0x810000 -> GPA 0x40000   plain RAM right after the framebuffer
 *   VA 0x811000 -> GPA 0x41000   a sprite (source of REP MOVSB)
 */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define CODE_VA  0x400000ull
#define CODE_GPA 0x10000ull
#define UART_VA  0x600000ull
#define UART_GPA 0xfe000000ull
#define RF_VA    0x601000ull
#define RF_GPA   0xfe001000ull
#define FB_VA    0x800000ull
#define FB_GPA   0x100000ull
#define FB_W     128u                  /* pixels per row, 4 bytes each */
#define FB_H     128u
#define FB_SIZE  (FB_W * FB_H * 4u)    /* 64 KiB: 16 pages */
#define AFTER_VA  0x810000ull
#define AFTER_GPA 0x40000ull
#define SPRITE_VA  0x811000ull
#define SPRITE_GPA 0x41000ull

/* ---- The UART (16550 subset) ------------------------------------------------- */

struct uart {
    char tx[64];
    unsigned ntx;
    uint8_t rx[16];
    unsigned rx_head, rx_tail;
    uint8_t ier, lcr, scr, dll, dlm;
    unsigned calls, bad_size;
};

#define LCR_DLAB 0x80u
#define LSR_DR   0x01u
#define LSR_THRE 0x20u
#define LSR_TEMT 0x40u

static enum pgm_handler_result
uart_fn(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
        enum pgm_access_origin origin, void *user)
{
    (void)vcpu;
    struct uart *u = user;
    u->calls++;
    assert_int_equal(origin, PGM_ORIGIN_GUEST);
    if (size != 1) { /* byte-wide registers */
        u->bad_size++;
        if (!write)
            memset(buf, 0xff, size);
        return PGM_HANDLER_HANDLED;
    }
    uint8_t *b = buf;
    bool dlab = u->lcr & LCR_DLAB;
    switch (gpa - UART_GPA) {
    case 0:
        if (write && dlab)
            u->dll = *b;
        else if (write && u->ntx < sizeof(u->tx))
            u->tx[u->ntx++] = (char)*b;
        else if (!write && dlab)
            *b = u->dll;
        else if (!write)
            *b = u->rx_head != u->rx_tail ? u->rx[u->rx_head++ % 16] : 0;
        break;
    case 1:
        if (write)
            *(dlab ? &u->dlm : &u->ier) = *b & (dlab ? 0xff : 0x0f);
        else
            *b = dlab ? u->dlm : u->ier;
        break;
    case 3:
        if (write)
            u->lcr = *b;
        else
            *b = u->lcr;
        break;
    case 5:
        if (!write)
            *b = LSR_THRE | LSR_TEMT | (u->rx_head != u->rx_tail ? LSR_DR : 0);
        break;
    case 7:
        if (write)
            u->scr = *b;
        else
            *b = u->scr;
        break;
    default:
        if (!write)
            *b = 0;
        break;
    }
    return PGM_HANDLER_HANDLED;
}

/* ---- A register file: 8 qword registers, an ID register at 0x40 ------------------ */

#define RF_ID 0x1122334455667788ull

struct regfile {
    uint8_t r[64];
    unsigned calls;
    pgm_gpa_t last_gpa;
    size_t last_size;
    bool last_write;
};

static enum pgm_handler_result
rf_fn(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
      enum pgm_access_origin origin, void *user)
{
    (void)vcpu;
    (void)origin;
    struct regfile *rf = user;
    rf->calls++;
    rf->last_gpa = gpa;
    rf->last_size = size;
    rf->last_write = write;
    uint64_t off = gpa - RF_GPA;
    for (size_t i = 0; i < size; i++, off++) {
        uint8_t *b = (uint8_t *)buf + i;
        if (off < sizeof(rf->r)) {
            if (write)
                rf->r[off] = *b;
            else
                *b = rf->r[off];
        } else if (!write) {
            *b = off >= 0x40 && off < 0x48 ? (uint8_t)(RF_ID >> (8 * (off - 0x40))) : 0;
        }
    }
    return PGM_HANDLER_HANDLED;
}

/* ---- The framebuffer: damage as a bounding box of pixels --------------------------- */

struct fb {
    unsigned calls;
    bool damaged;
    unsigned x0, y0, x1, y1; /* inclusive */
};

static enum pgm_handler_result
fb_fn(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
      enum pgm_access_origin origin, void *user)
{
    (void)vcpu;
    (void)buf;
    (void)origin;
    struct fb *fb = user;
    fb->calls++;
    assert_true(write); /* a WRITE handler: reads never come here */
    uint64_t first = (gpa - FB_GPA) / 4, last = (gpa + size - 1 - FB_GPA) / 4;
    for (uint64_t p = first; p <= last; p++) {
        unsigned x = (unsigned)(p % FB_W), y = (unsigned)(p / FB_W);
        if (!fb->damaged) {
            fb->x0 = fb->x1 = x;
            fb->y0 = fb->y1 = y;
            fb->damaged = true;
        }
        fb->x0 = x < fb->x0 ? x : fb->x0;
        fb->x1 = x > fb->x1 ? x : fb->x1;
        fb->y0 = y < fb->y0 ? y : fb->y0;
        fb->y1 = y > fb->y1 ? y : fb->y1;
    }
    return PGM_HANDLER_DEFAULT; /* the pixels land in RAM */
}

static void
fb_expect(struct fb *fb, unsigned x0, unsigned y0, unsigned x1, unsigned y1)
{
    assert_true(fb->damaged);
    assert_int_equal(fb->x0, x0);
    assert_int_equal(fb->y0, y0);
    assert_int_equal(fb->x1, x1);
    assert_int_equal(fb->y1, y1);
    fb->damaged = false;
}

/* ---- The machine ------------------------------------------------------------------- */

struct env {
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    struct pgm_regs regs;
    struct uart uart;
    struct regfile rf;
    struct fb fb;
    unsigned traps, natives;
};

static void
audit(struct env *e)
{
    fixture_audit_vm(e->vm);
}

static void
put(struct env *e, uint64_t gpa, uint64_t v)
{
    fixture_put64(e->vm, gpa, v);
}

static void
reg_handler(struct env *e, enum pgm_handler_kind kind, pgm_gpa_t gpa, uint64_t size,
            pgm_phys_handler_fn fn, void *user)
{
    struct pgm_phys_handler h = { .kind = kind, .gpa = gpa, .size = size, .fn = fn,
                                  .user = user };
    assert_int_equal(pgm_handler_register(e->vm, &h), 0);
}

static int
setup(void **state)
{
    struct env *e = test_calloc(1, sizeof(*e));
    assert_int_equal(pgm_soft_backend_create(1u << 14, &e->sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    assert_int_equal(pgm_vm_create(&cfg, &e->vm), 0);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0, 16u << 20), 0);
    assert_int_equal(pgm_phys_add_mmio(e->vm, UART_GPA, 0x2000), 0);
    e->vcpu = pgm_vcpu_get(e->vm, 0);
    put(e, 0x1000, 0x2003);
    put(e, 0x2000, 0x3003);
    put(e, 0x3000 + 8 * 2, 0x4003);             /* VA 0x400000 */
    put(e, 0x3000 + 8 * 3, 0x5003);             /* VA 0x600000 */
    put(e, 0x3000 + 8 * 4, 0x6003);             /* VA 0x800000 */
    put(e, 0x4000, CODE_GPA | 0x1);             /* code: read-only */
    put(e, 0x5000, UART_GPA | 0x3);
    put(e, 0x5008, RF_GPA | 0x3);
    for (unsigned i = 0; i < FB_SIZE / 0x1000; i++)
        put(e, 0x6000 + 8 * i, (FB_GPA + 0x1000ull * i) | 0x3);
    put(e, 0x6000 + 8 * 16, AFTER_GPA | 0x3);
    put(e, 0x6000 + 8 * 17, SPRITE_GPA | 0x3);
    reg_handler(e, PGM_HANDLER_MMIO, UART_GPA, 0x1000, uart_fn, &e->uart);
    reg_handler(e, PGM_HANDLER_MMIO, RF_GPA, 0x1000, rf_fn, &e->rf);
    reg_handler(e, PGM_HANDLER_WRITE, FB_GPA, FB_SIZE, fb_fn, &e->fb);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP,
                                .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME | PGM_EFER_NXE,
                                .cr3 = 0x1000 };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    e->regs.code_bits = 64;
    e->regs.rflags = 0x2;
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;
    fixture_vm_teardown(e->vm, e->sb);
    test_free(e);
    return 0;
}

/* A memory operand the instruction touches: register @reg + @disp, @write. */
struct operand {
    int reg; /* -1: none */
    int64_t disp;
    bool write;
};

/* Does the shadow map @va for @write (every level writable for a write)? */
static bool
shadow_allows(struct env *e, uint64_t va, bool write)
{
    struct pgm_shadow_info si;
    assert_int_equal(pgm_shadow_lookup(e->vcpu, va, &si), 0);
    if (!si.present)
        return false;
    if (!write)
        return true;
    for (unsigned l = si.levels; l >= si.last_level && l > 0; l--)
        if (!(si.entry[l] & 0x2))
            return false;
    return true;
}

/*
 * Execute the instruction @bytes (copied to the code page) with operands
 * @ops as the CPU on shadow tables would: fault on the first operand the
 * shadow does not allow, else run it natively. Repeats until RIP moves past
 * it (REP instructions come back RESUME with their progress made).
 */
static void
exec(struct env *e, const char *bytes, size_t n, const struct operand *ops, unsigned nops)
{
    assert_int_equal(pgm_phys_write(e->vm, CODE_GPA, bytes, n), 0);
    e->regs.rip = CODE_VA;
    for (unsigned guard = 0; e->regs.rip == CODE_VA; guard++) {
        assert_true(guard < 64);
        struct pgm_fault_out out;
        bool faulted = false;
        for (unsigned i = 0; i < nops && !faulted; i++) {
            uint64_t va = e->regs.gpr[ops[i].reg] + (uint64_t)ops[i].disp;
            if (shadow_allows(e, va, ops[i].write))
                continue;
            struct pgm_shadow_info si;
            assert_int_equal(pgm_shadow_lookup(e->vcpu, va, &si), 0);
            uint32_t ec = (si.present ? PGM_PFEC_P : 0) | (ops[i].write ? PGM_PFEC_W : 0);
            assert_int_equal(pgm_trap0e(e->vcpu, ec, va, &e->regs, &out), 0);
            e->traps++;
            faulted = true;
        }
        if (!faulted) {
            assert_int_equal(pgm_emulate_insn(e->vcpu, &e->regs, &out), 0);
            e->natives++;
        }
        if (out.result != PGM_FAULT_RESUME && out.result != PGM_FAULT_EMULATED)
            fail_msg("instruction ended with result %d (vector %u, exit %d)", out.result,
                     out.vector, out.exit_reason);
        audit(e);
    }
    assert_true(e->regs.rip == CODE_VA + n);
}

static const struct operand AT_RDI_W = { PGM_RDI, 0, true }, AT_RDI_R = { PGM_RDI, 0, false };

/* mov [rdi+disp8], al / mov al, [rdi+disp8] on the UART */
static void
uart_out(struct env *e, unsigned reg, uint8_t v)
{
    char insn[3] = { (char)0x88, 0x47, (char)reg };
    struct operand op = { PGM_RDI, reg, true };
    e->regs.gpr[PGM_RAX] = 0xdeadbeef00ull | v;
    exec(e, insn, 3, &op, 1);
}

static uint8_t
uart_in(struct env *e, unsigned reg)
{
    char insn[3] = { (char)0x8a, 0x47, (char)reg };
    struct operand op = { PGM_RDI, reg, false };
    e->regs.gpr[PGM_RAX] = 0x1111111111111111ull;
    exec(e, insn, 3, &op, 1);
    /* mov al, m8 leaves bits 63:8 alone */
    assert_true((e->regs.gpr[PGM_RAX] & ~0xffull) == 0x1111111111111100ull);
    return (uint8_t)e->regs.gpr[PGM_RAX];
}

static void
test_uart(void **state)
{
    struct env *e = *state;
    struct uart *u = &e->uart;
    e->regs.gpr[PGM_RDI] = UART_VA;
    /* 115200 baud: DLAB, divisor 1, then 8N1 */
    uart_out(e, 3, LCR_DLAB);
    uart_out(e, 0, 0x01);
    uart_out(e, 1, 0x00);
    assert_int_equal(uart_in(e, 0), 0x01); /* DLL reads back under DLAB */
    uart_out(e, 3, 0x03);
    assert_int_equal(u->dll, 1);
    assert_int_equal(u->dlm, 0);
    assert_int_equal(u->lcr, 3);
    assert_int_equal(u->ntx, 0);           /* the divisor writes were not characters */
    uart_out(e, 1, 0xf1);                  /* IER keeps its 4 low bits */
    assert_int_equal(u->ier, 0x01);
    assert_int_equal(uart_in(e, 1), 0x01);
    /* polled transmit */
    const char *msg = "Hi!\n";
    for (const char *c = msg; *c; c++) {
        assert_int_equal(uart_in(e, 5) & LSR_THRE, LSR_THRE);
        uart_out(e, 0, (uint8_t)*c);
    }
    assert_int_equal(u->ntx, 4);
    assert_memory_equal(u->tx, msg, 4);
    /* receive: the FIFO drains in order, DR follows it, an empty RBR reads 0 */
    assert_int_equal(uart_in(e, 5), LSR_THRE | LSR_TEMT);
    u->rx[u->rx_tail++ % 16] = 'o';
    u->rx[u->rx_tail++ % 16] = 'k';
    assert_int_equal(uart_in(e, 5), LSR_THRE | LSR_TEMT | LSR_DR);
    assert_int_equal(uart_in(e, 0), 'o');
    assert_int_equal(uart_in(e, 5) & LSR_DR, LSR_DR);
    assert_int_equal(uart_in(e, 0), 'k');
    assert_int_equal(uart_in(e, 5) & LSR_DR, 0);
    assert_int_equal(uart_in(e, 0), 0);
    /* scratch register, with a store of an immediate: mov byte [rdi+7], 0x5a */
    struct operand scr = { PGM_RDI, 7, true };
    exec(e, "\xc6\x47\x07\x5a", 4, &scr, 1);
    assert_int_equal(u->scr, 0x5a);
    assert_int_equal(uart_in(e, 7), 0x5a);
    /* every access was a byte, and every one reached the device exactly once */
    assert_int_equal(u->bad_size, 0);
    assert_int_equal(u->calls, 24);
}

static uint64_t
rf_reg(struct env *e, unsigned off, unsigned size)
{
    uint64_t v = 0;
    memcpy(&v, e->rf.r + off, size);
    return v;
}

/* Loads and stores of every size on the register file, and MOVZX. */
static void
test_regfile_sizes(void **state)
{
    struct env *e = *state;
    struct regfile *rf = &e->rf;
    e->regs.gpr[PGM_RDI] = RF_VA;
    e->regs.gpr[PGM_RAX] = 0x8877665544332211ull;
    exec(e, "\x88\x07", 2, &AT_RDI_W, 1);                 /* mov [rdi], al */
    assert_true(rf->last_size == 1 && rf->last_write && rf->last_gpa == RF_GPA);
    assert_true(rf_reg(e, 0, 8) == 0x11);
    e->regs.gpr[PGM_RDI] = RF_VA + 8;
    exec(e, "\x66\x89\x07", 3, &AT_RDI_W, 1);             /* mov [rdi], ax */
    assert_true(rf->last_size == 2 && rf_reg(e, 8, 8) == 0x2211);
    e->regs.gpr[PGM_RDI] = RF_VA + 16;
    exec(e, "\x89\x07", 2, &AT_RDI_W, 1);                 /* mov [rdi], eax */
    assert_true(rf->last_size == 4 && rf_reg(e, 16, 8) == 0x44332211);
    e->regs.gpr[PGM_RDI] = RF_VA + 24;
    exec(e, "\x48\x89\x07", 3, &AT_RDI_W, 1);             /* mov [rdi], rax */
    assert_true(rf->last_size == 8 && rf_reg(e, 24, 8) == 0x8877665544332211ull);
    e->regs.gpr[PGM_RDI] = RF_VA + 32;
    exec(e, "\xc7\x07\x78\x56\x34\xf2", 6, &AT_RDI_W, 1); /* mov dword [rdi], 0xf2345678 */
    assert_true(rf->last_size == 4 && rf_reg(e, 32, 8) == 0xf2345678);

    /* loads: the ID register, 0x1122334455667788, at 0x40 */
    e->regs.gpr[PGM_RDI] = RF_VA + 0x40;
    e->regs.gpr[PGM_RAX] = ~0ull;
    exec(e, "\x8a\x07", 2, &AT_RDI_R, 1);                 /* mov al, [rdi] */
    assert_true(e->regs.gpr[PGM_RAX] == 0xffffffffffffff88ull);
    exec(e, "\x66\x8b\x07", 3, &AT_RDI_R, 1);             /* mov ax, [rdi] */
    assert_true(e->regs.gpr[PGM_RAX] == 0xffffffffffff7788ull);
    exec(e, "\x8b\x07", 2, &AT_RDI_R, 1);                 /* mov eax, [rdi]: zero-extends */
    assert_true(e->regs.gpr[PGM_RAX] == 0x55667788ull);
    exec(e, "\x48\x8b\x07", 3, &AT_RDI_R, 1);             /* mov rax, [rdi] */
    assert_true(e->regs.gpr[PGM_RAX] == RF_ID);
    assert_true(rf->last_size == 8 && !rf->last_write);
    e->regs.gpr[PGM_RAX] = ~0ull;
    e->regs.gpr[PGM_RDI] = RF_VA + 0x47;
    exec(e, "\x0f\xb6\x07", 3, &AT_RDI_R, 1);             /* movzx eax, byte [rdi] */
    assert_true(e->regs.gpr[PGM_RAX] == 0x11);
    e->regs.gpr[PGM_RAX] = ~0ull;
    e->regs.gpr[PGM_RDI] = RF_VA + 0x43;
    exec(e, "\x48\x0f\xb7\x07", 4, &AT_RDI_R, 1);         /* movzx rax, word [rdi] */
    assert_true(e->regs.gpr[PGM_RAX] == 0x4455);
    /* a dword straddling registers 0 and 1: one access, 4 bytes */
    e->regs.gpr[PGM_RDI] = RF_VA + 6;
    e->regs.gpr[PGM_RCX] = 0xa1b2c3d4;
    exec(e, "\x89\x0f", 2, &AT_RDI_W, 1);                 /* mov [rdi], ecx */
    assert_true(rf->last_gpa == RF_GPA + 6 && rf->last_size == 4);
    assert_true(rf_reg(e, 0, 8) == 0xc3d4000000000011ull);
    assert_true(rf_reg(e, 8, 8) == 0xa1b2); /* bytes 8, 9 replaced, 0x2211 gone */
    /* every instruction trapped (MMIO is never mapped) and was emulated there */
    assert_int_equal(e->natives, 0);
}

/* Read-modify-write, compare, sign extension and string instructions on MMIO. */
static void
test_regfile_more(void **state)
{
    struct env *e = *state;
    struct regfile *rf = &e->rf;
    e->regs.gpr[PGM_RDI] = RF_VA + 0x40; /* ID: bytes 88 77 66 55 44 33 22 11 */
    e->regs.gpr[PGM_RAX] = 0;
    exec(e, "\x0f\xbe\x07", 3, &AT_RDI_R, 1);             /* movsx eax, byte [rdi] */
    assert_true(e->regs.gpr[PGM_RAX] == 0xffffff88ull);
    exec(e, "\x81\x3f\x88\x77\x66\x55", 6, &AT_RDI_R, 1); /* cmp dword [rdi], 0x55667788 */
    assert_true(e->regs.rflags & PGM_RFLAGS_ZF);
    exec(e, "\xf6\x07\x01", 3, &AT_RDI_R, 1);             /* test byte [rdi], 1: 0x88 & 1 */
    assert_true(e->regs.rflags & PGM_RFLAGS_ZF);
    exec(e, "\xf6\x07\x80", 3, &AT_RDI_R, 1);             /* test byte [rdi], 0x80 */
    assert_false(e->regs.rflags & PGM_RFLAGS_ZF);
    assert_true(e->regs.rflags & PGM_RFLAGS_SF);
    /* or dword [rdi], 0x100 on register 1: a read, then a write */
    memset(rf->r + 8, 0, 8);
    rf->r[8] = 0x21;
    e->regs.gpr[PGM_RDI] = RF_VA + 8;
    unsigned calls = rf->calls;
    exec(e, "\x81\x0f\x00\x01\x00\x00", 6, &AT_RDI_W, 1);
    assert_int_equal(rf->calls, calls + 2);
    assert_true(rf_reg(e, 8, 8) == 0x121);
    /* xchg [rdi], eax: the old value comes back, the new one is stored */
    e->regs.gpr[PGM_RAX] = 0xcafe;
    exec(e, "\x87\x07", 2, &AT_RDI_W, 1);
    assert_true(e->regs.gpr[PGM_RAX] == 0x121);
    assert_true(rf_reg(e, 8, 8) == 0xcafe);
    /* rep stosd over registers 2 and 3: four dword writes */
    e->regs.gpr[PGM_RDI] = RF_VA + 16;
    e->regs.gpr[PGM_RCX] = 4;
    e->regs.gpr[PGM_RAX] = 0x5a5a0101;
    calls = rf->calls;
    exec(e, "\xf3\xab", 2, &AT_RDI_W, 1);
    assert_int_equal(rf->calls, calls + 4);
    assert_true(rf_reg(e, 16, 8) == 0x5a5a01015a5a0101ull && rf_reg(e, 24, 8) == rf_reg(e, 16, 8));
    assert_true(e->regs.gpr[PGM_RCX] == 0 && e->regs.gpr[PGM_RDI] == RF_VA + 32);
    /* rep movsb from the ID register into RAM (a driver draining a FIFO) */
    e->regs.gpr[PGM_RSI] = RF_VA + 0x40;
    e->regs.gpr[PGM_RDI] = AFTER_VA + 0x100;
    e->regs.gpr[PGM_RCX] = 8;
    const struct operand movs[2] = { { PGM_RSI, 0, false }, { PGM_RDI, 0, true } };
    exec(e, "\xf3\xa4", 2, movs, 2);
    uint64_t got = 0;
    assert_int_equal(pgm_phys_read(e->vm, AFTER_GPA + 0x100, &got, 8), 0);
    assert_true(got == RF_ID);
    assert_true(e->regs.gpr[PGM_RSI] == RF_VA + 0x48);
}

static uint32_t
fb_pixel(struct env *e, unsigned x, unsigned y)
{
    uint32_t v = 0;
    assert_int_equal(pgm_phys_read(e->vm, FB_GPA + (y * FB_W + x) * 4ull, &v, 4), 0);
    return v;
}

static uint64_t
fb_va(unsigned x, unsigned y)
{
    return FB_VA + (y * FB_W + x) * 4ull;
}

static void
test_framebuffer(void **state)
{
    struct env *e = *state;
    struct fb *fb = &e->fb;
    /* one pixel per store size */
    e->regs.gpr[PGM_RDI] = fb_va(3, 2);
    e->regs.gpr[PGM_RAX] = 0x00ff8040;
    exec(e, "\x89\x07", 2, &AT_RDI_W, 1);                 /* mov [rdi], eax */
    assert_int_equal(fb_pixel(e, 3, 2), 0x00ff8040);
    fb_expect(fb, 3, 2, 3, 2);
    e->regs.gpr[PGM_RDI] = fb_va(127, 0) + 1;
    exec(e, "\x88\x07", 2, &AT_RDI_W, 1);                 /* mov [rdi], al: green of (127,0) */
    assert_int_equal(fb_pixel(e, 127, 0), 0x4000);
    fb_expect(fb, 127, 0, 127, 0);
    e->regs.gpr[PGM_RDI] = fb_va(10, 10) + 2;
    exec(e, "\x66\x89\x07", 3, &AT_RDI_W, 1);             /* mov [rdi], ax: bytes 2, 3 */
    assert_int_equal(fb_pixel(e, 10, 10), 0x80400000);
    fb_expect(fb, 10, 10, 10, 10);
    e->regs.gpr[PGM_RDI] = fb_va(20, 5);
    e->regs.gpr[PGM_RAX] = 0x1111111122222222ull;
    exec(e, "\x48\x89\x07", 3, &AT_RDI_W, 1);             /* mov [rdi], rax: 2 pixels */
    assert_int_equal(fb_pixel(e, 20, 5), 0x22222222);
    assert_int_equal(fb_pixel(e, 21, 5), 0x11111111);
    fb_expect(fb, 20, 5, 21, 5);

    /* reads are plain: no callback, the shadow maps the page (read-only) */
    unsigned calls = fb->calls;
    e->regs.gpr[PGM_RDI] = fb_va(20, 5);
    exec(e, "\x8b\x07", 2, &AT_RDI_R, 1);                 /* mov eax, [rdi] */
    assert_true(e->regs.gpr[PGM_RAX] == 0x22222222);
    exec(e, "\x0f\xb7\x07", 3, &AT_RDI_R, 1);             /* movzx eax, word [rdi] */
    assert_true(e->regs.gpr[PGM_RAX] == 0x2222);
    assert_int_equal(fb->calls, calls);
    assert_false(fb->damaged);
    assert_true(e->natives >= 1); /* the read after the sync ran without libpgm */
    assert_true(shadow_allows(e, fb_va(20, 5), false));
    assert_false(shadow_allows(e, fb_va(20, 5), true));

    /* REP STOSB over a page boundary: bytes 4000 .. 4199 (rows 7 and 8) */
    e->regs.gpr[PGM_RDI] = FB_VA + 4000;
    e->regs.gpr[PGM_RCX] = 200;
    e->regs.gpr[PGM_RAX] = 0x7e;
    exec(e, "\xf3\xaa", 2, &AT_RDI_W, 1);
    assert_true(e->regs.gpr[PGM_RCX] == 0 && e->regs.gpr[PGM_RDI] == FB_VA + 4200);
    uint8_t row[200], want[200];
    memset(want, 0x7e, sizeof(want));
    assert_int_equal(pgm_phys_read(e->vm, FB_GPA + 4000, row, 200), 0);
    assert_memory_equal(row, want, 200);
    fb_expect(fb, 0, 7, 127, 8); /* (104,7) .. (127,7) and (0,8) .. (25,8) */

    /* REP MOVSB of a 64-byte sprite line to (16,100) */
    uint8_t sprite[64];
    for (unsigned i = 0; i < 64; i++)
        sprite[i] = (uint8_t)(i * 3 + 1);
    assert_int_equal(pgm_phys_write(e->vm, SPRITE_GPA, sprite, 64), 0);
    e->regs.gpr[PGM_RSI] = SPRITE_VA;
    e->regs.gpr[PGM_RDI] = fb_va(16, 100);
    e->regs.gpr[PGM_RCX] = 64;
    const struct operand movs[2] = { { PGM_RSI, 0, false }, { PGM_RDI, 0, true } };
    exec(e, "\xf3\xa4", 2, movs, 2);
    assert_true(e->regs.gpr[PGM_RCX] == 0 && e->regs.gpr[PGM_RSI] == SPRITE_VA + 64);
    uint8_t got[64];
    assert_int_equal(pgm_phys_read(e->vm, FB_GPA + (100 * FB_W + 16) * 4, got, 64), 0);
    assert_memory_equal(got, sprite, 64);
    fb_expect(fb, 16, 100, 31, 100);

    /* a qword straddling the framebuffer's end: the handler sees the first 4 bytes */
    e->regs.gpr[PGM_RDI] = FB_VA + FB_SIZE - 4;
    e->regs.gpr[PGM_RAX] = 0xaaaaaaaabbbbbbbbull;
    calls = fb->calls;
    exec(e, "\x48\x89\x07", 3, &AT_RDI_W, 1);
    assert_int_equal(fb->calls, calls + 1);
    fb_expect(fb, 127, 127, 127, 127);
    assert_int_equal(fb_pixel(e, 127, 127), 0xbbbbbbbb);
    uint32_t after = 0;
    assert_int_equal(pgm_phys_read(e->vm, AFTER_GPA, &after, 4), 0);
    assert_int_equal(after, 0xaaaaaaaa);
}

/* The same framebuffer tracked with a dirty log instead: damage per page. */
static void
test_framebuffer_dirty_log(void **state)
{
    struct env *e = *state;
    assert_int_equal(pgm_handler_deregister(e->vm, FB_GPA), 0);
    audit(e);
    assert_int_equal(pgm_dirty_log_start(e->vm, FB_GPA, FB_SIZE), 0);
    uint64_t bm = ~0ull;
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, FB_GPA, &bm), 0);
    assert_true(bm == 0);
    /* rows 24 .. 40 of the first 16 pixels: pages 3, 4, 5 (8 rows per page) */
    for (unsigned y = 24; y <= 40; y++) {
        e->regs.gpr[PGM_RDI] = fb_va(0, y);
        e->regs.gpr[PGM_RCX] = 64;
        e->regs.gpr[PGM_RAX] = y;
        exec(e, "\xf3\xaa", 2, &AT_RDI_W, 1);
    }
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, FB_GPA, &bm), 0);
    assert_true(bm == 0x38);
    assert_int_equal(fb_pixel(e, 15, 40), 0x28282828);
    /* once a page is reported, the next round starts clean; a read is not a write */
    e->regs.gpr[PGM_RDI] = fb_va(0, 24);
    exec(e, "\x8b\x07", 2, &AT_RDI_R, 1);
    assert_true(e->regs.gpr[PGM_RAX] == 0x18181818);
    e->regs.gpr[PGM_RDI] = fb_va(5, 127);
    exec(e, "\x89\x07", 2, &AT_RDI_W, 1);
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, FB_GPA, &bm), 0);
    assert_true(bm == 0x8000);
    assert_int_equal(pgm_dirty_log_stop(e->vm, FB_GPA), 0);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_uart),
        T(test_regfile_sizes),
        T(test_regfile_more),
        T(test_framebuffer),
        T(test_framebuffer_dirty_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
