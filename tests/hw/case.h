/* SPDX-License-Identifier: MIT */
/*
 * Walk cases in the `pgm walk` line format (see README, "pgm walk"), parsed
 * independently of tools/ so the hardware checkers share no code with the
 * tool they check.
 *
 * Input line:  key=value tokens separated by spaces (mode cpl acc va cr3 wp
 *              pse pge smep smap pke nxe ac gbpages pkru maxphyaddr mem).
 * Output line: `fault=0 gpa=0x.. size=4k|2m|4m|1g`, `fault=1 ec=0x..`,
 *              `gp=1`, `error=REASON` or `skip=REASON`, followed (not for
 *              error/skip) by ` mem=0xGPA:0xVAL,...` when the case had mem.
 */
#ifndef PGM_TESTS_HW_CASE_H
#define PGM_TESTS_HW_CASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WCASE_MAX_MEM 32

/* Guest RAM of a case: [0, WCASE_RAM_SIZE); everything else reads all-ones. */
#define WCASE_RAM_SIZE (64ull << 20)

/* Big enough for any line wcase_format() or wresult_format() produces. */
#define WCASE_LINE_MAX 2048

enum wcase_mode { WCASE_REAL, WCASE_PROT, WCASE_32, WCASE_PAE, WCASE_AMD64, WCASE_LA57 };

struct wcase_mem {
    uint64_t gpa;
    uint64_t val;
    unsigned size; /* 4 or 8 */
};

struct wcase {
    enum wcase_mode mode;
    unsigned cpl;
    char acc; /* 'r', 'w' or 'x' */
    uint64_t va, cr3;
    bool wp, pse, pge, smep, smap, pke, nxe, ac, gbpages;
    uint32_t pkru;
    unsigned maxphyaddr;
    unsigned nmem;
    struct wcase_mem mem[WCASE_MAX_MEM];
};

/* Result of one case, in the output format's terms. */
struct wresult {
    enum { WRES_OK, WRES_PF, WRES_GP, WRES_ERROR, WRES_SKIP } kind;
    uint64_t gpa;
    unsigned size_shift; /* 12, 21, 22, 30 */
    uint32_t ec;
    unsigned nmem;
    uint64_t memval[WCASE_MAX_MEM]; /* values after the access, input order */
    char reason[96];                /* for ERROR / SKIP */
    uint64_t memgpa[WCASE_MAX_MEM]; /* (extension) the GPAs, as printed; filled by
                                     * wresult_parse only */
};

/* Set @c to the defaults of a line with no tokens (mode=amd64, cpl=0, acc=r,
 * gbpages=1, maxphyaddr=52, everything else 0). */
void wcase_init(struct wcase *c);

/* Parse one input line. Returns 1 for a case, 0 for a blank/comment line,
 * -1 on a malformed line (reason filled). */
int wcase_parse(const char *line, struct wcase *c, char *reason, size_t reason_len);

/* Format @c back into the input format (for generators). */
void wcase_format(const struct wcase *c, char *buf, size_t len);

/* Parse one output line of `pgm walk` (or of a checker that prints the same format).
 * Returns 1 for a result, 0 for a blank/comment line, -1 if malformed. */
int wresult_parse(const char *line, struct wresult *r);

/* Print a result in the output format (no newline). */
void wresult_format(const struct wresult *r, const struct wcase *c, char *buf, size_t len);

/* Helpers (extension). */

/* Default size of a mem item without :SIZE in @mode (4 in mode 32, else 8). */
unsigned wcase_default_memsize(enum wcase_mode mode);

/* Initial guest memory of @c at @gpa, @size bytes (1..8), little endian: the
 * case's mem items (a later item overrides an earlier one), 0 elsewhere in RAM,
 * all-ones outside RAM. */
uint64_t wcase_read_initial(const struct wcase *c, uint64_t gpa, unsigned size);

/* Name of a mode as written in the input ("amd64" ...). */
const char *wcase_mode_name(enum wcase_mode mode);

#endif
