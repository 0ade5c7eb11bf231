/* SPDX-License-Identifier: MIT */
/*
 * The soft MMU's two-dimensional walk: hardware-assisted paging as VT-x EPT
 * (SDM vol. 3C 29.3) and AMD-V NPT (APM vol. 2 15.25) do it.
 *
 * In nested mode `cr3` and the paging bits of the vCPU state are the
 * guest's. The guest walk (soft_guest_walk() in soft_mmu.c) reads each guest
 * table entry at a GPA; every such read is first translated through the
 * nested tables, then the leaf's GPA is translated too. A g-level guest on
 * n-level nested tables therefore reads up to (g + 1)(n + 1) - 1 entries.
 *
 * What is modelled, and the choices where the manuals leave room:
 *   - Guest paging-structure accesses are nested reads; with EPT A/D
 *     (EPTP bit 6) they are writes (SDM 29.3.3.2: "processor accesses to
 *     guest paging-structure entries are treated as writes"), and a
 *     violation then reports both bits 0 and 1 (SDM table 28-7, note 1).
 *     On NPT they are always user writes (the x86 walker may set A/D; the
 *     model KVM follows for AMD, `nested_access` in paging_tmpl.h).
 *   - A guest A/D update is a data write to the table's page (SDM 29.3.3.2);
 *     the soft MMU sets guest A/D after the walk, top down, so a refused
 *     update faults with the entry's GPA, stage "guest paging structure".
 *     It is a locked read-modify-write: reported with bits 0 and 1 (the SDM
 *     makes bit 0 implementation-specific for RMW; this model sets it).
 *   - EPT violation qualification: bits 2:0 the access, 5:3 the AND of
 *     bits 2:0 over the EPT entries used (0 when one was not present), 7
 *     GLA valid (clear only for the PDPTE loads of a PAE guest), 8 final
 *     translation. The modelled CPU reports no advanced information
 *     (IA32_VMX_EPT_VPID_CAP bit 22 = 0), so 11:9 are 0; no MBEC, no SSS.
 *   - EPT entries are classified with pgm_vtx_ept_classify() for a CPU with
 *     execute-only, 2 MiB and 1 GiB pages, A/D, MAXPHYADDR `nested_maxphyaddr`
 *     (default 52); a
 *     misconfiguration found on the way down ends the walk
 *     (PGM_SOFT_MMU_NESTED_MISCONFIG), permissions are checked on the whole
 *     walk (as KVM's walker does).
 *   - NPT entries are classified with pgm_svm_npt_classify() (long mode,
 *     1 GiB pages, host EFER.NXE from `nested_nxe`). Every nested access is
 *     a user access (APM 15.25.5; KVM: "NPT walks are always user-walks"):
 *     EXITINFO1 US is always 1, and US = 0 anywhere denies. P = 0 when an
 *     entry was not present, P = 1 for a protection or reserved-bit fault
 *     (RSV); ID for a fetch when NXE; bit 32 / 33 final / guest table.
 *   - PAE guests: EPT latches the four PDPTEs through EPT when the state is
 *     set (reads, never writes, SDM 29.3.3.2); a nested fault there is kept
 *     and reported by the next translation, GLA not valid. AMD has no PDPTE
 *     registers with nested paging: the PDPTE is read at each walk (as Bochs
 *     models it: "under nested walks need to load PDPTR and not read PDPTR
 *     cache", bochs-emu/Bochs issue 234).
 *   - Caching (SDM 29.4): combined mappings in the TLB, tagged with PCID and
 *     the nested root; guest-physical mappings in a small GPA cache, tagged
 *     with the root, used for guest table accesses and final translations
 *     and dropped only by PGM_FLUSH_GPA / PGM_FLUSH_ALL (INVEPT). A nested
 *     fault drops the guest-physical mappings of its GPA and the combined
 *     mappings of its linear address (SDM 29.4.3.1). Cached rights are
 *     applied as cached: a loosened nested entry can fault spuriously until
 *     that drop, a tightened one is honoured until the flush.
 *   - Nested A/D (EPT with A/D, NPT): A is set in every entry used and D in
 *     the leaf on a write, by compare-and-swap, only when the translation
 *     succeeds. The guest's entries are checked against `guest_maxphyaddr`.
 */
#include <string.h>

#include "pgm/hwvirt.h"
#include "src/atomics.h"
#include "src/backends/soft_mmu.h"

