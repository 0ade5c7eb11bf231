/* SPDX-License-Identifier: MIT */
/*
 * The soft backend's host-memory half: an arena of 4 KiB host pages with a
 * synthetic host-physical address space.
 *
 * HPA = PGM_SOFT_HPA_BASE + page_index * 4096. Memory is taken from the host
 * in 2 MiB chunks (512 pages, 2 MiB aligned so a chunk can later serve as a
 * large page) only when the bump pointer reaches them. Freed pages go on a
 * LIFO free list and are zeroed again when handed out. Each chunk keeps an
 * in-use bitmap so hpa_to_ptr() refuses freed or never-allocated pages; the
 * audit relies on that to catch a shadow entry pointing at a freed page.
 *
 * RAM blocks (alloc_ram_block) are anonymous private mappings: the kernel
 * commits their pages on first write and reads of untouched pages see its
 * zero page, which is exactly the lazy-RAM contract. Their HPAs are handed
 * out by a bump pointer above the arena (2 MiB aligned, 1 GiB aligned for
 * blocks of 1 GiB or more so nested paging can map them with 1 GiB pages;
 * never reused), so a stale HPA of a freed block never aliases a live one.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pgm/backend.h"
#include "src/backends/soft.h"

#define CHUNK_SHIFT SOFT_CHUNK_SHIFT
#define CHUNK_PAGES SOFT_CHUNK_PAGES
#define MAX_PAGES   SOFT_MAX_PAGES

PGM_API int
pgm_soft_backend_create(uint64_t max_pages, struct pgm_soft_backend **out)
{
    if (!out || !max_pages || max_pages > MAX_PAGES)
        return -EINVAL;
    struct pgm_soft_backend *sb = calloc(1, sizeof(*sb));
    if (!sb)
        return -ENOMEM;
    sb->max_pages = max_pages;
    sb->nchunks = (max_pages + CHUNK_PAGES - 1) / CHUNK_PAGES;
    sb->chunks = calloc(sb->nchunks, sizeof(*sb->chunks));
    sb->free_list = calloc(max_pages, sizeof(*sb->free_list));
    if (!sb->chunks || !sb->free_list) {
        free(sb->chunks);
        free(sb->free_list);
        free(sb);
        return -ENOMEM;
    }
    sb->fail_after = -1;
    sb->blocks_enabled = true;
    /* Blocks start at the first 1 GiB boundary above the arena. */
    sb->block_hpa_next = (PGM_SOFT_HPA_BASE + (max_pages << PGM_PAGE_SHIFT) + (1ull << 30) - 1) &
                         ~((1ull << 30) - 1);
    pthread_mutex_init(&sb->lock, NULL);
    pthread_mutex_init(&sb->vcpus_lock, NULL);
    *out = sb;
    return 0;
}

PGM_API void
pgm_soft_backend_destroy(struct pgm_soft_backend *sb)
{
    if (!sb)
        return;
    for (uint64_t i = 0; i < sb->nchunks; i++)
        free(sb->chunks[i].mem);
    for (size_t i = 0; i < sb->nblocks; i++)
        if (sb->blocks[i].npages)
            munmap(sb->blocks[i].ptr, sb->blocks[i].npages << PGM_PAGE_SHIFT);
    free(sb->blocks);
    free(sb->chunks);
    free(sb->free_list);
    pgm_soft_mmu_destroy(sb);
    pthread_mutex_destroy(&sb->vcpus_lock);
    pthread_mutex_destroy(&sb->lock);
    free(sb);
}

