/* SPDX-License-Identifier: MIT */
/*
 * Nested large pages: when a 2 MiB / 1 GiB GPA window may be one leaf, the
 * fault-time install (largest page first), splitting a large leaf into an
 * equivalent table, and re-merging a window into one leaf.
 *
 * A window may be one leaf when (all checked under the VM lock):
 * - the embedder enabled that size (PGM_NESTED_LARGE_2M / _1G) and the
 *   format supports it (EPT caps, NPT gbpages);
 * - it lies inside one RAM range backed by a RAM block (host-contiguous)
 *   whose HPA for the window is aligned to the window size;
 * - no handler overlaps it (so every page's handler state is NONE) and no
 *   D-bit dirty log covers it (those need per-page D bits).
 * Installing such a leaf materialises every page of the window (for a block
 * that is bookkeeping only: the block already backs them), since the guest
 * can then write any of them without libpgm seeing it.
 */
#include <errno.h>

#include "src/handlers/registry.h"
#include "src/nested/nested.h"
#include "src/vm.h"

static bool
window_ok(struct pgm_vm *vm, pgm_gpa_t win, unsigned level, struct pgm_phys_range **rr,
          pgm_hpa_t *hpa)
{
    struct pgm_nested *n = vm->nested;
    if (!(n->large_levels & (1u << level)) || level >= n->levels)
        return false;
    uint64_t size = pgm_nested_span(level);
    struct pgm_phys_range *r = pgm_phys_map_find(vm->phys.map, win);
    if (!r || r->kind != PGM_PHYS_RAM || !r->block || r->size < size ||
        win - r->start > r->size - size)
        return false;
    pgm_hpa_t h = r->block_hpa + (win - r->start);
    if (h & (size - 1))
        return false;
    if (pgm_handlers_overlap(vm, win, size) || pgm_dirty_dbit_overlaps(vm, win, size))
        return false;
    *rr = r;
    *hpa = h;
    return true;
}

bool
pgm_nested_window_ok(struct pgm_vm *vm, pgm_gpa_t win, unsigned level, pgm_hpa_t *hpa)
{
    struct pgm_phys_range *r;
    return window_ok(vm, win, level, &r, hpa);
}

int
pgm_nested_split(struct pgm_vm *vm, struct nested_table *t, unsigned idx)
{
    struct pgm_nested *n = vm->nested;
    uint64_t e = __atomic_load_n(&t->ent[idx], __ATOMIC_ACQUIRE);
    unsigned sub = t->level - 1;
    pgm_gpa_t base = t->base + idx * pgm_nested_span(t->level);
    struct nested_table *c = pgm_nested_table_alloc(vm, sub, base);
    if (!c)
        return -ENOMEM;
    uint64_t link;
    if (pgm_nested_make_table(n, t->level, c->hpa, &link) < 0) {
        /* Cannot happen with an HPA the backend gave; treat as no memory. */
        t->child[idx] = c;
        pgm_nested_drop_subtree(vm, t, idx);
        return -ENOMEM;
    }
    /*
     * Equivalent entries: same rights, memory type and A/D, frames stepping
     * through the large page. Bit 7 stays for 2 MiB children (PS) and is
     * cleared for PTEs (where NPT reads it as PAT; our leaves use PAT 0).
     */
    uint64_t attrs = e & ~PGM_EPT_ADDR_MASK;
    if (sub == 1)
        attrs &= ~PGM_EPT_PS;
    pgm_hpa_t frame = pgm_nested_addr(e);
    for (unsigned i = 0; i < NESTED_ENTRIES; i++)
        c->ent[i] = attrs | (frame + i * pgm_nested_span(sub));
    t->child[idx] = c;
    __atomic_store_n(&t->ent[idx], link, __ATOMIC_RELEASE);
    n->c.splits++;
    /* The large translation may be cached; what follows narrows part of it. */
    pgm_nested_request_flush(n, base, t->level);
    return 0;
}

