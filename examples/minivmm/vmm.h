/* SPDX-License-Identifier: MIT */
/*
 * minivmm internals. Files:
 *
 *   kvm.c      /dev/kvm: VM, memory slots, vCPU state, KVM_RUN
 *   backend.c  the libpgm backend over a KVM memory slot, the VMM area and
 *              the coherence of KVM's cached copy of libpgm's tables
 *   exits.c    KVM exits -> VT-x exit records -> pgm_vtx_decode_exit -> libpgm
 *   main.c     options, guest loading, the two modes, compare / bench / coherence
 *
 * Memory (shadow mode). libpgm's "host-physical" addresses are KVM
 * guest-physical addresses (the L1 GPA space of the KVM VM):
 *
 *   slot 0  [0, TMEM_SIZE)                VMM area pages, root copies, then
 *                                         the pages alloc_page hands to libpgm
 *   slot 1  [RAM_HPA, RAM_HPA + RAM size) guest RAM (alloc_ram_block)
 *
 * Native mode has one slot: guest RAM at KVM GPA 0.
 */
#ifndef MINIVMM_VMM_H
#define MINIVMM_VMM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <pgm/pgm.h>
#include <pgm/hwvirt.h>

#include "abi.h"

#define TMEM_SIZE  (64ull << 20)
#define RAM_HPA    (128ull << 20)
#define AREA_HPA   0x0ull          /* the VMM area: 16 pages at HPA 0 */
#define COPY_HPA   0x10000ull      /* root copies */
#define NCOPIES    64u
#define POOL_HPA   (1ull << 20)    /* libpgm's pages from here to TMEM_SIZE */

/* Offsets inside the VMM area (same offsets from VMM_AREA_GVA and AREA_HPA). */
#define AREA_STUB   0x0000  /* #PF stub code (RX) */
#define AREA_IDT    0x1000  /* the IDT the vCPU uses: the guest's gates, vector 14 = stub */
#define AREA_GDT    0x2000  /* GDT (0x00-0x37) and TSS (0x100) */
#define AREA_TSS    0x2100
#define AREA_STACK  0x3000  /* IST1 stack, two pages */
#define AREA_STACK_TOP 0x5000
#define AREA_PDPT   0x5000  /* page tables of the area (never mapped) */
#define AREA_PD     0x6000
#define AREA_PT     0x7000
#define AREA_PROBE_A 0x8000 /* the probe page's two frames (VMM_PROBE_GVA) */
#define AREA_PROBE_B 0x9000

enum flush_method {
    FLUSH_MEMSLOT = 0, /* delete + re-create the slot holding the tables */
    FLUSH_SREGS,       /* KVM_SET_SREGS with the same CR3 */
    FLUSH_NONE,        /* nothing: shows the incoherence */
};

struct vmm_stats {
    uint64_t exits, exit_pf, exit_hc, exit_console, exit_other;
    uint64_t pf_resume, pf_emulated, pf_inject;
    uint64_t hc_cr3, hc_invlpg, hc_cr0, hc_cr4;
    uint64_t flush_req[5];        /* by pgm_flush_scope */
    uint64_t drops;               /* KVM cache drops done */
    uint64_t copy_syncs, copy_new_entries, rsp0_prefaults;
    uint64_t ns_run, ns_pgm, ns_state, ns_drop, ns_audit;
};

struct vmm {
    int kvm_fd, vm_fd, vcpu_fd;
    struct kvm_run *run;
    bool shadow;
    enum flush_method flush_method;
    bool audit;          /* pgm_audit after every exit */
    bool verbose;

    /* memory */
    uint8_t *tmem;       /* slot 0 (shadow) */
    uint8_t *ram;        /* guest RAM */
    uint64_t ram_size, ram_hpa;
    uint64_t *free_pages;
    uint64_t nfree, next_page, pages_in_use;
    bool ram_block_used;

    /* libpgm */
    struct pgm_vm *pvm;
    struct pgm_vcpu *pcpu;
    pgm_hpa_t lib_root;      /* last load_root */
    bool drop_pending;       /* KVM's copy of a present entry may be stale */
    uint64_t real_cr3;       /* what the vCPU's CR3 holds */
    struct { pgm_hpa_t lib; uint64_t last_use; } copies[NCOPIES];
    uint64_t copy_clock;
    uint64_t guest_pf_handler; /* the guest's vector 14 (from HC_SET_IDT) */
    bool conflict;

    /* results */
    bool reported;
    uint64_t checksum, failures;
    uint64_t mark_ns, mark_ops, mark_elapsed_ns;
    struct vmm_stats st, st_mark;  /* st_mark: st at the workload's start mark */
    struct pgm_stats pst_mark;       /* libpgm's counters at the start mark */
    char console[256];
    unsigned console_len;
    bool quiet_console;
};

/* kvm.c */
uint64_t now_ns(void);
int kvm_open(struct vmm *v);             /* -errno; 77-style skip decided by the caller */
void kvm_add_slot(struct vmm *v, uint32_t slot, uint64_t gpa, uint64_t size, void *mem);
void kvm_del_slot(struct vmm *v, uint32_t slot);
void kvm_create_vcpu(struct vmm *v);
void kvm_get_regs(struct vmm *v, struct kvm_regs *r);
void kvm_set_regs(struct vmm *v, const struct kvm_regs *r);
void kvm_get_sregs(struct vmm *v, struct kvm_sregs *s);
void kvm_set_sregs(struct vmm *v, const struct kvm_sregs *s);
void kvm_close(struct vmm *v);
void vmm_die(const char *what);
void seg_code64(struct kvm_segment *s, uint16_t sel, unsigned dpl);
void seg_data(struct kvm_segment *s, uint16_t sel, unsigned dpl);

/* backend.c */
extern const struct pgm_backend_ops vmm_backend_ops;
void area_build(struct vmm *v);
void area_set_idt(struct vmm *v, const uint64_t *gates, unsigned n);
void area_set_rsp0(struct vmm *v, uint64_t rsp0);
void area_probe_flip(struct vmm *v);
uint64_t *area_ptr(struct vmm *v, uint64_t off);
uint64_t root_copy_sync(struct vmm *v, pgm_hpa_t lib_root); /* returns the copy's HPA */
void drop_kvm_cache(struct vmm *v);
bool keep_rsp0_present(struct vmm *v); /* true if it synced an entry */
void *hpa_ptr(struct vmm *v, uint64_t hpa);

/* exits.c */
int vmm_run(struct vmm *v, uint64_t timeout_ms); /* 0 guest reported; -1 error */

#endif /* MINIVMM_VMM_H */