/* The modelled VT-x CPU: what EPT entries may contain (MAXPHYADDR set per walk). */
static const struct pgm_vtx_ept_env soft_ept_env = {
    .caps = { .exec_only = true, .walk4 = true, .walk5 = true, .mt_uc = true, .mt_wb = true,
              .pages_2m = true, .pages_1g = true, .invept = true, .ad = true },
    .maxphyaddr = SOFT_MAXPHY,
    .mbec = false,
};

static unsigned
host_maxphy(const struct pgm_soft_cpu *c)
{
    return c->nested_maxphyaddr ? c->nested_maxphyaddr : SOFT_MAXPHY;
}

enum nx_kind {
    NX_OK = 0,
    NX_NOT_PRESENT, /* an entry with nothing present: violation / NPF with P = 0 */
    NX_DENIED,      /* the walk's rights refuse the access */
    NX_RSVD,        /* NPT: reserved bit, NPF with P and RSV */
    NX_MISCONFIG,   /* EPT misconfiguration */
    NX_BAD_HPA,     /* a nested table outside backend memory */
};

/* One GPA -> HPA translation through the nested tables. */
struct nxlate {
    enum nx_kind kind;
    pgm_hpa_t hpa;    /* NX_OK: HPA of the byte */
    uint8_t nrights;  /* SOFT_NR / NW / NX AND-ed over the entries read */
    uint8_t shift;    /* NX_OK: nested page size */
    bool dirty;       /* NX_OK: nested leaf D (true without nested A/D) */
};

static bool
nested_ad(const struct pgm_soft_cpu *c)
{
    return c->nested == PGM_PAGING_NPT || c->ept_ad;
}

/* What the access needs of the nested translation, in SOFT_N* bits. */
static unsigned
effective_need(const struct pgm_soft_cpu *c, unsigned need)
{
    /* Every NPT access is a user access: US (our R) at every level. */
    return c->nested == PGM_PAGING_NPT ? need | SOFT_NR : need;
}

static unsigned
npt_rights(const struct pgm_soft_cpu *c, uint64_t e)
{
    if (!(e & PGM_NPT_US))
        return 0;
    return SOFT_NR | ((e & PGM_NPT_RW) ? SOFT_NW : 0) |
           (c->nested_nxe && (e & PGM_NPT_NX) ? 0 : SOFT_NX);
}

void
soft_gcache_flush(struct soft_vcpu *v)
{
    for (unsigned i = 0; i < SOFT_GPA_CACHE_ENTRIES; i++)
        v->gcache[i].valid = false;
}

static struct gpa_entry *
gcache_find(struct soft_vcpu *v, pgm_gpa_t gpa)
{
    for (unsigned i = 0; i < SOFT_GPA_CACHE_ENTRIES; i++) {
        struct gpa_entry *g = &v->gcache[i];
        if (g->valid && g->tag == v->cpu.nested_root &&
            (gpa & ~((1ull << g->shift) - 1)) == g->gpa_base)
            return g;
    }
    return NULL;
}

/* Walk the nested tables for @gpa needing @need (SOFT_N*), counting reads in *refs. */
static void
nested_walk(struct pgm_soft_backend *sb, struct soft_vcpu *v, pgm_gpa_t gpa, unsigned need,
            struct nxlate *x, uint64_t *refs)
{
    const struct pgm_soft_cpu *c = &v->cpu;
    bool ept = c->nested == PGM_PAGING_EPT;
    bool ad = nested_ad(c);
    struct pgm_vtx_ept_env ept_env = soft_ept_env;
    ept_env.maxphyaddr = host_maxphy(c);
    struct pgm_svm_npt_env npt_env = {
        .maxphyaddr = host_maxphy(c), .levels = c->nested_levels, .nxe = c->nested_nxe,
        .gbpages = true,
    };
    uint64_t a_bit = ept ? PGM_EPT_A : PGM_NPT_A, d_bit = ept ? PGM_EPT_D : PGM_NPT_D;

