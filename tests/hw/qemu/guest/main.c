/* SPDX-License-Identifier: MIT */
/*
 * QEMU walk harness guest: home-state code (32-bit protected mode, paging
 * off, flat segments). Reads the case blob the host loaded, and for each case
 * writes the case's memory, maps the harness into one top-level slot of the
 * case's tables, runs the access through qg_excursion() (tramp.S), reads the
 * memory back, and, for a successful access, runs a second excursion (the
 * "D probe": a supervisor write with CR0.WP, SMEP, SMAP and PKRU out of the
 * way, after clearing bit 6 of every listed paging-entry word) so the host can
 * tell which entry the CPU used as the leaf. Results go to the debugcon port.
 *
 * Result line per case (hex numbers, no 0x):
 *   R <idx> <vec> <ec> <cr2> <rip> <cl> m=<v0>,<v1>.. [P <vec> <ec> <cr2> <rip> <cl> m=..] .
 * (the access, then the D probe if it ran; the values of the listed mem
 * items after each)
 */
#include <stddef.h>
#include <stdint.h>

#include "qg.h"

#define HB ((uint32_t)QG_HB)
#define PHYS(off) ((uint32_t)(QG_HB + (off)))

#define PTE_P  0x1u
#define PTE_RW 0x2u
#define PTE_US 0x4u

#define CR0_PE 0x1u
#define CR0_ET 0x10u
#define CR0_NE 0x20u
#define CR0_WP 0x10000u
#define CR0_PG 0x80000000u
#define CR4_SMEP (1u << 20)
#define CR4_SMAP (1u << 21)

void qg_main(void);
int qg_excursion(void);
extern char qg_stubs[], qg_stubs_end[];
extern char qg_vec32_0[], qg_vec32_1[], qg_vec32_2[], qg_vec32_3[], qg_vec32_4[], qg_vec32_5[],
    qg_vec32_6[], qg_vec32_7[], qg_vec32_8[], qg_vec32_9[], qg_vec32_10[], qg_vec32_11[],
    qg_vec32_12[], qg_vec32_13[], qg_vec32_14[], qg_vec32_15[], qg_vec32_16[], qg_vec32_17[],
    qg_vec32_18[], qg_vec32_19[], qg_vec32_20[], qg_vec32_21[], qg_vec32_22[], qg_vec32_23[],
    qg_vec32_24[], qg_vec32_25[], qg_vec32_26[], qg_vec32_27[], qg_vec32_28[], qg_vec32_29[],
    qg_vec32_30[], qg_vec32_31[], qg_vec32_64[];
extern char qg_vec64_0[], qg_vec64_1[], qg_vec64_2[], qg_vec64_3[], qg_vec64_4[], qg_vec64_5[],
    qg_vec64_6[], qg_vec64_7[], qg_vec64_8[], qg_vec64_9[], qg_vec64_10[], qg_vec64_11[],
    qg_vec64_12[], qg_vec64_13[], qg_vec64_14[], qg_vec64_15[], qg_vec64_16[], qg_vec64_17[],
    qg_vec64_18[], qg_vec64_19[], qg_vec64_20[], qg_vec64_21[], qg_vec64_22[], qg_vec64_23[],
    qg_vec64_24[], qg_vec64_25[], qg_vec64_26[], qg_vec64_27[], qg_vec64_28[], qg_vec64_29[],
    qg_vec64_30[], qg_vec64_31[], qg_vec64_64[];

