/* SPDX-License-Identifier: MIT */
/*
 * Atomic access to guest memory and to shared descriptors.
 *
 * Guest page-table entries live in ordinary host memory that the guest (on
 * another vCPU) may write at any time, so they cannot be C11 _Atomic objects.
 * The GCC/Clang __atomic builtins operate on plain objects of natural
 * alignment, which is exactly what page-table entries are. All uses are here
 * so a port to another compiler changes one file.
 */
#ifndef PGM_SRC_ATOMICS_H
#define PGM_SRC_ATOMICS_H

#include <stdbool.h>
#include <stdint.h>

static inline uint64_t
pgm_load64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint32_t
pgm_load32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Compare-and-swap; on failure *expected receives the current value. */
static inline bool
pgm_cas64(uint64_t *p, uint64_t *expected, uint64_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, false,
                                       __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static inline bool
pgm_cas32(uint32_t *p, uint32_t *expected, uint32_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, false,
                                       __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

#define pgm_load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define pgm_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

#endif /* PGM_SRC_ATOMICS_H */
