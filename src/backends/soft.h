/* SPDX-License-Identifier: MIT */
/*
 * The soft backend's internals, shared by its memory half (soft_mem.c) and
 * its MMU half (soft_mmu.c).
 */
#ifndef PGM_SRC_BACKENDS_SOFT_H
#define PGM_SRC_BACKENDS_SOFT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pgm/backend.h"

#define SOFT_CHUNK_SHIFT 21
#define SOFT_CHUNK_PAGES (1u << (SOFT_CHUNK_SHIFT - PGM_PAGE_SHIFT))
#define SOFT_MAX_PAGES   (1ull << 28)

struct soft_chunk {
    uint8_t *mem;                          /* NULL until first used */
    uint64_t in_use[SOFT_CHUNK_PAGES / 64];
};

struct soft_ram_block {
    pgm_hpa_t hpa;
    uint8_t *ptr;
    uint64_t npages; /* 0: slot free */
};

struct soft_vcpu; /* soft_mmu.c */

struct pgm_soft_backend {
    pthread_mutex_t lock;         /* memory bookkeeping below */
    uint64_t max_pages;
    uint64_t nchunks;
    struct soft_chunk *chunks;
    uint64_t bump;                /* next never-used page index */
    uint64_t *free_list;          /* stack of freed page indices */
    uint64_t nfree;
    uint64_t in_use;
    int64_t fail_after;           /* <0: never; else allocations left before failing */
    bool blocks_enabled;
    pgm_hpa_t block_hpa_next;
    struct soft_ram_block *blocks;
    size_t nblocks, blocks_cap;
    uint64_t blocks_in_use;
    /* MMU half: per-vCPU hardware state and TLB, created on first use. */
    pthread_mutex_t vcpus_lock;
    struct soft_vcpu *vcpus[PGM_SOFT_MAX_VCPUS];
};

/* Host pointer of @hpa if it lies in memory handed out by @sb, else NULL. */
void *pgm_soft_hpa_ptr(struct pgm_soft_backend *sb, pgm_hpa_t hpa);

/* Backend ops of the MMU half (soft_mmu.c). */
void pgm_soft_mmu_load_root(void *ctx, unsigned vcpu_id, pgm_hpa_t root);
void pgm_soft_mmu_flush(void *ctx, unsigned vcpu_id, const struct pgm_flush_req *req);
void pgm_soft_mmu_destroy(struct pgm_soft_backend *sb);

#endif /* PGM_SRC_BACKENDS_SOFT_H */
