/* SPDX-License-Identifier: MIT */
/**
 * @file backend.h
 * @brief What an embedder implements, and the built-in backends.
 *
 * libpgm owns no hardware. The backend provides host pages (for guest RAM and
 * for shadow / nested tables), loads roots into vCPUs and flushes TLBs.
 */
#ifndef PGM_BACKEND_H
#define PGM_BACKEND_H

#include "types.h"
#include "vm.h"

/** Most vCPUs a soft backend serves (its MMU keeps a TLB per vCPU id). */
#define PGM_SOFT_MAX_VCPUS 256

/** Scope of a TLB flush request. */
enum pgm_flush_scope {
    PGM_FLUSH_GVA = 0,  /**< one linear address in the current PCID (and its global entry) */
    PGM_FLUSH_PCID,     /**< all non-global entries of one PCID */
    PGM_FLUSH_NONGLOBAL,/**< every non-global entry of the vCPU */
    PGM_FLUSH_ALL,      /**< everything, global entries included */
    PGM_FLUSH_GPA,      /**< nested: one guest-physical page (INVEPT/ASID scope) */
};

/** A flush request for one vCPU. */
struct pgm_flush_req {
    enum pgm_flush_scope scope; /**< what to flush */
    uint64_t addr;              /**< GVA or GPA for the address scopes */
    uint16_t pcid;              /**< for PGM_FLUSH_PCID and PGM_FLUSH_GVA */
};

/**
 * Backend operations. Every function receives the `backend_ctx` of the VM
 * configuration. Functions may be called with libpgm's VM lock held and must
 * not call back into libpgm.
 */
struct pgm_backend_ops {
    uint32_t struct_size; /**< sizeof(struct pgm_backend_ops) */
    /**
     * Allocate one zeroed, 4 KiB aligned host page.
     * @return 0 and fill @p hpa / @p ptr, or -ENOMEM.
     */
    int (*alloc_page)(void *ctx, pgm_hpa_t *hpa, void **ptr);
    /** Return a page from alloc_page. */
    void (*free_page)(void *ctx, pgm_hpa_t hpa, void *ptr);
    /**
     * @return the host pointer of @p hpa inside a page from alloc_page or a
     * block from alloc_ram_block, or NULL if it lies in neither.
     */
    void *(*hpa_to_ptr)(void *ctx, pgm_hpa_t hpa);
    /**
     * Optional. Reserve @p npages pages that are contiguous both in HPA and
     * in host virtual memory and read as zero, for a RAM range. The host may
     * commit them lazily on first write (an anonymous mapping does), so a
     * large, mostly untouched guest costs address space, not memory. With a
     * block, libpgm turns guest-physical addresses into host pointers with
     * arithmetic instead of a descriptor load. NULL: RAM is backed page by
     * page with alloc_page at first write.
     * @return 0, or -ENOMEM (libpgm then falls back to alloc_page).
     */
    int (*alloc_ram_block)(void *ctx, uint64_t npages, pgm_hpa_t *hpa, void **ptr);
    /** Release a block from alloc_ram_block (required with it). */
    void (*free_ram_block)(void *ctx, pgm_hpa_t hpa, void *ptr, uint64_t npages);
    /**
     * Load @p root into vCPU @p vcpu_id before it next runs (optional). For
     * a PAE-format root (32-bit, PAE and paging-off guests on shadows) it is
     * called again with the same root when libpgm changed one of its four
     * PDPTEs: reload them, as the CPU only reads them at a CR3 load.
     */
    void (*load_root)(void *ctx, unsigned vcpu_id, pgm_hpa_t root);
    /** Flush TLB state of vCPU @p vcpu_id before it next runs (optional). */
    void (*flush)(void *ctx, unsigned vcpu_id, const struct pgm_flush_req *req);
};

/* ---- The built-in soft backend ---------------------------------------- */

/**
 * A software backend: host pages from one arena, addressed by a synthetic
 * HPA, plus RAM blocks from anonymous memory mappings (committed lazily by the
 * host OS) placed above the arena in the same HPA space.
 */
struct pgm_soft_backend;

/**
 * HPA of the soft backend's first arena page: nonzero so HPA 0 is never a
 * page, and low so that arenas of up to 4 GiB - 1 MiB keep every page below
 * 4 GiB, where 32-bit and PAE-format tables (and a PAE CR3) can point.
 */
#define PGM_SOFT_HPA_BASE 0x100000ull

/**
 * Create a soft backend whose arena holds at most @p max_pages pages.
 * Arena memory is taken from the host in 2 MiB chunks as pages are needed.
 * @return 0; -EINVAL (max_pages 0 or above 2^28); -ENOMEM
 */
