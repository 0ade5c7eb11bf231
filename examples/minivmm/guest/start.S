/* SPDX-License-Identifier: MIT */
/*
 * minivmm test guest: entry, trap stubs, probes with fixups, the switch to
 * and from CPL3, and the user program blob. Runs unchanged in both modes.
 */
#include "../abi.h"

    .intel_syntax noprefix
    .code64

    .section .text.start, "ax"
    .globl _start
_start:
    lea rsp, [rip + boot_stack_top]
    /* RDI = boot-info address (from the VMM) */
    call kmain
1:  hlt
    jmp 1b

    .text
/* ---- trap entry: vectors 0-31 ---- */
    .macro TRAP_NOERR v
    .balign 16
    push 0
    push \v
    jmp trap_common
    .endm
    .macro TRAP_ERR v
    .balign 16
    push \v
    jmp trap_common
    .endm

    .balign 16
    .globl trap_vectors
trap_vectors:
    .irp v, 0,1,2,3,4,5,6,7
    TRAP_NOERR \v
    .endr
    TRAP_ERR 8
    TRAP_NOERR 9
    .irp v, 10,11,12,13,14
    TRAP_ERR \v
    .endr
    TRAP_NOERR 15
    TRAP_NOERR 16
    TRAP_ERR 17
    .irp v, 18,19,20,21,22,23,24,25,26,27,28,29,30,31
    TRAP_NOERR \v
    .endr

trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call trap            /* returns 0: resume (iretq); 1: back to the kernel from user mode */
    test eax, eax
    jnz back_to_kernel
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

/* uint64_t enter_user(uint64_t rip, uint64_t rsp, uint64_t rdi, uint64_t rsi, uint64_t rdx)
 * Runs user code at CPL3 with those registers until it makes a system call
 * (UD2) or faults; returns user_result (set by trap()). */
    .globl enter_user
enter_user:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rip + kernel_saved_rsp], rsp
    mov rax, rdi
    mov rdi, rdx
    mov rdx, r8
    /* rsi stays */
    push SEL_UDATA
    push rsi            /* user RSP */
    pushfq
    and qword ptr [rsp], ~0x200   /* IF stays 0 */
    push SEL_UCODE
    push rax            /* user RIP */
    mov rsi, rcx
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    xor ebp, ebp
    xor r8d, r8d
    xor r9d, r9d
    xor r10d, r10d
    xor r11d, r11d
    xor r12d, r12d
    xor r13d, r13d
    xor r14d, r14d
    xor r15d, r15d
    iretq

back_to_kernel:
    mov rsp, [rip + kernel_saved_rsp]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    mov rax, [rip + user_result]
    ret

/* ---- probes: one access that may fault; trap() resumes at the fixup ----
 * uint64_t probe_read(uint64_t addr)          -> value, or PROBE_FAULTED
 * uint64_t probe_write(uint64_t addr, uint64_t v) -> 0, or PROBE_FAULTED
 * uint64_t probe_exec(uint64_t addr)          -> calls addr (which must `ret` with rax = 0)
 */
    .globl probe_read, probe_read_insn, probe_write, probe_write_insn, probe_exec, probe_exec_insn
    .globl probe_fixup
probe_read:
probe_read_insn:
    mov rax, [rdi]
    ret
probe_write:
    xor eax, eax
probe_write_insn:
    mov [rdi], rsi
    ret
probe_exec:
    xor eax, eax
probe_exec_insn:
    call rdi
    ret
probe_fixup:
    mov rax, 0xdeadfa17deadfa17
    ret

/* ---- the user program (copied to a user page; position independent) ----
 * RDI = address, RSI = op (0 read, 1 write RDX, 2 call, 3 spin RDX times, 4 RDX
 * writes cycling over the 64 pages at RDI); result in RDI, then UD2. */
    .globl user_blob, user_blob_end
    .balign 16
user_blob:
    cmp esi, 1
    je 1f
    cmp esi, 2
    je 2f
    cmp esi, 3
    je 4f
    cmp esi, 4
    je 6f
    mov rax, [rdi]
    jmp 3f
1:  mov [rdi], rdx
    xor eax, eax
    jmp 3f
2:  call rdi
    jmp 3f
4:  xor eax, eax        /* op 3: RDX iterations of a register add */
5:  add rax, 1
    cmp rax, rdx
    jb 5b
    jmp 3f
6:  xor eax, eax        /* op 4: RDX qword writes, cycling over 64 pages from RDI */
7:  mov rcx, rax
    and ecx, 63
    shl rcx, 12
    mov [rdi + rcx], rax
    add rax, 1
    cmp rax, rdx
    jb 7b
3:  mov rdi, rax
    ud2                 /* the system call: #UD from CPL3 (INT n is unreliable on kvm_pvm) */
user_blob_end:

    .bss
    .balign 4096
boot_stack:
    .skip 16384
boot_stack_top:
    .globl kernel_saved_rsp, user_result
kernel_saved_rsp: .quad 0
user_result: .quad 0

    .section .note.GNU-stack, "", @progbits
