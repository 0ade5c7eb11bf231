/* SPDX-License-Identifier: MIT */
/*
 * The soft backend's MMU: walks hardware-format page tables in the
 * backend's own memory (the shadow tables libpgm builds) the way an x86 CPU
 * does, and keeps a TLB per vCPU.
 *
 * It plays the real MMU for tests, fuzzers and software CPUs, so it is
 * written to be strict rather than fast:
 *   - Translations stay in the TLB until a flush of their scope arrives
 *     through the backend's flush op; a CR3 load alone flushes nothing (as
 *     with a VPID-tagged TLB across VM entries). A missing flush request is
 *     therefore a wrong answer, not a silent re-walk.
 *   - A TLB entry caches the walk's effective rights (R/W, U/S, XD) and the
 *     leaf's D bit and key; WP, SMEP, SMAP and PKRU are applied at access
 *     time, as hardware does. An entry that denies an access raises #PF and is
 *     dropped (SDM 4.10.4.1: a page fault invalidates the faulting address).
 *     A write through an entry cached with D = 0 walks again to set D.
 *   - A/D bits of the tables are set by compare-and-swap, top down, only on a
 *     successful walk (the walk restarts if an entry changed under it).
 *   - A table or page outside the backend's memory is reported as
 *     PGM_SOFT_MMU_BAD_HPA: in shadow tables that is an isolation bug.
 * The host is taken to have MAXPHYADDR 52, 1 GiB pages and PSE-36 (M = 40).
 * Paging-structure caches are not modelled (only the TLB).
 *
 * With `nested` set in the vCPU state, translations take the two-dimensional
 * path of soft_mmu_nested.c, which reuses this file's guest walk with every
 * table read made through the nested tables.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/atomics.h"
#include "src/backends/soft_mmu.h"

#define HOST_MAXPHY SOFT_MAXPHY

#define E_P   (1ull << 0)
#define E_RW  (1ull << 1)
#define E_US  (1ull << 2)
#define E_A   (1ull << 5)
#define E_D   (1ull << 6)
#define E_PS  (1ull << 7)
#define E_G   (1ull << 8)
#define E_XD  (1ull << 63)

static uint64_t
bits(unsigned lo, unsigned hi)
{
    uint64_t upto = hi >= 63 ? ~0ull : (1ull << (hi + 1)) - 1;
    return lo > hi ? 0 : upto & ~((1ull << lo) - 1);
}

static struct soft_vcpu *
get_vcpu(struct pgm_soft_backend *sb, unsigned id, bool create)
{
    if (!sb || id >= PGM_SOFT_MAX_VCPUS)
        return NULL;
    pthread_mutex_lock(&sb->vcpus_lock);
    struct soft_vcpu *v = sb->vcpus[id];
    if (!v && create) {
        v = calloc(1, sizeof(*v));
        if (v) {
            pthread_mutex_init(&v->lock, NULL);
            v->cpu.format = PGM_MODE_REAL;
            sb->vcpus[id] = v;
        }
    }
    pthread_mutex_unlock(&sb->vcpus_lock);
    return v;
}

void
pgm_soft_mmu_destroy(struct pgm_soft_backend *sb)
{
    for (unsigned i = 0; i < PGM_SOFT_MAX_VCPUS; i++) {
        if (sb->vcpus[i]) {
            pthread_mutex_destroy(&sb->vcpus[i]->lock);
            free(sb->vcpus[i]);
            sb->vcpus[i] = NULL;
        }
    }
}

static void
tlb_flush_all(struct soft_vcpu *v, bool keep_global)
{
    v->stats.flushes++;
    for (unsigned i = 0; i < PGM_SOFT_TLB_ENTRIES; i++) {
        struct tlb_entry *t = &v->tlb[i];
        if (t->valid && !(keep_global && t->global)) {
            t->valid = false;
            v->stats.entries_flushed++;
        }
    }
}

/* Latch the PAE PDPTEs from cr3. Returns false if the PDPT is not backend memory. */
static bool
latch_pdptes(struct pgm_soft_backend *sb, struct soft_vcpu *v)
{
    memset(v->pdpte, 0, sizeof(v->pdpte));
    v->pdpte_fault_pending = false;
    if (v->cpu.format != PGM_MODE_PAE)
        return true;
    if (v->cpu.nested == PGM_PAGING_NPT)
        return true; /* read at each walk: see soft_mmu_nested.c */
    if (v->cpu.nested == PGM_PAGING_EPT) {
        soft_nested_latch_pdptes(sb, v);
        return true;
    }
    const uint8_t *p = pgm_soft_hpa_ptr(sb, v->cpu.cr3 & 0xffffffe0ull);
    if (!p)
        return false;
    for (unsigned i = 0; i < 4; i++)
        v->pdpte[i] = pgm_load64((const uint64_t *)(const void *)(p + 8 * i));
    return true;
}

