/* SPDX-License-Identifier: MIT */
/* Virtual handlers in the random OS (see vhandlers.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vhandlers.h"

#define VH_MAX   8   /* handlers at once */
#define VH_CALLS 8   /* calls one access may make (one is expected) */

struct vh {
    bool live;
    int as;
    uint64_t cr3, va, size;
    enum pgm_virt_handler_kind kind;
};

struct vh_call {
    unsigned vcpu;
    uint64_t gva, gpa;
    size_t size;
    bool write;
};

struct vh_model {
    struct vh h[VH_MAX];
    struct vh_call calls[VH_CALLS];
    unsigned ncalls, lost;
    uint64_t checked;  /* handler calls that matched the model */
};

static enum pgm_handler_result
on_access(struct pgm_vcpu *vcpu, pgm_gva_t gva, pgm_gpa_t gpa, void *buf, size_t size, bool write,
          void *user)
{
    (void)buf;
    struct g_kernel *k = user;
    struct vh_model *m = k->hook_ctx;
    if (m->ncalls == VH_CALLS) {
        m->lost++;
        return PGM_HANDLER_DEFAULT;
    }
    unsigned v = 0;
    while (v < k->nvcpu && k->vcpu[v] != vcpu)
        v++;
    m->calls[m->ncalls++] = (struct vh_call){ v, gva, gpa, size, write };
    return PGM_HANDLER_DEFAULT;
}

/* The model: which handler, if any, must see this access? */
static const struct vh *
expected(struct g_kernel *k, struct vh_model *m, unsigned v, uint64_t va, uint32_t access)
{
    int a = k->cur_as[v];
    if (a < 0 || !k->paging_on)
        return NULL;
    for (unsigned i = 0; i < VH_MAX; i++) {
        const struct vh *h = &m->h[i];
        if (!h->live || h->as != a || va - h->va >= h->size)
            continue;
        if (h->kind == PGM_VIRT_HANDLER_ALL || (access & PGM_ACCESS_WRITE))
            return h;
    }
    return NULL;
}

static void
check_access(struct g_kernel *k, unsigned v, uint64_t va, uint32_t access, bool done,
             uint64_t gpa)
{
    struct vh_model *m = k->hook_ctx;
    if (k->levels < 4)
        va = (uint32_t)va; /* linear addresses have 32 bits outside IA-32e mode */
    const struct vh *h = done ? expected(k, m, v, va, access) : NULL;
    if (m->lost)
        g_fail(k, "virtual handlers were called more than %u times by one access", VH_CALLS);
    if (!h && m->ncalls)
        g_fail(k, "vcpu%u %#" PRIx64 " (access %#x, %s): virtual handler called for gva %#" PRIx64
                  " but no handler covers this access",
               v, va, access, done ? "done" : "faulted", m->calls[0].gva);
    if (h) {
        if (m->ncalls != 1)
            g_fail(k, "vcpu%u %#" PRIx64 " (access %#x): covered by a %s handler at %#" PRIx64
                      ", %u calls",
                   v, va, access, h->kind == PGM_VIRT_HANDLER_ALL ? "ALL" : "WRITE", h->va,
                   m->ncalls);
        const struct vh_call *c = &m->calls[0];
        if (c->vcpu != v || c->gva != va || c->gpa != gpa || c->size != 8 ||
            c->write != !!(access & PGM_ACCESS_WRITE))
            g_fail(k, "vcpu%u %#" PRIx64 " -> %#" PRIx64 " (access %#x): the handler saw vcpu%u "
                      "gva %#" PRIx64 " gpa %#" PRIx64 " size %zu write %d",
                   v, va, gpa, access, c->vcpu, c->gva, c->gpa, c->size, c->write);
        m->checked++;
    }
    m->ncalls = 0;
}

void
g_vh_init(struct g_kernel *k)
{
    struct vh_model *m = calloc(1, sizeof(*m));
    if (!m)
        g_fail(k, "out of memory");
    k->hook_ctx = m;
    k->access_hook = check_access;
}

static void
drop(struct g_kernel *k, struct vh *h)
{
    int rc = pgm_virt_handler_deregister(k->vm, h->cr3, h->va);
    if (rc)
        g_fail(k, "pgm_virt_handler_deregister(%#" PRIx64 ", %#" PRIx64 ") = %d", h->cr3, h->va,
               rc);
    h->live = false;
}

void
g_vh_step(struct g_kernel *k, int as, uint64_t r)
{
    struct vh_model *m = k->hook_ctx;
    struct vh *slot = &m->h[r % VH_MAX];
    if (slot->live) {
        drop(k, slot);
        return;
    }
    /* Virtual handlers need shadow paging (the nested engine has none). */
    if (k->nested || as < 0 || !k->as[as].live || !k->as[as].npages)
        return;
    struct g_page *p = &k->as[as].pages[(r >> 8) % k->as[as].npages];
    if (p->state == GP_NONE)
        return;
    uint64_t size = p->large ? k->lp_size : 4096;
    if (!p->large && ((r >> 24) & 1))
        size = 2 * 4096; /* the next page too, mapped or not */
    struct pgm_virt_handler h = {
        .kind = ((r >> 20) & 1) ? PGM_VIRT_HANDLER_ALL : PGM_VIRT_HANDLER_WRITE,
        .cr3 = g_cr3_of(k, as), .gva = p->va, .size = size, .fn = on_access, .user = k,
    };
    /* Overlap within one address space is refused: the model keeps none. */
    for (unsigned i = 0; i < VH_MAX; i++)
        if (m->h[i].live && m->h[i].as == as && h.gva < m->h[i].va + m->h[i].size &&
            m->h[i].va < h.gva + h.size)
            return;
    int rc = pgm_virt_handler_register(k->vm, &h);
    if (rc)
        g_fail(k, "pgm_virt_handler_register(%#" PRIx64 ", %#" PRIx64 ", %#" PRIx64 ") = %d",
               h.cr3, h.gva, h.size, rc);
    *slot = (struct vh){ true, as, h.cr3, h.gva, h.size, h.kind };
}

void
g_vh_as_destroyed(struct g_kernel *k, int as)
{
    struct vh_model *m = k->hook_ctx;
    for (unsigned i = 0; m && i < VH_MAX; i++)
        if (m->h[i].live && m->h[i].as == as)
            drop(k, &m->h[i]);
}

uint64_t
g_vh_fini(struct g_kernel *k)
{
    struct vh_model *m = k->hook_ctx;
    uint64_t n = m ? m->checked : 0;
    free(m);
    k->hook_ctx = NULL;
    k->access_hook = NULL;
    return n;
}
