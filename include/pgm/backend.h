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
    /** Load @p root into vCPU @p vcpu_id before it next runs (optional). */
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

/** HPA of the soft backend's first arena page (nonzero so HPA 0 is never valid). */
#define PGM_SOFT_HPA_BASE 0x100000000ull

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

#endif /* PGM_BACKEND_H */