PGM_API int
pgm_soft_mmu_set_cpu(struct pgm_soft_backend *sb, unsigned vcpu, const struct pgm_soft_cpu *cpu)
{
    if (!cpu || (unsigned)cpu->format >= PGM_MODE_COUNT)
        return -EINVAL;
    struct soft_vcpu *v = get_vcpu(sb, vcpu, true);
    if (!v)
        return -EINVAL;
    pthread_mutex_lock(&v->lock);
    const struct pgm_soft_cpu *o = &v->cpu;
    if ((cpu->nested != PGM_PAGING_NONE && cpu->nested != PGM_PAGING_EPT &&
         cpu->nested != PGM_PAGING_NPT) ||
        (cpu->guest_maxphyaddr && (cpu->guest_maxphyaddr < 32 || cpu->guest_maxphyaddr > 52))) {
        pthread_mutex_unlock(&v->lock);
        return -EINVAL;
    }
    if (cpu->nested != PGM_PAGING_NONE &&
        ((cpu->nested_levels != 4 && cpu->nested_levels != 5) ||
         (cpu->nested_root & ~0x000ffffffffff000ull) ||
         (cpu->nested_maxphyaddr && (cpu->nested_maxphyaddr < 32 || cpu->nested_maxphyaddr > 52)))) {
        pthread_mutex_unlock(&v->lock);
        return -EINVAL;
    }
    /*
     * A change of nested mode or of how nested entries read drops everything,
     * guest-physical mappings included. A change of nested root does not:
     * mappings are tagged with the root they were made under (the EP4TA, SDM
     * 29.4.1), so those of another root are neither used nor dropped.
     */
    bool nflush = o->nested != cpu->nested || o->nested_levels != cpu->nested_levels ||
                  o->ept_ad != cpu->ept_ad || o->nested_nxe != cpu->nested_nxe ||
                  o->nested_maxphyaddr != cpu->nested_maxphyaddr;
    bool flush = o->format != cpu->format || o->pse != cpu->pse || o->pge != cpu->pge ||
                 o->pcide != cpu->pcide || o->nxe != cpu->nxe ||
                 o->guest_maxphyaddr != cpu->guest_maxphyaddr || nflush;
    /*
     * PAE guest on EPT: the CPU loads the PDPTEs at MOV CR3 and at the CR0 /
     * CR4 writes that enter PAE paging (SDM 4.4.1), not whenever the state
     * is set again: keep the latch while CR3, the mode and the nested table
     * stay, unless the last load faulted (the MOV CR3 runs again after the
     * exit). A reload of the same CR3 is pgm_soft_mmu_guest_cr3_load().
     */
    bool keep_latch = cpu->nested == PGM_PAGING_EPT && cpu->format == PGM_MODE_PAE &&
                      o->nested == cpu->nested && o->format == cpu->format &&
                      o->cr3 == cpu->cr3 && o->nested_root == cpu->nested_root && !nflush &&
                      !v->pdpte_fault_pending;
    struct pgm_soft_cpu old = v->cpu;
    v->cpu = *cpu;
    if (!keep_latch && !latch_pdptes(sb, v)) {
        v->cpu = old;
        latch_pdptes(sb, v);
        pthread_mutex_unlock(&v->lock);
        return -EINVAL;
    }
    if (flush)
        tlb_flush_all(v, false);
    if (nflush)
        soft_gcache_flush(v);
    pthread_mutex_unlock(&v->lock);
    return 0;
}

