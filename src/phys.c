/* SPDX-License-Identifier: MIT */
/*
 * Guest-physical memory: range registration and byte-granular access.
 * See src/phys.h for the snapshot scheme that lets walkers read the map
 * without a lock.
 */
#include <errno.h>
#include <string.h>

#include "src/alloc.h"
#include "src/handlers/registry.h"
#include "src/handlers/virt.h"
#include "src/modes/shadow.h"
#include "src/nested/nested.h"
#include "src/phys.h"
#include "src/vm.h"

_Alignas(4096) const uint8_t pgm_zero_page[4096];
_Alignas(4096) const uint8_t pgm_ones_page[4096] = {
    /* All-ones: what a PC bus returns for reads of nothing. Filled by the
     * designated range initialiser below (GNU range designators are not C11,
     * so the page is written out through a macro). */
#define PGM_FF8   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
#define PGM_FF64  PGM_FF8, PGM_FF8, PGM_FF8, PGM_FF8, PGM_FF8, PGM_FF8, PGM_FF8, PGM_FF8
#define PGM_FF512 PGM_FF64, PGM_FF64, PGM_FF64, PGM_FF64, PGM_FF64, PGM_FF64, PGM_FF64, PGM_FF64
    PGM_FF512, PGM_FF512, PGM_FF512, PGM_FF512, PGM_FF512, PGM_FF512, PGM_FF512, PGM_FF512,
#undef PGM_FF512
#undef PGM_FF64
#undef PGM_FF8
};

