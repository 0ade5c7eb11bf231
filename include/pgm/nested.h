/* SPDX-License-Identifier: MIT */
/**
 * @file nested.h
 * @brief Nested paging (EPT on VT-x, NPT on AMD-V): the GPA -> HPA tables
 *        libpgm builds for a VM created with PGM_PAGING_EPT or PGM_PAGING_NPT,
 *        and the nested-fault handler.
 *
 * One nested table per VM (the guest-physical space is per VM), shared by
 * every vCPU. libpgm fills it lazily from nested faults (EPT violations,
 * NPFs), reflects the physical map and the handlers into it (read-only for
 * WRITE handlers, a fast-exit marker for MMIO and ALL handlers), maps 2 MiB
 * and 1 GiB pages where the embedder allows it, and asks the backend to flush
 * (scope PGM_FLUSH_GPA or PGM_FLUSH_ALL, every vCPU, one request per
 * operation) whenever it removes or narrows an entry. See docs/nested.md.
 */
#ifndef PGM_NESTED_H
#define PGM_NESTED_H

#include "hwvirt.h"
#include "paging.h"
#include "regs.h"
#include "types.h"
#include "vm.h"

/** Flags of struct pgm_nested_config. */
enum pgm_nested_flags {
    /** EPT: the EPTP enables accessed/dirty flags (needs the A/D capability); dirty logs use D bits. */
    PGM_NESTED_EPT_AD = 1u << 0,
    /** NPT: host EFER.NXE is set at VMRUN, so leaves can be non-executable (bit 63). */
    PGM_NESTED_NPT_NXE = 1u << 1,
    /** NPT: the host CPU supports 1 GiB pages (CPUID 8000_0001 EDX[26]). */
    PGM_NESTED_NPT_GBPAGES = 1u << 2,
    /**
     * The backend's RAM blocks (alloc_ram_block) are host-physically
     * contiguous and may be mapped with 2 MiB nested pages where a block's
     * HPA is suitably aligned.
     */
    PGM_NESTED_LARGE_2M = 1u << 3,
    /** Likewise for 1 GiB nested pages. */
    PGM_NESTED_LARGE_1G = 1u << 4,
    /** Do not use the MMIO fast-exit marker: MMIO pages stay not present. */
    PGM_NESTED_NO_MMIO_MARKER = 1u << 5,
};

/**
 * Vendor parameters of the nested tables, from the embedder. Pointed to by
 * struct pgm_vm_config.nested (copied at VM creation); NULL there means the
 * defaults of pgm_nested_config_init().
 */
struct pgm_nested_config {
    uint32_t struct_size; /**< sizeof(struct pgm_nested_config) */
    /** IA32_VMX_EPT_VPID_CAP (EPT only). Default: 4-level walk, WB, 2 MiB, 1 GiB, INVEPT, A/D. */
    uint64_t ept_caps;
    uint32_t levels;          /**< 4 or 5 (EPT 5-level walk / NPT with host LA57). Default 4. */
    uint32_t host_maxphyaddr; /**< host physical-address width, 32..52. Default 46. */
    uint32_t flags;           /**< `pgm_nested_flags`. Default: none. */
    uint8_t reserved[28];     /**< must be zero */
};

/** Fill @p cfg with the defaults (see the member docs). */
PGM_API void pgm_nested_config_init(struct pgm_nested_config *cfg);

/** Flags of struct pgm_nested_fault_info. */
enum pgm_nested_fault_flags {
    /** `gva` holds the guest-linear address of the access (VT-x GLA valid). */
    PGM_NESTED_FI_GVA_VALID = 1u << 0,
    /**
     * The fault hit the guest's own page walk (a guest paging-structure
     * access or A/D update: EPT "translated access" = 0 / NPF "final
     * translation" = 0), not the final access.
     */
    PGM_NESTED_FI_GUEST_WALK = 1u << 1,
    /**
     * An EPT misconfiguration exit or an NPF with the reserved-bit error
     * code: on a libpgm table this only arises from the MMIO fast-exit
     * marker (the fast path: no table work, straight to emulation).
     */
    PGM_NESTED_FI_MISCONFIG = 1u << 2,
};

/** Optional extras of a nested fault, as the exit reports them. */
struct pgm_nested_fault_info {
    uint32_t flags; /**< `pgm_nested_fault_flags` */
    pgm_gva_t gva;  /**< with PGM_NESTED_FI_GVA_VALID */
};