void
pgm_soft_mmu_load_root(void *ctx, unsigned vcpu_id, pgm_hpa_t root)
{
    struct soft_vcpu *v = get_vcpu(ctx, vcpu_id, true);
    if (!v)
        return;
    pthread_mutex_lock(&v->lock);
    /* An EPT / NPT VM's root is the nested table; the guest loads its own CR3. */
    if (v->cpu.nested != PGM_PAGING_NONE)
        v->cpu.nested_root = root;
    else
        v->cpu.cr3 = root;
    latch_pdptes(ctx, v);
    pthread_mutex_unlock(&v->lock);
}

/* A flush of @req's scope; @guest_only: never the guest-physical mappings. */
static void
flush_locked(struct soft_vcpu *v, const struct pgm_flush_req *req, bool guest_only)
{
    switch (req->scope) {
    case PGM_FLUSH_GVA:
        /* INVLPG: the address in that PCID, and any global translation of it. */
        v->stats.flushes++;
        for (unsigned i = 0; i < PGM_SOFT_TLB_ENTRIES; i++) {
            struct tlb_entry *t = &v->tlb[i];
            if (t->valid && (req->addr & ~((1ull << t->shift) - 1)) == t->va_base &&
                (t->global || t->pcid == req->pcid)) {
                t->valid = false;
                v->stats.entries_flushed++;
            }
        }
        break;
    case PGM_FLUSH_PCID:
        v->stats.flushes++;
        for (unsigned i = 0; i < PGM_SOFT_TLB_ENTRIES; i++) {
            struct tlb_entry *t = &v->tlb[i];
            if (t->valid && !t->global && t->pcid == req->pcid) {
                t->valid = false;
                v->stats.entries_flushed++;
            }
        }
        break;
    case PGM_FLUSH_NONGLOBAL:
        tlb_flush_all(v, true);
        break;
    case PGM_FLUSH_ALL:
    case PGM_FLUSH_GPA:
    default:
        /*
         * A GVA TLB cannot tell which entries map a GPA; and INVEPT (single
         * or all context) drops every combined and guest-physical mapping
         * (SDM 29.4.3.1). Guest-scope flushes above never reach the
         * guest-physical mappings: only this one does.
         */
        tlb_flush_all(v, false);
        if (!guest_only)
            soft_gcache_flush(v);
        break;
    }
}

void
pgm_soft_mmu_flush(void *ctx, unsigned vcpu_id, const struct pgm_flush_req *req)
{
    struct soft_vcpu *v = get_vcpu(ctx, vcpu_id, false);
    if (!v || !req)
        return;
    pthread_mutex_lock(&v->lock);
    flush_locked(v, req, false);
    pthread_mutex_unlock(&v->lock);
}

PGM_API int
pgm_soft_mmu_guest_cr3_load(struct pgm_soft_backend *sb, unsigned vcpu)
{
    struct soft_vcpu *v = get_vcpu(sb, vcpu, false);
    if (!v)
        return -EINVAL;
    pthread_mutex_lock(&v->lock);
    bool ok = latch_pdptes(sb, v);
    pthread_mutex_unlock(&v->lock);
    return ok ? 0 : -EINVAL;
}

