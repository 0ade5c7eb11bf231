/* SPDX-License-Identifier: MIT */
/**
 * @file paging.h
 * @brief Guest paging events and queries: MOV CR3 and the guest page walk.
 */
#ifndef PGM_PAGING_H
#define PGM_PAGING_H

#include "regs.h"
#include "types.h"
#include "vm.h"

/**
 * MOV CR3. Validates the new value against the current mode (bits above
 * MAXPHYADDR in IA-32e mode raise #GP) and, in PAE mode, latches the four
 * PDPTEs from guest memory; a PDPTE with reserved bits set makes the load
 * raise #GP (SDM 4.4.1). With CR4.PCIDE, bit 63 (NOFLUSH) is accepted and
 * stripped; bits 11:0 are the PCID.
 * @return 0; PGM_RC_INJECT_GP if the guest's MOV must raise #GP(0) (CR3 and
 *         the latched PDPTEs are then unchanged); -EINVAL for a NULL vCPU.
 */
PGM_API int pgm_sync_cr3(struct pgm_vcpu *vcpu, uint64_t cr3);

/**
 * Walk the guest's page tables for @p gva exactly as the CPU would for an
 * access of kind @p access (a `pgm_access` mask), in the vCPU's current mode.
 *
 * On success A bits are set in every entry used and, for a write, D in the
 * leaf, each with an atomic compare-and-swap (a guest entry that changes
 * under the walk restarts it). A faulting walk writes no A/D bit. With
 * PGM_ACCESS_NO_AD nothing is written.
 *
 * @param vcpu    the vCPU whose CR0/CR3/CR4/EFER/PKRU govern the walk
 * @param gva     linear address (truncated to 32 bits outside IA-32e mode)
 * @param access  `pgm_access` flags
 * @param walk    receives the full result (see struct pgm_walk)
 * @return 0 when @p walk holds a result (translation, #PF or #GP alike);
 *         -EINVAL for NULL pointers or unknown access flags;
 *         -ELOOP if the guest kept changing an entry under the walk (after
 *         PGM_WALK_MAX_RETRIES restarts; nothing is then written).
 */
PGM_API int pgm_walk(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access,
                     struct pgm_walk *walk);

/** Restarts of a walk whose A/D compare-and-swap lost a race before -ELOOP. */
#define PGM_WALK_MAX_RETRIES 64

/** What the embedder must do after a fault-path call. */
enum pgm_fault_result {
    /** Resume the guest as it is (for a bounded REP string: registers hold the
     *  iterations done, RIP is unchanged, the guest re-executes the rest). */
    PGM_FAULT_RESUME = 0,
    /** Inject `vector` (with `error_code`; for #PF, CR2 = `address`). */
    PGM_FAULT_INJECT,
    /** libpgm emulated the instruction: copy the registers back (RIP advanced). */
    PGM_FAULT_EMULATED,
    /** libpgm cannot finish it: see `exit_reason`; registers unchanged. */
    PGM_FAULT_EXIT,
};

/** Why a fault-path call returned PGM_FAULT_EXIT. */
enum pgm_exit_reason {
    PGM_EXIT_NONE = 0,
    PGM_EXIT_HANDLER,       /**< a handler returned PGM_HANDLER_EXIT for the access described */
    PGM_EXIT_UNEMULATABLE,  /**< the instruction is outside the emulator's allow-list */
    PGM_EXIT_INVALID,       /**< the bytes at RIP do not decode (the embedder decides: #UD) */
    /**
     * pgm_nested_fault() without registers (or without the emulator): the
     * access at `exit_gpa` (`exit_write`; `exit_size` 0 = unknown) must be
     * finished by the embedder, e.g. by its own instruction emulator.
     */
    PGM_EXIT_EMULATE,
};

