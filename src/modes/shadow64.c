/* SPDX-License-Identifier: MIT */
/*
 * The shadow engine for IA-32e guests on 64-bit-format shadow tables.
 * See shadow.h for the coherence argument and the locking rule, and
 * docs/shadow.md for the design.
 *
 * Shape of the shadow tree. The root shadows the guest's top-level table
 * (gfn = CR3 >> 12). Below it, shadow level L shadows the guest table the
 * guest entry at level L+1 points to, with a role that records the rights
 * accumulated above it (two paths with different upper rights to one guest
 * table get different shadow pages). A guest large page (2 MiB, 1 GiB) is
 * shadowed by *direct* pages: tables of 4 KiB entries that map the large
 * page's frames in order (gfn = its first frame). Non-leaf shadow entries
 * carry full rights; the leaf carries the walk's effective rights.
 *
 * Leaf rights: U and X as the guest's walk gives them; W only when the
 * guest allows the write, its leaf's D bit is already set (so the first
 * write faults and D is set by the walker, as hardware does), the page is
 * plain RAM (or a ROM's writable copy) with no handler, and the gfn is not a
 * shadowed guest table.
 */
#include <errno.h>
#include <string.h>

#include "src/alloc.h"
#include "src/handlers/registry.h"
#include "src/handlers/virt.h"
#include "src/modes/shadow.h"
#include "src/vm.h"

#define HMAP_DELETED ((pgm_hpa_t)~0ull)

/*
 * A PAE-format root is the vCPU's own (see pgm_shadow_load_root); it lives in
 * the pool as a direct page under this gfn plus the vCPU id, which no guest
 * table can have (gfns are below 2^40).
 */
#define PAE_ROOT_GFN_BASE (1ull << 52)

/* ---- hpa -> shadow page map ---------------------------------------------- */