PGM_API void
pgm_soft_mmu_guest_flush(struct pgm_soft_backend *sb, unsigned vcpu,
                         const struct pgm_flush_req *req)
{
    struct soft_vcpu *v = get_vcpu(sb, vcpu, false);
    if (!v || !req)
        return;
    pthread_mutex_lock(&v->lock);
    flush_locked(v, req, true);
    pthread_mutex_unlock(&v->lock);
}

/* Rights check of a translation at access time (SDM 4.6); 0 or the #PF error code. */
uint32_t
soft_check_access(const struct pgm_soft_cpu *c, uint32_t access, unsigned rights, unsigned pkey)
{
    bool write = access & PGM_ACCESS_WRITE, fetch = access & PGM_ACCESS_FETCH;
    bool user = access & PGM_ACCESS_USER, upage = rights & PGM_RIGHT_USER;
    bool fault = fetch && !(rights & PGM_RIGHT_EXEC);
    if (user) {
        fault |= !upage || (write && !(rights & PGM_RIGHT_WRITE));
    } else {
        fault |= write && !(rights & PGM_RIGHT_WRITE) && c->wp;
        if (upage && fetch && c->smep)
            fault = true;
        if (upage && !fetch && c->smap &&
            (!(access & PGM_ACCESS_AC) || (access & PGM_ACCESS_IMPLICIT)))
            fault = true;
    }
    bool pk = false;
    if (c->pke && upage && !fetch &&
        (c->format == PGM_MODE_AMD64 || c->format == PGM_MODE_LA57)) {
        unsigned kb = (c->pkru >> (2 * pkey)) & 3;
        pk = (kb & 1) || ((kb & 2) && write && (user || c->wp));
    }
    if (!fault && !pk)
        return 0;
    return PGM_PFEC_P | (access & (PGM_PFEC_W | PGM_PFEC_U)) | (pk ? PGM_PFEC_PK : 0) |
           (fetch && (c->smep || (c->nxe && c->format >= PGM_MODE_PAE)) ? PGM_PFEC_ID : 0);
}

static uint32_t
structural_ec(const struct pgm_soft_cpu *c, uint32_t access, bool rsvd)
{
    bool fetch = access & PGM_ACCESS_FETCH;
    return (rsvd ? PGM_PFEC_P | PGM_PFEC_RSVD : 0) | (access & (PGM_PFEC_W | PGM_PFEC_U)) |
           (fetch && (c->smep || (c->nxe && c->format >= PGM_MODE_PAE)) ? PGM_PFEC_ID : 0);
}

/*
 * Reserved bits of entry @e at @level in the vCPU's format, for MAXPHYADDR
 * `guest_maxphyaddr` (0: the host's 52). PSE-36: M = min(MAXPHYADDR, 40),
 * PDE bits 21:(M - 19) reserved (SDM 4.3).
 */
static uint64_t
rsvd_bits(const struct pgm_soft_cpu *c, unsigned level, uint64_t e)
{
    unsigned maxphy = c->guest_maxphyaddr ? c->guest_maxphyaddr : HOST_MAXPHY;
    if (c->format == PGM_MODE_32BIT) {
        unsigned m = maxphy < 40 ? maxphy : 40;
        return level == 2 && c->pse && (e & E_PS) ? bits(m - 19, 21) : 0;
    }
    uint64_t r = bits(maxphy, c->format == PGM_MODE_PAE ? 62 : 51);
    if (!c->nxe)
        r |= E_XD;
    bool ps = e & E_PS;
    if (level >= 4)
        r |= E_PS;
    else if (level == 3 && ps)
        r |= bits(13, 29);
    else if (level == 2 && ps)
        r |= bits(13, 20);
    return r;
}

/*
 * Walk the tables and, on success, set A/D and fill @t. Returns the status;
 * *ec receives the error code of a #PF. With @n (nested mode) every table
 * address is a GPA read through the nested tables, a refused guest A/D
 * update is a nested fault (n->fault), and t->frame is the leaf's GPA frame.
 */
