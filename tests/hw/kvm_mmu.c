/* SPDX-License-Identifier: MIT */
/*
 * kvm_mmu: run `pgm walk` cases (case.h) on a KVM vCPU and print the results
 * in the same output format.
 *
 * Each case really performs its access in a long-mode guest whose CR3 is the
 * case's own page-table tree:
 *
 *  - Guest RAM [0, 64 MiB) is the case's memory. Unlisted memory is filled
 *    with per-address signatures whose byte 0 is 0x06 (P=0), so every
 *    unlisted entry is not present exactly like the zero the contract
 *    specifies, and a data access that lands there reveals its GPA.
 *  - A 2 MiB harness (code, IDT, GDT, TSS, stack, mailbox, its own page
 *    tables) lives at GPA HARNESS_GPA. It is mapped through a PML4 slot H that
 *    the case's walk does not use; the guest itself writes the slot into the
 *    case's PML4 page (so KVM's shadow MMU sees every page-table write as a
 *    guest write), then loads the case's CR3 and performs the access.
 *  - Reads are `mov rax,[va&~7]`; writes `mov [va],cl` of a marker byte
 *    (the host checks that it landed on the predicted target and reports the
 *    memory as it was before, since `pgm walk` writes no data; a locked RMW
 *    is avoided because KVM's emulator reads before it writes and so sets A
 *    bits on a faulting write); fetches `jmp va` onto a HLT placed at the
 *    predicted target (HLT exit at CPL0, #GP at CPL3; an int3 would do, but
 *    KVM/PVM sends a CPL0 #BP through its emulator, which cannot do INT3).
 *    CPL3 accesses run from a user stub page reached by iretq.
 *  - The #PF/#GP/#BP/#UD handlers record vector, error code, CR2 and RIP in
 *    the mailbox and HLT; the host then reads results and the A/D bits from
 *    the memslot.
 *  - The GPA of a successful access comes from hardware evidence: the
 *    signature read, the marker or HLT found at the target, the MMIO exit for
 *    unassigned GPAs. A structural walk
 *    (addresses and PS bits only, no permission logic) predicts the target
 *    and the page size; any disagreement with the evidence is an error line.
 *  - Between cases only the qwords the previous case touched are restored,
 *    again by guest writes, then CR4.PGE is toggled and CR3 reloaded.
 *
 * One VM per guest MAXPHYADDR (CPUID 0x80000008 cannot change after the
 * first KVM_RUN).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "case.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- guest layout ---------------------------------------------------------- */

#define RAM_SIZE WCASE_RAM_SIZE
#define HARNESS_GPA 0xc0000000ull
#define HARNESS_SIZE (2ull << 20)

/* offsets inside the harness */
#define OFF_CODE 0x0000
#define OFF_USER 0x3000 /* user stub page (U=1) */
#define OFF_GDT 0x4000
#define OFF_TSS 0x4080
#define OFF_IDT 0x5000
#define OFF_STACK_TOP 0x8000
#define OFF_MBOX 0x8000 /* two pages */
#define OFF_HPDPT 0xa000
#define OFF_HPD 0xb000
#define OFF_HPT 0xc000
#define OFF_BOOT_PML4 0xd000
#define OFF_PHYS_PDPT 0xe000
#define OFF_PHYS_PD 0xf000

/* mailbox fields (keep in sync with the .set lines in the guest code) */
#define MB_CR3 0x00
#define MB_VA 0x08
#define MB_ACC 0x10
#define MB_CPL3 0x18
#define MB_RFL 0x20
#define MB_NWR 0x28
#define MB_STAGE 0x30
#define MB_KIND 0x38
#define MB_VEC 0x40
#define MB_ERR 0x48
#define MB_CR2 0x50
#define MB_VAL 0x58
#define MB_RIP 0x60
#define MB_CS 0x68
#define MB_WVAL 0x70
#define MB_USTUB 0x78
#define MB_WRITES 0x100
#define MB_MAX_WRITES 320

#define PHYSMAP_SLOT 0x1b3ull

#define PTE_P 0x1ull
#define PTE_W 0x2ull
#define PTE_U 0x4ull
#define PTE_PS 0x80ull
#define ADDR_MASK 0x000ffffffffff000ull

static const unsigned slot_candidates[] = {0x0f5, 0x1a7, 0x03c, 0x15e, 0x0b2, 0x1e9, 0x071, 0x126,
                                           0x0d8, 0x189, 0x047, 0x1c3, 0x09a, 0x16d, 0x02b, 0x1f4};
#define NCAND (sizeof(slot_candidates) / sizeof(slot_candidates[0]))

/* ---- guest code ------------------------------------------------------------ */

