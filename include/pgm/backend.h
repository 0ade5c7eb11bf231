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
    /** @return the host pointer of a page from alloc_page, or NULL if @p hpa is not one. */
    void *(*hpa_to_ptr)(void *ctx, pgm_hpa_t hpa);
    /** Load @p root into vCPU @p vcpu_id before it next runs (optional). */
    void (*load_root)(void *ctx, unsigned vcpu_id, pgm_hpa_t root);
    /** Flush TLB state of vCPU @p vcpu_id before it next runs (optional). */
    void (*flush)(void *ctx, unsigned vcpu_id, const struct pgm_flush_req *req);
};

/* ---- The built-in soft backend ---------------------------------------- */

/** A software backend: host pages from one arena, addressed by a synthetic HPA. */
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

/** @return pages currently handed out by @p sb. */
PGM_API uint64_t pgm_soft_backend_pages_in_use(const struct pgm_soft_backend *sb);

/**
 * Make the allocation after the next @p n allocations fail (testing);
 * a negative @p n disables the injection.
 */
PGM_API void pgm_soft_backend_fail_after(struct pgm_soft_backend *sb, int64_t n);

#endif /* PGM_BACKEND_H */