/**
 * Fill @p info and @p access from a decoded EPT violation.
 * @return 0, or -EINVAL for NULL pointers.
 */
PGM_API int pgm_nested_info_from_ept(const struct pgm_vtx_ept_violation *v,
                                     struct pgm_nested_fault_info *info, uint32_t *access);

/**
 * Fill @p info and @p access from a decoded NPF (a reserved-bit NPF sets
 * PGM_NESTED_FI_MISCONFIG).
 * @return 0, or -EINVAL for NULL pointers.
 */
PGM_API int pgm_nested_info_from_npf(const struct pgm_svm_npf *npf,
                                     struct pgm_nested_fault_info *info, uint32_t *access);

/**
 * Fill @p info, @p access and @p gpa from a vendor-neutral event of kind
 * PGM_HWVIRT_NESTED_FAULT or PGM_HWVIRT_NESTED_MISCONFIG (the access of a
 * misconfiguration is unknown: READ; libpgm decodes the instruction anyway).
 * @return 0; -EINVAL for NULL pointers or another kind of event.
 */
PGM_API int pgm_nested_info_from_event(const struct pgm_hwvirt_event *ev,
                                       struct pgm_nested_fault_info *info, uint32_t *access,
                                       pgm_gpa_t *gpa);

/**
 * A nested fault (EPT violation, EPT misconfiguration, NPF) at @p gpa.
 *
 * Decision (docs/nested.md has the full table): RAM is mapped on first
 * access - a read of a never-written page maps the shared zero page
 * read-only, a write allocates the page and maps it writable (2 MiB / 1 GiB
 * when allowed and possible); ROM is mapped read-only; a WRITE-handler page
 * read-only; MMIO and ALL-handler pages get the fast-exit marker (or stay not
 * present). An access the mapping cannot allow (a write to ROM or to a
 * WRITE-handler page, any access to MMIO, an ALL-handler page or an
 * unassigned GPA - reads all-ones, writes dropped) is finished by emulating
 * the instruction at @p regs->rip (pgm_emulate_insn). A fault another vCPU
 * already fixed is resumed.
 *
 * @param vcpu    the faulting vCPU (its CR0/CR3/CR4/EFER must be current)
 * @param gpa     the faulting guest-physical address
 * @param access  `pgm_access`: READ, WRITE or FETCH
 * @param info    optional extras (may be NULL)
 * @param regs    the guest registers, or NULL: then an access that needs
 *                emulation returns EXIT with exit_reason PGM_EXIT_EMULATE,
 *                exit_gpa, exit_write (exit_size 0: unknown) and, with a
 *                valid GVA in @p info, `address` = that GVA
 * @param out     the outcome: RESUME, EMULATED, EXIT or INJECT
 * A @p gpa beyond what the nested walk covers (2^48 with 4 levels, 2^57
 * with 5) is never mapped: the access is finished by emulation (or EXIT
 * with PGM_EXIT_EMULATE without @p regs), on unassigned space unless RAM
 * was placed there.
 * @return 0 with the outcome in @p out; -EINVAL (NULL @p vcpu / @p out, not
 *         a nested-paging VM, unknown access bits); -ENOMEM (a table or page
 *         could not be allocated: nothing changed, the call may be retried)
 */
PGM_API int pgm_nested_fault(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, uint32_t access,
                             const struct pgm_nested_fault_info *info, struct pgm_regs *regs,
                             struct pgm_fault_out *out);

/**
 * The value to load as the VM's EPTP (VT-x: WB, walk length, A/D per the
 * configuration) or nCR3 (AMD-V: PWT = PCD = 0).
 * @return 0; -EINVAL (NULL argument, not a nested-paging VM)
 */
PGM_API int pgm_nested_root(struct pgm_vm *vm, uint64_t *pointer);

/** The nested root, raw (for software MMUs). */
struct pgm_nested_root_info {
    enum pgm_paging_hw format; /**< PGM_PAGING_EPT or PGM_PAGING_NPT */
    pgm_hpa_t root;            /**< top table's host-physical address */
    unsigned levels;           /**< 4 or 5 */
    bool ept_ad;               /**< EPT A/D flags enabled */
    unsigned host_maxphyaddr;  /**< host physical-address width the entries respect */
};

/**
 * Describe the VM's nested root.
 * @return 0; -EINVAL (NULL argument, not a nested-paging VM)
 */
PGM_API int pgm_nested_info(struct pgm_vm *vm, struct pgm_nested_root_info *out);

#endif /* PGM_NESTED_H */