PGM_API int pgm_soft_backend_create(uint64_t max_pages, struct pgm_soft_backend **out);

/** Destroy a soft backend (NULL accepted). Every VM using it must be gone. */
PGM_API void pgm_soft_backend_destroy(struct pgm_soft_backend *sb);

/** @return the ops table of the soft backend (pass @p sb as `backend_ctx`). */
PGM_API const struct pgm_backend_ops *pgm_soft_backend_ops(void);

/** @return arena pages currently handed out by @p sb (RAM blocks not included). */
PGM_API uint64_t pgm_soft_backend_pages_in_use(const struct pgm_soft_backend *sb);

/** @return RAM blocks currently reserved from @p sb. */
PGM_API uint64_t pgm_soft_backend_blocks_in_use(const struct pgm_soft_backend *sb);

/**
 * Make every allocation (page or block) after the next @p n fail (testing);
 * a negative @p n disables the injection.
 */
PGM_API void pgm_soft_backend_fail_after(struct pgm_soft_backend *sb, int64_t n);

/**
 * Enable or disable RAM blocks (enabled by default). Without them the soft
 * backend behaves like a backend that lacks alloc_ram_block: RAM is backed
 * page by page from the arena. Affects VMs and ranges created afterwards.
 */
PGM_API void pgm_soft_backend_set_ram_blocks(struct pgm_soft_backend *sb, bool enable);

/* ---- The soft backend's MMU ------------------------------------------- */

/**
 * The hardware paging state of one soft vCPU: what its real CR0/CR3/CR4/EFER
 * would hold while the guest runs on libpgm's tables. `cr3` is also set by
 * the backend's load_root op.
 */
struct pgm_soft_cpu {
    enum pgm_guest_mode format; /**< PGM_MODE_32BIT/PAE/AMD64/LA57; REAL or PROT: paging off */
    uint64_t cr3;               /**< root table HPA (PAE: the 32-byte aligned PDPT) */
    uint16_t pcid;              /**< current PCID (with pcide) */
    bool pcide;                 /**< CR4.PCIDE: TLB entries are tagged with the PCID */
    bool wp;                    /**< CR0.WP */
    bool pse;                   /**< CR4.PSE (32-bit format) */
    bool pge;                   /**< CR4.PGE: global entries survive CR3 loads */
    bool smep, smap, pke;       /**< CR4.SMEP, CR4.SMAP, CR4.PKE */
    bool nxe;                   /**< EFER.NXE */
    uint32_t pkru;              /**< PKRU */
    /* ---- Hardware-assisted paging (two-dimensional walk). With `nested` set,
     * `cr3` is the guest's CR3 (a GPA) and the fields above are the guest's
     * paging state; every guest table access and the final GPA are translated
     * through the nested tables (SDM 29.3, AMD APM 15.25). */
    /** PGM_PAGING_NONE (one-dimensional, the default), PGM_PAGING_EPT or PGM_PAGING_NPT. */
    enum pgm_paging_hw nested;
    /** HPA of the EPT PML4 / PML5 table (EPTP bits 51:12) or of the NPT top table (nCR3). */
    pgm_hpa_t nested_root;
    /** Nested walk length: 4, or 5 (EPTP page-walk length 5; NPT with host CR4.LA57). */
    unsigned nested_levels;
    /** EPT: EPTP bit 6, accessed / dirty flags in EPT entries (SDM 29.3.5). */
    bool ept_ad;
    /**
     * NPT: host EFER.NXE at VMRUN: NPT bit 63 is no-execute, else reserved.
     * The other host bits are fixed by the model: NPT is the long-mode format
     * with 1 GiB pages, every nested access is a user access (US must be 1 at
     * every level), host CR4.PKE and SMEP are off.
     */
    bool nested_nxe;
    /**
     * Host MAXPHYADDR the nested entries are checked against (bits 51:N are
     * reserved: EPT misconfiguration / NPF with RSV); 0 means 52.
     */
    unsigned nested_maxphyaddr;
    /**
     * MAXPHYADDR for the entries of the tables at `cr3` (the guest's in
     * nested mode): bits 51:M (62:M in PAE entries) are reserved, and
     * PSE-36 uses M = min(M, 40). 0 means 52. A change flushes the TLB.
     */
    unsigned guest_maxphyaddr;
};

