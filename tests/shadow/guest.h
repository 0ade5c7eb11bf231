/* SPDX-License-Identifier: MIT */
/*
 * A small "guest OS kernel" for the shadow-engine scenario tests.
 *
 * It builds and edits x86-64 4- and 5-level page tables in guest RAM through
 * the public API only, and only as a real guest could: the boot-time tables
 * are written with pgm_phys_write before the vCPUs first run; every later
 * change to a paging-structure entry is a guest write made with
 * pgm_soft_access through the per-address-space recursive (self-map) entry or
 * the kernel direct map, followed by the TLB maintenance a correct OS does
 * (INVLPG for one page, MOV CR3 / a PGE toggle for wider changes, nothing for
 * a not-present -> present change, which the SDM lets go unflushed).
 *
 * Next to the tables the kernel keeps its own model (which frame each virtual
 * page maps, with which rights, and what bytes each data frame holds), so
 * every step can be checked three ways: model == pgm_walk (the guest tables
 * say what the kernel meant), pgm_soft_access == pgm_walk (law 1, the
 * transparency of the shadow engine), and pgm_audit (laws 2 and 3).
 */
#ifndef PGM_TESTS_SHADOW_GUEST_H
#define PGM_TESTS_SHADOW_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgm/pgm.h"

/* ---- Architectural bits of a paging-structure entry ---------------------- */
#define G_P    (1ull << 0)
#define G_RW   (1ull << 1)
#define G_US   (1ull << 2)
#define G_PWT  (1ull << 3)
#define G_PCD  (1ull << 4)
#define G_A    (1ull << 5)
#define G_D    (1ull << 6)
#define G_PS   (1ull << 7)
#define G_G    (1ull << 8)
#define G_NX   (1ull << 63)
#define G_ADDR 0x000ffffffffff000ull

/* ---- Sizes ------------------------------------------------------------- */
#define G_RAM_SIZE     (32ull << 20)          /* guest RAM at GPA 0 */
#define G_NFRAMES      (G_RAM_SIZE >> 12)
#define G_FIRST_FRAME  256u                   /* frames below 1 MiB are not used */
#define G_HUGE_FIRST   ((24ull << 20) >> 12)  /* 2 MiB chunks for large pages: 24..32 MiB */
#define G_HUGE_FIRST32 ((16ull << 20) >> 12)  /* 32-bit: 4 MiB chunks, 16..32 MiB */
#define G_HUGE_CHUNKS  4u
#define G_MAX_VCPUS    4u
#define G_MAX_AS       10u
#define G_MAX_PAGES    160u                   /* model pages per address space */
#define G_MAX_SWAP     256u

/* Guest paging modes of the model: k->levels is 0 (paging off: real or
 * protected mode, linear = guest-physical), 2 (32-bit paging: 4-byte
 * entries, 1024-entry tables, 4 MiB pages with CR4.PSE, no XD), 3 (PAE: a
 * 4-entry PDPT latched at MOV CR3, 2 MiB pages, XD with EFER.NXE), 4 or 5
 * (IA-32e). */

/* 32-bit and PAE kernel layout (3 GiB / 1 GiB split). */
#define G32_DMAP      0xc0000000ull  /* direct map of all guest RAM (4 MiB / 2 MiB pages) */
#define G32_KTEXT     0xf0000000ull  /* global kernel text / data, then the large kernel page */
#define G32_SELF      0xffc00000ull  /* 32-bit: PDE 1023 maps the PD itself */
#define GPAE_SELF     0xff800000ull  /* PAE: kernel PD entries 508..511 map the 4 PDs */
#define GPAE_SELF_PDE 508u

/* IA-32e kernel layout: top-level (PML4 or PML5) slots of the kernel half. */
#define G_SLOT_DMAP    273u  /* direct map of all guest RAM with 2 MiB pages */
#define G_SLOT_SELF    493u  /* recursive entry: each root maps itself here */
#define G_SLOT_KTEXT   511u  /* global kernel text / data */
#define G_KTEXT_PAGES  8u    /* 4 KiB global pages: 0..3 RX, 4..7 RW NX */

