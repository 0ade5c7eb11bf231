/* SPDX-License-Identifier: MIT */
/*
 * minivmm: a small VMM on Linux KVM that runs a real guest on libpgm's
 * shadow page tables (README.md). Usage:
 *
 *   minivmm [options] GUEST.elf
 *     --mode shadow|native|compare   run the guest suite (default: compare)
 *     --audit                        pgm_audit after every exit (shadow)
 *     --coherence                    the flush-coherence test and drop costs
 *     --conflict                     a guest mapping over the VMM area is stopped
 *     --bench                        workloads, shadow vs native
 *     --iters N                      workload repetitions (--bench)
 *     --flush memslot|sregs|none     how KVM's cached tables are dropped
 *     -v                             trace every #PF exit
 *
 * Exit status: 0 pass, 1 fail, 2 error, 77 skipped (no usable /dev/kvm).
 */
#include "vmm.h"

#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SKIP 77

struct image {
    uint8_t *data;
    size_t size;
    uint64_t entry;
};

static int load_file(const char *path, struct image *img)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    img->data = malloc((size_t)n);
    img->size = (size_t)n;
    size_t got = img->data ? fread(img->data, 1, (size_t)n, f) : 0;
    fclose(f);
    if (got != (size_t)n || n < (long)sizeof(Elf64_Ehdr))
        return -1;
    const Elf64_Ehdr *eh = (const void *)img->data;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_machine != EM_X86_64)
        return -1;
    img->entry = eh->e_entry;
    return 0;
}

/* Write guest-physical memory: through libpgm in shadow mode (it owns the
 * guest-physical map), straight into the slot natively. */
static void gwrite(struct vmm *v, uint64_t gpa, const void *buf, size_t len)
{
    if (v->shadow) {
        if (pgm_phys_write(v->pvm, gpa, buf, len) != 0) {
            fprintf(stderr, "minivmm: pgm_phys_write %#llx failed\n", (unsigned long long)gpa);
            exit(2);
        }
    } else {
        memcpy(v->ram + gpa, buf, len);
    }
}

static void gwrite64(struct vmm *v, uint64_t gpa, uint64_t val)
{
    gwrite(v, gpa, &val, 8);
}

static int load_image(struct vmm *v, const struct image *img)
{
    const Elf64_Ehdr *eh = (const void *)img->data;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *ph =
            (const void *)(img->data + eh->e_phoff + (uint64_t)i * eh->e_phentsize);
        if (ph->p_type != PT_LOAD || !ph->p_filesz)
            continue;
        if (ph->p_paddr < GUEST_LOAD_GPA || ph->p_paddr + ph->p_memsz > GUEST_FREE_GPA ||
            ph->p_offset + ph->p_filesz > img->size)
            return -1;
        gwrite(v, ph->p_paddr, img->data + ph->p_offset, ph->p_filesz);
    }
    return 0;
}

#define CR0_BOOT 0x80010033ull /* PG WP NE ET MP PE */
#define CR4_BOOT 0xa0ull       /* PGE PAE */
#define EFER_BOOT 0xd00ull     /* NXE LMA LME */