/** Outcome of a soft-MMU translation. */
enum pgm_soft_mmu_status {
    PGM_SOFT_MMU_OK = 0,   /**< translated: hpa / ptr valid */
    PGM_SOFT_MMU_PF,       /**< #PF with error_code, as the hardware would raise it */
    PGM_SOFT_MMU_GP,       /**< non-canonical address */
    /**
     * A table or the final page is not memory this backend handed out: a
     * table entry points at a freed or foreign page. Real hardware would
     * read whatever is there; here it is an isolation bug in the tables.
     */
    PGM_SOFT_MMU_BAD_HPA,
    /**
     * Nested mode: an EPT violation or an AMD-V nested page fault (NPF): a
     * nested entry was not present or denied the access, or (NPT) had a
     * reserved bit set (`exit_info1` RSV). `gpa`, `gla`, `guest_walk` and the
     * raw exit values say which access and why.
     */
    PGM_SOFT_MMU_NESTED_FAULT,
    /** EPT: an EPT misconfiguration (reserved bits, W without R, bad memory type); `gpa` valid. */
    PGM_SOFT_MMU_NESTED_MISCONFIG,
};

/** Result of pgm_soft_mmu_translate(). */
struct pgm_soft_mmu_result {
    enum pgm_soft_mmu_status status;
    uint32_t error_code;  /**< #PF error code (PGM_SOFT_MMU_PF) */
    pgm_hpa_t hpa;        /**< host-physical address of the byte (OK) */
    void *ptr;            /**< host pointer of the byte (OK) */
    unsigned page_shift;  /**< 12, 21, 22 or 30 */
    bool tlb_hit;         /**< answered from the TLB, without a walk */
    /* ---- Nested mode (appended) ---- */
    /** OK: the guest-physical address of the byte; NESTED_*: the faulting GPA. */
    pgm_gpa_t gpa;
    /** NESTED_*: the guest-linear address of the access (valid with `gla_valid`). */
    pgm_gva_t gla;
    /** False only for the EPT PDPTE loads of a PAE guest (no linear address). */
    bool gla_valid;
    /** NESTED_*: the fault was on a guest paging-structure access, not on the final translation. */
    bool guest_walk;
    /**
     * NESTED_FAULT: the nested access, `pgm_access` flags (WRITE for an A/D
     * update and for table accesses treated as writes, FETCH for a fetch).
     */
    uint32_t nested_access;
    /**
     * NESTED_FAULT: rights of the nested translation as the CPU reports them:
     * EPT R/W/X (PGM_EPT_R / W / X) AND-ed over the entries used (qualification
     * bits 5:3 shifted down; 0 when an entry was not present); NPT the same
     * bits for present + US / RW / not NX over the entries read.
     */
    uint8_t nested_rights;
    /** EPT violation: the exit qualification (`pgm_vtx_eptv_bits`); 0 otherwise. */
    uint64_t exit_qual;
    /** NPF: EXITINFO1 (#PF-style error code + PGM_SVM_NPF_FINAL / GUEST_WALK); 0 otherwise. */
    uint64_t exit_info1;
    /** NPF: EXITINFO2, the faulting GPA; 0 otherwise. */
    uint64_t exit_info2;
};

/** Soft-MMU counters of one vCPU. */
struct pgm_soft_mmu_stats {
    uint64_t translations, tlb_hits, walks, faults, flushes, entries_flushed;
    /* ---- Nested mode (appended) ---- */
    /** TLB misses answered by a two-dimensional walk (or a nested-only walk with guest paging off). */
    uint64_t nested_walks;
    /** NESTED_FAULT and NESTED_MISCONFIG outcomes. */
    uint64_t nested_faults;
    /**
     * Paging-structure entries read by nested-mode walks, guest and nested:
     * (g + 1) * (n + 1) - 1 for a g-level guest on n-level nested tables with
     * no cached guest-physical mapping (24 for 4 on 4).
     */
    uint64_t nested_refs;
    /** Guest-physical mappings answered from the soft MMU's GPA cache, without a nested walk. */
    uint64_t gpa_cache_hits;
};

/** Number of TLB entries per soft vCPU (fully associative, round-robin replacement). */
#define PGM_SOFT_TLB_ENTRIES 64

