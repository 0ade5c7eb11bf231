/* SPDX-License-Identifier: MIT */
/**
 * @file handler.h
 * @brief Physical access handlers: callbacks on guest-physical ranges.
 *
 * A handler is how a VMM sees the guest touch memory it cares about: device
 * MMIO, ROM, pages it write-monitors (dirty logging, introspection). Handlers
 * cover page-aligned GPA ranges and never overlap. Each RAM or ROM page has a
 * handler state, the kind of the handler covering it (NONE < WRITE < ALL),
 * unless it was turned off for that page with pgm_handler_temp_off().
 *
 * Accesses made through pgm_phys_read() / pgm_phys_write(), their
 * origin-tagged and guest-virtual forms (access.h) and emulated guest
 * instructions are dispatched to handlers; the `_simple` variants in
 * access.h bypass them. The shadow and nested table builders reflect the
 * per-page state into their entries: a state change removes only the
 * entries mapping that page (counted in pgm_stats.handler_entries_touched).
 *
 * Virtual handlers cover page-aligned linear ranges of one guest address
 * space (a CR3) instead: see the end of this file.
 */
#ifndef PGM_HANDLER_H
#define PGM_HANDLER_H

#include "types.h"
#include "vm.h"

/** What a handler intercepts. */
enum pgm_handler_kind {
    PGM_HANDLER_NONE = 0, /**< (page state only) no handler, or turned off */
    PGM_HANDLER_WRITE,    /**< writes to RAM/ROM pages */
    PGM_HANDLER_ALL,      /**< reads and writes to RAM/ROM pages */
    PGM_HANDLER_MMIO,     /**< every access to MMIO pages (which have no backing) */
};

/** What the callback did with an access. */
enum pgm_handler_result {
    /** The callback performed the access (for a read it filled the buffer). */
    PGM_HANDLER_HANDLED = 0,
    /**
     * libpgm performs the access on the backing page: after the callback for
     * a write (the callback sees the value before it lands). On MMIO there is
     * no backing: reads return all-ones and writes are dropped.
     */
    PGM_HANDLER_DEFAULT,
    /** The embedder must finish the access elsewhere (another thread, device model). */
    PGM_HANDLER_EXIT,
};

/** Who made the access. */
enum pgm_access_origin {
    PGM_ORIGIN_PHYS_API = 0, /**< the VMM itself: pgm_phys_read() / pgm_phys_write() */
    PGM_ORIGIN_GUEST,        /**< the guest: an instruction libpgm (or the VMM) emulated */
    PGM_ORIGIN_DMA,          /**< a device's DMA, performed by the VMM (access.h) */
};

/**
 * Handler callback. Called for a span of @p size bytes at @p gpa that lies in
 * one page and one handler; an access crossing pages or handlers is split.
 * Called without libpgm's locks held, so it may call back into libpgm (for
 * other addresses).
 * @param vcpu    the vCPU whose instruction made the access or whose paging
 *                translated it (pgm_read_gva()), or NULL (physical API)
 * @param gpa     guest-physical address of the first byte
 * @param buf     the bytes written, or where a read's bytes go
 * @param size    1 .. 4096
 * @param write   true for a write
 * @param origin  who made the access
 * @param user    the registration's `user`
 */
typedef enum pgm_handler_result (*pgm_phys_handler_fn)(struct pgm_vcpu *vcpu, pgm_gpa_t gpa,
                                                       void *buf, size_t size, bool write,
                                                       enum pgm_access_origin origin, void *user);

/** A physical handler registration. */
struct pgm_phys_handler {
    enum pgm_handler_kind kind; /**< WRITE, ALL or MMIO */
    pgm_gpa_t gpa;              /**< first byte, page aligned */
    uint64_t size;              /**< bytes, a nonzero page multiple */
    pgm_phys_handler_fn fn;     /**< the callback */
    void *user;                 /**< passed to @p fn */
};

/**
 * Register a handler. WRITE and ALL handlers must cover only RAM or ROM pages,
 * MMIO handlers only MMIO pages.
 * @return 0; -EINVAL (bad kind, alignment, NULL callback, or pages of the
 *         wrong kind or unassigned); -EEXIST (overlaps another handler);
 *         -ENOMEM
 */
