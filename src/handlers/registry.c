/* SPDX-License-Identifier: MIT */
/*
 * Physical handler registry: registration, move/resize, temp-off/reset and
 * the per-page handler state. See registry.h for the publication scheme.
 */
#include <errno.h>
#include <string.h>

#include "src/alloc.h"
#include "src/handlers/registry.h"
#include "src/modes/shadow.h"
#include "src/nested/nested.h"
#include "src/vm.h"

int
pgm_handlers_init(struct pgm_vm *vm)
{
    vm->handlers.map = pgm_zalloc(&vm->alloc, sizeof(struct pgm_handler_map));
    return vm->handlers.map ? 0 : -ENOMEM;
}

void
pgm_handlers_fini(struct pgm_vm *vm)
{
    struct pgm_handler_map *map = vm->handlers.map;
    if (map) {
        for (uint32_t i = 0; i < map->count; i++)
            pgm_free(&vm->alloc, (void *)map->h[i]);
        pgm_free(&vm->alloc, map);
        vm->handlers.map = NULL;
    }
    struct pgm_retired *r = vm->handlers.retired;
    while (r) {
        struct pgm_retired *next = r->next;
        pgm_free(&vm->alloc, r->ptr);
        pgm_free(&vm->alloc, r);
        r = next;
    }
    vm->handlers.retired = NULL;
}

const struct pgm_phys_handler *
pgm_handler_find(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    const struct pgm_handler_map *map = pgm_load_acquire(&vm->handlers.map);
    uint32_t lo = 0, hi = map->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct pgm_phys_handler *h = map->h[mid];
        if (gpa < h->gpa)
            hi = mid;
        else if (gpa - h->gpa >= h->size)
            lo = mid + 1;
        else
            return h;
    }
    return NULL;
}

bool
pgm_handlers_overlap(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    const struct pgm_handler_map *map = vm->handlers.map;
    for (uint32_t i = 0; i < map->count; i++) {
        const struct pgm_phys_handler *h = map->h[i];
        if (h->gpa < gpa + size && gpa < h->gpa + h->size)
            return true;
    }
    return false;
}

/*
 * Check that every page of [gpa, gpa + size) exists with the kind the
 * handler needs: RAM or ROM for WRITE/ALL, MMIO for MMIO.
 */
static int
check_span(struct pgm_vm *vm, const struct pgm_phys_handler *h)
{
    if (h->kind != PGM_HANDLER_WRITE && h->kind != PGM_HANDLER_ALL && h->kind != PGM_HANDLER_MMIO)
        return -EINVAL;
    if (!h->fn || !h->size || (h->gpa & ~PGM_PAGE_MASK) || (h->size & ~PGM_PAGE_MASK) ||
        h->gpa + h->size < h->gpa)
        return -EINVAL;
    const struct pgm_phys_map *map = vm->phys.map;
    pgm_gpa_t at = h->gpa, end = h->gpa + h->size;
    while (at < end) {
        const struct pgm_phys_range *r = pgm_phys_map_find(map, at);
        if (!r)
            return -EINVAL;
        bool mmio = r->kind == PGM_PHYS_MMIO;
        if (mmio != (h->kind == PGM_HANDLER_MMIO))
            return -EINVAL;
        at = r->start + r->size;
    }
    return 0;
}

/*
 * A page's handler state changed: remove the shadow entries that map it
 * (found through the reverse map, so the cost is the page's mappings, never
 * the pool's population) and count them. VM lock held (it guards vm->stats).
 */
void
pgm_handler_reflect_page(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    bool flushed;
    vm->stats.handler_entries_touched +=
        pgm_shadow_unmap_gfn_counted(vm, gpa >> PGM_PAGE_SHIFT, &flushed);
    vm->stats.handler_flushes += flushed;
}

