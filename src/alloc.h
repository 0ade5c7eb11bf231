/* SPDX-License-Identifier: MIT */
/*
 * libpgm's own heap allocations go through the embedder's allocator hooks
 * (struct pgm_allocator), so a fuzzer can fail any one of them.
 */
#ifndef PGM_SRC_ALLOC_H
#define PGM_SRC_ALLOC_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "pgm/vm.h"

static inline void *
pgm_alloc(const struct pgm_allocator *a, size_t size)
{
    return a->alloc ? a->alloc(a->ctx, size) : malloc(size);
}

static inline void *
pgm_zalloc(const struct pgm_allocator *a, size_t size)
{
    void *p = pgm_alloc(a, size);
    if (p)
        memset(p, 0, size);
    return p;
}

/* Zeroed array of @n elements of @size bytes; NULL on overflow or failure. */
static inline void *
pgm_zalloc_array(const struct pgm_allocator *a, size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size)
        return NULL;
    return pgm_zalloc(a, n * size);
}

static inline void
pgm_free(const struct pgm_allocator *a, void *p)
{
    if (!p)
        return;
    if (a->free)
        a->free(a->ctx, p);
    else
        free(p);
}

#endif /* PGM_SRC_ALLOC_H */