PGM_API int pgm_handler_register(struct pgm_vm *vm, const struct pgm_phys_handler *h);

/**
 * Deregister the handler whose range starts at @p gpa. A callback already
 * running on another thread may still finish after this returns: free the
 * handler's `user` data only once no vCPU or thread can be in an access.
 * @return 0; -ENOENT
 */
PGM_API int pgm_handler_deregister(struct pgm_vm *vm, pgm_gpa_t gpa);

/**
 * Move and/or resize the handler starting at @p gpa to [@p new_gpa,
 * @p new_gpa + @p new_size). Pages it leaves lose their handler state; pages
 * it gains take it (temp-off marks are cleared).
 * @return 0; -ENOENT; -EINVAL / -EEXIST as for registration (the handler is
 *         then unchanged); -ENOMEM
 */
PGM_API int pgm_handler_modify(struct pgm_vm *vm, pgm_gpa_t gpa, pgm_gpa_t new_gpa,
                               uint64_t new_size);

/**
 * Stop calling the WRITE or ALL handler for the page at @p gpa until
 * pgm_handler_reset() (dirty logging: only the first write to a page per
 * round costs a callback).
 * @return 0; -ENOENT (no handler there); -EINVAL (an MMIO handler: its
 *         pages have nothing to fall back to)
 */
PGM_API int pgm_handler_temp_off(struct pgm_vm *vm, pgm_gpa_t gpa);

/**
 * Re-arm every page of the handler starting at @p gpa.
 * @return 0; -ENOENT
 */
PGM_API int pgm_handler_reset(struct pgm_vm *vm, pgm_gpa_t gpa);

/** @return the effective handler state of the page at @p gpa (NONE for unassigned). */
PGM_API enum pgm_handler_kind pgm_handler_state(struct pgm_vm *vm, pgm_gpa_t gpa);

/* ---- Dirty logging ----------------------------------------------------- */

/**
 * Start logging writes to the RAM range [@p gpa, @p gpa + @p size) (page
 * aligned). Built on a WRITE handler with temp-off / reset: only the first
 * write to each page per round costs a callback.
 * @return 0; -EINVAL (alignment, not all RAM); -EEXIST (a handler or log
 *         already covers part of it); -ENOMEM
 */
PGM_API int pgm_dirty_log_start(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);

/**
 * Stop the log that starts at @p gpa.
 * @return 0; -ENOENT
 */
PGM_API int pgm_dirty_log_stop(struct pgm_vm *vm, pgm_gpa_t gpa);

/**
 * Fetch and clear the dirty bits of the log that starts at @p gpa: bit i of
 * @p bitmap (64 pages per word, `size / 4096` bits in all) is set if page
 * @p gpa + i * 4096 was written since the previous call. The pages reported
 * are re-armed before this returns, so a write after the return is reported
 * by the next call; copy the reported pages after this returns.
 * @return 0; -ENOENT (no log starts at @p gpa); -EINVAL (NULL @p bitmap)
 */
PGM_API int pgm_dirty_log_get_and_clear(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t *bitmap);

/* ---- Virtual handlers --------------------------------------------------- */

/** What a virtual handler intercepts. */
enum pgm_virt_handler_kind {
    /** Guest writes through the covered linear pages (the pages are mapped read-only). */
    PGM_VIRT_HANDLER_WRITE = 1,
    /** Every guest access through the covered linear pages (mapped not present). */
    PGM_VIRT_HANDLER_ALL,
    /**
     * A linear range the hypervisor owns in the guest's address space: the
     * callback is consulted only when pgm_trap0e() gets a #PF inside it,
     * before the guest's tables are looked at. Nothing is reflected into the
     * shadows and no GVA -> GPA association is kept.
     */
    PGM_VIRT_HANDLER_HYPERVISOR,
};

/** pgm_virt_invalidate_fn: the page is not mapped (or not yet resolved). */
#define PGM_GPA_NONE UINT64_MAX

