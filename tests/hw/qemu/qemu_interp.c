/* SPDX-License-Identifier: MIT */
/*
 * qemu_mmu, after running: turn what the guest observed for one case into
 * a `pgm walk` result. Fault, error code and #GP are observed; the leaf is
 * the entry whose D bit the probe set, and must be the navigator's; gpa and
 * size come from that leaf. Anything unexpected becomes a skip line naming
 * the check ("CHECK:") or the harness failure, never a result.
 *
 * Two QEMU deviations from the SDM are corrected in the reported values,
 * each with a comment naming the SDM rule: RSVD faults without P, and the
 * A bits QEMU writes where the processor does not.
 */
#include "qemu_mmu.h"

#include <string.h>

/* Byte of guest memory after the access, as the case's RAM should hold it:
 * read-back values for listed items, 0 elsewhere in RAM, and 0 outside RAM
 * (QEMU's unassigned space). */
static unsigned byte_after(const struct plan *p, const struct excursion *x, uint64_t gpa)
{
    const struct wcase *c = &p->c;
    unsigned v = 0;

    if (gpa >= WCASE_RAM_SIZE)
        return 0;
    for (unsigned i = 0; i < c->nmem; i++)
        if (gpa >= c->mem[i].gpa && gpa < c->mem[i].gpa + c->mem[i].size)
            v = (unsigned)(x->mem[i] >> (8 * (gpa - c->mem[i].gpa))) & 0xff;
    return v;
}

/* Bit 6 of the entry whose byte 0 is at @gpa, in excursion @x's read-back:
 * -1 if not listed. */
static int dbit(const struct plan *p, const struct excursion *x, uint64_t gpa)
{
    const struct wcase *c = &p->c;
    int v = -1;

    for (unsigned i = 0; i < c->nmem; i++)
        if (gpa >= c->mem[i].gpa && gpa < c->mem[i].gpa + c->mem[i].size)
            v = (int)((x->mem[i] >> (8 * (gpa - c->mem[i].gpa) + 6)) & 1);
    return v;
}

