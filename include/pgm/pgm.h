/* SPDX-License-Identifier: MIT */
/**
 * @file pgm.h
 * @brief libpgm: embeddable x86 paging virtualization. Includes the whole API.
 */
#ifndef PGM_PGM_H
#define PGM_PGM_H

#include "common.h"
#include "version.h"
#include "types.h"
#include "vm.h"
#include "phys.h"
#include "handler.h"
#include "access.h"
#include "regs.h"
#include "paging.h"
#include "backend.h"
#include "stats.h"
#include "hwvirt.h"
#include "nested.h"

#endif /* PGM_PGM_H */