/** Outcome of a fault-path call. */
struct pgm_fault_out {
    enum pgm_fault_result result;
    uint8_t vector;            /**< INJECT: 13 (#GP) or 14 (#PF) */
    uint32_t error_code;       /**< INJECT */
    uint64_t address;          /**< INJECT of #PF: the faulting linear address (CR2) */
    enum pgm_exit_reason exit_reason; /**< EXIT */
    pgm_gpa_t exit_gpa;        /**< EXIT_HANDLER: the access a handler refused */
    uint32_t exit_size;        /**< EXIT_HANDLER: bytes */
    bool exit_write;           /**< EXIT_HANDLER: a write */
    uint8_t exit_data[16];     /**< EXIT_HANDLER write: the bytes */
    uint8_t insn[15];          /**< EXIT: the instruction bytes fetched */
    uint8_t insn_len;          /**< EXIT: how many of them */
};

/**
 * Emulate the guest instruction at @p regs->rip: fetch it through the guest
 * page tables (CS base + RIP), decode it, and execute it with every memory
 * access translated by the guest walker (setting A/D as the CPU would, with
 * the CPL, RFLAGS.AC and access kind of the instruction) and performed on
 * guest-physical memory, through physical handlers where pages have them
 * (origin PGM_ORIGIN_GUEST, this vCPU). This is how an MMIO access or a write
 * the guest may not make directly is finished.
 *
 * A translation failure becomes INJECT with the guest's own #PF error code
 * (or #GP for a non-canonical address) and nothing is written; an access
 * crossing a page is checked on both pages before either is written. Reads
 * of MMIO with no handler see all-ones and writes to it are dropped, as on a
 * PC bus.
 *
 * @return 0 with the outcome in @p out (EMULATED, RESUME, INJECT or EXIT);
 *         -EINVAL for NULL arguments or @p regs->code_bits not 16/32/64;
 *         -ENOTSUP if libpgm was built without Capstone.
 */
PGM_API int pgm_emulate_insn(struct pgm_vcpu *vcpu, struct pgm_regs *regs,
                             struct pgm_fault_out *out);

/* ---- Shadow paging (VMs created with PGM_PAGING_SHADOW_AMD64) ----------
 * Every guest mode is shadowed: IA-32e guests on 4/5-level shadow tables,
 * the others on PAE-format ones (docs/shadow.md). */

/**
 * A #PF the hardware raised while the guest ran on libpgm's shadow tables
 * (a VT-x/AMD-V exception exit, or the soft MMU).
 *
 * libpgm walks the guest's own tables for @p cr2 with the access the error
 * code describes: a guest fault is returned as INJECT with the guest's error
 * code (never the hardware's, which describes the shadow); otherwise the
 * shadow entries are built or upgraded (A/D are emulated: a page is mapped
 * read-only until the guest's D bit is set) and the result is RESUME, also
 * for a spurious fault another vCPU already fixed. Writes the guest may not
 * make directly - to a guest page table libpgm shadows (write-protected),
 * to a page with a WRITE handler, any access to MMIO or an ALL-handler page,
 * a supervisor write allowed only by CR0.WP = 0 - are finished by emulating
 * the instruction at @p regs->rip (pgm_emulate_insn), whose outcome is
 * returned (EMULATED, INJECT, EXIT), and shadow entries of written guest
 * tables are updated.
 *
 * @return 0 with the outcome in @p out; -EINVAL (NULL argument, not a
 *         shadow-paging VM); -ENOMEM (pool exhausted even after eviction)
 */
PGM_API int pgm_trap0e(struct pgm_vcpu *vcpu, uint32_t error_code, pgm_gva_t cr2,
                       struct pgm_regs *regs, struct pgm_fault_out *out);

/**
 * INVLPG @p gva: requests the backend flush of that address for this vCPU.
 * A non-canonical address is a no-op, as on the CPU.
 * @return 0; -EINVAL
 */
PGM_API int pgm_invlpg(struct pgm_vcpu *vcpu, pgm_gva_t gva);

/**
 * A guest TLB flush (a MOV CR4 toggling PGE for @p global, or INVPCID
 * all-context): requests the matching backend flush.
 * @return 0; -EINVAL
 */
