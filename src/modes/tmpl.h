/* SPDX-License-Identifier: MIT */
/*
 * Template parameters and name mangling for the guest-mode instances.
 *
 * Meson compiles guest_tmpl.c once per guest mode with -DPGM_GUEST_MODE=<n>
 * (values in tmpl_ids.h). Everything mode-dependent is a compile-time constant here,
 * so the walk loop of each instance is specialised and never tests the mode.
 */
#ifndef PGM_SRC_MODES_TMPL_H
#define PGM_SRC_MODES_TMPL_H

#include "src/modes/tmpl_ids.h"

#ifndef PGM_GUEST_MODE
#  error "PGM_GUEST_MODE must be defined by the build (src/modes/meson.build)"
#endif

#define PGM_CAT_(a, b) a##b
#define PGM_CAT(a, b)  PGM_CAT_(a, b)

#if PGM_GUEST_MODE == PGM_GMODE_REAL
#  define GST_SUFFIX   real
#  define GST_LEVELS   0
#elif PGM_GUEST_MODE == PGM_GMODE_PROT
#  define GST_SUFFIX   prot
#  define GST_LEVELS   0
#elif PGM_GUEST_MODE == PGM_GMODE_32BIT
#  define GST_SUFFIX   32bit
#  define GST_LEVELS   2
#  define GST_ENTRY_BYTES 4
#  define GST_VA_BITS  32
#elif PGM_GUEST_MODE == PGM_GMODE_PAE
#  define GST_SUFFIX   pae
#  define GST_LEVELS   3
#  define GST_ENTRY_BYTES 8
#  define GST_VA_BITS  32
#elif PGM_GUEST_MODE == PGM_GMODE_AMD64
#  define GST_SUFFIX   amd64
#  define GST_LEVELS   4
#  define GST_ENTRY_BYTES 8
#  define GST_VA_BITS  48
#elif PGM_GUEST_MODE == PGM_GMODE_LA57
#  define GST_SUFFIX   la57
#  define GST_LEVELS   5
#  define GST_ENTRY_BYTES 8
#  define GST_VA_BITS  57
#else
#  error "unknown PGM_GUEST_MODE"
#endif

/* Unroll the level loops: their trip count is a per-instance constant. */
#if defined(__clang__)
#  define PGM_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#  define PGM_UNROLL _Pragma("GCC unroll 8")
#else
#  define PGM_UNROLL
#endif

/* Mangle a template-local symbol with the instance's suffix. */
#define GST_NAME(n) PGM_CAT(PGM_CAT(n, _), GST_SUFFIX)

#endif /* PGM_SRC_MODES_TMPL_H */
