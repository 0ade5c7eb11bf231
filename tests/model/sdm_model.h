/* SPDX-License-Identifier: MIT */
/*
 * sdm_model: an independent reference model of x86 linear-address translation,
 * written from the Intel SDM vol. 3A chapter 4 (4.3 32-bit paging, 4.4 PAE
 * paging, 4.5 4-level and 5-level paging, 4.6 access rights, 4.7 page-fault
 * exceptions, 4.8 accessed and dirty flags).
 *
 * It shares no code with libpgm and is deliberately simple: one function walks,
 * one checks rights, one builds the error code. It is the expected-value
 * oracle of the walk tests; speed does not matter, readability does.
 *
 * Policies the SDM leaves open, and what this model does:
 *   - A/D: A is set in every paging-structure entry of a *successful*
 *     translation and D in the leaf of a successful write. A faulting access
 *     writes nothing (hardware may set upper A bits on a fault; libpgm
 *     documents that it does not).
 *   - Guest memory is a flat RAM image at GPA 0..size-1. Reads outside it
 *     return all-ones; A/D writes outside it are dropped.
 *   - PSE-36: with the feature, M = min(MAXPHYADDR, 40): PDE bits (M-20):13
 *     give PA bits (M-1):32 and PDE bits 21:(M-19) are reserved. Without it
 *     M = 32: bits 21:13 are reserved.
 *   - The PAE PDPTEs are those latched at the last CR3 load (sdm_pae_load_pdptes);
 *     their reserved bits were checked there (#GP), not at walk time.
 */
#ifndef PGM_TESTS_SDM_MODEL_H
#define PGM_TESTS_SDM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Paging modes (SDM 4.1.1). */
enum sdm_mode {
    SDM_MODE_32BIT = 0, /* CR4.PAE = 0: 2 levels of 4-byte entries */
    SDM_MODE_PAE,       /* CR4.PAE = 1, EFER.LMA = 0: PDPTE registers + 2 levels */
    SDM_MODE_4LEVEL,    /* EFER.LMA = 1, CR4.LA57 = 0 */
    SDM_MODE_5LEVEL,    /* EFER.LMA = 1, CR4.LA57 = 1 */
};

/* What the access does. */
enum sdm_kind {
    SDM_READ = 0,
    SDM_WRITE,
    SDM_FETCH,
};

/* Who makes the access (SDM 4.6: "supervisor-mode" and "user-mode" accesses). */
enum sdm_priv {
    SDM_PRIV_SUPERVISOR = 0, /* explicit access at CPL 0, 1 or 2 */
    SDM_PRIV_USER,           /* explicit access at CPL 3 */
    SDM_PRIV_IMPLICIT,       /* implicit supervisor access (GDT/LDT/IDT/TSS), any CPL */
};

/*
 * Guest-physical memory: a flat image of GPA 0..size-1, nothing else. An
 * optional read-only window [ro_base, ro_base + ro_size) stands for ROM: it
 * reads from the image but A/D writes to it are dropped (ro_size 0: none).
 */
struct sdm_mem {
    uint8_t *bytes;
    uint64_t size;
    uint64_t ro_base;
    uint64_t ro_size;
};

/* The processor state that governs a translation. */
struct sdm_cpu {
    enum sdm_mode mode;  /* CR4.LA57 is implied by SDM_MODE_5LEVEL */
    uint64_t cr3;
    bool cr0_wp;
    bool cr4_pse;        /* only 32-bit paging looks at it */
    bool cr4_pge;        /* reported only (G bit); does not change a walk */
    bool cr4_smep;
    bool cr4_smap;
    bool cr4_pke;        /* only 4/5-level paging looks at it */
    bool efer_nxe;
    uint32_t pkru;
    /* CPUID */
    unsigned maxphyaddr; /* 32..52 */
    bool gbpages;        /* CPUID.80000001H:EDX.Page1GB */
    bool pse36;          /* CPUID.01H:EDX.PSE-36 */
    /* PAE only: the four PDPTE registers (sdm_pae_load_pdptes) */
    uint64_t pdpte[4];
};

/* One access. */
struct sdm_access {
    enum sdm_kind kind;
    enum sdm_priv priv;
    bool ac; /* RFLAGS.AC */
};

enum sdm_outcome {
    SDM_OK = 0, /* translated */
    SDM_PF,     /* #PF with error_code */
    SDM_GP,     /* #GP before any walk (non-canonical) */
};

