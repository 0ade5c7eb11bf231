/* SPDX-License-Identifier: MIT */
/*
 * minivmm: libpgm's backend on a KVM memory slot, the VMM area, and the
 * coherence between libpgm's tables and KVM's cached copy of them.
 *
 * "Host-physical" for libpgm is the KVM VM's guest-physical space: the vCPU
 * (which KVM runs on its own shadow MMU, kvm_pvm having no nested paging)
 * walks libpgm's shadow tables as if they were its page tables, so an HPA
 * in a libpgm entry is an address in a KVM memory slot.
 *
 * Coherence (README "Coherence"). KVM write-protects the pages it shadows
 * against the vCPU, not against this process: when libpgm rewrites an entry
 * through its host pointer, KVM's cached translation of that entry lives on.
 *  - not present -> present, and rights widened: nothing to do. KVM's copy
 *    of the entry is "not present" / narrower, so the vCPU faults, KVM walks
 *    the tables again and finds the new entry.
 *  - present -> changed or removed: KVM's cached copy must be dropped. libpgm
 *    requests PGM_FLUSH_ALL on every vCPU for exactly these cases (it does
 *    not know which linear addresses reach a shared table); MOV CR3 and
 *    INVLPG ask for NONGLOBAL / GVA flushes, which need no action here
 *    because libpgm never leaves a shadow entry wider than the guest's
 *    (writes to guest tables are emulated and zap at once). So the drop is
 *    tied to PGM_FLUSH_ALL, and done once before the next entry.
 * The drop itself (measured by --coherence): delete and re-create memory
 * slot 0, which makes KVM discard every shadow page of the VM.
 */
#include "vmm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PTE_P  0x1ull
#define PTE_W  0x2ull
#define PTE_U  0x4ull
#define PTE_A  0x20ull
#define PTE_NX (1ull << 63)
#define ADDR_MASK 0x000ffffffffff000ull

void *hpa_ptr(struct vmm *v, uint64_t hpa)
{
    if (hpa < TMEM_SIZE)
        return v->tmem + hpa;
    if (hpa >= v->ram_hpa && hpa - v->ram_hpa < v->ram_size)
        return v->ram + (hpa - v->ram_hpa);
    return NULL;
}

/* ---- the backend ops ---- */

static int be_alloc_page(void *ctx, pgm_hpa_t *hpa, void **ptr)
{
    struct vmm *v = ctx;
    uint64_t p;
    if (v->nfree)
        p = v->free_pages[--v->nfree];
    else if (v->next_page < TMEM_SIZE)
        p = v->next_page, v->next_page += 4096;
    else
        return -ENOMEM;
    memset(v->tmem + p, 0, 4096);
    v->pages_in_use++;
    *hpa = p;
    *ptr = v->tmem + p;
    return 0;
}

static void be_free_page(void *ctx, pgm_hpa_t hpa, void *ptr)
{
    struct vmm *v = ctx;
    (void)ptr;
    v->free_pages[v->nfree++] = hpa;
    v->pages_in_use--;
}

static void *be_hpa_to_ptr(void *ctx, pgm_hpa_t hpa)
{
    struct vmm *v = ctx;
    if (hpa >= POOL_HPA && hpa < TMEM_SIZE)
        return v->tmem + hpa;
    if (v->ram_block_used && hpa >= v->ram_hpa && hpa - v->ram_hpa < v->ram_size)
        return v->ram + (hpa - v->ram_hpa);
    return NULL;
}

/* Guest RAM is one block in slot 1: GPA -> HPA is arithmetic for libpgm and
 * an ordinary mapping for KVM. */
static int be_alloc_ram_block(void *ctx, uint64_t npages, pgm_hpa_t *hpa, void **ptr)
{
    struct vmm *v = ctx;
    if (v->ram_block_used || npages * 4096 > v->ram_size)
        return -ENOMEM;
    v->ram_block_used = true;
    *hpa = v->ram_hpa;
    *ptr = v->ram;
    return 0;
}

