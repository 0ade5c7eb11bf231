/* SPDX-License-Identifier: MIT */
/*
 * Virtual handlers: registration, the GVA -> GPA association of covered
 * pages and its upkeep, and dispatch. The scheme is described in virt.h.
 */
#include <errno.h>
#include <string.h>

#include "pgm/paging.h"
#include "src/alloc.h"
#include "src/atomics.h"
#include "src/handlers/registry.h"
#include "src/handlers/virt.h"
#include "src/modes/shadow.h"
#include "src/vm.h"

/* Two registrations may name one address space if their CR3s share bits
 * 51:12 (the overlap check); a deregistration names one by bits 51:5. */
#define CR3_SAME_PAGE 0x000ffffffffff000ull
#define CR3_EXACT     0x000fffffffffffe0ull
#define VIRT_MAX_SIZE (1ull << 30)

int
pgm_virt_init(struct pgm_vm *vm)
{
    vm->virt.map = pgm_zalloc(&vm->alloc, sizeof(struct pgm_virt_map));
    return vm->virt.map ? 0 : -ENOMEM;
}

void
pgm_virt_fini(struct pgm_vm *vm)
{
    struct pgm_virt_map *map = vm->virt.map;
    for (uint32_t i = 0; map && i < map->count; i++)
        pgm_free(&vm->alloc, map->h[i]);
    pgm_free(&vm->alloc, map);
    vm->virt.map = NULL;
    for (struct pgm_retired *r = vm->virt.retired, *next; r; r = next) {
        next = r->next;
        pgm_free(&vm->alloc, r->ptr);
        pgm_free(&vm->alloc, r);
    }
    vm->virt.retired = NULL;
    pgm_virt_watch_fini(&vm->virt.watch, &vm->alloc);
}

/* ---- address spaces ------------------------------------------------------ */

/* Is @vcpu running the address space of @h? */
static bool
in_as(const struct pgm_vcpu *vcpu, const struct pgm_virt_h *h)
{
    return pgm_virt_same_space(h, vcpu->mode, vcpu->state.cr3);
}

/* Linear address as @vcpu's mode sees it (32 bits outside IA-32e mode). */
static pgm_gva_t
mode_gva(const struct pgm_vcpu *vcpu, pgm_gva_t gva)
{
    return (vcpu->state.efer & PGM_EFER_LMA) ? gva : (uint32_t)gva;
}

static bool
covers(const struct pgm_virt_h *h, pgm_gva_t gva)
{
    return gva - h->pub.gva < h->pub.size;
}

/*
 * The handler of @vcpu's address space covering @gva: a WRITE/ALL one
 * (@hypervisor false) or a HYPERVISOR one. Lock-free: the array is
 * published and handler objects outlive it (retired, not freed). A linear
 * scan: handlers are few (watch points, not a memory map).
 */
static struct pgm_virt_h *
find_covering(const struct pgm_vcpu *vcpu, pgm_gva_t gva, bool hypervisor)
{
    const struct pgm_virt_map *map = pgm_load_acquire(&vcpu->vm->virt.map);
    gva = mode_gva(vcpu, gva);
    for (uint32_t i = 0; i < map->count; i++) {
        struct pgm_virt_h *h = map->h[i];
        if ((h->pub.kind == PGM_VIRT_HANDLER_HYPERVISOR) == hypervisor && covers(h, gva) &&
            in_as(vcpu, h))
            return h;
    }
    return NULL;
}

/* ---- page counts ----------------------------------------------------------- */

/* Descriptor of the RAM/ROM page at @gpa, or NULL (VM lock held). */
static struct pgm_page *
page_at(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    if (gpa == PGM_GPA_NONE)
        return NULL;
    struct pgm_phys_range *r = pgm_phys_map_find(vm->phys.map, gpa);
    return r && r->pages ? &r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT] : NULL;
}

static unsigned
count_shift(const struct pgm_virt_h *h)
{
    return h->pub.kind == PGM_VIRT_HANDLER_ALL ? 16 : 0;
}