static char *const vec32[33] = {
    qg_vec32_0,  qg_vec32_1,  qg_vec32_2,  qg_vec32_3,  qg_vec32_4,  qg_vec32_5,  qg_vec32_6,
    qg_vec32_7,  qg_vec32_8,  qg_vec32_9,  qg_vec32_10, qg_vec32_11, qg_vec32_12, qg_vec32_13,
    qg_vec32_14, qg_vec32_15, qg_vec32_16, qg_vec32_17, qg_vec32_18, qg_vec32_19, qg_vec32_20,
    qg_vec32_21, qg_vec32_22, qg_vec32_23, qg_vec32_24, qg_vec32_25, qg_vec32_26, qg_vec32_27,
    qg_vec32_28, qg_vec32_29, qg_vec32_30, qg_vec32_31, qg_vec32_64,
};
static char *const vec64[33] = {
    qg_vec64_0,  qg_vec64_1,  qg_vec64_2,  qg_vec64_3,  qg_vec64_4,  qg_vec64_5,  qg_vec64_6,
    qg_vec64_7,  qg_vec64_8,  qg_vec64_9,  qg_vec64_10, qg_vec64_11, qg_vec64_12, qg_vec64_13,
    qg_vec64_14, qg_vec64_15, qg_vec64_16, qg_vec64_17, qg_vec64_18, qg_vec64_19, qg_vec64_20,
    qg_vec64_21, qg_vec64_22, qg_vec64_23, qg_vec64_24, qg_vec64_25, qg_vec64_26, qg_vec64_27,
    qg_vec64_28, qg_vec64_29, qg_vec64_30, qg_vec64_31, qg_vec64_64,
};

uint8_t qg_home_stack[QG_HOME_STACK_SIZE] __attribute__((aligned(16)));
static uint64_t home_idt[32] __attribute__((aligned(16)));

/* ------------------------------------------------------------------ I/O */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static char obuf[4096];
static unsigned olen;

static void oflush(void)
{
    const char *p = obuf;
    unsigned n = olen;

    __asm__ volatile("rep outsb" : "+S"(p), "+c"(n) : "d"(0xe9) : "memory");
    olen = 0;
}

static void oput(char c)
{
    if (olen == sizeof(obuf))
        oflush();
    obuf[olen++] = c;
}

static void ostr(const char *s)
{
    while (*s)
        oput(*s++);
}

static void ohex(uint64_t v)
{
    char tmp[16];
    int n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        oput(tmp[--n]);
}

static void pci_w8(unsigned dev, unsigned reg, uint8_t v)
{
    outl(0xcf8, 0x80000000u | (dev << 11) | (reg & 0xfcu));
    outb((uint16_t)(0xcfc + (reg & 3u)), v);
}

