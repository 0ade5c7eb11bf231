/* SPDX-License-Identifier: MIT */
/**
 * @file access.h
 * @brief Guest memory accesses on behalf of the VMM: origin-tagged physical
 *        accesses, guest-virtual accesses, and "simple" variants that bypass
 *        handlers.
 *
 * Three ways to touch guest memory, each in a physical and a guest-virtual
 * form:
 *  - pgm_phys_read() / pgm_phys_write() (phys.h): through handlers, origin
 *    PGM_ORIGIN_PHYS_API;
 *  - pgm_phys_read_origin() / pgm_phys_write_origin(), pgm_read_gva() /
 *    pgm_write_gva(): through handlers with the origin the caller names, so
 *    a device model can tell device DMA (PGM_ORIGIN_DMA) from the VMM's own
 *    accesses and from accesses it emulates for the guest (PGM_ORIGIN_GUEST);
 *  - the `_simple` variants: no handler is called. RAM and ROM backing is
 *    accessed directly (a ROM takes writes only in PGM_ROM_MODE_SHADOW_RW,
 *    as for every access); MMIO has no backing, so its bytes read as
 *    all-ones, writes to it are dropped and the call returns -ENODEV (after
 *    doing the rest of the span). Dirty logs are the one exception: they are
 *    bookkeeping, not devices, so a simple write to a logged page still
 *    marks it dirty (as KVM logs writes the VMM makes through its API).
 *
 * Every form keeps the shadow tables coherent: a write that changes a guest
 * page table libpgm shadows updates or removes the shadow entries built
 * from it, exactly as a guest write libpgm emulates does.
 */
#ifndef PGM_ACCESS_H
#define PGM_ACCESS_H

#include "handler.h"
#include "types.h"
#include "vm.h"

/**
 * Positive return code of the guest-virtual accesses: the guest's paging
 * does not allow the access. The fault the CPU would raise is in the
 * caller's struct pgm_gva_fault; no byte was accessed.
 */
#define PGM_RC_GUEST_FAULT 3

/**
 * Read guest-physical memory as pgm_phys_read() does, telling handlers the
 * access comes from @p origin (their `vcpu` argument is NULL).
 * @return as pgm_phys_read(); also -EINVAL for an unknown @p origin
 */
PGM_API int pgm_phys_read_origin(struct pgm_vm *vm, pgm_gpa_t gpa, void *buf, size_t len,
                                 enum pgm_access_origin origin);

/**
 * Write guest-physical memory as pgm_phys_write() does, telling handlers the
 * access comes from @p origin (their `vcpu` argument is NULL).
 * @return as pgm_phys_write(); also -EINVAL for an unknown @p origin
 */
PGM_API int pgm_phys_write_origin(struct pgm_vm *vm, pgm_gpa_t gpa, const void *buf,
                                  size_t len, enum pgm_access_origin origin);

/**
 * Read guest-physical memory without calling any handler (see the file
 * comment): RAM and ROM backing, all-ones for MMIO and unassigned space.
 * @return 0; -ENODEV if part of the span is MMIO (read as all-ones, the
 *         rest read normally); -EINVAL as for pgm_phys_read()
 */
PGM_API int pgm_phys_read_simple(struct pgm_vm *vm, pgm_gpa_t gpa, void *buf, size_t len);

/**
 * Write guest-physical memory without calling any handler: RAM backing is
 * written (allocated on first write), ROM as for pgm_phys_write(), MMIO and
 * unassigned bytes are dropped. A dirty log covering a written page still
 * records it. Shadows of a written guest page table are kept coherent.
 * @return 0; -ENODEV if part of the span is MMIO (not written, the rest is);
 *         -ENOMEM (bytes before the failing page were written, none after);
 *         -EINVAL as for pgm_phys_write()
 */
PGM_API int pgm_phys_write_simple(struct pgm_vm *vm, pgm_gpa_t gpa, const void *buf,
                                  size_t len);

/**
 * Flags of the guest-virtual accesses: `pgm_access` bits that say how the
 * guest's paging checks the access. The kind (read or write) comes from the
 * function; any other bit is -EINVAL.
 */
