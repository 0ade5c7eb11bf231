/* SPDX-License-Identifier: MIT */
/**
 * @file phys.h
 * @brief The guest-physical address space: RAM, ROM, MMIO and unassigned space.
 *
 * Ranges are page aligned and may not overlap. Whatever no range covers is
 * unassigned: reads return all-ones and writes are dropped, as on a PC bus.
 *
 * Naturally aligned reads and writes of 2, 4 or 8 bytes are single atomic
 * accesses (as aligned accesses are on x86), so they never tear against a
 * walker on another thread setting A/D bits.
 */
#ifndef PGM_PHYS_H
#define PGM_PHYS_H

#include "types.h"
#include "vm.h"

/** Positive return code: a handler returned PGM_HANDLER_EXIT (see handler.h). */
#define PGM_RC_HANDLER_EXIT 2

/** Kinds of guest-physical range. */
enum pgm_phys_kind {
    PGM_PHYS_UNASSIGNED = 0, /**< no range: reads all-ones, writes dropped */
    PGM_PHYS_RAM,            /**< lazily backed RAM: zero until first written */
    PGM_PHYS_ROM,            /**< reads from an image, writes dropped */
    PGM_PHYS_MMIO,           /**< no backing: every access goes to a handler */
};

/**
 * Add a RAM range. No host page is allocated until the first write to a page;
 * reads before that see zeros.
 * @return 0; -EINVAL (size 0, not page aligned, or beyond MAXPHYADDR);
 *         -EEXIST (overlaps an existing range); -ENOMEM
 */
PGM_API int pgm_phys_add_ram(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);

/**
 * Add a ROM range whose contents are @p image (copied; a shorter image is
 * padded with zeros). Guest writes are dropped.
 * @return as pgm_phys_add_ram(); also -EINVAL if @p image_size > @p size
 */
PGM_API int pgm_phys_add_rom(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size,
                             const void *image, size_t image_size);

/** What a ROM range shows the guest (the PC chipset's PAM modes). */
enum pgm_rom_mode {
    PGM_ROM_MODE_ROM = 0,    /**< reads the image; writes dropped (or to a WRITE handler) */
    PGM_ROM_MODE_SHADOW_RW,  /**< reads and writes a RAM copy of the image */
    PGM_ROM_MODE_SHADOW_RO,  /**< reads the RAM copy; writes dropped */
};

/**
 * Switch the ROM range starting at @p gpa between its image and a writable
 * shadow copy, as firmware does to shadow its ROMs in RAM. The copy is made
 * from the image at the first switch to a shadow mode and keeps what the
 * guest wrote across later switches.
 * @return 0; -ENOENT (no ROM range starts at @p gpa); -EINVAL (bad mode);
 *         -ENOMEM (the copy could not be allocated; nothing changed)
 */
PGM_API int pgm_phys_rom_set_mode(struct pgm_vm *vm, pgm_gpa_t gpa, enum pgm_rom_mode mode);

/**
 * Add an MMIO range. It has no backing memory; accesses need a handler.
 * @return as pgm_phys_add_ram()
 */
PGM_API int pgm_phys_add_mmio(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);

/**
 * Remove the range that starts exactly at @p gpa, freeing its host pages.
 * Another thread must not be accessing the range meanwhile.
 * @return 0; -ENOENT if no range starts there; -EBUSY while a handler
 *         covers part of it (deregister it first)
 */
PGM_API int pgm_phys_remove(struct pgm_vm *vm, pgm_gpa_t gpa);

/** @return the kind of memory at @p gpa. */
PGM_API enum pgm_phys_kind pgm_phys_kind_at(struct pgm_vm *vm, pgm_gpa_t gpa);

/**
 * Read guest-physical memory, across page and range boundaries.
 * RAM reads see zeros where never written, ROM reads its image, unassigned
 * space reads all-ones.
 * Pages with an ALL or MMIO handler are read through it (handler.h).
 * @return 0; -ENODEV if part of the span is MMIO with no handler (those bytes
 *         read as all-ones, the rest is read normally); PGM_RC_HANDLER_EXIT
 *         if a handler asked the embedder to finish the access (the bytes
 *         before it were read, none after); -EINVAL on NULL @p buf with
 *         nonzero @p len or a span that wraps past 2^64.
 */
PGM_API int pgm_phys_read(struct pgm_vm *vm, pgm_gpa_t gpa, void *buf, size_t len);

/**
 * Write guest-physical memory, across page and range boundaries. The first
 * write to a RAM page allocates its host page. ROM and unassigned bytes are
 * dropped. Pages with a WRITE, ALL or MMIO handler are written through it.
 * @return 0; -ENODEV as for pgm_phys_read() (MMIO bytes are not written);
 *         PGM_RC_HANDLER_EXIT as for pgm_phys_read();
 *         -ENOMEM if a host page could not be allocated (bytes before it were
 *         written, none after); -EINVAL as for pgm_phys_read()
 */
PGM_API int pgm_phys_write(struct pgm_vm *vm, pgm_gpa_t gpa, const void *buf, size_t len);

/** Per-VM physical-memory counters. */
struct pgm_phys_info {
    uint64_t ram_pages;       /**< RAM pages in all ranges */
    uint64_t allocated_pages; /**< RAM pages that have a host page */
    uint64_t rom_pages;       /**< ROM pages */
    uint64_t mmio_pages;      /**< MMIO pages */
    uint32_t ranges;          /**< number of ranges */
};

/** Fill @p info. */
PGM_API void pgm_phys_info(struct pgm_vm *vm, struct pgm_phys_info *info);

#endif /* PGM_PHYS_H */
