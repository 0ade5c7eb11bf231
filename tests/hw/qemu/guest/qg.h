/* SPDX-License-Identifier: MIT */
/*
 * Protocol shared by the QEMU walk harness guest (freestanding i386, runs as
 * the machine's BIOS) and its host runner (qemu_mmu.c).
 *
 * Physical layout of the guest machine (QEMU "pc", -m 64M, no SeaBIOS):
 *   0 .. 64 MiB           guest RAM of the cases (PAM and SMRAM opened so the
 *                         0xa0000..0xfffff hole is plain RAM too)
 *   QG_HB .. +16 MiB      VGA VRAM (BAR0 programmed by the guest): the harness
 *                         image, its tables and stacks, and the case blob
 *   0xfffe0000 .. 4 GiB   the harness ROM (this image, -bios)
 *   everything else       unassigned (QEMU 7.2 reads 0 there)
 *
 * The first QG_MAP_SIZE bytes at QG_HB are mapped, with 4 KiB pages, into
 * every case's address space through one top-level slot that the case does
 * not use (see qemu_plan.c, choose_slot()).
 *
 * Usable from C and from GNU as (.S files): constants only outside the
 * __ASSEMBLER__ guard.
 */
#ifndef PGM_TESTS_HW_QEMU_QG_H
#define PGM_TESTS_HW_QEMU_QG_H

#define QG_RAM_SIZE   0x4000000      /* 64 MiB */
#define QG_HB         0xf8000000     /* harness base (VRAM BAR0) */
#define QG_VRAM_SIZE  0x1000000
#define QG_MAP_SIZE   0x200000       /* harness part mapped into cases */
#define QG_BLOB_LOAD  0x00100000     /* -device loader puts the blob here */
#define QG_BLOB_COPY  (QG_HB + 0x400000)
#define QG_BLOB_MAX   0xc00000

/* Fixed pages of the harness (offsets from QG_HB); the image itself lives
 * below 0x100000. */
#define QG_OFF_PT32     0x100000 /* 32-bit PT mapping HB .. HB+2M (4-byte PTEs) */
#define QG_OFF_PD32     0x101000 /* harness 32-bit PD */
#define QG_OFF_PDPTPAE  0x102000 /* harness PAE PDPT (32 bytes used) */
#define QG_OFF_PD       0x103000 /* PD for PAE and IA-32e: [HB>>21 & 511] -> PT */
#define QG_OFF_PT       0x104000 /* PT (8-byte PTEs) mapping HB .. HB+2M */
#define QG_OFF_PDPT     0x105000 /* IA-32e PDPT: [HB>>30 & 511] -> PD */
#define QG_OFF_PML4     0x106000 /* harness PML4: [0] -> PDPT (+ case slot) */
#define QG_OFF_PML5     0x107000 /* harness PML5: [0] -> PML4 (+ case slot) */
#define QG_OFF_GDT      0x108000
#define QG_OFF_IDT32    0x109000
#define QG_OFF_IDT64    0x10a000
#define QG_OFF_TSS      0x10b000
#define QG_OFF_CCB      0x10c000 /* control block, layout below */
#define QG_OFF_USTUB    0x10d000 /* user-mode stub code (U=1) */
#define QG_OFF_USCR     0x10e000 /* user scratch/stack page (U=1) */
#define QG_OFF_SSCR     0x10f000 /* supervisor scratch page */
#define QG_OFF_STACK    0x110000 /* ring-0 stack for paged mode, 32 KiB */
#define QG_OFF_STACKTOP 0x118000
#define QG_UNMAPPED_OFF 0x300000 /* never mapped: beyond QG_MAP_SIZE */

#define QG_HOME_STACK_SIZE 0x4000

/* GDT selectors. "delta" segments have base = slot VA - physical address of
 * the harness, so 32-bit harness code linked at its physical address runs at
 * its slot VA in the case's address space. */
#define QG_SEL_CODE32   0x08 /* flat, DPL0 */
#define QG_SEL_DATA32   0x10 /* flat, DPL0 */
#define QG_SEL_CODE64   0x18 /* DPL0 */
#define QG_SEL_DCODE0   0x20 /* delta code32 DPL0 */
#define QG_SEL_DDATA0   0x28 /* delta data DPL0 */
#define QG_SEL_TSS      0x30 /* 16 bytes */
/* per CPL k = 1..3: base 0x40 + (k-1)*0x20: flat code, flat data, delta code,
 * delta data; code64 for CPL k at 0xa0 + (k-1)*8 */
