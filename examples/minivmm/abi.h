/* SPDX-License-Identifier: MIT */
/*
 * minivmm's contract with its guest: guest-physical layout, the boot-info
 * page, I/O ports and the paravirtual hypercall ABI. Included by the VMM
 * (host C) and by the guest (freestanding C and assembly), so it holds only
 * macros and one plain struct.
 *
 * Hypercall ABI (shadow mode; README.md "Hypercall ABI"):
 *   mov  rdi, arg0 ; mov rsi, arg1 ; mov al, FUNCTION ; out MINIVMM_PORT_HC, al
 *   -> result in RAX (0 or a negative errno); every other register preserved.
 * The function number is the byte written; arguments are in RDI / RSI.
 */
#ifndef MINIVMM_ABI_H
#define MINIVMM_ABI_H

/* ---- I/O ports (all byte-wide OUTs with an immediate port number) ---- */
#define MINIVMM_PORT_PF      0xe0 /* the VMM's #PF stub (never the guest's code) */
#define MINIVMM_PORT_HC      0xe1 /* hypercall: AL = function, RDI / RSI = args */
#define MINIVMM_PORT_CONSOLE 0xe9 /* one character (both modes) */

/* Hypercall functions (AL). MOV_CR3 .. MOV_CR4 stand for the instruction
 * of the same name: the VMM turns them into the VT-x exit that instruction
 * would cause (CR-access, INVLPG). */
#define HC_MOV_CR3    1 /* RDI = new CR3 (guest-physical PML4 address) */
#define HC_INVLPG     2 /* RDI = linear address */
#define HC_MOV_CR0    3 /* RDI = new CR0 */
#define HC_MOV_CR4    4 /* RDI = new CR4 */
#define HC_SET_IDT    5 /* RDI = IDT linear base, RSI = limit (instead of LIDT) */
#define HC_SET_RSP0   6 /* RDI = kernel stack for CPL3 -> CPL0 (instead of TSS.RSP0) */
#define HC_REPORT     7 /* RDI = checksum, RSI = failures: the verdict (both modes) */
#define HC_MARK       8 /* RDI = workload id, RSI = 0 start / ops count at end (bench) */
#define HC_PROBE_FLIP 9 /* test only: the VMM remaps its probe page (README "Coherence") */
#define VMM_PROBE_GVA (VMM_AREA_GVA + 0x5000) /* user-readable: 0x1111, after a flip 0x2222 */

/* ---- guest-physical layout (identical in both modes) ---- */
#define GUEST_RAM_SIZE   (32ull << 20)
#define BOOTINFO_GPA     0x1000ull
#define BOOT_PML4_GPA    0x2000ull
#define BOOT_PDPT_GPA    0x3000ull
#define BOOT_PD_GPA      0x4000ull
#define BOOT_TSS_GPA     0x5000ull   /* native mode: a placeholder TR until the guest's LTR */
#define GUEST_LOAD_GPA   0x100000ull /* the guest image is linked here (GVA = GPA) */
#define GUEST_FREE_GPA   0x400000ull /* frames from here up belong to the guest's allocator */

/* ---- the VMM area (shadow mode): PML4 slot the guest must leave empty ---- */
#define VMM_PML4_SLOT 510u
#define VMM_AREA_GVA  0xffffff0000000000ull

/* Guest selectors (GDT layout, both modes). */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define SEL_TSS   0x28

#define MINIVMM_BOOT_MAGIC 0x4d564d4d494e494dull /* "MINIMMVM" */

/* Boot modes. */
#define BOOT_NATIVE 0
#define BOOT_SHADOW 1

/* Workloads (bootinfo.workload). */
#define WL_SUITE   0 /* the self-checking suite */
#define WL_FAULTS  1 /* demand-fault, unmap, repeat */
#define WL_CTXSW   2 /* address-space switches */
#define WL_STEADY  3 /* touch a mapped working set */
#define WL_COHERE  4 /* the flush-coherence probe (README "Coherence") */
#define WL_KSPIN   5 /* calibration: a register loop at CPL0 */
#define WL_USPIN   6 /* calibration: the same loop at CPL3 */
#define WL_CONFLICT 7 /* the guest maps over the VMM area: the VMM must stop it */

#ifndef __ASSEMBLER__
struct minivmm_bootinfo {
    unsigned long long magic;
    unsigned long long mode;     /* BOOT_NATIVE / BOOT_SHADOW */
    unsigned long long ram_size;
    unsigned long long workload; /* WL_* */
    unsigned long long iters;    /* workload repetitions */
    unsigned long long reserved[3];
};
#endif

#endif /* MINIVMM_ABI_H */
