/* SPDX-License-Identifier: MIT */
/*
 * The nested-paging engine: configuration, the table tree, entry formats
 * (through the vendor builders of src/backends/vtx.c and svm.c), the
 * flush batching and the public queries. See src/nested/nested.h.
 */
#include <errno.h>
#include <string.h>

#include "src/alloc.h"
#include "src/handlers/registry.h"
#include "src/nested/nested.h"
#include "src/vm.h"

/* 4-level walk, UC and WB, 2 MiB and 1 GiB pages, INVEPT single/all, A/D. */
#define DEFAULT_EPT_CAPS                                                                   \
    ((1ull << 6) | (1ull << 8) | (1ull << 14) | (1ull << 16) | (1ull << 17) | (1ull << 20) | \
     (1ull << 21) | (1ull << 25) | (1ull << 26))

PGM_API void
pgm_nested_config_init(struct pgm_nested_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->struct_size = sizeof(*cfg);
    cfg->ept_caps = DEFAULT_EPT_CAPS;
    cfg->levels = 4;
    cfg->host_maxphyaddr = 46;
}

#define KNOWN_FLAGS                                                                        \
    (PGM_NESTED_EPT_AD | PGM_NESTED_NPT_NXE | PGM_NESTED_NPT_GBPAGES | PGM_NESTED_LARGE_2M | \
     PGM_NESTED_LARGE_1G | PGM_NESTED_NO_MMIO_MARKER)

/* Check @cfg for @format and derive the engine's parameters into @n. */
static int
configure(struct pgm_nested *n, enum pgm_paging_hw format, const struct pgm_nested_config *cfg)
{
    if (cfg->struct_size != sizeof(*cfg) || (cfg->flags & ~(uint32_t)KNOWN_FLAGS))
        return -EINVAL;
    for (size_t i = 0; i < sizeof(cfg->reserved); i++)
        if (cfg->reserved[i])
            return -EINVAL;
    if ((cfg->levels != 4 && cfg->levels != 5) || cfg->host_maxphyaddr < 32 ||
        cfg->host_maxphyaddr > 52)
        return -EINVAL;
    n->cfg = *cfg;
    n->format = format;
    n->levels = cfg->levels;
    n->flags = cfg->flags;
    bool large2 = cfg->flags & PGM_NESTED_LARGE_2M, large1 = cfg->flags & PGM_NESTED_LARGE_1G;
    if (format == PGM_PAGING_EPT) {
        if (cfg->flags & (PGM_NESTED_NPT_NXE | PGM_NESTED_NPT_GBPAGES))
            return -EINVAL;
        pgm_vtx_decode_ept_caps(cfg->ept_caps, &n->ept.caps);
        n->ept.maxphyaddr = cfg->host_maxphyaddr;
        n->ept.mbec = false;
        const struct pgm_vtx_ept_caps *c = &n->ept.caps;
        if (!c->mt_wb || (n->levels == 4 && !c->walk4) || (n->levels == 5 && !c->walk5))
            return -EINVAL;
        n->ad = cfg->flags & PGM_NESTED_EPT_AD;
        if (n->ad && !c->ad)
            return -EINVAL;
        large2 = large2 && c->pages_2m;
        large1 = large1 && c->pages_1g;
        n->marker = true; /* XWR = 010 is a misconfiguration on every CPU */
    } else {
        if (cfg->flags & PGM_NESTED_EPT_AD)
            return -EINVAL;
        n->npt.maxphyaddr = cfg->host_maxphyaddr;
        n->npt.levels = cfg->levels;
        n->npt.nxe = cfg->flags & PGM_NESTED_NPT_NXE;
        n->npt.gbpages = cfg->flags & PGM_NESTED_NPT_GBPAGES;
        large1 = large1 && n->npt.gbpages;
        /* A reserved address bit exists only below MAXPHYADDR 52. */
        n->marker = cfg->host_maxphyaddr < 52;
    }
    if (cfg->flags & PGM_NESTED_NO_MMIO_MARKER)
        n->marker = false;
    n->large_levels = (large2 ? 1u << 2 : 0) | (large1 ? 1u << 3 : 0);
    return 0;
}