    struct gpa_entry *g = gcache_find(v, gpa);
    if (g) {
        v->stats.gpa_cache_hits++;
        if (need & ~g->nrights) {
            /* Cached rights are honoured as cached (SDM 29.4.2). */
            *x = (struct nxlate){ .kind = NX_DENIED, .nrights = g->nrights };
            return;
        }
        if (!(need & SOFT_NW) || g->dirty) {
            *x = (struct nxlate){ .kind = NX_OK, .nrights = g->nrights, .shift = g->shift,
                                  .dirty = g->dirty,
                                  .hpa = g->frame | (gpa & ((1ull << g->shift) - 1)) };
            return;
        }
        g->valid = false; /* a write through a clean mapping walks again to set D */
    }

    for (unsigned attempt = 0; attempt < 64; attempt++) {
        uint64_t ent[6] = { 0 };
        uint64_t *where[6] = { 0 };
        unsigned rights = SOFT_NR | SOFT_NW | SOFT_NX;
        pgm_hpa_t table = c->nested_root;
        unsigned level = c->nested_levels;
        for (;; level--) {
            unsigned shift = 12 + 9 * (level - 1);
            uint8_t *p = pgm_soft_hpa_ptr(sb, table + ((gpa >> shift) & 511) * 8);
            if (!p) {
                x->kind = NX_BAD_HPA;
                return;
            }
            uint64_t e = pgm_load64((const uint64_t *)(void *)p);
            (*refs)++;
            ent[level] = e;
            where[level] = (uint64_t *)(void *)p;
            int cls;
            bool leaf;
            if (ept) {
                cls = pgm_vtx_ept_classify(&ept_env, level, e, NULL);
                if (cls == PGM_EPT_NOT_PRESENT) {
                    /* bits 5:3 AND the absent entry's 2:0: zero */
                    *x = (struct nxlate){ .kind = NX_NOT_PRESENT };
                    return;
                }
                if (cls != PGM_EPT_TABLE && cls != PGM_EPT_LEAF) {
                    *x = (struct nxlate){ .kind = NX_MISCONFIG };
                    return;
                }
                rights &= (unsigned)(e & PGM_EPT_XWR_MASK);
                leaf = cls == PGM_EPT_LEAF;
            } else {
                cls = pgm_svm_npt_classify(&npt_env, level, e, NULL);
                if (cls == PGM_NPT_NOT_PRESENT) {
                    *x = (struct nxlate){ .kind = NX_NOT_PRESENT };
                    return;
                }
                if (cls != PGM_NPT_TABLE && cls != PGM_NPT_LEAF) {
                    *x = (struct nxlate){ .kind = NX_RSVD, .nrights = (uint8_t)rights };
                    return;
                }
                rights &= npt_rights(c, e);
                leaf = cls == PGM_NPT_LEAF;
            }
            if (leaf)
                break;
            table = e & PGM_EPT_ADDR_MASK; /* bits 51:12 in both formats */
        }
        unsigned leaf_level = level;
        if (need & ~rights) {
            *x = (struct nxlate){ .kind = NX_DENIED, .nrights = (uint8_t)rights };
            return;
        }
        bool raced = false;
        if (ad) {
            for (unsigned l = c->nested_levels; l >= leaf_level && !raced; l--) {
                uint64_t want = a_bit | (l == leaf_level && (need & SOFT_NW) ? d_bit : 0);
                if ((ent[l] & want) == want)
                    continue;
                uint64_t exp = ent[l];
                raced = !pgm_cas64(where[l], &exp, ent[l] | want);
                ent[l] |= want;
            }
        }
        if (raced)
            continue;
        unsigned shift = 12 + 9 * (leaf_level - 1);
        pgm_hpa_t frame = ent[leaf_level] & PGM_EPT_ADDR_MASK & ~((1ull << shift) - 1);
        *x = (struct nxlate){
            .kind = NX_OK,
            .hpa = frame | (gpa & ((1ull << shift) - 1)),
            .nrights = (uint8_t)rights,
            .shift = (uint8_t)shift,
            .dirty = !ad || (ent[leaf_level] & d_bit),
        };
        struct gpa_entry *slot = &v->gcache[v->gcache_victim];
        v->gcache_victim = (v->gcache_victim + 1) % SOFT_GPA_CACHE_ENTRIES;
        *slot = (struct gpa_entry){
            .valid = true, .dirty = x->dirty, .nrights = x->nrights, .shift = x->shift,
            .tag = c->nested_root, .gpa_base = gpa & ~((1ull << shift) - 1), .frame = frame,
        };
        return;
    }
    /* Nested tables rewritten faster than we can walk them: report them absent. */
    *x = (struct nxlate){ .kind = NX_NOT_PRESENT };
}

