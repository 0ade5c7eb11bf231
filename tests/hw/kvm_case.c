/* SPDX-License-Identifier: MIT */
/*
 * kvm_mmu, one case: predict the walk structurally, decide whether the case
 * can be run faithfully (else a skip line), queue the guest writes that turn
 * the previous case's memory into this one's, run the vCPU, and decode the
 * mailbox, memslot and exit into a `pgm walk` result.
 *
 * Invariant between cases: RAM holds signatures everywhere except the qwords
 * in vm->dirty, which the next case restores (by guest writes) before
 * writing its own memory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kvm_mmu.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct walkpred {
    unsigned npath;
    uint64_t path[4];  /* GPAs of the entries the walk reads */
    bool leaf;         /* the walk reaches a present leaf (permissions unknown) */
    uint64_t target;   /* GPA of va if leaf */
    unsigned shift;    /* page size shift if leaf */
    bool pdpte_ps;     /* a present PDPTE with PS=1 on the path */
    const char *skip;  /* set if the case cannot be run faithfully */
};

static bool in_ram(uint64_t gpa)
{
    return gpa < RAM_SIZE;
}

static bool in_harness(uint64_t gpa, uint64_t len)
{
    return gpa < HARNESS_GPA + HARNESS_SIZE && gpa + len > HARNESS_GPA;
}

/* Reserved bits that surely stop the walk at this entry (a subset of the
 * real rules, used only to decide whether the next table would be read). */
static bool surely_reserved(const struct wcase *c, uint64_t e, int level)
{
    uint64_t above = c->maxphyaddr >= 52 ? 0 : (((1ull << 52) - 1) & ~((1ull << c->maxphyaddr) - 1));

    if (e & above)
        return true;
    if (!c->nxe && (e >> 63))
        return true;
    if (level == 4 && (e & PTE_PS))
        return true;
    return false;
}

static void predict(const struct wcase *c, struct walkpred *w)
{
    uint64_t table = c->cr3 & ADDR_MASK & ((1ull << c->maxphyaddr) - 1);

    memset(w, 0, sizeof(*w));
    for (int level = 4; level >= 1; level--) {
        unsigned idx = (unsigned)(c->va >> (12 + 9 * (level - 1))) & 511;
        uint64_t ea = table + idx * 8ull, e;

        if (!in_ram(ea) || in_harness(ea, 8)) {
            w->skip = "page table outside guest RAM (KVM injects #PF, hardware reads all-ones)";
            return;
        }
        w->path[w->npath++] = ea;
        e = wcase_read_initial(c, ea, 8);
        if (!(e & PTE_P) || surely_reserved(c, e, level))
            return;
        if (level == 3 && (e & PTE_PS))
            w->pdpte_ps = true;
        if (level == 1 || ((level == 3 || level == 2) && (e & PTE_PS))) {
            unsigned shift = level == 1 ? 12 : level == 2 ? 21 : 30;
            uint64_t mask = ADDR_MASK & ~((1ull << shift) - 1);

            w->leaf = true;
            w->shift = shift;
            w->target = (e & mask) | (c->va & ((1ull << shift) - 1));
            if (in_harness(w->target & ~7ull, 8))
                w->skip = "leaf maps the checker's harness memory";
            return;
        }
        table = e & ADDR_MASK;
        if (in_harness(table, 4096))
            w->skip = "page table inside the checker's harness memory";
    }
}

/* The byte at @gpa (in RAM) once the guest has written the case's memory:
 * the case's value in a qword the case lists, the signature otherwise. */
static uint8_t ram_byte_before(const struct wcase *c, uint64_t gpa)
{
    uint64_t q = gpa & ~7ull;

    for (unsigned i = 0; i < c->nmem; i++)
        if (c->mem[i].gpa < q + 8 && c->mem[i].gpa + c->mem[i].size > q)
            return (uint8_t)wcase_read_initial(c, gpa, 1);
    return (uint8_t)(sig_of(q) >> (8 * (gpa & 7)));
}

static int res_skip(struct wresult *r, const char *why)
{
    r->kind = WRES_SKIP;
    snprintf(r->reason, sizeof(r->reason), "%s", why);
    return 0;
}

