/* SPDX-License-Identifier: MIT */
/*
 * Keeping the nested table coherent with the physical map and the handlers:
 * per-page updates in place (page allocated, handler state changed, ROM
 * view switched), range removal, and the D-bit side of dirty logging.
 * Every function here runs under the VM lock; the flushes they request are
 * issued by pgm_vm_unlock() (src/nested/nested.h), except range removal,
 * which flushes before the range's host pages are freed.
 */
#include <errno.h>

#include "src/nested/nested.h"
#include "src/vm.h"

bool
pgm_nested_dbit_mode(const struct pgm_vm *vm)
{
    return vm->nested && vm->nested->ad;
}

/* Same entry apart from the A/D bits the hardware sets? */
static bool
same_but_ad(const struct pgm_nested *n, uint64_t a, uint64_t b)
{
    uint64_t ad = n->format == PGM_PAGING_EPT ? (PGM_EPT_A | PGM_EPT_D) : (PGM_NPT_A | PGM_NPT_D);
    return ((a ^ b) & ~ad) == 0;
}

void
pgm_nested_gfn_changed(struct pgm_vm *vm, uint64_t gfn)
{
    struct pgm_nested *n = vm->nested;
    if (!n)
        return;
    pgm_gpa_t gpa = gfn << PGM_PAGE_SHIFT;
    if (!pgm_nested_reaches(n, gpa))
        return; /* RAM the nested walk cannot reach has no entry (and must not alias one) */
    unsigned level;
    struct nested_table *t;
    uint64_t *slot = pgm_nested_slot(n, gpa, &level, &t);
    uint64_t old = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (pgm_nested_kind(n, level, old) == NE_NONE)
        return; /* nothing mapped: the next fault sees the new state */
    struct nested_target tgt;
    pgm_nested_target(vm, gpa, &tgt);
    if (level > 1) {
        pgm_gpa_t win = gpa & ~(pgm_nested_span(level) - 1);
        pgm_hpa_t hpa;
        if (tgt.kind == NT_MAP && tgt.plain_ram && pgm_nested_window_ok(vm, win, level, &hpa) &&
            hpa == pgm_nested_addr(old))
            return; /* the large leaf still says exactly this */
        /* A handler (or a D-bit log, or a remap) inside the large page: split it. */
        if (pgm_nested_table_for(vm, gpa, 1, &t) < 0) {
            pgm_nested_set(vm, slot, level, win, 0); /* no memory: drop the whole leaf */
            return;
        }
        slot = &t->ent[pgm_nested_index(gpa, 1)];
        old = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    }
    uint64_t e = 0;
    if (tgt.kind == NT_MARKER) {
        e = pgm_nested_make_marker(n);
    } else if (tgt.kind == NT_MAP) {
        bool dirty = !pgm_dirty_dbit_overlaps(vm, gpa, PGM_PAGE_SIZE);
        if (pgm_nested_make_leaf(n, 1, tgt.hpa, tgt.rights, dirty, &e) < 0)
            e = 0;
    }
    if (!same_but_ad(n, old, e))
        pgm_nested_set(vm, slot, 1, gpa, e);
    if (tgt.kind == NT_MAP && tgt.plain_ram)
        pgm_nested_try_merge(vm, gpa);
}

static void
zap_in(struct pgm_vm *vm, struct nested_table *t, pgm_gpa_t start, pgm_gpa_t end)
{
    struct pgm_nested *n = vm->nested;
    uint64_t span = pgm_nested_span(t->level);
    for (unsigned idx = 0; idx < NESTED_ENTRIES; idx++) {
        pgm_gpa_t eb = t->base + idx * span, ee = eb + span;
        if (ee <= start || eb >= end)
            continue;
        enum nested_kind k = pgm_nested_kind(n, t->level, __atomic_load_n(&t->ent[idx],
                                                                          __ATOMIC_ACQUIRE));
        if (k == NE_NONE)
            continue;
        bool full = start <= eb && ee <= end;
        if (k == NE_TABLE) {
            if (full)
                pgm_nested_drop_subtree(vm, t, idx);
            else
                zap_in(vm, t->child[idx], start, end);
        } else if (full || t->level == 1 || pgm_nested_split(vm, t, idx) < 0) {
            pgm_nested_set(vm, &t->ent[idx], t->level, eb, 0);
        } else {
            zap_in(vm, t->child[idx], start, end);
        }
    }
}

void
pgm_nested_zap_range(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    if (!vm->nested || !size)
        return;
    zap_in(vm, vm->nested->root, gpa, gpa + size);
    /* The range's host pages are freed next: flush before that, not at unlock. */
    pgm_nested_commit(vm);
}

/* Apply @fn to every 4 KiB leaf in [start, end), splitting large leaves first. */
struct dvisit {
    pgm_gpa_t start, end;
    uint64_t *bitmap; /* harvest: bit per page from `start`; NULL: start (clear D only) */
    bool cleared;
};

static void
dirty_in(struct pgm_vm *vm, struct nested_table *t, struct dvisit *v)
{
    struct pgm_nested *n = vm->nested;
    uint64_t span = pgm_nested_span(t->level);
    for (unsigned idx = 0; idx < NESTED_ENTRIES; idx++) {
        pgm_gpa_t eb = t->base + idx * span, ee = eb + span;
        if (ee <= v->start || eb >= v->end)
            continue;
        uint64_t *slot = &t->ent[idx];
        enum nested_kind k = pgm_nested_kind(n, t->level, __atomic_load_n(slot, __ATOMIC_ACQUIRE));
        if (k == NE_TABLE) {
            dirty_in(vm, t->child[idx], v);
        } else if (k == NE_LEAF && t->level > 1) {
            /* Per-page D bits need 4 KiB leaves; a large leaf counts as all written. */
            if (v->bitmap && (__atomic_load_n(slot, __ATOMIC_ACQUIRE) & PGM_EPT_D))
                for (pgm_gpa_t p = eb < v->start ? v->start : eb; p < ee && p < v->end;
                     p += PGM_PAGE_SIZE) {
                    uint64_t i = (p - v->start) >> PGM_PAGE_SHIFT;
                    v->bitmap[i / 64] |= 1ull << (i % 64);
                }
            if (pgm_nested_split(vm, t, idx) == 0)
                dirty_in(vm, t->child[idx], v);
            else
                pgm_nested_set(vm, slot, t->level, eb, 0);
        } else if (k == NE_LEAF) {
            uint64_t was = __atomic_fetch_and(slot, ~PGM_EPT_D, __ATOMIC_ACQ_REL);
            if (was & PGM_EPT_D) {
                v->cleared = true;
                if (v->bitmap) {
                    uint64_t i = (eb - v->start) >> PGM_PAGE_SHIFT;
                    v->bitmap[i / 64] |= 1ull << (i % 64);
                }
            }
        }
    }
}

void
pgm_nested_dirty_start(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    struct dvisit v = { gpa, gpa + size, NULL, false };
    dirty_in(vm, vm->nested->root, &v);
    /* A cached translation with D = 1 would let writes go unrecorded. */
    if (v.cleared)
        pgm_nested_request_flush(vm->nested, gpa, 2);
}

void
pgm_nested_dirty_harvest(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size, uint64_t *bitmap)
{
    struct dvisit v = { gpa, gpa + size, bitmap, false };
    dirty_in(vm, vm->nested->root, &v);
    if (v.cleared)
        pgm_nested_request_flush(vm->nested, gpa, 2);
}
