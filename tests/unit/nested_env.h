/* SPDX-License-Identifier: MIT */
/*
 * Test environment for the nested engine: a soft backend whose flush op is
 * wrapped to count requests, a VM on EPT or NPT, and a "CPU" written here
 * that walks the nested tables as the hardware would (entries judged by the
 * vendor classifiers pgm_vtx_ept_classify / pgm_svm_npt_classify, not by the
 * engine's own decoding), setting EPT A/D like the hardware when enabled.
 *
 * Guest code for emulated accesses runs in protected mode without paging
 * (linear = guest-physical) from CODE_GPA: `mov [ebx], eax` (89 03) and
 * `mov eax, [ebx]` (8b 03).
 */
#ifndef PGM_TESTS_UNIT_NESTED_ENV_H
#define PGM_TESTS_UNIT_NESTED_ENV_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pgm/pgm.h"
#include "tests/unit/fail_alloc.h"

#define CODE_GPA 0x10000ull

struct flush_log {
    uint64_t requests;    /* calls of the backend flush op (one per vCPU per request) */
    uint64_t all, gpa;    /* by scope */
    uint64_t last_addr;
};

static struct flush_log g_flush;
static void (*g_soft_flush)(void *, unsigned, const struct pgm_flush_req *);

static void
counting_flush(void *ctx, unsigned vcpu, const struct pgm_flush_req *req)
{
    g_flush.requests++;
    if (req->scope == PGM_FLUSH_ALL)
        g_flush.all++;
    else if (req->scope == PGM_FLUSH_GPA)
        g_flush.gpa++;
    g_flush.last_addr = req->addr;
    if (g_soft_flush)
        g_soft_flush(ctx, vcpu, req);
}

/* Backend allocations (pages and RAM blocks) since the last nenv_create. */
static uint64_t g_backend_allocs;
static int (*g_soft_alloc_page)(void *, pgm_hpa_t *, void **);
static int (*g_soft_alloc_block)(void *, uint64_t, pgm_hpa_t *, void **);

static int
counting_alloc_page(void *ctx, pgm_hpa_t *hpa, void **ptr)
{
    g_backend_allocs++;
    return g_soft_alloc_page(ctx, hpa, ptr);
}

static int
counting_alloc_block(void *ctx, uint64_t n, pgm_hpa_t *hpa, void **ptr)
{
    g_backend_allocs++;
    return g_soft_alloc_block(ctx, n, hpa, ptr);
}

struct nenv {
    struct pgm_soft_backend *sb;
    struct pgm_backend_ops ops;
    struct pgm_nested_config ncfg;
    struct fail_alloc fa;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    enum pgm_paging_hw fmt;
    struct pgm_nested_root_info ri;
    struct pgm_regs regs;
    struct pgm_fault_out out;
};

static inline int nenv_create_vm(struct nenv *e);

/* Create the backend and VM (no RAM). Returns pgm_vm_create's result. */
static inline int
nenv_create(struct nenv *e, enum pgm_paging_hw fmt, uint32_t flags, bool ram_blocks,
            uint32_t host_maxphy)
{
    memset(e, 0, sizeof(*e));
    e->fmt = fmt;
    assert_int_equal(pgm_soft_backend_create(1u << 16, &e->sb), 0);
    pgm_soft_backend_set_ram_blocks(e->sb, ram_blocks);
    e->ops = *pgm_soft_backend_ops();
    g_soft_flush = e->ops.flush;
    e->ops.flush = counting_flush;
    g_soft_alloc_page = e->ops.alloc_page;
    g_soft_alloc_block = e->ops.alloc_ram_block;
    e->ops.alloc_page = counting_alloc_page;
    e->ops.alloc_ram_block = counting_alloc_block;
    g_backend_allocs = 0;
    memset(&g_flush, 0, sizeof(g_flush));
    fail_alloc_reset(&e->fa);
    pgm_nested_config_init(&e->ncfg);
    e->ncfg.flags = flags;
    if (host_maxphy)
        e->ncfg.host_maxphyaddr = host_maxphy;
    return nenv_create_vm(e);
}