void interpret(struct plan *p, const struct gresult *g)
{
    const struct wcase *c = &p->c;
    const struct excursion *x = &g->acc;
    struct wresult *r = &p->res;
    int success = 0;

    memset(r, 0, sizeof(*r));
    if (x->nmem != c->nmem) {
        set_skip(p, "harness: bad read-back");
        return;
    }
    r->nmem = c->nmem;
    for (unsigned i = 0; i < c->nmem; i++)
        r->memval[i] = x->mem[i];

    if (x->vec == 14 && x->cr2 == c->va) {
        r->kind = WRES_PF;
        r->ec = x->ec;
        /*
         * QEMU 7.2's walker reports a reserved-bit fault with RSVD alone
         * (mmu_translate: "do_fault_rsvd: error_code = PG_ERROR_RSVD_MASK"),
         * without P. The entry with the reserved bit was present, so P is 1
         * (SDM 4.7: P is 0 only when the fault is due to a not-present
         * entry; KVM and hardware report P|RSVD). Set it.
         */
        if (r->ec & 0x8)
            r->ec |= 0x1;
    } else if (x->vec == 13 && (p->noncanonical || (x->rip - c->va) > 16)) {
        /* #GP raised by harness code: the MOV to CR3, or the access (data
         * stub or the IRET to a fetch target) on a non-canonical address */
        r->kind = WRES_GP;
    } else if (c->acc != 'x') {
        if (x->vec != QG_VEC_DONE) {
            set_skip(p, "harness: unexpected vector 0x%x rip 0x%llx cr2 0x%llx", x->vec,
                     (unsigned long long)x->rip, (unsigned long long)x->cr2);
            return;
        }
        success = 1;
    } else if (p->plant != QG_NO_PLANT) {
        if (x->vec != 3 || x->rip != c->va + 1) {
            set_skip(p, "harness: fetch did not hit the planted int3 (vector 0x%x rip 0x%llx)",
                     x->vec, (unsigned long long)x->rip);
            return;
        }
        success = 1;
    } else if (p->unplanted_fetch) {
        /* the guest makes the first instruction fetched (00 00, add
         * %al,(%rax)) fault at va: #GP (non-canonical RAX, null DS) or #PF
         * on the unmapped scratch address (QEMU ignores a null DS) */
        if (x->rip != c->va || !(x->vec == 13 || (x->vec == 14 && x->cr2 != c->va))) {
            set_skip(p, "harness: unplanted fetch ended with vector 0x%x", x->vec);
            return;
        }
        success = 1;
    } else {
        set_skip(p, "harness: fetch executed without a known target (vector 0x%x)", x->vec);
        return;
    }

    if (success) {
        const struct pathent *leaf;
        int d;

        if (!p->leaf_ok) {
            set_skip(p, "CHECK: QEMU translated but the navigator found no leaf");
            return;
        }
        leaf = &p->path[p->leaf_idx];
        if (!g->have_probe || g->probe.vec != QG_VEC_DONE) {
            set_skip(p, "harness: D probe failed (vector 0x%x)", g->have_probe ? g->probe.vec : 0);
            return;
        }
        d = dbit(p, &g->probe, leaf->gpa);
        if (d != 1) {
            set_skip(p, "CHECK: D probe did not set D in the navigator's leaf");
            return;
        }
        for (unsigned i = 0; i < c->nmem; i++) {
            unsigned esz = c->mode == WCASE_32 ? 4 : 8;

            for (uint64_t e = c->mem[i].gpa & ~(uint64_t)(esz - 1);
                 e < c->mem[i].gpa + c->mem[i].size; e += esz) {
                if (e < c->mem[i].gpa || e == leaf->gpa)
                    continue;
                if (dbit(p, &g->probe, e) == 1) {
                    set_skip(p, "CHECK: D probe set D outside the navigator's leaf");
                    return;
                }
            }
        }
        if (c->acc == 'r' && (x->rcx & 0xff) != byte_after(p, x, p->target)) {
            set_skip(p, "CHECK: byte read 0x%02llx, expected 0x%02x at gpa 0x%llx",
                     (unsigned long long)(x->rcx & 0xff), byte_after(p, x, p->target),
                     (unsigned long long)p->target);
            return;
        }
        r->kind = WRES_OK;
        r->gpa = p->target;
        r->size_shift = p->size_shift;
    }

    /*
     * QEMU sets the accessed bit of a PS=1 PDPTE (a 1 GiB leaf) as soon as it
     * reads it, before the reserved-bit (29:13) and rights checks; the SDM
     * (4.8) sets A only in entries used for a translation, and a faulting
     * access leaves the leaf untouched (the comparison rule allows A only in
     * non-leaf entries). Undo that write on a faulting walk.
     */
    if (r->kind == WRES_PF && p->leaf_ok && p->size_shift == 30) {
        uint64_t a = p->path[p->leaf_idx].gpa;

        if (!(wcase_read_initial(c, a, 1) & 0x20))
            for (unsigned i = 0; i < c->nmem; i++)
                if (a >= c->mem[i].gpa && a < c->mem[i].gpa + c->mem[i].size)
                    r->memval[i] &= ~(0x20ull << (8 * (a - c->mem[i].gpa)));
    }

    /*
     * QEMU sets the accessed bit (bit 5) in the PAE PDPTE it walks; in PAE
     * paging that bit is reserved and the processor never writes PDPTEs
     * (SDM 4.4.1: PDPTEs are loaded into internal registers at MOV CR3).
     * Undo that write in the reported value of the PDPTE of va.
     */
    if (c->mode == WCASE_PAE) {
        uint64_t a = (c->cr3 & 0xffffffe0ull) + ((c->va >> 30) & 3) * 8;
        uint64_t before = wcase_read_initial(c, a, 1);

        if (!(before & 0x20))
            for (unsigned i = 0; i < c->nmem; i++)
                if (a >= c->mem[i].gpa && a < c->mem[i].gpa + c->mem[i].size)
                    r->memval[i] &= ~(0x20ull << (8 * (a - c->mem[i].gpa)));
    }
}
