/* SPDX-License-Identifier: MIT */
/*
 * Internals of qemu_mmu, shared by its files and by nothing else:
 *
 *   qemu_mmu.c     options, grouping the cases into QEMU runs, output
 *   qemu_plan.c    per case: the navigator, the harness slot, and the cases
 *                  excluded before running (QEMU deviations, uncomparable)
 *   qemu_wire.c    the case blob the guest reads, the lines it writes back
 *   qemu_run.c     one QEMU process: files, fork/exec, watchdog, output
 *   qemu_interp.c  per case: guest result to `pgm walk` result, with the
 *                  corrections of QEMU's deviations from the SDM
 *
 * The method is described at the top of qemu_mmu.c and in README.md.
 */
#ifndef PGM_TESTS_HW_QEMU_QEMU_MMU_H
#define PGM_TESTS_HW_QEMU_QEMU_MMU_H

#include "case.h"
#include "guest/qg.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define ADDR_MASK 0x000ffffffffff000ull
/* cases per QEMU run: 10000 records of at most 608 bytes fit QG_BLOB_MAX */
#define MAX_BATCH 10000

/* Options (qemu_mmu.c). */
extern int verbose;
extern const char *qemu_prog;
extern char bios_path[PATH_MAX];
extern const char *keep_dir;
/* Directory of the blob, debugcon and log files of each run. */
extern char workdir[PATH_MAX];

/* snprintf that fails loudly instead of truncating (paths, options) */
void fmt(char *dst, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------ planning */

struct pathent {
    uint64_t gpa;
    unsigned size;
    unsigned level;
};

struct plan {
    struct wcase c;
    int kind; /* 0 run, 1 error (malformed), 2 skip */
    char reason[96];
    /* navigator */
    unsigned npath;
    struct pathent path[6];
    int leaf_ok; /* a present leaf was reached */
    unsigned leaf_idx; /* index in path[] */
    unsigned size_shift;
    uint64_t target; /* translated gpa if leaf_ok */
    int noncanonical;
    /* harness */
    unsigned mode; /* QG_MODE_* */
    unsigned slot;
    uint64_t slot_gpa, slot_val;
    unsigned slot_size;
    uint32_t plant;
    int unplanted_fetch; /* fetch whose target is not RAM we control */
    struct wresult res;
    int done;
};

/* Make @p a skip with the formatted reason (kind 2). */
void set_skip(struct plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Plan the parsed case p->c: navigate, choose the slot, or set_skip(). */
void plan_case(struct plan *p);

/* ------------------------------------------------- guest results (wire) */

/* What the guest reports for one excursion (the access, or the D probe). */
struct excursion {
    unsigned vec;
    uint32_t ec;
    uint64_t cr2, rip, rcx;
    unsigned nmem;
    uint64_t mem[WCASE_MAX_MEM];
};

struct gresult {
    int have;
    struct excursion acc;
    int have_probe;
    struct excursion probe;
};

/* The blob of cases @list[0..n) (indexes into @plans), numbered by position;
 * malloc'ed, its length in *@len. Exits if it exceeds QG_BLOB_MAX. */
unsigned char *blob_build(const struct plan *plans, const size_t *list, size_t n, size_t *len);
/* Record one debugcon line into gres[0..n); other and incomplete lines are
 * ignored. */
void result_line(char *line, struct gresult *gres, size_t n);

/* ---------------------------------------------------------- run QEMU */

/* Run the cases @list[0..n) (indexes into @plans) in one QEMU. Fills gres[] by
 * position. Returns the number of leading cases with a result (n if all). */
size_t run_qemu(struct plan *plans, const size_t *list, size_t n, struct gresult *gres,
                unsigned maxphyaddr, int gbpages, unsigned run_no);

/* ------------------------------------------------------ interpretation */

/* Turn the guest's result @g for @p into p->res, or set_skip(). */
void interpret(struct plan *p, const struct gresult *g);

#endif
