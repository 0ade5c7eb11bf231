/* SPDX-License-Identifier: MIT */
/*
 * minivmm test guest: a tiny 64-bit kernel with its own page tables, a #PF
 * handler, CPL3 code and a self-checking suite. The same image runs natively
 * (KVM's MMU, real MOV CR3 / INVLPG / LIDT) and in shadow mode (libpgm's
 * tables, privileged paging operations as hypercalls); both must report the
 * same checksum. Everything the suite observes (values read, error codes,
 * CR2, A/D bits) is folded into the checksum.
 */
#include <stddef.h>
#include <stdint.h>

#include "../abi.h"

typedef uint64_t u64;

#define PTE_P  0x1ull
#define PTE_W  0x2ull
#define PTE_U  0x4ull
#define PTE_A  0x20ull
#define PTE_D  0x40ull
#define PTE_PS 0x80ull
#define PTE_G  0x100ull
#define PTE_COW 0x200ull /* software bit: copy on write */
#define PTE_NX (1ull << 63)
#define ADDR_MASK 0x000ffffffffff000ull

#define PF_P 1u
#define PF_W 2u
#define PF_U 4u
#define PF_ID 0x10u

#define CR0_WP (1ull << 16)
#define CR4_PGE (1ull << 7)

/* Guest-virtual layout (PML4 slots): 0 kernel identity map, 128 user,
 * 160 demand-paged kernel region, 192 kernel test pages, 300 recursive,
 * 510 reserved for the VMM. Slot 256 is avoided (see README). */
#define USER_CODE_VA  0x0000400000000000ull
#define USER_STACK_VA 0x0000400000010000ull
#define USER_DATA_VA  0x0000400000020000ull
#define USER_RO_VA    0x0000400000021000ull
#define USER_SUP_VA   0x0000400000022000ull
#define USER_HOLE_VA  0x0000400000023000ull
#define USER_COW_VA   0x0000400000030000ull
#define USER_2M_VA    0x0000400040000000ull
#define USER_DEMAND_VA 0x0000400100000000ull
#define DEMAND_VA     0x0000500000000000ull
#define DEMAND_PAGES  64u
#define KTEST_VA      0x0000600000000000ull
#define REC_SLOT      300ull
#define BIG_FRAME     0x1000000ull /* 2 MiB aligned frames for the large-page test */
#define FRAME_LIMIT   BIG_FRAME

#define FAULTED 0xdeadfa17deadfa17ull

struct tf {
    u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error, rip, cs, rflags, rsp, ss;
};

/* start.S */
extern const char trap_vectors[];
extern const char probe_read_insn[], probe_write_insn[], probe_fixup[];
extern const char user_blob[], user_blob_end[];
extern u64 user_result;
u64 probe_read(u64 addr);
u64 probe_write(u64 addr, u64 v);
u64 probe_exec(u64 addr);
u64 enter_user(u64 rip, u64 rsp, u64 rdi, u64 rsi, u64 rdx);
void kmain(const struct minivmm_bootinfo *boot);
int trap(struct tf *tf);

static const struct minivmm_bootinfo *bi;
static int shadow;
static u64 g_cr0, g_cr4;
static u64 checksum = 0xcbf29ce484222325ull;
static unsigned failures, test_no;
/* written by trap(), which the compiler cannot see being called */
static volatile u64 last_ec, last_cr2, nfaults, demand_faults;
static volatile u64 exec_probe_target;
static u64 kernel_pml4, kernel_pdpt, cur_pml4;

static void mix(u64 v)
{
    for (int i = 0; i < 8; i++) {
        checksum ^= (v >> (i * 8)) & 0xff;
        checksum *= 0x100000001b3ull;
    }
}

/* ---- port I/O and hypercalls ---- */

static void putc_(char c)
{
    __asm__ volatile("outb %%al, %[p]" : : "a"(c), [p] "i"(MINIVMM_PORT_CONSOLE));
}

static void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}

static void puthex(u64 v)
{
    static const char d[] = "0123456789abcdef";
    char buf[19];
    int n = 0;
    buf[n++] = '0';
    buf[n++] = 'x';
    int started = 0;
    for (int i = 60; i >= 0; i -= 4) {
        unsigned x = (unsigned)(v >> i) & 15;
        if (x || started || i == 0) {
            buf[n++] = d[x];
            started = 1;
        }
    }
    buf[n] = 0;
    puts_(buf);
}

