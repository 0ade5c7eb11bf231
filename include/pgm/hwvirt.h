/* SPDX-License-Identifier: MIT */
/**
 * @file hwvirt.h
 * @brief Hardware-virtualization vendor layer: VT-x exit decoding, EPT and
 *        EPTP formats (Intel SDM vol. 3C ch. 27-29), AMD-V exit decoding, NPT
 *        and nCR3 formats (AMD APM vol. 2 ch. 15).
 *
 * Everything here is pure: no global state, no VMREAD, no CPUID. The embedder
 * reads the raw VMCS / VMCB fields and capability registers itself and passes
 * the values in. Decoders fill plain structs; the `*_decode_exit` functions
 * additionally fold the exits libpgm cares about into one vendor-neutral
 * `struct pgm_hwvirt_event` (see docs/hwvirt.md for the exit-handler map).
 *
 * Conventions (as everywhere in libpgm): fallible functions return 0 or a
 * negative errno. A decoder rejects with -EINVAL only what the hardware can
 * never produce (a bit the manual documents as "cleared to 0" set, a CR
 * number that cannot exit); bits the manual leaves undefined are ignored.
 * The raw value is always kept so nothing is lost.
 */
#ifndef PGM_HWVIRT_H
#define PGM_HWVIRT_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "types.h"

/* ======================================================================== */
/* Vendor-neutral events                                                     */
/* ======================================================================== */

/** What a decoded exit means for libpgm. */
enum pgm_hwvirt_kind {
    PGM_HWVIRT_OTHER = 0,        /**< nothing for libpgm; see `reason` */
    PGM_HWVIRT_PAGE_FAULT,       /**< intercepted guest #PF: `u.pf` (-> trap0e) */
    PGM_HWVIRT_CR_ACCESS,        /**< control-register access: `u.cr` */
    PGM_HWVIRT_INVLPG,           /**< INVLPG: `u.invlpg` */
    PGM_HWVIRT_NESTED_FAULT,     /**< EPT violation or NPF: `u.nested` */
    PGM_HWVIRT_NESTED_MISCONFIG, /**< EPT misconfiguration: `u.misconfig_gpa` */
};

/** An intercepted guest page fault. */
struct pgm_hwvirt_pf {
    uint32_t error_code; /**< #PF error code (`pgm_pfec` bits) */
    pgm_gva_t cr2;       /**< faulting linear address; the guest's CR2 is NOT yet written */
};

/** Kind of control-register access. */
enum pgm_hwvirt_cr_op {
    PGM_HWVIRT_CR_MOV_TO = 0,      /**< MOV to CRn from `gpr` */
    PGM_HWVIRT_CR_MOV_FROM,        /**< MOV from CRn to `gpr` */
    PGM_HWVIRT_CR_CLTS,            /**< CLTS (CR0.TS cleared) */
    PGM_HWVIRT_CR_LMSW,            /**< LMSW with `lmsw_data` */
    /** SVM without the MOV-CR valid bit: a write (CLTS, LMSW, or MOV without DecodeAssists). */
    PGM_HWVIRT_CR_WRITE_UNDECODED,
    /** SVM without the MOV-CR valid bit: a read (SMSW, or MOV without DecodeAssists). */
    PGM_HWVIRT_CR_READ_UNDECODED,
};

/** A control-register access exit. */
struct pgm_hwvirt_cr {
    enum pgm_hwvirt_cr_op op; /**< what the instruction did */
    uint8_t cr;               /**< control register number (0, 3, 4, 8; SVM: 0-15) */
    /** General-purpose register (0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15) or -1 if unknown. */
    int8_t gpr;
    bool lmsw_memory;         /**< VT-x LMSW: the operand was in memory (linear address in the exit's guest-linear field) */
    uint16_t lmsw_data;       /**< VT-x LMSW: the 16-bit source operand */
    bool selective;           /**< SVM: the CR0 selective-write intercept (a bit other than TS/MP changed) */
};

/** An INVLPG exit. */
struct pgm_hwvirt_invlpg {
    bool gva_valid; /**< false on SVM without DecodeAssists: decode the instruction */
    pgm_gva_t gva;  /**< the linear address operand */
};

/** Which access of the guest a nested fault hit. */
enum pgm_hwvirt_nested_stage {
    PGM_HWVIRT_STAGE_UNKNOWN = 0, /**< not reported (e.g. VT-x PAE PDPTE load, SVM with neither bit) */
    PGM_HWVIRT_STAGE_FINAL,       /**< the final GPA of a guest linear access */
    PGM_HWVIRT_STAGE_GUEST_WALK,  /**< a guest paging-structure access (walk or A/D update) */
};

/** An EPT violation or an AMD-V nested page fault. */
struct pgm_hwvirt_nested {
    pgm_gpa_t gpa;         /**< the faulting guest-physical address */
    uint32_t access;       /**< `pgm_access`: 0 (read), PGM_ACCESS_WRITE or PGM_ACCESS_FETCH */
    bool gva_valid;        /**< `gva` holds the guest linear address (VT-x only) */
    pgm_gva_t gva;         /**< guest linear address when `gva_valid` */
    enum pgm_hwvirt_nested_stage stage; /**< final translation or guest table access */
    /** The nested entry was present (VT-x: any of R/W/X allowed by the walk; SVM: error code P bit). */
    bool present;
};

/** One decoded VM exit / #VMEXIT. */
struct pgm_hwvirt_event {
    enum pgm_hwvirt_kind kind; /**< selects the member of `u` */
    uint64_t reason;           /**< VT-x basic exit reason, or the SVM EXITCODE */
    union {
        struct pgm_hwvirt_pf pf;         /**< PGM_HWVIRT_PAGE_FAULT */
        struct pgm_hwvirt_cr cr;         /**< PGM_HWVIRT_CR_ACCESS */
        struct pgm_hwvirt_invlpg invlpg; /**< PGM_HWVIRT_INVLPG */
        struct pgm_hwvirt_nested nested; /**< PGM_HWVIRT_NESTED_FAULT */
        pgm_gpa_t misconfig_gpa;         /**< PGM_HWVIRT_NESTED_MISCONFIG */
    } u;
};