struct nested_table *
pgm_nested_table_alloc(struct pgm_vm *vm, unsigned level, pgm_gpa_t base)
{
    struct pgm_nested *n = vm->nested;
    struct nested_table *t = pgm_zalloc(&vm->alloc, sizeof(*t));
    if (!t)
        return NULL;
    if (level >= 2) {
        t->child = pgm_zalloc_array(&vm->alloc, NESTED_ENTRIES, sizeof(*t->child));
        if (!t->child) {
            pgm_free(&vm->alloc, t);
            return NULL;
        }
    }
    void *ptr;
    if (vm->be->alloc_page(vm->be_ctx, &t->hpa, &ptr) < 0) {
        pgm_free(&vm->alloc, t->child);
        pgm_free(&vm->alloc, t);
        return NULL;
    }
    t->ent = ptr;
    t->level = level;
    t->base = base;
    n->c.table_pages++;
    return t;
}

/* Free @t and its subtree now (no flush: callers made sure none is needed). */
static void
table_free_tree(struct pgm_vm *vm, struct nested_table *t)
{
    if (!t)
        return;
    for (unsigned i = 0; t->child && i < NESTED_ENTRIES; i++)
        table_free_tree(vm, t->child[i]);
    vm->be->free_page(vm->be_ctx, t->hpa, t->ent);
    pgm_free(&vm->alloc, t->child);
    pgm_free(&vm->alloc, t);
    vm->nested->c.table_pages--;
}

int
pgm_nested_create(struct pgm_vm *vm)
{
    struct pgm_nested *n = pgm_zalloc(&vm->alloc, sizeof(*n));
    if (!n)
        return -ENOMEM;
    struct pgm_nested_config def;
    pgm_nested_config_init(&def);
    int rc = configure(n, vm->cfg.paging, vm->cfg.nested ? vm->cfg.nested : &def);
    if (rc < 0) {
        pgm_free(&vm->alloc, n);
        return rc;
    }
    vm->nested = n;
    if (vm->be->alloc_page(vm->be_ctx, &n->zero_hpa, &n->zero_ptr) < 0)
        return -ENOMEM; /* the caller destroys the VM, which frees n */
    n->root = pgm_nested_table_alloc(vm, n->levels, 0);
    /* pgm_vm_create() flushes every vCPU before the tree is first used. */
    return n->root ? 0 : -ENOMEM;
}

void
pgm_nested_destroy(struct pgm_vm *vm)
{
    struct pgm_nested *n = vm->nested;
    if (!n)
        return;
    /* pgm_vm_destroy() flushed every vCPU: no translation outlives the tree. */
    table_free_tree(vm, n->root);
    while (n->retired) {
        struct nested_table *t = n->retired;
        n->retired = t->next;
        table_free_tree(vm, t);
    }
    if (n->zero_ptr)
        vm->be->free_page(vm->be_ctx, n->zero_hpa, n->zero_ptr);
    pgm_free(&vm->alloc, n);
    vm->nested = NULL;
}

/* ---- entry formats ---- */

enum nested_kind
pgm_nested_kind(const struct pgm_nested *n, unsigned level, uint64_t e)
{
    bool large_bit = level > 1 && (e & PGM_EPT_PS); /* bit 7 in both formats */
    if (n->format == PGM_PAGING_EPT) {
        uint64_t xwr = e & PGM_EPT_XWR_MASK;
        if (!xwr)
            return NE_NONE;
        if (xwr == PGM_EPT_W && (e & NESTED_MARKER_TAG))
            return NE_MARKER;
    } else {
        if (!(e & PGM_NPT_P))
            return NE_NONE;
        if ((e & NESTED_NPT_RSVD_BIT) && (e & NESTED_MARKER_TAG) && n->marker)
            return NE_MARKER;
    }
    return level == 1 || large_bit ? NE_LEAF : NE_TABLE;
}