#define QG_SEL_FCODE(k) (0x40 + ((k)-1) * 0x20)
#define QG_SEL_FDATA(k) (0x48 + ((k)-1) * 0x20)
#define QG_SEL_DCODE(k) (0x50 + ((k)-1) * 0x20)
#define QG_SEL_DDATA(k) (0x58 + ((k)-1) * 0x20)
#define QG_SEL_C64(k)   (0xa0 + ((k)-1) * 8)
#define QG_GDT_ENTRIES  24

/* Vector the access stubs raise (int $QG_VEC_DONE) after the access. */
#define QG_VEC_DONE 0x40

/* Control block (at QG_HB + QG_OFF_CCB) byte offsets. */
#define CCB_MODE      0x00 /* QG_MODE_* */
#define CCB_CR0       0x04
#define CCB_CR4       0x08
#define CCB_EFER      0x0c
#define CCB_HCR3      0x10 /* harness top-level table (physical) */
#define CCB_PKRU      0x14
#define CCB_CR3       0x18 /* case CR3, 64-bit */
#define CCB_DELTA     0x20 /* slot VA - physical, 64-bit */
#define CCB_VA        0x28 /* 64-bit */
#define CCB_IRET_CS   0x30
#define CCB_IRET_SS   0x34
#define CCB_IRET_IP   0x38 /* 64-bit: RIP of the iret frame */
#define CCB_IRET_SP   0x40 /* 64-bit */
#define CCB_IRET_FL   0x48
#define CCB_DSEL      0x4c /* data selector for ES (32-bit) / DS (fetch) */
#define CCB_SCRATCH   0x50 /* 64-bit: value for the other GPRs */
#define CCB_VECTOR    0x58
#define CCB_ERRCODE   0x5c
#define CCB_CR2       0x60 /* 64-bit */
#define CCB_RIP       0x68 /* 64-bit */
#define CCB_RCX       0x70 /* 64-bit */
#define CCB_HOMEESP   0x78
#define CCB_GDTR_SLOT 0x80 /* 2 + 8 bytes */
#define CCB_IDTR_SLOT 0x90 /* 2 + 8 bytes */
#define CCB_GDTR_HOME 0xa0
#define CCB_IDTR_HOME 0xb0
#define CCB_RAX       0xc8 /* 64-bit: RAX at the access */
#define CCB_DSSEL     0xd0 /* DS selector at the access (32-bit modes) */

#define QG_MODE_32   1
#define QG_MODE_PAE  2
#define QG_MODE_LM4  3
#define QG_MODE_LM5  4

#define QG_ACC_R 0
#define QG_ACC_W 1
#define QG_ACC_X 2

#define QG_BLOB_MAGIC 0x5147424c /* "LBGQ" */
#define QG_NO_PLANT   0xffffffff

#ifndef __ASSEMBLER__
#include <stdint.h>

struct qg_blob_hdr {
    uint32_t magic;
    uint32_t ncases;
    uint32_t total_len; /* bytes, header included */
    uint32_t reserved;
};

struct qg_mem {
    uint32_t gpa;
    uint32_t size; /* 4 or 8 */
    uint64_t val;
};

/* One case record; followed by nmem struct qg_mem. All values computed by the
 * host so the guest only executes. */
struct qg_case {
    uint32_t len; /* bytes of the record, mem included */
    uint32_t idx; /* echoed back in the result line */
    uint32_t mode, cpl, acc;
    uint32_t cr0, cr4, efer, pkru;
    uint32_t ac;          /* RFLAGS.AC for the access */
    uint64_t cr3, va;
    uint32_t slot;        /* top-level slot index holding the harness */
    uint32_t slot_gpa;    /* where the slot entry goes in the case's table */
    uint64_t slot_val;
    uint32_t slot_size;   /* 4 or 8 */
    uint32_t plant_gpa;   /* fetch: put int3 here first; QG_NO_PLANT: none */
    uint32_t probe;       /* on success, run the D-bit probe */
    uint32_t esize;       /* paging-entry size: 4 (32-bit paging) or 8 */
    uint32_t nmem;
    uint32_t reserved;
};

#define QG_VA_SLOT_SHIFT(mode)                                                  \
    ((mode) == QG_MODE_32 ? 22 : (mode) == QG_MODE_PAE ? 30 : (mode) == QG_MODE_LM4 ? 39 : 48)
#endif

#endif