/* Vectors that push an error code. */
__asm__(
    ".pushsection .rodata.kvm_harness,\"a\"\n"
    ".balign 4096\n"
    ".intel_syntax noprefix\n"
    ".code64\n"
    ".set MB, 0x8000\n"
    ".set MB_CR3, 0x00\n.set MB_VA, 0x08\n.set MB_ACC, 0x10\n.set MB_CPL3, 0x18\n"
    ".set MB_RFL, 0x20\n.set MB_NWR, 0x28\n.set MB_STAGE, 0x30\n.set MB_KIND, 0x38\n"
    ".set MB_VEC, 0x40\n.set MB_ERR, 0x48\n.set MB_CR2, 0x50\n.set MB_VAL, 0x58\n"
    ".set MB_RIP, 0x60\n.set MB_CS, 0x68\n.set MB_WVAL, 0x70\n.set MB_USTUB, 0x78\n"
    ".set MB_WRITES, 0x100\n"
    ".globl kh_start\nkh_start:\n"
    ".globl kh_entry\nkh_entry:\n"
    "    lea rbx, [rip + kh_start]\n"
    "    add rbx, MB\n"
    "    mov qword ptr [rbx + MB_STAGE], 0\n"
    "    mov rcx, [rbx + MB_NWR]\n"
    "    lea rsi, [rbx + MB_WRITES]\n"
    "1:  test rcx, rcx\n"
    "    jz 4f\n"
    "    mov rdi, [rsi]\n"
    "    mov rax, [rsi + 8]\n"
    "    mov rdx, [rsi + 16]\n"
    "    cmp rdx, 8\n"
    "    jne 2f\n"
    "    mov [rdi], rax\n"
    "    jmp 3f\n"
    "2:  cmp rdx, 4\n"
    "    jne 5f\n"
    "    mov [rdi], eax\n"
    "    jmp 3f\n"
    "5:  mov [rdi], al\n"
    "3:  add rsi, 24\n"
    "    dec rcx\n"
    "    jmp 1b\n"
    "4:  mov rax, cr4\n"      /* flush everything, globals too */
    "    mov rcx, rax\n"
    "    xor rcx, 0x80\n"
    "    mov cr4, rcx\n"
    "    mov cr4, rax\n"
    "    mov qword ptr [rbx + MB_STAGE], 1\n"
    "    mov rax, [rbx + MB_CR3]\n"
    ".globl kh_movcr3\nkh_movcr3:\n"
    "    mov cr3, rax\n"
    "    mov qword ptr [rbx + MB_STAGE], 2\n"
    "    mov rdi, [rbx + MB_VA]\n"
    "    mov rdx, [rbx + MB_ACC]\n"
    "    mov rcx, [rbx + MB_WVAL]\n"
    "    xor eax, eax\n"
    "    cmp qword ptr [rbx + MB_CPL3], 0\n"
    "    jne 6f\n"
    "    pushfq\n"
    "    and qword ptr [rsp], ~0x40000\n"
    "    mov r8, [rbx + MB_RFL]\n"
    "    or [rsp], r8\n"
    "    popfq\n"
    "    cmp rdx, 1\n"
    "    je 7f\n"
    "    cmp rdx, 2\n"
    "    je 8f\n"
    ".globl kh_acc_r\nkh_acc_r:\n"
    "    mov rax, [rdi]\n"
    "    jmp 9f\n"
    ".globl kh_acc_w\nkh_acc_w:\n"
    "7:  mov [rdi], cl\n"
    "    jmp 9f\n"
    ".globl kh_acc_x\nkh_acc_x:\n"
    "8:  jmp rdi\n"
    "9:  mov [rbx + MB_VAL], rax\n"
    "    mov qword ptr [rbx + MB_KIND], 1\n"
    "    hlt\n"
    "    jmp 9b\n"
    /* CPL3: iretq to the user stub for the access kind */
    "6:  mov r8, [rbx + MB_USTUB]\n"
    "    shl rdx, 4\n"
    "    add r8, rdx\n"
    "    push 0x1b\n"
    "    push 0\n"
    "    mov r9, [rbx + MB_RFL]\n"
    "    or r9, 2\n"
    "    push r9\n"
    "    push 0x23\n"
    "    push r8\n"
    "    iretq\n"
    /* exception stubs, 16 bytes each */
    ".balign 16\n"
    ".globl kh_vec\nkh_vec:\n"
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    ".balign 16\n"
    ".if (\\v == 8) || (\\v == 10) || (\\v == 11) || (\\v == 12) || (\\v == 13) || (\\v == 14) || (\\v == 17) || (\\v == 21) || (\\v == 29) || (\\v == 30)\n"
    ".else\n"
    "    push 0\n"
    ".endif\n"
    "    push \\v\n"
    "    jmp kh_common\n"
    ".endr\n"
    ".balign 16\n"
    "kh_common:\n"
    "    push rax\n"
    "    lea rax, [rip + kh_start]\n"
    "    add rax, MB\n"
    "    pop qword ptr [rax + MB_VAL]\n"
    "    mov rbx, rax\n"
    "    pop rax\n"
    "    mov [rbx + MB_VEC], rax\n"
    "    pop rax\n"
    "    mov [rbx + MB_ERR], rax\n"
    "    mov rax, [rsp]\n"
    "    mov [rbx + MB_RIP], rax\n"
    "    mov rax, [rsp + 8]\n"
    "    mov [rbx + MB_CS], rax\n"
    "    mov rax, cr2\n"
    "    mov [rbx + MB_CR2], rax\n"
    "    mov qword ptr [rbx + MB_KIND], 2\n"
    "10: hlt\n"
    "    jmp 10b\n"
    /* user stubs, on their own U=1 page */
    ".org 0x3000\n"
    ".globl kh_user\nkh_user:\n"
    ".globl kh_uacc_r\nkh_uacc_r:\n"
    "    mov rax, [rdi]\n"
    "    ud2\n"
    ".org 0x3010\n"
    ".globl kh_uacc_w\nkh_uacc_w:\n"
    "    mov [rdi], cl\n"
    "    ud2\n"
    ".org 0x3020\n"
    ".globl kh_uacc_x\nkh_uacc_x:\n"
    "    jmp rdi\n"
    ".org 0x3030\n"
    ".globl kh_end\nkh_end:\n"
    ".att_syntax prefix\n"
    ".popsection\n");

extern const unsigned char kh_start[], kh_entry[], kh_movcr3[], kh_acc_r[], kh_acc_w[],
    kh_acc_x[], kh_vec[], kh_user[], kh_uacc_r[], kh_uacc_w[], kh_uacc_x[], kh_end[];

#define KOFF(sym) ((uint64_t)((sym) - kh_start))

/* ---- host state ------------------------------------------------------------ */

struct vm {
    unsigned maxphyaddr;
    int fd, vcpu;
    struct kvm_run *run;
    uint8_t *ram, *harness;
    unsigned cur_slot; /* PML4 slot the harness IDT/TSS are set up for, or ~0u */
    unsigned ndirty;
    uint64_t dirty[WCASE_MAX_MEM * 2 + 8]; /* qword GPAs to restore to signatures */
};

static int kvm_fd = -1;
static int vcpu_mmap_size;
static struct kvm_cpuid2 *supported_cpuid;
static unsigned host_maxphyaddr;
static bool have_nx, have_smep, have_smap, have_pku, have_gbpages, have_la57;
static bool small_maxphyaddr_ok = true; /* decided by a probe at startup */
static bool big_maxphyaddr_ok = true;
/* KVM with PVM reserves PML4 slot 256 (0xffff800000000000-0xffff807fffffffff,
 * the "hypervisor hole" of the Linux memory map): guest CPL3 accesses there
 * fault whatever the tables say. Probed at startup. */
