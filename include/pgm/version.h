/* SPDX-License-Identifier: MIT */
/**
 * @file version.h
 * @brief libpgm API version.
 */
#ifndef PGM_VERSION_H
#define PGM_VERSION_H

#define PGM_API_VERSION_MAJOR 0
#define PGM_API_VERSION_MINOR 1
#define PGM_API_VERSION_PATCH 0

#include "common.h"

/** @return the library's version string, for example "0.1.0". */
PGM_API const char *pgm_version(void);

#endif /* PGM_VERSION_H */
