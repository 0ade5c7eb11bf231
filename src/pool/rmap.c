/* SPDX-License-Identifier: MIT */
/*
 * Reverse maps: compact reference lists, the gfn map and parent lists.
 * Shapes and invariants are described in src/pool/rmap.h.
 */
#include <errno.h>
#include <string.h>

#include "src/alloc.h"
#include "src/pool/bug.h"
#include "src/pool/pool.h"
#include "src/pool/rmap.h"

#define RMAP_MIN_BUCKETS 64u
#define RMAP_MAX_BUCKETS (1u << 24)
/* The gfn table doubles when gfn_count exceeds this many times the buckets. */
#define RMAP_MAX_LOAD 2u

/* ---- Spare memory -------------------------------------------------------- */

static struct pgm_rmap_desc *
desc_get(struct pgm_rmap *rmap)
{
    struct pgm_rmap_desc *d = rmap->spare_descs;
    if (d) {
        rmap->spare_descs = d->next;
        rmap->spare_desc_count--;
    } else {
        d = pgm_alloc(&rmap->alloc, sizeof(*d));
        if (!d)
            return NULL;
    }
    d->next = NULL;
    d->used = 0;
    rmap->descs_live++;
    return d;
}

static void
desc_put(struct pgm_rmap *rmap, struct pgm_rmap_desc *d)
{
    rmap->descs_live--;
    if (rmap->spare_desc_count < PGM_RMAP_SPARE_MAX) {
        d->next = rmap->spare_descs;
        rmap->spare_descs = d;
        rmap->spare_desc_count++;
    } else {
        pgm_free(&rmap->alloc, d);
    }
}

static struct pgm_rmap_gfn_node *
node_get(struct pgm_rmap *rmap)
{
    struct pgm_rmap_gfn_node *n = rmap->spare_nodes;
    if (n) {
        rmap->spare_nodes = n->next;
        rmap->spare_node_count--;
    } else {
        n = pgm_alloc(&rmap->alloc, sizeof(*n));
        if (!n)
            return NULL;
    }
    memset(n, 0, sizeof(*n));
    return n;
}

static void
node_put(struct pgm_rmap *rmap, struct pgm_rmap_gfn_node *n)
{
    if (rmap->spare_node_count < PGM_RMAP_SPARE_MAX) {
        n->next = rmap->spare_nodes;
        rmap->spare_nodes = n;
        rmap->spare_node_count++;
    } else {
        pgm_free(&rmap->alloc, n);
    }
}

int
pgm_rmap_reserve(struct pgm_rmap *rmap, uint32_t n)
{
    /* Spares live on the same lists desc_put/node_put use, so they are
     * bounded by the largest reserve plus PGM_RMAP_SPARE_MAX. */
    while (rmap->spare_desc_count < n) {
        struct pgm_rmap_desc *d = pgm_alloc(&rmap->alloc, sizeof(*d));
        if (!d)
            return -ENOMEM;
        d->next = rmap->spare_descs;
        rmap->spare_descs = d;
        rmap->spare_desc_count++;
    }
    while (rmap->spare_node_count < n) {
        struct pgm_rmap_gfn_node *g = pgm_alloc(&rmap->alloc, sizeof(*g));
        if (!g)
            return -ENOMEM;
        g->next = rmap->spare_nodes;
        rmap->spare_nodes = g;
        rmap->spare_node_count++;
    }
    return 0;
}

/* ---- Lists --------------------------------------------------------------- */

int
pgm_rmap_list_add(struct pgm_rmap *rmap, struct pgm_rmap_list *list,
                  struct pgm_shadow_page *sp, uint32_t index)
{
    if (!sp || index >= PGM_RMAP_INDEX_LIMIT)
        return -EINVAL;
    if (list->count == 0) {
        list->one_sp = sp;
        list->one_index = index;
        list->count = 1;
        return 0;
    }
    if (list->count == 1) {
        /* Inline -> chain: one descriptor holds the old and the new reference. */
        struct pgm_rmap_desc *d = desc_get(rmap);
        if (!d)
            return -ENOMEM;
        d->refs[0] = (struct pgm_rmap_ref){ list->one_sp, list->one_index };
        d->refs[1] = (struct pgm_rmap_ref){ sp, index };
        d->used = 2;
        list->descs = d;
        list->one_index = 0;
        list->count = 2;
        return 0;
    }
    struct pgm_rmap_desc *head = list->descs;
    if (head->used == PGM_RMAP_DESC_REFS) {
        /* Head full: a new partial head in front keeps "only the head is partial". */
        struct pgm_rmap_desc *d = desc_get(rmap);
        if (!d)
            return -ENOMEM;
        d->next = head;
        list->descs = d;
        head = d;
    }
    head->refs[head->used++] = (struct pgm_rmap_ref){ sp, index };
    list->count++;
    return 0;
}