static int res_error(struct wresult *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int res_error(struct wresult *r, const char *fmt, ...)
{
    va_list ap;

    r->kind = WRES_ERROR;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    return 0;
}

int run_case(const struct wcase *c, struct wresult *r)
{
    struct walkpred w;
    struct vm *v;
    unsigned slot = ~0u, nw = 0, ndirty_new = 0;
    uint64_t dirty_new[WCASE_MAX_MEM * 2 + 8];
    uint64_t base, pml4, acc_addr, user_va;
    uint64_t pa_mask;
    struct runinfo ri;
    int patch_item = -1;
    unsigned patch_byte = 0;
    bool marked = false; /* a marker byte goes to the predicted target */
    uint8_t mark = 0, before = 0;
    uint64_t stage, kind, vec, rip;

    memset(r, 0, sizeof(*r));
    r->nmem = c->nmem;

    if (c->mode != WCASE_AMD64)
        return res_skip(r, "unsupported mode");
    if (c->pke && !have_pku)
        return res_skip(r, "pke=1 but KVM has no PKU");
    if (c->smep && !have_smep)
        return res_skip(r, "smep=1 but KVM has no SMEP");
    if (c->smap && !have_smap)
        return res_skip(r, "smap=1 but KVM has no SMAP");
    if (c->nxe && !have_nx)
        return res_skip(r, "nxe=1 but KVM has no NX");
    if (c->maxphyaddr < host_maxphyaddr && !small_maxphyaddr_ok)
        return res_skip(r, "KVM ignores a guest MAXPHYADDR below the host's");
    if (c->maxphyaddr > host_maxphyaddr && !big_maxphyaddr_ok)
        return res_skip(r, "KVM cannot model a guest MAXPHYADDR above the host's");
    if (c->maxphyaddr < 64 && HARNESS_GPA + HARNESS_SIZE > (1ull << c->maxphyaddr))
        return res_skip(r, "maxphyaddr too small for the checker's harness");

    if (user_slot256_broken && c->cpl == 3 && (c->va >> 39) == 0x1ffff00ull)
        return res_skip(r, "KVM/PVM: CPL3 accesses to PML4 slot 256 always fault on this host");

    predict(c, &w);
    if (w.skip)
        return res_skip(r, w.skip);
    if (w.pdpte_ps && c->gbpages != have_gbpages)
        return res_skip(r, c->gbpages ? "1 GiB page but KVM has no GBPAGES"
                                      : "gbpages=0 but KVM has GBPAGES");

    pa_mask = ADDR_MASK & ((1ull << c->maxphyaddr) - 1);
    pml4 = c->cr3 & pa_mask;
    if (!in_ram(pml4 + 4095)) {
        bool surely_gp = (c->cr3 & ~pa_mask & ~0xfffull) != 0;

        if (!surely_gp)
            return res_skip(r, "cr3 outside guest RAM");
    }

    /* Fetches run into a HLT placed at the predicted target; writes store
     * a marker byte there (the host checks where it landed and reports the
     * memory as it was, since `pgm walk` does not write data). */
    if (c->acc == 'x' && w.leaf && !in_ram(w.target))
        return res_skip(r, "fetch from a GPA outside guest RAM");
    if (c->acc != 'r' && w.leaf && in_ram(w.target)) {
        for (unsigned i = 0; i < w.npath; i++) {
            if (c->acc == 'x' && w.target >= w.path[i] && w.target < w.path[i] + 8)
                return res_skip(r, "fetch target byte is one of its own page-table entries");
            if (c->acc == 'w' && w.target == w.path[i])
                return res_skip(r, "write target byte holds A/D bits of its own walk");
        }
        marked = true;
        before = ram_byte_before(c, w.target);
        mark = c->acc == 'x' ? 0xf4 : (uint8_t)(before ^ 0xa5);
        for (unsigned i = 0; i < c->nmem; i++)
            if (w.target >= c->mem[i].gpa && w.target < c->mem[i].gpa + c->mem[i].size) {
                patch_item = (int)i;
                patch_byte = (unsigned)(w.target - c->mem[i].gpa);
            }
    }

    /* a PML4 slot for the harness that the case does not use */
    for (unsigned k = 0; k < NCAND && slot == ~0u; k++) {
        unsigned s = slot_candidates[k];
        uint64_t ea = pml4 + s * 8ull;
        bool ok = true;

        for (int level = 4; level >= 1; level--)
            if (((c->va >> (12 + 9 * (level - 1))) & 511) == s)
                ok = false;
        for (unsigned i = 0; i < c->nmem && ok; i++)
            if (c->mem[i].gpa < ea + 8 && c->mem[i].gpa + c->mem[i].size > ea)
                ok = false;
        if (w.leaf && c->acc != 'r' && w.target >= ea && w.target < ea + 8)
            ok = false;
        if (ok)
            slot = s;
    }
    if (slot == ~0u)
        return res_skip(r, "no free PML4 slot for the harness");

    v = vm_get(c->maxphyaddr);
    setup_slot(v, slot);
    base = slot_va(slot);

    /* guest writes: restore what the previous case touched, then this case */
#define ADDW(a, val_, sz)                                                              \
    do {                                                                               \
        uint64_t o_ = MB_WRITES + nw * 24ull;                                          \
        mb_write(v, o_, slot_va(PHYSMAP_SLOT) + (a));                                  \
        mb_write(v, o_ + 8, (val_));                                                   \
        mb_write(v, o_ + 16, (sz));                                                    \
        nw++;                                                                          \
    } while (0)
#define DIRTY(a)                                                                       \
    do {                                                                               \
        uint64_t q_ = (a) & ~7ull;                                                     \
        bool seen_ = false;                                                            \
        for (unsigned j_ = 0; j_ < ndirty_new; j_++)                                   \
            seen_ |= dirty_new[j_] == q_;                                              \
        if (!seen_)                                                                    \
            dirty_new[ndirty_new++] = q_;                                              \
    } while (0)

    for (unsigned i = 0; i < v->ndirty; i++)
        ADDW(v->dirty[i], sig_of(v->dirty[i]), 8);
    for (unsigned i = 0; i < c->nmem; i++) {
        ADDW(c->mem[i].gpa & ~7ull, 0, 8);
        DIRTY(c->mem[i].gpa);
    }
    for (unsigned i = 0; i < c->nmem; i++)
        ADDW(c->mem[i].gpa, c->mem[i].val, c->mem[i].size);
    if (in_ram(pml4 + 4095)) {
        ADDW(pml4 + slot * 8ull, (HARNESS_GPA + OFF_HPDPT) | PTE_P | PTE_W | PTE_U, 8);
        DIRTY(pml4 + slot * 8ull);
    }
    if (marked) {
        if (c->acc == 'x')
            ADDW(w.target, mark, 1);
        DIRTY(w.target);
    }
#undef ADDW
#undef DIRTY
    memcpy(v->dirty, dirty_new, sizeof(dirty_new[0]) * ndirty_new);
    v->ndirty = ndirty_new;

    acc_addr = c->acc == 'r' ? (c->va & ~7ull) : c->va;
    user_va = base + KOFF(kh_user);
    mb_write(v, MB_CR3, c->cr3);
    mb_write(v, MB_VA, acc_addr);
    mb_write(v, MB_ACC, c->acc == 'r' ? 0 : c->acc == 'w' ? 1 : 2);
    mb_write(v, MB_CPL3, c->cpl == 3);
    mb_write(v, MB_RFL, c->ac ? 1ull << 18 : 0);
    mb_write(v, MB_NWR, nw);
    mb_write(v, MB_STAGE, 0);
    mb_write(v, MB_KIND, 0);
    mb_write(v, MB_WVAL, mark);
    mb_write(v, MB_USTUB, user_va);

    if (!vcpu_load_case(v, c, base))
        return res_error(r, "kvm: KVM_SET_SREGS refused the case's CR0/CR4/EFER (%s)",
                         strerror(errno));

    run_vcpu(v, &ri);
    if (ri.how == OUT_TIMEOUT)
        return res_error(r, "kvm: guest timed out");
    if (ri.how == OUT_SHUTDOWN)
        return res_error(r, "kvm: triple fault");
    if (ri.how != OUT_HLT)
        return res_error(r, "kvm: unexpected exit %u", ri.exit_reason);

    stage = mb_read(v, MB_STAGE);
    kind = mb_read(v, MB_KIND);
    vec = mb_read(v, MB_VEC);
    rip = mb_read(v, MB_RIP);

    /* memory after the access */
    for (unsigned i = 0; i < c->nmem; i++) {
        uint64_t val = rd(v->ram + c->mem[i].gpa, c->mem[i].size);

        if ((int)i == patch_item)
            val = (val & ~(0xffull << (8 * patch_byte))) | ((uint64_t)before << (8 * patch_byte));
        r->memval[i] = val;
    }

    if (kind == 1 && stage == 2 && c->cpl != 3 && c->acc != 'x') {
        r->kind = WRES_OK;
    } else if (kind == 2 && vec == 6 && stage == 2 && c->cpl == 3 && c->acc != 'x' &&
               rip >= user_va && rip < user_va + 0x30) {
        r->kind = WRES_OK;
    } else if (kind == 0 && stage == 2 && c->acc == 'x' && c->cpl != 3) {
        uint64_t hlt_rip = vcpu_rip(v);

        if (hlt_rip != c->va + 1)
            return res_error(r, "kvm: HLT exit at 0x%llx, not at va+1",
                             (unsigned long long)hlt_rip);
        r->kind = WRES_OK;
    } else if (kind == 2 && vec == 13 && stage == 2 && c->acc == 'x' && c->cpl == 3 &&
               rip == c->va) {
        r->kind = WRES_OK; /* the fetch reached the HLT */
    } else if (kind == 2 && vec == 14 && stage == 2) {
        uint64_t cr2 = mb_read(v, MB_CR2);
        uint64_t want_rip = c->acc == 'x'   ? c->va
                            : c->cpl == 3   ? (c->acc == 'r' ? user_va : user_va + 0x10)
                            : c->acc == 'r' ? base + KOFF(kh_acc_r)
                                            : base + KOFF(kh_acc_w);

        if (cr2 != acc_addr || rip != want_rip)
            return res_error(r, "kvm: #PF at rip 0x%llx cr2 0x%llx ec 0x%llx, not the access",
                             (unsigned long long)rip, (unsigned long long)cr2,
                             (unsigned long long)mb_read(v, MB_ERR));
        r->kind = WRES_PF;
        r->ec = (uint32_t)mb_read(v, MB_ERR);
        return 0;
    } else if (kind == 2 && vec == 13 && stage == 1 && rip == base + KOFF(kh_movcr3)) {
        r->kind = WRES_GP;
        return 0;
    } else if (kind == 2 && vec == 13 && stage == 2) {
        uint64_t want_rip = c->acc == 'x'   ? (c->cpl == 3 ? user_va + 0x20 : base + KOFF(kh_acc_x))
                            : c->cpl == 3   ? (c->acc == 'r' ? user_va : user_va + 0x10)
                            : c->acc == 'r' ? base + KOFF(kh_acc_r)
                                            : base + KOFF(kh_acc_w);

        if (rip != want_rip)
            return res_error(r, "kvm: #GP at rip 0x%llx, not the access", (unsigned long long)rip);
        r->kind = WRES_GP;
        return 0;
    } else {
        return res_error(r, "kvm: unexpected vector %llu at rip 0x%llx stage %llu kind %llu",
                         (unsigned long long)vec, (unsigned long long)rip,
                         (unsigned long long)stage, (unsigned long long)kind);
    }

    /* success: check where the access landed */
    if (!w.leaf)
        return res_error(r, "kvm: access succeeded but the structural walk has no leaf");
    r->gpa = w.target;
    r->size_shift = w.shift;
    if (ri.mmio) {
        uint64_t want = c->acc == 'r' ? (w.target & ~7ull) : w.target;

        if (ri.mmio_gpa != want || ri.mmio_write != (c->acc == 'w'))
            return res_error(r, "kvm: access went to MMIO 0x%llx, walk says 0x%llx",
                             (unsigned long long)ri.mmio_gpa, (unsigned long long)want);
    } else if (!in_ram(w.target)) {
        return res_error(r, "kvm: no MMIO exit for GPA 0x%llx outside RAM",
                         (unsigned long long)w.target);
    } else if (marked) {
        uint8_t now = v->ram[w.target];

        if (now != mark)
            return res_error(r, "kvm: %s at 0x%llx did not hit the predicted target 0x%llx",
                             c->acc == 'x' ? "fetch" : "write", (unsigned long long)c->va,
                             (unsigned long long)w.target);
    }
    if (c->acc == 'r' && !ri.mmio) {
        uint64_t val = mb_read(v, MB_VAL), q;

        if (sig_decode(val, &q)) {
            if (q != (w.target & ~7ull))
                return res_error(r, "kvm: read got the signature of 0x%llx, walk says 0x%llx",
                                 (unsigned long long)q, (unsigned long long)w.target);
        } else {
            uint64_t now = rd(v->ram + (w.target & ~7ull), 8);

            if (now != val)
                return res_error(r, "kvm: read 0x%llx, walk target holds 0x%llx",
                                 (unsigned long long)val, (unsigned long long)now);
        }
    }
    return 0;
}