/* (Re)create the VM of @e over its backend. */
static inline int
nenv_create_vm(struct nenv *e)
{
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = e->fmt;
    cfg.backend = &e->ops;
    cfg.backend_ctx = e->sb;
    cfg.nested = e->fmt == PGM_PAGING_EPT || e->fmt == PGM_PAGING_NPT ? &e->ncfg : NULL;
    cfg.allocator = fail_alloc_hooks(&e->fa);
    int rc = pgm_vm_create(&cfg, &e->vm);
    if (rc < 0)
        return rc;
    e->vcpu = pgm_vcpu_get(e->vm, 0);
    if (cfg.nested)
        assert_int_equal(pgm_nested_info(e->vm, &e->ri), 0);
    /* Protected mode, paging off: linear addresses are guest-physical. */
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    memset(&e->regs, 0, sizeof(e->regs));
    e->regs.code_bits = 32;
    e->regs.rflags = 2;
    return 0;
}

static inline void
nenv_destroy(struct nenv *e)
{
    pgm_vm_destroy(e->vm);
    e->vm = NULL;
    assert_int_equal(pgm_soft_backend_pages_in_use(e->sb), 0);
    assert_int_equal(pgm_soft_backend_blocks_in_use(e->sb), 0);
    assert_int_equal(e->fa.live, 0);
    pgm_soft_backend_destroy(e->sb);
    g_soft_flush = NULL;
}

static inline void
audit_ok(struct nenv *e)
{
    char msg[256];
    int rc = pgm_audit(e->vm, msg, sizeof(msg));
    if (rc != 0)
        print_message("# audit: %s\n", msg);
    assert_int_equal(rc, 0);
}

static inline struct pgm_stats
nstats(struct nenv *e)
{
    struct pgm_stats s;
    pgm_stats(e->vm, &s);
    return s;
}

/* ---- the hardware walk ---- */

enum hw_res { HW_OK = 0, HW_VIOLATION, HW_MISCONFIG };

struct hw_walk {
    enum hw_res res;
    pgm_hpa_t hpa;        /* OK: host-physical address of the byte */
    void *ptr;            /* OK: host pointer of the byte */
    unsigned leaf_level;  /* level of the leaf (OK) or of the refusing entry */
    uint64_t leaf;        /* the entry */
    uint64_t *slot;       /* where it lives */
    bool writable;        /* the walk would allow a write */
};

static inline void
hw_env(const struct nenv *e, struct pgm_vtx_ept_env *ept, struct pgm_svm_npt_env *npt)
{
    memset(ept, 0, sizeof(*ept));
    memset(npt, 0, sizeof(*npt));
    pgm_vtx_decode_ept_caps(e->ncfg.ept_caps, &ept->caps);
    ept->maxphyaddr = e->ncfg.host_maxphyaddr;
    npt->maxphyaddr = e->ncfg.host_maxphyaddr;
    npt->levels = e->ncfg.levels;
    npt->nxe = e->ncfg.flags & PGM_NESTED_NPT_NXE;
    npt->gbpages = e->ncfg.flags & PGM_NESTED_NPT_GBPAGES;
}