/*
 * Count @p in its page's descriptor and take the page out of every shadow
 * that maps it, through the reverse map: those entries were built without
 * this handler and may be wider than it allows. A count that reached
 * PGM_VIRT_COUNT_MAX sticks there (the page then stays restricted, which is safe).
 */
static void
count_page(struct pgm_vm *vm, const struct pgm_virt_h *h, struct pgm_virt_page *p)
{
    struct pgm_page *pg = page_at(vm, p->gpa);
    if (!pg || p->counted)
        return;
    unsigned sh = count_shift(h);
    uint32_t v = __atomic_load_n(&pg->virt, __ATOMIC_RELAXED);
    if (((v >> sh) & PGM_VIRT_COUNT_MAX) != PGM_VIRT_COUNT_MAX)
        __atomic_store_n(&pg->virt, v + (1u << sh), __ATOMIC_RELAXED);
    p->counted = true;
    pgm_handler_reflect_page(vm, p->gpa);
}

/* Stop counting @p. The shadows widen at their next fault. */
static void
uncount_page(struct pgm_vm *vm, const struct pgm_virt_h *h, struct pgm_virt_page *p)
{
    struct pgm_page *pg = page_at(vm, p->gpa);
    if (pg && p->counted) {
        unsigned sh = count_shift(h);
        uint32_t v = __atomic_load_n(&pg->virt, __ATOMIC_RELAXED);
        if (((v >> sh) & PGM_VIRT_COUNT_MAX) != PGM_VIRT_COUNT_MAX)
            __atomic_store_n(&pg->virt, v - (1u << sh), __ATOMIC_RELAXED);
    }
    p->counted = false;
}

/* ---- resolving covered pages --------------------------------------------------- */

/* Take @vcpu's paging state as the one @h's address space is walked with. */
static void
capture_ctx(struct pgm_virt_h *h, const struct pgm_vcpu *vcpu)
{
    h->mode = vcpu->mode;
    h->wctx = vcpu->wctx;
    h->have_ctx = true;
}

/*
 * Walk @gva with @h's captured paging state, as a supervisor read that
 * sets no A/D bit and that SMAP and protection keys do not refuse: only
 * whether and where the page is mapped matters.
 */
static int
walk_detached(struct pgm_vm *vm, const struct pgm_virt_h *h, pgm_gva_t gva, struct pgm_walk *w)
{
    struct pgm_vcpu tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.vm = vm;
    tmp.mode = h->mode;
    tmp.gops = pgm_guest_ops_for(h->mode);
    tmp.wctx = h->wctx;
    tmp.wctx.pkru = 0;
    if (h->mode == PGM_MODE_AMD64 || h->mode == PGM_MODE_LA57)
        tmp.state.efer = PGM_EFER_LMA;
    return tmp.gops->walk(&tmp, gva, PGM_ACCESS_NO_AD | PGM_ACCESS_AC, w);
}

static void
watch_path(struct pgm_vm *vm, const uint64_t path[PGM_MAX_LEVELS], bool add)
{
    struct pgm_virt *v = &vm->virt;
    for (unsigned l = 0; l < PGM_MAX_LEVELS; l++) {
        if (path[l] == UINT64_MAX)
            continue;
        if (add)
            pgm_virt_watch_add(&v->watch, path[l]);
        else
            pgm_virt_watch_del(&v->watch, path[l]);
    }
}

