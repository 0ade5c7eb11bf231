/* SPDX-License-Identifier: MIT */
/**
 * @file common.h
 * @brief Export macro and conventions shared by every libpgm header.
 *
 * Error convention: every fallible function returns `int`, 0 on success or a
 * negative errno value (`-EINVAL`, `-ENOMEM`, `-EEXIST`, ...). Outcomes that the
 * guest must see (a #PF to inject, a #GP on a control-register load) are not
 * errors; they are reported through result enums or the positive `PGM_RC_*`
 * codes documented on each function.
 */
#ifndef PGM_COMMON_H
#define PGM_COMMON_H

#if defined(_WIN32)
#  if defined(PGM_BUILDING_DLL)
#    define PGM_API __declspec(dllexport)
#  else
#    define PGM_API
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define PGM_API __attribute__((visibility("default")))
#else
#  define PGM_API
#endif

/** Negate an errno value: `return PGM_ERR(EINVAL);` */
#define PGM_ERR(e) (-(e))

/**
 * Positive return code: the guest operation must raise #GP(0) (for example a
 * MOV CR3 whose PAE PDPTEs have reserved bits set). Guest state is unchanged.
 */
#define PGM_RC_INJECT_GP 1

#endif /* PGM_COMMON_H */