static __attribute__((noreturn)) void qg_exit(uint32_t code)
{
    oflush();
    outl(0xf4, code); /* isa-debug-exit: QEMU exits with (code << 1) | 1 */
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* ------------------------------------------------------------- memory */

static inline volatile uint32_t *p32(uint32_t pa)
{
    return (volatile uint32_t *)(uintptr_t)pa;
}

static inline volatile uint8_t *p8(uint32_t pa)
{
    return (volatile uint8_t *)(uintptr_t)pa;
}

static void wr(uint32_t pa, uint64_t v, unsigned size)
{
    p32(pa)[0] = (uint32_t)v;
    if (size == 8)
        p32(pa)[1] = (uint32_t)(v >> 32);
}

static uint64_t rd(uint32_t pa, unsigned size)
{
    uint64_t v = p32(pa)[0];

    if (size == 8)
        v |= (uint64_t)p32(pa)[1] << 32;
    return v;
}

static void zero(uint32_t pa, uint32_t len)
{
    void *d = (void *)(uintptr_t)pa;
    uint32_t n = len / 4;

    __asm__ volatile("rep stosl" : "+D"(d), "+c"(n) : "a"(0) : "memory");
}

static void copy(uint32_t dst, uint32_t src, uint32_t len)
{
    void *d = (void *)(uintptr_t)dst;
    const void *s = (const void *)(uintptr_t)src;
    uint32_t n = len;

    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

/* --------------------------------------------------------- descriptors */

static uint64_t seg_desc(uint32_t base, unsigned access, unsigned flags)
{
    uint64_t d = 0xffff; /* limit 15:0 */

    d |= (uint64_t)(base & 0xffffff) << 16;
    d |= (uint64_t)(access & 0xff) << 40;
    d |= (uint64_t)0xf << 48; /* limit 19:16 */
    d |= (uint64_t)(flags & 0xf) << 52;
    d |= (uint64_t)(base >> 24) << 56;
    return d;
}

static volatile uint64_t *gdt(void)
{
    return (volatile uint64_t *)(uintptr_t)PHYS(QG_OFF_GDT);
}

static void gdt_init(void)
{
    volatile uint64_t *g = gdt();

    for (unsigned i = 0; i < QG_GDT_ENTRIES; i++)
        g[i] = 0;
    g[QG_SEL_CODE32 / 8] = seg_desc(0, 0x9a, 0xc);
    g[QG_SEL_DATA32 / 8] = seg_desc(0, 0x92, 0xc);
    g[QG_SEL_CODE64 / 8] = seg_desc(0, 0x9a, 0xa);
    for (unsigned k = 1; k <= 3; k++) {
        g[QG_SEL_FCODE(k) / 8] = seg_desc(0, 0x9a | (k << 5), 0xc);
        g[QG_SEL_FDATA(k) / 8] = seg_desc(0, 0x92 | (k << 5), 0xc);
        g[QG_SEL_C64(k) / 8] = seg_desc(0, 0x9a | (k << 5), 0xa);
    }
}

/* Per-case descriptors: delta segments and the TSS. */
static void gdt_case(int longmode, uint64_t delta)
{
    volatile uint64_t *g = gdt();
    uint32_t d32 = (uint32_t)delta;
    uint64_t tss_va = PHYS(QG_OFF_TSS) + delta;
    volatile uint32_t *tss = p32(PHYS(QG_OFF_TSS));

    g[QG_SEL_DCODE0 / 8] = seg_desc(d32, 0x9a, 0xc);
    g[QG_SEL_DDATA0 / 8] = seg_desc(d32, 0x92, 0xc);
    for (unsigned k = 1; k <= 3; k++) {
        g[QG_SEL_DCODE(k) / 8] = seg_desc(d32, 0x9a | (k << 5), 0xc);
        g[QG_SEL_DDATA(k) / 8] = seg_desc(d32, 0x92 | (k << 5), 0xc);
    }
    /* TSS descriptor: limit 0x67, type 9 (available), present */
    {
        uint64_t lo = 0x67;

        lo |= (tss_va & 0xffffff) << 16;
        lo |= (uint64_t)0x89 << 40;
        lo |= ((tss_va >> 24) & 0xff) << 56;
        g[QG_SEL_TSS / 8] = lo;
        g[QG_SEL_TSS / 8 + 1] = longmode ? (tss_va >> 32) : 0;
    }
    for (unsigned i = 0; i < 0x68 / 4; i++)
        tss[i] = 0;
    if (longmode) {
        uint64_t rsp0 = PHYS(QG_OFF_STACKTOP) + delta;

        tss[1] = (uint32_t)rsp0;
        tss[2] = (uint32_t)(rsp0 >> 32);
    } else {
        tss[1] = PHYS(QG_OFF_STACKTOP);
        tss[2] = QG_SEL_DDATA0;
    }
    tss[0x64 / 4] = 0x68u << 16; /* I/O map base beyond the limit */
}

static void idt32_init(void)
{
    volatile uint64_t *idt = (volatile uint64_t *)(uintptr_t)PHYS(QG_OFF_IDT32);

    for (unsigned i = 0; i < 256; i++)
        idt[i] = 0;
    for (unsigned i = 0; i < 33; i++) {
        uint32_t off = (uint32_t)(uintptr_t)vec32[i];
        unsigned v = i == 32 ? QG_VEC_DONE : i;

        /* 32-bit interrupt gate, DPL3 (so int3 / int $0x40 work from CPL3) */
        idt[v] = (off & 0xffff) | ((uint64_t)QG_SEL_DCODE0 << 16) | ((uint64_t)0xee << 40) |
                 ((uint64_t)(off >> 16) << 48);
    }
}

static uint64_t idt64_delta = 1; /* impossible value: forces the first build */

static void idt64_build(uint64_t delta)
{
    volatile uint64_t *idt = (volatile uint64_t *)(uintptr_t)PHYS(QG_OFF_IDT64);

    if (delta == idt64_delta)
        return;
    idt64_delta = delta;
    for (unsigned i = 0; i < 512; i++)
        idt[i] = 0;
    for (unsigned i = 0; i < 33; i++) {
        uint64_t off = (uint32_t)(uintptr_t)vec64[i] + delta;
        unsigned v = i == 32 ? QG_VEC_DONE : i;

        idt[2 * v] = (off & 0xffff) | ((uint64_t)QG_SEL_CODE64 << 16) | ((uint64_t)0xee << 40) |
                     (((off >> 16) & 0xffff) << 48);
        idt[2 * v + 1] = off >> 32;
    }
}

static void home_fault(void)
{
    ostr("\nPANIC home-mode exception\n");
    qg_exit(3);
}

static void home_idt_init(void)
{
    uint32_t off = (uint32_t)(uintptr_t)home_fault;

    for (unsigned i = 0; i < 32; i++)
        home_idt[i] = (off & 0xffff) | ((uint64_t)QG_SEL_CODE32 << 16) | ((uint64_t)0x8e << 40) |
                      ((uint64_t)(off >> 16) << 48);
}

static void set_dtr(unsigned ccb_off, uint64_t base, uint16_t limit)
{
    volatile uint8_t *p = p8(PHYS(QG_OFF_CCB) + ccb_off);

    *(volatile uint16_t *)p = limit;
    *(volatile uint32_t *)(p + 2) = (uint32_t)base;
    *(volatile uint32_t *)(p + 6) = (uint32_t)(base >> 32);
}

/* -------------------------------------------------------------- tables */

static int page_is_user(uint32_t off)
{
    return off == QG_OFF_USTUB || off == QG_OFF_USCR;
}

static void tables_init(void)
{
    volatile uint32_t *pt32 = p32(PHYS(QG_OFF_PT32));

    for (uint32_t off = QG_OFF_PT32; off < QG_OFF_PML5 + 0x1000; off += 0x1000)
        zero(PHYS(off), 0x1000);
    for (uint32_t i = 0; i < QG_MAP_SIZE / 0x1000; i++) {
        uint32_t e = (HB + i * 0x1000) | PTE_P | PTE_RW | (page_is_user(i * 0x1000) ? PTE_US : 0);

        pt32[i] = e;
        wr(PHYS(QG_OFF_PT) + i * 8, e, 8);
    }
    wr(PHYS(QG_OFF_PD) + ((HB >> 21) & 511) * 8, PHYS(QG_OFF_PT) | 7, 8);
    wr(PHYS(QG_OFF_PDPT) + ((HB >> 30) & 511) * 8, PHYS(QG_OFF_PD) | 7, 8);
    wr(PHYS(QG_OFF_PML4), PHYS(QG_OFF_PDPT) | 7, 8);
    wr(PHYS(QG_OFF_PML5), PHYS(QG_OFF_PML4) | 7, 8);
    wr(PHYS(QG_OFF_PD32) + (HB >> 22) * 4, PHYS(QG_OFF_PT32) | 7, 4);
    wr(PHYS(QG_OFF_PDPTPAE) + (HB >> 30) * 8, PHYS(QG_OFF_PD) | 1, 8);
}

/* The harness's own top-level table of @mode and the identity slot in it. */
static void harness_top(uint32_t mode, uint32_t *table, uint32_t *ident, unsigned *esize,
                        uint64_t *val)
{
    switch (mode) {
    case QG_MODE_32:
        *table = PHYS(QG_OFF_PD32);
        *ident = HB >> 22;
        *esize = 4;
        *val = PHYS(QG_OFF_PT32) | 7;
        break;
    case QG_MODE_PAE:
        *table = PHYS(QG_OFF_PDPTPAE);
        *ident = HB >> 30;
        *esize = 8;
        *val = PHYS(QG_OFF_PD) | 1;
        break;
    case QG_MODE_LM4:
        *table = PHYS(QG_OFF_PML4);
        *ident = 0;
        *esize = 8;
        *val = PHYS(QG_OFF_PDPT) | 7;
        break;
    default:
        *table = PHYS(QG_OFF_PML5);
        *ident = 0;
        *esize = 8;
        *val = PHYS(QG_OFF_PML4) | 7;
        break;
    }
}

static void harness_slot(uint32_t mode, uint32_t slot, int set)
{
    uint32_t table, ident;
    unsigned esize;
    uint64_t val;

    harness_top(mode, &table, &ident, &esize, &val);
    if (slot == ident)
        return;
    wr(table + slot * esize, set ? val : 0, esize);
}

static uint64_t slot_delta(uint32_t mode, uint32_t slot)
{
    unsigned shift = QG_VA_SLOT_SHIFT(mode);
    uint64_t va = ((uint64_t)slot << shift) | (HB & (((uint64_t)1 << shift) - 1));

    if (mode == QG_MODE_LM4 && (va >> 47) & 1)
        va |= ~(((uint64_t)1 << 48) - 1);
    if (mode == QG_MODE_LM5 && (va >> 56) & 1)
        va |= ~(((uint64_t)1 << 57) - 1);
    return va - HB;
}

/* ---------------------------------------------------------------- cases */

static uint64_t ccb_r64(unsigned off)
{
    return rd(PHYS(QG_OFF_CCB) + off, 8);
}

static uint32_t ccb_r32(unsigned off)
{
    return p32(PHYS(QG_OFF_CCB) + off)[0];
}

static void ccb_w64(unsigned off, uint64_t v)
{
    wr(PHYS(QG_OFF_CCB) + off, v, 8);
}

static void ccb_w32(unsigned off, uint32_t v)
{
    p32(PHYS(QG_OFF_CCB) + off)[0] = v;
}

/* Set up the control block for one excursion. */
static void prepare(const struct qg_case *c, int probe)
{
    uint32_t mode = c->mode;
    int lm = mode >= QG_MODE_LM4;
    uint64_t delta = slot_delta(mode, c->slot);
    unsigned k = probe ? 0 : c->cpl;
    unsigned acc = probe ? QG_ACC_W : c->acc;
    uint32_t table, ident;
    unsigned esize;
    uint64_t val, scratch, sp, ip;
    uint32_t cs, ss, fl;

    harness_top(mode, &table, &ident, &esize, &val);
    ccb_w32(CCB_MODE, mode);
    ccb_w32(CCB_CR0, CR0_PE | CR0_ET | CR0_NE | CR0_PG | (c->cr0 & CR0_WP & (probe ? 0 : ~0u)));
    ccb_w32(CCB_CR4, probe ? c->cr4 & ~(CR4_SMEP | CR4_SMAP) : c->cr4);
    ccb_w32(CCB_EFER, c->efer);
    ccb_w32(CCB_HCR3, table);
    ccb_w32(CCB_PKRU, probe ? 0 : c->pkru);
    ccb_w64(CCB_CR3, c->cr3);
    ccb_w64(CCB_DELTA, delta);
    ccb_w64(CCB_VA, c->va);
    ccb_w32(CCB_VECTOR, 0xff);

    /* For a fetch that may run something other than the planted int3 (the
     * 00 00 QEMU fetches from unassigned space: add %al,(%rax)), the GPRs
     * are non-canonical (IA-32e: #GP at VA), or (legacy modes) DS is null
     * and the GPRs point at an unmapped page of the harness slot (QEMU
     * ignores the null DS and raises #PF there; hardware would raise #GP),
     * so the instruction faults at VA without touching memory. */
    scratch = PHYS(k == 3 ? QG_OFF_USCR : QG_OFF_SSCR) + 0x100;
    sp = PHYS(k == 3 ? QG_OFF_USCR : QG_OFF_SSCR) + 0x800;
    fl = 0x2 | (!probe && c->ac ? 0x40000u : 0) | (acc == QG_ACC_X ? 0x100u : 0);
    if (!lm) {
        uint32_t stub = k == 3 ? PHYS(QG_OFF_USTUB) : (uint32_t)(uintptr_t)qg_stubs;

        if (acc == QG_ACC_X) {
            cs = k ? QG_SEL_FCODE(k) | k : QG_SEL_CODE32;
            ip = c->va;
        } else {
            cs = k ? QG_SEL_DCODE(k) | k : QG_SEL_DCODE0;
            ip = stub + (acc == QG_ACC_W ? 0x10 : 0);
        }
        ss = k ? QG_SEL_DDATA(k) | k : QG_SEL_DDATA0;
        ccb_w32(CCB_DSEL, k ? QG_SEL_FDATA(k) | k : QG_SEL_DATA32);
        ccb_w32(CCB_DSSEL, acc == QG_ACC_X ? 0 : k ? QG_SEL_DDATA(k) | k : QG_SEL_DDATA0);
        if (acc == QG_ACC_X)
            scratch = (uint32_t)(HB + QG_UNMAPPED_OFF + delta);
        ccb_w64(CCB_RAX, acc == QG_ACC_X ? scratch : c->va);
        gdt_case(0, delta);
        set_dtr(CCB_GDTR_SLOT, (uint32_t)(PHYS(QG_OFF_GDT) + delta), QG_GDT_ENTRIES * 8 - 1);
        set_dtr(CCB_IDTR_SLOT, (uint32_t)(PHYS(QG_OFF_IDT32) + delta), 256 * 8 - 1);
    } else {
        uint64_t stub = (k == 3 ? PHYS(QG_OFF_USTUB) : (uint32_t)(uintptr_t)qg_stubs) + delta;

        scratch = acc == QG_ACC_X ? 0x8000000000000000ull : scratch + delta;
        sp += delta;
        if (acc == QG_ACC_X) {
            ip = c->va;
        } else {
            ip = stub + (acc == QG_ACC_W ? 0x30 : 0x20);
        }
        cs = k ? QG_SEL_C64(k) | k : QG_SEL_CODE64;
        ss = k ? QG_SEL_FDATA(k) | k : QG_SEL_DATA32;
        ccb_w64(CCB_RAX, acc == QG_ACC_X ? scratch : c->va);
        gdt_case(1, delta);
        idt64_build(delta);
        set_dtr(CCB_GDTR_SLOT, PHYS(QG_OFF_GDT) + delta, QG_GDT_ENTRIES * 8 - 1);
        set_dtr(CCB_IDTR_SLOT, PHYS(QG_OFF_IDT64) + delta, 256 * 16 - 1);
    }
    ccb_w32(CCB_IRET_CS, cs);
    ccb_w32(CCB_IRET_SS, ss);
    ccb_w64(CCB_IRET_IP, ip);
    ccb_w64(CCB_IRET_SP, sp);
    ccb_w32(CCB_IRET_FL, fl);
    ccb_w64(CCB_SCRATCH, scratch);
}

static void report_excursion(void)
{
    oput(' ');
    ohex(ccb_r32(CCB_VECTOR));
    oput(' ');
    ohex(ccb_r32(CCB_ERRCODE));
    oput(' ');
    ohex(ccb_r64(CCB_CR2));
    oput(' ');
    ohex(ccb_r64(CCB_RIP));
    oput(' ');
    ohex(ccb_r64(CCB_RCX) & 0xff);
}

static void report_mem(const struct qg_case *c, const struct qg_mem *m)
{
    ostr(" m=");
    for (uint32_t i = 0; i < c->nmem; i++) {
        if (i)
            oput(',');
        ohex(rd(m[i].gpa, m[i].size));
    }
}

static void run_case(const struct qg_case *c)
{
    const struct qg_mem *m = (const struct qg_mem *)(c + 1);
    int vec;
    uint8_t saved = 0;

    for (uint32_t i = 0; i < c->nmem; i++)
        wr(m[i].gpa, m[i].val, m[i].size);
    wr(c->slot_gpa, c->slot_val, c->slot_size);
    harness_slot(c->mode, c->slot, 1);
    if (c->plant_gpa != QG_NO_PLANT) {
        saved = *p8(c->plant_gpa);
        *p8(c->plant_gpa) = 0xcc; /* int3 */
    }

    prepare(c, 0);
    vec = qg_excursion();
    if (c->plant_gpa != QG_NO_PLANT)
        *p8(c->plant_gpa) = saved;
    oput('R');
    oput(' ');
    ohex(c->idx);
    report_excursion();
    report_mem(c, m);

    if (c->probe && !(vec == 13 && ccb_r64(CCB_RIP) != c->va) &&
        !(vec == 14 && ccb_r64(CCB_CR2) == c->va)) {
        /* D probe: clear bit 6 of every listed paging-entry word */
        for (uint32_t i = 0; i < c->nmem; i++) {
            uint32_t e = m[i].gpa & ~(c->esize - 1);

            for (; e < m[i].gpa + m[i].size; e += c->esize)
                if (e >= m[i].gpa)
                    *p8(e) &= (uint8_t)~0x40;
        }
        prepare(c, 1);
        qg_excursion();
        ostr(" P");
        report_excursion();
        report_mem(c, m);
    }
    ostr(" .\n");
    oflush(); /* whole lines only, so the host can tell how far a dead guest got */

    for (uint32_t i = 0; i < c->nmem; i++)
        wr(m[i].gpa, 0, m[i].size);
    wr(c->slot_gpa, 0, c->slot_size);
    harness_slot(c->mode, c->slot, 0);
}

void qg_main(void)
{
    const struct qg_blob_hdr *h = (const struct qg_blob_hdr *)(uintptr_t)QG_BLOB_COPY;
    const struct qg_blob_hdr *lh = (const struct qg_blob_hdr *)(uintptr_t)QG_BLOB_LOAD;
    uint32_t off;

    /* PAM: 0xc0000..0xfffff read/write RAM; SMRAM: D_OPEN, so 0xa0000..0xbffff
     * is RAM too. */
    pci_w8(0, 0x59, 0x30);
    for (unsigned r = 0x5a; r <= 0x5f; r++)
        pci_w8(0, r, 0x33);
    pci_w8(0, 0x72, 0x4a);

    gdt_init();
    home_idt_init();
    set_dtr(CCB_GDTR_HOME, PHYS(QG_OFF_GDT), QG_GDT_ENTRIES * 8 - 1);
    set_dtr(CCB_IDTR_HOME, (uint32_t)(uintptr_t)home_idt, sizeof(home_idt) - 1);
    __asm__ volatile("lgdt (%0); lidt (%1); ljmp %2, $1f; 1:"
                     :
                     : "r"(PHYS(QG_OFF_CCB) + CCB_GDTR_HOME), "r"(PHYS(QG_OFF_CCB) + CCB_IDTR_HOME),
                       "i"(QG_SEL_CODE32)
                     : "memory");
    tables_init();
    idt32_init();
    copy(PHYS(QG_OFF_USTUB), (uint32_t)(uintptr_t)qg_stubs, (uint32_t)(qg_stubs_end - qg_stubs));

    if (lh->magic != QG_BLOB_MAGIC || lh->total_len > QG_BLOB_MAX) {
        ostr("PANIC bad blob\n");
        qg_exit(2);
    }
    copy(QG_BLOB_COPY, QG_BLOB_LOAD, lh->total_len);
    zero(QG_BLOB_LOAD, (lh->total_len + 3) & ~3u);
    ostr("QG start ");
    ohex(h->ncases);
    oput('\n');

    off = sizeof(*h);
    for (uint32_t i = 0; i < h->ncases; i++) {
        const struct qg_case *c = (const struct qg_case *)(uintptr_t)(QG_BLOB_COPY + off);

        run_case(c);
        off += c->len;
    }
    ostr("QG done\n");
    qg_exit(0);
}