/**
 * Virtual handler callback. For WRITE and ALL handlers: one access of
 * @p size bytes within one page of the range, made by a guest instruction
 * libpgm finishes (pgm_trap0e, pgm_soft_access): @p gpa is where the guest's
 * tables map @p gva, @p buf holds the bytes written or receives the bytes
 * read. Returns as a physical handler: HANDLED (done), DEFAULT (libpgm makes
 * the access, through physical handlers if any; for a write after the
 * callback) or EXIT (the fault-path call returns EXIT / PGM_EXIT_HANDLER).
 * For HYPERVISOR handlers: called from pgm_trap0e() with @p gpa =
 * PGM_GPA_NONE, @p buf NULL, @p size 0 and @p write from the error code:
 * HANDLED resumes the guest, DEFAULT handles the #PF as a guest fault would
 * be, EXIT returns EXIT / PGM_EXIT_HANDLER.
 * Called without libpgm's locks held.
 */
typedef enum pgm_handler_result (*pgm_virt_handler_fn)(struct pgm_vcpu *vcpu, pgm_gva_t gva,
                                                       pgm_gpa_t gpa, void *buf, size_t size,
                                                       bool write, void *user);

/**
 * Invalidation callback: the guest page at @p gva of a WRITE or ALL handler
 * changed its mapping from @p old_gpa to @p new_gpa (either may be
 * PGM_GPA_NONE: not mapped). Called with the VM lock held: it must not call
 * into libpgm.
 */
typedef void (*pgm_virt_invalidate_fn)(struct pgm_vm *vm, pgm_gva_t gva, pgm_gpa_t old_gpa,
                                       pgm_gpa_t new_gpa, void *user);

/** A virtual handler registration. */
struct pgm_virt_handler {
    enum pgm_virt_handler_kind kind; /**< WRITE, ALL or HYPERVISOR */
    /**
     * The address space: the guest CR3 of its tables. Compared with a
     * vCPU's CR3 as the mode reads it: bits 51:12 in IA-32e mode (the PCID
     * is ignored), 31:5 in PAE mode, 31:12 in 32-bit mode.
     */
    uint64_t cr3;
    pgm_gva_t gva;                   /**< first byte, page aligned */
    uint64_t size;                   /**< bytes, a nonzero page multiple, at most 1 GiB */
    pgm_virt_handler_fn fn;          /**< the callback */
    pgm_virt_invalidate_fn invalidate; /**< optional (WRITE / ALL only) */
    void *user;                      /**< passed to both callbacks */
};

/**
 * Register a virtual handler on a shadow-paging VM. For WRITE and ALL
 * handlers libpgm resolves each covered page through the guest's tables
 * (with the paging state of a vCPU running that address space, else at the
 * first load of that CR3) and keeps the association as the guest changes
 * its tables: writes libpgm sees to them, INVLPG, MOV CR3 and TLB flushes,
 * and every shadow fault on a covered page re-check it. The pages the range
 * maps get a virtual handler state that the shadow entries mapping them
 * reflect (read-only / not present), updated through the reverse map: no
 * shadow table is flushed wholesale. Accesses through another linear address
 * that maps the same page are finished by libpgm without calling the handler.
 * @return 0; -EINVAL (bad kind, alignment, size, NULL callback);
 *         -EOPNOTSUPP (not a shadow-paging VM); -EEXIST (overlaps a handler
 *         of the same address space); -ENOSPC (a page would be covered by
 *         more than 65535 handlers); -ENOMEM
 */
PGM_API int pgm_virt_handler_register(struct pgm_vm *vm, const struct pgm_virt_handler *h);

/**
 * Deregister the virtual handler of address space @p cr3 starting at @p gva.
 * Shadow entries widen lazily (at their next fault). As for physical
 * handlers, a callback already running may finish after this returns.
 * @return 0; -ENOENT
 */
PGM_API int pgm_virt_handler_deregister(struct pgm_vm *vm, uint64_t cr3, pgm_gva_t gva);

/**
 * The guest-physical page the covered page at @p gva of address space
 * @p cr3 is currently associated with (debugging, tests).
 * @return 0 with @p gpa set (PGM_GPA_NONE: not mapped or not resolved yet);
 *         -ENOENT (no WRITE/ALL handler covers it); -EINVAL
 */
PGM_API int pgm_virt_handler_gpa(struct pgm_vm *vm, uint64_t cr3, pgm_gva_t gva, pgm_gpa_t *gpa);

#endif /* PGM_HANDLER_H */