static void putdec(u64 v)
{
    char buf[24];
    int n = 23;
    buf[n] = 0;
    do {
        buf[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts_(buf + n);
}

static long hypercall(u64 fn, u64 a0, u64 a1)
{
    long r;
    __asm__ volatile("outb %%al, %[p]"
                     : "=a"(r)
                     : "a"(fn), "D"(a0), "S"(a1), [p] "i"(MINIVMM_PORT_HC)
                     : "memory");
    return r;
}

static __attribute__((noreturn)) void halt(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* ---- privileged operations: native instructions or hypercalls ---- */

static void write_cr3(u64 v)
{
    cur_pml4 = v;
    if (shadow)
        hypercall(HC_MOV_CR3, v, 0);
    else
        __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory");
}

static void invlpg(u64 va)
{
    if (shadow)
        hypercall(HC_INVLPG, va, 0);
    else
        __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

static void write_cr0(u64 v)
{
    g_cr0 = v;
    if (shadow)
        hypercall(HC_MOV_CR0, v, 0);
    else
        __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory");
}

static void write_cr4(u64 v)
{
    g_cr4 = v;
    if (shadow)
        hypercall(HC_MOV_CR4, v, 0);
    else
        __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory");
}

static u64 read_cr2(void)
{
    u64 v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

/* ---- descriptor tables ---- */

static u64 gdt[7] __attribute__((aligned(16)));
static uint8_t tss[104] __attribute__((aligned(16)));
static u64 idt[512] __attribute__((aligned(4096)));
static uint8_t kstack[16384] __attribute__((aligned(4096)));

struct __attribute__((packed)) dtr {
    uint16_t limit;
    u64 base;
};

static void set_gate(unsigned v, u64 handler, unsigned dpl)
{
    idt[v * 2] = (handler & 0xffff) | ((u64)SEL_KCODE << 16) | ((u64)(0x8e | dpl << 5) << 40) |
                 ((handler >> 16 & 0xffff) << 48);
    idt[v * 2 + 1] = handler >> 32;
}

static void setup_cpu(void)
{
    u64 kstack_top = (u64)(kstack + sizeof(kstack));

    for (unsigned v = 0; v < 32; v++)
        set_gate(v, (u64)trap_vectors + v * 16, 0);
    if (!shadow) {
        /* Our own GDT and TSS. In shadow mode the VMM owns them (README). */
        u64 t = (u64)tss;
        gdt[1] = 0x00af9b000000ffffull;
        gdt[2] = 0x00cf93000000ffffull;
        gdt[3] = 0x00cff3000000ffffull;
        gdt[4] = 0x00affb000000ffffull;
        gdt[5] = 0x67 | (t & 0xffffff) << 16 | 0x89ull << 40 | (t >> 24 & 0xff) << 56;
        gdt[6] = t >> 32;
        tss[102] = 104; /* I/O bitmap base beyond the limit */
        struct dtr g = { sizeof(gdt) - 1, (u64)gdt };
        __asm__ volatile("lgdt %0\n"
                         "mov %1, %%ds\n mov %1, %%es\n mov %1, %%ss\n"
                         "pushq %2\n lea 1f(%%rip), %%rax\n pushq %%rax\n lretq\n1:\n"
                         "ltr %w3\n"
                         :
                         : "m"(g), "r"((u64)SEL_KDATA), "i"(SEL_KCODE), "r"((u64)SEL_TSS)
                         : "rax", "memory");
        __builtin_memcpy(tss + 4, &kstack_top, 8); /* RSP0 */
        struct dtr i = { sizeof(idt) - 1, (u64)idt };
        __asm__ volatile("lidt %0" : : "m"(i));
    } else {
        hypercall(HC_SET_IDT, (u64)idt, sizeof(idt) - 1);
        hypercall(HC_SET_RSP0, kstack_top, 0);
    }
}

/* ---- frames and page tables (tables are reached through the identity map) ---- */

static u64 next_frame = GUEST_FREE_GPA;
static u64 free_frames[256];
static unsigned nfree;

static void zero_page(u64 pa)
{
    volatile u64 *p = (volatile u64 *)pa;
    for (unsigned i = 0; i < 512; i++)
        p[i] = 0;
}

static u64 alloc_frame(void)
{
    u64 f;
    if (nfree) {
        f = free_frames[--nfree];
    } else {
        if (next_frame >= FRAME_LIMIT) {
            puts_("guest: out of frames\n");
            hypercall(HC_REPORT, 0, 999);
            halt();
        }
        f = next_frame;
        next_frame += 4096;
    }
    zero_page(f);
    return f;
}

static void free_frame(u64 f)
{
    if (nfree < 256)
        free_frames[nfree++] = f;
}

/* One MOV per entry write (libpgm emulates writes to shadowed tables). */
static void wr_entry(volatile u64 *p, u64 v)
{
    *p = v;
}

static volatile u64 *table(u64 pa)
{
    return (volatile u64 *)(pa & ADDR_MASK);
}

/* The entry for @va at @level (1 = PTE) in @pml4, creating tables on the way. */
static volatile u64 *entry_at(u64 pml4, u64 va, unsigned level, int create)
{
    u64 t = pml4;
    for (unsigned l = 4; l > level; l--) {
        volatile u64 *e = table(t) + ((va >> (12 + 9 * (l - 1))) & 511);
        u64 v = *e;
        if (!(v & PTE_P)) {
            if (!create)
                return NULL;
            v = alloc_frame() | PTE_P | PTE_W | PTE_U;
            wr_entry(e, v);
        }
        t = v & ADDR_MASK;
    }
    return table(t) + ((va >> (12 + 9 * (level - 1))) & 511);
}

static void map(u64 pml4, u64 va, u64 pa, u64 flags)
{
    wr_entry(entry_at(pml4, va, 1, 1), (pa & ADDR_MASK) | flags | PTE_P);
}

static u64 new_as(void)
{
    u64 pml4 = alloc_frame();
    wr_entry(table(pml4), kernel_pdpt | PTE_P | PTE_W);
    return pml4;
}

static void build_kernel_as(void)
{
    u64 pd = alloc_frame();
    kernel_pdpt = alloc_frame();
    for (u64 i = 0; i < bi->ram_size >> 21; i++)
        wr_entry(table(pd) + i, (i << 21) | PTE_P | PTE_W | PTE_PS | PTE_G);
    wr_entry(table(kernel_pdpt), pd | PTE_P | PTE_W);
    kernel_pml4 = new_as();
    write_cr3(kernel_pml4);
}

/* ---- traps ---- */

static int in_demand(u64 va)
{
    return va >= DEMAND_VA && va < DEMAND_VA + DEMAND_PAGES * 4096ull;
}

static void trap_panic(struct tf *tf)
{
    puts_("guest: unexpected trap vector ");
    puthex(tf->vector);
    puts_(" ec ");
    puthex(tf->error);
    puts_(" rip ");
    puthex(tf->rip);
    puts_(" cr2 ");
    puthex(read_cr2());
    puts_("\n");
    hypercall(HC_REPORT, checksum, 1000 + tf->vector);
    halt();
}

int trap(struct tf *tf)
{
    if (tf->vector == 6 && (tf->cs & 3) == 3) {
        /* the user program's system call (UD2): back to the kernel */
        user_result = tf->rdi;
        return 1;
    }
    if (tf->vector != 14)
        trap_panic(tf);
    u64 cr2 = read_cr2();
    nfaults++;
    last_ec = tf->error;
    last_cr2 = cr2;
    if ((tf->cs & 3) == 3) {
        volatile u64 *pte = (tf->error & (PF_P | PF_W)) == (PF_P | PF_W) && cr2 < USER_2M_VA
                                ? entry_at(cur_pml4, cr2, 1, 0)
                                : NULL;
        if (pte && (*pte & PTE_COW)) {
            /* Copy on write: a private copy, writable, then retry. */
            u64 old = *pte & ADDR_MASK, copy = alloc_frame();
            volatile u64 *s = table(old), *d = table(copy);
            for (unsigned i = 0; i < 512; i++)
                d[i] = s[i];
            wr_entry(pte, copy | PTE_P | PTE_W | PTE_U | PTE_NX);
            invlpg(cr2 & ~0xfffull);
            return 0;
        }
        if (!(tf->error & PF_P) && cr2 >= USER_DEMAND_VA &&
            cr2 < USER_DEMAND_VA + DEMAND_PAGES * 4096ull) {
            demand_faults++;
            map(cur_pml4, cr2 & ~0xfffull, alloc_frame(), PTE_U | PTE_W | PTE_NX);
            return 0;
        }
        user_result = FAULTED;
        return 1;
    }
    if (!(tf->error & PF_P) && in_demand(cr2)) {
        demand_faults++;
        map(cur_pml4, cr2 & ~0xfffull, alloc_frame(), PTE_W | PTE_NX);
        return 0;
    }
    if (tf->rip == (u64)probe_read_insn || tf->rip == (u64)probe_write_insn) {
        tf->rip = (u64)probe_fixup;
        return 0;
    }
    if (exec_probe_target && tf->rip == exec_probe_target) {
        tf->rip = (u64)probe_fixup;
        tf->rsp += 8;
        return 0;
    }
    trap_panic(tf);
    return 0;
}

/* ---- test helpers ---- */

static void check(int ok, const char *name, u64 got, u64 want)
{
    test_no++;
    mix(got);
    if (ok)
        return;
    failures++;
    puts_("  FAIL ");
    puts_(name);
    puts_(": got ");
    puthex(got);
    puts_(" want ");
    puthex(want);
    puts_("\n");
}

#define EXPECT_EQ(name, got, want)                                                                 \
    do {                                                                                           \
        u64 g_ = (got), w_ = (want);                                                               \
        check(g_ == w_, name, g_, w_);                                                             \
    } while (0)

/* A fault is expected: error code and CR2 must be exactly these. */
static void expect_fault(const char *name, u64 result, u64 ec, u64 cr2)
{
    EXPECT_EQ(name, result, FAULTED);
    EXPECT_EQ(name, last_ec, ec);
    EXPECT_EQ(name, last_cr2, cr2);
}

static void section(const char *name)
{
    puts_("guest: ");
    puts_(name);
    puts_("\n");
}

static u64 user_frame_code;

/* A user address space: code, stack, data (value @v), RO page, supervisor page. */
static u64 make_user_as(u64 v)
{
    u64 as = new_as();
    if (!user_frame_code) {
        user_frame_code = alloc_frame();
        volatile uint8_t *c = (volatile uint8_t *)user_frame_code;
        for (const char *p = user_blob; p < user_blob_end; p++)
            *c++ = (uint8_t)*p;
        /* a function at +0x800: xor eax,eax; ret */
        ((volatile uint8_t *)user_frame_code)[0x800] = 0x31;
        ((volatile uint8_t *)user_frame_code)[0x801] = 0xc0;
        ((volatile uint8_t *)user_frame_code)[0x802] = 0xc3;
    }
    map(as, USER_CODE_VA, user_frame_code, PTE_U);
    map(as, USER_STACK_VA, alloc_frame(), PTE_U | PTE_W | PTE_NX);
    u64 data = alloc_frame();
    table(data)[0] = v;
    table(data)[1] = 0xc3; /* a RET, on an NX page */
    map(as, USER_DATA_VA, data, PTE_U | PTE_W | PTE_NX);
    u64 ro = alloc_frame();
    table(ro)[0] = v + 1;
    map(as, USER_RO_VA, ro, PTE_U | PTE_NX);
    u64 sup = alloc_frame();
    table(sup)[0] = v + 2;
    map(as, USER_SUP_VA, sup, PTE_W | PTE_NX);
    return as;
}

static u64 user_op(u64 op, u64 addr, u64 val)
{
    return enter_user(USER_CODE_VA, USER_STACK_VA + 4096, addr, op, val);
}
#define U_READ(a) user_op(0, (a), 0)
#define U_WRITE(a, v) user_op(1, (a), (v))
#define U_CALL(a) user_op(2, (a), 0)

/* ---- the suite ---- */

static void t_demand(void)
{
    section("demand paging by the guest's #PF handler");
    u64 before = demand_faults, sum = 0;
    for (unsigned i = 0; i < DEMAND_PAGES; i++)
        *(volatile u64 *)(DEMAND_VA + i * 4096ull + 8) = i * 7 + 1;
    for (unsigned i = 0; i < DEMAND_PAGES; i++)
        sum += *(volatile u64 *)(DEMAND_VA + i * 4096ull + 8);
    EXPECT_EQ("demand faults", demand_faults - before, DEMAND_PAGES);
    EXPECT_EQ("demand sum", sum, (u64)DEMAND_PAGES * (DEMAND_PAGES - 1) / 2 * 7 + DEMAND_PAGES);
    /* the leaf of a page written: A and D set */
    volatile u64 *pte = entry_at(cur_pml4, DEMAND_VA, 1, 0);
    EXPECT_EQ("demand pte A|D", *pte & (PTE_A | PTE_D), PTE_A | PTE_D);
}

static void t_user(void)
{
    section("user/supervisor separation, exact error codes");
    u64 as = make_user_as(0x1111);
    write_cr3(as);
    EXPECT_EQ("user read", U_READ(USER_DATA_VA), 0x1111);
    EXPECT_EQ("user write", U_WRITE(USER_DATA_VA + 8 * 5, 0x5555), 0);
    EXPECT_EQ("user write landed", probe_read(USER_DATA_VA + 8 * 5), 0x5555);
    EXPECT_EQ("user read RO", U_READ(USER_RO_VA), 0x1112);
    expect_fault("user write RO", U_WRITE(USER_RO_VA, 1), PF_P | PF_W | PF_U, USER_RO_VA);
    expect_fault("user read sup", U_READ(USER_SUP_VA), PF_P | PF_U, USER_SUP_VA);
    expect_fault("user write sup", U_WRITE(USER_SUP_VA + 16, 1), PF_P | PF_W | PF_U,
                 USER_SUP_VA + 16);
    expect_fault("user read hole", U_READ(USER_HOLE_VA + 0x18), PF_U, USER_HOLE_VA + 0x18);
    expect_fault("user exec NX", U_CALL(USER_DATA_VA + 8), PF_P | PF_U | PF_ID, USER_DATA_VA + 8);
    expect_fault("user read kernel", U_READ(GUEST_LOAD_GPA), PF_P | PF_U, GUEST_LOAD_GPA);
    EXPECT_EQ("user call code", U_CALL(USER_CODE_VA + 0x800), 0);
    EXPECT_EQ("sup page intact", probe_read(USER_SUP_VA), 0x1113);
    /* A/D of the user data page: read and written */
    volatile u64 *pte = entry_at(as, USER_DATA_VA, 1, 0);
    EXPECT_EQ("user pte A|D", *pte & (PTE_A | PTE_D), PTE_A | PTE_D);
    pte = entry_at(as, USER_RO_VA, 1, 0);
    EXPECT_EQ("user RO pte A|D", *pte & (PTE_A | PTE_D), PTE_A);
    write_cr3(kernel_pml4);
}

static void t_wp_nx(void)
{
    section("CR0.WP and NX");
    u64 f = alloc_frame();
    map(kernel_pml4, KTEST_VA, f, PTE_NX); /* read-only, supervisor, NX */
    invlpg(KTEST_VA);
    EXPECT_EQ("ro read", probe_read(KTEST_VA), 0);
    expect_fault("wp write", probe_write(KTEST_VA + 8, 42), PF_P | PF_W, KTEST_VA + 8);
    write_cr0(g_cr0 & ~CR0_WP);
    EXPECT_EQ("wp=0 write", probe_write(KTEST_VA + 8, 42), 0);
    EXPECT_EQ("wp=0 write landed", table(f)[1], 42);
    write_cr0(g_cr0 | CR0_WP);
    expect_fault("wp write again", probe_write(KTEST_VA + 16, 43), PF_P | PF_W, KTEST_VA + 16);
    /* NX: a RET on an NX page, then on an executable one */
    ((volatile uint8_t *)f)[0x100] = 0x31;
    ((volatile uint8_t *)f)[0x101] = 0xc0;
    ((volatile uint8_t *)f)[0x102] = 0xc3;
    exec_probe_target = KTEST_VA + 0x100;
    expect_fault("nx fetch", probe_exec(KTEST_VA + 0x100), PF_P | PF_ID, KTEST_VA + 0x100);
    map(kernel_pml4, KTEST_VA, f, 0);
    invlpg(KTEST_VA);
    EXPECT_EQ("x fetch", probe_exec(KTEST_VA + 0x100), 0);
    exec_probe_target = 0;
    wr_entry(entry_at(kernel_pml4, KTEST_VA, 1, 0), 0);
    invlpg(KTEST_VA);
    free_frame(f);
}

static void t_cow(void)
{
    section("copy on write across two address spaces");
    u64 a = make_user_as(0x2000), b = make_user_as(0x3000);
    u64 shared = alloc_frame();
    table(shared)[0] = 0xc0ffee;
    map(a, USER_COW_VA, shared, PTE_U | PTE_NX | PTE_COW);
    map(b, USER_COW_VA, shared, PTE_U | PTE_NX | PTE_COW);
    write_cr3(a);
    EXPECT_EQ("cow read a", U_READ(USER_COW_VA), 0xc0ffee);
    u64 before = nfaults;
    EXPECT_EQ("cow write a", U_WRITE(USER_COW_VA, 0xaaaa), 0);
    EXPECT_EQ("cow fault taken", nfaults - before, 1);
    EXPECT_EQ("cow fault ec", last_ec, PF_P | PF_W | PF_U);
    EXPECT_EQ("cow read a after", U_READ(USER_COW_VA), 0xaaaa);
    write_cr3(b);
    EXPECT_EQ("cow read b", U_READ(USER_COW_VA), 0xc0ffee);
    EXPECT_EQ("cow write b", U_WRITE(USER_COW_VA, 0xbbbb), 0);
    EXPECT_EQ("cow read b after", U_READ(USER_COW_VA), 0xbbbb);
    write_cr3(a);
    EXPECT_EQ("cow read a again", U_READ(USER_COW_VA), 0xaaaa);
    EXPECT_EQ("shared intact", table(shared)[0], 0xc0ffee);
    write_cr3(kernel_pml4);
}

static void t_spaces(void)
{
    section("8 address spaces, context switches");
    u64 as[8];
    for (unsigned i = 0; i < 8; i++)
        as[i] = make_user_as(0x100 + i);
    u64 sum = 0;
    for (unsigned round = 0; round < 16; round++)
        for (unsigned i = 0; i < 8; i++) {
            write_cr3(as[(i * 3 + round) & 7]);
            sum += U_READ(USER_DATA_VA);
        }
    u64 want = 0;
    for (unsigned i = 0; i < 8; i++)
        want += 16 * (0x100 + i);
    EXPECT_EQ("switch sum", sum, want);
    write_cr3(kernel_pml4);
}

static void t_unmap(void)
{
    section("munmap + INVLPG, remap, present -> present change");
    u64 fa = alloc_frame(), fb = alloc_frame();
    table(fa)[3] = 0xaaaa;
    table(fb)[3] = 0xbbbb;
    map(kernel_pml4, KTEST_VA, fa, PTE_W | PTE_NX);
    EXPECT_EQ("read a", probe_read(KTEST_VA + 24), 0xaaaa);
    volatile u64 *pte = entry_at(kernel_pml4, KTEST_VA, 1, 0);
    wr_entry(pte, 0);
    invlpg(KTEST_VA);
    expect_fault("read unmapped", probe_read(KTEST_VA + 24), 0, KTEST_VA + 24);
    map(kernel_pml4, KTEST_VA, fb, PTE_W | PTE_NX);
    invlpg(KTEST_VA);
    EXPECT_EQ("read b", probe_read(KTEST_VA + 24), 0xbbbb);
    map(kernel_pml4, KTEST_VA, fa, PTE_W | PTE_NX); /* present -> present */
    invlpg(KTEST_VA);
    EXPECT_EQ("read a again", probe_read(KTEST_VA + 24), 0xaaaa);
    map(kernel_pml4, KTEST_VA, fa, PTE_NX); /* downgrade to read-only */
    invlpg(KTEST_VA);
    expect_fault("write after downgrade", probe_write(KTEST_VA + 32, 1), PF_P | PF_W,
                 KTEST_VA + 32);
    wr_entry(entry_at(kernel_pml4, KTEST_VA, 1, 0), 0);
    invlpg(KTEST_VA);
}

static void t_global(void)
{
    section("global kernel pages, CR4.PGE toggle");
    u64 as = make_user_as(0x4444);
    write_cr3(as);
    /* kernel text and data are global 2 MiB pages in every space */
    EXPECT_EQ("kernel data via global page", *(volatile u64 *)&kernel_pdpt, kernel_pdpt);
    write_cr4(g_cr4 & ~CR4_PGE);
    write_cr4(g_cr4 | CR4_PGE);
    EXPECT_EQ("user after PGE toggle", U_READ(USER_DATA_VA), 0x4444);
    write_cr3(kernel_pml4);
    u64 pde = *entry_at(kernel_pml4, GUEST_LOAD_GPA, 2, 0);
    EXPECT_EQ("kernel pde G|PS|A", pde & (PTE_G | PTE_PS | PTE_A), PTE_G | PTE_PS | PTE_A);
}

static void t_large(void)
{
    section("2 MiB pages");
    u64 as = make_user_as(0x5555);
    for (unsigned k = 0; k < 32; k++)
        table(BIG_FRAME + k * 0x10000ull)[k] = 0x200000ull + k;
    wr_entry(entry_at(as, USER_2M_VA, 2, 1), BIG_FRAME | PTE_P | PTE_W | PTE_U | PTE_PS | PTE_NX);
    write_cr3(as);
    u64 sum = 0;
    for (unsigned k = 0; k < 32; k++)
        sum += U_READ(USER_2M_VA + k * 0x10000ull + k * 8);
    EXPECT_EQ("2m sum", sum, 32 * 0x200000ull + 31 * 32 / 2);
    volatile u64 *pde = entry_at(as, USER_2M_VA, 2, 0);
    EXPECT_EQ("2m pde A, not D", *pde & (PTE_A | PTE_D), PTE_A);
    EXPECT_EQ("2m write", U_WRITE(USER_2M_VA + 0x1ff000, 77), 0);
    EXPECT_EQ("2m write landed", table(BIG_FRAME + 0x1ff000)[0], 77);
    EXPECT_EQ("2m pde D", *pde & (PTE_A | PTE_D), PTE_A | PTE_D);
    expect_fault("2m beyond", U_READ(USER_2M_VA + 0x200000), PF_U, USER_2M_VA + 0x200000);
    write_cr3(kernel_pml4);
}

static u64 rec_pte_va(u64 va)
{
    u64 v = (REC_SLOT << 39) | ((va >> 9) & 0x7ffffffff8ull);
    return (u64)((int64_t)(v << 16) >> 16);
}

static void t_recursive(void)
{
    section("recursive PML4 slot");
    wr_entry(table(kernel_pml4) + REC_SLOT, kernel_pml4 | PTE_P | PTE_W);
    u64 fa = alloc_frame(), fb = alloc_frame();
    table(fa)[0] = 0x1a1a;
    table(fb)[0] = 0x2b2b;
    map(kernel_pml4, KTEST_VA + 0x5000, fa, PTE_W | PTE_NX);
    EXPECT_EQ("rec read a", probe_read(KTEST_VA + 0x5000), 0x1a1a);
    u64 pte_va = rec_pte_va(KTEST_VA + 0x5000);
    volatile u64 *direct = entry_at(kernel_pml4, KTEST_VA + 0x5000, 1, 0);
    EXPECT_EQ("pte via recursive slot", probe_read(pte_va), *direct);
    EXPECT_EQ("pte write via recursive slot",
              probe_write(pte_va, fb | PTE_P | PTE_W | PTE_NX), 0);
    invlpg(KTEST_VA + 0x5000);
    EXPECT_EQ("rec read b", probe_read(KTEST_VA + 0x5000), 0x2b2b);
    EXPECT_EQ("direct sees it", *direct & ADDR_MASK, fb);
    wr_entry(direct, 0);
    invlpg(KTEST_VA + 0x5000);
    wr_entry(table(kernel_pml4) + REC_SLOT, 0);
    write_cr3(kernel_pml4); /* drop the self-map's translations */
}

static void run_suite(void)
{
    t_demand();
    t_user();
    t_wp_nx();
    t_cow();
    t_spaces();
    t_unmap();
    t_global();
    t_large();
    t_recursive();
}

/* ---- workloads (benchmark) ---- */

static void unmap_demand(u64 base)
{
    for (unsigned i = 0; i < DEMAND_PAGES; i++) {
        volatile u64 *pte = entry_at(cur_pml4, base + i * 4096ull, 1, 0);
        if (pte && (*pte & PTE_P)) {
            free_frame(*pte & ADDR_MASK);
            wr_entry(pte, 0);
            invlpg(base + i * 4096ull);
        }
    }
}

/*
 * Benchmark workloads. The hot paths run at CPL3 where they can: kvm_pvm
 * runs guest CPL0 code through an instruction emulator (README, "Host
 * limits"), so kernel loops time the emulator, not the MMU.
 */
static void workload(u64 wl, u64 iters)
{
    u64 ops = 0;
    u64 as = make_user_as(1);
    write_cr3(as);
    if (wl == WL_FAULTS) {
        /* a user program touches 64 fresh pages (64 demand faults), then the
         * kernel unmaps them (64 PTE writes + INVLPG) */
        hypercall(HC_MARK, wl, 0);
        for (u64 it = 0; it < iters; it++) {
            user_op(4, USER_DEMAND_VA, DEMAND_PAGES);
            unmap_demand(USER_DEMAND_VA);
        }
        ops = iters * DEMAND_PAGES;
    } else if (wl == WL_CTXSW) {
        /* switch between two address spaces and touch a user page in each */
        u64 b = make_user_as(2);
        hypercall(HC_MARK, wl, 0);
        for (u64 it = 0; it < iters; it++) {
            write_cr3(it & 1 ? b : as);
            U_READ(USER_DATA_VA);
        }
        ops = iters;
    } else if (wl == WL_STEADY) {
        /* 64 mapped user pages written over and over: no fault, no exit */
        user_op(4, USER_DEMAND_VA, DEMAND_PAGES);
        hypercall(HC_MARK, wl, 0);
        user_op(4, USER_DEMAND_VA, iters * DEMAND_PAGES);
        ops = iters * DEMAND_PAGES;
    } else if (wl == WL_KSPIN) {
        hypercall(HC_MARK, wl, 0);
        u64 x = 0;
        for (u64 it = 0; it < iters; it++)
            __asm__ volatile("add $1, %0" : "+r"(x));
        ops = iters;
    } else if (wl == WL_USPIN) {
        hypercall(HC_MARK, wl, 0);
        user_op(3, 0, iters);
        ops = iters;
    }
    hypercall(HC_MARK, wl, ops);
    write_cr3(kernel_pml4);
}

/*
 * The coherence probe: change a present mapping and remove another, each
 * followed by INVLPG, and report which of the two reads saw stale data
 * (bit 0: the old frame after present -> present; bit 1: the old frame
 * after present -> not present; shadow mode, bit 4: the VMM's own probe
 * page read through its old entry after the VMM remapped it). 0 is the
 * architectural answer; bits 2, 3, 5 mean a value that should not exist.
 */
static void coherence_probe(void)
{
    /* the reads are CPL3 reads, made by the MMU through KVM's shadow of the
     * tables (CPL0 code is emulated on this host and walks them afresh) */
    u64 as = make_user_as(7);
    u64 fa = alloc_frame(), fb = alloc_frame();
    table(fa)[0] = 0xaaaa;
    table(fb)[0] = 0xbbbb;
    map(as, USER_COW_VA, fa, PTE_U | PTE_W | PTE_NX);
    map(as, USER_COW_VA + 0x1000, fa, PTE_U | PTE_W | PTE_NX);
    write_cr3(as);
    U_READ(USER_COW_VA);
    U_READ(USER_COW_VA + 0x1000);
    map(as, USER_COW_VA, fb, PTE_U | PTE_W | PTE_NX);
    invlpg(USER_COW_VA);
    wr_entry(entry_at(as, USER_COW_VA + 0x1000, 1, 0), 0);
    invlpg(USER_COW_VA + 0x1000);
    u64 stale = 0;
    u64 v = U_READ(USER_COW_VA);
    if (v == 0xaaaa)
        stale |= 1;
    else if (v != 0xbbbb)
        stale |= 4;
    v = U_READ(USER_COW_VA + 0x1000);
    if (v == 0xaaaa)
        stale |= 2;
    else if (v != FAULTED)
        stale |= 8;
    if (shadow) {
        /* the same for an entry of the VMM's own tables (bit 4) */
        v = U_READ(VMM_PROBE_GVA);
        hypercall(HC_PROBE_FLIP, 0, 0);
        u64 w = U_READ(VMM_PROBE_GVA);
        if (v != 0x1111 || (w != 0x2222 && w != 0x1111))
            stale |= 0x20;
        else if (w == 0x1111)
            stale |= 0x10;
    }
    hypercall(HC_REPORT, stale, stale);
    halt();
}

void kmain(const struct minivmm_bootinfo *boot)
{
    bi = boot;
    if (bi->magic != MINIVMM_BOOT_MAGIC)
        halt();
    shadow = bi->mode == BOOT_SHADOW;
    __asm__ volatile("mov %%cr0, %0" : "=r"(g_cr0));
    __asm__ volatile("mov %%cr4, %0" : "=r"(g_cr4));
    setup_cpu();
    build_kernel_as();
    if (bi->workload == WL_COHERE)
        coherence_probe();
    if (bi->workload == WL_CONFLICT) {
        /* a guest that ignores the reserved slot: map a page in it, use it */
        u64 f = alloc_frame();
        table(f)[0] = 0x5107;
        map(kernel_pml4, VMM_AREA_GVA + 0x200000, f, PTE_W | PTE_NX);
        u64 v = probe_read(VMM_AREA_GVA + 0x200000);
        hypercall(HC_REPORT, v, v == 0x5107 ? 0 : 1);
        halt();
    }
    if (bi->workload != WL_SUITE) {
        workload(bi->workload, bi->iters);
        hypercall(HC_REPORT, checksum, 0);
        halt();
    }
    puts_(shadow ? "guest: shadow mode (libpgm tables, paravirtual paging ops)\n"
                 : "guest: native mode (KVM's MMU)\n");
    run_suite();
    puts_("guest: ");
    putdec(test_no);
    puts_(" checks, ");
    putdec(failures);
    puts_(" failed, ");
    putdec(nfaults);
    puts_(" #PF seen by the guest, checksum ");
    puthex(checksum);
    puts_("\n");
    hypercall(HC_REPORT, checksum, failures);
    halt();
}