uint32_t
pgm_nested_rights(const struct pgm_nested *n, uint64_t e)
{
    if (n->format == PGM_PAGING_EPT)
        return (uint32_t)(e & PGM_EPT_XWR_MASK); /* R, W, X are bits 0, 1, 2 as NR_* */
    uint32_t r = NR_R;
    if (e & PGM_NPT_RW)
        r |= NR_W;
    if (!(e & PGM_NPT_NX))
        r |= NR_X;
    return r;
}

int
pgm_nested_make_leaf(const struct pgm_nested *n, unsigned level, pgm_hpa_t hpa, uint32_t rights,
                     bool dirty, uint64_t *out)
{
    if (n->format == PGM_PAGING_EPT) {
        uint32_t flags = 0;
        if (n->ad)
            flags |= PGM_EPT_MAKE_A | ((dirty && (rights & NR_W)) ? PGM_EPT_MAKE_D : 0);
        return pgm_vtx_ept_make_leaf(&n->ept, level, hpa, rights & NR_ALL, PGM_VTX_MT_WB, flags,
                                     out);
    }
    uint32_t r = (rights & NR_W) ? PGM_NPT_RIGHT_WRITE : 0;
    if ((rights & NR_X) || !n->npt.nxe)
        r |= PGM_NPT_RIGHT_EXEC;
    return pgm_svm_npt_make_leaf(&n->npt, level, hpa, r, 0, out);
}

int
pgm_nested_make_table(const struct pgm_nested *n, unsigned level, pgm_hpa_t hpa, uint64_t *out)
{
    if (n->format == PGM_PAGING_EPT)
        return pgm_vtx_ept_make_table(&n->ept, level, hpa, PGM_EPT_R | PGM_EPT_W | PGM_EPT_X,
                                      n->ad ? PGM_EPT_MAKE_A : 0, out);
    return pgm_svm_npt_make_table(&n->npt, level, hpa, out);
}

uint64_t
pgm_nested_make_marker(const struct pgm_nested *n)
{
    if (n->format == PGM_PAGING_EPT)
        return PGM_EPT_W | NESTED_MARKER_TAG;
    return PGM_NPT_P | PGM_NPT_RW | PGM_NPT_US | NESTED_NPT_RSVD_BIT | NESTED_MARKER_TAG;
}

/* ---- the tree ---- */

static inline uint64_t
entry_load(const uint64_t *slot)
{
    return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}

uint64_t *
pgm_nested_slot(struct pgm_nested *n, pgm_gpa_t gpa, unsigned *level, struct nested_table **table)
{
    struct nested_table *t = n->root;
    for (;;) {
        unsigned idx = pgm_nested_index(gpa, t->level);
        uint64_t *slot = &t->ent[idx];
        if (t->level > 1 && pgm_nested_kind(n, t->level, entry_load(slot)) == NE_TABLE) {
            t = t->child[idx];
            continue;
        }
        *level = t->level;
        if (table)
            *table = t;
        return slot;
    }
}

