/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging on top of WRITE handlers.
 *
 * Each log is a WRITE handler over its RAM range whose callback sets the
 * page's bit and turns the handler off for that page (temp-off), so later
 * writes in the same round are free. get_and_clear exchanges the bitmap words
 * with zero and then re-arms exactly the pages it reports. That order is what
 * makes it safe: a write landing between the exchange and the re-arm goes to
 * a page that is reported in this round and copied by the caller after we
 * return, so its data is not lost; a write after the re-arm calls the handler
 * again and is reported by the next round.
 *
 * On a VM with EPT A/D enabled (src/nested/) a log uses the EPT D bits
 * instead of a handler: leaves in the range are mapped writable with D
 * clear (4 KiB only), the CPU sets D on the first write, and get_and_clear
 * harvests and clears the D bits under the VM lock and flushes (a cached
 * translation with D = 1 would let later writes go unrecorded). Leaves that
 * change or go away while D is set report their page through
 * pgm_dirty_dbit_note(), as do writes libpgm itself makes (phys.c).
 */
#include <errno.h>
#include <string.h>

#include "src/alloc.h"
#include "src/nested/nested.h"
#include "src/vm.h"

struct pgm_dirty_log {
    struct pgm_dirty_log *next;
    struct pgm_vm *vm;
    pgm_gpa_t gpa;
    uint64_t size;
    uint64_t *bits; /* one bit per page, set with atomic OR */
    bool dbit;      /* EPT D-bit mode: no handler */
};

bool
pgm_dirty_dbit_overlaps(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    for (const struct pgm_dirty_log *l = vm->dirty_logs; l; l = l->next)
        if (l->dbit && l->gpa < gpa + size && gpa < l->gpa + l->size)
            return true;
    return false;
}

void
pgm_dirty_dbit_note(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    for (struct pgm_dirty_log *l = vm->dirty_logs; l; l = l->next)
        if (l->dbit && gpa - l->gpa < l->size) {
            uint64_t page = (gpa - l->gpa) >> PGM_PAGE_SHIFT;
            __atomic_fetch_or(&l->bits[page / 64], 1ull << (page % 64), __ATOMIC_RELAXED);
        }
}

/* Start a D-bit log (EPT A/D): no handler, the range's leaves lose D. */
static int
start_dbit(struct pgm_vm *vm, struct pgm_dirty_log *log)
{
    pgm_vm_lock(vm);
    bool busy = pgm_handlers_overlap(vm, log->gpa, log->size);
    for (const struct pgm_dirty_log *l = vm->dirty_logs; l && !busy; l = l->next)
        busy = l->gpa < log->gpa + log->size && log->gpa < l->gpa + l->size;
    if (!busy) {
        log->dbit = true;
        __atomic_fetch_add(&vm->dbit_logs, 1, __ATOMIC_RELAXED);
        log->next = vm->dirty_logs;
        vm->dirty_logs = log;
        pgm_nested_dirty_start(vm, log->gpa, log->size);
    }
    pgm_vm_unlock(vm);
    return busy ? -EEXIST : 0;
}

static enum pgm_handler_result
dirty_write(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
            enum pgm_access_origin origin, void *user)
{
    (void)vcpu;
    (void)buf;
    (void)size;
    (void)origin;
    struct pgm_dirty_log *log = user;
    if (write) {
        uint64_t page = (gpa - log->gpa) >> PGM_PAGE_SHIFT;
        __atomic_fetch_or(&log->bits[page / 64], 1ull << (page % 64), __ATOMIC_RELAXED);
        /* Bit first, then off: a concurrent get_and_clear either sees the
         * bit or re-arms a page that was never turned off. */
        pgm_handler_temp_off(log->vm, gpa & PGM_PAGE_MASK);
    }
    return PGM_HANDLER_DEFAULT; /* the write itself lands normally */
}

void
pgm_dirty_log_note_write(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    const struct pgm_phys_handler *h = pgm_handler_find(vm, gpa);
    if (h && h->fn == dirty_write)
        dirty_write(NULL, gpa, NULL, 0, true, PGM_ORIGIN_PHYS_API, h->user);
}

bool
pgm_dirty_wp_claim(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    const struct pgm_phys_handler *h = pgm_handler_find(vm, gpa);
    if (!h || h->kind != PGM_HANDLER_WRITE || h->fn != dirty_write)
        return false;
    /* Exactly what dirty_write does for a write, minus the bytes it ignores. */
    struct pgm_dirty_log *log = h->user;
    uint64_t page = (gpa - log->gpa) >> PGM_PAGE_SHIFT;
    __atomic_fetch_or(&log->bits[page / 64], 1ull << (page % 64), __ATOMIC_RELAXED);
    return pgm_handler_temp_off(vm, gpa & PGM_PAGE_MASK) == 0;
}

/* The log starting at @gpa (VM lock held). */
static struct pgm_dirty_log **
find_log(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    struct pgm_dirty_log **p = &vm->dirty_logs;
    while (*p && (*p)->gpa != gpa)
        p = &(*p)->next;
    return p;
}

