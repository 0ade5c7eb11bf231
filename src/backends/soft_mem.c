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
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pgm/backend.h"

#define CHUNK_SHIFT 21
#define CHUNK_PAGES (1u << (CHUNK_SHIFT - PGM_PAGE_SHIFT))
#define MAX_PAGES   (1ull << 28)

struct chunk {
    uint8_t *mem;                     /* NULL until first used */
    uint64_t in_use[CHUNK_PAGES / 64];
};

struct pgm_soft_backend {
    pthread_mutex_t lock;
    uint64_t max_pages;
    uint64_t nchunks;
    struct chunk *chunks;
    uint64_t bump;         /* next never-used page index */
    uint64_t *free_list;   /* stack of freed page indices */
    uint64_t nfree;
    uint64_t in_use;
    int64_t fail_after;    /* <0: never; else allocations left before failing */
};

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
    pthread_mutex_init(&sb->lock, NULL);
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
    free(sb->chunks);
    free(sb->free_list);
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
        struct chunk *c = &sb->chunks[sb->bump / CHUNK_PAGES];
        if (!c->mem) {
            c->mem = aligned_alloc((size_t)1 << CHUNK_SHIFT, (size_t)1 << CHUNK_SHIFT);
            if (!c->mem)
                goto out;
        }
        idx = sb->bump++;
    } else {
        goto out;
    }
    struct chunk *c = &sb->chunks[idx / CHUNK_PAGES];
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
    const struct chunk *c = &sb->chunks[idx / CHUNK_PAGES];
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
        struct chunk *c = &sb->chunks[idx / CHUNK_PAGES];
        unsigned slot = idx % CHUNK_PAGES;
        c->in_use[slot / 64] &= ~(1ull << (slot % 64));
        sb->free_list[sb->nfree++] = idx;
        sb->in_use--;
    }
    pthread_mutex_unlock(&sb->lock);
}

static void *
soft_hpa_to_ptr(void *ctx, pgm_hpa_t hpa)
{
    struct pgm_soft_backend *sb = ctx;
    void *p = NULL;
    pthread_mutex_lock(&sb->lock);
    uint64_t idx = page_index(sb, hpa);
    if (idx != UINT64_MAX)
        p = sb->chunks[idx / CHUNK_PAGES].mem +
            ((size_t)(idx % CHUNK_PAGES) << PGM_PAGE_SHIFT) + (hpa & ~PGM_PAGE_MASK);
    pthread_mutex_unlock(&sb->lock);
    return p;
}

static const struct pgm_backend_ops soft_ops = {
    .struct_size = sizeof(struct pgm_backend_ops),
    .alloc_page = soft_alloc_page,
    .free_page = soft_free_page,
    .hpa_to_ptr = soft_hpa_to_ptr,
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

PGM_API void
pgm_soft_backend_fail_after(struct pgm_soft_backend *sb, int64_t n)
{
    if (!sb)
        return;
    pthread_mutex_lock(&sb->lock);
    sb->fail_after = n < 0 ? -1 : n;
    pthread_mutex_unlock(&sb->lock);
}