static int
soft_alloc_page(void *ctx, pgm_hpa_t *hpa, void **ptr)
{
    struct pgm_soft_backend *sb = ctx;
    int rc = -ENOMEM;
    pthread_mutex_lock(&sb->lock);
    if (sb->fail_after == 0)
        goto out;
    uint64_t idx;
    if (sb->nfree) {
        idx = sb->free_list[--sb->nfree];
    } else if (sb->bump < sb->max_pages) {
        struct soft_chunk *c = &sb->chunks[sb->bump / CHUNK_PAGES];
        if (!c->mem) {
            c->mem = aligned_alloc((size_t)1 << CHUNK_SHIFT, (size_t)1 << CHUNK_SHIFT);
            if (!c->mem)
                goto out;
        }
        idx = sb->bump++;
    } else {
        goto out;
    }
    struct soft_chunk *c = &sb->chunks[idx / CHUNK_PAGES];
    unsigned slot = idx % CHUNK_PAGES;
    uint8_t *p = c->mem + ((size_t)slot << PGM_PAGE_SHIFT);
    memset(p, 0, PGM_PAGE_SIZE);
    c->in_use[slot / 64] |= 1ull << (slot % 64);
    sb->in_use++;
    if (sb->fail_after > 0)
        sb->fail_after--;
    *hpa = PGM_SOFT_HPA_BASE + (idx << PGM_PAGE_SHIFT);
    *ptr = p;
    rc = 0;
out:
    pthread_mutex_unlock(&sb->lock);
    return rc;
}

/* Page index of @hpa if it is an allocated page of @sb, else UINT64_MAX. Lock held. */
static uint64_t
page_index(const struct pgm_soft_backend *sb, pgm_hpa_t hpa)
{
    if (hpa < PGM_SOFT_HPA_BASE)
        return UINT64_MAX;
    uint64_t idx = (hpa - PGM_SOFT_HPA_BASE) >> PGM_PAGE_SHIFT;
    if (idx >= sb->bump)
        return UINT64_MAX;
    const struct soft_chunk *c = &sb->chunks[idx / CHUNK_PAGES];
    unsigned slot = idx % CHUNK_PAGES;
    if (!(c->in_use[slot / 64] & (1ull << (slot % 64))))
        return UINT64_MAX;
    return idx;
}

static void
soft_free_page(void *ctx, pgm_hpa_t hpa, void *ptr)
{
    struct pgm_soft_backend *sb = ctx;
    (void)ptr;
    pthread_mutex_lock(&sb->lock);
    uint64_t idx = page_index(sb, hpa & PGM_PAGE_MASK);
    if (idx != UINT64_MAX) {
        struct soft_chunk *c = &sb->chunks[idx / CHUNK_PAGES];
        unsigned slot = idx % CHUNK_PAGES;
        c->in_use[slot / 64] &= ~(1ull << (slot % 64));
        sb->free_list[sb->nfree++] = idx;
        sb->in_use--;
    }
    pthread_mutex_unlock(&sb->lock);
}

void *
pgm_soft_hpa_ptr(struct pgm_soft_backend *sb, pgm_hpa_t hpa)
{
    void *p = NULL;
    pthread_mutex_lock(&sb->lock);
    uint64_t idx = page_index(sb, hpa);
    if (idx != UINT64_MAX) {
        p = sb->chunks[idx / CHUNK_PAGES].mem +
            ((size_t)(idx % CHUNK_PAGES) << PGM_PAGE_SHIFT) + (hpa & ~PGM_PAGE_MASK);
    } else {
        for (size_t i = 0; i < sb->nblocks; i++) {
            const struct soft_ram_block *b = &sb->blocks[i];
            if (b->npages && hpa - b->hpa < (b->npages << PGM_PAGE_SHIFT)) {
                p = b->ptr + (hpa - b->hpa);
                break;
            }
        }
    }
    pthread_mutex_unlock(&sb->lock);
    return p;
}

static void *
soft_hpa_to_ptr(void *ctx, pgm_hpa_t hpa)
{
    return pgm_soft_hpa_ptr(ctx, hpa);
}

