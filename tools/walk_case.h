/* SPDX-License-Identifier: MIT */
/*
 * One line of `pgm walk` input: the case format documented in README.md
 * ("pgm walk") and docs/pgm-tool.md. The format is a contract: independent
 * checkers (tests/hw/) produce and consume it.
 */
#ifndef PGM_TOOLS_WALK_CASE_H
#define PGM_TOOLS_WALK_CASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgm/types.h"

#define WALK_CASE_MAX_MEM 256
/* Guest RAM of the tool's little world: 0 .. 64 MiB. */
#define WALK_CASE_RAM_SIZE (64ull << 20)

struct walk_case_mem {
    uint64_t gpa;
    uint64_t val;
    unsigned size; /* 4 or 8 */
};

struct walk_case {
    enum pgm_guest_mode mode;
    unsigned cpl;
    uint32_t access;         /* PGM_ACCESS_WRITE / PGM_ACCESS_FETCH, or 0 */
    uint64_t va, cr3;
    bool wp, pse, pge, smep, smap, pke, nxe, ac, gbpages;
    uint32_t pkru;
    unsigned maxphyaddr;
    unsigned nmem;
    struct walk_case_mem mem[WALK_CASE_MAX_MEM];
};

/*
 * Parse @line. Returns 1 and fills @c for a case, 0 for a blank or comment
 * line, -1 for a malformed line with a short reason in @err.
 */
int walk_case_parse(const char *line, struct walk_case *c, char *err, size_t errlen);

#endif /* PGM_TOOLS_WALK_CASE_H */