/* Walk @gpa for @access (READ / WRITE / FETCH) as the CPU would. */
static inline struct hw_walk
hw_walk(struct nenv *e, pgm_gpa_t gpa, uint32_t access)
{
    struct pgm_vtx_ept_env ept;
    struct pgm_svm_npt_env npt;
    hw_env(e, &ept, &npt);
    struct hw_walk w = { 0 };
    pgm_hpa_t table = e->ri.root;
    bool ad = e->ri.ept_ad;
    bool r_ok = true, w_ok = true, x_ok = true;
    for (unsigned level = e->ri.levels; level >= 1; level--) {
        uint64_t *ent = e->ops.hpa_to_ptr(e->sb, table);
        assert_non_null(ent);
        uint64_t *slot = &ent[(gpa >> (12 + 9 * (level - 1))) & 511];
        uint64_t v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        w.leaf_level = level;
        w.leaf = v;
        w.slot = slot;
        bool leaf;
        pgm_hpa_t addr;
        unsigned shift = 0;
        if (e->fmt == PGM_PAGING_EPT) {
            int c = pgm_vtx_ept_classify(&ept, level, v, NULL);
            if (c == PGM_EPT_NOT_PRESENT) {
                w.res = HW_VIOLATION;
                return w;
            }
            if (c == PGM_EPT_MISCONFIG) {
                w.res = HW_MISCONFIG;
                return w;
            }
            struct pgm_ept_entry_info d;
            assert_int_equal(pgm_vtx_ept_decode(v, level, false, &d), 0);
            r_ok = r_ok && (d.rights & PGM_EPT_R);
            w_ok = w_ok && (d.rights & PGM_EPT_W);
            x_ok = x_ok && (d.rights & PGM_EPT_X);
            leaf = c == PGM_EPT_LEAF;
            addr = d.addr;
            shift = d.page_shift;
        } else {
            bool no_user = false;
            int c = pgm_svm_npt_classify(&npt, level, v, &no_user);
            assert_false(no_user && c != PGM_NPT_NOT_PRESENT);
            if (c == PGM_NPT_NOT_PRESENT) {
                w.res = HW_VIOLATION;
                return w;
            }
            if (c == PGM_NPT_RSVD) {
                w.res = HW_MISCONFIG;
                return w;
            }
            w_ok = w_ok && (v & PGM_NPT_RW);
            x_ok = x_ok && !(npt.nxe && (v & PGM_NPT_NX));
            leaf = c == PGM_NPT_LEAF;
            shift = leaf ? (level == 1 ? 12 : level == 2 ? 21 : 30) : 12;
            addr = v & PGM_NPT_ADDR_MASK & ~((1ull << shift) - 1);
        }
        if (!leaf) {
            table = addr;
            continue;
        }
        bool ok = (access & PGM_ACCESS_WRITE) ? w_ok : (access & PGM_ACCESS_FETCH) ? x_ok : r_ok;
        w.writable = w_ok && r_ok;
        if (!ok) {
            w.res = HW_VIOLATION;
            return w;
        }
        if (ad) {
            uint64_t set = PGM_EPT_A | ((access & PGM_ACCESS_WRITE) ? PGM_EPT_D : 0);
            __atomic_fetch_or(slot, set, __ATOMIC_ACQ_REL);
        }
        w.hpa = addr + (gpa & ((1ull << shift) - 1));
        w.ptr = e->ops.hpa_to_ptr(e->sb, w.hpa);
        assert_non_null(w.ptr);
        w.res = HW_OK;
        return w;
    }
    fail_msg("walk fell through");
    return w;
}

/* Load `mov [ebx], eax` or `mov eax, [ebx]` at CODE_GPA and point the registers at it. */
static inline void
set_mov(struct nenv *e, bool write, pgm_gpa_t gpa, uint32_t value)
{
    static const uint8_t st[2] = { 0x89, 0x03 }, ld[2] = { 0x8b, 0x03 };
    assert_int_equal(pgm_phys_write(e->vm, CODE_GPA, write ? st : ld, 2), 0);
    e->regs.rip = CODE_GPA;
    e->regs.gpr[PGM_RBX] = gpa;
    e->regs.gpr[PGM_RAX] = write ? value : 0;
}

/*
 * A guest 4-byte access at @gpa as the CPU runs it: walk, and on a nested
 * exit call pgm_nested_fault (with registers for `mov` when @with_regs) until
 * the access completes. Returns the final fault result (RESUME: done by
 * the "CPU"; EMULATED: done by libpgm; EXIT / INJECT).
 */
static inline enum pgm_fault_result
hw_access(struct nenv *e, pgm_gpa_t gpa, bool write, uint32_t *value, bool with_regs)
{
    uint32_t access = write ? PGM_ACCESS_WRITE : PGM_ACCESS_READ;
    for (int tries = 0; tries < 4; tries++) {
        struct hw_walk w = hw_walk(e, gpa, access);
        if (w.res == HW_OK) {
            if (write)
                memcpy(w.ptr, value, 4);
            else
                memcpy(value, w.ptr, 4);
            return PGM_FAULT_RESUME;
        }
        struct pgm_nested_fault_info info = { 0 };
        if (w.res == HW_MISCONFIG)
            info.flags = PGM_NESTED_FI_MISCONFIG;
        if (with_regs)
            set_mov(e, write, gpa, write ? *value : 0);
        int rc = pgm_nested_fault(e->vcpu, gpa, access, &info, with_regs ? &e->regs : NULL,
                                  &e->out);
        if (rc < 0)
            fail_msg("pgm_nested_fault: %d", rc);
        if (e->out.result == PGM_FAULT_EMULATED && !write)
            *value = (uint32_t)e->regs.gpr[PGM_RAX];
        if (e->out.result != PGM_FAULT_RESUME)
            return e->out.result;
    }
    fail_msg("access at %#llx never completed", (unsigned long long)gpa);
    return PGM_FAULT_EXIT;
}

#endif /* PGM_TESTS_UNIT_NESTED_ENV_H */
