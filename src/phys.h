/* SPDX-License-Identifier: MIT */
/*
 * Guest-physical memory map (internal).
 *
 * The map is an immutable, sorted snapshot of range pointers published with
 * a release store. Readers (walkers on any vCPU thread) load the snapshot
 * once per operation with an acquire load and never take the VM lock; writers
 * (range add/remove) build a new snapshot under the VM lock and retire the old
 * one and any removed range object to a list freed at VM destruction, so a
 * reader still holding an old snapshot never touches freed descriptors. Host
 * pages of a removed range are freed at once: the embedder must not remove a
 * range while another thread accesses it (documented in phys.h).
 *
 * Each RAM or ROM page has a descriptor. A RAM page's `host` pointer is NULL
 * until its first write ("zero" state); it is set once under the VM lock with
 * a release store and never changes while the range exists. Descriptor state
 * is what libpgm's accounting (and later the shadow code) relies on, also for
 * ranges backed by a block.
 */
#ifndef PGM_SRC_PHYS_H
#define PGM_SRC_PHYS_H

#include <stdint.h>

#include "pgm/handler.h"
#include "pgm/phys.h"
#include "src/atomics.h"

/* One guest page. */
struct pgm_page {
    uint8_t *host;     /* host mapping; NULL while a RAM page is still all zeros */
    pgm_hpa_t hpa;     /* host-physical address when host != NULL */
    uint32_t handler;  /* handler state, see src/handlers/registry.h */
    /*
     * Virtual handlers whose linear pages currently map this page: WRITE
     * handlers in bits 15:0, ALL handlers in bits 31:16 (src/handlers/virt.h).
     */
    uint32_t virt;
};

struct pgm_phys_range {
    pgm_gpa_t start;
    uint64_t size;            /* bytes, page multiple */
    enum pgm_phys_kind kind;
    struct pgm_page *pages;   /* size >> 12 descriptors; NULL for MMIO */
    /*
     * RAM backed by one host-contiguous block (backend alloc_ram_block), or
     * NULL when pages come one by one from alloc_page. With a block, page i
     * is at block + i * 4096 / block_hpa + i * 4096 whether or not it was
     * written yet (the block reads as zero), so lookups are arithmetic.
     */
    uint8_t *block;
    pgm_hpa_t block_hpa;
    /*
     * ROM: `pages` is the view the guest sees; the pages themselves are owned
     * by `rom_image` (the image, always) and `rom_shadow` (a writable copy,
     * allocated at the first switch to a shadow mode). Switching the mode
     * repoints `pages` under the VM lock.
     */
    enum pgm_rom_mode rom_mode;
    struct pgm_page *rom_image;
    struct pgm_page *rom_shadow;
};

/* Immutable sorted snapshot of the ranges. */
struct pgm_phys_map {
    uint32_t count;
    struct pgm_phys_range *range[];
};

/* Something to free at VM destruction. */
struct pgm_retired {
    struct pgm_retired *next;
    void *ptr;
};

struct pgm_phys {
    struct pgm_phys_map *map;       /* current snapshot, never NULL after init */
    struct pgm_retired *retired;    /* old snapshots and removed ranges */
    uint64_t allocated_pages;       /* under the VM lock */
};

/* 4 KiB pages read for zero RAM and for non-memory (all-ones) space. */
extern const uint8_t pgm_zero_page[4096];
extern const uint8_t pgm_ones_page[4096];

struct pgm_vm;

int pgm_phys_init(struct pgm_vm *vm);
void pgm_phys_fini(struct pgm_vm *vm);

/* The current snapshot (acquire). */
static inline const struct pgm_phys_map *
pgm_phys_snapshot(const struct pgm_phys *phys)
{
    return pgm_load_acquire(&phys->map);
}

/* Binary search of @map for @gpa. NULL if unassigned. */
static inline struct pgm_phys_range *
pgm_phys_map_find(const struct pgm_phys_map *map, pgm_gpa_t gpa)
{
    uint32_t lo = 0, hi = map->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        struct pgm_phys_range *r = map->range[mid];
        if (gpa < r->start)
            hi = mid;
        else if (gpa - r->start >= r->size)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

static inline int
pgm_phys_range_contains(const struct pgm_phys_range *r, pgm_gpa_t gpa)
{
    return r && gpa - r->start < r->size;
}

/*
 * Make sure RAM page @pg of range @r has a host page (first write). Takes
 * the VM lock. Returns 0 or -ENOMEM.
 */
int pgm_phys_page_materialize(struct pgm_vm *vm, struct pgm_phys_range *r, struct pgm_page *pg);

/*
 * Mark pages [first, first + count) of block-backed RAM range @r allocated
 * (they are the block's; nothing is allocated). For a nested large leaf
 * that lets the guest write all of them. VM lock held; no nested hook.
 */
void pgm_phys_materialize_block_span(struct pgm_vm *vm, struct pgm_phys_range *r, uint64_t first,
                                     uint64_t count);

struct pgm_vcpu;

/*
 * A guest instruction's access to guest-physical memory (emulation): like
 * pgm_phys_read (@rbuf) or pgm_phys_write (@wbuf), but handlers are called
 * with @vcpu and origin PGM_ORIGIN_GUEST. Same return values.
 */
int pgm_phys_access_guest(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *rbuf, const void *wbuf,
                          size_t len);

/*
 * The one physical access path. @simple bypasses handlers: RAM and ROM
 * backing is accessed directly, MMIO reads all-ones and drops writes
 * (-ENODEV), and only dirty logs still record writes
 * (pgm_dirty_log_note_write). Either way, writes to a shadowed guest table
 * keep the shadows coherent. Handlers see @vcpu (may be NULL) and @origin.
 * Return values as pgm_phys_read / pgm_phys_write.
 */
int pgm_phys_access(struct pgm_vm *vm, struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *rbuf,
                    const void *wbuf, size_t len, enum pgm_access_origin origin, bool simple);

/*
 * What libpgm itself reads of guest memory - guest page tables for the
 * shadow engine, the audit, the PAE PDPTE latch - is the backing, as the
 * walker sees it: no handler is called (a device must not see reads the
 * guest never made, nor answer them with something the walker would not
 * see). MMIO and unassigned space read as all-ones.
 */
static inline int
pgm_phys_read_backing(struct pgm_vm *vm, pgm_gpa_t gpa, void *buf, size_t len)
{
    return pgm_phys_access(vm, NULL, gpa, buf, NULL, len, PGM_ORIGIN_PHYS_API, true);
}

/*
 * Host pointer of @gpa if it is plain RAM (no handler on the page), the page
 * materialised; NULL otherwise. For atomic read-modify-writes in place.
 */
uint8_t *pgm_phys_plain_ram_ptr(struct pgm_vm *vm, pgm_gpa_t gpa);

#endif /* PGM_SRC_PHYS_H */
