/* SPDX-License-Identifier: MIT */
/*
 * Excursion into a case's paging mode and back (see qg.h for the layout).
 *
 * qg_excursion() is called from the harness home state: 32-bit protected
 * mode, paging off, flat segments. It
 *   1. loads CR4, EFER, the harness's own CR3 (which maps the harness both at
 *      its physical address and at its slot VA) and CR0.PG, so paging comes
 *      on with the next instruction still mapped;
 *   2. moves to the slot VA (legacy modes: "delta" code/data segments whose
 *      base is slot VA - physical address; IA-32e: RIP-relative code);
 *   3. loads the case's CR3 (a #GP here is reported like any exception);
 *   4. IRETs to the access: a stub at the case's CPL that reads or writes the
 *      byte at VA and then raises QG_VEC_DONE, or (fetch) VA itself with
 *      RFLAGS.TF set;
 *   5. takes the first exception, stores vector, error code, CR2, RIP and RCX
 *      in the control block, switches back to the harness CR3, returns to the
 *      identity mapping and turns paging (and long mode) off.
 * It returns the vector.
 */
#include "qg.h"


/* qg_ccb and qg_stacktop come from the linker script, so that RIP-relative
 * references to them get PC-relative relocations. */
#define ccb_mode (qg_ccb + CCB_MODE)
#define ccb_cr0 (qg_ccb + CCB_CR0)
#define ccb_cr4 (qg_ccb + CCB_CR4)
#define ccb_efer (qg_ccb + CCB_EFER)
#define ccb_hcr3 (qg_ccb + CCB_HCR3)
#define ccb_pkru (qg_ccb + CCB_PKRU)
#define ccb_cr3 (qg_ccb + CCB_CR3)
#define ccb_delta (qg_ccb + CCB_DELTA)
#define ccb_va (qg_ccb + CCB_VA)
#define ccb_iret_cs (qg_ccb + CCB_IRET_CS)
#define ccb_iret_ss (qg_ccb + CCB_IRET_SS)
#define ccb_iret_ip (qg_ccb + CCB_IRET_IP)
#define ccb_iret_sp (qg_ccb + CCB_IRET_SP)
#define ccb_iret_fl (qg_ccb + CCB_IRET_FL)
#define ccb_dsel (qg_ccb + CCB_DSEL)
#define ccb_scratch (qg_ccb + CCB_SCRATCH)
#define ccb_vector (qg_ccb + CCB_VECTOR)
#define ccb_errcode (qg_ccb + CCB_ERRCODE)
#define ccb_cr2 (qg_ccb + CCB_CR2)
#define ccb_rip (qg_ccb + CCB_RIP)
#define ccb_rcx (qg_ccb + CCB_RCX)
#define ccb_homeesp (qg_ccb + CCB_HOMEESP)
#define ccb_gdtr_slot (qg_ccb + CCB_GDTR_SLOT)
#define ccb_idtr_slot (qg_ccb + CCB_IDTR_SLOT)
#define ccb_gdtr_home (qg_ccb + CCB_GDTR_HOME)
#define ccb_idtr_home (qg_ccb + CCB_IDTR_HOME)
#define ccb_rax (qg_ccb + CCB_RAX)
#define ccb_dssel (qg_ccb + CCB_DSSEL)
#define stacktop qg_stacktop

    .text
    .code32
    .globl qg_excursion
qg_excursion:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl %esp, ccb_homeesp
    cmpl $QG_MODE_LM4, ccb_mode
    jae long_entry

    /* ---- 32-bit and PAE paging ---- */
    movl ccb_cr4, %eax
    movl %eax, %cr4
    movl $0xc0000080, %ecx
    movl ccb_efer, %eax
    xorl %edx, %edx
    wrmsr
    movl ccb_hcr3, %eax
    movl %eax, %cr3
    movl ccb_cr0, %eax
    movl %eax, %cr0
    lgdt ccb_gdtr_slot
    lidt ccb_idtr_slot
    ljmp $QG_SEL_DCODE0, $paged32
paged32:
    movw $QG_SEL_DDATA0, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $stacktop, %esp
    movw $QG_SEL_TSS, %ax
    ltr %ax
    movl ccb_cr3, %eax
    .globl qg_cr3point32
qg_cr3point32:
    movl %eax, %cr3
    movl ccb_iret_cs, %eax
    testl $3, %eax
    jz 1f
    pushl ccb_iret_ss
    pushl ccb_iret_sp
1:  pushl ccb_iret_fl
    pushl ccb_iret_cs
    pushl ccb_iret_ip
    movl ccb_dsel, %eax
    movw %ax, %es
    movl ccb_scratch, %ebx
    movl %ebx, %ecx
    movl %ebx, %edx
    movl %ebx, %esi
    movl %ebx, %edi
    movl %ebx, %ebp
    movl ccb_rax, %eax
    pushl ccb_dssel
    popl %ds
    iret

    /* exception vectors, 32-bit (IDT selector QG_SEL_DCODE0) */
    .macro VEC32 n, ec
    .globl qg_vec32_\n
qg_vec32_\n:
    .if \ec == 0
    pushl $0
    .endif
    pushl $\n
    jmp common32
    .endm

