/* SPDX-License-Identifier: MIT */
/**
 * @file vm.h
 * @brief VM and vCPU lifecycle, configuration and CPU state.
 */
#ifndef PGM_VM_H
#define PGM_VM_H

#include "types.h"

struct pgm_backend_ops;
struct pgm_nested_config;

/** Opaque VM: guest-physical memory, shadow pool, handlers. */
struct pgm_vm;
/** Opaque vCPU: control registers, paging mode, per-vCPU walk state. */
struct pgm_vcpu;

/** The paging hardware libpgm builds tables for. */
enum pgm_paging_hw {
    /** No hardware tables: walker and physical memory only (software CPUs). */
    PGM_PAGING_NONE = 0,
    PGM_PAGING_SHADOW_32,    /**< shadow tables in 32-bit format */
    PGM_PAGING_SHADOW_PAE,   /**< shadow tables in PAE format */
    PGM_PAGING_SHADOW_AMD64, /**< shadow tables in 4- or 5-level format */
    PGM_PAGING_EPT,          /**< VT-x extended page tables */
    PGM_PAGING_NPT,          /**< AMD-V nested page tables */
};

/** CPU features the guest sees (its CPUID). */
struct pgm_cpu_features {
    uint8_t maxphyaddr; /**< guest MAXPHYADDR, 32..52 */
    bool nx;            /**< CPUID.80000001H:EDX.NX: EFER.NXE may be set */
    bool pse;           /**< CR4.PSE may be set (4 MiB pages in 32-bit paging) */
    bool pse36;         /**< PSE-36: 4 MiB pages reach above 4 GiB (see docs/walker.md) */
    bool gbpages;       /**< 1 GiB pages in 4/5-level paging */
    bool la57;          /**< 5-level paging */
    bool smep;          /**< CR4.SMEP may be set */
    bool smap;          /**< CR4.SMAP may be set */
    bool pku;           /**< CR4.PKE may be set */
    bool pcid;          /**< CR4.PCIDE may be set */
    bool pge;           /**< CR4.PGE may be set */
};

/** Host-side allocator hooks (optional; malloc/free when NULL). */
struct pgm_allocator {
    void *(*alloc)(void *ctx, size_t size);        /**< malloc semantics; NULL on failure */
    void (*free)(void *ctx, void *ptr);            /**< release memory from alloc */
    void *ctx;                                     /**< passed to both */
};

/**
 * VM configuration. Initialise with pgm_vm_config_init() and change only what
 * you need; the struct grows at its end and `struct_size` tells which version
 * the caller was compiled against.
 */
struct pgm_vm_config {
    uint32_t struct_size;                 /**< sizeof(struct pgm_vm_config) */
    enum pgm_paging_hw paging;            /**< paging hardware */
    struct pgm_cpu_features features;     /**< guest CPUID */
    uint32_t vcpu_count;                  /**< number of vCPUs, 1..PGM_MAX_VCPUS */
    uint32_t pool_pages;                  /**< shadow pool size in pages (0: default) */
    const struct pgm_backend_ops *backend; /**< required */
    void *backend_ctx;                    /**< passed to every backend op */
    struct pgm_allocator allocator;       /**< host allocator for libpgm's own structures */
    /**
     * Shadow paging: guest writes libpgm finishes on a shadowed guest table,
     * with no shadow fault through that table in between, before it stops
     * shadowing the table (it is being used as data: zeroed, recycled).
     * Applies to upper-level tables, and to leaf tables when unsync is off
     * (otherwise leaf tables go out of sync instead). 0: the default, 3.
     */
    uint32_t flood_threshold;
    /**
     * Shadow paging: guest writes libpgm finishes on a shadowed *leaf* page
     * table before it lets the table go out of sync (writable, resynced by
     * diff at the guest's next INVLPG, MOV CR3 or TLB flush) instead of
     * finishing every write. 0: the default, 3. PGM_UNSYNC_OFF: never.
     */
    uint32_t unsync_threshold;
    /**
     * Nested paging (PGM_PAGING_EPT / PGM_PAGING_NPT): the vendor parameters
     * (struct pgm_nested_config in nested.h, copied at creation), or NULL for
     * its defaults. Must be NULL for other paging modes.
     */
    const struct pgm_nested_config *nested;
    uint8_t reserved[48];                 /**< must be zero */
};

#define PGM_MAX_VCPUS 256

/** struct pgm_vm_config.unsync_threshold: keep every shadowed table write-protected. */
#define PGM_UNSYNC_OFF UINT32_MAX

/**
 * Guest control state. CR0, CR4 and EFER select the paging mode; CR3 the root.
 * EFER.LMA is derived (LME and CR0.PG) and ignored on input.
 */