/* ======================================================================== */
/* VT-x: exit reason and exit information                                    */
/* ======================================================================== */

/** Basic VM-exit reasons (SDM vol. 3D appendix C). */
enum pgm_vtx_exit_reason {
    PGM_VTX_EXIT_EXCEPTION_NMI      = 0,  /**< exception or NMI (interruption info valid) */
    PGM_VTX_EXIT_EXTERNAL_INTERRUPT = 1,
    PGM_VTX_EXIT_TRIPLE_FAULT       = 2,
    PGM_VTX_EXIT_INIT               = 3,
    PGM_VTX_EXIT_SIPI               = 4,
    PGM_VTX_EXIT_IO_SMI             = 5,
    PGM_VTX_EXIT_OTHER_SMI          = 6,
    PGM_VTX_EXIT_INTERRUPT_WINDOW   = 7,
    PGM_VTX_EXIT_NMI_WINDOW         = 8,
    PGM_VTX_EXIT_TASK_SWITCH        = 9,
    PGM_VTX_EXIT_CPUID              = 10,
    PGM_VTX_EXIT_GETSEC             = 11,
    PGM_VTX_EXIT_HLT                = 12,
    PGM_VTX_EXIT_INVD               = 13,
    PGM_VTX_EXIT_INVLPG             = 14, /**< exit qualification = linear address */
    PGM_VTX_EXIT_RDPMC              = 15,
    PGM_VTX_EXIT_RDTSC              = 16,
    PGM_VTX_EXIT_RSM                = 17,
    PGM_VTX_EXIT_VMCALL             = 18,
    PGM_VTX_EXIT_VMCLEAR            = 19,
    PGM_VTX_EXIT_VMLAUNCH           = 20,
    PGM_VTX_EXIT_VMPTRLD            = 21,
    PGM_VTX_EXIT_VMPTRST            = 22,
    PGM_VTX_EXIT_VMREAD             = 23,
    PGM_VTX_EXIT_VMRESUME           = 24,
    PGM_VTX_EXIT_VMWRITE            = 25,
    PGM_VTX_EXIT_VMXOFF             = 26,
    PGM_VTX_EXIT_VMXON              = 27,
    PGM_VTX_EXIT_CR_ACCESS          = 28, /**< exit qualification: struct pgm_vtx_cr_access */
    PGM_VTX_EXIT_DR_ACCESS          = 29,
    PGM_VTX_EXIT_IO_INSTRUCTION     = 30,
    PGM_VTX_EXIT_RDMSR              = 31,
    PGM_VTX_EXIT_WRMSR              = 32,
    PGM_VTX_EXIT_INVALID_GUEST_STATE = 33, /**< VM-entry failure */
    PGM_VTX_EXIT_MSR_LOADING        = 34, /**< VM-entry failure */
    PGM_VTX_EXIT_MWAIT              = 36,
    PGM_VTX_EXIT_MONITOR_TRAP_FLAG  = 37,
    PGM_VTX_EXIT_MONITOR            = 39,
    PGM_VTX_EXIT_PAUSE              = 40,
    PGM_VTX_EXIT_MACHINE_CHECK      = 41, /**< VM-entry failure */
    PGM_VTX_EXIT_TPR_BELOW_THRESHOLD = 43,
    PGM_VTX_EXIT_APIC_ACCESS        = 44,
    PGM_VTX_EXIT_VIRTUALIZED_EOI    = 45,
    PGM_VTX_EXIT_GDTR_IDTR          = 46,
    PGM_VTX_EXIT_LDTR_TR            = 47,
    PGM_VTX_EXIT_EPT_VIOLATION      = 48, /**< struct pgm_vtx_ept_violation */
    PGM_VTX_EXIT_EPT_MISCONFIG      = 49, /**< guest-physical address field valid */
    PGM_VTX_EXIT_INVEPT             = 50,
    PGM_VTX_EXIT_RDTSCP             = 51,
    PGM_VTX_EXIT_PREEMPTION_TIMER   = 52,
    PGM_VTX_EXIT_INVVPID            = 53,
    PGM_VTX_EXIT_WBINVD             = 54,
    PGM_VTX_EXIT_XSETBV             = 55,
    PGM_VTX_EXIT_APIC_WRITE         = 56,
    PGM_VTX_EXIT_RDRAND             = 57,
    PGM_VTX_EXIT_INVPCID            = 58, /**< operands via the VM-exit instruction-information field */
    PGM_VTX_EXIT_VMFUNC             = 59,
    PGM_VTX_EXIT_ENCLS              = 60,
    PGM_VTX_EXIT_RDSEED             = 61,
    PGM_VTX_EXIT_PML_FULL           = 62,
    PGM_VTX_EXIT_XSAVES             = 63,
    PGM_VTX_EXIT_XRSTORS            = 64,
    PGM_VTX_EXIT_PCONFIG            = 65,
    PGM_VTX_EXIT_SPP                = 66,
    PGM_VTX_EXIT_UMWAIT             = 67,
    PGM_VTX_EXIT_TPAUSE             = 68,
    PGM_VTX_EXIT_LOADIWKEY          = 69,
    PGM_VTX_EXIT_ENCLV              = 70,
    PGM_VTX_EXIT_ENQCMD_PASID       = 72,
    PGM_VTX_EXIT_ENQCMDS_PASID      = 73,
    PGM_VTX_EXIT_BUS_LOCK           = 74,
    PGM_VTX_EXIT_NOTIFY             = 75,
};

/** The 32-bit exit-reason field (VMCS 0x4402), split. */
struct pgm_vtx_exit_info {
    uint16_t basic;        /**< bits 15:0: `pgm_vtx_exit_reason` */
    bool bus_lock;         /**< bit 26: a bus lock was asserted before the exit */
    bool enclave;          /**< bit 27: the exit was incident to enclave mode */
    bool pending_mtf;      /**< bit 28: pending MTF VM exit (SMM) */
    bool from_vmx_root;    /**< bit 29: exit from VMX root operation (SMM) */
    bool entry_failure;    /**< bit 31: VM-entry failure, not a true exit */
};