/* Set the handler state of every RAM/ROM page of [gpa, gpa + size). VM lock held. */
static void
set_page_states(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size, uint32_t state)
{
    const struct pgm_phys_map *map = vm->phys.map;
    for (pgm_gpa_t at = gpa; at < gpa + size; at += PGM_PAGE_SIZE) {
        struct pgm_phys_range *r = pgm_phys_map_find(map, at);
        if (r && r->pages) {
            __atomic_store_n(&r->pages[(at - r->start) >> PGM_PAGE_SHIFT].handler, state,
                             __ATOMIC_RELAXED);
            /* Shadows mapped it under the old state: they must fault again. */
            pgm_handler_reflect_page(vm, at);
            /* The nested leaf is updated in place (flushed at unlock). */
            pgm_nested_gfn_changed(vm, at >> PGM_PAGE_SHIFT);
        }
    }
}

/*
 * Publish a copy of the current array with @old removed (if non-NULL) and
 * @add inserted (if non-NULL). On failure nothing changes. VM lock held.
 */
static int
publish(struct pgm_vm *vm, const struct pgm_phys_handler *old, const struct pgm_phys_handler *add)
{
    struct pgm_handler_map *cur = vm->handlers.map;
    uint32_t n = cur->count - (old ? 1 : 0) + (add ? 1 : 0);
    struct pgm_handler_map *map = pgm_alloc(&vm->alloc, sizeof(*map) + n * sizeof(map->h[0]));
    struct pgm_retired *r1 = pgm_alloc(&vm->alloc, sizeof(*r1));
    struct pgm_retired *r2 = old ? pgm_alloc(&vm->alloc, sizeof(*r2)) : NULL;
    if (!map || !r1 || (old && !r2)) {
        pgm_free(&vm->alloc, map);
        pgm_free(&vm->alloc, r1);
        pgm_free(&vm->alloc, r2);
        return -ENOMEM;
    }
    uint32_t j = 0;
    bool added = false;
    for (uint32_t i = 0; i < cur->count; i++) {
        if (cur->h[i] == old)
            continue;
        if (add && !added && add->gpa < cur->h[i]->gpa) {
            map->h[j++] = add;
            added = true;
        }
        map->h[j++] = cur->h[i];
    }
    if (add && !added)
        map->h[j++] = add;
    map->count = j;
    pgm_store_release(&vm->handlers.map, map);
    /* Readers may still hold the old array or the old object: keep both. */
    r1->ptr = cur;
    r1->next = vm->handlers.retired;
    vm->handlers.retired = r1;
    if (old) {
        r2->ptr = (void *)old;
        r2->next = vm->handlers.retired;
        vm->handlers.retired = r2;
    }
    return 0;
}

PGM_API int
pgm_handler_register(struct pgm_vm *vm, const struct pgm_phys_handler *h)
{
    if (!vm || !h)
        return -EINVAL;
    struct pgm_phys_handler *copy = pgm_alloc(&vm->alloc, sizeof(*copy));
    if (!copy)
        return -ENOMEM;
    *copy = *h;
    pgm_vm_lock(vm);
    int rc = check_span(vm, copy);
    if (rc == 0 && pgm_handlers_overlap(vm, copy->gpa, copy->size))
        rc = -EEXIST;
    if (rc == 0)
        rc = publish(vm, NULL, copy);
    if (rc == 0 && copy->kind != PGM_HANDLER_MMIO)
        set_page_states(vm, copy->gpa, copy->size, (uint32_t)copy->kind);
    pgm_vm_unlock(vm);
    if (rc < 0)
        pgm_free(&vm->alloc, copy);
    return rc;
}

/* The handler starting exactly at @gpa (VM lock held). */
static const struct pgm_phys_handler *
find_by_start(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    const struct pgm_handler_map *map = vm->handlers.map;
    for (uint32_t i = 0; i < map->count; i++)
        if (map->h[i]->gpa == gpa)
            return map->h[i];
    return NULL;
}

PGM_API int
pgm_handler_deregister(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    if (!vm)
        return -EINVAL;
    pgm_vm_lock(vm);
    const struct pgm_phys_handler *h = find_by_start(vm, gpa);
    int rc = h ? publish(vm, h, NULL) : -ENOENT;
    if (rc == 0 && h->kind != PGM_HANDLER_MMIO)
        set_page_states(vm, h->gpa, h->size, PGM_HANDLER_NONE);
    pgm_vm_unlock(vm);
    return rc;
}