/* How a nested fault is reported. */
struct nfault_ctx {
    pgm_gpa_t gpa;
    uint64_t gla;
    bool gla_valid;
    bool guest_walk;
    unsigned acc;     /* qualification bits 2:0 (PGM_VTX_EPTV_READ / WRITE / FETCH) */
};

/*
 * Fill @out for the nested fault @x and drop what the fault invalidates:
 * the guest-physical mappings of the GPA and the combined mappings of the
 * linear address (SDM 29.4.3.1).
 */
static void
nested_fault(struct soft_vcpu *v, const struct nxlate *x, const struct nfault_ctx *f,
             struct pgm_soft_mmu_result *out)
{
    const struct pgm_soft_cpu *c = &v->cpu;
    memset(out, 0, sizeof(*out));
    v->stats.nested_faults++;
    for (unsigned i = 0; i < SOFT_GPA_CACHE_ENTRIES; i++) {
        struct gpa_entry *g = &v->gcache[i];
        if (g->valid && g->tag == c->nested_root &&
            (f->gpa & ~((1ull << g->shift) - 1)) == g->gpa_base)
            g->valid = false;
    }
    if (f->gla_valid)
        soft_tlb_drop_va(v, f->gla, c->pcide && c->format >= PGM_MODE_32BIT ? c->pcid : 0,
                         c->nested_root);

    out->status = x->kind == NX_MISCONFIG ? PGM_SOFT_MMU_NESTED_MISCONFIG
                                          : PGM_SOFT_MMU_NESTED_FAULT;
    out->gpa = f->gpa;
    out->gla = f->gla_valid ? f->gla : 0;
    out->gla_valid = f->gla_valid;
    out->guest_walk = f->guest_walk;
    out->nested_access = (f->acc & PGM_VTX_EPTV_WRITE ? PGM_ACCESS_WRITE : 0) |
                         (f->acc & PGM_VTX_EPTV_FETCH ? PGM_ACCESS_FETCH : 0);
    out->nested_rights = x->kind == NX_DENIED || x->kind == NX_RSVD ? x->nrights : 0;
    if (x->kind == NX_MISCONFIG)
        return; /* SDM 28.2.1: no qualification, only the GPA field */
    if (c->nested == PGM_PAGING_EPT) {
        uint64_t q = f->acc | ((uint64_t)out->nested_rights << 3);
        if (f->gla_valid)
            q |= PGM_VTX_EPTV_GLA_VALID | (f->guest_walk ? 0 : PGM_VTX_EPTV_TRANSLATED);
        out->exit_qual = q;
    } else {
        /* APM 15.25.6: a #PF-style error code plus the stage in bits 32 / 33. */
        uint64_t i1 = PGM_PFEC_U;
        if (x->kind != NX_NOT_PRESENT)
            i1 |= PGM_PFEC_P;
        if (x->kind == NX_RSVD)
            i1 |= PGM_PFEC_RSVD;
        if (f->acc & PGM_VTX_EPTV_WRITE)
            i1 |= PGM_PFEC_W;
        if ((f->acc & PGM_VTX_EPTV_FETCH) && c->nested_nxe)
            i1 |= PGM_PFEC_ID;
        i1 |= f->guest_walk ? PGM_SVM_NPF_GUEST_WALK : PGM_SVM_NPF_FINAL;
        out->exit_info1 = i1;
        out->exit_info2 = f->gpa;
    }
}

/* A guest paging-structure access: a read, or a write with nested A/D (see above). */
static unsigned
table_access_acc(const struct pgm_soft_cpu *c)
{
    return PGM_VTX_EPTV_READ | (nested_ad(c) ? PGM_VTX_EPTV_WRITE : 0);
}

