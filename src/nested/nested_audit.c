/* SPDX-License-Identifier: MIT */
/*
 * pgm_audit over the nested table (DESIGN.md section 2, laws 2 and 3):
 *
 * - every entry is what the hardware would take it for: tables classify as
 *   tables and leaves as leaves under the vendor's own classifier
 *   (pgm_vtx_ept_classify / pgm_svm_npt_classify), and the only other
 *   present entries are libpgm's MMIO markers, at level 1, on GPAs inside a
 *   range (a marker maps nothing; after temp-off of an ALL handler it stays
 *   until the next fault there widens it, like any lazily widened leaf);
 * - a table entry points at the child table the engine keeps for it, one
 *   level down, covering the right GPAs; the count of table pages matches;
 * - law 2, isolation: a 4 KiB leaf maps the host page currently backing its
 *   GPA (the page descriptor's HPA, or the shared zero page for RAM never
 *   written) with rights no wider than the page's state allows (no write to
 *   the zero page, ROM or a WRITE-handler page; nothing on ALL / MMIO /
 *   unassigned); a large leaf covers a window that may be one leaf (see
 *   nested_large.c), maps the block at that window, and every page in it
 *   is materialised;
 * - law 3, coherence: no narrowed entry is waiting for a flush (every
 *   operation issues its flush before it drops the VM lock), and the table
 *   pages of the tree never appear as leaf targets (implied by the above:
 *   a leaf's target is the page backing its GPA).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "src/handlers/registry.h"
#include "src/nested/nested.h"
#include "src/vm.h"

struct naudit {
    struct pgm_vm *vm;
    char *msg;
    size_t len;
    uint64_t tables;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
nfail(struct naudit *a, pgm_gpa_t gpa, const char *fmt, ...)
{
    if (a->msg && a->len) {
        int k = snprintf(a->msg, a->len, "nested gpa %#" PRIx64 ": ", gpa);
        if (k > 0 && (size_t)k < a->len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(a->msg + k, a->len - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return 1;
}

/* The vendor classifier's verdict: 0 not present, 1 table, 2 leaf, 3 refused. */
static int
hw_class(const struct pgm_nested *n, unsigned level, uint64_t e)
{
    if (n->format == PGM_PAGING_EPT) {
        int c = pgm_vtx_ept_classify(&n->ept, level, e, NULL);
        return c == PGM_EPT_NOT_PRESENT ? 0 : c == PGM_EPT_TABLE ? 1 : c == PGM_EPT_LEAF ? 2 : 3;
    }
    bool no_user = false;
    int c = pgm_svm_npt_classify(&n->npt, level, e, &no_user);
    if (no_user)
        return 3;
    return c == PGM_NPT_NOT_PRESENT ? 0 : c == PGM_NPT_TABLE ? 1 : c == PGM_NPT_LEAF ? 2 : 3;
}

static int
check_leaf4k(struct naudit *a, pgm_gpa_t gpa, uint64_t e)
{
    struct pgm_nested *n = a->vm->nested;
    struct nested_target t;
    pgm_nested_target(a->vm, gpa, &t);
    if (t.kind != NT_MAP)
        return nfail(a, gpa, "leaf %#" PRIx64 " on a page that must not be mapped", e);
    pgm_hpa_t hpa = pgm_nested_addr(e);
    if (hpa != t.hpa)
        return nfail(a, gpa, "leaf maps hpa %#" PRIx64 ", the page is at %#" PRIx64, hpa, t.hpa);
    uint32_t r = pgm_nested_rights(n, e);
    if (r & ~t.rights)
        return nfail(a, gpa, "leaf rights %#x wider than the page allows (%#x)", r, t.rights);
    return 0;
}

static int
check_large(struct naudit *a, pgm_gpa_t win, unsigned level, uint64_t e)
{
    pgm_hpa_t hpa;
    if (!pgm_nested_window_ok(a->vm, win, level, &hpa))
        return nfail(a, win, "level-%u leaf over a window that may not be one leaf", level);
    if (pgm_nested_addr(e) != hpa)
        return nfail(a, win, "large leaf maps %#" PRIx64 ", the block is at %#" PRIx64,
                     pgm_nested_addr(e), hpa);
    const struct pgm_phys_range *r = pgm_phys_map_find(a->vm->phys.map, win);
    uint64_t first = (win - r->start) >> PGM_PAGE_SHIFT;
    for (uint64_t i = 0; i < pgm_nested_span(level) >> PGM_PAGE_SHIFT; i++)
        if (!r->pages[first + i].host)
            return nfail(a, win + (i << PGM_PAGE_SHIFT), "page under a large leaf not allocated");
    return 0;
}

static int
check_table(struct naudit *a, const struct nested_table *t)
{
    struct pgm_nested *n = a->vm->nested;
    a->tables++;
    uint64_t span = pgm_nested_span(t->level);
    for (unsigned i = 0; i < NESTED_ENTRIES; i++) {
        uint64_t e = __atomic_load_n(&t->ent[i], __ATOMIC_ACQUIRE);
        pgm_gpa_t gpa = t->base + i * span;
        enum nested_kind k = pgm_nested_kind(n, t->level, e);
        int hw = hw_class(n, t->level, e);
        int rc = 0;
        switch (k) {
        case NE_NONE:
            if (t->level > 1 && t->child[i])
                return nfail(a, gpa, "empty entry keeps a child table");
            break;
        case NE_MARKER: {
            /*
             * A marker maps nothing, so it is never too wide; it may outlive
             * an ALL handler turned off (widened lazily, like any leaf). But
             * it must sit on a page of some range: removal zaps its range.
             */
            struct nested_target tg;
            pgm_nested_target(a->vm, gpa, &tg);
            if (t->level != 1 || !tg.r)
                return nfail(a, gpa, "MMIO marker at level %u where none belongs", t->level);
            if (hw != 3)
                return nfail(a, gpa, "MMIO marker %#" PRIx64 " would not exit", e);
            break;
        }
        case NE_TABLE: {
            const struct nested_table *c = t->child[i];
            if (hw != 1)
                return nfail(a, gpa, "table entry %#" PRIx64 " not a table to the CPU", e);
            if (!c || c->hpa != pgm_nested_addr(e) || c->level + 1 != t->level || c->base != gpa)
                return nfail(a, gpa, "table entry %#" PRIx64 " and child table disagree", e);
            rc = check_table(a, c);
            break;
        }
        case NE_LEAF:
            if (hw != 2)
                return nfail(a, gpa, "leaf %#" PRIx64 " not a leaf to the CPU (level %u)", e,
                             t->level);
            if (t->level > 1 && t->child[i])
                return nfail(a, gpa, "large leaf keeps a child table");
            rc = t->level == 1 ? check_leaf4k(a, gpa, e) : check_large(a, gpa, t->level, e);
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

int
pgm_nested_audit(struct pgm_vm *vm, char *msg, size_t len)
{
    struct pgm_nested *n = vm->nested;
    struct naudit a = { vm, msg, len, 0 };
    if (n->flush_pending || n->downgrades != n->downgrades_flushed)
        return nfail(&a, n->flush_gpa, "%" PRIu64 " narrowed entries without a flush request",
                     n->downgrades - n->downgrades_flushed);
    int rc = check_table(&a, n->root);
    if (rc == 0 && a.tables != n->c.table_pages)
        rc = nfail(&a, 0, "%" PRIu64 " table pages in the tree, %" PRIu64 " counted", a.tables,
                   n->c.table_pages);
    return rc;
}