/* Map the window [win, win + span(level)) with one leaf at @level. */
static int
install_large(struct pgm_vm *vm, pgm_gpa_t win, unsigned level, struct pgm_phys_range *r,
              pgm_hpa_t hpa)
{
    struct pgm_nested *n = vm->nested;
    struct nested_table *t;
    int rc = pgm_nested_table_for(vm, win, level, &t);
    if (rc < 0)
        return rc;
    uint64_t e;
    rc = pgm_nested_make_leaf(n, level, hpa, NR_ALL, true, &e);
    if (rc < 0)
        return -ENOMEM;
    uint64_t size = pgm_nested_span(level);
    pgm_phys_materialize_block_span(vm, r, (win - r->start) >> PGM_PAGE_SHIFT,
                                    size >> PGM_PAGE_SHIFT);
    unsigned idx = pgm_nested_index(win, level);
    if (pgm_nested_kind(n, level, __atomic_load_n(&t->ent[idx], __ATOMIC_ACQUIRE)) == NE_TABLE) {
        pgm_nested_drop_subtree(vm, t, idx);
        n->c.merges++;
    }
    pgm_nested_set(vm, &t->ent[idx], level, win, e);
    n->c.large_maps++;
    return 0;
}

int
pgm_nested_install(struct pgm_vm *vm, pgm_gpa_t gpa, uint32_t access,
                   const struct nested_target *tgt)
{
    struct pgm_nested *n = vm->nested;
    if (tgt->kind == NT_NONE)
        return 0;
    /* Large only for plain RAM that is, or is about to be, written. */
    if (tgt->kind == NT_MAP && tgt->plain_ram && n->large_levels &&
        ((access & PGM_ACCESS_WRITE) || !tgt->materialize)) {
        for (unsigned level = 3; level >= 2; level--) {
            pgm_gpa_t win = gpa & ~(pgm_nested_span(level) - 1);
            struct pgm_phys_range *r;
            pgm_hpa_t hpa;
            if (window_ok(vm, win, level, &r, &hpa))
                return install_large(vm, win, level, r, hpa);
        }
    }
    struct nested_table *t;
    int rc = pgm_nested_table_for(vm, gpa, 1, &t);
    if (rc < 0)
        return rc;
    uint64_t e;
    if (tgt->kind == NT_MARKER) {
        e = pgm_nested_make_marker(n);
    } else {
        bool dirty = !pgm_dirty_dbit_overlaps(vm, gpa & PGM_PAGE_MASK, PGM_PAGE_SIZE);
        if (pgm_nested_make_leaf(n, 1, tgt->hpa, tgt->rights, dirty, &e) < 0)
            return -ENOMEM; /* an HPA beyond the host MAXPHYADDR the embedder gave */
    }
    pgm_nested_set(vm, &t->ent[pgm_nested_index(gpa, 1)], 1, gpa & PGM_PAGE_MASK, e);
    return 0;
}

void
pgm_nested_try_merge(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    struct pgm_nested *n = vm->nested;
    if (!n->large_levels)
        return;
    for (unsigned level = 3; level >= 2; level--) {
        pgm_gpa_t win = gpa & ~(pgm_nested_span(level) - 1);
        struct pgm_phys_range *r;
        pgm_hpa_t hpa;
        if (!window_ok(vm, win, level, &r, &hpa))
            continue;
        /* Only a window that is a table now merges (never allocate here). */
        struct nested_table *t = n->root;
        while (t->level > level) {
            unsigned idx = pgm_nested_index(win, t->level);
            if (pgm_nested_kind(n, t->level, __atomic_load_n(&t->ent[idx], __ATOMIC_ACQUIRE)) !=
                NE_TABLE)
                break;
            t = t->child[idx];
        }
        if (t->level != level)
            continue;
        unsigned idx = pgm_nested_index(win, level);
        if (pgm_nested_kind(n, level, __atomic_load_n(&t->ent[idx], __ATOMIC_ACQUIRE)) == NE_TABLE)
            (void)install_large(vm, win, level, r, hpa); /* needs no allocation: cannot fail */
        return;
    }
}
