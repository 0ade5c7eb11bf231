/* SPDX-License-Identifier: MIT */
/*
 * Physical handler registry (internal).
 *
 * Handlers live in an immutable array sorted by start address, published
 * like the physical map (src/phys.h): writers build a new array under the VM
 * lock and retire the old one and any replaced handler object until VM
 * destruction, so dispatch on any thread reads without a lock and a handler
 * object it found stays readable.
 *
 * Each RAM/ROM page descriptor carries the page's handler state
 * (`struct pgm_page.handler`): the covering handler's kind plus a temp-off
 * bit, written under the VM lock with atomic stores and read atomically.
 * MMIO pages have no descriptors; their handler is found in the array.
 */
#ifndef PGM_SRC_HANDLERS_REGISTRY_H
#define PGM_SRC_HANDLERS_REGISTRY_H

#include "pgm/handler.h"
#include "src/phys.h"

/* struct pgm_page.handler: kind in bits 1:0, temp-off in bit 2. */
#define PGM_PAGE_HANDLER_KIND_MASK 0x3u
#define PGM_PAGE_HANDLER_TEMP_OFF  0x4u

struct pgm_handler_map {
    uint32_t count;
    const struct pgm_phys_handler *h[]; /* sorted by gpa, non-overlapping */
};

struct pgm_handlers {
    struct pgm_handler_map *map;  /* never NULL after init */
    struct pgm_retired *retired;  /* old arrays and replaced handler objects */
};

struct pgm_vm;

int pgm_handlers_init(struct pgm_vm *vm);
void pgm_handlers_fini(struct pgm_vm *vm);

/* The handler covering @gpa in the current array, or NULL. */
const struct pgm_phys_handler *pgm_handler_find(struct pgm_vm *vm, pgm_gpa_t gpa);

/* Does any handler overlap [gpa, gpa + size)? (VM lock held) */
bool pgm_handlers_overlap(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);

/*
 * The page at @gpa may be mapped wider than its state now allows: remove the
 * shadow entries that map it (through the reverse map) and count them in
 * handler_entries_touched / handler_flushes. VM lock held.
 */
void pgm_handler_reflect_page(struct pgm_vm *vm, pgm_gpa_t gpa);

/* Clear the temp-off mark of one RAM/ROM page. VM lock held (callers batch
 * pages under one lock: one nested flush at unlock). */
void pgm_handler_rearm_page_locked(struct pgm_vm *vm, pgm_gpa_t gpa);

/*
 * A write that bypasses handlers (pgm_phys_write_simple) lands on RAM page
 * @gpa whose handler is armed: if that handler is a dirty log, record the
 * page as a guest write would (bit set, handler turned off for the page).
 * Any other handler is left alone.
 */
void pgm_dirty_log_note_write(struct pgm_vm *vm, pgm_gpa_t gpa);

/* Free every dirty log (VM destruction). */
void pgm_dirty_logs_fini(struct pgm_vm *vm);

/* Effective state of a page descriptor (NONE, WRITE or ALL). */
static inline enum pgm_handler_kind
pgm_page_handler_state(const struct pgm_page *pg)
{
    uint32_t v = __atomic_load_n(&pg->handler, __ATOMIC_RELAXED);
    return (v & PGM_PAGE_HANDLER_TEMP_OFF) ? PGM_HANDLER_NONE
                                           : (enum pgm_handler_kind)(v & PGM_PAGE_HANDLER_KIND_MASK);
}

/* struct pgm_page.virt: how many WRITE and ALL virtual handlers map the page. */
#define PGM_PAGE_VIRT_WRITE_ONE 0x00001u
#define PGM_PAGE_VIRT_ALL_ONE   0x10000u

/*
 * What the shadow entries of a page must reflect: the stronger of its
 * physical handler state and the virtual handlers mapping it. (Physical
 * dispatch looks at pgm_page_handler_state() only: a virtual handler is
 * called for its linear addresses, not for the page.)
 */
static inline enum pgm_handler_kind
pgm_page_shadow_state(const struct pgm_page *pg)
{
    enum pgm_handler_kind hk = pgm_page_handler_state(pg);
    uint32_t virt = __atomic_load_n(&pg->virt, __ATOMIC_RELAXED);
    if (virt >= PGM_PAGE_VIRT_ALL_ONE)
        return PGM_HANDLER_ALL;
    if (virt && hk == PGM_HANDLER_NONE)
        return PGM_HANDLER_WRITE;
    return hk;
}

#endif /* PGM_SRC_HANDLERS_REGISTRY_H */