int
pgm_nested_table_for(struct pgm_vm *vm, pgm_gpa_t gpa, unsigned level, struct nested_table **out)
{
    struct pgm_nested *n = vm->nested;
    struct nested_table *t = n->root;
    while (t->level > level) {
        unsigned idx = pgm_nested_index(gpa, t->level);
        enum nested_kind k = pgm_nested_kind(n, t->level, entry_load(&t->ent[idx]));
        if (k == NE_LEAF) {
            int rc = pgm_nested_split(vm, t, idx);
            if (rc < 0)
                return rc;
        } else if (k != NE_TABLE) {
            struct nested_table *c =
                pgm_nested_table_alloc(vm, t->level - 1, t->base + idx * pgm_nested_span(t->level));
            uint64_t e;
            if (!c)
                return -ENOMEM;
            if (pgm_nested_make_table(n, t->level, c->hpa, &e) < 0) {
                table_free_tree(vm, c); /* an HPA the format cannot hold */
                return -ENOMEM;
            }
            t->child[idx] = c;
            /* A marker or empty entry is replaced: neither was a cached translation. */
            __atomic_store_n(&t->ent[idx], e, __ATOMIC_RELEASE);
        }
        t = t->child[idx];
    }
    *out = t;
    return 0;
}

void
pgm_nested_request_flush(struct pgm_nested *n, pgm_gpa_t gpa, unsigned level)
{
    n->downgrades++;
    pgm_gpa_t page = gpa & PGM_PAGE_MASK;
    /* One 4 KiB page alone can be flushed by address; anything more flushes all. */
    if (!n->flush_pending) {
        n->flush_pending = true;
        n->flush_gpa = page;
        n->flush_all = level > 1;
    } else if (level > 1 || n->flush_gpa != page) {
        n->flush_all = true;
    }
}

void
pgm_nested_set(struct pgm_vm *vm, uint64_t *slot, unsigned level, pgm_gpa_t gpa, uint64_t e)
{
    struct pgm_nested *n = vm->nested;
    uint64_t old = __atomic_exchange_n(slot, e, __ATOMIC_ACQ_REL);
    if (old == e)
        return;
    enum nested_kind ko = pgm_nested_kind(n, level, old), kn = pgm_nested_kind(n, level, e);
    if (kn == NE_NONE)
        n->c.zaps++;
    else
        n->c.maps++;
    if (ko != NE_LEAF)
        return; /* markers and empty entries are never cached translations */
    /* The hardware may have set D since the leaf was written: keep that news. */
    if (n->ad && (old & PGM_EPT_D) && !(kn == NE_LEAF && (e & PGM_EPT_D)))
        pgm_dirty_dbit_note(vm, gpa);
    bool narrower = kn != NE_LEAF || pgm_nested_addr(old) != pgm_nested_addr(e) ||
                    (pgm_nested_rights(n, old) & ~pgm_nested_rights(n, e));
    if (narrower)
        pgm_nested_request_flush(n, gpa, level);
}

/* Put @t and its subtree on the retired list (freed after the flush). */
static void
retire_tree(struct pgm_vm *vm, struct nested_table *t)
{
    struct pgm_nested *n = vm->nested;
    for (unsigned i = 0; t->child && i < NESTED_ENTRIES; i++) {
        if (t->child[i]) {
            retire_tree(vm, t->child[i]);
            t->child[i] = NULL;
        }
    }
    /* Leaves going away may carry D bits a D-bit dirty log has not harvested. */
    if (n->ad && t->level == 1)
        for (unsigned i = 0; i < NESTED_ENTRIES; i++) {
            uint64_t e = entry_load(&t->ent[i]);
            if (pgm_nested_kind(n, 1, e) == NE_LEAF && (e & PGM_EPT_D))
                pgm_dirty_dbit_note(vm, t->base + ((pgm_gpa_t)i << PGM_PAGE_SHIFT));
        }
    t->next = n->retired;
    n->retired = t;
}

void
pgm_nested_drop_subtree(struct pgm_vm *vm, struct nested_table *t, unsigned idx)
{
    struct pgm_nested *n = vm->nested;
    struct nested_table *c = t->child[idx];
    __atomic_store_n(&t->ent[idx], 0, __ATOMIC_RELEASE);
    t->child[idx] = NULL;
    n->c.zaps++;
    retire_tree(vm, c);
    /* Paging-structure caches may hold the unlinked tables. */
    pgm_nested_request_flush(n, 0, t->level);
}