static int
soft_alloc_ram_block(void *ctx, uint64_t npages, pgm_hpa_t *hpa, void **ptr)
{
    struct pgm_soft_backend *sb = ctx;
    int rc = -ENOMEM;
    if (!npages || npages > MAX_PAGES)
        return -ENOMEM;
    pthread_mutex_lock(&sb->lock);
    if (!sb->blocks_enabled || sb->fail_after == 0)
        goto out;
    size_t slot = sb->nblocks;
    for (size_t i = 0; i < sb->nblocks; i++)
        if (!sb->blocks[i].npages)
            slot = i;
    if (slot == sb->nblocks && sb->nblocks == sb->blocks_cap) {
        size_t cap = sb->blocks_cap ? sb->blocks_cap * 2 : 8;
        struct soft_ram_block *nb = realloc(sb->blocks, cap * sizeof(*nb));
        if (!nb)
            goto out;
        sb->blocks = nb;
        sb->blocks_cap = cap;
    }
    size_t bytes = (size_t)npages << PGM_PAGE_SHIFT;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        goto out;
    if (slot == sb->nblocks)
        sb->nblocks++;
    struct soft_ram_block *b = &sb->blocks[slot];
    if (bytes >= (1ull << 30))
        sb->block_hpa_next = (sb->block_hpa_next + (1ull << 30) - 1) & ~((1ull << 30) - 1);
    b->hpa = sb->block_hpa_next;
    b->ptr = p;
    b->npages = npages;
    sb->block_hpa_next += ((uint64_t)bytes + (1ull << CHUNK_SHIFT) - 1) & ~((1ull << CHUNK_SHIFT) - 1);
    sb->blocks_in_use++;
    if (sb->fail_after > 0)
        sb->fail_after--;
    *hpa = b->hpa;
    *ptr = p;
    rc = 0;
out:
    pthread_mutex_unlock(&sb->lock);
    return rc;
}

static void
soft_free_ram_block(void *ctx, pgm_hpa_t hpa, void *ptr, uint64_t npages)
{
    struct pgm_soft_backend *sb = ctx;
    pthread_mutex_lock(&sb->lock);
    for (size_t i = 0; i < sb->nblocks; i++) {
        struct soft_ram_block *b = &sb->blocks[i];
        if (b->npages && b->hpa == hpa && b->ptr == ptr && b->npages == npages) {
            munmap(b->ptr, (size_t)npages << PGM_PAGE_SHIFT);
            b->npages = 0;
            sb->blocks_in_use--;
            break;
        }
    }
    pthread_mutex_unlock(&sb->lock);
}

static const struct pgm_backend_ops soft_ops = {
    .struct_size = sizeof(struct pgm_backend_ops),
    .alloc_page = soft_alloc_page,
    .free_page = soft_free_page,
    .hpa_to_ptr = soft_hpa_to_ptr,
    .alloc_ram_block = soft_alloc_ram_block,
    .free_ram_block = soft_free_ram_block,
    .load_root = pgm_soft_mmu_load_root,
    .flush = pgm_soft_mmu_flush,
};

PGM_API const struct pgm_backend_ops *
pgm_soft_backend_ops(void)
{
    return &soft_ops;
}

PGM_API uint64_t
pgm_soft_backend_pages_in_use(const struct pgm_soft_backend *sb)
{
    return sb ? sb->in_use : 0;
}

PGM_API uint64_t
pgm_soft_backend_blocks_in_use(const struct pgm_soft_backend *sb)
{
    return sb ? sb->blocks_in_use : 0;
}

PGM_API void
pgm_soft_backend_set_ram_blocks(struct pgm_soft_backend *sb, bool enable)
{
    if (!sb)
        return;
    pthread_mutex_lock(&sb->lock);
    sb->blocks_enabled = enable;
    pthread_mutex_unlock(&sb->lock);
}

PGM_API void
pgm_soft_backend_fail_after(struct pgm_soft_backend *sb, int64_t n)
{
    if (!sb)
        return;
    pthread_mutex_lock(&sb->lock);
    sb->fail_after = n < 0 ? -1 : n;
    pthread_mutex_unlock(&sb->lock);
}