/* Re-resolve covered page @idx of @h (VM lock held). */
static void
resolve_page(struct pgm_vm *vm, struct pgm_virt_h *h, uint64_t idx)
{
    struct pgm_virt_page *p = &h->pages[idx];
    pgm_gva_t gva = h->pub.gva + (idx << PGM_PAGE_SHIFT);
    pgm_gpa_t gpa = PGM_GPA_NONE;
    uint64_t path[PGM_MAX_LEVELS];
    for (unsigned l = 0; l < PGM_MAX_LEVELS; l++)
        path[l] = UINT64_MAX;
    struct pgm_walk w;
    /* Outside IA-32e mode a linear address has 32 bits: a page above them
     * is not in this address space (dispatch never matches it either). */
    bool ia32e = h->mode == PGM_MODE_AMD64 || h->mode == PGM_MODE_LA57;
    if (h->have_ctx && (ia32e || gva <= UINT32_MAX) && walk_detached(vm, h, gva, &w) == 0 &&
        w.status != PGM_WALK_GP) {
        /* The faulting level's table counts too: a write to it may map the page. */
        for (unsigned l = w.last_level; l >= 1 && l <= w.top_level; l++)
            path[l - 1] = w.entry_gpa[l] >> PGM_PAGE_SHIFT;
        if (w.status == PGM_WALK_OK)
            gpa = w.gpa & PGM_PAGE_MASK;
    }
    /*
     * The watch set only accelerates pgm_virt_table_written(); if it
     * cannot grow, every write is checked against the paths (slow, exact).
     */
    if (memcmp(path, p->path, sizeof(path)) != 0) {
        if (!vm->virt.watch_all &&
            pgm_virt_watch_reserve(&vm->virt.watch, &vm->alloc, PGM_MAX_LEVELS) < 0)
            vm->virt.watch_all = true;
        if (!vm->virt.watch_all) {
            watch_path(vm, p->path, false);
            watch_path(vm, path, true);
        }
        memcpy(p->path, path, sizeof(path));
    }
    bool was_resolved = p->resolved;
    /* Read without the lock by pgm_virt_check_fault(), like gpa. */
    __atomic_store_n(&p->resolved, h->have_ctx, __ATOMIC_RELAXED);
    if (gpa == p->gpa)
        return;
    pgm_gpa_t old = p->gpa;
    uncount_page(vm, h, p);
    __atomic_store_n(&p->gpa, gpa, __ATOMIC_RELAXED);
    count_page(vm, h, p);
    if (!was_resolved)
        return; /* the first resolution is no change of mapping */
    vm->stats.virt_remaps++;
    if (h->pub.invalidate)
        h->pub.invalidate(vm, gva, old, gpa, h->pub.user);
}

static void
resolve_all(struct pgm_vm *vm, struct pgm_virt_h *h)
{
    for (uint64_t i = 0; i < h->npages; i++)
        resolve_page(vm, h, i);
}

void
pgm_virt_as_loaded(struct pgm_vcpu *vcpu)
{
    struct pgm_vm *vm = vcpu->vm;
    if (!__atomic_load_n(&vm->virt.active, __ATOMIC_ACQUIRE))
        return;
    pgm_vm_lock(vm);
    struct pgm_virt_map *map = vm->virt.map;
    for (uint32_t i = 0; i < map->count; i++) {
        struct pgm_virt_h *h = map->h[i];
        if (h->npages && in_as(vcpu, h)) {
            capture_ctx(h, vcpu);
            resolve_all(vm, h);
        }
    }
    pgm_vm_unlock(vm);
}

void
pgm_virt_invlpg(struct pgm_vcpu *vcpu, pgm_gva_t gva)
{
    struct pgm_vm *vm = vcpu->vm;
    if (!__atomic_load_n(&vm->virt.active, __ATOMIC_ACQUIRE))
        return;
    gva = mode_gva(vcpu, gva);
    pgm_vm_lock(vm);
    struct pgm_virt_map *map = vm->virt.map;
    for (uint32_t i = 0; i < map->count; i++) {
        struct pgm_virt_h *h = map->h[i];
        if (h->npages && covers(h, gva) && in_as(vcpu, h)) {
            capture_ctx(h, vcpu);
            resolve_page(vm, h, (gva - h->pub.gva) >> PGM_PAGE_SHIFT);
        }
    }
    pgm_vm_unlock(vm);
}