/**
 * Set vCPU @p vcpu's hardware paging state. A change of format, CR4.PSE,
 * CR4.PGE, CR4.PCIDE or EFER.NXE (which change how cached translations read)
 * flushes the vCPU's whole TLB. A change of `cr3` or `pcid` flushes nothing:
 * like a VPID-tagged hardware TLB across VM entries, the soft MMU drops
 * translations only when asked through the backend's flush op, so a flush
 * that libpgm forgets to request shows up as a stale translation. WP, SMEP,
 * SMAP, PKE and PKRU are applied at access time to the cached rights, as
 * hardware does. PAE: the PDPTEs are read from `cr3` now (the latch).
 * Nested mode (docs/soft-mmu.md): a change of `nested`, `nested_levels`,
 * `ept_ad`, `nested_nxe` or `nested_maxphyaddr` flushes everything, cached
 * guest-physical mappings included; a change of `nested_root` flushes
 * nothing (mappings are tagged with their root). PAE guest on EPT: the
 * PDPTEs are loaded through EPT when `cr3`, the format or the nested table
 * changed or the last load faulted (else see pgm_soft_mmu_guest_cr3_load);
 * a nested fault doing so is returned by the next translation (GLA not valid).
 * @return 0; -EINVAL (bad vCPU id or format, PAE PDPT not backend memory,
 *         unknown `nested`, `nested_levels` not 4 or 5, `nested_root` not a
 *         4 KiB aligned address below 2^52, `nested_maxphyaddr` or
 *         `guest_maxphyaddr` not 0 or 32..52)
 */
PGM_API int pgm_soft_mmu_set_cpu(struct pgm_soft_backend *sb, unsigned vcpu,
                                 const struct pgm_soft_cpu *cpu);

/**
 * Translate @p va for an access of kind @p access (`pgm_access` flags) as the
 * hardware would: from the TLB if it holds the address, else by walking the
 * tables at the vCPU's CR3 (setting their A/D bits atomically) and filling
 * the TLB. A TLB entry whose cached rights deny the access raises #PF and is
 * dropped, as on real CPUs; a write through an entry cached with D = 0
 * walks again to set D. Translations live until a flush of their scope.
 * In nested mode the walk is two-dimensional (every guest table access and
 * the final GPA through EPT / NPT) and may end in PGM_SOFT_MMU_NESTED_FAULT
 * or _MISCONFIG with the exit values a CPU would report; combined mappings
 * are dropped by any flush of their scope, cached guest-physical mappings
 * only by PGM_FLUSH_GPA / PGM_FLUSH_ALL (INVEPT) or a nested fault on them.
 * @return 0 (result in @p out); -EINVAL for a bad vCPU or NULL pointer
 */
PGM_API int pgm_soft_mmu_translate(struct pgm_soft_backend *sb, unsigned vcpu, uint64_t va,
                                   uint32_t access, struct pgm_soft_mmu_result *out);

/**
 * The guest's own TLB maintenance, executed by the soft CPU itself: INVLPG
 * (PGM_FLUSH_GVA), MOV CR3 (PGM_FLUSH_PCID or PGM_FLUSH_NONGLOBAL), a CR4.PGE
 * toggle (PGM_FLUSH_ALL). In nested mode the guest runs these without any VM
 * exit, so libpgm never sees them; whoever plays the CPU (a test, a software
 * CPU) calls this. It drops linear and combined mappings only, never the
 * cached guest-physical mappings: those belong to the hypervisor (INVEPT,
 * the backend's flush op with PGM_FLUSH_GPA / PGM_FLUSH_ALL). PGM_FLUSH_GPA
 * here is treated like PGM_FLUSH_ALL. Unknown vCPU or NULL @p req: nothing.
 */
PGM_API void pgm_soft_mmu_guest_flush(struct pgm_soft_backend *sb, unsigned vcpu,
                                      const struct pgm_flush_req *req);

/**
 * The guest loaded CR3, or wrote CR0 / CR4 in a way that loads the PAE
 * PDPTEs (SDM 4.4.1), without a VM exit: latch the PDPTEs of a PAE guest
 * again from `cr3` (through EPT in nested mode; a nested fault doing so is
 * returned by the next translation). In nested EPT mode
 * pgm_soft_mmu_set_cpu() with an unchanged `cr3` keeps the latch, so a
 * guest that edits its PDPT sees the change only after this call, as on
 * hardware. NPT reads the PDPTEs at each walk (no latch); nothing to do
 * for other formats.
 * @return 0; -EINVAL (vCPU never used; PDPT not backend memory outside nested mode)
 */
PGM_API int pgm_soft_mmu_guest_cr3_load(struct pgm_soft_backend *sb, unsigned vcpu);

/** Read vCPU @p vcpu's soft-MMU counters (zeros for a vCPU never used). */
PGM_API void pgm_soft_mmu_stats(struct pgm_soft_backend *sb, unsigned vcpu,
                                struct pgm_soft_mmu_stats *out);

#endif /* PGM_BACKEND_H */
