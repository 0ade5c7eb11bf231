/* SPDX-License-Identifier: MIT */
/*
 * The nested-paging engine (internal): one EPT or NPT table tree per VM,
 * mapping guest-physical to host-physical addresses. See docs/nested.md.
 *
 * Locking: every table change happens under the VM lock (src/vm.h), the
 * same lock that guards the physical map and the handler registry, so a
 * page's state and its nested leaf change together. Entries are written
 * with atomic stores (the hardware reads them concurrently and, with EPT
 * A/D, sets A and D bits in them).
 *
 * Flushes: a change that removes or narrows a present leaf, or frees a table
 * page, records a pending flush (one GPA, or everything); pgm_vm_unlock()
 * issues it to every vCPU through the backend before the lock is dropped
 * (pgm_nested_commit), so each locked operation sends at most one request
 * and no operation returns with a narrowed entry unflushed. Table pages
 * unlinked by the operation are freed only after that flush.
 */
#ifndef PGM_SRC_NESTED_NESTED_H
#define PGM_SRC_NESTED_NESTED_H

#include <stdbool.h>
#include <stdint.h>

#include "pgm/hwvirt.h"
#include "pgm/nested.h"
#include "pgm/stats.h"
#include "src/phys.h"

#define NESTED_ENTRIES 512u

/* Rights of a nested mapping, format-neutral. */
#define NR_R 1u
#define NR_W 2u
#define NR_X 4u
#define NR_ALL (NR_R | NR_W | NR_X)

/*
 * The MMIO fast-exit marker: a leaf the hardware refuses with an exit that
 * is not an ordinary violation. EPT: XWR = 010 (write without read) is an
 * EPT misconfiguration on every CPU. NPT: bit 51 is reserved when the host
 * MAXPHYADDR is below 52 (an NPF with RSVD = 1); at 52 there is no reserved
 * address bit and MMIO stays not present. Bit 11 (ignored / AVL in both
 * formats) tags the entry as libpgm's, so the audit can tell it from a
 * corrupted one.
 */
#define NESTED_MARKER_TAG   (1ull << 11)
#define NESTED_NPT_RSVD_BIT (1ull << 51)

/* One table page of the tree. */
struct nested_table {
    uint64_t *ent;                 /* the 512 entries (a backend page) */
    pgm_hpa_t hpa;
    struct nested_table **child;   /* 512 child pointers at levels >= 2, else NULL */
    struct nested_table *next;     /* link in the retired list */
    pgm_gpa_t base;                /* GPA its entry 0 covers */
    unsigned level;                /* 1 (PT) .. levels (root) */
};

enum nested_kind { NE_NONE = 0, NE_TABLE, NE_LEAF, NE_MARKER };

/* What a GPA's nested leaf should be, from the physical map and handlers. */
enum nested_target_kind {
    NT_NONE = 0, /* not present: unassigned, or MMIO / ALL without a marker */
    NT_MARKER,   /* MMIO or ALL handler: the fast-exit marker */
    NT_MAP,      /* map `hpa` with `rights` */
};

struct nested_target {
    enum nested_target_kind kind;
    pgm_hpa_t hpa;
    uint32_t rights;               /* NR_* */
    bool plain_ram;                /* RAM without handler: large pages may cover it */
    bool materialize;              /* a write becomes possible once the page is allocated */
    struct pgm_phys_range *r;
    struct pgm_page *pg;
};

struct nested_counters {
    uint64_t faults, maps, zaps, flushes, splits, merges, table_pages, spurious, mmio_fast,
        emulations, large_maps;
};

struct pgm_nested {
    enum pgm_paging_hw format;
    unsigned levels;
    uint32_t flags;                /* pgm_nested_flags */
    bool ad;                       /* EPT A/D enabled */
    bool marker;                   /* the MMIO marker is available */
    unsigned large_levels;         /* bit L set: level-L leaves (2: 2 MiB, 3: 1 GiB) allowed */
    struct pgm_nested_config cfg;
    struct pgm_vtx_ept_env ept;
    struct pgm_svm_npt_env npt;
    struct nested_table *root;
    pgm_hpa_t zero_hpa;            /* the shared zero page never-written RAM reads map */
    void *zero_ptr;
    /* Pending flush of the current locked operation. */
    bool flush_pending, flush_all;
    pgm_gpa_t flush_gpa;
    struct nested_table *retired;  /* unlinked tables, freed after the flush */
    /* Law 3 bookkeeping: narrowed entries, and how many a flush covered. */
    uint64_t downgrades, downgrades_flushed;
    struct nested_counters c;
};

struct pgm_vm;

/* ---- nested.c: tree, entries, flushes ---- */
int pgm_nested_create(struct pgm_vm *vm);
void pgm_nested_destroy(struct pgm_vm *vm);
/* Issue the pending flush and free retired tables (VM lock held). */
void pgm_nested_commit(struct pgm_vm *vm);