/* Model page protection. */
#define G_PROT_W 1u
#define G_PROT_X 2u

enum g_frame_kind { GF_FREE = 0, GF_RESERVED, GF_TABLE, GF_DATA, GF_HUGE };

enum g_page_state {
    GP_NONE = 0,  /* slot unused */
    GP_PRESENT,   /* mapped, PTE present */
    GP_LAZY,      /* mapped by mmap but not populated yet: PTE = 0 */
    GP_SWAPPED,   /* swapped out: PTE holds a swap entry, P = 0 */
};

/* One virtual page (or one 2 MiB page) of an address space, in the model. */
struct g_page {
    uint64_t va;
    uint32_t frame;        /* GP_PRESENT: the 4 KiB frame, or the first of 512 */
    uint32_t swap_slot;    /* GP_SWAPPED */
    uint8_t state;
    uint8_t prot;          /* G_PROT_*: what the program asked for */
    bool pte_w;            /* the RW bit the kernel wrote (false while COW) */
    bool large;            /* a 2 MiB / 4 MiB page (PDE leaf) */
    bool split;            /* large: mapped by a 4 KiB page table (512 / 1024 PTEs) */
    uint64_t split_ro[16]; /* split: sub-pages mprotect'ed read-only */
};

struct g_as {
    bool live;
    uint32_t root;         /* frame of the PML4 / PML5 / 32-bit PD / PAE PDPT */
    uint32_t kpd;          /* PAE: this address space's kernel PD (PDPTE 3) */
    uint16_t pcid;
    unsigned npages;
    struct g_page pages[G_MAX_PAGES];
};

struct g_kernel {
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    /* EPT / NPT VM (PGM_SHADOW_HOST=ept|npt): the soft MMU walks the guest's
     * own tables, and the guest's TLB maintenance reaches it directly. */
    bool nested;
    unsigned nvcpu;
    struct pgm_vcpu *vcpu[G_MAX_VCPUS];
    unsigned levels;       /* 0 (paging off), 2 (32-bit), 3 (PAE), 4 or 5 */
    unsigned esize;        /* bytes per paging-structure entry: 4 or 8 */
    uint64_t lp_size;      /* large page: 4 MiB (32-bit) or 2 MiB */
    unsigned lp_frames;    /* 4 KiB frames in a large page */
    uint32_t huge_first;   /* first frame of the large-page chunks */
    bool paging_on;        /* CR0.PG is set on the vCPUs (else linear = physical) */
    bool booted;           /* the vCPUs run: table edits are guest writes */
    int use_selfmap;       /* table edits of the current address space through the
                              self-map: 0 never, 1 mostly (default), 2 always */
    bool plant_no_invlpg;  /* self-test: skip every INVLPG (env PGM_SHADOW_PLANT_NO_INVLPG) */
    bool plant_phys_write; /* self-test: edit tables with pgm_phys_write (env PGM_SHADOW_PLANT_PHYS_WRITE) */
    int trace;             /* env PGM_SHADOW_TRACE: 1 = every table write / TLB op, 2 = every access */
    uint64_t rng;          /* the kernel's own choices (self-map vs direct map ...) */

    /* control state per vCPU */
    uint64_t cr0[G_MAX_VCPUS], cr4[G_MAX_VCPUS], efer;
    int cur_as[G_MAX_VCPUS];  /* address space loaded in CR3 (-1: the init tables) */
    bool pcid_mode;            /* CR4.PCIDE, NOFLUSH switches when the PCID is clean */
    bool pcid_dirty[G_MAX_VCPUS][G_MAX_AS];

    /* frames */
    uint8_t fkind[G_NFRAMES];
    uint16_t fref[G_NFRAMES];
    uint32_t freelist[G_NFRAMES];
    unsigned nfree;
    bool huge_used[G_HUGE_CHUNKS];