/**
 * Split the exit-reason field. Bit 16 is documented as always 0 and bits 25:17
 * and 30 as undefined; they are ignored.
 * @return 0, or -EINVAL for a NULL @p out.
 */
PGM_API int pgm_vtx_decode_exit_reason(uint32_t raw, struct pgm_vtx_exit_info *out);

/** Interruption type of the VM-exit interruption-information field, bits 10:8. */
enum pgm_vtx_intr_type {
    PGM_VTX_INTR_EXTERNAL      = 0, /**< external interrupt */
    PGM_VTX_INTR_NMI           = 2, /**< non-maskable interrupt */
    PGM_VTX_INTR_HW_EXCEPTION  = 3, /**< hardware exception (#PF, #GP, ...) */
    PGM_VTX_INTR_SW_INTERRUPT  = 4, /**< INT n (IDT-vectoring info only; "not used" on exit) */
    PGM_VTX_INTR_PRIV_SW_EXCEPTION = 5, /**< INT1 (IDT-vectoring info; "not used" on exit in the SDMs consulted) */
    PGM_VTX_INTR_SW_EXCEPTION  = 6, /**< INT3 / INTO */
};

/** The VM-exit interruption-information field (VMCS 0x4404), split. */
struct pgm_vtx_intr_info {
    bool valid;            /**< bit 31; when clear the other members are zero */
    uint8_t vector;        /**< bits 7:0 */
    uint8_t type;          /**< bits 10:8, `pgm_vtx_intr_type` */
    bool error_code_valid; /**< bit 11: the interruption error code field holds the code */
    bool nmi_unblocking;   /**< bit 12: NMI unblocking due to IRET */
};

/**
 * Split the VM-exit interruption-information field. An invalid field (bit 31
 * clear) is undefined apart from that bit: @p out is zeroed.
 * @return 0; -EINVAL for a NULL @p out, or a valid field with a bit of 30:13
 *         set (the SDM clears them; the embedder passed another field).
 */
PGM_API int pgm_vtx_decode_intr_info(uint32_t raw, struct pgm_vtx_intr_info *out);

/** The raw VMCS exit-information fields an exit handler reads (no VMREAD here). */
struct pgm_vtx_exit_fields {
    uint32_t exit_reason;          /**< VMCS 0x4402 */
    uint64_t exit_qualification;   /**< VMCS 0x6400 */
    uint32_t intr_info;            /**< VMCS 0x4404, VM-exit interruption information */
    uint32_t intr_error_code;      /**< VMCS 0x4406, VM-exit interruption error code */
    uint64_t guest_linear_address; /**< VMCS 0x640A */
    uint64_t guest_physical_address; /**< VMCS 0x2400 */
};

/**
 * Recognise a guest #PF exit: basic reason 0, interruption information valid,
 * type hardware exception, vector 14. For such an exit the error code is in the
 * interruption error-code field and the faulting linear address in the exit
 * qualification (SDM 28.2.1); CR2 itself is not written by the exit.
 * @param f    the raw fields
 * @param out  receives error code and CR2 on a #PF exit (may be NULL)
 * @return 1 for a #PF exit, 0 for any other exit; -EINVAL for NULL @p f, for
 *         a #PF exit without "error code valid" (impossible in hardware), or
 *         for malformed interruption information.
 */
PGM_API int pgm_vtx_pf_exit(const struct pgm_vtx_exit_fields *f, struct pgm_hwvirt_pf *out);

/** Access type of a control-register access (exit qualification bits 5:4). */
enum pgm_vtx_cr_access_type {
    PGM_VTX_CR_MOV_TO   = 0, /**< MOV to CR */
    PGM_VTX_CR_MOV_FROM = 1, /**< MOV from CR */
    PGM_VTX_CR_CLTS     = 2, /**< CLTS */
    PGM_VTX_CR_LMSW     = 3, /**< LMSW */
};

/** Exit qualification of a control-register access (SDM table 28-3). */
struct pgm_vtx_cr_access {
    uint8_t cr;           /**< bits 3:0: CR number (0 for CLTS and LMSW) */
    uint8_t type;         /**< bits 5:4: `pgm_vtx_cr_access_type` */
    bool lmsw_memory;     /**< bit 6: LMSW operand type (0 register, 1 memory) */
    uint8_t gpr;          /**< bits 11:8: GPR of MOV CR (0 RAX ... 15 R15) */
    uint16_t lmsw_data;   /**< bits 31:16: LMSW source data */
};

/**
 * Decode a control-register-access exit qualification.
 * @return 0; -EINVAL for a NULL @p out, reserved bits (7, 15:12, 63:32) set,
 *         a MOV to CR other than CR0, CR3, CR4, CR8, a MOV from CR other
 *         than CR3, CR8 (CR0 / CR4 reads come from the read shadows and never
 *         exit), a CLTS or LMSW with CR != 0,
 *         a non-zero LMSW field outside LMSW, a non-zero GPR field outside
 *         MOV, or a memory-operand flag outside LMSW.
 */
PGM_API int pgm_vtx_decode_cr_access(uint64_t qual, struct pgm_vtx_cr_access *out);