static uint32_t
hmap_hash(pgm_hpa_t hpa)
{
    uint64_t x = hpa >> PGM_PAGE_SHIFT;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static struct shadow_hmap_slot *
hmap_find(struct pgm_shadow *sh, pgm_hpa_t hpa)
{
    for (uint32_t i = hmap_hash(hpa), n = 0; n <= sh->slot_mask; i++, n++) {
        struct shadow_hmap_slot *s = &sh->slots[i & sh->slot_mask];
        if (s->hpa == hpa)
            return s;
        if (!s->hpa)
            return NULL;
    }
    return NULL;
}

/* The map has twice as many slots as the pool has pages: never full. */
static struct shadow_hmap_slot *
hmap_insert(struct pgm_shadow *sh, pgm_hpa_t hpa, struct pgm_shadow_page *sp)
{
    for (uint32_t i = hmap_hash(hpa);; i++) {
        struct shadow_hmap_slot *s = &sh->slots[i & sh->slot_mask];
        if (!s->hpa || s->hpa == HMAP_DELETED) {
            s->hpa = hpa;
            s->sp = sp;
            s->gfns = NULL;
            return s;
        }
    }
}

struct pgm_shadow_page *
pgm_shadow_sp_of_hpa(struct pgm_shadow *sh, pgm_hpa_t hpa)
{
    struct shadow_hmap_slot *s = hmap_find(sh, hpa);
    return s ? s->sp : NULL;
}

uint64_t *
pgm_shadow_gfns(struct pgm_shadow *sh, const struct pgm_shadow_page *sp)
{
    struct shadow_hmap_slot *s = hmap_find(sh, sp->hpa);
    return s ? s->gfns : NULL;
}

/* ---- entries ---------------------------------------------------------------- */

static void write_protect_gfn(struct pgm_shadow *sh, uint64_t gfn);

/* Clear every present entry of @sp (its children and leaf mappings go). */
static void
zap_contents(struct pgm_shadow *sh, struct pgm_shadow_page *sp)
{
    for (unsigned i = 0; i < sp_entries(sp) && sp->present_count; i++)
        pgm_shadow_zap_entry(sh, sp, i);
}

/*
 * Remove entry @i of @sp: its reverse-map reference goes, a flush becomes
 * due. A direct child left without parents is emptied too: its leaf rights
 * came from the guest's large-page entry, which may since have changed, so
 * it must not be found again with stale contents.
 */
void
pgm_shadow_zap_entry(struct pgm_shadow *sh, struct pgm_shadow_page *sp, unsigned i)
{
    uint64_t e = spte_get(sp, i);
    if (!(e & SPTE_P))
        return;
    spte_set(sp, i, 0);
    sp->present_count--;
    sh->flush_pending = true;
    sh->zaps++;
    if (sp->gfn >= PAE_ROOT_GFN_BASE)
        sh->relatch_pending = true; /* a PAE root's PDPTE went: the CPU latched it */
    if (sp->role.level == 1) {
        uint64_t *gfns = pgm_shadow_gfns(sh, sp);
        pgm_rmap_gfn_remove(&sh->rmap, gfns[i], sp, i);
        return;
    }
    struct pgm_shadow_page *child = pgm_shadow_sp_of_hpa(sh, e & SPTE_ADDR);
    pgm_rmap_parent_remove(&sh->rmap, child, sp, i);
    if (child->role.direct && !pgm_rmap_list_count(&child->parents))
        zap_contents(sh, child);
}

/* Unlink @sp from everything: its entries and the parent entries pointing at it. */
static void
unlink_sp(struct pgm_shadow *sh, struct pgm_shadow_page *sp)
{
    zap_contents(sh, sp);
    struct pgm_rmap_ref ref;
    while (pgm_rmap_list_first(&sp->parents, &ref)) {
        spte_set(ref.sp, ref.index, 0);
        ref.sp->present_count--;
        pgm_rmap_parent_remove(&sh->rmap, sp, ref.sp, ref.index);
        sh->flush_pending = true;
        if (ref.sp->gfn >= PAE_ROOT_GFN_BASE)
            sh->relatch_pending = true;
    }
}

static void
forget_sp(struct pgm_shadow *sh, struct pgm_shadow_page *sp)
{
    struct shadow_hmap_slot *s = hmap_find(sh, sp->hpa);
    if (!s)
        return;
    if (sp->unsync) {
        sp->unsync = false;
        sh->unsync_count--;
    }
    s->writes = 0;
    if (s->gfns && sh->spare_count < sh->spare_cap)
        sh->spare_gfns[sh->spare_count++] = s->gfns;
    else
        pgm_free(&sh->alloc, s->gfns);
    s->gfns = NULL;
    s->sp = NULL;
    s->hpa = HMAP_DELETED;
}

static void
evict_cb(void *ctx, struct pgm_shadow_page *sp)
{
    struct pgm_vm *vm = ctx;
    unlink_sp(vm->shadow, sp);
    forget_sp(vm->shadow, sp);
}

static void
commit_cb(void *ctx)
{
    pgm_shadow_commit_flush(ctx);
}

static const struct pgm_pool_evict_ops evict_ops = { .evict = evict_cb, .commit = commit_cb };

void
pgm_shadow_commit_flush(struct pgm_vm *vm)
{
    struct pgm_shadow *sh = vm->shadow;
    if (sh->relatch_pending) {
        /*
         * A PAE root's entry changed: the CPU holds the PDPTEs it latched
         * at the last CR3 load, so give it the root again.
         */
        sh->relatch_pending = false;
        for (unsigned i = 0; i < vm->vcpu_count && vm->be->load_root; i++) {
            const struct pgm_shadow_page *root = vm->vcpus[i].root;
            if (root && root->gfn >= PAE_ROOT_GFN_BASE)
                vm->be->load_root(vm->be_ctx, i, root->hpa);
        }
    }
    if (!sh->flush_pending)
        return;
    sh->flush_pending = false;
    sh->flushes++;
    /*
     * A shadow page may be shared by every vCPU's tree, and an entry does not
     * know which linear addresses reach it: flush everything everywhere.
     */
    if (vm->be->flush) {
        struct pgm_flush_req req = { .scope = PGM_FLUSH_ALL };
        for (unsigned i = 0; i < vm->vcpu_count; i++)
            vm->be->flush(vm->be_ctx, i, &req);
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

int
pgm_shadow_create(struct pgm_vm *vm)
{
    struct pgm_shadow *sh = pgm_zalloc(&vm->alloc, sizeof(*sh));
    if (!sh)
        return -ENOMEM;
    vm->shadow = sh;
    sh->alloc = vm->alloc;
    sh->vm = vm;
    sh->flood_threshold = vm->cfg.flood_threshold ? vm->cfg.flood_threshold : 3;
    sh->unsync_threshold = vm->cfg.unsync_threshold ? vm->cfg.unsync_threshold : 3;
    pthread_mutex_init(&sh->lock, NULL);
    int rc = pgm_pool_create(vm, &sh->pool);
    if (rc == 0)
        /* Sized for the leaves the pool can hold, so the map rarely grows. */
        rc = pgm_rmap_init(&sh->rmap, &vm->alloc, (uint64_t)sh->pool->budget * 32);
    if (rc == 0) {
        uint32_t slots = 64;
        while (slots < 2 * sh->pool->budget)
            slots <<= 1;
        sh->slots = pgm_zalloc_array(&vm->alloc, slots, sizeof(*sh->slots));
        sh->slot_mask = slots - 1;
        sh->spare_cap = 8;
        sh->spare_gfns = pgm_zalloc_array(&vm->alloc, sh->spare_cap, sizeof(uint64_t *));
        if (!sh->slots || !sh->spare_gfns)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        pgm_shadow_destroy(vm);
        return rc;
    }
    pgm_pool_set_evict_ops(sh->pool, &evict_ops, vm);
    return 0;
}

static int
clear_lists_cb(void *ctx, struct pgm_shadow_page *sp)
{
    struct pgm_shadow *sh = ctx;
    pgm_rmap_list_clear(&sh->rmap, &sp->parents);
    return 0;
}

void
pgm_shadow_destroy(struct pgm_vm *vm)
{
    struct pgm_shadow *sh = vm->shadow;
    if (!sh)
        return;
    if (sh->pool) {
        pgm_pool_for_each_page(sh->pool, clear_lists_cb, sh);
        pgm_pool_destroy(sh->pool);
    }
    if (sh->slots) {
        for (uint32_t i = 0; i <= sh->slot_mask; i++)
            if (sh->slots[i].hpa && sh->slots[i].hpa != HMAP_DELETED)
                pgm_free(&sh->alloc, sh->slots[i].gfns);
        pgm_free(&vm->alloc, sh->slots);
    }
    for (uint32_t i = 0; i < sh->spare_count; i++)
        pgm_free(&sh->alloc, sh->spare_gfns[i]);
    pgm_free(&vm->alloc, sh->spare_gfns);
    pgm_rmap_fini(&sh->rmap);
    pthread_mutex_destroy(&sh->lock);
    pgm_free(&vm->alloc, sh);
    vm->shadow = NULL;
}

/* IA-32e guests run on 64-bit-format shadows, every other mode on PAE ones. */
static inline bool
pae_format(const struct pgm_vcpu *vcpu)
{
    return vcpu->bops->pae_root;
}

/* ---- monitoring and out-of-sync tables ---------------------------------------- */

bool
pgm_shadow_gfn_monitored(struct pgm_shadow *sh, uint64_t gfn)
{
    struct pgm_shadow_page *sp, *next;
    pgm_pool_for_each_gfn(sh->pool, gfn, sp, next) {
        if (!sp->role.direct && !sp->role.invalid && !sp->unsync)
            return true;
    }
    return false;
}

/* The guest entry shadowed by entry @i of leaf table @sp. */
static uint64_t
guest_leaf_entry(struct pgm_vm *vm, const struct pgm_shadow_page *sp, unsigned i,
                 uint64_t *frame_mask)
{
    uint64_t g = 0;
    if (sp->role.guest_mode == PGM_MODE_32BIT) {
        /* 1:1 in the 32-bit format, a quadrant of the guest table in PAE */
        unsigned k = sp->role.fmt32 ? i : 512u * sp->role.quadrant + i;
        pgm_phys_read_backing(vm, (sp->gfn << PGM_PAGE_SHIFT) + 4u * k, &g, 4);
        *frame_mask = 0xfffff000ull;
    } else {
        pgm_phys_read_backing(vm, (sp->gfn << PGM_PAGE_SHIFT) + 8u * i, &g, 8);
        *frame_mask = SPTE_ADDR;
    }
    return g;
}

/*
 * Bring out-of-sync leaf table @sp back in sync. Rather than diffing against
 * a snapshot (which misses an entry changed and changed back while a shadow
 * entry was built from the middle value), every present shadow entry is
 * checked against the guest entry as it is now and zapped unless the guest
 * still maps the same frame, accessed, with rights at least as wide. Then
 * the table is write-protected again.
 */
static void
resync_sp(struct pgm_vm *vm, struct pgm_shadow_page *sp)
{
    struct pgm_shadow *sh = vm->shadow;
    uint64_t *gfns = pgm_shadow_gfns(sh, sp);
    for (unsigned i = 0; i < sp_entries(sp) && sp->present_count; i++) {
        uint64_t e = spte_get(sp, i);
        if (!(e & SPTE_P))
            continue;
        uint64_t mask;
        uint64_t g = guest_leaf_entry(vm, sp, i, &mask);
        /* A shadow entry lets accesses bypass the guest walk, so it may only
         * stand while the guest entry's A bit is set (the CPU sets A when it
         * loads a translation: a cleared A must make the next access walk). */
        bool keep = (g & SPTE_P) && (g & SPTE_A) && ((g & mask) >> PGM_PAGE_SHIFT) == gfns[i] &&
                    (!(e & SPTE_RW) || ((g & SPTE_RW) && (g & SPTE_D))) &&
                    (!(e & SPTE_US) || (g & SPTE_US)) &&
                    ((e & SPTE_XD) || sp->role.guest_mode == PGM_MODE_32BIT || !(g & SPTE_XD));
        if (!keep)
            pgm_shadow_zap_entry(sh, sp, i);
    }
    sp->unsync = false;
    sh->unsync_count--;
    sh->resyncs++;
    struct shadow_hmap_slot *slot = hmap_find(sh, sp->hpa);
    slot->writes = 0;
    write_protect_gfn(sh, sp->gfn);
}

static int
resync_cb(void *ctx, struct pgm_shadow_page *sp)
{
    if (sp->unsync)
        resync_sp(ctx, sp);
    return 0;
}

void
pgm_shadow_resync_all(struct pgm_vm *vm)
{
    struct pgm_shadow *sh = vm->shadow;
    if (!sh)
        return;
    pthread_mutex_lock(&sh->lock);
    if (sh->unsync_count) {
        pgm_pool_for_each_page(sh->pool, resync_cb, vm);
        pgm_shadow_commit_flush(vm);
    }
    pthread_mutex_unlock(&sh->lock);
}

/*
 * A write fault on shadowed table @gfn: may it go out of sync instead of
 * having the write finished by libpgm? Only leaf tables (an upper-level
 * table must stay exact: the shadow tree's shape depends on it), and only
 * once libpgm has finished `unsync_threshold` writes to it.
 */
static bool
try_unsync(struct pgm_shadow *sh, uint64_t gfn)
{
    if (sh->unsync_threshold == PGM_UNSYNC_OFF)
        return false;
    struct pgm_shadow_page *sp, *next;
    uint32_t writes = 0;
    bool any = false;
    pgm_pool_for_each_gfn(sh->pool, gfn, sp, next) {
        if (sp->role.direct || sp->role.invalid)
            continue;
        if (sp->role.level != 1 || sp->root_count)
            return false;
        struct shadow_hmap_slot *slot = hmap_find(sh, sp->hpa);
        writes = slot->writes > writes ? slot->writes : writes;
        any = true;
    }
    if (!any || writes < sh->unsync_threshold)
        return false;
    pgm_pool_for_each_gfn(sh->pool, gfn, sp, next) {
        if (!sp->role.direct && !sp->role.invalid && !sp->unsync) {
            sp->unsync = true;
            sh->unsync_count++;
            sh->unsyncs++;
        }
    }
    return true;
}

/* ---- getting shadow pages ---------------------------------------------------- */

/*
 * Everything a fault path may allocate, taken up front so nothing fails
 * half-way: pool pages, reverse-map spares and gfn arrays for new leaf
 * tables (levels of the deepest path plus one).
 */
static int
reserve(struct pgm_shadow *sh, unsigned n)
{
    int rc = pgm_pool_reserve(sh->pool, n);
    if (rc == 0)
        rc = pgm_rmap_reserve(&sh->rmap, n + 1);
    while (rc == 0 && sh->spare_count < n && sh->spare_count < sh->spare_cap) {
        uint64_t *g = pgm_alloc(&sh->alloc, 1024 * sizeof(uint64_t));
        if (!g)
            return -ENOMEM;
        sh->spare_gfns[sh->spare_count++] = g;
    }
    return rc;
}

/*
 * Write-protect @gfn in every shadow leaf that maps it: it just became a
 * shadowed guest table (monitoring starts).
 */
static void
write_protect_gfn(struct pgm_shadow *sh, uint64_t gfn)
{
    const struct pgm_rmap_list *list = pgm_rmap_gfn_list(&sh->rmap, gfn);
    struct pgm_rmap_iter it;
    struct pgm_rmap_ref ref;
    pgm_rmap_for_each(list, it, ref) {
        uint64_t e = spte_get(ref.sp, ref.index);
        if (e & SPTE_RW) {
            if (ref.sp->role.fmt32)
                __atomic_fetch_and((uint32_t *)ref.sp->ptr + ref.index, ~(uint32_t)SPTE_RW,
                                   __ATOMIC_RELAXED);
            else
                __atomic_fetch_and((uint64_t *)ref.sp->ptr + ref.index, ~SPTE_RW,
                                   __ATOMIC_RELAXED);
            sh->flush_pending = true;
        }
    }
}

/* Bring every out-of-sync shadow of @gfn back in sync (they go out of sync
 * together, try_unsync). */
static void
resync_gfn(struct pgm_shadow *sh, uint64_t gfn)
{
    struct pgm_shadow_page *o, *next;
    pgm_pool_for_each_gfn(sh->pool, gfn, o, next) {
        if (o->unsync)
            resync_sp(sh->vm, o);
    }
}

/* Look up or create the shadow page (gfn, role). Reserve first. */
struct pgm_shadow_page *
pgm_shadow_get_sp(struct pgm_shadow *sh, uint64_t gfn, union pgm_role role)
{
    struct pgm_shadow_page *sp = pgm_pool_lookup(sh->pool, gfn, role);
    if (sp) {
        /* Linking an out-of-sync leaf under a new parent makes its stale
         * entries reachable at addresses the guest never had to invalidate
         * (the entry above was not present: nothing was cached for them),
         * so it must be exact before it is linked. */
        if (sp->unsync)
            resync_gfn(sh, gfn);
        pgm_pool_touch(sh->pool, sp);
        return sp;
    }
    /* The gfn is (also) an upper-level table now: its out-of-sync leaf
     * shadows, if any, must be exact again. */
    if (!role.direct && role.level > 1)
        resync_gfn(sh, gfn);
    bool was_monitored = pgm_shadow_gfn_monitored(sh, gfn);
    sp = pgm_pool_alloc(sh->pool, gfn, role);
    if (!sp)
        return NULL;
    struct shadow_hmap_slot *s = hmap_insert(sh, sp->hpa, sp);
    if (role.level == 1) {
        s->gfns = sh->spare_gfns[--sh->spare_count];
        memset(s->gfns, 0, 1024 * sizeof(uint64_t));
    }
    if (!role.direct && !was_monitored)
        write_protect_gfn(sh, gfn);
    return sp;
}

void
pgm_shadow_link_child(struct pgm_shadow *sh, struct pgm_shadow_page *parent, unsigned i,
           struct pgm_shadow_page *child)
{
    pgm_rmap_parent_add(&sh->rmap, child, parent, i);
    spte_set(parent, i, child->hpa | SPTE_P | SPTE_RW | SPTE_US | SPTE_A);
    parent->present_count++;
}

/* ---- roots ------------------------------------------------------------------- */

static inline unsigned
shadow_levels(const struct pgm_vcpu *vcpu)
{
    return vcpu->bops->levels;
}

/*
 * A PAE-format root is the vCPU's own: four PDPTEs that the hardware latches
 * at CR3 load, refreshed at every guest CR3 load from the guest's latched
 * PDPTEs (PAE guests) or pointing at the quadrants of the guest's page
 * directory (32-bit guests) or at the identity map (paging off). It lives in
 * the pool under a gfn no guest table can have, as a direct page.
 */
void
pgm_shadow_drop_root(struct pgm_vcpu *vcpu)
{
    struct pgm_shadow *sh = vcpu->vm->shadow;
    if (vcpu->root) {
        pgm_pool_unpin(sh->pool, vcpu->root);
        vcpu->root = NULL;
    }
}

int
pgm_shadow_load_root(struct pgm_vcpu *vcpu, bool noflush)
{
    struct pgm_vm *vm = vcpu->vm;
    struct pgm_shadow *sh = vm->shadow;
    if (!vcpu->bops) {
        pgm_shadow_drop_root(vcpu);
        return -EOPNOTSUPP;
    }
    union pgm_role role = pgm_role_make(shadow_levels(vcpu), vcpu->mode);
    role.access = PGM_RIGHT_WRITE | PGM_RIGHT_USER | PGM_RIGHT_EXEC;
    role.nxe = vcpu->wctx.xd_mask != 0; /* bit 63 is XD or reserved: different content */
    role.pse = vcpu->mode == PGM_MODE_32BIT && vcpu->wctx.pse;
    uint64_t gfn = vcpu->wctx.root >> PGM_PAGE_SHIFT;
    if (pae_format(vcpu)) {
        role.direct = 1;
        gfn = PAE_ROOT_GFN_BASE + vcpu->id;
    } else if (vcpu->bops->fmt32) {
        role.fmt32 = 1;
        if (vcpu->mode == PGM_MODE_REAL || vcpu->mode == PGM_MODE_PROT) {
            role.direct = 1; /* the identity map: the same for every vCPU */
            gfn = 0;
        }
    }
    /* A flushing MOV CR3 is a point where the guest's table edits must show. */
    if (!noflush && sh->unsync_count)
        pgm_pool_for_each_page(sh->pool, resync_cb, vm);
    struct pgm_shadow_page *root = vcpu->root;
    bool switched = !root || root->gfn != gfn || !pgm_role_equal(root->role, role);
    if (switched) {
        int rc = reserve(sh, 1);
        if (rc < 0)
            return rc;
        root = pgm_shadow_get_sp(sh, gfn, role);
        if (!root)
            return -ENOMEM;
        pgm_pool_pin(sh->pool, root);
        pgm_shadow_drop_root(vcpu);
        vcpu->root = root;
    }
    /* A PAE root is refilled lazily after each CR3 load: the guest's PDPTEs
     * (or page directory) may have changed; faults relink its entries. */
    if (pae_format(vcpu)) {
        /*
         * Unlinking the root's entries changes no translation (faults relink
         * the same children, or children built from the guest's new PDPTEs
         * that MOV CR3 makes visible anyway): no flush beyond MOV CR3's.
         */
        bool pending = sh->flush_pending;
        zap_contents(sh, root);
        sh->flush_pending = pending;
    }
    if (vm->be->load_root)
        vm->be->load_root(vm->be_ctx, vcpu->id, root->hpa);
    /*
     * MOV CR3: every non-global translation goes. The hardware TLB is not
     * tagged with the guest's PCIDs (libpgm runs the guest on PCID 0), so
     * NOFLUSH can be honoured only when the root did not change: entries of
     * the old address space must not answer for the new one.
     */
    if ((!noflush || (switched && !pae_format(vcpu))) && vm->be->flush) {
        struct pgm_flush_req req = { .scope = PGM_FLUSH_NONGLOBAL };
        vm->be->flush(vm->be_ctx, vcpu->id, &req);
    }
    pgm_shadow_commit_flush(vm);
    return 0;
}

void
pgm_shadow_mode_changed(struct pgm_vcpu *vcpu)
{
    struct pgm_vm *vm = vcpu->vm;
    struct pgm_shadow *sh = vm->shadow;
    pthread_mutex_lock(&sh->lock);
    if (sh->unsync_count)
        pgm_pool_for_each_page(sh->pool, resync_cb, vm); /* a mode change flushes the TLB */
    pgm_shadow_drop_root(vcpu);
    if (vcpu->bops)
        pgm_shadow_load_root(vcpu, true); /* on failure the next fault retries */
    if (vm->be->flush) {
        struct pgm_flush_req req = { .scope = PGM_FLUSH_ALL };
        vm->be->flush(vm->be_ctx, vcpu->id, &req);
    }
    pthread_mutex_unlock(&sh->lock);
}

/* ---- the fault path ------------------------------------------------------- */

/* Host page backing @gpa and whether the guest may write it directly. */
struct backing {
    pgm_hpa_t hpa;
    bool mappable;   /* RAM or ROM page with no ALL handler */
    bool writable;   /* plain RAM (or a ROM's writable copy) with no handler */
};

static int
find_backing(struct pgm_vm *vm, pgm_gpa_t gpa, bool for_write, struct backing *b)
{
    memset(b, 0, sizeof(*b));
    struct pgm_phys_range *r = pgm_phys_map_find(pgm_phys_snapshot(&vm->phys), gpa);
    if (!r || r->kind == PGM_PHYS_MMIO)
        return 0;
    struct pgm_page *pg = &r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT];
    enum pgm_handler_kind hk = pgm_page_shadow_state(pg);
    if (hk == PGM_HANDLER_ALL)
        return 0;
    bool ram = r->kind == PGM_PHYS_RAM ||
               __atomic_load_n(&r->rom_mode, __ATOMIC_ACQUIRE) == PGM_ROM_MODE_SHADOW_RW;
    if (!pgm_load_acquire(&pg->host)) {
        /*
         * A never-written RAM page. Reads may be served by materialising it
         * too (its contents are zeros either way); it costs a host page now
         * rather than at the first write, which the shadow would trap anyway.
         */
        if (pgm_phys_page_materialize(vm, r, pg) < 0)
            return -ENOMEM;
    }
    (void)for_write;
    b->hpa = pg->hpa;
    b->mappable = true;
    b->writable = ram && hk == PGM_HANDLER_NONE;
    return 0;
}

/*
 * Install leaf entry @i of @sp for the guest translation @w onto backing @b.
 * W only if the guest allows writes, its leaf's D is set (A/D emulation: the
 * first write faults and the walk sets D), the page is plain RAM with no
 * handler, and the gfn is not a shadowed table (@monitored, or made one by
 * building this very path). Lock held.
 */
static void
install_leaf(struct pgm_vcpu *vcpu, struct pgm_shadow_page *sp, unsigned i,
             const struct pgm_walk *w, const struct backing *b, bool monitored)
{
    struct pgm_shadow *sh = vcpu->vm->shadow;
    uint64_t gfn = w->gpa >> PGM_PAGE_SHIFT;
    /* Without paging there is no guest entry and no D bit to emulate. */
    bool guest_dirty = w->top_level == 0 || (w->entry[w->last_level] & SPTE_D) != 0;
    monitored = monitored || pgm_shadow_gfn_monitored(sh, gfn);
    bool may_write = (w->rights & PGM_RIGHT_WRITE) && guest_dirty && b->writable && !monitored;
    uint64_t e = b->hpa | SPTE_P | SPTE_A;
    if (may_write)
        e |= SPTE_RW | SPTE_D;
    if (w->rights & PGM_RIGHT_USER)
        e |= SPTE_US;
    if (!(w->rights & PGM_RIGHT_EXEC))
        e |= SPTE_XD;
    if (w->global && (vcpu->state.cr4 & PGM_CR4_PGE))
        e |= SPTE_G;
    e |= (w->pat_index & 1 ? SPTE_PWT : 0) | (w->pat_index & 2 ? SPTE_PCD : 0) |
         (w->pat_index & 4 ? SPTE_PAT : 0);
    e |= (uint64_t)w->pkey << SPTE_PKEY_SHIFT;
    uint64_t old = spte_get(sp, i);
    if (sp->role.fmt32)
        e = (uint32_t)e; /* no XD or keys in the 32-bit format */
    if ((old & ~(SPTE_A | SPTE_D)) == (e & ~(SPTE_A | SPTE_D)))
        return; /* already there: a spurious fault */
    /*
     * Widening a present entry (same page and attributes, rights only
     * added: the D bit just set, a handler turned off) needs no flush: a
     * stale, narrower TLB entry only causes a spurious fault, which lands
     * here and resumes. Update it in place; the reverse map already has it.
     */
    uint64_t same = SPTE_ADDR | SPTE_PWT | SPTE_PCD | SPTE_PAT | SPTE_G | (0xfull << SPTE_PKEY_SHIFT);
    if ((old & SPTE_P) && pgm_shadow_gfns(sh, sp)[i] == gfn && !((old ^ e) & same) &&
        !(old & SPTE_RW & ~e) && !(old & SPTE_US & ~e) && !(e & SPTE_XD & ~old)) {
        spte_set(sp, i, e | (old & (SPTE_A | SPTE_D)));
        sh->syncs++;
        return;
    }
    pgm_shadow_zap_entry(sh, sp, i);
    pgm_shadow_gfns(sh, sp)[i] = gfn;
    pgm_rmap_gfn_add(&sh->rmap, gfn, sp, i);
    spte_set(sp, i, e);
    sp->present_count++;
    sh->syncs++;
}

/*
 * Backing of @gpa without taking the VM lock (the shadow lock is held, and
 * the order is VM, then shadow): only pages that already have a host page.
 */
static bool
find_backing_nolock(struct pgm_vm *vm, pgm_gpa_t gpa, struct backing *b)
{
    memset(b, 0, sizeof(*b));
    struct pgm_phys_range *r = pgm_phys_map_find(pgm_phys_snapshot(&vm->phys), gpa);
    if (!r || r->kind == PGM_PHYS_MMIO)
        return false;
    struct pgm_page *pg = &r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT];
    enum pgm_handler_kind hk = pgm_page_shadow_state(pg);
    if (hk == PGM_HANDLER_ALL || !pgm_load_acquire(&pg->host))
        return false;
    bool ram = r->kind == PGM_PHYS_RAM ||
               __atomic_load_n(&r->rom_mode, __ATOMIC_ACQUIRE) == PGM_ROM_MODE_SHADOW_RW;
    b->hpa = pg->hpa;
    b->mappable = true;
    b->writable = ram && hk == PGM_HANDLER_NONE;
    return true;
}

/*
 * Prefetch: fill the not-present neighbours of entry @i (its aligned group
 * of 8) whose guest entries are present and accessed - pages the guest
 * touched before and will likely touch again - saving a fault each. A
 * neighbour is installed only from a successful guest walk (so never from an
 * entry with reserved bits) that goes through this very table, without
 * setting any A/D bit (the CPU has not accessed it). Lock held.
 */
static void
prefetch(struct pgm_vcpu *vcpu, struct pgm_shadow_page *sp, unsigned i, pgm_gva_t gva)
{
    struct pgm_shadow *sh = vcpu->vm->shadow;
    for (unsigned j = i & ~7u; j < (i & ~7u) + 8; j++) {
        if (j == i || (spte_get(sp, j) & SPTE_P))
            continue;
        pgm_gva_t va = (gva & ~((uint64_t)(sp_entries(sp) - 1) << 12)) | ((uint64_t)j << 12);
        /* A virtual handler's page is mapped only after its association is
         * checked against a walk (pgm_virt_check_fault), on its own fault. */
        if (pgm_virt_covers(vcpu, va))
            continue;
        struct pgm_walk wj;
        if (pgm_walk(vcpu, va, PGM_ACCESS_NO_AD | PGM_ACCESS_AC, &wj) != 0 ||
            wj.status != PGM_WALK_OK || wj.last_level != 1 ||
            (wj.entry_gpa[1] >> PGM_PAGE_SHIFT) != sp->gfn || !(wj.entry[1] & SPTE_A))
            continue;
        struct backing b;
        if (!find_backing_nolock(vcpu->vm, wj.gpa, &b))
            continue;
        install_leaf(vcpu, sp, j, &wj, &b, false);
        sh->prefetches++;
    }
}

int
pgm_shadow_fault(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, struct pgm_walk *w,
                 enum shadow_fault_action *action)
{
    struct pgm_vm *vm = vcpu->vm;
    struct pgm_shadow *sh = vm->shadow;
    if (!vcpu->bops)
        return -EOPNOTSUPP; /* e.g. an IA-32e guest on a VM whose host paging is 32-bit or PAE */
    int rc = pgm_walk(vcpu, gva, access, w);
    if (rc < 0)
        return rc;
    if (w->status != PGM_WALK_OK) {
        *action = SHADOW_INJECT;
        return 0;
    }
    gva = w->gva; /* as the walk saw it: 32 bits outside IA-32e mode */
    bool write = access & PGM_ACCESS_WRITE;
    /* CR0.WP = 0 let a supervisor write through a read-only entry: the
     * hardware runs with WP = 1, so libpgm finishes such writes itself. */
    if (write && !(w->rights & PGM_RIGHT_WRITE)) {
        *action = SHADOW_FINISH;
        return 0;
    }
    /* Likewise a supervisor write protection keys allow only because
     * CR0.WP = 0 (PKRU.WD applies to supervisor writes only with WP = 1). */
    if (write && !(access & PGM_ACCESS_USER) && !vcpu->wctx.wp && vcpu->wctx.pke &&
        (w->rights & PGM_RIGHT_USER) && ((vcpu->wctx.pkru >> (2 * w->pkey)) & 2)) {
        *action = SHADOW_FINISH;
        return 0;
    }
    /* A virtual handler's page must be associated with this GPA before
     * anything maps it: the page's count then restricts the mapping. */
    pgm_virt_check_fault(vcpu, w);
    struct backing b;
    rc = find_backing(vm, w->gpa, write, &b);
    if (rc < 0)
        return rc;
    /* 32-bit shadow entries reach only the first 4 GiB of host memory. */
    if (!b.mappable || (write && !b.writable) || (vcpu->bops->fmt32 && b.hpa >> 32)) {
        *action = SHADOW_FINISH;
        return 0;
    }

    pthread_mutex_lock(&sh->lock);
    uint64_t gfn = w->gpa >> PGM_PAGE_SHIFT;
    bool monitored = pgm_shadow_gfn_monitored(sh, gfn);
    if (write && monitored && try_unsync(sh, gfn))
        monitored = false; /* the write goes through once the leaf is mapped writable */
    if (write && monitored) {
        pthread_mutex_unlock(&sh->lock);
        *action = SHADOW_FINISH; /* a shadowed guest table */
        return 0;
    }
    unsigned top = shadow_levels(vcpu);
    rc = reserve(sh, top + 1);
    if (rc == 0 && !vcpu->root)
        rc = pgm_shadow_load_root(vcpu, true);
    if (rc < 0) {
        pthread_mutex_unlock(&sh->lock);
        return rc;
    }

    /* The shadow path down to the leaf table, for this guest mode. */
    struct pgm_shadow_page *sp;
    rc = vcpu->bops->build_path(vcpu, gva, w, &sp);
    if (rc < 0) {
        pthread_mutex_unlock(&sh->lock);
        return rc;
    }

    /* The leaf, then up to 7 neighbours the guest has used before. */
    unsigned i = (unsigned)(gva >> 12) & (sp_entries(sp) - 1);
    install_leaf(vcpu, sp, i, w, &b, monitored);
    if (sp->role.level == 1 && !sp->role.direct)
        prefetch(vcpu, sp, i, gva);
    pgm_shadow_commit_flush(vm);
    pthread_mutex_unlock(&sh->lock);
    *action = SHADOW_RETRY;
    return 0;
}

/* ---- debugging ---------------------------------------------------------------- */

int
pgm_shadow_lookup_locked(struct pgm_vcpu *vcpu, pgm_gva_t gva, struct pgm_shadow_info *out)
{
    struct pgm_shadow *sh = vcpu->vm->shadow;
    memset(out, 0, sizeof(*out));
    struct pgm_shadow_page *sp = vcpu->root;
    if (!sp || !vcpu->bops)
        return 0;
    unsigned level = shadow_levels(vcpu);
    out->levels = level;
    out->root = sp->hpa;
    unsigned bits = vcpu->bops->fmt32 ? 10 : 9;
    for (;; level--) {
        unsigned i = (unsigned)(gva >> (12 + bits * (level - 1))) & ((1u << bits) - 1);
        if (level == 3 && pae_format(vcpu))
            i = (unsigned)(gva >> 30) & 3;
        uint64_t e = spte_get(sp, i);
        out->entry[level] = e;
        out->last_level = level;
        if (!(e & SPTE_P))
            return 0;
        if (level == 1) {
            out->present = true;
            out->hpa = (e & SPTE_ADDR) | (gva & ~PGM_PAGE_MASK);
            return 0;
        }
        sp = pgm_shadow_sp_of_hpa(sh, e & SPTE_ADDR);
        if (!sp)
            return -EIO;
    }
}

/* ---- backing changes --------------------------------------------------------- */

unsigned
pgm_shadow_unmap_gfn_counted(struct pgm_vm *vm, uint64_t gfn, bool *flushed)
{
    struct pgm_shadow *sh = vm->shadow;
    if (flushed)
        *flushed = false;
    if (!sh)
        return 0;
    pthread_mutex_lock(&sh->lock);
    /* The reverse map lists exactly the leaves mapping @gfn: O(mappings). */
    unsigned touched = 0;
    struct pgm_rmap_ref ref;
    while (pgm_rmap_gfn_first(&sh->rmap, gfn, &ref)) {
        pgm_shadow_zap_entry(sh, ref.sp, ref.index);
        touched++;
    }
    if (flushed)
        *flushed = sh->flush_pending; /* committed just below */
    pgm_shadow_commit_flush(vm);
    pthread_mutex_unlock(&sh->lock);
    return touched;
}

void
pgm_shadow_unmap_gfn(struct pgm_vm *vm, uint64_t gfn)
{
    pgm_shadow_unmap_gfn_counted(vm, gfn, NULL);
}

/* ---- writes libpgm makes to shadowed guest tables ------------------------------- */

bool
pgm_shadow_snapshot(struct pgm_vm *vm, uint64_t gfn, uint8_t snap[4096])
{
    struct pgm_shadow *sh = vm->shadow;
    if (!sh)
        return false;
    pthread_mutex_lock(&sh->lock);
    bool shadowed = pgm_pool_gfn_first(sh->pool, gfn) != NULL;
    pthread_mutex_unlock(&sh->lock);
    if (shadowed)
        pgm_phys_read_backing(vm, gfn << PGM_PAGE_SHIFT, snap, 4096);
    return shadowed;
}

/*
 * After a guest entry of leaf table @sp changed to @g (entry @i zapped):
 * update the shadow entry in place when the new guest entry is one a walk
 * would accept - present, accessed, no reserved bit, its frame already
 * backed - so the next access does not fault just to sync it. Rights are
 * the role's upper rights and the entry's own; W only with D, for plain
 * RAM, not a shadowed table. G is left out (always safe: a non-global entry
 * is only flushed more often). Lock held.
 */
static void
refill_leaf(struct pgm_vm *vm, struct pgm_shadow_page *sp, unsigned i, uint64_t g)
{
    struct pgm_shadow *sh = vm->shadow;
    bool g32 = sp->role.guest_mode == PGM_MODE_32BIT;
    if (!(g & SPTE_P) || !(g & SPTE_A))
        return;
    uint64_t xd = sp->role.nxe ? SPTE_XD : 0;
    if (!g32) {
        unsigned maxphy = vm->cfg.features.maxphyaddr;
        unsigned top = sp->role.guest_mode == PGM_MODE_PAE ? 62 : 51;
        uint64_t rsvd = (((top >= 63 ? ~0ull : (1ull << (top + 1)) - 1)) & ~((1ull << maxphy) - 1)) |
                        (xd ? 0 : SPTE_XD);
        if (g & rsvd)
            return;
    }
    uint64_t gfn = (g & (g32 ? 0xfffff000ull : SPTE_ADDR)) >> PGM_PAGE_SHIFT;
    struct backing b;
    if (!find_backing_nolock(vm, gfn << PGM_PAGE_SHIFT, &b))
        return;
    unsigned rights = sp->role.access & pgm_shadow_entry_rights(g, xd);
    bool may_write = (rights & PGM_RIGHT_WRITE) && (g & SPTE_D) && b.writable &&
                     !pgm_shadow_gfn_monitored(sh, gfn);
    uint64_t e = b.hpa | SPTE_P | SPTE_A | (g & (SPTE_PWT | SPTE_PCD | SPTE_PAT));
    if (may_write)
        e |= SPTE_RW | SPTE_D;
    if (rights & PGM_RIGHT_USER)
        e |= SPTE_US;
    if (!(rights & PGM_RIGHT_EXEC))
        e |= SPTE_XD;
    if (!g32)
        e |= g & (0xfull << SPTE_PKEY_SHIFT);
    pgm_shadow_gfns(sh, sp)[i] = gfn;
    pgm_rmap_gfn_add(&sh->rmap, gfn, sp, i);
    spte_set(sp, i, e);
    sp->present_count++;
    sh->refills++;
}

void
pgm_shadow_written(struct pgm_vm *vm, uint64_t gfn, const uint8_t snap[4096])
{
    struct pgm_shadow *sh = vm->shadow;
    uint8_t now[4096];
    pgm_phys_read_backing(vm, gfn << PGM_PAGE_SHIFT, now, sizeof(now));
    pthread_mutex_lock(&sh->lock);
    struct pgm_shadow_page *sp, *next;
    pgm_pool_for_each_gfn(sh->pool, gfn, sp, next) {
        if (sp->role.direct)
            continue;
        bool changed = false;
        if (sp->role.fmt32) {
            /* 32-bit guest tables on 32-bit shadows: entry k shadows entry k. */
            for (unsigned k = 0; k < 1024; k++) {
                if (!memcmp(now + 4 * k, snap + 4 * k, 4))
                    continue;
                pgm_shadow_zap_entry(sh, sp, k);
                if (sp->role.level == 1) {
                    uint32_t g;
                    memcpy(&g, now + 4 * k, 4);
                    refill_leaf(vm, sp, k, g);
                }
                changed = true;
            }
        } else if (sp->role.guest_mode == PGM_MODE_32BIT) {
            /*
             * 4-byte guest entries. A PT half (level 1, quadrant q) shadows
             * guest PTEs 512q..512q+511 one to one; a PD quarter (level 2)
             * shadows guest PDEs 256q..256q+255, each as two 2 MiB entries.
             */
            for (unsigned k = 0; k < 1024; k++) {
                if (!memcmp(now + 4 * k, snap + 4 * k, 4))
                    continue;
                if (sp->role.level == 1 && k / 512 == sp->role.quadrant) {
                    uint32_t g;
                    memcpy(&g, now + 4 * k, 4);
                    pgm_shadow_zap_entry(sh, sp, k % 512);
                    refill_leaf(vm, sp, k % 512, g);
                    changed = true;
                } else if (sp->role.level == 2 && k / 256 == sp->role.quadrant) {
                    pgm_shadow_zap_entry(sh, sp, 2 * (k % 256));
                    pgm_shadow_zap_entry(sh, sp, 2 * (k % 256) + 1);
                    changed = true;
                }
            }
        } else {
            for (unsigned i = 0; i < 512; i++) {
                if (memcmp(now + 8 * i, snap + 8 * i, 8) != 0) {
                    pgm_shadow_zap_entry(sh, sp, i);
                    if (sp->role.level == 1) {
                        uint64_t g;
                        memcpy(&g, now + 8 * i, 8);
                        refill_leaf(vm, sp, i, g);
                    }
                    changed = true;
                }
            }
        }
        /*
         * Write flooding: a table written again and again with no
         * translation through it in between is being used as data (zeroed,
         * recycled). Stop shadowing it, so its writes stop costing faults;
         * if it is a table again, the next walk through it shadows it anew.
         * Roots stay: the vCPU runs on them.
         */
        if (changed && sp->role.level == 1)
            hmap_find(sh, sp->hpa)->writes++;
        /* Leaf tables go out of sync instead, unless that is turned off. */
        bool may_flood = sp->role.level > 1 || sh->unsync_threshold == PGM_UNSYNC_OFF;
        if (changed && may_flood && ++sp->write_flood >= sh->flood_threshold &&
            !sp->root_count) {
            unlink_sp(sh, sp);
            forget_sp(sh, sp);
            pgm_pool_free(sh->pool, sp);
            sh->unshadowed++;
        }
    }
    pgm_shadow_commit_flush(vm);
    pthread_mutex_unlock(&sh->lock);
}