/* Where (@sp, @index) sits in a chained list; false if absent. */
static bool
chain_find(const struct pgm_rmap_list *list, const struct pgm_shadow_page *sp, uint32_t index,
           struct pgm_rmap_desc **desc, uint32_t *pos)
{
    for (struct pgm_rmap_desc *d = list->descs; d; d = d->next) {
        for (uint32_t i = 0; i < d->used; i++) {
            if (d->refs[i].sp == sp && d->refs[i].index == index) {
                *desc = d;
                *pos = i;
                return true;
            }
        }
    }
    return false;
}

int
pgm_rmap_list_remove(struct pgm_rmap *rmap, struct pgm_rmap_list *list,
                     struct pgm_shadow_page *sp, uint32_t index)
{
    if (list->count == 1 && list->one_sp == sp && list->one_index == index) {
        memset(list, 0, sizeof(*list));
        return 0;
    }
    struct pgm_rmap_desc *d;
    uint32_t pos;
    if (list->count < 2 || !chain_find(list, sp, index, &d, &pos)) {
        PGM_POOL_BUG(rmap->assert_on_bug, "removing a reverse-map reference that is not there");
        return -ENOENT;
    }
    /* Fill the hole with the head's last reference: tails stay full. */
    struct pgm_rmap_desc *head = list->descs;
    d->refs[pos] = head->refs[--head->used];
    if (head->used == 0) {
        list->descs = head->next;
        desc_put(rmap, head);
    }
    list->count--;
    if (list->count == 1) {
        /* Back to inline: the one reference left is in the only descriptor. */
        struct pgm_rmap_desc *last = list->descs;
        list->one_sp = last->refs[0].sp;
        list->one_index = last->refs[0].index;
        desc_put(rmap, last);
    }
    return 0;
}

bool
pgm_rmap_list_contains(const struct pgm_rmap_list *list, const struct pgm_shadow_page *sp,
                       uint32_t index)
{
    if (!list || list->count == 0)
        return false;
    if (list->count == 1)
        return list->one_sp == sp && list->one_index == index;
    struct pgm_rmap_desc *d;
    uint32_t pos;
    return chain_find(list, sp, index, &d, &pos);
}

bool
pgm_rmap_list_first(const struct pgm_rmap_list *list, struct pgm_rmap_ref *out)
{
    if (!list || list->count == 0)
        return false;
    if (list->count == 1)
        *out = (struct pgm_rmap_ref){ list->one_sp, list->one_index };
    else
        *out = list->descs->refs[list->descs->used - 1];
    return true;
}

void
pgm_rmap_list_clear(struct pgm_rmap *rmap, struct pgm_rmap_list *list)
{
    if (list->count >= 2) {
        struct pgm_rmap_desc *d = list->descs;
        while (d) {
            struct pgm_rmap_desc *next = d->next;
            desc_put(rmap, d);
            d = next;
        }
    }
    memset(list, 0, sizeof(*list));
}

void
pgm_rmap_iter_init(struct pgm_rmap_iter *it, const struct pgm_rmap_list *list)
{
    it->list = list;
    it->desc = list && list->count >= 2 ? list->descs : NULL;
    it->pos = 0;
}

bool
pgm_rmap_iter_next(struct pgm_rmap_iter *it, struct pgm_rmap_ref *out)
{
    const struct pgm_rmap_list *list = it->list;
    if (!list || list->count == 0)
        return false;
    if (list->count == 1) {
        if (it->pos++ > 0)
            return false;
        *out = (struct pgm_rmap_ref){ list->one_sp, list->one_index };
        return true;
    }
    while (it->desc && it->pos >= it->desc->used) {
        it->desc = it->desc->next;
        it->pos = 0;
    }
    if (!it->desc)
        return false;
    *out = it->desc->refs[it->pos++];
    return true;
}

/* ---- The gfn map --------------------------------------------------------- */

static uint32_t
pow2_at_least(uint64_t n, uint32_t lo, uint32_t hi)
{
    uint32_t b = lo;
    while (b < n && b < hi)
        b <<= 1;
    return b;
}

