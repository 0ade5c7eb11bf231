/* SPDX-License-Identifier: MIT */
/*
 * Internals of kvm_mmu, shared by its files and by nothing else:
 *
 *   kvm_mmu.c    options, startup probes of what the host KVM can model, main
 *   kvm_case.c   one case: structural walk, guest writes, result decoding
 *   kvm_vm.c     /dev/kvm, one VM and vCPU per guest MAXPHYADDR, KVM_RUN
 *   kvm_guest.c  the guest code and the harness memory image it runs in
 *
 * The method is described at the top of kvm_mmu.c.
 */
#ifndef PGM_TESTS_HW_KVM_MMU_H
#define PGM_TESTS_HW_KVM_MMU_H

#include "case.h"

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

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

/* mailbox fields (keep in sync with the .set lines of the guest code in
 * kvm_guest.c, which also hard-codes OFF_MBOX and OFF_USER) */
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

/* PML4 slots that may map the harness into a case's address space; the boot
 * PML4 maps all of them, each case gets the first one it does not use.
 * Defined in kvm_guest.c (a different count there is a type conflict). */
#define NCAND 16u
extern const unsigned slot_candidates[NCAND];

/* ---- guest code (kvm_guest.c) ---------------------------------------------- */

/* Labels in the guest code, which is copied to harness offset OFF_CODE:
 * KOFF(label) is the label's offset in the harness. */
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

/* What the host KVM supports (kvm_vm.c; set by kvm_init, SMEP/SMAP widened
 * by main after probing the CR4 bits). */
extern unsigned host_maxphyaddr;
extern bool have_nx, have_smep, have_smap, have_pku, have_gbpages, have_la57;

/* Options and probe results (kvm_mmu.c). */
extern bool verbose;
/* Guest CPUID vendor. KVM's walker follows the guest's vendor where Intel
 * and AMD differ (AMD reserves bit 8 of a non-leaf PML4E); the contract
 * follows the Intel SDM, so the guest claims to be Intel unless --amd. */
extern bool guest_amd;
extern bool small_maxphyaddr_ok; /* decided by a probe at startup */
extern bool big_maxphyaddr_ok;
/* KVM with PVM reserves PML4 slot 256 (0xffff800000000000-0xffff807fffffffff,
 * the "hypervisor hole" of the Linux memory map): guest CPL3 accesses there
 * fault whatever the tables say. Probed at startup. */
extern bool user_slot256_broken;

/* ---- small helpers --------------------------------------------------------- */

/* Signature of unlisted RAM: byte 0 is 0x06 (P=0), so an unlisted entry is
 * not present, and the qword's GPA is recoverable from a read of it. */
static inline uint64_t sig_of(uint64_t qgpa)
{
    return 0x5ac3e10600000006ull | ((qgpa >> 3) << 8);
}

static inline bool sig_decode(uint64_t v, uint64_t *qgpa)
{
    uint64_t g = ((v >> 8) & 0xffffffull) << 3;

    if ((v & 0xffffffff000000ffull) != 0x5ac3e10600000006ull || g >= RAM_SIZE)
        return false;
    *qgpa = g;
    return true;
}

static inline uint64_t canon(uint64_t va)
{
    return (uint64_t)((int64_t)(va << 16) >> 16);
}

static inline uint64_t slot_va(unsigned slot)
{
    return canon((uint64_t)slot << 39);
}

static inline void wr64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static inline uint64_t rd(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;

    memcpy(&v, p, size); /* little endian host */
    return v;
}

static inline void mb_write(struct vm *v, uint64_t off, uint64_t val)
{
    wr64(v->harness + OFF_MBOX + off, val);
}

static inline uint64_t mb_read(struct vm *v, uint64_t off)
{
    return rd(v->harness + OFF_MBOX + off, 8);
}

/* ---- kvm_guest.c ----------------------------------------------------------- */

/* Fill a new VM's harness memory: code, GDT, TSS, harness and boot tables. */
void build_harness(struct vm *v);
/* Point the IDT and TSS.RSP0 at the harness as mapped through PML4 @slot. */
void setup_slot(struct vm *v, unsigned slot);

/* ---- kvm_vm.c -------------------------------------------------------------- */

enum outcome { OUT_HLT, OUT_SHUTDOWN, OUT_TIMEOUT, OUT_OTHER };

struct runinfo {
    enum outcome how;
    unsigned exit_reason;
    bool mmio, mmio_write;
    uint64_t mmio_gpa;
    unsigned nmmio;
    unsigned suberror;
};

void die(const char *what);
/* Open /dev/kvm, install the SIGALRM watchdog, read what KVM supports. */
void kvm_init(void);
/* The VM for guest MAXPHYADDR @maxphyaddr, created on first use. */
struct vm *vm_get(unsigned maxphyaddr);
/* Destroy that VM if it exists; the next vm_get makes a fresh one. */
void vm_drop(unsigned maxphyaddr);
/* Load the vCPU for case @c with the harness at @base: segments, tables,
 * CR0/CR4/EFER from the case, boot CR3, RIP at the guest entry. False, with
 * errno set, if KVM refuses the case's control registers. */
bool vcpu_load_case(struct vm *v, const struct wcase *c, uint64_t base);
uint64_t vcpu_rip(struct vm *v);
/* Run the vCPU until HLT, shutdown, another exit or the 5 s watchdog. */
void run_vcpu(struct vm *v, struct runinfo *ri);

/* ---- kvm_case.c ------------------------------------------------------------ */

/* Run one case and decode its result (or skip or error) into @r. */
int run_case(const struct wcase *c, struct wresult *r);

#endif