static bool user_slot256_broken;
static struct vm *vms[64];
static volatile sig_atomic_t timed_out;
static struct kvm_run *volatile cur_run;
static bool verbose;
/* Guest CPUID vendor. KVM's walker follows the guest's vendor where Intel
 * and AMD differ (AMD reserves bit 8 of a non-leaf PML4E); the contract
 * follows the Intel SDM, so the guest claims to be Intel unless --amd. */
static bool guest_amd;

static void die(const char *what)
{
    fprintf(stderr, "kvm_mmu: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint64_t sig_of(uint64_t qgpa)
{
    return 0x5ac3e10600000006ull | ((qgpa >> 3) << 8);
}

static bool sig_decode(uint64_t v, uint64_t *qgpa)
{
    uint64_t g = ((v >> 8) & 0xffffffull) << 3;

    if ((v & 0xffffffff000000ffull) != 0x5ac3e10600000006ull || g >= RAM_SIZE)
        return false;
    *qgpa = g;
    return true;
}

static uint64_t canon(uint64_t va)
{
    return (uint64_t)((int64_t)(va << 16) >> 16);
}

static uint64_t slot_va(unsigned slot)
{
    return canon((uint64_t)slot << 39);
}

static void wr64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint64_t rd(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;

    memcpy(&v, p, size); /* little endian host */
    return v;
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (cur_run)
        cur_run->immediate_exit = 1;
}

/* ---- VM construction ------------------------------------------------------- */

static void set_slot(struct vm *v, uint32_t slot, uint64_t gpa, uint64_t size, void *mem)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)mem,
    };

    if (ioctl(v->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
}

static void build_harness(struct vm *v)
{
    uint8_t *h = v->harness;
    uint64_t code_len = KOFF(kh_end);

    memcpy(h + OFF_CODE, kh_start, code_len);

    /* GDT: null, kernel code64, kernel data, user data, user code64 (A preset) */
    wr64(h + OFF_GDT + 0x08, 0x00af9b000000ffffull);
    wr64(h + OFF_GDT + 0x10, 0x00cf93000000ffffull);
    wr64(h + OFF_GDT + 0x18, 0x00cff3000000ffffull);
    wr64(h + OFF_GDT + 0x20, 0x00affb000000ffffull);
    /* TSS: I/O map base beyond the limit */
    h[OFF_TSS + 0x66] = 0x68;

    /* harness mapping: PDPT[0] -> PD[0] -> PT mapping the 512 harness pages */
    wr64(h + OFF_HPDPT, (HARNESS_GPA + OFF_HPD) | PTE_P | PTE_W | PTE_U);
    wr64(h + OFF_HPD, (HARNESS_GPA + OFF_HPT) | PTE_P | PTE_W | PTE_U);
    for (unsigned i = 0; i < 512; i++) {
        uint64_t pte = (HARNESS_GPA + (uint64_t)i * 4096) | PTE_P | PTE_W;

        if (i * 4096 == OFF_USER)
            pte = (HARNESS_GPA + OFF_USER) | PTE_P | PTE_U;
        wr64(h + OFF_HPT + i * 8, pte);
    }
    /* boot PML4: every candidate slot -> harness, PHYSMAP_SLOT -> RAM */
    for (unsigned i = 0; i < NCAND; i++)
        wr64(h + OFF_BOOT_PML4 + slot_candidates[i] * 8,
             (HARNESS_GPA + OFF_HPDPT) | PTE_P | PTE_W | PTE_U);
    wr64(h + OFF_BOOT_PML4 + PHYSMAP_SLOT * 8, (HARNESS_GPA + OFF_PHYS_PDPT) | PTE_P | PTE_W);
    wr64(h + OFF_PHYS_PDPT, (HARNESS_GPA + OFF_PHYS_PD) | PTE_P | PTE_W);
    for (uint64_t i = 0; i < RAM_SIZE >> 21; i++)
        wr64(h + OFF_PHYS_PD + i * 8, (i << 21) | PTE_P | PTE_W | PTE_PS);
}

static struct vm *vm_create(unsigned maxphyaddr)
{
    struct vm *v = calloc(1, sizeof(*v));
    struct kvm_cpuid2 *c;
    struct kvm_cpuid_entry2 *e;
    size_t csz;

    if (!v)
        die("calloc");
    v->maxphyaddr = maxphyaddr;
    v->cur_slot = ~0u;
    v->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (v->fd < 0)
        die("KVM_CREATE_VM");
    v->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                  -1, 0);
    v->harness = mmap(NULL, HARNESS_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (v->ram == MAP_FAILED || v->harness == MAP_FAILED)
        die("mmap");
    for (uint64_t g = 0; g < RAM_SIZE; g += 8)
        wr64(v->ram + g, sig_of(g));
    build_harness(v);
    set_slot(v, 0, 0, RAM_SIZE, v->ram);
    set_slot(v, 1, HARNESS_GPA, HARNESS_SIZE, v->harness);

    v->vcpu = ioctl(v->fd, KVM_CREATE_VCPU, 0);
    if (v->vcpu < 0)
        die("KVM_CREATE_VCPU");
    v->run = mmap(NULL, (size_t)vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
    if (v->run == MAP_FAILED)
        die("mmap kvm_run");

    csz = sizeof(*c) + supported_cpuid->nent * sizeof(struct kvm_cpuid_entry2);
    c = malloc(csz);
    if (!c)
        die("malloc");
    memcpy(c, supported_cpuid, csz);
    if ((e = cpuid_find(c, 7, 0)) != NULL) {
        if (have_smep)
            e->ebx |= 1u << 7;
        if (have_smap)
            e->ebx |= 1u << 20;
    }
    if ((e = cpuid_find(c, 0x80000008, 0)) != NULL)
        e->eax = (e->eax & ~0xffu) | maxphyaddr;
    for (unsigned k = 0; k < 2; k++) {
        if ((e = cpuid_find(c, k ? 0x80000000u : 0, 0)) != NULL) {
            /* "GenuineIntel" / "AuthenticAMD" in EBX, EDX, ECX */
            e->ebx = guest_amd ? 0x68747541 : 0x756e6547;
            e->edx = guest_amd ? 0x69746e65 : 0x49656e69;
            e->ecx = guest_amd ? 0x444d4163 : 0x6c65746e;
        }
    }
    if (ioctl(v->vcpu, KVM_SET_CPUID2, c) < 0)
        die("KVM_SET_CPUID2");
    free(c);
    return v;
}

static struct vm *vm_get(unsigned maxphyaddr)
{
    if (!vms[maxphyaddr])
        vms[maxphyaddr] = vm_create(maxphyaddr);
    return vms[maxphyaddr];
}

static void kvm_init(void)
{
    struct kvm_cpuid_entry2 *e;
    int nent = 256;

    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0)
        die("open /dev/kvm");
    if (ioctl(kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        fprintf(stderr, "kvm_mmu: unexpected KVM API version\n");
        exit(2);
    }
    vcpu_mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vcpu_mmap_size <= 0)
        die("KVM_GET_VCPU_MMAP_SIZE");
    for (;;) {
        supported_cpuid = calloc(1, sizeof(*supported_cpuid) +
                                        (size_t)nent * sizeof(struct kvm_cpuid_entry2));
        if (!supported_cpuid)
            die("calloc");
        supported_cpuid->nent = (uint32_t)nent;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, supported_cpuid) == 0)
            break;
        if (errno != E2BIG)
            die("KVM_GET_SUPPORTED_CPUID");
        free(supported_cpuid);
        nent *= 2;
    }
    e = cpuid_find(supported_cpuid, 0x80000001, 0);
    have_nx = e && (e->edx >> 20 & 1);
    have_gbpages = e && (e->edx >> 26 & 1);
    e = cpuid_find(supported_cpuid, 7, 0);
    have_smep = e && (e->ebx >> 7 & 1);
    have_smap = e && (e->ebx >> 20 & 1);
    have_pku = e && (e->ecx >> 3 & 1);
    have_la57 = e && (e->ecx >> 16 & 1);
    e = cpuid_find(supported_cpuid, 0x80000008, 0);
    host_maxphyaddr = e ? (e->eax & 0xff) : 36;
}