/** EPT-violation exit qualification bits (SDM table 28-7). */
enum pgm_vtx_eptv_bits {
    PGM_VTX_EPTV_READ        = 1u << 0,  /**< the access was a data read */
    PGM_VTX_EPTV_WRITE       = 1u << 1,  /**< the access was a data write */
    PGM_VTX_EPTV_FETCH       = 1u << 2,  /**< the access was an instruction fetch */
    PGM_VTX_EPTV_READABLE    = 1u << 3,  /**< AND of bit 0 over the EPT entries used */
    PGM_VTX_EPTV_WRITABLE    = 1u << 4,  /**< AND of bit 1 */
    PGM_VTX_EPTV_EXECUTABLE  = 1u << 5,  /**< AND of bit 2 (supervisor-executable with MBEC) */
    PGM_VTX_EPTV_USER_EXEC   = 1u << 6,  /**< AND of bit 10 with MBEC; undefined without */
    PGM_VTX_EPTV_GLA_VALID   = 1u << 7,  /**< guest-linear-address field valid */
    PGM_VTX_EPTV_TRANSLATED  = 1u << 8,  /**< with bit 7: final translation (1) vs paging-structure access (0) */
    PGM_VTX_EPTV_USER_LA     = 1u << 9,  /**< advanced info: linear address is user-mode */
    PGM_VTX_EPTV_RW_LA       = 1u << 10, /**< advanced info: linear address is read/write */
    PGM_VTX_EPTV_XD_LA       = 1u << 11, /**< advanced info: linear address is execute-disable */
    PGM_VTX_EPTV_NMI_UNBLOCK = 1u << 12, /**< NMI unblocking due to IRET */
    PGM_VTX_EPTV_SHADOW_STACK = 1u << 13, /**< the access was a shadow-stack access */
    PGM_VTX_EPTV_SSS         = 1u << 14, /**< with supervisor shadow-stack control: the leaf's bit 60 */
    PGM_VTX_EPTV_GUEST_PAGING_VERIFY = 1u << 15, /**< caused by guest-paging verification */
    PGM_VTX_EPTV_ASYNC       = 1u << 16, /**< the access was asynchronous to instruction execution */
};

/** A decoded EPT violation. */
struct pgm_vtx_ept_violation {
    uint64_t qual;          /**< raw exit qualification (`pgm_vtx_eptv_bits`) */
    pgm_gpa_t gpa;          /**< guest-physical address field */
    bool gla_valid;         /**< qualification bit 7 */
    pgm_gva_t gla;          /**< guest-linear address field when `gla_valid`, else 0 */
    bool read, write, fetch;            /**< bits 2:0: the access */
    bool readable, writable, executable; /**< bits 5:3: rights of the walk */
    bool user_executable;   /**< bit 6 (meaningful only with MBEC) */
    /** Bit 8 with bit 7 set: the final translation of the linear address, not a guest table access. */
    bool translated;
    /** Bits 11:9 are valid (`gla_valid`, `translated` and the capability's advanced info). */
    bool advanced_valid;
    bool user_la, rw_la, xd_la; /**< bits 9, 10, 11 when `advanced_valid` */
    bool nmi_unblocking;    /**< bit 12 */
    bool shadow_stack;      /**< bit 13 */
    bool sss;               /**< bit 14 */
};

/**
 * Decode an EPT violation. Bits 63:17 are kept in `qual` but not interpreted
 * (the SDM has been growing this field). Bits 11:9 are only trusted when
 * @p advanced (IA32_VMX_EPT_VPID_CAP bit 22) and bits 7 and 8 are set.
 * @param qual      exit qualification
 * @param gpa       guest-physical address field
 * @param gla       guest-linear address field (ignored unless bit 7 is set)
 * @param advanced  the CPU reports advanced exit information for EPT violations
 * @param out       receives the decoded fields
 * @return 0, or -EINVAL for a NULL @p out.
 */
PGM_API int pgm_vtx_decode_ept_violation(uint64_t qual, pgm_gpa_t gpa, pgm_gva_t gla,
                                         bool advanced, struct pgm_vtx_ept_violation *out);

/* ======================================================================== */
/* VT-x: capabilities and EPTP                                               */
/* ======================================================================== */

/** Index of the IA32_VMX_EPT_VPID_CAP MSR. */
#define PGM_VTX_MSR_EPT_VPID_CAP 0x48Cu

/** IA32_VMX_EPT_VPID_CAP (SDM vol. 3D A.10), split. */
struct pgm_vtx_ept_caps {
    uint64_t raw;            /**< the MSR value */
    bool exec_only;          /**< bit 0: XWR = 100 allowed */
    bool walk4;              /**< bit 6: 4-level walk */
    bool walk5;              /**< bit 7: 5-level walk */
    bool mt_uc;              /**< bit 8: EPTP memory type UC */
    bool mt_wb;              /**< bit 14: EPTP memory type WB */
    bool pages_2m;           /**< bit 16: EPT PDE may map 2 MiB */
    bool pages_1g;           /**< bit 17: EPT PDPTE may map 1 GiB */
    bool invept;             /**< bit 20: INVEPT */
    bool ad;                 /**< bit 21: EPT accessed / dirty flags */
    bool advanced_exit_info; /**< bit 22: bits 11:9 of the EPT-violation qualification */
    bool sss;                /**< bit 23: supervisor shadow-stack control */
    bool invept_single;      /**< bit 25: single-context INVEPT */
    bool invept_all;         /**< bit 26: all-context INVEPT */
    bool invvpid;            /**< bit 32: INVVPID */
    bool invvpid_addr;       /**< bit 40: individual-address INVVPID */
    bool invvpid_single;     /**< bit 41: single-context INVVPID */
    bool invvpid_all;        /**< bit 42: all-context INVVPID */
    bool invvpid_single_keep_global; /**< bit 43: single-context-retaining-globals INVVPID */
};

/** Split IA32_VMX_EPT_VPID_CAP. Cannot fail; unknown bits stay in `raw`. */
PGM_API void pgm_vtx_decode_ept_caps(uint64_t msr, struct pgm_vtx_ept_caps *out);

/** EPT memory types (EPTP bits 2:0, leaf entry bits 5:3). 2, 3 and 7 are reserved. */
enum pgm_vtx_memtype {
    PGM_VTX_MT_UC = 0, /**< uncacheable */
    PGM_VTX_MT_WC = 1, /**< write combining (leaves only) */
    PGM_VTX_MT_WT = 4, /**< write through (leaves only) */
    PGM_VTX_MT_WP = 5, /**< write protected (leaves only) */
    PGM_VTX_MT_WB = 6, /**< write back */
};

/** EPTP bit layout (SDM table 26-9 "Format of Extended-Page-Table Pointer"). */
#define PGM_VTX_EPTP_MT_MASK    0x7ull         /**< bits 2:0: memory type (UC or WB) */
#define PGM_VTX_EPTP_PWL_SHIFT  3              /**< bits 5:3: page-walk length - 1 */
#define PGM_VTX_EPTP_PWL_MASK   (0x7ull << 3)
#define PGM_VTX_EPTP_AD         (1ull << 6)    /**< enable EPT A/D flags */
#define PGM_VTX_EPTP_SSS        (1ull << 7)    /**< enforce supervisor shadow-stack rights */
#define PGM_VTX_EPTP_RSVD_LOW   (0xFull << 8)  /**< bits 11:8: reserved */

