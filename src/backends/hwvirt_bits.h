/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the VT-x (vtx.c) and AMD-V (svm.c) vendor layers: bit
 * ranges and the host physical-address width check.
 */
#ifndef PGM_SRC_BACKENDS_HWVIRT_BITS_H
#define PGM_SRC_BACKENDS_HWVIRT_BITS_H

#include <stdbool.h>
#include <stdint.h>

/* Narrowest and widest host MAXPHYADDR accepted (CPUID 80000008H EAX[7:0]). */
#define HWV_MIN_MAXPHY 32u
#define HWV_MAX_MAXPHY 52u

/* Mask of bits lo..hi inclusive; empty when lo > hi. */
static inline uint64_t
hwv_bits(unsigned lo, unsigned hi)
{
    if (lo > hi || lo > 63)
        return 0;
    uint64_t upto = hi >= 63 ? ~0ull : (1ull << (hi + 1)) - 1;
    return upto & ~((1ull << lo) - 1);
}

static inline bool
hwv_bit(uint64_t v, unsigned n)
{
    return (v >> n) & 1;
}

static inline bool
hwv_maxphy_ok(unsigned maxphyaddr)
{
    return maxphyaddr >= HWV_MIN_MAXPHY && maxphyaddr <= HWV_MAX_MAXPHY;
}

/*
 * Bits 51:N of a paging-structure entry: reserved on both vendors, since
 * they name physical addresses the host cannot have. Bits 63:52 are not
 * included; each vendor gives them its own meaning.
 */
static inline uint64_t
hwv_above_maxphy(unsigned maxphyaddr)
{
    return hwv_bits(maxphyaddr, 51);
}

#endif /* PGM_SRC_BACKENDS_HWVIRT_BITS_H */