enum pgm_soft_mmu_status
soft_guest_walk(struct pgm_soft_backend *sb, struct soft_vcpu *v, uint64_t va, uint32_t access,
                struct tlb_entry *t, uint32_t *ec, struct soft_nested_walk *n)
{
    const struct pgm_soft_cpu *c = &v->cpu;
    unsigned levels = c->format == PGM_MODE_32BIT ? 2 : c->format == PGM_MODE_PAE ? 3 :
                      c->format == PGM_MODE_AMD64 ? 4 : 5;
    unsigned idx_bits = c->format == PGM_MODE_32BIT ? 10 : 9;
    unsigned esize = c->format == PGM_MODE_32BIT ? 4 : 8;

    for (unsigned attempt = 0; attempt < 64; attempt++) {
        uint64_t ent[6];
        uint8_t *where[6] = { 0 };
        unsigned rights = PGM_RIGHT_WRITE | PGM_RIGHT_USER | PGM_RIGHT_EXEC;
        uint64_t table = c->cr3 & (c->format == PGM_MODE_32BIT ? 0xfffff000ull :
                                   0x000ffffffffff000ull);
        unsigned level = levels;
        if (c->format == PGM_MODE_PAE) {
            uint64_t e = v->pdpte[(va >> 30) & 3];
            if (n && c->nested == PGM_PAGING_NPT) {
                /*
                 * AMD has no PDPTE registers under nested paging: the PDPTE
                 * is read at each walk, a guest table access like the others.
                 */
                pgm_gpa_t a = (c->cr3 & 0xffffffe0ull) + 8 * ((va >> 30) & 3);
                uint8_t *p = soft_nested_table(sb, v, a, 3, n);
                if (!p)
                    return n->fault.status;
                e = pgm_load64((const uint64_t *)(void *)p);
                n->refs++;
            }
            if (!(e & E_P)) {
                *ec = structural_ec(c, access, false);
                return PGM_SOFT_MMU_PF;
            }
            table = e & 0x000ffffffffff000ull;
            level = 2;
        }
        unsigned leaf;
        uint64_t e = 0;
        for (;; level--) {
            unsigned shift = 12 + idx_bits * (level - 1);
            uint64_t a = table + ((va >> shift) & ((1u << idx_bits) - 1)) * esize;
            uint8_t *p = n ? soft_nested_table(sb, v, a, level, n) : pgm_soft_hpa_ptr(sb, a);
            if (!p)
                return n ? n->fault.status : PGM_SOFT_MMU_BAD_HPA;
            if (n)
                n->refs++;
            e = esize == 4 ? pgm_load32((const uint32_t *)(void *)p)
                           : pgm_load64((const uint64_t *)(void *)p);
            ent[level] = e;
            where[level] = p;
            if (!(e & E_P)) {
                *ec = structural_ec(c, access, false);
                return PGM_SOFT_MMU_PF;
            }
            if (e & rsvd_bits(c, level, e)) {
                *ec = structural_ec(c, access, true);
                return PGM_SOFT_MMU_PF;
            }
            if (!(e & E_RW))
                rights &= ~(unsigned)PGM_RIGHT_WRITE;
            if (!(e & E_US))
                rights &= ~(unsigned)PGM_RIGHT_USER;
            if (c->nxe && (e & E_XD))
                rights &= ~(unsigned)PGM_RIGHT_EXEC;
            bool ps_leaf = c->format == PGM_MODE_32BIT ? level == 2 && c->pse && (e & E_PS)
                                                       : level <= 3 && (e & E_PS);
            if (level == 1 || ps_leaf)
                break;
            table = e & (esize == 4 ? 0xfffff000ull : 0x000ffffffffff000ull);
        }
        leaf = level;
        unsigned pkey = esize == 8 ? (unsigned)(e >> 59) & 0xf : 0;
        uint32_t fault = soft_check_access(c, access, rights, pkey);
        if (fault) {
            *ec = fault;
            return PGM_SOFT_MMU_PF;
        }
        /* A on every level, D on the leaf of a write; restart on a lost race. */
        bool raced = false;
        unsigned top = c->format == PGM_MODE_PAE ? 2 : levels;
        for (unsigned l = top; l >= leaf && !raced; l--) {
            uint64_t want = E_A | (l == leaf && (access & PGM_ACCESS_WRITE) ? E_D : 0);
            if ((ent[l] & want) == want)
                continue;
            /*
             * Nested: the A/D update is a write to the guest table's page
             * (SDM 29.3.3.2: "writes ... to update accessed and dirty flags
             * are considered to be data writes"), refused without nested W.
             */
            if (n && !(n->table_nr[l] & SOFT_NW)) {
                soft_nested_ad_fault(v, n->table_gpa[l], n);
                return n->fault.status;
            }
            if (esize == 4) {
                uint32_t exp = (uint32_t)ent[l];
                raced = !pgm_cas32((uint32_t *)(void *)where[l], &exp, (uint32_t)(ent[l] | want));
            } else {
                uint64_t exp = ent[l];
                raced = !pgm_cas64((uint64_t *)(void *)where[l], &exp, ent[l] | want);
            }
            ent[l] |= want;
        }
        if (raced)
            continue;

        /* Page frame and TLB entry. */
        unsigned shift = leaf == 1 ? 12 : c->format == PGM_MODE_32BIT ? 22 : 12 + 9 * (leaf - 1);
        uint64_t frame;
        if (c->format == PGM_MODE_32BIT && leaf == 2)
            frame = (e & 0xffc00000ull) | (((e >> 13) & 0xff) << 32);
        else
            frame = e & 0x000ffffffffff000ull & ~((1ull << shift) - 1);
        e = ent[leaf];
        *t = (struct tlb_entry){
            .valid = true,
            .eptag = n ? c->nested_root : 0,
            .global = c->pge && (e & E_G),
            .dirty = (e & E_D) != 0,
            .rights = (uint8_t)rights,
            .pkey = (uint8_t)pkey,
            .shift = (uint8_t)shift,
            .pcid = c->pcide ? c->pcid : 0,
            .va_base = va & ~((1ull << shift) - 1),
            .frame = frame,
        };
        return PGM_SOFT_MMU_OK;
    }
    /* A table rewritten faster than we can walk it: report it as absent. */
    *ec = structural_ec(c, access, false);
    return PGM_SOFT_MMU_PF;
}