int
pgm_rmap_init(struct pgm_rmap *rmap, const struct pgm_allocator *alloc, uint64_t expected_gfns)
{
    memset(rmap, 0, sizeof(*rmap));
    if (alloc)
        rmap->alloc = *alloc;
#ifndef NDEBUG
    rmap->assert_on_bug = true;
#endif
    uint32_t nb = pow2_at_least(expected_gfns, RMAP_MIN_BUCKETS, RMAP_MAX_BUCKETS);
    rmap->buckets = pgm_zalloc_array(&rmap->alloc, nb, sizeof(*rmap->buckets));
    if (!rmap->buckets)
        return -ENOMEM;
    rmap->bucket_mask = nb - 1;
    return 0;
}

void
pgm_rmap_fini(struct pgm_rmap *rmap)
{
    if (rmap->buckets) {
        for (uint32_t b = 0; b <= rmap->bucket_mask; b++) {
            struct pgm_rmap_gfn_node *n = rmap->buckets[b];
            while (n) {
                struct pgm_rmap_gfn_node *next = n->next;
                pgm_rmap_list_clear(rmap, &n->list);
                pgm_free(&rmap->alloc, n);
                n = next;
            }
        }
        pgm_free(&rmap->alloc, rmap->buckets);
        rmap->buckets = NULL;
    }
    while (rmap->spare_descs) {
        struct pgm_rmap_desc *next = rmap->spare_descs->next;
        pgm_free(&rmap->alloc, rmap->spare_descs);
        rmap->spare_descs = next;
    }
    while (rmap->spare_nodes) {
        struct pgm_rmap_gfn_node *next = rmap->spare_nodes->next;
        pgm_free(&rmap->alloc, rmap->spare_nodes);
        rmap->spare_nodes = next;
    }
    rmap->spare_desc_count = rmap->spare_node_count = 0;
    rmap->gfn_count = rmap->gfn_refs = 0;
}

static struct pgm_rmap_gfn_node **
gfn_slot(const struct pgm_rmap *rmap, uint64_t gfn)
{
    return &rmap->buckets[pgm_pool_gfn_hash(gfn) & rmap->bucket_mask];
}

/* The pointer that points at @gfn's node (or the chain's NULL end). */
static struct pgm_rmap_gfn_node **
gfn_find(const struct pgm_rmap *rmap, uint64_t gfn)
{
    struct pgm_rmap_gfn_node **pp = gfn_slot(rmap, gfn);
    while (*pp && (*pp)->gfn != gfn)
        pp = &(*pp)->next;
    return pp;
}

/* Double the table if it is loaded; on allocation failure keep the old one. */
static void
gfn_maybe_grow(struct pgm_rmap *rmap)
{
    uint64_t nb = (uint64_t)rmap->bucket_mask + 1;
    if (rmap->gfn_count <= nb * RMAP_MAX_LOAD || nb >= RMAP_MAX_BUCKETS)
        return;
    struct pgm_rmap_gfn_node **nt = pgm_zalloc_array(&rmap->alloc, (size_t)nb * 2, sizeof(*nt));
    if (!nt)
        return;
    uint32_t mask = (uint32_t)(nb * 2 - 1);
    for (uint64_t b = 0; b < nb; b++) {
        struct pgm_rmap_gfn_node *n = rmap->buckets[b];
        while (n) {
            struct pgm_rmap_gfn_node *next = n->next;
            struct pgm_rmap_gfn_node **slot = &nt[pgm_pool_gfn_hash(n->gfn) & mask];
            n->next = *slot;
            *slot = n;
            n = next;
        }
    }
    pgm_free(&rmap->alloc, rmap->buckets);
    rmap->buckets = nt;
    rmap->bucket_mask = mask;
}

int
pgm_rmap_gfn_add(struct pgm_rmap *rmap, uint64_t gfn, struct pgm_shadow_page *sp, uint32_t index)
{
    if (!sp || index >= PGM_RMAP_INDEX_LIMIT)
        return -EINVAL;
    struct pgm_rmap_gfn_node **pp = gfn_find(rmap, gfn);
    if (*pp) {
        int rc = pgm_rmap_list_add(rmap, &(*pp)->list, sp, index);
        if (rc == 0)
            rmap->gfn_refs++;
        return rc;
    }
    struct pgm_rmap_gfn_node *n = node_get(rmap);
    if (!n)
        return -ENOMEM;
    n->gfn = gfn;
    /* An empty list takes one reference inline: cannot fail. */
    (void)pgm_rmap_list_add(rmap, &n->list, sp, index);
    struct pgm_rmap_gfn_node **slot = gfn_slot(rmap, gfn);
    n->next = *slot;
    *slot = n;
    rmap->gfn_count++;
    rmap->gfn_refs++;
    gfn_maybe_grow(rmap);
    return 0;
}