/** A decoded EPTP. */
struct pgm_vtx_eptp {
    unsigned memtype;  /**< bits 2:0 */
    unsigned levels;   /**< bits 5:3 plus one */
    bool ad;           /**< bit 6 */
    bool sss;          /**< bit 7 */
    pgm_hpa_t root;    /**< bits N-1:12 */
};

/**
 * Build an EPTP for a root table, checked like the VM-entry checks.
 * @param caps        capability MSR, split
 * @param maxphyaddr  host physical-address width N (CPUID 80000008H EAX[7:0]), 32..52
 * @param root        host-physical address of the PML4 (or PML5) table
 * @param levels      page-walk length, 4 or 5
 * @param memtype     PGM_VTX_MT_UC or PGM_VTX_MT_WB
 * @param flags       PGM_VTX_EPTP_AD and / or PGM_VTX_EPTP_SSS
 * @param eptp        receives the value
 * @return 0; -EINVAL for NULL pointers, a bad @p maxphyaddr, a misaligned
 *         root or one at or above 2^maxphyaddr, a walk length or memory type
 *         the capability does not list, A/D or SSS without support, or
 *         unknown flags.
 */
PGM_API int pgm_vtx_eptp_make(const struct pgm_vtx_ept_caps *caps, unsigned maxphyaddr,
                              pgm_hpa_t root, unsigned levels, unsigned memtype,
                              uint64_t flags, uint64_t *eptp);

/**
 * Check an EPTP the way VM entry does (SDM 27.2.1.1) and decode it.
 * @param out  receives the fields (may be NULL; filled even on -EINVAL)
 * @return 0 if VM entry would accept it; -EINVAL otherwise (memory type not
 *         supported, walk length not 4 or not supported, A/D or SSS enabled
 *         without support, bits 11:8 or N..63 set), or for NULL @p caps or a
 *         bad @p maxphyaddr.
 */
PGM_API int pgm_vtx_eptp_check(const struct pgm_vtx_ept_caps *caps, unsigned maxphyaddr,
                               uint64_t eptp, struct pgm_vtx_eptp *out);

/* ======================================================================== */
/* VT-x: EPT entries                                                         */
/* ======================================================================== */

/** EPT paging-structure entry bits (SDM 29.3.2, tables 29-1 to 29-6). */
#define PGM_EPT_R          (1ull << 0)    /**< read */
#define PGM_EPT_W          (1ull << 1)    /**< write */
#define PGM_EPT_X          (1ull << 2)    /**< execute (supervisor-mode execute with MBEC) */
#define PGM_EPT_XWR_MASK   0x7ull
#define PGM_EPT_MT_SHIFT   3              /**< leaf: memory type in bits 5:3 */
#define PGM_EPT_MT_MASK    (0x7ull << 3)
#define PGM_EPT_IPAT       (1ull << 6)    /**< leaf: ignore guest PAT */
#define PGM_EPT_PS         (1ull << 7)    /**< PDPTE / PDE: maps a 1 GiB / 2 MiB page */
#define PGM_EPT_A          (1ull << 8)    /**< accessed (with EPTP A/D enabled) */
#define PGM_EPT_D          (1ull << 9)    /**< leaf: dirty (with EPTP A/D enabled) */
#define PGM_EPT_UX         (1ull << 10)   /**< user-mode execute (with MBEC) */
#define PGM_EPT_SSS        (1ull << 60)   /**< leaf: supervisor shadow-stack page (with SSS control) */
#define PGM_EPT_SUPPRESS_VE (1ull << 63)  /**< suppress #VE */
#define PGM_EPT_ADDR_MASK  0x000FFFFFFFFFF000ull /**< bits 51:12 */

/** How the CPU treats EPT entries: what the classifier and builders need to know. */
struct pgm_vtx_ept_env {
    struct pgm_vtx_ept_caps caps; /**< IA32_VMX_EPT_VPID_CAP, split */
    unsigned maxphyaddr;          /**< host physical-address width N, 32..52 */
    /** "Mode-based execute control for EPT" is 1: bit 10 is user-execute and makes an entry present. */
    bool mbec;
};

/** What an EPT entry is at a given level. */
enum pgm_ept_class {
    PGM_EPT_NOT_PRESENT = 0, /**< bits 2:0 (and bit 10 with MBEC) clear: EPT violation on use */
    PGM_EPT_TABLE,           /**< references the next-level table */
    PGM_EPT_LEAF,            /**< maps a page (PTE, or PDE / PDPTE with bit 7) */
    PGM_EPT_MISCONFIG,       /**< present with a reserved setting: EPT misconfiguration on use */
};

/** Why an entry is a misconfiguration (several may hold at once). */
enum pgm_ept_misconfig_why {
    PGM_EPT_MC_WRITE_NO_READ = 1u << 0, /**< XWR = 010 or 110 */
    PGM_EPT_MC_EXEC_ONLY     = 1u << 1, /**< execute-only without the capability */
    PGM_EPT_MC_MEMTYPE       = 1u << 2, /**< leaf memory type 2, 3 or 7 */
    PGM_EPT_MC_RSVD_LOW      = 1u << 3, /**< non-leaf: bits 7:3 (PML5E/PML4E) or 6:3 (PDPTE/PDE) */
    PGM_EPT_MC_LARGE_UNSUPPORTED = 1u << 4, /**< bit 7 in a PDPTE / PDE without 1 GiB / 2 MiB support */
    PGM_EPT_MC_LARGE_ALIGN   = 1u << 5, /**< large leaf: bits 29:12 / 20:12 not zero */
    PGM_EPT_MC_PHYS          = 1u << 6, /**< a bit in 51:N (beyond MAXPHYADDR) */
};