/* The entry translating @va in PCID @pcid under nested root @tag, or NULL. */
struct tlb_entry *
soft_tlb_find(struct soft_vcpu *v, uint64_t va, uint16_t pcid, pgm_hpa_t tag)
{
    for (unsigned i = 0; i < PGM_SOFT_TLB_ENTRIES; i++) {
        struct tlb_entry *t = &v->tlb[i];
        if (t->valid && t->eptag == tag && (t->global || t->pcid == pcid) &&
            (va & ~((1ull << t->shift) - 1)) == t->va_base)
            return t;
    }
    return NULL;
}

/* Drop every entry that translates @va in PCID @pcid under root @tag. */
void
soft_tlb_drop_va(struct soft_vcpu *v, uint64_t va, uint16_t pcid, pgm_hpa_t tag)
{
    for (unsigned i = 0; i < PGM_SOFT_TLB_ENTRIES; i++) {
        struct tlb_entry *t = &v->tlb[i];
        if (t->valid && t->eptag == tag && (t->global || t->pcid == pcid) &&
            (va & ~((1ull << t->shift) - 1)) == t->va_base)
            t->valid = false;
    }
}

/* Insert @fresh for @va (round robin), keeping one translation per address. */
struct tlb_entry *
soft_tlb_insert(struct soft_vcpu *v, uint64_t va, const struct tlb_entry *fresh)
{
    soft_tlb_drop_va(v, va, fresh->pcid, fresh->eptag);
    struct tlb_entry *t = &v->tlb[v->next_victim];
    v->next_victim = (v->next_victim + 1) % PGM_SOFT_TLB_ENTRIES;
    *t = *fresh;
    return t;
}