/* ---- running one case ------------------------------------------------------ */

struct walkpred {
    unsigned npath;
    uint64_t path[4];  /* GPAs of the entries the walk reads */
    bool leaf;         /* the walk reaches a present leaf (permissions unknown) */
    uint64_t target;   /* GPA of va if leaf */
    unsigned shift;    /* page size shift if leaf */
    bool pdpte_ps;     /* a present PDPTE with PS=1 on the path */
    const char *skip;  /* set if the case cannot be run faithfully */
};

static bool in_ram(uint64_t gpa)
{
    return gpa < RAM_SIZE;
}

static bool in_harness(uint64_t gpa, uint64_t len)
{
    return gpa < HARNESS_GPA + HARNESS_SIZE && gpa + len > HARNESS_GPA;
}

/* Reserved bits that surely stop the walk at this entry (a subset of the
 * real rules, used only to decide whether the next table would be read). */
static bool surely_reserved(const struct wcase *c, uint64_t e, int level)
{
    uint64_t above = c->maxphyaddr >= 52 ? 0 : (((1ull << 52) - 1) & ~((1ull << c->maxphyaddr) - 1));

    if (e & above)
        return true;
    if (!c->nxe && (e >> 63))
        return true;
    if (level == 4 && (e & PTE_PS))
        return true;
    return false;
}

static void predict(const struct wcase *c, struct walkpred *w)
{
    uint64_t table = c->cr3 & ADDR_MASK & ((1ull << c->maxphyaddr) - 1);

    memset(w, 0, sizeof(*w));
    for (int level = 4; level >= 1; level--) {
        unsigned idx = (unsigned)(c->va >> (12 + 9 * (level - 1))) & 511;
        uint64_t ea = table + idx * 8ull, e;

        if (!in_ram(ea) || in_harness(ea, 8)) {
            w->skip = "page table outside guest RAM (KVM injects #PF, hardware reads all-ones)";
            return;
        }
        w->path[w->npath++] = ea;
        e = wcase_read_initial(c, ea, 8);
        if (!(e & PTE_P) || surely_reserved(c, e, level))
            return;
        if (level == 3 && (e & PTE_PS))
            w->pdpte_ps = true;
        if (level == 1 || ((level == 3 || level == 2) && (e & PTE_PS))) {
            unsigned shift = level == 1 ? 12 : level == 2 ? 21 : 30;
            uint64_t mask = ADDR_MASK & ~((1ull << shift) - 1);

            w->leaf = true;
            w->shift = shift;
            w->target = (e & mask) | (c->va & ((1ull << shift) - 1));
            if (in_harness(w->target & ~7ull, 8))
                w->skip = "leaf maps the checker's harness memory";
            return;
        }
        table = e & ADDR_MASK;
        if (in_harness(table, 4096))
            w->skip = "page table inside the checker's harness memory";
    }
}

/* The byte at @gpa (in RAM) once the guest has written the case's memory:
 * the case's value in a qword the case lists, the signature otherwise. */
static uint8_t ram_byte_before(const struct wcase *c, uint64_t gpa)
{
    uint64_t q = gpa & ~7ull;

    for (unsigned i = 0; i < c->nmem; i++)
        if (c->mem[i].gpa < q + 8 && c->mem[i].gpa + c->mem[i].size > q)
            return (uint8_t)wcase_read_initial(c, gpa, 1);
    return (uint8_t)(sig_of(q) >> (8 * (gpa & 7)));
}

static void mb_write(struct vm *v, uint64_t off, uint64_t val)
{
    wr64(v->harness + OFF_MBOX + off, val);
}

static uint64_t mb_read(struct vm *v, uint64_t off)
{
    return rd(v->harness + OFF_MBOX + off, 8);
}

static void setup_slot(struct vm *v, unsigned slot)
{
    uint64_t base = slot_va(slot);
    uint8_t *h = v->harness;

    if (v->cur_slot == slot)
        return;
    for (unsigned vec = 0; vec < 32; vec++) {
        uint64_t a = base + KOFF(kh_vec) + vec * 16;
        uint64_t lo = (a & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((a >> 16 & 0xffff) << 48);

        wr64(h + OFF_IDT + vec * 16, lo);
        wr64(h + OFF_IDT + vec * 16 + 8, a >> 32);
    }
    wr64(h + OFF_TSS + 4, base + OFF_STACK_TOP); /* RSP0 */
    v->cur_slot = slot;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, uint8_t dpl, bool code)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = dpl;
    s->s = 1;
    s->l = code;
    s->db = !code;
    s->g = 1;
}