static void be_free_ram_block(void *ctx, pgm_hpa_t hpa, void *ptr, uint64_t npages)
{
    struct vmm *v = ctx;
    (void)hpa, (void)ptr, (void)npages;
    v->ram_block_used = false;
}

static void be_load_root(void *ctx, unsigned vcpu_id, pgm_hpa_t root)
{
    struct vmm *v = ctx;
    (void)vcpu_id;
    v->lib_root = root; /* loaded into the real CR3 (through its copy) before the next entry */
}

static void be_flush(void *ctx, unsigned vcpu_id, const struct pgm_flush_req *req)
{
    struct vmm *v = ctx;
    (void)vcpu_id;
    if ((unsigned)req->scope < 5)
        v->st.flush_req[req->scope]++;
    if (req->scope == PGM_FLUSH_ALL)
        v->drop_pending = true;
}

const struct pgm_backend_ops vmm_backend_ops = {
    .struct_size = sizeof(struct pgm_backend_ops),
    .alloc_page = be_alloc_page,
    .free_page = be_free_page,
    .hpa_to_ptr = be_hpa_to_ptr,
    .alloc_ram_block = be_alloc_ram_block,
    .free_ram_block = be_free_ram_block,
    .load_root = be_load_root,
    .flush = be_flush,
};

/* ---- dropping KVM's cached shadow of libpgm's tables ---- */

void drop_kvm_cache(struct vmm *v)
{
    uint64_t t0 = now_ns();
    switch (v->flush_method) {
    case FLUSH_MEMSLOT:
        kvm_del_slot(v, 0);
        kvm_add_slot(v, 0, 0, TMEM_SIZE, v->tmem);
        break;
    case FLUSH_SREGS: {
        struct kvm_sregs s;
        kvm_get_sregs(v, &s);
        kvm_set_sregs(v, &s);
        break;
    }
    case FLUSH_NONE:
        break;
    }
    v->st.drops++;
    v->st.ns_drop += now_ns() - t0;
    v->drop_pending = false;
}

/* ---- the VMM area ----
 * Mapped at VMM_AREA_GVA (PML4 slot VMM_PML4_SLOT) in every address space
 * the vCPU runs, supervisor-only: the #PF stub, the IDT, GDT + TSS and the
 * stub's IST stack. */

uint64_t *area_ptr(struct vmm *v, uint64_t off)
{
    return (uint64_t *)(void *)(v->tmem + AREA_HPA + off);
}

/* The stub: the CPU entered it on IST1 with the error code on the stack.
 *   0: out 0xe0, al          report to the VMM (the exit); AL is not used
 *   2: add rsp, 8            resume: drop the error code
 *   6: iretq
 * For an injection the VMM redirects the vCPU itself. */
static const uint8_t stub_code[] = {
    0xe6, MINIVMM_PORT_PF,
    0x48, 0x83, 0xc4, 0x08,
    0x48, 0xcf,
};

static uint64_t gate(uint64_t target, unsigned ist, unsigned dpl, uint64_t *hi)
{
    *hi = target >> 32;
    return (target & 0xffff) | ((uint64_t)SEL_KCODE << 16) | ((uint64_t)ist << 32) |
           ((uint64_t)(0x8e | dpl << 5) << 40) | ((target >> 16 & 0xffff) << 48);
}