PGM_API int
pgm_soft_mmu_translate(struct pgm_soft_backend *sb, unsigned vcpu, uint64_t va, uint32_t access,
                       struct pgm_soft_mmu_result *out)
{
    struct soft_vcpu *v = get_vcpu(sb, vcpu, true);
    if (!v || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&v->lock);
    const struct pgm_soft_cpu *c = &v->cpu;
    v->stats.translations++;

    if (c->nested != PGM_PAGING_NONE) {
        soft_nested_translate(sb, v, va, access, out);
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    if (c->format == PGM_MODE_REAL || c->format == PGM_MODE_PROT) {
        uint64_t pa = (uint32_t)va;
        out->page_shift = 12;
        out->ptr = pgm_soft_hpa_ptr(sb, pa);
        out->hpa = pa;
        out->status = out->ptr ? PGM_SOFT_MMU_OK : PGM_SOFT_MMU_BAD_HPA;
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    if (c->format == PGM_MODE_AMD64 || c->format == PGM_MODE_LA57) {
        unsigned vb = c->format == PGM_MODE_LA57 ? 57 : 48;
        if ((uint64_t)((int64_t)(va << (64 - vb)) >> (64 - vb)) != va) {
            out->status = PGM_SOFT_MMU_GP;
            pthread_mutex_unlock(&v->lock);
            return 0;
        }
    } else {
        va = (uint32_t)va;
    }

    uint16_t pcid = c->pcide ? c->pcid : 0;
    struct tlb_entry *hit = soft_tlb_find(v, va, pcid, 0);
    if (hit) {
        uint32_t ec = soft_check_access(c, access, hit->rights, hit->pkey);
        if (ec) {
            hit->valid = false; /* a #PF invalidates the faulting address */
            v->stats.faults++;
            out->status = PGM_SOFT_MMU_PF;
            out->error_code = ec;
            out->tlb_hit = true;
            pthread_mutex_unlock(&v->lock);
            return 0;
        }
        if ((access & PGM_ACCESS_WRITE) && !hit->dirty)
            hit->valid = false; /* walk again to set D */
        else
            v->stats.tlb_hits++;
    }
    if (!hit || !hit->valid) {
        struct tlb_entry fresh;
        uint32_t ec = 0;
        v->stats.walks++;
        enum pgm_soft_mmu_status st = soft_guest_walk(sb, v, va, access, &fresh, &ec, NULL);
        if (st != PGM_SOFT_MMU_OK) {
            if (st == PGM_SOFT_MMU_PF)
                v->stats.faults++;
            out->status = st;
            out->error_code = ec;
            pthread_mutex_unlock(&v->lock);
            return 0;
        }
        hit = soft_tlb_insert(v, va, &fresh);
    } else {
        out->tlb_hit = true;
    }
    out->page_shift = hit->shift;
    out->hpa = hit->frame | (va & ((1ull << hit->shift) - 1));
    out->ptr = pgm_soft_hpa_ptr(sb, out->hpa);
    out->status = out->ptr ? PGM_SOFT_MMU_OK : PGM_SOFT_MMU_BAD_HPA;
    pthread_mutex_unlock(&v->lock);
    return 0;
}

PGM_API void
pgm_soft_mmu_stats(struct pgm_soft_backend *sb, unsigned vcpu, struct pgm_soft_mmu_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    struct soft_vcpu *v = get_vcpu(sb, vcpu, false);
    if (!v)
        return;
    pthread_mutex_lock(&v->lock);
    *out = v->stats;
    pthread_mutex_unlock(&v->lock);
}