void *
soft_nested_table(struct pgm_soft_backend *sb, struct soft_vcpu *v, pgm_gpa_t gpa,
                  unsigned level, struct soft_nested_walk *n)
{
    const struct pgm_soft_cpu *c = &v->cpu;
    unsigned acc = table_access_acc(c);
    unsigned need = effective_need(c, SOFT_NR | (acc & PGM_VTX_EPTV_WRITE ? SOFT_NW : 0));
    struct nxlate x;
    nested_walk(sb, v, gpa, need, &x, &n->refs);
    if (x.kind == NX_BAD_HPA) {
        memset(&n->fault, 0, sizeof(n->fault));
        n->fault.status = PGM_SOFT_MMU_BAD_HPA;
        return NULL;
    }
    if (x.kind != NX_OK) {
        struct nfault_ctx f = { gpa, n->gla, true, true, acc };
        nested_fault(v, &x, &f, &n->fault);
        return NULL;
    }
    void *p = pgm_soft_hpa_ptr(sb, x.hpa);
    if (!p) {
        memset(&n->fault, 0, sizeof(n->fault));
        n->fault.status = PGM_SOFT_MMU_BAD_HPA;
        return NULL;
    }
    n->table_gpa[level] = gpa;
    n->table_nr[level] = x.nrights;
    return p;
}

void
soft_nested_ad_fault(struct soft_vcpu *v, pgm_gpa_t gpa, struct soft_nested_walk *n)
{
    unsigned level = 0;
    for (unsigned l = 1; l < 6; l++)
        if (n->table_gpa[l] == gpa)
            level = l;
    struct nxlate x = { .kind = NX_DENIED, .nrights = level ? n->table_nr[level] : 0 };
    /* A locked read-modify-write of the entry: bits 0 and 1 (see above). */
    struct nfault_ctx f = { gpa, n->gla, true, true, PGM_VTX_EPTV_READ | PGM_VTX_EPTV_WRITE };
    nested_fault(v, &x, &f, &n->fault);
}

void
soft_nested_latch_pdptes(struct pgm_soft_backend *sb, struct soft_vcpu *v)
{
    const struct pgm_soft_cpu *c = &v->cpu;
    for (unsigned i = 0; i < 4; i++) {
        pgm_gpa_t gpa = (c->cr3 & 0xffffffe0ull) + 8 * i;
        struct nxlate x;
        uint64_t refs = 0;
        nested_walk(sb, v, gpa, SOFT_NR, &x, &refs);
        void *p = x.kind == NX_OK ? pgm_soft_hpa_ptr(sb, x.hpa) : NULL;
        if (x.kind == NX_OK && p) {
            v->pdpte[i] = pgm_load64((const uint64_t *)p);
            continue;
        }
        memset(v->pdpte, 0, sizeof(v->pdpte));
        v->pdpte_fault_pending = true;
        if (x.kind == NX_OK || x.kind == NX_BAD_HPA) {
            memset(&v->pdpte_fault, 0, sizeof(v->pdpte_fault));
            v->pdpte_fault.status = PGM_SOFT_MMU_BAD_HPA;
        } else {
            /* "Loads of guest PDPTEs are treated as reads"; no linear address (table 28-7 bit 7). */
            struct nfault_ctx f = { gpa, 0, false, true, PGM_VTX_EPTV_READ };
            nested_fault(v, &x, &f, &v->pdpte_fault);
            v->stats.nested_faults--; /* counted when reported */
        }
        return;
    }
}

/* What a final access needs and how it is reported. */
static void
final_access(uint32_t access, unsigned *need, unsigned *acc)
{
    if (access & PGM_ACCESS_FETCH) {
        *need = SOFT_NX;
        *acc = PGM_VTX_EPTV_FETCH;
    } else if (access & PGM_ACCESS_WRITE) {
        *need = SOFT_NW;
        *acc = PGM_VTX_EPTV_WRITE;
    } else {
        *need = SOFT_NR;
        *acc = PGM_VTX_EPTV_READ;
    }
}

static void
fill_ok(struct pgm_soft_backend *sb, const struct tlb_entry *t, uint64_t va,
        struct pgm_soft_mmu_result *out)
{
    uint64_t off = va & ((1ull << t->shift) - 1);
    out->page_shift = t->shift;
    out->hpa = t->frame | off;
    out->gpa = t->gpa_base | off;
    out->ptr = pgm_soft_hpa_ptr(sb, out->hpa);
    out->status = out->ptr ? PGM_SOFT_MMU_OK : PGM_SOFT_MMU_BAD_HPA;
}