PGM_API int
pgm_dirty_log_start(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t size)
{
    if (!vm || !size || (size & ~PGM_PAGE_MASK))
        return -EINVAL;
    /* RAM only: a dirty log of ROM or MMIO means nothing. */
    for (pgm_gpa_t at = gpa; at - gpa < size; at += PGM_PAGE_SIZE)
        if (pgm_phys_kind_at(vm, at) != PGM_PHYS_RAM)
            return -EINVAL;
    struct pgm_dirty_log *log = pgm_zalloc(&vm->alloc, sizeof(*log));
    uint64_t words = ((size >> PGM_PAGE_SHIFT) + 63) / 64;
    if (log)
        log->bits = pgm_zalloc_array(&vm->alloc, (size_t)words, sizeof(uint64_t));
    if (!log || !log->bits) {
        if (log)
            pgm_free(&vm->alloc, log);
        return -ENOMEM;
    }
    log->vm = vm;
    log->gpa = gpa;
    log->size = size;
    if (pgm_nested_dbit_mode(vm)) {
        int rc = start_dbit(vm, log);
        if (rc < 0) {
            pgm_free(&vm->alloc, log->bits);
            pgm_free(&vm->alloc, log);
        }
        return rc;
    }
    struct pgm_phys_handler h = { .kind = PGM_HANDLER_WRITE, .gpa = gpa, .size = size,
                                  .fn = dirty_write, .user = log };
    int rc = pgm_handler_register(vm, &h);
    if (rc < 0) {
        pgm_free(&vm->alloc, log->bits);
        pgm_free(&vm->alloc, log);
        return rc;
    }
    pgm_vm_lock(vm);
    log->next = vm->dirty_logs;
    vm->dirty_logs = log;
    pgm_vm_unlock(vm);
    return 0;
}

PGM_API int
pgm_dirty_log_stop(struct pgm_vm *vm, pgm_gpa_t gpa)
{
    if (!vm)
        return -EINVAL;
    pgm_vm_lock(vm);
    struct pgm_dirty_log **p = find_log(vm, gpa);
    struct pgm_dirty_log *log = *p;
    if (log)
        *p = log->next;
    if (log && log->dbit)
        __atomic_fetch_sub(&vm->dbit_logs, 1, __ATOMIC_RELAXED);
    pgm_vm_unlock(vm);
    if (!log)
        return -ENOENT;
    if (!log->dbit)
        pgm_handler_deregister(vm, gpa);
    /*
     * A callback that found the handler before it was deregistered may still
     * be about to set a bit: keep the log's memory until the VM goes away.
     */
    pgm_vm_lock(vm);
    log->next = vm->dirty_logs_retired;
    vm->dirty_logs_retired = log;
    pgm_vm_unlock(vm);
    return 0;
}

PGM_API int
pgm_dirty_log_get_and_clear(struct pgm_vm *vm, pgm_gpa_t gpa, uint64_t *bitmap)
{
    if (!vm || !bitmap)
        return -EINVAL;
    pgm_vm_lock(vm);
    struct pgm_dirty_log *log = *find_log(vm, gpa);
    pgm_vm_unlock(vm);
    if (!log)
        return -ENOENT;
    uint64_t npages = log->size >> PGM_PAGE_SHIFT;
    if (log->dbit) {
        /* Under the lock: leaves cannot change (and report D) in between. */
        pgm_vm_lock(vm);
        for (uint64_t w = 0; w < (npages + 63) / 64; w++)
            bitmap[w] = __atomic_exchange_n(&log->bits[w], 0, __ATOMIC_ACQ_REL);
        pgm_nested_dirty_harvest(vm, log->gpa, log->size, bitmap);
        pgm_vm_unlock(vm); /* sends the flush */
        return 0;
    }
    /*
     * One locked batch: every re-armed page's nested leaf is narrowed under
     * it and a single flush goes out at the unlock (not one per page). A
     * callback racing with us waits for the lock in temp_off; the ordering
     * argument above is unchanged.
     */
    pgm_vm_lock(vm);
    for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
        uint64_t bits = __atomic_exchange_n(&log->bits[w], 0, __ATOMIC_ACQ_REL);
        bitmap[w] = bits;
        while (bits) {
            unsigned b = (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            pgm_handler_rearm_page_locked(vm, log->gpa + ((w * 64 + b) << PGM_PAGE_SHIFT));
        }
    }
    pgm_vm_unlock(vm);
    return 0;
}

void
pgm_dirty_logs_fini(struct pgm_vm *vm)
{
    struct pgm_dirty_log *lists[2] = { vm->dirty_logs, vm->dirty_logs_retired };
    for (int i = 0; i < 2; i++) {
        struct pgm_dirty_log *log = lists[i];
        while (log) {
            struct pgm_dirty_log *next = log->next;
            pgm_free(&vm->alloc, log->bits);
            pgm_free(&vm->alloc, log);
            log = next;
        }
    }
    vm->dirty_logs = vm->dirty_logs_retired = NULL;
}
