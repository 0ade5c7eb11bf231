/* SPDX-License-Identifier: MIT */
/*
 * fuzz_walk: random guest page tables and control bits for every paged mode.
 * libpgm's walker must not crash, hang or touch memory outside the guest,
 * and must agree with the independent SDM model (tests/model/) on the
 * outcome, error code, translation, page size and the A/D bits it leaves in
 * guest memory. A disagreement aborts, which the fuzzer reports as a crash.
 *
 * Input layout (short inputs are padded with zeros):
 *   0      mode (0: 32-bit, 1: PAE, 2: 4-level, 3: 5-level)
 *   1      CR0.WP, CR4.PSE, SMEP, SMAP, PKE, EFER.NXE, RFLAGS.AC, 1G pages
 *   2      access kind (bits 1:0: read/write/fetch/read), bit 2 user,
 *          bit 3 implicit supervisor, bit 4 PSE-36 feature
 *   3      MAXPHYADDR = 32 + byte % 21
 *   4..7   PKRU
 *   8..15  linear address
 *   16..17 CR3: page (bits 5:0 of byte 16) and, for PAE, the 32-byte slot
 *   18..   records of 12 bytes, each an entry written into guest RAM:
 *          page (1, mod 64), index (2), steer (1), value (8). When bit 0 of
 *          steer is set, the value's address bits are replaced by page
 *          (steer >> 1) % 64, so most entries point into guest RAM.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgm/pgm.h"
#include "sdm_model.h"

#define RAM_PAGES 64
#define RAM_SIZE  (RAM_PAGES * 4096u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t
get(const uint8_t *d, size_t size, size_t off, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)(off + i < size ? d[off + i] : 0) << (8 * i);
    return v;
}

static struct pgm_soft_backend *backend;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t image[RAM_SIZE];
    static uint8_t after[RAM_SIZE];
    if (!backend && pgm_soft_backend_create(1024, &backend) < 0)
        abort();

    unsigned mode = get(data, size, 0, 1) & 3;
    unsigned bits = (unsigned)get(data, size, 1, 1);
    unsigned acc = (unsigned)get(data, size, 2, 1);
    unsigned maxphy = 32 + (unsigned)get(data, size, 3, 1) % 21;
    uint32_t pkru = (uint32_t)get(data, size, 4, 4);
    uint64_t va = get(data, size, 8, 8);
    uint64_t cr3 = (get(data, size, 16, 1) % RAM_PAGES) << 12;
    if (mode == 1)
        cr3 |= (get(data, size, 17, 1) & 0x7f) << 5;
    unsigned esize = mode == 0 ? 4 : 8;

    memset(image, 0, sizeof(image));
    for (size_t off = 18; off + 12 <= size; off += 12) {
        uint64_t page = get(data, size, off, 1) % RAM_PAGES;
        uint64_t index = get(data, size, off + 1, 2) % (4096 / esize);
        unsigned steer = (unsigned)get(data, size, off + 3, 1);
        uint64_t v = get(data, size, off + 4, 8);
        if (steer & 1) {
            uint64_t frame = ((uint64_t)(steer >> 1) % RAM_PAGES) << 12;
            v = esize == 4 ? (v & ~0xfffff000ull) | frame : (v & ~0x000ffffffffff000ull) | frame;
        }
        memcpy(image + page * 4096 + index * esize, &v, esize);
    }

    /* The model's view. */
    struct sdm_mem mem = { .bytes = after, .size = RAM_SIZE };
    memcpy(after, image, RAM_SIZE);
    struct sdm_cpu cpu = {
        .mode = (enum sdm_mode)mode, .cr3 = cr3, .cr0_wp = bits & 1, .cr4_pse = bits & 2,
        .cr4_smep = bits & 4, .cr4_smap = bits & 8, .cr4_pke = bits & 16, .efer_nxe = bits & 32,
        .pkru = pkru, .maxphyaddr = maxphy, .gbpages = bits & 128, .pse36 = acc & 16,
    };
    struct sdm_access sacc = {
        .kind = (acc & 3) == 1 ? SDM_WRITE : (acc & 3) == 2 ? SDM_FETCH : SDM_READ,
        .priv = (acc & 4) ? SDM_PRIV_USER : (acc & 8) ? SDM_PRIV_IMPLICIT : SDM_PRIV_SUPERVISOR,
        .ac = bits & 64,
    };

    /* libpgm's view. */
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.features.maxphyaddr = (uint8_t)maxphy;
    cfg.features.gbpages = bits & 128;
    cfg.features.pse36 = acc & 16;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = backend;
    struct pgm_vm *vm;
    if (pgm_vm_create(&cfg, &vm) < 0 || pgm_phys_add_ram(vm, 0, RAM_SIZE) < 0 ||
        pgm_phys_write(vm, 0, image, RAM_SIZE) < 0)
        abort();
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG, .cr3 = cr3, .pkru = pkru };
    if (bits & 1)
        st.cr0 |= PGM_CR0_WP;
    st.cr4 = (bits & 2 ? PGM_CR4_PSE : 0) | (bits & 4 ? PGM_CR4_SMEP : 0) |
             (bits & 8 ? PGM_CR4_SMAP : 0) | (bits & 16 ? PGM_CR4_PKE : 0) |
             (mode >= 1 ? PGM_CR4_PAE : 0) | (mode == 3 ? PGM_CR4_LA57 : 0);
    st.efer = (bits & 32 ? PGM_EFER_NXE : 0) | (mode >= 2 ? PGM_EFER_LME : 0);
    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    int rc = pgm_set_cpu_state(vcpu, &st, 0);

    /* CR3 load: #GP on both sides or on neither. */
    bool model_gp = false;
    if (mode == 1)
        model_gp = !sdm_pae_load_pdptes(&mem, cr3, maxphy, cpu.pdpte);
    else if (mode >= 2)
        model_gp = !sdm_cr3_valid_long(cr3, maxphy);
    if (rc < 0 || (rc == PGM_RC_INJECT_GP) != model_gp)
        abort();
    if (!model_gp) {
        uint32_t access = (sacc.kind == SDM_WRITE ? PGM_ACCESS_WRITE : 0) |
                          (sacc.kind == SDM_FETCH ? PGM_ACCESS_FETCH : 0) |
                          (sacc.priv == SDM_PRIV_USER ? PGM_ACCESS_USER : 0) |
                          (sacc.priv == SDM_PRIV_IMPLICIT ? PGM_ACCESS_IMPLICIT : 0) |
                          (sacc.ac ? PGM_ACCESS_AC : 0);
        struct pgm_walk w;
        struct sdm_result r;
        if (pgm_walk(vcpu, va, access, &w) != 0)
            abort();
        sdm_translate(&mem, &cpu, va, &sacc, &r);
        if ((int)w.status != (int)r.outcome)
            abort();
        if (w.status == PGM_WALK_PAGE_FAULT && w.error_code != r.error_code)
            abort();
        if (w.status == PGM_WALK_OK &&
            (w.gpa != r.gpa || w.page_shift != r.page_shift || w.rights != r.rights))
            abort();
        /* Guest memory afterwards: the same A/D bits, nothing else touched. */
        static uint8_t pgm_after[RAM_SIZE];
        if (pgm_phys_read(vm, 0, pgm_after, RAM_SIZE) != 0 ||
            memcmp(pgm_after, after, RAM_SIZE) != 0)
            abort();
    }
    pgm_vm_destroy(vm);
    return 0;
}
