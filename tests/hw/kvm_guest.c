/* SPDX-License-Identifier: MIT */
/*
 * kvm_mmu's guest: the code a case runs (entry, access, exception stubs and
 * the CPL3 user stubs) and the 2 MiB harness image at HARNESS_GPA it runs in.
 *
 * The code is position-independent: it finds the mailbox RIP-relative, so
 * the same bytes work through whichever PML4 slot maps the harness for the
 * case. It is copied into every VM at harness offset OFF_CODE; the labels
 * declared in kvm_mmu.h give the host the offsets it needs (KOFF).
 */
#include "kvm_mmu.h"

#include <stdint.h>
#include <string.h>

const unsigned slot_candidates[] = {0x0f5, 0x1a7, 0x03c, 0x15e, 0x0b2, 0x1e9, 0x071, 0x126,
                                    0x0d8, 0x189, 0x047, 0x1c3, 0x09a, 0x16d, 0x02b, 0x1f4};

/* ---- guest code ------------------------------------------------------------ */

/* The .set lines repeat OFF_MBOX and the MB_* offsets of kvm_mmu.h, and
 * ".org 0x3000" is OFF_USER: change them together. */
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

void build_harness(struct vm *v)
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

void setup_slot(struct vm *v, unsigned slot)
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