/**
 * Classify an EPT entry exactly as the SDM's EPT-misconfiguration rules say
 * (SDM 29.3.3.1, reserved bits per 29.3.2):
 * - not present when bits 2:0 are 000 (and, with MBEC, bit 10 is 0): nothing
 *   else about the entry matters;
 * - misconfiguration when XWR is 010 or 110; when it is 100 (or, with MBEC,
 *   000 with bit 10 set) without execute-only support; when a reserved bit is
 *   set (51:N everywhere; 7:3 in PML5E/PML4E; 6:3 in PDPTE/PDE referencing a
 *   table; 29:12 in a 1 GiB PDPTE and 20:12 in a 2 MiB PDE; bit 7 in a
 *   PDPTE / PDE without 1 GiB / 2 MiB page support); or when a leaf's memory
 *   type is 2, 3 or 7;
 * - otherwise a table or a leaf, which can only cause EPT violations.
 * Bits 8-11 and 52-63 are ignored or feature bits, never reserved.
 * @param env    capabilities, MAXPHYADDR, MBEC
 * @param level  1 (PTE) to 5 (PML5E)
 * @param entry  the 64-bit entry
 * @param why    receives `pgm_ept_misconfig_why` bits (0 unless MISCONFIG); may be NULL
 * @return a `pgm_ept_class` (>= 0), or -EINVAL for NULL @p env, a level
 *         outside 1..5 or a MAXPHYADDR outside 32..52.
 */
PGM_API int pgm_vtx_ept_classify(const struct pgm_vtx_ept_env *env, unsigned level,
                                 uint64_t entry, uint32_t *why);

/** An EPT entry, decoded (no validation: see pgm_vtx_ept_classify()). */
struct pgm_ept_entry_info {
    uint32_t rights;    /**< PGM_EPT_R / W / X / UX bits as in the entry (UX only with @p mbec) */
    bool leaf;          /**< level 1, or bit 7 at level 2 or 3 */
    unsigned page_shift; /**< 12, 21 or 30 for a leaf; 0 for a table */
    unsigned memtype;   /**< leaf bits 5:3 */
    bool ipat;          /**< leaf bit 6 */
    bool accessed;      /**< bit 8 */
    bool dirty;         /**< leaf bit 9 */
    bool suppress_ve;   /**< bit 63 */
    pgm_hpa_t addr;     /**< next table, or the page frame (size aligned) */
};

/**
 * Decode an EPT entry at @p level (1..5) without checking it.
 * @return 0, or -EINVAL for NULL @p out or a bad level.
 */
PGM_API int pgm_vtx_ept_decode(uint64_t entry, unsigned level, bool mbec,
                               struct pgm_ept_entry_info *out);

/** Flags of the EPT entry builders. */
enum pgm_ept_make_flags {
    PGM_EPT_MAKE_IPAT = 1u << 0,  /**< leaf: set ignore-PAT */
    PGM_EPT_MAKE_A    = 1u << 1,  /**< pre-set accessed (needs caps.ad) */
    PGM_EPT_MAKE_D    = 1u << 2,  /**< leaf: pre-set dirty (needs caps.ad) */
    PGM_EPT_MAKE_SUPPRESS_VE = 1u << 3, /**< set suppress-#VE */
};

/**
 * Build an EPT entry referencing a next-level table. The result always
 * classifies as PGM_EPT_TABLE.
 * @param env     environment
 * @param level   2..5 (the level of the entry, not of the table)
 * @param table   4 KiB aligned host-physical address below 2^N
 * @param rights  PGM_EPT_R / W / X / UX (UX needs env->mbec); must be a legal
 *                non-empty combination
 * @param flags   PGM_EPT_MAKE_A / SUPPRESS_VE
 * @param out     receives the entry
 * @return 0 or -EINVAL.
 */
PGM_API int pgm_vtx_ept_make_table(const struct pgm_vtx_ept_env *env, unsigned level,
                                   pgm_hpa_t table, uint64_t rights, uint32_t flags,
                                   uint64_t *out);

/**
 * Build an EPT leaf: a PTE (level 1), a 2 MiB PDE (level 2) or a 1 GiB PDPTE
 * (level 3). The result always classifies as PGM_EPT_LEAF.
 * @param env      environment
 * @param level    1, 2 (needs caps.pages_2m) or 3 (needs caps.pages_1g)
 * @param page     page address, aligned to the page size, below 2^N
 * @param rights   PGM_EPT_R / W / X / UX, a legal non-empty combination
 * @param memtype  UC, WC, WT, WP or WB
 * @param flags    `pgm_ept_make_flags`
 * @param out      receives the entry
 * @return 0 or -EINVAL.
 */
PGM_API int pgm_vtx_ept_make_leaf(const struct pgm_vtx_ept_env *env, unsigned level,
                                  pgm_hpa_t page, uint64_t rights, unsigned memtype,
                                  uint32_t flags, uint64_t *out);

/**
 * Decode a VT-x exit into a vendor-neutral event: #PF exception exits, CR
 * accesses, INVLPG, EPT violations and EPT misconfigurations; every other
 * exit (including VM-entry failures) is PGM_HWVIRT_OTHER with `reason` set.
 * @param f         raw fields
 * @param caps      capability MSR, split (for advanced EPT-violation info); may be NULL
 * @param out       receives the event
 * @return 0; -EINVAL for NULL @p f / @p out or a malformed field (see the
 *         individual decoders).
 */
PGM_API int pgm_vtx_decode_exit(const struct pgm_vtx_exit_fields *f,
                                const struct pgm_vtx_ept_caps *caps,
                                struct pgm_hwvirt_event *out);

/* ======================================================================== */
/* AMD-V (SVM)                                                               */
/* ======================================================================== */