void
pgm_virt_table_written(struct pgm_vm *vm, uint64_t gfn)
{
    if (!__atomic_load_n(&vm->virt.active, __ATOMIC_ACQUIRE))
        return;
    pgm_vm_lock(vm);
    if (vm->virt.watch_all || pgm_virt_watch_has(&vm->virt.watch, gfn)) {
        struct pgm_virt_map *map = vm->virt.map;
        for (uint32_t i = 0; i < map->count; i++) {
            struct pgm_virt_h *h = map->h[i];
            for (uint64_t k = 0; h->have_ctx && k < h->npages; k++) {
                for (unsigned l = 0; l < PGM_MAX_LEVELS; l++) {
                    if (h->pages[k].path[l] == gfn) {
                        resolve_page(vm, h, k);
                        break;
                    }
                }
            }
        }
    }
    pgm_vm_unlock(vm);
}

void
pgm_virt_check_fault(struct pgm_vcpu *vcpu, const struct pgm_walk *w)
{
    struct pgm_vm *vm = vcpu->vm;
    if (!__atomic_load_n(&vm->virt.active, __ATOMIC_ACQUIRE) || w->status != PGM_WALK_OK)
        return;
    struct pgm_virt_h *h = find_covering(vcpu, w->gva, false);
    if (!h)
        return;
    uint64_t idx = (mode_gva(vcpu, w->gva) - h->pub.gva) >> PGM_PAGE_SHIFT;
    pgm_gpa_t now = __atomic_load_n(&h->pages[idx].gpa, __ATOMIC_RELAXED);
    if (now == (w->gpa & PGM_PAGE_MASK) && __atomic_load_n(&h->pages[idx].resolved,
                                                           __ATOMIC_RELAXED))
        return;
    pgm_vm_lock(vm);
    capture_ctx(h, vcpu);
    resolve_page(vm, h, idx);
    pgm_vm_unlock(vm);
}

bool
pgm_virt_covers(const struct pgm_vcpu *vcpu, pgm_gva_t gva)
{
    return __atomic_load_n(&vcpu->vm->virt.active, __ATOMIC_ACQUIRE) &&
           find_covering(vcpu, gva, false) != NULL;
}

/* Count (@add) or forget the counts of the associations pointing into
 * [gpa, gpa + size): a RAM/ROM range appears or goes. VM lock held. */
static void
range_changed(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size, bool add)
{
    struct pgm_virt_map *map = vm->virt.map;
    for (uint32_t i = 0; i < map->count; i++) {
        struct pgm_virt_h *h = map->h[i];
        for (uint64_t k = 0; k < h->npages; k++) {
            struct pgm_virt_page *p = &h->pages[k];
            if (p->gpa == PGM_GPA_NONE || p->gpa - gpa >= size)
                continue;
            if (add)
                count_page(vm, h, p);
            else
                p->counted = false; /* the descriptors go with the range */
        }
    }
}

void
pgm_virt_range_added(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    range_changed(vm, gpa, size, true);
}

void
pgm_virt_range_removed(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    range_changed(vm, gpa, size, false);
}

/* ---- dispatch -------------------------------------------------------------- */

int
pgm_virt_dispatch(struct pgm_vcpu *vcpu, pgm_gva_t gva, pgm_gpa_t gpa, void *rbuf,
                  const void *wbuf, size_t n)
{
    struct pgm_vm *vm = vcpu->vm;
    if (!__atomic_load_n(&vm->virt.active, __ATOMIC_ACQUIRE))
        return 1;
    struct pgm_virt_h *h = find_covering(vcpu, gva, false);
    if (!h || (h->pub.kind == PGM_VIRT_HANDLER_WRITE && !wbuf))
        return 1;
    __atomic_fetch_add(&vm->stats.handler_calls, 1, __ATOMIC_RELAXED);
    /* A write handler gets a private copy of the bytes, as physical ones do. */
    uint8_t tmp[PGM_PAGE_SIZE];
    if (wbuf)
        memcpy(tmp, wbuf, n);
    enum pgm_handler_result res =
        h->pub.fn(vcpu, mode_gva(vcpu, gva), gpa, wbuf ? tmp : rbuf, n, wbuf != NULL, h->pub.user);
    switch (res) {
    case PGM_HANDLER_HANDLED: return 0;
    case PGM_HANDLER_EXIT: return PGM_RC_HANDLER_EXIT;
    case PGM_HANDLER_DEFAULT:
    default: return 1;
    }
}