PGM_API int
pgm_handler_modify(struct pgm_vm *vm, pgm_gpa_t gpa, pgm_gpa_t new_gpa, uint64_t new_size)
{
    if (!vm)
        return -EINVAL;
    struct pgm_phys_handler *moved = pgm_alloc(&vm->alloc, sizeof(*moved));
    if (!moved)
        return -ENOMEM;
    pgm_vm_lock(vm);
    const struct pgm_phys_handler *h = find_by_start(vm, gpa);
    int rc = h ? 0 : -ENOENT;
    if (rc == 0) {
        *moved = *h;
        moved->gpa = new_gpa;
        moved->size = new_size;
        rc = check_span(vm, moved);
    }
    if (rc == 0) {
        /* Overlap with anything but itself. */
        const struct pgm_handler_map *map = vm->handlers.map;
        for (uint32_t i = 0; i < map->count && rc == 0; i++) {
            const struct pgm_phys_handler *o = map->h[i];
            if (o != h && o->gpa < new_gpa + new_size && new_gpa < o->gpa + o->size)
                rc = -EEXIST;
        }
    }
    if (rc == 0)
        rc = publish(vm, h, moved);
    if (rc == 0 && moved->kind != PGM_HANDLER_MMIO) {
        set_page_states(vm, h->gpa, h->size, PGM_HANDLER_NONE);
        set_page_states(vm, new_gpa, new_size, (uint32_t)moved->kind);
    }
    pgm_vm_unlock(vm);
    if (rc < 0)
        pgm_free(&vm->alloc, moved);
    return rc;
}

/* Set or clear the temp-off bit of one page of a WRITE/ALL handler. */
static int
set_temp_off(struct pgm_vm *vm, pgm_gpa_t gpa, bool off)
{
    const struct pgm_phys_handler *h = pgm_handler_find(vm, gpa);
    if (!h)
        return -ENOENT;
    if (h->kind == PGM_HANDLER_MMIO)
        return -EINVAL;
    struct pgm_phys_range *r = pgm_phys_map_find(vm->phys.map, gpa);
    struct pgm_page *pg = &r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT];
    __atomic_store_n(&pg->handler, (uint32_t)h->kind | (off ? PGM_PAGE_HANDLER_TEMP_OFF : 0),
                     __ATOMIC_RELAXED);
    /*
     * Turning the handler off only widens what the guest may do: shadows
     * pick that up on the next fault. Re-arming narrows it: unmap now.
     */
    if (!off) {
        pgm_handler_reflect_page(vm, gpa);
        pgm_nested_gfn_changed(vm, gpa >> PGM_PAGE_SHIFT);
    }
    return 0;
}

PGM_API int
pgm_handler_temp_off(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    if (!vm)
        return -EINVAL;
    pgm_vm_lock(vm);
    int rc = set_temp_off(vm, gpa, true);
    pgm_vm_unlock(vm);
    return rc;
}

void
pgm_handler_rearm_page_locked(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    set_temp_off(vm, gpa, false);
}

PGM_API int
pgm_handler_reset(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    if (!vm)
        return -EINVAL;
    pgm_vm_lock(vm);
    const struct pgm_phys_handler *h = find_by_start(vm, gpa);
    int rc = h ? 0 : -ENOENT;
    if (rc == 0 && h->kind != PGM_HANDLER_MMIO)
        set_page_states(vm, h->gpa, h->size, (uint32_t)h->kind);
    pgm_vm_unlock(vm);
    return rc;
}

PGM_API enum pgm_handler_kind
pgm_handler_state(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    if (!vm)
        return PGM_HANDLER_NONE;
    const struct pgm_phys_range *r = pgm_phys_map_find(pgm_phys_snapshot(&vm->phys), gpa);
    if (!r)
        return PGM_HANDLER_NONE;
    if (r->kind == PGM_PHYS_MMIO)
        return pgm_handler_find(vm, gpa) ? PGM_HANDLER_MMIO : PGM_HANDLER_NONE;
    return pgm_page_handler_state(&r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT]);
}