void area_build(struct vmm *v)
{
    uint8_t *a = v->tmem + AREA_HPA;
    memset(a, 0, 0xa000);
    memcpy(a + AREA_STUB, stub_code, sizeof(stub_code));
    /* GDT: as the guest's own (abi.h selectors), TSS at 0x28 */
    uint64_t *gdt = area_ptr(v, AREA_GDT);
    uint64_t t = VMM_AREA_GVA + AREA_TSS;
    gdt[1] = 0x00af9b000000ffffull;
    gdt[2] = 0x00cf93000000ffffull;
    gdt[3] = 0x00cff3000000ffffull;
    gdt[4] = 0x00affb000000ffffull;
    gdt[5] = 0x67 | (t & 0xffffff) << 16 | 0x8bull << 40 | (t >> 24 & 0xff) << 56;
    gdt[6] = t >> 32;
    /* TSS: IST1 = the stub stack; RSP0 from HC_SET_RSP0; no I/O bitmap */
    uint64_t ist = VMM_AREA_GVA + AREA_STACK_TOP;
    memcpy(a + AREA_TSS + 0x24, &ist, 8);
    a[AREA_TSS + 0x66] = 0x68;
    /* IDT: only the stub until the guest hands over its gates */
    uint64_t *idt = area_ptr(v, AREA_IDT);
    idt[14 * 2] = gate(VMM_AREA_GVA + AREA_STUB, 1, 0, &idt[14 * 2 + 1]);
    /* tables: PDPT -> PD -> PT, supervisor only */
    /* U on the upper levels only for the probe page's sake: every leaf but
     * the probe's is supervisor-only */
    area_ptr(v, AREA_PDPT)[0] = (AREA_HPA + AREA_PD) | PTE_P | PTE_W | PTE_U;
    area_ptr(v, AREA_PD)[0] = (AREA_HPA + AREA_PT) | PTE_P | PTE_W | PTE_U;
    uint64_t *pt = area_ptr(v, AREA_PT);
    pt[0] = (AREA_HPA + AREA_STUB) | PTE_P | PTE_A;                    /* RX */
    pt[1] = (AREA_HPA + AREA_IDT) | PTE_P | PTE_A | PTE_NX;            /* R */
    pt[2] = (AREA_HPA + AREA_GDT) | PTE_P | PTE_W | PTE_A | PTE_NX;    /* RW: TSS busy bit */
    pt[3] = (AREA_HPA + AREA_STACK) | PTE_P | PTE_W | PTE_A | PTE_NX;
    pt[4] = (AREA_HPA + AREA_STACK + 0x1000) | PTE_P | PTE_W | PTE_A | PTE_NX;
    /* the coherence probe page (HC_PROBE_FLIP) */
    area_ptr(v, AREA_PROBE_A)[0] = 0x1111;
    area_ptr(v, AREA_PROBE_B)[0] = 0x2222;
    pt[5] = (AREA_HPA + AREA_PROBE_A) | PTE_P | PTE_U | PTE_A | PTE_NX;
}

/* HC_PROBE_FLIP: change a present entry of the VMM's own tables through
 * this process's mapping, exactly as libpgm changes its entries, and ask
 * for the drop such a change needs. */
void area_probe_flip(struct vmm *v)
{
    uint64_t *pt = area_ptr(v, AREA_PT);
    uint64_t cur = pt[5] & ADDR_MASK;
    pt[5] = (AREA_HPA + (cur == AREA_HPA + AREA_PROBE_A ? AREA_PROBE_B : AREA_PROBE_A)) | PTE_P |
            PTE_U | PTE_A | PTE_NX;
    v->drop_pending = true;
}

/* The guest's gates (HC_SET_IDT), except #PF which stays the stub's. The
 * gates are copied once: a guest that edits its IDT calls HC_SET_IDT again. */
void area_set_idt(struct vmm *v, const uint64_t *gates, unsigned n)
{
    uint64_t *idt = area_ptr(v, AREA_IDT);
    uint64_t g14lo = idt[28], g14hi = idt[29];
    memset(idt, 0, 4096);
    memcpy(idt, gates, (size_t)n * 16);
    v->guest_pf_handler = n > 14 ? ((gates[28] & 0xffff) | (gates[28] >> 48 & 0xffff) << 16 |
                                    gates[29] << 32)
                                 : 0;
    idt[28] = g14lo;
    idt[29] = g14hi;
}

void area_set_rsp0(struct vmm *v, uint64_t rsp0)
{
    memcpy(v->tmem + AREA_HPA + AREA_TSS + 4, &rsp0, 8);
}

/* ---- root copies ----
 * The vCPU's CR3 points at a copy of libpgm's root table plus the VMM
 * area's PML4 entry (libpgm has no reserved-slot API; writing into its root
 * would break its bookkeeping and its audit). One copy per libpgm root,
 * so an address-space switch changes no present entry. The copy is brought
 * up to date before every entry: new entries are copied (no drop needed);
 * a present entry that changed means libpgm zapped it, and the PGM_FLUSH_ALL
 * libpgm sent for that already scheduled a drop (checked here too). */