/** SVM exit codes (APM vol. 2 appendix C) that matter to paging. */
enum pgm_svm_exit_code {
    PGM_SVM_EXIT_READ_CR0   = 0x000, /**< 0x000 + n: read of CRn */
    PGM_SVM_EXIT_READ_CR3   = 0x003,
    PGM_SVM_EXIT_READ_CR4   = 0x004,
    PGM_SVM_EXIT_READ_CR8   = 0x008,
    PGM_SVM_EXIT_WRITE_CR0  = 0x010, /**< 0x010 + n: write of CRn */
    PGM_SVM_EXIT_WRITE_CR3  = 0x013,
    PGM_SVM_EXIT_WRITE_CR4  = 0x014,
    PGM_SVM_EXIT_WRITE_CR8  = 0x018,
    PGM_SVM_EXIT_EXCP_BASE  = 0x040, /**< 0x040 + vector: exception intercept */
    PGM_SVM_EXIT_PF         = 0x04E, /**< #PF intercept */
    PGM_SVM_EXIT_INTR       = 0x060,
    PGM_SVM_EXIT_NMI        = 0x061,
    PGM_SVM_EXIT_CR0_SEL_WRITE = 0x065, /**< CR0 selective write */
    PGM_SVM_EXIT_CPUID      = 0x072,
    PGM_SVM_EXIT_HLT        = 0x078,
    PGM_SVM_EXIT_INVLPG     = 0x079,
    PGM_SVM_EXIT_INVLPGA    = 0x07A,
    PGM_SVM_EXIT_IOIO       = 0x07B,
    PGM_SVM_EXIT_MSR        = 0x07C,
    PGM_SVM_EXIT_TASK_SWITCH = 0x07D,
    PGM_SVM_EXIT_SHUTDOWN   = 0x07F,
    PGM_SVM_EXIT_VMRUN      = 0x080,
    PGM_SVM_EXIT_VMMCALL    = 0x081,
    PGM_SVM_EXIT_INVPCID    = 0x0A2,
    PGM_SVM_EXIT_NPF        = 0x400, /**< nested page fault */
};

/** EXITCODE of a VMRUN that failed its consistency checks (VMEXIT_INVALID, -1). */
#define PGM_SVM_EXIT_INVALID UINT64_MAX

/** Raw VMCB control-area fields an exit handler reads. */
struct pgm_svm_exit_fields {
    uint64_t exit_code;  /**< EXITCODE (VMCB offset 0x70) */
    uint64_t exit_info1; /**< EXITINFO1 (0x78) */
    uint64_t exit_info2; /**< EXITINFO2 (0x80) */
};

/** Extra NPF EXITINFO1 bits above the #PF error code (APM 15.25.6). */
#define PGM_SVM_NPF_FINAL      (1ull << 32) /**< fault translating the guest's final GPA */
#define PGM_SVM_NPF_GUEST_WALK (1ull << 33) /**< fault translating a guest page-table access */

/** A decoded nested page fault. */
struct pgm_svm_npf {
    uint64_t info1;       /**< raw EXITINFO1 */
    pgm_gpa_t gpa;        /**< EXITINFO2: faulting guest-physical address */
    uint32_t error_code;  /**< EXITINFO1[31:0], #PF error-code format */
    bool present;         /**< bit 0: the nested entry was present (protection or reserved-bit fault) */
    bool write;           /**< bit 1 */
    bool user;            /**< bit 2 */
    bool rsvd;            /**< bit 3: reserved bit set in a nested entry */
    bool fetch;           /**< bit 4 */
    bool final_translation; /**< bit 32 */
    bool guest_walk;      /**< bit 33 */
};

/**
 * Decode an NPF #VMEXIT (EXITCODE 0x400).
 * @return 0, or -EINVAL for a NULL @p out.
 */
PGM_API int pgm_svm_decode_npf(uint64_t exit_info1, uint64_t exit_info2, struct pgm_svm_npf *out);

/**
 * Recognise a #PF intercept (EXITCODE 0x4E): EXITINFO1 holds the error code,
 * EXITINFO2 the faulting linear address; the guest's CR2 is not written.
 * @param out  receives error code and CR2 (may be NULL)
 * @return 1 for a #PF intercept, 0 otherwise, -EINVAL for NULL @p f or an
 *         error code with bits 63:32 set.
 */
PGM_API int pgm_svm_pf_exit(const struct pgm_svm_exit_fields *f, struct pgm_hwvirt_pf *out);

/** EXITINFO1 of MOV CRx intercepts with DecodeAssists (APM 15.33.2). */
#define PGM_SVM_CR_MOV_VALID (1ull << 63) /**< the intercept was a MOV CRx; bits 3:0 = GPR */
#define PGM_SVM_CR_GPR_MASK  0xFull

/**
 * Decode a CR read / write / CR0 selective-write intercept. The CR number and
 * the direction come from EXITCODE. With DecodeAssists and EXITINFO1 bit 63
 * the op is MOV with `gpr` = EXITINFO1[3:0]; otherwise the op is *_UNDECODED
 * and `gpr` is -1 (CLTS, LMSW, SMSW, or no DecodeAssists).
 * @param exit_code       EXITCODE, 0x000-0x01F or 0x065
 * @param exit_info1      EXITINFO1
 * @param decode_assists  CPUID 8000_000A EDX[7]
 * @param out             receives the access
 * @return 0, or -EINVAL for NULL @p out or an EXITCODE that is not a CR intercept.
 */
PGM_API int pgm_svm_decode_cr_access(uint64_t exit_code, uint64_t exit_info1,
                                     bool decode_assists, struct pgm_hwvirt_cr *out);

/** CPUID Fn8000_000A, split. */
struct pgm_svm_caps {
    uint32_t edx;           /**< raw EDX feature bits */
    uint8_t revision;       /**< EAX[7:0]: SVM revision */
    uint32_t nasid;         /**< EBX: number of ASIDs */
    bool np;                /**< EDX[0]: nested paging */
    bool lbr_virt;          /**< EDX[1] */
    bool svm_lock;          /**< EDX[2] */
    bool nrip_save;         /**< EDX[3]: next sequential RIP saved on #VMEXIT */
    bool tsc_rate;          /**< EDX[4] */
    bool vmcb_clean;        /**< EDX[5] */
    bool flush_by_asid;     /**< EDX[6]: TLB_CONTROL 3 / 7 */
    bool decode_assists;    /**< EDX[7] */
    bool pause_filter;      /**< EDX[10] */
    bool pause_threshold;   /**< EDX[12] */
    bool avic;              /**< EDX[13] */
    bool vmsave_virt;       /**< EDX[15] */
    bool vgif;              /**< EDX[16] */
    bool gmet;              /**< EDX[17]: guest-mode execute trap (changes NPT U semantics) */
    bool x2avic;            /**< EDX[18] */
    bool sss_check;         /**< EDX[19]: supervisor shadow-stack restrictions in NPT */
    bool spec_ctrl;         /**< EDX[20] */
    bool vnmi;              /**< EDX[25] */
    bool svme_addr_chk;     /**< EDX[28] */
};