PGM_API int pgm_flush_tlb(struct pgm_vcpu *vcpu, bool global);

/** INVPCID types (the instruction's register operand). */
enum pgm_invpcid_type {
    PGM_INVPCID_ADDRESS = 0,    /**< one linear address in one PCID */
    PGM_INVPCID_SINGLE = 1,     /**< one PCID, global entries kept */
    PGM_INVPCID_ALL_GLOBAL = 2, /**< every PCID, global entries included */
    PGM_INVPCID_ALL = 3,        /**< every PCID, global entries kept */
};

/**
 * INVPCID with @p type, the descriptor's @p pcid and @p gva. Checks what the
 * CPU checks and requests the matching flush (libpgm runs the guest on an
 * untagged hardware TLB, so a single-PCID flush flushes every non-global
 * entry: never less than the guest asked).
 * @return 0; PGM_RC_INJECT_GP (type above 3, a PCID above 4095, a
 *         non-canonical address for type 0, or a nonzero PCID for types 0
 *         and 1 while CR4.PCIDE = 0); -EINVAL
 */
PGM_API int pgm_invpcid(struct pgm_vcpu *vcpu, unsigned type, uint32_t pcid, pgm_gva_t gva);

/** One address's path through a vCPU's shadow tables (pgm_shadow_lookup). */
struct pgm_shadow_info {
    unsigned levels;                    /**< shadow levels (3 PAE format, 4, 5); 0: no root */
    pgm_hpa_t root;                     /**< the root table */
    unsigned last_level;                /**< lowest level read */
    uint64_t entry[PGM_MAX_LEVELS + 1]; /**< the shadow entry read at each level */
    bool present;                       /**< a present leaf maps the address */
    pgm_hpa_t hpa;                      /**< where, when present */
};

/**
 * Debugging: follow @p gva through @p vcpu's shadow tables as the MMU
 * would (without a TLB and without setting A/D).
 * @return 0; -EINVAL (not a shadow-paging VM); -EIO (an entry points at no
 *         shadow page: pgm_audit says more)
 */
PGM_API int pgm_shadow_lookup(struct pgm_vcpu *vcpu, pgm_gva_t gva, struct pgm_shadow_info *out);

/**
 * Before entering the guest: the shadow root the vCPU must run on (also
 * handed to the backend's load_root when it changes).
 * @return 0; -EINVAL (not a shadow-paging VM); -ENOMEM
 */
PGM_API int pgm_before_entry(struct pgm_vcpu *vcpu, pgm_hpa_t *root);

/**
 * One guest memory access of @p size bytes (1..4096, within one page) at
 * @p gva, made through the soft backend's MMU and libpgm's shadow tables
 * (or, on an EPT / NPT VM, the guest's own tables through libpgm's nested
 * table: a guest #PF is INJECT straight away, nested faults go through
 * pgm_nested_fault and are retried) as a CPU would make it: for software
 * CPUs and tests. @p access is a
 * `pgm_access` mask (READ/WRITE/FETCH, USER for CPL 3, AC). For a read or
 * fetch the bytes land in @p buf; for a write they come from it.
 *
 * Shadow misses are synced and retried; guest faults come back as INJECT
 * (nothing accessed); writes to shadowed guest tables are performed by
 * libpgm, which updates the affected shadow entries; pages with handlers
 * are accessed through them.
 *
 * @return 0 with @p out->result RESUME (the access is done), INJECT or EXIT;
 *         -EINVAL (bad arguments, VM not on the soft backend with shadow or
 *         nested paging, @p size crossing a page); -ENOMEM; -EIO if a shadow
 *         or nested entry points at memory the backend never handed out
 *         (pgm_audit says why); -ELOOP if nested faults never resolve
 */
PGM_API int pgm_soft_access(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, void *buf,
                            size_t size, struct pgm_fault_out *out);

#endif /* PGM_PAGING_H */