uint64_t root_copy_sync(struct vmm *v, pgm_hpa_t lib_root)
{
    unsigned k, victim = 0;
    for (k = 0; k < NCOPIES; k++)
        if (v->copies[k].lib == lib_root)
            break;
    if (k == NCOPIES) {
        for (k = 0; k < NCOPIES; k++)
            if (v->copies[k].last_use < v->copies[victim].last_use)
                victim = k;
        k = victim;
        uint64_t *c = (uint64_t *)(void *)(v->tmem + COPY_HPA + k * 4096ull);
        for (unsigned i = 0; i < 512; i++)
            if (i != VMM_PML4_SLOT && (c[i] & PTE_P))
                v->drop_pending = true; /* reused for another root */
        memset(c, 0, 4096);
        c[VMM_PML4_SLOT] = (AREA_HPA + AREA_PDPT) | PTE_P | PTE_W | PTE_U | PTE_A;
        v->copies[k].lib = lib_root;
    }
    v->copies[k].last_use = ++v->copy_clock;
    uint64_t *c = (uint64_t *)(void *)(v->tmem + COPY_HPA + k * 4096ull);
    const uint64_t *l = hpa_ptr(v, lib_root);
    v->st.copy_syncs++;
    if (l[VMM_PML4_SLOT] & PTE_P)
        v->conflict = true; /* the guest mapped over the VMM area */
    for (unsigned i = 0; i < 512; i++) {
        if (i == VMM_PML4_SLOT || !((l[i] ^ c[i]) & ~PTE_A))
            continue;
        if (c[i] & PTE_P)
            v->drop_pending = true;
        else
            v->st.copy_new_entries++;
        c[i] = l[i];
    }
    return COPY_HPA + k * 4096ull;
}

/* ---- keeping the CPL3 -> CPL0 stack present ----
 * kvm_pvm shuts the VM down when pushing an exception frame on TSS.RSP0 (a
 * CPL3 -> CPL0 delivery) itself page-faults, instead of delivering that #PF
 * (README "Host limits"). So before each entry the page(s) a frame on RSP0
 * would use must be present and writable in the shadow tables the vCPU
 * runs on: a walk of the real tables (the root copy, then libpgm's) costs
 * a few loads; when it misses, a synthetic supervisor write fault makes
 * libpgm sync the entry, as the real fault would have. */
static bool shadow_writable(struct vmm *v, uint64_t gva)
{
    const uint64_t *t = hpa_ptr(v, v->real_cr3);
    for (int level = 4; level >= 1 && t; level--) {
        uint64_t e = t[(gva >> (12 + 9 * (level - 1))) & 511];
        if ((e & (PTE_P | PTE_W)) != (PTE_P | PTE_W))
            return false;
        if (level == 1 || (level <= 3 && (e & 0x80)))
            return true;
        t = hpa_ptr(v, e & ADDR_MASK);
    }
    return false;
}

bool keep_rsp0_present(struct vmm *v)
{
    bool synced = false;
    uint64_t rsp0;
    memcpy(&rsp0, v->tmem + AREA_HPA + AREA_TSS + 4, 8);
    if (!rsp0)
        return false;
    for (uint64_t a = (rsp0 & ~15ull) - 8; a >= (rsp0 & ~15ull) - 48; a -= 40) {
        if (shadow_writable(v, a))
            continue;
        struct pgm_regs r;
        struct pgm_fault_out out;
        memset(&r, 0, sizeof(r));
        r.code_bits = 64;
        r.rip = VMM_AREA_GVA + AREA_STUB; /* never emulated: not a write instruction */
        r.gpr[PGM_RSP] = a;
        pgm_trap0e(v->pcpu, PGM_PFEC_W, a, &r, &out);
        v->st.rsp0_prefaults++;
        synced = true;
    }
    return synced;
}