common32:
    pushl %ecx
    movw $QG_SEL_DDATA0, %cx
    movw %cx, %ds
    popl %ecx
    movl %ecx, ccb_rcx
    movl $0, ccb_rcx + 4
    popl ccb_vector
    popl ccb_errcode
    popl ccb_rip
    movl $0, ccb_rip + 4
    movl %cr2, %eax
    movl %eax, ccb_cr2
    movl $0, ccb_cr2 + 4
    movl ccb_hcr3, %eax
    movl %eax, %cr3
    movw $QG_SEL_DATA32, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    ljmp $QG_SEL_CODE32, $exit32
exit32:
    movl %cr0, %eax
    andl $0x7fffffff, %eax
    movl %eax, %cr0
home_return:
    lgdt ccb_gdtr_home
    lidt ccb_idtr_home
    ljmp $QG_SEL_CODE32, $1f
1:  movw $QG_SEL_DATA32, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    xorl %eax, %eax
    movl %eax, %cr4
    movl $0xc0000080, %ecx
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr
    movl ccb_homeesp, %esp
    movl ccb_vector, %eax
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret

    /* ---- IA-32e paging (4- and 5-level) ---- */
long_entry:
    movl ccb_cr4, %eax
    movl %eax, %cr4
    movl ccb_hcr3, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    movl ccb_efer, %eax
    xorl %edx, %edx
    wrmsr
    movl ccb_cr0, %eax
    movl %eax, %cr0
    ljmp $QG_SEL_CODE64, $ident64
    .code64
ident64:
    leaq high64(%rip), %rax
    addq ccb_delta(%rip), %rax
    jmp *%rax
high64:
    lgdt ccb_gdtr_slot(%rip)
    lidt ccb_idtr_slot(%rip)
    movw $QG_SEL_DATA32, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    leaq stacktop(%rip), %rsp
    movw $QG_SEL_TSS, %ax
    ltr %ax
    movq ccb_cr3(%rip), %rax
    .globl qg_cr3point64
qg_cr3point64:
    movq %rax, %cr3
    testl $(1 << 22), ccb_cr4(%rip)
    jz 1f
    movl ccb_pkru(%rip), %eax
    xorl %ecx, %ecx
    xorl %edx, %edx
    wrpkru
1:  movl ccb_iret_ss(%rip), %eax
    pushq %rax
    pushq ccb_iret_sp(%rip)
    movl ccb_iret_fl(%rip), %eax
    pushq %rax
    movl ccb_iret_cs(%rip), %eax
    pushq %rax
    pushq ccb_iret_ip(%rip)
    movq ccb_scratch(%rip), %rbx
    movq %rbx, %rcx
    movq %rbx, %rdx
    movq %rbx, %rsi
    movq %rbx, %rdi
    movq %rbx, %rbp
    movq %rbx, %r8
    movq %rbx, %r9
    movq %rbx, %r10
    movq %rbx, %r11
    movq %rbx, %r12
    movq %rbx, %r13
    movq %rbx, %r14
    movq %rbx, %r15
    movq ccb_rax(%rip), %rax
    iretq

    .macro VEC64 n, ec
    .globl qg_vec64_\n
qg_vec64_\n:
    .if \ec == 0
    pushq $0
    .endif
    pushq $\n
    jmp common64
    .endm

common64:
    movq %rcx, ccb_rcx(%rip)
    popq %rax
    movl %eax, ccb_vector(%rip)
    popq %rax
    movl %eax, ccb_errcode(%rip)
    popq %rax
    movq %rax, ccb_rip(%rip)
    movq %cr2, %rax
    movq %rax, ccb_cr2(%rip)
    movl ccb_hcr3(%rip), %eax
    movq %rax, %cr3
    leaq exit64_ident(%rip), %rax
    subq ccb_delta(%rip), %rax
    jmp *%rax
exit64_ident:
    leaq stacktop(%rip), %rsp
    pushq $QG_SEL_CODE32
    leaq exit_compat(%rip), %rax
    pushq %rax
    lretq
    .code32
exit_compat:
    movl %cr0, %eax
    andl $0x7fffffff, %eax
    movl %eax, %cr0
    movw $QG_SEL_DATA32, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    jmp home_return

    /* vector stubs */
    .code32
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    VEC32 \n, 0
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
    VEC32 \n, 1
    .endr
    VEC32 64, 0
    .code64
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    VEC64 \n, 0
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
    VEC64 \n, 1
    .endr
    VEC64 64, 0

    /* Access stubs. Copied to the user stub page as a block (qg_stubs ..
     * qg_stubs_end) and also run in place for CPL 0..2. Fixed offsets: */
    .p2align 4
    .globl qg_stubs, qg_stubs_end
qg_stubs:
    .code32
    /* +0x00: 32-bit read */
    movb %es:(%eax), %cl
    int $QG_VEC_DONE
    .p2align 4
    /* +0x10: 32-bit write (locked RMW: a write access that stores the
     * value it read) */
    lock orb $0, %es:(%eax)
    int $QG_VEC_DONE
    .p2align 4
    .code64
    /* +0x20: 64-bit read */
    movb (%rax), %cl
    int $QG_VEC_DONE
    .p2align 4
    /* +0x30: 64-bit write */
    lock orb $0, (%rax)
    int $QG_VEC_DONE
    .p2align 4
qg_stubs_end:
    .code32