/* A VM for one run. Returns 0, SKIP, or exits on errors. */
static int vmm_create(struct vmm *v, bool shadow, const struct image *img, uint64_t workload,
                      uint64_t iters)
{
    int rc = kvm_open(v);
    if (rc < 0) {
        fprintf(stderr, "minivmm: SKIP: /dev/kvm is not usable here (%s)\n", strerror(-rc));
        return SKIP;
    }
    v->shadow = shadow;
    v->ram_size = GUEST_RAM_SIZE;
    v->ram = mmap(NULL, v->ram_size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (v->ram == MAP_FAILED)
        vmm_die("mmap guest RAM");
    if (shadow) {
        v->tmem = mmap(NULL, TMEM_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        v->free_pages = calloc(TMEM_SIZE / 4096, sizeof(uint64_t));
        if (v->tmem == MAP_FAILED || !v->free_pages)
            vmm_die("mmap host memory");
        v->next_page = POOL_HPA;
        v->ram_hpa = RAM_HPA;
        kvm_add_slot(v, 0, 0, TMEM_SIZE, v->tmem);
        kvm_add_slot(v, 1, RAM_HPA, v->ram_size, v->ram);
        area_build(v);

        struct pgm_vm_config cfg;
        pgm_vm_config_init(&cfg);
        cfg.paging = PGM_PAGING_SHADOW_AMD64;
        cfg.features.maxphyaddr = 40;
        cfg.features.la57 = false;
        cfg.features.pku = false;
        cfg.pool_pages = 4096;
        cfg.backend = &vmm_backend_ops;
        cfg.backend_ctx = v;
        if ((rc = pgm_vm_create(&cfg, &v->pvm)) < 0) {
            fprintf(stderr, "minivmm: pgm_vm_create: %s\n", strerror(-rc));
            exit(2);
        }
        if ((rc = pgm_phys_add_ram(v->pvm, 0, v->ram_size)) < 0 || !v->ram_block_used) {
            fprintf(stderr, "minivmm: pgm_phys_add_ram: %s\n", strerror(-rc));
            exit(2);
        }
        v->pcpu = pgm_vcpu_get(v->pvm, 0);
    } else {
        kvm_add_slot(v, 0, 0, v->ram_size, v->ram);
    }

    /* boot state: info page, identity map of RAM (2 MiB pages), the image */
    struct minivmm_bootinfo bi = {
        .magic = MINIVMM_BOOT_MAGIC, .mode = shadow ? BOOT_SHADOW : BOOT_NATIVE,
        .ram_size = v->ram_size, .workload = workload, .iters = iters,
    };
    gwrite(v, BOOTINFO_GPA, &bi, sizeof(bi));
    gwrite64(v, BOOT_PML4_GPA, BOOT_PDPT_GPA | 3);
    gwrite64(v, BOOT_PDPT_GPA, BOOT_PD_GPA | 3);
    for (uint64_t i = 0; i < v->ram_size >> 21; i++)
        gwrite64(v, BOOT_PD_GPA + i * 8, i << 21 | 0x83);
    if (load_image(v, img) < 0) {
        fprintf(stderr, "minivmm: bad guest image\n");
        exit(2);
    }

    kvm_create_vcpu(v);
    struct kvm_sregs s;
    kvm_get_sregs(v, &s);
    seg_code64(&s.cs, SEL_KCODE, 0);
    seg_data(&s.ds, SEL_KDATA, 0);
    s.es = s.fs = s.gs = s.ss = s.ds;
    memset(&s.tr, 0, sizeof(s.tr));
    s.tr.selector = SEL_TSS;
    s.tr.limit = 0x67;
    s.tr.type = 11;
    s.tr.present = 1;
    memset(&s.ldt, 0, sizeof(s.ldt));
    s.ldt.unusable = 1;
    s.cr0 = CR0_BOOT;
    s.cr4 = CR4_BOOT;
    s.efer = EFER_BOOT;
    if (shadow) {
        s.tr.base = VMM_AREA_GVA + AREA_TSS;
        s.gdt.base = VMM_AREA_GVA + AREA_GDT;
        s.gdt.limit = 0x37;
        s.idt.base = VMM_AREA_GVA + AREA_IDT;
        s.idt.limit = 0xfff;
        s.cr3 = root_copy_sync(v, 0) ; /* replaced before the first entry */
        struct pgm_cpu_state st = { .cr0 = CR0_BOOT, .cr3 = BOOT_PML4_GPA, .cr4 = CR4_BOOT,
                                    .efer = EFER_BOOT };
        if (pgm_set_cpu_state(v->pcpu, &st, 0) != 0) {
            fprintf(stderr, "minivmm: pgm_set_cpu_state refused the boot state\n");
            exit(2);
        }
        v->real_cr3 = s.cr3;
    } else {
        s.tr.base = BOOT_TSS_GPA;
        s.gdt.base = 0;
        s.gdt.limit = 0;
        s.idt.base = 0;
        s.idt.limit = 0;
        s.cr3 = BOOT_PML4_GPA;
    }
    kvm_set_sregs(v, &s);
    struct kvm_regs r;
    memset(&r, 0, sizeof(r));
    r.rip = img->entry;
    r.rdi = BOOTINFO_GPA;
    r.rflags = 2;
    kvm_set_regs(v, &r);
    return 0;
}

static void vmm_destroy(struct vmm *v)
{
    kvm_close(v);
    if (v->pvm)
        pgm_vm_destroy(v->pvm);
    munmap(v->ram, v->ram_size);
    if (v->tmem)
        munmap(v->tmem, TMEM_SIZE);
    free(v->free_pages);
    memset(v, 0, sizeof(*v));
}

struct opts {
    enum { M_COMPARE, M_SHADOW, M_NATIVE } mode;
    bool audit, bench, coherence, conflict, verbose;
    enum flush_method flush;
    uint64_t iters;
    int workload; /* --bench: only this WL_* (-1: all) */
    const char *guest;
};

/* Run once; returns 0 (reported), -1 (failed to run), SKIP. */
static int run_once(const struct opts *o, struct vmm *v, bool shadow, const struct image *img,
                    uint64_t workload, uint64_t iters, bool quiet, enum flush_method fm)
{
    memset(v, 0, sizeof(*v));
    int rc = vmm_create(v, shadow, img, workload, iters);
    if (rc)
        return rc;
    v->audit = o->audit && shadow;
    v->verbose = o->verbose;
    v->flush_method = fm;
    v->quiet_console = quiet;
    rc = vmm_run(v, 60000);
    return rc < 0 ? -1 : 0;
}

static void print_stats(struct vmm *v)
{
    struct pgm_stats ps;
    pgm_stats(v->pvm, &ps);
    printf("  exits %llu: #PF %llu (resume %llu, emulated %llu, injected %llu), "
           "paging hypercalls %llu (CR3 %llu, INVLPG %llu), console %llu\n",
           (unsigned long long)v->st.exits, (unsigned long long)v->st.exit_pf,
           (unsigned long long)v->st.pf_resume, (unsigned long long)v->st.pf_emulated,
           (unsigned long long)v->st.pf_inject, (unsigned long long)v->st.exit_hc,
           (unsigned long long)v->st.hc_cr3, (unsigned long long)v->st.hc_invlpg,
           (unsigned long long)v->st.exit_console);
    printf("  flush requests: GVA %llu, PCID %llu, NONGLOBAL %llu, ALL %llu; KVM cache drops %llu"
           " (%.1f us each)\n",
           (unsigned long long)v->st.flush_req[0], (unsigned long long)v->st.flush_req[1],
           (unsigned long long)v->st.flush_req[2], (unsigned long long)v->st.flush_req[3],
           (unsigned long long)v->st.drops,
           v->st.drops ? (double)v->st.ns_drop / (double)v->st.drops / 1e3 : 0.0);
    printf("  libpgm: syncs %llu, zaps %llu, flushes %llu, finished (emulated) %llu, "
           "unshadowed %llu, pool hits %llu misses %llu evictions %llu, pages in use %llu\n",
           (unsigned long long)ps.shadow_syncs, (unsigned long long)ps.shadow_zaps,
           (unsigned long long)ps.shadow_flushes, (unsigned long long)ps.shadow_finished,
           (unsigned long long)ps.shadow_unshadowed, (unsigned long long)ps.pool_hits,
           (unsigned long long)ps.pool_misses, (unsigned long long)ps.pool_evictions,
           (unsigned long long)v->pages_in_use);
}

static int do_suite(const struct opts *o, const struct image *img)
{
    struct vmm v;
    uint64_t sum[2] = { 0, 0 }, fails[2] = { 0, 0 };
    bool ran[2] = { false, false };
    int rc = 0;
    for (int m = 0; m < 2; m++) {
        bool shadow = m == 1;
        if ((o->mode == M_SHADOW && !shadow) || (o->mode == M_NATIVE && shadow))
            continue;
        printf("minivmm: %s mode%s\n",
               shadow ? "shadow (libpgm's tables in the vCPU's CR3)" : "native (KVM's MMU)",
               shadow && o->audit ? ", pgm_audit after every exit" : "");
        rc = run_once(o, &v, shadow, img, WL_SUITE, 0, false, o->flush);
        if (rc == SKIP)
            return SKIP;
        if (rc == 0 && v.reported) {
            ran[m] = true;
            sum[m] = v.checksum;
            fails[m] = v.failures;
            printf("minivmm: %s verdict: %s, checksum %#llx\n", shadow ? "shadow" : "native",
                   v.failures ? "FAIL" : "PASS", (unsigned long long)v.checksum);
            if (shadow)
                print_stats(&v);
        } else {
            printf("minivmm: %s run did not complete\n", shadow ? "shadow" : "native");
        }
        vmm_destroy(&v);
    }
    bool ok = true;
    for (int m = 0; m < 2; m++)
        if ((o->mode == M_COMPARE || (o->mode == M_SHADOW) == (m == 1)) && (!ran[m] || fails[m]))
            ok = false;
    if (o->mode == M_COMPARE && ok && sum[0] != sum[1]) {
        printf("minivmm: the checksums differ: shadow paging changed what the guest saw\n");
        ok = false;
    }
    printf("minivmm: %s\n", ok ? (o->mode == M_COMPARE ? "PASS (both modes, same checksum)" : "PASS")
                                : "FAIL");
    return ok ? 0 : 1;
}

static int do_coherence(const struct opts *o, const struct image *img)
{
    static const char *const names[] = { "memslot re-registration", "KVM_SET_SREGS, same CR3",
                                         "no drop" };
    struct vmm v;
    bool ok = true;
    int rc = run_once(o, &v, false, img, WL_COHERE, 0, true, FLUSH_NONE);
    if (rc == SKIP)
        return SKIP;
    printf("coherence: native: stale=%#llx\n", (unsigned long long)v.checksum);
    ok = rc == 0 && v.reported && v.checksum == 0;
    vmm_destroy(&v);
    for (int fm = FLUSH_MEMSLOT; fm <= FLUSH_NONE; fm++) {
        rc = run_once(o, &v, true, img, WL_COHERE, 0, true, (enum flush_method)fm);
        if (rc != 0 || !v.reported) {
            printf("coherence: shadow, %s: run failed\n", names[fm]);
            ok = false;
        } else {
            printf("coherence: shadow, %s: stale=%#llx (bit 0: old frame after a remap, "
                   "bit 1: old frame after an unmap, bit 4: VMM remap), %llu drops, %.1f us each\n",
                   names[fm], (unsigned long long)v.checksum, (unsigned long long)v.st.drops,
                   v.st.drops ? (double)v.st.ns_drop / (double)v.st.drops / 1e3 : 0.0);
            if (fm == FLUSH_MEMSLOT && v.checksum != 0)
                ok = false;
            if (fm == FLUSH_NONE)
                printf("coherence: without the drop the guest %s\n",
                       v.checksum ? "sees stale translations: the drop is required"
                                  : "saw no stale translation (not shown on this host)");
        }
        /* the raw cost of each drop method on a warm VM */
        if (rc == 0 && fm != FLUSH_NONE) {
            uint64_t t0 = now_ns();
            for (int i = 0; i < 200; i++)
                drop_kvm_cache(&v);
            printf("coherence:   raw cost of one drop (%s): %.1f us\n", names[fm],
                   (double)(now_ns() - t0) / 200 / 1e3);
        }
        vmm_destroy(&v);
    }
    printf("coherence: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}

/* A guest that maps over the VMM area must be stopped, not run on a
 * corrupted area (natively the same guest is fine). */
static int do_conflict(const struct opts *o, const struct image *img)
{
    struct vmm v;
    int rc = run_once(o, &v, false, img, WL_CONFLICT, 0, true, o->flush);
    if (rc == SKIP)
        return SKIP;
    bool native_ok = rc == 0 && v.reported && v.failures == 0;
    vmm_destroy(&v);
    rc = run_once(o, &v, true, img, WL_CONFLICT, 0, true, o->flush);
    bool caught = rc != 0 && v.conflict && !v.reported;
    vmm_destroy(&v);
    printf("conflict: native run %s; shadow run %s\n", native_ok ? "completes" : "FAILED",
           caught ? "stopped: the VMM-area conflict was detected" : "NOT stopped");
    return native_ok && caught ? 0 : 1;
}

/* Operations a workload reports for @iters repetitions (guest.c). */
static uint64_t workload_ops(uint64_t iters, uint64_t wl)
{
    return wl == WL_FAULTS || wl == WL_STEADY ? iters * 64 : iters;
}

static int do_bench(const struct opts *o, const struct image *img)
{
    static const struct { uint64_t wl; const char *name; uint64_t iters; } wls[] = {
        { WL_FAULTS, "user page faults (+ unmap, INVLPG)", 20 },
        { WL_CTXSW, "address-space switch + a user read", 300 },
        { WL_STEADY, "steady state: user writes, mapped pages", 200000 },
        { WL_KSPIN, "calibration: CPL0 register add", 20000 },
        { WL_USPIN, "calibration: CPL3 register add", 100000000 },
    };
    printf("%-44s %12s %12s %8s\n", "workload (per op)", "native ns", "shadow ns", "ratio");
    for (unsigned i = 0; i < sizeof(wls) / sizeof(wls[0]); i++) {
        double ns[2] = { 0, 0 };
        struct vmm v;
        if (o->workload >= 0 && (uint64_t)o->workload != wls[i].wl)
            continue;
        uint64_t iters = o->iters ? o->iters : wls[i].iters;
        struct vmm_stats d, d0;
        struct pgm_stats p0, p1;
        for (int m = 0; m < 2; m++) {
            int rc = run_once(o, &v, m == 1, img, wls[i].wl, iters, true, o->flush);
            if (rc == SKIP)
                return SKIP;
            if (rc != 0 || !v.reported || !v.mark_ops) {
                printf("bench: %s run of %s failed\n", m ? "shadow" : "native", wls[i].name);
                return 1;
            }
            ns[m] = (double)v.mark_elapsed_ns / (double)v.mark_ops;
            if (m == 1) {
                d = v.st;
                d0 = v.st_mark;
                p0 = v.pst_mark;
                pgm_stats(v.pvm, &p1);
            }
            vmm_destroy(&v);
        }
        printf("%-44s %12.1f %12.1f %7.1fx\n", wls[i].name, ns[0], ns[1], ns[1] / ns[0]);
        double n = (double)workload_ops(iters, wls[i].wl);
#define PER(field) ((double)(d.field - d0.field) / n)
        printf("    shadow, per op: exits %.2f (#PF %.2f: resume %.2f emulated %.2f injected %.2f;"
               " paging hypercalls %.2f), KVM drops %.3f\n",
               PER(exits), PER(exit_pf), PER(pf_resume), PER(pf_emulated), PER(pf_inject),
               PER(exit_hc), PER(drops));
        printf("    shadow, ns per op: in KVM_RUN %.0f, libpgm %.0f, vCPU state ioctls %.0f, "
               "drops %.0f\n", PER(ns_run), PER(ns_pgm), PER(ns_state), PER(ns_drop));
        printf("    libpgm, per op: syncs %.2f, zaps %.2f, emulated writes %.2f, walks %.2f, "
               "pool hits %.2f misses %.2f, flushes %.3f\n",
               (double)(p1.shadow_syncs - p0.shadow_syncs) / n,
               (double)(p1.shadow_zaps - p0.shadow_zaps) / n,
               (double)(p1.shadow_finished - p0.shadow_finished) / n,
               (double)(p1.walks - p0.walks) / n,
               (double)(p1.pool_hits - p0.pool_hits) / n,
               (double)(p1.pool_misses - p0.pool_misses) / n,
               (double)(p1.shadow_flushes - p0.shadow_flushes) / n);
#undef PER
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = { .mode = M_COMPARE, .flush = FLUSH_MEMSLOT, .workload = -1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--mode") && i + 1 < argc) {
            const char *m = argv[++i];
            o.mode = !strcmp(m, "shadow") ? M_SHADOW : !strcmp(m, "native") ? M_NATIVE : M_COMPARE;
        } else if (!strcmp(a, "--audit")) {
            o.audit = true;
        } else if (!strcmp(a, "--bench")) {
            o.bench = true;
        } else if (!strcmp(a, "--coherence")) {
            o.coherence = true;
        } else if (!strcmp(a, "--conflict")) {
            o.conflict = true;
        } else if (!strcmp(a, "--iters") && i + 1 < argc) {
            o.iters = strtoull(argv[++i], NULL, 0);
        } else if (!strcmp(a, "--workload") && i + 1 < argc) {
            o.workload = (int)strtol(argv[++i], NULL, 0);
        } else if (!strcmp(a, "--flush") && i + 1 < argc) {
            const char *m = argv[++i];
            o.flush = !strcmp(m, "sregs") ? FLUSH_SREGS : !strcmp(m, "none") ? FLUSH_NONE
                                                                            : FLUSH_MEMSLOT;
        } else if (!strcmp(a, "-v")) {
            o.verbose = true;
        } else if (a[0] != '-') {
            o.guest = a;
        } else {
            fprintf(stderr, "usage: minivmm [--mode shadow|native|compare] [--audit] "
                            "[--coherence] [--conflict] [--bench [--workload N] [--iters N]] "
                            "[--flush memslot|sregs|none] [-v] GUEST.elf\n");
            return 2;
        }
    }
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        printf("minivmm: SKIP: /dev/kvm is missing or not accessible (%s); "
               "minivmm needs Linux KVM\n", strerror(errno));
        return SKIP;
    }
    if (!o.guest) {
        fprintf(stderr, "minivmm: no guest image given\n");
        return 2;
    }
    struct image img;
    if (load_file(o.guest, &img) < 0) {
        fprintf(stderr, "minivmm: cannot load %s as an x86-64 ELF\n", o.guest);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = o.bench       ? do_bench(&o, &img)
             : o.coherence ? do_coherence(&o, &img)
             : o.conflict  ? do_conflict(&o, &img)
                           : do_suite(&o, &img);
    free(img.data);
    return rc;
}