int
pgm_virt_hypervisor_fault(struct pgm_vcpu *vcpu, pgm_gva_t cr2, bool write,
                          struct pgm_fault_out *out)
{
    struct pgm_vm *vm = vcpu->vm;
    if (!__atomic_load_n(&vm->virt.any, __ATOMIC_ACQUIRE))
        return 1;
    struct pgm_virt_h *h = find_covering(vcpu, cr2, true);
    if (!h)
        return 1;
    __atomic_fetch_add(&vm->stats.handler_calls, 1, __ATOMIC_RELAXED);
    enum pgm_handler_result res =
        h->pub.fn(vcpu, mode_gva(vcpu, cr2), PGM_GPA_NONE, NULL, 0, write, h->pub.user);
    if (res == PGM_HANDLER_HANDLED) {
        out->result = PGM_FAULT_RESUME;
        return 0;
    }
    if (res == PGM_HANDLER_EXIT) {
        out->result = PGM_FAULT_EXIT;
        out->exit_reason = PGM_EXIT_HANDLER;
        out->exit_gpa = PGM_GPA_NONE;
        out->exit_write = write;
        out->address = mode_gva(vcpu, cr2);
        return 0;
    }
    return 1;
}

/* ---- registration ------------------------------------------------------------ */

static bool
same_space_may_overlap(const struct pgm_virt_handler *a, const struct pgm_virt_handler *b)
{
    return !((a->cr3 ^ b->cr3) & CR3_SAME_PAGE) && a->gva < b->gva + b->size &&
           b->gva < a->gva + a->size;
}

/* Publish a copy of the array without @drop (if non-NULL) and with @add
 * (if non-NULL); retire the old array. VM lock held. */
static int
publish(struct pgm_vm *vm, const struct pgm_virt_h *drop, struct pgm_virt_h *add)
{
    struct pgm_virt_map *cur = vm->virt.map;
    uint32_t n = cur->count + (add ? 1 : 0) - (drop ? 1 : 0);
    struct pgm_virt_map *map = pgm_alloc(&vm->alloc, sizeof(*map) + n * sizeof(map->h[0]));
    struct pgm_retired *r = pgm_alloc(&vm->alloc, sizeof(*r));
    if (!map || !r) {
        pgm_free(&vm->alloc, map);
        pgm_free(&vm->alloc, r);
        return -ENOMEM;
    }
    map->count = 0;
    for (uint32_t i = 0; i < cur->count; i++)
        if (cur->h[i] != drop)
            map->h[map->count++] = cur->h[i];
    if (add)
        map->h[map->count++] = add;
    pgm_store_release(&vm->virt.map, map);
    r->ptr = cur;
    r->next = vm->virt.retired;
    vm->virt.retired = r;
    return 0;
}