static int
retire(struct pgm_vm *vm, void *ptr)
{
    struct pgm_retired *r = pgm_alloc(&vm->alloc, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->ptr = ptr;
    r->next = vm->phys.retired;
    vm->phys.retired = r;
    return 0;
}

int
pgm_phys_init(struct pgm_vm *vm)
{
    vm->phys.map = pgm_zalloc(&vm->alloc, sizeof(struct pgm_phys_map));
    return vm->phys.map ? 0 : -ENOMEM;
}

static void
free_range(struct pgm_vm *vm, struct pgm_phys_range *r, int free_struct)
{
    if (r->block) {
        /* Page descriptors point into the block: nothing to free per page. */
        vm->be->free_ram_block(vm->be_ctx, r->block_hpa, r->block, r->size >> PGM_PAGE_SHIFT);
        r->block = NULL;
        pgm_free(&vm->alloc, r->pages);
        r->pages = NULL;
    }
    if (r->kind == PGM_PHYS_ROM) {
        /* `pages` is only a view: free what rom_image / rom_shadow own. */
        struct pgm_page *own[2] = { r->rom_image, r->rom_shadow };
        for (int k = 0; k < 2; k++) {
            for (uint64_t i = 0; own[k] && i < r->size >> PGM_PAGE_SHIFT; i++)
                if (own[k][i].host)
                    vm->be->free_page(vm->be_ctx, own[k][i].hpa, own[k][i].host);
            pgm_free(&vm->alloc, own[k]);
        }
        r->rom_image = r->rom_shadow = NULL;
        pgm_free(&vm->alloc, r->pages);
        r->pages = NULL;
    }
    if (r->pages) {
        uint64_t n = r->size >> PGM_PAGE_SHIFT;
        for (uint64_t i = 0; i < n; i++) {
            if (r->pages[i].host) {
                vm->be->free_page(vm->be_ctx, r->pages[i].hpa, r->pages[i].host);
                r->pages[i].host = NULL;
            }
        }
        pgm_free(&vm->alloc, r->pages);
        r->pages = NULL;
    }
    if (free_struct)
        pgm_free(&vm->alloc, r);
}

void
pgm_phys_fini(struct pgm_vm *vm)
{
    struct pgm_phys_map *map = vm->phys.map;
    if (map) {
        for (uint32_t i = 0; i < map->count; i++)
            free_range(vm, map->range[i], 1);
        pgm_free(&vm->alloc, map);
        vm->phys.map = NULL;
    }
    /* Retired ranges had their pages freed when removed; free the rest. */
    struct pgm_retired *r = vm->phys.retired;
    while (r) {
        struct pgm_retired *next = r->next;
        pgm_free(&vm->alloc, r->ptr);
        pgm_free(&vm->alloc, r);
        r = next;
    }
    vm->phys.retired = NULL;
}

static int
check_span(const struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    if (!size || (gpa & ~PGM_PAGE_MASK) || (size & ~PGM_PAGE_MASK))
        return -EINVAL;
    if (gpa + size < gpa)
        return -EINVAL;
    uint64_t limit = 1ull << vm->cfg.features.maxphyaddr;
    if (gpa >= limit || size > limit - gpa)
        return -EINVAL;
    return 0;
}

/*
 * Insert @r into a new snapshot. Called with the VM lock held. On success
 * the old snapshot is retired. Fails with -EEXIST on overlap.
 */
static int
publish_insert(struct pgm_vm *vm, struct pgm_phys_range *r)
{
    struct pgm_phys_map *old = vm->phys.map;
    uint32_t pos = 0;
    while (pos < old->count && old->range[pos]->start < r->start)
        pos++;
    if (pos > 0) {
        const struct pgm_phys_range *prev = old->range[pos - 1];
        if (prev->start + prev->size > r->start)
            return -EEXIST;
    }
    if (pos < old->count && r->start + r->size > old->range[pos]->start)
        return -EEXIST;

    struct pgm_phys_map *map = pgm_alloc(&vm->alloc, sizeof(*map) +
                                         (old->count + 1) * sizeof(map->range[0]));
    if (!map)
        return -ENOMEM;
    if (retire(vm, old) < 0) {
        pgm_free(&vm->alloc, map);
        return -ENOMEM;
    }
    map->count = old->count + 1;
    memcpy(map->range, old->range, pos * sizeof(map->range[0]));
    map->range[pos] = r;
    memcpy(map->range + pos + 1, old->range + pos, (old->count - pos) * sizeof(map->range[0]));
    pgm_store_release(&vm->phys.map, map);
    return 0;
}

static int
add_range(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size, enum pgm_phys_kind kind,
          const void *image, size_t image_size)
{
    if (!vm)
        return -EINVAL;
    int rc = check_span(vm, gpa, size);
    if (rc < 0)
        return rc;
    if (kind == PGM_PHYS_ROM && ((image_size && !image) || image_size > size))
        return -EINVAL;

    struct pgm_phys_range *r = pgm_zalloc(&vm->alloc, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->start = gpa;
    r->size = size;
    r->kind = kind;
    uint64_t npages = size >> PGM_PAGE_SHIFT;
    if (kind != PGM_PHYS_MMIO) {
        if (npages > SIZE_MAX / sizeof(struct pgm_page)) {
            pgm_free(&vm->alloc, r);
            return -ENOMEM;
        }
        r->pages = pgm_zalloc_array(&vm->alloc, (size_t)npages, sizeof(struct pgm_page));
        if (!r->pages) {
            pgm_free(&vm->alloc, r);
            return -ENOMEM;
        }
    }
    if (kind == PGM_PHYS_RAM && vm->be->alloc_ram_block) {
        void *ptr;
        if (vm->be->alloc_ram_block(vm->be_ctx, npages, &r->block_hpa, &ptr) == 0)
            r->block = ptr;
        /* else: page-by-page backing, as without the op */
    }
    if (kind == PGM_PHYS_ROM) {
        /* ROM is backed eagerly: its pages are what shadows will map. */
        r->rom_image = pgm_zalloc_array(&vm->alloc, (size_t)npages, sizeof(struct pgm_page));
        if (!r->rom_image) {
            free_range(vm, r, 1);
            return -ENOMEM;
        }
        for (uint64_t i = 0; i < npages; i++) {
            struct pgm_page *pg = &r->rom_image[i];
            void *ptr;
            if (vm->be->alloc_page(vm->be_ctx, &pg->hpa, &ptr) < 0) {
                free_range(vm, r, 1);
                return -ENOMEM;
            }
            pg->host = ptr;
            uint64_t off = i << PGM_PAGE_SHIFT;
            if (off < image_size) {
                size_t n = image_size - off < PGM_PAGE_SIZE ? image_size - off : PGM_PAGE_SIZE;
                memcpy(pg->host, (const uint8_t *)image + off, n);
            }
            r->pages[i] = *pg;
        }
    }

    pgm_vm_lock(vm);
    rc = publish_insert(vm, r);
    /* Covered linear pages of virtual handlers may already point here. */
    if (rc == 0 && r->pages)
        pgm_virt_range_added(vm, r->start, r->size);
    pgm_vm_unlock(vm);
    if (rc < 0)
        free_range(vm, r, 1);
    return rc;
}

PGM_API int
pgm_phys_add_ram(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    return add_range(vm, gpa, size, PGM_PHYS_RAM, NULL, 0);
}

PGM_API int
pgm_phys_add_rom(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size, const void *image,
                 size_t image_size)
{
    return add_range(vm, gpa, size, PGM_PHYS_ROM, image, image_size);
}

PGM_API int
pgm_phys_add_mmio(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    return add_range(vm, gpa, size, PGM_PHYS_MMIO, NULL, 0);
}

PGM_API int
pgm_phys_remove(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    if (!vm)
        return -EINVAL;
    pgm_vm_lock(vm);
    struct pgm_phys_map *old = vm->phys.map;
    uint32_t pos = 0;
    while (pos < old->count && old->range[pos]->start != gpa)
        pos++;
    if (pos == old->count) {
        pgm_vm_unlock(vm);
        return -ENOENT;
    }
    if (pgm_handlers_overlap(vm, old->range[pos]->start, old->range[pos]->size)) {
        pgm_vm_unlock(vm);
        return -EBUSY;
    }
    struct pgm_phys_map *map = pgm_alloc(&vm->alloc, sizeof(*map) +
                                         (old->count - 1) * sizeof(map->range[0]));
    struct pgm_retired *r1 = pgm_alloc(&vm->alloc, sizeof(*r1));
    struct pgm_retired *r2 = pgm_alloc(&vm->alloc, sizeof(*r2));
    if (!map || !r1 || !r2) {
        pgm_free(&vm->alloc, map);
        pgm_free(&vm->alloc, r1);
        pgm_free(&vm->alloc, r2);
        pgm_vm_unlock(vm);
        return -ENOMEM;
    }
    struct pgm_phys_range *victim = old->range[pos];
    if (victim->pages)
        pgm_virt_range_removed(vm, victim->start, victim->size);
    /* No shadow may keep mapping host pages that are about to be freed. */
    if (vm->shadow && victim->pages)
        for (uint64_t i = 0; i < victim->size >> PGM_PAGE_SHIFT; i++)
            pgm_shadow_unmap_gfn(vm, (victim->start >> PGM_PAGE_SHIFT) + i);
    /* Nor a nested leaf or MMIO marker (flushed before the pages are freed). */
    pgm_nested_zap_range(vm, victim->start, victim->size);
    map->count = old->count - 1;
    memcpy(map->range, old->range, pos * sizeof(map->range[0]));
    memcpy(map->range + pos, old->range + pos + 1,
           (old->count - pos - 1) * sizeof(map->range[0]));
    pgm_store_release(&vm->phys.map, map);

    /* Old snapshot and the range object stay readable until VM destruction. */
    r1->ptr = old;
    r1->next = vm->phys.retired;
    r2->ptr = victim;
    r2->next = r1;
    vm->phys.retired = r2;
    if (victim->kind == PGM_PHYS_RAM && victim->pages) {
        uint64_t n = victim->size >> PGM_PAGE_SHIFT;
        for (uint64_t i = 0; i < n; i++)
            if (victim->pages[i].host)
                vm->phys.allocated_pages--;
    }
    free_range(vm, victim, 0);
    pgm_vm_unlock(vm);
    return 0;
}

int
pgm_phys_page_materialize(struct pgm_vm *vm, struct pgm_phys_range *r, struct pgm_page *pg)
{
    int rc = 0;
    pgm_vm_lock(vm);
    if (!pg->host && r->block) {
        uint64_t off = (uint64_t)(pg - r->pages) << PGM_PAGE_SHIFT;
        pg->hpa = r->block_hpa + off;
        pgm_store_release(&pg->host, r->block + off);
        vm->phys.allocated_pages++;
        vm->stats.ram_pages_allocated++;
        /* A nested leaf may map the zero page here: repoint it. */
        pgm_nested_gfn_changed(vm, (r->start + off) >> PGM_PAGE_SHIFT);
    } else if (!pg->host) {
        pgm_hpa_t hpa;
        void *ptr;
        rc = vm->be->alloc_page(vm->be_ctx, &hpa, &ptr);
        if (rc == 0) {
            pg->hpa = hpa;
            pgm_store_release(&pg->host, (uint8_t *)ptr);
            vm->phys.allocated_pages++;
            vm->stats.ram_pages_allocated++;
            pgm_nested_gfn_changed(vm, (r->start >> PGM_PAGE_SHIFT) + (uint64_t)(pg - r->pages));
        } else {
            rc = -ENOMEM;
        }
    }
    pgm_vm_unlock(vm);
    return rc;
}

void
pgm_phys_materialize_block_span(struct pgm_vm *vm, struct pgm_phys_range *r, uint64_t first,
                                uint64_t count)
{
    for (uint64_t i = first; i < first + count; i++) {
        struct pgm_page *pg = &r->pages[i];
        if (pg->host)
            continue;
        uint64_t off = i << PGM_PAGE_SHIFT;
        pg->hpa = r->block_hpa + off;
        pgm_store_release(&pg->host, r->block + off);
        vm->phys.allocated_pages++;
        vm->stats.ram_pages_allocated++;
    }
}

PGM_API int
pgm_phys_rom_set_mode(struct pgm_vm *vm, pgm_gpa_t gpa, enum pgm_rom_mode mode)
{
    if (!vm || (mode != PGM_ROM_MODE_ROM && mode != PGM_ROM_MODE_SHADOW_RW &&
                mode != PGM_ROM_MODE_SHADOW_RO))
        return -EINVAL;
    pgm_vm_lock(vm);
    struct pgm_phys_range *r = pgm_phys_map_find(vm->phys.map, gpa);
    if (!r || r->start != gpa || r->kind != PGM_PHYS_ROM) {
        pgm_vm_unlock(vm);
        return -ENOENT;
    }
    uint64_t npages = r->size >> PGM_PAGE_SHIFT;
    if (mode != PGM_ROM_MODE_ROM && !r->rom_shadow) {
        struct pgm_page *shadow = pgm_zalloc_array(&vm->alloc, (size_t)npages, sizeof(*shadow));
        for (uint64_t i = 0; shadow && i < npages; i++) {
            void *ptr;
            if (vm->be->alloc_page(vm->be_ctx, &shadow[i].hpa, &ptr) < 0) {
                for (uint64_t j = 0; j < i; j++)
                    vm->be->free_page(vm->be_ctx, shadow[j].hpa, shadow[j].host);
                pgm_free(&vm->alloc, shadow);
                shadow = NULL;
                break;
            }
            shadow[i].host = ptr;
            memcpy(ptr, r->rom_image[i].host, PGM_PAGE_SIZE);
        }
        if (!shadow) {
            pgm_vm_unlock(vm);
            return -ENOMEM;
        }
        r->rom_shadow = shadow;
    }
    /*
     * Repoint the view. A reader racing with the switch sees either page of
     * a pair (hpa is stored before the host pointer it belongs with).
     */
    const struct pgm_page *src = mode == PGM_ROM_MODE_ROM ? r->rom_image : r->rom_shadow;
    for (uint64_t i = 0; i < npages; i++) {
        r->pages[i].hpa = src[i].hpa;
        pgm_store_release(&r->pages[i].host, src[i].host);
    }
    __atomic_store_n(&r->rom_mode, mode, __ATOMIC_RELEASE);
    /* Shadows map the old view's pages (read-only, or writable copies). */
    if (vm->shadow)
        for (uint64_t i = 0; i < npages; i++)
            pgm_shadow_unmap_gfn(vm, (r->start >> PGM_PAGE_SHIFT) + i);
    /* Nested leaves are repointed in place (the old view's pages stay allocated). */
    if (vm->nested)
        for (uint64_t i = 0; i < npages; i++)
            pgm_nested_gfn_changed(vm, (r->start >> PGM_PAGE_SHIFT) + i);
    pgm_vm_unlock(vm);
    return 0;
}

PGM_API enum pgm_phys_kind
pgm_phys_kind_at(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    if (!vm)
        return PGM_PHYS_UNASSIGNED;
    const struct pgm_phys_range *r = pgm_phys_map_find(pgm_phys_snapshot(&vm->phys), gpa);
    return r ? r->kind : PGM_PHYS_UNASSIGNED;
}

/*
 * Copy between guest memory and a buffer. A naturally aligned access of 2, 4
 * or 8 bytes is one atomic load or store, as an aligned access is on x86:
 * another vCPU's walker setting A/D bits with compare-and-swap (or a guest
 * store through a real MMU) never sees it torn.
 */
static void
guest_copy(uint8_t *dst, const uint8_t *src, size_t n, uint64_t gpa, bool to_guest)
{
#define ATOMIC_COPY(type)                                                           \
    do {                                                                            \
        type v_;                                                                    \
        if (to_guest) {                                                             \
            memcpy(&v_, src, sizeof(type));                                         \
            __atomic_store_n((type *)(void *)dst, v_, __ATOMIC_RELAXED);            \
        } else {                                                                    \
            v_ = __atomic_load_n((const type *)(const void *)src, __ATOMIC_RELAXED); \
            memcpy(dst, &v_, sizeof(type));                                         \
        }                                                                           \
    } while (0)

    if (n == 2 && !(gpa & 1))
        ATOMIC_COPY(uint16_t);
    else if (n == 4 && !(gpa & 3))
        ATOMIC_COPY(uint32_t);
    else if (n == 8 && !(gpa & 7))
        ATOMIC_COPY(uint64_t);
    else
        memcpy(dst, src, n);
#undef ATOMIC_COPY
}

/*
 * Give one chunk (inside one page and one handler) to handler @h. Returns
 * 1 if libpgm must still do the default access, 0 if the handler did it, or
 * PGM_RC_HANDLER_EXIT.
 */
static int
call_handler(struct pgm_vm *vm, struct pgm_vcpu *vcpu, enum pgm_access_origin origin,
             const struct pgm_phys_handler *h, pgm_gpa_t gpa, uint8_t *rbuf,
             const uint8_t *wbuf, size_t n)
{
    __atomic_fetch_add(&vm->stats.handler_calls, 1, __ATOMIC_RELAXED);
    /*
     * A write handler sees the bytes the guest writes; it gets a private
     * copy so it cannot change the caller's buffer.
     */
    uint8_t tmp[PGM_PAGE_SIZE];
    if (wbuf)
        memcpy(tmp, wbuf, n);
    enum pgm_handler_result res = h->fn(vcpu, gpa, rbuf ? rbuf : tmp, n, wbuf != NULL, origin,
                                        h->user);
    switch (res) {
    case PGM_HANDLER_HANDLED:
        return 0;
    case PGM_HANDLER_EXIT:
        return PGM_RC_HANDLER_EXIT;
    case PGM_HANDLER_DEFAULT:
    default:
        return 1;
    }
}

/*
 * Walk [gpa, gpa+len) in chunks that stay within one page (so within one
 * range and one handler, both page granular), reading into @rbuf or writing
 * from @wbuf, and routing chunks with a handler through it - unless @simple,
 * which touches only the backing (see pgm_phys_access in phys.h).
 */
int
pgm_phys_access(struct pgm_vm *vm, struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *rbuf_,
                const void *wbuf_, size_t len, enum pgm_access_origin origin, bool simple)
{
    uint8_t *rbuf = rbuf_;
    const uint8_t *wbuf = wbuf_;
    if (!vm || (len && !rbuf && !wbuf))
        return -EINVAL;
    if (len && gpa + len - 1 < gpa)
        return -EINVAL;
    const struct pgm_phys_map *map = pgm_phys_snapshot(&vm->phys);
    int rc = 0;
    while (len) {
        size_t in_page = PGM_PAGE_SIZE - (gpa & ~PGM_PAGE_MASK);
        size_t n = len < in_page ? len : in_page;
        struct pgm_phys_range *r = pgm_phys_map_find(map, gpa);
        enum pgm_phys_kind kind = r ? r->kind : PGM_PHYS_UNASSIGNED;
        size_t off = gpa & ~PGM_PAGE_MASK;

        switch (kind) {
        case PGM_PHYS_RAM:
        case PGM_PHYS_ROM: {
            struct pgm_page *pg = &r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT];
            enum pgm_handler_kind hk = pgm_page_handler_state(pg);
            if (simple && wbuf && hk != PGM_HANDLER_NONE)
                pgm_dirty_log_note_write(vm, gpa); /* logs still see VMM writes */
            if (!simple && (hk == PGM_HANDLER_ALL || (hk == PGM_HANDLER_WRITE && wbuf))) {
                const struct pgm_phys_handler *h = pgm_handler_find(vm, gpa);
                if (h) {
                    int hr = call_handler(vm, vcpu, origin, h, gpa, rbuf, wbuf, n);
                    if (hr == PGM_RC_HANDLER_EXIT)
                        return hr;
                    if (hr == 0)
                        break; /* the handler did the access */
                }
            }
            uint8_t *host = pgm_load_acquire(&pg->host);
            if (rbuf) {
                guest_copy(rbuf, host ? host + off : pgm_zero_page, n, gpa, false);
            } else if (kind == PGM_PHYS_ROM) {
                /* Only a writable shadow copy takes writes; the image never does. */
                if (__atomic_load_n(&r->rom_mode, __ATOMIC_ACQUIRE) == PGM_ROM_MODE_SHADOW_RW)
                    guest_copy(host + off, wbuf, n, gpa, true);
            } else {
                if (!host) {
                    if (pgm_phys_page_materialize(vm, r, pg) < 0)
                        return -ENOMEM;
                    host = pg->host;
                }
                /*
                 * A write to a guest page table the shadow engine shadows -
                 * by the guest (emulated) or by the VMM - must reach the
                 * shadows: the entries of every changed guest entry go.
                 */
                uint8_t snap[PGM_PAGE_SIZE];
                uint64_t gfn = gpa >> PGM_PAGE_SHIFT;
                bool shadowed = vm->shadow && pgm_shadow_snapshot(vm, gfn, snap);
                guest_copy(host + off, wbuf, n, gpa, true);
                /* Virtual handlers first: a refill must see the new associations. */
                pgm_virt_table_written(vm, gfn);
                if (shadowed)
                    pgm_shadow_written(vm, gfn, snap);
                /* No D bit records a write libpgm makes: a D-bit log must hear of it. */
                if (__atomic_load_n(&vm->dbit_logs, __ATOMIC_RELAXED)) {
                    pgm_vm_lock(vm);
                    pgm_dirty_dbit_note(vm, gpa);
                    pgm_vm_unlock(vm);
                }
            }
            break;
        }
        case PGM_PHYS_MMIO: {
            /* The simple path has no device to ask: like MMIO with no handler. */
            const struct pgm_phys_handler *h = simple ? NULL : pgm_handler_find(vm, gpa);
            int hr = h ? call_handler(vm, vcpu, origin, h, gpa, rbuf, wbuf, n) : 1;
            if (hr == PGM_RC_HANDLER_EXIT)
                return hr;
            if (!h)
                rc = -ENODEV; /* no device behind it: reads all-ones, writes dropped */
            if (hr == 1 && rbuf)
                memset(rbuf, 0xff, n);
            break;
        }
        case PGM_PHYS_UNASSIGNED:
            if (rbuf)
                memset(rbuf, 0xff, n);
            break;
        }
        if (rbuf)
            rbuf += n;
        else
            wbuf += n;
        gpa += n;
        len -= n;
    }
    return rc;
}

PGM_API int
pgm_phys_read(struct pgm_vm *vm, pgm_gpa_t gpa, void *buf, size_t len)
{
    if (len && !buf)
        return -EINVAL;
    return pgm_phys_access(vm, NULL, gpa, buf, NULL, len, PGM_ORIGIN_PHYS_API, false);
}

PGM_API int
pgm_phys_write(struct pgm_vm *vm, pgm_gpa_t gpa, const void *buf, size_t len)
{
    if (len && !buf)
        return -EINVAL;
    return pgm_phys_access(vm, NULL, gpa, NULL, buf, len, PGM_ORIGIN_PHYS_API, false);
}

int
pgm_phys_access_guest(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *rbuf, const void *wbuf,
                      size_t len)
{
    return pgm_phys_access(vcpu->vm, vcpu, gpa, rbuf, wbuf, len, PGM_ORIGIN_GUEST, false);
}

uint8_t *
pgm_phys_plain_ram_ptr(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    struct pgm_phys_range *r = pgm_phys_map_find(pgm_phys_snapshot(&vm->phys), gpa);
    if (!r || r->kind != PGM_PHYS_RAM)
        return NULL;
    struct pgm_page *pg = &r->pages[(gpa - r->start) >> PGM_PAGE_SHIFT];
    if (pgm_page_handler_state(pg) != PGM_HANDLER_NONE)
        return NULL;
    if (!pgm_load_acquire(&pg->host) && pgm_phys_page_materialize(vm, r, pg) < 0)
        return NULL;
    return pg->host + (gpa & ~PGM_PAGE_MASK);
}

PGM_API void
pgm_phys_info(struct pgm_vm *vm, struct pgm_phys_info *info)
{
    if (!vm || !info)
        return;
    memset(info, 0, sizeof(*info));
    pgm_vm_lock(vm);
    const struct pgm_phys_map *map = vm->phys.map;
    info->ranges = map->count;
    for (uint32_t i = 0; i < map->count; i++) {
        uint64_t n = map->range[i]->size >> PGM_PAGE_SHIFT;
        switch (map->range[i]->kind) {
        case PGM_PHYS_RAM:  info->ram_pages += n; break;
        case PGM_PHYS_ROM:  info->rom_pages += n; break;
        case PGM_PHYS_MMIO: info->mmio_pages += n; break;
        case PGM_PHYS_UNASSIGNED: break;
        }
    }
    info->allocated_pages = vm->phys.allocated_pages;
    pgm_vm_unlock(vm);
}