enum outcome { OUT_HLT, OUT_SHUTDOWN, OUT_TIMEOUT, OUT_OTHER };

struct runinfo {
    enum outcome how;
    unsigned exit_reason;
    bool mmio, mmio_write;
    uint64_t mmio_gpa;
    unsigned nmmio;
    unsigned suberror;
};

static void run_vcpu(struct vm *v, struct runinfo *ri)
{
    struct kvm_run *run = v->run;

    memset(ri, 0, sizeof(*ri));
    cur_run = run;
    timed_out = 0;
    alarm(5);
    for (;;) {
        int r = ioctl(v->vcpu, KVM_RUN, 0);

        if (r < 0) {
            if (errno == EINTR && timed_out) {
                run->immediate_exit = 0;
                ri->how = OUT_TIMEOUT;
                break;
            }
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("KVM_RUN");
        }
        if (run->exit_reason == KVM_EXIT_MMIO) {
            if (!ri->mmio) {
                ri->mmio = true;
                ri->mmio_gpa = run->mmio.phys_addr;
                ri->mmio_write = run->mmio.is_write;
            }
            if (++ri->nmmio > 16) {
                ri->how = OUT_OTHER;
                ri->exit_reason = KVM_EXIT_MMIO;
                break;
            }
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
            continue;
        }
        if (run->exit_reason == KVM_EXIT_HLT) {
            ri->how = OUT_HLT;
            break;
        }
        ri->exit_reason = run->exit_reason;
        if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
            ri->suberror = run->internal.suberror;
            if (verbose) {
                fprintf(stderr, "kvm_mmu: internal error %u:", run->internal.suberror);
                for (unsigned i = 0; i < run->internal.ndata && i < 16; i++)
                    fprintf(stderr, " %llx", (unsigned long long)run->internal.data[i]);
                fprintf(stderr, "\n");
            }
        }
        ri->how = run->exit_reason == KVM_EXIT_SHUTDOWN ? OUT_SHUTDOWN : OUT_OTHER;
        break;
    }
    alarm(0);
    cur_run = NULL;
}

static int res_skip(struct wresult *r, const char *why)
{
    r->kind = WRES_SKIP;
    snprintf(r->reason, sizeof(r->reason), "%s", why);
    return 0;
}