void
pgm_nested_commit(struct pgm_vm *vm)
{
    struct pgm_nested *n = vm->nested;
    if (!n || !n->flush_pending)
        return;
    struct pgm_flush_req req = { .scope = n->flush_all ? PGM_FLUSH_ALL : PGM_FLUSH_GPA,
                                 .addr = n->flush_all ? 0 : n->flush_gpa };
    if (vm->be->flush)
        for (unsigned i = 0; i < vm->vcpu_count; i++)
            vm->be->flush(vm->be_ctx, i, &req);
    n->c.flushes++;
    n->downgrades_flushed = n->downgrades;
    n->flush_pending = n->flush_all = false;
    while (n->retired) {
        struct nested_table *t = n->retired;
        n->retired = t->next;
        table_free_tree(vm, t);
    }
}

/* ---- what a GPA should map ---- */

void
pgm_nested_target(struct pgm_vm *vm, pgm_gpa_t gpa, struct nested_target *t)
{
    struct pgm_nested *n = vm->nested;
    memset(t, 0, sizeof(*t));
    struct pgm_phys_range *r = pgm_phys_map_find(pgm_phys_snapshot(&vm->phys), gpa);
    if (!r)
        return; /* unassigned: not present, finished by emulation */
    t->r = r;
    if (r->kind == PGM_PHYS_MMIO) {
        t->kind = n->marker ? NT_MARKER : NT_NONE;
        return;
    }
    struct pgm_page *pg = &r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT];
    t->pg = pg;
    enum pgm_handler_kind hk = pgm_page_handler_state(pg);
    if (hk == PGM_HANDLER_ALL) {
        t->kind = n->marker ? NT_MARKER : NT_NONE;
        return;
    }
    t->kind = NT_MAP;
    uint8_t *host = pgm_load_acquire(&pg->host);
    if (r->kind == PGM_PHYS_ROM) {
        t->hpa = pg->hpa;
        t->rights = NR_R | NR_X;
        if (hk == PGM_HANDLER_NONE &&
            __atomic_load_n(&r->rom_mode, __ATOMIC_ACQUIRE) == PGM_ROM_MODE_SHADOW_RW)
            t->rights = NR_ALL;
        return;
    }
    if (!host) {
        /* Never written: the shared zero page, read-only, until the first write. */
        t->hpa = n->zero_hpa;
        t->rights = NR_R | NR_X;
        t->materialize = hk == PGM_HANDLER_NONE;
        t->plain_ram = hk == PGM_HANDLER_NONE;
        return;
    }
    t->hpa = pg->hpa;
    t->rights = hk == PGM_HANDLER_WRITE ? NR_R | NR_X : NR_ALL;
    t->plain_ram = hk == PGM_HANDLER_NONE;
}

/* ---- public queries ---- */

PGM_API int
pgm_nested_root(struct pgm_vm *vm, uint64_t *pointer)
{
    if (!vm || !pointer || !vm->nested)
        return -EINVAL;
    struct pgm_nested *n = vm->nested;
    if (n->format == PGM_PAGING_EPT)
        return pgm_vtx_eptp_make(&n->ept.caps, n->ept.maxphyaddr, n->root->hpa, n->levels,
                                 PGM_VTX_MT_WB, n->ad ? PGM_VTX_EPTP_AD : 0, pointer);
    return pgm_svm_ncr3_make(&n->npt, n->root->hpa, 0, pointer);
}

PGM_API int
pgm_nested_info(struct pgm_vm *vm, struct pgm_nested_root_info *out)
{
    if (!vm || !out || !vm->nested)
        return -EINVAL;
    struct pgm_nested *n = vm->nested;
    *out = (struct pgm_nested_root_info){ .format = n->format, .root = n->root->hpa,
                                          .levels = n->levels, .ept_ad = n->ad,
                                          .host_maxphyaddr = n->cfg.host_maxphyaddr };
    return 0;
}