PGM_API int
pgm_virt_handler_register(struct pgm_vm *vm, const struct pgm_virt_handler *h)
{
    if (!vm || !h || !h->fn)
        return -EINVAL;
    if (h->kind != PGM_VIRT_HANDLER_WRITE && h->kind != PGM_VIRT_HANDLER_ALL &&
        h->kind != PGM_VIRT_HANDLER_HYPERVISOR)
        return -EINVAL;
    if ((h->gva | h->size) & ~PGM_PAGE_MASK || !h->size || h->size > VIRT_MAX_SIZE ||
        h->gva + h->size - 1 < h->gva)
        return -EINVAL;
    if (!vm->shadow)
        return -EOPNOTSUPP;
    uint64_t npages = h->kind == PGM_VIRT_HANDLER_HYPERVISOR ? 0 : h->size >> PGM_PAGE_SHIFT;
    struct pgm_virt_h *obj =
        pgm_zalloc(&vm->alloc, sizeof(*obj) + npages * sizeof(obj->pages[0]));
    if (!obj)
        return -ENOMEM;
    obj->pub = *h;
    obj->npages = npages;
    for (uint64_t i = 0; i < npages; i++) {
        obj->pages[i].gpa = PGM_GPA_NONE;
        for (unsigned l = 0; l < PGM_MAX_LEVELS; l++)
            obj->pages[i].path[l] = UINT64_MAX;
    }
    pgm_vm_lock(vm);
    int rc = 0;
    struct pgm_virt_map *map = vm->virt.map;
    for (uint32_t i = 0; i < map->count && rc == 0; i++)
        if (same_space_may_overlap(&map->h[i]->pub, h))
            rc = -EEXIST;
    if (rc == 0)
        rc = publish(vm, NULL, obj);
    if (rc < 0) {
        pgm_vm_unlock(vm);
        pgm_free(&vm->alloc, obj);
        return rc;
    }
    __atomic_fetch_add(&vm->virt.any, 1, __ATOMIC_RELEASE);
    vm->virt.ever = true;
    if (npages) {
        __atomic_fetch_add(&vm->virt.active, 1, __ATOMIC_RELEASE);
        /* Resolve now if a vCPU runs that address space, else at its first load. */
        for (unsigned i = 0; i < vm->vcpu_count && !obj->have_ctx; i++)
            if (in_as(&vm->vcpus[i], obj))
                capture_ctx(obj, &vm->vcpus[i]);
        if (obj->have_ctx)
            resolve_all(vm, obj);
    }
    pgm_vm_unlock(vm);
    return 0;
}

/* The handler registered for (@cr3, @gva) exactly (VM lock held). */
static struct pgm_virt_h *
find_registered(struct pgm_vm *vm, uint64_t cr3, pgm_gva_t gva, bool covering)
{
    struct pgm_virt_map *map = vm->virt.map;
    for (uint32_t i = 0; i < map->count; i++) {
        struct pgm_virt_h *h = map->h[i];
        if (!((h->pub.cr3 ^ cr3) & CR3_EXACT) && (covering ? covers(h, gva) : h->pub.gva == gva))
            return h;
    }
    return NULL;
}

PGM_API int
pgm_virt_handler_deregister(struct pgm_vm *vm, uint64_t cr3, pgm_gva_t gva)
{
    if (!vm)
        return -EINVAL;
    pgm_vm_lock(vm);
    struct pgm_virt_h *h = find_registered(vm, cr3, gva, false);
    struct pgm_retired *r = h ? pgm_alloc(&vm->alloc, sizeof(*r)) : NULL;
    int rc = !h ? -ENOENT : !r ? -ENOMEM : publish(vm, h, NULL);
    if (rc < 0) {
        pgm_free(&vm->alloc, r);
        pgm_vm_unlock(vm);
        return rc;
    }
    for (uint64_t i = 0; i < h->npages; i++) {
        uncount_page(vm, h, &h->pages[i]);
        if (!vm->virt.watch_all)
            watch_path(vm, h->pages[i].path, false);
    }
    if (h->npages)
        __atomic_fetch_sub(&vm->virt.active, 1, __ATOMIC_RELEASE);
    __atomic_fetch_sub(&vm->virt.any, 1, __ATOMIC_RELEASE);
    /* A lookup that found it may still be using it: free with the VM. */
    r->ptr = h;
    r->next = vm->virt.retired;
    vm->virt.retired = r;
    pgm_vm_unlock(vm);
    return 0;
}

PGM_API int
pgm_virt_handler_gpa(struct pgm_vm *vm, uint64_t cr3, pgm_gva_t gva, pgm_gpa_t *gpa)
{
    if (!vm || !gpa)
        return -EINVAL;
    pgm_vm_lock(vm);
    struct pgm_virt_h *h = find_registered(vm, cr3, gva, true);
    int rc = h && h->npages ? 0 : -ENOENT;
    if (rc == 0) {
        const struct pgm_virt_page *p = &h->pages[(gva - h->pub.gva) >> PGM_PAGE_SHIFT];
        *gpa = p->resolved ? p->gpa : PGM_GPA_NONE;
    }
    pgm_vm_unlock(vm);
    return rc;
}