enum nested_kind pgm_nested_kind(const struct pgm_nested *n, unsigned level, uint64_t e);
uint32_t pgm_nested_rights(const struct pgm_nested *n, uint64_t e);
static inline pgm_hpa_t
pgm_nested_addr(uint64_t e)
{
    return e & PGM_EPT_ADDR_MASK; /* bits 51:12 in both formats */
}
static inline uint64_t
pgm_nested_span(unsigned level)
{
    return 1ull << (PGM_PAGE_SHIFT + 9 * (level - 1));
}
/* GPAs the tree can map: 2^48 with 4 levels, 2^57 with 5 (beyond: never touched). */
static inline bool
pgm_nested_reaches(const struct pgm_nested *n, pgm_gpa_t gpa)
{
    return (gpa >> (PGM_PAGE_SHIFT + 9 * n->levels)) == 0;
}
static inline unsigned
pgm_nested_index(pgm_gpa_t gpa, unsigned level)
{
    return (unsigned)(gpa >> (PGM_PAGE_SHIFT + 9 * (level - 1))) & (NESTED_ENTRIES - 1);
}
/* A new, empty table at @level covering the GPAs from @base (counted). */
struct nested_table *pgm_nested_table_alloc(struct pgm_vm *vm, unsigned level, pgm_gpa_t base);
/* Build the entry that links table @hpa at @level. */
int pgm_nested_make_table(const struct pgm_nested *n, unsigned level, pgm_hpa_t hpa,
                          uint64_t *out);
/* Build a leaf / table / marker entry. Leaves: `dirty` pre-sets EPT D (with A/D). */
int pgm_nested_make_leaf(const struct pgm_nested *n, unsigned level, pgm_hpa_t hpa,
                         uint32_t rights, bool dirty, uint64_t *out);
uint64_t pgm_nested_make_marker(const struct pgm_nested *n);
/* The deepest entry covering @gpa: its slot and level (never NULL). */
uint64_t *pgm_nested_slot(struct pgm_nested *n, pgm_gpa_t gpa, unsigned *level,
                          struct nested_table **table);
/*
 * The table at @level that holds @gpa's entry, allocating missing tables
 * and splitting large leaves on the way. 0 or -ENOMEM (nothing half-built).
 */
int pgm_nested_table_for(struct pgm_vm *vm, pgm_gpa_t gpa, unsigned level,
                         struct nested_table **out);
/* Store @e in @slot (level @level, covering @gpa), with counting, D-bit
 * harvesting and the flush a narrowing needs. */
void pgm_nested_set(struct pgm_vm *vm, uint64_t *slot, unsigned level, pgm_gpa_t gpa,
                    uint64_t e);
/* Unlink the subtree under table entry @idx of @t (flush + deferred free). */
void pgm_nested_drop_subtree(struct pgm_vm *vm, struct nested_table *t, unsigned idx);
/* Record a flush for a narrowed entry at @level covering @gpa. */
void pgm_nested_request_flush(struct pgm_nested *n, pgm_gpa_t gpa, unsigned level);
/* What @gpa's leaf should be now. Lockless-safe (snapshot + atomic states). */
void pgm_nested_target(struct pgm_vm *vm, pgm_gpa_t gpa, struct nested_target *t);
/* Is @gpa inside a D-bit dirty log (its leaves must keep D clear)? (dirty.c) */
bool pgm_dirty_dbit_overlaps(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);
/*
 * A write fault on a page whose only WRITE handler is a write-protect dirty
 * log: record the page and turn the handler off for it, as the log's
 * callback would, so the write needs no emulation. VM lock NOT held.
 * Returns false when the page's handler is something else. (dirty.c)
 */
bool pgm_dirty_wp_claim(struct pgm_vm *vm, pgm_gpa_t gpa);
/* A write libpgm saw or harvested: set @gpa's bit in a D-bit log covering it (dirty.c). */
void pgm_dirty_dbit_note(struct pgm_vm *vm, pgm_gpa_t gpa);

/* ---- nested_large.c: large pages, split, merge, install ---- */
/* Split the large leaf at entry @idx of @t into a table of equivalent entries. */
int pgm_nested_split(struct pgm_vm *vm, struct nested_table *t, unsigned idx);
/* Install the mapping for a fault at @gpa (largest allowed page). VM lock held. */
int pgm_nested_install(struct pgm_vm *vm, pgm_gpa_t gpa, uint32_t access,
                       const struct nested_target *tgt);
/* May [win, win + span(level)) be one leaf? Its HPA in @hpa. VM lock held. */
bool pgm_nested_window_ok(struct pgm_vm *vm, pgm_gpa_t win, unsigned level, pgm_hpa_t *hpa);
/* Re-merge the windows around @gpa into large leaves where allowed. */
void pgm_nested_try_merge(struct pgm_vm *vm, pgm_gpa_t gpa);

/* ---- nested_sync.c: reflecting physical changes ---- */
/* The state of page @gfn changed: update its leaf in place (VM lock held). */
void pgm_nested_gfn_changed(struct pgm_vm *vm, uint64_t gfn);
/* Remove every entry in [gpa, gpa + size) and flush now (VM lock held). */
void pgm_nested_zap_range(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);
/* D-bit dirty log: split large leaves in the range and clear D (VM lock held). */
void pgm_nested_dirty_start(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size);
/* Harvest and clear D bits of [gpa, gpa + size) into @bitmap (OR). VM lock held. */
void pgm_nested_dirty_harvest(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size,
                              uint64_t *bitmap);
/* Dirty logs use EPT D bits on this VM. */
bool pgm_nested_dbit_mode(const struct pgm_vm *vm);

/* ---- nested_audit.c ---- */
/* Laws 2 and 3 over the tree (VM lock held). 0, or 1 with @msg filled. */
int pgm_nested_audit(struct pgm_vm *vm, char *msg, size_t len);

#endif /* PGM_SRC_NESTED_NESTED_H */