    /* the kernel's idea of every data byte (data frames only) */
    uint8_t *mirror;

    /* tables */
    uint32_t init_root;                 /* boot tables; template of the kernel half */
    uint32_t init_kpd;                  /* PAE: the boot tables' kernel PD */
    uint32_t ktext_frame[G_KTEXT_PAGES];
    uint64_t ktext_huge_frame;          /* a global 2 MiB kernel page, first frame */
    struct g_as as[G_MAX_AS];

    /* swap device */
    uint8_t *swap[G_MAX_SWAP];

    /* statistics */
    uint64_t n_access, n_inject, n_table_writes, n_invlpg, n_flush, n_cr3, n_faults_fixed;
    uint64_t write_stamp;

    /* printed with every failure (seed, step, operation) */
    char ctx[256];

    /*
     * Optional: called after every checked access with whether it completed
     * (the walk allowed it and the engine resumed) and the walked GPA.
     */
    void (*access_hook)(struct g_kernel *k, unsigned v, uint64_t va, uint32_t access, bool done,
                        uint64_t gpa);
    void *hook_ctx;
};

/* Failure: prints k->ctx and the message, then fails the cmocka test. */
void g_fail(struct g_kernel *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* ---- Lifecycle --------------------------------------------------------- */

/*
 * Create a soft backend, a SHADOW_AMD64 VM with @p nvcpu vCPUs and G_RAM_SIZE
 * of RAM, and the boot tables (kernel half: direct map, self-map, global
 * kernel text). @p levels is 0 (no tables: paging off), 2 (32-bit), 3 (PAE),
 * 4 or 5. Nothing runs yet.
 */
void g_init(struct g_kernel *k, unsigned levels, unsigned nvcpu, uint64_t seed);
/*
 * Change the paging mode of every vCPU as an OS (re)boot does: leave the
 * current mode with the architectural sequence of guest MOVs (CR4.PCIDE
 * off, CR0.PG off, EFER.LME off, CR4 cleared), forget every process, build
 * the boot tables of mode @p levels (0, 2..5) with guest stores made with
 * paging off (linear = physical), then enable paging (CR4, EFER, CR3,
 * CR0.PG). Every MOV goes through pgm_set_cpu_state(PGM_STATE_GUEST_WRITE).
 */
void g_switch_mode(struct g_kernel *k, unsigned levels, uint64_t extra_cr4);
/* Destroy everything. */
void g_fini(struct g_kernel *k);
/*
 * Start vCPU @p v on the boot tables: CR0.PG|PE|WP, CR4.PAE|PGE (|LA57),
 * EFER.LME|NXE (IA-32e); CR0.PG|PE|WP, CR4.PSE|PGE (32-bit); CR0.PG|PE|WP,
 * CR4.PAE|PGE, EFER.NXE (PAE); CR0.PE (paging off); plus @p extra_cr4
 * (SMEP, SMAP, PCIDE). After the first call the kernel edits tables only
 * through guest writes.
 */
void g_boot_cpu(struct g_kernel *k, unsigned v, uint64_t extra_cr4);

/* Load CR0 / CR4 of vCPU @p v as a guest MOV would (pgm_set_cpu_state). */
void g_set_cr0(struct g_kernel *k, unsigned v, uint64_t cr0);
void g_set_cr4(struct g_kernel *k, unsigned v, uint64_t cr4);

/* ---- Addresses --------------------------------------------------------- */

uint64_t g_canon(const struct g_kernel *k, uint64_t va);
/* Linear address from per-level indices idx[levels..1] and a page offset. */
uint64_t g_va(const struct g_kernel *k, const unsigned *idx, uint64_t off);
uint64_t g_dmap(const struct g_kernel *k, uint64_t gpa);
uint64_t g_ktext(const struct g_kernel *k, unsigned page);
/* The global large kernel page (2 MiB, or 4 MiB with 32-bit paging). */
uint64_t g_ktext_huge(const struct g_kernel *k);
/* Highest level whose entries the self-map reaches (PAE: 2, the PDPT is not in it). */
unsigned g_selfmap_levels(const struct g_kernel *k);
/* Address, through the self-map, of the level-@p level entry that maps @p va. */
uint64_t g_selfmap_entry_va(const struct g_kernel *k, uint64_t va, unsigned level);
/* A user address: the kernel's small grid of slots (shared tables, reuse). */
uint64_t g_user_va(const struct g_kernel *k, unsigned a, unsigned b, unsigned c, unsigned d);

/* ---- Frames ------------------------------------------------------------ */

uint32_t g_frame_alloc(struct g_kernel *k, enum g_frame_kind kind);
void g_frame_put(struct g_kernel *k, uint32_t frame);
int g_huge_alloc(struct g_kernel *k);  /* chunk index, or -1 */
uint64_t g_huge_frame(const struct g_kernel *k, unsigned chunk);

/* ---- Kernel memory accesses (CPL 0, through the direct map) ------------ */

void g_kread(struct g_kernel *k, unsigned v, uint64_t gpa, void *buf, size_t len);
void g_kwrite(struct g_kernel *k, unsigned v, uint64_t gpa, const void *buf, size_t len);
/* Fill a data frame with a pattern (through the direct map once booted). */
void g_fill_frame(struct g_kernel *k, unsigned v, uint32_t frame, uint64_t tag);

/* ---- Page tables ------------------------------------------------------- */

/* GPA of the level-@p level entry for @p va under @p root_frame (0 if a
 * table above it is missing or a large page ends the walk earlier). */
uint64_t g_entry_gpa(struct g_kernel *k, uint32_t root_frame, uint64_t va, unsigned level);
uint64_t g_read_entry(struct g_kernel *k, uint64_t entry_gpa);
/*
 * Write one entry of address space @p as (-1: the kernel half, shared) as
 * vCPU @p v: through the self-map when @p as is current on @p v (and the
 * kernel chooses to), else through the direct map. No TLB maintenance.
 */
void g_write_entry(struct g_kernel *k, unsigned v, int as, uint64_t va, unsigned level,
                   uint64_t entry_gpa, uint64_t val);
/*
 * Make sure the tables for @p va down to level @p leaf_level + 1 exist under
 * @p as (-1: init tables), creating zeroed tables as needed (user entries are
 * P|RW|US, kernel P|RW). @return the GPA of the level-@p leaf_level entry.
 */
uint64_t g_ensure_tables(struct g_kernel *k, unsigned v, int as, uint64_t va,
                         unsigned leaf_level);

/* ---- TLB maintenance (what a correct OS does after an edit) ------------- */

/* INVLPG @p va on every vCPU running @p as (as < 0: every vCPU). */
void g_shootdown_page(struct g_kernel *k, int as, uint64_t va);
/* Flush all non-global translations of @p as wherever it runs (MOV CR3);
 * with PCIDs, the vCPUs not running it reload it without NOFLUSH later. */
void g_shootdown_as(struct g_kernel *k, int as);
/* Flush everything, global entries included, on every vCPU. */
void g_shootdown_all(struct g_kernel *k);
/* The guest's INVLPG and its flush of the current address space (MOV CR3
 * to the same value) or of everything (a CR4.PGE toggle) on vCPU @v. */
void g_invlpg(struct g_kernel *k, unsigned v, uint64_t va);
void g_flush_tlb(struct g_kernel *k, unsigned v, bool global);
/* Context switch vCPU @p v to address space @p as (MOV CR3). */
void g_switch(struct g_kernel *k, unsigned v, int as);
/* The CR3 value of address space @p as (-1: the boot tables). */
uint64_t g_cr3_of(const struct g_kernel *k, int as);

/* ---- Processes and memory management ----------------------------------- */

int g_as_create(struct g_kernel *k, unsigned v);             /* -1 when full */
void g_as_destroy(struct g_kernel *k, unsigned v, int as);   /* not current anywhere */
int g_fork(struct g_kernel *k, unsigned v, int parent);      /* -1 when full */
struct g_page *g_find(struct g_kernel *k, int as, uint64_t va);
/* mmap one page: @p populate maps a fresh zero-tagged frame, else GP_LAZY. */
struct g_page *g_mmap(struct g_kernel *k, unsigned v, int as, uint64_t va, uint8_t prot,
                      bool populate);
struct g_page *g_mmap_large(struct g_kernel *k, unsigned v, int as, uint64_t va,
                            uint8_t prot);
void g_munmap(struct g_kernel *k, unsigned v, int as, struct g_page *p);
void g_mprotect(struct g_kernel *k, unsigned v, int as, struct g_page *p, uint8_t prot);
void g_swap_out(struct g_kernel *k, unsigned v, int as, struct g_page *p);
/* Clear the A (and D) bit of a present 4 KiB page (page aging, writeback). */
void g_age(struct g_kernel *k, unsigned v, int as, struct g_page *p, bool clean);
void g_split_large(struct g_kernel *k, unsigned v, int as, struct g_page *p);
void g_merge_large(struct g_kernel *k, unsigned v, int as, struct g_page *p);
/* mprotect one 4 KiB sub-page of a split large page read-only. */
void g_split_protect_sub(struct g_kernel *k, unsigned v, int as, struct g_page *p,
                         unsigned sub);
/* Free the user page table under the 2 MiB region of @p va if it maps nothing. */
bool g_free_empty_pt(struct g_kernel *k, unsigned v, int as, uint64_t va);
/* Remap global kernel page @p page to a fresh frame; @p via_pge flushes by
 * toggling CR4.PGE on every vCPU instead of INVLPG. */
void g_ktext_remap(struct g_kernel *k, unsigned v, unsigned page, bool via_pge);

/*
 * A program access on vCPU @p v (CPL 3 when @p user) with the kernel's #PF
 * handler behind it: demand paging, swap-in and copy-on-write are resolved
 * and the access retried; the outcome of every try is checked against the
 * walk. @return true when the access finally succeeded, false when the
 * kernel would deliver SIGSEGV.
 */
bool g_program_access(struct g_kernel *k, unsigned v, uint64_t va, uint32_t access);

/* ---- Checks ------------------------------------------------------------ */

/* Access kinds a probe tries. */
extern const uint32_t g_access_kinds[];
extern const unsigned g_naccess_kinds;

/*
 * One access through pgm_soft_access on vCPU @p v, checked against
 * pgm_walk(NO_AD) (law 1): same fault and error code, or the data of the
 * walked GPA (and for a write, the byte landing there), and the A/D bits left
 * in the guest entries. A write stores a fresh stamp into a data frame; into
 * anything else (a page table, a free frame) it stores back the bytes that
 * are there (with the A/D bits the translation itself sets), so the engine's
 * write emulation runs without changing the guest's tables.
 * @return true if the access completed.
 */
bool g_probe(struct g_kernel *k, unsigned v, uint64_t va, uint32_t access);

/* On every vCPU: model vs walk for every page of its current address space
 * and the kernel pages; probes (law 1) of those pages, the direct map, the
 * self-map, unmapped and non-canonical addresses - every access kind when
 * @p full, else a random sample; then pgm_audit (laws 2 and 3). */
void g_check(struct g_kernel *k, unsigned full);
/* pgm_audit only. */
void g_audit(struct g_kernel *k);
/* Compare every data frame in use with the mirror (slow; now and then). */
void g_check_memory(struct g_kernel *k);

uint64_t g_rand(struct g_kernel *k);

#endif /* PGM_TESTS_SHADOW_GUEST_H */