int
pgm_rmap_gfn_remove(struct pgm_rmap *rmap, uint64_t gfn, struct pgm_shadow_page *sp,
                    uint32_t index)
{
    struct pgm_rmap_gfn_node **pp = gfn_find(rmap, gfn);
    struct pgm_rmap_gfn_node *n = *pp;
    if (!n) {
        PGM_POOL_BUG(rmap->assert_on_bug, "removing a reference to a gfn nothing maps");
        return -ENOENT;
    }
    int rc = pgm_rmap_list_remove(rmap, &n->list, sp, index);
    if (rc < 0)
        return rc;
    rmap->gfn_refs--;
    if (n->list.count == 0) {
        /* Invariant: a node exists only while its list is non-empty. */
        *pp = n->next;
        node_put(rmap, n);
        rmap->gfn_count--;
    }
    return 0;
}

const struct pgm_rmap_list *
pgm_rmap_gfn_list(const struct pgm_rmap *rmap, uint64_t gfn)
{
    struct pgm_rmap_gfn_node *n = *gfn_find(rmap, gfn);
    return n ? &n->list : NULL;
}

/* ---- Parent lists -------------------------------------------------------- */

int
pgm_rmap_parent_add(struct pgm_rmap *rmap, struct pgm_shadow_page *child,
                    struct pgm_shadow_page *parent, uint32_t index)
{
    if (!child)
        return -EINVAL;
    return pgm_rmap_list_add(rmap, &child->parents, parent, index);
}

int
pgm_rmap_parent_remove(struct pgm_rmap *rmap, struct pgm_shadow_page *child,
                       struct pgm_shadow_page *parent, uint32_t index)
{
    if (!child)
        return -EINVAL;
    return pgm_rmap_list_remove(rmap, &child->parents, parent, index);
}

const struct pgm_rmap_list *
pgm_rmap_parents(const struct pgm_shadow_page *child)
{
    return &child->parents;
}

/* ---- Checking ------------------------------------------------------------ */

int
pgm_rmap_list_check(const struct pgm_rmap_list *list)
{
    if (list->count == 0)
        return list->one_sp == NULL && list->one_index == 0 ? 0 : -EINVAL;
    if (list->count == 1)
        return list->one_sp && list->one_index < PGM_RMAP_INDEX_LIMIT ? 0 : -EINVAL;
    uint64_t total = 0;
    for (const struct pgm_rmap_desc *d = list->descs; d; d = d->next) {
        bool is_head = d == list->descs;
        if (d->used == 0 || d->used > PGM_RMAP_DESC_REFS)
            return -EINVAL;
        if (!is_head && d->used != PGM_RMAP_DESC_REFS)
            return -EINVAL;
        for (uint32_t i = 0; i < d->used; i++)
            if (!d->refs[i].sp || d->refs[i].index >= PGM_RMAP_INDEX_LIMIT)
                return -EINVAL;
        total += d->used;
        if (total > list->count)
            return -EINVAL;   /* also stops a cycle */
    }
    return total == list->count ? 0 : -EINVAL;
}

int
pgm_rmap_check(const struct pgm_rmap *rmap)
{
    uint64_t nodes = 0, refs = 0;
    for (uint32_t b = 0; b <= rmap->bucket_mask; b++) {
        for (const struct pgm_rmap_gfn_node *n = rmap->buckets[b]; n; n = n->next) {
            if ((pgm_pool_gfn_hash(n->gfn) & rmap->bucket_mask) != b)
                return -EINVAL;
            if (n->list.count == 0 || pgm_rmap_list_check(&n->list) < 0)
                return -EINVAL;
            /* One node per gfn: the first match on the chain is this node. */
            if (*gfn_find(rmap, n->gfn) != n)
                return -EINVAL;
            refs += n->list.count;
            if (++nodes > rmap->gfn_count)
                return -EINVAL;
        }
    }
    if (nodes != rmap->gfn_count || refs != rmap->gfn_refs)
        return -EINVAL;
    uint32_t spares = 0;
    for (const struct pgm_rmap_desc *d = rmap->spare_descs; d && spares <= rmap->spare_desc_count;
         d = d->next)
        spares++;
    if (spares != rmap->spare_desc_count)
        return -EINVAL;
    spares = 0;
    for (const struct pgm_rmap_gfn_node *n = rmap->spare_nodes;
         n && spares <= rmap->spare_node_count; n = n->next)
        spares++;
    return spares == rmap->spare_node_count ? 0 : -EINVAL;
}
