/* SPDX-License-Identifier: MIT */
/*
 * Reset code of the harness BIOS: from the reset vector to 32-bit protected
 * mode, map the VGA VRAM BAR at QG_HB (our RAM outside the cases' 0..64 MiB),
 * copy the image there, clear .bss and call qg_main().
 */
#include "qg.h"

    .section .reset, "ax"
    .code16
    .globl reset16
reset16:
    cli
    cld
    lgdtl %cs:(0xf000 + rom_gdt_desc - reset16)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $pm32
    .code32
pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    /* fast A20 on */
    inb $0x92, %al
    orb $2, %al
    andb $0xfe, %al
    outb %al, $0x92
    /* VGA at 00:02.0: BAR0 = QG_HB, command = memory space */
    movl $0x80001010, %eax
    movw $0xcf8, %dx
    outl %eax, %dx
    movl $QG_HB, %eax
    movw $0xcfc, %dx
    outl %eax, %dx
    movl $0x80001004, %eax
    movw $0xcf8, %dx
    outl %eax, %dx
    movl $0x00000002, %eax
    movw $0xcfc, %dx
    outl %eax, %dx
    /* copy the image from ROM to VRAM, clear .bss */
    movl $_img_lma, %esi
    movl $_img_start, %edi
    movl $_img_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    rep movsl
    movl $_bss_start, %edi
    movl $_bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl
    movl $(qg_home_stack + QG_HOME_STACK_SIZE), %esp
    call qg_main
1:  hlt
    jmp 1b

    .p2align 3
rom_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff
    .quad 0x00cf93000000ffff
rom_gdt_desc:
    .word rom_gdt_desc - rom_gdt - 1
    .long rom_gdt

    .org 0xff0
    jmp reset16
    .org 0x1000
