/* SPDX-License-Identifier: MIT */
/*
 * Guest memory accesses on behalf of the VMM (include/pgm/access.h):
 * origin-tagged and simple physical accesses, and guest-virtual accesses
 * translated by the vCPU's guest paging.
 *
 * The physical side is the one path in phys.c (pgm_phys_access), so handler
 * dispatch, MMIO semantics and shadow coherence for writes to guest page
 * tables are the same as for pgm_phys_write and emulated instructions.
 *
 * A guest-virtual access translates every page of its span before it
 * touches any byte (like the emulator's page-crossing accesses), so a
 * fault on a later page leaves memory as it was. The first
 * GVA_CACHED_PAGES translations are kept; pages beyond that are walked again
 * (with NO_AD: their A/D bits were set by the first pass) when their turn
 * comes, which only differs from the first pass if the guest changes its
 * tables concurrently - then the access may fault part way, as a CPU's
 * string instruction would.
 */
#include <errno.h>
#include <string.h>

#include "pgm/access.h"
#include "pgm/paging.h"
#include "src/handlers/virt.h"
#include "src/phys.h"
#include "src/vm.h"

#define GVA_CACHED_PAGES 16
#define VEC_GP 13
#define VEC_PF 14

static bool
origin_valid(enum pgm_access_origin origin)
{
    return origin == PGM_ORIGIN_PHYS_API || origin == PGM_ORIGIN_GUEST ||
           origin == PGM_ORIGIN_DMA;
}

PGM_API int
pgm_phys_read_origin(struct pgm_vm *vm, pgm_gpa_t gpa, void *buf, size_t len,
                     enum pgm_access_origin origin)
{
    if (!vm || (len && !buf) || !origin_valid(origin))
        return -EINVAL;
    return pgm_phys_access(vm, NULL, gpa, buf, NULL, len, origin, false);
}

PGM_API int
pgm_phys_write_origin(struct pgm_vm *vm, pgm_gpa_t gpa, const void *buf, size_t len,
                      enum pgm_access_origin origin)
{
    if (!vm || (len && !buf) || !origin_valid(origin))
        return -EINVAL;
    return pgm_phys_access(vm, NULL, gpa, NULL, buf, len, origin, false);
}

PGM_API int
pgm_phys_read_simple(struct pgm_vm *vm, pgm_gpa_t gpa, void *buf, size_t len)
{
    if (!vm || (len && !buf))
        return -EINVAL;
    return pgm_phys_access(vm, NULL, gpa, buf, NULL, len, PGM_ORIGIN_PHYS_API, true);
}

PGM_API int
pgm_phys_write_simple(struct pgm_vm *vm, pgm_gpa_t gpa, const void *buf, size_t len)
{
    if (!vm || (len && !buf))
        return -EINVAL;
    return pgm_phys_access(vm, NULL, gpa, NULL, buf, len, PGM_ORIGIN_PHYS_API, true);
}

/* Linear address @done bytes into an access at @gva (wraps at 4 GiB outside IA-32e). */
static pgm_gva_t
piece_la(const struct pgm_vcpu *vcpu, pgm_gva_t gva, size_t done)
{
    pgm_gva_t la = gva + done;
    return (vcpu->state.efer & PGM_EFER_LMA) ? la : (uint32_t)la;
}

/* Translate one page; a guest fault is described in @fault. */
static int
translate_page(struct pgm_vcpu *vcpu, pgm_gva_t la, uint32_t access, pgm_gpa_t *gpa,
               struct pgm_gva_fault *fault)
{
    struct pgm_walk w;
    int rc = pgm_walk(vcpu, la, access, &w);
    if (rc < 0)
        return rc;
    if (w.status == PGM_WALK_OK) {
        *gpa = w.gpa;
        return 0;
    }
    if (fault) {
        bool pf = w.status == PGM_WALK_PAGE_FAULT;
        fault->vector = pf ? VEC_PF : VEC_GP;
        fault->error_code = pf ? w.error_code : 0;
        fault->address = la;
    }
    return PGM_RC_GUEST_FAULT;
}