void
soft_nested_translate(struct pgm_soft_backend *sb, struct soft_vcpu *v, uint64_t va,
                      uint32_t access, struct pgm_soft_mmu_result *out)
{
    const struct pgm_soft_cpu *c = &v->cpu;
    bool paging = c->format >= PGM_MODE_32BIT;
    if (c->format == PGM_MODE_PAE && v->pdpte_fault_pending) {
        *out = v->pdpte_fault;
        if (out->status != PGM_SOFT_MMU_BAD_HPA)
            v->stats.nested_faults++;
        return;
    }
    if (c->format == PGM_MODE_AMD64 || c->format == PGM_MODE_LA57) {
        unsigned vb = c->format == PGM_MODE_LA57 ? 57 : 48;
        if ((uint64_t)((int64_t)(va << (64 - vb)) >> (64 - vb)) != va) {
            out->status = PGM_SOFT_MMU_GP;
            return;
        }
    } else {
        va = (uint32_t)va; /* 32-bit linear addresses, paging or not */
    }
    uint16_t pcid = paging && c->pcide ? c->pcid : 0;
    unsigned need, acc;
    final_access(access, &need, &acc);
    need = effective_need(c, need);

    struct tlb_entry *hit = soft_tlb_find(v, va, pcid, c->nested_root);
    if (hit) {
        uint32_t ec = paging ? soft_check_access(c, access, hit->rights, hit->pkey) : 0;
        if (ec) {
            hit->valid = false; /* a #PF invalidates the faulting address */
            v->stats.faults++;
            out->status = PGM_SOFT_MMU_PF;
            out->error_code = ec;
            out->tlb_hit = true;
            return;
        }
        if ((access & PGM_ACCESS_WRITE) && !hit->dirty) {
            /*
             * Walk again to set guest or nested D: the guest D is set by the
             * guest walk, before the final GPA is translated, even if that
             * translation then faults.
             */
            hit->valid = false;
        } else if (need & ~hit->nrights) {
            /* The combined mapping's cached nested rights refuse the access. */
            struct nxlate x = { .kind = NX_DENIED, .nrights = hit->nrights };
            struct nfault_ctx f = { hit->gpa_base | (va & ((1ull << hit->shift) - 1)), va, true,
                                    false, acc };
            nested_fault(v, &x, &f, out);
            out->tlb_hit = true;
            return;
        } else {
            v->stats.tlb_hits++;
            fill_ok(sb, hit, va, out);
            out->tlb_hit = true;
            return;
        }
    }

    v->stats.walks++;
    v->stats.nested_walks++;
    struct soft_nested_walk n = { .gla = va };
    struct tlb_entry g;
    if (paging) {
        uint32_t ec = 0;
        enum pgm_soft_mmu_status st = soft_guest_walk(sb, v, va, access, &g, &ec, &n);
        v->stats.nested_refs += n.refs;
        if (st == PGM_SOFT_MMU_PF) {
            v->stats.faults++;
            out->status = st;
            out->error_code = ec;
            return;
        }
        if (st != PGM_SOFT_MMU_OK) {
            *out = n.fault;
            return;
        }
    } else {
        /* Paging off: the linear address is the GPA; a 4 GiB "guest page". */
        g = (struct tlb_entry){
            .valid = true, .dirty = true, .shift = 32, .va_base = 0, .frame = 0,
            .rights = PGM_RIGHT_WRITE | PGM_RIGHT_USER | PGM_RIGHT_EXEC,
        };
    }
    pgm_gpa_t gpa = g.frame | (va & ((1ull << g.shift) - 1));
    struct nxlate x;
    uint64_t refs = 0;
    nested_walk(sb, v, gpa, need, &x, &refs);
    v->stats.nested_refs += refs;
    if (x.kind == NX_BAD_HPA) {
        out->status = PGM_SOFT_MMU_BAD_HPA;
        return;
    }
    if (x.kind != NX_OK) {
        struct nfault_ctx f = { gpa, va, true, false, acc };
        nested_fault(v, &x, &f, out);
        return;
    }
    /* The combined mapping: the smaller of the two pages (SDM 29.4.1). */
    unsigned shift = g.shift < x.shift ? g.shift : x.shift;
    uint64_t mask = (1ull << shift) - 1;
    struct tlb_entry fresh = g;
    fresh.shift = (uint8_t)shift;
    fresh.va_base = va & ~mask;
    fresh.gpa_base = gpa & ~mask;
    fresh.frame = x.hpa & ~mask;
    fresh.nrights = x.nrights;
    fresh.dirty = g.dirty && x.dirty;
    fresh.eptag = c->nested_root;
    fresh.pcid = pcid;
    hit = soft_tlb_insert(v, va, &fresh);
    fill_ok(sb, hit, va, out);
}