static int res_error(struct wresult *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int res_error(struct wresult *r, const char *fmt, ...)
{
    va_list ap;

    r->kind = WRES_ERROR;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    return 0;
}

static int run_case(const struct wcase *c, struct wresult *r)
{
    struct walkpred w;
    struct vm *v;
    unsigned slot = ~0u, nw = 0, ndirty_new = 0;
    uint64_t dirty_new[WCASE_MAX_MEM * 2 + 8];
    uint64_t base, pml4, acc_addr, user_va;
    uint64_t pa_mask;
    struct kvm_sregs sr;
    struct kvm_regs regs;
    struct runinfo ri;
    int patch_item = -1;
    unsigned patch_byte = 0;
    bool marked = false; /* a marker byte goes to the predicted target */
    uint8_t mark = 0, before = 0;
    uint64_t stage, kind, vec, rip;

    memset(r, 0, sizeof(*r));
    r->nmem = c->nmem;

    if (c->mode != WCASE_AMD64)
        return res_skip(r, "unsupported mode");
    if (c->pke && !have_pku)
        return res_skip(r, "pke=1 but KVM has no PKU");
    if (c->smep && !have_smep)
        return res_skip(r, "smep=1 but KVM has no SMEP");
    if (c->smap && !have_smap)
        return res_skip(r, "smap=1 but KVM has no SMAP");
    if (c->nxe && !have_nx)
        return res_skip(r, "nxe=1 but KVM has no NX");
    if (c->maxphyaddr < host_maxphyaddr && !small_maxphyaddr_ok)
        return res_skip(r, "KVM ignores a guest MAXPHYADDR below the host's");
    if (c->maxphyaddr > host_maxphyaddr && !big_maxphyaddr_ok)
        return res_skip(r, "KVM cannot model a guest MAXPHYADDR above the host's");
    if (c->maxphyaddr < 64 && HARNESS_GPA + HARNESS_SIZE > (1ull << c->maxphyaddr))
        return res_skip(r, "maxphyaddr too small for the checker's harness");

    if (user_slot256_broken && c->cpl == 3 && (c->va >> 39) == 0x1ffff00ull)
        return res_skip(r, "KVM/PVM: CPL3 accesses to PML4 slot 256 always fault on this host");

    predict(c, &w);
    if (w.skip)
        return res_skip(r, w.skip);
    if (w.pdpte_ps && c->gbpages != have_gbpages)
        return res_skip(r, c->gbpages ? "1 GiB page but KVM has no GBPAGES"
                                      : "gbpages=0 but KVM has GBPAGES");

    pa_mask = ADDR_MASK & ((1ull << c->maxphyaddr) - 1);
    pml4 = c->cr3 & pa_mask;
    if (!in_ram(pml4 + 4095)) {
        bool surely_gp = (c->cr3 & ~pa_mask & ~0xfffull) != 0;

        if (!surely_gp)
            return res_skip(r, "cr3 outside guest RAM");
    }

    /* Fetches run into a HLT placed at the predicted target; writes store
     * a marker byte there (the host checks where it landed and reports the
     * memory as it was, since `pgm walk` does not write data). */
    if (c->acc == 'x' && w.leaf && !in_ram(w.target))
        return res_skip(r, "fetch from a GPA outside guest RAM");
    if (c->acc != 'r' && w.leaf && in_ram(w.target)) {
        for (unsigned i = 0; i < w.npath; i++) {
            if (c->acc == 'x' && w.target >= w.path[i] && w.target < w.path[i] + 8)
                return res_skip(r, "fetch target byte is one of its own page-table entries");
            if (c->acc == 'w' && w.target == w.path[i])
                return res_skip(r, "write target byte holds A/D bits of its own walk");
        }
        marked = true;
        before = ram_byte_before(c, w.target);
        mark = c->acc == 'x' ? 0xf4 : (uint8_t)(before ^ 0xa5);
        for (unsigned i = 0; i < c->nmem; i++)
            if (w.target >= c->mem[i].gpa && w.target < c->mem[i].gpa + c->mem[i].size) {
                patch_item = (int)i;
                patch_byte = (unsigned)(w.target - c->mem[i].gpa);
            }
    }

    /* a PML4 slot for the harness that the case does not use */
    for (unsigned k = 0; k < NCAND && slot == ~0u; k++) {
        unsigned s = slot_candidates[k];
        uint64_t ea = pml4 + s * 8ull;
        bool ok = true;

        for (int level = 4; level >= 1; level--)
            if (((c->va >> (12 + 9 * (level - 1))) & 511) == s)
                ok = false;
        for (unsigned i = 0; i < c->nmem && ok; i++)
            if (c->mem[i].gpa < ea + 8 && c->mem[i].gpa + c->mem[i].size > ea)
                ok = false;
        if (w.leaf && c->acc != 'r' && w.target >= ea && w.target < ea + 8)
            ok = false;
        if (ok)
            slot = s;
    }
    if (slot == ~0u)
        return res_skip(r, "no free PML4 slot for the harness");

    v = vm_get(c->maxphyaddr);
    setup_slot(v, slot);
    base = slot_va(slot);

    /* guest writes: restore what the previous case touched, then this case */
#define ADDW(a, val_, sz)                                                              \
    do {                                                                               \
        uint64_t o_ = MB_WRITES + nw * 24ull;                                          \
        mb_write(v, o_, slot_va(PHYSMAP_SLOT) + (a));                                  \
        mb_write(v, o_ + 8, (val_));                                                   \
        mb_write(v, o_ + 16, (sz));                                                    \
        nw++;                                                                          \
    } while (0)
#define DIRTY(a)                                                                       \
    do {                                                                               \
        uint64_t q_ = (a) & ~7ull;                                                     \
        bool seen_ = false;                                                            \
        for (unsigned j_ = 0; j_ < ndirty_new; j_++)                                   \
            seen_ |= dirty_new[j_] == q_;                                              \
        if (!seen_)                                                                    \
            dirty_new[ndirty_new++] = q_;                                              \
    } while (0)

    for (unsigned i = 0; i < v->ndirty; i++)
        ADDW(v->dirty[i], sig_of(v->dirty[i]), 8);
    for (unsigned i = 0; i < c->nmem; i++) {
        ADDW(c->mem[i].gpa & ~7ull, 0, 8);
        DIRTY(c->mem[i].gpa);
    }
    for (unsigned i = 0; i < c->nmem; i++)
        ADDW(c->mem[i].gpa, c->mem[i].val, c->mem[i].size);
    if (in_ram(pml4 + 4095)) {
        ADDW(pml4 + slot * 8ull, (HARNESS_GPA + OFF_HPDPT) | PTE_P | PTE_W | PTE_U, 8);
        DIRTY(pml4 + slot * 8ull);
    }
    if (marked) {
        if (c->acc == 'x')
            ADDW(w.target, mark, 1);
        DIRTY(w.target);
    }
#undef ADDW
#undef DIRTY
    memcpy(v->dirty, dirty_new, sizeof(dirty_new[0]) * ndirty_new);
    v->ndirty = ndirty_new;

    acc_addr = c->acc == 'r' ? (c->va & ~7ull) : c->va;
    user_va = base + KOFF(kh_user);
    mb_write(v, MB_CR3, c->cr3);
    mb_write(v, MB_VA, acc_addr);
    mb_write(v, MB_ACC, c->acc == 'r' ? 0 : c->acc == 'w' ? 1 : 2);
    mb_write(v, MB_CPL3, c->cpl == 3);
    mb_write(v, MB_RFL, c->ac ? 1ull << 18 : 0);
    mb_write(v, MB_NWR, nw);
    mb_write(v, MB_STAGE, 0);
    mb_write(v, MB_KIND, 0);
    mb_write(v, MB_WVAL, mark);
    mb_write(v, MB_USTUB, user_va);

    if (ioctl(v->vcpu, KVM_GET_SREGS, &sr) < 0)
        die("KVM_GET_SREGS");
    seg(&sr.cs, 0x08, 11, 0, true);
    seg(&sr.ds, 0x10, 3, 0, false);
    sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
    memset(&sr.tr, 0, sizeof(sr.tr));
    sr.tr.base = base + OFF_TSS;
    sr.tr.limit = 0x67;
    sr.tr.selector = 0x28;
    sr.tr.type = 11;
    sr.tr.present = 1;
    memset(&sr.ldt, 0, sizeof(sr.ldt));
    sr.ldt.unusable = 1;
    sr.gdt.base = base + OFF_GDT;
    sr.gdt.limit = 0x2f;
    sr.idt.base = base + OFF_IDT;
    sr.idt.limit = 32 * 16 - 1;
    sr.cr0 = 0x80000031ull | (c->wp ? 1ull << 16 : 0);
    sr.cr3 = HARNESS_GPA + OFF_BOOT_PML4;
    sr.cr4 = 0x20ull | (c->pse ? 0x10 : 0) | (c->pge ? 0x80 : 0) | (c->smep ? 1ull << 20 : 0) |
             (c->smap ? 1ull << 21 : 0);
    sr.efer = 0x500ull | (c->nxe ? 0x800 : 0);
    memset(sr.interrupt_bitmap, 0, sizeof(sr.interrupt_bitmap));
    if (ioctl(v->vcpu, KVM_SET_SREGS, &sr) < 0)
        return res_error(r, "kvm: KVM_SET_SREGS refused the case's CR0/CR4/EFER (%s)",
                         strerror(errno));
    memset(&regs, 0, sizeof(regs));
    regs.rip = base + KOFF(kh_entry);
    regs.rsp = base + OFF_STACK_TOP;
    regs.rflags = 2;
    if (ioctl(v->vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");

    run_vcpu(v, &ri);
    if (ri.how == OUT_TIMEOUT)
        return res_error(r, "kvm: guest timed out");
    if (ri.how == OUT_SHUTDOWN)
        return res_error(r, "kvm: triple fault");
    if (ri.how != OUT_HLT)
        return res_error(r, "kvm: unexpected exit %u", ri.exit_reason);

    stage = mb_read(v, MB_STAGE);
    kind = mb_read(v, MB_KIND);
    vec = mb_read(v, MB_VEC);
    rip = mb_read(v, MB_RIP);

    /* memory after the access */
    for (unsigned i = 0; i < c->nmem; i++) {
        uint64_t val = rd(v->ram + c->mem[i].gpa, c->mem[i].size);

        if ((int)i == patch_item)
            val = (val & ~(0xffull << (8 * patch_byte))) | ((uint64_t)before << (8 * patch_byte));
        r->memval[i] = val;
    }

    if (kind == 1 && stage == 2 && c->cpl != 3 && c->acc != 'x') {
        r->kind = WRES_OK;
    } else if (kind == 2 && vec == 6 && stage == 2 && c->cpl == 3 && c->acc != 'x' &&
               rip >= user_va && rip < user_va + 0x30) {
        r->kind = WRES_OK;
    } else if (kind == 0 && stage == 2 && c->acc == 'x' && c->cpl != 3) {
        if (ioctl(v->vcpu, KVM_GET_REGS, &regs) < 0)
            die("KVM_GET_REGS");
        if (regs.rip != c->va + 1)
            return res_error(r, "kvm: HLT exit at 0x%llx, not at va+1",
                             (unsigned long long)regs.rip);
        r->kind = WRES_OK;
    } else if (kind == 2 && vec == 13 && stage == 2 && c->acc == 'x' && c->cpl == 3 &&
               rip == c->va) {
        r->kind = WRES_OK; /* the fetch reached the HLT */
    } else if (kind == 2 && vec == 14 && stage == 2) {
        uint64_t cr2 = mb_read(v, MB_CR2);
        uint64_t want_rip = c->acc == 'x'   ? c->va
                            : c->cpl == 3   ? (c->acc == 'r' ? user_va : user_va + 0x10)
                            : c->acc == 'r' ? base + KOFF(kh_acc_r)
                                            : base + KOFF(kh_acc_w);

        if (cr2 != acc_addr || rip != want_rip)
            return res_error(r, "kvm: #PF at rip 0x%llx cr2 0x%llx ec 0x%llx, not the access",
                             (unsigned long long)rip, (unsigned long long)cr2,
                             (unsigned long long)mb_read(v, MB_ERR));
        r->kind = WRES_PF;
        r->ec = (uint32_t)mb_read(v, MB_ERR);
        return 0;
    } else if (kind == 2 && vec == 13 && stage == 1 && rip == base + KOFF(kh_movcr3)) {
        r->kind = WRES_GP;
        return 0;
    } else if (kind == 2 && vec == 13 && stage == 2) {
        uint64_t want_rip = c->acc == 'x'   ? (c->cpl == 3 ? user_va + 0x20 : base + KOFF(kh_acc_x))
                            : c->cpl == 3   ? (c->acc == 'r' ? user_va : user_va + 0x10)
                            : c->acc == 'r' ? base + KOFF(kh_acc_r)
                                            : base + KOFF(kh_acc_w);

        if (rip != want_rip)
            return res_error(r, "kvm: #GP at rip 0x%llx, not the access", (unsigned long long)rip);
        r->kind = WRES_GP;
        return 0;
    } else {
        return res_error(r, "kvm: unexpected vector %llu at rip 0x%llx stage %llu kind %llu",
                         (unsigned long long)vec, (unsigned long long)rip,
                         (unsigned long long)stage, (unsigned long long)kind);
    }

    /* success: check where the access landed */
    if (!w.leaf)
        return res_error(r, "kvm: access succeeded but the structural walk has no leaf");
    r->gpa = w.target;
    r->size_shift = w.shift;
    if (ri.mmio) {
        uint64_t want = c->acc == 'r' ? (w.target & ~7ull) : w.target;

        if (ri.mmio_gpa != want || ri.mmio_write != (c->acc == 'w'))
            return res_error(r, "kvm: access went to MMIO 0x%llx, walk says 0x%llx",
                             (unsigned long long)ri.mmio_gpa, (unsigned long long)want);
    } else if (!in_ram(w.target)) {
        return res_error(r, "kvm: no MMIO exit for GPA 0x%llx outside RAM",
                         (unsigned long long)w.target);
    } else if (marked) {
        uint8_t now = v->ram[w.target];

        if (now != mark)
            return res_error(r, "kvm: %s at 0x%llx did not hit the predicted target 0x%llx",
                             c->acc == 'x' ? "fetch" : "write", (unsigned long long)c->va,
                             (unsigned long long)w.target);
    }
    if (c->acc == 'r' && !ri.mmio) {
        uint64_t val = mb_read(v, MB_VAL), q;

        if (sig_decode(val, &q)) {
            if (q != (w.target & ~7ull))
                return res_error(r, "kvm: read got the signature of 0x%llx, walk says 0x%llx",
                                 (unsigned long long)q, (unsigned long long)w.target);
        } else {
            uint64_t now = rd(v->ram + (w.target & ~7ull), 8);

            if (now != val)
                return res_error(r, "kvm: read 0x%llx, walk target holds 0x%llx",
                                 (unsigned long long)val, (unsigned long long)now);
        }
    }
    return 0;
}

/* ---- probes ---------------------------------------------------------------- */

/* Does KVM honour a guest MAXPHYADDR below the host's? A PTE with a bit just
 * above the guest's MAXPHYADDR must give a reserved-bit #PF. */
static void probe_maxphyaddr(void)
{
    struct wcase c;
    struct wresult r;
    char reason[96];
    char line[256];
    unsigned m = host_maxphyaddr > 36 ? 36 : 0;

    if (m) {
        snprintf(line, sizeof(line),
                 "mode=amd64 cpl=0 acc=r va=0x1000 cr3=0x10000 maxphyaddr=%u "
                 "mem=0x10000:0x11003,0x11000:0x12003,0x12000:0x13003,0x13008:0x%llx",
                 m, (unsigned long long)((1ull << (m + 1)) | 0x200003ull));
        if (wcase_parse(line, &c, reason, sizeof(reason)) == 1) {
            run_case(&c, &r);
            small_maxphyaddr_ok = r.kind == WRES_PF && (r.ec & 8);
            if (verbose)
                fprintf(stderr, "kvm_mmu: probe maxphyaddr %u: kind %d ec 0x%x\n", m, r.kind,
                        r.ec);
        }
    }
    if (host_maxphyaddr < 52) {
        snprintf(line, sizeof(line),
                 "mode=amd64 cpl=0 acc=r va=0x1000 cr3=0x10000 maxphyaddr=52 "
                 "mem=0x10000:0x11003,0x11000:0x12003,0x12000:0x13003,0x13008:0x%llx",
                 (unsigned long long)((1ull << 50) | 0x200003ull));
        if (wcase_parse(line, &c, reason, sizeof(reason)) == 1) {
            run_case(&c, &r);
            big_maxphyaddr_ok = r.kind == WRES_OK && r.gpa == ((1ull << 50) | 0x200000ull);
            if (verbose)
                fprintf(stderr, "kvm_mmu: probe maxphyaddr 52: kind %d gpa 0x%llx %s\n", r.kind,
                        (unsigned long long)r.gpa, r.reason);
        }
    }
}

static void probe_user_slot256(void)
{
    struct wcase c;
    struct wresult r;
    char reason[96];
    const char *line = "mode=amd64 cpl=3 acc=r va=0xffff800000001000 cr3=0x10000 "
                       "mem=0x10800:0x11007,0x11000:0x12007,0x12000:0x13007,0x13008:0x200007";

    if (wcase_parse(line, &c, reason, sizeof(reason)) == 1) {
        run_case(&c, &r);
        user_slot256_broken = r.kind != WRES_OK;
        if (verbose && user_slot256_broken)
            fprintf(stderr, "kvm_mmu: probe: CPL3 read in PML4 slot 256 gives kind %d ec 0x%x; "
                            "such cases are skipped\n", r.kind, r.ec);
    }
}

/* SMEP/SMAP are usable if KVM accepts the CR4 bit once the guest CPUID has it. */
static bool probe_cr4_bit(unsigned bit)
{
    struct vm *v = vm_get(host_maxphyaddr);
    struct kvm_sregs sr;
    bool ok;

    if (ioctl(v->vcpu, KVM_GET_SREGS, &sr) < 0)
        die("KVM_GET_SREGS");
    sr.cr4 |= 1ull << bit;
    ok = ioctl(v->vcpu, KVM_SET_SREGS, &sr) == 0;
    return ok;
}

/* ---- main ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: kvm_mmu [-v] [--amd] [--probe | --gen-flags] < cases > results\n"
                    "  Runs each amd64 case on a KVM vCPU; prints one result line per case.\n"
                    "  --probe      print what the host KVM supports and exit\n"
                    "  --gen-flags  print the gen_cases options that fit this host\n"
                    "  --amd        guest CPUID vendor AuthenticAMD (default GenuineIntel)\n"
                    "  Exit 77 if /dev/kvm is unusable.\n");
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    char *line = NULL;
    size_t cap = 0;
    bool probe_only = false, gen_flags = false;
    unsigned long ncases = 0, nskip = 0, nerr = 0;
    struct timespec t0, t1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v"))
            verbose = true;
        else if (!strcmp(argv[i], "--probe"))
            probe_only = true;
        else if (!strcmp(argv[i], "--gen-flags"))
            gen_flags = true;
        else if (!strcmp(argv[i], "--amd"))
            guest_amd = true;
        else {
            usage();
            return 2;
        }
    }
    {
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

        if (fd < 0) {
            fprintf(stderr, "kvm_mmu: /dev/kvm unusable: %s\n", strerror(errno));
            return 77;
        }
        close(fd);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    kvm_init();
    /* The guest CPUID of every VM gets SMEP/SMAP if KVM accepts the CR4 bits. */
    {
        bool s1 = have_smep, s2 = have_smap;

        have_smep = have_smap = true;
        s1 = s1 || probe_cr4_bit(20);
        s2 = s2 || probe_cr4_bit(21);
        have_smep = s1;
        have_smap = s2;
        /* the probe VM was created with both bits in CPUID; drop it */
        if (vms[host_maxphyaddr]) {
            close(vms[host_maxphyaddr]->vcpu);
            close(vms[host_maxphyaddr]->fd);
            munmap(vms[host_maxphyaddr]->ram, RAM_SIZE);
            munmap(vms[host_maxphyaddr]->harness, HARNESS_SIZE);
            free(vms[host_maxphyaddr]);
            vms[host_maxphyaddr] = NULL;
        }
    }
    probe_maxphyaddr();
    probe_user_slot256();
    if (verbose || probe_only)
        fprintf(stderr,
                "kvm_mmu: guest vendor %s; host MAXPHYADDR %u; NX %d SMEP %d SMAP %d PKU %d GBPAGES %d LA57 %d; "
                "guest MAXPHYADDR below host %s, above host %s%s\n",
                guest_amd ? "AMD" : "Intel", host_maxphyaddr, have_nx, have_smep, have_smap, have_pku, have_gbpages,
                have_la57, small_maxphyaddr_ok ? "honoured" : "ignored (such cases skipped)",
                big_maxphyaddr_ok ? "works" : "broken (such cases skipped)",
                user_slot256_broken ? "; CPL3 accesses to PML4 slot 256 broken (skipped)" : "");
    if (gen_flags) {
        /* gen_cases options restricting cases to what this host can run */
        printf("%s%s%s%s%s", have_pku ? "" : " --no-pku", have_gbpages ? "" : " --no-gbpages",
               have_smep ? "" : " --no-smep", have_smap ? "" : " --no-smap",
               have_nx ? "" : " --no-nx");
        if (!small_maxphyaddr_ok || !big_maxphyaddr_ok)
            printf(" --maxphyaddr %u", host_maxphyaddr);
        printf("\n");
        return 0;
    }
    if (probe_only)
        return 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (getline(&line, &cap, stdin) >= 0) {
        struct wcase c;
        struct wresult r;
        char reason[96], out[WCASE_LINE_MAX];
        int k;

        line[strcspn(line, "\r\n")] = '\0';
        k = wcase_parse(line, &c, reason, sizeof(reason));
        if (k == 0)
            continue;
        ncases++;
        if (k < 0) {
            printf("error=%s\n", reason);
            continue;
        }
        run_case(&c, &r);
        nskip += r.kind == WRES_SKIP;
        nerr += r.kind == WRES_ERROR;
        wresult_format(&r, &c, out, sizeof(out));
        printf("%s\n", out);
    }
    free(line);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (verbose)
        fprintf(stderr, "kvm_mmu: %lu cases, %lu skipped, %lu errors, %.3f s\n", ncases, nskip,
                nerr, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
