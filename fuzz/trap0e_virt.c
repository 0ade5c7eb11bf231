/* SPDX-License-Identifier: MIT */
/* trap0e scenario, virtual-handler operations (see trap0e_virt.h). */
#include "trap0e_virt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 4

struct slot {
    bool live;
    enum pgm_virt_handler_kind kind;
    uint64_t cr3, gva, size;
};

static struct slot slots[SLOTS];
static struct {
    unsigned long long registered, refused, calls, hv_calls, invalidations;
} tally;

static void t0v_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
t0v_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trap0e virtual handlers: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

#define ULL(x) ((unsigned long long)(x))

/* Does the vCPU's CR3 name @s's address space in its current mode? */
static bool
in_space(struct pgm_vcpu *vcpu, const struct slot *s)
{
    struct pgm_cpu_state st;
    pgm_get_cpu_state(vcpu, &st);
    enum pgm_guest_mode m = pgm_guest_mode(vcpu);
    uint64_t mask = m == PGM_MODE_AMD64 || m == PGM_MODE_LA57 ? 0x000ffffffffff000ull
                    : m == PGM_MODE_PAE                      ? 0xffffffe0ull
                    : m == PGM_MODE_32BIT                    ? 0xfffff000ull
                                                             : 0;
    return mask && !((st.cr3 ^ s->cr3) & mask);
}

static enum pgm_handler_result
on_access(struct pgm_vcpu *vcpu, pgm_gva_t gva, pgm_gpa_t gpa, void *buf, size_t size, bool write,
          void *user)
{
    const struct slot *s = user;
    if (!s->live)
        t0v_fail("a deregistered handler was called (gva %#llx)", ULL(gva));
    if (!vcpu || !in_space(vcpu, s))
        t0v_fail("handler of CR3 %#llx called from another address space", ULL(s->cr3));
    if (gva - s->gva >= s->size)
        t0v_fail("handler [%#llx, +%#llx) called for gva %#llx", ULL(s->gva), ULL(s->size),
                 ULL(gva));
    if (s->kind == PGM_VIRT_HANDLER_HYPERVISOR) {
        tally.hv_calls++;
        if (gpa != PGM_GPA_NONE || buf || size)
            t0v_fail("HYPERVISOR handler called with an access");
        return PGM_HANDLER_DEFAULT;
    }
    tally.calls++;
    if (s->kind == PGM_VIRT_HANDLER_WRITE && !write)
        t0v_fail("WRITE handler called for a read of %#llx", ULL(gva));
    if (!size || (gva & 4095) + size > 4096 || (gpa & 4095) != (gva & 4095))
        t0v_fail("access %#llx -> %#llx size %llu crosses a page or misaligns", ULL(gva),
                 ULL(gpa), ULL(size));
    /* The guest's tables, walked now without side effects, give that GPA. */
    struct pgm_walk w;
    if (pgm_walk(vcpu, gva, PGM_ACCESS_NO_AD | PGM_ACCESS_AC, &w) == 0 &&
        w.status == PGM_WALK_OK && w.gpa != gpa)
        t0v_fail("handler told gva %#llx -> gpa %#llx, the walk says %#llx", ULL(gva), ULL(gpa),
                 ULL(w.gpa));
    return PGM_HANDLER_DEFAULT;
}

static void
on_invalidate(struct pgm_vm *vm, pgm_gva_t gva, pgm_gpa_t old_gpa, pgm_gpa_t new_gpa, void *user)
{
    (void)vm;
    const struct slot *s = user;
    tally.invalidations++;
    if (old_gpa == new_gpa || gva - s->gva >= s->size || (gva & 4095) ||
        (old_gpa != PGM_GPA_NONE && (old_gpa & 4095)) ||
        (new_gpa != PGM_GPA_NONE && (new_gpa & 4095)))
        t0v_fail("invalidation of gva %#llx: %#llx -> %#llx", ULL(gva), ULL(old_gpa),
                 ULL(new_gpa));
}

void
t0v_begin(struct pgm_vm *vm)
{
    (void)vm;
    for (unsigned i = 0; i < SLOTS; i++)
        slots[i].live = false;
}

void
t0v_op(struct pgm_vm *vm, unsigned a0, unsigned a1, uint64_t va, uint64_t cr3, bool may_fail,
       bool nested)
{
    struct slot *s = &slots[a1 % SLOTS];
    if (a0 % 4 == 3 || s->live) {
        if (!s->live)
            return;
        int rc = pgm_virt_handler_deregister(vm, s->cr3, s->gva);
        if (rc == -ENOMEM && may_fail)
            return;
        if (rc)
            t0v_fail("deregister(%#llx, %#llx) = %d", ULL(s->cr3), ULL(s->gva), rc);
        s->live = false;
        return;
    }
    static const enum pgm_virt_handler_kind kinds[3] = {
        PGM_VIRT_HANDLER_WRITE, PGM_VIRT_HANDLER_ALL, PGM_VIRT_HANDLER_HYPERVISOR,
    };
    struct slot n = { true, kinds[a0 % 4], cr3, va & ~4095ull,
                      (uint64_t)(1 + ((a1 >> 2) & 3)) << 12 };
    struct pgm_virt_handler h = { .kind = n.kind, .cr3 = n.cr3, .gva = n.gva, .size = n.size,
                                  .fn = on_access, .invalidate = on_invalidate, .user = s };
    /* The callbacks read the slot: fill it before libpgm may call them. */
    *s = n;
    int rc = pgm_virt_handler_register(vm, &h);
    /* Ranges of one space may not overlap (CR3s sharing bits 51:12 count as one). */
    bool overlaps = false;
    for (unsigned i = 0; i < SLOTS; i++) {
        const struct slot *o = &slots[i];
        if (o != s && o->live && !((o->cr3 ^ n.cr3) & 0x000ffffffffff000ull) &&
            o->gva < n.gva + n.size && n.gva < o->gva + o->size)
            overlaps = true;
    }
    if (rc == 0 && nested)
        t0v_fail("a virtual handler was registered on a nested-paging VM");
    if (rc == 0 && !overlaps) {
        tally.registered++;
        return;
    }
    s->live = false;
    if ((rc == -EOPNOTSUPP && nested) || (rc == -EEXIST && overlaps) || (rc == -ENOMEM && may_fail) ||
        (rc == -EINVAL && n.gva + n.size - 1 < n.gva)) {
        tally.refused++;
        return;
    }
    t0v_fail("register(%#llx, %#llx, %#llx) = %d, overlap %d", ULL(n.cr3), ULL(n.gva),
             ULL(n.size), rc, overlaps);
}

void
t0v_print_stats(void)
{
    fprintf(stderr,
            "virtual handlers: %llu registered, %llu refused, %llu calls, %llu #PF consults, "
            "%llu invalidations\n",
            tally.registered, tally.refused, tally.calls, tally.hv_calls, tally.invalidations);
    memset(&tally, 0, sizeof(tally));
}