#define PGM_GVA_FLAGS_KNOWN                                                                  \
    (PGM_ACCESS_USER | PGM_ACCESS_FETCH | PGM_ACCESS_IMPLICIT | PGM_ACCESS_AC |             \
     PGM_ACCESS_NO_AD)

/** The fault a guest-virtual access would raise (return PGM_RC_GUEST_FAULT). */
struct pgm_gva_fault {
    uint8_t vector;      /**< 14 (#PF), or 13 (#GP: a non-canonical address) */
    uint32_t error_code; /**< #PF: the guest's error code; #GP: 0 */
    pgm_gva_t address;   /**< #PF: the faulting linear address (CR2); #GP: the address */
};

/**
 * Read @p len bytes at linear address @p gva as the guest would see them
 * from @p vcpu in its current paging mode, then read guest-physical memory
 * through handlers (which see @p vcpu and @p origin). A virtual handler
 * covering a linear page of the span (handler.h) is called first for it.
 *
 * Every page of the span is translated with pgm_walk() (access READ plus
 * @p flags: PGM_ACCESS_USER checks as CPL 3, PGM_ACCESS_FETCH as an
 * instruction fetch, PGM_ACCESS_NO_AD leaves A/D bits alone, otherwise A
 * bits are set as the CPU would) before any byte is read, so a fault on any
 * page returns with nothing read (A bits of pages walked before it may be
 * set, as on a CPU). Outside IA-32e mode the address wraps at 4 GiB. Works
 * on every VM paging kind, with guest paging on or off.
 *
 * @param vcpu    the vCPU whose CR0/CR3/CR4/EFER govern the translation
 * @param gva     linear address of the first byte
 * @param buf     receives @p len bytes
 * @param len     bytes (any length; pages are translated one by one)
 * @param flags   see PGM_GVA_FLAGS_KNOWN
 * @param origin  the origin handlers are told (PGM_ORIGIN_GUEST when the
 *                VMM emulates an access of the guest)
 * @param fault   filled when the return is PGM_RC_GUEST_FAULT (may be NULL)
 * @return 0; PGM_RC_GUEST_FAULT; PGM_RC_HANDLER_EXIT (bytes before that
 *         handler were read, none after); -ENODEV (part of it is MMIO with no
 *         handler: read as all-ones); -ELOOP (pgm_walk() gave up); -EINVAL
 *         (NULL pointers, unknown flags or origin)
 */
PGM_API int pgm_read_gva(struct pgm_vcpu *vcpu, pgm_gva_t gva, void *buf, size_t len,
                         uint32_t flags, enum pgm_access_origin origin,
                         struct pgm_gva_fault *fault);

/**
 * Write @p len bytes at linear address @p gva as the guest would, then
 * through handlers to guest-physical memory. As pgm_read_gva(), with access
 * WRITE (D bits set in the leaves unless PGM_ACCESS_NO_AD; CR0.WP, SMAP and
 * protection keys applied as the walker does); PGM_ACCESS_FETCH is -EINVAL.
 * Every page is checked before any byte is written.
 * @return as pgm_read_gva(); also -ENOMEM (a RAM page could not be
 *         allocated: bytes before it were written)
 */
PGM_API int pgm_write_gva(struct pgm_vcpu *vcpu, pgm_gva_t gva, const void *buf, size_t len,
                          uint32_t flags, enum pgm_access_origin origin,
                          struct pgm_gva_fault *fault);

/**
 * pgm_read_gva() without handlers: the guest-physical side is
 * pgm_phys_read_simple().
 * @return as pgm_read_gva() (never PGM_RC_HANDLER_EXIT)
 */
PGM_API int pgm_read_gva_simple(struct pgm_vcpu *vcpu, pgm_gva_t gva, void *buf, size_t len,
                                uint32_t flags, struct pgm_gva_fault *fault);

/**
 * pgm_write_gva() without handlers: the guest-physical side is
 * pgm_phys_write_simple() (dirty logs still record the pages written).
 * @return as pgm_write_gva() (never PGM_RC_HANDLER_EXIT)
 */
PGM_API int pgm_write_gva_simple(struct pgm_vcpu *vcpu, pgm_gva_t gva, const void *buf,
                                 size_t len, uint32_t flags, struct pgm_gva_fault *fault);

#endif /* PGM_ACCESS_H */
