/* SPDX-License-Identifier: MIT */
/*
 * Virtual (guest-linear) handlers (internal; docs/handlers.md).
 *
 * A WRITE or ALL handler covers linear pages of one address space (a CR3).
 * Each covered page keeps its association: the guest-physical page the
 * guest's tables map it to, and the guest tables the walk read to find it
 * (its path). The page descriptor of the associated GPA counts the
 * handlers mapping it (`struct pgm_page.virt`), and the shadow engine
 * reflects that count like a physical handler state
 * (pgm_page_shadow_state), so shadow entries are changed only through the
 * reverse map of the pages concerned.
 *
 * The association is re-resolved - walking the guest tables with the
 * paging state a vCPU last had in that address space, without setting
 * A/D - when libpgm sees a write to a table on a path, at INVLPG of a
 * covered page, at every load of that CR3 or TLB flush in it, and whenever
 * a shadow fault on a covered page walks to a different GPA than the one
 * recorded. The last check is what makes the scheme exact: a shadow entry
 * for a covered linear page is only ever built from a walk whose GPA
 * matches the association (prefetch skips covered pages, refills after a
 * monitored table write run after the write re-resolved the paths through
 * that table), so the guest cannot reach an unassociated page through a
 * covered address without a fault.
 *
 * Locking: everything that changes associations or counts runs under the
 * VM lock (and takes the shadow lock inside, VM then shadow). Lookups on
 * the fault path read the published handler array without a lock, like the
 * physical registry.
 */
#ifndef PGM_SRC_HANDLERS_VIRT_H
#define PGM_SRC_HANDLERS_VIRT_H

#include "pgm/handler.h"
#include "pgm/types.h"
#include "src/handlers/virt_watch.h"
#include "src/modes/guest.h"

struct pgm_vm;
struct pgm_vcpu;
struct pgm_walk;
struct pgm_fault_out;

/* One covered linear page. Written under the VM lock; gpa read atomically. */
struct pgm_virt_page {
    pgm_gpa_t gpa;                  /* associated page, or PGM_GPA_NONE */
    bool counted;                   /* gpa's descriptor counts this page in .virt */
    bool resolved;                  /* walked at least once (gpa is meaningful) */
    uint64_t path[PGM_MAX_LEVELS];  /* gfns of the tables the walk read; UINT64_MAX: none */
};

/* A registered handler. `pub` is immutable once published. */
struct pgm_virt_h {
    struct pgm_virt_handler pub;
    bool have_ctx;                  /* wctx/mode captured from a vCPU in this address space */
    enum pgm_guest_mode mode;
    struct pgm_walk_ctx wctx;
    uint64_t npages;                /* 0 for HYPERVISOR handlers */
    struct pgm_virt_page pages[];
};

struct pgm_virt_map {
    uint32_t count;
    struct pgm_virt_h *h[];         /* sorted by gva */
};

struct pgm_virt {
    struct pgm_virt_map *map;       /* never NULL after init; published */
    struct pgm_retired *retired;    /* old arrays and deregistered handlers */
    struct pgm_virt_watch watch;    /* VM lock */
    bool watch_all;                 /* the watch set could not grow: check every write */
    bool ever;                      /* a handler was registered once (pgm_audit) */
    uint32_t active;                /* WRITE/ALL handlers registered (atomic reads) */
    uint32_t any;                   /* handlers of any kind (atomic reads) */
};

/* A page's per-kind count sticks at this value (restricting more is safe). */
#define PGM_VIRT_COUNT_MAX 0xffffu

/* The CR3 bits that name the root table in @mode (0: no paging). */
static inline uint64_t
pgm_virt_cr3_mask(enum pgm_guest_mode mode)
{
    switch (mode) {
    case PGM_MODE_AMD64:
    case PGM_MODE_LA57: return 0x000ffffffffff000ull; /* PCID and PWT/PCD ignored */
    case PGM_MODE_PAE: return 0xffffffe0ull;
    case PGM_MODE_32BIT: return 0xfffff000ull;
    default: return 0;
    }
}

/* Does CR3 value @cr3, read in @mode, name the same tables as @h's CR3? */
static inline bool
pgm_virt_same_space(const struct pgm_virt_h *h, enum pgm_guest_mode mode, uint64_t cr3)
{
    uint64_t m = pgm_virt_cr3_mask(mode);
    return m && !((cr3 ^ h->pub.cr3) & m);
}

int pgm_virt_init(struct pgm_vm *vm);
void pgm_virt_fini(struct pgm_vm *vm);

/* @vcpu loaded a CR3, changed mode or flushed its TLB: re-resolve every
 * covered page of the address space it is in now. Takes the VM lock. */
void pgm_virt_as_loaded(struct pgm_vcpu *vcpu);

/* INVLPG @gva on @vcpu: re-resolve that page if covered. Takes the VM lock. */
void pgm_virt_invlpg(struct pgm_vcpu *vcpu, pgm_gva_t gva);

/* Guest-physical page @gfn was written (VMM or emulated guest write):
 * re-resolve the covered pages whose path reads it. Takes the VM lock. */
void pgm_virt_table_written(struct pgm_vm *vm, uint64_t gfn);

/* A shadow fault walked covered @w->gva to @w->gpa: make sure the
 * association says so before anything is mapped. Takes the VM lock. */
void pgm_virt_check_fault(struct pgm_vcpu *vcpu, const struct pgm_walk *w);

/* Is @gva covered by a WRITE/ALL handler of @vcpu's address space? (no lock) */
bool pgm_virt_covers(const struct pgm_vcpu *vcpu, pgm_gva_t gva);

/*
 * An access of @n bytes (within one page) at @gva -> @gpa that libpgm
 * finishes for a guest instruction: call the covering handler if it wants
 * this kind of access. @rbuf or @wbuf as for physical accesses.
 * Returns 1 (no handler, or DEFAULT: make the access), 0 (HANDLED) or
 * PGM_RC_HANDLER_EXIT.
 */
int pgm_virt_dispatch(struct pgm_vcpu *vcpu, pgm_gva_t gva, pgm_gpa_t gpa, void *rbuf,
                      const void *wbuf, size_t n);

/*
 * A #PF at @cr2 (a write if @write): if a HYPERVISOR handler covers it,
 * ask it. Returns 1 when no handler covers it or it said DEFAULT, else 0
 * with @out filled (RESUME for HANDLED, EXIT for EXIT).
 */
int pgm_virt_hypervisor_fault(struct pgm_vcpu *vcpu, pgm_gva_t cr2, bool write,
                              struct pgm_fault_out *out);

/* RAM/ROM range [gpa, gpa + size) was added / is being removed (VM lock held):
 * count / stop counting the associations that point into it. */
void pgm_virt_range_added(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);
void pgm_virt_range_removed(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);

/* Check the page counts against the associations (pgm_audit). Returns 0, or 1
 * with @msg filled. Takes the VM lock. */
int pgm_virt_audit(struct pgm_vm *vm, char *msg, size_t len);

#endif /* PGM_SRC_HANDLERS_VIRT_H */
