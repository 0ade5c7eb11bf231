/* SPDX-License-Identifier: MIT */
/*
 * Reverse maps of the shadow pool (internal; docs/pool.md).
 *
 * Two questions the shadow engine must answer fast:
 *   - which shadow leaf entries map guest page gfn? (to write-protect a gfn
 *     that became a shadowed table, or to drop mappings of a removed page);
 *   - which shadow entries point at shadow page sp? (to unlink sp before it
 *     is freed, or to propagate "unsync" upwards).
 * Both answers are lists of references (shadow page, entry index), kept in
 * a compact list: no memory for zero or one reference (it is inline in the
 * list head), then a chain of fixed-size descriptors. Most guest pages are
 * mapped once and most shadow tables have one parent, so most lists never
 * allocate.
 *
 * Memory comes from the allocator hooks given at init. Every allocation
 * failure returns -ENOMEM with the structure exactly as before the call;
 * removal never allocates and so never fails for lack of memory. A fault
 * path that must not fail half-way calls pgm_rmap_reserve() first.
 *
 * Not thread-safe: callers hold the VM lock, as for the pool.
 */
#ifndef PGM_SRC_POOL_RMAP_H
#define PGM_SRC_POOL_RMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "pgm/vm.h"

struct pgm_shadow_page;

/*
 * Entries per shadow table are 512 (8-byte formats) or 1024 (32-bit
 * format), so an entry index is below this limit.
 */
#define PGM_RMAP_INDEX_LIMIT 1024u

/* One reference: entry @index of shadow page @sp. */
struct pgm_rmap_ref {
    struct pgm_shadow_page *sp;
    uint32_t index;
};

/* References per descriptor: 7 x 16 bytes + 16 bytes of header = 128 bytes. */
#define PGM_RMAP_DESC_REFS 7

struct pgm_rmap_desc {
    struct pgm_rmap_desc *next;
    uint32_t used;                               /* 1..PGM_RMAP_DESC_REFS */
    struct pgm_rmap_ref refs[PGM_RMAP_DESC_REFS];
};

/*
 * A list of references, in one of three shapes chosen by `count`:
 *   count == 0: empty; nothing else is meaningful.
 *   count == 1: the reference is inline (one_sp, one_index); no descriptor.
 *   count >= 2: every reference is in the chain `descs`. The first
 *               descriptor may be partly used, every later one is full, so
 *               add and remove work at the head and count == the sum of
 *               `used`. A list going back to one reference returns to the
 *               inline shape (its last descriptor is freed).
 * Order of references is unspecified. Zero-initialised is empty.
 */
struct pgm_rmap_list {
    uint32_t count;
    uint32_t one_index;
    union {
        struct pgm_shadow_page *one_sp;   /* count == 1 */
        struct pgm_rmap_desc *descs;      /* count >= 2 */
    };
};

/* The gfn map: one node per gfn with at least one reference. */
struct pgm_rmap_gfn_node {
    struct pgm_rmap_gfn_node *next;   /* hash chain */
    uint64_t gfn;
    struct pgm_rmap_list list;        /* never empty while the node exists */
};

/* Spares kept beyond a reserve, so add/remove churn does not hit the allocator. */
#define PGM_RMAP_SPARE_MAX 64u

struct pgm_rmap {
    struct pgm_allocator alloc;
    /* gfn -> list. Power-of-two chained hash, doubled when the average chain
     * exceeds 2; a failed doubling keeps the old table (lookups stay correct,
     * only slower), so growth never makes an operation fail. */
    struct pgm_rmap_gfn_node **buckets;
    uint32_t bucket_mask;
    uint64_t gfn_count;               /* nodes in the gfn map */
    uint64_t gfn_refs;                /* references in all gfn lists */
    /* Spare memory, filled by pgm_rmap_reserve and by frees. */
    struct pgm_rmap_desc *spare_descs;    /* chained through `next` */
    struct pgm_rmap_gfn_node *spare_nodes;/* chained through `next` */
    uint32_t spare_desc_count, spare_node_count;
    uint64_t descs_live;              /* descriptors in lists (gfn and parent) */
    bool assert_on_bug;               /* see src/pool/bug.h */
};

/*
 * Initialise @rmap with allocator @alloc (copied; NULL hooks mean malloc)
 * and a gfn table sized for about @expected_gfns gfns.
 * @return 0 or -ENOMEM (nothing to clean up)
 */
int pgm_rmap_init(struct pgm_rmap *rmap, const struct pgm_allocator *alloc, uint64_t expected_gfns);

/*
 * Free the gfn map and the spares. Lists stored elsewhere (the parent lists
 * inside shadow pages) belong to their owners: clear them first with
 * pgm_rmap_list_clear, or their descriptors leak.
 */
void pgm_rmap_fini(struct pgm_rmap *rmap);

/*
 * Make sure the next @n adds (gfn or parent, in any mix) cannot fail with
 * -ENOMEM: each add needs at most one descriptor or one gfn node, so keep
 * @n of each spare. @return 0, or -ENOMEM (the references are unchanged;
 * spares obtained so far are kept).
 */