/* Bytes of the piece starting at linear address @la with @left bytes to go. */
static size_t
piece_len(pgm_gva_t la, size_t left)
{
    size_t in_page = (size_t)(PGM_PAGE_SIZE - (la & ~PGM_PAGE_MASK));
    return left < in_page ? left : in_page;
}

static int
gva_access(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint8_t *rbuf, const uint8_t *wbuf,
           size_t len, uint32_t flags, enum pgm_access_origin origin, bool simple,
           struct pgm_gva_fault *fault)
{
    if (!vcpu || (len && !rbuf && !wbuf) || !origin_valid(origin))
        return -EINVAL;
    if ((flags & ~(uint32_t)PGM_GVA_FLAGS_KNOWN) || (wbuf && (flags & PGM_ACCESS_FETCH)))
        return -EINVAL;
    uint32_t access = flags | (wbuf ? PGM_ACCESS_WRITE : 0);
    pgm_gpa_t cached[GVA_CACHED_PAGES];

    /* Pass 1: every page must translate before any byte moves. */
    size_t done = 0;
    for (size_t i = 0; done < len; i++) {
        pgm_gva_t la = piece_la(vcpu, gva, done);
        pgm_gpa_t gpa;
        int rc = translate_page(vcpu, la, access, &gpa, fault);
        if (rc != 0)
            return rc;
        if (i < GVA_CACHED_PAGES)
            cached[i] = gpa;
        done += piece_len(la, len - done);
    }

    /* Pass 2: the physical accesses, page by page. */
    int result = 0;
    done = 0;
    for (size_t i = 0; done < len; i++) {
        pgm_gva_t la = piece_la(vcpu, gva, done);
        size_t n = piece_len(la, len - done);
        pgm_gpa_t gpa;
        if (i < GVA_CACHED_PAGES) {
            gpa = cached[i];
        } else {
            int rc = translate_page(vcpu, la, access | PGM_ACCESS_NO_AD, &gpa, fault);
            if (rc != 0)
                return rc;
        }
        uint8_t *r = rbuf ? rbuf + done : NULL;
        const uint8_t *w = wbuf ? wbuf + done : NULL;
        /* A virtual handler covering the linear page sees it first. */
        int rc = simple ? 1 : pgm_virt_dispatch(vcpu, la, gpa, r, w, n);
        if (rc == 1)
            rc = pgm_phys_access(vcpu->vm, vcpu, gpa, r, w, n, origin, simple);
        if (rc == -ENODEV)
            result = -ENODEV; /* MMIO without a device: as on the bus, go on */
        else if (rc != 0)
            return rc;
        done += n;
    }
    return result;
}

PGM_API int
pgm_read_gva(struct pgm_vcpu *vcpu, pgm_gva_t gva, void *buf, size_t len, uint32_t flags,
             enum pgm_access_origin origin, struct pgm_gva_fault *fault)
{
    return gva_access(vcpu, gva, buf, NULL, len, flags, origin, false, fault);
}

PGM_API int
pgm_write_gva(struct pgm_vcpu *vcpu, pgm_gva_t gva, const void *buf, size_t len, uint32_t flags,
              enum pgm_access_origin origin, struct pgm_gva_fault *fault)
{
    return gva_access(vcpu, gva, NULL, buf, len, flags, origin, false, fault);
}

PGM_API int
pgm_read_gva_simple(struct pgm_vcpu *vcpu, pgm_gva_t gva, void *buf, size_t len, uint32_t flags,
                    struct pgm_gva_fault *fault)
{
    return gva_access(vcpu, gva, buf, NULL, len, flags, PGM_ORIGIN_PHYS_API, true, fault);
}

PGM_API int
pgm_write_gva_simple(struct pgm_vcpu *vcpu, pgm_gva_t gva, const void *buf, size_t len,
                     uint32_t flags, struct pgm_gva_fault *fault)
{
    return gva_access(vcpu, gva, NULL, buf, len, flags, PGM_ORIGIN_PHYS_API, true, fault);
}
