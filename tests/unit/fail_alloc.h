/* SPDX-License-Identifier: MIT */
/*
 * An allocator for struct pgm_allocator that can fail on demand, on top of
 * cmocka's test_malloc (which reports leaks per test), and counts live
 * blocks so a test can also check "nothing leaked" itself.
 */
#ifndef PGM_TESTS_UNIT_FAIL_ALLOC_H
#define PGM_TESTS_UNIT_FAIL_ALLOC_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgm/vm.h"

struct fail_alloc {
    int64_t calls;       /* allocation calls so far */
    int64_t fail_at;     /* this call (0-based) fails; -1: none */
    int64_t fail_from;   /* this call and every later one fail; -1: none */
    int64_t live;        /* blocks handed out and not freed */
    int64_t failures;    /* calls that failed */
};

static inline void
fail_alloc_reset(struct fail_alloc *fa)
{
    *fa = (struct fail_alloc){ .fail_at = -1, .fail_from = -1 };
}

static inline void *
fail_alloc_alloc(void *ctx, size_t size)
{
    struct fail_alloc *fa = ctx;
    int64_t call = fa->calls++;
    if (call == fa->fail_at || (fa->fail_from >= 0 && call >= fa->fail_from)) {
        fa->failures++;
        return NULL;
    }
    fa->live++;
    return test_malloc(size);
}

static inline void
fail_alloc_free(void *ctx, void *p)
{
    struct fail_alloc *fa = ctx;
    fa->live--;
    test_free(p);
}

/* Fail the call @n calls from now (n = 0: the next call). */
static inline void
fail_alloc_next(struct fail_alloc *fa, int64_t n)
{
    fa->fail_at = fa->calls + n;
}

static inline struct pgm_allocator
fail_alloc_hooks(struct fail_alloc *fa)
{
    return (struct pgm_allocator){ fail_alloc_alloc, fail_alloc_free, fa };
}

#endif /* PGM_TESTS_UNIT_FAIL_ALLOC_H */