int pgm_rmap_reserve(struct pgm_rmap *rmap, uint32_t n);

/* ---- Lists ------------------------------------------------------------- */

static inline uint32_t
pgm_rmap_list_count(const struct pgm_rmap_list *list)
{
    return list ? list->count : 0;
}

/*
 * Add reference (@sp, @index) to @list. Adding a reference already present
 * is a caller bug that is not detected (the audit finds it).
 * @return 0; -EINVAL (NULL @sp, @index >= PGM_RMAP_INDEX_LIMIT); -ENOMEM
 */
int pgm_rmap_list_add(struct pgm_rmap *rmap, struct pgm_rmap_list *list,
                      struct pgm_shadow_page *sp, uint32_t index);

/* Remove (@sp, @index). @return 0, or -ENOENT (a bug: not in the list). */
int pgm_rmap_list_remove(struct pgm_rmap *rmap, struct pgm_rmap_list *list,
                         struct pgm_shadow_page *sp, uint32_t index);

bool pgm_rmap_list_contains(const struct pgm_rmap_list *list,
                            const struct pgm_shadow_page *sp, uint32_t index);

/* Some reference of @list in @out; false if empty. For remove-all loops. */
bool pgm_rmap_list_first(const struct pgm_rmap_list *list, struct pgm_rmap_ref *out);

/* Drop every reference of @list (teardown; the entries are not touched). */
void pgm_rmap_list_clear(struct pgm_rmap *rmap, struct pgm_rmap_list *list);

/*
 * Iteration. The list must not change while an iterator is live; to remove
 * while visiting, loop on pgm_rmap_list_first / pgm_rmap_gfn_first instead.
 */
struct pgm_rmap_iter {
    const struct pgm_rmap_list *list;
    const struct pgm_rmap_desc *desc;
    uint32_t pos;
};

void pgm_rmap_iter_init(struct pgm_rmap_iter *it, const struct pgm_rmap_list *list);
bool pgm_rmap_iter_next(struct pgm_rmap_iter *it, struct pgm_rmap_ref *out);

/* for (each reference @ref of @list) with iterator @it; NULL list is empty. */
#define pgm_rmap_for_each(list, it, ref) \
    for (pgm_rmap_iter_init(&(it), (list)); pgm_rmap_iter_next(&(it), &(ref));)

/* ---- gfn -> shadow leaf entries mapping it ---------------------------- */

/* @return as pgm_rmap_list_add. */
int pgm_rmap_gfn_add(struct pgm_rmap *rmap, uint64_t gfn, struct pgm_shadow_page *sp,
                     uint32_t index);

/* @return 0, or -ENOENT (a bug). The gfn's node goes when its list empties. */
int pgm_rmap_gfn_remove(struct pgm_rmap *rmap, uint64_t gfn, struct pgm_shadow_page *sp,
                        uint32_t index);

/* The list of @gfn, or NULL if no entry maps it. Valid until the next change. */
const struct pgm_rmap_list *pgm_rmap_gfn_list(const struct pgm_rmap *rmap, uint64_t gfn);

static inline uint32_t
pgm_rmap_gfn_count(const struct pgm_rmap *rmap, uint64_t gfn)
{
    return pgm_rmap_list_count(pgm_rmap_gfn_list(rmap, gfn));
}

/* Some reference mapping @gfn in @out; false if none. */
static inline bool
pgm_rmap_gfn_first(const struct pgm_rmap *rmap, uint64_t gfn, struct pgm_rmap_ref *out)
{
    return pgm_rmap_list_first(pgm_rmap_gfn_list(rmap, gfn), out);
}

/* ---- shadow page -> parent entries pointing at it ---------------------- */

/* Entry @index of @parent points at @child. @return as pgm_rmap_list_add. */
int pgm_rmap_parent_add(struct pgm_rmap *rmap, struct pgm_shadow_page *child,
                        struct pgm_shadow_page *parent, uint32_t index);

/* @return 0, or -ENOENT (a bug). */
int pgm_rmap_parent_remove(struct pgm_rmap *rmap, struct pgm_shadow_page *child,
                           struct pgm_shadow_page *parent, uint32_t index);

/* The parents of @child (iterate with pgm_rmap_for_each). */
const struct pgm_rmap_list *pgm_rmap_parents(const struct pgm_shadow_page *child);

/* ---- Checking ---------------------------------------------------------- */

/*
 * Check the shape invariants of @list (see struct pgm_rmap_list).
 * @return 0, or -EINVAL.
 */
int pgm_rmap_list_check(const struct pgm_rmap_list *list);

/*
 * Check the whole gfn map: every list's shape, every node on its gfn's
 * chain and non-empty, the counters. O(references). @return 0, or -EINVAL.
 */
int pgm_rmap_check(const struct pgm_rmap *rmap);

#endif /* PGM_SRC_POOL_RMAP_H */