/* #PF error-code bits (SDM 4.7). */
#define SDM_PFEC_P    (1u << 0)
#define SDM_PFEC_W    (1u << 1)
#define SDM_PFEC_U    (1u << 2)
#define SDM_PFEC_RSVD (1u << 3)
#define SDM_PFEC_ID   (1u << 4)
#define SDM_PFEC_PK   (1u << 5)

/* Effective rights (same values as libpgm's pgm_rights, by design of the API). */
#define SDM_RIGHT_WRITE (1u << 0)
#define SDM_RIGHT_USER  (1u << 1)
#define SDM_RIGHT_EXEC  (1u << 2)

/* Why a #PF was raised (for messages; not architectural). */
enum sdm_fault_cause {
    SDM_CAUSE_NONE = 0,
    SDM_CAUSE_NOT_PRESENT,
    SDM_CAUSE_RESERVED,
    SDM_CAUSE_PROTECTION,
};

struct sdm_result {
    enum sdm_outcome outcome;
    enum sdm_fault_cause cause;
    uint32_t error_code;    /* SDM_PF only */
    uint64_t gpa;           /* SDM_OK only */
    unsigned page_shift;    /* SDM_OK and protection faults: 12, 21, 22 or 30 */
    unsigned top_level;     /* first level walked: 2, 3 (PAE: the PDPTE), 4 or 5 */
    unsigned last_level;    /* leaf level, or the level whose entry faulted */
    uint64_t entry[6];      /* per level, the value read plus the A/D bits this access set
                             * (that landed: none in ROM or outside RAM) */
    uint64_t entry_gpa[6];  /* where each entry lives (PAE level 3: in the PDPT) */
    uint32_t rights;        /* SDM_RIGHT_* of the translation (valid once the leaf is reached) */
    unsigned pkey;          /* leaf protection key (4/5-level with CR4.PKE), else 0 */
    bool global;            /* leaf G bit (CR4.PGE decides whether it matters) */
    unsigned pat_index;     /* leaf PAT<<2 | PCD<<1 | PWT (PAT: bit 7 in a PTE, else 12) */
    bool ad_written;        /* this access changed an entry in memory (A or D landed) */
    bool outside_ram;       /* an entry was read outside the image (it read all-ones) */
};

/* Read/write an entry of @p size bytes (4 or 8), little-endian; outside RAM
 * reads give all-ones and writes are dropped (also in the read-only window). */
uint64_t sdm_mem_read(const struct sdm_mem *mem, uint64_t gpa, unsigned size);
void sdm_mem_write(struct sdm_mem *mem, uint64_t gpa, uint64_t val, unsigned size);

/* @return the bits MAXPHYADDR..51 (reserved in every 4/5-level entry). */
uint64_t sdm_high_rsvd_mask64(unsigned maxphyaddr);

/*
 * MOV CR3 in PAE mode (SDM 4.4.1): read the four PDPTEs from the 32-byte
 * aligned table at CR3[31:5]. A present PDPTE with a reserved bit set (63,
 * 62:MAXPHYADDR, 8:5, 2:1) makes the load raise #GP.
 * @return true and fill @p pdpte, or false (#GP; @p pdpte unchanged).
 */
bool sdm_pae_load_pdptes(const struct sdm_mem *mem, uint64_t cr3, unsigned maxphyaddr,
                         uint64_t pdpte[4]);

/*
 * MOV CR3 in 4/5-level paging: bits 63:MAXPHYADDR must be 0 (no PCIDE).
 * @return true if the load succeeds, false for #GP.
 */
bool sdm_cr3_valid_long(uint64_t cr3, unsigned maxphyaddr);

/* @return whether @p la is canonical for @p mode (always true for 32-bit/PAE). */
bool sdm_canonical(enum sdm_mode mode, uint64_t la);

/*
 * Translate @p la for @p acc exactly as the SDM describes, updating A/D bits
 * in @p mem on success. Outside 4/5-level paging @p la is truncated to 32 bits.
 */
void sdm_translate(struct sdm_mem *mem, const struct sdm_cpu *cpu, uint64_t la,
                   const struct sdm_access *acc, struct sdm_result *res);

/* Human-readable names and dumps (for failure messages). */
const char *sdm_mode_name(enum sdm_mode mode);
const char *sdm_kind_name(enum sdm_kind kind);
const char *sdm_priv_name(enum sdm_priv priv);
/* Format the CPU state / access / result into @p buf; returns @p buf. */
char *sdm_cpu_format(const struct sdm_cpu *cpu, char *buf, size_t len);
char *sdm_access_format(const struct sdm_access *acc, char *buf, size_t len);
char *sdm_result_format(const struct sdm_result *res, char *buf, size_t len);

#endif /* PGM_TESTS_SDM_MODEL_H */