/** Split CPUID Fn8000_000A (EAX, EBX, EDX). Cannot fail. */
PGM_API void pgm_svm_decode_caps(uint32_t eax, uint32_t ebx, uint32_t edx,
                                 struct pgm_svm_caps *out);

/* ---- NPT entries (long-mode page-table format, GPA -> HPA) ---- */

#define PGM_NPT_P    (1ull << 0)  /**< present */
#define PGM_NPT_RW   (1ull << 1)  /**< writable */
#define PGM_NPT_US   (1ull << 2)  /**< user: must be 1 at every level (nested accesses are user accesses) */
#define PGM_NPT_PWT  (1ull << 3)
#define PGM_NPT_PCD  (1ull << 4)
#define PGM_NPT_A    (1ull << 5)  /**< accessed */
#define PGM_NPT_D    (1ull << 6)  /**< dirty (leaf) */
#define PGM_NPT_PS   (1ull << 7)  /**< PDPTE / PDE: large page; PTE: PAT */
#define PGM_NPT_PAT_LARGE (1ull << 12) /**< PAT bit of a 2 MiB / 1 GiB leaf */
#define PGM_NPT_NX   (1ull << 63) /**< no-execute (needs host EFER.NXE) */
#define PGM_NPT_ADDR_MASK 0x000FFFFFFFFFF000ull

/** How the host CPU walks nested tables. */
struct pgm_svm_npt_env {
    unsigned maxphyaddr; /**< host physical-address width, 32..52 */
    unsigned levels;     /**< 4, or 5 with host CR4.LA57 */
    bool nxe;            /**< host EFER.NXE at VMRUN: bit 63 is NX, else reserved */
    bool gbpages;        /**< CPUID 8000_0001 EDX[26]: PDPTE may map 1 GiB */
};

/** What an NPT entry is. */
enum pgm_npt_class {
    PGM_NPT_NOT_PRESENT = 0, /**< P = 0: NPF, error code P = 0 */
    PGM_NPT_TABLE,           /**< references the next level */
    PGM_NPT_LEAF,            /**< maps a page */
    PGM_NPT_RSVD,            /**< reserved bit set: NPF with error code P = 1, RSVD = 1 */
};

/**
 * Classify an NPT entry (APM vol. 2 5.3 / 5.4 long-mode formats, 15.25.5).
 * Reserved: bits 51:N everywhere; bit 63 without host NXE; bit 7 in a PML5E /
 * PML4E, and bit 8 there (AMD reserves it); bit 7 in a PDPTE without 1 GiB
 * pages; bits 29:13 of a 1 GiB leaf and 20:13 of a 2 MiB leaf.
 * A present entry with US = 0 is not reserved, but every guest access through
 * it faults (nested accesses are user accesses): reported as
 * @p no_user = true so builders and audits can reject it.
 * @return a `pgm_npt_class` (>= 0) or -EINVAL for NULL @p env, a bad level
 *         (1..env->levels) or a bad environment.
 */
PGM_API int pgm_svm_npt_classify(const struct pgm_svm_npt_env *env, unsigned level,
                                 uint64_t entry, bool *no_user);

/**
 * Build an NPT entry referencing a next-level table: P, US and A set, RW
 * set, NX clear, so that the leaf alone decides the rights.
 * @return 0, or -EINVAL for a bad level (2..levels), a misaligned table
 *         address or one at or above 2^N.
 */
PGM_API int pgm_svm_npt_make_table(const struct pgm_svm_npt_env *env, unsigned level,
                                   pgm_hpa_t table, uint64_t *out);

/** Rights of an NPT leaf. */
enum pgm_npt_rights {
    PGM_NPT_RIGHT_WRITE = 1u << 0, /**< writable */
    PGM_NPT_RIGHT_EXEC  = 1u << 1, /**< executable (without it NX is set; needs env->nxe) */
};

/**
 * Build an NPT leaf (PTE, 2 MiB PDE, 1 GiB PDPTE) with P, US and A set
 * (D too when writable, so the CPU never needs to write it back).
 * @param pat_index  PAT<<2 | PCD<<1 | PWT, 0..7 (0: the host PAT's entry 0, WB by default)
 * @return 0, or -EINVAL for a bad level or alignment, an address at or above
 *         2^N, 1 GiB without gbpages, a non-executable leaf without NXE,
 *         unknown rights or a PAT index above 7.
 */
PGM_API int pgm_svm_npt_make_leaf(const struct pgm_svm_npt_env *env, unsigned level,
                                  pgm_hpa_t page, uint32_t rights, unsigned pat_index,
                                  uint64_t *out);

/**
 * Build an nCR3 value (VMCB offset 0xB0): the top table's address plus PWT
 * (bit 3) and PCD (bit 4).
 * @param flags  PGM_NPT_PWT / PGM_NPT_PCD
 * @return 0, or -EINVAL for a misaligned root, one at or above 2^N or other flags.
 */
PGM_API int pgm_svm_ncr3_make(const struct pgm_svm_npt_env *env, pgm_hpa_t root,
                              uint64_t flags, uint64_t *ncr3);

/**
 * Decode an SVM #VMEXIT into a vendor-neutral event: #PF intercepts, CR
 * intercepts, INVLPG (address from EXITINFO1 with DecodeAssists) and NPF;
 * anything else is PGM_HWVIRT_OTHER with `reason` = EXITCODE.
 * @param f               raw fields
 * @param decode_assists  CPUID 8000_000A EDX[7]
 * @param out             receives the event
 * @return 0, or -EINVAL for NULL pointers or a malformed field.
 */
PGM_API int pgm_svm_decode_exit(const struct pgm_svm_exit_fields *f, bool decode_assists,
                                struct pgm_hwvirt_event *out);

#endif /* PGM_HWVIRT_H */