struct pgm_cpu_state {
    uint64_t cr0;
    uint64_t cr3;
    uint64_t cr4;
    uint64_t efer;
    uint32_t pkru;
};

/* Architectural bits libpgm looks at. */
#define PGM_CR0_PE    (1ull << 0)
#define PGM_CR0_WP    (1ull << 16)
#define PGM_CR0_PG    (1ull << 31)
#define PGM_CR4_PSE   (1ull << 4)
#define PGM_CR4_PAE   (1ull << 5)
#define PGM_CR4_PGE   (1ull << 7)
#define PGM_CR4_LA57  (1ull << 12)
#define PGM_CR4_PCIDE (1ull << 17)
#define PGM_CR4_SMEP  (1ull << 20)
#define PGM_CR4_SMAP  (1ull << 21)
#define PGM_CR4_PKE   (1ull << 22)
#define PGM_EFER_LME  (1ull << 8)
#define PGM_EFER_LMA  (1ull << 10)
#define PGM_EFER_NXE  (1ull << 11)

/** Fill @p cfg with defaults: no paging hardware, 1 vCPU, MAXPHYADDR 52, all features on. */
PGM_API void pgm_vm_config_init(struct pgm_vm_config *cfg);

/**
 * Create a VM.
 * @param cfg  configuration (copied)
 * @param out  receives the VM
 * @return 0, -EINVAL (bad or missing field, nonzero reserved bytes, MAXPHYADDR
 *         out of 32..52, an unknown paging mode, `nested` set for a
 *         non-nested mode or a nested configuration the vendor parameters
 *         refuse: see struct pgm_nested_config), -ENOMEM
 */
PGM_API int pgm_vm_create(const struct pgm_vm_config *cfg, struct pgm_vm **out);

/** Destroy a VM and everything it owns (NULL is accepted). */
PGM_API void pgm_vm_destroy(struct pgm_vm *vm);

/** @return vCPU @p id (0-based) of @p vm, or NULL if out of range. */
PGM_API struct pgm_vcpu *pgm_vcpu_get(struct pgm_vm *vm, unsigned id);

/** @return the VM's guest CPU features. */
PGM_API const struct pgm_cpu_features *pgm_vm_features(const struct pgm_vm *vm);

/** Flags of pgm_set_cpu_state(). */
enum pgm_state_flags {
    /**
     * The change is a guest instruction (MOV CR0 / MOV CR4 / WRMSR EFER):
     * also apply the checks the CPU makes against the current state
     * (CR4.LA57 toggled while EFER.LMA = 1, EFER.LME changed while CR0.PG = 1,
     * CR4.PCIDE set while CR3[11:0] != 0). Without it the call is a state load
     * (reset, restore, migration) and only the new state's consistency counts.
     */
    PGM_STATE_GUEST_WRITE = 1u << 0,
};

/**
 * Load the control state (CR0, CR3, CR4, EFER, PKRU). Re-selects the paging
 * mode and latches the PAE PDPTEs when the new state uses PAE paging.
 *
 * Checked, as the CPU does: CR0.PG without CR0.PE; CR4 bits for features the
 * guest lacks (PSE, PGE, SMEP, SMAP, PKE, LA57, PCIDE); EFER.NXE without NX;
 * EFER.LME with CR0.PG but without CR4.PAE; CR4.PCIDE outside IA-32e mode;
 * the CR3 value for the new mode (see pgm_sync_cr3()); plus the transition
 * checks of PGM_STATE_GUEST_WRITE. CR0/CR4/EFER bits unrelated to paging are
 * stored but not checked.
 *
 * @param vcpu   the vCPU
 * @param state  the new state (EFER.LMA is ignored and recomputed)
 * @param flags  `pgm_state_flags`
 * @return 0; PGM_RC_INJECT_GP if the CPU would raise #GP (state unchanged);
 *         -EINVAL for NULL arguments or unknown flags.
 */
PGM_API int pgm_set_cpu_state(struct pgm_vcpu *vcpu, const struct pgm_cpu_state *state,
                              uint32_t flags);

/** Read back the current control state (EFER.LMA filled in). */
PGM_API void pgm_get_cpu_state(const struct pgm_vcpu *vcpu, struct pgm_cpu_state *state);

/** WRPKRU. Does not change the paging mode. */
PGM_API void pgm_set_pkru(struct pgm_vcpu *vcpu, uint32_t pkru);

/** @return the vCPU's current guest paging mode. */
PGM_API enum pgm_guest_mode pgm_guest_mode(const struct pgm_vcpu *vcpu);

/** @return a static name for @p mode ("real", "prot", "32", "pae", "amd64", "la57"). */
PGM_API const char *pgm_guest_mode_name(enum pgm_guest_mode mode);

#endif /* PGM_VM_H */
